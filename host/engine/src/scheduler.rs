//! A bounded pool over a DAG: `jobs` threads run tasks, each only after every task it depends on
//! has finished, in a deterministic ready order (lowest index first). After a failure with
//! `fail_fast`, no new task starts. It never deadlocks: a task whose dependencies can never finish
//! (a cycle, a dependency that did not run) is left unrun, and the pool ends when nothing is
//! running and nothing is ready.
//!
//! The scheduler only orders; what a task does with a failed dependency (skip, run anyway) is the
//! caller's decision.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

/// The shared state of one run.
struct Queue {
    /// Tasks whose dependencies have all finished, not yet started.
    ready: BTreeSet<usize>,
    /// Tasks started and not finished.
    running: usize,
    /// Dependencies not yet finished, per task.
    waiting: Vec<usize>,
    /// Set after a failure with `fail_fast`.
    stopped: bool,
}

/// Runs tasks `0..deps.len()`; `deps[i]` lists the tasks `i` needs (indices out of range are
/// ignored). `task(i)` returns whether it succeeded. Returns, per task, whether it ran.
pub(crate) fn run_dag<F>(deps: &[Vec<usize>], jobs: usize, fail_fast: bool, task: F) -> Vec<bool>
where
    F: Fn(usize) -> bool + Sync,
{
    let n = deps.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for (i, ds) in deps.iter().enumerate() {
        let unique: BTreeSet<usize> = ds.iter().copied().filter(|&d| d < n).collect();
        waiting[i] = unique.len();
        for d in unique {
            dependents[d].push(i);
        }
    }
    let ready = (0..n).filter(|&i| waiting[i] == 0).collect();
    let queue = Mutex::new(Queue { ready, running: 0, waiting, stopped: false });
    let wake = Condvar::new();
    let ran: Vec<std::sync::atomic::AtomicBool> = (0..n).map(|_| std::sync::atomic::AtomicBool::new(false)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            scope.spawn(|| {
                loop {
                    let next = {
                        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            if q.stopped {
                                break None;
                            }
                            if let Some(i) = q.ready.pop_first() {
                                q.running += 1;
                                break Some(i);
                            }
                            if q.running == 0 {
                                // Nothing ready and nothing that could make anything ready.
                                break None;
                            }
                            q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let Some(i) = next else {
                        wake.notify_all();
                        break;
                    };
                    let ok = task(i);
                    ran[i].store(true, std::sync::atomic::Ordering::Relaxed);
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.running -= 1;
                    if fail_fast && !ok {
                        q.stopped = true;
                    }
                    for &d in &dependents[i] {
                        q.waiting[d] -= 1;
                        if q.waiting[d] == 0 {
                            q.ready.insert(d);
                        }
                    }
                    drop(q);
                    wake.notify_all();
                }
            });
        }
    });
    ran.into_iter().map(std::sync::atomic::AtomicBool::into_inner).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs and records the finish order.
    fn order(deps: &[Vec<usize>], jobs: usize, fail: &[usize], fail_fast: bool) -> (Vec<bool>, Vec<usize>) {
        let log = Mutex::new(Vec::new());
        let ran = run_dag(deps, jobs, fail_fast, |i| {
            log.lock().unwrap().push(i);
            !fail.contains(&i)
        });
        (ran, log.into_inner().unwrap())
    }

    #[test]
    fn one_thread_runs_in_ready_order_and_after_dependencies() {
        let deps = vec![vec![], vec![2], vec![], vec![1, 0]];
        let (ran, log) = order(&deps, 1, &[], false);
        assert_eq!(ran, vec![true; 4]);
        assert_eq!(log, vec![0, 2, 1, 3]);
    }

    #[test]
    fn fail_fast_starts_nothing_after_a_failure() {
        let deps = vec![vec![], vec![], vec![], vec![]];
        let (ran, log) = order(&deps, 1, &[1], true);
        assert_eq!(log, vec![0, 1]);
        assert_eq!(ran, vec![true, true, false, false]);
        let (ran, _) = order(&deps, 1, &[1], false);
        assert_eq!(ran, vec![true; 4], "keep-going runs everything");
    }

    #[test]
    fn cycles_and_unreachable_tasks_end_without_deadlock() {
        let deps = vec![vec![1], vec![0], vec![], vec![9]];
        for jobs in 1..4 {
            let (ran, _) = order(&deps, jobs, &[], false);
            assert_eq!(ran, vec![false, false, true, true], "out-of-range dependencies are ignored");
        }
        assert!(order(&[], 4, &[], false).0.is_empty());
    }

    proptest::proptest! {
        /// For any DAG (dependencies only on lower indices), any job count and any failures: every
        /// task runs exactly once (or, with fail-fast, none starts after the first failure finishes),
        /// never before its dependencies, and at most `jobs` run at once.
        #[test]
        fn any_dag_any_jobs_runs_each_task_once_after_its_dependencies(
            edges in proptest::collection::vec(proptest::collection::vec(0usize..64, 0..4), 1..40),
            jobs in 1usize..6,
            fail in proptest::collection::vec(0usize..40, 0..3),
            fail_fast in proptest::bool::ANY,
        ) {
            let deps: Vec<Vec<usize>> =
                edges.iter().enumerate().map(|(i, ds)| ds.iter().filter(|&&d| d < i).copied().collect()).collect();
            let done: Vec<AtomicUsize> = deps.iter().map(|_| AtomicUsize::new(0)).collect();
            let active = AtomicUsize::new(0);
            let peak = AtomicUsize::new(0);
            let ran = run_dag(&deps, jobs, fail_fast, |i| {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                for &d in &deps[i] {
                    assert_eq!(done[d].load(Ordering::SeqCst), 1, "task {i} started before {d} finished");
                }
                done[i].fetch_add(1, Ordering::SeqCst);
                active.fetch_sub(1, Ordering::SeqCst);
                !fail.contains(&i)
            });
            proptest::prop_assert!(peak.load(Ordering::SeqCst) <= jobs);
            for (i, r) in ran.iter().enumerate() {
                proptest::prop_assert_eq!(done[i].load(Ordering::SeqCst), usize::from(*r));
            }
            let any_failed = ran.iter().enumerate().any(|(i, r)| *r && fail.contains(&i));
            if !fail_fast || !any_failed {
                proptest::prop_assert!(ran.iter().all(|r| *r), "without a stop, every task of a DAG runs");
            }
        }
    }
}
