//! The citizens' viewer: `GET /watch/{meeting_id}` is a plain, accessible page (German
//! and English, keyboard operable, a captions slot) that plays the meeting's
//! livestream; `GET /watch/{meeting_id}/status` tells it what to show (waiting, live,
//! not public, ended); `GET /assets/hls.min.js` serves the player library installed at
//! build time (`ApiSettings::player_js`, from `web/package-lock.json`).
//!
//! Owns: the page (`assets/watch.html`), the public status and how it is derived from
//! the meeting and its streams ([`WatchState::of`]), serving the player file.
//!
//! Must not: change anything (every route is a read without a token, so it may reveal
//! only what a citizen sees anyway: the title of a public meeting, whether the stream
//! runs; of a non-public meeting only that it is not public at the moment, or ended),
//! serve media (that is `/live`, see [`super::live`]), or load code from third parties
//! (the page's own script is inline; hls.js comes from our own origin).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gremium_protocol::OutputState;
use gremium_storage::{Meeting, MeetingState, Stream};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/watch/{meeting_id}", get(page))
        .route("/watch/{meeting_id}/status", get(status))
        .route("/assets/hls.min.js", get(player_js))
}

/// What a citizen's page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// The meeting runs, but no HLS stream does (not yet, or not any more).
    Waiting,
    /// An HLS stream runs and the meeting is public: the program is on it.
    Live,
    /// The meeting is not public at the moment (an HLS stream, if one runs, shows the
    /// slate). Nothing else about it is told.
    NotPublic,
    /// The meeting has ended.
    Ended,
}

impl WatchState {
    /// The state of `meeting` given its `streams`. Only a stream whose media flows
    /// (`active`) counts: before that the playlist may not exist yet. A non-public
    /// meeting is `not_public` whether or not a stream runs (waiting would tell more).
    pub fn of(meeting: &Meeting, streams: &[Stream]) -> WatchState {
        if meeting.state == MeetingState::Ended {
            return WatchState::Ended;
        }
        let running = streams
            .iter()
            .any(|s| s.hls && s.state == OutputState::Active);
        match (running, meeting.is_public) {
            (_, false) => WatchState::NotPublic,
            (false, true) => WatchState::Waiting,
            (true, true) => WatchState::Live,
        }
    }
}

impl WatchStatus {
    /// What an anonymous caller is told of `meeting`: the title only while it is
    /// public; the playlist while an HLS stream runs (during a non-public part it
    /// plays the slate, so a page keeps its player).
    pub fn of(meeting: &Meeting, streams: &[Stream]) -> WatchStatus {
        let state = WatchState::of(meeting, streams);
        let running = streams
            .iter()
            .any(|s| s.hls && s.state == OutputState::Active);
        WatchStatus {
            title: meeting.is_public.then(|| meeting.title.clone()),
            state,
            hls: (running && state != WatchState::Ended)
                .then(|| format!("/live/{}/index.m3u8", meeting.id)),
        }
    }
}

/// Body of `GET /watch/{meeting_id}/status`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WatchStatus {
    /// The meeting's title while it is public; null while it is not.
    pub title: Option<String>,
    /// What the page shows.
    pub state: WatchState,
    /// The HLS master playlist while a stream runs (`live` or `not_public`), else null.
    pub hls: Option<String>,
}

/// A meeting id from the path: malformed and unknown ids are both "not found" (these
/// are citizens' URLs, not API calls).
pub(crate) async fn find_meeting(state: &AppState, id: &str) -> ApiResult<Meeting> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("meeting"))?;
    state
        .db()
        .get_meeting(id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))
}

async fn page(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    find_meeting(&state, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        ],
        include_str!("../../assets/watch.html"),
    )
        .into_response())
}

/// Our origin only; inline script and style are the page's own; hls.js feeds the
/// video through a `blob:` MediaSource and may run its demuxer in a `blob:` worker.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'unsafe-inline'; connect-src 'self'; media-src 'self' blob:; \
                        worker-src 'self' blob:; img-src 'self' data:; base-uri 'none'; \
                        form-action 'none'";

