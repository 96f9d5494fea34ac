//! Program encoders, and one encode shared by the recording and the livestream while
//! their programs are the same.
//!
//! A program's H.264 encode ([`Encoder`]: `queue ! x264enc ! … ! h264parse ! tee`,
//! built by `gremium_pipelines::encode`) exists while a consumer takes encoded video
//! from that audience's program. A livestream's top rendition is fed through a
//! [`Feed`]: an `input-selector` between the streaming program's own encoder and,
//! while a recording runs, the recording program's. While both programs show the
//! same thing (decided by the media plane: same consent of every participant for
//! both audiences, the same slate, no broadcast delay, the same encode settings) the
//! feed takes the recording's encode and the streaming encoder gets no frames, so
//! x264 does no work: one encode for both.
//!
//! Switching is asymmetric on purpose. To its own encoder the feed switches **at
//! once** (the moment a consent or the public flag makes the programs differ, no
//! further frame of the recording's picture reaches the livestream) and then drops
//! the own encoder's frames until its first keyframe, which is requested — the
//! livestream has a gap of the encoder's latency (a frame or two). To the shared
//! encode it switches at the recording encoder's next (requested) keyframe, with no
//! gap. Both encoders have the same settings, so the stream parameters (caps,
//! SPS/PPS) do not change at a switch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gremium_pipelines::encode::{h264_chain, is_keyframe, H264};
use gremium_pipelines::{make, PipelineError};
use gst::prelude::*;

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Link(e.to_string())
}

/// One program's video encode with a tee of H.264 branches.
pub(crate) struct Encoder {
    /// `queue ! x264enc ! caps ! h264parse ! tee`, ghost sink pad `video`.
    pub bin: gst::Bin,
    /// The program output feeding `bin` (given back when the encoder goes).
    pub input: Option<gst::Pad>,
    /// The settings it encodes with.
    pub settings: H264,
    enc: gst::Element,
    tee: gst::Element,
    idle: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
}

