//! The PostgreSQL backend, for several replicas sharing one store: the same tables and the
//! same numbered migrations as SQLite (in PostgreSQL's types), applied under an advisory lock
//! so that replicas starting together migrate once. Writes run in transactions; the ones that
//! read before they write lock the rows (or, for the registry, take an advisory lock) so that
//! two gateways and a controller writing at once never interleave half-way.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, GenericClient, NoTls, Row};
use tracing::{info, warn};

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
use crate::{Backend, StoreError, now_ms, parse_json, redact_url};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x0005_11CE_0001;
/// The advisory lock held by registry writes (they read, check, then write).
const REGISTRY_LOCK: i64 = 0x0005_11CE_0002;

/// A query error with the server's message and detail.
fn pg(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => StoreError::Postgres(match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        }),
        None => StoreError::Postgres(error.to_string()),
    }
}

/// The PostgreSQL backend: one connection per process, re-opened when it drops.
#[derive(Debug)]
pub struct PostgresBackend {
    config: Config,
    location: String,
    client: Mutex<Option<Client>>,
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let mut config: Config = url.parse().map_err(|error| StoreError::Connect {
            location: location.clone(),
            reason: format!("not a valid PostgreSQL URL ({error})"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sluice");
        }
        let backend = Self {
            config,
            location,
            client: Mutex::new(None),
        };
        let mut guard = backend.client().await?;
        let client = guard.as_mut().ok_or_else(|| backend.lost())?;
        migrate(client, &backend.location).await?;
        drop(guard);
        Ok(backend)
    }

    fn lost(&self) -> StoreError {
        StoreError::Connect {
            location: self.location.clone(),
            reason: "the connection was lost".to_owned(),
        }
    }

    /// The connection, opened (again) when there is none or it was closed.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) =
                self.config
                    .connect(NoTls)
                    .await
                    .map_err(|error| StoreError::Connect {
                        location: self.location.clone(),
                        reason: match error.as_db_error() {
                            Some(db) => db.message().to_owned(),
                            None => error.to_string(),
                        },
                    })?;
            let location = self.location.clone();
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    warn!(store = %location, %error, "The store connection ended.");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }
}

async fn migrate(client: &mut Client, location: &str) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)")
        .await
        .or_else(|error| {
            // Two replicas creating the table at once: one of them gets a unique violation
            // on the catalog, and the table exists.
            if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(pg(error))
            }
        })?;
    loop {
        let transaction = client.transaction().await.map_err(pg)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let current: i32 = match transaction
            .query_opt("SELECT version FROM sluice_schema", &[])
            .await
            .map_err(pg)?
        {
            Some(row) => row.get(0),
            None => {
                transaction
                    .execute("INSERT INTO sluice_schema (version) VALUES (0)", &[])
                    .await
                    .map_err(pg)?;
                0
            }
        };
        let current = current.max(0) as u32;
        if current > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: location.into(),
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        if current == SCHEMA_VERSION {
            transaction.commit().await.map_err(pg)?;
            return Ok(());
        }
        let version = current + 1;
        let failed = |error: tokio_postgres::Error| StoreError::Migration {
            version,
            reason: pg(error).to_string(),
        };
        transaction
            .batch_execute(&migration(current as usize, Dialect::Postgres).unwrap_or_default())
            .await
            .map_err(failed)?;
        transaction
            .execute(
                "UPDATE sluice_schema SET version = $1",
                &[&(version as i32)],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(pg)?;
        info!(store = %location, version, "Store migrated.");
    }
}

const RUN_COLUMNS: &str = "id, kind, name, status, config, summary, started_at_ms, finished_at_ms";

fn run_from_row(row: &Row) -> Result<Run, StoreError> {
    let id: String = row.get(0);
    let status: String = row.get(3);
    let status = RunStatus::parse(&status).ok_or_else(|| StoreError::CorruptJson {
        what: format!("runs.status of `{id}`"),
        reason: format!("unknown status {status:?}"),
    })?;
    Ok(Run {
        config: parse_json(row.get(4), || format!("runs.config of `{id}`"))?,
        summary: parse_json(row.get(5), || format!("runs.summary of `{id}`"))?,
        kind: stored_kind(row.get(1), || format!("runs.kind of `{id}`"))?,
        name: row.get(2),
        status,
        started_at_ms: row.get(6),
        finished_at_ms: row.get(7),
        id: RunId(id),
    })
}

