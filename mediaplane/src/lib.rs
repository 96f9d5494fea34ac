//! Gremium's media plane on GStreamer: one media session (pipeline) per active
//! meeting, implementing the control plane's [`MediaPlane`] protocol.
//!
//! Owns: meeting media sessions (created on first publish, torn down when the meeting
//! ends or the last publisher leaves), WHIP publishing sessions (one `webrtcbin` per
//! publisher, in a bin of its own with its decoders), and media events back to the
//! control plane.
//!
//! Must not: know HTTP or SQL. It is driven only through [`MediaCommand`]s, so it can
//! run in the control plane's process (the embedded default) or on a media node.
//!
//! Each publisher's decoded audio and video end in a tee; every program (one per
//! output audience, created when a consumer attaches) takes a branch from it through
//! its consent gates. Consumers (recorder, streamer, tests) attach to a program with
//! [`GstMediaPlane::attach_consumer`]. A recording (a
//! `gremium_recorder::RecordingBin`) and a livestream (a
//! `gremium_streamer::hls::HlsBin`, with its RTMP pushes) are such consumers. With
//! `StreamingSettings::share_encoder` (the default) they take their main video and
//! their audio already encoded from the program's H.264 and AAC encoders
//! ([`encoders`]), and the livestream takes the recording's encodes while both
//! audiences see the same program.

pub(crate) mod encoders;
pub mod policy;
mod timeline;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use encoders::{Encoder, Feed};
use gremium_compositor::{Kind, LayoutChoice, Program, ProgramSettings, SpeakerDetector};
use gremium_pipelines::dtls_check::DtlsCheck;
use gremium_pipelines::dtls_fingerprint::pinned_fingerprints;
use gremium_pipelines::encode::H264;
use gremium_pipelines::stop_and_remove;
use gremium_pipelines::webrtc::{
    answer_offer, decode_incoming, make_webrtcbin, parse_sdp, IceSettings, MediaKind,
};
use gremium_pipelines::{make, Pipeline, PipelineError, PipelineSettings};
use gremium_protocol::{
    Audience, CommandOutcome, Consent, EventSink, LayoutSpec, MediaCommand, MediaEvent, MediaPlane,
    MediaPlaneError, MeetingContext,
};
use gremium_recorder::finalize::{
    finalize, spool_path, write_completion, Completion, DiscardGate, FinalizeError, Origin,
};
use gremium_recorder::{RecordingBin, RecordingSettings};
use gremium_storage::crypto::DataKey;
use gremium_storage::vault::media_context;
use gremium_storage::ObjectStore;
use gremium_streamer::hls::{HlsBin, HlsSettings};
use gst::prelude::*;
use timeline::Timeline;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Settings of the media plane (validated by the binary's config).
#[derive(Debug, Clone)]
pub struct MediaPlaneSettings {
    /// ICE configuration of every WHIP endpoint.
    pub ice: IceSettings,
    /// Where frozen pipelines' graphs are written.
    pub dot_dir: PathBuf,
    /// How long to wait for ICE gathering before answering an offer.
    pub gather_timeout: Duration,
    /// A publisher that sends no media for this long is removed.
    pub media_timeout: Duration,
    /// Most publishers one meeting accepts at once.
    pub max_publishers: usize,
    /// Where recordings are spooled (encrypted) while they run.
    pub recordings_dir: PathBuf,
    /// A recording starts only with at least this many bytes free on the spool disk
    /// (0: no check).
    pub recordings_min_free: u64,
    /// Where finalized recordings are stored.
    pub store: Arc<dyn ObjectStore>,
    /// Where HLS presentations are written (`{dir}/{meeting_id}/index.m3u8`).
    pub live_dir: PathBuf,
    /// Look of the programs (canvas, frame rate, labels, texts). The name and the
    /// indicator are set per audience.
    pub program: ProgramSettings,
    /// HLS segmenting and what non-public parts do to recordings.
    pub streaming: StreamingSettings,
    /// How recordings are encoded and fragmented.
    pub recording: RecordingEncode,
}

/// How recordings are encoded (validated by the binary's config, `[recording]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingEncode {
    /// Video bitrate in kbit/s. `None`: that of the HLS ladder's rung with the canvas
    /// size (2500 at 720p, 800 at 360p; 2500 for other sizes), so a livestream of the
    /// same audience can share the recording's encode.
    pub video_kbps: Option<u32>,
    /// Time between keyframes. `None`: one HLS segment while the encoder is shared
    /// (every segment starts on a keyframe), else two seconds.
    pub keyframe_interval: Option<Duration>,
    /// Length of the MP4 fragments written to the spool (what a crash can lose).
    pub fragment: Duration,
}

impl Default for RecordingEncode {
    fn default() -> Self {
        RecordingEncode {
            video_kbps: None,
            keyframe_interval: None,
            fragment: Duration::from_millis(400),
        }
    }
}

/// How livestreams are cut and what a non-public part does to recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingSettings {
    /// HLS segment length (whole seconds; the playlists' target duration).
    pub segment: Duration,
    /// Segments in the live playlist window (at least 3).
    pub window: u32,
    /// Extra segments kept for DVR (pause and seek back), 0 for none.
    pub dvr_segments: u32,
    /// During non-public parts the recording shows the slate too (default: the
    /// recording continues with the program, for the minutes).
    pub slate_recording: bool,
    /// Broadcast delay of livestreams (HLS and RTMP): the program is held back this
    /// long, and going non-public blanks what is still held back.
    pub delay: Option<Duration>,
    /// The programs' video and audio are encoded by the media plane ([`encoders`])
    /// and the livestream takes the recording's encodes while both audiences see the
    /// same program (the default). Off, the recording and the livestream each encode their
    /// own program.
    pub share_encoder: bool,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        StreamingSettings {
            segment: Duration::from_secs(1),
            window: 6,
            dvr_segments: 0,
            slate_recording: false,
            delay: None,
            share_encoder: true,
        }
    }
}

/// Set `gremium_disk_free_bytes{dir="spool"|"live"}`: the free space of the disks
/// recordings spool to and HLS is written to (a directory not made yet: its parent's
/// disk). Two `statvfs` calls.
fn report_free_space(settings: &MediaPlaneSettings) {
    for (label, dir) in [
        ("spool", &settings.recordings_dir),
        ("live", &settings.live_dir),
    ] {
        if let Some(free) = dir.ancestors().find_map(|d| fs4::available_space(d).ok()) {
            metrics::gauge!("gremium_disk_free_bytes", "dir" => label).set(free as f64);
        }
    }
}

/// A camera that sent no video for this long counts as off (placeholder tile).
const CAMERA_OFF_AFTER_MS: u64 = 1500;

struct Publisher {
    participant_id: Uuid,
    bin: gst::Bin,
    /// Milliseconds since `Inner::epoch` of the last decoded buffer (0: none yet).
    last_media_ms: Arc<AtomicU64>,
    /// Milliseconds since `Inner::epoch` when the session was answered.
    answered_ms: u64,
    /// The publisher's `webrtcbin` (remote candidates are added to it).
    webrtc: gst::Element,
    /// ICE username fragment of the publisher's offer.
    remote_ufrag: Option<String>,
    /// The decoded video pad, once video arrives (keyframe requests go upstream here).
    video: Arc<Mutex<Option<gst::Pad>>>,
    /// Tees of the decoded media, once it arrives; programs branch off here.
    tees: Arc<Mutex<HashMap<Kind, gst::Element>>>,
    /// Ghost pads on `bin` feeding programs: (audience, kind, pad).
    links: Vec<(Audience, Kind, gst::GhostPad)>,
    /// Loudest audio level since the last look, as (dBFS + 100) × 100.
    level: Arc<AtomicU32>,
    /// Milliseconds since `Inner::epoch` of the last decoded video frame (0: none).
    last_video_ms: Arc<AtomicU64>,
    /// The camera counts as on.
    camera_on: bool,
    /// The video is a screen share.
    screen_share: bool,
    /// Consent when publishing began (later consent commands are in the memo).
    consent: Consent,
}

/// A running recording: (meeting, consumer id, bin).
type RunningRecording = (Uuid, Uuid, Arc<RecordingBin>);

/// A running stream: (meeting, consumer id, HLS bin).
type RunningStream = (Uuid, Uuid, Arc<HlsBin>);

