//! ICE restart underneath `webrtcbin`, directly on its libnice agent.
//!
//! webrtcbin 1.22 cannot restart ICE by renegotiation as the answerer (its answer
//! copies the previous ICE credentials, "FIXME: deal with ICE restarts") and never
//! calls `nice_agent_restart_stream`. WHIP (RFC 9725 §4.4.2) does not renegotiate
//! anyway: only ICE credentials and candidates travel, in an
//! `application/trickle-ice-sdpfrag` PATCH. So the restart is done on the libnice
//! stream of the bundled transport: new local credentials, the peer's new
//! credentials, the peer's candidates. The stream, its components, sockets and local
//! candidates stay, so DTLS and SRTP above them carry on; until the new checks
//! nominate a pair, libnice keeps sending over the previously selected one.
//!
//! Checked on libnice 0.1.21 / GStreamer 1.22 (`tests/ice_restart.rs`): the restart
//! keeps the local candidates (no new gathering is needed), the new checks nominate a
//! pair (`new-selected-pair`; without the peer's new credentials none is), media keeps
//! being decoded throughout. webrtcbin's `ice-connection-state` goes `completed` →
//! `new` (libnice puts the restarted components back to gathering) → `checking` →
//! `completed` on both sides, never `failed`/`closed` (which would remove the
//! publisher from the media plane).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use gst::glib;
use gst::prelude::*;

use crate::PipelineError;

#[link(name = "nice")]
extern "C" {
    fn nice_agent_restart_stream(agent: *mut c_void, stream_id: c_uint) -> c_int;
    fn nice_agent_set_remote_credentials(
        agent: *mut c_void,
        stream_id: c_uint,
        ufrag: *const c_char,
        pwd: *const c_char,
    ) -> c_int;
    fn nice_agent_get_local_credentials(
        agent: *mut c_void,
        stream_id: c_uint,
        ufrag: *mut *mut c_char,
        pwd: *mut *mut c_char,
    ) -> c_int;
    fn nice_agent_get_local_candidates(
        agent: *mut c_void,
        stream_id: c_uint,
        component_id: c_uint,
    ) -> *mut glib::ffi::GSList;
    fn nice_agent_generate_local_candidate_sdp(
        agent: *mut c_void,
        candidate: *mut c_void,
    ) -> *mut c_char;
    fn nice_candidate_free(candidate: *mut c_void);
}

/// One side's ICE credentials and candidates: what an ICE restart exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceParameters {
    /// `ice-ufrag`.
    pub ufrag: String,
    /// `ice-pwd` (a secret: never log it).
    pub pwd: String,
    /// `candidate:…` attribute values (without `a=`), all for the bundled transport.
    pub candidates: Vec<String>,
}

/// The NiceAgent under `webrtc`.
fn nice_agent(webrtc: &gst::Element) -> glib::Object {
    let ice: glib::Object = webrtc.property("ice-agent");
    ice.property("agent")
}

/// The libnice agent and stream id under `webrtc`'s (bundled) transport.
struct NiceStream {
    agent: glib::Object,
    stream_id: u32,
}

impl NiceStream {
    fn of(webrtc: &gst::Element) -> Result<Self, PipelineError> {
        let missing = |what: &str| PipelineError::Ice(format!("no {what} to restart"));
        let agent = nice_agent(webrtc);
        // With max-bundle every transceiver shares transceiver 0's transport.
        let transceiver: Option<gst_webrtc::WebRTCRTPTransceiver> =
            webrtc.emit_by_name("get-transceiver", &[&0i32]);
        let transceiver = transceiver.ok_or_else(|| missing("transceiver"))?;
        let dtls = ["receiver", "sender"]
            .iter()
            .filter_map(|side| {
                let end: Option<glib::Object> = transceiver.property(side);
                end.and_then(|e| e.property::<Option<glib::Object>>("transport"))
            })
            .next()
            .ok_or_else(|| missing("transport"))?;
        let ice_transport: glib::Object = dtls
            .property::<Option<glib::Object>>("transport")
            .ok_or_else(|| missing("ICE transport"))?;
        let stream: glib::Object = ice_transport
            .property::<Option<glib::Object>>("stream")
            .ok_or_else(|| missing("ICE stream"))?;
        let stream_id: u32 = stream.property("stream-id");
        Ok(NiceStream { agent, stream_id })
    }

    fn ptr(&self) -> *mut c_void {
        self.agent.as_ptr() as *mut c_void
    }

    /// New local credentials; remote candidates are dropped (the selected pair keeps
    /// carrying media until a new one is nominated).
    fn restart(&self) -> Result<(), PipelineError> {
        // SAFETY: the agent is a live NiceAgent held by `self.agent`; libnice locks it.
        let ok = unsafe { nice_agent_restart_stream(self.ptr(), self.stream_id) } != 0;
        ok.then_some(())
            .ok_or_else(|| PipelineError::Ice("libnice refused to restart the stream".into()))
    }

    fn set_remote_credentials(&self, ufrag: &str, pwd: &str) -> Result<(), PipelineError> {
        let bad = || PipelineError::Ice("bad ICE credentials".into());
        let (u, p) = (
            CString::new(ufrag).map_err(|_| bad())?,
            CString::new(pwd).map_err(|_| bad())?,
        );
        // SAFETY: live agent; libnice copies both strings.
        let ok = unsafe {
            nice_agent_set_remote_credentials(self.ptr(), self.stream_id, u.as_ptr(), p.as_ptr())
        } != 0;
        ok.then_some(()).ok_or_else(bad)
    }

