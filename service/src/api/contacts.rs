//! Contacts from integrations: `PUT /api/v1/contacts` upserts by email (the blind index), merging
//! the fields sent into the stored ones (a field sent as `null` is cleared), adds list memberships
//! and records consent decisions in the ledger (source `api`); `GET /api/v1/contacts/{id}` reads one
//! (an audited PHI read, as on the contact's page).
//!
//! A withdrawal of consent in force is never lifted by a grant from an integration: the ledger
//! keeps the grant and answers `applied: false`, as for staff.

use super::events::Rejection;
use super::idempotency::{self, Answer, Idempotency};
use crate::actor::Actor;
use crate::contacts::{self, consent, fields, lists, record};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::api::problem;
use domain::api::wire::{
    self, CONSENT_MEMBERS, MAX_UPSERT_CONSENT, MAX_UPSERT_FIELDS, MAX_UPSERT_LISTS, UPSERT_MEMBERS,
};
use domain::contacts::{ConsentPurpose, ConsentSource};
use domain::{Permission, Phi};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Standard fields a contact has besides the organisation's custom fields.
const STANDARD: [&str; 6] = ["first_name", "last_name", "phone", "date_of_birth", "time_zone", "locale"];

/// A parsed upsert body.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    pub email: Phi<String>,
    /// Field key → new value (`None`: clear it).
    pub fields: BTreeMap<String, Option<Phi<String>>>,
    pub lists: Vec<Uuid>,
    pub consent: Vec<ConsentGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGrant {
    pub purpose: ConsentPurpose,
    pub granted: bool,
    /// SHA-256 of the wording the patient agreed to.
    pub text_hash: Option<Vec<u8>>,
}

fn invalid(pointer: &str, detail: &'static str) -> Rejection {
    Rejection { code: problem::INVALID_FIELD, pointer: pointer.to_string(), detail }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Parse an upsert body. Field keys are checked against the catalogue by the service.
pub fn parse_upsert(body: &[u8]) -> Result<Upsert, Rejection> {
    let (v, _) = super::events::parse_body(body, false)?;
    let Json::Object(obj) = v else { return Err(invalid("", "The body is a JSON object.")) };
    if obj.keys().any(|k| !UPSERT_MEMBERS.contains(&k.as_str())) {
        return Err(Rejection {
            code: problem::UNKNOWN_FIELD,
            pointer: String::new(),
            detail: "The body has a member that is not part of the API (allowed: email, fields, lists, consent).",
        });
    }
    let email = match obj.get("email") {
        Some(Json::String(e)) => Phi::new(
            domain::contacts::normalise_email(e)
                .map_err(|_| invalid("/email", "This is not a valid email address."))?,
        ),
        _ => return Err(invalid("/email", "The contact's email address is required (a string).")),
    };
    let mut out = BTreeMap::new();
    match obj.get("fields") {
        None | Some(Json::Null) => {}
        Some(Json::Object(f)) => {
            if f.len() > MAX_UPSERT_FIELDS {
                return Err(invalid("/fields", "Too many fields."));
            }
            for (k, v) in f {
                if !domain::api::valid_property_key(k) {
                    return Err(invalid("/fields", "Field keys are codes: letters, digits and _."));
                }
                if k == "email" {
                    return Err(invalid("/fields/email", "The address is the top-level \"email\"."));
                }
                let value = match v {
                    Json::Null => None,
                    Json::String(s) => Some(Phi::new(s.clone())),
                    Json::Number(n) => Some(Phi::new(n.to_string())),
                    Json::Bool(b) => Some(Phi::new(b.to_string())),
                    _ => {
                        return Err(Rejection {
                            code: problem::INVALID_FIELD,
                            pointer: format!("/fields/{k}"),
                            detail: "A field's value is a string, number, true, false or null.",
                        });
                    }
                };
                out.insert(k.clone(), value);
            }
        }
        Some(_) => return Err(invalid("/fields", "Fields are a JSON object.")),
    }
    let mut list_ids = Vec::new();
    match obj.get("lists") {
        None | Some(Json::Null) => {}
        Some(Json::Array(ls)) if ls.len() <= MAX_UPSERT_LISTS => {
            for (i, l) in ls.iter().enumerate() {
                let id = l.as_str().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| Rejection {
                    code: problem::INVALID_FIELD,
                    pointer: format!("/lists/{i}"),
                    detail: "A list is named by its id (a UUID).",
                })?;
                list_ids.push(id);
            }
        }
        Some(_) => return Err(invalid("/lists", "Lists are an array of at most 100 list ids.")),
    }
    let mut grants = Vec::new();
    match obj.get("consent") {
        None | Some(Json::Null) => {}
        Some(Json::Array(cs)) if cs.len() <= MAX_UPSERT_CONSENT => {
            for (i, c) in cs.iter().enumerate() {
                let at = format!("/consent/{i}");
                let Json::Object(c) = c else {
                    return Err(Rejection {
                        code: problem::INVALID_FIELD,
                        pointer: at,
                        detail: "A consent decision is an object.",
                    });
                };
                if c.keys().any(|k| !CONSENT_MEMBERS.contains(&k.as_str())) {
                    return Err(Rejection {
                        code: problem::UNKNOWN_FIELD,
                        pointer: at,
                        detail: "A consent decision has purpose, granted and text_sha256.",
                    });
                }
                let purpose =
                    c.get("purpose").and_then(Json::as_str).and_then(ConsentPurpose::parse).ok_or_else(|| {
                        Rejection {
                            code: problem::INVALID_FIELD,
                            pointer: format!("{at}/purpose"),
                            detail: "The purpose is marketing or care_communications.",
                        }
                    })?;
                let granted = c.get("granted").and_then(Json::as_bool).ok_or_else(|| Rejection {
                    code: problem::INVALID_FIELD,
                    pointer: format!("{at}/granted"),
                    detail: "granted is true (consent given) or false (withdrawn).",
                })?;
                let text_hash = match c.get("text_sha256") {
                    None | Some(Json::Null) => None,
                    Some(Json::String(h)) if h.len() == 64 => Some(hex(h).ok_or_else(|| Rejection {
                        code: problem::INVALID_FIELD,
                        pointer: format!("{at}/text_sha256"),
                        detail: "The SHA-256 of the consent wording, as 64 hex digits.",
                    })?),
                    Some(_) => {
                        return Err(Rejection {
                            code: problem::INVALID_FIELD,
                            pointer: format!("{at}/text_sha256"),
                            detail: "The SHA-256 of the consent wording, as 64 hex digits.",
                        });
                    }
                };
                grants.push(ConsentGrant { purpose, granted, text_hash });
            }
        }
        Some(_) => return Err(invalid("/consent", "Consent is an array of at most 10 decisions.")),
    }
    Ok(Upsert { email, fields: out, lists: list_ids, consent: grants })
}

