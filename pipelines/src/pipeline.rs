//! A GStreamer pipeline with a forward-only lifecycle, its bus read as an async
//! stream on a task of its own, and stop = EOS with a watchdog.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use gst::prelude::*;
use tokio::sync::{broadcast, watch};

use crate::PipelineError;

/// Where a pipeline is in its life. `Finished` and `Failed` are terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Elements are being added and linked; nothing runs yet.
    Building,
    /// Set to PLAYING; media flows.
    Running,
    /// EOS was sent; waiting for every sink to receive it.
    Draining,
    /// Ended cleanly (EOS reached the sinks, or stopped before it ran). Terminal.
    Finished,
    /// Ended with an error, or froze while draining. Terminal.
    Failed(String),
}

/// What happened to a pipeline, as input to [`Lifecycle::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// `start()` set the pipeline to PLAYING.
    Started,
    /// `stop()` was called.
    StopRequested,
    /// The bus reported EOS (all sinks drained).
    Eos,
    /// The bus reported an error.
    Error(String),
    /// The EOS watchdog expired.
    Frozen,
}

impl Lifecycle {
    /// True for `Finished` and `Failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Lifecycle::Finished | Lifecycle::Failed(_))
    }

    /// The single transition function. Terminal states never change; events that do
    /// not apply leave the state as it is.
    pub fn apply(&self, event: &LifecycleEvent) -> Lifecycle {
        use Lifecycle::*;
        use LifecycleEvent as E;
        match (self, event) {
            (Finished | Failed(_), _) => self.clone(),
            (Building, E::Started) => Running,
            (Building, E::StopRequested) => Finished,
            (Running, E::StopRequested) => Draining,
            (Running | Draining, E::Eos) => Finished,
            (_, E::Error(m)) => Failed(m.clone()),
            (Draining, E::Frozen) => {
                Failed("pipeline frozen: EOS did not reach the sinks in time".into())
            }
            _ => self.clone(),
        }
    }
}

/// A message from the bus, reduced to what the media plane acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Every sink received EOS.
    Eos,
    /// An element failed.
    Error {
        /// Element that posted it.
        source: String,
        /// Error text.
        message: String,
    },
    /// An element warned; the pipeline goes on.
    Warning {
        /// Element that posted it.
        source: String,
        /// Warning text.
        message: String,
    },
    /// An element message (e.g. level, webrtcbin stats), by structure name.
    Element {
        /// Element that posted it.
        source: String,
        /// Name of the message structure.
        name: String,
    },
}

fn source_name(msg: &gst::Message) -> String {
    msg.src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn to_bus_event(msg: &gst::Message) -> Option<BusEvent> {
    use gst::MessageView;
    match msg.view() {
        MessageView::Eos(_) => Some(BusEvent::Eos),
        MessageView::Error(e) => Some(BusEvent::Error {
            source: source_name(msg),
            message: e.error().to_string(),
        }),
        MessageView::Warning(w) => Some(BusEvent::Warning {
            source: source_name(msg),
            message: w.error().to_string(),
        }),
        MessageView::Element(e) => e.structure().map(|s| BusEvent::Element {
            source: source_name(msg),
            name: s.name().to_string(),
        }),
        _ => None,
    }
}

/// What the caller decided about a pipeline (validated before building).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Pipeline name (appears in logs and dot files).
    pub name: String,
    /// Where a frozen pipeline's graph is written as a dot file.
    pub dot_dir: PathBuf,
}

