//! Carrying out a scene plan on the running bin: each change of the plan becomes
//! mixer pad properties, label and card texts, and cards built or taken down. What
//! the bin already shows (the label and card texts) is compared with the plan, so
//! unchanged text is not redrawn.
//!
//! Must not: decide anything the plan does not say; the only runtime state it adds
//! is the consent gate (a participant's video stays transparent until their gate
//! opened on a keyframe).

use std::sync::atomic::Ordering;

use gst::prelude::*;

use super::branch::{build_placeholder_in, place, remove_branch};
use super::Program;
use crate::program::scene::{self, SceneInput, SceneParticipant};

impl Program {
    /// Plan the scene again and move every mixer pad accordingly.
    pub(super) fn apply(&mut self) {
        let people: Vec<SceneParticipant> = self
            .order
            .iter()
            .filter_map(|id| {
                let i = self.inputs.get(id)?;
                Some(SceneParticipant {
                    id: *id,
                    display_name: i.display_name.clone(),
                    consent: i.consent,
                    camera_on: i.camera_on,
                    screen_share: i.screen_share,
                    video_connected: i.video.is_some(),
                })
            })
            .collect();
        let plan = scene::plan(
            &mut self.engine,
            &SceneInput {
                participants: &people,
                choice: &self.choice,
                active_speaker: self.active_speaker,
                slate: self.slate_on,
                settings: &self.settings,
            },
        );
        for planned in &plan.participants {
            let Some(input) = self.inputs.get_mut(&planned.id) else {
                continue;
            };
            {
                let _g = input.switch.guard();
                input
                    .switch
                    .visible
                    .store(planned.video.is_some(), Ordering::SeqCst);
                if let Some(b) = &input.video {
                    // The label first: the pad may become visible from here on.
                    if let (Some(text), Some(overlay)) = (&planned.label, &b.text) {
                        if input.label.as_ref() != Some(text) {
                            overlay.set_property("text", text);
                            input.label = Some(text.clone());
                        }
                    }
                    match &planned.video {
                        // Until the gate opened on a keyframe the pad stays invisible;
                        // the streaming thread makes it visible then.
                        Some(p) => {
                            let alpha = if input.video_gate.is_open() { 1.0 } else { 0.0 };
                            place(&b.mixer_pad, p, alpha)
                        }
                        None => b.mixer_pad.set_property("alpha", 0.0f64),
                    }
                }
            }
            if let Some(b) = &input.audio {
                b.mixer_pad.set_property("mute", !planned.audible);
            }
            match &planned.card {
                Some(card) => {
                    if input.placeholder.is_none() {
                        match build_placeholder_in(
                            &self.bin,
                            &self.vmix,
                            &card.text,
                            self.settings.fps,
                        ) {
                            Ok(b) => input.placeholder = Some((b, card.text.clone())),
                            Err(e) => tracing::warn!(error = %e, "placeholder tile not built"),
                        }
                    }
                    if let Some((b, shown)) = &mut input.placeholder {
                        if *shown != card.text {
                            if let Some(t) = &b.text {
                                t.set_property("text", &card.text);
                            }
                            *shown = card.text.clone();
                        }
                        place(&b.mixer_pad, &card.placement, 1.0);
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
            let canvas = self.settings.canvas;
            s.mixer_pad.set_property("xpos", 0i32);
            s.mixer_pad.set_property("ypos", 0i32);
            s.mixer_pad.set_property("width", canvas.width as i32);
            s.mixer_pad.set_property("height", canvas.height as i32);
            s.mixer_pad.set_property("zorder", 10_000u32);
            s.mixer_pad
                .set_property("alpha", if plan.slate { 1.0f64 } else { 0.0 });
        }
        self.placements = plan.placements;
    }
}
