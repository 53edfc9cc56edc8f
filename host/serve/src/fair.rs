//! The worker pool shared by tenants, served round-robin: when a worker frees, it goes to the next
//! tenant in turn that has a request waiting, not to the oldest request. And no tenant holds more
//! than `cap` workers at once (the service keeps one worker out of any single tenant's reach when
//! it serves several), so a tenant that floods the service with long invocations leaves a worker
//! for the others: their requests wait for that worker's current request, not for the flood.
//!
//! The pool also keeps each tenant's recent use of the workers (busy time, decaying with a
//! half-life of [`HALF_LIFE`]) and the typical length of its work. While another tenant is active
//! (it holds or waits for a worker, or used them lately), a tenant's work is marked
//! [`Worker::low`], to run at the lowest CPU priority ([`crate::lanes`]), when the tenant uses
//! more than its share of the workers, or when its work is long (at least [`LONG`] lately): short requests then preempt long ones, as an
//! operating system favours interactive work over batch work, so a flood of long invocations
//! cannot take the cores' time from the others' requests. Neither rule starves anyone: a low
//! thread still gets every idle cycle, and a tenant whose short requests take more than their
//! share runs low too, which puts both back on an equal footing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How fast a tenant's recorded use of the workers fades.
pub const HALF_LIFE: Duration = Duration::from_secs(1);

/// A tenant counts as active while its recorded use is at least this (busy seconds; a tenant
/// keeping 4 % of a worker busy stays above it).
const ACTIVE: f64 = 0.05;

/// Work at least this long (the tenant's recent average) runs low while others wait or run.
pub const LONG: Duration = Duration::from_millis(1);

/// How much one piece of work moves a tenant's average length.
const LENGTH_WEIGHT: f64 = 0.2;

/// A tenant is low when its part of all recorded use exceeds its fair share by this factor (the
/// margin keeps two equally busy tenants from trading places).
const MARGIN: f64 = 1.25;

/// The pool.
#[derive(Debug)]
pub struct FairPool {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Most workers one tenant may hold at once.
    cap: usize,
    /// Workers held, by tenant.
    held: BTreeMap<String, usize>,
    /// Waiting requests, by tenant, oldest first.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<Worker>>>,
    /// Tenants with a request waiting, in turn order.
    turn: VecDeque<String>,
    /// Recent use of the workers, by tenant.
    usage: BTreeMap<String, Usage>,
}

/// A tenant's busy time on the workers, decayed to `at`, and the average length of its work (an
/// exponential moving average, in seconds).
#[derive(Debug, Clone, Copy)]
struct Usage {
    busy: f64,
    at: Instant,
    length: f64,
}

impl Usage {
    fn decayed(self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.at).as_secs_f64();
        self.busy * 0.5f64.powf(age / HALF_LIFE.as_secs_f64())
    }
}

impl State {
    /// Records that `tenant` held a worker for `busy`.
    fn record(&mut self, tenant: &str, busy: Duration, now: Instant) {
        let busy = busy.as_secs_f64();
        let usage = match self.usage.get(tenant) {
            Some(u) => {
                Usage { busy: u.decayed(now) + busy, at: now, length: u.length + LENGTH_WEIGHT * (busy - u.length) }
            }
            None => Usage { busy, at: now, length: busy },
        };
        self.usage.insert(tenant.to_owned(), usage);
        // Forget tenants long idle, so the map stays as small as the set of active tenants.
        self.usage.retain(|t, u| t == tenant || u.decayed(now) >= ACTIVE / 100.0);
    }

    /// Whether `tenant` is active: it holds or waits for a worker now, or its recorded use is
    /// at least [`ACTIVE`] (`busy`, decayed to now).
    fn active(&self, tenant: &str, busy: f64) -> bool {
        busy >= ACTIVE || self.held.contains_key(tenant) || self.waiting.contains_key(tenant)
    }

