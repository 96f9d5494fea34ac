//! Program encoders, and one encode shared by the recording and the livestream while
//! their programs are the same.
//!
//! Video and audio are shared the same way: an H.264 [`Encoder`] and an AAC one per
//! audience, and a [`Feed`] per livestream input (`video_h264`, `audio_aac`). What
//! follows says it for video; for AAC every frame is a keyframe, so a switch to the
//! shared encode happens at its first frame later than the last one forwarded, and
//! a switch back waits only for the own encoder's first frame (its latency: a frame
//! or two, ~20-40 ms of audio missing from the livestream).
//!
//! A program's H.264 encode ([`Encoder`]: `queue ! x264enc ! … ! h264parse ! tee`,
//! built by `gremium_pipelines::encode`) exists while a consumer takes encoded video
//! from that audience's program. A livestream's top rendition is fed through a
//! [`Feed`]: an `appsrc` that a probe on the streaming program's encoder and, while a
//! recording runs, one on the recording program's push into; only the active
//! encoder's frames go in. While both programs show the same thing (decided by the
//! media plane: same consent of every participant for both audiences, the same
//! slate, no broadcast delay, the same encode settings) the feed takes the
//! recording's encode and the streaming encoder gets no frames, so x264 does no work:
//! one encode for both.
//!
//! Switching is asymmetric on purpose. To its own encoder the feed switches **at
//! once** (the moment a consent or the public flag makes the programs differ, no
//! further frame of the recording's picture reaches the livestream) and then skips
//! the own encoder's frames until its first keyframe, which is requested — the
//! livestream has a gap of the encoder's latency (a frame or two). To the shared
//! encode it switches at the recording encoder's next (requested) keyframe, with no
//! gap — unless that keyframe is no later than the own frame last forwarded (the
//! recording's encode lags, e.g. on a loaded machine): then the own frames are held
//! back from that moment and the switch happens at the first shared keyframe later
//! than the last frame forwarded (one more is requested at once; if the lag outlasts
//! it, the encoder's next periodic one): a gap of at most the lag plus a keyframe
//! interval. Both encoders have the same settings, so the stream parameters (caps,
//! SPS/PPS) do not change at a switch; frames are re-stamped with their running time
//! and never go back in time.
//!
//! Why an `appsrc` and not an `input-selector`: the consumer sees one stream from one
//! source (no sticky events of two upstreams replayed at a switch), and pushing into
//! it never blocks, so a stuck livestream can never hold up the recording's encoder.
//!
//! Owns: the encoders' elements and the feeds. Must not touch the programs'
//! composition or the consumers' bins beyond linking to their `video_h264` pads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use gremium_compositor::Kind;
use gremium_pipelines::encode::{aac_chain, h264_chain, H264};
use gremium_pipelines::{make, PipelineError};
use gst::prelude::*;

mod feed;

pub(crate) use feed::Feed;

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Link(e.to_string())
}

/// One program's video (H.264) or audio (AAC) encode with a tee of branches.
pub(crate) struct Encoder {
    /// `queue ! x264enc ! caps ! h264parse ! tee`, ghost sink pad `video`; or
    /// `queue ! audioconvert ! avenc_aac ! aacparse ! tee`, ghost sink pad `audio`.
    pub bin: gst::Bin,
    /// The program output feeding `bin` (given back when the encoder goes).
    pub input: Option<gst::Pad>,
    /// The settings it encodes with (`None`: AAC, which has one configuration).
    pub settings: Option<H264>,
    kind: Kind,
    enc: gst::Element,
    tee: gst::Element,
    idle: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
}

impl Encoder {
    /// Build an H.264 encoder's bin (not yet added anywhere).
    pub fn new(name: &str, settings: H264) -> Result<Encoder, PipelineError> {
        Encoder::build(name, Some(settings))
    }

