//! Outgoing webhooks: administrators register HTTPS endpoints for delivery events; each event is
//! a `webhook_delivery` row per subscribed endpoint, written in the same statement or transaction
//! as the fact it reports (the send path's outcome write, the tracking recorder, the unsubscribe
//! path), with its delivery job. A [`WebhookJob`] posts the signed payload; a failure is retried
//! with exponential back-off (`domain::webhooks::retry_delay_secs`) for 24 h, then the delivery is
//! `failed`; a 2xx ends it; 410 Gone disables the endpoint.
//!
//! Invariants: payloads carry ids and codes only (built in SQL from ids, states and status codes:
//! never a contact's address, name, merge data or a URL holding a token); the signing secret is
//! sealed under the organisation's data key (AAD table `webhook_endpoint`, column `secret`, row
//! id) and shown once; the SSRF guard resolves the endpoint's host, refuses it unless every
//! address is public (`domain::webhooks::is_public`), and connects to exactly the addresses it
//! checked (no second DNS lookup, no redirects) — at registration and at every attempt — unless
//! `webhooks.allow_private` (development) is on.

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::metrics::{self, webhook_outcome};
use crate::outbox::{self, Job};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::ids::OrganisationId;
use domain::webhooks::{self as wh, AttemptView, EndpointInput, EndpointUrl, EndpointView, EventType, Host};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Deliver one webhook (`webhook_delivery.id`): one attempt; a retry is a new job at its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookJob {
    pub delivery_id: Uuid,
}

impl Job for WebhookJob {
    const QUEUE: &'static str = outbox::queue::WEBHOOK;
    /// Runs of one attempt: a handler error is database trouble (the HTTP outcome is recorded,
    /// never an error), so a couple of runs are enough.
    const MAX_ATTEMPTS: i32 = 3;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("wh:{}", self.delivery_id))
    }
}

/// The key of the job for try `attempt + 1` (a retry is its own job).
fn retry_key(delivery: Uuid, attempt: i32) -> String {
    format!("wh:{delivery}:{attempt}")
}

/// The event type of the test event ("Send test event"); never subscribed to.
pub const TEST_EVENT: &str = "webhook.test";
/// Time limit of one attempt (connect, send, answer).
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// At most this much of an answer is read (and then dropped: bodies are never stored).
pub const READ_LIMIT: usize = 4096;
/// Attempts listed per endpoint on the settings page.
pub const ATTEMPTS_SHOWN: i64 = 10;

fn aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "webhook_endpoint", column: "secret", row: id }
}

fn new_secret() -> ServiceResult<Zeroizing<String>> {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<32>()?);
    Ok(Zeroizing::new(format!("{}{}", wh::SECRET_PREFIX, BASE64URL_NOPAD.encode(bytes.as_slice()))))
}

/// Only people who manage settings, never an API key.
fn authorize(actor: &Actor) -> ServiceResult<()> {
    actor.require(Permission::SettingsManage)?;
    if actor.api_key_id().is_some() {
        return Err(ServiceError::Forbidden);
    }
    Ok(())
}

/// Why the SSRF guard refused a host (the reason never names an address or the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Some address of the host is not public.
    Private,
    /// The name did not resolve (or resolved to nothing).
    Unresolved,
}

/// Resolve the endpoint's host and check every address (see the module documentation). Returns
/// the addresses to connect to.
pub async fn resolve_checked(url: &EndpointUrl, allow_private: bool) -> Result<Vec<SocketAddr>, Guard> {
    let addrs: Vec<SocketAddr> = match &url.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, url.port)],
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), url.port));
            match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
                Ok(Ok(it)) => it.collect(),
                _ => return Err(Guard::Unresolved),
            }
        }
    };
    if addrs.is_empty() {
        return Err(Guard::Unresolved);
    }
    if !allow_private && !addrs.iter().all(|a| wh::is_public(a.ip())) {
        return Err(Guard::Private);
    }
    Ok(addrs)
}