/// Upsert a contact by email (scope `contacts:write`). Answers 201 with the id when it was created,
/// 200 when it existed.
pub async fn upsert(svc: &Services, actor: &Actor, up: Upsert, idem: Option<&Idempotency>) -> ServiceResult<Answer> {
    actor.require(Permission::ContactsWrite)?;
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    for k in up.fields.keys() {
        if !STANDARD.contains(&k.as_str()) && !catalogue.iter().any(|f| f.key == *k) {
            return Err(ServiceError::invalid(
                &format!("/fields/{k}"),
                "is not a field of this organisation (see Settings → Fields)",
            ));
        }
    }
    let txn = match idempotency::begin(svc, actor, idem, now).await? {
        Ok(t) => t,
        Err(replay) => return Ok(replay),
    };
    let bkey = contacts::bidx_key(svc, &txn, org).await?;
    let bidx = contacts::email_bidx(&bkey, up.email.expose());
    let existing = db::scalar::<Uuid, _>(
        &txn,
        "SELECT id FROM contact WHERE organisation_id = $1 AND email_bidx = $2 FOR UPDATE",
        [org.0.into(), bidx.into()],
    )
    .await?;
    let mut form: BTreeMap<String, Phi<String>> = match existing {
        Some(id) => record::to_fields(&contacts::load(svc, &txn, org, id, &catalogue).await?.0),
        None => BTreeMap::new(),
    };
    form.insert("email".into(), up.email.clone());
    for (k, v) in up.fields {
        match v {
            Some(v) => form.insert(k, v),
            None => form.remove(&k),
        };
    }
    let rec = record::validate(&form, &catalogue).map_err(|errors| match errors.first() {
        Some(e) => ServiceError::invalid(&format!("/fields/{}", e.field), e.message.clone()),
        None => ServiceError::invalid("/fields", "is not valid"),
    })?;
    let (id, created) = match existing {
        Some(id) => {
            contacts::update_in(svc, &txn, actor, id, &rec).await?;
            (id, false)
        }
        None => (contacts::insert_in(svc, &txn, actor, &rec).await?, true),
    };
    for (i, list) in up.lists.iter().enumerate() {
        match lists::add_members(svc, &txn, org, *list, &[id], "api").await {
            Err(ServiceError::NotFound) => {
                return Err(ServiceError::invalid(&format!("/lists/{i}"), "is not a list of this organisation"));
            }
            r => r?,
        };
    }
    let mut consent_out = Vec::new();
    for c in &up.consent {
        let applied = consent::record_event(
            &txn,
            org,
            id,
            c.purpose,
            c.granted,
            ConsentSource::Api,
            c.text_hash.clone(),
            None,
            None,
            now,
        )
        .await?;
        consent_out.push(wire::ConsentApplied {
            purpose: c.purpose,
            granted: c.granted,
            applied: applied.kept_withdrawn == 0,
        });
    }
    let body = wire::ContactUpserted { id, created, consent: consent_out };
    let answer = Answer {
        status: if created { 201 } else { 200 },
        body: serde_json::to_value(&body).map_err(|_| ServiceError::internal("encode an API answer"))?,
        replayed: false,
    };
    if let (Some(idem), Some(key)) = (idem, actor.api_key_id()) {
        idempotency::store(&txn, key, idem, &answer).await?;
    }
    txn.commit().await?;
    Ok(answer)
}

