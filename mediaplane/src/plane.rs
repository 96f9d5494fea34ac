//! The media plane's front door: [`GstMediaPlane`] takes protocol commands and
//! routes each to the actor that owns the meeting (starting one when a command needs
//! a pipeline), or applies it to what the plane remembers of a meeting without one.
//!
//! Owns: the registry (meeting → mailbox of its actor; the policy of meetings that
//! have none running), the spools, and the free-space gauge. Must not: touch a
//! pipeline (actors do) or hold its lock across anything but a map lookup and a
//! non-blocking send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gremium_compositor::{Kind, Placement};
use gremium_pipelines::dtls_fingerprint::pinned_fingerprints;
use gremium_pipelines::webrtc::parse_sdp;
use gremium_protocol::{
    Audience, CommandOutcome, Consent, EventSink, MediaCommand, MediaPlane, MediaPlaneError,
};
use gremium_vault::DataKey;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::failed;
use crate::meeting::{self, Joiner, Mail, Mailbox};
use crate::policy::MeetingPolicy;
use crate::settings::MediaPlaneSettings;
use crate::spools::Spools;

/// Meetings known to the plane.
#[derive(Default)]
struct Registry {
    /// Meetings with a running media session: their actor's mailbox.
    actors: HashMap<Uuid, Mailbox>,
    /// What the plane remembers of meetings with no session running (consent,
    /// layout, public flag), until they end.
    policies: HashMap<Uuid, MeetingPolicy>,
}

/// What the plane's actors share.
pub(crate) struct Shared {
    pub settings: Arc<MediaPlaneSettings>,
    pub sink: EventSink,
    pub spools: Arc<Spools>,
    /// The runtime the plane was started on (post-processing, watchers).
    pub runtime: tokio::runtime::Handle,
    /// Time base of the publishers' media timestamps.
    pub epoch: Instant,
    registry: Mutex<Registry>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new policy for a meeting the plane has not heard of.
    fn fresh_policy(&self) -> MeetingPolicy {
        MeetingPolicy::new(self.settings.policy())
    }

    /// An actor found itself idle: deregister it unless mail is waiting (commands are
    /// sent under the registry's lock, so none can arrive after this check). `keep`
    /// is the policy to remember (`None`: the meeting ended). True: retired.
    pub(crate) fn retire(
        &self,
        meeting_id: Uuid,
        mailbox: &mpsc::UnboundedReceiver<Mail>,
        keep: Option<MeetingPolicy>,
    ) -> bool {
        let mut registry = self.registry();
        if !mailbox.is_empty() {
            return false;
        }
        registry.actors.remove(&meeting_id);
        match keep {
            Some(policy) => {
                registry.policies.insert(meeting_id, policy);
            }
            None => {
                registry.policies.remove(&meeting_id);
            }
        }
        true
    }

    /// An actor could not start: deregister it and serve what waits in its mailbox
    /// as if no actor ran — consent, layout and public commands change the remembered
    /// policy (a withdrawal must never be lost), an end forgets it, the rest is
    /// refused with `why`. Under the registry's lock, so nothing arrives meanwhile.
    pub(crate) fn abandon(
        &self,
        meeting_id: Uuid,
        mut mailbox: mpsc::UnboundedReceiver<Mail>,
        mut policy: MeetingPolicy,
        why: &str,
    ) {
        let mut registry = self.registry();
        registry.actors.remove(&meeting_id);
        mailbox.close();
        let mut ended = false;
        while let Ok(mail) = mailbox.try_recv() {
            match mail {
                Mail::SetConsent {
                    participant_id,
                    consent,
                    reply,
                } => {
                    policy.command_consent(participant_id, consent);
                    let _ = reply.send(None);
                }
                Mail::SetLayout { layout, reply } => {
                    policy.set_layout(layout);
                    let _ = reply.send(None);
                }
                Mail::SetPublic { public, reply } => {
                    policy.set_public(public);
                    let _ = reply.send(Ok(None));
                }
                Mail::EndMeeting { reply } => {
                    ended = true;
                    let _ = reply.send(());
                }
                other => other.refuse(MediaPlaneError::Unavailable(why.to_string())),
            }
        }
        if ended {
            registry.policies.remove(&meeting_id);
        } else {
            registry.policies.insert(meeting_id, policy);
        }
    }
}

