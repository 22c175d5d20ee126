//! Patient events from integrations (`POST /api/v1/events`, `/api/v1/events/batch`).
//!
//! An event names its contact by id or by email (found through the blind index; an unknown address
//! creates the contact when the key also holds `contacts:write`), a type code, when it happened and
//! flat properties. Properties are PHI: sealed as one JSON object under the organisation's data key
//! (bound to organisation, "patient_event", "properties", event id), never logged, never echoed in
//! an error. Each accepted event is written with an `event_outbox` row in the same transaction, so
//! the sequence engine sees it exactly once; a batch is one transaction.

use super::idempotency::{self, Answer, Idempotency};
use crate::actor::Actor;
use crate::contacts::{self, record::ContactRecord};
use crate::crypto::seal::Aad;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use domain::api::wire::{self, BATCH_MEMBERS, CONTACT_REF_MEMBERS, EVENT_MEMBERS};
use domain::api::{self, problem};
use domain::ids::OrganisationId;
use domain::{Permission, Phi};
use sea_orm::FromQueryResult;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use uuid::Uuid;

/// How an event names its contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRef {
    Id(Uuid),
    /// A normalised address (PHI).
    Email(Phi<String>),
}

/// One validated event, ready to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventIn {
    pub contact: ContactRef,
    pub event_type: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub properties: Phi<Map<String, Json>>,
}

/// Why an item was refused: a stable code, the JSON pointer of the bad member, and fixed words —
/// never a submitted value (it may be PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub code: &'static str,
    pub pointer: String,
    pub detail: &'static str,
}

impl Rejection {
    pub(crate) fn new(code: &'static str, pointer: String, detail: &'static str) -> Rejection {
        Rejection { code, pointer, detail }
    }

    pub(crate) fn invalid(pointer: String, detail: &'static str) -> Rejection {
        Rejection::new(problem::INVALID_FIELD, pointer, detail)
    }
}

/// Events may be dated up to a day ahead of the server's clock (clock skew, pre-announced slots)
/// and no earlier than 1900.
const MAX_FUTURE: Duration = Duration::days(1);

/// Validate one event object. `at` is its JSON pointer (`""` for a single event, `/events/3` in a
/// batch). `lossy` marks a body that was not UTF-8 (invalid bytes became U+FFFD): an item
/// containing one is refused rather than recorded altered.
pub fn parse_event(v: &Json, at: &str, now: DateTime<Utc>, lossy: bool) -> Result<EventIn, Rejection> {
    let Json::Object(obj) = v else {
        return Err(Rejection::invalid(at.to_string(), "An event is a JSON object."));
    };
    if lossy && v.to_string().contains('\u{FFFD}') {
        return Err(Rejection::new(
            problem::INVALID_JSON,
            at.to_string(),
            "The event contains bytes that are not UTF-8.",
        ));
    }
    if obj.keys().any(|k| !EVENT_MEMBERS.contains(&k.as_str())) {
        return Err(Rejection::new(
            problem::UNKNOWN_FIELD,
            at.to_string(),
            "The event has a member that is not part of the API (allowed: contact, type, occurred_at, properties).",
        ));
    }
    let contact = contact_ref(obj.get("contact"), format!("{at}/contact"))?;
    let event_type = match obj.get("type") {
        Some(Json::String(t)) if api::valid_event_type(t) => t.clone(),
        _ => {
            return Err(Rejection::invalid(
                format!("{at}/type"),
                "The type is a code like appointment.booked: lower-case letters, digits, _ and . (at most 64).",
            ));
        }
    };
    let occurred_at = match obj.get("occurred_at") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => {
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    Rejection::invalid(
                        format!("{at}/occurred_at"),
                        "A time in RFC 3339 form, e.g. 2027-03-01T09:30:00Z.",
                    )
                })?
                .with_timezone(&Utc);
            let earliest = DateTime::parse_from_rfc3339("1900-01-01T00:00:00Z").map(|d| d.with_timezone(&Utc)).ok();
            if t > now + MAX_FUTURE || earliest.is_some_and(|e| t < e) {
                return Err(Rejection::invalid(
                    format!("{at}/occurred_at"),
                    "The time is more than a day in the future or before 1900.",
                ));
            }
            Some(t)
        }
        Some(_) => {
            return Err(Rejection::invalid(
                format!("{at}/occurred_at"),
                "A time in RFC 3339 form, e.g. 2027-03-01T09:30:00Z.",
            ));
        }
    };
    let properties = flat(obj.get("properties"), format!("{at}/properties"), "Properties are a JSON object.")?;
    Ok(EventIn { contact, event_type, occurred_at, properties: Phi::new(properties) })
}

