//! The cost model: what a meeting costs a media node, in units (pure).
//! TEMPORARY stand-in until the placement helper's version lands.

/// Counts of what a meeting runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeetingLoad {
    /// Decoded publishers.
    pub publishers: u32,
    /// Programs (compositors).
    pub programs: u32,
    /// 720p encodes.
    pub encodes_720p: u32,
    /// 360p encodes.
    pub encodes_360p: u32,
    /// RTMP pushes.
    pub rtmp_pushes: u32,
}

impl MeetingLoad {
    /// Four publishers, a recording and HLS.
    pub fn reference() -> MeetingLoad {
        MeetingLoad {
            publishers: 4,
            programs: 2,
            encodes_720p: 2,
            encodes_360p: 1,
            rtmp_pushes: 0,
        }
    }
}

/// Units per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostModel {
    /// Per decoded publisher.
    pub per_publisher: u32,
    /// Per program.
    pub per_program: u32,
    /// Per 720p encode.
    pub per_encode_720p: u32,
    /// Per 360p encode.
    pub per_encode_360p: u32,
    /// Per RTMP push.
    pub per_rtmp: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            per_publisher: 4,
            per_program: 10,
            per_encode_720p: 15,
            per_encode_360p: 6,
            per_rtmp: 1,
        }
    }
}

impl CostModel {
    /// Units of a meeting.
    pub fn cost(&self, l: &MeetingLoad) -> u32 {
        l.publishers * self.per_publisher
            + l.programs * self.per_program
            + l.encodes_720p * self.per_encode_720p
            + l.encodes_360p * self.per_encode_360p
            + l.rtmp_pushes * self.per_rtmp
    }
}
