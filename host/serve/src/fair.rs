//! The worker pool shared by tenants, served round-robin: when a worker frees, it goes to the next
//! tenant in turn that has a request waiting, not to the oldest request. And no tenant holds more
//! than `cap` workers at once (the service keeps one worker out of any single tenant's reach when
//! it serves several), so a tenant that floods the service with long invocations leaves a worker
//! for the others: their requests wait for that worker's current request, not for the flood.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

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
}

/// A worker held; dropping it frees the worker for the next tenant in turn.
#[derive(Debug)]
pub struct Worker {
    pool: Arc<FairPool>,
    tenant: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        FairPool::release(&self.pool, &self.tenant);
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
                    return Worker { pool: self.clone(), tenant: tenant.to_owned() };
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
    fn release(self: &Arc<Self>, tenant: &str) {
        let mut s = self.lock();
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
                if let Err(worker) = tx.send(Worker { pool: self.clone(), tenant: tenant.clone() }) {
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