/// Read one contact (scope `contacts:read`; audited as a PHI read). Another organisation's id is
/// not found.
pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<wire::ContactView> {
    let d = contacts::detail(svc, actor, id).await?;
    let mut fields = BTreeMap::new();
    let mut email = None;
    for (k, v) in d.fields.fields {
        if k == "email" {
            email = Some(v);
        } else if !v.expose().is_empty() {
            fields.insert(k, v);
        }
    }
    Ok(wire::ContactView {
        id: d.id,
        email,
        fields,
        lists: d
            .lists
            .into_iter()
            .map(|l| wire::ListMembershipView { id: l.list_id, name: l.list_name, status: l.status })
            .collect(),
        mailable: d.mailable.iter().map(|(p, ok, _)| wire::MailableView { purpose: *p, allowed: *ok }).collect(),
        suppressed: d.suppressed.is_some(),
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_bodies() {
        let u = parse_upsert(
            br#"{"email": "Ada@Example.org", "fields": {"first_name": "Ada", "phone": null, "score": 3},
                 "lists": ["0190a0a0-0000-7000-8000-000000000001"],
                 "consent": [{"purpose": "marketing", "granted": true, "text_sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}]}"#,
        )
        .unwrap();
        assert_eq!(u.email.expose(), "ada@example.org");
        assert_eq!(u.fields.get("phone"), Some(&None));
        assert_eq!(u.fields.get("score").unwrap().as_ref().unwrap().expose(), "3");
        assert_eq!(u.consent[0].text_hash.as_ref().unwrap().len(), 32);
        let marker = "PHI-MARKER-Zq81";
        for (body, pointer) in [
            (format!(r#"{{"email": "{marker}"}}"#), "/email"),
            (format!(r#"{{"email": "a@b.co", "x": "{marker}"}}"#), ""),
            (format!(r#"{{"email": "a@b.co", "fields": {{"first_name": ["{marker}"]}}}}"#), "/fields/first_name"),
            (format!(r#"{{"email": "a@b.co", "fields": {{"{marker}": 1}}}}"#), "/fields"),
            (format!(r#"{{"email": "a@b.co", "lists": ["{marker}"]}}"#), "/lists/0"),
            (
                format!(r#"{{"email": "a@b.co", "consent": [{{"purpose": "{marker}", "granted": true}}]}}"#),
                "/consent/0/purpose",
            ),
            (r#"{"email": "a@b.co", "consent": [{"purpose": "marketing"}]}"#.to_string(), "/consent/0/granted"),
            (
                r#"{"email": "a@b.co", "consent": [{"purpose": "marketing", "granted": true, "text_sha256": "zz"}]}"#
                    .to_string(),
                "/consent/0/text_sha256",
            ),
        ] {
            let r = parse_upsert(body.as_bytes()).unwrap_err();
            assert_eq!(r.pointer, pointer, "{body}");
            assert!(!serde_json::to_string(&r).unwrap().contains(marker));
        }
    }
}
