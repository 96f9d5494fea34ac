//! The pages people use in a meeting: `GET /join/{meeting_id}?token=JOIN_TOKEN` for
//! participants (camera and microphone preview, the consent dialog, the recording and
//! livestream indicator, publishing over WHIP); `GET /console/{meeting_id}?token=…` for
//! the chair (participants with media and consent, recording, HLS stream, public switch
//! with reason, chapters, the ledger); `GET /assets/whip.js`, the WHIP publisher shared
//! with `/publish` (see [`super::whip`]); `GET /archive?token=…` for archivists and
//! the public (search, play a recording with its chapters and who appears in it,
//! download; legal hold and deletion for archivists); `GET /auth/callback` and
//! `GET /assets/signin.js`, OIDC sign-in for the console and the archive (see
//! [`crate::signin`]).
//!
//! Owns: the pages' HTML (`assets/join.html`, `assets/console.html`,
//! `assets/archive.html`), the consent texts
//! shown in them ([`ConsentTexts`], from `[pages]` in the config) and how they reach the
//! page (a JSON data block, escaped so it cannot end the script element), the pages'
//! security headers (our origin only — plus, with OIDC sign-in, the provider's token
//! endpoint for `fetch` — and no referrer: the token or code is in the URL).
//!
//! Must not: change anything or read anything beyond the meeting's existence (the
//! pages are public HTML; everything else they show or do goes through the API with the
//! token the user holds, which enforces roles), or load code from third parties
//! (scripts are inline or our own assets).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::error::ApiResult;
use crate::signin::SignInClient;
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/join/{meeting_id}", get(join_page))
        .route("/console/{meeting_id}", get(console_page))
        .route("/archive", get(archive_page))
        .route("/assets/whip.js", get(whip_js))
        .route("/auth/callback", get(callback_page))
        .route("/assets/signin.js", get(signin_js))
}

/// A text in both languages of the pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bilingual {
    /// German.
    pub de: String,
    /// English.
    pub en: String,
}

impl Bilingual {
    fn new(de: &str, en: &str) -> Bilingual {
        Bilingual {
            de: de.into(),
            en: en.into(),
        }
    }
}

/// What the consent dialog says besides the retention period (which is the meeting's
/// own `retention_days`): who is responsible and why recordings and livestreams are
/// made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentTexts {
    /// The controller (GDPR Art. 4 No. 7): name and address of the body holding the
    /// meetings, in one line.
    pub controller: String,
    /// Why meetings are recorded.
    pub purpose_recording: Bilingual,
    /// Why meetings are streamed live.
    pub purpose_streaming: Bilingual,
}

impl Default for ConsentTexts {
    fn default() -> Self {
        ConsentTexts {
            controller: "Die Stelle, die diese Sitzung durchführt (Betreiber: bitte \
                         pages.controller einstellen) / The body holding this meeting \
                         (operators: please set pages.controller)"
                .into(),
            purpose_recording: Bilingual::new(
                "Die Sitzung wird aufgezeichnet, damit das Protokoll erstellt und die \
                 Sitzung im Archiv nachvollzogen werden kann.",
                "The meeting is recorded so that the minutes can be written and the \
                 meeting can be reviewed in the archive.",
            ),
            purpose_streaming: Bilingual::new(
                "Der öffentliche Teil der Sitzung wird live im Internet übertragen, \
                 damit Bürgerinnen und Bürger ihn verfolgen können.",
                "The public part of the meeting is streamed live on the internet so \
                 that citizens can follow it.",
            ),
        }
    }
}

/// Our origin only (`'self'` covers the meeting WebSocket); inline script and style
/// are the page's own; the camera preview is a `MediaStream`, not a URL; the archive's
/// recordings and posters are fetched with the token and shown as `blob:` URLs; the
/// console's program preview is hls.js, which feeds a `blob:` MediaSource and may run
/// its demuxer in a `blob:` worker. With OIDC sign-in the staff pages and the callback
/// may also `fetch` the provider's token endpoint (its origin only, see [`csp`]).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'unsafe-inline'; connect-src 'self'; media-src 'self' blob: \
                        mediastream:; worker-src 'self' blob:; img-src 'self' data: blob:; \
                        base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// [`PAGE_CSP`], with `connect_origin` (an `http(s)://host[:port]` origin) added to
/// `connect-src`.
fn csp(connect_origin: Option<&str>) -> String {
    match connect_origin {
        Some(origin) => PAGE_CSP.replacen(
            "connect-src 'self'",
            &format!("connect-src 'self' {origin}"),
            1,
        ),
        None => PAGE_CSP.to_string(),
    }
}

/// The marker in a page's HTML that [`page`] replaces with its configuration (JSON).
const CONFIG_MARKER: &str = "{/*PAGE_CONFIG*/}";

