//! Reports of a run: the console summary, and files chosen by extension (`.json`, `.jsonl`,
//! `.xml` JUnit, `.md`), plus GitHub's step summary and `::error` annotations when running
//! in GitHub Actions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::compare::Regression;
use crate::runner::{EvalRow, Gate, Summary};
use sluice_core::report::{
    JUNIT_CLOSE, JUNIT_SUITE_CLOSE, JunitCounts, JunitVerdict, github_command, junit_case,
    junit_open, junit_suite_open, xml_escape,
};
use sluice_core::stats::{Interval, wilson_95};

/// How many failing rows a run keeps in memory for the console and annotations.
pub const FAILING_SAMPLE: usize = 50;

/// Everything a report needs.
pub struct Report<'a> {
    /// The stored run id.
    pub run_id: &'a str,
    /// The suite's description.
    pub description: &'a str,
    /// A sample of the failing and errored rows (at most [`FAILING_SAMPLE`]), for the console
    /// and annotations; every row goes to the report files as it arrives.
    pub failing: &'a [EvalRow],
    /// The aggregates.
    pub summary: &'a Summary,
    /// The gate applied.
    pub gate: &'a Gate,
    /// Wall time in seconds.
    pub duration_s: f64,
    /// The comparison with a baseline, when one was given.
    pub comparison: Option<&'a Regression>,
    /// Results (by key) that passed in some stored runs of this suite and failed in others.
    pub flaky_in_history: &'a [String],
}

