//! `gremium publish`: a synthetic participant publishing over WHIP. Builds the
//! publisher from `pipelines`, does the HTTP exchange, and leaves with DELETE.
//!
//! It comes back by itself when its session is gone (the server restarted, or in a
//! cluster the media node died): after [`CHECK_AFTER`] without a packet from the
//! server it asks whether the session still exists (a no-op trickle PATCH), after
//! [`RESTART_AFTER`] (or when ICE failed) it restarts ICE with a PATCH. A PATCH that
//! fails (`404`: the session is gone; no answer: the server is restarting) ends the
//! session, and a new one is POSTed with the same token, with a jittered backoff
//! (1, 2, 4 … at most 10 s), for as long as it publishes. A POST refused with a 4xx
//! that will not change (`401`/`403`: token revoked or participant removed, `409`/
//! `410`: meeting ended, `404`: meeting gone) stops it with that message and a
//! non-zero exit. When to check, restart or retry and how long to wait are pure
//! functions ([`health`], [`comes_back_after`], [`backoff`]).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use gremium_pipelines::publisher::{PublisherSettings, VideoCodec};
use gremium_pipelines::webrtc::IceSettings;
use gremium_pipelines::Pipeline;

mod session;

use session::{open_session, run_session, Ended};

/// Validated `gremium publish` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Gremium base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub server: String,
    /// Meeting id.
    #[arg(long)]
    pub meeting: uuid::Uuid,
    /// The participant's join token.
    #[arg(long, env = "GREMIUM_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// videotestsrc pattern (smpte, ball, snow, …).
    #[arg(long, default_value = "smpte")]
    pub pattern: String,
    /// Solid colour instead of a pattern, RRGGBB.
    #[arg(long)]
    pub color: Option<String>,
    /// Microphone tone in Hz.
    #[arg(long, default_value_t = 440.0)]
    pub tone: f64,
    /// Video codec: vp8 or h264.
    #[arg(long, default_value = "vp8")]
    pub codec: String,
    /// Seconds to publish (0: until Ctrl-C or SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Gather ICE candidates only on these local addresses (repeatable).
    #[arg(long = "ice-address")]
    pub ice_addresses: Vec<std::net::IpAddr>,
    /// Frame width.
    #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(i32).range(16..=3840))]
    pub width: i32,
    /// Frame height.
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(i32).range(16..=2160))]
    pub height: i32,
    /// Frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i32).range(1..=60))]
    pub fps: i32,
    /// Publish as a screen share (`?content=screen`): featured by the screen-share layout.
    #[arg(long)]
    pub screen: bool,
    /// Alternate `--color` with this colour (RRGGBB) every `--blink-ms`, aligned to
    /// the wall clock: this colour while `unix_ms / blink_ms` is odd. A latency probe.
    #[arg(long, requires = "color")]
    pub blink_color: Option<String>,
    /// Period of `--blink-color`, in milliseconds.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub blink_ms: u64,
    /// Restart ICE this many seconds after publishing began (WHIP PATCH, RFC 9725
    /// §4.4.2), as after a network change; media keeps flowing on the same session.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ice_restart_after: Option<u64>,
}

fn parse_rgb(flag: &str, c: &str) -> anyhow::Result<u32> {
    let hex = c.trim_start_matches('#');
    if hex.len() != 6 {
        bail!("{flag}: expected RRGGBB, e.g. 00ff00");
    }
    u32::from_str_radix(hex, 16).with_context(|| format!("{flag}: expected RRGGBB hex"))
}

/// Switch the synthetic camera between two colours on wall-clock boundaries; the
/// task stops when the returned handle is aborted (the session's pipeline goes).
fn blink(
    pipeline: &Pipeline,
    colours: [u32; 2],
    period_ms: u64,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use gst::prelude::*;
    let src = pipeline
        .gst()
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "videotestsrc"))
        .context("no videotestsrc to blink")?;
    Ok(tokio::spawn(async move {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            let phase = (now / period_ms) % 2;
            src.set_property(
                "foreground-color",
                0xff00_0000u32 | (colours[phase as usize] & 0x00ff_ffff),
            );
            let next = (now / period_ms + 1) * period_ms;
            tokio::time::sleep(Duration::from_millis(next - now)).await;
        }
    }))
}

