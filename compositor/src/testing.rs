//! Test support (feature `test-support`): a consumer bin that reads a program back
//! the way a viewer would see and hear it, with every frame and every 10 ms of audio
//! stamped with the program's running time.
//!
//! Video is converted to RGB and, per frame, the pixels near each probe colour are
//! counted with their bounding box; audio (S16LE 48 kHz stereo, left channel) is
//! cut into 10 ms windows and the amplitude of each probe tone is measured with the
//! Goertzel algorithm. Probe tones on 100 Hz multiples sit on exact bins of a 10 ms
//! window, so a steady tone leaks nothing into the other bins.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// Where a colour shows up in one frame (every second pixel each way is looked at).
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Pixels of that colour among those looked at.
    pub count: u32,
    /// Bounding box, left.
    pub min_x: u32,
    /// Bounding box, top.
    pub min_y: u32,
    /// Bounding box, right (inclusive).
    pub max_x: u32,
    /// Bounding box, bottom (inclusive).
    pub max_y: u32,
}

/// One output frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Running time of the frame.
    pub running_ns: u64,
    /// One entry per probe colour.
    pub colours: Vec<Seen>,
}

/// 10 ms of output audio.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Running time of the first sample.
    pub running_ns: u64,
    /// Running time after the last sample.
    pub end_ns: u64,
    /// Amplitude (0..1) of each probe tone.
    pub tones: Vec<f64>,
}

/// Is `px` within ±40 of colour `c` on every channel?
pub fn near(px: &[u8], c: [u8; 3]) -> bool {
    px.iter()
        .zip(c)
        .all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() < 40)
}

/// Amplitude of `freq` in `samples` (Goertzel), 1.0 for a full-scale sine.
pub fn goertzel(samples: &[f64], freq: f64, rate: f64) -> f64 {
    let n = samples.len() as f64;
    let k = (n * freq / rate).round();
    let w = 2.0 * std::f64::consts::PI * k / n;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n
}

fn running_ns(sample: &gst::Sample, pts: Option<gst::ClockTime>) -> Option<u64> {
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?.clone();
    seg.to_running_time(pts?).map(|t| t.nseconds())
}

/// A program reader: a bin with sink pads `video` and `audio`.
pub struct Tap {
    bin: gst::Bin,
    width: u32,
    frames: Arc<Mutex<Vec<Frame>>>,
    chunks: Arc<Mutex<Vec<Chunk>>>,
    last_rgb: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    /// A tap for a `width` × `height` program looking for `colours` and `tones`.
    pub fn new(width: u32, height: u32, colours: Vec<[u8; 3]>, tones: Vec<f64>) -> Tap {
        let bin = gst::Bin::new();
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let chunks: Arc<Mutex<Vec<Chunk>>> = Arc::default();
        let last_rgb: Arc<Mutex<Vec<u8>>> = Arc::default();

        let convert = gst::ElementFactory::make("videoconvert").build().unwrap();
        let vsink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "RGB")
                    .build(),
            )
            .sync(false)
            .async_(false)
            .build();
        bin.add_many([&convert, vsink.upcast_ref()]).unwrap();
        convert.link(&vsink).unwrap();
        let ghost = gst::GhostPad::builder_with_target(&convert.static_pad("sink").unwrap())
            .unwrap()
            .name("video")
            .build();
        bin.add_pad(&ghost).unwrap();
        let (f, last) = (frames.clone(), last_rgb.clone());
        vsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let stride = (width as usize * 3).next_multiple_of(4);
                    let mut seen = vec![Seen::default(); colours.len()];
                    // Every second pixel each way: enough for ±2 px tile edges.
                    for y in (0..height as usize).step_by(2) {
                        for x in (0..width as usize).step_by(2) {
                            let i = y * stride + x * 3;
                            let px = &map[i..i + 3];
                            for (c, s) in colours.iter().zip(seen.iter_mut()) {
                                if near(px, *c) {
                                    let (x, y) = (x as u32, y as u32);
                                    if s.count == 0 {
                                        (s.min_x, s.min_y, s.max_x, s.max_y) = (x, y, x, y);
                                    }
                                    s.count += 1;
                                    s.min_x = s.min_x.min(x);
                                    s.min_y = s.min_y.min(y);
                                    s.max_x = s.max_x.max(x);
                                    s.max_y = s.max_y.max(y);
                                }
                            }
                        }
                    }
                    if let Some(running_ns) = running_ns(&sample, buffer.pts()) {
                        f.lock().unwrap().push(Frame {
                            running_ns,
                            colours: seen,
                        });
                    }
                    *last.lock().unwrap() = map.to_vec();
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        let asink = gst_app::AppSink::builder()
            .sync(false)
            .async_(false)
            .build();
        bin.add(&asink).unwrap();
        let ghost = gst::GhostPad::builder_with_target(&asink.static_pad("sink").unwrap())
            .unwrap()
            .name("audio")
            .build();
        bin.add_pad(&ghost).unwrap();
        let c = chunks.clone();
        asink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let Some(start) = running_ns(&sample, buffer.pts()) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    // S16LE stereo: take the left channel.
                    let left: Vec<f64> = map
                        .chunks_exact(4)
                        .map(|f| f64::from(i16::from_le_bytes([f[0], f[1]])) / 32768.0)
                        .collect();
                    let mut out = c.lock().unwrap();
                    for (i, win) in left.chunks_exact(480).enumerate() {
                        let running_ns = start + i as u64 * 10_000_000;
                        out.push(Chunk {
                            running_ns,
                            end_ns: running_ns + 10_000_000,
                            tones: tones.iter().map(|f| goertzel(win, *f, 48_000.0)).collect(),
                        });
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Tap {
            bin,
            width,
            frames,
            chunks,
            last_rgb,
        }
    }

    /// The bin to attach (pads `video` and `audio`).
    pub fn bin(&self) -> &gst::Bin {
        &self.bin
    }

    /// Frames with running time ≥ `t`.
    pub fn frames_since(&self, t: u64) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.running_ns >= t)
            .cloned()
            .collect()
    }

    /// Audio windows starting at or after `t`.
    pub fn chunks_since(&self, t: u64) -> Vec<Chunk> {
        self.chunks
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.running_ns >= t)
            .cloned()
            .collect()
    }

    /// Running times of the newest frame and audio window.
    pub fn latest(&self) -> (Option<u64>, Option<u64>) {
        (
            self.frames.lock().unwrap().last().map(|f| f.running_ns),
            self.chunks.lock().unwrap().last().map(|c| c.running_ns),
        )
    }

    /// Have both video and audio reached running time `t`?
    pub fn reached(&self, t: u64) -> bool {
        let (v, a) = self.latest();
        v.is_some_and(|v| v >= t) && a.is_some_and(|a| a >= t)
    }

    /// RGB of a pixel of the newest frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let rgb = self.last_rgb.lock().unwrap();
        let stride = (self.width as usize * 3).next_multiple_of(4);
        let i = y as usize * stride + x as usize * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }
}
