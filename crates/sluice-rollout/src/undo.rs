//! `rollout undo`: sends all of a finished rollout's route back to one version — stable by
//! default, or what a promote alias pointed at before the rollout — restarting stable's
//! instances first when the rollout had stopped them, and records it as an `undo` event.

use std::collections::BTreeMap;

use sluice_gateway::control::{AdminClient, GatewayControl};
use sluice_store::{RunId, RunStatus, Store};

use crate::RolloutError;
use crate::backend::Backend;
use crate::controller::{ADMIN_TIMEOUT, latest, now_ms, subject};
use crate::event::{InstanceEvent, RolloutEvent, RunConfig};
use crate::registry_link;
use crate::spec::Spec;

/// Sends all of a finished rollout's route to one version (the stable one by default) and
/// records it as an `undo` event; returns the version now serving.
pub async fn undo(
    store: &Store,
    name: &str,
    to_version: Option<&str>,
    admin_token: Option<&str>,
) -> Result<String, RolloutError> {
    let run = latest(store, name)
        .await?
        .ok_or_else(|| RolloutError::NotRunning(name.to_owned()))?;
    if run.status == RunStatus::Running {
        return Err(RolloutError::Gateway(format!(
            "rollout `{name}` is still running; `sluice rollout abort {name}` rolls it back"
        )));
    }
    let config = RunConfig::of(&run);
    let admin_url = config.admin_url.clone().unwrap_or_default();
    let route = config.route.clone();
    // A promoted rollout of registered versions goes back to what the promote alias pointed at
    // before it, and the alias with it.
    let previous = match (to_version, &config.registry) {
        (None, Some(link)) => {
            registry_link::undo(store, link, name, &config.candidate, &run.id).await?
        }
        _ => None,
    };
    let target = to_version
        .map(str::to_owned)
        .or(previous)
        .unwrap_or_else(|| config.stable.clone());
    if target == config.stable {
        restart_stable(store, &run.id, &config, admin_token).await?;
    }
    let control = |what: &str| {
        let what = what.to_owned();
        move |source| RolloutError::Control { what, source }
    };
    let gateway = AdminClient::new(
        &admin_url,
        admin_token.map(sluice_core::Secret::new),
        ADMIN_TIMEOUT,
    )
    .map_err(control("the admin client"))?;
    gateway
        .set_weights(&route, &BTreeMap::from([(target.clone(), 100.0)]), None)
        .await
        .map_err(control("the weights were not set"))?;
    let summary = format!("Rollout {name} undone: route {route} is all on {target}.");
    store
        .append_events(vec![
            RolloutEvent::Undo {
                to_version: target.clone(),
                at_ms: now_ms(),
                summary,
            }
            .to_new(&subject(&run.id)),
        ])
        .await?;
    Ok(target)
}

/// For `rollout undo` back to stable: a rollout with instances (rolling) may have stopped
/// stable's; they are started again (unless up) and stable's upstreams pointed at them all
/// before any traffic moves, so that traffic never goes to a version with nothing behind it.
async fn restart_stable(
    store: &Store,
    run: &RunId,
    config: &RunConfig,
    admin_token: Option<&str>,
) -> Result<(), RolloutError> {
    let Some(yaml) = config.spec_yaml.as_deref() else {
        return Ok(());
    };
    let (admin_url, route) = (
        config.admin_url.as_deref().unwrap_or_default(),
        &config.route,
    );
    let spec = sluice_config::Document::parse("the stored spec", yaml, &sluice_config::ProcessEnv)
        .and_then(|document| Spec::from_document(&document, &sluice_config::ProcessEnv))
        .map_err(|e| {
            RolloutError::Gateway(format!(
                "the stored spec no longer reads ({e}); its stable instances cannot be restarted, so traffic was not moved"
            ))
        })?;
    let instances = &spec.instances.stable;
    if instances.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(ADMIN_TIMEOUT)
        .build()
        .map_err(|e| RolloutError::Gateway(e.to_string()))?;
    for (index, instance) in instances.iter().enumerate() {
        let label = format!("{}-undo-stable-{index}", run.as_str());
        let started = crate::process::start(&client, instance, &label)
            .await
            .map_err(|e| {
                RolloutError::Gateway(format!(
                    "stable instance {index} did not come back ({}); traffic was not moved",
                    sluice_core::error_chain(&e)
                ))
            })?;
        if let Some(started) = started {
            store
                .append_events(vec![
                    RolloutEvent::Instance(InstanceEvent {
                        version: "stable".to_owned(),
                        index,
                        url: instance.url.clone(),
                        pid: started.pid,
                        log: Some(started.log.display().to_string()),
                        stopped: false,
                        summary: format!(
                            "undo: started stable instance {index} at {} (pid {})",
                            instance.url, started.pid
                        ),
                    })
                    .to_new(&subject(run)),
                ])
                .await?;
        }
    }
    let backend =
        Backend::admin(admin_url, admin_token.map(sluice_core::Secret::new)).map_err(|source| {
            RolloutError::Control {
                what: "the admin client".into(),
                source,
            }
        })?;
    backend
        .set_upstreams(
            route,
            &spec.stable,
            instances.iter().map(|i| i.url.clone()).collect(),
        )
        .await
        .map_err(|source| RolloutError::Control {
            what: "stable's upstreams were not restored".into(),
            source,
        })
}
