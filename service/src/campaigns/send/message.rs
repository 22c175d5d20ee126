//! One-recipient messages — transactional API messages (`POST /api/v1/messages`) and sequence
//! emails — through the same delivery queue as campaigns. `enqueue` writes the message row, its
//! delivery and its queue row in the caller's transaction; `send_due` (run in a loop by every
//! worker process) claims due rows in batches with the process's lease (`FOR UPDATE SKIP
//! LOCKED`), checks suppression and consent for the message's purpose again, composes each
//! message through `outbound`, sends the batch over pipelined SMTP lanes and writes the outcomes
//! with the campaigns' `record()` — the delivery's state through `domain::delivery::after_attempt`
//! / `DeliveryState::transition`, the queue row deleted or released for its retry. A dead
//! sender's rows are handed back by the campaign tick's `reclaim_orphans`.
//!
//! Why a loop and not a job per message (measured with `scripts/bench sequences`, see
//! docs/architecture.md): a job per message cost a queue round trip, a claim, a context (domain,
//! signer, template, catalogue, keys) and an unpipelined SMTP transaction per message.
//!
//! Nothing carries patient data but sealed columns: the merge data is sealed in
//! `api_message.data`, the event's properties stay in `patient_event.properties`.

use super::{Claimed, Ready, SendWorker, decided, skipped};
use crate::campaigns::tracking::TrackedLink;
use crate::contacts::record::{self, Open};
use crate::contacts::{self, fields};
use crate::crypto::keyring::DataKey;
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::links::{self, LinkKind, LinkSubject};
use crate::mail::Dkim;
use crate::outbound::{self, Sender};
use crate::services::Services;
use crate::templates::MergeFields;
use crate::templates::merge::{contact_json, merge_data, organisation_name};
use crate::templates::store::{CompiledVersion, compiled};
use chrono::{DateTime, Utc};
use domain::Phi;
use domain::contacts::{ConsentPurpose, CustomField};
use domain::delivery::{Attempt, DeliverySource, DeliveryState};
use domain::ids::OrganisationId;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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
/// delivery and queue rows (same id). The one way a single message enters the delivery pipeline,
/// whichever source asked for it.
pub async fn enqueue<C: sea_orm::ConnectionTrait>(svc: &Services, txn: &C, m: NewMessage<'_>) -> ServiceResult<Uuid> {
    let id = Uuid::now_v7();
    enqueue_many(svc, txn, &[(id, m)]).await?;
    Ok(id)
}

