//! The Pipeline wrapper on real GStreamer pipelines: natural end, stop with EOS,
//! a frozen pipeline caught by the watchdog (with its graph dumped), and errors.

use std::time::Duration;

use gremium_pipelines::{
    link_chain, make, BusEvent, Lifecycle, Pipeline, PipelineError, PipelineSettings,
};
use gst::prelude::*;

fn settings(name: &str) -> PipelineSettings {
    let dot_dir = std::env::temp_dir().join(format!("gremium-dot-{}-{}", name, std::process::id()));
    PipelineSettings {
        name: name.into(),
        dot_dir,
    }
}

fn test_chain(p: &Pipeline, live: bool, buffers: Option<i32>) -> (gst::Element, gst::Element) {
    let src = make("videotestsrc", None).unwrap();
    src.set_property("is-live", live);
    if let Some(n) = buffers {
        src.set_property("num-buffers", n);
    }
    let caps = make("capsfilter", None).unwrap();
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", 64i32)
            .field("height", 36i32)
            .build(),
    );
    let sink = make("fakesink", Some("sink")).unwrap();
    sink.set_property("sync", live);
    p.gst().add_many([&src, &caps, &sink]).unwrap();
    link_chain(&[&src, &caps, &sink]).unwrap();
    (src, sink)
}

async fn wait_terminal(p: &Pipeline) -> Lifecycle {
    let mut rx = p.watch();
    let state = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| l.is_terminal()))
        .await
        .expect("terminal within 10 s")
        .unwrap()
        .clone();
    state
}

#[tokio::test]
async fn a_finite_source_finishes_by_itself() {
    gremium_pipelines::init().unwrap();
    let p = Pipeline::new(settings("finite"));
    let _ = test_chain(&p, false, Some(20));
    let mut events = p.subscribe();
    assert_eq!(p.lifecycle(), Lifecycle::Building);
    p.start().unwrap();
    assert_eq!(wait_terminal(&p).await, Lifecycle::Finished);
    let mut saw_eos = false;
    while let Ok(e) = events.try_recv() {
        saw_eos |= e == BusEvent::Eos;
    }
    assert!(saw_eos, "EOS came through the bus stream");
    p.stop(Duration::from_secs(1))
        .await
        .expect("stopping a finished pipeline is harmless");
    assert!(
        p.start().is_err(),
        "no restart: the lifecycle is forward-only"
    );
}

#[tokio::test]
async fn stopping_a_live_pipeline_drains_with_eos() {
    gremium_pipelines::init().unwrap();
    let p = Pipeline::new(settings("live"));
    let (_src, sink) = test_chain(&p, true, None);
    p.start().unwrap();
    assert_eq!(p.lifecycle(), Lifecycle::Running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last: Option<gst::Sample> = sink.property("last-sample");
    assert!(last.is_some(), "frames reached the sink while running");
    p.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(p.lifecycle(), Lifecycle::Finished);
    assert_eq!(p.gst().current_state(), gst::State::Null);
    p.stop(Duration::from_secs(5))
        .await
        .expect("second stop is harmless");
}

#[tokio::test]
async fn a_pipeline_that_swallows_eos_is_reported_frozen_with_its_graph() {
    gremium_pipelines::init().unwrap();
    let s = settings("frozen");
    let dot_dir = s.dot_dir.clone();
    let p = Pipeline::new(s);
    let (_src, sink) = test_chain(&p, true, None);
    // A hung element stand-in: EOS is held before the sink and never arrives.
    let blocking = gst::PadProbeType::BLOCK | gst::PadProbeType::EVENT_DOWNSTREAM;
    sink.static_pad("sink")
        .unwrap()
        .add_probe(blocking, |_, info| match info.event() {
            Some(e) if e.type_() == gst::EventType::Eos => gst::PadProbeReturn::Ok, // stays blocked
            _ => gst::PadProbeReturn::Pass,
        });
    p.start().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let err = p
        .stop(Duration::from_millis(700))
        .await
        .expect_err("watchdog fires");
    assert!(started.elapsed() < Duration::from_secs(3));
    let PipelineError::PipelineFrozen {
        dot_file: Some(dot),
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(dot.starts_with(&dot_dir));
    let graph = std::fs::read_to_string(&dot).unwrap();
    assert!(
        graph.starts_with("digraph") && graph.contains("videotestsrc"),
        "{graph:.200}"
    );
    assert!(matches!(p.lifecycle(), Lifecycle::Failed(m) if m.contains("frozen")));
    assert_eq!(
        p.gst().current_state(),
        gst::State::Null,
        "torn down anyway"
    );
    let _ = std::fs::remove_dir_all(dot_dir);
}

#[tokio::test]
async fn element_errors_fail_the_pipeline_with_the_reason() {
    gremium_pipelines::init().unwrap();
    let p = Pipeline::new(settings("broken"));
    let src = make("filesrc", None).unwrap();
    src.set_property("location", "/nonexistent/gremium-input.webm");
    let sink = make("fakesink", None).unwrap();
    p.gst().add_many([&src, &sink]).unwrap();
    link_chain(&[&src, &sink]).unwrap();
    let started = p.start();
    assert!(started.is_err(), "filesrc cannot open its file");
    match wait_terminal(&p).await {
        Lifecycle::Failed(reason) => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(make("no-such-element", None), Err(PipelineError::MissingElement { factory }) if factory == "no-such-element")
    );
    let a = make("fakesrc", None).unwrap();
    let b = make("fakesrc", None).unwrap();
    assert!(
        matches!(link_chain(&[&a, &b]), Err(PipelineError::Link(_))),
        "two sources do not link"
    );
}
