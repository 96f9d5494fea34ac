//! A media node: registers itself, serves the media protocol for the meetings
//! placed on it, and publishes its media events to JetStream.
//!
//! The node is handed a [`MediaPlane`] (the in-process GStreamer plane); it never
//! touches a pipeline itself. Commands run concurrently, as they do when HTTP
//! handlers call the in-process plane: the plane's actor per meeting orders them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::Publish;
use futures_util::StreamExt;
use gremium_protocol::{
    CommandReply, CommandRequest, EventEnvelope, MediaEvent, MediaPlane, MediaPlaneError, NodeInfo,
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::nats::{Nats, HEARTBEAT};

/// What a node says about itself (validated config).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Node id, unique in the cluster.
    pub node_id: String,
    /// Zone label.
    pub zone: Option<String>,
    /// Cost units the node carries.
    pub capacity: u32,
    /// Address of its WebRTC candidates.
    pub address: String,
    /// Cost units one running meeting is counted with in the node's load.
    pub meeting_units: u32,
}

/// What the node reads off its media plane for the registry.
pub type MeetingCount = Arc<dyn Fn() -> usize + Send + Sync>;

/// A running media node. Dropping it does not stop it; call [`MediaNode::stop`].
pub struct MediaNode {
    nats: Nats,
    settings: NodeSettings,
    draining: Arc<watch::Sender<bool>>,
    /// Set once the node drains to exit: an operator cannot undo that drain.
    exiting: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MediaNode {
    /// Register the node and start serving commands and publishing `events`.
    pub async fn start(
        nats: Nats,
        settings: NodeSettings,
        plane: Arc<dyn MediaPlane>,
        meetings: MeetingCount,
        events: mpsc::UnboundedReceiver<MediaEvent>,
    ) -> Result<MediaNode, crate::ClusterError> {
        let commands = nats
            .client
            .subscribe(nats.names.node_commands(&settings.node_id))
            .await
            .map_err(|e| crate::ClusterError::Nats(format!("subscribing to commands: {e}")))?;
        let admin = nats
            .client
            .subscribe(nats.names.node_admin(&settings.node_id))
            .await
            .map_err(|e| {
                crate::ClusterError::Nats(format!("subscribing to admin requests: {e}"))
            })?;
        let (draining, draining_rx) = watch::channel(false);
        let draining = Arc::new(draining);
        let exiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The first entry before the first command can be placed here.
        let mut heart = Heart::new(settings.clone(), meetings.clone());
        let _ = put_entry(&nats, &heart.beat(false)).await;
        let epochs = Arc::new(Mutex::new(HashMap::new()));
        let tasks = vec![
            tokio::spawn(serve_commands(
                nats.clone(),
                commands,
                plane.clone(),
                epochs.clone(),
            )),
            tokio::spawn(publish_events(
                nats.clone(),
                settings.node_id.clone(),
                epochs.clone(),
                events,
            )),
            tokio::spawn(heartbeat(
                nats.clone(),
                heart,
                draining_rx,
                Fence { plane, epochs },
            )),
            tokio::spawn(crate::admin::serve(
                nats.clone(),
                settings.node_id.clone(),
                admin,
                draining.clone(),
                exiting.clone(),
                meetings,
            )),
        ];
        tracing::info!(node_id = %settings.node_id, capacity = settings.capacity, "media node registered");
        Ok(MediaNode {
            nats,
            settings,
            draining,
            exiting,
            tasks,
        })
    }

    /// Take no new meetings (the registry says so within a heartbeat).
    pub fn set_draining(&self, draining: bool) {
        self.draining.send_replace(draining);
    }

    /// Take no new meetings, for good: the process exits once its meetings have
    /// ended (`SIGTERM`); an operator's `gremium cluster drain --undo` is refused.
    pub fn drain_to_exit(&self) {
        self.exiting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.draining.send_replace(true);
    }

    /// Whether the node takes no new meetings (by `SIGTERM` or an operator's
    /// `gremium cluster drain`), as it changes.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Leave the registry and stop serving commands. Events already queued are
    /// published first (bounded by `grace`).
    pub async fn stop(self, grace: Duration) {
        let mut tasks = self.tasks.into_iter();
        // Heartbeat, command and admin service end now; the event publisher drains.
        let serve = tasks.next();
        let publisher = tasks.next();
        let heart = tasks.next();
        let admin = tasks.next();
        for t in [serve, heart, admin].into_iter().flatten() {
            t.abort();
        }
        if let Err(e) = self.nats.nodes.delete(&self.settings.node_id).await {
            tracing::warn!(error = %e, "registry entry not removed; it expires by itself");
        }
        if let Some(p) = publisher {
            let _ = tokio::time::timeout(grace, p).await;
        }
        let _ = self.nats.client.flush().await;
    }
}

/// Write the node's entry; false when it was not written.
async fn put_entry(nats: &Nats, info: &NodeInfo) -> bool {
    match serde_json::to_vec(info) {
        // Bounded, so that a node cut off from NATS notices it within a beat.
        Ok(body) => match tokio::time::timeout(
            Duration::from_millis(900),
            nats.nodes.put(&info.node_id, body.into()),
        )
        .await
        {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registry heartbeat not written");
                false
            }
            Err(_) => {
                tracing::warn!("registry heartbeat not written within 0.9 s");
                false
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "registry entry not serializable");
            false
        }
    }
}

/// Self-fencing: a node whose registry entry may have expired (no heartbeat written
/// for the registry's TTL: NATS away, or the process was frozen) must assume its
/// meetings were placed elsewhere, and ends them before it takes part again.
struct Fence {
    plane: Arc<dyn MediaPlane>,
    epochs: Arc<Mutex<HashMap<Uuid, u64>>>,
}

