//! The cost model: what a meeting costs a media node, in units (pure).
//! Filled in from `bench/capacity.sh`.
