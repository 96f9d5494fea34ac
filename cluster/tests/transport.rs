//! The cluster transport on the machine's NATS (JetStream, 127.0.0.1:4222) and
//! PostgreSQL: a control side forwarding to media nodes, placement by capacity, a full
//! cluster, a silent node, events applied once by two replicas, the WebSocket relay.
//!
//! The media plane behind a node here is a stand-in that records the commands it
//! gets: what is tested is the transport, not media (the end-to-end tests in the
//! root package run the real pipelines).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gremium_cluster::events::{run_applier, run_ws_relay, WsRelay};
use gremium_cluster::subjects::Names;
use gremium_cluster::{
    ClusterMediaPlane, ControlSettings, MediaNode, Nats, NodeSettings, Registry,
};
use gremium_protocol::{
    CommandOutcome, Consent, MediaCommand, MediaEvent, MediaPlane, MediaPlaneError, MeetingContext,
};
use gremium_storage::*;
use tokio::sync::mpsc;
use uuid::Uuid;

const NATS: &str = "nats://127.0.0.1:4222";

/// Answers every command with `Applied` at a media time, and records it.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<MediaCommand>>,
}

#[async_trait::async_trait]
impl MediaPlane for Recorder {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        self.seen.lock().unwrap().push(command.clone());
        Ok(match command {
            MediaCommand::Publish { .. } => CommandOutcome::Published {
                session_id: Uuid::nil(),
                answer_sdp: "v=0\r\n".into(),
            },
            _ => CommandOutcome::Applied {
                media_time_ns: Some(42),
            },
        })
    }
}

fn names() -> Names {
    Names::new(&format!("tt{:08x}", rand::random::<u32>()))
}

async fn connect(names: &Names) -> Nats {
    Nats::connect(NATS, "transport-test", names.clone())
        .await
        .expect("NATS with JetStream at 127.0.0.1:4222")
}

async fn node(
    names: &Names,
    id: &str,
    capacity: u32,
    plane: Arc<Recorder>,
) -> (MediaNode, mpsc::UnboundedSender<MediaEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let node = MediaNode::start(
        connect(names).await,
        NodeSettings {
            node_id: id.into(),
            zone: None,
            capacity,
            address: "127.0.0.1".into(),
            meeting_units: 10,
        },
        plane,
        Arc::new(|| 0),
        rx,
    )
    .await
    .unwrap();
    (node, tx)
}

async fn new_meeting(db: &Db) -> Uuid {
    gremium_storage::testing::new_meeting(db)
        .await
        .expect("meeting")
}

fn publish(meeting_id: Uuid) -> MediaCommand {
    MediaCommand::Publish {
        meeting_id,
        participant_id: Uuid::new_v4(),
        offer_sdp: "v=0".into(),
        display_name: "Anna".into(),
        consent: Consent::default(),
        context: MeetingContext::default(),
        screen_share: false,
    }
}

