//! Background work on apalis, with its Postgres queue in our own database.
//!
//! Workers are thin adapters that call `service`. Every process that runs workers (`serve`, `worker`)
//! also runs the tiny schedulers: at each interval boundary each process tries to enqueue the job
//! with an idempotency key naming that boundary, so however many processes run, one job exists per
//! tick and exactly one worker claims it (`FOR UPDATE SKIP LOCKED`).

pub mod campaigns;
pub mod contacts;
pub mod maintenance;
pub mod worker;

use apalis_postgres::PgPool;
use service::Services;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job queue setup failed: {0}")]
    Setup(String),
}

/// Create or upgrade apalis' own schema (`apalis.*`). Safe to call from every process at start.
pub async fn setup(pool: &PgPool) -> Result<(), JobsError> {
    apalis_postgres::PostgresStorage::setup(pool).await.map_err(|e| JobsError::Setup(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// How often maintenance (session expiry, audit-chain verification) runs.
    pub maintenance_interval: Duration,
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
    use service::outbox::queue;
    use worker::supervise;
    let scheduler = tokio::spawn(maintenance::schedule(svc.clone(), config.clone(), shutdown.clone()));
    let ticker = tokio::spawn(campaigns::tick(svc.clone(), config.clone(), shutdown.clone()));
    let workers = [
        tokio::spawn(supervise(
            svc.clone(),
            pool.clone(),
            queue::MAINTENANCE,
            config.clone(),
            1,
            shutdown.clone(),
            maintenance::handle,
        )),
        tokio::spawn(supervise(
            svc.clone(),
            pool.clone(),
            queue::IMPORT,
            config.clone(),
            1,
            shutdown.clone(),
            contacts::import,
        )),
        tokio::spawn(supervise(
            svc.clone(),
            pool.clone(),
            queue::OPTIN_EMAIL,
            config.clone(),
            4,
            shutdown.clone(),
            contacts::optin_email,
        )),
        tokio::spawn(supervise(
            svc.clone(),
            pool.clone(),
            queue::KEY_ROTATION,
            config.clone(),
            1,
            shutdown.clone(),
            contacts::key_rotation,
        )),
        tokio::spawn(supervise(
            svc.clone(),
            pool.clone(),
            queue::CAMPAIGN_PREPARE,
            config.clone(),
            1,
            shutdown.clone(),
            campaigns::prepare,
        )),
        tokio::spawn(supervise(
            svc.clone(),
            pool,
            queue::CAMPAIGN_DISPATCH,
            config,
            svc.settings().sending.slots.max(1) as usize,
            shutdown,
            campaigns::dispatch,
        )),
    ];
    let _ = scheduler.await;
    let _ = ticker.await;
    for w in workers {
        let _ = w.await;
    }
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
