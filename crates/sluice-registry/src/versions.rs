//! Registry operations over the store: registering a version with every input checked first
//! (all problems reported together, nothing written unless all pass), resolving
//! `model`, `model/version` and `model@alias` references, and moving aliases with a webhook
//! notification after the move is committed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use sluice_config::{Document, ProcessEnv};
use sluice_store::{AliasChange, AliasMove, ModelVersion, NewModelVersion, RunId, Store};

use crate::{RegistryError, artifact, model_yaml};

/// What `sluice registry register` asks for.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// Artifact URIs, each with the digest declared for it.
    pub artifacts: Vec<(String, Option<String>)>,
    /// A `model.yaml` to validate and store with the version.
    pub config: Option<PathBuf>,
    /// `key=value` tags.
    pub tags: Vec<String>,
    /// Ids of runs (eval, redteam, bench) that are its evidence.
    pub runs: Vec<String>,
    /// Source commit.
    pub commit: Option<String>,
    /// Who registers it.
    pub actor: String,
}

/// Parses `key=value` tags, naming each malformed one.
pub fn parse_tags(tags: &[String], problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut parsed = BTreeMap::new();
    for tag in tags {
        match tag.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                parsed.insert(key.trim().to_owned(), value.trim().to_owned());
            }
            _ => problems.push(format!("tag {tag:?}: expected KEY=VALUE")),
        }
    }
    parsed
}

/// Registers a version: checks the artifacts (hashing local files), the tags, the
/// `model.yaml` and the evidence runs, and writes nothing unless all of them pass.
pub async fn register(
    store: &Store,
    registration: Registration,
) -> Result<ModelVersion, RegistryError> {
    let mut problems = Vec::new();
    if registration.artifacts.is_empty() {
        problems.push("at least one --artifact is required".to_owned());
    }
    let tags = parse_tags(&registration.tags, &mut problems);
    if let Some(commit) = &registration.commit
        && (!(7..=64).contains(&commit.len()) || !commit.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        problems.push(format!(
            "commit {commit:?}: expected a hex commit id of 7 to 64 digits"
        ));
    }
    let config = match &registration.config {
        None => serde_json::Value::Null,
        Some(path) => read_config(path, &registration.model, &mut problems),
    };
    let mut lineage = Vec::new();
    for id in &registration.runs {
        match store.get_run(&RunId(id.clone())).await? {
            None => problems.push(format!("run {id:?}: no such run in the store")),
            Some(run) if !run.kind.is_evidence() => problems.push(format!(
                "run {id:?} is a {} run; evidence is one of {}",
                run.kind,
                sluice_store::RunKind::evidence_names()
            )),
            Some(run) => lineage.push((run.kind, run.id.0)),
        }
    }
    if store
        .model_version(&registration.model, &registration.version)
        .await?
        .is_some()
    {
        problems.push(format!(
            "{} version {} is already registered (versions are immutable: register a new version)",
            registration.model, registration.version
        ));
    }
    let uris = registration.artifacts.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        uris.iter()
            .map(|(uri, digest)| artifact::resolve(uri, digest.as_deref()))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|error| RegistryError::Rejected(vec![format!("hashing failed: {error}")]))?;
    let mut artifacts = Vec::new();
    for result in resolved {
        match result {
            Ok(artifact) => artifacts.push(artifact),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(RegistryError::Rejected(problems));
    }
    Ok(store
        .register_version(NewModelVersion {
            model: registration.model,
            version: registration.version,
            artifacts,
            config,
            tags,
            commit: registration.commit,
            registered_by: registration.actor,
            lineage,
        })
        .await?)
}

fn read_config(
    path: &std::path::Path,
    model: &str,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    let report = model_yaml::validate_file(path);
    for finding in &report.errors {
        problems.push(format!(
            "{}:{}:{}: {}",
            path.display(),
            finding.line,
            finding.column,
            finding.message
        ));
    }
    if !report.errors.is_empty() {
        return serde_json::Value::Null;
    }
    match Document::read(path, &ProcessEnv) {
        Ok(document) => {
            let value: serde_json::Value = document.deserialize().unwrap_or_default();
            if let Some(name) = value.get("name").and_then(|n| n.as_str())
                && name != model
            {
                problems.push(format!(
                    "{}: name {name:?} is not the model being registered ({model:?})",
                    path.display()
                ));
            }
            value
        }
        Err(diagnostics) => {
            problems.push(diagnostics.to_string());
            serde_json::Value::Null
        }
    }
}

/// Which version a reference picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The most recently registered version that is not deprecated.
    Latest,
    /// A version by name.
    Version(String),
    /// The version an alias points at.
    Alias(String),
}

/// `model`, `model/version` or `model@alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model name.
    pub model: String,
    /// Which version.
    pub selector: Selector,
}

