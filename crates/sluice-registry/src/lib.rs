//! The model registry's file side: `models/<name>/model.yaml` checked against its schema.
//!
//! [`validate`] checks every `model.yaml` under the paths it is given and reports every problem
//! at once, each with its file, line and column.

#![deny(unsafe_code)]

pub mod model_yaml;

pub use model_yaml::{FileReport, validate, validate_file};
