//! Property tests for the config compiler: on any input it returns a value or diagnostics, never
//! panics, and every diagnostic points inside the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use sluice_config::{Document, MapEnv};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Config {
    name: String,
    #[serde(default)]
    replicas: Option<u16>,
    #[serde(default)]
    weights: BTreeMap<String, f64>,
    #[serde(default)]
    stages: Vec<Stage>,
    #[serde(default)]
    mode: Option<Mode>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Stage {
    run: String,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    timeout_s: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Mode {
    Canary,
    BlueGreen { preview: String },
}

fn check(text: &str) {
    let lines = text.split('\n').count().max(1);
    let result = Document::parse("f.yaml", text, &MapEnv::default())
        .and_then(|doc| doc.deserialize::<Config>().map(|_| ()));
    if let Err(diagnostics) = result {
        assert!(
            !diagnostics.errors.is_empty(),
            "an error with no diagnostics for {text:?}"
        );
        for error in &diagnostics.errors {
            if let Some(location) = error.location {
                assert!(
                    location.line >= 1 && location.line <= lines + 1,
                    "line {} of {lines} for {text:?}",
                    location.line
                );
                assert!(location.column >= 1, "column 0 for {text:?}");
            }
            assert!(!error.message.is_empty());
        }
        let _ = diagnostics.to_string();
    }
}

/// YAML-looking documents built from the config's own vocabulary plus typos and wrong types.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("replicas"),
        Just("weights"),
        Just("stages"),
        Just("mode"),
        Just("run"),
        Just("needs"),
        Just("timeout_s"),
        Just("nmae"),
        Just("canary"),
        Just("blue_green"),
        Just("preview"),
    ];
    let scalar = prop_oneof![
        Just("x".to_owned()),
        Just("12".to_owned()),
        Just("-3".to_owned()),
        Just("70000".to_owned()),
        Just("1.5".to_owned()),
        Just("true".to_owned()),
        Just("~".to_owned()),
        Just("'q'".to_owned()),
        Just("[a, 1]".to_owned()),
        Just("{a: 1}".to_owned()),
        Just("canary".to_owned()),
        Just("${X:-7}".to_owned()),
        Just("${UNSET}".to_owned()),
        Just("[".to_owned()),
        Just("&a 1".to_owned()),
        Just("*a".to_owned()),
    ];
    let line = (
        0usize..4,
        key,
        prop_oneof![Just(": "), Just(":"), Just(": - "), Just("- ")],
        scalar,
    )
        .prop_map(|(indent, key, sep, value)| format!("{}{key}{sep}{value}", "  ".repeat(indent)));
    proptest::collection::vec(line, 0..14).prop_map(|lines| lines.join("\n"))
}

proptest! {
    // 2,000 cases per run; `PROPTEST_CASES` raises it for long fuzzing sessions.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn structured_input_never_panics_and_locates_errors(text in yamlish()) {
        check(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }
}

#[test]
fn a_valid_document_still_deserializes() {
    let text = "name: gw\nreplicas: 3\nweights: {a: 0.5, b: 0.5}\nstages:\n  - run: make\n    needs: [x]\nmode: {blue_green: {preview: p}}\n";
    let doc = Document::parse("f.yaml", text, &MapEnv::default()).unwrap();
    let config: Config = doc.deserialize().unwrap();
    assert_eq!(config.stages.len(), 1);
}
