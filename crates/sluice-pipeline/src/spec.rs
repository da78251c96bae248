//! `pipeline.yaml`, compiled: `stages` (a map of name → stage) and `finally` (stages that run
//! after all others, whatever happened). A stage runs a shell command (`run`) after the
//! stages it `needs`; it may have a `timeout`, a `retry: {limit, backoff}` (the wait doubles
//! after each failed attempt), an `allow_failure` (true, or the exit codes that are allowed),
//! `env`, and a `tier` (unit, integration, quality, eval, safety, performance) to select it by.
//!
//! Everything is checked before anything runs: unknown fields, a stage without a command,
//! needs that name no stage (with a suggestion), a stage that needs itself, and cycles (named
//! in order); a `finally` stage may need only other `finally` stages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sluice_config::{Diagnostics, Document, EnvSource, FieldPath, did_you_mean, parse_duration};

/// A checked pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The stages, by name.
    pub stages: BTreeMap<String, Stage>,
    /// The stages that run after all others, by name.
    pub finally: BTreeMap<String, Stage>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The shell command (`sh -c`).
    pub run: String,
    /// The stages that must succeed first.
    pub needs: Vec<String>,
    /// How long one attempt may take.
    pub timeout: Option<Duration>,
    /// Attempts after a failure.
    pub retry: Retry,
    /// Which failures do not fail the pipeline.
    pub allow_failure: AllowFailure,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// The documents' test tier, when given.
    pub tier: Option<Tier>,
}

/// Attempts after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retry {
    /// How many more attempts (0: none).
    pub limit: u32,
    /// The wait before the first retry; it doubles after each.
    pub backoff: Duration,
}

/// Which failures of a stage do not fail the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowFailure {
    /// Every failure fails it.
    #[default]
    No,
    /// No failure does (a timeout neither).
    Any,
    /// Exits with these codes do not.
    ExitCodes(BTreeSet<i32>),
}

impl AllowFailure {
    /// Whether an exit with `code` (`None`: no exit code, e.g. killed or timed out) is allowed.
    pub fn allows(&self, code: Option<i32>) -> bool {
        match self {
            AllowFailure::No => false,
            AllowFailure::Any => true,
            AllowFailure::ExitCodes(codes) => code.is_some_and(|c| codes.contains(&c)),
        }
    }
}

/// The test tiers of the product's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Unit tests.
    Unit,
    /// Integration tests.
    Integration,
    /// Linters, formatters, type and security checks.
    Quality,
    /// Eval suites.
    Eval,
    /// Red-team and safety gates.
    Safety,
    /// Load tests and benchmarks.
    Performance,
}

impl Tier {
    const ALL: [(&'static str, Tier); 6] = [
        ("unit", Tier::Unit),
        ("integration", Tier::Integration),
        ("quality", Tier::Quality),
        ("eval", Tier::Eval),
        ("safety", Tier::Safety),
        ("performance", Tier::Performance),
    ];

    /// Its name in the file.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("unit", |(n, _)| n)
    }

    /// The tier named `name`.
    pub fn parse(name: &str) -> Option<Tier> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    stages: BTreeMap<String, RawStage>,
    #[serde(default)]
    finally: BTreeMap<String, RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retry: Option<RawRetry>,
    #[serde(default)]
    allow_failure: Option<RawAllowFailure>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    limit: u32,
    #[serde(default)]
    backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected true, false, or a list of the exit codes allowed such as [3, 4]"
)]
enum RawAllowFailure {
    Flag(bool),
    ExitCodes(Vec<i32>),
}

