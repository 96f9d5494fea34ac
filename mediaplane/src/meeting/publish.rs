//! Publishers of a meeting: WHIP offers answered by a `webrtcbin` in a bin of its own
//! with its decoders, their decoded media ending in tees that programs branch off.
//!
//! Owns: the publishing sessions (negotiating and answered), their ICE (trickle and
//! restart), their removal, and the publisher watch's observations. Must not: decide
//! whether a participant may be seen or heard in a program (the policy does; the
//! programs apply it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gremium_compositor::Kind;
use gremium_pipelines::dtls_check::DtlsCheck;
use gremium_pipelines::dtls_fingerprint::PinnedFingerprints;
use gremium_pipelines::webrtc::{
    answer_offer, decode_incoming, make_webrtcbin, IceConnectionState, MediaKind,
};
use gremium_pipelines::{make, stop_and_remove, PipelineError};
use gremium_protocol::{CommandOutcome, Consent, MediaEvent, MediaPlaneError, MeetingContext};
use gst::prelude::*;
use uuid::Uuid;

use super::{Mail, Meeting, Outcome, Reply};
use crate::failed;

/// Who publishes, as the control plane described them in `Publish`.
pub(crate) struct Joiner {
    pub display_name: String,
    pub consent: Consent,
    pub context: MeetingContext,
    pub screen_share: bool,
}

/// An answered publishing session.
pub(super) struct Publisher {
    pub participant_id: Uuid,
    pub bin: gst::Bin,
    /// Milliseconds since the plane's epoch of the last decoded buffer (0: none yet).
    pub last_media_ms: Arc<AtomicU64>,
    /// The publisher's `webrtcbin` (remote candidates are added to it).
    webrtc: gst::Element,
    /// ICE username fragment of the publisher's offer.
    remote_ufrag: Option<String>,
    /// The decoded video pad, once video arrives (keyframe requests go upstream here).
    video: Arc<Mutex<Option<gst::Pad>>>,
    /// Tees of the decoded media, once it arrives; programs branch off here.
    pub tees: Arc<Mutex<HashMap<Kind, gst::Element>>>,
    /// Ghost pads on `bin` feeding programs: (audience, kind, pad).
    pub links: Vec<(gremium_protocol::Audience, Kind, gst::GhostPad)>,
    /// Loudest audio level since the last look, as (dBFS + 100) × 100.
    pub level: Arc<AtomicU32>,
    /// Milliseconds since the plane's epoch of the last decoded video frame (0: none).
    pub last_video_ms: Arc<AtomicU64>,
    /// The video is a screen share.
    pub screen_share: bool,
}

/// A publishing session whose offer is being answered (ICE gathering).
pub(super) struct Negotiation {
    publisher: Publisher,
    display_name: String,
    dtls: DtlsCheck,
    reply: Reply<Outcome>,
    /// Its ICE failed or closed before it was answered.
    pub dead: bool,
}

