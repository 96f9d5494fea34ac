//! Whole scenes many end-to-end tests start from: the real media plane with a meeting
//! and publishers ([`PublishingMeeting`]), and the same with a page in headless
//! Chromium ([`Stage`]: "media plane + publishers + a page in Chromium").
//!
//! Owns: the set-up those tests share. Must not: assert what the product does (beyond
//! the set-up having worked).

use std::path::PathBuf;
use std::time::Duration;

use gremium_compositor::{Canvas, ProgramSettings};
use gremium_mediaplane::GstMediaPlane;

use super::app::TestApp;
use super::cdp;
use super::client::{Client, Consent, Meeting, Participant};
use super::events::{wait_event, Ws};
use super::media::{small_program, spawn_with_gst_media_in};
use super::publishers::Publisher;

/// A meeting on an in-process Gremium with the real media plane
/// ([`small_program`], files under `dir` as [`spawn_with_gst_media_in`]), with "Anna"
/// publishing a small gold camera and a tone for up to 90 s (stopped when `publisher`
/// drops); the moderator's WebSocket has seen her media start.
pub struct PublishingMeeting {
    pub app: TestApp,
    pub media: GstMediaPlane,
    pub moderator: Client,
    pub meeting: Meeting,
    pub mid: String,
    pub anna: Participant,
    pub ws: Ws,
    pub publisher: Publisher,
}

impl PublishingMeeting {
    /// `public` meeting; Anna's `consent`.
    pub async fn start(
        dir: PathBuf,
        title: &str,
        public: bool,
        consent: Consent,
    ) -> PublishingMeeting {
        let (app, media) =
            spawn_with_gst_media_in(Duration::from_secs(10), 10, small_program(), dir).await;
        let moderator = app.moderator();
        let meeting = if public {
            moderator.create_public_meeting(title).await
        } else {
            moderator.create_meeting(title).await
        };
        let anna = meeting.add_participant("Anna").await;
        anna.set_consent(consent).await;
        let (mut ws, _) = meeting.events().await;
        let publisher = anna.publish_small("ffd700", 90);
        wait_event(&mut ws, "participant_media_started", |_| true).await;
        PublishingMeeting {
            mid: meeting.id.clone(),
            app,
            media,
            moderator,
            meeting,
            anna,
            ws,
            publisher,
        }
    }
}

/// The cargo target directory (test binaries are `TARGET/debug/deps/<name>-…`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Where a test leaves a file for people to look at (`target/test-artifacts/name`).
pub fn artifact(name: &str) -> PathBuf {
    target_dir().join("test-artifacts").join(name)
}

/// Asserts Debian's chromium is installed (the browser tests need it).
pub fn assert_chromium() {
    assert!(
        std::process::Command::new("chromium")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "chromium is not installed: run scripts/test.sh"
    );
}

/// The program the browser tests read back: 640x360@15 without name labels, so a
/// participant's colour fills their tile.
pub fn unlabelled_program() -> ProgramSettings {
    ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        labels: false,
        ..ProgramSettings::default()
    }
}

/// The real media plane ([`unlabelled_program`]) under a directory of its own
/// (removed on drop), a moderator, and what a test adds: meetings, publishers, pages in
/// Chromium. Run browser tests inside `netns::run_isolated_async` (loopback only).
pub struct Stage {
    pub app: TestApp,
    pub media: GstMediaPlane,
    pub dir: PathBuf,
    pub moderator: Client,
}

impl Stage {
    /// `name` prefixes the directory (`$TMPDIR/gremium-{name}-{uuid}`). Asserts that
    /// chromium is installed: a stage is for browser tests.
    pub async fn start(name: &str) -> Stage {
        assert_chromium();
        Self::start_with(name, unlabelled_program()).await
    }

    /// A stage with `program`, no browser needed.
    pub async fn start_with(name: &str, program: ProgramSettings) -> Stage {
        let dir = std::env::temp_dir().join(format!("gremium-{name}-{}", uuid::Uuid::new_v4()));
        let (app, media) =
            spawn_with_gst_media_in(Duration::from_secs(10), 10, program, dir.clone()).await;
        let moderator = app.moderator();
        Stage {
            app,
            media,
            dir,
            moderator,
        }
    }

    /// A meeting made by the moderator from a full body (asserts 201), and the
    /// moderator's WebSocket on it, past the snapshot.
    pub async fn meeting(&self, body: serde_json::Value) -> (Meeting, Ws) {
        let m = self.moderator.create_meeting_with(body).await;
        let (ws, _) = m.events().await;
        (m, ws)
    }

    /// `participant` publishes a small camera of `color` and a tone for `secs` s.
    pub fn publish(&self, participant: &Participant, color: &str, secs: u32) -> Publisher {
        participant.publish_small(color, secs)
    }

    /// Headless Chromium on `path` of this server; `fake_media` gives it a synthetic
    /// camera and microphone (allowed without a prompt, WebRTC over loopback).
    pub async fn open(&self, path: &str, fake_media: bool) -> cdp::Chromium {
        let url = self.app.url(path);
        if fake_media {
            cdp::Chromium::launch_with(&url, cdp::FAKE_MEDIA).await
        } else {
            cdp::Chromium::launch(&url).await
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