/// After this long without a packet from the server the session is checked over
/// HTTP. The server's RTCP receiver reports, all it sends to a publisher, come every
/// 2–7 s (RFC 3550's randomised 5 s): a quiet spell alone proves nothing.
const CHECK_AFTER: Duration = Duration::from_secs(4);

/// After this long without a packet (well past the longest RTCP interval) ICE is
/// restarted even though the server says the session exists: the path broke.
const RESTART_AFTER: Duration = Duration::from_secs(12);

/// Longest wait between two attempts to come back.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the validated arguments fix for every session of this run.
struct Plan {
    args: PublishArgs,
    settings: PublisherSettings,
    colours: Option<[u32; 2]>,
    http: reqwest::Client,
    base: String,
    /// Zero of the "last heard" clock shared with the GStreamer threads.
    epoch: std::time::Instant,
}

/// Why an attempt to (re)start a session did not give one.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (no answer, 5xx, no DTLS connection in time).
    Retry(anyhow::Error),
    /// Not: refused for good, a certificate that is not the announced one, or a
    /// local fault.
    Stop(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Retry(e) | Failure::Stop(e) => e,
        }
    }
}

/// Whether a WHIP POST answered `status` is worth repeating while coming back: no
/// answer or a 5xx (the server or a media node restarting, a full cluster), 408, 425
/// and 429 are; any other 4xx says this participant cannot come back (401/403: token
/// revoked or participant removed; 404: meeting or participant gone; 409/410: meeting
/// ended or participant left; 400/413/415/422: the offer itself).
fn comes_back_after(status: u16) -> bool {
    !(400..500).contains(&status) || matches!(status, 408 | 425 | 429)
}

/// The wait before attempt `attempt` (0 for the first) to come back: 1, 2, 4, 8, then
/// 10 s, each scaled by `0.5 + jitter / 2` (`jitter` in [0, 1)) so that publishers who
/// lost their session together do not come back in lockstep.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    let full = Duration::from_secs(1u64 << attempt.min(4)).min(MAX_BACKOFF);
    full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// What a publishing session needs at `now`, from when the server was last heard,
/// when the session was last found alive over HTTP and whether ICE failed (all times
/// since one epoch).
#[derive(Debug, PartialEq, Eq)]
enum Health {
    /// Heard recently enough, or quiet but just found alive.
    Fine,
    /// Quiet: ask the server whether the session still exists.
    Check,
    /// ICE failed or silent too long: restart ICE.
    Restart,
}

fn health(now: Duration, heard: Duration, alive: Option<Duration>, ice_failed: bool) -> Health {
    let quiet = now.saturating_sub(heard);
    if ice_failed || quiet > RESTART_AFTER {
        Health::Restart
    } else if quiet <= CHECK_AFTER || alive.is_some_and(|a| now.saturating_sub(a) <= CHECK_AFTER) {
        Health::Fine
    } else {
        Health::Check
    }
}