impl Report<'_> {
    /// Whether the gate passed, and why not.
    pub fn verdict(&self) -> (bool, Vec<String>) {
        let (_, mut reasons) = self.summary.verdict(self.gate);
        if let Some(comparison) = self.comparison {
            reasons.extend(comparison.reasons());
        }
        (reasons.is_empty(), reasons)
    }

    /// The console summary.
    pub fn console(&self) -> String {
        let mut out = String::new();
        let title = if self.description.is_empty() {
            "eval"
        } else {
            self.description
        };
        let _ = writeln!(
            out,
            "{title}  (run {}, {:.1} s)",
            self.run_id, self.duration_s
        );
        let _ = writeln!(
            out,
            "  {:<28} {:<28} {:>6} {:>6} {:>6} {:>8}  95% interval",
            "prompt", "provider", "pass", "fail", "error", "rate"
        );
        for ((prompt, provider), tally) in &self.summary.by_pair {
            let Interval { low, high } = wilson_95(tally.passed, tally.total());
            let _ = writeln!(
                out,
                "  {:<28} {:<28} {:>6} {:>6} {:>6} {:>7.1}%  [{:.1}%, {:.1}%]",
                truncate(prompt, 28),
                truncate(provider, 28),
                tally.passed,
                tally.failed,
                tally.errors,
                tally.pass_rate() * 100.0,
                low * 100.0,
                high * 100.0
            );
        }
        for (metric, score) in &self.summary.named_scores {
            let _ = writeln!(out, "  metric {metric}: {score:.3}");
        }
        let flaky: Vec<_> = self
            .summary
            .by_test
            .values()
            .filter(|t| t.is_flaky())
            .collect();
        if !flaky.is_empty() {
            let _ = writeln!(
                out,
                "  flaky ({} tests passed and failed across repeats):",
                flaky.len()
            );
            for test in flaky.iter().take(10) {
                let _ = writeln!(
                    out,
                    "    {} ({}/{} passed)",
                    truncate(&test.description, 60),
                    test.passed,
                    test.graded
                );
            }
        }
        if let Some(Regression::Paired(comparison)) = self.comparison {
            let _ = writeln!(
                out,
                "  vs baseline: pass rate {:.1}% -> {:.1}% over {} paired results, {} worse, {} better, one-sided p = {:.4}{}",
                comparison.baseline_rate * 100.0,
                comparison.candidate_rate * 100.0,
                comparison.paired,
                comparison.worse,
                comparison.better,
                comparison.p_value,
                if comparison.significantly_worse {
                    " (significantly worse)"
                } else {
                    " (no significant regression)"
                }
            );
            for flip in comparison.regressions.iter().take(10) {
                let _ = writeln!(
                    out,
                    "    regressed: {} ({:.0}% -> {:.0}%)",
                    truncate(&flip.description, 60),
                    flip.baseline * 100.0,
                    flip.candidate * 100.0
                );
            }
            if comparison.regressions.len() > 10 {
                let _ = writeln!(
                    out,
                    "    … and {} more regressions",
                    comparison.regressions.len() - 10
                );
            }
        }
        if let Some(Regression::Aggregate(comparison)) = self.comparison {
            for task in &comparison.tasks {
                let _ = writeln!(
                    out,
                    "  vs lm-eval {} {}: {:.1}% -> {:.1}% ({} over {} results), unpaired one-sided p = {}{}",
                    task.baseline.task,
                    task.baseline.metric,
                    task.baseline.value * 100.0,
                    task.candidate * 100.0,
                    task.candidate_source,
                    task.candidate_samples,
                    task.p_value.map_or_else(
                        || "n/a (no baseline stderr)".to_owned(),
                        |p| format!("{p:.4}")
                    ),
                    if task.significantly_worse {
                        " (significantly worse)"
                    } else {
                        " (no significant regression)"
                    }
                );
            }
            if !comparison.unmatched.is_empty() {
                let _ = writeln!(
                    out,
                    "    not compared (no metric of that name): {}",
                    comparison.unmatched.join(", ")
                );
            }
        }
        if !self.flaky_in_history.is_empty() {
            let _ = writeln!(
                out,
                "  flaky across stored runs ({}): {}",
                self.flaky_in_history.len(),
                self.flaky_in_history
                    .iter()
                    .take(5)
                    .map(|k| truncate(k, 60))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let failing_total = self.summary.total.failed + self.summary.total.errors;
        if failing_total > 0 {
            let _ = writeln!(out, "  failures and errors ({failing_total}):");
            for row in self.failing.iter().take(20) {
                let why = row.why();
                let _ = writeln!(
                    out,
                    "    [{}] {} × {}: {}",
                    truncate(&row.description, 40),
                    truncate(&row.prompt, 20),
                    row.provider,
                    why
                );
            }
            if failing_total > 20 {
                let _ = writeln!(
                    out,
                    "    … and {} more (see -o results.json, or `sluice eval show {}`)",
                    failing_total - 20,
                    self.run_id
                );
            }
        }
        let (pass, reasons) = self.verdict();
        let total = &self.summary.total;
        if total.prompt_tokens + total.completion_tokens > 0 {
            let cost = if total.cost > 0.0 {
                format!(", ${:.4}", total.cost)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  tokens: {} prompt, {} completion{cost}",
                total.prompt_tokens, total.completion_tokens
            );
        }
        let _ = writeln!(
            out,
            "{} {} passed, {} failed, {} errors{}",
            if pass { "PASS" } else { "FAIL" },
            total.passed,
            total.failed,
            total.errors,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            }
        );
        out
    }

    /// The JSON report's envelope, in the manner of promptfoo's; the `results` list is streamed
    /// into the file by [`ReportFiles`].
    pub fn summary_json(&self) -> serde_json::Value {
        let (pass, reasons) = self.verdict();
        let total = &self.summary.total;
        let pairs: Vec<_> = self
            .summary
            .by_pair
            .iter()
            .map(|((prompt, provider), tally)| {
                let Interval { low, high } = wilson_95(tally.passed, tally.total());
                json!({"prompt": prompt, "provider": provider, "passed": tally.passed, "failed": tally.failed,
                       "errors": tally.errors, "pass_rate": tally.pass_rate(), "pass_rate_95": [low, high],
                       "latency_ms_total": tally.latency_ms, "prompt_tokens": tally.prompt_tokens,
                       "completion_tokens": tally.completion_tokens})
            })
            .collect();
        let flaky: Vec<_> = self.summary.by_test.iter().filter(|(_, t)| t.is_flaky()).map(|(i, t)| json!({"test": i, "description": t.description, "passed": t.passed, "graded": t.graded})).collect();
        json!({
            "version": 1,
            "run_id": self.run_id,
            "description": self.description,
            "gate": {"passed": pass, "reasons": reasons, "min_pass_rate": self.gate.min_pass_rate, "max_errors": self.gate.max_errors},
            "stats": {"successes": total.passed, "failures": total.failed, "errors": total.errors,
                      "pass_rate": total.pass_rate(), "duration_s": self.duration_s,
                      "token_usage": {"prompt": total.prompt_tokens, "completion": total.completion_tokens,
                                      "total": total.prompt_tokens + total.completion_tokens},
                      "cost_usd": total.cost},
            "named_scores": self.summary.named_scores,
            "pairs": pairs,
            "flaky": flaky,
            "flaky_in_history": self.flaky_in_history,
            "comparison": self.comparison,
        })
    }

    /// The whole JSON envelope: [`Report::summary_json`] plus a `tests` list with each test's
    /// k of n, Wilson interval, pass@k and flakiness.
    pub fn json(&self) -> serde_json::Value {
        let mut envelope = self.summary_json();
        let tests: Vec<_> = self.tests_json().collect();
        envelope["tests"] = serde_json::Value::Array(tests);
        envelope
    }

    /// One JSON object per test, made as they are asked for.
    pub fn tests_json(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.summary.by_test.iter().map(|(i, t)| {
            let Interval { low, high } = wilson_95(t.passed, t.graded);
            let n = t.graded;
            let finite = |x: f64| {
                if x.is_finite() {
                    json!(x)
                } else {
                    serde_json::Value::Null
                }
            };
            json!({"test": i, "description": t.description, "passed": t.passed, "graded": n,
                   "pass_rate_95": [low, high], "pass_at_1": finite(t.pass_at(1)),
                   "pass_at_n": finite(t.pass_at(n)), "pass_all_n": finite(t.pass_all(n)), "flaky": t.is_flaky()})
        })
    }

    /// A Markdown summary (for `.md` outputs and GitHub's step summary).
    pub fn markdown(&self) -> String {
        let (pass, reasons) = self.verdict();
        let total = &self.summary.total;
        let mut out = format!(
            "### {} {}\n\n{} passed, {} failed, {} errors (run `{}`){}\n\n| prompt | provider | pass | fail | error | pass rate | 95% interval |\n|---|---|---:|---:|---:|---:|---|\n",
            if pass { "✅" } else { "❌" },
            if self.description.is_empty() {
                "sluice eval"
            } else {
                self.description
            },
            total.passed,
            total.failed,
            total.errors,
            self.run_id,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("\n\n**Gate failed:** {}", reasons.join("; "))
            }
        );
        for ((prompt, provider), tally) in &self.summary.by_pair {
            let Interval { low, high } = wilson_95(tally.passed, tally.total());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1}% | {:.1}–{:.1}% |",
                markdown_cell(prompt),
                markdown_cell(provider),
                tally.passed,
                tally.failed,
                tally.errors,
                tally.pass_rate() * 100.0,
                low * 100.0,
                high * 100.0
            );
        }
        out
    }

    /// GitHub Actions `::error` lines for the sampled failing rows.
    pub fn github_annotations(&self) -> String {
        let mut out = String::new();
        for row in self.failing {
            let why = match &row.error {
                Some(error) => error.clone(),
                None => row.failed_assertions(),
            };
            let title = format!("sluice eval: {}", row.description);
            let message = format!("{} × {}: {why}", row.prompt, row.provider);
            out.push_str(&github_command("error", &[("title", &title)], &message));
            out.push('\n');
        }
        out
    }
}

