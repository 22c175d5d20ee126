//! Outbound: every message Hermetic sends is composed here — a campaign's message to one contact,
//! a test send of a template or a campaign, and system mail (invitations, opt-in confirmations,
//! staff notices) — from a sender, a rendered template (or fixed system text), the recipient, the
//! kind of message and its message id. The next sources (sequence steps, API messages) compose
//! through the same function (API messages do: `Kind::Transactional`), so From/Reply-To, the RFC 8058 one-click unsubscribe headers, link
//! tracking, the MIME layout and the DKIM signer are decided in one place.
//!
//! Handing a composed message to the transport is `crate::mail` (SMTP pool or dev mailbox); which
//! state a delivery row takes from the transport's answer is `domain::delivery::after_attempt`.

use crate::campaigns::tracking::{self, TrackedLink};
use crate::crypto::keyring::DataKey;
use crate::error::{ServiceError, ServiceResult};
use crate::mail::{self, Dkim, SendOutcome};
use crate::services::Services;
use crate::templates::sandbox::Checked;
use chrono::{DateTime, Utc};
use domain::Phi;
use domain::ids::OrganisationId;
use lettre::Message;
use lettre::message::{Mailbox, header};
use std::sync::Arc;
use uuid::Uuid;

/// Who a message is from, and the key that signs it (d= the From domain).
#[derive(Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub dkim: Option<Arc<Dkim>>,
}

impl Sender {
    /// The platform's own address (`mail.from`), signed with the platform's DKIM key when one is
    /// configured: system mail (invitations, opt-in confirmations, notices to staff).
    pub fn platform(svc: &Services) -> ServiceResult<Sender> {
        let from: Mailbox = svc
            .settings()
            .mail
            .from_address()
            .parse()
            .map_err(|_| ServiceError::internal("the configured From address is invalid"))?;
        Ok(Sender { from, reply_to: None, dkim: svc.settings().mail_dkim.clone() })
    }

    /// An address on a verified sending domain of the organisation, signed with that domain's key.
    /// `field` names the form field an unverified address is reported against.
    pub async fn verified(
        svc: &Services,
        org: OrganisationId,
        field: &str,
        from: Mailbox,
        reply_to: Option<Mailbox>,
    ) -> ServiceResult<Sender> {
        let d = crate::sending_domains::verified_domain_of(svc.db(), org, field, from.email.as_ref()).await?;
        let dkim = crate::sending_domains::signer(svc, &d).await?;
        Ok(Sender { from, reply_to, dkim: Some(dkim) })
    }

    /// The From and Reply-To mailboxes of a campaign's settings (`Clinic <news@…>`), checked.
    pub fn mailboxes(
        from_name: &str,
        from_email: &str,
        reply_to: Option<&str>,
    ) -> ServiceResult<(Mailbox, Option<Mailbox>)> {
        let email: lettre::Address =
            from_email.parse().map_err(|_| ServiceError::invalid("from_email", "is not a valid address"))?;
        let from = Mailbox::new((!from_name.is_empty()).then(|| from_name.to_string()), email);
        let reply_to = match reply_to {
            Some(r) => Some(Mailbox::new(
                None,
                r.parse().map_err(|_| ServiceError::invalid("reply_to", "is not a valid address"))?,
            )),
            None => None,
        };
        Ok((from, reply_to))
    }

    /// The domain of the From address (the right-hand side of message ids).
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }
}

/// What a message says: a rendered template, or fixed system text.
pub struct Content {
    pub subject: String,
    pub text: Phi<String>,
    pub html: Option<Phi<String>>,
}

/// Link tracking for a marketing message: each tracked link of the HTML is rewritten to a signed
/// click URL of this message, and an open pixel is added (`campaigns::tracking::instrument`).
pub struct Tracking<'a> {
    pub links: &'a [TrackedLink],
    pub public_url: &'a str,
    pub key: &'a DataKey,
    pub organisation: OrganisationId,
    pub now: DateTime<Utc>,
}

