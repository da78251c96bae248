//! `sluice registry …`: versions, aliases and their history, tags, lineage and artifact
//! verification, over the store.

use anyhow::Context;
use serde_json::json;
use sluice_registry::artifact::{self, Verification};
use sluice_registry::versions::{self, Registration};
use sluice_registry::{ModelRef, RegistryError};
use sluice_store::{AliasChange, ModelVersion, RunId, Store, VersionUpdate, utc_timestamp};

use super::{Outcome, open_store};
use crate::cli::{
    AliasCommand, AliasHistoryArgs, AliasRmArgs, AliasSetArgs, DeprecateArgs, LinkArgs,
    RegisterArgs, RegistryCommand, RegistryListArgs, RegistryRefArgs, TagArgs,
};

pub async fn run(command: RegistryCommand, location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(location).await?;
    match command {
        RegistryCommand::Register(args) => register(&store, args).await,
        RegistryCommand::List(args) => list(&store, args).await,
        RegistryCommand::Show(args) => show(&store, args).await,
        RegistryCommand::Alias(AliasCommand::Set(args)) => alias_set(&store, args).await,
        RegistryCommand::Alias(AliasCommand::Rm(args)) => alias_rm(&store, args).await,
        RegistryCommand::Alias(AliasCommand::History(args)) => alias_history(&store, args).await,
        RegistryCommand::Tag(args) => tag(&store, args).await,
        RegistryCommand::Deprecate(args) => deprecate(&store, args).await,
        RegistryCommand::Delete(args) => delete(&store, args).await,
        RegistryCommand::Link(args) => link(&store, args).await,
        RegistryCommand::Verify(args) => verify(&store, args).await,
    }
}

/// Registers a version and prints it.
async fn register(store: &Store, args: RegisterArgs) -> anyhow::Result<Outcome> {
    if args.sha256.len() > args.artifacts.len() {
        anyhow::bail!(
            "{} --sha256 given for {} --artifact: each --sha256 belongs to the artifact in the same position",
            args.sha256.len(),
            args.artifacts.len()
        );
    }
    let artifacts = args
        .artifacts
        .iter()
        .enumerate()
        .map(|(i, uri)| (uri.clone(), args.sha256.get(i).cloned()))
        .collect();
    let version = versions::register(
        store,
        Registration {
            model: args.model,
            version: args.version,
            artifacts,
            config: args.config,
            tags: args.tags,
            runs: args.runs,
            commit: args.commit,
            actor: versions::actor_from_env(),
        },
    )
    .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&version)?);
    } else {
        outln!("Registered {}/{}.", version.model, version.version);
        print_artifacts(&version);
    }
    Ok(Outcome::Ok)
}

