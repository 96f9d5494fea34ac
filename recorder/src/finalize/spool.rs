//! The files next to a recording's spool: where the spool is, the completion mark
//! that tells a normal stop from a crash, and removing all of them.
//!
//! Owns: the names of the spool, its completion mark (`{id}.done`) and the sealed
//! copies post-processing leaves next to it, and reading and writing the mark.
//!
//! Must not: read or write the spool's records (the recording bin and
//! [`crate::finalize`] do, through `gremium_vault::crypto`).

use std::path::{Path, PathBuf};

use gremium_protocol::Appearance;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The spool file of a recording in `dir`.
pub fn spool_path(dir: &Path, recording_id: Uuid) -> PathBuf {
    dir.join(format!("{recording_id}.spool"))
}

/// The sealed media written next to `spool` before it is stored.
pub(super) fn sealed_media_path(spool: &Path) -> PathBuf {
    spool.with_extension("media.sealed")
}

/// The sealed poster written next to `spool` before it is stored.
pub(super) fn sealed_poster_path(spool: &Path) -> PathBuf {
    spool.with_extension("poster.sealed")
}

/// What the media plane knew when a recording stopped normally: written next to the
/// spool (`{id}.done`, JSON) before post-processing starts, so a restart in the middle
/// of post-processing or of a long upload resumes it as a normal stop, not as a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// Start → first fragment (starting with a keyframe) in the spool, milliseconds.
    pub first_fragment_ms: Option<u64>,
    /// Who appeared when.
    pub appearances: Vec<Appearance>,
}

pub(super) fn completion_path(spool: &Path) -> PathBuf {
    spool.with_extension("done")
}

/// Remove a spool, its completion mark and what an interrupted post-processing left
/// next to it (sealed media and poster not yet stored), if there are any.
pub fn remove_spool(spool: &Path) -> std::io::Result<()> {
    for path in [
        spool.to_path_buf(),
        completion_path(spool),
        spool.with_extension("done.part"),
        sealed_media_path(spool),
        sealed_poster_path(spool),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Mark a spool as completely written.
pub fn write_completion(spool: &Path, c: &Completion) -> std::io::Result<()> {
    let path = completion_path(spool);
    let tmp = path.with_extension("done.part");
    let written = std::fs::write(&tmp, serde_json::to_vec(c).map_err(std::io::Error::other)?)
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // A full disk leaves a partial file; without the mark the spool is recovered
        // as after a crash.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The completion mark of a spool, if it was completely written.
pub fn read_completion(spool: &Path) -> Option<Completion> {
    let bytes = std::fs::read(completion_path(spool)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mark survives a round trip; removing the spool removes what lies next to it
    /// and nothing else, and is harmless when there is nothing.
    #[test]
    fn marks_round_trip_and_removal_takes_every_file_of_the_spool() {
        let dir = std::env::temp_dir().join(format!("gremium-marks-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = Uuid::new_v4();
        let spool = spool_path(&dir, id);
        std::fs::write(&spool, b"records").unwrap();
        assert_eq!(read_completion(&spool), None, "no mark yet: a crash");
        let c = Completion {
            first_fragment_ms: Some(420),
            appearances: vec![Appearance {
                participant_id: Uuid::nil(),
                display_name: "A".into(),
                ranges_ms: vec![[0, 1000]],
            }],
        };
        write_completion(&spool, &c).unwrap();
        assert_eq!(read_completion(&spool), Some(c));
        for p in [sealed_media_path(&spool), sealed_poster_path(&spool)] {
            std::fs::write(p, b"sealed").unwrap();
        }
        let other = spool_path(&dir, Uuid::new_v4());
        std::fs::write(&other, b"another recording").unwrap();
        remove_spool(&spool).unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![other]);
        remove_spool(&spool).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
