//! WebRTC endpoints on `webrtcbin`: ICE restricted to allowed local addresses and
//! non-trickle offer/answer (candidates inside the SDP, as WHIP clients expect).
//! Decoding what a publisher sends into raw audio/video pads lives in `decode`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::net::IpAddr;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEGatheringState, WebRTCSDPType, WebRTCSessionDescription};

/// ICE connection state of a `webrtcbin` (property `ice-connection-state`).
pub use gst_webrtc::WebRTCICEConnectionState as IceConnectionState;

use crate::pipeline::make;
use crate::PipelineError;

mod decode;

pub use decode::{decode_incoming, is_keyframe_request, request_keyframe, MediaKind};

#[link(name = "nice")]
extern "C" {
    fn nice_address_new() -> *mut c_void;
    fn nice_address_free(addr: *mut c_void);
    fn nice_address_set_from_string(addr: *mut c_void, s: *const c_char) -> c_int;
    fn nice_agent_add_local_address(agent: *mut c_void, addr: *const c_void) -> c_int;
}

/// ICE settings of an endpoint (validated by the caller's config).
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    /// Only these local addresses are gathered (empty: every interface).
    pub local_addresses: Vec<IpAddr>,
    /// UDP port range for ICE, inclusive.
    pub port_range: Option<(u16, u16)>,
    /// `stun://host:port`, if any.
    pub stun_server: Option<String>,
    /// `turn(s)://user:pass@host:port` servers.
    pub turn_servers: Vec<String>,
    /// Public address that 1:1-NATs to this host: each host candidate in our SDP gets
    /// a twin with this address and the same port.
    pub nat_1to1: Option<IpAddr>,
    /// Jitter buffer of incoming RTP in ms (`None`: webrtcbin's 200 ms).
    pub jitter_buffer_ms: Option<u32>,
}

impl IceSettings {
    /// Host candidates are all this endpoint can offer (no STUN, no TURN): libnice
    /// adds them in one go when gathering starts, so an answer need not wait for
    /// gathering to be declared complete.
    pub fn host_only(&self) -> bool {
        self.stun_server.is_none() && self.turn_servers.is_empty()
    }
}

/// Generate the process-wide DTLS certificate now (the DTLS elements create it on
/// first use, which otherwise adds about 250 ms to the first publish).
pub fn warm_up_dtls() {
    if let Ok(dec) = make("dtlsdec", None) {
        drop(dec);
    }
}

/// Make a `webrtcbin` configured with `ice` (bundled, ICE restricted as asked).
pub fn make_webrtcbin(name: &str, ice: &IceSettings) -> Result<gst::Element, PipelineError> {
    let webrtc = make("webrtcbin", Some(name))?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    if let Some(ms) = ice.jitter_buffer_ms {
        webrtc.set_property("latency", ms);
    }
    if let Some(stun) = &ice.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    for turn in &ice.turn_servers {
        let _: bool = webrtc.emit_by_name("add-turn-server", &[turn]);
    }
    let agent: glib::Object = webrtc.property("ice-agent");
    if let Some((min, max)) = ice.port_range {
        agent.set_property("min-rtp-port", u32::from(min));
        agent.set_property("max-rtp-port", u32::from(max));
    }
    let nice: glib::Object = agent.property("agent");
    // No UPnP port mapping: libnice would look for an Internet gateway device by SSDP
    // multicast (239.255.255.250), traffic to a non-allowed address on every publish.
    if nice.find_property("upnp").is_some() {
        nice.set_property("upnp", false);
    }
    if !ice.local_addresses.is_empty() {
        for addr in &ice.local_addresses {
            add_local_address(&nice, *addr)?;
        }
    }
    Ok(webrtc)
}

