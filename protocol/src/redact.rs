//! What of an RTMP destination URL may be shown.
//!
//! Platforms put stream keys in the URL's user info (`rtmp://user:KEY@host/app`), in
//! its path (`rtmp://host/app/KEY`) or in its query (`rtmp://host/app?key=KEY`), so
//! the whole URL is treated as secret-bearing. Only scheme, host, port and the first
//! path segment (the application) are ever shown, logged or ledgered:
//! `rtmp://live.example.org/live/…`. The control plane (API, ledger) and the media
//! plane (logs, error texts) use these same two functions, so they cannot disagree.

/// The shown form of a destination URL: `scheme://host[:port]/app/…`. The trailing
/// `/…` is always there, whether or not anything was cut, so the shown form tells
/// nothing about the hidden parts. Text that is not a URL shows as `…`.
pub fn redact_rtmp_url(url: &str) -> String {
    let Some(parts) = UrlParts::parse(url) else {
        return "…".into();
    };
    match parts.app {
        Some(app) => format!("{}://{}/{app}/…", parts.scheme, parts.host),
        None => format!("{}://{}/…", parts.scheme, parts.host),
    }
}

/// The secret-bearing pieces of a destination URL (user info and its halves, the
/// path after the application and each of its segments, the query and each of its
/// values, the fragment), longest first, for scrubbing from text a library wrote
/// (an error message that quotes the location). Pieces shorter than 3 characters
/// are left out: replacing them would garble the text without hiding a secret.
pub fn rtmp_url_secrets(url: &str) -> Vec<String> {
    let Some(parts) = UrlParts::parse(url) else {
        return vec![url.to_string()];
    };
    let mut out: Vec<String> = Vec::new();
    if let Some(user) = parts.userinfo {
        out.push(user.to_string());
        out.extend(user.split(':').map(str::to_string));
    }
    if !parts.rest_of_path.is_empty() {
        out.push(parts.rest_of_path.to_string());
        out.extend(parts.rest_of_path.split('/').map(str::to_string));
    }
    for tail in [parts.query, parts.fragment].into_iter().flatten() {
        out.push(tail.to_string());
        for pair in tail.split('&') {
            out.push(pair.to_string());
            if let Some((_, value)) = pair.split_once('=') {
                out.push(value.to_string());
            }
        }
    }
    out.retain(|s| s.chars().count() >= 3);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    app: Option<&'a str>,
    /// Path after the application, without its leading `/`.
    rest_of_path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> Option<UrlParts<'a>> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://")?;
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        // A user info holding `?`, `#` or `/` unescaped (`rtmp://u:pa?ss@host/app`)
        // would be split at the wrong place and part of it shown as the host or the
        // application: such a URL (any `@` after the first `?`, `#` or in the path) is
        // not parsed at all, so it is shown as `…` and refused at the API.
        if let Some(cut) = rest.find(['?', '#']) {
            if rest[cut..].contains('@') {
                return None;
            }
        }
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // The host is after the last `@`: a password may hold an unescaped `@`.
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if path.contains('@') || !is_host(host) {
            return None;
        }
        let (app, rest_of_path) = match path.split_once('/') {
            Some((a, r)) => (a, r),
            None => (path, ""),
        };
        Some(UrlParts {
            scheme,
            userinfo: userinfo.filter(|u| !u.is_empty()),
            host,
            app: Some(app).filter(|a| !a.is_empty()),
            rest_of_path,
            query: query.filter(|q| !q.is_empty()),
            fragment: fragment.filter(|f| !f.is_empty()),
        })
    }
}

/// `name[:port]` or `[v6][:port]`: letters, digits, dots and dashes, a numeric port.
fn is_host(host: &str) -> bool {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail))
                if addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') =>
            {
                match tail.strip_prefix(':') {
                    Some(port) => ("v6", Some(port)),
                    None if tail.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_host_port_and_app_are_shown() {
        let cases = [
            (
                "rtmp://live.example.org/live",
                "rtmp://live.example.org/live/…",
            ),
            (
                "rtmp://live.example.org/live/KEY",
                "rtmp://live.example.org/live/…",
            ),
            (
                "rtmps://user:pw@live.example.org:443/app/a/KEY?key=x#f",
                "rtmps://live.example.org:443/app/…",
            ),
            ("rtmp://u:p@ss@h:1935/app", "rtmp://h:1935/app/…"),
            ("rtmp://h?k=SECRET", "rtmp://h/…"),
            ("rtmp://h/", "rtmp://h/…"),
            ("not a url SECRET", "…"),
            ("rtmp://[::1]:1935/live/KEY", "rtmp://[::1]:1935/live/…"),
            // Unescaped `?`, `#` or `/` in the user info: never half-shown.
            ("rtmp://user:pa?ss@host/app", "…"),
            ("rtmp://user:pa#ss@host/app", "…"),
            ("rtmp://user:12/ss@host/app", "…"),
            ("rtmp://user:pass/word@host/app", "…"),
            ("rtmp://bob:Zm9v/YmFy@live.example.org/app", "…"),
            ("rtmps://u:p#ss@h/app", "…"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_rtmp_url(url), shown, "{url}");
        }
    }

    #[test]
    fn every_secret_part_is_listed() {
        let url = "rtmp://alice:PASSWORD@h:1935/live/PATHKEY/more?token=QUERYKEY&x=1#FRAG";
        let secrets = rtmp_url_secrets(url);
        for s in ["alice:PASSWORD", "PASSWORD", "PATHKEY", "QUERYKEY", "FRAG"] {
            assert!(secrets.iter().any(|x| x == s), "{s} in {secrets:?}");
        }
        assert!(!secrets.iter().any(|x| x == "h:1935" || x == "live"));
        let shown = redact_rtmp_url(url);
        for s in &secrets {
            assert!(!shown.contains(s.as_str()), "{s} in {shown}");
        }
    }
}
