//! Decoding what a publisher sends: each pad `webrtcbin` adds becomes raw audio or
//! video (after its DTLS certificate is checked), and keyframe requests travel back
//! upstream. Owns the receive side of an endpoint only; must not negotiate SDP or
//! ICE (the parent module does).

use std::time::Duration;

use gst::prelude::*;

use crate::dtls_check::DtlsCheck;
use crate::pipeline::{link_chain, make};
use crate::PipelineError;

/// How long a received stream waits for its DTLS certificate to be known before it
/// is refused (decrypted RTP follows the handshake, so it is known at once).
const DTLS_CERTIFICATE_WAIT: Duration = Duration::from_secs(2);

/// Kind of a decoded incoming stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Raw audio (after opusdec).
    Audio,
    /// Raw video (after vp8dec or avdec_h264).
    Video,
}

/// Ask the publisher behind a decoded video pad for a keyframe: an upstream
/// force-key-unit event, which the RTP session turns into RTCP PLI/FIR. Returns
/// whether the event was handled upstream.
pub fn request_keyframe(decoded_video: &gst::Pad) -> bool {
    let event = gst_video::UpstreamForceKeyUnitEvent::builder()
        .all_headers(true)
        .build();
    decoded_video.send_event(event)
}

/// Is this an upstream force-key-unit request (what a PLI turns into at a sender)?
pub fn is_keyframe_request(event: &gst::EventRef) -> bool {
    gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
}

/// Depayloader and decoder for an RTP encoding, with keyframe requests on loss.
fn decoder_for(encoding: &str) -> Result<(MediaKind, Vec<gst::Element>), PipelineError> {
    let chain = match encoding {
        "VP8" => {
            let depay = make("rtpvp8depay", None)?;
            depay.set_property("request-keyframe", true);
            depay.set_property("wait-for-keyframe", true);
            (MediaKind::Video, vec![depay, make("vp8dec", None)?])
        }
        "H264" => {
            let depay = make("rtph264depay", None)?;
            depay.set_property("request-keyframe", true);
            depay.set_property("wait-for-keyframe", true);
            (
                MediaKind::Video,
                vec![depay, make("h264parse", None)?, make("avdec_h264", None)?],
            )
        }
        "OPUS" => (
            MediaKind::Audio,
            vec![make("rtpopusdepay", None)?, make("opusdec", None)?],
        ),
        other => return Err(PipelineError::Unsupported(format!("codec {other}"))),
    };
    Ok(chain)
}

/// Decode everything `webrtc` receives: for each incoming RTP stream a depayloader
/// and decoder are added to `bin`, and `on_decoded` gets the raw source pad to link
/// (before the stream is connected: link it there and then, and return `true`;
/// `false` discards the stream).
/// Unsupported codecs are sunk into a fakesink and reported to `on_unsupported`.
///
/// A stream is decoded only once `check` verified the certificate of its DTLS
/// transport against the peer's fingerprints; the streams of a peer that fails the
/// check are discarded undecoded (and the check's `on_reject` runs).
pub fn decode_incoming(
    webrtc: &gst::Element,
    bin: &gst::Bin,
    check: DtlsCheck,
    on_decoded: impl Fn(MediaKind, gst::Pad) -> bool + Send + Sync + 'static,
) {
    let bin = bin.downgrade();
    webrtc.connect_pad_added(move |_, pad| {
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let Some(bin) = bin.upgrade() else { return };
        if !check.admit(pad, DTLS_CERTIFICATE_WAIT) {
            tracing::warn!("stream of a peer whose DTLS certificate failed the check: discarded");
            discard(&bin, pad);
            return;
        }
        let encoding = pad
            .current_caps()
            .and_then(|c| {
                c.structure(0)
                    .and_then(|s| s.get::<String>("encoding-name").ok())
            })
            .unwrap_or_default();
        let result = decoder_for(&encoding).and_then(|(kind, elements)| {
            let refs: Vec<&gst::Element> = elements.iter().collect();
            bin.add_many(refs.iter().copied())
                .map_err(|e| PipelineError::Link(e.to_string()))?;
            link_chain(&refs)?;
            for e in &elements {
                e.sync_state_with_parent()
                    .map_err(|e| PipelineError::StateChange(e.to_string()))?;
            }
            let sink = elements[0]
                .static_pad("sink")
                .ok_or_else(|| PipelineError::Link("depayloader".into()))?;
            let src = elements[elements.len() - 1]
                .static_pad("src")
                .ok_or_else(|| PipelineError::Link("decoder".into()))?;
            Ok((kind, sink, src))
        });
        match result {
            Ok((kind, sink, src)) => {
                // The decoded pad is linked before any data can reach it: a push into
                // an unlinked pad returns NOT_LINKED, which would stop the stream.
                if !on_decoded(kind, src.clone()) {
                    tracing::warn!(%encoding, "decoded stream not taken: discarded");
                    discard(&bin, pad);
                    return;
                }
                if let Err(e) = pad.link(&sink) {
                    tracing::warn!(error = ?e, %encoding, "webrtcbin → depayloader not linked");
                    return;
                }
                if kind == MediaKind::Video {
                    // Frames sent before DTLS was up are lost; without this the decoder
                    // waits for the publisher's next periodic keyframe.
                    request_keyframe(&src);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %encoding, "incoming stream not decoded");
                discard(&bin, pad);
            }
        }
    });
}

/// Sink an incoming stream nobody takes into a fakesink (an unlinked pad would stop
/// webrtcbin's streaming thread for its other streams too).
fn discard(bin: &gst::Bin, pad: &gst::Pad) {
    if let Ok(sink) = make("fakesink", None) {
        // Added to a running pipeline: no preroll wait.
        sink.set_property("async", false);
        let _ = bin.add(&sink);
        let _ = sink.sync_state_with_parent();
        if let Some(p) = sink.static_pad("sink") {
            let _ = pad.link(&p);
        }
    }
}
