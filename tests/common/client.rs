//! The typed test client: the API's resources (meetings, participants, consent,
//! recordings, streams) as handles whose methods make the request a person would and
//! assert it was taken, so a test reads like the product:
//!
//! ```ignore
//! let chair = app.moderator();
//! let m = chair.create_meeting("Rat").await;
//! let anna = m.add_participant("Anna").await;
//! anna.set_consent(Consent::RECORDING).await;
//! let rec = m.start_recording().await;
//! rec.stop().await;
//! let frames = app.archivist().recording(&rec.id).decode_frames(2, 640, 360);
//! ```
//!
//! Requests whose status or body is the point of a test stay raw: [`Client::send`]
//! (with this client's token) or `TestApp::send` (any token or none).
//!
//! Owns: paths, bodies and the expected status of the API's happy paths. Must not:
//! decide what a test asserts beyond "the request was taken" (that stays in the test).

use reqwest::Method;
use serde_json::{json, Value};

use super::app::TestApp;
use super::decode::{probe, Ffmpeg, Frames};
use super::events::{next_event, ws_connect, Ws};
use gremium_signaling::Role;

/// A participant's consent, per purpose (`PUT …/consent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consent {
    pub recording: bool,
    pub streaming: bool,
}

impl Consent {
    /// The default: neither purpose.
    pub const NONE: Consent = Consent {
        recording: false,
        streaming: false,
    };
    pub const RECORDING: Consent = Consent {
        recording: true,
        streaming: false,
    };
    pub const STREAMING: Consent = Consent {
        recording: false,
        streaming: true,
    };
    pub const BOTH: Consent = Consent {
        recording: true,
        streaming: true,
    };

    pub fn json(self) -> Value {
        json!({"recording": self.recording, "streaming": self.streaming})
    }

    /// From a consent body (`{"recording": …, "streaming": …}`); panics on another shape.
    pub fn from_json(v: &Value) -> Consent {
        match (v["recording"].as_bool(), v["streaming"].as_bool()) {
            (Some(recording), Some(streaming)) => Consent {
                recording,
                streaming,
            },
            _ => panic!("not a consent: {v}"),
        }
    }
}

/// Someone calling the API: a base URL, a connection pool and a bearer token (or none).
/// Cheap to clone; handles made from it carry it along.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl TestApp {
    /// A caller with a staff token of `roles`.
    pub fn client(&self, roles: &[Role]) -> Client {
        self.client_with(Some(self.token(roles)))
    }

    /// A caller with `token` (a join token, a forged one…), or anonymous.
    pub fn client_with(&self, token: Option<String>) -> Client {
        Client {
            base: self.base.clone(),
            http: self.http.clone(),
            token,
        }
    }

    pub fn moderator(&self) -> Client {
        self.client(&[Role::Moderator])
    }

    pub fn archivist(&self) -> Client {
        self.client(&[Role::Archivist])
    }

    pub fn admin(&self) -> Client {
        self.client(&[Role::Admin])
    }

    pub fn viewer(&self) -> Client {
        self.client(&[Role::Viewer])
    }

    /// A caller without a token (a citizen).
    pub fn anonymous(&self) -> Client {
        self.client_with(None)
    }
}

impl Client {
    /// This caller's bearer token; panics for an anonymous one.
    pub fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("an anonymous client has no token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with this caller's token, built but not sent (headers, ranges…).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// The raw escape hatch: status and JSON body (a string if not JSON, null if empty).
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the request reaches the server");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a response body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// A WHIP `POST /whip/{mid}` of `offer` (`application/sdp`) with this caller's
    /// token, raw: the test asserts the answer.
    pub async fn post_whip(&self, mid: &str, offer: impl Into<String>) -> reqwest::Response {
        self.request(Method::POST, &format!("/whip/{mid}"))
            .header("content-type", "application/sdp")
            .body(offer.into())
            .send()
            .await
            .expect("the request reaches the server")
    }

    /// `GET path`, raw.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    /// The status of `GET path`, body unread (media may be large, or not JSON).
    pub async fn status(&self, path: &str) -> u16 {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("the request reaches the server")
            .status()
            .as_u16()
    }

    /// `method path` that must answer `expected`: the body.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        let (s, v) = self.send(method.clone(), path, body).await;
        assert_eq!(s, expected, "{method} {path}: {v}");
        v
    }

    /// `GET path` that must answer 200: the body.
    pub async fn get_ok(&self, path: &str) -> Value {
        self.expect(Method::GET, path, None, 200).await
    }

    /// `POST /api/v1/meetings {"title": title}` (asserts 201).
    pub async fn create_meeting(&self, title: &str) -> Meeting {
        self.create_meeting_with(json!({ "title": title })).await
    }

