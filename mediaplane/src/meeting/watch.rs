//! The publisher watch applied: every tick the publishers' probes (last media, last
//! video frame, loudest audio level) go to the policy's [`PublisherWatch`], and its
//! actions are applied to the programs and reported.
//!
//! Owns: turning probes into observations and actions into program changes. Must
//! not: decide timeouts, camera state or the speaker (the watch does).
//!
//! [`PublisherWatch`]: crate::policy::PublisherWatch

use std::sync::atomic::Ordering;

use gremium_protocol::MediaEvent;

use super::Meeting;
use crate::policy::{Observation, WatchAction};

impl Meeting {
    /// Every tick: what the publishers' probes saw goes to the watch; its actions
    /// (remove a silent publisher, a camera on or off, a new active speaker) are
    /// applied, and the recordings' appearance timelines brought up to date.
    pub(super) fn watch_publishers(&mut self) {
        let now = self.now_ms();
        let observations: Vec<Observation> = self
            .publishers
            .iter()
            .map(|(session_id, p)| {
                let raw = p.level.swap(0, Ordering::Relaxed);
                Observation {
                    session_id: *session_id,
                    participant_id: p.participant_id,
                    last_media_ms: p.last_media_ms.load(Ordering::Relaxed),
                    last_video_ms: p.last_video_ms.load(Ordering::Relaxed),
                    level_dbfs: (raw > 0).then(|| raw as f32 / 100.0 - 100.0),
                }
            })
            .collect();
        self.observe_timelines();
        for action in self.watch.tick(now, &observations) {
            match action {
                WatchAction::Remove { session_id } => {
                    tracing::info!(meeting_id = %self.id, %session_id,
                        "publisher sent no media; removing it");
                    self.unpublish(session_id);
                }
                WatchAction::Camera { participant_id, on } => {
                    for program in self.programs.values_mut() {
                        program.set_camera(participant_id, on);
                    }
                    self.emit(MediaEvent::CameraChanged {
                        meeting_id: self.id,
                        participant_id,
                        on,
                    });
                }
                WatchAction::Speaker { participant_id } => {
                    for program in self.programs.values_mut() {
                        program.set_active_speaker(Some(participant_id));
                    }
                    self.emit(MediaEvent::ActiveSpeakerChanged {
                        meeting_id: self.id,
                        participant_id,
                    });
                }
            }
        }
    }
}
