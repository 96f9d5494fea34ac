//! Gremium's control plane over HTTP.
//!
//! Owns: the REST API under `/api/v1` (meetings, participants, consent, recordings,
//! streams, public switch, audit, the cluster's state), the meeting WebSocket events
//! (and the hook that fans them out across control replicas), bearer-token auth
//! (local keys and OIDC/JWKS), the output lifecycles as seen by the API, OpenAPI,
//! health and metrics.
//!
//! Must not: depend on GStreamer. It drives the media plane only through the
//! [`gremium_protocol::MediaPlane`] trait, so the media plane may live in this process
//! or on another node.

pub mod access;
pub mod api;
pub mod auth;
pub mod disclosure;
pub mod error;
pub mod events;
pub mod extract;
pub mod manifest;
pub mod media;
pub mod openapi;
mod ops;
pub mod retention;
pub mod signin;
pub mod sockets;
pub mod text;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use chrono::{TimeZone, Utc};
use gremium_protocol::MediaPlane;
use gremium_storage::{ConsentWriter, Db, Vault};
use uuid::Uuid;

pub use api::cluster::ClusterView;
pub use api::pages::{Bilingual, ConsentTexts};
pub use auth::{AuthSettings, Authenticator, OidcSettings, Principal, Role};
pub use error::ApiError;
pub use events::{EventFanout, EventHub, EventKind, MeetingEvent};
pub use media::{
    apply_media_event, apply_media_events, event_channel, observe_media_event, NoMediaPlane,
};
pub use signin::{SignInClient, SignInSettings};

/// Install the process-wide Prometheus recorder now (it is also installed by the
/// first [`AppState`]): metrics recorded before it exists are lost, so a process
/// that records some while starting calls this first.
pub fn install_metrics() {
    ops::Metrics::install();
}

/// The process's metrics in the Prometheus text format (what `/metrics` serves), for
/// a process that serves them without the API (a media node).
pub fn metrics_text() -> String {
    ops::Metrics::install().render()
}

/// API limits and defaults (validated by the binary's config).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Retention of a meeting's recordings when the request does not say.
    pub default_retention_days: u32,
    /// Largest retention a request may ask for.
    pub max_retention_days: u32,
    /// Where the media plane writes HLS presentations (served under `/live`).
    pub live_dir: std::path::PathBuf,
    /// hls.js for the viewer page, served as `/assets/hls.min.js` (installed at build
    /// time by `scripts/web.sh`). `None` or a missing file: 404, and the page plays
    /// with the browser's native HLS where there is one.
    pub player_js: Option<std::path::PathBuf>,
    /// Controller and purposes shown in the participants' consent dialog (`/join`).
    pub consent_texts: api::pages::ConsentTexts,
    /// Caps and buffers of the meeting event WebSockets.
    pub websockets: WebSocketSettings,
}

/// Caps and buffers of the meeting event WebSockets (`[websockets]` in the config).
/// Each open socket costs its task, its TLS/TCP buffers and its queue; without caps
/// one join token could open thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// Open sockets per join token (participant) or staff subject; over it: 429.
    pub max_per_token: usize,
    /// Open sockets per meeting; over it: 503.
    pub max_per_meeting: usize,
    /// Events queued for one socket whose client does not read; when full the socket
    /// is closed (the client reconnects and gets a fresh snapshot).
    pub queue_messages: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            max_per_token: 16,
            max_per_meeting: 2000,
            queue_messages: 64,
        }
    }
}

/// Where `scripts/web.sh` installs hls.js, relative to the working directory.
pub const DEFAULT_PLAYER_JS: &str = "web/node_modules/hls.js/dist/hls.min.js";

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 64 * 1024,
            default_retention_days: 30,
            max_retention_days: 3650,
            live_dir: std::path::PathBuf::from("data/live"),
            player_js: Some(std::path::PathBuf::from(DEFAULT_PLAYER_JS)),
            consent_texts: Default::default(),
            websockets: Default::default(),
        }
    }
}

/// Wall clock in unix milliseconds, passed in so tests can control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| Utc::now().timestamp_millis())
}

const CONSENT_LOCK_STRIPES: usize = 64;

