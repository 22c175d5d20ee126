//! Merge data: what a template's `{{contact.…}}`, `{{organisation.…}}` and `{{links.…}}` read —
//! a real contact (typed values, every field present), or made-up values for previews and tests
//! (including the `{{message.…}}` / `{{event.…}}` values a preview has no source for).

use super::sandbox::{Checked, EVENT, MESSAGE, MergeFields};
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

/// A made-up instant for `message.x` / `event.x` values a template formats with `date`.
pub const SAMPLE_INSTANT: &str = "2027-01-05T14:30:00Z";

/// Made-up values for the `message.*` and `event.*` keys a template uses, for previews and test
/// sends (which have no API message or event): `(message.clinic)`, or `SAMPLE_INSTANT` where the
/// template formats the key with `date`. Never real data.
pub fn with_samples(data: Phi<Json>, checked: &Checked) -> Phi<Json> {
    let mut data = data.into_inner();
    if let Some(root) = data.as_object_mut() {
        for (ns, keys) in [(MESSAGE, &checked.message_keys), (EVENT, &checked.event_keys)] {
            if keys.is_empty() {
                continue;
            }
            let values: serde_json::Map<String, Json> = keys
                .iter()
                .map(|k| {
                    let path = format!("{ns}.{k}");
                    let v =
                        if checked.dated.contains(&path) { json!(SAMPLE_INSTANT) } else { json!(format!("({path})")) };
                    (k.clone(), v)
                })
                .collect();
            root.insert(ns.into(), Json::Object(values));
        }
    }
    Phi::new(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::{Sandbox, TemplateParts};

    #[test]
    fn previews_fill_message_and_event_keys_with_made_up_values() {
        let s = Sandbox::new();
        let fields = MergeFields::new(&[]);
        let t = s
            .check(
                TemplateParts {
                    subject: "x",
                    preheader: "",
                    html: "<p>{{message.clinic}}|{{date event.appointment_at \"%B %-d, %H:%M\"}}|{{event.appointment_at}}</p>",
                    text: "x",
                },
                &fields,
            )
            .unwrap();
        let links = json!({"unsubscribe": "https://h.test/u", "view_in_browser": "https://h.test/v", "preferences": "https://h.test/p"});
        let data = with_samples(merge_data(synthetic_contact(&[]), "Clinic", links), &t);
        let r = s.render(&t, data).unwrap();
        // The synthetic contact lives in New York: 14:30 UTC is 09:30 there.
        assert!(
            r.html.expose().starts_with("<p>(message.clinic)|January 5, 09:30|2027-01-05T14:30:00Z</p>"),
            "{}",
            r.html.expose()
        );
    }
}