/// Queue messages (ids chosen by the caller) in the caller's transaction in three statements
/// whatever their number: the sequence engine queues a whole batch's emails at once.
pub async fn enqueue_many<C: sea_orm::ConnectionTrait>(
    svc: &Services,
    txn: &C,
    msgs: &[(Uuid, NewMessage<'_>)],
) -> ServiceResult<()> {
    use serde_json::{Value as Json, json};
    if msgs.is_empty() {
        return Ok(());
    }
    let public_url = svc.settings().public_url.trim_end_matches('/').to_string();
    let mut urls_of: HashMap<Uuid, Vec<String>> = HashMap::new();
    let (mut rows, mut links, mut deliveries) = (Vec::new(), Vec::new(), Vec::new());
    for (id, m) in msgs {
        let org = m.organisation;
        // Merge data sealed under the organisation's key, passed as hex (bytea has no JSON form).
        let sealed = match m.data {
            Some(d) if !d.expose().is_empty() => {
                let key = contacts::data_key(svc, txn, org).await?;
                let bytes = zeroize::Zeroizing::new(
                    serde_json::to_vec(d.expose()).map_err(|_| ServiceError::internal("encode message data"))?,
                );
                let sealed = key.seal(&data_aad(org, *id), &bytes)?.into_bytes();
                Some(sealed.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            _ => None,
        };
        let (enrolment, step, event) = match &m.sequence {
            Some(s) => (Some(s.enrolment), Some(s.step), s.event),
            None => (None, None, None),
        };
        rows.push(json!({
            "id": id, "organisation_id": org.0, "api_key_id": m.api_key, "template_id": m.template,
            "template_version_id": m.version, "from_email": m.from_email, "from_name": m.from_name, "data": sealed,
            "purpose": m.purpose.as_str(), "enrolment_id": enrolment, "step_id": step, "event_id": event,
        }));
        let urls = urls_of.entry(m.version).or_insert_with(|| {
            crate::campaigns::tracking::tracked_links(m.version_html, &public_url).into_iter().map(|l| l.url).collect()
        });
        for (position, url) in urls.iter().enumerate() {
            links.push(json!({ "message_id": id, "position": position, "url": url }));
        }
        deliveries.push(json!({
            "id": id, "organisation_id": org.0, "contact_id": m.contact, "not_before": m.not_before,
            "source": m.source.as_str(),
        }));
    }
    // `LIMIT jsonb_array_length(..)` tells the planner the row count (see campaigns' record()).
    db::exec(
        txn,
        "INSERT INTO api_message (id, organisation_id, api_key_id, template_id, template_version_id, from_email, from_name, data, created_at,
                                  purpose, enrolment_id, step_id, event_id)
         SELECT id, organisation_id, api_key_id, template_id, template_version_id, from_email, from_name, decode(data, 'hex'), $2,
                purpose, enrolment_id, step_id, event_id
         FROM jsonb_to_recordset($1) AS x(id uuid, organisation_id uuid, api_key_id uuid, template_id uuid, template_version_id uuid,
                                          from_email text, from_name text, data text, purpose text, enrolment_id uuid, step_id text, event_id uuid)
         LIMIT jsonb_array_length($1)",
        [Json::Array(rows).into(), svc.clock().now().into()],
    )
    .await?;
    if !links.is_empty() {
        db::exec(
            txn,
            "INSERT INTO api_message_link (message_id, position, url)
             SELECT message_id, position, url FROM jsonb_to_recordset($1) AS x(message_id uuid, position int, url text)
             LIMIT jsonb_array_length($1)",
            [Json::Array(links).into()],
        )
        .await?;
    }
    db::exec(
        txn,
        "WITH d AS (
             INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at, source)
             SELECT id, organisation_id, NULL, contact_id, $2, not_before, not_before, source
             FROM jsonb_to_recordset($1) AS x(id uuid, organisation_id uuid, contact_id uuid, not_before timestamptz, source text)
             LIMIT jsonb_array_length($1)
             RETURNING id, not_before, source)
         INSERT INTO delivery_queue (delivery_id, campaign_id, not_before, source) SELECT id, NULL, not_before, source FROM d",
        [Json::Array(deliveries).into(), DeliveryState::Queued.as_str().into()],
    )
    .await?;
    // No job per message: every worker process's sender loop (`send_due`) claims due rows of
    // the one-recipient sources in batches, so the row waits until `not_before` (on the
    // service's clock) and a retry is the same row with a later `not_before`.
    Ok(())
}

/// A claimed one-recipient message: its delivery and contact, and what its message row says.
struct Due {
    c: Claimed,
    organisation: OrganisationId,
    template_version_id: Uuid,
    from_email: String,
    from_name: String,
    data: Option<Vec<u8>>,
    purpose: ConsentPurpose,
    event_id: Option<Uuid>,
    event_properties: Option<Vec<u8>>,
}

/// Claim up to `n` due one-recipient messages (API messages and sequence emails, any
/// organisation) for this process's lease, with everything their build needs in one statement:
/// the contact's sealed row, suppression and consent now, the message row and the trigger event's
/// sealed properties. Rows are taken in due order through `delivery_queue_message_due`.
async fn claim_due(svc: &Services, lease: i64, n: i64, now: DateTime<Utc>) -> ServiceResult<Vec<Due>> {
    let rows = db::all(
        svc.db(),
        &format!(
            "WITH due AS (
                 SELECT delivery_id FROM delivery_queue
                 WHERE source IN ('api_message', 'sequence_step') AND claimed_by IS NULL AND not_before <= $1
                 ORDER BY not_before LIMIT $2 FOR UPDATE SKIP LOCKED),
             claimed AS (
                 UPDATE delivery_queue q SET claimed_by = $3
                 FROM due WHERE q.delivery_id = due.delivery_id RETURNING q.delivery_id)
             SELECT d.id AS delivery_id, d.state, d.attempts + 1 AS attempts, c.id AS contact_id, {cols}, c.time_zone, c.locale, c.attrs,
                    (s.email_bidx IS NOT NULL) AS suppressed, cc.granted, m.purpose, m.organisation_id, m.template_version_id,
                    m.from_email, m.from_name, m.data, m.event_id, e.properties AS event_properties
             FROM claimed k
             JOIN delivery d ON d.id = k.delivery_id
             JOIN api_message m ON m.id = d.id
             LEFT JOIN contact c ON c.id = d.contact_id
             LEFT JOIN contact_consent cc ON cc.contact_id = c.id AND cc.purpose = m.purpose
             LEFT JOIN suppression s ON s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx
             LEFT JOIN patient_event e ON e.id = m.event_id AND e.organisation_id = m.organisation_id",
            cols = contacts::SEALED_COLS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
        ),
        [now.into(), n.into(), lease.into()],
    )
    .await?;
    #[derive(sea_orm::FromQueryResult)]
    struct ClaimRow {
        suppressed: Option<bool>,
        granted: Option<bool>,
        purpose: String,
        organisation_id: Uuid,
        template_version_id: Uuid,
        from_email: String,
        from_name: String,
        data: Option<Vec<u8>>,
        event_id: Option<Uuid>,
        event_properties: Option<Vec<u8>>,
    }
    rows.iter()
        .map(|r| {
            let c = <ClaimRow as sea_orm::FromQueryResult>::from_query_result(r, "")?;
            let purpose =
                ConsentPurpose::parse(&c.purpose).ok_or_else(|| ServiceError::internal("unknown message purpose"))?;
            let suppressed = c.suppressed.unwrap_or(false);
            // Transactional mail needs no grant (only a withdrawal stops it); marketing and care
            // communications need the contact's current grant, as campaigns do.
            let eligible = match purpose {
                ConsentPurpose::Transactional => {
                    domain::contacts::transactional_refusal(suppressed, c.granted).is_none()
                }
                _ => !suppressed && c.granted == Some(true),
            };
            Ok(Due {
                c: super::claimed_from(r, eligible)?,
                organisation: OrganisationId(c.organisation_id),
                template_version_id: c.template_version_id,
                from_email: c.from_email,
                from_name: c.from_name,
                data: c.data,
                purpose,
                event_id: c.event_id,
                event_properties: c.event_properties,
            })
        })
        .collect()
}

