//! The model registry's records: versions with their artifacts and tags, aliases with their
//! append-only history of moves, and lineage links from a version to the runs that used it.
//! Both backends store the same rows; the conversions from row text here are shared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::model::RunKind;

/// One artifact of a model version: where it is and, when known, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `file://`, `s3://`, `hf://`, `oci://` or `https://` URI.
    pub uri: String,
    /// Lower-case hex SHA-256, when computed or declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A version to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    /// Model name.
    pub model: String,
    /// Version text, e.g. `1.2.0` or `gpt-4o/2024-11-20/v3`.
    pub version: String,
    /// Its artifacts.
    pub artifacts: Vec<Artifact>,
    /// Its `model.yaml`, as JSON (`null` when none was given).
    pub config: serde_json::Value,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// The source commit it was built from.
    pub commit: Option<String>,
    /// Who registered it.
    pub registered_by: String,
    /// Runs that are its evidence, `(kind, run id)`, linked in the same transaction.
    pub lineage: Vec<(RunKind, String)>,
}

/// Why and when a version was deprecated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deprecation {
    /// The reason given.
    pub reason: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A registered version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    /// Model name.
    pub model: String,
    /// Version text.
    pub version: String,
    /// Its artifacts.
    pub artifacts: Vec<Artifact>,
    /// Its `model.yaml` as JSON, or `null`.
    pub config: serde_json::Value,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Source commit.
    pub commit: Option<String>,
    /// Who registered it.
    pub registered_by: String,
    /// Unix milliseconds.
    pub registered_at_ms: i64,
    /// Set once deprecated.
    pub deprecated: Option<Deprecation>,
    /// The aliases pointing at it now, sorted.
    pub aliases: Vec<String>,
}

/// A change of tags or deprecation on a version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionUpdate {
    /// Tags to add or overwrite.
    pub set_tags: BTreeMap<String, String>,
    /// Tags to remove.
    pub remove_tags: Vec<String>,
    /// Deprecate with this reason.
    pub deprecate: Option<String>,
}

/// An alias move to make: point `alias` at `version`, or remove it when `version` is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasChange {
    /// Model name.
    pub model: String,
    /// Alias, e.g. `production`.
    pub alias: String,
    /// The version to point at; `None` removes the alias.
    pub version: Option<String>,
    /// Who moves it.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
}

/// One entry of an alias's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasMove {
    /// Increasing sequence number.
    pub seq: i64,
    /// Model name.
    pub model: String,
    /// Alias.
    pub alias: String,
    /// What it pointed at before (`None`: it did not exist).
    pub from: Option<String>,
    /// What it points at after (`None`: removed).
    pub to: Option<String>,
    /// Who moved it.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A run that used a version: an eval, redteam or bench run, or a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageLink {
    /// What kind of run it is.
    #[serde(serialize_with = "crate::model::kind_name")]
    pub kind: RunKind,
    /// The run's id.
    pub run_id: String,
    /// When the link was made, unix milliseconds.
    pub at_ms: i64,
}

/// Checks a model name, version and alias before anything is written.
pub(crate) fn check_names(model: &str, version: Option<&str>) -> Result<(), StoreError> {
    let bad = |what: &str, text: &str, expected: &str| StoreError::Invalid {
        what: format!("{what} {text:?}"),
        expected: expected.to_owned(),
    };
    if model.is_empty()
        || model.len() > 128
        || !model
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(bad(
            "model name",
            model,
            "1–128 characters of a-z, 0-9, '-', '_' or '.'",
        ));
    }
    if let Some(version) = version
        && (version.is_empty()
            || version.len() > 128
            || version.starts_with('/')
            || version.ends_with('/')
            || version.contains("//")
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+/".contains(&b)))
    {
        return Err(bad(
            "version",
            version,
            "1–128 characters of letters, digits, '-', '_', '.', '+', with '/' between parts (e.g. 1.2.0 or gpt-4o/2024-11-20/v3)",
        ));
    }
    Ok(())
}

/// Checks an alias name.
pub(crate) fn check_alias(alias: &str) -> Result<(), StoreError> {
    if alias.is_empty()
        || alias.len() > 64
        || !alias.starts_with(|c: char| c.is_ascii_lowercase())
        || !alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
    {
        return Err(StoreError::Invalid {
            what: format!("alias {alias:?}"),
            expected: "a lower-case letter, then up to 63 of a-z, 0-9, '-' or '_'".to_owned(),
        });
    }
    Ok(())
}