    fn local(&self) -> Result<IceParameters, PipelineError> {
        let (mut u, mut p): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: live agent; on success both strings are ours to g_free.
        let ok =
            unsafe { nice_agent_get_local_credentials(self.ptr(), self.stream_id, &mut u, &mut p) }
                != 0;
        let take = |s: *mut c_char| -> Option<String> {
            if s.is_null() {
                return None;
            }
            // SAFETY: a NUL-terminated string libnice allocated for us.
            let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
            unsafe { glib::ffi::g_free(s as *mut c_void) };
            Some(text)
        };
        let (ufrag, pwd) = (take(u), take(p));
        let (Some(ufrag), Some(pwd)) = (ufrag.filter(|_| ok), pwd.filter(|_| ok)) else {
            return Err(PipelineError::Ice("no local ICE credentials".into()));
        };
        let mut candidates = Vec::new();
        // Component 1 is RTP (RTCP is muxed; a component 2 would be listed too).
        for component in 1..=2u32 {
            // SAFETY: live agent; the list and its candidates are ours to free.
            unsafe {
                let list = nice_agent_get_local_candidates(self.ptr(), self.stream_id, component);
                let mut node = list;
                while !node.is_null() {
                    let cand = (*node).data;
                    let line = nice_agent_generate_local_candidate_sdp(self.ptr(), cand);
                    if let Some(text) = take(line) {
                        // libnice writes "a=candidate:…".
                        let text = text.trim();
                        candidates.push(text.strip_prefix("a=").unwrap_or(text).to_string());
                    }
                    nice_candidate_free(cand);
                    node = (*node).next;
                }
                glib::ffi::g_slist_free(list);
            }
        }
        if candidates.is_empty() {
            return Err(PipelineError::Ice("no local ICE candidates".into()));
        }
        Ok(IceParameters {
            ufrag,
            pwd,
            candidates,
        })
    }
}

/// Watches libnice under a `webrtcbin` for a newly selected candidate pair: after a
/// restart, the sign that the new ICE session's checks succeeded and nominated a pair
/// (until then media goes over the previous pair). Stops watching on drop.
pub struct SelectedPairWatch {
    // The webrtcbin, not the NiceAgent: glib::Object is not Send here.
    webrtc: gst::Element,
    handler: Option<glib::SignalHandlerId>,
    rx: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl SelectedPairWatch {
    /// Start watching `webrtc` (before the restart, so no selection is missed).
    pub fn new(webrtc: &gst::Element) -> Self {
        let agent = nice_agent(webrtc);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let handler = agent.connect("new-selected-pair", false, move |_| {
            let _ = tx.send(());
            None
        });
        SelectedPairWatch {
            webrtc: webrtc.clone(),
            handler: Some(handler),
            rx,
        }
    }

    /// Whether a pair was selected within `timeout`.
    pub async fn selected(&mut self, timeout: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.rx.recv()).await,
            Ok(Some(()))
        )
    }
}

impl Drop for SelectedPairWatch {
    fn drop(&mut self) {
        if let Some(h) = self.handler.take() {
            nice_agent(&self.webrtc).disconnect(h);
        }
    }
}

/// Restart ICE as the side that initiates it (the WHIP client): new local
/// credentials, remote candidates dropped. Returns what to send to the peer.
pub fn restart_local_ice(webrtc: &gst::Element) -> Result<IceParameters, PipelineError> {
    let stream = NiceStream::of(webrtc)?;
    stream.restart()?;
    stream.local()
}

/// Apply the peer's new credentials and candidates after a restart. Candidates go
/// through webrtcbin (`add-ice-candidate`, m-line 0: everything is bundled).
pub fn apply_remote_ice(
    webrtc: &gst::Element,
    ufrag: &str,
    pwd: &str,
    candidates: &[String],
) -> Result<(), PipelineError> {
    NiceStream::of(webrtc)?.set_remote_credentials(ufrag, pwd)?;
    for candidate in candidates {
        webrtc.emit_by_name::<()>("add-ice-candidate", &[&0u32, candidate]);
    }
    Ok(())
}

/// Answer a peer's ICE restart (the WHIP server): restart our side, take the peer's
/// new credentials and candidates, and return our new credentials and candidates.
pub fn answer_ice_restart(
    webrtc: &gst::Element,
    ufrag: &str,
    pwd: &str,
    candidates: &[String],
) -> Result<IceParameters, PipelineError> {
    validate_credentials(ufrag, pwd)?;
    let local = restart_local_ice(webrtc)?;
    apply_remote_ice(webrtc, ufrag, pwd, candidates)?;
    Ok(local)
}

/// RFC 8839 §5.4: ufrag 4–256 and pwd 22–256 ice-chars (ALPHA / DIGIT / "+" / "/").
pub fn validate_credentials(ufrag: &str, pwd: &str) -> Result<(), PipelineError> {
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err(PipelineError::Sdp(
            "ice-ufrag must be 4–256 ice-chars".into(),
        ));
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err(PipelineError::Sdp(
            "ice-pwd must be 22–256 ice-chars".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_rfc_8839() {
        assert!(validate_credentials("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1").is_ok());
        assert!(validate_credentials("abc", "P2uYro0UCOQ4zxjKXaWCBui1").is_err());
        assert!(validate_credentials("EsAw", "short").is_err());
        assert!(validate_credentials("Es w", "P2uYro0UCOQ4zxjKXaWCBui1").is_err());
        assert!(validate_credentials("EsAw", "P2uYro0UCOQ4zxjKXaWCBu\r\n").is_err());
    }
}
