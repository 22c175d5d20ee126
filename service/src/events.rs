//! Patient events (appointment booked, lab result ready) attached to contacts. The type is a plain
//! code so segments and sequences can filter on it; the properties can be PHI and are sealed as one
//! JSON object bound to (organisation, "patient_event", "properties", event id).

use crate::actor::Actor;
use crate::contacts::data_key;
use crate::contacts::record::KeySet;
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::contacts::FieldValue;
use domain::ids::OrganisationId;
use domain::{Permission, Phi};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const MAX_PROPERTIES: usize = 50;

pub(crate) fn aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "patient_event", column: "properties", row: id }
}

/// JSON scalars to typed values (strings stay text; dates are recognised when tested).
pub fn properties_from_json(j: &Json) -> BTreeMap<String, FieldValue> {
    let mut out = BTreeMap::new();
    if let Some(obj) = j.as_object() {
        for (k, v) in obj {
            let value = match v {
                Json::String(s) => Some(FieldValue::Text(s.clone())),
                Json::Number(n) => n.as_f64().map(FieldValue::Number),
                Json::Bool(b) => Some(FieldValue::Boolean(*b)),
                _ => None,
            };
            if let Some(value) = value {
                out.insert(k.clone(), value);
            }
        }
    }
    out
}

/// Open an event's sealed properties (fails closed on tampering or misplacement).
pub fn open_properties(
    keys: &KeySet,
    org: OrganisationId,
    id: Uuid,
    bytes: &[u8],
) -> ServiceResult<BTreeMap<String, FieldValue>> {
    let sealed = Sealed::from_bytes(bytes.to_vec())?;
    let key = keys.get(&sealed.key_id()).ok_or_else(|| ServiceError::internal("event refers to an unknown key"))?;
    if key.organisation != Some(org) {
        return Err(ServiceError::internal("event sealed under another organisation's key"));
    }
    let plain = key.open(&aad(org, id), &sealed)?;
    let json: Json =
        serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("event properties are malformed"))?;
    Ok(properties_from_json(&json))
}

/// Record a patient event for a contact of the actor's organisation.
pub async fn record(
    svc: &Services,
    actor: &Actor,
    contact: Uuid,
    event_type: &str,
    properties: &Phi<BTreeMap<String, FieldValue>>,
    occurred_at: DateTime<Utc>,
) -> ServiceResult<Uuid> {
    actor.require(Permission::ContactsWrite)?;
    let org = actor.organisation_id;
    let ok_type = !event_type.is_empty()
        && event_type.len() <= 64
        && event_type.starts_with(|c: char| c.is_ascii_lowercase())
        && event_type.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if !ok_type {
        return Err(ServiceError::invalid("event_type", "use lower-case letters, digits, _ and . (at most 64)"));
    }
    if properties.expose().len() > MAX_PROPERTIES {
        return Err(ServiceError::invalid("properties", format!("at most {MAX_PROPERTIES} properties")));
    }
    let id = Uuid::now_v7();
    let sealed = if properties.expose().is_empty() {
        None
    } else {
        let json = serde_json::to_vec(&crate::contacts::record::attrs_json(properties.expose()))
            .map_err(|_| ServiceError::internal("encode event"))?;
        let key = data_key(svc, svc.db(), org).await?;
        Some(key.seal(&aad(org, id), &json)?.into_bytes())
    };
    let n = db::exec(
        svc.db(),
        "WITH e AS (
             INSERT INTO patient_event (id, organisation_id, contact_id, event_type, properties, occurred_at, received_at)
             SELECT $1, $2, id, $4, $5, $6, $7 FROM contact WHERE id = $3 AND organisation_id = $2
             RETURNING id)
         INSERT INTO event_outbox (event_id, organisation_id, created_at) SELECT id, $2, $7 FROM e",
        [
            id.into(),
            org.0.into(),
            contact.into(),
            event_type.to_string().into(),
            sealed.into(),
            occurred_at.into(),
            svc.clock().now().into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(id)
}

/// A contact's patient events, newest first: type and times only (no PHI), for the contact page.
pub async fn timeline(
    svc: &Services,
    actor: &Actor,
    contact: Uuid,
    limit: u32,
) -> ServiceResult<Vec<domain::contacts::PatientEventView>> {
    actor.require(Permission::ContactsRead)?;
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        id: Uuid,
        event_type: String,
        occurred_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        has_properties: bool,
    }
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        "SELECT id, event_type, occurred_at, received_at, properties IS NOT NULL AS has_properties
         FROM patient_event WHERE organisation_id = $1 AND contact_id = $2
         ORDER BY occurred_at DESC, id DESC LIMIT $3",
        [actor.organisation_id.0.into(), contact.into(), i64::from(limit.clamp(1, 500)).into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| domain::contacts::PatientEventView {
            id: r.id,
            event_type: r.event_type,
            occurred_at: r.occurred_at,
            received_at: r.received_at,
            has_properties: r.has_properties,
        })
        .collect())
}

/// One event's properties, opened on request: an audited PHI read.
pub async fn properties(svc: &Services, actor: &Actor, event: Uuid) -> ServiceResult<Vec<(String, Phi<String>)>> {
    actor.require(Permission::ContactsRead)?;
    let org = actor.organisation_id;
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        contact_id: Uuid,
        properties: Option<Vec<u8>>,
    }
    let row: Row = db::one_as(
        svc.db(),
        "SELECT contact_id, properties FROM patient_event WHERE id = $1 AND organisation_id = $2",
        [event.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    crate::audit::record_now(
        svc,
        crate::audit::AuditRecord::by(actor, domain::audit::AuditAction::EventPropertiesViewed)
            .target("patient_event", event)
            .detail("contact", row.contact_id.to_string()),
    )
    .await?;
    let Some(bytes) = row.properties else { return Ok(Vec::new()) };
    let sealed = Sealed::from_bytes(bytes)?;
    let plain = svc.keys().open(svc.db(), &aad(org, event), &sealed).await?;
    let json: Json =
        serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("event properties are malformed"))?;
    let mut out = Vec::new();
    if let Some(obj) = json.as_object() {
        for (k, v) in obj {
            let shown = match v {
                Json::String(s) => s.clone(),
                Json::Null => String::new(),
                other => other.to_string(),
            };
            out.push((k.clone(), Phi::new(shown)));
        }
    }
    Ok(out)
}

/// An event's properties as a template's `event.` namespace reads them (opened at send time; the
/// event row is the only copy).
pub async fn properties_json(svc: &Services, org: OrganisationId, event: Uuid) -> ServiceResult<Json> {
    let props = stored_properties(svc, svc.db(), org, event).await?;
    Ok(crate::contacts::record::attrs_json(&props))
}

/// An event's properties read inside `conn` (a transaction sees its own uncommitted events).
pub async fn stored_properties<C: sea_orm::ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    event: Uuid,
) -> ServiceResult<BTreeMap<String, FieldValue>> {
    let bytes = db::scalar::<Option<Vec<u8>>, _>(
        conn,
        "SELECT properties FROM patient_event WHERE id = $1 AND organisation_id = $2",
        [event.into(), org.0.into()],
    )
    .await?
    .flatten();
    let Some(bytes) = bytes else { return Ok(BTreeMap::new()) };
    let plain = svc.keys().open(conn, &aad(org, event), &Sealed::from_bytes(bytes)?).await?;
    let j: Json =
        serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("event properties are malformed"))?;
    Ok(properties_from_json(&j))
}
