//! `sluice pipeline`: a team's CI/CD pipeline as one file. [`spec`] compiles `pipeline.yaml`
//! into a checked stage graph — every stage's command, what it needs, its timeout, retries and
//! allowed failures, and the `finally` stages that always run — with every problem of the file
//! reported at once by line and column, cycles named, and unknown stages given a suggestion.

#![deny(unsafe_code)]

pub mod cache;
pub mod export;
pub mod expr;
pub mod gpu;
pub mod reports;
pub mod runner;
pub mod spec;

pub use runner::{Builtins, Event, External, Outcome, Report, RunOptions, State, run};
pub use spec::{
    Action, AllowFailure, Builtin, Cache, GpuRequest, Pipeline, Reports, Retry, RetryOn, Stage,
    Tier,
};
