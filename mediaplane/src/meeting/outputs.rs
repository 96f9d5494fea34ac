//! A meeting's outputs: recordings (an encrypted fragmented MP4 on the spool disk,
//! then post-processed by [`crate::spools`]) and livestreams (HLS with RTMP pushes).
//!
//! Owns: starting and stopping them as consumers of their audience's program, the
//! recordings' appearance timelines, and the watchers that report their health.
//! Must not: decide who appears (the policy does) or keep a recording's files after
//! it stopped (the spools do).

use std::sync::Arc;
use std::time::Duration;

use gremium_pipelines::stop_and_remove;
use gremium_protocol::{
    Audience, CommandOutcome, MediaEvent, MediaPlaneError, MeetingContext, RtmpTarget,
};
use gremium_recorder::finalize::{spool_path, write_completion, Completion, Origin};
use gremium_recorder::{RecordingBin, RecordingSettings};
use gremium_streamer::hls::{HlsBin, HlsSettings, Rendition};
use gremium_vault::media_context;
use gremium_vault::DataKey;
use uuid::Uuid;

use super::{Finally, Mail, Meeting, Outcome, Reply, RunningRecording, RunningStream};
use crate::failed;
use crate::timeline::Timeline;

/// How long a recording's or a stream's finish may take before it counts as frozen.
const FINISH_WATCHDOG: Duration = Duration::from_secs(10);

