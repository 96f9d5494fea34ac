//! HLS for citizens: `GET /live/{meeting_id}/…` serves the files the media plane's HLS
//! output writes (`ApiSettings::live_dir`). No token: a livestream is public (during
//! non-public parts it shows the slate). Cache headers a CDN can use: playlists live
//! for a second, segments never change. CORS open, so players on other sites work.
//!
//! Media playlists get the meeting's agenda chapters marked while it was public (see
//! [`crate::disclosure::PublicHistory`]; a chapter marked during a non-public part is
//! never shown to citizens, not even after it) as `EXT-X-DATERANGE` tags
//! (class `de.gremium.chapter`, the title in `X-TITLE`) and an
//! `EXT-X-PROGRAM-DATE-TIME` on their first segment, which anchors the chapters'
//! dates on the media timeline. The first segment's date is the wall-clock time its
//! file was closed minus its duration (the sink writes no dates itself). Rewritten
//! playlists are cached until the file or the chapters change.
//!
//! Must not: write into the live directory (the media plane owns it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::SecondsFormat;
use gremium_storage::Chapter;
use uuid::Uuid;

use crate::disclosure::PublicHistory;
use crate::error::ApiError;
use crate::{to_datetime, AppState};

/// File name of every media playlist the media plane writes.
const PLAYLIST: &str = "index.m3u8";

/// What the live routes keep in memory: each meeting's chapters (loaded on first
/// use, dropped when a chapter is marked), the rewritten media playlists, and the
/// segments players fetch (every viewer fetches each new segment within a second or
/// two; from memory that costs no file system call).
#[derive(Default)]
pub struct LiveState {
    chapters: Mutex<HashMap<Uuid, Arc<Vec<Chapter>>>>,
    playlists: Mutex<HashMap<PathBuf, CachedPlaylist>>,
    segments: Mutex<SegmentCache>,
}

/// Most bytes of segments kept in memory (oldest dropped first).
const SEGMENT_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Segments by path, in insertion order for eviction.
#[derive(Default)]
struct SegmentCache {
    by_path: HashMap<PathBuf, Bytes>,
    order: std::collections::VecDeque<PathBuf>,
    bytes: usize,
}

impl SegmentCache {
    fn insert(&mut self, path: PathBuf, body: Bytes) {
        if body.len() > SEGMENT_CACHE_BYTES / 4 || self.by_path.contains_key(&path) {
            return;
        }
        self.bytes += body.len();
        self.order.push_back(path.clone());
        self.by_path.insert(path, body);
        while self.bytes > SEGMENT_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.by_path.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

struct CachedPlaylist {
    modified: SystemTime,
    len: u64,
    /// When the file was last looked at.
    checked: std::time::Instant,
    chapters: Arc<Vec<Chapter>>,
    body: Bytes,
}

/// A playlist served from memory is re-checked against its file at most this often
/// (players may see it this much later; its `max-age` is a second anyway).
const PLAYLIST_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

impl LiveState {
    /// A chapter was marked: the next playlist request reloads the meeting's chapters.
    pub fn chapters_changed(&self, meeting_id: Uuid) {
        self.chapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&meeting_id);
    }

    /// Forget a meeting's cached playlists and segments (a new stream starts; its
    /// files reuse the names).
    pub fn forget_meeting(&self, meeting_id: Uuid, live_dir: &std::path::Path) {
        let dir = live_dir.join(meeting_id.to_string());
        self.playlists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|path, _| !path.starts_with(&dir));
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let stale: Vec<PathBuf> = segments
            .by_path
            .keys()
            .filter(|p| p.starts_with(&dir))
            .cloned()
            .collect();
        for path in stale {
            if let Some(b) = segments.by_path.remove(&path) {
                segments.bytes -= b.len();
            }
        }
        segments.order.retain(|p| !p.starts_with(&dir));
    }

    /// A segment, from memory when it was read before. Only a segment listed in its
    /// rendition's playlist (as last served) is complete and gets cached: the sink
    /// writes the next one in place before it lists it.
    async fn segment(&self, file: PathBuf) -> Option<Bytes> {
        if let Some(b) = self
            .segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_path
            .get(&file)
        {
            return Some(b.clone());
        }
        let body = Bytes::from(tokio::fs::read(&file).await.ok()?);
        let name = file.file_name()?.to_str()?;
        let listed = self
            .playlists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&file.with_file_name(PLAYLIST))
            .is_some_and(|p| p.body.split(|b| *b == b'\n').any(|l| l == name.as_bytes()));
        if listed {
            self.segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(file, body.clone());
        }
        Some(body)
    }

    async fn chapters(&self, state: &AppState, meeting_id: Uuid) -> Arc<Vec<Chapter>> {
        if let Some(c) = self
            .chapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&meeting_id)
        {
            return c.clone();
        }
        let loaded = match public_chapters(state, meeting_id).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(error = %e, %meeting_id, "chapters not loaded for the live playlist");
                return Arc::new(Vec::new());
            }
        };
        self.chapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(meeting_id)
            .or_insert(loaded)
            .clone()
    }
}

