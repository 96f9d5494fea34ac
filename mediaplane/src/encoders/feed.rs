//! A livestream's feed of encoded video or audio: an `appsrc` that forwards the
//! frames of its own encoder or, while the programs are the same, the recording's
//! (see the parent module for why and how it switches).
//!
//! Owns: the feed's `appsrc`, its probes on the encoders' outputs and its switching
//! state. Must not: build or remove encoders (the meeting's programs do).

use gremium_compositor::Kind;
use gremium_pipelines::encode::{is_keyframe, request_keyframe_upstream};
use gremium_pipelines::{stop_and_remove, PipelineError};
use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{err, Encoder};

/// Which encoder a feed forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Own,
    Shared,
}

/// How much encoded video a feed holds for a consumer that does not take it; more
/// is dropped up to the next keyframe (the consumer is stuck, and the encoders must
/// not wait for it).
const FEED_MAX_QUEUED: gst::ClockTime = gst::ClockTime::from_seconds(2);

struct FeedState {
    /// What the media plane wants; a switch to `Shared` waits for a keyframe.
    want: Source,
    /// Which encoder's frames are forwarded.
    active: Source,
    /// Forward nothing until the active encoder's next keyframe (at the start, after
    /// a switch back to the own encoder, after an overflow).
    needs_key: bool,
    /// Running time (DTS, else PTS) of the last frame forwarded.
    last: Option<gst::ClockTime>,
    /// The own encoder's frames are held back: a keyframe of the shared encoder came
    /// no later than the last frame forwarded (its encode lags the own one, e.g. on
    /// a loaded machine), so the feed switches at its first keyframe after that
    /// frame (one more is requested at once). Without this a consistently lagging
    /// shared encode would never take over.
    hold_own: bool,
    /// Caps last given to the `appsrc`.
    caps: Option<gst::Caps>,
}

/// A probe on one encoder's output.
struct Tap {
    pad: gst::Pad,
    probe: Option<gst::PadProbeId>,
}

impl Tap {
    fn remove(mut self) {
        if let Some(id) = self.probe.take() {
            self.pad.remove_probe(id);
        }
    }
}

/// The encoded video of a livestream's top rendition (or its AAC): an `appsrc` fed by a probe
/// on the streaming program's encoder and, while a recording runs, one on the
/// recording program's. Only the active encoder's frames are pushed. The consumer
/// sees one stream from one source element: no sticky events of the other encoder,
/// no switch inside GStreamer. Pushing never blocks, so a stuck livestream can
/// never hold up the recording's encoder.
pub(crate) struct Feed {
    /// The `appsrc`; its `src` pad feeds the consumer's `video_h264`.
    pub src: gst_app::AppSrc,
    own: Option<Tap>,
    shared: Option<Tap>,
    state: Arc<Mutex<FeedState>>,
    own_idle: Arc<AtomicBool>,
    /// The shared encoder's `x264enc`, for keyframe requests while it is active.
    shared_enc: Arc<Mutex<Option<gst::Element>>>,
}

/// Push `buffer` (from `pad`, of encoder `from`) into the feed if `from` is active.
fn forward(
    state: &Mutex<FeedState>,
    src: &gst_app::AppSrc,
    own_idle: &AtomicBool,
    from: Source,
    pad: &gst::Pad,
    buffer: &gst::BufferRef,
) {
    let Some(segment) = pad.sticky_event::<gst::event::Segment>(0) else {
        return;
    };
    let Some(segment) = segment.segment().downcast_ref::<gst::ClockTime>().cloned() else {
        return;
    };
    let rt = |t: Option<gst::ClockTime>| t.and_then(|t| segment.to_running_time(t));
    let (pts, dts) = (rt(buffer.pts()), rt(buffer.dts()));
    let Some(at) = dts.or(pts) else {
        return;
    };
    let key = is_keyframe(buffer);
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let after_last = s.last.is_none_or(|last| at > last);
    if from == Source::Shared && s.want == Source::Shared && s.active == Source::Own && key {
        if after_last {
            s.active = Source::Shared;
            s.needs_key = false;
            s.hold_own = false;
            own_idle.store(true, Ordering::Relaxed);
            tracing::debug!(feed = %src.name(), "livestream shares the recording's encode");
        } else if !s.hold_own {
            s.hold_own = true;
            drop(s);
            tracing::debug!(feed = %src.name(), "the recording's encode lags: switching at its next keyframe");
            request_keyframe_async(pad);
            return;
        }
    }
    if s.active != from || (from == Source::Own && s.hold_own) {
        return;
    }
    if !after_last {
        if key && s.needs_key {
            // The keyframe this encoder was asked for is not later than the other
            // encoder's last frame: ask for the next one rather than wait a GOP.
            // Off this streaming thread: the request travels up through the very
            // elements that are pushing this buffer.
            drop(s);
            request_keyframe_async(pad);
        }
        return;
    }
    if s.needs_key {
        if !key {
            return;
        }
        s.needs_key = false;
    }
    if src.current_level_time() > FEED_MAX_QUEUED {
        s.needs_key = true;
        tracing::warn!(feed = %src.name(), "livestream consumer stuck: frames dropped");
        return;
    }
    let caps = pad.current_caps();
    if caps.is_some() && caps != s.caps {
        src.set_caps(caps.as_ref());
        s.caps = caps;
    }
    let mut out = buffer.copy();
    {
        let out = out.make_mut();
        out.set_pts(pts);
        out.set_dts(dts);
    }
    s.last = Some(at);
    // Not blocking (`block` is off); the level check above bounds the queue.
    let _ = src.push_buffer(out);
}

