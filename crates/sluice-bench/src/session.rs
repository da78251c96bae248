//! A bench run in the store: created with the plan's description (named after the model),
//! held by this process while it runs (so that a killed run reads as interrupted), and finished
//! with the verdict — errored when a stage's client fell behind or the run failed, failed when a
//! threshold did, passed otherwise — and the result document as its summary.

use serde_json::json;
use sluice_store::{NewRun, RunHold, RunId, RunKind, RunStatus, Store, StoreError};

use crate::BenchError;
use crate::profile::{Plan, Verdict};

/// A bench run in the store, held by this process while it runs.
#[derive(Debug)]
pub struct StoredBench {
    store: Store,
    id: RunId,
    _hold: RunHold,
}

impl StoredBench {
    /// Records a new run of `plan`.
    pub async fn begin(store: &Store, plan: &Plan) -> Result<Self, StoreError> {
        let (id, hold) = store
            .create_held_run(NewRun {
                kind: RunKind::Bench,
                name: plan.config.target.model.clone(),
                config: plan.describe(),
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

    /// Finishes the run with the verdict's status and document.
    pub async fn finish(self, verdict: &Verdict) -> Result<(), StoreError> {
        let status = match (verdict.invalid, verdict.failed) {
            (true, _) => RunStatus::Errored,
            (false, true) => RunStatus::Failed,
            (false, false) => RunStatus::Passed,
        };
        self.store
            .finish_run(&self.id, status, verdict.document.clone())
            .await
    }

    /// Finishes the run as errored, with the error as its summary.
    pub async fn errored(self, error: &BenchError) -> Result<(), StoreError> {
        let summary = json!({"error": error.to_string()});
        self.store
            .finish_run(&self.id, RunStatus::Errored, summary)
            .await
    }
}
