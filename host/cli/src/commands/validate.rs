//! `qpf validate`: load qpf.yaml, the map and every schema, plan, and check every plugin pin and
//! every entry's config against its plugin's config schema ([`qpf_engine::preflight`]), without
//! running an extraction.

use crate::term::{esay, say};
use std::path::Path;

use anyhow::Result;
use qpf_engine::EngineError;

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

/// Runs the command.
///
/// # Errors
/// Only for a missing project (usage error); invalid input is reported and gives exit code 1.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let loaded = crate::commands::load(project).and_then(|engine| {
        let problems = qpf_engine::preflight::check(&engine);
        if problems.is_empty() { Ok(engine) } else { Err(EngineError::Invalid(problems)) }
    });
    match loaded {
        Ok(engine) => {
            let (schemas, entries, invocations) =
                (engine.schemas().len(), engine.project().map.entries.len(), engine.plan().invocations.len());
            match args.format {
                Format::Human => {
                    say!("ok: {schemas} schemas, {entries} entries, {invocations} invocations planned")
                }
                Format::Json => crate::term::out_json(
                    &serde_json::json!({"valid": true, "schemas": schemas, "entries": entries, "invocations": invocations, "errors": []}),
                    false,
                ),
            }
            Ok(Exit::Success)
        }
        Err(EngineError::Invalid(errors)) => {
            match args.format {
                Format::Human => {
                    for e in &errors {
                        esay!("error: {e}");
                    }
                    esay!("{} problem(s) found", errors.len());
                }
                Format::Json => {
                    crate::term::out_json(&serde_json::json!({"valid": false, "errors": errors}), false);
                }
            }
            Ok(Exit::Failure)
        }
        Err(e) => Err(e.into()),
    }
}
