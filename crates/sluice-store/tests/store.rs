//! The store's test suite, run against both backends on real databases: a SQLite file in a
//! temporary directory, and a fresh database on the PostgreSQL server named by
//! `SLUICE_TEST_POSTGRES` (a URL to any database the user may create databases from; `.ci/run`
//! starts one). Without it the PostgreSQL half says so and passes, unless
//! `SLUICE_REQUIRE_POSTGRES=1` makes that a failure (as in CI).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sluice_store::{
    AliasChange, Artifact, NewEvent, NewModelVersion, NewRun, RunFilter, RunKind, RunStatus, Store,
    StoreError, StoreLocation, VersionUpdate,
};

/// A store location that tests may open as often as they like.
struct Fixture {
    _dir: Option<tempfile::TempDir>,
    location: StoreLocation,
}

impl Fixture {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::Sqlite(dir.path().join("sluice.db"));
        Self {
            _dir: Some(dir),
            location,
        }
    }

    /// A fresh database on the test server, or `None` when no server is configured.
    #[cfg(feature = "postgres")]
    async fn postgres() -> Option<Self> {
        let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES") else {
            assert!(
                std::env::var("SLUICE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "SLUICE_REQUIRE_POSTGRES=1 but SLUICE_TEST_POSTGRES is not set"
            );
            eprintln!("SLUICE_TEST_POSTGRES is not set: the PostgreSQL backend is not tested here");
            return None;
        };
        let name = format!("sluice_test_{:08x}", fastrand::u32(..));
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to SLUICE_TEST_POSTGRES");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin.as_str(), String::new()),
        };
        let (server, _) = base.rsplit_once('/').expect("a URL with a database name");
        Some(Self {
            _dir: None,
            location: StoreLocation::Postgres(format!("{server}/{name}{query}")),
        })
    }

    async fn open(&self) -> Store {
        Store::open(&self.location).await.unwrap()
    }

    /// Runs SQL on the database behind the backend's back.
    async fn execute(&self, sql: &str) {
        match &self.location {
            StoreLocation::Sqlite(path) => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            #[cfg(feature = "postgres")]
            StoreLocation::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client.batch_execute(sql).await.unwrap();
            }
        }
    }

    /// Sets the stored schema version, as an older or newer build would have left it.
    async fn set_schema_version(&self, version: u32) {
        match &self.location {
            StoreLocation::Sqlite(_) => {
                self.execute(&format!("PRAGMA user_version = {version}"))
                    .await
            }
            _ => {
                self.execute(&format!("UPDATE sluice_schema SET version = {version}"))
                    .await
            }
        }
    }
}

/// Declares each named test once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite()).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(fixture) = super::Fixture::postgres().await {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_new_store_is_migrated_to_the_current_schema,
    runs_and_events_survive_reopening,
    listing_filters_by_kind_and_status_newest_first,
    concurrent_writers_on_separate_connections_lose_nothing,
    a_store_from_a_newer_build_is_refused_and_left_untouched,
    results_append_to_running_runs_only_and_read_back_in_order,
    an_older_store_is_migrated_forward_keeping_its_runs,
    registry_versions_round_trip_with_artifacts_tags_and_aliases,
    alias_moves_are_an_append_only_history,
    a_version_under_an_alias_cannot_be_deleted,
    lineage_links_runs_to_a_version,
    bad_registry_input_is_refused_and_writes_nothing,
    concurrent_alias_moves_keep_a_consistent_history,
    a_lease_has_one_holder_until_it_lapses,
    of_many_asking_at_once_one_gets_the_lease,
    a_run_reads_as_interrupted_only_when_its_process_is_gone,
    a_page_of_results_is_read_in_order_or_failures_first,
);

