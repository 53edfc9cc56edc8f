//! `qpf`, the command-line front end of the engine. `main` parses the command line, runs one
//! command, prints the error chain once, and maps the result to a documented exit code
//! (see [`exit`] and `docs/cli.md`).

mod commands;
mod exit;
mod problems;
mod term;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exit::Exit;
use crate::term::esay;

/// mimalloc instead of glibc's malloc: loading and running tens of thousands of schemas makes
/// millions of small allocations on every core, where glibc's arenas spent a fifth of the run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// QPF turns versioned YAML schemas into source code through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "qpf", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// The project folder (the one holding `qpf.yaml`).
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    project: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every planned invocation and write the generated files.
    Extract(commands::extract::Args),
    /// Re-extract what each saved change affects, and print what changed.
    Watch(commands::watch::Args),
    /// Check qpf.yaml, the extractor map and every schema, and run each kind's validators.
    Validate(commands::validate::Args),
    /// Show every invocation the project would run, with its cache state.
    Plan(commands::plan::Args),
    /// Inspect or trim the local caches: stats, gc --max-size SIZE, clear.
    Cache(commands::cache::Args),
    /// List the schemas, invocations and generated files that a change to some files affects.
    Impact(commands::impact::Args),
    /// Check that the files on disk match the lock and the current schemas (exit 2 on drift).
    Drift(commands::drift::Args),
    /// Print the blake3 digest of files, as qpf.yaml pins plugins.
    Digest(commands::digest::Args),
    /// Schema versioning: diff two versions, check version bumps against git, apply migrations.
    Schema(commands::schema::Args),
    /// Plugin authoring: new, build, inspect, test, push, pull (Rust, Python or JavaScript).
    Plugin(commands::plugin::Args),
    /// Serve sandboxed multi-tenant extraction over HTTP.
    Serve(commands::serve::Args),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QPF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal and never with `NO_COLOR`; plugin text in log lines is escaped by
    // the engine.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage } else { Exit::Success };
            let _ = e.print();
            return code.into();
        }
    };
    init_tracing();
    let result = match &cli.command {
        Command::Extract(args) => commands::extract::run(&cli.project, args),
        Command::Watch(args) => commands::watch::run(&cli.project, args),
        Command::Validate(args) => commands::validate::run(&cli.project, args),
        Command::Plan(args) => commands::plan::run(&cli.project, args),
        Command::Cache(args) => commands::cache::run(&cli.project, args),
        Command::Impact(args) => commands::impact::run(&cli.project, args),
        Command::Drift(args) => commands::drift::run(&cli.project, args),
        Command::Digest(args) => commands::digest::run(args),
        Command::Schema(args) => commands::schema::run(&cli.project, args),
        Command::Plugin(args) => commands::plugin::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            esay!("error: {}", exit::render(&e));
            exit::classify(&e).into()
        }
    }
}