/// The GStreamer media plane. Cheap to clone.
#[derive(Clone)]
pub struct GstMediaPlane(Arc<Shared>);

/// Mail the plane could not deliver (no actor runs and none was to be started),
/// with the registry still locked so the caller can apply it to the policy.
struct Undelivered<'a> {
    registry: MutexGuard<'a, Registry>,
    shared: &'a Shared,
}

impl Undelivered<'_> {
    /// What the plane remembers of the meeting (created on first use).
    fn policy(&mut self, meeting_id: Uuid) -> &mut MeetingPolicy {
        let fresh = self.shared.fresh_policy();
        self.registry.policies.entry(meeting_id).or_insert(fresh)
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
        let handle = tokio::runtime::Handle::current();
        let spools = Arc::new(Spools::new(
            settings.recordings_dir.clone(),
            settings.store.clone(),
            sink.clone(),
            handle.clone(),
        ));
        let settings = Arc::new(settings);
        let plane = GstMediaPlane(Arc::new(Shared {
            settings: settings.clone(),
            sink,
            spools,
            runtime: handle,
            epoch: Instant::now(),
            registry: Mutex::default(),
        }));
        // Free space where recordings spool and HLS is written, for alerts before
        // either fills up: now, then every 10 s.
        report_free_space(&settings);
        let weak = Arc::downgrade(&plane.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { break };
                let settings = shared.settings.clone();
                drop(shared);
                let _ = tokio::task::spawn_blocking(move || report_free_space(&settings)).await;
            }
        });
        Ok(plane)
    }

    /// Deliver mail to the meeting's actor, starting one if `start`. Without an actor
    /// (and `start` false) the mail comes back with the registry locked.
    fn deliver(&self, meeting_id: Uuid, mail: Mail, start: bool) -> Result<(), Undelivered<'_>> {
        let mut registry = self.0.registry();
        let mail = match registry.actors.get(&meeting_id) {
            Some(mailbox) => match mailbox.send(mail) {
                Ok(()) => return Ok(()),
                // The actor ended without deregistering (it panicked): start afresh.
                Err(mpsc::error::SendError(mail)) => {
                    registry.actors.remove(&meeting_id);
                    mail
                }
            },
            None => mail,
        };
        if !start {
            return Err(Undelivered {
                registry,
                shared: &self.0,
            });
        }
        let policy = registry
            .policies
            .remove(&meeting_id)
            .unwrap_or_else(|| self.0.fresh_policy());
        match meeting::spawn(&self.0, meeting_id, policy.clone()) {
            Ok(mailbox) => {
                let _ = mailbox.send(mail);
                registry.actors.insert(meeting_id, mailbox);
            }
            Err(e) => {
                registry.policies.insert(meeting_id, policy);
                mail.refuse(e);
            }
        }
        Ok(())
    }

    /// Ask the meeting's actor and wait for its answer; `None` when no actor runs
    /// (and `start` is false) — then `otherwise` is applied to the plane's memory of
    /// the meeting, under the registry's lock.
    async fn ask<T>(
        &self,
        meeting_id: Uuid,
        start: bool,
        mail: impl FnOnce(oneshot::Sender<T>) -> Mail,
        otherwise: impl FnOnce(&mut Undelivered<'_>) -> T,
    ) -> Result<T, MediaPlaneError> {
        let (tx, rx) = oneshot::channel();
        if let Err(mut undelivered) = self.deliver(meeting_id, mail(tx), start) {
            return Ok(otherwise(&mut undelivered));
        }
        rx.await.map_err(|_| {
            MediaPlaneError::Unavailable("the meeting's media session ended unexpectedly".into())
        })
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
        let mail = |reply| Mail::AttachConsumer {
            audience,
            bin: consumer,
            reply,
        };
        self.ask(meeting_id, true, mail, |_| {
            Err(MediaPlaneError::Unavailable("no media session".into()))
        })
        .await?
    }

    /// Detach a consumer (its bin is set to NULL and removed). The media session ends
    /// when nobody publishes and nothing else consumes. False: no such consumer.
    pub async fn detach_consumer(&self, meeting_id: Uuid, consumer_id: Uuid) -> bool {
        let mail = |reply| Mail::DetachConsumer { consumer_id, reply };
        self.ask(meeting_id, false, mail, |_| false)
            .await
            .unwrap_or(false)
    }

    /// The tiles a program shows now (for tests and diagnostics).
    pub async fn placements(&self, meeting_id: Uuid, audience: Audience) -> Option<Vec<Placement>> {
        let mail = |reply| Mail::Placements { audience, reply };
        self.ask(meeting_id, false, mail, |_| None)
            .await
            .ok()
            .flatten()
    }

    /// Frames encoded by each program's encoder of `kind` (H.264 or AAC) of a
    /// meeting, and whether it is idle (its livestream shares the recording's
    /// encode). For tests and diagnostics.
    pub async fn encoders(&self, meeting_id: Uuid, kind: Kind) -> HashMap<Audience, (u64, bool)> {
        let mail = |reply| Mail::Encoders { kind, reply };
        self.ask(meeting_id, false, mail, |_| HashMap::new())
            .await
            .unwrap_or_default()
    }

    /// Ask a participant's publisher for a video keyframe (RTCP PLI/FIR), e.g. when a
    /// consumer starts using their video. False if they publish no video (yet).
    pub async fn request_keyframe(&self, meeting_id: Uuid, participant_id: Uuid) -> bool {
        let mail = |reply| Mail::Keyframe {
            participant_id,
            reply,
        };
        self.ask(meeting_id, false, mail, |_| false)
            .await
            .unwrap_or(false)
    }

    /// Number of meetings with a running media session.
    pub fn active_meetings(&self) -> usize {
        self.0.registry().actors.len()
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

fn applied(media_time_ns: Option<u64>) -> CommandOutcome {
    CommandOutcome::Applied { media_time_ns }
}

fn data_key(hex: &str) -> Result<DataKey, MediaPlaneError> {
    DataKey::from_hex(hex).map_err(|e| MediaPlaneError::Rejected(format!("data key: {e}")))
}

#[async_trait::async_trait]
impl MediaPlane for GstMediaPlane {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        let meeting_id = command.meeting_id();
        let no_session = || MediaPlaneError::NotFound("publishing session".into());
        match command {
            MediaCommand::Publish {
                participant_id,
                offer_sdp,
                display_name,
                consent,
                context,
                screen_share,
                ..
            } => {
                let posted = Instant::now();
                parse_sdp(&offer_sdp).map_err(failed)?;
                if !meeting::offers_supported_codec(&offer_sdp) {
                    return Err(MediaPlaneError::Rejected(
                        "no supported codec offered: send VP8 or H.264 video, or Opus audio".into(),
                    ));
                }
                // The offer must say which DTLS certificate its sender will present.
                let pins = pinned_fingerprints(&offer_sdp)
                    .map_err(|e| MediaPlaneError::Rejected(format!("SDP: {e}")))?;
                let joiner = Joiner {
                    display_name,
                    consent,
                    context,
                    screen_share,
                };
                let mail = |reply| Mail::Publish {
                    participant_id,
                    offer: offer_sdp,
                    pins,
                    joiner,
                    posted,
                    reply,
                };
                self.ask(meeting_id, true, mail, |_| Err(no_session()))
                    .await?
            }
            MediaCommand::AddIceCandidates {
                session_id,
                ufrag,
                pwd,
                candidates,
                ..
            } => {
                let mail = |reply| Mail::Candidates {
                    session_id,
                    ufrag,
                    pwd,
                    candidates,
                    reply,
                };
                self.ask(meeting_id, false, mail, |_| Err(no_session()))
                    .await?
            }
            MediaCommand::Unpublish { session_id, .. } => {
                let mail = |reply| Mail::Unpublish { session_id, reply };
                if self.ask(meeting_id, false, mail, |_| false).await? {
                    Ok(applied(None))
                } else {
                    Err(no_session())
                }
            }
            MediaCommand::SetConsent {
                participant_id,
                recording,
                streaming,
                ..
            } => {
                let consent = Consent {
                    recording,
                    streaming,
                };
                let mail = |reply| Mail::SetConsent {
                    participant_id,
                    consent,
                    reply,
                };
                let at = self
                    .ask(meeting_id, false, mail, |u| {
                        u.policy(meeting_id)
                            .command_consent(participant_id, consent);
                        None
                    })
                    .await?;
                Ok(applied(at))
            }
            MediaCommand::SetLayout { layout, .. } => {
                let remembered = layout.clone();
                let mail = |reply| Mail::SetLayout { layout, reply };
                let at = self
                    .ask(meeting_id, false, mail, |u| {
                        u.policy(meeting_id).set_layout(remembered);
                        None
                    })
                    .await?;
                Ok(applied(at))
            }
            MediaCommand::SetPublic { public, .. } => {
                let mail = |reply| Mail::SetPublic { public, reply };
                let at = self
                    .ask(meeting_id, false, mail, |u| {
                        u.policy(meeting_id).set_public(public);
                        Ok(None)
                    })
                    .await??;
                Ok(applied(at))
            }
            MediaCommand::StartRecording {
                recording_id,
                data_key: hex,
                ..
            } => {
                let key = data_key(&hex.0)?;
                let mail = |reply| Mail::StartRecording {
                    recording_id,
                    key,
                    reply,
                };
                self.ask(meeting_id, true, mail, |_| Err(no_session()))
                    .await?
            }
            MediaCommand::RecoverRecording {
                recording_id,
                data_key: hex,
                ..
            } => {
                let key = data_key(&hex.0)?;
                self.0.spools.recover(meeting_id, recording_id, key);
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::StopRecording { recording_id, .. } => {
                let mail = |reply| Mail::StopRecording {
                    recording_id,
                    reply: Some(reply),
                };
                self.ask(meeting_id, false, mail, |_| ()).await?;
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::DiscardRecording { recording_id, .. } => {
                let spools = self.0.spools.clone();
                tokio::task::spawn_blocking(move || spools.discard(recording_id))
                    .await
                    .map_err(|e| MediaPlaneError::Failed(e.to_string()))?
            }
            MediaCommand::StartStream {
                stream_id,
                hls,
                rtmp,
                context,
                ..
            } => {
                if !hls && rtmp.is_empty() {
                    return Err(MediaPlaneError::Rejected("nothing to stream".into()));
                }
                let mail = |reply| Mail::StartStream {
                    stream_id,
                    hls,
                    rtmp,
                    context,
                    reply,
                };
                self.ask(meeting_id, true, mail, |_| Err(no_session()))
                    .await?
            }
            MediaCommand::StopStream { stream_id, .. } => {
                let mail = |reply| Mail::StopStream { stream_id, reply };
                self.ask(meeting_id, false, mail, |_| ()).await?;
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::EndMeeting { .. } => {
                // Ending a meeting finishes its outputs before the pipeline goes, and
                // forgets what the plane remembers of it.
                let mail = |reply| Mail::EndMeeting { reply };
                self.ask(meeting_id, false, mail, |u| {
                    u.registry.policies.remove(&meeting_id);
                })
                .await?;
                Ok(applied(None))
            }
        }
    }
}
