//! `extract`: the run. Loads and plans the project ([`Engine::load`]), then runs every invocation
//! on a bounded pool of threads ([`Engine::extract`]): cache lookup, sandboxed call on a miss,
//! output checks, cache store; then writes outputs in plan order, records the lock and the audit
//! log, and returns the [`Report`]. A failing invocation never stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use qpf_runtime::{Limits, LoadError, Plugin, Runtime, RuntimeOptions};
use qpf_schema::{SchemaError, SchemaSet};

use crate::audit::{self, AuditOutput, AuditPlugin, AuditRecord};
use crate::cache::{CachedFile, InvocationCache, LocalCache, MANIFEST_FORMAT, Manifest};
use crate::lock::{LOCK_FILE, Lock, LockedFile};
use crate::plan::{Plan, PlannedInvocation};
use crate::project::{Project, ProjectError};
use crate::report::{
    CacheState, DiagnosticReport, ErrorReport, FailureKind, InvocationReport, Outcome, REPORT_FORMAT, Report, Summary,
};
use crate::writer::{OutputRoot, WriteOutcome, digest_of};

/// How to run `extract`.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Invocations run at once (at least 1).
    pub jobs: usize,
    /// Output root overriding `qpf.yaml`'s `output`.
    pub out: Option<PathBuf>,
    /// Neither read nor write the invocation cache.
    pub no_cache: bool,
    /// Stop starting invocations after the first failure (the rest are reported as `skipped`).
    /// The default, keep going, runs every invocation whatever fails.
    pub fail_fast: bool,
}

/// Progress, for front ends.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// The plan is ready.
    Planned {
        /// Number of invocations.
        total: usize,
    },
    /// One invocation finished (before outputs are written).
    Finished {
        /// Entry id.
        entry: &'a str,
        /// Schema id.
        schema: &'a str,
        /// Served from the cache.
        hit: bool,
        /// Succeeded.
        ok: bool,
    },
}

/// A failure that stops the run before or around the invocations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `qpf.yaml` or the map is missing or invalid.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// Schemas or the plan are invalid.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SchemaError>),
    /// A plugin's file is missing or does not match its pinned digest.
    #[error("plugin `{name}` (declared in qpf.yaml): {source}")]
    Plugin {
        /// Plugin name.
        name: String,
        /// Why.
        source: LoadError,
    },
    /// The output root is unusable.
    #[error("output root `{}`: {message}", path.display())]
    Output {
        /// The folder.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Reading or writing the project's state failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A loaded, planned project.
pub struct Engine {
    project: Project,
    schemas: SchemaSet,
    plan: Plan,
    /// The user's secret (see [`crate::secret`]): keys the caches' MACs.
    secret: [u8; 32],
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("project", &self.project.root).finish_non_exhaustive()
    }
}

/// A file an invocation produced.
struct ProducedFile {
    /// Path under the output root.
    rel: String,
    digest: String,
    /// `None` when the file on disk already holds these bytes.
    contents: Option<Vec<u8>>,
}

/// What the worker phase found for one invocation.
struct Worked {
    hit: bool,
    duration_us: u64,
    fuel: u64,
    plugin_version: Option<String>,
    diagnostics: Vec<qpf_runtime::Diagnostic>,
    result: Result<Vec<ProducedFile>, ErrorReport>,
    warnings: Vec<String>,
    /// What the plugin asked to spawn (from the response, or replayed from the cache).
    spawns: Vec<qpf_runtime::SpawnRequest>,
    /// Spawned invocations and their results, depth first, in request order.
    children: Vec<(PlannedInvocation, Worked)>,
}

impl Worked {
    fn failed(kind: FailureKind, message: String) -> Worked {
        let mut w = Worked::skipped(message);
        if let Err(e) = &mut w.result {
            e.kind = kind;
        }
        w
    }

