//! The maintenance job: expire sessions, purge stale rows and never-started uploads, verify the
//! audit chains.

use crate::JobsConfig;
use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use service::Services;
use service::outbox::Job;
use tokio::sync::watch;

/// Payload: only the schedule slot (seconds since the epoch of the boundary). Ids only, never PHI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Maintenance {
    pub slot: i64,
}

impl Job for Maintenance {
    const QUEUE: &'static str = service::outbox::queue::MAINTENANCE;
    const MAX_ATTEMPTS: i32 = 1;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("maintenance:{}", self.slot))
    }
}

/// Push the job for one slot unless some process already did. Returns true if this call added it.
pub async fn enqueue(svc: &Services, slot: i64) -> Result<bool, service::ServiceError> {
    service::outbox::push(svc.db(), &Maintenance { slot }).await
}

/// Push each interval boundary's job (`worker::every`).
pub async fn schedule(svc: Services, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    crate::worker::every(svc, config.maintenance_interval, shutdown, |slot| Maintenance { slot }).await
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
