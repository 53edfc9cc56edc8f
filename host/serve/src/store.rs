//! Plugin stores: each tenant's uploads under `data/tenants/<id>/plugins/<hex>.wasm`, the
//! operator's shared plugins under `data/plugins/<hex>.wasm` (runnable by the tenants that list
//! their digest in `plugins`), and the loaded plugins, shared by digest (the compiled artifacts
//! are too, in `data/compiled`, authenticated with the service's secret).
//!
//! A tenant sees a plugin only if it uploaded it or lists it; anything else answers exactly as a
//! digest nobody uploaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qpf_core::Digest;
use qpf_runtime::{LoadError, Plugin, PluginInfo, Runtime};
use qpf_schema::kinds::JsonSchema;

use crate::tenants::Tenant;

/// A plugin ready to run: loaded, with its compiled config schema.
#[derive(Debug)]
pub struct Ready {
    /// The plugin.
    pub plugin: Plugin,
    /// Its config schema, if it declares one.
    pub config_schema: Option<JsonSchema>,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Over the tenant's `max-stored-bytes`.
    #[error("storing {size} more bytes would put the tenant over its `max-stored-bytes` of {limit}")]
    OverQuota {
        /// The upload's size.
        size: u64,
        /// The quota.
        limit: u64,
    },
    /// Not a component this sandbox runs (world, imports, size, compile budget, `info()`).
    #[error("{0}")]
    Invalid(String),
    /// The store could not be written.
    #[error("cannot store the plugin: {0}")]
    Io(#[from] std::io::Error),
}

/// The plugin stores and the loaded plugins.
#[derive(Debug)]
pub struct Store {
    runtime: Runtime,
    /// The shared compiled-plugin cache (for the engines of `/v1/extract`).
    pub compiled: qpf_runtime::CompiledCacheOptions,
    shared: PathBuf,
    ready: Mutex<HashMap<String, Arc<Ready>>>,
}

/// The file name of a component in a store: its digest's hex digits, `.wasm`.
fn file_name(digest: &Digest) -> String {
    format!("{}.wasm", digest.hex())
}

impl Store {
    /// Stores under `data`, loading with `runtime`.
    pub fn new(runtime: Runtime, data: &Path, compiled: qpf_runtime::CompiledCacheOptions) -> Store {
        Store { runtime, compiled, shared: data.join("plugins"), ready: Mutex::new(HashMap::new()) }
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Where `tenant` may find `digest`: its own store, else the shared store if it lists it.
    pub fn path_for(&self, tenant: &Tenant, digest: &str) -> Option<PathBuf> {
        let name = file_name(&Digest::parse(digest).ok()?);
        let own = tenant.plugin_dir().join(&name);
        if own.is_file() {
            return Some(own);
        }
        let shared = self.shared.join(&name);
        (tenant.config.plugins.iter().any(|p| p == digest) && shared.is_file()).then_some(shared)
    }

    /// The plugin `digest` as `tenant` may run it, loaded on first use (blocking: it may compile).
    ///
    /// # Errors
    /// `Ok(None)` when the tenant may not run it or it does not exist (the same answer); a
    /// [`LoadError`] when a stored component no longer loads.
    pub fn get(&self, tenant: &Tenant, digest: &str) -> Result<Option<Arc<Ready>>, String> {
        let Some(path) = self.path_for(tenant, digest) else { return Ok(None) };
        if let Some(ready) = self.lock().get(digest) {
            return Ok(Some(ready.clone()));
        }
        let ready = Arc::new(self.load(&path, digest, tenant)?);
        Ok(Some(self.lock().entry(digest.to_owned()).or_insert(ready).clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Ready>>> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load(&self, path: &Path, digest: &str, tenant: &Tenant) -> Result<Ready, String> {
        let plugin = self.runtime.load(path, Some(digest), &tenant.limits).map_err(|e| clean(&e))?;
        let config_schema = qpf_engine::plugin_config::schema(&plugin).map_err(|e| e.to_string())?;
        Ok(Ready { plugin, config_schema })
    }

    /// Validates and stores an upload of `tenant` (blocking: it compiles the component).
    ///
    /// # Errors
    /// See [`UploadError`].
    pub fn upload(&self, tenant: &Tenant, bytes: &[u8]) -> Result<(String, PluginInfo), UploadError> {
        let parsed = Digest::of(bytes);
        let digest = parsed.to_string();
        let dir = tenant.plugin_dir();
        let target = dir.join(file_name(&parsed));
        if !target.is_file() {
            let stored = stored_bytes(&dir);
            let limit = tenant.config.quotas.max_stored_bytes;
            if stored.saturating_add(bytes.len() as u64) > limit {
                return Err(UploadError::OverQuota { size: bytes.len() as u64, limit });
            }
        }
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::Builder::new().prefix(".upload-").suffix(".wasm").tempfile_in(&dir)?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        let ready = self.load(tmp.path(), &digest, tenant).map_err(UploadError::Invalid)?;
        let info = ready.plugin.info().clone();
        tmp.persist(&target).map_err(|e| UploadError::Io(e.error))?;
        self.lock().entry(digest.clone()).or_insert_with(|| Arc::new(ready));
        Ok((digest, info))
    }

    /// Every plugin `tenant` may run: its uploads, then the shared ones it lists, by digest.
    pub fn list(&self, tenant: &Tenant) -> Vec<(String, Option<PluginInfo>)> {
        let mut digests: Vec<String> = std::fs::read_dir(tenant.plugin_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let hex = e.file_name().to_str()?.strip_suffix(".wasm")?.to_owned();
                Digest::parse(&format!("{}{hex}", qpf_core::digest::PREFIX)).ok().map(|d| d.to_string())
            })
            .collect();
        for d in &tenant.config.plugins {
            if self.path_for(tenant, d).is_some() && !digests.contains(d) {
                digests.push(d.clone());
            }
        }
        digests.sort();
        let ready = self.lock();
        digests
            .into_iter()
            .map(|d| {
                let info = ready.get(&d).map(|r| r.plugin.info().clone());
                (d, info)
            })
            .collect()
    }
}

/// A load error without the server's own paths (a client sees its upload, not our folders).
fn clean(e: &LoadError) -> String {
    match e {
        LoadError::Read { .. } => "the component cannot be read".to_owned(),
        _ => e.to_string().replace(&format!("plugin `{}`", e.path().display()), "the component"),
    }
}

fn stored_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".wasm") && !n.starts_with('.')))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
