//! Assertions: promptfoo's deterministic types, `not-` negation, weights, thresholds, metrics
//! and `assert-set`, graded against one output.

use regex::Regex;
use serde_json::Value;
use sluice_llm::types::ToolCall;

use crate::graded::{self, Judge};
use crate::scripted;
use crate::template::{self, TemplateError, Vars};
use crate::text_metrics;

/// The assertion types this build grades (`assert-set` last).
pub fn supported_types() -> impl Iterator<Item = &'static str> + Clone {
    KINDS
        .iter()
        .map(|(name, _)| *name)
        .chain(std::iter::once("assert-set"))
}

/// promptfoo types that exist but are not graded by this build; naming one is a clear error.
pub const UNSUPPORTED_TYPES: &[&str] = &[
    "g-eval",
    "context-recall",
    "context-relevance",
    "ruby",
    "gleu",
    "meteor",
    "is-html",
    "contains-html",
    "is-sql",
    "contains-sql",
    "moderation",
    "classifier",
    "perplexity",
    "perplexity-score",
    "select-best",
    "max-score",
];

/// A deterministic assertion type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exact text, or deep JSON equality for object/array values.
    Equals,
    /// Substring.
    Contains,
    /// Case-insensitive substring.
    Icontains,
    /// Any of several substrings.
    ContainsAny,
    /// All of several substrings.
    ContainsAll,
    /// Any of several, case-insensitive.
    IcontainsAny,
    /// All of several, case-insensitive.
    IcontainsAll,
    /// Prefix.
    StartsWith,
    /// Regular expression search.
    Regex,
    /// The whole output is JSON.
    IsJson,
    /// The output contains a JSON object or array.
    ContainsJson,
    /// Edit distance to the value at most `threshold` (default 5).
    Levenshtein,
    /// ROUGE-N (unigram) recall of the reference at least `threshold` (default 0.75).
    RougeN,
    /// BLEU-4 against the reference(s) at least `threshold` (default 0.5).
    Bleu,
    /// The whole output is XML, holding the required element paths if given.
    IsXml,
    /// The output contains XML, holding the required element paths if given.
    ContainsXml,
    /// Word count equals the value, or lies within `{min, max}`.
    WordCount,
    /// The finish reason equals the value.
    FinishReason,
    /// Latency in ms at most `threshold`.
    Latency,
    /// The output refuses (empty output counts as a refusal).
    IsRefusal,
    /// The output is one or more well-formed tool calls.
    IsValidOpenaiToolsCall,
    /// A judge model grades the output against a rubric.
    LlmRubric,
    /// A judge model compares the output with a reference answer.
    Factuality,
    /// A judge model decides whether the output meets a criterion.
    ModelGradedClosedqa,
    /// Embedding cosine similarity with the value.
    Similar,
    /// Questions a judge infers from the output, compared by embedding with the query.
    AnswerRelevance,
    /// The share of the output's claims that the test's `context` supports.
    ContextFaithfulness,
    /// A javascript expression, function body or `file://script.js[:function]`.
    Javascript,
    /// A python expression, function body or `file://script.py[:function]`.
    Python,
    /// A command; exit code 0 passes, or it prints `{pass, score, reason}`.
    Exec,
    /// An HTTP endpoint answering `{pass, score, reason}`.
    Webhook,
    /// Recall@k of expected document ids in a JSON retrieval result (default threshold 0.8).
    RetrievalRecall,
    /// The request's cost in USD at most `threshold` (needs the provider's token prices).
    Cost,
}

