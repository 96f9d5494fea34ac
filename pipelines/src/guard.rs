//! A pass-through element that keeps a branch's failure from travelling upstream.
//!
//! A tee returns the error of any of its branches to whoever pushes into it, and a
//! queue keeps a downstream error and returns it to every later push. So one failing
//! consumer — an HLS sink on a full disk, a program's mixer in trouble — would stop
//! the encoder or the participant's media that every other branch shares. A
//! [`FlowGuard`] in front of such a consumer answers `OK` for a push the consumer
//! refused with `ERROR` or `NOT_NEGOTIATED` (the buffer is lost) and goes on pushing
//! the next one: once the consumer takes data again, data flows again.
//!
//! GStreamer's `errorignore` does the first half only: after the first refused push
//! it drops everything until caps are renegotiated, so a consumer that recovers never
//! sees data again.
//!
//! Caps, allocation and scheduling queries pass through; so do events, both ways.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

glib::wrapper! {
    /// See the module documentation.
    pub struct FlowGuard(ObjectSubclass<imp::FlowGuard>)
        @extends gst::Element, gst::Object;
}

impl FlowGuard {
    /// A new guard named `name` (a generated name with `None`).
    pub fn new(name: Option<&str>) -> FlowGuard {
        match name {
            Some(name) => glib::Object::builder().property("name", name).build(),
            None => glib::Object::new(),
        }
    }

    /// Pushes the guard answered `OK` for although they were refused.
    pub fn refused(&self) -> u64 {
        self.imp()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;

    use super::*;

    pub struct FlowGuard {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        pub(super) refused: AtomicU64,
    }

    impl FlowGuard {
        fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            match self.srcpad.push(buffer) {
                Err(e @ (gst::FlowError::Error | gst::FlowError::NotNegotiated)) => {
                    if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                        gst::warning!(
                            gst::CAT_DEFAULT,
                            obj = self.obj(),
                            "downstream refused a buffer ({e:?}); dropping what it refuses"
                        );
                    }
                    Ok(gst::FlowSuccess::Ok)
                }
                other => other,
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FlowGuard {
        const NAME: &'static str = "GremiumFlowGuard";
        type Type = super::FlowGuard;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let proxy = gst::PadFlags::PROXY_CAPS
                | gst::PadFlags::PROXY_ALLOCATION
                | gst::PadFlags::PROXY_SCHEDULING;
            let sinkpad = gst::Pad::builder_from_template(
                &klass.pad_template("sink").expect("sink template"),
            )
            .chain_function(|_, parent, buffer| {
                FlowGuard::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |guard| guard.chain(buffer),
                )
            })
            .event_function(|_, parent, event| {
                FlowGuard::catch_panic_pad_function(
                    parent,
                    || false,
                    |guard| guard.srcpad.push_event(event),
                )
            })
            .query_function(|_, parent, query| {
                FlowGuard::catch_panic_pad_function(
                    parent,
                    || false,
                    |guard| guard.srcpad.peer_query(query),
                )
            })
            .flags(proxy)
            .build();
            let srcpad =
                gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                    .event_function(|_, parent, event| {
                        FlowGuard::catch_panic_pad_function(
                            parent,
                            || false,
                            |guard| guard.sinkpad.push_event(event),
                        )
                    })
                    .query_function(|_, parent, query| {
                        FlowGuard::catch_panic_pad_function(
                            parent,
                            || false,
                            |guard| guard.sinkpad.peer_query(query),
                        )
                    })
                    .flags(proxy)
                    .build();
            FlowGuard {
                sinkpad,
                srcpad,
                refused: AtomicU64::new(0),
            }
        }
    }

    impl ObjectImpl for FlowGuard {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.add_pad(&self.sinkpad).expect("sink pad added once");
            obj.add_pad(&self.srcpad).expect("src pad added once");
        }
    }

    impl GstObjectImpl for FlowGuard {}

    impl ElementImpl for FlowGuard {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Flow guard",
                    "Generic",
                    "Answers OK for pushes downstream refused with an error, without latching",
                    "Gremium",
                )
            });
            Some(&*METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let caps = gst::Caps::new_any();
                vec![
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("src template"),
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("sink template"),
                ]
            });
            TEMPLATES.as_ref()
        }
    }
}
