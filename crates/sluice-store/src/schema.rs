//! The schema, written once for both backends: the numbered migrations, with `{serial}`,
//! `{bigint}`, `{boolean}` and `{double}` standing for each dialect's column types. The
//! schema version is the number of migrations applied. Never edit a released migration: add a
//! new one.

/// A SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    #[cfg_attr(
        not(feature = "postgres"),
        allow(
            dead_code,
            reason = "the migrations stay checked in builds without the backend"
        )
    )]
    Postgres,
}

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: runs and the append-only event log.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'errored')),
        config TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT 'null',
        started_at_ms {bigint} NOT NULL,
        finished_at_ms {bigint}
    );
    CREATE INDEX runs_by_kind ON runs (kind, started_at_ms DESC);
    CREATE TABLE events (
        seq {serial},
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        at_ms {bigint} NOT NULL
    );
    CREATE INDEX events_by_subject ON events (subject, seq);",
    // 2: per-run results (one row per eval test × prompt × provider × repeat, bench request …).
    "CREATE TABLE run_results (
        run_id TEXT NOT NULL REFERENCES runs (id),
        seq {bigint} NOT NULL,
        key TEXT NOT NULL,
        pass {boolean},
        score {double},
        error TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX run_results_by_key ON run_results (run_id, key);",
    // 3: the model registry: versions, aliases, the aliases' append-only history, lineage.
    "CREATE TABLE model_versions (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        artifacts TEXT NOT NULL,
        config TEXT NOT NULL,
        tags TEXT NOT NULL,
        git_commit TEXT,
        registered_by TEXT NOT NULL,
        registered_at_ms {bigint} NOT NULL,
        deprecated TEXT,
        deprecated_at_ms {bigint},
        PRIMARY KEY (model, version)
    );
    CREATE TABLE model_aliases (
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (model, alias),
        FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
    );
    CREATE TABLE alias_history (
        seq {serial},
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT,
        actor TEXT NOT NULL,
        reason TEXT,
        at_ms {bigint} NOT NULL
    );
    CREATE INDEX alias_history_by_model ON alias_history (model, alias, seq);
    CREATE TABLE model_lineage (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        run_id TEXT NOT NULL,
        at_ms {bigint} NOT NULL,
        PRIMARY KEY (model, version, kind, run_id),
        FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
    );",
    // 4: events found by time (the request log's last minutes without reading it all).
    "CREATE INDEX events_by_time ON events (subject, at_ms, seq);",
    // 5: leases: who holds a rollout's controller or a running command, until when.
    "CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at_ms {bigint} NOT NULL,
        expires_at_ms {bigint} NOT NULL
    );",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `index` (0-based) in `dialect`.
pub(crate) fn migration(index: usize, dialect: Dialect) -> Option<String> {
    let (serial, bigint, boolean, double) = match dialect {
        Dialect::Sqlite => (
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "INTEGER",
            "INTEGER",
            "REAL",
        ),
        Dialect::Postgres => (
            "BIGSERIAL PRIMARY KEY",
            "BIGINT",
            "BOOLEAN",
            "DOUBLE PRECISION",
        ),
    };
    MIGRATIONS.get(index).map(|sql| {
        sql.replace("{serial}", serial)
            .replace("{bigint}", bigint)
            .replace("{boolean}", boolean)
            .replace("{double}", double)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_replaced_in_both_dialects() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for index in 0..MIGRATIONS.len() {
                let sql = migration(index, dialect).unwrap_or_default();
                assert!(!sql.contains('{'), "{dialect:?} #{index}: {sql}");
            }
        }
        assert!(migration(MIGRATIONS.len(), Dialect::Sqlite).is_none());
    }
}
