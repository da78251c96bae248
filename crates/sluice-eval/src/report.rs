//! Reports of a run: the console summary, and files chosen by extension (`.json`, `.jsonl`,
//! `.xml` JUnit, `.md`), plus GitHub's step summary and `::error` annotations when running
//! in GitHub Actions.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::compare::Comparison;
use crate::runner::{EvalRow, Gate, Summary};
use crate::stats::wilson_95;

/// Everything a report needs.
pub struct Report<'a> {
    /// The stored run id.
    pub run_id: &'a str,
    /// The suite's description.
    pub description: &'a str,
    /// Every row, in `seq` order.
    pub rows: &'a [EvalRow],
    /// The aggregates.
    pub summary: &'a Summary,
    /// The gate applied.
    pub gate: &'a Gate,
    /// Wall time in seconds.
    pub duration_s: f64,
    /// The comparison with a baseline, when one was given.
    pub comparison: Option<&'a Comparison>,
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
            let (low, high) = wilson_95(tally.passed, tally.total());
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
        if let Some(comparison) = self.comparison {
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
        let failing: Vec<&EvalRow> = self.rows.iter().filter(|r| !r.pass).collect();
        if !failing.is_empty() {
            let _ = writeln!(out, "  failures and errors ({}):", failing.len());
            for row in failing.iter().take(20) {
                let why = match &row.error {
                    Some(error) => format!("error: {error}"),
                    None => row
                        .grades
                        .iter()
                        .filter(|g| !g.pass)
                        .map(|g| format!("{}: {}", g.assertion, g.reason))
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                let _ = writeln!(
                    out,
                    "    [{}] {} × {}: {}",
                    truncate(&row.description, 40),
                    truncate(&row.prompt, 20),
                    row.provider,
                    why
                );
            }
            if failing.len() > 20 {
                let _ = writeln!(
                    out,
                    "    … and {} more (see -o results.json)",
                    failing.len() - 20
                );
            }
        }
        let (pass, reasons) = self.verdict();
        let total = &self.summary.total;
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

    /// The JSON report: an envelope in the manner of promptfoo's, with every row.
    pub fn json(&self) -> serde_json::Value {
        let (pass, reasons) = self.verdict();
        let total = &self.summary.total;
        let pairs: Vec<_> = self
            .summary
            .by_pair
            .iter()
            .map(|((prompt, provider), tally)| {
                let (low, high) = wilson_95(tally.passed, tally.total());
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
                                      "total": total.prompt_tokens + total.completion_tokens}},
            "named_scores": self.summary.named_scores,
            "pairs": pairs,
            "flaky": flaky,
            "comparison": self.comparison,
            "results": self.rows,
        })
    }

    /// JUnit XML: one `testsuite` per prompt × provider, one `testcase` per row, failures and
    /// errors apart.
    pub fn junit(&self) -> String {
        let total = &self.summary.total;
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
            xml(if self.description.is_empty() {
                "sluice eval"
            } else {
                self.description
            }),
            total.total(),
            total.failed,
            total.errors,
            self.duration_s
        );
        for ((prompt, provider), tally) in &self.summary.by_pair {
            let suite_name = format!("{prompt} × {provider}");
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
                xml(&suite_name),
                tally.total(),
                tally.failed,
                tally.errors,
                tally.latency_ms / 1000.0
            );
            for row in self
                .rows
                .iter()
                .filter(|r| &r.prompt == prompt && &r.provider == provider)
            {
                let name = if row.repeat > 0 {
                    format!("{} (repeat {})", row.description, row.repeat + 1)
                } else {
                    row.description.clone()
                };
                let _ = write!(
                    out,
                    "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                    xml(&name),
                    xml(&suite_name),
                    row.latency_ms / 1000.0
                );
                match (&row.error, row.pass) {
                    (Some(error), _) => {
                        let _ = writeln!(
                            out,
                            ">\n      <error message=\"{}\" type=\"provider_error\"/>\n    </testcase>",
                            xml(error)
                        );
                    }
                    (None, false) => {
                        let reasons: Vec<String> = row
                            .grades
                            .iter()
                            .filter(|g| !g.pass)
                            .map(|g| format!("{}: {}", g.assertion, g.reason))
                            .collect();
                        let message = reasons.join("; ");
                        let _ = writeln!(
                            out,
                            ">\n      <failure message=\"{}\" type=\"assertion\">{}</failure>\n    </testcase>",
                            xml(&message),
                            xml(&format!(
                                "output: {}\n{}",
                                row.output.as_deref().unwrap_or(""),
                                reasons.join("\n")
                            ))
                        );
                    }
                    (None, true) => out.push_str("/>\n"),
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
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
            let (low, high) = wilson_95(tally.passed, tally.total());
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

    /// GitHub Actions `::error` lines for failing rows (at most 50).
    pub fn github_annotations(&self) -> String {
        let mut out = String::new();
        for row in self.rows.iter().filter(|r| !r.pass).take(50) {
            let why = match &row.error {
                Some(error) => error.clone(),
                None => row
                    .grades
                    .iter()
                    .filter(|g| !g.pass)
                    .map(|g| format!("{}: {}", g.assertion, g.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            let _ = writeln!(
                out,
                "::error title=sluice eval: {}::{} × {}: {}",
                annotation(&row.description),
                annotation(&row.prompt),
                annotation(&row.provider),
                annotation(&why)
            );
        }
        out
    }

    /// Writes a report file chosen by the extension of `path`.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let contents = if name.ends_with(".jsonl") {
            let mut text = String::new();
            for row in self.rows {
                text.push_str(&serde_json::to_string(row).unwrap_or_default());
                text.push('\n');
            }
            text
        } else if name.ends_with(".json") {
            serde_json::to_string_pretty(&self.json()).unwrap_or_default()
        } else if name.ends_with(".xml") {
            self.junit()
        } else if name.ends_with(".md") {
            self.markdown()
        } else {
            return Err(ReportError::UnknownFormat(path.display().to_string()));
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| ReportError::Write(path.display().to_string(), e))?;
        }
        std::fs::write(path, contents)
            .map_err(|e| ReportError::Write(path.display().to_string(), e))
    }
}

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The extension names no format.
    #[error("cannot tell the report format of {0}: use .json, .jsonl, .xml (JUnit) or .md")]
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

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

fn markdown_cell(text: &str) -> String {
    truncate(text, 60).replace('|', "\\|")
}

fn annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
        .replace("::", ": :")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn annotations_escape_newlines() {
        assert_eq!(annotation("a\nb%"), "a%0Ab%25");
    }
}
