//! One invocation, start to end: cache lookup (replaying a verified hit under today's output
//! rules), the plugin loaded on first use, its kinds and config checked, the sandboxed call on a
//! miss, the output checks (paths, counts, bytes, clashes), and the cache store. What it found is a
//! [`Worked`]; the commit phase turns it into the report row, the audit record and the lock entries.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use qpf_runtime::{Compiler, Limits, LoadError, Plugin, Runtime, RuntimeOptions};
use qpf_schema::kinds::JsonSchema;

use crate::Engine;
use crate::cache::{InvocationCache, Manifest};
use crate::plan::PlannedInvocation;
use crate::project::Project;
use crate::report::{ErrorReport, FailureKind};
use crate::writer::{OutputRoot, digest_of};

/// A file an invocation produced.
pub(crate) struct ProducedFile {
    /// Path under the output root.
    pub(crate) rel: String,
    pub(crate) digest: String,
    /// `None` when the file on disk already holds these bytes (or, for a scaffold, when the file
    /// is on disk at all).
    pub(crate) contents: Option<Vec<u8>>,
    /// Who owns it once written.
    pub(crate) mode: qpf_runtime::FileMode,
}

/// What the worker phase found for one invocation.
pub(crate) struct Worked {
    pub(crate) hit: bool,
    pub(crate) duration_us: u64,
    pub(crate) fuel: u64,
    pub(crate) plugin_version: Option<String>,
    pub(crate) diagnostics: Vec<qpf_runtime::Diagnostic>,
    pub(crate) result: Result<Vec<ProducedFile>, ErrorReport>,
    pub(crate) warnings: Vec<String>,
    /// What the plugin asked to spawn (from the response, or replayed from the cache).
    pub(crate) spawns: Vec<qpf_runtime::SpawnRequest>,
    /// Spawned invocations and their results, depth first, in request order.
    pub(crate) children: Vec<(PlannedInvocation, Worked)>,
}

impl Worked {
    pub(crate) fn failed(kind: FailureKind, message: String) -> Worked {
        let mut w = Worked::skipped(message);
        if let Err(e) = &mut w.result {
            e.kind = kind;
        }
        w
    }

    pub(crate) fn skipped(message: String) -> Worked {
        Worked {
            hit: false,
            duration_us: 0,
            fuel: 0,
            plugin_version: None,
            diagnostics: Vec::new(),
            result: Err(error(FailureKind::Skipped, message)),
            warnings: Vec::new(),
            spawns: Vec::new(),
            children: Vec::new(),
        }
    }
}

/// `context.upstream` for an invocation: each needed entry's files (path under the output root,
/// digest, and the text when the entry asks for contents).
pub(crate) fn upstream_context(
    inv: &PlannedInvocation,
    invocations: &[PlannedInvocation],
    results: &[OnceLock<Worked>],
    root: &OutputRoot,
) -> Option<serde_json::Value> {
    if inv.upstream.is_empty() {
        return None;
    }
    let mut upstream = serde_json::Map::new();
    for &u in &inv.upstream {
        let files: Vec<serde_json::Value> = match results[u].get().map(|w| &w.result) {
            Some(Ok(files)) => files
                .iter()
                .map(|f| {
                    let mut item = serde_json::json!({ "path": f.rel, "digest": f.digest });
                    if inv.upstream_contents {
                        // Read back from disk only when its bytes are still the ones the key promises.
                        let bytes =
                            f.contents.clone().or_else(|| root.read(&f.rel)).filter(|b| digest_of(b) == f.digest);
                        item["contents"] = bytes
                            .and_then(|b| String::from_utf8(b).ok())
                            .map_or(serde_json::Value::Null, serde_json::Value::String);
                    }
                    item
                })
                .collect(),
            _ => Vec::new(),
        };
        upstream
            .insert(crate::plan::plain_entry(&invocations[u].entry).to_owned(), serde_json::json!({ "files": files }));
    }
    Some(serde_json::Value::Object(upstream))
}

