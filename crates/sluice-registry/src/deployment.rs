//! The files beside a `model.yaml`, checked with it:
//!
//! ```text
//! models/chat/
//!   model.yaml
//!   deployment.yaml          # how it is deployed
//!   config/staging.yaml      # one file per environment
//!   config/production.yaml
//!   prompts/system.txt       # prompt templates: {{ placeholders }}
//!   evals/basic.yaml         # eval suites whose tests provide the placeholders' vars
//! ```
//!
//! `deployment.yaml`:
//!
//! ```yaml
//! model: chat                # required, the model.yaml's name
//! version: 1.0.0             # optional, the model.yaml's version
//! replicas: 2                # required, integer ≥ 1
//! strategy: canary           # canary | blue_green | rolling | shadow | feature_flag
//! autoscaling: {min_replicas: 1, max_replicas: 4, target_gpu_utilization: 70}
//! gpus_per_replica: 1        # optional, at least the model.yaml's resources.gpu_count
//! ```
//!
//! `config/<environment>.yaml`: `replicas`, `autoscaling` and `strategy` as above, and
//! `slo: {availability: 99.9, p95_latency_ms: 2000, error_rate: 1}` (percentages; required in
//! `production.yaml`). With autoscaling, `min_replicas ≤ max_replicas` and `replicas` lies
//! between them.
//!
//! Prompt templates: every `{{ name }}` a template uses must be provided by each test of each
//! suite under `evals/` (its `vars`, or the suite's `defaultTest.vars`); names a template
//! binds itself (`{% for x in … %}`, `{% set x = … %}`) are not looked up. Suites whose tests
//! come from a file (`tests: file://…`) are not checked here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sluice_config::yaml::{Node, NodeKind};
use sluice_config::{Diagnostic, Document, FieldPath, Location, ProcessEnv};

use crate::model_yaml::{Check, FileReport, Finding, Kind, check_file};

const STRATEGIES: &[&str] = &["canary", "blue_green", "rolling", "shadow", "feature_flag"];

/// Checks the deployment, environment, prompt and eval files beside `model_file`.
pub fn validate_beside(model_file: &Path, dir: &Path) -> Vec<FileReport> {
    let model = Document::read(model_file, &ProcessEnv).ok();
    let scalar = |key: &str, inner: Option<&str>| {
        let root = model.as_ref()?.root();
        let node = match inner {
            Some(section) => root.get(section)?.get(key)?,
            None => root.get(key)?,
        };
        match &node.kind {
            NodeKind::Scalar { value, .. } => Some(value.clone()),
            _ => None,
        }
    };
    let facts = ModelFacts {
        name: scalar("name", None),
        version: scalar("version", None),
        gpu_count: scalar("gpu_count", Some("resources")).and_then(|v| v.parse().ok()),
    };
    let mut reports = Vec::new();
    let deployment = dir.join("deployment.yaml");
    if deployment.is_file() {
        reports.push(check_file(&deployment, |check, root| {
            check_deployment(check, root, &facts)
        }));
    }
    for file in yaml_files(&dir.join("config")) {
        let production = file.file_stem().is_some_and(|s| s == "production");
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        reports.push(check_file(&file, |check, root| {
            check_environment(check, root, &stem, production)
        }));
    }
    let suites: Vec<Suite> = yaml_files(&dir.join("evals"))
        .iter()
        .flat_map(|file| Suite::read(file, dir))
        .collect();
    for file in files(&dir.join("prompts")) {
        reports.push(check_prompt(&file, &suites));
    }
    reports
}

struct ModelFacts {
    name: Option<String>,
    version: Option<String>,
    gpu_count: Option<i64>,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect()
}

