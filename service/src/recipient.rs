//! What a recipient can do from the system links in a message, without signing in: unsubscribe
//! (a confirmation page, and RFC 8058 one-click POST) and set their preferences per purpose.
//!
//! The token is the only credential. A GET never changes anything (mail scanners fetch every link);
//! changes happen on POST. Links from a staff member's test send open the same pages but change
//! nothing. Every change is a consent-ledger event and an audit row, in one transaction.

use crate::audit::{self, AuditActor, AuditRecord};
use crate::contacts::consent;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::links::{self, LinkClaims, LinkKind, LinkSubject};
use crate::services::Services;
use domain::audit::{AuditAction, AuditOutcome};
use domain::contacts::{ConsentPurpose, ConsentSource};
use sea_orm::TransactionTrait;

/// What the recipient's page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientPage {
    pub organisation_name: String,
    /// The link came from a test send: nothing will change.
    pub test: bool,
    /// Current consent per purpose (contacts only).
    pub purposes: Vec<(ConsentPurpose, bool)>,
}

async fn page_for(svc: &Services, claims: &LinkClaims) -> ServiceResult<RecipientPage> {
    let org = claims.organisation;
    let name: String =
        db::one(svc.db(), "SELECT name FROM organisation WHERE id = $1 AND deleted_at IS NULL", [org.0.into()])
            .await?
            .map(|r| db::get(&r, "name"))
            .transpose()?
            .ok_or(ServiceError::NotFound)?;
    match claims.subject {
        LinkSubject::Test { .. } => Ok(RecipientPage { organisation_name: name, test: true, purposes: vec![] }),
        LinkSubject::Contact { contact, .. } => {
            db::one(
                svc.db(),
                "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2",
                [contact.into(), org.0.into()],
            )
            .await?
            .ok_or(ServiceError::NotFound)?;
            let mut purposes = Vec::new();
            for p in ConsentPurpose::ALL {
                purposes.push((p, consent_granted(svc.db(), contact, p).await?));
            }
            Ok(RecipientPage { organisation_name: name, test: false, purposes })
        }
    }
}

/// Whether the contact's current consent for the purpose is a grant.
async fn consent_granted<C: sea_orm::ConnectionTrait>(
    conn: &C,
    contact: uuid::Uuid,
    purpose: ConsentPurpose,
) -> ServiceResult<bool> {
    Ok(db::one(
        conn,
        "SELECT granted FROM contact_consent WHERE contact_id = $1 AND purpose = $2",
        [contact.into(), purpose.as_str().into()],
    )
    .await?
    .map(|r| db::get::<bool>(&r, "granted"))
    .transpose()?
    .unwrap_or(false))
}

/// The page behind an unsubscribe or preferences link (changes nothing).
pub async fn page(svc: &Services, kind: LinkKind, token: &str) -> ServiceResult<RecipientPage> {
    let claims = links::open(svc, kind, token, svc.clock().now()).await?;
    page_for(svc, &claims).await
}

/// Record a recipient's choice for one purpose. `via` is the link kind the token was made for.
async fn set(
    svc: &Services,
    kind: LinkKind,
    token: &str,
    purpose: ConsentPurpose,
    granted: bool,
    ip: Option<String>,
) -> ServiceResult<RecipientPage> {
    let now = svc.clock().now();
    let claims = links::open(svc, kind, token, now).await?;
    let LinkSubject::Contact { contact, message } = claims.subject else {
        return page_for(svc, &claims).await;
    };
    let org = claims.organisation;
    let txn = svc.db().begin().await?;
    db::one(
        &txn,
        "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2 FOR UPDATE",
        [contact.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let current = consent_granted(&txn, contact, purpose).await?;
    if current != granted {
        let source = if granted { ConsentSource::Form } else { ConsentSource::Unsubscribe };
        consent::record_event(&txn, org, contact, purpose, granted, source, None, None, None, now).await?;
        let action = if granted { AuditAction::ConsentGrantedByRecipient } else { AuditAction::RecipientUnsubscribed };
        audit::record(
            svc,
            &txn,
            AuditRecord::new(Some(org), AuditActor::Anonymous, action, AuditOutcome::Success)
                .target("contact", contact)
                .ip(ip)
                .detail("purpose", purpose.as_str())
                .detail("message", message.to_string())
                .detail("via", kind.name()),
        )
        .await?;
        if !granted {
            // A campaign message's link: count the unsubscribe in that campaign's report.
            db::exec(
                &txn,
                "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id)
                 SELECT d.organisation_id, d.contact_id, d.campaign_id, 'unsubscribed', false, $3, d.id
                 FROM delivery d WHERE d.id = $1 AND d.contact_id = $2 AND d.organisation_id = $4",
                [message.into(), contact.into(), now.into(), org.0.into()],
            )
            .await?;
        }
    }
    txn.commit().await?;
    page_for(svc, &claims).await
}

/// Unsubscribe from marketing email: the confirmation page's button and RFC 8058 one-click POST.
/// A campaign message unsubscribes from its campaign's purpose; other links from marketing.
pub async fn unsubscribe(svc: &Services, token: &str, ip: Option<String>) -> ServiceResult<RecipientPage> {
    let claims = links::open(svc, LinkKind::Unsubscribe, token, svc.clock().now()).await?;
    let purpose = match claims.subject {
        LinkSubject::Contact { contact, message } => db::one(
            svc.db(),
            "SELECT c.settings->>'purpose' AS purpose FROM delivery d JOIN campaign c ON c.id = d.campaign_id
             WHERE d.id = $1 AND d.contact_id = $2 AND d.organisation_id = $3",
            [message.into(), contact.into(), claims.organisation.0.into()],
        )
        .await?
        .map(|r| db::get::<Option<String>>(&r, "purpose"))
        .transpose()?
        .flatten()
        .and_then(|p| ConsentPurpose::parse(&p))
        .unwrap_or(ConsentPurpose::Marketing),
        LinkSubject::Test { .. } => ConsentPurpose::Marketing,
    };
    set(svc, LinkKind::Unsubscribe, token, purpose, false, ip).await
}

/// A choice on the preferences page.
pub async fn set_preference(
    svc: &Services,
    token: &str,
    purpose: ConsentPurpose,
    granted: bool,
    ip: Option<String>,
) -> ServiceResult<RecipientPage> {
    set(svc, LinkKind::Preferences, token, purpose, granted, ip).await
}