impl Encoder {
    /// Build the bin (not yet added anywhere).
    pub fn new(name: &str, settings: H264) -> Result<Encoder, PipelineError> {
        let bin = gst::Bin::with_name(name);
        let queue = make("queue", Some("encode-queue"))?;
        let tee = make("tee", Some("encoded-tee"))?;
        // Consumers come and go; a feed's branch is dropped while inactive.
        tee.set_property("allow-not-linked", true);
        bin.add_many([&queue, &tee]).map_err(err)?;
        let [enc, _, parse] = h264_chain(&bin, "encode", &settings)?;
        queue.link(&enc).map_err(err)?;
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
                gst::PadProbeReturn::Drop
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
            .name("video")
            .build();
        bin.add_pad(&ghost).map_err(err)?;
        Ok(Encoder {
            bin,
            input: None,
            settings,
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

    /// A keyframe as soon as possible.
    pub fn request_keyframe(&self) {
        if let Some(pad) = self.enc.static_pad("src") {
            gremium_pipelines::webrtc::request_keyframe(&pad);
        }
    }

    /// A new branch of the encoded video (a ghost src pad on `bin`, to be linked).
    pub fn branch(&self) -> Result<gst::Pad, PipelineError> {
        let pad = self
            .tee
            .request_pad_simple("src_%u")
            .ok_or_else(|| err("encoded tee has no src pad"))?;
        let ghost = gst::GhostPad::builder_with_target(&pad)
            .map_err(err)?
            .name(format!("h264_{}", pad.name()))
            .build();
        let added = ghost
            .set_active(true)
            .map_err(err)
            .and_then(|_| self.bin.add_pad(&ghost).map_err(err));
        if let Err(e) = added {
            self.tee.release_request_pad(&pad);
            return Err(e);
        }
        Ok(ghost.upcast())
    }

    /// Give a branch back: unlinked at an idle moment, then released.
    pub fn release_branch(&self, branch: &gst::Pad) {
        let Some(ghost) = branch.downcast_ref::<gst::GhostPad>() else {
            return;
        };
        if let Some(peer) = ghost.peer() {
            gremium_compositor::program::unlink_when_idle(&peer, branch);
        }
        // The tee's pad goes before the ghost turns inactive: a push into an inactive
        // pad returns FLUSHING, which the tee would pass up to the encoder.
        if let Some(target) = ghost.target() {
            self.tee.release_request_pad(&target);
        }
        let _ = ghost.set_active(false);
        let _ = self.bin.remove_pad(ghost);
    }

    fn idle_flag(&self) -> Arc<AtomicBool> {
        self.idle.clone()
    }
}

/// Which encoder a feed forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Own,
    Shared,
}

struct FeedState {
    /// What the media plane wants; a switch to `Shared` waits for a keyframe.
    want: Source,
    /// What the selector forwards now.
    active: Source,
    /// Drop the own encoder's frames until its next keyframe (after a switch back).
    own_needs_key: bool,
}

/// The encoded video of a livestream's top rendition: an `input-selector` between
/// the streaming program's encoder and the recording program's.
pub(crate) struct Feed {
    /// The selector; its `src` pad feeds the consumer's `video_h264`.
    pub selector: gst::Element,
    own: (gst::Pad, gst::Pad),
    shared: Option<(gst::Pad, gst::Pad)>,
    state: Arc<Mutex<FeedState>>,
    own_idle: Arc<AtomicBool>,
}

impl Feed {
    /// A feed from `own` (the streaming program's encoder), added to `pipeline` and
    /// running. Nothing passes until the first keyframe.
    pub fn new(pipeline: &gst::Pipeline, name: &str, own: &Encoder) -> Result<Feed, PipelineError> {
        let selector = make("input-selector", Some(name))?;
        // Inactive inputs are dropped at once: a waiting input would block the
        // recording's encoder (its tee) behind the livestream.
        selector.set_property("sync-streams", false);
        pipeline.add(&selector).map_err(err)?;
        selector.sync_state_with_parent().map_err(err)?;
        let src = selector
            .static_pad("src")
            .ok_or_else(|| err("input-selector has no src pad"))?;
        // One stream for the consumer: the second encoder's stream-start is not
        // passed on at a switch (its caps are the same).
        let started = AtomicBool::new(false);
        src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let is_start = matches!(
                info.event().map(|e| e.type_()),
                Some(gst::EventType::StreamStart)
            );
            if is_start && started.swap(true, Ordering::Relaxed) {
                gst::PadProbeReturn::Drop
            } else {
                gst::PadProbeReturn::Ok
            }
        });
        let state = Arc::new(Mutex::new(FeedState {
            want: Source::Own,
            active: Source::Own,
            own_needs_key: true,
        }));
        let own_sink = selector
            .request_pad_simple("sink_%u")
            .ok_or_else(|| err("input-selector has no sink pad"))?;
        let st = state.clone();
        own_sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
            if s.own_needs_key {
                if !is_keyframe(buffer) {
                    return gst::PadProbeReturn::Drop;
                }
                s.own_needs_key = false;
            }
            gst::PadProbeReturn::Ok
        });
        selector.set_property("active-pad", &own_sink);
        let branch = own.branch()?;
        branch.link(&own_sink).map_err(|e| err(format!("{e:?}")))?;
        own.request_keyframe();
        Ok(Feed {
            selector,
            own: (branch, own_sink),
            shared: None,
            state,
            own_idle: own.idle_flag(),
        })
    }

    /// Forward `shared` (the recording's encoder) from its next keyframe on; the
    /// own encoder then goes idle. No-op when already shared or switching.
    pub fn share(&mut self, shared: &Encoder) -> Result<(), PipelineError> {
        if self.shared.is_none() {
            let sink = self
                .selector
                .request_pad_simple("sink_%u")
                .ok_or_else(|| err("input-selector has no sink pad"))?;
            let st = self.state.clone();
            let selector = self.selector.clone();
            let own_idle = self.own_idle.clone();
            sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let Some(buffer) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                if s.want == Source::Shared && s.active == Source::Own && is_keyframe(buffer) {
                    selector.set_property("active-pad", pad);
                    s.active = Source::Shared;
                    own_idle.store(true, Ordering::Relaxed);
                    tracing::debug!(feed = %selector.name(), "livestream shares the recording's encode");
                }
                gst::PadProbeReturn::Ok
            });
            let branch = shared.branch()?;
            if let Err(e) = branch.link(&sink) {
                shared.release_branch(&branch);
                self.selector.release_request_pad(&sink);
                return Err(err(format!("{e:?}")));
            }
            self.shared = Some((branch, sink));
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.want != Source::Shared {
            s.want = Source::Shared;
            drop(s);
            shared.request_keyframe();
        }
        Ok(())
    }

    /// Forward the own encoder from now on (frames from its next keyframe; it is
    /// woken up and asked for one).
    pub fn unshare(&mut self, own: &Encoder) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.want = Source::Own;
        if s.active == Source::Shared {
            self.selector.set_property("active-pad", &self.own.1);
            s.active = Source::Own;
            s.own_needs_key = true;
            tracing::debug!(feed = %self.selector.name(), "livestream back on its own encode");
        }
        drop(s);
        own.set_idle(false);
    }

    /// Unshare and give the shared encoder's branch back (before that encoder goes).
    pub fn drop_shared(&mut self, own: &Encoder, shared: &Encoder) {
        self.unshare(own);
        if let Some((branch, sink)) = self.shared.take() {
            shared.release_branch(&branch);
            self.selector.release_request_pad(&sink);
        }
    }

    /// Take the feed apart: both branches given back, the selector stopped and
    /// removed. `shared` is the recording's encoder, if any.
    pub fn remove(mut self, pipeline: &gst::Pipeline, own: &Encoder, shared: Option<&Encoder>) {
        if let Some(shared) = shared {
            self.drop_shared(own, shared);
        }
        own.release_branch(&self.own.0);
        self.selector.release_request_pad(&self.own.1);
        let _ = self.selector.set_state(gst::State::Null);
        let _ = pipeline.remove(&self.selector);
    }
}
