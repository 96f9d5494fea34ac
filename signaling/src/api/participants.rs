//! Participants and consent.
//!
//! Consent is the participant's own statement: only their join token may change it;
//! moderators and admins get 403. A change is applied to the media plane first (so a
//! withdrawal has closed the gates in the running pipeline when the call returns),
//! then stored together with its ledger entry.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_protocol::MediaCommand;
use gremium_storage::{
    ConsentChange, ConsentOutcome, LedgerRecord, MeetingState, NewParticipant, Participant,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::{load_meeting, may_view_meeting};
use crate::auth::{check_standing, OwnDataPrincipal, Principal, Reach, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::extract::{ApiJson, ApiPath};
use crate::{to_datetime, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/meetings/{id}/participants",
            post(add_participant).get(list_participants),
        )
        .route(
            "/meetings/{id}/participants/{pid}",
            delete(remove_participant),
        )
        .route(
            "/meetings/{id}/participants/{pid}/consent",
            put(set_consent),
        )
        .route(
            "/meetings/{id}/participants/{pid}/consent",
            get(get_consent),
        )
}

/// A participant as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantView {
    /// Pseudonymous participant id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Display name.
    pub display_name: String,
    /// Current consent.
    pub consent: Consent,
    /// Joined (added) at.
    pub created_at: DateTime<Utc>,
    /// Left at, if left.
    pub left_at: Option<DateTime<Utc>>,
    /// The participant's media is arriving at the media plane now (in the list and the
    /// WebSocket snapshot; `false` in other answers).
    pub publishing: bool,
}

/// The participant as of now: with whether their media is arriving.
pub(crate) fn view_now(state: &AppState, p: &Participant) -> ParticipantView {
    ParticipantView {
        publishing: p.left_at.is_none() && state.is_publishing(p.meeting_id, p.id),
        ..ParticipantView::from(p)
    }
}

impl From<&Participant> for ParticipantView {
    fn from(p: &Participant) -> Self {
        ParticipantView {
            id: p.id,
            meeting_id: p.meeting_id,
            display_name: p.display_name.clone(),
            consent: Consent {
                recording: p.consent_recording,
                streaming: p.consent_streaming,
            },
            created_at: to_datetime(p.created_at),
            left_at: p.left_at.map(to_datetime),
            publishing: false,
        }
    }
}

/// Consent per purpose. Both default to false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// May appear (picture and sound) in recordings.
    pub recording: bool,
    /// May appear in the public livestream.
    pub streaming: bool,
}

/// Body of `POST /meetings/{id}/participants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddParticipant {
    /// Name shown to others, 1–100 characters.
    pub display_name: String,
}

/// A new participant with the token they join with.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantCreated {
    /// The participant.
    pub participant: ParticipantView,
    /// Meeting-scoped bearer token for WHIP, consent and events. Hand it to the
    /// participant only.
    pub join_token: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// Result of a consent change.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentResult {
    /// Participant.
    pub participant_id: Uuid,
    /// Consent now in force.
    pub consent: Consent,
    /// False when the request repeated the current consent (nothing was written).
    pub changed: bool,
    /// Program running time (ns) at which the gates changed, if media runs.
    pub media_time_ns: Option<u64>,
    /// Ledger sequence number of the entry recording the change.
    pub ledger_seq: Option<i64>,
    /// Ledger hash of that entry.
    pub ledger_hash: Option<String>,
}

/// Add a participant (moderator); returns their join token.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/participants", params(("id" = Uuid, Path)), request_body = AddParticipant,
    responses((status = 201, body = ParticipantCreated), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "participants")]
pub async fn add_participant(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AddParticipant>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    let name = crate::text::single_line("display_name", &body.display_name, 100)?;
    let meeting = load_meeting(&state, id).await?;
    if meeting.state == MeetingState::Ended {
        return Err(ApiError::Conflict("meeting has ended".into()));
    }
    let now = state.now_ms();
    let p = state
        .db()
        .insert_participant(&NewParticipant {
            id: Uuid::new_v4(),
            meeting_id: id,
            display_name: name.into(),
            created_at: now,
        })
        .await?;
    let (join_token, exp) = state.auth().issue_join_token(id, p.id, now / 1000);
    state.publish(
        id,
        EventKind::ParticipantJoined {
            participant_id: p.id,
            display_name: p.display_name.clone(),
        },
    );
    let location = format!("/api/v1/meetings/{id}/participants/{}", p.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ParticipantCreated {
            participant: ParticipantView::from(&p),
            join_token,
            expires_at: to_datetime(exp * 1000),
        }),
    ))
}

/// Participants of a meeting (moderator, archivist, or a participant of it).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/participants", params(("id" = Uuid, Path)),
    responses((status = 200, body = [ParticipantView]), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "participants")]
