//! Where a worker's blocking work runs: on tokio's blocking threads at the process's priority, or,
//! for work the fair pool marks low (long work, or a tenant over its share, while others are
//! active: see [`crate::fair`]), on the low lane:
//! threads under Linux's idle scheduling policy (`SCHED_IDLE`), which the kernel preempts as soon
//! as any other thread of the machine wakes up. A lower nice value is not enough: the scheduler
//! lets a running nice-19 thread finish its time slice (~3–4 ms here) before a waking thread runs.
//!
//! Why not async wasmtime with epoch or fuel yielding: a yield hands the core back to an executor
//! that knows nothing of tenants, so the flood's next slice comes as soon as the other tenant's
//! request does; and the core is also shared with the HTTP threads and other processes, which only
//! the kernel sees. Measured on 2 cores (docs/benchmarks.md), the low lane together with the
//! runtime's yields to the kernel (`RuntimeOptions::yield_every`) closed the noisy-neighbour gap;
//! neither did alone. A thread cannot raise its priority back without privileges, so the low
//! lane's threads stay low and only ever run demoted work.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The low lane: a fixed set of low-priority threads fed from one queue.
#[derive(Debug)]
pub struct Lanes {
    low: mpsc::Sender<Job>,
}

/// Work that did not return: it panicked (a bug), or the service is going away.
#[derive(Debug, thiserror::Error)]
#[error("a worker failed before finishing its work")]
pub struct Lost;

impl Lanes {
    /// Starts `threads` low-lane threads (the fair pool never runs more work than that at once).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(threads: usize) -> std::io::Result<Arc<Lanes>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("qpf-low-{i}")).spawn(move || {
                lower_priority();
                loop {
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(mpsc::RecvError) => return,
                    }
                }
            })?;
        }
        Ok(Arc::new(Lanes { low: tx }))
    }

    /// Runs `work` on the low lane when `low`, else on tokio's blocking threads.
    ///
    /// # Errors
    /// [`Lost`] when the work panicked or the lane is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        low: bool,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Lost> {
        if !low {
            return tokio::task::spawn_blocking(work).await.map_err(|_| Lost);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx`: the caller gets `Lost` and the thread lives on.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = tx.send(value);
            }
        });
        self.low.send(job).map_err(|_| Lost)?;
        rx.await.map_err(|_| Lost)
    }
}

/// Puts the calling thread under the idle scheduling policy (Linux; a thread may always lower its
/// own priority). Elsewhere the low lane runs at normal priority and fairness rests on the queue.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let native = thread_priority::thread_native_id();
        if let Err(e) = thread_priority::set_thread_priority_and_policy(native, ThreadPriority::Min, idle) {
            tracing::warn!("cannot put the low lane under the idle scheduling policy: {e:?}");
        }
    }
}

/// Whether the calling thread is under the idle scheduling policy.
#[cfg(test)]
fn idle() -> bool {
    #[cfg(target_os = "linux")]
    return thread_priority::thread_schedule_policy()
        == Ok(thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle));
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_low_lane_runs_under_the_idle_policy_and_the_normal_lane_does_not() {
        let lanes = Lanes::start(1).unwrap();
        let (name, low) = lanes.run(true, || (std::thread::current().name().map(str::to_owned), idle())).await.unwrap();
        let normal = lanes.run(false, idle).await.unwrap();
        assert_eq!(name.as_deref(), Some("qpf-low-0"));
        assert_eq!(low, cfg!(target_os = "linux"));
        assert!(!normal);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_on_the_low_lane_is_lost_work_not_a_lost_thread() {
        let lanes = Lanes::start(1).unwrap();
        let lost = lanes.run(true, || -> u32 { panic!("a bug") }).await;
        assert!(lost.is_err());
        assert_eq!(lanes.run(true, || 7).await.unwrap(), 7, "the one thread still serves");
    }
}
