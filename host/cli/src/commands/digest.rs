//! `qpf digest FILE...`: the `blake3:<hex>` digest to pin a plugin with in qpf.yaml.

use crate::term::say;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::exit::Exit;

/// Arguments of `qpf digest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to hash (usually plugin `.wasm` components).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Runs the command.
///
/// # Errors
/// An unreadable file.
pub fn run(args: &Args) -> Result<Exit> {
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        say!("{}  {}", qpf_core::Digest::of(&bytes), file.display());
    }
    Ok(Exit::Success)
}
