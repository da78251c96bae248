//! Parity with promptfoo: the suites under `tests/parity/` (written in the shape of promptfoo's
//! examples, using only features both tools support) run through `sluice eval` and through
//! promptfoo against the same simulator, and every test must get the same pass/fail from both.
//! Runs where promptfoo is installed (`PROMPTFOO_BIN`, or `promptfoo` on PATH); elsewhere it
//! says it was skipped, unless `SLUICE_REQUIRE_PROMPTFOO` makes a missing promptfoo a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn promptfoo() -> Option<PathBuf> {
    let candidate = std::env::var_os("PROMPTFOO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promptfoo"));
    let works = Command::new(&candidate)
        .arg("--version")
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(candidate)
}

/// Kills and reaps the simulator however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (test index, vars, prompt index, provider id) → pass, from either tool's JSON report.
type Verdicts = BTreeMap<(u64, String, u64, String), bool>;

fn sluice_verdicts(report: &serde_json::Value) -> Verdicts {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                (
                    row["test_index"].as_u64().unwrap(),
                    row["vars"].to_string(),
                    row["prompt_index"].as_u64().unwrap(),
                    row["provider"].as_str().unwrap().to_owned(),
                ),
                row["pass"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn promptfoo_verdicts(report: &serde_json::Value) -> Verdicts {
    report["results"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let vars: BTreeMap<String, serde_json::Value> =
                serde_json::from_value(row["vars"].clone()).unwrap();
            (
                (
                    row["testIdx"].as_u64().unwrap(),
                    serde_json::to_string(&vars).unwrap(),
                    row["promptIdx"].as_u64().unwrap(),
                    row["provider"]["id"].as_str().unwrap().to_owned(),
                ),
                row["success"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn suites_give_the_same_pass_fail_per_test_as_promptfoo() {
    let Some(promptfoo) = promptfoo() else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_PROMPTFOO").is_none(),
            "promptfoo is required here (PROMPTFOO_BIN)"
        );
        eprintln!(
            "skipped: promptfoo is not installed (npm install promptfoo@0.121.20, then set PROMPTFOO_BIN)"
        );
        return;
    };
    let parity = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity");
    let mut sim = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["simulate", "--listen", "127.0.0.1:0", "--config"])
            .arg(parity.join("sim.yaml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(sim.0.stdout.take().unwrap()).lines();
    let base_url = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));

    let mut compared = 0;
    for suite in ["basics", "csv", "structured"] {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(parity.join(suite)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("SIM_BASE_URL", &base_url);
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
        let config = dir.path().join("promptfooconfig.yaml");
        let ours = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["eval", "--no-write", "--no-cache", "-c"])
            .arg(&config)
            .arg("-o")
            .arg(dir.path().join("sluice.json"))
            .output()
            .unwrap();
        assert!(
            matches!(ours.status.code(), Some(0 | 1)),
            "{suite}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        // promptfoo exits non-zero when tests fail (and, in 0.121, on a logger error at exit);
        // its report file is what is compared.
        let theirs = Command::new(&promptfoo)
            .current_dir(dir.path())
            .args(["eval", "--no-cache", "--no-write", "--no-table", "-c"])
            .arg(&config)
            .arg("-o")
            .arg(dir.path().join("promptfoo.json"))
            .env("OPENAI_API_KEY", "sk-parity-not-a-key")
            .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
            .env("PROMPTFOO_DISABLE_UPDATE", "1")
            .env("PROMPTFOO_CONFIG_DIR", dir.path().join("promptfoo-home"))
            .output()
            .unwrap();
        let read = |name: &str| -> serde_json::Value {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| {
                panic!(
                    "{suite}: {name}: {e}\n{}",
                    String::from_utf8_lossy(&theirs.stdout)
                )
            });
            serde_json::from_str(&text).unwrap()
        };
        let (ours, theirs) = (
            sluice_verdicts(&read("sluice.json")),
            promptfoo_verdicts(&read("promptfoo.json")),
        );
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{suite}: different numbers of results"
        );
        let disagreements: Vec<_> = ours
            .iter()
            .filter(|(key, pass)| theirs.get(*key) != Some(pass))
            .collect();
        assert!(
            disagreements.is_empty(),
            "{suite}: sluice and promptfoo disagree on {disagreements:?} (promptfoo: {theirs:?})"
        );
        assert!(
            ours.values().any(|p| *p) && ours.values().any(|p| !*p),
            "{suite}: a parity suite needs both passes and failures"
        );
        compared += ours.len();
    }
    drop(sim);
    assert!(compared >= 20, "only {compared} results compared");
    eprintln!("parity: {compared} results agree with promptfoo");
}