struct Inner {
    db: Db,
    consent_writer: ConsentWriter,
    auth: Arc<Authenticator>,
    media: Arc<dyn MediaPlane>,
    vault: Vault,
    hub: EventHub,
    settings: ApiSettings,
    clock: Clock,
    consent_locks: Vec<tokio::sync::Mutex<()>>,
    whip_restart_locks: Vec<tokio::sync::Mutex<()>>,
    metrics: ops::Metrics,
    live: api::live::LiveState,
    destinations: std::sync::Mutex<std::collections::HashMap<Uuid, DestinationStatuses>>,
    /// Streams whose HLS files are not being written, and why (as last reported).
    hls_errors: std::sync::Mutex<std::collections::HashMap<Uuid, String>>,
    /// Participants whose media the media plane reported started and not stopped,
    /// by meeting (what a console opened mid-meeting shows).
    publishing: std::sync::Mutex<std::collections::HashMap<Uuid, std::collections::HashSet<Uuid>>>,
    /// Open event WebSockets: caps, and closing a revoked participant's.
    sockets: sockets::SocketRegistry,
    /// What `GET /api/v1/cluster` shows; unset in a single process.
    cluster_view: std::sync::OnceLock<Arc<dyn ClusterView>>,
}

/// The last known state of each RTMP destination of a stream, by position.
pub type DestinationStatuses = std::collections::HashMap<usize, DestinationStatus>;

/// One RTMP destination's last reported state (from the media plane's events).
#[derive(Debug, Clone)]
pub struct DestinationStatus {
    /// `connecting`, `live`, `retrying` or `stopped`.
    pub status: String,
    /// Failed attempts in a row, while retrying.
    pub attempt: Option<u32>,
    /// The last error (redacted).
    pub error: Option<String>,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Assemble the state (inside a tokio runtime: it starts the consent writer). The
    /// media plane's events must be fed to [`apply_media_events`] with a clone of it
    /// (one process), or to [`observe_media_event`] on every replica and to
    /// [`apply_media_event`] once (a cluster).
    pub fn new(
        db: Db,
        auth: Arc<Authenticator>,
        media: Arc<dyn MediaPlane>,
        vault: Vault,
        settings: ApiSettings,
        clock: Clock,
    ) -> AppState {
        AppState(Arc::new(Inner {
            consent_writer: ConsentWriter::spawn(db.clone()),
            db,
            auth,
            media,
            vault,
            hub: EventHub::default(),
            settings,
            clock,
            consent_locks: (0..CONSENT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            whip_restart_locks: (0..CONSENT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            metrics: ops::Metrics::install(),
            live: Default::default(),
            destinations: Default::default(),
            hls_errors: Default::default(),
            publishing: Default::default(),
            sockets: Default::default(),
            cluster_view: Default::default(),
        }))
    }

    /// Master key and object store of the archive.
    pub fn vault(&self) -> &Vault {
        &self.0.vault
    }

    /// Database handle.
    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// Batching writer for consent changes.
    pub fn consent_writer(&self) -> &ConsentWriter {
        &self.0.consent_writer
    }

    /// Token verifier/issuer.
    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    /// The media plane.
    pub fn media(&self) -> &dyn MediaPlane {
        self.0.media.as_ref()
    }

    /// The live routes' chapters and playlist cache.
    pub fn live(&self) -> &api::live::LiveState {
        &self.0.live
    }

    /// Remember a destination's reported state (shown by `GET /streams/{sid}`).
    pub(crate) fn set_destination_status(
        &self,
        stream_id: Uuid,
        destination: usize,
        status: DestinationStatus,
    ) {
        self.0
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stream_id)
            .or_default()
            .insert(destination, status);
    }

    /// The destinations' last reported states of a stream.
    pub(crate) fn destination_statuses(&self, stream_id: Uuid) -> DestinationStatuses {
        self.0
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stream_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Note that a participant's media started (`true`) or stopped in a meeting.
    pub(crate) fn set_publishing(&self, meeting_id: Uuid, participant_id: Uuid, on: bool) {
        let mut map = self.0.publishing.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            map.entry(meeting_id).or_default().insert(participant_id);
        } else if let Some(set) = map.get_mut(&meeting_id) {
            set.remove(&participant_id);
            if set.is_empty() {
                map.remove(&meeting_id);
            }
        }
    }

    /// Is the participant's media arriving (as last reported by the media plane)?
    pub(crate) fn is_publishing(&self, meeting_id: Uuid, participant_id: Uuid) -> bool {
        self.0
            .publishing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&meeting_id)
            .is_some_and(|set| set.contains(&participant_id))
    }

