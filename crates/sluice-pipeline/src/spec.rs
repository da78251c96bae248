//! `pipeline.yaml`, compiled: `stages` (a map of name → stage) and `finally` (stages that run
//! after all others, whatever happened). A stage runs a shell command (`run`) or a Sluice
//! built-in (`uses` with its options in `with`) after the stages it `needs`, when its `if`
//! holds; it may have a `timeout`, a `retry: {limit, backoff, on}` (the wait doubles after
//! each failed attempt), an `allow_failure` (true, or the exit codes that are allowed), `env`,
//! `outputs` read from files, a `cache` (input globs and the paths it restores), a `gpu`
//! request, `reports` (JUnit and SARIF files), a `priority` and a `tier` (unit, integration,
//! quality, eval, safety, performance) to select it by.
//!
//! The file is read without `${VAR}` interpolation: `${HOME}` in a command is the shell's, and
//! `${{ … }}` is an expression ([`crate::expr`]) put in when the stage runs.
//!
//! Everything is checked before anything runs: unknown fields, a stage without a command or
//! with both kinds, unknown built-ins, needs that name no stage (with a suggestion), a stage
//! that needs itself, cycles (named in order), expressions that do not parse or read a stage
//! not needed; a `finally` stage may need only other `finally` stages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sluice_config::{Diagnostics, Document, FieldPath, did_you_mean, parse_duration};

use crate::expr::{Expr, Template};

/// Checks a built-in's options: `Err((option, why))`, the option `None` when the problem is
/// not one option's.
pub type OptionCheck =
    dyn Fn(Builtin, &[(String, Vec<String>)]) -> Result<(), (Option<String>, String)>;

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
    /// What it runs.
    pub action: Action,
    /// The stages that must succeed first.
    pub needs: Vec<String>,
    /// Its condition (`if`), when it has one.
    pub condition: Option<Expr>,
    /// The condition as written, for exports.
    pub condition_text: Option<String>,
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
    /// Outputs read from files once it succeeded, by name (besides the `NAME=value` lines it
    /// writes to `$SLUICE_OUTPUT`).
    pub outputs: BTreeMap<String, String>,
    /// What makes a run of it reusable, when it is cached.
    pub cache: Option<Cache>,
    /// The GPUs it needs, when it needs any.
    pub gpu: Option<GpuRequest>,
    /// The report files it writes.
    pub reports: Reports,
    /// Higher runs first among stages waiting for GPUs (0 by default).
    pub priority: i32,
    /// For one combination of a `matrix` stage: the stage's name and this combination's
    /// values (`${{ matrix.NAME }}`).
    pub matrix: Option<(String, BTreeMap<String, String>)>,
}

/// The most combinations one `matrix` may give.
const MAX_MATRIX: usize = 256;

impl Stage {
    /// Every expression of the stage: its condition, then those in its command or options.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut exprs: Vec<&Expr> = self.condition.iter().collect();
        match &self.action {
            Action::Run(template) => exprs.extend(template.exprs()),
            Action::Uses { with, .. } => {
                exprs.extend(
                    with.iter()
                        .flat_map(|(_, v)| v.iter().flat_map(Template::exprs)),
                );
            }
        }
        exprs
    }
}

/// What a stage runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A shell command (run directly when it needs no shell), with its `${{ }}` substitutions.
    Run(Template),
    /// A Sluice built-in, run as `sluice BUILTIN --OPTION VALUE…`.
    Uses {
        /// The built-in.
        builtin: Builtin,
        /// Its options, in the file's order; a list gives the option once per item.
        with: Vec<(String, Vec<Template>)>,
    },
}

/// The built-ins a stage may `use`: Sluice's own commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `sluice validate`
    Validate,
    /// `sluice eval`
    Eval,
    /// `sluice redteam`
    Redteam,
    /// `sluice bench`
    Bench,
    /// `sluice readiness`
    Readiness,
    /// `sluice registry register`
    Register,
    /// `sluice registry alias set`
    Alias,
    /// `sluice rollout start`
    Rollout,
}

