//! Sending one transactional API message (`POST /api/v1/messages`) through the same delivery
//! queue as campaigns: the job claims the message's queue row with the process's lease (`FOR
//! UPDATE SKIP LOCKED`), checks suppression and the `transactional` consent again, composes the
//! message through `outbound` (`Kind::Transactional`: tracked, no list headers), hands it to the
//! transport, and writes the outcome with the campaigns' `record()` — the delivery's state through
//! `domain::delivery::after_attempt` / `DeliveryState::transition`, the queue row deleted or
//! released. A deferred message gets a job at its next try's time; a job that finds the row held
//! by another sender fails and is retried by apalis (a dead sender's rows are handed back by the
//! campaign tick's `reclaim_orphans`).
//!
//! The payload carries ids only; the merge data is sealed in `api_message.data`.

use super::{Claimed, Lease, Outcome, SendWorker, decided, outcome_for, skipped};
use crate::contacts::record::{self, Open};
use crate::contacts::{self, fields};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::links::{self, LinkKind, LinkSubject};
use crate::mail;
use crate::outbound::{self, Sender};
use crate::outbox;
use crate::services::Services;
use crate::templates::MergeFields;
use crate::templates::merge::{contact_json, merge_data, organisation_name};
use crate::templates::store::compiled;
use chrono::{DateTime, Utc};
use domain::Phi;
use domain::contacts::ConsentPurpose;
use domain::delivery::{Attempt, DeliverySource, DeliveryState};
use domain::ids::OrganisationId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Send one API message (its delivery row has the message's id). `attempt` only distinguishes the
/// job of each try (the idempotency key), the attempts themselves are counted on the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageJob {
    pub message_id: Uuid,
    pub attempt: i32,
}

impl outbox::Job for MessageJob {
    const QUEUE: &'static str = outbox::queue::API_MESSAGE;
    const MAX_ATTEMPTS: i32 = 25;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("message:{}:{}", self.message_id, self.attempt))
    }
}

/// The AAD of a message's sealed merge data.
pub(crate) fn data_aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "api_message", column: "data", row: id }
}

/// A sequence email's place: its enrolment, its step, and the trigger event whose properties the
/// template's `event.` namespace reads at send time.
pub struct SequenceRef<'a> {
    pub enrolment: Uuid,
    pub step: &'a str,
    pub event: Option<Uuid>,
}

/// A one-recipient message to queue: an API message or a sequence email.
pub struct NewMessage<'a> {
    pub organisation: OrganisationId,
    pub contact: Uuid,
    pub api_key: Option<Uuid>,
    pub template: Uuid,
    pub version: Uuid,
    pub version_html: &'a str,
    pub from_email: String,
    pub from_name: String,
    /// Merge data (the API's `data`): sealed under the organisation's data key.
    pub data: Option<&'a Phi<serde_json::Map<String, serde_json::Value>>>,
    pub purpose: ConsentPurpose,
    pub source: DeliverySource,
    pub sequence: Option<SequenceRef<'a>>,
    pub not_before: DateTime<Utc>,
}

/// Queue one message in the caller's transaction: its `api_message` row, its tracked links, its
/// delivery and queue rows (same id), and its send job. The one way a single message enters the
/// delivery pipeline, whichever source asked for it.
pub async fn enqueue<C: sea_orm::ConnectionTrait>(svc: &Services, txn: &C, m: NewMessage<'_>) -> ServiceResult<Uuid> {
    let org = m.organisation;
    let id = Uuid::now_v7();
    let sealed = match m.data {
        Some(d) if !d.expose().is_empty() => {
            let key = contacts::data_key(svc, txn, org).await?;
            let bytes = zeroize::Zeroizing::new(
                serde_json::to_vec(d.expose()).map_err(|_| ServiceError::internal("encode message data"))?,
            );
            Some(key.seal(&data_aad(org, id), &bytes)?.into_bytes())
        }
        _ => None,
    };
    let (enrolment, step, event) = match &m.sequence {
        Some(s) => (Some(s.enrolment), Some(s.step.to_string()), s.event),
        None => (None, None, None),
    };
    db::exec(
        txn,
        "INSERT INTO api_message (id, organisation_id, api_key_id, template_id, template_version_id, from_email, from_name, data, created_at,
                                  purpose, enrolment_id, step_id, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        [
            id.into(),
            org.0.into(),
            m.api_key.into(),
            m.template.into(),
            m.version.into(),
            m.from_email.into(),
            m.from_name.into(),
            sealed.into(),
            svc.clock().now().into(),
            m.purpose.as_str().into(),
            enrolment.into(),
            step.into(),
            event.into(),
        ],
    )
    .await?;
    let public_url = svc.settings().public_url.trim_end_matches('/').to_string();
    let urls: Vec<String> =
        crate::campaigns::tracking::tracked_links(m.version_html, &public_url).into_iter().map(|l| l.url).collect();
    if !urls.is_empty() {
        db::exec(
            txn,
            "INSERT INTO api_message_link (message_id, position, url)
             SELECT $1, (u.n - 1)::int, u.url FROM unnest($2::text[]) WITH ORDINALITY AS u(url, n)",
            [id.into(), urls.into()],
        )
        .await?;
    }
    db::exec(
        txn,
        "WITH d AS (
             INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at, source)
             VALUES ($1, $2, NULL, $3, $4, $5, $5, $6) RETURNING id, not_before, source)
         INSERT INTO delivery_queue (delivery_id, campaign_id, not_before, source) SELECT id, NULL, not_before, source FROM d",
        [
            id.into(),
            org.0.into(),
            m.contact.into(),
            DeliveryState::Queued.as_str().into(),
            m.not_before.into(),
            m.source.as_str().into(),
        ],
    )
    .await?;
    // The job runs at once; the claim holds the row back until `not_before` (on the service's
    // clock) and a job for a later time is given by the campaign tick's `ensure_jobs`.
    outbox::push(txn, &MessageJob { message_id: id, attempt: 0 }).await?;
    Ok(id)
}