impl Meeting {
    /// Start recording the recording-audience program to a fragmented MP4, encrypted
    /// with the recording's data key, in the spool directory. A second start of the
    /// same recording is a no-op.
    pub(super) fn start_recording(&mut self, recording_id: Uuid, key: DataKey) -> Outcome {
        if self.recordings.contains_key(&recording_id) {
            return Ok(CommandOutcome::Accepted);
        }
        let dir = &self.settings.recordings_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| MediaPlaneError::Failed(format!("recordings directory: {e}")))?;
        // Refused up front rather than interrupted minutes later (which keeps what
        // was written, but the chair would rather know now).
        let min_free = self.settings.recordings_min_free;
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
        let share = self.settings.streaming.share_encoder;
        let h264 = self.settings.recording_h264();
        let recording = Arc::new(
            RecordingBin::new(&RecordingSettings {
                path: spool_path(dir, recording_id),
                key,
                context: media_context(recording_id),
                video: h264,
                encoded_input: share,
                encoded_audio: share,
                fragment: self.settings.recording.fragment,
            })
            .map_err(failed)?,
        );
        self.spools.recording(recording_id);
        let consumer_id = match self.attach_consumer(
            Audience::Recording,
            recording.bin().clone(),
            share.then_some(h264),
        ) {
            Ok(id) => id,
            Err(e) => {
                self.spools.release(recording_id);
                return Err(e);
            }
        };
        self.watch_interruptions(recording_id, &recording);
        let timeline = self.running_time().map(|now| {
            let mut timeline = Timeline::new(now);
            timeline.observe(now, &self.visible_in_recording());
            timeline
        });
        self.recordings.insert(
            recording_id,
            RunningRecording {
                consumer_id,
                bin: recording,
                timeline,
            },
        );
        self.update_indicators();
        self.emit(MediaEvent::RecordingStarted {
            meeting_id: self.id,
            recording_id,
        });
        Ok(CommandOutcome::Accepted)
    }

    /// A failed write (the spool disk filled up) ends the recording at once: the
    /// spool keeps every whole fragment before it, and stopping finalizes that.
    fn watch_interruptions(&self, recording_id: Uuid, recording: &RecordingBin) {
        let mut failures = recording.interruptions();
        let (spools, sink, mailbox, meeting_id) = (
            self.spools.clone(),
            self.sink.clone(),
            self.mailbox.clone(),
            self.id,
        );
        tokio::task::spawn_local(async move {
            // Ends with the bin (its sender goes) when the recording stops normally.
            let Ok(reason) = failures.wait_for(|e| e.is_some()).await.map(|r| r.clone()) else {
                return;
            };
            let reason = reason.unwrap_or_default();
            // Running, or already stopping (the write failed in the stop's final
            // flush: the end is lost all the same, and the record must say so).
            let Some(running) = spools.in_use(recording_id) else {
                return;
            };
            tracing::warn!(%recording_id, %reason, "recording interrupted; keeping what was written");
            sink(MediaEvent::RecordingInterrupted {
                meeting_id,
                recording_id,
                reason,
            });
            if running {
                let _ = mailbox.send(Mail::StopRecording {
                    recording_id,
                    reply: None,
                });
            }
        });
    }

    /// Stop a recording: cut it off the program, finish the file (10 s watchdog) in a
    /// supervised task, then hand the spool to post-processing; the reply goes once
    /// the file is finished. Stopping an unknown or stopped recording is a no-op.
    pub(super) fn stop_recording(&mut self, recording_id: Uuid, reply: Option<Reply<()>>) {
        let Some(r) = self.recordings.remove(&recording_id) else {
            if let Some(reply) = reply {
                self.answer(reply, ());
            }
            return;
        };
        self.spools.finishing(recording_id);
        self.update_indicators();
        let appearances = match (r.timeline, self.running_time()) {
            (Some(timeline), Some(now)) => timeline.finish(now),
            _ => Vec::new(),
        };
        let bin = self.cut_off(r.consumer_id);
        let pipeline = self.pipeline.gst().clone();
        let (spools, sink, meeting_id) = (self.spools.clone(), self.sink.clone(), self.id);
        let recording = r.bin;
        let runtime = self.runtime.clone();
        self.supervise(async move {
            // The EOS is sent into the bin's queues, which a stalled spool disk may
            // hold full: not on the meeting's thread, whose mailbox must stay served.
            let finishing = recording.clone();
            let finished = runtime
                .spawn(async move { finishing.finish(FINISH_WATCHDOG).await })
                .await
                .unwrap_or_else(|e| {
                    Err(gremium_pipelines::PipelineError::StateChange(e.to_string()))
                });
            if let Some(bin) = bin {
                let _ = tokio::task::spawn_blocking(move || stop_and_remove(&pipeline, &bin)).await;
            }
            let failure = match finished {
                Err(e) => {
                    // The spool is no longer in use (and stays until the recording is
                    // deleted): released before the failure is reported, so a
                    // deletion that follows the report removes it.
                    spools.release(recording_id);
                    Some(MediaEvent::RecordingFailed {
                        meeting_id,
                        recording_id,
                        reason: format!("the recording was not finalized within 10 s: {e}"),
                    })
                }
                Ok(()) => {
                    let spool = recording.path().to_path_buf();
                    let completion = Completion {
                        first_fragment_ms: recording
                            .first_fragment_after()
                            .map(|d| d.as_millis() as u64),
                        appearances,
                    };
                    if let Err(e) = write_completion(&spool, &completion) {
                        tracing::warn!(%recording_id, error = %e, "completion mark not written");
                    }
                    // Post-processing (seal, validate, poster, store) runs on its own:
                    // it needs no pipeline, and a long recording must not hold up the
                    // stop call.
                    spools.finalize(
                        meeting_id,
                        recording_id,
                        recording.key().clone(),
                        Origin::Stopped(completion),
                        "post-processing failed",
                    );
                    None
                }
            };
            Some(Box::new(move || {
                if let Some(event) = failure {
                    sink(event);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }) as Finally)
        });
    }

    /// Participants the recording shows now: publishing (media seen) and admitted.
    fn visible_in_recording(&self) -> Vec<(Uuid, String)> {
        let publishers = &self.publishers;
        self.policy.visible(Audience::Recording, |id| {
            publishers.values().any(|p| {
                p.participant_id == id
                    && p.last_media_ms.load(std::sync::atomic::Ordering::Relaxed) > 0
            })
        })
    }

    /// Bring the appearance timelines of the meeting's recordings up to date.
    pub(super) fn observe_timelines(&mut self) {
        let Some(now) = self.running_time() else {
            return;
        };
        if self.recordings.values().all(|r| r.timeline.is_none()) {
            return;
        }
        let visible = self.visible_in_recording();
        for r in self.recordings.values_mut() {
            if let Some(timeline) = &mut r.timeline {
                timeline.observe(now, &visible);
            }
        }
    }

    /// Start the livestream: the streaming-audience program as HLS in the live
    /// directory and/or RTMP pushes. A second start is a no-op.
    pub(super) fn start_stream(
        &mut self,
        stream_id: Uuid,
        hls: bool,
        rtmp: &[RtmpTarget],
        context: Option<MeetingContext>,
    ) -> Outcome {
        if self.streams.contains_key(&stream_id) {
            return Ok(CommandOutcome::Accepted);
        }
        if let Some(context) = &context {
            self.policy.learn_context(context);
        }
        // The HLS bin hosts the encoders RTMP shares. Without `hls` it writes nothing
        // and encodes only what the pushes use.
        let dir = self.settings.live_dir.join(self.id.to_string());
        if hls {
            // A new stream starts a new presentation: an old one's segments would
            // confuse players (media sequence restarting at 0).
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| MediaPlaneError::Failed(format!("live directory: {e}")))?;
        }
        let program = &self.settings.program;
        let streaming = &self.settings.streaming;
        let mut settings = HlsSettings::new(&dir, program.fps);
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
            settings.renditions.push(Rendition::new(
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
                .then(|| self.settings.shared_h264(top.video_kbps))
        });
        settings.encoded_top = h264.is_some();
        // The AAC is shared the same way (one configuration: no settings to match).
        settings.encoded_audio = settings.delay.is_none() && streaming.share_encoder;
        let bin = HlsBin::new(&settings).map_err(|e| MediaPlaneError::Failed(e.to_string()))?;
        for (i, target) in rtmp.iter().enumerate() {
            bin.add_rtmp(&format!("rtmp{i}"), &target.url, &target.key)
                .map_err(|e| MediaPlaneError::Rejected(e.to_string()))?;
        }
        if !rtmp.is_empty() {
            self.watch_destinations(stream_id, &bin);
        }
        if settings.files {
            self.watch_hls_writes(stream_id, &bin);
        }
        let consumer_id = self.attach_consumer(Audience::Streaming, bin.bin().clone(), h264)?;
        self.streams.insert(
            stream_id,
            RunningStream {
                consumer_id,
                hls: Arc::new(bin),
                stopping: Vec::new(),
            },
        );
        self.update_indicators();
        self.emit(MediaEvent::StreamStarted {
            meeting_id: self.id,
            stream_id,
        });
        Ok(CommandOutcome::Accepted)
    }

    /// Report the HLS files stalling (a full disk) or advancing again, until the bin
    /// is gone (its sender goes with it).
    fn watch_hls_writes(&self, stream_id: Uuid, hls: &HlsBin) {
        let mut errors = hls.write_errors();
        let (sink, meeting_id) = (self.sink.clone(), self.id);
        self.runtime.spawn(async move {
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
    fn watch_destinations(&self, stream_id: Uuid, hls: &HlsBin) {
        use gremium_streamer::rtmp::RtmpStatus;
        let mut updates = hls.rtmp_updates();
        let (sink, meeting_id) = (self.sink.clone(), self.id);
        self.runtime.spawn(async move {
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

    /// Stop a stream: first let media reach every muxer (a stop right after the
    /// start), then [`Meeting::finish_stream`]. Answered once the playlists are
    /// ended. Unknown or stopped streams: no-op.
    pub(super) fn stop_stream(&mut self, stream_id: Uuid, reply: Reply<()>) {
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            self.answer(reply, ());
            return;
        };
        let first = stream.stopping.is_empty();
        stream.stopping.push(reply);
        if !first {
            return;
        }
        let hls = stream.hls.clone();
        self.update_indicators();
        let mailbox = self.mailbox.clone();
        self.supervise(async move {
            // While the bin is still fed, so the EOS ends what was produced.
            if !hls.media_ready(Duration::from_secs(2)).await {
                tracing::info!(%stream_id, "stream stopped before media reached all its outputs");
            }
            let _ = mailbox.send(Mail::StreamDrained { stream_id });
            None
        });
    }

    /// Cut a stopping stream off its program and let HLS write its last segment and
    /// end the playlists (10 s watchdog), supervised.
    pub(super) fn finish_stream(&mut self, stream_id: Uuid) {
        let Some(stream) = self.streams.remove(&stream_id) else {
            return;
        };
        let bin = self.cut_off(stream.consumer_id);
        let pipeline = self.pipeline.gst().clone();
        let (sink, meeting_id) = (self.sink.clone(), self.id);
        self.supervise(async move {
            let result = stream.hls.finish(FINISH_WATCHDOG).await;
            if let Some(bin) = bin {
                let _ = tokio::task::spawn_blocking(move || stop_and_remove(&pipeline, &bin)).await;
            }
            let event = match result {
                Ok(_) => MediaEvent::StreamFinished {
                    meeting_id,
                    stream_id,
                },
                Err(e) => MediaEvent::StreamFailed {
                    meeting_id,
                    stream_id,
                    reason: format!("the stream did not end cleanly: {e}"),
                },
            };
            Some(Box::new(move || {
                sink(event);
                for reply in stream.stopping {
                    let _ = reply.send(());
                }
            }) as Finally)
        });
    }
}
