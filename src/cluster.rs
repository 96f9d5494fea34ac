//! The cluster roles of `gremium serve` (`--role control|media`) and `gremium
//! cluster …`: assembly only; the transport lives in `gremium-cluster`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gremium_cluster::{
    events, ClusterMediaPlane, ControlSettings, MediaNode, Nats, NodeSettings, Registry,
};
use gremium_signaling::AppState;

use crate::config::Config;
use crate::wiring;

/// What this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything in one process (embedded defaults; no NATS).
    All,
    /// API, pages, WHIP, WebSocket, archive, retention; media on media nodes.
    Control,
    /// Meetings' pipelines only.
    Media,
}

/// Cost units reserved for a meeting at placement (a reference meeting: four
/// publishers, a recording and HLS; see `docs/sizing.md`).
fn meeting_units() -> u32 {
    gremium_cluster::cost::CostModel::default().reference_meeting()
}

async fn connect(config: &Config, role: &str) -> anyhow::Result<Nats> {
    let Some(url) = config.cluster.nats_url.as_deref() else {
        bail!("cluster.nats_url: required by --role {role} (or set GREMIUM_NATS_URL)");
    };
    let name = format!("gremium-{role}-{}", config.cluster.node_id);
    let names = gremium_cluster::subjects::Names::new(&config.cluster.name);
    Ok(Nats::connect(url, &name, names).await?)
}

/// Does this event describe media its node no longer owns (see
/// [`events::superseded`])? The placement is read only for informational events; a
/// database error lets the event through.
async fn superseded(state: &AppState, envelope: &gremium_protocol::EventEnvelope) -> bool {
    if !events::informational(&envelope.event) {
        return false;
    }
    let meeting = envelope.event.meeting_id();
    let placement = state.db().placement(meeting).await.ok().flatten();
    let stale = events::superseded(envelope, placement.as_ref().map(|p| p.node_id.as_str()));
    if stale {
        tracing::debug!(%meeting, node = %envelope.node_id, "event of a node that no longer runs the meeting dropped");
    }
    stale
}

/// A control replica: the whole API; meetings' media go to media nodes over NATS.
pub async fn serve_control(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    wiring::init_logging(&config);
    let fd_limit = crate::listener::raise_fd_limit();
    let nats = connect(&config, "control").await?;
    let db = wiring::open_db(&config).await?;
    if config.auto_migrate {
        db.migrate().await.context("applying migrations")?;
    }
    let vault = wiring::vault(&config).await?;
    let auth = wiring::authenticator(&config)?;
    gremium_signaling::install_metrics();
    let registry = Registry::follow(nats.clone());
    let media = ClusterMediaPlane::new(
        nats.clone(),
        db.clone(),
        registry.clone(),
        ControlSettings {
            zone: config.cluster.zone.clone(),
            meeting_units: meeting_units(),
            command_timeout: config.cluster.command_timeout,
            retry_after_secs: 5,
        },
    );
    let state = AppState::new(
        db.clone(),
        auth,
        Arc::new(media),
        vault,
        config.api.clone(),
        gremium_signaling::system_clock(),
    );
    // WebSocket events go to this replica's sockets and to every other replica.
    let relay = events::WsRelay::start(nats.clone());
    let origin = relay.origin().to_string();
    state.hub().set_fanout(Arc::new(RelayFanout {
        relay,
        state: state.clone(),
    }));
    let s = state.clone();
    tokio::spawn(events::run_ws_relay(
        nats.clone(),
        origin,
        move |meeting, text| s.deliver_relayed(meeting, text),
    ));
    let s = state.clone();
    tokio::spawn(events::run_observer(nats.clone(), move |envelope| {
        let s = s.clone();
        async move {
            if !superseded(&s, &envelope).await {
                gremium_signaling::observe_media_event(&s, &envelope.event)
            }
        }
    }));
    let s = state.clone();
    tokio::spawn(events::run_applier(nats.clone(), move |envelope| {
        let s = s.clone();
        async move {
            if superseded(&s, &envelope).await {
                return Ok(());
            }
            gremium_signaling::apply_media_event(&s, Some(envelope.event_id), envelope.event)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }));
    // Applied event ids are needed only while an event can be redelivered (the
    // stream keeps a day); a week is plenty.
    let pruned = db.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let week_ago = wiring::unix_now_secs() * 1000 - 7 * 24 * 3600 * 1000;
            if let Err(e) = pruned.prune_applied_media_events(week_ago).await {
                tracing::warn!(error = %e, "applied media events not pruned");
            }
        }
    });
    state.set_cluster_view(Arc::new(View {
        db: db.clone(),
        registry,
    }));
    tokio::spawn(gremium_signaling::retention::run(
        state.clone(),
        config.retention_sweep,
    ));
    let app = gremium_signaling::router(state);
    let listener = crate::listener::bind(config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let limits = crate::listener::fit_to_fd_limit(config.connections.clone(), fd_limit);
    tracing::info!(port = config.listen.port(), node_id = %config.cluster.node_id, "gremium control replica serving");
    println!(
        "Gremium control replica listening on http://{}",
        config.listen
    );
    crate::listener::serve(listener, app, limits, shutdown).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), db.close()).await;
    let _ = nats.client.flush().await;
    Ok(ExitCode::SUCCESS)
}

