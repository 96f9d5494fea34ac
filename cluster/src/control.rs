//! The control replica's media plane: places a meeting on a media node when its
//! media is first needed and forwards every command to the node that owns it.
//!
//! A command is answered with what the node's in-process plane answered. A node that
//! does not answer in time, or has left the registry, gives `Unavailable` with a
//! reason (503), never a hang. A full cluster gives `NoCapacity` (503 + Retry-After).

use std::time::Duration;

use gremium_protocol::{
    CommandOutcome, CommandReply, CommandRequest, MediaCommand, MediaPlane, MediaPlaneError,
    NodeInfo,
};
use gremium_storage::{Db, PlaceOutcome, Placement};
use uuid::Uuid;

use crate::nats::{Nats, FENCED_AFTER, NODE_TTL};
use crate::node::unix_ms;
use crate::registry::Registry;

/// How a control replica places and forwards (validated config).
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Zone new meetings are placed in (any zone when `None`).
    pub zone: Option<String>,
    /// Cost units reserved for a meeting at placement.
    pub meeting_units: u32,
    /// How long a node may take to answer a command.
    pub command_timeout: Duration,
    /// `Retry-After` of a full cluster.
    pub retry_after_secs: u32,
}

/// A [`MediaPlane`] whose meetings run on media nodes.
pub struct ClusterMediaPlane {
    nats: Nats,
    db: Db,
    registry: Registry,
    settings: ControlSettings,
}

impl ClusterMediaPlane {
    /// Forward through `nats`, placing with `registry` and the placement table in `db`.
    pub fn new(nats: Nats, db: Db, registry: Registry, settings: ControlSettings) -> Self {
        ClusterMediaPlane {
            nats,
            db,
            registry,
            settings,
        }
    }

    /// Place (or move) a meeting on the live node with the most spare capacity;
    /// compare-and-swap on the epoch, so two replicas never place it twice.
    async fn place(
        &self,
        meeting: Uuid,
        previous: Option<Placement>,
    ) -> Result<Placement, MediaPlaneError> {
        let nodes = self.registry.live();
        let totals = self.db.placement_totals().await.map_err(db_error)?;
        let node = pick(
            &nodes,
            &totals,
            self.settings.zone.as_deref(),
            self.settings.meeting_units,
        )
        .map_err(|message| MediaPlaneError::NoCapacity {
            message,
            retry_after_secs: self.settings.retry_after_secs,
        })?;
        let outcome = self
            .db
            .place_meeting(
                meeting,
                &node,
                self.settings.meeting_units as i32,
                previous.as_ref().map(|p| p.epoch),
                unix_ms(),
            )
            .await
            .map_err(db_error)?;
        match outcome {
            PlaceOutcome::Placed(p) => {
                tracing::info!(%meeting, node = %p.node_id, epoch = p.epoch, "meeting placed");
                Ok(p)
            }
            // Another replica placed it first: theirs counts.
            PlaceOutcome::Conflict(p) => Ok(p),
        }
    }

    async fn send(&self, placement: &Placement, command: MediaCommand) -> Sent {
        let request = CommandRequest {
            epoch: placement.epoch as u64,
            command,
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => {
                return Sent::Answer(Err(MediaPlaneError::Failed(format!(
                    "command not serializable: {e}"
                ))))
            }
        };
        let node = &placement.node_id;
        let timeout = self.settings.command_timeout;
        let asked = tokio::time::timeout(
            timeout,
            self.nats
                .client
                .request(self.nats.names.node_commands(node), body.into()),
        )
        .await;
        let message = match asked {
            Err(_) => {
                return Sent::Unanswered(format!(
                    "media node {node} did not answer within {} s",
                    timeout.as_secs()
                ))
            }
            Ok(Err(e)) => {
                use async_nats::RequestErrorKind;
                let why = match e.kind() {
                    RequestErrorKind::NoResponders => return Sent::NobodyListens,
                    RequestErrorKind::TimedOut => "did not answer in time".to_string(),
                    RequestErrorKind::Other => format!("could not be asked: {e}"),
                };
                return Sent::Unanswered(format!("media node {node} {why}"));
            }
            Ok(Ok(message)) => message,
        };
        Sent::Answer(
            match serde_json::from_slice::<CommandReply>(&message.payload) {
                Ok(reply) => reply.into(),
                Err(e) => Err(MediaPlaneError::Failed(format!(
                    "unreadable reply from media node {node}: {e}"
                ))),
            },
        )
    }

    /// The reservation of a meeting that ended is freed (only this epoch's).
    async fn release(&self, meeting: Uuid, placement: &Placement) {
        if let Err(e) = self.db.remove_placement(meeting, placement.epoch).await {
            tracing::warn!(%meeting, error = %e, "placement of an ended meeting not removed");
        }
    }
}

/// What became of a command sent to a node.
enum Sent {
    /// The node answered.
    Answer(Result<CommandOutcome, MediaPlaneError>),
    /// No answer in time, or the request could not be made (why).
    Unanswered(String),
    /// No process listens on the node's command subject: the node is gone, or cut
    /// off from NATS (then it ends its meetings itself, see [`FENCED_AFTER`]).
    NobodyListens,
}

