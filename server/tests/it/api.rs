//! The machine interface over real HTTP against a real database: keys (missing, unknown, revoked,
//! expired, wrong scope, another organisation's), signed requests, idempotency, batches with
//! hostile items, contact upserts, limits, and every `/api/v1` route against every scope.

use crate::harness::*;
use domain::Role;
use domain::api::NewKey;
use domain::api::Scope;
use reqwest::Method;
use serde_json::{Value, json};
use server::routes::{self, Access, Kind};
use service::Actor;
use service::api::keys;

const MARKER: &str = "PHI-MARKER-Vx93q";

pub(crate) struct Key {
    pub(crate) id: uuid::Uuid,
    pub(crate) secret: String,
    pub(crate) signing: Option<String>,
}

pub(crate) async fn key(app: &TestApp, org: domain::ids::OrganisationId, scopes: &[Scope], signed: bool) -> Key {
    let k = keys::create(
        &app.services,
        &Actor::system(org, "test"),
        NewKey { name: "EHR bridge".into(), scopes: scopes.to_vec(), expires_at: None, require_signature: signed },
    )
    .await
    .unwrap();
    Key { id: k.id, secret: k.secret.to_string(), signing: k.signing_secret.map(|s| s.to_string()) }
}

/// A request with a key (and the body as JSON).
pub(crate) async fn call(
    c: &Client,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &Value,
    extra: &[(&str, &str)],
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    let bytes = if method == Method::GET { Vec::new() } else { body.to_string().into_bytes() };
    c.send(method, path, &headers, bytes).await
}

pub(crate) fn json_of(r: &Resp) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn is_problem(r: &Resp, status: u16, code: &str) -> bool {
    r.status == status
        && r.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
        && json_of(r)["code"] == code
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let v = service::db::scalar::<i64, _>(&db, sql, []).await.unwrap().unwrap_or(0);
    db.close().await.unwrap();
    v
}

fn event(email: &str, kind: &str) -> Value {
    json!({"contact": {"email": email}, "type": kind, "properties": {"clinic": "North", "note": MARKER}})
}

