//! Configuration: defaults that run with zero configuration, a TOML file for
//! everything else, and a few flags/env variables on top. Validated once at start
//! into the settings the crates take; errors name the offending key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The TOML file's shape. Unknown keys are errors (typos must not pass silently).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Directory for the SQLite file, the local object store and the local key.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub ice: IceConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub compositor: CompositorConfig,
    #[serde(default)]
    pub streaming: StreamingConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub pages: PagesConfig,
    #[serde(default)]
    pub websockets: WebSocketsConfig,
}

/// `[websockets]`: caps and buffers of the meeting event WebSockets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketsConfig {
    /// Open sockets per join token or staff subject (default 16).
    pub max_per_token: Option<usize>,
    /// Open sockets per meeting (default 2000).
    pub max_per_meeting: Option<usize>,
    /// Events queued for a client that does not read before it is dropped (default 64).
    pub queue_messages: Option<usize>,
}

impl WebSocketsConfig {
    fn settings(&self) -> anyhow::Result<gremium_signaling::WebSocketSettings> {
        let d = gremium_signaling::WebSocketSettings::default();
        let s = gremium_signaling::WebSocketSettings {
            max_per_token: self.max_per_token.unwrap_or(d.max_per_token),
            max_per_meeting: self.max_per_meeting.unwrap_or(d.max_per_meeting),
            queue_messages: self.queue_messages.unwrap_or(d.queue_messages),
        };
        if !(1..=1000).contains(&s.max_per_token) {
            bail!("websockets.max_per_token: must be between 1 and 1000");
        }
        if !(1..=100_000).contains(&s.max_per_meeting) {
            bail!("websockets.max_per_meeting: must be between 1 and 100000");
        }
        if !(8..=4096).contains(&s.queue_messages) {
            bail!("websockets.queue_messages: must be between 8 and 4096");
        }
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; default an SQLite file in the data directory.
    pub url: Option<String>,
    /// PostgreSQL pool size (default 8).
    pub max_connections: Option<u32>,
    /// Apply migrations on `serve` (default true).
    pub auto_migrate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (default) or `s3`.
    pub kind: Option<String>,
    pub s3: Option<S3Config>,
    /// Master key wrapping the recordings' data keys: 64 hex digits. The environment
    /// variable `GREMIUM_MASTER_KEY` wins over this.
    pub master_key: Option<String>,
    /// File holding the master key (64 hex digits). Default: `DATA_DIR/keys/master.key`,
    /// generated on first start (fine for a single machine, not for production).
    pub master_key_file: Option<PathBuf>,
    /// Where running recordings are spooled, encrypted (default `DATA_DIR/spool`).
    pub spool_dir: Option<PathBuf>,
    /// A recording starts only with at least this many MiB free on the spool disk
    /// (default 256, about 13 minutes of a 720p recording; 0: no check).
    pub spool_min_free_mb: Option<u64>,
    /// Root of the local object store (default `DATA_DIR/objects`).
    pub local_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `iss` of locally signed tokens (default `gremium`).
    pub local_issuer: Option<String>,
    /// Accept staff tokens from `gremium token` (default: true without OIDC, false with).
    pub accept_local_staff_tokens: Option<bool>,
    /// Join-token lifetime in seconds (default 12 h).
    pub join_token_ttl_secs: Option<u64>,
    /// Clock-skew leeway in seconds (default 30).
    pub leeway_secs: Option<u64>,
    pub oidc: Option<OidcConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// Default `["RS256", "ES256"]`.
    pub algorithms: Option<Vec<String>>,
    /// Dot path of the roles claim (default `roles`).
    pub role_claim: Option<String>,
    /// Claim value → role name; default maps each role name to itself.
    pub role_map: Option<HashMap<String, String>>,
    /// JWKS cache lifetime in seconds (default 3600).
    pub jwks_max_age_secs: Option<u64>,
    /// The public client id for sign-in on the console and archive pages; without it
    /// the pages keep taking locally issued tokens (`?token=`).
    pub client_id: Option<String>,
    /// Scopes the pages request (default `openid profile`).
    pub scopes: Option<String>,
    /// RFC 8707 `resource` the pages request the access token for (e.g. for
    /// node-oidc-provider); default none.
    pub resource: Option<String>,
    /// Overrides the discovered authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// Overrides the discovered token endpoint.
    pub token_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceConfig {
    pub udp_port_min: Option<u16>,
    pub udp_port_max: Option<u16>,
    pub nat_1to1_ip: Option<String>,
    #[serde(default)]
    pub stun_servers: Vec<String>,
    #[serde(default)]
    pub turn_servers: Vec<String>,
    #[serde(default)]
    pub allowed_local_addresses: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// A publisher that sends no media for this many seconds is removed (default 10).
    pub media_timeout_secs: Option<u64>,
    /// Most publishers one meeting accepts at once (default 50).
    pub max_publishers_per_meeting: Option<usize>,
    /// Jitter buffer of incoming media in ms (default 200).
    pub jitter_buffer_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositorConfig {
    /// Program width in pixels (default 1280).
    pub width: Option<u32>,
    /// Program height in pixels (default 720).
    pub height: Option<u32>,
    /// Program frame rate (default 30).
    pub fps: Option<u32>,
    /// How long the mixers wait for a late input, in ms (default 100).
    pub latency_ms: Option<u64>,
    /// `placeholder` (a neutral tile, default) or `hide` for non-consenting participants.
    pub non_consenting: Option<String>,
    /// Text of the neutral tile.
    pub not_consenting_text: Option<String>,
    /// Draw name labels on tiles (default true).
    pub labels: Option<bool>,
    /// Text of the non-public slate.
    pub slate_text: Option<String>,
    /// Scaling of inputs into tiles: `linear` (default), `cubic` or `lanczos`.
    pub scaler: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// HLS segment length in whole seconds (default 1; 1..=10).
    pub segment_secs: Option<u64>,
    /// Segments in the live playlist window (default 6; 3..=30).
    pub window_segments: Option<u32>,
    /// Extra segments kept in the playlists for DVR, pause and seek back (default 0).
    pub dvr_segments: Option<u32>,
    /// What the recording does during non-public parts: `continue` (default: it keeps
    /// the program, e.g. for the minutes) or `slate` (it shows the slate too).
    pub non_public_recording: Option<String>,
    /// Broadcast delay of livestreams in seconds (default 0: none; at most 60).
    pub delay_secs: Option<u64>,
    /// One H.264 encode for the recording and the livestream while both have the same
    /// audience (default false: experimental, see the README).
    pub share_encoder: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Default retention of recordings in days (default 30).
    pub default_days: Option<u32>,
    /// Largest retention a meeting may ask for (default 3650).
    pub max_days: Option<u32>,
    /// How often the retention job looks for expired recordings (default 3600 s).
    pub sweep_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body in bytes (default 65536).
    pub max_body_bytes: Option<usize>,
}

/// Client connections: what a reverse proxy in front would enforce (see
/// docs/operations/limits.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Seconds a client has to send a request's complete header (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// A connection on which no byte moves either way for this many seconds is
    /// closed; WebSockets excepted (default 60).
    pub idle_timeout_secs: Option<u64>,
    /// Most open client connections (default 10000; lowered to fit the open-files limit).
    pub max_connections: Option<usize>,
    /// Most open connections from one client address (default 256).
    pub max_connections_per_client: Option<usize>,
    /// Addresses of reverse proxies in front: exempt from the per-client cap.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Seconds a shutdown waits for open requests (default 10).
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// tracing filter, e.g. `info` or `gremium=debug` (default `info`; `RUST_LOG` wins).
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// hls.js served as `/assets/hls.min.js` for the viewer page (default
    /// `web/node_modules/hls.js/dist/hls.min.js`, relative to the working directory;
    /// `""`: none, the page uses native HLS). `GREMIUM_PLAYER_JS` wins.
    pub player_js: Option<PathBuf>,
}

/// Texts of the participants' consent dialog (`/join`). Each purpose is German and
/// English: `purpose_recording = { de = "…", en = "…" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    /// The controller: name and postal address of the body holding the meetings.
    pub controller: Option<String>,
    /// Why meetings are recorded.
    pub purpose_recording: Option<BilingualConfig>,
    /// Why meetings are streamed live.
    pub purpose_streaming: Option<BilingualConfig>,
}

/// A text in German and English.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilingualConfig {
    pub de: String,
    pub en: String,
}

