//! A contact's plaintext record (inside `Phi`), its validation against the field catalogue, and its
//! sealed form. Sealing binds every value to (organisation, "contact", column, contact id).

use crate::crypto::keyring::DataKey;
use crate::crypto::seal::{Aad, Sealed};
use crate::error::{ServiceError, ServiceResult};
use chrono::NaiveDate;
use domain::Phi;
use domain::contacts::{
    BuiltinField, CustomField, FieldType, FieldValue, normalise_email, normalise_locale, normalise_phone, parse_date,
    parse_value,
};
use domain::ids::OrganisationId;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const TABLE: &str = "contact";

/// A validated contact. PHI stays inside `Phi`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactRecord {
    pub email: Phi<String>,
    pub first_name: Option<Phi<String>>,
    pub last_name: Option<Phi<String>>,
    pub phone: Option<Phi<String>>,
    pub date_of_birth: Option<Phi<NaiveDate>>,
    pub time_zone: Option<String>,
    pub locale: Option<String>,
    /// Non-PHI custom values (stored plain, filterable).
    pub attrs: BTreeMap<String, FieldValue>,
    /// PHI custom values (sealed as one JSON object).
    pub phi_attrs: Phi<BTreeMap<String, FieldValue>>,
}

/// One invalid input: which field and what is wrong (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Check a time zone name against the tz database.
pub fn valid_time_zone(name: &str) -> bool {
    domain::contacts::looks_like_time_zone(name) && name.trim().parse::<chrono_tz::Tz>().is_ok()
}

/// Validate raw field strings (built-in keys and custom keys) into a record. With `partial`, absent
/// keys are left unset (for updates that only change some fields); email is always required.
pub fn validate(
    raw: &BTreeMap<String, Phi<String>>,
    catalogue: &[CustomField],
) -> Result<ContactRecord, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut rec = ContactRecord::default();
    let err = |errors: &mut Vec<FieldError>, field: &str, message: &str| {
        errors.push(FieldError { field: field.to_string(), message: message.to_string() })
    };
    let get = |k: &str| raw.get(k).map(|v| v.expose().trim()).filter(|v| !v.is_empty());
    match get("email") {
        None => err(&mut errors, "email", "is required"),
        Some(e) => match normalise_email(e) {
            Ok(e) => rec.email = Phi::new(e),
            Err(m) => err(&mut errors, "email", m),
        },
    }
    let text = |errors: &mut Vec<FieldError>, key: &str| -> Option<Phi<String>> {
        let v = get(key)?;
        match parse_value(FieldType::Text, &[], v) {
            Ok(Some(FieldValue::Text(t))) if t.chars().count() <= 200 => Some(Phi::new(t)),
            Ok(_) => {
                errors.push(FieldError { field: key.into(), message: "is too long".into() });
                None
            }
            Err(m) => {
                errors.push(FieldError { field: key.into(), message: m.into() });
                None
            }
        }
    };
    rec.first_name = text(&mut errors, "first_name");
    rec.last_name = text(&mut errors, "last_name");
    if let Some(p) = get("phone") {
        match normalise_phone(p) {
            Ok(p) => rec.phone = Some(Phi::new(p)),
            Err(m) => err(&mut errors, "phone", m),
        }
    }
    if let Some(d) = get("date_of_birth") {
        match parse_date(d) {
            Some(d) => rec.date_of_birth = Some(Phi::new(d)),
            None => err(&mut errors, "date_of_birth", "is not a date (use YYYY-MM-DD or MM/DD/YYYY)"),
        }
    }
    if let Some(tz) = get("time_zone") {
        if valid_time_zone(tz) {
            rec.time_zone = Some(tz.to_string())
        } else {
            err(&mut errors, "time_zone", "is not a known time zone")
        }
    }
    if let Some(l) = get("locale") {
        match normalise_locale(l) {
            Ok(l) => rec.locale = Some(l),
            Err(m) => err(&mut errors, "locale", m),
        }
    }
    let mut phi = BTreeMap::new();
    for f in catalogue {
        let Some(v) = get(&f.key) else { continue };
        match parse_value(f.field_type, &f.options, v) {
            Ok(Some(value)) => {
                if f.is_phi {
                    phi.insert(f.key.clone(), value);
                } else {
                    rec.attrs.insert(f.key.clone(), value);
                }
            }
            Ok(None) => {}
            Err(m) => err(&mut errors, &f.key, m),
        }
    }
    rec.phi_attrs = Phi::new(phi);
    for k in raw.keys() {
        if BuiltinField::from_key(k).is_none() && !catalogue.iter().any(|f| &f.key == k) {
            err(&mut errors, k, "is not a field of this organisation");
        }
    }
    if errors.is_empty() { Ok(rec) } else { Err(errors) }
}

