//! Outgoing mail. Over SMTP, TLS is required: STARTTLS must succeed (or the connection is implicit
//! TLS) and the server certificate must verify against the web PKI or a configured CA — a relay
//! that offers neither is refused, never used in plaintext. Without a relay configured, messages are
//! captured in the dev mailbox (sealed, per organisation) for development.

use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use crate::smtp::SmtpPool;
use domain::Phi;
use domain::ids::OrganisationId;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart, header};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// The relay's AUTH password: not Clone, Debug or Serialize, zeroised when dropped. It is read
/// once (from a file of its own or `HERMETIC_SMTP_PASSWORD`) and shared behind an `Arc`, never
/// copied, down to the zeroised AUTH line (`smtp::SmtpPool`).
pub struct SmtpPassword(zeroize::Zeroizing<String>);

impl SmtpPassword {
    pub fn new(password: zeroize::Zeroizing<String>) -> SmtpPassword {
        SmtpPassword(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Arc<SmtpPassword>>,
    /// Extra CA certificate (PEM) for private relays.
    pub ca_pem: Option<Vec<u8>>,
    pub pool_size: u32,
    /// Development: add `X-Hermetic-Organisation` so the dev SMTP listener can file messages.
    pub tag_organisation: bool,
    pub timeouts: crate::smtp::SmtpTimeouts,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum MailSettings {
    Smtp { smtp: SmtpSettings, from: String },
    DevMailbox { from: String },
}

impl MailSettings {
    pub fn from_address(&self) -> &str {
        match self {
            MailSettings::Smtp { from, .. } | MailSettings::DevMailbox { from } => from,
        }
    }
}

/// The configured transport, built once (SMTP connections are pooled).
#[derive(Clone)]
pub enum Mailer {
    Smtp(Arc<SmtpPool>),
    DevMailbox,
}

impl Mailer {
    pub fn build(settings: &MailSettings) -> ServiceResult<Mailer> {
        match settings {
            MailSettings::DevMailbox { .. } => Ok(Mailer::DevMailbox),
            MailSettings::Smtp { smtp, .. } => {
                Ok(Mailer::Smtp(Arc::new(SmtpPool::new(smtp).map_err(ServiceError::internal)?)))
            }
        }
    }
}

/// A DKIM signer: the selector, the signing domain and the RSA private key (PEM, from a file).
/// Not Clone, Debug (beyond selector and domain) or Serialize; shared behind an `Arc`.
pub struct Dkim {
    signer: crate::dkim::Signer,
    pub selector: String,
    pub domain: String,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim").field("selector", &self.selector).field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl Dkim {
    /// Load a key. The PEM buffer is zeroised by the caller's `Zeroizing`.
    pub fn new(selector: &str, domain: &str, pem: &str) -> Result<Dkim, &'static str> {
        if selector.is_empty() || !selector.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("the DKIM selector must be letters, digits, '-' and '.'");
        }
        if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("the DKIM domain must be a domain name");
        }
        let signer = crate::dkim::Signer::from_pem(pem)?;
        Ok(Dkim { signer, selector: selector.to_string(), domain: domain.to_string() })
    }

    /// A sending domain's key (PKCS#8 DER, opened from its sealed column).
    pub fn from_pkcs8_der(selector: &str, domain: &str, der: &[u8]) -> Result<Dkim, &'static str> {
        let signer = crate::dkim::Signer::from_pkcs8_der(der)?;
        Ok(Dkim { signer, selector: selector.to_string(), domain: domain.to_string() })
    }

    /// The message's bytes with a DKIM-Signature header in front (`t=` is `now`, Unix seconds).
    pub fn sign(&self, raw: Vec<u8>, now: i64) -> Result<Vec<u8>, &'static str> {
        let mut out = self.signer.header(&raw, &self.domain, &self.selector, now)?;
        out.extend_from_slice(&raw);
        Ok(out)
    }
}

/// A message to one recipient.
pub struct Outgoing {
    pub organisation: OrganisationId,
    pub to: Phi<String>,
    pub subject: String,
    pub text: Phi<String>,
    pub html: Option<Phi<String>>,
}

/// What happened to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the relay (or captured), with the relay's reply.
    Accepted(String),
    /// A temporary refusal (4xx, connection trouble): try again later. Holds only the status
    /// code or a fixed phrase — never the reply text, which can quote the recipient — so it may be
    /// logged.
    Deferred(String),
    /// A permanent refusal (5xx): do not retry. Holds only the status code or a fixed phrase.
    Rejected(String),
}

/// A `text/plain` part, encoded in one pass (`crate::body`).
pub fn text_part(text: &str) -> SinglePart {
    SinglePart::builder().header(header::ContentType::TEXT_PLAIN).body(crate::body::encode(text))
}

/// The `multipart/alternative` of a text and an HTML version, each encoded in one pass.
pub fn alternative(text: &str, html: &str) -> MultiPart {
    MultiPart::alternative()
        .singlepart(text_part(text))
        .singlepart(SinglePart::builder().header(header::ContentType::TEXT_HTML).body(crate::body::encode(html)))
}

fn capture_aad(org: OrganisationId, column: &'static str, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "dev_mailbox", column, row: id }
}

/// Send one piece of system mail (double opt-in, invitations, notices) From `mail.from`, signed
/// with the platform's DKIM key when one is configured. Composed by `crate::outbound`.
pub async fn send(svc: &Services, msg: Outgoing) -> ServiceResult<SendOutcome> {
    let content = crate::outbound::Content { subject: msg.subject, text: msg.text, html: msg.html };
    crate::outbound::send_system(svc, msg.organisation, msg.to, content).await
}

