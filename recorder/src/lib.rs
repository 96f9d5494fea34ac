//! Recording sessions of the recording-audience program.
//!
//! Owns: fragmented/segmented output, finalize, the manifest with its consent
//! timeline, encryption, hand-off to storage, post-processing (ffmpeg-sidecar).
//!
//! Must not: talk HTTP.
//!
//! Status: empty. The recording issue fills it; nothing here is wired yet.
