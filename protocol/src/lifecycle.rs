//! Forward-only lifecycle of a recording or a stream, as a pure transition function.

use serde::{Deserialize, Serialize};

/// Where a recording or stream is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Accepted by the API, not yet handed to the media plane.
    Requested,
    /// The media plane accepted the command and is building the output.
    Starting,
    /// Media is flowing into the output.
    Active,
    /// A stop was requested; the output is draining (EOS in flight).
    Stopping,
    /// The output ended cleanly. Terminal.
    Finished,
    /// The output ended with an error. Terminal.
    Failed,
}

/// What happened to an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputTrigger {
    /// The media plane accepted the start command.
    MediaAccepted,
    /// The media plane reports media flowing.
    MediaStarted,
    /// Someone asked to stop (API call, meeting end).
    StopRequested,
    /// The media plane reports the output drained and closed.
    MediaStopped,
    /// The media plane (or the control plane) gave up on the output.
    MediaFailed,
}

/// A trigger that does not apply to the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply {trigger:?} to an output that is {from:?}")]
pub struct InvalidTransition {
    /// State the output was in.
    pub from: OutputState,
    /// Trigger that was refused.
    pub trigger: OutputTrigger,
}

impl OutputState {
    /// All states, in lifecycle order.
    pub const ALL: [OutputState; 6] = [
        OutputState::Requested,
        OutputState::Starting,
        OutputState::Active,
        OutputState::Stopping,
        OutputState::Finished,
        OutputState::Failed,
    ];

    /// True for `Finished` and `Failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, OutputState::Finished | OutputState::Failed)
    }

    /// Stable lowercase name, as stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputState::Requested => "requested",
            OutputState::Starting => "starting",
            OutputState::Active => "active",
            OutputState::Stopping => "stopping",
            OutputState::Finished => "finished",
            OutputState::Failed => "failed",
        }
    }

    /// Inverse of [`OutputState::as_str`].
    pub fn parse(s: &str) -> Option<OutputState> {
        OutputState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The single transition function. Returns the next state, which may equal the
    /// current one for harmless repeats (a second stop while stopping), or an error.
    pub fn apply(self, trigger: OutputTrigger) -> Result<OutputState, InvalidTransition> {
        use OutputState::*;
        use OutputTrigger::*;
        let next = match (self, trigger) {
            (Requested, MediaAccepted) => Starting,
            // Events may overtake the reply to the start command; accept them forward.
            (Starting | Active | Stopping, MediaAccepted) => self,
            (Requested | Starting | Active, MediaStarted) => Active,
            (Stopping, MediaStarted) => Stopping,
            (Requested | Starting | Active | Stopping, StopRequested) => Stopping,
            (Requested | Starting | Active | Stopping, MediaStopped) => Finished,
            (Requested | Starting | Active | Stopping, MediaFailed) => Failed,
            (Finished | Failed, _) => {
                return Err(InvalidTransition {
                    from: self,
                    trigger,
                })
            }
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutputState::*;
    use OutputTrigger::*;

    const TRIGGERS: [OutputTrigger; 5] = [
        MediaAccepted,
        MediaStarted,
        StopRequested,
        MediaStopped,
        MediaFailed,
    ];

    fn rank(s: OutputState) -> u8 {
        match s {
            Requested => 0,
            Starting => 1,
            Active => 2,
            Stopping => 3,
            Finished | Failed => 4,
        }
    }

    #[test]
    fn happy_path() {
        let s = Requested.apply(MediaAccepted).unwrap();
        assert_eq!(s, Starting);
        let s = s.apply(MediaStarted).unwrap();
        assert_eq!(s, Active);
        let s = s.apply(StopRequested).unwrap();
        assert_eq!(s, Stopping);
        assert_eq!(
            s.apply(StopRequested).unwrap(),
            Stopping,
            "second stop is harmless"
        );
        assert_eq!(s.apply(MediaStopped).unwrap(), Finished);
    }

    #[test]
    fn never_moves_backwards_and_terminal_is_final() {
        for from in OutputState::ALL {
            for t in TRIGGERS {
                match from.apply(t) {
                    Ok(to) => assert!(rank(to) >= rank(from), "{from:?} --{t:?}--> {to:?}"),
                    Err(e) => {
                        assert!(from.is_terminal(), "{from:?} refused {t:?}");
                        assert_eq!(e, InvalidTransition { from, trigger: t });
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in OutputState::ALL {
            assert_eq!(OutputState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(OutputState::parse("bogus"), None);
    }
}
