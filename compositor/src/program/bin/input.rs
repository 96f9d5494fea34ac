//! A participant's inputs to the program bin: their state, the consent gates, and
//! the branch each decoded stream takes to its mixer pad
//! (`queue ! FlowGuard [! textoverlay]`, the gate on the queue's output).
//!
//! Must not: place or show anything (the scene plan decides, `apply` carries it out).

use std::sync::Arc;

use gremium_pipelines::{link_chain, make, PipelineError};
use gst::prelude::*;
use uuid::Uuid;

use super::branch::{
    kind_name, link_err, pad_ok, remove_branch, scaler_config, state_err, text_overlay, Branch,
};
use super::Program;
use crate::gate::{Gate, Verdict};
use crate::program::scene::escape_markup;
use crate::program::Kind;

/// One participant of the program and the branches of theirs the bin holds.
pub(super) struct Input {
    pub(super) display_name: String,
    pub(super) consent: bool,
    pub(super) screen_share: bool,
    pub(super) camera_on: bool,
    pub(super) video: Option<Branch>,
    pub(super) audio: Option<Branch>,
    /// The card shown instead of their video, with the text it draws.
    pub(super) placeholder: Option<(Branch, String)>,
    /// The text on their video's name label, as last set.
    pub(super) label: Option<String>,
    pub(super) video_gate: Arc<Gate>,
    pub(super) audio_gate: Arc<Gate>,
    pub(super) switch: Arc<VideoSwitch>,
}

impl Input {
    pub(super) fn new(display_name: &str, consent: bool) -> Input {
        let input = Input {
            display_name: display_name.to_string(),
            consent,
            screen_share: false,
            camera_on: false,
            video: None,
            audio: None,
            placeholder: None,
            label: None,
            video_gate: Gate::new(),
            audio_gate: Gate::new(),
            switch: Arc::default(),
        };
        if consent {
            input.video_gate.open_now();
            input.audio_gate.open_now();
        }
        input
    }
}

/// Serialises "make the video pad visible" between the streaming thread (a gate
/// opened on a keyframe) and the caller (consent withdrawn, layout changed), so a
/// withdrawal can never be followed by a late "visible" from the streaming thread.
#[derive(Default)]
pub(super) struct VideoSwitch {
    lock: std::sync::Mutex<()>,
    /// The layout shows this participant's video.
    pub(super) visible: std::sync::atomic::AtomicBool,
}

impl VideoSwitch {
    pub(super) fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Program {
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
                input.label = None;
                if labels {
                    let t = text_overlay("Sans Bold 14", "left", "bottom")?;
                    t.set_property("shaded-background", true);
                    t.set_property("xpad", 6i32);
                    t.set_property("ypad", 4i32);
                    let label = escape_markup(&input.display_name);
                    t.set_property("text", &label);
                    input.label = Some(label);
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
                input.label = None;
                input.video.take()
            }
            Kind::Audio => input.audio.take(),
        };
        if let Some(b) = branch {
            remove_branch(&self.bin, self.mixer(kind), b);
        }
        self.apply();
    }
}
