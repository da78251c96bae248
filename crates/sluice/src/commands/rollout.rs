//! `sluice rollout`: run a rollout's controller in the foreground, or read and steer rollouts
//! through the store (commands reach the running controller as events).

use serde_json::{Value, json};
use sluice_config::ProcessEnv;
use sluice_rollout::controller::{self, Controller};
use sluice_rollout::event::{Command, RolloutEvent};
use sluice_rollout::machine::{Phase, State};
use sluice_rollout::spec::Spec;
use sluice_store::{RunFilter, RunKind, Store};

use super::{Outcome, open_store};
use crate::cli::{
    RolloutCommand, RolloutExportArgs, RolloutListArgs, RolloutNameArgs, RolloutStatusArgs,
};

/// One line for a rollout's state.
pub fn describe(state: &State) -> String {
    let phase = match (state.phase, state.aborted, state.pause_reason) {
        (Phase::Degraded, true, _) => "Degraded (aborted)".to_owned(),
        (Phase::Paused, _, Some(reason)) => {
            format!("Paused ({})", format!("{reason:?}").to_lowercase())
        }
        (phase, _, _) => format!("{phase:?}"),
    };
    format!(
        "{phase:<19} weight {:>3} %  step {}  {}",
        state.weight, state.step, state.message
    )
}

/// The newest run of a rollout, or an error naming it.
async fn latest_run(store: &Store, name: &str) -> anyhow::Result<sluice_store::Run> {
    controller::latest(store, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no rollout named `{name}` (see `sluice rollout list`)"))
}

async fn stored_state(store: &Store, name: &str) -> anyhow::Result<(sluice_store::Run, State)> {
    let run = latest_run(store, name).await?;
    let state = controller::stored_state(store, &run.id).await?;
    Ok((run, state))
}

/// Runs a rollout's controller in the foreground, printing each transition.
async fn drive(spec: Spec, store: Store, source: Option<&str>) -> anyhow::Result<Outcome> {
    let name = spec.name.clone();
    let (controller, resumed) = Controller::start(spec, store, source).await?;
    outln!(
        "rollout {name}: {} run {}",
        if resumed { "resuming" } else { "started" },
        controller.run_id()
    );
    super::stage_outputs(&[("run_id", controller.run_id().to_string())]);
    let state = controller
        .run(|state| outln!("  {}", describe(state)))
        .await?;
    Ok(if state.aborted {
        outln!("rollout {name}: rolled back ({})", state.message);
        Outcome::GateFailed
    } else {
        outln!("rollout {name}: promoted");
        Outcome::Ok
    })
}

pub async fn run(command: RolloutCommand, store_location: &str) -> anyhow::Result<Outcome> {
    // Writing another system's objects reads the spec alone.
    if let RolloutCommand::Export(args) = &command {
        return export(args);
    }
    let store = open_store(store_location).await?;
    match command {
        RolloutCommand::Start(args) => {
            let spec = Spec::load(&args.spec, &ProcessEnv)?;
            let source = std::fs::read_to_string(&args.spec).ok();
            drive(spec, store, source.as_deref()).await
        }
        RolloutCommand::Retry(args) => {
            let (spec, source) = controller::stored_spec(&store, &args.name).await?;
            drive(spec, store, Some(&source)).await
        }
        RolloutCommand::Undo(args) => {
            let token = args
                .admin_token_env
                .as_deref()
                .map(|var| {
                    std::env::var(var)
                        .map_err(|_| anyhow::anyhow!("--admin-token-env: `{var}` is not set"))
                })
                .transpose()?;
            let version = sluice_rollout::undo::undo(
                &store,
                &args.name,
                args.to_version.as_deref(),
                token.as_deref(),
            )
            .await?;
            outln!("{}: route back on {version}", args.name);
            Ok(Outcome::Ok)
        }
        RolloutCommand::Export(args) => export(&args),
        RolloutCommand::Status(args) if args.watch => watch(&store, &args).await,
        RolloutCommand::Runbook(args) => {
            let run = latest_run(&store, &args.name).await?;
            let markdown = controller::stored_runbook(&store, &run.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("rollout `{}` has no stored runbook", args.name))?;
            out!("{markdown}");
            Ok(Outcome::Ok)
        }
        RolloutCommand::Status(args) => status(&store, &args).await,
        RolloutCommand::List(args) => list(&store, &args).await,
        RolloutCommand::History(args) => history(&store, &args).await,
        RolloutCommand::Promote(args) => {
            send(&store, &args.name, Command::Promote { full: args.full }).await
        }
        RolloutCommand::Pause(args) => send(&store, &args.name, Command::Pause).await,
        RolloutCommand::Resume(args) => send(&store, &args.name, Command::Resume).await,
        RolloutCommand::Abort(args) => {
            let reason = Some(args.reason.clone());
            send(&store, &args.name, Command::Abort { reason }).await
        }
    }
}

/// `rollout export --to argo-rollouts`: the spec as Argo Rollouts objects.
fn export(args: &RolloutExportArgs) -> anyhow::Result<Outcome> {
    use sluice_rollout::export::{ArgoOptions, argo_rollouts};
    let spec = Spec::load(&args.spec, &ProcessEnv)?;
    let defaults = ArgoOptions::from_spec(&spec);
    let options = ArgoOptions {
        namespace: args.namespace.clone(),
        workload: args.workload.clone().unwrap_or(defaults.workload),
        stable_service: args
            .stable_service
            .clone()
            .unwrap_or(defaults.stable_service),
        canary_service: args
            .canary_service
            .clone()
            .unwrap_or(defaults.canary_service),
        http_route: args.http_route.clone().unwrap_or(defaults.http_route),
        prometheus: args.prometheus.clone(),
    };
    let text = argo_rollouts(&spec, &options).map_err(|problems| {
        anyhow::anyhow!(
            "{} cannot be written as Argo Rollouts objects:\n  {}",
            args.spec.display(),
            problems.join("\n  ")
        )
    })?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => out!("{text}"),
    }
    Ok(Outcome::Ok)
}

