//! `qpf drift`: does the code on disk still match the lock and the current schemas?
//! Exit 0 clean, 2 drift found, 1 error (like `terraform plan -detailed-exitcode`).

use crate::term::{esay, say};
use std::path::{Path, PathBuf};

use anyhow::Result;
use qpf_engine::drift::DriftReport;

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf drift`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Repair: restore modified and missing files (from the cache where it has them, without running
    /// plugins), re-extract stale ones, remove orphans (unless edited by hand); then check again.
    #[arg(long)]
    fix: bool,
    /// Output root, overriding `output` in qpf.yaml.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn print(report: &DriftReport, format: Format) {
    match format {
        Format::Json => crate::term::out_json(report, false),
        Format::Human => {
            for i in &report.items {
                let class = format!("{:?}", i.class).to_lowercase();
                say!("{class:<9} {}  ({}, entry `{}`: {})", i.path, i.schema, i.entry, i.detail);
            }
            if report.is_clean() {
                say!("no drift: {} files match the lock and the schemas ({})", report.checked, report.output);
            } else {
                say!("{} of {} files drifted; `qpf drift --fix` repairs them", report.items.len(), report.checked);
            }
        }
    }
}

/// Runs the command.
///
/// # Errors
/// A missing or invalid project, or an unusable output root.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let engine = crate::commands::load(project)?;
    let report = engine.drift(args.out.as_deref())?;
    if !args.fix || report.is_clean() {
        print(&report, args.format);
        return Ok(if report.is_clean() { Exit::Success } else { Exit::Findings });
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fix = engine.fix_drift(&report, args.out.as_deref(), jobs)?;
    for inv in fix.extract.invocations.iter().filter(|i| i.outcome != qpf_engine::report::Outcome::Ok) {
        if let Some(e) = &inv.error {
            esay!(
                "error: entry `{}`, schema `{}`: {} error: {}",
                inv.entry,
                inv.schema,
                e.kind,
                crate::term::block(&e.message)
            );
        }
    }
    for kept in &fix.kept {
        esay!("warning: orphan {kept}");
    }
    esay!(
        "fixed: {} files restored or re-extracted ({} plugin runs, {} from the cache)",
        fix.extract.summary.files_written,
        fix.extract.summary.misses,
        fix.extract.summary.hits
    );
    let after = fix.after;
    print(&after, args.format);
    Ok(if after.is_clean() { Exit::Success } else { Exit::Findings })
}
