//! Instant queries against a Prometheus-compatible HTTP API (`/api/v1/query`), read as one
//! number: what rollout rules and readiness checks measure when their source is Prometheus.

use serde_json::Value;

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrometheusError {
    /// The server could not be reached.
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    /// It answered something that is not JSON.
    #[error("Prometheus answered something that is not JSON: {0}")]
    NotJson(String),
    /// The query failed on the server.
    #[error("Prometheus: {0}")]
    Failed(String),
    /// The answer is not one number (several series, a matrix, a string).
    #[error("Prometheus returned {0}")]
    NotOneNumber(String),
}

/// Runs an instant query against the API at `url`: `Ok(None)` when it selects nothing.
pub async fn query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
) -> Result<Option<f64>, PrometheusError> {
    let request = client
        .get(format!("{}/api/v1/query", url.trim_end_matches('/')))
        .query(&[("query", query)]);
    let response = request
        .send()
        .await
        .map_err(|e| PrometheusError::Unreachable(e.to_string()))?;
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| PrometheusError::NotJson(e.to_string()))?;
    value(&body)
}

/// The one number of an instant-query answer: `Ok(None)` for an empty result or NaN, an
/// error for a failed query, several series, or a value that is not a number.
pub fn value(body: &Value) -> Result<Option<f64>, PrometheusError> {
    if body["status"] != "success" {
        return Err(PrometheusError::Failed(
            body["error"]
                .as_str()
                .unwrap_or("the query failed")
                .to_owned(),
        ));
    }
    let data = &body["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) => return Ok(None),
            Some([one]) => &one["value"],
            Some(many) => {
                return Err(PrometheusError::NotOneNumber(format!(
                    "{} series; the query must give one number",
                    many.len()
                )));
            }
            None => return Err(PrometheusError::NotOneNumber("no result list".into())),
        },
        other => {
            return Err(PrometheusError::NotOneNumber(format!(
                "a {other:?} result; expected a vector or a scalar"
            )));
        }
    };
    let text = sample[1].as_str().unwrap_or_default();
    match text.parse::<f64>() {
        Ok(v) if v.is_nan() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(PrometheusError::NotOneNumber(format!(
            "`{text}`, not a number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_give_one_number_or_say_why_not() {
        let vector = |result: Value| json!({"status": "success", "data": {"resultType": "vector", "result": result}});
        assert_eq!(
            value(&vector(json!([{"metric": {}, "value": [1.0, "0.25"]}]))),
            Ok(Some(0.25))
        );
        assert_eq!(value(&vector(json!([]))), Ok(None));
        assert!(value(&vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]))).is_err());
        assert_eq!(
            value(
                &json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}})
            ),
            Ok(Some(3.0))
        );
        assert_eq!(value(&vector(json!([{"value": [1, "NaN"]}]))), Ok(None));
        let error = value(&json!({"status": "error", "error": "parse error at char 4"}));
        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("Prometheus: parse error at char 4".to_owned())
        );
    }
}
