//! Webhook delivery: a thin adapter to `service::webhooks::deliver` (one attempt per job; the
//! service schedules the next try as its own job).

use crate::worker::failure;
use apalis::prelude::*;
use service::Services;
use service::webhooks::WebhookJob;

pub async fn deliver(job: WebhookJob, svc: Data<Services>) -> Result<(), BoxDynError> {
    service::webhooks::deliver(&svc, job.delivery_id).await.map_err(|e| {
        tracing::error!(delivery = %job.delivery_id, error = %e.log_detail(), "webhook delivery failed");
        failure(e)
    })
}
