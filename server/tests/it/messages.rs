//! Transactional messages through the API (`POST /api/v1/messages`, `GET /api/v1/messages/{id}`)
//! against real PostgreSQL, real HTTP and a real SMTP server process: one message reaches the
//! capture exactly once (From the verified domain, no list headers, over TLS), a retried request
//! with the same Idempotency-Key sends nothing more, suppressed and withdrawn contacts are refused
//! with their codes and nothing is sent, unknown and foreign templates are refused with a pointer,
//! hostile bodies never echo a value, the status moves to `sent` and engagement follows a real
//! tracked open and click, scopes and tenants are kept apart, and the PHI marker sent in `data`
//! appears in no log, job payload or plaintext column.

use crate::api::{Key, call, json_of, key};
use crate::campaigns::{contact, find_url, header, path_of, start, template};
use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, mime};
use domain::Role;
use domain::api::Scope;
use domain::contacts::{ConsentPurpose, SuppressionReason};
use reqwest::Method;
use serde_json::{Value, json};
use service::Actor;
use std::time::Duration;
use uuid::Uuid;

const MARKER: &str = "PHI-MARKER-Tq48z";

fn problem_of(r: &Resp, status: u16, code: &str, pointer: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let j = json_of(r);
    assert_eq!(j["code"], code, "{}", r.body);
    if let Some(p) = pointer {
        assert_eq!(j["pointer"], p, "{}", r.body);
    }
    assert!(!r.body.contains(MARKER), "a problem echoed the marker: {}", r.body);
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let v = service::db::scalar::<i64, _>(&db, sql, []).await.unwrap().unwrap_or(0);
    db.close().await.unwrap();
    v
}

async fn texts(app: &TestApp, sql: &str) -> Vec<String> {
    let db = app.db.connect().await;
    let v = service::db::scalars::<String, _>(&db, sql, []).await.unwrap();
    db.close().await.unwrap();
    v
}

async fn get_message(c: &Client, k: &Key, id: &str) -> Resp {
    call(c, Method::GET, &format!("/api/v1/messages/{id}"), Some(&k.secret), &Value::Null, &[]).await
}

async fn wait_for_status(c: &Client, k: &Key, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = get_message(c, k, id).await;
        assert_eq!(r.status, 200, "{}", r.body);
        last = json_of(&r);
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the message never reached {want}: {last}");
}

