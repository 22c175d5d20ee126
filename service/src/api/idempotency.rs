//! `Idempotency-Key` for the API's POST and PUT: the answer to a request is stored in the
//! transaction of the change it answers, keyed by (API key, hash of the client's key). A retry of
//! the same request gets the stored answer and changes nothing; the same key with another request
//! is refused (422); a concurrent duplicate waits on the first one's row lock and then replays it.
//! Answers are kept 24 hours (the maintenance job deletes older ones; an older one is ignored).

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde_json::Value as Json;
use uuid::Uuid;

pub const RETENTION: Duration = Duration::hours(24);

/// A request's idempotency: the hash of the client's key and of what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    key_hash: [u8; 32],
    request_hash: [u8; 32],
}

impl Idempotency {
    /// From the header value and the request (method, route template, path parameters, raw body).
    pub fn new(key: &str, method: &str, path: &str, body: &[u8]) -> ServiceResult<Idempotency> {
        if !domain::api::valid_idempotency_key(key) {
            return Err(ServiceError::invalid("Idempotency-Key", "must be 1 to 255 printable ASCII characters"));
        }
        let key_hash = crate::crypto::hmac_sha256(b"hermetic.api.idempotency_key.v1", &[key.as_bytes()]);
        let request_hash = crate::crypto::hmac_sha256(
            b"hermetic.api.idempotency_request.v1",
            &[method.as_bytes(), path.as_bytes(), body],
        );
        Ok(Idempotency { key_hash, request_hash })
    }
}

/// An answer to store or replay: the HTTP status and the JSON body (ids and codes, never PHI).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Json,
    /// Whether this is a stored answer sent again (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

pub(crate) enum Claim {
    /// Nobody answered this key yet: go on, and [`store`] the answer in the same transaction.
    Fresh,
    Replay(Answer),
}

/// Take the key for this request inside `conn`'s transaction, or find its answer.
pub(crate) async fn claim<C: ConnectionTrait>(
    conn: &C,
    api_key: Uuid,
    idem: &Idempotency,
    now: DateTime<Utc>,
) -> ServiceResult<Claim> {
    // A concurrent insert of the same key blocks here until the other transaction ends; then this
    // one either inserts (the other rolled back) or conflicts and reads the committed answer.
    let fresh = db::exec(
        conn,
        "INSERT INTO api_idempotency (api_key_id, key_hash, request_hash, status, response, created_at)
         VALUES ($1, $2, $3, 0, 'null', $4)
         ON CONFLICT (api_key_id, key_hash) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, status = 0, response = 'null', created_at = EXCLUDED.created_at
             WHERE api_idempotency.created_at < $5",
        [
            api_key.into(),
            idem.key_hash.to_vec().into(),
            idem.request_hash.to_vec().into(),
            now.into(),
            (now - RETENTION).into(),
        ],
    )
    .await?;
    if fresh == 1 {
        return Ok(Claim::Fresh);
    }
    #[derive(FromQueryResult)]
    struct Stored {
        request_hash: Vec<u8>,
        status: i16,
        response: Json,
    }
    let s: Stored = db::one_as(
        conn,
        "SELECT request_hash, status, response FROM api_idempotency WHERE api_key_id = $1 AND key_hash = $2",
        [api_key.into(), idem.key_hash.to_vec().into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("idempotency row vanished"))?;
    if !crate::crypto::ct_eq(&s.request_hash, &idem.request_hash) {
        return Err(ServiceError::IdempotencyKeyReused);
    }
    Ok(Claim::Replay(Answer { status: u16::try_from(s.status).unwrap_or(200), body: s.response, replayed: true }))
}

/// Store the answer of a fresh claim (same transaction as the change).
pub(crate) async fn store<C: ConnectionTrait>(
    conn: &C,
    api_key: Uuid,
    idem: &Idempotency,
    answer: &Answer,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "UPDATE api_idempotency SET status = $3, response = $4 WHERE api_key_id = $1 AND key_hash = $2",
        [
            api_key.into(),
            idem.key_hash.to_vec().into(),
            i16::try_from(answer.status).unwrap_or(200).into(),
            answer.body.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Delete answers older than the retention (maintenance).
pub(crate) async fn purge<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(db::exec(conn, "DELETE FROM api_idempotency WHERE created_at < $1", [(now - RETENTION).into()]).await?)
}

/// Begin an API write: its transaction, or — when this key already answered this body — the
/// stored answer (nothing else happens then). Requests without `Idempotency-Key`, and callers
/// that are not API keys, always begin.
pub async fn begin(
    svc: &crate::services::Services,
    actor: &crate::actor::Actor,
    idem: Option<&Idempotency>,
    now: DateTime<Utc>,
) -> ServiceResult<Result<sea_orm::DatabaseTransaction, Answer>> {
    use sea_orm::TransactionTrait;
    let txn = svc.db().begin().await?;
    if let (Some(idem), Some(key)) = (idem, actor.api_key_id())
        && let Claim::Replay(a) = claim(&txn, key, idem, now).await?
    {
        txn.commit().await?;
        return Ok(Err(a));
    }
    Ok(Ok(txn))
}