/// What every message of one template version and sender shares, prepared once per batch.
struct Context {
    version: Arc<CompiledVersion>,
    fields: MergeFields,
    catalogue: Vec<CustomField>,
    org_name: String,
    key: Arc<DataKey>,
    tracked: Vec<TrackedLink>,
    sender: Sender,
    dkim: Arc<Dkim>,
}

/// Why a whole group of messages cannot be built now.
enum Unready {
    /// The From domain is no longer a verified sending domain of the organisation: skipped.
    Unverified,
    /// Anything else (logged once): each row's attempt counts as unbuildable.
    Failed,
}

async fn context(svc: &Services, d: &Due) -> Result<Context, Unready> {
    let org = d.organisation;
    let prepared = async {
        // Checked again at send time: only a verified domain of the organisation signs and sends.
        let domain = match crate::sending_domains::verified_domain_of(svc.db(), org, "from_email", &d.from_email).await
        {
            Ok(v) => v,
            Err(ServiceError::Invalid(_)) => return Ok(Err(Unready::Unverified)),
            Err(e) => return Err(e),
        };
        let dkim = crate::sending_domains::signer(svc, &domain).await?;
        let (from, _) = Sender::mailboxes(&d.from_name, &d.from_email, None)?;
        let version = compiled(svc, org, d.template_version_id).await?;
        let catalogue = fields::catalogue(svc, svc.db(), org).await?;
        let html: String =
            crate::campaigns::version_html(svc.db(), d.template_version_id).await?.ok_or(ServiceError::NotFound)?;
        let public_url = svc.settings().public_url.trim_end_matches('/').to_string();
        Ok(Ok(Context {
            version,
            fields: MergeFields::new(&catalogue),
            catalogue,
            org_name: organisation_name(svc, org).await?,
            key: contacts::data_key(svc, svc.db(), org).await?,
            tracked: crate::campaigns::tracking::tracked_links(&html, &public_url),
            sender: Sender { from, reply_to: None, dkim: Some(dkim.clone()) },
            dkim,
        }))
    };
    match prepared.await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(version = %d.template_version_id, error = %e.log_detail(), "messages of a template version could not be prepared");
            Err(Unready::Failed)
        }
    }
}

