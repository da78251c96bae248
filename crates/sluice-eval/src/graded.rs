//! Model-graded assertions: a judge model (any OpenAI-compatible chat provider) or an
//! embedding model decides. The prompts are Sluice's own; the verdict rules are:
//!
//! - `llm-rubric`: the judge answers JSON `{reason, pass, score}`. With a `threshold`, the
//!   score decides (a judge that says `pass` with a score under the threshold fails); without
//!   one, `pass` decides, or `score ≥ 0.5` when `pass` is missing. No `pass` and no `score` is
//!   an error, never a pass.
//! - `factuality`: the judge compares the output with a reference answer and picks a category
//!   (A subset, B superset, C same, D disagrees, E differs only in unimportant ways); D fails.
//! - `model-graded-closedqa`: the judge answers whether the output meets a criterion, Y or N.
//! - `similar`: cosine similarity of embeddings of the output and the value (any of several),
//!   at least `threshold` (default 0.75).
//! - `answer-relevance`: the judge writes three questions the output would answer; the score is
//!   their mean embedding similarity with the query (the `query` var, else the prompt), at least
//!   `threshold` (default 0).
//! - `context-faithfulness`: the judge splits the output into factual statements, then decides
//!   for each whether the `context` var supports it; the score is the supported share, at least
//!   `threshold` (default 0). Both `query` and `context` vars are required.
//!
//! A judge that cannot be reached or whose answer cannot be read is an error of the row, not a
//! failure, and negation never turns it into a pass.

use serde_json::Value;
use sluice_llm::Client;
use sluice_llm::types::{ChatMessage, ChatRequest, EmbeddingRequest, OneOrMany};

use crate::assertion::{Kind, Output, find_json};
use crate::suite::Provider;
use crate::template::Vars;

/// A judge: the provider and its client.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    /// The provider (model, temperature).
    pub provider: &'a Provider,
    /// Its client.
    pub client: &'a Client,
}

/// The models a check may grade with: a chat judge and an embedding model.
#[derive(Clone, Copy, Default)]
pub struct Graders<'a> {
    /// The chat model that judges.
    pub judge: Option<Judge<'a>>,
    /// The embedding model.
    pub embedder: Option<Judge<'a>>,
}

/// What a model-graded check decided: pass, score, reason.
pub type Verdict = (bool, f64, String);

const RUBRIC_SYSTEM: &str = "You are grading the output of an AI system against a rubric. \
Judge only whether the output satisfies the rubric. Reply with a single JSON object and nothing else: \
{\"reason\": \"<one sentence>\", \"pass\": true or false, \"score\": <a number from 0 to 1>}.";

const FACTUALITY_SYSTEM: &str = "You compare a submitted answer with an expert answer to the same question, \
ignoring differences of style, grammar and punctuation. Pick one category: \
(A) the submission is a subset of the expert answer and fully consistent with it; \
(B) the submission is a superset of the expert answer and fully consistent with it; \
(C) the submission contains all the same details as the expert answer; \
(D) the submission disagrees with the expert answer; \
(E) the answers differ, but the differences do not matter for factuality. \
Explain briefly, then end with a last line of the form `Answer: X`.";

const CLOSEDQA_SYSTEM: &str = "You assess whether a submitted answer to a task meets a criterion. \
Reason step by step, then end with a last line holding only Y (it meets the criterion) or N (it does not).";

const QUESTIONS_SYSTEM: &str = "You are given an answer. Write three different questions, each of which \
the answer would fully respond to. Reply with a single JSON object and nothing else: \
{\"questions\": [\"<question>\", \"<question>\", \"<question>\"]}.";

const STATEMENTS_SYSTEM: &str = "You are given a question and an answer. Break the answer into short, \
self-contained factual statements, each understandable on its own (no pronouns that point elsewhere). \
Reply with a single JSON object and nothing else: {\"statements\": [\"<statement>\", ...]}.";