/// Ask the encoder upstream of `pad` (a tee's sink pad) for a keyframe, off this
/// streaming thread: the request travels up through the very elements that are
/// pushing the buffer at hand.
fn request_keyframe_async(pad: &gst::Pad) {
    if let Some(tee) = pad.parent_element() {
        let pad = pad.clone();
        tee.call_async(move |_| {
            request_keyframe_upstream(&pad);
        });
    }
}

impl Feed {
    /// A feed from `own` (the streaming program's encoder) into `sink` (a consumer's
    /// `video_h264`), added to `pipeline` and running. Nothing passes until the first
    /// keyframe.
    pub fn new(
        pipeline: &gst::Pipeline,
        name: &str,
        own: &Encoder,
        sink: &gst::Pad,
    ) -> Result<Feed, PipelineError> {
        let src = gst_app::AppSrc::builder()
            .name(name)
            .format(gst::Format::Time)
            .is_live(true)
            .do_timestamp(false)
            .block(false)
            .build();
        // Frames leave the encoders as late as the encode chain's latency: tell the
        // sinks so.
        let mut q = gst::query::Latency::new();
        if own.output().peer_query(&mut q) {
            let (_, min, max) = q.result();
            src.set_latency(Some(min), max);
        }
        pipeline.add(&src).map_err(err)?;
        let linked = src
            .static_pad("src")
            .ok_or_else(|| err("appsrc has no src pad"))
            .and_then(|pad| pad.link(sink).map_err(|e| err(format!("feed: {e:?}"))))
            // PLAYING, not the pipeline's state: while a new async sink prerolls the
            // pipeline reads PAUSED, and a live source left in PAUSED would never
            // give that sink the data it prerolls on.
            .and_then(|_| src.set_state(gst::State::Playing).map_err(err));
        if let Err(e) = linked {
            stop_and_remove(pipeline, &src);
            return Err(e);
        }
        let state = Arc::new(Mutex::new(FeedState {
            want: Source::Own,
            active: Source::Own,
            needs_key: true,
            last: None,
            hold_own: false,
            caps: None,
        }));
        let mut feed = Feed {
            src,
            own: None,
            shared: None,
            state,
            own_idle: own.idle_flag(),
            shared_enc: Arc::default(),
        };
        // Keyframe requests of the consumer (an HLS cut) go to the active encoder.
        let (st, own_enc, video) = (feed.state.clone(), own.enc.clone(), own.kind == Kind::Video);
        let shared_for_requests = feed.shared_enc.clone();
        feed.src
            .static_pad("src")
            .ok_or_else(|| err("appsrc has no src pad"))?
            .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                let Some(event) = info.event() else {
                    return gst::PadProbeReturn::Ok;
                };
                if !gremium_pipelines::webrtc::is_keyframe_request(event) {
                    return gst::PadProbeReturn::Ok;
                }
                if !video {
                    // Every AAC frame is a keyframe.
                    return gst::PadProbeReturn::Handled;
                }
                let active = st.lock().unwrap_or_else(|p| p.into_inner()).active;
                let enc = match active {
                    Source::Own => Some(own_enc.clone()),
                    Source::Shared => shared_for_requests
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                };
                if let Some(pad) = enc.and_then(|e| e.static_pad("src")) {
                    pad.send_event(event.to_owned());
                }
                gst::PadProbeReturn::Handled
            });
        feed.own = Some(feed.tap(own, Source::Own));
        own.request_keyframe();
        Ok(feed)
    }

    /// A probe forwarding `encoder`'s output as `from`.
    fn tap(&self, encoder: &Encoder, from: Source) -> Tap {
        let pad = encoder.output();
        let (st, src, own_idle) = (self.state.clone(), self.src.clone(), self.own_idle.clone());
        let probe = pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buffer) = info.buffer() {
                forward(&st, &src, &own_idle, from, pad, buffer);
            }
            gst::PadProbeReturn::Ok
        });
        Tap { pad, probe }
    }

    /// Forward `shared` (the recording's encoder) from its next keyframe on; the
    /// own encoder then goes idle. No-op when already shared or switching.
    pub fn share(&mut self, shared: &Encoder) {
        if self.shared.is_none() {
            *self.shared_enc.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared.enc.clone());
            self.shared = Some(self.tap(shared, Source::Shared));
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.want != Source::Shared {
            s.want = Source::Shared;
            drop(s);
            shared.request_keyframe();
        }
    }

    /// Forward the own encoder from now on (frames from its next keyframe; it is
    /// woken up and asked for one).
    pub fn unshare(&mut self, own: &Encoder) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.want = Source::Own;
        if s.active == Source::Shared || s.hold_own {
            // Own frames were skipped meanwhile: resume on a keyframe.
            s.active = Source::Own;
            s.needs_key = true;
            s.hold_own = false;
            tracing::debug!(feed = %self.src.name(), "livestream back on its own encode");
        }
        drop(s);
        own.set_idle(false);
    }

    /// Unshare and stop listening to the shared encoder (before that encoder goes).
    pub fn drop_shared(&mut self, own: &Encoder) {
        self.unshare(own);
        if let Some(tap) = self.shared.take() {
            tap.remove();
        }
        *self.shared_enc.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Take the feed apart: probes removed, the `appsrc` stopped and removed (after
    /// the consumer was unlinked from it).
    pub fn remove(mut self, pipeline: &gst::Pipeline, own: &Encoder) {
        self.drop_shared(own);
        if let Some(tap) = self.own.take() {
            tap.remove();
        }
        if let Some(src) = self.src.static_pad("src") {
            if let Some(peer) = src.peer() {
                let _ = src.unlink(&peer);
            }
        }
        // Its task may be inside a push that a blocking probe of the consumer holds
        // (an HLS bin stopped right after its start) until that consumer finishes:
        // stopping it here would hold the meeting's thread, which has to start that
        // finish. So it stops on a thread of its own.
        let (pipeline, src) = (pipeline.clone(), self.src.clone());
        let stopping = std::thread::Builder::new()
            .name("feed-stop".into())
            .spawn(move || stop_and_remove(&pipeline, &src));
        if let Err(e) = stopping {
            tracing::warn!(error = %e, "no thread to stop a livestream feed; it stays until the meeting ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gremium_pipelines::encode::H264;
    use gremium_pipelines::make;
    use std::time::Duration;

    const SETTINGS: H264 = H264 {
        kbps: 300,
        keyframe_interval: 30,
    };

    /// A pipeline with a live 320×180@30 source and its caps filter (not yet added).
    fn live_camera() -> (gst::Pipeline, gst::Element, gst::Element) {
        gst::init().unwrap();
        let src = make("videotestsrc", None).unwrap();
        src.set_property("is-live", true);
        let caps =
            gremium_pipelines::capsfilter(gremium_pipelines::i420_caps(320, 180, 30)).unwrap();
        (gst::Pipeline::new(), src, caps)
    }

    /// A livestream consumer that takes nothing for 4 s: the encoder keeps encoding
    /// at full rate, the feed holds at most `FEED_MAX_QUEUED`, and once the consumer
    /// takes data again what follows the dropped stretch starts at a keyframe.
    #[test]
    fn a_stuck_consumer_never_holds_up_the_encoder() {
        let (pipeline, src, caps) = live_camera();
        let own = Encoder::new("encode-streaming", SETTINGS).unwrap();
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(0)
            .build();
        pipeline
            .add_many([&src, &caps, own.bin.upcast_ref(), sink.upcast_ref()])
            .unwrap();
        src.link(&caps).unwrap();
        caps.link_pads(None, &own.bin, Some("video")).unwrap();
        let consumer = sink.static_pad("sink").unwrap();
        // The consumer is stuck: its first buffer never goes through until unblocked.
        let block = consumer
            .add_probe(
                gst::PadProbeType::BLOCK_DOWNSTREAM | gst::PadProbeType::BUFFER,
                |_, _| gst::PadProbeReturn::Ok,
            )
            .unwrap();
        let feed = Feed::new(&pipeline, "feed", &own, &consumer).unwrap();
        // Far below what 5 s of this video take: a feed that blocked when "full"
        // would stall the encoder within a second.
        feed.src.set_max_bytes(10_000);
        pipeline.set_state(gst::State::Playing).unwrap();

        std::thread::sleep(Duration::from_secs(1));
        let (frames, t) = (own.frames(), std::time::Instant::now());
        let mut peak = gst::ClockTime::ZERO;
        while t.elapsed() < Duration::from_secs(4) {
            peak = peak.max(feed.src.current_level_time());
            std::thread::sleep(Duration::from_millis(20));
        }
        let encoded = own.frames() - frames;
        let rate = encoded as f64 / t.elapsed().as_secs_f64();
        assert!(
            rate > 25.0,
            "the encoder slowed to {rate:.1} fps behind a stuck consumer"
        );
        // Two seconds and the frame that found the queue full.
        assert!(
            peak <= FEED_MAX_QUEUED + gst::ClockTime::from_mseconds(100),
            "the feed held {peak} for a stuck consumer"
        );
        assert!(
            peak >= gst::ClockTime::from_mseconds(1500),
            "the feed held only {peak}"
        );

        consumer.remove_probe(block);
        // Collect 3 s more; find where frames were dropped.
        let mut frames: Vec<(gst::ClockTime, bool)> = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
                let b = sample.buffer().unwrap();
                frames.push((b.pts().unwrap(), is_keyframe(b)));
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(frames[0].1, "the feed's first frame is not a keyframe");
        let frame = gst::ClockTime::from_mseconds(34);
        let gaps: Vec<usize> = (1..frames.len())
            .filter(|&i| frames[i].0 - frames[i - 1].0 > frame)
            .collect();
        assert!(
            !gaps.is_empty(),
            "nothing was dropped in 4 s of a stuck consumer"
        );
        for i in &gaps {
            assert!(
                frames[*i].1,
                "after dropped frames the feed resumed on a delta frame"
            );
        }
        assert!(
            frames.last().unwrap().0 > frames[0].0 + gst::ClockTime::from_seconds(5),
            "the feed did not catch up: {} → {}",
            frames[0].0,
            frames.last().unwrap().0
        );
    }

    /// The shared encode lags the own one by 300 ms (as a recording encoder
    /// backed up behind a busy disk might): each of its keyframes is older than the
    /// own frame last forwarded. The feed must still switch (holding the own frames
    /// back until the next shared keyframe), the own encoder go idle, and the output
    /// never go back in time.
    #[test]
    fn a_lagging_shared_encode_still_takes_over() {
        let (pipeline, src, caps) = live_camera();
        let tee = make("tee", None).unwrap();
        let (q_own, q_shared) = (make("queue", None).unwrap(), make("queue", None).unwrap());
        q_shared.set_property("min-threshold-time", 300_000_000u64);
        q_shared.set_property("max-size-time", 2_000_000_000u64);
        let own = Encoder::new("encode-streaming", SETTINGS).unwrap();
        let shared = Encoder::new("encode-recording", SETTINGS).unwrap();
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(0)
            .build();
        pipeline
            .add_many([
                &src,
                &caps,
                &tee,
                &q_own,
                &q_shared,
                own.bin.upcast_ref(),
                shared.bin.upcast_ref(),
                sink.upcast_ref(),
            ])
            .unwrap();
        gst::Element::link_many([&src, &caps, &tee]).unwrap();
        tee.link(&q_own).unwrap();
        tee.link(&q_shared).unwrap();
        q_own.link_pads(None, &own.bin, Some("video")).unwrap();
        q_shared
            .link_pads(None, &shared.bin, Some("video"))
            .unwrap();
        let mut feed =
            Feed::new(&pipeline, "feed", &own, &sink.static_pad("sink").unwrap()).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        feed.share(&shared);
        let t = std::time::Instant::now();
        while !own.idle() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let mut frames: Vec<(gst::ClockTime, bool)> = Vec::new();
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
            let b = sample.buffer().unwrap();
            frames.push((b.dts().or(b.pts()).unwrap(), is_keyframe(b)));
        }
        let shared_frames = shared.frames();
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(own.idle(), "the lagging shared encode never took over");
        assert!(took < Duration::from_secs(2), "the switch took {took:?}");
        assert!(shared_frames > 0);
        assert!(frames.len() > 30, "{} frames", frames.len());
        for w in frames.windows(2) {
            assert!(w[1].0 > w[0].0, "the feed went back in time: {w:?}");
        }
        // Where the frames jump (the held-back stretch), the next one is a keyframe.
        for i in 1..frames.len() {
            if frames[i].0 - frames[i - 1].0 > gst::ClockTime::from_mseconds(34) {
                assert!(frames[i].1, "resumed on a delta frame after a gap");
            }
        }
    }
}
