//! Transactional messages from integrations (`POST /api/v1/messages`, `GET /api/v1/messages/{id}`).
//!
//! A message is one template to one existing contact under the consent purpose `transactional`:
//! no grant is needed, but a suppressed address or a withdrawal for `transactional` (an
//! unsubscribe from everything withdraws it too) refuses the request with its own problem code,
//! and nothing is queued (`domain::contacts::transactional_refusal`; checked again at send time,
//! where a late withdrawal skips the delivery). It goes From `<local part of mail.from>@<the
//! organisation's first verified sending domain>` with the organisation's name (the one rule
//! template test sends use; the domain is checked again at send time), over TLS only (the SMTP
//! client never sends in plaintext).
//!
//! Accepting writes, in one transaction: the `api_message` row (the template's latest version
//! pinned, the merge data sealed), its tracked links, its `delivery` row (source `api_message`, id
//! = the message's) with the delivery-queue row, and the idempotent answer. The sender loops
//! (`campaigns::send::send_due`) send it through the campaigns' claim/record path, exactly once.
//!
//! The template may use `{{message.<key>}}` (the `data` sent here; a key the data lacks renders
//! empty) but not `{{event.<key>}}` (only sequence emails have an event): such a template is
//! refused at acceptance (`template_not_allowed`, pointer `/template`).

use super::events::{self, ContactRef, Rejection};
use super::idempotency::{self, Answer, Idempotency};
use crate::actor::Actor;
use crate::campaigns::send::message;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::api::problem;
use domain::api::wire::{self, MESSAGE_MEMBERS};
use domain::contacts::{ConsentPurpose, TransactionalRefusal};
use domain::delivery::{DeliverySource, DeliveryState};
use domain::{Permission, Phi};
use sea_orm::FromQueryResult;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

/// A validated message request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageIn {
    pub contact: ContactRef,
    pub template: Uuid,
    pub data: Phi<Map<String, Json>>,
}

/// Parse a message body (UTF-8 JSON, nesting bounded, only the documented members).
pub fn parse(body: &[u8]) -> Result<MessageIn, Rejection> {
    let (v, _) = events::parse_body(body, false)?;
    let Json::Object(obj) = v else {
        return Err(Rejection::invalid(String::new(), "A message is a JSON object."));
    };
    if obj.keys().any(|k| !MESSAGE_MEMBERS.contains(&k.as_str())) {
        return Err(Rejection::new(
            problem::UNKNOWN_FIELD,
            String::new(),
            "The message has a member that is not part of the API (allowed: contact, template, data).",
        ));
    }
    let contact = events::contact_ref(obj.get("contact"), "/contact".into())?;
    let template = match obj.get("template") {
        Some(Json::String(t)) => {
            Uuid::parse_str(t).map_err(|_| Rejection::invalid("/template".into(), "A template id is a UUID."))?
        }
        _ => return Err(Rejection::invalid("/template".into(), "Name the template by its id (a UUID string).")),
    };
    let data = events::flat(obj.get("data"), "/data".into(), "Data is a JSON object of flat values.")?;
    Ok(MessageIn { contact, template, data: Phi::new(data) })
}

fn to_json<T: serde::Serialize>(v: &T) -> ServiceResult<Json> {
    serde_json::to_value(v).map_err(|_| ServiceError::internal("encode an API answer"))
}