/// Type names (without `not-`) and what they check; the first name of a kind is its own.
const KINDS: &[(&str, Kind)] = &[
    ("equals", Kind::Equals),
    ("contains", Kind::Contains),
    ("icontains", Kind::Icontains),
    ("contains-any", Kind::ContainsAny),
    ("contains-all", Kind::ContainsAll),
    ("icontains-any", Kind::IcontainsAny),
    ("icontains-all", Kind::IcontainsAll),
    ("starts-with", Kind::StartsWith),
    ("regex", Kind::Regex),
    ("is-json", Kind::IsJson),
    ("contains-json", Kind::ContainsJson),
    ("levenshtein", Kind::Levenshtein),
    ("rouge-n", Kind::RougeN),
    ("bleu", Kind::Bleu),
    ("is-xml", Kind::IsXml),
    ("contains-xml", Kind::ContainsXml),
    ("word-count", Kind::WordCount),
    ("finish-reason", Kind::FinishReason),
    ("latency", Kind::Latency),
    ("is-refusal", Kind::IsRefusal),
    ("is-valid-openai-tools-call", Kind::IsValidOpenaiToolsCall),
    ("llm-rubric", Kind::LlmRubric),
    ("factuality", Kind::Factuality),
    ("model-graded-factuality", Kind::Factuality),
    ("model-graded-closedqa", Kind::ModelGradedClosedqa),
    ("similar", Kind::Similar),
    ("answer-relevance", Kind::AnswerRelevance),
    ("context-faithfulness", Kind::ContextFaithfulness),
    ("javascript", Kind::Javascript),
    ("python", Kind::Python),
    ("exec", Kind::Exec),
    ("webhook", Kind::Webhook),
    ("retrieval-recall", Kind::RetrievalRecall),
    ("cost", Kind::Cost),
];

impl Kind {
    /// Parses a type name (without `not-`).
    pub fn parse(name: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, kind)| *kind)
    }

    /// The type name, as promptfoo spells it.
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("", |(name, _)| name)
    }

    /// Whether a model grades it (through a grader provider).
    pub fn is_model_graded(self) -> bool {
        self.graders_needed() != (false, false)
    }

    /// The graders a model-graded check needs: (a chat judge, an embedding model).
    pub fn graders_needed(self) -> (bool, bool) {
        match self {
            Kind::Similar => (false, true),
            Kind::AnswerRelevance => (true, true),
            Kind::LlmRubric
            | Kind::Factuality
            | Kind::ModelGradedClosedqa
            | Kind::ContextFaithfulness => (true, false),
            _ => (false, false),
        }
    }

    /// Whether the type needs a `value`.
    pub fn needs_value(self) -> bool {
        !matches!(
            self,
            Kind::IsJson
                | Kind::ContainsJson
                | Kind::IsXml
                | Kind::ContainsXml
                | Kind::Cost
                | Kind::Latency
                | Kind::IsRefusal
                | Kind::IsValidOpenaiToolsCall
                | Kind::AnswerRelevance
                | Kind::ContextFaithfulness
        )
    }
}

/// One compiled assertion or set.
#[derive(Debug, Clone)]
pub enum Assertion {
    /// A single check.
    Check(Check),
    /// `assert-set`: a group that passes when at least `threshold` of it passes.
    Set(AssertionSet),
}

/// A single check.
#[derive(Debug, Clone)]
pub struct Check {
    /// The type as written (for reports), e.g. `not-contains`.
    pub name: String,
    /// What is checked.
    pub kind: Kind,
    /// `not-` prefix.
    pub negate: bool,
    /// The value, templated with the test's vars before grading.
    pub value: Option<Value>,
    /// Type-specific threshold.
    pub threshold: Option<f64>,
    /// Weight in the test score; 0 = report only, always passes.
    pub weight: f64,
    /// Named metric this check contributes to.
    pub metric: Option<String>,
    /// For checks a chat model grades, the index of the judge in `Suite::graders`.
    pub grader: Option<usize>,
    /// For checks that need embeddings, the index of the embedding model in `Suite::graders`.
    pub embedder: Option<usize>,
}

/// An `assert-set`.
#[derive(Debug, Clone)]
pub struct AssertionSet {
    /// The members.
    pub assertions: Vec<Assertion>,
    /// Fraction of members (by count) that must pass; all when absent.
    pub threshold: Option<f64>,
    /// Weight in the test score.
    pub weight: f64,
    /// Named metric.
    pub metric: Option<String>,
}

/// What an assertion is graded against.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// The rendered prompt (the question, for judges).
    pub input: &'a str,
    /// The generated text.
    pub text: &'a str,
    /// Why generation stopped.
    pub finish_reason: Option<&'a str>,
    /// End-to-end latency in ms.
    pub latency_ms: f64,
    /// Cost in USD, when the provider's prices and the token counts are known.
    pub cost: Option<f64>,
    /// Tool calls made.
    pub tool_calls: &'a [ToolCall],
}

/// The verdict of one assertion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grade {
    /// The type as written.
    pub assertion: String,
    /// Passed.
    pub pass: bool,
    /// 0 to 1.
    pub score: f64,
    /// Why, in words.
    pub reason: String,
    /// Weight used.
    pub weight: f64,
    /// Named metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

