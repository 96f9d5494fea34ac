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
//! Status: ingest only. Each publisher's decoded audio and video end in a per-
//! participant branch that nothing consumes yet; the compositor, recorder and
//! streamer issues attach there. Starting recordings or streams is refused as
//! unavailable until then.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gremium_pipelines::webrtc::{
    answer_offer, decode_incoming, make_webrtcbin, parse_sdp, IceSettings, MediaKind,
};
use gremium_pipelines::{make, Pipeline, PipelineError, PipelineSettings};
use gremium_protocol::{
    CommandOutcome, EventSink, MediaCommand, MediaEvent, MediaPlane, MediaPlaneError,
};
use gst::prelude::*;
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
}

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
}

struct MeetingSession {
    pipeline: Pipeline,
    publishers: HashMap<Uuid, Publisher>,
}

struct Inner {
    settings: MediaPlaneSettings,
    sink: EventSink,
    meetings: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<MeetingSession>>>>,
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
        let (dead, mut dead_rx) = mpsc::unbounded_channel();
        let plane = GstMediaPlane(Arc::new(Inner {
            settings,
            sink,
            meetings: Mutex::new(HashMap::new()),
            dead,
            epoch: Instant::now(),
        }));
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            while let Some((meeting_id, session_id)) = dead_rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                GstMediaPlane(inner).unpublish(meeting_id, session_id).await;
            }
        });
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                GstMediaPlane(inner).reap_silent_publishers().await;
            }
        });
        Ok(plane)
    }

    fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    /// Queue for removal every publisher that sent no media for `media_timeout`.
    async fn reap_silent_publishers(&self) {
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
            let s = session.lock().await;
            for (session_id, p) in &s.publishers {
                let last = p.last_media_ms.load(Ordering::Relaxed).max(p.answered_ms);
                if now.saturating_sub(last) > limit {
                    tracing::info!(%meeting_id, %session_id, "publisher sent no media; removing it");
                    let _ = self.0.dead.send((meeting_id, *session_id));
                }
            }
        }
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
    ) -> Result<CommandOutcome, MediaPlaneError> {
        let posted = Instant::now();
        parse_sdp(offer).map_err(failed)?;
        if !offers_supported_codec(offer) {
            return Err(MediaPlaneError::Rejected(
                "no supported codec offered: send VP8 or H.264 video, or Opus audio".into(),
            ));
        }
        let session = self.session_or_create(meeting_id)?;
        let mut s = session.lock().await;
        let others = s
            .publishers
            .values()
            .filter(|p| p.participant_id != participant_id)
            .count();
        if others >= self.0.settings.max_publishers {
            let empty = s.publishers.is_empty();
            drop(s);
            if empty {
                self.end_meeting(meeting_id);
            }
            return Err(MediaPlaneError::Full(format!(
                "the meeting already has {} publishers (the limit)",
                self.0.settings.max_publishers
            )));
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
                remove_bin(&s.pipeline, &p.bin).await;
            }
        }
        let session_id = Uuid::new_v4();
        let bin = gst::Bin::with_name(&format!("publisher-{session_id}"));
        let webrtc = make_webrtcbin("webrtc", &self.0.settings.ice).map_err(failed)?;
        bin.add(&webrtc)
            .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        let started = Arc::new(AtomicBool::new(false));
        let last_media_ms = Arc::new(AtomicU64::new(0));
        let (last, epoch) = (last_media_ms.clone(), self.0.epoch);
        let video: Arc<Mutex<Option<gst::Pad>>> = Arc::default();
        let video_slot = video.clone();
        let sink = self.0.sink.clone();
        let bin_weak = bin.downgrade();
        decode_incoming(&webrtc, &bin, move |kind, pad| {
            let Some(bin) = bin_weak.upgrade() else {
                return;
            };
            let last = last.clone();
            let label = match kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let first_frame = Arc::new(AtomicBool::new(false));
            let seen = move || {
                last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                if kind == MediaKind::Video && !first_frame.swap(true, Ordering::Relaxed) {
                    // Offer received → first decoded video frame.
                    metrics::histogram!("gremium_ingest_first_frame_seconds")
                        .record(posted.elapsed().as_secs_f64());
                }
                metrics::counter!("gremium_ingest_decoded_buffers_total", "kind" => label)
                    .increment(1);
            };
            if let Err(e) = attach_raw_branch(&bin, participant_id, kind, &pad, seen) {
                tracing::warn!(error = %e, "participant branch not attached");
                return;
            }
            if kind == MediaKind::Video {
                *video_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(pad.clone());
            }
            if !started.swap(true, Ordering::SeqCst) {
                sink(MediaEvent::ParticipantMediaStarted {
                    meeting_id,
                    participant_id,
                });
            }
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
        s.pipeline
            .gst()
            .add(&bin)
            .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        bin.sync_state_with_parent()
            .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        match answer_offer(&webrtc, offer, self.0.settings.gather_timeout).await {
            Ok(answer_sdp) => {
                let answer_sdp = match self.0.settings.ice.nat_1to1 {
                    Some(public) => {
                        gremium_pipelines::webrtc::announce_address(&answer_sdp, public)
                    }
                    None => answer_sdp,
                };
                let answered_ms = self.now_ms();
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
                    },
                );
                Ok(CommandOutcome::Published {
                    session_id,
                    answer_sdp,
                })
            }
            Err(e) => {
                remove_bin(&s.pipeline, &bin).await;
                let empty = s.publishers.is_empty();
                drop(s);
                if empty {
                    self.end_meeting(meeting_id);
                }
                Err(failed(e))
            }
        }
    }

    async fn unpublish(&self, meeting_id: Uuid, session_id: Uuid) -> bool {
        let Some(session) = self.session(meeting_id) else {
            return false;
        };
        let mut s = session.lock().await;
        let Some(p) = s.publishers.remove(&session_id) else {
            return false;
        };
        remove_bin(&s.pipeline, &p.bin).await;
        (self.0.sink)(MediaEvent::ParticipantMediaStopped {
            meeting_id,
            participant_id: p.participant_id,
        });
        let empty = s.publishers.is_empty();
        drop(s);
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

    async fn running_time(&self, meeting_id: Uuid) -> Option<u64> {
        let session = self.session(meeting_id)?;
        let s = session.lock().await;
        s.pipeline
            .gst()
            .current_running_time()
            .map(|t| t.nseconds())
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

/// The participant's raw branch: for now a queue into a sink that discards; the
/// compositor will consume from here.
fn attach_raw_branch(
    bin: &gst::Bin,
    participant_id: Uuid,
    kind: MediaKind,
    pad: &gst::Pad,
    on_buffer: impl Fn() + Send + Sync + 'static,
) -> Result<(), PipelineError> {
    let label = match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let queue = make("queue", Some(&format!("raw-{label}-{participant_id}")))?;
    let sink = make("fakesink", None)?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    bin.add_many([&queue, &sink])
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    gremium_pipelines::link_chain(&[&queue, &sink])?;
    queue
        .sync_state_with_parent()
        .map_err(|e| PipelineError::StateChange(e.to_string()))?;
    sink.sync_state_with_parent()
        .map_err(|e| PipelineError::StateChange(e.to_string()))?;
    let queue_sink = queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("queue".into()))?;
    queue_sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        on_buffer();
        gst::PadProbeReturn::Ok
    });
    // The decoder's pad sits inside `bin`, as does the queue.
    pad.link(&queue_sink)
        .map_err(|e| PipelineError::Link(format!("{e:?}")))?;
    Ok(())
}