/// A GStreamer pipeline and its lifecycle. Dropping it sets the pipeline to NULL.
pub struct Pipeline {
    settings: PipelineSettings,
    pipeline: gst::Pipeline,
    lifecycle: watch::Sender<Lifecycle>,
    events: broadcast::Sender<BusEvent>,
    bus_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Pipeline {
    /// An empty pipeline in state `Building`. Call [`crate::init`] first.
    pub fn new(settings: PipelineSettings) -> Pipeline {
        let pipeline = gst::Pipeline::with_name(&settings.name);
        Pipeline {
            settings,
            pipeline,
            lifecycle: watch::Sender::new(Lifecycle::Building),
            events: broadcast::channel(64).0,
            bus_task: Mutex::new(None),
        }
    }

    /// The GStreamer pipeline, for adding and linking elements.
    pub fn gst(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Current lifecycle state.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.borrow().clone()
    }

    /// Watch lifecycle changes.
    pub fn watch(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Subscribe to bus events (subscribe before `start` to see everything).
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.events.subscribe()
    }

    fn advance(&self, event: LifecycleEvent) {
        advance(&self.lifecycle, &event);
    }

    /// Start reading the bus on a tokio task and set the pipeline to PLAYING.
    pub fn start(&self) -> Result<(), PipelineError> {
        if self.lifecycle() != Lifecycle::Building {
            return Err(PipelineError::StateChange(format!(
                "cannot start a pipeline that is {:?}",
                self.lifecycle()
            )));
        }
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| PipelineError::StateChange("pipeline has no bus".into()))?;
        let mut stream = bus.stream();
        let lifecycle = self.lifecycle.clone();
        let events = self.events.clone();
        let name = self.settings.name.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Some(event) = to_bus_event(&msg) else {
                    continue;
                };
                match &event {
                    BusEvent::Eos => advance(&lifecycle, &LifecycleEvent::Eos),
                    BusEvent::Error { source, message } => {
                        tracing::warn!(pipeline = %name, %source, %message, "pipeline error");
                        advance(
                            &lifecycle,
                            &LifecycleEvent::Error(format!("{source}: {message}")),
                        );
                    }
                    BusEvent::Warning { source, message } => {
                        tracing::debug!(pipeline = %name, %source, %message, "pipeline warning");
                    }
                    BusEvent::Element { .. } => {}
                }
                let _ = events.send(event);
            }
        });
        *self.bus_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        match self.pipeline.set_state(gst::State::Playing) {
            Ok(_) => {
                self.advance(LifecycleEvent::Started);
                Ok(())
            }
            Err(_) => {
                let _ = self.pipeline.set_state(gst::State::Null);
                let why = format!("{} refused to start", self.settings.name);
                self.advance(LifecycleEvent::Error(why.clone()));
                Err(PipelineError::StateChange(why))
            }
        }
    }

    /// Stop: send EOS and wait up to `watchdog` for it to reach every sink, then set
    /// NULL. On timeout the graph is dumped to a dot file, the pipeline is torn down
    /// and `PipelineFrozen` is returned. Stopping again, or after the pipeline ended
    /// by itself, is harmless.
    pub async fn stop(&self, watchdog: Duration) -> Result<(), PipelineError> {
        let before = self.lifecycle();
        match before {
            Lifecycle::Building | Lifecycle::Running => {
                self.advance(LifecycleEvent::StopRequested);
                if before == Lifecycle::Running {
                    self.pipeline.send_event(gst::event::Eos::new());
                }
            }
            Lifecycle::Draining | Lifecycle::Finished | Lifecycle::Failed(_) => {}
        }
        let mut rx = self.lifecycle.subscribe();
        let ended = tokio::time::timeout(watchdog, rx.wait_for(Lifecycle::is_terminal)).await;
        let result = match ended {
            Ok(_) => Ok(()),
            Err(_) => {
                let dot = self.dump_dot("frozen");
                self.advance(LifecycleEvent::Frozen);
                Err(PipelineError::PipelineFrozen { dot_file: dot })
            }
        };
        // Setting NULL joins streaming threads: do it on the blocking pool.
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
        result
    }

    /// Write the pipeline graph as a dot file into the configured directory.
    pub fn dump_dot(&self, label: &str) -> Option<PathBuf> {
        let data = self
            .pipeline
            .debug_to_dot_data(gst::DebugGraphDetails::all());
        let file = dot_path(&self.settings.dot_dir, &self.settings.name, label);
        match std::fs::create_dir_all(&self.settings.dot_dir)
            .and_then(|_| std::fs::write(&file, data.as_bytes()))
        {
            Ok(()) => Some(file),
            Err(e) => {
                tracing::error!(error = %e, "could not write the pipeline graph");
                None
            }
        }
    }
}

fn advance(lifecycle: &watch::Sender<Lifecycle>, event: &LifecycleEvent) {
    lifecycle.send_if_modified(|state| {
        let next = state.apply(event);
        let changed = next != *state;
        *state = next;
        changed
    });
}

