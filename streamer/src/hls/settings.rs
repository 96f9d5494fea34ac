//! What an HLS presentation should be, as asked for: the ladder of [`Rendition`]s and
//! the [`HlsSettings`], checked by [`HlsSettings::validate`] before anything is
//! built, and the master playlist's entries they imply ([`HlsSettings::variants`]).
//!
//! Must not: touch GStreamer or the file system (the bin and `sinks` do).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use gremium_pipelines::encode::H264;

use super::playlist::{avc1_high, h264_high_level, Variant, AAC_LC};
use super::{AUDIO_KBPS, AUDIO_RENDITION, PLAYLIST, SEGMENT_PREFIX};
use crate::StreamerError;

/// One video rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Directory name and label, e.g. `720p` (ASCII letters, digits, `-`, `_`).
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
}

impl Rendition {
    /// A rung of the ladder.
    pub fn new(name: &str, width: u32, height: u32, video_kbps: u32) -> Rendition {
        Rendition {
            name: name.to_string(),
            width,
            height,
            video_kbps,
        }
    }

    /// 720p at 2500 kbit/s and 360p at 800 kbit/s.
    pub fn default_ladder() -> Vec<Rendition> {
        vec![
            Rendition::new("720p", 1280, 720, 2500),
            Rendition::new("360p", 640, 360, 800),
        ]
    }

    /// The H.264 level x264 picks for this rung at `fps`.
    pub fn level(&self, fps: u32) -> Option<u8> {
        h264_high_level(self.width, self.height, fps, self.video_kbps)
    }
}

/// What the caller asked for. Checked by [`HlsSettings::validate`] before anything is
/// built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSettings {
    /// Directory of the presentation (created if missing).
    pub dir: PathBuf,
    /// Program frame rate.
    pub fps: u32,
    /// Segment length; whole seconds (it is also the playlists' target duration).
    pub segment: Duration,
    /// Segments in the live playlist (at least 3, RFC 8216 6.3.3).
    pub window: u32,
    /// Extra segments kept in the playlist for DVR (pause, seek back).
    pub dvr_window: Option<u32>,
    /// Broadcast delay: the program is held back this long before it is encoded
    /// (at most 60 s), so [`HlsBin::cut`] can still keep it from leaving.
    pub delay: Option<Duration>,
    /// Video renditions; the audio-only one is always added.
    pub renditions: Vec<Rendition>,
    /// Write the HLS presentation. Without it (a stream with only RTMP
    /// destinations) the bin encodes just the top rendition and the AAC for the
    /// pushes and writes nothing.
    pub files: bool,
    /// The top rendition (the largest; also what RTMP pushes) arrives encoded on the
    /// ghost pad `video_h264` (H.264 byte-stream from an encoder the media plane may
    /// share with the recording) instead of being encoded here from the raw `video`.
    /// It must then be the program's own size and encode settings. Not with a delay
    /// (the delay holds raw video back).
    pub encoded_top: bool,
    /// The audio arrives encoded on the ghost pad `audio_aac` (AAC from
    /// [`gremium_pipelines::encode::aac_chain`], an encoder the media plane may share
    /// with the recording) instead of being encoded here from the raw `audio`. Not
    /// with a delay (the delay holds raw audio back).
    pub encoded_audio: bool,
    /// Segment files are named `{segment_prefix}00000.ts`, … (1–32 of
    /// `[A-Za-z0-9_-]`). Segments are served as immutable, so each presentation in a
    /// directory needs a prefix of its own: a CDN or browser would otherwise hand out
    /// an earlier stream's `seg00000.ts` for the next one's.
    pub segment_prefix: String,
}

impl HlsSettings {
    /// 1 s segments, a window of 6, no DVR, the default ladder.
    pub fn new(dir: impl Into<PathBuf>, fps: u32) -> HlsSettings {
        HlsSettings {
            dir: dir.into(),
            fps,
            segment: Duration::from_secs(1),
            window: 6,
            dvr_window: None,
            delay: None,
            renditions: Rendition::default_ladder(),
            files: true,
            encoded_top: false,
            encoded_audio: false,
            segment_prefix: SEGMENT_PREFIX.into(),
        }
    }