/// A media node: runs the meetings placed on it; HTTP only for `/healthz` and
/// `/metrics`.
pub async fn serve_media(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    wiring::init_logging(&config);
    let nats = connect(&config, "media").await?;
    let vault = wiring::vault(&config).await?;
    wiring::create_private_dir(&config.storage.spool_dir)?;
    gremium_signaling::install_metrics();
    let (sink, events) = gremium_signaling::event_channel();
    let plane =
        gremium_mediaplane::GstMediaPlane::new(wiring::media_plane_settings(&config, &vault), sink)
            .map_err(|e| anyhow::anyhow!("starting the media plane: {e}"))?;
    let counted = plane.clone();
    let watched = plane.clone();
    let address = config
        .cluster
        .advertise
        .clone()
        .or_else(|| config.ice.nat_1to1.map(|ip| ip.to_string()))
        .unwrap_or_else(|| config.listen.ip().to_string());
    let node = MediaNode::start(
        nats.clone(),
        NodeSettings {
            node_id: config.cluster.node_id.clone(),
            zone: config.cluster.zone.clone(),
            capacity: config.cluster.capacity,
            address,
            meeting_units: meeting_units(),
        },
        Arc::new(plane),
        Arc::new(move || counted.active_meetings()),
        events,
    )
    .await?;
    let node_id = config.cluster.node_id.clone();
    let drain_flag = node.draining();
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let body = serde_json::json!({
                    "status": "ok",
                    "role": "media",
                    "node_id": node_id,
                    "draining": *drain_flag.borrow(),
                });
                async move { axum::Json(body) }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    gremium_signaling::metrics_text(),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(port = config.listen.port(), node_id = %config.cluster.node_id, "gremium media node serving");
    println!(
        "Gremium media node {} listening on http://{}",
        config.cluster.node_id, config.listen
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    shutdown.await;
    // SIGTERM drains: no new meetings come here; the running ones end first. A
    // second signal ends the process at once (see `wiring::shutdown_signal`).
    node.drain_to_exit();
    let mut waited = 0u64;
    loop {
        let running = watched.active_meetings();
        if running == 0 {
            break;
        }
        if waited.is_multiple_of(10) {
            tracing::info!(
                meetings = running,
                "draining: waiting for the node's meetings to end"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
    }
    node.stop(Duration::from_secs(5)).await;
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// `gremium cluster drain NODE [--undo] [--wait]`: the node takes no new meetings (or
/// takes them again); with `--wait`, return once it runs none (or has left).
pub async fn drain(
    config: Config,
    node: String,
    undo: bool,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let nats = connect(&config, "cli").await?;
    let registry = Registry::follow(nats.clone());
    let timeout = config.cluster.command_timeout;
    let reply = gremium_cluster::admin::request_drain(&nats, &node, !undo, timeout).await?;
    let meetings = match reply {
        gremium_protocol::NodeAdminReply::Ok {
            node_id,
            draining,
            meetings,
        } => {
            let what = if draining {
                "draining: takes no new meetings"
            } else {
                "takes new meetings again"
            };
            println!("{node_id}: {what}; {meetings} running");
            meetings
        }
        gremium_protocol::NodeAdminReply::Err(e) => bail!("node {node}: {e}"),
    };
    if !wait || undo || meetings == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    // The registry entry counts the node's meetings once a second. Until the watch
    // has delivered the entry once, a missing entry means "not read yet", not "left".
    let mut last = meetings;
    let mut seen = false;
    let mut waited = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
        match registry.node(&node) {
            None if !seen && waited < 10 => {}
            None => {
                println!("{node}: left the cluster");
                return Ok(ExitCode::SUCCESS);
            }
            Some(info) if info.meetings == 0 => {
                println!("{node}: no meetings running; it can be stopped");
                return Ok(ExitCode::SUCCESS);
            }
            Some(info) => {
                seen = true;
                if info.meetings != last {
                    println!("{node}: {} running", info.meetings);
                    last = info.meetings;
                }
            }
        }
    }
}

/// `gremium cluster status`: the registry joined with the placement table.
pub async fn status(config: Config, json: bool) -> anyhow::Result<ExitCode> {
    let nats = connect(&config, "cli").await?;
    let db = wiring::open_db(&config).await?;
    let registry = Registry::follow(nats);
    // The watch delivers the current entries first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = gremium_cluster::control::status(&db, &registry)
        .await
        .map_err(|e| anyhow::anyhow!("reading placements: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<10} {:>8} {:>8} {:>9} {:>6} {:>8}  STATE",
        "NODE", "ZONE", "CAPACITY", "LOAD", "RESERVED", "CPU%", "MEETINGS"
    );
    for n in &status.nodes {
        println!(
            "{:<28} {:<10} {:>8} {:>8} {:>9} {:>6.0} {:>8}  {}",
            n.info.node_id,
            n.info.zone.as_deref().unwrap_or("-"),
            n.info.capacity,
            n.info.load_units,
            n.placed_units,
            n.info.cpu_percent,
            n.placed_meetings.max(n.info.meetings),
            if n.info.draining { "draining" } else { "ready" }
        );
    }
    if status.nodes.is_empty() {
        println!("(no live media nodes)");
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The signaling API's view of the cluster.
struct View {
    db: gremium_storage::Db,
    registry: Registry,
}

#[async_trait::async_trait]
impl gremium_signaling::ClusterView for View {
    async fn status(&self) -> Result<gremium_protocol::ClusterStatus, String> {
        gremium_cluster::control::status(&self.db, &self.registry).await
    }
}

/// The hub's fan-out: every WebSocket event to this replica's sockets and through
/// NATS to the other replicas'.
struct RelayFanout {
    relay: events::WsRelay,
    state: AppState,
}

impl gremium_signaling::EventFanout for RelayFanout {
    fn publish(&self, meeting_id: uuid::Uuid, text: Arc<str>) {
        self.state.hub().deliver_local(meeting_id, text.clone());
        self.relay.publish(meeting_id, text)
    }
}
