//! The [`HlsBin`]: builds the ladder's encoders and sinks from validated settings,
//! carries out the moderator's cut, hands out RTMP destinations, and finishes (EOS
//! with a watchdog, waiting until every playlist ended).
//!
//! Must not: validate settings itself (`settings` does, before anything is built),
//! write files other than through the sinks, know meetings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gremium_pipelines::encode::{aac_chain, h264_chain};
use gremium_pipelines::{capsfilter, link_chain, make, PipelineError};
use gst::prelude::*;

use super::delay::{delay_stream, Blanking};
use super::drain::DrainBin;
use super::sinks::{guarded_sink_pad, hls_sink, link_audio, link_to_sink, write_master};
use super::start::video_waits_for_audio;
use super::{err, render_master, HlsSettings, AUDIO_RENDITION, PLAYLIST};
use crate::rtmp::{RtmpHandle, RtmpOutputs, RtmpStatus};
use crate::StreamerError;

/// What the queue in front of each `hlssink2` input holds before it drops the oldest
/// (only while that sink is stuck: a full disk, a muxer waiting for its other
/// stream far longer than a segment), on top of a broadcast delay (with one, the
/// sinks' input backs up by about the delay: measured, the delay test loses frames
/// of A with 3 s alone).
const GUARD_QUEUE: Duration = Duration::from_secs(3);

/// A consumer bin with ghost sink pads `video` (raw I420) and `audio` (raw S16LE
/// 48 kHz stereo) writing an HLS presentation with an ABR ladder into a directory.
pub struct HlsBin {
    bin: DrainBin,
    dir: PathBuf,
    /// Names of the `hlssink2` elements, all of which must drain on finish.
    outputs: Vec<String>,
    /// RTMP push destinations fed from the top rendition and the shared AAC.
    rtmp: RtmpOutputs,
    /// The broadcast delay, if any.
    delay: Option<Duration>,
    /// Program running times (ns) whose media is blanked on its way out of the delay.
    blanking: Arc<Blanking>,
}

impl HlsBin {
    /// Validate the settings, create the directories, build the bin (not yet added
    /// anywhere) and write the master playlist.
    pub fn new(s: &HlsSettings) -> Result<HlsBin, StreamerError> {
        s.validate()?;
        let label: String = s
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let bin = DrainBin::new(&format!("hls-{label}"));
        let hold = GUARD_QUEUE + s.delay.unwrap_or_default();
        let mut outputs = Vec::new();

        // Video: one tee of the raw program, one scaler + encoder per rendition.
        let vtee = make("tee", Some("video-tee"))?;
        bin.add(&vtee).map_err(err)?;
        let blanking = Arc::new(Blanking::default());
        let video_in = match s.delay {
            Some(delay) => {
                let q = make("queue", Some("video-delay"))?;
                bin.add(&q).map_err(err)?;
                q.link(&vtee).map_err(err)?;
                delay_stream(&q, delay, blanking.clone(), true)?;
                q
            }
            None => vtee.clone(),
        };
        // Audio: one AAC encode (here, or outside with `encoded_audio`), shared
        // through a tee.
        let aqueue = make("queue", Some("audio-queue"))?;
        let atee = make("tee", Some("audio-tee"))?;
        // RTMP destinations come and go; without files they are the only consumers.
        atee.set_property("allow-not-linked", true);
        bin.add_many([&aqueue, &atee]).map_err(err)?;
        if s.encoded_audio {
            let aparse = make("aacparse", Some("audio-parse"))?;
            bin.add(&aparse).map_err(err)?;
            link_chain(&[&aqueue, &aparse, &atee])?;
        } else {
            let [aconv, _, aparse] = aac_chain(&bin, "audio")?;
            aqueue.link(&aconv).map_err(err)?;
            aparse.link(&atee).map_err(err)?;
        }
        if let Some(delay) = s.delay {
            delay_stream(&aqueue, delay, blanking.clone(), false)?;
        }

        // The largest rendition (the first of equals) also feeds the RTMP pushes.
        let top = s.top_index();
        let mut raw_renditions = 0;
        let mut encoded_in = None;
        let rtmp_tee = make("tee", Some("rtmp-video-tee"))?;
        rtmp_tee.set_property("allow-not-linked", true);
        bin.add(&rtmp_tee).map_err(err)?;

        for (i, r) in s.renditions.iter().enumerate() {
            if !s.files && i != top {
                continue;
            }
            let queue = make("queue", Some(&format!("{}-queue", r.name)))?;
            bin.add(&queue).map_err(err)?;
            let parse = if s.encoded_top && i == top {
                // Encoded outside; SPS/PPS with every keyframe: each segment decodes
                // on its own.
                let parse = make("h264parse", Some(&format!("{}-parse", r.name)))?;
                parse.set_property("config-interval", -1i32);
                bin.add(&parse).map_err(err)?;
                queue.link(&parse).map_err(err)?;
                encoded_in = Some(queue.clone());
                parse
            } else {
                raw_renditions += 1;
                // Passthrough (no copy, no scaling) when the canvas already has this
                // size.
                let scale = make("videoscale", Some(&format!("{}-scale", r.name)))?;
                let size = capsfilter(
                    gst::Caps::builder("video/x-raw")
                        .field("width", r.width as i32)
                        .field("height", r.height as i32)
                        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                        .build(),
                )?;
                bin.add_many([&scale, &size]).map_err(err)?;
                let [enc, _, parse] = h264_chain(&bin, &r.name, &s.h264(r))?;
                link_chain(&[&vtee, &queue, &scale, &size, &enc])?;
                parse
            };
            if !s.files {
                parse.link(&rtmp_tee).map_err(|_| {
                    PipelineError::Link(format!("{} ! rtmp-video-tee", parse.name()))
                })?;
                continue;
            }
            let sink = hls_sink(s, &r.name)?;
            bin.add(&sink).map_err(err)?;
            let video = if i == top {
                parse.link(&rtmp_tee).map_err(|_| {
                    PipelineError::Link(format!("{} ! rtmp-video-tee", parse.name()))
                })?;
                let src = rtmp_tee
                    .request_pad_simple("src_%u")
                    .ok_or_else(|| PipelineError::Link("rtmp-video-tee has no src pad".into()))?;
                let target = guarded_sink_pad(&bin, &sink, "video", hold)?;
                src.link(&target).map_err(|e| {
                    PipelineError::Link(format!("rtmp-video-tee ! {}: {e:?}", sink.name()))
                })?;
                target
            } else {
                link_to_sink(&bin, &parse, &sink, "video", hold)?
            };
            let audio = link_audio(&bin, &atee, &sink, hold)?;
            video_waits_for_audio(&video, &audio);
            outputs.push(sink.name().to_string());
        }
        if s.files {
            let audio_only = hls_sink(s, AUDIO_RENDITION)?;
            bin.add(&audio_only).map_err(err)?;
            link_audio(&bin, &atee, &audio_only, hold)?;
            outputs.push(audio_only.name().to_string());
        }

        let audio_pad = if s.encoded_audio {
            "audio_aac"
        } else {
            "audio"
        };
        let mut inputs = vec![(audio_pad, &aqueue)];
        if raw_renditions > 0 {
            inputs.push(("video", &video_in));
        }
        if let Some(q) = &encoded_in {
            inputs.push(("video_h264", q));
        }
        for (name, el) in inputs {
            let target = el
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link(format!("{} has no sink pad", el.name())))?;
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(err)?
                .name(name)
                .build();
            bin.add_pad(&ghost).map_err(err)?;
        }

