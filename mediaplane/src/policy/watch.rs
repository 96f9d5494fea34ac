//! The publisher watch: every tick, which publishing sessions sent no media for too
//! long, whose camera went off or on, and who the active speaker is.
//!
//! Owns: per publishing session the time it was answered and whether its camera
//! counts as on, and the meeting's [`SpeakerDetector`].
//!
//! Must not: read a clock or touch GStreamer. The adapter samples its publishers
//! (last media, last video frame, loudest level since the last look), passes the time
//! in, and applies the actions.
//!
//! Order independence: the actions depend only on the set of observations, not on
//! their order. Observations are merged per session and taken in session-id order,
//! so the levels reach the speaker detector in that order too: the detector smooths
//! per participant, so a participant with two sessions would otherwise depend on the
//! order of the two samples. (The detector itself breaks ties between equally loud
//! speakers by id, not by input order.)

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use gremium_compositor::SpeakerDetector;
use uuid::Uuid;

/// One publishing session as sampled at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The publishing session.
    pub session_id: Uuid,
    /// Its participant (the watch goes by the participant the session was added with).
    pub participant_id: Uuid,
    /// Milliseconds since the epoch of the last decoded buffer (0: none yet).
    pub last_media_ms: u64,
    /// Milliseconds since the epoch of the last decoded video frame (0: none yet).
    pub last_video_ms: u64,
    /// Loudest audio level (dBFS) since the last tick, `None` without audio.
    pub level_dbfs: Option<f32>,
}

/// What the adapter must do after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchAction {
    /// The session sent no media for longer than the media timeout: remove it
    /// (repeated every tick until it is removed).
    Remove {
        /// The silent session.
        session_id: Uuid,
    },
    /// The participant's camera went off (placeholder tile) or on again.
    Camera {
        /// Whose camera.
        participant_id: Uuid,
        /// On now.
        on: bool,
    },
    /// A new active speaker.
    Speaker {
        /// Who speaks now.
        participant_id: Uuid,
    },
}

/// A watched publishing session.
#[derive(Debug, Clone)]
struct Watched {
    participant_id: Uuid,
    answered_ms: u64,
    camera_on: bool,
}

/// The publisher watch of one meeting.
#[derive(Debug, Clone)]
pub struct PublisherWatch {
    media_timeout_ms: u64,
    camera_off_after_ms: u64,
    /// By session id, so a tick visits them in one order.
    sessions: BTreeMap<Uuid, Watched>,
    speaker: SpeakerDetector,
}

impl PublisherWatch {
    /// A watch with no sessions and the default speaker detector.
    pub fn new(media_timeout_ms: u64, camera_off_after_ms: u64) -> Self {
        PublisherWatch {
            media_timeout_ms,
            camera_off_after_ms,
            sessions: BTreeMap::new(),
            speaker: SpeakerDetector::new(Default::default()),
        }
    }

    /// A session was answered at `answered_ms` (its media timeout counts from then
    /// until media arrives). Its camera counts as off until video arrives. Adding a
    /// session again restarts it.
    pub fn add(&mut self, session_id: Uuid, participant_id: Uuid, answered_ms: u64) {
        self.sessions.insert(
            session_id,
            Watched {
                participant_id,
                answered_ms,
                camera_on: false,
            },
        );
    }

    /// The session is gone. Its participant leaves the speaker detector when no other
    /// session of theirs remains.
    pub fn remove(&mut self, session_id: Uuid) {
        let Some(gone) = self.sessions.remove(&session_id) else {
            return;
        };
        let remains = self
            .sessions
            .values()
            .any(|w| w.participant_id == gone.participant_id);
        if !remains {
            self.speaker.remove(gone.participant_id);
        }
    }

    /// Does the session's camera count as on (false for an unknown session)?
    pub fn camera_on(&self, session_id: Uuid) -> bool {
        self.sessions.get(&session_id).is_some_and(|w| w.camera_on)
    }

