//! `sluice init [DIR]`: scaffolds a repository that ships a model with Sluice — the model's
//! files, a prompt, an eval suite, a load test, a gateway and canary, the pipeline that ties
//! them together and its GitHub Actions workflow (written by the exporter) — so that
//! `sluice validate models` and `sluice pipeline run` pass at once against the simulator.
//! Existing files are never overwritten unless asked.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sluice_pipeline::Pipeline;
use sluice_pipeline::export::{ExportOptions, Target, export};

use super::Outcome;
use crate::cli::InitArgs;

/// Each file of the scaffold: its path (`MODEL` is the model's name) and its text.
const FILES: [(&str, &str); 14] = [
    (
        "models/MODEL/model.yaml",
        include_str!("../../templates/init/model.yaml"),
    ),
    (
        "models/MODEL/deployment.yaml",
        include_str!("../../templates/init/deployment.yaml"),
    ),
    (
        "models/MODEL/config/staging.yaml",
        include_str!("../../templates/init/staging.yaml"),
    ),
    (
        "models/MODEL/config/production.yaml",
        include_str!("../../templates/init/production.yaml"),
    ),
    (
        "prompts/system.txt",
        include_str!("../../templates/init/system.txt"),
    ),
    (
        "evals/promptfooconfig.yaml",
        include_str!("../../templates/init/promptfooconfig.yaml"),
    ),
    (
        "bench.yaml",
        include_str!("../../templates/init/bench.yaml"),
    ),
    (
        "gateway.yaml",
        include_str!("../../templates/init/gateway.yaml"),
    ),
    (
        "rollout.yaml",
        include_str!("../../templates/init/rollout.yaml"),
    ),
    ("sim.yaml", include_str!("../../templates/init/sim.yaml")),
    (
        "pipeline.yaml",
        include_str!("../../templates/init/pipeline.yaml"),
    ),
    (
        "RELEASING.md",
        include_str!("../../templates/init/RELEASING.md"),
    ),
    (".gitignore", ".sluice/\n"),
    (".github/workflows/pipeline.yml", ""),
];

pub fn run(args: InitArgs) -> anyhow::Result<Outcome> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !valid {
        anyhow::bail!(
            "--name `{name}`: expected lowercase letters, digits and `-` (a model.yaml name)"
        );
    }
    let files: Vec<(PathBuf, String)> = FILES
        .iter()
        .map(|(path, text)| {
            (
                args.dir.join(path.replace("MODEL", name)),
                text.replace("MODEL", name),
            )
        })
        .collect();
    let existing: Vec<String> = files
        .iter()
        .filter(|(path, _)| path.exists())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        anyhow::bail!(
            "{} already exist(s): {} (--force overwrites them)",
            existing.len(),
            existing.join(", ")
        );
    }
    for (path, text) in &files {
        if path.ends_with(".github/workflows/pipeline.yml") {
            continue;
        }
        write(path, text)?;
    }
    // The workflow is the exporter's, from the pipeline just written.
    let pipeline = Pipeline::load(&args.dir.join("pipeline.yaml"))?;
    let workflow = export(
        &pipeline,
        Target::Github,
        &ExportOptions {
            file: "pipeline.yaml".to_owned(),
            name: "pipeline".to_owned(),
            image: super::pipeline::IMAGE.to_owned(),
        },
    );
    write(&args.dir.join(".github/workflows/pipeline.yml"), &workflow)?;
    outln!("Scaffolded {} for the model `{name}`:", args.dir.display());
    for (path, _) in &files {
        outln!(
            "  {}",
            path.strip_prefix(&args.dir).unwrap_or(path).display()
        );
    }
    outln!("Try it against the simulator:");
    outln!(
        "  cd {} && sluice simulate --config sim.yaml &",
        args.dir.display()
    );
    outln!("  sluice validate models && sluice pipeline run");
    Ok(Outcome::Ok)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