/// Open a sealed value of this organisation from the batch's key set (fails closed on a key of
/// another organisation, tampering or misplacement).
fn open_sealed(keys: &record::KeySet, org: OrganisationId, aad: &Aad<'_>, bytes: &[u8]) -> ServiceResult<Vec<u8>> {
    let sealed = Sealed::from_bytes(bytes.to_vec())?;
    let key = keys.get(&sealed.key_id()).ok_or_else(|| ServiceError::internal("a sealed value has an unknown key"))?;
    if key.organisation != Some(org) {
        return Err(ServiceError::internal("a value sealed under another organisation's key"));
    }
    Ok(key.open(aad, &sealed)?.to_vec())
}

/// Build one message: the contact opened, merge data and the trigger event's properties opened,
/// the template rendered in the sandbox, composed through `outbound` with tracking.
fn build(
    svc: &Services,
    x: &Context,
    keys: &record::KeySet,
    d: &Due,
    public_url: &str,
    now: DateTime<Utc>,
) -> ServiceResult<Ready> {
    let org = d.organisation;
    let c = &d.c;
    let Some((cid, sealed, tz, locale, attrs)) = &c.contact else {
        return Err(ServiceError::NotFound);
    };
    let mut rec = record::open(keys, org, *cid, sealed, Open::All, &x.catalogue)?;
    rec.time_zone = tz.clone();
    rec.locale = locale.clone();
    rec.attrs = record::attrs_from_json(attrs, &x.catalogue);
    let subject = LinkSubject::Contact { contact: *cid, message: c.id };
    let mut link_map = serde_json::Map::new();
    for kind in LinkKind::ALL {
        let tok = links::token_with(&x.key, org, kind, subject, now)?;
        link_map.insert(kind.name().into(), links::url_at(public_url, kind, &tok).into());
    }
    let unsubscribe_url =
        link_map.get(LinkKind::Unsubscribe.name()).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let data: Phi<serde_json::Value> = match &d.data {
        Some(bytes) => {
            let plain = zeroize::Zeroizing::new(open_sealed(keys, org, &data_aad(org, c.id), bytes)?);
            Phi::new(serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("stored message data"))?)
        }
        None => Phi::new(serde_json::Value::Object(Default::default())),
    };
    // A sequence email's template reads its trigger event's properties as `event.*` (opened
    // here, at send time; the event row is the only copy).
    let event: Phi<serde_json::Value> = match (d.event_id, &d.event_properties) {
        (Some(e), Some(bytes)) => Phi::new(record::attrs_json(&crate::events::open_properties(keys, org, e, bytes)?)),
        _ => Phi::new(serde_json::Value::Object(Default::default())),
    };
    let mut merged =
        merge_data(contact_json(&rec, &x.fields).into_inner(), &x.org_name, serde_json::Value::Object(link_map))
            .into_inner();
    if let Some(o) = merged.as_object_mut() {
        o.insert("message".into(), data.into_inner());
        o.insert("event".into(), event.into_inner());
    }
    let content = outbound::render(svc, &x.version.checked, Phi::new(merged))?;
    let tracking = outbound::Tracking { links: &x.tracked, public_url, key: &x.key, organisation: org, now };
    // Sequence emails for marketing or care communications are list mail: RFC 8058 one-click
    // unsubscribe headers, as campaigns carry. Transactional mail has none (see `Kind`).
    let kind = if d.purpose == ConsentPurpose::Transactional {
        outbound::Kind::Transactional { delivery: c.id, tracking: Some(tracking) }
    } else {
        outbound::Kind::Marketing { delivery: c.id, unsubscribe: unsubscribe_url, tracking: Some(tracking) }
    };
    let composed = outbound::compose(&x.sender, &rec.email, content, &kind, Some(c.id))?;
    Ok(Ready {
        id: c.id,
        attempts: c.attempts,
        organisation: org,
        message: composed.message,
        to: composed.to,
        subject: composed.subject,
        dkim: x.dkim.clone(),
    })
}