    /// The active speaker.
    pub fn current_speaker(&self) -> Option<Uuid> {
        self.speaker.current()
    }

    /// One look at the publishers at `now_ms`. Observations of sessions not added are
    /// ignored; several of one session count as one (the latest times, the loudest
    /// level). Actions come as: removes by session id, camera changes by participant
    /// id, then the new speaker.
    pub fn tick(&mut self, now_ms: u64, observations: &[Observation]) -> Vec<WatchAction> {
        let mut merged: BTreeMap<Uuid, Observation> = BTreeMap::new();
        for o in observations {
            merged
                .entry(o.session_id)
                .and_modify(|m| {
                    m.last_media_ms = m.last_media_ms.max(o.last_media_ms);
                    m.last_video_ms = m.last_video_ms.max(o.last_video_ms);
                    if louder(o.level_dbfs, m.level_dbfs) == Ordering::Greater {
                        m.level_dbfs = o.level_dbfs;
                    }
                })
                .or_insert(*o);
        }
        let mut removes = Vec::new();
        let mut cameras = Vec::new();
        let mut levels = Vec::new();
        for (session_id, o) in &merged {
            let Some(w) = self.sessions.get_mut(session_id) else {
                continue;
            };
            // No media yet counts from the answer, so a publisher whose media never
            // starts is removed too.
            let last = o.last_media_ms.max(w.answered_ms);
            if now_ms.saturating_sub(last) > self.media_timeout_ms {
                removes.push(WatchAction::Remove {
                    session_id: *session_id,
                });
            }
            let video = o.last_video_ms;
            let on = video > 0 && now_ms.saturating_sub(video) <= self.camera_off_after_ms;
            // Without video ever, `on` is false: only a camera that was on changes.
            if on != w.camera_on {
                w.camera_on = on;
                cameras.push((w.participant_id, on));
            }
            levels.push((w.participant_id, o.level_dbfs));
        }
        // Stable: two sessions of one participant stay in session order.
        cameras.sort_by_key(|(participant_id, _)| *participant_id);
        let mut actions = removes;
        actions.extend(
            cameras
                .into_iter()
                .map(|(participant_id, on)| WatchAction::Camera { participant_id, on }),
        );
        if let Some(participant_id) = self.speaker.update(&levels, Duration::from_millis(now_ms)) {
            actions.push(WatchAction::Speaker { participant_id });
        }
        actions
    }
}

/// A total order of levels: no audio below any level.
fn louder(a: Option<f32>, b: Option<f32>) -> Ordering {
    let key = |l: Option<f32>| l.unwrap_or(f32::NEG_INFINITY);
    key(a).total_cmp(&key(b))
}

#[cfg(test)]
mod tests {
    //! The watch's rules at their exact boundaries (order independence is a property
    //! test in `policy::tests`).

    use super::*;

    fn id(n: u8) -> Uuid {
        Uuid::from_u128(u128::from(n) + 1)
    }

    fn obs(
        session: u8,
        participant: u8,
        media: u64,
        video: u64,
        level: Option<f32>,
    ) -> Observation {
        Observation {
            session_id: id(100 + session),
            participant_id: id(participant),
            last_media_ms: media,
            last_video_ms: video,
            level_dbfs: level,
        }
    }

    #[test]
    fn media_timeout_counts_from_the_answer_then_from_the_last_media() {
        let mut w = PublisherWatch::new(1000, 1500);
        w.add(id(100), id(0), 100);
        let silent = [obs(0, 0, 0, 0, None)];
        assert_eq!(w.tick(1100, &silent), vec![], "exactly the timeout: kept");
        let remove = WatchAction::Remove {
            session_id: id(100),
        };
        assert_eq!(w.tick(1101, &silent), vec![remove]);
        assert_eq!(
            w.tick(1102, &silent),
            vec![remove],
            "repeated until removed"
        );
        let spoke = [obs(0, 0, 500, 0, None)];
        assert_eq!(w.tick(1500, &spoke), vec![]);
        assert_eq!(w.tick(1501, &spoke), vec![remove]);
        w.remove(id(100));
        assert_eq!(w.tick(5000, &spoke), vec![], "unknown sessions are ignored");
    }

