//! OIDC bearer tokens verified against a JWKS served by this test over real HTTP:
//! ES256 and RS256, role-claim mapping, key rotation, and every kind of bad token.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use base64::Engine;
use common::*;
use gremium_signaling::{ApiSettings, OidcSettings, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const ISSUER: &str = "https://id.example.test/realms/council";
const AUDIENCE: &str = "gremium-api";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct EcKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref(); // 0x04 || X || Y
    EcKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&public[1..33]), "y": b64(&public[33..65]), "kid": kid, "alg": "ES256", "use": "sig"}),
    }
}

fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let pem = include_bytes!("fixtures/test-only-rsa.pem");
    let n = include_str!("fixtures/test-only-rsa.n").trim();
    (
        EncodingKey::from_rsa_pem(pem).unwrap(),
        json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": kid, "alg": "RS256", "use": "sig"}),
    )
}

fn claims(iss: &str, aud: &str, exp_offset: i64, roles: &[&str]) -> Value {
    json!({"iss": iss, "aud": aud, "sub": "user-4711", "exp": now_secs() + exp_offset, "iat": now_secs(), "realm_access": {"roles": roles}})
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

async fn jwks_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let keys = keys.clone();
            async move { axum::Json(json!({"keys": keys.lock().unwrap().clone()})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_are_verified_against_the_jwks() {
    let k1 = ec_key("k1");
    let (rsa, rsa_jwk) = rsa_key("r1");
    let keys = Arc::new(Mutex::new(vec![k1.jwk.clone(), rsa_jwk]));
    let jwks_url = jwks_server(keys.clone()).await;
    let oidc = OidcSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_url,
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        role_claim: "realm_access.roles".into(),
        role_map: HashMap::from([
            ("gremium-moderator".to_string(), Role::Moderator),
            ("gremium-archiv".to_string(), Role::Archivist),
        ]),
        jwks_max_age: Duration::from_secs(3600),
        jwks_min_refresh: Duration::from_millis(0),
        sign_in: None,
    };
    let app = spawn_app_with(
        Backend::Sqlite,
        auth_settings(Some(oidc)),
        ApiSettings::default(),
    )
    .await;

    let moderator = sign(
        Algorithm::ES256,
        &k1.kid,
        &k1.encoding,
        &claims(
            ISSUER,
            AUDIENCE,
            600,
            &["gremium-moderator", "offline_access"],
        ),
    );
    let (s, m) = app
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(&moderator),
            Some(json!({"title": "Kreistag"})),
        )
        .await;
    assert_eq!(s, 201, "ES256 moderator: {m}");
    let mid = m["id"].as_str().unwrap().to_string();
    let entries = app.db.ledger_entries(&mid, 0, 10).await.unwrap();
    assert_eq!(
        entries[0].actor, "user-4711",
        "the OIDC subject is the ledger actor"
    );

    let rs_archivist = sign(
        Algorithm::RS256,
        "r1",
        &rsa,
        &claims(ISSUER, AUDIENCE, 600, &["gremium-archiv"]),
    );
    let (s, _) = app
        .send(Method::GET, "/api/v1/meetings", Some(&rs_archivist), None)
        .await;
    assert_eq!(s, 200, "RS256 archivist");
    let (s, _) = app
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(&rs_archivist),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(s, 403, "archivists do not create meetings");

    let unmapped = sign(
        Algorithm::ES256,
        &k1.kid,
        &k1.encoding,
        &claims(ISSUER, AUDIENCE, 600, &["someone-else"]),
    );
    let (s, _) = app
        .send(Method::GET, "/api/v1/meetings", Some(&unmapped), None)
        .await;
    assert_eq!(s, 403, "no mapped role: viewer only");

    let stranger = ec_key("k1"); // same kid, different key
    let b = |v: &Value| b64(v.to_string().as_bytes());
    let bad: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                Algorithm::ES256,
                &k1.kid,
                &k1.encoding,
                &claims(ISSUER, AUDIENCE, -600, &["gremium-moderator"]),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::ES256,
                &k1.kid,
                &k1.encoding,
                &claims(
                    "https://evil.example",
                    AUDIENCE,
                    600,
                    &["gremium-moderator"],
                ),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::ES256,
                &k1.kid,
                &k1.encoding,
                &claims(ISSUER, "other-app", 600, &["gremium-moderator"]),
            ),
        ),
        (
            "wrong signature",
            sign(
                Algorithm::ES256,
                "k1",
                &stranger.encoding,
                &claims(ISSUER, AUDIENCE, 600, &["gremium-moderator"]),
            ),
        ),
        (
            "unknown key id",
            sign(
                Algorithm::ES256,
                "nope",
                &stranger.encoding,
                &claims(ISSUER, AUDIENCE, 600, &["gremium-moderator"]),
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b(&json!({"alg": "none", "kid": "k1"})),
                b(&claims(ISSUER, AUDIENCE, 600, &["gremium-moderator"]))
            ),
        ),
        (
            "local staff token while OIDC is on",
            app.auth
                .issue_staff_token("x", &[Role::Admin], now_secs(), Duration::from_secs(60)),
        ),
        ("HS256 signed with the public JWK", {
            let secret = k1.jwk.to_string();
            sign(
                Algorithm::HS256,
                "k1",
                &EncodingKey::from_secret(secret.as_bytes()),
                &claims(ISSUER, AUDIENCE, 600, &["gremium-moderator"]),
            )
        }),
    ];
    for (what, token) in bad {
        let (s, e) = app
            .send(Method::GET, "/api/v1/meetings", Some(&token), None)
            .await;
        assert_eq!(s, 401, "{what}: {e}");
    }

    // Join tokens stay local and keep working with OIDC on.
    let (pid, join) = app
        .client_with(Some(moderator.clone()))
        .meeting(&mid)
        .add_participant("Bürgerin")
        .await
        .into_parts();
    let (s, _) = join
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/participants/{pid}/consent"),
            Some(json!({"recording": true, "streaming": true})),
        )
        .await;
    assert_eq!(s, 200);

    // Key rotation: the IdP publishes k2 and drops k1; a k2 token works without restart.
    let k2 = ec_key("k2");
    *keys.lock().unwrap() = vec![k2.jwk.clone()];
    let rotated = sign(
        Algorithm::ES256,
        &k2.kid,
        &k2.encoding,
        &claims(ISSUER, AUDIENCE, 600, &["gremium-moderator"]),
    );
    let (s, e) = app
        .send(Method::GET, "/api/v1/meetings", Some(&rotated), None)
        .await;
    assert_eq!(s, 200, "rotated key accepted: {e}");
}