pub(crate) fn error(kind: FailureKind, message: impl Into<String>) -> ErrorReport {
    ErrorReport { kind, message: message.into() }
}

/// The project's plugins, loaded on first use: a run where everything is a cache hit never
/// creates a wasm engine.
///
/// Each plugin is compiled by one of two runtimes (see [`CompilerChoice`]): with `auto`, a plugin
/// whose Cranelift artifact is in the compiled cache uses it; one that is not compiled yet is
/// compiled by Winch (5–7 times faster to compile) unless the run will call it at least
/// [`TIER_UP_CALLS`] times, where Cranelift's faster code repays its compile time. The choice is
/// made at the plugin's first load, which only a miss causes.
pub(crate) struct Plugins<'a> {
    project: &'a Project,
    options: RuntimeOptions,
    choice: CompilerChoice,
    /// One runtime per compiler, created on first use.
    cranelift: OnceLock<Result<Runtime, qpf_runtime::RuntimeError>>,
    winch: OnceLock<Result<Runtime, qpf_runtime::RuntimeError>>,
    loaded: BTreeMap<&'a str, OnceLock<Result<Loaded, String>>>,
    config_schemas: BTreeMap<&'a str, OnceLock<Result<Option<JsonSchema>, crate::plugin_config::ConfigError>>>,
    /// Run no plugin: a miss fails with [`FailureKind::NotCached`] (`--require-hits`).
    pub(crate) require_hits: bool,
    /// The cache keys of each plugin's invocations in this run, and where to look them up.
    planned: BTreeMap<&'a str, Vec<&'a str>>,
    lookup: Option<crate::cache::LocalCache>,
}

/// A plugin loaded, and the compiler that compiled it.
type Loaded = (Compiler, Plugin);

/// Which compiler turns plugins into native code ([`crate::Settings::compiler`]; the CLI reads
/// `QPF_COMPILER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompilerChoice {
    /// Cranelift's artifact when it is cached; else Winch for a plugin this run calls fewer than
    /// [`TIER_UP_CALLS`] times, Cranelift otherwise.
    #[default]
    Auto,
    /// Always Cranelift.
    Cranelift,
    /// Always Winch.
    Winch,
}

impl std::str::FromStr for CompilerChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(CompilerChoice::Auto),
            "cranelift" => Ok(CompilerChoice::Cranelift),
            "winch" => Ok(CompilerChoice::Winch),
            other => {
                Err(format!("`{}` is not a compiler: use auto, cranelift or winch", qpf_core::text::escape(other)))
            }
        }
    }
}

/// The number of calls of a plugin in one run from which `auto` compiles it with Cranelift rather
/// than Winch. Measured on the example's plugins (docs/benchmarks.md): Cranelift takes 4–6 s more
/// than Winch to compile a Python or JavaScript plugin and 0.5 s more for a Rust one, and saves at
/// most 1–2 ms a call; below a thousand calls Winch finishes first.
pub const TIER_UP_CALLS: usize = 1000;

impl<'a> Plugins<'a> {
    pub(crate) fn new(engine: &'a Engine, jobs: usize) -> Self {
        let project = engine.project();
        let options = RuntimeOptions {
            // The user's compiled cache, shared by every project (artifacts are keyed by digest and
            // engine, and authenticated on load).
            compiled_cache: Some(engine.compiled_cache()),
            load_limits: project.file.load_limits.clone(),
            max_memory_bytes: project.file.limits.memory_bytes,
            max_concurrency: u32::try_from(jobs).unwrap_or(u32::MAX),
            pooling: true,
            yield_every: engine.yield_every(),
            compiler: Compiler::Cranelift,
        };
        // A slot for every declared plugin (each is loaded on first use only): spawn targets and
        // the plugin of an entry that selects no schema are declared without being in the plan.
        let names = || project.file.plugins.keys().map(String::as_str);
        Plugins {
            project,
            options,
            choice: engine.compiler_choice(),
            cranelift: OnceLock::new(),
            winch: OnceLock::new(),
            loaded: names().map(|n| (n, OnceLock::new())).collect(),
            config_schemas: names().map(|n| (n, OnceLock::new())).collect(),
            require_hits: false,
            planned: BTreeMap::new(),
            lookup: None,
        }
    }

