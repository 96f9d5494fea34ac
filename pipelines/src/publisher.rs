//! A synthetic WHIP publisher: test-pattern (or solid colour) camera and a sine-tone
//! microphone, encoded and sent through `webrtcbin`. Used by `gremium publish`, the
//! demo, tests and benchmarks.

use crate::pipeline::{link_chain, make, Pipeline};
use crate::webrtc::{make_webrtcbin, IceSettings};
use crate::PipelineError;
use gst::prelude::*;

/// Video codec the publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (vp8enc).
    Vp8,
    /// H.264 constrained baseline (x264enc).
    H264,
}

/// What the synthetic participant looks and sounds like.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// videotestsrc pattern name (e.g. `smpte`, `ball`); ignored when `color` is set.
    pub pattern: String,
    /// Solid colour as 0xRRGGBB.
    pub color: Option<u32>,
    /// Sine tone frequency in Hz.
    pub tone_hz: f64,
    /// Video codec.
    pub codec: VideoCodec,
    /// Frame size and rate.
    pub width: i32,
    /// Frame height.
    pub height: i32,
    /// Frames per second.
    pub fps: i32,
    /// ICE settings of the publisher.
    pub ice: IceSettings,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        PublisherSettings {
            pattern: "smpte".into(),
            color: None,
            tone_hz: 440.0,
            codec: VideoCodec::Vp8,
            width: 640,
            height: 360,
            fps: 30,
            ice: IceSettings::default(),
        }
    }
}

/// Build the publisher into `p` and return its `webrtcbin` (transceivers send-only).
pub fn build_publisher(p: &Pipeline, s: &PublisherSettings) -> Result<gst::Element, PipelineError> {
    let webrtc = make_webrtcbin("publisher", &s.ice)?;
    let vsrc = make("videotestsrc", None)?;
    vsrc.set_property("is-live", true);
    match s.color {
        Some(rgb) => {
            vsrc.set_property_from_str("pattern", "solid-color");
            vsrc.set_property("foreground-color", 0xff00_0000u32 | (rgb & 0x00ff_ffff));
        }
        None => vsrc.set_property_from_str("pattern", &s.pattern),
    }
    let vcaps = make("capsfilter", None)?;
    vcaps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", s.width)
            .field("height", s.height)
            .field("framerate", gst::Fraction::new(s.fps, 1))
            .build(),
    );
    let vconv = make("videoconvert", None)?;
    let mut video = vec![vsrc, vcaps, vconv];
    match s.codec {
        VideoCodec::Vp8 => {
            let enc = make("vp8enc", None)?;
            enc.set_property("deadline", 1i64);
            enc.set_property("keyframe-max-dist", s.fps.max(1));
            let pay = make("rtpvp8pay", None)?;
            pay.set_property("pt", 96u32);
            video.extend([enc, pay]);
        }
        VideoCodec::H264 => {
            let enc = make("x264enc", None)?;
            enc.set_property_from_str("tune", "zerolatency");
            enc.set_property_from_str("speed-preset", "ultrafast");
            enc.set_property("key-int-max", s.fps.max(1) as u32);
            let profile = make("capsfilter", None)?;
            profile.set_property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("profile", "constrained-baseline")
                    .build(),
            );
            let pay = make("rtph264pay", None)?;
            pay.set_property("pt", 102u32);
            pay.set_property("config-interval", -1i32);
            video.extend([enc, profile, pay]);
        }
    }
    let asrc = make("audiotestsrc", None)?;
    asrc.set_property("is-live", true);
    asrc.set_property("freq", s.tone_hz);
    let audio = vec![
        asrc,
        make("audioconvert", None)?,
        make("audioresample", None)?,
        make("opusenc", None)?,
        {
            let pay = make("rtpopuspay", None)?;
            pay.set_property("pt", 111u32);
            pay
        },
    ];
    p.gst()
        .add(&webrtc)
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    for chain in [&video, &audio] {
        p.gst()
            .add_many(chain.iter())
            .map_err(|e| PipelineError::Link(e.to_string()))?;
        let refs: Vec<&gst::Element> = chain.iter().collect();
        link_chain(&refs)?;
        let last = refs[refs.len() - 1];
        last.link(&webrtc)
            .map_err(|_| PipelineError::Link(format!("{} ! webrtcbin", last.name())))?;
    }
    for i in 0..2i32 {
        let t: gst_webrtc::WebRTCRTPTransceiver = webrtc.emit_by_name("get-transceiver", &[&i]);
        t.set_property(
            "direction",
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
        );
    }
    Ok(webrtc)
}