    fn skipped(message: String) -> Worked {
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

/// Runs the invocations a plugin asked for, within the entry's spawn policy: allowed plugins only,
/// bounded depth and count, no cycles (an invocation whose key is already in its chain). Spawned
/// invocations are cached, audited and reported like planned ones; their files go to the spawning
/// invocation's output folder.
struct Spawner<'a, 'p> {
    project: &'a Project,
    policy: &'a crate::project::SpawnPolicy,
    cache: Option<&'a dyn InvocationCache>,
    plugins: &'a Plugins<'p>,
    root: &'a OutputRoot,
    limits: &'a Limits,
    count: u32,
}

impl Spawner<'_, '_> {
    /// Runs every spawn `worked` asked for, depth first and in request order, with an explicit
    /// stack (however deep a chain the policy allows, the host does not recurse). Every request
    /// counts against `spawn.max-count`, refused or not; once the count is spent, the requests
    /// left in a response become one refusal, so the records stay bounded by the policy.
    fn run(&mut self, root: &PlannedInvocation, worked: &Worked) -> Vec<(PlannedInvocation, Worked)> {
        struct Frame {
            parent: PlannedInvocation,
            spawns: Vec<qpf_runtime::SpawnRequest>,
            next: usize,
        }
        let mut out = Vec::new();
        if worked.result.is_err() || worked.spawns.is_empty() {
            return out;
        }
        let mut stack = vec![Frame { parent: root.clone(), spawns: worked.spawns.clone(), next: 0 }];
        let mut chain = vec![identity(root)];
        while let Some(frame) = stack.last_mut() {
            let n = frame.next;
            let Some(request) = frame.spawns.get(n) else {
                stack.pop();
                chain.pop();
                continue;
            };
            frame.next += 1;
            if self.count >= self.policy.max_count {
                let left = frame.spawns.len() - n;
                frame.next = frame.spawns.len();
                let (child, _) = self.plan_child(&frame.parent, request, n, &chain);
                let message = format!(
                    "{left} spawn request(s) refused: `spawn.max-count` ({}) spawned invocations already",
                    self.policy.max_count
                );
                out.push((child, Worked::failed(FailureKind::Spawn, message)));
                continue;
            }
            let (child, refused) = self.plan_child(&frame.parent, request, n, &chain);
            let mut result = match refused {
                Some(message) => Worked::failed(FailureKind::Spawn, message),
                None => work(&child, None, self.cache, self.plugins, self.root, self.limits),
            };
            result.children.clear();
            let grand = std::mem::take(&mut result.spawns);
            let ok = result.result.is_ok();
            let identity = identity(&child);
            out.push((child.clone(), Worked { spawns: grand.clone(), ..result }));
            if ok && !grand.is_empty() {
                chain.push(identity);
                stack.push(Frame { parent: child, spawns: grand, next: 0 });
            }
        }
        out
    }

    /// The spawned invocation, and why it may not run (if so).
    fn plan_child(
        &mut self,
        parent: &PlannedInvocation,
        request: &qpf_runtime::SpawnRequest,
        n: usize,
        chain: &[String],
    ) -> (PlannedInvocation, Option<String>) {
        let parse = |what: &str, text: &str| -> Result<String, String> {
            serde_json::from_str::<serde_json::Value>(text)
                .map(|v| crate::canonical::to_string(&v))
                .map_err(|e| format!("the spawn request's {what} is not JSON: {e}"))
        };
        let (input, config, bad_json) = match (parse("input", &request.input), parse("config", &request.config)) {
            (Ok(i), Ok(c)) => (i, c, None),
            (Err(e), _) | (_, Err(e)) => ("null".to_owned(), "{}".to_owned(), Some(e)),
        };
        // The name is the plugin's to choose: only a declared name goes into ids and records.
        let declared = self.project.file.plugins.contains_key(&request.plugin);
        let name = if declared { request.plugin.clone() } else { "undeclared".to_owned() };
        let digest = self.project.file.plugins.get(&request.plugin).map(|d| d.digest.clone()).unwrap_or_default();
        let mut context: serde_json::Value = serde_json::from_str(&parent.request.context).unwrap_or_default();
        context["spawned_by"] = serde_json::Value::String(parent.key.clone());
        let mut req = parent.request.clone();
        req.entry = format!("{}>{name}#{n}", parent.entry);
        req.input = input;
        req.config = config;
        req.context = crate::canonical::to_string(&context);
        let key = crate::cache_key::compute(&crate::cache_key::KeyInputs {
            abi: qpf_runtime::ABI_VERSION,
            plugin_digest: &digest,
            request: &req,
            limits: self.limits,
        });
        let root_ref = parent.root.clone().unwrap_or_else(|| (parent.entry.clone(), parent.key.clone()));
        let child = PlannedInvocation {
            entry: req.entry.clone(),
            plugin: name,
            plugin_digest: digest,
            schema_path: parent.schema_path.clone(),
            out_dir: parent.out_dir.clone(),
            input_pointer: String::new(),
            upstream: Vec::new(),
            upstream_contents: false,
            root: Some(root_ref),
            depth: parent.depth + 1,
            request: req,
            schema: parent.schema.clone(),
            key,
        };
        self.count = self.count.saturating_add(1);
        let refused = if let Some(e) = bad_json {
            Some(e)
        } else if !declared || !self.policy.plugins.contains(&request.plugin) {
            Some(format!(
                "entry `{}` may not spawn plugin `{}`; allow it under `spawn.plugins` in the extractor map",
                root_entry(parent),
                qpf_core::text::escape(&qpf_runtime::budgets::truncate(request.plugin.clone(), 64))
            ))
        } else if child.depth > self.policy.max_depth {
            Some(format!("spawns nest deeper than `spawn.max-depth` ({})", self.policy.max_depth))
        } else if self.count > self.policy.max_count {
            Some(format!("more than `spawn.max-count` ({}) spawned invocations", self.policy.max_count))
        } else if chain.contains(&identity(&child)) {
            Some(format!(
                "spawn cycle: `{}` with this input and config is already in its own spawn chain",
                qpf_core::text::escape(&request.plugin)
            ))
        } else {
            None
        };
        (child, refused)
    }
}

/// What makes two invocations in a spawn chain the same: plugin, input and config.
fn identity(inv: &PlannedInvocation) -> String {
    format!("{}\0{}\0{}", inv.plugin, inv.request.input, inv.request.config)
}

fn root_entry(inv: &PlannedInvocation) -> &str {
    inv.root.as_ref().map_or(inv.entry.as_str(), |(e, _)| e.as_str())
}

/// `context.upstream` for an invocation: each needed entry's files (path under the output root,
/// digest, and the text when the entry asks for contents).
fn upstream_context(
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
        upstream.insert(invocations[u].entry.clone(), serde_json::json!({ "files": files }));
    }
    Some(serde_json::Value::Object(upstream))
}

fn error(kind: FailureKind, message: impl Into<String>) -> ErrorReport {
    ErrorReport { kind, message: message.into() }
}

/// The project's plugins, loaded on first use: a run where everything is a cache hit never
/// creates a wasm engine.
struct Plugins<'a> {
    project: &'a Project,
    options: RuntimeOptions,
    runtime: OnceLock<Result<Runtime, String>>,
    loaded: BTreeMap<&'a str, OnceLock<Result<Plugin, String>>>,
    config_schemas: BTreeMap<&'a str, OnceLock<Result<Option<qpf_schema::kinds::JsonSchema>, String>>>,
}

