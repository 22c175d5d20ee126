//! Static lists with per-list subscription status, and double opt-in: adding a contact to a
//! double-opt-in list leaves them pending and emails a confirmation link (a single-use token); the
//! confirmation records consent in the ledger.
//!
//! What "unsubscribed" means (one definition, `EFFECTIVE_STATUS`, used by every view of a list):
//! a member is unsubscribed when staff took them off the list (`list_member.status`) **or** their
//! consent for the list's purpose is withdrawn in the consent ledger (an unsubscribe link, the
//! preferences page, a withdrawal staff recorded). The withdrawal is not copied into the member
//! rows: the ledger stays the one source, so its rule holds here too — a later grant from an
//! import or staff changes nothing, and the patient's own consent (double opt-in, preferences
//! page) makes them subscribed again without anyone editing the list.

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::outbox;
use crate::services::Services;
use chrono::Duration;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::contacts::{ConsentPurpose, ConsentSource, ListMembership, ListView, MemberStatus};
use domain::ids::OrganisationId;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const OPTIN_TTL_DAYS: i64 = 7;

/// The job that emails a double opt-in link. Ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptInEmail {
    pub organisation_id: Uuid,
    pub list_id: Uuid,
    pub contact_id: Uuid,
}

impl crate::outbox::Job for OptInEmail {
    const QUEUE: &'static str = crate::outbox::queue::OPTIN_EMAIL;
    const MAX_ATTEMPTS: i32 = 5;
    /// Every request for a confirmation sends one.
    fn idempotency_key(&self) -> Option<String> {
        None
    }
}

fn clean(s: &str, max: usize, field: &str) -> ServiceResult<String> {
    let t = s.trim();
    if t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, format!("must be at most {max} printable characters")));
    }
    Ok(t.to_string())
}

/// A member's status as every view shows it (see the module comment). Needs `list_member m`,
/// `contact_list l` and `CONSENT_JOIN` in the query.
pub(crate) const EFFECTIVE_STATUS: &str = "CASE WHEN m.status = 'pending' THEN 'pending' \
     WHEN m.status = 'unsubscribed' OR cc.granted = false THEN 'unsubscribed' ELSE 'subscribed' END";
/// The current consent for the list's purpose, next to a member row.
pub(crate) const CONSENT_JOIN: &str =
    "LEFT JOIN contact_consent cc ON cc.contact_id = m.contact_id AND cc.purpose = l.purpose";

fn can_see_lists(actor: &Actor) -> ServiceResult<()> {
    if actor.can(Permission::ContactsRead)
        || actor.can(Permission::CampaignsRead)
        || actor.can(Permission::SegmentsCount)
    {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<ListView>> {
    can_see_lists(actor)?;
    #[derive(FromQueryResult)]
    struct Listed {
        id: Uuid,
        name: String,
        description: String,
        double_opt_in: bool,
        purpose: String,
        subscribed: i64,
        pending: i64,
        unsubscribed: i64,
        created_at: chrono::DateTime<chrono::Utc>,
    }
    let rows: Vec<Listed> = db::all_as(
        svc.db(),
        &format!(
            "SELECT l.id, l.name, l.description, l.double_opt_in, l.purpose, l.created_at,
                count(m.contact_id) FILTER (WHERE s.status = 'subscribed') AS subscribed,
                count(m.contact_id) FILTER (WHERE s.status = 'pending') AS pending,
                count(m.contact_id) FILTER (WHERE s.status = 'unsubscribed') AS unsubscribed
         FROM contact_list l LEFT JOIN list_member m ON m.list_id = l.id {CONSENT_JOIN}
         CROSS JOIN LATERAL (SELECT {EFFECTIVE_STATUS} AS status) s
         WHERE l.organisation_id = $1 GROUP BY l.id ORDER BY l.name"
        ),
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ListView {
                id: r.id,
                name: r.name,
                description: r.description,
                double_opt_in: r.double_opt_in,
                purpose: ConsentPurpose::parse(&r.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?,
                subscribed: r.subscribed,
                pending: r.pending,
                unsubscribed: r.unsubscribed,
                created_at: r.created_at,
            })
        })
        .collect()
}

pub async fn create(
    svc: &Services,
    actor: &Actor,
    name: &str,
    description: &str,
    double_opt_in: bool,
    purpose: ConsentPurpose,
) -> ServiceResult<Uuid> {
    actor.require(Permission::ContactsWrite)?;
    let name = clean(name, 100, "name")?;
    if name.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    let description = clean(description, 500, "description")?;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let res = db::exec(
        &txn,
        "INSERT INTO contact_list (id, organisation_id, name, description, double_opt_in, purpose, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        [id.into(), actor.organisation_id.0.into(), name.into(), description.into(), double_opt_in.into(), purpose.as_str().into(), now.into()],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A list with this name already exists."));
        }
        r => r?,
    };
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ListCreated).target("list", id)).await?;
    txn.commit().await?;
    Ok(id)
}

pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "DELETE FROM contact_list WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ListDeleted).target("list", id)).await?;
    txn.commit().await?;
    Ok(())
}

async fn list_row<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    id: Uuid,
) -> ServiceResult<(bool, ConsentPurpose)> {
    use entity::contact_list;
    let l = contact_list::Entity::find_by_id(id)
        .filter(contact_list::Column::OrganisationId.eq(org.0))
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok((l.double_opt_in, ConsentPurpose::parse(&l.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?))
}

/// Add contacts to a list (inside the caller's transaction). Double-opt-in lists leave new members
/// pending and queue the confirmation email. Already subscribed members are left as they are.
pub(crate) async fn add_members<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    list_id: Uuid,
    contacts: &[Uuid],
    source: &str,
) -> ServiceResult<u64> {
    let (doi, _) = list_row(conn, org, list_id).await?;
    let status = if doi { "pending" } else { "subscribed" };
    let now = svc.clock().now();
    let mut added = 0;
    for c in contacts {
        let n = db::exec(
            conn,
            "INSERT INTO list_member (organisation_id, list_id, contact_id, status, source, created_at, updated_at)
             SELECT $1, $2, id, $4, $5, $6, $6 FROM contact WHERE id = $3 AND organisation_id = $1
             ON CONFLICT (list_id, contact_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
             WHERE list_member.status = 'unsubscribed'",
            [org.0.into(), list_id.into(), (*c).into(), status.into(), source.to_string().into(), now.into()],
        )
        .await?;
        if n > 0 && doi {
            outbox::push(conn, &OptInEmail { organisation_id: org.0, list_id, contact_id: *c }).await?;
        }
        added += n;
    }
    Ok(added)
}

/// Staff add contacts to a list.
pub async fn add(svc: &Services, actor: &Actor, list_id: Uuid, contacts: &[Uuid]) -> ServiceResult<u64> {
    actor.require(Permission::ContactsWrite)?;
    if contacts.len() > 10_000 {
        return Err(ServiceError::invalid("contacts", "add at most 10,000 at a time (use an import for more)"));
    }
    let txn = svc.db().begin().await?;
    let n = add_members(svc, &txn, actor.organisation_id, list_id, contacts, "admin").await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ListMembersChanged).target("list", list_id).detail("added", n),
    )
    .await?;
    txn.commit().await?;
    Ok(n)
}

