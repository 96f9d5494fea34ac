//! Compositing of a meeting's participants into program outputs.
//!
//! Owns: the layout engine (pure: participants + layout kind + canvas → rectangles),
//! and, from the compositor issue on, the program bin (video compositor + audio mixer
//! per output audience), overlays (name labels, slate, recording indicator) and the
//! consent gate on each input.
//!
//! Must not: do IO beyond GStreamer, know about HTTP or SQL.
//!
//! Status: the layout engine is here and tested; the GStreamer program bin and the
//! consent gates are not built yet.

pub mod layout;

pub use layout::{
    Canvas, LayoutEngine, LayoutKind, LayoutSettings, NonConsenting, Participant, Placement, Rect,
    TileContent,
};
