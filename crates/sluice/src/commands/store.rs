//! `sluice store info` and `sluice store runs`.

use sluice_store::{RunFilter, Store, StoreLocation};

use super::{Outcome, open_store};
use crate::cli::{RunsArgs, StoreCommand};

pub async fn run(command: StoreCommand, location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(location).await?;
    match command {
        StoreCommand::Info => info(&store).await?,
        StoreCommand::Runs(args) => runs(&store, args).await?,
    }
    Ok(Outcome::Ok)
}

/// Where the store is, its schema version and how many runs it holds.
async fn info(store: &Store) -> anyhow::Result<()> {
    let runs = store
        .list_runs(RunFilter {
            limit: u32::MAX,
            ..RunFilter::default()
        })
        .await?;
    match store.location() {
        StoreLocation::Sqlite(path) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            let wal = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or_default();
            outln!(
                "store        {} (SQLite, {size} bytes, write-ahead log {wal} bytes)",
                path.display()
            );
        }
        location @ StoreLocation::Postgres(_) => {
            outln!("store        {} (PostgreSQL)", location.display());
        }
    }
    outln!("schema       version {}", store.schema_version().await?);
    let mut interrupted = 0;
    for run in &runs {
        interrupted += usize::from(store.interrupted(run).await?);
    }
    outln!("runs         {} ({interrupted} interrupted)", runs.len());
    Ok(())
}

/// Lists runs, newest first; a run still marked running whose process is gone is shown as
/// interrupted.
async fn runs(store: &Store, args: RunsArgs) -> anyhow::Result<()> {
    let runs = store
        .list_runs(RunFilter {
            kind: args.kind,
            status: None,
            limit: args.limit,
        })
        .await?;
    // A run still marked running whose process is gone is shown as interrupted.
    let mut shown = Vec::with_capacity(runs.len());
    for run in runs {
        let interrupted = store.interrupted(&run).await?;
        shown.push((run, interrupted));
    }
    if args.json {
        let rows: Vec<serde_json::Value> = shown
            .iter()
            .map(|(run, interrupted)| {
                let mut row = serde_json::to_value(run).unwrap_or_default();
                row["interrupted"] = serde_json::Value::Bool(*interrupted);
                row
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if shown.is_empty() {
        outln!("No runs recorded yet.");
    } else {
        outln!("{:<44} {:<10} {:<11} NAME", "ID", "KIND", "STATUS");
        for (run, interrupted) in shown {
            let status = if interrupted {
                "interrupted"
            } else {
                run.status.as_str()
            };
            outln!(
                "{:<44} {:<10} {:<11} {}",
                run.id,
                run.kind,
                status,
                run.name
            );
        }
    }
    Ok(())
}