    /// A public meeting (its livestream shows the program).
    pub async fn create_public_meeting(&self, title: &str) -> Meeting {
        self.create_meeting_with(json!({"title": title, "public": true}))
            .await
    }

    /// `POST /api/v1/meetings` with a full body (asserts 201).
    pub async fn create_meeting_with(&self, body: Value) -> Meeting {
        let m = self
            .expect(Method::POST, "/api/v1/meetings", Some(body), 201)
            .await;
        let id = m["id"].as_str().expect("a meeting id").to_string();
        Meeting {
            id,
            body: m,
            client: self.clone(),
        }
    }

    /// A handle on an existing meeting, acting as this caller.
    pub fn meeting(&self, id: &str) -> Meeting {
        Meeting {
            id: id.to_string(),
            body: Value::Null,
            client: self.clone(),
        }
    }

    /// A handle on an existing recording, acting as this caller.
    pub fn recording(&self, id: &str) -> Recording {
        Recording {
            id: id.to_string(),
            client: self.clone(),
        }
    }

    /// A handle on participant `pid` of meeting `mid`, acting as this caller (their
    /// join token, or staff trying what only they may do).
    pub fn participant(&self, mid: &str, pid: &str) -> Participant {
        Participant {
            id: pid.to_string(),
            meeting_id: mid.to_string(),
            join: self.token.clone().unwrap_or_default(),
            body: Value::Null,
            client: self.clone(),
        }
    }

    /// A handle on an existing livestream, acting as this caller.
    pub fn stream(&self, id: &str) -> LiveStream {
        LiveStream {
            id: id.to_string(),
            body: Value::Null,
            client: self.clone(),
        }
    }

    /// `GET /api/v1/archive{query}` (asserts 200), e.g. `"?q=Rat"` or `""`.
    pub async fn archive(&self, query: &str) -> Value {
        self.get_ok(&format!("/api/v1/archive{query}")).await
    }
}

/// A meeting, acting as the caller that made or opened the handle.
#[derive(Clone)]
pub struct Meeting {
    pub id: String,
    /// The body it was created with (null for a handle opened by id).
    pub body: Value,
    pub client: Client,
}

impl Meeting {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/meetings/{}{rest}", self.id)
    }

    /// The same meeting, acting as `client`.
    pub fn acting_as(&self, client: &Client) -> Meeting {
        Meeting {
            client: client.clone(),
            ..self.clone()
        }
    }

    /// `GET /api/v1/meetings/{id}` (asserts 200).
    pub async fn get(&self) -> Value {
        self.client.get_ok(&self.path("")).await
    }

    /// Add a participant (asserts 201); the handle acts with their join token.
    pub async fn add_participant(&self, name: &str) -> Participant {
        let p = self
            .client
            .expect(
                Method::POST,
                &self.path("/participants"),
                Some(json!({ "display_name": name })),
                201,
            )
            .await;
        let join = p["join_token"].as_str().expect("a join token").to_string();
        Participant {
            id: p["participant"]["id"]
                .as_str()
                .expect("a participant id")
                .to_string(),
            meeting_id: self.id.clone(),
            client: Client {
                token: Some(join.clone()),
                ..self.client.clone()
            },
            join,
            body: p,
        }
    }

    /// `GET …/participants` (asserts 200).
    pub async fn participants(&self) -> Value {
        self.client.get_ok(&self.path("/participants")).await
    }

    /// A participant's consent as this caller reads it (asserts 200).
    pub async fn consent_of(&self, pid: &str) -> Consent {
        Consent::from_json(
            &self
                .client
                .get_ok(&self.path(&format!("/participants/{pid}/consent")))
                .await,
        )
    }

    /// `POST …/recordings` (asserts 201).
    pub async fn start_recording(&self) -> Recording {
        let r = self
            .client
            .expect(Method::POST, &self.path("/recordings"), None, 201)
            .await;
        self.client
            .recording(r["id"].as_str().expect("a recording id"))
    }

    /// `POST …/streams` with `body`, e.g. `{"hls": true}` (asserts 201).
    pub async fn start_stream(&self, body: Value) -> LiveStream {
        let s = self
            .client
            .expect(Method::POST, &self.path("/streams"), Some(body), 201)
            .await;
        LiveStream {
            id: s["id"].as_str().expect("a stream id").to_string(),
            body: s,
            client: self.client.clone(),
        }
    }

    /// `PUT …/public` (asserts 200): the answer.
    pub async fn set_public(&self, public: bool, reason: &str) -> Value {
        self.client
            .expect(
                Method::PUT,
                &self.path("/public"),
                Some(json!({"public": public, "reason": reason})),
                200,
            )
            .await
    }

    /// `POST …/chapters` (asserts 201).
    pub async fn add_chapter(&self, title: &str) -> Value {
        self.client
            .expect(
                Method::POST,
                &self.path("/chapters"),
                Some(json!({ "title": title })),
                201,
            )
            .await
    }

    /// `POST …/end` (asserts 200).
    pub async fn end(&self) -> Value {
        self.client
            .expect(Method::POST, &self.path("/end"), None, 200)
            .await
    }

    /// The meeting's ledger (asserts 200).
    pub async fn ledger(&self) -> Value {
        self.client.get_ok(&self.path("/ledger")).await
    }

    /// The meeting's WebSocket as this caller, past its first event (the snapshot,
    /// returned too).
    pub async fn events(&self) -> (Ws, Value) {
        let addr = self
            .client
            .base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .expect("a http://ip:port base");
        let mut ws = ws_connect(addr, &self.id, self.client.token()).await;
        let snapshot = next_event(&mut ws).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        (ws, snapshot)
    }
}

