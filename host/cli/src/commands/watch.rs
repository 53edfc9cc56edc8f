//! `qpf watch`: re-extract what a saved change affects, at once, and print what changed.
//!
//! It polls the project's inputs (qpf.yaml, the map, kind schemas, every schema file and everything
//! they import, and the plugins) every `--interval` milliseconds; polling needs no platform
//! notification API and sees edits made by any tool. Each round that finds a change reloads the
//! project and runs `extract`: unchanged invocations are cache hits, so the work follows the change.

use crate::term::{esay, say};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use qpf_engine::ExtractOptions;

use crate::exit::Exit;

/// Arguments of `qpf watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often to look for changes, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    interval: u64,
    /// Invocations to run at once [default: the number of available cores].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Stop after this many extraction rounds (for scripts and tests); 0 means never.
    #[arg(long, default_value_t = 0)]
    rounds: u64,
}

/// Modification time and size of every file the project reads.
fn snapshot(project: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut files = vec![project.join("qpf.yaml")];
    if let Ok(p) = qpf_engine::project::Project::load(project) {
        files.push(project.join(&p.file.map));
        files.extend(p.file.kinds.values().map(|k| project.join(k.schema())));
        files.extend(p.file.plugins.values().filter(|d| d.oci.is_none()).map(|d| project.join(&d.path)));
        // Everything under the project that could be a schema or an imported fragment.
        let mut stack = vec![project.to_owned()];
        let out = p.output_root();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                if hidden || path == out {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json") {
                    files.push(path);
                }
            }
        }
    }
    files
        .into_iter()
        .filter_map(|f| {
            let m = std::fs::metadata(&f).ok()?;
            Some((f, (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        })
        .collect()
}

fn round(project: &Path, jobs: usize) {
    let started = std::time::Instant::now();
    let engine = match crate::commands::load(project) {
        Ok(e) => e,
        Err(e) => {
            esay!("error: {e}");
            return;
        }
    };
    match engine.extract(
        &ExtractOptions { jobs, out: None, no_cache: false, fail_fast: false, require_hits: false, shard: None },
        &|_| {},
    ) {
        Ok(report) => {
            for inv in report
                .invocations
                .iter()
                .filter(|i| !i.written.is_empty() || i.outcome != qpf_engine::report::Outcome::Ok)
            {
                for w in &inv.written {
                    say!("written   {w}  ({} × {})", inv.entry, inv.schema);
                }
                if let Some(e) = &inv.error {
                    say!(
                        "error     {} × {}: {} error: {}",
                        inv.entry,
                        inv.schema,
                        e.kind,
                        crate::term::block(&e.message)
                    );
                }
            }
            for r in &report.removed {
                say!("removed   {r}  (no longer produced)");
            }
            let s = &report.summary;
            say!(
                "{} invocations ({} run, {} cached, {} failed), {} files written in {} ms",
                s.invocations,
                s.misses,
                s.hits,
                s.failed,
                s.files_written,
                started.elapsed().as_millis()
            );
        }
        Err(e) => esay!("error: {e}"),
    }
}

/// Runs the command until interrupted (or for `--rounds` rounds).
///
/// # Errors
/// A missing project.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    if !project.join("qpf.yaml").is_file() {
        qpf_engine::project::Project::load(project)?;
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut seen = snapshot(project);
    round(project, jobs);
    let mut rounds = 1;
    esay!("watching {} (Ctrl-C to stop)", project.display());
    loop {
        if args.rounds > 0 && rounds >= args.rounds {
            return Ok(Exit::Success);
        }
        std::thread::sleep(Duration::from_millis(args.interval));
        let now = snapshot(project);
        if now != seen {
            seen = now;
            round(project, jobs);
            rounds += 1;
        }
    }
}
