//! The system under test: Gremium's real router on SQLite with [`InstantPlane`],
//! called in-process (`tower::ServiceExt::oneshot`, no sockets), and the fixtures
//! the request templates point at.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use gremium_signaling::{ApiSettings, AppState, AuthSettings, Authenticator, Role};
use gremium_storage::{Db, DbOptions, LocalStore, Vault};
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use crate::corpus::OFFER;
use crate::plane::InstantPlane;

/// Ids a request template can point at: two meetings (public, non-public), their
/// participants (the last one removed), a finished recording, a running stream and a
/// WHIP session.
#[derive(Debug, Clone)]
pub struct World {
    /// Public and non-public meeting.
    pub meetings: [Uuid; 2],
    /// Participants of the public meeting; the last one was removed.
    pub participants: Vec<Uuid>,
    /// A current participant's join token.
    pub join: String,
    /// A finished recording.
    pub recording: Uuid,
    /// A running HLS stream.
    pub stream: Uuid,
    /// A WHIP session of the first participant.
    pub session: Uuid,
}

/// Staff tokens by role.
pub struct Tokens {
    /// `admin`.
    pub admin: String,
    /// `moderator`.
    pub moderator: String,
    /// `viewer`.
    pub viewer: String,
    /// `archivist`.
    pub archivist: String,
}

/// The router and what it runs on.
pub struct Server {
    /// The whole HTTP application.
    pub router: Router,
    /// Staff tokens.
    pub tokens: Tokens,
    /// Scratch directory (database, objects, live files); removed on drop.
    pub dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// Start on a fresh SQLite database in a scratch directory.
    pub async fn start() -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("gremium-fuzz-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("live")).map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("gremium.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        db.migrate().await.map_err(|e| e.to_string())?;
        let auth = Authenticator::new(AuthSettings {
            local_key: b"gremium fuzz key, 32 bytes or more".to_vec(),
            local_issuer: "gremium".into(),
            accept_local_staff: true,
            join_token_ttl: Duration::from_secs(24 * 3600),
            leeway_secs: 0,
            oidc: None,
        });
        let (sink, events) = gremium_signaling::event_channel();
        let vault = Vault::new(
            gremium_storage::crypto::MasterKey::generate(),
            Arc::new(LocalStore::new(dir.join("objects"))),
        );
        let state = AppState::new(
            db,
            auth.clone(),
            Arc::new(InstantPlane(sink)),
            vault,
            ApiSettings {
                live_dir: dir.join("live"),
                player_js: None,
                ..Default::default()
            },
            gremium_signaling::system_clock(),
        );
        tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
        let now = chrono_now();
        let token =
            |role| auth.issue_staff_token("fuzz", &[role], now, Duration::from_secs(24 * 3600));
        Ok(Server {
            router: gremium_signaling::router(state),
            tokens: Tokens {
                admin: token(Role::Admin),
                moderator: token(Role::Moderator),
                viewer: token(Role::Viewer),
                archivist: token(Role::Archivist),
            },
            dir,
        })
    }

    /// Send one request; `None` if it did not answer within `limit`.
    pub async fn send(&self, req: Request<Body>, limit: Duration) -> Option<(StatusCode, Vec<u8>)> {
        let call = self.router.clone().oneshot(req);
        let resp = tokio::time::timeout(limit, call).await.ok()?.ok()?;
        let status = resp.status();
        // Only failures are shown, and only their start.
        let body = if status.is_server_error() {
            axum::body::to_bytes(resp.into_body(), 4096)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Some((status, body))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Make a new set of fixtures through the API.
    pub async fn world(&self) -> Result<World, String> {
        let admin = self.tokens.admin.clone();
        let id = |v: &Value, k: &str| -> Result<Uuid, String> {
            v[k].as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no {k} in {v}"))
        };
        let mut meetings = [Uuid::nil(); 2];
        for (i, public) in [true, false].into_iter().enumerate() {
            let m = self
                .json(
                    "POST",
                    "/api/v1/meetings",
                    &admin,
                    Some(json!({"title": "Rat", "public": public})),
                )
                .await?;
            meetings[i] = id(&m, "id")?;
        }
        let mid = meetings[0];
        let mut participants = Vec::new();
        let mut join = String::new();
        for name in ["A", "B", "R"] {
            let p = self
                .json(
                    "POST",
                    &format!("/api/v1/meetings/{mid}/participants"),
                    &admin,
                    Some(json!({"display_name": name})),
                )
                .await?;
            participants.push(id(&p["participant"], "id")?);
            if join.is_empty() {
                join = p["join_token"].as_str().unwrap_or_default().to_string();
            }
        }
        let removed = participants[2];
        self.json(
            "DELETE",
            &format!("/api/v1/meetings/{mid}/participants/{removed}"),
            &admin,
            None,
        )
        .await?;
        let r = self
            .json(
                "POST",
                &format!("/api/v1/meetings/{mid}/recordings"),
                &admin,
                None,
            )
            .await?;
        let recording = id(&r, "id")?;
        // The stop is reported by the media plane's event task: let it run.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.json(
            "POST",
            &format!("/api/v1/recordings/{recording}/stop"),
            &admin,
            None,
        )
        .await?;
        let s = self
            .json(
                "POST",
                &format!("/api/v1/meetings/{mid}/streams"),
                &admin,
                Some(json!({"hls": true})),
            )
            .await?;
        let stream = id(&s, "id")?;
        let req = Request::builder()
            .method("POST")
            .uri(format!("/whip/{mid}"))
            .header("authorization", format!("Bearer {join}"))
            .header("content-type", "application/sdp")
            .body(Body::from(OFFER))
            .map_err(|e| e.to_string())?;
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let session = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("WHIP offer: {}", resp.status()))?;
        let live = self.dir.join("live").join(mid.to_string()).join("720p");
        std::fs::create_dir_all(&live).map_err(|e| e.to_string())?;
        std::fs::write(
            live.join("../index.m3u8"),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            live.join("index.m3u8"),
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\ns1-00001.ts\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(live.join("s1-00001.ts"), [0x47u8; 188]).map_err(|e| e.to_string())?;
        Ok(World {
            meetings,
            participants,
            join,
            recording,
            stream,
            session,
        })
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
