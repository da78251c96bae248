//! `sluice registry` end to end, on a SQLite file and on PostgreSQL: registration with hashed
//! artifacts and evidence from a real eval run, refused input that writes nothing, aliases with
//! their history and webhook, deletion refused under an alias, tags, deprecation, and artifact
//! verification.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Simulate, examples, postgres_store, receiver, sluice};

struct Registry {
    store: String,
    webhook: String,
}

impl Registry {
    fn run(&self, args: &[&str]) -> Output {
        sluice()
            .args(["--store", &self.store, "registry"])
            .args(args)
            .env("SLUICE_ACTOR", "alice")
            .env("SLUICE_REGISTRY_WEBHOOK", &self.webhook)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Runs a command that must be refused with exit 2; returns its stderr.
    fn refused(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stderr)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_eval(store: &str, extra: &[&str]) -> Output {
    let sim = Simulate::start();
    sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .args(["--store", store, "eval", "-c"])
        .arg(examples().join("eval/promptfooconfig.yaml"))
        .args(extra)
        .output()
        .unwrap()
}

fn eval_run(store: &str, extra: &[&str]) -> String {
    let output = run_eval(store, extra);
    assert!(output.status.success(), "{}", text(&output.stderr));
    common::stored_runs(store, "eval")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

const MODEL_YAML: &str = "name: chat
version: 1.0.0
architecture: llama
resources: {memory_gb: 24, gpu_count: 1, gpu_type: L4}
serving: {max_batch_size: 8, max_sequence_length: 4096, protocol: http}
source: {type: local, uri: file:///models/chat}
";

fn round_trip(store: &str, dir: &Path) {
    let (webhook, hooks) = receiver();
    let registry = Registry {
        store: store.to_owned(),
        webhook,
    };
    let weights = dir.join("weights.bin");
    std::fs::write(&weights, b"abc").unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let file_uri = format!("file://{}", weights.display());
    let config = dir.join("models/chat/model.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, MODEL_YAML).unwrap();
    let eval = eval_run(store, &[]);

    let registered = registry.json(&[
        "register",
        "chat",
        "--version",
        "1.0.0",
        "--artifact",
        &file_uri,
        "--artifact",
        "hf://acme/chat@v1/model.safetensors",
        "--config",
        config.to_str().unwrap(),
        "--tag",
        "team=search",
        "--eval-run",
        &eval,
        "--commit",
        "0123abcd",
    ]);
    assert_eq!(registered["artifacts"][0]["sha256"], abc);
    assert_eq!(registered["artifacts"][0]["size"], 3);
    assert_eq!(registered["artifacts"][1]["sha256"], Value::Null);
    assert_eq!(registered["config"]["resources"]["gpu_count"], 1);
    assert_eq!(registered["registered_by"], "alice");

    // Refused input: every problem at once, nothing written.
    let error = registry.refused(&[
        "register",
        "chat",
        "--version",
        "1.0.0",
        "--artifact",
        &file_uri,
    ]);
    assert!(error.contains("already registered"), "{error}");
    let error = registry.refused(&[
        "register",
        "chat",
        "--version",
        "1.1.0",
        "--artifact",
        &file_uri,
        "--sha256",
        &"0".repeat(64),
        "--artifact",
        "s3://B/x",
        "--tag",
        "oops",
        "--eval-run",
        "eval-19700101-000000-000000",
    ]);
    for expected in [
        "sha256 mismatch",
        "s3://BUCKET/KEY",
        "\"oops\": expected KEY=VALUE",
        "no such run",
    ] {
        assert!(error.contains(expected), "{expected}: {error}");
    }
    let error = registry.refused(&[
        "register",
        "chat",
        "--version",
        "1.1.0",
        "--artifact",
        "weights.bin",
    ]);
    assert!(error.contains("with a scheme"), "{error}");
    assert_eq!(registry.json(&["list"]).as_array().unwrap().len(), 1);

    let second = dir.join("weights-2.bin");
    std::fs::write(&second, b"abcd").unwrap();
    registry.ok(&[
        "register",
        "chat",
        "--version",
        "1.1.0",
        "--artifact",
        &format!("file://{}", second.display()),
    ]);

    // Aliases: moves are recorded and announced.
    let out = registry.ok(&[
        "alias",
        "set",
        "chat",
        "production",
        "1.0.0",
        "--reason",
        "launch",
    ]);
    assert!(
        out.contains("chat@production: (none) → 1.0.0 (by alice)"),
        "{out}"
    );
    registry.ok(&[
        "alias",
        "set",
        "chat",
        "production",
        "1.1.0",
        "--reason",
        "canary passed",
    ]);
    let error = registry.refused(&["alias", "set", "chat", "production", "9.9.9"]);
    assert!(error.contains("chat has no version 9.9.9"), "{error}");
    let history = registry.json(&["alias", "history", "chat", "production"]);
    let moves: Vec<(Value, Value, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].clone(), m["to"].clone(), m["reason"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, "1.0.0".into(), "launch".into()),
            ("1.0.0".into(), "1.1.0".into(), "canary passed".into()),
        ]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while hooks.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = hooks.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[1]["event"], "registry.alias_moved");
    assert_eq!(received[1]["from"], "1.0.0");
    assert_eq!(received[1]["to"], "1.1.0");
    assert_eq!(received[1]["actor"], "alice");

    // Show by alias and by version, with lineage from the eval run.
    let shown = registry.json(&["show", "chat@production"]);
    assert_eq!(shown["version"], "1.1.0");
    let shown = registry.json(&["show", "chat/1.0.0"]);
    assert_eq!(shown["lineage"][0]["kind"], "eval");
    assert_eq!(shown["lineage"][0]["run_id"], eval.as_str());
    assert_eq!(shown["tags"]["team"], "search");
    // An eval run names the version it tests and joins its lineage.
    let tested = eval_run(store, &["--model-version", "chat@production"]);
    let shown = registry.json(&["show", "chat/1.1.0"]);
    assert_eq!(shown["lineage"][0]["run_id"], tested.as_str(), "{shown:#}");
    let output = run_eval(store, &["--model-version", "chat/9.9.9"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("chat has no version 9.9.9"),
        "{}",
        text(&output.stderr)
    );
    let error = registry.refused(&["show", "chat@canary"]);
    assert!(error.contains("no alias \"canary\""), "{error}");

    // A version under an alias is not deleted.
    let error = registry.refused(&["delete", "chat/1.1.0"]);
    assert!(error.contains("production"), "{error}");
    assert_eq!(registry.json(&["show", "chat/1.1.0"])["version"], "1.1.0");
    let error = registry.refused(&["delete", "chat@production"]);
    assert!(error.contains("MODEL/VERSION"), "{error}");

    // Tags, deprecation, deletion of an unaliased version.
    let out = registry.ok(&["tag", "chat/1.0.0", "stage=retired", "--remove", "team"]);
    assert!(out.contains("tags: stage=retired"), "{out}");
    registry.ok(&["deprecate", "chat/1.0.0", "--reason", "superseded"]);
    assert_eq!(
        registry.json(&["show", "chat/1.0.0"])["deprecated"]["reason"],
        "superseded"
    );
    assert_eq!(registry.json(&["show", "chat"])["version"], "1.1.0");
    registry.ok(&["delete", "chat/1.0.0"]);
    assert_eq!(
        registry.json(&["list", "chat"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        registry
            .json(&["alias", "history", "chat"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Verification: intact, then truncated (exit 1).
    let out = registry.ok(&["verify", "chat@production"]);
    assert!(out.contains(": intact"), "{out}");
    std::fs::write(&second, b"ab").unwrap();
    let output = registry.run(&["verify", "chat@production"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains("TRUNCATED: registered 4 bytes, now 2"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn registry_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    round_trip(store.to_str().unwrap(), dir.path());
}

#[test]
fn registry_round_trip_on_postgres() {
    let Some(store) = postgres_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    round_trip(&store, dir.path());
}

#[test]
fn an_unreachable_postgres_store_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = sluice()
        .args([
            "--store",
            &format!("postgres://sluice:hunter2@127.0.0.1:{port}/sluice"),
            "registry",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains("cannot connect to the store at postgres://sluice:***@"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn store_info_names_a_postgres_store_without_its_password() {
    let Some(store) = postgres_store() else {
        return;
    };
    let output = sluice()
        .args(["--store", &store, "store", "info"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let info = text(&output.stdout);
    assert!(
        info.contains("(PostgreSQL)")
            && info.contains(&format!(
                "schema       version {}",
                sluice_store::SCHEMA_VERSION
            )),
        "{info}"
    );
}