    fn runtime(&self, compiler: Compiler) -> Result<&Runtime, String> {
        let slot = match compiler {
            Compiler::Cranelift => &self.cranelift,
            Compiler::Winch => &self.winch,
        };
        slot.get_or_init(|| Runtime::new(&RuntimeOptions { compiler, ..self.options.clone() }))
            .as_ref()
            .map_err(ToString::to_string)
    }

    /// Tells `auto` which invocations of each plugin this run plans (their cache keys) and the
    /// local cache to look them up in (`None`: every one runs, `--no-cache`).
    pub(crate) fn planned_calls(
        &mut self,
        keys: BTreeMap<&'a str, Vec<&'a str>>,
        cache: Option<crate::cache::LocalCache>,
    ) {
        self.planned = keys;
        self.lookup = cache;
    }

    /// How many times this run will call a plugin: its planned invocations that are not in the
    /// local cache (counted only when they could reach [`TIER_UP_CALLS`]).
    fn calls(&self, name: &str) -> usize {
        let keys = self.planned.get(name).map_or(&[][..], Vec::as_slice);
        match &self.lookup {
            Some(cache) if keys.len() >= TIER_UP_CALLS => keys.iter().filter(|k| !cache.contains(k)).count(),
            _ => keys.len(),
        }
    }

