//! Loading a component: read it within the load limits, check its digest, compile it (or take it
//! from the compiled cache) within the compile budget, link it against the sandbox and read its
//! `info()` within its budgets; and `inspect`, which reports all of that for `qpf plugin inspect`.

use std::path::Path;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::Runtime;
use crate::plugin::Plugin;
use crate::{Limits, LoadError, LoadLimits, SandboxError};

/// A component read, digest-checked and compiled, not yet linked.
struct Compiled {
    digest: String,
    size: u64,
    component: wasmtime::component::Component,
    cached_info: Option<crate::PluginInfo>,
    /// Compiled now (not from the cache): stored, with its `info()`, once that is known.
    fresh: bool,
}

/// Reads a component file: a regular file within `limits.max-component-bytes`.
fn read_component(path: &Path, limits: &LoadLimits) -> Result<Vec<u8>, LoadError> {
    qpf_core::fs::read_regular(path, limits.max_component_bytes).map_err(|e| match e {
        qpf_core::fs::ReadError::TooLarge { size, limit } => LoadError::TooLarge { path: path.to_owned(), size, limit },
        qpf_core::fs::ReadError::Io(source) => LoadError::Read { path: path.to_owned(), source },
        other => LoadError::Read { path: path.to_owned(), source: std::io::Error::other(other.to_string()) },
    })
}

/// The number of functions defined across every core module of a component (what Cranelift would
/// compile), counted by a parse that allocates nothing per function.
fn count_functions(bytes: &[u8]) -> Result<u64, String> {
    let mut count: u64 = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CodeSectionStart { count: n, .. } = payload.map_err(|e| e.to_string())? {
            count = count.saturating_add(u64::from(n));
        }
    }
    Ok(count)
}

/// Compiles on a helper thread and gives up after `limit_ms` (the thread then finishes in the
/// background; its result is dropped).
fn compile_within(engine: &Engine, bytes: &[u8], limit_ms: u64) -> Result<Result<Component, String>, ()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = engine.clone();
    let bytes = bytes.to_vec();
    let spawned = std::thread::Builder::new().name("qpf-compile".to_owned()).spawn(move || {
        let _ = tx.send(crate::compiled_cache::compile(&engine, &bytes));
    });
    if let Err(e) = spawned {
        return Ok(Err(format!("cannot start a compile thread: {e}")));
    }
    rx.recv_timeout(Duration::from_millis(limit_ms)).map_err(|_| ())
}

/// What [`Runtime::inspect`] found.
#[derive(Debug)]
pub struct Inspection {
    /// `blake3:<hex>` of the file.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Imported interfaces and functions, by name.
    pub imports: Vec<String>,
    /// Exported interfaces and functions, by name.
    pub exports: Vec<String>,
    /// Imports the sandbox does not grant (the component cannot run while there are any).
    pub refused: Vec<String>,
    /// The plugin's `info()`, or why it could not be loaded.
    pub info: Result<crate::PluginInfo, LoadError>,
}