impl Assertion {
    /// The weight of this assertion in the test score.
    pub fn weight(&self) -> f64 {
        match self {
            Assertion::Check(check) => check.weight,
            Assertion::Set(set) => set.weight,
        }
    }

    /// Grades `output`; `vars` fill `{{var}}` in values; `judges` are the suite's graders.
    pub async fn grade(
        &self,
        output: &Output<'_>,
        vars: &Vars,
        judges: &[Judge<'_>],
    ) -> Result<Grade, GradeError> {
        match self {
            Assertion::Check(check) => check.grade(output, vars, judges).await,
            Assertion::Set(set) => {
                let mut grades = Vec::with_capacity(set.assertions.len());
                for assertion in &set.assertions {
                    grades.push(Box::pin(assertion.grade(output, vars, judges)).await?);
                }
                let passed = grades.iter().filter(|g| g.pass).count();
                let fraction = if grades.is_empty() {
                    1.0
                } else {
                    passed as f64 / grades.len() as f64
                };
                let pass = match set.threshold {
                    Some(threshold) => fraction >= threshold,
                    None => passed == grades.len(),
                };
                let score = weighted_score(
                    set.assertions
                        .iter()
                        .map(Assertion::weight)
                        .zip(grades.iter().map(|g| g.score)),
                );
                let failing: Vec<String> = grades
                    .iter()
                    .filter(|g| !g.pass)
                    .map(|g| g.reason.clone())
                    .collect();
                Ok(Grade {
                    assertion: "assert-set".to_owned(),
                    pass: pass || set.weight == 0.0,
                    score,
                    reason: format!(
                        "{passed} of {} passed{}",
                        grades.len(),
                        if failing.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", failing.join("; "))
                        }
                    ),
                    weight: set.weight,
                    metric: set.metric.clone(),
                })
            }
        }
    }
}

/// Weighted mean of scores; 1 when every weight is 0.
pub fn weighted_score(items: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut total, mut weights) = (0.0, 0.0);
    for (weight, score) in items {
        total += weight * score;
        weights += weight;
    }
    if weights > 0.0 { total / weights } else { 1.0 }
}

/// A list value: an array, or a comma-separated string (as promptfoo accepts).
fn list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(template::text).collect(),
        Value::String(text) => text
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        other => vec![template::text(other)],
    }
}