    /// The compiler of a plugin, chosen at its first load (the only time this is asked).
    fn tier(&self, name: &str) -> Compiler {
        match self.choice {
            CompilerChoice::Cranelift => Compiler::Cranelift,
            CompilerChoice::Winch => Compiler::Winch,
            CompilerChoice::Auto => {
                let digest = self.project.file.plugins.get(name).map(|d| d.digest.as_str()).unwrap_or_default();
                let compiled = self.runtime(Compiler::Cranelift).is_ok_and(|r| r.has_compiled(digest));
                if compiled || self.calls(name) >= TIER_UP_CALLS { Compiler::Cranelift } else { Compiler::Winch }
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Result<(&Runtime, &Plugin), String> {
        let slot = self.loaded.get(name).ok_or_else(|| format!("plugin `{name}` is not declared"))?;
        let (compiler, plugin) = slot
            .get_or_init(|| {
                let decl = &self.project.file.plugins[name];
                let load = |compiler: Compiler| -> Result<Result<Plugin, LoadError>, String> {
                    let _span = tracing::info_span!("load", plugin = name, compiler = compiler.name()).entered();
                    let runtime = self.runtime(compiler)?;
                    Ok(runtime.load(&self.project.root.join(&decl.path), Some(&decl.digest), &self.project.file.limits))
                };
                let compiler = self.tier(name);
                match load(compiler)? {
                    Ok(plugin) => Ok((compiler, plugin)),
                    // Winch does not compile everything Cranelift does on every platform: such a
                    // plugin is compiled by Cranelift instead (every other load error stands).
                    Err(LoadError::Compile { message, .. }) if compiler == Compiler::Winch => {
                        let message: String = qpf_core::text::escape(&message).chars().take(300).collect();
                        tracing::info!(plugin = name, "Winch cannot compile it ({message}); compiling with Cranelift");
                        load(Compiler::Cranelift)?.map(|p| (Compiler::Cranelift, p)).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok((self.runtime(*compiler)?, plugin))
    }
}

impl Plugins<'_> {
    /// The JSON Schema the plugin declares for its config in `info()`, compiled once per plugin.
    pub(crate) fn config_schema(&self, name: &str, plugin: &Plugin) -> Result<Option<&JsonSchema>, String> {
        let Some(slot) = self.config_schemas.get(name) else { return Ok(None) };
        slot.get_or_init(|| crate::plugin_config::schema(plugin))
            .as_ref()
            .map(Option::as_ref)
            .map_err(ToString::to_string)
    }
}

/// One sandboxed call with every check `qpf extract` makes around it: the plugin accepts the
/// schema's kind, the config matches the plugin's config schema, the call stays within the limits,
/// and the files it returns pass the output rules (paths, count, bytes, clashes). No cache, no
/// disk: `qpf extract` adds those around it, `qpf plugin test` and embedders call it as is.
#[derive(Debug)]
pub struct Invoker<'a> {
    /// The runtime the plugin was loaded into.
    pub runtime: &'a Runtime,
    /// The plugin.
    pub plugin: &'a Plugin,
    /// The plugin's name in messages (as declared in qpf.yaml, or from `info()`).
    pub name: &'a str,
    /// The plugin's compiled config schema ([`crate::plugin_config::schema`]), if it declares one.
    pub config_schema: Option<&'a JsonSchema>,
    /// The sandbox limits.
    pub limits: &'a Limits,
}

/// What one checked call produced.
#[derive(Debug)]
pub struct Call {
    /// The checked files (path, digest, bytes) in the plugin's order, or why the call failed.
    pub result: Result<Vec<crate::cache::CheckedFile>, ErrorReport>,
    /// The plugin's diagnostics (with its error's, when it returned one).
    pub diagnostics: Vec<qpf_runtime::Diagnostic>,
    /// The spawns it asked for.
    pub spawns: Vec<qpf_runtime::SpawnRequest>,
    /// Fuel consumed.
    pub fuel: u64,
}

impl Invoker<'_> {
    /// Runs `request` through the checks and the sandbox; `key` is its cache key
    /// ([`crate::cache_key::compute`]), from which the plugin's randomness is seeded.
    pub fn invoke(&self, request: &qpf_runtime::Request, key: &str) -> Call {
        let mut call = Call { result: Ok(Vec::new()), diagnostics: Vec::new(), spawns: Vec::new(), fuel: 0 };
        call.result = self.run(request, key, &mut call);
        call
    }

    fn run(
        &self,
        request: &qpf_runtime::Request,
        key: &str,
        call: &mut Call,
    ) -> Result<Vec<crate::cache::CheckedFile>, ErrorReport> {
        let info = self.plugin.info();
        if !info.kinds.is_empty() && !info.kinds.contains(&request.schema.kind) {
            return Err(error(
                FailureKind::Load,
                format!(
                    "plugin `{}` accepts kinds {:?}, not `{}`; narrow the entry's `select.kind`",
                    self.name,
                    info.kinds,
                    qpf_core::text::escape(&request.schema.kind)
                ),
            ));
        }
        if let Some(schema) = self.config_schema {
            let value: serde_json::Value = serde_json::from_str(&request.config)
                .map_err(|e| error(FailureKind::Config, format!("config is not JSON: {e}")))?;
            crate::plugin_config::check(self.name, schema, &value)
                .map_err(|e| error(FailureKind::Config, e.to_string()))?;
        }
        let invocation = self
            .runtime
            .invoke(self.plugin, request, self.limits, &qpf_runtime::Seed::from_key(key))
            .map_err(|e| error(FailureKind::Sandbox, e.to_string()))?;
        call.fuel = invocation.fuel_consumed;
        for line in &invocation.logs {
            tracing::debug!(target: "qpf::plugin", level = ?line.level, "{}", qpf_core::text::escape(&line.message));
        }
        let response = match invocation.result {
            Ok(r) => r,
            Err(e) => {
                call.diagnostics = e.diagnostics;
                return Err(error(FailureKind::Plugin, e.message));
            }
        };
        call.diagnostics = response.diagnostics;
        call.spawns = response.spawns;
        check_outputs(response.files, self.limits)
    }
}

/// Joins an invocation's `out` folder and a plugin path.
pub(crate) fn join(out_dir: &str, path: &str) -> String {
    format!("{out_dir}/{path}")
}

/// Replays a cache hit: checks which files are already on disk and reads the verified blobs of
/// the others. `None` means the entry cannot be used (missing or corrupted blob): run the plugin.
pub(crate) fn replay(
    inv: &PlannedInvocation,
    manifest: &Manifest,
    cache: &dyn InvocationCache,
    root: &OutputRoot,
    limits: &Limits,
    warnings: &mut Vec<String>,
) -> Option<Vec<ProducedFile>> {
    // A manifest is authenticated, but it is replayed under today's limits and path rules: what a
    // plugin could not return today is not served from yesterday's cache either.
    let paths_ok = manifest.files.len() <= limits.max_files as usize
        && manifest.files.iter().all(|f| crate::output_path::check(&f.path, limits.max_path_len).is_ok())
        && crate::output_path::check_set(manifest.files.iter().map(|f| f.path.as_str())).is_ok();
    if !paths_ok {
        warnings.push(format!(
            "entry `{}`, schema `{}`: the cached result breaks today's output rules; running the plugin instead",
            inv.entry, inv.schema
        ));
        return None;
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let rel = join(&inv.out_dir, &f.path);
        let scaffold_kept = f.mode == qpf_runtime::FileMode::Scaffold && root.is_file(&rel);
        let contents = if scaffold_kept || root.digest_of(&rel).as_deref() == Some(f.digest.as_str()) {
            None
        } else {
            match cache.file(f) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    warnings.push(format!(
                        "entry `{}`, schema `{}`: {e}; running the plugin instead",
                        inv.entry, inv.schema
                    ));
                    return None;
                }
            }
        };
        files.push(ProducedFile { rel, digest: f.digest.clone(), contents, mode: f.mode });
    }
    Some(files)
}

/// Checks a plugin's files against the output limits and paths, and returns them ready to write.
pub(crate) fn check_outputs(
    files: Vec<qpf_runtime::OutputFile>,
    limits: &Limits,
) -> Result<Vec<crate::cache::CheckedFile>, ErrorReport> {
    if files.len() > limits.max_files as usize {
        return Err(error(
            FailureKind::Output,
            format!(
                "the plugin returned {} files, over the limit of {} (`limits.max-files`)",
                files.len(),
                limits.max_files
            ),
        ));
    }
    let total: u64 = files.iter().map(|f| f.contents.len() as u64).sum();
    if total > limits.max_output_bytes {
        return Err(error(
            FailureKind::Output,
            format!(
                "the plugin returned {total} bytes, over the limit of {} (`limits.max-output-bytes`)",
                limits.max_output_bytes
            ),
        ));
    }
    for f in &files {
        crate::output_path::check(&f.path, limits.max_path_len).map_err(|p| {
            let shown = qpf_runtime::budgets::truncate(f.path.clone(), 200);
            error(
                FailureKind::Output,
                format!("the plugin returned the path `{}`, which is not allowed: {p}", qpf_core::text::escape(&shown)),
            )
        })?;
    }
    crate::output_path::check_set(files.iter().map(|f| f.path.as_str()))
        .map_err(|p| error(FailureKind::Output, format!("the plugin's files cannot be written together: {p}")))?;
    Ok(files
        .into_iter()
        .map(|f| crate::cache::CheckedFile {
            digest: digest_of(&f.contents),
            path: f.path,
            bytes: f.contents,
            mode: f.mode,
        })
        .collect())
}

pub(crate) fn work(
    inv: &PlannedInvocation,
    upstream: Option<serde_json::Value>,
    cache: Option<&dyn InvocationCache>,
    plugins: &Plugins<'_>,
    root: &OutputRoot,
    limits: &Limits,
) -> Worked {
    let _span =
        tracing::info_span!("invocation", entry = %inv.entry, schema = %inv.schema, plugin = %inv.plugin).entered();
    let started = Instant::now();
    let mut warnings = Vec::new();
    if let Some(cache) = cache {
        match cache.manifest(&inv.key) {
            Ok(Some(manifest)) => {
                if let Some(files) = replay(inv, &manifest, cache, root, limits, &mut warnings) {
                    tracing::debug!("cache hit");
                    return Worked {
                        hit: true,
                        duration_us: started.elapsed().as_micros() as u64,
                        fuel: manifest.fuel,
                        plugin_version: None,
                        diagnostics: manifest.diagnostics,
                        result: Ok(files),
                        warnings,
                        spawns: manifest.spawns,
                        children: Vec::new(),
                    };
                }
            }
            Ok(None) => {}
            Err(e) => warnings.push(format!("entry `{}`, schema `{}`: {e}", inv.entry, inv.schema)),
        }
    }
    let mut worked = Worked {
        hit: false,
        duration_us: 0,
        fuel: 0,
        plugin_version: None,
        diagnostics: Vec::new(),
        result: Ok(Vec::new()),
        warnings,
        spawns: Vec::new(),
        children: Vec::new(),
    };
    worked.result = run_plugin(inv, upstream, cache, plugins, limits, &mut worked);
    worked.duration_us = started.elapsed().as_micros() as u64;
    worked
}

pub(crate) fn run_plugin(
    inv: &PlannedInvocation,
    upstream: Option<serde_json::Value>,
    cache: Option<&dyn InvocationCache>,
    plugins: &Plugins<'_>,
    limits: &Limits,
    worked: &mut Worked,
) -> Result<Vec<ProducedFile>, ErrorReport> {
    if plugins.require_hits {
        return Err(error(
            FailureKind::NotCached,
            "not in the local or the remote cache, and --require-hits runs no plugin",
        ));
    }
    let (runtime, plugin) = plugins.get(&inv.plugin).map_err(|e| error(FailureKind::Load, e))?;
    worked.plugin_version = Some(plugin.info().version.clone());
    let config_schema = plugins.config_schema(&inv.plugin, plugin).map_err(|e| error(FailureKind::Config, e))?;
    // The upstream outputs are a function of the upstream keys, which are already in the key.
    let request = match upstream {
        None => std::borrow::Cow::Borrowed(&inv.request),
        Some(upstream) => {
            let mut context: serde_json::Value = serde_json::from_str(&inv.request.context).unwrap_or_default();
            context["upstream"] = upstream;
            let mut request = inv.request.clone();
            request.context = crate::canonical::to_string(&context);
            std::borrow::Cow::Owned(request)
        }
    };
    let call = Invoker { runtime, plugin, name: &inv.plugin, config_schema, limits }.invoke(&request, &inv.key);
    worked.fuel = call.fuel;
    worked.diagnostics = call.diagnostics;
    worked.spawns = call.spawns;
    let checked = call.result?;
    if inv.validator && !checked.is_empty() {
        let mut paths: Vec<String> =
            checked.iter().take(3).map(|f| format!("`{}`", qpf_core::text::escape(&f.path))).collect();
        if checked.len() > 3 {
            paths.push(format!("and {} more", checked.len() - 3));
        }
        return Err(error(
            FailureKind::Output,
            format!(
                "plugin `{}` is a validator of kind `{}`: it must return diagnostics only, and it returned {} file{} ({})",
                inv.plugin,
                inv.request.schema.kind,
                checked.len(),
                if checked.len() == 1 { "" } else { "s" },
                paths.join(", ")
            ),
        ));
    }
    if inv.validator && !worked.spawns.is_empty() {
        let n = worked.spawns.len();
        worked.spawns.clear();
        return Err(error(
            FailureKind::Spawn,
            format!("plugin `{}` is a validator: it may not ask for spawns, and it asked for {n}", inv.plugin),
        ));
    }
    if let Some(cache) = cache {
        let manifest =
            Manifest::of_files(&inv.key, &checked, worked.diagnostics.clone(), worked.fuel, worked.spawns.clone());
        if let Err(e) = cache.put_files(&manifest, &checked) {
            worked.warnings.push(format!("entry `{}`, schema `{}`: {e}", inv.entry, inv.schema));
        }
    }
    Ok(checked
        .into_iter()
        .map(|f| ProducedFile {
            rel: join(&inv.out_dir, &f.path),
            digest: f.digest,
            contents: Some(f.bytes),
            mode: f.mode,
        })
        .collect())
}
