//! The dev mailbox: without a relay, messages are captured here, sealed per organisation
//! (recipient, subject and the raw message each under the organisation's data key). Reading one
//! is a PHI read: by an actor, audited.

use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Phi;
use domain::ids::OrganisationId;
use uuid::Uuid;

fn capture_aad(org: OrganisationId, column: &'static str, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "dev_mailbox", column, row: id }
}

/// Keep a message in the organisation's dev mailbox, sealed (recipient, subject and the raw
/// message each under the organisation's data key).
pub async fn capture(
    svc: &Services,
    organisation: OrganisationId,
    raw: &[u8],
    to: &str,
    subject: &str,
) -> ServiceResult<()> {
    let id = Uuid::now_v7();
    let key = svc
        .keys()
        .active_key(svc.db(), svc.clock(), Some(organisation), crate::crypto::keyring::KeyPurpose::Data)
        .await?;
    let seal = |column: &'static str, v: &[u8]| key.seal(&capture_aad(organisation, column, id), v);
    let recipient = seal("recipient", to.as_bytes())?;
    let subject = seal("subject", subject.as_bytes())?;
    let body = seal("message", raw)?;
    db::exec(
        svc.db(),
        "INSERT INTO dev_mailbox (id, organisation_id, created_at, recipient, subject, message) VALUES ($1, $2, $3, $4, $5, $6)",
        [id.into(), organisation.0.into(), svc.clock().now().into(), recipient.into_bytes().into(), subject.into_bytes().into(), body.into_bytes().into()],
    )
    .await?;
    Ok(())
}

/// A captured message, decrypted for the dev mailbox page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Captured {
    pub id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub recipient: Phi<String>,
    pub subject: Phi<String>,
    pub raw: Phi<String>,
}

/// A captured message as stored (each PHI column sealed).
#[derive(sea_orm::FromQueryResult)]
struct Stored {
    id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
    recipient: Vec<u8>,
    subject: Vec<u8>,
    message: Vec<u8>,
}

/// The newest `limit` messages, opened whole: an audited PHI read (one row for the lot), for an
/// actor who manages settings.
pub async fn captured(svc: &Services, actor: &crate::Actor, limit: i64) -> ServiceResult<Vec<Captured>> {
    actor.require(domain::Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let rows = db::all_as::<Stored, _>(
        svc.db(),
        "SELECT id, created_at, recipient, subject, message FROM dev_mailbox WHERE organisation_id = $1 ORDER BY created_at DESC LIMIT $2",
        [org.0.into(), limit.into()],
    )
    .await?;
    crate::audit::record_now(
        svc,
        crate::audit::AuditRecord::by(actor, domain::audit::AuditAction::DevMailboxViewed)
            .detail("messages", rows.len()),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r.id;
        let open = |column: &'static str, b: Vec<u8>| async move {
            let plain = svc.keys().open(svc.db(), &capture_aad(org, column, id), &Sealed::from_bytes(b)?).await?;
            Ok::<String, ServiceError>(String::from_utf8_lossy(&plain).into_owned())
        };
        out.push(Captured {
            id,
            created_at: r.created_at,
            recipient: Phi::new(open("recipient", r.recipient).await?),
            subject: Phi::new(open("subject", r.subject).await?),
            raw: Phi::new(open("message", r.message).await?),
        });
    }
    Ok(out)
}

