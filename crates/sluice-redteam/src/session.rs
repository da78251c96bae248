//! A red-team run kept in the store and its report files, as a library: the run created (and
//! held by this process while it runs) with what it was configured with, every attempt stored
//! as a result keyed by probe and strategy (answers redacted), the run finished with its
//! verdict, and each report file written in the format its extension names.

use std::path::{Path, PathBuf};

use serde_json::json;
use sluice_store::{NewRun, ResultRecord, RunHold, RunId, RunKind, RunStatus, Store, StoreError};

use crate::Config;
use crate::report::{self, Summary};
use crate::run::Attempt;

/// Report formats, by extension.
const FORMATS: [&str; 4] = ["sarif", "json", "xml", "html"];

/// Why a report cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    /// An extension that names no format.
    #[error("{0}: unknown report format (expected .sarif, .json, .xml or .html)")]
    UnknownFormat(PathBuf),
    /// The file or its directory could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialized.
    #[error("cannot serialize the report for {0}")]
    Serialize(PathBuf, #[source] serde_json::Error),
}

/// Checks every report path's format before anything runs.
pub fn check_outputs(outputs: &[PathBuf]) -> Result<(), ReportFileError> {
    for output in outputs {
        let extension = output.extension().and_then(|e| e.to_str());
        if !extension.is_some_and(|e| FORMATS.contains(&e)) {
            return Err(ReportFileError::UnknownFormat(output.clone()));
        }
    }
    Ok(())
}

/// Writes one report file in the format its extension names (SARIF, JSON, JUnit XML, HTML).
pub fn write_report(
    output: &Path,
    attempts: &[Attempt],
    summary: &Summary,
    config: &Config,
    config_path: &Path,
) -> Result<(), ReportFileError> {
    let serialize = |e| ReportFileError::Serialize(output.to_owned(), e);
    let body = match output.extension().and_then(|e| e.to_str()) {
        Some("sarif") => serde_json::to_string_pretty(&report::sarif(
            attempts,
            &config_path.display().to_string(),
            env!("CARGO_PKG_VERSION"),
        ))
        .map_err(serialize)?,
        Some("xml") => report::junit(attempts, &config.description),
        Some("html") => report::html(summary, attempts, &config.description),
        Some("json") => serde_json::to_string_pretty(&report::json_report(summary, attempts))
            .map_err(serialize)?,
        _ => return Err(ReportFileError::UnknownFormat(output.to_owned())),
    };
    let write = |source| ReportFileError::Write {
        path: output.to_owned(),
        source,
    };
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write)?;
    }
    std::fs::write(output, body).map_err(write)
}

/// A red-team run in the store, held by this process while it runs.
#[derive(Debug)]
pub struct StoredRun {
    store: Store,
    id: RunId,
    _hold: RunHold,
}

impl StoredRun {
    /// Records a new run of `config` (read from `path`).
    pub async fn begin(store: &Store, config: &Config, path: &Path) -> Result<Self, StoreError> {
        let (id, hold) = store
            .create_held_run(NewRun {
                kind: RunKind::Redteam,
                name: config.description.clone(),
                config: json!({
                    "config": path.display().to_string(),
                    "target": {"url": config.target.endpoint.base_url, "model": config.target.endpoint.model},
                    "probes": config.probes.len(),
                    "strategies": config.strategies.iter().map(|c| c.name()).collect::<Vec<_>>(),
                    "packs": report::pack_versions(&config.probes),
                    "judge": config.judge.as_ref().map(|j| json!({"url": j.endpoint.base_url, "model": j.endpoint.model})),
                }),
            })
            .await?;
        Ok(Self {
            store: store.clone(),
            id,
            _hold: hold,
        })
    }

    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// Stores every attempt (answers redacted) and finishes the run with its verdict.
    pub async fn finish(self, attempts: &[Attempt], summary: &Summary) -> Result<(), StoreError> {
        let records: Vec<ResultRecord> = attempts
            .iter()
            .enumerate()
            .map(|(seq, a)| ResultRecord {
                seq: seq as i64,
                key: a.key(),
                pass: a.hit.map(|hit| !hit),
                score: None,
                error: a.error.clone(),
                data: json!({
                    "category": a.probe.category,
                    "owasp": a.probe.owasp,
                    "strategy": a.strategy,
                    "evidence": a.evidence,
                    "answer": sluice_safety::redact(&a.answer),
                }),
            })
            .collect();
        for batch in records.chunks(500) {
            self.store.append_results(&self.id, batch.to_vec()).await?;
        }
        let status = if summary.passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        let kept = serde_json::to_value(summary).unwrap_or_default();
        self.store.finish_run(&self.id, status, kept).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_formats_are_checked_before_a_run() {
        let ok = [PathBuf::from("a.sarif"), PathBuf::from("out/b.json")];
        assert!(check_outputs(&ok).is_ok());
        let bad = [PathBuf::from("a.sarif"), PathBuf::from("b.txt")];
        let error = check_outputs(&bad).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("b.txt: unknown report format (expected .sarif, .json, .xml or .html)")
        );
    }
}
