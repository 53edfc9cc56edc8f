//! `extract`: the run. Loads and plans the project ([`Engine::load`]), then runs every invocation
//! on a bounded pool of threads ([`Engine::extract`]): cache lookup, sandboxed call on a miss,
//! output checks, cache store; then writes outputs in plan order, records the lock and the audit
//! log, and returns the [`Report`]. A failing invocation never stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use qpf_runtime::LoadError;
use qpf_schema::{SchemaError, SchemaSet};

use crate::audit;
use crate::cache::{InvocationCache, LocalCache};
use crate::commit::{Commit, InvocationRecord};
use crate::invoker::{Plugins, Worked, upstream_context, work};
use crate::lock::{LOCK_FILE, Lock};
use crate::plan::{Plan, PlannedInvocation};
use crate::project::{Project, ProjectError};
use crate::report::{DiagnosticReport, FailureKind, REPORT_FORMAT, Report};
use crate::spawner::Spawner;
use crate::writer::OutputRoot;

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
    /// Run no plugin: every invocation must be a (local or remote) cache hit, else it fails with
    /// kind `not-cached` (`qpf extract --require-hits`, the gather after sharded runs).
    pub require_hits: bool,
    /// Run only this shard's part of the plan ([`crate::shard`]) into the caches: no output is
    /// written, no lock, no pruning; a marker for the plan goes to the remote cache.
    pub shard: Option<crate::shard::Shard>,
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
    /// Several plugins' files are missing or do not match their pins: each one, as
    /// [`EngineError::Plugin`].
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Plugins(Vec<EngineError>),
    /// A plugin declared `oci:` is not in the plugin store and could not be fetched, or what was
    /// fetched does not match its pin.
    #[error("plugin `{name}` (oci: {reference}): {message}")]
    Fetch {
        /// Plugin name.
        name: String,
        /// Its OCI reference.
        reference: String,
        /// Why.
        message: String,
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

/// The longest the `oci:` plugin fetches of one project load may take together.
const OCI_FETCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(600);

/// What a shard leaves in the remote cache when it has run: the gather (`--require-hits`) reads
/// it to say which shard's work is missing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardMarker {
    /// 1.
    pub format: u32,
    /// [`crate::plan::Plan::digest`] of the plan the shard ran.
    pub plan: String,
    /// `I/N`.
    pub shard: String,
    /// Invocations the shard ran (or found cached).
    pub invocations: usize,
    /// Of which failed or were skipped (their results are not in the cache).
    pub failed: usize,
}

/// What a shard run did, in its report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardReport {
    /// The marker.
    pub marker: ShardMarker,
    /// Whether it was stored in the remote cache.
    pub stored: bool,
}

/// The remote name of a shard's marker.
fn marker_name(salt: &str, plan: &str, shard: crate::shard::Shard) -> String {
    crate::remote::entry_name(salt, &format!("shard-marker\n{plan}\n{}/{}", shard.index, shard.count))
}