/// A participant, acting with their own join token.
#[derive(Clone)]
pub struct Participant {
    pub id: String,
    pub meeting_id: String,
    pub join: String,
    /// The answer to adding them (participant and join token).
    pub body: Value,
    pub client: Client,
}

impl Participant {
    fn path(&self) -> String {
        format!(
            "/api/v1/meetings/{}/participants/{}/consent",
            self.meeting_id, self.id
        )
    }

    /// They set their own consent (asserts 200): the answer (`changed`,
    /// `media_time_ns`, `ledger_seq`…).
    pub async fn set_consent(&self, consent: Consent) -> Value {
        self.client
            .expect(Method::PUT, &self.path(), Some(consent.json()), 200)
            .await
    }

    /// Their id and their own client (join token), for tests that go on with both.
    pub fn into_parts(self) -> (String, Client) {
        (self.id, self.client)
    }

    /// Their consent as they read it (asserts 200).
    pub async fn consent(&self) -> Consent {
        Consent::from_json(&self.client.get_ok(&self.path()).await)
    }
}

/// A recording, acting as the caller that started or opened the handle.
#[derive(Clone)]
pub struct Recording {
    pub id: String,
    pub client: Client,
}

impl Recording {
    pub fn path(&self, rest: &str) -> String {
        format!("/api/v1/recordings/{}{rest}", self.id)
    }

    /// The same recording, acting as `client` (say an archivist).
    pub fn acting_as(&self, client: &Client) -> Recording {
        client.recording(&self.id)
    }

    /// `POST …/stop`; asserts it was taken (202, or 200 when already stopping).
    pub async fn stop(&self) {
        let (s, r) = self
            .client
            .send(Method::POST, &self.path("/stop"), None)
            .await;
        assert!(s == 202 || s == 200, "stop {}: {s} {r}", self.id);
    }

    /// The archive's view of it (asserts 200).
    pub async fn view(&self) -> Value {
        self.client.get_ok(&self.path("")).await
    }

    /// Its manifest (asserts 200).
    pub async fn manifest(&self) -> Value {
        self.client.get_ok(&self.path("/manifest")).await
    }

    /// `DELETE` (asserts 204).
    pub async fn delete(&self) {
        self.client
            .expect(Method::DELETE, &self.path(""), None, 204)
            .await;
    }

    /// The media's URL (`…/media`), for players and ffmpeg.
    pub fn media_url(&self) -> String {
        self.client.url(&self.path("/media"))
    }

    /// ffmpeg reading the media over HTTP with this caller's token, as a player would.
    pub fn ffmpeg(&self) -> Ffmpeg {
        Ffmpeg::url(&self.media_url()).bearer(self.client.token())
    }

    /// ffprobe over HTTP with this caller's token (asserts it reads): the streams
    /// (`codec_name`, `codec_type`, `width`, `height`) and the duration.
    pub fn probe(&self) -> (Vec<Value>, f64) {
        probe(&self.media_url(), self.client.token.as_deref())
    }

    /// The video decoded at `fps` frames a second as `width`×`height` RGB (asserts
    /// ffmpeg reads it).
    pub fn decode_frames(&self, fps: u32, width: usize, height: usize) -> Frames {
        self.ffmpeg().fps(fps).frames(width, height)
    }
}

/// A livestream, acting as the caller that started it.
#[derive(Clone)]
pub struct LiveStream {
    pub id: String,
    /// The answer to starting it.
    pub body: Value,
    pub client: Client,
}

impl LiveStream {
    /// `POST /api/v1/streams/{id}/stop`; asserts it was taken (202, or 200).
    pub async fn stop(&self) {
        let (s, r) = self
            .client
            .send(
                Method::POST,
                &format!("/api/v1/streams/{}/stop", self.id),
                None,
            )
            .await;
        assert!(s == 202 || s == 200, "stop stream {}: {s} {r}", self.id);
    }
}
