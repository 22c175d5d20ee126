//! Outgoing webhooks against real PostgreSQL, a real SMTP server process and a real HTTP endpoint
//! in the test (axum on loopback, allowed by `webhooks.allow_private`): campaign outcomes, opens,
//! clicks and unsubscribes reach the endpoint signed (verified by Python's `hmac`) and without
//! PHI; a failing endpoint is retried with growing delays for 24 h then given up; 410 disables an
//! endpoint; loopback, private and `http://` endpoints are refused at registration and at delivery
//! without the development setting; hostile form input is refused without echo.

use crate::campaigns::{contact, find_url, header, list_with, path_of, settings, start, template};
use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, mime};
use domain::Role;
use domain::campaigns::CampaignStatus;
use domain::webhooks::EndpointInput;
use service::{Actor, ServiceError};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const MARKER: &str = "PHI-MARKER-Vx93q";

/// One request the endpoint received: its headers and raw body.
type Request = (http::HeaderMap, Vec<u8>);

/// A real HTTP endpoint: records every request (headers and raw body) and answers `status`.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Endpoint {
    pub(crate) async fn start(status: u16) -> Endpoint {
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let (s, st) = (seen.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let (s, st) = (s.clone(), st.clone());
                async move {
                    s.lock().unwrap().push((headers, body.to_vec()));
                    http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Endpoint { url: format!("http://127.0.0.1:{port}/hook"), port, seen, status, stop: Some(tx) }
    }

    pub(crate) fn bodies(&self) -> Vec<(http::HeaderMap, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, pred: impl Fn(&[serde_json::Value]) -> bool, secs: u64) -> Vec<serde_json::Value> {
        for _ in 0..secs * 10 {
            let v: Vec<serde_json::Value> =
                self.bodies().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
            if pred(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the endpoint never got what was expected; it got {:?}", self.bodies().len());
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn input(url: &str, events: &[&str]) -> EndpointInput {
    EndpointInput { url: url.into(), events: events.iter().map(|s| s.to_string()).collect(), enabled: true }
}

/// `Hermetic-Signature` computed by an independent implementation (Python's hmac), for the
/// timestamp the header names.
fn python_verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    let t = header.split(',').find_map(|p| p.strip_prefix("t=")).unwrap();
    let dir = tempdir();
    let f = dir.join("body");
    std::fs::write(&f, body).unwrap();
    let out = std::process::Command::new(&crate::smtp::tools().python)
        .args([
            "-c",
            "import hmac,hashlib,sys; b=open(sys.argv[3],'rb').read(); \
             want=dict(p.split('=',1) for p in sys.argv[4].split(',')); \
             mac=hmac.new(sys.argv[1].encode(), sys.argv[2].encode()+b'.'+b, hashlib.sha256).hexdigest(); \
             print('ok' if hmac.compare_digest(mac, want['v1']) else 'bad')",
            secret,
            t,
            f.to_str().unwrap(),
            header,
        ])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim() == "ok"
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hermetic-wh-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn delivery_events_reach_the_endpoint_signed_and_without_phi() {
    let hook = Endpoint::start(200).await;
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[("HERMETIC_WEBHOOKS__ALLOW_PRIVATE", "true".into())]).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let created = service::webhooks::create(
        svc,
        &actor,
        input(
            &hook.url,
            &["message.sent", "message.bounced", "message.opened", "message.clicked", "contact.unsubscribed"],
        ),
    )
    .await
    .unwrap();
    assert!(created.secret.starts_with("hm_whsec_"));
    // PHI markers in the contacts (address and name, used as merge data by the template).
    let a = contact(svc, &actor, &format!("ann-{}@patients.test", MARKER.to_lowercase()), MARKER, true).await;
    let b = contact(svc, &actor, "bob@patients.test", &format!("Bob {MARKER}"), true).await;
    let list = list_with(svc, &actor, &[a, b]).await;
    let t = template(svc, &actor).await;
    let id = service::campaigns::create(svc, &actor, &settings("Spring", list, t)).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    let msgs = smtp.wait_for(2, 60).await;
    let sent = hook.wait_for(|v| v.iter().filter(|b| b["type"] == "message.sent").count() == 2, 60).await;
    for e in sent.iter().filter(|e| e["type"] == "message.sent") {
        assert_eq!(e["data"]["campaign_id"], id.to_string());
        assert_eq!(e["data"]["state"], "sent");
        assert_eq!(e["data"]["source"], "campaign");
        assert!([a.to_string(), b.to_string()].contains(&e["data"]["contact_id"].as_str().unwrap().to_string()));
    }
    for _ in 0..100 {
        if service::campaigns::progress(svc, &actor, id).await.unwrap().status == CampaignStatus::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An open, a click and a one-click unsubscribe from Ann's message.
    let m = msgs.iter().map(|(p, _)| mime(p)).find(|m| header(m, "to").starts_with("ann-")).unwrap();
    let html = m["html"].as_str().unwrap().to_string();
    let web = app.client();
    const MAIL: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    app.advance(120);
    assert_eq!(web.get_with(&path_of(&find_url(&html, "/t/o/")), &[("user-agent", MAIL)]).await.status, 200);
    assert_eq!(web.get_with(&path_of(&find_url(&html, "/t/c/")), &[("user-agent", MAIL)]).await.status, 302);
    let unsub = header(&m, "list-unsubscribe").trim_matches(['<', '>']).to_string();
    let r = web
        .post_raw(&path_of(&unsub), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click".into(), None, &[])
        .await;
    assert_eq!(r.status, 200);
    let all = hook
        .wait_for(
            |v| {
                ["message.opened", "message.clicked", "contact.unsubscribed"]
                    .iter()
                    .all(|t| v.iter().any(|b| b["type"] == *t))
            },
            30,
        )
        .await;
    let click = all.iter().find(|b| b["type"] == "message.clicked").unwrap();
    assert_eq!(click["data"]["contact_id"], a.to_string());
    assert!(click["data"]["link"].is_i64(), "a click names the link by its position: {click}");
    let unsub = all.iter().find(|b| b["type"] == "contact.unsubscribed").unwrap();
    assert_eq!(unsub["data"]["contact_id"], a.to_string());
    assert_eq!(unsub["data"]["purposes"], serde_json::json!(["marketing"]));

    // Every request: signed over its raw body (Python's hmac agrees), ids and codes only.
    let got = hook.bodies();
    assert!(got.len() >= 5);
    let mut ids = std::collections::BTreeSet::new();
    for (headers, body) in &got {
        let sig = headers.get("hermetic-signature").unwrap().to_str().unwrap();
        assert!(python_verifies(&created.secret, sig, body), "signature of {}", String::from_utf8_lossy(body));
        assert!(!python_verifies("hm_whsec_wrong", sig, body));
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        let text = String::from_utf8_lossy(body).to_lowercase();
        for needle in [MARKER.to_lowercase().as_str(), "patients.test", "ann", "bob", "/l/unsubscribe", "/t/c/", "http"]
        {
            assert!(!text.contains(needle), "a payload holds {needle:?}: {text}");
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let keys: std::collections::BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["created_at", "data", "id", "type"].into_iter().collect());
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), got.len(), "each event has its own id");
    // The settings page's view lists the attempts.
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    assert_eq!(view.len(), 1);
    assert!(view[0].attempts.iter().all(|a| a.status == Some(200) && a.state == "delivered"));
    assert!(!view[0].attempts.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_growing_delays_for_a_day_and_410_disables_it() {
    let hook = Endpoint::start(500).await;
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_WEBHOOKS__ALLOW_PRIVATE", "true".into())],
        ..Default::default()
    })
    .await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let ep = service::webhooks::create(svc, &actor, input(&hook.url, &["message.sent"])).await.unwrap();
    let delivery = service::webhooks::send_test(svc, &actor, ep.id).await.unwrap();
    let db = app.db.connect().await;
    let start = app.now();
    let mut delays = Vec::new();
    let mut tries = 0;
    loop {
        service::webhooks::deliver(svc, delivery).await.unwrap();
        tries += 1;
        let (state, next): (String, Option<chrono::DateTime<chrono::Utc>>) = {
            let row = sea_orm::ConnectionTrait::query_one_raw(
                &db,
                sea_orm::Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    "SELECT state, next_attempt_at FROM webhook_delivery WHERE id = $1",
                    [delivery.into()],
                ),
            )
            .await
            .unwrap()
            .unwrap();
            (row.try_get("", "state").unwrap(), row.try_get("", "next_attempt_at").unwrap())
        };
        let Some(next) = next else {
            assert_eq!(state, "failed");
            break;
        };
        assert_eq!(state, "pending");
        // The retry is its own job, due at exactly that time.
        let run_at: chrono::DateTime<chrono::Utc> = sea_orm::ConnectionTrait::query_one_raw(
            &db,
            sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT run_at FROM apalis.jobs WHERE job_type = 'webhook-delivery' AND idempotency_key = $1",
                [format!("wh:{delivery}:{tries}").into()],
            ),
        )
        .await
        .unwrap()
        .expect("a job for the next try")
        .try_get("", "run_at")
        .unwrap();
        assert_eq!(run_at.timestamp(), next.timestamp());
        let d = (next - app.now()).num_seconds();
        delays.push(d);
        app.clock.advance(next - app.now());
        assert!(tries < 40, "never given up");
    }
    // 30 s doubling (+ up to 20 % jitter), capped; given up within 24 h of the event.
    assert!((30..=36).contains(&delays[0]), "{delays:?}");
    assert!((60..=72).contains(&delays[1]), "{delays:?}");
    assert!(delays.windows(2).all(|w| w[1] >= w[0] || w[0] >= 4 * 3600), "{delays:?}");
    assert!(app.now() - start <= chrono::Duration::hours(24));
    assert!(app.now() - start >= chrono::Duration::hours(18), "{delays:?}");
    assert_eq!(hook.bodies().len(), tries, "one request per attempt");
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    let last = &view[0].attempts[0];
    assert_eq!((last.status, last.state.as_str(), last.next_attempt_at), (Some(500), "failed", None));
    assert_eq!(last.attempt as usize, tries);
    assert_eq!(view[0].attempts.len(), 10, "the page shows the last ten attempts");

    // 410 Gone ends the delivery and turns the endpoint off (audited).
    hook.status.store(410, Ordering::SeqCst);
    let d2 = service::webhooks::send_test(svc, &actor, ep.id).await.unwrap();
    service::webhooks::deliver(svc, d2).await.unwrap();
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    assert!(!view[0].enabled);
    assert_eq!(view[0].disabled_reason.as_deref(), Some("gone"));
    // A 2xx ends a delivery at once.
    hook.status.store(204, Ordering::SeqCst);
    service::webhooks::update(svc, &actor, ep.id, input(&hook.url, &["message.sent"])).await.unwrap();
    let d3 = service::webhooks::send_test(svc, &actor, ep.id).await.unwrap();
    service::webhooks::deliver(svc, d3).await.unwrap();
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    assert!(view[0].enabled && view[0].disabled_reason.is_none());
    assert_eq!((view[0].attempts[0].status, view[0].attempts[0].state.as_str()), (Some(204), "delivered"));
    // Rotation changes the secret the next delivery is signed with.
    let rotated = service::webhooks::rotate_secret(svc, &actor, ep.id).await.unwrap();
    let d4 = service::webhooks::send_test(svc, &actor, ep.id).await.unwrap();
    service::webhooks::deliver(svc, d4).await.unwrap();
    let (h, body) = hook.bodies().pop().unwrap();
    let sig = h.get("hermetic-signature").unwrap().to_str().unwrap();
    assert!(python_verifies(&rotated, sig, &body));
    assert!(!python_verifies(&ep.secret, sig, &body));
    // Finished deliveries (two given up, two delivered) are deleted by maintenance after 30 days,
    // with their attempts; a pending one would be kept.
    app.advance(31 * 86_400);
    assert_eq!(service::maintenance::run(svc).await.unwrap().webhooks_purged, 4);
    assert!(service::webhooks::list(svc, &actor).await.unwrap()[0].attempts.is_empty());
    service::webhooks::delete(svc, &actor, ep.id).await.unwrap();
    assert!(service::webhooks::list(svc, &actor).await.unwrap().is_empty());
    // Each change is in the audit trail.
    let actions: Vec<String> = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT action FROM audit_event WHERE action LIKE 'webhook.%' ORDER BY seq",
        ),
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "action").unwrap())
    .collect();
    assert_eq!(
        actions,
        ["webhook.created", "webhook.disabled", "webhook.changed", "webhook.secret_rotated", "webhook.deleted"]
    );
    db.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn private_loopback_and_http_endpoints_are_refused_at_registration_and_at_delivery() {
    let hook = Endpoint::start(200).await;
    let app = TestApp::start().await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let long = format!("https://example.com/{}", "a".repeat(5000));
    let refused_url = [
        hook.url.clone(),
        format!("https://127.0.0.1:{}/hook", hook.port),
        format!("https://localhost:{}/hook", hook.port),
        "https://10.1.2.3/h".into(),
        "https://192.168.0.10/h".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://100.64.0.1/h".into(),
        "https://[::1]/h".into(),
        "https://[fd00::1]/h".into(),
        "https://[::ffff:127.0.0.1]/h".into(),
        "https://0.0.0.0/h".into(),
        "https://user:pw@93.184.216.34/h".into(),
        "javascript:alert(1)".into(),
        "ftp://93.184.216.34/h".into(),
        "https://93.184.216.34/h#x".into(),
        format!("https://93.184.216.34/{MARKER}\u{0}"),
        long.clone(),
        String::new(),
    ];
    for url in &refused_url {
        let e = service::webhooks::create(svc, &actor, input(url, &["message.sent"])).await;
        let Err(ServiceError::Invalid(domain::DomainError::Invalid { field, reason })) = e else {
            panic!("{url:.80} was not refused as invalid: {:?}", e.map(|c| c.id))
        };
        assert_eq!(field, "url", "{url:.80}");
        assert!(!reason.contains(MARKER) && !reason.contains("127.0.0.1") && reason.len() < 200);
    }
    for events in [&[][..], &["message.deleted"], &["message.sent", "<script>"], &["MESSAGE.SENT"]] {
        let e = service::webhooks::create(svc, &actor, input("https://93.184.216.34/h", events)).await;
        assert!(
            matches!(&e, Err(ServiceError::Invalid(domain::DomainError::Invalid { field, .. })) if field == "events"),
            "{events:?}"
        );
    }
    let many: Vec<String> = (0..1000).map(|_| "message.sent".to_string()).collect();
    let e = service::webhooks::create(
        svc,
        &actor,
        EndpointInput { url: "https://93.184.216.34/h".into(), events: many, enabled: true },
    )
    .await;
    assert!(e.is_err());

    // Through the real route as the administrator: the problem names the field, never the value.
    let (admin, _) = app.sign_in("admin@lakeside.test", None).await;
    let (status, body) = admin
        .call_json(
            "create_webhook",
            serde_json::json!({"endpoint": {"url": format!("https://{MARKER}.invalid\u{7f}/"), "events": ["message.sent"], "enabled": true}}),
        )
        .await;
    assert_ne!(status, 200);
    assert!(!body.to_string().contains(MARKER), "{body}");
    let (status, body) = admin
        .call_json(
            "create_webhook",
            serde_json::json!({"endpoint": {"url": long, "events": ["nope"], "enabled": true}}),
        )
        .await;
    assert_ne!(status, 200);
    assert!(body.to_string().len() < 1000);
    let (status, _) = admin.call_json("create_webhook", serde_json::json!({"endpoint": {"url": 5}})).await;
    assert_ne!(status, 200);
    // Marketers and analysts may not manage webhooks (the service refuses them).
    app.add_user(org, "marketer@lakeside.test", Role::Marketer).await;
    let (marketer, _) = app.sign_in("marketer@lakeside.test", None).await;
    let (status, _) = marketer.call("list_webhooks", &[]).await;
    assert_eq!(status, 403);

    // At delivery: an endpoint registered on a public address whose host now points at loopback
    // (DNS rebinding, here an edit behind the guard's back) is refused, and nothing is sent.
    let ep = service::webhooks::create(svc, &actor, input("https://93.184.216.34/h", &["message.sent"])).await.unwrap();
    app.sql(&format!(
        "UPDATE webhook_endpoint SET url = 'https://localhost:{}/hook' WHERE id = '{}'",
        hook.port, ep.id
    ))
    .await;
    let d = service::webhooks::send_test(svc, &actor, ep.id).await.unwrap();
    service::webhooks::deliver(svc, d).await.unwrap();
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    let a = &view.iter().find(|e| e.id == ep.id).unwrap().attempts[0];
    assert_eq!((a.status, a.error.as_deref(), a.state.as_str()), (None, Some("refused_address"), "pending"));
    app.sql(&format!("UPDATE webhook_endpoint SET url = '{}' WHERE id = '{}'", hook.url, ep.id)).await;
    service::webhooks::deliver(svc, d).await.unwrap();
    let view = service::webhooks::list(svc, &actor).await.unwrap();
    let a = &view.iter().find(|e| e.id == ep.id).unwrap().attempts[0];
    assert_eq!(a.error.as_deref(), Some("refused_address"), "plain http is refused at delivery too");
    assert!(hook.bodies().is_empty(), "no request reached a private address");
    app.stop().await;
}
