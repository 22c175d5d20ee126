//! Triggered follow-up sequences end to end: patient events posted through the real API, the
//! engine running in the app's own workers, the controllable clock moved forward, and what
//! arrived at a real SMTP server process checked per step. Covers the appointment-reminder
//! journey (trigger conditions, a wait relative to the appointment, wait-for an open with a
//! timeout, correlated cancelling events), goals, branches, list updates, entry rules, a new
//! version published while contacts are inside, unsubscribing and suppression mid-sequence, and
//! the PHI marker staying out of the trail, the job payloads and the log.

use crate::api::{Key, call, key};
use crate::campaigns::{contact, start};
use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, mime};
use domain::Role;
use domain::api::Scope;
use domain::contacts::SuppressionReason;
use domain::sequences::SequenceDefinition;
use reqwest::Method;
use serde_json::{Value, json};
use service::sequences::DraftInput;
use service::{Actor, Services};
use std::time::Duration;
use uuid::Uuid;

const MARKER: &str = "PHI-MARKER-Vx93q";

/// A real SMTP server requiring TLS, the app sending to it, and an organisation ("Lakeside",
/// administrator admin@lakeside.test) with the verified sending domain clinic.test.
pub(crate) async fn clinic() -> (SmtpServer, TestApp, domain::ids::OrganisationId, Actor) {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    (smtp, app, org, actor)
}

/// A template with its own subject, a tracked link and the unsubscribe link.
pub(crate) async fn template(svc: &Services, actor: &Actor, subject: &str) -> Uuid {
    template_with(svc, actor, subject, "").await
}

async fn template_with(svc: &Services, actor: &Actor, subject: &str, extra: &str) -> Uuid {
    let id = service::templates::store::create(svc, actor, subject, None).await.unwrap();
    let content: domain::template_views::TemplateContent = serde_json::from_value(json!({
        "mode": "html", "subject": subject, "preheader": "", "design": {"blocks": []},
        "html": format!("<html><body><p>Hello {{{{contact.first_name}}}},</p>{extra}<p><a href=\"https://clinic.example/visit\">Your visit</a></p><p><a href=\"{{{{links.unsubscribe}}}}\">Unsubscribe</a></p></body></html>"),
        "text": "", "text_edited": false
    }))
    .unwrap();
    let latest = service::templates::store::editor(svc, actor, id, None).await.unwrap().version;
    let out = service::templates::store::save(svc, actor, id, latest, content).await.unwrap();
    assert!(matches!(out, domain::template_views::SaveOutcome::Saved { .. }), "{out:?}");
    id
}

pub(crate) async fn publish(svc: &Services, actor: &Actor, name: &str, def: Value) -> Uuid {
    let id = service::sequences::create(svc, actor, name).await.unwrap();
    save(svc, actor, id, name, def).await;
    service::sequences::publish(svc, actor, id, &[]).await.unwrap();
    id
}

pub(crate) async fn save(svc: &Services, actor: &Actor, id: Uuid, name: &str, def: Value) {
    let definition: SequenceDefinition = serde_json::from_value(def).unwrap();
    let input = DraftInput {
        name: name.into(),
        from_name: "Lakeside Clinic".into(),
        from_email: "care@clinic.test".into(),
        definition,
    };
    service::sequences::save_draft(svc, actor, id, &input).await.unwrap();
}

async fn event(c: &Client, k: &Key, contact: Uuid, kind: &str, properties: Value) {
    let body = json!({"contact": {"id": contact}, "type": kind, "occurred_at": "2026-12-01T09:00:00Z", "properties": properties});
    let r = call(c, Method::POST, "/api/v1/events", Some(&k.secret), &body, &[]).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

pub(crate) async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let v = service::db::scalar::<i64, _>(&db, sql, []).await.unwrap().unwrap_or(0);
    db.close().await.unwrap();
    v
}

pub(crate) async fn texts(app: &TestApp, sql: &str) -> Vec<String> {
    let db = app.db.connect().await;
    let v = service::db::scalars::<String, _>(&db, sql, []).await.unwrap();
    db.close().await.unwrap();
    v
}

