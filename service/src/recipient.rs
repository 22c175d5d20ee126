//! What a recipient can do from the system links in a message, without signing in: unsubscribe
//! (a confirmation page, and RFC 8058 one-click POST) and set their preferences per purpose.
//!
//! An unsubscribe link withdraws exactly the purpose its message was sent under (a campaign's
//! consent purpose); the page names that purpose and offers "everything" (every purpose, care
//! communications included) as a separate choice. A link whose message cannot be attributed to a
//! purpose withdraws every purpose: when in doubt, the patient's "stop" wins.
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
    /// The purpose the message was sent under (a campaign's purpose). `None` when the message
    /// cannot be attributed: its unsubscribe link then covers every purpose.
    pub message_purpose: Option<ConsentPurpose>,
}

impl RecipientPage {
    pub fn granted(&self, purpose: ConsentPurpose) -> bool {
        self.purposes.iter().any(|(p, g)| *p == purpose && *g)
    }
}

/// What an unsubscribe withdraws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeScope {
    /// The purpose the message was sent under (RFC 8058 one-click and the page's main button).
    Message,
    /// Every purpose: the patient asked to receive no more email from the organisation.
    Everything,
}

/// A choice on the preferences page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    Purpose(ConsentPurpose),
    /// Only as a withdrawal: a blanket grant is not offered (each purpose is its own choice).
    Everything,
}

/// The purpose a message was sent under: a campaign delivery's campaign purpose.
async fn message_purpose(svc: &Services, claims: &LinkClaims) -> ServiceResult<Option<ConsentPurpose>> {
    let LinkSubject::Contact { contact, message } = claims.subject else { return Ok(None) };
    Ok(db::scalar::<Option<String>, _>(
        svc.db(),
        "SELECT CASE d.source WHEN 'api_message' THEN 'transactional' ELSE c.settings->>'purpose' END AS purpose
         FROM delivery d LEFT JOIN campaign c ON c.id = d.campaign_id
         WHERE d.id = $1 AND d.contact_id = $2 AND d.organisation_id = $3",
        [message.into(), contact.into(), claims.organisation.0.into()],
    )
    .await?
    .flatten()
    .and_then(|p| ConsentPurpose::parse(&p)))
}

async fn page_for(svc: &Services, claims: &LinkClaims) -> ServiceResult<RecipientPage> {
    let org = claims.organisation;
    let name: String =
        db::scalar(svc.db(), "SELECT name FROM organisation WHERE id = $1 AND deleted_at IS NULL", [org.0.into()])
            .await?
            .ok_or(ServiceError::NotFound)?;
    match claims.subject {
        LinkSubject::Test { .. } => {
            Ok(RecipientPage { organisation_name: name, test: true, purposes: vec![], message_purpose: None })
        }
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
            Ok(RecipientPage {
                organisation_name: name,
                test: false,
                purposes,
                message_purpose: message_purpose(svc, claims).await?,
            })
        }
    }
}

/// Whether the contact currently receives mail of the purpose: a grant on record — or, for
/// transactional mail, which needs no grant, no withdrawal on record (the preferences page must
/// not show "off" for mail the patient does receive).
async fn consent_granted<C: sea_orm::ConnectionTrait>(
    conn: &C,
    contact: uuid::Uuid,
    purpose: ConsentPurpose,
) -> ServiceResult<bool> {
    let recorded = db::scalar::<bool, _>(
        conn,
        "SELECT granted FROM contact_consent WHERE contact_id = $1 AND purpose = $2",
        [contact.into(), purpose.as_str().into()],
    )
    .await?;
    Ok(recorded.unwrap_or(purpose == ConsentPurpose::Transactional))
}

/// The page behind an unsubscribe or preferences link (changes nothing).
pub async fn page(svc: &Services, kind: LinkKind, token: &str) -> ServiceResult<RecipientPage> {
    let claims = links::open(svc, kind, token, svc.clock().now()).await?;
    page_for(svc, &claims).await
}

