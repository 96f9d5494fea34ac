//! Bearer-token authentication and roles: the token formats and their verifiers
//! (this module), and reading the caller of a request (`request`).
//!
//! Two kinds of tokens are accepted:
//! - **Local tokens** (HS256, signed with the key in the data directory): join tokens
//!   (`aud = gremium-join`, meeting-scoped, short-lived) are always local; staff tokens
//!   (`aud = gremium`, from `gremium token`) are accepted when `accept_local_staff`.
//! - **OIDC tokens** (RS256/ES256) from the configured issuer, verified against its
//!   JWKS. Unknown key ids trigger a JWKS refresh (rate-limited), which honours key
//!   rotation.
//!
//! The algorithm in the token header picks the verifier, and each verifier accepts only
//! its own algorithms, so an HS256 token can never be checked against a public key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::error::ApiError;
use crate::signin::{SignInCache, SignInClient, SignInSettings};

mod request;

pub use request::{authenticate, bearer, check_standing, standing_allows, OwnDataPrincipal, Reach};

/// Audience of staff tokens issued by this service.
pub const STAFF_AUDIENCE: &str = "gremium";
/// Audience of participants' join tokens.
pub const JOIN_AUDIENCE: &str = "gremium-join";

/// Roles of DESIGN.md. `Admin` passes every staff check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Runs meetings: participants, recording, streams, layout, public switch.
    Moderator,
    /// A meeting participant (join tokens only).
    Participant,
    /// Public live streams and the public archive.
    Viewer,
    /// Archive of non-public meetings.
    Archivist,
}

impl Role {
    /// Parse a role name as used in tokens and on the command line.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "moderator" => Some(Role::Moderator),
            "participant" => Some(Role::Participant),
            "viewer" => Some(Role::Viewer),
            "archivist" => Some(Role::Archivist),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Staff or viewer, from a local staff token or an OIDC token.
    Staff {
        /// Token subject (used as the ledger actor).
        subject: String,
        /// Roles granted.
        roles: Vec<Role>,
    },
    /// A meeting participant, from a join token.
    Participant {
        /// Meeting the token is scoped to.
        meeting_id: Uuid,
        /// The participant.
        participant_id: Uuid,
    },
}

impl Principal {
    /// Ledger actor string.
    pub fn actor(&self) -> String {
        match self {
            Principal::Staff { subject, .. } => subject.clone(),
            Principal::Participant { participant_id, .. } => {
                format!("participant:{participant_id}")
            }
        }
    }

    /// True if this is staff with one of `roles` (admin always qualifies).
    pub fn has_any(&self, roles: &[Role]) -> bool {
        match self {
            Principal::Staff { roles: mine, .. } => {
                mine.contains(&Role::Admin) || mine.iter().any(|r| roles.contains(r))
            }
            Principal::Participant { .. } => false,
        }
    }

    /// Forbidden unless staff with one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("your role does not allow this".into()))
        }
    }

    /// The participant id if this is a join token for `meeting_id`.
    pub fn participant_in(&self, meeting_id: Uuid) -> Option<Uuid> {
        match self {
            Principal::Participant {
                meeting_id: m,
                participant_id,
            } if *m == meeting_id => Some(*participant_id),
            _ => None,
        }
    }
}

/// OIDC settings (validated by the binary's config).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Where the JWKS is fetched.
    pub jwks_url: String,
    /// Accepted algorithms (RS256, ES256).
    pub algorithms: Vec<Algorithm>,
    /// Dot-separated path of the claim holding roles, e.g. `realm_access.roles`.
    pub role_claim: String,
    /// Claim value → Gremium role.
    pub role_map: HashMap<String, Role>,
    /// Refetch the JWKS at least this often.
    pub jwks_max_age: Duration,
    /// Never refetch more often than this (unknown-kid storms).
    pub jwks_min_refresh: Duration,
    /// Sign-in on the staff pages (a public browser client), when configured.
    pub sign_in: Option<SignInSettings>,
}

