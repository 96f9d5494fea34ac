//! RTMP(S) push of the livestream to external platforms, sharing the HLS encodes.
//!
//! Owns: the destinations added to an [`HlsBin`](crate::hls::HlsBin) with
//! [`HlsBin::add_rtmp`](crate::hls::HlsBin::add_rtmp). No second encode: each
//! destination takes the H.264 of the HLS bin's top rendition (a `tee` after its
//! `h264parse`, named `rtmp-video-tee`) and the one shared AAC (`audio-tee`):
//!
//! ```text
//! rtmp-video-tee ─ video ┐                                    (one DestBin per attempt)
//!                        ├ queue (leaky) ─ h264parse ─┐
//! audio-tee ───── audio ─┴ queue (leaky) ─────────────┴ flvmux streamable ─ rtmp2sink
//! ```
//!
//! Isolation: the queues leak (drop the oldest data) instead of blocking, so a stuck
//! destination never back-pressures HLS or the other destinations; the bin's ghost
//! pads swallow every flow error of the branch (a dead sink returns an error flow up
//! through the queue, which the `tee` would pass on to the encoder); and the bin keeps
//! its children's error messages off the pipeline's bus (see `dest_bin`).
//!
//! Retry: each destination has a supervisor thread. On an error (connection refused,
//! reset mid-stream, or not live within [`LIVE_TIMEOUT`]) it tears the branch down and,
//! after a backoff of [`BACKOFF_START`] doubling up to [`BACKOFF_MAX`], builds a fresh
//! one (new `flvmux` and `rtmp2sink`). A fresh branch drops video until the next
//! keyframe (at most one HLS segment away) and audio until then, so the muxer always
//! starts on a keyframe; no keyframe is forced upstream, which would cost the HLS
//! ladder and the other destinations bits for a retry that may fail again.
//!
//! Status ([`RtmpStatus`]): `Connecting` until the first connection of a destination
//! is up; `Live` while media flows to the server; `Retrying { attempt, last_error }`
//! after `attempt` failures in a row (also while the next attempt is running);
//! `Stopped` once removed or finished. Readable any time and observable through a
//! `tokio::sync::watch` channel.
//!
//! Secrets: the stream key is never logged nor put in an error or status string; URLs
//! are shown through [`redact_location`]. GStreamer's RTMP library logs the stream
//! name (the key) at INFO (`rtmpclient`: "Sending publish for 'KEY'") and the location
//! at DEBUG (`rtmp2locationhandler`), so the first destination added caps these two
//! debug categories at WARNING (`gst::log::set_threshold_for_name`; a later
//! `GST_DEBUG` change by the process can undo that). Pipeline graph dumps
//! (`GST_DEBUG_DUMP_DOT_DIR`) show the `location` property: never enable them where
//! they leave the host while a destination runs.
//!
//! Must not: know meetings or platforms (YouTube, …): the caller passes URL and key.
//!
//! Modules: `outputs` (the destinations of one HLS bin), `supervisor` (one thread per
//! destination), [`retry`] (the pure retry state: attempts, backoff, status), `branch`
//! (one attempt's GStreamer branch), `dest_bin` (the bin that keeps a destination's
//! errors off the bus).

mod branch;
mod dest_bin;
mod outputs;
pub mod retry;
mod supervisor;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use dest_bin::DestMessage;
pub(crate) use outputs::RtmpOutputs;

/// First wait after a failed attempt.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An attempt that is not live after this long counts as failed.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a removed destination may take to send what it has queued.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// State of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpStatus {
    /// The first connection is being made.
    Connecting,
    /// Media is flowing to the server.
    Live,
    /// `attempt` attempts failed in a row; the next one is waiting for its backoff or
    /// running. `last_error` is redacted.
    Retrying {
        /// Failed attempts in a row (1 after the first failure).
        attempt: u32,
        /// What went wrong last, without the stream key.
        last_error: String,
    },
    /// Removed, or the stream finished.
    Stopped,
}