/// The status of a run, locked for the rest of the transaction.
async fn locked_status(
    client: &impl GenericClient,
    id: &RunId,
    lock: &str,
) -> Result<(), StoreError> {
    let status: Option<String> = client
        .query_opt(
            &format!("SELECT status FROM runs WHERE id = $1 {lock}"),
            &[&id.as_str()],
        )
        .await
        .map_err(pg)?
        .map(|row| row.get(0));
    match status.as_deref() {
        None => Err(StoreError::UnknownRun(id.0.clone())),
        Some("running") => Ok(()),
        Some(_) => Err(StoreError::RunFinished(id.0.clone())),
    }
}

/// Versions matching `model` and `version` (all when `None`), with their aliases.
async fn read_versions(
    client: &impl GenericClient,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<ModelVersion>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM model_versions
                 WHERE ($1::TEXT IS NULL OR model = $1) AND ($2::TEXT IS NULL OR version = $2)
                 ORDER BY model, registered_at_ms, version"
            ),
            &[&model, &version],
        )
        .await
        .map_err(pg)?;
    let aliases = client
        .query(
            "SELECT model, alias, version FROM model_aliases WHERE ($1::TEXT IS NULL OR model = $1)",
            &[&model],
        )
        .await
        .map_err(pg)?;
    let mut aliases = aliases_by_version(
        aliases
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect(),
    );
    rows.iter()
        .map(|row| {
            let row = VersionRow {
                model: row.get(0),
                version: row.get(1),
                artifacts: row.get(2),
                config: row.get(3),
                tags: row.get(4),
                commit: row.get(5),
                registered_by: row.get(6),
                registered_at_ms: row.get(7),
                deprecated: row.get(8),
                deprecated_at_ms: row.get(9),
            };
            let names = aliases
                .remove(&(row.model.clone(), row.version.clone()))
                .unwrap_or_default();
            row.into_version(names)
        })
        .collect()
}

async fn one_version(
    client: &impl GenericClient,
    model: &str,
    version: &str,
) -> Result<ModelVersion, StoreError> {
    read_versions(client, Some(model), Some(version))
        .await?
        .pop()
        .ok_or_else(|| StoreError::UnknownVersion {
            model: model.to_owned(),
            version: version.to_owned(),
        })
}

