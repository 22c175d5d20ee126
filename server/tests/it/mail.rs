//! The mail transport against real peers: a pooled SMTP connection whose server stops answering
//! (a real TCP peer that accepts and then never replies) cannot stop mail.

use crate::smtp::{SmtpServer, Tls, tools};
use service::mail::smtp::{SmtpPool, SmtpTimeouts};
use service::mail::{SendOutcome, SmtpSettings, TlsMode};
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

/// A message signed with the test key, as the wire carries it.
fn signed(dkim: &service::mail::Dkim) -> String {
    let m = lettre::Message::builder()
        .from("Lakeside Clinic <news@clinic.test>".parse().unwrap())
        .to("ann@patients.test".parse().unwrap())
        .subject("Your appointment")
        .body("See you on Monday.".to_string())
        .unwrap();
    String::from_utf8(dkim.sign(m.formatted(), 1_700_000_000).unwrap()).unwrap()
}

fn verifies(name: &str, message: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("hermetic-oversign-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.eml"));
    std::fs::write(&path, message).unwrap();
    let r = crate::smtp::dkim_verify("test", "clinic.test", &["From", "Subject"], &[path]);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[tokio::test]
async fn dkim_over_signs_from_and_subject_so_an_added_one_breaks_the_signature() {
    let pem = std::fs::read_to_string(tools().dkim.join("dkim.pem")).unwrap();
    let dkim = service::mail::Dkim::new("test", "clinic.test", &pem).unwrap();
    let message = signed(&dkim);
    let (ok, out) = verifies("as-sent", &message);
    assert!(ok, "the message as signed must verify: {out}");
    // h= names From and Subject once more than they appear: a header added after signing (at the
    // top, where mail clients look first, or anywhere) is covered by the signature and breaks it.
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    for (name, tampered) in [
        ("from-on-top", format!("From: Billing <pay@attacker.test>\r\n{message}")),
        ("from-at-end", format!("{head}\r\nFrom: Billing <pay@attacker.test>\r\n\r\n{body}")),
        ("subject-on-top", format!("Subject: Urgent: confirm your card\r\n{message}")),
        ("subject-at-end", format!("{head}\r\nSubject: Urgent: confirm your card\r\n\r\n{body}")),
    ] {
        let (ok, out) = verifies(name, &tampered);
        assert!(!ok, "{name}: a second From/Subject added after signing must fail DKIM: {out}");
    }
}

fn config_env(extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("HERMETIC_DATABASE_URL".into(), "postgres://x@127.0.0.1/db".into()),
        ("HERMETIC_ROOT_KEY".into(), crate::harness::ROOT_KEY.into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

async fn send_with(env: &[(String, String)]) -> SendOutcome {
    let config = server::config::FileConfig::load(None, env)
        .unwrap()
        .validate(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), env)
        .unwrap();
    assert!(!format!("{config:?}").contains("s3cret-relay-pass"), "the SMTP password in a Debug print");
    let service::mail::MailSettings::Smtp { smtp, .. } = &config.runtime.mail else { panic!("no relay configured") };
    let pool = SmtpPool::new(smtp).unwrap();
    let (e, raw) = message("auth@patients.test");
    pool.send(&e, &raw).await
}

#[tokio::test]
async fn the_smtp_password_comes_from_a_file_or_the_environment_and_authenticates() {
    let dir = std::env::temp_dir().join(format!("hermetic-smtp-auth-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let right = dir.join("right");
    let wrong = dir.join("wrong");
    std::fs::write(&right, "s3cret-relay-pass\n").unwrap();
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let smtp =
        SmtpServer::start(Tls::Required, &["--auth-user", "hermetic", "--auth-password-file", right.to_str().unwrap()]);
    let base = |password: Option<(&str, String)>| {
        let mut v: Vec<(&str, String)> = smtp.env();
        v.push(("HERMETIC_MAIL__SMTP_USERNAME", "hermetic".into()));
        v.extend(password);
        config_env(&v)
    };
    let from_file = base(Some(("HERMETIC_MAIL__SMTP_PASSWORD_FILE", right.display().to_string())));
    assert!(matches!(send_with(&from_file).await, SendOutcome::Accepted(_)));
    let from_env = base(Some(("HERMETIC_SMTP_PASSWORD", "s3cret-relay-pass".into())));
    assert!(matches!(send_with(&from_env).await, SendOutcome::Accepted(_)));
    let bad = base(Some(("HERMETIC_MAIL__SMTP_PASSWORD_FILE", wrong.display().to_string())));
    let outcome = send_with(&bad).await;
    assert_eq!(outcome, SendOutcome::Deferred("the mail server refused our credentials".into()));
    assert_eq!(smtp.wait_for(2, 10).await.len(), 2);
    // A password in the settings file itself is refused: it belongs in a file of its own.
    let inline = config_env(&[("HERMETIC_MAIL__SMTP_PASSWORD", "s3cret-relay-pass".into())]);
    let e = server::config::FileConfig::load(None, &inline).unwrap_err().to_string();
    assert!(!e.contains("s3cret-relay-pass"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