/// The record as key → display strings (for forms, detail pages and export).
pub fn to_fields(rec: &ContactRecord) -> BTreeMap<String, Phi<String>> {
    let mut m = BTreeMap::new();
    m.insert("email".to_string(), rec.email.clone());
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Phi::new(v));
        }
    };
    put("first_name", rec.first_name.as_ref().map(|v| v.expose().clone()));
    put("last_name", rec.last_name.as_ref().map(|v| v.expose().clone()));
    put("phone", rec.phone.as_ref().map(|v| v.expose().clone()));
    put("date_of_birth", rec.date_of_birth.as_ref().map(|d| d.expose().format("%Y-%m-%d").to_string()));
    put("time_zone", rec.time_zone.clone());
    put("locale", rec.locale.clone());
    for (k, v) in rec.attrs.iter().chain(rec.phi_attrs.expose().iter()) {
        m.insert(k.clone(), Phi::new(v.display()));
    }
    m
}

pub fn attrs_json(attrs: &BTreeMap<String, FieldValue>) -> Json {
    let mut m = Map::new();
    for (k, v) in attrs {
        let j = match v {
            FieldValue::Text(s) => Json::String(s.clone()),
            FieldValue::Number(n) => serde_json::Number::from_f64(*n).map(Json::Number).unwrap_or(Json::Null),
            FieldValue::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            FieldValue::Boolean(b) => Json::Bool(*b),
        };
        m.insert(k.clone(), j);
    }
    Json::Object(m)
}

/// Read plain attrs back using the catalogue for types (unknown or retyped keys are dropped).
pub fn attrs_from_json(j: &Json, catalogue: &[CustomField]) -> BTreeMap<String, FieldValue> {
    let mut out = BTreeMap::new();
    let Some(obj) = j.as_object() else { return out };
    for (k, v) in obj {
        let Some(f) = catalogue.iter().find(|f| &f.key == k) else { continue };
        let value = match (f.field_type, v) {
            (FieldType::Number, Json::Number(n)) => n.as_f64().map(FieldValue::Number),
            (FieldType::Boolean, Json::Bool(b)) => Some(FieldValue::Boolean(*b)),
            (FieldType::Date, Json::String(s)) => parse_date(s).map(FieldValue::Date),
            (FieldType::Text | FieldType::OneOf, Json::String(s)) => Some(FieldValue::Text(s.clone())),
            _ => None,
        };
        if let Some(value) = value {
            out.insert(k.clone(), value);
        }
    }
    out
}

/// The sealed columns of one contact row (read by name from any query that selects them; nest it
/// with `#[sea_orm(nested)]` in a row that selects more).
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct SealedContact {
    pub email: Vec<u8>,
    pub first_name: Option<Vec<u8>>,
    pub last_name: Option<Vec<u8>>,
    pub phone: Option<Vec<u8>>,
    pub date_of_birth: Option<Vec<u8>>,
    pub phi_attrs: Option<Vec<u8>>,
}

fn aad(org: OrganisationId, column: &'static str, row: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: TABLE, column, row }
}

pub fn seal(key: &DataKey, org: OrganisationId, id: Uuid, rec: &ContactRecord) -> ServiceResult<SealedContact> {
    let s = |column: &'static str, v: &[u8]| key.seal(&aad(org, column, id), v).map(Sealed::into_bytes);
    let opt = |column: &'static str, v: Option<&Phi<String>>| v.map(|v| s(column, v.expose().as_bytes())).transpose();
    let phi_attrs = if rec.phi_attrs.expose().is_empty() {
        None
    } else {
        let json = serde_json::to_vec(&attrs_json(rec.phi_attrs.expose()))
            .map_err(|_| ServiceError::internal("encode fields"))?;
        Some(s("phi_attrs", &json)?)
    };
    Ok(SealedContact {
        email: s("email", rec.email.expose().as_bytes())?,
        first_name: opt("first_name", rec.first_name.as_ref())?,
        last_name: opt("last_name", rec.last_name.as_ref())?,
        phone: opt("phone", rec.phone.as_ref())?,
        date_of_birth: rec
            .date_of_birth
            .as_ref()
            .map(|d| s("date_of_birth", d.expose().format("%Y-%m-%d").to_string().as_bytes()))
            .transpose()?,
        phi_attrs,
    })
}

/// Which sealed columns to open (listing needs only email and names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Summary,
    All,
}

/// Unwrapped keys by id, preloaded (asynchronously) for a batch of rows so opening is synchronous.
pub type KeySet = std::collections::HashMap<Uuid, std::sync::Arc<DataKey>>;

