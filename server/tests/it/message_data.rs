//! The message-bound template namespaces end to end (real PostgreSQL, real HTTP, a real SMTP
//! server process): an API message's `data` reaches its template as `{{message.<key>}}` — a value
//! in the text, a date formatted by the `date` helper in the contact's zone, a key the data lacks
//! rendered empty, a value the template formats as a date that is not one refused at acceptance
//! — and the PHI marker it carries reaches the recipient and nothing else (no log, no preview). Where the data does not exist the template is refused: an API message whose
//! template uses `{{event.…}}` (problem `template_not_allowed` at `/template`, nothing queued),
//! and a campaign whose template uses `{{message.…}}` or `{{event.…}}` (when the draft is saved
//! and when it is launched, a field error on `template`).

use crate::api::{call, json_of, key};
use crate::campaigns::{contact, header, list_with, settings, template};
use crate::harness::*;
use crate::smtp::mime;
use domain::Phi;
use domain::api::Scope;
use domain::contacts::ContactInput;
use domain::template_views::{PreviewSample, SaveOutcome, TemplateContent};
use reqwest::Method;
use serde_json::{Value, json};
use service::{Actor, Services};
use std::time::Duration;
use uuid::Uuid;

const MARKER: &str = "PHI-MARKER-Vx93q";

fn content(subject: &str, html: &str) -> TemplateContent {
    serde_json::from_value(json!({
        "mode": "html", "subject": subject, "preheader": "", "design": {"blocks": []},
        "html": html, "text": "", "text_edited": false
    }))
    .unwrap()
}

/// Save new content as the template's next version.
async fn save(svc: &Services, actor: &Actor, id: Uuid, c: TemplateContent) {
    let latest = service::templates::store::editor(svc, actor, id, None).await.unwrap().version;
    let out = service::templates::store::save(svc, actor, id, latest, c).await.unwrap();
    assert!(matches!(out, SaveOutcome::Saved { .. }), "{out:?}");
}

async fn new_template(svc: &Services, actor: &Actor, subject: &str, html: &str) -> Uuid {
    let id =
        service::templates::store::create(svc, actor, &format!("T {}", Uuid::new_v4().simple()), None).await.unwrap();
    save(svc, actor, id, content(subject, html)).await;
    id
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let v = service::db::scalar::<i64, _>(&db, sql, []).await.unwrap().unwrap_or(0);
    db.close().await.unwrap();
    v
}

const APPOINTMENT: &str = "<html><body><p>Dear {{contact.first_name}},</p>\
    <p>Your appointment at {{message.clinic}} is on {{date message.appointment_at \"%A %B %-d, %Y at %-I:%M %p\"}}.</p>\
    <p>Room: [{{message.room}}]</p>\
    <p><a href=\"{{links.preferences}}\">Preferences</a></p></body></html>";