/// `value` as JSON that is safe inside `<script type="application/json">`: `<`, `>`
/// and `&` as `\u00XX` escapes (still the same JSON), so a configured text containing
/// `</script>` cannot end the element.
fn json_for_script(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `html` with its configuration filled in, and the headers every page gets.
fn page(html: &str, config: &impl Serialize, camera: bool) -> Response {
    page_with_csp(html, config, camera, PAGE_CSP.to_string())
}

fn page_with_csp(html: &str, config: &impl Serialize, camera: bool, csp: String) -> Response {
    let body = html.replacen(CONFIG_MARKER, &json_for_script(config), 1);
    let permissions = if camera {
        "camera=(self), microphone=(self), display-capture=(), geolocation=()"
    } else {
        "camera=(), microphone=(), display-capture=(), geolocation=()"
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The token is in the URL: never send it anywhere as a referrer.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::HeaderName::from_static("permissions-policy"),
                permissions.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct JoinConfig<'a> {
    consent: &'a ConsentTexts,
}

/// The participant's page. The meeting must exist (else 404); the token is checked by
/// the API calls the page makes.
async fn join_page(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    super::watch::find_meeting(&state, &id).await?;
    let config = JoinConfig {
        consent: &state.settings().consent_texts,
    };
    Ok(page(include_str!("../../assets/join.html"), &config, true))
}

/// How a staff page signs in: the OIDC client when configured (`sign_in`), or that
/// sign-in is configured but the provider cannot be reached right now
/// (`sign_in_unavailable`); neither means local tokens (`?token=`) only.
#[derive(Serialize, Default)]
struct StaffConfig {
    sign_in: Option<SignInClient>,
    sign_in_unavailable: bool,
}

/// A staff page (or the callback) with its sign-in configuration and a CSP that lets
/// it reach the token endpoint.
async fn staff_page(state: &AppState, html: &str) -> Response {
    let mut config = StaffConfig::default();
    match state.auth().sign_in_client().await {
        None => {}
        Some(Ok(client)) => config.sign_in = Some(client),
        Some(Err(_)) => config.sign_in_unavailable = true,
    }
    let origin = config.sign_in.as_ref().and_then(SignInClient::token_origin);
    if config.sign_in.is_some() && origin.is_none() {
        // The browser could not reach it anyway; say so instead of a broken flow.
        config.sign_in = None;
        config.sign_in_unavailable = true;
    }
    page_with_csp(html, &config, false, csp(origin.as_deref()))
}

/// The moderator console. The meeting must exist (else 404); the moderator's token
/// (`?token=`, or from OIDC sign-in) is checked by every API call it makes.
async fn console_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    super::watch::find_meeting(&state, &id).await?;
    Ok(staff_page(&state, include_str!("../../assets/console.html")).await)
}

/// The archive browser. Nothing to look up: the token (`?token=`, or from OIDC
/// sign-in) is checked by every API call it makes, and every recording it reads is
/// logged by the archive API as `archive_access`.
async fn archive_page(State(state): State<AppState>) -> Response {
    staff_page(&state, include_str!("../../assets/archive.html")).await
}

/// Where the provider sends the browser back (`redirect_uri`): the page checks
/// `state`, redeems the code with its PKCE verifier, checks the ID token's `nonce`,
/// keeps the access token in `sessionStorage` and returns to the page the sign-in
/// started from (a same-origin path only). See [`crate::signin`].
async fn callback_page(State(state): State<AppState>) -> Response {
    staff_page(&state, include_str!("../../assets/callback.html")).await
}

/// A script asset, revalidated on every load (it changes with the server's version).
fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The sign-in script shared by the console, the archive and the callback.
async fn signin_js() -> Response {
    script(include_str!("../../assets/signin.js"))
}

/// The WHIP publisher (`gremiumWhip.publish`), used by `/join` and `/publish`.
async fn whip_js() -> Response {
    script(include_str!("../../assets/whip.js"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_texts_cannot_end_the_script_element() {
        let texts = ConsentTexts {
            controller: "</script><script>alert(1)</script> & Co".into(),
            ..ConsentTexts::default()
        };
        let html = "<script type=\"application/json\">{/*PAGE_CONFIG*/}</script>";
        let out = html.replacen(CONFIG_MARKER, &json_for_script(&texts), 1);
        assert_eq!(out.matches("</script>").count(), 1, "{out}");
        assert!(!out.contains('&'), "{out}");
        let json = out
            .strip_prefix("<script type=\"application/json\">")
            .and_then(|s| s.strip_suffix("</script>"))
            .unwrap();
        let back: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back["controller"], texts.controller);
    }

    #[test]
    fn the_pages_carry_their_config_marker() {
        for html in [
            include_str!("../../assets/join.html"),
            include_str!("../../assets/console.html"),
            include_str!("../../assets/archive.html"),
            include_str!("../../assets/callback.html"),
        ] {
            assert!(html.contains(CONFIG_MARKER));
        }
    }

    #[test]
    fn the_token_endpoint_origin_joins_connect_src_only() {
        assert_eq!(csp(None), PAGE_CSP);
        let c = csp(Some("https://id.example"));
        assert!(c.contains("connect-src 'self' https://id.example;"), "{c}");
        assert!(c.contains("form-action 'none'"), "{c}");
    }
}