const VERDICTS_SYSTEM: &str = "You are given a context and numbered statements. For each statement, in order, \
decide whether the context supports it: supported means it can be inferred from the context alone. \
Reply with a single JSON object and nothing else: \
{\"verdicts\": [{\"statement\": <number>, \"supported\": true or false}, ...]}.";

/// Why a model-graded assertion gave no verdict (the row is then an error, never a pass).
#[derive(Debug, thiserror::Error)]
pub enum GraderError {
    /// The grader's endpoint failed.
    #[error("{role} `{provider}`")]
    Unreachable {
        /// `grader` or `embedding provider`.
        role: &'static str,
        /// The provider's label.
        provider: String,
        /// Why.
        #[source]
        source: sluice_llm::LlmError,
    },
    /// The assertion could not be graded as configured, or the grader's answer is unreadable.
    #[error("{0}")]
    Answer(String),
}

impl From<String> for GraderError {
    fn from(message: String) -> Self {
        GraderError::Answer(message)
    }
}

/// Grades `output` with a model; `value` is already templated, `vars` are the test's.
pub async fn evaluate(
    kind: Kind,
    value: &Value,
    threshold: Option<f64>,
    output: &Output<'_>,
    vars: &Vars,
    graders: Graders<'_>,
) -> Result<Verdict, GraderError> {
    let (input, output) = (output.input, output.text);
    let judge = || {
        graders
            .judge
            .ok_or_else(|| format!("`{}` has no chat grader", kind.name()))
    };
    let embedder = || {
        graders
            .embedder
            .ok_or_else(|| format!("`{}` has no embedding grader", kind.name()))
    };
    match kind {
        Kind::LlmRubric => {
            let rubric = crate::template::text(value);
            let answer = ask(
                judge()?,
                RUBRIC_SYSTEM,
                &format!("Rubric:\n{rubric}\n\nOutput:\n{output}"),
            )
            .await?;
            Ok(rubric_verdict(&answer, threshold)?)
        }
        Kind::Factuality => {
            let reference = crate::template::text(value);
            let answer = ask(
                judge()?,
                FACTUALITY_SYSTEM,
                &format!(
                    "Question:\n{input}\n\nExpert answer:\n{reference}\n\nSubmission:\n{output}"
                ),
            )
            .await?;
            Ok(factuality_verdict(&answer)?)
        }
        Kind::ModelGradedClosedqa => {
            let criterion = crate::template::text(value);
            let answer = ask(
                judge()?,
                CLOSEDQA_SYSTEM,
                &format!("Task:\n{input}\n\nSubmission:\n{output}\n\nCriterion:\n{criterion}"),
            )
            .await?;
            Ok(closedqa_verdict(&answer)?)
        }
        Kind::Similar => similar(value, threshold.unwrap_or(0.75), output, embedder()?).await,
        Kind::AnswerRelevance => {
            let query = vars
                .get("query")
                .map_or_else(|| input.to_owned(), crate::template::text);
            let answer = ask(judge()?, QUESTIONS_SYSTEM, &format!("Answer:\n{output}")).await?;
            let questions = string_list(&answer, "questions")?;
            if questions.is_empty() {
                return Err(GraderError::Answer(
                    "the grader wrote no questions".to_owned(),
                ));
            }
            let mut inputs = vec![query];
            inputs.extend(questions.iter().cloned());
            let vectors = embed(embedder()?, inputs).await?;
            let mean = vectors[1..]
                .iter()
                .map(|v| cosine(&vectors[0], v))
                .sum::<f64>()
                / questions.len() as f64;
            let score = mean.clamp(0.0, 1.0);
            let threshold = threshold.unwrap_or(0.0);
            Ok((
                score >= threshold,
                score,
                format!(
                    "relevance {score:.3} (at least {threshold}) over the questions {questions:?}"
                ),
            ))
        }
        Kind::ContextFaithfulness => {
            let query = required_var(vars, "query", kind)?;
            let context = required_var(vars, "context", kind)?;
            let judge = judge()?;
            let answer = ask(
                judge,
                STATEMENTS_SYSTEM,
                &format!("Question:\n{query}\n\nAnswer:\n{output}"),
            )
            .await?;
            let statements = string_list(&answer, "statements")?;
            let threshold = threshold.unwrap_or(0.0);
            if statements.is_empty() {
                return Ok((
                    true,
                    1.0,
                    "the output makes no factual statements".to_owned(),
                ));
            }
            let numbered: String = statements
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{}. {s}\n", i + 1))
                .collect();
            let answer = ask(
                judge,
                VERDICTS_SYSTEM,
                &format!("Context:\n{context}\n\nStatements:\n{numbered}"),
            )
            .await?;
            let supported = verdicts(&answer, statements.len())?;
            let unsupported: Vec<&String> = statements
                .iter()
                .zip(&supported)
                .filter(|(_, ok)| !**ok)
                .map(|(s, _)| s)
                .collect();
            let score = (statements.len() - unsupported.len()) as f64 / statements.len() as f64;
            let mut reason = format!(
                "{} of {} statements supported by the context ({score:.2}, at least {threshold})",
                statements.len() - unsupported.len(),
                statements.len()
            );
            if !unsupported.is_empty() {
                reason.push_str(&format!("; unsupported: {unsupported:?}"));
            }
            Ok((score >= threshold, score, reason))
        }
        other => Err(GraderError::Answer(format!(
            "`{}` is not a model-graded assertion",
            other.name()
        ))),
    }
}

