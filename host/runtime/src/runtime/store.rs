//! What one invocation's `Store` holds: WASI with nothing granted, the resource limiter over the
//! whole invocation, the bounded log, the frozen clock, and the epoch ticker behind deadlines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use crate::Limits;
use crate::log::{LogLevel, LogLine};

/// Per-invocation store data: WASI with nothing granted, the resource limiter and the log.
pub(crate) struct StoreState {
    /// Keeps the epoch ticker ticking while this store lives.
    pub(super) _running: Running,
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
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
    pub(super) remaining: usize,
    pub(super) dropped_lines: u64,
    pub(super) dropped_bytes: u64,
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
pub(super) enum Denied {
    Memory(u64),
    Table(u64),
}

/// Enforces the memory and table caps over the whole invocation (every memory and every table of
/// every core instance together), and remembers what it refused (so that the trap or failed
/// instantiation that follows is reported as a limit breach, not as a crash).
pub(super) struct Limiter {
    pub(super) memory_bytes: u64,
    pub(super) table_elements: u64,
    pub(super) memory_total: u64,
    pub(super) table_total: u64,
    pub(super) denied: Option<Denied>,
}

impl Limiter {
    pub(super) fn new(limits: &Limits) -> Self {
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
pub(super) struct FrozenClock;

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

/// Advances the engine's epoch every tick while an invocation runs, and sleeps otherwise (an idle
/// service costs no wake-ups); stops when the runtime is dropped.
pub(super) struct EpochTicker {
    shared: Arc<TickerShared>,
}

struct TickerShared {
    stop: AtomicBool,
    /// Stores alive now.
    running: Mutex<usize>,
    wake: Condvar,
}

impl TickerShared {
    fn running(&self) -> std::sync::MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Held by a store while it lives: the ticker ticks while any is held.
pub(crate) struct Running(Arc<TickerShared>);

impl Drop for Running {
    fn drop(&mut self) {
        *self.0.running() -= 1;
    }
}

impl EpochTicker {
    pub(super) fn start(engine: &Engine, tick: Duration) -> std::io::Result<Self> {
        let shared =
            Arc::new(TickerShared { stop: AtomicBool::new(false), running: Mutex::new(0), wake: Condvar::new() });
        let weak = engine.weak();
        let ticker = shared.clone();
        std::thread::Builder::new().name("qpf-epoch".to_owned()).spawn(move || {
            loop {
                {
                    let mut running = ticker.running();
                    while *running == 0 && !ticker.stop.load(Ordering::Relaxed) {
                        running = ticker.wake.wait(running).unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                }
                if ticker.stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(EpochTicker { shared })
    }

    /// Marks a store alive until the returned guard drops.
    pub(super) fn running(&self) -> Running {
        let mut running = self.shared.running();
        *running += 1;
        if *running == 1 {
            self.shared.wake.notify_one();
        }
        Running(self.shared.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _guard = self.shared.running();
        self.shared.wake.notify_one();
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