/// Longest consent text accepted (a dialog, not a privacy policy).
const MAX_PAGE_TEXT: usize = 2000;

fn page_text(key: &str, text: String) -> anyhow::Result<String> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_PAGE_TEXT {
        bail!("{key}: must be 1 to {MAX_PAGE_TEXT} characters");
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        bail!("{key}: must not contain control characters");
    }
    Ok(text)
}

fn consent_texts(c: PagesConfig) -> anyhow::Result<gremium_signaling::ConsentTexts> {
    let defaults = gremium_signaling::ConsentTexts::default();
    fn bilingual(
        key: &str,
        c: Option<BilingualConfig>,
        default: gremium_signaling::Bilingual,
    ) -> anyhow::Result<gremium_signaling::Bilingual> {
        Ok(match c {
            None => default,
            Some(b) => gremium_signaling::Bilingual {
                de: page_text(&format!("{key}.de"), b.de)?,
                en: page_text(&format!("{key}.en"), b.en)?,
            },
        })
    }
    Ok(gremium_signaling::ConsentTexts {
        controller: match c.controller {
            None => defaults.controller,
            Some(t) => page_text("pages.controller", t)?,
        },
        purpose_recording: bilingual(
            "pages.purpose_recording",
            c.purpose_recording,
            defaults.purpose_recording,
        )?,
        purpose_streaming: bilingual(
            "pages.purpose_streaming",
            c.purpose_streaming,
            defaults.purpose_streaming,
        )?,
    })
}

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
    pub storage: StorageSettings,
    pub retention_sweep: std::time::Duration,
    pub connections: crate::admission::ConnectionLimits,
}

