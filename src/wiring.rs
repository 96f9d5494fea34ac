//! Assembly of the service from validated configuration.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gremium_signaling::{AppState, Authenticator, Role};
use gremium_storage::crypto::MasterKey;
use gremium_storage::{Db, DbOptions, LocalStore, ObjectStore, S3Store, Vault};

use crate::config::Config;

pub(crate) fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The local HS256 key: created on first use (0600) in `DATA_DIR/keys/`.
fn local_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let dir = data_dir.join("keys");
    let path = dir.join("local-signing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = hex_decode(text.trim())
            .with_context(|| format!("{} is not a hex key", path.display()))?;
        if key.len() < 32 {
            bail!("{} holds a key shorter than 32 bytes", path.display());
        }
        return Ok(key);
    }
    create_private_dir(&dir)?;
    let key: [u8; 32] = rand_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            f.write_all(hex_encode(&key).as_bytes())?;
            Ok(key.to_vec())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => local_key(data_dir),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The master key: from the environment or config, else from its file; the default
/// file is generated (0600) on first start.
fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    let s = &config.storage;
    if let Some(hex) = &s.master_key {
        return MasterKey::from_hex(hex).map_err(|e| anyhow::anyhow!("master key: {e}"));
    }
    let path = &s.master_key_file;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return MasterKey::from_hex(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && s.master_key_file_default => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let key = MasterKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(key.to_hex().as_bytes())?;
            f.sync_all()?;
            tracing::warn!(
                "generated a master key in the data directory: fine for one machine; in \
                 production set GREMIUM_MASTER_KEY from a secret store"
            );
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => master_key(config),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Master key plus the configured object store.
pub async fn vault(config: &Config) -> anyhow::Result<Vault> {
    let master = master_key(config)?;
    let store: Arc<dyn ObjectStore> = match &config.storage.s3 {
        Some(settings) => {
            let store =
                S3Store::new(settings.clone()).map_err(|e| anyhow::anyhow!("storage.s3: {e}"))?;
            // An unreachable store does not stop the start: recordings wait in the
            // spool and their uploads are retried.
            if let Err(e) = store.ensure_bucket().await {
                tracing::warn!(error = %e, "object store not ready; uploads will be retried");
            }
            Arc::new(store)
        }
        None => {
            create_private_dir(&config.storage.local_dir)?;
            Arc::new(LocalStore::new(&config.storage.local_dir))
        }
    };
    Ok(Vault::new(master, store))
}

/// Recordings that were running when the process stopped: the media plane finalizes
/// what their spools hold (in the background) and reports them finished, or failed
/// when nothing was written. A protocol command, so a media node elsewhere can do it.
pub(crate) async fn recover_recordings(
    db: &Db,
    vault: &Vault,
    media: &dyn gremium_protocol::MediaPlane,
) -> anyhow::Result<()> {
    use gremium_protocol::{MediaCommand, SecretHex};
    for r in db.unfinished_recordings().await? {
        let key = match vault.data_key(db, r.id).await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(recording_id = %r.id, error = %e, "unfinished recording without key");
                continue;
            }
        };
        let command = MediaCommand::RecoverRecording {
            meeting_id: r.meeting_id,
            recording_id: r.id,
            data_key: SecretHex(key.to_hex()),
        };
        if let Err(e) = media.execute(command).await {
            tracing::warn!(recording_id = %r.id, error = %e, "unfinished recording not recovered");
        }
    }
    Ok(())
}