#[async_trait::async_trait]
impl MediaPlane for ClusterMediaPlane {
    /// A placed meeting's commands go to its node (a late heartbeat must not turn a
    /// consent withdrawal into a no-op). A node silent for [`FENCED_AFTER`] has ended
    /// its meetings itself: a command that needs media moves the meeting, any other
    /// is answered as for a meeting that runs nowhere. Between the registry's TTL
    /// and that, a node that does not answer loses a meeting only to a command that
    /// needs media (a publisher coming back); other commands get 503.
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        let meeting = command.meeting_id();
        let ends = matches!(command, MediaCommand::EndMeeting { .. });
        let needs = needs_media(&command);
        let placement = match self.db.placement(meeting).await.map_err(db_error)? {
            Some(p) => p,
            None if needs => self.place(meeting, None).await?,
            None => return idle_answer(&command),
        };
        let silent = self.registry.silent_for(&placement.node_id);
        let expired = silent.is_some_and(|d| d >= NODE_TTL);
        let fenced = silent.is_some_and(|d| d >= FENCED_AFTER);
        if fenced {
            // The node ended its meetings itself by now (or is gone).
            if needs {
                return self.move_and_send(meeting, placement, command).await;
            }
            if ends {
                self.release(meeting, &placement).await;
            }
            return idle_answer(&command);
        }
        let answer = match self.send(&placement, command.clone()).await {
            Sent::Answer(answer) => answer,
            Sent::Unanswered(_) | Sent::NobodyListens if needs && expired => {
                return self.move_and_send(meeting, placement, command).await;
            }
            Sent::Unanswered(why) => Err(MediaPlaneError::Unavailable(why)),
            Sent::NobodyListens => Err(MediaPlaneError::Unavailable(format!(
                "media node {} is not listening; try again in a few seconds",
                placement.node_id
            ))),
        };
        if ends && answer.is_ok() {
            self.release(meeting, &placement).await;
        }
        answer
    }
}

impl ClusterMediaPlane {
    /// The meeting's node is gone: place it again (next epoch) and send there.
    async fn move_and_send(
        &self,
        meeting: Uuid,
        from: Placement,
        command: MediaCommand,
    ) -> Result<CommandOutcome, MediaPlaneError> {
        let moved = self.place(meeting, Some(from)).await?;
        match self.send(&moved, command).await {
            Sent::Answer(answer) => answer,
            Sent::Unanswered(why) => Err(MediaPlaneError::Unavailable(why)),
            Sent::NobodyListens => Err(MediaPlaneError::Unavailable(format!(
                "media node {} is not listening",
                moved.node_id
            ))),
        }
    }
}

/// Commands that start media on a node (and so may place the meeting).
fn needs_media(command: &MediaCommand) -> bool {
    matches!(
        command,
        MediaCommand::Publish { .. }
            | MediaCommand::StartRecording { .. }
            | MediaCommand::StartStream { .. }
            | MediaCommand::RecoverRecording { .. }
    )
}

/// What a meeting that runs nowhere answers: what the in-process plane answers for a
/// meeting without an actor (consent and layout take effect on the next start; there
/// is no session to trickle into or end).
fn idle_answer(command: &MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
    match command {
        MediaCommand::AddIceCandidates { .. } | MediaCommand::Unpublish { .. } => Err(
            MediaPlaneError::NotFound("publishing session (its media node is gone)".into()),
        ),
        _ => Ok(CommandOutcome::Applied {
            media_time_ns: None,
        }),
    }
}

/// The node with the most spare units in the zone, counting both what a node
/// reports and what is placed on it.
fn pick(
    nodes: &[NodeInfo],
    totals: &[(String, i64, i64)],
    zone: Option<&str>,
    cost: u32,
) -> Result<String, String> {
    let statuses = join(nodes.to_vec(), totals);
    let ttl = crate::nats::NODE_TTL.as_millis() as i64;
    crate::placement::choose_node(&statuses, zone, cost, unix_ms(), ttl)
        .map(|n| n.info.node_id.clone())
        .map_err(|no_room| no_room.to_string())
}

fn db_error(e: gremium_storage::StorageError) -> MediaPlaneError {
    MediaPlaneError::Unavailable(format!("placement table: {e}"))
}

/// Placement totals joined with the live registry, for status displays.
pub async fn status(
    db: &Db,
    registry: &Registry,
) -> Result<gremium_protocol::ClusterStatus, String> {
    let totals = db.placement_totals().await.map_err(|e| e.to_string())?;
    let nodes = join(registry.live(), &totals);
    Ok(gremium_protocol::ClusterStatus {
        mode: "cluster".into(),
        nodes,
    })
}

/// Registry entries with what the placement table reserves on each node.
fn join(nodes: Vec<NodeInfo>, totals: &[(String, i64, i64)]) -> Vec<gremium_protocol::NodeStatus> {
    nodes
        .into_iter()
        .map(|info| {
            let (meetings, units) = totals
                .iter()
                .find(|(id, _, _)| *id == info.node_id)
                .map(|(_, m, u)| (*m, *u))
                .unwrap_or_default();
            gremium_protocol::NodeStatus {
                info,
                placed_meetings: meetings.max(0) as u32,
                placed_units: units.max(0) as u32,
            }
        })
        .collect()
}
