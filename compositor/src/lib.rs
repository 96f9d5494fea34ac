//! Compositing of a meeting's participants into program outputs.
//!
//! Owns: the layout engine (pure: participants + layout kind + canvas → rectangles),
//! the program bin (video compositor + audio mixer per output audience), overlays
//! (name labels, slate, recording indicator) and the consent gate on each input.
//!
//! Must not: do IO beyond GStreamer, know about HTTP or SQL.
//!
//! Status: empty. The compositor issue fills it; nothing here is wired yet.
