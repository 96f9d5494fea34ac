//! One WHIP session of `gremium publish`: build the publisher, POST its offer, check
//! the server's certificate, then publish while watching whether the server still
//! has the session (its packets, a no-op trickle PATCH, an ICE restart), and the
//! HTTP exchanges that takes. What to do when it is gone is the caller's
//! (`super::publish`).

use std::time::Duration;

use anyhow::{bail, Context};
use gremium_pipelines::dtls_check::{DtlsCheck, Verdict};
use gremium_pipelines::dtls_fingerprint::pinned_fingerprints;
use gremium_pipelines::publisher::build_publisher;
use gremium_pipelines::webrtc::{accept_answer, create_offer, negotiation_needed};
use gremium_pipelines::{Pipeline, PipelineSettings};

use super::{blink, comes_back_after, health, Failure, Health, Plan};

/// One WHIP session: its pipeline (set to Null on drop) and resource.
pub(super) struct Session {
    pipeline: Pipeline,
    webrtc: gst::Element,
    /// The session's URL (`Location`, made absolute).
    pub(super) url: String,
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

/// How a session ended.
pub(super) enum Ended {
    /// The user stopped (`--duration` elapsed, Ctrl-C, SIGTERM).
    Stopped,
    /// The publishing pipeline itself ended (an error here, not at the server).
    Pipeline,
    /// The server lost it: come back with a new session.
    Lost(anyhow::Error),
}

/// Build a publisher, POST its offer and wait until the server's certificate matched
/// its answer: a session that publishes.
pub(super) async fn open_session(plan: &Plan) -> Result<Session, Failure> {
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
pub(super) async fn run_session(
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
