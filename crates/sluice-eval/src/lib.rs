//! `sluice eval`: run an eval suite (promptfoo's format) against OpenAI-compatible providers
//! and gate on the result.
//!
//! [`suite`] compiles the YAML (and its JSONL/CSV/YAML test files) into a [`Suite`];
//! [`template`] renders `{{var}}`s; [`assertion`] grades outputs; [`runner`] runs every
//! test × prompt × provider × repeat with bounded concurrency, streaming rows to the caller;
//! [`stats`] has the interval maths; [`report`] writes console, JSON, JSONL and JUnit reports.

#![deny(unsafe_code)]

pub mod assertion;
pub mod cache;
pub mod compare;
pub mod glob;
pub mod graded;
pub mod http_provider;
pub mod lm_eval;
pub mod report;
pub mod runner;
pub mod scripted;
pub mod session;
pub mod suite;
pub mod template;
pub mod text_metrics;

pub use runner::{EvalRow, Gate, RunOptions, Summary};
pub use suite::{Suite, SuiteError};