    /// Whether `tenant`'s next work should run low: another tenant is active (without
    /// contention, priority changes nothing), and `tenant`'s work is long or it uses more than
    /// its share.
    fn low(&self, tenant: &str, now: Instant) -> bool {
        let busy = |t: &str| self.usage.get(t).map_or(0.0, |u| u.decayed(now));
        let mut others = self.held.keys().chain(self.waiting.keys()).chain(self.usage.keys());
        if !others.any(|t| t != tenant && self.active(t, busy(t))) {
            return false;
        }
        let long = self.usage.get(tenant).is_some_and(|u| u.length >= LONG.as_secs_f64());
        long || self.over_share(tenant, now)
    }

    /// Whether `tenant` uses more than its share of all recorded use while other tenants are
    /// active too.
    fn over_share(&self, tenant: &str, now: Instant) -> bool {
        let (mut total, mut active, mut own) = (0.0, 0usize, 0.0);
        for (t, u) in &self.usage {
            let busy = u.decayed(now);
            total += busy;
            active += usize::from(self.active(t, busy));
            if t == tenant {
                own = busy;
            }
        }
        active > 1 && own * active as f64 > total * MARGIN
    }
}

/// A worker held; dropping it frees the worker for the next tenant in turn.
#[derive(Debug)]
pub struct Worker {
    pool: Arc<FairPool>,
    tenant: String,
    since: Instant,
    low: bool,
}

impl Worker {
    fn new(pool: &Arc<FairPool>, s: &State, tenant: &str) -> Worker {
        let now = Instant::now();
        Worker { pool: pool.clone(), tenant: tenant.to_owned(), since: now, low: s.low(tenant, now) }
    }

    /// Whether this work should run at low priority (see the module's documentation).
    pub fn low(&self) -> bool {
        self.low
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        FairPool::release(&self.pool, &self.tenant, self.since.elapsed());
    }
}

