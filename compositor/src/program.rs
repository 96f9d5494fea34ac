//! The program bin: one video compositor and one audio mixer for one output audience
//! (the recording audience or the livestream audience), fed by the participants'
//! decoded media through consent gates.
//!
//! ```text
//!  participant video ─▶ queue ─▶ [gate] ─▶ textoverlay (name) ─▶┐
//!  placeholder (initials / "not recorded") ─────────────────────▶│ compositor ─▶ I420 ─▶ indicator ─▶ tee ─▶ outputs
//!  slate (non-public part, on demand) ──────────────────────────▶│
//!  background (live clock, invisible) ──────────────────────────▶┘
//!  participant audio ─▶ queue ─▶ [gate] ─▶┐
//!  silence (live clock) ──────────────────▶│ audiomixer ─▶ S16LE 48 kHz stereo ─▶ tee ─▶ outputs
//! ```
//!
//! Both mixers run live with a latency setting, so an input that stalls is left
//! behind instead of freezing the program. A participant without consent for the
//! program's purpose contributes nothing: the gate drops their buffers before the
//! mixer input, and the mixer pads are muted / made transparent in the same call, so
//! buffers already queued inside a mixer are not used either. Scaling happens in the
//! compositor's input pads (keep aspect ratio), so there is exactly one conversion
//! per input and the output is the I420 the encoders take.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gremium_pipelines::{capsfilter, i420_caps, link_chain, make, PipelineError};
use gst::prelude::*;
use uuid::Uuid;

use crate::gate::{Gate, Verdict};

// Re-exported until the media plane moves to gremium_pipelines::tee (issue 19).
use crate::layout::{
    Canvas, LayoutEngine, LayoutKind, LayoutSettings, NonConsenting, Participant, Placement,
    TileContent,
};
pub use gremium_pipelines::tee::{
    release_tee_branch, release_tee_pad, tee_branch, unlink_when_idle,
};

/// How a program looks.
#[derive(Debug, Clone)]
pub struct ProgramSettings {
    /// Name of the bin (e.g. "program-recording").
    pub name: String,
    /// Output size.
    pub canvas: Canvas,
    /// Output frame rate.
    pub fps: u32,
    /// How long the mixers wait for a late input before leaving it out.
    pub latency: Duration,
    /// What non-consenting participants get: nothing or a neutral tile.
    pub non_consenting: NonConsenting,
    /// Text of the neutral tile for non-consenting participants.
    pub not_consenting_text: String,
    /// Draw name labels on the tiles.
    pub labels: bool,
    /// Text of the slate shown during non-public parts.
    pub slate_text: String,
    /// Text of the indicator overlay (e.g. "● REC"); `None`: no indicator.
    pub indicator: Option<String>,
    /// Gap between tiles in pixels.
    pub gap: u32,
    /// How inputs are scaled into their tiles.
    pub scaler: Scaler,
}

/// Resampling used when an input is scaled into its tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaler {
    /// Bilinear: about half the CPU of cubic; the default (tiles are small).
    Linear,
    /// Bicubic (GStreamer's own default).
    Cubic,
    /// Lanczos: sharpest, most expensive.
    Lanczos,
}

fn scaler_config(scaler: Scaler) -> gst::Structure {
    use gst_video::VideoResamplerMethod as M;
    let method = match scaler {
        Scaler::Linear => M::Linear,
        Scaler::Cubic => M::Cubic,
        Scaler::Lanczos => M::Lanczos,
    };
    gst::Structure::builder("GstVideoConverter")
        .field("GstVideoConverter.resampler-method", method)
        .build()
}

impl Default for ProgramSettings {
    fn default() -> Self {
        ProgramSettings {
            name: "program".into(),
            canvas: Canvas {
                width: 1280,
                height: 720,
            },
            fps: 30,
            latency: Duration::from_millis(100),
            non_consenting: NonConsenting::Placeholder,
            not_consenting_text: "Keine Einwilligung · No consent".into(),
            labels: true,
            slate_text: "Nicht-öffentlicher Teil\nNon-public part".into(),
            indicator: None,
            gap: 4,
            scaler: Scaler::Linear,
        }
    }
}

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

