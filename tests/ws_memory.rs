//! Issue 18, item 6: the memory of closed meeting event sockets is given back to the
//! OS (glibc keeps freed heap until trimmed; the socket registry trims after bursts).

mod common;

use std::time::Duration;

use common::*;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// Measures what 1,000 event sockets cost and whether closing them gives it back.
/// Alone in its test binary, so no other test's memory shows in the process's RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_closed_sockets_give_their_memory_back() {
    let app = spawn_app_with(
        Backend::Sqlite,
        auth_settings(None),
        gremium_signaling::ApiSettings {
            websockets: gremium_signaling::WebSocketSettings {
                max_per_token: 1000,
                max_per_meeting: 5000,
                queue_messages: 64,
            },
            ..Default::default()
        },
    )
    .await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let alice = m.add_participant("Alice").await;
    let before = rss_kib();
    for round in 0..2 {
        let mut open = Vec::new();
        for _ in 0..1000 {
            open.push(ws_connect(app.addr, &mid, alice.client.token()).await);
        }
        let url = format!(
            "ws://{}/api/v1/meetings/{mid}/events?access_token={}",
            app.addr, alice.join
        );
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
            other => panic!("socket 1001 of one token: {:?}", other.map(|_| ())),
        }
        let peak = rss_kib();
        drop(open);
        while app.state.sockets().open_total() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let closed = rss_kib();
        eprintln!(
            "round {round}: RSS before {before} KiB, 1000 open {peak} KiB (+{} KiB), all closed {closed} KiB",
            peak - before,
        );
        assert!(
            closed - before < (peak - before) / 4,
            "closed sockets kept {} KiB of {} KiB",
            closed - before,
            peak - before
        );
    }
}
