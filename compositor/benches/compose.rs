//! Compositing cost of Gremium's program bin: N raw 640x360 inputs (the same file,
//! paced to the clock like live cameras) into an I420 canvas, for a fixed time.
//! Prints CPU seconds and output frames; `bench/compositing.sh` runs it side by side
//! with ffmpeg's `xstack` doing the same job.
//!
//! `cargo bench -p gremium-compositor --bench compose -- INPUT.yuv N WIDTH HEIGHT SECS`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gremium_compositor::{Canvas, Kind, NonConsenting, Program, ProgramSettings, Scaler};
use gst::prelude::*;
use uuid::Uuid;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; take the positional arguments after it.
    let pos: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() < 5 {
        eprintln!("usage: compose INPUT.yuv N WIDTH HEIGHT SECS (640x360 I420 at 30 fps)");
        std::process::exit(2);
    }
    let input = pos[0].clone();
    let n: usize = pos[1].parse().expect("N");
    let width: u32 = pos[2].parse().expect("WIDTH");
    let height: u32 = pos[3].parse().expect("HEIGHT");
    let secs: u64 = pos[4].parse().expect("SECS");

    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let mut program = Program::new(ProgramSettings {
        canvas: Canvas { width, height },
        fps: 30,
        labels: false,
        non_consenting: NonConsenting::Hide,
        // Tiles exactly as xstack lays them out (the default 4 px gap would make every
        // tile a little smaller than its input and so add scaling to the job).
        gap: std::env::var("GREMIUM_BENCH_GAP")
            .ok()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0),
        scaler: match std::env::var("GREMIUM_BENCH_SCALER").as_deref() {
            Ok("cubic") => Scaler::Cubic,
            Ok("lanczos") => Scaler::Lanczos,
            _ => Scaler::Linear,
        },
        ..ProgramSettings::default()
    })
    .unwrap();
    pipeline.add(program.bin()).unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    pipeline.add(&sink).unwrap();
    program
        .request_output(Kind::Video)
        .unwrap()
        .link(&sink.static_pad("sink").unwrap())
        .unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    for i in 0..n {
        let id = Uuid::from_u128(i as u128 + 1);
        program.add_participant(id, &format!("P{i}"), true);
        let src = gst::ElementFactory::make("filesrc")
            .property("location", &input)
            .build()
            .unwrap();
        let parse = gst::ElementFactory::make("rawvideoparse")
            .property("width", 640i32)
            .property("height", 360i32)
            .property("framerate", gst::Fraction::new(30, 1))
            .build()
            .unwrap();
        parse.set_property_from_str("format", "i420");
        // Paced to the clock: the inputs behave like live cameras.
        let pace = gst::ElementFactory::make("clocksync").build().unwrap();
        pipeline.add_many([&src, &parse, &pace]).unwrap();
        gst::Element::link_many([&src, &parse, &pace]).unwrap();
        program
            .connect(id, Kind::Video, &pace.static_pad("src").unwrap())
            .unwrap();
    }
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = cpu_seconds() - cpu0;
    let elapsed = wall.elapsed().as_secs_f64();
    let out = frames.load(Ordering::Relaxed);
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "gremium inputs={n} canvas={width}x{height} cpu_s={cpu:.2} wall_s={elapsed:.1} cores={:.2} frames={out} fps={:.1}",
        cpu / elapsed,
        out as f64 / elapsed
    );
}
