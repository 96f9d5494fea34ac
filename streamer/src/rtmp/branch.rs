//! One attempt of a destination: a [`DestBin`] (`queue`s, `h264parse`, `flvmux`,
//! `rtmp2sink`) attached to the HLS bin's video and audio tees, the keyframe gate on
//! its inputs, its drain (EOS to the server) and its teardown.
//!
//! Must not: decide when to retry (the supervisor and its retry state do). The
//! teardown order in [`Branch::detach`] is load-bearing: the tees' pads are released
//! before the bin goes to NULL (see the comment there and the test below).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gremium_pipelines::{link_chain, make, PipelineError};
use gst::prelude::*;

use super::dest_bin::{DestBin, DestMessage};
use super::supervisor::Supervisor;
use super::{Ctl, STOP_TIMEOUT};

/// Data a destination may queue (per stream) before it drops the oldest.
const QUEUE_TIME: Duration = Duration::from_secs(2);
/// Buffers through `rtmp2sink` after which an attempt counts as live: the FLV header
/// and metadata are accepted without a connection, media tags wait for it.
const LIVE_AFTER_BUFFERS: u32 = 10;

/// Shared between a branch's pads and its supervisor.
#[derive(Default)]
struct Gate {
    /// Torn down or draining: take nothing more.
    closed: AtomicBool,
    /// A video keyframe went in; media may flow.
    started: AtomicBool,
}

/// One attempt: a `DestBin` linked to the two tees.
pub(super) struct Branch {
    bin: DestBin,
    parent: gst::Bin,
    pads: Vec<(gst::Element, gst::Pad)>,
    gate: Arc<Gate>,
}

