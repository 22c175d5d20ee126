//! The mail transport against real peers: a pooled SMTP connection whose server stops answering
//! (a real TCP peer that accepts and then never replies) cannot stop mail.

use crate::smtp::{SmtpServer, Tls, tools};
use service::mail::{SendOutcome, SmtpSettings, TlsMode};
use service::smtp::{SmtpPool, SmtpTimeouts};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy in front of a real SMTP server. Each accepted connection is piped to the server;
/// once `freeze` is set for a connection, what the client writes on it is read and dropped, so the
/// server never sees it and never answers — a relay that has hung while the socket stays open.
struct Proxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    frozen: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frozen: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let (a, f) = (accepted.clone(), frozen.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let flag = Arc::new(AtomicBool::new(false));
                f.lock().unwrap().push(flag.clone());
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) if !flag.load(Ordering::SeqCst) => {
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                    // Keep the server side open: the client must not learn anything from a close.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    drop(sw);
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        Proxy { port, accepted, frozen }
    }

    fn freeze(&self, connection: usize) {
        self.frozen.lock().unwrap()[connection].store(true, Ordering::SeqCst);
    }
}

fn message(to: &str) -> (lettre::address::Envelope, Vec<u8>) {
    let m = lettre::Message::builder()
        .from("news@clinic.test".parse().unwrap())
        .to(to.parse().unwrap())
        .subject("Pool test")
        .body("Hello".to_string())
        .unwrap();
    (m.envelope().clone(), m.formatted())
}

fn pool_settings(port: u16, timeouts: SmtpTimeouts) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port,
        tls: TlsMode::StartTls,
        username: None,
        password: None,
        ca_pem: Some(std::fs::read(tools().certs.join("ca.pem")).unwrap()),
        pool_size: 1,
        tag_organisation: false,
        timeouts,
    }
}

/// Short limits so the test does not wait a minute; the production defaults are the same code.
fn short(idle_check: Duration) -> SmtpTimeouts {
    SmtpTimeouts { io: Duration::from_secs(2), check: Duration::from_secs(2), idle_check, ..SmtpTimeouts::default() }
}

#[tokio::test]
async fn a_pooled_connection_that_stops_answering_cannot_stop_mail() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let proxy = Proxy::start(smtp.port).await;
    // Every reuse is health-checked with NOOP.
    let pool = SmtpPool::new(&pool_settings(proxy.port, short(Duration::ZERO))).unwrap();
    let (env, raw) = message("first@patients.test");
    assert!(matches!(pool.send(&env, &raw).await, SendOutcome::Accepted(_)));
    // The connection now waits in the pool; its server goes silent (NOOP will never be answered).
    proxy.freeze(0);
    let (env, raw) = message("second@patients.test");
    let outcome = tokio::time::timeout(Duration::from_secs(120), pool.send(&env, &raw))
        .await
        .expect("the send hung on a pooled connection whose server stopped answering");
    assert!(matches!(outcome, SendOutcome::Accepted(_)), "{outcome:?}");
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 2, "the message went on over a new connection");
    assert_eq!(smtp.wait_for(2, 10).await.len(), 2);

    // Reused without a health check (recently used), the silent connection's reads give up: the
    // message is deferred (tried again later), and the next one goes over a new connection.
    let pool = SmtpPool::new(&pool_settings(proxy.port, short(Duration::from_secs(3600)))).unwrap();
    let (env, raw) = message("third@patients.test");
    assert!(matches!(pool.send(&env, &raw).await, SendOutcome::Accepted(_)));
    proxy.freeze(2);
    let (env, raw) = message("fourth@patients.test");
    let outcome = tokio::time::timeout(Duration::from_secs(120), pool.send(&env, &raw))
        .await
        .expect("the send hung on a connection whose server stopped answering");
    assert!(matches!(outcome, SendOutcome::Deferred(_)), "{outcome:?}");
    let (env, raw) = message("fifth@patients.test");
    assert!(matches!(pool.send(&env, &raw).await, SendOutcome::Accepted(_)));
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 4);
    let got = smtp.wait_for(4, 10).await;
    assert_eq!(got.len(), 4, "the deferred message never reached the server");
}