/// A consumer that must drain before it is removed.
enum Finisher<'a> {
    Recording(&'a RecordingBin),
    Hls(&'a HlsBin),
}

/// Who publishes, as the control plane described them in `Publish`.
struct Joiner {
    display_name: String,
    consent: Consent,
    context: MeetingContext,
    screen_share: bool,
}

/// A consumer attached to a program (recorder, streamer, test tap).
struct Consumer {
    audience: Audience,
    bin: gst::Bin,
    outputs: Vec<gst::Pad>,
    /// Where its `video_h264` and `audio_aac` pads are fed from, if it has them.
    encoded: Vec<(Kind, Encoded)>,
}

/// The encoded video or audio of a consumer.
enum Encoded {
    /// A branch of its audience's encoder (recordings).
    Branch(gst::Pad),
    /// A feed that may switch to the recording's encoder (livestreams).
    Feed(Feed),
}

struct MeetingSession {
    pipeline: Pipeline,
    publishers: HashMap<Uuid, Publisher>,
    programs: HashMap<Audience, Program>,
    /// H.264 and AAC encodes of the programs, while consumers take them.
    encoders: HashMap<(Audience, Kind), Encoder>,
    consumers: HashMap<Uuid, Consumer>,
    speaker: SpeakerDetector,
    /// Names of the participants who published, in joining order.
    roster: Vec<(Uuid, String)>,
}

/// What the media plane remembers of a meeting between sessions: the latest consent
/// commands (they win over the possibly older values a publish carries), the
/// layout and the public flag.
#[derive(Default)]
struct Memo {
    consent: HashMap<Uuid, Consent>,
    layout: Option<LayoutSpec>,
    public: Option<bool>,
}

struct Inner {
    settings: MediaPlaneSettings,
    sink: EventSink,
    meetings: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<MeetingSession>>>>,
    memos: Mutex<HashMap<Uuid, Memo>>,
    /// Running recordings: recording → (meeting, consumer, bin).
    recordings: Mutex<HashMap<Uuid, RunningRecording>>,
    /// Stopped recordings whose spool is still being finished or post-processed; once
    /// post-processing has started, with the gate that can discard one while it waits
    /// for room on the spool disk.
    finishing: Mutex<HashMap<Uuid, Option<Arc<DiscardGate>>>>,
    /// Running streams: stream → (meeting, consumer, bin).
    streams: Mutex<HashMap<Uuid, RunningStream>>,
    /// Appearance timelines of running recordings: recording → (meeting, timeline).
    timelines: Mutex<HashMap<Uuid, (Uuid, Timeline)>>,
    /// Decoded media that appeared: (meeting, publishing session, kind).
    ready: mpsc::UnboundedSender<(Uuid, Uuid, Kind)>,
    /// Publishing sessions whose ICE failed or closed, or whose media stopped.
    dead: mpsc::UnboundedSender<(Uuid, Uuid)>,
    /// Time base of the media timestamps above.
    epoch: Instant,
}

/// The GStreamer media plane. Cheap to clone.
#[derive(Clone)]
pub struct GstMediaPlane(Arc<Inner>);

fn failed(e: PipelineError) -> MediaPlaneError {
    match e {
        PipelineError::Sdp(m) | PipelineError::Unsupported(m) => MediaPlaneError::Rejected(m),
        other => MediaPlaneError::Failed(other.to_string()),
    }
}

impl GstMediaPlane {
    /// Start the media plane (initialises GStreamer; needs a tokio runtime).
    pub fn new(
        settings: MediaPlaneSettings,
        sink: EventSink,
    ) -> Result<GstMediaPlane, MediaPlaneError> {
        let runtime =
            gremium_pipelines::init().map_err(|e| MediaPlaneError::Unavailable(e.to_string()))?;
        if !runtime.missing.is_empty() {
            let names: Vec<&str> = runtime.missing.iter().map(|(e, _)| *e).collect();
            tracing::warn!(missing = ?names, "GStreamer elements missing; run `gremium doctor`");
        }
        // The first publish would otherwise pay for the DTLS certificate.
        tokio::task::spawn_blocking(gremium_pipelines::webrtc::warm_up_dtls);
        let (dead, mut dead_rx) = mpsc::unbounded_channel();
        let (ready, mut ready_rx) = mpsc::unbounded_channel();
        let plane = GstMediaPlane(Arc::new(Inner {
            settings,
            sink,
            meetings: Mutex::new(HashMap::new()),
            memos: Mutex::new(HashMap::new()),
            recordings: Mutex::new(HashMap::new()),
            finishing: Mutex::new(HashMap::new()),
            timelines: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            ready,
            dead,
            epoch: Instant::now(),
        }));
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            while let Some((meeting_id, session_id, kind)) = ready_rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                GstMediaPlane(inner)
                    .connect_to_programs(meeting_id, session_id, kind)
                    .await;
            }
        });
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            while let Some((meeting_id, session_id)) = dead_rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                GstMediaPlane(inner).unpublish(meeting_id, session_id).await;
            }
        });
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                GstMediaPlane(inner).watch_publishers().await;
            }
        });
        // Free space where recordings spool and HLS is written, for alerts before
        // either fills up: now, then every 10 s.
        report_free_space(&plane.0.settings);
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                report_free_space(&inner.settings);
            }
        });
        Ok(plane)
    }

    fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    /// Every tick: queue for removal every publisher that sent no media for
    /// `media_timeout`, notice cameras going off and on, and feed the audio levels
    /// to the active speaker detector.
    async fn watch_publishers(&self) {
        let sessions: Vec<(Uuid, Arc<tokio::sync::Mutex<MeetingSession>>)> = self
            .0
            .meetings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        let now = self.now_ms();
        let limit = self.0.settings.media_timeout.as_millis() as u64;
        for (meeting_id, session) in sessions {
            let mut s = session.lock().await;
            let mut levels = Vec::new();
            let mut camera_changes = Vec::new();
            for (session_id, p) in s.publishers.iter_mut() {
                let last = p.last_media_ms.load(Ordering::Relaxed).max(p.answered_ms);
                if now.saturating_sub(last) > limit {
                    tracing::info!(%meeting_id, %session_id, "publisher sent no media; removing it");
                    let _ = self.0.dead.send((meeting_id, *session_id));
                }
                let video = p.last_video_ms.load(Ordering::Relaxed);
                let on = video > 0 && now.saturating_sub(video) <= CAMERA_OFF_AFTER_MS;
                if on != p.camera_on && (video > 0 || p.camera_on) {
                    p.camera_on = on;
                    camera_changes.push((p.participant_id, on));
                }
                let raw = p.level.swap(0, Ordering::Relaxed);
                let level = (raw > 0).then(|| raw as f32 / 100.0 - 100.0);
                levels.push((p.participant_id, level));
            }
            self.observe_timelines(meeting_id, &s);
            for (participant_id, on) in camera_changes {
                // Blocking: a placeholder card taken out stops its live source.
                blocking(|| {
                    for program in s.programs.values_mut() {
                        program.set_camera(participant_id, on);
                    }
                });
                (self.0.sink)(MediaEvent::CameraChanged {
                    meeting_id,
                    participant_id,
                    on,
                });
            }
            let at = Duration::from_millis(now);
            if let Some(speaker) = s.speaker.update(&levels, at) {
                // Blocking, like every program change that may take a card out.
                blocking(|| {
                    for program in s.programs.values_mut() {
                        program.set_active_speaker(Some(speaker));
                    }
                });
                (self.0.sink)(MediaEvent::ActiveSpeakerChanged {
                    meeting_id,
                    participant_id: speaker,
                });
            }
        }
    }

    /// The consent the media plane should apply for a participant: the latest
    /// `SetConsent` it saw, else what the publish said.
    fn consent_of(&self, meeting_id: Uuid, participant_id: Uuid, fallback: Consent) -> Consent {
        self.memo(meeting_id, |m| {
            *m.consent.entry(participant_id).or_insert(fallback)
        })
    }

    /// The meeting's layout and public flag as last commanded, else `fallback`'s.
    fn memo_context(&self, meeting_id: Uuid, fallback: &MeetingContext) -> MeetingContext {
        self.memo(meeting_id, |m| MeetingContext {
            public: *m.public.get_or_insert(fallback.public),
            layout: m
                .layout
                .get_or_insert_with(|| fallback.layout.clone())
                .clone(),
        })
    }

    /// Read or change what the plane remembers of a meeting.
    fn memo<R>(&self, meeting_id: Uuid, f: impl FnOnce(&mut Memo) -> R) -> R {
        let mut memos = self.0.memos.lock().unwrap_or_else(|p| p.into_inner());
        f(memos.entry(meeting_id).or_default())
    }

    /// The program of an audience, built (and fed with every publisher) on first use.
    fn ensure_program<'a>(
        &self,
        meeting_id: Uuid,
        s: &'a mut MeetingSession,
        audience: Audience,
    ) -> Result<&'a mut Program, MediaPlaneError> {
        if !s.programs.contains_key(&audience) {
            let mut settings = self.0.settings.program.clone();
            let name = match audience {
                Audience::Recording => "recording",
                Audience::Streaming => "streaming",
            };
            settings.name = format!("program-{name}");
            settings.indicator = match audience {
                Audience::Recording => Some("● REC".into()),
                Audience::Streaming => Some("● LIVE".into()),
            };
            let mut program =
                Program::new(settings).map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
            // Until told otherwise: the grid, and the livestream on the slate (a
            // meeting whose public flag the plane has not heard of is not public).
            let (public, layout) = self.memo(meeting_id, |m| {
                (m.public.unwrap_or(false), m.layout.clone())
            });
            program.set_layout(layout_choice(&layout.unwrap_or_default()));
            // The slate's card is built when it goes up, and taken out when it comes
            // down (not kept running hidden).
            if self.slated(audience) && !public {
                program
                    .set_slate(true)
                    .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
            }
            s.pipeline
                .gst()
                .add(program.bin())
                .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
            if let Err(e) = program.bin().sync_state_with_parent() {
                stop_and_remove(s.pipeline.gst(), program.bin());
                return Err(MediaPlaneError::Failed(e.to_string()));
            }
            for (participant_id, name) in &s.roster {
                let consent = self.consent_of(meeting_id, *participant_id, Consent::default());
                program.add_participant(*participant_id, name, consent.for_audience(audience));
            }
            if let Some(speaker) = s.speaker.current() {
                program.set_active_speaker(Some(speaker));
            }
            blocking(|| {
                for p in s.publishers.values_mut() {
                    let tees = p.tees.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    for (kind, tee) in tees {
                        if let Err(e) = link_publisher(&mut program, audience, p, kind, &tee) {
                            tracing::warn!(error = %e, "participant not connected to the program");
                        }
                    }
                    program.set_camera(p.participant_id, p.camera_on);
                    program.set_screen_share(p.participant_id, p.screen_share);
                }
            });
            s.programs.insert(audience, program);
        }
        Ok(s.programs.get_mut(&audience).expect("inserted above"))
    }

    /// Decoded media of a publisher appeared: feed it to every program.
    async fn connect_to_programs(&self, meeting_id: Uuid, session_id: Uuid, kind: Kind) {
        let Some(session) = self.session(meeting_id) else {
            return;
        };
        let mut guard = session.lock().await;
        let s = &mut *guard;
        let Some(p) = s.publishers.get_mut(&session_id) else {
            return;
        };
        let Some(tee) = p
            .tees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kind)
            .cloned()
        else {
            return;
        };
        blocking(|| {
            for (audience, program) in s.programs.iter_mut() {
                if let Err(e) = link_publisher(program, *audience, p, kind, &tee) {
                    tracing::warn!(error = %e, "participant not connected to the program");
                }
            }
        });
    }

    /// Attach a consumer to the program of `audience`: `consumer` is a bin with ghost
    /// sink pads named `video` and/or `audio`, which get the program's raw I420 video
    /// and S16LE 48 kHz stereo audio. The meeting's media session starts if needed.
    pub async fn attach_consumer(
        &self,
        meeting_id: Uuid,
        audience: Audience,
        consumer: gst::Bin,
    ) -> Result<Uuid, MediaPlaneError> {
        self.attach_consumer_with(meeting_id, audience, consumer, None)
            .await
    }

    /// [`GstMediaPlane::attach_consumer`]; a ghost sink pad `video_h264` on the
    /// consumer gets the program's video encoded with `h264` (the audience's encoder,
    /// built on first use; for the streaming audience through a [`Feed`] that takes
    /// the recording's encode while the two programs are the same).
    async fn attach_consumer_with(
        &self,
        meeting_id: Uuid,
        audience: Audience,
        consumer: gst::Bin,
        h264: Option<H264>,
    ) -> Result<Uuid, MediaPlaneError> {
        let session = self.session_or_create(meeting_id)?;
        let mut guard = session.lock().await;
        let s = &mut *guard;
        let failed = |e: String| MediaPlaneError::Failed(e);
        self.ensure_program(meeting_id, s, audience)?;
        s.pipeline
            .gst()
            .add(&consumer)
            .map_err(|e| failed(e.to_string()))?;
        let program = &s.programs[&audience];
        // Running before it is linked: a push into a pad that is not yet active
        // returns FLUSHING, which would stop the program for everyone.
        let linked = consumer
            .sync_state_with_parent()
            .map_err(|e| failed(e.to_string()))
            .and_then(|_| {
                let mut outputs = Vec::new();
                for (name, kind) in [("video", Kind::Video), ("audio", Kind::Audio)] {
                    let Some(sink) = consumer.static_pad(name) else {
                        continue;
                    };
                    let out = program
                        .request_output(kind)
                        .map_err(|e| failed(e.to_string()))?;
                    outputs.push(out.clone());
                    if let Err(e) = out.link(&sink) {
                        for o in &outputs {
                            program.release_output(o);
                        }
                        return Err(failed(format!("{e:?}")));
                    }
                }
                Ok(outputs)
            });
        let outputs = match linked {
            Ok(outputs) => outputs,
            Err(e) => {
                remove_bin(&s.pipeline, &consumer).await;
                return Err(e);
            }
        };
        if consumer.static_pad("video_h264").is_some() && h264.is_none() {
            blocking(|| {
                for o in &outputs {
                    program.release_output(o);
                }
            });
            remove_bin(&s.pipeline, &consumer).await;
            return Err(MediaPlaneError::Failed(
                "a consumer with video_h264 needs encode settings".into(),
            ));
        }
        let id = consumer.name();
        let mut encoded = Vec::new();
        for (pad, kind) in [("video_h264", Kind::Video), ("audio_aac", Kind::Audio)] {
            let Some(sink) = consumer.static_pad(pad) else {
                continue;
            };
            let settings = h264.filter(|_| kind == Kind::Video);
            match blocking(|| self.link_encoded(s, audience, kind, settings, &sink, &id)) {
                Ok(e) => encoded.push((kind, e)),
                Err(e) => {
                    blocking(|| {
                        if let Some(program) = s.programs.get(&audience) {
                            for o in &outputs {
                                program.release_output(o);
                            }
                        }
                        self.release_encoded(s, audience, std::mem::take(&mut encoded));
                    });
                    remove_bin(&s.pipeline, &consumer).await;
                    // Removing an encoder joins its streaming threads.
                    blocking(|| self.prune_encoders(s));
                    return Err(failed(e.to_string()));
                }
            }
        }
        let id = Uuid::new_v4();
        s.consumers.insert(
            id,
            Consumer {
                audience,
                bin: consumer,
                outputs,
                encoded,
            },
        );
        blocking(|| self.update_sharing(meeting_id, s));
        Ok(id)
    }

    /// Detach a consumer (its bin is set to NULL and removed). Ends the media session
    /// when nobody publishes and nothing else consumes.
    pub async fn detach_consumer(&self, meeting_id: Uuid, consumer_id: Uuid) -> bool {
        self.detach_consumer_with(meeting_id, consumer_id, None)
            .await
            .unwrap_or(true)
    }

    /// Detach a consumer; with `finish`, the consumer is finished (EOS, watchdog)
    /// after it is cut off from the program and before it is removed. The meeting's
    /// lock is not held while it finishes, so consent changes never wait for it.
    async fn detach_consumer_with(
        &self,
        meeting_id: Uuid,
        consumer_id: Uuid,
        finish: Option<(Finisher<'_>, Duration)>,
    ) -> Result<bool, String> {
        let Some(session) = self.session(meeting_id) else {
            return Ok(false);
        };
        let mut s = session.lock().await;
        let Some(c) = s.consumers.remove(&consumer_id) else {
            return Ok(false);
        };
        if let Some(program) = s.programs.get(&c.audience) {
            blocking(|| {
                for out in &c.outputs {
                    program.release_output(out);
                }
            });
        }
        blocking(|| {
            self.release_encoded(&mut s, c.audience, c.encoded);
            self.update_sharing(meeting_id, &mut s);
            self.prune_encoders(&mut s);
        });
        let pipeline = s.pipeline.gst().clone();
        drop(s);
        let finished = match finish {
            Some((Finisher::Recording(r), watchdog)) => {
                r.finish(watchdog).await.map_err(|e| e.to_string())
            }
            Some((Finisher::Hls(h), watchdog)) => {
                h.finish(watchdog).await.map_err(|e| e.to_string())
            }
            None => Ok(()),
        };
        let bin = c.bin.clone();
        let _ = tokio::task::spawn_blocking(move || stop_and_remove(&pipeline, &bin)).await;
        let s = session.lock().await;
        let idle = s.publishers.is_empty() && s.consumers.is_empty();
        drop(s);
        if idle {
            self.end_meeting(meeting_id);
        }
        finished.map(|_| true)
    }

    /// The H.264 encode of a program output at `kbps`: a keyframe at every HLS
    /// segment start, so one encode can serve the recording and the livestream.
    fn h264(&self, kbps: u32) -> H264 {
        let segment = self.0.settings.streaming.segment.as_secs().max(1) as u32;
        H264 {
            kbps,
            keyframe_interval: self.0.settings.program.fps.saturating_mul(segment),
        }
    }

    /// Video bitrate of recordings: that of the HLS ladder's rung with the canvas size
    /// (2500 kbit/s at 720p, 800 at 360p), so a livestream of the same audience can
    /// share the recording's encode; 2500 kbit/s for other canvas sizes.
    fn recording_kbps(&self) -> u32 {
        let canvas = self.0.settings.program.canvas;
        gremium_streamer::hls::Rendition::default_ladder()
            .iter()
            .find(|r| r.width == canvas.width && r.height == canvas.height)
            .map_or(2500, |r| r.video_kbps)
    }

    /// Link a consumer's `video_h264` (with its `h264` settings) or `audio_aac`
    /// (`h264` is `None`) to its audience's encode of that kind (built on first use).
    fn link_encoded(
        &self,
        s: &mut MeetingSession,
        audience: Audience,
        kind: Kind,
        h264: Option<H264>,
        sink: &gst::Pad,
        name: &str,
    ) -> Result<Encoded, PipelineError> {
        let kind_label = match kind {
            Kind::Video => "video",
            Kind::Audio => "audio",
        };
        if !s.encoders.contains_key(&(audience, kind)) {
            let program = s
                .programs
                .get(&audience)
                .ok_or_else(|| PipelineError::Link("no program".into()))?;
            let label = match audience {
                Audience::Recording => "recording",
                Audience::Streaming => "streaming",
            };
            let mut encoder = match h264 {
                Some(h264) => Encoder::new(&format!("encode-{label}"), h264)?,
                None => Encoder::new_aac(&format!("encode-{kind_label}-{label}"))?,
            };
            let pipeline = s.pipeline.gst();
            pipeline
                .add(&encoder.bin)
                .map_err(|e| PipelineError::Link(e.to_string()))?;
            let input = encoder
                .bin
                .sync_state_with_parent()
                .map_err(|e| PipelineError::StateChange(e.to_string()))
                .and_then(|_| program.request_output(kind));
            let linked = input.and_then(|out| {
                let sink = encoder
                    .bin
                    .static_pad(kind_label)
                    .expect("encoder has a pad of its kind");
                match out.link(&sink) {
                    Ok(_) => Ok(out),
                    Err(e) => {
                        program.release_output(&out);
                        Err(PipelineError::Link(format!("program ! encoder: {e:?}")))
                    }
                }
            });
            match linked {
                Ok(out) => encoder.input = Some(out),
                Err(e) => {
                    stop_and_remove(pipeline, &encoder.bin);
                    return Err(e);
                }
            }
            s.encoders.insert((audience, kind), encoder);
        }
        let encoder = &s.encoders[&(audience, kind)];
        if encoder.settings != h264 {
            return Err(PipelineError::Link(format!(
                "the {audience:?} program is encoded with {:?}, not {h264:?}",
                encoder.settings
            )));
        }
        let link_err =
            |e: gst::PadLinkError| PipelineError::Link(format!("encoded {kind_label}: {e:?}"));
        match audience {
            Audience::Recording => {
                let branch = encoder.branch()?;
                if let Err(e) = branch.link(sink) {
                    encoder.release_branch(&branch);
                    return Err(link_err(e));
                }
                encoder.request_keyframe();
                Ok(Encoded::Branch(branch))
            }
            Audience::Streaming => {
                let feed = Feed::new(
                    s.pipeline.gst(),
                    &format!("feed-{kind_label}-{name}"),
                    encoder,
                    sink,
                )?;
                Ok(Encoded::Feed(feed))
            }
        }
    }

    /// Give a detached consumer's encoded video and audio back.
    fn release_encoded(
        &self,
        s: &mut MeetingSession,
        audience: Audience,
        encoded: Vec<(Kind, Encoded)>,
    ) {
        for (kind, e) in encoded {
            match e {
                Encoded::Branch(branch) => {
                    if let Some(e) = s.encoders.get(&(audience, kind)) {
                        e.release_branch(&branch);
                    }
                }
                Encoded::Feed(feed) => {
                    if let Some(own) = s.encoders.get(&(Audience::Streaming, kind)) {
                        feed.remove(s.pipeline.gst(), own);
                    }
                }
            }
        }
    }

    /// Remove encoders nobody takes from any more.
    fn prune_encoders(&self, s: &mut MeetingSession) {
        let used = |s: &MeetingSession, audience: Audience, kind: Kind| {
            s.consumers.values().any(|c| {
                c.encoded.iter().any(|(k, e)| {
                    *k == kind
                        && match e {
                            Encoded::Branch(_) => audience == Audience::Recording,
                            Encoded::Feed(_) => audience == Audience::Streaming,
                        }
                })
            })
        };
        let keys: Vec<(Audience, Kind)> = s.encoders.keys().copied().collect();
        for (audience, kind) in keys {
            if used(s, audience, kind) {
                continue;
            }
            let Some(encoder) = s.encoders.remove(&(audience, kind)) else {
                continue;
            };
            if let (Some(program), Some(input)) = (s.programs.get(&audience), &encoder.input) {
                program.release_output(input);
            }
            stop_and_remove(s.pipeline.gst(), &encoder.bin);
        }
    }

    /// Do the recording and the streaming programs show the same thing? Same
    /// consent of everyone for both audiences, the same slate (the meeting is public,
    /// or the recording shows the slate too), and no broadcast delay (the livestream
    /// then holds raw video back and encodes itself).
    fn programs_match(&self, meeting_id: Uuid, s: &MeetingSession) -> bool {
        let streaming = &self.0.settings.streaming;
        if streaming.delay.is_some() {
            return false;
        }
        let (consents, public) = self.memo(meeting_id, |m| {
            (m.consent.clone(), m.public.unwrap_or(false))
        });
        if !public && !streaming.slate_recording {
            return false;
        }
        s.roster.iter().all(|(id, _)| {
            let c = consents.get(id).copied().unwrap_or_else(|| {
                s.publishers
                    .values()
                    .find(|p| p.participant_id == *id)
                    .map(|p| p.consent)
                    .unwrap_or_default()
            });
            c.recording == c.streaming
        })
    }

    /// Point every livestream feed (video and audio) at the recording's encode while
    /// the programs are the same, and back at its own the moment they differ.
    fn update_sharing(&self, meeting_id: Uuid, s: &mut MeetingSession) {
        let matching = self.programs_match(meeting_id, s);
        for kind in [Kind::Video, Kind::Audio] {
            let recording = s.consumers.values().any(|c| {
                c.encoded
                    .iter()
                    .any(|(k, e)| *k == kind && matches!(e, Encoded::Branch(_)))
            });
            let same = recording && matching;
            let Some(own) = s.encoders.get(&(Audience::Streaming, kind)) else {
                continue;
            };
            let shared = s.encoders.get(&(Audience::Recording, kind));
            for c in s.consumers.values_mut() {
                for (k, e) in &mut c.encoded {
                    let Encoded::Feed(feed) = e else {
                        continue;
                    };
                    if *k != kind {
                        continue;
                    }
                    match shared {
                        Some(rec) if same && rec.settings == own.settings => feed.share(rec),
                        Some(_) if !recording => feed.drop_shared(own),
                        _ => feed.unshare(own),
                    }
                }
            }
        }
    }

    /// Frames encoded by each program's encoder of `kind` (H.264 or AAC) of a
    /// meeting, and whether it is idle (its livestream shares the recording's
    /// encode). For tests and diagnostics.
    pub async fn encoders(&self, meeting_id: Uuid, kind: Kind) -> HashMap<Audience, (u64, bool)> {
        let Some(session) = self.session(meeting_id) else {
            return HashMap::new();
        };
        let s = session.lock().await;
        s.encoders
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|((a, _), e)| (*a, (e.frames(), e.idle())))
            .collect()
    }

    /// The indicator of every program: what runs, the same text on all of them (so
    /// programs that could share an encode look the same).
    fn update_indicators(&self, meeting_id: Uuid, s: &MeetingSession) {
        let recording = !self.recordings_of(meeting_id).is_empty();
        let streaming = !self.streams_of(meeting_id).is_empty();
        let text = match (recording, streaming) {
            (true, true) => "● REC · LIVE",
            (true, false) => "● REC",
            _ => "● LIVE",
        };
        for program in s.programs.values() {
            program.set_indicator_text(text);
            program.set_indicator(recording || streaming);
        }
    }

    /// Start recording the meeting's recording-audience program to a fragmented MP4,
    /// encrypted with the recording's data key, in the spool directory. A second start
    /// of the same recording is a no-op.
    async fn start_recording(
        &self,
        meeting_id: Uuid,
        recording_id: Uuid,
        data_key: &str,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        let key = DataKey::from_hex(data_key)
            .map_err(|e| MediaPlaneError::Rejected(format!("data key: {e}")))?;
        if self
            .0
            .recordings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&recording_id)
        {
            return Ok(CommandOutcome::Accepted);
        }
        let dir = &self.0.settings.recordings_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| MediaPlaneError::Failed(format!("recordings directory: {e}")))?;
        // Refused up front rather than interrupted minutes later (which keeps what
        // was written, but the chair would rather know now).
        let min_free = self.0.settings.recordings_min_free;
        if let Ok(free) = fs4::available_space(dir) {
            if free < min_free {
                const MIB: u64 = 1024 * 1024;
                return Err(MediaPlaneError::Full(format!(
                    "not enough space on the spool disk to start a recording: {} MiB free, \
                     {} MiB required (storage.spool_min_free_mb)",
                    free / MIB,
                    min_free.div_ceil(MIB)
                )));
            }
        }
        let share = self.0.settings.streaming.share_encoder;
        // Shared: what the livestream's top rung uses. Own: 2.5 Mb/s, a keyframe every
        // two seconds (fragments start on one).
        let h264 = if share {
            self.h264(self.recording_kbps())
        } else {
            H264 {
                kbps: 2500,
                keyframe_interval: self.0.settings.program.fps.saturating_mul(2),
            }
        };
        let recording = Arc::new(
            RecordingBin::new(&RecordingSettings {
                path: spool_path(dir, recording_id),
                key,
                context: media_context(recording_id),
                video: h264,
                encoded_input: self.0.settings.streaming.share_encoder,
                encoded_audio: self.0.settings.streaming.share_encoder,
                fragment: Duration::from_millis(400),
            })
            .map_err(failed)?,
        );
        let consumer_id = self
            .attach_consumer_with(
                meeting_id,
                Audience::Recording,
                recording.bin().clone(),
                self.0.settings.streaming.share_encoder.then_some(h264),
            )
            .await?;
        // A failed write (the spool disk filled up) ends the recording at once: the
        // spool keeps every whole fragment before it, and stopping finalizes that.
        let mut failures = recording.interruptions();
        self.0
            .recordings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(recording_id, (meeting_id, consumer_id, recording));
        // Weak: a running recording must not keep a dropped media plane alive.
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            // Ends with the bin (its sender goes) when the recording stops normally.
            let Ok(reason) = failures.wait_for(|e| e.is_some()).await.map(|r| r.clone()) else {
                return;
            };
            let Some(plane) = weak.upgrade().map(GstMediaPlane) else {
                return;
            };
            let reason = reason.unwrap_or_default();
            // Running, or already stopping (the write failed in the stop's final
            // flush: the end is lost all the same, and the record must say so). In
            // the order a stop moves it, under the same locks.
            let (running, stopping) = {
                let running = plane.0.recordings.lock().unwrap_or_else(|p| p.into_inner());
                let finishing = plane.0.finishing.lock().unwrap_or_else(|p| p.into_inner());
                (
                    running.contains_key(&recording_id),
                    finishing.contains_key(&recording_id),
                )
            };
            if running || stopping {
                tracing::warn!(%recording_id, %reason, "recording interrupted; keeping what was written");
                (plane.0.sink)(MediaEvent::RecordingInterrupted {
                    meeting_id,
                    recording_id,
                    reason,
                });
            }
            if running {
                plane.stop_recording(recording_id).await;
            }
        });
        if let Some(session) = self.session(meeting_id) {
            let s = session.lock().await;
            self.update_indicators(meeting_id, &s);
            if let Some(now) = running_time(&s) {
                let mut timeline = Timeline::new(now);
                timeline.observe(now, &self.recording_visible(meeting_id, &s));
                self.0
                    .timelines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(recording_id, (meeting_id, timeline));
            }
        }
        (self.0.sink)(MediaEvent::RecordingStarted {
            meeting_id,
            recording_id,
        });
        Ok(CommandOutcome::Accepted)
    }

    /// Remove the spool a deleted recording left (a failed one keeps it until then).
    /// A recording still running, or stopped and being finished or post-processed,
    /// is using its spool: refused.
    async fn discard_recording(
        &self,
        recording_id: Uuid,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        {
            let running = self.0.recordings.lock().unwrap_or_else(|p| p.into_inner());
            let finishing = self.0.finishing.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains_key(&recording_id) {
                return Err(MediaPlaneError::Rejected(
                    "the recording is running: stop it first".into(),
                ));
            }
            // Stopped and waiting for room to be finalized: discarded, its
            // finalization leaves the spool to us. Not while its file is still being
            // finished, nor once sealing has begun.
            match finishing.get(&recording_id) {
                Some(Some(gate)) if gate.discard() => {}
                Some(_) => {
                    return Err(MediaPlaneError::Rejected(
                        "the recording is being finalized: delete it once it has finished".into(),
                    ))
                }
                None => {}
            }
        }
        let spool = spool_path(&self.0.settings.recordings_dir, recording_id);
        blocking(|| gremium_recorder::finalize::remove_spool(&spool))
            .map_err(|e| MediaPlaneError::Failed(format!("removing the spool: {e}")))?;
        Ok(CommandOutcome::Accepted)
    }

    /// Stop a recording: cut it off the program, finish the file (10 s watchdog),
    /// report finished or failed. Stopping an unknown or stopped recording is a no-op.
    async fn stop_recording(&self, recording_id: Uuid) {
        let entry = {
            let mut running = self.0.recordings.lock().unwrap_or_else(|p| p.into_inner());
            let entry = running.remove(&recording_id);
            if entry.is_some() {
                // Under the same lock: while in use, the spool is always in one set.
                self.0
                    .finishing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(recording_id, None);
            }
            entry
        };
        let Some((meeting_id, consumer_id, recording)) = entry else {
            return;
        };
        let timeline = self
            .0
            .timelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&recording_id);
        let mut appearances = Vec::new();
        if let Some(session) = self.session(meeting_id) {
            let s = session.lock().await;
            self.update_indicators(meeting_id, &s);
            if let (Some((_, timeline)), Some(now)) = (timeline, running_time(&s)) {
                appearances = timeline.finish(now);
            }
        }
        let watchdog = Duration::from_secs(10);
        let result = self
            .detach_consumer_with(
                meeting_id,
                consumer_id,
                Some((Finisher::Recording(&recording), watchdog)),
            )
            .await;
        if let Err(e) = result {
            // The spool is no longer in use (and stays until the recording is
            // deleted): out of the set before the failure is reported, so a deletion
            // that follows the report removes it.
            self.0
                .finishing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&recording_id);
            (self.0.sink)(MediaEvent::RecordingFailed {
                meeting_id,
                recording_id,
                reason: format!("the recording was not finalized within 10 s: {e}"),
            });
            return;
        }
        // Post-processing (seal, validate, poster, store) runs on its own: it needs
        // no pipeline, and a long recording must not hold up the stop call.
        let spool = recording.path().to_path_buf();
        let key = recording.key().clone();
        let completion = Completion {
            first_fragment_ms: recording
                .first_fragment_after()
                .map(|d| d.as_millis() as u64),
            appearances,
        };
        if let Err(e) = write_completion(&spool, &completion) {
            tracing::warn!(%recording_id, error = %e, "completion mark not written");
        }
        self.finalize_spool(
            meeting_id,
            recording_id,
            key,
            Origin::Stopped(completion),
            "post-processing failed",
        );
    }

    /// Post-process a recording's spool in the background (seal, validate, poster,
    /// store: [`finalize`]) and report it finished or failed, a failure's reason
    /// prefixed with `failing`. Until sealing begins (while it waits for room on the
    /// spool disk) a `DiscardRecording` discards it; after, it is refused until the
    /// recording is finished. Also for the spools a stopped process left behind.
    pub fn finalize_spool(
        &self,
        meeting_id: Uuid,
        recording_id: Uuid,
        key: DataKey,
        origin: Origin,
        failing: &'static str,
    ) {
        let spool = spool_path(&self.0.settings.recordings_dir, recording_id);
        let gate = Arc::new(DiscardGate::default());
        self.0
            .finishing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(recording_id, Some(gate.clone()));
        let store = self.0.settings.store.clone();
        let sink = self.0.sink.clone();
        let progress_sink = sink.clone();
        let progress: gremium_recorder::finalize::Progress = Arc::new(move |t| {
            progress_sink(MediaEvent::RecordingProgress {
                meeting_id,
                recording_id,
                processed_ms: t.as_millis() as u64,
            })
        });
        let inner = self.0.clone();
        tokio::spawn(async move {
            let result = finalize(spool, key, recording_id, store, origin, progress, &gate).await;
            inner
                .finishing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&recording_id);
            sink(match result {
                Ok(media) => MediaEvent::RecordingFinished {
                    meeting_id,
                    recording_id,
                    media: Some(media),
                },
                Err(FinalizeError::Discarded) => MediaEvent::RecordingFailed {
                    meeting_id,
                    recording_id,
                    reason: "deleted while waiting for room on the spool disk to be finalized"
                        .into(),
                },
                Err(FinalizeError::Failed(reason)) => MediaEvent::RecordingFailed {
                    meeting_id,
                    recording_id,
                    reason: format!("{failing}: {reason}"),
                },
            });
        });
    }

    /// Start the livestream: the streaming-audience program as HLS in the live
    /// directory. RTMP push is not available yet. A second start is a no-op.
    async fn start_stream(
        &self,
        meeting_id: Uuid,
        stream_id: Uuid,
        hls: bool,
        rtmp: &[gremium_protocol::RtmpTarget],
        context: Option<MeetingContext>,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        if self
            .0
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&stream_id)
        {
            return Ok(CommandOutcome::Accepted);
        }
        if !hls && rtmp.is_empty() {
            return Err(MediaPlaneError::Rejected("nothing to stream".into()));
        }
        if let Some(context) = &context {
            self.memo_context(meeting_id, context);
        }
        // The HLS bin hosts the encoders RTMP shares. Without `hls` it writes nothing
        // and encodes only what the pushes use.
        let dir = self.0.settings.live_dir.join(meeting_id.to_string());
        if hls {
            // A new stream starts a new presentation: an old one's segments would
            // confuse players (media sequence restarting at 0).
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| MediaPlaneError::Failed(format!("live directory: {e}")))?;
        }
        let program = &self.0.settings.program;
        let mut settings = HlsSettings::new(&dir, program.fps);
        let streaming = &self.0.settings.streaming;
        settings.segment = streaming.segment;
        settings.window = streaming.window;
        settings.dvr_window = (streaming.dvr_segments > 0).then_some(streaming.dvr_segments);
        settings.delay = streaming.delay;
        settings.files = hls;
        // Segment names of their own (served as immutable): a CDN must never hand out
        // an earlier stream's segment of the same number.
        settings.segment_prefix = format!("s{}-", &stream_id.simple().to_string()[..8]);
        // Never upscale: the ladder's rungs up to the canvas, or the canvas itself.
        settings
            .renditions
            .retain(|r| r.height <= program.canvas.height && r.width <= program.canvas.width);
        if settings.renditions.is_empty() {
            settings
                .renditions
                .push(gremium_streamer::hls::Rendition::new(
                    &format!("{}p", program.canvas.height),
                    program.canvas.width,
                    program.canvas.height,
                    800,
                ));
        }
        // The top rendition is the program's own encode (shareable with the
        // recording) when it has the canvas size and nothing is held back.
        let top = settings.top().cloned();
        let h264 = top.and_then(|top| {
            let own_size = top.width == program.canvas.width && top.height == program.canvas.height;
            (own_size && settings.delay.is_none() && streaming.share_encoder)
                .then(|| self.h264(top.video_kbps))
        });
        settings.encoded_top = h264.is_some();
        // The AAC is shared the same way (one configuration: no settings to match).
        settings.encoded_audio = settings.delay.is_none() && streaming.share_encoder;
        let hls = HlsBin::new(&settings).map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        for (i, target) in rtmp.iter().enumerate() {
            hls.add_rtmp(&format!("rtmp{i}"), &target.url, &target.key)
                .map_err(|e| MediaPlaneError::Rejected(e.to_string()))?;
        }
        if !rtmp.is_empty() {
            self.watch_destinations(meeting_id, stream_id, &hls);
        }
        if settings.files {
            self.watch_hls_writes(meeting_id, stream_id, &hls);
        }
        let consumer_id = self
            .attach_consumer_with(meeting_id, Audience::Streaming, hls.bin().clone(), h264)
            .await?;
        self.0
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream_id, (meeting_id, consumer_id, Arc::new(hls)));
        if let Some(session) = self.session(meeting_id) {
            self.update_indicators(meeting_id, &*session.lock().await);
        }
        (self.0.sink)(MediaEvent::StreamStarted {
            meeting_id,
            stream_id,
        });
        Ok(CommandOutcome::Accepted)
    }

    /// Report the HLS files stalling (a full disk) or advancing again, until the bin
    /// is gone (its sender goes with it).
    fn watch_hls_writes(&self, meeting_id: Uuid, stream_id: Uuid, hls: &HlsBin) {
        let mut errors = hls.write_errors();
        let sink = self.0.sink.clone();
        tokio::spawn(async move {
            while errors.changed().await.is_ok() {
                let error = errors.borrow_and_update().clone();
                if let Some(e) = &error {
                    tracing::warn!(%stream_id, error = %e, "HLS output stalled; the stream's pushes go on");
                }
                sink(MediaEvent::StreamHlsChanged {
                    meeting_id,
                    stream_id,
                    error,
                });
            }
        });
    }

    /// Report RTMP destination changes as events until every destination stopped.
    fn watch_destinations(&self, meeting_id: Uuid, stream_id: Uuid, hls: &HlsBin) {
        use gremium_streamer::rtmp::RtmpStatus;
        let mut updates = hls.rtmp_updates();
        let sink = self.0.sink.clone();
        tokio::spawn(async move {
            let mut seen: std::collections::BTreeMap<String, RtmpStatus> = Default::default();
            loop {
                let now = updates.borrow_and_update().clone();
                for (id, status) in &now {
                    if seen.get(id) == Some(status) {
                        continue;
                    }
                    let destination = id.trim_start_matches("rtmp").parse().unwrap_or(0);
                    let (name, attempt, error) = match status {
                        RtmpStatus::Connecting => ("connecting", None, None),
                        RtmpStatus::Live => ("live", None, None),
                        RtmpStatus::Retrying {
                            attempt,
                            last_error,
                        } => ("retrying", Some(*attempt), Some(last_error.clone())),
                        RtmpStatus::Stopped => ("stopped", None, None),
                    };
                    sink(MediaEvent::StreamDestinationChanged {
                        meeting_id,
                        stream_id,
                        destination,
                        status: name.into(),
                        attempt,
                        error,
                    });
                }
                let all_stopped =
                    !now.is_empty() && now.values().all(|s| *s == RtmpStatus::Stopped);
                seen = now;
                if all_stopped || updates.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Stop a stream: cut it off the program, let HLS write its last segment and end
    /// the playlists (10 s watchdog). Unknown or stopped streams: no-op.
    async fn stop_stream(&self, stream_id: Uuid) {
        let entry = self
            .0
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stream_id);
        let Some((meeting_id, consumer_id, hls)) = entry else {
            return;
        };
        if let Some(session) = self.session(meeting_id) {
            self.update_indicators(meeting_id, &*session.lock().await);
        }
        // A stop right after the start: let media reach every muxer first, while the
        // bin is still fed, so the EOS ends what was produced (issue 18 item 8).
        if !hls.media_ready(Duration::from_secs(2)).await {
            tracing::info!(%stream_id, "stream stopped before media reached all its outputs");
        }
        let result = self
            .detach_consumer_with(
                meeting_id,
                consumer_id,
                Some((Finisher::Hls(&hls), Duration::from_secs(10))),
            )
            .await;
        (self.0.sink)(match result {
            Ok(_) => MediaEvent::StreamFinished {
                meeting_id,
                stream_id,
            },
            Err(e) => MediaEvent::StreamFailed {
                meeting_id,
                stream_id,
                reason: format!("the stream did not end cleanly: {e}"),
            },
        });
    }

    /// Streams of a meeting that are running.
    fn streams_of(&self, meeting_id: Uuid) -> Vec<Uuid> {
        self.0
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, (m, _, _))| *m == meeting_id)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Recordings of a meeting that are running.
    fn recordings_of(&self, meeting_id: Uuid) -> Vec<Uuid> {
        self.0
            .recordings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, (m, _, _))| *m == meeting_id)
            .map(|(r, _)| *r)
            .collect()
    }

    /// The tiles a program shows now (for tests and diagnostics).
    pub async fn placements(
        &self,
        meeting_id: Uuid,
        audience: Audience,
    ) -> Option<Vec<gremium_compositor::Placement>> {
        let session = self.session(meeting_id)?;
        let s = session.lock().await;
        s.programs.get(&audience).map(|p| p.placements().to_vec())
    }

    /// Participants who appear in the recording program now: publishing (media seen)
    /// with recording consent.
    fn recording_visible(&self, meeting_id: Uuid, s: &MeetingSession) -> Vec<(Uuid, String)> {
        let commanded = self.memo(meeting_id, |m| m.consent.clone());
        s.publishers
            .values()
            .filter(|p| p.last_media_ms.load(Ordering::Relaxed) > 0)
            .filter(|p| {
                commanded
                    .get(&p.participant_id)
                    .copied()
                    .unwrap_or(p.consent)
                    .recording
            })
            .map(|p| {
                let name = s
                    .roster
                    .iter()
                    .find(|(id, _)| *id == p.participant_id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                (p.participant_id, name)
            })
            .collect()
    }

    /// Bring the appearance timelines of the meeting's recordings up to date.
    fn observe_timelines(&self, meeting_id: Uuid, s: &MeetingSession) {
        let Some(now) = running_time(s) else {
            return;
        };
        let mut timelines = self.0.timelines.lock().unwrap_or_else(|p| p.into_inner());
        if !timelines.values().any(|(m, _)| *m == meeting_id) {
            return;
        }
        let visible = self.recording_visible(meeting_id, s);
        for (m, t) in timelines.values_mut() {
            if *m == meeting_id {
                t.observe(now, &visible);
            }
        }
    }

    /// Apply a consent change to every program; returns the running time after the
    /// gates moved (None without a media session).
    async fn set_consent(
        &self,
        meeting_id: Uuid,
        participant_id: Uuid,
        consent: Consent,
    ) -> Option<u64> {
        self.memo(meeting_id, |m| m.consent.insert(participant_id, consent));
        let session = self.session(meeting_id)?;
        let mut s = session.lock().await;
        // Blocking: a placeholder card taken out stops its live source.
        blocking(|| {
            for (audience, program) in s.programs.iter_mut() {
                program.set_consent(participant_id, consent.for_audience(*audience));
            }
        });
        // Right after the gates: a livestream sharing the recording's encode leaves
        // it before another frame passes.
        blocking(|| self.update_sharing(meeting_id, &mut s));
        self.observe_timelines(meeting_id, &s);
        running_time(&s)
    }

    async fn set_layout(&self, meeting_id: Uuid, layout: LayoutSpec) -> Option<u64> {
        self.memo(meeting_id, |m| m.layout = Some(layout.clone()));
        let session = self.session(meeting_id)?;
        let mut s = session.lock().await;
        blocking(|| {
            for program in s.programs.values_mut() {
                program.set_layout(layout_choice(&layout));
            }
        });
        running_time(&s)
    }

    async fn set_public(
        &self,
        meeting_id: Uuid,
        public: bool,
    ) -> Result<Option<u64>, MediaPlaneError> {
        self.memo(meeting_id, |m| m.public = Some(public));
        let Some(session) = self.session(meeting_id) else {
            return Ok(None);
        };
        let mut s = session.lock().await;
        // Blocking: the slate's card taken down stops its live source.
        blocking(|| {
            for (audience, program) in s.programs.iter_mut() {
                if self.slated(*audience) {
                    program
                        .set_slate(!public)
                        .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
                }
            }
            Ok::<_, MediaPlaneError>(())
        })?;
        blocking(|| self.update_sharing(meeting_id, &mut s));
        let now = running_time(&s);
        if let (false, Some(now)) = (public, now) {
            // With a broadcast delay, what is still held back never leaves either.
            let streams = self.0.streams.lock().unwrap_or_else(|p| p.into_inner());
            for (m, _, hls) in streams.values() {
                if *m == meeting_id {
                    hls.cut(now);
                }
            }
        }
        Ok(now)
    }

    /// Does this audience's program show the slate during non-public parts? The
    /// livestream always; the recording when configured so.
    fn slated(&self, audience: Audience) -> bool {
        audience == Audience::Streaming || self.0.settings.streaming.slate_recording
    }

    fn session(&self, meeting_id: Uuid) -> Option<Arc<tokio::sync::Mutex<MeetingSession>>> {
        self.0
            .meetings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&meeting_id)
            .cloned()
    }

    fn session_or_create(
        &self,
        meeting_id: Uuid,
    ) -> Result<Arc<tokio::sync::Mutex<MeetingSession>>, MediaPlaneError> {
        let mut meetings = self.0.meetings.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = meetings.get(&meeting_id) {
            return Ok(s.clone());
        }
        let pipeline = Pipeline::new(PipelineSettings {
            name: format!("meeting-{meeting_id}"),
            dot_dir: self.0.settings.dot_dir.clone(),
        });
        pipeline.start().map_err(failed)?;
        let session = Arc::new(tokio::sync::Mutex::new(MeetingSession {
            pipeline,
            publishers: HashMap::new(),
            programs: HashMap::new(),
            encoders: HashMap::new(),
            consumers: HashMap::new(),
            speaker: SpeakerDetector::new(Default::default()),
            roster: Vec::new(),
        }));
        meetings.insert(meeting_id, session.clone());
        tracing::info!(%meeting_id, "media session started");
        Ok(session)
    }

    /// Ask a participant's publisher for a video keyframe (RTCP PLI/FIR), e.g. when a
    /// consumer starts using their video. False if they publish no video (yet).
    pub async fn request_keyframe(&self, meeting_id: Uuid, participant_id: Uuid) -> bool {
        let Some(session) = self.session(meeting_id) else {
            return false;
        };
        let s = session.lock().await;
        let pads: Vec<gst::Pad> = s
            .publishers
            .values()
            .filter(|p| p.participant_id == participant_id)
            .filter_map(|p| p.video.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        drop(s);
        pads.iter().any(gremium_pipelines::webrtc::request_keyframe)
    }

    /// Number of meetings with a running media session.
    pub fn active_meetings(&self) -> usize {
        self.0
            .meetings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    async fn publish(
        &self,
        meeting_id: Uuid,
        participant_id: Uuid,
        offer: &str,
        joiner: Joiner,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        let Joiner {
            display_name,
            consent,
            context,
            screen_share,
        } = joiner;
        let display_name = display_name.as_str();
        let context = &context;
        let posted = Instant::now();
        parse_sdp(offer).map_err(failed)?;
        if !offers_supported_codec(offer) {
            return Err(MediaPlaneError::Rejected(
                "no supported codec offered: send VP8 or H.264 video, or Opus audio".into(),
            ));
        }
        // The offer must say which DTLS certificate its sender will present.
        let pins = pinned_fingerprints(offer)
            .map_err(|e| MediaPlaneError::Rejected(format!("SDP: {e}")))?;
        self.memo_context(meeting_id, context);
        let consent = self.consent_of(meeting_id, participant_id, consent);
        let session = self.session_or_create(meeting_id)?;
        let mut guard = session.lock().await;
        let s = &mut *guard;
        let others = s
            .publishers
            .values()
            .filter(|p| p.participant_id != participant_id)
            .count();
        if others >= self.0.settings.max_publishers {
            let full = MediaPlaneError::Full(format!(
                "the meeting already has {} publishers (the limit)",
                self.0.settings.max_publishers
            ));
            return self.abandon(guard, meeting_id, full);
        }
        // A participant publishes once: a new session replaces an old one (reconnect).
        let old: Vec<Uuid> = s
            .publishers
            .iter()
            .filter(|(_, p)| p.participant_id == participant_id)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(p) = s.publishers.remove(&id) {
                drop_publisher(s, p).await;
            }
        }
        let session_id = Uuid::new_v4();
        let bin = gst::Bin::with_name(&format!("publisher-{session_id}"));
        let webrtc = match make_webrtcbin("webrtc", &self.0.settings.ice) {
            Ok(w) => w,
            Err(e) => return self.abandon(guard, meeting_id, failed(e)),
        };
        if let Err(e) = bin.add(&webrtc) {
            return self.abandon(guard, meeting_id, MediaPlaneError::Failed(e.to_string()));
        }
        let started = Arc::new(AtomicBool::new(false));
        let last_media_ms = Arc::new(AtomicU64::new(0));
        let (last, epoch) = (last_media_ms.clone(), self.0.epoch);
        let video: Arc<Mutex<Option<gst::Pad>>> = Arc::default();
        let video_slot = video.clone();
        let tees: Arc<Mutex<HashMap<Kind, gst::Element>>> = Arc::default();
        let tees_slot = tees.clone();
        let level = Arc::new(AtomicU32::new(0));
        let last_video_ms = Arc::new(AtomicU64::new(0));
        let (level_slot, video_seen) = (level.clone(), last_video_ms.clone());
        let ready = self.0.ready.clone();
        let sink = self.0.sink.clone();
        let bin_weak = bin.downgrade();
        let dtls = DtlsCheck::new(pins);
        let dead = self.0.dead.clone();
        dtls.on_reject(move |why| {
            // Torn down as a vanished publisher is (the dead queue), with no address.
            metrics::counter!("gremium_dtls_fingerprint_mismatch_total").increment(1);
            tracing::warn!(%meeting_id, %participant_id, %session_id, reason = %why,
                "DTLS certificate of the publisher does not match its offer's fingerprint; \
                 removing the publisher");
            let _ = dead.send((meeting_id, session_id));
        });
        decode_incoming(&webrtc, &bin, dtls.clone(), move |kind, pad| {
            let Some(bin) = bin_weak.upgrade() else {
                return false;
            };
            let last = last.clone();
            let video_seen = video_seen.clone();
            let label = match kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let first_frame = Arc::new(AtomicBool::new(false));
            let seen = move || {
                let now = epoch.elapsed().as_millis() as u64;
                last.store(now, Ordering::Relaxed);
                if kind == MediaKind::Video {
                    video_seen.store(now.max(1), Ordering::Relaxed);
                }
                if kind == MediaKind::Video && !first_frame.swap(true, Ordering::Relaxed) {
                    // Offer received → first decoded video frame.
                    metrics::histogram!("gremium_ingest_first_frame_seconds")
                        .record(posted.elapsed().as_secs_f64());
                    tracing::debug!(
                        ms = posted.elapsed().as_millis() as u64,
                        "offer → first decoded video frame"
                    );
                }
                metrics::counter!("gremium_ingest_decoded_buffers_total", "kind" => label)
                    .increment(1);
            };
            let level = (kind == MediaKind::Audio).then(|| level_slot.clone());
            let tee = match attach_tee(&bin, participant_id, kind, &pad, seen, level) {
                Ok(tee) => tee,
                Err(e) => {
                    tracing::warn!(error = %e, "participant branch not attached");
                    return false;
                }
            };
            let program_kind = match kind {
                MediaKind::Audio => Kind::Audio,
                MediaKind::Video => Kind::Video,
            };
            tees_slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(program_kind, tee);
            let _ = ready.send((meeting_id, session_id, program_kind));
            if kind == MediaKind::Video {
                *video_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(pad.clone());
            }
            if !started.swap(true, Ordering::SeqCst) {
                sink(MediaEvent::ParticipantMediaStarted {
                    meeting_id,
                    participant_id,
                });
            }
            true
        });
        let dead = self.0.dead.clone();
        webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
            let state: gst_webrtc_state::State = w.property("ice-connection-state");
            if matches!(
                state,
                gst_webrtc_state::State::Failed | gst_webrtc_state::State::Closed
            ) {
                let _ = dead.send((meeting_id, session_id));
            }
        });
        if let Err(e) = s.pipeline.gst().add(&bin) {
            return self.abandon(guard, meeting_id, MediaPlaneError::Failed(e.to_string()));
        }
        // Bringing webrtcbin up starts its ICE agent and threads: not on a tokio worker.
        let starting = bin.clone();
        let up = tokio::task::spawn_blocking(move || starting.sync_state_with_parent())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = up {
            remove_bin(&s.pipeline, &bin).await;
            return self.abandon(guard, meeting_id, MediaPlaneError::Failed(e));
        }
        tracing::debug!(
            ms = posted.elapsed().as_millis() as u64,
            "publishing endpoint up"
        );
        let host_only = self.0.settings.ice.host_only();
        match answer_offer(&webrtc, offer, self.0.settings.gather_timeout, host_only).await {
            Ok(answer_sdp) => {
                // The transports exist now: check each certificate when DTLS connects.
                dtls.watch(&webrtc);
                let answer_sdp = match self.0.settings.ice.nat_1to1 {
                    Some(public) => {
                        gremium_pipelines::webrtc::announce_address(&answer_sdp, public)
                    }
                    None => answer_sdp,
                };
                let answered_ms = self.now_ms();
                if !s.roster.iter().any(|(id, _)| *id == participant_id) {
                    s.roster.push((participant_id, display_name.to_string()));
                }
                blocking(|| {
                    for (audience, program) in s.programs.iter_mut() {
                        program.add_participant(
                            participant_id,
                            display_name,
                            consent.for_audience(*audience),
                        );
                        program.set_screen_share(participant_id, screen_share);
                    }
                });
                blocking(|| self.update_sharing(meeting_id, s));
                s.publishers.insert(
                    session_id,
                    Publisher {
                        participant_id,
                        bin,
                        last_media_ms,
                        answered_ms,
                        video,
                        webrtc: webrtc.clone(),
                        remote_ufrag: ice_ufrag(offer),
                        tees,
                        links: Vec::new(),
                        level,
                        last_video_ms,
                        camera_on: false,
                        screen_share,
                        consent,
                    },
                );
                Ok(CommandOutcome::Published {
                    session_id,
                    answer_sdp,
                })
            }
            Err(e) => {
                remove_bin(&s.pipeline, &bin).await;
                let error = match e {
                    // Nothing to answer with: the media node cannot take publishers
                    // now (its ICE settings allow no usable address or port).
                    PipelineError::Ice(m) => MediaPlaneError::Unavailable(format!(
                        "no ICE candidates to answer with ({m}); check the media node's \
                         ICE addresses and port range"
                    )),
                    other => failed(other),
                };
                self.abandon(guard, meeting_id, error)
            }
        }
    }

    /// Give up a publish that failed before it was answered: end the session if it
    /// holds nothing else (a failed first publish leaves no empty pipeline behind).
    fn abandon(
        &self,
        guard: tokio::sync::MutexGuard<'_, MeetingSession>,
        meeting_id: Uuid,
        error: MediaPlaneError,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        let idle = guard.publishers.is_empty() && guard.consumers.is_empty();
        drop(guard);
        if idle {
            self.end_meeting(meeting_id);
        }
        Err(error)
    }

    async fn unpublish(&self, meeting_id: Uuid, session_id: Uuid) -> bool {
        let Some(session) = self.session(meeting_id) else {
            return false;
        };
        let mut guard = session.lock().await;
        let s = &mut *guard;
        let Some(p) = s.publishers.remove(&session_id) else {
            return false;
        };
        let participant_id = p.participant_id;
        drop_publisher(s, p).await;
        self.observe_timelines(meeting_id, s);
        s.roster.retain(|(id, _)| *id != participant_id);
        s.speaker.remove(participant_id);
        (self.0.sink)(MediaEvent::ParticipantMediaStopped {
            meeting_id,
            participant_id,
        });
        let empty = s.publishers.is_empty() && s.consumers.is_empty();
        drop(guard);
        if empty {
            self.end_meeting(meeting_id);
        }
        true
    }

    fn end_meeting(&self, meeting_id: Uuid) {
        let removed = self
            .0
            .meetings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&meeting_id);
        if removed.is_some() {
            // Dropping the session sets its pipeline to NULL.
            tracing::info!(%meeting_id, "media session ended");
        }
    }
}

