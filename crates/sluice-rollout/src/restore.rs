//! A restarted gateway starts from its config file; the store says where rollouts left each
//! route. For every route, the newest rollout on it wins over the file: a running one's last
//! weights (and it steers the route again), or a finished one's final weights — all on the
//! version an undo sent it to, when one came after — unless the file was edited after it
//! ended (then the file is the newer word).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_gateway::GatewayHandle;
use sluice_gateway::route::Snapshot;
use sluice_store::{Run, RunFilter, RunKind, RunStatus, Store};
use tracing::{info, warn};

use crate::RolloutError;
use crate::controller::all_events;
use crate::event::{RolloutEvent, RunConfig, read_all};

/// Where a rollout run's events leave its route: the candidate's weight of its last state,
/// or (after an undo) all on the version the undo named.
pub async fn stored_weights(
    store: &Store,
    run: &sluice_store::RunId,
    config: &RunConfig,
) -> Result<BTreeMap<String, f64>, RolloutError> {
    let mut weights = BTreeMap::from([
        (config.stable.clone(), 100.0),
        (config.candidate.clone(), 0.0),
    ]);
    for (_, event) in read_all(&all_events(store, run).await?) {
        match event {
            RolloutEvent::State { state, .. } => {
                weights = BTreeMap::from([
                    (
                        config.stable.clone(),
                        f64::from(100 - state.weight.min(100)),
                    ),
                    (config.candidate.clone(), f64::from(state.weight.min(100))),
                ]);
            }
            RolloutEvent::Undo { to_version, .. } => {
                weights = BTreeMap::from([
                    (config.stable.clone(), 0.0),
                    (config.candidate.clone(), 0.0),
                ]);
                weights.insert(to_version, 100.0);
            }
            _ => {}
        }
    }
    Ok(weights)
}

/// A route whose weights came from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The route.
    pub route: String,
    /// The rollout whose weights it took.
    pub rollout: String,
    /// The candidate's weight, in percent.
    pub candidate_weight: u32,
    /// Whether that rollout is still running (it owns the route again).
    pub owned: bool,
}

/// Gives each route of `snapshot` the weights the newest rollout on it left, as described
/// above; `file_edited_ms` is when the config file was last written (Unix milliseconds). A
/// route whose rollout's state cannot be read, or whose versions the file no longer has, keeps
/// the file's weights (with a warning).
pub async fn restore_routes(
    snapshot: &mut Snapshot,
    store: &Store,
    file_edited_ms: i64,
) -> Result<Vec<Restored>, RolloutError> {
    let runs = store
        .list_runs(RunFilter {
            kind: Some(RunKind::Rollout),
            status: None,
            limit: 1000,
        })
        .await?;
    let configs: Vec<(&Run, RunConfig)> = runs.iter().map(|r| (r, RunConfig::of(r))).collect();
    let mut restored = Vec::new();
    for (name, route) in snapshot.routes.iter_mut() {
        let Some((run, config)) = configs
            .iter()
            .filter(|(_, config)| config.route == *name)
            .max_by_key(|(run, _)| run.started_at_ms)
        else {
            continue;
        };
        let owned = run.status == RunStatus::Running;
        if !owned && run.finished_at_ms.is_none_or(|end| end < file_edited_ms) {
            continue;
        }
        let (stable, candidate) = (config.stable.as_str(), config.candidate.as_str());
        if route.index(stable).is_none() || route.index(candidate).is_none() {
            continue;
        }
        let weights = match stored_weights(store, &run.id, config).await {
            Ok(weights) => weights,
            Err(error) => {
                warn!(%error, rollout = run.name, "Cannot read the rollout's state.");
                continue;
            }
        };
        if weights.keys().any(|version| route.index(version).is_none()) {
            continue;
        }
        let candidate_weight = weights.get(candidate).copied().unwrap_or(0.0) as u32;
        match route.with_weights(&weights) {
            Ok(mut next) => {
                next.owner = owned.then(|| run.name.clone());
                *route = Arc::new(next);
                info!(
                    route = name,
                    rollout = run.name,
                    candidate_weight,
                    "Weights restored from the store."
                );
                restored.push(Restored {
                    route: name.clone(),
                    rollout: run.name.clone(),
                    candidate_weight,
                    owned,
                });
            }
            Err(error) => warn!(%error, route = name, "Cannot restore the rollout's weights."),
        }
    }
    Ok(restored)
}

/// Keeps a gateway's routes where the store's rollouts put them, for a gateway that is one of
/// several replicas on one store: every `every`, the newest rollout on each route is looked
/// at, and when it has stored something since the last look (a new state, an undo), its
/// weights are applied here too — so a controller that steers one replica steers them all
/// within `every`. Weights set here by hand stay until that rollout stores something new.
/// Runs until `stop` turns true.
pub async fn follow(
    gateway: GatewayHandle,
    store: Store,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen: BTreeMap<String, (sluice_store::RunId, i64)> = BTreeMap::new();
    loop {
        if let Err(error) = follow_once(&gateway, &store, &mut seen).await {
            warn!(%error, "Cannot read the rollouts' weights from the store.");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// One look: applies what is new since `seen` (route → the run and event last applied).
async fn follow_once(
    gateway: &GatewayHandle,
    store: &Store,
    seen: &mut BTreeMap<String, (sluice_store::RunId, i64)>,
) -> Result<(), RolloutError> {
    let runs = store
        .list_runs(RunFilter {
            kind: Some(RunKind::Rollout),
            status: None,
            limit: 1000,
        })
        .await?;
    let snapshot = gateway.snapshot();
    for (name, route) in &snapshot.routes {
        let Some((run, config)) = runs
            .iter()
            .map(|r| (r, RunConfig::of(r)))
            .filter(|(_, config)| config.route == *name)
            .max_by_key(|(run, _)| run.started_at_ms)
        else {
            continue;
        };
        let after = match seen.get(name) {
            Some((id, seq)) if *id == run.id => *seq,
            _ => 0,
        };
        let new = store
            .events(&crate::controller::subject(&run.id), after, 1000)
            .await?;
        let Some(last) = new.last() else {
            continue;
        };
        seen.insert(name.clone(), (run.id.clone(), last.seq));
        let weights = stored_weights(store, &run.id, &config).await?;
        if weights.keys().any(|v| route.index(v).is_none()) {
            continue;
        }
        let current = weights.iter().all(|(v, w)| route.weight(v) == Some(*w));
        let running = run.status == RunStatus::Running;
        if !current {
            let owner = running.then_some(run.name.as_str());
            match gateway.set_weights_as(name, &weights, owner) {
                Ok(()) => info!(
                    route = name,
                    rollout = run.name,
                    "Weights follow the store's rollout."
                ),
                Err(error) => warn!(%error, route = name, "Cannot follow the rollout's weights."),
            }
        }
        if !running && route.owner.as_deref() == Some(run.name.as_str()) {
            let _ = gateway.release(name, &run.name);
        }
    }
    Ok(())
}
