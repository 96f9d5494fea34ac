//! The media plane's policy: what every program of a meeting may show and how its
//! outputs are fed, as pure functions and values (issue 19).
//!
//! Owns the decisions that matter for privacy and for the outputs' shape:
//! - [`MeetingPolicy`]: the effective consent of each participant (commanded consent,
//!   the memo of values seen, the consent a publish carries), the public flag, the
//!   layout and the roster of one meeting, and from them whether a participant may be
//!   seen or heard in an audience's program ([`MeetingPolicy::admits`]), whether the
//!   program shows the slate, what each program shows ([`AudienceView`]) and whether
//!   both programs show the same thing ([`MeetingPolicy::programs_match`]);
//! - [`feed_source`]: whether a livestream feed takes the recording's encode;
//! - [`indicator`]: the recording/live indicator's text;
//! - [`PublisherWatch`]: publishers that stopped sending media, cameras going off and
//!   on, and the active speaker, as `tick(now, observations) -> actions`.
//!
//! Must not: touch GStreamer, read a clock (time is passed in, in milliseconds since
//! the media plane's epoch), do IO, or log. The GStreamer code in the rest of the crate
//! applies what these functions decide and decides nothing about consent itself.

mod consent;
mod watch;

#[cfg(test)]
mod tests;

pub use consent::{AudienceView, MeetingPolicy, Seat};
pub use watch::{Observation, PublisherWatch, WatchAction};

/// A camera that sent no video for this long counts as off (placeholder tile).
pub const CAMERA_OFF_AFTER_MS: u64 = 1500;

/// The settings the policy needs, taken from the media plane's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySettings {
    /// During non-public parts the recording shows the slate too
    /// (`StreamingSettings::slate_recording`).
    pub slate_recording: bool,
    /// Livestreams are held back (`StreamingSettings::delay.is_some()`); they then
    /// encode their own delayed program and never share the recording's encode.
    pub broadcast_delay: bool,
    /// A publisher that sent no media for longer than this is removed.
    pub media_timeout_ms: u64,
    /// A camera that sent no video for longer than this counts as off.
    pub camera_off_after_ms: u64,
}

impl Default for PolicySettings {
    /// The media plane's defaults: no slate on recordings, no delay, a 10 s media
    /// timeout, cameras off after [`CAMERA_OFF_AFTER_MS`].
    fn default() -> Self {
        PolicySettings {
            slate_recording: false,
            broadcast_delay: false,
            media_timeout_ms: 10_000,
            camera_off_after_ms: CAMERA_OFF_AFTER_MS,
        }
    }
}

/// Where a livestream feed (its video or its audio) takes its encode from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedSource {
    /// The recording's encoder (`Feed::share`): both programs show the same thing.
    Shared,
    /// The livestream's own encoder (`Feed::unshare`).
    Own,
    /// The own encoder, and stop listening to the recording's encoder, which is about
    /// to go (`Feed::drop_shared`).
    OwnDroppingShared,
}

/// Where a livestream feed of one kind (video or audio) takes its encode from.
///
/// - `programs_match`: [`MeetingPolicy::programs_match`];
/// - `recording_takes_encode`: a recording consumes the recording program's encoder of
///   this kind;
/// - `recording_encoder_exists`: that encoder exists (it may outlive its last
///   recording for a moment);
/// - `same_settings`: it encodes with the same settings as the livestream's own
///   encoder of this kind (otherwise the livestream cannot take its frames).
///
/// Shared only while a recording takes the encode, the programs match and the
/// settings agree; a recording encoder nobody records from is dropped; otherwise the
/// own encode. (Always an answer: every feed has a source; the caller skips feeds
/// without an own encoder before asking.)
pub fn feed_source(
    programs_match: bool,
    recording_takes_encode: bool,
    recording_encoder_exists: bool,
    same_settings: bool,
) -> FeedSource {
    let same = recording_takes_encode && programs_match;
    match recording_encoder_exists {
        true if same && same_settings => FeedSource::Shared,
        true if !recording_takes_encode => FeedSource::OwnDroppingShared,
        _ => FeedSource::Own,
    }
}

/// The indicator every program shows: `None` hides it; otherwise the same text on
/// all programs, so programs that could share an encode look the same.
pub fn indicator(recording: bool, streaming: bool) -> Option<&'static str> {
    match (recording, streaming) {
        (true, true) => Some("● REC · LIVE"),
        (true, false) => Some("● REC"),
        (false, true) => Some("● LIVE"),
        (false, false) => None,
    }
}

#[cfg(test)]
mod truth_tables {
    use super::*;

    #[test]
    fn feed_source_truth_table() {
        use FeedSource::*;
        // (programs_match, recording_takes_encode, recording_encoder_exists, same_settings)
        let table = [
            ((false, false, false, false), Own),
            ((false, false, false, true), Own),
            ((false, false, true, false), OwnDroppingShared),
            ((false, false, true, true), OwnDroppingShared),
            ((false, true, false, false), Own),
            ((false, true, false, true), Own),
            ((false, true, true, false), Own),
            ((false, true, true, true), Own),
            ((true, false, false, false), Own),
            ((true, false, false, true), Own),
            ((true, false, true, false), OwnDroppingShared),
            ((true, false, true, true), OwnDroppingShared),
            ((true, true, false, false), Own),
            ((true, true, false, true), Own),
            ((true, true, true, false), Own),
            ((true, true, true, true), Shared),
        ];
        for ((m, r, e, s), expected) in table {
            assert_eq!(feed_source(m, r, e, s), expected, "{:?}", (m, r, e, s));
        }
    }

    #[test]
    fn indicator_texts() {
        assert_eq!(indicator(true, true), Some("● REC · LIVE"));
        assert_eq!(indicator(true, false), Some("● REC"));
        assert_eq!(indicator(false, true), Some("● LIVE"));
        assert_eq!(indicator(false, false), None);
    }
}