/// libnice gathers candidates only on addresses added this way once any is added.
fn add_local_address(nice_agent: &glib::Object, addr: IpAddr) -> Result<(), PipelineError> {
    let text =
        CString::new(addr.to_string()).map_err(|_| PipelineError::Ice("bad address".into()))?;
    // SAFETY: nice_agent is a live NiceAgent (webrtcbin's ICE agent holds it); the
    // address is allocated, filled and freed here, and libnice copies it.
    unsafe {
        let a = nice_address_new();
        if a.is_null() {
            return Err(PipelineError::Ice("out of memory".into()));
        }
        let ok = nice_address_set_from_string(a, text.as_ptr()) != 0
            && nice_agent_add_local_address(nice_agent.as_ptr() as *mut c_void, a) != 0;
        nice_address_free(a);
        if ok {
            Ok(())
        } else {
            Err(PipelineError::Ice(format!(
                "libnice refused local address {addr}"
            )))
        }
    }
}

async fn promise_reply(
    emit: impl FnOnce(&gst::Promise),
    what: &str,
) -> Result<Option<gst::Structure>, PipelineError> {
    let (promise, future) = gst::Promise::new_future();
    emit(&promise);
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .map_err(|_| PipelineError::Sdp(format!("{what}: no reply")))?
        .map_err(|e| PipelineError::Sdp(format!("{what}: {e:?}")))
        .map(|reply| reply.map(|r| r.to_owned()))
}

fn description_from_reply(
    reply: Option<gst::Structure>,
    field: &str,
) -> Result<WebRTCSessionDescription, PipelineError> {
    let reply = reply.ok_or_else(|| PipelineError::Sdp(format!("no {field} produced")))?;
    if let Ok(err) = reply.get::<glib::Error>("error") {
        return Err(PipelineError::Sdp(err.to_string()));
    }
    reply
        .get::<WebRTCSessionDescription>(field)
        .map_err(|_| PipelineError::Sdp(format!("no {field} produced")))
}

async fn set_description(
    webrtc: &gst::Element,
    signal: &str,
    desc: &WebRTCSessionDescription,
) -> Result<(), PipelineError> {
    let reply = promise_reply(|p| webrtc.emit_by_name::<()>(signal, &[desc, p]), signal).await?;
    if let Some(r) = reply {
        if let Ok(err) = r.get::<glib::Error>("error") {
            return Err(PipelineError::Sdp(format!("{signal}: {err}")));
        }
    }
    Ok(())
}

/// The local description's SDP once it carries its candidates: with `host_only`, as
/// soon as candidates appeared (libnice adds every host candidate at once); otherwise
/// when ICE gathering completes (server-reflexive and relay candidates come later).
async fn gathered_local_sdp(
    webrtc: &gst::Element,
    timeout: Duration,
    host_only: bool,
) -> Result<String, PipelineError> {
    if host_only {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut seen, mut stable) = (0, 0);
        while tokio::time::Instant::now() < deadline {
            let state: WebRTCICEGatheringState = webrtc.property("ice-gathering-state");
            let local: Option<WebRTCSessionDescription> = webrtc.property("local-description");
            if let Some(text) = local.and_then(|l| l.sdp().as_text().ok()) {
                if state == WebRTCICEGatheringState::Complete {
                    return with_candidates(text);
                }
                let n = text.matches("a=candidate:").count();
                stable = if n == seen { stable + 1 } else { 0 };
                seen = n;
                // Every m-line that gathers has candidates, and none came for 20 ms.
                if every_gathering_mline_has_candidates(&text) && stable >= 4 {
                    return Ok(text);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        return Err(PipelineError::Ice("no ICE candidates gathered".into()));
    }
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let handler = webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let state: WebRTCICEGatheringState = w.property("ice-gathering-state");
        if state == WebRTCICEGatheringState::Complete {
            let _ = tx.send(true);
        }
    });
    let already: WebRTCICEGatheringState = webrtc.property("ice-gathering-state");
    let done = if already == WebRTCICEGatheringState::Complete {
        Ok(())
    } else {
        tokio::time::timeout(timeout, rx.wait_for(|d| *d))
            .await
            .map(|_| ())
    };
    webrtc.disconnect(handler);
    done.map_err(|_| PipelineError::Ice("ICE gathering did not complete".into()))?;
    let local: WebRTCSessionDescription = webrtc.property("local-description");
    let text = local
        .sdp()
        .as_text()
        .map_err(|e| PipelineError::Sdp(e.to_string()))?;
    with_candidates(text)
}