/// What the send needs of the message row.
#[derive(sea_orm::FromQueryResult)]
struct MessageRow {
    organisation_id: Uuid,
    template_version_id: Uuid,
    from_email: String,
    from_name: String,
    data: Option<Vec<u8>>,
    purpose: String,
    event_id: Option<Uuid>,
}

async fn claim(svc: &Services, id: Uuid, lease: i64, now: DateTime<Utc>) -> ServiceResult<Option<Claimed>> {
    let rows = db::all(
        svc.db(),
        &format!(
            "WITH due AS (
                 SELECT delivery_id FROM delivery_queue
                 WHERE delivery_id = $1 AND source IN ('api_message', 'sequence_step') AND claimed_by IS NULL AND not_before <= $2
                 FOR UPDATE SKIP LOCKED),
             claimed AS (
                 UPDATE delivery_queue q SET claimed_by = $3
                 FROM due WHERE q.delivery_id = due.delivery_id RETURNING q.delivery_id)
             SELECT d.id AS delivery_id, d.state, d.attempts + 1 AS attempts, c.id AS contact_id, {cols}, c.time_zone, c.locale, c.attrs,
                    (s.email_bidx IS NOT NULL) AS suppressed, cc.granted, m.purpose
             FROM claimed k
             JOIN delivery d ON d.id = k.delivery_id
             JOIN api_message m ON m.id = d.id
             LEFT JOIN contact c ON c.id = d.contact_id
             LEFT JOIN contact_consent cc ON cc.contact_id = c.id AND cc.purpose = m.purpose
             LEFT JOIN suppression s ON s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx",
            cols = contacts::SEALED_COLS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
        ),
        [id.into(), now.into(), lease.into()],
    )
    .await?;
    #[derive(sea_orm::FromQueryResult)]
    struct ClaimRow {
        delivery_id: Uuid,
        state: String,
        attempts: i32,
        contact_id: Option<Uuid>,
        time_zone: Option<String>,
        locale: Option<String>,
        attrs: Option<serde_json::Value>,
        suppressed: Option<bool>,
        granted: Option<bool>,
        purpose: String,
    }
    let Some(r) = rows.first() else { return Ok(None) };
    let c = <ClaimRow as sea_orm::FromQueryResult>::from_query_result(r, "")?;
    let purpose = ConsentPurpose::parse(&c.purpose).ok_or_else(|| ServiceError::internal("unknown message purpose"))?;
    let suppressed = c.suppressed.unwrap_or(false);
    // Transactional mail needs no grant (only a withdrawal stops it); marketing and care
    // communications need the contact's current grant, as campaigns do.
    let eligible = match purpose {
        ConsentPurpose::Transactional => domain::contacts::transactional_refusal(suppressed, c.granted).is_none(),
        _ => !suppressed && c.granted == Some(true),
    };
    Ok(Some(Claimed {
        id: c.delivery_id,
        state: DeliveryState::parse(&c.state)
            .ok_or_else(|| ServiceError::internal("a delivery row has an unknown state"))?,
        attempts: c.attempts,
        eligible,
        contact: match c.contact_id {
            Some(cid) => Some((
                cid,
                contacts::sealed_from_row(r)?,
                c.time_zone,
                c.locale,
                c.attrs.unwrap_or(serde_json::Value::Null),
            )),
            None => None,
        },
    }))
}

