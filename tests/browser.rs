//! A real browser publishes over WHIP: headless Chromium (Debian's package, with its
//! fake camera and microphone) in a network namespace that has only `lo`, so neither
//! side can gather or send to any address but 127.0.0.1. Needs root (for `ip netns`)
//! and chromium; `scripts/test.sh` installs chromium and CI runs as root.

mod common;

use std::process::Command;

use common::netns::{is_root, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_gremium");

#[test]
fn headless_chromium_publishes_camera_and_microphone_over_whip() {
    assert!(
        is_root(),
        "this test needs root for `ip netns` (CI runs as root)"
    );
    common::assert_chromium();

    // The real `gremium serve` (run.sh starts it), not the in-process app: this test
    // covers the binary's configuration and token command too.
    let ns = Netns::create(&format!("gremium-browser-{}", std::process::id()));
    let work =
        std::env::temp_dir().join(format!("gremium-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let out = Command::new("timeout")
        .args(["90", "ip", "netns", "exec", &ns.0, "bash"])
        .arg(dir.join("run.sh"))
        .arg(BIN)
        .arg(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let diagnostics = || {
        let chrome = std::fs::read_to_string(work.join("chrome.log")).unwrap_or_default();
        let server = std::fs::read_to_string(work.join("server.log")).unwrap_or_default();
        format!(
            "stdout:\n{stdout}\nstderr:\n{}\nchrome (tail):\n{}\nserver:\n{server}",
            String::from_utf8_lossy(&out.stderr),
            chrome.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        )
    };
    assert!(out.status.success(), "{}", diagnostics());
    assert!(
        stdout.contains("RESULT WHIP-STATUS 201 /whip/"),
        "WHIP POST answered 201 with a Location\n{}",
        diagnostics()
    );
    assert!(
        stdout.contains("RESULT PC-STATE connected"),
        "the browser's peer connection connected\n{}",
        diagnostics()
    );
    let sent: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT SENT-BYTES "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        sent > 10_000,
        "the browser sent media ({sent} bytes)\n{}",
        diagnostics()
    );
    assert!(
        stdout.contains(r#"RESULT gremium_media_events_total{type="participant_media_started"} 1"#),
        "Gremium announced the browser's media\n{}",
        diagnostics()
    );
    for kind in ["video", "audio"] {
        let decoded: u64 = stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "RESULT gremium_ingest_decoded_buffers_total{{kind=\"{kind}\"}} "
                ))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            decoded >= 10,
            "decoded {kind} from the browser reached the media session ({decoded} buffers)\n{}",
            diagnostics()
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
