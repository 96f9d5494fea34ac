//! Live outputs of the livestream-audience program.
//!
//! Owns: HLS packaging for citizens, RTMP push with reconnect, the public/non-public
//! switch to the slate.
//!
//! Must not: talk SQL.
//!
//! Status: empty. The streaming issue fills it; nothing here is wired yet.
