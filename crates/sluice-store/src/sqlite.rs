//! The SQLite backend: one file in WAL mode, writes in `BEGIN IMMEDIATE` transactions (so two
//! writers queue on the busy timeout instead of failing half-way), migrations applied on open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tracing::info;

use crate::model::{
    Lease, LeaseOutcome, NewEvent, NewRun, RawEvent, ResultRecord, Run, RunFilter, RunId, RunKind,
    RunStatus, stored_kind,
};
use crate::registry::{
    AliasChange, AliasMove, LineageLink, ModelVersion, NewModelVersion, VERSION_COLUMNS,
    VersionRow, VersionUpdate, aliases_by_version, check_alias, check_lineage_kind, check_names,
    updated_tags,
};
use crate::schema::{Dialect, SCHEMA_VERSION, migration};
use crate::{Backend, StoreError, now_ms, parse_json};

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches the file to WAL journaling and returns the journal mode it has. The switch takes
/// a lock that SQLite does not wait for (it answers "database is locked" at once while
/// another process is creating the same file), so a busy answer is retried until the busy
/// timeout.
fn wal_journal(connection: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if matches!(
                    error.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
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
        let journal = wal_journal(&connection)
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
    for index in current as usize..SCHEMA_VERSION as usize {
        let version = index as u32 + 1;
        let sql = migration(index, Dialect::Sqlite).unwrap_or_default();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if now >= version {
            continue;
        }
        transaction
            .execute_batch(&sql)
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
        kind: stored_kind(&kind, || format!("runs.kind of `{id}`"))?,
        id: RunId(id),
        name,
        status,
        started_at_ms,
        finished_at_ms,
    })
}

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        model: row.get(0)?,
        version: row.get(1)?,
        artifacts: row.get(2)?,
        config: row.get(3)?,
        tags: row.get(4)?,
        commit: row.get(5)?,
        registered_by: row.get(6)?,
        registered_at_ms: row.get(7)?,
        deprecated: row.get(8)?,
        deprecated_at_ms: row.get(9)?,
    })
}

/// Versions matching `model` (all when `None`), with their aliases.
fn read_versions(
    connection: &Connection,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<ModelVersion>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions
         WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR version = ?2)
         ORDER BY model, registered_at_ms, version"
    ))?;
    let rows = statement
        .query_map(params![model, version], version_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut aliases = connection.prepare_cached(
        "SELECT model, alias, version FROM model_aliases WHERE (?1 IS NULL OR model = ?1)",
    )?;
    let mut aliases = aliases_by_version(
        aliases
            .query_map(params![model], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?,
    );
    rows.into_iter()
        .map(|row| {
            let names = aliases
                .remove(&(row.model.clone(), row.version.clone()))
                .unwrap_or_default();
            row.into_version(names)
        })
        .collect()
}

fn one_version(
    connection: &Connection,
    model: &str,
    version: &str,
) -> Result<ModelVersion, StoreError> {
    read_versions(connection, Some(model), Some(version))?
        .pop()
        .ok_or_else(|| StoreError::UnknownVersion {
            model: model.to_owned(),
            version: version.to_owned(),
        })
}

fn insert_link(
    connection: &Connection,
    model: &str,
    version: &str,
    kind: RunKind,
    run_id: &str,
) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO model_lineage (model, version, kind, run_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO NOTHING",
        params![model, version, kind.as_str(), run_id, now_ms()],
    )?;
    Ok(())
}

