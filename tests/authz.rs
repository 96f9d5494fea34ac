//! The authorization matrix: every route and method (from the OpenAPI document, plus
//! the router's pages, assets, HLS, health and metrics) × every kind of caller ×
//! public and non-public meetings × recordings with and without non-public parts,
//! against the one documented policy, `gremium_signaling::access::POLICY`.
//!
//! "Allowed" means the request got past authorization: any answer but 401 and 403
//! (and 404 where the policy hides existence). A 409/410/422 is an allowed caller
//! meeting the fixture's state, which is why each request is built valid (body,
//! content type, ids that exist). "Refused" means 401 without a valid token (an
//! expired, foreign-key or `alg: none` token is no token) and 401/403 with one.
//! Besides the matrix: no answer may be a 5xx, a route in the OpenAPI document without
//! a policy row fails, and so does a row the router does not answer (fallback 404 or
//! 405).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::Backend;
use gremium_protocol::{CommandOutcome, MediaCommand, MediaPlane, MediaPlaneError};
use gremium_signaling::access::{self, Caller, Facts, Refusal, Rule};
use gremium_signaling::media::fake::FakeMediaPlane;
use gremium_signaling::{ApiSettings, AppState, Authenticator, Role};
use reqwest::Method;
use serde_json::{json, Value};

/// Cells of the matrix allowed to disagree with the policy for now, each naming the
/// issue item that fixes it: (issue item, caller, method, route pattern, the
/// recording has non-public parts — `None` for any). Empty since issue 18's fixes
/// landed: every cell is checked. The test fails on an entry whose cells all pass.
const KNOWN_DEFECTS: &[(&str, Caller, &str, &str, Option<bool>)] = &[];

/// The kinds of caller the test plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Admin,
    Moderator,
    Viewer,
    Archivist,
    Participant,
    OtherParticipant,
    RemovedParticipant,
    ExpiredToken,
    OtherKeyToken,
    AlgNoneToken,
}

const EVERYONE: [Who; 11] = [
    Who::Anonymous,
    Who::Admin,
    Who::Moderator,
    Who::Viewer,
    Who::Archivist,
    Who::Participant,
    Who::OtherParticipant,
    Who::RemovedParticipant,
    Who::ExpiredToken,
    Who::OtherKeyToken,
    Who::AlgNoneToken,
];

impl Who {
    /// What the policy sees: a token that fails verification is no token.
    fn caller(self) -> Caller {
        match self {
            Who::Anonymous | Who::ExpiredToken | Who::OtherKeyToken | Who::AlgNoneToken => {
                Caller::Anonymous
            }
            Who::Admin => Caller::Admin,
            Who::Moderator => Caller::Moderator,
            Who::Viewer => Caller::Viewer,
            Who::Archivist => Caller::Archivist,
            Who::Participant => Caller::Participant,
            Who::OtherParticipant => Caller::OtherParticipant,
            Who::RemovedParticipant => Caller::RemovedParticipant,
        }
    }
}

/// The fake media plane, plus WHIP sessions (it does not ingest; these tests only
/// need the session resources to exist).
struct SessionsFake(Arc<FakeMediaPlane>);

#[async_trait::async_trait]
impl MediaPlane for SessionsFake {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        match command {
            MediaCommand::Publish { .. } => Ok(CommandOutcome::Published {
                session_id: uuid::Uuid::new_v4(),
                answer_sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".into(),
            }),
            MediaCommand::AddIceCandidates { .. } | MediaCommand::Unpublish { .. } => {
                Ok(CommandOutcome::Applied {
                    media_time_ns: None,
                })
            }
            other => self.0.execute(other).await,
        }
    }
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n";
const CANDIDATE: &str = "a=mid:0\r\na=candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host\r\n";

struct App {
    base: String,
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    auth: Arc<Authenticator>,
    live_dir: std::path::PathBuf,
}