/// Gathering that completed without a candidate for some m-line gives an answer no
/// peer can connect to: an ICE error (503 with a reason at the API), not a 201.
fn with_candidates(sdp: String) -> Result<String, PipelineError> {
    if every_gathering_mline_has_candidates(&sdp) {
        Ok(sdp)
    } else {
        Err(PipelineError::Ice(
            "ICE gathering completed without a candidate".into(),
        ))
    }
}

/// Does every m-line that gathers its own candidates have at least one? With BUNDLE
/// only the first m-line of the group (the tagged one) gathers; rejected (port 0) and
/// bundle-only m-lines gather nothing.
fn every_gathering_mline_has_candidates(sdp: &str) -> bool {
    let mut parts = sdp.split("\nm=");
    let session = parts.next().unwrap_or("");
    let bundle: Vec<&str> = session
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=group:BUNDLE "))
        .flat_map(str::split_whitespace)
        .collect();
    let tagged = bundle.first().copied();
    let mut any = false;
    for m in parts {
        any = true;
        let mid = m
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=mid:"))
            .map(str::trim);
        let port_zero = m.split_whitespace().nth(1) == Some("0");
        let bundled_away = mid.is_some_and(|mid| bundle.contains(&mid) && Some(mid) != tagged);
        if port_zero || bundled_away || m.contains("a=bundle-only") {
            continue;
        }
        if !m.contains("a=candidate:") {
            return false;
        }
    }
    any
}

/// Parse SDP text, refusing anything that is not a well-formed session description.
pub fn parse_sdp(text: &str) -> Result<gst_sdp::SDPMessage, PipelineError> {
    if !text.trim_start().starts_with("v=0") {
        return Err(PipelineError::Sdp("not an SDP session description".into()));
    }
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| PipelineError::Sdp("malformed SDP".into()))?;
    if sdp.medias_len() == 0 {
        return Err(PipelineError::Sdp("SDP offers no media".into()));
    }
    Ok(sdp)
}

/// Add, after each UDP host candidate, a twin announcing `public` with the same port
/// (1:1 NAT: the public address forwards to this host). Other lines are unchanged.
pub fn announce_address(sdp: &str, public: IpAddr) -> String {
    let mut out = String::with_capacity(sdp.len() + 256);
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        let text = line.trim_end();
        let Some(rest) = text.strip_prefix("a=candidate:") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // foundation component transport priority address port "typ" type ...
        if fields.len() < 8 || !fields[2].eq_ignore_ascii_case("udp") || fields[7] != "host" {
            continue;
        }
        let priority = fields[3].parse::<u32>().unwrap_or(1).saturating_sub(1);
        let mut twin: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        twin[0] = format!("{}n", fields[0]);
        twin[3] = priority.to_string();
        twin[4] = public.to_string();
        out.push_str(&format!("a=candidate:{}\r\n", twin.join(" ")));
    }
    out
}

/// Mark the candidate list of every media section in use (port not 0) as complete:
/// `a=end-of-candidates` after its last candidate (RFC 8840 §4.1), so that a client
/// that does not trickle knows there is nothing more to wait for (RFC 9725 §4.3.1).
/// Sections that already carry it are left alone.
pub fn mark_end_of_candidates(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    let mut in_use = false;
    let mut marked = false;
    let close = |out: &mut String, in_use: bool, marked: bool| {
        if in_use && !marked {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("m=") {
            close(&mut out, in_use, marked);
            in_use = text.split_whitespace().nth(1) != Some("0");
            marked = false;
        } else if text == "a=end-of-candidates" {
            marked = true;
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\r\n");
        }
    }
    close(&mut out, in_use, marked);
    out
}

/// Answer a remote offer (the WHIP server side). Returns the answer SDP with all
/// local candidates (non-trickle), each media section's list marked complete
/// ([`mark_end_of_candidates`]). The webrtcbin must be in a PLAYING pipeline.
pub async fn answer_offer(
    webrtc: &gst::Element,
    offer: &str,
    gather_timeout: Duration,
    host_only: bool,
) -> Result<String, PipelineError> {
    let t0 = std::time::Instant::now();
    let offer = WebRTCSessionDescription::new(WebRTCSDPType::Offer, parse_sdp(offer)?);
    set_description(webrtc, "set-remote-description", &offer).await?;
    let remote_set = t0.elapsed();
    let reply = promise_reply(
        |p| webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, p]),
        "create-answer",
    )
    .await?;
    let answer = description_from_reply(reply, "answer")?;
    let created = t0.elapsed();
    set_description(webrtc, "set-local-description", &answer).await?;
    let local_set = t0.elapsed();
    let sdp = mark_end_of_candidates(&gathered_local_sdp(webrtc, gather_timeout, host_only).await?);
    tracing::debug!(
        remote_set_ms = remote_set.as_millis() as u64,
        answer_created_ms = created.as_millis() as u64,
        local_set_ms = local_set.as_millis() as u64,
        gathered_ms = t0.elapsed().as_millis() as u64,
        "offer answered"
    );
    Ok(sdp)
}

