//! The [`Runtime`]: one wasmtime `Engine`, one linker, the epoch ticker, and [`Runtime::invoke`],
//! which runs one invocation in a fresh `Store` under its [`Limits`].

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::compiled_cache::CompiledCache;
use crate::log::{LogLevel, LogLine};
use crate::log_sink::LogSink;
use crate::plugin::Plugin;
use crate::random::SeededStream;
use crate::{Invocation, Limits, LoadLimits, Request, RuntimeError, SandboxError};

mod load;
mod store;

pub use load::Inspection;
pub(crate) use store::StoreState;
use store::{Denied, EpochTicker, FrozenClock, Limiter, LogBudget};

/// How often the epoch ticker advances the engine's epoch (the deadline's resolution).
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The shortest period between two yields of a running invocation.
const MIN_YIELD: Duration = Duration::from_micros(250);

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
    /// The most bytes the folder may hold: after each new artifact, the least recently used ones
    /// are removed until it fits ([`DEFAULT_COMPILED_CACHE_MAX`] by default).
    pub max_bytes: u64,
}

/// The default size cap of the compiled-plugin cache: 2 GiB (a Python or JavaScript plugin
/// compiles to 30–60 MB).
pub const DEFAULT_COMPILED_CACHE_MAX: u64 = 2 << 30;

impl CompiledCacheOptions {
    /// The cache at `dir`, authenticated with `secret`, capped at [`DEFAULT_COMPILED_CACHE_MAX`].
    pub fn new(dir: PathBuf, secret: [u8; 32]) -> CompiledCacheOptions {
        CompiledCacheOptions { dir, secret, max_bytes: DEFAULT_COMPILED_CACHE_MAX }
    }

    /// The digests (`blake3:<hex>`) of the plugins the folder holds an artifact of, for any
    /// engine or compiler: one listing of the folder, nothing read or verified (a load still
    /// verifies). Empty when the folder cannot be listed.
    pub fn compiled_digests(&self) -> std::collections::BTreeSet<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Default::default() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".cwasm")?;
                let (hex, _engine) = stem.split_once('-')?;
                Some(format!("blake3:{hex}"))
            })
            .collect()
    }
}

impl std::fmt::Debug for CompiledCacheOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCacheOptions").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Which of wasmtime's compilers turns a plugin into native code. The plugin's results are the
/// same with either (WebAssembly's semantics are deterministic and the sandbox is the same); what
/// differs is the cost: Winch, a single-pass baseline compiler, compiles 5–7 times faster, and its
/// code runs slower than Cranelift's optimised code. The fuel an invocation consumes is counted by
/// each compiler's own instrumentation, so the figures differ (Winch's were about 5 % lower on the
/// example's plugins); the limit is the same. Each compiler's artifacts are cached under their own
/// key (the engine's compatibility hash covers the compiler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compiler {
    /// Cranelift, optimising (the default).
    #[default]
    Cranelift,
    /// Winch, the baseline compiler: fast to compile, slower to run.
    Winch,
}

impl Compiler {
    /// `cranelift` or `winch`.
    pub fn name(self) -> &'static str {
        match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        }
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
    /// A running invocation gives its core back to the operating system (`sched_yield`) this
    /// often (at least every 250 µs; the epoch ticker then ticks as often), so that a thread waiting for a core gets it within that time even
    /// when the scheduler would let the plugin finish a longer time slice: for services where
    /// short requests share the cores with long ones. `None` (the default) never yields. It
    /// changes no result: only when the plugin's thread runs.
    pub yield_every: Option<Duration>,
    /// The compiler of every plugin this runtime loads.
    pub compiler: Compiler,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            compiled_cache: None,
            load_limits: LoadLimits::default(),
            max_memory_bytes: Limits::default().memory_bytes,
            max_concurrency: 16,
            pooling: true,
            yield_every: None,
            compiler: Compiler::Cranelift,
        }
    }
}

/// One wasmtime engine and everything needed to load and run plugins on it. Cheap to share across
/// threads (`&Runtime` is `Sync`); holds no process-global state.
pub struct Runtime {
    engine: Engine,
    compiler: Compiler,
    linker: Linker<StoreState>,
    cache: Option<CompiledCache>,
    load_limits: LoadLimits,
    pooling: bool,
    /// The epoch ticker's period.
    tick: Duration,
    /// Ticks between two yields, when invocations yield.
    yield_ticks: Option<u64>,
    ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("pooling", &self.pooling).finish_non_exhaustive()
    }
}