/// Media kinds of a program's inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Raw video.
    Video,
    /// Raw audio.
    Audio,
}

/// A chain of elements inside the program bin ending in a mixer pad.
struct Branch {
    elements: Vec<gst::Element>,
    /// The bin's ghost sink pad (participant inputs only).
    ghost: Option<gst::GhostPad>,
    mixer_pad: gst::Pad,
    /// The overlay drawing this branch's text, if any.
    text: Option<gst::Element>,
}

struct Input {
    display_name: String,
    consent: bool,
    screen_share: bool,
    camera_on: bool,
    video: Option<Branch>,
    audio: Option<Branch>,
    placeholder: Option<(Branch, TileContent)>,
    video_gate: Arc<Gate>,
    audio_gate: Arc<Gate>,
    switch: Arc<VideoSwitch>,
}

/// Serialises "make the video pad visible" between the streaming thread (a gate
/// opened on a keyframe) and the caller (consent withdrawn, layout changed), so a
/// withdrawal can never be followed by a late "visible" from the streaming thread.
#[derive(Default)]
struct VideoSwitch {
    lock: std::sync::Mutex<()>,
    /// The layout shows this participant's video.
    visible: std::sync::atomic::AtomicBool,
}

impl VideoSwitch {
    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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

fn link_err(what: &str) -> impl FnOnce(gst::PadLinkError) -> PipelineError + '_ {
    move |e| PipelineError::Link(format!("{what}: {e:?}"))
}

fn state_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::StateChange(e.to_string())
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

fn text_overlay(font: &str, halign: &str, valign: &str) -> Result<gst::Element, PipelineError> {
    let t = make("textoverlay", None)?;
    t.set_property("font-desc", font);
    t.set_property_from_str("halignment", halign);
    t.set_property_from_str("valignment", valign);
    t.set_property("wait-text", false);
    Ok(t)
}