/// The kind of message, which decides its headers.
pub enum Kind<'a> {
    /// Marketing to a contact, one delivery row: the RFC 8058 one-click unsubscribe headers, the
    /// delivery id (`X-Hermetic-Delivery`, for bounces and the dev listener), tracked links.
    Marketing { delivery: Uuid, unsubscribe: String, tracking: Option<Tracking<'a>> },
    /// A test of a template or campaign to the signed-in user, with synthetic data: the same list
    /// headers as the real message, `X-Hermetic-Test`, and the subject marked "[Test]".
    Test { unsubscribe: String },
    /// A transactional message to a contact (`POST /api/v1/messages`), one delivery row: the
    /// delivery id and tracked links like marketing, but no `List-Unsubscribe`: it answers the
    /// patient's own care or request, is not list mail, and a one-click unsubscribe would withdraw
    /// a purpose the patient never chose to receive by subscribing (RFC 8058 is for list mail).
    /// A template may still offer `{{links.preferences}}` or `{{links.unsubscribe}}` in its body.
    Transactional { delivery: Uuid, tracking: Option<Tracking<'a>> },
    /// System mail to one person: no list headers, nothing tracked.
    System,
}

/// A composed message: the MIME message, and what the dev mailbox indexes (never logged).
pub struct Composed {
    pub message: Message,
    pub to: Phi<String>,
    pub subject: String,
}

/// Render a checked template with its merge data (contact, organisation, links) into content.
pub fn render(svc: &Services, template: &Checked, data: Phi<serde_json::Value>) -> ServiceResult<Content> {
    let r = svc.templates().sandbox.render(template, data)?;
    Ok(Content { subject: r.subject.into_inner(), text: r.text, html: Some(r.html) })
}

/// Compose one message. `message_id` (the delivery's id, for a marketing message) becomes
/// `<id@from-domain>`; without one the transport's builder generates a random id.
pub fn compose(
    sender: &Sender,
    to: &Phi<String>,
    content: Content,
    kind: &Kind<'_>,
    message_id: Option<Uuid>,
) -> ServiceResult<Composed> {
    let to_box: Mailbox =
        to.expose().parse().map_err(|_| ServiceError::invalid("recipient", "is not a valid email address"))?;
    let subject = match kind {
        Kind::Test { .. } => format!("[Test] {}", content.subject),
        _ => content.subject,
    };
    let mut b = Message::builder().from(sender.from.clone()).to(to_box).subject(subject.clone());
    if let Some(id) = message_id {
        b = b.message_id(Some(format!("<{id}@{}>", sender.domain())));
    }
    if let Some(rt) = &sender.reply_to {
        b = b.reply_to(rt.clone());
    }
    let headers: Vec<(&str, String)> = match kind {
        Kind::Marketing { delivery, unsubscribe, .. } => vec![
            ("List-Unsubscribe", format!("<{unsubscribe}>")),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_string()),
            ("X-Hermetic-Delivery", delivery.to_string()),
        ],
        Kind::Test { unsubscribe } => vec![
            ("List-Unsubscribe", format!("<{unsubscribe}>")),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_string()),
            ("X-Hermetic-Test", "1".to_string()),
        ],
        Kind::Transactional { delivery, .. } => vec![("X-Hermetic-Delivery", delivery.to_string())],
        Kind::System => vec![],
    };
    for (name, value) in headers {
        b = b.raw_header(header::HeaderValue::new(header::HeaderName::new_from_ascii_str(name), value));
    }
    let html =
        match (&content.html, kind) {
            (Some(html), Kind::Marketing { delivery, tracking: Some(t), .. })
            | (Some(html), Kind::Transactional { delivery, tracking: Some(t) }) => Some(Phi::new(
                tracking::instrument(html.expose(), t.links, t.public_url, t.key, t.organisation, *delivery, t.now)?,
            )),
            (html, _) => html.clone(),
        };
    let message = match &html {
        Some(html) => b.multipart(mail::alternative(content.text.expose(), html.expose())),
        None => b.singlepart(mail::text_part(content.text.expose())),
    }
    .map_err(|_| ServiceError::internal("the message could not be built"))?;
    Ok(Composed { message, to: to.clone(), subject })
}

/// Send a composed message now, outside the delivery queue (test sends and system mail, whose
/// outcome the person waiting for it sees): signed with the sender's key, handed to the transport.
pub(crate) async fn send_now(
    svc: &Services,
    organisation: OrganisationId,
    sender: &Sender,
    m: Composed,
) -> ServiceResult<SendOutcome> {
    mail::deliver(svc, organisation, m.message, &m.to, &m.subject, sender.dkim.as_deref()).await
}

/// A piece of system mail to one person (an invitation, an opt-in confirmation, a staff notice).
pub struct Outgoing {
    pub organisation: OrganisationId,
    pub to: Phi<String>,
    pub subject: String,
    pub text: Phi<String>,
    pub html: Option<Phi<String>>,
}

/// Compose and send one piece of system mail From the platform's address (`mail.from`), signed
/// with the platform's DKIM key when one is configured.
pub async fn send_system(svc: &Services, msg: Outgoing) -> ServiceResult<SendOutcome> {
    let sender = Sender::platform(svc)?;
    let content = Content { subject: msg.subject, text: msg.text, html: msg.html };
    let m = compose(&sender, &msg.to, content, &Kind::System, None)?;
    send_now(svc, msg.organisation, &sender, m).await
}

/// [`send_system`] from a queued job (a digest, a staff notice): accepted or refused is done (a
/// refusal of that address is final, logged with the job's `id`), deferred is an error so the
/// job runner tries again later.
pub async fn send_system_job(svc: &Services, msg: Outgoing, what: &'static str, id: Uuid) -> ServiceResult<()> {
    match send_system(svc, msg).await? {
        SendOutcome::Accepted(_) => Ok(()),
        SendOutcome::Rejected(_) => {
            tracing::warn!(what, id = %id, "system mail refused by the mail server; not retried");
            Ok(())
        }
        SendOutcome::Deferred(_) => Err(ServiceError::internal("system mail was deferred; retrying")),
    }
}