pub async fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let color = a
        .color
        .as_deref()
        .map(|c| parse_rgb("--color", c))
        .transpose()?;
    let blink_color = a
        .blink_color
        .as_deref()
        .map(|c| parse_rgb("--blink-color", c))
        .transpose()?;
    let codec = match a.codec.as_str() {
        "vp8" => VideoCodec::Vp8,
        "h264" => VideoCodec::H264,
        other => bail!("--codec: {other:?} is not one of vp8, h264"),
    };
    if !(20.0..=20000.0).contains(&a.tone) {
        bail!("--tone: between 20 and 20000 Hz");
    }
    let runtime = gremium_pipelines::init().context("initialising GStreamer")?;
    if !runtime.missing.is_empty() {
        bail!(
            "GStreamer elements missing: {:?} (see `gremium doctor`)",
            runtime.missing
        );
    }
    let settings = PublisherSettings {
        pattern: a.pattern.clone(),
        color,
        tone_hz: a.tone,
        codec,
        ice: IceSettings {
            local_addresses: a.ice_addresses.clone(),
            ..Default::default()
        },
        width: a.width,
        height: a.height,
        fps: a.fps,
    };
    let plan = Plan {
        base: a.server.trim_end_matches('/').to_string(),
        args: a,
        settings,
        colours: color.zip(blink_color).map(|(x, y)| [x, y]),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        epoch: std::time::Instant::now(),
    };
    // The first session is made as before: any failure ends the command.
    let mut session = Some(open_session(&plan).await.map_err(Failure::into_error)?);
    let stop = async {
        if plan.args.duration > 0 {
            tokio::time::sleep(Duration::from_secs(plan.args.duration)).await;
        } else {
            crate::wiring::wait_for_signal().await;
        }
    };
    tokio::pin!(stop);
    let mut restart_after = plan.args.ice_restart_after;
    let mut restart_failed = None;
    let mut attempt = 0u32;
    loop {
        let Some(current) = session.take() else {
            let wait = backoff(attempt, rand::random::<f64>());
            eprintln!(
                "reconnecting… attempt {} in {:.1} s",
                attempt + 1,
                wait.as_secs_f64()
            );
            let opened = tokio::select! {
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
                opened = async {
                    tokio::time::sleep(wait).await;
                    open_session(&plan).await
                } => opened,
            };
            match opened {
                Ok(s) => {
                    println!("reconnected after {} attempt(s)", attempt + 1);
                    session = Some(s);
                    attempt = 0;
                }
                Err(Failure::Retry(e)) => {
                    eprintln!("reconnecting… attempt {} failed: {e:#}", attempt + 1);
                    attempt = attempt.saturating_add(1);
                }
                Err(Failure::Stop(e)) => {
                    return Err(e.context("the publishing session was lost and cannot come back"))
                }
            }
            continue;
        };
        let ended = run_session(
            &plan,
            &current,
            &mut stop,
            &mut restart_after,
            &mut restart_failed,
        )
        .await;
        match ended {
            Ended::Lost(why) => {
                eprintln!("reconnecting… the publishing session is gone: {why:#}");
                drop(current);
            }
            Ended::Pipeline | Ended::Stopped => {
                let left = plan
                    .http
                    .delete(&current.url)
                    .bearer_auth(&plan.args.token)
                    .send()
                    .await;
                drop(current);
                if let Some(e) = restart_failed {
                    return Err(e.context("ICE restart"));
                }
                return match left {
                    Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
                    Ok(r) => bail!("WHIP DELETE answered {}", r.status()),
                    Err(e) => bail!("WHIP DELETE failed: {}", e.without_url()),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds_and_jitters_downwards_only() {
        let secs = |attempt, jitter| backoff(attempt, jitter).as_secs_f64();
        let full: Vec<f64> = (0..7).map(|n| secs(n, 1.0)).collect();
        assert_eq!(full, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]);
        assert_eq!(secs(0, 0.0), 0.5);
        assert_eq!(secs(u32::MAX, 0.0), 5.0);
        for jitter in [0.0, 0.3, 0.999, -1.0, 7.0] {
            for attempt in 0..20 {
                let d = backoff(attempt, jitter);
                assert!(d >= Duration::from_millis(500) && d <= MAX_BACKOFF, "{d:?}");
            }
        }
    }

    #[test]
    fn a_quiet_session_is_checked_and_a_silent_or_failed_one_restarted() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // RTCP every few seconds: nothing to do.
        assert_eq!(health(s(10), s(7), None, false), Health::Fine);
        assert_eq!(health(s(10), s(6), None, false), Health::Fine);
        // Quiet longer than an RTCP interval may be: ask the server.
        assert_eq!(health(s(10), ms(5999), None, false), Health::Check);
        // It said the session exists: not again for a while, but then again.
        assert_eq!(health(s(10), s(5), Some(s(9)), false), Health::Fine);
        assert_eq!(health(s(13), s(5), Some(s(9)), false), Health::Fine);
        assert_eq!(health(s(13), s(5), Some(ms(8999)), false), Health::Check);
        // Silent past any RTCP interval although the session exists, or ICE failed.
        assert_eq!(health(s(18), ms(5999), Some(s(18)), false), Health::Restart);
        assert_eq!(health(s(10), s(10), None, true), Health::Restart);
        // A clock read before the last packet was stored.
        assert_eq!(health(s(1), s(2), None, false), Health::Fine);
    }

    #[test]
    fn only_answers_that_may_change_are_retried() {
        // A removed participant (401/403), an ended meeting (409/410) or a gone
        // meeting (404) must not come back.
        for status in [400, 401, 403, 404, 409, 410, 413, 415, 422] {
            assert!(!comes_back_after(status), "{status}");
        }
        // A restarting server, a dead media node, a full cluster, a slow proxy.
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(comes_back_after(status), "{status}");
        }
    }
}
