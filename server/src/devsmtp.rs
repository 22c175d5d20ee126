//! The dev mailbox's SMTP listener: with no relay configured, `scripts/dev` points the app's mail
//! settings at this real SMTP server (STARTTLS required, a development certificate), so the path a
//! message takes in development is the production path — pool, TLS, DKIM — and what arrives is
//! captured, sealed, in the organisation's dev mailbox (the page shows HTML, text and headers).
//!
//! Invariants: loopback only (refuses to bind elsewhere); plaintext is never accepted for MAIL
//! (530 before STARTTLS); a message is only kept when it names an existing organisation in the
//! `X-Hermetic-Organisation` header the app adds in development; bounded line and message sizes.

use service::Services;
use service::mail;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const MAX_LINE: usize = 4096;
const MAX_MESSAGE: usize = 30 * 1024 * 1024;

/// Build the TLS acceptor from PEM files.
pub fn acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("dev SMTP certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("dev SMTP certificate {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("dev SMTP key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("dev SMTP TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("dev SMTP TLS: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections until `shutdown` turns true.
pub async fn run(listener: TcpListener, tls: TlsAcceptor, svc: Services, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let (tls, svc) = (tls.clone(), svc.clone());
                    tokio::spawn(async move {
                        if let Err(e) = session(stream, tls, svc).await {
                            tracing::debug!(error = %e, "dev SMTP session ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "dev SMTP accept failed"),
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn read_line(r: &mut BufReader<Box<dyn Stream>>, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let n = (&mut *r).take(MAX_LINE as u64).read_until(b'\n', buf).await?;
    Ok(n > 0)
}

async fn session(tcp: tokio::net::TcpStream, tls: TlsAcceptor, svc: Services) -> std::io::Result<()> {
    let mut conn: BufReader<Box<dyn Stream>> = BufReader::new(Box::new(tcp));
    let mut encrypted = false;
    let mut rcpt: Vec<String> = Vec::new();
    let mut mail_from = false;
    let mut line = Vec::new();
    conn.write_all(b"220 hermetic-dev ESMTP (development mailbox)\r\n").await?;
    conn.flush().await?;
    while read_line(&mut conn, &mut line).await? {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if encrypted {
                b"250-hermetic-dev\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250 SIZE 31457280\r\n"
            } else {
                b"250-hermetic-dev\r\n250-STARTTLS\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 31457280\r\n"
            }
        } else if upper.starts_with("HELO") {
            b"250 hermetic-dev\r\n"
        } else if upper == "STARTTLS" {
            if encrypted {
                b"503 5.5.1 TLS already active\r\n"
            } else {
                conn.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                conn.flush().await?;
                // Anything pipelined after STARTTLS is dropped (RFC 3207).
                let inner = conn.into_inner();
                let stream = tls.accept(inner).await?;
                conn = BufReader::new(Box::new(stream));
                encrypted = true;
                rcpt.clear();
                mail_from = false;
                continue;
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !encrypted {
                b"530 5.7.0 Must issue a STARTTLS command first\r\n"
            } else {
                mail_from = true;
                rcpt.clear();
                b"250 2.1.0 Ok\r\n"
            }
        } else if upper.starts_with("RCPT TO:") {
            if !mail_from {
                b"503 5.5.1 MAIL first\r\n"
            } else {
                let addr = text[8..].trim().trim_start_matches('<').split('>').next().unwrap_or("").to_string();
                rcpt.push(addr);
                b"250 2.1.5 Ok\r\n"
            }
        } else if upper == "DATA" {
            if rcpt.is_empty() {
                b"503 5.5.1 RCPT first\r\n"
            } else {
                conn.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                conn.flush().await?;
                let mut message = Vec::new();
                let mut too_big = false;
                loop {
                    if !read_line(&mut conn, &mut line).await? {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
                    if message.len() + body.len() > MAX_MESSAGE {
                        too_big = true;
                    } else {
                        message.extend_from_slice(body);
                    }
                }
                let answer = if too_big {
                    "552 5.3.4 Message too big\r\n".to_string()
                } else {
                    match capture(&svc, &message, &rcpt).await {
                        Ok(()) => "250 2.0.0 Ok: captured\r\n".to_string(),
                        Err(why) => format!("554 5.7.1 {why}\r\n"),
                    }
                };
                rcpt.clear();
                mail_from = false;
                conn.write_all(answer.as_bytes()).await?;
                conn.flush().await?;
                continue;
            }
        } else if upper == "RSET" {
            rcpt.clear();
            mail_from = false;
            b"250 2.0.0 Ok\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 Ok\r\n"
        } else if upper == "QUIT" {
            conn.write_all(b"221 2.0.0 Bye\r\n").await?;
            conn.flush().await?;
            return Ok(());
        } else {
            b"502 5.5.2 Command not recognised\r\n"
        };
        conn.write_all(reply).await?;
        conn.flush().await?;
    }
    Ok(())
}

/// The value of a header in a raw message (first occurrence, unfolded).
fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut value: Option<String> = None;
    for l in head.split("\r\n") {
        match &mut value {
            Some(v) if l.starts_with([' ', '\t']) => v.push_str(l.trim_start()),
            Some(_) => break,
            None => {
                if let Some((k, v)) = l.split_once(':')
                    && k.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().to_string());
                }
            }
        }
    }
    value
}

async fn capture(svc: &Services, raw: &[u8], rcpt: &[String]) -> Result<(), &'static str> {
    let org = header(raw, "X-Hermetic-Organisation")
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
        .ok_or("no organisation header: not a message from this Hermetic")?;
    // Kept as a person reads it (RFC 2047 encoded words decoded).
    let subject = service::mail::mime::decode_header(&header(raw, "Subject").unwrap_or_default());
    mail::capture(svc, domain::ids::OrganisationId(org), raw, &rcpt.join(", "), &subject).await.map_err(|e| {
        tracing::warn!(error = %e.log_detail(), "dev SMTP could not store a message");
        "the message could not be stored"
    })
}
