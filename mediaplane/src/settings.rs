//! The media plane's settings (validated by the binary's config) and the encode
//! parameters derived from them.
//!
//! Owns: what the operator configured for media (ICE, limits, directories, program
//! look, livestream cutting, recording encode). Must not: read the environment or
//! files; the binary validates and hands these in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gremium_compositor::ProgramSettings;
use gremium_pipelines::encode::H264;
use gremium_pipelines::webrtc::IceSettings;
use gremium_vault::ObjectStore;

use crate::policy::PolicySettings;

/// A camera that sent no video for this long counts as off (placeholder tile).
const CAMERA_OFF_AFTER_MS: u64 = 1500;

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
    /// The programs' video and audio are encoded by the media plane
    /// ([`crate::encoders`]) and the livestream takes the recording's encodes while
    /// both audiences see the same program (the default). Off, the recording and the
    /// livestream each encode their own program.
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

impl MediaPlaneSettings {
    /// What the consent policy needs of these settings.
    pub(crate) fn policy(&self) -> PolicySettings {
        PolicySettings {
            slate_recording: self.streaming.slate_recording,
            broadcast_delay: self.streaming.delay.is_some(),
            media_timeout_ms: self.media_timeout.as_millis() as u64,
            camera_off_after_ms: CAMERA_OFF_AFTER_MS,
        }
    }

    /// Frames in `interval` at the program's frame rate (at least one).
    fn frames(&self, interval: Duration) -> u32 {
        let fps = self.program.fps.max(1) as u64;
        ((interval.as_millis() as u64 * fps) / 1000).max(1) as u32
    }

    /// The H.264 encode of a shareable program output at `kbps`: a keyframe at every
    /// HLS segment start, so one encode can serve the recording and the livestream.
    pub(crate) fn shared_h264(&self, kbps: u32) -> H264 {
        H264 {
            kbps,
            keyframe_interval: self.frames(self.streaming.segment.max(Duration::from_secs(1))),
        }
    }

    /// How a recording's video is encoded: the configured bitrate, else (shared) that
    /// of the HLS ladder's rung with the canvas size, so a livestream of the same
    /// audience can share it, or 2500 kbit/s; the configured keyframe interval, else one segment when
    /// shared and two seconds when not.
    pub(crate) fn recording_h264(&self) -> H264 {
        let canvas = self.program.canvas;
        let shared = self.streaming.share_encoder;
        let kbps = self.recording.video_kbps.unwrap_or_else(|| {
            gremium_streamer::hls::Rendition::default_ladder()
                .iter()
                .find(|r| shared && r.width == canvas.width && r.height == canvas.height)
                .map_or(2500, |r| r.video_kbps)
        });
        let default_interval = if self.streaming.share_encoder {
            self.streaming.segment.max(Duration::from_secs(1))
        } else {
            Duration::from_secs(2)
        };
        H264 {
            kbps,
            keyframe_interval: self
                .frames(self.recording.keyframe_interval.unwrap_or(default_interval)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(share: bool, recording: RecordingEncode) -> MediaPlaneSettings {
        MediaPlaneSettings {
            ice: IceSettings::default(),
            dot_dir: PathBuf::from("/nonexistent"),
            gather_timeout: Duration::from_secs(5),
            media_timeout: Duration::from_secs(10),
            max_publishers: 10,
            recordings_dir: PathBuf::from("/nonexistent"),
            recordings_min_free: 0,
            store: Arc::new(gremium_vault::LocalStore::new("/nonexistent")),
            live_dir: PathBuf::from("/nonexistent"),
            program: ProgramSettings::default(),
            streaming: StreamingSettings {
                share_encoder: share,
                ..StreamingSettings::default()
            },
            recording,
        }
    }

    #[test]
    fn unset_recording_encode_keeps_the_old_constants() {
        let fps = ProgramSettings::default().fps;
        // Shared: the ladder rung of the canvas, a keyframe every (1 s) segment, the
        // same as the livestream's top rung, so the two can share one encode.
        let shared = settings(true, RecordingEncode::default());
        let top = gremium_streamer::hls::Rendition::default_ladder()
            .into_iter()
            .find(|r| {
                r.width == shared.program.canvas.width && r.height == shared.program.canvas.height
            })
            .map_or(2500, |r| r.video_kbps);
        assert_eq!(
            shared.recording_h264(),
            H264 {
                kbps: top,
                keyframe_interval: fps
            }
        );
        assert_eq!(shared.recording_h264(), shared.shared_h264(top));
        // Own encode: 2500 kbit/s, a keyframe every two seconds.
        let own = settings(false, RecordingEncode::default());
        assert_eq!(
            own.recording_h264(),
            H264 {
                kbps: 2500,
                keyframe_interval: 2 * fps
            }
        );
    }

    #[test]
    fn configured_recording_encode_is_what_the_recording_gets() {
        let fps = ProgramSettings::default().fps;
        let configured = RecordingEncode {
            video_kbps: Some(1200),
            keyframe_interval: Some(Duration::from_millis(500)),
            fragment: Duration::from_secs(1),
        };
        for share in [true, false] {
            let s = settings(share, configured);
            assert_eq!(
                s.recording_h264(),
                H264 {
                    kbps: 1200,
                    keyframe_interval: fps / 2
                },
                "share_encoder = {share}"
            );
        }
        // Shorter than a frame still means a keyframe every frame, not never.
        let tiny = RecordingEncode {
            keyframe_interval: Some(Duration::from_millis(1)),
            ..configured
        };
        assert_eq!(settings(true, tiny).recording_h264().keyframe_interval, 1);
    }
}
