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
use gremium_pipelines::dtls_check::{DtlsCheck, Verdict};
use gremium_pipelines::dtls_fingerprint::pinned_fingerprints;
use gremium_pipelines::publisher::{build_publisher, PublisherSettings, VideoCodec};
use gremium_pipelines::webrtc::{accept_answer, create_offer, negotiation_needed, IceSettings};
use gremium_pipelines::{Pipeline, PipelineSettings};

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

/// One WHIP session: its pipeline (set to Null on drop) and resource.
struct Session {
    pipeline: Pipeline,
    webrtc: gst::Element,
    /// The session's URL (`Location`, made absolute).
    url: String,
    /// `Location` as the server sent it.
    location: String,
    heard: Heard,
    blink: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.blink.take() {
            task.abort();
        }
    }
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

/// How a session ended.
enum Ended {
    /// The user stopped (`--duration` elapsed, Ctrl-C, SIGTERM).
    Stopped,
    /// The publishing pipeline itself ended (an error here, not at the server).
    Pipeline,
    /// The server lost it: come back with a new session.
    Lost(anyhow::Error),
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

/// Build a publisher, POST its offer and wait until the server's certificate matched
/// its answer: a session that publishes.
async fn open_session(plan: &Plan) -> Result<Session, Failure> {
    let a = &plan.args;
    let local = |e: anyhow::Error| Failure::Stop(e);
    let pipeline = Pipeline::new(PipelineSettings {
        name: "publish".into(),
        dot_dir: std::env::temp_dir(),
    });
    let webrtc = build_publisher(&pipeline, &plan.settings).map_err(|e| local(e.into()))?;
    let blink = plan
        .colours
        .map(|colours| blink(&pipeline, colours, a.blink_ms))
        .transpose()
        .map_err(local)?;
    // Nothing is sent until the server's certificate matched its answer's fingerprint.
    let dtls = DtlsCheck::default();
    dtls.hold_outgoing(&webrtc);
    let mut ready = negotiation_needed(&webrtc);
    pipeline.start().map_err(|e| local(e.into()))?;
    let offer = async {
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
            .await
            .context("webrtcbin never asked for negotiation")??;
        anyhow::Ok(create_offer(&webrtc, Duration::from_secs(10)).await?)
    }
    .await
    .map_err(local)?;
    let request = plan
        .http
        .post(format!(
            "{}/whip/{}{}",
            plan.base,
            a.meeting,
            if a.screen { "?content=screen" } else { "" }
        ))
        .bearer_auth(&a.token)
        .header("content-type", "application/sdp")
        .body(offer);
    let (location, body) = whip_exchange(request, "WHIP POST", 201, "location", "")
        .await
        .map_err(|e| match e.status() {
            Some(s) if !comes_back_after(s) => Failure::Stop(e.into()),
            _ => Failure::Retry(e.into()),
        })?;
    let location = location
        .context("WHIP answer without Location")
        .map_err(Failure::Retry)?;
    let url = if location.starts_with("http") {
        location.clone()
    } else {
        format!("{}{location}", plan.base)
    };
    if let Err(e) = verified_answer(&webrtc, &dtls, &body).await {
        // Leave the session the server already made, then refuse.
        let _ = plan.http.delete(&url).bearer_auth(&a.token).send().await;
        return Err(e);
    }
    let heard = Heard::watch(&webrtc, plan.epoch).map_err(local)?;
    println!("publishing to meeting {} (session {location})", a.meeting);
    Ok(Session {
        pipeline,
        webrtc,
        url,
        location,
        heard,
        blink,
    })
}

/// Publish on `s` until the user stops, the pipeline ends or the server lost the
/// session. A silent server (or failed ICE) gets an ICE restart first: a session that
/// survives it carries on. `restart_after` is `--ice-restart-after`, done once per run.
async fn run_session(
    plan: &Plan,
    s: &Session,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    restart_after: &mut Option<u64>,
    restart_failed: &mut Option<anyhow::Error>,
) -> Ended {
    let token = plan.args.token.as_str();
    let after = *restart_after;
    let asked = async move {
        match after {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(asked);
    let mut watch = s.pipeline.watch();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // When the server last said (over HTTP) that the session exists.
    let mut alive: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = stop.as_mut() => return Ended::Stopped,
            // Not the Ref itself: it must not live across the awaits below.
            _ = async { watch.wait_for(|l| l.is_terminal()).await.is_ok() } => {
                eprintln!("publisher pipeline ended: {:?}", s.pipeline.lifecycle());
                return Ended::Pipeline;
            }
            _ = &mut asked, if restart_after.is_some() => {
                *restart_after = None;
                let restarted = tokio::select! {
                    _ = stop.as_mut() => return Ended::Stopped,
                    r = restart_ice(&plan.http, &s.url, token, &s.webrtc) => r,
                };
                match restarted {
                    Ok(etag) => {
                        s.heard.reset(plan.epoch.elapsed());
                        println!("ICE restarted (ETag {etag})");
                    }
                    Err(e) => *restart_failed = Some(e),
                }
            }
            _ = tick.tick() => {
                let now = plan.epoch.elapsed();
                let (heard, ice_failed) = s.heard.get();
                let health = health(now, heard, alive, ice_failed);
                if health == Health::Fine {
                    continue;
                }
                let quiet = now.saturating_sub(heard);
                if health == Health::Check {
                    let checked = tokio::select! {
                        _ = stop.as_mut() => return Ended::Stopped,
                        r = session_exists(&plan.http, &s.url, token) => r,
                    };
                    match checked {
                        Ok(()) => alive = Some(plan.epoch.elapsed()),
                        Err(e) => {
                            return Ended::Lost(anyhow::Error::new(e).context(format!(
                                "nothing heard from the server for {quiet:.1?}"
                            )))
                        }
                    }
                    continue;
                }
                let why = if ice_failed { "ICE failed".to_string() } else { format!("nothing heard from the server for {quiet:.1?}") };
                eprintln!("{why} (session {}): restarting ICE", s.location);
                let restarted = tokio::select! {
                    _ = stop.as_mut() => return Ended::Stopped,
                    r = restart_ice(&plan.http, &s.url, token, &s.webrtc) => r,
                };
                match restarted {
                    Ok(etag) => {
                        s.heard.reset(plan.epoch.elapsed());
                        println!("ICE restarted (ETag {etag})");
                    }
                    Err(e) => return Ended::Lost(e.context(why)),
                }
            }
        }
    }
}

/// What a session heard from the server: the time of its last packet (DTLS or
/// SRTCP: libnice keeps STUN to itself, so these are the server's own packets) and
/// whether ICE failed, both written from GStreamer threads.
struct Heard {
    last_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ice_failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Heard {
    /// Watch the ICE sources under `webrtc` (they exist once the answer is applied).
    fn watch(webrtc: &gst::Element, epoch: std::time::Instant) -> anyhow::Result<Heard> {
        use gst::prelude::*;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let heard = Heard {
            last_ms: Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64)),
            ice_failed: Arc::new(AtomicBool::new(false)),
        };
        let bin = webrtc
            .downcast_ref::<gst::Bin>()
            .context("webrtcbin is not a bin")?;
        let sources: Vec<gst::Element> = bin
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "nicesrc"))
            .collect();
        if sources.is_empty() {
            bail!("no ICE source in the publisher to watch the server with");
        }
        for src in sources {
            let pad = src.static_pad("src").context("nicesrc without a src pad")?;
            let last = heard.last_ms.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| {
                    last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                },
            );
        }
        let failed = heard.ice_failed.clone();
        webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
            use gremium_pipelines::webrtc::IceConnectionState;
            let state: IceConnectionState = w.property("ice-connection-state");
            if state == IceConnectionState::Failed {
                failed.store(true, Ordering::Relaxed);
            }
        });
        Ok(heard)
    }

    /// When the server was last heard (since the epoch), and whether ICE failed.
    fn get(&self) -> (Duration, bool) {
        use std::sync::atomic::Ordering;
        (
            Duration::from_millis(self.last_ms.load(Ordering::Relaxed)),
            self.ice_failed.load(Ordering::Relaxed),
        )
    }

    /// Heard now (after an ICE restart the server answered).
    fn reset(&self, now: Duration) {
        use std::sync::atomic::Ordering;
        self.last_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
        self.ice_failed.store(false, Ordering::Relaxed);
    }
}

