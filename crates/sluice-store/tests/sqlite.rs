//! The SQLite backend on real files: migrations, durability across reopen, concurrent writers
//! from separate connections, and refusal to touch a store from a newer build.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::time::Duration;

use serde_json::json;
use sluice_store::{NewEvent, NewRun, RunFilter, RunStatus, Store, StoreError};

fn new_run(kind: &str, name: &str) -> NewRun {
    NewRun {
        kind: kind.into(),
        name: name.into(),
        config: json!({"suite": name}),
    }
}

#[tokio::test]
async fn a_new_store_is_created_migrated_and_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/sluice.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        sluice_store::SCHEMA_VERSION
    );
    assert!(path.exists());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn runs_and_events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let (id, seqs) = {
        let store = Store::open_sqlite(&path).await.unwrap();
        let id = store.create_run(new_run("eval", "smoke")).await.unwrap();
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
    let store = Store::open_sqlite(&path).await.unwrap();
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Passed);
    assert_eq!(run.summary, json!({"pass_rate": 1.0}));
    assert!(run.finished_at_ms.unwrap() >= run.started_at_ms);
    let events = store.events("rollout:a", 0, 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(
        store.events("rollout:a", seqs[0], 0).await.unwrap().len(),
        1
    );
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

#[tokio::test]
async fn listing_filters_by_kind_and_status_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
    let first = store.create_run(new_run("eval", "a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let second = store.create_run(new_run("eval", "b")).await.unwrap();
    store.create_run(new_run("bench", "c")).await.unwrap();
    store
        .finish_run(&first, RunStatus::Failed, json!({}))
        .await
        .unwrap();
    let evals = store
        .list_runs(RunFilter {
            kind: Some("eval".into()),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_separate_connections_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let a = Store::open_sqlite(&path).await.unwrap();
    let b = Store::open_sqlite(&path).await.unwrap();
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
    assert_eq!(a.events("a", 0, 1000).await.unwrap().len(), 200);
    assert_eq!(a.events("b", 0, 1000).await.unwrap().len(), 200);
}

#[tokio::test]
async fn a_store_from_a_newer_build_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::open_sqlite(&path).await.unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    drop(connection);
    let before = std::fs::read(&path).unwrap();
    let error = Store::open_sqlite(&path).await.unwrap_err();
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
    assert_eq!(std::fs::read(&path).unwrap(), before);
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

#[tokio::test]
async fn results_append_to_running_runs_only_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
    let id = store.create_run(new_run("eval", "r")).await.unwrap();
    let record = |seq: i64, pass: bool| sluice_store::ResultRecord {
        seq,
        key: format!("test-{seq}"),
        pass: Some(pass),
        score: Some(if pass { 1.0 } else { 0.0 }),
        error: None,
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
    assert_eq!(results[1].pass, Some(false));
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

#[tokio::test]
async fn an_older_store_is_migrated_forward_keeping_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let id = {
        let store = Store::open_sqlite(&path).await.unwrap();
        store.create_run(new_run("eval", "kept")).await.unwrap()
    };
    // Turn the file back into a version-1 store: no results table.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("DROP TABLE run_results; PRAGMA user_version = 1;")
        .unwrap();
    drop(connection);
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        sluice_store::SCHEMA_VERSION
    );
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().name, "kept");
    store.append_results(&id, vec![]).await.unwrap();
    assert!(store.results(&id).await.unwrap().is_empty());
}
