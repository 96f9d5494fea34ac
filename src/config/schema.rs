//! The TOML file's shape: one struct per section, every key optional (a missing key
//! means its default) and unknown keys refused, so a typo cannot pass silently.
//!
//! Owns: the key names, their types and their doc comments (which say the defaults).
//! Must not: validate values or pick defaults (that is the section modules' work, so
//! every error names its key in one place), read the environment or touch files.

use std::collections::HashMap;
use std::path::PathBuf;

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
    pub recording: RecordingConfig,
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
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// `[cluster]`: this process as part of a cluster (`gremium serve --role control|media`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS (with JetStream) URL, e.g. `nats://127.0.0.1:4222`. Required by the
    /// `control` and `media` roles.
    pub nats_url: Option<String>,
    /// Name of the cluster: prefixes its subjects, stream and bucket on NATS, so that
    /// several clusters share one NATS (default `gremium`).
    pub name: Option<String>,
    /// This node's id (default: hostname + random suffix).
    pub node_id: Option<String>,
    /// Cost units this media node carries (default from the capacity benchmark).
    pub capacity: Option<u32>,
    /// Zone label of a media node, and the zone a control replica places in.
    pub zone: Option<String>,
    /// Address a media node's WebRTC candidates use, as shown in the registry
    /// (default: `[ice] nat_1to1_ip`, else the listen address's IP).
    pub advertise: Option<String>,
    /// Seconds a node may take to answer a command (default 15).
    pub command_timeout_secs: Option<u64>,
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
    /// audience and `[recording]` keeps the top HLS rung's bitrate and a keyframe per
    /// segment (default true).
    pub share_encoder: Option<bool>,
}

/// `[recording]`: how recordings are encoded and spooled. Every key is optional; the
/// defaults are what the media plane did before these keys existed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Video bitrate in kbit/s (100..=50000; default: the top HLS rung's for the
    /// canvas, 2500 at 720p, so a livestream can share the encode).
    pub video_kbps: Option<u32>,
    /// Time between keyframes in ms (one frame's duration ..= 10000; default: one HLS
    /// segment while the encode is shared, else 2000).
    pub keyframe_interval_ms: Option<u64>,
    /// Length of the MP4 fragments written to the spool in ms, what a crash can lose
    /// (100..=10000; default 400).
    pub fragment_ms: Option<u64>,
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

impl FileConfig {
    /// Parse TOML text; errors name the key and line.
    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))
    }
}
