//! What viewers and anonymous callers may learn of meetings and recordings: the
//! privacy decisions of the archive, the viewer page and the live playlists, as pure
//! functions the handlers only apply (issue 18, item 2).
//!
//! The rule: access follows content, decided when the content was made. A recording
//! with any part made while its meeting was non-public is for archivists and admins
//! only (the database records that as the recording runs, see migration 0007); a
//! chapter marked while the meeting was non-public is not shown outside the meeting
//! and its archive staff; of a meeting that is non-public now, anonymous callers learn
//! only that it is not public at the moment.

use std::collections::HashSet;

use gremium_storage::LedgerEntry;
use uuid::Uuid;

/// Who reads the archive, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReader {
    /// Archivists and admins: the whole archive.
    Staff,
    /// Viewers and moderators: the public archive.
    Public,
    /// Everyone else (participants' join tokens): nothing.
    Nobody,
}

/// May `reader` read a recording's media, poster, manifest and (viewers) metadata?
pub fn may_read_recording(reader: ArchiveReader, non_public_parts: bool) -> bool {
    match reader {
        ArchiveReader::Staff => true,
        ArchiveReader::Public => !non_public_parts,
        ArchiveReader::Nobody => false,
    }
}

/// Which of a meeting's chapters were marked while it was public, read from its
/// ledger chain: `meeting_created` carries the initial flag, each `public_changed` the
/// new one, each `chapter_marked` names its chapter. The chain orders the entries
/// exactly (a mark and a switch in the same millisecond included), and a chapter and
/// its entry commit together. What the ledger does not say counts as non-public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicHistory {
    public_chapters: HashSet<Uuid>,
}

impl PublicHistory {
    /// Replay `entries` (one meeting's, in chain order; other kinds are ignored).
    pub fn from_ledger(entries: &[LedgerEntry]) -> PublicHistory {
        let mut public = false;
        let mut public_chapters = HashSet::new();
        for e in entries {
            match e.kind.as_str() {
                "meeting_created" | "public_changed" => public = public_flag(&e.data),
                "chapter_marked" if public => {
                    if let Ok(id) = Uuid::parse_str(&e.subject) {
                        public_chapters.insert(id);
                    }
                }
                _ => {}
            }
        }
        PublicHistory { public_chapters }
    }

    /// Was the chapter marked while the meeting was public?
    pub fn chapter_was_public(&self, chapter_id: Uuid) -> bool {
        self.public_chapters.contains(&chapter_id)
    }
}

/// The `public` field of a ledger entry's data; missing or unreadable: not public.
fn public_flag(data: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("public").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: &str, subject: Uuid, data: serde_json::Value) -> LedgerEntry {
        LedgerEntry {
            chain_id: "m".into(),
            seq,
            at: 0,
            kind: kind.into(),
            actor: "a".into(),
            subject: subject.to_string(),
            data: data.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn only_archive_staff_read_recordings_with_non_public_parts() {
        use ArchiveReader::*;
        for (reader, non_public, want) in [
            (Staff, true, true),
            (Staff, false, true),
            (Public, true, false),
            (Public, false, true),
            (Nobody, true, false),
            (Nobody, false, false),
        ] {
            assert_eq!(
                may_read_recording(reader, non_public),
                want,
                "{reader:?} {non_public}"
            );
        }
    }

    /// Every sequence of up to seven steps (create public or not, then switches,
    /// marks and unrelated entries) against a plain model: a chapter is public iff
    /// the last flag before its mark was public.
    #[test]
    fn a_chapter_is_public_iff_the_meeting_was_public_when_it_was_marked() {
        #[derive(Clone, Copy, Debug)]
        enum Step {
            Switch(bool),
            Mark,
            Other,
        }
        const STEPS: [Step; 4] = [
            Step::Switch(true),
            Step::Switch(false),
            Step::Mark,
            Step::Other,
        ];
        let mut checked = 0;
        for created_public in [false, true] {
            for len in 0..=6u32 {
                for code in 0..4usize.pow(len) {
                    let steps: Vec<Step> =
                        (0..len).map(|i| STEPS[code / 4usize.pow(i) % 4]).collect();
                    let mid = Uuid::from_u128(1);
                    let mut entries = vec![entry(
                        1,
                        "meeting_created",
                        mid,
                        serde_json::json!({ "public": created_public, "retention_days": 30 }),
                    )];
                    let mut expected = Vec::new();
                    let mut public = created_public;
                    for (i, step) in steps.iter().enumerate() {
                        let seq = i as i64 + 2;
                        match step {
                            Step::Switch(p) => {
                                public = *p;
                                entries.push(entry(
                                    seq,
                                    "public_changed",
                                    mid,
                                    serde_json::json!({ "public": p, "reason": null, "media_time_ns": 5 }),
                                ));
                            }
                            Step::Mark => {
                                let id = Uuid::from_u128(1000 + i as u128);
                                expected.push((id, public));
                                entries.push(entry(
                                    seq,
                                    "chapter_marked",
                                    id,
                                    serde_json::json!({ "title": "TOP" }),
                                ));
                            }
                            Step::Other => entries.push(entry(
                                seq,
                                "archive_access",
                                Uuid::from_u128(7),
                                serde_json::json!({ "public": true }),
                            )),
                        }
                    }
                    let history = PublicHistory::from_ledger(&entries);
                    for (id, want) in expected {
                        assert_eq!(
                            history.chapter_was_public(id),
                            want,
                            "{created_public} {steps:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn what_the_ledger_does_not_say_is_not_public() {
        let c = Uuid::from_u128(9);
        // No creation entry (or an unreadable one): not public.
        let history =
            PublicHistory::from_ledger(&[entry(1, "chapter_marked", c, serde_json::json!({}))]);
        assert!(!history.chapter_was_public(c));
        let mut created = entry(1, "meeting_created", c, serde_json::json!({}));
        created.data = "not json".into();
        let history = PublicHistory::from_ledger(&[
            created,
            entry(2, "chapter_marked", c, serde_json::json!({})),
        ]);
        assert!(!history.chapter_was_public(c));
        assert!(!PublicHistory::default().chapter_was_public(c));
    }
}
