//! The real media plane in process: a Gremium whose `AppState` drives
//! `gremium_mediaplane::GstMediaPlane` (loopback ICE only), recordings spooled and
//! stored under a directory of the test's own.
//!
//! Owns: the media plane's settings for tests. Must not: start publishers or make
//! requests (`publishers.rs`, `client.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use gremium_mediaplane::{GstMediaPlane, MediaPlaneSettings};
use gremium_pipelines::webrtc::IceSettings;
use gremium_signaling::{ApiSettings, AppState, Authenticator};

use super::app::{auth_settings, fresh_db, Backend, TestApp};
use super::watchdog;

/// An in-process Gremium with the real GStreamer media plane (loopback ICE only).
pub async fn spawn_with_gst_media(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
) -> (TestApp, GstMediaPlane) {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    spawn_with_gst_media_in(media_timeout, max_publishers, program, dir).await
}

/// As [`spawn_with_gst_media`], keeping recordings in `dir` (spool in `dir/spool`,
/// the object store in `dir/objects`).
pub async fn spawn_with_gst_media_in(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
) -> (TestApp, GstMediaPlane) {
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_with_gst_media_store(media_timeout, max_publishers, program, dir, store).await
}

/// As [`spawn_with_gst_media_store`], with the given livestream settings.
pub async fn spawn_with_gst_media_streaming(
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    streaming: gremium_mediaplane::StreamingSettings,
) -> (TestApp, GstMediaPlane) {
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_gst(
        Duration::from_secs(10),
        10,
        program,
        dir,
        store,
        streaming,
        loopback_ice(),
    )
    .await
}

/// Loopback-only ICE, as every test media plane uses unless it says otherwise.
fn loopback_ice() -> IceSettings {
    IceSettings {
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..Default::default()
    }
}

/// As [`spawn_with_gst_media`] with the media plane's ICE settings `ice`.
pub async fn spawn_with_gst_media_ice(ice: IceSettings) -> (TestApp, GstMediaPlane) {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(gremium_storage::LocalStore::new(dir.join("objects")));
    spawn_gst(
        Duration::from_secs(10),
        10,
        Default::default(),
        dir,
        store,
        Default::default(),
        ice,
    )
    .await
}

/// As [`spawn_with_gst_media_in`], storing recordings in `store`.
pub async fn spawn_with_gst_media_store(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    store: Arc<dyn gremium_storage::ObjectStore>,
) -> (TestApp, GstMediaPlane) {
    spawn_gst(
        media_timeout,
        max_publishers,
        program,
        dir,
        store,
        Default::default(),
        loopback_ice(),
    )
    .await
}

async fn spawn_gst(
    media_timeout: Duration,
    max_publishers: usize,
    program: gremium_compositor::ProgramSettings,
    dir: std::path::PathBuf,
    store: Arc<dyn gremium_storage::ObjectStore>,
    streaming: gremium_mediaplane::StreamingSettings,
    ice: IceSettings,
) -> (TestApp, GstMediaPlane) {
    watchdog::arm();
    let db = fresh_db(Backend::Sqlite).await;
    let vault = gremium_storage::Vault::new(gremium_storage::crypto::MasterKey::generate(), store);
    let (sink, events) = gremium_signaling::event_channel();
    let media = GstMediaPlane::new(
        MediaPlaneSettings {
            ice,
            dot_dir: std::env::temp_dir().join("gremium-whip-dot"),
            gather_timeout: Duration::from_secs(5),
            media_timeout,
            max_publishers,
            program,
            recordings_dir: dir.join("spool"),
            // The default's order (256 MiB) would make the tests depend on the
            // machine's free space; the spool-disk test needs a check to trip.
            recordings_min_free: 1024 * 1024,
            store: vault.store().clone(),
            live_dir: dir.join("live"),
            streaming,
            recording: Default::default(),
        },
        sink.clone(),
    )
    .unwrap();
    let auth = Authenticator::new(auth_settings(None));
    let api = ApiSettings {
        max_body_bytes: 16 * 1024,
        live_dir: dir.join("live"),
        ..Default::default()
    };
    let state = AppState::new(
        db.clone(),
        auth.clone(),
        Arc::new(media.clone()),
        vault.clone(),
        api,
        gremium_signaling::system_clock(),
    );
    tokio::spawn(gremium_signaling::apply_media_events(state.clone(), events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gremium_signaling::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (fake_sink, _) = gremium_signaling::event_channel();
    let app = TestApp {
        base: format!("http://{addr}"),
        addr,
        db,
        fake: gremium_signaling::media::fake::FakeMediaPlane::new(fake_sink), // unused here
        auth,
        vault,
        state,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    };
    (app, media)
}

/// A 640x360@15 program: small enough for quick tests on real pipelines.
pub fn small_program() -> gremium_compositor::ProgramSettings {
    gremium_compositor::ProgramSettings {
        canvas: gremium_compositor::Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        ..Default::default()
    }
}