/// Points every `oci:` plugin at its file in the plugin store, fetching (with
/// [`Settings::fetcher`]) the ones the store lacks; a fetched component that does not hash to its
/// pin is refused. Every failure is reported, not just the first.
fn resolve_oci_plugins(project: &mut Project, settings: &Settings) -> Result<(), EngineError> {
    if project.file.plugins.values().all(|p| p.oci.is_none()) {
        return Ok(());
    }
    let store = settings
        .plugin_store
        .clone()
        .or_else(crate::plugin_store::user_plugin_store)
        .map(crate::plugin_store::PluginStore::new);
    let max_bytes = project.file.load_limits.max_component_bytes;
    let mut failed = Vec::new();
    // Bounded on a project's behalf: one fetch per digest, none after three failures or once
    // the fetches have taken ten minutes.
    let started = Instant::now();
    let mut fetched: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
    let mut fetch_failures = 0;
    for (name, decl) in &mut project.file.plugins {
        let Some(reference) = decl.oci.clone() else { continue };
        let fail = |message: String| EngineError::Fetch { name: name.clone(), reference: reference.clone(), message };
        let Some(store) = &store else {
            failed.push(fail("no plugin store: set QPF_PLUGIN_STORE (there is no home folder)".into()));
            continue;
        };
        // The pin was checked when the project was read.
        let Ok(digest) = qpf_core::Digest::parse(&decl.digest) else { continue };
        if let Some(path) = store.get(&digest) {
            decl.path = path;
            continue;
        }
        if let Some(path) = fetched.get(&decl.digest) {
            decl.path.clone_from(path);
            continue;
        }
        if fetch_failures >= 3 || started.elapsed() > OCI_FETCH_BUDGET {
            failed.push(fail(format!(
                "not fetched: the plugin fetches of this project already failed {fetch_failures} times or took over {} s",
                OCI_FETCH_BUDGET.as_secs()
            )));
            continue;
        }
        let Some(fetcher) = &settings.fetcher else {
            failed.push(fail(format!(
                "not in the plugin store `{}`; pull it first (`qpf plugin pull {reference}`)",
                store.dir().display()
            )));
            continue;
        };
        let _span = tracing::info_span!("fetch_plugin", plugin = %name, reference = %reference).entered();
        match fetcher
            .fetch(&reference, max_bytes)
            .map_err(&fail)
            .and_then(|bytes| store.put(&bytes, Some(&digest)).map_err(|e| fail(e.to_string())))
        {
            Ok((_, path)) => {
                fetched.insert(decl.digest.clone(), path.clone());
                decl.path = path;
            }
            Err(e) => {
                fetch_failures += 1;
                failed.push(e);
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.remove(0)),
        _ => Err(EngineError::Plugins(failed)),
    }
}

/// Whether the glob `glob` (relative to the project) could match a path under the folder `dir`:
/// its leading literal components (before the first one with `*`, `?`, `[`, `{` or `\\`) and the
/// folder's components agree as far as both go.
fn glob_may_match_under(glob: &str, dir: &Path) -> bool {
    let literal = glob.split('/').take_while(|c| !c.contains(['*', '?', '[', '{', '\\']));
    let dir = dir.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    literal.zip(dir).all(|(g, d)| g == d)
}

/// What every invocation of a run shares.
pub(crate) struct RunContext<'a, 'p> {
    pub(crate) cache: Option<&'a dyn InvocationCache>,
    pub(crate) plugins: &'a Plugins<'p>,
    pub(crate) root: &'a OutputRoot,
    pub(crate) limits: &'a qpf_runtime::Limits,
}

/// Where an embedder keeps what a CLI run keeps in the project's `.qpf/`: the caches, their
/// secret, and the plugin files (a service maps declared plugins to its own stores).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Keys the caches' MACs (default: the user's secret, [`crate::secret::user_secret`]).
    pub secret: Option<[u8; 32]>,
    /// The invocation cache's folder (default `.qpf/cache/invocations`).
    pub invocation_cache: Option<PathBuf>,
    /// Compiled plugins: folder and MAC secret (default: the user's compiled cache,
    /// [`crate::standalone::user_compiled_cache`], with [`Settings::secret`]).
    pub compiled_cache: Option<qpf_runtime::CompiledCacheOptions>,
    /// The file of a declared plugin, by name, instead of its `path` in `qpf.yaml` (its digest is
    /// still checked).
    pub plugin_paths: std::collections::BTreeMap<String, PathBuf>,
    /// Ceilings over the project's `limits` and `load-limits` (a service's tenant may ask for less,
    /// never for more).
    pub ceilings: Option<(qpf_runtime::Limits, qpf_runtime::LoadLimits)>,
    /// How often a running plugin gives its core back to the operating system (see
    /// [`qpf_runtime::RuntimeOptions::yield_every`]); `None` never yields.
    pub yield_every: Option<std::time::Duration>,
    /// Where plugins declared `oci:` are kept (default: [`crate::plugin_store::user_plugin_store`]).
    pub plugin_store: Option<PathBuf>,
    /// Brings an `oci:` plugin the store does not have yet; `None` (the default) opens no
    /// connection, and such a plugin is then an error.
    pub fetcher: Option<std::sync::Arc<dyn crate::plugin_store::PluginFetcher>>,
    /// A shared remote cache behind the local one ([`crate::remote`]); `None`: local only.
    pub remote: Option<crate::remote::RemoteSettings>,
    /// Which compiler turns plugins into native code (default:
    /// [`crate::standalone::user_compiler`], `auto`).
    pub compiler: Option<crate::CompilerChoice>,
    /// Leave a run snapshot after a complete run, so that the next run over the same files is
    /// answered from it ([`crate::snapshot`]; the CLI's `qpf extract`). Default off.
    pub run_snapshot: bool,
    /// Resolve registry fragments to the newest matching versions, not the ones the lock holds
    /// (`qpf extract --update-registry`).
    pub registry_update: bool,
    /// Refuse a project that names registry folders (`qpf serve`: a tenant's project may read
    /// nothing of the host's file system).
    pub forbid_registries: bool,
}

/// The most entries (files and folders) the walk of the registry folders looks at: a registry is a
/// folder of fragments, and `registries: [/]` must not walk the whole file system.
pub const MAX_REGISTRY_ENTRIES: usize = 20_000;

/// Every schema file (`*.yaml`, `*.yml`) and folder of the registry folders `qpf.yaml` names,
/// absolute and sorted; hidden entries are skipped, links are not followed.
fn registry_files(root: &Path, registries: &[PathBuf]) -> Result<qpf_schema::Walked, Vec<SchemaError>> {
    let mut found = qpf_schema::Walked::default();
    let mut errors = Vec::new();
    let mut seen = 0usize;
    for declared in registries {
        let dir = root.join(declared);
        let dir = match std::fs::canonicalize(&dir) {
            Ok(d) if d.is_dir() => d,
            Ok(_) => {
                errors
                    .push(SchemaError::file("qpf.yaml", format!("registry `{}` is not a folder", declared.display())));
                continue;
            }
            Err(e) => {
                errors.push(SchemaError::file(
                    "qpf.yaml",
                    format!("registry `{}`: cannot open it: {e}", declared.display()),
                ));
                continue;
            }
        };
        let walker = walkdir::WalkDir::new(&dir).follow_links(false).sort_by_file_name().into_iter();
        for entry in walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')) {
            seen += 1;
            if seen > MAX_REGISTRY_ENTRIES {
                errors.push(SchemaError::file(
                    "qpf.yaml",
                    format!(
                        "registry `{}`: the registry folders hold more than {MAX_REGISTRY_ENTRIES} files and folders; name a folder of fragments",
                        declared.display()
                    ),
                ));
                return Err(errors);
            }
            match entry {
                Ok(e) if e.file_type().is_dir() => found.dirs.push(e.into_path()),
                Ok(e) if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "yaml" || x == "yml") => {
                    found.files.push(e.into_path());
                }
                Ok(_) => {}
                Err(e) => errors.push(SchemaError::file("qpf.yaml", format!("registry `{}`: {e}", declared.display()))),
            }
        }
    }
    if errors.is_empty() { Ok(found) } else { Err(errors) }
}

