//! Publishers: the real `gremium publish` client as a child process (killed on drop
//! through [`Publisher`]), and a webrtcbin publisher for tests that speak WHIP by hand.
//!
//! Owns: how test media is made (colours, tones, sizes). Must not: assert anything
//! about what the server does with it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gremium_pipelines::webrtc::IceSettings;

/// A small synthetic camera (320x180@15 in a solid `color`, RRGGBB) and a tone,
/// publishing for `secs` seconds.
pub fn spawn_small_publisher(
    base: &str,
    mid: &str,
    join: &str,
    color: &str,
    secs: u32,
) -> std::process::Child {
    spawn_small_publisher_with(base, mid, join, color, secs, &[])
}

/// [`spawn_small_publisher`] with `extra` flags (e.g. `--tone 1000`).
pub fn spawn_small_publisher_with(
    base: &str,
    mid: &str,
    join: &str,
    color: &str,
    secs: u32,
    extra: &[&str],
) -> std::process::Child {
    let secs = secs.to_string();
    let mut args = vec![
        "--color",
        color,
        "--width",
        "320",
        "--height",
        "180",
        "--fps",
        "15",
        "--duration",
        &secs,
    ];
    args.extend_from_slice(extra);
    spawn_publisher(base, mid, join, &args)
}

/// Start the real `gremium publish` client (VP8, loopback ICE) for a participant;
/// `extra` adds flags such as `--color`, `--tone`, `--screen`.
pub fn spawn_publisher(base: &str, mid: &str, join: &str, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gremium"))
        .args([
            "publish",
            "--server",
            base,
            "--meeting",
            mid,
            "--token",
            join,
        ])
        .args(["--codec", "vp8", "--ice-address", "127.0.0.1"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A small webrtcbin publisher on loopback (160x90, 10 fps; a test pattern, or one
/// `color`), started and with its offer created: its pipeline, its webrtcbin and the
/// offer, for tests that speak WHIP by hand.
pub async fn loopback_publisher_offer(
    name: &str,
    color: Option<u32>,
) -> (gremium_pipelines::Pipeline, gst::Element, String) {
    loopback_publisher_offer_at(name, color, 10).await
}

/// [`loopback_publisher_offer`] at `fps` frames a second.
pub async fn loopback_publisher_offer_at(
    name: &str,
    color: Option<u32>,
    fps: i32,
) -> (gremium_pipelines::Pipeline, gst::Element, String) {
    use gremium_pipelines::publisher::{build_publisher, PublisherSettings};
    use gremium_pipelines::webrtc::{create_offer, negotiation_needed};
    use gremium_pipelines::{Pipeline, PipelineSettings};
    gremium_pipelines::init().unwrap();
    let publisher = Pipeline::new(PipelineSettings {
        name: name.into(),
        dot_dir: std::env::temp_dir(),
    });
    let settings = PublisherSettings {
        ice: IceSettings {
            local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ..Default::default()
        },
        color,
        width: 160,
        height: 90,
        fps,
        ..Default::default()
    };
    let webrtc = build_publisher(&publisher, &settings).unwrap();
    let mut ready = negotiation_needed(&webrtc);
    publisher.start().unwrap();
    ready.wait_for(|r| *r).await.unwrap();
    let offer = create_offer(&webrtc, Duration::from_secs(10))
        .await
        .unwrap();
    (publisher, webrtc, offer)
}

/// A running `gremium publish`, killed when dropped, so a failing assertion does not
/// leave it publishing into the next test.
pub struct Publisher(pub std::process::Child);

impl Publisher {
    /// End it now (as a participant closing the app would, abruptly).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

impl super::client::Participant {
    /// They publish a small camera in a solid `color` (RRGGBB, 320x180@15) and a tone
    /// for `secs` seconds.
    pub fn publish_small(&self, color: &str, secs: u32) -> Publisher {
        self.publish_small_with(color, secs, &[])
    }

    /// [`Self::publish_small`] with `extra` flags (e.g. `--tone 1000`).
    pub fn publish_small_with(&self, color: &str, secs: u32, extra: &[&str]) -> Publisher {
        Publisher(spawn_small_publisher_with(
            &self.client.base,
            &self.meeting_id,
            &self.join,
            color,
            secs,
            extra,
        ))
    }

    /// They publish with the real client and `extra` flags (`--color`, `--screen`…).
    pub fn publish(&self, extra: &[&str]) -> Publisher {
        Publisher(spawn_publisher(
            &self.client.base,
            &self.meeting_id,
            &self.join,
            extra,
        ))
    }
}