async fn insert_link(
    client: &impl GenericClient,
    model: &str,
    version: &str,
    kind: RunKind,
    run_id: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO model_lineage (model, version, kind, run_id, at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&model, &version, &kind.as_str(), &run_id, &now_ms()],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

async fn registry_lock(client: &impl GenericClient) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])
        .await
        .map_err(pg)?;
    Ok(())
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn schema_version(&self) -> Result<u32, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let row = client
            .query_one("SELECT version FROM sluice_schema", &[])
            .await
            .map_err(pg)?;
        Ok(row.get::<_, i32>(0).max(0) as u32)
    }

    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let started = now_ms();
        let id = RunId::generate(run.kind, started);
        client
            .execute(
                "INSERT INTO runs (id, kind, name, status, config, started_at_ms) VALUES ($1, $2, $3, 'running', $4, $5)",
                &[&id.as_str(), &run.kind.as_str(), &run.name, &run.config.to_string(), &started],
            )
            .await
            .map_err(pg)?;
        Ok(id)
    }

    async fn finish_run(
        &self,
        id: &RunId,
        status: RunStatus,
        summary: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        locked_status(&transaction, id, "FOR UPDATE").await?;
        transaction
            .execute(
                "UPDATE runs SET status = $2, summary = $3, finished_at_ms = $4 WHERE id = $1",
                &[
                    &id.as_str(),
                    &status.as_str(),
                    &summary.to_string(),
                    &now_ms(),
                ],
            )
            .await
            .map_err(pg)?;
        transaction.commit().await.map_err(pg)
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        client
            .query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(pg)?
            .as_ref()
            .map(run_from_row)
            .transpose()
    }

    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<Run>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let limit = i64::from(if filter.limit == 0 { 100 } else { filter.limit });
        client
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs
                     WHERE ($1::TEXT IS NULL OR kind = $1) AND ($2::TEXT IS NULL OR status = $2)
                     ORDER BY started_at_ms DESC, id DESC LIMIT $3"
                ),
                &[
                    &filter.kind.map(RunKind::as_str),
                    &filter.status.map(RunStatus::as_str),
                    &limit,
                ],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn append_results(
        &self,
        run_id: &RunId,
        results: Vec<ResultRecord>,
    ) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        locked_status(&transaction, run_id, "FOR SHARE").await?;
        let insert = transaction
            .prepare(
                "INSERT INTO run_results (run_id, seq, key, pass, score, error, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await
            .map_err(pg)?;
        for result in &results {
            transaction
                .execute(
                    &insert,
                    &[
                        &run_id.as_str(),
                        &result.seq,
                        &result.key,
                        &result.pass,
                        &result.score,
                        &result.error,
                        &result.data.to_string(),
                    ],
                )
                .await
                .map_err(pg)?;
        }
        transaction.commit().await.map_err(pg)
    }

    async fn results(&self, run_id: &RunId) -> Result<Vec<ResultRecord>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        client
            .query(
                "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = $1 ORDER BY seq",
                &[&run_id.as_str()],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| result_record(row, run_id))
            .collect()
    }

    async fn results_page(
        &self,
        run_id: &RunId,
        offset: u32,
        limit: u32,
        failures_first: bool,
    ) -> Result<(u64, Vec<ResultRecord>), StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let total: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM run_results WHERE run_id = $1",
                &[&run_id.as_str()],
            )
            .await
            .map_err(pg)?
            .get(0);
        let sql = if failures_first {
            "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = $1 AND seq IN \
             (SELECT seq FROM run_results WHERE run_id = $1 \
              ORDER BY CASE WHEN error IS NOT NULL THEN 1 WHEN pass = FALSE THEN 0 ELSE 2 END, seq \
              LIMIT $2 OFFSET $3)"
        } else {
            "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = $1 \
             ORDER BY seq LIMIT $2 OFFSET $3"
        };
        let mut page = client
            .query(
                sql,
                &[&run_id.as_str(), &i64::from(limit), &i64::from(offset)],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| result_record(row, run_id))
            .collect::<Result<Vec<_>, StoreError>>()?;
        crate::sort_page(&mut page, failures_first);
        Ok((u64::try_from(total).unwrap_or(0), page))
    }

    async fn results_for_keys(
        &self,
        run_id: &RunId,
        keys: &[String],
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        client
            .query(
                "SELECT seq, key, pass, score, error, data FROM run_results WHERE run_id = $1 AND key = ANY($2) ORDER BY seq",
                &[&run_id.as_str(), &keys],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| result_record(row, run_id))
            .collect()
    }

    async fn verdicts(&self, run_id: &RunId) -> Result<Vec<(String, Option<bool>)>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        Ok(client
            .query(
                "SELECT key, pass FROM run_results WHERE run_id = $1 ORDER BY seq",
                &[&run_id.as_str()],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        let insert = transaction
            .prepare(
                "INSERT INTO events (subject, kind, payload, at_ms) VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .await
            .map_err(pg)?;
        let at = now_ms();
        let mut sequence_numbers = Vec::with_capacity(events.len());
        for event in &events {
            let row = transaction
                .query_one(
                    &insert,
                    &[&event.subject, &event.kind, &event.payload.to_string(), &at],
                )
                .await
                .map_err(pg)?;
            sequence_numbers.push(row.get(0));
        }
        transaction.commit().await.map_err(pg)?;
        Ok(sequence_numbers)
    }

    async fn first_event_since(
        &self,
        subject: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let row = client
            .query_one(
                "SELECT MIN(seq) FROM events WHERE subject = $1 AND at_ms >= $2",
                &[&subject, &since_ms],
            )
            .await
            .map_err(pg)?;
        Ok(row.get::<_, Option<i64>>(0))
    }

    async fn events_raw(
        &self,
        subject: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let limit = i64::from(if limit == 0 { 1000 } else { limit });
        Ok(client
            .query(
                "SELECT seq, subject, kind, payload, at_ms FROM events WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&subject, &after, &limit],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| RawEvent {
                seq: row.get(0),
                subject: row.get(1),
                kind: row.get(2),
                payload: row.get(3),
                at_ms: row.get(4),
            })
            .collect())
    }

    async fn register_version(&self, new: NewModelVersion) -> Result<ModelVersion, StoreError> {
        check_names(&new.model, Some(&new.version))?;
        for (kind, _) in &new.lineage {
            check_lineage_kind(*kind)?;
        }
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        registry_lock(&transaction).await?;
        if read_versions(&transaction, Some(&new.model), Some(&new.version))
            .await?
            .pop()
            .is_some()
        {
            return Err(StoreError::VersionExists {
                model: new.model,
                version: new.version,
            });
        }
        transaction
            .execute(
                &format!("INSERT INTO model_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)"),
                &[
                    &new.model,
                    &new.version,
                    &serde_json::to_string(&new.artifacts).unwrap_or_else(|_| "[]".to_owned()),
                    &new.config.to_string(),
                    &serde_json::to_string(&new.tags).unwrap_or_else(|_| "{}".to_owned()),
                    &new.commit,
                    &new.registered_by,
                    &now_ms(),
                ],
            )
            .await
            .map_err(pg)?;
        for (kind, run_id) in &new.lineage {
            insert_link(&transaction, &new.model, &new.version, *kind, run_id).await?;
        }
        let version = one_version(&transaction, &new.model, &new.version).await?;
        transaction.commit().await.map_err(pg)?;
        Ok(version)
    }

    async fn model_versions(&self, model: Option<&str>) -> Result<Vec<ModelVersion>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        read_versions(client, model, None).await
    }

    async fn model_version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        Ok(read_versions(client, Some(model), Some(version))
            .await?
            .pop())
    }

    async fn resolve_alias(&self, model: &str, alias: &str) -> Result<Option<String>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        Ok(client
            .query_opt(
                "SELECT version FROM model_aliases WHERE model = $1 AND alias = $2",
                &[&model, &alias],
            )
            .await
            .map_err(pg)?
            .map(|row| row.get(0)))
    }

    async fn move_alias(&self, change: AliasChange) -> Result<AliasMove, StoreError> {
        check_names(&change.model, change.version.as_deref())?;
        check_alias(&change.alias)?;
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        registry_lock(&transaction).await?;
        if let Some(version) = &change.version {
            one_version(&transaction, &change.model, version).await?;
        }
        let from: Option<String> = transaction
            .query_opt(
                "SELECT version FROM model_aliases WHERE model = $1 AND alias = $2",
                &[&change.model, &change.alias],
            )
            .await
            .map_err(pg)?
            .map(|row| row.get(0));
        match &change.version {
            Some(version) => {
                transaction
                    .execute(
                        "INSERT INTO model_aliases (model, alias, version) VALUES ($1, $2, $3)
                         ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version",
                        &[&change.model, &change.alias, version],
                    )
                    .await
            }
            None => {
                transaction
                    .execute(
                        "DELETE FROM model_aliases WHERE model = $1 AND alias = $2",
                        &[&change.model, &change.alias],
                    )
                    .await
            }
        }
        .map_err(pg)?;
        let at_ms = now_ms();
        let seq: i64 = transaction
            .query_one(
                "INSERT INTO alias_history (model, alias, from_version, to_version, actor, reason, at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
                &[&change.model, &change.alias, &from, &change.version, &change.actor, &change.reason, &at_ms],
            )
            .await
            .map_err(pg)?
            .get(0);
        transaction.commit().await.map_err(pg)?;
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
    }

    async fn alias_history(
        &self,
        model: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasMove>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        Ok(client
            .query(
                "SELECT seq, model, alias, from_version, to_version, actor, reason, at_ms FROM alias_history
                 WHERE model = $1 AND ($2::TEXT IS NULL OR alias = $2) ORDER BY seq",
                &[&model, &alias],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| AliasMove {
                seq: row.get(0),
                model: row.get(1),
                alias: row.get(2),
                from: row.get(3),
                to: row.get(4),
                actor: row.get(5),
                reason: row.get(6),
                at_ms: row.get(7),
            })
            .collect())
    }

    async fn update_version(
        &self,
        model: &str,
        version: &str,
        update: VersionUpdate,
    ) -> Result<ModelVersion, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        registry_lock(&transaction).await?;
        let current = one_version(&transaction, model, version).await?;
        let tags = updated_tags(
            &serde_json::to_string(&current.tags).unwrap_or_else(|_| "{}".to_owned()),
            &update,
        )?;
        transaction
            .execute(
                "UPDATE model_versions SET tags = $3,
                    deprecated = COALESCE($4, deprecated),
                    deprecated_at_ms = CASE WHEN $4::TEXT IS NULL THEN deprecated_at_ms ELSE $5 END
                 WHERE model = $1 AND version = $2",
                &[&model, &version, &tags, &update.deprecate, &now_ms()],
            )
            .await
            .map_err(pg)?;
        let updated = one_version(&transaction, model, version).await?;
        transaction.commit().await.map_err(pg)?;
        Ok(updated)
    }

    async fn delete_version(&self, model: &str, version: &str) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        registry_lock(&transaction).await?;
        let current = one_version(&transaction, model, version).await?;
        if !current.aliases.is_empty() {
            return Err(StoreError::VersionAliased {
                model: model.to_owned(),
                version: version.to_owned(),
                aliases: current.aliases,
            });
        }
        for table in ["model_lineage", "model_versions"] {
            transaction
                .execute(
                    &format!("DELETE FROM {table} WHERE model = $1 AND version = $2"),
                    &[&model, &version],
                )
                .await
                .map_err(pg)?;
        }
        transaction.commit().await.map_err(pg)
    }

    async fn link_run(
        &self,
        model: &str,
        version: &str,
        kind: RunKind,
        run_id: &str,
    ) -> Result<(), StoreError> {
        check_lineage_kind(kind)?;
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.lost())?;
        let transaction = client.transaction().await.map_err(pg)?;
        registry_lock(&transaction).await?;
        one_version(&transaction, model, version).await?;
        insert_link(&transaction, model, version, kind, run_id).await?;
        transaction.commit().await.map_err(pg)
    }

    async fn lineage(&self, model: &str, version: &str) -> Result<Vec<LineageLink>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        client
            .query(
                "SELECT kind, run_id, at_ms FROM model_lineage WHERE model = $1 AND version = $2
                 ORDER BY at_ms, kind, run_id",
                &[&model, &version],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| {
                let run_id: String = row.get(1);
                Ok(LineageLink {
                    kind: stored_kind(row.get(0), || format!("model_lineage.kind of `{run_id}`"))?,
                    run_id,
                    at_ms: row.get(2),
                })
            })
            .collect()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        let now = now_ms();
        let expires = now + ttl_ms;
        // One statement: of two processes asking at once, the row lock lets one through.
        let taken = client
            .execute(
                "INSERT INTO leases (name, holder, acquired_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET
                     acquired_at_ms = CASE WHEN leases.holder = excluded.holder
                                           THEN leases.acquired_at_ms ELSE excluded.acquired_at_ms END,
                     holder = excluded.holder,
                     expires_at_ms = excluded.expires_at_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= excluded.acquired_at_ms",
                &[&name, &holder, &now, &expires],
            )
            .await
            .map_err(pg)?;
        if taken > 0 {
            return Ok(LeaseOutcome::Acquired {
                expires_at_ms: expires,
            });
        }
        let row = client
            .query_one(
                "SELECT name, holder, acquired_at_ms, expires_at_ms FROM leases WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(LeaseOutcome::Held(lease_from_row(&row)))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.lost())?;
        Ok(client
            .query_opt(
                "SELECT name, holder, acquired_at_ms, expires_at_ms FROM leases WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?
            .as_ref()
            .map(lease_from_row))
    }
}

fn lease_from_row(row: &Row) -> Lease {
    Lease {
        name: row.get(0),
        holder: row.get(1),
        acquired_at_ms: row.get(2),
        expires_at_ms: row.get(3),
    }
}

/// A `run_results` row (`seq, key, pass, score, error, data`) as a record.
fn result_record(row: &tokio_postgres::Row, run_id: &RunId) -> Result<ResultRecord, StoreError> {
    let seq: i64 = row.get(0);
    Ok(ResultRecord {
        data: parse_json(row.get(5), || {
            format!("run_results.data #{seq} of `{run_id}`")
        })?,
        seq,
        key: row.get(1),
        pass: row.get(2),
        score: row.get(3),
        error: row.get(4),
    })
}