async fn a_run_reads_as_interrupted_only_when_its_process_is_gone(fixture: Fixture) {
    let store = fixture.open().await;
    let id = store
        .create_run(NewRun {
            kind: RunKind::Eval,
            name: "suite".into(),
            config: serde_json::json!({}),
        })
        .await
        .unwrap();
    let run = |store: &Store| {
        let (store, id) = (store.clone(), id.clone());
        async move { store.get_run(&id).await.unwrap().unwrap() }
    };
    // Just created, its process has not taken the lease yet: not interrupted.
    assert!(!store.interrupted(&run(&store).await).await.unwrap());
    // Held by this live process: not interrupted.
    let hold = store.hold_run(id.as_str()).await.unwrap();
    assert!(!store.interrupted(&run(&store).await).await.unwrap());
    drop(hold);
    // Older than the grace and never held: interrupted.
    store
        .unclaim(&format!("run:{}", id.as_str()))
        .await
        .unwrap();
    fixture
        .execute(&format!(
            "UPDATE runs SET started_at_ms = started_at_ms - {} WHERE id = '{}'",
            sluice_store::RUN_LEASE_GRACE_MS + 1000,
            id.as_str()
        ))
        .await;
    assert!(store.interrupted(&run(&store).await).await.unwrap());
}

async fn a_lease_has_one_holder_until_it_lapses(fixture: Fixture) {
    use sluice_store::LeaseOutcome;
    let store = fixture.open().await;
    let acquired = |o: &LeaseOutcome| matches!(o, LeaseOutcome::Acquired { .. });
    assert!(acquired(
        &store
            .acquire_lease("rollout:r", "host-a pid 1", 60_000)
            .await
            .unwrap()
    ));
    match store
        .acquire_lease("rollout:r", "host-b pid 2", 60_000)
        .await
        .unwrap()
    {
        LeaseOutcome::Held(lease) => assert_eq!(lease.holder, "host-a pid 1"),
        other => panic!("{other:?}"),
    }
    // The holder renews; someone else's release changes nothing.
    let first = store.lease("rollout:r").await.unwrap().unwrap();
    assert!(acquired(
        &store
            .acquire_lease("rollout:r", "host-a pid 1", 60_000)
            .await
            .unwrap()
    ));
    store
        .release_lease("rollout:r", "host-b pid 2")
        .await
        .unwrap();
    let renewed = store.lease("rollout:r").await.unwrap().unwrap();
    assert_eq!(renewed.acquired_at_ms, first.acquired_at_ms);
    assert!(renewed.expires_at_ms >= first.expires_at_ms);
    // A lapsed lease is taken over.
    assert!(acquired(
        &store
            .acquire_lease("run:x", "host-a pid 1", 1)
            .await
            .unwrap()
    ));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(acquired(
        &store
            .acquire_lease("run:x", "host-b pid 2", 60_000)
            .await
            .unwrap()
    ));
    assert_eq!(
        store.lease("run:x").await.unwrap().unwrap().holder,
        "host-b pid 2"
    );
    // Released by its holder, it is gone.
    store.release_lease("run:x", "host-b pid 2").await.unwrap();
    assert!(store.lease("run:x").await.unwrap().is_none());
}

