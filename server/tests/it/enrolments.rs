//! Explicit enrolments through the API (`POST /api/v1/sequences/{id}/enrolments`) over real HTTP,
//! a real database, the app's own workers and a real SMTP server: a key with `events:write`
//! enrols existing contacts by id and by address in a live sequence, the engine sends the first
//! email, idempotency replays the answer without a second enrolment, the entry rule and the
//! sequence's status refuse with their own codes, scopes and organisations are enforced, hostile
//! bodies are refused without enrolling anybody or echoing a value, and each enrolment is in the
//! audit trail with the key.

use crate::api::{call, json_of, key};
use crate::campaigns::contact;
use crate::harness::*;
use crate::sequences::{publish, received, scalar, settle, state_of, template, to};
use domain::Role;
use domain::api::Scope;
use domain::sequences::SequenceStatus;
use reqwest::Method;
use serde_json::json;
use service::Actor;
use uuid::Uuid;

const MARKER: &str = "PHI-MARKER-Vx93q";

fn path(sequence: impl std::fmt::Display) -> String {
    format!("/api/v1/sequences/{sequence}/enrolments")
}

fn problem_of(r: &Resp) -> (u16, String, String) {
    let v = json_of(r);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{} {}",
        r.status,
        r.body
    );
    (
        r.status,
        v["code"].as_str().unwrap_or_default().to_string(),
        v["pointer"].as_str().unwrap_or_default().to_string(),
    )
}

async fn enrolments(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM enrolment").await
}

