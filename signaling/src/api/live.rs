//! HLS for citizens: `GET /live/{meeting_id}/…` serves the files the media plane's HLS
//! output writes (`ApiSettings::live_dir`). No token: a livestream is public (during
//! non-public parts it shows the slate). Cache headers a CDN can use: playlists live
//! for a second, segments never change. CORS open, so players on other sites work.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/live/{meeting_id}/{*path}", get(serve))
}

/// A path inside a meeting's presentation: at most two plain segments of
/// `[A-Za-z0-9_.-]`, not starting with a dot, ending in `.m3u8` or `.ts`.
fn content_type(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
    if !plain {
        return None;
    }
    if path.ends_with(".m3u8") {
        Some("application/vnd.apple.mpegurl")
    } else if path.ends_with(".ts") {
        Some("video/mp2t")
    } else {
        None
    }
}

async fn serve(
    state: axum::extract::State<AppState>,
    Path((meeting_id, path)): Path<(String, String)>,
) -> Response {
    let (Ok(meeting_id), Some(content_type)) = (Uuid::parse_str(&meeting_id), content_type(&path))
    else {
        return ApiError::NotFound("live file").into_response();
    };
    let file = state
        .settings()
        .live_dir
        .join(meeting_id.to_string())
        .join(&path);
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(_) => return ApiError::NotFound("live file").into_response(),
    };
    let cache = if content_type == "video/mp2t" {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=1"
    };
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn only_presentation_files_are_served() {
        assert_eq!(
            content_type("index.m3u8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(content_type("720p/seg00001.ts"), Some("video/mp2t"));
        for bad in [
            "../x.m3u8",
            "720p/../../etc.ts",
            ".hidden.m3u8",
            "a/b/c.ts",
            "720p/seg.mp4",
            "",
            "720p//seg.ts",
            "%2e%2e/x.ts",
        ] {
            assert_eq!(content_type(bad), None, "{bad}");
        }
    }
}