async fn of_many_asking_at_once_one_gets_the_lease(fixture: Fixture) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = fixture.open().await;
        tasks.push(tokio::spawn(async move {
            store
                .acquire_lease("rollout:contended", &format!("host pid {i}"), 60_000)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(matches!(
            task.await.unwrap(),
            sluice_store::LeaseOutcome::Acquired { .. }
        ));
    }
    assert_eq!(winners, 1);
}

fn new_run(kind: RunKind, name: &str) -> NewRun {
    NewRun {
        kind,
        name: name.into(),
        config: json!({"suite": name}),
    }
}

fn new_version(model: &str, version: &str) -> NewModelVersion {
    NewModelVersion {
        model: model.into(),
        version: version.into(),
        artifacts: vec![
            Artifact {
                uri: "file:///models/weights.safetensors".into(),
                sha256: Some("ab".repeat(32)),
                size: Some(1234),
            },
            Artifact {
                uri: "hf://meta-llama/Llama-3.1-8B@main/config.json".into(),
                sha256: None,
                size: None,
            },
        ],
        config: json!({"name": model, "resources": {"gpu_count": 1}}),
        tags: BTreeMap::from([("team".to_owned(), "search".to_owned())]),
        commit: Some("0123abcd".into()),
        registered_by: "ci".into(),
        lineage: Vec::new(),
    }
}

fn point(model: &str, alias: &str, version: Option<&str>, reason: &str) -> AliasChange {
    AliasChange {
        model: model.into(),
        alias: alias.into(),
        version: version.map(str::to_owned),
        actor: "alice".into(),
        reason: Some(reason.into()),
    }
}

async fn a_new_store_is_migrated_to_the_current_schema(fixture: Fixture) {
    let store = fixture.open().await;
    assert_eq!(
        store.schema_version().await.unwrap(),
        sluice_store::SCHEMA_VERSION
    );
    // Opening again applies nothing and keeps the version.
    drop(store);
    assert_eq!(
        fixture.open().await.schema_version().await.unwrap(),
        sluice_store::SCHEMA_VERSION
    );
}

async fn runs_and_events_survive_reopening(fixture: Fixture) {
    let (id, seqs) = {
        let store = fixture.open().await;
        let id = store
            .create_run(new_run(RunKind::Eval, "smoke"))
            .await
            .unwrap();
        store
            .finish_run(&id, RunStatus::Passed, json!({"pass_rate": 1.0}))
            .await
            .unwrap();
        let seqs = store
            .append_events(vec![
                NewEvent {
                    subject: "rollout:a".into(),
                    kind: "started".into(),
                    payload: json!({"weight": 10}),
                },
                NewEvent {
                    subject: "rollout:a".into(),
                    kind: "weight_changed".into(),
                    payload: json!({"weight": 25}),
                },
            ])
            .await
            .unwrap();
        (id, seqs)
    };
    let store = fixture.open().await;
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Passed);
    assert_eq!(run.summary, json!({"pass_rate": 1.0}));
    assert!(run.finished_at_ms.unwrap() >= run.started_at_ms);
    let events = store.events("rollout:a", 0, 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(events[1].payload, json!({"weight": 25}));
    assert_eq!(
        store.events("rollout:a", seqs[0], 0).await.unwrap().len(),
        1
    );
    let at = events[0].at_ms;
    assert_eq!(
        store.first_event_since("rollout:a", at).await.unwrap(),
        Some(seqs[0])
    );
    assert_eq!(
        store
            .first_event_since("rollout:a", at + 3_600_000)
            .await
            .unwrap(),
        None,
        "nothing in the future"
    );
    assert_eq!(store.first_event_since("nobody", 0).await.unwrap(), None);
    assert!(matches!(
        store.finish_run(&id, RunStatus::Failed, json!(null)).await,
        Err(StoreError::RunFinished(_))
    ));
    assert!(matches!(
        store
            .finish_run(
                &sluice_store::RunId("nope".into()),
                RunStatus::Failed,
                json!(null)
            )
            .await,
        Err(StoreError::UnknownRun(_))
    ));
}

async fn listing_filters_by_kind_and_status_newest_first(fixture: Fixture) {
    let store = fixture.open().await;
    let first = store.create_run(new_run(RunKind::Eval, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let second = store.create_run(new_run(RunKind::Eval, "b")).await.unwrap();
    store
        .create_run(new_run(RunKind::Bench, "c"))
        .await
        .unwrap();
    store
        .finish_run(&first, RunStatus::Failed, json!({}))
        .await
        .unwrap();
    let evals = store
        .list_runs(RunFilter {
            kind: Some(RunKind::Eval),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        evals.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![second, first.clone()]
    );
    let failed = store
        .list_runs(RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, first);
    let limited = store
        .list_runs(RunFilter {
            limit: 2,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}

async fn concurrent_writers_on_separate_connections_lose_nothing(fixture: Fixture) {
    let a = fixture.open().await;
    let b = fixture.open().await;
    let write = |store: Store, subject: &'static str| {
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .append_events(vec![NewEvent {
                        subject: subject.into(),
                        kind: "tick".into(),
                        payload: json!(i),
                    }])
                    .await
                    .unwrap();
            }
        })
    };
    let (ta, tb) = (write(a.clone(), "a"), write(b.clone(), "b"));
    ta.await.unwrap();
    tb.await.unwrap();
    let events = a.events("a", 0, 1000).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        (0..200).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert_eq!(b.events("b", 0, 1000).await.unwrap().len(), 200);
}

async fn a_store_from_a_newer_build_is_refused_and_left_untouched(fixture: Fixture) {
    let id = {
        let store = fixture.open().await;
        store
            .create_run(new_run(RunKind::Eval, "kept"))
            .await
            .unwrap()
    };
    fixture.set_schema_version(99).await;
    let error = Store::open(&fixture.location).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                supported: sluice_store::SCHEMA_VERSION,
                ..
            }
        ),
        "{error}"
    );
    // Nothing was changed: with the version put back, the run is there.
    fixture
        .set_schema_version(sluice_store::SCHEMA_VERSION)
        .await;
    let store = fixture.open().await;
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().name, "kept");
}

