//! HLS packaging of a program with an ABR ladder.
//!
//! Owns: the [`HlsBin`] consumer (ghost sink pads `video`, raw I420 at the program
//! canvas, and `audio`, raw S16LE 48 kHz stereo), which encodes one H.264 rendition
//! per rung of the ladder from a single `tee` of the raw video, one AAC encode shared
//! by all of them, and writes through one `hlssink2` per rendition. The top
//! rendition's H.264 and the AAC may instead arrive encoded (`video_h264`,
//! `audio_aac`: [`HlsSettings::encoded_top`], [`HlsSettings::encoded_audio`]):
//!
//! ```text
//! DIR/index.m3u8                master playlist (written by Rust when the bin is built)
//! DIR/{rendition}/index.m3u8    live media playlist of each video rendition
//! DIR/{rendition}/{prefix}%05d.ts  MPEG-TS segments (H.264 High + AAC-LC)
//! DIR/audio/index.m3u8          audio-only rendition (AAC-LC 128 kbit/s)
//! ```
//!
//! Every segment starts with a keyframe (`key-int-max` = fps × segment length, and
//! `hlssink2` asks the encoder for one at each cut). Inside the bin, the elements of a
//! rendition are named `{rendition}-queue`, `{rendition}-scale`, `{rendition}-enc`,
//! `{rendition}-parse` and `hls-{rendition}` (`hls-audio` for the audio-only one).
//!
//! An optional broadcast delay holds the raw program back (queues `video-delay` and
//! `audio-queue`, their output shifted by the delay so muxers and sinks see it on
//! time) before anything is encoded; [`HlsBin::cut`] then blanks — slate colour and
//! silence — everything still held back, so a moderator's cut takes effect on every
//! output at once. Raw 720p30 video costs about 40 MB per second of delay.
//!
//! Without files (`HlsSettings::files` false: a stream with only RTMP destinations)
//! the bin is encoders only: the top rendition and the AAC, no sinks, nothing written.
//!
//! RTMP push destinations share the top rendition's H.264 (a `tee` named
//! `rtmp-video-tee` between its `{rendition}-parse` and `hls-{rendition}`) and the AAC
//! (`audio-tee`): see [`HlsBin::add_rtmp`] and [`crate::rtmp`].
//!
//! Must not: serve the files (the HTTP side reads `DIR`), know meetings.

mod drain;
mod playlist;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gremium_pipelines::encode::{aac_chain, h264_chain, H264};
use gremium_pipelines::{capsfilter, link_chain, make, PipelineError};
use gst::prelude::*;

pub use playlist::{
    avc1_high, h264_high_level, playlist_is_valid, render_master, MediaPlaylist, Segment, Variant,
    AAC_LC,
};

use crate::rtmp::{RtmpHandle, RtmpOutputs, RtmpStatus};
use crate::StreamerError;
use drain::DrainBin;

/// Bitrate of the single AAC encode, shared by every rendition.
pub const AUDIO_KBPS: u32 = gremium_pipelines::encode::AAC_KBPS;
/// Name (and directory) of the audio-only rendition.
pub const AUDIO_RENDITION: &str = "audio";
/// File name of every playlist (master and media).
pub const PLAYLIST: &str = "index.m3u8";
/// Default segment name prefix (`seg00000.ts`, …).
pub const SEGMENT_PREFIX: &str = "seg";

/// What the queue in front of each `hlssink2` input holds before it drops the oldest
/// (only while that sink is stuck: a full disk, a muxer waiting for its other
/// stream far longer than a segment), on top of a broadcast delay (with one, the
/// sinks' input backs up by about the delay: measured, the delay test loses frames
/// of A with 3 s alone).
const GUARD_QUEUE: Duration = Duration::from_secs(3);

/// One video rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Directory name and label, e.g. `720p` (ASCII letters, digits, `-`, `_`).
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
}

impl Rendition {
    /// A rung of the ladder.
    pub fn new(name: &str, width: u32, height: u32, video_kbps: u32) -> Rendition {
        Rendition {
            name: name.to_string(),
            width,
            height,
            video_kbps,
        }
    }

    /// 720p at 2500 kbit/s and 360p at 800 kbit/s.
    pub fn default_ladder() -> Vec<Rendition> {
        vec![
            Rendition::new("720p", 1280, 720, 2500),
            Rendition::new("360p", 640, 360, 800),
        ]
    }

    /// The H.264 level x264 picks for this rung at `fps`.
    pub fn level(&self, fps: u32) -> Option<u8> {
        h264_high_level(self.width, self.height, fps, self.video_kbps)
    }
}

