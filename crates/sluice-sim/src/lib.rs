//! `sluice simulate`: an OpenAI-compatible model-server **simulator**.
//!
//! It is a test and demo tool, not a model: answers come from scripts (exact text, substring,
//! regex) or echo the prompt, with a latency model (TTFT distribution, tokens per second,
//! jitter) and injected faults (error statuses, hangs, truncated streams, malformed JSON,
//! in-band stream errors). Each model name has a *profile*; an admin endpoint replaces a
//! profile at runtime, which is how tests and demos turn a healthy candidate into a regressed
//! one. Every response carries `x-sluice-simulator: true`.

#![deny(unsafe_code)]

mod clock;
pub mod config;
mod embed;
mod profile;
mod server;
mod text;

pub use config::{Latency, Profile, SimConfig};
pub use server::{SimServer, Simulator};
