//! The media sections: `[ice]` and `[ingest]` (WebRTC ingest), `[compositor]` (the
//! programs' look), `[streaming]` (HLS cutting, delay, encoder sharing) and
//! `[recording]` (how recordings are encoded and fragmented).
//!
//! Owns: validating those keys into the settings the media crates take, with errors
//! that name the key, and the defaults of keys those crates do not default themselves.
//! Must not: decide policy the media plane owns (e.g. whether two outputs may share an
//! encode: that is decided from these values at run time) or touch GStreamer.

use std::time::Duration;

use anyhow::bail;

use super::schema::{CompositorConfig, IceConfig, IngestConfig, RecordingConfig, StreamingConfig};

/// The validated `[ice]` section, with `[ingest].jitter_buffer_ms` (webrtcbin takes
/// it with the ICE settings).
pub(super) fn ice_settings(
    ice: &IceConfig,
    jitter_buffer_ms: Option<u32>,
) -> anyhow::Result<gremium_pipelines::webrtc::IceSettings> {
    if let (Some(min), Some(max)) = (ice.udp_port_min, ice.udp_port_max) {
        if min > max {
            bail!("ice.udp_port_min: must not exceed ice.udp_port_max");
        }
    }
    if let Some(ip) = &ice.nat_1to1_ip {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| anyhow::anyhow!("ice.nat_1to1_ip: {ip:?} is not an IP address"))?;
    }
    for (i, a) in ice.allowed_local_addresses.iter().enumerate() {
        a.parse::<std::net::IpAddr>().map_err(|_| {
            anyhow::anyhow!("ice.allowed_local_addresses[{i}]: {a:?} is not an IP address")
        })?;
    }
    for (key, list, schemes) in [
        ("ice.stun_servers", &ice.stun_servers, &["stun:"][..]),
        (
            "ice.turn_servers",
            &ice.turn_servers,
            &["turn:", "turns:"][..],
        ),
    ] {
        for (i, s) in list.iter().enumerate() {
            if !schemes.iter().any(|p| s.starts_with(p)) {
                bail!("{key}[{i}]: must start with {}", schemes.join(" or "));
            }
        }
    }
    let settings = gremium_pipelines::webrtc::IceSettings {
        local_addresses: ice
            .allowed_local_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        port_range: match (ice.udp_port_min, ice.udp_port_max) {
            (Some(min), Some(max)) => Some((min, max)),
            (None, None) => None,
            _ => bail!(
                "ice.udp_port_min: give both ice.udp_port_min and ice.udp_port_max, or neither"
            ),
        },
        // webrtcbin wants URLs: stun://host:port, turn(s)://user:pass@host:port.
        stun_server: ice.stun_servers.first().map(|s| to_url(s)),
        turn_servers: ice.turn_servers.iter().map(|s| to_url(s)).collect(),
        nat_1to1: ice.nat_1to1_ip.as_deref().and_then(|ip| ip.parse().ok()),
        jitter_buffer_ms: match jitter_buffer_ms {
            Some(ms) if !(20..=2000).contains(&ms) => {
                bail!("ingest.jitter_buffer_ms: must be between 20 and 2000")
            }
            other => other,
        },
    };
    if ice.stun_servers.len() > 1 {
        bail!("ice.stun_servers: webrtcbin uses one STUN server; give at most one");
    }
    Ok(settings)
}

/// The validated `[ingest]` limits: the media timeout and the most publishers per
/// meeting.
pub(super) fn ingest_limits(c: &IngestConfig) -> anyhow::Result<(Duration, usize)> {
    let media_timeout_secs = c.media_timeout_secs.unwrap_or(10);
    if !(1..=600).contains(&media_timeout_secs) {
        bail!("ingest.media_timeout_secs: must be between 1 and 600");
    }
    let media_timeout = Duration::from_secs(media_timeout_secs);
    let max_publishers = c.max_publishers_per_meeting.unwrap_or(50);
    if !(1..=500).contains(&max_publishers) {
        bail!("ingest.max_publishers_per_meeting: must be between 1 and 500");
    }
    Ok((media_timeout, max_publishers))
}

pub(super) fn streaming_settings(
    c: &StreamingConfig,
) -> anyhow::Result<gremium_mediaplane::StreamingSettings> {
    let segment = c.segment_secs.unwrap_or(1);
    if !(1..=10).contains(&segment) {
        bail!("streaming.segment_secs: must be between 1 and 10");
    }
    let window = c.window_segments.unwrap_or(6);
    if !(3..=30).contains(&window) {
        bail!("streaming.window_segments: must be between 3 and 30");
    }
    let dvr_segments = c.dvr_segments.unwrap_or(0);
    if dvr_segments > 3 * 3600 {
        bail!("streaming.dvr_segments: must be at most 10800");
    }
    let slate_recording = match c.non_public_recording.as_deref().unwrap_or("continue") {
        "continue" => false,
        "slate" => true,
        other => {
            bail!("streaming.non_public_recording: {other:?} is not one of \"continue\", \"slate\"")
        }
    };
    let delay = c.delay_secs.unwrap_or(0);
    if delay > 60 {
        bail!("streaming.delay_secs: must be at most 60");
    }
    Ok(gremium_mediaplane::StreamingSettings {
        segment: Duration::from_secs(segment),
        window,
        dvr_segments,
        slate_recording,
        delay: (delay > 0).then(|| Duration::from_secs(delay)),
        share_encoder: c.share_encoder.unwrap_or(true),
    })
}