/// Checks that a run of `kind` may be lineage evidence.
pub(crate) fn check_lineage_kind(kind: RunKind) -> Result<(), StoreError> {
    if kind.is_evidence() {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: format!("a {kind} run as lineage"),
            expected: format!("a run of one of {}", RunKind::evidence_names()),
        })
    }
}

/// A version row as both backends read it.
pub(crate) struct VersionRow {
    pub model: String,
    pub version: String,
    pub artifacts: String,
    pub config: String,
    pub tags: String,
    pub commit: Option<String>,
    pub registered_by: String,
    pub registered_at_ms: i64,
    pub deprecated: Option<String>,
    pub deprecated_at_ms: Option<i64>,
}

/// The columns of [`VersionRow`], in order.
pub(crate) const VERSION_COLUMNS: &str = "model, version, artifacts, config, tags, git_commit, registered_by, registered_at_ms, deprecated, deprecated_at_ms";

impl VersionRow {
    /// The stored version, with the aliases pointing at it.
    pub fn into_version(self, aliases: Vec<String>) -> Result<ModelVersion, StoreError> {
        let what = |column: &str| {
            format!(
                "model_versions.{column} of `{}/{}`",
                self.model, self.version
            )
        };
        let corrupt = |column: &str, error: serde_json::Error| StoreError::CorruptJson {
            what: what(column),
            reason: error.to_string(),
        };
        Ok(ModelVersion {
            artifacts: serde_json::from_str(&self.artifacts)
                .map_err(|e| corrupt("artifacts", e))?,
            config: serde_json::from_str(&self.config).map_err(|e| corrupt("config", e))?,
            tags: serde_json::from_str(&self.tags).map_err(|e| corrupt("tags", e))?,
            deprecated: self.deprecated.map(|reason| Deprecation {
                reason,
                at_ms: self.deprecated_at_ms.unwrap_or_default(),
            }),
            model: self.model,
            version: self.version,
            commit: self.commit,
            registered_by: self.registered_by,
            registered_at_ms: self.registered_at_ms,
            aliases,
        })
    }
}

/// Applies an update to stored tags, returning the new tag text.
pub(crate) fn updated_tags(stored: &str, update: &VersionUpdate) -> Result<String, StoreError> {
    let mut tags: BTreeMap<String, String> =
        serde_json::from_str(stored).map_err(|error| StoreError::CorruptJson {
            what: "model_versions.tags".to_owned(),
            reason: error.to_string(),
        })?;
    for key in &update.remove_tags {
        tags.remove(key);
    }
    tags.extend(update.set_tags.clone());
    Ok(serde_json::to_string(&tags).unwrap_or_else(|_| "{}".to_owned()))
}

/// Groups `(model, alias, version)` rows by `(model, version)`.
pub(crate) fn aliases_by_version(
    rows: Vec<(String, String, String)>,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut by_version: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (model, alias, version) in rows {
        by_version.entry((model, version)).or_default().push(alias);
    }
    for aliases in by_version.values_mut() {
        aliases.sort();
    }
    by_version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_aliases_are_checked() {
        assert!(check_names("llama-3-8b", Some("1.2.0")).is_ok());
        assert!(check_names("gpt-4o", Some("gpt-4o/2024-11-20/v3")).is_ok());
        assert!(check_names("Bad Name", Some("1")).is_err());
        assert!(check_names("m", Some("a//b")).is_err());
        assert!(check_names("m", Some("/a")).is_err());
        assert!(check_names("m", Some("")).is_err());
        assert!(check_alias("production").is_ok());
        assert!(check_alias("Prod").is_err());
        assert!(check_alias("1st").is_err());
    }

    #[test]
    fn tag_updates_remove_then_set() {
        let update = VersionUpdate {
            set_tags: [("stage".to_owned(), "prod".to_owned())].into(),
            remove_tags: vec!["owner".to_owned(), "stage".to_owned()],
            deprecate: None,
        };
        assert_eq!(
            updated_tags(r#"{"owner":"a","stage":"dev","x":"1"}"#, &update).unwrap(),
            r#"{"stage":"prod","x":"1"}"#
        );
    }
}