/// Run one message job.
pub async fn send_message(svc: &Services, worker: &SendWorker, job: &MessageJob) -> ServiceResult<()> {
    let lease = worker.lease(svc).await?;
    let now = svc.clock().now();
    let Some(c) = claim(svc, job.message_id, lease.key, now).await? else {
        return not_claimed(svc, job).await;
    };
    let outcome = attempt(svc, &lease, &c, now).await;
    // The outcome is written like a campaign's (same statement, same state machine); a failed
    // write leaves the row claimed by this live lease, so the job fails and is retried.
    super::record(svc, None, lease.key, std::slice::from_ref(&outcome)).await?;
    if matches!(outcome.state, DeliveryState::Deferred | DeliveryState::Queued)
        && let Some(at) = outcome.not_before
    {
        let next = MessageJob { message_id: job.message_id, attempt: c.attempts };
        outbox::push_at(svc.db(), &next, at).await?;
    }
    Ok(())
}

/// Nothing to claim: sent already (no queue row), not due yet (a job at its time exists), or
/// held by another sender (fail, so apalis retries after that sender finished or was reclaimed).
async fn not_claimed(svc: &Services, job: &MessageJob) -> ServiceResult<()> {
    #[derive(sea_orm::FromQueryResult)]
    struct Queued {
        claimed_by: Option<i64>,
        not_before: DateTime<Utc>,
    }
    let q = db::one_as::<Queued, _>(
        svc.db(),
        "SELECT claimed_by, not_before FROM delivery_queue WHERE delivery_id = $1 AND source IN ('api_message', 'sequence_step')",
        [job.message_id.into()],
    )
    .await?;
    match q {
        None => Ok(()),
        Some(Queued { claimed_by: Some(_), .. }) => {
            Err(ServiceError::internal("the message is held by another sender; retrying later"))
        }
        Some(Queued { claimed_by: None, not_before }) => {
            let next = MessageJob { message_id: job.message_id, attempt: job.attempt + 1 };
            outbox::push_at(svc.db(), &next, not_before).await?;
            Ok(())
        }
    }
}

/// Everything from the claimed row to the transport's answer, as the row's outcome.
async fn attempt(svc: &Services, _lease: &Lease, c: &Claimed, now: DateTime<Utc>) -> Outcome {
    if c.contact.is_none() {
        return skipped(c, "the contact was erased");
    }
    if !c.eligible {
        return skipped(c, "suppressed, or consent for its purpose withdrawn since it was queued");
    }
    match build_and_send(svc, c, now).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(delivery = %c.id, error = %e.log_detail(), "an API message could not be built");
            decided(svc, c.id, c.attempts, Attempt::Unbuildable, None)
        }
    }
}

