//! The program bin: the GStreamer adapter of a program. Builds the compositor and
//! audio mixer with their tees, the clock sources, each participant's branches
//! (`input`), the cards and the slate (`branch`), and applies the scene plan
//! (`apply`).
//!
//! Must not: decide what is shown (that is [`scene::plan`](crate::program::scene::plan));
//! hold a participant's media past their consent (the gates close before any call
//! that withdraws it returns).

mod apply;
mod branch;
mod input;

use std::collections::HashMap;
use std::time::Duration;

use gremium_pipelines::tee::{release_tee_branch, tee_branch};
use gremium_pipelines::{capsfilter, i420_caps, link_chain, make, PipelineError};
use gst::prelude::*;
use uuid::Uuid;

use crate::layout::{LayoutEngine, Placement};
use crate::program::scene::{escape_markup, LayoutChoice};
use crate::program::{Kind, ProgramSettings};
use branch::{
    kind_name, link_err, pad_ok, remove_branch, request_keyframe, state_err, text_overlay, Branch,
    Card,
};
use input::Input;

/// A program: compositor + audio mixer for one audience. Not thread-safe on its own;
/// the owner serialises calls (the media plane holds it under its meeting lock).
pub struct Program {
    settings: ProgramSettings,
    bin: gst::Bin,
    vmix: gst::Element,
    amix: gst::Element,
    tees: HashMap<Kind, gst::Element>,
    indicator: Option<gst::Element>,
    order: Vec<Uuid>,
    inputs: HashMap<Uuid, Input>,
    engine: LayoutEngine,
    choice: LayoutChoice,
    active_speaker: Option<Uuid>,
    slate: Option<Branch>,
    slate_on: bool,
    placements: Vec<Placement>,
}

impl Program {
    /// Build a program bin. Add [`Program::bin`] to a pipeline and sync its state.
    pub fn new(settings: ProgramSettings) -> Result<Program, PipelineError> {
        let bin = gst::Bin::with_name(&settings.name);
        let latency = settings.latency.as_nanos() as u64;

        let vmix = make("compositor", None)?;
        vmix.set_property_from_str("background", "black");
        vmix.set_property("latency", latency);
        vmix.set_property_from_str("start-time-selection", "first");
        let mut caps = i420_caps(
            settings.canvas.width as i32,
            settings.canvas.height as i32,
            settings.fps,
        );
        caps.make_mut()
            .set("pixel-aspect-ratio", gst::Fraction::new(1, 1));
        let vcaps = capsfilter(caps)?;
        let vtee = make("tee", Some("video-tee"))?;
        vtee.set_property("allow-not-linked", true);
        bin.add_many([&vmix, &vcaps, &vtee]).map_err(state_err)?;
        let indicator = match &settings.indicator {
            Some(text) => {
                let t = text_overlay("Sans Bold 16", "right", "top")?;
                t.set_property("text", escape_markup(text));
                t.set_property("color", 0xffff_3030u32);
                t.set_property("silent", true);
                bin.add(&t).map_err(state_err)?;
                link_chain(&[&vmix, &vcaps, &t, &vtee])?;
                Some(t)
            }
            None => {
                link_chain(&[&vmix, &vcaps, &vtee])?;
                None
            }
        };

        let amix = make("audiomixer", None)?;
        amix.set_property("latency", latency);
        amix.set_property_from_str("start-time-selection", "first");
        let acaps = capsfilter(
            gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("rate", 48_000i32)
                .field("channels", 2i32)
                .field("layout", "interleaved")
                .build(),
        )?;
        let atee = make("tee", Some("audio-tee"))?;
        atee.set_property("allow-not-linked", true);
        bin.add_many([&amix, &acaps, &atee]).map_err(state_err)?;
        link_chain(&[&amix, &acaps, &atee])?;

        let mut program = Program {
            settings,
            bin,
            vmix,
            amix,
            tees: HashMap::from([(Kind::Video, vtee), (Kind::Audio, atee)]),
            indicator,
            order: Vec::new(),
            inputs: HashMap::new(),
            engine: LayoutEngine::new(),
            choice: LayoutChoice::default(),
            active_speaker: None,
            slate: None,
            slate_on: false,
            placements: Vec::new(),
        };
        program.add_clock_sources()?;
        Ok(program)
    }