impl<'a> Plugins<'a> {
    fn new(engine: &'a Engine, jobs: usize) -> Self {
        let (project, plan) = (&engine.project, &engine.plan);
        let options = RuntimeOptions {
            // `QPF_COMPILED_CACHE` shares compiled plugins between projects (they are keyed by
            // digest and engine, and authenticated on load); by default each project keeps its own.
            compiled_cache: Some(qpf_runtime::CompiledCacheOptions {
                dir: engine.compiled_cache_dir(),
                secret: engine.secret,
            }),
            load_limits: project.file.load_limits.clone(),
            max_memory_bytes: project.file.limits.memory_bytes,
            max_concurrency: u32::try_from(jobs).unwrap_or(u32::MAX),
            pooling: true,
        };
        let loaded = plan.plugins().into_keys().map(|name| (name, OnceLock::new())).collect();
        let config_schemas = plan.plugins().into_keys().map(|name| (name, OnceLock::new())).collect();
        Plugins { project, options, runtime: OnceLock::new(), loaded, config_schemas }
    }

    fn runtime(&self) -> Result<&Runtime, String> {
        self.runtime.get_or_init(|| Runtime::new(&self.options)).as_ref().map_err(Clone::clone)
    }

    fn get(&self, name: &str) -> Result<(&Runtime, &Plugin), String> {
        let runtime = self.runtime()?;
        let slot = self.loaded.get(name).ok_or_else(|| format!("plugin `{name}` is not declared"))?;
        let plugin = slot
            .get_or_init(|| {
                let decl = &self.project.file.plugins[name];
                let _span = tracing::info_span!("load", plugin = name).entered();
                runtime
                    .load(&self.project.root.join(&decl.path), Some(&decl.digest), &self.project.file.limits)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok((runtime, plugin))
    }
}

impl Plugins<'_> {
    /// Checks an entry's config against the JSON Schema the plugin declares in `info()` (compiled
    /// once per plugin).
    fn check_config(&self, name: &str, plugin: &Plugin, config: &str) -> Result<(), String> {
        let Some(slot) = self.config_schemas.get(name) else { return Ok(()) };
        let schema = slot.get_or_init(|| crate::plugin_config::schema(plugin)).as_ref().map_err(Clone::clone)?;
        let Some(schema) = schema else { return Ok(()) };
        let value: serde_json::Value = serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
        crate::plugin_config::check(name, schema, &value)
    }
}

impl Engine {
    /// Loads `qpf.yaml`, the map and the schemas under `root`, and plans the run.
    ///
    /// # Errors
    /// [`EngineError::Project`] or [`EngineError::Invalid`] with every problem found.
    pub fn load(root: &Path) -> Result<Engine, EngineError> {
        let _span = tracing::info_span!("load_project", root = %root.display()).entered();
        let project = Project::load(root)?;
        let kinds = qpf_schema::KindRegistry::load(root, &project.file.kinds).map_err(EngineError::Invalid)?;
        let schemas = SchemaSet::load(root, &project.file.schemas, &kinds).map_err(EngineError::Invalid)?;
        let plan = crate::plan::plan(&project, &schemas).map_err(EngineError::Invalid)?;
        Ok(Engine { project, schemas, plan, secret: crate::secret::user_secret() })
    }

