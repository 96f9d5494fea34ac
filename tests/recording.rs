//! Recording end to end: participants publish over WHIP, a moderator starts and
//! stops a recording through the API, and the file is checked the way an archivist
//! would: ffprobe sees H.264 + AAC of the right length, and frames decoded by ffmpeg
//! show the consenting participant and never the one who did not consent.

mod common;

use std::time::Duration;

use common::*;
use gremium_compositor::testing::near;
use gremium_compositor::{Canvas, ProgramSettings};
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::{json, Value};

const GOLD: [u8; 3] = [0xff, 0xd7, 0x00];
const AZURE: [u8; 3] = [0x1e, 0x50, 0xff];

fn publish(base: &str, mid: &str, join: &str, color: &str) -> std::process::Child {
    let small = [
        "--width",
        "320",
        "--height",
        "180",
        "--fps",
        "15",
        "--duration",
        "30",
    ];
    spawn_publisher(base, mid, join, &[&["--color", color][..], &small].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_only_consenting_participants_and_plays() {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let program = ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        labels: false,
        ..ProgramSettings::default()
    };
    let (app, _media) =
        spawn_with_gst_media_in(Duration::from_secs(10), 10, program, dir.clone()).await;
    let moderator = app.token(&[Role::Moderator]);
    let mid = app.create_meeting(&moderator, "Finanzausschuss").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
    let (_b, b_join) = app.add_participant(&moderator, &mid, "Bernd").await;
    let (s, r) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/participants/{a}/consent"),
            Some(&a_join),
            Some(json!({"recording": true, "streaming": false})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let mut ws = ws_connect(app.addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    let mut pa = publish(&app.base, &mid, &a_join, "ffd700");
    let mut pb = publish(&app.base, &mid, &b_join, "1e50ff");
    for _ in 0..2 {
        wait_event(&mut ws, "participant_media_started", |_| true).await;
    }

    let (s, rec) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let rid = rec["id"].as_str().unwrap().to_string();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s, r) = app
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            Some(&moderator),
            None,
        )
        .await;
    assert!(s == 202 || s == 200, "{s} {r}");
    let done = wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "finished" || e["state"] == "failed"
    })
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(
        s, 409,
        "stopping a finished recording again changes nothing"
    );

    // ffprobe: H.264 + AAC, about four seconds.
    let file = dir.join(format!("{rid}.mp4"));
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,codec_type,width,height",
        ])
        .args(["-show_entries", "format=duration", "-of", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{probe}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3.0..8.0).contains(&duration),
        "duration {duration} s: {probe}"
    );

    // Every decoded frame (2 per second) shows A and never B.
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-vf", "fps=2", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = 640 * 360 * 3;
    let frames: Vec<&[u8]> = out.stdout.chunks_exact(frame).collect();
    assert!(frames.len() >= 6, "{} frames", frames.len());
    // The first frame may precede A's first decoded picture.
    for (i, f) in frames.iter().enumerate().skip(1) {
        let count = |c| f.chunks_exact(3).filter(|px| near(px, c)).count();
        assert!(count(GOLD) > 10_000, "frame {i}: A missing");
        assert_eq!(
            count(AZURE),
            0,
            "frame {i}: B (no consent) in the recording"
        );
    }
    for p in [&mut pa, &mut pb] {
        let _ = p.kill();
        let _ = p.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