/// What the caller asked for. Checked by [`HlsSettings::validate`] before anything is
/// built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSettings {
    /// Directory of the presentation (created if missing).
    pub dir: PathBuf,
    /// Program frame rate.
    pub fps: u32,
    /// Segment length; whole seconds (it is also the playlists' target duration).
    pub segment: Duration,
    /// Segments in the live playlist (at least 3, RFC 8216 6.3.3).
    pub window: u32,
    /// Extra segments kept in the playlist for DVR (pause, seek back).
    pub dvr_window: Option<u32>,
    /// Broadcast delay: the program is held back this long before it is encoded
    /// (at most 60 s), so [`HlsBin::cut`] can still keep it from leaving.
    pub delay: Option<Duration>,
    /// Video renditions; the audio-only one is always added.
    pub renditions: Vec<Rendition>,
    /// Write the HLS presentation. Without it (a stream with only RTMP
    /// destinations) the bin encodes just the top rendition and the AAC for the
    /// pushes and writes nothing.
    pub files: bool,
    /// The top rendition (the largest; also what RTMP pushes) arrives encoded on the
    /// ghost pad `video_h264` (H.264 byte-stream from an encoder the media plane may
    /// share with the recording) instead of being encoded here from the raw `video`.
    /// It must then be the program's own size and encode settings. Not with a delay
    /// (the delay holds raw video back).
    pub encoded_top: bool,
    /// The audio arrives encoded on the ghost pad `audio_aac` (AAC from
    /// [`gremium_pipelines::encode::aac_chain`], an encoder the media plane may share
    /// with the recording) instead of being encoded here from the raw `audio`. Not
    /// with a delay (the delay holds raw audio back).
    pub encoded_audio: bool,
    /// Segment files are named `{segment_prefix}00000.ts`, … (1–32 of
    /// `[A-Za-z0-9_-]`). Segments are served as immutable, so each presentation in a
    /// directory needs a prefix of its own: a CDN or browser would otherwise hand out
    /// an earlier stream's `seg00000.ts` for the next one's.
    pub segment_prefix: String,
}

impl HlsSettings {
    /// 1 s segments, a window of 6, no DVR, the default ladder.
    pub fn new(dir: impl Into<PathBuf>, fps: u32) -> HlsSettings {
        HlsSettings {
            dir: dir.into(),
            fps,
            segment: Duration::from_secs(1),
            window: 6,
            dvr_window: None,
            delay: None,
            renditions: Rendition::default_ladder(),
            files: true,
            encoded_top: false,
            encoded_audio: false,
            segment_prefix: SEGMENT_PREFIX.into(),
        }
    }

    /// The largest rendition (the first of equals): it also feeds the RTMP pushes.
    pub fn top(&self) -> Option<&Rendition> {
        self.renditions.get(self.top_index())
    }

    /// Index of [`HlsSettings::top`] (0 without renditions).
    fn top_index(&self) -> usize {
        self.renditions
            .iter()
            .enumerate()
            .max_by_key(|(i, r)| (r.width * r.height, r.video_kbps, std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i)
    }

    /// The H.264 encode of a rendition.
    pub fn h264(&self, r: &Rendition) -> H264 {
        H264 {
            kbps: r.video_kbps,
            keyframe_interval: self.keyframe_interval(),
        }
    }

    /// Segments listed in each media playlist: window + DVR.
    pub fn playlist_length(&self) -> u32 {
        self.window.saturating_add(self.dvr_window.unwrap_or(0))
    }

    /// Segment files kept per rendition. A segment leaves the playlist first and the
    /// disk one playlist later: a player that read the playlist just before can still
    /// fetch it (RFC 8216 6.2.2).
    pub fn max_files(&self) -> u32 {
        self.playlist_length().saturating_mul(2).saturating_add(1)
    }

    /// Frames between keyframes: one keyframe at the start of every segment.
    pub fn keyframe_interval(&self) -> u32 {
        self.fps.saturating_mul(self.segment.as_secs() as u32)
    }

    /// Check that the settings make a playable presentation.
    pub fn validate(&self) -> Result<(), StreamerError> {
        let bad = |m: String| Err(StreamerError::InvalidSettings(m));
        let p = &self.segment_prefix;
        if p.is_empty()
            || p.len() > 32
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return bad(format!("segment prefix {p:?} is not 1-32 of [A-Za-z0-9_-]"));
        }
        // The segment location is a printf pattern: a `%` in the directory would be
        // read as a conversion.
        if self.dir.to_str().is_none_or(|d| d.contains('%')) {
            return bad(format!(
                "directory {} is not UTF-8 without %",
                self.dir.display()
            ));
        }
        if !(1..=120).contains(&self.fps) {
            return bad(format!("frame rate {} is not in 1..=120", self.fps));
        }
        if self.segment.subsec_nanos() != 0 || !(1..=30).contains(&self.segment.as_secs()) {
            return bad(format!(
                "segment {:?} is not 1..=30 whole seconds",
                self.segment
            ));
        }
        if self.window < 3 {
            return bad(format!("window {} is under 3 segments", self.window));
        }
        if self.playlist_length() > 100_000 {
            return bad("window + DVR is over 100000 segments".into());
        }
        if self
            .delay
            .is_some_and(|d| d.is_zero() || d > Duration::from_secs(60))
        {
            return bad(format!("delay {:?} is not in (0, 60 s]", self.delay));
        }
        if self.renditions.is_empty() {
            return bad("no video rendition".into());
        }
        if self.encoded_top && self.delay.is_some() {
            return bad("an encoded top rendition cannot be delayed".into());
        }
        if self.encoded_audio && self.delay.is_some() {
            return bad("encoded audio cannot be delayed".into());
        }
        let mut names = BTreeSet::new();
        for r in &self.renditions {
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 32
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok || r.name == AUDIO_RENDITION {
                return bad(format!("rendition name {:?} is not usable", r.name));
            }
            if !names.insert(r.name.as_str()) {
                return bad(format!("rendition {:?} is listed twice", r.name));
            }
            let size_ok = (16..=7680).contains(&r.width) && (16..=4320).contains(&r.height);
            if !size_ok || r.width % 2 != 0 || r.height % 2 != 0 {
                return bad(format!(
                    "{}: size {}x{} is not usable",
                    r.name, r.width, r.height
                ));
            }
            if !(50..=100_000).contains(&r.video_kbps) {
                return bad(format!("{}: {} kbit/s is not usable", r.name, r.video_kbps));
            }
            if r.level(self.fps).is_none() {
                return bad(format!("{}: beyond H.264 level 5.2", r.name));
            }
        }
        Ok(())
    }