    /// The project's invocation cache (`.qpf/cache/invocations`), sealed with the user's secret.
    pub fn invocation_cache(&self) -> LocalCache {
        LocalCache::new(&self.project.state_dir().join("cache").join("invocations"), &self.secret)
    }

    /// The folder of compiled plugins: `QPF_COMPILED_CACHE` when set (shared between projects),
    /// else `.qpf/cache/compiled`. Artifacts are authenticated either way.
    pub fn compiled_cache_dir(&self) -> PathBuf {
        std::env::var_os("QPF_COMPILED_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.project.state_dir().join("cache").join("compiled"))
    }

    /// Everything the output root must stay clear of (see [`crate::protect`]).
    pub fn protected_paths(&self) -> Vec<crate::protect::Protected> {
        use crate::protect::Protected;
        let root = &self.project.root;
        let file = &self.project.file;
        let mut out = vec![
            Protected { path: self.project.state_dir(), what: "the project's state folder `.qpf/`".into() },
            Protected { path: root.join(LOCK_FILE), what: "the lock `qpf.lock`".into() },
            Protected { path: root.join(crate::project::PROJECT_FILE), what: "the project file `qpf.yaml`".into() },
            Protected { path: root.join(&file.map), what: "the extractor map".into() },
            Protected { path: self.compiled_cache_dir(), what: "the compiled-plugin cache".into() },
        ];
        out.extend(
            file.kinds
                .iter()
                .map(|(kind, p)| Protected { path: root.join(p), what: format!("the JSON Schema of kind `{kind}`") }),
        );
        out.extend(self.schemas.iter().map(|s| Protected { path: root.join(&s.path), what: "a schema file".into() }));
        out.extend(
            self.schemas
                .sources()
                .files()
                .map(|p| Protected { path: root.join(p), what: "a schema or fragment file".into() }),
        );
        out.extend(file.plugins.iter().map(|(name, d)| Protected {
            path: root.join(&d.path),
            what: format!("the component of plugin `{name}`"),
        }));
        if let Some(secret) = crate::secret::secret_path() {
            out.push(Protected { path: secret, what: "the user's cache secret".into() });
        }
        out
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The schemas.
    pub fn schemas(&self) -> &SchemaSet {
        &self.schemas
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// For each planned invocation (in plan order): `None` when it is cached, otherwise why it will
    /// run: `new` (never extracted), the parts of its key that changed since the lock (`input`,
    /// `config`, `plugin`, `context`, `limits`), or `not cached` (same inputs, cache entry gone).
    pub fn miss_reasons(&self) -> Vec<Option<String>> {
        let lock = Lock::read(&self.project.root.join(LOCK_FILE));
        let limits = &self.project.file.limits;
        self.cache_states()
            .into_iter()
            .zip(&self.plan.invocations)
            .map(|(hit, inv)| {
                if hit {
                    return None;
                }
                let before =
                    lock.as_ref().and_then(|l| l.invocations.get(&crate::lock::invocation_id(&inv.entry, &inv.schema)));
                Some(match before {
                    None => "new: never extracted".to_owned(),
                    Some(before) => {
                        let changed = inv.inputs(limits).changed_since(before);
                        if changed.is_empty() {
                            "not cached: same inputs as the lock, but the cache entry is gone".to_owned()
                        } else {
                            format!("{} changed", changed.join(", "))
                        }
                    }
                })
            })
            .collect()
    }

    /// Whether each planned invocation has a valid cache entry (in plan order).
    pub fn cache_states(&self) -> Vec<bool> {
        let cache = self.invocation_cache();
        self.plan.invocations.iter().map(|i| matches!(cache.manifest(&i.key), Ok(Some(_)))).collect()
    }

    /// Places a plugin diagnostic in the schema sources: its pointer is relative to the entry's input.
    fn place(&self, inv: &PlannedInvocation, d: qpf_runtime::Diagnostic) -> DiagnosticReport {
        let origin = d.pointer.as_deref().and_then(|p| {
            let schema = self.schemas.get(&inv.schema)?;
            qpf_schema::provenance::locate(&schema.provenance, &format!("{}{p}", inv.input_pointer)).cloned()
        });
        DiagnosticReport {
            severity: d.severity,
            message: d.message,
            pointer: d.pointer,
            location: origin.as_ref().map(|o| format!("{}:{}:{}", o.file.display(), o.line, o.column)),
            excerpt: origin.as_ref().and_then(|o| self.schemas.sources().excerpt(o)),
            via: origin.map(|o| o.via).unwrap_or_default(),
        }
    }

    /// Checks that every plugin the plan uses exists and matches its pinned digest.
    fn verify_plugins(&self) -> Result<(), EngineError> {
        for (name, digest) in self.plan.plugins() {
            let decl = &self.project.file.plugins[name];
            let path = self.project.root.join(&decl.path);
            let limit = self.project.file.load_limits.max_component_bytes;
            let bytes = qpf_core::fs::read_regular(&path, limit).map_err(|e| EngineError::Plugin {
                name: name.to_owned(),
                source: match e {
                    qpf_core::fs::ReadError::TooLarge { size, limit } => {
                        LoadError::TooLarge { path: decl.path.clone(), size, limit }
                    }
                    qpf_core::fs::ReadError::Io(source) => LoadError::Read { path: decl.path.clone(), source },
                    other => {
                        LoadError::Read { path: decl.path.clone(), source: std::io::Error::other(other.to_string()) }
                    }
                },
            })?;
            let actual = digest_of(&bytes);
            if actual != digest {
                return Err(EngineError::Plugin {
                    name: name.to_owned(),
                    source: LoadError::DigestMismatch { path: decl.path.clone(), expected: digest.to_owned(), actual },
                });
            }
        }
        Ok(())
    }

    fn open_output(&self, options: &ExtractOptions) -> Result<(PathBuf, String, OutputRoot), EngineError> {
        let (path, shown) = match &options.out {
            Some(out) => (out.clone(), out.display().to_string()),
            None => (self.project.output_root(), self.project.file.output.display().to_string()),
        };
        let fail = |message: String| EngineError::Output { path: path.clone(), message };
        // Before anything is created: the output root must stay clear of state, inputs and plugins.
        crate::protect::check_output_root(&path, &self.protected_paths()).map_err(fail)?;
        let root = OutputRoot::open(&path).map_err(|e| fail(format!("cannot create or open it: {e}")))?;
        // Again once it exists (a link created in between must not change the answer).
        crate::protect::check_output_root(&path, &self.protected_paths()).map_err(fail)?;
        Ok((path, shown, root))
    }

    /// Runs the plan.
    ///
    /// # Errors
    /// Only failures that stop the whole run: a plugin whose digest does not match (nothing is
    /// written then), an unusable output root, or unwritable project state. Failing invocations
    /// are reported in the [`Report`], not here.
    pub fn extract(
        &self,
        options: &ExtractOptions,
        on_event: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<Report, EngineError> {
        let started = Instant::now();
        let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        self.verify_plugins()?;
        let (_, output_shown, root) = self.open_output(options)?;
        let jobs = options.jobs.max(1);
        let cache_root = self.project.state_dir().join("cache");
        // Held for the whole run: `qpf cache gc|clear` wait for it instead of deleting under us.
        let _lock = crate::cache_admin::lock_shared(&cache_root)
            .map_err(|source| EngineError::Io { path: cache_root.join(".lock"), source })?;
        let cache = self.invocation_cache();
        let cache: Option<&dyn InvocationCache> = if options.no_cache { None } else { Some(&cache) };
        let plugins = Plugins::new(self, jobs);
        let limits = &self.project.file.limits;
        let invocations = &self.plan.invocations;
        on_event(Event::Planned { total: invocations.len() });

        // Worker phase: every invocation, `jobs` at a time, each after the invocations it needs.
        let results: Vec<OnceLock<Worked>> = invocations.iter().map(|_| OnceLock::new()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); invocations.len()];
        for (i, inv) in invocations.iter().enumerate() {
            for &u in &inv.upstream {
                dependents[u].push(i);
            }
        }
        let waiting: Vec<AtomicUsize> = invocations.iter().map(|i| AtomicUsize::new(i.upstream.len())).collect();
        let ready: std::collections::VecDeque<usize> =
            (0..invocations.len()).filter(|&i| invocations[i].upstream.is_empty()).collect();
        let queue = std::sync::Mutex::new((ready, invocations.len()));
        let wake = std::sync::Condvar::new();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(invocations.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = {
                            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                            loop {
                                if q.1 == 0 || stop.load(Ordering::Relaxed) {
                                    break None;
                                }
                                if let Some(i) = q.0.pop_front() {
                                    break Some(i);
                                }
                                q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                            }
                        };
                        let Some(i) = i else {
                            wake.notify_all();
                            break;
                        };
                        let inv = &invocations[i];
                        let failed_upstream =
                            inv.upstream.iter().find(|&&u| results[u].get().is_none_or(|w| w.result.is_err()));
                        let worked = match failed_upstream {
                            Some(&u) => Worked::skipped(format!(
                                "not run: the entry it needs, `{}`, failed for `{}`",
                                invocations[u].entry, invocations[u].schema
                            )),
                            None => {
                                let upstream = upstream_context(inv, invocations, &results, &root);
                                let mut worked = work(inv, upstream, cache, &plugins, &root, limits);
                                let policy =
                                    self.project.map.entries.iter().find(|e| e.id == inv.entry).map(|e| &e.spawn);
                                if let Some(policy) = policy {
                                    let mut spawner = Spawner {
                                        project: &self.project,
                                        policy,
                                        cache,
                                        plugins: &plugins,
                                        root: &root,
                                        limits,
                                        count: 0,
                                    };
                                    worked.children = spawner.run(inv, &worked);
                                }
                                worked
                            }
                        };
                        if options.fail_fast && worked.result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        on_event(Event::Finished {
                            entry: &inv.entry,
                            schema: &inv.schema,
                            hit: worked.hit,
                            ok: worked.result.is_ok(),
                        });
                        let _ = results[i].set(worked);
                        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                        for &d in &dependents[i] {
                            if waiting[d].fetch_sub(1, Ordering::AcqRel) == 1 {
                                q.0.push_back(d);
                            }
                        }
                        q.1 -= 1;
                        drop(q);
                        wake.notify_all();
                    }
                });
            }
        });