/// Where recordings go and how they are protected.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Master key in hex, from the environment or the config file.
    pub master_key: Option<String>,
    /// File with the master key (generated when it is the default and missing).
    pub master_key_file: PathBuf,
    /// True when `master_key_file` is the default (then it may be generated).
    pub master_key_file_default: bool,
    pub spool_dir: PathBuf,
    /// Bytes that must be free on the spool disk for a recording to start.
    pub spool_min_free: u64,
    pub local_dir: PathBuf,
    /// The S3 store, when `storage.kind = "s3"`.
    pub s3: Option<gremium_storage::S3Settings>,
}

/// Overrides from flags and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl FileConfig {
    /// Parse TOML text; errors name the key and line.
    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))
    }
}

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

    let s3 = match file.storage.kind.as_deref().unwrap_or("local") {
        "local" => None,
        "s3" => match &file.storage.s3 {
            None => bail!("storage.s3: required when storage.kind = \"s3\""),
            Some(s3) => {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let settings = gremium_storage::S3Settings {
                    endpoint: s3.endpoint.clone(),
                    bucket: s3.bucket.clone(),
                    region: s3.region.clone(),
                    access_key_id: env("GREMIUM_S3_ACCESS_KEY_ID")
                        .or_else(|| s3.access_key_id.clone()),
                    secret_access_key: env("GREMIUM_S3_SECRET_ACCESS_KEY")
                        .or_else(|| s3.secret_access_key.clone()),
                    path_style: s3.path_style.unwrap_or(true),
                };
                // Validated here so a bad setting stops the start with the key named.
                if let Err(e) = gremium_storage::S3Store::new(settings.clone()) {
                    bail!("storage.s3: {e}");
                }
                Some(settings)
            }
        },
        other => bail!("storage.kind: {other:?} is not one of \"local\", \"s3\""),
    };

    if let (Some(min), Some(max)) = (file.ice.udp_port_min, file.ice.udp_port_max) {
        if min > max {
            bail!("ice.udp_port_min: must not exceed ice.udp_port_max");
        }
    }
    if let Some(ip) = &file.ice.nat_1to1_ip {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| anyhow::anyhow!("ice.nat_1to1_ip: {ip:?} is not an IP address"))?;
    }
    for (i, a) in file.ice.allowed_local_addresses.iter().enumerate() {
        a.parse::<std::net::IpAddr>().map_err(|_| {
            anyhow::anyhow!("ice.allowed_local_addresses[{i}]: {a:?} is not an IP address")
        })?;
    }
    for (key, list, schemes) in [
        ("ice.stun_servers", &file.ice.stun_servers, &["stun:"][..]),
        (
            "ice.turn_servers",
            &file.ice.turn_servers,
            &["turn:", "turns:"][..],
        ),
    ] {
        for (i, s) in list.iter().enumerate() {
            if !schemes.iter().any(|p| s.starts_with(p)) {
                bail!("{key}[{i}]: must start with {}", schemes.join(" or "));
            }
        }
    }

    let ice = gremium_pipelines::webrtc::IceSettings {
        local_addresses: file
            .ice
            .allowed_local_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        port_range: match (file.ice.udp_port_min, file.ice.udp_port_max) {
            (Some(min), Some(max)) => Some((min, max)),
            (None, None) => None,
            _ => bail!(
                "ice.udp_port_min: give both ice.udp_port_min and ice.udp_port_max, or neither"
            ),
        },
        // webrtcbin wants URLs: stun://host:port, turn(s)://user:pass@host:port.
        stun_server: file.ice.stun_servers.first().map(|s| to_url(s)),
        turn_servers: file.ice.turn_servers.iter().map(|s| to_url(s)).collect(),
        nat_1to1: file
            .ice
            .nat_1to1_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok()),
        jitter_buffer_ms: match file.ingest.jitter_buffer_ms {
            Some(ms) if !(20..=2000).contains(&ms) => {
                bail!("ingest.jitter_buffer_ms: must be between 20 and 2000")
            }
            other => other,
        },
    };
    if file.ice.stun_servers.len() > 1 {
        bail!("ice.stun_servers: webrtcbin uses one STUN server; give at most one");
    }

    let media_timeout_secs = file.ingest.media_timeout_secs.unwrap_or(10);
    if !(1..=600).contains(&media_timeout_secs) {
        bail!("ingest.media_timeout_secs: must be between 1 and 600");
    }
    let media_timeout = std::time::Duration::from_secs(media_timeout_secs);
    let max_publishers = file.ingest.max_publishers_per_meeting.unwrap_or(50);
    if !(1..=500).contains(&max_publishers) {
        bail!("ingest.max_publishers_per_meeting: must be between 1 and 500");
    }

    let program = program_settings(&file.compositor)?;
    let streaming = streaming_settings(&file.streaming)?;

    let default_days = file.retention.default_days.unwrap_or(30);
    let max_days = file.retention.max_days.unwrap_or(3650);
    if default_days > max_days {
        bail!("retention.default_days: must not exceed retention.max_days ({max_days})");
    }
    let sweep = file.retention.sweep_interval_secs.unwrap_or(3600);
    if !(1..=7 * 24 * 3600).contains(&sweep) {
        bail!("retention.sweep_interval_secs: must be between 1 and 604800");
    }
    let master_key = std::env::var("GREMIUM_MASTER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .or(file.storage.master_key.clone());
    if let Some(k) = &master_key {
        gremium_storage::crypto::MasterKey::from_hex(k)
            .map_err(|_| anyhow::anyhow!("storage.master_key: expected 64 hex digits"))?;
    }
    let storage = StorageSettings {
        s3,
        master_key,
        master_key_file_default: file.storage.master_key_file.is_none(),
        master_key_file: file
            .storage
            .master_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("keys").join("master.key")),
        spool_dir: file
            .storage
            .spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("spool")),
        spool_min_free: file
            .storage
            .spool_min_free_mb
            .unwrap_or(256)
            .checked_mul(1024 * 1024)
            .ok_or_else(|| anyhow::anyhow!("storage.spool_min_free_mb: too large"))?,
        local_dir: file
            .storage
            .local_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("objects")),
    };
    let live_dir = data_dir.join("live");
    let player_js = std::env::var_os("GREMIUM_PLAYER_JS")
        .map(PathBuf::from)
        .or(file.web.player_js)
        .unwrap_or_else(|| PathBuf::from(gremium_signaling::DEFAULT_PLAYER_JS));
    // Relative to where the service starts, not to where a later chdir might lead.
    let player_js = if player_js.as_os_str().is_empty() {
        None
    } else if player_js.is_relative() {
        let cwd = std::env::current_dir().context("web.player_js: no working directory")?;
        Some(cwd.join(player_js))
    } else {
        Some(player_js)
    };
    let consent_texts = consent_texts(file.pages)?;
    let max_body_bytes = file.limits.max_body_bytes.unwrap_or(64 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
        bail!("limits.max_body_bytes: must be between 1024 and 67108864");
    }

    let oidc = match file.auth.oidc {
        None => None,
        Some(c) => Some(oidc_settings(c)?),
    };
    let accept_local_staff = file
        .auth
        .accept_local_staff_tokens
        .unwrap_or(oidc.is_none());
    let local_issuer = file.auth.local_issuer.unwrap_or_else(|| "gremium".into());
    if local_issuer.trim().is_empty() {
        bail!("auth.local_issuer: must not be empty");
    }
    let join_ttl = file.auth.join_token_ttl_secs.unwrap_or(12 * 3600);
    if !(60..=7 * 24 * 3600).contains(&join_ttl) {
        bail!("auth.join_token_ttl_secs: must be between 60 and 604800");
    }

    let connections = connection_limits(&file.connections)?;

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
        auth: gremium_signaling::AuthSettings {
            local_key: Vec::new(), // loaded from the data directory by `local_key`
            local_issuer,
            accept_local_staff,
            join_token_ttl: std::time::Duration::from_secs(join_ttl),
            leeway_secs: file.auth.leeway_secs.unwrap_or(30),
            oidc,
        },
        api: gremium_signaling::ApiSettings {
            max_body_bytes,
            default_retention_days: default_days,
            max_retention_days: max_days,
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
        storage,
        retention_sweep: std::time::Duration::from_secs(sweep),
        connections,
    })
}

