//! The reference recording job, Gremium side: 4 participants (WebM files with VP8
//! 640x360@30 and Opus 48 kHz, demuxed, decoded and paced to the clock like live
//! cameras) into the program bin (grid of 4 on a 1280x720@30 canvas, everyone
//! consenting, no labels, no gaps so the tiles are exactly where ffmpeg's `xstack`
//! puts them), the program into a [`RecordingBin`] (x264 veryfast/zerolatency at
//! 2500 kbit/s, AAC 128 kbit/s, fragmented MP4 in an encrypted spool), for SECS
//! seconds, then the recording is finished (EOS through the encoders and the muxer).
//!
//! Measured: user + system CPU seconds of the whole process from PLAYING until the
//! recording is complete — VP8/Opus decoding of the inputs, compositing, mixing,
//! H.264/AAC encoding, muxing and spool encryption — and the media seconds recorded
//! (video frames that reached the recording bin / fps). Building the pipeline before
//! and decrypting the spool afterwards are not measured. After the run the spool is
//! decrypted into a plain MP4 (OUT.mp4) so the script can compute its PSNR.
//!
//! Prints one line: `gremium cpu_s=.. wall_s=.. media_s=.. cpu_per_media_s=.. frames=..`.
//! `bench/recording.sh` runs it side by side with ffmpeg doing the same job.
//!
//! `cargo bench -p gremium-recorder --bench reference -- OUT.mp4 SECS IN1.webm IN2.webm IN3.webm IN4.webm`

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gremium_compositor::{Canvas, Kind, NonConsenting, Program, ProgramSettings, Scaler};
use gremium_recorder::{RecordingBin, RecordingSettings, H264};
use gremium_streamer::hls::{HlsBin, HlsSettings};
use gremium_vault::crypto::{read_spool, DataKey};
use gst::prelude::*;
use uuid::Uuid;

const FPS: u32 = 30;
const VIDEO_KBPS: u32 = 2500;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

fn element(factory: &str) -> gst::Element {
    gst::ElementFactory::make(factory)
        .build()
        .unwrap_or_else(|e| panic!("{factory}: {e}"))
}