        // Write phase, in plan order: conflicts are decided deterministically.
        let lock_path = self.project.root.join(LOCK_FILE);
        let previous = Lock::read(&lock_path).filter(|l| l.output == output_shown);
        let mut lock = Lock::new(output_shown.clone());
        let mut claimed: crate::output_path::PathTree<(String, String)> = crate::output_path::PathTree::default();
        let mut reports = Vec::with_capacity(invocations.len());
        let mut records = Vec::with_capacity(invocations.len());
        let mut summary = Summary { invocations: invocations.len(), ..Summary::default() };
        let mut warnings = Vec::new();
        // Spawned invocations follow the invocation that spawned them.
        let mut flat: Vec<(std::borrow::Cow<'_, PlannedInvocation>, Worked)> = Vec::with_capacity(invocations.len());
        for (inv, slot) in invocations.iter().zip(results) {
            let mut worked = slot.into_inner().unwrap_or_else(|| {
                Worked::skipped("not run: `--fail-fast` stopped the run after the first failure".to_owned())
            });
            let children = std::mem::take(&mut worked.children);
            flat.push((std::borrow::Cow::Borrowed(inv), worked));
            summary.invocations += children.len();
            flat.extend(children.into_iter().map(|(c, w)| (std::borrow::Cow::Owned(c), w)));
        }
        for (inv, worked) in flat {
            let inv: &PlannedInvocation = &inv;
            let skipped = worked.result.as_ref().is_err_and(|e| e.kind == FailureKind::Skipped);
            warnings.extend(worked.warnings);
            let mut written = Vec::new();
            let result = worked.result.and_then(|files| {
                // Every check before the first write: an invocation's files land all or none.
                for f in &files {
                    if let Some((other, (entry, schema))) = claimed.conflict(&f.rel) {
                        let clash = if *other == f.rel {
                            format!("`{}` is also produced by", f.rel)
                        } else {
                            format!("`{}` clashes with `{other}` (a file where a folder is needed, or a case-only difference), produced by", f.rel)
                        };
                        return Err(error(
                            FailureKind::Output,
                            format!("{clash} entry `{entry}` for `{schema}`; give the entries different `out` folders"),
                        ));
                    }
                    if f.contents.is_some() {
                        root.check_writable(&f.rel).map_err(|e| error(FailureKind::Output, format!("cannot write `{}`: {e}", f.rel)))?;
                    }
                }
                for f in &files {
                    claimed.insert(&f.rel, (inv.entry.clone(), inv.schema.clone()));
                    if let Some(contents) = &f.contents {
                        match root.write(&f.rel, contents) {
                            Ok(WriteOutcome::Written) => written.push(f.rel.clone()),
                            Ok(WriteOutcome::Unchanged) => summary.files_unchanged += 1,
                            Err(e) => {
                                return Err(error(
                                    FailureKind::Write,
                                    format!("cannot write `{}` under the output root: {e}", f.rel),
                                ));
                            }
                        }
                    } else {
                        summary.files_unchanged += 1;
                    }
                }
                Ok(files)
            });
            summary.files_written += written.len();
            if skipped {
                summary.skipped += 1;
            } else if worked.hit {
                summary.hits += 1;
            } else {
                summary.misses += 1;
            }
            let files: Vec<(String, String)> = match &result {
                Ok(files) => files.iter().map(|f| (f.rel.clone(), f.digest.clone())).collect(),
                Err(_) => Vec::new(),
            };
            let id = crate::lock::invocation_id(&inv.entry, &inv.schema);
            match &result {
                Ok(_) => {
                    lock.invocations.insert(id, inv.inputs(limits));
                    for (rel, digest) in &files {
                        lock.files.insert(
                            rel.clone(),
                            LockedFile {
                                digest: digest.clone(),
                                key: inv.key.clone(),
                                entry: inv.entry.clone(),
                                schema: inv.schema.clone(),
                                plugin: inv.plugin.clone(),
                                spawned_by: inv.root.as_ref().map(|(entry, key)| crate::lock::SpawnedBy {
                                    entry: entry.clone(),
                                    key: key.clone(),
                                }),
                                orphan: false,
                            },
                        );
                    }
                }
                Err(_) => {
                    if !skipped {
                        summary.failed += 1;
                    }
                    // Self-healing: the previous outputs of a failing invocation stay, and stay locked.
                    if let Some(previous) = &previous {
                        if let Some(before) = previous.invocations.get(&id) {
                            lock.invocations.insert(id.clone(), before.clone());
                        }
                        for (rel, f) in &previous.files {
                            let descends =
                                f.entry == inv.entry || f.spawned_by.as_ref().is_some_and(|s| s.entry == inv.entry);
                            if descends && f.schema == inv.schema && claimed.conflict(rel).is_none() {
                                lock.files.insert(rel.clone(), f.clone());
                            }
                        }
                    }
                }
            }
            let (outcome, err) = match result {
                Ok(_) => (Outcome::Ok, None),
                Err(e) if skipped => (Outcome::Skipped, Some(e)),
                Err(e) => (Outcome::Error, Some(e)),
            };
            records.push(AuditRecord {
                format: audit::AUDIT_FORMAT,
                time: time.clone(),
                tenant: "default".to_owned(),
                entry: inv.entry.clone(),
                schema: inv.schema.clone(),
                plugin: AuditPlugin {
                    name: inv.plugin.clone(),
                    version: worked.plugin_version.clone(),
                    digest: inv.plugin_digest.clone(),
                },
                key: inv.key.clone(),
                input_digest: digest_of(inv.request.input.as_bytes()),
                config_digest: digest_of(inv.request.config.as_bytes()),
                cache: if worked.hit { CacheState::Hit } else { CacheState::Miss },
                outcome,
                error: err.as_ref().map(|e| format!("{}: {}", e.kind, e.message)),
                duration_us: worked.duration_us,
                fuel: worked.fuel,
                outputs: files
                    .iter()
                    .map(|(path, digest)| AuditOutput { path: path.clone(), digest: digest.clone() })
                    .collect(),
            });
            reports.push(InvocationReport {
                entry: inv.entry.clone(),
                schema: inv.schema.clone(),
                plugin: inv.plugin.clone(),
                key: inv.key.clone(),
                cache: if worked.hit { CacheState::Hit } else { CacheState::Miss },
                outcome,
                error: err,
                duration_us: worked.duration_us,
                fuel: worked.fuel,
                files: files.into_iter().map(|(rel, _)| rel).collect(),
                written,
                diagnostics: worked.diagnostics.into_iter().map(|d| self.place(inv, d)).collect(),
            });
        }

        let removed = match &previous {
            Some(previous) => prune(previous, &mut lock, &root, &mut warnings),
            None => Vec::new(),
        };
        summary.files_removed = removed.len();
        lock.write(&lock_path).map_err(|source| EngineError::Io { path: lock_path.clone(), source })?;
        let audit_path = self.project.state_dir().join("audit.jsonl");
        audit::append(&audit_path, &records).map_err(|source| EngineError::Io { path: audit_path, source })?;
        Ok(Report {
            format: REPORT_FORMAT,
            output: output_shown,
            jobs,
            duration_us: started.elapsed().as_micros() as u64,
            summary,
            invocations: reports,
            removed,
            warnings,
        })
    }
}