async fn wait_nodes(registry: &Registry, n: usize) {
    for _ in 0..100 {
        if registry.live().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("registry shows {:?}, not {n} nodes", registry.live());
}

fn control(nats: Nats, db: Db, registry: Registry, timeout: Duration) -> ClusterMediaPlane {
    ClusterMediaPlane::new(
        nats,
        db,
        registry,
        ControlSettings {
            zone: None,
            meeting_units: 10,
            command_timeout: timeout,
            retry_after_secs: 7,
        },
    )
}

#[tokio::test]
async fn commands_reach_the_placed_node_and_a_full_cluster_says_retry_later() {
    let names = names();
    let db = gremium_storage::testing::fresh_postgres()
        .await
        .expect("postgres");
    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    // Room for one meeting each (10 units).
    let (node_a, _ea) = node(&names, "a", 15, a.clone()).await;
    let (node_b, _eb) = node(&names, "b", 15, b.clone()).await;
    let nats = connect(&names).await;
    let registry = Registry::follow(nats.clone());
    wait_nodes(&registry, 2).await;
    let plane = control(nats, db.clone(), registry, Duration::from_secs(5));

    // A consent change for a meeting that runs nowhere needs no node.
    let m1 = new_meeting(&db).await;
    let consent = MediaCommand::SetConsent {
        meeting_id: m1,
        participant_id: Uuid::new_v4(),
        recording: false,
        streaming: false,
    };
    assert_eq!(
        plane.execute(consent.clone()).await.unwrap(),
        CommandOutcome::Applied {
            media_time_ns: None
        }
    );
    assert!(db.placement(m1).await.unwrap().is_none());

    // The first publish places the meeting; later commands follow it, with the
    // node's own answer (the media time the gate closed at).
    let out = plane.execute(publish(m1)).await.unwrap();
    assert!(matches!(out, CommandOutcome::Published { .. }), "{out:?}");
    let p1 = db.placement(m1).await.unwrap().expect("placed");
    assert_eq!(p1.epoch, 1);
    assert_eq!(
        plane.execute(consent.clone()).await.unwrap(),
        CommandOutcome::Applied {
            media_time_ns: Some(42)
        }
    );
    let on_1 = if p1.node_id == "a" { &a } else { &b };
    assert_eq!(on_1.seen.lock().unwrap().len(), 2);

    // The second meeting goes to the other node.
    let m2 = new_meeting(&db).await;
    plane.execute(publish(m2)).await.unwrap();
    let p2 = db.placement(m2).await.unwrap().expect("placed");
    assert_ne!(p2.node_id, p1.node_id);

    // A third does not fit: NoCapacity with the retry delay, nothing placed.
    let m3 = new_meeting(&db).await;
    match plane.execute(publish(m3)).await {
        Err(MediaPlaneError::NoCapacity {
            message,
            retry_after_secs,
        }) => {
            assert_eq!(retry_after_secs, 7);
            assert!(message.contains("full"), "{message}");
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert!(db.placement(m3).await.unwrap().is_none());

    // Ending a meeting frees its reservation: the third fits now.
    plane
        .execute(MediaCommand::EndMeeting { meeting_id: m1 })
        .await
        .unwrap();
    assert!(db.placement(m1).await.unwrap().is_none());
    plane.execute(publish(m3)).await.unwrap();
    assert_eq!(db.placement(m3).await.unwrap().unwrap().node_id, p1.node_id);

    // A node that leaves: its meeting is placed again by the next publish, with the
    // next epoch.
    let survivor = if p1.node_id == "a" { "b" } else { "a" };
    let (gone, _stay) = if p1.node_id == "a" {
        (node_a, node_b)
    } else {
        (node_b, node_a)
    };
    gone.stop(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Reservations: the survivor holds m2 (10 of 15); m3 cannot move there.
    match plane.execute(publish(m3)).await {
        Err(MediaPlaneError::NoCapacity { .. }) => {}
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    plane
        .execute(MediaCommand::EndMeeting { meeting_id: m2 })
        .await
        .unwrap();
    plane.execute(publish(m3)).await.unwrap();
    let moved = db.placement(m3).await.unwrap().unwrap();
    assert_eq!((moved.node_id.as_str(), moved.epoch), (survivor, 2));
}

#[tokio::test]
async fn a_silent_node_gives_unavailable_within_the_timeout() {
    let names = names();
    let db = gremium_storage::testing::fresh_postgres()
        .await
        .expect("postgres");
    let nats = connect(&names).await;
    // A registry entry and a subscriber that never answers.
    let info = gremium_protocol::NodeInfo {
        node_id: "mute".into(),
        version: "0".into(),
        zone: None,
        capacity: 100,
        load_units: 0,
        cpu_percent: 0.0,
        meetings: 0,
        address: "127.0.0.1".into(),
        draining: false,
        heartbeat_at_ms: chrono_ms(),
    };
    nats.nodes
        .put("mute", serde_json::to_vec(&info).unwrap().into())
        .await
        .unwrap();
    let _sub = nats
        .client
        .subscribe(names.node_commands("mute"))
        .await
        .unwrap();
    let registry = Registry::follow(nats.clone());
    wait_nodes(&registry, 1).await;
    let plane = control(nats.clone(), db.clone(), registry, Duration::from_secs(1));
    let m = new_meeting(&db).await;
    let started = std::time::Instant::now();
    match plane.execute(publish(m)).await {
        Err(MediaPlaneError::Unavailable(why)) => {
            assert!(why.contains("mute") && why.contains("1 s"), "{why}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nobody listening at all: answered at once.
    drop(_sub);
    nats.client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    match plane.execute(publish(m)).await {
        Err(MediaPlaneError::Unavailable(why)) => assert!(why.contains("mute"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(900));
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn events_are_applied_once_across_two_replicas_in_order() {
    let names = names();
    let plane = Arc::new(Recorder::default());
    let (_node, events) = node(&names, "n", 100, plane).await;
    let applied: Arc<Mutex<Vec<(usize, Uuid, Uuid)>>> = Default::default();
    for replica in 0..2 {
        let nats = connect(&names).await;
        let applied = applied.clone();
        tokio::spawn(run_applier(nats, move |envelope| {
            let applied = applied.clone();
            async move {
                let MediaEvent::ParticipantMediaStarted { participant_id, .. } = envelope.event
                else {
                    return Err("unexpected event".into());
                };
                applied
                    .lock()
                    .unwrap()
                    .push((replica, envelope.event_id, participant_id));
                Ok(())
            }
        }));
    }
    let meeting = Uuid::new_v4();
    let sent: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    for p in &sent {
        events
            .send(MediaEvent::ParticipantMediaStarted {
                meeting_id: meeting,
                participant_id: *p,
            })
            .unwrap();
    }
    for _ in 0..200 {
        if applied.lock().unwrap().len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied = applied.lock().unwrap().clone();
    let order: Vec<Uuid> = applied.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(order, sent, "each once, in the order reported");
    let ids: std::collections::BTreeSet<Uuid> = applied.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), sent.len());
}

#[tokio::test]
async fn websocket_events_reach_every_replica() {
    let names = names();
    let (a, b) = (connect(&names).await, connect(&names).await);
    let got: Arc<Mutex<Vec<(char, Uuid, String)>>> = Default::default();
    let relay = WsRelay::start(a.clone());
    // Replica a published it (and delivered it itself): only b gets it relayed.
    for (tag, nats, origin) in [
        ('a', a.clone(), relay.origin().to_string()),
        ('b', b.clone(), "b".to_string()),
    ] {
        let got = got.clone();
        tokio::spawn(run_ws_relay(nats, origin, move |m, text| {
            got.lock().unwrap().push((tag, m, text.to_string()))
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let meeting = Uuid::new_v4();
    relay.publish(meeting, Arc::from("{\"type\":\"consent_changed\"}"));
    for _ in 0..100 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![('b', meeting, "{\"type\":\"consent_changed\"}".to_string())]
    );
    drop(b);
}

/// A private NATS server this test can kill.
struct PrivateNats {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

impl PrivateNats {
    fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("gremium-nats-{port}"));
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server)");
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateNats { child, dir, url }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node that cannot write its heartbeat for the registry's TTL ends the meetings
/// it runs: by then the control plane may have placed them elsewhere.
#[tokio::test]
async fn a_node_cut_off_from_nats_ends_its_meetings_itself() {
    let server = PrivateNats::start();
    let names = names();
    let recorder = Arc::new(Recorder::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let nats = Nats::connect(&server.url, "fenced-node", names.clone())
        .await
        .expect("private NATS");
    let _node = MediaNode::start(
        nats,
        NodeSettings {
            node_id: "n".into(),
            zone: None,
            capacity: 100,
            address: "127.0.0.1".into(),
            meeting_units: 10,
        },
        recorder.clone(),
        Arc::new(|| 1),
        rx,
    )
    .await
    .unwrap();
    let _keep = tx;
    // A command for a meeting reaches the node.
    let control = Nats::connect(&server.url, "control", names.clone())
        .await
        .unwrap();
    let meeting = Uuid::new_v4();
    let request = gremium_protocol::CommandRequest {
        epoch: 1,
        command: publish(meeting),
    };
    let reply = control
        .client
        .request(
            names.node_commands("n"),
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
    let reply: gremium_protocol::CommandReply = serde_json::from_slice(&reply.payload).unwrap();
    assert!(
        matches!(reply, gremium_protocol::CommandReply::Ok(_)),
        "{reply:?}"
    );

    // NATS goes away: within the TTL and a few beats the node ends the meeting.
    drop(server);
    let mut ended_after = None;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let ended = recorder.seen.lock().unwrap().iter().any(
            |c| matches!(c, MediaCommand::EndMeeting { meeting_id } if *meeting_id == meeting),
        );
        if ended {
            ended_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended_after = ended_after.expect("the node ended its meeting after losing NATS");
    assert!(
        ended_after >= Duration::from_secs(2) && ended_after < Duration::from_secs(6),
        "{ended_after:?}"
    );
}

/// What arrives on a node's subjects is not trusted to be well formed: a malformed
/// command or admin request is answered with the reason (`Rejected`, an admin error),
/// an oversized one too, and the node goes on serving well-formed ones.
#[tokio::test]
async fn malformed_requests_on_the_wire_get_a_reason_and_the_node_keeps_serving() {
    use gremium_protocol::{CommandReply, CommandRequest, NodeAdminReply};
    let names = names();
    let plane = Arc::new(Recorder::default());
    let (node, _events) = node(&names, "w", 100, plane.clone()).await;
    let nats = connect(&names).await;
    let ask = |subject: String, body: Vec<u8>| {
        let client = nats.client.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), client.request(subject, body.into()))
                .await
                .expect("an answer within 5 s")
                .expect("the node answers")
                .payload
        }
    };
    let cmd = names.node_commands("w");
    let big = format!(
        "{{\"epoch\":1,\"command\":{{\"type\":\"x\",\"pad\":\"{}\"}}}}",
        "x".repeat(512 * 1024)
    );
    for body in [
        b"{not json".to_vec(),
        b"".to_vec(),
        b"{\"epoch\":\"one\"}".to_vec(),
        b"{\"epoch\":1,\"command\":{\"type\":\"no_such_command\"}}".to_vec(),
        b"\x00\x01\x02\xff".to_vec(),
        big.into_bytes(),
    ] {
        let reply: CommandReply = serde_json::from_slice(&ask(cmd.clone(), body).await).unwrap();
        match reply {
            CommandReply::Err(MediaPlaneError::Rejected(reason)) => {
                assert!(reason.contains("malformed media command"), "{reason}")
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }
    assert!(
        plane.seen.lock().unwrap().is_empty(),
        "nothing reached the plane"
    );

    let admin = names.node_admin("w");
    for body in [b"[]".to_vec(), b"{\"drain\":\"yes\"}".to_vec()] {
        let reply: NodeAdminReply =
            serde_json::from_slice(&ask(admin.clone(), body).await).unwrap();
        match reply {
            NodeAdminReply::Err(reason) => {
                assert!(reason.contains("malformed admin request"), "{reason}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert!(
        !*node.draining().borrow(),
        "a malformed request changed nothing"
    );

    // Still serving.
    let m = Uuid::new_v4();
    let good = serde_json::to_vec(&CommandRequest {
        epoch: 1,
        command: publish(m),
    })
    .unwrap();
    let reply: CommandReply = serde_json::from_slice(&ask(cmd, good).await).unwrap();
    assert!(
        matches!(reply, CommandReply::Ok(CommandOutcome::Published { .. })),
        "{reply:?}"
    );
    node.stop(Duration::from_secs(1)).await;
}
