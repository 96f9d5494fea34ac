//! `gremium publish`: a synthetic participant publishing over WHIP. Builds the
//! publisher from `pipelines`, does the HTTP exchange, and leaves with DELETE.

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

/// Switch the synthetic camera between two colours on wall-clock boundaries.
fn blink(pipeline: &Pipeline, colours: [u32; 2], period_ms: u64) -> anyhow::Result<()> {
    use gst::prelude::*;
    let src = pipeline
        .gst()
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "videotestsrc"))
        .context("no videotestsrc to blink")?;
    tokio::spawn(async move {
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
    });
    Ok(())
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
    let pipeline = Pipeline::new(PipelineSettings {
        name: "publish".into(),
        dot_dir: std::env::temp_dir(),
    });
    let webrtc = build_publisher(&pipeline, &settings)?;
    if let (Some(a_rgb), Some(b_rgb)) = (color, blink_color) {
        blink(&pipeline, [a_rgb, b_rgb], a.blink_ms)?;
    }
    // Nothing is sent until the server's certificate matched its answer's fingerprint.
    let dtls = DtlsCheck::default();
    dtls.hold_outgoing(&webrtc);
    let mut ready = negotiation_needed(&webrtc);
    pipeline.start()?;
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .context("webrtcbin never asked for negotiation")??;
    let offer = create_offer(&webrtc, Duration::from_secs(10)).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = a.server.trim_end_matches('/');
    let request = http
        .post(format!(
            "{base}/whip/{}{}",
            a.meeting,
            if a.screen { "?content=screen" } else { "" }
        ))
        .bearer_auth(&a.token)
        .header("content-type", "application/sdp")
        .body(offer);
    let (location, body) = whip_exchange(request, "WHIP POST", 201, "location", "").await?;
    let location = location.context("WHIP answer without Location")?;
    let url = if location.starts_with("http") {
        location.clone()
    } else {
        format!("{base}{location}")
    };
    if let Err(e) = verified_answer(&webrtc, &dtls, &body).await {
        // Leave the session the server already made, then refuse.
        let _ = http.delete(&url).bearer_auth(&a.token).send().await;
        drop(pipeline);
        return Err(e);
    }
    println!("publishing to meeting {} (session {location})", a.meeting);

    let mut restart_failed = None;
    {
        let stop = async {
            if a.duration > 0 {
                tokio::time::sleep(Duration::from_secs(a.duration)).await;
            } else {
                crate::wiring::wait_for_signal().await;
            }
        };
        let restart_after = a.ice_restart_after;
        let mut restart_pending = restart_after.is_some();
        let restart = async {
            match restart_after {
                Some(secs) => {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    restart_ice(&http, &url, &a.token, &webrtc).await
                }
                None => std::future::pending().await,
            }
        };
        let mut watch = pipeline.watch();
        tokio::pin!(stop, restart);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = watch.wait_for(|l| l.is_terminal()) => {
                    eprintln!("publisher pipeline ended: {:?}", pipeline.lifecycle());
                    break;
                }
                restarted = &mut restart, if restart_pending => {
                    restart_pending = false;
                    match restarted {
                        Ok(etag) => println!("ICE restarted (ETag {etag})"),
                        Err(e) => restart_failed = Some(e),
                    }
                }
            }
        }
    }
    let left = http.delete(url).bearer_auth(&a.token).send().await;
    drop(pipeline);
    if let Some(e) = restart_failed {
        return Err(e.context("ICE restart"));
    }
    match left {
        Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(r) => bail!("WHIP DELETE answered {}", r.status()),
        Err(e) => bail!("WHIP DELETE failed: {}", e.without_url()),
    }
}

/// How long the DTLS handshake with the server may take.
const DTLS_TIMEOUT: Duration = Duration::from_secs(15);

/// Apply the WHIP answer and wait until the server's DTLS certificate matched the
/// answer's `a=fingerprint` (RFC 8122; webrtcbin does not check it).
async fn verified_answer(
    webrtc: &gst::Element,
    dtls: &DtlsCheck,
    answer: &str,
) -> anyhow::Result<()> {
    let pins = pinned_fingerprints(answer)
        .map_err(|e| anyhow::anyhow!("refusing the WHIP answer: {e}"))?;
    dtls.set_pins(pins);
    accept_answer(webrtc, answer).await?;
    dtls.watch(webrtc);
    let mut verdicts = dtls.verdicts();
    let verdict = tokio::time::timeout(DTLS_TIMEOUT, verdicts.wait_for(|v| *v != Verdict::Pending))
        .await
        .map_err(|_| anyhow::anyhow!("no DTLS connection with the server within {DTLS_TIMEOUT:?}"))?
        .map(|v| *v)
        .unwrap_or(Verdict::Pending);
    match verdict {
        Verdict::Verified => Ok(()),
        Verdict::Rejected(why) => bail!(
            "refusing to publish: {why} (the WHIP server's certificate is not the one its \
             answer announced: someone may be intercepting the connection)"
        ),
        Verdict::Pending => bail!("the DTLS check did not finish"),
    }
}

/// Send a WHIP request and read the answer: one header (`header`) and the body.
/// Any status but `expected` is an error with the server's text; `what` names the
/// request, `about` what the server answered to (empty for the offer).
async fn whip_exchange(
    request: reqwest::RequestBuilder,
    what: &str,
    expected: u16,
    header: &str,
    about: &str,
) -> anyhow::Result<(Option<String>, String)> {
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{what} failed: {}", e.without_url()))?;
    let status = response.status();
    let value = response
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap_or_default();
    if status.as_u16() != expected {
        bail!("WHIP server answered {about}{status}: {body}");
    }
    Ok((value, body))
}

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
