//! HLS playlists as plain values, no IO: the master playlist we render, the media
//! playlists `hlssink2` writes (parsed and checked against RFC 8216), and the codec
//! strings a master playlist announces.

/// One `#EXT-X-STREAM-INF` entry of a master playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Media playlist, relative to the master playlist.
    pub uri: String,
    /// Peak bits per second of the variant (all its streams, with overhead).
    pub bandwidth: u64,
    /// Video size; `None` for an audio-only variant.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
}

/// The master playlist text: version 3, every segment independent (each starts with
/// a keyframe), one entry per variant in the given order.
pub fn render_master(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        out.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth));
        if let Some((w, h)) = v.resolution {
            out.push_str(&format!(",RESOLUTION={w}x{h}"));
        }
        out.push_str(&format!(",CODECS=\"{}\"\n{}\n", v.codecs, v.uri));
    }
    out
}

/// The AAC-LC codec string (what `avenc_aac` produces).
pub const AAC_LC: &str = "mp4a.40.2";

/// The RFC 6381 string of H.264 High profile at `level_idc` (e.g. 31 → `avc1.64001f`).
pub fn avc1_high(level_idc: u8) -> String {
    format!("avc1.6400{level_idc:02x}")
}

/// H.264 levels (Table A-1): level_idc, MaxMBPS, MaxFS, MaxDpbMbs, MaxBR (kbit/s,
/// Baseline/Main; High allows 5/4 of it).
const LEVELS: &[(u8, u64, u64, u64, u64)] = &[
    (10, 1_485, 99, 396, 64),
    (11, 3_000, 396, 900, 192),
    (12, 6_000, 396, 2_376, 384),
    (13, 11_880, 396, 2_376, 768),
    (20, 11_880, 396, 2_376, 2_000),
    (21, 19_800, 792, 4_752, 4_000),
    (22, 20_250, 1_620, 8_100, 4_000),
    (30, 40_500, 1_620, 8_100, 10_000),
    (31, 108_000, 3_600, 18_000, 14_000),
    (32, 216_000, 5_120, 20_480, 20_000),
    (40, 245_760, 8_192, 32_768, 20_000),
    (41, 245_760, 8_192, 32_768, 50_000),
    (42, 522_240, 8_704, 34_816, 50_000),
    (50, 589_824, 22_080, 110_400, 135_000),
    (51, 983_040, 36_864, 184_320, 240_000),
    (52, 2_073_600, 36_864, 184_320, 240_000),
];

/// The lowest High-profile level an encode of this size, rate and bitrate fits, as
/// x264 picks it on its own (one reference frame, as with `speed-preset=veryfast`).
/// `None` above level 5.2.
pub fn h264_high_level(width: u32, height: u32, fps: u32, kbps: u32) -> Option<u8> {
    let mbs_w = u64::from(width).div_ceil(16);
    let mbs_h = u64::from(height).div_ceil(16);
    let frame = mbs_w * mbs_h;
    let per_second = frame * u64::from(fps);
    LEVELS
        .iter()
        .find(|&&(_, max_mbps, max_fs, max_dpb, max_br)| {
            // Neither side may exceed sqrt(8 * MaxFS) macroblocks (A.3.1 f, g).
            let side_ok = mbs_w * mbs_w <= 8 * max_fs && mbs_h * mbs_h <= 8 * max_fs;
            frame <= max_fs
                && side_ok
                && per_second <= max_mbps
                && frame <= max_dpb
                && u64::from(kbps) * 4 <= max_br * 5
        })
        .map(|&(idc, ..)| idc)
}

/// One media segment of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// `#EXTINF` duration in seconds.
    pub duration: f64,
    /// Segment URI, relative to the playlist.
    pub uri: String,
}

/// A media playlist as read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION` in seconds.
    pub target_duration: u64,
    /// `#EXT-X-MEDIA-SEQUENCE`: number of the first listed segment.
    pub media_sequence: u64,
    /// Listed segments, oldest first.
    pub segments: Vec<Segment>,
    /// `#EXT-X-ENDLIST` present: the presentation is over.
    pub ended: bool,
}