/// A loaded, planned project.
pub struct Engine {
    project: Project,
    schemas: SchemaSet,
    /// The kinds' JSON Schemas, for the schemas a template spawn completes.
    kinds: qpf_schema::KindRegistry,
    plan: Plan,
    /// Keys the caches' MACs (see [`crate::secret`]).
    secret: [u8; 32],
    settings: Settings,
    /// How long [`Engine::load_with`] took: reading, resolving, validating and planning.
    load_us: u64,
    /// The folders listed while looking for schemas (relative to the root), for the run snapshot.
    walked_dirs: Vec<PathBuf>,
    /// When loading began (the run snapshot's stats must be settled before it).
    began: SystemTime,
    /// What the `registry: NAME@RANGE` plugins resolved to, for the lock.
    registry_plugins: BTreeMap<String, crate::lock::LockedFragment>,
    /// Each allowed template's digest, as the plan's contexts carry it.
    template_digests: BTreeMap<String, String>,
    /// For template spawns, built on the first: the project's schema names, and the plan's
    /// output folders.
    spawn_index: OnceLock<SpawnIndex>,
}

/// What a template spawn checks a new schema against.
pub(crate) struct SpawnIndex {
    /// Every schema name of the project (any kind).
    pub(crate) names: std::collections::BTreeSet<String>,
    /// Every output folder of the plan, with an entry that writes there.
    pub(crate) out_dirs: BTreeMap<String, String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("project", &self.project.root).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads `qpf.yaml`, the map and the schemas under `root`, and plans the run.
    ///
    /// # Errors
    /// [`EngineError::Project`] or [`EngineError::Invalid`] with every problem found.
    pub fn load(root: &Path) -> Result<Engine, EngineError> {
        Self::load_with(root, Settings::default())
    }

    /// [`Engine::load`] with an embedder's [`Settings`].
    ///
    /// # Errors
    /// As [`Engine::load`]; a `plugin_paths` name the project does not declare is ignored.
    pub fn load_with(root: &Path, settings: Settings) -> Result<Engine, EngineError> {
        let started = Instant::now();
        let began = SystemTime::now();
        let _span = tracing::info_span!("load_project", root = %root.display()).entered();
        let mut project = Project::load(root)?;
        for (name, path) in &settings.plugin_paths {
            if let Some(plugin) = project.file.plugins.get_mut(name) {
                plugin.path.clone_from(path);
                plugin.oci = None;
            }
        }
        if let Some((limits, load)) = &settings.ceilings {
            project.file.limits = project.file.limits.capped_by(limits);
            project.file.load_limits = project.file.load_limits.capped_by(load);
        }
        // Before anything of a registry is read.
        if settings.forbid_registries && !project.file.registries.is_empty() {
            return Err(EngineError::Invalid(vec![SchemaError::file(
                "qpf.yaml",
                "`registries` names folders of this machine, which this host does not let a project read; bundle the fragments and plugins with the project",
            )]));
        }
        // The lock is read (all of it: tens of megabytes in a big project) only for registry
        // names and version ranges.
        let ranged = project.file.plugins.values().any(|p| p.version.is_some());
        let lock = match project.file.registries.is_empty() && !ranged {
            true => None,
            false => Lock::read(&root.join(LOCK_FILE)),
        };
        let locked_plugins = lock.as_ref().map(|l| l.registry_plugins.clone()).unwrap_or_default();
        let (mut registry_plugins, plugin_dirs) = crate::plugin_versions::resolve_registry_plugins(
            root,
            &mut project,
            &locked_plugins,
            settings.registry_update,
        )?;
        if ranged {
            registry_plugins.extend(crate::plugin_versions::resolve_oci_ranges(
                &mut project,
                &settings,
                &locked_plugins,
                settings.registry_update,
            )?);
        }
        resolve_oci_plugins(&mut project, &settings)?;
        let kinds = qpf_schema::KindRegistry::load(root, &project.kind_schemas()).map_err(EngineError::Invalid)?;
        // The output root is not searched for schemas when no glob could match anything in it: a
        // big project's output root holds tens of thousands of files. (When one could, it is
        // searched, and a schema found there is refused as an input the output root would reach.)
        let output = &project.file.output;
        let exclude: Vec<PathBuf> = (output.is_relative()
            && output.components().all(|c| matches!(c, std::path::Component::Normal(_)))
            && !project.file.schemas.iter().any(|g| glob_may_match_under(g, output)))
        .then(|| output.clone())
        .into_iter()
        .collect();
        let mut walked = qpf_schema::walk(root, &project.file.schemas, &exclude).map_err(EngineError::Invalid)?;
        let mut registry = registry_files(root, &project.file.registries).map_err(EngineError::Invalid)?;
        walked.dirs.append(&mut registry.dirs);
        walked.dirs.extend(plugin_dirs);
        let locked = match (settings.registry_update, lock) {
            (false, Some(l)) => {
                l.registry.into_iter().filter_map(|(n, f)| Some((n, f.version.parse().ok()?))).collect()
            }
            _ => BTreeMap::new(),
        };
        let registry = qpf_schema::Registry { files: registry.files, locked };
        let templates: Vec<PathBuf> = project.map.templates.values().cloned().collect();
        let schemas = SchemaSet::from_files_with_registry(root, &walked.files, &registry, &templates, &kinds)
            .map_err(EngineError::Invalid)?;
        let template_digests = crate::plan::template_digests(&project, &schemas, &kinds);
        let plan = crate::plan::plan(&project, &schemas, &template_digests).map_err(EngineError::Invalid)?;
        let secret = settings.secret.unwrap_or_else(crate::secret::user_secret);
        let load_us = started.elapsed().as_micros() as u64;
        Ok(Engine {
            project,
            schemas,
            kinds,
            plan,
            secret,
            settings,
            load_us,
            walked_dirs: walked.dirs,
            began,
            registry_plugins,
            template_digests,
            spawn_index: OnceLock::new(),
        })
    }

