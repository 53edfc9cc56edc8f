//! `qpf plan`: every invocation the project would run, with its cache state.

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
    let states = engine.cache_states();
    let plan = &engine.plan().invocations;
    match args.format {
        Format::Human => {
            for (inv, hit) in plan.iter().zip(&states) {
                let key = inv.key.strip_prefix("blake3:").unwrap_or(&inv.key);
                println!(
                    "{:<5} {:<16} {:<32} {:<14} -> {}/  key {}",
                    if *hit { "hit" } else { "miss" },
                    inv.entry,
                    inv.schema,
                    inv.plugin,
                    inv.out_dir,
                    &key[..12.min(key.len())]
                );
            }
            let hits = states.iter().filter(|h| **h).count();
            println!("{} invocations: {} cached, {} to run", plan.len(), hits, plan.len() - hits);
        }
        Format::Json => {
            let items: Vec<_> = plan
                .iter()
                .zip(&states)
                .map(|(inv, hit)| {
                    serde_json::json!({
                        "entry": inv.entry, "schema": inv.schema, "schema_path": inv.schema_path,
                        "plugin": inv.plugin, "out": inv.out_dir, "key": inv.key,
                        "cache": if *hit { "hit" } else { "miss" },
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "invocations": items }));
        }
    }
    Ok(Exit::Success)
}
