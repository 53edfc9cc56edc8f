//! `qpf cache stats | gc --max-size SIZE | clear`: the project's invocation cache under
//! `.qpf/cache` and the user's compiled-plugin cache (shared by every project), safe while another
//! `qpf` runs (runs hold a shared lock; `gc` and `clear` wait for an exclusive one).

use crate::term::{esay, say};
use std::path::Path;

use anyhow::{Context, Result};
use qpf_engine::cache_admin;
use qpf_engine::project::Project;

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf cache`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Output format.
    #[arg(long, value_enum, default_value = "human", global = true)]
    format: Format,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Count entries and bytes of the project's invocation cache and of the user's
    /// compiled-plugin cache (and show where that one is).
    Stats,
    /// Shrink the invocation cache to SIZE, least recently used first (e.g. `500M`, `2GiB`).
    Gc {
        /// The size to shrink to.
        #[arg(long, value_name = "SIZE", value_parser = cache_admin::parse_size)]
        max_size: u64,
    },
    /// Delete the project's invocation cache and the user's compiled-plugin cache (every
    /// project then compiles its plugins again once).
    Clear,
}

/// Runs the command.
///
/// # Errors
/// A missing project, or I/O errors on the cache.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let project = Project::load(project)?;
    let root = project.state_dir().join("cache");
    let compiled = qpf_engine::standalone::user_compiled_cache().unwrap_or_else(|| root.join("compiled"));
    let waiting = || esay!("waiting for another qpf to finish with the cache...");
    let json = args.format == Format::Json;
    match &args.command {
        Command::Stats => {
            let s = cache_admin::stats(&root, &compiled);
            let store = qpf_engine::plugin_store::user_plugin_store();
            let (pulled, pulled_bytes) = store.as_deref().map(pulled_plugins).unwrap_or_default();
            if json {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["compiled_dir"] = serde_json::json!(compiled.display().to_string());
                v["pulled"] = serde_json::json!(pulled);
                v["pulled_bytes"] = serde_json::json!(pulled_bytes);
                v["plugin_store_dir"] = serde_json::json!(store.map(|d| d.display().to_string()));
                crate::term::out_json(&v, false);
            } else {
                say!("invocations: {} entries, {} blobs, {} bytes", s.manifests, s.blobs, s.invocation_bytes);
                say!("compiled plugins: {}, {} bytes, in {}", s.compiled, s.compiled_bytes, compiled.display());
                if let Some(dir) = &store {
                    say!("pulled plugins: {pulled}, {pulled_bytes} bytes, in {} (kept by `clear`)", dir.display());
                }
            }
        }
        Command::Gc { max_size } => {
            let _lock = cache_admin::lock_exclusive(&root, &waiting).context("cannot lock the cache")?;
            let in_use = qpf_engine::snapshot::keys_in_use(&project.root, &qpf_engine::secret::user_secret());
            let r = cache_admin::gc(&root, *max_size, in_use).context("cannot trim the cache")?;
            if json {
                crate::term::out_json(&r, false);
            } else {
                say!(
                    "removed {} entries and {} blobs ({} bytes); the invocation cache now holds {} bytes",
                    r.manifests_removed,
                    r.blobs_removed,
                    r.bytes_freed,
                    r.bytes_after
                );
            }
        }
        Command::Clear => {
            let _lock = cache_admin::lock_exclusive(&root, &waiting).context("cannot lock the cache")?;
            let freed = cache_admin::clear(&root, &compiled).context("cannot clear the cache")?;
            // The last run's snapshot stands for entries that are gone: the next run runs.
            qpf_engine::snapshot::remove(&project.root).context("cannot remove the run snapshot")?;
            if json {
                crate::term::out_json(&serde_json::json!({"bytes_freed": freed}), false);
            } else {
                say!("cleared {freed} bytes");
            }
        }
    }
    Ok(Exit::Success)
}

/// The components in the plugin store (`blake3/*.wasm`) and their bytes.
fn pulled_plugins(store: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(store.join("blake3")) else { return (0, 0) };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| e.metadata().ok().filter(std::fs::Metadata::is_file))
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}
