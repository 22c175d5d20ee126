//! The sender loop for one-recipient messages (transactional API messages and sequence emails):
//! each worker process runs a few, each claiming due delivery-queue rows in batches with the
//! process's sending lease (`service::campaigns::send::send_due`). A message waiting for its
//! time, or for a retry, is a row with a `not_before`, never a sleeping task or a job of its own.

use service::Services;
use service::campaigns::send::SendWorker;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long an idle sender waits before looking again (the event-to-send latency's floor).
pub const IDLE: Duration = Duration::from_millis(100);
/// Sender loops per process. One: its lanes already use every pooled SMTP connection
/// (`sending.concurrency`, as many as the pool), and more loops only lengthen the queue of
/// outcomes waiting to be written — the window in which a killed process duplicates (measured
/// by the sequences fault test: four loops gave 95 duplicates for 10 kills).
pub const LOOPS: usize = 1;
/// Messages claimed per batch.
pub const BATCH: i64 = 200;

pub async fn sender(svc: Services, worker: Arc<SendWorker>, shutdown: watch::Receiver<bool>) {
    loop {
        // Send until nothing is due, then rest. A batch in flight finishes before shutdown.
        loop {
            if *shutdown.borrow() {
                return;
            }
            match service::campaigns::send::send_due(&svc, &worker, BATCH).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e.log_detail(), "message sender pass failed");
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