/// Record a recipient's choice for some purposes, in one transaction: a ledger event (through the
/// consent rule) and an audit row for each purpose whose state changes. `kind` is the link kind
/// the token was made for.
async fn set(
    svc: &Services,
    kind: LinkKind,
    claims: &LinkClaims,
    purposes: &[ConsentPurpose],
    granted: bool,
    ip: Option<String>,
) -> ServiceResult<RecipientPage> {
    let now = svc.clock().now();
    let LinkSubject::Contact { contact, message } = claims.subject else {
        return page_for(svc, claims).await;
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
    let mut withdrew = false;
    for &purpose in purposes {
        if consent_granted(&txn, contact, purpose).await? == granted {
            continue;
        }
        let source = if granted { ConsentSource::Form } else { ConsentSource::Unsubscribe };
        consent::record_event(&txn, org, contact, purpose, granted, source, None, None, None, now).await?;
        let action = if granted { AuditAction::ConsentGrantedByRecipient } else { AuditAction::RecipientUnsubscribed };
        audit::record(
            svc,
            &txn,
            AuditRecord::new(Some(org), AuditActor::Anonymous, action, AuditOutcome::Success)
                .target("contact", contact)
                .ip(ip.clone())
                .detail("purpose", purpose.as_str())
                .detail("message", message.to_string())
                .detail("via", kind.name()),
        )
        .await?;
        withdrew |= !granted;
    }
    if withdrew {
        // A campaign message's link: count the unsubscribe (once) in that campaign's report.
        db::exec(
            &txn,
            "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id)
             SELECT d.organisation_id, d.contact_id, d.campaign_id, 'unsubscribed', false, $3, d.id
             FROM delivery d WHERE d.id = $1 AND d.contact_id = $2 AND d.organisation_id = $4",
            [message.into(), contact.into(), now.into(), org.0.into()],
        )
        .await?;
        // `contact.unsubscribed` webhooks, in this transaction (ids and purpose codes only).
        let withdrawn: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
        crate::webhooks::enqueue(
            &txn,
            org,
            domain::webhooks::EventType::ContactUnsubscribed,
            serde_json::json!({"contact_id": contact, "message_id": message, "purposes": withdrawn, "via": kind.name()}),
            now,
        )
        .await?;
    }
    txn.commit().await?;
    page_for(svc, claims).await
}

/// Unsubscribe: the confirmation page's buttons and RFC 8058 one-click POST. `Message` withdraws
/// the purpose the message was sent under (every purpose when it cannot be told); `Everything`
/// withdraws every purpose.
pub async fn unsubscribe(
    svc: &Services,
    token: &str,
    scope: UnsubscribeScope,
    ip: Option<String>,
) -> ServiceResult<RecipientPage> {
    let claims = links::open(svc, LinkKind::Unsubscribe, token, svc.clock().now()).await?;
    let purposes = match (scope, message_purpose(svc, &claims).await?) {
        (UnsubscribeScope::Message, Some(p)) => vec![p],
        (UnsubscribeScope::Message, None) | (UnsubscribeScope::Everything, _) => ConsentPurpose::ALL.to_vec(),
    };
    set(svc, LinkKind::Unsubscribe, &claims, &purposes, false, ip).await
}

/// A choice on the preferences page.
pub async fn set_preference(
    svc: &Services,
    token: &str,
    choice: Preference,
    granted: bool,
    ip: Option<String>,
) -> ServiceResult<RecipientPage> {
    let claims = links::open(svc, LinkKind::Preferences, token, svc.clock().now()).await?;
    let purposes = match (choice, granted) {
        (Preference::Purpose(p), _) => vec![p],
        (Preference::Everything, false) => ConsentPurpose::ALL.to_vec(),
        (Preference::Everything, true) => {
            return Err(ServiceError::invalid("purpose", "choose each kind of email you want to receive"));
        }
    };
    set(svc, LinkKind::Preferences, &claims, &purposes, granted, ip).await
}
