//! The OpenAPI 3.0 document of the API, served at `/api/v1/openapi.json`: every path, its
//! parameters and the schema of each answer (errors included), so that clients can be
//! generated and the server fuzzed against its own description.

use serde_json::{Value, json};

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn answers(ok: &str, errors: &[u16]) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "OK", "content": {"application/json": {"schema": reference(ok)}}}),
    );
    for code in errors {
        let description = match code {
            400 => "The query is not valid",
            404 => "No such resource",
            409 => "The server was not started with what the request needs",
            _ => "Error",
        };
        responses.insert(
            code.to_string(),
            json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}}),
        );
    }
    Value::Object(responses)
}

fn stream_answers() -> Value {
    json!({
        "200": {"description": "Events: `id` (sequence), `event` (kind), `data` (the event as JSON); `end` when the run finished", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        "404": {"description": "No such run", "content": {"application/json": {"schema": reference("Error")}}},
    })
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn limit() -> Value {
    json!({"name": "limit", "in": "query", "description": "How many, at most.", "schema": {"type": "integer", "minimum": 1, "maximum": crate::api::MAX_LIMIT, "default": crate::api::DEFAULT_LIMIT}})
}

fn list_parameters(with_kind: bool) -> Value {
    let mut parameters = vec![
        json!({"name": "status", "in": "query", "schema": {"type": "string", "enum": ["running", "passed", "failed", "errored"]}}),
        limit(),
    ];
    if with_kind {
        parameters.insert(
            0,
            json!({"name": "kind", "in": "query", "schema": {"type": "string", "enum": sluice_core::RunKind::ALL.map(sluice_core::RunKind::as_str)}}),
        );
    }
    Value::Array(parameters)
}

/// The answer of `/api/v1/cost`.
fn cost_schema() -> Value {
    json!({
        "type": "object",
        "required": ["route", "window_s", "versions"],
        "properties": {
            "route": {"type": "string"},
            "window_s": {"type": "integer"},
            "versions": {"type": "array", "items": {
                "type": "object",
                "required": ["version", "requests", "priced", "prompt_tokens", "completion_tokens", "cost_usd", "cost_per_request_usd", "cost_per_hour_usd"],
                "properties": {
                    "version": {"type": "string"},
                    "requests": {"type": "integer"},
                    "priced": {"type": "integer"},
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "cost_usd": {"type": "number", "nullable": true},
                    "cost_per_request_usd": {"type": "number", "nullable": true},
                    "cost_per_hour_usd": {"type": "number", "nullable": true},
                },
            }},
        },
    })
}

fn get(summary: &str, parameters: Value, responses: Value) -> Value {
    json!({"get": {"summary": summary, "parameters": parameters, "responses": responses}})
}

/// The document.
pub fn document() -> Value {
    let any = json!({});
    let run = json!({
        "type": "object",
        "required": ["id", "kind", "name", "status", "config", "summary", "started_at_ms"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": sluice_core::RunKind::ALL.map(sluice_core::RunKind::as_str)},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "passed", "failed", "errored"]},
            "config": any,
            "summary": any,
            "started_at_ms": {"type": "integer"},
            "finished_at_ms": {"type": "integer", "nullable": true},
        },
    });
    let event = json!({
        "type": "object",
        "required": ["seq", "subject", "kind", "payload", "at_ms"],
        "properties": {
            "seq": {"type": "integer"},
            "subject": {"type": "string"},
            "kind": {"type": "string"},
            "payload": any,
            "at_ms": {"type": "integer"},
        },
    });
    let flip = json!({
        "type": "object",
        "required": ["key", "description", "baseline", "candidate"],
        "properties": {
            "key": {"type": "string"},
            "description": {"type": "string"},
            "baseline": {"type": "number"},
            "candidate": {"type": "number"},
        },
    });
    let number = json!({"type": "number", "nullable": true});
    let drift = json!({
        "type": "object",
        "required": ["route", "version", "reference", "current", "samples", "drifted", "descriptors"],
        "properties": {
            "route": {"type": "string"},
            "version": {"type": "string"},
            "reference": {"type": "object"},
            "current": {"type": "object"},
            "samples": {"type": "array", "items": {"type": "integer"}},
            "drifted": {"type": "array", "items": {"type": "string"}},
            "descriptors": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "measure", "verdict"],
                "properties": {
                    "name": {"type": "string"},
                    "measure": {"type": "string", "enum": ["psi", "jensen_shannon"]},
                    "value": {"type": "number", "nullable": true},
                    "verdict": {"type": "string", "enum": ["ok", "warn", "alert", "insufficient"]},
                    "reference": {"type": "number", "nullable": true},
                    "current": {"type": "number", "nullable": true},
                },
            }},
        },
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only JSON API over Sluice's store: runs, run diffs, rollouts, pipelines and the model registry.",
        },
        "paths": {
            "/health": get("Liveness", json!([]), answers("Health", &[])),
            "/api/v1/runs": get("Runs, newest first", list_parameters(true), answers("RunList", &[400])),
            "/api/v1/runs/{id}": get(
                "One run and a page of its results",
                json!([
                    path_parameter("id", "The run's id"),
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 0}},
                    limit(),
                    {"name": "failures_first", "in": "query", "schema": {"type": "boolean", "default": false}},
                ]),
                answers("RunDetail", &[400, 404]),
            ),
            "/api/v1/runs/{baseline}/diff/{candidate}": get(
                "Two eval runs compared test by test, with the paired significance test",
                json!([
                    path_parameter("baseline", "The baseline eval run's id"),
                    path_parameter("candidate", "The candidate eval run's id"),
                    {"name": "confidence", "in": "query", "schema": {"type": "number", "minimum": 0.5, "maximum": 1, "exclusiveMaximum": true, "default": 0.95}},
                ]),
                answers("Diff", &[400, 404]),
            ),
            "/api/v1/rollouts": get("Rollout runs, newest first", list_parameters(false), answers("RunList", &[400])),
            "/api/v1/rollouts/{id}": get(
                "One rollout run and its events",
                json!([path_parameter("id", "The rollout run's id")]),
                answers("RunEvents", &[404]),
            ),
            "/api/v1/rollouts/{id}/stream": get(
                "A rollout's events as Server-Sent Events, live until it ends (`Last-Event-ID` resumes)",
                json!([path_parameter("id", "The rollout run's id")]),
                stream_answers(),
            ),
            "/api/v1/pipelines/{id}/stream": get(
                "A pipeline run's stage outcomes as Server-Sent Events, live until it ends",
                json!([path_parameter("id", "The pipeline run's id")]),
                stream_answers(),
            ),
            "/api/v1/rollouts/{id}/{action}": {"post": {
                "summary": "Send a running rollout's controller a command (needs the admin token)",
                "security": [{"admin": []}],
                "parameters": [
                    path_parameter("id", "The rollout run's id"),
                    {"name": "action", "in": "path", "required": true, "schema": {"type": "string", "enum": ["promote", "promote-full", "pause", "resume", "abort", "undo"]}},
                ],
                "responses": {
                    "200": {"description": "Sent", "content": {"application/json": {"schema": reference("Sent")}}},
                    "401": {"description": "No admin token, or the wrong one", "content": {"application/json": {"schema": reference("Error")}}},
                    "403": {"description": "Actions are off (no admin token configured)", "content": {"application/json": {"schema": reference("Error")}}},
                    "404": {"description": "No such rollout", "content": {"application/json": {"schema": reference("Error")}}},
                    "409": {"description": "The rollout is not running", "content": {"application/json": {"schema": reference("Error")}}},
                },
            }},
            "/api/v1/pipelines": get("Pipeline runs, newest first", list_parameters(false), answers("RunList", &[400])),
            "/api/v1/pipelines/{id}": get(
                "One pipeline run and its stages' outcomes",
                json!([path_parameter("id", "The pipeline run's id")]),
                answers("RunEvents", &[404]),
            ),
            "/api/v1/models": get("Registered models", json!([]), answers("Models", &[])),
            "/api/v1/alerts": get(
                "A route's open alerts and alert history",
                json!([{"name": "route", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}}]),
                answers("Alerts", &[400]),
            ),
            "/api/v1/feedback": get(
                "A route's ratings per version over a window, and the retraining triggers that fired",
                json!([
                    {"name": "route", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}},
                    {"name": "window_s", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 3600}},
                ]),
                answers("Feedback", &[400]),
            ),
            "/api/v1/trends": get(
                "Each eval suite's pass rate and cost, and each benchmarked model's p95 TTFT, error rate and throughput, over their last runs",
                json!([
                    {"name": "limit", "in": "query", "description": "Runs of each kind read, newest first.", "schema": {"type": "integer", "minimum": 1, "maximum": crate::api::MAX_LIMIT, "default": 200}},
                ]),
                answers("Trends", &[400]),
            ),
            "/api/v1/cost": get(
                "What a route's traffic cost per version over a window, from the gateway's request log",
                json!([
                    {"name": "route", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}},
                    {"name": "window_s", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "default": 3600}},
                ]),
                answers("Cost", &[400]),
            ),
            "/api/v1/drift": get(
                "One version's drift: its requests in the current window against the reference window, descriptor by descriptor",
                json!([
                    {"name": "route", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}},
                    {"name": "version", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}},
                    {"name": "reference_from", "in": "query", "description": "Unix ms", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}},
                    {"name": "reference_to", "in": "query", "description": "Unix ms", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}},
                    {"name": "current_from", "in": "query", "description": "Unix ms", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}},
                    {"name": "current_to", "in": "query", "description": "Unix ms", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}},
                    {"name": "min_samples", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
                    {"name": "embeddings", "in": "query", "description": "Also compare the prompts' embeddings (the server's --embeddings-url)", "schema": {"type": "boolean"}},
                ]),
                answers("Drift", &[400, 409]),
            ),
            "/api/v1/models/{name}/versions": get(
                "A model's versions with their lineage",
                json!([path_parameter("name", "The model's name")]),
                answers("Versions", &[404]),
            ),
            "/api/v1/aliases/{name}/history": get(
                "Alias moves of a model (`chat`) or of one alias (`chat@production`), oldest first",
                json!([path_parameter("name", "`MODEL` or `MODEL@ALIAS`")]),
                answers("AliasHistory", &[404]),
            ),
        },
        "components": {
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Sent": {
                    "type": "object",
                    "required": ["sent", "run", "message"],
                    "properties": {"sent": {"type": "string"}, "run": {"type": "string"}, "message": {"type": "string"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["type", "message"],
                        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    }},
                },
                "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
                "Run": run,
                "Event": event,
                "RunList": {"type": "object", "required": ["runs"], "properties": {"runs": {"type": "array", "items": reference("Run")}}},
                "RunDetail": {
                    "type": "object",
                    "required": ["run", "total_results", "offset", "results"],
                    "properties": {
                        "run": reference("Run"),
                        "total_results": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "results": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "RunEvents": {
                    "type": "object",
                    "required": ["run", "events"],
                    "properties": {"run": reference("Run"), "events": {"type": "array", "items": reference("Event")}},
                },
                "Flip": flip,
                "Drift": drift,
                "Alerts": {
                    "type": "object",
                    "required": ["route", "open", "history"],
                    "properties": {
                        "route": {"type": "string"},
                        "open": {"type": "array", "items": {"type": "object"}},
                        "history": {"type": "array", "items": reference("Event")},
                    },
                },
                "Cost": cost_schema(),
                "Trends": {
                    "type": "object",
                    "required": ["series"],
                    "properties": {"series": {"type": "array", "items": {
                        "type": "object",
                        "required": ["kind", "name", "providers", "points"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["eval", "bench"]},
                            "name": {"type": "string"},
                            "providers": {"type": "string", "nullable": true},
                            "points": {"type": "array", "items": {
                                "type": "object",
                                "required": ["run_id", "at_ms", "figures"],
                                "properties": {
                                    "run_id": {"type": "string"},
                                    "at_ms": {"type": "integer"},
                                    "figures": {"type": "object", "additionalProperties": {"type": "number"}},
                                },
                            }},
                        },
                    }}},
                },
                "Feedback": {
                    "type": "object",
                    "required": ["route", "window_s", "versions", "triggers"],
                    "properties": {
                        "route": {"type": "string"},
                        "window_s": {"type": "integer"},
                        "versions": {"type": "array", "items": {"type": "object"}},
                        "triggers": {"type": "array", "items": reference("Event")},
                    },
                },
                "Diff": {
                    "type": "object",
                    "required": ["baseline", "candidate", "comparison"],
                    "properties": {
                        "baseline": {"type": "string"},
                        "candidate": {"type": "string"},
                        "comparison": {
                            "type": "object",
                            "required": ["paired", "baseline_rate", "candidate_rate", "p_value", "significantly_worse", "regressions", "fixes"],
                            "properties": {
                                "paired": {"type": "integer"},
                                "only_baseline": {"type": "integer"},
                                "only_candidate": {"type": "integer"},
                                "baseline_rate": number,
                                "candidate_rate": number,
                                "p_value": number,
                                "significantly_worse": {"type": "boolean"},
                                "regressions": {"type": "array", "items": reference("Flip")},
                                "fixes": {"type": "array", "items": reference("Flip")},
                            },
                        },
                    },
                },
                "Models": {
                    "type": "object",
                    "required": ["models"],
                    "properties": {"models": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name", "versions", "latest"],
                        "properties": {"name": {"type": "string"}, "versions": {"type": "integer"}, "latest": {"type": "string"}},
                    }}},
                },
                "Versions": {
                    "type": "object",
                    "required": ["model", "versions"],
                    "properties": {"model": {"type": "string"}, "versions": {"type": "array", "items": {
                        "type": "object",
                        "required": ["version", "lineage"],
                        "properties": {"version": {"type": "object"}, "lineage": {"type": "array", "items": {"type": "object"}}},
                    }}},
                },
                "AliasHistory": {
                    "type": "object",
                    "required": ["name", "history"],
                    "properties": {"name": {"type": "string"}, "history": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    })
}
