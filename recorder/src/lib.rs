//! Recording sessions of the recording-audience program.
//!
//! Owns: the recording bin (H.264 + AAC in fragmented MP4, 1 s fragments, so a crash
//! loses at most the fragment being written and what was written plays), its
//! finalization (EOS with a watchdog), and — from the rest of the recording issue on —
//! the manifest with its consent timeline, encryption, hand-off to storage and
//! post-processing (ffmpeg-sidecar).
//!
//! Must not: talk HTTP or SQL, know meetings. The media plane attaches a
//! [`RecordingBin`] to a program as a consumer and finishes it.
//!
//! Status: recording to a local file works (start, stop with finalization, ffprobe-
//! valid output). Not yet: encryption at rest, object storage, manifest, crash
//! recovery of an unfinished file, post-processing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gremium_pipelines::{link_chain, make, PipelineError};
use gst::prelude::*;

/// How a recording is encoded.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Output file (fragmented MP4).
    pub path: PathBuf,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Program frame rate (for the keyframe interval).
    pub fps: u32,
    /// Fragment length: the most a crash can lose.
    pub fragment: Duration,
}

/// A consumer bin with ghost sink pads `video` (raw I420) and `audio` (raw S16LE)
/// writing a fragmented MP4.
pub struct RecordingBin {
    bin: gst::Bin,
    path: PathBuf,
    eos: tokio::sync::watch::Receiver<bool>,
}

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Link(e.to_string())
}

impl RecordingBin {
    /// Build the bin (not yet added anywhere).
    pub fn new(s: &RecordingSettings) -> Result<RecordingBin, PipelineError> {
        let name = s
            .path
            .file_stem()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "recording".into());
        let bin = gst::Bin::with_name(&format!("recording-{name}"));

        let vqueue = make("queue", None)?;
        let venc = make("x264enc", None)?;
        venc.set_property_from_str("tune", "zerolatency");
        venc.set_property_from_str("speed-preset", "veryfast");
        venc.set_property("bitrate", s.video_kbps);
        // A keyframe every two seconds: fragments start on one, players can seek.
        venc.set_property("key-int-max", (s.fps * 2).max(1));
        let vparse = make("h264parse", None)?;

        let aqueue = make("queue", None)?;
        let aconv = make("audioconvert", None)?;
        let aenc = make("avenc_aac", None)?;
        aenc.set_property("bitrate", 128_000i32);
        let aparse = make("aacparse", None)?;

        let mux = make("mp4mux", None)?;
        mux.set_property("fragment-duration", s.fragment.as_millis() as u32);
        let sink = make("filesink", None)?;
        sink.set_property("location", s.path.to_string_lossy().to_string());
        // Every write goes to the kernel at once: a killed process loses no buffered data.
        sink.set_property_from_str("buffer-mode", "unbuffered");

        bin.add_many([
            &vqueue, &venc, &vparse, &aqueue, &aconv, &aenc, &aparse, &mux, &sink,
        ])
        .map_err(err)?;
        link_chain(&[&vqueue, &venc, &vparse])?;
        link_chain(&[&aqueue, &aconv, &aenc, &aparse])?;
        vparse.link(&mux).map_err(err)?;
        aparse.link(&mux).map_err(err)?;
        mux.link(&sink).map_err(err)?;

        for (name, el) in [("video", &vqueue), ("audio", &aqueue)] {
            let target = el
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link("queue".into()))?;
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(err)?
                .name(name)
                .build();
            bin.add_pad(&ghost).map_err(err)?;
        }
        // The file is complete once EOS reaches the sink: mp4mux writes its last
        // fragment before passing EOS on.
        let (tx, eos) = tokio::sync::watch::channel(false);
        sink.static_pad("sink")
            .ok_or_else(|| PipelineError::Link("filesink".into()))?
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if e.type_() == gst::EventType::Eos {
                        let _ = tx.send(true);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        Ok(RecordingBin {
            bin,
            path: s.path.clone(),
            eos,
        })
    }

    /// The bin to attach (pads `video` and `audio`).
    pub fn bin(&self) -> &gst::Bin {
        &self.bin
    }

    /// Where the recording is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finish: EOS into both inputs (the caller detached them from the program
    /// first), then wait until the file is complete, at most `watchdog`.
    pub async fn finish(&self, watchdog: Duration) -> Result<(), PipelineError> {
        for name in ["video", "audio"] {
            if let Some(pad) = self.bin.static_pad(name) {
                pad.send_event(gst::event::Eos::new());
            }
        }
        let mut eos = self.eos.clone();
        let done = tokio::time::timeout(watchdog, eos.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        if done {
            Ok(())
        } else {
            Err(PipelineError::PipelineFrozen { dot_file: None })
        }
    }
}