    /// The project's invocation cache (`.qpf/cache/invocations`), sealed with the user's secret.
    pub fn invocation_cache(&self) -> LocalCache {
        let dir = self.settings.invocation_cache.clone();
        LocalCache::new(
            &dir.unwrap_or_else(|| self.project.state_dir().join("cache").join("invocations")),
            &self.secret,
        )
    }

    /// How often a running plugin yields its core ([`Settings::yield_every`]).
    pub fn yield_every(&self) -> Option<std::time::Duration> {
        self.settings.yield_every
    }

    /// Which compiler turns this engine's plugins into native code.
    pub fn compiler_choice(&self) -> crate::CompilerChoice {
        self.settings.compiler.unwrap_or_else(crate::standalone::user_compiler)
    }

    /// The compiled-plugin cache: its folder and the secret that authenticates its artifacts.
    pub fn compiled_cache(&self) -> qpf_runtime::CompiledCacheOptions {
        self.settings.compiled_cache.clone().unwrap_or_else(|| qpf_runtime::CompiledCacheOptions {
            dir: self.compiled_cache_dir(),
            secret: self.secret,
            max_bytes: crate::standalone::user_compiled_cache_max(),
        })
    }

    /// The folder of compiled plugins: the user's, shared by every project and by `qpf plugin
    /// build|test` ([`crate::standalone::user_compiled_cache`]: `QPF_COMPILED_CACHE`, else the XDG
    /// cache folder), or `.qpf/cache/compiled` without a home folder. Artifacts are authenticated
    /// either way.
    pub fn compiled_cache_dir(&self) -> PathBuf {
        if let Some(c) = &self.settings.compiled_cache {
            return c.dir.clone();
        }
        crate::standalone::user_compiled_cache()
            .unwrap_or_else(|| self.project.state_dir().join("cache").join("compiled"))
    }

