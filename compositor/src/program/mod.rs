//! The program: one video compositor and one audio mixer for one output audience
//! (the recording audience or the livestream audience), fed by the participants'
//! decoded media through consent gates.
//!
//! ```text
//!  participant video ─▶ queue ─▶ [gate] ─▶ textoverlay (name) ─▶┐
//!  placeholder (initials / "not recorded") ─────────────────────▶│ compositor ─▶ I420 ─▶ indicator ─▶ tee ─▶ outputs
//!  slate (non-public part, on demand) ──────────────────────────▶│
//!  background (live clock, invisible) ──────────────────────────▶┘
//!  participant audio ─▶ queue ─▶ [gate] ─▶┐
//!  silence (live clock) ──────────────────▶│ audiomixer ─▶ S16LE 48 kHz stereo ─▶ tee ─▶ outputs
//! ```
//!
//! Three layers:
//! - [`settings`](ProgramSettings): what the program should look like (plain values);
//! - [`scene`]: the pure decision of what the bin shows, from the participants, the
//!   layout choice, the active speaker and the slate — placements, live video or a
//!   card, labels, who is heard ([`scene::plan`]);
//! - `bin`: the [`Program`], the GStreamer adapter that builds the mixers and each
//!   participant's branch, and applies a [`scene::ScenePlan`] by diffing it against
//!   what it applied before.
//!
//! Both mixers run live with a latency setting, so an input that stalls is left
//! behind instead of freezing the program. A participant without consent for the
//! program's purpose contributes nothing: the gate drops their buffers before the
//! mixer input, and the mixer pads are muted / made transparent in the same call, so
//! buffers already queued inside a mixer are not used either. Scaling happens in the
//! compositor's input pads (keep aspect ratio), so there is exactly one conversion
//! per input and the output is the I420 the encoders take.
//!
//! Must not: decide who consented (the media plane tells the program), do IO beyond
//! GStreamer.

mod bin;
pub mod scene;
mod settings;

pub use bin::Program;
pub use scene::{escape_markup, initials, LayoutChoice};
pub use settings::{ProgramSettings, Scaler};

/// Media kinds of a program's inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Raw video.
    Video,
    /// Raw audio.
    Audio,
}