impl Branch {
    pub(super) fn attach(sup: &Supervisor, n: u32) -> Result<Branch, PipelineError> {
        let err = |e: &dyn std::fmt::Display| PipelineError::Link(e.to_string());
        let tx = Mutex::new(sup.ctl_tx.clone());
        let bin = DestBin::new(&format!("rtmp-{}-{n}", sup.id), move |m| {
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(Ctl::Branch(n, m));
        });
        let gate = Arc::new(Gate::default());
        let mut branch = Branch {
            bin: bin.clone(),
            parent: sup.parent.clone(),
            pads: Vec::new(),
            gate: gate.clone(),
        };

        let queue = |name: &str| -> Result<gst::Element, PipelineError> {
            let q = make("queue", Some(name))?;
            q.set_property("max-size-buffers", 0u32);
            q.set_property("max-size-bytes", 0u32);
            q.set_property("max-size-time", QUEUE_TIME.as_nanos() as u64);
            q.set_property_from_str("leaky", "downstream");
            Ok(q)
        };
        let vqueue = queue("video-queue")?;
        // The tee carries byte-stream H.264 for MPEG-TS; FLV wants AVC.
        let vparse = make("h264parse", Some("video-parse"))?;
        let aqueue = queue("audio-queue")?;
        let mux = make("flvmux", Some("mux"))?;
        mux.set_property("streamable", true);
        let sink = make("rtmp2sink", Some("sink"))?;
        sink.set_property("location", &sup.location);
        // No preroll (an async sink would make the running pipeline lose its state)
        // and no clock wait: the live program already paces the data.
        sink.set_property("async", false);
        sink.set_property("sync", false);
        bin.add_many([&vqueue, &vparse, &aqueue, &mux, &sink])
            .map_err(|e| err(&e))?;
        link_chain(&[&vqueue, &vparse])?;
        for (from, pad) in [(&vparse, "video"), (&aqueue, "audio")] {
            let target = mux
                .request_pad_simple(pad)
                .ok_or_else(|| PipelineError::Link(format!("flvmux has no {pad} pad")))?;
            from.static_pad("src")
                .ok_or_else(|| PipelineError::Link("no src pad".into()))?
                .link(&target)
                .map_err(|e| err(&format!("{} ! flvmux: {e:?}", from.name())))?;
        }
        link_chain(&[&mux, &sink])?;

        // Live once media tags got through `rtmp2sink` (they wait for the connection).
        let count = AtomicU32::new(0);
        let tx = Mutex::new(sup.ctl_tx.clone());
        if let Some(pad) = sink.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if count.fetch_add(1, Ordering::Relaxed) + 1 == LIVE_AFTER_BUFFERS {
                    let _ = tx
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .send(Ctl::Live(n));
                }
                gst::PadProbeReturn::Ok
            });
        }

        for (name, target, video) in [("video", &vqueue, true), ("audio", &aqueue, false)] {
            let target = target
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link("queue has no sink pad".into()))?;
            let g = gate.clone();
            let gl = gate.clone();
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(|e| err(&e))?
                .name(name)
                .chain_function(move |pad, parent, buffer| {
                    if !g.admit(video, buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)) {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    // Whatever happens downstream stays in this branch.
                    let _ = gst::ProxyPad::chain_default(pad, parent, buffer);
                    Ok(gst::FlowSuccess::Ok)
                })
                .chain_list_function(move |pad, parent, list| {
                    let delta = list
                        .get(0)
                        .is_none_or(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
                    if !gl.admit(video, delta) {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    let _ = gst::ProxyPad::chain_list_default(pad, parent, list);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build();
            bin.add_pad(&ghost).map_err(|e| err(&e))?;
        }

        branch
            .parent
            .add(&bin)
            .map_err(|e| err(&format!("adding the RTMP bin: {e}")))?;
        // From here on a failure must take the bin out again.
        match branch.link(sup) {
            Ok(()) => Ok(branch),
            Err(e) => {
                branch.detach();
                Err(e)
            }
        }
    }

    /// Start the added bin and link it to the tees.
    fn link(&mut self, sup: &Supervisor) -> Result<(), PipelineError> {
        let err = |e: &dyn std::fmt::Display| PipelineError::Link(e.to_string());
        self.bin
            .sync_state_with_parent()
            .map_err(|e| err(&format!("starting the RTMP bin: {e}")))?;
        for (tee, name) in [(&sup.video_tee, "video"), (&sup.audio_tee, "audio")] {
            let src = tee
                .request_pad_simple("src_%u")
                .ok_or_else(|| PipelineError::Link(format!("{} has no src pad", tee.name())))?;
            self.pads.push((tee.clone(), src.clone()));
            let sinkpad = self
                .bin
                .static_pad(name)
                .ok_or_else(|| PipelineError::Link(format!("no {name} pad")))?;
            src.link(&sinkpad)
                .map_err(|e| err(&format!("{} ! {}: {e:?}", tee.name(), self.bin.name())))?;
        }
        Ok(())
    }

    /// EOS into the branch and wait (at most `STOP_TIMEOUT`) until the sink sent it.
    pub(super) fn drain(&self, ctl: &mpsc::Receiver<Ctl>, n: u32) {
        self.gate.closed.store(true, Ordering::SeqCst);
        if !self.gate.started.load(Ordering::SeqCst) {
            return; // nothing was sent
        }
        for name in ["video", "audio"] {
            if let Some(pad) = self.bin.static_pad(name) {
                pad.send_event(gst::event::Eos::new());
            }
        }
        let until = Instant::now() + STOP_TIMEOUT;
        loop {
            match ctl.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Ctl::Branch(m, DestMessage::Eos | DestMessage::Error(_))) if m == n => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Unlink from the tees and throw the bin away.
    pub(super) fn detach(self) {
        self.gate.closed.store(true, Ordering::SeqCst);
        // The tees' pads go first. A released pad's push result is ignored by its
        // tee; a push into a still-linked bin whose pads went inactive returns
        // FLUSHING, which the tee hands upstream, and the encoder's queue stops for
        // good: HLS stalled, and no later attempt ever got video.
        for (tee, pad) in &self.pads {
            tee.release_request_pad(pad);
        }
        // Locked: the pipeline may be changing state meanwhile (a first attempt is
        // made while it starts), and must not bring the stopped bin back up.
        gremium_pipelines::stop_for_good(&self.bin);
        let _ = self.parent.remove(&self.bin);
    }
}

impl Gate {
    /// Whether a buffer may enter the branch.
    fn admit(&self, video: bool, delta: bool) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        if self.started.load(Ordering::Relaxed) {
            return true;
        }
        if video && !delta {
            self.started.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::mpsc;

    use tokio::sync::watch;

    use super::*;
    use crate::rtmp::redact_location;

    /// A buffer counter on `element`'s sink pad.
    fn count_buffers(element: &gst::Element) -> Arc<AtomicU32> {
        let n = Arc::new(AtomicU32::new(0));
        let c = n.clone();
        element
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        n
    }

    /// Attaching and detaching branches (what every failed attempt does) while the
    /// tees carry data as fast as the sources make it: the tees' other branches go
    /// on. A branch whose pads go inactive while still linked answers the tee's push
    /// with FLUSHING, which the tee hands upstream: the encoder's queue then stops
    /// for good and HLS stalls (seen in CI during an RTMP outage).
    #[test]
    fn detached_branches_never_stop_the_tees() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "videotestsrc pattern=black ! video/x-raw,width=64,height=64,framerate=30/1 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5 ! h264parse ! \
             tee name=vt allow-not-linked=true ! queue ! fakesink name=vsink \
             audiotestsrc samplesperbuffer=1024 ! avenc_aac ! \
             tee name=at allow-not-linked=true ! queue ! fakesink name=asink",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let by_name = |n: &str| pipeline.by_name(n).unwrap();
        let (video, audio) = (
            count_buffers(&by_name("vsink")),
            count_buffers(&by_name("asink")),
        );
        let (ctl_tx, ctl) = mpsc::channel();
        // Nothing listens on port 1: every attempt fails at once, as in an outage.
        let location = "rtmp://127.0.0.1:1/live/k".to_string();
        let sup = Supervisor {
            id: "t".into(),
            shown: redact_location(&location),
            location,
            key: "k".into(),
            parent: pipeline.clone().upcast(),
            video_tee: by_name("vt"),
            audio_tee: by_name("at"),
            status: watch::channel(BTreeMap::new()).0,
            ctl_tx,
            ctl,
        };
        pipeline.set_state(gst::State::Playing).unwrap();
        let flowing = |what: &str| {
            let (v, a) = (video.load(Ordering::Relaxed), audio.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(300));
            let (v2, a2) = (video.load(Ordering::Relaxed), audio.load(Ordering::Relaxed));
            assert!(
                v2 > v && a2 > a,
                "{what}: video {v} → {v2}, audio {a} → {a2}"
            );
        };
        flowing("before any branch");
        for n in 1..=30 {
            let branch = Branch::attach(&sup, n).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            branch.detach();
        }
        flowing("after 30 branches came and went");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
