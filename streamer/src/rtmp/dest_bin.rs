//! A `gst::Bin` that keeps its children's errors to itself.
//!
//! One RTMP destination lives in one of these. An error of its `rtmp2sink` (connection
//! refused, reset, timeout) or of its muxer must not reach the pipeline's bus, where the
//! media plane would take it for a failure of the whole program: the bin hands errors,
//! warnings and EOS of its children to a handler (the destination's supervisor) and
//! does not pass them up. Everything else goes up as usual.

use std::sync::OnceLock;

use gst::glib;
use gst::subclass::prelude::*;

/// What a destination bin reports to its supervisor.
#[derive(Debug, Clone)]
pub enum DestMessage {
    /// A child posted an error; the text is the error and the detail of its debug
    /// string (without source file and element path), not yet redacted.
    Error(String),
    /// A child posted a warning (not yet redacted).
    Warning(String),
    /// A child (the sink) posted EOS: everything before was sent.
    Eos,
}

type Handler = Box<dyn Fn(DestMessage) + Send + Sync>;

glib::wrapper! {
    /// A bin whose children's errors, warnings and EOS go to a handler, not the bus.
    pub struct DestBin(ObjectSubclass<imp::DestBin>)
        @extends gst::Bin, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

impl DestBin {
    /// A new bin named `name` reporting to `handler` (called on streaming threads:
    /// must not block).
    pub fn new(name: &str, handler: impl Fn(DestMessage) + Send + Sync + 'static) -> DestBin {
        let bin: DestBin = glib::Object::builder().property("name", name).build();
        let _ = bin.imp().handler.set(Box::new(handler));
        bin
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct DestBin {
        pub(super) handler: OnceLock<Handler>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for DestBin {
        const NAME: &'static str = "GremiumRtmpDestBin";
        type Type = super::DestBin;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for DestBin {}
    impl GstObjectImpl for DestBin {}
    impl ElementImpl for DestBin {}

    impl BinImpl for DestBin {
        fn handle_message(&self, message: gst::Message) {
            let report = |m: DestMessage| {
                if let Some(h) = self.handler.get() {
                    h(m)
                }
            };
            match message.view() {
                gst::MessageView::Error(e) => {
                    report(DestMessage::Error(describe(
                        &e.error(),
                        e.debug().as_deref(),
                    )));
                }
                gst::MessageView::Warning(w) => {
                    report(DestMessage::Warning(describe(
                        &w.error(),
                        w.debug().as_deref(),
                    )));
                }
                gst::MessageView::Eos(_) => report(DestMessage::Eos),
                _ => self.parent_handle_message(message),
            }
        }
    }
}

/// The error and the detail of its debug string: GStreamer's debug strings start with
/// `file(line): function (): /element/path:` and may go on with details after a line
/// break.
fn describe(error: &glib::Error, debug: Option<&str>) -> String {
    match debug
        .and_then(|d| d.split_once('\n'))
        .map(|(_, d)| d.trim())
    {
        Some(detail) if !detail.is_empty() => format!("{error}: {detail}"),
        _ => error.to_string(),
    }
}