/// Wait until the engine has consumed every event and nothing is due on the test clock, and
/// every queued message has been sent.
pub(crate) async fn settle(app: &TestApp) {
    let now = app.now();
    for _ in 0..200 {
        let busy = scalar(
            app,
            &format!(
                "SELECT (SELECT count(*) FROM event_outbox)
                      + (SELECT count(*) FROM enrolment WHERE state = 'active' AND wake_at <= '{}')
                      + (SELECT count(*) FROM delivery_queue)",
                now.to_rfc3339()
            ),
        )
        .await;
        if busy == 0 {
            // One more engine pass for anything its last batch started.
            tokio::time::sleep(Duration::from_millis(400)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the engine did not settle");
}

/// (recipient, subject) of every message the SMTP server accepted, in order.
pub(crate) fn received(smtp: &SmtpServer) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .map(|(p, _)| {
            let m = mime(p);
            (
                m["headers"]["to"].as_str().unwrap_or_default().to_string(),
                m["headers"]["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(crate) fn to(who: &str, list: &[(String, String)]) -> Vec<String> {
    list.iter().filter(|(t, _)| t == who).map(|(_, s)| s.clone()).collect()
}

pub(crate) async fn state_of(app: &TestApp, contact: Uuid) -> Vec<String> {
    texts(
        app,
        &format!(
            "SELECT state || ':' || COALESCE(end_reason, '') || ':' || COALESCE(step_id, '') FROM enrolment
             WHERE contact_id = '{contact}' ORDER BY entered_at, id"
        ),
    )
    .await
}

async fn trail_of(app: &TestApp, contact: Uuid) -> Vec<String> {
    texts(
        app,
        &format!(
            "SELECT x.step_id || ':' || x.outcome FROM enrolment_step x JOIN enrolment e ON e.id = x.enrolment_id
             WHERE e.contact_id = '{contact}' ORDER BY e.entered_at, e.id, x.visit"
        ),
    )
    .await
}

#[tokio::test]
async fn appointment_reminders_follow_the_appointment_and_stop_when_it_is_cancelled() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let bob = contact(svc, &actor, "bob@patients.test", "Bob", true).await;
    let cara = contact(svc, &actor, "cara@patients.test", "Cara", true).await;
    let confirm = template(svc, &actor, "Your appointment is booked").await;
    let remind = template_with(
        svc,
        &actor,
        "See you in two days",
        "<p>Your appointment at {{event.clinic}} is on {{date event.appointment_at \"%B %-d, %Y\"}}.</p>",
    )
    .await;
    let nudge = template(svc, &actor, "A reminder about your appointment").await;
    let now = app.now();
    let at = |days: i64| (now + chrono::Duration::days(days)).to_rfc3339();
    publish(
        svc,
        &actor,
        "Appointment reminders",
        json!({
            "version": 1,
            "trigger": {"kind": "event", "event_type": "appointment.booked",
                        "properties": [{"key": "department", "test": {"op": "text_equals", "value": "cardiology"}}]},
            "entry": "every_time",
            "correlation_key": "appointment_id",
            "goal": {"event_type": "appointment.completed", "correlated": true},
            "exit_on": [{"event_type": "appointment.cancelled", "correlated": true}],
            "start": "confirm",
            "steps": [
                {"id": "confirm", "kind": "send_email", "template": confirm, "purpose": "transactional", "next": "two_days"},
                {"id": "two_days", "kind": "wait", "wait": {"kind": "until_event_time", "property": "appointment_at", "offset_minutes": -2880}, "next": "remind"},
                {"id": "remind", "kind": "send_email", "template": remind, "purpose": "marketing", "next": "opened"},
                {"id": "opened", "kind": "wait_for", "event": {"kind": "opened", "step": "remind"}, "timeout_minutes": 1440,
                 "on_event": null, "on_timeout": "nudge"},
                {"id": "nudge", "kind": "send_email", "template": nudge, "purpose": "marketing", "next": null}
            ]
        }),
    )
    .await;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    // Ann and Cara book cardiology a week ahead; Bob books oncology (no match).
    event(
        &c,
        &k,
        ann,
        "appointment.booked",
        json!({"department": "Cardiology", "appointment_id": "A1", "appointment_at": at(7), "clinic": MARKER}),
    )
    .await;
    event(
        &c,
        &k,
        bob,
        "appointment.booked",
        json!({"department": "oncology", "appointment_id": "B1", "appointment_at": at(7)}),
    )
    .await;
    event(
        &c,
        &k,
        cara,
        "appointment.booked",
        json!({"department": "cardiology", "appointment_id": "C1", "appointment_at": at(7)}),
    )
    .await;
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(to("ann@patients.test", &got), vec!["Your appointment is booked"]);
    assert_eq!(to("cara@patients.test", &got), vec!["Your appointment is booked"]);
    assert!(to("bob@patients.test", &got).is_empty(), "the trigger's condition keeps Bob out");
    assert_eq!(state_of(&app, ann).await, vec!["active::two_days"]);
    assert!(state_of(&app, bob).await.is_empty());

    // Cara cancels another appointment (C9): this enrolment goes on. Then she cancels C1: it ends.
    event(&c, &k, cara, "appointment.cancelled", json!({"appointment_id": "C9"})).await;
    settle(&app).await;
    assert_eq!(state_of(&app, cara).await, vec!["active::two_days"]);
    event(&c, &k, cara, "appointment.cancelled", json!({"appointment_id": "C1"})).await;
    settle(&app).await;
    assert_eq!(state_of(&app, cara).await, vec!["exited:cancel_event:two_days"]);

    // Five days on (two days before the appointment): Ann's reminder, nobody else's.
    app.advance(5 * 86_400 + 60);
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(to("ann@patients.test", &got), vec!["Your appointment is booked", "See you in two days"]);
    assert_eq!(to("cara@patients.test", &got).len(), 1);
    // The reminder is marketing: list headers; the confirmation is transactional: none.
    let ann_msgs: Vec<Value> =
        smtp.messages().iter().map(|(p, _)| mime(p)).filter(|m| m["headers"]["to"] == "ann@patients.test").collect();
    assert!(ann_msgs[0]["headers"]["list-unsubscribe"].is_null());
    assert!(ann_msgs[1]["headers"]["list-unsubscribe"].as_str().unwrap_or_default().contains("http"));
    assert_eq!(state_of(&app, ann).await, vec!["active::opened"]);
    // The reminder says where and when: the trigger event's properties, the date in Ann's zone.
    let html = ann_msgs[1]["html"].as_str().unwrap_or_default();
    let day = (now + chrono::Duration::days(7)).format("%B %-d, %Y").to_string();
    assert!(html.contains(&format!("Your appointment at {MARKER} is on {day}.")), "{html}");

    // Nobody opened it: a day later the nudge, and the journey is complete.
    app.advance(86_400 + 60);
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(
        to("ann@patients.test", &got),
        vec!["Your appointment is booked", "See you in two days", "A reminder about your appointment"]
    );
    assert_eq!(state_of(&app, ann).await, vec!["completed:completed:"]);
    assert_eq!(
        trail_of(&app, ann).await,
        vec![
            ":entered",
            "confirm:sent",
            "two_days:waited",
            "remind:sent",
            "opened:timed_out",
            "nudge:sent",
            ":completed"
        ]
    );
    assert_eq!(trail_of(&app, cara).await, vec![":entered", "confirm:sent", "two_days:cancel_event"]);
    // Each message once: three for Ann, one for Cara, none for Bob.
    assert_eq!(received(&smtp).len(), 4);

    // No PHI in the trail, the enrolments, the message rows or the job payloads.
    for sql in [
        "SELECT row_to_json(t)::text FROM enrolment_step t",
        "SELECT row_to_json(t)::text FROM enrolment t",
        "SELECT row_to_json(t)::text FROM api_message t",
        "SELECT row_to_json(t)::text FROM sequence_version t",
        "SELECT convert_from(job, 'UTF8') FROM apalis.jobs",
    ] {
        for row in texts(&app, sql).await {
            assert!(!row.contains(MARKER) && !row.contains("patients.test") && !row.contains("A1"), "{sql}: {row}");
        }
    }
    assert!(
        texts(&app, "SELECT definition::text FROM sequence_version").await.iter().all(|d| !d.contains("cardiology")),
        "the plain copy of a definition masks trigger literals"
    );
    app.stop().await;
    let log = std::fs::read_to_string(log_file()).unwrap_or_default();
    assert!(!log.contains(MARKER), "the PHI marker reached the log");
}

#[tokio::test]
async fn goals_branches_lists_entry_rules_versions_and_unsubscribes() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let people: Vec<Uuid> = {
        let mut v = Vec::new();
        for (e, n) in [
            ("dan@patients.test", "Dan"),
            ("eve@patients.test", "Eve"),
            ("fay@patients.test", "Fay"),
            ("gus@patients.test", "Gus"),
            ("hal@patients.test", "Hal"),
        ] {
            v.push(contact(svc, &actor, e, n, true).await);
        }
        v
    };
    let (dan, eve, fay, gus, hal) = (people[0], people[1], people[2], people[3], people[4]);
    let survey = template(svc, &actor, "How was your visit?").await;
    let vip = template(svc, &actor, "Thank you, valued patient").await;
    let nudge = template(svc, &actor, "Two minutes for our survey?").await;
    let followed = service::contacts::lists::create(
        svc,
        &actor,
        "Surveyed",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    // Post-visit survey: a day after the visit (once ever); a branch on the visit's kind; wait
    // three days for a "survey.completed" (the goal ends it earlier); then a nudge.
    let def = |nudge_subject_template: Uuid| {
        json!({
            "version": 1,
            "trigger": {"kind": "event", "event_type": "visit.completed"},
            "entry": "once_ever",
            "goal": {"event_type": "survey.completed"},
            "start": "day",
            "steps": [
                {"id": "day", "kind": "wait", "wait": {"kind": "duration", "minutes": 1440}, "next": "kind"},
                {"id": "kind", "kind": "branch",
                 "test": {"kind": "event_property", "test": {"key": "kind", "test": {"op": "text_equals", "value": "annual"}}},
                 "then": "vip", "otherwise": "survey"},
                {"id": "vip", "kind": "send_email", "template": vip, "purpose": "marketing", "next": "survey"},
                {"id": "survey", "kind": "send_email", "template": survey, "purpose": "marketing", "next": "listed"},
                {"id": "listed", "kind": "update_list", "list": followed, "add": true, "next": "wait3"},
                {"id": "wait3", "kind": "wait_for", "event": {"kind": "event", "event_type": "survey.started"},
                 "timeout_minutes": 4320, "on_event": null, "on_timeout": "nudge"},
                {"id": "nudge", "kind": "send_email", "template": nudge_subject_template, "purpose": "marketing", "next": null}
            ]
        })
    };
    let seq = publish(svc, &actor, "Post-visit survey", def(nudge)).await;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    for (who, kind) in [(dan, "annual"), (eve, "walk-in"), (fay, "walk-in"), (gus, "walk-in")] {
        event(&c, &k, who, "visit.completed", json!({"kind": kind})).await;
    }
    // A second visit does not enrol Dan again (once ever).
    event(&c, &k, dan, "visit.completed", json!({"kind": "annual"})).await;
    settle(&app).await;
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM enrolment WHERE sequence_id = '{seq}'")).await, 4);
    assert!(received(&smtp).is_empty(), "nothing before a day has passed");

    // Eve unsubscribes (withdraws marketing) and Fay's address is suppressed before the survey:
    // both enrolments end at once, at the step they wait at.
    service::contacts::consent::record(svc, &actor, eve, domain::contacts::ConsentPurpose::Marketing, false, None)
        .await
        .unwrap();
    service::contacts::suppression::add(svc, &actor, "fay@patients.test", SuppressionReason::Manual).await.unwrap();
    // Gus already started the survey (an event just before the wait-for begins still counts).
    event(&c, &k, gus, "survey.started", json!({})).await;
    settle(&app).await;

    // A new version while they wait: a different nudge. They finish the version they entered;
    // Hal, who enters now, takes the new one.
    let nudge2 = template(svc, &actor, "Tell us how we did").await;
    save(svc, &actor, seq, "Post-visit survey", def(nudge2)).await;
    assert_eq!(service::sequences::publish(svc, &actor, seq, &[]).await.unwrap(), 2);
    event(&c, &k, hal, "visit.completed", json!({"kind": "walk-in"})).await;
    settle(&app).await;

    app.advance(86_400 + 60);
    settle(&app).await;
    let got = received(&smtp);
    // Both of Dan's emails are queued in one step run; their send jobs may finish in either order.
    let mut dans = to("dan@patients.test", &got);
    dans.sort();
    assert_eq!(dans, vec!["How was your visit?", "Thank you, valued patient"]);
    assert_eq!(to("gus@patients.test", &got), vec!["How was your visit?"]);
    assert_eq!(to("hal@patients.test", &got), vec!["How was your visit?"]);
    assert!(to("eve@patients.test", &got).is_empty(), "an unsubscribed patient is not mailed");
    assert!(to("fay@patients.test", &got).is_empty(), "a suppressed address is never mailed");
    assert_eq!(state_of(&app, eve).await, vec!["exited:unsubscribed:day"]);
    assert_eq!(state_of(&app, fay).await, vec!["exited:suppressed:day"]);
    // Gus's survey.started arrived before the wait began: his enrolment is complete already.
    assert_eq!(state_of(&app, gus).await, vec!["completed:completed:"]);
    assert_eq!(
        scalar(
            &app,
            &format!("SELECT count(*) FROM list_member WHERE list_id = '{followed}' AND status = 'subscribed'")
        )
        .await,
        3
    );

    // Dan completes the survey: the goal ends his enrolment as converted wherever it is.
    event(&c, &k, dan, "survey.completed", json!({})).await;
    settle(&app).await;
    assert_eq!(state_of(&app, dan).await, vec!["converted:goal:wait3"]);

    // Three days on: only Hal is still waiting; he gets the new version's nudge.
    app.advance(3 * 86_400 + 60);
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(to("hal@patients.test", &got), vec!["How was your visit?", "Tell us how we did"]);
    assert_eq!(to("dan@patients.test", &got).len(), 2);
    assert_eq!(
        texts(&app, &format!("SELECT v.number::text FROM enrolment e JOIN sequence_version v ON v.id = e.version_id WHERE e.contact_id IN ('{dan}', '{hal}') ORDER BY e.contact_id = '{hal}'")).await,
        vec!["1", "2"]
    );

    // Pause holds enrolments; archive admits nobody new.
    service::sequences::set_status(svc, &actor, seq, domain::sequences::SequenceStatus::Paused).await.unwrap();
    let ivy = contact(svc, &actor, "ivy@patients.test", "Ivy", true).await;
    event(&c, &k, ivy, "visit.completed", json!({})).await;
    settle(&app).await;
    assert!(state_of(&app, ivy).await.is_empty(), "a paused sequence admits nobody");
    service::sequences::set_status(svc, &actor, seq, domain::sequences::SequenceStatus::Archived).await.unwrap();
    assert!(service::sequences::set_status(svc, &actor, seq, domain::sequences::SequenceStatus::Active).await.is_err());

    // The view: figures per step, and the enrolment list with its trail.
    let view = service::sequences::get(svc, &actor, seq).await.unwrap();
    assert_eq!(view.versions.len(), 2);
    let survey_step = view.steps.iter().find(|s| s.step_id == "survey").unwrap();
    assert_eq!(survey_step.sent, domain::disclosure::Figure::Exact(3));
    let list = service::sequences::enrolments(svc, &actor, seq, None, 100).await.unwrap();
    assert_eq!(list.len(), 5);
    let eves = list.iter().find(|e| e.contact_id == eve).unwrap();
    let trail = service::sequences::trail(svc, &actor, eves.id).await.unwrap();
    assert_eq!(trail.iter().map(|t| t.outcome.as_str()).collect::<Vec<_>>(), vec!["entered", "unsubscribed"]);

    // The report: funnel in flow order, ways out, time to convert, each email step's figures.
    use domain::disclosure::Figure::Exact;
    use domain::sequences::EndReason;
    let r = service::sequences::report::report(svc, &actor, seq).await.unwrap();
    assert_eq!((r.version, r.entered, r.active, r.converted), (Some(2), Exact(5), Exact(0), Exact(1)), "{r:?}");
    assert_eq!(r.conversion_rate, Some(20.0));
    let ended = |reason| r.ended.iter().find(|e| e.reason == reason).unwrap().count;
    assert_eq!(
        [EndReason::Goal, EndReason::Unsubscribed, EndReason::Suppressed, EndReason::Completed].map(ended),
        [Exact(1), Exact(1), Exact(1), Exact(2)]
    );
    let funnel: Vec<(&str, domain::disclosure::Figure)> =
        r.funnel.iter().map(|s| (s.step_id.as_str(), s.reached)).collect();
    assert_eq!(
        funnel,
        [
            ("day", Exact(5)),
            ("kind", Exact(3)),
            ("vip", Exact(1)),
            ("survey", Exact(3)),
            ("listed", Exact(3)),
            ("wait3", Exact(3)),
            ("nudge", Exact(1))
        ]
    );
    // Dan converted a day and a minute after entering.
    assert_eq!(r.to_convert.iter().map(|b| b.count).collect::<Vec<_>>()[1..3], [Exact(0), Exact(1)]);
    let median = r.median_hours_to_convert.unwrap();
    assert!((24.0..24.2).contains(&median), "{median}");
    let email = |id: &str| r.emails.iter().find(|e| e.step_id == id).unwrap().report.clone();
    assert_eq!(
        (email("survey").delivered, email("vip").delivered, email("nudge").delivered),
        (Exact(3), Exact(1), Exact(1))
    );
    assert_eq!(
        email("survey").links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
        ["https://clinic.example/visit"]
    );
    // An analyst sees the same report with every figure from fewer than 11 people hidden.
    app.add_user(org, "analyst@lakeside.test", Role::Analyst).await;
    let (analyst, _) = app.sign_in("analyst@lakeside.test", None).await;
    let (status, a) = analyst.call("sequence_report", &[("id", &seq.to_string())]).await;
    assert_eq!(status, 200, "{a}");
    let lt = json!({"shown": "fewer_than", "value": 11});
    assert_eq!(a["entered"], lt, "{a}");
    assert_eq!(a["funnel"][3]["reached"], lt, "{a}");
    assert_eq!(a["emails"][0]["report"]["delivered"], lt, "{a}");
    assert!(a["median_hours_to_convert"].is_null() && a["conversion_rate"].is_null(), "{a}");
    assert!(!a.to_string().contains("patients.test"), "no address in a report: {a}");
    app.stop().await;
}

#[tokio::test]
async fn publishing_refuses_what_cannot_run_and_roles_are_enforced() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let id = service::sequences::create(svc, &actor, "Reminders").await.unwrap();
    // The starter has a send step without a template: publishing says which step and why.
    let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
    assert!(e.to_string().contains("step send-1") || format!("{e:?}").contains("send-1"), "{e:?}");
    // Hostile names and senders are refused next to their field, never echoed.
    for (name, field) in [("", "name"), ("a\nb", "name")] {
        let e = service::sequences::create(svc, &actor, name).await.unwrap_err();
        assert!(format!("{e:?}").contains(field), "{e:?}");
    }
    let mut input = DraftInput {
        name: "Reminders".into(),
        from_name: "Lakeside".into(),
        from_email: "care@clinic.test\r\nBcc: x@evil.test".into(),
        definition: serde_json::from_value(json!({"version": 1, "trigger": {"kind": "manual"}, "start": "a",
            "steps": [{"id": "a", "kind": "exit"}]}))
        .unwrap(),
    };
    let e = service::sequences::save_draft(svc, &actor, id, &input).await.unwrap_err();
    assert!(format!("{e:?}").contains("from_email"), "{e:?}");
    input.from_email = "care@unverified.test".into();
    service::sequences::save_draft(svc, &actor, id, &input).await.unwrap();
    let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
    assert!(format!("{e:?}").contains("from_email"), "an unverified sender is refused: {e:?}");
    // An analyst reads the masked sequence but cannot edit, list enrolments or see trails.
    let analyst = Actor { role: Role::Analyst, ..Actor::system(org, "test") };
    assert!(service::sequences::list(svc, &analyst).await.is_ok());
    let v = service::sequences::get(svc, &analyst, id).await.unwrap();
    assert!(v.masked);
    assert!(service::sequences::save_draft(svc, &analyst, id, &input).await.is_err());
    assert!(service::sequences::publish(svc, &analyst, id, &[]).await.is_err());
    assert!(service::sequences::enrolments(svc, &analyst, id, None, 10).await.is_err());
    assert!(service::sequences::create(svc, &analyst, "Mine").await.is_err());
    // Another organisation sees nothing.
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let foreign = Actor::system(other, "test");
    assert!(service::sequences::get(svc, &foreign, id).await.is_err());
    assert!(service::sequences::list(svc, &foreign).await.unwrap().is_empty());
    app.stop().await;
}

/// Wait (real time, the engine running) until `sql` counts at least one row.
async fn eventually(app: &TestApp, sql: &str) {
    for _ in 0..200 {
        if scalar(app, sql).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never true: {sql}");
}

/// The triggers besides patient events: a list addition (by any path, once per subscription), a
/// contact entering a segment after the sequence went live (not the members it started with),
/// and a person's first click in a campaign's email (not a scanner's, not a second click).
#[tokio::test]
async fn list_segment_and_campaign_triggers_enrol_the_contacts_they_name() {
    let (smtp, app, _org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let bob = contact(svc, &actor, "bob@patients.test", "Quillonbrae", true).await;
    let dan = contact(svc, &actor, "dan@patients.test", "Dan", true).await;
    let welcome = template(svc, &actor, "Welcome to the newsletter").await;
    let joined = template(svc, &actor, "You are in the group").await;
    let thanks = template(svc, &actor, "Thanks for reading").await;
    let one_send = |t: Uuid, trigger: Value, entry: &str| {
        json!({
            "version": 1, "trigger": trigger, "entry": entry, "start": "send",
            "steps": [{"id": "send", "kind": "send_email", "template": t, "purpose": "marketing", "next": null}]
        })
    };

    // A list: added by staff, added again (already subscribed: nothing), unsubscribed and
    // subscribed again (a new subscription, but the sequence admits once ever).
    let news = service::contacts::lists::create(
        svc,
        &actor,
        "Newsletter",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    publish(svc, &actor, "Welcome", one_send(welcome, json!({"kind": "list_added", "list": news}), "once_ever")).await;
    service::contacts::lists::add(svc, &actor, news, &[ann]).await.unwrap();
    settle(&app).await;
    assert_eq!(to("ann@patients.test", &received(&smtp)), ["Welcome to the newsletter"]);
    service::contacts::lists::add(svc, &actor, news, &[ann]).await.unwrap();
    service::contacts::lists::unsubscribe(svc, &actor, news, ann).await.unwrap();
    service::contacts::lists::add(svc, &actor, news, &[ann]).await.unwrap();
    settle(&app).await;
    assert_eq!(scalar(&app, "SELECT count(*) FROM sequence_signal").await, 0, "every signal consumed");
    assert_eq!(to("ann@patients.test", &received(&smtp)).len(), 1, "once ever");
    assert!(trail_of(&app, ann).await.contains(&":entered".to_string()));
    let why = texts(&app, &format!(
        "SELECT x.detail->>'signal' FROM enrolment_step x JOIN enrolment e ON e.id = x.enrolment_id WHERE e.contact_id = '{ann}' AND x.visit = 0"
    ))
    .await;
    assert_eq!(why, ["list_added"], "the trail says why the contact entered");

    // A segment (a PHI condition: sealed): Bob is a member when the sequence goes live and does
    // not enter; Cara, created afterwards with the same name, enters at the next check.
    let def: domain::segments::SegmentDefinition = serde_json::from_value(json!({
        "version": 1,
        "root": {"node": "and", "children": [{"node": "condition", "condition":
            {"kind": "field", "field": "first_name", "test": {"op": "text_equals", "value": "Quillonbrae"}}}]}
    }))
    .unwrap();
    let group = service::segments::create(svc, &actor, "Quillonbraes", &def).await.unwrap();
    let seq = publish(
        svc,
        &actor,
        "Group",
        one_send(joined, json!({"kind": "segment_entered", "segment": group}), "once_ever"),
    )
    .await;
    eventually(&app, &format!("SELECT count(*) FROM sequence_segment_check WHERE sequence_id = '{seq}'")).await;
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM sequence_segment_member WHERE sequence_id = '{seq}'")).await,
        1
    );
    let cara = contact(svc, &actor, "cara@patients.test", "Quillonbrae", true).await;
    settle(&app).await;
    assert!(state_of(&app, cara).await.is_empty(), "not before the next check");
    app.advance(service::sequences::engine::SEGMENT_CHECK_SECS + 1);
    eventually(&app, &format!("SELECT count(*) FROM enrolment WHERE contact_id = '{cara}'")).await;
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(to("cara@patients.test", &got), ["You are in the group"]);
    assert!(to("bob@patients.test", &got).is_empty(), "members at publication do not enter");
    assert!(state_of(&app, bob).await.is_empty());

    // A campaign: Dan's first human click starts the sequence; a scanner's does not, nor a
    // second click (even with an entry rule that admits every time).
    let list = crate::campaigns::list_with(svc, &actor, &[dan]).await;
    let t = crate::campaigns::template(svc, &actor).await;
    let campaign =
        service::campaigns::create(svc, &actor, &crate::campaigns::settings("Spring", list, t)).await.unwrap();
    let after = publish(
        svc,
        &actor,
        "After Spring",
        one_send(thanks, json!({"kind": "campaign_engaged", "campaign": campaign, "action": "clicked"}), "every_time"),
    )
    .await;
    assert_eq!(
        service::campaigns::launch(svc, &actor, campaign).await.unwrap(),
        domain::campaigns::CampaignStatus::Sending
    );
    crate::campaigns::wait_status(&app, &actor, campaign, domain::campaigns::CampaignStatus::Completed, 60).await;
    let spring = smtp
        .messages()
        .iter()
        .map(|(p, _)| mime(p))
        .find(|m| m["headers"]["subject"] == "Spring check-ups")
        .expect("the campaign's message");
    let click = crate::campaigns::path_of(&crate::campaigns::find_url(spring["html"].as_str().unwrap(), "/t/c/"));
    let web = app.client();
    app.advance(120);
    let r = web.get_with(&click, &[("user-agent", "Mozilla/5.0 (compatible; Barracuda Sentinel)")]).await;
    assert_eq!(r.status, 302);
    settle(&app).await;
    assert!(state_of(&app, dan).await.is_empty(), "a link scanner is not a person");
    app.advance(120);
    const IPHONE_MAIL: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    for _ in 0..2 {
        let r = web.get_with(&click, &[("user-agent", IPHONE_MAIL)]).await;
        assert_eq!(r.status, 302);
        app.advance(120);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    settle(&app).await;
    assert_eq!(to("dan@patients.test", &received(&smtp)), ["Spring check-ups", "Thanks for reading"]);
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM enrolment WHERE sequence_id = '{after}' AND contact_id = '{dan}'"))
            .await,
        1
    );

    // Publishing refuses a trigger naming another organisation's list, or nothing.
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let foreign = service::contacts::lists::create(
        svc,
        &Actor::system(other, "test"),
        "Theirs",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    for trigger in
        [json!({"kind": "list_added", "list": foreign}), json!({"kind": "segment_entered", "segment": Uuid::nil()})]
    {
        let id = service::sequences::create(svc, &actor, "Refused").await.unwrap();
        save(svc, &actor, id, "Refused", one_send(welcome, trigger, "once_ever")).await;
        let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
        assert!(format!("{e:?}").contains("trigger"), "{e:?}");
    }
    app.stop().await;
}

/// A notify-staff step emails a colleague the sequence, the step, its note and a link to the
/// enrolment — never the patient's name or address — once per step visit; publishing refuses
/// a recipient outside the organisation and a note with merge fields.
#[tokio::test]
async fn a_notify_staff_step_emails_a_colleague_without_the_patient() {
    let (smtp, app, _org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let zel = contact(svc, &actor, "zelphinia.quarrendon@marker.example", "Zelphinia", true).await;
    let welcome = template(svc, &actor, "Welcome to the newsletter").await;
    let admin: Vec<String> = texts(&app, "SELECT id::text FROM app_user WHERE email = 'admin@lakeside.test'").await;
    let list = service::contacts::lists::create(
        svc,
        &actor,
        "Callbacks",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    let def = |user: &str, note: &str| {
        json!({
            "version": 1, "trigger": {"kind": "list_added", "list": list}, "entry": "every_time", "start": "tell",
            "steps": [
                {"id": "tell", "name": "Call back", "kind": "notify_staff", "user": user, "note": note, "next": "send"},
                {"id": "send", "kind": "send_email", "template": welcome, "purpose": "marketing", "next": null}
            ]
        })
    };
    let seq = publish(svc, &actor, "Callbacks", def(&admin[0], "Please call to reschedule.")).await;
    service::contacts::lists::add(svc, &actor, list, &[zel]).await.unwrap();
    settle(&app).await;
    let msgs = smtp.wait_for(2, 20).await;
    let notices: Vec<Value> = msgs
        .iter()
        .map(|(p, _)| mime(p))
        .filter(|m| m["headers"]["to"].as_str().unwrap_or_default().contains("admin@lakeside.test"))
        .collect();
    assert_eq!(notices.len(), 1, "one notice");
    let n = &notices[0];
    let subject = n["headers"]["subject"].as_str().unwrap();
    assert!(subject.contains("Call back") && subject.contains("Callbacks"), "{subject}");
    let body = n["text"].as_str().unwrap_or_default().to_string() + n["html"].as_str().unwrap_or_default();
    let enrolment = texts(&app, &format!("SELECT id::text FROM enrolment WHERE contact_id = '{zel}'")).await;
    assert!(body.contains(&format!("/sequences/{seq}?enrolment={}", enrolment[0])), "{body}");
    assert!(body.contains("Please call to reschedule."), "{body}");
    for secret in ["Zelphinia", "Quarrendon", "marker.example", &zel.to_string()] {
        assert!(!body.contains(secret) && !subject.contains(secret), "the notice names the patient ({secret})");
    }
    assert_eq!(to("zelphinia.quarrendon@marker.example", &received(&smtp)), ["Welcome to the newsletter"]);
    assert!(trail_of(&app, zel).await.contains(&"tell:staff_notified".to_string()), "{:?}", trail_of(&app, zel).await);
    // The job carries ids only.
    for row in
        texts(&app, "SELECT convert_from(job, 'UTF8') FROM apalis.jobs WHERE job_type = 'sequence-staff-notice'").await
    {
        assert!(!row.contains("Zelphinia") && !row.contains("marker.example"), "{row}");
    }

    // Refused at publish: a colleague of another organisation, a note with merge fields, no one.
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let _ = other;
    let stranger = texts(&app, "SELECT id::text FROM app_user WHERE email = 'admin@other.test'").await;
    for (user, note) in [
        (stranger[0].as_str(), ""),
        (admin[0].as_str(), "Call {{contact.first_name}}"),
        ("00000000-0000-0000-0000-000000000000", ""),
    ] {
        let id = service::sequences::create(svc, &actor, "Refused").await.unwrap();
        save(svc, &actor, id, "Refused", def(user, note)).await;
        let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
        assert!(format!("{e:?}").contains("step tell"), "{e:?}");
    }
    app.stop().await;
}

/// `scripts/dev`'s demo: the two demo sequences are created and published once (seeding again
/// changes nothing), and the sample events move demo patients through them: confirmations that
/// say where the appointment is, a cancelled appointment ending its enrolment, a visit starting
/// the survey sequence.
#[tokio::test]
async fn the_demo_sequences_seed_once_and_the_sample_events_move_patients_through_them() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let first = service::sequences::demo::seed(svc, org).await.unwrap();
    assert_eq!(first, vec![("Appointment reminders".to_string(), true), ("Post-visit survey".to_string(), true)]);
    let again = service::sequences::demo::seed(svc, org).await.unwrap();
    assert_eq!(again, first);
    let list = service::sequences::list(svc, &actor).await.unwrap();
    assert_eq!(list.len(), 2, "seeding twice makes no second copy");
    assert_eq!(scalar(&app, "SELECT count(*) FROM template").await, 4);

    assert_eq!(service::sequences::demo::post_events(svc, org, 4).await.unwrap(), 4 + 1 + 2);
    settle(&app).await;
    let reminders = list.iter().find(|s| s.name == "Appointment reminders").unwrap().id;
    let survey = list.iter().find(|s| s.name == "Post-visit survey").unwrap().id;
    let states = |seq: Uuid| {
        texts_owned(
            &app,
            format!(
                "SELECT state || ':' || COALESCE(end_reason, '') FROM enrolment WHERE sequence_id = '{seq}' ORDER BY 1"
            ),
        )
    };
    assert_eq!(states(reminders).await, ["active:", "active:", "active:", "exited:cancel_event"]);
    assert_eq!(states(survey).await, ["active:", "active:"]);
    // Each patient whose appointment stands got one confirmation naming the clinic.
    let got = smtp.messages();
    let confirmations: Vec<serde_json::Value> =
        got.iter().map(|(p, _)| mime(p)).filter(|m| m["headers"]["subject"] == "Your appointment is booked").collect();
    for who in ["avery", "blake", "casey"] {
        let mine: Vec<&serde_json::Value> = confirmations
            .iter()
            .filter(|m| m["headers"]["to"] == format!("{who}@demo-patients.example").as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{who}");
        assert!(mine[0]["html"].as_str().unwrap().contains("Lakeside Cardiology, 2nd floor"), "{who}");
    }
    // Posting the sample events again reuses the demo patients.
    service::sequences::demo::post_events(svc, org, 4).await.unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, 4);
    app.stop().await;
}

async fn texts_owned(app: &TestApp, sql: String) -> Vec<String> {
    texts(app, &sql).await
}

/// A per-contact frequency cap (skip when capped; counting the emails queued earlier in the same
/// run of steps), quiet hours, business-day and time-of-day waits in the recipient's zone, a
/// random split and the one-at-a-time entry rule, driven by events through the API with the clock
/// moved forward.
#[tokio::test]
async fn frequency_cap_quiet_hours_zoned_waits_random_split_and_one_at_a_time() {
    use chrono::Timelike;
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let (t1, t2, t3) = (
        template(svc, &actor, "First news").await,
        template(svc, &actor, "Second news").await,
        template(svc, &actor, "Third news").await,
    );
    let send = |id: &str, t: Uuid, next: Value| json!({"id": id, "kind": "send_email", "template": t, "purpose": "marketing", "next": next});

    // At most two marketing emails in seven days, skipped when capped: three sends in a row.
    let capped = json!({
        "version": 1, "trigger": {"kind": "event", "event_type": "promo.started"}, "entry": "one_at_a_time",
        "frequency_cap": {"max": 2, "days": 7, "wait": false}, "start": "a",
        "steps": [send("a", t1, json!("b")), send("b", t2, json!("c")), send("c", t3, json!("hold")),
                  {"id": "hold", "kind": "wait", "wait": {"kind": "duration", "minutes": 60}, "next": null}]
    });
    publish(svc, &actor, "Capped", capped).await;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    event(&c, &k, ann, "promo.started", json!({})).await;
    settle(&app).await;
    // A second trigger while she is inside: one at a time admits no second enrolment.
    event(&c, &k, ann, "promo.started", json!({})).await;
    settle(&app).await;
    // Steps a and b queue their emails in the same run of steps, and the delivery queue sends in
    // parallel: the order they reach the mailbox is not fixed (a CI run once saw b's first).
    let mut got = to("ann@patients.test", &received(&smtp));
    got.sort();
    assert_eq!(got, ["First news", "Second news"]);
    assert_eq!(state_of(&app, ann).await, ["active::hold"]);
    assert!(trail_of(&app, ann).await.contains(&"c:frequency_capped_skip".to_string()));
    // Once she is out, she may enter again; the cap still holds (two in the last seven days).
    app.advance(61 * 60);
    settle(&app).await;
    event(&c, &k, ann, "promo.started", json!({})).await;
    settle(&app).await;
    assert_eq!(state_of(&app, ann).await, ["completed:completed:", "active::hold"]);
    assert_eq!(to("ann@patients.test", &received(&smtp)).len(), 2);
    let skips = trail_of(&app, ann).await.iter().filter(|t| t.ends_with(":frequency_capped_skip")).count();
    assert_eq!(skips, 4);

    // Quiet hours 21:00–08:00 in the recipient's zone (Tokyo, UTC+9, no daylight saving).
    let quiet = json!({
        "version": 1, "trigger": {"kind": "event", "event_type": "visit.completed"}, "entry": "every_time",
        "quiet_hours": {"from_hour": 21, "to_hour": 8}, "start": "s", "steps": [send("s", t1, Value::Null)]
    });
    publish(svc, &actor, "Quiet", quiet).await;
    let bo = {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("email".to_string(), domain::Phi::new("bo@patients.test".to_string()));
        fields.insert("time_zone".to_string(), domain::Phi::new("Asia/Tokyo".to_string()));
        let id = service::contacts::create(svc, &actor, domain::contacts::ContactInput { fields }).await.unwrap();
        service::contacts::consent::record(svc, &actor, id, domain::contacts::ConsentPurpose::Marketing, true, None)
            .await
            .unwrap();
        id
    };
    let tokyo = |t: chrono::DateTime<chrono::Utc>| (t + chrono::Duration::hours(9)).naive_utc();
    let local = tokyo(app.now());
    let mut ten_past_ten = local.date().and_hms_opt(22, 10, 0).unwrap();
    if ten_past_ten <= local {
        ten_past_ten += chrono::Duration::days(1);
    }
    app.advance((ten_past_ten - local).num_seconds());
    event(&c, &k, bo, "visit.completed", json!({})).await;
    settle(&app).await;
    assert!(to("bo@patients.test", &received(&smtp)).is_empty(), "nothing at 22:10 in Tokyo");
    assert_eq!(state_of(&app, bo).await, ["active::s"]);
    let wake = texts(&app, &format!("SELECT wake_at::text FROM enrolment WHERE contact_id = '{bo}'")).await;
    let wake: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_str(&format!("{}00", wake[0]), "%Y-%m-%d %H:%M:%S%#z").unwrap().into();
    assert_eq!((tokyo(wake).hour(), tokyo(wake).minute()), (8, 0), "it waits until 08:00 in Tokyo");
    app.advance(10 * 3600);
    settle(&app).await;
    assert_eq!(to("bo@patients.test", &received(&smtp)), ["First news"]);

    // A business day later (Monday–Friday in Tokyo, same local time), then until 09:30 there.
    let morning = json!({
        "version": 1, "trigger": {"kind": "event", "event_type": "lab.ready"}, "entry": "every_time", "start": "bd",
        "steps": [{"id": "bd", "kind": "wait", "wait": {"kind": "business_days", "days": 1}, "next": "nine"},
                  {"id": "nine", "kind": "wait", "wait": {"kind": "time_of_day", "hour": 9, "minute": 30}, "next": "s"},
                  send("s", t2, Value::Null)]
    });
    publish(svc, &actor, "Morning", morning).await;
    let wake_of = |seq: &'static str| {
        let app = &app;
        async move {
            let w = texts(
                app,
                &format!(
                    "SELECT to_char(e.wake_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM enrolment e
                     JOIN sequence s ON s.id = e.sequence_id WHERE e.contact_id = '{bo}' AND s.name = '{seq}'"
                ),
            )
            .await;
            chrono::NaiveDateTime::parse_from_str(&w[0], "%Y-%m-%d %H:%M:%S").unwrap().and_utc()
        }
    };
    let started = tokyo(app.now());
    event(&c, &k, bo, "lab.ready", json!({})).await;
    settle(&app).await;
    let after_bd = tokyo(wake_of("Morning").await);
    use chrono::Datelike;
    assert!(after_bd.weekday().num_days_from_monday() < 5, "a business day: {after_bd}");
    assert_eq!(after_bd.time().format("%H:%M").to_string(), started.time().format("%H:%M").to_string());
    let days = (after_bd.date() - started.date()).num_days();
    assert!((1..=3).contains(&days), "{started} → {after_bd}");
    app.advance((after_bd - tokyo(app.now())).num_seconds() + 1);
    settle(&app).await;
    let nine = tokyo(wake_of("Morning").await);
    assert_eq!((nine.date(), nine.hour(), nine.minute()), (after_bd.date(), 9, 30), "09:30 the same day in Tokyo");
    assert_eq!(to("bo@patients.test", &received(&smtp)), ["First news"]);
    app.advance((nine - tokyo(app.now())).num_seconds() + 1);
    settle(&app).await;
    assert_eq!(to("bo@patients.test", &received(&smtp)), ["First news", "Second news"]);

    // A random split: every patient takes exactly one path; with 16 patients, both are taken.
    let split = json!({
        "version": 1, "trigger": {"kind": "event", "event_type": "survey.opened"}, "entry": "every_time", "start": "ab",
        "steps": [{"id": "ab", "kind": "random_split", "paths": [{"percent": 50, "next": "l"}, {"percent": 50, "next": "r"}]},
                  send("l", t2, Value::Null), send("r", t3, Value::Null)]
    });
    publish(svc, &actor, "Split", split).await;
    let mut people = Vec::new();
    for i in 0..16 {
        let who = format!("split{i}@patients.test");
        let id = contact(svc, &actor, &who, "Sam", true).await;
        event(&c, &k, id, "survey.opened", json!({})).await;
        people.push(who);
    }
    settle(&app).await;
    let got = received(&smtp);
    let (mut left, mut right) = (0, 0);
    for who in &people {
        let mine = to(who, &got);
        assert_eq!(mine.len(), 1, "{who}: {mine:?}");
        if mine[0] == "Second news" { left += 1 } else { right += 1 }
    }
    assert!(left > 0 && right > 0, "{left} / {right}");
    app.stop().await;
}

/// Publishing checks the trigger event's properties a sequence reads (`event.` fields of its
/// emails, its correlation key, its conditions) against the property names events of that type
/// have carried, which the engine catalogues (names only, never values) as it consumes events.
/// Before any such event has arrived, publishing is allowed and the builder says it is unchecked.
#[tokio::test]
async fn publishing_checks_event_fields_against_the_names_the_trigger_event_has_carried() {
    let (_smtp, app, org, actor) = clinic().await;
    let svc = &app.services;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let at_clinic = template_with(svc, &actor, "Your appointment", "<p>See you at {{event.clinic}}.</p>").await;
    let in_room = template_with(svc, &actor, "Your room", "<p>Please go to room {{event.room}}.</p>").await;
    let def = |event_type: &str, template: Uuid, extra: Value| {
        let mut d = json!({"version": 1, "trigger": {"kind": "event", "event_type": event_type}, "start": "confirm",
            "steps": [{"id": "confirm", "kind": "send_email", "template": template, "purpose": "transactional", "next": null}]});
        d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        d
    };

    // (a) No appointment.booked event yet: nothing to check against; allowed, and said so.
    let id = service::sequences::create(svc, &actor, "Booked").await.unwrap();
    save(svc, &actor, id, "Booked", def("appointment.booked", at_clinic, json!({}))).await;
    let v = service::sequences::get(svc, &actor, id).await.unwrap();
    assert_eq!(v.draft_problem, None);
    assert_eq!(v.event_fields_unchecked.as_deref(), Some("appointment.booked"));
    assert!(v.trigger_properties.is_empty());
    service::sequences::publish(svc, &actor, id, &[]).await.unwrap();

    // (b) An event arrives through the API; the engine consumes it and catalogues its names.
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let when = "2031-03-04T05:06:07Z";
    event(&c, &k, ann, "appointment.booked", json!({"appointment_at": when, "clinic": MARKER})).await;
    settle(&app).await;
    assert_eq!(
        texts(&app, "SELECT event_type || ':' || name FROM event_property_name ORDER BY name").await,
        vec!["appointment.booked:appointment_at", "appointment.booked:clinic"]
    );
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT count(*) FROM event_property_name t WHERE t::text LIKE '%{MARKER}%' OR t::text LIKE '%2031-03-04%'"
            )
        )
        .await,
        0,
        "names only, never values"
    );
    let v = service::sequences::get(svc, &actor, id).await.unwrap();
    assert_eq!(v.trigger_properties, vec!["appointment_at", "clinic"]);
    assert_eq!(v.event_fields_unchecked, None);
    assert_eq!(v.draft_problem, None);

    // (c) A template reading a property the event type has not carried is refused, by name.
    save(svc, &actor, id, "Booked", def("appointment.booked", in_room, json!({}))).await;
    let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("step confirm") && shown.contains("event.room"), "{shown}");
    assert!(shown.contains("they carried: appointment_at, clinic"), "{shown}");
    assert!(!shown.contains(MARKER) && !shown.contains("2031"), "no value in the refusal: {shown}");
    let v = service::sequences::get(svc, &actor, id).await.unwrap();
    let (field, reason) = v.draft_problem.unwrap();
    assert_eq!(field, "step confirm");
    assert!(reason.contains("event.room") && !reason.contains(MARKER), "{reason}");
    // So are a correlation key and a condition on properties it has not carried.
    let keyed = def("appointment.booked", at_clinic, json!({"correlation_key": "appointment_id"}));
    save(svc, &actor, id, "Booked", keyed).await;
    let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
    assert!(format!("{e}").contains("correlation_key") && format!("{e}").contains("appointment_id"), "{e}");
    let tested = def(
        "appointment.booked",
        at_clinic,
        json!({"trigger": {"kind": "event", "event_type": "appointment.booked",
                           "properties": [{"key": "department", "test": {"op": "text_equals", "value": "cardiology"}}]}}),
    );
    save(svc, &actor, id, "Booked", tested).await;
    let e = service::sequences::publish(svc, &actor, id, &[]).await.unwrap_err();
    assert!(format!("{e}").contains("trigger condition 1") && format!("{e}").contains("department"), "{e}");
    // Back to what the events carry: published as version 2.
    save(svc, &actor, id, "Booked", def("appointment.booked", at_clinic, json!({}))).await;
    assert_eq!(service::sequences::publish(svc, &actor, id, &[]).await.unwrap(), 2);

    // (d) Hostile names: the API refuses a property name that is not a code (without echoing
    // it), and the engine catalogues no such name from any other path.
    let hostile = "clinic'); DROP TABLE event_property_name;--";
    let body = json!({"contact": {"id": ann}, "type": "referral.sent", "properties": {hostile: "x"}});
    let r = call(&c, Method::POST, "/api/v1/events", Some(&k.secret), &body, &[]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!r.body.contains("DROP"), "{}", r.body);
    let props = std::collections::BTreeMap::from([
        (hostile.to_string(), domain::contacts::FieldValue::Text("x".into())),
        ("ward".to_string(), domain::contacts::FieldValue::Text(MARKER.into())),
    ]);
    service::events::record(svc, &actor, ann, "referral.sent", &domain::Phi::new(props), app.now()).await.unwrap();
    settle(&app).await;
    assert_eq!(
        texts(&app, "SELECT event_type || ':' || name FROM event_property_name ORDER BY event_type, name").await,
        vec!["appointment.booked:appointment_at", "appointment.booked:clinic", "referral.sent:ward"]
    );
    // A type never seen has nothing to check against: allowed, and said so.
    let other = service::sequences::create(svc, &actor, "Lab").await.unwrap();
    save(svc, &actor, other, "Lab", def("lab.ready", in_room, json!({}))).await;
    let v = service::sequences::get(svc, &actor, other).await.unwrap();
    assert_eq!((v.draft_problem, v.event_fields_unchecked.as_deref()), (None, Some("lab.ready")));
    service::sequences::publish(svc, &actor, other, &[]).await.unwrap();
    app.stop().await;
}

/// Withdrawing consent, or a suppression of the address, ends the contact's enrolments in
/// sequences that send for that purpose at once, wherever they wait (not at their next email); a
/// transactional sequence goes on after a marketing withdrawal.
#[tokio::test]
async fn withdrawing_consent_or_a_suppression_ends_enrolments_at_once() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    let k = key(&app, org, &[Scope::EventsWrite], false).await;
    let c = app.client();
    let tips = template(svc, &actor, "Monthly tips").await;
    let booked = template(svc, &actor, "Your booking").await;
    let weekly = |t: Uuid, purpose: &str| {
        json!({
            "version": 1, "trigger": {"kind": "event", "event_type": "visit.completed"}, "entry": "every_time", "start": "w",
            "steps": [{"id": "w", "kind": "wait", "wait": {"kind": "duration", "minutes": 10080}, "next": "s"},
                      {"id": "s", "kind": "send_email", "template": t, "purpose": purpose, "next": null}]
        })
    };
    publish(svc, &actor, "Tips", weekly(tips, "marketing")).await;
    publish(svc, &actor, "Bookings", weekly(booked, "transactional")).await;
    let ann = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let bob = contact(svc, &actor, "bob@patients.test", "Bob", true).await;
    let cat = contact(svc, &actor, "cat@patients.test", "Cat", true).await;
    // Dee never gave marketing consent: nothing to withdraw, so the send step itself stops her.
    let dee = contact(svc, &actor, "dee@patients.test", "Dee", false).await;
    for who in [ann, bob, cat, dee] {
        event(&c, &k, who, "visit.completed", json!({})).await;
    }
    settle(&app).await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(state_of(&app, ann).await), ["active::w", "active::w"]);

    // Ann withdraws marketing consent; Bob's address is suppressed. Nobody's clock moved.
    service::contacts::consent::record(svc, &actor, ann, domain::contacts::ConsentPurpose::Marketing, false, None)
        .await
        .unwrap();
    service::contacts::suppression::add(svc, &actor, "bob@patients.test", SuppressionReason::Manual).await.unwrap();
    settle(&app).await;
    assert_eq!(sorted(state_of(&app, ann).await), ["active::w", "exited:unsubscribed:w"]);
    assert_eq!(sorted(state_of(&app, bob).await), ["active::w", "exited:suppressed:w"]);
    assert_eq!(sorted(state_of(&app, cat).await), ["active::w", "active::w"]);
    assert!(trail_of(&app, ann).await.contains(&"w:unsubscribed".to_string()));
    assert_eq!(scalar(&app, "SELECT count(*) FROM sequence_signal").await, 0, "each signal consumed once");

    // A week on: Cat gets both emails, Ann only the transactional one, Bob nothing.
    app.advance(7 * 86_400 + 60);
    settle(&app).await;
    let got = received(&smtp);
    assert_eq!(sorted(to("cat@patients.test", &got)), ["Monthly tips", "Your booking"]);
    assert_eq!(to("ann@patients.test", &got), ["Your booking"]);
    assert!(to("bob@patients.test", &got).is_empty());
    assert_eq!(to("dee@patients.test", &got), ["Your booking"]);
    assert_eq!(sorted(state_of(&app, dee).await), ["completed:completed:", "exited:unsubscribed:s"]);
    assert!(trail_of(&app, dee).await.contains(&"s:skipped_no_consent".to_string()));
    app.stop().await;
}
