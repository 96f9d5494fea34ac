//! Recording sessions of the recording-audience program.
//!
//! Owns: the recording bin (H.264 + AAC in fragmented MP4, fragments of 400 ms as the media plane sets them, written as
//! an encrypted spool — no plaintext byte of a recording touches the disk — so a crash
//! loses at most the fragment being written and what was written plays), its
//! finalization (EOS with a watchdog), and post-processing ([`finalize`]: seal the
//! spool into the stored object, validate with ffmpeg via ffmpeg-sidecar, make the
//! poster, hand both to the object store; its failures are [`RecorderError`]s that
//! name the step). Crash recovery runs the same
//! [`finalize`] on a spool left behind. A failed spool write (a full disk) closes the
//! spool at its last whole record and is reported at once
//! ([`RecordingBin::interruptions`]); the media plane then stops the recording, which
//! keeps what was written.
//!
//! Must not: talk HTTP or SQL, know meetings. The media plane attaches a
//! [`RecordingBin`] to a program as a consumer and finishes it; keys come from the
//! control plane.
//!
//! The bin encodes its own video and audio ([`gremium_pipelines::encode`]) or, with
//! [`RecordingSettings::encoded_input`] and [`RecordingSettings::encoded_audio`],
//! takes the H.264 and the AAC of encoders the media plane shares with a livestream
//! of the same audience.

mod error;
pub mod finalize;

pub use error::{FfmpegStep, RecorderError, StoredObject};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use gremium_pipelines::encode::H264;
use gremium_pipelines::encode::{aac_chain, h264_chain};
use gremium_pipelines::{make, PipelineError};
use gremium_vault::crypto::{DataKey, SpoolWriter};
use gst::prelude::*;

/// How a recording is encoded.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Spool file: the fragmented MP4, encrypted record by record.
    pub path: PathBuf,
    /// The recording's data key.
    pub key: DataKey,
    /// Context authenticated with every record (see `gremium_vault::context`).
    pub context: Vec<u8>,
    /// The H.264 encode (bitrate, keyframe interval).
    pub video: H264,
    /// The video pad is `video_h264` and takes H.264 (byte-stream, from an encoder
    /// the media plane shares) instead of raw video; the bin then encodes no video
    /// itself.
    pub encoded_input: bool,
    /// The audio pad is `audio_aac` and takes AAC (from an encoder the media plane
    /// shares, [`gremium_pipelines::encode::aac_chain`]) instead of raw audio.
    pub encoded_audio: bool,
    /// Fragment length: the most a crash can lose.
    pub fragment: Duration,
}

/// A consumer bin with ghost sink pads `video` (raw I420; `video_h264` taking H.264
/// instead with [`RecordingSettings::encoded_input`]) and `audio` (raw S16LE;
/// `audio_aac` taking AAC with [`RecordingSettings::encoded_audio`]) writing a
/// fragmented MP4 into an encrypted spool.
pub struct RecordingBin {
    bin: gst::Bin,
    path: PathBuf,
    eos: tokio::sync::watch::Receiver<bool>,
    /// Set once, when writing the spool failed (see [`RecordingBin::interruptions`]).
    write_error: tokio::sync::watch::Receiver<Option<String>>,
    key: DataKey,
    first_fragment: Arc<Mutex<Option<Duration>>>,
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

        // Fragments start on a keyframe; players seek to them.
        let vqueue = make("queue", Some("video-queue"))?;
        bin.add(&vqueue).map_err(err)?;
        let vparse = if s.encoded_input {
            let p = make("h264parse", Some("video-parse"))?;
            bin.add(&p).map_err(err)?;
            p
        } else {
            let [enc, _, p] = h264_chain(&bin, "video", &s.video)?;
            vqueue.link(&enc).map_err(err)?;
            p
        };
        if s.encoded_input {
            vqueue.link(&vparse).map_err(err)?;
        }

        let aqueue = make("queue", Some("audio-queue"))?;
        bin.add(&aqueue).map_err(err)?;
        let aparse = if s.encoded_audio {
            let p = make("aacparse", Some("audio-parse"))?;
            bin.add(&p).map_err(err)?;
            aqueue.link(&p).map_err(err)?;
            p
        } else {
            let [conv, _, p] = aac_chain(&bin, "audio")?;
            aqueue.link(&conv).map_err(err)?;
            p
        };