#[tokio::test]
async fn an_integration_enrols_existing_contacts_in_a_live_sequence_once() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let bob = contact(svc, &actor, "bob@patients.test", "Bob", true).await;
    let welcome = template(svc, &actor, "Welcome to the care programme").await;
    let seq = publish(
        svc,
        &actor,
        "Care programme",
        json!({
            "version": 1,
            "trigger": {"kind": "manual"},
            "entry": "once_ever",
            "start": "welcome",
            "steps": [{"id": "welcome", "kind": "send_email", "template": welcome, "purpose": "transactional", "next": null}]
        }),
    )
    .await;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();

    // By id, with an Idempotency-Key: 201 with the enrolment's id, and the row exists.
    let idem = Uuid::new_v4().to_string();
    let by_id = json!({"contact": {"id": ann}});
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_id, &[("idempotency-key", &idem)]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    let first = json_of(&r);
    assert_eq!(first["sequence_id"], seq.to_string());
    assert_eq!(first["status"], "active");
    let enrolment: Uuid = first["enrolment_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT count(*) FROM enrolment WHERE id = '{enrolment}' AND contact_id = '{ann}' AND sequence_id = '{seq}' AND organisation_id = '{}'",
                org.0
            )
        )
        .await,
        1
    );
    // The same request again: the stored answer, nobody enrolled twice.
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_id, &[("idempotency-key", &idem)]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(json_of(&r), first);
    assert_eq!(enrolments(&app).await, 1);
    // The same key with another body: refused, nothing enrolled.
    let by_email = json!({"contact": {"email": " Bob@Patients.TEST "}});
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_email, &[("idempotency-key", &idem)]).await;
    assert_eq!(problem_of(&r).1, "idempotency_key_reused", "{}", r.body);
    assert_eq!(r.status, 422);
    assert_eq!(enrolments(&app).await, 1);
    // By address (matched through the blind index, case and spaces aside).
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_email, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.contains("patients.test") && !r.body.to_lowercase().contains("bob"), "{}", r.body);
    assert_eq!(state_of(&app, bob).await.len(), 1);

    // The engine runs the first step: each gets the welcome email, once.
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(to("ann@patients.test", &got), vec!["Welcome to the care programme"]);
    assert_eq!(to("bob@patients.test", &got), vec!["Welcome to the care programme"]);
    assert_eq!(state_of(&app, ann).await, vec!["completed:completed:"]);

    // Once ever: a second enrolment is refused with its own code, and nothing changes.
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_id, &[]).await;
    assert_eq!(problem_of(&r), (409, "already_enrolled".into(), "/contact".into()), "{}", r.body);
    assert_eq!(enrolments(&app).await, 2);

    // Each enrolment is in the audit trail, by the key.
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT count(*) FROM audit_event WHERE action = 'sequence.contact_enrolled' AND actor_kind = 'api_key'
                 AND details::text LIKE '%{}%' AND details::text LIKE '%{seq}%'",
                k.id
            )
        )
        .await,
        2
    );

    // Unknown contacts (never created), by id and by an address holding the PHI marker.
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &json!({"contact": {"id": Uuid::now_v7()}}), &[]).await;
    assert_eq!(problem_of(&r), (422, "unknown_contact".into(), "/contact/id".into()), "{}", r.body);
    let phi = json!({"contact": {"email": format!("{MARKER}@patients.test")}});
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &phi, &[]).await;
    assert_eq!(problem_of(&r), (422, "unknown_contact".into(), "/contact/email".into()), "{}", r.body);
    assert!(!r.body.to_lowercase().contains(&MARKER.to_lowercase()), "{}", r.body);
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, 2, "an enrolment never creates a contact");

    // Scope: a key without events:write is refused before anything is looked at.
    let other_scopes = key(&app, org, &[Scope::ContactsRead, Scope::ContactsWrite, Scope::MessagesSend], false).await;
    let r = call(&c, Method::POST, &path(seq), Some(&other_scopes.secret), &by_email, &[]).await;
    assert_eq!((problem_of(&r).0, problem_of(&r).1.as_str()), (403, "forbidden"), "{}", r.body);
    // Another organisation's key, an unknown sequence, a path that is not an id: 404 alike.
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let foreign = key(&app, other, &[Scope::EventsWrite], false).await;
    let outsider = contact(svc, &Actor::system(other, "test"), "ann@patients.test", "Ann", true).await;
    let r = call(&c, Method::POST, &path(seq), Some(&foreign.secret), &json!({"contact": {"id": outsider}}), &[]).await;
    assert_eq!((problem_of(&r).0, problem_of(&r).1.as_str()), (404, "not_found"), "{}", r.body);
    for p in [path(Uuid::now_v7()), path("not-a-uuid")] {
        let r = call(&c, Method::POST, &p, Some(&k.secret), &by_id, &[]).await;
        assert_eq!((problem_of(&r).0, problem_of(&r).1.as_str()), (404, "not_found"), "{p}: {}", r.body);
    }
    // A contact of another organisation is not this organisation's contact.
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &json!({"contact": {"id": outsider}}), &[]).await;
    assert_eq!(problem_of(&r).1, "unknown_contact", "{}", r.body);
    assert_eq!(enrolments(&app).await, 2);

    // Not live: a draft never published, then the live sequence paused.
    let cara = contact(svc, &actor, "cara@patients.test", "Cara", true).await;
    let draft = service::sequences::create(svc, &actor, "Not yet").await.unwrap();
    let by_cara = json!({"contact": {"id": cara}});
    let r = call(&c, Method::POST, &path(draft), Some(&k.secret), &by_cara, &[]).await;
    assert_eq!((problem_of(&r).0, problem_of(&r).1.as_str()), (409, "sequence_not_live"), "{}", r.body);
    service::sequences::set_status(svc, &actor, seq, SequenceStatus::Paused).await.unwrap();
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_cara, &[]).await;
    assert_eq!((problem_of(&r).0, problem_of(&r).1.as_str()), (409, "sequence_not_live"), "{}", r.body);
    assert!(state_of(&app, cara).await.is_empty());
    // Live again: Cara may enter, and a refused request's key is free for the corrected retry.
    service::sequences::set_status(svc, &actor, seq, SequenceStatus::Active).await.unwrap();
    let retry = Uuid::new_v4().to_string();
    let r = call(&c, Method::POST, &path(draft), Some(&k.secret), &by_cara, &[("idempotency-key", &retry)]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &by_cara, &[("idempotency-key", &retry)]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(enrolments(&app).await, 3);

    // Hostile bodies: the right code, nothing enrolled, no value echoed.
    let dan = contact(svc, &actor, "dan@patients.test", "Dan", true).await;
    let auth = format!("Bearer {}", k.secret);
    let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
    let mut non_utf8 = br#"{"contact": {"email": ""#.to_vec();
    non_utf8.extend_from_slice(&[0xff, 0xfe]);
    non_utf8.extend_from_slice(b"@patients.test\"}}");
    let cases: Vec<(Vec<u8>, u16, &str, &str)> = vec![
        (json!({"contact": {"id": dan}, MARKER: 1}).to_string().into_bytes(), 422, "unknown_field", ""),
        (json!({"contact": {"id": dan}, "sequence": seq}).to_string().into_bytes(), 422, "unknown_field", ""),
        (
            json!({"contact": {"id": dan, "email": format!("{MARKER}@patients.test")}}).to_string().into_bytes(),
            422,
            "invalid_field",
            "/contact",
        ),
        (json!({"contact": {}}).to_string().into_bytes(), 422, "invalid_field", "/contact"),
        (json!({}).to_string().into_bytes(), 422, "invalid_field", "/contact"),
        (json!({"contact": {"phone": MARKER}}).to_string().into_bytes(), 422, "unknown_field", "/contact"),
        (
            json!({"contact": {"email": format!("{}{MARKER}@patients.test", "a".repeat(10 * 1024))}})
                .to_string()
                .into_bytes(),
            422,
            "invalid_field",
            "/contact/email",
        ),
        (json!({"contact": {"id": MARKER}}).to_string().into_bytes(), 422, "invalid_field", "/contact/id"),
        (json!([MARKER]).to_string().into_bytes(), 422, "invalid_field", ""),
        (format!(r#"{{"contact": {}{}}}"#, "[".repeat(40), "]".repeat(40)).into_bytes(), 400, "json_too_deep", ""),
        (non_utf8, 400, "invalid_json", ""),
        (format!(r#"{{"contact": {{"email": "{MARKER}"#).into_bytes(), 400, "invalid_json", ""),
    ];
    for (body, status, code, pointer) in cases {
        let shown = String::from_utf8_lossy(&body).chars().take(80).collect::<String>();
        let r = c.send(Method::POST, &path(seq), &headers, body).await;
        assert_eq!(problem_of(&r), (status, code.to_string(), pointer.to_string()), "{shown}: {}", r.body);
        assert!(!r.body.contains(MARKER) && !r.body.contains("patients.test"), "{shown}: {}", r.body);
    }
    assert!(state_of(&app, dan).await.is_empty());
    assert_eq!(enrolments(&app).await, 3);
    // Only the engine's own entries: nothing about a refused request reached the trail.
    assert_eq!(scalar(&app, "SELECT count(*) FROM enrolment_step WHERE outcome = 'entered'").await, 3);

    settle(&app).await;
    assert_eq!(to("cara@patients.test", &received(&smtp)), vec!["Welcome to the care programme"]);
    app.stop().await;
    let log = std::fs::read_to_string(log_file()).unwrap_or_default();
    assert!(!log.contains(MARKER), "the PHI marker reached the log");
}

/// One at a time: a contact with an active enrolment is refused until it ends.
#[tokio::test]
async fn one_at_a_time_refuses_while_an_enrolment_is_active() {
    // The sending domain is verified through the test's DNS server; no workers: nothing is sent.
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let seq = publish(
        svc,
        &actor,
        "Check-ins",
        json!({
            "version": 1,
            "trigger": {"kind": "manual"},
            "entry": "one_at_a_time",
            "start": "wait",
            "steps": [
                {"id": "wait", "kind": "wait", "wait": {"kind": "duration", "minutes": 10080}, "next": "done"},
                {"id": "done", "kind": "exit"}
            ]
        }),
    )
    .await;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let body = json!({"contact": {"email": "ann@patients.test"}});
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &body, &[]).await;
    assert_eq!(problem_of(&r), (409, "already_enrolled".into(), "/contact".into()), "{}", r.body);
    // Removed by an operator: the contact may enter again.
    let list = service::sequences::contact_enrolments(svc, &actor, ann).await.unwrap();
    assert_eq!(list.len(), 1);
    service::sequences::remove(svc, &actor, list[0].id).await.unwrap();
    let r = call(&c, Method::POST, &path(seq), Some(&k.secret), &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM enrolment WHERE contact_id = '{ann}'")).await, 2);
    app.stop().await;
}
