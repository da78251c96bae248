//! Logging to stderr in text or JSON. API keys never reach a log line: the client marks the
//! `Authorization` header sensitive and no Sluice message formats a key.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Installs the global subscriber.
pub fn init(args: &GlobalArgs) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid RUST_LOG {directives:?}"))?,
        _ => {
            let level = &args.log_level;
            EnvFilter::try_new(format!(
                "warn,sluice={level},sluice_llm={level},sluice_sim={level},sluice_store={level},sluice_config={level}"
            ))?
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}
