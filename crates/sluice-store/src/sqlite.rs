//! The SQLite backend: one file in WAL mode, writes in `BEGIN IMMEDIATE` transactions (so two
//! writers queue on the busy timeout instead of failing half-way), migrations applied on open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tracing::info;

use crate::model::{Event, NewEvent, NewRun, ResultRecord, Run, RunFilter, RunId, RunStatus};
use crate::{Backend, StoreError};

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations, in order; the schema version is the number applied. Never edit a released
/// one: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: runs and the append-only event log.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'errored')),
        config TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT 'null',
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER
    );
    CREATE INDEX runs_by_kind ON runs (kind, started_at_ms DESC);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX events_by_subject ON events (subject, seq);",
    // 2: per-run results (one row per eval test × prompt × provider × repeat, bench request …).
    "CREATE TABLE run_results (
        run_id TEXT NOT NULL REFERENCES runs (id),
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        pass INTEGER,
        score REAL,
        error TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX run_results_by_key ON run_results (run_id, key);",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn parse_json(text: &str, what: impl FnOnce() -> String) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::CorruptJson {
        what: what(),
        reason: error.to_string(),
    })
}

impl SqliteBackend {
    /// Opens or creates the file (and its directory), sets WAL and the busy timeout, and
    /// applies pending migrations, each in its own immediate transaction.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|error| StoreError::Worker(error.to_string()))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_error(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        let mut connection = Connection::open(&path).map_err(|e| open_error(e.to_string()))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_error(e.to_string()))?;
        let journal: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| open_error(format!("not a usable SQLite database ({e})")))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!(
                "cannot switch to WAL journaling (got {journal})"
            )));
        }
        connection
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| open_error(e.to_string()))?;
        migrate(&mut connection, &path)?;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Worker(error.to_string()))?
    }
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: u32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = SCHEMA_VERSION;
    if current > supported {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: current,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if now >= version {
            continue;
        }
        transaction
            .execute_batch(sql)
            .and_then(|()| transaction.execute_batch(&format!("PRAGMA user_version = {version}")))
            .map_err(|error| StoreError::Migration {
                version,
                reason: error.to_string(),
            })?;
        transaction.commit()?;
        info!(path = %path.display(), version, "Store migrated.");
    }
    Ok(())
}

type RunRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn run_from_parts(parts: RunRow) -> Result<Run, StoreError> {
    let (id, kind, name, status, config, summary, started_at_ms, finished_at_ms) = parts;
    let status = RunStatus::parse(&status).ok_or_else(|| StoreError::CorruptJson {
        what: format!("runs.status of `{id}`"),
        reason: format!("unknown status {status:?}"),
    })?;
    Ok(Run {
        config: parse_json(&config, || format!("runs.config of `{id}`"))?,
        summary: parse_json(&summary, || format!("runs.summary of `{id}`"))?,
        id: RunId(id),
        kind,
        name,
        status,
        started_at_ms,
        finished_at_ms,
    })
}

const RUN_COLUMNS: &str = "id, kind, name, status, config, summary, started_at_ms, finished_at_ms";

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        self.with(|connection| {
            Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
        })
        .await
    }

    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        self.with(move |connection| {
            let started = now_ms();
            let id = RunId::generate(&run.kind, started);
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            transaction.execute(
                "INSERT INTO runs (id, kind, name, status, config, started_at_ms) VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![id.as_str(), run.kind, run.name, run.config.to_string(), started],
            )?;
            transaction.commit()?;
            Ok(id)
        })
        .await
    }

    async fn finish_run(
        &self,
        id: &RunId,
        status: RunStatus,
        summary: serde_json::Value,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<String> = transaction
                .query_row(
                    "SELECT status FROM runs WHERE id = ?1",
                    [id.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            match current.as_deref() {
                None => return Err(StoreError::UnknownRun(id.0)),
                Some("running") => {}
                Some(_) => return Err(StoreError::RunFinished(id.0)),
            }
            transaction.execute(
                "UPDATE runs SET status = ?2, summary = ?3, finished_at_ms = ?4 WHERE id = ?1",
                params![id.as_str(), status.as_str(), summary.to_string(), now_ms()],
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let id = id.clone();
        self.with(move |connection| {
            let row = connection
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                    [id.as_str()],
                    run_from_row,
                )
                .optional()?;
            row.map(run_from_parts).transpose()
        })
        .await
    }

    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<Run>, StoreError> {
        self.with(move |connection| {
            let limit = if filter.limit == 0 { 100 } else { filter.limit };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY started_at_ms DESC, id DESC LIMIT ?3"
            ))?;
            let rows = statement.query_map(
                params![filter.kind, filter.status.map(RunStatus::as_str), limit],
                run_from_row,
            )?;
            rows.map(|row| run_from_parts(row?)).collect()
        })
        .await
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError> {
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sequence_numbers = Vec::with_capacity(events.len());
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO events (subject, kind, payload, at_ms) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let at = now_ms();
                for event in &events {
                    insert.execute(params![
                        event.subject,
                        event.kind,
                        event.payload.to_string(),
                        at
                    ])?;
                    sequence_numbers.push(transaction.last_insert_rowid());
                }
            }
            transaction.commit()?;
            Ok(sequence_numbers)
        })
        .await
    }

    async fn append_results(
        &self,
        run_id: &RunId,
        results: Vec<ResultRecord>,
    ) -> Result<(), StoreError> {
        let run_id = run_id.clone();
        self.with(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let status: Option<String> = transaction
                    .query_row("SELECT status FROM runs WHERE id = ?1", [run_id.as_str()], |row| row.get(0))
                    .optional()?;
                match status.as_deref() {
                    None => return Err(StoreError::UnknownRun(run_id.0)),
                    Some("running") => {}
                    Some(_) => return Err(StoreError::RunFinished(run_id.0)),
                }
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO run_results (run_id, seq, key, pass, score, error, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for result in &results {
                    insert.execute(params![
                        run_id.as_str(),
                        result.seq,
                        result.key,
                        result.pass,
                        result.score,
                        result.error,
                        result.data.to_string()
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn verdicts(&self, run_id: &RunId) -> Result<Vec<(String, Option<bool>)>, StoreError> {
        let run_id = run_id.clone();
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT key, pass FROM run_results WHERE run_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([run_id.as_str()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<bool>>(1)?))
            })?;
            rows.map(|row| row.map_err(StoreError::from)).collect()
        })
        .await
    }

    async fn results(&self, run_id: &RunId) -> Result<Vec<ResultRecord>, StoreError> {
        let run_id = run_id.clone();
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([run_id.as_str()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<bool>>(2)?,
                    row.get::<_, Option<f64>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, key, pass, score, error, data) = row?;
                Ok(ResultRecord {
                    data: parse_json(&data, || format!("run_results.data #{seq} of `{run_id}`"))?,
                    seq,
                    key,
                    pass,
                    score,
                    error,
                })
            })
            .collect()
        })
        .await
    }

    async fn events(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let subject = subject.to_owned();
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, subject, kind, payload, at_ms FROM events WHERE subject = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement.query_map(params![subject, after, if limit == 0 { 1000 } else { limit }], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?, row.get::<_, i64>(4)?))
            })?;
            rows.map(|row| {
                let (seq, subject, kind, payload, at_ms) = row?;
                Ok(Event {
                    payload: parse_json(&payload, || format!("events.payload #{seq}"))?,
                    seq,
                    subject,
                    kind,
                    at_ms,
                })
            })
            .collect()
        })
        .await
    }
}
