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

    /// The raw escape hatch with any token, or none: status and JSON body (see
    /// `Client::send`, the same with a caller's token).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.client_with(token.map(str::to_string))
            .send(method, path, body)
            .await
    }
}

/// A vault over a local object store in `dir` with a fresh master key.
pub fn test_vault(dir: &std::path::Path) -> gremium_storage::Vault {
    gremium_storage::Vault::new(
        gremium_storage::crypto::MasterKey::generate(),
        Arc::new(gremium_storage::LocalStore::new(dir)),
    )
}
