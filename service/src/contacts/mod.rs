//! Contacts: every one is protected health information. PHI columns are sealed; email has an HMAC
//! blind index (a separate key) for exact search and de-duplication. Every path that decrypts PHI
//! for a person writes an audit row first (ids and counts only).

pub mod browse;
pub mod consent;
pub mod export;
pub mod fields;
pub mod import;
pub mod lists;
pub mod record;
pub mod suppression;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::crypto::keyring::{DataKey, KeyPurpose};
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::Phi;
use domain::audit::AuditAction;
use domain::contacts::{ConsentPurpose, ContactDetail, ContactInput, ContactPage, CustomField};
use domain::ids::OrganisationId;
use record::{ContactRecord, KeySet, Open, SealedContact};
use sea_orm::{ConnectionTrait, FromQueryResult, QueryResult, TransactionTrait};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub const PAGE_MAX: u32 = 100;

/// HMAC-SHA256 blind index of a normalised email under the organisation's blind-index key.
pub fn email_bidx(key: &DataKey, normalised_email: &str) -> Vec<u8> {
    key.mac(&[b"hermetic.bidx.email.v1", normalised_email.as_bytes()]).to_vec()
}

pub(crate) async fn bidx_key<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
) -> ServiceResult<Arc<DataKey>> {
    svc.keys().active_key(conn, svc.clock(), Some(org), KeyPurpose::BlindIndex).await
}

pub(crate) async fn data_key<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
) -> ServiceResult<Arc<DataKey>> {
    svc.keys().active_key(conn, svc.clock(), Some(org), KeyPurpose::Data).await
}

pub(crate) const SEALED_COLS: &str = "email, first_name, last_name, phone, date_of_birth, phi_attrs";

/// The sealed columns of a raw row (through `SealedContact`'s typed derive). For callers that still
/// read raw rows; typed rows nest `SealedContact` instead.
pub(crate) fn sealed_from_row(r: &QueryResult) -> ServiceResult<SealedContact> {
    Ok(SealedContact::from_query_result(r, "")?)
}

/// A contact row with its sealed columns and id (`SELECT id, {SEALED_COLS} …`).
#[derive(FromQueryResult)]
pub(crate) struct SealedRow {
    pub id: Uuid,
    #[sea_orm(nested)]
    pub sealed: SealedContact,
}

/// Preload every key a batch of sealed rows needs.
pub(crate) async fn keys_for<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    rows: &[&SealedContact],
) -> ServiceResult<KeySet> {
    let ids: Vec<Uuid> = rows.iter().flat_map(|s| record::key_ids(s)).collect();
    svc.keys().load_keys(conn, ids).await
}

/// Load a contact of the organisation (NotFound for other organisations' ids) and open it.
pub(crate) async fn load<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    id: Uuid,
    catalogue: &[CustomField],
) -> ServiceResult<(ContactRecord, DateTime<Utc>, DateTime<Utc>)> {
    #[derive(FromQueryResult)]
    struct Loaded {
        #[sea_orm(nested)]
        sealed: SealedContact,
        time_zone: Option<String>,
        locale: Option<String>,
        attrs: serde_json::Value,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
    let row: Loaded = db::one_as(
        conn,
        &format!("SELECT {SEALED_COLS}, time_zone, locale, attrs, created_at, updated_at FROM contact WHERE id = $1 AND organisation_id = $2"),
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let keys = keys_for(svc, conn, &[&row.sealed]).await?;
    let mut rec = record::open(&keys, org, id, &row.sealed, Open::All, catalogue)?;
    rec.time_zone = row.time_zone;
    rec.locale = row.locale;
    rec.attrs = record::attrs_from_json(&row.attrs, catalogue);
    Ok((rec, row.created_at, row.updated_at))
}

/// One refused field travels as itself (the form shows it next to the field); several are named
/// in plain words in one message.
fn invalid(errors: Vec<record::FieldError>) -> ServiceError {
    if let [one] = errors.as_slice() {
        return ServiceError::invalid(&one.field, one.message.clone());
    }
    let msg = errors
        .iter()
        .map(|e| format!("{} {}", domain::error::field_label(&e.field), e.message))
        .collect::<Vec<_>>()
        .join("; ");
    ServiceError::invalid("contact", msg)
}

async fn write<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    id: Uuid,
    rec: &ContactRecord,
    insert: bool,
) -> ServiceResult<()> {
    let key = data_key(svc, conn, org).await?;
    let bkey = bidx_key(svc, conn, org).await?;
    let sealed = record::seal(&key, org, id, rec)?;
    let now = svc.clock().now();
    let values: Vec<sea_orm::Value> = vec![
        id.into(),
        org.0.into(),
        email_bidx(&bkey, rec.email.expose()).into(),
        sealed.email.into(),
        sealed.first_name.into(),
        sealed.last_name.into(),
        sealed.phone.into(),
        sealed.date_of_birth.into(),
        rec.time_zone.clone().into(),
        rec.locale.clone().into(),
        record::attrs_json(&rec.attrs).into(),
        sealed.phi_attrs.into(),
        now.into(),
    ];
    let sql = if insert {
        "INSERT INTO contact (id, organisation_id, email_bidx, email, first_name, last_name, phone, date_of_birth,
            time_zone, locale, attrs, phi_attrs, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
    } else {
        "UPDATE contact SET email_bidx = $3, email = $4, first_name = $5, last_name = $6, phone = $7, date_of_birth = $8,
            time_zone = $9, locale = $10, attrs = $11, phi_attrs = $12, updated_at = $13
         WHERE id = $1 AND organisation_id = $2"
    };
    match db::exec(conn, sql, values).await {
        Err(e) if is_unique_violation(&e) => {
            Err(ServiceError::conflict("A contact with this email address already exists."))
        }
        Err(e) => Err(e.into()),
        Ok(0) => Err(ServiceError::NotFound),
        Ok(_) => Ok(()),
    }
}

/// Create a contact from form fields (key → value).
pub async fn create(svc: &Services, actor: &Actor, input: ContactInput) -> ServiceResult<Uuid> {
    actor.require(Permission::ContactsWrite)?;
    let catalogue = fields::catalogue(svc, svc.db(), actor.organisation_id).await?;
    let rec = record::validate(&input.fields, &catalogue).map_err(invalid)?;
    let txn = svc.db().begin().await?;
    let id = insert_in(svc, &txn, actor, &rec).await?;
    txn.commit().await?;
    Ok(id)
}

/// Insert a validated contact inside the caller's transaction (the form, the contact API, an event
/// for an unknown address): its withdrawals carried over, an audit row. The caller checked
/// `ContactsWrite`.
pub(crate) async fn insert_in(
    svc: &Services,
    txn: &sea_orm::DatabaseTransaction,
    actor: &Actor,
    rec: &ContactRecord,
) -> ServiceResult<Uuid> {
    actor.require(Permission::ContactsWrite)?;
    let id = Uuid::now_v7();
    write(svc, txn, actor.organisation_id, id, rec, true).await?;
    // An address whose earlier contact withdrew consent starts withdrawn.
    consent::carry_withdrawals(txn, actor.organisation_id, &[id], svc.clock().now()).await?;
    audit::record(svc, txn, AuditRecord::by(actor, AuditAction::ContactCreated).target("contact", id)).await?;
    Ok(id)
}

/// Replace a contact's fields inside the caller's transaction (the contact API's upsert), with an
/// audit row. The caller checked `ContactsWrite` and that the contact is the organisation's.
pub(crate) async fn update_in(
    svc: &Services,
    txn: &sea_orm::DatabaseTransaction,
    actor: &Actor,
    id: Uuid,
    rec: &ContactRecord,
) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    write(svc, txn, actor.organisation_id, id, rec, false).await?;
    audit::record(svc, txn, AuditRecord::by(actor, AuditAction::ContactUpdated).target("contact", id)).await?;
    Ok(())
}

