//! A recorder killed with SIGKILL leaves an encrypted spool that recovery turns into a
//! stored recording playing up to the last complete fragment (1 s): the test records
//! in a child process, kills it, finalizes the spool as the next start would, and
//! probes the decrypted result.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gremium_recorder::finalize::{finalize, Origin};
use gremium_recorder::{RecordingBin, RecordingSettings, H264};
use gremium_vault::context::media_context;
use gremium_vault::crypto::{DataKey, SealedReader, SEALED_HEADER};
use gremium_vault::{LocalStore, ObjectStore};
use gst::prelude::*;
use uuid::Uuid;

/// The child: records live test sources until it is killed.
#[test]
#[ignore = "run as a child process by a_killed_recorder_leaves_a_spool_that_recovers_into_a_playable_recording"]
fn record_until_killed() {
    let Ok(path) = std::env::var("GREMIUM_RECORD_TO") else {
        return;
    };
    let key = DataKey::from_hex(&std::env::var("GREMIUM_RECORD_KEY").unwrap()).unwrap();
    let rid = Uuid::parse_str(&std::env::var("GREMIUM_RECORD_ID").unwrap()).unwrap();
    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let rec = RecordingBin::new(&RecordingSettings {
        path: PathBuf::from(path),
        key,
        context: media_context(rid),
        // A keyframe every two seconds at 15 fps.
        video: H264 {
            kbps: 1000,
            keyframe_interval: 30,
        },
        encoded_input: false,
        encoded_audio: false,
        fragment: Duration::from_secs(1),
    })
    .unwrap();
    let vsrc = gst::parse::bin_from_description(
        "videotestsrc is-live=true ! capsfilter caps=\"video/x-raw,format=I420,width=320,height=180,framerate=15/1\"",
        true,
    )
    .unwrap();
    let asrc = gst::parse::bin_from_description(
        "audiotestsrc is-live=true ! capsfilter caps=\"audio/x-raw,format=S16LE,rate=48000,channels=2\"",
        true,
    )
    .unwrap();
    pipeline
        .add_many([
            vsrc.upcast_ref::<gst::Element>(),
            asrc.upcast_ref(),
            rec.bin().upcast_ref(),
        ])
        .unwrap();
    vsrc.static_pad("src")
        .unwrap()
        .link(&rec.bin().static_pad("video").unwrap())
        .unwrap();
    asrc.static_pad("src")
        .unwrap()
        .link(&rec.bin().static_pad("audio").unwrap())
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[tokio::test]
async fn a_killed_recorder_leaves_a_spool_that_recovers_into_a_playable_recording() {
    let dir = std::env::temp_dir().join(format!("gremium-crash-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let rid = Uuid::new_v4();
    let key = DataKey::generate();
    let spool = gremium_recorder::finalize::spool_path(&dir, rid);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "record_until_killed", "--ignored", "--nocapture"])
        .env("GREMIUM_RECORD_TO", &spool)
        .env("GREMIUM_RECORD_KEY", key.to_hex())
        .env("GREMIUM_RECORD_ID", rid.to_string())
        .spawn()
        .unwrap();
    let path = &spool;
    // Wait until the file has data, then record for 3.5 s more.
    let start = Instant::now();
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recording started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(3500));
    child.kill().unwrap(); // SIGKILL: no EOS, no cleanup
    child.wait().unwrap();

    // What the next start does: finalize the spool into the store.
    let raw = std::fs::read(path).unwrap();
    assert!(
        !raw.windows(4).any(|w| w == b"ftyp" || w == b"mdat"),
        "plaintext in the spool"
    );
    let store: std::sync::Arc<dyn ObjectStore> =
        std::sync::Arc::new(LocalStore::new(dir.join("objects")));
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let media = finalize(
        spool.clone(),
        key.clone(),
        rid,
        store.clone(),
        Origin::Recovered,
        {
            let progress = progress.clone();
            std::sync::Arc::new(move |t: Duration| {
                progress.store(t.as_millis() as u64, std::sync::atomic::Ordering::Relaxed)
            })
        },
        &gremium_recorder::finalize::DiscardGate::default(),
    )
    .await
    .unwrap();
    let validated = progress.load(std::sync::atomic::Ordering::Relaxed);
    assert!(validated > 1000, "progress reported up to {validated} ms");
    assert!(media.recovered);
    assert!(
        media.probe.contains("h264") && media.probe.contains("aac"),
        "{}",
        media.probe
    );
    assert!(!spool.exists(), "the spool is removed once stored");
    // Decrypt what was stored (as the archive does) into a file for ffprobe.
    let size = store.size(&media.media_key).await.unwrap().unwrap();
    let header = store
        .get_range(&media.media_key, 0..SEALED_HEADER as u64)
        .await
        .unwrap();
    let reader = SealedReader::open(&header, size, &key, &media_context(rid)).unwrap();
    let all = reader.chunks_for(&(0..reader.plaintext_len()));
    let stored = store
        .get_range(&media.media_key, reader.stored_range(&all))
        .await
        .unwrap();
    let plain = reader.open_chunks(&all, &stored).unwrap();
    let path = &dir.join("decrypted.mp4");
    std::fs::write(path, plain).unwrap();

    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-show_entries", "stream=codec_name", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    // Decode everything: the written fragments play.
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decoded.status.success());
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let n: f64 = String::from_utf8_lossy(&frames.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    // 3.5 s at 15 fps is 52 frames; at most one 1 s fragment (15 frames) plus the
    // one being started may be lost.
    assert!(n >= 52.0 - 2.0 * 15.0, "only {n} frames survived the kill");
    let _ = std::fs::remove_dir_all(&dir);
}
