//! The maintenance job: expire sessions, purge stale rows, verify the audit chains.

use crate::JobsConfig;
use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use serde::{Deserialize, Serialize};
use service::Services;
use std::time::Duration;
use tokio::sync::watch;

pub const QUEUE: &str = "maintenance";

/// Payload: only the schedule slot (seconds since the epoch of the boundary). Ids only, never PHI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Maintenance {
    pub slot: i64,
}

const ENQUEUE_SQL: &str = "INSERT INTO apalis.jobs
    (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
    VALUES (apalis.generate_ulid(), $1, $2, 'Pending', 0, $3, now(), 0, $4)
    ON CONFLICT (job_type, idempotency_key) DO NOTHING";

/// Enqueue the job for one slot unless some process already did. Returns true if this call added it.
pub async fn enqueue(svc: &Services, slot: i64) -> Result<bool, service::ServiceError> {
    let payload =
        serde_json::to_vec(&Maintenance { slot }).map_err(|_| service::ServiceError::internal("job encoding"))?;
    let n = service::db::exec(
        svc.db(),
        ENQUEUE_SQL,
        [QUEUE.into(), payload.into(), 1i32.into(), Some(format!("maintenance:{slot}")).into()],
    )
    .await?;
    Ok(n > 0)
}

/// Sleep to each interval boundary and enqueue that slot's job.
pub async fn schedule(svc: Services, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    let period = config.maintenance_interval.as_secs().max(1) as i64;
    loop {
        let now = svc.clock().now();
        let now_ms = now.timestamp_millis();
        let slot = (now.timestamp() / period + 1) * period;
        let wait = Duration::from_millis((slot * 1000 - now_ms).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(shutdown.clone()) => return,
        }
        match enqueue(&svc, slot).await {
            Ok(true) => tracing::debug!(slot, "maintenance job enqueued"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e.log_detail(), "could not enqueue maintenance"),
        }
    }
}

async fn handle(job: Maintenance, svc: Data<Services>) -> Result<(), BoxDynError> {
    match service::maintenance::run(&svc).await {
        Ok(r) => {
            tracing::info!(
                slot = job.slot,
                sessions_expired = r.sessions_expired,
                sessions_purged = r.sessions_purged,
                chains_verified = r.chains_verified,
                chains_broken = r.chains_broken,
                "maintenance done"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(slot = job.slot, error = %e.log_detail(), "maintenance failed");
            Err(Box::new(e))
        }
    }
}

/// Run the maintenance worker until shutdown, restarting it (under a new name) if it dies on a
/// database error.
pub async fn work(svc: Services, pool: PgPool, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let name = format!("maintenance-{}", uuid::Uuid::now_v7());
        let backend = PostgresStorage::<Maintenance>::new(&pool)
            .with_config(
                Config::default().queue(QUEUE).heartbeat_interval(Duration::from_secs(15)).missed_heartbeats(4),
            )
            .with_pubsub()
            .poll_with_interval(config.poll_interval);
        let stop = shutdown.clone();
        let result = WorkerBuilder::new(name)
            .backend(backend)
            .data(svc.clone())
            .concurrency(1)
            .build(handle)
            .run_until(async move {
                crate::stopped(stop).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "maintenance worker stopped; restarting in 5 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = crate::stopped(shutdown.clone()) => return,
                }
            }
        }
    }
}
