//! The [`Runtime`]: one wasmtime `Engine`, one linker, the epoch ticker, and [`Runtime::invoke`],
//! which runs one invocation in a fresh `Store` under its [`Limits`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::Extractor;
use crate::compiled_cache::CompiledCache;
use crate::log::{LogLevel, LogLine};
use crate::log_sink::LogSink;
use crate::plugin::Plugin;
use crate::random::SeededStream;
use crate::{Invocation, Limits, LoadError, LoadLimits, Request, RuntimeError, SandboxError};

/// How often the epoch ticker advances the engine's epoch (the deadline's resolution).
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Extra hostcall fuel beyond `max_output_bytes`, for paths, diagnostics and record overhead.
const HOSTCALL_SLACK: u64 = 1 << 20;

/// Maximum elements of one table in the instance pool (the per-invocation total is
/// `limits.table-elements`), and instances, tables and memories one plugin instance may create.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// Where compiled plugins are kept, and the secret that authenticates them.
#[derive(Clone)]
pub struct CompiledCacheOptions {
    /// The folder. It should be one that no plugin output can reach (see `docs/security.md`);
    /// artifacts are authenticated anyway, so a forged one is recompiled, never loaded.
    pub dir: PathBuf,
    /// The key of the artifacts' MACs. It must not be stored where a project or a plugin can
    /// read or write it.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for CompiledCacheOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCacheOptions").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The compiled-plugin cache; `None` compiles every plugin on every load.
    pub compiled_cache: Option<CompiledCacheOptions>,
    /// What loading one plugin may cost.
    pub load_limits: LoadLimits,
    /// The largest `Limits::memory_bytes` any invocation will use (sizes the instance pool).
    pub max_memory_bytes: u64,
    /// How many invocations may run at once (sizes the instance pool).
    pub max_concurrency: u32,
    /// Use the pooling allocator when the machine can reserve it (falls back otherwise).
    pub pooling: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            compiled_cache: None,
            load_limits: LoadLimits::default(),
            max_memory_bytes: Limits::default().memory_bytes,
            max_concurrency: 16,
            pooling: true,
        }
    }
}

