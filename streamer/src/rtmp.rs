//! RTMP(S) push of the livestream to external platforms, sharing the HLS encodes.
//!
//! Owns: the destinations added to an [`HlsBin`](crate::hls::HlsBin) with
//! [`HlsBin::add_rtmp`](crate::hls::HlsBin::add_rtmp). No second encode: each
//! destination takes the H.264 of the HLS bin's top rendition (a `tee` after its
//! `h264parse`, named `rtmp-video-tee`) and the one shared AAC (`audio-tee`):
//!
//! ```text
//! rtmp-video-tee ─ video ┐                                    (one DestBin per attempt)
//!                        ├ queue (leaky) ─ h264parse ─┐
//! audio-tee ───── audio ─┴ queue (leaky) ─────────────┴ flvmux streamable ─ rtmp2sink
//! ```
//!
//! Isolation: the queues leak (drop the oldest data) instead of blocking, so a stuck
//! destination never back-pressures HLS or the other destinations; the bin's ghost
//! pads swallow every flow error of the branch (a dead sink returns an error flow up
//! through the queue, which the `tee` would pass on to the encoder); and the bin keeps
//! its children's error messages off the pipeline's bus (see `dest_bin`).
//!
//! Retry: each destination has a supervisor thread. On an error (connection refused,
//! reset mid-stream, or not live within [`LIVE_TIMEOUT`]) it tears the branch down and,
//! after a backoff of [`BACKOFF_START`] doubling up to [`BACKOFF_MAX`], builds a fresh
//! one (new `flvmux` and `rtmp2sink`). A fresh branch drops video until the next
//! keyframe (at most one HLS segment away) and audio until then, so the muxer always
//! starts on a keyframe; no keyframe is forced upstream, which would cost the HLS
//! ladder and the other destinations bits for a retry that may fail again.
//!
//! Status ([`RtmpStatus`]): `Connecting` until the first connection of a destination
//! is up; `Live` while media flows to the server; `Retrying { attempt, last_error }`
//! after `attempt` failures in a row (also while the next attempt is running);
//! `Stopped` once removed or finished. Readable any time and observable through a
//! `tokio::sync::watch` channel.
//!
//! Secrets: the stream key is never logged nor put in an error or status string; URLs
//! are shown through [`redact_location`]. GStreamer's RTMP library logs the stream
//! name (the key) at INFO (`rtmpclient`: "Sending publish for 'KEY'") and the location
//! at DEBUG (`rtmp2locationhandler`), so the first destination added caps these two
//! debug categories at WARNING (`gst::log::set_threshold_for_name`; a later
//! `GST_DEBUG` change by the process can undo that). Pipeline graph dumps
//! (`GST_DEBUG_DUMP_DOT_DIR`) show the `location` property: never enable them where
//! they leave the host while a destination runs.
//!
//! Must not: know meetings or platforms (YouTube, …): the caller passes URL and key.

mod dest_bin;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gremium_pipelines::{link_chain, make, PipelineError};
use gst::prelude::*;
use tokio::sync::watch;

use crate::StreamerError;
use dest_bin::{DestBin, DestMessage};

/// First wait after a failed attempt.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An attempt that is not live after this long counts as failed.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a removed destination may take to send what it has queued.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Data a destination may queue (per stream) before it drops the oldest.
const QUEUE_TIME: Duration = Duration::from_secs(2);
/// Buffers through `rtmp2sink` after which an attempt counts as live: the FLV header
/// and metadata are accepted without a connection, media tags wait for it.
const LIVE_AFTER_BUFFERS: u32 = 10;

/// State of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpStatus {
    /// The first connection is being made.
    Connecting,
    /// Media is flowing to the server.
    Live,
    /// `attempt` attempts failed in a row; the next one is waiting for its backoff or
    /// running. `last_error` is redacted.
    Retrying {
        /// Failed attempts in a row (1 after the first failure).
        attempt: u32,
        /// What went wrong last, without the stream key.
        last_error: String,
    },
    /// Removed, or the stream finished.
    Stopped,
}

