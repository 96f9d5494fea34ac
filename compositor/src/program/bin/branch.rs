//! The pieces a program bin is built from: a [`Branch`] (a chain of elements ending
//! in a mixer pad), the [`Card`] sources (placeholder tiles, the slate), and putting a
//! branch in place or taking it out of the running bin.
//!
//! Must not: decide what is shown (that is [`scene`](crate::program::scene)) or keep
//! per-participant state (that is the bin's).

use gremium_pipelines::tee::unlink_when_idle;
use gremium_pipelines::{capsfilter, i420_caps, link_chain, make, PipelineError};
use gst::prelude::*;

use crate::layout::Placement;
use crate::program::{Kind, Scaler};

/// A chain of elements inside the program bin ending in a mixer pad.
pub(super) struct Branch {
    pub(super) elements: Vec<gst::Element>,
    /// The bin's ghost sink pad (participant inputs only).
    pub(super) ghost: Option<gst::GhostPad>,
    pub(super) mixer_pad: gst::Pad,
    /// The overlay drawing this branch's text, if any.
    pub(super) text: Option<gst::Element>,
}

pub(super) fn link_err(what: &str) -> impl FnOnce(gst::PadLinkError) -> PipelineError + '_ {
    move |e| PipelineError::Link(format!("{what}: {e:?}"))
}

pub(super) fn state_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::StateChange(e.to_string())
}

pub(super) fn pad_ok(p: Option<gst::Pad>, what: &str) -> Result<gst::Pad, PipelineError> {
    p.ok_or_else(|| PipelineError::Link(format!("no pad: {what}")))
}

pub(super) fn scaler_config(scaler: Scaler) -> gst::Structure {
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

pub(super) fn text_overlay(
    font: &str,
    halign: &str,
    valign: &str,
) -> Result<gst::Element, PipelineError> {
    let t = make("textoverlay", None)?;
    t.set_property("font-desc", font);
    t.set_property_from_str("halignment", halign);
    t.set_property_from_str("valignment", valign);
    t.set_property("wait-text", false);
    Ok(t)
}

/// A live source of a solid-colour picture with centred text (placeholder tiles, the
/// slate), at the program's frame rate: a live source's latency is one frame, and a
/// slow source would raise the latency of the whole program.
pub(super) struct Card {
    pub(super) colour: u32,
    pub(super) width: i32,
    pub(super) height: i32,
    pub(super) fps: u32,
    pub(super) font: &'static str,
}

impl Card {
    pub(super) fn build(
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
pub(super) fn build_placeholder_in(
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

pub(super) fn place(pad: &gst::Pad, p: &Placement, alpha: f64) {
    pad.set_property("xpos", p.rect.x as i32);
    pad.set_property("ypos", p.rect.y as i32);
    pad.set_property("width", p.rect.w as i32);
    pad.set_property("height", p.rect.h as i32);
    pad.set_property("zorder", p.z + 1);
    pad.set_property("alpha", alpha);
}

pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Video => "video",
        Kind::Audio => "audio",
    }
}

/// Ask upstream of `element` for a keyframe (it reaches the publisher as PLI/FIR).
pub(super) fn request_keyframe(element: &gst::Element) {
    if let Some(pad) = element.static_pad("sink") {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        let _ = pad.push_event(event);
    }
}

/// Take a branch out of the running program: unlink its input at an idle moment,
/// stop its elements and give its mixer pad back.
pub(super) fn remove_branch(bin: &gst::Bin, mixer: &gst::Element, b: Branch) {
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