    /// The largest rendition (the first of equals): it also feeds the RTMP pushes.
    pub fn top(&self) -> Option<&Rendition> {
        self.renditions.get(self.top_index())
    }

    /// Index of [`HlsSettings::top`] (0 without renditions).
    pub(super) fn top_index(&self) -> usize {
        self.renditions
            .iter()
            .enumerate()
            .max_by_key(|(i, r)| (r.width * r.height, r.video_kbps, std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i)
    }

    /// The H.264 encode of a rendition.
    pub fn h264(&self, r: &Rendition) -> H264 {
        H264 {
            kbps: r.video_kbps,
            keyframe_interval: self.keyframe_interval(),
        }
    }

    /// Segments listed in each media playlist: window + DVR.
    pub fn playlist_length(&self) -> u32 {
        self.window.saturating_add(self.dvr_window.unwrap_or(0))
    }

    /// Segment files kept per rendition. A segment leaves the playlist first and the
    /// disk one playlist later: a player that read the playlist just before can still
    /// fetch it (RFC 8216 6.2.2).
    pub fn max_files(&self) -> u32 {
        self.playlist_length().saturating_mul(2).saturating_add(1)
    }

    /// Frames between keyframes: one keyframe at the start of every segment.
    pub fn keyframe_interval(&self) -> u32 {
        self.fps.saturating_mul(self.segment.as_secs() as u32)
    }

    /// Check that the settings make a playable presentation.
    pub fn validate(&self) -> Result<(), StreamerError> {
        let bad = |m: String| Err(StreamerError::InvalidSettings(m));
        let p = &self.segment_prefix;
        if p.is_empty()
            || p.len() > 32
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return bad(format!("segment prefix {p:?} is not 1-32 of [A-Za-z0-9_-]"));
        }
        // The segment location is a printf pattern: a `%` in the directory would be
        // read as a conversion.
        if self.dir.to_str().is_none_or(|d| d.contains('%')) {
            return bad(format!(
                "directory {} is not UTF-8 without %",
                self.dir.display()
            ));
        }
        if !(1..=120).contains(&self.fps) {
            return bad(format!("frame rate {} is not in 1..=120", self.fps));
        }
        if self.segment.subsec_nanos() != 0 || !(1..=30).contains(&self.segment.as_secs()) {
            return bad(format!(
                "segment {:?} is not 1..=30 whole seconds",
                self.segment
            ));
        }
        if self.window < 3 {
            return bad(format!("window {} is under 3 segments", self.window));
        }
        if self.playlist_length() > 100_000 {
            return bad("window + DVR is over 100000 segments".into());
        }
        if self
            .delay
            .is_some_and(|d| d.is_zero() || d > Duration::from_secs(60))
        {
            return bad(format!("delay {:?} is not in (0, 60 s]", self.delay));
        }
        if self.renditions.is_empty() {
            return bad("no video rendition".into());
        }
        if self.encoded_top && self.delay.is_some() {
            return bad("an encoded top rendition cannot be delayed".into());
        }
        if self.encoded_audio && self.delay.is_some() {
            return bad("encoded audio cannot be delayed".into());
        }
        let mut names = BTreeSet::new();
        for r in &self.renditions {
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 32
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok || r.name == AUDIO_RENDITION {
                return bad(format!("rendition name {:?} is not usable", r.name));
            }
            if !names.insert(r.name.as_str()) {
                return bad(format!("rendition {:?} is listed twice", r.name));
            }
            let size_ok = (16..=7680).contains(&r.width) && (16..=4320).contains(&r.height);
            if !size_ok || r.width % 2 != 0 || r.height % 2 != 0 {
                return bad(format!(
                    "{}: size {}x{} is not usable",
                    r.name, r.width, r.height
                ));
            }
            if !(50..=100_000).contains(&r.video_kbps) {
                return bad(format!("{}: {} kbit/s is not usable", r.name, r.video_kbps));
            }
            if r.level(self.fps).is_none() {
                return bad(format!("{}: beyond H.264 level 5.2", r.name));
            }
        }
        Ok(())
    }