impl MediaPlaylist {
    /// Parse and check a media playlist: `#EXTM3U` first, a target duration and a
    /// media sequence, at least one segment, every `#EXTINF` followed by its URI and,
    /// rounded to the nearest integer, at most the target duration (RFC 8216 4.3.3.1).
    pub fn parse(text: &str) -> Result<MediaPlaylist, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err("the first line is not #EXTM3U".into());
        }
        let mut target = None;
        let mut sequence = None;
        let mut segments = Vec::new();
        let mut pending = None::<f64>;
        let mut ended = false;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                let t = v
                    .parse::<u64>()
                    .map_err(|_| format!("bad target duration {v:?}"))?;
                if target.replace(t).is_some() {
                    return Err("more than one #EXT-X-TARGETDURATION".into());
                }
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                let n = v
                    .parse::<u64>()
                    .map_err(|_| format!("bad media sequence {v:?}"))?;
                if sequence.replace(n).is_some() {
                    return Err("more than one #EXT-X-MEDIA-SEQUENCE".into());
                }
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v.split(',').next().unwrap_or_default();
                let d = d
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or_else(|| format!("bad segment duration {v:?}"))?;
                if pending.replace(d).is_some() {
                    return Err(format!("#EXTINF:{v} follows an #EXTINF without URI"));
                }
            } else if line == "#EXT-X-ENDLIST" {
                ended = true;
            } else if line.starts_with('#') {
                // Other tags and comments do not change what is checked here.
            } else {
                let duration = pending
                    .take()
                    .ok_or_else(|| format!("segment {line:?} has no #EXTINF"))?;
                segments.push(Segment {
                    duration,
                    uri: line.to_string(),
                });
            }
        }
        if pending.is_some() {
            return Err("the last #EXTINF has no URI".into());
        }
        let target_duration = target.ok_or("no #EXT-X-TARGETDURATION")?;
        let media_sequence = sequence.ok_or("no #EXT-X-MEDIA-SEQUENCE")?;
        if segments.is_empty() {
            return Err("no segments listed".into());
        }
        if let Some(s) = segments
            .iter()
            .find(|s| s.duration.round() > target_duration as f64)
        {
            return Err(format!(
                "segment {} lasts {} s, more than the target duration {target_duration} s",
                s.uri, s.duration
            ));
        }
        Ok(MediaPlaylist {
            target_duration,
            media_sequence,
            segments,
            ended,
        })
    }
}

/// Whether `text` is a media playlist players accept (see [`MediaPlaylist::parse`]).
pub fn playlist_is_valid(text: &str) -> Result<(), String> {
    MediaPlaylist::parse(text).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hlssink2 1.22 writes (integer and float durations, no final newline).
    const WRITTEN: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:2\n\
        #EXT-X-TARGETDURATION:1\n\n#EXTINF:1,\nseg00002.ts\n\
        #EXTINF:1.0333333015441895,\nseg00003.ts\n#EXTINF:0.4666,\nseg00004.ts\n\
        #EXT-X-ENDLIST";

    #[test]
    fn a_playlist_as_hlssink2_writes_it_parses() {
        let p = MediaPlaylist::parse(WRITTEN).unwrap();
        assert_eq!(p.target_duration, 1);
        assert_eq!(p.media_sequence, 2);
        assert!(p.ended);
        let uris: Vec<_> = p.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["seg00002.ts", "seg00003.ts", "seg00004.ts"]);
        assert_eq!(p.segments[1].duration, 1.0333333015441895);
        assert_eq!(playlist_is_valid(WRITTEN), Ok(()));
    }

    #[test]
    fn a_live_playlist_is_not_ended() {
        let live = WRITTEN.replace("#EXT-X-ENDLIST", "");
        assert!(!MediaPlaylist::parse(&live).unwrap().ended);
    }

    #[test]
    fn durations_round_to_the_nearest_integer_against_the_target() {
        let with = |d: &str| {
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:{d},\na.ts\n"
            )
        };
        assert_eq!(playlist_is_valid(&with("1.49")), Ok(()));
        assert!(playlist_is_valid(&with("1.5"))
            .unwrap_err()
            .contains("a.ts"));
        assert!(playlist_is_valid(&with("2")).is_err());
    }

    #[test]
    fn broken_playlists_are_refused_with_the_reason() {
        let cases = [
            ("", "#EXTM3U"),
            ("#EXT-X-TARGETDURATION:1\n#EXTM3U\n", "#EXTM3U"),
            (
                "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1,\na.ts\n",
                "TARGETDURATION",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\na.ts\n",
                "MEDIA-SEQUENCE",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n",
                "no segments",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:x\n#EXT-X-MEDIA-SEQUENCE:0\n",
                "target duration",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\na.ts\n",
                "no #EXTINF",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1,\n",
                "no URI",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:-1,\na.ts",
                "duration",
            ),
        ];
        for (text, why) in cases {
            let e = playlist_is_valid(text).expect_err(text);
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_master_playlist_lists_every_variant() {
        let text = render_master(&[
            Variant {
                uri: "720p/index.m3u8".into(),
                bandwidth: 2_890_800,
                resolution: Some((1280, 720)),
                codecs: format!("{},{AAC_LC}", avc1_high(31)),
            },
            Variant {
                uri: "audio/index.m3u8".into(),
                bandwidth: 140_800,
                resolution: None,
                codecs: AAC_LC.into(),
            },
        ]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2890800,RESOLUTION=1280x720,\
             CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=140800,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
    }

    /// Levels x264 1.22's x264enc picked (checked with ffprobe) at 30 fps.
    #[test]
    fn levels_match_what_x264_picks() {
        assert_eq!(h264_high_level(426, 240, 30, 400), Some(21));
        assert_eq!(h264_high_level(640, 360, 30, 800), Some(30));
        assert_eq!(h264_high_level(854, 480, 30, 1200), Some(31));
        assert_eq!(h264_high_level(1280, 720, 30, 2500), Some(31));
        assert_eq!(h264_high_level(1280, 720, 60, 4500), Some(32));
        assert_eq!(h264_high_level(1920, 1080, 30, 5000), Some(40));
        assert_eq!(h264_high_level(7680, 4320, 60, 5000), None);
        assert_eq!(avc1_high(30), "avc1.64001e");
    }
}