fn connection_limits(c: &ConnectionsConfig) -> anyhow::Result<crate::admission::ConnectionLimits> {
    let d = crate::admission::ConnectionLimits::default();
    let header = c
        .header_read_timeout_secs
        .unwrap_or(d.header_read_timeout.as_secs());
    if !(1..=300).contains(&header) {
        bail!("connections.header_read_timeout_secs: must be between 1 and 300");
    }
    let idle = c.idle_timeout_secs.unwrap_or(d.idle_timeout.as_secs());
    if !(1..=3600).contains(&idle) {
        bail!("connections.idle_timeout_secs: must be between 1 and 3600");
    }
    let max = c.max_connections.unwrap_or(d.max_connections);
    if !(16..=1_000_000).contains(&max) {
        bail!("connections.max_connections: must be between 16 and 1000000");
    }
    let per_client = c
        .max_connections_per_client
        .unwrap_or(d.max_per_client.min(max));
    if !(1..=max).contains(&per_client) {
        bail!(
            "connections.max_connections_per_client: must be between 1 and max_connections ({max})"
        );
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in c.trusted_proxies.iter().enumerate() {
        match p.parse::<std::net::IpAddr>() {
            Ok(ip) => trusted_proxies.push(ip.to_canonical()),
            Err(_) => bail!("connections.trusted_proxies[{i}]: {p:?} is not an IP address"),
        }
    }
    let grace = c.shutdown_grace_secs.unwrap_or(d.shutdown_grace.as_secs());
    if grace > 300 {
        bail!("connections.shutdown_grace_secs: must be at most 300");
    }
    Ok(crate::admission::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(header),
        idle_timeout: std::time::Duration::from_secs(idle),
        max_connections: max,
        max_per_client: per_client,
        trusted_proxies,
        shutdown_grace: std::time::Duration::from_secs(grace),
    })
}

