//! Valid inputs the mutations start from: one request per route and method the
//! router answers (with a valid body, content type and query), a browser-like WHIP
//! offer and trickle-ICE fragments.

/// What a request's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// JSON text.
    Json(&'static str),
    /// An SDP offer (`application/sdp`).
    Sdp,
    /// A trickle-ICE fragment (`application/trickle-ice-sdpfrag`).
    SdpFrag,
}

/// A valid request: `{meeting}`, `{pid}`, `{rid}`, `{sid}` and `{session}` in `path`
/// are filled with ids of the fixtures.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// HTTP method.
    pub method: &'static str,
    /// Path and query.
    pub path: &'static str,
    /// Body.
    pub body: Body,
}

const fn t(method: &'static str, path: &'static str, body: Body) -> Template {
    Template { method, path, body }
}

/// Every route and method, with valid inputs.
pub const REQUESTS: &[Template] = &[
    t("POST", "/api/v1/meetings", Body::Json(r#"{"title":"Gemeinderat","public":true,"retention_days":30}"#)),
    t("GET", "/api/v1/meetings?limit=10", Body::None),
    t("GET", "/api/v1/meetings/{meeting}", Body::None),
    t("POST", "/api/v1/meetings/{meeting}/end", Body::None),
    t("PUT", "/api/v1/meetings/{meeting}/public", Body::Json(r#"{"public":false,"reason":"TOP 7"}"#)),
    t("PUT", "/api/v1/meetings/{meeting}/layout", Body::Json(r#"{"kind":"podium","pinned":"{pid}","podium":["{pid}"]}"#)),
    t("POST", "/api/v1/meetings/{meeting}/chapters", Body::Json(r#"{"title":"TOP 3: Haushalt"}"#)),
    t("GET", "/api/v1/meetings/{meeting}/chapters", Body::None),
    t("GET", "/api/v1/meetings/{meeting}/events", Body::None),
    t("POST", "/api/v1/meetings/{meeting}/participants", Body::Json(r#"{"display_name":"Alice"}"#)),
    t("GET", "/api/v1/meetings/{meeting}/participants", Body::None),
    t("DELETE", "/api/v1/meetings/{meeting}/participants/{pid}", Body::None),
    t("GET", "/api/v1/meetings/{meeting}/participants/{pid}/consent", Body::None),
    t("PUT", "/api/v1/meetings/{meeting}/participants/{pid}/consent", Body::Json(r#"{"recording":true,"streaming":false}"#)),
    t("POST", "/api/v1/meetings/{meeting}/recordings", Body::None),
    t("GET", "/api/v1/meetings/{meeting}/recordings", Body::None),
    t("POST", "/api/v1/recordings/{rid}/stop", Body::None),
    t("POST", "/api/v1/meetings/{meeting}/streams", Body::Json(r#"{"hls":true,"rtmp":[{"url":"rtmp://127.0.0.1:1935/live","key":"k3y"}]}"#)),
    t("GET", "/api/v1/meetings/{meeting}/streams", Body::None),
    t("GET", "/api/v1/streams/{sid}", Body::None),
    t("POST", "/api/v1/streams/{sid}/stop", Body::None),
    t("GET", "/api/v1/archive?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&q=Rat&public=true&limit=5&offset=0", Body::None),
    t("GET", "/api/v1/recordings/{rid}", Body::None),
    t("GET", "/api/v1/recordings/{rid}/media", Body::None),
    t("GET", "/api/v1/recordings/{rid}/poster", Body::None),
    t("GET", "/api/v1/recordings/{rid}/manifest", Body::None),
    t("DELETE", "/api/v1/recordings/{rid}", Body::None),
    t("PUT", "/api/v1/meetings/{meeting}/retention", Body::Json(r#"{"retention_days":10,"legal_hold":false}"#)),
    t("POST", "/api/v1/meetings/{meeting}/legal-hold/lift", Body::Json(r#"{"reason":"Verfahren abgeschlossen"}"#)),
    t("GET", "/api/v1/audit/verify", Body::None),
    t("GET", "/api/v1/cluster", Body::None),
    t("GET", "/api/v1/meetings/{meeting}/ledger?after=0&limit=10", Body::None),
    t("POST", "/whip/{meeting}", Body::Sdp),
    t("POST", "/whip/{meeting}?content=screen", Body::Sdp),
    t("PATCH", "/whip/{meeting}/{session}", Body::SdpFrag),
    t("DELETE", "/whip/{meeting}/{session}", Body::None),
    t("GET", "/watch/{meeting}/status", Body::None),
    t("GET", "/watch/{meeting}", Body::None),
    t("GET", "/live/{meeting}/index.m3u8", Body::None),
    t("GET", "/live/{meeting}/720p/index.m3u8", Body::None),
    t("GET", "/live/{meeting}/720p/s1-00001.ts", Body::None),
    t("GET", "/join/{meeting}", Body::None),
    t("GET", "/console/{meeting}", Body::None),
    t("GET", "/publish/{meeting}", Body::None),
    t("GET", "/archive", Body::None),
    t("GET", "/auth/callback", Body::None),
    t("GET", "/assets/whip.js", Body::None),
    t("GET", "/assets/signin.js", Body::None),
    t("GET", "/assets/hls.min.js", Body::None),
    t("GET", "/api/v1/openapi.json", Body::None),
    t("GET", "/healthz", Body::None),
    t("GET", "/metrics", Body::None),
];

/// A WHIP offer as Chromium sends it (audio and video, bundle, fingerprint,
/// loopback candidates).
pub const OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n\
a=ice-ufrag:Xy7q\r\n\
a=ice-pwd:2kWwWqg8qY4m4xJ0hQv3rAbC\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=msid:stream audio\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=ssrc:1001 cname:abc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Xy7q\r\n\
a=ice-pwd:2kWwWqg8qY4m4xJ0hQv3rAbC\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=msid:stream video\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 2001 2002\r\n\
a=ssrc:2001 cname:abc\r\n\
a=ssrc:2002 cname:abc\r\n";

/// Trickle-ICE fragments (RFC 8840) as publishers send them: candidates, an ICE
/// restart, the end of candidates.
pub const SDPFRAGS: &[&str] = &[
    "a=ice-ufrag:Xy7q\r\na=ice-pwd:2kWwWqg8qY4m4xJ0hQv3rAbC\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n",
    "a=ice-ufrag:N3wU\r\na=ice-pwd:NewPasswordOfTwentyTwoChars\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:2 1 udp 1686052607 127.0.0.1 50001 typ srflx raddr 127.0.0.1 rport 50001\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\na=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n",
    "a=end-of-candidates\r\n",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n",
];

/// Authorization header values that are not a valid bearer token.
pub const BAD_AUTH: &[&str] = &[
    "Bearer",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "bearer a.b.c",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
    "Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
    "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.c2ln",
    "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
    "Bearer \u{0}",
];

/// Values for the other headers the routes read.
pub const HEADERS: &[(&str, &[&str])] = &[
    (
        "range",
        &[
            "bytes=0-",
            "bytes=0-99",
            "bytes=-5",
            "bytes=5-1",
            "bytes=99999999999999999999-",
            "bytes=0-1,2-3",
            "items=0-1",
            "bytes=--1",
            "bytes=",
        ],
    ),
    ("if-match", &["*", "\"x\"", "W/\"x\"", "", "\"\0\""]),
    (
        "content-type",
        &[
            "application/json",
            "application/sdp",
            "application/trickle-ice-sdpfrag",
            "text/plain",
            "application/json; charset=utf-16",
            "multipart/form-data; boundary=x",
            "",
        ],
    ),
    ("accept", &["*/*", "text/html", "application/json;q=0"]),
    ("x-forwarded-for", &["127.0.0.1", "::1", "garbage"]),
    ("sec-websocket-key", &["dGhlIHNhbXBsZSBub25jZQ=="]),
    ("upgrade", &["websocket"]),
    ("connection", &["upgrade"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use gremium_signaling::access::POLICY;

    /// A new route in the access policy needs a valid request here, or the fuzzer
    /// never reaches it.
    #[test]
    fn every_route_of_the_access_policy_has_a_template() {
        let concrete = |t: &Template| {
            let path = t.path.split('?').next().unwrap_or(t.path);
            ["{meeting}", "{pid}", "{rid}", "{sid}", "{session}"]
                .iter()
                .fold(path.to_string(), |p, ph| p.replace(ph, "x"))
        };
        for rule in POLICY {
            assert!(
                REQUESTS
                    .iter()
                    .any(|t| rule.matches(t.method, &concrete(t))),
                "no fuzz template for {} {}",
                rule.method,
                rule.path
            );
        }
        for t in REQUESTS {
            assert!(
                POLICY.iter().any(|r| r.matches(t.method, &concrete(t))),
                "template {} {} is no route of the access policy",
                t.method,
                t.path
            );
        }
    }
}
