//! A `gst::Bin` that reports which of its children have drained.
//!
//! `hlssink2` closes its last segment and writes `#EXT-X-ENDLIST` when its own
//! internal sink posts EOS, and only then posts EOS itself. A pad probe would fire too
//! early (before the last segment is written), and the bus belongs to the pipeline the
//! bin is attached to, so the bin watches the messages of its children as they pass.
//! The same way it tells whether the playlists are advancing: an error (a full disk)
//! stands until a sink adds its next segment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::watch;

glib::wrapper! {
    /// A bin whose children's EOS and error messages are noted before they go up.
    pub struct DrainBin(ObjectSubclass<imp::DrainBin>)
        @extends gst::Bin, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

impl DrainBin {
    /// A new bin named `name`.
    pub fn new(name: &str) -> DrainBin {
        // Its hlssink2s preroll when the bin is added to a running meeting; the bin
        // handles that itself, so the meeting pipeline does not lose its PLAYING state
        // (and with it, running time) meanwhile.
        glib::Object::builder()
            .property("name", name)
            .property("async-handling", true)
            .build()
    }

    /// Names of the direct children that are done: posted EOS, or an error (a child
    /// that failed — a sink on a full disk — will never drain).
    pub fn drained(&self) -> watch::Receiver<BTreeSet<String>> {
        self.imp().drained().subscribe()
    }

    /// The first error a child posted (also passed up to the pipeline).
    pub fn first_error(&self) -> Option<String> {
        self.imp()
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// While some child's last word was an error (an `hlssink2` that could not write
    /// and has not added a segment since, `hls-segment-added`), the first such
    /// error: its playlist is not advancing. `None` otherwise.
    pub fn current_error(&self) -> watch::Receiver<Option<String>> {
        self.imp().current().subscribe()
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct DrainBin {
        drained: OnceLock<watch::Sender<BTreeSet<String>>>,
        current: OnceLock<watch::Sender<Option<String>>>,
        /// Children whose last word was an error, with their first error.
        failing: Mutex<BTreeMap<String, String>>,
        pub(super) error: Mutex<Option<String>>,
    }

    impl DrainBin {
        pub(super) fn drained(&self) -> &watch::Sender<BTreeSet<String>> {
            self.drained
                .get_or_init(|| watch::channel(BTreeSet::new()).0)
        }

        pub(super) fn current(&self) -> &watch::Sender<Option<String>> {
            self.current.get_or_init(|| watch::channel(None).0)
        }

        /// The name of this bin's child a message came from (`hls-360p`, a
        /// rendition's sink), not the whole element path.
        fn child_name(&self, message: &gst::Message) -> String {
            let this = self.obj();
            let this = this.upcast_ref::<gst::Object>();
            let mut source = message.src().cloned();
            while let Some(s) = source.clone() {
                match s.parent() {
                    Some(p) if &p != this => source = Some(p),
                    _ => break,
                }
            }
            source.map(|s| s.name().to_string()).unwrap_or_default()
        }

        /// Publish the first standing error (`None` when no child is failing).
        fn report(&self, failing: &BTreeMap<String, String>) {
            let first = failing.values().next().cloned();
            self.current().send_if_modified(|c| {
                // While failing, the reported error stays the same one.
                let changed = c.is_some() != first.is_some();
                if changed {
                    *c = first;
                }
                changed
            });
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for DrainBin {
        const NAME: &'static str = "GremiumDrainBin";
        type Type = super::DrainBin;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for DrainBin {}
    impl GstObjectImpl for DrainBin {}
    impl ElementImpl for DrainBin {}

    impl BinImpl for DrainBin {
        fn handle_message(&self, message: gst::Message) {
            match message.view() {
                gst::MessageView::Eos(_) => {
                    if let Some(src) = message.src() {
                        let name = src.name().to_string();
                        self.drained().send_modify(|set| {
                            set.insert(name);
                        });
                    }
                }
                gst::MessageView::Error(e) => {
                    // Named after this bin's child it came from (`hls-360p`, the
                    // rendition's sink), not the whole element path.
                    let source = self.child_name(&message);
                    self.drained()
                        .send_if_modified(|set| set.insert(source.clone()));
                    // The detail ("Error writing to file: No space left on device")
                    // follows the first line of the debug string.
                    let detail = e
                        .debug()
                        .and_then(|d| d.split_once('\n').map(|(_, d)| d.trim().to_string()))
                        .filter(|d| !d.is_empty());
                    let text = match detail {
                        Some(d) => format!("{source}: {}: {d}", e.error()),
                        None => format!("{source}: {}", e.error()),
                    };
                    self.error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| text.clone());
                    // A sink's first error stands until it writes again (a full
                    // disk fails every segment and playlist write: no news after
                    // the first); the bin reports the first standing one.
                    let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
                    failing.entry(source).or_insert(text);
                    self.report(&failing);
                }
                gst::MessageView::Element(m)
                    if m.structure()
                        .is_some_and(|s| s.name() == "hls-segment-added") =>
                {
                    let source = self.child_name(&message);
                    let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
                    if failing.remove(&source).is_some() {
                        self.report(&failing);
                    }
                }
                _ => {}
            }
            self.parent_handle_message(message)
        }
    }
}