async fn results_append_to_running_runs_only_and_read_back_in_order(fixture: Fixture) {
    let store = fixture.open().await;
    let id = store.create_run(new_run(RunKind::Eval, "r")).await.unwrap();
    let record = |seq: i64, pass: bool| sluice_store::ResultRecord {
        seq,
        key: format!("test-{seq}"),
        pass: Some(pass),
        score: Some(if pass { 1.0 } else { 0.25 }),
        error: (!pass).then(|| "wrong answer".to_owned()),
        data: json!({"output": "x"}),
    };
    store
        .append_results(&id, vec![record(0, true), record(1, false)])
        .await
        .unwrap();
    store
        .append_results(&id, vec![record(2, true)])
        .await
        .unwrap();
    // A duplicate sequence number is refused and the batch leaves nothing behind.
    assert!(
        store
            .append_results(&id, vec![record(3, true), record(2, true)])
            .await
            .is_err()
    );
    let results = store.results(&id).await.unwrap();
    assert_eq!(
        results.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(results[1], record(1, false));
    let verdicts = store.verdicts(&id).await.unwrap();
    assert_eq!(verdicts.len(), 3);
    assert_eq!(verdicts[1], (results[1].key.clone(), Some(false)));
    store
        .finish_run(&id, RunStatus::Failed, json!({}))
        .await
        .unwrap();
    assert!(matches!(
        store.append_results(&id, vec![record(9, true)]).await,
        Err(StoreError::RunFinished(_))
    ));
}

async fn a_page_of_results_is_read_in_order_or_failures_first(fixture: Fixture) {
    let store = fixture.open().await;
    let id = store.create_run(new_run(RunKind::Eval, "r")).await.unwrap();
    // Every 4th fails, every 7th errors (an error wins over a failure).
    let records: Vec<sluice_store::ResultRecord> = (0..50)
        .map(|seq| sluice_store::ResultRecord {
            seq,
            key: format!("test-{seq}"),
            pass: if seq % 7 == 0 {
                None
            } else {
                Some(seq % 4 != 0)
            },
            score: None,
            error: (seq % 7 == 0).then(|| "timed out".to_owned()),
            data: json!({"output": seq}),
        })
        .collect();
    store.append_results(&id, records.clone()).await.unwrap();
    let seqs = |page: &[sluice_store::ResultRecord]| page.iter().map(|r| r.seq).collect::<Vec<_>>();
    let (total, page) = store.results_page(&id, 10, 5, false).await.unwrap();
    assert_eq!(total, 50);
    assert_eq!(seqs(&page), [10, 11, 12, 13, 14]);
    assert_eq!(page[2], records[12]);
    // Failed first, then errored, then the rest: the same order as sorting them all.
    let mut expected = records.clone();
    expected.sort_by_key(|r| {
        let rank = match (r.pass, &r.error) {
            (_, Some(_)) => 1,
            (Some(false), None) => 0,
            _ => 2,
        };
        (rank, r.seq)
    });
    let wanted: Vec<String> = ["test-3", "test-40", "test-none", "test-8"]
        .map(str::to_owned)
        .to_vec();
    let found = store.results_for_keys(&id, &wanted).await.unwrap();
    assert_eq!(seqs(&found), [3, 8, 40]);
    assert_eq!(found[2], records[40]);
    for (offset, limit) in [(0, 7), (7, 7), (10, 30), (45, 10), (60, 5)] {
        let (_, page) = store.results_page(&id, offset, limit, true).await.unwrap();
        let want: Vec<i64> = expected
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs(&page), want, "offset {offset}, limit {limit}");
    }
}