/// Per-invocation store data: WASI with nothing granted, the resource limiter and the log.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) log_budget: LogBudget,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Bounds the log lines kept per invocation: each line costs its bytes plus
/// [`crate::limits::LOG_LINE_OVERHEAD`], so that neither long lines nor many empty ones can grow
/// the host's memory past `limits.max-log-bytes`.
pub(crate) struct LogBudget {
    remaining: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl LogBudget {
    pub(crate) fn push(&mut self, logs: &mut Vec<LogLine>, level: LogLevel, message: String) {
        let cost = message.len().saturating_add(crate::limits::LOG_LINE_OVERHEAD);
        if cost <= self.remaining {
            self.remaining -= cost;
            logs.push(LogLine { level, message });
        } else {
            self.remaining = 0;
            self.dropped_lines += 1;
            self.dropped_bytes += message.len() as u64;
        }
    }
}

/// What the limiter refused first.
#[derive(Debug, Clone, Copy)]
enum Denied {
    Memory(u64),
    Table(u64),
}

/// Enforces the memory and table caps over the whole invocation (every memory and every table of
/// every core instance together), and remembers what it refused (so that the trap or failed
/// instantiation that follows is reported as a limit breach, not as a crash).
struct Limiter {
    memory_bytes: u64,
    table_elements: u64,
    memory_total: u64,
    table_total: u64,
    denied: Option<Denied>,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            memory_total: 0,
            table_total: 0,
            denied: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.memory_total.saturating_add(growth);
        if total > self.memory_bytes {
            self.denied.get_or_insert(Denied::Memory(total));
            return Ok(false);
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.table_total.saturating_add(growth);
        if total > self.table_elements || desired > MAX_TABLE_ELEMENTS {
            self.denied.get_or_insert(Denied::Table(total));
            return Ok(false);
        }
        self.table_total = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Wall clock and monotonic clock that always read zero: a plugin cannot observe time.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Advances the engine's epoch until the runtime is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new().name("qpf-epoch".to_owned()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

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

/// One wasmtime engine and everything needed to load and run plugins on it. Cheap to share across
/// threads (`&Runtime` is `Sync`); holds no process-global state.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Option<CompiledCache>,
    load_limits: LoadLimits,
    pooling: bool,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("pooling", &self.pooling).finish_non_exhaustive()
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

fn pooling_config(options: &RuntimeOptions) -> PoolingAllocationConfig {
    let slots = options.max_concurrency.clamp(1, 256) * 2;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // Components from componentize-py hold dozens of core instances and several memories and
        // tables; a slot must fit the largest plugin, or concurrent invocations exhaust the pool.
        .total_core_instances(slots * MAX_INSTANCES as u32)
        .total_memories(slots * 8)
        .total_tables(slots * 8)
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .max_core_instances_per_component(MAX_INSTANCES as u32)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
        .table_elements(MAX_TABLE_ELEMENTS)
        // Keeping a little of each slot resident avoids the mmap/madvise contention that made
        // two threads slower than one (MEASURED.md).
        .linear_memory_keep_resident(16 << 20)
        .table_keep_resident(64 << 10);
    pool
}

impl Runtime {
    /// Creates the engine (pooling allocator if it can reserve its pool, on-demand otherwise), the
    /// linker with the sandbox's imports, and the epoch ticker.
    ///
    /// # Errors
    /// When wasmtime cannot create an engine at all, or the ticker thread cannot start.
    pub fn new(options: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let mut engine = None;
        let mut pooling = false;
        if options.pooling {
            let mut config = base_config();
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(options)));
            match Engine::new(&config) {
                Ok(e) => {
                    engine = Some(e);
                    pooling = true;
                }
                Err(e) => tracing::warn!("pooling allocator unavailable, using on-demand allocation: {e:#}"),
            }
        }
        let engine = match engine {
            Some(e) => e,
            None => Engine::new(&base_config()).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?,
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Link { what: "WASI", message: format!("{e:#}") })?;
        Extractor::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Link { what: "the log interface", message: format!("{e:#}") })?;
        let cache = options.compiled_cache.as_ref().map(|c| CompiledCache::new(&c.dir, &c.secret));
        let ticker = EpochTicker::start(&engine).map_err(|e| RuntimeError::Ticker(e.to_string()))?;
        Ok(Runtime { engine, linker, cache, load_limits: options.load_limits.clone(), pooling, _ticker: ticker })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// The wasmtime engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

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
        let pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link {
            path: path.to_owned(),
            message: crate::plugin::explain_link_error(&component, &self.engine, &e),
        })?;
        let pre = crate::bindings::ExtractorPre::new(pre)
            .map_err(|e| LoadError::Link { path: path.to_owned(), message: format!("{e:#}") })?;
        let info = match cached_info {
            Some(info) => {
                crate::budgets::check_info(&info)
                    .map_err(|problem| LoadError::BadInfo { path: path.to_owned(), problem })?;
                info
            }
            None => {
                let info = self.call_info(&pre, &digest, limits).map_err(|e| match e {
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
        Ok(Plugin::new(path.to_owned(), digest, pre, info))
    }

    /// A fresh store under `limits`, whose randomness derives from `seed` (see [`crate::random`]).
    fn new_store(&self, limits: &Limits, seed: &[u8; 32]) -> (Store<StoreState>, LogSink, LogSink) {
        let capacity = limits.max_log_bytes as usize;
        let stdout = LogSink::new(capacity);
        let stderr = LogSink::new(capacity);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(SeededStream::new("qpf sandbox secure random v1", seed))
            .insecure_random(SeededStream::new("qpf sandbox insecure random v1", seed))
            .insecure_random_seed(SeededStream::seed_u128("qpf sandbox insecure seed v1", seed))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            logs: Vec::new(),
            log_budget: LogBudget { remaining: capacity, dropped_lines: 0, dropped_bytes: 0 },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Fuel is enabled in the engine config, so these cannot fail.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(limits.deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1));
        store.epoch_deadline_trap();
        store.set_hostcall_fuel(
            usize::try_from(limits.max_output_bytes.saturating_add(HOSTCALL_SLACK)).unwrap_or(usize::MAX),
        );
        (store, stdout, stderr)
    }

    /// Calls `info()` under the project's limits; one call may carry at most
    /// [`crate::budgets::INFO_TRANSFER_BYTES`].
    fn call_info(
        &self,
        pre: &crate::bindings::ExtractorPre<StoreState>,
        digest: &str,
        limits: &Limits,
    ) -> Result<crate::PluginInfo, SandboxError> {
        let limits = Limits {
            max_output_bytes: limits.max_output_bytes.min(crate::budgets::INFO_TRANSFER_BYTES),
            ..limits.clone()
        };
        let seed =
            *blake3::Hasher::new_derive_key("qpf sandbox info seed v1").update(digest.as_bytes()).finalize().as_bytes();
        let (mut store, _, _) = self.new_store(&limits, &seed);
        store.set_hostcall_fuel(crate::budgets::INFO_TRANSFER_BYTES as usize);
        let instance = pre.instantiate(&mut store).map_err(|e| classify(e, &store, &limits, Phase::Instantiate))?;
        let info = instance.call_info(&mut store).map_err(|e| classify(e, &store, &limits, Phase::Call))?;
        Ok(crate::plugin::info_from_wit(info))
    }

    /// Runs one invocation in a fresh instance under `limits`, its randomness seeded by `seed`
    /// (use [`crate::Seed::from_key`] with the invocation's cache key).
    ///
    /// Returns the plugin's answer (its response or its own `extract-error`) with the fuel it
    /// consumed and its bounded logs.
    ///
    /// # Errors
    /// A [`SandboxError`] when the plugin did not return normally: fuel, memory, deadline or output
    /// limit exceeded, or a trap.
    pub fn invoke(
        &self,
        plugin: &Plugin,
        request: &Request,
        limits: &Limits,
        seed: &crate::Seed,
    ) -> Result<Invocation, SandboxError> {
        let _span =
            tracing::debug_span!("invoke", plugin = %plugin.name(), entry = %request.entry, schema = %request.schema)
                .entered();
        let (mut store, stdout, stderr) = self.new_store(limits, &seed.0);
        let instance =
            plugin.pre().instantiate(&mut store).map_err(|e| classify(e, &store, limits, Phase::Instantiate))?;
        let wit_request = crate::plugin::request_to_wit(request);
        let result = instance.call_extract(&mut store, &wit_request);
        let fuel_consumed = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let result = result.map_err(|e| classify(e, &store, limits, Phase::Call))?;
        let mut logs = std::mem::take(&mut store.data_mut().logs);
        for (sink, level) in [(stdout, LogLevel::Stdout), (stderr, LogLevel::Stderr)] {
            let (bytes, dropped) = sink.take();
            for line in String::from_utf8_lossy(&bytes).lines() {
                logs.push(LogLine { level, message: line.to_owned() });
            }
            if dropped > 0 {
                logs.push(LogLine {
                    level,
                    message: format!("[{dropped} more bytes dropped: `limits.max-log-bytes`]"),
                });
            }
        }
        let budget = &store.data().log_budget;
        if budget.dropped_lines > 0 {
            logs.push(LogLine {
                level: LogLevel::Warn,
                message: format!(
                    "[{} more log lines ({} bytes) dropped: `limits.max-log-bytes`]",
                    budget.dropped_lines, budget.dropped_bytes
                ),
            });
        }
        Ok(Invocation { result: crate::plugin::result_from_wit(result), fuel_consumed, logs })
    }
}

/// Where a wasmtime error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
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

/// Turns a wasmtime error into the sandbox error that explains it.
fn classify(error: wasmtime::Error, store: &Store<StoreState>, limits: &Limits, phase: Phase) -> SandboxError {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => return SandboxError::OutOfFuel { limit: limits.fuel },
            Trap::Interrupt => return SandboxError::Deadline { limit_ms: limits.deadline_ms },
            _ => {}
        }
    }
    match store.data().limiter.denied {
        Some(Denied::Memory(requested)) => return SandboxError::Memory { limit: limits.memory_bytes, requested },
        Some(Denied::Table(requested)) => return SandboxError::Table { limit: limits.table_elements, requested },
        None => {}
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return SandboxError::Exited { code: exit.0 };
    }
    let message = format!("{error:#}");
    // wasmtime's `HostcallFuelExhausted` is private; its message is the only way to recognise it.
    // With guest frames on the stack, the plugin was calling the host (a log line, a write);
    // without, the host was taking the plugin's result.
    if message.contains("fuel allocated for hostcalls has been exhausted") {
        let in_guest = error.downcast_ref::<wasmtime::WasmBacktrace>().is_some_and(|bt| !bt.frames().is_empty());
        return if in_guest {
            SandboxError::Transfer { limit: limits.max_output_bytes }
        } else {
            SandboxError::OutputTooLarge { limit: limits.max_output_bytes }
        };
    }
    let budget = crate::budgets::MAX_MESSAGE_BYTES;
    if error.downcast_ref::<Trap>().is_some() {
        let detail = error.downcast_ref::<wasmtime::WasmBacktrace>().map(|bt| format!("\n{bt}")).unwrap_or_default();
        return SandboxError::Trap { message: crate::budgets::truncate(format!("{message}{detail}"), budget) };
    }
    let message = crate::budgets::truncate(message, budget);
    match phase {
        Phase::Instantiate => SandboxError::Instantiate { message },
        Phase::Call => SandboxError::Call { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_keeps_lines_until_full_then_counts() {
        let overhead = crate::limits::LOG_LINE_OVERHEAD;
        let mut budget = LogBudget { remaining: 5 + overhead, dropped_lines: 0, dropped_bytes: 0 };
        let mut logs = Vec::new();
        budget.push(&mut logs, LogLevel::Info, "abc".to_owned());
        budget.push(&mut logs, LogLevel::Info, "defg".to_owned());
        assert_eq!(logs.len(), 1);
        assert_eq!((budget.dropped_lines, budget.dropped_bytes), (1, 4));
    }

    #[test]
    fn memories_and_tables_count_together_per_invocation() {
        use wasmtime::ResourceLimiter;
        let limits = Limits { memory_bytes: 32 << 20, table_elements: 1000, ..Limits::default() };
        let mut limiter = Limiter::new(&limits);
        // Three core instances, each creating a 10 MiB memory: the third passes the total.
        assert!(limiter.memory_growing(0, 10 << 20, None).unwrap_or(false));
        assert!(limiter.memory_growing(0, 10 << 20, None).unwrap_or(false));
        assert!(limiter.memory_growing(0, 10 << 20, None).unwrap_or(false));
        assert!(!limiter.memory_growing(0, 10 << 20, None).unwrap_or(true), "40 MiB in all is over 32 MiB");
        // Growing one of them counts only the growth.
        assert!(limiter.memory_growing(10 << 20, 12 << 20, None).unwrap_or(false));
        assert!(matches!(limiter.denied, Some(Denied::Memory(n)) if n == 40 << 20));
        let mut tables = Limiter::new(&limits);
        assert!(tables.table_growing(0, 600, None).unwrap_or(false));
        assert!(!tables.table_growing(0, 600, None).unwrap_or(true));
        assert!(matches!(tables.denied, Some(Denied::Table(1200))));
    }

    #[test]
    fn empty_log_lines_are_not_free() {
        let mut budget = LogBudget { remaining: 64 << 10, dropped_lines: 0, dropped_bytes: 0 };
        let mut logs = Vec::new();
        for _ in 0..100_000 {
            budget.push(&mut logs, LogLevel::Info, String::new());
        }
        assert_eq!(logs.len(), (64 << 10) / crate::limits::LOG_LINE_OVERHEAD);
        assert_eq!(budget.dropped_lines, 100_000 - logs.len() as u64);
    }
}
