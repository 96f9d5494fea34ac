//! One meeting's media, owned by one actor.
//!
//! Owns: the meeting's pipeline and everything in it — publishers, programs,
//! encoders, consumers, running recordings and streams — plus the meeting's
//! [`MeetingPolicy`] and [`PublisherWatch`]. All of it lives on the actor's own
//! thread, which runs a single-threaded tokio runtime: commands arrive as [`Mail`]
//! and are answered on a oneshot; GStreamer calls happen here (never on a tokio
//! worker of the control plane, never under a lock anyone else waits for).
//!
//! Long operations (ICE gathering, a recording's or a stream's finish, the wait for
//! HLS media before a stop) run as tasks the actor supervises: they report back
//! through the same mailbox, so a consent withdrawal is served while a publisher is
//! still negotiating or a recording is being finished.
//!
//! Must not: decide who may be seen or heard (the policy does), touch storage beyond
//! the spool bookkeeping ([`crate::spools`]), or outlive its registry entry: when
//! nothing publishes, consumes or runs any more it retires (hands its policy back to
//! the plane and ends its thread).

mod mail;
mod outputs;
mod programs;
mod publish;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use gremium_compositor::{Kind, Program};
use gremium_pipelines::{Pipeline, PipelineSettings};
use gremium_protocol::{Audience, Consent, EventSink, LayoutSpec, MediaEvent, MediaPlaneError};
use gremium_recorder::RecordingBin;
use gremium_streamer::hls::HlsBin;
use gst::prelude::*;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::encoders::Encoder;
use crate::plane::Shared;
use crate::policy::{MeetingPolicy, PublisherWatch};
use crate::settings::MediaPlaneSettings;
use crate::spools::Spools;
use crate::timeline::Timeline;
pub(crate) use mail::{Finally, Mail, Mailbox, Outcome, Reply};
pub(crate) use publish::{offers_supported_codec, Joiner};
use publish::{Negotiation, Publisher};

/// A consumer attached to a program (recorder, streamer, test tap).
pub(crate) struct Consumer {
    audience: Audience,
    bin: gst::Bin,
    outputs: Vec<gst::Pad>,
    /// Where its `video_h264` and `audio_aac` pads are fed from, if it has them.
    encoded: Vec<(Kind, programs::Encoded)>,
}

/// A recording running in this meeting.
struct RunningRecording {
    consumer_id: Uuid,
    bin: Arc<RecordingBin>,
    /// Who appears when (started once the pipeline has a running time).
    timeline: Option<Timeline>,
}

/// A livestream running (or draining before its stop) in this meeting.
struct RunningStream {
    consumer_id: Uuid,
    hls: Arc<HlsBin>,
    /// Stopping: the callers waiting for the stop to finish.
    stopping: Vec<Reply<()>>,
}

/// The actor's state: one meeting's media.
pub(crate) struct Meeting {
    id: Uuid,
    plane: Weak<Shared>,
    settings: Arc<MediaPlaneSettings>,
    sink: EventSink,
    spools: Arc<Spools>,
    /// The plane's runtime: work that outlives the meeting (post-processing).
    runtime: tokio::runtime::Handle,
    /// Time base of the publishers' media timestamps.
    epoch: Instant,
    /// Its own mailbox, for the work it supervises and its pipeline's callbacks.
    mailbox: Mailbox,
    policy: MeetingPolicy,
    watch: PublisherWatch,
    pipeline: Pipeline,
    publishers: HashMap<Uuid, Publisher>,
    /// Publishing sessions whose offer is being answered.
    negotiating: HashMap<Uuid, Negotiation>,
    /// Negotiations given up while their bin was starting: removed once it is up.
    abandoned: HashMap<Uuid, gst::Bin>,
    programs: HashMap<Audience, Program>,
    /// H.264 and AAC encodes of the programs, while consumers take them.
    encoders: HashMap<(Audience, Kind), Encoder>,
    consumers: HashMap<Uuid, Consumer>,
    recordings: HashMap<Uuid, RunningRecording>,
    streams: HashMap<Uuid, RunningStream>,
    /// Supervised operations still running (finishes, drains).
    supervised: usize,
    /// Ending: who waits for the meeting to be gone.
    ending: Vec<Reply<()>>,
    /// Answers and events of the mail being handled, said after it.
    deferred: Vec<Finally>,
    /// Bins being taken out of the pipeline (see [`Meeting::remove_bin`]).
    removals: Vec<tokio::task::JoinHandle<()>>,
}

