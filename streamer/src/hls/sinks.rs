//! Where the files are written: one `hlssink2` per rendition (and the audio-only
//! one) in `DIR/{rendition}/`, each input behind its own guard so a stuck sink stalls
//! only its playlist, and the master playlist written atomically.
//!
//! Must not: build encoders or decide the ladder (the bin and the settings do).

use std::path::Path;
use std::time::Duration;

use gremium_pipelines::{make, PipelineError};
use gst::prelude::*;

use super::drain::DrainBin;
use super::{err, io_err, HlsSettings, PLAYLIST};
use crate::StreamerError;

/// The `hlssink2` of one rendition, writing into `DIR/{name}/`.
pub(super) fn hls_sink(s: &HlsSettings, name: &str) -> Result<gst::Element, StreamerError> {
    let dir = s.dir.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // Checked UTF-8 by `validate`; the joined parts are ASCII.
    let path = |file: &str| dir.join(file).to_string_lossy().to_string();
    let sink = make("hlssink2", Some(&format!("hls-{name}")))?;
    sink.set_property("location", path(&format!("{}%05d.ts", s.segment_prefix)));
    sink.set_property("playlist-location", path(PLAYLIST));
    sink.set_property("target-duration", s.segment.as_secs() as u32);
    sink.set_property("playlist-length", s.playlist_length());
    sink.set_property("max-files", s.max_files());
    sink.set_property("send-keyframe-requests", true);
    Ok(sink)
}

/// A new request pad (`video` or `audio`) of an `hlssink2`, behind a guard added to
/// `bin` — `queue (leaky, `hold`) !` [`FlowGuard`](gremium_pipelines::guard::FlowGuard)
/// — whose sink pad is returned. A sink that cannot write (a full disk) returns a
/// flow error, or its muxer stops taking data; unguarded, either would travel up the
/// tees and stop the encoders the RTMP pushes share and the audio every output
/// shares. The guard turns the error (or an EOS) into OK and drops what a stuck sink
/// does not take, so only that playlist stalls; the error is still posted, and
/// reported by the bin. The queue is the branch's own thread, so one muxer waiting
/// for its other stream never holds up the others. Caps problems still fail the link.
pub(super) fn guarded_sink_pad(
    bin: &DrainBin,
    sink: &gst::Element,
    pad: &str,
    hold: Duration,
) -> Result<gst::Pad, PipelineError> {
    let target = sink
        .request_pad_simple(pad)
        .ok_or_else(|| PipelineError::Link(format!("{} has no {pad} pad", sink.name())))?;
    let queue = make("queue", Some(&format!("{}-{pad}-queue", sink.name())))?;
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", hold.as_nanos() as u64);
    queue.set_property_from_str("leaky", "downstream");
    let guard: gst::Element =
        gremium_pipelines::guard::FlowGuard::new(Some(&format!("{}-{pad}-guard", sink.name())))
            .upcast();
    bin.add_many([&queue, &guard]).map_err(err)?;
    queue.link(&guard).map_err(err)?;
    guard
        .static_pad("src")
        .ok_or_else(|| PipelineError::Link("guard has no src pad".into()))?
        .link(&target)
        .map_err(|e| PipelineError::Link(format!("{} ! {}: {e:?}", guard.name(), sink.name())))?;
    queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("queue has no sink pad".into()))
}

/// Link `from`'s src pad to a new, guarded request pad (`video` or `audio`) of an
/// `hlssink2` (see [`guarded_sink_pad`]).
pub(super) fn link_to_sink(
    bin: &DrainBin,
    from: &gst::Element,
    sink: &gst::Element,
    pad: &str,
    hold: Duration,
) -> Result<gst::Pad, PipelineError> {
    let target = guarded_sink_pad(bin, sink, pad, hold)?;
    from.static_pad("src")
        .ok_or_else(|| PipelineError::Link(format!("{} has no src pad", from.name())))?
        .link(&target)
        .map_err(|e| PipelineError::Link(format!("{} ! {}: {e:?}", from.name(), sink.name())))?;
    Ok(target)
}

/// A branch of the shared AAC into an `hlssink2` (through its guard, which is also
/// the branch's own queue); the branch's sink pad.
pub(super) fn link_audio(
    bin: &DrainBin,
    atee: &gst::Element,
    sink: &gst::Element,
    hold: Duration,
) -> Result<gst::Pad, PipelineError> {
    let target = guarded_sink_pad(bin, sink, "audio", hold)?;
    let src = atee
        .request_pad_simple("src_%u")
        .ok_or_else(|| PipelineError::Link("audio-tee has no src pad".into()))?;
    src.link(&target)
        .map_err(|e| PipelineError::Link(format!("audio-tee ! {}: {e:?}", sink.name())))?;
    Ok(target)
}

/// Write the master playlist so a reader sees the old or the new file, never half.
pub(super) fn write_master(dir: &Path, text: &str) -> Result<(), StreamerError> {
    let tmp = dir.join(format!(".{PLAYLIST}.tmp"));
    let path = dir.join(PLAYLIST);
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}
