//! The scene plan: what a program shows, decided without GStreamer.
//!
//! Owns: [`plan`], which turns the participants (in joining order, each with their
//! consent for this program's purpose, camera and screen-share state), the
//! moderator's [`LayoutChoice`], the active speaker, the slate and the program's
//! settings into a [`ScenePlan`]: the placements of the layout engine, and for each
//! participant whether their live video is shown and where, their name label, whether
//! they are heard, and the placeholder card (initials or the neutral "no consent"
//! text) drawn in place of their video. Also the text helpers the cards and labels use
//! ([`escape_markup`], [`initials`]).
//!
//! Must not: touch GStreamer or read clocks. The program bin applies the plan; the
//! consent gates (which drop buffers whatever the plan says) stay in the bin.
//!
//! The privacy rule it encodes: a participant without consent for the program never
//! gets a live-video tile, is never heard, and no text of theirs (label, initials,
//! name) is planned; with `NonConsenting::Placeholder` they get the settings' neutral
//! text, with `NonConsenting::Hide` nothing.

use uuid::Uuid;

use super::ProgramSettings;
use crate::layout::{
    LayoutEngine, LayoutKind, LayoutSettings, Participant, Placement, TileContent,
};

/// The moderator's layout choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutChoice {
    /// Layout kind.
    pub kind: LayoutKind,
    /// Pinned participant (large in the speaker layout).
    pub pinned: Option<Uuid>,
    /// Podium members (shown in the podium layout; the audience is not).
    pub podium: Vec<Uuid>,
}

impl Default for LayoutChoice {
    fn default() -> Self {
        LayoutChoice {
            kind: LayoutKind::Grid,
            pinned: None,
            podium: Vec::new(),
        }
    }
}

/// One participant as the program knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneParticipant {
    /// Participant id.
    pub id: Uuid,
    /// Display name (labels, initials).
    pub display_name: String,
    /// Consent for this program's purpose.
    pub consent: bool,
    /// Their camera is on.
    pub camera_on: bool,
    /// Their video is a screen share.
    pub screen_share: bool,
    /// Their decoded video is connected to the program.
    pub video_connected: bool,
}

/// Everything the scene depends on.
#[derive(Debug, Clone, Copy)]
pub struct SceneInput<'a> {
    /// The participants, in joining order.
    pub participants: &'a [SceneParticipant],
    /// The moderator's layout choice.
    pub choice: &'a LayoutChoice,
    /// The active speaker (drives the speaker layout).
    pub active_speaker: Option<Uuid>,
    /// The non-public slate is up.
    pub slate: bool,
    /// The program's settings (canvas, gap, treatment of non-consenting
    /// participants, labels, the neutral text).
    pub settings: &'a ProgramSettings,
}

/// A placeholder card drawn in a participant's tile instead of their video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTile {
    /// Where, and what it stands for (`Initials` or `NotRecorded`).
    pub placement: Placement,
    /// The card's text as Pango markup.
    pub text: String,
}

/// What the program shows of one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantScene {
    /// Participant id.
    pub id: Uuid,
    /// Their live video is shown in this tile (`None`: their video pad is
    /// transparent). The bin keeps it transparent until the gate opened on a
    /// keyframe.
    pub video: Option<Placement>,
    /// Text of the name label drawn on their live video (Pango markup); `None` when
    /// no video is shown or labels are off.
    pub label: Option<String>,
    /// Their audio reaches the mix.
    pub audible: bool,
    /// The card shown in their tile instead of video.
    pub card: Option<CardTile>,
}

/// What the program bin must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenePlan {
    /// The tiles shown (empty while the slate is up).
    pub placements: Vec<Placement>,
    /// One entry per participant, in joining order.
    pub participants: Vec<ParticipantScene>,
    /// The slate covers the whole canvas.
    pub slate: bool,
}

impl ScenePlan {
    /// The plan for one participant.
    pub fn participant(&self, id: Uuid) -> Option<&ParticipantScene> {
        self.participants.iter().find(|p| p.id == id)
    }
}

/// Decide what the program shows. `engine` keeps each participant's grid slot from
/// one plan to the next (so tiles do not jump when others come and go); it is asked
/// even while the slate is up, so the slots survive a non-public part.
pub fn plan(engine: &mut LayoutEngine, input: &SceneInput<'_>) -> ScenePlan {
    let choice = input.choice;
    let settings = input.settings;
    let on_layout: Vec<Participant> = input
        .participants
        .iter()
        .map(|p| Participant {
            id: p.id,
            has_video: p.camera_on && p.video_connected,
            screen_share: p.screen_share && p.video_connected,
            podium: choice.podium.contains(&p.id),
            consent: p.consent,
        })
        .collect();
    let layout = LayoutSettings {
        kind: choice.kind,
        pinned: choice.pinned,
        active_speaker: input.active_speaker,
        non_consenting: settings.non_consenting,
        gap: settings.gap,
    };
    let placements = engine.layout(&on_layout, &layout, settings.canvas);
    let slate = input.slate;
    let participants = input
        .participants
        .iter()
        .map(|p| {
            let placement = placements
                .iter()
                .find(|t| t.id == p.id)
                .filter(|_| !slate)
                .copied();
            // Consent checked here too, not only by the layout: a live-video tile is
            // never planned for someone without consent, whatever the engine says.
            let video = placement.filter(|t| p.consent && t.content == TileContent::Video);
            let label = video
                .filter(|_| settings.labels)
                .map(|_| escape_markup(&p.display_name));
            // In the podium layout the audience is neither seen nor heard.
            let audible = p.consent
                && !slate
                && (choice.kind != LayoutKind::Podium || choice.podium.contains(&p.id));
            let card = placement
                .filter(|t| t.content != TileContent::Video)
                .map(|t| CardTile {
                    placement: t,
                    text: card_text(t.content, p, settings),
                });
            ParticipantScene {
                id: p.id,
                video,
                label,
                audible,
                card,
            }
        })
        .collect();
    ScenePlan {
        placements: if slate { Vec::new() } else { placements },
        participants,
        slate,
    }
}

/// The text of a card: the settings' neutral text on a "not recorded" tile (the
/// layout gives every participant without consent that one, never `Initials`), their
/// initials and name otherwise.
fn card_text(content: TileContent, p: &SceneParticipant, settings: &ProgramSettings) -> String {
    match content {
        TileContent::NotRecorded => escape_markup(&settings.not_consenting_text),
        _ => format!(
            "<span size=\"xx-large\">{}</span>\n{}",
            escape_markup(&initials(&p.display_name)),
            escape_markup(&p.display_name)
        ),
    }
}

/// Escape text for Pango markup (textoverlay parses its text as markup).
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Initials of a display name: first letters of the first and last word.
pub fn initials(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let first = |w: &str| {
        w.chars()
            .next()
            .map(|c| c.to_uppercase().collect::<String>())
    };
    match words.as_slice() {
        [] => "?".into(),
        [one] => first(one).unwrap_or_default(),
        [a, .., b] => format!(
            "{}{}",
            first(a).unwrap_or_default(),
            first(b).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests;