/// How long the DTLS handshake with the server may take.
const DTLS_TIMEOUT: Duration = Duration::from_secs(15);

/// Apply the WHIP answer and wait until the server's DTLS certificate matched the
/// answer's `a=fingerprint` (RFC 8122; webrtcbin does not check it). A certificate
/// that is not the announced one is final; no connection in time is worth a retry.
async fn verified_answer(
    webrtc: &gst::Element,
    dtls: &DtlsCheck,
    answer: &str,
) -> Result<(), Failure> {
    let pins = pinned_fingerprints(answer)
        .map_err(|e| Failure::Stop(anyhow::anyhow!("refusing the WHIP answer: {e}")))?;
    dtls.set_pins(pins);
    accept_answer(webrtc, answer)
        .await
        .map_err(|e| Failure::Retry(e.into()))?;
    dtls.watch(webrtc);
    let mut verdicts = dtls.verdicts();
    let verdict = tokio::time::timeout(DTLS_TIMEOUT, verdicts.wait_for(|v| *v != Verdict::Pending))
        .await
        .map_err(|_| {
            Failure::Retry(anyhow::anyhow!(
                "no DTLS connection with the server within {DTLS_TIMEOUT:?}"
            ))
        })?
        .map(|v| *v)
        .unwrap_or(Verdict::Pending);
    match verdict {
        Verdict::Verified => Ok(()),
        Verdict::Rejected(why) => Err(Failure::Stop(anyhow::anyhow!(
            "refusing to publish: {why} (the WHIP server's certificate is not the one its \
             answer announced: someone may be intercepting the connection)"
        ))),
        Verdict::Pending => Err(Failure::Retry(anyhow::anyhow!(
            "the DTLS check did not finish"
        ))),
    }
}