pub async fn list_participants(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<ParticipantView>>> {
    may_view_meeting(&who, id)?;
    load_meeting(&state, id).await?;
    let ps = state.db().list_participants(id).await?;
    Ok(Json(ps.iter().map(|p| view_now(&state, p)).collect()))
}

/// Remove a participant (moderator, or the participant leaving).
#[utoipa::path(delete, path = "/api/v1/meetings/{id}/participants/{pid}", params(("id" = Uuid, Path), ("pid" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "participants")]
pub async fn remove_participant(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath((id, pid)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    if who.participant_in(id) != Some(pid) {
        who.require(&[Role::Moderator])?;
    }
    let left = state
        .db()
        .mark_participant_left(id, pid, state.now_ms())
        .await
        .map_err(|e| match e {
            gremium_storage::StorageError::NotFound => ApiError::NotFound("participant"),
            other => other.into(),
        })?;
    if left.is_none() {
        return Err(ApiError::Conflict("participant already left".into()));
    }
    // Stored as left: from here on their token is refused. Close what is open.
    state.revoke_participant(id, pid).await;
    state.publish(
        id,
        EventKind::ParticipantLeft {
            participant_id: pid,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Read consent (the participant, or staff who may view the meeting).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/participants/{pid}/consent", params(("id" = Uuid, Path), ("pid" = Uuid, Path)),
    responses((status = 200, body = Consent), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "participants")]
pub async fn get_consent(
    state: axum::extract::State<AppState>,
    OwnDataPrincipal(who): OwnDataPrincipal,
    ApiPath((id, pid)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Consent>> {
    may_view_meeting(&who, id)?;
    if who.participant_in(id).is_some_and(|me| me != pid) {
        // Another participant's consent is meeting data, not one's own.
        check_standing(&state, &who, Reach::Meeting).await?;
    }
    let p = state
        .db()
        .get_participant(id, pid)
        .await?
        .ok_or(ApiError::NotFound("participant"))?;
    Ok(Json(Consent {
        recording: p.consent_recording,
        streaming: p.consent_streaming,
    }))
}

/// Set one's own consent (participant join token only). After the meeting's end a
/// withdrawal is recorded in the ledger as a request for erasure and answered 202
/// (finished recordings are not changed by it); giving consent then is refused (409).
#[utoipa::path(put, path = "/api/v1/meetings/{id}/participants/{pid}/consent", params(("id" = Uuid, Path), ("pid" = Uuid, Path)), request_body = Consent,
    responses((status = 200, body = ConsentResult), (status = 202, body = WithdrawalAfterEnd), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "participants")]
pub async fn set_consent(
    state: axum::extract::State<AppState>,
    OwnDataPrincipal(who): OwnDataPrincipal,
    ApiPath((id, pid)): ApiPath<(Uuid, Uuid)>,
    ApiJson(wanted): ApiJson<Consent>,
) -> ApiResult<axum::response::Response> {
    if who.participant_in(id) != Some(pid) {
        return Err(ApiError::Forbidden(
            "consent can only be given or withdrawn by the participant".into(),
        ));
    }
    // One change per participant at a time, so gates and database agree on the order.
    let _serial = state.consent_lock(pid).lock().await;
    if load_meeting(&state, id).await?.state == MeetingState::Ended {
        return after_end(&state, &who, id, pid, wanted, Over::MeetingEnded).await;
    }
    let removed = state
        .db()
        .participant_standing(id, pid)
        .await?
        .is_some_and(|s| s.left);
    if removed {
        return after_end(&state, &who, id, pid, wanted, Over::Removed).await;
    }
    change_consent(&state, &who, id, pid, wanted)
        .await
        .map(|r| Json(r).into_response())
}

/// Why a participant's part in the meeting is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// The meeting has ended.
    MeetingEnded,
    /// The participant was removed (their token reaches only their own consent).
    Removed,
}

/// Answer to a withdrawal after the meeting's end or the participant's removal (202).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalAfterEnd {
    /// Participant.
    pub participant_id: Uuid,
    /// The purposes withdrawn by this request.
    pub withdrawn: Consent,
    /// Always false: finished recordings are not changed by a withdrawal.
    pub recordings_changed: bool,
    /// What happens now, for the participant to read.
    pub message: String,
    /// Ledger sequence number of the entry recording the withdrawal.
    pub ledger_seq: i64,
    /// Ledger hash of that entry.
    pub ledger_hash: String,
}

/// Consent after the meeting's end: what was recorded is history. Giving consent is
/// refused; a withdrawal cannot reach into finished recordings, so it is recorded in
/// the ledger (`consent_withdrawn_after_end`) as a request for erasure, and the
/// answer says so rather than pretend. The stored consent stays what was in force.
async fn after_end(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    pid: Uuid,
    wanted: Consent,
    over: Over,
) -> ApiResult<axum::response::Response> {
    let p = state
        .db()
        .get_participant(id, pid)
        .await?
        .ok_or(ApiError::NotFound("participant"))?;
    let during = Consent {
        recording: p.consent_recording,
        streaming: p.consent_streaming,
    };
    if (wanted.recording && !during.recording) || (wanted.streaming && !during.streaming) {
        return Err(ApiError::Conflict(match over {
            Over::MeetingEnded => {
                "the meeting has ended: consent can no longer be given, only withdrawn".into()
            }
            Over::Removed => {
                "you were removed from the meeting: consent can no longer be given, only withdrawn"
                    .into()
            }
        }));
    }
    let withdrawn = Consent {
        recording: during.recording && !wanted.recording,
        streaming: during.streaming && !wanted.streaming,
    };
    if !withdrawn.recording && !withdrawn.streaming {
        return Ok(Json(ConsentResult {
            participant_id: pid,
            consent: during,
            changed: false,
            media_time_ns: None,
            ledger_seq: None,
            ledger_hash: None,
        })
        .into_response());
    }
    let entry = state
        .db()
        .append_ledger(&LedgerRecord {
            chain_id: id.to_string(),
            at: state.now_ms(),
            kind: "consent_withdrawn_after_end".into(),
            actor: who.actor(),
            subject: pid.to_string(),
            data: serde_json::json!({
                "withdrawn": withdrawn,
                "consent_during_meeting": during,
                "recordings_changed": false,
                "erasure_requested": true,
                "after": match over {
                    Over::MeetingEnded => "meeting_end",
                    Over::Removed => "removal",
                },
            }),
        })
        .await?;
    metrics::counter!("gremium_consent_withdrawals_after_end_total").increment(1);
    let opening = match over {
        Over::MeetingEnded => "The meeting has ended, so its finished recordings are not changed by this request.",
        Over::Removed => "You were removed from the meeting, so what was recorded before is not changed by this request.",
    };
    let message = format!(
        "{opening} \
         Your withdrawal is recorded (ledger entry {}) as a request for erasure: the \
         controller's data protection officer removes you from the recordings on that \
         basis, or you may ask them for erasure directly, quoting that entry.",
        entry.seq
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(WithdrawalAfterEnd {
            participant_id: pid,
            withdrawn,
            recordings_changed: false,
            message,
            ledger_seq: entry.seq,
            ledger_hash: entry.hash,
        }),
    )
        .into_response())
}

/// A consent change during the meeting: gates first, then the database.
async fn change_consent(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    pid: Uuid,
    wanted: Consent,
) -> ApiResult<ConsentResult> {
    // Gates first: a withdrawal has taken effect in the running pipeline before the
    // change is stored and before this call returns.
    let command = MediaCommand::SetConsent {
        meeting_id: id,
        participant_id: pid,
        recording: wanted.recording,
        streaming: wanted.streaming,
    };
    let media_time_ns = state.media().execute(command).await?.media_time_ns();
    let change = ConsentChange {
        meeting_id: id,
        participant_id: pid,
        recording: wanted.recording,
        streaming: wanted.streaming,
        at: state.now_ms(),
        actor: who.actor(),
        media_time_ns,
    };
    match state.consent_writer().submit(change).await {
        Ok(ConsentOutcome::Changed { entry, .. }) => {
            state.publish(
                id,
                EventKind::ConsentChanged {
                    participant_id: pid,
                    recording: wanted.recording,
                    streaming: wanted.streaming,
                    media_time_ns,
                },
            );
            metrics::counter!("gremium_consent_changes_total").increment(1);
            Ok(ConsentResult {
                participant_id: pid,
                consent: wanted,
                changed: true,
                media_time_ns,
                ledger_seq: Some(entry.seq),
                ledger_hash: Some(entry.hash),
            })
        }
        Ok(ConsentOutcome::Unchanged) => Ok(ConsentResult {
            participant_id: pid,
            consent: wanted,
            changed: false,
            media_time_ns: None,
            ledger_seq: None,
            ledger_hash: None,
        }),
        Ok(ConsentOutcome::Left) => {
            close_gates(state, id, pid).await;
            Err(ApiError::Conflict(
                "participant has left the meeting".into(),
            ))
        }
        Ok(ConsentOutcome::NotFound) => {
            close_gates(state, id, pid).await;
            Err(ApiError::NotFound("participant"))
        }
        Err(e) => {
            // Not stored: put the gates back to what the database says (closed if unknown).
            let stored = state.db().get_participant(id, pid).await.ok().flatten();
            let (recording, streaming) = stored
                .map(|p| (p.consent_recording, p.consent_streaming))
                .unwrap_or((false, false));
            let revert = MediaCommand::SetConsent {
                meeting_id: id,
                participant_id: pid,
                recording,
                streaming,
            };
            if let Err(media) = state.media().execute(revert).await {
                tracing::error!(error = %media, "could not restore consent gates after a failed write");
            }
            Err(e.into())
        }
    }
}

/// Close both gates of a participant the database does not (or no longer) admits.
async fn close_gates(state: &AppState, meeting_id: Uuid, participant_id: Uuid) {
    let close = MediaCommand::SetConsent {
        meeting_id,
        participant_id,
        recording: false,
        streaming: false,
    };
    if let Err(e) = state.media().execute(close).await {
        tracing::error!(error = %e, "could not close consent gates");
    }
}