        if s.files {
            write_master(&s.dir, &render_master(&s.variants()))?;
        }
        let rtmp = RtmpOutputs::new(bin.clone().upcast(), rtmp_tee, atee);
        Ok(HlsBin {
            bin,
            dir: s.dir.clone(),
            outputs,
            rtmp,
            delay: s.delay,
            blanking,
        })
    }

    /// The moderator cut (the meeting went non-public) at program running time
    /// `now_ns`: with a broadcast delay, everything still held back — all that has
    /// not left the delay yet, about `delay` of program — and the next second (until
    /// the program's own slate arrives) leaves blanked. False without a delay.
    pub fn cut(&self, now_ns: u64) -> bool {
        if self.delay.is_none() {
            return false;
        }
        let from = self.blanking.held_back_from().min(now_ns);
        self.blanking.add(from, now_ns + 1_000_000_000);
        true
    }

    /// The bin to attach (pads `video` and `audio`).
    pub fn bin(&self) -> &gst::Bin {
        self.bin.upcast_ref()
    }

    /// Directory of the presentation.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The master playlist.
    pub fn master_playlist(&self) -> PathBuf {
        self.dir.join(PLAYLIST)
    }

    /// The media playlist of a rendition (`AUDIO_RENDITION` for the audio-only one).
    pub fn media_playlist(&self, rendition: &str) -> PathBuf {
        self.dir.join(rendition).join(PLAYLIST)
    }

    /// Push the livestream to `url`/`key` too (RTMP or RTMPS), sharing the top
    /// rendition's H.264 and the AAC. Works before or while the bin runs; the
    /// destination connects, and reconnects with backoff, on its own thread, and never
    /// disturbs HLS or the other destinations (see [`crate::rtmp`]). `id` (ASCII
    /// letters, digits, `-`, `_`) names it in [`HlsBin::rtmp_status`]; errors and logs
    /// never contain `key`.
    pub fn add_rtmp(&self, id: &str, url: &str, key: &str) -> Result<RtmpHandle, StreamerError> {
        self.rtmp.add(id, url, key)
    }

    /// Stop a destination: EOS to its server (at most [`crate::rtmp::STOP_TIMEOUT`]),
    /// then its branch is removed and its status becomes `Stopped`. Returns at once;
    /// false if no destination has this id.
    pub fn remove_rtmp(&self, id: &str) -> bool {
        self.rtmp.remove(id)
    }

    /// Why the HLS files are not being written (a full disk: the playlists stall
    /// while the RTMP pushes go on), from the first failed write until the stream
    /// ends (they do not resume by themselves). `None` while they advance.
    pub fn write_error(&self) -> Option<String> {
        self.bin.current_error().borrow().clone()
    }

    /// Follows [`HlsBin::write_error`].
    pub fn write_errors(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.bin.current_error()
    }

    /// Every destination added so far and its status (`Stopped` ones included).
    pub fn rtmp_status(&self) -> Vec<(String, RtmpStatus)> {
        self.rtmp.status()
    }

    /// Changes of the destinations' statuses, for the media plane to turn into events
    /// (a `watch`: a slow reader sees the latest state, not every step).
    pub fn rtmp_updates(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::BTreeMap<String, RtmpStatus>> {
        self.rtmp.subscribe()
    }

    /// Finish: EOS into both inputs (the caller detached them from the program
    /// first), then wait until every rendition closed its last segment and ended its
    /// playlist with `#EXT-X-ENDLIST`, at most `watchdog`. Finishing twice is
    /// harmless. RTMP destinations stop too (the EOS reaches their servers); they are
    /// waited for within the same watchdog but never fail the finish.
    ///
    /// A sink with an input that never got caps has written nothing (`mpegtsmux`
    /// writes only once all its inputs have caps), and the EOS makes its muxer fail
    /// ("Could not create handler for stream") or never finish (no data at all): it
    /// is neither waited for nor is its error counted. Call
    /// [`HlsBin::media_ready`] before detaching the bin, so that a stop right after
    /// the start still ends the playlists of what was produced.
    pub async fn finish(&self, watchdog: Duration) -> Result<(), StreamerError> {
        let started = tokio::time::Instant::now();
        self.rtmp.remove_all();
        let unready = self.sinks_without_caps();
        if !unready.is_empty() {
            tracing::info!(?unready, dir = %self.dir.display(), "HLS outputs stopped before any media reached them");
        }
        let bin = self.bin.clone();
        // A serialized event waits for the pad's stream lock, which a stalled branch
        // may hold forever: send from the blocking pool, under the watchdog too.
        let send = tokio::task::spawn_blocking(move || {
            for name in ["video", "video_h264", "audio", "audio_aac"] {
                if let Some(pad) = bin.static_pad(name) {
                    pad.send_event(gst::event::Eos::new());
                }
            }
        });
        let mut drained = self.bin.drained();
        let expected: Vec<String> = self
            .outputs
            .iter()
            .filter(|o| !unready.contains(*o))
            .cloned()
            .collect();
        let expected = &expected;
        let wait = async {
            let _ = send.await;
            drained
                .wait_for(|done| expected.iter().all(|o| done.contains(o)))
                .await
                .is_ok()
        };
        let done = tokio::time::timeout(watchdog, wait).await.unwrap_or(false);
        let mut rtmp = self.rtmp.subscribe();
        let rtmp_done = tokio::time::timeout_at(
            started + watchdog,
            rtmp.wait_for(|m| m.values().all(|s| *s == RtmpStatus::Stopped)),
        )
        .await;
        if !matches!(rtmp_done, Ok(Ok(_))) {
            tracing::warn!(dir = %self.dir.display(), "RTMP destinations did not stop in time");
        }
        if !done {
            let finished = self.bin.drained().borrow().clone();
            let unfinished: Vec<String> = expected
                .iter()
                .filter(|o| !finished.contains(*o))
                .cloned()
                .collect();
            tracing::warn!(?unfinished, dir = %self.dir.display(), "HLS output did not drain");
            return Err(StreamerError::Frozen { unfinished });
        }
        match self.write_error() {
            // The error of a sink that never had all its caps (see above) is not a
            // write failure: it had nothing to write.
            Some(e) if unready.iter().any(|o| e.starts_with(&format!("{o}:"))) => {
                tracing::info!(error = %e, "HLS output without media refused its EOS");
                Ok(())
            }
            Some(e) => Err(StreamerError::Output(e)),
            None => Ok(()),
        }
    }

    /// Wait until media reached every `hlssink2` (each input has caps), at most
    /// `within`; false if it did not. A stream stopped right after its start (issue
    /// 18 item 8) waits here while still attached to the program, which is live:
    /// caps arrive within a few hundred milliseconds of the start.
    pub async fn media_ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.sinks_without_caps().is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Names of the `hlssink2`s with an input that has no caps yet.
    fn sinks_without_caps(&self) -> BTreeSet<String> {
        self.outputs
            .iter()
            .filter(|name| {
                self.bin.by_name(name).is_some_and(|sink| {
                    sink.sink_pads()
                        .iter()
                        .any(|pad| pad.current_caps().is_none())
                })
            })
            .cloned()
            .collect()
    }
}