fn streaming_settings(
    c: &StreamingConfig,
) -> anyhow::Result<gremium_mediaplane::StreamingSettings> {
    let segment = c.segment_secs.unwrap_or(1);
    if !(1..=10).contains(&segment) {
        bail!("streaming.segment_secs: must be between 1 and 10");
    }
    let window = c.window_segments.unwrap_or(6);
    if !(3..=30).contains(&window) {
        bail!("streaming.window_segments: must be between 3 and 30");
    }
    let dvr_segments = c.dvr_segments.unwrap_or(0);
    if dvr_segments > 3 * 3600 {
        bail!("streaming.dvr_segments: must be at most 10800");
    }
    let slate_recording = match c.non_public_recording.as_deref().unwrap_or("continue") {
        "continue" => false,
        "slate" => true,
        other => {
            bail!("streaming.non_public_recording: {other:?} is not one of \"continue\", \"slate\"")
        }
    };
    let delay = c.delay_secs.unwrap_or(0);
    if delay > 60 {
        bail!("streaming.delay_secs: must be at most 60");
    }
    Ok(gremium_mediaplane::StreamingSettings {
        segment: std::time::Duration::from_secs(segment),
        window,
        dvr_segments,
        slate_recording,
        delay: (delay > 0).then(|| std::time::Duration::from_secs(delay)),
        share_encoder: c.share_encoder.unwrap_or(true),
    })
}

fn program_settings(c: &CompositorConfig) -> anyhow::Result<gremium_compositor::ProgramSettings> {
    let defaults = gremium_compositor::ProgramSettings::default();
    let width = c.width.unwrap_or(defaults.canvas.width);
    let height = c.height.unwrap_or(defaults.canvas.height);
    if !(160..=3840).contains(&width) || !width.is_multiple_of(2) {
        bail!("compositor.width: must be an even number between 160 and 3840");
    }
    if !(90..=2160).contains(&height) || !height.is_multiple_of(2) {
        bail!("compositor.height: must be an even number between 90 and 2160");
    }
    let fps = c.fps.unwrap_or(defaults.fps);
    if !(1..=60).contains(&fps) {
        bail!("compositor.fps: must be between 1 and 60");
    }
    let latency_ms = c.latency_ms.unwrap_or(100);
    if !(10..=5000).contains(&latency_ms) {
        bail!("compositor.latency_ms: must be between 10 and 5000");
    }
    let non_consenting = match c.non_consenting.as_deref().unwrap_or("placeholder") {
        "placeholder" => gremium_compositor::NonConsenting::Placeholder,
        "hide" => gremium_compositor::NonConsenting::Hide,
        other => {
            bail!("compositor.non_consenting: {other:?} is not one of \"placeholder\", \"hide\"")
        }
    };
    let scaler = match c.scaler.as_deref().unwrap_or("linear") {
        "linear" => gremium_compositor::Scaler::Linear,
        "cubic" => gremium_compositor::Scaler::Cubic,
        "lanczos" => gremium_compositor::Scaler::Lanczos,
        other => {
            bail!("compositor.scaler: {other:?} is not one of \"linear\", \"cubic\", \"lanczos\"")
        }
    };
    Ok(gremium_compositor::ProgramSettings {
        scaler,
        canvas: gremium_compositor::Canvas { width, height },
        fps,
        latency: std::time::Duration::from_millis(latency_ms),
        non_consenting,
        not_consenting_text: c
            .not_consenting_text
            .clone()
            .unwrap_or(defaults.not_consenting_text),
        labels: c.labels.unwrap_or(true),
        slate_text: c.slate_text.clone().unwrap_or(defaults.slate_text),
        ..defaults
    })
}

