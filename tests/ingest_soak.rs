//! 100 publish/leave cycles through the real WHIP endpoint and media plane: file
//! descriptors, threads and media sessions return to their baseline, and memory
//! stays bounded (the allocator keeps some pages, so RSS is bounded, not exact).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gremium_mediaplane::{GstMediaPlane, MediaPlaneSettings};
use gremium_pipelines::publisher::{build_publisher, PublisherSettings};
use gremium_pipelines::webrtc::{accept_answer, create_offer, negotiation_needed, IceSettings};
use gremium_pipelines::{Pipeline, PipelineSettings};
use gremium_signaling::{ApiSettings, AppState, Authenticator, Role};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_leave_cycles_leave_no_trace() {
    let loopback = IceSettings {
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..Default::default()
    };
    let db = fresh_db(Backend::Sqlite).await;
    let (sink, events) = gremium_signaling::event_channel();
    let vault = common::test_vault(&std::env::temp_dir().join("gremium-soak-objects"));
    let media = GstMediaPlane::new(
        MediaPlaneSettings {
            ice: loopback.clone(),
            dot_dir: std::env::temp_dir().join("gremium-soak-dot"),
            gather_timeout: Duration::from_secs(5),
            media_timeout: Duration::from_secs(10),
            max_publishers: 10,
            program: Default::default(),
            recordings_dir: std::env::temp_dir().join("gremium-soak-rec"),
            recordings_min_free: 0,
            store: vault.store().clone(),
            live_dir: std::env::temp_dir().join("gremium-soak-live"),
            streaming: Default::default(),
            recording: Default::default(),
        },
        sink,
    )
    .unwrap();
    let auth = Authenticator::new(auth_settings(None));
    let state = AppState::new(
        db,
        auth.clone(),
        Arc::new(media.clone()),
        vault,
        ApiSettings::default(),
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, gremium_signaling::router(state))
            .await
            .unwrap()
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let moderator = auth.issue_staff_token(
        "soak",
        &[Role::Moderator],
        now_secs(),
        Duration::from_secs(3600),
    );
    let m: serde_json::Value = http
        .post(format!("{base}/api/v1/meetings"))
        .bearer_auth(&moderator)
        .json(&serde_json::json!({"title": "Soak"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mid = m["id"].as_str().unwrap().to_string();
    let p: serde_json::Value = http
        .post(format!("{base}/api/v1/meetings/{mid}/participants"))
        .bearer_auth(&moderator)
        .json(&serde_json::json!({"display_name": "Soak"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let join = p["join_token"].as_str().unwrap().to_string();
    let mut ws = ws_connect(addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    gremium_pipelines::init().unwrap();

    let cycle = |n: usize| {
        let (http, base, mid, join, loopback) = (
            http.clone(),
            base.clone(),
            mid.clone(),
            join.clone(),
            loopback.clone(),
        );
        async move {
            let publisher = Pipeline::new(PipelineSettings {
                name: format!("soak-{n}"),
                dot_dir: std::env::temp_dir(),
            });
            let s = PublisherSettings {
                ice: loopback,
                width: 160,
                height: 90,
                fps: 15,
                ..Default::default()
            };
            let webrtc = build_publisher(&publisher, &s).unwrap();
            let mut ready = negotiation_needed(&webrtc);
            publisher.start().unwrap();
            ready.wait_for(|r| *r).await.unwrap();
            let offer = create_offer(&webrtc, Duration::from_secs(10))
                .await
                .unwrap();
            let resp = http
                .post(format!("{base}/whip/{mid}"))
                .bearer_auth(&join)
                .header("content-type", "application/sdp")
                .body(offer)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201, "cycle {n}");
            let location = resp.headers()["location"].to_str().unwrap().to_string();
            accept_answer(&webrtc, &resp.text().await.unwrap())
                .await
                .unwrap();
            (publisher, location)
        }
    };
    let leave = |location: String| {
        let (http, base, join) = (http.clone(), base.clone(), join.clone());
        async move {
            let r = http
                .delete(format!("{base}{location}"))
                .bearer_auth(&join)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    };

    // Warm up: GStreamer registers plugins, libnice and DTLS allocate once.
    for n in 0..3 {
        let (publisher, location) = cycle(n).await;
        wait_event(&mut ws, "participant_media_started", |_| true).await;
        leave(location).await;
        wait_event(&mut ws, "participant_media_stopped", |_| true).await;
        drop(publisher);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, threads0, rss0) = (count("/proc/self/fd"), count("/proc/self/task"), rss_kib());

    for n in 0..100 {
        let (publisher, location) = cycle(n).await;
        wait_event(&mut ws, "participant_media_started", |_| true).await;
        leave(location).await;
        wait_event(&mut ws, "participant_media_stopped", |_| true).await;
        drop(publisher);
    }
    // Let teardown on the blocking pool finish.
    let mut settled = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if count("/proc/self/fd") <= fds0 + 2 && count("/proc/self/task") <= threads0 + 4 {
            settled = true;
            break;
        }
    }
    let (fds1, threads1, rss1) = (count("/proc/self/fd"), count("/proc/self/task"), rss_kib());
    eprintln!("after 100 cycles: fds {fds0} -> {fds1}, threads {threads0} -> {threads1}, rss {rss0} KiB -> {rss1} KiB");
    assert!(
        settled,
        "fds {fds0} -> {fds1}, threads {threads0} -> {threads1}"
    );
    assert_eq!(media.active_meetings(), 0, "no media session left");
    assert!(
        rss1 < rss0 + 40 * 1024,
        "memory grew by {} KiB over 100 cycles",
        rss1.saturating_sub(rss0)
    );
}
