//! A `gst::Bin` that reports which of its children have drained.
//!
//! `hlssink2` closes its last segment and writes `#EXT-X-ENDLIST` when its own
//! internal sink posts EOS, and only then posts EOS itself. A pad probe would fire too
//! early (before the last segment is written), and the bus belongs to the pipeline the
//! bin is attached to, so the bin watches the messages of its children as they pass.
//! The same way it tells whether the playlists are advancing: a child's first error
//! (a full disk) stands until the stream ends.

use std::collections::BTreeSet;
use std::sync::OnceLock;

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

    /// Once a child posted an error (an `hlssink2` that could not write), the first
    /// such error: that playlist is not advancing. `None` before. It stands until the
    /// stream ends: `hlssink2` 1.22's writer stops at the error, and no message tells a
    /// written segment from a failed one. It posts no `hls-segment-added` (the old
    /// `hlssink`'s message), and its `splitmuxsink`'s `splitmuxsink-fragment-closed`
    /// also follows a failed write (clearing the error on it made the disk-full test's
    /// error vanish right after it was reported).
    pub fn current_error(&self) -> watch::Receiver<Option<String>> {
        self.imp().current().subscribe()
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct DrainBin {
        drained: OnceLock<watch::Sender<BTreeSet<String>>>,
        /// The first error a child posted (it stands: see `current_error`).
        current: OnceLock<watch::Sender<Option<String>>>,
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
                    // The first error stands (a full disk fails every segment and
                    // playlist write: no news after the first).
                    self.current().send_if_modified(|c| {
                        let first = c.is_none();
                        if first {
                            *c = Some(text);
                        }
                        first
                    });
                }
                _ => {}
            }
            self.parent_handle_message(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child bin named `name` holding one element, as `hlssink2` holds its
    /// `splitmuxsink`.
    fn sink_like(bin: &DrainBin, name: &str) -> gst::Element {
        let child = gst::Bin::with_name(name);
        let inner = gst::ElementFactory::make("identity")
            .name("splitmuxsink0")
            .build()
            .unwrap();
        child.add(&inner).unwrap();
        bin.add(&child).unwrap();
        inner
    }

    fn full_disk(from: &gst::Element) {
        let m = gst::message::Error::builder(gst::ResourceError::Write, "Could not write")
            .src(from)
            .debug("gstgiostreamsink.c\nError writing to file: No space left on device")
            .build();
        let _ = from.post_message(m);
    }

    fn fragment_closed(from: &gst::Element) {
        let s = gst::Structure::builder("splitmuxsink-fragment-closed")
            .field("location", "segment00007.ts")
            .build();
        let _ = from.post_message(gst::message::Element::builder(s).src(from).build());
    }

    #[test]
    fn an_error_stands_through_later_fragment_messages() {
        gst::init().unwrap();
        let bin = DrainBin::new("hls-test");
        let (v720, v360) = (sink_like(&bin, "hls-720p"), sink_like(&bin, "hls-360p"));
        let current = bin.current_error();
        assert_eq!(*current.borrow(), None);
        fragment_closed(&v720);
        assert_eq!(*current.borrow(), None);
        full_disk(&v720);
        let error = current.borrow().clone().expect("an error stands");
        assert!(
            error.starts_with("hls-720p: Could not write")
                && error.ends_with("No space left on device"),
            "{error}"
        );
        assert!(bin.drained().borrow().contains("hls-720p"));
        // A fragment-closed also follows a failed write: neither that nor another
        // rendition's segment means the playlist advances again.
        fragment_closed(&v720);
        fragment_closed(&v360);
        full_disk(&v360);
        assert_eq!(current.borrow().as_deref(), Some(error.as_str()));
        assert_eq!(
            bin.current_error().borrow().as_deref(),
            Some(error.as_str())
        );
    }
}