fn oidc_settings(c: OidcConfig) -> anyhow::Result<gremium_signaling::OidcSettings> {
    use gremium_signaling::Role;
    if c.issuer.trim().is_empty() {
        bail!("auth.oidc.issuer: must not be empty");
    }
    if c.audience.trim().is_empty() {
        bail!("auth.oidc.audience: must not be empty");
    }
    let sign_in = sign_in_settings(&c)?;
    if !(c.jwks_url.starts_with("https://") || c.jwks_url.starts_with("http://")) {
        bail!("auth.oidc.jwks_url: must be an http(s) URL");
    }
    let mut algorithms = Vec::new();
    for (i, a) in c
        .algorithms
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into()])
        .iter()
        .enumerate()
    {
        algorithms.push(match a.as_str() {
            "RS256" => jsonwebtoken_alg::RS256,
            "ES256" => jsonwebtoken_alg::ES256,
            other => {
                bail!("auth.oidc.algorithms[{i}]: {other:?} is not one of \"RS256\", \"ES256\"")
            }
        });
    }
    if algorithms.is_empty() {
        bail!("auth.oidc.algorithms: must name at least one algorithm");
    }
    let role_map = match c.role_map {
        None => ["admin", "moderator", "viewer", "archivist"]
            .into_iter()
            .filter_map(|r| Role::parse(r).map(|role| (r.to_string(), role)))
            .collect(),
        Some(map) => {
            let mut out = HashMap::new();
            for (claim, role) in map {
                match Role::parse(&role) {
                    Some(Role::Participant) | None => bail!(
                        "auth.oidc.role_map.{claim}: {role:?} is not one of \"admin\", \"moderator\", \"viewer\", \"archivist\""
                    ),
                    Some(r) => {
                        out.insert(claim, r);
                    }
                }
            }
            out
        }
    };
    Ok(gremium_signaling::OidcSettings {
        issuer: c.issuer,
        audience: c.audience,
        jwks_url: c.jwks_url,
        algorithms,
        role_claim: c.role_claim.unwrap_or_else(|| "roles".into()),
        role_map,
        jwks_max_age: secs(c.jwks_max_age_secs, 3600),
        jwks_min_refresh: std::time::Duration::from_secs(10),
        sign_in,
    })
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace)
}

/// The browser client of `[auth.oidc]`; `None` without `client_id`.
fn sign_in_settings(c: &OidcConfig) -> anyhow::Result<Option<gremium_signaling::SignInSettings>> {
    let Some(client_id) = &c.client_id else {
        for (key, set) in [
            ("scopes", c.scopes.is_some()),
            ("resource", c.resource.is_some()),
            ("authorization_endpoint", c.authorization_endpoint.is_some()),
            ("token_endpoint", c.token_endpoint.is_some()),
        ] {
            if set {
                bail!("auth.oidc.{key}: only used for sign-in; set auth.oidc.client_id too");
            }
        }
        return Ok(None);
    };
    if client_id.trim().is_empty() || client_id.chars().any(char::is_control) {
        bail!("auth.oidc.client_id: must not be empty");
    }
    let scopes = c.scopes.clone().unwrap_or_else(|| "openid profile".into());
    if !scopes.split_whitespace().any(|s| s == "openid") {
        bail!("auth.oidc.scopes: must contain \"openid\" (space-separated)");
    }
    if scopes
        .chars()
        .any(|ch| ch.is_control() || ch == '"' || ch == '\\')
    {
        bail!("auth.oidc.scopes: space-separated scope names only");
    }
    if let Some(r) = &c.resource {
        if !r.contains(':') || r.contains(char::is_whitespace) || r.contains('#') {
            bail!("auth.oidc.resource: must be an absolute URI without a fragment (RFC 8707)");
        }
    }
    for (key, value) in [
        ("authorization_endpoint", &c.authorization_endpoint),
        ("token_endpoint", &c.token_endpoint),
    ] {
        if let Some(v) = value {
            if !is_http_url(v) {
                bail!("auth.oidc.{key}: must be an http(s) URL");
            }
        }
    }
    if !is_http_url(&c.issuer) {
        bail!("auth.oidc.issuer: must be an http(s) URL for sign-in (discovery)");
    }
    Ok(Some(gremium_signaling::SignInSettings {
        client_id: client_id.clone(),
        scopes: scopes.split_whitespace().collect::<Vec<_>>().join(" "),
        resource: c.resource.clone(),
        authorization_endpoint: c.authorization_endpoint.clone(),
        token_endpoint: c.token_endpoint.clone(),
    }))
}

use gremium_signaling::auth::Algorithm as jsonwebtoken_alg;

