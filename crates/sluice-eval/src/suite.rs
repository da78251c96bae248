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
    /// Model name sent upstream.
    pub model: String,
    /// Base URL including `/v1`.
    pub base_url: String,
    /// Environment variable holding the key, if any.
    pub api_key_env: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSuite {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    prompts: Vec<RawPrompt>,
    #[serde(default)]
    tests: Vec<RawTest>,
    #[serde(default)]
    default_test: Option<RawTest>,
    #[serde(default)]
    evaluate_options: Option<RawEvaluateOptions>,
    #[serde(default)]
    output_path: Option<OneOrMany>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    // promptfoo features this build does not implement: named in errors.
    #[serde(default)]
    scenarios: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    extensions: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    derived_metrics: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    assertion_templates: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    nunjucks_filters: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    env: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    redteam: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    command_line_options: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    sharing: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
struct RawProvider {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    config: Option<RawProviderConfig>,
}

/// The grader of model-graded assertions: one provider, or a `text` (chat) and an `embedding`
/// provider for checks that need both.
#[derive(Debug, Clone, Deserialize)]
struct RawGrader {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    config: Option<RawProviderConfig>,
    #[serde(default)]
    text: Option<RawProvider>,
    #[serde(default)]
    embedding: Option<RawProvider>,
}

impl RawGrader {
    /// The providers it names, its own first.
    fn providers(&self) -> Vec<RawProvider> {
        let own = self.id.clone().map(|id| RawProvider {
            id,
            label: self.label.clone(),
            config: self.config.clone(),
        });
        [own, self.text.clone(), self.embedding.clone()]
            .into_iter()
            .flatten()
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProviderConfig {
    #[serde(default)]
    api_base_url: Option<String>,
    #[serde(default)]
    api_key_envar: Option<String>,
    #[serde(default)]
    api_key: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default, rename = "max_tokens")]
    max_tokens: Option<u64>,
    #[serde(default, rename = "max_completion_tokens")]
    max_completion_tokens: Option<u64>,
    #[serde(default, rename = "top_p")]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<OneOrManyText>,
    /// USD per token, input and output alike.
    #[serde(default)]
    cost: Option<f64>,
    /// USD per input token.
    #[serde(default)]
    input_cost: Option<f64>,
    /// USD per output token.
    #[serde(default)]
    output_cost: Option<f64>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    transform_response: Option<String>,
    #[serde(default)]
    validate_status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrManyText {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct RawPrompt {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTest {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    #[serde(default)]
    assert: Vec<RawAssertion>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
    #[serde(default)]
    provider_output: Option<String>,
    /// A `file://` entry in the `tests` list (the shorthand rewritten).
    #[serde(default, rename = "__file")]
    file: Option<String>,
    #[serde(default)]
    options: Option<RawTestOptions>,
    #[serde(default)]
    provider: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    providers: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    prompts: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    assert_scoring_function: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTestOptions {
    /// The grader for model-graded assertions.
    #[serde(default)]
    provider: Option<Box<RawGrader>>,
    #[serde(default)]
    transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    transform_vars: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    prefix: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    suffix: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rubric_prompt: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    run_serially: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    store_output_as: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    disable_default_asserts: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    disable_var_expansion: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAssertion {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    assert: Option<Vec<RawAssertion>>,
    #[serde(default)]
    provider: Option<Box<RawGrader>>,
    #[serde(default)]
    transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rubric_prompt: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    context_transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvaluateOptions {
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default)]
    repeat: Option<usize>,
    #[serde(default)]
    cache: Option<bool>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    delay: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    max_eval_time_ms: Option<serde::de::IgnoredAny>,
}

/// Rewrites shorthand entries into their long form on the tree.
fn desugar(document: &mut Document) {
    let root = document.root_mut();
    if let Some(providers) = root.get_mut("providers") {
        providers.wrap_in_sequence();
        providers
            .items_mut()
            .iter_mut()
            .for_each(|p| p.wrap_scalar("id"));
    }
    if let Some(prompts) = root.get_mut("prompts") {
        prompts.wrap_in_sequence();
        prompts
            .items_mut()
            .iter_mut()
            .for_each(|p| p.wrap_scalar("raw"));
    }
    if let Some(tests) = root.get_mut("tests") {
        tests.wrap_in_sequence();
        tests.items_mut().iter_mut().for_each(|t| {
            t.wrap_scalar("__file");
            desugar_test(t);
        });
    }
    if let Some(default_test) = root.get_mut("defaultTest") {
        desugar_test(default_test);
    }
}

/// Grader providers given as an id string become `{id: …}` in a test's options and asserts.
fn desugar_test(test: &mut sluice_config::Node) {
    if let Some(provider) = test.get_mut("options").and_then(|o| o.get_mut("provider")) {
        desugar_grader(provider);
    }
    if let Some(asserts) = test.get_mut("assert") {
        desugar_asserts(asserts);
    }
}

fn desugar_grader(provider: &mut sluice_config::Node) {
    provider.wrap_scalar("id");
    for key in ["text", "embedding"] {
        if let Some(inner) = provider.get_mut(key) {
            inner.wrap_scalar("id");
        }
    }
}

fn desugar_asserts(asserts: &mut sluice_config::Node) {
    for assertion in asserts.items_mut() {
        if let Some(provider) = assertion.get_mut("provider") {
            desugar_grader(provider);
        }
        if let Some(nested) = assertion.get_mut("assert") {
            desugar_asserts(nested);
        }
    }
}

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

fn compile(
    mut document: Document,
    base_dir: &Path,
    env: &dyn EnvSource,
    grader: Option<&str>,
) -> Result<Suite, SuiteError> {
    desugar(&mut document);
    let raw: RawSuite = document.deserialize().map_err(|d| SuiteError(vec![d]))?;
    Compiler {
        document: &document,
        base_dir,
        env,
        errors: Vec::new(),
        other_files: Vec::new(),
        graders: Vec::new(),
        default_grader: grader.map(str::to_owned),
    }
    .compile(raw)
}

struct Compiler<'a> {
    document: &'a Document,
    base_dir: &'a Path,
    env: &'a dyn EnvSource,
    errors: Vec<Diagnostic>,
    other_files: Vec<Diagnostics>,
    graders: Vec<Provider>,
    default_grader: Option<String>,
}

fn unsupported(feature: &str) -> String {
    format!(
        "`{feature}` is a promptfoo feature this build does not support; remove it or run the suite with promptfoo"
    )
}

impl Compiler<'_> {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let error = self.document.error_at(path, message);
        self.errors.push(error);
    }

    fn compile(mut self, raw: RawSuite) -> Result<Suite, SuiteError> {
        let root = FieldPath::root();
        let unsupported_top: [(&str, bool); 9] = [
            ("scenarios", raw.scenarios.is_some()),
            ("extensions", raw.extensions.is_some()),
            ("derivedMetrics", raw.derived_metrics.is_some()),
            ("assertionTemplates", raw.assertion_templates.is_some()),
            ("nunjucksFilters", raw.nunjucks_filters.is_some()),
            ("env", raw.env.is_some()),
            ("redteam", raw.redteam.is_some()),
            ("commandLineOptions", raw.command_line_options.is_some()),
            ("sharing", raw.sharing.is_some()),
        ];
        for (name, present) in unsupported_top {
            if present {
                self.error(&root.key(name), unsupported(name));
            }
        }
        if raw.providers.is_empty() {
            self.error(
                &root.key("providers"),
                "expected at least one provider, e.g. `providers: [openai:chat:gpt-4o-mini]`",
            );
        }
        let providers: Vec<Provider> = raw
            .providers
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let path = root.key("providers").index(i);
                let provider = self.provider(p, &path)?;
                if provider.endpoint == Endpoint::Embedding {
                    self.error(&path.key("id"), format!("`{}` is an embedding provider: it can grade `similar` assertions, not answer prompts", provider.id));
                    return None;
                }
                Some(provider)
            })
            .collect();
        if raw.prompts.is_empty() {
            self.error(
                &root.key("prompts"),
                "expected at least one prompt, e.g. `prompts: ['Answer briefly: {{question}}']`",
            );
        }
        let prompts: Vec<Prompt> = raw
            .prompts
            .into_iter()
            .enumerate()
            .flat_map(|(i, p)| self.prompt(p, &root.key("prompts").index(i)))
            .collect();
        let options = self.options(raw.evaluate_options, &root.key("evaluateOptions"));
        let default_test = raw.default_test.unwrap_or_default();
        let default_path = root.key("defaultTest");
        self.unsupported_test_fields(&default_test, &default_path);
        let default_grader = default_test
            .options
            .as_ref()
            .and_then(|o| o.provider.clone());
        let default_assertions: std::sync::Arc<[Assertion]> = self
            .assertions(
                &default_test.assert,
                &default_path.key("assert"),
                [None, default_grader.as_deref()],
            )
            .into();

        let mut raw_tests: Vec<(RawTest, FieldPath, String)> = Vec::new();
        for (i, test) in raw.tests.into_iter().enumerate() {
            let path = root.key("tests").index(i);
            match test.file.clone() {
                Some(file) => raw_tests.extend(self.test_file(&file, &path)),
                None => {
                    let origin = format!("{}: {path}", self.document.name());
                    raw_tests.push((test, path, origin));
                }
            }
        }
        if raw_tests.is_empty() {
            raw_tests.push((
                RawTest::default(),
                root.key("tests"),
                format!("{}: (no tests)", self.document.name()),
            ));
        }
        let mut tests = Vec::new();
        for (raw_test, path, origin) in raw_tests {
            self.unsupported_test_fields(&raw_test, &path);
            let test_grader = raw_test.options.as_ref().and_then(|o| o.provider.clone());
            let assertions = self.assertions(
                &raw_test.assert,
                &path.key("assert"),
                [test_grader.as_deref(), default_grader.as_deref()],
            );
            let mut vars = default_test.vars.clone();
            vars.extend(raw_test.vars.clone());
            for expanded in expand_vars(&vars) {
                tests.push(TestCase {
                    index: tests.len(),
                    description: raw_test
                        .description
                        .clone()
                        .unwrap_or_else(|| describe_vars(&expanded)),
                    vars: expanded,
                    assertions: assertions.clone(),
                    default_assertions: default_assertions.clone(),
                    threshold: raw_test.threshold.or(default_test.threshold),
                    provider_output: raw_test.provider_output.clone(),
                    origin: origin.clone(),
                    metadata: raw_test.metadata.clone(),
                });
            }
        }
        // Templates with block tags define names of their own (loop variables, `set`); their
        // missing variables are reported when they render.
        for prompt in prompts.iter().filter(|p| !p.template.contains("{%")) {
            for name in template::references(&prompt.template) {
                if let Some(test) = tests
                    .iter()
                    .find(|t| !t.vars.contains_key(&name) && t.provider_output.is_none())
                {
                    self.error(
                        &root.key("prompts"),
                        format!("prompt `{}` uses `{{{{{name}}}}}` but test {} ({}) has no var `{name}`", prompt.label, test.index, test.origin),
                    );
                    break;
                }
            }
        }
        let output_paths = match raw.output_path {
            None => Vec::new(),
            Some(OneOrMany::One(path)) => vec![self.base_dir.join(path)],
            Some(OneOrMany::Many(paths)) => {
                paths.into_iter().map(|p| self.base_dir.join(p)).collect()
            }
        };
        let mut all = self.other_files;
        if !self.errors.is_empty() {
            all.insert(0, self.document.diagnostics(self.errors));
        }
        if !all.is_empty() {
            return Err(SuiteError(all));
        }
        Ok(Suite {
            description: raw.description.unwrap_or_default(),
            providers,
            prompts,
            tests,
            options,
            output_paths,
            tags: raw.tags,
            graders: self.graders,
        })
    }

    fn provider(&mut self, raw: RawProvider, path: &FieldPath) -> Option<Provider> {
        let config = raw.config.clone().unwrap_or_default();
        if config.api_key.is_some() {
            self.error(
                &path.key("config").key("apiKey"),
                "API keys are not accepted in suite files; put the key in an environment variable and name it in `apiKeyEnvar`",
            );
        }
        let is_http = matches!(raw.id.as_str(), "http" | "https")
            || raw.id.starts_with("http://")
            || raw.id.starts_with("https://");
        if is_http {
            return self.http_provider(raw, config, path);
        }
        let http_fields = [
            ("url", config.url.is_some()),
            ("method", config.method.is_some()),
            ("headers", config.headers.is_some()),
            ("body", config.body.is_some()),
            ("transformResponse", config.transform_response.is_some()),
            ("validateStatus", config.validate_status.is_some()),
        ];
        for (field, present) in http_fields {
            if present {
                self.error(
                    &path.key("config").key(field),
                    format!(
                        "`{field}` is a setting of the `http` provider, not of `{}`",
                        raw.id
                    ),
                );
            }
        }
        let (endpoint, model) = match raw.id.split_once(':') {
            Some(("openai", rest)) => match rest.split_once(':') {
                Some(("chat", model)) => (Endpoint::Chat, model.to_owned()),
                Some(("completion", model)) => (Endpoint::Completion, model.to_owned()),
                Some(("embedding" | "embeddings", model)) => {
                    (Endpoint::Embedding, model.to_owned())
                }
                Some((other, _)) => {
                    self.error(&path.key("id"), format!("unsupported OpenAI provider kind `{other}` in `{}`: expected `openai:chat:MODEL` or `openai:completion:MODEL`", raw.id));
                    return None;
                }
                None => (Endpoint::Chat, rest.to_owned()),
            },
            _ => {
                self.error(
                    &path.key("id"),
                    format!("unsupported provider `{}`: this build supports `openai:chat:MODEL` and `openai:completion:MODEL` (any OpenAI-compatible server, via `config.apiBaseUrl`)", raw.id),
                );
                return None;
            }
        };
        if model.is_empty() {
            self.error(
                &path.key("id"),
                format!("provider `{}` names no model", raw.id),
            );
            return None;
        }
        let base_url = config
            .api_base_url
            .or_else(|| self.env.var("OPENAI_BASE_URL"))
            .or_else(|| self.env.var("OPENAI_API_BASE_URL"))
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let api_key_env = config.api_key_envar.or_else(|| {
            self.env
                .var("OPENAI_API_KEY")
                .map(|_| "OPENAI_API_KEY".to_owned())
        });
        Some(Provider {
            label: raw.label.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            endpoint,
            model,
            base_url,
            api_key_env,
            temperature: config.temperature,
            max_tokens: config.max_completion_tokens.or(config.max_tokens),
            top_p: config.top_p,
            seed: config.seed,
            stop: match config.stop {
                None => Vec::new(),
                Some(OneOrManyText::One(stop)) => vec![stop],
                Some(OneOrManyText::Many(stops)) => stops,
            },
            http: None,
            prices: match (
                config.input_cost.or(config.cost),
                config.output_cost.or(config.cost),
            ) {
                (Some(input), Some(output)) => Some((input, output)),
                _ => None,
            },
        })
    }

    fn http_provider(
        &mut self,
        raw: RawProvider,
        config: RawProviderConfig,
        path: &FieldPath,
    ) -> Option<Provider> {
        let config_path = path.key("config");
        let url = match (
            config.url,
            raw.id.starts_with("http://") || raw.id.starts_with("https://"),
        ) {
            (Some(url), _) => url,
            (None, true) => raw.id.clone(),
            (None, false) => {
                self.error(
                    &config_path.key("url"),
                    "the `http` provider needs `config.url`",
                );
                return None;
            }
        };
        let json_path = match config
            .transform_response
            .as_deref()
            .map(crate::http_provider::parse_transform)
            .transpose()
        {
            Ok(path) => path.unwrap_or(None),
            Err(message) => {
                self.error(&config_path.key("transformResponse"), message);
                return None;
            }
        };
        let rule = config
            .validate_status
            .as_deref()
            .unwrap_or("status >= 200 && status < 300");
        let valid_status = match crate::http_provider::parse_status_rule(rule) {
            Ok(rule) => rule,
            Err(message) => {
                self.error(&config_path.key("validateStatus"), message);
                return None;
            }
        };
        let method = config
            .method
            .unwrap_or_else(|| "POST".to_owned())
            .to_ascii_uppercase();
        Some(Provider {
            label: raw.label.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            endpoint: Endpoint::Http,
            model: String::new(),
            base_url: url.clone(),
            api_key_env: None,
            temperature: None,
            max_tokens: None,
            top_p: None,
            seed: None,
            stop: Vec::new(),
            prices: None,
            http: Some(crate::http_provider::HttpConfig {
                url,
                method,
                headers: config.headers.unwrap_or_default(),
                body: config.body,
                json_path,
                valid_status,
            }),
        })
    }

    /// A prompt, or one per file a `file://` glob matches.
    fn prompt(&mut self, raw: RawPrompt, path: &FieldPath) -> Vec<Prompt> {
        let source = match (raw.raw, raw.id) {
            (Some(text), _) | (None, Some(text)) => text,
            (None, None) => {
                self.error(
                    path,
                    "expected a prompt: a string, `file://PATH`, or `{raw: …, label: …}`",
                );
                return Vec::new();
            }
        };
        let Some(file) = source.strip_prefix("file://") else {
            let label: String = source.chars().take(40).collect();
            return vec![Prompt {
                label: raw.label.unwrap_or(label),
                template: source,
            }];
        };
        let files = if crate::glob::is_glob(file) {
            match crate::glob::expand(self.base_dir, file) {
                Ok(files) if files.is_empty() => {
                    self.error(path, format!("`{file}` matches no prompt files"));
                    return Vec::new();
                }
                Ok(files) => files,
                Err(message) => {
                    self.error(path, message);
                    return Vec::new();
                }
            }
        } else {
            vec![self.base_dir.join(file)]
        };
        let single = files.len() == 1;
        let mut prompts = Vec::new();
        for full in files {
            match std::fs::read_to_string(&full) {
                Ok(template) => {
                    let shown = if crate::glob::is_glob(file) {
                        full.strip_prefix(self.base_dir)
                            .unwrap_or(&full)
                            .display()
                            .to_string()
                    } else {
                        file.to_owned()
                    };
                    let label = match (&raw.label, single) {
                        (Some(label), true) => label.clone(),
                        (Some(label), false) => format!("{label}: {shown}"),
                        (None, _) => shown,
                    };
                    prompts.push(Prompt { label, template });
                }
                Err(error) => self.error(
                    path,
                    format!("cannot read prompt file {}: {error}", full.display()),
                ),
            }
        }
        prompts
    }

    fn options(&mut self, raw: Option<RawEvaluateOptions>, path: &FieldPath) -> EvaluateOptions {
        let mut options = EvaluateOptions::default();
        let Some(raw) = raw else { return options };
        if raw.delay.is_some() {
            self.error(&path.key("delay"), unsupported("evaluateOptions.delay"));
        }
        if raw.max_eval_time_ms.is_some() {
            self.error(
                &path.key("maxEvalTimeMs"),
                unsupported("evaluateOptions.maxEvalTimeMs"),
            );
        }
        if let Some(concurrency) = raw.max_concurrency {
            if concurrency == 0 {
                self.error(&path.key("maxConcurrency"), "expected at least 1");
            }
            options.max_concurrency = concurrency.max(1);
        }
        if let Some(repeat) = raw.repeat {
            if repeat == 0 {
                self.error(&path.key("repeat"), "expected at least 1");
            }
            options.repeat = repeat.max(1);
        }
        options.cache = raw.cache.unwrap_or(true);
        options.timeout_ms = raw.timeout_ms.unwrap_or(0);
        options
    }

    fn unsupported_test_fields(&mut self, test: &RawTest, path: &FieldPath) {
        let fields = [
            ("provider", test.provider.is_some()),
            ("providers", test.providers.is_some()),
            ("prompts", test.prompts.is_some()),
            (
                "assertScoringFunction",
                test.assert_scoring_function.is_some(),
            ),
        ];
        for (name, present) in fields {
            if present {
                self.error(&path.key(name), unsupported(&format!("test.{name}")));
            }
        }
        if let Some(options) = &test.options {
            if let Some(grader) = &options.provider
                && grader.providers().is_empty()
            {
                self.error(
                    &path.key("options").key("provider"),
                    "expected a provider `id`, or `text` and/or `embedding` providers".to_owned(),
                );
            }
            let option_fields = [
                ("transform", options.transform.is_some()),
                ("transformVars", options.transform_vars.is_some()),
                ("prefix", options.prefix.is_some()),
                ("suffix", options.suffix.is_some()),
                ("rubricPrompt", options.rubric_prompt.is_some()),
                ("runSerially", options.run_serially.is_some()),
                ("storeOutputAs", options.store_output_as.is_some()),
                (
                    "disableDefaultAsserts",
                    options.disable_default_asserts.is_some(),
                ),
                (
                    "disableVarExpansion",
                    options.disable_var_expansion.is_some(),
                ),
            ];
            for (name, present) in option_fields {
                if present {
                    self.error(
                        &path.key("options").key(name),
                        unsupported(&format!("options.{name}")),
                    );
                }
            }
        }
    }

    /// Compiles assertions and resolves the graders of model-graded ones: the assertion's own
    /// `provider`, then `inherited` (the test's, then defaultTest's `options.provider`), then
    /// `--grader`, then OpenAI's defaults when `OPENAI_API_KEY` is set.
    fn assertions(
        &mut self,
        raw: &[RawAssertion],
        path: &FieldPath,
        inherited: [Option<&RawGrader>; 2],
    ) -> Vec<Assertion> {
        let mut compiled = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let at = path.index(i);
            match compile_assertion(a) {
                Ok(mut assertion) => {
                    self.resolve_script_paths(&mut assertion);
                    if self.resolve_graders(&mut assertion, a, inherited, &at) {
                        compiled.push(assertion);
                    }
                }
                Err((field, message)) => {
                    let at = if field.is_empty() { at } else { at.key(field) };
                    self.error(&at, message);
                }
            }
        }
        compiled
    }

    /// `file://` python and javascript scripts are found relative to the suite file.
    fn resolve_script_paths(&self, assertion: &mut Assertion) {
        match assertion {
            Assertion::Set(set) => set
                .assertions
                .iter_mut()
                .for_each(|a| self.resolve_script_paths(a)),
            Assertion::Check(check) if matches!(check.kind, Kind::Python | Kind::Javascript) => {
                if let Some(Value::String(code)) = &mut check.value
                    && let Some(relative) = code.strip_prefix("file://")
                {
                    *code = format!("file://{}", self.base_dir.join(relative).display());
                }
            }
            Assertion::Check(_) => {}
        }
    }

    fn resolve_graders(
        &mut self,
        assertion: &mut Assertion,
        raw: &RawAssertion,
        inherited: [Option<&RawGrader>; 2],
        path: &FieldPath,
    ) -> bool {
        match assertion {
            Assertion::Set(set) => {
                let members = raw.assert.as_deref().unwrap_or_default();
                let mut ok = true;
                for (i, (member, raw_member)) in set.assertions.iter_mut().zip(members).enumerate()
                {
                    ok &= self.resolve_graders(
                        member,
                        raw_member,
                        inherited,
                        &path.key("assert").index(i),
                    );
                }
                ok
            }
            Assertion::Check(check) if check.kind.is_model_graded() => {
                let own = raw
                    .provider
                    .as_deref()
                    .map(RawGrader::providers)
                    .unwrap_or_default();
                if raw.provider.is_some() && own.is_empty() {
                    self.error(
                        &path.key("provider"),
                        "expected a provider `id`, or `text` and/or `embedding` providers"
                            .to_owned(),
                    );
                    return false;
                }
                let inherited: Vec<RawProvider> = inherited
                    .into_iter()
                    .flatten()
                    .flat_map(RawGrader::providers)
                    .collect();
                let (needs_judge, needs_embedder) = check.kind.graders_needed();
                let name = check.name.clone();
                let mut ok = true;
                if needs_judge {
                    check.grader = self.grader(&name, Endpoint::Chat, &own, &inherited, path);
                    ok &= check.grader.is_some();
                }
                if needs_embedder {
                    check.embedder =
                        self.grader(&name, Endpoint::Embedding, &own, &inherited, path);
                    ok &= check.embedder.is_some();
                }
                ok
            }
            Assertion::Check(_) => true,
        }
    }

    /// Picks the grader for `endpoint`: the assertion's own providers, then the inherited ones,
    /// then `--grader`, then OpenAI's default when `OPENAI_API_KEY` is set; its index in
    /// `graders`, or `None` with an error recorded.
    fn grader(
        &mut self,
        assertion: &str,
        endpoint: Endpoint,
        own: &[RawProvider],
        inherited: &[RawProvider],
        path: &FieldPath,
    ) -> Option<usize> {
        let fallback = match endpoint {
            Endpoint::Embedding => "openai:embedding:text-embedding-3-large",
            _ => "openai:chat:gpt-4.1-2025-04-14",
        };
        let by_id = |id: String| RawProvider {
            id,
            label: None,
            config: None,
        };
        let cli = self.default_grader.clone().map(by_id);
        let env_default = self
            .env
            .var("OPENAI_API_KEY")
            .map(|_| by_id(fallback.to_owned()));
        let fits = |p: &&RawProvider| endpoint_of(&p.id) == Some(endpoint);
        let (chosen, at) = match own.iter().find(fits) {
            Some(p) => (Some(p.clone()), path.key("provider")),
            None => (
                inherited
                    .iter()
                    .chain(&cli)
                    .chain(&env_default)
                    .find(fits)
                    .cloned(),
                path.clone(),
            ),
        };
        let Some(chosen) = chosen else {
            let kind = if endpoint == Endpoint::Embedding {
                "an embedding provider (`openai:embedding:MODEL`)"
            } else {
                "a chat provider (`openai:chat:MODEL`)"
            };
            self.error(
                path,
                format!(
                    "`{assertion}` needs a grader, {kind}: set `provider` on the assertion, `options.provider` on the test or defaultTest, or pass --grader"
                ),
            );
            return None;
        };
        let provider = self.provider(chosen, &at)?;
        let existing = self.graders.iter().position(|g| {
            g.id == provider.id
                && g.base_url == provider.base_url
                && g.api_key_env == provider.api_key_env
                && g.temperature == provider.temperature
        });
        Some(existing.unwrap_or_else(|| {
            self.graders.push(provider);
            self.graders.len() - 1
        }))
    }

    /// Loads tests from a `file://` entry: JSONL, CSV, YAML or JSON.
    fn test_file(&mut self, file: &str, path: &FieldPath) -> Vec<(RawTest, FieldPath, String)> {
        let Some(relative) = file.strip_prefix("file://") else {
            self.error(
                path,
                format!("expected a test object or `file://PATH`, found {file:?}"),
            );
            return Vec::new();
        };
        if crate::glob::is_glob(relative) {
            let files = match crate::glob::expand(self.base_dir, relative) {
                Ok(files) => files,
                Err(message) => {
                    self.error(path, message);
                    return Vec::new();
                }
            };
            if files.is_empty() {
                self.error(path, format!("`{relative}` matches no test files"));
            }
            return files
                .iter()
                .flat_map(|file| self.tests_in(file, path))
                .collect();
        }
        let full = self.base_dir.join(relative);
        self.tests_in(&full, path)
    }

    /// Loads the tests of one JSONL, CSV, YAML or JSON file.
    fn tests_in(&mut self, full: &Path, path: &FieldPath) -> Vec<(RawTest, FieldPath, String)> {
        let name = full.display().to_string();
        let text = match sluice_config::read_text(full) {
            Ok(text) => text,
            Err(error) => {
                let at = error
                    .location
                    .map(|l| format!(":{}:{}", l.line, l.column))
                    .unwrap_or_default();
                self.error(path, format!("test file {name}{at}: {}", error.message));
                return Vec::new();
            }
        };
        let extension = full
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let loaded = match extension.as_str() {
            "jsonl" => load_jsonl(&name, &text, self.env),
            "csv" => load_csv(&name, &text),
            "yaml" | "yml" | "json" => load_yaml_tests(&name, &text, self.env),
            other => {
                self.error(path, format!("unsupported test file type `.{other}` ({name}): expected .jsonl, .csv, .yaml, .yml or .json"));
                return Vec::new();
            }
        };
        match loaded {
            Ok(tests) => tests,
            Err(diagnostics) => {
                self.other_files.push(diagnostics);
                Vec::new()
            }
        }
    }
}