/// Lists models, or one model's versions.
async fn list(store: &Store, args: RegistryListArgs) -> anyhow::Result<Outcome> {
    let all = store.model_versions(args.model.as_deref()).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        match args.model {
            Some(model) => outln!("No versions of {model} are registered."),
            None => outln!("No models are registered yet."),
        }
    } else {
        outln!(
            "{:<20} {:<24} {:<22} {:<21} STATUS",
            "MODEL",
            "VERSION",
            "ALIASES",
            "REGISTERED"
        );
        for v in all {
            outln!(
                "{:<20} {:<24} {:<22} {:<21} {}",
                v.model,
                v.version,
                v.aliases.join(","),
                utc_timestamp(v.registered_at_ms),
                if v.deprecated.is_some() {
                    "deprecated"
                } else {
                    "active"
                }
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Shows one version with its lineage.
async fn show(store: &Store, args: RegistryRefArgs) -> anyhow::Result<Outcome> {
    let version = resolve(store, &args.reference).await?;
    let lineage = store.lineage(&version.model, &version.version).await?;
    if args.json {
        let mut body = serde_json::to_value(&version)?;
        body["lineage"] = serde_json::to_value(&lineage)?;
        outln!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        outln!("model        {}", version.model);
        outln!("version      {}", version.version);
        outln!(
            "registered   {} by {}",
            utc_timestamp(version.registered_at_ms),
            version.registered_by
        );
        if let Some(commit) = &version.commit {
            outln!("commit       {commit}");
        }
        if !version.aliases.is_empty() {
            outln!("aliases      {}", version.aliases.join(", "));
        }
        if let Some(deprecated) = &version.deprecated {
            outln!(
                "deprecated   {} ({})",
                utc_timestamp(deprecated.at_ms),
                deprecated.reason
            );
        }
        for (key, value) in &version.tags {
            outln!("tag          {key}={value}");
        }
        print_artifacts(&version);
        if lineage.is_empty() {
            outln!("lineage      (no runs linked)");
        }
        for link in &lineage {
            outln!(
                "lineage      {:<8} {} ({})",
                link.kind,
                link.run_id,
                utc_timestamp(link.at_ms)
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Points an alias at a version.
async fn alias_set(store: &Store, args: AliasSetArgs) -> anyhow::Result<Outcome> {
    move_alias(
        store,
        (args.model, args.alias),
        Some(args.version),
        args.reason,
    )
    .await
}

/// Removes an alias.
async fn alias_rm(store: &Store, args: AliasRmArgs) -> anyhow::Result<Outcome> {
    if store
        .resolve_alias(&args.model, &args.alias)
        .await?
        .is_none()
    {
        return Err(RegistryError::UnknownAlias {
            model: args.model,
            alias: args.alias,
        }
        .into());
    }
    move_alias(store, (args.model, args.alias), None, args.reason).await
}

/// Prints the history of a model's aliases.
async fn alias_history(store: &Store, args: AliasHistoryArgs) -> anyhow::Result<Outcome> {
    let history = store
        .alias_history(&args.model, args.alias.as_deref())
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&history)?);
    } else if history.is_empty() {
        outln!("No alias of {} has moved yet.", args.model);
    } else {
        outln!(
            "{:<21} {:<14} {:<16} {:<16} {:<12} REASON",
            "WHEN",
            "ALIAS",
            "FROM",
            "TO",
            "BY"
        );
        for m in history {
            outln!(
                "{:<21} {:<14} {:<16} {:<16} {:<12} {}",
                utc_timestamp(m.at_ms),
                m.alias,
                m.from.as_deref().unwrap_or("-"),
                m.to.as_deref().unwrap_or("(removed)"),
                m.actor,
                m.reason.as_deref().unwrap_or("")
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Sets and removes a version's tags.
async fn tag(store: &Store, args: TagArgs) -> anyhow::Result<Outcome> {
    let version = resolve(store, &args.reference).await?;
    let mut problems = Vec::new();
    let set_tags = versions::parse_tags(&args.tags, &mut problems);
    if !problems.is_empty() {
        return Err(RegistryError::Rejected(problems).into());
    }
    if set_tags.is_empty() && args.remove.is_empty() {
        anyhow::bail!("give tags to set (KEY=VALUE) or --remove KEY");
    }
    let updated = store
        .update_version(
            &version.model,
            &version.version,
            VersionUpdate {
                set_tags,
                remove_tags: args.remove,
                deprecate: None,
            },
        )
        .await?;
    let tags = updated
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    outln!(
        "{}/{} tags: {}",
        updated.model,
        updated.version,
        if tags.is_empty() {
            "(none)".to_owned()
        } else {
            tags.join(", ")
        }
    );
    Ok(Outcome::Ok)
}

/// Marks a version deprecated.
async fn deprecate(store: &Store, args: DeprecateArgs) -> anyhow::Result<Outcome> {
    let version = resolve(store, &args.reference).await?;
    store
        .update_version(
            &version.model,
            &version.version,
            VersionUpdate {
                deprecate: Some(args.reason.clone()),
                ..VersionUpdate::default()
            },
        )
        .await?;
    outln!(
        "Deprecated {}/{}: {}",
        version.model,
        version.version,
        args.reason
    );
    if !version.aliases.is_empty() {
        eprintln!("note: {} still point(s) at it", version.aliases.join(", "));
    }
    Ok(Outcome::Ok)
}

/// Deletes one exact version and its lineage.
async fn delete(store: &Store, args: RegistryRefArgs) -> anyhow::Result<Outcome> {
    let reference = ModelRef::parse(&args.reference)?;
    let sluice_registry::Selector::Version(version) = &reference.selector else {
        anyhow::bail!(
            "delete takes MODEL/VERSION, not {:?}: name the exact version to delete",
            args.reference
        );
    };
    store.delete_version(&reference.model, version).await?;
    outln!("Deleted {reference} and its lineage (alias history is kept).");
    Ok(Outcome::Ok)
}

/// Links a stored run to a version as its evidence.
async fn link(store: &Store, args: LinkArgs) -> anyhow::Result<Outcome> {
    let version = resolve(store, &args.reference).await?;
    let run = store
        .get_run(&RunId(args.run.clone()))
        .await?
        .with_context(|| format!("no run {:?} in the store", args.run))?;
    store
        .link_run(&version.model, &version.version, run.kind, run.id.as_str())
        .await?;
    outln!(
        "Linked {} run {} to {}/{}.",
        run.kind,
        run.id,
        version.model,
        version.version
    );
    Ok(Outcome::Ok)
}

/// Checks a version's local artifacts against their registered digests; a missing, truncated or changed one fails the gate.
async fn verify(store: &Store, args: RegistryRefArgs) -> anyhow::Result<Outcome> {
    let version = resolve(store, &args.reference).await?;
    let artifacts = version.artifacts.clone();
    let results = tokio::task::spawn_blocking(move || {
        artifacts
            .iter()
            .map(|a| (a.uri.clone(), artifact::verify(a)))
            .collect::<Vec<_>>()
    })
    .await?;
    let bad = results
        .iter()
        .any(|(_, v)| !matches!(v, Verification::Intact | Verification::Remote));
    if args.json {
        let body = results
            .iter()
            .map(|(uri, v)| json!({"uri": uri, "result": v}))
            .collect::<Vec<_>>();
        outln!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        for (uri, verification) in &results {
            let text = match verification {
                Verification::Intact => "intact".to_owned(),
                Verification::Remote => "remote: not checked here".to_owned(),
                Verification::Unreadable { reason } => format!("UNREADABLE: {reason}"),
                Verification::Truncated {
                    expected_size,
                    size,
                } => format!("TRUNCATED: registered {expected_size} bytes, now {size}"),
                Verification::Changed { expected, actual } => {
                    format!("CHANGED: registered sha256 {expected}, now {actual}")
                }
            };
            outln!("{uri}: {text}");
        }
    }
    Ok(if bad {
        Outcome::GateFailed
    } else {
        Outcome::Ok
    })
}

async fn resolve(store: &Store, reference: &str) -> Result<ModelVersion, RegistryError> {
    ModelRef::parse(reference)?.resolve(store).await
}

/// Points `model@alias` at `version` (removes it for `None`) as the person in the environment,
/// tells the webhooks, and prints the move.
async fn move_alias(
    store: &Store,
    (model, alias): (String, String),
    version: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<Outcome> {
    let change = AliasChange {
        model,
        alias,
        version,
        actor: versions::actor_from_env(),
        reason,
    };
    let (moved, failures) =
        versions::move_alias(store, change, &versions::webhooks_from_env()).await?;
    for failure in failures {
        eprintln!("warning: the alias moved, but a webhook was not told: {failure}");
    }
    outln!("{}", versions::describe(&moved));
    Ok(Outcome::Ok)
}

fn print_artifacts(version: &ModelVersion) {
    for a in &version.artifacts {
        let mut details = Vec::new();
        if let Some(sha256) = &a.sha256 {
            details.push(format!("sha256 {sha256}"));
        }
        if let Some(size) = a.size {
            details.push(format!("{size} bytes"));
        }
        if details.is_empty() {
            outln!("artifact     {}", a.uri);
        } else {
            outln!("artifact     {} ({})", a.uri, details.join(", "));
        }
    }
}