/// The HTML part of one captured message, for the dev mailbox's sandboxed frame. It can hold PHI,
/// so it is audited — but as part of opening the message: when the same user's opening of this
/// message was audited in the last `OPEN_WINDOW` (the page that holds the frame), the frame adds
/// no row of its own; requested on its own, it writes one.
pub async fn captured_html(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<String> {
    actor.require(domain::Permission::SettingsManage)?;
    let plain = open_message(svc, actor.organisation_id, id).await?;
    if !recently_opened(svc, actor, id).await? {
        audit_open(svc, actor, id).await?;
    }
    let parts = super::mime::parse(&String::from_utf8_lossy(&plain));
    Ok(parts.html.unwrap_or_else(|| "<p>This message has no HTML part.</p>".into()))
}

/// How long an audited opening of a message covers its HTML frame.
const OPEN_WINDOW_MINUTES: i64 = 10;

async fn open_message(svc: &Services, org: OrganisationId, id: Uuid) -> ServiceResult<zeroize::Zeroizing<Vec<u8>>> {
    #[derive(sea_orm::FromQueryResult)]
    struct Message {
        message: Vec<u8>,
    }
    let r = db::one_as::<Message, _>(
        svc.db(),
        "SELECT message FROM dev_mailbox WHERE id = $1 AND organisation_id = $2",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    svc.keys().open(svc.db(), &capture_aad(org, "message", id), &Sealed::from_bytes(r.message)?).await
}

async fn recently_opened(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<bool> {
    let Some(user) = actor.user_id() else { return Ok(false) };
    let since = svc.clock().now() - chrono::Duration::minutes(OPEN_WINDOW_MINUTES);
    Ok(db::one_as::<db::Count, _>(
        svc.db(),
        "SELECT 1::int8 AS n FROM audit_event WHERE organisation_id = $1 AND actor_user_id = $2 AND action = $3
           AND target_kind = 'dev_mailbox' AND target_id = $4 AND occurred_at > $5 LIMIT 1",
        [
            actor.organisation_id.0.into(),
            user.0.into(),
            domain::audit::AuditAction::DevMailboxViewed.code().into(),
            id.to_string().into(),
            since.into(),
        ],
    )
    .await?
    .is_some())
}

async fn audit_open(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<()> {
    crate::audit::record_now(
        svc,
        crate::audit::AuditRecord::by(actor, domain::audit::AuditAction::DevMailboxViewed).target("dev_mailbox", id),
    )
    .await
}

/// One line of the dev mailbox's list: only the recipient and subject are opened for it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CapturedSummary {
    pub id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub recipient: Phi<String>,
    /// Decoded for reading (captures made by the SMTP listener stored it as it came, RFC 2047).
    pub subject: Phi<String>,
}

/// A page of the dev mailbox, newest first (`page` counts from 1), and the number of messages.
/// Recipients are PHI: one audit row per page viewed.
pub async fn captured_page(
    svc: &Services,
    actor: &crate::Actor,
    page: u32,
    per_page: u32,
) -> ServiceResult<(Vec<CapturedSummary>, i64)> {
    actor.require(domain::Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let per_page = per_page.clamp(1, 100);
    let offset = i64::from(page.clamp(1, 100_000) - 1) * i64::from(per_page);
    #[derive(sea_orm::FromQueryResult)]
    struct Line {
        id: Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
        recipient: Vec<u8>,
        subject: Vec<u8>,
    }
    let total: i64 = db::one_as::<db::Count, _>(
        svc.db(),
        "SELECT count(*) AS n FROM dev_mailbox WHERE organisation_id = $1",
        [org.0.into()],
    )
    .await?
    .map(|r| r.n)
    .unwrap_or(0);
    let rows = db::all_as::<Line, _>(
        svc.db(),
        "SELECT id, created_at, recipient, subject FROM dev_mailbox WHERE organisation_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        [org.0.into(), i64::from(per_page).into(), offset.into()],
    )
    .await?;
    crate::audit::record_now(
        svc,
        crate::audit::AuditRecord::by(actor, domain::audit::AuditAction::DevMailboxViewed)
            .detail("page", page)
            .detail("messages", rows.len()),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r.id;
        let open = |column: &'static str, b: Vec<u8>| async move {
            let plain = svc.keys().open(svc.db(), &capture_aad(org, column, id), &Sealed::from_bytes(b)?).await?;
            Ok::<String, ServiceError>(String::from_utf8_lossy(&plain).into_owned())
        };
        out.push(CapturedSummary {
            id,
            created_at: r.created_at,
            recipient: Phi::new(open("recipient", r.recipient).await?),
            subject: Phi::new(super::mime::decode_header(&open("subject", r.subject).await?)),
        });
    }
    Ok((out, total))
}

/// One captured message, opened (an audited PHI read: one row per opening; its HTML frame is
/// covered by it).
pub async fn captured_one(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<Captured> {
    actor.require(domain::Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let r = db::one_as::<Stored, _>(
        svc.db(),
        "SELECT id, created_at, recipient, subject, message FROM dev_mailbox WHERE id = $1 AND organisation_id = $2",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    audit_open(svc, actor, id).await?;
    let open = |column: &'static str, b: Vec<u8>| async move {
        let plain = svc.keys().open(svc.db(), &capture_aad(org, column, id), &Sealed::from_bytes(b)?).await?;
        Ok::<String, ServiceError>(String::from_utf8_lossy(&plain).into_owned())
    };
    Ok(Captured {
        id,
        created_at: r.created_at,
        recipient: Phi::new(open("recipient", r.recipient).await?),
        subject: Phi::new(super::mime::decode_header(&open("subject", r.subject).await?)),
        raw: Phi::new(open("message", r.message).await?),
    })
}