/// Authentication settings.
#[derive(Clone)]
pub struct AuthSettings {
    /// HS256 secret of local tokens.
    pub local_key: Vec<u8>,
    /// `iss` of local tokens.
    pub local_issuer: String,
    /// Accept local staff tokens (always true without OIDC).
    pub accept_local_staff: bool,
    /// Lifetime of join tokens.
    pub join_token_ttl: Duration,
    /// Clock-skew leeway in seconds.
    pub leeway_secs: u64,
    /// OIDC, when configured.
    pub oidc: Option<OidcSettings>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("local_key", &"<redacted>")
            .field("local_issuer", &self.local_issuer)
            .field("accept_local_staff", &self.accept_local_staff)
            .field("oidc", &self.oidc)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LocalClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mid: Option<Uuid>,
}

struct JwksCache {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched: Option<Instant>,
}

/// Verifies bearer tokens and issues local ones.
pub struct Authenticator {
    settings: AuthSettings,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwks: RwLock<JwksCache>,
    sign_in: Option<SignInCache>,
    http: reqwest::Client,
}

impl Authenticator {
    /// Build from settings.
    pub fn new(settings: AuthSettings) -> Arc<Authenticator> {
        let encoding = EncodingKey::from_secret(&settings.local_key);
        let decoding = DecodingKey::from_secret(&settings.local_key);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let sign_in = settings
            .oidc
            .as_ref()
            .and_then(|o| o.sign_in.clone().map(|s| SignInCache::new(&o.issuer, s)));
        Arc::new(Authenticator {
            sign_in,
            settings,
            encoding,
            decoding,
            jwks: RwLock::new(JwksCache {
                keys: Vec::new(),
                fetched: None,
            }),
            http,
        })
    }

    /// Settings in use.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// The OIDC browser client for the staff pages: `None` without `[auth.oidc]`
    /// sign-in, `Some(Err)` while the provider's discovery document is unavailable.
    pub async fn sign_in_client(&self) -> Option<Result<SignInClient, String>> {
        match &self.sign_in {
            None => None,
            Some(cache) => Some(cache.client(&self.http).await),
        }
    }