async fn an_older_store_is_migrated_forward_keeping_its_runs(fixture: Fixture) {
    let id = {
        let store = fixture.open().await;
        store
            .create_run(new_run(RunKind::Eval, "kept"))
            .await
            .unwrap()
    };
    // Turn the store back into a version-1 store: no results, no registry.
    fixture
        .execute(
            "DROP TABLE leases; DROP INDEX events_by_time; DROP TABLE model_lineage; DROP TABLE alias_history;
             DROP TABLE model_aliases; DROP TABLE model_versions; DROP TABLE run_results;",
        )
        .await;
    fixture.set_schema_version(1).await;
    let store = fixture.open().await;
    assert_eq!(
        store.schema_version().await.unwrap(),
        sluice_store::SCHEMA_VERSION
    );
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().name, "kept");
    store.append_results(&id, vec![]).await.unwrap();
    assert!(store.results(&id).await.unwrap().is_empty());
    assert!(store.model_versions(None).await.unwrap().is_empty());
}

async fn registry_versions_round_trip_with_artifacts_tags_and_aliases(fixture: Fixture) {
    {
        let store = fixture.open().await;
        let registered = store
            .register_version(new_version("llama-3-8b", "1.0.0"))
            .await
            .unwrap();
        assert_eq!(registered.artifacts, new_version("x", "y").artifacts);
        assert!(registered.aliases.is_empty());
        store
            .register_version(new_version("llama-3-8b", "1.1.0"))
            .await
            .unwrap();
        store
            .register_version(new_version("gpt-4o", "gpt-4o/2024-11-20/v3"))
            .await
            .unwrap();
        store
            .move_alias(point("llama-3-8b", "production", Some("1.0.0"), "first"))
            .await
            .unwrap();
        store
            .move_alias(point("llama-3-8b", "staging", Some("1.1.0"), "try"))
            .await
            .unwrap();
        store
            .update_version(
                "llama-3-8b",
                "1.0.0",
                VersionUpdate {
                    set_tags: BTreeMap::from([("stage".to_owned(), "prod".to_owned())]),
                    remove_tags: vec!["team".to_owned()],
                    deprecate: None,
                },
            )
            .await
            .unwrap();
        let deprecated = store
            .update_version(
                "llama-3-8b",
                "1.1.0",
                VersionUpdate {
                    deprecate: Some("tokenizer bug".into()),
                    ..VersionUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(deprecated.deprecated.unwrap().reason, "tokenizer bug");
    }
    let store = fixture.open().await;
    let all = store.model_versions(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|v| format!("{}/{}", v.model, v.version))
            .collect::<Vec<_>>(),
        [
            "gpt-4o/gpt-4o/2024-11-20/v3",
            "llama-3-8b/1.0.0",
            "llama-3-8b/1.1.0"
        ]
    );
    let first = store
        .model_version("llama-3-8b", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.aliases, ["production"]);
    assert_eq!(
        first.tags,
        BTreeMap::from([("stage".to_owned(), "prod".to_owned())])
    );
    assert_eq!(first.commit.as_deref(), Some("0123abcd"));
    assert_eq!(first.registered_by, "ci");
    assert_eq!(
        first.config,
        json!({"name": "llama-3-8b", "resources": {"gpu_count": 1}})
    );
    assert!(first.deprecated.is_none());
    assert_eq!(
        store
            .resolve_alias("llama-3-8b", "staging")
            .await
            .unwrap()
            .as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        store.resolve_alias("llama-3-8b", "canary").await.unwrap(),
        None
    );
    assert_eq!(store.model_versions(Some("gpt-4o")).await.unwrap().len(), 1);
    assert!(
        store
            .model_version("llama-3-8b", "9.9.9")
            .await
            .unwrap()
            .is_none()
    );
}

async fn alias_moves_are_an_append_only_history(fixture: Fixture) {
    let store = fixture.open().await;
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        store
            .register_version(new_version("m", version))
            .await
            .unwrap();
    }
    store
        .move_alias(point("m", "production", Some("1.0.0"), "launch"))
        .await
        .unwrap();
    store
        .move_alias(point("m", "production", Some("1.1.0"), "canary passed"))
        .await
        .unwrap();
    store
        .move_alias(point("m", "staging", Some("1.2.0"), "nightly"))
        .await
        .unwrap();
    let moved = store
        .move_alias(point("m", "production", Some("1.0.0"), "rollback: p99"))
        .await
        .unwrap();
    assert_eq!(moved.from.as_deref(), Some("1.1.0"));
    let removed = store
        .move_alias(point("m", "staging", None, "retired"))
        .await
        .unwrap();
    assert_eq!((removed.from.as_deref(), removed.to), (Some("1.2.0"), None));
    let history = store.alias_history("m", Some("production")).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|m| (m.from.as_deref(), m.to.as_deref(), m.reason.as_deref()))
            .collect::<Vec<_>>(),
        [
            (None, Some("1.0.0"), Some("launch")),
            (Some("1.0.0"), Some("1.1.0"), Some("canary passed")),
            (Some("1.1.0"), Some("1.0.0"), Some("rollback: p99")),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(history.iter().all(|m| m.actor == "alice" && m.at_ms > 0));
    assert_eq!(store.alias_history("m", None).await.unwrap().len(), 5);
    assert_eq!(store.resolve_alias("m", "staging").await.unwrap(), None);
    // Deleting a version keeps the history that mentions it.
    store.delete_version("m", "1.2.0").await.unwrap();
    assert_eq!(store.alias_history("m", None).await.unwrap().len(), 5);
}