/// Send one batch of due one-recipient messages — API messages and sequence emails of every
/// organisation — and return how many rows it claimed (0: nothing is due). Every worker process
/// runs a few of these loops (`jobs::messages`); a message is claimed once (`FOR UPDATE SKIP
/// LOCKED` with the process's lease), built from contexts prepared once per template version and
/// sender, sent over pipelined SMTP lanes like a campaign's batch, and its outcome written by the
/// campaigns' `record` as it arrives (the same state machine, exactly-once window and retry
/// policy: a deferral is the same row with a later `not_before`).
pub async fn send_due(svc: &Services, worker: &SendWorker, n: i64) -> ServiceResult<usize> {
    let lease = worker.lease(svc).await?;
    if !lease.alive().await {
        return Err(ServiceError::internal("the send lease was lost"));
    }
    let now = svc.clock().now();
    let claimed = claim_due(svc, lease.key, n, now).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let count = claimed.len();
    let (tx, writer) = super::outcome_writer(svc, None, lease.key);
    // Every key the batch opens: contacts, merge data, event properties (loaded once).
    let mut ids: Vec<Uuid> =
        claimed.iter().flat_map(|d| d.c.contact.as_ref().map(|x| record::key_ids(&x.1)).unwrap_or_default()).collect();
    for d in &claimed {
        for bytes in [&d.data, &d.event_properties].into_iter().flatten() {
            if let Ok(s) = Sealed::from_bytes(bytes.clone()) {
                ids.push(s.key_id());
            }
        }
    }
    let keys = svc.keys().load_keys(svc.db(), ids).await?;
    let public_url = svc.settings().public_url.trim_end_matches('/').to_string();
    let mut contexts: HashMap<(Uuid, String, String), Result<Context, Unready>> = HashMap::new();
    let mut ready = Vec::with_capacity(count);
    for d in &claimed {
        let c = &d.c;
        if c.contact.is_none() {
            let _ = tx.send(skipped(c, "the contact was erased"));
            continue;
        }
        if !c.eligible {
            let _ = tx.send(skipped(c, "suppressed, or consent for its purpose withdrawn since it was queued"));
            continue;
        }
        let k = (d.template_version_id, d.from_email.clone(), d.from_name.clone());
        if !contexts.contains_key(&k) {
            let x = context(svc, d).await;
            contexts.insert(k.clone(), x);
        }
        let built = match contexts.get(&k) {
            Some(Ok(x)) => build(svc, x, &keys, d, &public_url, now).map_err(|e| {
                tracing::warn!(delivery = %c.id, error = %e.log_detail(), "a message could not be built");
            }),
            Some(Err(Unready::Unverified)) => {
                let _ = tx.send(skipped(c, "the From domain is no longer a verified sending domain"));
                continue;
            }
            Some(Err(Unready::Failed)) | None => Err(()),
        };
        match built {
            Ok(r) => ready.push(r),
            Err(()) => {
                let _ = tx.send(decided(svc, c.id, c.attempts, Attempt::Unbuildable, None));
            }
        }
    }
    drop(claimed);
    let lanes = (svc.settings().sending.concurrency.max(1) as usize).min(ready.len().max(1));
    let queue = std::sync::Mutex::new(ready.into_iter());
    // At most two messages per lane handed to the server and not yet written — one awaiting its
    // reply while the next is sent (pipelining), and one whose reply came and waits for the
    // write — the most a kill -9 of this process can send twice (the sequences fault test holds
    // it to that). One permit per lane would deadlock: a lane's pending reply is read only when it
    // sends its next message. Outcomes are written in batches of whatever arrived, so a lane
    // waits at most for one write.
    let unrecorded = Arc::new(tokio::sync::Semaphore::new(2 * lanes));
    futures::future::join_all(
        (0..lanes).map(|_| super::lane(svc, &queue, false, Some(&unrecorded), &tx, |r| async { Ok(r) })),
    )
    .await;
    drop(tx);
    writer.await.map_err(|_| ServiceError::internal("the outcome writer stopped"))??;
    Ok(count)
}