/// `replicas`, `strategy` and `autoscaling`, shared by deployments and environments.
fn check_scaling(check: &mut Check<'_>, root: &Node, path: &FieldPath) {
    let replicas = check
        .field(root, path, "replicas", Kind::Integer { min: 1 }, true)
        .and_then(|v| v.parse::<i64>().ok());
    check.field(root, path, "strategy", Kind::OneOf(STRATEGIES), false);
    let Some(autoscaling) = root.get("autoscaling").filter(|n| !n.is_null()) else {
        return;
    };
    let at = path.key("autoscaling");
    let known = ["min_replicas", "max_replicas", "target_gpu_utilization"];
    if check.mapping(autoscaling, &at, &known).is_none() {
        return;
    }
    let min = check
        .field(
            autoscaling,
            &at,
            "min_replicas",
            Kind::Integer { min: 1 },
            true,
        )
        .and_then(|v| v.parse::<i64>().ok());
    let max = check
        .field(
            autoscaling,
            &at,
            "max_replicas",
            Kind::Integer { min: 1 },
            true,
        )
        .and_then(|v| v.parse::<i64>().ok());
    check.field(
        autoscaling,
        &at,
        "target_gpu_utilization",
        Kind::Number {
            min: 1.0,
            max: 100.0,
        },
        false,
    );
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            check.error(
                &at.key("max_replicas"),
                format!("max_replicas ({max}) must be at least min_replicas ({min})"),
            );
        } else if let Some(replicas) = replicas
            && !(min..=max).contains(&replicas)
        {
            check.error(
                &path.key("replicas"),
                format!("replicas ({replicas}) must lie within autoscaling's {min}..={max}"),
            );
        }
    }
}

fn check_deployment(check: &mut Check<'_>, root: &Node, model: &ModelFacts) {
    let path = FieldPath::root();
    let known = [
        "model",
        "version",
        "replicas",
        "strategy",
        "autoscaling",
        "gpus_per_replica",
    ];
    if check.mapping(root, &path, &known).is_none() {
        return;
    }
    if let Some(name) = check.field(root, &path, "model", Kind::Text, true)
        && let Some(expected) = &model.name
        && name != *expected
    {
        check.error(
            &path.key("model"),
            format!("`{name}` is not the model beside it, `{expected}` (model.yaml)"),
        );
    }
    if let Some(version) = check.field(root, &path, "version", Kind::Text, false)
        && let Some(expected) = &model.version
        && version != *expected
    {
        check.error(
            &path.key("version"),
            format!("`{version}` is not model.yaml's version, `{expected}`"),
        );
    }
    check_scaling(check, root, &path);
    if let Some(gpus) = check
        .field(
            root,
            &path,
            "gpus_per_replica",
            Kind::Integer { min: 1 },
            false,
        )
        .and_then(|v| v.parse::<i64>().ok())
        && let Some(needed) = model.gpu_count
        && gpus < needed
    {
        check.error(
            &path.key("gpus_per_replica"),
            format!("{gpus} GPUs per replica, but model.yaml's resources.gpu_count is {needed}"),
        );
    }
}

fn check_environment(check: &mut Check<'_>, root: &Node, stem: &str, production: bool) {
    let path = FieldPath::root();
    let known = ["environment", "replicas", "strategy", "autoscaling", "slo"];
    if check.mapping(root, &path, &known).is_none() {
        return;
    }
    if let Some(environment) = check.field(root, &path, "environment", Kind::Text, false)
        && environment != stem
    {
        check.error(
            &path.key("environment"),
            format!("`{environment}` must equal the file's name, `{stem}`"),
        );
    }
    check_scaling(check, root, &path);
    match root.get("slo").filter(|n| !n.is_null()) {
        None if production => check.error(
            &path.key("slo"),
            "`slo` is required in production (availability, p95_latency_ms, error_rate)",
        ),
        None => {}
        Some(slo) => {
            let at = path.key("slo");
            let known = ["availability", "p95_latency_ms", "error_rate"];
            if check.mapping(slo, &at, &known).is_some() {
                let percent = Kind::Number {
                    min: 0.0,
                    max: 100.0,
                };
                check.field(slo, &at, "availability", percent, true);
                check.field(
                    slo,
                    &at,
                    "p95_latency_ms",
                    Kind::Number {
                        min: 1.0,
                        max: f64::INFINITY,
                    },
                    true,
                );
                check.field(slo, &at, "error_rate", percent, true);
            }
        }
    }
}

/// An eval suite's tests, as the vars each provides: its inline tests, or the tests of one
/// file it names (`file://tests.jsonl`, `.csv`, `.yaml`, `.json`).
struct Suite {
    /// Path shown in messages, relative to the model's directory.
    name: String,
    /// Per test: its line and the vars it has (defaults included).
    tests: Vec<(usize, BTreeSet<String>)>,
}