/// Check a submitted endpoint: URL shape, event types, and (outside development) that its host
/// resolves to public addresses only.
async fn validate(svc: &Services, input: &EndpointInput) -> ServiceResult<(EndpointUrl, Vec<String>)> {
    let allow = svc.settings().webhooks.allow_private;
    let url = wh::parse_url(&input.url, allow)?;
    if input.events.len() > 20 {
        return Err(ServiceError::invalid("events", "holds too many entries"));
    }
    let mut events = Vec::new();
    for e in &input.events {
        let t: EventType = e.parse()?;
        events.push(t);
    }
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(ServiceError::invalid("events", "choose at least one"));
    }
    match resolve_checked(&url, allow).await {
        Ok(_) => {}
        Err(Guard::Private) => {
            return Err(ServiceError::invalid(
                "url",
                "must be on a public address (not loopback, private, link-local or reserved)",
            ));
        }
        Err(Guard::Unresolved) => return Err(ServiceError::invalid("url", "has a host name that does not resolve")),
    }
    Ok((url, events.iter().map(|e| e.as_str().to_string()).collect()))
}

/// A new endpoint's id and signing secret (shown once).
pub struct Created {
    pub id: Uuid,
    pub secret: Zeroizing<String>,
}

/// Register an endpoint (administrators).
pub async fn create(svc: &Services, actor: &Actor, input: EndpointInput) -> ServiceResult<Created> {
    authorize(actor)?;
    let (url, events) = validate(svc, &input).await?;
    let org = actor.organisation_id;
    let count = db::scalar::<i64, _>(
        svc.db(),
        "SELECT count(*) FROM webhook_endpoint WHERE organisation_id = $1",
        [org.0.into()],
    )
    .await?
    .unwrap_or(0);
    if count as usize >= wh::MAX_ENDPOINTS {
        return Err(ServiceError::invalid("url", "cannot be added: an organisation has at most 20 endpoints"));
    }
    let id = Uuid::now_v7();
    let secret = new_secret()?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let sealed = svc.keys().seal(&txn, svc.clock(), &aad(org, id), secret.as_bytes()).await?.into_bytes();
    db::exec(
        &txn,
        "INSERT INTO webhook_endpoint (id, organisation_id, url, events, enabled, secret, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        [
            id.into(),
            org.0.into(),
            url.url.clone().into(),
            events.clone().into(),
            input.enabled.into(),
            sealed.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::WebhookCreated)
            .target("webhook_endpoint", id)
            .detail("events", events)
            .detail("enabled", input.enabled),
    )
    .await?;
    txn.commit().await?;
    Ok(Created { id, secret })
}

