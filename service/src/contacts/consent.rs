//! The consent ledger: append-only events (a trigger refuses changes) plus a current-state table
//! kept in step within the same transaction. `may_mail` is the one answer to "may this contact be
//! mailed for this purpose now".
//!
//! The rule every source goes through (`APPLY_SQL`, one statement for one contact or a batch):
//! - a withdrawal always applies at once, whoever records it: stopping mail is always safe;
//! - a withdrawal then holds. A later grant lifts it only when the patient made it themself (a
//!   confirmed double opt-in, the preferences page: `ConsentSource::is_patients_own`) and it is
//!   not older than the withdrawal. A grant from an import, a staff member or an integration is
//!   recorded in the ledger as what it was, marked `effective = false`, and changes nothing;
//! - withdrawals outlive the contact: deleting a contact keeps them under its email's blind index
//!   (`consent_withdrawal_kept`), and a contact created again with that address starts withdrawn.
//!
//! The decision is taken by PostgreSQL on the locked current-state row (`ON CONFLICT … DO UPDATE
//! … WHERE`), so a grant racing a withdrawal can never overwrite it.

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db::{self, sqlx_err};
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{ConsentEntry, ConsentOutcome, ConsentPurpose, ConsentSource, Withdrawal};
use domain::ids::{OrganisationId, UserId};
use sea_orm::sqlx;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, TransactionTrait};
use uuid::Uuid;

/// The answer, with the reason in words for the UI and the audit of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: &'static str,
}

/// One consent decision, for one contact or a batch of them.
#[derive(Debug, Clone)]
pub struct Event {
    pub organisation: OrganisationId,
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub source: ConsentSource,
    /// SHA-256 of the consent wording the person agreed to.
    pub text_hash: Option<Vec<u8>>,
    pub actor_user: Option<UserId>,
    pub import_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Contacts the event was recorded for (one ledger row each).
    pub recorded: u64,
    /// Grants recorded but not applied: the contact's withdrawal holds.
    pub kept_withdrawn: u64,
}

/// Record the event for every contact in `$2` and apply the rule above. Parameters: $1 org,
/// $2 contacts, $3 purpose, $4 granted, $5 source, $6 text hash, $7 time, $8 actor user,
/// $9 import, $10 whether the source is the patient's own.
const APPLY_SQL: &str = "
WITH input AS (SELECT DISTINCT unnest($2::uuid[]) AS contact_id),
applied AS (
    INSERT INTO contact_consent (organisation_id, contact_id, purpose, granted, updated_at, withdrawn_at, withdrawn_source)
    SELECT $1, contact_id, $3, $4, $7, CASE WHEN $4 THEN NULL ELSE $7::timestamptz END, CASE WHEN $4 THEN NULL ELSE $5::text END
    FROM input
    ON CONFLICT (contact_id, purpose) DO UPDATE
        SET granted = EXCLUDED.granted, updated_at = EXCLUDED.updated_at,
            withdrawn_at = EXCLUDED.withdrawn_at, withdrawn_source = EXCLUDED.withdrawn_source
        WHERE NOT EXCLUDED.granted
           OR contact_consent.withdrawn_at IS NULL
           OR ($10 AND EXCLUDED.updated_at >= contact_consent.withdrawn_at)
    RETURNING contact_id),
ledger AS (
    INSERT INTO consent_event (organisation_id, contact_id, purpose, granted, source, text_hash, occurred_at, actor_user_id, import_id, effective)
    SELECT $1, i.contact_id, $3, $4, $5, $6, $7, $8, $9, a.contact_id IS NOT NULL
    FROM input i LEFT JOIN applied a ON a.contact_id = i.contact_id)
SELECT count(*) AS recorded, count(*) FILTER (WHERE a.contact_id IS NULL) AS kept
FROM input i LEFT JOIN applied a ON a.contact_id = i.contact_id";

/// Record a consent event for contacts of `ev.organisation` (inside the caller's transaction).
pub async fn apply<C: ConnectionTrait>(conn: &C, ev: &Event, contacts: &[Uuid]) -> ServiceResult<Applied> {
    let row: Counted = db::one_as(
        conn,
        APPLY_SQL,
        [
            ev.organisation.0.into(),
            contacts.to_vec().into(),
            ev.purpose.as_str().into(),
            ev.granted.into(),
            ev.source.as_str().into(),
            ev.text_hash.clone().into(),
            ev.occurred_at.into(),
            ev.actor_user.map(|u| u.0).into(),
            ev.import_id.into(),
            ev.source.is_patients_own().into(),
        ],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("consent statement returned nothing"))?;
    applied_from(row.recorded, row.kept)
}

/// What `APPLY_SQL` returns.
#[derive(FromQueryResult)]
struct Counted {
    recorded: i64,
    kept: i64,
}