/// Compiles one assertion; errors name the offending field (empty for the assertion itself).
fn compile_assertion(raw: &RawAssertion) -> Result<Assertion, (&'static str, String)> {
    for (name, present) in [
        ("transform", raw.transform.is_some()),
        ("rubricPrompt", raw.rubric_prompt.is_some()),
        ("contextTransform", raw.context_transform.is_some()),
        ("config", raw.config.is_some()),
    ] {
        if present {
            return Err((name, unsupported(&format!("assert.{name}"))));
        }
    }
    let weight = raw.weight.unwrap_or(1.0);
    if !(weight.is_finite() && weight >= 0.0) {
        return Err((
            "weight",
            format!("expected a non-negative weight, found {weight}"),
        ));
    }
    if raw.kind == "assert-set" {
        let members = raw
            .assert
            .as_deref()
            .ok_or(("assert", "`assert-set` needs an `assert` list".to_owned()))?;
        let assertions = members
            .iter()
            .map(compile_assertion)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(threshold) = raw.threshold
            && !(0.0..=1.0).contains(&threshold)
        {
            return Err((
                "threshold",
                format!("expected a fraction between 0 and 1, found {threshold}"),
            ));
        }
        return Ok(Assertion::Set(AssertionSet {
            assertions,
            threshold: raw.threshold,
            weight,
            metric: raw.metric.clone(),
        }));
    }
    if raw.assert.is_some() {
        return Err((
            "assert",
            "only `assert-set` takes a nested `assert` list".to_owned(),
        ));
    }
    let (negate, base) = match raw.kind.strip_prefix("not-") {
        Some(base) => (true, base),
        None => (false, raw.kind.as_str()),
    };
    let Some(kind) = Kind::parse(base) else {
        if UNSUPPORTED_TYPES.contains(&base) {
            return Err((
                "type",
                format!(
                    "`{base}` assertions are not supported by this build yet (supported: {})",
                    supported_types().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut message = format!("unknown assertion type `{}`", raw.kind);
        if let Some(suggestion) = did_you_mean(base, supported_types()) {
            message.push_str(&format!(
                ", did you mean `{}{suggestion}`?",
                if negate { "not-" } else { "" }
            ));
        }
        return Err(("type", message));
    };
    if kind.needs_value() && raw.value.is_none() {
        return Err(("value", format!("`{}` needs a `value`", raw.kind)));
    }
    if matches!(kind, Kind::IsJson | Kind::ContainsJson)
        && let Some(schema) = &raw.value
    {
        match schema {
            Value::Object(_) => {
                if let Err(error) = crate::text_metrics::compile_schema(schema) {
                    return Err(("value", error));
                }
            }
            _ => {
                return Err((
                    "value",
                    format!("the value of `{}` must be a JSON Schema object", raw.kind),
                ));
            }
        }
    }
    if kind == Kind::Cost && raw.threshold.is_none() {
        return Err(("threshold", "`cost` needs a `threshold` in USD".to_owned()));
    }
    if kind == Kind::Latency && raw.threshold.is_none() {
        return Err((
            "threshold",
            "`latency` needs a `threshold` in milliseconds".to_owned(),
        ));
    }
    if kind == Kind::Regex
        && let Some(Value::String(pattern)) = &raw.value
        && !pattern.contains("{{")
        && let Err(error) = regex::Regex::new(pattern)
    {
        return Err((
            "value",
            format!(
                "invalid regular expression: {}",
                one_line(&error.to_string())
            ),
        ));
    }
    Ok(Assertion::Check(Check {
        name: raw.kind.clone(),
        kind,
        negate,
        value: raw.value.clone(),
        threshold: raw.threshold,
        weight,
        metric: raw.metric.clone(),
        grader: None,
        embedder: None,
    }))
}

/// The endpoint a provider id names, when it is one this build supports.
fn endpoint_of(id: &str) -> Option<Endpoint> {
    match id.split(':').collect::<Vec<_>>().as_slice() {
        ["openai", "chat", _, ..] | ["openai", _] => Some(Endpoint::Chat),
        ["openai", "completion", _, ..] => Some(Endpoint::Completion),
        ["openai", "embedding" | "embeddings", _, ..] => Some(Endpoint::Embedding),
        ["http" | "https"] | ["http" | "https", ..] => Some(Endpoint::Http),
        _ => None,
    }
}

/// A multi-line message (the regex crate draws a caret diagram) as one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "^")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Expands array-valued vars into the cartesian product of their items.
fn expand_vars(vars: &Vars) -> Vec<Vars> {
    let mut out = vec![Vars::new()];
    for (name, value) in vars {
        let choices: Vec<Value> = match value {
            Value::Array(items) if !items.is_empty() => items.clone(),
            other => vec![other.clone()],
        };
        out = out
            .into_iter()
            .flat_map(|partial| {
                choices.iter().map(move |choice| {
                    let mut next = partial.clone();
                    next.insert(name.clone(), choice.clone());
                    next
                })
            })
            .collect();
    }
    out
}

fn describe_vars(vars: &Vars) -> String {
    if vars.is_empty() {
        return "(no vars)".to_owned();
    }
    vars.iter()
        .map(|(k, v)| {
            let text: String = template::text(v).chars().take(40).collect();
            format!("{k}={text}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_yaml_tests(
    name: &str,
    text: &str,
    env: &dyn EnvSource,
) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut document = Document::parse(name, text, env)?;
    document
        .root_mut()
        .items_mut()
        .iter_mut()
        .for_each(desugar_test);
    let tests: Vec<RawTest> = document.deserialize()?;
    Ok(tests
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, FieldPath::root().index(i), format!("{name}: [{i}]")))
        .collect())
}

fn load_jsonl(
    name: &str,
    text: &str,
    env: &dyn EnvSource,
) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let parsed = Document::parse(name, line, env).and_then(|mut doc| {
            desugar_test(doc.root_mut());
            doc.deserialize::<RawTest>()
        });
        match parsed {
            Ok(test) => tests.push((test, FieldPath::root(), format!("{name}:{line_number}"))),
            Err(diagnostics) => errors.extend(diagnostics.errors.into_iter().map(|mut d| {
                d.location = Some(Location {
                    line: line_number,
                    column: d.location.map_or(1, |l| l.column),
                });
                d
            })),
        }
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(Diagnostics::in_file(name, errors))
    }
}

/// CSV tests: each column is a var, except promptfoo's `__expected…`, `__description`,
/// `__metric` and `__threshold` columns.
fn load_csv(name: &str, text: &str) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let at = |line: usize, column: usize| Location { line, column };
    let headers = reader
        .headers()
        .map_err(|e| {
            Diagnostics::in_file(
                name,
                vec![Diagnostic::new(
                    at(1, 1),
                    FieldPath::root(),
                    format!("invalid CSV header: {e}"),
                )],
            )
        })?
        .clone();
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line() as usize);
                let message = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!(
                            "row has {len} fields, expected {expected_len} (as many as the header)"
                        )
                    }
                    _ => format!("invalid CSV: {error}"),
                };
                errors.push(Diagnostic::new(at(line, 1), FieldPath::root(), message));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut test = RawTest::default();
        let mut metric = None;
        let mut expected = Vec::new();
        for (column, (header, value)) in headers.iter().zip(record.iter()).enumerate() {
            let field = FieldPath::root().key(header);
            match header {
                h if h == "__expected"
                    || h.starts_with("__expected")
                        && h[10..].chars().all(|c| c.is_ascii_digit()) =>
                {
                    if !value.trim().is_empty() {
                        expected.push((value.to_owned(), column));
                    }
                }
                "__description" => test.description = Some(value.to_owned()),
                "__metric" => metric = Some(value.to_owned()),
                "__threshold" => match value.trim().parse::<f64>() {
                    Ok(threshold) => test.threshold = Some(threshold),
                    Err(_) if value.trim().is_empty() => {}
                    Err(_) => errors.push(Diagnostic::new(
                        at(line, column + 1),
                        field,
                        format!("expected a number, found {value:?}"),
                    )),
                },
                h if h.starts_with("__") => {
                    errors.push(Diagnostic::new(at(line, column + 1), field, format!("the CSV column `{h}` is not supported (supported: __expected, __expectedN, __description, __metric, __threshold)")));
                }
                _ => {
                    test.vars
                        .insert(header.to_owned(), Value::String(value.to_owned()));
                }
            }
        }
        for (text, column) in expected {
            match shorthand_assertion(&text) {
                Ok(mut assertion) => {
                    assertion.metric = metric.clone();
                    match compile_assertion(&assertion) {
                        Ok(_) => test.assert.push(assertion),
                        Err((_, message)) => errors.push(Diagnostic::new(
                            at(line, column + 1),
                            FieldPath::root().key(&headers[column]),
                            message,
                        )),
                    }
                }
                Err(message) => errors.push(Diagnostic::new(
                    at(line, column + 1),
                    FieldPath::root().key(&headers[column]),
                    message,
                )),
            }
        }
        tests.push((test, FieldPath::root(), format!("{name}:{line}")));
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(Diagnostics::in_file(name, errors))
    }
}

