//! Store errors. They name the store location and what failed; they never include data.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The location names a backend this build does not have.
    #[error("unsupported store location {location:?}: {reason}")]
    UnsupportedLocation {
        /// The location, with any password hidden.
        location: String,
        /// Why.
        reason: String,
    },
    /// The store file or its directory could not be created or opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The store was written by a newer Sluice; it is left untouched.
    #[error(
        "the store at {path} has schema version {found}, newer than this build's {supported}; upgrade sluice (the store was not modified)"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A migration failed; it was rolled back.
    #[error("migration to schema version {version} failed and was rolled back: {reason}")]
    Migration {
        /// The version being applied.
        version: u32,
        /// What failed.
        reason: String,
    },
    /// A query failed.
    #[error("store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A run id that does not exist.
    #[error("no run with id `{0}`")]
    UnknownRun(String),
    /// A run that was already finished.
    #[error("run `{0}` is already finished")]
    RunFinished(String),
    /// A run another live process is working on.
    #[error(
        "run `{run}` is still being run by {holder} (lease until {until}); wait for it, or stop it first"
    )]
    RunHeld {
        /// The run.
        run: String,
        /// The process holding it.
        holder: String,
        /// When its lease runs out, UTC.
        until: String,
    },
    /// Stored JSON that does not parse (the row is reported, not dropped).
    #[error("stored JSON in {what} does not parse: {reason}")]
    CorruptJson {
        /// Which row and column.
        what: String,
        /// The parse error.
        reason: String,
    },
    /// A PostgreSQL server that cannot be reached or refused the login.
    #[error("cannot connect to the store at {location}: {reason}")]
    Connect {
        /// The URL, with any password hidden.
        location: String,
        /// What failed.
        reason: String,
    },
    /// A PostgreSQL query failed.
    #[error("store query failed: {0}")]
    Postgres(String),
    /// An argument that breaks a rule of the store; nothing was written.
    #[error("invalid {what}: expected {expected}")]
    Invalid {
        /// What was wrong, with the value.
        what: String,
        /// What is expected.
        expected: String,
    },
    /// A version registered again.
    #[error(
        "{model} version {version} is already registered (versions are immutable: register a new version)"
    )]
    VersionExists {
        /// Model.
        model: String,
        /// Version.
        version: String,
    },
    /// A version that is not registered.
    #[error("{model} has no version {version}")]
    UnknownVersion {
        /// Model.
        model: String,
        /// Version.
        version: String,
    },
    /// A version that aliases still point at.
    #[error("{model} version {version} is what {aliases} point(s) at; move or remove those aliases first (nothing was deleted)", aliases = aliases.join(", "))]
    VersionAliased {
        /// Model.
        model: String,
        /// Version.
        version: String,
        /// The aliases.
        aliases: Vec<String>,
    },
    /// The blocking worker panicked or was cancelled.
    #[error("store worker failed: {0}")]
    Worker(String),
}
