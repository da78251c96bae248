//! The generic `http` provider: any JSON (or text) API as the system under test, so that API
//! contract, retrieval and health checks are suites too.
//!
//! Config (promptfoo's names): `url`, `method` (default POST), `headers`, `body` (a string or
//! an object; every string in it is templated with the vars and `{{prompt}}`),
//! `transformResponse` (`json`, `json.path.to[0].field` or `text`; JavaScript is not run) and
//! `validateStatus` (comparisons of `status` joined by `&&`, e.g.
//! `status >= 200 && status < 300`, the default). A status outside the rule is an error.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use crate::template::{self, Vars};

/// A comparison in a `validateStatus` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

/// A compiled `http` provider config.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The URL (templated).
    pub url: String,
    /// The method.
    pub method: String,
    /// Headers (values templated).
    pub headers: BTreeMap<String, String>,
    /// The body, when there is one.
    pub body: Option<Value>,
    /// How the output is taken from the response: `None` is the raw text; `Some(path)` is that
    /// path into the JSON body (empty for the whole body).
    pub json_path: Option<String>,
    /// `validateStatus`, as a conjunction.
    pub valid_status: Vec<(Comparison, u16)>,
}

/// Parses `transformResponse`.
pub fn parse_transform(expression: &str) -> Result<Option<String>, String> {
    let expression = expression.trim();
    if expression == "text" {
        return Ok(None);
    }
    if expression == "json" {
        return Ok(Some(String::new()));
    }
    match expression.strip_prefix("json.") {
        Some(path)
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')) =>
        {
            Ok(Some(path.to_owned()))
        }
        _ => Err(format!(
            "unsupported transformResponse {expression:?}: expected `json`, `text` or a path such as `json.data.output[0]` (JavaScript is not run)"
        )),
    }
}

/// Parses `validateStatus`.
pub fn parse_status_rule(rule: &str) -> Result<Vec<(Comparison, u16)>, String> {
    let invalid = || {
        format!(
            "unsupported validateStatus {rule:?}: expected comparisons of `status` joined by `&&`, e.g. `status >= 200 && status < 300`"
        )
    };
    rule.split("&&")
        .map(|part| {
            let part = part
                .trim()
                .strip_prefix("status")
                .ok_or_else(invalid)?
                .trim();
            let (comparison, rest) = [
                ("===", Comparison::Equal),
                ("!==", Comparison::NotEqual),
                ("==", Comparison::Equal),
                ("!=", Comparison::NotEqual),
                ("<=", Comparison::LessOrEqual),
                (">=", Comparison::GreaterOrEqual),
                ("<", Comparison::Less),
                (">", Comparison::Greater),
            ]
            .iter()
            .find_map(|(symbol, comparison)| {
                part.strip_prefix(symbol).map(|rest| (*comparison, rest))
            })
            .ok_or_else(invalid)?;
            let number = rest.trim().parse::<u16>().map_err(|_| invalid())?;
            Ok((comparison, number))
        })
        .collect()
}

/// Whether `status` satisfies the rule.
pub fn status_ok(rule: &[(Comparison, u16)], status: u16) -> bool {
    rule.iter().all(|(comparison, n)| match comparison {
        Comparison::Equal => status == *n,
        Comparison::NotEqual => status != *n,
        Comparison::Less => status < *n,
        Comparison::LessOrEqual => status <= *n,
        Comparison::Greater => status > *n,
        Comparison::GreaterOrEqual => status >= *n,
    })
}

/// Why an `http` provider gave no output (the row is then an error).
#[derive(Debug, thiserror::Error)]
pub enum HttpProviderError {
    /// A `{{var}}` in the URL, a header or the body could not be rendered.
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    /// The method is not an HTTP method.
    #[error("invalid HTTP method {0:?}")]
    Method(String),
    /// The request could not be sent or its answer read.
    #[error("{url}")]
    Request {
        /// The rendered URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// An answer its `validateStatus`, JSON or `transformResponse` does not accept.
    #[error("{0}")]
    Answer(String),
}

/// Calls the API with `prompt` and the vars; returns the output text and the latency in ms.
pub async fn call(
    config: &HttpConfig,
    client: &reqwest::Client,
    prompt: &str,
    vars: &Vars,
) -> Result<(String, f64), HttpProviderError> {
    let mut vars = vars.clone();
    vars.insert("prompt".to_owned(), Value::String(prompt.to_owned()));
    let url = template::render(&config.url, &vars)?;
    let method = reqwest::Method::from_bytes(config.method.as_bytes())
        .map_err(|_| HttpProviderError::Method(config.method.clone()))?;
    let mut request = client.request(method, &url);
    for (name, value) in &config.headers {
        request = request.header(name, template::render(value, &vars)?);
    }
    match config
        .body
        .as_ref()
        .map(|b| template::render_value(b, &vars))
        .transpose()?
    {
        Some(Value::String(text)) => request = request.body(text),
        Some(body) => request = request.json(&body),
        None => {}
    }
    let started = Instant::now();
    let failed = |source| HttpProviderError::Request {
        url: url.clone(),
        source,
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(failed)?;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !status_ok(&config.valid_status, status) {
        return Err(HttpProviderError::Answer(format!(
            "{url} answered {status}, which validateStatus does not accept: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    let output = match &config.json_path {
        None => text,
        Some(path) => {
            let json: Value = serde_json::from_str(&text).map_err(|e| {
                HttpProviderError::Answer(format!(
                    "{url} did not answer JSON ({e}): {}",
                    text.chars().take(120).collect::<String>()
                ))
            })?;
            let picked = if path.is_empty() {
                json
            } else {
                template::lookup_path(&json, path).ok_or_else(|| {
                    HttpProviderError::Answer(format!("{url}: the response has no `json.{path}`"))
                })?
            };
            template::text(&picked)
        }
    };
    Ok((output, latency_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_and_status_rules_parse() {
        assert_eq!(
            parse_transform("json.data.items[0].text").unwrap(),
            Some("data.items[0].text".to_owned())
        );
        assert_eq!(parse_transform("json").unwrap(), Some(String::new()));
        assert_eq!(parse_transform("text").unwrap(), None);
        assert!(parse_transform("json.map(x => x.id)").is_err());
        let rule = parse_status_rule("status >= 200 && status < 300").unwrap();
        assert!(status_ok(&rule, 204) && !status_ok(&rule, 404));
        assert!(status_ok(
            &parse_status_rule("status === 404").unwrap(),
            404
        ));
        assert!(parse_status_rule("response.ok").is_err());
    }
}
