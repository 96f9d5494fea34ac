//! The server under test: an in-process Gremium on a real database and a real loopback
//! TCP socket, with the fake media plane from `gremium-signaling` (see `media.rs` for the
//! GStreamer one), and the raw HTTP escape hatch [`TestApp::send`].
//!
//! Owns: spawning the app, its tokens, untyped requests. Must not: know the API's
//! resources (that is `client.rs`) or start media.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gremium_signaling::media::fake::FakeMediaPlane;
use gremium_signaling::{ApiSettings, AppState, AuthSettings, Authenticator, OidcSettings, Role};
use gremium_storage::Db;
use serde_json::Value;

use super::watchdog;

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
}

/// The string-typed shortcuts from before the typed client, for tests not moved to
/// `client.rs` yet; new tests use `client.rs`.
impl TestApp {
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

    /// ffprobe a recording's media over HTTP through the archive API (see
    /// [`super::decode::probe`]).
    pub fn probe_media(&self, token: &str, rid: &str) -> (Vec<Value>, f64) {
        super::decode::probe(
            &format!("{}/api/v1/recordings/{rid}/media", self.base),
            Some(token),
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

/// A vault over a local object store in `dir` with a fresh master key.
pub fn test_vault(dir: &std::path::Path) -> gremium_storage::Vault {
    gremium_storage::Vault::new(
        gremium_storage::crypto::MasterKey::generate(),
        Arc::new(gremium_storage::LocalStore::new(dir)),
    )
}