/// Take a publisher's bin out of the running pipeline. Setting it to NULL joins its
/// streaming threads, so it runs on the blocking pool, never on a tokio worker.
async fn remove_bin(pipeline: &Pipeline, bin: &gst::Bin) {
    let (pipeline, bin) = (pipeline.gst().clone(), bin.clone());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = bin.set_state(gst::State::Null);
        let _ = pipeline.remove(&bin);
    })
    .await;
}

#[async_trait::async_trait]
impl MediaPlane for GstMediaPlane {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        match command {
            MediaCommand::Publish {
                meeting_id,
                participant_id,
                offer_sdp,
            } => self.publish(meeting_id, participant_id, &offer_sdp).await,
            MediaCommand::AddIceCandidates {
                meeting_id,
                session_id,
                ufrag,
                candidates,
            } => {
                let Some(session) = self.session(meeting_id) else {
                    return Err(MediaPlaneError::NotFound("publishing session".into()));
                };
                let s = session.lock().await;
                let p = s
                    .publishers
                    .get(&session_id)
                    .ok_or_else(|| MediaPlaneError::NotFound("publishing session".into()))?;
                if ufrag.is_some() && ufrag != p.remote_ufrag {
                    return Err(MediaPlaneError::Rejected(
                        "ICE restarts are not supported; publish again".into(),
                    ));
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
            // No output consumes participants yet, so there is no gate to move; the
            // compositor issue closes real gates here before answering.
            MediaCommand::SetConsent { meeting_id, .. }
            | MediaCommand::SetPublic { meeting_id, .. } => Ok(CommandOutcome::Applied {
                media_time_ns: self.running_time(meeting_id).await,
            }),
            MediaCommand::StopRecording { .. } | MediaCommand::StopStream { .. } => {
                Ok(CommandOutcome::Applied {
                    media_time_ns: None,
                })
            }
            MediaCommand::StartRecording { .. } | MediaCommand::StartStream { .. } => {
                Err(MediaPlaneError::Unavailable(
                    "recording and streaming are not available in this build yet".into(),
                ))
            }
            MediaCommand::EndMeeting { meeting_id } => {
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
