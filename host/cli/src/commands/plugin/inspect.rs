//! `qpf plugin inspect FILE.wasm`: what a component is and whether this host runs it.

use crate::term::say;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::commands::Format;
use crate::exit::Exit;

/// Arguments of `qpf plugin inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

/// Loads `file` in a sandbox like `qpf extract`'s.
pub(super) fn inspect(file: &Path) -> Result<qpf_runtime::Inspection> {
    Ok(super::workbench()?.inspect(file)?)
}

/// The `qpf:extractor@x.y.z` world a component targets, from its imports and exports.
fn world(i: &qpf_runtime::Inspection) -> Option<String> {
    i.imports
        .iter()
        .find_map(|n| n.strip_prefix("qpf:extractor/").and_then(|r| r.split_once('@')).map(|(_, v)| v.to_owned()))
}

/// Runs the command: exit 0 when the host can run the component, 1 when it cannot.
///
/// # Errors
/// An unreadable file or one that is not a component.
pub fn run(args: &Args) -> Result<Exit> {
    let i = inspect(&args.file)?;
    let runs = i.refused.is_empty() && i.info.is_ok();
    let why = if !i.refused.is_empty() {
        format!(
            "no: it imports {}, which the sandbox does not grant; {}",
            i.refused.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            qpf_runtime::BUILD_WITHOUT_IMPORTS
        )
    } else if let Err(e) = &i.info {
        format!("no: {e}")
    } else {
        "yes".to_owned()
    };
    let version = world(&i);
    match args.format {
        Format::Json => {
            let info = i.info.as_ref().ok().map(|p| {
                serde_json::json!({ "name": p.name, "version": p.version, "description": p.description, "kinds": p.kinds, "config_schema": p.config_schema })
            });
            let v = serde_json::json!({
                "file": args.file, "size": i.size, "digest": i.digest,
                "world": version.as_ref().map(|v| format!("qpf:extractor/extractor@{v}")),
                "imports": i.imports, "exports": i.exports, "refused": i.refused,
                "info": info, "error": i.info.as_ref().err().map(ToString::to_string), "runs": runs,
            });
            crate::term::out_json(&v, true);
        }
        Format::Human => {
            say!("file      {} ({:.1} MB)", args.file.display(), i.size as f64 / 1e6);
            say!("digest    {}", i.digest);
            match &version {
                Some(v) => say!("world     qpf:extractor/extractor@{v}"),
                None => say!("world     not qpf:extractor (it imports nothing from qpf:extractor)"),
            }
            say!("imports   {}", i.imports.join(", "));
            say!("exports   {}", i.exports.join(", "));
            if let Ok(p) = &i.info {
                say!("plugin    {} {}: {}", p.name, p.version, p.description);
                say!("kinds     {}", if p.kinds.is_empty() { "any".to_owned() } else { p.kinds.join(", ") });
                say!(
                    "config    {}",
                    if p.config_schema.is_empty() { "any (no schema)" } else { "checked against its JSON Schema" }
                );
            }
            say!("runs here {why}");
        }
    }
    Ok(if runs { Exit::Success } else { Exit::Failure })
}