#[tokio::test]
async fn keys_are_checked_and_scoped_and_sessions_never_count() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let c = app.client();
    let writer = key(&app, org, &[Scope::EventsWrite, Scope::ContactsWrite], false).await;
    let reader = key(&app, org, &[Scope::ContactsRead], false).await;
    let foreign = key(&app, other, &[Scope::ContactsRead, Scope::EventsWrite], false).await;
    let ev = event("pat@example.org", "appointment.booked");

    // Missing, malformed, unknown: 401, the same words, a WWW-Authenticate challenge.
    let r = call(&c, Method::POST, "/api/v1/events", None, &ev, &[]).await;
    assert!(is_problem(&r, 401, "unauthenticated"), "{} {}", r.status, r.body);
    assert!(r.headers.get("www-authenticate").is_some());
    for bad in ["hm_live_short", "Basic abc", &format!("hm_live_{}", "A".repeat(43))] {
        let r = call(&c, Method::POST, "/api/v1/events", Some(bad), &ev, &[]).await;
        assert!(is_problem(&r, 401, "unauthenticated"), "{bad}: {} {}", r.status, r.body);
    }
    // The writer records; the reader may not (403), and learns nothing from validation.
    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &ev, &[]).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let event_id = json_of(&r)["id"].as_str().unwrap().to_string();
    let r = call(&c, Method::POST, "/api/v1/events", Some(&reader.secret), &json!({"nonsense": 1}), &[]).await;
    assert!(is_problem(&r, 403, "forbidden"), "{} {}", r.status, r.body);
    // The contact the event created, read by id: the reader may, the foreign key finds nothing.
    let cid: String = {
        let db = app.db.connect().await;
        let id = service::db::scalar::<uuid::Uuid, _>(
            &db,
            "SELECT contact_id FROM patient_event WHERE id = $1",
            [uuid::Uuid::parse_str(&event_id).unwrap().into()],
        )
        .await
        .unwrap()
        .unwrap();
        db.close().await.unwrap();
        id.to_string()
    };
    let path = format!("/api/v1/contacts/{cid}");
    let r = call(&c, Method::GET, &path, Some(&reader.secret), &Value::Null, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["email"], "pat@example.org");
    let r = call(&c, Method::GET, &path, Some(&foreign.secret), &Value::Null, &[]).await;
    assert!(is_problem(&r, 404, "not_found"), "{} {}", r.status, r.body);
    let r = call(&c, Method::GET, &path, Some(&writer.secret), &Value::Null, &[]).await;
    assert!(is_problem(&r, 403, "forbidden"), "{} {}", r.status, r.body);
    // The read is a PHI read in the audit trail, by the key.
    let viewed = count(
        &app,
        &format!(
            "SELECT count(*) FROM audit_event WHERE action = 'contact.viewed' AND actor_kind = 'api_key' AND details LIKE '%{}%'",
            reader.id
        ),
    )
    .await;
    assert_eq!(viewed, 1);

    // Revoked and expired keys: 401, and the refusal is audited against the key.
    keys::revoke(&app.services, &Actor::system(org, "test"), reader.id).await.unwrap();
    let r = call(&c, Method::GET, &path, Some(&reader.secret), &Value::Null, &[]).await;
    assert!(is_problem(&r, 401, "unauthenticated"), "{} {}", r.status, r.body);
    let expiring = keys::create(
        &app.services,
        &Actor::system(org, "test"),
        NewKey {
            name: "Short".into(),
            scopes: vec![Scope::ContactsRead],
            expires_at: Some(app.now() + chrono::Duration::hours(1)),
            require_signature: false,
        },
    )
    .await
    .unwrap();
    let r = call(&c, Method::GET, &path, Some(&expiring.secret), &Value::Null, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.advance(3601);
    let r = call(&c, Method::GET, &path, Some(&expiring.secret), &Value::Null, &[]).await;
    assert!(is_problem(&r, 401, "unauthenticated"), "{} {}", r.status, r.body);
    let refused = count(&app, "SELECT count(*) FROM audit_event WHERE action = 'api_key.refused'").await;
    assert_eq!(refused, 2);

    // A signed-in administrator's session does not open the API; a key does not open a page.
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let csrf = admin.csrf().unwrap_or_default();
    let r = call(&admin, Method::POST, "/api/v1/events", None, &ev, &[("x-csrf-token", &csrf)]).await;
    assert!(is_problem(&r, 401, "unauthenticated"), "{} {}", r.status, r.body);
    let anon = app.client();
    let r = anon.get_with("/contacts", &[("authorization", &format!("Bearer {}", writer.secret))]).await;
    assert_eq!(r.status, 303, "a key must not open a page");
    // Unknown API routes answer as the API does.
    let r = call(&c, Method::GET, "/api/v1/nothing", Some(&writer.secret), &Value::Null, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/problem+json");

    // Every use of a key is in its usage log (route template, status), flushed within a moment.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let used = count(&app, &format!("SELECT count(*) FROM api_request WHERE api_key_id = '{}'", writer.id)).await;
    assert_eq!(used, 2, "the event and the refused read (an unknown route names no key use)");
    let routes = count(&app, "SELECT count(*) FROM api_request WHERE route NOT LIKE '/api/v1/%'").await;
    assert_eq!(routes, 0);
    let last_used =
        count(&app, &format!("SELECT count(*) FROM api_key WHERE id = '{}' AND last_used_at IS NOT NULL", writer.id))
            .await;
    assert_eq!(last_used, 1);
    app.stop().await;
}

/// The signature scheme, computed by an independent implementation (Python's hmac).
fn python_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let dir = tempfile_dir();
    let path = dir.join("body");
    std::fs::write(&path, body).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import hmac,hashlib,sys; b=open(sys.argv[3],'rb').read(); \
             print('t=%s,v1=%s' % (sys.argv[2], hmac.new(sys.argv[1].encode(), sys.argv[2].encode()+b'.'+b, hashlib.sha256).hexdigest()))",
        )
        .arg(secret)
        .arg(t.to_string())
        .arg(&path)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hermetic-api-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn signing_keys_refuse_unsigned_stale_altered_and_wrong_secrets() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let k = key(&app, org, &[Scope::EventsWrite, Scope::ContactsWrite], true).await;
    let signing = k.signing.clone().expect("a signing secret, shown once");
    assert!(signing.starts_with("hm_sign_"));
    let c = app.client();
    let body = event("sig@example.org", "lab_result.ready").to_string();
    let now = app.now().timestamp();
    let send = |sig: Option<String>, body: String| {
        let c = &c;
        let secret = k.secret.clone();
        async move {
            let auth = format!("Bearer {secret}");
            let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json"), ("authorization", &auth)];
            let sig = sig.unwrap_or_default();
            if !sig.is_empty() {
                h.push(("hermetic-signature", &sig));
            }
            c.send(Method::POST, "/api/v1/events", &h, body.into_bytes()).await
        }
    };
    let r = send(None, body.clone()).await;
    assert!(is_problem(&r, 401, "bad_signature"), "{} {}", r.status, r.body);
    let r = send(Some(python_signature("hm_sign_wrong", now, body.as_bytes())), body.clone()).await;
    assert!(is_problem(&r, 401, "bad_signature"), "{} {}", r.status, r.body);
    let r = send(Some(python_signature(&signing, now - 301, body.as_bytes())), body.clone()).await;
    assert!(is_problem(&r, 401, "bad_signature"), "{} {}", r.status, r.body);
    let altered = body.replace("lab_result.ready", "lab_result.readz");
    let r = send(Some(python_signature(&signing, now, body.as_bytes())), altered).await;
    assert!(is_problem(&r, 401, "bad_signature"), "{} {}", r.status, r.body);
    let r = send(Some("t=abc,v1=zz".into()), body.clone()).await;
    assert!(is_problem(&r, 401, "bad_signature"), "{} {}", r.status, r.body);
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 0);
    // Python's signature is ours; within the tolerance either side.
    let py = python_signature(&signing, now - 250, body.as_bytes());
    assert_eq!(py, keys::signature_header(signing.as_bytes(), now - 250, body.as_bytes()));
    let r = send(Some(py), body.clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 1);
    let refused = count(&app, "SELECT count(*) FROM audit_event WHERE action = 'api_key.refused'").await;
    assert_eq!(refused, 5);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_replay_the_answer_and_refuse_another_body() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let k = key(&app, org, &[Scope::EventsWrite, Scope::ContactsWrite], false).await;
    let c = app.client();
    let batch =
        json!({"events": [event("a@example.org", "visit.completed"), event("b@example.org", "visit.completed")]});
    let idem = [("idempotency-key", "batch-0001")];
    let first = call(&c, Method::POST, "/api/v1/events/batch", Some(&k.secret), &batch, &idem).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(json_of(&first)["accepted"], 2);
    let again = call(&c, Method::POST, "/api/v1/events/batch", Some(&k.secret), &batch, &idem).await;
    assert_eq!(again.status, 200);
    assert_eq!(json_of(&again), json_of(&first), "the identical answer");
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 2);
    assert_eq!(count(&app, "SELECT count(*) FROM event_outbox").await, 2);
    // Same key, another body: 422, nothing recorded.
    let other = json!({"events": [event("c@example.org", "visit.completed")]});
    let r = call(&c, Method::POST, "/api/v1/events/batch", Some(&k.secret), &other, &idem).await;
    assert!(is_problem(&r, 422, "idempotency_key_reused"), "{} {}", r.status, r.body);
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 2);
    // Ten concurrent retries of one single event record it once and all get its id.
    let one = event("d@example.org", "visit.completed");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = app.client();
        let (secret, one) = (k.secret.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let r =
                call(&c, Method::POST, "/api/v1/events", Some(&secret), &one, &[("idempotency-key", "single-1")]).await;
            (r.status, json_of(&r)["id"].clone())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, 202);
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 3);
    // A key that is not printable ASCII is refused before anything happens.
    let r = call(&c, Method::POST, "/api/v1/events", Some(&k.secret), &one, &[("idempotency-key", "a b")]).await;
    assert!(is_problem(&r, 400, "idempotency_key_invalid"), "{} {}", r.status, r.body);
    // After 24 hours the key may be used afresh.
    app.advance(24 * 3600 + 1);
    let r = call(&c, Method::POST, "/api/v1/events/batch", Some(&k.secret), &other, &idem).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn a_batch_records_its_good_items_and_refuses_hostile_ones_without_echoing_them() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let events_only = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let known = service::contacts::create(
        &app.services,
        &Actor::system(org, "test"),
        domain::contacts::ContactInput {
            fields: [("email".to_string(), domain::Phi::new("known@example.org".to_string()))].into_iter().collect(),
        },
    )
    .await
    .unwrap();
    let mut body = format!(
        r#"{{"events": [
            {{"contact": {{"email": "known@example.org"}}, "type": "appointment.booked", "properties": {{"note": "{MARKER}"}}}},
            {{"contact": {{"id": "{known}"}}, "type": "Appointment Booked!{MARKER}"}},
            {{"contact": {{"id": "{known}"}}, "type": "lab.ready", "properties": {{"x": "{big}"}}}},
            {{"contact": {{"id": "{known}"}}, "type": "lab.ready", "properties": {{"x": {{"y": {{"z": ["{MARKER}"]}}}}}}}},
            {{"contact": {{"email": "unknown-{MARKER}@example.org"}}, "type": "lab.ready"}},
            {{"contact": {{"id": "{known}"}}, "type": "lab.ready", "properties": {{"x": ""#,
        big = "y".repeat(10 * 1024)
    )
    .into_bytes();
    body.extend_from_slice(&[0xc3, 0x28, 0xff]);
    body.extend_from_slice(
        format!(
            r#"{MARKER}"}}}},
            {{"contact": {{"id": "{known}"}}, "type": "visit.completed", "occurred_at": "2026-11-30T10:00:00Z"}}
        ]}}"#
        )
        .as_bytes(),
    );
    let auth = format!("Bearer {}", events_only.secret);
    let r = c
        .send(
            Method::POST,
            "/api/v1/events/batch",
            &[("content-type", "application/json"), ("authorization", &auth)],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(MARKER), "an answer echoed a submitted value: {}", r.body);
    let v = json_of(&r);
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(v["rejected"], 5, "{v}");
    let results = v["results"].as_array().unwrap();
    let status = |i: usize| results[i]["status"].as_str().unwrap().to_string();
    let pointer = |i: usize| results[i]["pointer"].as_str().unwrap_or("").to_string();
    assert_eq!(status(0), "accepted");
    assert_eq!((status(1), pointer(1)), ("rejected".into(), "/events/1/type".into()));
    assert_eq!(pointer(2), "/events/2/properties/x");
    assert_eq!(pointer(3), "/events/3/properties/x");
    assert_eq!(
        (results[4]["code"].as_str().unwrap(), pointer(4).as_str()),
        ("unknown_contact", "/events/4/contact/email")
    );
    assert_eq!(results[5]["code"], "invalid_json");
    assert_eq!(status(6), "accepted");
    assert_eq!(count(&app, "SELECT count(*) FROM patient_event").await, 2);
    assert_eq!(count(&app, "SELECT count(*) FROM event_outbox").await, 2);
    // Properties are sealed: the marker is in no column in plain.
    let plain = count(
        &app,
        &format!("SELECT count(*) FROM patient_event WHERE position(convert_to('{MARKER}', 'UTF8') IN coalesce(properties, ''::bytea)) > 0"),
    )
    .await;
    assert_eq!(plain, 0);
    // A key without contacts:write did not create the unknown address's contact.
    assert_eq!(count(&app, "SELECT count(*) FROM contact").await, 1);

    // Whole-body problems: not JSON, too deep, too big, not JSON content.
    let deep = format!(r#"{{"events": [{}1{}]}}"#, "[".repeat(100), "]".repeat(100));
    let send_raw = |body: Vec<u8>, ct: &'static str| {
        let (c, auth) = (&c, auth.clone());
        async move {
            c.send(Method::POST, "/api/v1/events/batch", &[("content-type", ct), ("authorization", &auth)], body).await
        }
    };
    let r = send_raw(b"{\"events\": [".to_vec(), "application/json").await;
    assert!(is_problem(&r, 400, "invalid_json"), "{} {}", r.status, r.body);
    let r = send_raw(deep.into_bytes(), "application/json").await;
    assert!(is_problem(&r, 400, "json_too_deep"), "{} {}", r.status, r.body);
    let r = send_raw(vec![b' '; 10 * 1024 * 1024 + 1], "application/json").await;
    assert!(is_problem(&r, 413, "body_too_large"), "{} {}", r.status, r.body);
    let r = send_raw(b"{}".to_vec(), "text/plain").await;
    assert!(is_problem(&r, 415, "unsupported_media_type"), "{} {}", r.status, r.body);
    let r = c
        .send(
            Method::POST,
            "/api/v1/events",
            &[("content-type", "application/json"), ("authorization", &auth)],
            vec![b' '; 1024 * 1024 + 1],
        )
        .await;
    assert!(is_problem(&r, 413, "body_too_large"), "{} {}", r.status, r.body);
    // A single event's refusal names the member.
    let r = call(
        &c,
        Method::POST,
        "/api/v1/events",
        Some(&events_only.secret),
        &json!({"contact": {"id": known.to_string()}, "type": MARKER}),
        &[],
    )
    .await;
    assert!(is_problem(&r, 422, "invalid_field"), "{} {}", r.status, r.body);
    assert_eq!(json_of(&r)["pointer"], "/type");
    assert!(!r.body.contains(MARKER));
    app.stop().await;
}