/// promptfoo's `__expected` shorthand: `type:value`, `type(threshold):value`, `not-type:value`,
/// or a bare value meaning `equals`.
fn shorthand_assertion(text: &str) -> Result<RawAssertion, String> {
    let plain = |kind: &str, value: Option<Value>, threshold: Option<f64>| RawAssertion {
        kind: kind.to_owned(),
        value,
        threshold,
        weight: None,
        metric: None,
        assert: None,
        provider: None,
        transform: None,
        rubric_prompt: None,
        context_transform: None,
        config: None,
    };
    if let Some(rubric) = text.strip_prefix("grade:") {
        return Ok(plain(
            "llm-rubric",
            Some(Value::String(rubric.trim().to_owned())),
            None,
        ));
    }
    if let Some(code) = text.strip_prefix("fn:") {
        return Ok(plain(
            "javascript",
            Some(Value::String(code.trim().to_owned())),
            None,
        ));
    }
    if let Some((head, value)) = text.split_once(':') {
        let (name, threshold) = match head.split_once('(') {
            Some((name, rest)) => match rest
                .strip_suffix(')')
                .and_then(|t| t.trim().parse::<f64>().ok())
            {
                Some(threshold) => (name, Some(threshold)),
                None => (head, None),
            },
            None => (head, None),
        };
        let base = name.strip_prefix("not-").unwrap_or(name);
        if supported_types().any(|t| t == base) || UNSUPPORTED_TYPES.contains(&base) {
            let value = if value.is_empty() {
                None
            } else {
                Some(Value::String(value.to_owned()))
            };
            return Ok(plain(name, value, threshold));
        }
    }
    Ok(plain("equals", Some(Value::String(text.to_owned())), None))
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
        assert_eq!(suite.providers[1].base_url, "http://127.0.0.1:9/v1");
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
        assert_eq!(suite.graders[0].base_url, "http://127.0.0.1:9/v1");

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