    /// The master playlist's entries: the video renditions in the given order (each
    /// with the shared audio), then the audio-only one. BANDWIDTH is the encoders'
    /// bitrates plus 10 % for MPEG-TS overhead and rate control swings.
    pub fn variants(&self) -> Vec<Variant> {
        let with_overhead = |kbps: u32| u64::from(kbps) * 1000 * 11 / 10;
        let mut variants: Vec<Variant> = self
            .renditions
            .iter()
            .map(|r| Variant {
                uri: format!("{}/{PLAYLIST}", r.name),
                bandwidth: with_overhead(r.video_kbps + AUDIO_KBPS),
                resolution: Some((r.width, r.height)),
                codecs: format!("{},{AAC_LC}", avc1_high(r.level(self.fps).unwrap_or(52))),
            })
            .collect();
        variants.push(Variant {
            uri: format!("{AUDIO_RENDITION}/{PLAYLIST}"),
            bandwidth: with_overhead(AUDIO_KBPS),
            resolution: None,
            codecs: AAC_LC.into(),
        });
        variants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::render_master;

    #[test]
    fn defaults_follow_the_brief() {
        let s = HlsSettings::new("/tmp/x", 30);
        assert_eq!(s.segment, Duration::from_secs(1));
        assert_eq!((s.window, s.dvr_window), (6, None));
        assert_eq!(s.renditions, Rendition::default_ladder());
        assert_eq!(s.keyframe_interval(), 30);
        assert_eq!((s.playlist_length(), s.max_files()), (6, 13));
        let dvr = HlsSettings {
            dvr_window: Some(30),
            ..s
        };
        assert_eq!(dvr.playlist_length(), 36);
        assert!(dvr.validate().is_ok());
    }

    #[test]
    fn the_master_playlist_announces_the_ladder_and_audio() {
        let text = render_master(&HlsSettings::new("/tmp/x", 30).variants());
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2890800,RESOLUTION=1280x720,\
             CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1020800,RESOLUTION=640x360,\
             CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=140800,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let ok = HlsSettings::new("/tmp/x", 30);
        let cases: Vec<(&str, HlsSettings)> = vec![
            ("directory", HlsSettings::new("/tmp/50%d", 30)),
            (
                "frame rate",
                HlsSettings {
                    fps: 0,
                    ..ok.clone()
                },
            ),
            (
                "segment",
                HlsSettings {
                    segment: Duration::from_millis(1500),
                    ..ok.clone()
                },
            ),
            (
                "segment",
                HlsSettings {
                    segment: Duration::ZERO,
                    ..ok.clone()
                },
            ),
            (
                "window",
                HlsSettings {
                    window: 2,
                    ..ok.clone()
                },
            ),
            (
                "delay",
                HlsSettings {
                    delay: Some(Duration::ZERO),
                    ..ok.clone()
                },
            ),
            (
                "encoded audio",
                HlsSettings {
                    delay: Some(Duration::from_secs(2)),
                    encoded_audio: true,
                    ..ok.clone()
                },
            ),
            (
                "delay",
                HlsSettings {
                    delay: Some(Duration::from_secs(61)),
                    ..ok.clone()
                },
            ),
            (
                "no video",
                HlsSettings {
                    renditions: vec![],
                    ..ok.clone()
                },
            ),
            (
                "name",
                HlsSettings {
                    renditions: vec![Rendition::new("audio", 640, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "name",
                HlsSettings {
                    renditions: vec![Rendition::new("../x", 640, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "twice",
                HlsSettings {
                    renditions: vec![
                        Rendition::new("a", 640, 360, 800),
                        Rendition::new("a", 320, 180, 400),
                    ],
                    ..ok.clone()
                },
            ),
            (
                "size",
                HlsSettings {
                    renditions: vec![Rendition::new("odd", 641, 360, 800)],
                    ..ok.clone()
                },
            ),
            (
                "kbit/s",
                HlsSettings {
                    renditions: vec![Rendition::new("a", 640, 360, 0)],
                    ..ok.clone()
                },
            ),
            (
                "segment prefix",
                HlsSettings {
                    segment_prefix: "%d/..".into(),
                    ..ok.clone()
                },
            ),
            (
                "segment prefix",
                HlsSettings {
                    segment_prefix: String::new(),
                    ..ok.clone()
                },
            ),
        ];
        for (why, s) in cases {
            let e = s.validate().expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
