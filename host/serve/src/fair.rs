//! The worker pool shared by tenants, served round-robin: when a worker frees, it goes to the next
//! tenant in turn that has a request waiting, not to the oldest request. A tenant that floods the
//! service (up to its `concurrent` requests waiting at once) therefore delays another tenant's
//! request by at most one of its invocations per worker, whatever its queue length.

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
    /// Waiting requests, by tenant, oldest first.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<Worker>>>,
    /// Tenants with a request waiting, in turn order.
    turn: VecDeque<String>,
}

/// A worker held; dropping it frees the worker for the next tenant in turn.
#[derive(Debug)]
pub struct Worker {
    pool: Arc<FairPool>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        FairPool::release(&self.pool);
    }
}

impl FairPool {
    /// A pool of `workers` workers.
    pub fn new(workers: usize) -> Arc<FairPool> {
        Arc::new(FairPool { state: Mutex::new(State { free: workers.max(1), ..State::default() }) })
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
                if s.free > 0 && s.turn.is_empty() {
                    s.free -= 1;
                    return Worker { pool: self.clone() };
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

    /// Hands a freed worker to the next tenant in turn, or keeps it free.
    fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        while let Some(tenant) = s.turn.pop_front() {
            let Some(queue) = s.waiting.get_mut(&tenant) else { continue };
            let next = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&tenant);
            } else {
                s.turn.push_back(tenant);
            }
            if let Some(tx) = next {
                // If the waiter went away (its client disconnected), the worker comes back: it
                // is the same worker, so it must not be released again here.
                match tx.send(Worker { pool: self.clone() }) {
                    Ok(()) => return,
                    Err(worker) => std::mem::forget(worker),
                }
            }
        }
        s.free += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_freed_worker_goes_to_the_next_tenant_in_turn() {
        let pool = FairPool::new(1);
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
    async fn a_waiter_that_goes_away_does_not_lose_the_worker() {
        let pool = FairPool::new(1);
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