impl ModelRef {
    /// Parses a reference. Model names have no `/` or `@`, so the first of them splits.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let invalid = || RegistryError::InvalidReference(text.to_owned());
        let text = text.trim();
        let split = text.find(['/', '@']);
        let (model, selector) = match split {
            None => (text, Selector::Latest),
            Some(at) => {
                let rest = &text[at + 1..];
                if rest.is_empty() {
                    return Err(invalid());
                }
                let selector = if text.as_bytes()[at] == b'@' {
                    Selector::Alias(rest.to_owned())
                } else {
                    Selector::Version(rest.to_owned())
                };
                (&text[..at], selector)
            }
        };
        if model.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            model: model.to_owned(),
            selector,
        })
    }

    /// The version this reference picks now.
    pub async fn resolve(&self, store: &Store) -> Result<ModelVersion, RegistryError> {
        let version =
            match &self.selector {
                Selector::Version(version) => version.clone(),
                Selector::Alias(alias) => store
                    .resolve_alias(&self.model, alias)
                    .await?
                    .ok_or_else(|| RegistryError::UnknownAlias {
                        model: self.model.clone(),
                        alias: alias.clone(),
                    })?,
                Selector::Latest => {
                    return store
                        .model_versions(Some(&self.model))
                        .await?
                        .into_iter()
                        .rev()
                        .find(|v| v.deprecated.is_none())
                        .ok_or_else(|| RegistryError::UnknownModel(self.model.clone()));
                }
            };
        store
            .model_version(&self.model, &version)
            .await?
            .ok_or_else(|| RegistryError::UnknownVersion {
                model: self.model.clone(),
                version,
            })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}", self.model),
            Selector::Version(version) => write!(f, "{}/{version}", self.model),
            Selector::Alias(alias) => write!(f, "{}@{alias}", self.model),
        }
    }
}

/// Webhook receivers of alias moves: `SLUICE_REGISTRY_WEBHOOK`, comma-separated URLs.
pub fn webhooks_from_env() -> Vec<String> {
    std::env::var("SLUICE_REGISTRY_WEBHOOK")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Moves an alias (committed first), then tells each webhook. Returns the move and the
/// receivers that could not be told, with why; a failed notification never undoes a move.
pub async fn move_alias(
    store: &Store,
    change: AliasChange,
    webhooks: &[String],
) -> Result<(AliasMove, Vec<String>), RegistryError> {
    let moved = store.move_alias(change).await?;
    let failures = notify(webhooks, &moved).await;
    Ok((moved, failures))
}

/// Posts an alias move to each webhook (5 s timeout each); returns the failures.
pub async fn notify(webhooks: &[String], moved: &AliasMove) -> Vec<String> {
    if webhooks.is_empty() {
        return Vec::new();
    }
    let body = json!({
        "event": "registry.alias_moved",
        "model": moved.model,
        "alias": moved.alias,
        "from": moved.from,
        "to": moved.to,
        "actor": moved.actor,
        "reason": moved.reason,
        "seq": moved.seq,
        "at_ms": moved.at_ms,
        "summary": describe(moved),
    });
    // The reasons are shown to whoever moved the alias: each with its cause.
    let reason = |error: &crate::webhook::WebhookError| sluice_core::error_chain(error);
    let client = match crate::webhook::client() {
        Ok(client) => client,
        Err(error) => return vec![reason(&error)],
    };
    let mut failures = Vec::new();
    for url in webhooks {
        if let Err(failure) = crate::webhook::deliver(&client, url, &body, 1).await {
            failures.push(reason(&failure));
        }
    }
    failures
}

/// One line for a move: `chat@production: 1.0.0 → 1.1.0 (by alice)`.
pub fn describe(moved: &AliasMove) -> String {
    format!(
        "{}@{}: {} → {} (by {})",
        moved.model,
        moved.alias,
        moved.from.as_deref().unwrap_or("(none)"),
        moved.to.as_deref().unwrap_or("(removed)"),
        moved.actor
    )
}

/// Who is acting: `SLUICE_ACTOR`, else the login name.
pub fn actor_from_env() -> String {
    ["SLUICE_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_into_model_and_selector() {
        let parse = |text| ModelRef::parse(text).unwrap();
        assert_eq!(parse("chat").selector, Selector::Latest);
        assert_eq!(
            parse("gpt-4o/2024-11-20/v3"),
            ModelRef {
                model: "gpt-4o".into(),
                selector: Selector::Version("2024-11-20/v3".into())
            }
        );
        assert_eq!(
            parse("chat@production").selector,
            Selector::Alias("production".into())
        );
        assert_eq!(parse("chat@production").to_string(), "chat@production");
        for bad in ["", "@prod", "chat@", "chat/", "/1.0"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_tags_are_each_named() {
        let mut problems = Vec::new();
        let tags = parse_tags(
            &["team=search".into(), "oops".into(), "=x".into()],
            &mut problems,
        );
        assert_eq!(tags.len(), 1);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].contains("\"oops\""), "{problems:?}");
    }
}