/// A meeting's chapters that were marked while it was public, in order.
async fn public_chapters(
    state: &AppState,
    meeting_id: Uuid,
) -> Result<Vec<Chapter>, gremium_storage::StorageError> {
    let history = PublicHistory::from_ledger(&state.db().public_history(meeting_id).await?);
    let mut chapters = state.db().list_chapters(meeting_id).await?;
    chapters.retain(|c| history.chapter_was_public(c.id));
    Ok(chapters)
}

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
    let media_playlist = content_type != "video/mp2t" && path.contains('/');
    let body = if media_playlist {
        media_playlist_body(&state, meeting_id, file).await
    } else if content_type == "video/mp2t" {
        state.live().segment(file).await
    } else {
        tokio::fs::read(&file).await.ok().map(Bytes::from)
    };
    let Some(body) = body else {
        return ApiError::NotFound("live file").into_response();
    };
    let cache = if content_type == "video/mp2t" {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=1"
    };
    let mut response = (StatusCode::OK, Body::from(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A media playlist with the meeting's chapters, from the cache while neither the
/// file nor the chapters changed.
async fn media_playlist_body(state: &AppState, meeting_id: Uuid, file: PathBuf) -> Option<Bytes> {
    let live = state.live();
    let chapters = live.chapters(state, meeting_id).await;
    let fresh = |c: &CachedPlaylist| {
        c.checked.elapsed() < PLAYLIST_RECHECK && Arc::ptr_eq(&c.chapters, &chapters)
    };
    if let Some(c) = live
        .playlists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&file)
        .filter(|c| fresh(c))
    {
        return Some(c.body.clone());
    }
    let meta = tokio::fs::metadata(&file).await.ok()?;
    let (modified, len) = (meta.modified().ok()?, meta.len());
    if let Some(c) = live
        .playlists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&file)
    {
        if c.modified == modified && c.len == len && Arc::ptr_eq(&c.chapters, &chapters) {
            c.checked = std::time::Instant::now();
            return Some(c.body.clone());
        }
    }
    let text = tokio::fs::read_to_string(&file).await.ok()?;
    let first = first_segment(&text);
    let mut first_date_ms = None;
    if let Some((uri, duration)) = first {
        let segment = file.parent()?.join(uri);
        if let Some(closed) = tokio::fs::metadata(&segment)
            .await
            .ok()
            .and_then(|m| m.modified().ok())
        {
            let closed_ms = closed
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64;
            first_date_ms = Some(closed_ms - (duration * 1000.0).round() as i64);
        }
    }
    let body = Bytes::from(with_chapters(&text, first_date_ms, &chapters));
    live.playlists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            file,
            CachedPlaylist {
                modified,
                len,
                checked: std::time::Instant::now(),
                chapters,
                body: body.clone(),
            },
        );
    Some(body)
}

/// URI and duration (seconds) of a media playlist's first segment.
fn first_segment(text: &str) -> Option<(&str, f64)> {
    let mut duration = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            return Some((line, duration?));
        }
    }
    None
}

