//! A plugin on its own, outside any project: what `qpf plugin inspect|build|test` drive. One
//! invocation at a time, with the default sandbox limits and the user's compiled-component cache;
//! every call goes through the same [`Invoker`] as `qpf extract`, so a case passes here only if the
//! entry would pass in a project (kinds, config schema, sandbox limits, output rules).

use std::path::{Path, PathBuf};

use qpf_runtime::{Inspection, Limits, LoadError, Plugin, Request, Runtime, RuntimeError, RuntimeOptions};
use qpf_schema::kinds::JsonSchema;

use crate::Invoker;
use crate::invoker::Call;
use crate::plugin_config::ConfigError;

/// The user's compiled-component cache, shared by `qpf plugin build|test`, `qpf extract` and every
/// project: `QPF_COMPILED_CACHE` when set, else `$XDG_CACHE_HOME/qpf/compiled`, else
/// `~/.cache/qpf/compiled` (`None` without a home folder). Artifacts are keyed by the component's
/// digest and the engine, and authenticated on load with the user's secret
/// ([`crate::secret::user_secret`]), so sharing them between projects is safe.
pub fn user_compiled_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QPF_COMPILED_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    user_cache_dir().map(|c| c.join("qpf/compiled"))
}

/// The size cap of the user's compiled-component cache: `QPF_COMPILED_CACHE_MAX` (`500M`,
/// `4GiB`, bytes) when set and valid, else [`qpf_runtime::DEFAULT_COMPILED_CACHE_MAX`] (2 GiB). An
/// invalid value is a warning, not an error: the cache is an optimisation.
pub fn user_compiled_cache_max() -> u64 {
    match std::env::var("QPF_COMPILED_CACHE_MAX") {
        Ok(text) if !text.trim().is_empty() => crate::cache_admin::parse_size(text.trim()).unwrap_or_else(|e| {
            tracing::warn!("QPF_COMPILED_CACHE_MAX: {e}; using {} bytes", qpf_runtime::DEFAULT_COMPILED_CACHE_MAX);
            qpf_runtime::DEFAULT_COMPILED_CACHE_MAX
        }),
        _ => qpf_runtime::DEFAULT_COMPILED_CACHE_MAX,
    }
}

/// The compiler choice of runs whose [`crate::Settings::compiler`] is unset: `QPF_COMPILER`
/// (`auto`, `cranelift`, `winch`) when set, else `auto`. An invalid value is a warning, and `auto`.
pub fn user_compiler() -> crate::CompilerChoice {
    match std::env::var("QPF_COMPILER") {
        Ok(text) if !text.trim().is_empty() => text.parse().unwrap_or_else(|e| {
            tracing::warn!("QPF_COMPILER: {e}; using auto");
            crate::CompilerChoice::Auto
        }),
        _ => crate::CompilerChoice::Auto,
    }
}

/// Whether `qpf extract` keeps and replays a run snapshot ([`crate::snapshot`]): `QPF_RUN_SNAPSHOT`
/// `on` (the default) or `off` (every run loads the project and looks at every cache entry). An
/// invalid value is a warning, and `on`.
pub fn user_run_snapshot() -> bool {
    match std::env::var("QPF_RUN_SNAPSHOT") {
        Ok(text) => match text.trim() {
            "" | "on" => true,
            "off" => false,
            other => {
                tracing::warn!("QPF_RUN_SNAPSHOT: `{}` is not on or off; using on", qpf_core::text::escape(other));
                true
            }
        },
        Err(_) => true,
    }
}

/// The user's cache base folder: `$XDG_CACHE_HOME`, else `~/.cache` (`None` without a home folder).
pub(crate) fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
}

/// Why a component could not be made ready for cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StandaloneError {
    /// The component does not load (see [`LoadError`]).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Its config schema is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A runtime for plugins on their own.
#[derive(Debug)]
pub struct Workbench {
    runtime: Runtime,
    limits: Limits,
}

impl Workbench {
    /// A runtime with the default limits and the compiled cache at `compiled_cache` (none: compile
    /// every time). A workbench runs a few cases, so it compiles with Winch unless `QPF_COMPILER`
    /// says `cranelift` (see [`user_compiler`]).
    ///
    /// # Errors
    /// When the wasm engine cannot be created.
    pub fn new(compiled_cache: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let limits = Limits::default();
        let runtime = Runtime::new(&RuntimeOptions {
            compiled_cache: compiled_cache.map(|dir| qpf_runtime::CompiledCacheOptions {
                dir,
                secret: crate::secret::user_secret(),
                max_bytes: user_compiled_cache_max(),
            }),
            load_limits: qpf_runtime::LoadLimits::default(),
            max_memory_bytes: limits.memory_bytes,
            max_concurrency: 1,
            pooling: false,
            yield_every: None,
            compiler: match user_compiler() {
                crate::CompilerChoice::Cranelift => qpf_runtime::Compiler::Cranelift,
                crate::CompilerChoice::Auto | crate::CompilerChoice::Winch => qpf_runtime::Compiler::Winch,
            },
        })?;
        Ok(Workbench { runtime, limits })
    }

    /// What a component is and whether this sandbox runs it (see [`Runtime::inspect`]).
    ///
    /// # Errors
    /// When the file cannot be read or is not a component.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        self.runtime.inspect(path)
    }

    /// Loads a component and compiles its config schema, ready to run cases.
    ///
    /// # Errors
    /// See [`StandaloneError`].
    pub fn load(&self, path: &Path) -> Result<Loaded<'_>, StandaloneError> {
        let plugin = self.runtime.load(path, None, &self.limits)?;
        let config_schema = crate::plugin_config::schema(&plugin)?;
        Ok(Loaded { bench: self, plugin, config_schema })
    }
}

/// A component loaded into a [`Workbench`].
#[derive(Debug)]
pub struct Loaded<'a> {
    bench: &'a Workbench,
    plugin: Plugin,
    config_schema: Option<JsonSchema>,
}

impl Loaded<'_> {
    /// The plugin (its info and digest).
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Runs one request with every check of `qpf extract`, without a cache; randomness is seeded
    /// from the request's cache key, as in a project.
    pub fn invoke(&self, request: &Request) -> Call {
        let limits = &self.bench.limits;
        let key = crate::cache_key::compute(&crate::cache_key::KeyInputs {
            abi: qpf_runtime::ABI_VERSION,
            plugin_digest: self.plugin.digest(),
            request,
            limits,
        });
        let invoker = Invoker {
            runtime: &self.bench.runtime,
            plugin: &self.plugin,
            name: self.plugin.name(),
            config_schema: self.config_schema.as_ref(),
            limits,
        };
        invoker.invoke(request, &key)
    }
}