async fn ask(judge: Judge<'_>, system: &str, user: &str) -> Result<String, GraderError> {
    let request = ChatRequest {
        model: judge.provider.target.model.clone(),
        messages: vec![
            ChatMessage::new("system", system),
            ChatMessage::new("user", user),
        ],
        temperature: Some(judge.provider.temperature.unwrap_or(0.0)),
        max_tokens: judge.provider.max_tokens,
        seed: judge.provider.seed,
        ..ChatRequest::default()
    };
    let generation =
        judge
            .client
            .chat(&request)
            .await
            .map_err(|source| GraderError::Unreachable {
                role: "grader",
                provider: judge.provider.label.clone(),
                source,
            })?;
    Ok(generation.text)
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "pass" => Some(true),
            "false" | "no" | "fail" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Reads a rubric judge's answer.
pub fn rubric_verdict(answer: &str, threshold: Option<f64>) -> Result<Verdict, String> {
    let shown: String = answer.chars().take(120).collect();
    let json = find_json(answer)
        .filter(Value::is_object)
        .ok_or_else(|| format!("the grader's answer holds no JSON verdict: {shown:?}"))?;
    let score = number(json.get("score"));
    let pass = boolean(json.get("pass"));
    if let Some(score) = score
        && !(0.0..=1.0).contains(&score)
    {
        return Err(format!("the grader's score {score} is not between 0 and 1"));
    }
    let reason = json
        .get("reason")
        .map(crate::template::text)
        .unwrap_or_default();
    let (pass, score) = match (threshold, score, pass) {
        (Some(threshold), Some(score), _) => (score >= threshold, score),
        (Some(_), None, _) => {
            return Err("the grader gave no `score`, which a `threshold` needs".to_owned());
        }
        (None, _, Some(pass)) => (pass, score.unwrap_or(if pass { 1.0 } else { 0.0 })),
        (None, Some(score), None) => (score >= 0.5, score),
        (None, None, None) => {
            return Err(format!(
                "the grader's verdict has neither `pass` nor `score`: {shown:?}"
            ));
        }
    };
    let detail = match threshold {
        Some(threshold) => format!("score {score:.2} against threshold {threshold}"),
        None => format!("score {score:.2}"),
    };
    Ok((pass, score, format!("grader: {reason} ({detail})")))
}

/// Reads a factuality judge's answer: the category after `Answer:`, else the last lone A–E.
pub fn factuality_verdict(answer: &str) -> Result<Verdict, String> {
    let category = answer
        .rsplit_once("Answer:")
        .and_then(|(_, rest)| rest.trim().trim_start_matches('(').chars().next())
        .filter(|c| ('A'..='E').contains(c))
        .or_else(|| {
            answer
                .rsplit(|c: char| !c.is_ascii_alphanumeric())
                .filter(|word| word.len() == 1)
                .filter_map(|word| word.chars().next())
                .find(|c| ('A'..='E').contains(c))
        })
        .ok_or_else(|| {
            format!(
                "the grader named no category A–E: {:?}",
                answer.chars().take(120).collect::<String>()
            )
        })?;
    let meaning = match category {
        'A' => "a consistent subset of the reference",
        'B' => "a consistent superset of the reference",
        'C' => "the same details as the reference",
        'D' => "disagrees with the reference",
        _ => "differs from the reference only in ways that do not matter",
    };
    let pass = category != 'D';
    Ok((
        pass,
        if pass { 1.0 } else { 0.0 },
        format!("grader: ({category}) {meaning}"),
    ))
}

/// Reads a closed-QA judge's answer: Y or N on the last non-empty line.
pub fn closedqa_verdict(answer: &str) -> Result<Verdict, String> {
    let last = answer
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let token = last
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_ascii_uppercase();
    match token.as_str() {
        "Y" | "YES" => Ok((true, 1.0, "grader: meets the criterion".to_owned())),
        "N" | "NO" => Ok((false, 0.0, "grader: does not meet the criterion".to_owned())),
        _ => Err(format!(
            "the grader's last line is neither Y nor N: {last:?}"
        )),
    }
}

async fn similar(
    value: &Value,
    threshold: f64,
    output: &str,
    judge: Judge<'_>,
) -> Result<Verdict, GraderError> {
    let references: Vec<String> = match value {
        Value::Array(items) => items.iter().map(crate::template::text).collect(),
        other => vec![crate::template::text(other)],
    };
    let mut input = vec![output.to_owned()];
    input.extend(references);
    let vectors = embed(judge, input).await?;
    let best = vectors[1..]
        .iter()
        .map(|v| cosine(&vectors[0], v))
        .fold(f64::NEG_INFINITY, f64::max);
    Ok((
        best >= threshold,
        best.clamp(0.0, 1.0),
        format!("cosine similarity {best:.3} (at least {threshold})"),
    ))
}

/// Embeds `input` in one request; the vectors come back in input order.
async fn embed(embedder: Judge<'_>, input: Vec<String>) -> Result<Vec<Vec<f32>>, GraderError> {
    let count = input.len();
    let request = EmbeddingRequest {
        model: embedder.provider.target.model.clone(),
        input: OneOrMany::Many(input),
        extra: serde_json::Map::new(),
    };
    let (response, _) = embedder
        .client
        .embeddings(&request)
        .await
        .map_err(|source| GraderError::Unreachable {
            role: "embedding provider",
            provider: embedder.provider.label.clone(),
            source,
        })?;
    let mut vectors: Vec<(u32, Vec<f32>)> = response
        .data
        .into_iter()
        .map(|d| (d.index, d.embedding))
        .collect();
    vectors.sort_by_key(|(index, _)| *index);
    if vectors.len() != count {
        return Err(GraderError::Answer(format!(
            "embedding provider `{}` returned {} vectors for {count} inputs",
            embedder.provider.label,
            vectors.len(),
        )));
    }
    Ok(vectors.into_iter().map(|(_, v)| v).collect())
}

/// A var a check cannot do without, as text (a list is joined by lines).
fn required_var(vars: &Vars, name: &str, kind: Kind) -> Result<String, String> {
    match vars.get(name) {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(crate::template::text)
            .collect::<Vec<_>>()
            .join("\n")),
        Some(Value::Null) | None => Err(format!(
            "`{}` needs a `{name}` var in the test's vars",
            kind.name()
        )),
        Some(value) => Ok(crate::template::text(value)),
    }
}