fn date(ms: i64) -> String {
    to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The playlist with `EXT-X-PROGRAM-DATE-TIME` (when the first segment's date is
/// known) and one `EXT-X-DATERANGE` per chapter before its first segment. A chapter
/// ends where the next begins. Without a date nothing is added: RFC 8216 requires a
/// program date for date ranges.
fn with_chapters(text: &str, first_date_ms: Option<i64>, chapters: &[Chapter]) -> String {
    let Some(first_ms) = first_date_ms else {
        return text.to_string();
    };
    let mut tags = String::new();
    for (i, c) in chapters.iter().enumerate() {
        // Quoted strings in HLS may hold neither double quotes nor line breaks.
        let title: String = c
            .title
            .chars()
            .map(|ch| match ch {
                '"' => '\u{201d}',
                ch if ch.is_control() => ' ',
                ch => ch,
            })
            .collect();
        tags.push_str(&format!(
            "#EXT-X-DATERANGE:ID=\"chapter-{}\",CLASS=\"de.gremium.chapter\",START-DATE=\"{}\"",
            c.id,
            date(c.at)
        ));
        if let Some(next) = chapters.get(i + 1) {
            tags.push_str(&format!(",END-DATE=\"{}\"", date(next.at.max(c.at))));
        }
        tags.push_str(&format!(",X-TITLE=\"{title}\"\n"));
    }
    tags.push_str(&format!("#EXT-X-PROGRAM-DATE-TIME:{}\n", date(first_ms)));
    let mut out = String::with_capacity(text.len() + tags.len());
    let mut inserted = false;
    for line in text.split_inclusive('\n') {
        if !inserted && line.trim_start().starts_with("#EXTINF:") {
            out.push_str(&tags);
            inserted = true;
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const WRITTEN: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXT-X-TARGETDURATION:1\n\n#EXTINF:1,\nseg00007.ts\n#EXTINF:0.96,\nseg00008.ts\n";

    fn chapter(at: i64, title: &str) -> Chapter {
        Chapter {
            id: Uuid::from_u128(at as u128),
            meeting_id: Uuid::nil(),
            title: title.into(),
            at,
            created_by: "m".into(),
        }
    }

    #[test]
    fn chapters_become_date_ranges_anchored_on_the_first_segment() {
        assert_eq!(first_segment(WRITTEN), Some(("seg00007.ts", 1.0)));
        let at = 1_795_850_000_000;
        let out = with_chapters(
            WRITTEN,
            Some(at),
            &[
                chapter(at - 5_000, "TOP 1"),
                chapter(at + 500, "TOP 2 \"Haushalt\""),
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        let extinf = lines.iter().position(|l| l.starts_with("#EXTINF")).unwrap();
        assert_eq!(
            lines[extinf - 1],
            "#EXT-X-PROGRAM-DATE-TIME:2026-11-28T07:13:20.000Z"
        );
        assert!(lines[extinf - 3].starts_with("#EXT-X-DATERANGE:ID=\"chapter-"));
        assert!(lines[extinf - 3].contains("START-DATE=\"2026-11-28T07:13:15.000Z\",END-DATE=\"2026-11-28T07:13:20.500Z\",X-TITLE=\"TOP 1\""), "{out}");
        assert!(
            lines[extinf - 2].ends_with("X-TITLE=\"TOP 2 \u{201d}Haushalt\u{201d}\""),
            "{out}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
                .count(),
            1
        );
        // Everything else is as written.
        let stripped: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("#EXT-X-DATERANGE") && !l.starts_with("#EXT-X-PROGRAM"))
            .collect();
        assert_eq!(stripped, WRITTEN.lines().collect::<Vec<_>>());
        // No date, no ranges (RFC 8216 4.3.2.7).
        assert_eq!(with_chapters(WRITTEN, None, &[chapter(1, "x")]), WRITTEN);
        // A playlist without segments yet gets nothing.
        assert_eq!(first_segment("#EXTM3U\n#EXT-X-TARGETDURATION:1\n"), None);
    }

    #[test]
    fn the_segment_cache_keeps_at_most_its_budget_oldest_out_first() {
        let mut c = SegmentCache::default();
        let chunk = Bytes::from(vec![0u8; SEGMENT_CACHE_BYTES / 5]);
        for i in 0..7 {
            c.insert(
                PathBuf::from(format!("/l/m/360p/seg{i:05}.ts")),
                chunk.clone(),
            );
        }
        assert!(c.bytes <= SEGMENT_CACHE_BYTES);
        assert_eq!(c.by_path.len(), 5);
        assert!(!c
            .by_path
            .contains_key(&PathBuf::from("/l/m/360p/seg00000.ts")));
        assert!(c
            .by_path
            .contains_key(&PathBuf::from("/l/m/360p/seg00006.ts")));
        // Too large for the cache: not kept.
        c.insert(
            PathBuf::from("/big.ts"),
            Bytes::from(vec![0u8; SEGMENT_CACHE_BYTES / 2]),
        );
        assert!(!c.by_path.contains_key(&PathBuf::from("/big.ts")));
    }

    #[test]
    fn a_new_stream_drops_the_meetings_cached_files() {
        let live = LiveState::default();
        let (m, other) = (Uuid::new_v4(), Uuid::new_v4());
        let root = PathBuf::from("/data/live");
        for id in [m, other] {
            let seg = root.join(id.to_string()).join("360p/seg00003.ts");
            live.segments
                .lock()
                .unwrap()
                .insert(seg, Bytes::from_static(b"old"));
        }
        live.forget_meeting(m, &root);
        let segments = live.segments.lock().unwrap();
        assert_eq!(segments.by_path.len(), 1);
        assert!(segments
            .by_path
            .keys()
            .all(|p| p.starts_with(root.join(other.to_string()))));
        assert_eq!(segments.bytes, 3);
        assert_eq!(segments.order.len(), 1);
    }
}