fn alias_move(row: &rusqlite::Row<'_>) -> rusqlite::Result<AliasMove> {
    Ok(AliasMove {
        seq: row.get(0)?,
        model: row.get(1)?,
        alias: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        actor: row.get(5)?,
        reason: row.get(6)?,
        at_ms: row.get(7)?,
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
            let id = RunId::generate(run.kind, started);
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            transaction.execute(
                "INSERT INTO runs (id, kind, name, status, config, started_at_ms) VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![id.as_str(), run.kind.as_str(), run.name, run.config.to_string(), started],
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
                params![
                    filter.kind.map(RunKind::as_str),
                    filter.status.map(RunStatus::as_str),
                    limit
                ],
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

    async fn results_page(
        &self,
        run_id: &RunId,
        offset: u32,
        limit: u32,
        failures_first: bool,
    ) -> Result<(u64, Vec<ResultRecord>), StoreError> {
        let run_id = run_id.clone();
        self.with(move |connection| {
            let total: i64 = connection
                .prepare_cached("SELECT COUNT(*) FROM run_results WHERE run_id = ?1")?
                .query_row([run_id.as_str()], |row| row.get(0))?;
            // The page's rows are chosen on narrow columns, then read whole.
            let sql = if failures_first {
                "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = ?1 AND seq IN \
                 (SELECT seq FROM run_results WHERE run_id = ?1 \
                  ORDER BY CASE WHEN error IS NOT NULL THEN 1 WHEN pass = 0 THEN 0 ELSE 2 END, seq \
                  LIMIT ?2 OFFSET ?3)"
            } else {
                "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = ?1 \
                 ORDER BY seq LIMIT ?2 OFFSET ?3"
            };
            let mut statement = connection.prepare_cached(sql)?;
            let mut page = result_records(
                &mut statement,
                params![run_id.as_str(), limit, offset],
                &run_id,
            )?;
            crate::sort_page(&mut page, failures_first);
            Ok((u64::try_from(total).unwrap_or(0), page))
        })
        .await
    }

    async fn results_for_keys(
        &self,
        run_id: &RunId,
        keys: &[String],
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let run_id = run_id.clone();
        let keys = keys.to_vec();
        self.with(move |connection| {
            let mut found = Vec::new();
            // A bounded number of parameters per statement.
            for chunk in keys.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut statement = connection.prepare(&format!(
                    "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = ? AND key IN ({marks})"
                ))?;
                let parameters = std::iter::once(run_id.as_str()).chain(chunk.iter().map(String::as_str));
                found.extend(result_records(
                    &mut statement,
                    rusqlite::params_from_iter(parameters),
                    &run_id,
                )?);
            }
            found.sort_by_key(|r| r.seq);
            Ok(found)
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
            result_records(&mut statement, [run_id.as_str()], &run_id)
        })
        .await
    }

    async fn first_event_since(
        &self,
        subject: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let subject = subject.to_owned();
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT MIN(seq) FROM events WHERE subject = ?1 AND at_ms >= ?2")?;
            Ok(statement.query_row(params![subject, since_ms], |row| {
                row.get::<_, Option<i64>>(0)
            })?)
        })
        .await
    }

    async fn events_raw(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let subject = subject.to_owned();
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, subject, kind, payload, at_ms FROM events WHERE subject = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement.query_map(
                params![subject, after, if limit == 0 { 1000 } else { limit }],
                |row| {
                    Ok(RawEvent {
                        seq: row.get(0)?,
                        subject: row.get(1)?,
                        kind: row.get(2)?,
                        payload: row.get(3)?,
                        at_ms: row.get(4)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn register_version(&self, new: NewModelVersion) -> Result<ModelVersion, StoreError> {
        check_names(&new.model, Some(&new.version))?;
        for (kind, _) in &new.lineage {
            check_lineage_kind(*kind)?;
        }
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists: Option<i64> = transaction
                .query_row(
                    "SELECT 1 FROM model_versions WHERE model = ?1 AND version = ?2",
                    params![new.model, new.version],
                    |row| row.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::VersionExists {
                    model: new.model,
                    version: new.version,
                });
            }
            transaction.execute(
                &format!("INSERT INTO model_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)"),
                params![
                    new.model,
                    new.version,
                    serde_json::to_string(&new.artifacts).unwrap_or_else(|_| "[]".to_owned()),
                    new.config.to_string(),
                    serde_json::to_string(&new.tags).unwrap_or_else(|_| "{}".to_owned()),
                    new.commit,
                    new.registered_by,
                    now_ms()
                ],
            )?;
            for (kind, run_id) in &new.lineage {
                insert_link(&transaction, &new.model, &new.version, *kind, run_id)?;
            }
            let version = one_version(&transaction, &new.model, &new.version)?;
            transaction.commit()?;
            Ok(version)
        })
        .await
    }

    async fn model_versions(&self, model: Option<&str>) -> Result<Vec<ModelVersion>, StoreError> {
        let model = model.map(str::to_owned);
        self.with(move |connection| read_versions(connection, model.as_deref(), None))
            .await
    }

    async fn model_version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let (model, version) = (model.to_owned(), version.to_owned());
        self.with(move |connection| {
            Ok(read_versions(connection, Some(&model), Some(&version))?.pop())
        })
        .await
    }

    async fn resolve_alias(&self, model: &str, alias: &str) -> Result<Option<String>, StoreError> {
        let (model, alias) = (model.to_owned(), alias.to_owned());
        self.with(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT version FROM model_aliases WHERE model = ?1 AND alias = ?2",
                    params![model, alias],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn move_alias(&self, change: AliasChange) -> Result<AliasMove, StoreError> {
        check_names(&change.model, change.version.as_deref())?;
        check_alias(&change.alias)?;
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(version) = &change.version {
                one_version(&transaction, &change.model, version)?;
            }
            let from: Option<String> = transaction
                .query_row(
                    "SELECT version FROM model_aliases WHERE model = ?1 AND alias = ?2",
                    params![change.model, change.alias],
                    |row| row.get(0),
                )
                .optional()?;
            match &change.version {
                Some(version) => transaction.execute(
                    "INSERT INTO model_aliases (model, alias, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version",
                    params![change.model, change.alias, version],
                )?,
                None => transaction.execute(
                    "DELETE FROM model_aliases WHERE model = ?1 AND alias = ?2",
                    params![change.model, change.alias],
                )?,
            };
            let at_ms = now_ms();
            transaction.execute(
                "INSERT INTO alias_history (model, alias, from_version, to_version, actor, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![change.model, change.alias, from, change.version, change.actor, change.reason, at_ms],
            )?;
            let seq = transaction.last_insert_rowid();
            transaction.commit()?;
            Ok(AliasMove {
                seq,
                model: change.model,
                alias: change.alias,
                from,
                to: change.version,
                actor: change.actor,
                reason: change.reason,
                at_ms,
            })
        })
        .await
    }

    async fn alias_history(
        &self,
        model: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasMove>, StoreError> {
        let (model, alias) = (model.to_owned(), alias.map(str::to_owned));
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, model, alias, from_version, to_version, actor, reason, at_ms FROM alias_history
                 WHERE model = ?1 AND (?2 IS NULL OR alias = ?2) ORDER BY seq",
            )?;
            let moves = statement
                .query_map(params![model, alias], alias_move)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(moves)
        })
        .await
    }

    async fn update_version(
        &self,
        model: &str,
        version: &str,
        update: VersionUpdate,
    ) -> Result<ModelVersion, StoreError> {
        let (model, version) = (model.to_owned(), version.to_owned());
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = one_version(&transaction, &model, &version)?;
            let tags = updated_tags(
                &serde_json::to_string(&current.tags).unwrap_or_else(|_| "{}".to_owned()),
                &update,
            )?;
            transaction.execute(
                "UPDATE model_versions SET tags = ?3,
                    deprecated = COALESCE(?4, deprecated),
                    deprecated_at_ms = CASE WHEN ?4 IS NULL THEN deprecated_at_ms ELSE ?5 END
                 WHERE model = ?1 AND version = ?2",
                params![model, version, tags, update.deprecate, now_ms()],
            )?;
            let updated = one_version(&transaction, &model, &version)?;
            transaction.commit()?;
            Ok(updated)
        })
        .await
    }

    async fn delete_version(&self, model: &str, version: &str) -> Result<(), StoreError> {
        let (model, version) = (model.to_owned(), version.to_owned());
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = one_version(&transaction, &model, &version)?;
            if !current.aliases.is_empty() {
                return Err(StoreError::VersionAliased {
                    model,
                    version,
                    aliases: current.aliases,
                });
            }
            transaction.execute(
                "DELETE FROM model_lineage WHERE model = ?1 AND version = ?2",
                params![model, version],
            )?;
            transaction.execute(
                "DELETE FROM model_versions WHERE model = ?1 AND version = ?2",
                params![model, version],
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn link_run(
        &self,
        model: &str,
        version: &str,
        kind: RunKind,
        run_id: &str,
    ) -> Result<(), StoreError> {
        check_lineage_kind(kind)?;
        let (model, version, run_id) = (model.to_owned(), version.to_owned(), run_id.to_owned());
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            one_version(&transaction, &model, &version)?;
            insert_link(&transaction, &model, &version, kind, &run_id)?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn lineage(&self, model: &str, version: &str) -> Result<Vec<LineageLink>, StoreError> {
        let (model, version) = (model.to_owned(), version.to_owned());
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT kind, run_id, at_ms FROM model_lineage WHERE model = ?1 AND version = ?2
                 ORDER BY at_ms, kind, run_id",
            )?;
            let rows = statement
                .query_map(params![model, version], |row| {
                    Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(kind, run_id, at_ms): (String, String, i64)| {
                    Ok(LineageLink {
                        kind: stored_kind(&kind, || format!("model_lineage.kind of `{run_id}`"))?,
                        run_id,
                        at_ms,
                    })
                })
                .collect()
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let taken = transaction.execute(LEASE_UPSERT_SQLITE, params![name, holder, now, now + ttl_ms])?;
            let outcome = if taken > 0 {
                LeaseOutcome::Acquired {
                    expires_at_ms: now + ttl_ms,
                }
            } else {
                LeaseOutcome::Held(transaction.query_row(
                    "SELECT name, holder, acquired_at_ms, expires_at_ms FROM leases WHERE name = ?1",
                    [&name],
                    lease_from_row,
                )?)
            };
            transaction.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with(move |connection| {
            connection.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let name = name.to_owned();
        self.with(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT name, holder, acquired_at_ms, expires_at_ms FROM leases WHERE name = ?1",
                    [&name],
                    lease_from_row,
                )
                .optional()?)
        })
        .await
    }
}

/// Takes a lease that is free, lapsed or already the holder's (a renewal keeps when it was
/// first taken); changes nothing when another holder's is live.
const LEASE_UPSERT_SQLITE: &str = "INSERT INTO leases (name, holder, acquired_at_ms, expires_at_ms)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (name) DO UPDATE SET
         acquired_at_ms = CASE WHEN leases.holder = excluded.holder
                               THEN leases.acquired_at_ms ELSE excluded.acquired_at_ms END,
         holder = excluded.holder,
         expires_at_ms = excluded.expires_at_ms
     WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= excluded.acquired_at_ms";

fn lease_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        name: row.get(0)?,
        holder: row.get(1)?,
        acquired_at_ms: row.get(2)?,
        expires_at_ms: row.get(3)?,
    })
}

/// The `run_results` rows (`seq, key, pass, score, error, data`) a statement selects, as
/// records.
fn result_records(
    statement: &mut rusqlite::Statement<'_>,
    parameters: impl rusqlite::Params,
    run_id: &RunId,
) -> Result<Vec<ResultRecord>, StoreError> {
    let rows = statement.query_map(parameters, |row| {
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
}