/// One participant: `filesrc ! matroskademux`, then per stream a queue, the decoder
/// and `clocksync` (live pacing) into the program.
fn add_participant(pipeline: &gst::Pipeline, program: &mut Program, i: usize, path: &str) {
    let id = Uuid::from_u128(i as u128 + 1);
    program.add_participant(id, &format!("P{i}"), true);
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path)
        .build()
        .unwrap();
    let demux = element("matroskademux");
    pipeline.add_many([&src, &demux]).unwrap();
    src.link(&demux).unwrap();

    let video = [element("queue"), element("vp8dec"), element("clocksync")];
    let audio = [
        element("queue"),
        element("opusdec"),
        element("audioconvert"),
        element("audioresample"),
        element("clocksync"),
    ];
    for chain in [&video[..], &audio[..]] {
        pipeline.add_many(chain).unwrap();
        gst::Element::link_many(chain).unwrap();
    }
    program
        .connect(
            id,
            Kind::Video,
            &video.last().unwrap().static_pad("src").unwrap(),
        )
        .unwrap();
    program
        .connect(
            id,
            Kind::Audio,
            &audio.last().unwrap().static_pad("src").unwrap(),
        )
        .unwrap();
    let vsink = video[0].static_pad("sink").unwrap();
    let asink = audio[0].static_pad("sink").unwrap();
    demux.connect_pad_added(move |_, pad| {
        let name = pad.name();
        let target = if name.starts_with("video") {
            &vsink
        } else if name.starts_with("audio") {
            &asink
        } else {
            return;
        };
        if let Err(e) = pad.link(target) {
            eprintln!("demux {name}: {e:?}");
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; take the positional arguments after it.
    let pos: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() < 6 {
        eprintln!("usage: reference OUT.mp4 SECS IN1.webm IN2.webm IN3.webm IN4.webm");
        std::process::exit(2);
    }
    // --live=shared|separate --hls=DIR [--rtmp=URL]: the livestream too.
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
    };
    let live = flag("live");
    let shared = match live.as_deref() {
        None | Some("separate") => false,
        Some("shared") => true,
        Some(other) => panic!("--live={other}: shared or separate"),
    };
    let out = std::path::PathBuf::from(pos[0]);
    let secs: f64 = pos[1].parse().expect("SECS");
    let inputs = &pos[2..];

    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let mut program = Program::new(ProgramSettings {
        canvas: Canvas {
            width: 1280,
            height: 720,
        },
        fps: FPS,
        labels: false,
        non_consenting: NonConsenting::Hide,
        // Tiles exactly as xstack lays them out: 640x360 each, unscaled (the default
        // 4 px gap would shrink every tile and add scaling to the job).
        gap: 0,
        scaler: Scaler::Linear,
        ..ProgramSettings::default()
    })
    .unwrap();
    pipeline.add(program.bin()).unwrap();

    let spool = out.with_extension("spool");
    let key = DataKey::generate();
    let context = b"gremium reference bench".to_vec();
    // A keyframe every second: what the media plane uses (one per HLS segment).
    let h264 = H264 {
        kbps: VIDEO_KBPS,
        keyframe_interval: FPS,
    };
    let recording = RecordingBin::new(&RecordingSettings {
        path: spool.clone(),
        key: key.clone(),
        context: context.clone(),
        video: h264,
        encoded_input: shared,
        encoded_audio: shared,
        fragment: Duration::from_millis(400),
    })
    .unwrap();
    pipeline.add(recording.bin()).unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    let rec_video = recording
        .bin()
        .static_pad(if shared { "video_h264" } else { "video" })
        .unwrap();
    rec_video.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    let mut outputs: Vec<gst::Pad> = Vec::new();
    let mut link = |kind: Kind, sink: gst::Pad| {
        let o = program.request_output(kind).unwrap();
        o.link(&sink).unwrap();
        outputs.push(o);
    };
    // With --live=shared, one encode of each kind (as the media plane shares them
    // while the recording and the livestream have the same audience):
    // program ! encode ! tee, a branch to the recording and one to the HLS top
    // rendition / the HLS audio (and RTMP).
    let encoder = |video: bool| {
        let bin = gst::Bin::new();
        let queue = element("queue");
        let tee = element("tee");
        bin.add_many([&queue, &tee]).unwrap();
        let (first, parse) = if video {
            let [enc, _, parse] =
                gremium_pipelines::encode::h264_chain(&bin, "encode", &h264).unwrap();
            (enc, parse)
        } else {
            let [conv, _, parse] = gremium_pipelines::encode::aac_chain(&bin, "encode").unwrap();
            (conv, parse)
        };
        queue.link(&first).unwrap();
        parse.link(&tee).unwrap();
        let ghost = gst::GhostPad::with_target(&queue.static_pad("sink").unwrap()).unwrap();
        bin.add_pad(&ghost).unwrap();
        pipeline.add(&bin).unwrap();
        let pad = if video { "video_h264" } else { "audio_aac" };
        tee.link_pads(None, recording.bin(), Some(pad)).unwrap();
        (bin, tee, ghost)
    };
    let encode = shared.then(|| encoder(true));
    let encode_audio = shared.then(|| encoder(false));
    match &encode {
        Some((_, _, ghost)) => link(Kind::Video, ghost.clone().upcast()),
        None => link(Kind::Video, recording.bin().static_pad("video").unwrap()),
    }
    match &encode_audio {
        Some((_, _, ghost)) => link(Kind::Audio, ghost.clone().upcast()),
        None => link(Kind::Audio, recording.bin().static_pad("audio").unwrap()),
    }
    let hls = live.as_ref().map(|_| {
        let dir = std::path::PathBuf::from(flag("hls").expect("--hls=DIR with --live"));
        let mut settings = HlsSettings::new(&dir, FPS);
        settings.encoded_top = shared;
        settings.encoded_audio = shared;
        let hls = HlsBin::new(&settings).unwrap();
        if let Some(url) = flag("rtmp") {
            hls.add_rtmp("rtmp0", &url, "bench").unwrap();
        }
        pipeline.add(hls.bin()).unwrap();
        for (kind, name) in [(Kind::Video, "video"), (Kind::Audio, "audio")] {
            if let Some(pad) = hls.bin().static_pad(name) {
                link(kind, pad);
            }
        }
        if let Some((_, tee, _)) = &encode {
            tee.link_pads(None, hls.bin(), Some("video_h264")).unwrap();
        }
        if let Some((_, tee, _)) = &encode_audio {
            tee.link_pads(None, hls.bin(), Some("audio_aac")).unwrap();
        }
        hls
    });
    for (i, path) in inputs.iter().enumerate().take(4) {
        add_participant(&pipeline, &mut program, i, path);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = wall + Duration::from_secs_f64(secs);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(e) = msg.view() {
                eprintln!(
                    "error from {:?}: {}",
                    e.src().map(|s| s.path_string()),
                    e.error()
                );
                std::process::exit(1);
            }
        }
    }
    // Detach the outputs from the program and finish them, as the media plane does.
    for o in &outputs {
        program.release_output(o);
    }
    for (_, _, ghost) in encode.iter().chain(&encode_audio) {
        // The shared encodes drain into both consumers.
        ghost.send_event(gst::event::Eos::new());
    }
    runtime
        .block_on(recording.finish(Duration::from_secs(30)))
        .expect("finish");
    if let Some(hls) = &hls {
        runtime
            .block_on(hls.finish(Duration::from_secs(30)))
            .expect("finish the livestream");
    }
    let cpu = cpu_seconds() - cpu0;
    let elapsed = wall.elapsed().as_secs_f64();
    let n = frames.load(Ordering::Relaxed);
    pipeline.set_state(gst::State::Null).unwrap();

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).expect("OUT.mp4"));
    let summary = read_spool(&spool, &key, &context, |bytes| file.write_all(bytes)).unwrap();
    file.flush().unwrap();
    let _ = std::fs::remove_file(&spool);
    let media = n as f64 / f64::from(FPS);
    eprintln!(
        "spool: {} records, {} bytes, torn tail {}",
        summary.records, summary.bytes, summary.torn_tail
    );
    println!(
        "gremium cpu_s={cpu:.2} wall_s={elapsed:.1} media_s={media:.2} cpu_per_media_s={:.3} frames={n}",
        cpu / media
    );
}