/// Files the previous lock lists that no invocation of this run produces (an entry or schema
/// removed, a config that drops a file): each is deleted when it still holds the bytes QPF wrote,
/// kept in the lock as an orphan (with a warning) when someone edited it, and forgotten when it is
/// already gone. A file QPF did not write is never deleted. Returns the removed paths.
fn prune(previous: &Lock, lock: &mut Lock, root: &OutputRoot, warnings: &mut Vec<String>) -> Vec<String> {
    let mut removed = Vec::new();
    for (rel, locked) in &previous.files {
        if lock.files.contains_key(rel) {
            continue;
        }
        match root.digest_of(rel) {
            Some(on_disk) if on_disk == locked.digest => match root.remove(rel) {
                Ok(()) => removed.push(rel.clone()),
                Err(e) => {
                    warnings.push(format!("`{rel}` is no longer produced, but it cannot be removed: {e}"));
                    lock.files.insert(rel.clone(), LockedFile { orphan: true, ..locked.clone() });
                }
            },
            Some(_) => {
                warnings.push(format!(
                    "`{rel}` is no longer produced by entry `{}` for `{}`, but it was edited by hand: kept (delete it yourself once its changes are safe)",
                    locked.entry, locked.schema
                ));
                lock.files.insert(rel.clone(), LockedFile { orphan: true, ..locked.clone() });
            }
            None => {}
        }
    }
    removed
}

