//! The RTMP destinations of one HLS bin: adding one (checked id, URL and key, a
//! supervisor thread of its own), removing one or all, and their statuses.
//!
//! Must not: build branches or decide about retries (the supervisor does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use gremium_pipelines::PipelineError;
use tokio::sync::watch;

use super::supervisor::Supervisor;
use super::{join_location, Ctl, RtmpHandle, RtmpStatus};
use crate::StreamerError;

struct Dest {
    ctl: mpsc::Sender<Ctl>,
}

/// The RTMP destinations of one HLS bin.
pub(crate) struct RtmpOutputs {
    parent: gst::Bin,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    dests: Mutex<BTreeMap<String, Dest>>,
    status: watch::Sender<BTreeMap<String, RtmpStatus>>,
    /// Finishing: no more destinations.
    closed: AtomicBool,
}

/// Keep the stream key out of GStreamer's own logs.
fn quiet_rtmp_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for category in ["rtmpclient", "rtmp2locationhandler"] {
            gst::log::set_threshold_for_name(category, gst::DebugLevel::Warning);
        }
    });
}

impl RtmpOutputs {
    pub(crate) fn new(parent: gst::Bin, video_tee: gst::Element, audio_tee: gst::Element) -> Self {
        RtmpOutputs {
            parent,
            video_tee,
            audio_tee,
            dests: Mutex::new(BTreeMap::new()),
            status: watch::channel(BTreeMap::new()).0,
            closed: AtomicBool::new(false),
        }
    }

    /// Add a destination and start its supervisor (see
    /// [`HlsBin::add_rtmp`](crate::hls::HlsBin::add_rtmp)).
    pub(crate) fn add(&self, id: &str, url: &str, key: &str) -> Result<RtmpHandle, StreamerError> {
        let bad = |m: String| Err(StreamerError::InvalidSettings(m));
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return bad(format!("RTMP destination id {id:?} is not usable"));
        }
        let location = join_location(url, key);
        let shown = gremium_protocol::redact_rtmp_url(url);
        if !(url.starts_with("rtmp://") || url.starts_with("rtmps://")) {
            return bad(format!("{id}: {shown} is not an rtmp:// or rtmps:// URL"));
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return bad(format!("{id}: the stream key is empty or has white space"));
        }
        let mut dests = self.dests.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return bad(format!("{id}: the stream is finishing"));
        }
        quiet_rtmp_logs();
        let running = self
            .status
            .borrow()
            .get(id)
            .is_some_and(|s| *s != RtmpStatus::Stopped);
        if running {
            return bad(format!("RTMP destination {id} exists"));
        }
        let (tx, rx) = mpsc::channel();
        let sup = Supervisor {
            id: id.to_string(),
            location,
            key: key.to_string(),
            shown: shown.clone(),
            parent: self.parent.clone(),
            video_tee: self.video_tee.clone(),
            audio_tee: self.audio_tee.clone(),
            status: self.status.clone(),
            ctl_tx: tx.clone(),
            ctl: rx,
        };
        sup.set(RtmpStatus::Connecting);
        std::thread::Builder::new()
            .name(format!("rtmp-{id}"))
            .spawn(move || sup.run())
            .map_err(|e| PipelineError::Link(format!("RTMP supervisor thread: {e}")))?;
        dests.insert(id.to_string(), Dest { ctl: tx });
        tracing::info!(rtmp = id, location = %shown, "RTMP destination added");
        Ok(RtmpHandle {
            id: id.to_string(),
            location: shown,
            status: self.status.subscribe(),
        })
    }

    /// Ask a destination to stop; false if there is none by that id.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let dest = self
            .dests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match dest {
            Some(d) => {
                let _ = d.ctl.send(Ctl::Stop);
                true
            }
            None => false,
        }
    }

    /// Ask every destination to stop.
    pub(crate) fn remove_all(&self) {
        let mut guard = self.dests.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        let dests = std::mem::take(&mut *guard);
        drop(guard);
        for d in dests.values() {
            let _ = d.ctl.send(Ctl::Stop);
        }
    }

    pub(crate) fn status(&self) -> Vec<(String, RtmpStatus)> {
        self.status
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<BTreeMap<String, RtmpStatus>> {
        self.status.subscribe()
    }
}

impl Drop for RtmpOutputs {
    fn drop(&mut self) {
        self.remove_all();
    }
}
