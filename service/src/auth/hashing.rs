//! The password-hashing gate: every argon2 computation of this process (sign-in, password change,
//! accepting an invitation, creating a user) runs through it.
//!
//! Each computation holds 46 MiB for its duration, so the number running at once decides the
//! process's memory. The gate admits at most `limit` at a time (a semaphore); a caller waits at
//! most `wait` for a slot and is otherwise refused with `ServiceError::Busy` (503 with
//! `Retry-After` at the edge) instead of queueing without bound. The slot moves into the blocking
//! task, so a client that disconnects mid-hash still holds it until the hash is done.
//!
//! `running`, `peak` and `total` are gauges for tests and benchmarks.

use crate::error::{ServiceError, ServiceResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a refused caller is told to wait before trying again.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

struct Gauges {
    running: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicU64,
}

#[derive(Clone)]
pub struct HashGate {
    slots: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
    gauges: Arc<Gauges>,
}

impl std::fmt::Debug for HashGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashGate").field("limit", &self.limit).field("wait", &self.wait).finish_non_exhaustive()
    }
}

/// Decrements `running` when the hash ends, however it ends.
struct Running(Arc<Gauges>);

impl Running {
    fn start(g: &Arc<Gauges>) -> Running {
        let now = g.running.fetch_add(1, Ordering::SeqCst) + 1;
        g.peak.fetch_max(now, Ordering::SeqCst);
        g.total.fetch_add(1, Ordering::SeqCst);
        Running(g.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashGate {
    pub fn new(limit: usize, wait: Duration) -> HashGate {
        let limit = limit.max(1);
        HashGate {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            wait,
            gauges: Arc::new(Gauges {
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                total: AtomicU64::new(0),
            }),
        }
    }

    /// Run `f` (an argon2 computation) on the blocking pool once a slot is free; `Busy` if none
    /// frees up within the configured wait.
    pub async fn run<T, F>(&self, f: F) -> ServiceResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // `timeout` polls the acquisition once before looking at the clock, so a zero wait still
        // takes a free slot.
        let permit = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => return Err(ServiceError::Busy { retry_after_secs: BUSY_RETRY_AFTER_SECS }),
        };
        let gauges = self.gauges.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            let _running = Running::start(&gauges);
            f()
        })
        .await
        .map_err(|_| ServiceError::internal("password hashing task failed"))
    }

    /// The most hashes that ran at once so far.
    pub fn peak(&self) -> usize {
        self.gauges.peak.load(Ordering::SeqCst)
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.gauges.running.load(Ordering::SeqCst)
    }

    /// Hashes computed so far.
    pub fn total(&self) -> u64 {
        self.gauges.total.load(Ordering::SeqCst)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_bound_and_never_exceeds_it() {
        let gate = HashGate::new(1, Duration::ZERO);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let first = tokio::spawn(async move { g.run(move || rx.recv().is_ok()).await });
        while gate.running() == 0 {
            tokio::task::yield_now().await;
        }
        // The one slot is taken: the next caller is refused at once, with a retry hint.
        let e = gate.run(|| ()).await.unwrap_err();
        assert!(matches!(e, ServiceError::Busy { retry_after_secs } if retry_after_secs >= 1), "{e:?}");
        assert_eq!(e.http_status(), 503);
        tx.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        // Free again.
        gate.run(|| ()).await.unwrap();
        assert_eq!((gate.peak(), gate.total(), gate.running()), (1, 2, 0));
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_the_slot_when_it_frees() {
        let gate = HashGate::new(2, Duration::from_secs(60));
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let g = gate.clone();
                tokio::spawn(async move { g.run(|| std::hint::black_box(1 + 1)).await })
            })
            .collect();
        for r in runs {
            assert_eq!(r.await.unwrap().unwrap(), 2);
        }
        assert!(gate.peak() <= 2);
        assert_eq!(gate.total(), 8);
    }
}
