//! The compiled-plugin cache: Cranelift output kept on disk, keyed by everything that invalidates
//! it (the plugin's digest and the engine's compatibility hash), with a sidecar holding a MAC of
//! the artifact and the plugin's `info()`, so that a hit needs neither compilation nor an
//! instantiation.
//!
//! An artifact is native code that the host maps and runs, so it is trusted only when its sidecar
//! carries a MAC (keyed blake3) made with a secret the project folder does not hold (see
//! `qpf_engine::secret`). A forged, foreign or corrupted artifact fails the check and is
//! recompiled, never loaded; where the folder lies does not matter.
//!
//! Layout: `<dir>/<plugin-hex>-<engine-hash>.cwasm` and `.json` beside it. Writes are atomic
//! (temporary file + rename), so concurrent `qpf` processes never see a partial artifact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginInfo;

/// Version of the sidecar format (2: the artifact is authenticated by a MAC, not a plain digest).
const FORMAT: u32 = 2;

/// Largest sidecar read (it holds `info()`, whose fields are budgeted).
const MAX_SIDECAR_BYTES: u64 = 2 << 20;

#[derive(Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    plugin_digest: String,
    /// Keyed blake3 over the plugin digest, the engine hash, the artifact and the info.
    mac: String,
    info: Option<PluginInfo>,
}

pub(crate) struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
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

use qpf_core::fs::write_atomic;

impl CompiledCache {
    pub(crate) fn new(dir: &Path, secret: &[u8; 32]) -> Self {
        // A key of its own, derived from the user's secret: a MAC made here means nothing elsewhere.
        let key = blake3::derive_key("qpf compiled-plugin cache MAC v1", secret);
        CompiledCache { dir: dir.to_owned(), key }
    }

    fn paths(&self, engine: &Engine, digest: &str) -> (PathBuf, PathBuf) {
        let hex = qpf_core::digest::file_stem(digest);
        let stem = format!("{hex}-{}", engine_hash(engine));
        (self.dir.join(format!("{stem}.cwasm")), self.dir.join(format!("{stem}.json")))
    }

    fn mac(&self, engine: &Engine, digest: &str, artifact: &[u8], info: Option<&PluginInfo>) -> String {
        let info = serde_json::to_vec(&info).unwrap_or_default();
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in [digest.as_bytes(), engine_hash(engine).as_bytes(), artifact, &info] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize().to_hex().to_string()
    }

    /// The cached component and info, when the artifact's MAC verifies.
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<(Component, Option<PluginInfo>)> {
        let (artifact, sidecar) = self.paths(engine, digest);
        let raw = qpf_core::fs::read_regular(&sidecar, MAX_SIDECAR_BYTES).ok()?;
        let sidecar: Sidecar = serde_json::from_slice(&raw).ok()?;
        if sidecar.format != FORMAT || sidecar.plugin_digest != digest {
            return None;
        }
        let bytes = qpf_core::fs::read_regular(&artifact, u64::MAX).ok()?;
        let expected = self.mac(engine, digest, &bytes, sidecar.info.as_ref());
        if !constant_time_eq(expected.as_bytes(), sidecar.mac.as_bytes()) {
            tracing::warn!(path = %artifact.display(), "compiled artifact is not authenticated by this user's cache key; recompiling");
            return None;
        }
        // SAFETY: `Component::deserialize` requires trusted bytes produced by `Component::serialize`
        // with a compatible engine. The bytes are authenticated: their MAC, keyed with a secret
        // that only this user's `qpf` holds, was made by `store` below over `serialize`'s output,
        // the plugin digest and the engine's compatibility hash (also in the file name, and
        // re-checked by wasmtime in the artifact's header).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) }.ok()?;
        Some((component, sidecar.info))
    }

    /// Stores a compiled component with its `info()`: the artifact, then the sidecar with its MAC.
    pub(crate) fn store(&self, engine: &Engine, digest: &str, component: &Component, info: Option<&PluginInfo>) {
        let (artifact, sidecar) = self.paths(engine, digest);
        let result = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}"))).and_then(|bytes| {
            write_atomic(&artifact, &bytes)?;
            let meta = Sidecar {
                format: FORMAT,
                plugin_digest: digest.to_owned(),
                mac: self.mac(engine, digest, &bytes, info),
                info: info.cloned(),
            };
            write_atomic(&sidecar, &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?)
        });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write the compiled-plugin cache: {e}");
        }
    }
}

/// Compares two MACs without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