/// Mark a member unsubscribed from one list (the contact stays; other lists are untouched).
pub async fn unsubscribe(svc: &Services, actor: &Actor, list_id: Uuid, contact: Uuid) -> ServiceResult<()> {
    actor.require(Permission::ContactsWrite)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE list_member SET status = 'unsubscribed', updated_at = $4 WHERE list_id = $1 AND contact_id = $2 AND organisation_id = $3",
        [list_id.into(), contact.into(), actor.organisation_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ListMembersChanged)
            .target("list", list_id)
            .detail("unsubscribed", contact.to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn memberships(svc: &Services, org: OrganisationId, contact: Uuid) -> ServiceResult<Vec<ListMembership>> {
    #[derive(FromQueryResult)]
    struct Membership {
        id: Uuid,
        name: String,
        status: String,
        withdrawn: Option<bool>,
    }
    let rows: Vec<Membership> = db::all_as(
        svc.db(),
        &format!(
            "SELECT l.id, l.name, {EFFECTIVE_STATUS} AS status, m.status = 'subscribed' AND cc.granted = false AS withdrawn
             FROM list_member m JOIN contact_list l ON l.id = m.list_id {CONSENT_JOIN}
             WHERE m.organisation_id = $1 AND m.contact_id = $2 ORDER BY l.name"
        ),
        [org.0.into(), contact.into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ListMembership {
                list_id: r.id,
                list_name: r.name,
                status: MemberStatus::parse(&r.status).ok_or_else(|| ServiceError::internal("bad status"))?,
                consent_withdrawn: r.withdrawn.unwrap_or(false),
            })
        })
        .collect()
}

/// Create the single-use confirmation token for a pending member (called by the email job).
pub(crate) async fn new_optin_token(
    svc: &Services,
    org: OrganisationId,
    list_id: Uuid,
    contact: Uuid,
) -> ServiceResult<String> {
    let token = crate::crypto::random_token()?;
    let now = svc.clock().now();
    entity::optin_token::Entity::insert(entity::optin_token::ActiveModel {
        token_hash: Set(crate::crypto::sha256(token.as_bytes()).to_vec()),
        organisation_id: Set(org.0),
        list_id: Set(list_id),
        contact_id: Set(contact),
        created_at: Set(now),
        expires_at: Set(now + Duration::days(OPTIN_TTL_DAYS)),
        used_at: NotSet,
    })
    .exec_without_returning(svc.db())
    .await?;
    Ok(token)
}

/// What the confirmation page shows before the button is pressed (no PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptInInfo {
    pub organisation_name: String,
    pub list_name: String,
    pub purpose: ConsentPurpose,
}

async fn optin_row<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    token: &str,
    lock: bool,
) -> ServiceResult<(Vec<u8>, OrganisationId, Uuid, Uuid, OptInInfo)> {
    if token.is_empty() || token.len() > 128 {
        return Err(ServiceError::invalid("link", "is not valid"));
    }
    let hash = crate::crypto::sha256(token.as_bytes()).to_vec();
    #[derive(FromQueryResult)]
    struct Token {
        organisation_id: Uuid,
        list_id: Uuid,
        contact_id: Uuid,
        list_name: String,
        purpose: String,
        org_name: String,
    }
    let row: Token = db::one_as(
        conn,
        &format!(
            "SELECT t.organisation_id, t.list_id, t.contact_id, l.name AS list_name, l.purpose, o.name AS org_name
             FROM optin_token t JOIN contact_list l ON l.id = t.list_id JOIN organisation o ON o.id = t.organisation_id
             WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2{}",
            if lock { " FOR UPDATE OF t" } else { "" }
        ),
        [hash.clone().into(), svc.clock().now().into()],
    )
    .await?
    .ok_or_else(|| ServiceError::invalid("link", "is not valid or has expired"))?;
    Ok((
        hash,
        OrganisationId(row.organisation_id),
        row.list_id,
        row.contact_id,
        OptInInfo {
            organisation_name: row.org_name,
            list_name: row.list_name,
            purpose: ConsentPurpose::parse(&row.purpose).ok_or_else(|| ServiceError::internal("bad purpose"))?,
        },
    ))
}

pub async fn optin_info(svc: &Services, token: &str) -> ServiceResult<OptInInfo> {
    Ok(optin_row(svc, svc.db(), token, false).await?.4)
}

