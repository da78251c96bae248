//! `sluice rollout`: progressive delivery of a new model version behind `sluice gateway`.
//!
//! [`spec`] reads the rollout YAML; [`machine`] is the pure canary state machine (phases,
//! steps, pauses, analysis counts, abort); [`controller`] drives it against the gateway's admin
//! API and live windows, storing every transition before acting on it so that a restarted
//! controller resumes where the last one stopped; [`process`] starts and stops the local
//! processes behind versions; [`alert`] tells people.

#![deny(unsafe_code)]

pub mod alert;
pub mod backend;
pub mod controller;
pub mod event;
pub mod export;
pub mod machine;
pub mod process;
pub mod registry_link;
pub mod restore;
pub mod runbook;
pub mod sequential;
mod sources;
pub mod spec;
pub mod undo;

/// Errors that stop a rollout's controller (not the rollout's own failures, which abort it).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The store failed (the store's error is the cause).
    #[error("the store")]
    Store(#[from] sluice_store::StoreError),
    /// The gateway refused or could not be reached (its error is the cause).
    #[error("the gateway: {what}")]
    Control {
        /// What was being done.
        what: String,
        /// Why it did not happen.
        #[source]
        source: sluice_gateway::control::ControlError,
    },
    /// The gateway cannot be steered as the spec or stored run asks.
    #[error("the gateway: {0}")]
    Gateway(String),
    /// A rollback of this rollout is more recent than its cooldown.
    #[error("rollout `{name}` was rolled back recently; its cooldown ends in {seconds} s")]
    CoolingDown {
        /// The rollout.
        name: String,
        /// Seconds left.
        seconds: u64,
    },
    /// A registry reference in the spec that does not resolve.
    #[error("the registry: {0}")]
    Registry(String),
    /// A stored rollout that cannot be used as asked (still running, no stored spec).
    #[error("{0}")]
    Stored(String),
    /// No rollout of that name is running.
    #[error("no rollout named `{0}` is running (see `sluice rollout list`)")]
    NotRunning(String),
    /// Another live controller drives this rollout.
    #[error(
        "rollout `{name}` is driven by another controller ({holder}, lease until {until}); stop it first, or wait for its lease to lapse"
    )]
    Held {
        /// The rollout.
        name: String,
        /// Who holds its lease.
        holder: String,
        /// When the lease lapses unless renewed (UTC).
        until: String,
    },
    /// This controller's lease was taken over (it stalled past the lease): it stops driving.
    #[error("rollout `{name}`: another controller ({holder}) took the lease over; this one stops")]
    LeaseLost {
        /// The rollout.
        name: String,
        /// Who holds the lease now.
        holder: String,
    },
}
