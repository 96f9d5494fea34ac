//! The cost model: what a meeting costs a media node, in cost units (pure).
//!
//! Owns: the units per piece of media work ([`CostModel`]), the counts of those
//! pieces in a meeting ([`MeetingLoad`]), and the reference meeting whose cost a
//! placement reserves. One unit is 1 % of one core of the machine `bench/capacity.sh`
//! measured on; a node's capacity is in the same units.
//!
//! Must not: measure anything or know which node runs what.

use serde::{Deserialize, Serialize};

// The defaults were measured with bench/capacity.sh on a 2-core machine
// (docs/sizing.md): 1 unit = 1 % of one core, each item good to about ±5 units; the
// machine was busy during the run, so re-measure on an idle one before relying on them.

/// Units per decoded publisher (WebRTC depayload + decode + scale into the programs).
///
pub const DEFAULT_PUBLISHER_UNITS: u32 = 5;
/// Units per program (one audience's compositor, 720p).
pub const DEFAULT_PROGRAM_UNITS: u32 = 11;
/// Units per 720p H.264 encode.
pub const DEFAULT_ENCODE_720P_UNITS: u32 = 29;
/// Units per 360p H.264 encode.
pub const DEFAULT_ENCODE_360P_UNITS: u32 = 9;
/// Units per RTMP push (mux and send of an existing encode).
pub const DEFAULT_RTMP_PUSH_UNITS: u32 = 7;
/// A 2-core media node's capacity: 80 % of its cores less 10 units of headroom (see
/// [`default_capacity`] for other machines).
pub const DEFAULT_NODE_CAPACITY: u32 = 150;

/// A media node's capacity when `[cluster] capacity` is not set: 80 % of its cores
/// (100 units each) less 10 units of headroom (docs/sizing.md).
pub fn default_capacity(cores: u32) -> u32 {
    (cores.max(1) * 80).saturating_sub(10).max(1)
}

/// The pieces of media work a meeting runs, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingLoad {
    /// Publishers whose media is decoded.
    pub publishers: u32,
    /// Programs (one per audience: recording, livestream).
    pub programs: u32,
    /// 720p H.264 encodes.
    pub encodes_720p: u32,
    /// 360p H.264 encodes.
    pub encodes_360p: u32,
    /// RTMP destinations pushed to.
    pub rtmp_pushes: u32,
}

impl MeetingLoad {
    /// The meeting `bench/capacity.sh` runs and a placement reserves: 4 publishers, a
    /// recording and an HLS livestream (ladder 720p + 360p). Reserved as if the two
    /// audiences differ (two programs, the recording's and the livestream's own
    /// 720p encode) — a consent change may split a shared encode at any moment, and
    /// the node must have room for that without a move.
    pub const REFERENCE: MeetingLoad = MeetingLoad {
        publishers: 4,
        programs: 2,
        encodes_720p: 2,
        encodes_360p: 1,
        rtmp_pushes: 0,
    };
}

/// Cost units per piece of media work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostModel {
    /// Per decoded publisher.
    pub publisher: u32,
    /// Per program.
    pub program: u32,
    /// Per 720p encode.
    pub encode_720p: u32,
    /// Per 360p encode.
    pub encode_360p: u32,
    /// Per RTMP push.
    pub rtmp_push: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            publisher: DEFAULT_PUBLISHER_UNITS,
            program: DEFAULT_PROGRAM_UNITS,
            encode_720p: DEFAULT_ENCODE_720P_UNITS,
            encode_360p: DEFAULT_ENCODE_360P_UNITS,
            rtmp_push: DEFAULT_RTMP_PUSH_UNITS,
        }
    }
}

impl CostModel {
    /// What `load` costs, in units. Saturates instead of overflowing: a count from
    /// outside can make a meeting look infinitely expensive, never cheap.
    pub fn cost(&self, load: &MeetingLoad) -> u32 {
        [
            (self.publisher, load.publishers),
            (self.program, load.programs),
            (self.encode_720p, load.encodes_720p),
            (self.encode_360p, load.encodes_360p),
            (self.rtmp_push, load.rtmp_pushes),
        ]
        .into_iter()
        .fold(0u32, |sum, (units, count)| {
            sum.saturating_add(units.saturating_mul(count))
        })
    }

    /// The cost a placement reserves for a meeting: that of [`MeetingLoad::REFERENCE`].
    pub fn reference_meeting(&self) -> u32 {
        self.cost(&MeetingLoad::REFERENCE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: CostModel = CostModel {
        publisher: 3,
        program: 5,
        encode_720p: 7,
        encode_360p: 11,
        rtmp_push: 13,
    };

    #[test]
    fn each_piece_counts_with_its_units() {
        assert_eq!(MODEL.cost(&MeetingLoad::default()), 0);
        let one = |f: fn(&mut MeetingLoad)| {
            let mut l = MeetingLoad::default();
            f(&mut l);
            MODEL.cost(&l)
        };
        assert_eq!(one(|l| l.publishers = 2), 6);
        assert_eq!(one(|l| l.programs = 2), 10);
        assert_eq!(one(|l| l.encodes_720p = 2), 14);
        assert_eq!(one(|l| l.encodes_360p = 2), 22);
        assert_eq!(one(|l| l.rtmp_pushes = 2), 26);
        let all = MeetingLoad {
            publishers: 1,
            programs: 1,
            encodes_720p: 1,
            encodes_360p: 1,
            rtmp_pushes: 1,
        };
        assert_eq!(MODEL.cost(&all), 3 + 5 + 7 + 11 + 13);
    }

    #[test]
    fn the_reference_meeting_is_four_publishers_recording_and_hls() {
        assert_eq!(MODEL.reference_meeting(), 4 * 3 + 2 * 5 + 2 * 7 + 11);
        let d = CostModel::default();
        assert_eq!(
            d.reference_meeting(),
            4 * DEFAULT_PUBLISHER_UNITS
                + 2 * DEFAULT_PROGRAM_UNITS
                + 2 * DEFAULT_ENCODE_720P_UNITS
                + DEFAULT_ENCODE_360P_UNITS
        );
        assert!(
            d.reference_meeting() <= DEFAULT_NODE_CAPACITY,
            "a default node takes at least one reference meeting"
        );
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let load = MeetingLoad {
            publishers: u32::MAX,
            rtmp_pushes: u32::MAX,
            ..MeetingLoad::default()
        };
        assert_eq!(MODEL.cost(&load), u32::MAX);
    }

    #[test]
    fn a_partial_config_keeps_the_other_defaults() {
        let m: CostModel = serde_json::from_str(r#"{"encode_720p": 42}"#).unwrap();
        assert_eq!(
            m,
            CostModel {
                encode_720p: 42,
                ..CostModel::default()
            }
        );
    }
}
