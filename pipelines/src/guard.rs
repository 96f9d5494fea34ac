//! A pass-through element that keeps a branch's failure from travelling upstream.
//!
//! A tee returns the error of any of its branches to whoever pushes into it, and a
//! queue keeps a downstream error and returns it to every later push. So one failing
//! consumer — an HLS sink on a full disk, a program's mixer in trouble — would stop
//! the encoder or the participant's media that every other branch shares. A
//! [`FlowGuard`] in front of such a consumer answers `OK` for a push the consumer
//! refused with `ERROR`, `NOT_NEGOTIATED` or `EOS` (the buffer is lost) and goes on
//! pushing the next one: once the consumer takes data again, data flows again. `EOS`
//! counts too: a tee stops at the first branch that answers anything but `OK` (or
//! not-linked) and returns that upstream, so one consumer that gave up would end the
//! stream for all. (In the disk-full test the RTMP push lost its audio after the HLS
//! disk filled in 1–2 runs of 6 before EOS was converted too, in none of 6 after;
//! which element of the failed `hlssink2` answered EOS is not pinned down.)
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
                Err(
                    e @ (gst::FlowError::Error
                    | gst::FlowError::NotNegotiated
                    | gst::FlowError::Eos),
                ) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// `audiotestsrc ! tee`, one branch `queue ! guard ! fakesink` whose sink refuses
    /// every buffer with `refusal`, the other `queue ! fakesink`: the buffers the
    /// good branch got when the stream ended (200 were sent).
    fn good_branch_gets(refusal: gst::FlowError) -> u64 {
        crate::init().unwrap();
        let pipeline = gst::parse::launch(
            "audiotestsrc num-buffers=200 samplesperbuffer=480 ! tee name=t \
             t. ! queue name=bad-queue ! fakesink name=bad async=false \
             t. ! queue ! fakesink name=good",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let (queue, bad) = (
            pipeline.by_name("bad-queue").unwrap(),
            pipeline.by_name("bad").unwrap(),
        );
        let guard: gst::Element = FlowGuard::new(Some("guard")).upcast();
        pipeline.add(&guard).unwrap();
        queue.unlink(&bad);
        gst::Element::link_many([&queue, &guard, &bad]).unwrap();
        bad.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                info.flow_res = Err(refusal);
                gst::PadProbeReturn::Handled
            });
        let got = Arc::new(AtomicU64::new(0));
        let counter = got.clone();
        pipeline
            .by_name("good")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let end = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            matches!(
                end.as_ref().map(|m| m.view()),
                Some(gst::MessageView::Eos(_))
            ),
            "the stream ends normally: {end:?}"
        );
        got.load(Ordering::Relaxed)
    }

    #[test]
    fn a_consumer_refusing_with_error_or_eos_never_stops_the_shared_tee() {
        // A failed hlssink2 answers ERROR, and in the disk-full test also EOS (which
        // element is not pinned down): either, unguarded, ends the tee's stream for
        // every branch (the RTMP push lost its audio there).
        for refusal in [
            gst::FlowError::Error,
            gst::FlowError::NotNegotiated,
            gst::FlowError::Eos,
        ] {
            assert_eq!(good_branch_gets(refusal), 200, "{refusal:?}");
        }
    }
}