/// Report files written while a run goes: every row is appended as it arrives, so memory
/// stays flat however large the suite.
pub struct ReportFiles {
    writers: Vec<Writer>,
}

enum Writer {
    Jsonl(PathBuf, BufWriter<File>),
    Json {
        path: PathBuf,
        file: BufWriter<File>,
        first: bool,
    },
    Junit {
        path: PathBuf,
        parts: BTreeMap<(String, String), (PathBuf, BufWriter<File>)>,
    },
    Markdown(PathBuf),
    Html {
        path: PathBuf,
        part: PathBuf,
        rows: BufWriter<File>,
    },
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |error| ReportError::Write(path.display().to_string(), error)
}

fn create(path: &Path) -> Result<BufWriter<File>, ReportError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error(path))?;
    }
    File::create(path)
        .map(BufWriter::new)
        .map_err(write_error(path))
}

impl ReportFiles {
    /// Checks every path's format and creates the files, before the run starts.
    pub fn create(paths: &[PathBuf]) -> Result<Self, ReportError> {
        let mut writers = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let writer = if name.ends_with(".jsonl") {
                Writer::Jsonl(path.clone(), create(path)?)
            } else if name.ends_with(".json") {
                let mut file = create(path)?;
                file.write_all(b"{\"results\": [\n")
                    .map_err(write_error(path))?;
                Writer::Json {
                    path: path.clone(),
                    file,
                    first: true,
                }
            } else if name.ends_with(".xml") {
                // Created now so that an unwritable path fails before the run.
                drop(create(path)?);
                Writer::Junit {
                    path: path.clone(),
                    parts: BTreeMap::new(),
                }
            } else if name.ends_with(".md") {
                drop(create(path)?);
                Writer::Markdown(path.clone())
            } else if name.ends_with(".html") || name.ends_with(".htm") {
                drop(create(path)?);
                let part = path.with_extension("html.part");
                let rows = create(&part)?;
                Writer::Html {
                    path: path.clone(),
                    part,
                    rows,
                }
            } else {
                return Err(ReportError::UnknownFormat(path.display().to_string()));
            };
            writers.push(writer);
        }
        Ok(Self { writers })
    }

    /// Appends one row to every file.
    pub fn row(&mut self, row: &EvalRow) -> Result<(), ReportError> {
        for writer in &mut self.writers {
            match writer {
                Writer::Jsonl(path, file) => {
                    serde_json::to_writer(&mut *file, row)
                        .map_err(|e| write_error(path)(e.into()))?;
                    file.write_all(b"\n").map_err(write_error(path))?;
                }
                Writer::Json { path, file, first } => {
                    if !*first {
                        file.write_all(b",\n").map_err(write_error(path))?;
                    }
                    *first = false;
                    serde_json::to_writer(&mut *file, row)
                        .map_err(|e| write_error(path)(e.into()))?;
                }
                Writer::Junit { path, parts } => {
                    let pair = (row.prompt.clone(), row.provider.clone());
                    if !parts.contains_key(&pair) {
                        let part = path.with_extension(format!("xml.part{}", parts.len()));
                        let file = create(&part)?;
                        parts.insert(pair.clone(), (part, file));
                    }
                    if let Some((part, file)) = parts.get_mut(&pair) {
                        file.write_all(junit_testcase(row).as_bytes())
                            .map_err(write_error(part))?;
                    }
                }
                Writer::Markdown(_) => {}
                Writer::Html { part, rows, .. } => {
                    rows.write_all(html_row(row).as_bytes())
                        .map_err(write_error(part))?;
                }
            }
        }
        Ok(())
    }

    /// Completes every file with the run's summary.
    pub fn finish(self, report: &Report<'_>) -> Result<(), ReportError> {
        for writer in self.writers {
            match writer {
                Writer::Jsonl(path, mut file) => file.flush().map_err(write_error(&path))?,
                Writer::Json { path, mut file, .. } => {
                    file.write_all(b"\n],\n").map_err(write_error(&path))?;
                    let envelope = serde_json::to_string_pretty(&report.summary_json())
                        .unwrap_or_else(|_| "{}".to_owned());
                    // Splice the envelope's fields after `results`, dropping its braces, then
                    // stream the per-test list.
                    let fields = envelope
                        .trim()
                        .trim_start_matches('{')
                        .trim_end_matches('}');
                    file.write_all(fields.trim_end().as_bytes())
                        .map_err(write_error(&path))?;
                    file.write_all(b",\n  \"tests\": [")
                        .map_err(write_error(&path))?;
                    for (i, test) in report.tests_json().enumerate() {
                        let separator: &[u8] = if i == 0 { b"\n    " } else { b",\n    " };
                        file.write_all(separator).map_err(write_error(&path))?;
                        serde_json::to_writer(&mut file, &test)
                            .map_err(|e| write_error(&path)(std::io::Error::other(e)))?;
                    }
                    file.write_all(b"\n  ]\n}\n").map_err(write_error(&path))?;
                    file.flush().map_err(write_error(&path))?;
                }
                Writer::Junit { path, parts } => finish_junit(&path, parts, report)?,
                Writer::Markdown(path) => {
                    std::fs::write(&path, report.markdown()).map_err(write_error(&path))?
                }
                Writer::Html { path, part, rows } => finish_html(&path, &part, rows, report)?,
            }
        }
        Ok(())
    }
}

