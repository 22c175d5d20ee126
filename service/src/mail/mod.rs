//! Outgoing mail. Over SMTP, TLS is required: STARTTLS must succeed (or the connection is implicit
//! TLS) and the server certificate must verify against the web PKI or a configured CA — a relay
//! that offers neither is refused, never used in plaintext. Without a relay configured, messages are
//! captured in the dev mailbox (sealed, per organisation) for development.

pub mod body;
pub mod dkim;
pub mod mailbox;
pub mod mime;
pub mod smtp;
pub mod transport;

pub use dkim::Dkim;
pub use mailbox::{Captured, CapturedSummary, capture, captured, captured_html, captured_one, captured_page};
pub use smtp::{SendOutcome, SmtpPassword, SmtpSettings, TlsMode};
pub use transport::{MailSettings, Mailer};

use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Phi;
use domain::ids::OrganisationId;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart, header};
use std::sync::Arc;

/// A `text/plain` part, encoded in one pass (`body`).
pub fn text_part(text: &str) -> SinglePart {
    SinglePart::builder().header(header::ContentType::TEXT_PLAIN).body(body::encode(text))
}

/// The `multipart/alternative` of a text and an HTML version, each encoded in one pass.
pub fn alternative(text: &str, html: &str) -> MultiPart {
    MultiPart::alternative()
        .singlepart(text_part(text))
        .singlepart(SinglePart::builder().header(header::ContentType::TEXT_HTML).body(body::encode(html)))
}

/// Hand a built message to the configured transport: DKIM-signed with `dkim` (when given) and
/// sent over the SMTP pool, or captured (sealed) in the dev mailbox. `to` and `subject` are only
/// used for the capture's index.
pub(crate) async fn deliver(
    svc: &Services,
    organisation: OrganisationId,
    message: Message,
    to: &Phi<String>,
    subject: &str,
    dkim: Option<&Dkim>,
) -> ServiceResult<SendOutcome> {
    let raw = wire_bytes(svc, organisation, &message, dkim)?;
    match svc.mailer() {
        Mailer::DevMailbox => {
            capture(svc, organisation, &raw, to.expose(), subject).await?;
            Ok(SendOutcome::Accepted("250 captured".into()))
        }
        Mailer::Smtp(pool) => Ok(pool.send(message.envelope(), &raw).await),
    }
}

/// The bytes of a message as they go out: formatted, DKIM-signed with `dkim` when given, and
/// (development only) tagged with its organisation for the dev SMTP listener.
pub(crate) fn wire_bytes(
    svc: &Services,
    organisation: OrganisationId,
    message: &Message,
    dkim: Option<&Dkim>,
) -> ServiceResult<Vec<u8>> {
    let mut raw = message.formatted();
    if let Some(d) = dkim {
        raw = d.sign(raw, svc.clock().now().timestamp()).map_err(ServiceError::internal)?;
    }
    if let Mailer::Smtp(pool) = svc.mailer()
        && pool.tags_organisation()
    {
        raw = [format!("X-Hermetic-Organisation: {}\r\n", organisation.0).into_bytes(), raw].concat();
    }
    Ok(raw)
}

/// `wire_bytes` for the send loop: the RSA signature (a millisecond or more of CPU per message)
/// is computed on the blocking pool, so the async threads keep serving the SMTP and database
/// sockets meanwhile instead of stalling every lane behind one signature.
pub(crate) async fn wire_bytes_off_thread(
    svc: &Services,
    organisation: OrganisationId,
    message: &Message,
    dkim: Option<Arc<Dkim>>,
) -> ServiceResult<Vec<u8>> {
    let Some(dkim) = dkim else {
        return wire_bytes(svc, organisation, message, None);
    };
    let (svc, message) = (svc.clone(), message.clone());
    tokio::task::spawn_blocking(move || wire_bytes(&svc, organisation, &message, Some(&dkim)))
        .await
        .map_err(|_| ServiceError::internal("the message signing task stopped"))?
}

/// Whether `s` is a mailbox like `Hermetic <no-reply@example.org>` or a bare address.
pub fn valid_mailbox(s: &str) -> bool {
    s.parse::<Mailbox>().is_ok()
}