impl Meeting {
    /// Take a WHIP offer: replace the participant's earlier session, build the
    /// publishing bin, and answer once ICE has gathered — in a task, so the meeting's
    /// other commands are served meanwhile ([`Meeting::negotiated`] finishes it).
    pub(super) fn publish(
        &mut self,
        participant_id: Uuid,
        offer: String,
        pins: PinnedFingerprints,
        joiner: Joiner,
        posted: Instant,
        reply: Reply<Outcome>,
    ) {
        self.policy.learn_context(&joiner.context);
        self.policy.carried_consent(participant_id, joiner.consent);
        let others = self
            .publishers
            .values()
            .map(|p| p.participant_id)
            .chain(
                self.negotiating
                    .values()
                    .map(|n| n.publisher.participant_id),
            )
            .filter(|id| *id != participant_id)
            .count();
        let max = self.settings.max_publishers;
        if others >= max {
            let full = MediaPlaneError::Full(format!(
                "the meeting already has {max} publishers (the limit)"
            ));
            self.answer(reply, Err(full));
            return;
        }
        // A participant publishes once: a new session replaces an old one (reconnect).
        let old: Vec<Uuid> = self
            .publishers
            .iter()
            .filter(|(_, p)| p.participant_id == participant_id)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(p) = self.publishers.remove(&id) {
                self.watch.remove(id);
                self.drop_publisher(p);
            }
        }
        let replaced: Vec<Uuid> = self
            .negotiating
            .iter()
            .filter(|(_, n)| n.publisher.participant_id == participant_id)
            .map(|(id, _)| *id)
            .collect();
        for id in replaced {
            self.abandon_negotiation(id);
        }
        match self.prepare(participant_id, &offer, pins, &joiner, posted) {
            Ok((session_id, publisher, dtls)) => {
                let webrtc = publisher.webrtc.clone();
                let bin = publisher.bin.clone();
                self.negotiating.insert(
                    session_id,
                    Negotiation {
                        publisher,
                        display_name: joiner.display_name,
                        dtls,
                        reply,
                        dead: false,
                    },
                );
                let mailbox = self.mailbox.clone();
                let gather = self.settings.gather_timeout;
                let host_only = self.settings.ice.host_only();
                tokio::task::spawn_local(async move {
                    // Bringing webrtcbin up starts its ICE agent and threads.
                    let up = tokio::task::spawn_blocking(move || bin.sync_state_with_parent())
                        .await
                        .map_err(|e| PipelineError::StateChange(e.to_string()))
                        .and_then(|r| r.map_err(|e| PipelineError::StateChange(e.to_string())));
                    tracing::debug!(
                        ms = posted.elapsed().as_millis() as u64,
                        "publishing endpoint up"
                    );
                    let result = match up {
                        Ok(_) => answer_offer(&webrtc, &offer, gather, host_only).await,
                        Err(e) => Err(e),
                    };
                    let _ = mailbox.send(Mail::Negotiated { session_id, result });
                });
            }
            Err(e) => self.answer(reply, Err(e)),
        }
    }

    /// Build a publishing session's bin (added to the pipeline, not yet started).
    fn prepare(
        &mut self,
        participant_id: Uuid,
        offer: &str,
        pins: PinnedFingerprints,
        joiner: &Joiner,
        posted: Instant,
    ) -> Result<(Uuid, Publisher, DtlsCheck), MediaPlaneError> {
        let meeting_id = self.id;
        let session_id = Uuid::new_v4();
        let bin = gst::Bin::with_name(&format!("publisher-{session_id}"));
        let webrtc = make_webrtcbin("webrtc", &self.settings.ice).map_err(failed)?;
        bin.add(&webrtc)
            .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        let started = Arc::new(AtomicBool::new(false));
        let last_media_ms = Arc::new(AtomicU64::new(0));
        let (last, epoch) = (last_media_ms.clone(), self.epoch);
        let video: Arc<Mutex<Option<gst::Pad>>> = Arc::default();
        let video_slot = video.clone();
        let tees: Arc<Mutex<HashMap<Kind, gst::Element>>> = Arc::default();
        let tees_slot = tees.clone();
        let level = Arc::new(AtomicU32::new(0));
        let last_video_ms = Arc::new(AtomicU64::new(0));
        let (level_slot, video_seen) = (level.clone(), last_video_ms.clone());
        let ready = self.mailbox.clone();
        let sink = self.sink.clone();
        let bin_weak = bin.downgrade();
        let dtls = DtlsCheck::new(pins);
        let dead = self.mailbox.clone();
        dtls.on_reject(move |why| {
            // Torn down as a vanished publisher is, with no address.
            metrics::counter!("gremium_dtls_fingerprint_mismatch_total").increment(1);
            tracing::warn!(%meeting_id, %participant_id, %session_id, reason = %why,
                "DTLS certificate of the publisher does not match its offer's fingerprint; \
                 removing the publisher");
            let _ = dead.send(Mail::Dead { session_id });
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
            let _ = ready.send(Mail::MediaReady {
                session_id,
                kind: program_kind,
            });
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
        let dead = self.mailbox.clone();
        webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
            let state: IceConnectionState = w.property("ice-connection-state");
            if matches!(
                state,
                IceConnectionState::Failed | IceConnectionState::Closed
            ) {
                let _ = dead.send(Mail::Dead { session_id });
            }
        });
        self.pipeline
            .gst()
            .add(&bin)
            .map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        let publisher = Publisher {
            participant_id,
            bin,
            last_media_ms,
            webrtc,
            remote_ufrag: ice_ufrag(offer),
            video,
            tees,
            links: Vec::new(),
            level,
            last_video_ms,
            screen_share: joiner.screen_share,
        };
        Ok((session_id, publisher, dtls))
    }

    /// An offer was answered (or not): admit the publisher to the programs and
    /// answer the WHIP request.
    pub(super) fn negotiated(&mut self, session_id: Uuid, result: Result<String, PipelineError>) {
        if let Some(bin) = self.abandoned.remove(&session_id) {
            // Given up meanwhile (replaced, or the meeting ends) and already answered;
            // its bin is up now, so it can go for good.
            self.remove_bin(bin);
            return;
        }
        let Some(n) = self.negotiating.remove(&session_id) else {
            return;
        };
        let Negotiation {
            publisher: p,
            display_name,
            dtls,
            reply,
            dead,
        } = n;
        let answer_sdp = match result {
            Ok(sdp) => sdp,
            Err(e) => {
                let participant_id = p.participant_id;
                self.remove_bin(p.bin.clone());
                self.leave_unless_publishing(participant_id);
                let error = match e {
                    // Nothing to answer with: the media node cannot take publishers
                    // now (its ICE settings allow no usable address or port).
                    PipelineError::Ice(m) => MediaPlaneError::Unavailable(format!(
                        "no ICE candidates to answer with ({m}); check the media node's \
                         ICE addresses and port range"
                    )),
                    other => failed(other),
                };
                self.answer(reply, Err(error));
                return;
            }
        };
        // The transports exist now: check each certificate when DTLS connects.
        dtls.watch(&p.webrtc);
        let answer_sdp = match self.settings.ice.nat_1to1 {
            Some(public) => gremium_pipelines::webrtc::announce_address(&answer_sdp, public),
            None => answer_sdp,
        };
        let participant_id = p.participant_id;
        self.policy.join(participant_id, &display_name);
        for (audience, program) in self.programs.iter_mut() {
            program.add_participant(
                participant_id,
                &display_name,
                self.policy.gate(participant_id, *audience),
            );
            program.set_screen_share(participant_id, p.screen_share);
        }
        self.apply_sharing();
        self.watch.add(session_id, participant_id, self.now_ms());
        self.publishers.insert(session_id, p);
        // Media that arrived while the answer was on its way.
        for kind in [Kind::Video, Kind::Audio] {
            self.connect_to_programs(session_id, kind);
        }
        let published = CommandOutcome::Published {
            session_id,
            answer_sdp,
        };
        self.answer(reply, Ok(published));
        if dead {
            tracing::info!(meeting_id = %self.id, %session_id,
                "publisher's ICE failed while its offer was answered; removing it");
            self.unpublish(session_id);
        }
    }

    /// Give up a negotiation (the participant offered again, or the meeting ends).
    pub(super) fn abandon_negotiation(&mut self, session_id: Uuid) {
        if let Some(n) = self.negotiating.remove(&session_id) {
            // Its bin may still be starting (on the blocking pool): removed when the
            // negotiation reports back, never under a start.
            self.abandoned.insert(session_id, n.publisher.bin.clone());
            let gone = MediaPlaneError::Unavailable(
                "the publishing session was replaced or the meeting ended before it was \
                 answered"
                    .into(),
            );
            self.answer(n.reply, Err(gone));
        }
    }

    /// A participant whose publish failed leaves the roster, unless another session
    /// of theirs still publishes.
    fn leave_unless_publishing(&mut self, participant_id: Uuid) {
        if !self
            .publishers
            .values()
            .any(|p| p.participant_id == participant_id)
        {
            self.policy.leave(participant_id);
        }
    }

    /// A publisher leaves (DELETE, media timeout, ICE failure, a bad certificate).
    pub(super) fn unpublish(&mut self, session_id: Uuid) -> bool {
        let Some(p) = self.publishers.remove(&session_id) else {
            return false;
        };
        let participant_id = p.participant_id;
        self.watch.remove(session_id);
        self.drop_publisher(p);
        self.observe_timelines();
        self.policy.leave(participant_id);
        self.apply_sharing();
        self.emit(MediaEvent::ParticipantMediaStopped {
            meeting_id: self.id,
            participant_id,
        });
        true
    }

    /// Take a publisher out: its program branches first (unlinked at an idle moment
    /// by the program), then its tee pads, then its bin (off the mailbox).
    pub(super) fn drop_publisher(&mut self, p: Publisher) {
        for program in self.programs.values_mut() {
            program.remove_participant(p.participant_id);
        }
        for (_, _, ghost) in &p.links {
            // The program unlinked its side; the tee's pad goes before the ghost turns
            // inactive (a push into an inactive pad would fail the tee for every program).
            gremium_pipelines::tee::release_tee_pad(ghost.target());
            let _ = ghost.set_active(false);
            let _ = p.bin.remove_pad(ghost);
        }
        self.remove_bin(p.bin);
    }

    /// Take a bin out of the running pipeline. Setting it to NULL joins its streaming
    /// threads: on the blocking pool. The meeting need not wait for it (it may retire
    /// meanwhile), only its pipeline's teardown does.
    pub(super) fn remove_bin(&mut self, bin: gst::Bin) {
        let pipeline = self.pipeline.gst().clone();
        self.removals.retain(|r| !r.is_finished());
        self.removals.push(tokio::task::spawn_blocking(move || {
            stop_and_remove(&pipeline, &bin)
        }));
    }

    /// Trickled candidates (WHIP PATCH), or an ICE restart (a new ufrag).
    pub(super) fn add_candidates(
        &mut self,
        session_id: Uuid,
        ufrag: Option<String>,
        pwd: Option<String>,
        candidates: Vec<(u32, String)>,
    ) -> Outcome {
        let nat = self.settings.ice.nat_1to1;
        let p = self
            .publishers
            .get_mut(&session_id)
            .ok_or_else(|| MediaPlaneError::NotFound("publishing session".into()))?;
        if let Some(ufrag) = ufrag.filter(|u| p.remote_ufrag.as_ref() != Some(u)) {
            return restart_ice(p, ufrag, pwd, candidates, nat);
        }
        for (mline, candidate) in candidates {
            p.webrtc
                .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
        }
        Ok(CommandOutcome::Applied {
            media_time_ns: None,
        })
    }

    /// Ask a participant's publisher for a video keyframe (RTCP PLI/FIR). False if
    /// they publish no video (yet).
    pub(super) fn request_keyframe(&self, participant_id: Uuid) -> bool {
        self.publishers
            .values()
            .filter(|p| p.participant_id == participant_id)
            .filter_map(|p| p.video.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .any(|pad| gremium_pipelines::webrtc::request_keyframe(&pad))
    }
}

/// Does an offer carry at least one codec the ingest decodes?
pub(crate) fn offers_supported_codec(sdp: &str) -> bool {
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

/// A publisher's ICE restart (a new ufrag in a WHIP PATCH): restarted on the libnice
/// stream under its webrtcbin, so the session and its DTLS association carry on.
fn restart_ice(
    p: &mut Publisher,
    ufrag: String,
    pwd: Option<String>,
    candidates: Vec<(u32, String)>,
    nat_1to1: Option<std::net::IpAddr>,
) -> Outcome {
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
