//! The store: the one place Sluice keeps what it has done (runs, their results, events).
//!
//! Callers hold a [`Store`] and never see SQL. Behind it sits a [`Backend`]; [`SqliteBackend`]
//! is the default (one file, WAL, `BEGIN IMMEDIATE` for writes, a busy timeout, versioned
//! migrations applied on open). A PostgreSQL backend implements the same trait and passes the
//! same tests; [`StoreLocation`] is where a `postgres://` URL will select it.

#![deny(unsafe_code)]

mod error;
mod model;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::StoreError;
pub use model::{Event, NewEvent, NewRun, ResultRecord, Run, RunFilter, RunId, RunStatus};
pub use sqlite::{SCHEMA_VERSION, SqliteBackend};

/// The default store path, relative to the working directory.
pub const DEFAULT_PATH: &str = ".sluice/sluice.db";

/// The operations every backend provides. All writes are atomic.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The schema version after migrations.
    async fn schema_version(&self) -> Result<u32, StoreError>;
    /// Records a new run in status `running` and returns its id.
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError>;
    /// Sets a run's final status and summary; a run can be finished once.
    async fn finish_run(
        &self,
        id: &RunId,
        status: RunStatus,
        summary: serde_json::Value,
    ) -> Result<(), StoreError>;
    /// One run.
    async fn get_run(&self, id: &RunId) -> Result<Option<Run>, StoreError>;
    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<Run>, StoreError>;
    /// Appends results to a running run, in one transaction (callers batch them).
    async fn append_results(
        &self,
        run_id: &RunId,
        results: Vec<ResultRecord>,
    ) -> Result<(), StoreError>;
    /// A run's results in `seq` order.
    async fn results(&self, run_id: &RunId) -> Result<Vec<ResultRecord>, StoreError>;
    /// A run's verdicts alone, `(key, pass)` in `seq` order: what history checks need, without
    /// each result's data.
    async fn verdicts(&self, run_id: &RunId) -> Result<Vec<(String, Option<bool>)>, StoreError>;
    /// Appends events in one transaction, returning their sequence numbers.
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError>;
    /// Events of one subject after sequence number `after`, oldest first.
    async fn events(&self, subject: &str, after: i64, limit: u32)
    -> Result<Vec<Event>, StoreError>;
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl StoreLocation {
    /// Parses `--store` / `SLUICE_STORE`: a file path (or `sqlite://PATH`).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Err(StoreError::UnsupportedLocation {
                location: redact_url(text),
                reason: "this build stores in SQLite only; give a file path".to_owned(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://")
            && scheme != "sqlite"
        {
            return Err(StoreError::UnsupportedLocation {
                location: redact_url(text),
                reason: "expected a file path or sqlite://PATH".to_owned(),
            });
        }
        let path = text.strip_prefix("sqlite://").unwrap_or(text);
        if path.is_empty() {
            return Err(StoreError::UnsupportedLocation {
                location: String::new(),
                reason: "the store path is empty".to_owned(),
            });
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    }
}

/// Hides a password in a URL before it is shown anywhere.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    location: StoreLocation,
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `location`.
    pub async fn open(location: &StoreLocation) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = match location {
            StoreLocation::Sqlite(path) => Arc::new(SqliteBackend::open(path).await?),
        };
        Ok(Self {
            backend,
            location: location.clone(),
        })
    }

    /// Opens a SQLite store at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::open(&StoreLocation::Sqlite(path.to_owned())).await
    }

    /// Where this store lives.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The backend, for the operations of the [`Backend`] trait.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_hide_passwords() {
        assert_eq!(
            StoreLocation::parse("./x.db").unwrap(),
            StoreLocation::Sqlite("./x.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:///tmp/x.db").unwrap(),
            StoreLocation::Sqlite("/tmp/x.db".into())
        );
        let error = StoreLocation::parse("postgres://sluice:hunter2@db/sluice")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("postgres://sluice:***@db/sluice"), "{error}");
        assert!(StoreLocation::parse("mysql://x").is_err());
        assert!(StoreLocation::parse("").is_err());
    }
}
