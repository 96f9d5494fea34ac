//! Shared helpers for the end-to-end tests. A test starts a real Gremium in process
//! (`app`: fake media plane; `media`: the GStreamer one), acts through the typed
//! client (`client`: meetings, participants, consent, recordings, streams), starts
//! publishers (`publishers`), reads events (`events`) and decodes what came out
//! (`decode`). `stage` bundles the common scenes; `servers` runs S3 and RTMP peers;
//! `serve` runs the real `gremium serve` binary (kill -9, restart); `cdp` drives
//! Chromium; `netns` isolates a test to loopback; `watchdog` aborts a hung test with
//! backtraces. How to write a new test: docs/testing.md.

#![allow(dead_code, unused_imports)] // each test binary uses a part

pub mod app;
pub mod cdp;
pub mod client;
pub mod decode;
pub mod events;
pub mod media;
pub mod netns;
pub mod publishers;
pub mod serve;
pub mod servers;
pub mod stage;
pub mod watchdog;

pub use app::*;
pub use client::*;
pub use decode::*;
pub use events::*;
pub use media::*;
pub use publishers::*;
pub use servers::*;
pub use stage::*;