/// The caller's handle on one destination.
#[derive(Debug, Clone)]
pub struct RtmpHandle {
    id: String,
    location: String,
    status: watch::Receiver<BTreeMap<String, RtmpStatus>>,
}

impl RtmpHandle {
    /// The destination's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The push location with the stream key replaced by `***`.
    pub fn redacted_location(&self) -> &str {
        &self.location
    }

    /// The current status.
    pub fn status(&self) -> RtmpStatus {
        self.status
            .borrow()
            .get(&self.id)
            .cloned()
            .unwrap_or(RtmpStatus::Stopped)
    }
}

/// `url` + `/` + `key` (no doubled slash).
pub fn join_location(url: &str, key: &str) -> String {
    format!("{}/{key}", url.trim_end_matches('/'))
}

/// What may be shown of a push location (`url` + `/` + key): scheme, host, port and
/// application only, `rtmp://user:pw@host/app/x/KEY?t=1` → `rtmp://host/app/…`. The
/// whole URL is secret-bearing (platforms put keys in user info, path or query); see
/// [`gremium_protocol::redact_rtmp_url`], which the API and the ledger use too.
pub fn redact_location(location: &str) -> String {
    // The last path segment is the key: without it, a URL without an application
    // (`rtmp://host` + key) does not show the key as its application.
    let url = match location.rsplit_once('/') {
        Some((url, _)) if url.contains("://") && !url.ends_with('/') => url,
        _ => location,
    };
    gremium_protocol::redact_rtmp_url(url)
}

/// `text` (an error a library wrote) without the location, the key or any other
/// secret-bearing part of the URL (user info, path, query).
fn redact_text(text: &str, location: &str, key: &str) -> String {
    let mut out = text.replace(location, &redact_location(location));
    let mut secrets = gremium_protocol::rtmp_url_secrets(location);
    if !key.is_empty() {
        secrets.push(key.to_string());
        // The URL as given (a query ends at the key's `/` only in the location).
        if let Some(url) = location.strip_suffix(&format!("/{key}")) {
            secrets.extend(gremium_protocol::rtmp_url_secrets(url));
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        out = out.replace(&secret, "***");
    }
    out
}

/// Commands and reports to a destination's supervisor.
enum Ctl {
    /// A branch reported (with the attempt number it belongs to).
    Branch(u32, DestMessage),
    /// A branch carried enough media: the server takes it.
    Live(u32),
    /// Stop the destination (EOS, then tear down).
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        let loc = join_location("rtmp://a.example/live2/", "abcd-SECRET");
        assert_eq!(loc, "rtmp://a.example/live2/abcd-SECRET");
        assert_eq!(redact_location(&loc), "rtmp://a.example/live2/…");
        assert_eq!(
            redact_location("rtmps://u:pw@h:443/app/k?x=1"),
            "rtmps://h:443/app/…"
        );
        assert_eq!(redact_location("rtmp://h/KEY-ONLY"), "rtmp://h/…");
        assert_eq!(redact_location("rtmp://h"), "rtmp://h/…");
        let text = format!("Could not connect to {loc}: refused; stream abcd-SECRET");
        let red = redact_text(&text, &loc, "abcd-SECRET");
        assert!(!red.contains("SECRET"), "{red}");
        assert!(red.contains("rtmp://a.example/live2/…"), "{red}");
        let red = redact_text("user u:pwd failed", "rtmps://u:pwd@h/app/k", "k");
        assert!(!red.contains("pwd"), "{red}");
        // Keys in the URL's path and query, quoted apart from the location.
        let loc = join_location("rtmp://h/app/PATHSECRET?token=QUERYSECRET", "KEYSECRET");
        let red = redact_text(
            "stream 'PATHSECRET' app 'app?token=QUERYSECRET' key KEYSECRET",
            &loc,
            "KEYSECRET",
        );
        assert!(!red.contains("SECRET"), "{red}");
    }
}
