//! The HTTP side's sections: `[connections]` (what a reverse proxy would enforce),
//! `[limits]`, `[websockets]`, `[web]` (the viewer's player file) and `[pages]` (the
//! consent dialog's texts).
//!
//! Owns: validating those keys into the settings the listener and the API take, with
//! errors that name the key. Must not: open sockets or read the player file (only its
//! path is resolved here, against the working directory at start).

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::schema::{
    BilingualConfig, ConnectionsConfig, LimitsConfig, PagesConfig, WebConfig, WebSocketsConfig,
};

impl WebSocketsConfig {
    pub(super) fn settings(&self) -> anyhow::Result<gremium_signaling::WebSocketSettings> {
        let d = gremium_signaling::WebSocketSettings::default();
        let s = gremium_signaling::WebSocketSettings {
            max_per_token: self.max_per_token.unwrap_or(d.max_per_token),
            max_per_meeting: self.max_per_meeting.unwrap_or(d.max_per_meeting),
            queue_messages: self.queue_messages.unwrap_or(d.queue_messages),
        };
        if !(1..=1000).contains(&s.max_per_token) {
            bail!("websockets.max_per_token: must be between 1 and 1000");
        }
        if !(1..=100_000).contains(&s.max_per_meeting) {
            bail!("websockets.max_per_meeting: must be between 1 and 100000");
        }
        if !(8..=4096).contains(&s.queue_messages) {
            bail!("websockets.queue_messages: must be between 8 and 4096");
        }
        Ok(s)
    }
}

/// Longest consent text accepted (a dialog, not a privacy policy).
const MAX_PAGE_TEXT: usize = 2000;

fn page_text(key: &str, text: String) -> anyhow::Result<String> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_PAGE_TEXT {
        bail!("{key}: must be 1 to {MAX_PAGE_TEXT} characters");
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        bail!("{key}: must not contain control characters");
    }
    Ok(text)
}

pub(super) fn consent_texts(c: PagesConfig) -> anyhow::Result<gremium_signaling::ConsentTexts> {
    let defaults = gremium_signaling::ConsentTexts::default();
    fn bilingual(
        key: &str,
        c: Option<BilingualConfig>,
        default: gremium_signaling::Bilingual,
    ) -> anyhow::Result<gremium_signaling::Bilingual> {
        Ok(match c {
            None => default,
            Some(b) => gremium_signaling::Bilingual {
                de: page_text(&format!("{key}.de"), b.de)?,
                en: page_text(&format!("{key}.en"), b.en)?,
            },
        })
    }
    Ok(gremium_signaling::ConsentTexts {
        controller: match c.controller {
            None => defaults.controller,
            Some(t) => page_text("pages.controller", t)?,
        },
        purpose_recording: bilingual(
            "pages.purpose_recording",
            c.purpose_recording,
            defaults.purpose_recording,
        )?,
        purpose_streaming: bilingual(
            "pages.purpose_streaming",
            c.purpose_streaming,
            defaults.purpose_streaming,
        )?,
    })
}

/// `[web].player_js` (`GREMIUM_PLAYER_JS` wins) as an absolute path; `None` for `""`.
pub(super) fn player_js(c: &WebConfig) -> anyhow::Result<Option<PathBuf>> {
    let player_js = std::env::var_os("GREMIUM_PLAYER_JS")
        .map(PathBuf::from)
        .or(c.player_js.clone())
        .unwrap_or_else(|| PathBuf::from(gremium_signaling::DEFAULT_PLAYER_JS));
    // Relative to where the service starts, not to where a later chdir might lead.
    let player_js = if player_js.as_os_str().is_empty() {
        None
    } else if player_js.is_relative() {
        let cwd = std::env::current_dir().context("web.player_js: no working directory")?;
        Some(cwd.join(player_js))
    } else {
        Some(player_js)
    };
    Ok(player_js)
}

/// `[limits].max_body_bytes`.
pub(super) fn max_body_bytes(c: &LimitsConfig) -> anyhow::Result<usize> {
    let max_body_bytes = c.max_body_bytes.unwrap_or(64 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
        bail!("limits.max_body_bytes: must be between 1024 and 67108864");
    }
    Ok(max_body_bytes)
}

pub(super) fn connection_limits(
    c: &ConnectionsConfig,
) -> anyhow::Result<crate::admission::ConnectionLimits> {
    let d = crate::admission::ConnectionLimits::default();
    let header = c
        .header_read_timeout_secs
        .unwrap_or(d.header_read_timeout.as_secs());
    if !(1..=300).contains(&header) {
        bail!("connections.header_read_timeout_secs: must be between 1 and 300");
    }
    let idle = c.idle_timeout_secs.unwrap_or(d.idle_timeout.as_secs());
    if !(1..=3600).contains(&idle) {
        bail!("connections.idle_timeout_secs: must be between 1 and 3600");
    }
    let max = c.max_connections.unwrap_or(d.max_connections);
    if !(16..=1_000_000).contains(&max) {
        bail!("connections.max_connections: must be between 16 and 1000000");
    }
    let per_client = c
        .max_connections_per_client
        .unwrap_or(d.max_per_client.min(max));
    if !(1..=max).contains(&per_client) {
        bail!(
            "connections.max_connections_per_client: must be between 1 and max_connections ({max})"
        );
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in c.trusted_proxies.iter().enumerate() {
        match p.parse::<std::net::IpAddr>() {
            Ok(ip) => trusted_proxies.push(ip.to_canonical()),
            Err(_) => bail!("connections.trusted_proxies[{i}]: {p:?} is not an IP address"),
        }
    }
    let grace = c.shutdown_grace_secs.unwrap_or(d.shutdown_grace.as_secs());
    if grace > 300 {
        bail!("connections.shutdown_grace_secs: must be at most 300");
    }
    Ok(crate::admission::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(header),
        idle_timeout: std::time::Duration::from_secs(idle),
        max_connections: max,
        max_per_client: per_client,
        trusted_proxies,
        shutdown_grace: std::time::Duration::from_secs(grace),
    })
}
