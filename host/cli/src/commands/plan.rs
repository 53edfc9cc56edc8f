//! `qpf plan`: every invocation the project would run, with its cache state and, for a miss, why;
//! after the checks of `qpf validate` on plugin pins and configs ([`qpf_engine::preflight`]).

use crate::term::say;
use std::path::Path;

use anyhow::Result;
use qpf_engine::Engine;

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

/// Runs the command.
///
/// # Errors
/// A missing or invalid project.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let engine = Engine::load(project)?;
    let problems = qpf_engine::preflight::check(&engine);
    if !problems.is_empty() {
        return Err(qpf_engine::EngineError::Invalid(problems).into());
    }
    let reasons = engine.miss_reasons();
    let plan = &engine.plan().invocations;
    match args.format {
        Format::Human => {
            for (inv, reason) in plan.iter().zip(&reasons) {
                let key = qpf_core::digest::file_stem(&inv.key);
                let state = if reason.is_some() { "miss" } else { "hit" };
                let why = reason.as_deref().map(|r| format!("  ({r})")).unwrap_or_default();
                say!(
                    "{state:<5} {:<16} {:<32} {:<14} -> {}/  key {}{why}",
                    inv.entry,
                    inv.schema,
                    inv.plugin,
                    inv.out_dir,
                    &key[..12.min(key.len())]
                );
            }
            let hits = reasons.iter().filter(|r| r.is_none()).count();
            say!("{} invocations: {} cached, {} to run", plan.len(), hits, plan.len() - hits);
        }
        Format::Json => {
            let items: Vec<_> = plan
                .iter()
                .zip(&reasons)
                .map(|(inv, reason)| {
                    serde_json::json!({
                        "entry": inv.entry, "schema": inv.schema, "schema_path": inv.schema_path,
                        "plugin": inv.plugin, "out": inv.out_dir, "key": inv.key,
                        "cache": if reason.is_some() { "miss" } else { "hit" },
                        "reason": reason,
                    })
                })
                .collect();
            crate::term::out_json(&serde_json::json!({ "invocations": items }), false);
        }
    }
    Ok(Exit::Success)
}