/// Replace a contact's fields (the form sends them all).
pub async fn update(svc: &Services, actor: &Actor, id: Uuid, input: ContactInput) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let catalogue = fields::catalogue(svc, svc.db(), actor.organisation_id).await?;
    let rec = record::validate(&input.fields, &catalogue).map_err(invalid)?;
    let txn = svc.db().begin().await?;
    let exists = db::one(
        &txn,
        "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2 FOR UPDATE",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if exists.is_none() {
        return Err(ServiceError::NotFound);
    }
    write(svc, &txn, actor.organisation_id, id, &rec, false).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ContactUpdated).target("contact", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Delete a contact. Its suppression entries (keyed by blind index) and consent evidence remain,
/// and its withdrawals of consent are kept under the address: re-creating or re-importing the
/// contact does not re-subscribe them.
pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let txn = svc.db().begin().await?;
    consent::keep_withdrawals(&txn, actor.organisation_id, id).await?;
    let n = db::exec(
        &txn,
        "DELETE FROM contact WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ContactDeleted).target("contact", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// The contact page: every field decrypted (an audited PHI read), lists, consent history, and
/// whether the contact may be mailed for each purpose now.
pub async fn detail(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<ContactDetail> {
    actor.require(Permission::ContactsRead)?;
    let org = actor.organisation_id;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    // Existence first, so a probe with another organisation's id is a 404 without an audit row.
    db::one(svc.db(), "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2", [id.into(), org.0.into()])
        .await?
        .ok_or(ServiceError::NotFound)?;
    audit::record_now(svc, AuditRecord::by(actor, AuditAction::ContactViewed).target("contact", id)).await?;
    let (rec, created_at, updated_at) = load(svc, svc.db(), org, id, &catalogue).await?;
    let lists = lists::memberships(svc, org, id).await?;
    let consent = consent::history(svc, org, id).await?;
    let withdrawals = consent::withdrawals(svc, org, id).await?;
    let bkey = bidx_key(svc, svc.db(), org).await?;
    let suppressed = suppression::reason_for(svc, svc.db(), org, &email_bidx(&bkey, rec.email.expose())).await?;
    let now = svc.clock().now();
    let mut mailable = Vec::new();
    for p in ConsentPurpose::ALL {
        let d = consent::may_mail(svc, svc.db(), org, id, p, now).await?;
        mailable.push((p, d.allowed, d.reason.to_string()));
    }
    Ok(ContactDetail {
        id,
        fields: ContactInput { fields: record::to_fields(&rec) },
        lists,
        consent,
        mailable,
        withdrawals,
        suppressed,
        created_at,
        updated_at,
    })
}

/// One page of the contacts table, newest first, decrypting only that page (an audited read).
/// `email` searches exactly through the blind index. (Filters and sorting: [`browse::page`].)
pub async fn page(
    svc: &Services,
    actor: &Actor,
    after: Option<String>,
    limit: u32,
    email: Option<String>,
) -> ServiceResult<ContactPage> {
    browse::page(svc, actor, after, limit, &domain::contacts::ContactQuery { email, ..Default::default() }).await
}

/// Fields keyed for the UI form, blank for a new contact.
pub fn blank_input() -> ContactInput {
    ContactInput { fields: BTreeMap::from([("email".to_string(), Phi::new(String::new()))]) }
}