async fn spawn() -> App {
    common::watchdog::arm();
    let db = common::fresh_db(Backend::Sqlite).await;
    let (sink, events) = gremium_signaling::event_channel();
    let fake = FakeMediaPlane::new(sink);
    let auth = Authenticator::new(common::auth_settings(None));
    let scratch = std::env::temp_dir().join(format!("gremium-authz-{}", uuid::Uuid::new_v4()));
    let live_dir = scratch.join("live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let player = scratch.join("hls.min.js");
    std::fs::write(&player, "/* player */").unwrap();
    let state = AppState::new(
        db,
        auth.clone(),
        Arc::new(SessionsFake(fake)),
        common::test_vault(&scratch.join("objects")),
        ApiSettings {
            max_body_bytes: 4096,
            live_dir: live_dir.clone(),
            player_js: Some(player),
            ..Default::default()
        },
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gremium_signaling::router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App {
        base: format!("http://{addr}"),
        addr,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        auth,
        live_dir,
    }
}

/// A JWT with `alg: none` and an admin's claims (no signature).
fn alg_none_token() -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let now = common::now_secs();
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(
            &json!({"iss": "gremium", "aud": "gremium", "sub": "mallory", "iat": now,
                     "exp": now + 600, "roles": ["admin"]})
        )
    )
}

impl App {
    fn staff(&self, roles: &[Role]) -> String {
        self.auth
            .issue_staff_token("authz", roles, common::now_secs(), Duration::from_secs(600))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json, headers)
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (s, v, _) = self.call(method.clone(), path, Some(token), body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }

    /// Wait until a recording ended (the fake reports the stop at once, through the
    /// event task).
    async fn wait_ended(&self, admin: &str, rid: &str) {
        for _ in 0..200 {
            let (_, r, _) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/recordings/{rid}"),
                    Some(admin),
                    None,
                )
                .await;
            if matches!(r["state"].as_str(), Some("finished" | "failed")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("recording {rid} did not end");
    }

    /// A recording of `mid` made entirely in the meeting's current state.
    async fn recording(&self, admin: &str, mid: &str) -> String {
        let r = self
            .ok(
                Method::POST,
                &format!("/api/v1/meetings/{mid}/recordings"),
                admin,
                None,
            )
            .await;
        let rid = r["id"].as_str().unwrap().to_string();
        self.ok(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            admin,
            None,
        )
        .await;
        self.wait_ended(admin, &rid).await;
        rid
    }

    /// A recording of the public meeting `mid` with a non-public part in the middle:
    /// made through the API as a chair would (public → non-public → public while it
    /// runs), so the server records the non-public part however it chooses to (the
    /// column of issue 18 item 2 once merged; nothing here needs to change then).
    async fn recording_with_non_public_part(&self, admin: &str, mid: &str) -> String {
        let r = self
            .ok(
                Method::POST,
                &format!("/api/v1/meetings/{mid}/recordings"),
                admin,
                None,
            )
            .await;
        let rid = r["id"].as_str().unwrap().to_string();
        for public in [false, true] {
            self.ok(
                Method::PUT,
                &format!("/api/v1/meetings/{mid}/public"),
                admin,
                Some(json!({"public": public, "reason": "TOP 7"})),
            )
            .await;
        }
        self.ok(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            admin,
            None,
        )
        .await;
        self.wait_ended(admin, &rid).await;
        rid
    }
}

/// A recording and whether it has non-public parts.
#[derive(Debug, Clone)]
struct Rec {
    id: String,
    non_public_parts: bool,
}

/// One meeting with everything the routes need.
#[derive(Debug, Clone)]
struct Meeting {
    id: String,
    public: bool,
    /// The calling participant and their join token.
    a: (String, String),
    /// Another current participant (whose consent A must not set).
    b: String,
    /// A removed participant and their (old) join token.
    removed: (String, String),
    stream: String,
    recordings: Vec<Rec>,
    /// A's WHIP session.
    session: String,
}

async fn add_participant(app: &App, admin: &str, mid: &str, name: &str) -> (String, String) {
    let p = app
        .ok(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/participants"),
            admin,
            Some(json!({"display_name": name})),
        )
        .await;
    (
        p["participant"]["id"].as_str().unwrap().to_string(),
        p["join_token"].as_str().unwrap().to_string(),
    )
}

async fn whip_session(app: &App, mid: &str, join: &str) -> String {
    let resp = app
        .http
        .post(format!("{}/whip/{mid}", app.base))
        .bearer_auth(join)
        .header("content-type", "application/sdp")
        .body(OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    location.rsplit('/').next().unwrap().to_string()
}

/// A meeting with participants (one removed) and A's WHIP session; with
/// `outputs`, a running HLS stream and recordings too.
async fn meeting(app: &App, admin: &str, public: bool, outputs: bool) -> Meeting {
    let m = app
        .ok(
            Method::POST,
            "/api/v1/meetings",
            admin,
            Some(json!({"title": "Rat", "public": public})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let a = add_participant(app, admin, &id, "A").await;
    let b = add_participant(app, admin, &id, "B").await.0;
    let removed = add_participant(app, admin, &id, "R").await;
    let (s, v, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/meetings/{id}/participants/{}", removed.0),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let session = whip_session(app, &id, &a.1).await;
    let (mut stream, mut recordings) = (String::new(), Vec::new());
    if outputs {
        if public {
            recordings.push(Rec {
                id: app.recording(admin, &id).await,
                non_public_parts: false,
            });
            recordings.push(Rec {
                id: app.recording_with_non_public_part(admin, &id).await,
                non_public_parts: true,
            });
        } else {
            recordings.push(Rec {
                id: app.recording(admin, &id).await,
                non_public_parts: true,
            });
        }
        let s = app
            .ok(
                Method::POST,
                &format!("/api/v1/meetings/{id}/streams"),
                admin,
                Some(json!({"hls": true})),
            )
            .await;
        stream = s["id"].as_str().unwrap().to_string();
        let dir = app.live_dir.join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.m3u8"), "#EXTM3U\n").unwrap();
    }
    Meeting {
        id,
        public,
        a,
        b,
        removed,
        stream,
        recordings,
        session,
    }
}

/// Tokens of the callers that do not depend on the meeting.
struct Tokens {
    admin: String,
    moderator: String,
    viewer: String,
    archivist: String,
    other_participant: String,
    expired: String,
    other_key: String,
    alg_none: String,
}

fn token<'a>(t: &'a Tokens, m: &'a Meeting, who: Who) -> Option<&'a str> {
    Some(match who {
        Who::Anonymous => return None,
        Who::Admin => &t.admin,
        Who::Moderator => &t.moderator,
        Who::Viewer => &t.viewer,
        Who::Archivist => &t.archivist,
        Who::Participant => &m.a.1,
        Who::OtherParticipant => &t.other_participant,
        Who::RemovedParticipant => &m.removed.1,
        Who::ExpiredToken => &t.expired,
        Who::OtherKeyToken => &t.other_key,
        Who::AlgNoneToken => &t.alg_none,
    })
}

/// One request of the matrix.
#[derive(Debug)]
struct Case {
    rule: &'static Rule,
    who: Who,
    path: String,
    facts: Facts,
    non_public_parts: Option<bool>,
    /// What it targets, for the failure message.
    target: String,
}

/// The request body (and content type) a valid call of `rule` sends.
fn body_of(rule: &Rule, m: &Meeting) -> Option<(&'static str, String)> {
    let j = |v: Value| Some(("application/json", v.to_string()));
    match (rule.method, rule.path) {
        ("POST", "/api/v1/meetings") => j(json!({"title": "authz"})),
        ("PUT", "/api/v1/meetings/{id}/public") => j(json!({"public": m.public})),
        ("PUT", "/api/v1/meetings/{id}/layout") => j(json!({"kind": "grid"})),
        ("POST", "/api/v1/meetings/{id}/chapters") => j(json!({"title": "TOP 1"})),
        ("POST", "/api/v1/meetings/{id}/participants") => j(json!({"display_name": "N"})),
        ("PUT", "/api/v1/meetings/{id}/participants/{pid}/consent") => {
            j(json!({"recording": false, "streaming": false}))
        }
        ("POST", "/api/v1/meetings/{id}/streams") => j(json!({"hls": true})),
        ("PUT", "/api/v1/meetings/{id}/retention") => j(json!({"retention_days": 30})),
        ("POST", "/api/v1/meetings/{id}/legal-hold/lift") => j(json!({"reason": "authz"})),
        ("POST", "/whip/{meeting_id}") => Some(("application/sdp", OFFER.into())),
        ("PATCH", "/whip/{meeting_id}/{session_id}") => {
            Some(("application/trickle-ice-sdpfrag", CANDIDATE.into()))
        }
        _ => None,
    }
}

/// Calls that change what later calls are allowed to do (end the meeting, remove
/// the participant, end the session) get a meeting of their own.
fn destructive(rule: &Rule) -> bool {
    matches!(
        (rule.method, rule.path),
        ("POST", "/api/v1/meetings/{id}/end")
            | ("DELETE", "/api/v1/meetings/{id}/participants/{pid}")
            | ("DELETE", "/whip/{meeting_id}/{session_id}")
    )
}

/// The cases of `rule` on meeting `m`.
fn cases(rule: &'static Rule, m: &Meeting) -> Vec<Case> {
    let mut out = Vec::new();
    let facts = Facts {
        meeting_public: m.public,
        content_public: true,
        own: false,
        withdrawal: rule.path.ends_with("/consent") && rule.method == "PUT",
    };
    let fill = |p: &str| {
        p.replace("{id}", &m.id)
            .replace("{meeting_id}", &m.id)
            .replace("{sid}", &m.stream)
            .replace("{session_id}", &m.session)
            .replace("{*path}", "index.m3u8")
    };
    let public = if m.public { "public" } else { "non-public" };
    for who in EVERYONE {
        if rule.path.contains("{rid}") {
            for r in &m.recordings {
                out.push(Case {
                    rule,
                    who,
                    path: fill(rule.path).replace("{rid}", &r.id),
                    facts: Facts {
                        content_public: !r.non_public_parts,
                        ..facts
                    },
                    non_public_parts: Some(r.non_public_parts),
                    target: format!(
                        "recording {} non-public parts of a {public} meeting",
                        if r.non_public_parts {
                            "with"
                        } else {
                            "without"
                        }
                    ),
                });
            }
        } else if rule.path.contains("{pid}") {
            // Each participant on themselves, everybody else on A; and A on B.
            let (pid, own) = match who {
                Who::Participant => (&m.a.0, true),
                Who::RemovedParticipant => (&m.removed.0, true),
                _ => (&m.a.0, false),
            };
            out.push(Case {
                rule,
                who,
                path: fill(rule.path).replace("{pid}", pid),
                facts: Facts { own, ..facts },
                non_public_parts: None,
                target: format!(
                    "{} of a {public} meeting",
                    if own { "own pid" } else { "A" }
                ),
            });
            if who == Who::Participant {
                out.push(Case {
                    rule,
                    who,
                    path: fill(rule.path).replace("{pid}", &m.b),
                    facts,
                    non_public_parts: None,
                    target: format!("another participant of a {public} meeting"),
                });
            }
        } else {
            let own = rule.path.contains("{session_id}") && who == Who::Participant;
            out.push(Case {
                rule,
                who,
                path: fill(rule.path),
                facts: Facts { own, ..facts },
                non_public_parts: None,
                target: format!("a {public} meeting"),
            });
        }
    }
    out
}

/// The meeting's WebSocket: 101 or the refusal's status.
async fn ws_status(app: &App, path: &str, token: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None).await;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("websocket {path}: {e}"),
    }
}

/// Send one case: its status and body.
async fn send(app: &App, tokens: &Tokens, m: &Meeting, case: &Case) -> (u16, Value) {
    let token = token(tokens, m, case.who);
    if case.rule.path == "/api/v1/meetings/{id}/events" {
        return (ws_status(app, &case.path, token).await, Value::Null);
    }
    let method = Method::from_bytes(case.rule.method.as_bytes()).unwrap();
    let mut req = app
        .http
        .request(method, format!("{}{}", app.base, case.path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ctype, body)) = body_of(case.rule, m) {
        req = req.header("content-type", ctype).body(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(200).collect())),
    )
}

/// The index in [`KNOWN_DEFECTS`] of the entry that covers `case`.
fn known_defect(case: &Case) -> Option<usize> {
    KNOWN_DEFECTS
        .iter()
        .position(|(_, caller, method, path, non_public_parts)| {
            *caller == case.who.caller()
                && *method == case.rule.method
                && *path == case.rule.path
                && (non_public_parts.is_none() || *non_public_parts == case.non_public_parts)
        })
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_access_policy_says() {
    let app = spawn().await;
    let admin = app.staff(&[Role::Admin]);
    let other_key = Authenticator::new(gremium_signaling::AuthSettings {
        local_key: b"another key, another key, 32 bytes+".to_vec(),
        ..common::auth_settings(None)
    })
    .issue_staff_token(
        "mallory",
        &[Role::Admin],
        common::now_secs(),
        Duration::from_secs(600),
    );
    let elsewhere = meeting(&app, &admin, true, false).await;
    let tokens = Tokens {
        moderator: app.staff(&[Role::Moderator]),
        viewer: app.staff(&[Role::Viewer]),
        archivist: app.staff(&[Role::Archivist]),
        other_participant: elsewhere.a.1.clone(),
        expired: app.auth.issue_staff_token(
            "late",
            &[Role::Admin],
            common::now_secs() - 7200,
            Duration::from_secs(60),
        ),
        other_key,
        alg_none: alg_none_token(),
        admin: admin.clone(),
    };

    // The OpenAPI document and the policy name the same routes.
    let (s, doc, _) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let in_policy: BTreeSet<(String, String)> = access::POLICY
        .iter()
        .filter(|r| r.documented)
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let unlisted: Vec<_> = documented.difference(&in_policy).collect();
    assert!(
        unlisted.is_empty(),
        "routes of the OpenAPI document without a policy row: {unlisted:?}"
    );
    let undocumented: Vec<_> = in_policy.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "policy rows marked documented that the OpenAPI document lacks: {undocumented:?}"
    );

    let meetings = [
        meeting(&app, &admin, true, true).await,
        meeting(&app, &admin, false, true).await,
    ];
    // Deleting recordings goes last: the reads above must see them.
    let mut rules: Vec<&'static Rule> = access::POLICY.iter().collect();
    rules.sort_by_key(|r| (r.method, r.path) == ("DELETE", "/api/v1/recordings/{rid}"));

    let (mut failures, mut known, mut total) = (Vec::new(), Vec::new(), 0);
    // Per KNOWN_DEFECTS entry: did any cell it covers still fail?
    let mut still_failing = vec![false; KNOWN_DEFECTS.len()];
    let mut answered = BTreeSet::new();
    for rule in rules {
        let independent = !rule.path.contains('{');
        for m in &meetings {
            for case in cases(rule, m) {
                let fresh;
                let m = if destructive(rule) {
                    fresh = meeting(&app, &admin, m.public, false).await;
                    &fresh
                } else {
                    m
                };
                let case = if destructive(rule) {
                    // Same case, on the fresh meeting's ids.
                    cases(rule, m)
                        .into_iter()
                        .find(|c| c.who == case.who && c.target == case.target)
                        .unwrap()
                } else {
                    case
                };
                let (status, body) = send(&app, &tokens, m, &case).await;
                total += 1;
                let line = format!(
                    "{} {} on {} as {:?}: {status} {body}",
                    rule.method, rule.path, case.target, case.who
                );
                let route_missing = status == 405
                    || (status == 404 && body["error"]["message"] == "route not found");
                if !route_missing {
                    answered.insert((rule.method, rule.path));
                }
                if status >= 500 {
                    failures.push(format!("5xx: {line}"));
                    continue;
                }
                let refused = status == 401
                    || status == 403
                    || (rule.refusal == Refusal::Hidden && status == 404);
                let expected_allowed = rule.allows(case.who.caller(), &case.facts);
                let mut wrong = if expected_allowed {
                    refused.then(|| format!("refused, policy allows: {line}"))
                } else if !refused {
                    Some(format!("allowed, policy refuses: {line}"))
                } else if case.who.caller() == Caller::Anonymous
                    && rule.refusal == Refusal::Status
                    && status != 401
                {
                    Some(format!("no valid token must be 401: {line}"))
                } else {
                    None
                };
                match (wrong.take(), known_defect(&case)) {
                    (Some(w), Some(i)) => {
                        still_failing[i] = true;
                        known.push(format!("[{}] {w}", KNOWN_DEFECTS[i].0));
                    }
                    (Some(w), None) => failures.push(w),
                    (None, _) => {}
                }
            }
            if independent {
                break;
            }
        }
    }
    eprintln!("{total} requests checked");
    for k in &known {
        eprintln!("known defect (allowed until its fix merges): {k}");
    }
    for (d, failing) in KNOWN_DEFECTS.iter().zip(&still_failing) {
        if !failing {
            eprintln!("known defect now passes everywhere (delete it from KNOWN_DEFECTS): {d:?}");
        }
    }
    let no_route: Vec<_> = access::POLICY
        .iter()
        .filter(|r| !answered.contains(&(r.method, r.path)))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        no_route.is_empty(),
        "policy rows the router does not answer: {no_route:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {total} requests disagree with the access policy:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
