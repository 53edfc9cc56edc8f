//! `qpf impact PATH...`: the schemas, invocations and generated files a change to these files affects.

use crate::term::say;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf impact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Changed files (schemas or fragments they import), relative to the current folder.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

/// Runs the command.
///
/// # Errors
/// A missing or invalid project, or a path outside it.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let engine = crate::commands::load(project)?;
    let root = std::fs::canonicalize(project).with_context(|| format!("cannot open `{}`", project.display()))?;
    let mut rel = Vec::new();
    for p in &args.paths {
        let abs = std::fs::canonicalize(p).with_context(|| format!("cannot open `{}`", p.display()))?;
        rel.push(
            abs.strip_prefix(&root).with_context(|| format!("`{}` is not inside the project", p.display()))?.to_owned(),
        );
    }
    let impact = engine.impact(&rel);
    match args.format {
        Format::Json => crate::term::out_json(&impact, false),
        Format::Human => {
            for s in &impact.schemas {
                say!("schema      {s}");
            }
            for (e, s) in &impact.invocations {
                say!("invocation  {e} × {s}");
            }
            for f in &impact.files {
                say!("file        {f}");
            }
            say!(
                "{} schemas, {} invocations, {} generated files affected",
                impact.schemas.len(),
                impact.invocations.len(),
                impact.files.len()
            );
        }
    }
    Ok(Exit::Success)
}
