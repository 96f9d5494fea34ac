//! What one meeting's programs may show: effective consent, public flag, layout and
//! roster, kept by the media plane from the first command or publish of a meeting
//! until `EndMeeting` (dropping the [`MeetingPolicy`] is the reset).
//!
//! Owns: the memo of consent values seen (a `SetConsent` always wins; the consent a
//! publish carries counts only for a participant not heard of before, because the
//! control plane may have sent it before a later command overtook it), the fallbacks
//! (no consent, not public, the default layout), and every answer derived from them.
//!
//! Must not: know GStreamer, sessions or time; the adapters ask and apply.

use std::collections::HashMap;

use gremium_protocol::{Audience, Consent, LayoutKind, LayoutSpec, MeetingContext};
use uuid::Uuid;

use super::PolicySettings;

/// One roster member as an audience's program shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The participant.
    pub participant: Uuid,
    /// Their display name (as their first publish gave it).
    pub display_name: String,
    /// Their consent gates for this audience are open.
    pub consent: bool,
    /// They are seen and heard in this program now: consent, no slate, and on the
    /// podium when the layout is the podium.
    pub admitted: bool,
}

/// What an audience's program shows: two programs with equal views show the same
/// pixels and samples (given the same media).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceView {
    /// The non-public slate covers the program.
    pub slate: bool,
    /// The layout of the program.
    pub layout: LayoutSpec,
    /// The roster, in joining order.
    pub roster: Vec<Seat>,
}

/// What the media plane knows of one meeting: consent, public flag, layout and roster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingPolicy {
    settings: PolicySettings,
    /// The latest consent commanded, else the first carried by a publish.
    consent: HashMap<Uuid, Consent>,
    /// As last commanded, else as the first context seen said.
    public: Option<bool>,
    /// As last commanded, else as the first context seen said.
    layout: Option<LayoutSpec>,
    /// Participants who publish, in joining order, with their display names.
    roster: Vec<(Uuid, String)>,
}

impl MeetingPolicy {
    /// A meeting the plane has heard nothing of yet.
    pub fn new(settings: PolicySettings) -> Self {
        MeetingPolicy {
            settings,
            ..MeetingPolicy::default()
        }
    }

    /// The settings this policy decides with.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// A `SetConsent` command: always wins, also over what later publishes carry.
    pub fn command_consent(&mut self, participant: Uuid, consent: Consent) {
        self.consent.insert(participant, consent);
    }

    /// The consent a `Publish` carries. A value seen before (commanded or carried)
    /// wins, since a command may have overtaken the publish. Returns the effective
    /// consent.
    pub fn carried_consent(&mut self, participant: Uuid, carried: Consent) -> Consent {
        *self.consent.entry(participant).or_insert(carried)
    }

    /// The effective consent now: no consent for a participant never heard of.
    pub fn consent(&self, participant: Uuid) -> Consent {
        self.consent.get(&participant).copied().unwrap_or_default()
    }

    /// May this participant be seen or heard in this audience's program now? Only with
    /// consent for the audience, while no slate covers the program, and, in the podium
    /// layout, only from the podium.
    pub fn admits(&self, participant: Uuid, audience: Audience) -> bool {
        self.consent(participant).for_audience(audience)
            && !self.slate(audience)
            && self.on_stage(participant)
    }

    /// The podium layout shows and mixes only podium members; other layouts everyone.
    fn on_stage(&self, participant: Uuid) -> bool {
        match &self.layout {
            Some(l) if l.kind == LayoutKind::Podium => l.podium.contains(&participant),
            _ => true,
        }
    }

    /// A context a `Publish` or `StartStream` carries: its public flag and layout count
    /// only where none was commanded or seen before (a command may have overtaken it).
    pub fn learn_context(&mut self, context: &MeetingContext) {
        self.public.get_or_insert(context.public);
        self.layout.get_or_insert_with(|| context.layout.clone());
    }

    /// A public/non-public switch.
    pub fn set_public(&mut self, public: bool) {
        self.public = Some(public);
    }

    /// Is the meeting public? Not when the plane has not heard (the safe side: the
    /// livestream shows the slate).
    pub fn public(&self) -> bool {
        self.public.unwrap_or(false)
    }

    /// A layout command.
    pub fn set_layout(&mut self, layout: LayoutSpec) {
        self.layout = Some(layout);
    }

    /// The layout of the programs: the grid when the plane has not heard.
    pub fn layout(&self) -> LayoutSpec {
        self.layout.clone().unwrap_or_default()
    }

    /// A publish was answered: the participant joins the roster, once (a reconnect
    /// keeps their place and their first display name).
    pub fn join(&mut self, participant: Uuid, display_name: &str) {
        if !self.roster.iter().any(|(id, _)| *id == participant) {
            self.roster.push((participant, display_name.to_string()));
        }
    }

    /// The participant stopped publishing: they leave the roster. Their consent stays
    /// remembered (it still wins over what a later publish carries).
    pub fn leave(&mut self, participant: Uuid) {
        self.roster.retain(|(id, _)| *id != participant);
    }

    /// Participants who publish, in joining order, with their display names.
    pub fn roster(&self) -> &[(Uuid, String)] {
        &self.roster
    }

    /// Does this audience's program show the slate now? The livestream whenever the
    /// meeting is not public; the recording too when `slate_recording` is set.
    pub fn slate(&self, audience: Audience) -> bool {
        let slated = audience == Audience::Streaming || self.settings.slate_recording;
        slated && !self.public()
    }

    /// What this audience's program shows now.
    pub fn view(&self, audience: Audience) -> AudienceView {
        AudienceView {
            slate: self.slate(audience),
            layout: self.layout(),
            roster: self
                .roster
                .iter()
                .map(|(id, name)| Seat {
                    participant: *id,
                    display_name: name.clone(),
                    consent: self.consent(*id).for_audience(audience),
                    admitted: self.admits(*id, audience),
                })
                .collect(),
        }
    }

    /// Do the recording and the streaming programs show the same thing, with nothing
    /// held back? The same consent of every roster member for both audiences, the same
    /// slate (the meeting is public, or the recording shows the slate too), and no
    /// broadcast delay (a delayed livestream holds raw video back and encodes itself).
    /// Only then may the livestream take the recording's encode.
    pub fn programs_match(&self) -> bool {
        if self.settings.broadcast_delay {
            return false;
        }
        if !self.public() && !self.settings.slate_recording {
            return false;
        }
        self.roster.iter().all(|(id, _)| {
            let c = self.consent(*id);
            c.recording == c.streaming
        })
    }

    /// Roster members who appear in this audience's program by consent now, given
    /// which of them have sent media (`media_seen` answers false for a participant
    /// without a publishing session), in joining order: the appearance timeline of a
    /// recording. As today, the slate and the podium do not take anyone out of it.
    pub fn visible(
        &self,
        audience: Audience,
        media_seen: impl Fn(Uuid) -> bool,
    ) -> Vec<(Uuid, String)> {
        self.roster
            .iter()
            .filter(|(id, _)| self.consent(*id).for_audience(audience) && media_seen(*id))
            .cloned()
            .collect()
    }
}
