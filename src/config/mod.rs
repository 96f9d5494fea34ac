//! Configuration: defaults that run with zero configuration, a TOML file for
//! everything else, and a few flags/env variables on top. Validated once at start
//! into the settings the crates take; errors name the offending key.
//!
//! Owns: [`Config`] (what the binary hands to the crates), the flags and environment
//! that override the file ([`Overrides`]), and the order in which sections are
//! validated. The file's shape is in [`schema`]; each section's checks and defaults are
//! in the module of its topic ([`auth`], [`media`], [`storage`], [`http`]).
//! Must not: start anything, create files or contact servers; wiring does that with
//! the validated [`Config`].

mod auth;
mod cluster;
mod http;
mod media;
mod schema;
mod storage;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use schema::FileConfig;
pub use storage::StorageSettings;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_max_connections: u32,
    pub auto_migrate: bool,
    pub auth: gremium_signaling::AuthSettings,
    pub api: gremium_signaling::ApiSettings,
    pub log_json: bool,
    pub log_level: String,
    pub ice: gremium_pipelines::webrtc::IceSettings,
    pub media_timeout: std::time::Duration,
    pub max_publishers: usize,
    pub program: gremium_compositor::ProgramSettings,
    pub streaming: gremium_mediaplane::StreamingSettings,
    pub recording: gremium_mediaplane::RecordingEncode,
    pub storage: StorageSettings,
    pub retention_sweep: std::time::Duration,
    pub connections: crate::admission::ConnectionLimits,
    pub cluster: cluster::ClusterSettings,
}

/// Overrides from flags and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    pub node_id: Option<String>,
}

/// Read the file named by `o.config` (none: zero configuration) and validate it.
pub fn load(o: &Overrides) -> anyhow::Result<Config> {
    let file = match &o.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config {}", path.display()))?;
            FileConfig::parse(&text)
                .with_context(|| format!("invalid config {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    validate(file, o)
}

fn secs(v: Option<u64>, default: u64) -> std::time::Duration {
    std::time::Duration::from_secs(v.unwrap_or(default))
}

/// Check every section, in a fixed order (the first bad key stops the start), and
/// apply the overrides and defaults.
pub fn validate(file: FileConfig, o: &Overrides) -> anyhow::Result<Config> {
    let listen_text = o
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        anyhow::anyhow!("listen: {listen_text:?} is not a host:port address such as 127.0.0.1:8080")
    })?;
    let data_dir = o
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("data"));
    if data_dir.as_os_str().is_empty() {
        bail!("data_dir: must not be empty");
    }
    let database_url = match o.database_url.clone().or(file.database.url) {
        Some(url)
            if url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:") =>
        {
            url
        }
        Some(_) => bail!("database.url: must start with sqlite:// or postgres://"),
        None => sqlite_url(&data_dir),
    };
    let db_max_connections = file.database.max_connections.unwrap_or(8);
    if db_max_connections == 0 {
        bail!("database.max_connections: must be at least 1");
    }

    let s3 = storage::s3_settings(&file.storage)?;
    let ice = media::ice_settings(&file.ice, file.ingest.jitter_buffer_ms)?;
    let (media_timeout, max_publishers) = media::ingest_limits(&file.ingest)?;
    let program = media::program_settings(&file.compositor)?;
    let streaming = media::streaming_settings(&file.streaming)?;
    let recording = media::recording_encode(&file.recording, program.fps)?;
    let retention = storage::retention(&file.retention)?;
    let storage = storage::storage_settings(&file.storage, s3, &data_dir)?;
    let live_dir = data_dir.join("live");
    let player_js = http::player_js(&file.web)?;
    let consent_texts = http::consent_texts(file.pages)?;
    let max_body_bytes = http::max_body_bytes(&file.limits)?;
    let auth = auth::auth_settings(file.auth)?;
    let connections = http::connection_limits(&file.connections)?;
    let mut cluster_file = file.cluster;
    if let Some(url) = o.nats_url.clone() {
        cluster_file.nats_url = Some(url);
    }
    if let Some(id) = o.node_id.clone() {
        cluster_file.node_id = Some(id);
    }
    let cluster = cluster::cluster_settings(&cluster_file)?;

    let log_json = match file.log.format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => bail!("log.format: {other:?} is not one of \"text\", \"json\""),
    };

    Ok(Config {
        listen,
        data_dir,
        database_url,
        db_max_connections,
        auto_migrate: file.database.auto_migrate.unwrap_or(true),
        auth,
        api: gremium_signaling::ApiSettings {
            max_body_bytes,
            default_retention_days: retention.default_days,
            max_retention_days: retention.max_days,
            live_dir,
            player_js,
            consent_texts,
            websockets: file.websockets.settings()?,
        },
        log_json,
        log_level: file.log.level.unwrap_or_else(|| "info".into()),
        ice,
        media_timeout,
        max_publishers,
        program,
        streaming,
        recording,
        storage,
        retention_sweep: retention.sweep,
        connections,
        cluster,
    })
}

/// The default database: an SQLite file in the data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("gremium.db").display()
    )
}
