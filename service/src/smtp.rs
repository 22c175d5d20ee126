//! Our SMTP connection pool, on lettre's protocol code.
//!
//! Why not lettre's own pooled transport: it never sets TCP_NODELAY, so every command waits for the
//! peer's delayed ACK (~40 ms on loopback: 22 messages/s per connection, STACK.md). Here each
//! connection is a tokio `TcpStream` with NODELAY, handed to lettre's `AsyncSmtpConnection`.
//!
//! Invariants: TLS is never optional. With STARTTLS the server must offer it and the upgrade must
//! succeed before MAIL FROM; certificates verify against the web PKI plus an optional private CA
//! (lettre's rustls verifier). A server that offers no STARTTLS, or a certificate that does not
//! verify, is a temporary failure of every send ("deferred"), never a plaintext fallback. Replies
//! are reduced to status codes before they leave this module: reply texts can quote the address.

use crate::mail::{SendOutcome, SmtpSettings, TlsMode};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Longest a connection attempt (TCP, greeting, EHLO, STARTTLS, AUTH) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest one message transaction (MAIL … DATA … reply) may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A pooled connection idle longer than this is checked with NOOP before reuse.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than reused.
const IDLE_MAX: Duration = Duration::from_secs(50);

/// Why a connection could not be made ready for sending. Fixed phrases only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("the mail server could not be reached")]
    Unreachable,
    #[error("the mail server does not offer STARTTLS, and TLS is required")]
    NoStartTls,
    #[error("TLS with the mail server failed (certificate not verified or handshake error)")]
    Tls,
    #[error("the mail server refused our credentials")]
    Auth,
    #[error("the mail server did not answer in time")]
    Timeout,
    #[error("the mail server answered with an error ({0})")]
    Protocol(String),
}

pub struct SmtpPool {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: TlsParameters,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
    tag_organisation: bool,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpPool").field("host", &self.host).field("port", &self.port).finish_non_exhaustive()
    }
}

/// The status code of an SMTP error, or a fixed phrase.
fn status_of(e: &lettre::transport::smtp::Error, fallback: &str) -> String {
    e.status().map(|c| c.to_string()).unwrap_or_else(|| fallback.to_string())
}

impl SmtpPool {
    pub fn new(s: &SmtpSettings) -> Result<SmtpPool, &'static str> {
        let mut params = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca_pem {
            params = params.add_root_certificate(
                Certificate::from_pem(pem).map_err(|_| "the SMTP CA certificate is not valid PEM")?,
            );
        }
        let tls = params.build_rustls().map_err(|_| "SMTP TLS settings are invalid")?;
        let hello = match hostname_id() {
            Some(h) => ClientId::Domain(h),
            None => ClientId::default(),
        };
        Ok(SmtpPool {
            host: s.host.clone(),
            port: s.port,
            mode: s.tls,
            tls,
            credentials: match (&s.username, &s.password) {
                (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
                _ => None,
            },
            hello,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(s.pool_size.max(1) as usize),
            tag_organisation: s.tag_organisation,
        })
    }

    /// Open a connection ready for MAIL FROM: encrypted and verified, authenticated when configured.
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner()).await.map_err(|_| ConnectError::Timeout)?
    }

    async fn connect_inner(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        let mut conn = match self.mode {
            TlsMode::StartTls => {
                let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(|_| ConnectError::Unreachable)?;
                // The point of this module: no Nagle wait on every small command.
                let _ = tcp.set_nodelay(true);
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                    .await
                    .map_err(|e| ConnectError::Protocol(status_of(&e, "greeting")))?;
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(ConnectError::NoStartTls);
                }
                conn.starttls(self.tls.clone(), &self.hello).await.map_err(|e| {
                    if e.is_tls() { ConnectError::Tls } else { ConnectError::Protocol(status_of(&e, "STARTTLS")) }
                })?;
                conn
            }
            TlsMode::Implicit => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(CONNECT_TIMEOUT),
                &self.hello,
                Some(self.tls.clone()),
                None,
            )
            .await
            .map_err(|e| if e.is_tls() { ConnectError::Tls } else { ConnectError::Unreachable })?,
        };
        if !conn.is_encrypted() {
            conn.abort().await;
            return Err(ConnectError::NoStartTls);
        }
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await.map_err(|_| ConnectError::Auth)?;
        }
        Ok(conn)
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
            match pooled {
                None => return self.connect().await,
                Some((mut conn, since)) => {
                    let idle = since.elapsed();
                    if idle > IDLE_MAX || conn.has_broken() {
                        conn.abort().await;
                        continue;
                    }
                    if idle > IDLE_CHECK && !conn.test_connected().await {
                        conn.abort().await;
                        continue;
                    }
                    return Ok(conn);
                }
            }
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        if let Ok(mut v) = self.idle.lock() {
            v.push((conn, Instant::now()));
        }
    }

    /// Send one message (already formatted, DKIM-signed if configured). At most `pool_size`
    /// transactions run at once; each uses its own connection.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> SendOutcome {
        let Ok(_slot) = self.slots.acquire().await else {
            return SendOutcome::Deferred("the mail pool is closed".into());
        };
        let mut conn = match self.checkout().await {
            Ok(c) => c,
            Err(e) => return SendOutcome::Deferred(e.to_string()),
        };
        match tokio::time::timeout(SEND_TIMEOUT, conn.send(envelope, raw)).await {
            Ok(Ok(resp)) => {
                let status = reply_status(resp.code().to_string(), resp.first_line());
                self.checkin(conn);
                SendOutcome::Accepted(status)
            }
            // lettre aborts the connection on any error reply, so it is never reused.
            Ok(Err(e)) if e.is_permanent() => SendOutcome::Rejected(status_of(&e, "permanent failure")),
            Ok(Err(e)) => SendOutcome::Deferred(status_of(&e, "temporary failure (connection)")),
            Err(_) => {
                conn.abort().await;
                SendOutcome::Deferred("the mail server did not answer in time".into())
            }
        }
    }

    pub fn tags_organisation(&self) -> bool {
        self.tag_organisation
    }

    /// Close every idle connection politely.
    pub async fn close_idle(&self) {
        let conns: Vec<_> = self.idle.lock().map(|mut v| v.drain(..).collect()).unwrap_or_default();
        for (mut c, _) in conns {
            let _ = c.quit().await;
        }
    }
}

/// "250 2.0.0" from a reply: the basic code and, when present, the enhanced status code — never
/// the rest of the text.
pub fn reply_status(code: String, first_line: Option<&str>) -> String {
    let enhanced = first_line.and_then(|l| l.split_whitespace().next()).filter(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match enhanced {
        Some(e) => format!("{code} {e}"),
        None => code,
    }
}

/// The EHLO name: the machine's host name when it looks like a domain.
fn hostname_id() -> Option<String> {
    let h = std::fs::read_to_string("/etc/hostname").ok()?;
    let h = h.trim();
    (h.contains('.') && h.len() < 254 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        .then(|| h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_status_keeps_codes_only() {
        assert_eq!(reply_status("250".into(), Some("2.0.0 Ok: queued as 4F2")), "250 2.0.0");
        assert_eq!(reply_status("250".into(), Some("Ok <patient@example.org>")), "250");
        assert_eq!(reply_status("550".into(), Some("5.1.1 <x@y> unknown")), "550 5.1.1");
        assert_eq!(reply_status("451".into(), None), "451");
        assert_eq!(reply_status("250".into(), Some("2.0.0000 x")), "250");
    }
}
