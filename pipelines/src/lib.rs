//! GStreamer foundation for Gremium's media plane.
//!
//! Owns: GStreamer initialisation and the check that the plugins Gremium needs are
//! installed; the [`Pipeline`] wrapper with its forward-only lifecycle, the bus read
//! as an async stream, stop = EOS with a watchdog (dot-file dump when frozen), and
//! small element builders; the WebRTC endpoint ([`webrtc`], ICE restarts under it in
//! [`ice_restart`]) and our WHIP client
//! ([`publisher`]); the one H.264 encode configuration of program outputs
//! ([`encode`]); branches of a `tee` that come and go while it runs ([`tee`]).
//!
//! Must not: know about meetings, HTTP or SQL.

pub mod dtls_check;
pub mod dtls_fingerprint;
pub mod encode;
pub mod guard;
pub mod ice_restart;
pub mod pipeline;
pub mod publisher;
pub mod tee;
pub mod webrtc;

pub use pipeline::{
    capsfilter, i420_caps, link_chain, make, stop_and_remove, stop_for_good, BusEvent, Lifecycle,
    LifecycleEvent, Pipeline, PipelineSettings,
};

/// Elements the media plane relies on, with the Debian package that provides them.
pub const REQUIRED_ELEMENTS: &[(&str, &str)] = &[
    ("webrtcbin", "gstreamer1.0-plugins-bad"),
    ("nicesrc", "gstreamer1.0-nice"),
    ("compositor", "gstreamer1.0-plugins-base"),
    ("audiomixer", "gstreamer1.0-plugins-base"),
    ("textoverlay", "gstreamer1.0-x"),
    ("videotestsrc", "gstreamer1.0-plugins-base"),
    ("audiotestsrc", "gstreamer1.0-plugins-base"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("vp8enc", "gstreamer1.0-plugins-good"),
    ("vp8dec", "gstreamer1.0-plugins-good"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("avenc_aac", "gstreamer1.0-libav"),
    ("hlssink2", "gstreamer1.0-plugins-bad"),
    ("flvmux", "gstreamer1.0-plugins-good"),
    ("rtmp2sink", "gstreamer1.0-plugins-bad"),
];

/// Errors of the GStreamer foundation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// GStreamer could not be initialised.
    #[error("gstreamer init failed: {0}")]
    Init(#[from] gst::glib::Error),
    /// GStreamer is older than 1.22.
    #[error("gstreamer {found} is too old; 1.22 or newer is required")]
    TooOld {
        /// Version found at run time.
        found: String,
    },
    /// An element's factory is not installed.
    #[error("gstreamer element {factory:?} is not available (missing plugin?)")]
    MissingElement {
        /// Factory name.
        factory: String,
    },
    /// Two elements would not link.
    #[error("cannot link {0}")]
    Link(String),
    /// A state change was refused.
    #[error("state change failed: {0}")]
    StateChange(String),
    /// ICE could not be configured or did not gather.
    #[error("ICE: {0}")]
    Ice(String),
    /// A session description was malformed or refused.
    #[error("SDP: {0}")]
    Sdp(String),
    /// Something the endpoint does not support (e.g. a codec).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// EOS did not reach the sinks before the watchdog expired.
    #[error("pipeline frozen (graph dumped to {dot_file:?})")]
    PipelineFrozen {
        /// Dot file of the graph at the time, when it could be written.
        dot_file: Option<std::path::PathBuf>,
    },
}

/// What [`init`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// GStreamer version string, e.g. "GStreamer 1.22.0".
    pub version: String,
    /// Required elements that are missing, with the package that provides them.
    pub missing: Vec<(&'static str, &'static str)>,
}

/// Initialise GStreamer (idempotent) and report which required elements are missing.
pub fn init() -> Result<Runtime, PipelineError> {
    gst::init()?;
    let (major, minor, _, _) = gst::version();
    if (major, minor) < (1, 22) {
        return Err(PipelineError::TooOld {
            found: gst::version_string().to_string(),
        });
    }
    let missing = REQUIRED_ELEMENTS
        .iter()
        .copied()
        .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
        .collect();
    Ok(Runtime {
        version: gst::version_string().to_string(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn gstreamer_and_required_plugins_are_installed() {
        let rt = super::init().expect("gstreamer init");
        assert!(rt.version.contains("1."), "{}", rt.version);
        assert!(rt.missing.is_empty(), "missing elements: {:?}", rt.missing);
    }
}