/// Remove what is left in the spool directory of recordings that were deleted (a
/// deletion removes the spool through the media plane; this catches one that failed
/// or came while the process was down). Files of unknown recordings are left alone.
async fn sweep_deleted_spools(db: &Db, spool_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    let ids: std::collections::BTreeSet<uuid::Uuid> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let stem = name.to_str()?.split('.').next()?.to_string();
            stem.parse().ok()
        })
        .collect();
    for id in ids {
        match db.get_recording(id).await {
            Ok(Some(r)) if r.deleted_at.is_some() => {
                let spool = gremium_recorder::finalize::spool_path(spool_dir, id);
                match gremium_recorder::finalize::remove_spool(&spool) {
                    Ok(()) => {
                        tracing::info!(recording_id = %id, "removed the spool of a deleted recording")
                    }
                    Err(e) => {
                        tracing::warn!(recording_id = %id, error = %e, "spool of a deleted recording not removed")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(recording_id = %id, error = %e, "spool sweep: recording not read")
            }
        }
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn rand_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The in-process media plane's settings from validated config.
pub(crate) fn media_plane_settings(
    config: &Config,
    vault: &Vault,
) -> gremium_mediaplane::MediaPlaneSettings {
    gremium_mediaplane::MediaPlaneSettings {
        ice: config.ice.clone(),
        dot_dir: config.data_dir.join("diagnostics"),
        gather_timeout: Duration::from_secs(5),
        media_timeout: config.media_timeout,
        max_publishers: config.max_publishers,
        program: config.program.clone(),
        streaming: config.streaming.clone(),
        recording: config.recording,
        recordings_dir: config.storage.spool_dir.clone(),
        recordings_min_free: config.storage.spool_min_free,
        store: vault.store().clone(),
        live_dir: config.api.live_dir.clone(),
    }
}

pub(crate) async fn open_db(config: &Config) -> anyhow::Result<Db> {
    if config.database_url.starts_with("sqlite:") {
        create_private_dir(&config.data_dir)?;
    }
    let options = DbOptions {
        max_connections: config.db_max_connections,
        ..Default::default()
    };
    Db::connect(&config.database_url, &options)
        .await
        .context("connecting to the database")
}

pub fn authenticator(config: &Config) -> anyhow::Result<Arc<Authenticator>> {
    let mut settings = config.auth.clone();
    settings.local_key = local_key(&config.data_dir)?;
    Ok(Authenticator::new(settings))
}

pub async fn serve(config: Config, role: crate::cluster::Role) -> anyhow::Result<ExitCode> {
    use crate::cluster::Role;
    match role {
        Role::All => serve_until(config, shutdown_signal()).await,
        Role::Control => crate::cluster::serve_control(config, shutdown_signal()).await,
        Role::Media => crate::cluster::serve_media(config, shutdown_signal()).await,
    }
}

/// The service until `shutdown` resolves, then a graceful stop (bounded by
/// `connections.shutdown_grace_secs`).
pub async fn serve_until(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    // Before anything opens files: every client socket is one.
    let fd_limit = crate::listener::raise_fd_limit();
    let db = open_db(&config).await?;
    if config.auto_migrate {
        db.migrate().await.context("applying migrations")?;
    }
    let vault = vault(&config).await?;
    create_private_dir(&config.storage.spool_dir)?;
    let auth = authenticator(&config)?;
    // The media plane runs in this process (embedded default) and talks to the
    // control plane only through the media-plane protocol.
    let (sink, events) = gremium_signaling::event_channel();
    // The media plane reports disk space while it starts.
    gremium_signaling::install_metrics();
    let media =
        gremium_mediaplane::GstMediaPlane::new(media_plane_settings(&config, &vault), sink.clone())
            .map_err(|e| anyhow::anyhow!("starting the media plane: {e}"))?;
    let plane = media.clone();
    let media = Arc::new(media);
    let state = AppState::new(
        db.clone(),
        auth,
        media,
        vault.clone(),
        config.api.clone(),
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    recover_recordings(&db, &vault, &plane).await?;
    sweep_deleted_spools(&db, &config.storage.spool_dir).await;
    tokio::spawn(gremium_signaling::retention::run(
        state.clone(),
        config.retention_sweep,
    ));
    let app = gremium_signaling::router(state);
    let listener = crate::listener::bind(config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let limits = crate::listener::fit_to_fd_limit(config.connections.clone(), fd_limit);
    tracing::info!(port = config.listen.port(), database = ?db.backend(), limits = %crate::listener::describe(&limits), "gremium serving");
    println!("Gremium listening on http://{}", config.listen);
    crate::listener::serve(listener, app, limits, shutdown).await;
    // A request still holding a database connection after the grace period must
    // not hold the stop as well.
    if tokio::time::timeout(Duration::from_secs(5), db.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still in use at exit");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first Ctrl-C or SIGTERM. A second one ends the process at once,
/// for an operator who does not want to wait for the grace period.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutting down");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second stop signal: exiting now");
        std::process::exit(130);
    });
}

/// Ctrl-C or SIGTERM (what `docker stop`, systemd and Kubernetes send).
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    let db = open_db(&config).await?;
    db.migrate().await.context("applying migrations")?;
    db.close().await;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

pub fn token(
    config: Config,
    roles: &[String],
    subject: &str,
    ttl_hours: u64,
) -> anyhow::Result<ExitCode> {
    if roles.is_empty() {
        bail!("--role: give at least one of admin, moderator, viewer, archivist");
    }
    let mut parsed = Vec::new();
    for r in roles {
        match Role::parse(r) {
            Some(Role::Participant) => {
                bail!("--role: participants get join tokens from the API, not from here")
            }
            Some(role) => parsed.push(role),
            None => bail!("--role: {r:?} is not one of admin, moderator, viewer, archivist"),
        }
    }
    if !(1..=24 * 365).contains(&ttl_hours) {
        bail!("--ttl-hours: must be between 1 and 8760");
    }
    let auth = authenticator(&config)?;
    let now = unix_now_secs();
    println!(
        "{}",
        auth.issue_staff_token(subject, &parsed, now, Duration::from_secs(ttl_hours * 3600))
    );
    Ok(ExitCode::SUCCESS)
}

pub fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub async fn audit_verify(config: Config) -> anyhow::Result<ExitCode> {
    let db = open_db(&config).await?;
    db.migrate().await.context("applying migrations")?;
    let report = db.verify_ledger().await.context("reading the ledger")?;
    db.close().await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.intact {
        eprintln!(
            "ledger intact: {} chains, {} entries",
            report.chains, report.entries
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("ledger BROKEN");
        Ok(ExitCode::from(1))
    }
}

pub fn doctor() -> anyhow::Result<ExitCode> {
    let rt = gremium_pipelines::init().context("initialising GStreamer")?;
    println!("{}", rt.version);
    if rt.missing.is_empty() {
        println!(
            "all {} required elements present",
            gremium_pipelines::REQUIRED_ELEMENTS.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for (element, package) in &rt.missing {
            println!("missing element {element} (Debian package {package})");
        }
        Ok(ExitCode::from(1))
    }
}