/// The keys of a mapping node.
fn keys(node: Option<&Node>) -> BTreeSet<String> {
    match node.map(|n| &n.kind) {
        Some(NodeKind::Mapping(entries)) => entries
            .iter()
            .filter_map(|(k, _)| match &k.kind {
                NodeKind::Scalar { value, .. } => Some(value.clone()),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

impl Suite {
    /// The suite file's inline tests (if any) and those of each test file it names. Files
    /// that cannot be read, and globs, are left to `sluice eval` to report.
    fn read(file: &Path, dir: &Path) -> Vec<Self> {
        let Ok(document) = Document::read(file, &ProcessEnv) else {
            return Vec::new();
        };
        let root = document.root();
        let relative = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let defaults = keys(root.get("defaultTest").and_then(|d| d.get("vars")));
        let with_defaults = |vars: BTreeSet<String>| {
            let mut all = defaults.clone();
            all.extend(vars);
            all
        };
        let items: Vec<&Node> = match root.get("tests").map(|t| &t.kind) {
            Some(NodeKind::Sequence(tests)) => tests.iter().collect(),
            Some(NodeKind::Scalar { .. }) => root.get("tests").into_iter().collect(),
            _ => return Vec::new(),
        };
        let base = file.parent().unwrap_or(dir);
        let mut inline = Vec::new();
        let mut suites = Vec::new();
        for item in items {
            match &item.kind {
                NodeKind::Scalar { value, .. } => {
                    let Some(path) = value.strip_prefix("file://") else {
                        continue;
                    };
                    if path.contains(['*', '?', '{', '[']) {
                        continue;
                    }
                    let full = base.join(path);
                    if let Some(tests) = tests_in_file(&full) {
                        suites.push(Self {
                            name: relative(&full),
                            tests: tests
                                .into_iter()
                                .map(|(line, vars)| (line, with_defaults(vars)))
                                .collect(),
                        });
                    }
                }
                _ => inline.push((item.location().line, with_defaults(keys(item.get("vars"))))),
            }
        }
        if !inline.is_empty() {
            suites.insert(
                0,
                Self {
                    name: relative(file),
                    tests: inline,
                },
            );
        }
        suites
    }
}

/// The tests of one test file, as each one's line and var names; `None` when it cannot be
/// read or parsed (its type decides how: JSONL rows with `vars`, CSV columns other than
/// `__…`, a YAML or JSON list of tests).
fn tests_in_file(path: &Path) -> Option<Vec<(usize, BTreeSet<String>)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                let row: serde_json::Value = serde_json::from_str(line).ok()?;
                let vars = row
                    .get("vars")
                    .and_then(serde_json::Value::as_object)
                    .map(|vars| vars.keys().cloned().collect())
                    .unwrap_or_default();
                Some((index + 1, vars))
            })
            .collect(),
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let vars: BTreeSet<String> = reader
                .headers()
                .ok()?
                .iter()
                .map(str::trim)
                .filter(|column| !column.starts_with("__") && !column.is_empty())
                .map(str::to_owned)
                .collect();
            Some(
                reader
                    .records()
                    .filter_map(Result::ok)
                    .map(|record| {
                        let line = record.position().map_or(0, |p| p.line() as usize);
                        (line, vars.clone())
                    })
                    .collect(),
            )
        }
        "yaml" | "yml" | "json" => {
            let document = Document::parse(&path.display().to_string(), &text, &ProcessEnv).ok()?;
            let NodeKind::Sequence(tests) = &document.root().kind else {
                return None;
            };
            Some(
                tests
                    .iter()
                    .map(|test| (test.location().line, keys(test.get("vars"))))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Placeholders a template uses, with their locations, and the names it binds itself.
fn placeholders(text: &str) -> (Vec<(String, Location)>, BTreeSet<String>) {
    let mut used = Vec::new();
    let mut bound = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(start) = rest.find(['{']) {
            let after = &rest[start..];
            let (is_expression, is_statement) = (after.starts_with("{{"), after.starts_with("{%"));
            if !is_expression && !is_statement {
                offset += start + 1;
                rest = &rest[start + 1..];
                continue;
            }
            let inner = after[2..].trim_start();
            let name: String = inner
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if is_expression && !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())
            {
                let byte = offset + start + 2 + (after[2..].len() - inner.len());
                let column = line[..byte].chars().count() + 1;
                used.push((
                    name,
                    Location {
                        line: index + 1,
                        column,
                    },
                ));
            } else if is_statement && (name == "for" || name == "set") {
                let bound_name: String = inner[name.len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !bound_name.is_empty() {
                    bound.insert(bound_name);
                }
            }
            offset += start + 2;
            rest = &rest[start + 2..];
        }
    }
    (used, bound)
}

fn check_prompt(file: &Path, suites: &[Suite]) -> FileReport {
    let mut errors = Vec::new();
    match std::fs::read_to_string(file) {
        Err(error) => errors.push(Finding {
            line: 1,
            column: 1,
            field: String::new(),
            message: format!("cannot read the template: {error}"),
        }),
        Ok(text) => {
            let (used, bound) = placeholders(&text);
            let mut reported = BTreeSet::new();
            for (name, location) in used {
                if bound.contains(&name) || !reported.insert(name.clone()) {
                    continue;
                }
                for suite in suites {
                    let missing: Vec<usize> = suite
                        .tests
                        .iter()
                        .filter(|(_, vars)| !vars.contains(&name))
                        .map(|(line, _)| *line)
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    let lines = missing
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    errors.push(Finding::from(&Diagnostic::new(
                        location,
                        FieldPath::root(),
                        format!(
                            "placeholder `{name}` is not provided by {} of {} test(s) in {} (the tests at line {lines})",
                            missing.len(),
                            suite.tests.len(),
                            suite.name
                        ),
                    )));
                }
            }
        }
    }
    errors.sort_by_key(|f| (f.line, f.column));
    FileReport {
        file: file.to_owned(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_with_their_columns_and_bound_names_skipped() {
        let (used, bound) = placeholders(
            "Answer {{ question }} using {{doc|trim}}.\n{% for item in items %}{{ item }}{% endfor %}\n{ not } {{ 3 }}",
        );
        let names: Vec<(String, usize, usize)> = used
            .iter()
            .map(|(n, l)| (n.clone(), l.line, l.column))
            .collect();
        assert_eq!(
            names,
            [
                ("question".to_owned(), 1, 11),
                ("doc".to_owned(), 1, 31),
                ("item".to_owned(), 2, 27),
            ]
        );
        assert_eq!(bound, BTreeSet::from(["item".to_owned()]));
    }

    fn write(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(root)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(file, text).unwrap_or_else(|e| panic!("{e}"));
    }

    const MODEL: &str = "name: NAME\nversion: 1.0.0\narchitecture: llama\nresources: {memory_gb: 16, gpu_count: 2, gpu_type: L4}\n";

    #[test]
    fn deployments_environments_and_prompts_are_checked_with_locations() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        // A valid model with every kind of file.
        write(
            root,
            "models/good/model.yaml",
            &MODEL.replace("NAME", "good"),
        );
        write(
            root,
            "models/good/deployment.yaml",
            "model: good\nversion: 1.0.0\nreplicas: 2\nstrategy: canary\nautoscaling: {min_replicas: 1, max_replicas: 4, target_gpu_utilization: 70}\ngpus_per_replica: 2\n",
        );
        write(
            root,
            "models/good/config/staging.yaml",
            "replicas: 1\nstrategy: blue_green\n",
        );
        write(
            root,
            "models/good/config/production.yaml",
            "environment: production\nreplicas: 3\nautoscaling: {min_replicas: 2, max_replicas: 6}\nslo: {availability: 99.9, p95_latency_ms: 2000, error_rate: 1}\n",
        );
        write(
            root,
            "models/good/prompts/answer.txt",
            "Context: {{ doc }}\nQuestion: {{question}}\n{% for x in doc %}{{ x }}{% endfor %}\n",
        );
        write(
            root,
            "models/good/evals/basic.yaml",
            "defaultTest:\n  vars: {doc: d}\ntests:\n  - vars: {question: a}\n  - vars: {question: b, extra: c}\n",
        );
        // An invalid one: every rule of these files broken.
        write(root, "models/bad/model.yaml", &MODEL.replace("NAME", "bad"));
        write(
            root,
            "models/bad/deployment.yaml",
            "model: other\nversion: 2.0.0\nreplicas: 0\nstrategy: big_bang\nautoscaling: {min_replicas: 5, max_replicas: 2, target_gpu_utilization: 150}\ngpus_per_replica: 1\nregion: eu\n",
        );
        write(
            root,
            "models/bad/config/staging.yaml",
            "environment: stage\nreplicas: 9\nautoscaling: {min_replicas: 1, max_replicas: 3}\n",
        );
        write(root, "models/bad/config/production.yaml", "replicas: 2\n");
        write(
            root,
            "models/bad/config/canary.yaml",
            "replicas: 1\nslo: {availability: 120, p95_latency_ms: 0}\n",
        );
        write(
            root,
            "models/bad/prompts/answer.txt",
            "Use {{ doc }} to answer\n  {{ question }}.\n",
        );
        write(
            root,
            "models/bad/evals/basic.yaml",
            "tests:\n  - vars: {question: a}\n  - vars: {question: b, doc: x}\n  - vars: {}\n  - file://cases.jsonl\n  - file://cases.csv\n",
        );
        write(
            root,
            "models/bad/evals/cases.jsonl",
            "{\"vars\": {\"question\": \"q\", \"doc\": \"d\"}}\n\n{\"vars\": {\"doc\": \"d\"}}\n",
        );
        write(
            root,
            "models/bad/evals/cases.csv",
            "question,doc,__expected\nq,d,contains:x\n",
        );
        let reports = crate::validate(&[root.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let found: Vec<String> = reports
            .iter()
            .flat_map(|r| {
                let file = r
                    .file
                    .strip_prefix(root)
                    .unwrap_or(&r.file)
                    .display()
                    .to_string();
                r.errors.iter().map(move |e| {
                    format!("{file}:{}:{}: {}: {}", e.line, e.column, e.field, e.message)
                })
            })
            .collect();
        assert!(
            !found
                .iter()
                .any(|e| e.starts_with("models/good/") || e.contains("cases.csv")),
            "{found:#?}"
        );
        assert_eq!(reports.len(), 11, "{reports:#?}");
        for expected in [
            "models/bad/deployment.yaml:1:8: model: `other` is not the model beside it, `bad`",
            "models/bad/deployment.yaml:2:10: version: `2.0.0` is not model.yaml's version, `1.0.0`",
            "models/bad/deployment.yaml:3:11: replicas: expected an integer ≥ 1, found 0",
            "models/bad/deployment.yaml:4:11: strategy: expected one of canary, blue_green, rolling, shadow, feature_flag, found `big_bang`",
            "models/bad/deployment.yaml:5:46: autoscaling.max_replicas: max_replicas (2) must be at least min_replicas (5)",
            "models/bad/deployment.yaml:5:73: autoscaling.target_gpu_utilization: expected a number from 1 to 100, found 150",
            "models/bad/deployment.yaml:6:19: gpus_per_replica: 1 GPUs per replica, but model.yaml's resources.gpu_count is 2",
            "models/bad/deployment.yaml:7:1: region: unknown field `region`",
            "models/bad/config/staging.yaml:1:14: environment: `stage` must equal the file's name, `staging`",
            "models/bad/config/staging.yaml:2:11: replicas: replicas (9) must lie within autoscaling's 1..=3",
            "models/bad/config/production.yaml:1:1: slo: `slo` is required in production",
            "models/bad/config/canary.yaml:2:21: slo.availability: expected a number from 0 to 100, found 120",
            "models/bad/config/canary.yaml:2:42: slo.p95_latency_ms: expected a number ≥ 1, found 0",
            "models/bad/config/canary.yaml:2:6: slo.error_rate: `error_rate` is required",
            "models/bad/prompts/answer.txt:1:8: : placeholder `doc` is not provided by 2 of 3 test(s) in evals/basic.yaml (the tests at line 2, 4)",
            "models/bad/prompts/answer.txt:2:6: : placeholder `question` is not provided by 1 of 3 test(s) in evals/basic.yaml (the tests at line 4)",
            "models/bad/prompts/answer.txt:2:6: : placeholder `question` is not provided by 1 of 2 test(s) in evals/cases.jsonl (the tests at line 3)",
        ] {
            assert!(
                found.iter().any(|e| e.starts_with(expected)),
                "missing {expected:?} in {found:#?}"
            );
        }
    }
}