#[tokio::test]
async fn an_api_message_fills_message_fields_and_templates_are_refused_where_their_data_does_not_exist() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    // Ann lives in New York: 14:30 UTC is 9:30 in the morning there in January.
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), Phi::new("ann@patients.test".to_string()));
    fields.insert("first_name".to_string(), Phi::new("Ann".to_string()));
    fields.insert("time_zone".to_string(), Phi::new("America/New_York".to_string()));
    let ann = service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
    let appointment = new_template(svc, &actor, "Your appointment", APPOINTMENT).await;
    let reminder = new_template(svc, &actor, "Reminder", "<p>See you at {{event.clinic}}.</p>").await;
    let sender = key(&app, org, &[Scope::MessagesSend], false).await;
    let c = app.client();

    // The stored versions remember their keys (plain names, never values).
    let keys = count(
        &app,
        &format!(
            "SELECT count(*) FROM template_version v JOIN template t ON t.id = v.template_id AND v.version = t.latest_version
             WHERE t.id = '{appointment}' AND v.message_keys = ARRAY['appointment_at', 'clinic', 'room'] AND v.event_keys = '{{}}' AND v.uses_phi"
        ),
    )
    .await;
    assert_eq!(keys, 1, "message_keys stored with the version");

    // The editor's preview shows made-up values, never data.
    let editor = service::templates::store::editor(svc, &actor, appointment, None).await.unwrap();
    let p = service::templates::preview::preview(svc, &actor, appointment, editor.content, PreviewSample::Synthetic)
        .await
        .unwrap();
    assert!(
        p.html.expose().contains("Your appointment at (message.clinic) is on Tuesday January 5, 2027"),
        "{}",
        p.html.expose()
    );
    assert!(p.uses_phi);

    // Sent through the API with data: the clinic and the formatted date reach the patient; the
    // room the data lacks is empty.
    let body = json!({
        "contact": {"id": ann},
        "template": appointment,
        "data": {"appointment_at": "2027-01-05T14:30:00Z", "clinic": format!("{MARKER} Clinic")}
    });
    let r = call(&c, Method::POST, "/api/v1/messages", Some(&sender.secret), &body, &[]).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(!r.body.contains(MARKER));
    let id = json_of(&r)["id"].as_str().unwrap().to_string();
    let msgs = smtp.wait_for(1, 30).await;
    let m = mime(&msgs[0].0);
    assert_eq!(header(&m, "to"), "ann@patients.test");
    assert_eq!(header(&m, "subject"), "Your appointment");
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains(&format!("Your appointment at {MARKER} Clinic is on Tuesday January 5, 2027 at 9:30 AM.")),
        "{html}"
    );
    assert!(html.contains("Room: []"), "{html}");
    let text = m["text"].as_str().unwrap();
    assert!(text.contains(&format!("{MARKER} Clinic")) && text.contains("9:30 AM"), "{text}");
    let mut status = Value::Null;
    for _ in 0..100 {
        let r = call(&c, Method::GET, &format!("/api/v1/messages/{id}"), Some(&sender.secret), &Value::Null, &[]).await;
        status = json_of(&r);
        if status["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "sent", "{status}");

    // A value the template formats as a date that is not one: refused at acceptance, naming the
    // member and not its value (rather than a message that fails at send).
    for bad in [json!(format!("next Tuesday {MARKER}")), json!(20270105), json!(true)] {
        let r = call(
            &c,
            Method::POST,
            "/api/v1/messages",
            Some(&sender.secret),
            &json!({"contact": {"id": ann}, "template": appointment, "data": {"appointment_at": bad, "clinic": "x"}}),
            &[],
        )
        .await;
        assert_eq!(r.status, 422, "{}", r.body);
        let problem = json_of(&r);
        assert_eq!(
            (problem["code"].as_str(), problem["pointer"].as_str()),
            (Some("invalid_field"), Some("/data/appointment_at"))
        );
        assert!(!r.body.contains(MARKER) && !r.body.contains("Tuesday"), "{}", r.body);
    }
    // A missing or null date is fine (it renders empty).
    let r = call(
        &c,
        Method::POST,
        "/api/v1/messages",
        Some(&sender.secret),
        &json!({"contact": {"id": ann}, "template": appointment, "data": {"appointment_at": null}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let msgs = smtp.wait_for(2, 30).await;
    let m = mime(&msgs[1].0);
    let html = m["html"].as_str().unwrap();
    assert!(html.contains("Your appointment at  is on ."), "{html}");

    // A template with {{event.…}}: an API message has no event. Refused, nothing queued.
    let r = call(
        &c,
        Method::POST,
        "/api/v1/messages",
        Some(&sender.secret),
        &json!({"contact": {"id": ann}, "template": reminder, "data": {"clinic": MARKER}}),
        &[("idempotency-key", "event-template")],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let problem = json_of(&r);
    assert_eq!(
        (problem["code"].as_str(), problem["pointer"].as_str()),
        (Some("template_not_allowed"), Some("/template"))
    );
    assert!(!r.body.contains(MARKER));
    assert_eq!(count(&app, "SELECT count(*) FROM api_message").await, 2);
    assert_eq!(count(&app, "SELECT count(*) FROM api_idempotency").await, 0, "a refusal stores no answer");

    // Campaigns have neither: refused when the draft names such a template, and at launch when
    // the chosen template gained such a field after the draft was saved.
    let patient = contact(svc, &actor, "bob@patients.test", "Bob", true).await;
    let list = list_with(svc, &actor, &[patient]).await;
    let (admin, _) = app.sign_in("admin@lakeside.test", None).await;
    for (t, needle) in [(appointment, "{{message.appointment_at}}"), (reminder, "{{event.clinic}}")] {
        let s = serde_json::to_value(settings(&format!("Uses {t}"), list, t)).unwrap();
        let (code, body) = admin.call_json("create_campaign", json!({ "settings": s })).await;
        assert_eq!(code, 422, "{body}");
        let text = body.to_string();
        assert!(text.contains(needle) && text.contains("template"), "{text}");
        let e = service::campaigns::create(svc, &actor, &settings(&format!("Direct {t}"), list, t)).await.unwrap_err();
        assert!(
            matches!(&e, service::ServiceError::Invalid(domain::DomainError::Invalid { field, .. }) if field == "template"),
            "{e:?}"
        );
    }
    let plain = template(svc, &actor).await;
    let draft = service::campaigns::create(svc, &actor, &settings("Spring", list, plain)).await.unwrap();
    // Updating the draft to the message template is refused too.
    let s = serde_json::to_value(settings("Spring", list, appointment)).unwrap();
    let (code, body) = admin.call_json("update_campaign", json!({ "id": draft, "settings": s })).await;
    assert_eq!(code, 422, "{body}");
    save(svc, &actor, plain, content("Spring news", "<p>Hello {{contact.first_name}} at {{message.clinic}}</p>")).await;
    let (code, body) = admin.call("launch_campaign", &[("id", &draft.to_string())]).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("{{message.clinic}}"), "{body}");
    let view = service::campaigns::get(svc, &actor, draft).await.unwrap();
    assert_eq!(view.status, domain::campaigns::CampaignStatus::Draft, "nothing was launched");
    assert!(view.template_version.is_none());

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2, "only the two API messages were sent");
    app.stop().await;
    let log = std::fs::read_to_string(log_file()).unwrap_or_default();
    assert!(!log.contains(MARKER), "the PHI marker reached the log");
}
