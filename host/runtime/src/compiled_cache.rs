//! The compiled-plugin cache: Cranelift output kept on disk, keyed by everything that invalidates
//! it (the plugin's digest and the engine's compatibility hash), with a sidecar holding the
//! artifact's digest and the plugin's `info()`, so that a hit needs neither compilation nor an
//! instantiation.
//!
//! Layout: `<dir>/<plugin-hex>-<engine-hash>.cwasm` and `.json` beside it. Writes are atomic
//! (temporary file + rename), so concurrent `qpf` processes never see a partial artifact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginInfo;

/// Version of the sidecar format.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    plugin_digest: String,
    artifact_digest: String,
    info: Option<PluginInfo>,
}

pub(crate) struct CompiledCache {
    dir: PathBuf,
}

/// Compiles a component with Cranelift.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    Component::new(engine, bytes).map_err(|e| format!("{e:#}"))
}

fn engine_hash(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl CompiledCache {
    pub(crate) fn new(dir: &Path) -> Self {
        CompiledCache { dir: dir.to_owned() }
    }

    fn paths(&self, engine: &Engine, digest: &str) -> (PathBuf, PathBuf) {
        let hex = digest.strip_prefix("blake3:").unwrap_or(digest);
        let stem = format!("{hex}-{}", engine_hash(engine));
        (self.dir.join(format!("{stem}.cwasm")), self.dir.join(format!("{stem}.json")))
    }

    fn load(&self, engine: &Engine, digest: &str) -> Option<(Component, Option<PluginInfo>)> {
        let (artifact, sidecar) = self.paths(engine, digest);
        let sidecar: Sidecar = serde_json::from_slice(&std::fs::read(sidecar).ok()?).ok()?;
        if sidecar.format != FORMAT || sidecar.plugin_digest != digest {
            return None;
        }
        let bytes = std::fs::read(&artifact).ok()?;
        if format!("blake3:{}", blake3::hash(&bytes).to_hex()) != sidecar.artifact_digest {
            tracing::warn!(path = %artifact.display(), "compiled artifact does not match its recorded digest; recompiling");
            return None;
        }
        // SAFETY: `Component::deserialize` requires trusted bytes produced by `Component::serialize`
        // with a compatible engine. The bytes come from this cache, were written by `store` below
        // from `serialize`, and match the digest recorded next to them; the file name carries the
        // engine's compatibility hash and wasmtime re-checks it in the artifact's header.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) }.ok()?;
        Some((component, sidecar.info))
    }

    fn store(&self, engine: &Engine, digest: &str, component: &Component, info: Option<&PluginInfo>) {
        let (artifact, sidecar) = self.paths(engine, digest);
        let result = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}"))).and_then(|bytes| {
            write_atomic(&artifact, &bytes)?;
            let meta = Sidecar {
                format: FORMAT,
                plugin_digest: digest.to_owned(),
                artifact_digest: format!("blake3:{}", blake3::hash(&bytes).to_hex()),
                info: info.cloned(),
            };
            write_atomic(&sidecar, &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?)
        });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write the compiled-plugin cache: {e}");
        }
    }

    /// Loads the compiled artifact, or compiles and stores it.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, Option<PluginInfo>), String> {
        if let Some(hit) = self.load(engine, digest) {
            tracing::debug!(%digest, "compiled-plugin cache hit");
            return Ok(hit);
        }
        let component = compile(engine, bytes)?;
        self.store(engine, digest, &component, None);
        Ok((component, None))
    }

    /// Records the plugin's `info()` in the sidecar so that the next load needs no instantiation.
    pub(crate) fn store_info(&self, engine: &Engine, digest: &str, info: &PluginInfo) {
        let (_, sidecar) = self.paths(engine, digest);
        let Ok(raw) = std::fs::read(&sidecar) else { return };
        let Ok(mut meta) = serde_json::from_slice::<Sidecar>(&raw) else { return };
        meta.info = Some(info.clone());
        if let Ok(json) = serde_json::to_vec_pretty(&meta)
            && let Err(e) = write_atomic(&sidecar, &json)
        {
            tracing::warn!(path = %sidecar.display(), "cannot update the compiled-plugin cache: {e}");
        }
    }
}
