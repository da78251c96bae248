//! Eval suite files in promptfoo's vocabulary, compiled into a validated [`Suite`].
//!
//! Shorthand forms are rewritten on the YAML tree first (a provider id string becomes
//! `{id: …}`, a prompt string `{raw: …}`, a `file://` test entry `{__file: …}`), so every
//! error keeps its file, line and column. promptfoo features this build does not implement
//! are reported by name rather than ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sluice_config::{
    Diagnostic, Diagnostics, Document, EnvSource, FieldPath, Location, did_you_mean,
};
use sluice_core::EndpointSpec;

use crate::assertion::{Assertion, AssertionSet, Check, Kind, UNSUPPORTED_TYPES, supported_types};
use crate::template::{self, Vars};

/// Everything wrong with a suite, grouped by file (the suite, and any test files it loads).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct SuiteError(pub Vec<Diagnostics>);

/// A compiled suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// `description`.
    pub description: String,
    /// Providers, in order.
    pub providers: Vec<Provider>,
    /// Prompt templates, in order.
    pub prompts: Vec<Prompt>,
    /// Test cases after `defaultTest` merging and array-var expansion.
    pub tests: Vec<TestCase>,
    /// `evaluateOptions`.
    pub options: EvaluateOptions,
    /// `outputPath`: reports written when `-o` is not given.
    pub output_paths: Vec<PathBuf>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// Graders of model-graded assertions (`Check::grader` indexes this).
    pub graders: Vec<Provider>,
}

impl Suite {
    /// The named metrics its assertions report to.
    pub fn metric_names(&self) -> std::collections::BTreeSet<String> {
        fn walk(assertions: &[Assertion], names: &mut std::collections::BTreeSet<String>) {
            for assertion in assertions {
                match assertion {
                    Assertion::Check(check) => names.extend(check.metric.clone()),
                    Assertion::Set(set) => {
                        names.extend(set.metric.clone());
                        walk(&set.assertions, names);
                    }
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for test in &self.tests {
            walk(&test.assertions, &mut names);
            walk(&test.default_assertions, &mut names);
        }
        names
    }
}

/// Which endpoint a provider calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
    /// `/v1/embeddings` (graders of `similar` only).
    Embedding,
    /// Any HTTP API (the `http` provider).
    Http,
}

/// A compiled provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The id as written, e.g. `openai:chat:gpt-4o-mini`.
    pub id: String,
    /// Display label (the id when none is given).
    pub label: String,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Where it is reached: base URL including `/v1` (for the `http` provider, its URL), the
    /// model name sent upstream, the environment variable holding the key.
    pub target: EndpointSpec,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Output token cap.
    pub max_tokens: Option<u64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// The `http` provider's request and response handling.
    pub http: Option<crate::http_provider::HttpConfig>,
    /// USD per input and per output token, when configured.
    pub prices: Option<(f64, f64)>,
}

/// A compiled prompt template.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Display label: the `label`, else the file name, else the text's start.
    pub label: String,
    /// The template text. When it renders to a JSON list of messages it is sent as a chat.
    pub template: String,
}

/// One test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Position in the expanded test list.
    pub index: usize,
    /// `description`, else the vars.
    pub description: String,
    /// Variables.
    pub vars: Vars,
    /// The test's own assertions.
    pub assertions: Vec<Assertion>,
    /// `defaultTest`'s assertions, shared by every test.
    pub default_assertions: std::sync::Arc<[Assertion]>,
    /// Pass when the weighted score reaches this, instead of requiring every assertion.
    pub threshold: Option<f64>,
    /// A fixed output to grade instead of calling the provider (`providerOutput`).
    pub provider_output: Option<String>,
    /// Where the test was defined, for messages.
    pub origin: String,
    /// `metadata`.
    pub metadata: BTreeMap<String, Value>,
}

impl TestCase {
    /// Every assertion of the test: its own, then `defaultTest`'s.
    pub fn all_assertions(&self) -> impl Iterator<Item = &Assertion> {
        self.assertions.iter().chain(self.default_assertions.iter())
    }
}

/// `evaluateOptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// Requests in flight at once (promptfoo's default is 4).
    pub max_concurrency: usize,
    /// Times each test × prompt × provider runs.
    pub repeat: usize,
    /// Per-request timeout; 0 for none.
    pub timeout_ms: u64,
    /// Use the response cache (promptfoo's default is on).
    pub cache: bool,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        Self {
            max_concurrency: 4,
            repeat: 1,
            timeout_ms: 0,
            cache: true,
        }
    }
}

pub(crate) mod compile;
mod desugar;
mod raw;
mod test_files;

use compile::*;
use desugar::*;
use raw::*;
use test_files::*;

/// Reads and compiles a suite file; `env` supplies `${VAR}` values.
pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Suite, SuiteError> {
    load_with_grader(path, env, None)
}

