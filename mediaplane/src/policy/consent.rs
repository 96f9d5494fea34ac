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

    /// Are this participant's consent gates into this audience's program open? What
    /// the programs' gates apply; the slate and the podium are the program's own
    /// business on top (see [`MeetingPolicy::admits`]).
    pub fn gate(&self, participant: Uuid, audience: Audience) -> bool {
        self.consent(participant).for_audience(audience)
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

#[cfg(test)]
mod tests {
    //! The meeting policy's rules one by one (the property tests are in
    //! `policy::tests`).

    use gremium_protocol::{Audience, Consent, LayoutKind, LayoutSpec, MeetingContext};
    use uuid::Uuid;

    use super::*;

    const AUDIENCES: [Audience; 2] = [Audience::Recording, Audience::Streaming];

    fn id(n: u8) -> Uuid {
        Uuid::from_u128(u128::from(n) + 1)
    }

    fn name(n: u8) -> String {
        format!("P{n}")
    }

    fn consent(recording: bool, streaming: bool) -> Consent {
        Consent {
            recording,
            streaming,
        }
    }

    fn settings(slate_recording: bool, broadcast_delay: bool) -> PolicySettings {
        PolicySettings {
            slate_recording,
            broadcast_delay,
            ..PolicySettings::default()
        }
    }

    fn layout(kind: LayoutKind, podium: &[u8]) -> LayoutSpec {
        LayoutSpec {
            kind,
            pinned: None,
            podium: podium.iter().map(|n| id(*n)).collect(),
        }
    }

    #[test]
    fn carried_consent_counts_until_a_command_and_a_command_always_wins() {
        let mut p = MeetingPolicy::new(PolicySettings::default());
        assert_eq!(p.consent(id(0)), Consent::default(), "never heard of: none");
        assert_eq!(
            p.carried_consent(id(0), consent(true, false)),
            consent(true, false)
        );
        // A later publish carries an older value: the first one seen stays.
        assert_eq!(
            p.carried_consent(id(0), consent(true, true)),
            consent(true, false)
        );
        p.command_consent(id(0), consent(false, true));
        assert_eq!(p.consent(id(0)), consent(false, true));
        // A publish after the command does not undo it.
        assert_eq!(
            p.carried_consent(id(0), consent(true, true)),
            consent(false, true)
        );
        assert_eq!(p.consent(id(0)), consent(false, true));
    }

    #[test]
    fn a_command_before_the_publish_wins_over_what_it_carries() {
        let mut p = MeetingPolicy::new(PolicySettings::default());
        p.command_consent(id(1), consent(false, false));
        assert_eq!(
            p.carried_consent(id(1), consent(true, true)),
            consent(false, false)
        );
        p.join(id(1), "Ada");
        for a in AUDIENCES {
            assert!(!p.admits(id(1), a));
        }
    }

    #[test]
    fn context_counts_only_as_fallback() {
        let mut p = MeetingPolicy::new(PolicySettings::default());
        assert!(!p.public(), "unknown: not public");
        assert_eq!(p.layout(), LayoutSpec::default());
        p.set_public(false);
        let speaker = layout(LayoutKind::Speaker, &[]);
        p.learn_context(&MeetingContext {
            public: true,
            layout: speaker.clone(),
        });
        assert!(!p.public(), "the command wins over the context");
        assert_eq!(p.layout(), speaker, "no layout commanded: the context's");
        p.learn_context(&MeetingContext {
            public: true,
            layout: LayoutSpec::default(),
        });
        assert_eq!(p.layout(), speaker, "the first context seen stays");
        let podium = layout(LayoutKind::Podium, &[0]);
        p.set_layout(podium.clone());
        p.set_public(true);
        assert_eq!(p.layout(), podium);
        assert!(p.public());
    }

    #[test]
    fn ending_the_meeting_forgets_everything() {
        let s = PolicySettings::default();
        let mut p = MeetingPolicy::new(s);
        p.command_consent(id(0), consent(false, false));
        p.set_public(true);
        p.join(id(0), "Ada");
        // EndMeeting drops the policy; the next session of the meeting starts afresh.
        drop(p);
        let mut p = MeetingPolicy::new(s);
        assert_eq!(
            p.carried_consent(id(0), consent(true, true)),
            consent(true, true)
        );
        assert!(!p.public());
        assert!(p.roster().is_empty());
    }

    #[test]
    fn roster_keeps_first_place_and_name_and_leaving_keeps_the_consent_memo() {
        let mut p = MeetingPolicy::new(PolicySettings::default());
        p.carried_consent(id(0), consent(true, true));
        p.join(id(0), "Ada");
        p.join(id(1), "Bo");
        p.join(id(0), "Ada (reconnected)");
        assert_eq!(
            p.roster(),
            &[(id(0), "Ada".to_string()), (id(1), "Bo".to_string())]
        );
        p.leave(id(0));
        assert_eq!(p.roster(), &[(id(1), "Bo".to_string())]);
        assert_eq!(
            p.carried_consent(id(0), consent(false, false)),
            consent(true, true)
        );
        p.join(id(0), "Ada");
        assert_eq!(p.roster()[1].0, id(0), "a rejoin goes to the end");
    }

    #[test]
    fn slate_follows_the_public_flag_and_the_setting() {
        let mut p = MeetingPolicy::new(settings(false, false));
        assert!(p.slate(Audience::Streaming));
        assert!(!p.slate(Audience::Recording));
        p.set_public(true);
        assert!(!p.slate(Audience::Streaming));
        let mut p = MeetingPolicy::new(settings(true, false));
        assert!(p.slate(Audience::Streaming) && p.slate(Audience::Recording));
        p.set_public(true);
        assert!(!p.slate(Audience::Streaming) && !p.slate(Audience::Recording));
    }

    #[test]
    fn admits_needs_consent_no_slate_and_the_podium() {
        let mut p = MeetingPolicy::new(settings(false, false));
        p.carried_consent(id(0), consent(true, true));
        p.carried_consent(id(1), consent(true, false));
        p.join(id(0), "Ada");
        p.join(id(1), "Bo");
        assert!(p.admits(id(0), Audience::Recording));
        assert!(!p.admits(id(0), Audience::Streaming), "the slate is up");
        p.set_public(true);
        assert!(p.admits(id(0), Audience::Streaming));
        assert!(
            !p.admits(id(1), Audience::Streaming),
            "no streaming consent"
        );
        p.set_layout(layout(LayoutKind::Podium, &[1]));
        assert!(!p.admits(id(0), Audience::Recording), "not on the podium");
        assert!(p.admits(id(1), Audience::Recording));
        let view = p.view(Audience::Streaming);
        assert_eq!(
            view.roster,
            vec![
                Seat {
                    participant: id(0),
                    display_name: "Ada".into(),
                    consent: true,
                    admitted: false,
                },
                Seat {
                    participant: id(1),
                    display_name: "Bo".into(),
                    consent: false,
                    admitted: false,
                },
            ]
        );
    }

    #[test]
    fn programs_match_only_with_equal_consent_slate_and_no_delay() {
        let mut p = MeetingPolicy::new(settings(false, false));
        p.carried_consent(id(0), consent(true, true));
        p.join(id(0), "Ada");
        assert!(
            !p.programs_match(),
            "not public: only the livestream is slated"
        );
        p.set_public(true);
        assert!(p.programs_match());
        p.carried_consent(id(1), consent(true, false));
        assert!(p.programs_match(), "only the roster counts");
        p.join(id(1), "Bo");
        assert!(!p.programs_match());
        p.leave(id(1));
        assert!(p.programs_match());
        let mut slated = MeetingPolicy::new(settings(true, false));
        slated.carried_consent(id(0), consent(false, false));
        slated.join(id(0), "Ada");
        assert!(slated.programs_match(), "both programs show the slate");
        let mut delayed = MeetingPolicy::new(settings(true, true));
        delayed.set_public(true);
        assert!(
            !delayed.programs_match(),
            "a delayed livestream encodes itself"
        );
    }

    #[test]
    fn visible_is_the_roster_with_consent_and_media() {
        let mut p = MeetingPolicy::new(settings(true, false));
        for (n, c) in [
            (0, consent(true, false)),
            (1, consent(true, true)),
            (2, consent(false, true)),
        ] {
            p.carried_consent(id(n), c);
            p.join(id(n), &name(n));
        }
        p.carried_consent(id(3), consent(true, true));
        let seen = |u: Uuid| u != id(1);
        assert_eq!(p.visible(Audience::Recording, seen), vec![(id(0), name(0))]);
        assert_eq!(
            p.visible(Audience::Streaming, |_| true),
            vec![(id(1), name(1)), (id(2), name(2))]
        );
    }
}