fn pad_ok(p: Option<gst::Pad>, what: &str) -> Result<gst::Pad, PipelineError> {
    p.ok_or_else(|| PipelineError::Link(format!("no pad: {what}")))
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
        let input = Input {
            display_name: display_name.to_string(),
            consent,
            screen_share: false,
            camera_on: false,
            video: None,
            audio: None,
            placeholder: None,
            video_gate: Gate::new(),
            audio_gate: Gate::new(),
            switch: Arc::default(),
        };
        if consent {
            input.video_gate.open_now();
            input.audio_gate.open_now();
        }
        self.inputs.insert(id, input);
        self.order.push(id);
        self.apply();
    }

    /// Is the participant known to the program?
    pub fn has_participant(&self, id: Uuid) -> bool {
        self.inputs.contains_key(&id)
    }

    /// Connect a participant's decoded video or audio. Returns the program's sink pad
    /// the caller linked `upstream` to.
    pub fn connect(
        &mut self,
        id: Uuid,
        kind: Kind,
        upstream: &gst::Pad,
    ) -> Result<gst::Pad, PipelineError> {
        let labels = self.settings.labels;
        let scaler = self.settings.scaler;
        let mixer = self.mixer(kind).clone();
        let input = self
            .inputs
            .get_mut(&id)
            .ok_or_else(|| PipelineError::Link(format!("unknown participant {id}")))?;
        let existing = match kind {
            Kind::Video => input.video.take(),
            Kind::Audio => input.audio.take(),
        };
        if let Some(b) = existing {
            remove_branch(&self.bin, &mixer, b);
        }
        let queue = make("queue", None)?;
        queue.set_property_from_str("leaky", "downstream");
        queue.set_property("max-size-bytes", 0u32);
        queue.set_property("max-size-time", 0u64);
        // An error further in (the mixer pad, a label) must not stop the queue: a
        // queue keeps a downstream error and returns it to every later push, which
        // would stop the participant's tee and with it their media for every
        // program and consumer. (A rare CI failure looked like this: a publisher's
        // camera went dark for good right after a recording program was made, from
        // a flow error no element reported; the cause upstream is not proven.) The
        // guard drops what the mixer refuses and keeps the branch going.
        let guard: gst::Element = gremium_pipelines::guard::FlowGuard::new(None).upcast();
        let mut elements = vec![queue.clone(), guard];
        let mut text = None;
        let switch = input.switch.clone();
        let gate = match kind {
            Kind::Video => {
                queue.set_property("max-size-buffers", 3u32);
                if labels {
                    let t = text_overlay("Sans Bold 14", "left", "bottom")?;
                    t.set_property("shaded-background", true);
                    t.set_property("xpad", 6i32);
                    t.set_property("ypad", 4i32);
                    t.set_property("text", escape_markup(&input.display_name));
                    elements.push(t.clone());
                    text = Some(t);
                }
                input.video_gate.clone()
            }
            Kind::Audio => {
                queue.set_property("max-size-buffers", 50u32);
                input.audio_gate.clone()
            }
        };
        let refs: Vec<&gst::Element> = elements.iter().collect();
        self.bin.add_many(refs.iter().copied()).map_err(state_err)?;
        link_chain(&refs)?;
        let mixer_pad = pad_ok(mixer.request_pad_simple("sink_%u"), "mixer")?;
        match kind {
            Kind::Video => {
                mixer_pad.set_property("alpha", 0.0f64);
                mixer_pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
                mixer_pad.set_property("converter-config", scaler_config(scaler));
            }
            Kind::Audio => mixer_pad.set_property("mute", true),
        }
        pad_ok(elements[elements.len() - 1].static_pad("src"), "branch")?
            .link(&mixer_pad)
            .map_err(link_err("branch → mixer"))?;
        // The gate: on the queue's output, the last point before the mixer input.
        let video_pad = (kind == Kind::Video).then(|| mixer_pad.downgrade());
        pad_ok(queue.static_pad("src"), "queue")?.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let keyframe = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        !b.flags().contains(gst::BufferFlags::DELTA_UNIT)
                    }
                    _ => false,
                };
                match gate.judge(keyframe) {
                    // `Handled`, not `Drop`: gstreamer-rs has already taken the buffer, and
                    // GStreamer 1.22 would unref the NULL left behind (a CRITICAL).
                    Verdict::Drop => gst::PadProbeReturn::Handled,
                    Verdict::Pass => gst::PadProbeReturn::Ok,
                    Verdict::Opened => {
                        let _g = switch.guard();
                        let visible = switch.visible.load(std::sync::atomic::Ordering::SeqCst);
                        if let Some(pad) = video_pad.as_ref().and_then(|p| p.upgrade()) {
                            if visible && gate.is_open() {
                                pad.set_property("alpha", 1.0f64);
                            }
                        }
                        gst::PadProbeReturn::Ok
                    }
                }
            },
        );
        let target = pad_ok(queue.static_pad("sink"), "queue")?;
        let ghost = gst::GhostPad::builder_with_target(&target)
            .map_err(state_err)?
            .name(format!("{}_{id}", kind_name(kind)))
            .build();
        ghost.set_active(true).map_err(state_err)?;
        self.bin.add_pad(&ghost).map_err(state_err)?;
        for e in &elements {
            e.sync_state_with_parent().map_err(state_err)?;
        }
        upstream
            .link(&ghost)
            .map_err(link_err("participant → program"))?;
        let branch = Branch {
            elements,
            ghost: Some(ghost.clone()),
            mixer_pad,
            text,
        };
        match kind {
            Kind::Video => {
                input.video = Some(branch);
                input.camera_on = true;
            }
            Kind::Audio => input.audio = Some(branch),
        }
        self.apply();
        Ok(ghost.upcast())
    }

    /// Disconnect one of a participant's inputs (their media stopped). The caller
    /// releases its own upstream pad afterwards.
    pub fn disconnect(&mut self, id: Uuid, kind: Kind) {
        let Some(input) = self.inputs.get_mut(&id) else {
            return;
        };
        let branch = match kind {
            Kind::Video => {
                input.camera_on = false;
                input.video.take()
            }
            Kind::Audio => input.audio.take(),
        };
        if let Some(b) = branch {
            remove_branch(&self.bin, self.mixer(kind), b);
        }
        self.apply();
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
            if let Some(t) = input.video.as_ref().and_then(|b| b.text.as_ref()) {
                t.set_property("text", escape_markup(name));
            }
            if let Some((_, content)) = &mut input.placeholder {
                // Force the text to be redrawn by `apply`.
                *content = TileContent::Video;
            }
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

    /// Recompute the layout and move every mixer pad accordingly.
    fn apply(&mut self) {
        let participants: Vec<Participant> = self
            .order
            .iter()
            .filter_map(|id| {
                let i = self.inputs.get(id)?;
                Some(Participant {
                    id: *id,
                    has_video: i.camera_on && i.video.is_some(),
                    screen_share: i.screen_share && i.video.is_some(),
                    podium: self.choice.podium.contains(id),
                    consent: i.consent,
                })
            })
            .collect();
        let settings = LayoutSettings {
            kind: self.choice.kind,
            pinned: self.choice.pinned,
            active_speaker: self.active_speaker,
            non_consenting: self.settings.non_consenting,
            gap: self.settings.gap,
        };
        let placements = self
            .engine
            .layout(&participants, &settings, self.settings.canvas);
        let slate = self.slate_on;
        for (id, input) in self.inputs.iter_mut() {
            let placement = placements.iter().find(|p| p.id == *id).filter(|_| !slate);
            let shows_video =
                input.consent && placement.is_some_and(|p| p.content == TileContent::Video);
            {
                let _g = input.switch.guard();
                input
                    .switch
                    .visible
                    .store(shows_video, std::sync::atomic::Ordering::SeqCst);
                if let Some(b) = &input.video {
                    match placement {
                        // Until the gate opened on a keyframe the pad stays invisible;
                        // the streaming thread makes it visible then.
                        Some(p) if shows_video => {
                            let alpha = if input.video_gate.is_open() { 1.0 } else { 0.0 };
                            place(&b.mixer_pad, p, alpha)
                        }
                        _ => b.mixer_pad.set_property("alpha", 0.0f64),
                    }
                }
            }
            // In the podium layout the audience is neither seen nor heard.
            let audible = input.consent
                && !slate
                && (self.choice.kind != LayoutKind::Podium || self.choice.podium.contains(id));
            if let Some(b) = &input.audio {
                b.mixer_pad.set_property("mute", !audible);
            }
            let tile = placement
                .filter(|p| p.content != TileContent::Video)
                .map(|p| (p, p.content));
            match tile {
                Some((p, content)) => {
                    let text = match content {
                        TileContent::NotRecorded => {
                            escape_markup(&self.settings.not_consenting_text)
                        }
                        _ => format!(
                            "<span size=\"xx-large\">{}</span>\n{}",
                            escape_markup(&initials(&input.display_name)),
                            escape_markup(&input.display_name)
                        ),
                    };
                    if input.placeholder.is_none() {
                        match build_placeholder_in(&self.bin, &self.vmix, &text, self.settings.fps)
                        {
                            Ok(b) => input.placeholder = Some((b, content)),
                            Err(e) => tracing::warn!(error = %e, "placeholder tile not built"),
                        }
                    }
                    if let Some((b, shown)) = &mut input.placeholder {
                        if *shown != content {
                            if let Some(t) = &b.text {
                                t.set_property("text", &text);
                            }
                            *shown = content;
                        }
                        place(&b.mixer_pad, p, 1.0);
                    }
                }
                None => {
                    // Not kept hidden: a card is a live source making frames at the
                    // program's rate (a thread, text blending, the mixer waking for
                    // each), and most participants need theirs only until their
                    // camera's first frame. Built again when needed (a frame or two).
                    if let Some((b, _)) = input.placeholder.take() {
                        remove_branch(&self.bin, &self.vmix, b);
                    }
                }
            }
        }
        if let Some(s) = &self.slate {
            s.mixer_pad.set_property("xpos", 0i32);
            s.mixer_pad.set_property("ypos", 0i32);
            s.mixer_pad
                .set_property("width", self.settings.canvas.width as i32);
            s.mixer_pad
                .set_property("height", self.settings.canvas.height as i32);
            s.mixer_pad.set_property("zorder", 10_000u32);
            s.mixer_pad
                .set_property("alpha", if slate { 1.0f64 } else { 0.0 });
        }
        self.placements = if slate { Vec::new() } else { placements };
    }
}