#[tokio::test]
async fn a_message_is_sent_once_through_the_pipeline_and_its_status_and_engagement_follow() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    // Ann never opted into anything: transactional mail needs no grant.
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", false).await;
    contact(svc, &actor, "blocked@patients.test", "Blocked", true).await;
    service::contacts::suppression::add(svc, &actor, "blocked@patients.test", SuppressionReason::Manual).await.unwrap();
    let withdrawn = contact(svc, &actor, "gone@patients.test", "Gone", true).await;
    service::contacts::consent::record(svc, &actor, withdrawn, ConsentPurpose::Transactional, false, None)
        .await
        .unwrap();
    let t = template(svc, &actor).await;
    let foreign_template = template(svc, &Actor::system(other, "test")).await;
    let sender = key(&app, org, &[Scope::MessagesSend], false).await;
    let events_only = key(&app, org, &[Scope::EventsWrite], false).await;
    let reports = key(&app, org, &[Scope::ReportsRead], false).await;
    let foreign = key(&app, other, &[Scope::MessagesSend], false).await;
    let c = app.client();

    // Accepted: 202 {id, status: queued}; the same key and body again: the same answer, nothing new.
    let body = json!({"contact": {"email": "Ann@Patients.test"}, "template": t, "data": {"note": MARKER, "slot": 3}});
    let idem = [("idempotency-key", "msg-1")];
    let r = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &body, &idem).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let accepted = json_of(&r);
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap().to_string();
    let again = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &body, &idem).await;
    assert_eq!((again.status, json_of(&again)), (202, accepted.clone()));
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    let other_body = json!({"contact": {"id": ann}, "template": t});
    let r = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &other_body, &idem).await;
    problem_of(&r, 422, "idempotency_key_reused", None);
    assert_eq!(scalar(&app, "SELECT count(*) FROM api_message").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM delivery WHERE source = 'api_message'").await, 1);

    // It reaches the SMTP capture exactly once: right From, To and subject, no list headers.
    let msgs = smtp.wait_for(1, 30).await;
    let m = mime(&msgs[0].0);
    assert_eq!(header(&m, "to"), "ann@patients.test");
    assert!(header(&m, "from").contains("@clinic.test"), "{}", header(&m, "from"));
    assert!(header(&m, "from").contains("Lakeside"), "{}", header(&m, "from"));
    assert_eq!(header(&m, "subject"), "Spring check-ups");
    assert_eq!(header(&m, "x-hermetic-delivery"), id);
    assert!(m["headers"]["list-unsubscribe"].is_null(), "transactional mail is not list mail: {m}");
    assert!(m["headers"]["list-unsubscribe-post"].is_null());
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(msgs[0].0.with_extension("json")).unwrap()).unwrap();
    assert_eq!(envelope["tls"], true, "sent over TLS only");
    let html = m["html"].as_str().unwrap().to_string();
    assert!(html.contains("Hello Ann"), "rendered for the contact");
    assert!(!html.contains(MARKER), "data is not in a template that does not use it");

    // The status moves to sent, with the SMTP code and no contact data.
    let v = wait_for_status(&c, &sender, &id, "sent").await;
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["template"], t.to_string());
    assert_eq!(v["contact"], ann.to_string());
    assert!(v["sent_at"].is_string());
    assert!(v["smtp_status"].as_str().unwrap().starts_with("250"));
    let text = v.to_string();
    assert!(!text.contains("patients.test") && !text.contains("Ann") && !text.contains(MARKER));

    // Engagement: an open right after delivery is a machine's (prefetch), a later one a person's;
    // a click on a tracked link redirects to the template's own link.
    let pixel = path_of(&find_url(&html, "/t/o/"));
    let click = path_of(&find_url(&html, "/t/c/"));
    const IPHONE_MAIL: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    let person = [("user-agent", IPHONE_MAIL)];
    let web = app.client();
    assert_eq!(web.get_with(&pixel, &person).await.status, 200);
    app.advance(120);
    assert_eq!(web.get_with(&pixel, &person).await.status, 200);
    let r = web.get_with(&click, &person).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers.get("location").unwrap(), "https://clinic.example/visit?utm=spring&x=1");
    let mut v = Value::Null;
    for _ in 0..50 {
        v = json_of(&get_message(&c, &sender, &id).await);
        if v["opened"]["human"] == 1 && v["clicked"]["human"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["opened"]["human"], 1, "{v}");
    assert_eq!(v["opened"]["machine"], 1, "{v}");
    assert!(v["opened"]["first_human_at"].is_string() && v["opened"]["first_at"].is_string(), "{v}");
    assert_eq!(v["clicked"]["human"], 1, "{v}");
    assert_eq!(v["status"], "sent");

    // Refusals: nothing is queued and nothing is sent.
    let send = |b: Value| {
        let c = &c;
        let k = sender.secret.clone();
        async move { call(c, Method::POST, "/api/v1/messages", Some(&k), &b, &[]).await }
    };
    problem_of(
        &send(json!({"contact": {"email": "blocked@patients.test"}, "template": t})).await,
        422,
        "recipient_suppressed",
        Some("/contact"),
    );
    problem_of(
        &send(json!({"contact": {"id": withdrawn}, "template": t})).await,
        422,
        "consent_withdrawn",
        Some("/contact"),
    );
    problem_of(
        &send(json!({"contact": {"id": ann}, "template": Uuid::now_v7()})).await,
        422,
        "unknown_template",
        Some("/template"),
    );
    problem_of(
        &send(json!({"contact": {"id": ann}, "template": foreign_template})).await,
        422,
        "unknown_template",
        Some("/template"),
    );
    problem_of(
        &send(json!({"contact": {"email": "nobody@patients.test"}, "template": t})).await,
        422,
        "unknown_contact",
        Some("/contact/email"),
    );
    // Another organisation's key cannot name this organisation's contact or template.
    let r = call(
        &c,
        Method::POST,
        "/api/v1/messages",
        Some(&foreign.secret),
        &json!({"contact": {"id": ann}, "template": t}),
        &[],
    )
    .await;
    problem_of(&r, 422, "unknown_contact", Some("/contact/id"));

    // Hostile bodies: problems that never echo a value.
    let big = "x".repeat(10 * 1024);
    let deep = format!("{}{}", "[".repeat(64), "]".repeat(64));
    let raw = |bytes: Vec<u8>| {
        let c = &c;
        let auth = format!("Bearer {}", sender.secret);
        async move {
            c.send(
                Method::POST,
                "/api/v1/messages",
                &[("content-type", "application/json"), ("authorization", &auth)],
                bytes,
            )
            .await
        }
    };
    let hostile: Vec<(Vec<u8>, u16, &str, Option<&str>)> = vec![
        (
            json!({"contact": {"id": ann}, "template": t, MARKER: 1}).to_string().into_bytes(),
            422,
            "unknown_field",
            None,
        ),
        (
            json!({"contact": {"id": ann}, "template": t, "data": {"note": big}}).to_string().into_bytes(),
            422,
            "invalid_field",
            Some("/data/note"),
        ),
        (deep.into_bytes(), 400, "json_too_deep", None),
        (
            {
                let mut b =
                    format!(r#"{{"contact": {{"id": "{ann}"}}, "template": "{t}", "data": {{"note": "{MARKER}"#)
                        .into_bytes();
                b.extend_from_slice(&[0xff, 0xfe, b'"', b'}', b'}']);
                b
            },
            400,
            "invalid_json",
            None,
        ),
        (
            json!({"contact": {"id": ann}, "template": 42}).to_string().into_bytes(),
            422,
            "invalid_field",
            Some("/template"),
        ),
        (json!({"contact": [MARKER], "template": t}).to_string().into_bytes(), 422, "invalid_field", Some("/contact")),
        (
            json!({"contact": {"email": MARKER}, "template": t}).to_string().into_bytes(),
            422,
            "invalid_field",
            Some("/contact/email"),
        ),
        (
            json!({"contact": {"id": ann}, "template": t, "data": {"x": {"y": MARKER}}}).to_string().into_bytes(),
            422,
            "invalid_field",
            Some("/data/x"),
        ),
        (
            json!({"contact": {"id": ann}, "template": t, "data": [MARKER]}).to_string().into_bytes(),
            422,
            "invalid_field",
            Some("/data"),
        ),
        (b"not json".to_vec(), 400, "invalid_json", None),
    ];
    for (bytes, status, code, pointer) in hostile {
        problem_of(&raw(bytes).await, status, code, pointer);
    }

    // Scopes and tenants: a key without messages:send gets 403 on both routes (reports:read
    // included); another organisation's key finds no such message.
    for k in [&events_only, &reports] {
        let r = call(&c, Method::POST, "/api/v1/messages", Some(&k.secret), &body, &[]).await;
        problem_of(&r, 403, "forbidden", None);
        problem_of(&get_message(&c, k, &id).await, 403, "forbidden", None);
    }
    problem_of(&get_message(&c, &foreign, &id).await, 404, "not_found", None);
    problem_of(&get_message(&c, &sender, &Uuid::now_v7().to_string()).await, 404, "not_found", None);
    problem_of(&get_message(&c, &sender, "not-a-uuid").await, 404, "not_found", None);

    // Still exactly one message sent, one accepted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1, "exactly one message reached the SMTP server");
    assert_eq!(scalar(&app, "SELECT count(*) FROM api_message").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM delivery_queue").await, 0);

    // The PHI marker: sealed in api_message.data, nowhere in plaintext columns, job payloads or logs.
    for sql in [
        "SELECT row_to_json(t)::text FROM api_message t",
        "SELECT row_to_json(t)::text FROM delivery t",
        "SELECT row_to_json(t)::text FROM api_idempotency t",
        "SELECT row_to_json(t)::text FROM engagement_event t",
    ] {
        let rows = texts(&app, sql).await;
        assert!(!rows.is_empty(), "{sql} found nothing to check");
        for row in rows {
            assert!(!row.contains(MARKER) && !row.contains("patients.test"), "{sql}: {row}");
        }
    }
    // No job per message (the sender loops claim due queue rows); no job payload holds it either.
    for row in texts(&app, "SELECT convert_from(job, 'UTF8') FROM apalis.jobs").await {
        assert!(!row.contains(MARKER) && !row.contains("patients.test") && !row.contains(&id), "a job: {row}");
    }
    let sealed = scalar(&app, "SELECT count(*) FROM api_message WHERE data IS NOT NULL").await;
    assert_eq!(sealed, 1);
    app.stop().await;
    let log = std::fs::read_to_string(log_file()).unwrap_or_default();
    assert!(!log.contains(MARKER), "the PHI marker reached the log");
}

/// A deferral is the same queue row with a later `not_before`: nothing is attempted before the
/// retry is due, and when it is, a sender loop attempts it once more — over TLS or not at all.
#[tokio::test]
async fn a_deferred_message_is_attempted_again_when_its_retry_is_due() {
    let smtp = SmtpServer::start(Tls::None, &[]);
    let app = start(&smtp, &[]).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let ann = contact(&app.services, &actor, "ann@patients.test", "Ann", false).await;
    let t = template(&app.services, &actor).await;
    let sender = key(&app, org, &[Scope::MessagesSend], false).await;
    let c = app.client();
    let r = call(
        &c,
        Method::POST,
        "/api/v1/messages",
        Some(&sender.secret),
        &json!({"contact": {"id": ann}, "template": t}),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = json_of(&r)["id"].as_str().unwrap().to_string();
    // The relay offers no STARTTLS: deferred, never sent in plaintext.
    let v = wait_for_status(&c, &sender, &id, "deferred").await;
    assert_eq!(v["attempts"], 1, "{v}");
    assert!(smtp.messages().is_empty());
    // Not before its time.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(json_of(&get_message(&c, &sender, &id).await)["attempts"], 1, "not retried early");
    app.advance(6 * 3600);
    let mut v = Value::Null;
    for _ in 0..200 {
        v = json_of(&get_message(&c, &sender, &id).await);
        if v["attempts"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["attempts"], 2, "attempted again: {v}");
    assert_eq!(v["status"], "deferred");
    assert!(smtp.messages().is_empty(), "still never sent without TLS");
    app.stop().await;
}
