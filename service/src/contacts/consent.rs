//! The consent ledger: append-only events (a trigger refuses changes) plus a current-state table
//! kept in step within the same transaction. `may_mail` is the one answer to "may this contact be
//! mailed for this purpose now".

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{ConsentEntry, ConsentPurpose, ConsentSource};
use domain::ids::{OrganisationId, UserId};
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

/// The answer, with the reason in words for the UI and the audit of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: &'static str,
}

/// Record a consent event and update the current state (inside the caller's transaction).
#[allow(clippy::too_many_arguments)]
pub async fn record_event<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    contact: Uuid,
    purpose: ConsentPurpose,
    granted: bool,
    source: ConsentSource,
    text_hash: Option<Vec<u8>>,
    actor_user: Option<UserId>,
    import_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "INSERT INTO consent_event (organisation_id, contact_id, purpose, granted, source, text_hash, occurred_at, actor_user_id, import_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            org.0.into(),
            contact.into(),
            purpose.as_str().into(),
            granted.into(),
            source.as_str().into(),
            text_hash.into(),
            now.into(),
            actor_user.map(|u| u.0).into(),
            import_id.into(),
        ],
    )
    .await?;
    db::exec(
        conn,
        "INSERT INTO contact_consent (organisation_id, contact_id, purpose, granted, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (contact_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, updated_at = EXCLUDED.updated_at",
        [org.0.into(), contact.into(), purpose.as_str().into(), granted.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Staff record a consent decision they obtained (for example on a signed form).
pub async fn record(
    svc: &Services,
    actor: &Actor,
    contact: Uuid,
    purpose: ConsentPurpose,
    granted: bool,
    consent_text: Option<&str>,
) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let txn = svc.db().begin().await?;
    db::one(
        &txn,
        "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2",
        [contact.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let hash = consent_text.map(|t| crate::crypto::sha256(t.trim().as_bytes()).to_vec());
    record_event(
        &txn,
        actor.organisation_id,
        contact,
        purpose,
        granted,
        ConsentSource::Admin,
        hash,
        actor.user_id(),
        None,
        svc.clock().now(),
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ConsentRecorded)
            .target("contact", contact)
            .detail("purpose", purpose.as_str())
            .detail("granted", granted),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn history(svc: &Services, org: OrganisationId, contact: Uuid) -> ServiceResult<Vec<ConsentEntry>> {
    let rows = db::all(
        svc.db(),
        "SELECT e.purpose, e.granted, e.source, e.occurred_at, e.text_hash, u.email AS actor_email
         FROM consent_event e LEFT JOIN app_user u ON u.id = e.actor_user_id
         WHERE e.organisation_id = $1 AND e.contact_id = $2 ORDER BY e.occurred_at DESC, e.id DESC LIMIT 200",
        [org.0.into(), contact.into()],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsentEntry {
                purpose: ConsentPurpose::parse(&db::get::<String>(r, "purpose")?)
                    .ok_or_else(|| ServiceError::internal("bad purpose"))?,
                granted: db::get(r, "granted")?,
                source: ConsentSource::parse(&db::get::<String>(r, "source")?)
                    .ok_or_else(|| ServiceError::internal("bad source"))?,
                occurred_at: db::get(r, "occurred_at")?,
                actor_email: db::get(r, "actor_email")?,
                text_hash: db::get::<Option<Vec<u8>>>(r, "text_hash")?.map(|h| data_encoding::HEXLOWER.encode(&h)),
            })
        })
        .collect()
}

/// May this contact be mailed for this purpose now? Needs a current grant for the purpose and no
/// suppression of the address.
pub async fn may_mail<C: ConnectionTrait>(
    _svc: &Services,
    conn: &C,
    org: OrganisationId,
    contact: Uuid,
    purpose: ConsentPurpose,
    _now: DateTime<Utc>,
) -> ServiceResult<Decision> {
    let row = db::one(
        conn,
        "SELECT c.id,
                (SELECT granted FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = $3) AS granted,
                (SELECT reason FROM suppression s WHERE s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx) AS suppressed
         FROM contact c WHERE c.id = $1 AND c.organisation_id = $2",
        [contact.into(), org.0.into(), purpose.as_str().into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let granted: Option<bool> = db::get(&row, "granted")?;
    let suppressed: Option<String> = db::get(&row, "suppressed")?;
    Ok(match (suppressed, granted) {
        (Some(_), _) => Decision { allowed: false, reason: "the address is on the suppression list" },
        (None, Some(true)) => Decision { allowed: true, reason: "consent granted" },
        (None, Some(false)) => Decision { allowed: false, reason: "consent withdrawn" },
        (None, None) => Decision { allowed: false, reason: "no consent on record" },
    })
}