/// The caller's handle on one destination.
#[derive(Debug, Clone)]
pub struct RtmpHandle {
    id: String,
    location: String,
    status: watch::Receiver<BTreeMap<String, RtmpStatus>>,
}

impl RtmpHandle {
    /// The destination's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The push location with the stream key replaced by `***`.
    pub fn redacted_location(&self) -> &str {
        &self.location
    }

    /// The current status.
    pub fn status(&self) -> RtmpStatus {
        self.status
            .borrow()
            .get(&self.id)
            .cloned()
            .unwrap_or(RtmpStatus::Stopped)
    }
}

/// `url` + `/` + `key` (no doubled slash).
pub fn join_location(url: &str, key: &str) -> String {
    format!("{}/{key}", url.trim_end_matches('/'))
}

/// What may be shown of a push location (`url` + `/` + key): scheme, host, port and
/// application only, `rtmp://user:pw@host/app/x/KEY?t=1` → `rtmp://host/app/…`. The
/// whole URL is secret-bearing (platforms put keys in user info, path or query); see
/// [`gremium_protocol::redact_rtmp_url`], which the API and the ledger use too.
pub fn redact_location(location: &str) -> String {
    // The last path segment is the key: without it, a URL without an application
    // (`rtmp://host` + key) does not show the key as its application.
    let url = match location.rsplit_once('/') {
        Some((url, _)) if url.contains("://") && !url.ends_with('/') => url,
        _ => location,
    };
    gremium_protocol::redact_rtmp_url(url)
}

/// `text` (an error a library wrote) without the location, the key or any other
/// secret-bearing part of the URL (user info, path, query).
fn redact_text(text: &str, location: &str, key: &str) -> String {
    let mut out = text.replace(location, &redact_location(location));
    let mut secrets = gremium_protocol::rtmp_url_secrets(location);
    if !key.is_empty() {
        secrets.push(key.to_string());
        // The URL as given (a query ends at the key's `/` only in the location).
        if let Some(url) = location.strip_suffix(&format!("/{key}")) {
            secrets.extend(gremium_protocol::rtmp_url_secrets(url));
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        out = out.replace(&secret, "***");
    }
    out
}

/// Commands and reports to a destination's supervisor.
enum Ctl {
    /// A branch reported (with the attempt number it belongs to).
    Branch(u32, DestMessage),
    /// A branch carried enough media: the server takes it.
    Live(u32),
    /// Stop the destination (EOS, then tear down).
    Stop,
}

struct Dest {
    ctl: mpsc::Sender<Ctl>,
}

/// The RTMP destinations of one HLS bin.
pub(crate) struct RtmpOutputs {
    parent: gst::Bin,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    dests: Mutex<BTreeMap<String, Dest>>,
    status: watch::Sender<BTreeMap<String, RtmpStatus>>,
    /// Finishing: no more destinations.
    closed: AtomicBool,
}

/// Keep the stream key out of GStreamer's own logs.
fn quiet_rtmp_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for category in ["rtmpclient", "rtmp2locationhandler"] {
            gst::log::set_threshold_for_name(category, gst::DebugLevel::Warning);
        }
    });
}

