//! The old path of recordings and streams, kept so that callers outside the API
//! modules (`lib.rs` merges [`router`], `openapi.rs` lists the handlers, `archive`
//! and `ws` import [`RecordingView`] and [`ledger`]) build unchanged while issue 19
//! moves them to [`super::recordings`], [`super::streams`] and
//! [`super::output_lifecycle`]. Holds nothing of its own; no API module may import
//! it (that is what brought back the meetings ↔ outputs circle). Delete it once
//! those four files name the new modules.

use axum::Router;

use crate::AppState;

pub(crate) use super::output_lifecycle::ledger;
pub use super::recordings::{
    __path_list_recordings, __path_start_recording, __path_stop_recording, list_recordings,
    start_recording, stop_recording, RecordedMediaView, RecordingView,
};
pub use super::streams::{
    __path_get_stream, __path_list_streams, __path_start_stream, __path_stop_stream, get_stream,
    list_streams, start_stream, stop_stream, RtmpDestination, RtmpDestinationView, StartStream,
    StreamView,
};

/// Both output routers, as the single router `lib.rs` merges today.
pub(crate) fn router() -> Router<AppState> {
    super::recordings::router().merge(super::streams::router())
}