/// Hand a built message to the configured transport: DKIM-signed with `dkim` (when given) and
/// sent over the SMTP pool, or captured (sealed) in the dev mailbox. `to` and `subject` are only
/// used for the capture's index.
pub async fn deliver(
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
pub fn wire_bytes(
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
pub async fn wire_bytes_off_thread(
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

pub async fn captured(svc: &Services, org: OrganisationId, limit: i64) -> ServiceResult<Vec<Captured>> {
    let rows = db::all(
        svc.db(),
        "SELECT id, created_at, recipient, subject, message FROM dev_mailbox WHERE organisation_id = $1 ORDER BY created_at DESC LIMIT $2",
        [org.0.into(), limit.into()],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Uuid = db::get(&r, "id")?;
        let open = |column: &'static str, b: Vec<u8>| async move {
            let plain = svc.keys().open(svc.db(), &capture_aad(org, column, id), &Sealed::from_bytes(b)?).await?;
            Ok::<String, ServiceError>(String::from_utf8_lossy(&plain).into_owned())
        };
        out.push(Captured {
            id,
            created_at: db::get(&r, "created_at")?,
            recipient: Phi::new(open("recipient", db::get(&r, "recipient")?).await?),
            subject: Phi::new(open("subject", db::get(&r, "subject")?).await?),
            raw: Phi::new(open("message", db::get(&r, "message")?).await?),
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
    let parts = crate::mime::parse(&String::from_utf8_lossy(&plain));
    Ok(parts.html.unwrap_or_else(|| "<p>This message has no HTML part.</p>".into()))
}

/// How long an audited opening of a message covers its HTML frame.
const OPEN_WINDOW_MINUTES: i64 = 10;

async fn open_message(svc: &Services, org: OrganisationId, id: Uuid) -> ServiceResult<zeroize::Zeroizing<Vec<u8>>> {
    let r = db::one(
        svc.db(),
        "SELECT message FROM dev_mailbox WHERE id = $1 AND organisation_id = $2",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    svc.keys().open(svc.db(), &capture_aad(org, "message", id), &Sealed::from_bytes(db::get(&r, "message")?)?).await
}

async fn recently_opened(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<bool> {
    let Some(user) = actor.user_id() else { return Ok(false) };
    let since = svc.clock().now() - chrono::Duration::minutes(OPEN_WINDOW_MINUTES);
    Ok(db::one(
        svc.db(),
        "SELECT 1 AS x FROM audit_event WHERE organisation_id = $1 AND actor_user_id = $2 AND action = $3
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
    let total: i64 =
        db::one(svc.db(), "SELECT count(*) AS n FROM dev_mailbox WHERE organisation_id = $1", [org.0.into()])
            .await?
            .map(|r| db::get(&r, "n"))
            .transpose()?
            .unwrap_or(0);
    let rows = db::all(
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
        let id: Uuid = db::get(&r, "id")?;
        let open = |column: &'static str, b: Vec<u8>| async move {
            let plain = svc.keys().open(svc.db(), &capture_aad(org, column, id), &Sealed::from_bytes(b)?).await?;
            Ok::<String, ServiceError>(String::from_utf8_lossy(&plain).into_owned())
        };
        out.push(CapturedSummary {
            id,
            created_at: db::get(&r, "created_at")?,
            recipient: Phi::new(open("recipient", db::get(&r, "recipient")?).await?),
            subject: Phi::new(crate::mime::decode_header(&open("subject", db::get(&r, "subject")?).await?)),
        });
    }
    Ok((out, total))
}

/// One captured message, opened (an audited PHI read: one row per opening; its HTML frame is
/// covered by it).
pub async fn captured_one(svc: &Services, actor: &crate::Actor, id: Uuid) -> ServiceResult<Captured> {
    actor.require(domain::Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let r = db::one(
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
        created_at: db::get(&r, "created_at")?,
        recipient: Phi::new(open("recipient", db::get(&r, "recipient")?).await?),
        subject: Phi::new(crate::mime::decode_header(&open("subject", db::get(&r, "subject")?).await?)),
        raw: Phi::new(open("message", db::get(&r, "message")?).await?),
    })
}

/// Whether `s` is a mailbox like `Hermetic <no-reply@example.org>` or a bare address.
pub fn valid_mailbox(s: &str) -> bool {
    s.parse::<Mailbox>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time proof: `SmtpPassword` implements none of Clone, Debug, Serialize. Each check
    /// is ambiguous — and does not compile — if the type gains the trait.
    #[test]
    fn the_smtp_password_cannot_be_copied_printed_or_serialised() {
        trait NotClone<A> {
            fn check() {}
        }
        impl<T: ?Sized> NotClone<()> for T {}
        impl<T: Clone> NotClone<u8> for T {}
        trait NotDebug<A> {
            fn check() {}
        }
        impl<T: ?Sized> NotDebug<()> for T {}
        impl<T: ?Sized + std::fmt::Debug> NotDebug<u8> for T {}
        trait NotSerialize<A> {
            fn check() {}
        }
        impl<T: ?Sized> NotSerialize<()> for T {}
        impl<T: ?Sized + serde::Serialize> NotSerialize<u8> for T {}
        <SmtpPassword as NotClone<_>>::check();
        <SmtpPassword as NotDebug<_>>::check();
        <SmtpPassword as NotSerialize<_>>::check();
        let s = SmtpSettings {
            host: "relay.example".into(),
            port: 587,
            tls: TlsMode::StartTls,
            username: Some("hermetic".into()),
            password: Some(Arc::new(SmtpPassword::new(zeroize::Zeroizing::new("hunter2-relay".into())))),
            ca_pem: None,
            pool_size: 1,
            tag_organisation: false,
            timeouts: crate::smtp::SmtpTimeouts::default(),
        };
        let printed = format!("{s:?} {:?}", MailSettings::Smtp { smtp: s.clone(), from: "a@b.test".into() });
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