mod gst_webrtc_state {
    pub use gremium_pipelines::webrtc::IceConnectionState as State;
}

/// Does an offer carry at least one codec the ingest decodes?
fn offers_supported_codec(sdp: &str) -> bool {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .any(|m| {
            let codec = m
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            ["VP8", "H264", "OPUS"]
                .iter()
                .any(|c| codec.eq_ignore_ascii_case(c))
        })
}

/// The first `a=ice-ufrag:` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:").map(str::to_string))
}

/// The participant's decoded media ends in a tee that programs branch off. A probe
/// on its input counts buffers and, for audio, records the loudest level for the
/// active speaker detector.
fn attach_tee(
    bin: &gst::Bin,
    participant_id: Uuid,
    kind: MediaKind,
    pad: &gst::Pad,
    on_buffer: impl Fn() + Send + Sync + 'static,
    level: Option<Arc<AtomicU32>>,
) -> Result<gst::Element, PipelineError> {
    let label = match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let tee = make("tee", Some(&format!("raw-{label}-{participant_id}")))?;
    tee.set_property("allow-not-linked", true);
    bin.add(&tee)
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    tee.sync_state_with_parent()
        .map_err(|e| PipelineError::StateChange(e.to_string()))?;
    let tee_sink = tee
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("tee".into()))?;
    tee_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        on_buffer();
        if let (Some(level), Some(gst::PadProbeData::Buffer(buffer))) = (&level, &info.data) {
            if let Some(db) = audio_level(pad, buffer) {
                let scaled = ((db.clamp(-100.0, 0.0) + 100.0) * 100.0) as u32;
                level.fetch_max(scaled.max(1), Ordering::Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
    // The decoder's pad sits inside `bin`, as does the tee.
    pad.link(&tee_sink)
        .map_err(|e| PipelineError::Link(format!("{e:?}")))?;
    Ok(tee)
}

/// RMS level in dBFS of a raw S16LE or F32LE audio buffer.
fn audio_level(pad: &gst::Pad, buffer: &gst::Buffer) -> Option<f32> {
    let caps = pad.current_caps()?;
    let format = caps.structure(0)?.get::<&str>("format").ok()?;
    let map = buffer.map_readable().ok()?;
    match format {
        "S16LE" => {
            let samples: Vec<i16> = map
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            gremium_compositor::speaker::level_s16(&samples)
        }
        "F32LE" => {
            let samples: Vec<f32> = map
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            gremium_compositor::speaker::level_f32(&samples)
        }
        _ => None,
    }
}

/// Feed one of a publisher's tees to a program (once per audience and kind).
fn link_publisher(
    program: &mut Program,
    audience: Audience,
    p: &mut Publisher,
    kind: Kind,
    tee: &gst::Element,
) -> Result<(), PipelineError> {
    if p.links.iter().any(|(a, k, _)| *a == audience && *k == kind) {
        return Ok(());
    }
    if !program.has_participant(p.participant_id) {
        return Ok(());
    }
    let tee_pad = tee
        .request_pad_simple("src_%u")
        .ok_or_else(|| PipelineError::Link("tee".into()))?;
    let name = format!(
        "{}-{}",
        match kind {
            Kind::Video => "video",
            Kind::Audio => "audio",
        },
        match audience {
            Audience::Recording => "recording",
            Audience::Streaming => "streaming",
        }
    );
    let ghost = gst::GhostPad::builder_with_target(&tee_pad)
        .map_err(|e| PipelineError::Link(e.to_string()))?
        .name(name)
        .build();
    ghost
        .set_active(true)
        .map_err(|e| PipelineError::StateChange(e.to_string()))?;
    p.bin
        .add_pad(&ghost)
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    if let Err(e) = program.connect(p.participant_id, kind, ghost.upcast_ref()) {
        let _ = p.bin.remove_pad(&ghost);
        tee.release_request_pad(&tee_pad);
        return Err(e);
    }
    p.links.push((audience, kind, ghost));
    Ok(())
}

/// Take a publisher out: its program branches first (unlinked at an idle moment by
/// the program), then its tee pads, then its bin.
async fn drop_publisher(s: &mut MeetingSession, p: Publisher) {
    blocking(|| {
        for program in s.programs.values_mut() {
            program.remove_participant(p.participant_id);
        }
    });
    for (_, _, ghost) in &p.links {
        // The program unlinked its side; the tee's pad goes before the ghost turns
        // inactive (a push into an inactive pad would fail the tee for every program).
        gremium_compositor::program::release_tee_pad(ghost.target());
        let _ = ghost.set_active(false);
        let _ = p.bin.remove_pad(ghost);
    }
    remove_bin(&s.pipeline, &p.bin).await;
}

/// Run GStreamer work that may block — waiting for a pad to go idle, state changes
/// that join streaming threads — without stalling the other tasks of this tokio
/// worker: on a multi-thread runtime they move to other workers first.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The meeting pipeline's running time (the programs' time base) in nanoseconds.
fn running_time(s: &MeetingSession) -> Option<u64> {
    s.pipeline
        .gst()
        .current_running_time()
        .map(|t| t.nseconds())
}

/// The compositor's view of a layout spec.
fn layout_choice(spec: &LayoutSpec) -> LayoutChoice {
    use gremium_compositor::LayoutKind as K;
    use gremium_protocol::LayoutKind as P;
    LayoutChoice {
        kind: match spec.kind {
            P::Grid => K::Grid,
            P::Speaker => K::Speaker,
            P::ScreenShare => K::ScreenShare,
            P::Podium => K::Podium,
        },
        pinned: spec.pinned,
        podium: spec.podium.clone(),
    }
}

/// A publisher's ICE restart (a new ufrag in a WHIP PATCH): restarted on the libnice
/// stream under its webrtcbin, so the session and its DTLS association carry on.
fn restart_ice(
    p: &mut Publisher,
    ufrag: String,
    pwd: Option<String>,
    candidates: Vec<(u32, String)>,
    nat_1to1: Option<std::net::IpAddr>,
) -> Result<CommandOutcome, MediaPlaneError> {
    use gremium_pipelines::ice_restart::{answer_ice_restart, validate_credentials};
    let pwd = pwd.ok_or_else(|| {
        MediaPlaneError::Rejected("an ICE restart (new a=ice-ufrag) needs a=ice-pwd".into())
    })?;
    validate_credentials(&ufrag, &pwd).map_err(|e| MediaPlaneError::Rejected(e.to_string()))?;
    let remote: Vec<String> = candidates.into_iter().map(|(_, c)| c).collect();
    let local = answer_ice_restart(&p.webrtc, &ufrag, &pwd, &remote)
        .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
    p.remote_ufrag = Some(ufrag);
    let mut candidates = local.candidates;
    if let Some(public) = nat_1to1 {
        let lines: String = candidates.iter().map(|c| format!("a={c}\r\n")).collect();
        candidates = gremium_pipelines::webrtc::announce_address(&lines, public)
            .lines()
            .filter_map(|l| l.strip_prefix("a=").map(str::to_string))
            .collect();
    }
    tracing::info!(candidates = candidates.len(), "ICE restarted");
    Ok(CommandOutcome::IceRestarted {
        ufrag: local.ufrag,
        pwd: local.pwd,
        candidates,
    })
}

/// Take a publisher's bin out of the running pipeline. Setting it to NULL joins its
/// streaming threads, so it runs on the blocking pool, never on a tokio worker.
async fn remove_bin(pipeline: &Pipeline, bin: &gst::Bin) {
    let (pipeline, bin) = (pipeline.gst().clone(), bin.clone());
    let _ = tokio::task::spawn_blocking(move || stop_and_remove(&pipeline, &bin)).await;
}

#[async_trait::async_trait]
impl MediaPlane for GstMediaPlane {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        match command {
            MediaCommand::Publish {
                meeting_id,
                participant_id,
                offer_sdp,
                display_name,
                consent,
                context,
                screen_share,
            } => {
                let joiner = Joiner {
                    display_name,
                    consent,
                    context,
                    screen_share,
                };
                self.publish(meeting_id, participant_id, &offer_sdp, joiner)
                    .await
            }
            MediaCommand::AddIceCandidates {
                meeting_id,
                session_id,
                ufrag,
                pwd,
                candidates,
            } => {
                let Some(session) = self.session(meeting_id) else {
                    return Err(MediaPlaneError::NotFound("publishing session".into()));
                };
                let mut s = session.lock().await;
                let p = s
                    .publishers
                    .get_mut(&session_id)
                    .ok_or_else(|| MediaPlaneError::NotFound("publishing session".into()))?;
                if let Some(ufrag) = ufrag.filter(|u| p.remote_ufrag.as_ref() != Some(u)) {
                    let nat = self.0.settings.ice.nat_1to1;
                    // libnice calls under the agent's lock: not on a bare tokio worker.
                    return blocking(|| restart_ice(p, ufrag, pwd, candidates, nat));
                }
                for (mline, candidate) in candidates {
                    p.webrtc
                        .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
                }
                Ok(CommandOutcome::Applied {
                    media_time_ns: None,
                })
            }
            MediaCommand::Unpublish {
                meeting_id,
                session_id,
            } => {
                if self.unpublish(meeting_id, session_id).await {
                    Ok(CommandOutcome::Applied {
                        media_time_ns: None,
                    })
                } else {
                    Err(MediaPlaneError::NotFound("publishing session".into()))
                }
            }
            MediaCommand::SetConsent {
                meeting_id,
                participant_id,
                recording,
                streaming,
            } => {
                let consent = Consent {
                    recording,
                    streaming,
                };
                Ok(CommandOutcome::Applied {
                    media_time_ns: self.set_consent(meeting_id, participant_id, consent).await,
                })
            }
            MediaCommand::SetLayout { meeting_id, layout } => Ok(CommandOutcome::Applied {
                media_time_ns: self.set_layout(meeting_id, layout).await,
            }),
            MediaCommand::SetPublic { meeting_id, public } => Ok(CommandOutcome::Applied {
                media_time_ns: self.set_public(meeting_id, public).await?,
            }),
            MediaCommand::StartRecording {
                meeting_id,
                recording_id,
                data_key,
            } => {
                self.start_recording(meeting_id, recording_id, &data_key.0)
                    .await
            }
            MediaCommand::StopRecording { recording_id, .. } => {
                self.stop_recording(recording_id).await;
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::DiscardRecording { recording_id, .. } => {
                self.discard_recording(recording_id).await
            }
            MediaCommand::StopStream { stream_id, .. } => {
                self.stop_stream(stream_id).await;
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::StartStream {
                meeting_id,
                stream_id,
                hls,
                rtmp,
                context,
            } => {
                self.start_stream(meeting_id, stream_id, hls, &rtmp, context)
                    .await
            }
            MediaCommand::EndMeeting { meeting_id } => {
                // Ending a meeting finishes its outputs before the pipeline goes.
                for recording_id in self.recordings_of(meeting_id) {
                    self.stop_recording(recording_id).await;
                }
                for stream_id in self.streams_of(meeting_id) {
                    self.stop_stream(stream_id).await;
                }
                let publishers: Vec<Uuid> = match self.session(meeting_id) {
                    Some(s) => s
                        .lock()
                        .await
                        .publishers
                        .values()
                        .map(|p| p.participant_id)
                        .collect(),
                    None => Vec::new(),
                };
                self.end_meeting(meeting_id);
                self.0
                    .memos
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&meeting_id);
                for participant_id in publishers {
                    (self.0.sink)(MediaEvent::ParticipantMediaStopped {
                        meeting_id,
                        participant_id,
                    });
                }
                Ok(CommandOutcome::Applied {
                    media_time_ns: None,
                })
            }
        }
    }
}
