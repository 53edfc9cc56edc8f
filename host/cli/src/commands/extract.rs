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
    /// A shared cache behind the local one: object storage (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX, file:///DIR) or a Remote Execution API server (grpc://HOST:PORT,
    /// grpcs://HOST, unix:///SOCKET; `?instance=NAME`; credentials in QPF_REMOTE_CACHE_HEADERS).
    /// Overrides `remote-cache` in qpf.yaml.
    #[arg(long, value_name = "URL", env = "QPF_REMOTE_CACHE")]
    remote_cache: Option<String>,
    /// Read the remote cache, never write to it (builds of untrusted changes, e.g. pull requests).
    #[arg(long, env = "QPF_REMOTE_READ_ONLY")]
    remote_read_only: bool,
    /// Run only shard I of N into the remote cache (no outputs, no lock); `auto` reads the CI's
    /// variables (JOB_COMPLETION_INDEX with --shards, CI_NODE_INDEX/CI_NODE_TOTAL, ...).
    #[arg(long, value_name = "I/N|auto")]
    shard: Option<String>,
    /// How many shards the plan was split into: for `--shard auto` with JOB_COMPLETION_INDEX, and
    /// for `--require-hits` to name the shards whose work is missing.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    shards: Option<u32>,
    /// Run no plugin: every invocation must be a cache hit (the gather after sharded runs); a miss
    /// fails with kind `not-cached`.
    #[arg(long, conflicts_with = "shard")]
    require_hits: bool,
    /// Resolve fragments from the registry folders (`registries` in qpf.yaml) to the newest
    /// versions their imports allow, instead of the versions qpf.lock holds.
    #[arg(long)]
    update_registry: bool,
}

