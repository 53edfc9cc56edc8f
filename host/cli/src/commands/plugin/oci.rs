//! `qpf plugin push DIR|FILE REF` and `qpf plugin pull REF`: plugins through OCI registries, and
//! the fetcher that brings a project's `oci:` plugins into the user's plugin store.
//!
//! Credentials come from `QPF_OCI_USERNAME` and `QPF_OCI_PASSWORD` and are sent only to the
//! registry named by `QPF_OCI_REGISTRY` (anonymous access everywhere else, and when unset);
//! registries on loopback are spoken to over plain HTTP, others over HTTPS unless listed in
//! `QPF_OCI_PLAIN_HTTP` (comma-separated `host[:port]`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use qpf_engine::plugin_store::{PluginStore, user_plugin_store};

use crate::exit::Exit;
use crate::term::{esay, say};

/// Registry access, shown under `--help`.
pub(super) const ACCESS: &str = "Registry login: QPF_OCI_REGISTRY (host[:port]), QPF_OCI_USERNAME and QPF_OCI_PASSWORD; \
the login is sent to that registry only. Loopback registries and those in QPF_OCI_PLAIN_HTTP \
(comma-separated host[:port]) use plain HTTP, others HTTPS. Pulled plugins are kept in \
QPF_PLUGIN_STORE (default ~/.cache/qpf/plugins). See docs/publishing.md.";

/// Arguments of `qpf plugin push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// A plugin folder (its built `dist/NAME.wasm` is pushed) or a component file.
    source: PathBuf,
    /// Where to: `REGISTRY/REPOSITORY:TAG`, e.g. `ghcr.io/acme/py-models:1.0.0`.
    reference: String,
}

/// Arguments of `qpf plugin pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// What to pull: `REGISTRY/REPOSITORY:TAG` or `REGISTRY/REPOSITORY@sha256:…`.
    reference: String,
    /// The `blake3:` digest the component must have; a different one is refused.
    #[arg(long)]
    digest: Option<String>,
}

/// The registry options from the environment.
fn options() -> qpf_oci::Options {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let credentials = match (var("QPF_OCI_REGISTRY"), var("QPF_OCI_USERNAME"), var("QPF_OCI_PASSWORD")) {
        (Some(registry), Some(username), Some(password)) => Some(qpf_oci::Credentials { registry, username, password }),
        _ => None,
    };
    let plain_http = var("QPF_OCI_PLAIN_HTTP")
        .map(|v| v.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    qpf_oci::Options { credentials, plain_http, ..qpf_oci::Options::default() }
}

/// The most a pushed or pulled component may weigh: the default `max_component_bytes`.
fn max_bytes() -> u64 {
    qpf_runtime::LoadLimits::default().max_component_bytes
}

fn store() -> Result<PluginStore> {
    user_plugin_store().map(PluginStore::new).context("no plugin store: set QPF_PLUGIN_STORE (there is no home folder)")
}

/// Pushes a built plugin: exit 0 and `BLAKE3 REPOSITORY@SHA256` on stdout, the lines to pin it on
/// stderr.
///
/// # Errors
/// An unbuilt or unusable component, or a registry error.
pub fn push(args: &PushArgs) -> Result<Exit> {
    let file = component_file(&args.source)?;
    let bytes = qpf_core::fs::read_regular(&file, max_bytes())
        .with_context(|| format!("cannot read the component `{}`", file.display()))?;
    let inspection = super::inspect::inspect(&file)?;
    if !inspection.refused.is_empty() || inspection.info.is_err() {
        bail!("`{}` is not a plugin this host runs; see `qpf plugin inspect {}`", file.display(), file.display());
    }
    let surface = qpf_oci::Surface { imports: inspection.imports.clone(), exports: inspection.exports.clone() };
    let pushed = qpf_oci::push(&bytes, &surface, &args.reference, &options())?;
    let pinned = format!("{}@{}", pushed.repository, pushed.manifest_digest);
    say!("{}  {pinned}", inspection.digest);
    let name = inspection.info.as_ref().map(|i| i.name.clone()).unwrap_or_default();
    esay!(
        "pushed {}; pin it in qpf.yaml:\n  {name}:\n    oci: {pinned}\n    digest: {}",
        pushed.reference,
        inspection.digest
    );
    Ok(Exit::Success)
}

/// Pulls a plugin into the user's plugin store: `BLAKE3 PATH` on stdout.
///
/// # Errors
/// A registry error, or a component whose digest is not `--digest`.
pub fn pull(args: &PullArgs) -> Result<Exit> {
    let expected = args
        .digest
        .as_deref()
        .map(|d| qpf_core::Digest::parse(d).map_err(|e| anyhow::anyhow!("--digest: {e}")))
        .transpose()?;
    let pulled = qpf_oci::pull(&args.reference, &options(), max_bytes())?;
    let (digest, path) = store()?.put(&pulled.component, expected.as_ref())?;
    say!("{digest}  {}", path.display());
    esay!(
        "pulled {} (manifest {}); pin it in qpf.yaml:\n  NAME:\n    oci: {}\n    digest: {digest}",
        args.reference,
        pulled.manifest_digest,
        args.reference
    );
    Ok(Exit::Success)
}

/// A plugin folder's built component, or the file itself.
fn component_file(source: &Path) -> Result<PathBuf> {
    if source.is_dir() {
        let m = super::manifest(source)?;
        let file = super::default_wasm(source, &m);
        if !file.is_file() {
            bail!("`{}` is not built yet: run `qpf plugin build {}` first", file.display(), source.display());
        }
        return Ok(file);
    }
    Ok(source.to_owned())
}

/// Brings a project's `oci:` plugins from their registries, with the options of the environment.
#[derive(Debug)]
pub struct Fetcher {
    options: qpf_oci::Options,
}

impl Fetcher {
    /// Credentials and plain-HTTP registries from the environment (see the module docs).
    pub fn from_env() -> Fetcher {
        Fetcher { options: options() }
    }
}

impl qpf_engine::plugin_store::PluginFetcher for Fetcher {
    fn fetch(&self, reference: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
        qpf_oci::pull(reference, &self.options, max_bytes).map(|p| p.component).map_err(|e| e.to_string())
    }

    fn tags(&self, repository: &str, max: usize) -> Result<Vec<String>, String> {
        qpf_oci::list_tags(repository, &self.options, max).map_err(|e| e.to_string())
    }
}
