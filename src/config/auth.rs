//! `[auth]` and `[auth.oidc]`: who may call the API. Local tokens (issuer, join-token
//! lifetime, leeway), the OIDC provider whose tokens are accepted (algorithms, role
//! claim and map) and the pages' sign-in client.
//!
//! Owns: validating those keys into [`gremium_signaling::AuthSettings`], with errors
//! that name the key. Must not: load the local signing key (wiring reads it from the
//! data directory) or contact the provider (discovery happens on first use).

use std::collections::HashMap;

use anyhow::bail;
use gremium_signaling::auth::Algorithm as jsonwebtoken_alg;

use super::schema::{AuthConfig, OidcConfig};
use super::secs;

/// The validated `[auth]` section; `local_key` is left empty for wiring to fill.
pub(super) fn auth_settings(auth: AuthConfig) -> anyhow::Result<gremium_signaling::AuthSettings> {
    let oidc = match auth.oidc {
        None => None,
        Some(c) => Some(oidc_settings(c)?),
    };
    let accept_local_staff = auth.accept_local_staff_tokens.unwrap_or(oidc.is_none());
    let local_issuer = auth.local_issuer.unwrap_or_else(|| "gremium".into());
    if local_issuer.trim().is_empty() {
        bail!("auth.local_issuer: must not be empty");
    }
    let join_ttl = auth.join_token_ttl_secs.unwrap_or(12 * 3600);
    if !(60..=7 * 24 * 3600).contains(&join_ttl) {
        bail!("auth.join_token_ttl_secs: must be between 60 and 604800");
    }
    Ok(gremium_signaling::AuthSettings {
        local_key: Vec::new(), // loaded from the data directory by `local_key`
        local_issuer,
        accept_local_staff,
        join_token_ttl: std::time::Duration::from_secs(join_ttl),
        leeway_secs: auth.leeway_secs.unwrap_or(30),
        oidc,
    })
}

fn oidc_settings(c: OidcConfig) -> anyhow::Result<gremium_signaling::OidcSettings> {
    use gremium_signaling::Role;
    if c.issuer.trim().is_empty() {
        bail!("auth.oidc.issuer: must not be empty");
    }
    if c.audience.trim().is_empty() {
        bail!("auth.oidc.audience: must not be empty");
    }
    let sign_in = sign_in_settings(&c)?;
    if !(c.jwks_url.starts_with("https://") || c.jwks_url.starts_with("http://")) {
        bail!("auth.oidc.jwks_url: must be an http(s) URL");
    }
    let mut algorithms = Vec::new();
    for (i, a) in c
        .algorithms
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into()])
        .iter()
        .enumerate()
    {
        algorithms.push(match a.as_str() {
            "RS256" => jsonwebtoken_alg::RS256,
            "ES256" => jsonwebtoken_alg::ES256,
            other => {
                bail!("auth.oidc.algorithms[{i}]: {other:?} is not one of \"RS256\", \"ES256\"")
            }
        });
    }
    if algorithms.is_empty() {
        bail!("auth.oidc.algorithms: must name at least one algorithm");
    }
    let role_map = match c.role_map {
        None => ["admin", "moderator", "viewer", "archivist"]
            .into_iter()
            .filter_map(|r| Role::parse(r).map(|role| (r.to_string(), role)))
            .collect(),
        Some(map) => {
            let mut out = HashMap::new();
            for (claim, role) in map {
                match Role::parse(&role) {
                    Some(Role::Participant) | None => bail!(
                        "auth.oidc.role_map.{claim}: {role:?} is not one of \"admin\", \"moderator\", \"viewer\", \"archivist\""
                    ),
                    Some(r) => {
                        out.insert(claim, r);
                    }
                }
            }
            out
        }
    };
    Ok(gremium_signaling::OidcSettings {
        issuer: c.issuer,
        audience: c.audience,
        jwks_url: c.jwks_url,
        algorithms,
        role_claim: c.role_claim.unwrap_or_else(|| "roles".into()),
        role_map,
        jwks_max_age: secs(c.jwks_max_age_secs, 3600),
        jwks_min_refresh: std::time::Duration::from_secs(10),
        sign_in,
    })
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace)
}

/// The browser client of `[auth.oidc]`; `None` without `client_id`.
fn sign_in_settings(c: &OidcConfig) -> anyhow::Result<Option<gremium_signaling::SignInSettings>> {
    let Some(client_id) = &c.client_id else {
        for (key, set) in [
            ("scopes", c.scopes.is_some()),
            ("resource", c.resource.is_some()),
            ("authorization_endpoint", c.authorization_endpoint.is_some()),
            ("token_endpoint", c.token_endpoint.is_some()),
        ] {
            if set {
                bail!("auth.oidc.{key}: only used for sign-in; set auth.oidc.client_id too");
            }
        }
        return Ok(None);
    };
    if client_id.trim().is_empty() || client_id.chars().any(char::is_control) {
        bail!("auth.oidc.client_id: must not be empty");
    }
    let scopes = c.scopes.clone().unwrap_or_else(|| "openid profile".into());
    if !scopes.split_whitespace().any(|s| s == "openid") {
        bail!("auth.oidc.scopes: must contain \"openid\" (space-separated)");
    }
    if scopes
        .chars()
        .any(|ch| ch.is_control() || ch == '"' || ch == '\\')
    {
        bail!("auth.oidc.scopes: space-separated scope names only");
    }
    if let Some(r) = &c.resource {
        if !r.contains(':') || r.contains(char::is_whitespace) || r.contains('#') {
            bail!("auth.oidc.resource: must be an absolute URI without a fragment (RFC 8707)");
        }
    }
    for (key, value) in [
        ("authorization_endpoint", &c.authorization_endpoint),
        ("token_endpoint", &c.token_endpoint),
    ] {
        if let Some(v) = value {
            if !is_http_url(v) {
                bail!("auth.oidc.{key}: must be an http(s) URL");
            }
        }
    }
    if !is_http_url(&c.issuer) {
        bail!("auth.oidc.issuer: must be an http(s) URL for sign-in (discovery)");
    }
    Ok(Some(gremium_signaling::SignInSettings {
        client_id: client_id.clone(),
        scopes: scopes.split_whitespace().collect::<Vec<_>>().join(" "),
        resource: c.resource.clone(),
        authorization_endpoint: c.authorization_endpoint.clone(),
        token_endpoint: c.token_endpoint.clone(),
    }))
}
