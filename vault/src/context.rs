//! The contexts authenticated with a recording's wrapped key and with every record
//! and chunk of its objects, so that keys and objects cannot be swapped between
//! recordings (or between a recording's media, poster and manifest).
//!
//! Owns: the context strings. They are part of the stored formats: changing one makes
//! every existing recording unreadable.
//!
//! Must not: encrypt anything itself (see [`crate::crypto`]).

use uuid::Uuid;

/// Context bound into a recording's wrapped key and media chunks.
pub fn media_context(recording_id: Uuid) -> Vec<u8> {
    format!("gremium/recording/{recording_id}/media").into_bytes()
}

/// Context bound into a recording's poster chunks.
pub fn poster_context(recording_id: Uuid) -> Vec<u8> {
    format!("gremium/recording/{recording_id}/poster").into_bytes()
}

/// Context bound into a recording's manifest chunks.
pub fn manifest_context(recording_id: Uuid) -> Vec<u8> {
    format!("gremium/recording/{recording_id}/manifest").into_bytes()
}

/// Context a recording's data key is wrapped under by the master key.
pub fn key_context(recording_id: Uuid) -> Vec<u8> {
    format!("gremium/recording/{recording_id}/key").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are in every stored recording: they must never change.
    #[test]
    fn contexts_are_stable_and_distinct() {
        let id = Uuid::nil();
        let all = [
            media_context(id),
            poster_context(id),
            manifest_context(id),
            key_context(id),
        ];
        assert_eq!(
            all[0],
            b"gremium/recording/00000000-0000-0000-0000-000000000000/media"
        );
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(media_context(id), media_context(Uuid::max()));
    }
}
