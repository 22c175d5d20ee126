//! Background work on apalis, with its Postgres queue in our own database.
//!
//! Workers are thin adapters that call `service`. Every process that runs workers (`serve`, `worker`)
//! also runs the tiny schedulers: at each interval boundary each process tries to enqueue the job
//! with an idempotency key naming that boundary, so however many processes run, one job exists per
//! tick and exactly one worker claims it (`FOR UPDATE SKIP LOCKED`).

pub mod campaigns;
pub mod contacts;
pub mod maintenance;
pub mod messages;
pub mod reports;
pub mod sequences;
pub mod webhooks;
pub mod worker;

use apalis_postgres::PgPool;
use service::Services;
use service::campaigns::{DispatchJob, PrepareJob};
use service::contacts::import::ImportJob;
use service::contacts::lists::OptInEmail;
use service::crypto::rotation::RotationJob;
use service::sequences::notify::StaffNotice;
use service::webhooks::WebhookJob;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job queue setup failed: {0}")]
    Setup(String),
}

/// Create or upgrade apalis' own schema (`apalis.*`), then check it still has every column our
/// job adapter writes (`service::outbox`). Safe to call from every process at start.
pub async fn setup(pool: &PgPool) -> Result<(), JobsError> {
    apalis_postgres::PostgresStorage::setup(pool).await.map_err(|e| JobsError::Setup(e.to_string()))?;
    let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
    service::outbox::check_apalis_schema(&db).await.map_err(|e| JobsError::Setup(e.log_detail().into_owned()))
}

#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// How often maintenance (session expiry, audit-chain verification) runs.
    pub maintenance_interval: Duration,
    /// How often the report rollup runs (report figures are at most about this far behind).
    pub rollup_interval: Duration,
    /// How often idle workers poll for due jobs (in addition to LISTEN/NOTIFY wake-ups).
    pub poll_interval: Duration,
    /// Worker keep-alive; a worker silent for `heartbeat_interval × missed_heartbeats` is presumed
    /// dead and its jobs are handed to another worker (resumable jobs continue where they stopped).
    pub heartbeat_interval: Duration,
    pub missed_heartbeats: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            maintenance_interval: Duration::from_secs(300),
            rollup_interval: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(15),
            missed_heartbeats: 4,
        }
    }
}

/// Run every scheduler and worker until `shutdown` turns true; in-flight jobs finish first.
pub async fn run(svc: Services, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    let Some(pool) = pool_of(&svc) else {
        tracing::error!("job workers need a PostgreSQL connection pool");
        return;
    };
    let scheduler = tokio::spawn(maintenance::schedule(svc.clone(), config.clone(), shutdown.clone()));
    let rollups = tokio::spawn(reports::schedule(svc.clone(), config.clone(), shutdown.clone()));
    let ticker = tokio::spawn(campaigns::tick(svc.clone(), config.clone(), shutdown.clone()));
    // Engine passes claim with SKIP LOCKED, so several run side by side: each keeps one database
    // connection busy (a send step is a handful of round trips), and one would use one core.
    let engines: Vec<_> = (0..sequences::LOOPS)
        .map(|i| tokio::spawn(sequences::engine(svc.clone(), config.clone(), shutdown.clone(), i == 0)))
        .collect();
    // This process's sending lease: one per process, shared by its dispatch jobs.
    let send_worker = std::sync::Arc::new(service::campaigns::send::SendWorker::default());
    let slots = svc.settings().sending.slots.max(1) as usize;
    // One-recipient messages (API messages, sequence emails): sender loops claiming due rows in
    // batches (`service::campaigns::send::send_due`), each over `sending.concurrency` lanes.
    let senders: Vec<_> = (0..messages::LOOPS)
        .map(|_| tokio::spawn(messages::sender(svc.clone(), send_worker.clone(), shutdown.clone())))
        .collect();
    let dispatch = move |job, svc| campaigns::dispatch(job, svc, send_worker.clone());
    let mut workers = worker::Workers::new(svc, pool, config, shutdown);
    workers
        .add::<maintenance::Maintenance, _, _>(1, maintenance::handle)
        .add::<ImportJob, _, _>(1, contacts::import)
        .add::<OptInEmail, _, _>(4, contacts::optin_email)
        .add::<RotationJob, _, _>(1, contacts::key_rotation)
        .add::<PrepareJob, _, _>(1, campaigns::prepare)
        .add::<DispatchJob, _, _>(slots, dispatch)
        .add::<WebhookJob, _, _>(4, webhooks::deliver)
        .add::<StaffNotice, _, _>(2, sequences::staff_notice)
        .add::<reports::ReportRollup, _, _>(1, reports::handle)
        .add::<service::reports::digest::ReportDigest, _, _>(2, reports::digest);
    let _ = scheduler.await;
    let _ = ticker.await;
    let _ = rollups.await;
    for e in engines {
        let _ = e.await;
    }
    for s in senders {
        let _ = s.await;
    }
    workers.join().await;
}

fn pool_of(svc: &Services) -> Option<PgPool> {
    use sea_orm::DbBackend;
    // get_postgres_connection_pool panics on other backends: check first.
    (svc.db().get_database_backend() == DbBackend::Postgres).then(|| svc.db().get_postgres_connection_pool().clone())
}

/// Wait until `shutdown` becomes true (or its sender is gone).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::outbox::Job;

    /// Queue depths (`/metrics`) are labelled from `outbox::queue::ALL`: every queue a worker
    /// listens on must be there, or its jobs are counted under `other`.
    #[test]
    fn every_worker_queue_is_a_known_metrics_label() {
        for q in [
            maintenance::Maintenance::QUEUE,
            ImportJob::QUEUE,
            OptInEmail::QUEUE,
            RotationJob::QUEUE,
            PrepareJob::QUEUE,
            DispatchJob::QUEUE,
            WebhookJob::QUEUE,
            StaffNotice::QUEUE,
            reports::ReportRollup::QUEUE,
            service::reports::digest::ReportDigest::QUEUE,
        ] {
            assert!(service::outbox::queue::ALL.contains(&q), "{q} is missing from outbox::queue::ALL");
        }
    }
}