/// Why an assertion could not be graded (an error of the row, not a failure).
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    /// A `{{var}}` in the value could not be rendered.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A script gave no verdict.
    #[error(transparent)]
    Script(#[from] crate::scripted::ScriptError),
    /// The grader could not be reached or its answer could not be read.
    #[error(transparent)]
    Grader(#[from] crate::graded::GraderError),
}

impl Check {
    async fn grade(
        &self,
        output: &Output<'_>,
        vars: &Vars,
        judges: &[Judge<'_>],
    ) -> Result<Grade, GradeError> {
        let value = self
            .value
            .as_ref()
            .map(|v| template::render_value(v, vars))
            .transpose()?;
        let code = || value.as_ref().map(template::text).unwrap_or_default();
        let scripted = match self.kind {
            Kind::Javascript => Some(
                scripted::run_javascript(&code(), self.threshold, output.input, output.text, vars)
                    .await,
            ),
            Kind::Python => Some(
                scripted::run_python(&code(), self.threshold, output.input, output.text, vars)
                    .await,
            ),
            Kind::Exec => Some(
                scripted::run_exec(&code(), self.threshold, output.input, output.text, vars).await,
            ),
            Kind::Webhook => Some(
                scripted::run_webhook(&code(), self.threshold, output.input, output.text, vars)
                    .await,
            ),
            _ => None,
        };
        let (pass, score, reason) = if let Some(result) = scripted {
            result?
        } else if self.kind.is_model_graded() {
            let pick = |index: Option<usize>| index.and_then(|i| judges.get(i)).copied();
            let graders = graded::Graders {
                judge: pick(self.grader),
                embedder: pick(self.embedder),
            };
            let value = value.clone().unwrap_or(Value::Null);
            graded::evaluate(self.kind, &value, self.threshold, output, vars, graders).await?
        } else {
            self.evaluate(output, value.as_ref())
        };
        // A grader error returned above is never negated into a pass.
        let (pass, score, reason) = if self.negate {
            (!pass, 1.0 - score, format!("not: {reason}"))
        } else {
            (pass, score, reason)
        };
        Ok(Grade {
            assertion: self.name.clone(),
            pass: pass || self.weight == 0.0,
            score,
            reason,
            weight: self.weight,
            metric: self.metric.clone(),
        })
    }

    /// Whether the (un-negated) check holds, its score, and why. Overlap metrics score with
    /// their value; every other check scores 1 or 0.
    fn evaluate(&self, output: &Output<'_>, value: Option<&Value>) -> (bool, f64, String) {
        let reference = || value.map(template::text).unwrap_or_default();
        match self.kind {
            Kind::RetrievalRecall => {
                let limit = self.threshold.unwrap_or(0.8);
                match retrieval_recall(output.text, value) {
                    Ok((recall, found, expected, k)) => (
                        recall >= limit,
                        recall,
                        format!(
                            "recall@{k} {recall:.2}: {found} of {expected} expected documents retrieved (at least {limit})"
                        ),
                    ),
                    Err(reason) => (false, 0.0, reason),
                }
            }
            Kind::RougeN => {
                let (score, limit) = (
                    text_metrics::rouge_n(output.text, &reference(), 1),
                    self.threshold.unwrap_or(0.75),
                );
                (
                    score >= limit,
                    score,
                    format!("ROUGE-1 {score:.3} (at least {limit})"),
                )
            }
            Kind::Bleu => {
                let references = match value {
                    Some(Value::Array(items)) => items.iter().map(template::text).collect(),
                    _ => vec![reference()],
                };
                let (score, limit) = (
                    text_metrics::bleu(output.text, &references),
                    self.threshold.unwrap_or(0.5),
                );
                (
                    score >= limit,
                    score,
                    format!("BLEU {score:.3} (at least {limit})"),
                )
            }
            _ => {
                let (pass, reason) = self.evaluate_binary(output, value);
                (pass, if pass { 1.0 } else { 0.0 }, reason)
            }
        }
    }

    /// Whether a pass/fail check holds, and why.
    fn evaluate_binary(&self, output: &Output<'_>, value: Option<&Value>) -> (bool, String) {
        let text = output.text;
        let value_text = value.map(template::text).unwrap_or_default();
        let shown = |s: &str| -> String {
            let cut: String = s.chars().take(80).collect();
            if s.chars().count() > 80 {
                format!("{cut:?}…")
            } else {
                format!("{cut:?}")
            }
        };
        match self.kind {
            Kind::Equals => {
                let pass = match value {
                    Some(Value::Object(_) | Value::Array(_)) => {
                        serde_json::from_str::<Value>(text).ok().as_ref() == value
                    }
                    Some(Value::String(expected)) => text == expected,
                    _ => text.trim() == value_text,
                };
                (
                    pass,
                    format!(
                        "output {} {} {}",
                        shown(text),
                        if pass { "equals" } else { "does not equal" },
                        shown(&value_text)
                    ),
                )
            }
            Kind::Contains => {
                let pass = text.contains(&value_text);
                (
                    pass,
                    format!(
                        "output {} {}",
                        if pass { "contains" } else { "does not contain" },
                        shown(&value_text)
                    ),
                )
            }
            Kind::Icontains => {
                let pass = text.to_lowercase().contains(&value_text.to_lowercase());
                (
                    pass,
                    format!(
                        "output {} {} (ignoring case)",
                        if pass { "contains" } else { "does not contain" },
                        shown(&value_text)
                    ),
                )
            }
            Kind::ContainsAny | Kind::IcontainsAny | Kind::ContainsAll | Kind::IcontainsAll => {
                let fold = matches!(self.kind, Kind::IcontainsAny | Kind::IcontainsAll);
                let haystack = if fold {
                    text.to_lowercase()
                } else {
                    text.to_owned()
                };
                let needles = value.map(list).unwrap_or_default();
                let found: Vec<&String> = needles
                    .iter()
                    .filter(|n| {
                        haystack.contains(&if fold { n.to_lowercase() } else { (*n).clone() })
                    })
                    .collect();
                let all = matches!(self.kind, Kind::ContainsAll | Kind::IcontainsAll);
                let pass = if all {
                    found.len() == needles.len()
                } else {
                    !found.is_empty()
                };
                let missing: Vec<&String> = needles.iter().filter(|n| !found.contains(n)).collect();
                (
                    pass,
                    if all {
                        format!("missing {missing:?} of {needles:?}")
                    } else {
                        format!("found {found:?} of {needles:?}")
                    },
                )
            }
            Kind::StartsWith => {
                let pass = text.starts_with(&value_text);
                (
                    pass,
                    format!(
                        "output {} with {}",
                        if pass { "starts" } else { "does not start" },
                        shown(&value_text)
                    ),
                )
            }
            Kind::Regex => match Regex::new(&value_text) {
                Ok(regex) => {
                    let pass = regex.is_match(text);
                    (
                        pass,
                        format!(
                            "output {} /{value_text}/",
                            if pass { "matches" } else { "does not match" }
                        ),
                    )
                }
                Err(error) => (
                    false,
                    format!(
                        "invalid regular expression /{value_text}/: {}",
                        crate::suite::compile::one_line(&error.to_string())
                    ),
                ),
            },
            Kind::IsJson => match (serde_json::from_str::<Value>(text), value) {
                (Err(error), _) => (false, format!("output is not valid JSON: {error}")),
                (Ok(_), None) => (true, "output is valid JSON".to_owned()),
                (Ok(instance), Some(schema)) => match text_metrics::check_schema(schema, &instance)
                {
                    Ok(()) => (true, "output is JSON matching the schema".to_owned()),
                    Err(error) => (false, format!("output JSON {error}")),
                },
            },
            Kind::ContainsJson => {
                let mut last_error = None;
                for candidate in json_candidates(text) {
                    match value.map(|schema| text_metrics::check_schema(schema, &candidate)) {
                        None | Some(Ok(())) => {
                            return (true, "output contains valid JSON".to_owned());
                        }
                        Some(Err(error)) => last_error = Some(error),
                    }
                }
                match last_error {
                    Some(error) => (false, format!("embedded JSON {error}")),
                    None => (
                        false,
                        "output contains no valid JSON object or array".to_owned(),
                    ),
                }
            }
            Kind::IsXml | Kind::ContainsXml => {
                let required: Vec<String> = match value {
                    Some(Value::Object(map)) => {
                        map.get("requiredElements").map(list).unwrap_or_default()
                    }
                    Some(other) => list(other),
                    None => Vec::new(),
                };
                let checked = if self.kind == Kind::IsXml {
                    text_metrics::check_xml(text, &required)
                } else {
                    text_metrics::find_xml(text, &required)
                };
                match checked {
                    Ok(()) => (true, "output holds well-formed XML".to_owned()),
                    Err(error) => (false, format!("output XML: {error}")),
                }
            }
            Kind::RougeN | Kind::Bleu | Kind::RetrievalRecall => {
                let (pass, _, reason) = self.evaluate(output, value);
                (pass, reason)
            }
            Kind::Levenshtein => {
                let limit = self.threshold.unwrap_or(5.0);
                let distance = levenshtein(text, &value_text) as f64;
                (
                    distance <= limit,
                    format!(
                        "edit distance {distance} to {} (at most {limit})",
                        shown(&value_text)
                    ),
                )
            }
            Kind::WordCount => {
                let count = text.split_whitespace().count() as f64;
                match value {
                    Some(Value::Object(bounds)) => {
                        let min = bounds.get("min").and_then(Value::as_f64).unwrap_or(0.0);
                        let max = bounds
                            .get("max")
                            .and_then(Value::as_f64)
                            .unwrap_or(f64::INFINITY);
                        (
                            count >= min && count <= max,
                            format!("{count} words (expected {min} to {max})"),
                        )
                    }
                    _ => {
                        let expected = value_text.trim().parse::<f64>().unwrap_or(f64::NAN);
                        (
                            count == expected,
                            format!("{count} words (expected {value_text})"),
                        )
                    }
                }
            }
            Kind::FinishReason => {
                let actual = output.finish_reason.unwrap_or("");
                (
                    actual == value_text,
                    format!("finish reason {actual:?} (expected {value_text:?})"),
                )
            }
            Kind::Cost => match output.cost {
                Some(cost) => {
                    let limit = self.threshold.unwrap_or(f64::INFINITY);
                    (cost <= limit, format!("cost ${cost:.6} (at most ${limit})"))
                }
                None => (false, "cost unknown: set `inputCost` and `outputCost` (USD per token) on the provider".to_owned()),
            },
            Kind::Latency => {
                let limit = self.threshold.unwrap_or(f64::INFINITY);
                (
                    output.latency_ms <= limit,
                    format!("latency {:.1} ms (at most {limit} ms)", output.latency_ms),
                )
            }
            Kind::IsRefusal => {
                let refused = is_refusal(text);
                (
                    refused,
                    if refused {
                        "output is a refusal".to_owned()
                    } else {
                        "output is not a refusal".to_owned()
                    },
                )
            }
            Kind::LlmRubric
            | Kind::Factuality
            | Kind::ModelGradedClosedqa
            | Kind::Similar
            | Kind::AnswerRelevance
            | Kind::ContextFaithfulness
            | Kind::Javascript
            | Kind::Python
            | Kind::Exec
            | Kind::Webhook => (false, format!("`{}` is graded by a model", self.name)),
            Kind::IsValidOpenaiToolsCall => {
                if output.tool_calls.is_empty() {
                    return (false, "output has no tool calls".to_owned());
                }
                for call in output.tool_calls {
                    if call.function.name.is_empty() {
                        return (false, "a tool call has no function name".to_owned());
                    }
                    if !matches!(
                        serde_json::from_str::<Value>(&call.function.arguments),
                        Ok(Value::Object(_))
                    ) {
                        return (
                            false,
                            format!(
                                "arguments of `{}` are not a JSON object",
                                call.function.name
                            ),
                        );
                    }
                }
                (
                    true,
                    format!("{} well-formed tool call(s)", output.tool_calls.len()),
                )
            }
        }
    }
}

/// Recall@k of the expected ids in a retrieval result: `(recall, found, expected, k)`.
fn retrieval_recall(
    text: &str,
    value: Option<&Value>,
) -> Result<(f64, usize, usize, usize), String> {
    let (expected, k): (Vec<String>, Option<usize>) = match value {
        Some(Value::Object(map)) => (
            map.get("ids").map(list).unwrap_or_default(),
            map.get("k").and_then(Value::as_u64).map(|k| k as usize),
        ),
        Some(other) => (list(other), None),
        None => (Vec::new(), None),
    };
    if expected.is_empty() {
        return Err("`retrieval-recall` needs expected document ids".to_owned());
    }
    let json: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("the retrieval result is not JSON: {e}"))?;
    let documents = match &json {
        Value::Array(items) => items.clone(),
        Value::Object(map) => ["documents", "results", "ids", "items", "data", "hits"]
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_array).cloned())
            .ok_or_else(|| {
                "the retrieval result holds no list (documents, results, ids, items, data or hits)"
                    .to_owned()
            })?,
        _ => return Err("the retrieval result is neither a list nor an object".to_owned()),
    };
    let ids: Vec<String> = documents
        .iter()
        .filter_map(|document| match document {
            Value::Object(map) => ["id", "doc_id", "document_id"]
                .iter()
                .find_map(|key| map.get(*key))
                .map(template::text),
            other => Some(template::text(other)),
        })
        .collect();
    let k = k.unwrap_or(ids.len()).min(ids.len());
    let found = expected.iter().filter(|id| ids[..k].contains(id)).count();
    Ok((
        found as f64 / expected.len() as f64,
        found,
        expected.len(),
        k,
    ))
}