        let mux = make("mp4mux", None)?;
        mux.set_property("fragment-duration", s.fragment.as_millis() as u32);
        // Nothing is rewritten at the end: moov (with mvex) first, then moof/mdat
        // pairs, so every byte can go to the spool as it comes.
        mux.set_property("streamable", true);
        // Not async: a sink added to the running (live) meeting pipeline must not wait
        // in preroll for a PLAYING that an async state change may never deliver —
        // seen in CI: mp4mux blocked in the sink's preroll, the program's pushes
        // backed up behind it, and stopping the recording hung on the output's
        // stream lock.
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .async_(false)
            .max_buffers(0)
            .build();
        let spool = Arc::new(Mutex::new(
            SpoolWriter::create(&s.path, &s.key, &s.context)
                .map_err(|e| PipelineError::Link(format!("spool {}: {e}", s.path.display())))?,
        ));
        let (failed, write_error) = tokio::sync::watch::channel(None::<String>);
        // The file is complete once EOS reaches the sink: mp4mux writes its last
        // fragment before passing EOS on.
        let (tx, eos) = tokio::sync::watch::channel(false);
        let created = std::time::Instant::now();
        let first_fragment = Arc::new(Mutex::new(None::<Duration>));
        let first = first_fragment.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        // The first `moof` on disk: the first keyframe is playable.
                        if map.len() >= 8 && &map[4..8] == b"moof" {
                            first
                                .lock()
                                .expect("first lock")
                                .get_or_insert_with(|| created.elapsed());
                        }
                        // One sealed record per muxer buffer, in the kernel before
                        // the next: a killed process leaves whole records behind.
                        let mut spool = spool.lock().expect("spool lock");
                        // After a failed write the spool is closed (cut back to its
                        // last whole record): what follows is dropped, and the
                        // meeting's pipeline must not stop for a full disk. The
                        // first failure is reported at once; the media plane ends
                        // the recording then.
                        if spool.closed().is_none() {
                            if let Err(e) = spool.append(&map) {
                                let secs = created.elapsed().as_secs_f64();
                                failed.send_replace(Some(format!(
                                    "writing the spool failed after {secs:.1} s: {e}"
                                )));
                            }
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| {
                    let _ = tx.send(true);
                })
                .build(),
        );
        let sink: gst::Element = sink.upcast();

        bin.add_many([&mux, &sink]).map_err(err)?;
        vparse.link(&mux).map_err(err)?;
        aparse.link(&mux).map_err(err)?;
        mux.link(&sink).map_err(err)?;

        let video_pad = if s.encoded_input {
            "video_h264"
        } else {
            "video"
        };
        let audio_pad = if s.encoded_audio {
            "audio_aac"
        } else {
            "audio"
        };
        for (name, el) in [(video_pad, &vqueue), (audio_pad, &aqueue)] {
            let target = el
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link("queue".into()))?;
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(err)?
                .name(name)
                .build();
            bin.add_pad(&ghost).map_err(err)?;
        }
        Ok(RecordingBin {
            bin,
            path: s.path.clone(),
            eos,
            write_error,
            key: s.key.clone(),
            first_fragment,
        })
    }

    /// The bin to attach (pads `video` or `video_h264`, and `audio` or `audio_aac`).
    pub fn bin(&self) -> &gst::Bin {
        &self.bin
    }

    /// Time from building the bin to its first fragment (which starts with a
    /// keyframe) reaching the spool; `None` before that.
    pub fn first_fragment_after(&self) -> Option<Duration> {
        *self.first_fragment.lock().expect("first lock")
    }

    /// The data key the spool is encrypted with.
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// The spool the recording is written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds the reason once writing the spool failed (a full disk, an I/O error).
    /// The spool then holds every whole fragment written before, and nothing after:
    /// the recording should be stopped and finalized, which keeps that part. The
    /// sender goes with the bin, so a waiter ends when the bin does.
    pub fn interruptions(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.write_error.clone()
    }

    /// Finish: EOS into both inputs (the caller detached them from the program
    /// first), then wait until the file is complete, at most `watchdog`. A spool
    /// closed by a write failure finishes too (see [`RecordingBin::interruptions`]).
    pub async fn finish(&self, watchdog: Duration) -> Result<(), PipelineError> {
        for name in ["video", "video_h264", "audio", "audio_aac"] {
            if let Some(pad) = self.bin.static_pad(name) {
                pad.send_event(gst::event::Eos::new());
            }
        }
        let mut eos = self.eos.clone();
        let done = tokio::time::timeout(watchdog, eos.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            return Err(PipelineError::PipelineFrozen { dot_file: None });
        }
        Ok(())
    }
}