async fn a_version_under_an_alias_cannot_be_deleted(fixture: Fixture) {
    let store = fixture.open().await;
    store
        .register_version(new_version("m", "1.0.0"))
        .await
        .unwrap();
    store
        .move_alias(point("m", "production", Some("1.0.0"), "launch"))
        .await
        .unwrap();
    store
        .move_alias(point("m", "canary", Some("1.0.0"), "also"))
        .await
        .unwrap();
    let error = store.delete_version("m", "1.0.0").await.unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionAliased { aliases, .. } if aliases == &["canary", "production"]),
        "{error}"
    );
    assert!(error.to_string().contains("canary, production"), "{error}");
    assert!(store.model_version("m", "1.0.0").await.unwrap().is_some());
    store
        .move_alias(point("m", "production", None, "retire"))
        .await
        .unwrap();
    store
        .move_alias(point("m", "canary", None, "retire"))
        .await
        .unwrap();
    store.delete_version("m", "1.0.0").await.unwrap();
    assert!(store.model_version("m", "1.0.0").await.unwrap().is_none());
    assert!(matches!(
        store.delete_version("m", "1.0.0").await,
        Err(StoreError::UnknownVersion { .. })
    ));
    // The version can be registered again once deleted.
    store
        .register_version(new_version("m", "1.0.0"))
        .await
        .unwrap();
}

async fn lineage_links_runs_to_a_version(fixture: Fixture) {
    let store = fixture.open().await;
    store
        .register_version(new_version("m", "2.0.0"))
        .await
        .unwrap();
    let eval = store
        .create_run(new_run(RunKind::Eval, "smoke"))
        .await
        .unwrap();
    let bench = store
        .create_run(new_run(RunKind::Bench, "load"))
        .await
        .unwrap();
    store
        .link_run("m", "2.0.0", RunKind::Eval, eval.as_str())
        .await
        .unwrap();
    store
        .link_run("m", "2.0.0", RunKind::Eval, eval.as_str())
        .await
        .unwrap();
    store
        .link_run("m", "2.0.0", RunKind::Bench, bench.as_str())
        .await
        .unwrap();
    let mut with_evidence = new_version("m", "2.1.0");
    with_evidence.lineage = vec![(RunKind::Eval, eval.0.clone())];
    store.register_version(with_evidence).await.unwrap();
    assert_eq!(store.lineage("m", "2.1.0").await.unwrap()[0].run_id, eval.0);
    let mut bad_kind = new_version("m", "2.2.0");
    bad_kind.lineage = vec![(RunKind::Quickstart, eval.0.clone())];
    assert!(store.register_version(bad_kind).await.is_err());
    assert!(store.model_version("m", "2.2.0").await.unwrap().is_none());
    let lineage = store.lineage("m", "2.0.0").await.unwrap();
    let mut links = lineage
        .iter()
        .map(|l| (l.kind.as_str(), l.run_id.as_str()))
        .collect::<Vec<_>>();
    links.sort();
    assert_eq!(links, [("bench", bench.as_str()), ("eval", eval.as_str())]);
    assert!(matches!(
        store
            .link_run("m", "9.0.0", RunKind::Eval, eval.as_str())
            .await,
        Err(StoreError::UnknownVersion { .. })
    ));
    assert!(matches!(
        store
            .link_run("m", "2.0.0", RunKind::Quickstart, eval.as_str())
            .await,
        Err(StoreError::Invalid { .. })
    ));
}

