//! OIDC sign-in for the staff pages (`/console/{id}`, `/archive`): what a browser
//! needs to run the authorization-code flow with PKCE as a public client.
//!
//! Owns: the browser client's settings ([`SignInSettings`], from `[auth.oidc]`), the
//! provider's endpoints (configured, or discovered once from
//! `{issuer}/.well-known/openid-configuration` and cached, with the
//! `end_session_endpoint` for signing out at the provider too; a failed discovery is retried
//! on the next page load, at most every few seconds) and the [`SignInClient`] handed to
//! the pages.
//!
//! Why the browser exchanges the code itself (public client) rather than the server
//! (a backend-for-frontend with a session cookie): the pages already hold a bearer token
//! in `sessionStorage` and call the API with it, so an OIDC access token slots in with
//! no second authentication path on the server, no session store and no client secret
//! to keep. PKCE (S256), `state` and `nonce` protect the public client; the token
//! endpoint must allow CORS from our origin.
//!
//! Must not: handle codes or tokens (the server never sees them except as bearer tokens
//! on API calls, verified by [`crate::auth`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// The browser client, as configured (validated by the binary's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInSettings {
    /// The public client's id at the provider.
    pub client_id: String,
    /// Space-separated scopes to request (`openid` among them).
    pub scopes: String,
    /// RFC 8707 `resource` to request the access token for, when the provider wants one.
    pub resource: Option<String>,
    /// Overrides the discovered authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// Overrides the discovered token endpoint.
    pub token_endpoint: Option<String>,
}

/// What a page needs to send the user to the provider and redeem the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInClient {
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the browser redeems the code (`fetch`, so CORS).
    pub token_endpoint: String,
    /// The public client's id.
    pub client_id: String,
    /// Scopes to request.
    pub scopes: String,
    /// RFC 8707 resource, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The provider's `issuer` (the callback checks the ID token's `iss`).
    pub issuer: String,
    /// Where "Sign out" also ends the provider's session (RP-initiated logout), when
    /// discovery names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

impl SignInClient {
    /// The token endpoint's origin (`scheme://host[:port]`), for the pages' CSP
    /// `connect-src`; `None` if it is not an absolute http(s) URL.
    pub fn token_origin(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.token_endpoint).ok()?;
        matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
    }
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

/// Never rediscover more often than this after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The endpoints, discovered lazily and cached.
pub(crate) struct SignInCache {
    issuer: String,
    settings: SignInSettings,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    client: Option<SignInClient>,
    failed_at: Option<Instant>,
}

impl SignInCache {
    pub(crate) fn new(issuer: &str, settings: SignInSettings) -> SignInCache {
        SignInCache {
            issuer: issuer.to_string(),
            settings,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The client for the pages; discovers the endpoints the configuration leaves out.
    /// `Err` (logged) when discovery fails.
    pub(crate) async fn client(&self, http: &reqwest::Client) -> Result<SignInClient, String> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.client {
            return Ok(c.clone());
        }
        if state.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return Err("OIDC discovery failed recently".into());
        }
        let s = &self.settings;
        let (authorization_endpoint, token_endpoint, end_session_endpoint) =
            match (&s.authorization_endpoint, &s.token_endpoint) {
                (Some(a), Some(t)) => (a.clone(), t.clone(), None),
                (a, t) => match discover(http, &self.issuer).await {
                    Ok(d) => (
                        a.clone().unwrap_or(d.authorization_endpoint),
                        t.clone().unwrap_or(d.token_endpoint),
                        d.end_session_endpoint.filter(|e| is_http_url(e)),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "OIDC discovery failed");
                        state.failed_at = Some(Instant::now());
                        return Err(e);
                    }
                },
            };
        let client = SignInClient {
            authorization_endpoint,
            token_endpoint,
            client_id: s.client_id.clone(),
            scopes: s.scopes.clone(),
            resource: s.resource.clone(),
            issuer: self.issuer.clone(),
            end_session_endpoint,
        };
        state.client = Some(client.clone());
        Ok(client)
    }
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let d: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    for (name, value) in [
        ("authorization_endpoint", &d.authorization_endpoint),
        ("token_endpoint", &d.token_endpoint),
    ] {
        if !is_http_url(value) {
            return Err(format!("{url}: {name} is not an http(s) URL"));
        }
    }
    Ok(d)
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(token_endpoint: &str) -> SignInClient {
        SignInClient {
            authorization_endpoint: "https://id.example/auth".into(),
            token_endpoint: token_endpoint.into(),
            client_id: "gremium".into(),
            scopes: "openid".into(),
            resource: None,
            issuer: "https://id.example".into(),
            end_session_endpoint: None,
        }
    }

    #[test]
    fn the_token_origin_is_scheme_host_and_port_only() {
        assert_eq!(
            client("https://id.example/realms/x/token?a=b").token_origin(),
            Some("https://id.example".into())
        );
        assert_eq!(
            client("http://127.0.0.1:8080/token").token_origin(),
            Some("http://127.0.0.1:8080".into())
        );
        assert_eq!(client("javascript:alert(1)").token_origin(), None);
        assert_eq!(client("/token").token_origin(), None);
    }

    #[tokio::test]
    async fn configured_endpoints_need_no_discovery() {
        let cache = SignInCache::new(
            "http://127.0.0.1:9/nowhere",
            SignInSettings {
                client_id: "c".into(),
                scopes: "openid".into(),
                resource: None,
                authorization_endpoint: Some("https://id.example/auth".into()),
                token_endpoint: Some("https://id.example/token".into()),
            },
        );
        let c = cache.client(&reqwest::Client::new()).await.unwrap();
        assert_eq!(c.token_endpoint, "https://id.example/token");
        assert_eq!(c.issuer, "http://127.0.0.1:9/nowhere");
    }
}