/// `apply` on a raw connection (the import writer's COPY transaction).
pub(crate) async fn apply_on(conn: &mut sqlx::PgConnection, ev: &Event, contacts: &[Uuid]) -> ServiceResult<Applied> {
    // sqlx reads the two counts by position: `SELECT … AS recorded, … AS kept`.
    let (recorded, kept): (i64, i64) = sqlx::query_as(APPLY_SQL)
        .bind(ev.organisation.0)
        .bind(contacts)
        .bind(ev.purpose.as_str())
        .bind(ev.granted)
        .bind(ev.source.as_str())
        .bind(ev.text_hash.clone())
        .bind(ev.occurred_at)
        .bind(ev.actor_user.map(|u| u.0))
        .bind(ev.import_id)
        .bind(ev.source.is_patients_own())
        .fetch_one(conn)
        .await
        .map_err(sqlx_err)?;
    applied_from(recorded, kept)
}

fn applied_from(recorded: i64, kept: i64) -> ServiceResult<Applied> {
    Ok(Applied { recorded: recorded.max(0) as u64, kept_withdrawn: kept.max(0) as u64 })
}

/// Record one consent event for one contact (inside the caller's transaction).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_event<C: ConnectionTrait>(
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
) -> ServiceResult<Applied> {
    let ev = Event { organisation: org, purpose, granted, source, text_hash, actor_user, import_id, occurred_at: now };
    apply(conn, &ev, &[contact]).await
}

/// Before a contact is deleted (same transaction): keep its withdrawals under its email's blind
/// index, and forget kept withdrawals its later grants (the patient's own) superseded.
pub(crate) async fn keep_withdrawals<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    contact: Uuid,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "DELETE FROM consent_withdrawal_kept k USING contact c, contact_consent cc
         WHERE c.id = $1 AND c.organisation_id = $2 AND k.organisation_id = c.organisation_id AND k.email_bidx = c.email_bidx
           AND cc.contact_id = c.id AND cc.purpose = k.purpose AND cc.granted",
        [contact.into(), org.0.into()],
    )
    .await?;
    db::exec(
        conn,
        "INSERT INTO consent_withdrawal_kept (organisation_id, email_bidx, purpose, withdrawn_at, source)
         SELECT c.organisation_id, c.email_bidx, cc.purpose, cc.withdrawn_at, cc.withdrawn_source
         FROM contact c JOIN contact_consent cc ON cc.contact_id = c.id
         WHERE c.id = $1 AND c.organisation_id = $2 AND NOT cc.granted
         ON CONFLICT (organisation_id, email_bidx, purpose) DO UPDATE
            SET withdrawn_at = EXCLUDED.withdrawn_at, source = EXCLUDED.source
            WHERE EXCLUDED.withdrawn_at >= consent_withdrawal_kept.withdrawn_at",
        [contact.into(), org.0.into()],
    )
    .await?;
    Ok(())
}

/// After contacts are created (same transaction): an address whose earlier contact withdrew
/// starts withdrawn, and the ledger says so (the original withdrawal's time and source).
const CARRY_SQL: &str = "
WITH carried AS (
    INSERT INTO contact_consent (organisation_id, contact_id, purpose, granted, updated_at, withdrawn_at, withdrawn_source)
    SELECT c.organisation_id, c.id, k.purpose, false, $3, k.withdrawn_at, k.source
    FROM contact c JOIN consent_withdrawal_kept k ON k.organisation_id = c.organisation_id AND k.email_bidx = c.email_bidx
    WHERE c.organisation_id = $1 AND c.id = ANY($2)
    ON CONFLICT (contact_id, purpose) DO NOTHING
    RETURNING contact_id, purpose, withdrawn_at, withdrawn_source)
INSERT INTO consent_event (organisation_id, contact_id, purpose, granted, source, occurred_at, effective)
SELECT $1, contact_id, purpose, false, COALESCE(withdrawn_source, 'unsubscribe'), withdrawn_at, true FROM carried";

pub(crate) async fn carry_withdrawals<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    created: &[Uuid],
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    db::exec(conn, CARRY_SQL, [org.0.into(), created.to_vec().into(), now.into()]).await?;
    Ok(())
}

pub(crate) async fn carry_withdrawals_on(
    conn: &mut sqlx::PgConnection,
    org: OrganisationId,
    created: &[Uuid],
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    sqlx::query(CARRY_SQL).bind(org.0).bind(created).bind(now).execute(conn).await.map_err(sqlx_err)?;
    Ok(())
}