    /// Issue a local staff token.
    pub fn issue_staff_token(
        &self,
        subject: &str,
        roles: &[Role],
        now: i64,
        ttl: Duration,
    ) -> String {
        let claims = LocalClaims {
            iss: self.settings.local_issuer.clone(),
            aud: STAFF_AUDIENCE.into(),
            sub: subject.into(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            roles: roles.to_vec(),
            mid: None,
        };
        self.sign(&claims)
    }

    /// Issue a meeting-scoped join token; returns the token and its expiry (unix s).
    pub fn issue_join_token(
        &self,
        meeting_id: Uuid,
        participant_id: Uuid,
        now: i64,
    ) -> (String, i64) {
        let exp = now + self.settings.join_token_ttl.as_secs() as i64;
        let claims = LocalClaims {
            iss: self.settings.local_issuer.clone(),
            aud: JOIN_AUDIENCE.into(),
            sub: participant_id.to_string(),
            iat: now,
            exp,
            roles: vec![Role::Participant],
            mid: Some(meeting_id),
        };
        (self.sign(&claims), exp)
    }

    fn sign(&self, claims: &LocalClaims) -> String {
        // HS256 signing of a serializable struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Verify a bearer token and return who it names.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::Unauthorized("malformed token".into()))?;
        match header.alg {
            Algorithm::HS256 => self.verify_local(token),
            alg => match &self.settings.oidc {
                Some(oidc) if oidc.algorithms.contains(&alg) => {
                    self.verify_oidc(oidc, token, alg, header.kid).await
                }
                _ => Err(ApiError::Unauthorized(
                    "token algorithm not accepted".into(),
                )),
            },
        }
    }

    fn verify_local(&self, token: &str) -> Result<Principal, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.settings.local_issuer]);
        v.set_audience(&[STAFF_AUDIENCE, JOIN_AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.settings.leeway_secs;
        let data =
            jsonwebtoken::decode::<LocalClaims>(token, &self.decoding, &v).map_err(reject)?;
        let c = data.claims;
        if c.aud == JOIN_AUDIENCE {
            let participant_id = Uuid::parse_str(&c.sub)
                .map_err(|_| ApiError::Unauthorized("malformed join token".into()))?;
            let meeting_id = c
                .mid
                .ok_or_else(|| ApiError::Unauthorized("malformed join token".into()))?;
            return Ok(Principal::Participant {
                meeting_id,
                participant_id,
            });
        }
        if !self.settings.accept_local_staff {
            return Err(ApiError::Unauthorized(
                "local staff tokens are disabled; sign in with OIDC".into(),
            ));
        }
        if c.roles.is_empty() || c.roles.contains(&Role::Participant) {
            return Err(ApiError::Unauthorized("token carries no staff role".into()));
        }
        Ok(Principal::Staff {
            subject: c.sub,
            roles: c.roles,
        })
    }

    async fn verify_oidc(
        &self,
        oidc: &OidcSettings,
        token: &str,
        alg: Algorithm,
        kid: Option<String>,
    ) -> Result<Principal, ApiError> {
        let key = self.key_for(oidc, kid.as_deref()).await?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[&oidc.issuer]);
        v.set_audience(&[&oidc.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.settings.leeway_secs;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(reject)?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .ok_or_else(|| ApiError::Unauthorized("token has no subject".into()))?
            .to_string();
        let mut roles = Vec::new();
        for name in claim_strings(&claims, &oidc.role_claim) {
            if let Some(role) = oidc.role_map.get(&name) {
                if !roles.contains(role) && *role != Role::Participant {
                    roles.push(*role);
                }
            }
        }
        if roles.is_empty() {
            // Authenticated citizens without a mapped role may still watch public content.
            roles.push(Role::Viewer);
        }
        Ok(Principal::Staff { subject, roles })
    }

    async fn key_for(
        &self,
        oidc: &OidcSettings,
        kid: Option<&str>,
    ) -> Result<DecodingKey, ApiError> {
        {
            let cache = self.jwks.read().await;
            let fresh = cache
                .fetched
                .is_some_and(|t| t.elapsed() < oidc.jwks_max_age);
            if fresh {
                if let Some(k) = find_key(&cache.keys, kid) {
                    return Ok(k);
                }
            }
        }
        let mut cache = self.jwks.write().await;
        let may_refresh = cache
            .fetched
            .is_none_or(|t| t.elapsed() >= oidc.jwks_min_refresh);
        if may_refresh {
            match self.fetch_jwks(oidc).await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetching the OIDC JWKS failed");
                    if cache.keys.is_empty() {
                        return Err(ApiError::Unavailable(
                            "identity provider keys unavailable".into(),
                        ));
                    }
                }
            }
        }
        find_key(&cache.keys, kid)
            .ok_or_else(|| ApiError::Unauthorized("token signed by an unknown key".into()))
    }

    async fn fetch_jwks(
        &self,
        oidc: &OidcSettings,
    ) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
        let set: JwkSet = self
            .http
            .get(&oidc.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.without_url().to_string())?
            .json()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                DecodingKey::from_jwk(jwk)
                    .ok()
                    .map(|k| (jwk.common.key_id.clone(), k))
            })
            .collect())
    }
}

fn find_key(keys: &[(Option<String>, DecodingKey)], kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid))
            .map(|(_, k)| k.clone()),
        None if keys.len() == 1 => Some(keys[0].1.clone()),
        None => None,
    }
}

fn reject(e: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::InvalidIssuer => "token issuer not accepted",
        ErrorKind::InvalidAudience => "token audience not accepted",
        ErrorKind::InvalidSignature => "token signature invalid",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "token invalid",
    };
    ApiError::Unauthorized(why.into())
}

