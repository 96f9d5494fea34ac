//! The HLS bin on real pipelines: live test sources at the program's formats go in,
//! an HLS presentation comes out and is checked with the playlist parser, ffprobe and
//! ffmpeg; finishing ends the playlists, and a stalled branch trips the watchdog.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gremium_streamer::hls::{HlsBin, HlsSettings, MediaPlaylist, Rendition, AUDIO_RENDITION};
use gremium_streamer::StreamerError;
use gst::prelude::*;

fn temp_dir(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "gremium-hls-{label}-{}-{nanos}",
        std::process::id()
    ))
}

/// A live program stand-in: moving test video at the canvas, a sine, into `hls`.
fn live_pipeline(hls: &HlsBin, width: u32, height: u32, fps: u32) -> gst::Pipeline {
    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let vsrc = gst::parse::bin_from_description(
        &format!(
            "videotestsrc is-live=true pattern=ball ! \
             capsfilter caps=\"video/x-raw,format=I420,width={width},height={height},\
             framerate={fps}/1,pixel-aspect-ratio=1/1\""
        ),
        true,
    )
    .unwrap();
    let asrc = gst::parse::bin_from_description(
        "audiotestsrc is-live=true wave=sine ! \
         capsfilter caps=\"audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved\"",
        true,
    )
    .unwrap();
    pipeline
        .add_many([
            vsrc.upcast_ref::<gst::Element>(),
            asrc.upcast_ref(),
            hls.bin().upcast_ref(),
        ])
        .unwrap();
    for (src, pad) in [(&vsrc, "video"), (&asrc, "audio")] {
        src.static_pad("src")
            .unwrap()
            .link(&hls.bin().static_pad(pad).unwrap())
            .unwrap();
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

fn read_playlist(path: &Path) -> MediaPlaylist {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    MediaPlaylist::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}\n{text}"))
}

/// `key=value` lines of ffprobe's streams.
fn probe(file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,profile,level,width,height")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {file:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Pointers of the first buffers through a pad: equal on both sides of an element
/// means it passed them on untouched.
fn buffers_through(pad: &gst::Pad) -> Arc<Mutex<Vec<usize>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let mut s = s.lock().unwrap();
            if s.len() < 10 {
                s.push(buffer.as_ptr() as usize);
            }
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_program_becomes_an_hls_ladder_that_players_read() {
    let dir = temp_dir("ladder");
    let settings = HlsSettings {
        window: 3,
        ..HlsSettings::new(&dir, 30)
    };
    assert_eq!(settings.max_files(), 7);
    gst::init().unwrap();
    let hls = HlsBin::new(&settings).unwrap();
    let scaler_pads = |name: &str| {
        let scale = hls.bin().by_name(&format!("{name}-scale")).unwrap();
        (
            buffers_through(&scale.static_pad("sink").unwrap()),
            buffers_through(&scale.static_pad("src").unwrap()),
        )
    };
    let (in_720, out_720) = scaler_pads("720p");
    let (in_360, out_360) = scaler_pads("360p");
    let started = Instant::now();
    let pipeline = live_pipeline(&hls, 1280, 720, 30);

    // The master playlist is there from the start.
    let master = std::fs::read_to_string(hls.master_playlist()).unwrap();
    let inf: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(inf.len(), 3, "{master}");
    assert!(inf[0].contains("RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\""));
    assert!(inf[1].contains("RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\""));
    assert!(inf[2].contains("CODECS=\"mp4a.40.2\"") && !inf[2].contains("RESOLUTION"));
    let uris: Vec<&str> = master.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        uris,
        ["720p/index.m3u8", "360p/index.m3u8", "audio/index.m3u8"]
    );

    tokio::time::sleep(Duration::from_secs(5)).await;
    let live_720 = hls.media_playlist("720p");
    let first = read_playlist(&live_720);
    assert_eq!(first.target_duration, 1);
    assert!(!first.ended);
    // A player reads the live playlist while it is being written.
    let live_read = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&live_720)
        .args(["-t", "3", "-f", "null", "-"])
        .output();
    let live_read = tokio::spawn(live_read);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = read_playlist(&live_720);
    assert!(
        second.media_sequence > first.media_sequence,
        "media sequence {} then {}",
        first.media_sequence,
        second.media_sequence
    );
    let out = live_read.await.unwrap().unwrap();
    assert!(out.status.success(), "ffmpeg on the live playlist: {out:?}");

    // Long enough for more than max-files segments.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    for rendition in ["720p", "360p", AUDIO_RENDITION] {
        let files = segment_files(&dir.join(rendition));
        assert!(
            !files.contains(&"seg00000.ts".to_string()),
            "{rendition}: {files:?}"
        );
        // Kept: max-files closed segments plus the one being written.
        assert!(files.len() <= 8, "{rendition}: {files:?}");
        let listed = read_playlist(&hls.media_playlist(rendition));
        assert_eq!(listed.segments.len(), 3, "{rendition}: {listed:?}");
        for s in &listed.segments {
            assert!(
                files.contains(&s.uri),
                "{rendition}: {} listed, not on disk",
                s.uri
            );
        }
    }

    let oldest_listed = |rendition: &str| {
        let p = read_playlist(&hls.media_playlist(rendition));
        dir.join(rendition).join(&p.segments[0].uri)
    };
    let p720 = probe(&oldest_listed("720p"));
    for want in [
        "codec_name=h264",
        "profile=High",
        "width=1280",
        "height=720",
        "level=31",
    ] {
        assert!(p720.contains(want), "720p segment lacks {want}:\n{p720}");
    }
    assert!(p720.contains("codec_name=aac"), "{p720}");
    let p360 = probe(&oldest_listed("360p"));
    for want in [
        "codec_name=h264",
        "width=640",
        "height=360",
        "level=30",
        "codec_name=aac",
    ] {
        assert!(p360.contains(want), "360p segment lacks {want}:\n{p360}");
    }
    let paudio = probe(&oldest_listed(AUDIO_RENDITION));
    assert!(
        paudio.contains("codec_name=aac") && !paudio.contains("h264"),
        "{paudio}"
    );

    // The canvas is already 720p: its scaler passes the program's buffers on as
    // they are; the 360p one makes new ones.
    let (a, b) = (
        in_720.lock().unwrap().clone(),
        out_720.lock().unwrap().clone(),
    );
    assert_eq!(b.len(), 10);
    assert!(b.iter().all(|p| a.contains(p)), "720p was copied or scaled");
    let (a, b) = (
        in_360.lock().unwrap().clone(),
        out_360.lock().unwrap().clone(),
    );
    assert!(b.iter().all(|p| !a.contains(p)), "360p was not scaled");

    hls.finish(Duration::from_secs(10)).await.unwrap();
    // Finishing again is harmless.
    hls.finish(Duration::from_secs(1)).await.unwrap();
    for rendition in ["720p", "360p", AUDIO_RENDITION] {
        let p = read_playlist(&hls.media_playlist(rendition));
        assert!(p.ended, "{rendition}: no #EXT-X-ENDLIST");
        assert_eq!(p.target_duration, 1);
        let (last, rest) = p.segments.split_last().unwrap();
        for s in rest {
            assert!(
                (0.5..=1.5).contains(&s.duration),
                "{rendition}: {} lasts {} s",
                s.uri,
                s.duration
            );
        }
        assert!(
            last.duration <= 1.5,
            "{rendition}: last lasts {} s",
            last.duration
        );
        let durations: Vec<f64> = p.segments.iter().map(|s| s.duration).collect();
        eprintln!(
            "{rendition}: media sequence {}, EXTINF {durations:?}",
            p.media_sequence
        );
    }
    // The ended presentation plays through.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&live_720)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg on the ended playlist: {out:?}"
    );

    tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null))
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_stalled_bin_reports_the_watchdog_instead_of_hanging() {
    let dir = temp_dir("stall");
    let settings = HlsSettings {
        window: 3,
        renditions: vec![Rendition::new("180p", 320, 180, 300)],
        ..HlsSettings::new(&dir, 15)
    };
    gst::init().unwrap();
    let hls = HlsBin::new(&settings).unwrap();
    let pipeline = live_pipeline(&hls, 320, 180, 15);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The encoder's output stops for good: a wedged element, as far as the bin knows.
    let enc = hls.bin().by_name("180p-enc").unwrap();
    enc.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
            gst::PadProbeReturn::Ok
        });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let result = hls.finish(Duration::from_secs(2)).await;
    let took = started.elapsed();
    match result {
        Err(StreamerError::Frozen { unfinished }) => {
            assert!(
                unfinished.contains(&"hls-180p".to_string()),
                "{unfinished:?}"
            )
        }
        other => panic!("expected the watchdog, got {other:?}"),
    }
    assert!(took < Duration::from_secs(3), "finish took {took:?}");
    // Setting NULL releases the blocked threads.
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)),
    )
    .await
    .expect("the pipeline stops")
    .unwrap()
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A livestream started in a running meeting: its sinks preroll inside the HLS bin,
/// and the meeting's pipeline stays PLAYING throughout (before, it lost its state to
/// the prerolling sinks and its running time stood still meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_livestream_to_a_running_pipeline_keeps_it_playing() {
    gst::init().unwrap();
    let dir = temp_dir("running");
    let pipeline = gst::Pipeline::new();
    let src = |desc: &str| gst::parse::bin_from_description(desc, true).unwrap();
    let vsrc = src(
        "videotestsrc is-live=true pattern=ball ! capsfilter caps=\"video/x-raw,format=I420,\
         width=320,height=180,framerate=15/1,pixel-aspect-ratio=1/1\" ! tee name=vt \
         allow-not-linked=true",
    );
    let asrc = src(
        "audiotestsrc is-live=true wave=sine ! capsfilter caps=\"audio/x-raw,format=S16LE,\
         rate=48000,channels=2,layout=interleaved\" ! tee name=at allow-not-linked=true",
    );
    pipeline.add_many([&vsrc, &asrc]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, state, _) = pipeline.state(gst::ClockTime::from_seconds(5));
    assert_eq!(state, gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    while bus.pop().is_some() {}

    let settings = HlsSettings {
        window: 3,
        renditions: vec![Rendition::new("180p", 320, 180, 300)],
        ..HlsSettings::new(&dir, 15)
    };
    let hls = HlsBin::new(&settings).unwrap();
    pipeline.add(hls.bin()).unwrap();
    hls.bin().sync_state_with_parent().unwrap();
    for (tee, pad) in [(&vsrc, "video"), (&asrc, "audio")] {
        let tee = tee
            .by_name(if pad == "video" { "vt" } else { "at" })
            .unwrap();
        let src = tee.request_pad_simple("src_%u").unwrap();
        let ghost = gst::GhostPad::with_target(&src).unwrap();
        ghost.set_active(true).unwrap();
        tee.parent()
            .and_downcast::<gst::Bin>()
            .unwrap()
            .add_pad(&ghost)
            .unwrap();
        ghost.link(&hls.bin().static_pad(pad).unwrap()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_files(&dir.join("180p")).len() < 2 {
        assert!(Instant::now() < deadline, "no segments");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::StateChanged(s) = msg.view() {
            if s.src() == Some(pipeline.upcast_ref()) {
                panic!(
                    "the pipeline changed state: {:?} → {:?} (pending {:?})",
                    s.old(),
                    s.current(),
                    s.pending()
                );
            }
        }
    }
    let _ = hls.finish(Duration::from_secs(5)).await;
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kinds of the packets in a file (`video`, `audio`), once each: a stream the
/// program map announces but no packet carries does not count.
fn stream_kinds(file: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=codec_type"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {file:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// hls.js makes its buffers from the tracks of the first segment and fails on a
/// later one that brings audio the first lacked (`bufferAppendError`): when the
/// audio's first frame comes late (a busy machine), every playlist's first segment
/// still carries both streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_segment_carries_audio_even_when_audio_starts_late() {
    let dir = temp_dir("late-audio");
    let settings = HlsSettings {
        window: 3,
        ..HlsSettings::new(&dir, 30)
    };
    gst::init().unwrap();
    let hls = HlsBin::new(&settings).unwrap();
    let pipeline = gst::Pipeline::new();
    let vsrc = gst::parse::bin_from_description(
        "videotestsrc is-live=true pattern=ball ! \
         capsfilter caps=\"video/x-raw,format=I420,width=1280,height=720,\
         framerate=30/1,pixel-aspect-ratio=1/1\"",
        true,
    )
    .unwrap();
    // Audio held back by a closed valve for the first 1.5 s.
    let asrc = gst::parse::bin_from_description(
        "audiotestsrc is-live=true wave=sine ! \
         capsfilter caps=\"audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved\" ! \
         valve name=late drop=true drop-mode=forward-sticky-events",
        true,
    )
    .unwrap();
    pipeline
        .add_many([
            vsrc.upcast_ref::<gst::Element>(),
            asrc.upcast_ref(),
            hls.bin().upcast_ref(),
        ])
        .unwrap();
    for (src, pad) in [(&vsrc, "video"), (&asrc, "audio")] {
        src.static_pad("src")
            .unwrap()
            .link(&hls.bin().static_pad(pad).unwrap())
            .unwrap();
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    asrc.by_name("late").unwrap().set_property("drop", false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for rendition in ["720p", "360p"] {
        // The first file written (the window may have moved past it already).
        let files = segment_files(&dir.join(rendition));
        let first = files
            .first()
            .unwrap_or_else(|| panic!("{rendition}: no segment yet"));
        let kinds = stream_kinds(&dir.join(rendition).join(first));
        assert!(
            kinds.contains(&"video".to_string()) && kinds.contains(&"audio".to_string()),
            "{rendition}: first segment {first} holds {kinds:?}"
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
