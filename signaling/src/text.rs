//! Free text that people type and others read: display names, meeting titles,
//! chapter titles, reasons.
//!
//! Such text is shown in consoles, burnt into video as name labels, written into the
//! ledger and recordings' manifests, and printed by operators' terminals. Control
//! characters there do harm: NUL truncates in C libraries, ANSI escapes rewrite an
//! operator's terminal, newlines forge log and ledger lines, and bidi overrides make
//! "Alice" display as someone else. One pure check, used wherever such text enters,
//! refuses them all with a message naming the field.

/// Why a text field was refused (the message is sent to the client as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty after trimming, or longer than allowed.
    #[error("{field}: must be 1 to {max} characters")]
    Length {
        /// Field name as in the request body.
        field: &'static str,
        /// Largest accepted length in characters.
        max: usize,
    },
    /// Carries a character that is refused (see [`is_refused`]).
    #[error("{field}: no control characters (found U+{code:04X} at character {position})")]
    Control {
        /// Field name as in the request body.
        field: &'static str,
        /// The refused character's code point.
        code: u32,
        /// Its position (0-based, in characters, after trimming).
        position: usize,
    },
}

/// Characters no displayed text may carry: C0 and C1 controls (NUL, ESC, newline,
/// tab, DEL, …), the bidi embeddings, overrides, isolates and marks (U+202A–U+202E,
/// U+2066–U+2069, U+200E, U+200F, U+061C), and the line and paragraph separators
/// (U+2028, U+2029). Joiners (U+200D, used by emoji) stay allowed.
pub fn is_refused(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// A required single-line text: trimmed, 1 to `max` characters, nothing refused.
/// Returns the trimmed text.
pub fn single_line<'a>(
    field: &'static str,
    text: &'a str,
    max: usize,
) -> Result<&'a str, TextError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(TextError::Length { field, max });
    }
    check_chars(field, t)?;
    Ok(t)
}

/// An optional single-line text: `None` or blank gives `None`; otherwise as
/// [`single_line`].
pub fn optional_line<'a>(
    field: &'static str,
    text: Option<&'a str>,
    max: usize,
) -> Result<Option<&'a str>, TextError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => single_line(field, t, max).map(Some),
    }
}

fn check_chars(field: &'static str, t: &str) -> Result<(), TextError> {
    match t.chars().enumerate().find(|(_, c)| is_refused(*c)) {
        Some((position, c)) => Err(TextError::Control {
            field,
            code: c as u32,
            position,
        }),
        None => Ok(()),
    }
}

impl From<TextError> for crate::error::ApiError {
    fn from(e: TextError) -> Self {
        crate::error::ApiError::Unprocessable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_trimmed() {
        for ok in [
            "Alice",
            "  Dr. Müller-Lüdenscheidt ",
            "Åsa Ørsted",
            "محمد",
            "שלום",
            "李小龙",
            "👩‍👩‍👧 family",
            "O'Brien (SPD)",
        ] {
            assert_eq!(
                single_line("display_name", ok, 100),
                Ok(ok.trim()),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn control_and_bidi_characters_are_refused() {
        for bad in [
            "a\0b",
            "\u{1b}[31mred",
            "two\nlines",
            "tab\there",
            "cr\rx",
            "del\u{7f}",
            "c1\u{85}x",
            "\u{202E}ecilA",
            "x\u{202A}y",
            "x\u{202B}y",
            "x\u{202C}y",
            "x\u{202D}y",
            "x\u{2066}y",
            "x\u{2067}y",
            "x\u{2068}y",
            "x\u{2069}y",
            "x\u{200E}y",
            "x\u{200F}y",
            "x\u{061C}y",
            "x\u{2028}y",
            "x\u{2029}y",
        ] {
            let e = single_line("title", bad, 200).unwrap_err();
            assert!(
                matches!(e, TextError::Control { field: "title", .. }),
                "{bad:?}"
            );
            assert!(
                e.to_string().starts_with("title: no control characters"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_message_names_field_code_and_position() {
        assert_eq!(
            single_line("display_name", "ab\u{202E}c", 100)
                .unwrap_err()
                .to_string(),
            "display_name: no control characters (found U+202E at character 2)"
        );
    }

    #[test]
    fn length_is_counted_in_characters_after_trimming() {
        assert!(single_line("t", "   ", 5).is_err());
        assert!(single_line("t", "", 5).is_err());
        assert_eq!(single_line("t", " äöüßé ", 5), Ok("äöüßé"));
        assert_eq!(
            single_line("t", "äöüßéx", 5),
            Err(TextError::Length { field: "t", max: 5 })
        );
    }

    #[test]
    fn optional_text_may_be_absent_or_blank() {
        assert_eq!(optional_line("reason", None, 10), Ok(None));
        assert_eq!(optional_line("reason", Some("  "), 10), Ok(None));
        assert_eq!(
            optional_line("reason", Some(" TOP 7 "), 10),
            Ok(Some("TOP 7"))
        );
        assert!(optional_line("reason", Some("a\u{1b}b"), 10).is_err());
        assert!(optional_line("reason", Some("0123456789x"), 10).is_err());
    }

    #[test]
    fn every_refused_character_is_found_wherever_it_stands() {
        // Exhaustive over the refused set and three positions.
        let refused: Vec<char> = (0u32..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|c| is_refused(*c))
            .collect();
        assert_eq!(refused.len(), 65 + 5 + 4 + 3 + 2);
        for c in refused {
            for s in [format!("{c}ab"), format!("a{c}b"), format!("ab{c}")] {
                // Leading/trailing whitespace controls are trimmed away, which is fine.
                if let Ok(t) = single_line("f", &s, 10) {
                    assert!(!t.contains(c), "{c:?} slipped through in {s:?}");
                }
            }
        }
    }
}
