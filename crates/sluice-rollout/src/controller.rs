//! The controller: drives one rollout's state machine against a gateway's admin API, measures
//! its rules on the gateway's live windows, and keeps everything in the store.
//!
//! Durability: a rollout is a `rollout` run; every transition is stored as a `state` event
//! (the new state and the actions it needs) *before* any action is carried out, and every
//! measurement as a `measurement` event. A controller that starts while a run of the same name
//! is still `running` resumes it from its last stored state and carries out that state's
//! actions again — they are idempotent (absolute weights), so no step is applied twice.
//! Commands (`promote`, `pause`, `resume`, `abort`) reach a running controller as `command`
//! events on the run's subject.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_core::error_chain;
use sluice_gateway::metrics::Windows;
use sluice_store::{LeaseOutcome, NewRun, RunFilter, RunId, RunKind, RunStatus, Store};
use tracing::{info, warn};

use crate::backend::{Backend, BackendError};
use crate::event::{
    self, Command, InstanceEvent, Promoted, Rollback, RollbackMetrics, RolloutEvent, RunConfig,
};
use crate::machine::{Action, Input, Outcome, State};
use crate::process::StartError;
use crate::registry_link::{self, RegistryLink};
use crate::sources::{self, Reading};
use crate::spec::{Source, Spec};
use crate::{RolloutError, alert};

/// How often the controller looks at time, commands and due measurements.
const TICK: Duration = Duration::from_millis(100);
/// How long a finished rollout keeps offering its last weight to a gateway that refuses it.
const FINAL_WEIGHT_WAIT: Duration = Duration::from_secs(10);
/// How often the gateway's weights are compared with the stored state.
const REASSERT_EVERY: Duration = Duration::from_secs(1);
/// How long a controller's lease on its rollout lasts unless renewed (a controller killed
/// elsewhere is taken over after this; one that died on this host, at once).
const LEASE_TTL_MS: i64 = 15_000;
/// How often a controller renews its lease.
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);
/// Timeout of each admin API call.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Events read per store call.
const PAGE: u32 = 1000;

/// Every event of a rollout, oldest first, read page by page.
pub async fn all_events(
    store: &Store,
    run: &RunId,
) -> Result<Vec<sluice_store::Event>, RolloutError> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &sluice_store::Event| e.seq);
        let page = store.events(&subject(run), after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        events.extend(page);
        if !full {
            return Ok(events);
        }
    }
}

