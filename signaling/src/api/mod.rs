//! REST handlers, one module per resource; each exposes `router()`.

pub mod archive;
pub mod audit;
pub mod chapters;
pub mod cluster;
pub mod live;
pub mod meetings;
pub mod output_lifecycle;
pub mod pages;
pub mod participants;
pub mod recordings;
pub mod streams;
pub mod watch;
pub mod whip;
pub mod ws;