    /// The master playlist's entries: the video renditions in the given order (each
    /// with the shared audio), then the audio-only one. BANDWIDTH is the encoders'
    /// bitrates plus 10 % for MPEG-TS overhead and rate control swings.
    pub fn variants(&self) -> Vec<Variant> {
        let with_overhead = |kbps: u32| u64::from(kbps) * 1000 * 11 / 10;
        let mut variants: Vec<Variant> = self
            .renditions
            .iter()
            .map(|r| Variant {
                uri: format!("{}/{PLAYLIST}", r.name),
                bandwidth: with_overhead(r.video_kbps + AUDIO_KBPS),
                resolution: Some((r.width, r.height)),
                codecs: format!("{},{AAC_LC}", avc1_high(r.level(self.fps).unwrap_or(52))),
            })
            .collect();
        variants.push(Variant {
            uri: format!("{AUDIO_RENDITION}/{PLAYLIST}"),
            bandwidth: with_overhead(AUDIO_KBPS),
            resolution: None,
            codecs: AAC_LC.into(),
        });
        variants
    }
}

/// A consumer bin with ghost sink pads `video` (raw I420) and `audio` (raw S16LE
/// 48 kHz stereo) writing an HLS presentation with an ABR ladder into a directory.
pub struct HlsBin {
    bin: DrainBin,
    dir: PathBuf,
    /// Names of the `hlssink2` elements, all of which must drain on finish.
    outputs: Vec<String>,
    /// RTMP push destinations fed from the top rendition and the shared AAC.
    rtmp: RtmpOutputs,
    /// The broadcast delay, if any.
    delay: Option<Duration>,
    /// Program running times (ns) whose media is blanked on its way out of the delay.
    blanking: Arc<Blanking>,
}

/// Intervals of program running time `[from, to)` in ns to blank, and the running
/// time of the last video and audio buffer that left the delay (`u64::MAX`: none).
#[derive(Debug)]
struct Blanking {
    intervals: Mutex<Vec<(u64, u64)>>,
    /// The end of the latest interval (0: none yet): buffers after it pass without
    /// taking the lock, which is every buffer of a meeting never cut.
    until: std::sync::atomic::AtomicU64,
    left: [std::sync::atomic::AtomicU64; 2],
}

impl Default for Blanking {
    fn default() -> Self {
        Blanking {
            intervals: Mutex::new(Vec::new()),
            until: std::sync::atomic::AtomicU64::new(0),
            left: [
                std::sync::atomic::AtomicU64::new(u64::MAX),
                std::sync::atomic::AtomicU64::new(u64::MAX),
            ],
        }
    }
}