impl Builtin {
    const ALL: [(&'static str, Builtin); 8] = [
        ("validate", Builtin::Validate),
        ("eval", Builtin::Eval),
        ("redteam", Builtin::Redteam),
        ("bench", Builtin::Bench),
        ("readiness", Builtin::Readiness),
        ("register", Builtin::Register),
        ("alias", Builtin::Alias),
        ("rollout", Builtin::Rollout),
    ];

    /// Its name in `uses`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("validate", |(n, _)| n)
    }

    /// The `sluice` command words it runs, before its options.
    pub fn command(self) -> &'static [&'static str] {
        match self {
            Builtin::Validate => &["validate"],
            Builtin::Eval => &["eval"],
            Builtin::Redteam => &["redteam"],
            Builtin::Bench => &["bench"],
            Builtin::Readiness => &["readiness"],
            Builtin::Register => &["registry", "register"],
            Builtin::Alias => &["registry", "alias", "set"],
            Builtin::Rollout => &["rollout", "start"],
        }
    }
}

/// Attempts after a failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retry {
    /// How many more attempts (0: none).
    pub limit: u32,
    /// The wait before the first retry; it doubles after each.
    pub backoff: Duration,
    /// Which endings are retried.
    pub on: RetryOn,
}

/// Which endings of an attempt are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOn {
    /// These kinds (`failure`: a non-zero exit or a signal; `error`: it could not start;
    /// `timeout`: it ran past its timeout).
    Kinds {
        /// A non-zero exit or a signal.
        failure: bool,
        /// It could not start.
        error: bool,
        /// It ran past its timeout.
        timeout: bool,
    },
    /// Only exits with these codes.
    ExitCodes(BTreeSet<i32>),
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn::Kinds {
            failure: true,
            error: true,
            timeout: true,
        }
    }
}

/// What makes a stage's earlier run reusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Globs of the files it reads (relative to the pipeline's directory).
    pub inputs: Vec<String>,
    /// The files and directories it produces, saved and restored with its outputs.
    pub paths: Vec<String>,
}

/// The GPUs a stage needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuRequest {
    /// How many, on one node.
    pub count: u32,
    /// The least memory of each, in GB.
    pub memory_gb: Option<f64>,
    /// The GPU type (`H100`, `L4`…), compared without regard to case; any when not given.
    pub gpu_type: Option<String>,
    /// Whether a spot GPU will do.
    pub spot: bool,
    /// Exit codes that mean the spot node was taken back (the stage is retried).
    pub preempted_exit_codes: BTreeSet<i32>,
    /// Signals that mean the same when the command is killed by one (a spot node's shutdown
    /// sends `TERM`), as signal numbers.
    pub preempted_signals: BTreeSet<i32>,
}

/// The report files a stage writes, collected into the summary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reports {
    /// JUnit XML files.
    pub junit: Vec<String>,
    /// SARIF files.
    pub sarif: Vec<String>,
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
    uses: Option<String>,
    #[serde(default)]
    with: BTreeMap<String, OneOrMany>,
    #[serde(default, rename = "if")]
    condition: Option<String>,
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
    #[serde(default)]
    outputs: BTreeMap<String, String>,
    #[serde(default)]
    cache: Option<RawCache>,
    #[serde(default)]
    gpu: Option<RawGpu>,
    #[serde(default)]
    reports: Option<RawReports>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    matrix: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a value or a list of values")]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