/// Start the actor of a meeting on a thread of its own; its first mail is `first`.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    meeting_id: Uuid,
    policy: MeetingPolicy,
) -> Result<Mailbox, MediaPlaneError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let plane = Arc::downgrade(shared);
    let settings = shared.settings.clone();
    let sink = shared.sink.clone();
    let spools = shared.spools.clone();
    let runtime = shared.runtime.clone();
    let epoch = shared.epoch;
    let mailbox = tx.clone();
    let short = meeting_id.simple().to_string();
    std::thread::Builder::new()
        .name(format!("meeting-{}", &short[..8]))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    refuse_all(&plane, meeting_id, rx, policy, &e.to_string());
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let pipeline = Pipeline::new(PipelineSettings {
                    name: format!("meeting-{meeting_id}"),
                    dot_dir: settings.dot_dir.clone(),
                });
                if let Err(e) = pipeline.start() {
                    refuse_all(&plane, meeting_id, rx, policy, &e.to_string());
                    return;
                }
                tracing::info!(%meeting_id, "media session started");
                let limits = settings.policy();
                let watch =
                    PublisherWatch::new(limits.media_timeout_ms, limits.camera_off_after_ms);
                let meeting = Meeting {
                    id: meeting_id,
                    plane,
                    settings,
                    sink,
                    spools,
                    runtime,
                    epoch,
                    mailbox,
                    policy,
                    watch,
                    pipeline,
                    publishers: HashMap::new(),
                    negotiating: HashMap::new(),
                    abandoned: HashMap::new(),
                    programs: HashMap::new(),
                    encoders: HashMap::new(),
                    consumers: HashMap::new(),
                    recordings: HashMap::new(),
                    streams: HashMap::new(),
                    supervised: 0,
                    ending: Vec::new(),
                    deferred: Vec::new(),
                    removals: Vec::new(),
                };
                meeting.run(rx).await;
            });
        })
        .map_err(|e| MediaPlaneError::Unavailable(format!("no thread for the meeting: {e}")))?;
    Ok(tx)
}

/// The actor could not start: answer what is queued, hand the policy back.
fn refuse_all(
    plane: &Weak<Shared>,
    meeting_id: Uuid,
    mut rx: mpsc::UnboundedReceiver<Mail>,
    policy: MeetingPolicy,
    why: &str,
) {
    tracing::warn!(%meeting_id, error = %why, "media session not started");
    let why = format!("the meeting's media session did not start: {why}");
    match plane.upgrade() {
        Some(plane) => plane.abandon(meeting_id, rx, policy, &why),
        None => {
            rx.close();
            while let Ok(mail) = rx.try_recv() {
                mail.refuse(MediaPlaneError::Unavailable(why.clone()));
            }
        }
    }
}

