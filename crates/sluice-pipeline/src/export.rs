//! The pipeline written as another CI system's file — GitHub Actions, GitLab CI, an Argo
//! `Workflow`, or a Kubeflow Pipelines v2 pipeline spec — with the same graph: one job per
//! stage, each running `sluice pipeline run -f FILE --only STAGE` so that a stage's command,
//! retries, allowed exit codes, outputs, cache and condition behave exactly as they do here.
//! What the CI system can say natively is said too: needs (`needs` / `depends` /
//! `dependentTasks`), timeouts, allowed failures, GPU runners or limits, and the conditions
//! that decide whether a job starts at all (`failure()`, `always()`).
//!
//! Every string that is not a plain word is written double-quoted, so an expression such as
//! `${{ github.ref }}` can never break the YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sluice_config::emit::{Yaml, map, s, seq};

use crate::expr::Expr;
use crate::spec::{AllowFailure, Pipeline, Stage};

/// The CI systems a pipeline is exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A GitHub Actions workflow.
    Github,
    /// A GitLab CI `.gitlab-ci.yml`.
    Gitlab,
    /// An Argo Workflows `Workflow`.
    Argo,
    /// A Kubeflow Pipelines v2 pipeline spec (the compiled IR YAML).
    Kubeflow,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "github" => Ok(Target::Github),
            "gitlab" => Ok(Target::Gitlab),
            "argo" => Ok(Target::Argo),
            "kubeflow" => Ok(Target::Kubeflow),
            other => Err(format!(
                "unknown target `{other}`: expected github, gitlab, argo or kubeflow"
            )),
        }
    }
}

/// What an export needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The pipeline file, as the jobs name it (relative to the repository's root).
    pub file: String,
    /// The pipeline's name (the workflow's name, the Argo `generateName`).
    pub name: String,
    /// The container image with `sluice` and the repository, for Argo and Kubeflow.
    pub image: String,
}

/// The pipeline as `target`'s YAML.
pub fn export(pipeline: &Pipeline, target: Target, options: &ExportOptions) -> String {
    let document = match target {
        Target::Github => github(pipeline, options),
        Target::Gitlab => gitlab(pipeline, options),
        Target::Argo => argo(pipeline, options),
        Target::Kubeflow => kubeflow(pipeline, options),
    };
    let mut out =
        String::from("# Written by `sluice pipeline export`: each job runs one stage of ");
    out.push_str(&options.file);
    out.push_str(".\n");
    document.emit(&mut out, 0);
    out
}

/// A name made of `[a-z0-9-]` (Argo, Kubeflow and Kubernetes names), or `[A-Za-z0-9_-]`
/// starting with a letter or `_` (GitHub job ids), unique among `taken`.
fn ident(name: &str, lower: bool, taken: &mut BTreeSet<String>) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            let c = if lower { c.to_ascii_lowercase() } else { c };
            if c.is_ascii_alphanumeric() || c == '-' || (!lower && c == '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        id.insert_str(0, if lower { "s-" } else { "_" });
    }
    let trimmed = id.trim_end_matches('-');
    if !trimmed.is_empty() {
        id = trimmed.to_owned();
    }
    let base = id.clone();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Each stage's GitHub Actions job id: what `toJSON(needs)` names it by in a job that needs
/// it (`SLUICE_NEEDS`).
pub fn github_job_ids(pipeline: &Pipeline) -> BTreeMap<String, String> {
    ids(pipeline, false)
        .into_iter()
        .map(|(name, _, _, id)| (name.to_owned(), id))
        .collect()
}

/// Every stage (`finally` stages last) with its id in the target.
fn ids(pipeline: &Pipeline, lower: bool) -> Vec<(&str, &Stage, bool, String)> {
    let mut taken = BTreeSet::new();
    pipeline
        .order()
        .into_iter()
        .map(|name| {
            let (stage, finally) = match pipeline.stages.get(name) {
                Some(stage) => (stage, false),
                None => (&pipeline.finally[name], true),
            };
            (name, stage, finally, ident(name, lower, &mut taken))
        })
        .collect()
}