/// `stun:host:port` → `stun://host:port` (already-URL forms pass through).
fn to_url(s: &str) -> String {
    match s.split_once(':') {
        Some((scheme, rest)) if !rest.starts_with("//") => format!("{scheme}://{rest}"),
        _ => s.to_string(),
    }
}

pub fn sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("gremium.db").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> anyhow::Result<Config> {
        validate(FileConfig::parse(text)?, &Overrides::default())
    }

    #[test]
    fn zero_configuration_runs_on_embedded_defaults() {
        let c = check("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite://data/gremium.db"));
        assert!(c.auth.accept_local_staff);
        assert!(c.auth.oidc.is_none());
        assert_eq!(c.storage.spool_min_free, 256 * 1024 * 1024);
        assert_eq!(
            check("[storage]\nspool_min_free_mb = 0")
                .unwrap()
                .storage
                .spool_min_free,
            0
        );
        let player = c.api.player_js.expect("a player path by default");
        assert!(player.is_absolute(), "{}", player.display());
        assert!(player.ends_with("web/node_modules/hls.js/dist/hls.min.js"));
    }

    #[test]
    fn player_js_may_be_switched_off() {
        assert_eq!(check("[web]\nplayer_js = ''").unwrap().api.player_js, None);
        assert_eq!(
            check("[web]\nplayer_js = '/srv/hls.min.js'")
                .unwrap()
                .api
                .player_js,
            Some(PathBuf::from("/srv/hls.min.js"))
        );
    }

    #[test]
    fn errors_name_the_bad_key() {
        let cases = [
            ("listen = 'nonsense'", "listen"),
            ("bogus = 1", "bogus"),
            ("[database]\nurl = 'mysql://x'", "database.url"),
            ("[limits]\nmax_body_bytes = 'big'", "max_body_bytes"),
            ("[limits]\nmax_body_bytes = 10", "limits.max_body_bytes"),
            ("[storage]\nkind = 'ftp'", "storage.kind"),
            ("[storage]\nmaster_key = 'abc'", "storage.master_key"),
            ("[storage]\nspool_min_free_mb = 17592186044416", "storage.spool_min_free_mb"),
            ("[retention]\nsweep_interval_secs = 0", "retention.sweep_interval_secs"),
            ("[storage]\nkind = 's3'", "storage.s3"),
            ("[ice]\nudp_port_min = 20000\nudp_port_max = 10000", "ice.udp_port_min"),
            ("[ice]\nnat_1to1_ip = 'example'", "ice.nat_1to1_ip"),
            ("[ice]\nstun_servers = ['http://x']", "ice.stun_servers[0]"),
            ("[retention]\ndefault_days = 10\nmax_days = 5", "retention.default_days"),
            ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'ftp://x'", "auth.oidc.jwks_url"),
            ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'https://x'\nalgorithms = ['HS256']", "auth.oidc.algorithms[0]"),
            ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'https://x'\nrole_map = { g = 'boss' }", "auth.oidc.role_map.g"),
            ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nscopes = 'openid'", "auth.oidc.scopes"),
            ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = ''", "auth.oidc.client_id"),
            ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\nscopes = 'profile'", "auth.oidc.scopes"),
            ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\ntoken_endpoint = '/token'", "auth.oidc.token_endpoint"),
            ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\nresource = 'gremium'", "auth.oidc.resource"),
            ("[auth.oidc]\nissuer = 'council'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'", "auth.oidc.issuer"),
            ("[log]\nformat = 'xml'", "log.format"),
            ("[connections]\nheader_read_timeout_secs = 0", "connections.header_read_timeout_secs"),
            ("[connections]\nidle_timeout_secs = 0", "connections.idle_timeout_secs"),
            ("[connections]\nmax_connections = 1", "connections.max_connections"),
            ("[connections]\nmax_connections = 100\nmax_connections_per_client = 101", "connections.max_connections_per_client"),
            ("[connections]\ntrusted_proxies = ['proxy.local']", "connections.trusted_proxies[0]"),
            ("[connections]\nshutdown_grace_secs = 301", "connections.shutdown_grace_secs"),
            ("[ingest]\nmedia_timeout_secs = 0", "ingest.media_timeout_secs"),
            ("[compositor]\nwidth = 1281", "compositor.width"),
            ("[ingest]\njitter_buffer_ms = 5", "ingest.jitter_buffer_ms"),
            ("[compositor]\nfps = 0", "compositor.fps"),
            ("[streaming]\nsegment_secs = 0", "streaming.segment_secs"),
            ("[streaming]\nnon_public_recording = 'pause'", "streaming.non_public_recording"),
            ("[compositor]\nnon_consenting = 'blur'", "compositor.non_consenting"),
            ("[pages]\ncontroller = ' '", "pages.controller"),
            ("[pages]\npurpose_recording = { de = 'x', en = '' }", "pages.purpose_recording.en"),
            ("[pages]\npurpose_streaming = { de = 'x' }", "en"),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", check(text).expect_err(text));
            assert!(err.contains(key), "{text:?} → {err}");
        }
    }

    #[test]
    fn oidc_sign_in_is_off_without_a_client_id_and_defaults_its_scopes() {
        let base = "[auth.oidc]\nissuer = 'https://id.example'\naudience = 'gremium'\njwks_url = 'https://id.example/jwks'";
        assert_eq!(check(base).unwrap().auth.oidc.unwrap().sign_in, None);
        let c = check(&format!("{base}\nclient_id = 'gremium-pages'")).unwrap();
        let s = c.auth.oidc.unwrap().sign_in.unwrap();
        assert_eq!(s.client_id, "gremium-pages");
        assert_eq!(s.scopes, "openid profile");
        assert_eq!(
            (s.authorization_endpoint, s.token_endpoint, s.resource),
            (None, None, None)
        );
        let c = check(&format!(
            "{base}\nclient_id = 'g'\nscopes = ' openid  gremium '\nresource = 'urn:gremium'\ntoken_endpoint = 'https://id.example/t'"
        ))
        .unwrap();
        let s = c.auth.oidc.unwrap().sign_in.unwrap();
        assert_eq!(s.scopes, "openid gremium");
        assert_eq!(s.resource.as_deref(), Some("urn:gremium"));
        assert_eq!(s.token_endpoint.as_deref(), Some("https://id.example/t"));
    }

    #[test]
    fn oidc_disables_local_staff_tokens_by_default() {
        let c = check("[auth.oidc]\nissuer = 'https://id.example'\naudience = 'gremium'\njwks_url = 'https://id.example/jwks'").unwrap();
        assert!(!c.auth.accept_local_staff);
        assert_eq!(c.auth.oidc.unwrap().role_map.len(), 4);
    }

    #[test]
    fn the_example_config_documents_real_keys() {
        // Uncomment every `# key = value` and `# [section]` line: the result must validate.
        let text: String = include_str!("../gremium.example.toml")
            .lines()
            .map(|l| {
                let rest = l.strip_prefix("# ").unwrap_or(l);
                let is_setting = rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                    });
                if is_setting {
                    rest.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = check(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        assert_eq!(c.auth.oidc.as_ref().map(|o| o.role_map.len()), Some(4));
        assert_eq!(
            c.auth
                .oidc
                .as_ref()
                .and_then(|o| o.sign_in.as_ref())
                .map(|s| s.client_id.as_str()),
            Some("gremium-pages")
        );
        assert_eq!(c.api.max_body_bytes, 65536);
        assert_eq!(
            c.connections,
            crate::admission::ConnectionLimits {
                trusted_proxies: vec![std::net::IpAddr::from([127, 0, 0, 1])],
                ..Default::default()
            }
        );
        assert_eq!(c.storage.spool_min_free, 256 * 1024 * 1024);
        assert!(c
            .api
            .player_js
            .is_some_and(|p| p.ends_with("web/node_modules/hls.js/dist/hls.min.js")));
        assert_eq!(c.ice.port_range, Some((40000, 40999)));
        assert_eq!(
            c.ice.stun_server.as_deref(),
            Some("stun://stun.example.org:3478")
        );
        assert_eq!(
            c.ice.turn_servers,
            ["turn://user:pass@turn.example.org:3478"]
        );
        assert_eq!(
            c.ice.local_addresses,
            [std::net::IpAddr::from([127, 0, 0, 1])]
        );
        assert!(c
            .api
            .consent_texts
            .controller
            .starts_with("Stadt Musterstadt"));
        assert!(c.api.consent_texts.purpose_recording.en.contains("minutes"));
    }

    #[test]
    fn consent_texts_have_bilingual_defaults_and_may_be_configured() {
        let c = check("").unwrap();
        assert_eq!(
            c.api.consent_texts,
            gremium_signaling::ConsentTexts::default()
        );
        let c = check(
            "[pages]\ncontroller = 'Stadt X, Markt 1'\n\
             purpose_streaming = { de = ' Öffentlichkeit ', en = 'Publicity' }",
        )
        .unwrap();
        let t = c.api.consent_texts;
        assert_eq!(t.controller, "Stadt X, Markt 1");
        assert_eq!(t.purpose_streaming.de, "Öffentlichkeit");
        assert_eq!(t.purpose_streaming.en, "Publicity");
        assert_eq!(
            t.purpose_recording,
            gremium_signaling::ConsentTexts::default().purpose_recording
        );
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:9999".into()),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = validate(FileConfig::parse("listen = '127.0.0.1:1'").unwrap(), &o).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert!(c.database_url.contains("/tmp/x/gremium.db"));
    }
}
