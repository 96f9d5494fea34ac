//! Who is calling, per request: the bearer token read from the request, verified by
//! the [`Authenticator`](super::Authenticator), and for a join token whether it still
//! stands in the database (revocation by removal or the meeting's end), as axum
//! extractors. Owns the request side only; must not verify signatures or know token
//! formats itself (that is the parent module's `Authenticator`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::Principal;
use crate::error::ApiError;
use crate::AppState;

/// The bearer token of a request: `Authorization: Bearer …`.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// What a join token may still reach once its meeting has ended or its participant
/// was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The meeting and everything in it (refused once the meeting has ended).
    Meeting,
    /// Only the participant's own data, such as their consent: still reachable after
    /// the meeting's end or their removal, so a withdrawal can be recorded.
    OwnData,
}

/// Is a verified join token still good, given what the database says now? Removal and
/// a meeting's end revoke it for all but [`Reach::OwnData`] (issue 18: everything but
/// consent withdrawal and the participant's own data). Pure, so the rule is tested
/// without a database.
pub fn standing_allows(
    standing: Option<gremium_storage::ParticipantStanding>,
    reach: Reach,
) -> Result<(), ApiError> {
    match standing {
        None => Err(ApiError::Unauthorized(
            "join token revoked: the participant no longer exists".into(),
        )),
        Some(s) if s.left && reach == Reach::Meeting => Err(ApiError::Unauthorized(
            "join token revoked: the participant was removed from the meeting".into(),
        )),
        Some(s) if s.meeting_ended && reach == Reach::Meeting => Err(ApiError::Forbidden(
            "the meeting has ended; a join token now reaches only the participant's own consent"
                .into(),
        )),
        Some(_) => Ok(()),
    }
}

/// Verify a bearer token and, for a join token, check against the database that it
/// still stands (join tokens are stateless JWTs; revocation lives in the database and
/// is read on every request, so a removal takes effect at once).
pub async fn authenticate(
    state: &AppState,
    token: &str,
    reach: Reach,
) -> Result<Principal, ApiError> {
    let who = state.auth().verify(token).await?;
    check_standing(state, &who, reach).await?;
    Ok(who)
}

/// The database half of [`authenticate`], for callers that verified already.
pub async fn check_standing(
    state: &AppState,
    who: &Principal,
    reach: Reach,
) -> Result<(), ApiError> {
    if let Principal::Participant {
        meeting_id,
        participant_id,
    } = who
    {
        let standing = state
            .db()
            .participant_standing(*meeting_id, *participant_id)
            .await?;
        if standing.is_none() && state.db().get_meeting(*meeting_id).await?.is_none() {
            // A validly signed token for a meeting that does not exist (any more):
            // the same 404 as for any unknown meeting.
            return Err(ApiError::NotFound("meeting"));
        }
        standing_allows(standing, reach)?;
    }
    Ok(())
}

/// [`authenticate`] the request's bearer token; 401 when it carries none.
async fn authenticate_request(
    parts: &Parts,
    state: &AppState,
    reach: Reach,
) -> Result<Principal, ApiError> {
    let token =
        bearer(parts).ok_or_else(|| ApiError::Unauthorized("bearer token required".into()))?;
    authenticate(state, token, reach).await
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate_request(parts, state, Reach::Meeting).await
    }
}

/// A caller acting on a participant's own data (their consent): as [`Principal`], but
/// a join token still counts after its meeting has ended.
pub struct OwnDataPrincipal(pub Principal);

impl FromRequestParts<AppState> for OwnDataPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate_request(parts, state, Reach::OwnData)
            .await
            .map(OwnDataPrincipal)
    }
}