/// A live source of a solid-colour picture with centred text (placeholder tiles, the
/// slate), at the program's frame rate: a live source's latency is one frame, and a
/// slow source would raise the latency of the whole program.
struct Card {
    colour: u32,
    width: i32,
    height: i32,
    fps: u32,
    font: &'static str,
}

impl Card {
    fn build(
        &self,
        bin: &gst::Bin,
        vmix: &gst::Element,
        text: &str,
    ) -> Result<Branch, PipelineError> {
        let src = make("videotestsrc", None)?;
        src.set_property("is-live", true);
        src.set_property_from_str("pattern", "solid-color");
        src.set_property("foreground-color", self.colour);
        let caps = capsfilter(i420_caps(self.width, self.height, self.fps))?;
        let overlay = text_overlay(self.font, "center", "center")?;
        overlay.set_property("text", text);
        source_branch(bin, vmix, vec![src, caps, overlay.clone()], Some(overlay))
    }
}

/// A placeholder tile: initials or the "no consent" text on a dark tile.
fn build_placeholder_in(
    bin: &gst::Bin,
    vmix: &gst::Element,
    text: &str,
    fps: u32,
) -> Result<Branch, PipelineError> {
    let card = Card {
        colour: 0xff2f_3640,
        width: 320,
        height: 180,
        fps,
        font: "Sans Bold 20",
    };
    card.build(bin, vmix, text)
}

