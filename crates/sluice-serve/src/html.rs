//! The dashboard: server-rendered HTML pages over the same data as the JSON API (each page
//! links its JSON), with charts drawn as inline SVG on the server and one small script of our
//! own (`/assets/app.js`) that keeps the rollout view live from its event stream. No page
//! loads anything from another origin.
//!
//! Pages: the overview (active rollouts, latest runs), runs (filtered by kind and status, with
//! a pass-rate sparkline per suite), a run (failures first, each row's prompt, output and
//! grading in a drawer), the diff of two eval runs (only what flipped, with the significance
//! verdict), rollouts, a rollout (weight over time, measurements, rollbacks with their metric
//! snapshot, events — live), the registry (models), and a model (versions, lineage, alias
//! history).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use sluice_core::report::xml_escape as esc;
use sluice_rollout::event::RolloutEvent;
use sluice_store::utc_timestamp;

/// The stylesheet.
pub const CSS: &str = include_str!("assets/app.css");
/// The script.
pub const JS: &str = include_str!("assets/app.js");
/// The icon.
pub const ICON: &str = include_str!("assets/icon.svg");

/// A whole page.
pub fn page(title: &str, json: Option<&str>, body: &str) -> String {
    let json = json
        .map(|href| format!(r#"<a class="json" href="{}">JSON</a>"#, esc(href)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Sluice</title><link rel="icon" href="/assets/icon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/app.css"><script src="/assets/app.js" defer></script></head>
<body><nav><a class="brand" href="/">Sluice</a><a href="/runs">Runs</a><a href="/trends">Trends</a><a href="/rollouts">Rollouts</a><a href="/models">Registry</a><a href="/drift">Drift</a><a href="/feedback">Feedback</a><a href="/cost">Cost</a><a href="/alerts">Alerts</a>{json}</nav>
<main><h1>{title}</h1>
{body}</main></body></html>
"#,
        title = esc(title)
    )
}

fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| esc(&utc_timestamp(ms)))
}