impl Runtime {
    /// What a component is and whether this sandbox can run it, for `qpf plugin inspect`: its
    /// digest and size, its imports and exports, the imports the sandbox refuses, and its `info()`
    /// (or why loading it failed).
    ///
    /// # Errors
    /// A [`LoadError`] when the file cannot be read or is not a valid component.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        let compiled = self.read_and_compile(path, None)?;
        let limits = Limits::default();
        let ty = compiled.component.component_type();
        let imports = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let exports = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let refused = crate::plugin::refused_imports(&compiled.component, &self.engine);
        let (digest, size) = (compiled.digest.clone(), compiled.size);
        let info = self.prepare(path, compiled, &limits).map(|p| p.info().clone());
        Ok(Inspection { digest, size, imports, exports, refused, info })
    }

    /// Loads a plugin: reads it, checks its blake3 digest against `expected` (when given), loads the
    /// compiled artifact from the cache or compiles it (within the runtime's [`LoadLimits`]),
    /// pre-instantiates it and reads its `info()` under `limits` (the project's invocation limits).
    ///
    /// # Errors
    /// See [`LoadError`]: unreadable or oversized file, digest mismatch, invalid component, too
    /// costly to compile, an import the sandbox does not grant, or a failing or ill-formed `info()`.
    pub fn load(&self, path: &Path, expected: Option<&str>, limits: &Limits) -> Result<Plugin, LoadError> {
        let compiled = self.read_and_compile(path, expected)?;
        self.prepare(path, compiled, limits)
    }

    /// Reads a component, checks its digest against `expected` (when given), and loads the compiled
    /// artifact from the cache or compiles it.
    fn read_and_compile(&self, path: &Path, expected: Option<&str>) -> Result<Compiled, LoadError> {
        // A pinned plugin whose artifact is in the compiled cache is not read at all: the
        // artifact's MAC says it was compiled from bytes that hash to the pin, so it is the pinned
        // plugin whatever the file holds now (the engine checks files against their pins before a
        // run, through its stat cache of pins).
        if let Some(expected) = expected
            && let Some((component, cached_info)) = self.cache.as_ref().and_then(|c| c.load(&self.engine, expected))
        {
            tracing::debug!(digest = %expected, "compiled-plugin cache hit for the pin");
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            return Ok(Compiled { digest: expected.to_owned(), size, component, cached_info, fresh: false });
        }
        let bytes = read_component(path, &self.load_limits)?;
        let digest = qpf_core::digest_of(&bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(LoadError::DigestMismatch {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.load(&self.engine, &digest)) {
            tracing::debug!(%digest, "compiled-plugin cache hit");
            let (component, cached_info) = hit;
            return Ok(Compiled { digest, size: bytes.len() as u64, component, cached_info, fresh: false });
        }
        let limit = self.load_limits.max_functions;
        let count = count_functions(&bytes).map_err(|message| LoadError::Compile { path: path.to_owned(), message })?;
        if count > limit {
            return Err(LoadError::TooManyFunctions { path: path.to_owned(), count, limit });
        }
        let component = compile_within(&self.engine, &bytes, self.load_limits.compile_ms)
            .map_err(|()| LoadError::CompileTimeout { path: path.to_owned(), limit_ms: self.load_limits.compile_ms })?
            .map_err(|message| compile_error(path, message))?;
        Ok(Compiled { digest, size: bytes.len() as u64, component, cached_info: None, fresh: true })
    }

    /// Pre-instantiates a compiled component against the sandbox and reads its `info()`.
    fn prepare(&self, path: &Path, compiled: Compiled, limits: &Limits) -> Result<Plugin, LoadError> {
        let Compiled { digest, component, cached_info, fresh, .. } = compiled;
        let versions = crate::plugin::declared_versions(&component, &self.engine);
        crate::plugin::check_versions(&versions)
            .map_err(|message| LoadError::Link { path: path.to_owned(), message })?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link {
            path: path.to_owned(),
            message: crate::plugin::explain_link_error(&component, &self.engine, &e),
        })?;
        let world = crate::plugin::World::bind(&versions, pre)
            .map_err(|message| LoadError::Link { path: path.to_owned(), message })?;
        let info = match cached_info {
            Some(info) => {
                crate::budgets::check_info(&info)
                    .map_err(|problem| LoadError::BadInfo { path: path.to_owned(), problem })?;
                info
            }
            None => {
                let info = self.call_info(&world, &digest, limits).map_err(|e| match e {
                    SandboxError::Memory { .. } | SandboxError::Table { .. } => {
                        LoadError::OverLimits { path: path.to_owned(), message: e.to_string() }
                    }
                    SandboxError::OutputTooLarge { .. } | SandboxError::Transfer { .. } => {
                        LoadError::BadInfo { path: path.to_owned(), problem: crate::budgets::InfoError::Transfer }
                    }
                    e => LoadError::Info { path: path.to_owned(), source: Box::new(e) },
                })?;
                crate::budgets::check_info(&info)
                    .map_err(|problem| LoadError::BadInfo { path: path.to_owned(), problem })?;
                // One write of the artifact and its sidecar, with the info, only for a plugin that
                // loads: the next load needs neither a compilation nor an instantiation.
                if let Some(cache) = self.cache.as_ref().filter(|_| fresh) {
                    cache.store(&self.engine, &digest, &component, Some(&info));
                }
                info
            }
        };
        Ok(Plugin::new(path.to_owned(), digest, world, info))
    }
}

/// Why a compilation failed, in the sandbox's words when a pool limit refused the component.
fn compile_error(path: &Path, message: String) -> LoadError {
    // The pooling allocator checks memories and tables against its slots when it compiles.
    if message.contains("pooling allocator") || message.contains("exceeds the limit") {
        return LoadError::OverLimits {
            path: path.to_owned(),
            message: format!(
                "it declares more memory or table than the sandbox allows (`limits.memory-bytes`, `limits.table-elements`): {}",
                crate::budgets::truncate(message, 512)
            ),
        };
    }
    LoadError::Compile {
        path: path.to_owned(),
        message: crate::budgets::truncate(message, crate::budgets::MAX_MESSAGE_BYTES),
    }
}