/// Change an endpoint's URL, event types or switch (administrators). Turning it on again clears
/// a disabled reason.
pub async fn update(svc: &Services, actor: &Actor, id: Uuid, input: EndpointInput) -> ServiceResult<()> {
    authorize(actor)?;
    let (url, events) = validate(svc, &input).await?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE webhook_endpoint SET url = $3, events = $4, enabled = $5,
             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, updated_at = $6
         WHERE id = $1 AND organisation_id = $2",
        [
            id.into(),
            actor.organisation_id.0.into(),
            url.url.into(),
            events.clone().into(),
            input.enabled.into(),
            svc.clock().now().into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::WebhookChanged)
            .target("webhook_endpoint", id)
            .detail("events", events)
            .detail("enabled", input.enabled),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Delete an endpoint with its deliveries and attempts (administrators).
pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    authorize(actor)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "DELETE FROM webhook_endpoint WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::WebhookDeleted).target("webhook_endpoint", id))
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Replace an endpoint's signing secret; the new one is shown once. Deliveries not yet made are
/// signed with it.
pub async fn rotate_secret(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<Zeroizing<String>> {
    authorize(actor)?;
    let org = actor.organisation_id;
    let secret = new_secret()?;
    let txn = svc.db().begin().await?;
    let sealed = svc.keys().seal(&txn, svc.clock(), &aad(org, id), secret.as_bytes()).await?.into_bytes();
    let n = db::exec(
        &txn,
        "UPDATE webhook_endpoint SET secret = $3, updated_at = $4 WHERE id = $1 AND organisation_id = $2",
        [id.into(), org.0.into(), sealed.into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::WebhookSecretRotated).target("webhook_endpoint", id))
        .await?;
    txn.commit().await?;
    Ok(secret)
}

/// Queue a test event (`webhook.test`, no data) to one endpoint, delivered like any other.
pub async fn send_test(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<Uuid> {
    authorize(actor)?;
    let now = svc.clock().now();
    let delivery = Uuid::now_v7();
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "INSERT INTO webhook_delivery (id, event_id, endpoint_id, organisation_id, event_type, data, created_at, updated_at)
         SELECT $1, $2, e.id, e.organisation_id, $5, '{\"test\": true}'::jsonb, $4, $4
         FROM webhook_endpoint e WHERE e.id = $3 AND e.organisation_id = $6",
        [
            delivery.into(),
            Uuid::now_v7().into(),
            id.into(),
            now.into(),
            TEST_EVENT.into(),
            actor.organisation_id.0.into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    outbox::push(&txn, &WebhookJob { delivery_id: delivery }).await?;
    txn.commit().await?;
    Ok(delivery)
}

/// The organisation's endpoints with their last attempts (administrators).
pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<EndpointView>> {
    authorize(actor)?;
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
        url: String,
        events: Vec<String>,
        enabled: bool,
        disabled_reason: Option<String>,
        created_at: DateTime<Utc>,
    }
    #[derive(FromQueryResult)]
    struct AttemptRow {
        endpoint_id: Uuid,
        at: DateTime<Utc>,
        event_type: String,
        attempt: i32,
        status: Option<i32>,
        error: Option<String>,
        next_attempt_at: Option<DateTime<Utc>>,
        state: String,
    }
    let org = actor.organisation_id.0;
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        "SELECT id, url, events, enabled, disabled_reason, created_at FROM webhook_endpoint
         WHERE organisation_id = $1 ORDER BY created_at, id",
        [org.into()],
    )
    .await?;
    let attempts: Vec<AttemptRow> = db::all_as(
        svc.db(),
        "SELECT a.endpoint_id, a.at, d.event_type, a.attempt, a.status, a.error, a.next_attempt_at, d.state
         FROM webhook_endpoint e
         CROSS JOIN LATERAL (SELECT * FROM webhook_attempt a WHERE a.endpoint_id = e.id ORDER BY a.at DESC, a.id DESC LIMIT $2) a
         JOIN webhook_delivery d ON d.id = a.delivery_id
         WHERE e.organisation_id = $1
         ORDER BY a.at DESC, a.id DESC",
        [org.into(), ATTEMPTS_SHOWN.into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| EndpointView {
            attempts: attempts
                .iter()
                .filter(|a| a.endpoint_id == r.id)
                .map(|a| AttemptView {
                    at: a.at,
                    event_type: a.event_type.clone(),
                    attempt: a.attempt,
                    status: a.status,
                    error: a.error.clone(),
                    next_attempt_at: a.next_attempt_at,
                    state: a.state.clone(),
                })
                .collect(),
            id: r.id,
            url: r.url,
            events: r.events.iter().filter_map(|e| e.parse().ok()).collect(),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            created_at: r.created_at,
        })
        .collect())
}

/// Queue one event for every enabled endpoint of the organisation subscribed to `event`, on the
/// caller's connection (inside the transaction of the fact it reports). `data` holds ids and
/// codes only. Costs one statement that finds no endpoint when none is subscribed.
pub(crate) async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    event: EventType,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let sql = format!(
        "WITH d AS (
             INSERT INTO webhook_delivery (id, event_id, endpoint_id, organisation_id, event_type, data, created_at, updated_at)
             SELECT gen_random_uuid(), $3, e.id, e.organisation_id, $2, $4, $5, $5
             FROM webhook_endpoint e WHERE e.organisation_id = $1 AND e.enabled AND $2 = ANY(e.events)
             RETURNING id)
         {}",
        outbox::push_each_sql::<WebhookJob>("d", "delivery_id", "wh:")
    );
    db::exec(conn, &sql, [org.0.into(), event.as_str().into(), Uuid::now_v7().into(), data.into(), now.into()]).await?;
    Ok(())
}