impl FairPool {
    /// A pool of `workers` workers, of which one tenant may hold at most `cap`.
    pub fn new(workers: usize, cap: usize) -> Arc<FairPool> {
        let workers = workers.max(1);
        Arc::new(FairPool {
            state: Mutex::new(State { free: workers, cap: cap.clamp(1, workers), ..State::default() }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }

    /// Waits for a worker for `tenant`, in its turn.
    pub async fn acquire(self: &Arc<Self>, tenant: &str) -> Worker {
        loop {
            let rx = {
                let mut s = self.lock();
                let held = s.held.get(tenant).copied().unwrap_or(0);
                if s.free > 0 && held < s.cap && !s.turn.iter().any(|t| s.held.get(t).copied().unwrap_or(0) < s.cap) {
                    s.free -= 1;
                    *s.held.entry(tenant.to_owned()).or_default() += 1;
                    return Worker::new(self, &s, tenant);
                }
                let (tx, rx) = oneshot::channel();
                s.waiting.entry(tenant.to_owned()).or_default().push_back(tx);
                if !s.turn.iter().any(|t| t == tenant) {
                    s.turn.push_back(tenant.to_owned());
                }
                rx
            };
            // A dropped sender (never, short of a bug) would mean waiting again.
            if let Ok(worker) = rx.await {
                return worker;
            }
        }
    }

    /// `tenant` gives its worker back: it goes to the next tenant in turn under its cap, or
    /// stays free.
    fn release(self: &Arc<Self>, tenant: &str, busy: Duration) {
        let mut s = self.lock();
        s.record(tenant, busy, Instant::now());
        if let Some(n) = s.held.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                s.held.remove(tenant);
            }
        }
        s.free += 1;
        self.dispatch(&mut s);
    }

    /// Hands free workers to waiting tenants, round-robin, each under its cap.
    fn dispatch(self: &Arc<Self>, s: &mut State) {
        'free: while s.free > 0 {
            for _ in 0..s.turn.len() {
                let Some(tenant) = s.turn.pop_front() else { break 'free };
                if s.held.get(&tenant).copied().unwrap_or(0) >= s.cap {
                    s.turn.push_back(tenant);
                    continue;
                }
                let Some(queue) = s.waiting.get_mut(&tenant) else { continue };
                let Some(tx) = queue.pop_front() else { continue };
                if queue.is_empty() {
                    s.waiting.remove(&tenant);
                } else {
                    s.turn.push_back(tenant.clone());
                }
                s.free -= 1;
                *s.held.entry(tenant.clone()).or_default() += 1;
                // If the waiter went away (its client disconnected), take the worker back without
                // releasing it through `Drop` (the lock is held).
                if let Err(worker) = tx.send(Worker::new(self, s, &tenant)) {
                    std::mem::forget(worker);
                    s.free += 1;
                    if let Some(n) = s.held.get_mut(&tenant) {
                        *n -= 1;
                        if *n == 0 {
                            s.held.remove(&tenant);
                        }
                    }
                }
                continue 'free;
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_freed_worker_goes_to_the_next_tenant_in_turn() {
        let pool = FairPool::new(1, 1);
        let held = pool.acquire("a").await;
        // A queues three requests, then B one: B is served second, not fourth.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, tenant) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let (pool, order) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let w = pool.acquire(tenant).await;
                order.lock().unwrap().push(format!("{tenant}{i}"));
                drop(w);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.waiting(), 4);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["a0", "b3", "a1", "a2"]);
        assert_eq!(pool.waiting(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_tenant_never_holds_more_than_its_cap() {
        let pool = FairPool::new(2, 1);
        let a1 = pool.acquire("a").await;
        // A's second request waits although a worker is free: the free one is kept for others.
        let a2 = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire("a").await }
        });
        tokio::task::yield_now().await;
        assert_eq!(pool.waiting(), 1);
        let b = tokio::time::timeout(std::time::Duration::from_secs(5), pool.acquire("b")).await;
        assert!(b.is_ok(), "B gets the kept worker at once");
        drop(a1);
        let a2 = tokio::time::timeout(std::time::Duration::from_secs(5), a2).await;
        assert!(a2.is_ok(), "A's second request runs once its first is done");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tenant_over_its_share_runs_low_while_others_are_active() {
        let pool = FairPool::new(3, 3);
        let now = Instant::now();
        // Many short pieces of work: the average length stays short.
        let record = |tenant: &str, ms: u64| {
            for _ in 0..ms * 10 {
                pool.lock().record(tenant, Duration::from_micros(100), now);
            }
        };
        // Alone, any amount of use keeps normal priority.
        record("a", 900);
        assert!(!pool.acquire("a").await.low());
        // B used a worker for a moment lately and holds none now: no contention, no change.
        record("b", 10);
        assert!(!pool.acquire("a").await.low());
        // B runs something: A, over its share, runs low; B does not.
        let b = pool.acquire("b").await;
        assert!(!b.low());
        assert!(pool.acquire("a").await.low());
        // Both about equally busy: neither.
        record("b", 890);
        assert!(!pool.acquire("a").await.low());
        drop(b);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn long_work_runs_low_while_another_tenant_works() {
        let pool = FairPool::new(3, 3);
        let now = Instant::now();
        // B as busy as A, but in short pieces; A's pieces are long.
        for _ in 0..20 {
            pool.lock().record("a", LONG * 4, now);
        }
        for _ in 0..800 {
            pool.lock().record("b", LONG / 10, now);
        }
        assert!(pool.acquire("a").await.low(), "B is active");
        let b = pool.acquire("b").await;
        assert!(!b.low());
        let a = pool.acquire("a").await;
        assert!(a.low());
        assert!(!pool.acquire("b").await.low(), "B's short work stays normal while A runs");
        drop((a, b));
    }

    #[test]
    fn recorded_use_halves_every_half_life_and_idle_tenants_are_forgotten() {
        let now = Instant::now();
        let u = Usage { busy: 1.0, at: now, length: 1.0 };
        assert!((u.decayed(now + HALF_LIFE) - 0.5).abs() < 1e-9);
        let mut s = State::default();
        s.record("a", Duration::from_secs(1), now);
        s.record("b", Duration::from_millis(1), now + HALF_LIFE * 40);
        assert_eq!(s.usage.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_that_goes_away_does_not_lose_the_worker() {
        let pool = FairPool::new(1, 1);
        let held = pool.acquire("a").await;
        let gone = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire("b").await }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), pool.acquire("c")).await;
        assert!(again.is_ok(), "the worker came back");
    }
}