impl RtmpOutputs {
    pub(crate) fn new(parent: gst::Bin, video_tee: gst::Element, audio_tee: gst::Element) -> Self {
        RtmpOutputs {
            parent,
            video_tee,
            audio_tee,
            dests: Mutex::new(BTreeMap::new()),
            status: watch::channel(BTreeMap::new()).0,
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn add(&self, id: &str, url: &str, key: &str) -> Result<RtmpHandle, StreamerError> {
        let bad = |m: String| Err(StreamerError::InvalidSettings(m));
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return bad(format!("RTMP destination id {id:?} is not usable"));
        }
        let location = join_location(url, key);
        let shown = gremium_protocol::redact_rtmp_url(url);
        if !(url.starts_with("rtmp://") || url.starts_with("rtmps://")) {
            return bad(format!("{id}: {shown} is not an rtmp:// or rtmps:// URL"));
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return bad(format!("{id}: the stream key is empty or has white space"));
        }
        let mut dests = self.dests.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return bad(format!("{id}: the stream is finishing"));
        }
        quiet_rtmp_logs();
        let running = self
            .status
            .borrow()
            .get(id)
            .is_some_and(|s| *s != RtmpStatus::Stopped);
        if running {
            return bad(format!("RTMP destination {id} exists"));
        }
        let (tx, rx) = mpsc::channel();
        let sup = Supervisor {
            id: id.to_string(),
            location,
            key: key.to_string(),
            shown: shown.clone(),
            parent: self.parent.clone(),
            video_tee: self.video_tee.clone(),
            audio_tee: self.audio_tee.clone(),
            status: self.status.clone(),
            ctl_tx: tx.clone(),
            ctl: rx,
        };
        sup.set(RtmpStatus::Connecting);
        std::thread::Builder::new()
            .name(format!("rtmp-{id}"))
            .spawn(move || sup.run())
            .map_err(|e| PipelineError::Link(format!("RTMP supervisor thread: {e}")))?;
        dests.insert(id.to_string(), Dest { ctl: tx });
        tracing::info!(rtmp = id, location = %shown, "RTMP destination added");
        Ok(RtmpHandle {
            id: id.to_string(),
            location: shown,
            status: self.status.subscribe(),
        })
    }

    /// Ask a destination to stop; false if there is none by that id.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let dest = self
            .dests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match dest {
            Some(d) => {
                let _ = d.ctl.send(Ctl::Stop);
                true
            }
            None => false,
        }
    }

    /// Ask every destination to stop.
    pub(crate) fn remove_all(&self) {
        let mut guard = self.dests.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        let dests = std::mem::take(&mut *guard);
        drop(guard);
        for d in dests.values() {
            let _ = d.ctl.send(Ctl::Stop);
        }
    }

    pub(crate) fn status(&self) -> Vec<(String, RtmpStatus)> {
        self.status
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<BTreeMap<String, RtmpStatus>> {
        self.status.subscribe()
    }
}

impl Drop for RtmpOutputs {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Owns one destination: builds branches, watches them, retries.
struct Supervisor {
    id: String,
    location: String,
    key: String,
    shown: String,
    parent: gst::Bin,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    status: watch::Sender<BTreeMap<String, RtmpStatus>>,
    ctl_tx: mpsc::Sender<Ctl>,
    ctl: mpsc::Receiver<Ctl>,
}

enum Outcome {
    Failed(String),
    Stop,
    Ended,
}

impl Supervisor {
    fn set(&self, s: RtmpStatus) {
        self.status.send_modify(|m| {
            m.insert(self.id.clone(), s);
        });
    }

    fn redact(&self, text: &str) -> String {
        redact_text(text, &self.location, &self.key)
    }

    fn run(self) {
        let mut failures = 0u32;
        let mut attempt_no = 0u32;
        loop {
            attempt_no += 1;
            let outcome = match Branch::attach(&self, attempt_no) {
                Ok(branch) => {
                    let outcome = self.watch(attempt_no, &mut failures);
                    if matches!(outcome, Outcome::Stop) {
                        branch.drain(&self.ctl, attempt_no);
                    }
                    branch.detach();
                    outcome
                }
                Err(e) => Outcome::Failed(self.redact(&e.to_string())),
            };
            match outcome {
                Outcome::Failed(error) => {
                    failures += 1;
                    tracing::warn!(
                        rtmp = %self.id, location = %self.shown, attempt = failures, %error,
                        "RTMP destination failed, retrying"
                    );
                    self.set(RtmpStatus::Retrying {
                        attempt: failures,
                        last_error: error,
                    });
                    let backoff = BACKOFF_START
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(BACKOFF_MAX);
                    if self.wait_for_stop(backoff) {
                        break;
                    }
                }
                Outcome::Stop | Outcome::Ended => break,
            }
        }
        tracing::info!(rtmp = %self.id, "RTMP destination stopped");
        self.set(RtmpStatus::Stopped);
    }

