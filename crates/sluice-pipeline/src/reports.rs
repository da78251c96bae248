//! The report files a stage declares (`reports: {junit, sarif}`), read once it ended so the
//! run's summary can say what they hold: a JUnit file's test cases, failures, errors and
//! skips; a SARIF file's results by level.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Reports;

/// The most read from one report file.
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// What one report file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFile {
    /// `junit` or `sarif`.
    pub kind: String,
    /// The file, as the stage names it.
    pub path: PathBuf,
    /// Failures and errors (JUnit), or results of level `error` (SARIF).
    pub problems: u64,
    /// For people: `12 tests, 1 failure, 0 errors, 2 skipped`, `3 results (1 error, 2 warnings)`,
    /// or why it could not be read.
    pub summary: String,
}

/// Reads every report of `reports` under `workdir`.
pub fn read(reports: &Reports, workdir: &Path) -> Vec<ReportFile> {
    let junit_files = reports.junit.iter().map(|p| ("junit", p));
    let sarif_files = reports.sarif.iter().map(|p| ("sarif", p));
    junit_files
        .chain(sarif_files)
        .map(|(kind, path)| {
            let text = read_capped(&workdir.join(path));
            let (problems, summary) = match (kind, text) {
                (_, Err(e)) => (0, format!("not read: {e}")),
                ("junit", Ok(text)) => junit(&text),
                (_, Ok(text)) => sarif(&text),
            };
            ReportFile {
                kind: kind.to_owned(),
                path: PathBuf::from(path),
                problems,
                summary,
            }
        })
        .collect()
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_REPORT_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn junit(text: &str) -> (u64, String) {
    let document = match roxmltree::Document::parse(text) {
        Ok(document) => document,
        Err(e) => return (0, format!("not JUnit XML: {e}")),
    };
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for case in document
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
    {
        tests += 1;
        let has = |tag: &str| case.children().any(|c| c.has_tag_name(tag));
        if has("failure") {
            failures += 1;
        } else if has("error") {
            errors += 1;
        } else if has("skipped") {
            skipped += 1;
        }
    }
    (
        failures + errors,
        format!(
            "{}, {}, {}, {skipped} skipped",
            plural(tests, "test", "tests"),
            plural(failures, "failure", "failures"),
            plural(errors, "error", "errors")
        ),
    )
}

fn sarif(text: &str) -> (u64, String) {
    let document: serde_json::Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(e) => return (0, format!("not SARIF JSON: {e}")),
    };
    let Some(runs) = document.get("runs").and_then(|r| r.as_array()) else {
        return (0, "not SARIF: no `runs`".to_owned());
    };
    let (mut total, mut error, mut warning, mut note) = (0, 0, 0, 0);
    for result in runs
        .iter()
        .filter_map(|run| run.get("results").and_then(|r| r.as_array()))
        .flatten()
    {
        total += 1;
        // SARIF's default level is `warning`.
        match result
            .get("level")
            .and_then(|l| l.as_str())
            .unwrap_or("warning")
        {
            "error" => error += 1,
            "warning" => warning += 1,
            _ => note += 1,
        }
    }
    (
        error,
        format!(
            "{} ({}, {}, {})",
            plural(total, "result", "results"),
            plural(error, "error", "errors"),
            plural(warning, "warning", "warnings"),
            plural(note, "note", "notes")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_and_sarif_files_are_summarised() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("junit.xml"),
            r#"<testsuites><testsuite name="s"><testcase name="a"/><testcase name="b"><failure message="x"/></testcase><testcase name="c"><skipped/></testcase></testsuite></testsuites>"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ruff.sarif"),
            r#"{"version": "2.1.0", "runs": [{"results": [{"level": "error"}, {}, {"level": "note"}]}]}"#,
        )
        .unwrap();
        let reports = Reports {
            junit: vec!["junit.xml".into(), "missing.xml".into()],
            sarif: vec!["ruff.sarif".into()],
        };
        let read = read(&reports, dir.path());
        assert_eq!(read[0].summary, "3 tests, 1 failure, 0 errors, 1 skipped");
        assert_eq!(read[0].problems, 1);
        assert!(read[1].summary.starts_with("not read:"), "{:?}", read[1]);
        assert_eq!(read[2].summary, "3 results (1 error, 1 warning, 1 note)");
    }
}