/// Sends a command to the running controller of `name` (through the store).
async fn send(store: &Store, name: &str, command: Command) -> anyhow::Result<Outcome> {
    let verb = command.verb();
    let run = controller::command(store, name, command).await?;
    outln!("{verb} sent to {name} (run {run})");
    Ok(Outcome::Ok)
}

/// `rollout status --watch`: a line per change of state until the run ends.
async fn watch(store: &Store, args: &RolloutStatusArgs) -> anyhow::Result<Outcome> {
    let mut last = None;
    loop {
        let (run, state) = stored_state(store, &args.name).await?;
        if last.as_ref() != Some(&state) {
            if args.json {
                outln!(
                    "{}",
                    json!({"run": run.id.as_str(), "status": run.status.as_str(), "state": state})
                );
            } else {
                outln!("{}  {}", run.status.as_str(), describe(&state));
            }
            last = Some(state);
        }
        if run.status != sluice_store::RunStatus::Running {
            return Ok(Outcome::Ok);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `rollout status`.
async fn status(store: &Store, args: &RolloutStatusArgs) -> anyhow::Result<Outcome> {
    let (run, state) = stored_state(store, &args.name).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"run": run.id.as_str(), "status": run.status.as_str(), "state": state})
            )?
        );
    } else {
        outln!("{} ({}, run {})", args.name, run.status.as_str(), run.id);
        outln!("  {}", describe(&state));
    }
    Ok(Outcome::Ok)
}

/// `rollout list`.
async fn list(store: &Store, args: &RolloutListArgs) -> anyhow::Result<Outcome> {
    let runs = store
        .list_runs(RunFilter {
            kind: Some(RunKind::Rollout),
            status: None,
            limit: 100,
        })
        .await?;
    if args.json {
        let list: Vec<Value> = runs
            .iter()
            .map(|r| json!({"name": r.name, "run": r.id.as_str(), "status": r.status.as_str(), "started_at_ms": r.started_at_ms}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for r in &runs {
            outln!("{:<24} {:<8} {}", r.name, r.status.as_str(), r.id);
        }
    }
    Ok(Outcome::Ok)
}

/// `rollout history`: every stored event, one line each (or JSON).
async fn history(store: &Store, args: &RolloutNameArgs) -> anyhow::Result<Outcome> {
    let (run, _) = stored_state(store, &args.name).await?;
    let events = controller::all_events(store, &run.id).await?;
    if args.json {
        let list: Vec<Value> = events
            .iter()
            .map(|e| json!({"seq": e.seq, "kind": e.kind, "at_ms": e.at_ms, "payload": e.payload}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for e in &events {
            let line = match RolloutEvent::read(e) {
                Ok(RolloutEvent::State { state, .. }) => describe(&state),
                Ok(RolloutEvent::Measurement {
                    rule,
                    outcome,
                    detail,
                    ..
                }) => format!("{rule} → {outcome:?} ({detail})"),
                _ => e
                    .payload
                    .get("summary")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.payload.to_string(), str::to_owned),
            };
            outln!("{:>6} {:<12} {line}", e.seq, e.kind);
        }
    }
    Ok(Outcome::Ok)
}