/// The list a judge answered: `{"<key>": [...]}` or a bare array.
fn json_list(answer: &str, key: &str) -> Result<Vec<Value>, String> {
    let shown: String = answer.chars().take(120).collect();
    match find_json(answer) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Object(mut map)) => match map.remove(key) {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(format!(
                "the grader's answer has no `{key}` list: {shown:?}"
            )),
        },
        _ => Err(format!(
            "the grader's answer holds no JSON `{key}` list: {shown:?}"
        )),
    }
}

/// Reads a judge's JSON list of strings: `{"<key>": [...]}` or a bare array.
pub fn string_list(answer: &str, key: &str) -> Result<Vec<String>, String> {
    json_list(answer, key)?
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            other => Err(format!("the grader's `{key}` list holds {other}, not text")),
        })
        .collect()
}

/// Reads a judge's per-statement verdicts; exactly one for each of `count` statements.
pub fn verdicts(answer: &str, count: usize) -> Result<Vec<bool>, String> {
    let items = json_list(answer, "verdicts")?;
    if items.len() != count {
        return Err(format!(
            "the grader gave {} verdicts for {count} statements",
            items.len()
        ));
    }
    items
        .iter()
        .map(|item| {
            let verdict = match item {
                Value::Object(map) => map.get("supported").or_else(|| map.get("verdict")),
                other => Some(other),
            };
            boolean(verdict)
                .ok_or_else(|| format!("the grader's verdict {item} is not true or false"))
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rubric_scores_beat_a_contradicting_pass() {
        let lenient = r#"Here: {"reason": "meh", "pass": true, "score": 0.2}"#;
        assert!(
            !rubric_verdict(lenient, Some(0.5)).unwrap().0,
            "a score under the threshold must fail"
        );
        assert!(
            rubric_verdict(lenient, None).unwrap().0,
            "without a threshold, pass decides"
        );
        assert!(rubric_verdict(r#"{"score": "0.8"}"#, None).unwrap().0);
        assert!(!rubric_verdict(r#"{"pass": "false"}"#, None).unwrap().0);
        assert!(rubric_verdict(r#"{"reason": "no verdict"}"#, None).is_err());
        assert!(rubric_verdict("I think it passes", None).is_err());
        assert!(rubric_verdict(r#"{"pass": true}"#, Some(0.5)).is_err());
        assert!(rubric_verdict(r#"{"score": 7}"#, None).is_err());
    }

    #[test]
    fn statement_lists_and_verdicts_are_read_strictly() {
        assert_eq!(
            string_list(
                r#"Sure: {"statements": ["Paris is a city.", " "]}"#,
                "statements"
            )
            .unwrap_err(),
            "the grader's `statements` list holds \" \", not text"
        );
        assert_eq!(
            string_list(r#"["a?", "b?"]"#, "questions").unwrap(),
            ["a?", "b?"]
        );
        assert!(string_list("1. a?\n2. b?", "questions").is_err());
        assert!(string_list(r#"{"items": []}"#, "questions").is_err());
        let answer = r#"{"verdicts": [{"statement": 1, "supported": true}, {"statement": 2, "supported": "no"}]}"#;
        assert_eq!(verdicts(answer, 2).unwrap(), [true, false]);
        assert!(
            verdicts(answer, 3)
                .unwrap_err()
                .contains("2 verdicts for 3")
        );
        assert!(verdicts(r#"{"verdicts": [{"supported": "maybe"}]}"#, 1).is_err());
        assert!(verdicts("all supported", 1).is_err());
    }

    #[test]
    fn factuality_and_closedqa_read_the_final_answer() {
        assert!(factuality_verdict("Both say Paris.\nAnswer: C").unwrap().0);
        assert!(!factuality_verdict("They conflict.\nAnswer: (D)").unwrap().0);
        assert!(factuality_verdict("The category is B").unwrap().0);
        assert!(factuality_verdict("no idea").is_err());
        assert!(closedqa_verdict("It is concise.\nY").unwrap().0);
        assert!(!closedqa_verdict("Too long.\n\nN.").unwrap().0);
        assert!(closedqa_verdict("Maybe").is_err());
    }
}
