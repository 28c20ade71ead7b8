//! Layer 1, the base everything else stands on: money as integers, secrets that never print, one clock,
//! durations as people write them, and the shutdown signal. Imports nothing from the crate.

pub mod money;
pub mod secret;
pub mod signal;
pub mod time;
