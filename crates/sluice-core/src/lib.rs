//! The pure core every other Sluice crate may use: the statistics behind every gate
//! ([`stats`]), the [`Secret`] wrapper that keeps keys and tokens out of logs, and the writers
//! of the report formats CI systems read ([`report`]: XML escaping, JUnit, GitHub workflow
//! commands).
//!
//! It does no IO, holds no runtime and depends on no other crate, so it sits at the bottom of
//! the layering written in `ARCHITECTURE.md` (checked by `tests/layering.rs`).

#![deny(unsafe_code)]

pub mod report;
mod secret;
pub mod stats;

pub use secret::Secret;