fn html_row(row: &EvalRow) -> String {
    let verdict = match (&row.error, row.pass) {
        (Some(_), _) => "<td class=error>error</td>",
        (None, true) => "<td class=pass>pass</td>",
        (None, false) => "<td class=fail>fail</td>",
    };
    let why = match &row.error {
        Some(error) => error.clone(),
        None => row
            .grades
            .iter()
            .map(|g| {
                format!(
                    "{} {}: {}",
                    if g.pass { "✓" } else { "✗" },
                    g.assertion,
                    g.reason
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let output: String = row
        .output
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(2000)
        .collect();
    format!(
        "<tr class=\"{}\">{verdict}<td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td>{:.0}</td></tr>\n",
        if row.pass { "passed" } else { "failed" },
        xml_escape(&row.description),
        xml_escape(&row.prompt),
        xml_escape(&row.provider),
        row.score,
        xml_escape(&output),
        xml_escape(&why),
        row.latency_ms
    )
}

/// A self-contained HTML page: the verdict, the summary per prompt × provider, then every row
/// (copied from its part file), with a filter for failures. No external resources.
fn finish_html(
    path: &Path,
    part: &Path,
    mut rows: BufWriter<File>,
    report: &Report<'_>,
) -> Result<(), ReportError> {
    rows.flush().map_err(write_error(part))?;
    drop(rows);
    let (pass, reasons) = report.verdict();
    let total = &report.summary.total;
    let title = if report.description.is_empty() {
        "sluice eval"
    } else {
        report.description
    };
    let mut head = format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{}</title><style>{HTML_STYLE}</style></head><body>\n<h1>{} {}</h1>\n<p>Run <code>{}</code>: {} passed, {} failed, {} errors in {:.1} s.{}</p>\n<table><tr><th>prompt</th><th>provider</th><th>pass</th><th>fail</th><th>error</th><th>pass rate</th><th>95% interval</th></tr>\n",
        xml_escape(title),
        if pass { "✅" } else { "❌" },
        xml_escape(title),
        xml_escape(report.run_id),
        total.passed,
        total.failed,
        total.errors,
        report.duration_s,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(
                " <strong>Gate failed:</strong> {}",
                xml_escape(&reasons.join("; "))
            )
        }
    );
    for ((prompt, provider), tally) in &report.summary.by_pair {
        let Interval { low, high } = wilson_95(tally.passed, tally.total());
        let _ = writeln!(
            head,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}–{:.1}%</td></tr>",
            xml_escape(prompt),
            xml_escape(provider),
            tally.passed,
            tally.failed,
            tally.errors,
            tally.pass_rate() * 100.0,
            low * 100.0,
            high * 100.0
        );
    }
    head.push_str("</table>\n<p><label><input type=checkbox id=only-failed onchange=\"document.body.classList.toggle('only-failed', this.checked)\"> show failures and errors only</label></p>\n<table id=rows><tr><th>verdict</th><th>test</th><th>prompt</th><th>provider</th><th>score</th><th>output</th><th>assertions</th><th>ms</th></tr>\n");
    let mut out = create(path)?;
    out.write_all(head.as_bytes()).map_err(write_error(path))?;
    let mut reader = File::open(part).map_err(write_error(part))?;
    std::io::copy(&mut reader, &mut out).map_err(write_error(path))?;
    out.write_all(b"</table>\n</body></html>\n")
        .map_err(write_error(path))?;
    out.flush().map_err(write_error(path))?;
    std::fs::remove_file(part).map_err(write_error(part))
}

const HTML_STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}th{background:#f4f4f4}\
pre{margin:0;white-space:pre-wrap;max-width:40em}.pass{color:#176f2c;font-weight:600}.fail{color:#b3261e;font-weight:600}\
.error{color:#8a4b00;font-weight:600}body.only-failed tr.passed{display:none}";

fn junit_testcase(row: &EvalRow) -> String {
    let suite_name = format!("{} × {}", row.prompt, row.provider);
    let name = if row.repeat > 0 {
        format!("{} (repeat {})", row.description, row.repeat + 1)
    } else {
        row.description.clone()
    };
    let seconds = Some(row.latency_ms / 1000.0);
    match (&row.error, row.pass) {
        (Some(error), _) => junit_case(
            &name,
            &suite_name,
            seconds,
            JunitVerdict::Error {
                message: error,
                kind: "provider_error",
            },
        ),
        (None, false) => {
            let reasons: Vec<String> = row
                .grades
                .iter()
                .filter(|g| !g.pass)
                .map(|g| format!("{}: {}", g.assertion, g.reason))
                .collect();
            let text = format!(
                "output: {}\n{}",
                row.output.as_deref().unwrap_or(""),
                reasons.join("\n")
            );
            junit_case(
                &name,
                &suite_name,
                seconds,
                JunitVerdict::Failure {
                    message: &reasons.join("; "),
                    kind: "assertion",
                    text: Some(&text),
                },
            )
        }
        (None, true) => junit_case(&name, &suite_name, seconds, JunitVerdict::Passed),
    }
}

/// JUnit XML: one `testsuite` per prompt × provider (its testcases copied from its part file),
/// failures and errors apart.
fn finish_junit(
    path: &Path,
    parts: BTreeMap<(String, String), (PathBuf, BufWriter<File>)>,
    report: &Report<'_>,
) -> Result<(), ReportError> {
    let total = &report.summary.total;
    let mut out = create(path)?;
    let header = junit_open(
        if report.description.is_empty() {
            "sluice eval"
        } else {
            report.description
        },
        JunitCounts {
            tests: total.total(),
            failures: total.failed,
            errors: total.errors,
        },
        Some(report.duration_s),
    );
    out.write_all(header.as_bytes())
        .map_err(write_error(path))?;
    for ((prompt, provider), (part, mut file)) in parts {
        file.flush().map_err(write_error(&part))?;
        drop(file);
        let tally = report
            .summary
            .by_pair
            .get(&(prompt.clone(), provider.clone()))
            .cloned()
            .unwrap_or_default();
        let opening = junit_suite_open(
            &format!("{prompt} × {provider}"),
            JunitCounts {
                tests: tally.total(),
                failures: tally.failed,
                errors: tally.errors,
            },
            Some(tally.latency_ms / 1000.0),
        );
        out.write_all(opening.as_bytes())
            .map_err(write_error(path))?;
        let mut reader = File::open(&part).map_err(write_error(&part))?;
        std::io::copy(&mut reader, &mut out).map_err(write_error(path))?;
        out.write_all(JUNIT_SUITE_CLOSE.as_bytes())
            .map_err(write_error(path))?;
        std::fs::remove_file(&part).map_err(write_error(&part))?;
    }
    out.write_all(JUNIT_CLOSE.as_bytes())
        .map_err(write_error(path))?;
    out.flush().map_err(write_error(path))
}

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The extension names no format.
    #[error("cannot tell the report format of {0}: use .json, .jsonl, .xml (JUnit), .md or .html")]
    UnknownFormat(String),
    /// The file could not be written.
    #[error("cannot write {0}: {1}")]
    Write(String, #[source] std::io::Error),
}

fn truncate(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= width {
        one_line
    } else {
        let cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn markdown_cell(text: &str) -> String {
    truncate(text, 60).replace('|', "\\|")
}