fn badge(status: &str) -> String {
    format!(
        r#"<span class="badge {}">{}</span>"#,
        esc(status),
        esc(status)
    )
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A run's pass rate, when it has one (eval runs).
fn pass_rate(run: &Value) -> Option<f64> {
    run["summary"]["stats"]["pass_rate"].as_f64()
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

/// An SVG polyline of `values` scaled into `width` × `height` (values from 0 to `max`).
pub fn sparkline(values: &[f64], max: f64, width: u32, height: u32, class: &str) -> String {
    let (w, h) = (f64::from(width), f64::from(height));
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = h - (v / max.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * h;
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect();
    format!(
        r#"<svg class="{class}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"><polyline fill="none" points="{}"/></svg>"#,
        points.join(" ")
    )
}

fn run_rows(runs: &[Value]) -> String {
    let mut rows = String::new();
    for run in runs {
        let id = text(&run["id"]);
        let href = match run["kind"].as_str() {
            Some("rollout") => format!("/rollouts/{id}"),
            _ => format!("/runs/{id}"),
        };
        let _ = write!(
            rows,
            r#"<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&href),
            esc(&id),
            esc(&text(&run["kind"])),
            esc(&text(&run["name"])),
            badge(&text(&run["status"])),
            percent(pass_rate(run)),
            time(run["started_at_ms"].as_i64()),
        );
    }
    format!(
        r#"<table class="runs"><thead><tr><th>Run</th><th>Kind</th><th>Name</th><th>Status</th><th>Pass rate</th><th>Started (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// The overview: rollouts still running, then the latest runs.
/// The overview: rollouts still running, open alerts (`None`: no alert rule is watched), then
/// the latest runs.
pub fn overview(rollouts: &[Value], runs: &[Value], alerts: Option<&[Value]>) -> String {
    let active: Vec<Value> = rollouts
        .iter()
        .filter(|r| r["status"] == "running")
        .cloned()
        .collect();
    let active = if active.is_empty() {
        "<p class=\"empty\">No rollout is running.</p>".to_owned()
    } else {
        run_rows(&active)
    };
    let alerts = match alerts {
        None => "<p class=\"empty\">No alert rule is watched (start <code>sluice serve --monitor monitor.yaml</code>).</p>".to_owned(),
        Some([]) => "<p class=\"empty\">No alert is open.</p>".to_owned(),
        Some(open) => {
            let rows: String = open
                .iter()
                .map(|o| {
                    let alert = &o["alert"];
                    format!(
                        r#"<tr><td>{}</td><td>{}</td><td><a href="/alerts?route={}">{}</a></td></tr>"#,
                        time(o["at_ms"].as_i64()),
                        badge(&text(&alert["severity"])),
                        esc(&text(&alert["route"])),
                        esc(&text(&alert["summary"]))
                    )
                })
                .collect();
            format!(r#"<table id="open-alerts"><thead><tr><th>Since (UTC)</th><th>Severity</th><th>What</th></tr></thead><tbody>{rows}</tbody></table>"#)
        }
    };
    page(
        "Overview",
        Some("/api/v1/runs"),
        &format!(
            "<h2>Active rollouts</h2>{active}<h2>Open alerts</h2>{alerts}<h2>Latest runs</h2>{}",
            run_rows(runs)
        ),
    )
}

/// The runs page: a filter form, a pass-rate sparkline per eval suite, and the table.
pub fn runs(runs: &[Value], kind: Option<&str>, status: Option<&str>) -> String {
    let option = |value: &str, chosen: Option<&str>| {
        let selected = if chosen == Some(value) {
            " selected"
        } else {
            ""
        };
        format!(
            r#"<option value="{v}"{selected}>{v}</option>"#,
            v = esc(value)
        )
    };
    let kinds: String = sluice_core::RunKind::ALL
        .iter()
        .map(|k| option(k.as_str(), kind))
        .collect();
    let statuses: String = ["running", "passed", "failed", "errored"]
        .iter()
        .map(|s| option(s, status))
        .collect();
    let form = format!(
        r#"<form class="filter" method="get" action="/runs"><label>Kind <select name="kind"><option value="">any</option>{kinds}</select></label> <label>Status <select name="status"><option value="">any</option>{statuses}</select></label> <button>Filter</button></form>"#
    );
    // Oldest first within each suite, for the sparklines.
    let mut suites: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs.iter().rev() {
        if let Some(rate) = pass_rate(run) {
            suites.entry(text(&run["name"])).or_default().push(rate);
        }
    }
    let mut trends = String::new();
    if !suites.is_empty() {
        trends.push_str(r#"<h2>Pass rate by suite</h2><ul class="trends">"#);
        for (suite, rates) in &suites {
            let _ = write!(
                trends,
                "<li>{} {} <span>{}</span></li>",
                sparkline(rates, 1.0, 120, 24, "spark"),
                esc(suite),
                percent(rates.last().copied())
            );
        }
        trends.push_str("</ul>");
    }
    let mut json = String::from("/api/v1/runs");
    let query: Vec<String> = [("kind", kind), ("status", status)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if !query.is_empty() {
        json.push('?');
        json.push_str(&query.join("&"));
    }
    page(
        "Runs",
        Some(&json),
        &format!("{form}{trends}<h2>Runs</h2>{}", run_rows(runs)),
    )
}

/// One run: its summary, then its results (failures first), each with a drawer.
pub fn run(detail: &Value) -> String {
    let run = &detail["run"];
    let id = text(&run["id"]);
    let mut rows = String::new();
    for result in detail["results"].as_array().into_iter().flatten() {
        let data = &result["data"];
        let verdict = match (&result["error"], &result["pass"]) {
            (Value::String(_), _) => badge("errored"),
            (_, Value::Bool(true)) => badge("passed"),
            (_, Value::Bool(false)) => badge("failed"),
            _ => "—".to_owned(),
        };
        let mut grades = String::new();
        for grade in data["grades"].as_array().into_iter().flatten() {
            let _ = write!(
                grades,
                "<li>{} {}: {}</li>",
                if grade["pass"] == true { "✓" } else { "✗" },
                esc(&text(&grade["assertion"])),
                esc(&text(&grade["reason"]))
            );
        }
        let _ = write!(
            rows,
            r#"<tr><td>{verdict}</td><td>{}</td><td>{}</td><td><details><summary>{}</summary><dl><dt>Prompt</dt><dd><pre>{}</pre></dd><dt>Vars</dt><dd><pre>{}</pre></dd><dt>Output</dt><dd><pre>{}</pre></dd><dt>Grading</dt><dd><ul>{grades}</ul></dd><dt>Error</dt><dd>{}</dd></dl></details></td></tr>"#,
            esc(&text(&data["description"])),
            esc(&text(&data["provider"])),
            esc(&truncate(&text(&data["output"]), 80)),
            esc(&text(&data["prompt"])),
            esc(&serde_json::to_string_pretty(&data["vars"]).unwrap_or_default()),
            esc(&text(&data["output"])),
            esc(&text(&result["error"])),
        );
    }
    let gate = &run["summary"]["gate"];
    let reasons: Vec<String> = gate["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let summary = format!(
        r#"<dl class="facts"><dt>Kind</dt><dd>{}</dd><dt>Name</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Pass rate</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd><dt>Gate</dt><dd>{}</dd></dl>"#,
        esc(&text(&run["kind"])),
        esc(&text(&run["name"])),
        badge(&text(&run["status"])),
        percent(pass_rate(run)),
        time(run["started_at_ms"].as_i64()),
        time(run["finished_at_ms"].as_i64()),
        esc(&reasons.join("; ")),
    );
    let total = detail["total_results"].as_u64().unwrap_or(0);
    page(
        &format!("Run {id}"),
        Some(&format!("/api/v1/runs/{id}")),
        &format!(
            r#"{summary}<h2>Results <small>({total}, failures first)</small></h2><table class="results"><thead><tr><th>Verdict</th><th>Test</th><th>Provider</th><th>Output</th></tr></thead><tbody>{rows}</tbody></table>"#
        ),
    )
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars).collect();
    short.push('…');
    short
}

/// The diff of two eval runs: the verdict, then only the tests that flipped.
pub fn diff(body: &Value) -> String {
    let (a, b) = (text(&body["baseline"]), text(&body["candidate"]));
    let c = &body["comparison"];
    let flips = |key: &str| {
        let mut rows = String::new();
        for flip in c[key].as_array().into_iter().flatten() {
            let _ = write!(
                rows,
                r#"<tr><td>{}</td><td class="key">{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&text(&flip["description"])),
                esc(&text(&flip["key"])),
                percent(flip["baseline"].as_f64()),
                percent(flip["candidate"].as_f64()),
            );
        }
        rows
    };
    let (regressed, fixed) = (flips("regressions"), flips("fixes"));
    let worse = c["significantly_worse"] == true;
    let verdict = format!(
        r#"<p class="verdict {}">{}: pass rate {} → {} over {} paired results ({} regressed, {} fixed; one-sided p = {})</p>"#,
        if worse { "bad" } else { "good" },
        if worse {
            "Significantly worse"
        } else {
            "Not significantly worse"
        },
        percent(c["baseline_rate"].as_f64()),
        percent(c["candidate_rate"].as_f64()),
        text(&c["paired"]),
        c["regressions"].as_array().map_or(0, Vec::len),
        c["fixes"].as_array().map_or(0, Vec::len),
        c["p_value"]
            .as_f64()
            .map_or_else(|| "—".to_owned(), |p| format!("{p:.4}")),
    );
    let table = |title: &str, id: &str, rows: &str| {
        if rows.is_empty() {
            format!(r#"<h2>{title}</h2><p class="empty" id="{id}">None.</p>"#)
        } else {
            format!(
                r#"<h2>{title}</h2><table class="flips" id="{id}"><thead><tr><th>Test</th><th>Key</th><th>Baseline</th><th>Candidate</th></tr></thead><tbody>{rows}</tbody></table>"#
            )
        }
    };
    let unchanged = c["paired"].as_u64().unwrap_or(0).saturating_sub(
        (c["regressions"].as_array().map_or(0, Vec::len)
            + c["fixes"].as_array().map_or(0, Vec::len)) as u64,
    );
    page(
        &format!("{a} → {b}"),
        Some(&format!("/api/v1/runs/{a}/diff/{b}")),
        &format!(
            r#"{verdict}{}{}<p class="muted">{unchanged} unchanged; {} only in the baseline, {} only in the candidate.</p>"#,
            table("Regressed", "regressed", &regressed),
            table("Fixed", "fixed", &fixed),
            text(&c["only_baseline"]),
            text(&c["only_candidate"]),
        ),
    )
}

/// The rollouts table.
pub fn rollouts(runs: &[Value]) -> String {
    page("Rollouts", Some("/api/v1/rollouts"), &run_rows(runs))
}

/// The buttons that act on a running rollout, for a logged-in session (`csrf`); a login
/// link when actions are on but nobody logged in.
fn rollout_actions(id: &str, running: bool, enabled: bool, csrf: Option<&str>) -> String {
    match (running, enabled, csrf) {
        (_, false, _) => String::new(),
        (false, true, None) => format!(
            r#"<p class="actions"><a href="/login?next=/rollouts/{}">Log in</a> to undo.</p>"#,
            esc(id)
        ),
        (false, true, Some(csrf)) => format!(
            r#"<div class="actions"><form method="post" action="/rollouts/{id}/undo"><input type="hidden" name="csrf" value="{csrf}"><button name="do" value="undo" class="undo">Undo: all traffic back</button></form></div>"#,
            id = esc(id),
            csrf = esc(csrf),
        ),
        (true, true, None) => format!(
            r#"<p class="actions"><a href="/login?next=/rollouts/{}">Log in</a> to promote, pause, resume or abort.</p>"#,
            esc(id)
        ),
        (true, true, Some(csrf)) => {
            let button = |verb: &str, label: &str| {
                format!(
                    r#"<form method="post" action="/rollouts/{id}/{verb}"><input type="hidden" name="csrf" value="{csrf}"><button name="do" value="{verb}" class="{verb}">{label}</button></form>"#,
                    id = esc(id),
                    csrf = esc(csrf),
                )
            };
            let logout = format!(
                r#"<form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button>Log out</button></form>"#,
                esc(csrf)
            );
            format!(
                r#"<div class="actions">{}{}{}{}{logout}</div>"#,
                button("promote", "Promote"),
                button("pause", "Pause"),
                button("resume", "Resume"),
                button("abort", "Abort"),
            )
        }
    }
}

/// The login form: the admin token, once, for a session.
pub fn login(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    page(
        "Log in",
        None,
        &format!(
            r#"{error}<form class="login" method="post" action="/login"><input type="hidden" name="next" value="{}"><label>Admin token <input type="password" name="token" autocomplete="current-password" required></label> <button>Log in</button></form>"#,
            esc(next)
        ),
    )
}

/// One rollout, live: weight over time, rules measured, rollbacks, events, and the actions
/// (with `actions` on and a session's `csrf` token).
pub fn rollout(body: &Value, actions: bool, csrf: Option<&str>) -> String {
    let run = &body["run"];
    let id = text(&run["id"]);
    let mut weights: Vec<f64> = Vec::new();
    let mut phase = String::from("—");
    let mut message = String::new();
    let mut measurements = String::new();
    let mut rollbacks = String::new();
    let mut events = String::new();
    for stored in body["events"].as_array().into_iter().flatten() {
        let event = sluice_store::Event {
            seq: stored["seq"].as_i64().unwrap_or(0),
            subject: text(&stored["subject"]),
            kind: text(&stored["kind"]),
            payload: stored["payload"].clone(),
            at_ms: stored["at_ms"].as_i64().unwrap_or(0),
        };
        let line = match RolloutEvent::read(&event) {
            Ok(RolloutEvent::State { state, .. }) => {
                weights.push(f64::from(state.weight));
                phase = format!("{:?}", state.phase).to_lowercase();
                message = state.message.clone();
                format!("weight {} % — {}", state.weight, state.message)
            }
            Ok(RolloutEvent::Measurement {
                rule,
                value,
                samples,
                detail,
                outcome,
                ..
            }) => {
                let _ = write!(
                    measurements,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{samples}</td><td>{}</td></tr>",
                    esc(&rule),
                    esc(&format!("{outcome:?}").to_lowercase()),
                    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.4}")),
                    esc(&detail)
                );
                format!("measured {rule}: {detail}")
            }
            Ok(RolloutEvent::Rollback(rollback)) => {
                let snapshot = serde_json::to_string_pretty(&rollback.metrics).unwrap_or_default();
                let _ = write!(
                    rollbacks,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><details><summary>metrics</summary><pre>{}</pre></details></td></tr>",
                    time(Some(rollback.at_ms)),
                    esc(&rollback.trigger),
                    esc(&rollback.reason),
                    esc(&snapshot)
                );
                format!("rolled back: {}", rollback.reason)
            }
            Ok(other) => other.kind().to_owned(),
            Err(_) => event.kind.clone(),
        };
        let _ = write!(
            events,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(Some(event.at_ms)),
            esc(&event.kind),
            esc(&line)
        );
    }
    let weight = weights
        .last()
        .map_or_else(|| "—".to_owned(), |w| format!("{w} %"));
    let chart = sparkline(&weights, 100.0, 480, 80, "weights");
    let section = |title: &str, head: &str, rows: &str| {
        if rows.is_empty() {
            format!(r#"<h2>{title}</h2><p class="empty">None yet.</p>"#)
        } else {
            format!(
                r#"<h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"#
            )
        }
    };
    page(
        &format!("Rollout {}", text(&run["name"])),
        Some(&format!("/api/v1/rollouts/{id}")),
        &format!(
            r#"{buttons}<div class="live"{stream} data-after="{after}"><dl class="facts"><dt>Status</dt><dd id="status">{status}</dd><dt>Phase</dt><dd id="phase">{phase}</dd><dt>Candidate weight</dt><dd id="weight">{weight}</dd><dt>Latest</dt><dd id="message">{message}</dd></dl><h2>Weight over time</h2><div id="chart" data-weights="{data}">{chart}</div>{measured}{rolled}<h2>Events</h2><table><thead><tr><th>At (UTC)</th><th>Kind</th><th>What</th></tr></thead><tbody id="events">{events}</tbody></table></div>"#,
            buttons = rollout_actions(&id, run["status"] == "running", actions, csrf),
            stream = if run["status"] == "running" {
                format!(r#" data-stream="/api/v1/rollouts/{}/stream""#, esc(&id))
            } else {
                String::new()
            },
            after = body["events"]
                .as_array()
                .and_then(|e| e.last())
                .map_or(0, |e| e["seq"].as_i64().unwrap_or(0)),
            status = badge(&text(&run["status"])),
            phase = esc(&phase),
            message = esc(&message),
            data = esc(&weights
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(",")),
            measured = section(
                "Analysis",
                "<th>Rule</th><th>Outcome</th><th>Value</th><th>Samples</th><th>Detail</th>",
                &measurements
            ),
            rolled = section(
                "Rollbacks",
                "<th>At (UTC)</th><th>Trigger</th><th>Why</th><th>Snapshot</th>",
                &rollbacks
            ),
        ),
    )
}

/// The registry: every model.
pub fn models(body: &Value) -> String {
    let mut rows = String::new();
    for model in body["models"].as_array().into_iter().flatten() {
        let name = text(&model["name"]);
        let _ = write!(
            rows,
            r#"<tr><td><a href="/models/{}">{}</a></td><td>{}</td><td>{}</td></tr>"#,
            esc(&name),
            esc(&name),
            text(&model["versions"]),
            esc(&text(&model["latest"]))
        );
    }
    let table = if rows.is_empty() {
        "<p class=\"empty\">No model is registered.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>Model</th><th>Versions</th><th>Latest</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    page("Registry", Some("/api/v1/models"), &table)
}

/// One model: its versions with their evidence, and its aliases' history.
pub fn model(name: &str, versions: &Value, history: Option<&Value>) -> String {
    let mut rows = String::new();
    for entry in versions["versions"].as_array().into_iter().flatten() {
        let version = &entry["version"];
        let lineage: Vec<String> = entry["lineage"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|link| {
                let id = text(&link["run_id"]);
                format!(r#"<a href="/runs/{}">{}</a>"#, esc(&id), esc(&id))
            })
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&version["version"])),
            esc(&text(&version["status"])),
            esc(&text(&version["artifact"])),
            lineage.join(" ")
        );
    }
    let mut moves = String::new();
    for change in history
        .and_then(|h| h["history"].as_array())
        .into_iter()
        .flatten()
    {
        let _ = write!(
            moves,
            "<tr><td>{}</td><td>@{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(change["at_ms"].as_i64()),
            esc(&text(&change["alias"])),
            esc(&text(&change["from"])),
            esc(&text(&change["to"])),
            esc(&text(&change["actor"])),
            esc(&text(&change["reason"]))
        );
    }
    let history = if moves.is_empty() {
        "<p class=\"empty\">No alias has moved.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>At (UTC)</th><th>Alias</th><th>From</th><th>To</th><th>Who</th><th>Why</th></tr></thead><tbody>{moves}</tbody></table>"
        )
    };
    page(
        &format!("Model {name}"),
        Some(&format!("/api/v1/models/{name}/versions")),
        &format!(
            "<h2>Versions</h2><table><thead><tr><th>Version</th><th>Status</th><th>Artifact</th><th>Evidence</th></tr></thead><tbody>{rows}</tbody></table><h2>Alias history</h2>{history}"
        ),
    )
}

/// The drift page: a form for the route and version, then each descriptor's verdict.
pub fn drift(
    route: Option<&str>,
    version: Option<&str>,
    report: Option<&crate::drift::Report>,
) -> String {
    let form = format!(
        r#"<form class="filter" method="get" action="/drift"><label>Route <input name="route" value="{}" required></label> <label>Version <input name="version" value="{}" required></label> <button>Compare</button></form>"#,
        esc(route.unwrap_or_default()),
        esc(version.unwrap_or_default())
    );
    let Some(report) = report else {
        return page("Drift", None, &form);
    };
    let number = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"));
    let mut rows = String::new();
    for d in &report.descriptors {
        let chart = d
            .distribution
            .as_ref()
            .map(distribution)
            .unwrap_or_default();
        let _ = write!(
            rows,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{chart}</td></tr>"#,
            esc(d.name),
            esc(d.measure),
            number(d.value),
            badge(d.verdict),
            number(d.reference),
            number(d.current)
        );
    }
    let json = format!(
        "/api/v1/drift?route={}&version={}&reference_from={}&reference_to={}&current_from={}&current_to={}",
        esc(&report.route),
        esc(&report.version),
        report.reference.from_ms,
        report.reference.to_ms,
        report.current.from_ms,
        report.current.to_ms
    );
    page(
        &format!("Drift of {} on {}", report.version, report.route),
        Some(&json),
        &format!(
            r#"{form}<p class="muted">{} requests from {} to {} against {} from {} to {} (UTC); judged with at least {} in each.</p>{}<table id="drift"><thead><tr><th>Descriptor</th><th>Measure</th><th>Value</th><th>Verdict</th><th>Reference</th><th>Current</th><th>Distribution (reference, current)</th></tr></thead><tbody>{rows}</tbody></table>"#,
            report.samples.1,
            time(Some(report.current.from_ms)),
            time(Some(report.current.to_ms)),
            report.samples.0,
            time(Some(report.reference.from_ms)),
            time(Some(report.reference.to_ms)),
            crate::drift::MIN_SAMPLES,
            report.embedding.as_ref().map(|e| format!(
                r#"<p id="embedding">Prompt embeddings ({} against {} prompts): centroid distance {}, permutation p = {}, cluster shares' Jensen-Shannon {} {}</p>"#,
                e.samples.1,
                e.samples.0,
                number(e.centroid_distance),
                number(e.p_value),
                number(e.cluster_js),
                badge(e.verdict)
            )).unwrap_or_default(),
        ),
    )
}

/// A number's two windows as paired bars per bin (reference, then current), in an SVG whose
/// title names each bin.
fn distribution(d: &crate::drift::Distribution) -> String {
    let bins = d.reference.len().max(d.current.len()).max(1);
    let (width, height) = (12 * bins as u32, 40u32);
    let top = d
        .reference
        .iter()
        .chain(&d.current)
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut bars = String::new();
    for i in 0..bins {
        let label = match (
            i.checked_sub(1).and_then(|j| d.edges.get(j)),
            d.edges.get(i),
        ) {
            (None, Some(hi)) => format!("below {hi}"),
            (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
            (Some(lo), None) => format!("{lo} and above"),
            (None, None) => "above the largest reference value".to_owned(),
        };
        for (offset, shares, class) in [(1u32, &d.reference, "ref"), (6, &d.current, "cur")] {
            let share = shares.get(i).copied().unwrap_or(0.0);
            let h = (share / top * f64::from(height)).round();
            let _ = write!(
                bars,
                r#"<rect class="{class}" x="{}" y="{:.0}" width="5" height="{h:.0}"><title>{}: {:.1} %</title></rect>"#,
                12 * i as u32 + offset,
                f64::from(height) - h,
                esc(&label),
                share * 100.0
            );
        }
    }
    format!(
        r#"<svg class="dist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{bars}</svg>"#
    )
}

/// The alerts page: what is open now, then the history.
pub fn alerts(route: Option<&str>, body: &Value) -> String {
    let form = format!(
        r#"<form class="filter" method="get" action="/alerts"><label>Route <input name="route" value="{}" required></label> <button>Show</button></form>"#,
        esc(route.unwrap_or_default())
    );
    let Some(route) = route else {
        return page("Alerts", None, &form);
    };
    let row = |at: Option<i64>, state: &str, alert: &Value| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(at),
            badge(state),
            esc(&text(&alert["severity"])),
            esc(&text(&alert["summary"]))
        )
    };
    let open: String = body["open"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| row(o["at_ms"].as_i64(), "open", &o["alert"]))
        .collect();
    let history: String = body["history"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|e| row(e["at_ms"].as_i64(), &text(&e["kind"]), &e["payload"]))
        .collect();
    let table = |id: &str, rows: &str, empty: &str| {
        if rows.is_empty() {
            format!(r#"<p class="empty">{empty}</p>"#)
        } else {
            format!(
                r#"<table id="{id}"><thead><tr><th>At (UTC)</th><th>State</th><th>Severity</th><th>What</th></tr></thead><tbody>{rows}</tbody></table>"#
            )
        }
    };
    page(
        &format!("Alerts on {route}"),
        Some(&format!("/api/v1/alerts?route={route}")),
        &format!(
            "{form}<h2>Open</h2>{}<h2>History</h2>{}",
            table("open", &open, "No alert is open."),
            table("history", &history, "No alert has fired.")
        ),
    )
}

/// The trends page: a row per eval suite (and provider set) and per benchmarked model, with
/// a sparkline of each figure over its runs and the latest value.
pub fn trends(body: &Value) -> String {
    let mut sections = String::new();
    for (kind, title, figures) in [
        ("eval", "Eval suites", &crate::trends::EVAL_FIGURES[..]),
        (
            "bench",
            "Benchmarked models",
            &crate::trends::BENCH_FIGURES[..],
        ),
    ] {
        let mut rows = String::new();
        for series in body["series"].as_array().into_iter().flatten() {
            if series["kind"] != kind {
                continue;
            }
            let points = series["points"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut cells = String::new();
            for figure in figures {
                let values: Vec<f64> = points
                    .iter()
                    .filter_map(|p| p["figures"][*figure].as_f64())
                    .collect();
                let max = values.iter().copied().fold(0.0, f64::max);
                let latest = values.last().map_or_else(
                    || "—".to_owned(),
                    |v| match *figure {
                        "pass_rate" | "error_rate" => percent(Some(*v)),
                        "cost_usd" => format!("${v:.4}"),
                        "ttft_p95_ms" => format!("{v:.1} ms"),
                        _ => format!("{v:.1}/s"),
                    },
                );
                let scale = if matches!(*figure, "pass_rate" | "error_rate") {
                    1.0
                } else {
                    max
                };
                let _ = write!(
                    cells,
                    "<td>{} {latest}</td>",
                    sparkline(&values, scale, 100, 20, "spark")
                );
            }
            let name = match series["providers"].as_str() {
                Some(providers) => format!(
                    "{} <small>{}</small>",
                    esc(&text(&series["name"])),
                    esc(providers)
                ),
                None => esc(&text(&series["name"])),
            };
            let last = points
                .last()
                .map(|p| text(&p["run_id"]))
                .unwrap_or_default();
            let _ = write!(
                rows,
                r#"<tr><td>{name}</td><td>{}</td>{cells}<td><a href="/runs/{}">{}</a></td></tr>"#,
                points.len(),
                esc(&last),
                esc(&last)
            );
        }
        let head: String = figures.iter().map(|f| format!("<th>{f}</th>")).collect();
        if rows.is_empty() {
            let _ = write!(
                sections,
                "<h2>{title}</h2><p class=\"empty\">No finished {kind} run yet.</p>"
            );
        } else {
            let _ = write!(
                sections,
                "<h2>{title}</h2><table id=\"trends-{kind}\"><thead><tr><th>Name</th><th>Runs</th>{head}<th>Latest run</th></tr></thead><tbody>{rows}</tbody></table>"
            );
        }
    }
    page("Trends", Some("/api/v1/trends"), &sections)
}

/// The cost page: each version's requests, tokens and cost over the window.
pub fn cost(route: Option<&str>, body: &Value) -> String {
    let form = format!(
        r#"<form class="filter" method="get" action="/cost"><label>Route <input name="route" value="{}" required></label> <button>Show</button></form>"#,
        esc(route.unwrap_or_default())
    );
    let Some(route) = route else {
        return page("Cost", None, &form);
    };
    let usd = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "no price".to_owned(), |c| format!("${c:.4}"))
    };
    let mut rows = String::new();
    for v in body["versions"].as_array().into_iter().flatten() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&v["version"])),
            text(&v["requests"]),
            text(&v["priced"]),
            text(&v["prompt_tokens"]),
            text(&v["completion_tokens"]),
            usd(&v["cost_usd"]),
            usd(&v["cost_per_request_usd"]),
            usd(&v["cost_per_hour_usd"])
        );
    }
    let table = if rows.is_empty() {
        "<p class=\"empty\">No request in the window.</p>".to_owned()
    } else {
        format!(
            "<table id=\"cost\"><thead><tr><th>Version</th><th>Requests</th><th>Priced</th><th>Prompt tokens</th><th>Completion tokens</th><th>Cost</th><th>Per request</th><th>Per hour</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    page(
        &format!("Cost on {route}"),
        Some(&format!("/api/v1/cost?route={route}")),
        &format!(
            "{form}<h2>Last {} s</h2>{table}<p>Requests are priced at their version's token prices (the gateway's <code>prices</code>, a version's <code>price</code>, or the built-in list prices); a model without a price has no cost.</p>",
            text(&body["window_s"])
        ),
    )
}

/// The feedback page: each version's satisfaction and negative rates, and the retraining
/// triggers that fired.
pub fn feedback(route: Option<&str>, body: &Value) -> String {
    let form = format!(
        r#"<form class="filter" method="get" action="/feedback"><label>Route <input name="route" value="{}" required></label> <button>Show</button></form>"#,
        esc(route.unwrap_or_default())
    );
    let Some(route) = route else {
        return page("Feedback", None, &form);
    };
    let mut rows = String::new();
    for v in body["versions"].as_array().into_iter().flatten() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&v["version"])),
            text(&v["samples"]),
            percent(v["satisfaction_rate"].as_f64()),
            percent(v["negative_rate"].as_f64())
        );
    }
    let mut fired = String::new();
    for t in body["triggers"].as_array().into_iter().flatten() {
        let _ = write!(
            fired,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(t["at_ms"].as_i64()),
            esc(&text(&t["payload"]["version"])),
            esc(&text(&t["payload"]["reason"]))
        );
    }
    let fired = if fired.is_empty() {
        "<p class=\"empty\">None has fired.</p>".to_owned()
    } else {
        format!(
            "<table id=\"triggers\"><thead><tr><th>At (UTC)</th><th>Version</th><th>Why</th></tr></thead><tbody>{fired}</tbody></table>"
        )
    };
    page(
        &format!("Feedback on {route}"),
        Some(&format!("/api/v1/feedback?route={route}")),
        &format!(
            "{form}<h2>Ratings, last {} s</h2><table><thead><tr><th>Version</th><th>Ratings</th><th>Satisfied</th><th>Negative</th></tr></thead><tbody>{rows}</tbody></table><h2>Retraining triggers</h2>{fired}",
            text(&body["window_s"])
        ),
    )
}

/// A page for an error.
pub fn error(status: u16, message: &str) -> String {
    page(
        &format!("{status}"),
        None,
        &format!(r#"<p class="error">{}</p>"#, esc(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let html = runs(
            &[
                serde_json::json!({"id": "eval-1", "kind": "eval", "name": "<script>alert(1)</script>", "status": "passed", "started_at_ms": 0, "summary": {"stats": {"pass_rate": 0.5}}}),
            ],
            Some("eval"),
            None,
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("50.0 %"));
        assert!(html.contains(r#"<option value="eval" selected>"#));
    }

    #[test]
    fn sparklines_scale_into_their_box() {
        assert_eq!(
            sparkline(&[0.0, 50.0, 100.0], 100.0, 100, 10, "s"),
            r#"<svg class="s" viewBox="0 0 100 10" width="100" height="10" role="img"><polyline fill="none" points="0.0,10.0 50.0,5.0 100.0,0.0"/></svg>"#
        );
    }
}