/// How a request names its contact: `{"id": …}` or `{"email": …}`, exactly one. `p` is the
/// member's JSON pointer.
pub(crate) fn contact_ref(v: Option<&Json>, p: String) -> Result<ContactRef, Rejection> {
    match v {
        Some(Json::Object(c)) => {
            if c.keys().any(|k| !CONTACT_REF_MEMBERS.contains(&k.as_str())) {
                return Err(Rejection::new(problem::UNKNOWN_FIELD, p, "A contact is {\"id\": …} or {\"email\": …}."));
            }
            match (c.get("id"), c.get("email")) {
                (Some(Json::String(id)), None) => Ok(ContactRef::Id(
                    Uuid::parse_str(id)
                        .map_err(|_| Rejection::invalid(format!("{p}/id"), "A contact id is a UUID."))?,
                )),
                (None, Some(Json::String(e))) => {
                    Ok(ContactRef::Email(Phi::new(domain::contacts::normalise_email(e).map_err(|_| {
                        Rejection::invalid(format!("{p}/email"), "This is not a valid email address.")
                    })?)))
                }
                _ => Err(Rejection::invalid(p, "Name the contact by \"id\" or by \"email\" (one of them, a string).")),
            }
        }
        _ => Err(Rejection::invalid(p, "Name the contact: {\"id\": …} or {\"email\": …}.")),
    }
}

/// The existing contact a request names, by id or by address (blind index), in `conn`'s
/// transaction; never created. An unknown one is `unknown_contact` at `/contact/id` or
/// `/contact/email` with `detail` (fixed words, never the value).
pub(crate) async fn existing_contact<C: sea_orm::ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    contact: &ContactRef,
    detail: &'static str,
) -> ServiceResult<Result<Uuid, Rejection>> {
    let (found, pointer) = match contact {
        ContactRef::Id(id) => (
            db::scalar::<Uuid, _>(
                conn,
                "SELECT id FROM contact WHERE organisation_id = $1 AND id = $2",
                [org.0.into(), (*id).into()],
            )
            .await?,
            "/contact/id",
        ),
        ContactRef::Email(e) => {
            let bkey = contacts::bidx_key(svc, conn, org).await?;
            let b = contacts::email_bidx(&bkey, e.expose());
            (
                db::scalar::<Uuid, _>(
                    conn,
                    "SELECT id FROM contact WHERE organisation_id = $1 AND email_bidx = $2",
                    [org.0.into(), b.into()],
                )
                .await?,
                "/contact/email",
            )
        }
    };
    Ok(found.ok_or_else(|| Rejection::new(problem::UNKNOWN_CONTACT, pointer.into(), detail)))
}

/// Flat properties (event properties, a message's merge data): at most 50, names are codes, values
/// strings (≤ 2 KB), numbers, booleans or null. `base` is the object's JSON pointer; a bad name is
/// never echoed, not even in the pointer.
pub(crate) fn flat(v: Option<&Json>, base: String, not_object: &'static str) -> Result<Map<String, Json>, Rejection> {
    match v {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(p)) => {
            if p.len() > api::MAX_PROPERTIES {
                return Err(Rejection::invalid(base, "At most 50 properties."));
            }
            for (k, v) in p {
                if !api::valid_property_key(k) {
                    return Err(Rejection::invalid(
                        base,
                        "Property names are codes: letters, digits and _, starting with a letter (at most 64).",
                    ));
                }
                let pointer = format!("{base}/{k}");
                match v {
                    Json::String(s) if s.len() > api::MAX_PROPERTY_VALUE_BYTES => {
                        return Err(Rejection::invalid(pointer, "A property value is at most 2,048 bytes."));
                    }
                    Json::String(_) | Json::Number(_) | Json::Bool(_) | Json::Null => {}
                    Json::Array(_) | Json::Object(_) => {
                        return Err(Rejection::invalid(
                            pointer,
                            "Properties are flat: a value is a string, number, true, false or null.",
                        ));
                    }
                }
            }
            Ok(p.clone())
        }
        Some(_) => Err(Rejection::invalid(base, not_object)),
    }
}