impl Pipeline {
    /// Reads and checks `path`.
    pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        Self::from_document(&Document::read(path, env)?)
    }

    /// Checks a parsed document.
    pub fn from_document(document: &Document) -> Result<Self, Diagnostics> {
        let raw: Raw = document.deserialize()?;
        let mut errors = Vec::new();
        let mut error =
            |at: FieldPath, message: String| errors.push(document.error_at(&at, message));
        if raw.stages.is_empty() {
            error(
                FieldPath::root().key("stages"),
                "expected at least one stage".to_owned(),
            );
        }
        for name in raw.finally.keys().filter(|n| raw.stages.contains_key(*n)) {
            error(
                FieldPath::root().key("finally").key(name.as_str()),
                format!(
                    "`{name}` is already a stage: names are unique across `stages` and `finally`"
                ),
            );
        }
        let mut compile = |section: &str, stages: BTreeMap<String, RawStage>| {
            stages
                .into_iter()
                .map(|(name, raw)| {
                    let at = FieldPath::root().key(section).key(name.as_str());
                    let stage = stage(raw, &at, &mut error);
                    (name, stage)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let stages = compile("stages", raw.stages);
        let finally = compile("finally", raw.finally);
        for (section, group) in [("stages", &stages), ("finally", &finally)] {
            for (name, stage) in group {
                for (i, need) in stage.needs.iter().enumerate() {
                    let at = FieldPath::root()
                        .key(section)
                        .key(name.as_str())
                        .key("needs")
                        .index(i);
                    if need == name {
                        error(at, format!("`{name}` needs itself"));
                    } else if !group.contains_key(need) {
                        let hint = did_you_mean(need, group.keys().map(String::as_str))
                            .map(|n| format!("; did you mean `{n}`?"))
                            .unwrap_or_default();
                        let place = if section == "finally" && stages.contains_key(need) {
                            " (a `finally` stage runs after every stage; it may need only other `finally` stages)".to_owned()
                        } else {
                            hint
                        };
                        error(at, format!("`{need}` is no stage of `{section}`{place}"));
                    }
                }
            }
            if let Some(cycle) = find_cycle(group) {
                let first = cycle[0].clone();
                error(
                    FieldPath::root()
                        .key(section)
                        .key(first.as_str())
                        .key("needs"),
                    format!("the needs form a cycle: {} → {first}", cycle.join(" → ")),
                );
            }
        }
        if errors.is_empty() {
            Ok(Pipeline { stages, finally })
        } else {
            Err(Diagnostics::in_file(document.name(), errors))
        }
    }

    /// Every stage then every `finally` stage, each group in an order where a stage comes
    /// after what it needs (ties by name).
    pub fn order(&self) -> Vec<&str> {
        let mut order = topological(&self.stages);
        order.extend(topological(&self.finally));
        order
    }
}

fn stage(raw: RawStage, at: &FieldPath, error: &mut impl FnMut(FieldPath, String)) -> Stage {
    let run = match raw.run {
        Some(run) if !run.trim().is_empty() => run,
        Some(_) => {
            error(at.key("run"), "expected a shell command".to_owned());
            String::new()
        }
        None => {
            error(
                at.clone(),
                "expected `run`: the stage's shell command".to_owned(),
            );
            String::new()
        }
    };
    let mut duration = |key: &str, text: Option<String>| {
        text.and_then(|t| match parse_duration(&t) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                error(
                    at.key(key),
                    format!("`{t}`: expected a duration above zero"),
                );
                None
            }
            Err(e) => {
                error(at.key(key), e.to_string());
                None
            }
        })
    };
    let timeout = duration("timeout", raw.timeout);
    let retry = match raw.retry {
        None => Retry::default(),
        Some(retry) => Retry {
            limit: retry.limit,
            backoff: retry
                .backoff
                .and_then(|t| match parse_duration(&t) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        error(at.key("retry").key("backoff"), e.to_string());
                        None
                    }
                })
                .unwrap_or(Duration::ZERO),
        },
    };
    let tier = raw.tier.and_then(|name| {
        Tier::parse(&name).or_else(|| {
            let known: Vec<&str> = Tier::ALL.iter().map(|(n, _)| *n).collect();
            error(
                at.key("tier"),
                format!(
                    "unknown tier `{name}`: expected one of {}",
                    known.join(", ")
                ),
            );
            None
        })
    });
    Stage {
        run,
        needs: raw.needs,
        timeout,
        retry,
        allow_failure: match raw.allow_failure {
            None | Some(RawAllowFailure::Flag(false)) => AllowFailure::No,
            Some(RawAllowFailure::Flag(true)) => AllowFailure::Any,
            Some(RawAllowFailure::ExitCodes(codes)) => {
                AllowFailure::ExitCodes(codes.into_iter().collect())
            }
        },
        env: raw.env,
        tier,
    }
}

/// A cycle among `stages`' needs, as the names along it, if there is one (an iterative
/// depth-first search, so a long chain does not exhaust the stack).
fn find_cycle(stages: &BTreeMap<String, Stage>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let needs = |name: &str| -> Vec<&str> {
        stages.get(name).map_or_else(Vec::new, |s| {
            s.needs
                .iter()
                .map(String::as_str)
                .filter(|n| *n != name && stages.contains_key(*n))
                .collect()
        })
    };
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for start in stages.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // The path from `start`, each with the needs still to visit.
        let mut path: Vec<(&str, Vec<&str>)> = vec![(start.as_str(), needs(start))];
        marks.insert(start.as_str(), Mark::Open);
        while let Some((_, pending)) = path.last_mut() {
            match pending.pop() {
                None => {
                    let (name, _) = path.pop().unwrap_or_default();
                    marks.insert(name, Mark::Done);
                }
                Some(next) => match marks.get(next) {
                    Some(Mark::Done) => {}
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        return Some(path[from..].iter().map(|(n, _)| (*n).to_owned()).collect());
                    }
                    None => {
                        marks.insert(next, Mark::Open);
                        path.push((next, needs(next)));
                    }
                },
            }
        }
    }
    None
}