    /// Live sources that keep both mixers producing when nobody publishes: a tiny
    /// invisible video and silence.
    fn add_clock_sources(&mut self) -> Result<(), PipelineError> {
        let vsrc = make("videotestsrc", None)?;
        vsrc.set_property("is-live", true);
        vsrc.set_property_from_str("pattern", "black");
        let vcaps = capsfilter(i420_caps(16, 16, self.settings.fps))?;
        self.bin.add_many([&vsrc, &vcaps]).map_err(state_err)?;
        link_chain(&[&vsrc, &vcaps])?;
        let vpad = pad_ok(self.vmix.request_pad_simple("sink_%u"), "compositor")?;
        vpad.set_property("alpha", 0.0f64);
        vpad.set_property("zorder", 0u32);
        pad_ok(vcaps.static_pad("src"), "capsfilter")?
            .link(&vpad)
            .map_err(link_err("background"))?;

        let asrc = make("audiotestsrc", None)?;
        asrc.set_property("is-live", true);
        asrc.set_property_from_str("wave", "silence");
        asrc.set_property("samplesperbuffer", 480i32);
        self.bin.add(&asrc).map_err(state_err)?;
        let apad = pad_ok(self.amix.request_pad_simple("sink_%u"), "audiomixer")?;
        pad_ok(asrc.static_pad("src"), "audiotestsrc")?
            .link(&apad)
            .map_err(link_err("silence"))?;
        Ok(())
    }

    /// The program's bin.
    pub fn bin(&self) -> &gst::Bin {
        &self.bin
    }

    /// Settings the program was built with.
    pub fn settings(&self) -> &ProgramSettings {
        &self.settings
    }

    /// The tiles currently shown.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// The layout choice in effect.
    pub fn layout(&self) -> &LayoutChoice {
        &self.choice
    }

    /// The program's running time now (nanoseconds), if it runs.
    pub fn running_time(&self) -> Option<u64> {
        self.bin.current_running_time().map(|t| t.nseconds())
    }

    /// Add a participant (no media yet). `consent` is for this program's purpose.
    pub fn add_participant(&mut self, id: Uuid, display_name: &str, consent: bool) {
        if self.inputs.contains_key(&id) {
            return;
        }
        self.inputs.insert(id, Input::new(display_name, consent));
        self.order.push(id);
        self.apply();
    }

    /// Is the participant known to the program?
    pub fn has_participant(&self, id: Uuid) -> bool {
        self.inputs.contains_key(&id)
    }

    /// Remove a participant and everything of theirs from the program.
    pub fn remove_participant(&mut self, id: Uuid) {
        let Some(input) = self.inputs.remove(&id) else {
            return;
        };
        self.order.retain(|o| *o != id);
        input.video_gate.close();
        input.audio_gate.close();
        for (kind, branch) in [
            (Kind::Video, input.video),
            (Kind::Audio, input.audio),
            (Kind::Video, input.placeholder.map(|(b, _)| b)),
        ] {
            if let Some(b) = branch {
                remove_branch(&self.bin, self.mixer(kind), b);
            }
        }
        if self.active_speaker == Some(id) {
            self.active_speaker = None;
        }
        self.apply();
    }

    /// Change a participant's consent for this program's purpose. Withdrawal closes
    /// the gates before returning; the result is the program's running time at which
    /// it took effect (no buffer with a later timestamp carries their media). A grant
    /// asks the publisher for a keyframe and opens the video gate on it.
    pub fn set_consent(&mut self, id: Uuid, consent: bool) -> Option<u64> {
        let input = self.inputs.get_mut(&id)?;
        if consent {
            input.audio_gate.open_now();
            input.video_gate.open(Duration::from_secs(1));
            if let Some(b) = &input.video {
                request_keyframe(&b.elements[0]);
            }
        } else {
            // Not left to `apply`: the pads go dark here, under the switch's lock,
            // before the running time is read.
            let _g = input.switch.guard();
            input.video_gate.close();
            input.audio_gate.close();
            input
                .switch
                .visible
                .store(false, std::sync::atomic::Ordering::SeqCst);
            if let Some(b) = &input.video {
                b.mixer_pad.set_property("alpha", 0.0f64);
            }
            if let Some(b) = &input.audio {
                b.mixer_pad.set_property("mute", true);
            }
        }
        input.consent = consent;
        let at = self.running_time();
        self.apply();
        at
    }

