//! A `gst::Bin` that reports which of its children have drained.
//!
//! `hlssink2` closes its last segment and writes `#EXT-X-ENDLIST` when its own
//! internal sink posts EOS, and only then posts EOS itself. A pad probe would fire too
//! early (before the last segment is written), and the bus belongs to the pipeline the
//! bin is attached to, so the bin watches the messages of its children as they pass.

use std::collections::BTreeSet;
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

    /// Names of the direct children that posted EOS so far.
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
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct DrainBin {
        drained: OnceLock<watch::Sender<BTreeSet<String>>>,
        pub(super) error: Mutex<Option<String>>,
    }

    impl DrainBin {
        pub(super) fn drained(&self) -> &watch::Sender<BTreeSet<String>> {
            self.drained
                .get_or_init(|| watch::channel(BTreeSet::new()).0)
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
                    let source = message
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    self.error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| format!("{source}: {}", e.error()));
                }
                _ => {}
            }
            self.parent_handle_message(message)
        }
    }
}
