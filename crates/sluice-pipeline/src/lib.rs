//! `sluice pipeline`: a team's CI/CD pipeline as one file. [`spec`] compiles `pipeline.yaml`
//! into a checked stage graph — every stage's command, what it needs, its timeout, retries and
//! allowed failures, and the `finally` stages that always run — with every problem of the file
//! reported at once by line and column, cycles named, and unknown stages given a suggestion.

#![deny(unsafe_code)]

pub mod runner;
pub mod spec;

pub use runner::{Event, Outcome, Report, RunOptions, State, run};
pub use spec::{AllowFailure, Pipeline, Retry, Stage};