    /// A stream ended: its destinations' states are no longer needed.
    pub(crate) fn forget_destinations(&self, stream_id: Uuid) {
        self.0
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stream_id);
        self.set_hls_error(stream_id, None);
    }

    /// Note why a stream's HLS is stalled (`None`: it advances).
    pub(crate) fn set_hls_error(&self, stream_id: Uuid, error: Option<String>) {
        let mut map = self.0.hls_errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => map.insert(stream_id, e),
            None => map.remove(&stream_id),
        };
    }

    /// Why a stream's HLS is stalled, as last reported.
    pub(crate) fn hls_error(&self, stream_id: Uuid) -> Option<String> {
        self.0
            .hls_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stream_id)
            .cloned()
    }

    /// The meetings' event hub. A control replica of a cluster sets its fan-out
    /// ([`EventHub::set_fanout`]) before serving and passes what the transport brings
    /// back to [`EventHub::deliver_local`].
    pub fn hub(&self) -> &EventHub {
        &self.0.hub
    }

    /// Set where `GET /api/v1/cluster` reads the cluster from (once, before serving).
    /// Returns `false`, and changes nothing, when one was set already.
    pub fn set_cluster_view(&self, view: Arc<dyn ClusterView>) -> bool {
        self.0.cluster_view.set(view).is_ok()
    }

    /// The cluster view, when the binary runs in a cluster.
    pub(crate) fn cluster_view(&self) -> Option<&dyn ClusterView> {
        self.0.cluster_view.get().map(|v| v.as_ref())
    }

    /// API limits and defaults.
    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    /// Now, unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.0.clock)()
    }

    /// Serializes consent changes of one participant (media gate and database must
    /// agree on the order of changes).
    pub(crate) fn consent_lock(&self, participant_id: Uuid) -> &tokio::sync::Mutex<()> {
        let idx = participant_id.as_u128() as usize % CONSENT_LOCK_STRIPES;
        &self.0.consent_locks[idx]
    }

    /// Register a WHIP session (in the database, so every control replica finds it).
    /// A publish that raced its participant's removal or its meeting's end — its offer
    /// was accepted before, its session registers after — is ended at once: 409. So is
    /// a session that cannot be registered (the database error is returned): no media
    /// session is left that nobody can reach.
    pub(crate) async fn register_whip_session(
        &self,
        session: Uuid,
        meeting: Uuid,
        participant: Uuid,
    ) -> Result<(), ApiError> {
        let standing = async {
            self.db()
                .insert_whip_session(session, meeting, participant, self.now_ms())
                .await?;
            // Read after the insert: a removal either finds the row (and ends the
            // session) or has marked the participant left before this read.
            let left = match self.db().get_participant(meeting, participant).await? {
                Some(p) => p.left_at.is_some(),
                None => true,
            };
            let ended = match self.db().get_meeting(meeting).await? {
                Some(m) => m.state == gremium_storage::MeetingState::Ended,
                None => true,
            };
            Ok::<_, ApiError>(if ended {
                Some("meeting has ended")
            } else if left {
                Some("participant has left the meeting")
            } else {
                None
            })
        }
        .await;
        let refusal = match standing {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => {
                if let Err(e) = self.db().remove_whip_session(session).await {
                    tracing::warn!(error = %e, "forgetting a session that raced a removal");
                }
                ApiError::Conflict(why.into())
            }
            Err(e) => e,
        };
        let leave = gremium_protocol::MediaCommand::Unpublish {
            meeting_id: meeting,
            session_id: session,
        };
        match self.media().execute(leave).await {
            Ok(_) | Err(gremium_protocol::MediaPlaneError::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, "ending a session that could not stay"),
        }
        Err(refusal)
    }

    /// Held by a WHIP PATCH that may restart ICE (it carries a ufrag) from its
    /// If-Match check until its new ETag is counted, so of two restarts racing with
    /// one ETag the second sees the new one and gets 412 (striped by session).
    pub(crate) fn whip_restart_lock(&self, session: Uuid) -> &tokio::sync::Mutex<()> {
        let idx = session.as_u128() as usize % CONSENT_LOCK_STRIPES;
        &self.0.whip_restart_locks[idx]
    }

    /// Open event WebSockets.
    pub fn sockets(&self) -> &sockets::SocketRegistry {
        &self.0.sockets
    }

    /// A participant was removed (or left): close their event sockets and end their
    /// WHIP sessions now. The database says "left" already, so every later request
    /// with their token is refused; this ends what is open.
    pub(crate) async fn revoke_participant(&self, meeting_id: Uuid, participant_id: Uuid) {
        self.0.sockets.close_participant(
            meeting_id,
            participant_id,
            "participant removed from the meeting; join token revoked",
        );
        // Removed from the database under any replica: a session registering now
        // sees the participant left (see `register_whip_session`).
        let sessions = match self
            .db()
            .take_whip_sessions_of(meeting_id, participant_id)
            .await
        {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(error = %e, "reading a removed participant's publishing sessions");
                Vec::new()
            }
        };
        for session_id in sessions {
            let leave = gremium_protocol::MediaCommand::Unpublish {
                meeting_id,
                session_id,
            };
            match self.media().execute(leave).await {
                Ok(_) | Err(gremium_protocol::MediaPlaneError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ending a removed participant's publishing session")
                }
            }
        }
    }

    /// A meeting ended: close its participants' event sockets and forget its WHIP
    /// sessions (the media plane's `EndMeeting` has torn them down). Staff sockets
    /// stay; they have seen `meeting_ended`.
    pub(crate) async fn revoke_meeting_participants(&self, meeting_id: Uuid) {
        self.0.sockets.close_participants(
            meeting_id,
            "meeting has ended; the join token now reaches only the participant's own consent",
        );
        if let Err(e) = self.db().remove_meeting_whip_sessions(meeting_id).await {
            tracing::warn!(error = %e, "forgetting an ended meeting's publishing sessions");
        }
    }

    /// An event another control replica published (through the cluster's relay):
    /// to this replica's sockets of the meeting, and what it revokes is closed here
    /// too — a removed participant's sockets, every participant socket of an ended
    /// meeting — as the replica that made the change closed its own.
    pub fn deliver_relayed(&self, meeting_id: Uuid, text: Arc<str>) {
        self.0.hub.deliver_local(meeting_id, text.clone());
        #[derive(serde::Deserialize)]
        struct Revoking {
            r#type: String,
            participant_id: Option<Uuid>,
        }
        let Ok(event) = serde_json::from_str::<Revoking>(&text) else {
            return;
        };
        match (event.r#type.as_str(), event.participant_id) {
            ("participant_left", Some(participant_id)) => {
                self.0.sockets.close_participant(
                    meeting_id,
                    participant_id,
                    "participant removed from the meeting; join token revoked",
                );
            }
            ("meeting_ended", _) => {
                self.0.sockets.close_participants(
                    meeting_id,
                    "meeting has ended; the join token now reaches only the participant's own consent",
                );
            }
            _ => {}
        }
    }

    /// Publish an event on a meeting's channel, stamped with the current time.
    pub fn publish(&self, meeting_id: Uuid, kind: EventKind) {
        let at = Utc
            .timestamp_millis_opt(self.now_ms())
            .single()
            .unwrap_or_else(Utc::now);
        self.0.hub.publish(&MeetingEvent {
            meeting_id,
            at,
            kind,
        });
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(api::meetings::router())
        .merge(api::chapters::router())
        .merge(api::participants::router())
        .merge(api::recordings::router())
        .merge(api::streams::router())
        .merge(api::archive::router())
        .merge(api::audit::router())
        .merge(api::cluster::router())
        .merge(api::ws::router())
        .merge(openapi::router());
    Router::new()
        .nest("/api/v1", api)
        .merge(api::whip::router())
        .merge(api::live::router())
        .merge(api::watch::router())
        .merge(api::pages::router())
        .merge(ops::router())
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.settings().max_body_bytes))
        .layer(axum::middleware::from_fn(ops::observe))
        .with_state(state)
}

pub(crate) fn to_datetime(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
