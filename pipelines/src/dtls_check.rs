//! The DTLS fingerprint check on a running `webrtcbin` (the rule itself is in
//! [`crate::dtls_fingerprint`]). webrtcbin 1.22 completes the handshake with any
//! certificate; this module compares what each DTLS transport received with the
//! fingerprints of the peer's session description:
//! - when a transport's DTLS state becomes `connected` ([`DtlsCheck::watch`]), so a
//!   mismatching peer is found even if it sends no media;
//! - before a received stream is decoded ([`DtlsCheck::admit`], called by
//!   [`crate::webrtc::decode_incoming`]), so no decoded media of an unverified peer
//!   exists at all;
//! - on the sending side ([`DtlsCheck::hold_outgoing`]): nothing leaves before the
//!   check passed.
//!
//! The first failure calls the owner's `on_reject` once; the verdict never changes
//! back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_webrtc::{WebRTCDTLSTransport, WebRTCDTLSTransportState, WebRTCRTPTransceiver};

use crate::dtls_fingerprint::{CertificateError, PinnedFingerprints};

/// Where the check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No certificate compared yet (or no fingerprints known yet).
    Pending,
    /// Every certificate compared so far matched.
    Verified,
    /// A certificate did not match (or could not be read): the session must go.
    Rejected(CertificateError),
}

const PENDING: u8 = 0;
const VERIFIED: u8 = 1;
const MISMATCH: u8 = 2;
const UNREADABLE: u8 = 3;

type RejectHook = Box<dyn FnOnce(CertificateError) + Send>;

struct Inner {
    pins: OnceLock<PinnedFingerprints>,
    state: AtomicU8,
    on_reject: Mutex<Option<RejectHook>>,
    verdicts: tokio::sync::watch::Sender<Verdict>,
}

/// The DTLS fingerprint check of one peer connection. Cheap to clone.
#[derive(Clone)]
pub struct DtlsCheck(Arc<Inner>);

impl std::fmt::Debug for DtlsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DtlsCheck").field(&self.verdict()).finish()
    }
}

impl Default for DtlsCheck {
    fn default() -> Self {
        DtlsCheck(Arc::new(Inner {
            pins: OnceLock::new(),
            state: AtomicU8::new(PENDING),
            on_reject: Mutex::new(None),
            verdicts: tokio::sync::watch::channel(Verdict::Pending).0,
        }))
    }
}

impl DtlsCheck {
    /// A check against `pins` (the remote description's fingerprints).
    pub fn new(pins: PinnedFingerprints) -> Self {
        let check = DtlsCheck::default();
        check.set_pins(pins);
        check
    }

    /// Set the fingerprints once they are known (the WHIP client learns them from the
    /// answer). Later calls are ignored.
    pub fn set_pins(&self, pins: PinnedFingerprints) {
        let _ = self.0.pins.set(pins);
    }

    /// Called once, on the first failure (from a GStreamer thread: do not block).
    pub fn on_reject(&self, hook: impl FnOnce(CertificateError) + Send + 'static) {
        *self.0.on_reject.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Where the check stands.
    pub fn verdict(&self) -> Verdict {
        match self.0.state.load(Ordering::SeqCst) {
            VERIFIED => Verdict::Verified,
            MISMATCH => Verdict::Rejected(CertificateError::Mismatch),
            UNREADABLE => Verdict::Rejected(CertificateError::Unreadable),
            _ => Verdict::Pending,
        }
    }

    /// Follow the verdict as it changes.
    pub fn verdicts(&self) -> tokio::sync::watch::Receiver<Verdict> {
        self.0.verdicts.subscribe()
    }

    fn reject(&self, why: CertificateError) {
        let code = match why {
            CertificateError::Mismatch => MISMATCH,
            CertificateError::Unreadable => UNREADABLE,
        };
        let previous = self.0.state.swap(code, Ordering::SeqCst);
        if previous == MISMATCH || previous == UNREADABLE {
            self.0.state.store(previous, Ordering::SeqCst);
            return;
        }
        self.0.verdicts.send_replace(self.verdict());
        let hook = self
            .0
            .on_reject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hook) = hook {
            hook(why);
        }
    }

