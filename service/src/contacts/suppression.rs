//! The organisation's suppression list, keyed by the email's blind index: it applies whether or not
//! the contact still exists, and to any future import of the same address. Every send honours it.
//!
//! Unsubscribes are not suppression rows: an unsubscribe withdraws consent for one purpose (or
//! every purpose) in the consent ledger, which only the patient can lift, and a suppression row
//! would outlive the patient's own later consent. The suppression page shows them next to the
//! blocks from the ledger (`unsubscribes`), so what it says and what holds are the same thing.

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{ConsentPurpose, ConsentSource, SuppressionReason, SuppressionView, UnsubscribeView};
use domain::ids::OrganisationId;
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use uuid::Uuid;

pub(crate) async fn reason_for<C: ConnectionTrait>(
    _svc: &Services,
    conn: &C,
    org: OrganisationId,
    bidx: &[u8],
) -> ServiceResult<Option<SuppressionReason>> {
    let reason: Option<String> = db::scalar(
        conn,
        "SELECT reason FROM suppression WHERE organisation_id = $1 AND email_bidx = $2",
        [org.0.into(), bidx.to_vec().into()],
    )
    .await?;
    Ok(reason.and_then(|r| SuppressionReason::parse(&r)))
}

/// Suppress an address (inside the caller's transaction). An existing entry keeps its first reason
/// unless the new one is stronger (a complaint or hard bounce outranks an unsubscribe).
pub(crate) async fn add_bidx<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    bidx: Vec<u8>,
    reason: SuppressionReason,
    by: Option<Uuid>,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "INSERT INTO suppression (organisation_id, email_bidx, reason, created_at, created_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (organisation_id, email_bidx) DO UPDATE SET reason = EXCLUDED.reason
         WHERE suppression.reason IN ('unsubscribed', 'manual') AND EXCLUDED.reason IN ('hard_bounce', 'complaint')",
        [org.0.into(), bidx.into(), reason.as_str().into(), now.into(), by.into()],
    )
    .await?;
    Ok(())
}

/// Staff block an address (it need not belong to a contact).
pub async fn add(svc: &Services, actor: &Actor, email: &str, reason: SuppressionReason) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let norm = domain::contacts::normalise_email(email).map_err(|m| ServiceError::invalid("email", m))?;
    let key = super::bidx_key(svc, svc.db(), actor.organisation_id).await?;
    let bidx = super::email_bidx(&key, &norm);
    let txn = svc.db().begin().await?;
    add_bidx(&txn, actor.organisation_id, bidx.clone(), reason, actor.user_id().map(|u| u.0), svc.clock().now())
        .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SuppressionAdded)
            .target("suppression", reference(&bidx))
            .detail("reason", reason.as_str()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A short opaque reference to an entry (a prefix of its blind index; not reversible).
pub fn reference(bidx: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&bidx[..bidx.len().min(8)])
}

pub async fn list(svc: &Services, actor: &Actor, limit: u32) -> ServiceResult<Vec<SuppressionView>> {
    actor.require(Permission::ContactsRead)?;
    #[derive(FromQueryResult)]
    struct Entry {
        email_bidx: Vec<u8>,
        reason: String,
        created_at: chrono::DateTime<chrono::Utc>,
        contact_id: Option<Uuid>,
    }
    let rows: Vec<Entry> = db::all_as(
        svc.db(),
        "SELECT s.email_bidx, s.reason, s.created_at, c.id AS contact_id
         FROM suppression s LEFT JOIN contact c ON c.organisation_id = s.organisation_id AND c.email_bidx = s.email_bidx
         WHERE s.organisation_id = $1 ORDER BY s.created_at DESC LIMIT $2",
        [actor.organisation_id.0.into(), i64::from(limit.clamp(1, 500)).into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(SuppressionView {
                reference: reference(&r.email_bidx),
                reason: SuppressionReason::parse(&r.reason).ok_or_else(|| ServiceError::internal("bad reason"))?,
                created_at: r.created_at,
                contact_id: r.contact_id,
            })
        })
        .collect()
}

/// The withdrawals of consent in force, newest first: contacts' (`contact_consent`) and those kept
/// for deleted contacts' addresses (`consent_withdrawal_kept`, while no contact has the address).
pub async fn unsubscribes(svc: &Services, actor: &Actor, limit: u32) -> ServiceResult<Vec<UnsubscribeView>> {
    actor.require(Permission::ContactsRead)?;
    #[derive(FromQueryResult)]
    struct Withdrawn {
        contact_id: Option<Uuid>,
        email_bidx: Option<Vec<u8>>,
        purpose: String,
        withdrawn_at: chrono::DateTime<chrono::Utc>,
        source: Option<String>,
    }
    let rows: Vec<Withdrawn> = db::all_as(
        svc.db(),
        "SELECT contact_id, NULL::bytea AS email_bidx, purpose, COALESCE(withdrawn_at, updated_at) AS withdrawn_at, withdrawn_source AS source
         FROM contact_consent WHERE organisation_id = $1 AND NOT granted
         UNION ALL
         SELECT NULL, k.email_bidx, k.purpose, k.withdrawn_at, k.source FROM consent_withdrawal_kept k
         WHERE k.organisation_id = $1
           AND NOT EXISTS (SELECT 1 FROM contact c WHERE c.organisation_id = k.organisation_id AND c.email_bidx = k.email_bidx)
         ORDER BY withdrawn_at DESC LIMIT $2",
        [actor.organisation_id.0.into(), i64::from(limit.clamp(1, 500)).into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(UnsubscribeView {
                contact_id: r.contact_id,
                reference: r.email_bidx.map(|b| reference(&b)),
                purpose: ConsentPurpose::parse(&r.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?,
                withdrawn_at: r.withdrawn_at,
                source: r.source.and_then(|s| ConsentSource::parse(&s)),
            })
        })
        .collect()
}

/// Lift a manual block. Unsubscribes, bounces and complaints are not lifted by staff: the person
/// re-subscribes themselves (double opt-in) if they want mail again.
pub async fn remove(svc: &Services, actor: &Actor, reference_hex: &str) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let prefix = data_encoding::HEXLOWER_PERMISSIVE
        .decode(reference_hex.trim().as_bytes())
        .map_err(|_| ServiceError::NotFound)?;
    if prefix.len() != 8 {
        return Err(ServiceError::NotFound);
    }
    let txn = svc.db().begin().await?;
    #[derive(FromQueryResult)]
    struct Block {
        email_bidx: Vec<u8>,
        reason: String,
    }
    let row: Block = db::one_as(
        &txn,
        "SELECT email_bidx, reason FROM suppression WHERE organisation_id = $1 AND substring(email_bidx FROM 1 FOR 8) = $2",
        [actor.organisation_id.0.into(), prefix.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    if row.reason != "manual" {
        return Err(ServiceError::invalid(
            "suppression",
            "only manual blocks can be removed; the person must opt in again",
        ));
    }
    let bidx = row.email_bidx;
    db::exec(
        &txn,
        "DELETE FROM suppression WHERE organisation_id = $1 AND email_bidx = $2",
        [actor.organisation_id.0.into(), bidx.clone().into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SuppressionRemoved).target("suppression", reference(&bidx)),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