/// What the viewer page shows for a meeting. Public: no token.
#[utoipa::path(get, path = "/watch/{meeting_id}/status", params(("meeting_id" = Uuid, Path)),
    responses((status = 200, body = WatchStatus), (status = 404)), tag = "watch")]
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let meeting = find_meeting(&state, &id).await?;
    let streams = state.db().list_streams(meeting.id).await?;
    Ok((
        // Every citizen's page polls this: a CDN may answer for a second.
        [(header::CACHE_CONTROL, "public, max-age=1")],
        Json(WatchStatus::of(&meeting, &streams)),
    ))
}

/// The player library. It changes only with a new build, so browsers and CDNs may keep
/// it for a day; missing → 404 and the page uses native HLS.
async fn player_js(State(state): State<AppState>) -> Response {
    let Some(path) = state.settings().player_js.as_ref() else {
        return ApiError::NotFound("player").into_response();
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "player_js not readable");
            return ApiError::NotFound("player").into_response();
        }
    };
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(is_public: bool, state: MeetingState) -> Meeting {
        Meeting {
            id: Uuid::nil(),
            title: "Stadtrat".into(),
            is_public,
            state,
            retention_days: 30,
            legal_hold: false,
            created_by: "m".into(),
            created_at: 0,
            ended_at: None,
            layout: "{}".into(),
        }
    }

    fn stream(hls: bool, state: OutputState) -> Stream {
        Stream {
            id: Uuid::nil(),
            meeting_id: Uuid::nil(),
            state,
            hls,
            destinations: "[]".into(),
            failure: None,
            requested_by: "m".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn state_follows_meeting_and_streams() {
        use MeetingState::{Ended, Open};
        use OutputState::*;
        let cases = [
            (true, Open, vec![], WatchState::Waiting),
            (
                true,
                Open,
                vec![stream(true, Requested)],
                WatchState::Waiting,
            ),
            (
                true,
                Open,
                vec![stream(true, Starting)],
                WatchState::Waiting,
            ),
            (true, Open, vec![stream(true, Active)], WatchState::Live),
            (
                false,
                Open,
                vec![stream(true, Active)],
                WatchState::NotPublic,
            ),
            // RTMP only: nothing for the page to play.
            (true, Open, vec![stream(false, Active)], WatchState::Waiting),
            (
                true,
                Open,
                vec![stream(true, Stopping)],
                WatchState::Waiting,
            ),
            (
                true,
                Open,
                vec![stream(true, Finished)],
                WatchState::Waiting,
            ),
            (
                true,
                Open,
                vec![stream(true, Failed), stream(true, Active)],
                WatchState::Live,
            ),
            (true, Ended, vec![stream(true, Active)], WatchState::Ended),
            (false, Ended, vec![], WatchState::Ended),
            // Non-public: only that, stream or not.
            (false, Open, vec![], WatchState::NotPublic),
            (
                false,
                Open,
                vec![stream(true, Starting)],
                WatchState::NotPublic,
            ),
        ];
        for (public, ms, streams, want) in cases {
            assert_eq!(
                WatchState::of(&meeting(public, ms), &streams),
                want,
                "{public} {ms:?} {streams:?}"
            );
        }
    }

    #[test]
    fn anonymous_callers_get_a_title_only_while_the_meeting_is_public() {
        use MeetingState::{Ended, Open};
        let live = [stream(true, OutputState::Active)];
        for (public, ms, streams, title, hls) in [
            (true, Open, &live[..], true, true),
            (true, Open, &[][..], true, false),
            (false, Open, &live[..], false, true),
            (false, Open, &[][..], false, false),
            (true, Ended, &live[..], true, false),
            (false, Ended, &[][..], false, false),
        ] {
            let s = WatchStatus::of(&meeting(public, ms), streams);
            assert_eq!(s.title.is_some(), title, "{public} {ms:?}");
            assert_eq!(s.hls.is_some(), hls, "{public} {ms:?}");
            if !public {
                let json = serde_json::to_string(&s).unwrap();
                assert!(!json.contains("Stadtrat"), "{json}");
            }
        }
    }
}