/// Watch for `on-negotiation-needed`: connect before the pipeline starts, and create
/// the offer only once it fired (webrtcbin is ready with its transceivers then).
pub fn negotiation_needed(webrtc: &gst::Element) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    webrtc.connect("on-negotiation-needed", false, move |_| {
        let _ = tx.send(true);
        None
    });
    rx
}

/// Create an offer (the WHIP client side), with all local candidates.
pub async fn create_offer(
    webrtc: &gst::Element,
    gather_timeout: Duration,
) -> Result<String, PipelineError> {
    let reply = promise_reply(
        |p| webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, p]),
        "create-offer",
    )
    .await?;
    let offer = description_from_reply(reply, "offer")?;
    set_description(webrtc, "set-local-description", &offer).await?;
    gathered_local_sdp(webrtc, gather_timeout, false).await
}

/// Apply the remote answer (the WHIP client side).
pub async fn accept_answer(webrtc: &gst::Element, answer: &str) -> Result<(), PipelineError> {
    let answer = WebRTCSessionDescription::new(WebRTCSDPType::Answer, parse_sdp(answer)?);
    set_description(webrtc, "set-remote-description", &answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_needed_on_every_gathering_mline() {
        let bundled = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
                       a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\n";
        assert!(every_gathering_mline_has_candidates(bundled));
        let unbundled = bundled.replace("a=group:BUNDLE 0 1\r\n", "");
        assert!(
            !every_gathering_mline_has_candidates(&unbundled),
            "without BUNDLE the video m-line gathers its own"
        );
        let none = bundled.replace("a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\n", "");
        assert!(!every_gathering_mline_has_candidates(&none));
        assert!(!every_gathering_mline_has_candidates("v=0\r\n"));
    }

    #[test]
    fn every_media_section_in_use_ends_its_candidates() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
                   a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\n\
                   a=mid:1\r\nm=video 0 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\n";
        let out = mark_end_of_candidates(sdp);
        assert_eq!(
            out,
            "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
             a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=end-of-candidates\r\n\
             m=video 0 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\n"
        );
        assert_eq!(mark_end_of_candidates(&out), out, "marked once");
        assert_eq!(mark_end_of_candidates("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn nat_twins_follow_udp_host_candidates_only() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=candidate:1 1 UDP 2015363327 10.0.0.5 40001 typ host\r\n\
                   a=candidate:2 1 TCP 1015021823 10.0.0.5 9 typ host tcptype active\r\n\
                   a=candidate:3 1 UDP 1679819007 198.51.100.7 40001 typ srflx raddr 10.0.0.5 rport 40001\r\n";
        let out = announce_address(sdp, "203.0.113.10".parse().unwrap());
        let candidates: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert_eq!(candidates.len(), 4);
        assert_eq!(
            candidates[0],
            "a=candidate:1 1 UDP 2015363327 10.0.0.5 40001 typ host"
        );
        assert_eq!(
            candidates[1],
            "a=candidate:1n 1 UDP 2015363326 203.0.113.10 40001 typ host"
        );
        assert!(
            candidates[2].contains("TCP") && candidates[3].contains("srflx"),
            "others untouched"
        );
        assert!(out.starts_with("v=0\r\nm=video"));
        assert_eq!(
            announce_address("v=0\r\n", "203.0.113.10".parse().unwrap()),
            "v=0\r\n"
        );
    }
}
