//! The meeting's WebSocket events as a test sees them: connect, the next event, wait
//! for one of a kind (with a deadline, printing what passed meanwhile).
//!
//! Owns: reading events. Must not: make requests.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(addr: SocketAddr, meeting: &str, token: &str) -> Ws {
    let url = format!("ws://{addr}/api/v1/meetings/{meeting}/events?access_token={token}");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// Next JSON message, or panic after 5 s.
pub async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Skip events until one of `kind` matches `pred`; panics after 5 s.
pub async fn wait_event(ws: &mut Ws, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_event_for(ws, Duration::from_secs(5), kind, pred).await
}

/// As [`wait_event`] with a deadline of `within`.
pub async fn wait_event_for(
    ws: &mut Ws,
    within: Duration,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // The whole window, not next_event's 5 s: quiet stretches are allowed.
        let e = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket closed or failed waiting for {kind}: {other:?}"),
            Err(_) => panic!("no {kind} event within {within:?}"),
        };
        if e["type"] == kind && pred(&e) {
            return e;
        }
        // Shown with a failing test's output: what happened while it waited.
        eprintln!("event while waiting for {kind}: {e}");
    }
}

/// Wait (20 s at most) until `n` participants' media started and their cameras
/// are on. Media starts with the first decoded track, often the audio: a program
/// made before a camera's first frame shows that participant's card at first.
pub async fn wait_cameras_on(ws: &mut Ws, n: usize) {
    use std::collections::HashSet;
    let (mut started, mut on) = (HashSet::new(), HashSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while started.len() < n || on.len() < n {
        let e = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket closed or failed waiting for cameras: {other:?}"),
            Err(_) => panic!("{} started, {} cameras on, of {n}", started.len(), on.len()),
        };
        let who = e["participant_id"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("participant_media_started") => {
                started.insert(who);
            }
            Some("camera_changed") if e["on"] == true => {
                on.insert(who);
            }
            Some("camera_changed") => {
                on.remove(&who);
            }
            _ => {}
        }
    }
}

/// Read until the server closes the socket; the close frame's (code, reason), or
/// `None` when the connection just ended. Panics if it stays open for `within`.
pub async fn wait_closed(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(None) | Ok(Some(Err(_))) => return None,
            Err(_) => panic!("socket still open after {within:?}"),
        }
    }
}

/// Every JSON event a socket gets within `window` (none is an empty list).
pub async fn events_within(ws: &mut Ws, window: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + window;
    let mut events = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            if let Ok(e) = serde_json::from_str(t.as_str()) {
                events.push(e);
            }
        }
    }
    events
}