/// The store subject of a rollout's events.
pub fn subject(run: &RunId) -> String {
    format!("rollout:{}", run.as_str())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A rollout being driven.
pub struct Controller {
    spec: Spec,
    store: Store,
    run: RunId,
    /// For metric sources and instance health checks.
    client: reqwest::Client,
    /// The gateway.
    backend: Backend,
    state: State,
    /// The last event read from the run's subject.
    seen: i64,
    /// A weight the gateway has not accepted yet (retried every tick).
    pending_weight: Option<u32>,
    /// When each rule is next measured.
    due: BTreeMap<usize, Instant>,
    /// When the gateway's weights are next compared with the stored state.
    next_check: Instant,
    /// When the lease on the rollout is next renewed.
    next_renewal: Instant,
    /// The running sequential test of each error-rate judge, by rule.
    judges: BTreeMap<usize, crate::sequential::ErrorRateTest>,
    /// Alerts being delivered.
    alerts: Vec<tokio::task::JoinHandle<()>>,
    /// Inputs that carrying out an action produced (a candidate that would not start).
    followups: Vec<Input>,
    /// Processes started here, by (`stable`/`candidate`, index).
    started: BTreeMap<(&'static str, usize), crate::process::Started>,
    /// The registered model, when the spec named registry references.
    registry: Option<RegistryLink>,
}

impl Controller {
    /// Starts a new rollout through the gateway's admin API (the spec's `gateway.admin_url`),
    /// or resumes the unfinished run of the same name. `source`, the spec's YAML, is stored
    /// with a new run so that `retry` can run it again.
    pub async fn start(
        spec: Spec,
        store: Store,
        source: Option<&str>,
    ) -> Result<(Self, bool), RolloutError> {
        let Some(url) = &spec.admin_url else {
            return Err(RolloutError::Gateway(format!(
                "rollout `{}` names no `gateway.admin_url`: give one, or run it inside the gateway with `sluice gateway --rollout SPEC`",
                spec.name
            )));
        };
        let backend = Backend::admin(url, spec.admin_token.clone()).map_err(|source| {
            RolloutError::Control {
                what: format!("the admin client for {url}"),
                source,
            }
        })?;
        Self::start_with(spec, store, source, backend).await
    }

    /// Starts (or resumes) a rollout that steers the gateway through `backend`.
    pub async fn start_with(
        mut spec: Spec,
        store: Store,
        source: Option<&str>,
        backend: Backend,
    ) -> Result<(Self, bool), RolloutError> {
        let client = reqwest::Client::builder()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|e| RolloutError::Gateway(e.to_string()))?;
        // One controller per rollout: the lease is taken before a run is found or created.
        claim(&store, &spec.name).await?;
        let running = store
            .list_runs(RunFilter {
                kind: Some(RunKind::Rollout),
                status: Some(RunStatus::Running),
                limit: 1000,
            })
            .await?
            .into_iter()
            .find(|r| r.name == spec.name);
        let registry;
        let (run, state, actions, seen, resumed) = match running {
            Some(run) => {
                // Registry references were resolved when the run was created: keep those.
                let stored = RunConfig::of(&run);
                registry = stored.registry;
                if registry.is_some() && !stored.stable.is_empty() && !stored.candidate.is_empty() {
                    spec.stable = stored.stable;
                    spec.candidate = stored.candidate;
                }
                let stored = all_events(&store, &run.id).await?;
                let events = event::read_all(&stored);
                let last = events
                    .iter()
                    .rev()
                    .find(|(_, e)| matches!(e, RolloutEvent::State { .. }));
                let (after, state, mut actions, input) = match last {
                    Some((
                        seq,
                        RolloutEvent::State {
                            state,
                            actions,
                            input,
                        },
                    )) => (*seq, state.clone(), actions.clone(), input.clone()),
                    _ => (0, State::new(), Vec::new(), None),
                };
                // Announcements already stored after that transition are not made again.
                let announced: Vec<&str> = events
                    .iter()
                    .filter(|(seq, _)| *seq > after)
                    .map(|(_, e)| e.kind())
                    .collect();
                actions.retain(|a| match a {
                    Action::AlertRollback { .. } => !announced.contains(&"rollback"),
                    Action::AlertPromoted => !announced.contains(&"promoted"),
                    _ => true,
                });
                let seen = stored.last().map_or(0, |e| e.seq);
                (run.id, state, (actions, input), seen, true)
            }
            None => {
                if !spec.cooldown.is_zero() {
                    cooling_down(&store, &spec).await?;
                }
                registry = registry_link::resolve(&mut spec, &store).await?;
                let run = store
                    .create_run(NewRun {
                        kind: RunKind::Rollout,
                        name: spec.name.clone(),
                        config: serde_json::to_value(RunConfig {
                            route: spec.route.clone(),
                            stable: spec.stable.clone(),
                            candidate: spec.candidate.clone(),
                            admin_url: spec.admin_url.clone(),
                            steps: format!("{:?}", spec.steps),
                            rules: spec.rules.iter().map(|r| r.describe()).collect(),
                            spec_yaml: source.map(str::to_owned),
                            registry: registry.clone(),
                        })
                        .unwrap_or_default(),
                    })
                    .await?;
                if let Some(link) = &registry {
                    registry_link::link(&store, link, &spec, &run).await?;
                }
                let state = State::new();
                let seq = store
                    .append_events(vec![
                        RolloutEvent::Runbook {
                            markdown: crate::runbook::runbook(&spec, run.as_str()),
                        }
                        .to_new(&subject(&run)),
                        RolloutEvent::State {
                            state: state.clone(),
                            actions: Vec::new(),
                            input: None,
                        }
                        .to_new(&subject(&run)),
                    ])
                    .await?;
                (
                    run,
                    state,
                    (Vec::new(), None),
                    seq.last().copied().unwrap_or(0),
                    false,
                )
            }
        };
        let mut controller = Self {
            spec,
            store,
            run,
            client,
            backend,
            state,
            seen,
            pending_weight: None,
            due: BTreeMap::new(),
            next_check: Instant::now(),
            next_renewal: Instant::now() + LEASE_RENEW_EVERY,
            judges: BTreeMap::new(),
            alerts: Vec::new(),
            followups: Vec::new(),
            started: BTreeMap::new(),
            registry,
        };
        if resumed {
            info!(run = %controller.run, version = controller.state.version, "Resuming the rollout from its stored state.");
            // The last transition's actions may or may not have been carried out: again
            // (weights are absolute; announcements are skipped when already stored).
            let (actions, input) = actions;
            let input = input.unwrap_or(Input::Tick { now_ms: 0 });
            for action in actions {
                controller.carry_out(&input, action).await?;
            }
        }
        Ok((controller, resumed))
    }

    /// The run id.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Drives the rollout to its end, calling `on_change` after each transition.
    pub async fn run(mut self, mut on_change: impl FnMut(&State)) -> Result<State, RolloutError> {
        on_change(&self.state);
        while !self.state.is_finished() {
            if let Some(weight) = self.pending_weight {
                self.set_weight(weight).await;
            }
            self.renew().await?;
            self.reassert().await?;
            let mut inputs = std::mem::take(&mut self.followups);
            inputs.extend(self.commands().await?);
            for input in inputs {
                if self.apply(input).await? {
                    on_change(&self.state);
                }
            }
            // Steps wait until the gateway has taken the last weight: the stored state never
            // runs ahead of the traffic.
            if self.pending_weight.is_none() && self.apply(Input::Tick { now_ms: now_ms() }).await?
            {
                on_change(&self.state);
            }
            for rule in self.due_rules() {
                let input = self.measure(rule).await?;
                if self.apply(input).await? {
                    on_change(&self.state);
                }
            }
            if !self.state.is_finished() {
                tokio::time::sleep(TICK).await;
            }
        }
        // A rollback's weight must reach the gateway before the run is closed.
        let deadline = Instant::now() + FINAL_WEIGHT_WAIT;
        while let Some(weight) = self.pending_weight {
            if Instant::now() > deadline {
                warn!(
                    weight,
                    "The gateway did not accept the final weight; set it by hand (see `sluice rollout runbook`)."
                );
                break;
            }
            tokio::time::sleep(TICK).await;
            self.set_weight(weight).await;
        }
        // The route is the gateway's own again: reloads may change it from now on.
        if let Err(error) = self
            .backend
            .release(&self.spec.route, &self.spec.name)
            .await
        {
            warn!(%error, "The gateway did not take the release of the route.");
        }
        let status = if self.state.aborted {
            RunStatus::Failed
        } else {
            RunStatus::Passed
        };
        self.store
            .finish_run(&self.run, status, json!({"state": self.state}))
            .await?;
        for task in self.alerts.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
        if let Err(error) = self.store.unclaim(&lease_name(&self.spec.name)).await {
            warn!(%error, "Cannot release the rollout's lease; it lapses by itself.");
        }
        Ok(self.state)
    }

    /// Renews the lease on the rollout; one taken over by another controller (this one
    /// stalled past it) stops this one.
    async fn renew(&mut self) -> Result<(), RolloutError> {
        if Instant::now() < self.next_renewal {
            return Ok(());
        }
        self.next_renewal = Instant::now() + LEASE_RENEW_EVERY;
        match self
            .store
            .claim(&lease_name(&self.spec.name), LEASE_TTL_MS)
            .await
        {
            Ok(LeaseOutcome::Acquired { .. }) => Ok(()),
            Ok(LeaseOutcome::Held(lease)) => Err(RolloutError::LeaseLost {
                name: self.spec.name.clone(),
                holder: lease.holder,
            }),
            // A store that cannot be reached now is retried at the next renewal.
            Err(error) => {
                warn!(%error, "Cannot renew the rollout's lease.");
                Ok(())
            }
        }
    }

    /// The stored state is the truth: when the gateway's weights differ from it (a reload, a
    /// restarted gateway, a hand-made change), the stored weights are set again and the
    /// disagreement is recorded. Checked at most once a second.
    async fn reassert(&mut self) -> Result<(), RolloutError> {
        if self.pending_weight.is_some() || Instant::now() < self.next_check {
            return Ok(());
        }
        self.next_check = Instant::now() + REASSERT_EVERY;
        let Ok(found) = self.backend.weights(&self.spec.route).await else {
            return Ok(());
        };
        let weight = self.state.weight;
        // A route without both versions is reported by setting weights, not here.
        if !(found.contains_key(&self.spec.candidate) && found.contains_key(&self.spec.stable)) {
            return Ok(());
        }
        let expected = |version: &str, want: u32| {
            found
                .get(version)
                .is_some_and(|w| (w - f64::from(want)).abs() < 1e-9)
        };
        if expected(&self.spec.candidate, weight) && expected(&self.spec.stable, 100 - weight) {
            return Ok(());
        }
        warn!(
            route = self.spec.route,
            ?found,
            weight,
            "The gateway's weights differ from the rollout's stored state; setting them again."
        );
        self.store
            .append_events(vec![
                RolloutEvent::Reasserted {
                    found,
                    candidate_weight: weight,
                }
                .to_new(&subject(&self.run)),
            ])
            .await?;
        self.set_weight(weight).await;
        Ok(())
    }

    fn due_rules(&mut self) -> Vec<usize> {
        if self.state.is_finished() || self.state.weight == 0 && self.state.step == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (i, rule) in self.spec.rules.iter().enumerate() {
            // An analysis step's rules are measured only while that step runs.
            if rule.step_only
                && !self
                    .state
                    .analysis
                    .as_ref()
                    .is_some_and(|rules| rules.contains(&i))
            {
                self.due.remove(&i);
                continue;
            }
            let next = self.due.entry(i).or_insert(now);
            if *next <= now {
                *next = now + rule.interval;
                due.push(i);
            }
        }
        due
    }

    /// New commands from the run's subject.
    async fn commands(&mut self) -> Result<Vec<Input>, RolloutError> {
        let events = self
            .store
            .events(&subject(&self.run), self.seen, PAGE)
            .await?;
        let mut inputs = Vec::new();
        for event in events {
            self.seen = event.seq;
            if event.kind != "command" {
                continue;
            }
            match RolloutEvent::read(&event) {
                Ok(RolloutEvent::Command(command)) => inputs.push(command.input()),
                Ok(_) => {}
                Err(error) => warn!(%error, "Unknown rollout command ignored."),
            }
        }
        Ok(inputs)
    }

    /// Applies an input: stores the transition, then carries out its actions. Returns whether
    /// the state changed.
    async fn apply(&mut self, input: Input) -> Result<bool, RolloutError> {
        let (next, actions) = crate::machine::next(&self.spec, &self.state, &input);
        if next == self.state {
            return Ok(false);
        }
        let seq = self
            .store
            .append_events(vec![
                RolloutEvent::State {
                    state: next.clone(),
                    actions: actions.clone(),
                    input: Some(input.clone()),
                }
                .to_new(&subject(&self.run)),
            ])
            .await?;
        if let Some(seq) = seq.last() {
            self.seen = self.seen.max(*seq);
        }
        self.state = next;
        for action in actions {
            self.carry_out(&input, action).await?;
        }
        Ok(true)
    }

    async fn carry_out(&mut self, input: &Input, action: Action) -> Result<(), RolloutError> {
        match action {
            Action::SetWeight(weight) => self.set_weight(weight).await,
            Action::SetShadow(percent) => self.set_shadow(percent).await,
            Action::SetFlag(on) => self.set_flag(on).await,
            Action::StartCandidate(indices) => self.start_candidate(&indices).await?,
            Action::StopStable(indices) => self.stop_stable(&indices).await?,
            Action::RestoreStable(indices) => self.restore_stable(&indices).await?,
            Action::StopCandidate(indices) => {
                for i in indices {
                    self.stop_instance("candidate", i).await?;
                }
            }
            Action::AlertRollback { reason } => self.rollback_event(input, &reason).await?,
            Action::AlertPromoted => {
                if let Some(link) = &self.registry {
                    registry_link::promote(&self.store, link, &self.spec, &self.run).await?;
                }
                let event = RolloutEvent::Promoted(Promoted {
                    id: format!("{}-promoted", self.run),
                    rollout: self.spec.name.clone(),
                    run: self.run.as_str().to_owned(),
                    route: self.spec.route.clone(),
                    version: self.spec.candidate.clone(),
                    summary: format!(
                        "Rollout {} promoted: {} now serves all of route {}.",
                        self.spec.name, self.spec.candidate, self.spec.route
                    ),
                });
                self.store
                    .append_events(vec![event.to_new(&subject(&self.run))])
                    .await?;
                self.alerts
                    .push(alert::send(&self.spec.alerts, event.alert_body()));
            }
        }
        Ok(())
    }

    /// Records the rollback with a snapshot of both versions' windows, and alerts.
    async fn rollback_event(&mut self, input: &Input, reason: &str) -> Result<(), RolloutError> {
        let snapshot = self.windows(300).await.ok().map(|mut windows| {
            let mut route = windows.remove(&self.spec.route).unwrap_or_default();
            RollbackMetrics {
                stable: route.remove(&self.spec.stable),
                candidate: route.remove(&self.spec.candidate),
            }
        });
        let trigger = match input {
            Input::Measured { rule, .. } => self
                .spec
                .rules
                .get(*rule)
                .map_or_else(|| "analysis".to_owned(), |r| r.describe()),
            Input::Abort { .. } => "manual abort".to_owned(),
            _ => "rollout".to_owned(),
        };
        let event = RolloutEvent::Rollback(Box::new(Rollback {
            id: format!("{}-rollback", self.run),
            rollout: self.spec.name.clone(),
            run: self.run.as_str().to_owned(),
            route: self.spec.route.clone(),
            from_version: self.spec.candidate.clone(),
            to_version: self.spec.stable.clone(),
            trigger,
            reason: reason.to_owned(),
            metrics: snapshot,
            at_ms: now_ms(),
            summary: format!(
                "Rollout {} rolled back: route {} is back on {} ({reason}).",
                self.spec.name, self.spec.route, self.spec.stable
            ),
        }));
        self.store
            .append_events(vec![event.to_new(&subject(&self.run))])
            .await?;
        self.alerts
            .push(alert::send(&self.spec.alerts, event.alert_body()));
        Ok(())
    }

    /// A change to the gateway, tried three times while it is unreachable (a refusal is an
    /// answer: trying again changes nothing).
    async fn with_retries<F, Fut>(&self, change: F) -> Result<(), BackendError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), BackendError>>,
    {
        let mut attempt = 0;
        loop {
            match change().await {
                Ok(()) => return Ok(()),
                Err(error @ BackendError::Refused(_)) => return Err(error),
                Err(error) if attempt == 2 => return Err(error),
                Err(_) => attempt += 1,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn set_shadow(&mut self, percent: u32) {
        let (route, candidate) = (&self.spec.route, &self.spec.candidate);
        let result = self
            .with_retries(|| self.backend.set_shadow(route, candidate, percent))
            .await;
        match result {
            Ok(()) => info!(percent, route = self.spec.route, "Shadow set."),
            Err(error) => warn!(percent, %error, "The shadow was not set."),
        }
    }

    /// Turns the feature flag's segments on (the spec's) or off (none) for the candidate.
    async fn set_flag(&mut self, on: bool) {
        let Some(flag) = &self.spec.flag else {
            return;
        };
        let segments = if on {
            flag.segments.clone()
        } else {
            Vec::new()
        };
        let (route, candidate, sticky) = (&self.spec.route, &self.spec.candidate, &flag.sticky_key);
        let result = self
            .with_retries(|| {
                self.backend
                    .set_segments(route, candidate, &segments, sticky)
            })
            .await;
        match result {
            Ok(()) => info!(on, route = self.spec.route, "Feature-flag segments set."),
            Err(error) if on => self.followups.push(Input::Abort {
                reason: format!("the feature flag could not be set: {error}"),
            }),
            Err(error) => warn!(
                %error,
                "The feature flag's segments could not be turned off; see the runbook."
            ),
        }
    }

    fn instances(&self, side: &str) -> &[crate::spec::Instance] {
        if side == "stable" {
            &self.spec.instances.stable
        } else {
            &self.spec.instances.candidate
        }
    }

    /// Points a version at these of its instances.
    async fn set_upstreams(&self, side: &str, indices: &[usize]) -> Result<(), BackendError> {
        let instances = self.instances(side);
        let urls: Vec<String> = indices
            .iter()
            .filter_map(|i| instances.get(*i).map(|x| x.url.clone()))
            .collect();
        if urls.is_empty() {
            return Ok(());
        }
        let version = if side == "stable" {
            &self.spec.stable
        } else {
            &self.spec.candidate
        };
        self.with_retries(|| {
            self.backend
                .set_upstreams(&self.spec.route, version, urls.clone())
        })
        .await
    }

    /// Starts instances (unless up), recording each; `Err` with the reason on the first that
    /// fails.
    async fn start_instances(
        &mut self,
        side: &'static str,
        indices: &[usize],
    ) -> Result<(), StartError> {
        for &i in indices {
            let Some(instance) = self.instances(side).get(i).cloned() else {
                continue;
            };
            let label = format!("{}-{side}-{i}", self.run);
            let started = crate::process::start(&self.client, &instance, &label).await?;
            if let Some(started) = started {
                let _ = self
                    .store
                    .append_events(vec![
                        RolloutEvent::Instance(InstanceEvent {
                            version: side.to_owned(),
                            index: i,
                            url: instance.url.clone(),
                            pid: started.pid,
                            log: Some(started.log.display().to_string()),
                            stopped: false,
                            summary: format!(
                                "started {side} instance {i} at {} (pid {})",
                                instance.url, started.pid
                            ),
                        })
                        .to_new(&subject(&self.run)),
                    ])
                    .await;
                self.started.insert((side, i), started);
            }
        }
        Ok(())
    }

    async fn start_candidate(&mut self, indices: &[usize]) -> Result<(), RolloutError> {
        let up: Vec<usize> = self.state.started.iter().copied().collect();
        let failure = match self.start_instances("candidate", indices).await {
            Ok(()) => self
                .set_upstreams("candidate", &up)
                .await
                .err()
                .map(|e| error_chain(&e)),
            Err(error) => Some(error_chain(&error)),
        };
        if let Some(error) = failure {
            self.followups.push(Input::Abort {
                reason: format!("the candidate's instances did not start: {error}"),
            });
        }
        Ok(())
    }

    async fn stop_stable(&mut self, indices: &[usize]) -> Result<(), RolloutError> {
        let remaining: Vec<usize> = (0..self.spec.instances.stable.len())
            .filter(|i| !self.state.stopped.contains(i))
            .collect();
        if let Err(error) = self.set_upstreams("stable", &remaining).await {
            warn!(
                %error,
                "The stable upstreams were not updated; its instances keep running."
            );
            return Ok(());
        }
        for &i in indices {
            self.stop_instance("stable", i).await?;
        }
        Ok(())
    }

    async fn restore_stable(&mut self, indices: &[usize]) -> Result<(), RolloutError> {
        if let Err(error) = self.start_instances("stable", indices).await {
            warn!(
                error = error_chain(&error),
                "A stable instance did not come back; see the runbook."
            );
        }
        let all: Vec<usize> = (0..self.spec.instances.stable.len()).collect();
        if let Err(error) = self.set_upstreams("stable", &all).await {
            warn!(
                %error,
                "The stable upstreams were not restored; see the runbook."
            );
        }
        Ok(())
    }

    async fn stop_instance(
        &mut self,
        side: &'static str,
        index: usize,
    ) -> Result<(), RolloutError> {
        let Some(instance) = self.instances(side).get(index).cloned() else {
            return Ok(());
        };
        let mut started = self.started.remove(&(side, index));
        // Started here, else by this run before a restart (its event), else its pid file.
        let recorded = match &started {
            Some(s) => Some(s.pid),
            None => event::read_all(&all_events(&self.store, &self.run).await?)
                .into_iter()
                .rev()
                .find_map(|(_, e)| match e {
                    RolloutEvent::Instance(i)
                        if !i.stopped && i.version == side && i.index == index =>
                    {
                        Some(i.pid)
                    }
                    _ => None,
                }),
        };
        let pid = crate::process::pid_of(&instance, recorded);
        let Some(pid) = pid else {
            warn!(
                url = instance.url,
                "No process id for this instance (no pid file): it is out of rotation but still running."
            );
            return Ok(());
        };
        crate::process::stop_group(pid, started.as_mut().and_then(|s| s.child.as_mut())).await;
        self.store
            .append_events(vec![
                RolloutEvent::Instance(InstanceEvent {
                    version: side.to_owned(),
                    index,
                    url: instance.url.clone(),
                    pid,
                    log: None,
                    stopped: true,
                    summary: format!(
                        "stopped {side} instance {index} at {} (pid {pid})",
                        instance.url
                    ),
                })
                .to_new(&subject(&self.run)),
            ])
            .await?;
        Ok(())
    }

    async fn set_weight(&mut self, weight: u32) {
        let mut weights = BTreeMap::new();
        weights.insert(self.spec.stable.clone(), f64::from(100 - weight));
        weights.insert(self.spec.candidate.clone(), f64::from(weight));
        match self
            .backend
            .set_weights(&self.spec.route, weights, &self.spec.name)
            .await
        {
            Ok(()) => {
                self.pending_weight = None;
                info!(weight, route = self.spec.route, "Candidate weight set.");
            }
            Err(error) => {
                warn!(weight, %error, "The weight was not taken; retrying.");
                self.pending_weight = Some(weight);
            }
        }
    }

    async fn windows(&self, seconds: u64) -> Result<Windows, BackendError> {
        self.backend.windows(seconds, false).await
    }

    /// Measures one rule on the candidate's window and stores the measurement.
    async fn measure(&mut self, index: usize) -> Result<Input, RolloutError> {
        let rule = self.spec.rules[index].clone();
        // A value and its sample count, `Ok(None)` when there is no data, `Err` when the
        // source cannot be read.
        let (route, candidate, stable) =
            (&self.spec.route, &self.spec.candidate, &self.spec.stable);
        let reading: Reading = match &rule.source {
            Source::Gateway(metric) => self
                .windows(rule.window.as_secs().max(1))
                .await
                .map_err(|e| format!("gateway unreachable: {e}"))
                .map(|windows| {
                    sources::gateway_metric(&windows, route, candidate, metric, rule.min_samples)
                }),
            Source::JudgeErrorRate { .. } => match self.windows(1).await {
                Err(e) => Err(format!("gateway unreachable: {e}")),
                Ok(windows) => {
                    let test = self.judges.entry(index).or_default();
                    Ok(sources::error_rate_judge(
                        test,
                        &windows,
                        route,
                        candidate,
                        stable,
                        rule.min_samples,
                    ))
                }
            },
            Source::JudgeLatency { tolerance, .. } => self
                .backend
                .windows(rule.window.as_secs().max(1), true)
                .await
                .map_err(|e| format!("gateway unreachable: {e}"))
                .map(|windows| {
                    sources::latency_judge(
                        &windows,
                        route,
                        candidate,
                        stable,
                        *tolerance,
                        rule.min_samples,
                    )
                }),
            Source::Prometheus { url, query } => {
                sluice_readiness::prometheus::query(&self.client, url, query)
                    .await
                    .map(|v| v.map(|v| (v, 1)))
                    .map_err(|e| e.to_string())
            }
            Source::Web { url, pointer } => sources::web(&self.client, url, pointer).await,
        };
        let (outcome, value, samples, detail) = match reading {
            Err(error) => (Outcome::Error, None, 0, error),
            Ok(None) => (
                Outcome::NoData,
                None,
                0,
                format!("no data (fewer than {} samples)", rule.min_samples),
            ),
            Ok(Some((v, samples))) => (
                rule.judge(v),
                Some(v),
                samples,
                format!("measured {v:.4} over {samples} samples"),
            ),
        };
        self.store
            .append_events(vec![
                RolloutEvent::Measurement {
                    rule: rule.describe(),
                    index,
                    outcome,
                    value,
                    samples,
                    detail: detail.clone(),
                }
                .to_new(&subject(&self.run)),
            ])
            .await?;
        Ok(Input::Measured {
            rule: index,
            outcome,
            detail,
        })
    }
}

/// Sends a command to the running rollout of this name.
pub async fn command(store: &Store, name: &str, command: Command) -> Result<RunId, RolloutError> {
    let run = latest(store, name)
        .await?
        .filter(|r| r.status == RunStatus::Running)
        .ok_or_else(|| RolloutError::NotRunning(name.to_owned()))?;
    store
        .append_events(vec![
            RolloutEvent::Command(command).to_new(&subject(&run.id)),
        ])
        .await?;
    Ok(run.id)
}

/// The last state a run stored (the initial state when it stored none).
pub async fn stored_state(store: &Store, run: &RunId) -> Result<State, RolloutError> {
    let events = event::read_all(&all_events(store, run).await?);
    Ok(events
        .into_iter()
        .rev()
        .find_map(|(_, e)| match e {
            RolloutEvent::State { state, .. } => Some(state),
            _ => None,
        })
        .unwrap_or_default())
}

/// The runbook a run stored when it started.
pub async fn stored_runbook(store: &Store, run: &RunId) -> Result<Option<String>, RolloutError> {
    let events = event::read_all(&all_events(store, run).await?);
    Ok(events.into_iter().find_map(|(_, e)| match e {
        RolloutEvent::Runbook { markdown } => Some(markdown),
        _ => None,
    }))
}

/// The spec a finished rollout ran with, checked again, and its text (`rollout retry`).
pub async fn stored_spec(store: &Store, name: &str) -> Result<(Spec, String), RolloutError> {
    let run = latest(store, name)
        .await?
        .ok_or_else(|| RolloutError::NotRunning(name.to_owned()))?;
    if run.status == RunStatus::Running {
        return Err(RolloutError::Stored(format!(
            "rollout `{name}` is still running; `sluice rollout start` resumes it"
        )));
    }
    let source = RunConfig::of(&run).spec_yaml.ok_or_else(|| {
        RolloutError::Stored(format!(
            "rollout `{name}` has no stored spec; run `sluice rollout start SPEC`"
        ))
    })?;
    let env = &sluice_config::ProcessEnv;
    let spec = sluice_config::Document::parse(&format!("stored spec of {name}"), &source, env)
        .and_then(|document| Spec::from_document(&document, env))
        .map_err(|e| RolloutError::Stored(e.to_string()))?;
    Ok((spec, source))
}

/// Refuses a new run while the last rollback of this rollout is more recent than its cooldown.
async fn cooling_down(store: &Store, spec: &Spec) -> Result<(), RolloutError> {
    let Some(last) = latest(store, &spec.name).await? else {
        return Ok(());
    };
    let cooldown_ms = spec.cooldown.as_millis() as i64;
    match (last.status, last.finished_at_ms) {
        (RunStatus::Failed, Some(finished)) if now_ms() - finished < cooldown_ms => {
            Err(RolloutError::CoolingDown {
                name: spec.name.clone(),
                seconds: ((finished + cooldown_ms - now_ms()) as f64 / 1000.0).ceil() as u64,
            })
        }
        _ => Ok(()),
    }
}

/// The lease a rollout's controller holds.
fn lease_name(rollout: &str) -> String {
    format!("rollout:{rollout}")
}

/// Takes the lease on rollout `name` for this process, or says who drives it.
async fn claim(store: &Store, name: &str) -> Result<(), RolloutError> {
    match store.claim(&lease_name(name), LEASE_TTL_MS).await? {
        LeaseOutcome::Acquired { .. } => Ok(()),
        LeaseOutcome::Held(lease) => Err(RolloutError::Held {
            name: name.to_owned(),
            holder: lease.holder,
            until: sluice_store::utc_timestamp(lease.expires_at_ms),
        }),
    }
}

/// The newest run of a rollout.
pub async fn latest(store: &Store, name: &str) -> Result<Option<sluice_store::Run>, RolloutError> {
    Ok(store
        .list_runs(RunFilter {
            kind: Some(RunKind::Rollout),
            status: None,
            limit: 1000,
        })
        .await?
        .into_iter()
        .find(|r| r.name == name))
}
