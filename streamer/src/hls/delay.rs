//! The broadcast delay and the moderator's cut: the raw program held back in a queue
//! for the delay, its output shifted so muxers and sinks see it on time, and the
//! intervals of running time ([`Blanking`]) whose media leaves the delay blanked —
//! slate colour and silence — after a cut.
//!
//! Must not: encode or write anything; the bin decides where the delay sits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gremium_pipelines::PipelineError;
use gst::prelude::*;

/// Intervals of program running time `[from, to)` in ns to blank, and the running
/// time of the last video and audio buffer that left the delay (`u64::MAX`: none).
#[derive(Debug)]
pub(super) struct Blanking {
    intervals: Mutex<Vec<(u64, u64)>>,
    /// The end of the latest interval (0: none yet): buffers after it pass without
    /// taking the lock, which is every buffer of a meeting never cut.
    until: std::sync::atomic::AtomicU64,
    left: [std::sync::atomic::AtomicU64; 2],
}

impl Default for Blanking {
    fn default() -> Self {
        Blanking {
            intervals: Mutex::new(Vec::new()),
            until: std::sync::atomic::AtomicU64::new(0),
            left: [
                std::sync::atomic::AtomicU64::new(u64::MAX),
                std::sync::atomic::AtomicU64::new(u64::MAX),
            ],
        }
    }
}

impl Blanking {
    pub(super) fn add(&self, from: u64, to: u64) {
        let mut v = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        // Intervals wholly before this one have left the delay long ago.
        v.retain(|(_, end)| *end + 120_000_000_000 > from);
        v.push((from, to));
        self.until
            .fetch_max(to, std::sync::atomic::Ordering::SeqCst);
    }

    fn covers(&self, running_ns: u64) -> bool {
        if running_ns >= self.until.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let v = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().any(|(a, b)| (*a..*b).contains(&running_ns))
    }

    /// The first running time that has not left the delay on both streams.
    pub(super) fn held_back_from(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let left = self.left.iter().map(|l| l.load(Ordering::SeqCst));
        // A stream of which nothing left yet holds everything back.
        if left.clone().any(|t| t == u64::MAX) {
            return 0;
        }
        left.min().map_or(0, |t| t + 1)
    }
}

/// Hold one raw stream back by `delay` and blank what `blanking` covers on its way
/// out: slate-coloured frames (I420) or silence.
pub(super) fn delay_stream(
    queue: &gst::Element,
    delay: Duration,
    blanking: Arc<Blanking>,
    video: bool,
) -> Result<(), PipelineError> {
    let ns = delay.as_nanos() as u64;
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", ns + 2_000_000_000);
    queue.set_property("min-threshold-time", ns);
    let sink = queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Link("delay queue without sink pad".into()))?;
    let src = queue
        .static_pad("src")
        .ok_or_else(|| PipelineError::Link("delay queue without src pad".into()))?;
    // Downstream sees the delayed media on time: muxers and sinks wait for nothing.
    src.set_offset(ns as i64);
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(segment) = sink.sticky_event::<gst::event::Segment>(0) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(segment) = segment.segment().downcast_ref::<gst::ClockTime>().cloned() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let running = buffer
            .pts()
            .and_then(|pts| segment.to_running_time(pts))
            .map(|t| t.nseconds());
        if let Some(t) = running {
            blanking.left[usize::from(!video)].store(t, std::sync::atomic::Ordering::SeqCst);
        }
        if !running.is_some_and(|t| blanking.covers(t)) {
            return gst::PadProbeReturn::Ok;
        }
        let buffer = buffer.make_mut();
        if video {
            let info = pad
                .current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok());
            if let Some(info) = info {
                if let Ok(mut frame) =
                    gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info)
                {
                    // The slate's colour, #1d3557, in BT.601 YUV.
                    for (plane, value) in [(0, 59u8), (1, 146), (2, 115)] {
                        if let Ok(data) = frame.plane_data_mut(plane) {
                            data.fill(value);
                        }
                    }
                }
            }
        } else if let Ok(mut map) = buffer.map_writable() {
            map.fill(0);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_blanks_all_that_has_not_left_the_delay() {
        let b = Blanking::default();
        // Nothing left yet: everything is held back.
        assert_eq!(b.held_back_from(), 0);
        b.left[0].store(5_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(b.held_back_from(), 0, "audio has not left yet");
        b.left[1].store(4_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(b.held_back_from(), 4_001);
        b.add(4_001, 9_000);
        assert!(!b.covers(4_000) && b.covers(4_001) && b.covers(8_999) && !b.covers(9_000));
    }
}