/// Staff record a consent decision they obtained (for example on a signed form). A withdrawal
/// applies at once; a grant does not lift a withdrawal in force (only the patient can), and the
/// answer says so.
pub async fn record(
    svc: &Services,
    actor: &Actor,
    contact: Uuid,
    purpose: ConsentPurpose,
    granted: bool,
    consent_text: Option<&str>,
) -> ServiceResult<ConsentOutcome> {
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
    let applied = record_event(
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
    let effective = applied.kept_withdrawn == 0;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ConsentRecorded)
            .target("contact", contact)
            .detail("purpose", purpose.as_str())
            .detail("granted", granted)
            .detail("applied", effective),
    )
    .await?;
    txn.commit().await?;
    Ok(if effective {
        ConsentOutcome {
            applied: true,
            message: format!("{} consent {}.", purpose.label(), if granted { "recorded" } else { "withdrawn" }),
        }
    } else {
        ConsentOutcome {
            applied: false,
            message: format!(
                "Recorded in the history, but not applied: consent for {} was withdrawn, and only the patient can consent again — for example by confirming the email they get when you add them to a double opt-in list for this purpose.",
                purpose.label().to_lowercase()
            ),
        }
    })
}

pub async fn history(svc: &Services, org: OrganisationId, contact: Uuid) -> ServiceResult<Vec<ConsentEntry>> {
    #[derive(FromQueryResult)]
    struct Entry {
        purpose: String,
        granted: bool,
        source: String,
        occurred_at: DateTime<Utc>,
        text_hash: Option<Vec<u8>>,
        effective: bool,
        actor_email: Option<String>,
    }
    let rows: Vec<Entry> = db::all_as(
        svc.db(),
        "SELECT e.purpose, e.granted, e.source, e.occurred_at, e.text_hash, e.effective, u.email AS actor_email
         FROM consent_event e LEFT JOIN app_user u ON u.id = e.actor_user_id
         WHERE e.organisation_id = $1 AND e.contact_id = $2 ORDER BY e.occurred_at DESC, e.id DESC LIMIT 200",
        [org.0.into(), contact.into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ConsentEntry {
                purpose: ConsentPurpose::parse(&r.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?,
                granted: r.granted,
                source: ConsentSource::parse(&r.source).ok_or_else(|| ServiceError::internal("bad source"))?,
                occurred_at: r.occurred_at,
                actor_email: r.actor_email,
                text_hash: r.text_hash.map(|h| data_encoding::HEXLOWER.encode(&h)),
                effective: r.effective,
            })
        })
        .collect()
}

/// The withdrawals in force for a contact.
pub async fn withdrawals(svc: &Services, org: OrganisationId, contact: Uuid) -> ServiceResult<Vec<Withdrawal>> {
    use entity::contact_consent::{Column, Entity};
    let rows = Entity::find()
        .filter(Column::OrganisationId.eq(org.0))
        .filter(Column::ContactId.eq(contact))
        .filter(Column::Granted.eq(false))
        .order_by_asc(Column::Purpose)
        .all(svc.db())
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Withdrawal {
                purpose: ConsentPurpose::parse(&r.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?,
                withdrawn_at: r.withdrawn_at.ok_or_else(|| ServiceError::internal("withdrawal without a time"))?,
                source: r.withdrawn_source.and_then(|s| ConsentSource::parse(&s)),
            })
        })
        .collect()
}

/// May this contact be mailed for this purpose now? Needs a current grant for the purpose and no
/// suppression of the address; for `transactional`, no grant (`domain::contacts::transactional_refusal`).
pub async fn may_mail<C: ConnectionTrait>(
    _svc: &Services,
    conn: &C,
    org: OrganisationId,
    contact: Uuid,
    purpose: ConsentPurpose,
    _now: DateTime<Utc>,
) -> ServiceResult<Decision> {
    #[derive(FromQueryResult)]
    struct State {
        granted: Option<bool>,
        withdrawn_source: Option<String>,
        suppressed: Option<String>,
    }
    let row: State = db::one_as(
        conn,
        "SELECT c.id, cc.granted, cc.withdrawn_source,
                (SELECT reason FROM suppression s WHERE s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx) AS suppressed
         FROM contact c LEFT JOIN contact_consent cc ON cc.contact_id = c.id AND cc.purpose = $3
         WHERE c.id = $1 AND c.organisation_id = $2",
        [contact.into(), org.0.into(), purpose.as_str().into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let (granted, suppressed) = (row.granted, row.suppressed);
    // Transactional mail needs no grant, only the absence of a withdrawal and a suppression.
    if purpose == ConsentPurpose::Transactional && suppressed.is_none() && granted.is_none() {
        return Ok(Decision { allowed: true, reason: "transactional messages need no grant" });
    }
    let by_patient =
        row.withdrawn_source.and_then(|s| ConsentSource::parse(&s)).is_some_and(ConsentSource::is_patients_own);
    Ok(match (suppressed, granted) {
        (Some(_), _) => Decision { allowed: false, reason: "the address is on the suppression list" },
        (None, Some(true)) => Decision { allowed: true, reason: "consent granted" },
        (None, Some(false)) if by_patient => {
            Decision { allowed: false, reason: "the patient withdrew consent; only the patient can consent again" }
        }
        (None, Some(false)) => {
            Decision { allowed: false, reason: "consent withdrawn; only the patient can consent again" }
        }
        (None, None) => Decision { allowed: false, reason: "no consent on record" },
    })
}
