//! Explicit enrolments from integrations (`POST /api/v1/sequences/{id}/enrolments`).
//!
//! An integration enrols one *existing* contact (by id or by address; never created here) in one
//! of its organisation's live sequences: it reports that something happened to the patient that
//! this sequence follows up, so the scope is `events:write` (no scope of its own). The enrolment
//! goes through the same path as an operator's (`sequences::enrol_in`: live status, published
//! version, the entry rule under the engine's per-contact lock, the audit record, which names the
//! key), and is written in one transaction with the idempotency claim and the stored answer.
//! Nothing about the contact is ever echoed: answers carry ids and codes only.

use super::events::{self, ContactRef, Rejection};
use super::idempotency::{self, Answer, Idempotency};
use crate::actor::Actor;
use crate::error::{ServiceError, ServiceResult};
use crate::sequences::{self, EnrolRefusal};
use crate::services::Services;
use domain::Permission;
use domain::api::problem;
use domain::api::wire::{self, ENROLMENT_MEMBERS};
use serde_json::Value as Json;
use uuid::Uuid;

/// A validated enrolment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolIn {
    /// The sequence (from the path).
    pub sequence: Uuid,
    pub contact: ContactRef,
}

/// Parse an enrolment body (UTF-8 JSON, nesting bounded, `{"contact": {...}}` and nothing else)
/// for the sequence of the path.
pub fn parse(sequence: Uuid, body: &[u8]) -> Result<EnrolIn, Rejection> {
    let (v, _) = events::parse_body(body, false)?;
    let Json::Object(obj) = v else {
        return Err(Rejection::invalid(String::new(), "An enrolment is a JSON object: {\"contact\": …}."));
    };
    if obj.keys().any(|k| !ENROLMENT_MEMBERS.contains(&k.as_str())) {
        return Err(Rejection::new(
            problem::UNKNOWN_FIELD,
            String::new(),
            "The enrolment has a member that is not part of the API (allowed: contact).",
        ));
    }
    let contact = events::contact_ref(obj.get("contact"), "/contact".into())?;
    Ok(EnrolIn { sequence, contact })
}

/// Enrol the contact and answer `201 {enrolment_id, sequence_id, status: "active"}`. An unknown
/// or another organisation's sequence is `NotFound`; a refusal (`Ok(Err(_))`: unknown contact,
/// sequence not live, entry rule) writes nothing and stores no answer.
pub async fn enrol(
    svc: &Services,
    actor: &Actor,
    e: EnrolIn,
    idem: Option<&Idempotency>,
) -> ServiceResult<Result<Answer, Rejection>> {
    actor.require(Permission::EventsWrite)?;
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let txn = match idempotency::begin(svc, actor, idem, now).await? {
        Ok(t) => t,
        Err(replay) => return Ok(Ok(replay)),
    };
    let contact = match events::existing_contact(
        svc,
        &txn,
        org,
        &e.contact,
        "No contact of this organisation matches (enrolments never create contacts).",
    )
    .await?
    {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let enrolment = match sequences::enrol_in(svc, &txn, actor, e.sequence, contact).await? {
        Ok(id) => id,
        Err(EnrolRefusal::NotLive | EnrolRefusal::NotPublished) => {
            return Ok(Err(Rejection::new(
                problem::SEQUENCE_NOT_LIVE,
                String::new(),
                "The sequence admits nobody now: it is a draft, paused, archived or never published.",
            )));
        }
        Err(EnrolRefusal::EntryRule) => {
            return Ok(Err(Rejection::new(
                problem::ALREADY_ENROLLED,
                "/contact".into(),
                "The sequence's entry rule does not admit this contact again (once ever, or one enrolment at a time).",
            )));
        }
    };
    let body = serde_json::to_value(wire::EnrolmentAccepted {
        enrolment_id: enrolment,
        sequence_id: e.sequence,
        status: wire::EnrolmentStatus::Active,
    })
    .map_err(|_| ServiceError::internal("encode an API answer"))?;
    let answer = Answer { status: 201, body, replayed: false };
    if let (Some(idem), Some(key)) = (idem, actor.api_key_id()) {
        idempotency::store(&txn, key, idem, &answer).await?;
    }
    txn.commit().await?;
    Ok(Ok(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Phi;

    #[test]
    fn enrolment_bodies() {
        let s = Uuid::now_v7();
        let c = Uuid::now_v7();
        let e = parse(s, format!(r#"{{"contact": {{"id": "{c}"}}}}"#).as_bytes()).unwrap();
        assert_eq!(e, EnrolIn { sequence: s, contact: ContactRef::Id(c) });
        let e = parse(s, br#"{"contact": {"email": " Ada@Example.org "}}"#).unwrap();
        assert_eq!(e.contact, ContactRef::Email(Phi::new("ada@example.org".into())));
    }

    #[test]
    fn hostile_enrolment_bodies_are_refused_without_echoing_values() {
        let marker = "PHI-MARKER-Ek52";
        let s = Uuid::now_v7();
        let c = Uuid::now_v7();
        let big = format!("{}@example.org", "x".repeat(10 * 1024));
        let deep = format!(r#"{{"contact": {}{}}}"#, "[".repeat(40), "]".repeat(40));
        let cases: Vec<(String, &str, &str)> = vec![
            (format!(r#"{{"contact": {{"id": "{c}"}}, "{marker}": 1}}"#), problem::UNKNOWN_FIELD, ""),
            (
                format!(r#"{{"contact": {{"id": "{c}", "email": "{marker}@example.org"}}}}"#),
                problem::INVALID_FIELD,
                "/contact",
            ),
            (r#"{"contact": {}}"#.to_string(), problem::INVALID_FIELD, "/contact"),
            (format!(r#"{{"contact": {{"name": "{marker}"}}}}"#), problem::UNKNOWN_FIELD, "/contact"),
            (format!(r#"{{"contact": {{"email": "{marker}"}}}}"#), problem::INVALID_FIELD, "/contact/email"),
            (format!(r#"{{"contact": {{"email": "{big}"}}}}"#), problem::INVALID_FIELD, "/contact/email"),
            (format!(r#"{{"contact": {{"id": "{marker}"}}}}"#), problem::INVALID_FIELD, "/contact/id"),
            (format!(r#"{{"contact": "{marker}"}}"#), problem::INVALID_FIELD, "/contact"),
            ("{}".to_string(), problem::INVALID_FIELD, "/contact"),
            (format!(r#"["{marker}"]"#), problem::INVALID_FIELD, ""),
            (deep, problem::TOO_DEEP, ""),
            (format!(r#"{{"contact": {{"email": "{marker}""#), problem::INVALID_JSON, ""),
        ];
        for (body, code, pointer) in cases {
            let r = parse(s, body.as_bytes()).unwrap_err();
            assert_eq!((r.code, r.pointer.as_str()), (code, pointer), "{body:.80}");
            assert!(!r.detail.contains(marker) && !r.pointer.contains(marker));
        }
        let mut bad = br#"{"contact": {"email": ""#.to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(b"@example.org\"}}");
        assert_eq!(parse(s, &bad).unwrap_err().code, problem::INVALID_JSON);
    }
}