/// SQL for a `WITH` clause of a statement that has a relation `rel` of recorded facts with
/// `organisation_id`, `event_type` (an [`EventType`] code) and `data` (jsonb of ids and codes):
/// it adds `webhook_delivery` rows (relation `wh_rows`) for each subscribed enabled endpoint, one
/// event id per fact, and their jobs (relation `wh_jobs`). `now_param` is the statement's
/// placeholder for the service clock's time. For the write paths that record facts in bulk.
pub(crate) fn enqueue_cte(rel: &str, now_param: &str) -> String {
    format!(
        "wh_rows AS (
             INSERT INTO webhook_delivery (id, event_id, endpoint_id, organisation_id, event_type, data, created_at, updated_at)
             SELECT gen_random_uuid(), f.event_id, e.id, f.organisation_id, f.event_type, f.data, {now_param}, {now_param}
             FROM (SELECT gen_random_uuid() AS event_id, x.organisation_id, x.event_type, x.data
                   FROM {rel} x
                   WHERE EXISTS (SELECT 1 FROM webhook_endpoint w WHERE w.organisation_id = x.organisation_id AND w.enabled)) f
             JOIN webhook_endpoint e ON e.organisation_id = f.organisation_id AND e.enabled AND f.event_type = ANY(e.events)
             RETURNING id),
         wh_jobs AS ({})",
        outbox::push_each_sql::<WebhookJob>("wh_rows", "delivery_id", "wh:")
    )
}

/// Delete finished (delivered or given-up) deliveries created before `before`, with their
/// attempts: the page shows recent attempts, and the rows are only ids and codes, so 30 days of
/// history is plenty. Pending ones are kept (their retries are still due).
pub(crate) async fn purge_finished<C: ConnectionTrait>(conn: &C, before: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(db::exec(conn, "DELETE FROM webhook_delivery WHERE state <> 'pending' AND created_at < $1", [before.into()])
        .await?)
}

/// The body of a delivery (ids and codes only).
#[derive(Serialize)]
struct Payload<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: String,
    data: &'a serde_json::Value,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No HTTP answer: `timeout`, `connect`, `tls`, `refused_address`, `unresolved`, `request`.
    Error(&'static str),
}

/// One attempt of a delivery (the job handler: an id from our own queue is its authority).
/// Records the attempt, and either ends the delivery or schedules the next try as a new job.
/// A delivery that is not pending (done, or taken by a concurrent run) is left alone.
pub async fn deliver(svc: &Services, delivery_id: Uuid) -> ServiceResult<()> {
    #[derive(FromQueryResult)]
    struct Row {
        event_id: Uuid,
        endpoint_id: Uuid,
        organisation_id: Uuid,
        event_type: String,
        data: serde_json::Value,
        created_at: DateTime<Utc>,
        state: String,
        attempts: i32,
        url: String,
        enabled: bool,
        secret: Vec<u8>,
    }
    let row: Option<Row> = db::one_as(
        svc.db(),
        "SELECT d.event_id, d.endpoint_id, d.organisation_id, d.event_type, d.data, d.created_at, d.state, d.attempts,
                e.url, e.enabled, e.secret
         FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id WHERE d.id = $1",
        [delivery_id.into()],
    )
    .await?;
    let Some(row) = row else { return Ok(()) };
    if row.state != "pending" {
        return Ok(());
    }
    let now = svc.clock().now();
    let attempt = row.attempts + 1;
    let answer = if row.enabled {
        let org = OrganisationId(row.organisation_id);
        let sealed = Sealed::from_bytes(row.secret).map_err(|_| ServiceError::internal("webhook secret unreadable"))?;
        let secret = svc.keys().open(svc.db(), &aad(org, row.endpoint_id), &sealed).await?;
        let body = serde_json::to_vec(&Payload {
            id: row.event_id,
            kind: &row.event_type,
            created_at: row.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: &row.data,
        })
        .map_err(|_| ServiceError::internal("webhook payload encoding"))?;
        let header = crate::api::keys::signature_header(secret.as_slice(), now.timestamp(), &body);
        post(svc, &row.url, &header, delivery_id, body).await
    } else {
        Answer::Error("endpoint_disabled")
    };
    let (status, error) = match &answer {
        Answer::Status(s) => (Some(i32::from(*s)), None),
        Answer::Error(e) => (None, Some(*e)),
    };
    let delivered = matches!(answer, Answer::Status(200..=299));
    let gone = matches!(answer, Answer::Status(410));
    let jitter = f64::from(Uuid::new_v4().as_bytes()[0]) / 255.0;
    let next = now + Duration::seconds(wh::retry_delay_secs(attempt, jitter));
    let give_up = gone || !row.enabled || next > row.created_at + Duration::seconds(wh::GIVE_UP_AFTER_SECS);
    let (state, next_at) = if delivered {
        ("delivered", None)
    } else if give_up {
        ("failed", None)
    } else {
        ("pending", Some(next))
    };
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE webhook_delivery SET state = $3, attempts = $2, next_attempt_at = $4, updated_at = $5
         WHERE id = $1 AND state = 'pending' AND attempts = $2 - 1",
        [delivery_id.into(), attempt.into(), state.into(), next_at.into(), now.into()],
    )
    .await?;
    if n == 0 {
        // Another run of this job recorded this attempt first (apalis is at-least-once).
        return Ok(());
    }
    db::exec(
        &txn,
        "INSERT INTO webhook_attempt (delivery_id, endpoint_id, attempt, at, status, error, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            delivery_id.into(),
            row.endpoint_id.into(),
            attempt.into(),
            now.into(),
            status.into(),
            error.map(str::to_string).into(),
            next_at.into(),
        ],
    )
    .await?;
    if let Some(at) = next_at {
        outbox::push_keyed_at(&txn, &WebhookJob { delivery_id }, retry_key(delivery_id, attempt), at).await?;
    }
    if gone {
        let n = db::exec(
            &txn,
            "UPDATE webhook_endpoint SET enabled = false, disabled_reason = 'gone', updated_at = $2 WHERE id = $1 AND enabled",
            [row.endpoint_id.into(), now.into()],
        )
        .await?;
        if n > 0 {
            audit::record(
                svc,
                &txn,
                AuditRecord::new(
                    Some(OrganisationId(row.organisation_id)),
                    AuditActor::System,
                    AuditAction::WebhookDisabled,
                    AuditOutcome::Success,
                )
                .target("webhook_endpoint", row.endpoint_id)
                .detail("reason", "gone"),
            )
            .await?;
        }
    }
    txn.commit().await?;
    metrics::webhook_attempt(if delivered {
        webhook_outcome::DELIVERED
    } else if gone {
        webhook_outcome::DISABLED
    } else if matches!(answer, Answer::Error("refused_address")) && next_at.is_some() {
        webhook_outcome::REFUSED
    } else if next_at.is_some() {
        webhook_outcome::RETRY
    } else {
        webhook_outcome::FAILED
    });
    tracing::info!(
        delivery = %delivery_id,
        attempt,
        status = status.unwrap_or(0),
        error = error.unwrap_or(""),
        state,
        "webhook attempt"
    );
    Ok(())
}