async fn bad_registry_input_is_refused_and_writes_nothing(fixture: Fixture) {
    let store = fixture.open().await;
    store
        .register_version(new_version("m", "1.0.0"))
        .await
        .unwrap();
    let mut again = new_version("m", "1.0.0");
    again.commit = Some("other".into());
    let error = store.register_version(again).await.unwrap_err();
    assert!(matches!(error, StoreError::VersionExists { .. }), "{error}");
    assert_eq!(
        store
            .model_version("m", "1.0.0")
            .await
            .unwrap()
            .unwrap()
            .commit
            .as_deref(),
        Some("0123abcd")
    );
    let error = store
        .move_alias(point("m", "production", Some("2.0.0"), "typo"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownVersion { .. }),
        "{error}"
    );
    assert!(store.alias_history("m", None).await.unwrap().is_empty());
    assert!(matches!(
        store
            .move_alias(point("m", "Production!", Some("1.0.0"), "bad"))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.register_version(new_version("Bad Name", "1")).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store
            .update_version("m", "3.0.0", VersionUpdate::default())
            .await,
        Err(StoreError::UnknownVersion { .. })
    ));
    assert_eq!(store.model_versions(None).await.unwrap().len(), 1);
}

async fn concurrent_alias_moves_keep_a_consistent_history(fixture: Fixture) {
    let a = fixture.open().await;
    let b = fixture.open().await;
    for version in ["1", "2"] {
        a.register_version(new_version("m", version)).await.unwrap();
    }
    let mover = |store: Store, version: &'static str| {
        tokio::spawn(async move {
            for _ in 0..30 {
                store
                    .move_alias(point("m", "production", Some(version), "race"))
                    .await
                    .unwrap();
            }
        })
    };
    let (ta, tb) = (mover(a.clone(), "1"), mover(b.clone(), "2"));
    ta.await.unwrap();
    tb.await.unwrap();
    let history = a.alias_history("m", Some("production")).await.unwrap();
    assert_eq!(history.len(), 60);
    assert_eq!(history[0].from, None);
    // Each move starts where the one before it ended: no move saw a stale alias.
    for pair in history.windows(2) {
        assert_eq!(pair[1].from, pair[0].to, "{pair:?}");
    }
    assert_eq!(
        a.resolve_alias("m", "production").await.unwrap(),
        history[59].to
    );
}

#[tokio::test]
async fn a_new_sqlite_store_is_created_with_its_directories_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/sluice.db");
    Store::open_sqlite(&path).await.unwrap();
    assert!(path.exists());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database ".repeat(100)).unwrap();
    let error = Store::open_sqlite(&path).await.unwrap_err().to_string();
    assert!(
        error.contains("notes.txt") && error.contains("not a usable SQLite database"),
        "{error}"
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("these are my notes")
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_unreachable_postgres_server_is_a_clear_error_without_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let location = StoreLocation::parse(&format!(
        "postgres://sluice:hunter2@127.0.0.1:{port}/sluice"
    ))
    .unwrap();
    let error = Store::open(&location).await.unwrap_err().to_string();
    assert!(error.contains("cannot connect to the store at"), "{error}");
    assert!(
        error.contains(&format!("postgres://sluice:***@127.0.0.1:{port}/sluice")),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    let error = Store::open(&StoreLocation::Postgres(
        "postgres://a:b@h:notaport/x".into(),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("not a valid PostgreSQL URL"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_that_create_the_same_new_file_at_once_all_open_it() {
    // Switching a new file to WAL takes a lock SQLite does not wait for; several commands
    // started at once on a fresh store (a CI job's first steps) must all get it.
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Store::open_sqlite(&path).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            let result = open.await.unwrap();
            assert!(result.is_ok(), "round {round}: {:?}", result.err());
        }
    }
}
