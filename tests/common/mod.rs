//! Shared helpers for the end-to-end tests: an in-process Gremium on a real database
//! and a real TCP socket, with the fake media plane from `gremium-signaling`.

#![allow(dead_code)]

pub mod netns;
pub mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gremium_mediaplane::{GstMediaPlane, MediaPlaneSettings};
use gremium_pipelines::webrtc::IceSettings;
use gremium_signaling::media::fake::FakeMediaPlane;
use gremium_signaling::{ApiSettings, AppState, AuthSettings, Authenticator, OidcSettings, Role};
use gremium_storage::Db;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use tokio_tungstenite::tungstenite::Message;

pub const LOCAL_KEY: &[u8] = b"test key for gremium e2e tests, 32+ bytes long";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub db: Db,
    pub fake: Arc<FakeMediaPlane>,
    pub auth: Arc<Authenticator>,
    pub vault: gremium_storage::Vault,
    pub state: AppState,
    pub http: reqwest::Client,
}

pub fn auth_settings(oidc: Option<OidcSettings>) -> AuthSettings {
    AuthSettings {
        local_key: LOCAL_KEY.to_vec(),
        local_issuer: "gremium".into(),
        accept_local_staff: oidc.is_none(),
        join_token_ttl: Duration::from_secs(3600),
        leeway_secs: 0,
        oidc,
    }
}

pub async fn fresh_db(backend: Backend) -> Db {
    match backend {
        Backend::Sqlite => {
            gremium_storage::testing::fresh_sqlite()
                .await
                .expect("sqlite")
                .0
        }
        Backend::Postgres => gremium_storage::testing::fresh_postgres()
            .await
            .expect("postgres at GREMIUM_TEST_POSTGRES_URL"),
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        auth_settings(None),
        ApiSettings {
            max_body_bytes: 4096,
            ..Default::default()
        },
    )
    .await
}