async fn build_and_send(svc: &Services, c: &Claimed, now: DateTime<Utc>) -> ServiceResult<Outcome> {
    let m: MessageRow = db::one_as(
        svc.db(),
        "SELECT organisation_id, template_version_id, from_email, from_name, data, purpose, event_id FROM api_message WHERE id = $1",
        [c.id.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let org = OrganisationId(m.organisation_id);
    // Checked again at send time: only a verified domain of the organisation signs and sends.
    let domain = match crate::sending_domains::verified_domain_of(svc.db(), org, "from_email", &m.from_email).await {
        Ok(d) => d,
        Err(ServiceError::Invalid(_)) => {
            return Ok(skipped(c, "the From domain is no longer a verified sending domain"));
        }
        Err(e) => return Err(e),
    };
    let dkim = crate::sending_domains::signer(svc, &domain).await?;
    let (from, _) = Sender::mailboxes(&m.from_name, &m.from_email, None)?;
    let sender = Sender { from, reply_to: None, dkim: Some(dkim.clone()) };
    let version = compiled(svc, org, m.template_version_id).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let merge_fields = MergeFields::new(&catalogue);
    let html: String =
        crate::campaigns::version_html(svc.db(), m.template_version_id).await?.ok_or(ServiceError::NotFound)?;
    let public_url = svc.settings().public_url.trim_end_matches('/').to_string();
    let tracked = crate::campaigns::tracking::tracked_links(&html, &public_url);
    let key = contacts::data_key(svc, svc.db(), org).await?;
    let Some((cid, sealed, tz, locale, attrs)) = &c.contact else {
        return Err(ServiceError::NotFound);
    };
    let keys = contacts::keys_for(svc, svc.db(), &[sealed]).await?;
    let mut rec = record::open(&keys, org, *cid, sealed, Open::All, &catalogue)?;
    rec.time_zone = tz.clone();
    rec.locale = locale.clone();
    rec.attrs = record::attrs_from_json(attrs, &catalogue);
    let subject = LinkSubject::Contact { contact: *cid, message: c.id };
    let mut link_map = serde_json::Map::new();
    for kind in LinkKind::ALL {
        let tok = links::token_with(&key, org, kind, subject, now)?;
        link_map.insert(kind.name().into(), links::url_at(&public_url, kind, &tok).into());
    }
    let unsubscribe_url =
        link_map.get(LinkKind::Unsubscribe.name()).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let data: Phi<serde_json::Value> = match m.data {
        Some(bytes) => {
            let plain = svc.keys().open(svc.db(), &data_aad(org, c.id), &Sealed::from_bytes(bytes)?).await?;
            Phi::new(serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("stored message data"))?)
        }
        None => Phi::new(serde_json::Value::Object(Default::default())),
    };
    let org_name = organisation_name(svc, org).await?;
    let mut merged =
        merge_data(contact_json(&rec, &merge_fields).into_inner(), &org_name, serde_json::Value::Object(link_map))
            .into_inner();
    // A sequence email's template reads its trigger event's properties as `event.*` (opened
    // here, at send time; the event row is the only copy).
    let event: Phi<serde_json::Value> = match m.event_id {
        Some(e) => Phi::new(crate::sequences::engine::event_json(svc, org, e).await?),
        None => Phi::new(serde_json::Value::Object(Default::default())),
    };
    if let Some(o) = merged.as_object_mut() {
        o.insert("message".into(), data.into_inner());
        o.insert("event".into(), event.into_inner());
    }

    let content = outbound::render(svc, &version.checked, Phi::new(merged))?;
    let tracking = outbound::Tracking { links: &tracked, public_url: &public_url, key: &key, organisation: org, now };
    // Sequence emails for marketing or care communications are list mail: RFC 8058 one-click
    // unsubscribe headers, as campaigns carry. Transactional mail has none (see `Kind`).
    let kind = if m.purpose == ConsentPurpose::Transactional.as_str() {
        outbound::Kind::Transactional { delivery: c.id, tracking: Some(tracking) }
    } else {
        outbound::Kind::Marketing { delivery: c.id, unsubscribe: unsubscribe_url, tracking: Some(tracking) }
    };
    let composed = outbound::compose(&sender, &rec.email, content, &kind, Some(c.id))?;
    let sent = mail::deliver(svc, org, composed.message, &composed.to, &composed.subject, sender.dkim.as_deref()).await;
    Ok(outcome_for(svc, c.id, c.attempts, sent))
}

/// Give a job to every API message whose queue row is due, unheld and without a live job: the
/// retry job of a deferral is pushed after its outcome is written, so a process that stopped in
/// between would otherwise leave the row waiting for ever (the campaign tick calls this, as it
/// restarts lost dispatch jobs). A restart job's `attempt` is minus the due time in unix seconds,
/// so each waiting row gets one restart per due time however many ticks and processes see it.
pub(crate) async fn ensure_jobs(svc: &Services, stale: std::time::Duration) -> ServiceResult<u64> {
    #[derive(sea_orm::FromQueryResult)]
    struct Due {
        delivery_id: Uuid,
        not_before: DateTime<Utc>,
    }
    let now = svc.clock().now();
    let due: Vec<Due> = db::all_as(
        svc.db(),
        "SELECT delivery_id, not_before FROM delivery_queue
         WHERE source IN ('api_message', 'sequence_step') AND claimed_by IS NULL AND not_before <= $1
         ORDER BY not_before LIMIT 500",
        [(now - chrono::Duration::seconds(30)).into()],
    )
    .await?;
    let mut pushed = 0;
    for d in due {
        if outbox::live::<_, MessageJob>(svc.db(), &format!("message:{}:", d.delivery_id), stale).await? > 0 {
            continue;
        }
        let attempt = -i32::try_from(d.not_before.timestamp().rem_euclid(i64::from(i32::MAX))).unwrap_or(0);
        if outbox::push(svc.db(), &MessageJob { message_id: d.delivery_id, attempt }).await? {
            pushed += 1;
            tracing::info!(message = %d.delivery_id, "a send job restarted for a waiting API message");
        }
    }
    Ok(pushed)
}