    /// The participant's camera went off or came back (no video for a while).
    pub fn set_camera(&mut self, id: Uuid, on: bool) {
        if let Some(input) = self.inputs.get_mut(&id) {
            if input.camera_on != on {
                input.camera_on = on;
                self.apply();
            }
        }
    }

    /// The participant's video is a screen share.
    pub fn set_screen_share(&mut self, id: Uuid, on: bool) {
        if let Some(input) = self.inputs.get_mut(&id) {
            input.screen_share = on;
            self.apply();
        }
    }

    /// Change the participant's display name (label and initials).
    pub fn set_display_name(&mut self, id: Uuid, name: &str) {
        if let Some(input) = self.inputs.get_mut(&id) {
            input.display_name = name.to_string();
            // The label and the card are redrawn by `apply`, which compares the
            // planned text with the text they show.
            self.apply();
        }
    }

    /// Apply the moderator's layout choice.
    pub fn set_layout(&mut self, choice: LayoutChoice) {
        self.choice = choice;
        self.apply();
    }

    /// The active speaker changed (drives the speaker layout).
    pub fn set_active_speaker(&mut self, id: Option<Uuid>) {
        if self.active_speaker != id {
            self.active_speaker = id;
            self.apply();
        }
    }

    /// Show (or take down) the non-public slate. While it is up, no participant's
    /// picture or sound reaches the output. Returns the running time it took effect.
    pub fn set_slate(&mut self, on: bool) -> Result<Option<u64>, PipelineError> {
        if on && self.slate.is_none() {
            self.slate = Some(self.build_slate()?);
        }
        self.slate_on = on;
        self.apply();
        // Taken down (after the participants are placed again), the slate's card is
        // not kept running hidden; the next non-public part builds it again.
        if !on {
            if let Some(b) = self.slate.take() {
                remove_branch(&self.bin, &self.vmix, b);
            }
        }
        Ok(self.running_time())
    }

    /// Is the slate up?
    pub fn slate_on(&self) -> bool {
        self.slate_on
    }

    /// Show or hide the indicator overlay (no-op without one).
    pub fn set_indicator(&self, on: bool) {
        if let Some(t) = &self.indicator {
            t.set_property("silent", !on);
        }
    }

    /// Change the indicator's text (no-op without an indicator).
    pub fn set_indicator_text(&self, text: &str) {
        if let Some(t) = &self.indicator {
            t.set_property("text", escape_markup(text));
        }
    }

    /// A new output of the program (a ghost src pad on the bin, fed by the program's
    /// tee). Link it to a consumer; give it back with [`Program::release_output`].
    pub fn request_output(&self, kind: Kind) -> Result<gst::Pad, PipelineError> {
        tee_branch(
            &self.bin,
            &self.tees[&kind],
            &format!("{}_out", kind_name(kind)),
        )
    }

    /// Give back an output from [`Program::request_output`] (unlinked at an idle
    /// moment, so the program never sees a flushing consumer).
    pub fn release_output(&self, output: &gst::Pad) {
        release_tee_branch(&self.bin, output);
    }

    /// Gate counters of a participant's input: (passed, dropped) buffers.
    pub fn gate_counts(&self, id: Uuid, kind: Kind) -> Option<(u64, u64)> {
        let i = self.inputs.get(&id)?;
        let g = match kind {
            Kind::Video => &i.video_gate,
            Kind::Audio => &i.audio_gate,
        };
        Some((g.passed(), g.dropped()))
    }

    fn mixer(&self, kind: Kind) -> &gst::Element {
        match kind {
            Kind::Video => &self.vmix,
            Kind::Audio => &self.amix,
        }
    }

    fn build_slate(&self) -> Result<Branch, PipelineError> {
        let card = Card {
            colour: 0xff1d_3557,
            width: 640,
            height: 360,
            fps: self.settings.fps,
            font: "Sans Bold 24",
        };
        let text = escape_markup(&self.settings.slate_text);
        card.build(&self.bin, &self.vmix, &text)
    }
}
