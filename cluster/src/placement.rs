//! Choosing a media node for a meeting (pure).