/// The shard of `--shard`: `I/N`, or `auto` from the CI's variables.
fn shard(args: &Args) -> Result<Option<qpf_engine::shard::Shard>> {
    use qpf_engine::shard::Shard;
    let Some(text) = &args.shard else { return Ok(None) };
    if text != "auto" {
        return Shard::parse(text).map(Some).map_err(|e| anyhow::anyhow!("--shard: {e}"));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let parsed = if let Some(index) = var("JOB_COMPLETION_INDEX") {
        let count =
            args.shards.context("--shard auto with JOB_COMPLETION_INDEX needs --shards N (the Job's completions)")?;
        Shard::from_completion_index(&index, count)
    } else if let (Some(i), Some(n)) = (var("CI_NODE_INDEX"), var("CI_NODE_TOTAL")) {
        Shard::parse(&format!("{i}/{n}"))
    } else if let (Some(i), Some(n)) = (var("BUILDKITE_PARALLEL_JOB"), var("BUILDKITE_PARALLEL_JOB_COUNT")) {
        n.trim()
            .parse::<u32>()
            .map_err(|_| format!("BUILDKITE_PARALLEL_JOB_COUNT `{n}` is not a number"))
            .and_then(|n| Shard::from_completion_index(&i, n))
    } else if let (Some(i), Some(n)) = (var("CIRCLE_NODE_INDEX"), var("CIRCLE_NODE_TOTAL")) {
        n.trim()
            .parse::<u32>()
            .map_err(|_| format!("CIRCLE_NODE_TOTAL `{n}` is not a number"))
            .and_then(|n| Shard::from_completion_index(&i, n))
    } else {
        anyhow::bail!(
            "--shard auto: none of JOB_COMPLETION_INDEX, CI_NODE_INDEX/CI_NODE_TOTAL, BUILDKITE_PARALLEL_JOB/_COUNT, CIRCLE_NODE_INDEX/_TOTAL is set; give --shard I/N"
        );
    };
    parsed.map(Some).map_err(|e| anyhow::anyhow!("--shard auto: {e}"))
}

/// The remote cache of this run, if any: the flag's URL, else the project's.
fn remote(engine: &qpf_engine::Engine, args: &Args) -> Result<Option<qpf_engine::remote::RemoteSettings>> {
    let declared = engine.project().file.remote_cache.as_ref();
    let (url, origin) = match (&args.remote_cache, declared) {
        (Some(url), _) => (url.clone(), qpf_remote::Origin::User),
        (None, Some(d)) => (d.url.clone(), qpf_remote::Origin::Project),
        (None, None) => return Ok(None),
    };
    let salt =
        std::env::var("QPF_REMOTE_CACHE_SALT").ok().or_else(|| declared.map(|d| d.salt.clone())).unwrap_or_default();
    let headers = std::env::var("QPF_REMOTE_CACHE_HEADERS").ok();
    let store =
        qpf_remote::open(&url, origin, &salt, headers.as_deref()).map_err(|e| anyhow::anyhow!("remote cache: {e}"))?;
    if !args.remote_read_only && !store.accepts_updates() {
        esay!("note: the remote cache `{}` does not accept results: reading only", store.describe());
    }
    let key = match std::env::var("QPF_REMOTE_CACHE_KEY") {
        Ok(hex) => Some(
            blake3::Hash::from_hex(hex.trim())
                .map(|h| *h.as_bytes())
                .map_err(|_| anyhow::anyhow!("QPF_REMOTE_CACHE_KEY must be 64 hex digits (32 bytes)"))?,
        ),
        Err(_) => None,
    };
    Ok(Some(qpf_engine::remote::RemoteSettings {
        read_only: args.remote_read_only || !store.accepts_updates(),
        store,
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
    let jobs =
        args.jobs.map(|j| j as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let shard = shard(args)?;
    let options = ExtractOptions {
        jobs,
        out: args.out.clone(),
        no_cache: args.no_cache,
        fail_fast: args.fail_fast,
        require_hits: args.require_hits,
        shard,
    };
    let settings = qpf_engine::Settings {
        run_snapshot: qpf_engine::standalone::user_run_snapshot(),
        registry_update: args.update_registry,
        ..crate::commands::settings()
    };
    // Nothing the last complete run read or wrote changed: its answer, without loading.
    if args.remote_cache.is_none()
        && let Some(report) = qpf_engine::snapshot::replay(project, &settings, &options)
    {
        return finish(None, &std::mem::ManuallyDrop::new(report), args);
    }
    // Never dropped: the process ends after this command, and freeing a big project's plan and
    // report piece by piece would only delay the exit (about 0.2 s at 20,000 invocations).
    let mut engine = std::mem::ManuallyDrop::new(qpf_engine::Engine::load_with(project, settings)?);
    let remote = remote(&engine, args)?;
    let writable_remote = remote.as_ref().is_some_and(|r| !r.read_only);
    engine.set_remote(remote);
    if shard.is_some() && args.no_cache {
        esay!("error: --shard stores its results in the remote cache, which --no-cache turns off");
        return Ok(Exit::Usage);
    }
    if shard.is_some() && !writable_remote {
        esay!(
            "error: --shard stores its results in the remote cache: give --remote-cache URL (or `remote-cache` in qpf.yaml), without --remote-read-only"
        );
        return Ok(Exit::Usage);
    }
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
    let report = std::mem::ManuallyDrop::new(engine.extract(&options, &on_event)?);
    bar.finish_and_clear();
    finish(Some(&engine), &report, args)
}

/// Writes the report where asked, prints the diagnostics, failures and summary, and says how the
/// run ended.
fn finish(engine: Option<&qpf_engine::Engine>, report: &qpf_engine::report::Report, args: &Args) -> Result<Exit> {
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(report).context("cannot encode the report")?;
        json.push(b'\n');
        std::fs::write(path, json).with_context(|| format!("cannot write the report to `{}`", path.display()))?;
    }
    crate::problems::print_diagnostics(report);
    let s = &report.summary;
    crate::problems::print_failures(report);
    let took = match report.replayed {
        true => "nothing changed since the last run".to_owned(),
        false => format!("{} ms loading", report.load_us / 1000),
    };
    say!(
        "{} invocations ({} cached, {} run, {} failed), {} files written, {} unchanged{}, in {} ms ({took}) -> {}",
        s.invocations,
        s.hits,
        s.misses,
        s.failed,
        s.files_written,
        s.files_unchanged,
        if s.files_removed > 0 { format!(", {} removed (no longer produced)", s.files_removed) } else { String::new() },
        (report.load_us + report.duration_us) / 1000,
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
    if let Some(sh) = &report.shard {
        say!(
            "shard {} of plan {}: {} invocations, {} failed; marker {}",
            sh.marker.shard,
            sh.marker.plan,
            sh.marker.invocations,
            sh.marker.failed,
            if sh.stored { "stored" } else { "NOT stored (see the warnings)" }
        );
    }
    let not_cached = report
        .invocations
        .iter()
        .filter(|i| i.error.as_ref().is_some_and(|e| e.kind == qpf_engine::report::FailureKind::NotCached))
        .count();
    if let (true, Some(engine)) = (not_cached > 0, engine) {
        explain_missing(engine, report, not_cached, args.shards);
    }
    if s.skipped > 0 {
        let errors = || report.invocations.iter().filter_map(|i| i.error.as_ref());
        let stopped = errors().filter(|e| e.stopped_by_fail_fast()).count();
        let gated = errors().filter(|e| e.gated_by_validator()).count();
        if gated > 0 {
            esay!(
                "error: {gated} invocations were not run because a validator found errors in their schema (fix them; `qpf validate` lists them)"
            );
        }
        if s.skipped > stopped + gated {
            esay!("error: {} invocations were not run because an entry they need failed", s.skipped - stopped - gated);
        }
        if stopped > 0 {
            esay!("error: {stopped} invocations were not run: --fail-fast stopped the run after the first failure");
        }
    }
    if report.shard.as_ref().is_some_and(|sh| !sh.stored) {
        esay!("error: the shard's marker was not stored: the gather would not count this shard as done; run it again");
        return Ok(Exit::Failure);
    }
    if s.failed > 0 {
        esay!("error: {} of {} invocations failed; their previous outputs were left in place", s.failed, s.invocations);
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// After `--require-hits`: which shards' work is missing, from their markers.
fn explain_missing(
    engine: &qpf_engine::Engine,
    report: &qpf_engine::report::Report,
    missing: usize,
    shards: Option<u32>,
) {
    let Some(count) = shards else {
        esay!(
            "error: {missing} invocations are not in the cache (give --shards N to name the shards that did not store them)"
        );
        return;
    };
    let plan = engine.plan();
    let of = qpf_engine::shard::partition(plan, count, &qpf_engine::shard::estimate);
    let shard_of: std::collections::HashMap<&str, u32> =
        plan.invocations.iter().zip(&of).map(|(p, s)| (p.key.as_str(), s + 1)).collect();
    let mut by_shard = std::collections::BTreeMap::<u32, usize>::new();
    for row in &report.invocations {
        if row.error.as_ref().is_some_and(|e| e.kind == qpf_engine::report::FailureKind::NotCached) {
            // Spawned invocations are not in the plan; they belong to their parent's shard.
            if let Some(&shard) = shard_of.get(row.key.as_str()) {
                *by_shard.entry(shard).or_default() += 1;
            }
        }
    }
    for (index, n) in by_shard {
        let shard = qpf_engine::shard::Shard { index, count };
        let why = match engine.shard_marker(shard) {
            Ok(None) => "it left no marker for this plan: it did not finish, or it ran another plan".to_owned(),
            Ok(Some(m)) if m.failed > 0 => format!("it finished with {} failed or skipped invocations", m.failed),
            Ok(Some(_)) => {
                "it finished, but its results are not in the remote cache (evicted, or refused: see the warnings)"
                    .to_owned()
            }
            Err(e) => format!("its marker cannot be read: {e}"),
        };
        esay!("error: shard {index}/{count}: {n} invocations missing; {why}");
    }
}