/// Like [`load`], with a default grader provider id for model-graded assertions that name
/// none (the command line's `--grader`).
pub fn load_with_grader(
    path: &Path,
    env: &dyn EnvSource,
    grader: Option<&str>,
) -> Result<Suite, SuiteError> {
    let document = Document::read(path, env).map_err(|d| SuiteError(vec![d]))?;
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    compile(document, &base_dir, env, grader)
}

/// Compiles a suite held in memory; `file://` references resolve against `base_dir`.
pub fn parse(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn EnvSource,
) -> Result<Suite, SuiteError> {
    let document = Document::parse(name, text, env).map_err(|d| SuiteError(vec![d]))?;
    compile(document, base_dir, env, None)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sluice_config::MapEnv;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env() -> MapEnv {
        MapEnv(HashMap::new())
    }

    #[test]
    fn a_promptfoo_style_suite_compiles() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "prompt.txt", "Q: {{question}}");
        write(
            dir.path(),
            "tests.csv",
            "question,__expected,__description\nWhat is 2+2?,contains:4,math\nCapital of France?,icontains(0.5):paris,geo\n",
        );
        write(
            dir.path(),
            "more.jsonl",
            "{\"vars\": {\"question\": \"hi\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"hi\"}]}\n",
        );
        let suite = write(
            dir.path(),
            "promptfooconfig.yaml",
            "description: demo\nproviders:\n  - openai:chat:stable\n  - id: openai:completion:stable\n    label: completion\n    config: {apiBaseUrl: 'http://127.0.0.1:9/v1', temperature: 0}\nprompts:\n  - file://prompt.txt\n  - 'Answer: {{question}}'\ntests:\n  - file://tests.csv\n  - file://more.jsonl\n  - vars: {question: [a, b]}\n    assert:\n      - type: not-contains\n        value: zebra\ndefaultTest:\n  assert:\n    - {type: latency, threshold: 5000}\nevaluateOptions: {maxConcurrency: 8, repeat: 2}\n",
        );
        let suite = load(&suite, &env()).unwrap();
        assert_eq!(suite.providers.len(), 2);
        assert_eq!(suite.providers[1].endpoint, Endpoint::Completion);
        assert_eq!(suite.providers[1].target.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(suite.prompts[0].label, "prompt.txt");
        // 2 CSV rows + 1 JSONL line + 1 test expanded into 2.
        assert_eq!(suite.tests.len(), 5);
        assert_eq!(suite.tests[0].description, "math");
        assert_eq!(
            suite.tests[0].all_assertions().count(),
            2,
            "its own plus defaultTest's"
        );
        assert_eq!(suite.tests[4].vars["question"], Value::String("b".into()));
        assert_eq!(
            suite.options,
            EvaluateOptions {
                max_concurrency: 8,
                repeat: 2,
                timeout_ms: 0,
                cache: true
            }
        );
    }

    #[test]
    fn test_and_prompt_globs_load_every_matching_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "prompts/b.txt", "B {{q}}");
        write(dir.path(), "prompts/a.txt", "A {{q}}");
        write(dir.path(), "cases/2.csv", "q\ntwo\n");
        write(
            dir.path(),
            "cases/1.jsonl",
            "{\"vars\": {\"q\": \"one\"}}\n",
        );
        write(dir.path(), "cases/deeper/3.yaml", "- vars: {q: three}\n");
        let suite = write(
            dir.path(),
            "s.yaml",
            "providers: [openai:chat:m]\nprompts: [file://prompts/*.txt]\ntests: ['file://cases/**/*.{csv,jsonl,yaml}']\n",
        );
        let suite = load(&suite, &env()).unwrap();
        let labels: Vec<&str> = suite.prompts.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["prompts/a.txt", "prompts/b.txt"]);
        let qs: Vec<&Value> = suite.tests.iter().map(|t| &t.vars["q"]).collect();
        assert_eq!(qs, ["one", "two", "three"]);

        let none = write(
            dir.path(),
            "none.yaml",
            "providers: [openai:chat:m]\nprompts: [hi]\ntests: [file://cases/*.xlsx]\n",
        );
        let error = load(&none, &env()).unwrap_err().to_string();
        assert!(
            error.contains("tests[0]: `cases/*.xlsx` matches no test files"),
            "{error}"
        );
    }

    #[test]
    fn problems_across_files_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.csv",
            "question,__expected\nok,contains:x\ntoo,many,fields\n",
        );
        let suite = write(
            dir.path(),
            "suite.yaml",
            "providers: [openai:chat:m, anthropic:messages:claude]\nprompts: ['{{question}}']\ntests:\n  - file://bad.csv\n  - vars: {question: q}\n    assert:\n      - {type: contians, value: x}\n      - {type: ruby, value: 'output.length > 3'}\n      - {type: regex, value: '('}\n      - {type: equals}\n    options: {transform: output.trim()}\nscenarios: []\n",
        );
        let error = load(&suite, &env()).unwrap_err().to_string();
        for expected in [
            "suite.yaml:1:28: providers[1].id: unsupported provider `anthropic:messages:claude`",
            "tests[1].assert[0].type: unknown assertion type `contians`, did you mean `contains`?",
            "tests[1].assert[1].type: `ruby` assertions are not supported by this build yet",
            "tests[1].assert[2].value: invalid regular expression",
            "tests[1].assert[3].value: `equals` needs a `value`",
            "tests[1].options.transform: `options.transform` is a promptfoo feature this build does not support",
            "scenarios: `scenarios` is a promptfoo feature",
            "bad.csv:3:1: row has 3 fields, expected 2",
        ] {
            assert!(
                error.contains(expected),
                "missing {expected:?} in:\n{error}"
            );
        }
    }

    #[test]
    fn graders_resolve_from_the_assertion_the_test_defaults_and_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "providers: [openai:chat:m]\nprompts: [hi]\ndefaultTest:\n  options:\n    provider: {id: openai:chat:judge, config: {apiBaseUrl: 'http://127.0.0.1:9/v1'}}\ntests:\n  - assert:\n      - {type: llm-rubric, value: polite}\n      - {type: llm-rubric, value: short, provider: openai:chat:strict}\n      - {type: similar, value: hello, provider: openai:embedding:embed}\n";
        let suite = write(dir.path(), "s.yaml", text);
        let suite = load(&suite, &env()).unwrap();
        let graders: Vec<&str> = suite.graders.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            graders,
            vec![
                "openai:chat:judge",
                "openai:chat:strict",
                "openai:embedding:embed"
            ]
        );
        assert_eq!(suite.graders[0].target.base_url, "http://127.0.0.1:9/v1");

        let bare = write(
            dir.path(),
            "bare.yaml",
            "providers: [openai:chat:m]\nprompts: [hi]\ntests:\n  - assert: [{type: llm-rubric, value: polite}, {type: similar, value: hi}]\n",
        );
        let error = load(&bare, &env()).unwrap_err().to_string();
        assert!(
            error.contains("tests[0].assert[0]: `llm-rubric` needs a grader, a chat provider"),
            "{error}"
        );
        assert!(
            error.contains("tests[0].assert[1]: `similar` needs a grader, an embedding provider"),
            "{error}"
        );
        let with_cli = load_with_grader(&bare, &env(), Some("openai:chat:cli-judge"))
            .unwrap_err()
            .to_string();
        assert!(
            !with_cli.contains("`llm-rubric` needs a grader"),
            "{with_cli}"
        );
        assert!(with_cli.contains("`similar` needs a grader"), "{with_cli}");

        let split = write(
            dir.path(),
            "split.yaml",
            "providers: [openai:chat:m]\nprompts: [hi]\ntests:\n  - assert:\n      - {type: answer-relevance, provider: {text: openai:chat:asker, embedding: openai:embedding:embed}}\n      - {type: answer-relevance, provider: {text: openai:chat:asker}}\n      - {type: context-faithfulness, provider: {label: nothing}}\n",
        );
        let error = load(&split, &env()).unwrap_err().to_string();
        assert!(
            !error.contains("tests[0].assert[0]"),
            "text and embedding graders both resolve: {error}"
        );
        assert!(
            error.contains(
                "tests[0].assert[1]: `answer-relevance` needs a grader, an embedding provider"
            ),
            "{error}"
        );
        assert!(
            error.contains("tests[0].assert[2].provider: expected a provider `id`, or `text` and/or `embedding` providers"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_var_and_a_missing_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let suite = write(
            dir.path(),
            "s.yaml",
            "providers: [openai:chat:m]\nprompts: ['{{question}} {{context}}']\ntests:\n  - vars: {question: q}\n  - file://nope.jsonl\n",
        );
        let error = load(&suite, &env()).unwrap_err().to_string();
        assert!(error.contains("uses `{{context}}` but test 0"), "{error}");
        assert!(
            error.contains("cannot read file") && error.contains("nope.jsonl"),
            "{error}"
        );
    }

    #[test]
    fn api_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let suite = write(
            dir.path(),
            "s.yaml",
            "providers:\n  - id: openai:chat:m\n    config: {apiKey: sk-123}\nprompts: [hi]\n",
        );
        let error = load(&suite, &env()).unwrap_err().to_string();
        assert!(
            error.contains("providers[0].config.apiKey: API keys are not accepted"),
            "{error}"
        );
        assert!(!error.contains("sk-123"));
    }

    #[test]
    fn csv_shorthand() {
        let parse = |t: &str| shorthand_assertion(t).unwrap();
        let a = parse("contains:Paris");
        assert_eq!(
            (a.kind.as_str(), a.value),
            ("contains", Some(Value::String("Paris".into())))
        );
        let a = parse("levenshtein(3):kitten");
        assert_eq!((a.kind.as_str(), a.threshold), ("levenshtein", Some(3.0)));
        assert_eq!(parse("not-icontains:x").kind, "not-icontains");
        assert_eq!(parse("Paris: the city").kind, "equals");
        let rubric = parse("grade: is polite");
        assert_eq!(
            (rubric.kind.as_str(), rubric.value),
            ("llm-rubric", Some(Value::String("is polite".into())))
        );
        assert_eq!(parse("fn:output.length > 3").kind, "javascript");
    }
}
