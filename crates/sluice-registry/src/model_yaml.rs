//! `model.yaml`: one model version's description, checked against the schema below, walking the
//! YAML tree so that every problem in a file is found in one pass. [`validate`] also checks the
//! files beside each `model.yaml` (see [`crate::deployment`]).
//!
//! ```yaml
//! name: chat-small                 # required, ^[a-z0-9-]+$, equal to its directory's name
//! version: 1.4.0                   # required, MAJOR.MINOR.PATCH
//! architecture: llama              # required
//! description: the small chat model
//! resources:                       # required
//!   memory_gb: 24                  # number ≥ 1, and ≥ 8 × gpu_count
//!   gpu_count: 1                   # integer ≥ 1
//!   gpu_type: L4
//! serving: {max_batch_size: 32, max_sequence_length: 8192, protocol: http}   # or grpc
//! source: {type: huggingface, uri: "hf://org/chat-small@main"}              # s3 | huggingface | local
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;
use sluice_config::yaml::{Node, NodeKind};
use sluice_config::{Diagnostic, Document, FieldPath, ProcessEnv};

/// One file's findings.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: PathBuf,
    /// Its problems, in file order; empty when valid.
    pub errors: Vec<Finding>,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The field, `resources.gpu_count`; empty for the file as a whole.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl From<&Diagnostic> for Finding {
    fn from(d: &Diagnostic) -> Self {
        let location = d
            .location
            .unwrap_or(sluice_config::Location { line: 1, column: 1 });
        Finding {
            line: location.line,
            column: location.column,
            field: d.path.to_string(),
            message: d.message.clone(),
        }
    }
}