pub async fn spawn_app_with(backend: Backend, auth: AuthSettings, api: ApiSettings) -> TestApp {
    watchdog::arm();
    let db = fresh_db(backend).await;
    let (sink, events) = gremium_signaling::event_channel();
    let fake = FakeMediaPlane::new(sink);
    let auth = Authenticator::new(auth);
    let vault =
        test_vault(&std::env::temp_dir().join(format!("gremium-objects-{}", uuid::Uuid::new_v4())));
    let state = AppState::new(
        db.clone(),
        auth.clone(),
        fake.clone(),
        vault.clone(),
        api,
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gremium_signaling::router(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestApp {
        base: format!("http://{addr}"),
        addr,
        db,
        fake,
        auth,
        vault,
        state,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    pub fn token(&self, roles: &[Role]) -> String {
        self.auth
            .issue_staff_token("tester", roles, now_secs(), Duration::from_secs(600))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// `GET /api/v1/{path}` with `token`; the body, whatever the status.
    pub async fn get_api(&self, token: &str, path: &str) -> Value {
        self.send(
            reqwest::Method::GET,
            &format!("/api/v1/{path}"),
            Some(token),
            None,
        )
        .await
        .1
    }

    /// The status of `GET /api/v1/{path}` with `token`, body unread (media may be
    /// large, or not JSON).
    pub async fn get_status(&self, token: &str, path: &str) -> u16 {
        self.http
            .get(self.url(&format!("/api/v1/{path}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn create_meeting(&self, token: &str, title: &str) -> Value {
        let (s, m) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/meetings",
                Some(token),
                Some(serde_json::json!({"title": title})),
            )
            .await;
        assert_eq!(s, 201, "{m}");
        m
    }

    /// A public meeting (its livestream shows the program): its id.
    pub async fn create_public_meeting(&self, token: &str, title: &str) -> String {
        let (s, m) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/meetings",
                Some(token),
                Some(serde_json::json!({"title": title, "public": true})),
            )
            .await;
        assert_eq!(s, 201, "{m}");
        m["id"].as_str().unwrap().to_string()
    }

    /// Start a recording of a meeting (asserts 201): its id.
    pub async fn start_recording(&self, token: &str, mid: &str) -> String {
        let (s, rec) = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/meetings/{mid}/recordings"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, 201, "{rec}");
        rec["id"].as_str().unwrap().to_string()
    }

    /// Start a livestream (`POST /api/v1/meetings/{mid}/streams` with `body`, e.g.
    /// `{"hls": true}`); asserts 201 and returns the stream.
    pub async fn start_stream(
        &self,
        token: &str,
        mid: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (s, stream) = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/meetings/{mid}/streams"),
                Some(token),
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "{stream}");
        stream
    }

    /// POST a stop (`/api/v1/recordings/{id}/stop` or `/api/v1/streams/{id}/stop`);
    /// asserts it was taken (202, or 200 when already stopped).
    pub async fn stop(&self, token: &str, kind: &str, id: &str) {
        let (s, r) = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/{kind}/{id}/stop"),
                Some(token),
                None,
            )
            .await;
        assert!(s == 202 || s == 200, "{s} {r}");
    }

    /// ffprobe a recording's media over HTTP through the archive API, as a player
    /// would (it seeks with Range requests); asserts ffprobe reads it. Returns the
    /// stream list (`codec_name`, `codec_type`, `width`, `height`) and the duration.
    pub fn probe_media(&self, token: &str, rid: &str) -> (Vec<Value>, f64) {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-headers"])
            .arg(format!("Authorization: Bearer {token}\r\n"))
            .args(["-show_entries", "stream=codec_name,codec_type,width,height"])
            .args(["-show_entries", "format=duration", "-of", "json"])
            .arg(format!("{}/api/v1/recordings/{rid}/media", self.base))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
        let duration = probe["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("no duration: {probe}"));
        (
            probe["streams"].as_array().cloned().unwrap_or_default(),
            duration,
        )
    }

    /// A participant sets their own consent (asserts 200).
    pub async fn set_consent(
        &self,
        mid: &str,
        pid: &str,
        join: &str,
        recording: bool,
        streaming: bool,
    ) {
        let (s, r) = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/meetings/{mid}/participants/{pid}/consent"),
                Some(join),
                Some(serde_json::json!({"recording": recording, "streaming": streaming})),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }

    /// Returns (participant id, join token).
    pub async fn add_participant(
        &self,
        token: &str,
        meeting: &str,
        name: &str,
    ) -> (String, String) {
        let (s, p) = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/meetings/{meeting}/participants"),
                Some(token),
                Some(serde_json::json!({"display_name": name})),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        (
            p["participant"]["id"].as_str().unwrap().to_string(),
            p["join_token"].as_str().unwrap().to_string(),
        )
    }
}

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

/// A vault over a local object store in `dir` with a fresh master key.
pub fn test_vault(dir: &std::path::Path) -> gremium_storage::Vault {
    gremium_storage::Vault::new(
        gremium_storage::crypto::MasterKey::generate(),
        Arc::new(gremium_storage::LocalStore::new(dir)),
    )
}

/// An in-process Gremium with the real GStreamer media plane (loopback ICE only).
pub async fn spawn_with_gst_media(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
) -> (TestApp, GstMediaPlane) {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    spawn_with_gst_media_in(media_timeout, max_publishers, program, dir).await
}

/// As [`spawn_with_gst_media`], keeping recordings in `dir` (spool in `dir/spool`,
/// the object store in `dir/objects`).
pub async fn spawn_with_gst_media_in(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
) -> (TestApp, GstMediaPlane) {
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_with_gst_media_store(media_timeout, max_publishers, program, dir, store).await
}

/// As [`spawn_with_gst_media_store`], with the given livestream settings.
pub async fn spawn_with_gst_media_streaming(
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    streaming: gremium_mediaplane::StreamingSettings,
) -> (TestApp, GstMediaPlane) {
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_gst(
        Duration::from_secs(10),
        10,
        program,
        dir,
        store,
        streaming,
        loopback_ice(),
    )
    .await
}

/// Loopback-only ICE, as every test media plane uses unless it says otherwise.
fn loopback_ice() -> IceSettings {
    IceSettings {
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..Default::default()
    }
}

/// As [`spawn_with_gst_media`] with the media plane's ICE settings `ice`.
pub async fn spawn_with_gst_media_ice(ice: IceSettings) -> (TestApp, GstMediaPlane) {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_gst(
        Duration::from_secs(10),
        10,
        Default::default(),
        dir,
        store,
        Default::default(),
        ice,
    )
    .await
}

/// As [`spawn_with_gst_media_in`], storing recordings in `store`.
pub async fn spawn_with_gst_media_store(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    store: Arc<dyn gremium_storage::ObjectStore>,
) -> (TestApp, GstMediaPlane) {
    spawn_gst(
        media_timeout,
        max_publishers,
        program,
        dir,
        store,
        Default::default(),
        loopback_ice(),
    )
    .await
}

async fn spawn_gst(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    store: Arc<dyn gremium_storage::ObjectStore>,
    streaming: gremium_mediaplane::StreamingSettings,
    ice: IceSettings,
) -> (TestApp, GstMediaPlane) {
    watchdog::arm();
    let db = fresh_db(Backend::Sqlite).await;
    let vault = gremium_storage::Vault::new(gremium_storage::crypto::MasterKey::generate(), store);
    let (sink, events) = gremium_signaling::event_channel();
    let media = GstMediaPlane::new(
        MediaPlaneSettings {
            ice,
            dot_dir: std::env::temp_dir().join("gremium-whip-dot"),
            gather_timeout: Duration::from_secs(5),
            media_timeout,
            max_publishers,
            program,
            recordings_dir: dir.join("spool"),
            // The default's order (256 MiB) would make the tests depend on the
            // machine's free space; the spool-disk test needs a check to trip.
            recordings_min_free: 1024 * 1024,
            store: vault.store().clone(),
            live_dir: dir.join("live"),
            streaming,
            recording: Default::default(),
        },
        sink.clone(),
    )
    .unwrap();
    let auth = Authenticator::new(auth_settings(None));
    let api = ApiSettings {
        max_body_bytes: 16 * 1024,
        live_dir: dir.join("live"),
        ..Default::default()
    };
    let state = AppState::new(
        db.clone(),
        auth.clone(),
        Arc::new(media.clone()),
        vault.clone(),
        api,
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gremium_signaling::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (fake_sink, _) = gremium_signaling::event_channel();
    let app = TestApp {
        base: format!("http://{addr}"),
        addr,
        db,
        fake: gremium_signaling::media::fake::FakeMediaPlane::new(fake_sink), // unused here
        auth,
        vault,
        state,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    };
    (app, media)
}

/// A 640x360@15 program: small enough for quick tests on real pipelines.
pub fn small_program() -> gremium_compositor::ProgramSettings {
    gremium_compositor::ProgramSettings {
        canvas: gremium_compositor::Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        ..Default::default()
    }
}

/// A meeting on an in-process Gremium with the real media plane
/// ([`small_program`], files under `dir` as [`spawn_with_gst_media_in`]), with "Anna"
/// publishing a small gold camera and a tone for up to 90 s (kill `publisher` when
/// done); the moderator's WebSocket has seen her media start.
pub struct PublishingMeeting {
    pub app: TestApp,
    pub media: GstMediaPlane,
    pub moderator: String,
    pub mid: String,
    pub ws: Ws,
    pub publisher: std::process::Child,
}

impl PublishingMeeting {
    /// `public` meeting; Anna's consent to `recording` and `streaming`.
    pub async fn start(
        dir: std::path::PathBuf,
        title: &str,
        public: bool,
        recording: bool,
        streaming: bool,
    ) -> PublishingMeeting {
        let (app, media) =
            spawn_with_gst_media_in(Duration::from_secs(10), 10, small_program(), dir).await;
        let moderator = app.token(&[Role::Moderator]);
        let mid = if public {
            app.create_public_meeting(&moderator, title).await
        } else {
            app.create_meeting(&moderator, title).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
        app.set_consent(&mid, &a, &a_join, recording, streaming)
            .await;
        let mut ws = ws_connect(app.addr, &mid, &moderator).await;
        next_event(&mut ws).await;
        let publisher = spawn_small_publisher(&app.base, &mid, &a_join, "ffd700", 90);
        wait_event(&mut ws, "participant_media_started", |_| true).await;
        PublishingMeeting {
            app,
            media,
            moderator,
            mid,
            ws,
            publisher,
        }
    }
}

/// A small synthetic camera (320x180@15 in a solid `color`, RRGGBB) and a tone,
/// publishing for `secs` seconds.
pub fn spawn_small_publisher(
    base: &str,
    mid: &str,
    join: &str,
    color: &str,
    secs: u32,
) -> std::process::Child {
    spawn_small_publisher_with(base, mid, join, color, secs, &[])
}

/// [`spawn_small_publisher`] with `extra` flags (e.g. `--tone 1000`).
pub fn spawn_small_publisher_with(
    base: &str,
    mid: &str,
    join: &str,
    color: &str,
    secs: u32,
    extra: &[&str],
) -> std::process::Child {
    let secs = secs.to_string();
    let mut args = vec![
        "--color",
        color,
        "--width",
        "320",
        "--height",
        "180",
        "--fps",
        "15",
        "--duration",
        &secs,
    ];
    args.extend_from_slice(extra);
    spawn_publisher(base, mid, join, &args)
}

/// Start the real `gremium publish` client (VP8, loopback ICE) for a participant;
/// `extra` adds flags such as `--color`, `--tone`, `--screen`.
pub fn spawn_publisher(base: &str, mid: &str, join: &str, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gremium"))
        .args([
            "publish",
            "--server",
            base,
            "--meeting",
            mid,
            "--token",
            join,
        ])
        .args(["--codec", "vp8", "--ice-address", "127.0.0.1"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A real S3-compatible server (s3s-fs, installed by `scripts/s3s.sh`, found through
/// `GREMIUM_S3S_FS`) on a loopback port with a data directory of its own; stopped and
/// restarted on the same port and data to simulate an outage.
pub struct S3Server {
    binary: std::path::PathBuf,
    pub dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl S3Server {
    pub const BUCKET: &'static str = "gremium";

    pub async fn start() -> S3Server {
        let binary = std::env::var_os("GREMIUM_S3S_FS")
            .map(std::path::PathBuf::from)
            .expect("GREMIUM_S3S_FS is not set: `source scripts/s3s.sh && gremium_install_s3s`");
        let dir = std::env::temp_dir().join(format!("gremium-s3-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = S3Server {
            binary,
            dir,
            port,
            child: None,
        };
        server.run().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn store(&self) -> gremium_storage::S3Store {
        gremium_storage::S3Store::new(gremium_storage::S3Settings {
            endpoint: Some(self.endpoint()),
            bucket: Self::BUCKET.into(),
            region: None,
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            path_style: true,
        })
        .unwrap()
    }

    /// (Re)start on the same port and data; returns once it listens.
    pub async fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        self.child = Some(
            std::process::Command::new(&self.binary)
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", "AK", "--secret-key", "SK"])
                .arg(self.dir.join("data"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A viewer of a platform pulls `url` (`rtmp://…`) with ffprobe and sees H.264 + AAC;
/// a few tries, since right after a publish starts nginx may not have the stream's
/// headers yet. Panics with ffprobe's complaint otherwise.
pub fn assert_rtmp_plays(url: &str) {
    let mut last = String::new();
    for _ in 0..5 {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(url)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&out.stdout).to_string();
        if codecs.contains("h264") && codecs.contains("aac") {
            return;
        }
        last = format!("{codecs} {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("no H.264 + AAC from {url}: {last}");
}

/// nginx with the RTMP module (Debian `nginx-light` + `libnginx-mod-rtmp`) on a free
/// loopback port: application `live`.
pub struct NginxRtmp {
    child: std::process::Child,
    pub port: u16,
}

impl NginxRtmp {
    const MODULE: &'static str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    pub fn start(dir: &std::path::Path) -> NginxRtmp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(dir, port)
    }

    /// Start on a given port (a restart after a kill: the same address as before).
    pub fn start_on(dir: &std::path::Path, port: u16) -> NginxRtmp {
        assert!(
            std::path::Path::new(Self::MODULE).exists(),
            "{} missing: install nginx-light libnginx-mod-rtmp (scripts/deps.sh)",
            Self::MODULE
        );
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "load_module {};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; \
             application live {{ live on; record off; }} }} }}\n",
            Self::MODULE
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nginx runs");
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "nginx did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NginxRtmp { child, port }
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small webrtcbin publisher on loopback (160x90, 10 fps; a test pattern, or one
/// `color`), started and with its offer created: its pipeline, its webrtcbin and the
/// offer, for tests that speak WHIP by hand.
pub async fn loopback_publisher_offer(
    name: &str,
    color: Option<u32>,
) -> (gremium_pipelines::Pipeline, gst::Element, String) {
    use gremium_pipelines::publisher::{build_publisher, PublisherSettings};
    use gremium_pipelines::webrtc::{create_offer, negotiation_needed};
    use gremium_pipelines::{Pipeline, PipelineSettings};
    gremium_pipelines::init().unwrap();
    let publisher = Pipeline::new(PipelineSettings {
        name: name.into(),
        dot_dir: std::env::temp_dir(),
    });
    let settings = PublisherSettings {
        ice: IceSettings {
            local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ..Default::default()
        },
        color,
        width: 160,
        height: 90,
        fps: 10,
        ..Default::default()
    };
    let webrtc = build_publisher(&publisher, &settings).unwrap();
    let mut ready = negotiation_needed(&webrtc);
    publisher.start().unwrap();
    ready.wait_for(|r| *r).await.unwrap();
    let offer = create_offer(&webrtc, Duration::from_secs(10))
        .await
        .unwrap();
    (publisher, webrtc, offer)
}
