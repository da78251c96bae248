//! `sluice validate`: every `model.yaml` under the paths checked, reported as text, JSON or
//! GitHub workflow annotations.

use std::io::Write;

use super::Outcome;
use crate::cli::ValidateArgs;

pub fn run(args: ValidateArgs) -> anyhow::Result<Outcome> {
    let reports = sluice_registry::validate(&args.paths).map_err(anyhow::Error::msg)?;
    let invalid = reports.iter().filter(|r| !r.errors.is_empty()).count();
    let mut out = crate::output::stdout();
    match args.format.as_str() {
        "json" => {
            let body = serde_json::json!({
                "valid": invalid == 0,
                "files": reports,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
        "github" => {
            for report in &reports {
                for e in &report.errors {
                    let file = report.file.display().to_string();
                    let (line, col) = (e.line.to_string(), e.column.to_string());
                    let command = sluice_core::report::github_command(
                        "error",
                        &[("file", &file), ("line", &line), ("col", &col)],
                        &format!("{}: {}", e.field, e.message),
                    );
                    writeln!(out, "{command}")?;
                }
            }
        }
        _ => {
            for report in &reports {
                for e in &report.errors {
                    let field = if e.field.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", e.field)
                    };
                    writeln!(
                        out,
                        "{}:{}:{}: {field}{}",
                        report.file.display(),
                        e.line,
                        e.column,
                        e.message
                    )?;
                }
            }
            writeln!(
                out,
                "{} file(s) checked: {} valid, {invalid} invalid",
                reports.len(),
                reports.len() - invalid
            )?;
        }
    }
    Ok(if invalid == 0 {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}
