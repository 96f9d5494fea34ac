//! The first segment of a playlist carries both streams.
//!
//! Players build their media buffers from the first segment they load: hls.js makes
//! one `SourceBuffer` per track it finds there and fails with `bufferAppendError`
//! ("Attempting to append to the audio SourceBuffer, but it does not exist") when a
//! later segment brings audio the first one lacked; Safari's own player does no
//! better. `mpegtsmux` starts with what it has, and on a busy machine the audio
//! encoder's first frame can come after the first video keyframe. So a muxer's video
//! is held until its audio has arrived, and then starts at the next keyframe (asked
//! for at once; the natural one at most a keyframe interval later where nothing
//! upstream answers the request). The wait for audio is bounded ([`AUDIO_WAIT`]): a
//! livestream whose audio does not come still gets its video.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// How long a muxer's video waits for its audio (from its first video buffer).
pub(super) const AUDIO_WAIT: Duration = Duration::from_secs(2);

/// Hold `video` (a sink pad in front of one muxer) until a buffer passed `audio`
/// (the sink pad of the same muxer's audio), or [`AUDIO_WAIT`] went by, and the video
/// has a keyframe.
pub(super) fn video_waits_for_audio(video: &gst::Pad, audio: &gst::Pad) {
    let audio_seen = Arc::new(AtomicBool::new(false));
    let seen = audio_seen.clone();
    audio.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        seen.store(true, Ordering::Release);
        gst::PadProbeReturn::Remove
    });
    let asked = AtomicBool::new(false);
    let first_video = OnceLock::new();
    video.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let since = first_video.get_or_init(Instant::now).elapsed();
        if !audio_seen.load(Ordering::Acquire) {
            if since < AUDIO_WAIT {
                // `Handled`, not `Drop`: gstreamer-rs has already taken the buffer, and
                // GStreamer 1.22 would unref the NULL left behind (a CRITICAL).
                return gst::PadProbeReturn::Handled;
            }
            if !audio_seen.swap(true, Ordering::AcqRel) {
                tracing::warn!(pad = %pad.name(), "no audio for the livestream yet: its video starts without");
            }
        }
        let delta = info
            .buffer()
            .is_some_and(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        if !delta {
            return gst::PadProbeReturn::Remove;
        }
        if !asked.swap(true, Ordering::AcqRel) {
            // Not from the streaming thread that is inside this probe.
            if let Some(queue) = pad.parent_element() {
                let pad = pad.clone();
                queue.call_async(move |_| {
                    let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                        .all_headers(true)
                        .build();
                    pad.push_event(event);
                });
            }
        }
        gst::PadProbeReturn::Handled
    });
}
