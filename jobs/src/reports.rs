//! The report rollup job: at each interval boundary one `ReportRollup` job (idempotency key naming
//! the boundary) rolls every pending fact into the hourly report tables
//! (`service::reports::rollup::catch_up`), rebuilding organisations whose time zone changed first.
//! Exactly once per fact: each batch deletes its pending rows and adds their counts in one
//! transaction, and only one rollup runs at a time.

use crate::JobsConfig;
use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use service::Services;
use service::outbox::Job;
use tokio::sync::watch;

/// Payload: only the schedule slot (seconds since the epoch of the boundary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRollup {
    pub slot: i64,
}

impl Job for ReportRollup {
    const QUEUE: &'static str = service::outbox::queue::REPORT_ROLLUP;
    const MAX_ATTEMPTS: i32 = 1;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("report-rollup:{}", self.slot))
    }
}

/// Push each interval boundary's job (`worker::every`).
pub async fn schedule(svc: Services, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    crate::worker::every(svc, config.rollup_interval, shutdown, |slot| ReportRollup { slot }).await
}

pub async fn handle(job: ReportRollup, svc: Data<Services>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    match service::reports::rollup::catch_up(&svc, service::reports::rollup::BATCH).await {
        Ok(r) => {
            if r.facts > 0 || r.rebuilt_organisations > 0 {
                tracing::info!(
                    slot = job.slot,
                    facts = r.facts,
                    batches = r.batches,
                    rebuilt = r.rebuilt_organisations,
                    ms = started.elapsed().as_millis() as u64,
                    "report rollup done"
                );
            }
            if let Err(e) = service::reports::rollup::tidy(&svc, &r).await {
                tracing::warn!(slot = job.slot, error = %e.log_detail(), "vacuuming the report queue failed");
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(slot = job.slot, error = %e.log_detail(), "report rollup failed");
            Err(crate::worker::failure(e))
        }
    }
}

/// Email one user their weekly report digest.
pub async fn digest(job: service::reports::digest::ReportDigest, svc: Data<Services>) -> Result<(), BoxDynError> {
    service::reports::digest::send(&svc, &job).await.map_err(|e| {
        tracing::error!(user = %job.user_id, error = %e.log_detail(), "report digest failed");
        crate::worker::failure(e)
    })
}