/// Every JSON object or array embedded in `text`, in order.
pub fn json_candidates(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .filter_map(|(start, _)| {
            let mut stream =
                serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
            match stream.next() {
                Some(Ok(value @ (Value::Object(_) | Value::Array(_)))) => Some(value),
                _ => None,
            }
        })
}

/// The first JSON object or array embedded in `text`.
pub fn find_json(text: &str) -> Option<Value> {
    json_candidates(text).next()
}

/// Levenshtein distance over chars.
pub fn levenshtein(a: &str, b: &str) -> usize {
    sluice_config::edit_distance(a, b)
}

const REFUSAL_MARKERS: &[&str] = &[
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "as an ai",
    "i cannot",
    "i can't",
    "i can not",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i won't",
    "i will not",
    "i must decline",
    "cannot assist",
    "can't assist",
    "cannot help with",
    "can't help with",
    "against my guidelines",
];

/// A refusal heuristic: empty output, or a refusal phrase near the start.
pub fn is_refusal(text: &str) -> bool {
    let normalized = text.trim().to_lowercase().replace('’', "'");
    if normalized.is_empty() {
        return true;
    }
    let head: String = normalized.chars().take(200).collect();
    REFUSAL_MARKERS.iter().any(|marker| head.contains(marker))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_llm::types::FunctionCall;

    use super::*;

    /// Runs a grading future to completion.
    fn block<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn check(name: &str, value: Option<Value>, threshold: Option<f64>) -> Check {
        let (negate, base) = match name.strip_prefix("not-") {
            Some(base) => (true, base),
            None => (false, name),
        };
        Check {
            name: name.to_owned(),
            kind: Kind::parse(base).unwrap(),
            negate,
            value,
            threshold,
            weight: 1.0,
            metric: None,
            grader: None,
            embedder: None,
        }
    }

    fn output(text: &str) -> Output<'_> {
        Output {
            input: "",
            text,
            finish_reason: Some("stop"),
            latency_ms: 120.0,
            cost: None,
            tool_calls: &[],
        }
    }

    fn passes(name: &str, value: Option<Value>, threshold: Option<f64>, text: &str) -> bool {
        block(Assertion::Check(check(name, value, threshold)).grade(
            &output(text),
            &Vars::new(),
            &[],
        ))
        .unwrap()
        .pass
    }

    #[test]
    fn every_deterministic_type_passes_and_fails() {
        // (type, value, threshold, an output that passes, an output that fails)
        type Case<'a> = (&'a str, Option<Value>, Option<f64>, &'a str, &'a str);
        let cases: Vec<Case<'_>> = vec![
            ("equals", Some(json!("Paris")), None, "Paris", "Paris."),
            (
                "equals",
                Some(json!({"a": 1})),
                None,
                "{\"a\": 1}",
                "{\"a\": 2}",
            ),
            (
                "contains",
                Some(json!("Paris")),
                None,
                "It is Paris.",
                "It is Lyon.",
            ),
            ("icontains", Some(json!("paris")), None, "PARIS!", "Lyon"),
            (
                "contains-any",
                Some(json!(["Paris", "Lyon"])),
                None,
                "Lyon it is",
                "Nice",
            ),
            (
                "contains-all",
                Some(json!("red, blue")),
                None,
                "red and blue",
                "red only",
            ),
            (
                "icontains-any",
                Some(json!(["PARIS"])),
                None,
                "paris",
                "lyon",
            ),
            ("icontains-all", Some(json!(["A", "B"])), None, "a b", "a c"),
            (
                "starts-with",
                Some(json!("Yes")),
                None,
                "Yes, indeed",
                "No, yes",
            ),
            ("regex", Some(json!("^\\d{3}$")), None, "123", "1234"),
            ("is-json", None, None, "{\"x\": [1]}", "{x: 1}"),
            (
                "contains-json",
                None,
                None,
                "Here: {\"x\": 1} ok",
                "Here: {x: 1}",
            ),
            (
                "levenshtein",
                Some(json!("kitten")),
                Some(3.0),
                "sitting",
                "sitting down",
            ),
            (
                "word-count",
                Some(json!(3)),
                None,
                "one two three",
                "one two",
            ),
            (
                "word-count",
                Some(json!({"min": 2, "max": 3})),
                None,
                "one two",
                "one",
            ),
            ("finish-reason", Some(json!("stop")), None, "x", "x"),
            ("latency", None, Some(500.0), "x", "x"),
            (
                "is-refusal",
                None,
                None,
                "I'm sorry, but I can't help with that.",
                "Sure! Here you go.",
            ),
            (
                "rouge-n",
                Some(json!("the cat sat on the mat")),
                None,
                "the cat sat on a mat",
                "a dog ran",
            ),
            (
                "bleu",
                Some(json!("the quick brown fox jumps over the lazy dog")),
                None,
                "the quick brown fox jumps over the lazy dog",
                "a slow red fox",
            ),
            (
                "is-xml",
                Some(json!(["note.to"])),
                None,
                "<note><to>Ada</to></note>",
                "<note><from>Ada</from></note>",
            ),
            (
                "contains-xml",
                None,
                None,
                "Here: <a><b/></a> done",
                "Here: <a><b></a> done",
            ),
            (
                "retrieval-recall",
                Some(json!({"ids": ["d1", "d2", "d3", "d4", "d5"], "k": 5})),
                None,
                "{\"documents\": [{\"id\": \"d1\"}, {\"id\": \"d2\"}, {\"id\": \"d3\"}, {\"id\": \"d4\"}, {\"id\": \"x\"}]}",
                "[\"d1\", \"x\", \"y\", \"z\", \"w\", \"d2\"]",
            ),
            (
                "is-json",
                Some(json!({"type": "object", "required": ["name"]})),
                None,
                "{\"name\": \"Ada\"}",
                "{\"age\": 3}",
            ),
            (
                "contains-json",
                Some(json!({"type": "array"})),
                None,
                "list: [1, 2]",
                "object: {\"a\": 1}",
            ),
        ];
        for (name, value, threshold, passing, failing) in cases {
            assert!(
                passes(name, value.clone(), threshold, passing),
                "{name} should pass on {passing:?}"
            );
            if name == "finish-reason" || name == "latency" {
                continue;
            }
            assert!(
                !passes(name, value.clone(), threshold, failing),
                "{name} should fail on {failing:?}"
            );
            assert!(
                passes(&format!("not-{name}"), value, threshold, failing),
                "not-{name} should pass on {failing:?}"
            );
        }
    }

    #[test]
    fn finish_reason_latency_and_tool_calls_read_the_output_metadata() {
        let length = Output {
            finish_reason: Some("length"),
            latency_ms: 900.0,
            ..output("x")
        };
        let grade = |name: &str, value: Option<Value>, threshold: Option<f64>, out: &Output<'_>| {
            block(Assertion::Check(check(name, value, threshold)).grade(out, &Vars::new(), &[]))
                .unwrap()
                .pass
        };
        assert!(!grade("finish-reason", Some(json!("stop")), None, &length));
        assert!(!grade("latency", None, Some(500.0), &length));
        let good = [ToolCall {
            id: "c".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: "{\"city\": \"Paris\"}".into(),
            },
        }];
        let bad = [ToolCall {
            function: FunctionCall {
                name: "f".into(),
                arguments: "not json".into(),
            },
            ..good[0].clone()
        }];
        let with = |calls: &'static [ToolCall]| Output {
            tool_calls: calls,
            ..output("")
        };
        let good: &'static [ToolCall] = Box::leak(Box::new(good));
        let bad: &'static [ToolCall] = Box::leak(Box::new(bad));
        assert!(grade("is-valid-openai-tools-call", None, None, &with(good)));
        assert!(!grade("is-valid-openai-tools-call", None, None, &with(bad)));
        assert!(!grade(
            "is-valid-openai-tools-call",
            None,
            None,
            &output("text only")
        ));
    }

    #[test]
    fn values_are_templated_with_vars() {
        let vars = Vars::from([("city".to_owned(), json!("Paris"))]);
        let grade = block(
            Assertion::Check(check("contains", Some(json!("{{city}}")), None)).grade(
                &output("It is Paris"),
                &vars,
                &[],
            ),
        )
        .unwrap();
        assert!(grade.pass, "{grade:?}");
    }

    #[test]
    fn weight_zero_reports_but_never_fails_and_sets_use_fractions() {
        let mut metric_only = check("contains", Some(json!("x")), None);
        metric_only.weight = 0.0;
        let grade =
            block(Assertion::Check(metric_only).grade(&output("y"), &Vars::new(), &[])).unwrap();
        assert!(grade.pass && grade.score == 0.0);
        let set = Assertion::Set(AssertionSet {
            assertions: vec![
                Assertion::Check(check("contains", Some(json!("a")), None)),
                Assertion::Check(check("contains", Some(json!("b")), None)),
                Assertion::Check(check("contains", Some(json!("z")), None)),
                Assertion::Check(check("contains", Some(json!("y")), None)),
            ],
            threshold: Some(0.5),
            weight: 1.0,
            metric: None,
        });
        let grade = block(set.grade(&output("a b"), &Vars::new(), &[])).unwrap();
        assert!(grade.pass && (grade.score - 0.5).abs() < 1e-9, "{grade:?}");
        let grade = block(set.grade(&output("a"), &Vars::new(), &[])).unwrap();
        assert!(!grade.pass, "{grade:?}");
    }

    #[test]
    fn weighted_scores_follow_promptfoo() {
        // equals (weight 2) fails, contains (weight 1) passes: 1/3.
        let score = weighted_score([(2.0, 0.0), (1.0, 1.0)].into_iter());
        assert!((score - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(weighted_score([(0.0, 0.0)].into_iter()), 1.0);
    }
}