fn dot_path(dir: &Path, name: &str, label: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}-{label}-{stamp}.dot"))
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(task) = self
            .bus_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Make an element, naming the factory in the error when its plugin is missing.
pub fn make(factory: &str, name: Option<&str>) -> Result<gst::Element, PipelineError> {
    let mut builder = gst::ElementFactory::make(factory);
    if let Some(n) = name {
        builder = builder.name(n);
    }
    builder.build().map_err(|_| PipelineError::MissingElement {
        factory: factory.to_string(),
    })
}

/// A `capsfilter` holding `caps`.
pub fn capsfilter(caps: gst::Caps) -> Result<gst::Element, PipelineError> {
    let f = make("capsfilter", None)?;
    f.set_property("caps", caps);
    Ok(f)
}

/// Raw I420 video caps of a size and frame rate.
pub fn i420_caps(width: i32, height: i32, fps: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width)
        .field("height", height)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build()
}

/// Link elements in a chain, naming the pair that would not link.
pub fn link_chain(elements: &[&gst::Element]) -> Result<(), PipelineError> {
    for pair in elements.windows(2) {
        pair[0]
            .link(pair[1])
            .map_err(|_| PipelineError::Link(format!("{} ! {}", pair[0].name(), pair[1].name())))?;
    }
    Ok(())
}

/// Stop an element of a running bin for good: its state is locked first, so a state
/// change of the parent meanwhile cannot bring it back up. (A pipeline changes the
/// state of all its children, for instance when it regains PLAYING after a new async
/// sink prerolled; an element raised again that way and then dropped is disposed in
/// PAUSED with its streaming thread still running.)
pub fn stop_for_good(element: &impl IsA<gst::Element>) {
    element.set_locked_state(true);
    let _ = element.set_state(gst::State::Null);
}

/// [`stop_for_good`] and take the element out of `parent`.
pub fn stop_and_remove(parent: &impl IsA<gst::Bin>, element: &impl IsA<gst::Element>) {
    stop_for_good(element);
    let _ = parent.remove(element);
}

#[cfg(test)]
mod tests {
    use super::*;
    use Lifecycle::*;
    use LifecycleEvent as E;

    #[test]
    fn lifecycle_is_forward_only() {
        assert_eq!(Building.apply(&E::Started), Running);
        assert_eq!(Running.apply(&E::StopRequested), Draining);
        assert_eq!(
            Draining.apply(&E::StopRequested),
            Draining,
            "second stop is harmless"
        );
        assert_eq!(Draining.apply(&E::Eos), Finished);
        assert_eq!(
            Running.apply(&E::Eos),
            Finished,
            "a finite source ends by itself"
        );
        assert_eq!(Building.apply(&E::StopRequested), Finished);
        assert!(matches!(Draining.apply(&E::Frozen), Failed(_)));
        assert_eq!(
            Running.apply(&E::Frozen),
            Running,
            "only a draining pipeline can freeze"
        );
        for terminal in [Finished, Failed("x".into())] {
            for e in [
                E::Started,
                E::StopRequested,
                E::Eos,
                E::Error("y".into()),
                E::Frozen,
            ] {
                assert_eq!(terminal.apply(&e), terminal);
            }
        }
        assert_eq!(
            Running.apply(&E::Error("boom".into())),
            Failed("boom".into())
        );
    }

    /// A state change of the parent between the stop and the removal leaves the
    /// stopped element stopped.
    #[test]
    fn a_stopped_element_stays_stopped_while_its_parent_changes_state() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = make("videotestsrc", None).unwrap();
        src.set_property("is-live", true);
        let sink = make("fakesink", None).unwrap();
        sink.set_property("async", false);
        pipeline.add_many([&src, &sink]).unwrap();
        src.link(&sink).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(src.current_state(), gst::State::Playing);

        stop_for_good(&src);
        // Down and up again, as a pipeline whose state is lost and regained does.
        pipeline.set_state(gst::State::Ready).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(src.current_state(), gst::State::Null);
        pipeline.remove(&src).unwrap();
        drop(src);
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn dot_file_names_are_safe() {
        let p = dot_path(Path::new("/tmp/x"), "meeting/../1 a", "frozen");
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("meeting____1_a-frozen-"), "{name}");
        assert_eq!(p.parent(), Some(Path::new("/tmp/x")));
    }
}
