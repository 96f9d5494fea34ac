//! Compositing of a meeting's participants into program outputs.
//!
//! Owns: the layout engine (pure: participants + layout kind + canvas → rectangles),
//! the program bin (video compositor + audio mixer per output audience) with its
//! overlays (name labels, placeholder tiles, slate, recording indicator), the consent
//! gate on each input, and active speaker detection (pure, from audio levels).
//!
//! Must not: do IO beyond GStreamer, know about meetings' storage, HTTP or SQL. The
//! media plane decides who is in a program and with which consent; this crate only
//! enforces it in the pipeline.

pub mod gate;
pub mod layout;
pub mod program;
pub mod speaker;
#[cfg(feature = "test-support")]
pub mod testing;

pub use layout::{
    Canvas, LayoutEngine, LayoutKind, LayoutSettings, NonConsenting, Participant, Placement, Rect,
    TileContent,
};
pub use program::{Kind, LayoutChoice, Program, ProgramSettings, Scaler};
pub use speaker::{SpeakerDetector, SpeakerSettings};
