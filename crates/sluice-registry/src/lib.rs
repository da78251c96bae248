//! The model registry: versions with their artifacts and evidence, aliases with their history,
//! and the files that describe a model.
//!
//! - [`versions`]: registering (every input checked, nothing written unless all pass),
//!   `model/version` and `model@alias` references, alias moves with webhook notifications.
//! - [`artifact`]: artifact URIs, streaming SHA-256 of local files, re-verification.
//! - [`model_yaml`]: `models/<name>/model.yaml` checked against its schema, every problem at
//!   once with file, line and column; [`deployment`]: the `deployment.yaml`, environment
//!   configs and prompt templates beside it.

#![deny(unsafe_code)]

pub mod artifact;
pub mod deployment;
pub mod model_yaml;
pub mod versions;
pub mod webhook;

pub use model_yaml::{FileReport, validate, validate_file};
pub use versions::{ModelRef, Registration, Selector};

/// Everything a registry operation can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An artifact URI of the wrong shape.
    #[error("artifact {uri:?}: expected {expected}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// The shape expected.
        expected: String,
    },
    /// A declared digest that is not SHA-256 hex.
    #[error("artifact {uri:?}: sha256 {digest:?} is not 64 hex digits")]
    InvalidDigest {
        /// The artifact.
        uri: String,
        /// The digest given.
        digest: String,
    },
    /// A local artifact whose digest is not the declared one.
    #[error(
        "artifact {uri:?}: sha256 mismatch: declared {expected}, the file ({size} bytes) hashes to {actual} (truncated or changed?)"
    )]
    DigestMismatch {
        /// The artifact.
        uri: String,
        /// Declared.
        expected: String,
        /// Computed.
        actual: String,
        /// The file's size.
        size: u64,
    },
    /// A local artifact that cannot be read.
    #[error("artifact {uri:?}: {reason}")]
    Artifact {
        /// The artifact.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A reference that is not `model`, `model/version` or `model@alias`.
    #[error("{0:?} is not a model reference: expected MODEL, MODEL/VERSION or MODEL@ALIAS")]
    InvalidReference(String),
    /// A model with no (undeprecated) versions.
    #[error("no versions of model {0:?} are registered (or all are deprecated)")]
    UnknownModel(String),
    /// A version that is not registered.
    #[error("{model} has no version {version}")]
    UnknownVersion {
        /// Model.
        model: String,
        /// Version.
        version: String,
    },
    /// An alias that points nowhere.
    #[error("{model} has no alias {alias:?}")]
    UnknownAlias {
        /// Model.
        model: String,
        /// Alias.
        alias: String,
    },
    /// A registration with problems; nothing was written.
    #[error("nothing was registered:\n  - {}", .0.join("\n  - "))]
    Rejected(Vec<String>),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}