    /// Build an AAC encoder's bin ([`aac_chain`]; not yet added anywhere).
    pub fn new_aac(name: &str) -> Result<Encoder, PipelineError> {
        Encoder::build(name, None)
    }

    fn build(name: &str, settings: Option<H264>) -> Result<Encoder, PipelineError> {
        let bin = gst::Bin::with_name(name);
        let queue = make("queue", Some("encode-queue"))?;
        let tee = make("tee", Some("encoded-tee"))?;
        // Consumers come and go; a feed's branch is dropped while inactive.
        tee.set_property("allow-not-linked", true);
        bin.add_many([&queue, &tee]).map_err(err)?;
        let (kind, first, enc, parse) = match &settings {
            Some(h264) => {
                let [enc, _, parse] = h264_chain(&bin, "encode", h264)?;
                (Kind::Video, enc.clone(), enc, parse)
            }
            None => {
                let [conv, enc, parse] = aac_chain(&bin, "encode")?;
                (Kind::Audio, conv, enc, parse)
            }
        };
        queue.link(&first).map_err(err)?;
        parse.link(&tee).map_err(err)?;

        let idle = Arc::new(AtomicBool::new(false));
        let sink = queue
            .static_pad("sink")
            .ok_or_else(|| err("queue has no sink pad"))?;
        let skip = idle.clone();
        // While idle the encoder sees no frame at all (x264 does no work); caps and
        // segments still pass, so it is ready when frames come back.
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if skip.load(Ordering::Relaxed) {
                // `Handled`, not `Drop`: gstreamer-rs has already taken the buffer,
                // and GStreamer 1.22's chain function would unref the NULL left
                // behind (a CRITICAL per frame).
                gst::PadProbeReturn::Handled
            } else {
                gst::PadProbeReturn::Ok
            }
        });
        let frames = Arc::new(AtomicU64::new(0));
        let count = frames.clone();
        enc.static_pad("src")
            .ok_or_else(|| err("x264enc has no src pad"))?
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        let ghost = gst::GhostPad::builder_with_target(&sink)
            .map_err(err)?
            .name(match kind {
                Kind::Video => "video",
                Kind::Audio => "audio",
            })
            .build();
        bin.add_pad(&ghost).map_err(err)?;
        Ok(Encoder {
            bin,
            input: None,
            settings,
            kind,
            enc,
            tee,
            idle,
            frames,
        })
    }

    /// Frames encoded so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Stop or resume encoding; resuming asks for a keyframe.
    pub fn set_idle(&self, idle: bool) {
        let was = self.idle.swap(idle, Ordering::Relaxed);
        if was && !idle {
            self.request_keyframe();
        }
    }

    /// Is the encoder getting no frames?
    pub fn idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// A keyframe as soon as possible (every AAC frame is one: nothing to ask, and
    /// a force-key-unit event must not travel up the audio path).
    pub fn request_keyframe(&self) {
        if self.kind == Kind::Audio {
            return;
        }
        if let Some(pad) = self.enc.static_pad("src") {
            gremium_pipelines::webrtc::request_keyframe(&pad);
        }
    }

    /// A new branch of the encoded stream (a ghost src pad on `bin`, to be linked).
    pub fn branch(&self) -> Result<gst::Pad, PipelineError> {
        let prefix = match self.kind {
            Kind::Video => "h264",
            Kind::Audio => "aac",
        };
        gremium_pipelines::tee::tee_branch(&self.bin, &self.tee, prefix)
    }

    /// Give a branch back: unlinked at an idle moment, then released.
    pub fn release_branch(&self, branch: &gst::Pad) {
        gremium_pipelines::tee::release_tee_branch(&self.bin, branch);
    }

    /// The tee's sink pad (the encoded stream before it branches), for probes.
    pub fn output(&self) -> gst::Pad {
        self.tee.static_pad("sink").expect("tee has a sink pad")
    }

    fn idle_flag(&self) -> Arc<AtomicBool> {
        self.idle.clone()
    }
}
