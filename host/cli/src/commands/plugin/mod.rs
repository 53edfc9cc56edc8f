//! `qpf plugin new|build|inspect|test|push|pull`: writing, building, inspecting, testing and
//! sharing plugins in Rust, Python or JavaScript against the one contract in `wit/`.
//!
//! A plugin folder holds `qpf-plugin.yaml` (`name`, `lang`, optional `entry`), its sources and
//! `tests/cases/`. A scaffold names its SDK by version; each SDK package carries the WIT. Building
//! takes the SDK from the packaged SDKs of a QPF checkout when there are some (`QPF_SDK_DIR`, by
//! default `<QPF_ROOT>/target/sdk`), else from crates.io, PyPI or npm; a plugin that names the SDK
//! by path uses the checkout's `sdk/` and `wit/` (`QPF_ROOT`, by default the checkout this binary
//! was built from). Python and JavaScript also need the toolchains that `./dev tools` installs
//! (`QPF_TOOLS`, by default `<root>/target/qpf-tools`; else `PATH`).

mod build;
mod inspect;
mod new;
pub mod oci;
mod test;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::exit::Exit;

/// Arguments of `qpf plugin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Scaffold a plugin that builds and passes its own test out of the box.
    New(new::Args),
    /// Build a plugin folder into a component with its language's toolchain and print its digest.
    Build(build::Args),
    /// Show a component's world, imports, exports, digest and info(), and whether this host runs it.
    Inspect(inspect::Args),
    /// Run a plugin's golden cases (tests/cases/*): expected files or expected error; QPF_BLESS=1 accepts.
    Test(test::Args),
    /// Push a built plugin to an OCI registry as a Wasm artifact; prints the lines to pin it.
    #[command(after_help = oci::ACCESS)]
    Push(oci::PushArgs),
    /// Pull a plugin from an OCI registry into the user's plugin store (QPF_PLUGIN_STORE).
    #[command(after_help = oci::ACCESS)]
    Pull(oci::PullArgs),
}

/// Runs the command.
///
/// # Errors
/// See each subcommand.
pub fn run(args: &Args) -> Result<Exit> {
    match &args.command {
        Command::New(a) => new::run(a),
        Command::Build(a) => build::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Test(a) => test::run(a),
        Command::Push(a) => oci::push(a),
        Command::Pull(a) => oci::pull(a),
    }
}

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust with `qpf-sdk` (cargo, wasm32-wasip2).
    Rust,
    /// Python with `sdk/python` (componentize-py).
    Python,
    /// JavaScript with `sdk/js` (jco).
    Js,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// `qpf-plugin.yaml`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Plugin name (the component is `dist/<name>.wasm`).
    name: String,
    /// Language.
    lang: Lang,
    /// Entry module: `app` (Python, `app.py`) or `index.js` (JavaScript) by default.
    #[serde(default)]
    entry: Option<String>,
}

const MANIFEST: &str = "qpf-plugin.yaml";

fn manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("`{}` is not a plugin folder: cannot read {MANIFEST}", dir.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The component a plugin folder builds to by default.
fn default_wasm(dir: &Path, m: &Manifest) -> PathBuf {
    dir.join("dist").join(format!("{}.wasm", m.name))
}

/// The workbench of the plugin commands: one invocation at a time, default limits, and the
/// user's compiled-component cache ([`qpf_engine::standalone::user_compiled_cache`]).
fn workbench() -> Result<qpf_engine::standalone::Workbench> {
    qpf_engine::standalone::Workbench::new(qpf_engine::standalone::user_compiled_cache())
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e}"))
}

/// The packaged SDKs: `QPF_SDK_DIR`, by default `<QPF_ROOT>/target/sdk` (where `./dev` puts them).
fn local_sdk_dir() -> Option<PathBuf> {
    match std::env::var_os("QPF_SDK_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => qpf_root().ok().map(|r| r.join("target/sdk")),
    }
}

/// The QPF checkout holding `wit/` and `sdk/`.
fn qpf_root() -> Result<PathBuf> {
    let root = match std::env::var_os("QPF_ROOT") {
        Some(r) => PathBuf::from(r),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let wit = format!("wit/{}/extractor.wit", qpf_runtime::ABI_VERSION);
    if !root.join(&wit).is_file() {
        bail!(
            "`{}` is not a QPF checkout (no {wit}); set QPF_ROOT to the folder holding wit/ and sdk/",
            root.display()
        );
    }
    Ok(root.canonicalize().unwrap_or(root))
}

/// A toolchain program: under `QPF_TOOLS` (or `<root>/target/qpf-tools` in a checkout) at `rel`,
/// else on `PATH`.
fn tool(root: Option<&Path>, rel: &str, program: &str, install: &str) -> Result<PathBuf> {
    let tools = std::env::var_os("QPF_TOOLS").map(PathBuf::from).or_else(|| root.map(|r| r.join("target/qpf-tools")));
    if let Some(local) = tools.map(|t| t.join(rel))
        && local.is_file()
    {
        return Ok(local);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.is_file()))
        .unwrap_or(None);
    on_path.with_context(|| format!("`{program}` is not installed: {install}"))
}
