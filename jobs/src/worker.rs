//! The worker registry: one supervised apalis worker per job type, on the queue its `Job` impl
//! names (restarted under a fresh name if the backend fails, stopped gracefully — in-flight jobs
//! finish — when shutdown is signalled), and the periodic scheduler.

use crate::JobsConfig;
use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use service::Services;
use service::outbox::Job;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The workers of one process: add one per job type, then wait for them all.
pub struct Workers {
    svc: Services,
    pool: PgPool,
    config: JobsConfig,
    shutdown: watch::Receiver<bool>,
    running: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    pub fn new(svc: Services, pool: PgPool, config: JobsConfig, shutdown: watch::Receiver<bool>) -> Workers {
        Workers { svc, pool, config, shutdown, running: Vec::new() }
    }

    /// Run `handler` for jobs of type `J`, `concurrency` at a time, on `J::QUEUE`.
    pub fn add<J, F, Fut>(&mut self, concurrency: usize, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(J, Data<Services>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
    {
        // Every run is counted, by queue, and so is every failure (`/metrics`).
        let counted = move |job: J, svc: Data<Services>| {
            let run = handler(job, svc);
            async move {
                let result = run.await;
                service::metrics::job_finished(J::QUEUE, result.is_ok());
                result
            }
        };
        self.running.push(tokio::spawn(supervise::<J, _, _>(
            self.svc.clone(),
            self.pool.clone(),
            self.config.clone(),
            concurrency,
            self.shutdown.clone(),
            counted,
        )));
        self
    }

    /// Wait until every worker has stopped (after shutdown, once in-flight jobs finished).
    pub async fn join(self) {
        for w in self.running {
            let _ = w.await;
        }
    }
}

/// At each boundary of `period` (on the service clock), push the job `at_slot(slot)` makes for
/// that boundary (seconds since the epoch). Every process runs this; the job's idempotency key
/// (naming its slot) keeps it to one job per boundary, which exactly one worker claims.
pub async fn every<J: Job>(
    svc: Services,
    period: Duration,
    shutdown: watch::Receiver<bool>,
    at_slot: impl Fn(i64) -> J + Send + 'static,
) {
    let period = period.as_secs().max(1) as i64;
    loop {
        let now = svc.clock().now();
        let slot = (now.timestamp() / period + 1) * period;
        let wait = Duration::from_millis((slot * 1000 - now.timestamp_millis()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(shutdown.clone()) => return,
        }
        match service::outbox::push(svc.db(), &at_slot(slot)).await {
            Ok(true) => tracing::debug!(queue = J::QUEUE, slot, "periodic job pushed"),
            Ok(false) => {}
            Err(e) => tracing::warn!(queue = J::QUEUE, error = %e.log_detail(), "could not push a periodic job"),
        }
    }
}

async fn supervise<J, F, Fut>(
    svc: Services,
    pool: PgPool,
    config: JobsConfig,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
    handler: F,
) where
    J: Job,
    F: Fn(J, Data<Services>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let queue = J::QUEUE;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let name = format!("{queue}-{}", uuid::Uuid::now_v7());
        let backend = PostgresStorage::<J>::new(&pool)
            .with_config(
                Config::default()
                    .queue(queue)
                    .heartbeat_interval(config.heartbeat_interval)
                    .missed_heartbeats(config.missed_heartbeats)
                    .batch_size(concurrency.max(1)),
            )
            .with_pubsub()
            .poll_with_interval(config.poll_interval);
        let stop = shutdown.clone();
        let result = WorkerBuilder::new(name)
            .backend(backend)
            .data(svc.clone())
            .concurrency(concurrency.max(1))
            .build(handler.clone())
            .run_until(async move {
                crate::stopped(stop).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(queue, error = %e, "worker stopped; restarting in 5 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = crate::stopped(shutdown.clone()) => return,
                }
            }
        }
    }
}

/// Map a service failure to apalis: permanent ones are aborted (never retried), others retried.
pub fn failure(e: service::ServiceError) -> BoxDynError {
    use service::ServiceError as E;
    match e {
        E::Invalid(_) | E::NotFound | E::Forbidden => Box::new(AbortError::new(e)),
        other => Box::new(other),
    }
}