#[tokio::test]
async fn contacts_are_upserted_by_email_with_lists_and_consent_and_withdrawals_hold() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let k = key(&app, org, &[Scope::ContactsWrite, Scope::ContactsRead], false).await;
    let c = app.client();
    let staff = Actor::system(org, "test");
    let list = service::contacts::lists::create(
        &app.services,
        &staff,
        "Cardiology news",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    let body = json!({
        "email": "Ada@Example.org",
        "fields": {"first_name": "Ada", "last_name": "Lovelace"},
        "lists": [list.to_string()],
        "consent": [{"purpose": "marketing", "granted": true, "text_sha256": "ab".repeat(32)}]
    });
    let r = call(&c, Method::PUT, "/api/v1/contacts", Some(&k.secret), &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = json_of(&r)["id"].as_str().unwrap().to_string();
    assert_eq!(json_of(&r)["consent"][0]["applied"], true);
    // Again by the same address (other case): the same contact, fields merged, one cleared.
    let r = call(
        &c,
        Method::PUT,
        "/api/v1/contacts",
        Some(&k.secret),
        &json!({"email": "ada@example.org", "fields": {"last_name": null, "phone": "+44 20 7946 0000"}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["id"], id.as_str());
    let got = call(&c, Method::GET, &format!("/api/v1/contacts/{id}"), Some(&k.secret), &Value::Null, &[]).await;
    let g = json_of(&got);
    assert_eq!(g["fields"]["first_name"], "Ada", "{g}");
    assert!(g["fields"].get("last_name").is_none(), "{g}");
    assert_eq!(g["lists"][0]["status"], "subscribed", "{g}");
    // The patient withdraws; an integration's later grant is recorded but not applied.
    service::contacts::consent::record(
        &app.services,
        &staff,
        uuid::Uuid::parse_str(&id).unwrap(),
        domain::contacts::ConsentPurpose::Marketing,
        false,
        None,
    )
    .await
    .unwrap();
    let r = call(
        &c,
        Method::PUT,
        "/api/v1/contacts",
        Some(&k.secret),
        &json!({"email": "ada@example.org", "consent": [{"purpose": "marketing", "granted": true}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["consent"][0]["applied"], false, "{}", r.body);
    let g =
        json_of(&call(&c, Method::GET, &format!("/api/v1/contacts/{id}"), Some(&k.secret), &Value::Null, &[]).await);
    assert_eq!(g["mailable"][0]["allowed"], false, "{g}");
    // Hostile bodies: unknown field key, a list of another organisation, a value not echoed.
    for (body, pointer) in [
        (json!({"email": "ada@example.org", "fields": {"shoe_size": MARKER}}), "/fields/shoe_size"),
        (json!({"email": "ada@example.org", "lists": [uuid::Uuid::now_v7().to_string()]}), "/lists/0"),
        (json!({"email": MARKER}), "/email"),
        (json!({"email": "ada@example.org", "fields": {"date_of_birth": MARKER}}), "/fields/date_of_birth"),
        (json!({"email": "ada@example.org", "extra": MARKER}), ""),
    ] {
        let r = call(&c, Method::PUT, "/api/v1/contacts", Some(&k.secret), &body, &[]).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(json_of(&r)["pointer"], pointer, "{body}: {}", r.body);
        assert!(!r.body.contains(MARKER), "{}", r.body);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM contact").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn each_key_has_a_request_budget() {
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_API__RATE_PER_SECOND", "1".into()), ("HERMETIC_API__BURST", "3".into())],
        ..Default::default()
    })
    .await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let a = key(&app, org, &[Scope::EventsWrite], false).await;
    let b = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let ev = json!({"events": [{"contact": {"id": uuid::Uuid::now_v7().to_string()}, "type": "a"}]});
    let mut limited = None;
    for _ in 0..6 {
        let r = call(&c, Method::POST, "/api/v1/events/batch", Some(&a.secret), &ev, &[]).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the budget of 3 ran out");
    assert!(is_problem(&r, 429, "rate_limited"), "{}", r.body);
    let after: u64 = r.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "{after}");
    // Another key's budget is its own.
    let r = call(&c, Method::POST, "/api/v1/events/batch", Some(&b.secret), &ev, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

/// A body that reaches each route's service call.
fn sample(path: &str, contact: &str) -> Value {
    match path {
        "/api/v1/events" => json!({"contact": {"id": contact}, "type": "matrix.checked"}),
        "/api/v1/events/batch" => json!({"events": [{"contact": {"id": contact}, "type": "matrix.checked"}]}),
        "/api/v1/contacts" => json!({"email": "matrix@example.org"}),
        // The contact's id stands in for a template id: no such template (tests/it/messages.rs
        // sends real ones, with a verified sending domain and an SMTP server).
        "/api/v1/messages" => json!({"contact": {"id": contact}, "template": contact}),
        // The contact's id stands in for the sequence's: no such sequence (tests/it/enrolments.rs
        // enrols in real ones).
        "/api/v1/sequences/{id}/enrolments" => json!({"contact": {"id": contact}}),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn every_api_route_answers_every_scope_as_the_table_says() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let contact = service::contacts::create(
        &app.services,
        &Actor::system(org, "test"),
        domain::contacts::ContactInput {
            fields: [("email".to_string(), domain::Phi::new("matrix@example.org".to_string()))].into_iter().collect(),
        },
    )
    .await
    .unwrap()
    .to_string();
    let c = app.client();
    let table = routes::table();
    // Every route that needs a key; the OpenAPI document is the one public API route.
    let api: Vec<_> = table.iter().filter(|r| r.kind == Kind::Api && matches!(r.access, Access::Key(_))).collect();
    assert_eq!(api.len(), server::api::ROUTES.len());
    let public: Vec<_> = table.iter().filter(|r| r.kind == Kind::Api && r.access == Access::Public).collect();
    assert_eq!(public.iter().map(|r| r.path).collect::<Vec<_>>(), [server::api::OPENAPI_PATH]);
    for r in table.iter().filter(|r| r.path.starts_with("/api/v1")) {
        assert_eq!(r.kind, Kind::Api, "{} is under /api/v1 but not an API route", r.path);
    }
    let mut failures = Vec::new();
    for scope in Scope::ALL {
        let k = key(&app, org, &[scope], false).await;
        for spec in &api {
            let Access::Key(p) = spec.access else { panic!("{} has no key permission", spec.path) };
            let method = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
            let path = spec.path.replace("{id}", &contact);
            let r = call(&c, method, &path, Some(&k.secret), &sample(spec.path, &contact), &[]).await;
            let allowed = scope.permission() == p;
            // A message route passed its scope check when it answers its own refusal: no such
            // template, no such message (the contact's id is neither).
            let message_refusal = spec.path.starts_with("/api/v1/messages")
                && (is_problem(&r, 422, "unknown_template") || is_problem(&r, 404, "not_found"));
            // An enrolment passed it when it answers that there is no such sequence.
            let enrolment_refusal = spec.path.starts_with("/api/v1/sequences/") && is_problem(&r, 404, "not_found");
            let ok = if allowed {
                (200..300).contains(&r.status) || message_refusal || enrolment_refusal
            } else {
                is_problem(&r, 403, "forbidden")
            };
            if !ok {
                failures.push(format!(
                    "{scope} {} {}: allowed={allowed}, got {} {}",
                    spec.method, spec.path, r.status, r.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}