    /// Wait for the outcome of one attempt.
    fn watch(&self, attempt_no: u32, failures: &mut u32) -> Outcome {
        let deadline = Instant::now() + LIVE_TIMEOUT;
        let mut live = false;
        loop {
            let msg = if live {
                self.ctl.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.ctl
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            };
            match msg {
                Ok(Ctl::Live(n)) if n == attempt_no && !live => {
                    live = true;
                    *failures = 0;
                    tracing::info!(rtmp = %self.id, location = %self.shown, "RTMP destination live");
                    self.set(RtmpStatus::Live);
                }
                Ok(Ctl::Branch(n, DestMessage::Error(e))) if n == attempt_no => {
                    return Outcome::Failed(self.redact(&e));
                }
                Ok(Ctl::Branch(n, DestMessage::Warning(w))) if n == attempt_no => {
                    tracing::warn!(rtmp = %self.id, warning = %self.redact(&w), "RTMP destination");
                }
                Ok(Ctl::Branch(n, DestMessage::Eos)) if n == attempt_no => {
                    return Outcome::Ended;
                }
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => return Outcome::Stop,
                Ok(_) => {} // a report of an earlier attempt
                Err(RecvTimeoutError::Timeout) => {
                    return Outcome::Failed(format!("not live after {} s", LIVE_TIMEOUT.as_secs()));
                }
            }
        }
    }

    /// Sleep `d` unless told to stop; true if told to stop.
    fn wait_for_stop(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            match self
                .ctl
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// Shared between a branch's pads and its supervisor.
#[derive(Default)]
struct Gate {
    /// Torn down or draining: take nothing more.
    closed: AtomicBool,
    /// A video keyframe went in; media may flow.
    started: AtomicBool,
}

/// One attempt: a `DestBin` linked to the two tees.
struct Branch {
    bin: DestBin,
    parent: gst::Bin,
    pads: Vec<(gst::Element, gst::Pad)>,
    gate: Arc<Gate>,
}

impl Branch {
    fn attach(sup: &Supervisor, n: u32) -> Result<Branch, PipelineError> {
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
    fn drain(&self, ctl: &mpsc::Receiver<Ctl>, n: u32) {
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
    fn detach(self) {
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
    use super::*;

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

    #[test]
    fn keys_are_redacted() {
        let loc = join_location("rtmp://a.example/live2/", "abcd-SECRET");
        assert_eq!(loc, "rtmp://a.example/live2/abcd-SECRET");
        assert_eq!(redact_location(&loc), "rtmp://a.example/live2/…");
        assert_eq!(
            redact_location("rtmps://u:pw@h:443/app/k?x=1"),
            "rtmps://h:443/app/…"
        );
        assert_eq!(redact_location("rtmp://h/KEY-ONLY"), "rtmp://h/…");
        assert_eq!(redact_location("rtmp://h"), "rtmp://h/…");
        let text = format!("Could not connect to {loc}: refused; stream abcd-SECRET");
        let red = redact_text(&text, &loc, "abcd-SECRET");
        assert!(!red.contains("SECRET"), "{red}");
        assert!(red.contains("rtmp://a.example/live2/…"), "{red}");
        let red = redact_text("user u:pwd failed", "rtmps://u:pwd@h/app/k", "k");
        assert!(!red.contains("pwd"), "{red}");
        // Keys in the URL's path and query, quoted apart from the location.
        let loc = join_location("rtmp://h/app/PATHSECRET?token=QUERYSECRET", "KEYSECRET");
        let red = redact_text(
            "stream 'PATHSECRET' app 'app?token=QUERYSECRET' key KEYSECRET",
            &loc,
            "KEYSECRET",
        );
        assert!(!red.contains("SECRET"), "{red}");
    }
}
