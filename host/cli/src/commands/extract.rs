//! `qpf extract`: run every planned invocation and write the generated files.

use crate::term::{esay, say};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use qpf_engine::{Event, ExtractOptions};

use crate::exit::Exit;

/// Arguments of `qpf extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Invocations to run at once [default: the number of available cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Write a JSON report of every invocation to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Output root, overriding `output` in qpf.yaml.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run every plugin: neither read nor write the invocation cache.
    #[arg(long)]
    no_cache: bool,
    /// Stop starting invocations after the first failure; the rest are reported as skipped.
    #[arg(long, conflicts_with = "keep_going")]
    fail_fast: bool,
    /// Run every invocation whatever fails (the default).
    #[arg(long)]
    keep_going: bool,
    /// A shared cache behind the local one: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX or file:///DIR (instead of `remote-cache` in qpf.yaml).
    #[arg(long, value_name = "URL", env = "QPF_REMOTE_CACHE")]
    remote_cache: Option<String>,
    /// Read the remote cache, never write to it (builds of untrusted changes, e.g. pull requests).
    #[arg(long, env = "QPF_REMOTE_READ_ONLY")]
    remote_read_only: bool,
}

/// The remote cache of this run, if any: the flag's URL, else the project's.
fn remote(engine: &qpf_engine::Engine, args: &Args) -> Result<Option<qpf_engine::remote::RemoteSettings>> {
    let declared = engine.project().file.remote_cache.as_ref();
    let (url, origin) = match (&args.remote_cache, declared) {
        (Some(url), _) => (url.clone(), qpf_remote::Origin::User),
        (None, Some(d)) => (d.url.clone(), qpf_remote::Origin::Project),
        (None, None) => return Ok(None),
    };
    let store = qpf_remote::open(&url, origin).map_err(|e| anyhow::anyhow!("remote cache: {e}"))?;
    let salt =
        std::env::var("QPF_REMOTE_CACHE_SALT").ok().or_else(|| declared.map(|d| d.salt.clone())).unwrap_or_default();
    let key = match std::env::var("QPF_REMOTE_CACHE_KEY") {
        Ok(hex) => Some(
            blake3::Hash::from_hex(hex.trim())
                .map(|h| *h.as_bytes())
                .map_err(|_| anyhow::anyhow!("QPF_REMOTE_CACHE_KEY must be 64 hex digits (32 bytes)"))?,
        ),
        Err(_) => None,
    };
    Ok(Some(qpf_engine::remote::RemoteSettings {
        store: std::sync::Arc::new(store),
        read_only: args.remote_read_only,
        salt,
        key,
    }))
}

/// Runs the command.
///
/// # Errors
/// A missing or invalid project, a plugin that does not match its digest, an unusable output
/// root, or an unwritable report.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let mut engine = crate::commands::load(project)?;
    let remote = remote(&engine, args)?;
    engine.set_remote(remote);
    let jobs =
        args.jobs.map(|j| j as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = ExtractOptions { jobs, out: args.out.clone(), no_cache: args.no_cache, fail_fast: args.fail_fast };
    let bar =
        if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let on_event = |event: Event<'_>| match event {
        Event::Planned { total } => bar.set_length(total as u64),
        Event::Finished { entry, schema, .. } => {
            bar.set_message(crate::term::one(&format!("{entry} {schema}")).into_owned());
            bar.inc(1);
        }
    };
    let report = engine.extract(&options, &on_event)?;
    bar.finish_and_clear();
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        json.push(b'\n');
        std::fs::write(path, json).with_context(|| format!("cannot write the report to `{}`", path.display()))?;
    }
    print_diagnostics(&report);
    let s = &report.summary;
    for inv in report.invocations.iter().filter(|i| i.outcome != qpf_engine::report::Outcome::Ok) {
        if let Some(e) = &inv.error {
            esay!(
                "error: entry `{}`, schema `{}`, plugin `{}`: {} error: {}",
                inv.entry,
                inv.schema,
                inv.plugin,
                e.kind,
                crate::term::block(&e.message)
            );
        }
    }
    say!(
        "{} invocations ({} cached, {} run, {} failed), {} files written, {} unchanged{}, in {} ms -> {}",
        s.invocations,
        s.hits,
        s.misses,
        s.failed,
        s.files_written,
        s.files_unchanged,
        if s.files_removed > 0 { format!(", {} removed (no longer produced)", s.files_removed) } else { String::new() },
        report.duration_us / 1000,
        report.output
    );
    if let Some(r) = &report.remote {
        say!(
            "remote cache {}{}: {} hits, {} misses, {} results uploaded, {} refused, {} errors{}",
            r.store,
            if r.read_only { " (read-only)" } else { "" },
            r.hits,
            r.misses,
            r.uploaded,
            r.rejected,
            r.errors,
            if r.disabled { " (left alone after repeated failures)" } else { "" }
        );
    }
    if s.skipped > 0 {
        if args.fail_fast {
            esay!(
                "error: {} invocations were not run: --fail-fast stopped the run after the first failure, or an entry they need failed",
                s.skipped
            );
        } else {
            esay!("error: {} invocations were not run because an entry they need failed", s.skipped);
        }
    }
    if s.failed > 0 {
        esay!("error: {} of {} invocations failed; their previous outputs were left in place", s.failed, s.invocations);
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// The run's warnings and every plugin diagnostic, with where it points and what it came through.
fn print_diagnostics(report: &qpf_engine::report::Report) {
    for warning in &report.warnings {
        esay!("warning: {}", crate::term::block(warning));
    }
    for inv in &report.invocations {
        for d in &inv.diagnostics {
            let severity = format!("{:?}", d.severity).to_lowercase();
            let at = match (&d.location, &d.pointer) {
                (Some(loc), _) => format!("{loc}: "),
                (None, Some(p)) => format!("`{p}`: "),
                (None, None) => String::new(),
            };
            esay!(
                "{severity}: {}{} (entry `{}`, schema `{}`, plugin `{}`)",
                crate::term::one(&at),
                crate::term::block(&d.message),
                inv.entry,
                inv.schema,
                inv.plugin
            );
            if let Some(excerpt) = &d.excerpt {
                esay!("{excerpt}");
            }
            for via in &d.via {
                esay!("  = note: via {via}");
            }
        }
    }
}