/// A text, number or boolean, kept as text.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected text, a number or true/false")]
enum Scalar {
    Text(String),
    Integer(i64),
    Number(f64),
    Flag(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(text) => text,
            Scalar::Integer(n) => n.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Flag(b) => b.to_string(),
        }
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.into_text()],
            OneOrMany::Many(many) => many.into_iter().map(Scalar::into_text).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    limit: u32,
    #[serde(default)]
    backoff: Option<String>,
    #[serde(default)]
    on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    inputs: OneOrMany,
    #[serde(default)]
    paths: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    count: u32,
    #[serde(default)]
    memory_gb: Option<f64>,
    #[serde(default, rename = "type")]
    gpu_type: Option<String>,
    #[serde(default)]
    spot: bool,
    #[serde(default)]
    preempted_exit_codes: Vec<i32>,
    #[serde(default)]
    preempted_signals: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    #[serde(default)]
    junit: Option<OneOrMany>,
    #[serde(default)]
    sarif: Option<OneOrMany>,
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
    /// Reads and checks `path` (read literally: see the module's documentation).
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        Self::from_document(&Document::read_literal(path)?)
    }

    /// Checks a parsed document.
    pub fn from_document(document: &Document) -> Result<Self, Diagnostics> {
        Self::from_document_with(document, &|_, _| Ok(()))
    }

    /// Reads and checks `path`, each built-in's options by `check` as well.
    pub fn load_with(path: &Path, check: &OptionCheck) -> Result<Self, Diagnostics> {
        Self::from_document_with(&Document::read_literal(path)?, check)
    }

    /// Checks a parsed document, each built-in's options by `check` as well (given the
    /// options as written, with `${{ … }}` where an expression's value will be).
    pub fn from_document_with(
        document: &Document,
        check: &OptionCheck,
    ) -> Result<Self, Diagnostics> {
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
            let mut bases: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut compiled: BTreeMap<String, Stage> = stages
                .into_iter()
                .flat_map(|(name, mut raw)| {
                    let at = FieldPath::root().key(section).key(name.as_str());
                    let matrix = std::mem::take(&mut raw.matrix);
                    let stage = stage(raw, &at, &mut error);
                    for expr in stage.exprs() {
                        expr.paths(&mut |path| {
                            if path[0] == "matrix"
                                && path.len() == 2
                                && !matrix.contains_key(&path[1])
                            {
                                error(
                                    at.clone(),
                                    format!("`matrix.{}` is not in this stage's `matrix`", path[1]),
                                );
                            }
                        });
                    }
                    if let Action::Uses { builtin, with } = &stage.action {
                        let written: Vec<(String, Vec<String>)> = with
                            .iter()
                            .map(|(k, v)| (k.clone(), v.iter().map(Template::written).collect()))
                            .collect();
                        if let Err((key, message)) = check(*builtin, &written) {
                            let at = match key {
                                Some(key) => at.key("with").key(key),
                                None => at.key("with"),
                            };
                            error(at, message);
                        }
                    }
                    let combinations = match combinations(matrix) {
                        Ok(combinations) => combinations,
                        Err(why) => {
                            error(at.key("matrix"), why);
                            Vec::new()
                        }
                    };
                    if combinations.is_empty() {
                        return vec![(name, stage)];
                    }
                    let expanded: Vec<(String, Stage)> = combinations
                        .into_iter()
                        .map(|values| {
                            let label = values.values().cloned().collect::<Vec<_>>().join(", ");
                            let mut one = stage.clone();
                            one.matrix = Some((name.clone(), values));
                            (format!("{name} ({label})"), one)
                        })
                        .collect();
                    bases.insert(name, expanded.iter().map(|(n, _)| n.clone()).collect());
                    expanded
                })
                .collect();
            // Needing a matrix stage is needing every one of its combinations.
            for stage in compiled.values_mut() {
                stage.needs = stage
                    .needs
                    .iter()
                    .flat_map(|n| bases.get(n).cloned().unwrap_or_else(|| vec![n.clone()]))
                    .collect();
            }
            compiled
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

    /// The part of the pipeline a run is asked for: the stages named in `only`, or `from` a
    /// stage and every stage that (transitively) needs it, or those of `tier` — each filter
    /// narrowing the last. Needs on stages left out stay: the runner takes them as another
    /// job ended them ([`crate::RunOptions::external`]). The `finally` stages stay unless
    /// `only` names stages (a CI job running one stage does not run them). An unknown stage
    /// name is an error with a suggestion.
    pub fn select(
        &self,
        only: &[String],
        from: Option<&str>,
        tier: Option<Tier>,
    ) -> Result<Pipeline, String> {
        let unknown = |name: &str| {
            let hint = did_you_mean(name, self.stages.keys().map(String::as_str))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            format!("`{name}` is no stage of the pipeline{hint}")
        };
        let mut keep: BTreeSet<&str> = self.stages.keys().map(String::as_str).collect();
        // A matrix stage's name stands for all its combinations.
        let only: Vec<String> = only
            .iter()
            .flat_map(|name| {
                let combinations: Vec<String> = self
                    .stages
                    .iter()
                    .chain(&self.finally)
                    .filter(|(_, s)| s.matrix.as_ref().is_some_and(|(base, _)| base == name))
                    .map(|(n, _)| n.clone())
                    .collect();
                if combinations.is_empty() {
                    vec![name.clone()]
                } else {
                    combinations
                }
            })
            .collect();
        let only = only.as_slice();
        if !only.is_empty() {
            let known = |n: &String| self.stages.contains_key(n) || self.finally.contains_key(n);
            if let Some(name) = only.iter().find(|n| !known(n)) {
                return Err(unknown(name));
            }
            keep = only.iter().map(String::as_str).collect();
        }
        if let Some(start) = from {
            let mut downstream: BTreeSet<&str> = self
                .stages
                .iter()
                .filter(|(name, s)| {
                    name.as_str() == start || s.matrix.as_ref().is_some_and(|(b, _)| b == start)
                })
                .map(|(name, _)| name.as_str())
                .collect();
            if downstream.is_empty() {
                return Err(unknown(start));
            }
            for name in topological(&self.stages) {
                if self.stages[name]
                    .needs
                    .iter()
                    .any(|n| downstream.contains(n.as_str()))
                {
                    downstream.insert(name);
                }
            }
            keep.retain(|n| downstream.contains(n));
        }
        if let Some(tier) = tier {
            keep.retain(|n| self.stages.get(*n).is_some_and(|s| s.tier == Some(tier)));
        }
        let only_finally = !only.is_empty() && only.iter().all(|n| self.finally.contains_key(n));
        if keep.is_empty() && !only_finally {
            return Err("no stage is left to run by --only, --from and --tier".to_owned());
        }
        let pick = |group: &BTreeMap<String, Stage>, wanted: &dyn Fn(&str) -> bool| {
            group
                .iter()
                .filter(|(name, _)| wanted(name))
                .map(|(name, stage)| (name.clone(), stage.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        if only_finally {
            return Ok(Pipeline {
                stages: BTreeMap::new(),
                finally: pick(&self.finally, &|n| only.iter().any(|o| o == n)),
            });
        }
        Ok(Pipeline {
            stages: pick(&self.stages, &|n| keep.contains(n)),
            finally: if only.is_empty() {
                self.finally.clone()
            } else {
                BTreeMap::new()
            },
        })
    }

    /// Whether any condition or substitution reads the context `root` (`github`, `env`…).
    pub fn reads(&self, root: &str) -> bool {
        let mut found = false;
        for stage in self.stages.values().chain(self.finally.values()) {
            for expr in stage.exprs() {
                expr.paths(&mut |path| found |= path[0] == root);
            }
        }
        found
    }

    /// Checks every GPU request against the GPUs there are: one message per stage whose
    /// request no node could ever meet.
    pub fn check_gpus(&self, pool: &crate::gpu::Pool) -> Vec<String> {
        self.stages
            .iter()
            .chain(&self.finally)
            .filter_map(|(name, stage)| {
                let request = stage.gpu.as_ref()?;
                pool.check(request)
                    .err()
                    .map(|why| format!("stage `{name}` asks for GPUs that never fit: {why}"))
            })
            .collect()
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
    let mut template = |key: FieldPath, text: &str| {
        Template::parse(text).unwrap_or_else(|e| {
            error(key, e.to_string());
            Template::default()
        })
    };
    let with_given = !raw.with.is_empty();
    let action = match (raw.run, raw.uses) {
        (Some(run), None) if !run.trim().is_empty() => Action::Run(template(at.key("run"), &run)),
        (Some(_), None) => {
            error(at.key("run"), "expected a shell command".to_owned());
            Action::Run(Template::default())
        }
        (None, Some(name)) => {
            let builtin = Builtin::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b);
            let with = raw
                .with
                .into_iter()
                .map(|(key, values)| {
                    let values = values
                        .into_vec()
                        .iter()
                        .map(|v| template(at.key("with").key(key.as_str()), v))
                        .collect();
                    (key, values)
                })
                .collect();
            match builtin {
                Some(builtin) => Action::Uses { builtin, with },
                None => {
                    let names = Builtin::ALL.iter().map(|(n, _)| *n);
                    let hint = did_you_mean(&name, names.clone())
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    let known: Vec<&str> = names.collect();
                    error(
                        at.key("uses"),
                        format!(
                            "unknown built-in `{name}`: expected one of {}{hint}",
                            known.join(", ")
                        ),
                    );
                    Action::Run(Template::default())
                }
            }
        }
        (Some(_), Some(_)) => {
            error(
                at.key("uses"),
                "expected `run` or `uses`, not both".to_owned(),
            );
            Action::Run(Template::default())
        }
        (None, None) => {
            error(
                at.clone(),
                "expected `run` (a shell command) or `uses` (a built-in)".to_owned(),
            );
            Action::Run(Template::default())
        }
    };
    if with_given && matches!(action, Action::Run(_)) {
        error(
            at.key("with"),
            "`with` gives a built-in's options: expected `uses` beside it".to_owned(),
        );
    }
    let condition = raw
        .condition
        .as_deref()
        .and_then(|text| match Expr::parse(text) {
            Ok(expr) => {
                for problem in expr.check(&raw.needs) {
                    error(at.key("if"), problem);
                }
                Some(expr)
            }
            Err(e) => {
                error(at.key("if"), e.to_string());
                None
            }
        });
    let mut check_templates = |key: FieldPath, template: &Template| {
        for expr in template.exprs() {
            for problem in expr.check(&raw.needs) {
                error(key.clone(), problem);
            }
        }
    };
    match &action {
        Action::Run(run) => check_templates(at.key("run"), run),
        Action::Uses { with, .. } => {
            for (key, values) in with {
                for value in values {
                    check_templates(at.key("with").key(key.as_str()), value);
                }
            }
        }
    }
    let mut duration = |key: FieldPath, text: Option<String>, zero_ok: bool| {
        text.and_then(|t| match parse_duration(&t) {
            Ok(d) if d.is_zero() && !zero_ok => {
                error(key, format!("`{t}`: expected a duration above zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                error(key, e.to_string());
                None
            }
        })
    };
    let timeout = duration(at.key("timeout"), raw.timeout, false);
    let retry = match raw.retry {
        None => Retry::default(),
        Some(retry) => Retry {
            limit: retry.limit,
            backoff: duration(at.key("retry").key("backoff"), retry.backoff, true)
                .unwrap_or(Duration::ZERO),
            on: retry
                .on
                .map(|on| retry_on(&on, &at.key("retry").key("on"), error))
                .unwrap_or_default(),
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
    let gpu = raw.gpu.and_then(|gpu| {
        if gpu.count == 0 {
            error(at.key("gpu").key("count"), "expected at least 1".to_owned());
            return None;
        }
        if gpu.memory_gb.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            error(
                at.key("gpu").key("memory_gb"),
                "expected a size above zero, in GB".to_owned(),
            );
            return None;
        }
        let mut preempted_signals = BTreeSet::new();
        for (i, name) in gpu.preempted_signals.iter().enumerate() {
            match signal_number(name) {
                Some(number) => {
                    preempted_signals.insert(number);
                }
                None => error(
                    at.key("gpu").key("preempted_signals").index(i),
                    format!(
                        "`{name}` is not a signal: expected one of {} (with or without SIG)",
                        SIGNALS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        Some(GpuRequest {
            count: gpu.count,
            memory_gb: gpu.memory_gb,
            gpu_type: gpu.gpu_type,
            spot: gpu.spot,
            preempted_exit_codes: gpu.preempted_exit_codes.into_iter().collect(),
            preempted_signals,
        })
    });
    let cache = raw.cache.map(|cache| Cache {
        inputs: cache.inputs.into_vec(),
        paths: cache.paths.map(OneOrMany::into_vec).unwrap_or_default(),
    });
    if let Some(cache) = &cache {
        for (i, glob) in cache.inputs.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(glob) {
                error(
                    at.key("cache").key("inputs").index(i),
                    format!("`{glob}`: {e}"),
                );
            }
        }
    }
    for (key, file) in &raw.outputs {
        if file.trim().is_empty() {
            error(
                at.key("outputs").key(key.as_str()),
                "expected the file the output is read from".to_owned(),
            );
        }
    }
    let reports = raw.reports.map_or_else(Reports::default, |r| Reports {
        junit: r.junit.map(OneOrMany::into_vec).unwrap_or_default(),
        sarif: r.sarif.map(OneOrMany::into_vec).unwrap_or_default(),
    });
    Stage {
        action,
        needs: raw.needs,
        condition,
        condition_text: raw.condition,
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
        outputs: raw.outputs,
        cache,
        gpu,
        reports,
        priority: raw.priority,
        matrix: None,
    }
}

/// Every combination of a `matrix`'s values, in key order (none without a matrix).
fn combinations(
    matrix: BTreeMap<String, OneOrMany>,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut all: Vec<BTreeMap<String, String>> = Vec::new();
    for (key, values) in matrix {
        let values = values.into_vec();
        if values.is_empty() {
            return Err(format!("`{key}` has no values"));
        }
        all = if all.is_empty() {
            values
                .iter()
                .map(|v| BTreeMap::from([(key.clone(), v.clone())]))
                .collect()
        } else {
            all.iter()
                .flat_map(|done| {
                    values.iter().map(|v| {
                        let mut next = done.clone();
                        next.insert(key.clone(), v.clone());
                        next
                    })
                })
                .collect()
        };
        if all.len() > MAX_MATRIX {
            return Err(format!(
                "more than {MAX_MATRIX} combinations: split the stage"
            ));
        }
    }
    Ok(all)
}

/// `retry.on`: the kinds `failure`, `error`, `timeout`, or exit codes (not both).
fn retry_on(on: &[String], at: &FieldPath, error: &mut impl FnMut(FieldPath, String)) -> RetryOn {
    let codes: Vec<i32> = on.iter().filter_map(|v| v.parse().ok()).collect();
    if !codes.is_empty() && codes.len() == on.len() {
        return RetryOn::ExitCodes(codes.into_iter().collect());
    }
    let (mut failure, mut failed_error, mut timeout) = (false, false, false);
    for (i, kind) in on.iter().enumerate() {
        match kind.as_str() {
            "failure" => failure = true,
            "error" => failed_error = true,
            "timeout" => timeout = true,
            other => error(
                at.index(i),
                format!("`{other}`: expected failure, error, timeout, or a list of exit codes"),
            ),
        }
    }
    RetryOn::Kinds {
        failure,
        error: failed_error,
        timeout,
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

/// The signals a preemption may be told by, by name.
const SIGNALS: &[(&str, rustix::process::Signal)] = &[
    ("TERM", rustix::process::Signal::TERM),
    ("KILL", rustix::process::Signal::KILL),
    ("INT", rustix::process::Signal::INT),
    ("HUP", rustix::process::Signal::HUP),
    ("QUIT", rustix::process::Signal::QUIT),
    ("USR1", rustix::process::Signal::USR1),
    ("USR2", rustix::process::Signal::USR2),
];

/// A signal's number from its name (`TERM`, `SIGTERM`, any case).
fn signal_number(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, signal)| signal.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Pipeline, String> {
        let document = Document::parse_literal("pipeline.yaml", text).map_err(|d| d.to_string())?;
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
                backoff: Duration::from_secs(2),
                on: RetryOn::default(),
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
            "stages.empty: expected `run` (a shell command) or `uses` (a built-in)",
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