fn base_config(compiler: Compiler) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.strategy(match compiler {
        Compiler::Cranelift => wasmtime::Strategy::Cranelift,
        Compiler::Winch => wasmtime::Strategy::Winch,
    });
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
            let mut config = base_config(options.compiler);
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
            None => Engine::new(&base_config(options.compiler)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?,
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Link { what: "WASI", message: format!("{e:#}") })?;
        // Every contract version's `log`, side by side (`qpf:extractor/log@0.1.0`, `@0.2.0`).
        crate::bindings::v0_1::Extractor::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .and_then(|()| {
                crate::bindings::v0_2::Extractor::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            })
            .map_err(|e| RuntimeError::Link { what: "the log interface", message: format!("{e:#}") })?;
        let cache = options.compiled_cache.as_ref().map(|c| CompiledCache::new(&c.dir, &c.secret, c.max_bytes));
        let every = options.yield_every.map(|d| d.max(MIN_YIELD));
        let tick = every.map_or(EPOCH_TICK, |d| d.min(EPOCH_TICK));
        let yield_ticks = every.map(|d| (d.as_micros() / tick.as_micros()).max(1) as u64);
        let ticker = EpochTicker::start(&engine, tick).map_err(|e| RuntimeError::Ticker(e.to_string()))?;
        Ok(Runtime {
            engine,
            compiler: options.compiler,
            linker,
            cache,
            load_limits: options.load_limits.clone(),
            pooling,
            tick,
            yield_ticks,
            ticker,
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// The compiler of the plugins this runtime loads.
    pub fn compiler(&self) -> Compiler {
        self.compiler
    }

    /// Whether the compiled-plugin cache holds an artifact of the plugin with this digest for
    /// this runtime's engine (a look at its file, not a verification: a load still checks it).
    pub fn has_compiled(&self, digest: &str) -> bool {
        self.cache.as_ref().is_some_and(|c| c.holds(&self.engine, digest))
    }

    /// The wasmtime engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
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
            _running: self.ticker.running(),
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
        match self.yield_ticks {
            None => {
                let tick_us = u64::try_from(self.tick.as_micros()).unwrap_or(u64::MAX).max(1);
                store.set_epoch_deadline(limits.deadline_ms.saturating_mul(1000).div_ceil(tick_us).max(1));
                store.epoch_deadline_trap();
            }
            Some(ticks) => {
                // The deadline is then kept by the clock, checked at every yield.
                let deadline = std::time::Instant::now() + Duration::from_millis(limits.deadline_ms);
                store.set_epoch_deadline(ticks);
                store.epoch_deadline_callback(move |_| {
                    if std::time::Instant::now() >= deadline {
                        return Ok(wasmtime::UpdateDeadline::Interrupt);
                    }
                    std::thread::yield_now();
                    Ok(wasmtime::UpdateDeadline::Continue(ticks))
                });
            }
        }
        store.set_hostcall_fuel(
            usize::try_from(limits.max_output_bytes.saturating_add(HOSTCALL_SLACK)).unwrap_or(usize::MAX),
        );
        (store, stdout, stderr)
    }

    /// Calls `info()` under the project's limits; one call may carry at most
    /// [`crate::budgets::INFO_TRANSFER_BYTES`].
    fn call_info(
        &self,
        world: &crate::plugin::World,
        digest: &str,
        limits: &Limits,
    ) -> Result<crate::PluginInfo, SandboxError> {
        let limits = Limits {
            max_output_bytes: limits.max_output_bytes.min(crate::budgets::INFO_TRANSFER_BYTES),
            ..limits.clone()
        };
        let seed =
            *blake3::Hasher::new_derive_key("qpf sandbox info seed v1").update(digest.as_bytes()).finalize().as_bytes();
        let (mut store, _, stderr) = self.new_store(&limits, &seed);
        store.set_hostcall_fuel(crate::budgets::INFO_TRANSFER_BYTES as usize);
        macro_rules! info {
            ($pre:expr, $v:ident) => {
                match $pre.instantiate(&mut store) {
                    Err(e) => Err((e, Phase::Instantiate)),
                    Ok(i) => i.call_info(&mut store).map(crate::plugin::$v::info).map_err(|e| (e, Phase::Call)),
                }
            };
        }
        let called = match world {
            crate::plugin::World::V0_1(pre) => info!(pre, v0_1),
            crate::plugin::World::V0_2(pre) => info!(pre, v0_2),
        };
        called.map_err(|(e, phase)| with_last_words(classify(e, &store, &limits, phase), &store, &stderr))
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
        macro_rules! extract {
            ($pre:expr, $v:ident) => {
                match $pre.instantiate(&mut store) {
                    Err(e) => Err((e, Phase::Instantiate)),
                    Ok(i) => i
                        .call_extract(&mut store, &crate::plugin::$v::request(request))
                        .map(crate::plugin::$v::result)
                        .map_err(|e| (e, Phase::Call)),
                }
            };
        }
        let called = match plugin.world() {
            crate::plugin::World::V0_1(pre) => extract!(pre, v0_1),
            crate::plugin::World::V0_2(pre) => extract!(pre, v0_2),
        };
        let fuel_consumed = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let result =
            called.map_err(|(e, phase)| with_last_words(classify(e, &store, limits, phase), &store, &stderr))?;
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
        Ok(Invocation { result, fuel_consumed, logs })
    }
}

/// Most bytes of a crashing plugin's stderr kept in its trap report.
const LAST_WORDS_BYTES: usize = 2048;

/// Puts what a crashing plugin said last at the head of its trap report: its error-level log lines
/// (the Rust SDK logs a panic's message and location there) and the end of its stderr (where a
/// panic hook of the standard library writes). Other errors are returned as they are.
fn with_last_words(error: SandboxError, store: &Store<StoreState>, stderr: &LogSink) -> SandboxError {
    let SandboxError::Trap { message } = error else { return error };
    let mut words = String::new();
    let errors = store.data().logs.iter().filter(|l| l.level == LogLevel::Error);
    for line in errors.rev().take(5).collect::<Vec<_>>().into_iter().rev() {
        words.push_str(&line.message);
        words.push('\n');
    }
    let (bytes, _) = stderr.take();
    let tail = &bytes[bytes.len().saturating_sub(LAST_WORDS_BYTES)..];
    let text = String::from_utf8_lossy(tail);
    let text = text.trim();
    if !text.is_empty() && !words.contains(text) {
        words.push_str(text);
        words.push('\n');
    }
    if words.is_empty() {
        return SandboxError::Trap { message };
    }
    let message = format!("{}{message}", words.trim_start());
    SandboxError::Trap { message: crate::budgets::truncate(message, crate::budgets::MAX_MESSAGE_BYTES) }
}

/// Where a wasmtime error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
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
