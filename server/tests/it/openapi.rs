//! The OpenAPI document and the docs page over real HTTP: the document lists every `/api/v1` route
//! of `server::api::ROUTES` with its method and scope; `openapi-spec-validator` (PyPI, in the
//! test-tools venv) accepts it as OpenAPI 3.1; every example in it is made-up data; each request
//! example, sent to the real server, is accepted, and each answer the server gives (successes and
//! every class of problem, provoked on purpose) is documented for its route and matches the
//! documented schema. The docs page shows every route and problem code, and its worked signature
//! examples (OpenSSL in a shell, Python's hmac) print the header it documents.
//!
//! The Python tools come from `ensure_py_tools` (scripts/lib/common.sh), which installs them when
//! missing: a machine without them fails this test, it does not skip it.

use crate::api::{call, json_of, key};
use crate::harness::*;
use domain::Role;
use domain::api::Scope;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};

/// The test-tools venv's Python and the checker script (installing them if needed).
fn py_tools() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = format!(
        "set -e; source '{}/scripts/lib/common.sh'; ensure_py_tools >&2; echo \"$SMTP_TOOLS_PYTHON\"; echo \"$OPENAPI_CHECK\"",
        root.display()
    );
    let out = Command::new("bash").arg("-c").arg(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "ensure_py_tools failed: the OpenAPI validator could not be installed");
    let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "unexpected tool paths: {lines:?}");
    (lines[0].clone(), lines[1].clone())
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hermetic-openapi-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every string in every example of the document, with the member it is the value of.
fn example_strings(v: &Value, key: &str, inside: bool, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let is_example = k == "example" || k == "examples";
                example_strings(x, k, inside || is_example, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| example_strings(x, key, inside, out)),
        Value::String(s) if inside => out.push((key.to_string(), s.clone())),
        _ => {}
    }
}