/// One item's outcome while a batch is recorded (answered as `domain::api::wire::ItemResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemResult {
    Accepted { index: usize, id: Uuid },
    Rejected { index: usize, code: &'static str, pointer: String, detail: &'static str },
}

impl ItemResult {
    fn into_wire(self) -> wire::ItemResult {
        // A batch holds at most 1,000 items.
        let at = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        match self {
            ItemResult::Accepted { index, id } => wire::ItemResult::Accepted { index: at(index), id },
            ItemResult::Rejected { index, code, pointer, detail } => wire::ItemResult::Rejected {
                index: at(index),
                code: code.to_string(),
                pointer,
                detail: detail.to_string(),
            },
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> ServiceResult<Json> {
    serde_json::to_value(v).map_err(|_| ServiceError::internal("encode an API answer"))
}

fn aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "patient_event", column: "properties", row: id }
}

/// Record events (already parsed; a parse failure travels as its rejection) in one transaction,
/// with their outbox rows. Returns each item's outcome, in order. With an idempotency key, a retry
/// replays the stored answer and records nothing.
pub async fn record(
    svc: &Services,
    actor: &Actor,
    items: Vec<Result<EventIn, Rejection>>,
    idem: Option<&Idempotency>,
    single: bool,
) -> ServiceResult<Result<Answer, Rejection>> {
    actor.require(Permission::EventsWrite)?;
    if items.len() > api::MAX_EVENTS_PER_BATCH {
        return Err(ServiceError::invalid("events", "at most 1,000 events per batch"));
    }
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let txn = match idempotency::begin(svc, actor, idem, now).await? {
        Ok(t) => t,
        Err(replay) => return Ok(Ok(replay)),
    };

    // Resolve contacts: ids of this organisation, addresses through the blind index.
    let ids: Vec<Uuid> = items
        .iter()
        .filter_map(|i| match i {
            Ok(EventIn { contact: ContactRef::Id(id), .. }) => Some(*id),
            _ => None,
        })
        .collect();
    let known_ids: std::collections::HashSet<Uuid> = if ids.is_empty() {
        Default::default()
    } else {
        db::scalars::<Uuid, _>(
            &txn,
            "SELECT id FROM contact WHERE organisation_id = $1 AND id = ANY($2)",
            [org.0.into(), ids.into()],
        )
        .await?
        .into_iter()
        .collect()
    };
    let mut by_bidx: HashMap<Vec<u8>, Uuid> = HashMap::new();
    let emails: Vec<&Phi<String>> = items
        .iter()
        .filter_map(|i| match i {
            Ok(EventIn { contact: ContactRef::Email(e), .. }) => Some(e),
            _ => None,
        })
        .collect();
    let bkey = if emails.is_empty() { None } else { Some(contacts::bidx_key(svc, &txn, org).await?) };
    if let Some(bkey) = &bkey {
        let bidxs: Vec<Vec<u8>> = emails.iter().map(|e| contacts::email_bidx(bkey, e.expose())).collect();
        #[derive(FromQueryResult)]
        struct Found {
            id: Uuid,
            email_bidx: Vec<u8>,
        }
        let found: Vec<Found> = db::all_as(
            &txn,
            "SELECT id, email_bidx FROM contact WHERE organisation_id = $1 AND email_bidx = ANY($2)",
            [org.0.into(), bidxs.into()],
        )
        .await?;
        by_bidx.extend(found.into_iter().map(|f| (f.email_bidx, f.id)));
    }
    let may_create = actor.can(Permission::ContactsWrite);
    let key = contacts::data_key(svc, &txn, org).await?;

    let mut results = Vec::with_capacity(items.len());
    let (mut ev_ids, mut ev_contacts, mut ev_types, mut ev_props, mut ev_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut created = 0u32;
    for (index, item) in items.into_iter().enumerate() {
        let at = if single { String::new() } else { format!("/events/{index}") };
        let ev = match item {
            Ok(ev) => ev,
            Err(r) => {
                results.push(ItemResult::Rejected { index, code: r.code, pointer: r.pointer, detail: r.detail });
                continue;
            }
        };
        let contact = match &ev.contact {
            ContactRef::Id(id) if known_ids.contains(id) => *id,
            ContactRef::Id(_) => {
                results.push(ItemResult::Rejected {
                    index,
                    code: problem::UNKNOWN_CONTACT,
                    pointer: format!("{at}/contact/id"),
                    detail: "No contact of this organisation has this id.",
                });
                continue;
            }
            ContactRef::Email(e) => {
                let Some(bkey) = bkey.as_ref() else {
                    return Err(ServiceError::internal("no blind-index key for an address"));
                };
                let b = contacts::email_bidx(bkey, e.expose());
                match by_bidx.get(&b) {
                    Some(id) => *id,
                    None if may_create => {
                        let rec = ContactRecord { email: e.clone(), ..Default::default() };
                        let id = contacts::insert_in(svc, &txn, actor, &rec).await?;
                        created += 1;
                        by_bidx.insert(b, id);
                        id
                    }
                    None => {
                        results.push(ItemResult::Rejected {
                            index,
                            code: problem::UNKNOWN_CONTACT,
                            pointer: format!("{at}/contact/email"),
                            detail: "No contact has this address, and this key may not create contacts (contacts:write).",
                        });
                        continue;
                    }
                }
            }
        };
        let id = Uuid::now_v7();
        let sealed = if ev.properties.expose().is_empty() {
            None
        } else {
            let bytes =
                serde_json::to_vec(ev.properties.expose()).map_err(|_| ServiceError::internal("encode event"))?;
            Some(key.seal(&aad(org, id), &bytes)?.into_bytes())
        };
        ev_ids.push(id);
        ev_contacts.push(contact);
        ev_types.push(ev.event_type);
        ev_props.push(sealed);
        ev_times.push(ev.occurred_at.unwrap_or(now));
        results.push(ItemResult::Accepted { index, id });
    }
    if !ev_ids.is_empty() {
        insert_events(&txn, org, &ev_ids, &ev_contacts, &ev_types, ev_props, &ev_times, now).await?;
    }
    let accepted = ev_ids.len();
    let answer = if single {
        match results.into_iter().next() {
            Some(ItemResult::Accepted { id, .. }) => {
                Answer { status: 202, body: to_json(&wire::EventAccepted { id })?, replayed: false }
            }
            Some(ItemResult::Rejected { code, pointer, detail, .. }) => {
                // Nothing was written and no answer is stored (the transaction is dropped), so a
                // corrected retry may reuse the key.
                return Ok(Err(Rejection { code, pointer, detail }));
            }
            None => return Err(ServiceError::internal("a single event without a result")),
        }
    } else {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let body = wire::EventBatchResult {
            accepted: count(accepted),
            rejected: count(results.len() - accepted),
            contacts_created: created,
            results: results.into_iter().map(ItemResult::into_wire).collect(),
        };
        Answer { status: 200, body: to_json(&body)?, replayed: false }
    };
    if let (Some(idem), Some(key)) = (idem, actor.api_key_id()) {
        idempotency::store(&txn, key, idem, &answer).await?;
    }
    txn.commit().await?;
    Ok(Ok(answer))
}

#[allow(clippy::too_many_arguments)]
async fn insert_events(
    txn: &sea_orm::DatabaseTransaction,
    org: OrganisationId,
    ids: &[Uuid],
    contacts: &[Uuid],
    types: &[String],
    props: Vec<Option<Vec<u8>>>,
    times: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    // sea-query binds array elements as non-null values: the sealed properties travel as base64
    // text, "" for an event without properties, decoded (or NULL) in SQL.
    let props: Vec<String> =
        props.into_iter().map(|p| p.map(|b| data_encoding::BASE64.encode(&b)).unwrap_or_default()).collect();
    db::exec(
        txn,
        "WITH e AS (
             INSERT INTO patient_event (id, organisation_id, contact_id, event_type, properties, occurred_at, received_at)
             SELECT u.id, $1, u.contact, u.type, decode(nullif(u.props, ''), 'base64'), u.at, $7
             FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[]) AS u(id, contact, type, props, at)
             RETURNING id)
         INSERT INTO event_outbox (event_id, organisation_id, created_at) SELECT id, $1, $7 FROM e",
        [
            org.0.into(),
            ids.to_vec().into(),
            contacts.to_vec().into(),
            types.to_vec().into(),
            props.into(),
            times.to_vec().into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Parse a request body as JSON for the API: UTF-8 (or, for a batch, lossy with the affected items
/// refused), nesting within bounds, no duplicate-key tricks beyond serde's last-wins.
pub fn parse_body(body: &[u8], allow_lossy: bool) -> Result<(Json, bool), Rejection> {
    match api::json_depth(body) {
        None => return Err(Rejection::new(problem::INVALID_JSON, String::new(), "The body is not valid JSON.")),
        Some(d) if d > api::MAX_JSON_DEPTH => {
            return Err(Rejection::new(
                problem::TOO_DEEP,
                String::new(),
                "The body nests objects and arrays too deeply.",
            ));
        }
        Some(_) => {}
    }
    let (text, lossy) = match std::str::from_utf8(body) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), false),
        Err(_) if allow_lossy => (String::from_utf8_lossy(body), true),
        Err(_) => return Err(Rejection::new(problem::INVALID_JSON, String::new(), "The body is not UTF-8.")),
    };
    let v: Json = serde_json::from_str(&text)
        .map_err(|_| Rejection::new(problem::INVALID_JSON, String::new(), "The body is not valid JSON."))?;
    Ok((v, lossy))
}

/// The items of a batch body `{"events": [...]}` (nothing else), each parsed on its own.
pub fn parse_batch(body: &[u8], now: DateTime<Utc>) -> Result<Vec<Result<EventIn, Rejection>>, Rejection> {
    let (v, lossy) = parse_body(body, true)?;
    let Json::Object(mut obj) = v else {
        return Err(Rejection::invalid(String::new(), "The body is {\"events\": [ … ]}."));
    };
    if obj.len() != BATCH_MEMBERS.len() {
        return Err(Rejection::new(
            problem::UNKNOWN_FIELD,
            String::new(),
            "The body is {\"events\": [ … ]} and nothing else.",
        ));
    }
    let Some(Json::Array(events)) = obj.remove(BATCH_MEMBERS[0]) else {
        return Err(Rejection::invalid("/events".into(), "The body is {\"events\": [ … ]}."));
    };
    if events.is_empty() || events.len() > api::MAX_EVENTS_PER_BATCH {
        return Err(Rejection::invalid("/events".into(), "A batch holds 1 to 1,000 events."));
    }
    Ok(events.iter().enumerate().map(|(i, e)| parse_event(e, &format!("/events/{i}"), now, lossy)).collect())
}

/// A single event body.
pub fn parse_single(body: &[u8], now: DateTime<Utc>) -> Result<EventIn, Rejection> {
    let (v, _) = parse_body(body, false)?;
    parse_event(&v, "", now, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-10T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn ok(v: Json) -> EventIn {
        parse_event(&v, "", now(), false).unwrap()
    }

    fn err(v: Json) -> Rejection {
        parse_event(&v, "/events/0", now(), false).unwrap_err()
    }

    #[test]
    fn a_good_event() {
        let e = ok(json!({
            "contact": {"email": " Ada@Example.ORG "},
            "type": "appointment.booked",
            "occurred_at": "2027-01-10T09:00:00+01:00",
            "properties": {"clinic": "North", "slot": 3, "first_visit": true, "note": null}
        }));
        assert_eq!(e.contact, ContactRef::Email(Phi::new("ada@example.org".into())));
        assert_eq!(e.occurred_at.unwrap().to_rfc3339(), "2027-01-10T08:00:00+00:00");
        assert_eq!(e.properties.expose().len(), 4);
        let id = Uuid::now_v7();
        assert_eq!(ok(json!({"contact": {"id": id.to_string()}, "type": "a"})).contact, ContactRef::Id(id));
    }

    #[test]
    fn hostile_items_are_refused_without_echoing_values() {
        let marker = "PHI-MARKER-Zq81";
        let cases = [
            (json!({"contact": {"email": marker}, "type": "a"}), "/events/0/contact/email"),
            (json!({"contact": {"id": marker}, "type": "a"}), "/events/0/contact/id"),
            (json!({"contact": {"id": "x", "email": marker}, "type": "a"}), "/events/0/contact"),
            (json!({"contact": {"name": marker}, "type": "a"}), "/events/0/contact"),
            (json!({"contact": marker, "type": "a"}), "/events/0/contact"),
            (json!({"contact": {"email": "a@b.co"}, "type": marker}), "/events/0/type"),
            (json!({"contact": {"email": "a@b.co"}, "type": "Appointment.Booked"}), "/events/0/type"),
            (json!({"contact": {"email": "a@b.co"}, "type": "a", "occurred_at": marker}), "/events/0/occurred_at"),
            (
                json!({"contact": {"email": "a@b.co"}, "type": "a", "occurred_at": "2027-01-12T12:00:00Z"}),
                "/events/0/occurred_at",
            ),
            (json!({"contact": {"email": "a@b.co"}, "type": "a", "occurred_at": 12}), "/events/0/occurred_at"),
            (
                json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": {"x": marker.repeat(200)}}),
                "/events/0/properties/x",
            ),
            (
                json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": {"x": {"y": marker}}}),
                "/events/0/properties/x",
            ),
            (
                json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": {"x": [marker]}}),
                "/events/0/properties/x",
            ),
            (json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": {marker: 1}}), "/events/0/properties"),
            (json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": marker}), "/events/0/properties"),
            (json!({"contact": {"email": "a@b.co"}, "type": "a", marker: 1}), "/events/0"),
            (json!([marker]), "/events/0"),
        ];
        for (v, pointer) in cases {
            let r = err(v.clone());
            assert_eq!(r.pointer, pointer, "{v}");
            let shown = serde_json::to_string(&r).unwrap();
            assert!(!shown.contains(marker), "{shown}");
        }
        let many: Map<String, Json> = (0..51).map(|i| (format!("p{i}"), json!(1))).collect();
        assert_eq!(
            err(json!({"contact": {"email": "a@b.co"}, "type": "a", "properties": many})).pointer,
            "/events/0/properties"
        );
    }

    #[test]
    fn batches_refuse_items_not_bodies() {
        let body = format!(
            r#"{{"events": [{{"contact": {{"email": "a@b.co"}}, "type": "a"}}, {{"contact": {{"email": "a@b.co"}}, "type": "Bad"}}, 5, {{"contact": {{"email": "a@b.co"}}, "type": "b", "properties": {{"x": "{}"}}}}]}}"#,
            "y".repeat(10_000)
        );
        let items = parse_batch(body.as_bytes(), now()).unwrap();
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().pointer, "/events/1/type");
        assert_eq!(items[2].as_ref().unwrap_err().pointer, "/events/2");
        assert_eq!(items[3].as_ref().unwrap_err().pointer, "/events/3/properties/x");
    }

    #[test]
    fn non_utf8_items_are_refused_one_by_one() {
        let mut body = br#"{"events": [{"contact": {"email": "a@b.co"}, "type": "a"}, {"contact": {"email": "a@b.co"}, "type": "a", "properties": {"x": ""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}}]}"#);
        let items = parse_batch(&body, now()).unwrap();
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().code, problem::INVALID_JSON);
        assert_eq!(parse_single(&body, now()).unwrap_err().code, problem::INVALID_JSON);
    }

    #[test]
    fn bodies_that_are_not_batches() {
        for (body, code) in [
            (&b"{"[..], problem::INVALID_JSON),
            (b"[]", problem::INVALID_FIELD),
            (br#"{"events": [], "x": 1}"#, problem::UNKNOWN_FIELD),
            (br#"{"events": []}"#, problem::INVALID_FIELD),
            (br#"{"events": {}}"#, problem::INVALID_FIELD),
        ] {
            assert_eq!(parse_batch(body, now()).unwrap_err().code, code, "{}", String::from_utf8_lossy(body));
        }
        let deep = format!(r#"{{"events": [{}1{}]}}"#, "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_batch(deep.as_bytes(), now()).unwrap_err().code, problem::TOO_DEEP);
        let thousand_and_one = format!(r#"{{"events": [{}]}}"#, vec!["1"; 1001].join(","));
        assert_eq!(parse_batch(thousand_and_one.as_bytes(), now()).unwrap_err().pointer, "/events");
    }
}
