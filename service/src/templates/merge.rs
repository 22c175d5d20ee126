//! Merge data: what a template's `{{contact.…}}`, `{{organisation.…}}` and `{{links.…}}` read —
//! a real contact (typed values, every field present), or made-up values for previews and tests.

use super::sandbox::MergeFields;
use crate::contacts::record;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Phi;
use domain::contacts::{CustomField, FieldType, FieldValue};
use domain::ids::OrganisationId;
use serde_json::{Value as Json, json};

/// Made-up values for every merge field, so previews and test sends involve no real person.
pub fn synthetic_contact(catalogue: &[CustomField]) -> Json {
    let mut c = serde_json::Map::new();
    for (k, v) in [
        ("email", json!("alex.sample@example.org")),
        ("first_name", json!("Alex")),
        ("last_name", json!("Sample")),
        ("phone", json!("+1 555 010 0199")),
        ("date_of_birth", json!("1984-06-15")),
        ("time_zone", json!("America/New_York")),
        ("locale", json!("en")),
    ] {
        c.insert(k.into(), v);
    }
    for f in catalogue {
        let v = match f.field_type {
            FieldType::Text => json!(format!("Sample {}", f.label.to_lowercase())),
            FieldType::Number => json!(42),
            FieldType::Date => json!("2026-12-01"),
            FieldType::Boolean => json!(true),
            FieldType::OneOf => json!(f.options.first().cloned().unwrap_or_default()),
        };
        c.insert(f.key.clone(), v);
    }
    Json::Object(c)
}

pub(super) fn field_json(v: &FieldValue) -> Json {
    match v {
        FieldValue::Text(s) => json!(s),
        FieldValue::Number(n) => json!(n),
        FieldValue::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
        FieldValue::Boolean(b) => json!(b),
    }
}

/// A contact as merge data: every field present (null when empty), typed values.
pub fn contact_json(rec: &record::ContactRecord, fields: &MergeFields) -> Phi<Json> {
    let mut c = serde_json::Map::new();
    for f in fields.fields() {
        c.insert(f.key.clone(), Json::Null);
    }
    let text = |v: &Option<Phi<String>>| v.as_ref().map(|p| json!(p.expose())).unwrap_or(Json::Null);
    c.insert("email".into(), json!(rec.email.expose()));
    c.insert("first_name".into(), text(&rec.first_name));
    c.insert("last_name".into(), text(&rec.last_name));
    c.insert("phone".into(), text(&rec.phone));
    c.insert(
        "date_of_birth".into(),
        rec.date_of_birth.as_ref().map(|d| json!(d.expose().format("%Y-%m-%d").to_string())).unwrap_or(Json::Null),
    );
    c.insert("time_zone".into(), rec.time_zone.as_ref().map(|v| json!(v)).unwrap_or(Json::Null));
    c.insert("locale".into(), rec.locale.as_ref().map(|v| json!(v)).unwrap_or(Json::Null));
    for (k, v) in rec.attrs.iter().chain(rec.phi_attrs.expose().iter()) {
        c.insert(k.clone(), field_json(v));
    }
    Phi::new(Json::Object(c))
}

pub(crate) async fn organisation_name(svc: &Services, org: OrganisationId) -> ServiceResult<String> {
    #[derive(sea_orm::FromQueryResult)]
    struct Name {
        name: String,
    }
    db::one_as::<Name, _>(svc.db(), "SELECT name FROM organisation WHERE id = $1", [org.0.into()])
        .await?
        .map(|r| r.name)
        .ok_or(ServiceError::NotFound)
}

pub(crate) fn merge_data(contact: Json, org_name: &str, links: Json) -> Phi<Json> {
    Phi::new(json!({ "contact": contact, "organisation": { "name": org_name }, "links": links }))
}