/// Examples must be obviously made up: addresses only at the reserved example domains, names and
/// birth dates from a short list of placeholders, no phone numbers outside 555-01xx, nothing that
/// looks like a social security or record number, none of the tests' marker values.
fn assert_placeholder_examples(doc: &Value) {
    let mut strings = Vec::new();
    example_strings(doc, "", false, &mut strings);
    assert!(strings.len() > 20, "too few example values found: {strings:?}");
    let names = ["Alex", "Example", "Appointment reminders", "North Clinic"];
    for (k, s) in &strings {
        if s.contains('@') {
            let domain = s.rsplit('@').next().unwrap();
            assert!(
                ["example.org", "example.com", "example.net"].contains(&domain),
                "{k}: {s} is not at a reserved example domain"
            );
        }
        if ["first_name", "last_name", "name", "clinic"].contains(&k.as_str()) {
            assert!(names.contains(&s.as_str()), "{k}: {s} is not a placeholder name");
        }
        if k == "date_of_birth" {
            assert_eq!(s, "1970-01-01", "{k}: birth dates in examples are the placeholder 1970-01-01");
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let looks_like_phone = s.starts_with('+') || k == "phone";
        if looks_like_phone {
            assert!(digits.contains("55501"), "{k}: {s} is not a fictional 555-01xx number");
        }
        let ssn = s
            .as_bytes()
            .windows(11)
            .any(|w| w.iter().enumerate().all(|(i, b)| if i == 3 || i == 6 { *b == b'-' } else { b.is_ascii_digit() }));
        assert!(!ssn, "{k}: {s} looks like a social security number");
        for marker in ["PHI-MARKER", "Zelphinia", "Quarrendon", "Quillonbrae", "Vantrequist", "marker.example"] {
            assert!(!s.contains(marker), "{k}: {s} holds a test marker");
        }
    }
}

#[tokio::test]
async fn the_document_covers_every_route_validates_and_describes_the_real_answers() {
    // A small budget per key, so one key can be run out of it (429) without slowing the rest.
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_API__RATE_PER_SECOND", "1".into()), ("HERMETIC_API__BURST", "30".into())],
        ..Default::default()
    })
    .await;
    let c = app.client();

    // Public, JSON, no session or key.
    let r = c.get(server::api::OPENAPI_PATH).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert!(r.headers.get("set-cookie").is_none(), "the document needs no session");
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path, permission) in server::api::ROUTES {
        let op = &doc["paths"][*path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is missing from the document");
        let scope = Scope::ALL.into_iter().find(|s| s.permission() == *permission).unwrap();
        assert_eq!(op["security"], json!([{ "apiKey": [scope.as_str()] }]), "{method} {path}");
    }
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum();
    assert_eq!(operations, server::api::ROUTES.len(), "the document lists a route the server does not have");
    assert_placeholder_examples(&doc);

    // Real answers, each recorded with its route template for the schema check.
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let staff = service::Actor::system(org, "test");
    let writer = key(&app, org, &[Scope::EventsWrite, Scope::ContactsWrite], false).await;
    let events_only = key(&app, org, &[Scope::EventsWrite], false).await;
    let reader = key(&app, org, &[Scope::ContactsRead], false).await;
    let mut samples: Vec<Value> = Vec::new();
    let mut record = |method: &str, template: &str, r: &Resp| -> Value {
        let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        samples.push(json!({"method": method, "path": template, "status": r.status, "content_type": ct, "body": body}));
        body
    };
    let example = |path: &str| server::openapi::examples(path).0.unwrap();

    // The upsert example, with its placeholder list id replaced by a real list.
    let list = service::contacts::lists::create(
        &app.services,
        &staff,
        "Appointment reminders",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    let upsert =
        example("/api/v1/contacts").to_string().replace(&server::openapi::EXAMPLE_LIST.to_string(), &list.to_string());
    let upsert: Value = serde_json::from_str(&upsert).unwrap();
    let r = call(&c, Method::PUT, "/api/v1/contacts", Some(&writer.secret), &upsert, &[]).await;
    assert_eq!(r.status, 201, "the upsert example: {}", r.body);
    let contact = record("PUT", "/api/v1/contacts", &r)["id"].as_str().unwrap().to_string();
    let r = call(&c, Method::PUT, "/api/v1/contacts", Some(&writer.secret), &upsert, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    record("PUT", "/api/v1/contacts", &r);

    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &example("/api/v1/events"), &[]).await;
    assert_eq!(r.status, 202, "the event example: {}", r.body);
    record("POST", "/api/v1/events", &r);

    // The batch example with its placeholder contact id replaced by the real one, sent with a key
    // that may not create contacts: as in the documented answer, one accepted, one refused.
    let batch =
        example("/api/v1/events/batch").to_string().replace(&server::openapi::EXAMPLE_CONTACT.to_string(), &contact);
    let batch: Value = serde_json::from_str(&batch).unwrap();
    let r = call(&c, Method::POST, "/api/v1/events/batch", Some(&events_only.secret), &batch, &[]).await;
    assert_eq!(r.status, 200, "the batch example: {}", r.body);
    let answer = record("POST", "/api/v1/events/batch", &r);
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(1), Some(1)), "{answer}");
    assert_eq!(answer["results"][1]["code"], "unknown_contact");

    // The message example, with a real template in place of the placeholder, to the contact
    // above (whose address the example names), From a verified domain; then its status, and the
    // message route's own refusals.
    service::sending_domains::add(&app.services, &staff, "clinic.test").await.unwrap();
    app.sql(&format!(
        "UPDATE sending_domain SET status = 'verified', verified_at = now() WHERE organisation_id = '{}'",
        org.0
    ))
    .await;
    let template = crate::campaigns::template(&app.services, &staff).await;
    let sender = key(&app, org, &[Scope::MessagesSend], false).await;
    let message = example("/api/v1/messages")
        .to_string()
        .replace(&server::openapi::EXAMPLE_TEMPLATE.to_string(), &template.to_string());
    let message: Value = serde_json::from_str(&message).unwrap();
    let r = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &message, &[]).await;
    assert_eq!(r.status, 202, "the message example: {}", r.body);
    let id = record("POST", "/api/v1/messages", &r)["id"].as_str().unwrap().to_string();
    let r = call(&c, Method::GET, &format!("/api/v1/messages/{id}"), Some(&sender.secret), &Value::Null, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    record("GET", "/api/v1/messages/{id}", &r);
    let unknown = json!({"contact": {"id": contact}, "template": uuid::Uuid::now_v7()});
    let r = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &unknown, &[]).await;
    assert_eq!((r.status, json_of(&r)["code"].as_str()), (422, Some("unknown_template")), "{}", r.body);
    record("POST", "/api/v1/messages", &r);
    let r = call(
        &c,
        Method::GET,
        &format!("/api/v1/messages/{}", uuid::Uuid::now_v7()),
        Some(&sender.secret),
        &Value::Null,
        &[],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    record("GET", "/api/v1/messages/{id}", &r);

    // The enrolment example (the contact above, by its address) in a live sequence; once ever, so
    // the same again is refused; then an unknown contact, a sequence that is not live, none at all.
    let route = "/api/v1/sequences/{id}/enrolments";
    let seq = crate::sequences::publish(
        &app.services,
        &staff,
        "Care programme",
        json!({"version": 1, "trigger": {"kind": "manual"}, "entry": "once_ever", "start": "a",
               "steps": [{"id": "a", "kind": "exit"}]}),
    )
    .await;
    let enrol = |s: &dyn std::fmt::Display| format!("/api/v1/sequences/{s}/enrolments");
    let r = call(&c, Method::POST, &enrol(&seq), Some(&events_only.secret), &example(route), &[]).await;
    assert_eq!(r.status, 201, "the enrolment example: {}", r.body);
    assert_eq!(record("POST", route, &r)["sequence_id"], seq.to_string());
    let r = call(&c, Method::POST, &enrol(&seq), Some(&events_only.secret), &example(route), &[]).await;
    assert_eq!((r.status, json_of(&r)["code"].as_str()), (409, Some("already_enrolled")), "{}", r.body);
    record("POST", route, &r);
    let nobody = json!({"contact": {"id": uuid::Uuid::now_v7()}});
    let r = call(&c, Method::POST, &enrol(&seq), Some(&events_only.secret), &nobody, &[]).await;
    assert_eq!((r.status, json_of(&r)["code"].as_str()), (422, Some("unknown_contact")), "{}", r.body);
    record("POST", route, &r);
    let draft = service::sequences::create(&app.services, &staff, "Not yet").await.unwrap();
    let r = call(&c, Method::POST, &enrol(&draft), Some(&events_only.secret), &example(route), &[]).await;
    assert_eq!((r.status, json_of(&r)["code"].as_str()), (409, Some("sequence_not_live")), "{}", r.body);
    record("POST", route, &r);
    let r =
        call(&c, Method::POST, &enrol(&uuid::Uuid::now_v7()), Some(&events_only.secret), &example(route), &[]).await;
    assert_eq!((r.status, json_of(&r)["code"].as_str()), (404, Some("not_found")), "{}", r.body);
    record("POST", route, &r);

    let get = format!("/api/v1/contacts/{contact}");
    let r = call(&c, Method::GET, &get, Some(&reader.secret), &Value::Null, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let view = record("GET", "/api/v1/contacts/{id}", &r);
    assert_eq!(view["email"], "patient@example.org");
    assert_eq!(view["lists"][0]["status"], "subscribed");

    // Problems, each class provoked on purpose.
    let ev = example("/api/v1/events");
    for (method, path, _) in server::api::ROUTES {
        let concrete = path.replace("{id}", &contact);
        let m = Method::from_bytes(method.as_str().as_bytes()).unwrap();
        let r = call(&c, m.clone(), &concrete, None, &ev, &[]).await;
        assert_eq!(r.status, 401, "{method} {path} without a key");
        record(method.as_str(), path, &r);
        let wrong = if *method == http::Method::GET { &writer } else { &reader };
        let r = call(&c, m, &concrete, Some(&wrong.secret), &ev, &[]).await;
        assert_eq!(r.status, 403, "{method} {path} with the wrong scope: {}", r.body);
        record(method.as_str(), path, &r);
    }
    let r = call(
        &c,
        Method::GET,
        &format!("/api/v1/contacts/{}", uuid::Uuid::now_v7()),
        Some(&reader.secret),
        &Value::Null,
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    record("GET", "/api/v1/contacts/{id}", &r);
    let auth = format!("Bearer {}", writer.secret);
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    for (method, path, body, ct, status) in [
        (Method::POST, "/api/v1/events", b"{".to_vec(), "application/json", 400),
        (Method::POST, "/api/v1/events/batch", deep.into_bytes(), "application/json", 400),
        (Method::POST, "/api/v1/events", ev.to_string().into_bytes(), "text/plain", 415),
        (Method::POST, "/api/v1/events", vec![b' '; 1024 * 1024 + 1], "application/json", 413),
        (
            Method::POST,
            "/api/v1/events",
            br#"{"contact": {"email": "a@example.org"}, "type": "Not A Code"}"#.to_vec(),
            "application/json",
            422,
        ),
        (
            Method::POST,
            "/api/v1/events",
            br#"{"contact": {"id": "0190f3a2-6b1c-7d4e-9f00-000000000000"}, "type": "a"}"#.to_vec(),
            "application/json",
            422,
        ),
        (Method::POST, "/api/v1/events/batch", br#"{"events": []}"#.to_vec(), "application/json", 422),
        (
            Method::PUT,
            "/api/v1/contacts",
            br#"{"email": "a@example.org", "nickname": "x"}"#.to_vec(),
            "application/json",
            422,
        ),
        (Method::PUT, "/api/v1/contacts", br#"{"email": "not an address"}"#.to_vec(), "application/json", 422),
    ] {
        let r = c.send(method.clone(), path, &[("content-type", ct), ("authorization", &auth)], body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        record(method.as_str(), path, &r);
    }
    // Idempotency: a malformed key (400), and a key reused with another body (422).
    let long = "k".repeat(256);
    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &ev, &[("idempotency-key", &long)]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    record("POST", "/api/v1/events", &r);
    let idem = uuid::Uuid::new_v4().to_string();
    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &ev, &[("idempotency-key", &idem)]).await;
    assert_eq!(r.status, 202);
    assert!(r.headers.get("idempotent-replayed").is_none());
    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &ev, &[("idempotency-key", &idem)]).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.headers.get("idempotent-replayed").unwrap(), "true");
    record("POST", "/api/v1/events", &r);
    let other = json!({"contact": {"email": "patient@example.org"}, "type": "appointment.cancelled"});
    let r = call(&c, Method::POST, "/api/v1/events", Some(&writer.secret), &other, &[("idempotency-key", &idem)]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    record("POST", "/api/v1/events", &r);
    // A signing key without a signature.
    let signed = key(&app, org, &[Scope::EventsWrite], true).await;
    let r = call(&c, Method::POST, "/api/v1/events", Some(&signed.secret), &ev, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["code"], "bad_signature");
    record("POST", "/api/v1/events", &r);
    // A key that has used its budget: 429 with Retry-After.
    let busy = key(&app, org, &[Scope::ContactsRead], false).await;
    let mut limited = None;
    for _ in 0..40 {
        let r = call(&c, Method::GET, &get, Some(&busy.secret), &Value::Null, &[]).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the budget of 30 ran out");
    assert!(r.headers.get("retry-after").is_some());
    record("GET", "/api/v1/contacts/{id}", &r);

    // openapi-spec-validator on the served bytes, and every answer above against the document.
    let dir = temp_dir();
    std::fs::write(dir.join("openapi.json"), c.get(server::api::OPENAPI_PATH).await.body).unwrap();
    std::fs::write(dir.join("samples.json"), serde_json::to_vec_pretty(&samples).unwrap()).unwrap();
    let (python, check) = py_tools();
    let out =
        Command::new(&python).arg(&check).arg(dir.join("openapi.json")).arg(dir.join("samples.json")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the OpenAPI check failed:\n{stdout}");
    assert!(stdout.contains("OpenAPI document valid"), "{stdout}");
    // The checker does fail: a document with an undocumented status is refused.
    let bad = json!([{"method": "GET", "path": "/api/v1/contacts/{id}", "status": 418, "content_type": "application/json", "body": {}}]);
    std::fs::write(dir.join("bad.json"), bad.to_string()).unwrap();
    let out =
        Command::new(&python).arg(&check).arg(dir.join("openapi.json")).arg(dir.join("bad.json")).output().unwrap();
    assert!(!out.status.success(), "the checker accepted an undocumented answer");
    std::fs::remove_dir_all(&dir).unwrap();
    app.stop().await;
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The text of the element with `data-test="<name>"` (a code block's `<code>` or an inline code).
fn block(html: &str, name: &str) -> String {
    let start = html.find(&format!("data-test=\"{name}\"")).unwrap_or_else(|| panic!("no {name} on the page"));
    let rest = &html[start..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    let rest = rest.strip_prefix("<code>").unwrap_or(rest);
    unescape(&rest[..rest.find("</code>").unwrap()])
}

#[tokio::test]
async fn the_docs_page_is_made_from_the_document_and_its_signature_examples_compute_what_it_says() {
    let app = TestApp::start().await;
    let c = app.client();
    let r = c.get("/api/docs").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    let csp = r.headers.get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("style-src 'self'") && csp.contains("default-src 'self'"), "{csp}");
    let html = r.body;
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains("<script"));
    // Nothing loads from elsewhere: no remote links to style sheets, scripts or images.
    assert!(!html.contains(" src=") && !html.contains("href=\"http") && !html.contains("href=\"//"));
    for (method, path, permission) in server::api::ROUTES {
        let scope = Scope::ALL.into_iter().find(|s| s.permission() == *permission).unwrap();
        let tag = format!("data-method=\"{method}\" data-path=\"{path}\" data-scope=\"{}\"", scope.as_str());
        assert!(html.contains(&tag), "{method} {path} is not on the docs page with its scope");
    }
    for code in domain::api::problem::ALL {
        assert!(html.contains(&format!("id=\"problem-{}\"", code.code)), "{}", code.code);
    }
    // A problem's `type` leads to its entry on this page.
    assert!(html.contains(&format!("href=\"{}\"", server::api::OPENAPI_PATH)));

    // The worked signature: the shell and Python snippets, run as shown, print the documented header.
    let expected = block(&html, "sign-expected");
    let expected = expected.strip_prefix("Hermetic-Signature: ").unwrap().to_string();
    let example = server::openapi::signature_example();
    assert_eq!(expected, example.header);
    let shell = block(&html, "sign-shell");
    let out = Command::new("bash").arg("-c").arg(&shell).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), expected, "the OpenSSL snippet");
    let python = block(&html, "sign-python");
    let out = Command::new("python3").arg("-c").arg(&python).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), expected, "the Python snippet");
    // The header is one the server parses, computed by the server's own signing code.
    let parsed = domain::api::SignatureHeader::parse(&expected).unwrap();
    assert_eq!(parsed.timestamp, example.timestamp);
    assert_eq!(
        service::api::keys::signature_header(example.secret.as_bytes(), example.timestamp, example.body.as_bytes()),
        expected
    );
    app.stop().await;
}