/// `stages` in an order where each comes after what it needs (Kahn's algorithm, ties by name);
/// only called on a checked, acyclic group.
fn topological(stages: &BTreeMap<String, Stage>) -> Vec<&str> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, stage) in stages {
        let known: Vec<&str> = stage
            .needs
            .iter()
            .map(String::as_str)
            .filter(|n| stages.contains_key(*n))
            .collect();
        waiting.insert(name, known.len());
        for need in known {
            dependents.entry(need).or_default().push(name);
        }
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut order = Vec::with_capacity(stages.len());
    while let Some(name) = ready.pop_first() {
        order.push(name);
        for other in dependents.get(name).map(Vec::as_slice).unwrap_or_default() {
            if let Some(count) = waiting.get_mut(other) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(other);
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use sluice_config::MapEnv;

    use super::*;

    fn compile(text: &str) -> Result<Pipeline, String> {
        let document = Document::parse("pipeline.yaml", text, &MapEnv::default())
            .map_err(|d| d.to_string())?;
        Pipeline::from_document(&document).map_err(|d| d.to_string())
    }

    #[test]
    fn a_pipeline_compiles_with_its_options() {
        let pipeline = compile(
            "stages:\n  lint: {run: ruff check ., tier: quality}\n  test: {run: pytest, needs: [lint], timeout: 10m, retry: {limit: 2, backoff: 2s}}\n  docs: {run: exit 3, allow_failure: true}\n  smoke: {run: ./smoke.sh, allow_failure: [3, 4], env: {MODE: fast}}\nfinally:\n  notify: {run: ./notify.sh}\n",
        )
        .unwrap();
        let test = &pipeline.stages["test"];
        assert_eq!(test.needs, ["lint"]);
        assert_eq!(test.timeout, Some(Duration::from_secs(600)));
        assert_eq!(
            test.retry,
            Retry {
                limit: 2,
                backoff: Duration::from_secs(2)
            }
        );
        assert_eq!(pipeline.stages["lint"].tier, Some(Tier::Quality));
        assert!(pipeline.stages["docs"].allow_failure.allows(Some(3)));
        assert!(pipeline.stages["docs"].allow_failure.allows(None));
        let smoke = &pipeline.stages["smoke"].allow_failure;
        assert!(smoke.allows(Some(4)) && !smoke.allows(Some(1)) && !smoke.allows(None));
        assert_eq!(pipeline.stages["smoke"].env["MODE"], "fast");
        assert_eq!(
            pipeline.order(),
            ["docs", "lint", "smoke", "test", "notify"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_place() {
        let error = compile(
            "stages:\n  lint: {run: ruff}\n  test: {needs: [lnt], run: pytest, timeout: soon}\n  build: {run: make, tier: fast}\n  empty: {}\nfinally:\n  notify: {run: x, needs: [test]}\n",
        )
        .unwrap_err();
        for expected in [
            "pipeline.yaml:3:18: stages.test.needs[0]: `lnt` is no stage of `stages`; did you mean `lint`?",
            "stages.test.timeout: `soon`: expected a duration",
            "stages.build.tier: unknown tier `fast`: expected one of unit, integration, quality, eval, safety, performance",
            "stages.empty: expected `run`",
            "finally.notify.needs[0]: `test` is no stage of `finally` (a `finally` stage runs after every stage",
        ] {
            assert!(error.contains(expected), "{expected}\nin\n{error}");
        }
    }

    #[test]
    fn cycles_are_named_and_unknown_fields_refused() {
        let error = compile(
            "stages:\n  a: {run: x, needs: [c]}\n  b: {run: x, needs: [a]}\n  c: {run: x, needs: [b]}\n  d: {run: x, needs: [d]}\n",
        )
        .unwrap_err();
        assert!(
            error.contains("the needs form a cycle: a → c → b → a"),
            "{error}"
        );
        assert!(error.contains("`d` needs itself"), "{error}");
        let error = compile("stages:\n  a: {run: x, timeoutt: 1s}\n").unwrap_err();
        assert!(error.contains("timeoutt"), "{error}");
        let error = compile("stages:\n  a: {run: x, allow_failure: maybe}\n").unwrap_err();
        assert!(
            error.contains(
                "stages.a.allow_failure: expected true, false, or a list of the exit codes"
            ),
            "{error}"
        );
        let error = compile("stages: {}\n").unwrap_err();
        assert!(error.contains("expected at least one stage"), "{error}");
    }

    #[test]
    fn a_long_chain_is_ordered() {
        let mut text = String::from("stages:\n");
        for i in 0..2000 {
            if i == 0 {
                text.push_str("  s0: {run: x}\n");
            } else {
                text.push_str(&format!("  s{i}: {{run: x, needs: [s{}]}}\n", i - 1));
            }
        }
        let pipeline = compile(&text).unwrap();
        let order = pipeline.order();
        assert_eq!(order.len(), 2000);
        assert_eq!(order[0], "s0");
        assert_eq!(order[1999], "s1999");
    }
}
