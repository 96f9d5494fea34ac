//! Branches of a `tee` that come and go while the pipeline runs.
//!
//! Owns: handing out a tee's request pad as a ghost src pad of the bin the tee lives
//! in ([`tee_branch`]), giving it back without the tee ever pushing into a flushing
//! pad ([`release_tee_branch`], [`release_tee_pad`]), and unlinking two pads at an
//! idle moment ([`unlink_when_idle`]). The program bins and the media plane's shared
//! encoders both fan out this way.
//!
//! Must not: know what flows through the tee (program, encoder, meeting) nor stop or
//! remove elements: the caller owns the branch's consumer.

use std::time::Duration;

use gst::prelude::*;

use crate::PipelineError;

fn state_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::StateChange(e.to_string())
}

/// Give a tee's request pad back (after its consumer was unlinked).
pub fn release_tee_pad(pad: Option<gst::Pad>) {
    if let Some(p) = pad {
        if let Some(tee) = p.parent_element() {
            tee.release_request_pad(&p);
        }
    }
}

/// A new branch of `tee` (an element of `bin`): an active ghost src pad on `bin`
/// named `{prefix}_{tee pad}`, to be linked outside.
pub fn tee_branch(
    bin: &gst::Bin,
    tee: &gst::Element,
    prefix: &str,
) -> Result<gst::Pad, PipelineError> {
    let pad = tee
        .request_pad_simple("src_%u")
        .ok_or_else(|| PipelineError::Link("no pad: tee".into()))?;
    let ghost = gst::GhostPad::builder_with_target(&pad)
        .map_err(state_err)?
        .name(format!("{prefix}_{}", pad.name()))
        .build();
    let added = ghost
        .set_active(true)
        .map_err(state_err)
        .and_then(|_| bin.add_pad(&ghost).map_err(state_err));
    if let Err(e) = added {
        tee.release_request_pad(&pad);
        return Err(e);
    }
    Ok(ghost.upcast())
}

/// Give back a branch from [`tee_branch`]: unlinked from its consumer at an idle
/// moment, then the tee's pad released before the ghost goes inactive (a push into
/// an inactive pad returns FLUSHING, which the tee would pass upstream).
pub fn release_tee_branch(bin: &gst::Bin, branch: &gst::Pad) {
    let Some(ghost) = branch.downcast_ref::<gst::GhostPad>() else {
        return;
    };
    let target = ghost.target();
    if let Some(consumer) = ghost.peer() {
        unlink_when_idle(&consumer, ghost.upcast_ref());
    }
    release_tee_pad(target);
    let _ = ghost.set_active(false);
    let _ = bin.remove_pad(ghost);
}

/// Unlink `downstream` from its `upstream` peer at a moment no buffer is in flight.
pub fn unlink_when_idle(downstream: &gst::Pad, upstream: &gst::Pad) {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = downstream.clone();
    upstream.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
        let _ = pad.unlink(&target);
        let _ = tx.send(());
        gst::PadProbeReturn::Remove
    });
    if rx.recv_timeout(Duration::from_secs(2)).is_err() {
        // Never idle (a stuck upstream): unlink anyway; a push in flight fails once.
        let _ = upstream.unlink(downstream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A branch taken and given back while a live source runs: the tee keeps
    /// feeding its other branch, and the bin's ghost pad and the tee's request pad
    /// are both gone afterwards.
    #[test]
    fn a_branch_comes_and_goes_while_the_tee_runs() {
        crate::init().expect("gstreamer");
        let pipeline = gst::Pipeline::new();
        let bin = gst::Bin::with_name("b");
        let src = crate::make("audiotestsrc", None).unwrap();
        src.set_property("is-live", true);
        let tee = crate::make("tee", Some("t")).unwrap();
        tee.set_property("allow-not-linked", true);
        // Not async: an unlinked sink would hold the pipeline in PAUSED (no preroll).
        let keep = crate::make("fakesink", Some("keep")).unwrap();
        keep.set_property("sync", false);
        keep.set_property("async", false);
        bin.add_many([&src, &tee, &keep]).unwrap();
        crate::link_chain(&[&src, &tee, &keep]).unwrap();
        let consumer = crate::make("fakesink", Some("consumer")).unwrap();
        consumer.set_property("sync", false);
        consumer.set_property("async", false);
        pipeline.add_many([bin.upcast_ref(), &consumer]).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();

        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        keep.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = consumed.clone();
        consumer
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        for _ in 0..5 {
            let branch = tee_branch(&bin, &tee, "out").unwrap();
            assert!(branch.name().starts_with("out_src_"), "{}", branch.name());
            branch.link(&consumer.static_pad("sink").unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            release_tee_branch(&bin, &branch);
            assert!(bin.static_pad(&branch.name()).is_none(), "ghost removed");
            assert!(consumer.static_pad("sink").unwrap().peer().is_none());
        }
        assert!(
            consumed.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "the branches carried data"
        );
        // Only the `keep` branch's request pad is left.
        assert_eq!(tee.src_pads().len(), 1);
        let before = count.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        let after = count.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            after > before,
            "the other branch goes on: {before} → {after}"
        );
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
