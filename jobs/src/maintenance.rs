//! The maintenance job: expire sessions, purge stale rows and never-started uploads, verify the
//! audit chains.

use crate::JobsConfig;
use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use service::Services;
use std::time::Duration;
use tokio::sync::watch;

pub const QUEUE: &str = service::outbox::queue::MAINTENANCE;

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

pub async fn handle(job: Maintenance, svc: Data<Services>) -> Result<(), BoxDynError> {
    match service::maintenance::run(&svc).await {
        Ok(r) => {
            tracing::info!(
                slot = job.slot,
                sessions_expired = r.sessions_expired,
                sessions_purged = r.sessions_purged,
                imports_expired = r.imports_expired,
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