fn command(options: &ExportOptions, name: &str) -> Vec<String> {
    vec![
        "sluice".into(),
        "pipeline".into(),
        "run".into(),
        "-f".into(),
        options.file.clone(),
        "--only".into(),
        name.into(),
    ]
}

fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| crate::expr::shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest a stage's job may take: every attempt at its timeout plus the waits between.
fn job_limit(stage: &Stage) -> Option<Duration> {
    let timeout = stage.timeout?;
    let attempts = stage.retry.limit + 1;
    let mut waits = Duration::ZERO;
    let mut backoff = stage.retry.backoff;
    for _ in 0..stage.retry.limit {
        waits = waits.saturating_add(backoff);
        backoff = backoff.saturating_mul(2);
    }
    Some(timeout.saturating_mul(attempts).saturating_add(waits))
}

fn minutes(limit: Duration) -> i64 {
    i64::try_from(limit.as_secs().div_ceil(60).max(1)).unwrap_or(i64::MAX)
}

/// The condition text without `${{ }}`.
fn condition(stage: &Stage) -> Option<String> {
    let text = stage.condition_text.as_deref()?.trim();
    let inner = text
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
        .unwrap_or(text);
    Some(inner.trim().to_owned())
}

/// The outputs of each stage that other stages read (`needs.S.outputs.K`), and those it
/// declares.
fn read_outputs(pipeline: &Pipeline) -> BTreeMap<String, BTreeSet<String>> {
    let mut outputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, stage) in pipeline.stages.iter().chain(&pipeline.finally) {
        outputs
            .entry(name.clone())
            .or_default()
            .extend(stage.outputs.keys().cloned());
        for expr in stage.exprs() {
            expr.paths(&mut |path| {
                if let [root, stage, kind, key] = path
                    && root == "needs"
                    && kind == "outputs"
                {
                    outputs
                        .entry(stage.clone())
                        .or_default()
                        .insert(key.clone());
                }
            });
        }
    }
    outputs
}