/// The key ids a sealed row needs.
pub fn key_ids(s: &SealedContact) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = [
        Some(&s.email),
        s.first_name.as_ref(),
        s.last_name.as_ref(),
        s.phone.as_ref(),
        s.date_of_birth.as_ref(),
        s.phi_attrs.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|b| b.len() > 17)
    .map(|b| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[1..17]);
        Uuid::from_bytes(id)
    })
    .collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub(crate) fn open_one(
    keys: &KeySet,
    org: OrganisationId,
    column: &'static str,
    id: Uuid,
    bytes: &[u8],
) -> ServiceResult<zeroize::Zeroizing<Vec<u8>>> {
    let sealed = Sealed::from_bytes(bytes.to_vec())?;
    let key =
        keys.get(&sealed.key_id()).ok_or_else(|| ServiceError::internal("sealed value refers to an unknown key"))?;
    if key.organisation != Some(org) {
        return Err(ServiceError::internal("sealed value belongs to another organisation's key"));
    }
    key.open(&aad(org, column, id), &sealed)
}

fn utf8(b: zeroize::Zeroizing<Vec<u8>>) -> ServiceResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| ServiceError::internal("sealed text is not UTF-8"))
}

/// Open a sealed row (fails closed on any tampering or misplacement).
pub fn open(
    keys: &KeySet,
    org: OrganisationId,
    id: Uuid,
    s: &SealedContact,
    what: Open,
    catalogue: &[CustomField],
) -> ServiceResult<ContactRecord> {
    let text = |column: &'static str, v: &Option<Vec<u8>>| -> ServiceResult<Option<Phi<String>>> {
        v.as_ref().map(|b| open_one(keys, org, column, id, b).and_then(utf8).map(Phi::new)).transpose()
    };
    let mut rec = ContactRecord {
        email: Phi::new(utf8(open_one(keys, org, "email", id, &s.email)?)?),
        first_name: text("first_name", &s.first_name)?,
        last_name: text("last_name", &s.last_name)?,
        ..ContactRecord::default()
    };
    if what == Open::All {
        rec.phone = text("phone", &s.phone)?;
        rec.date_of_birth = match &s.date_of_birth {
            Some(b) => {
                let t = utf8(open_one(keys, org, "date_of_birth", id, b)?)?;
                Some(Phi::new(parse_date(&t).ok_or_else(|| ServiceError::internal("sealed date is malformed"))?))
            }
            None => None,
        };
        if let Some(b) = &s.phi_attrs {
            let json: Json = serde_json::from_slice(&open_one(keys, org, "phi_attrs", id, b)?)
                .map_err(|_| ServiceError::internal("sealed fields are malformed"))?;
            rec.phi_attrs = Phi::new(attrs_from_json(&json, catalogue));
        }
    }
    Ok(rec)
}

/// The display name: "First Last", else the email.
pub fn display_name(rec: &ContactRecord) -> Phi<String> {
    let parts: Vec<&str> =
        [rec.first_name.as_ref(), rec.last_name.as_ref()].into_iter().flatten().map(|p| p.expose().as_str()).collect();
    Phi::new(parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, Phi<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), Phi::new(v.to_string()))).collect()
    }

    fn catalogue() -> Vec<CustomField> {
        vec![
            CustomField {
                id: Uuid::nil(),
                key: "diagnosis".into(),
                label: "Diagnosis".into(),
                field_type: FieldType::Text,
                options: vec![],
                is_phi: true,
            },
            CustomField {
                id: Uuid::nil(),
                key: "tier".into(),
                label: "Tier".into(),
                field_type: FieldType::OneOf,
                options: vec!["Gold".into()],
                is_phi: false,
            },
        ]
    }

    #[test]
    fn validation_collects_every_error_without_values() {
        let e = validate(
            &raw(&[("email", "Secret@@x"), ("phone", "SecretPhone"), ("tier", "Platinum"), ("nope", "x")]),
            &catalogue(),
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["email", "phone", "tier", "nope"]);
        assert!(e.iter().all(|e| !e.message.contains("Secret")));
        assert!(validate(&raw(&[("first_name", "Ann")]), &catalogue()).is_err(), "email is required");
    }

    #[test]
    fn phi_and_plain_custom_fields_are_split() {
        let r = validate(
            &raw(&[("email", "a@b.org"), ("diagnosis", "asthma"), ("tier", "gold"), ("time_zone", "America/Chicago")]),
            &catalogue(),
        )
        .unwrap();
        assert_eq!(r.attrs.get("tier"), Some(&FieldValue::Text("Gold".into())));
        assert!(r.phi_attrs.expose().contains_key("diagnosis"));
        assert!(!r.attrs.contains_key("diagnosis"));
        for z in domain::time_zones::TIME_ZONES {
            assert!(valid_time_zone(z), "{z} is offered in the time zone list but chrono-tz does not know it");
        }
        assert!(valid_time_zone("Europe/Berlin"));
        assert!(!valid_time_zone("Mars/Olympus"));
    }
}
