//! The compiler from the raw suite to a checked [`Suite`]: providers, prompts, tests after
//! `defaultTest` merging and array-var expansion, assertions, graders; every problem located.

use super::*;

pub(super) fn compile(
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
            target: EndpointSpec::new(base_url, model).with_api_key_env(api_key_env),
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
            target: EndpointSpec::new(&url, ""),
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
                && g.target == provider.target
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
pub(super) fn compile_assertion(raw: &RawAssertion) -> Result<Assertion, (&'static str, String)> {
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
pub(super) fn endpoint_of(id: &str) -> Option<Endpoint> {
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
pub(super) fn expand_vars(vars: &Vars) -> Vec<Vars> {
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

pub(super) fn describe_vars(vars: &Vars) -> String {
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
