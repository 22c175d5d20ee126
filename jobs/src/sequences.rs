//! The sequence engine's loop: each worker process consumes patient events from the outbox and
//! moves due enrolments (`service::sequences::engine`). Rows are claimed with `FOR UPDATE SKIP
//! LOCKED`, so every process runs this loop and they share the work; a waiting patient is a row
//! with a wake-up time, never a sleeping task or a job per contact.

use crate::JobsConfig;
use service::Services;
use std::time::Duration;
use tokio::sync::watch;

/// How long an idle engine waits before looking again.
pub const IDLE: Duration = Duration::from_millis(250);
/// Engine loops per worker process. The first consumes events and signals (in order) and moves
/// due enrolments; the others only move due enrolments, so a burst of due steps (a million
/// waits ending at once, a newsletter follow-up) keeps several database connections busy while
/// one process never reorders a contact's events.
pub const LOOPS: usize = 3;
/// Events or enrolments per transaction.
pub const BATCH: u32 = 200;

pub async fn engine(svc: Services, _config: JobsConfig, shutdown: watch::Receiver<bool>, first: bool) {
    loop {
        // Work until nothing is due, then rest.
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pass = if first {
                service::sequences::engine::tick(&svc, BATCH).await
            } else {
                service::sequences::engine::advance_due(&svc, BATCH).await.map(|n| (0, n))
            };
            match pass {
                Ok((0, 0)) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e.log_detail(), "sequence engine pass failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = crate::stopped(shutdown.clone()) => return,
        }
    }
}

/// Email a member of staff that a contact reached a notify-staff step (ids in, no PHI out).
pub async fn staff_notice(
    job: service::sequences::notify::StaffNotice,
    svc: apalis::prelude::Data<Services>,
) -> Result<(), apalis::prelude::BoxDynError> {
    service::sequences::notify::send(&svc, &job).await.map_err(|e| {
        tracing::error!(enrolment = %job.enrolment_id, error = %e.log_detail(), "staff notice failed");
        crate::worker::failure(e)
    })
}