/// The person confirms: subscribed, consent granted (source double opt-in), audited.
pub async fn confirm_optin(svc: &Services, token: &str, ip: Option<String>) -> ServiceResult<OptInInfo> {
    let txn = svc.db().begin().await?;
    let (hash, org, list_id, contact, info) = optin_row(svc, &txn, token, true).await?;
    let now = svc.clock().now();
    db::exec(&txn, "UPDATE optin_token SET used_at = $2 WHERE token_hash = $1", [hash.into(), now.into()]).await?;
    db::exec(
        &txn,
        "UPDATE list_member SET status = 'subscribed', confirmed_at = $3, updated_at = $3 WHERE list_id = $1 AND contact_id = $2",
        [list_id.into(), contact.into(), now.into()],
    )
    .await?;
    super::consent::record_event(
        &txn,
        org,
        contact,
        info.purpose,
        true,
        ConsentSource::DoubleOptIn,
        None,
        None,
        None,
        now,
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(Some(org), AuditActor::Anonymous, AuditAction::OptInConfirmed, AuditOutcome::Success)
            .target("contact", contact)
            .detail("list", list_id.to_string())
            .ip(ip),
    )
    .await?;
    txn.commit().await?;
    Ok(info)
}

/// Email a pending member their confirmation link (the `optin-email` job). Does nothing when the
/// member is no longer pending or the address is suppressed.
pub async fn send_optin(svc: &Services, job: &OptInEmail) -> ServiceResult<crate::mail::SendOutcome> {
    use crate::mail::SendOutcome;
    use crate::outbound::Outgoing;
    let org = OrganisationId(job.organisation_id);
    #[derive(FromQueryResult)]
    struct Pending {
        status: String,
        list_name: String,
        org_name: String,
        email: Vec<u8>,
        suppressed: bool,
    }
    let row: Option<Pending> = db::one_as(
        svc.db(),
        "SELECT m.status, l.name AS list_name, o.name AS org_name, c.email, c.email_bidx,
                EXISTS (SELECT 1 FROM suppression s WHERE s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx) AS suppressed
         FROM list_member m JOIN contact_list l ON l.id = m.list_id JOIN organisation o ON o.id = m.organisation_id
         JOIN contact c ON c.id = m.contact_id
         WHERE m.list_id = $1 AND m.contact_id = $2 AND m.organisation_id = $3",
        [job.list_id.into(), job.contact_id.into(), org.0.into()],
    )
    .await?;
    let Some(row) = row else { return Ok(SendOutcome::Rejected("the member no longer exists".into())) };
    if row.status != "pending" {
        return Ok(SendOutcome::Accepted("already confirmed or unsubscribed".into()));
    }
    if row.suppressed {
        return Ok(SendOutcome::Rejected("the address is suppressed".into()));
    }
    let sealed = crate::crypto::seal::Sealed::from_bytes(row.email)?;
    let aad = crate::crypto::seal::Aad {
        organisation: org,
        table: super::record::TABLE,
        column: "email",
        row: job.contact_id,
    };
    let email = String::from_utf8(svc.keys().open(svc.db(), &aad, &sealed).await?.to_vec())
        .map_err(|_| ServiceError::internal("email"))?;
    let token = new_optin_token(svc, org, job.list_id, job.contact_id).await?;
    let url = format!("{}/optin#{token}", svc.settings().public_url.trim_end_matches('/'));
    let (list, org_name) = (row.list_name, row.org_name);
    let text = format!(
        "Hello,\n\nPlease confirm that you want to receive email from {org_name} ({list}).\n\nConfirm: {url}\n\n\
         If you did not ask for this, ignore this message and you will not be subscribed.\n"
    );
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let html = format!(
        "<p>Hello,</p><p>Please confirm that you want to receive email from {} ({}).</p>\
         <p><a href=\"{}\">Confirm my subscription</a></p><p>If you did not ask for this, ignore this message and you will not be subscribed.</p>",
        esc(&org_name),
        esc(&list),
        esc(&url)
    );
    crate::outbound::send_system(
        svc,
        Outgoing {
            organisation: org,
            to: domain::Phi::new(email),
            // The subject names no list: a list's name can itself say something about someone's health.
            subject: format!("Please confirm your subscription — {org_name}"),
            text: domain::Phi::new(text),
            html: Some(domain::Phi::new(html)),
        },
    )
    .await
}