/// A WHIP request that did not get the answer it expected.
#[derive(Debug)]
enum WhipError {
    /// No answer at all (connection refused or reset, timeout).
    Unanswered { what: String, why: String },
    /// Answered with another status.
    Status {
        about: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

impl WhipError {
    /// The status the server answered with, if it answered.
    fn status(&self) -> Option<u16> {
        match self {
            WhipError::Unanswered { .. } => None,
            WhipError::Status { status, .. } => Some(status.as_u16()),
        }
    }
}

impl std::fmt::Display for WhipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhipError::Unanswered { what, why } => write!(f, "{what} failed: {why}"),
            WhipError::Status {
                about,
                status,
                body,
            } => write!(f, "WHIP server answered {about}{status}: {body}"),
        }
    }
}

impl std::error::Error for WhipError {}

/// Send a WHIP request and read the answer: one header (`header`) and the body.
/// Any status but `expected` is an error with the server's text; `what` names the
/// request, `about` what the server answered to (empty for the offer).
async fn whip_exchange(
    request: reqwest::RequestBuilder,
    what: &str,
    expected: u16,
    header: &str,
    about: &str,
) -> Result<(Option<String>, String), WhipError> {
    let response = request.send().await.map_err(|e| WhipError::Unanswered {
        what: what.to_string(),
        why: e.without_url().to_string(),
    })?;
    let status = response.status();
    let value = response
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap_or_default();
    if status.as_u16() != expected {
        return Err(WhipError::Status {
            about: about.to_string(),
            status,
            body,
        });
    }
    Ok((value, body))
}

/// Whether the server still has the session: a trickle PATCH that carries only
/// `a=end-of-candidates` (RFC 8840) changes nothing and is answered `204`, or `404`
/// once the session is gone (no answer: the server is down).
async fn session_exists(http: &reqwest::Client, url: &str, token: &str) -> Result<(), WhipError> {
    let request = http
        .patch(url)
        .bearer_auth(token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .timeout(PATCH_TIMEOUT)
        .body("a=end-of-candidates\r\n");
    whip_exchange(
        request,
        "WHIP PATCH",
        204,
        "etag",
        "the session check with ",
    )
    .await
    .map(|_| ())
}

/// How long an ICE restart's PATCH may wait for its answer: a server that does not
/// answer by then is as good as gone.
const PATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Restart ICE on the libnice stream under `webrtc` and tell the WHIP session (PATCH
/// with our new credentials and candidates, `If-Match: *` as RFC 9725 §4.4.2 asks);
/// apply the credentials and candidates of its `200` and wait until the new ICE
/// session selected a pair. Returns the new ETag.
async fn restart_ice(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    webrtc: &gst::Element,
) -> anyhow::Result<String> {
    use gremium_pipelines::ice_restart::{apply_remote_ice, restart_local_ice, SelectedPairWatch};
    use gremium_signaling::api::whip::{parse_sdpfrag, render_sdpfrag};
    let mut pair = SelectedPairWatch::new(webrtc);
    let local = restart_local_ice(webrtc).context("restarting ICE")?;
    let request = http
        .patch(url)
        .bearer_auth(token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", "*")
        .timeout(PATCH_TIMEOUT)
        .body(render_sdpfrag(&local.ufrag, &local.pwd, &local.candidates));
    let (etag, body) =
        whip_exchange(request, "WHIP PATCH", 200, "etag", "the ICE restart with ").await?;
    let frag = parse_sdpfrag(&body).map_err(|e| anyhow::anyhow!("ICE restart answer: {e}"))?;
    let (Some(ufrag), Some(pwd)) = (frag.ufrag, frag.pwd) else {
        bail!("ICE restart answer without a=ice-ufrag and a=ice-pwd");
    };
    let candidates: Vec<String> = frag.candidates.into_iter().map(|(_, c)| c).collect();
    apply_remote_ice(webrtc, &ufrag, &pwd, &candidates).context("applying the ICE restart")?;
    if !pair.selected(Duration::from_secs(10)).await {
        bail!("the restarted ICE session selected no candidate pair within 10 s");
    }
    etag.context("ICE restart answer without ETag")
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
        assert_eq!(health(s(14), s(5), Some(s(9)), false), Health::Fine);
        assert_eq!(health(s(14), s(5), Some(ms(9999)), false), Health::Check);
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