/// Accept a message: validate against the organisation's data, queue it with its job, and answer
/// `202 {id, status}`. A refusal (`Ok(Err(_))`) writes nothing and stores no answer.
pub async fn send(
    svc: &Services,
    actor: &Actor,
    m: MessageIn,
    idem: Option<&Idempotency>,
) -> ServiceResult<Result<Answer, Rejection>> {
    actor.require(Permission::MessagesSend)?;
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let txn = match idempotency::begin(svc, actor, idem, now).await? {
        Ok(t) => t,
        Err(replay) => return Ok(Ok(replay)),
    };

    // The contact, by id or by address (blind index); never created here.
    let contact = match events::existing_contact(
        svc,
        &txn,
        org,
        &m.contact,
        "No contact of this organisation matches (messages never create contacts).",
    )
    .await?
    {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };

    // The template's latest saved version, of this organisation only.
    #[derive(FromQueryResult)]
    struct Version {
        id: Uuid,
        html: String,
        message_keys: Vec<String>,
        event_keys: Vec<String>,
    }
    let Some(version) = db::one_as::<Version, _>(
        &txn,
        "SELECT v.id, v.html, v.message_keys, v.event_keys FROM template t
         JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version AND v.organisation_id = t.organisation_id
         WHERE t.id = $1 AND t.organisation_id = $2 AND t.archived_at IS NULL",
        [m.template.into(), org.0.into()],
    )
    .await?
    else {
        return Ok(Err(Rejection::new(
            problem::UNKNOWN_TEMPLATE,
            "/template".into(),
            "No template of this organisation has this id, or it has no saved version.",
        )));
    };
    // An API message has its `data` for `{{message.…}}`, but no event for `{{event.…}}`.
    if crate::templates::keys_allowed(
        &version.message_keys,
        &version.event_keys,
        crate::templates::Allowed::API_MESSAGE,
    )
    .is_err()
    {
        return Ok(Err(Rejection::new(
            problem::TEMPLATE_NOT_ALLOWED,
            "/template".into(),
            "The template uses event.… fields, which only sequence emails have (the properties of the event that started the sequence); an API message has none. Choose a template without event.… fields.",
        )));
    }
    // A value the template formats as a date must be one: refused now rather than failing at send.
    if !version.message_keys.is_empty() {
        let compiled = crate::templates::store::compiled(svc, org, version.id).await?;
        if let Some(k) = compiled
            .checked
            .dated_message_keys()
            .find(|k| m.data.expose().get(*k).is_some_and(|v| !crate::templates::sandbox::date_readable(v)))
        {
            return Ok(Err(Rejection::invalid(
                format!("/data/{k}"),
                "The template formats this value as a date: send an ISO 8601 date (2027-01-05) or date and time (2027-01-05T14:30:00Z).",
            )));
        }
    }

    // Suppression and the transactional consent, read under the contact's row lock so a
    // withdrawal committing now is either seen here or sees this message's delivery row.
    #[derive(FromQueryResult)]
    struct Eligibility {
        suppressed: bool,
        granted: Option<bool>,
    }
    let e = db::one_as::<Eligibility, _>(
        &txn,
        "SELECT EXISTS (SELECT 1 FROM suppression s WHERE s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx) AS suppressed,
                (SELECT cc.granted FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = $2) AS granted
         FROM contact c WHERE c.id = $1 FOR SHARE OF c",
        [contact.into(), ConsentPurpose::Transactional.as_str().into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    match domain::contacts::transactional_refusal(e.suppressed, e.granted) {
        Some(TransactionalRefusal::Suppressed) => {
            return Ok(Err(Rejection::new(
                problem::RECIPIENT_SUPPRESSED,
                "/contact".into(),
                "This contact's address is on the suppression list; nothing was sent.",
            )));
        }
        Some(TransactionalRefusal::Withdrawn) => {
            return Ok(Err(Rejection::new(
                problem::CONSENT_WITHDRAWN,
                "/contact".into(),
                "This contact withdrew consent for transactional messages; nothing was sent.",
            )));
        }
        None => {}
    }

    // From: the organisation's first verified sending domain.
    let names = crate::sending_domains::verified_names(&txn, org).await?;
    let Some(domain) = names.first() else {
        return Ok(Err(Rejection::new(
            problem::NO_SENDING_DOMAIN,
            String::new(),
            "Your organisation has no verified sending domain to send from.",
        )));
    };
    let (_, local) = crate::sending_domains::default_local_part(svc);
    let from_email = format!("{local}@{domain}");
    let from_name = crate::templates::merge::organisation_name(svc, org).await?;

    let id = message::enqueue(
        svc,
        &txn,
        message::NewMessage {
            organisation: org,
            contact,
            api_key: actor.api_key_id(),
            template: m.template,
            version: version.id,
            version_html: &version.html,
            from_email,
            from_name,
            data: Some(&m.data),
            purpose: ConsentPurpose::Transactional,
            source: DeliverySource::ApiMessage,
            sequence: None,
            not_before: now,
        },
    )
    .await?;
    let answer = Answer {
        status: 202,
        body: to_json(&wire::MessageAccepted { id, status: wire::MessageStatus::Queued })?,
        replayed: false,
    };
    if let (Some(idem), Some(key)) = (idem, actor.api_key_id()) {
        idempotency::store(&txn, key, idem, &answer).await?;
    }
    txn.commit().await?;
    crate::metrics::message_accepted();
    Ok(Ok(answer))
}

/// A message's status and engagement (ids, codes, counts, times). Another organisation's id, or
/// a delivery that is not an API message, is `NotFound`.
pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<wire::MessageView> {
    actor.require(Permission::MessagesSend)?;
    #[derive(FromQueryResult)]
    struct Row {
        template_id: Uuid,
        contact_id: Option<Uuid>,
        state: String,
        in_flight: bool,
        detail: Option<String>,
        smtp_status: Option<String>,
        attempts: i32,
        created_at: chrono::DateTime<chrono::Utc>,
        accepted_at: Option<chrono::DateTime<chrono::Utc>>,
        opened_human: i64,
        opened_machine: i64,
        opened_first_human: Option<chrono::DateTime<chrono::Utc>>,
        opened_first: Option<chrono::DateTime<chrono::Utc>>,
        clicked_human: i64,
        clicked_machine: i64,
        clicked_first_human: Option<chrono::DateTime<chrono::Utc>>,
        clicked_first: Option<chrono::DateTime<chrono::Utc>>,
    }
    let r: Row = db::one_as(
        svc.db(),
        "SELECT m.template_id, d.contact_id, d.state, d.detail, d.smtp_status, d.attempts, m.created_at, d.accepted_at,
                EXISTS (SELECT 1 FROM delivery_queue q WHERE q.delivery_id = d.id AND q.claimed_by IS NOT NULL) AS in_flight,
                count(*) FILTER (WHERE e.activity = 'opened' AND NOT e.machine) AS opened_human,
                count(*) FILTER (WHERE e.activity = 'opened' AND e.machine) AS opened_machine,
                min(e.occurred_at) FILTER (WHERE e.activity = 'opened' AND NOT e.machine) AS opened_first_human,
                min(e.occurred_at) FILTER (WHERE e.activity = 'opened') AS opened_first,
                count(*) FILTER (WHERE e.activity = 'clicked' AND NOT e.machine) AS clicked_human,
                count(*) FILTER (WHERE e.activity = 'clicked' AND e.machine) AS clicked_machine,
                min(e.occurred_at) FILTER (WHERE e.activity = 'clicked' AND NOT e.machine) AS clicked_first_human,
                min(e.occurred_at) FILTER (WHERE e.activity = 'clicked') AS clicked_first
         FROM api_message m
         JOIN delivery d ON d.id = m.id AND d.source = 'api_message'
         LEFT JOIN engagement_event e ON e.delivery_id = d.id AND e.organisation_id = m.organisation_id
         WHERE m.id = $1 AND m.organisation_id = $2
         GROUP BY m.id, d.id",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let state = DeliveryState::parse(&r.state).ok_or_else(|| ServiceError::internal("unknown delivery state"))?;
    // A claimed queue row is in flight: the row itself is never written as 'sending' (m20261219).
    let state = if r.in_flight && !state.is_final() { DeliveryState::Sending } else { state };
    let n = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    Ok(wire::MessageView {
        id,
        template: r.template_id,
        contact: r.contact_id,
        status: state.into(),
        reason: r.detail,
        smtp_status: r.smtp_status,
        attempts: n(i64::from(r.attempts)),
        created_at: r.created_at,
        sent_at: if state == DeliveryState::Sent { r.accepted_at } else { None },
        opened: wire::Engagement {
            human: n(r.opened_human),
            machine: n(r.opened_machine),
            first_human_at: r.opened_first_human,
            first_at: r.opened_first,
        },
        clicked: wire::Engagement {
            human: n(r.clicked_human),
            machine: n(r.clicked_machine),
            first_human_at: r.clicked_first_human,
            first_at: r.clicked_first,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies() {
        let t = Uuid::now_v7();
        let m = parse(
            format!(r#"{{"contact": {{"email": " Ada@Example.org "}}, "template": "{t}", "data": {{"slot": "9:30", "n": 2}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.contact, ContactRef::Email(Phi::new("ada@example.org".into())));
        assert_eq!(m.template, t);
        assert_eq!(m.data.expose().len(), 2);
        let m = parse(format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}"}}"#).as_bytes()).unwrap();
        assert!(m.data.expose().is_empty());
    }

    #[test]
    fn hostile_message_bodies_are_refused_without_echoing_values() {
        let marker = "PHI-MARKER-Mq77";
        let t = Uuid::now_v7();
        let big = "x".repeat(10 * 1024);
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let cases: Vec<(String, &str, &str)> = vec![
            (
                format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "{marker}": 1}}"#),
                problem::UNKNOWN_FIELD,
                "",
            ),
            (
                format!(r#"{{"contact": {{"email": "{marker}"}}, "template": "{t}"}}"#),
                problem::INVALID_FIELD,
                "/contact/email",
            ),
            (format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{marker}"}}"#), problem::INVALID_FIELD, "/template"),
            (format!(r#"{{"contact": {{"id": "{t}"}}, "template": 7}}"#), problem::INVALID_FIELD, "/template"),
            (format!(r#"{{"contact": "{marker}", "template": "{t}"}}"#), problem::INVALID_FIELD, "/contact"),
            (
                format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "data": {{"note": "{big}"}}}}"#),
                problem::INVALID_FIELD,
                "/data/note",
            ),
            (
                format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "data": {{"{marker} x": 1}}}}"#),
                problem::INVALID_FIELD,
                "/data",
            ),
            (
                format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "data": {{"x": ["{marker}"]}}}}"#),
                problem::INVALID_FIELD,
                "/data/x",
            ),
            (
                format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "data": "{marker}"}}"#),
                problem::INVALID_FIELD,
                "/data",
            ),
            (deep, problem::TOO_DEEP, ""),
            (format!(r#"["{marker}"]"#), problem::INVALID_FIELD, ""),
        ];
        for (body, code, pointer) in cases {
            let r = parse(body.as_bytes()).unwrap_err();
            assert_eq!((r.code, r.pointer.as_str()), (code, pointer), "{body:.80}");
            assert!(!r.detail.contains(marker) && !r.pointer.contains(marker));
        }
        let mut bad = format!(r#"{{"contact": {{"id": "{t}"}}, "template": "{t}", "data": {{"x": ""#).into_bytes();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(b"\"}}");
        assert_eq!(parse(&bad).unwrap_err().code, problem::INVALID_JSON);
    }
}