/// Strings found at a dot-separated claim path (a string or an array of strings).
fn claim_strings(claims: &serde_json::Value, path: &str) -> Vec<String> {
    let mut v = claims;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return Vec::new(),
        }
    }
    match v {
        serde_json::Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(accept_local_staff: bool) -> Arc<Authenticator> {
        Authenticator::new(AuthSettings {
            local_key: b"0123456789abcdef0123456789abcdef".to_vec(),
            local_issuer: "gremium-test".into(),
            accept_local_staff,
            join_token_ttl: Duration::from_secs(60),
            leeway_secs: 0,
            oidc: None,
        })
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[tokio::test]
    async fn local_staff_and_join_tokens_round_trip() {
        let a = auth(true);
        let t = a.issue_staff_token("alice", &[Role::Moderator], now(), Duration::from_secs(60));
        assert_eq!(
            a.verify(&t).await.unwrap(),
            Principal::Staff {
                subject: "alice".into(),
                roles: vec![Role::Moderator]
            }
        );
        let (m, p) = (Uuid::new_v4(), Uuid::new_v4());
        let (t, exp) = a.issue_join_token(m, p, now());
        assert!(exp > now());
        let who = a.verify(&t).await.unwrap();
        assert_eq!(who.participant_in(m), Some(p));
        assert_eq!(who.participant_in(Uuid::new_v4()), None);
        assert!(!who.has_any(&[Role::Moderator, Role::Viewer]));
    }

    #[tokio::test]
    async fn bad_local_tokens_are_rejected() {
        let a = auth(true);
        let expired =
            a.issue_staff_token("a", &[Role::Admin], now() - 3600, Duration::from_secs(60));
        assert!(
            matches!(a.verify(&expired).await, Err(ApiError::Unauthorized(m)) if m == "token expired")
        );
        let other = Authenticator::new(AuthSettings {
            local_key: b"another key, another key, 32 b!".to_vec(),
            ..a.settings().clone()
        });
        let forged = other.issue_staff_token("a", &[Role::Admin], now(), Duration::from_secs(60));
        assert!(
            matches!(a.verify(&forged).await, Err(ApiError::Unauthorized(m)) if m == "token signature invalid")
        );
        for junk in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."] {
            assert!(
                matches!(a.verify(junk).await, Err(ApiError::Unauthorized(_))),
                "{junk}"
            );
        }
        let staff_off = auth(false);
        let t = staff_off.issue_staff_token("a", &[Role::Admin], now(), Duration::from_secs(60));
        assert!(staff_off.verify(&t).await.is_err());
        let (join, _) = staff_off.issue_join_token(Uuid::new_v4(), Uuid::new_v4(), now());
        assert!(
            staff_off.verify(&join).await.is_ok(),
            "join tokens stay valid with OIDC"
        );
    }

    #[test]
    fn admin_passes_every_staff_check_but_participants_none() {
        let admin = Principal::Staff {
            subject: "x".into(),
            roles: vec![Role::Admin],
        };
        assert!(admin.require(&[Role::Archivist]).is_ok());
        let viewer = Principal::Staff {
            subject: "x".into(),
            roles: vec![Role::Viewer],
        };
        assert!(viewer.require(&[Role::Moderator]).is_err());
    }

    #[test]
    fn removal_and_the_end_revoke_all_but_own_data() {
        use gremium_storage::ParticipantStanding as S;
        let open = S {
            left: false,
            meeting_ended: false,
        };
        let ended = S {
            left: false,
            meeting_ended: true,
        };
        let left = S {
            left: true,
            meeting_ended: false,
        };
        let left_ended = S {
            left: true,
            meeting_ended: true,
        };
        for reach in [Reach::Meeting, Reach::OwnData] {
            assert!(standing_allows(Some(open), reach).is_ok());
            assert!(
                matches!(standing_allows(None, reach), Err(ApiError::Unauthorized(m)) if m.starts_with("join token revoked")),
                "{reach:?}"
            );
        }
        for gone in [left, left_ended] {
            assert!(
                matches!(standing_allows(Some(gone), Reach::Meeting), Err(ApiError::Unauthorized(m)) if m.starts_with("join token revoked")),
                "{gone:?}"
            );
            assert!(standing_allows(Some(gone), Reach::OwnData).is_ok());
        }
        assert!(matches!(
            standing_allows(Some(ended), Reach::Meeting),
            Err(ApiError::Forbidden(m)) if m.contains("ended")
        ));
        assert!(standing_allows(Some(ended), Reach::OwnData).is_ok());
    }

    #[test]
    fn role_claims_follow_paths() {
        let c = serde_json::json!({"realm_access": {"roles": ["a", "b"]}, "scope": "x y"});
        assert_eq!(claim_strings(&c, "realm_access.roles"), ["a", "b"]);
        assert_eq!(claim_strings(&c, "scope"), ["x", "y"]);
        assert!(claim_strings(&c, "nope.roles").is_empty());
    }
}