    /// Every file a run reads besides the caches, and the lock: `qpf.yaml`, the map, the kinds'
    /// JSON Schemas, the schemas and fragments, the plugins' components (absolute paths).
    fn input_files(&self) -> Vec<PathBuf> {
        let root = &self.project.root;
        let file = &self.project.file;
        let mut out = vec![root.join(LOCK_FILE), root.join(crate::project::PROJECT_FILE), root.join(&file.map)];
        out.extend(file.kinds.values().map(|d| root.join(d.schema())));
        out.extend(self.schemas.sources().files().map(|p| root.join(p)));
        // A link re-pointed to another file changes what its path (followed) stats as.
        out.extend(self.schemas.linked_imports().iter().map(|p| root.join(p)));
        out.extend(file.plugins.values().map(|d| root.join(&d.path)));
        out
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
        out.extend(file.kinds.iter().map(|(kind, d)| Protected {
            path: root.join(d.schema()),
            what: format!("the JSON Schema of kind `{kind}`"),
        }));
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

    /// The marker a shard of this plan left in the remote cache, if any.
    ///
    /// # Errors
    /// No remote cache, or the store failed.
    pub fn shard_marker(&self, shard: crate::shard::Shard) -> Result<Option<ShardMarker>, crate::remote::RemoteError> {
        let Some(r) = &self.settings.remote else {
            return Err(crate::remote::RemoteError("no remote cache".into()));
        };
        let plan = self.plan.digest();
        let Some(bytes) = r.store.get_entry(&marker_name(&r.salt, &plan, shard), 64 << 10)? else { return Ok(None) };
        // Untrusted: a marker of another plan or shard, or not a marker, counts as none.
        Ok(serde_json::from_slice::<ShardMarker>(&bytes)
            .ok()
            .filter(|m| m.plan == plan && m.shard == format!("{}/{}", shard.index, shard.count)))
    }

    /// Puts a remote cache behind the local one for the runs that follow (`None`: local only).
    pub fn set_remote(&mut self, remote: Option<crate::remote::RemoteSettings>) {
        self.settings.remote = remote;
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
    /// A spawned invocation's input is not a part of a schema file (a spawn request's input, or a
    /// schema completed from a template): its diagnostics keep their pointer, without a place.
    fn place(&self, inv: &PlannedInvocation, d: qpf_runtime::Diagnostic) -> DiagnosticReport {
        let origin = d.pointer.as_deref().filter(|_| inv.depth == 0).and_then(|p| {
            let schema = self.schemas.get(&inv.schema)?;
            qpf_schema::provenance::locate(&schema.provenance, &format!("{}{p}", inv.input_pointer)).cloned()
        });
        let (rule, message) = crate::report::split_rule(&d.message);
        DiagnosticReport {
            severity: d.severity,
            rule: rule.map(str::to_owned),
            message: message.to_owned(),
            pointer: d.pointer,
            location: origin.as_ref().map(|o| format!("{}:{}:{}", o.file.display(), o.line, o.column)),
            excerpt: origin.as_ref().and_then(|o| self.schemas.sources().excerpt(o)),
            via: origin.map(|o| o.via).unwrap_or_default(),
        }
    }

    /// Checks that every plugin the plan uses exists and matches its pinned digest, and names
    /// every one that does not (not only the first).
    fn verify_plugins(&self) -> Result<(), EngineError> {
        let mut problems: Vec<EngineError> = self
            .pin_problems(self.plan.plugins().into_keys())
            .into_iter()
            .map(|(name, source)| EngineError::Plugin { name: name.to_owned(), source })
            .collect();
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(EngineError::Plugins(problems)),
        }
    }

    /// Reads each named plugin's file (within `load-limits.max-component-bytes`) and compares its
    /// digest with its pin in `qpf.yaml`: one problem per plugin whose file is missing, unreadable,
    /// too large or has another digest. Names `qpf.yaml` does not declare are skipped. A file
    /// unchanged since it was last hashed (device, inode, size, modification and change times) is
    /// not read again: its digest comes from the project's sealed pin cache, `.qpf/pins.json`.
    pub fn pin_problems<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Vec<(&'n str, LoadError)> {
        let limit = self.project.file.load_limits.max_component_bytes;
        let mut problems = Vec::new();
        // Files unchanged since they were last hashed are not read again (see `stat_cache`).
        let mut pins = crate::stat_cache::StatCache::load(self.project.state_dir().join("pins.json"), &self.secret, "");
        for name in names {
            let Some(decl) = self.project.file.plugins.get(name) else { continue };
            let path = decl.path.clone();
            let problem = match pins.digest(&self.project.root.join(&decl.path), limit) {
                Err(qpf_core::fs::ReadError::TooLarge { size, limit }) => {
                    Some(LoadError::TooLarge { path, size, limit })
                }
                Err(qpf_core::fs::ReadError::Io(source)) => Some(LoadError::Read { path, source }),
                Err(other) => Some(LoadError::Read { path, source: std::io::Error::other(other.to_string()) }),
                Ok(actual) => (actual != decl.digest).then(|| LoadError::DigestMismatch {
                    path,
                    expected: decl.digest.clone(),
                    actual,
                }),
            };
            problems.extend(problem.map(|p| (name, p)));
        }
        pins.save();
        problems
    }

    fn open_output(&self, options: &ExtractOptions) -> Result<(PathBuf, String, OutputRoot), EngineError> {
        let (path, shown) = match &options.out {
            Some(out) => (out.clone(), out.display().to_string()),
            None => (self.project.output_root(), self.project.file.output.display().to_string()),
        };
        let fail = |message: String| EngineError::Output { path: path.clone(), message };
        // Before anything is created: the output root must stay clear of state, inputs and plugins.
        let protected = crate::protect::ProtectedSet::new(self.protected_paths());
        protected.check(&path).map_err(|e| fail(e.to_string()))?;
        let root = OutputRoot::open(&path).map_err(|e| fail(format!("cannot create or open it: {e}")))?;
        // Again once it exists (a link created in between must not change the answer).
        protected.check(&path).map_err(|e| fail(e.to_string()))?;
        Ok((path, shown, root))
    }

    /// One planned invocation in the worker phase: skipped when an entry it needs failed,
    /// otherwise invoked (with its upstream outputs) and followed by the spawns it asked for.
    fn run_one(
        &self,
        inv: &PlannedInvocation,
        invocations: &[PlannedInvocation],
        results: &[OnceLock<Worked>],
        ctx: &RunContext<'_, '_>,
    ) -> Worked {
        let mut worked = invoke_planned(inv, invocations, results, ctx);
        if worked.result.is_err() {
            return worked;
        }
        let policy = self.project.map.entries.iter().find(|e| e.id == inv.entry).map(|e| &e.spawn);
        if let Some(policy) = policy {
            let mut spawner = Spawner { engine: self, policy, ctx, count: 0 };
            worked.children = spawner.run(inv, &worked);
        }
        worked
    }

    /// The schemas a template spawn completes are checked against these.
    pub(crate) fn kinds(&self) -> &qpf_schema::KindRegistry {
        &self.kinds
    }

    /// The names and output folders a template spawn checks against.
    pub(crate) fn spawn_index(&self) -> &SpawnIndex {
        self.spawn_index.get_or_init(|| SpawnIndex {
            names: self.schemas.iter().map(|s| s.doc.metadata.name.clone()).collect(),
            out_dirs: self
                .plan
                .invocations
                .iter()
                .filter(|i| !i.validator)
                .map(|i| (i.out_dir.clone(), i.entry.clone()))
                .collect(),
        })
    }

    /// Each allowed template's digest, as the plan's contexts carry it.
    pub(crate) fn template_digests(&self) -> &BTreeMap<String, String> {
        &self.template_digests
    }
}

/// One planned invocation of `invocations` (a plan, or the plan of a template spawn): skipped when
/// a validator of its schema or an entry it needs failed, otherwise invoked with its upstream
/// outputs; a validator that found errors fails. Its spawns are not run here.
pub(crate) fn invoke_planned(
    inv: &PlannedInvocation,
    invocations: &[PlannedInvocation],
    results: &[OnceLock<Worked>],
    ctx: &RunContext<'_, '_>,
) -> Worked {
    let failed = |&&g: &&usize| results[g].get().is_none_or(|w| w.result.is_err());
    if let Some(&g) = inv.gates.iter().find(failed) {
        let v = &invocations[g];
        let error = results[g].get().and_then(|w| w.result.as_ref().err());
        let why = if error.is_some_and(|e| e.kind == FailureKind::Invalid) { "found errors in" } else { "failed on" };
        return Worked::skipped(format!("{} `{}` {why} `{}`", crate::report::GATED_BY_VALIDATOR, v.plugin, v.schema));
    }
    let failed_upstream = inv.upstream.iter().find(failed);
    match failed_upstream {
        Some(&u) => Worked::skipped(format!(
            "not run: the entry it needs, `{}`, failed for `{}`",
            invocations[u].entry, invocations[u].schema
        )),
        None => {
            let upstream = upstream_context(inv, invocations, results, ctx.root);
            let mut worked = work(inv, upstream, ctx.cache, ctx.plugins, ctx.root, ctx.limits);
            if inv.validator && worked.result.is_ok() {
                let errors = worked.diagnostics.iter().filter(|d| d.severity == qpf_runtime::Severity::Error).count();
                if errors > 0 {
                    worked.result = Err(crate::invoker::error(
                        FailureKind::Invalid,
                        format!(
                            "the validator found {errors} error{} in the schema; its generators do not run",
                            if errors == 1 { "" } else { "s" }
                        ),
                    ));
                }
            }
            worked
        }
    }
}

impl Engine {
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
        self.run(options, false, on_event)
    }