    /// Compare the certificate `transport` received, if it has one yet.
    pub fn check_transport(&self, transport: &WebRTCDTLSTransport) -> Verdict {
        if matches!(self.verdict(), Verdict::Rejected(_)) {
            return self.verdict();
        }
        let Some(pins) = self.0.pins.get() else {
            return self.verdict();
        };
        let Some(pem) = transport.remote_certificate().filter(|p| !p.is_empty()) else {
            return self.verdict();
        };
        match pins.check_pem(&pem) {
            Ok(()) => {
                if self
                    .0
                    .state
                    .compare_exchange(PENDING, VERIFIED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.0.verdicts.send_replace(Verdict::Verified);
                }
            }
            Err(why) => self.reject(why),
        }
        self.verdict()
    }

    /// May the stream of `pad` (a `webrtcbin` pad) be used? Compares the certificate
    /// of its transport, waiting up to `wait` for the handshake to deliver it
    /// (decrypted RTP arrives only after the handshake, so this is normally at once).
    /// A stream whose certificate is still unknown then is refused (and rejects the
    /// session): fail closed.
    pub fn admit(&self, pad: &gst::Pad, wait: Duration) -> bool {
        let transport = pad
            .find_property("transceiver")
            .and_then(|_| pad.property::<Option<WebRTCRTPTransceiver>>("transceiver"))
            .and_then(|t| transport_of(&t));
        let Some(transport) = transport else {
            self.reject(CertificateError::Unreadable);
            return false;
        };
        let deadline = Instant::now() + wait;
        loop {
            match self.check_transport(&transport) {
                Verdict::Verified => return true,
                Verdict::Rejected(_) => return false,
                Verdict::Pending if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Verdict::Pending => {
                    self.reject(CertificateError::Unreadable);
                    return false;
                }
            }
        }
    }

    /// Check every DTLS transport of `webrtc` when its state becomes `connected`
    /// (and now, for those already connected). Call once the remote description is
    /// set (the transports exist from then on).
    pub fn watch(&self, webrtc: &gst::Element) {
        let mut seen: Vec<WebRTCDTLSTransport> = Vec::new();
        for index in 0i32.. {
            let transceiver: Option<WebRTCRTPTransceiver> =
                webrtc.emit_by_name("get-transceiver", &[&index]);
            let Some(transceiver) = transceiver else {
                break;
            };
            let Some(transport) = transport_of(&transceiver) else {
                continue;
            };
            if seen.contains(&transport) {
                continue;
            }
            let check = self.clone();
            transport.connect_state_notify(move |t| {
                if t.state() == WebRTCDTLSTransportState::Connected {
                    check.check_transport(t);
                }
            });
            if transport.state() == WebRTCDTLSTransportState::Connected {
                self.check_transport(&transport);
            }
            seen.push(transport);
        }
    }

    /// Drop everything `webrtc` would send (its sink pads) until the check passed:
    /// no media goes to a peer that is not the one its description named.
    pub fn hold_outgoing(&self, webrtc: &gst::Element) {
        for pad in webrtc.sink_pads() {
            let check = self.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| match check.verdict() {
                    Verdict::Verified => gst::PadProbeReturn::Remove,
                    _ => gst::PadProbeReturn::Drop,
                },
            );
        }
    }
}

/// The DTLS transport of a transceiver (its receiver's, else its sender's).
fn transport_of(transceiver: &WebRTCRTPTransceiver) -> Option<WebRTCDTLSTransport> {
    transceiver
        .receiver()
        .and_then(|r| r.transport())
        .or_else(|| transceiver.sender().and_then(|s| s.transport()))
}
