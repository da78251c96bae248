//! `sluice store info` and `sluice store runs`.

use sluice_store::{RunFilter, StoreLocation};

use super::{Outcome, open_store};
use crate::cli::StoreCommand;

pub async fn run(command: StoreCommand, location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(location).await?;
    match command {
        StoreCommand::Info => {
            let runs = store
                .list_runs(RunFilter {
                    limit: u32::MAX,
                    ..RunFilter::default()
                })
                .await?;
            match store.location() {
                StoreLocation::Sqlite(path) => {
                    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
                    outln!("store        {} (SQLite, {size} bytes)", path.display());
                }
                location @ StoreLocation::Postgres(_) => {
                    outln!("store        {} (PostgreSQL)", location.display());
                }
            }
            outln!("schema       version {}", store.schema_version().await?);
            outln!("runs         {}", runs.len());
        }
        StoreCommand::Runs(args) => {
            let runs = store
                .list_runs(RunFilter {
                    kind: args.kind,
                    status: None,
                    limit: args.limit,
                })
                .await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                outln!("No runs recorded yet.");
            } else {
                outln!("{:<44} {:<10} {:<8} NAME", "ID", "KIND", "STATUS");
                for run in runs {
                    outln!(
                        "{:<44} {:<10} {:<8} {}",
                        run.id,
                        run.kind,
                        run.status.as_str(),
                        run.name
                    );
                }
            }
        }
    }
    Ok(Outcome::Ok)
}