pub(super) fn program_settings(
    c: &CompositorConfig,
) -> anyhow::Result<gremium_compositor::ProgramSettings> {
    let defaults = gremium_compositor::ProgramSettings::default();
    let width = c.width.unwrap_or(defaults.canvas.width);
    let height = c.height.unwrap_or(defaults.canvas.height);
    if !(160..=3840).contains(&width) || !width.is_multiple_of(2) {
        bail!("compositor.width: must be an even number between 160 and 3840");
    }
    if !(90..=2160).contains(&height) || !height.is_multiple_of(2) {
        bail!("compositor.height: must be an even number between 90 and 2160");
    }
    let fps = c.fps.unwrap_or(defaults.fps);
    if !(1..=60).contains(&fps) {
        bail!("compositor.fps: must be between 1 and 60");
    }
    let latency_ms = c.latency_ms.unwrap_or(100);
    if !(10..=5000).contains(&latency_ms) {
        bail!("compositor.latency_ms: must be between 10 and 5000");
    }
    let non_consenting = match c.non_consenting.as_deref().unwrap_or("placeholder") {
        "placeholder" => gremium_compositor::NonConsenting::Placeholder,
        "hide" => gremium_compositor::NonConsenting::Hide,
        other => {
            bail!("compositor.non_consenting: {other:?} is not one of \"placeholder\", \"hide\"")
        }
    };
    let scaler = match c.scaler.as_deref().unwrap_or("linear") {
        "linear" => gremium_compositor::Scaler::Linear,
        "cubic" => gremium_compositor::Scaler::Cubic,
        "lanczos" => gremium_compositor::Scaler::Lanczos,
        other => {
            bail!("compositor.scaler: {other:?} is not one of \"linear\", \"cubic\", \"lanczos\"")
        }
    };
    Ok(gremium_compositor::ProgramSettings {
        scaler,
        canvas: gremium_compositor::Canvas { width, height },
        fps,
        latency: Duration::from_millis(latency_ms),
        non_consenting,
        not_consenting_text: c
            .not_consenting_text
            .clone()
            .unwrap_or(defaults.not_consenting_text),
        labels: c.labels.unwrap_or(true),
        slate_text: c.slate_text.clone().unwrap_or(defaults.slate_text),
        ..defaults
    })
}

/// The validated `[recording]` section. `fps` is the program's frame rate: a keyframe
/// interval shorter than one frame cannot be encoded.
pub(super) fn recording_encode(
    c: &RecordingConfig,
    fps: u32,
) -> anyhow::Result<gremium_mediaplane::RecordingEncode> {
    let defaults = gremium_mediaplane::RecordingEncode::default();
    if let Some(kbps) = c.video_kbps {
        if !(100..=50_000).contains(&kbps) {
            bail!("recording.video_kbps: must be between 100 and 50000");
        }
    }
    let keyframe_interval = match c.keyframe_interval_ms {
        None => None,
        Some(ms) => {
            // One frame lasts 1000/fps ms; round up so the shortest allowed interval
            // still holds at least one whole frame.
            let one_frame_ms = 1000u64.div_ceil(u64::from(fps.max(1)));
            if !(one_frame_ms..=10_000).contains(&ms) {
                bail!(
                    "recording.keyframe_interval_ms: must be between {one_frame_ms} (one frame at \
                     compositor.fps = {fps}) and 10000"
                );
            }
            Some(Duration::from_millis(ms))
        }
    };
    let fragment = match c.fragment_ms {
        None => defaults.fragment,
        Some(ms) if (100..=10_000).contains(&ms) => Duration::from_millis(ms),
        Some(_) => bail!("recording.fragment_ms: must be between 100 and 10000"),
    };
    Ok(gremium_mediaplane::RecordingEncode {
        video_kbps: c.video_kbps,
        keyframe_interval,
        fragment,
    })
}

/// `stun:host:port` → `stun://host:port` (already-URL forms pass through).
fn to_url(s: &str) -> String {
    match s.split_once(':') {
        Some((scheme, rest)) if !rest.starts_with("//") => format!("{scheme}://{rest}"),
        _ => s.to_string(),
    }
}
