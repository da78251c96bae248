//! The store: the one place Sluice keeps what it has done (runs, their results, events) and
//! the model registry (versions, aliases and their history, lineage).
//!
//! Callers hold a [`Store`] and never see SQL. Behind it sits a [`Backend`]; [`SqliteBackend`]
//! is the default (one file, WAL, `BEGIN IMMEDIATE` for writes, a busy timeout, versioned
//! migrations applied on open). [`PostgresBackend`], selected by a `postgres://` URL,
//! implements the same trait with the same numbered migrations and passes the same tests, for
//! replicas that share one store.

#![deny(unsafe_code)]

mod error;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
mod registry;
mod schema;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::StoreError;
pub use model::{
    Event, Lease, LeaseOutcome, NewEvent, NewRun, RawEvent, ResultRecord, Run, RunFilter, RunId,
    RunKind, RunStatus, utc_timestamp,
};
#[cfg(feature = "postgres")]
pub use postgres::PostgresBackend;
pub use registry::{
    AliasChange, AliasMove, Artifact, Deprecation, LineageLink, ModelVersion, NewModelVersion,
    VersionUpdate,
};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteBackend;

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Parses stored JSON, naming the row and column when it does not parse.
pub(crate) fn parse_json(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::CorruptJson {
        what: what(),
        reason: error.to_string(),
    })
}

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
    /// One page of a run's results (`limit` from `offset`) and how many it has in all: in
    /// `seq` order, or with `failures_first` the failed ones, then the errored ones, then the
    /// rest, each in `seq` order. Only the page's rows are read whole.
    async fn results_page(
        &self,
        run_id: &RunId,
        offset: u32,
        limit: u32,
        failures_first: bool,
    ) -> Result<(u64, Vec<ResultRecord>), StoreError>;
    /// The results of a run whose key is one of `keys`, in `seq` order.
    async fn results_for_keys(
        &self,
        run_id: &RunId,
        keys: &[String],
    ) -> Result<Vec<ResultRecord>, StoreError>;
    /// A run's verdicts alone, `(key, pass)` in `seq` order: what history checks need, without
    /// each result's data.
    async fn verdicts(&self, run_id: &RunId) -> Result<Vec<(String, Option<bool>)>, StoreError>;
    /// Appends events in one transaction, returning their sequence numbers.
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError>;
    /// The sequence number of `subject`'s first event at or after `since_ms`; `None` when
    /// there is none. Paging with [`Backend::events`] from just before it reads only the
    /// events since then.
    async fn first_event_since(
        &self,
        subject: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Events of one subject after sequence number `after`, oldest first (at most `limit`;
    /// 1,000 when 0), their payloads as stored.
    async fn events_raw(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RawEvent>, StoreError>;
    /// Events of one subject after sequence number `after`, oldest first.
    async fn events(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_raw(subject, after, limit)
            .await?
            .into_iter()
            .map(RawEvent::parse)
            .collect()
    }

    /// Registers a version; a version is registered once ([`StoreError::VersionExists`]).
    async fn register_version(&self, version: NewModelVersion) -> Result<ModelVersion, StoreError>;
    /// The versions of `model` (all models when `None`), by model then registration time.
    async fn model_versions(&self, model: Option<&str>) -> Result<Vec<ModelVersion>, StoreError>;
    /// One version.
    async fn model_version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>, StoreError>;
    /// The version an alias points at.
    async fn resolve_alias(&self, model: &str, alias: &str) -> Result<Option<String>, StoreError>;
    /// Moves (or removes) an alias and appends the move to its history, in one transaction.
    /// The version must be registered.
    async fn move_alias(&self, change: AliasChange) -> Result<AliasMove, StoreError>;
    /// The history of one model's aliases (or of one alias), oldest first.
    async fn alias_history(
        &self,
        model: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasMove>, StoreError>;
    /// Changes a version's tags or deprecates it.
    async fn update_version(
        &self,
        model: &str,
        version: &str,
        update: VersionUpdate,
    ) -> Result<ModelVersion, StoreError>;
    /// Deletes a version and its lineage; refused while an alias points at it. Alias history
    /// is kept.
    async fn delete_version(&self, model: &str, version: &str) -> Result<(), StoreError>;
    /// Records that a run used a version; idempotent.
    async fn link_run(
        &self,
        model: &str,
        version: &str,
        kind: RunKind,
        run_id: &str,
    ) -> Result<(), StoreError>;
    /// The runs that used a version, oldest first.
    async fn lineage(&self, model: &str, version: &str) -> Result<Vec<LineageLink>, StoreError>;
    /// Takes `name` for `holder` for `ttl_ms` from now: when nobody holds it, its lease has
    /// lapsed, or `holder` already holds it (a renewal); otherwise says who holds it. Atomic:
    /// of two processes asking at once, one gets it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError>;
    /// Gives `name` up, if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// The lease on `name`, live or lapsed, if there is one.
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL (which may carry a password: show it with
    /// [`StoreLocation::display`]).
    Postgres(String),
}

impl StoreLocation {
    /// Parses `--store` / `SLUICE_STORE`: a file path (or `sqlite://PATH`).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        if let Some((scheme, _)) = text.split_once("://")
            && scheme != "sqlite"
        {
            return Err(StoreError::UnsupportedLocation {
                location: redact_url(text),
                reason: "expected a file path, sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                    .to_owned(),
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

    /// The location as it may be shown: a file path, or a URL with its password hidden.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// Hides a password in a URL before it is shown anywhere.
pub(crate) fn redact_url(url: &str) -> String {
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
            #[cfg(feature = "postgres")]
            StoreLocation::Postgres(url) => Arc::new(PostgresBackend::open(url).await?),
            #[cfg(not(feature = "postgres"))]
            StoreLocation::Postgres(url) => {
                return Err(StoreError::UnsupportedLocation {
                    location: redact_url(url),
                    reason: "this build has no PostgreSQL backend (it was built without the `postgres` feature)".into(),
                });
            }
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

    /// Takes the lease on `name` for this process (see [`Backend::acquire_lease`]); a lease
    /// whose holder is a process on this host that has exited is taken over at once.
    pub async fn claim(&self, name: &str, ttl_ms: i64) -> Result<LeaseOutcome, StoreError> {
        let holder = Lease::holder_here();
        match self.backend.acquire_lease(name, &holder, ttl_ms).await? {
            LeaseOutcome::Held(lease) if lease.holder_gone() => {
                self.backend.release_lease(name, &lease.holder).await?;
                self.backend.acquire_lease(name, &holder, ttl_ms).await
            }
            outcome => Ok(outcome),
        }
    }

    /// Gives up this process's lease on `name`.
    pub async fn unclaim(&self, name: &str) -> Result<(), StoreError> {
        self.backend
            .release_lease(name, &Lease::holder_here())
            .await
    }

    /// Creates a run and takes this process's hold on it ([`Store::hold_run`]): what a
    /// command that records its run does first.
    pub async fn create_held_run(&self, run: NewRun) -> Result<(RunId, RunHold), StoreError> {
        let id = self.create_run(run).await?;
        let hold = self.hold_run(id.as_str()).await?;
        Ok((id, hold))
    }

    /// Takes this process's lease on run `id` and keeps it (renewed in the background until
    /// the returned [`RunHold`] is dropped), so that a run whose process died reads as
    /// interrupted rather than running. A run another live process holds is refused with
    /// [`StoreError::RunHeld`]; a store that cannot record the lease does not stop the run.
    pub async fn hold_run(&self, id: &str) -> Result<RunHold, StoreError> {
        let name = run_lease(id);
        match self.claim(&name, RUN_LEASE_TTL_MS).await {
            Ok(LeaseOutcome::Acquired { .. }) => {}
            Ok(LeaseOutcome::Held(lease)) => {
                return Err(StoreError::RunHeld {
                    run: id.to_owned(),
                    holder: lease.holder,
                    until: utc_timestamp(lease.expires_at_ms),
                });
            }
            Err(error) => tracing::warn!(%error, "Cannot record that this process runs the run."),
        }
        let store = self.clone();
        Ok(RunHold(tokio::spawn(async move {
            loop {
                tokio::time::sleep(RUN_LEASE_RENEW).await;
                if let Err(error) = store.claim(&name, RUN_LEASE_TTL_MS).await {
                    tracing::warn!(%error, "Cannot renew the run's lease.");
                }
            }
        })))
    }

    /// Whether a run stored as running has lost its process: a lease whose holder on this host
    /// has exited or that has lapsed, or no lease at all once the run is older than
    /// [`RUN_LEASE_GRACE_MS`] (a run is created a moment before its process takes the lease).
    /// Rollouts are driven under their own lease, by name.
    pub async fn interrupted(&self, run: &Run) -> Result<bool, StoreError> {
        if run.status != RunStatus::Running {
            return Ok(false);
        }
        let name = if run.kind == RunKind::Rollout {
            format!("rollout:{}", run.name)
        } else {
            run_lease(run.id.as_str())
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Ok(match self.lease(&name).await? {
            Some(lease) => !lease.live(now) || lease.holder_gone(),
            None => now - run.started_at_ms > RUN_LEASE_GRACE_MS,
        })
    }

    /// The backend, for the operations of the [`Backend`] trait.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

/// How long a running command's lease on its run lasts unless renewed.
const RUN_LEASE_TTL_MS: i64 = 30_000;
/// How long a new run may go without its lease before it reads as interrupted.
pub const RUN_LEASE_GRACE_MS: i64 = 10_000;
/// How often a running command renews it.
const RUN_LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

/// The lease a running command holds on its run.
fn run_lease(id: &str) -> String {
    format!("run:{id}")
}

/// This process's hold on a run (see [`Store::hold_run`]); dropping it stops renewing the
/// lease.
#[derive(Debug)]
pub struct RunHold(tokio::task::JoinHandle<()>);

impl Drop for RunHold {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Puts a page of results in its order: by `seq`, or failed, errored, then the rest.
pub(crate) fn sort_page(page: &mut [ResultRecord], failures_first: bool) {
    if failures_first {
        page.sort_by_key(|r| {
            let rank = match (r.pass, &r.error) {
                (_, Some(_)) => 1,
                (Some(false), None) => 0,
                _ => 2,
            };
            (rank, r.seq)
        });
    } else {
        page.sort_by_key(|r| r.seq);
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
        let location = StoreLocation::parse("postgres://sluice:hunter2@db/sluice").unwrap();
        assert_eq!(
            location,
            StoreLocation::Postgres("postgres://sluice:hunter2@db/sluice".into())
        );
        assert_eq!(location.display(), "postgres://sluice:***@db/sluice");
        assert!(StoreLocation::parse("mysql://x").is_err());
        assert!(StoreLocation::parse("").is_err());
    }
}