/// POST the body to the endpoint through the SSRF guard: the host is resolved and checked now,
/// and the connection goes to the checked addresses only. No redirects; 10 s in all; at most
/// [`READ_LIMIT`] bytes of the answer are read, then dropped.
async fn post(svc: &Services, url: &str, signature: &str, delivery: Uuid, body: Vec<u8>) -> Answer {
    let allow = svc.settings().webhooks.allow_private;
    let Ok(parsed) = wh::parse_url(url, allow) else {
        return Answer::Error("refused_address");
    };
    let addrs = match resolve_checked(&parsed, allow).await {
        Ok(a) => a,
        Err(Guard::Private) => return Answer::Error("refused_address"),
        Err(Guard::Unresolved) => return Answer::Error("unresolved"),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .https_only(!allow)
        .user_agent("Hermetic-Webhooks/1")
        .no_proxy();
    if let Host::Name(name) = &parsed.host {
        builder = builder.resolve_to_addrs(name, &addrs);
    }
    let Ok(client) = builder.build() else {
        return Answer::Error("request");
    };
    let sent = client
        .post(&parsed.url)
        .header("content-type", "application/json")
        .header("hermetic-signature", signature)
        .header("hermetic-delivery", delivery.to_string())
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut read = 0usize;
            while read < READ_LIMIT {
                match tokio::time::timeout(TIMEOUT, resp.chunk()).await {
                    Ok(Ok(Some(c))) => read += c.len(),
                    _ => break,
                }
            }
            Answer::Status(status)
        }
        Err(e) if e.is_timeout() => Answer::Error("timeout"),
        Err(e) if e.is_connect() => Answer::Error("connect"),
        Err(_) => Answer::Error("request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_event_is_not_a_subscribable_type() {
        assert!(TEST_EVENT.parse::<EventType>().is_err());
    }

    #[test]
    fn secrets_are_prefixed_and_carry_256_bits() {
        let s = new_secret().unwrap();
        assert!(s.starts_with("hm_whsec_"));
        assert_eq!(s.len(), "hm_whsec_".len() + 43);
    }
}
