//! Housekeeping run by the scheduled maintenance job: expire and purge sessions, forget stale
//! throttle counters, delete uploads never started within a day, seal segment definitions saved
//! before sealing existed, verify every audit chain, and re-check verified sending domains' DNS
//! records, delete finished webhook deliveries after 30 days, and prepare the coming months'
//! partitions of the event tables, and queue the weekly report digests that are due.

use crate::audit;
use crate::db;
use crate::error::ServiceResult;
use crate::services::Services;
use chrono::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub sessions_expired: u64,
    pub sessions_purged: u64,
    pub throttles_purged: u64,
    pub chains_verified: usize,
    pub chains_broken: usize,
    pub jobs_purged: u64,
    /// Uploads never started whose sealed file was deleted.
    pub imports_expired: u64,
    /// Legacy segment rows whose PHI literals were sealed (and stripped from the plain copy).
    pub segments_sealed: u64,
    pub domains_checked: u64,
    pub domains_lost: u64,
    /// Stored API answers past their 24 hours.
    pub idempotency_purged: u64,
    /// Finished webhook deliveries (and their attempts) past 30 days.
    pub webhooks_purged: u64,
    /// Monthly partitions of the event tables created ahead of their month.
    pub partitions_made: u64,
    /// Weekly report digests queued.
    pub digests_queued: u64,
}

pub async fn run(svc: &Services) -> ServiceResult<MaintenanceReport> {
    let now = svc.clock().now();
    let a = svc.auth();
    // Sessions past their deadline or idle limit are closed (resolve() also does this on use).
    let expired = db::exec(
        svc.db(),
        "UPDATE user_session SET revoked_at = $1,
            revoked_reason = CASE WHEN expires_at <= $1 THEN 'absolute' ELSE 'idle' END
         WHERE revoked_at IS NULL AND (expires_at <= $1
            OR (stage = 'active' AND last_seen_at <= $2) OR (stage <> 'active' AND last_seen_at <= $3))",
        [now.into(), (now - a.idle_timeout).into(), (now - a.pre_mfa_timeout).into()],
    )
    .await?;
    // Closed sessions are kept 30 days for investigation, then deleted.
    let purged = db::exec(
        svc.db(),
        "DELETE FROM user_session WHERE revoked_at IS NOT NULL AND revoked_at < $1",
        [(now - Duration::days(30)).into()],
    )
    .await?;
    let throttles = db::exec(
        svc.db(),
        "DELETE FROM login_throttle WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
        [(now - a.throttle_window).into(), now.into()],
    )
    .await?;
    // Finished job rows are kept a week.
    let jobs = crate::outbox::purge_finished(svc.db(), now - Duration::days(7)).await.unwrap_or(0);
    // A file uploaded but never imported is PHI kept for no purpose: deleted after a day.
    let imports_expired = crate::contacts::import::expire_unstarted(svc).await?;
    let idempotency_purged = crate::api::idempotency::purge(svc.db(), now).await?;
    let webhooks_purged = crate::webhooks::purge_finished(svc.db(), now - Duration::days(30)).await?;
    let segments_sealed = crate::segments::seal_legacy(svc).await?;
    let partitions_made = crate::reports::partitions::prepare(svc).await?;
    let digests_queued = crate::reports::digest::queue_due(svc).await?;
    let reports = audit::verify_all(svc).await?;
    // A domain whose records are gone stops sending; a failed re-check is logged, not fatal.
    let domains = match crate::sending_domains::recheck_due(svc).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e.log_detail(), "sending domains could not be re-checked");
            crate::sending_domains::RecheckReport::default()
        }
    };
    Ok(MaintenanceReport {
        sessions_expired: expired,
        sessions_purged: purged,
        throttles_purged: throttles,
        chains_verified: reports.len(),
        chains_broken: reports.iter().filter(|(_, r)| r.first_broken.is_some()).count(),
        jobs_purged: jobs,
        imports_expired,
        segments_sealed,
        domains_checked: domains.checked,
        domains_lost: domains.lost,
        idempotency_purged,
        webhooks_purged,
        partitions_made,
        digests_queued,
    })
}