    /// Runs only the validators of the schemas' kinds (`qpf validate`, `qpf plan`), through the
    /// caches like any invocation, and writes nothing under the output root and no lock. A
    /// failed validator in the report is a schema that would not be extracted; its diagnostics
    /// say why. `options.out`, `fail_fast`, `require_hits` and `shard` are ignored.
    ///
    /// # Errors
    /// As [`Engine::extract`].
    pub fn validate(
        &self,
        options: &ExtractOptions,
        on_event: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<Report, EngineError> {
        if !self.plan.invocations.iter().any(|i| i.validator) {
            // No kind has validators: nothing to run, nothing to open.
            return Ok(Report {
                format: REPORT_FORMAT,
                output: String::new(),
                jobs: options.jobs.max(1),
                load_us: self.load_us,
                duration_us: 0,
                summary: crate::report::Summary::default(),
                invocations: Vec::new(),
                removed: Vec::new(),
                remote: None,
                shard: None,
                warnings: Vec::new(),
                replayed: false,
            });
        }
        let options = ExtractOptions { fail_fast: false, require_hits: false, shard: None, ..options.clone() };
        self.run(&options, true, on_event)
    }

    fn run(
        &self,
        options: &ExtractOptions,
        validators_only: bool,
        on_event: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<Report, EngineError> {
        let started = Instant::now();
        let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        self.verify_plugins()?;
        // A shard runs its part of the plan into the caches and writes no file (the gather writes
        // the outputs and the lock); its output root is an empty scratch folder, never created
        // where the project's outputs go.
        let shard_of = options.shard.map(|s| crate::shard::partition(&self.plan, s.count, &crate::shard::estimate));
        let selected = |i: usize| match (&shard_of, options.shard) {
            _ if validators_only => self.plan.invocations[i].validator,
            (Some(of), Some(s)) => of.get(i).is_some_and(|&x| x + 1 == s.index),
            _ => true,
        };
        let dry = options.shard.is_some() || validators_only;
        let scratch = match dry {
            true => Some(tempfile::tempdir().map_err(|source| EngineError::Io { path: std::env::temp_dir(), source })?),
            false => None,
        };
        let scratch_options =
            scratch.as_ref().map(|d| ExtractOptions { out: Some(d.path().to_owned()), ..options.clone() });
        let (output_path, output_shown, root) = self.open_output(scratch_options.as_ref().unwrap_or(options))?;
        if !dry {
            // The last run's snapshot describes files this run may change: gone until it ends well.
            if let Err(e) = crate::snapshot::remove(&self.project.root) {
                tracing::warn!("cannot remove the run snapshot: {e}");
            }
        }
        // Files under the output root unchanged since they were hashed are not read again to
        // compare them with what a cache hit would write (see `stat_cache`).
        let root = match dry {
            true => root,
            false => root.with_stat_cache(crate::stat_cache::StatCache::load(
                self.project.state_dir().join("outputs.json"),
                &self.secret,
                &output_shown,
            )),
        };
        let jobs = options.jobs.max(1);
        let cache_root = self.project.state_dir().join("cache");
        // Held for the whole run: `qpf cache gc|clear` wait for it instead of deleting under us.
        let _lock = crate::cache_admin::lock_shared(&cache_root)
            .map_err(|source| EngineError::Io { path: cache_root.join(".lock"), source })?;
        let local = self.invocation_cache();
        let limits = &self.project.file.limits;
        let tier = self.settings.remote.clone().map(|r| {
            let tier =
                crate::remote::Tiered::new(&local, r).with_limits(limits.max_files as usize, limits.max_output_bytes);
            if options.shard.is_some() { tier.pushing_local_hits() } else { tier }
        });
        let cache: Option<&dyn InvocationCache> = match (&tier, options.no_cache) {
            (_, true) => None,
            (Some(tier), false) => Some(tier),
            (None, false) => Some(&local),
        };
        if let (Some(tier), false) = (&tier, options.no_cache) {
            tier.prefetch(
                self.plan.invocations.iter().enumerate().filter(|(i, _)| selected(*i)).map(|(_, inv)| inv.key.as_str()),
            );
        }
        let mut plugins = Plugins::new(self, jobs);
        plugins.require_hits = options.require_hits;
        let limits = &self.project.file.limits;
        let invocations = &self.plan.invocations;
        on_event(Event::Planned { total: (0..invocations.len()).filter(|&i| selected(i)).count() });

        // What `auto` needs to choose a plugin's compiler at its first load: the keys of its
        // invocations in this run, looked up in the local cache only then (a run of hits looks at
        // nothing).
        let mut ahead: Vec<&str> = Vec::new();
        let mut waits: Vec<bool> = Vec::new();
        if !options.require_hits {
            let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (_, inv) in invocations.iter().enumerate().filter(|(i, _)| selected(*i)) {
                keys.entry(inv.plugin.as_str()).or_default().push(inv.key.as_str());
            }
            let local = (!options.no_cache).then(|| self.invocation_cache());
            // Plugins with no artifact in the compiled cache (one listing of its folder) that this
            // run calls are compiled first, largest first, each by a task of its own that only
            // their misses wait for: the other workers meanwhile run hits and the invocations of
            // plugins already compiled, rather than waiting for the same compilation.
            let compiled = self.compiled_cache().compiled_digests();
            let uncompiled: Vec<&str> = keys
                .keys()
                .copied()
                .filter(|n| self.project.file.plugins.get(*n).is_some_and(|d| !compiled.contains(&d.digest)))
                .collect();
            if !uncompiled.is_empty() {
                waits = invocations
                    .iter()
                    .enumerate()
                    .map(|(i, inv)| {
                        selected(i)
                            && uncompiled.contains(&inv.plugin.as_str())
                            && !local.as_ref().is_some_and(|c| c.contains(&inv.key))
                    })
                    .collect();
                let mut sized: Vec<(u64, &str)> = uncompiled
                    .iter()
                    .filter(|n| invocations.iter().zip(&waits).any(|(inv, w)| *w && inv.plugin == **n))
                    .map(|n| {
                        let path = self.project.root.join(&self.project.file.plugins[*n].path);
                        (std::fs::metadata(path).map_or(0, |m| m.len()), *n)
                    })
                    .collect();
                sized.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                ahead = sized.into_iter().map(|(_, n)| n).collect();
            }
            plugins.planned_calls(keys, local);
        }
        let k = ahead.len();

        // Worker phase: every invocation, `jobs` at a time, each after the invocations it needs.
        let results: Vec<OnceLock<Worked>> = invocations.iter().map(|_| OnceLock::new()).collect();
        let invoke = RunContext { cache, plugins: &plugins, root: &root, limits };
        let deps: Vec<Vec<usize>> = (0..k)
            .map(|_| Vec::new())
            .chain(invocations.iter().enumerate().map(|(n, i)| {
                let wait = waits.get(n).copied().unwrap_or(false);
                let load = ahead.iter().position(|&p| p == i.plugin).filter(|_| wait);
                i.deps().map(|d| d + k).chain(load).collect()
            }))
            .collect();
        crate::scheduler::run_dag(&deps, jobs, options.fail_fast, |t| {
            if let Some(&name) = ahead.get(t) {
                // A load error is reported by each invocation of the plugin.
                let _ = plugins.get(name);
                return true;
            }
            let i = t - k;
            if !selected(i) {
                return true;
            }
            let inv = &invocations[i];
            let worked = self.run_one(inv, invocations, &results, &invoke);
            on_event(Event::Finished {
                entry: &inv.entry,
                schema: &inv.schema,
                hit: worked.hit,
                ok: worked.result.is_ok(),
            });
            let ok = worked.result.is_ok();
            let _ = results[i].set(worked);
            ok
        });

        // Commit phase, in plan order (clashes are decided deterministically); spawned
        // invocations follow the invocation that spawned them.
        let lock_path = self.project.root.join(LOCK_FILE);
        let previous = Lock::read(&lock_path).filter(|l| l.output == output_shown);
        let mut commit = Commit::new(&root, limits, previous, output_shown.clone());
        commit.dry = dry;
        let place = |inv: &PlannedInvocation, d| self.place(inv, d);
        for (i, (inv, slot)) in invocations.iter().zip(results).enumerate() {
            if !selected(i) {
                continue;
            }
            let mut worked =
                slot.into_inner().unwrap_or_else(|| Worked::skipped(crate::report::STOPPED_BY_FAIL_FAST.to_owned()));
            let children = std::mem::take(&mut worked.children);
            commit.add(inv, worked, &place);
            for (child, worked) in children {
                commit.add(&child, worked, &place);
            }
        }
        commit.lock.registry_plugins.clone_from(&self.registry_plugins);
        commit.lock.registry = self
            .schemas
            .registry_picks()
            .iter()
            .map(|(name, (version, file))| {
                let digest = self.schemas.sources().text(file).map(|t| qpf_core::digest_of(t.as_bytes()));
                let locked = crate::lock::LockedFragment {
                    version: version.to_string(),
                    file: file.display().to_string(),
                    digest: digest.unwrap_or_default(),
                };
                (name.clone(), locked)
            })
            .collect();
        let removed = if dry {
            Vec::new()
        } else {
            let removed = commit.prune();
            commit.lock.write(&lock_path).map_err(|source| EngineError::Io { path: lock_path.clone(), source })?;
            root.save_stat_cache();
            removed
        };
        let audit_path = self.project.state_dir().join("audit.jsonl");
        let audit: Vec<_> = commit.records.iter().map(|r| r.audit(&time, "default")).collect();
        audit::append(&audit_path, &audit).map_err(|source| EngineError::Io { path: audit_path, source })?;
        let mut warnings: Vec<String> =
            commit.warnings.into_iter().chain(tier.iter().flat_map(crate::remote::Tiered::warnings)).collect();
        let remote = tier.as_ref().map(crate::remote::Tiered::summary);
        let shard = options.shard.map(|s| {
            let summary = &commit.summary;
            let marker = ShardMarker {
                format: 1,
                plan: self.plan.digest(),
                shard: format!("{}/{}", s.index, s.count),
                invocations: summary.invocations,
                failed: summary.failed + summary.skipped,
            };
            let complete = remote.as_ref().is_some_and(|r| r.errors == 0 && !r.disabled);
            let stored = match &self.settings.remote {
                Some(r) if !r.read_only && !complete => {
                    warnings.push(format!(
                        "remote cache `{}`: the shard's marker is not stored: some of its results may not have reached the remote (see the failures above); run the shard again",
                        r.store.describe()
                    ));
                    false
                }
                Some(r) if !r.read_only => {
                    let json = serde_json::to_vec(&marker).unwrap_or_default();
                    match r.store.put_entry(&marker_name(&r.salt, &marker.plan, s), &json, &[]) {
                        Ok(()) => true,
                        Err(e) => {
                            warnings.push(format!(
                                "remote cache `{}`: cannot store the shard's marker: {e}",
                                r.store.describe()
                            ));
                            false
                        }
                    }
                }
                _ => false,
            };
            ShardReport { marker, stored }
        });
        let complete = commit.summary.failed == 0 && commit.summary.skipped == 0 && warnings.is_empty();
        if !dry && complete && crate::snapshot::applies(&self.settings, options) {
            let ran = crate::snapshot::Ran {
                root: &self.project.root,
                began: self.began,
                files: self.input_files(),
                dirs: self.walked_dirs.iter().map(|d| self.project.root.join(d)).collect(),
                output_root: &output_path,
                output: &output_shown,
                outputs: commit.lock.files.keys().cloned().collect(),
                summary: &commit.summary,
                records: &commit.records,
            };
            crate::snapshot::write(&ran, &self.settings, options, &self.secret);
        }
        Ok(Report {
            format: REPORT_FORMAT,
            output: output_shown,
            jobs,
            load_us: self.load_us,
            duration_us: started.elapsed().as_micros() as u64,
            summary: commit.summary,
            invocations: commit.records.iter().map(InvocationRecord::report).collect(),
            removed,
            remote,
            shard,
            warnings,
            replayed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn an_output_root_is_searched_for_schemas_only_when_a_glob_could_match_in_it() {
        let may = |g: &str, d: &str| super::glob_may_match_under(g, Path::new(d));
        assert!(!may("probes/*.yaml", "out"));
        assert!(!may("agents/*.yaml", "out/agents"));
        assert!(may("schemas/*.yaml", "schemas"));
        assert!(may("out/*.yaml", "out/x"));
        assert!(may("**/*.yaml", "out"));
        assert!(may("*.yaml", "out"));
        assert!(may("{a,b}/*.yaml", "out"));
    }
}