/// Add a chain that starts with a source to the bin and feed it to the compositor
/// (invisible until placed).
fn source_branch(
    bin: &gst::Bin,
    vmix: &gst::Element,
    elements: Vec<gst::Element>,
    text: Option<gst::Element>,
) -> Result<Branch, PipelineError> {
    let refs: Vec<&gst::Element> = elements.iter().collect();
    bin.add_many(refs.iter().copied()).map_err(state_err)?;
    link_chain(&refs)?;
    let mixer_pad = pad_ok(vmix.request_pad_simple("sink_%u"), "compositor")?;
    mixer_pad.set_property("alpha", 0.0f64);
    mixer_pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
    pad_ok(elements[elements.len() - 1].static_pad("src"), "source")?
        .link(&mixer_pad)
        .map_err(link_err("source → compositor"))?;
    // Downstream first: a source started before the elements after it pushes into
    // a flushing pad, gets FLUSHING back and stops for good (no error posted).
    for e in elements.iter().rev() {
        e.sync_state_with_parent().map_err(state_err)?;
    }
    Ok(Branch {
        elements,
        ghost: None,
        mixer_pad,
        text,
    })
}

fn place(pad: &gst::Pad, p: &Placement, alpha: f64) {
    pad.set_property("xpos", p.rect.x as i32);
    pad.set_property("ypos", p.rect.y as i32);
    pad.set_property("width", p.rect.w as i32);
    pad.set_property("height", p.rect.h as i32);
    pad.set_property("zorder", p.z + 1);
    pad.set_property("alpha", alpha);
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Video => "video",
        Kind::Audio => "audio",
    }
}

/// Ask upstream of `element` for a keyframe (it reaches the publisher as PLI/FIR).
fn request_keyframe(element: &gst::Element) {
    if let Some(pad) = element.static_pad("sink") {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        let _ = pad.push_event(event);
    }
}

/// Take a branch out of the running program: unlink its input at an idle moment,
/// stop its elements and give its mixer pad back.
fn remove_branch(bin: &gst::Bin, mixer: &gst::Element, b: Branch) {
    if let Some(ghost) = &b.ghost {
        if let Some(peer) = ghost.peer() {
            unlink_when_idle(ghost.upcast_ref(), &peer);
        }
    }
    for e in &b.elements {
        gremium_pipelines::stop_for_good(e);
    }
    for e in &b.elements {
        let _ = bin.remove(e);
    }
    if let Some(ghost) = &b.ghost {
        let _ = ghost.set_active(false);
        let _ = bin.remove_pad(ghost);
    }
    mixer.release_request_pad(&b.mixer_pad);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_and_markup() {
        assert_eq!(initials("Anna Beate Schmidt"), "AS");
        assert_eq!(initials("ümit"), "Ü");
        assert_eq!(initials("  "), "?");
        assert_eq!(escape_markup("A & <B>"), "A &amp; &lt;B&gt;");
    }
}