/// Joins an invocation's `out` folder and a plugin path.
fn join(out_dir: &str, path: &str) -> String {
    format!("{out_dir}/{path}")
}

/// Replays a cache hit: checks which files are already on disk and reads the verified blobs of
/// the others. `None` means the entry cannot be used (missing or corrupted blob): run the plugin.
fn replay(
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
        let contents = if root.digest_of(&rel).as_deref() == Some(f.digest.as_str()) {
            None
        } else {
            match cache.blob(&f.digest) {
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
        files.push(ProducedFile { rel, digest: f.digest.clone(), contents });
    }
    Some(files)
}

/// Checks a plugin's files against the output limits and paths, and returns them ready to write.
fn check_outputs(
    files: Vec<qpf_runtime::OutputFile>,
    limits: &Limits,
) -> Result<Vec<(String, String, Vec<u8>)>, ErrorReport> {
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
        .map(|f| {
            let digest = digest_of(&f.contents);
            (f.path, digest, f.contents)
        })
        .collect())
}

fn work(
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

fn run_plugin(
    inv: &PlannedInvocation,
    upstream: Option<serde_json::Value>,
    cache: Option<&dyn InvocationCache>,
    plugins: &Plugins<'_>,
    limits: &Limits,
    worked: &mut Worked,
) -> Result<Vec<ProducedFile>, ErrorReport> {
    let (runtime, plugin) = plugins.get(&inv.plugin).map_err(|e| error(FailureKind::Load, e))?;
    let info = plugin.info();
    worked.plugin_version = Some(info.version.clone());
    if !info.kinds.is_empty() && !info.kinds.contains(&inv.request.schema.kind) {
        return Err(error(
            FailureKind::Load,
            format!(
                "plugin `{}` accepts kinds {:?}, not `{}`; narrow the entry's `select.kind`",
                inv.plugin, info.kinds, inv.request.schema.kind
            ),
        ));
    }
    plugins.check_config(&inv.plugin, plugin, &inv.request.config).map_err(|e| error(FailureKind::Config, e))?;
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
    let invocation =
        runtime.invoke(plugin, &request, limits).map_err(|e| error(FailureKind::Sandbox, e.to_string()))?;
    worked.fuel = invocation.fuel_consumed;
    for line in &invocation.logs {
        tracing::debug!(target: "qpf::plugin", level = ?line.level, "{}", qpf_core::text::escape(&line.message));
    }
    let response = match invocation.result {
        Ok(r) => r,
        Err(e) => {
            worked.diagnostics = e.diagnostics;
            return Err(error(FailureKind::Plugin, e.message));
        }
    };
    worked.diagnostics = response.diagnostics;
    worked.spawns = response.spawns;
    let checked = check_outputs(response.files, limits)?;
    if let Some(cache) = cache {
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            key: inv.key.clone(),
            files: checked
                .iter()
                .map(|(path, digest, c)| CachedFile {
                    path: path.clone(),
                    digest: digest.clone(),
                    size: c.len() as u64,
                })
                .collect(),
            diagnostics: worked.diagnostics.clone(),
            fuel: worked.fuel,
            spawns: worked.spawns.clone(),
        };
        let blobs: Vec<(&str, &[u8])> = checked.iter().map(|(_, d, c)| (d.as_str(), c.as_slice())).collect();
        if let Err(e) = cache.put(&manifest, &blobs) {
            worked.warnings.push(format!("entry `{}`, schema `{}`: {e}", inv.entry, inv.schema));
        }
    }
    Ok(checked
        .into_iter()
        .map(|(path, digest, contents)| ProducedFile {
            rel: join(&inv.out_dir, &path),
            digest,
            contents: Some(contents),
        })
        .collect())
}
