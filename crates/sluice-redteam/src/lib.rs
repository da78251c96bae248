//! `sluice redteam`: a safety gate run fully offline against any OpenAI-compatible endpoint.
//!
//! [`pack`] reads probe packs (built-in, user JSONL, AdvBench-style CSV); [`config`] checks
//! `redteam.yaml`; [`run`] sends each probe plain and through each strategy chain with a
//! canary and planted data in the system prompt, and judges the answers with the detectors of
//! `sluice-safety`; [`report`] applies the gate (attack success rate per category and overall
//! with Wilson intervals, over-refusal, errors) and writes the summary, JSON and SARIF 2.1.0.

#![deny(unsafe_code)]

pub mod config;
pub mod diff;
pub mod judge;
pub mod pack;
pub mod report;
pub mod run;
pub mod session;

pub use config::{Chain, Config};
