//! Campaign jobs: audience resolution, dispatch (the send loop), and the campaign tick. Thin
//! adapters to `service::campaigns`.

use crate::JobsConfig;
use crate::worker::failure;
use apalis::prelude::*;
use service::Services;
use service::campaigns::send::SendWorker;
use service::campaigns::{DispatchJob, PrepareJob};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often each worker process runs the campaign tick.
pub const TICK: Duration = Duration::from_secs(2);

pub async fn prepare(job: PrepareJob, svc: Data<Services>) -> Result<(), BoxDynError> {
    service::campaigns::audience::prepare(&svc, job.campaign_id).await.map_err(|e| {
        tracing::error!(campaign = %job.campaign_id, error = %e.log_detail(), "audience resolution failed");
        failure(e)
    })
}

pub async fn dispatch(job: DispatchJob, svc: Data<Services>, worker: Arc<SendWorker>) -> Result<(), BoxDynError> {
    service::campaigns::send::dispatch(&svc, &worker, &job).await.map_err(|e| {
        tracing::error!(campaign = %job.campaign_id, error = %e.log_detail(), "dispatch job failed");
        failure(e)
    })
}

/// Start due scheduled campaigns, reclaim deliveries of dead workers, restart lost dispatch jobs.
pub async fn tick(svc: Services, config: JobsConfig, shutdown: watch::Receiver<bool>) {
    // A worker silent for this long is presumed dead (apalis' own rule).
    let stale = config.heartbeat_interval * config.missed_heartbeats.max(1) as u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = crate::stopped(shutdown.clone()) => return,
        }
        if let Err(e) = service::campaigns::tick(&svc, stale).await {
            tracing::warn!(error = %e.log_detail(), "campaign tick failed");
        }
    }
}