impl Fence {
    async fn end_all(&self) {
        let meetings: Vec<Uuid> = {
            let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
            epochs.drain().map(|(m, _)| m).collect()
        };
        for meeting_id in meetings {
            tracing::warn!(%meeting_id, "registry entry expired: ending the meeting here (it may run elsewhere now)");
            if let Err(e) = self
                .plane
                .execute(gremium_protocol::MediaCommand::EndMeeting { meeting_id })
                .await
            {
                tracing::warn!(%meeting_id, error = %e, "fenced meeting not ended");
            }
        }
    }
}

/// The registry entry, refreshed each beat with the load and CPU measured since.
struct Heart {
    settings: NodeSettings,
    meetings: MeetingCount,
    cpu: CpuMeter,
}

impl Heart {
    fn new(settings: NodeSettings, meetings: MeetingCount) -> Heart {
        Heart {
            settings,
            meetings,
            cpu: CpuMeter::new(),
        }
    }

    fn beat(&mut self, draining: bool) -> NodeInfo {
        let meetings = (self.meetings)() as u32;
        NodeInfo {
            node_id: self.settings.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            zone: self.settings.zone.clone(),
            capacity: self.settings.capacity,
            load_units: meetings.saturating_mul(self.settings.meeting_units),
            cpu_percent: self.cpu.percent(),
            meetings,
            address: self.settings.address.clone(),
            draining,
            heartbeat_at_ms: unix_ms(),
        }
    }
}

async fn heartbeat(
    nats: Nats,
    mut heart: Heart,
    mut draining: watch::Receiver<bool>,
    fence: Fence,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A drain is announced at once, not at the next beat.
            changed = draining.changed() => if changed.is_err() { return },
        }
        if written.elapsed() >= crate::nats::NODE_TTL {
            fence.end_all().await;
        }
        let info = heart.beat(*draining.borrow());
        if put_entry(&nats, &info).await {
            written = std::time::Instant::now();
        }
    }
}

/// Serve requests on the node's command subject until the subscription ends.
async fn serve_commands(
    nats: Nats,
    mut commands: async_nats::Subscriber,
    plane: Arc<dyn MediaPlane>,
    epochs: Arc<Mutex<HashMap<Uuid, u64>>>,
) {
    while let Some(msg) = commands.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (nats, plane, epochs) = (nats.clone(), plane.clone(), epochs.clone());
        tokio::spawn(async move {
            let reply = match serde_json::from_slice::<CommandRequest>(&msg.payload) {
                Ok(request) => execute(&*plane, &epochs, request).await,
                Err(e) => CommandReply::Err(MediaPlaneError::Rejected(format!(
                    "malformed media command: {e}"
                ))),
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = nats.client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "command reply not sent");
            }
        });
    }
}

/// Run one command, refusing one sent with an older placement epoch than the node
/// has seen for the meeting (its sender acts on a stale placement).
async fn execute(
    plane: &dyn MediaPlane,
    epochs: &Mutex<HashMap<Uuid, u64>>,
    request: CommandRequest,
) -> CommandReply {
    let meeting = request.command.meeting_id();
    {
        let mut known = epochs.lock().unwrap_or_else(|p| p.into_inner());
        let seen = known.entry(meeting).or_insert(request.epoch);
        if request.epoch < *seen {
            return CommandReply::Err(MediaPlaneError::Unavailable(format!(
                "stale placement epoch {} (the node holds {})",
                request.epoch, seen
            )));
        }
        *seen = request.epoch;
    }
    plane.execute(request.command).await.into()
}

/// Publish every media event to JetStream, in order, each with its own id. An event
/// that cannot be published (NATS away) is retried until it is: none is dropped while
/// the process lives.
async fn publish_events(
    nats: Nats,
    node_id: String,
    epochs: Arc<Mutex<HashMap<Uuid, u64>>>,
    mut events: mpsc::UnboundedReceiver<MediaEvent>,
) {
    while let Some(event) = events.recv().await {
        let epoch = epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&event.meeting_id())
            .copied()
            .unwrap_or_default();
        let envelope = EventEnvelope {
            event_id: Uuid::new_v4(),
            node_id: node_id.clone(),
            epoch,
            at_ms: unix_ms(),
            event,
        };
        let subject = nats.names.events(envelope.event.meeting_id());
        let Ok(body) = serde_json::to_vec(&envelope) else {
            tracing::error!("media event not serializable");
            continue;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let publish = Publish::build()
                .payload(body.clone().into())
                .message_id(envelope.event_id.to_string());
            let acked = match nats.jetstream.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match acked {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "media event not published yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// CPU of this process since the last reading, percent of one core (Linux
/// `/proc/self/stat`; 0 elsewhere).
struct CpuMeter {
    last: Option<(std::time::Instant, u64)>,
}

impl CpuMeter {
    fn new() -> CpuMeter {
        CpuMeter {
            last: cpu_ticks().map(|t| (std::time::Instant::now(), t)),
        }
    }

    fn percent(&mut self) -> f32 {
        let (Some((at, before)), Some(now_ticks)) = (self.last, cpu_ticks()) else {
            return 0.0;
        };
        let now = std::time::Instant::now();
        self.last = Some((now, now_ticks));
        let secs = now.duration_since(at).as_secs_f32();
        if secs <= 0.0 {
            return 0.0;
        }
        // Linux reports in USER_HZ, 100 on every architecture Gremium runs on.
        (now_ticks.saturating_sub(before) as f32 / 100.0) / secs * 100.0
    }
}

fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
