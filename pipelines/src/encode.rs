//! The one H.264 and the one AAC encode configuration of program outputs.
//!
//! The recording, the HLS renditions, the RTMP pushes and the media plane's shared
//! program encoders all build their video encode here, so two encoders with the same
//! [`H264`] settings produce the same stream parameters (same SPS/PPS, same caps):
//! that is what lets the media plane switch a livestream between its own encoder and
//! the recording's at a keyframe without the muxers downstream noticing. The audio
//! encode ([`aac_chain`]) has a single configuration for the same reason.

use gst::prelude::*;

use crate::{capsfilter, link_chain, make, PipelineError};

/// Settings of a program's H.264 encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264 {
    /// Target bitrate in kbit/s.
    pub kbps: u32,
    /// A keyframe at least every this many frames.
    pub keyframe_interval: u32,
}

/// The elements of one encode, linked, added to `bin`:
/// `x264enc ! video/x-h264,profile=high ! h264parse`, named `{prefix}-enc`,
/// `{prefix}-profile` and `{prefix}-parse` (put a queue in front: the encoder should
/// run on a thread of its own). x264 runs `veryfast`
/// with `zerolatency` (no lookahead, no B-frames: a live output must not wait for
/// future frames, and a recording's first keyframe must be on disk within a second)
/// and diamond motion search (`me=dia`, as `superfast` has): encoding the
/// benchmark's reference composite from a file it costs 13 % less CPU than
/// `veryfast`'s hexagon search at the same PSNR (see the README's recording
/// benchmark); the profile is forced so an HLS master playlist's `CODECS` holds;
/// `h264parse` repeats SPS/PPS before every keyframe so each segment or fragment
/// decodes on its own. Returns `[x264enc, capsfilter, h264parse]`.
pub fn h264_chain(
    bin: &impl IsA<gst::Bin>,
    prefix: &str,
    s: &H264,
) -> Result<[gst::Element; 3], PipelineError> {
    let enc = make("x264enc", Some(&format!("{prefix}-enc")))?;
    enc.set_property_from_str("tune", "zerolatency");
    enc.set_property_from_str("speed-preset", "veryfast");
    // Through the option string: applied after the preset and tune.
    enc.set_property("option-string", "me=dia");
    // One thread: encoding the reference composite from a file, 12-20 % less CPU
    // than zerolatency's two sliced threads, and no slices (+0.04 dB); in the live
    // reference job ~4 % less (paired runs). A 720p frame takes ~8 ms, well within a
    // 30 fps frame time; the media plane's other encoders, mixers and decoders run
    // on threads of their own.
    enc.set_property("threads", 1u32);
    enc.set_property("bitrate", s.kbps);
    // A 2 s rate-control buffer (x264enc's default is 600 ms), as `-bufsize` = twice
    // `-maxrate` in ffmpeg and the RTMP platforms' usual advice: at the same bitrate
    // +0.2 dB PSNR on the reference composite, the same as ffmpeg's libx264.
    enc.set_property("vbv-buf-capacity", 2000u32);
    enc.set_property("key-int-max", s.keyframe_interval.max(1));
    let profile = capsfilter(
        gst::Caps::builder("video/x-h264")
            .field("profile", "high")
            .build(),
    )?;
    profile.set_property("name", format!("{prefix}-profile"));
    let parse = make("h264parse", Some(&format!("{prefix}-parse")))?;
    parse.set_property("config-interval", -1i32);
    bin.add_many([&enc, &profile, &parse])
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    link_chain(&[&enc, &profile, &parse])?;
    Ok([enc, profile, parse])
}

/// Bitrate of every program's AAC encode, in kbit/s.
pub const AAC_KBPS: u32 = 128;

/// The elements of one AAC encode, linked, added to `bin`:
/// `audioconvert ! avenc_aac ! aacparse`, named `{prefix}-convert`, `{prefix}-enc`
/// and `{prefix}-parse` (put a queue in front). AAC-LC at [`AAC_KBPS`], raw
/// (not ADTS) unless downstream asks for ADTS: MP4 and FLV want raw, MPEG-TS takes
/// either. Returns `[audioconvert, avenc_aac, aacparse]`.
pub fn aac_chain(
    bin: &impl IsA<gst::Bin>,
    prefix: &str,
) -> Result<[gst::Element; 3], PipelineError> {
    let conv = make("audioconvert", Some(&format!("{prefix}-convert")))?;
    let enc = make("avenc_aac", Some(&format!("{prefix}-enc")))?;
    enc.set_property("bitrate", (AAC_KBPS * 1000) as i32);
    let parse = make("aacparse", Some(&format!("{prefix}-parse")))?;
    bin.add_many([&conv, &enc, &parse])
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    link_chain(&[&conv, &enc, &parse])?;
    Ok([conv, enc, parse])
}

/// Is this buffer a keyframe (not a delta unit)?
pub fn is_keyframe(buffer: &gst::BufferRef) -> bool {
    !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
}

/// Ask the encoder upstream of `sink` (a sink pad downstream of it) for a keyframe.
pub fn request_keyframe_upstream(sink: &gst::Pad) -> bool {
    sink.push_event(
        gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build(),
    )
}