impl Blanking {
    fn add(&self, from: u64, to: u64) {
        let mut v = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        // Intervals wholly before this one have left the delay long ago.
        v.retain(|(_, end)| *end + 120_000_000_000 > from);
        v.push((from, to));
        self.until
            .fetch_max(to, std::sync::atomic::Ordering::SeqCst);
    }

    fn covers(&self, running_ns: u64) -> bool {
        if running_ns >= self.until.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let v = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().any(|(a, b)| (*a..*b).contains(&running_ns))
    }

    /// The first running time that has not left the delay on both streams.
    fn held_back_from(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let left = self.left.iter().map(|l| l.load(Ordering::SeqCst));
        // A stream of which nothing left yet holds everything back.
        if left.clone().any(|t| t == u64::MAX) {
            return 0;
        }
        left.min().map_or(0, |t| t + 1)
    }
}

/// Hold one raw stream back by `delay` and blank what `blanking` covers on its way
/// out: slate-coloured frames (I420) or silence.
fn delay_stream(
    queue: &gst::Element,
    delay: Duration,
    blanking: Arc<Blanking>,
    video: bool,
) -> Result<(), PipelineError> {
    let ns = delay.as_nanos() as u64;
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", ns + 2_000_000_000);
    queue.set_property("min-threshold-time", ns);
    let sink = queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("delay queue without sink pad".into()))?;
    let src = queue
        .static_pad("src")
        .ok_or_else(|| PipelineError::Link("delay queue without src pad".into()))?;
    // Downstream sees the delayed media on time: muxers and sinks wait for nothing.
    src.set_offset(ns as i64);
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(segment) = sink.sticky_event::<gst::event::Segment>(0) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(segment) = segment.segment().downcast_ref::<gst::ClockTime>().cloned() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let running = buffer
            .pts()
            .and_then(|pts| segment.to_running_time(pts))
            .map(|t| t.nseconds());
        if let Some(t) = running {
            blanking.left[usize::from(!video)].store(t, std::sync::atomic::Ordering::SeqCst);
        }
        if !running.is_some_and(|t| blanking.covers(t)) {
            return gst::PadProbeReturn::Ok;
        }
        let buffer = buffer.make_mut();
        if video {
            let info = pad
                .current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok());
            if let Some(info) = info {
                if let Ok(mut frame) =
                    gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info)
                {
                    // The slate's colour, #1d3557, in BT.601 YUV.
                    for (plane, value) in [(0, 59u8), (1, 146), (2, 115)] {
                        if let Ok(data) = frame.plane_data_mut(plane) {
                            data.fill(value);
                        }
                    }
                }
            }
        } else if let Ok(mut map) = buffer.map_writable() {
            map.fill(0);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Link(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StreamerError + '_ {
    move |source| StreamerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl HlsBin {
    /// Validate the settings, create the directories, build the bin (not yet added
    /// anywhere) and write the master playlist.
    pub fn new(s: &HlsSettings) -> Result<HlsBin, StreamerError> {
        s.validate()?;
        let label: String = s
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let bin = DrainBin::new(&format!("hls-{label}"));
        let hold = GUARD_QUEUE + s.delay.unwrap_or_default();
        let mut outputs = Vec::new();

        // Video: one tee of the raw program, one scaler + encoder per rendition.
        let vtee = make("tee", Some("video-tee"))?;
        bin.add(&vtee).map_err(err)?;
        let blanking = Arc::new(Blanking::default());
        let video_in = match s.delay {
            Some(delay) => {
                let q = make("queue", Some("video-delay"))?;
                bin.add(&q).map_err(err)?;
                q.link(&vtee).map_err(err)?;
                delay_stream(&q, delay, blanking.clone(), true)?;
                q
            }
            None => vtee.clone(),
        };
        // Audio: one AAC encode (here, or outside with `encoded_audio`), shared
        // through a tee.
        let aqueue = make("queue", Some("audio-queue"))?;
        let atee = make("tee", Some("audio-tee"))?;
        // RTMP destinations come and go; without files they are the only consumers.
        atee.set_property("allow-not-linked", true);
        bin.add_many([&aqueue, &atee]).map_err(err)?;
        if s.encoded_audio {
            let aparse = make("aacparse", Some("audio-parse"))?;
            bin.add(&aparse).map_err(err)?;
            link_chain(&[&aqueue, &aparse, &atee])?;
        } else {
            let [aconv, _, aparse] = aac_chain(&bin, "audio")?;
            aqueue.link(&aconv).map_err(err)?;
            aparse.link(&atee).map_err(err)?;
        }
        if let Some(delay) = s.delay {
            delay_stream(&aqueue, delay, blanking.clone(), false)?;
        }

        // The largest rendition (the first of equals) also feeds the RTMP pushes.
        let top = s.top_index();
        let mut raw_renditions = 0;
        let mut encoded_in = None;
        let rtmp_tee = make("tee", Some("rtmp-video-tee"))?;
        rtmp_tee.set_property("allow-not-linked", true);
        bin.add(&rtmp_tee).map_err(err)?;

        for (i, r) in s.renditions.iter().enumerate() {
            if !s.files && i != top {
                continue;
            }
            let queue = make("queue", Some(&format!("{}-queue", r.name)))?;
            bin.add(&queue).map_err(err)?;
            let parse = if s.encoded_top && i == top {
                // Encoded outside; SPS/PPS with every keyframe: each segment decodes
                // on its own.
                let parse = make("h264parse", Some(&format!("{}-parse", r.name)))?;
                parse.set_property("config-interval", -1i32);
                bin.add(&parse).map_err(err)?;
                queue.link(&parse).map_err(err)?;
                encoded_in = Some(queue.clone());
                parse
            } else {
                raw_renditions += 1;
                // Passthrough (no copy, no scaling) when the canvas already has this
                // size.
                let scale = make("videoscale", Some(&format!("{}-scale", r.name)))?;
                let size = capsfilter(
                    gst::Caps::builder("video/x-raw")
                        .field("width", r.width as i32)
                        .field("height", r.height as i32)
                        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                        .build(),
                )?;
                bin.add_many([&scale, &size]).map_err(err)?;
                let [enc, _, parse] = h264_chain(&bin, &r.name, &s.h264(r))?;
                link_chain(&[&vtee, &queue, &scale, &size, &enc])?;
                parse
            };
            if !s.files {
                parse.link(&rtmp_tee).map_err(|_| {
                    PipelineError::Link(format!("{} ! rtmp-video-tee", parse.name()))
                })?;
                continue;
            }
            let sink = hls_sink(s, &r.name)?;
            bin.add(&sink).map_err(err)?;
            if i == top {
                parse.link(&rtmp_tee).map_err(|_| {
                    PipelineError::Link(format!("{} ! rtmp-video-tee", parse.name()))
                })?;
                let src = rtmp_tee
                    .request_pad_simple("src_%u")
                    .ok_or_else(|| PipelineError::Link("rtmp-video-tee has no src pad".into()))?;
                let target = guarded_sink_pad(&bin, &sink, "video", hold)?;
                src.link(&target).map_err(|e| {
                    PipelineError::Link(format!("rtmp-video-tee ! {}: {e:?}", sink.name()))
                })?;
            } else {
                link_to_sink(&bin, &parse, &sink, "video", hold)?;
            }
            link_audio(&bin, &atee, &sink, hold)?;
            outputs.push(sink.name().to_string());
        }
        if s.files {
            let audio_only = hls_sink(s, AUDIO_RENDITION)?;
            bin.add(&audio_only).map_err(err)?;
            link_audio(&bin, &atee, &audio_only, hold)?;
            outputs.push(audio_only.name().to_string());
        }

        let audio_pad = if s.encoded_audio {
            "audio_aac"
        } else {
            "audio"
        };
        let mut inputs = vec![(audio_pad, &aqueue)];
        if raw_renditions > 0 {
            inputs.push(("video", &video_in));
        }
        if let Some(q) = &encoded_in {
            inputs.push(("video_h264", q));
        }
        for (name, el) in inputs {
            let target = el
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link(format!("{} has no sink pad", el.name())))?;
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(err)?
                .name(name)
                .build();
            bin.add_pad(&ghost).map_err(err)?;
        }

        if s.files {
            write_master(&s.dir, &render_master(&s.variants()))?;
        }
        let rtmp = RtmpOutputs::new(bin.clone().upcast(), rtmp_tee, atee);
        Ok(HlsBin {
            bin,
            dir: s.dir.clone(),
            outputs,
            rtmp,
            delay: s.delay,
            blanking,
        })
    }

    /// The moderator cut (the meeting went non-public) at program running time
    /// `now_ns`: with a broadcast delay, everything still held back — all that has
    /// not left the delay yet, about `delay` of program — and the next second (until
    /// the program's own slate arrives) leaves blanked. False without a delay.
    pub fn cut(&self, now_ns: u64) -> bool {
        if self.delay.is_none() {
            return false;
        }
        let from = self.blanking.held_back_from().min(now_ns);
        self.blanking.add(from, now_ns + 1_000_000_000);
        true
    }

    /// The bin to attach (pads `video` and `audio`).
    pub fn bin(&self) -> &gst::Bin {
        self.bin.upcast_ref()
    }

    /// Directory of the presentation.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The master playlist.
    pub fn master_playlist(&self) -> PathBuf {
        self.dir.join(PLAYLIST)
    }

    /// The media playlist of a rendition (`AUDIO_RENDITION` for the audio-only one).
    pub fn media_playlist(&self, rendition: &str) -> PathBuf {
        self.dir.join(rendition).join(PLAYLIST)
    }

    /// Push the livestream to `url`/`key` too (RTMP or RTMPS), sharing the top
    /// rendition's H.264 and the AAC. Works before or while the bin runs; the
    /// destination connects, and reconnects with backoff, on its own thread, and never
    /// disturbs HLS or the other destinations (see [`crate::rtmp`]). `id` (ASCII
    /// letters, digits, `-`, `_`) names it in [`HlsBin::rtmp_status`]; errors and logs
    /// never contain `key`.
    pub fn add_rtmp(&self, id: &str, url: &str, key: &str) -> Result<RtmpHandle, StreamerError> {
        self.rtmp.add(id, url, key)
    }

    /// Stop a destination: EOS to its server (at most [`crate::rtmp::STOP_TIMEOUT`]),
    /// then its branch is removed and its status becomes `Stopped`. Returns at once;
    /// false if no destination has this id.
    pub fn remove_rtmp(&self, id: &str) -> bool {
        self.rtmp.remove(id)
    }

    /// Why the HLS files are not being written (a full disk: the playlists stall
    /// while the RTMP pushes go on), from the first failed write until the stream
    /// ends (they do not resume by themselves). `None` while they advance.
    pub fn write_error(&self) -> Option<String> {
        self.bin.current_error().borrow().clone()
    }

    /// Follows [`HlsBin::write_error`].
    pub fn write_errors(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.bin.current_error()
    }

    /// Every destination added so far and its status (`Stopped` ones included).
    pub fn rtmp_status(&self) -> Vec<(String, RtmpStatus)> {
        self.rtmp.status()
    }

    /// Changes of the destinations' statuses, for the media plane to turn into events
    /// (a `watch`: a slow reader sees the latest state, not every step).
    pub fn rtmp_updates(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::BTreeMap<String, RtmpStatus>> {
        self.rtmp.subscribe()
    }

    /// Finish: EOS into both inputs (the caller detached them from the program
    /// first), then wait until every rendition closed its last segment and ended its
    /// playlist with `#EXT-X-ENDLIST`, at most `watchdog`. Finishing twice is
    /// harmless. RTMP destinations stop too (the EOS reaches their servers); they are
    /// waited for within the same watchdog but never fail the finish.
    ///
    /// A sink with an input that never got caps has written nothing (`mpegtsmux`
    /// writes only once all its inputs have caps), and the EOS makes its muxer fail
    /// ("Could not create handler for stream") or never finish (no data at all): it
    /// is neither waited for nor is its error counted. Call
    /// [`HlsBin::media_ready`] before detaching the bin, so that a stop right after
    /// the start still ends the playlists of what was produced.
    pub async fn finish(&self, watchdog: Duration) -> Result<(), StreamerError> {
        let started = tokio::time::Instant::now();
        self.rtmp.remove_all();
        let unready = self.sinks_without_caps();
        if !unready.is_empty() {
            tracing::info!(?unready, dir = %self.dir.display(), "HLS outputs stopped before any media reached them");
        }
        let bin = self.bin.clone();
        // A serialized event waits for the pad's stream lock, which a stalled branch
        // may hold forever: send from the blocking pool, under the watchdog too.
        let send = tokio::task::spawn_blocking(move || {
            for name in ["video", "video_h264", "audio", "audio_aac"] {
                if let Some(pad) = bin.static_pad(name) {
                    pad.send_event(gst::event::Eos::new());
                }
            }
        });
        let mut drained = self.bin.drained();
        let expected: Vec<String> = self
            .outputs
            .iter()
            .filter(|o| !unready.contains(*o))
            .cloned()
            .collect();
        let expected = &expected;
        let wait = async {
            let _ = send.await;
            drained
                .wait_for(|done| expected.iter().all(|o| done.contains(o)))
                .await
                .is_ok()
        };
        let done = tokio::time::timeout(watchdog, wait).await.unwrap_or(false);
        let mut rtmp = self.rtmp.subscribe();
        let rtmp_done = tokio::time::timeout_at(
            started + watchdog,
            rtmp.wait_for(|m| m.values().all(|s| *s == RtmpStatus::Stopped)),
        )
        .await;
        if !matches!(rtmp_done, Ok(Ok(_))) {
            tracing::warn!(dir = %self.dir.display(), "RTMP destinations did not stop in time");
        }
        if !done {
            let finished = self.bin.drained().borrow().clone();
            let unfinished: Vec<String> = expected
                .iter()
                .filter(|o| !finished.contains(*o))
                .cloned()
                .collect();
            tracing::warn!(?unfinished, dir = %self.dir.display(), "HLS output did not drain");
            return Err(StreamerError::Frozen { unfinished });
        }
        match self.write_error() {
            // The error of a sink that never had all its caps (see above) is not a
            // write failure: it had nothing to write.
            Some(e) if unready.iter().any(|o| e.starts_with(&format!("{o}:"))) => {
                tracing::info!(error = %e, "HLS output without media refused its EOS");
                Ok(())
            }
            Some(e) => Err(StreamerError::Output(e)),
            None => Ok(()),
        }
    }

    /// Wait until media reached every `hlssink2` (each input has caps), at most
    /// `within`; false if it did not. A stream stopped right after its start (issue
    /// 18 item 8) waits here while still attached to the program, which is live:
    /// caps arrive within a few hundred milliseconds of the start.
    pub async fn media_ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.sinks_without_caps().is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Names of the `hlssink2`s with an input that has no caps yet.
    fn sinks_without_caps(&self) -> BTreeSet<String> {
        self.outputs
            .iter()
            .filter(|name| {
                self.bin.by_name(name).is_some_and(|sink| {
                    sink.sink_pads()
                        .iter()
                        .any(|pad| pad.current_caps().is_none())
                })
            })
            .cloned()
            .collect()
    }
}

/// The `hlssink2` of one rendition, writing into `DIR/{name}/`.
fn hls_sink(s: &HlsSettings, name: &str) -> Result<gst::Element, StreamerError> {
    let dir = s.dir.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // Checked UTF-8 by `validate`; the joined parts are ASCII.
    let path = |file: &str| dir.join(file).to_string_lossy().to_string();
    let sink = make("hlssink2", Some(&format!("hls-{name}")))?;
    sink.set_property("location", path(&format!("{}%05d.ts", s.segment_prefix)));
    sink.set_property("playlist-location", path(PLAYLIST));
    sink.set_property("target-duration", s.segment.as_secs() as u32);
    sink.set_property("playlist-length", s.playlist_length());
    sink.set_property("max-files", s.max_files());
    sink.set_property("send-keyframe-requests", true);
    Ok(sink)
}

/// A new request pad (`video` or `audio`) of an `hlssink2`, behind a guard added to
/// `bin` — `queue (leaky, `hold`) !` [`FlowGuard`](gremium_pipelines::guard::FlowGuard)
/// — whose sink pad is returned. A sink that cannot write (a full disk) returns a
/// flow error, or its muxer stops taking data; unguarded, either would travel up the
/// tees and stop the encoders the RTMP pushes share and the audio every output
/// shares. The guard turns the error (or an EOS) into OK and drops what a stuck sink
/// does not take, so only that playlist stalls; the error is still posted, and
/// reported by the bin. The queue is the branch's own thread, so one muxer waiting
/// for its other stream never holds up the others. Caps problems still fail the link.
fn guarded_sink_pad(
    bin: &DrainBin,
    sink: &gst::Element,
    pad: &str,
    hold: Duration,
) -> Result<gst::Pad, PipelineError> {
    let target = sink
        .request_pad_simple(pad)
        .ok_or_else(|| PipelineError::Link(format!("{} has no {pad} pad", sink.name())))?;
    let queue = make("queue", Some(&format!("{}-{pad}-queue", sink.name())))?;
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", hold.as_nanos() as u64);
    queue.set_property_from_str("leaky", "downstream");
    let guard: gst::Element =
        gremium_pipelines::guard::FlowGuard::new(Some(&format!("{}-{pad}-guard", sink.name())))
            .upcast();
    bin.add_many([&queue, &guard]).map_err(err)?;
    queue.link(&guard).map_err(err)?;
    guard
        .static_pad("src")
        .ok_or_else(|| PipelineError::Link("guard has no src pad".into()))?
        .link(&target)
        .map_err(|e| PipelineError::Link(format!("{} ! {}: {e:?}", guard.name(), sink.name())))?;
    queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("queue has no sink pad".into()))
}

/// Link `from`'s src pad to a new, guarded request pad (`video` or `audio`) of an
/// `hlssink2` (see [`guarded_sink_pad`]).
fn link_to_sink(
    bin: &DrainBin,
    from: &gst::Element,
    sink: &gst::Element,
    pad: &str,
    hold: Duration,
) -> Result<(), PipelineError> {
    let target = guarded_sink_pad(bin, sink, pad, hold)?;
    from.static_pad("src")
        .ok_or_else(|| PipelineError::Link(format!("{} has no src pad", from.name())))?
        .link(&target)
        .map_err(|e| PipelineError::Link(format!("{} ! {}: {e:?}", from.name(), sink.name())))?;
    Ok(())
}

/// A branch of the shared AAC into an `hlssink2` (through its guard, which is also
/// the branch's own queue).
fn link_audio(
    bin: &DrainBin,
    atee: &gst::Element,
    sink: &gst::Element,
    hold: Duration,
) -> Result<(), PipelineError> {
    let target = guarded_sink_pad(bin, sink, "audio", hold)?;
    let src = atee
        .request_pad_simple("src_%u")
        .ok_or_else(|| PipelineError::Link("audio-tee has no src pad".into()))?;
    src.link(&target)
        .map_err(|e| PipelineError::Link(format!("audio-tee ! {}: {e:?}", sink.name())))?;
    Ok(())
}

/// Write the master playlist so a reader sees the old or the new file, never half.
fn write_master(dir: &Path, text: &str) -> Result<(), StreamerError> {
    let tmp = dir.join(format!(".{PLAYLIST}.tmp"));
    let path = dir.join(PLAYLIST);
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_brief() {
        let s = HlsSettings::new("/tmp/x", 30);
        assert_eq!(s.segment, Duration::from_secs(1));
        assert_eq!((s.window, s.dvr_window), (6, None));
        assert_eq!(s.renditions, Rendition::default_ladder());
        assert_eq!(s.keyframe_interval(), 30);
        assert_eq!((s.playlist_length(), s.max_files()), (6, 13));
        let dvr = HlsSettings {
            dvr_window: Some(30),
            ..s
        };
        assert_eq!(dvr.playlist_length(), 36);
        assert!(dvr.validate().is_ok());
    }

    #[test]
    fn the_master_playlist_announces_the_ladder_and_audio() {
        let text = render_master(&HlsSettings::new("/tmp/x", 30).variants());
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2890800,RESOLUTION=1280x720,\
             CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1020800,RESOLUTION=640x360,\
             CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=140800,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let ok = HlsSettings::new("/tmp/x", 30);
        let cases: Vec<(&str, HlsSettings)> = vec![
            ("directory", HlsSettings::new("/tmp/50%d", 30)),
            (
                "frame rate",
                HlsSettings {
                    fps: 0,
                    ..ok.clone()
                },
            ),
            (
                "segment",
                HlsSettings {
                    segment: Duration::from_millis(1500),
                    ..ok.clone()
                },
            ),
            (
                "segment",
                HlsSettings {
                    segment: Duration::ZERO,
                    ..ok.clone()
                },
            ),
            (
                "window",
                HlsSettings {
                    window: 2,
                    ..ok.clone()
                },
            ),
            (
                "delay",
                HlsSettings {
                    delay: Some(Duration::ZERO),
                    ..ok.clone()
                },
            ),
            (
                "encoded audio",
                HlsSettings {
                    delay: Some(Duration::from_secs(2)),
                    encoded_audio: true,
                    ..ok.clone()
                },
            ),
            (
                "delay",
                HlsSettings {
                    delay: Some(Duration::from_secs(61)),
                    ..ok.clone()
                },
            ),
            (
                "no video",
                HlsSettings {
                    renditions: vec![],
                    ..ok.clone()
                },
            ),
            (
                "name",
                HlsSettings {
                    renditions: vec![Rendition::new("audio", 640, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "name",
                HlsSettings {
                    renditions: vec![Rendition::new("../x", 640, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "twice",
                HlsSettings {
                    renditions: vec![
                        Rendition::new("a", 640, 360, 800),
                        Rendition::new("a", 320, 180, 400),
                    ],
                    ..ok.clone()
                },
            ),
            (
                "size",
                HlsSettings {
                    renditions: vec![Rendition::new("odd", 641, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "kbit/s",
                HlsSettings {
                    renditions: vec![Rendition::new("a", 640, 360, 0)],
                    ..ok.clone()
                },
            ),
            (
                "segment prefix",
                HlsSettings {
                    segment_prefix: "%d/..".into(),
                    ..ok.clone()
                },
            ),
            (
                "segment prefix",
                HlsSettings {
                    segment_prefix: String::new(),
                    ..ok.clone()
                },
            ),
        ];
        for (why, s) in cases {
            let e = s.validate().expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn a_cut_blanks_all_that_has_not_left_the_delay() {
        let b = Blanking::default();
        // Nothing left yet: everything is held back.
        assert_eq!(b.held_back_from(), 0);
        b.left[0].store(5_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(b.held_back_from(), 0, "audio has not left yet");
        b.left[1].store(4_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(b.held_back_from(), 4_001);
        b.add(4_001, 9_000);
        assert!(!b.covers(4_000) && b.covers(4_001) && b.covers(8_999) && !b.covers(9_000));
    }
}