/// Every `model.yaml` under these paths (files are taken as they are, directories searched),
/// checked. An error when a path does not exist or no `model.yaml` is found.
pub fn validate(paths: &[PathBuf]) -> Result<Vec<FileReport>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
        } else if path.is_dir() {
            find(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    if files.is_empty() {
        return Err(format!(
            "no model.yaml under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    files.sort();
    let mut reports = Vec::new();
    for file in &files {
        reports.push(validate_file(file));
        if let Some(dir) = file.parent() {
            reports.extend(crate::deployment::validate_beside(file, dir));
        }
    }
    Ok(reports)
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != ".git" && n != "target")
            {
                find(&path, out)?;
            }
        } else if path.file_name().is_some_and(|n| n == "model.yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks one `model.yaml`.
pub fn validate_file(file: &Path) -> FileReport {
    let directory = file
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .map(str::to_owned);
    check_file(file, |check, root| check.model(root, directory.as_deref()))
}

/// Reads one YAML file and checks its root with `check_root`; every problem, in file order.
pub(crate) fn check_file(
    file: &Path,
    check_root: impl FnOnce(&mut Check<'_>, &Node),
) -> FileReport {
    let errors = match Document::read(file, &ProcessEnv) {
        Err(diagnostics) => diagnostics.errors.iter().map(Finding::from).collect(),
        Ok(document) => {
            let mut check = Check {
                document: &document,
                errors: Vec::new(),
            };
            check_root(&mut check, document.root());
            let mut errors: Vec<Finding> = check.errors.iter().map(Finding::from).collect();
            errors.sort_by_key(|f| (f.line, f.column));
            errors
        }
    };
    FileReport {
        file: file.to_owned(),
        errors,
    }
}

/// A walk over one document that collects located errors.
pub(crate) struct Check<'a> {
    pub(crate) document: &'a Document,
    pub(crate) errors: Vec<Diagnostic>,
}

/// What a field must hold.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Number { min: f64, max: f64 },
    Integer { min: i64 },
    OneOf(&'static [&'static str]),
}

impl Check<'_> {
    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(self.document.error_at(path, message));
    }

    /// The mapping at `path`, reporting keys that are not in `known`.
    pub(crate) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &FieldPath,
        known: &[&str],
    ) -> Option<&'n [(Node, Node)]> {
        let NodeKind::Mapping(entries) = &node.kind else {
            self.error(
                path,
                format!("expected a mapping, found {}", node.describe()),
            );
            return None;
        };
        for (key, _) in entries {
            if let NodeKind::Scalar { value, .. } = &key.kind
                && !known.contains(&value.as_str())
            {
                let hint = sluice_config::did_you_mean(value, known.iter().copied())
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                let at = path.key(value);
                self.errors.push(Diagnostic::new(
                    key.location(),
                    at,
                    format!(
                        "unknown field `{value}` (known: {}){hint}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Some(entries)
    }

    /// Checks the field `key` of `parent` against `kind`; returns its text when it is valid.
    pub(crate) fn field(
        &mut self,
        parent: &Node,
        path: &FieldPath,
        key: &str,
        kind: Kind,
        required: bool,
    ) -> Option<String> {
        let at = path.key(key);
        let Some(node) = parent.get(key).filter(|n| !n.is_null()) else {
            if required {
                self.error(&at, format!("`{key}` is required"));
            }
            return None;
        };
        let NodeKind::Scalar { value, plain } = &node.kind else {
            self.error(&at, format!("expected a value, found {}", node.describe()));
            return None;
        };
        match kind {
            Kind::Text => Some(value.clone()),
            Kind::Number { min, max } => match value.parse::<f64>() {
                Ok(n) if *plain && n.is_finite() && n >= min && n <= max => Some(value.clone()),
                Ok(n) if *plain && n.is_finite() && max.is_finite() => {
                    self.error(
                        &at,
                        format!("expected a number from {min} to {max}, found {value}"),
                    );
                    None
                }
                Ok(n) if *plain && n.is_finite() => {
                    self.error(&at, format!("expected a number ≥ {min}, found {value}"));
                    None
                }
                _ => {
                    self.error(&at, format!("expected a number, found {}", node.describe()));
                    None
                }
            },
            Kind::Integer { min } => match value.parse::<i64>() {
                Ok(n) if *plain && n >= min => Some(value.clone()),
                Ok(_) if *plain => {
                    self.error(&at, format!("expected an integer ≥ {min}, found {value}"));
                    None
                }
                _ => {
                    self.error(
                        &at,
                        format!("expected an integer, found {}", node.describe()),
                    );
                    None
                }
            },
            Kind::OneOf(options) => {
                if options.contains(&value.as_str()) {
                    Some(value.clone())
                } else {
                    self.error(
                        &at,
                        format!("expected one of {}, found `{value}`", options.join(", ")),
                    );
                    None
                }
            }
        }
    }

    fn model(&mut self, root: &Node, directory: Option<&str>) {
        let path = FieldPath::root();
        let known = [
            "name",
            "version",
            "architecture",
            "description",
            "resources",
            "serving",
            "source",
        ];
        if self.mapping(root, &path, &known).is_none() {
            return;
        }
        if let Some(name) = self.field(root, &path, "name", Kind::Text, true) {
            let at = path.key("name");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                self.error(
                    &at,
                    format!(
                        "expected lower-case letters, digits and dashes (^[a-z0-9-]+$), found `{name}`"
                    ),
                );
            } else if let Some(directory) = directory
                && directory != name
            {
                self.error(
                    &at,
                    format!("`{name}` must equal its directory's name, `{directory}`"),
                );
            }
        }
        if let Some(version) = self.field(root, &path, "version", Kind::Text, true) {
            let parts: Vec<&str> = version.split('.').collect();
            let semver = parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !semver {
                self.error(
                    &path.key("version"),
                    format!(
                        "expected a version MAJOR.MINOR.PATCH such as 1.2.0, found `{version}`"
                    ),
                );
            }
        }
        self.field(root, &path, "architecture", Kind::Text, true);
        self.field(root, &path, "description", Kind::Text, false);
        match root.get("resources").filter(|n| !n.is_null()) {
            None => self.error(&path.key("resources"), "`resources` is required"),
            Some(resources) => {
                let at = path.key("resources");
                if self
                    .mapping(resources, &at, &["memory_gb", "gpu_count", "gpu_type"])
                    .is_some()
                {
                    let memory = self.field(
                        resources,
                        &at,
                        "memory_gb",
                        Kind::Number {
                            min: 1.0,
                            max: f64::INFINITY,
                        },
                        true,
                    );
                    let gpus =
                        self.field(resources, &at, "gpu_count", Kind::Integer { min: 1 }, true);
                    self.field(resources, &at, "gpu_type", Kind::Text, true);
                    if let (Some(memory), Some(gpus)) = (memory, gpus) {
                        let (memory, gpus) = (
                            memory.parse::<f64>().unwrap_or(0.0),
                            gpus.parse::<f64>().unwrap_or(0.0),
                        );
                        if memory < 8.0 * gpus {
                            self.error(
                                &at.key("memory_gb"),
                                format!(
                                    "expected at least 8 GB per GPU ({} GB for {gpus} GPUs), found {memory}",
                                    8.0 * gpus
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(serving) = root.get("serving").filter(|n| !n.is_null()) {
            let at = path.key("serving");
            let known = ["max_batch_size", "max_sequence_length", "protocol"];
            if self.mapping(serving, &at, &known).is_some() {
                let min1 = Kind::Integer { min: 1 };
                self.field(serving, &at, "max_batch_size", min1, false);
                self.field(serving, &at, "max_sequence_length", min1, false);
                self.field(
                    serving,
                    &at,
                    "protocol",
                    Kind::OneOf(&["http", "grpc"]),
                    false,
                );
            }
        }
        if let Some(source) = root.get("source").filter(|n| !n.is_null()) {
            let at = path.key("source");
            if self.mapping(source, &at, &["type", "uri"]).is_some() {
                self.field(
                    source,
                    &at,
                    "type",
                    Kind::OneOf(&["s3", "huggingface", "local"]),
                    false,
                );
                self.field(source, &at, "uri", Kind::Text, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let model_dir = dir.join("models").join(name);
        std::fs::create_dir_all(&model_dir).unwrap_or_else(|e| panic!("{e}"));
        let file = model_dir.join("model.yaml");
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
        file
    }

    #[test]
    fn every_rule_is_checked_and_located() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(
            dir.path(),
            "good",
            "name: good\nversion: 1.2.0\narchitecture: llama\nresources: {memory_gb: 16, gpu_count: 2, gpu_type: L4}\nserving: {max_batch_size: 8, max_sequence_length: 4096, protocol: grpc}\nsource: {type: s3, uri: \"s3://b/k\"}\n",
        );
        write(
            dir.path(),
            "bad",
            "name: Bad_Name\nversion: \"1.2\"\ndescripton: typo\nresources:\n  memory_gb: 0.5\n  gpu_count: 0.5\nserving:\n  max_batch_size: 0\n  protocol: udp\nsource: {type: ftp}\n",
        );
        write(
            dir.path(),
            "other",
            "name: elsewhere\nversion: 2.0.0\narchitecture: t5\nresources: {memory_gb: 8, gpu_count: 2, gpu_type: A100}\n",
        );
        let reports = validate(&[dir.path().to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reports.len(), 3);
        let by_dir = |name: &str| {
            reports
                .iter()
                .find(|r| r.file.parent().is_some_and(|p| p.ends_with(name)))
                .map(|r| {
                    r.errors
                        .iter()
                        .map(|e| format!("{}:{}: {}: {}", e.line, e.column, e.field, e.message))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert!(by_dir("good").is_empty(), "{:?}", by_dir("good"));
        let bad = by_dir("bad");
        for expected in [
            "1:7: name: expected lower-case letters, digits and dashes",
            "2:10: version: expected a version MAJOR.MINOR.PATCH such as 1.2.0, found `1.2`",
            "3:1: descripton: unknown field `descripton`",
            "did you mean `description`?",
            "1:1: architecture: `architecture` is required",
            "5:14: resources.memory_gb: expected a number ≥ 1, found 0.5",
            "6:14: resources.gpu_count: expected an integer, found \"0.5\"",
            "5:3: resources.gpu_type: `gpu_type` is required",
            "8:19: serving.max_batch_size: expected an integer ≥ 1, found 0",
            "9:13: serving.protocol: expected one of http, grpc, found `udp`",
            "10:16: source.type: expected one of s3, huggingface, local, found `ftp`",
        ] {
            assert!(
                bad.iter().any(|e| e.contains(expected)),
                "missing {expected:?} in {bad:#?}"
            );
        }
        let other = by_dir("other");
        assert!(
            other
                .iter()
                .any(|e| e.contains("name: `elsewhere` must equal its directory's name, `other`")),
            "{other:?}"
        );
        assert!(
            other.iter().any(|e| e.contains(
                "resources.memory_gb: expected at least 8 GB per GPU (16 GB for 2 GPUs), found 8"
            )),
            "{other:?}"
        );
        assert!(validate(&[dir.path().join("nope")]).is_err());
    }
}
