//! The pages people use in a meeting: `GET /join/{meeting_id}?token=JOIN_TOKEN` for
//! participants (camera and microphone preview, the consent dialog, the recording and
//! livestream indicator, publishing over WHIP); `GET /console/{meeting_id}?token=…` for
//! the chair (participants with media and consent, recording, HLS stream, public switch
//! with reason, chapters, the ledger); `GET /assets/whip.js`, the WHIP publisher shared
//! with `/publish` (see [`super::whip`]); `GET /archive?token=…` for archivists and
//! the public (search, play a recording with its chapters and who appears in it,
//! download; legal hold and deletion for archivists).
//!
//! Owns: the pages' HTML (`assets/join.html`, `assets/console.html`,
//! `assets/archive.html`), the consent texts
//! shown in them ([`ConsentTexts`], from `[pages]` in the config) and how they reach the
//! page (a JSON data block, escaped so it cannot end the script element), the pages'
//! security headers (our origin only, no referrer: the token is in the URL).
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
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/join/{meeting_id}", get(join_page))
        .route("/console/{meeting_id}", get(console_page))
        .route("/archive", get(archive_page))
        .route("/assets/whip.js", get(whip_js))
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
/// its demuxer in a `blob:` worker.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'unsafe-inline'; connect-src 'self'; media-src 'self' blob: \
                        mediastream:; worker-src 'self' blob:; img-src 'self' data: blob:; \
                        base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (
                header::HeaderName::from_static("permissions-policy"),
                permissions,
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

/// The moderator console. The meeting must exist (else 404); the moderator's token
/// (`?token=` until OIDC sign-in comes) is checked by every API call it makes.
async fn console_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    super::watch::find_meeting(&state, &id).await?;
    Ok(page(include_str!("../../assets/console.html"), &(), false))
}

/// The archive browser. Nothing to look up: the token (`?token=` until OIDC sign-in
/// comes) is checked by every API call it makes, and every recording it reads is
/// logged by the archive API as `archive_access`.
async fn archive_page() -> Response {
    page(include_str!("../../assets/archive.html"), &(), false)
}

/// The WHIP publisher (`gremiumWhip.publish`), used by `/join` and `/publish`.
async fn whip_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../assets/whip.js"),
    )
        .into_response()
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
        assert!(include_str!("../../assets/join.html").contains(CONFIG_MARKER));
    }
}