fn github(pipeline: &Pipeline, options: &ExportOptions) -> Yaml {
    let stages = ids(pipeline, false);
    let id_of: BTreeMap<&str, &str> = stages
        .iter()
        .map(|(n, _, _, id)| (*n, id.as_str()))
        .collect();
    let outputs = read_outputs(pipeline);
    let main_ids: Vec<String> = stages
        .iter()
        .filter(|(_, _, f, _)| !f)
        .map(|(_, _, _, id)| id.clone())
        .collect();
    let mut jobs = Vec::new();
    for (name, stage, finally, id) in &stages {
        let mut job: Vec<(&str, Yaml)> = vec![("name", s(*name))];
        let mut needs: Vec<String> = stage
            .needs
            .iter()
            .map(|n| id_of[n.as_str()].to_owned())
            .collect();
        if *finally {
            needs.splice(0..0, main_ids.iter().cloned());
        }
        if !needs.is_empty() {
            job.push(("needs", seq(needs)));
        }
        let when = match (condition(stage), finally) {
            (None, false) => None,
            (None, true) => Some("always()".to_owned()),
            (Some(c), true)
                if !stage
                    .condition
                    .as_ref()
                    .is_some_and(Expr::has_status_function) =>
            {
                Some(format!("always() && ({c})"))
            }
            (Some(c), _) => Some(c),
        };
        if let Some(when) = when {
            job.push(("if", s(when)));
        }
        job.push((
            "runs-on",
            match &stage.gpu {
                None => s("ubuntu-latest"),
                Some(gpu) => {
                    let mut labels = vec!["self-hosted".to_owned(), "linux".into(), "gpu".into()];
                    if let Some(kind) = &gpu.gpu_type {
                        labels.push(format!("gpu-{}", kind.to_lowercase()));
                    }
                    seq(labels)
                }
            },
        ));
        if let Some(limit) = job_limit(stage) {
            job.push(("timeout-minutes", Yaml::Int(minutes(limit))));
        }
        if stage.allow_failure == AllowFailure::Any {
            job.push(("continue-on-error", Yaml::Bool(true)));
        }
        let mut env: Vec<(String, Yaml)> = stage
            .env
            .iter()
            .map(|(k, v)| (k.clone(), s(v.clone())))
            .collect();
        if !needs_of(stage, *finally, &main_ids).is_empty() {
            env.push(("SLUICE_NEEDS".into(), s("${{ toJSON(needs) }}")));
        }
        if *finally {
            env.push((
                "SLUICE_PIPELINE_STATUS".into(),
                s("${{ (contains(needs.*.result, 'failure') || contains(needs.*.result, 'cancelled')) && 'failure' || 'success' }}"),
            ));
        }
        if !env.is_empty() {
            job.push(("env", Yaml::Map(env)));
        }
        if let Some(keys) = outputs.get(*name).filter(|k| !k.is_empty()) {
            job.push((
                "outputs",
                Yaml::Map(
                    keys.iter()
                        .map(|k| (k.clone(), s(format!("${{{{ steps.stage.outputs.{k} }}}}"))))
                        .collect(),
                ),
            ));
        }
        let mut steps = vec![map(vec![("uses", s("actions/checkout@v4"))])];
        if let Some(cache) = &stage.cache {
            let globs = cache
                .inputs
                .iter()
                .map(|g| format!("'{}'", g.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            steps.push(map(vec![
                ("name", s("Restore the stage cache")),
                ("uses", s("actions/cache@v4")),
                (
                    "with",
                    map(vec![
                        ("path", s(".sluice/cache")),
                        (
                            "key",
                            s(format!("sluice-{id}-${{{{ hashFiles({globs}) }}}}")),
                        ),
                        ("restore-keys", s(format!("sluice-{id}-"))),
                    ]),
                ),
            ]));
        }
        steps.push(map(vec![
            ("id", s("stage")),
            ("run", s(shell_line(&command(options, name)))),
        ]));
        job.push(("steps", Yaml::Seq(steps)));
        jobs.push((id.clone(), map(job)));
    }
    map(vec![
        ("name", s(options.name.clone())),
        (
            "on",
            map(vec![
                ("push", map(vec![])),
                ("pull_request", map(vec![])),
                ("workflow_dispatch", map(vec![])),
            ]),
        ),
        ("permissions", map(vec![("contents", s("read"))])),
        ("jobs", Yaml::Map(jobs)),
    ])
}

fn needs_of(stage: &Stage, finally: bool, main: &[String]) -> Vec<String> {
    let mut needs = stage.needs.clone();
    if finally {
        needs.extend(main.iter().cloned());
    }
    needs
}

fn gitlab_duration(limit: Duration) -> String {
    format!("{}m", minutes(limit))
}

fn gitlab(pipeline: &Pipeline, options: &ExportOptions) -> Yaml {
    let stages = ids(pipeline, false);
    let id_of: BTreeMap<&str, &str> = stages
        .iter()
        .map(|(n, _, _, id)| (*n, id.as_str()))
        .collect();
    let mut document: Vec<(String, Yaml)> = vec![
        ("stages".into(), seq(["sluice"])),
        (
            "variables".into(),
            map(vec![("SLUICE_PIPELINE_FILE", s(options.file.clone()))]),
        ),
    ];
    for (name, stage, finally, id) in &stages {
        let mut job: Vec<(&str, Yaml)> =
            vec![("stage", s(if *finally { ".post" } else { "sluice" }))];
        let needs: Vec<&str> = stage.needs.iter().map(|n| id_of[n.as_str()]).collect();
        if !*finally || !needs.is_empty() {
            job.push(("needs", seq(needs)));
        }
        job.push(("script", seq([shell_line(&command(options, name))])));
        let by_status = stage
            .condition
            .as_ref()
            .is_some_and(Expr::has_status_function);
        let text = condition(stage).unwrap_or_default();
        if !*finally && by_status && text.contains("always()") {
            job.push(("when", s("always")));
        } else if !*finally && by_status && text.contains("failure()") {
            job.push(("when", s("on_failure")));
        }
        if let Some(limit) = job_limit(stage) {
            job.push(("timeout", s(gitlab_duration(limit))));
        }
        match &stage.allow_failure {
            AllowFailure::No => {}
            AllowFailure::Any => job.push(("allow_failure", Yaml::Bool(true))),
            AllowFailure::ExitCodes(codes) => job.push((
                "allow_failure",
                map(vec![(
                    "exit_codes",
                    Yaml::Seq(codes.iter().map(|c| Yaml::Int(i64::from(*c))).collect()),
                )]),
            )),
        }
        if stage.retry.limit > 0 {
            // The command's own retries are sluice's; GitLab retries what sluice cannot see.
            job.push((
                "retry",
                map(vec![
                    ("max", Yaml::Int(i64::from(stage.retry.limit.min(2)))),
                    (
                        "when",
                        seq(["runner_system_failure", "stuck_or_timeout_failure"]),
                    ),
                ]),
            ));
        }
        if let Some(gpu) = &stage.gpu {
            let mut tags = vec!["gpu".to_owned()];
            if let Some(kind) = &gpu.gpu_type {
                tags.push(format!("gpu-{}", kind.to_lowercase()));
            }
            job.push(("tags", seq(tags)));
        }
        if stage.cache.is_some() {
            job.push((
                "cache",
                map(vec![
                    ("key", s(format!("sluice-{id}"))),
                    ("paths", seq([".sluice/cache/"])),
                ]),
            ));
        }
        let variables: Vec<(String, Yaml)> = stage
            .env
            .iter()
            .map(|(k, v)| (k.clone(), s(v.clone())))
            .collect();
        if !*finally {
            if !variables.is_empty() {
                job.push(("variables", Yaml::Map(variables)));
            }
            document.push((id.clone(), map(job)));
            continue;
        }
        // GitLab tells a job no pipeline status: a `finally` stage is two jobs, one that runs
        // when every earlier job passed and one when one failed, each knowing which it is.
        for (suffix, when, status) in [
            ("", "on_success", "success"),
            ("-after-failure", "on_failure", "failure"),
        ] {
            let mut variables = variables.clone();
            variables.push(("SLUICE_PIPELINE_STATUS".to_owned(), s(status)));
            let mut one = job.clone();
            one.push(("when", s(when)));
            one.push(("variables", Yaml::Map(variables)));
            document.push((format!("{id}{suffix}"), map(one)));
        }
    }
    Yaml::Map(document)
}

fn container(options: &ExportOptions, name: &str, stage: &Stage) -> Yaml {
    let mut container = vec![
        ("name", s("main")),
        ("image", s(options.image.clone())),
        ("command", seq(command(options, name)[..1].to_vec())),
        ("args", seq(command(options, name)[1..].to_vec())),
    ];
    if !stage.env.is_empty() {
        container.push((
            "env",
            Yaml::Seq(
                stage
                    .env
                    .iter()
                    .map(|(k, v)| map(vec![("name", s(k.clone())), ("value", s(v.clone()))]))
                    .collect(),
            ),
        ));
    }
    if let Some(gpu) = &stage.gpu {
        container.push((
            "resources",
            map(vec![(
                "limits",
                map(vec![("nvidia.com/gpu", s(gpu.count.to_string()))]),
            )]),
        ));
    }
    map(container)
}

fn argo(pipeline: &Pipeline, options: &ExportOptions) -> Yaml {
    let stages = ids(pipeline, true);
    let id_of: BTreeMap<&str, &str> = stages
        .iter()
        .map(|(n, _, _, id)| (*n, id.as_str()))
        .collect();
    let dag = |finally: bool| -> Yaml {
        let tasks = stages
            .iter()
            .filter(|(_, _, f, _)| *f == finally)
            .map(|(_, stage, _, id)| {
                let mut task = vec![("name", s(id.clone())), ("template", s(id.clone()))];
                if !stage.needs.is_empty() {
                    let depends = stage
                        .needs
                        .iter()
                        .map(|n| id_of[n.as_str()])
                        .collect::<Vec<_>>()
                        .join(" && ");
                    task.push(("depends", s(depends)));
                }
                if stage.allow_failure == AllowFailure::Any {
                    task.push(("continueOn", map(vec![("failed", Yaml::Bool(true))])));
                }
                map(task)
            })
            .collect();
        map(vec![("tasks", Yaml::Seq(tasks))])
    };
    let mut templates = vec![map(vec![("name", s("pipeline")), ("dag", dag(false))])];
    let has_finally = !pipeline.finally.is_empty();
    if has_finally {
        templates.push(map(vec![("name", s("finally")), ("dag", dag(true))]));
    }
    for (name, stage, finally, id) in &stages {
        let mut template = vec![("name", s(id.clone()))];
        if let Some(limit) = job_limit(stage) {
            template.push((
                "activeDeadlineSeconds",
                Yaml::Int(i64::try_from(limit.as_secs().max(1)).unwrap_or(i64::MAX)),
            ));
        }
        if stage.retry.limit > 0 {
            template.push((
                "retryStrategy",
                map(vec![
                    ("limit", s(stage.retry.limit.to_string())),
                    ("retryPolicy", s("OnError")),
                ]),
            ));
        }
        if let Some(kind) = stage.gpu.as_ref().and_then(|g| g.gpu_type.as_ref()) {
            template.push((
                "nodeSelector",
                map(vec![("nvidia.com/gpu.product", s(kind.clone()))]),
            ));
        }
        let mut container = container(options, name, stage);
        if *finally && let Yaml::Map(entries) = &mut container {
            entries.push((
                "env".into(),
                Yaml::Seq(vec![map(vec![
                    ("name", s("SLUICE_PIPELINE_STATUS")),
                    ("value", s("{{workflow.status}}")),
                ])]),
            ));
        }
        template.push(("container", container));
        templates.push(map(template));
    }
    let mut spec = vec![("entrypoint", s("pipeline"))];
    if has_finally {
        spec.push(("onExit", s("finally")));
    }
    spec.push(("templates", Yaml::Seq(templates)));
    map(vec![
        ("apiVersion", s("argoproj.io/v1alpha1")),
        ("kind", s("Workflow")),
        (
            "metadata",
            map(vec![(
                "generateName",
                s(format!(
                    "{}-",
                    ident(&options.name, true, &mut BTreeSet::new())
                )),
            )]),
        ),
        ("spec", map(spec)),
    ])
}

fn kubeflow(pipeline: &Pipeline, options: &ExportOptions) -> Yaml {
    let stages = ids(pipeline, true);
    let id_of: BTreeMap<&str, &str> = stages
        .iter()
        .map(|(n, _, _, id)| (*n, id.as_str()))
        .collect();
    let main_ids: Vec<String> = stages
        .iter()
        .filter(|(_, _, f, _)| !f)
        .map(|(_, _, _, id)| id.clone())
        .collect();
    let mut components = Vec::new();
    let mut executors = Vec::new();
    let mut tasks = Vec::new();
    for (name, stage, finally, id) in &stages {
        components.push((
            format!("comp-{id}"),
            map(vec![("executorLabel", s(format!("exec-{id}")))]),
        ));
        let mut container = vec![
            ("image", s(options.image.clone())),
            ("command", seq(command(options, name)[..1].to_vec())),
            ("args", seq(command(options, name)[1..].to_vec())),
        ];
        let mut env: Vec<Yaml> = stage
            .env
            .iter()
            .map(|(k, v)| map(vec![("name", s(k.clone())), ("value", s(v.clone()))]))
            .collect();
        if *finally {
            env.push(map(vec![
                ("name", s("SLUICE_PIPELINE_STATUS")),
                ("value", s("success")),
            ]));
        }
        if !env.is_empty() {
            container.push(("env", Yaml::Seq(env)));
        }
        if let Some(gpu) = &stage.gpu {
            container.push((
                "resources",
                map(vec![(
                    "accelerator",
                    map(vec![
                        ("resourceType", s("nvidia.com/gpu")),
                        ("resourceCount", s(gpu.count.to_string())),
                    ]),
                )]),
            ));
        }
        executors.push((
            format!("exec-{id}"),
            map(vec![("container", map(container))]),
        ));
        let mut dependents: Vec<String> = stage
            .needs
            .iter()
            .map(|n| id_of[n.as_str()].to_owned())
            .collect();
        if *finally {
            dependents.splice(0..0, main_ids.iter().cloned());
        }
        let mut task = vec![
            ("taskInfo", map(vec![("name", s(*name))])),
            ("componentRef", map(vec![("name", s(format!("comp-{id}")))])),
        ];
        if !dependents.is_empty() {
            task.push(("dependentTasks", seq(dependents)));
        }
        if *finally {
            // Kubeflow's exit handler form: run once the tasks before it ended, however.
            task.push((
                "triggerPolicy",
                map(vec![("strategy", s("ALL_UPSTREAM_TASKS_COMPLETED"))]),
            ));
        }
        if stage.retry.limit > 0 {
            task.push((
                "retryPolicy",
                map(vec![(
                    "maxRetryCount",
                    Yaml::Int(i64::from(stage.retry.limit)),
                )]),
            ));
        }
        task.push((
            "cachingOptions",
            map(vec![("enableCache", Yaml::Bool(false))]),
        ));
        tasks.push((id.clone(), map(task)));
    }
    map(vec![
        ("components", Yaml::Map(components)),
        (
            "deploymentSpec",
            map(vec![("executors", Yaml::Map(executors))]),
        ),
        (
            "pipelineInfo",
            map(vec![(
                "name",
                s(ident(&options.name, true, &mut BTreeSet::new())),
            )]),
        ),
        (
            "root",
            map(vec![("dag", map(vec![("tasks", Yaml::Map(tasks))]))]),
        ),
        ("schemaVersion", s("2.1.0")),
        ("sdkVersion", s("kfp-2.17.3")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_written_in_block_style_with_risky_strings_quoted() {
        let value = map(vec![
            ("on", map(vec![("push", map(vec![]))])),
            ("if", s("${{ github.ref == 'refs/heads/main' }}")),
            ("count", Yaml::Int(3)),
            ("plain", s("ubuntu-latest")),
            ("num", s("2")),
            (
                "steps",
                Yaml::Seq(vec![
                    map(vec![
                        ("uses", s("actions/checkout@v4")),
                        ("with", map(vec![("a", s("b"))])),
                    ]),
                    s("x: y"),
                ]),
            ),
        ]);
        let mut out = String::new();
        value.emit(&mut out, 0);
        assert_eq!(
            out,
            "\"on\":\n  push: {}\nif: \"${{ github.ref == 'refs/heads/main' }}\"\ncount: 3\nplain: ubuntu-latest\nnum: \"2\"\nsteps:\n  - uses: \"actions/checkout@v4\"\n    with:\n      a: b\n  - \"x: y\"\n"
        );
    }

    #[test]
    fn names_become_valid_ids() {
        let mut taken = BTreeSet::new();
        assert_eq!(ident("Eval Suite", true, &mut taken), "eval-suite");
        assert_eq!(ident("eval_suite", true, &mut taken), "eval-suite-2");
        assert_eq!(ident("1st", false, &mut taken), "_1st");
        assert_eq!(ident("1st", true, &mut taken), "s-1st");
    }
}