impl Meeting {
    /// Serve mail until the meeting is idle (nothing publishes, consumes or runs) or
    /// ended, then retire.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Mail>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                mail = rx.recv() => {
                    let Some(mail) = mail else { break };
                    // How long the meeting's mailbox is held up by each kind of mail
                    // (a consent withdrawal waits behind whatever runs).
                    let kind = mail.kind();
                    let started = Instant::now();
                    self.handle(mail);
                    metrics::histogram!("gremium_meeting_mail_seconds", "kind" => kind)
                        .record(started.elapsed().as_secs_f64());
                }
                _ = tick.tick() => {
                    if self.plane.strong_count() == 0 {
                        // The plane is gone (tests dropping it): nobody to answer.
                        break;
                    }
                    self.watch_publishers();
                }
            }
            if self.idle() {
                // Nobody publishes: the next session starts with an empty roster (a
                // failed reconnect must not leave a name tile behind).
                let gone: Vec<Uuid> = self.policy.roster().iter().map(|(id, _)| *id).collect();
                for participant in gone {
                    self.policy.leave(participant);
                }
                let keep = self.ending.is_empty().then(|| self.policy.clone());
                let retired = match self.plane.upgrade() {
                    Some(plane) => plane.retire(self.id, &rx, keep),
                    None => true,
                };
                if retired {
                    break;
                }
            }
            self.flush();
        }
        self.flush();
        rx.close();
        while let Ok(mail) = rx.try_recv() {
            mail.refuse(MediaPlaneError::Unavailable(
                "the meeting's media session ended".into(),
            ));
        }
        self.shut_down().await;
    }

    /// Nothing left to do: no publisher (answered or negotiating), no consumer, no
    /// supervised work.
    fn idle(&self) -> bool {
        self.publishers.is_empty()
            && self.negotiating.is_empty()
            && self.abandoned.is_empty()
            && self.consumers.is_empty()
            && self.streams.is_empty()
            && self.recordings.is_empty()
            && self.supervised == 0
    }

    /// Tear the pipeline down (off the mailbox: it joins streaming threads) and answer
    /// whoever waits for the meeting's end.
    async fn shut_down(mut self) {
        for p in std::mem::take(&mut self.publishers).into_values() {
            self.drop_publisher(p);
        }
        let ending = std::mem::take(&mut self.ending);
        for removal in std::mem::take(&mut self.removals) {
            let _ = removal.await;
        }
        let id = self.id;
        let pipeline = self.pipeline.gst().clone();
        drop(self.programs);
        drop(self.encoders);
        drop(self.consumers);
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
        drop(self.pipeline);
        tracing::info!(meeting_id = %id, "media session ended");
        for reply in ending {
            let _ = reply.send(());
        }
    }

    fn handle(&mut self, mail: Mail) {
        if !self.ending.is_empty() {
            // Ending: nothing new starts; what the end waits for still arrives.
            match mail {
                Mail::Publish { .. }
                | Mail::StartRecording { .. }
                | Mail::StartStream { .. }
                | Mail::AttachConsumer { .. } => {
                    return mail.refuse(MediaPlaneError::Rejected("the meeting is ending".into()))
                }
                Mail::EndMeeting { reply } => return self.ending.push(reply),
                _ => {}
            }
        }
        match mail {
            Mail::Publish {
                participant_id,
                offer,
                pins,
                joiner,
                posted,
                reply,
            } => self.publish(participant_id, offer, pins, joiner, posted, reply),
            Mail::Candidates {
                session_id,
                ufrag,
                pwd,
                candidates,
                reply,
            } => {
                let answer = self.add_candidates(session_id, ufrag, pwd, candidates);
                self.answer(reply, answer);
            }
            Mail::Unpublish { session_id, reply } => {
                let answer = self.unpublish(session_id);
                self.answer(reply, answer);
            }
            Mail::SetConsent {
                participant_id,
                consent,
                reply,
            } => {
                let answer = self.set_consent(participant_id, consent);
                self.answer(reply, answer);
            }
            Mail::SetLayout { layout, reply } => {
                let answer = self.set_layout(layout);
                self.answer(reply, answer);
            }
            Mail::SetPublic { public, reply } => {
                let answer = self.set_public(public);
                self.answer(reply, answer);
            }
            Mail::StartRecording {
                recording_id,
                key,
                reply,
            } => {
                let answer = self.start_recording(recording_id, key);
                self.answer(reply, answer);
            }
            Mail::StopRecording {
                recording_id,
                reply,
            } => self.stop_recording(recording_id, reply),
            Mail::StartStream {
                stream_id,
                hls,
                rtmp,
                context,
                reply,
            } => {
                let answer = self.start_stream(stream_id, hls, &rtmp, context);
                self.answer(reply, answer);
            }
            Mail::StopStream { stream_id, reply } => self.stop_stream(stream_id, reply),
            Mail::StreamDrained { stream_id } => self.finish_stream(stream_id),
            Mail::EndMeeting { reply } => self.end(reply),
            Mail::AttachConsumer {
                audience,
                bin,
                reply,
            } => {
                let answer = self.attach_consumer(audience, bin, None);
                self.answer(reply, answer);
            }
            Mail::DetachConsumer { consumer_id, reply } => {
                let answer = self.detach_consumer(consumer_id);
                self.answer(reply, answer);
            }
            Mail::Placements { audience, reply } => {
                let placements = self
                    .programs
                    .get(&audience)
                    .map(|p| p.placements().to_vec());
                self.answer(reply, placements);
            }
            Mail::Encoders { kind, reply } => {
                let frames = self
                    .encoders
                    .iter()
                    .filter(|((_, k), _)| *k == kind)
                    .map(|((a, _), e)| (*a, (e.frames(), e.idle())))
                    .collect();
                self.answer(reply, frames);
            }
            Mail::Keyframe {
                participant_id,
                reply,
            } => {
                let answer = self.request_keyframe(participant_id);
                self.answer(reply, answer);
            }
            Mail::MediaReady { session_id, kind } => self.connect_to_programs(session_id, kind),
            Mail::Dead { session_id } => {
                if let Some(n) = self.negotiating.get_mut(&session_id) {
                    // Removed as soon as it is answered (its ICE failed meanwhile).
                    n.dead = true;
                } else {
                    self.unpublish(session_id);
                }
            }
            Mail::Negotiated { session_id, result } => self.negotiated(session_id, result),
            Mail::Done(finally) => {
                self.supervised = self.supervised.saturating_sub(1);
                if let Some(finally) = finally {
                    self.deferred.push(finally);
                }
            }
        }
    }

    /// Milliseconds since the plane's epoch.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The pipeline's running time (the programs' time base) in nanoseconds.
    fn running_time(&self) -> Option<u64> {
        self.pipeline
            .gst()
            .current_running_time()
            .map(|t| t.nseconds())
    }

    /// Report an event, once this mail is handled (after a retirement it causes).
    fn emit(&mut self, event: MediaEvent) {
        let sink = self.sink.clone();
        self.deferred.push(Box::new(move || sink(event)));
    }

    /// Answer a command, once this mail is handled: whoever asked then sees the
    /// meeting's state after it (e.g. retired when nothing is left).
    fn answer<T: Send + 'static>(&mut self, reply: Reply<T>, value: T) {
        self.deferred.push(Box::new(move || {
            let _ = reply.send(value);
        }));
    }

    /// Run `work` on this meeting's runtime as an operation it supervises (the
    /// meeting does not retire before it ends); what it returns is said when it ends.
    fn supervise(&mut self, work: impl std::future::Future<Output = Option<Finally>> + 'static) {
        self.supervised += 1;
        let mailbox = self.mailbox.clone();
        tokio::task::spawn_local(async move {
            let finally = work.await;
            let _ = mailbox.send(Mail::Done(finally));
        });
    }

    /// Say what handling the last mail left to say.
    fn flush(&mut self) {
        for said in std::mem::take(&mut self.deferred) {
            said();
        }
    }

    /// A consent change: into the policy, then into every program's gates; the
    /// answer carries the running time after the gates moved.
    fn set_consent(&mut self, participant_id: Uuid, consent: Consent) -> Option<u64> {
        self.policy.command_consent(participant_id, consent);
        for (audience, program) in self.programs.iter_mut() {
            program.set_consent(participant_id, self.policy.gate(participant_id, *audience));
        }
        // Right after the gates: a livestream sharing the recording's encode leaves it
        // before another frame passes.
        self.apply_sharing();
        self.observe_timelines();
        self.running_time()
    }

    fn set_layout(&mut self, layout: LayoutSpec) -> Option<u64> {
        self.policy.set_layout(layout);
        let choice = programs::layout_choice(&self.policy.layout());
        for program in self.programs.values_mut() {
            program.set_layout(choice.clone());
        }
        self.running_time()
    }

    fn set_public(&mut self, public: bool) -> Result<Option<u64>, MediaPlaneError> {
        self.policy.set_public(public);
        let mut failure = None;
        for (audience, program) in self.programs.iter_mut() {
            let slate = self.policy.slate(*audience);
            if program.slate_on() != slate {
                if let Err(e) = program.set_slate(slate) {
                    failure = Some(MediaPlaneError::Failed(e.to_string()));
                }
            }
        }
        // Even when a slate failed: the feeds follow the policy (which now says the
        // programs differ), and what is held back is cut.
        self.apply_sharing();
        let now = self.running_time();
        if let (false, Some(now)) = (public, now) {
            // With a broadcast delay, what is still held back never leaves either.
            for stream in self.streams.values() {
                stream.hls.cut(now);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(now),
        }
    }

    /// End the meeting: stop every output (each finishes its file), then retire and
    /// forget the meeting; answered once everything is gone.
    fn end(&mut self, reply: Reply<()>) {
        self.ending.push(reply);
        let recordings: Vec<Uuid> = self.recordings.keys().copied().collect();
        for recording_id in recordings {
            self.stop_recording(recording_id, None);
        }
        let streams: Vec<Uuid> = self.streams.keys().copied().collect();
        for stream_id in streams {
            let (tx, _) = oneshot::channel();
            self.stop_stream(stream_id, tx);
        }
        let negotiating: Vec<Uuid> = self.negotiating.keys().copied().collect();
        for session_id in negotiating {
            self.abandon_negotiation(session_id);
        }
        let sessions: Vec<Uuid> = self.publishers.keys().copied().collect();
        for session_id in sessions {
            self.unpublish(session_id);
        }
        // Other consumers (taps) go now; a stream's consumer goes once its stop has
        // drained it, so its playlists are ended and its pushes finish.
        let draining: Vec<Uuid> = self.streams.values().map(|s| s.consumer_id).collect();
        let consumers: Vec<Uuid> = self
            .consumers
            .keys()
            .filter(|id| !draining.contains(id))
            .copied()
            .collect();
        for consumer_id in consumers {
            self.detach_consumer(consumer_id);
        }
    }
}