    #[test]
    fn camera_goes_on_with_video_and_off_after_the_limit() {
        let mut w = PublisherWatch::new(u64::MAX, 1500);
        w.add(id(100), id(0), 0);
        assert_eq!(
            w.tick(900, &[obs(0, 0, 900, 0, None)]),
            vec![],
            "no video yet"
        );
        assert!(!w.camera_on(id(100)));
        let on = WatchAction::Camera {
            participant_id: id(0),
            on: true,
        };
        assert_eq!(w.tick(2500, &[obs(0, 0, 2500, 1000, None)]), vec![on]);
        assert!(w.camera_on(id(100)));
        assert_eq!(
            w.tick(2500, &[obs(0, 0, 2500, 1000, None)]),
            vec![],
            "no change"
        );
        let off = WatchAction::Camera {
            participant_id: id(0),
            on: false,
        };
        assert_eq!(w.tick(2501, &[obs(0, 0, 2501, 1000, None)]), vec![off]);
        assert!(!w.camera_on(id(100)));
        assert_eq!(w.tick(2600, &[obs(0, 0, 2600, 1000, None)]), vec![]);
    }

    #[test]
    fn speaker_follows_levels_and_leaves_with_the_last_session() {
        let mut w = PublisherWatch::new(u64::MAX, 1500);
        w.add(id(100), id(0), 0);
        w.add(id(101), id(0), 0);
        w.add(id(102), id(1), 0);
        let mut spoke = Vec::new();
        for t in 1..=20 {
            let round = [
                obs(0, 0, t * 250, 0, Some(-10.0)),
                obs(1, 0, t * 250, 0, Some(-10.0)),
                obs(2, 1, t * 250, 0, Some(-70.0)),
            ];
            spoke.extend(w.tick(t * 250, &round));
        }
        assert_eq!(
            spoke,
            vec![WatchAction::Speaker {
                participant_id: id(0)
            }]
        );
        assert_eq!(w.current_speaker(), Some(id(0)));
        w.remove(id(100));
        assert_eq!(w.current_speaker(), Some(id(0)), "another session remains");
        w.remove(id(101));
        assert_eq!(w.current_speaker(), None);
    }

    #[test]
    fn actions_come_removes_then_cameras_by_participant_then_speaker() {
        let mut w = PublisherWatch::new(1000, 1500);
        // Session order is the reverse of participant order.
        w.add(id(100), id(9), 0);
        w.add(id(101), id(8), 0);
        let mut last = Vec::new();
        for t in 1..=8 {
            let now = 1000 + t * 250;
            last = w.tick(
                now,
                &[obs(1, 8, 0, now, Some(-5.0)), obs(0, 9, 0, now, Some(-5.0))],
            );
            if t == 1 {
                assert_eq!(
                    last,
                    vec![
                        WatchAction::Remove {
                            session_id: id(100)
                        },
                        WatchAction::Remove {
                            session_id: id(101)
                        },
                        WatchAction::Camera {
                            participant_id: id(8),
                            on: true
                        },
                        WatchAction::Camera {
                            participant_id: id(9),
                            on: true
                        },
                    ]
                );
            }
            if last
                .iter()
                .any(|a| matches!(a, WatchAction::Speaker { .. }))
            {
                break;
            }
        }
        // Equally loud: the detector picks by id, whichever comes first in the input.
        assert_eq!(
            last,
            vec![
                WatchAction::Remove {
                    session_id: id(100)
                },
                WatchAction::Remove {
                    session_id: id(101)
                },
                WatchAction::Speaker {
                    participant_id: id(8)
                },
            ]
        );
    }
}
