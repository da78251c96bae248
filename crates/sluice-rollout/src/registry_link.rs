//! Rollouts of registered versions. A spec whose `stable` and `candidate` are registry
//! references (`chat@production`, `chat/2.0.0`) has them resolved when its run is created (a
//! resumed run keeps what was resolved then, whatever the alias says now); the gateway's
//! versions are named by version. The run is linked to both versions' lineage, and a promotion
//! moves the promote alias (`production` by default) to the candidate, once, with the move
//! in the alias history and told to the registry's webhooks.

use sluice_registry::versions::{self, ModelRef, Selector};
use sluice_store::{AliasChange, RunId, RunKind, Store};
use tracing::warn;

use crate::RolloutError;
use crate::spec::Spec;

/// The registry side of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryLink {
    /// The registered model.
    pub model: String,
    /// The alias moved on promotion.
    pub promote_alias: String,
}

fn is_reference(text: &str) -> bool {
    text.contains(['@', '/'])
}

/// Resolves registry references in `spec` (in place) for a new run; `None` when the spec
/// names gateway versions directly.
pub async fn resolve(spec: &mut Spec, store: &Store) -> Result<Option<RegistryLink>, RolloutError> {
    if !is_reference(&spec.stable) && !is_reference(&spec.candidate) {
        return Ok(None);
    }
    let refused = |message: String| RolloutError::Registry(message);
    let stable = ModelRef::parse(&spec.stable).map_err(|e| refused(e.to_string()))?;
    let candidate = ModelRef::parse(&spec.candidate).map_err(|e| refused(e.to_string()))?;
    if stable.model != candidate.model {
        return Err(refused(format!(
            "stable ({stable}) and candidate ({candidate}) must be versions of one model"
        )));
    }
    for reference in [&stable, &candidate] {
        if reference.selector == Selector::Latest {
            return Err(refused(format!(
                "{reference}: name a version (MODEL/VERSION) or an alias (MODEL@ALIAS)"
            )));
        }
    }
    let stable_version = stable
        .resolve(store)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let candidate_version = candidate
        .resolve(store)
        .await
        .map_err(|e| refused(e.to_string()))?;
    if stable_version.version == candidate_version.version {
        return Err(refused(format!(
            "stable ({stable}) and candidate ({candidate}) are the same version, {}",
            stable_version.version
        )));
    }
    spec.stable = stable_version.version;
    spec.candidate = candidate_version.version;
    Ok(Some(RegistryLink {
        model: stable.model,
        promote_alias: spec
            .promote_alias
            .clone()
            .unwrap_or_else(|| "production".to_owned()),
    }))
}

/// Links a run to both versions' lineage.
pub async fn link(
    store: &Store,
    link: &RegistryLink,
    spec: &Spec,
    run: &RunId,
) -> Result<(), RolloutError> {
    for version in [&spec.stable, &spec.candidate] {
        store
            .link_run(&link.model, version, RunKind::Rollout, run.as_str())
            .await?;
    }
    Ok(())
}

/// Moves the promote alias to the candidate unless it is there already (a resumed controller
/// does not move it twice), and tells the registry's webhooks.
pub async fn promote(
    store: &Store,
    link: &RegistryLink,
    spec: &Spec,
    run: &RunId,
) -> Result<(), RolloutError> {
    let current = store
        .resolve_alias(&link.model, &link.promote_alias)
        .await?;
    if current.as_deref() == Some(spec.candidate.as_str()) {
        return Ok(());
    }
    let moved = store
        .move_alias(AliasChange {
            model: link.model.clone(),
            alias: link.promote_alias.clone(),
            version: Some(spec.candidate.clone()),
            actor: format!("rollout:{}", spec.name),
            reason: Some(format!("rollout {} promoted (run {run})", spec.name)),
        })
        .await?;
    for failure in versions::notify(&versions::webhooks_from_env(), &moved).await {
        warn!(%failure, "The alias moved, but a registry webhook was not told.");
    }
    Ok(())
}

/// For `rollout undo` of a promoted rollout: moves the promote alias back to what it pointed
/// at before the promotion and returns that version; `None` when the alias no longer points
/// at the candidate (someone moved it since) or was never moved by this rollout.
pub async fn undo(
    store: &Store,
    link: &RegistryLink,
    name: &str,
    candidate: &str,
    run: &RunId,
) -> Result<Option<String>, RolloutError> {
    let history = store
        .alias_history(&link.model, Some(&link.promote_alias))
        .await?;
    let Some(last) = history.last() else {
        return Ok(None);
    };
    if last.to.as_deref() != Some(candidate) || last.actor != format!("rollout:{name}") {
        return Ok(None);
    }
    let Some(previous) = last.from.clone() else {
        return Ok(None);
    };
    let moved = store
        .move_alias(AliasChange {
            model: link.model.clone(),
            alias: link.promote_alias.clone(),
            version: Some(previous.clone()),
            actor: format!("rollout:{name}"),
            reason: Some(format!("undo of rollout {name} (run {run})")),
        })
        .await?;
    for failure in versions::notify(&versions::webhooks_from_env(), &moved).await {
        warn!(%failure, "The alias moved, but a registry webhook was not told.");
    }
    Ok(Some(previous))
}
