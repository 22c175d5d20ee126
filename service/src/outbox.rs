//! Jobs pushed in the same transaction as the change that needs them (the outbox pattern): the job
//! exists if and only if the change committed. Payloads carry ids only.

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use sea_orm::ConnectionTrait;
use serde::Serialize;

/// Queue names shared with the `jobs` crate.
pub mod queue {
    pub const MAINTENANCE: &str = "maintenance";
    pub const OPTIN_EMAIL: &str = "optin-email";
    pub const IMPORT: &str = "contact-import";
    pub const KEY_ROTATION: &str = "key-rotation";
    pub const CAMPAIGN_PREPARE: &str = "campaign-prepare";
    pub const CAMPAIGN_DISPATCH: &str = "campaign-dispatch";
}

/// Enqueue a job. With an idempotency key, a second enqueue of the same key is a no-op (returns
/// false). `max_attempts` counts the first run.
pub async fn enqueue<C: ConnectionTrait, T: Serialize>(
    conn: &C,
    queue: &str,
    payload: &T,
    max_attempts: i32,
    idempotency_key: Option<String>,
) -> ServiceResult<bool> {
    enqueue_at(conn, queue, payload, max_attempts, idempotency_key, None).await
}

/// Enqueue a job to run no earlier than `run_at` (now when `None`).
pub async fn enqueue_at<C: ConnectionTrait, T: Serialize>(
    conn: &C,
    queue: &str,
    payload: &T,
    max_attempts: i32,
    idempotency_key: Option<String>,
    run_at: Option<chrono::DateTime<chrono::Utc>>,
) -> ServiceResult<bool> {
    let bytes = serde_json::to_vec(payload).map_err(|_| ServiceError::internal("job encoding"))?;
    let n = db::exec(
        conn,
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
         VALUES (apalis.generate_ulid(), $1, $2, 'Pending', 0, $3, coalesce($5, now()), 0, $4)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        [queue.to_string().into(), bytes.into(), max_attempts.into(), idempotency_key.into(), run_at.into()],
    )
    .await?;
    Ok(n > 0)
}
