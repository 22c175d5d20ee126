//! Campaigns end to end against real PostgreSQL and a real SMTP server process: one message per
//! eligible recipient over verified STARTTLS, DKIM that an independent verifier accepts, MIME with
//! text and HTML, RFC 8058 unsubscribe headers that work, opaque tracking tokens that refuse
//! forgeries, 4xx retried and 5xx bounced (and suppressed), pause / resume / cancel, suppressed
//! and non-consenting contacts never mailed, roles and tenant isolation.

use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, dkim_verify, dkim_verify_dns, mime, tools};
use domain::campaigns::*;
use domain::contacts::{ConsentPurpose, ContactInput, SuppressionReason};
use domain::disclosure::Figure;
use domain::ids::OrganisationId;
use domain::{Phi, Role};
use serde_json::json;
use service::{Actor, Services};
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

const LINK: &str = "https://clinic.example/visit?utm=spring&amp;x=1";

pub(crate) async fn start(smtp: &SmtpServer, extra: &[(&'static str, String)]) -> TestApp {
    let mut env = smtp.env();
    env.push(("HERMETIC_MAIL__DKIM_SELECTOR", "test".into()));
    env.push(("HERMETIC_MAIL__DKIM_DOMAIN", "clinic.test".into()));
    env.push(("HERMETIC_MAIL__DKIM_KEY_FILE", tools().dkim.join("dkim.pem").display().to_string()));
    env.push(("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into()));
    // Workers, dispatch jobs and the test's own queries share the pool.
    env.push(("HERMETIC_DB_MAX_CONNECTIONS", "20".into()));
    env.extend(extra.iter().cloned());
    TestApp::start_with(Options { env, workers: true, dns: true }).await
}

/// The sending organisation: its administrator, and clinic.test verified as its sending domain
/// through the real path (records published in the test's DNS server, checked through DNS).
async fn lakeside(app: &TestApp) -> OrganisationId {
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    org
}

pub(crate) async fn contact(svc: &Services, actor: &Actor, email: &str, name: &str, consent: bool) -> Uuid {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), Phi::new(email.to_string()));
    fields.insert("first_name".to_string(), Phi::new(name.to_string()));
    let id = service::contacts::create(svc, actor, ContactInput { fields }).await.unwrap();
    if consent {
        service::contacts::consent::record(svc, actor, id, ConsentPurpose::Marketing, true, Some("Yes, email me"))
            .await
            .unwrap();
    }
    id
}

/// A template with a tracked link, a personalised greeting and the unsubscribe link.
pub(crate) async fn template(svc: &Services, actor: &Actor) -> Uuid {
    let id =
        service::templates::store::create(svc, actor, &format!("T {}", Uuid::new_v4().simple()), None).await.unwrap();
    let content: domain::template_views::TemplateContent = serde_json::from_value(json!({
        "mode": "html", "subject": "Spring check-ups", "preheader": "Book now", "design": {"blocks": []},
        "html": format!("<html><body><p>Hello {{{{contact.first_name}}}},</p><p><a href=\"{LINK}\">Book a visit</a> or <a href=\"https://clinic.example/faq\">read the FAQ</a>.</p><p><a href=\"{{{{links.unsubscribe}}}}\">Unsubscribe</a></p></body></html>"),
        "text": "", "text_edited": false
    }))
    .unwrap();
    let latest = service::templates::store::editor(svc, actor, id, None).await.unwrap().version;
    let out = service::templates::store::save(svc, actor, id, latest, content).await.unwrap();
    assert!(matches!(out, domain::template_views::SaveOutcome::Saved { .. }), "{out:?}");
    id
}

pub(crate) fn settings(name: &str, list: Uuid, template: Uuid) -> CampaignSettings {
    CampaignSettings {
        name: name.into(),
        purpose: ConsentPurpose::Marketing,
        audience: Audience { segments: vec![], lists: vec![list] },
        template_id: Some(template),
        from_name: "Lakeside Clinic".into(),
        from_email: "news@clinic.test".into(),
        reply_to: Some("front-desk@clinic.test".into()),
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle { per_second: 200, per_domain_per_minute: None },
        auto_pause: AutoPause { after_consecutive_errors: 10 },
    }
}

pub(crate) async fn list_with(svc: &Services, actor: &Actor, members: &[Uuid]) -> Uuid {
    let list = service::contacts::lists::create(
        svc,
        actor,
        &format!("L {}", Uuid::new_v4().simple()),
        "",
        false,
        ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    service::contacts::lists::add(svc, actor, list, members).await.unwrap();
    list
}

async fn status(svc: &Services, actor: &Actor, id: Uuid) -> domain::campaign_views::CampaignProgress {
    service::campaigns::progress(svc, actor, id).await.unwrap()
}

pub(crate) async fn wait_status(app: &TestApp, actor: &Actor, id: Uuid, want: CampaignStatus, secs: u64) {
    for _ in 0..secs * 10 {
        if status(&app.services, actor, id).await.status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("campaign never reached {want:?}: {:?}", status(&app.services, actor, id).await);
}

pub(crate) fn header<'a>(m: &'a serde_json::Value, name: &str) -> &'a str {
    m["headers"][name].as_str().unwrap_or_else(|| panic!("no {name} header in {m}"))
}

pub(crate) fn find_url(html: &str, path: &str) -> String {
    let i = html.find(path).unwrap_or_else(|| panic!("no {path} in message"));
    let start = html[..i].rfind("http").unwrap();
    let end = i + html[i..].find(['"', '\'', ' ', '<']).unwrap();
    html[start..end].to_string()
}

pub(crate) fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

#[tokio::test]
async fn a_campaign_reaches_each_eligible_patient_once_signed_tracked_and_unsubscribable() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let a = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let b = contact(svc, &actor, "bob@patients.test", "Bob", true).await;
    let c = contact(svc, &actor, "cy@patients.test", "Cy", true).await;
    let suppressed = contact(svc, &actor, "blocked@patients.test", "Blocked", true).await;
    let no_consent = contact(svc, &actor, "quiet@patients.test", "Quiet", false).await;
    service::contacts::suppression::add(svc, &actor, "blocked@patients.test", SuppressionReason::Manual).await.unwrap();
    let list = list_with(svc, &actor, &[a, b, c, suppressed, no_consent]).await;
    let t = template(svc, &actor).await;
    let id = service::campaigns::create(svc, &actor, &settings("Spring", list, t)).await.unwrap();
    let count = service::campaigns::audience::count(
        svc,
        &actor,
        &Audience { segments: vec![], lists: vec![list] },
        ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    assert_eq!((count.matched, count.suppressed, count.without_consent, count.eligible), (5, 1, 1, 3));
    assert_eq!(service::campaigns::launch(svc, &actor, id).await.unwrap(), CampaignStatus::Sending);
    wait_status(&app, &actor, id, CampaignStatus::Completed, 60).await;
    let msgs = smtp.wait_for(3, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 3, "exactly one message per eligible recipient");

    let mut recipients = BTreeSet::new();
    let mut deliveries = BTreeSet::new();
    for (path, _) in &msgs {
        let m = mime(path);
        assert_eq!(m["has_text"], true);
        assert_eq!(m["has_html"], true);
        recipients.insert(header(&m, "to").to_string());
        deliveries.insert(header(&m, "x-hermetic-delivery").to_string());
        assert!(header(&m, "list-unsubscribe").starts_with(&format!("<{}/l/unsubscribe/", app.base)));
        assert_eq!(header(&m, "list-unsubscribe-post"), "List-Unsubscribe=One-Click");
        assert_eq!(header(&m, "reply-to"), "front-desk@clinic.test");
        assert!(header(&m, "from").contains("news@clinic.test"));
        let html = m["html"].as_str().unwrap();
        assert!(!html.contains("clinic.example/visit"), "tracked links are rewritten");
        assert!(html.contains("/t/o/") && html.contains("/t/c/"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(json["tls"], true, "every message travelled over TLS");
    }
    assert_eq!(
        recipients,
        ["ann@patients.test", "bob@patients.test", "cy@patients.test"].into_iter().map(String::from).collect()
    );
    assert_eq!(deliveries.len(), 3);
    let paths: Vec<_> = msgs.iter().map(|(p, _)| p.clone()).collect();
    // Signed with the sending domain's own key (d= the From domain, so DMARC aligns), which dkimpy
    // takes from the published zone — not with the platform key configured for system mail.
    let selector = service::sending_domains::list(svc, &actor).await.unwrap()[0].selector.clone();
    let (ok, out) = dkim_verify_dns(
        app.dns.as_ref().unwrap(),
        &selector,
        "clinic.test",
        &["From", "To", "Subject", "Message-ID", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"],
        &paths,
    );
    assert!(ok, "DKIM must verify with dkimpy: {out}");
    let (platform, _) = dkim_verify("test", "clinic.test", &["From"], &paths);
    assert!(!platform, "campaign mail is not signed with the platform's key");

    let p = status(svc, &actor, id).await;
    assert_eq!((p.counts.unwrap().sent, p.counts.unwrap().total()), (3, 3));

    // Tracking: the first message of Ann.
    let ann = msgs.iter().map(|(p, _)| mime(p)).find(|m| header(m, "to") == "ann@patients.test").unwrap();
    let html = ann["html"].as_str().unwrap().to_string();
    let pixel = path_of(&find_url(&html, "/t/o/"));
    let click = path_of(&find_url(&html, "/t/c/"));
    let web = app.client();
    // An open right after delivery is a machine's (prefetch); later with a mail client's agent, a person's.
    const IPHONE_MAIL: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    let person = [("user-agent", IPHONE_MAIL)];
    let r = web.get_with(&pixel, &person).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-type").unwrap(), "image/gif");
    app.advance(120);
    let r = web.get_with(&pixel, &person).await;
    assert_eq!(r.status, 200);
    // A link scanner's fetch counts apart.
    let r = web.get_with(&click, &[("user-agent", "Mozilla/5.0 (compatible; Barracuda Sentinel)")]).await;
    assert_eq!(r.status, 302);
    let r = web.get_with(&click, &person).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers.get("location").unwrap(), "https://clinic.example/visit?utm=spring&x=1");
    // Forged, bit-flipped, wrong-kind and expired tokens: no redirect at all.
    let token = click.rsplit('/').next().unwrap().to_string();
    let mut flipped = token.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let pixel_token = pixel.rsplit('/').next().unwrap().to_string();
    for bad in [
        format!("/t/c/{}", String::from_utf8(flipped).unwrap()),
        "/t/c/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .to_string(),
        format!("/t/c/{pixel_token}"),
        "/t/c/https%3A%2F%2Fevil.example".to_string(),
        format!("/t/c/{}", "A".repeat(5000)),
    ] {
        let r = web.get(&bad).await;
        assert_eq!(r.status, 404, "{bad}");
        assert!(r.headers.get("location").is_none(), "no redirect for {bad}");
    }

    // RFC 8058 one-click unsubscribe from Bob's headers.
    let bob = msgs.iter().map(|(p, _)| mime(p)).find(|m| header(m, "to") == "bob@patients.test").unwrap();
    let unsub = header(&bob, "list-unsubscribe").trim_matches(['<', '>']).to_string();
    let r = web
        .post_raw(&path_of(&unsub), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click".into(), None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut report = service::campaigns::report(svc, &actor, id).await.unwrap();
    for _ in 0..50 {
        if report.email.human_clicks.exact() >= Some(1) && report.email.unique_human_opens.exact() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = service::campaigns::report(svc, &actor, id).await.unwrap();
    }
    assert_eq!(report.email.delivered, Figure::Exact(3));
    assert_eq!(report.email.unique_human_opens, Figure::Exact(1), "{report:?}");
    assert_eq!(report.email.machine_opens, Figure::Exact(1), "{report:?}");
    assert_eq!(report.email.human_clicks, Figure::Exact(1), "{report:?}");
    assert_eq!(report.email.machine_clicks, Figure::Exact(1), "{report:?}");
    assert_eq!(report.email.unsubscribes, Figure::Exact(1), "{report:?}");
    assert_eq!(report.email.links.len(), 2);
    assert_eq!(report.email.links[0].url, "https://clinic.example/visit?utm=spring&x=1");
    assert_eq!(report.email.links[0].clicks, Figure::Exact(1));

    // A year on, tracking links have expired: still no redirect.
    app.advance(366 * 86_400);
    let r = web.get(&click).await;
    assert_eq!(r.status, 404, "expired");
    assert!(r.headers.get("location").is_none());

    // Nothing rendered is stored, and no patient address sits in a delivery row.
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT row_to_json(d)::text AS j FROM delivery d",
        ))
        .await
        .unwrap();
    for r in rows {
        let j: String = r.try_get("", "j").unwrap();
        assert!(!j.contains("patients.test") && !j.contains("Ann"), "{j}");
    }
    app.stop().await;
}

#[tokio::test]
async fn tls_is_required_and_certificates_must_verify() {
    for tls in [Tls::None, Tls::Rogue] {
        let smtp = SmtpServer::start(tls, &[]);
        let app = start(&smtp, &[]).await;
        let org = lakeside(&app).await;
        let (client, _) = app.sign_in("admin@lakeside.test", None).await;
        let actor = Actor::system(org, "test");
        let t = template(&app.services, &actor).await;
        let a = contact(&app.services, &actor, "ann@patients.test", "Ann", true).await;
        let list = list_with(&app.services, &actor, &[a]).await;
        let id = service::campaigns::create(&app.services, &actor, &settings("Spring", list, t)).await.unwrap();
        let (code, body) = client.call("test_send_campaign", &[("id", &id.to_string())]).await;
        assert_eq!(code, 409, "{body}");
        assert!(body.to_string().contains("try later"), "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(smtp.messages().is_empty(), "nothing may be sent without verified TLS");
        app.stop().await;
    }
}

#[tokio::test]
async fn temporary_failures_are_retried_and_hard_bounces_suppressed() {
    // With PIPELINING refusals arrive for commands already written (and the next message's
    // commands ride with the previous content); without it, one command at a time.
    retries_and_bounces(&["--tempfail-times", "2"]).await;
    retries_and_bounces(&["--tempfail-times", "2", "--no-pipelining"]).await;
}

async fn retries_and_bounces(server_args: &[&str]) {
    let smtp = SmtpServer::start(Tls::Required, server_args);
    let app = start(&smtp, &[("HERMETIC_SENDING__RETRY_BASE_SECS", "1".into())]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let later = contact(svc, &actor, "tempfail+ann@patients.test", "Ann", true).await;
    let gone = contact(svc, &actor, "reject+bob@patients.test", "Bob", true).await;
    let fine = contact(svc, &actor, "cy@patients.test", "Cy", true).await;
    let list = list_with(svc, &actor, &[later, gone, fine]).await;
    let t = template(svc, &actor).await;
    let id = service::campaigns::create(svc, &actor, &settings("Retry", list, t)).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    // Deferred rows wait for their back-off on the app's clock: move it along.
    for _ in 0..300 {
        if status(svc, &actor, id).await.status == CampaignStatus::Completed {
            break;
        }
        app.advance(30);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_status(&app, &actor, id, CampaignStatus::Completed, 5).await;
    let p = status(svc, &actor, id).await;
    assert_eq!((p.counts.unwrap().sent, p.counts.unwrap().bounced), (2, 1), "{p:?}");
    let to: Vec<String> = smtp.messages().iter().map(|(path, _)| header(&mime(path), "to").to_string()).collect();
    assert_eq!(to.iter().filter(|t| t.starts_with("tempfail+")).count(), 1, "retried until accepted, once: {to:?}");
    assert!(!to.iter().any(|t| t.starts_with("reject+")));
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait;
    let r = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT attempts, smtp_status FROM delivery WHERE contact_id = '{later}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.try_get::<i32>("", "attempts").unwrap(), 3);
    let r = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT state, smtp_status FROM delivery WHERE contact_id = '{gone}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.try_get::<String>("", "state").unwrap(), "bounced");
    assert!(r.try_get::<String>("", "smtp_status").unwrap().starts_with("550"));
    let sup = service::contacts::suppression::list(svc, &actor, 100).await.unwrap();
    assert!(sup.iter().any(|s| s.reason == SuppressionReason::HardBounce), "the bounced address is suppressed");
    // The suppression made by the send path is audited like one made by staff (same transaction).
    let audited = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM audit_event WHERE action = 'suppression.added' AND actor_kind = 'system'
                   AND target_kind = 'contact' AND target_id = '{gone}' AND details::text LIKE '%hard_bounce%'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audited.try_get::<i64>("", "n").unwrap(), 1, "one audit row for the hard-bounce suppression");
    // Segments see who received the campaign (its accepted deliveries: not the hard bounce).
    use domain::segments::{Activity, Condition, FORMAT_VERSION, Node, SegmentDefinition};
    let received = |campaign, within_days| SegmentDefinition {
        version: FORMAT_VERSION,
        root: Node::Condition {
            condition: Condition::Engagement { activity: Activity::Received, campaign, within_days },
        },
    };
    for (def, want) in
        [(received(Some(id), Some(1)), 2), (received(None, None), 2), (received(Some(Uuid::now_v7()), None), 0)]
    {
        assert_eq!(service::segments::count(svc, &actor, &def).await.unwrap().matching, Figure::Exact(want), "{def:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn pause_resume_and_cancel_take_effect_within_seconds() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for i in 0..12 {
        ids.push(contact(svc, &actor, &format!("p{i}@patients.test"), "P", true).await);
    }
    let list = list_with(svc, &actor, &ids).await;
    let t = template(svc, &actor).await;
    let mut s = settings("Slow", list, t);
    s.throttle.per_second = 2;
    let id = service::campaigns::create(svc, &actor, &s).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    smtp.wait_for(2, 20).await;
    service::campaigns::pause(svc, &actor, id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_pause = smtp.messages().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), at_pause, "nothing is sent while paused");
    assert!(at_pause < 12);
    assert_eq!(status(svc, &actor, id).await.status, CampaignStatus::Paused);
    service::campaigns::resume(svc, &actor, id).await.unwrap();
    wait_status(&app, &actor, id, CampaignStatus::Completed, 60).await;
    assert_eq!(smtp.messages().len(), 12, "resumed where it stopped, nothing twice");

    let mut s2 = settings("Cancelled", list, t);
    s2.throttle.per_second = 1;
    let id2 = service::campaigns::create(svc, &actor, &s2).await.unwrap();
    service::campaigns::launch(svc, &actor, id2).await.unwrap();
    smtp.wait_for(13, 20).await;
    service::campaigns::cancel(svc, &actor, id2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = smtp.messages().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), after);
    let p = status(svc, &actor, id2).await;
    assert_eq!(p.status, CampaignStatus::Cancelled);
    assert!(p.counts.unwrap().cancelled >= 8, "{p:?}");
    app.stop().await;
}

#[tokio::test]
async fn hostile_settings_roles_and_other_organisations() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    app.add_user(org, "analyst@lakeside.test", Role::Analyst).await;
    let other: OrganisationId = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let a = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let list = list_with(svc, &actor, &[a]).await;
    let t = template(svc, &actor).await;
    let (admin, _) = app.sign_in("admin@lakeside.test", None).await;
    for (field, value) in [
        ("from_name", json!("Clinic\r\nBcc: everyone@evil.test")),
        ("from_email", json!("news@clinic.test\r\nBcc: x@evil.test")),
        ("name", json!("x".repeat(10_000))),
        ("name", json!("")),
        ("reply_to", json!("not an address")),
    ] {
        let mut s = serde_json::to_value(settings("Hostile", list, t)).unwrap();
        s[field] = value;
        let (code, body) = admin.call_json("create_campaign", json!({ "settings": s })).await;
        assert_eq!(code, 422, "{field}: {body}");
    }
    // A schedule in the past is refused when the draft is saved, not only after the launch
    // confirmation (issue 19 item 9): both kinds, on create and on update, in the field's words.
    let yesterday = svc.clock().now() - chrono::Duration::days(1);
    for schedule in [
        json!({ "kind": "at", "at": yesterday }),
        json!({ "kind": "local_time", "date": (yesterday - chrono::Duration::days(2)).date_naive(), "time": "09:00:00" }),
    ] {
        let mut s = serde_json::to_value(settings("Past", list, t)).unwrap();
        s["schedule"] = schedule.clone();
        let (code, body) = admin.call_json("create_campaign", json!({ "settings": s })).await;
        assert_eq!(code, 422, "{schedule}: {body}");
        assert!(body.to_string().contains("past") || body.to_string().contains("from now"), "{body}");
        let draft =
            service::campaigns::create(svc, &actor, &settings(&format!("Later {schedule}"), list, t)).await.unwrap();
        let (code, body) = admin.call_json("update_campaign", json!({ "id": draft, "settings": s })).await;
        assert_eq!(code, 422, "{schedule}: {body}");
    }
    let mut s = serde_json::to_value(settings("Bad throttle", list, t)).unwrap();
    s["throttle"]["per_second"] = json!(0);
    assert_eq!(admin.call_json("create_campaign", json!({ "settings": s })).await.0, 422);
    let code = admin
        .post_raw("/api/create_campaign", "application/json", "{\"settings\":".into(), admin.csrf(), &[])
        .await
        .status;
    assert!(code == 400 || code == 422, "malformed JSON is refused: {code}");

    // A PHI template may only go out with TLS required.
    service::contacts::fields::create(
        svc,
        &actor,
        "diagnosis",
        "Diagnosis",
        domain::contacts::FieldType::Text,
        vec![],
        true,
    )
    .await
    .unwrap();
    let pt = service::templates::store::create(svc, &actor, "PHI", None).await.unwrap();
    let content: domain::template_views::TemplateContent = serde_json::from_value(json!({
        "mode": "html", "subject": "Your care", "preheader": "", "design": {"blocks": []},
        "html": "<p>About {{contact.diagnosis}}</p><p><a href=\"{{links.unsubscribe}}\">Unsubscribe</a></p>",
        "text": "", "text_edited": false
    }))
    .unwrap();
    let v = service::templates::store::editor(svc, &actor, pt, None).await.unwrap().version;
    service::templates::store::save(svc, &actor, pt, v, content).await.unwrap();
    let mut s = settings("PHI preferred", list, pt);
    s.policy = DeliveryPolicy::TlsPreferred;
    let id = service::campaigns::create(svc, &actor, &s).await.unwrap();
    let (code, body) = admin.call("launch_campaign", &[("id", &id.to_string())]).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("TLS required"), "{body}");

    // Analysts read reports but never create, launch or see the editor's options.
    let id = service::campaigns::create(svc, &actor, &settings("Report me", list, t)).await.unwrap();
    let (analyst, _) = app.sign_in("analyst@lakeside.test", None).await;
    assert_eq!(analyst.call("campaign_report", &[("id", &id.to_string())]).await.0, 200);
    assert_eq!(analyst.call("list_campaigns", &[]).await.0, 200);
    assert_eq!(analyst.call("launch_campaign", &[("id", &id.to_string())]).await.0, 403);
    assert_eq!(analyst.call("campaign_options", &[]).await.0, 403);
    assert_eq!(analyst.call_json("create_campaign", json!({ "settings": settings("No", list, t) })).await.0, 403);

    // Another organisation's campaign is simply not found.
    let (outsider, _) = app.sign_in("admin@other.test", None).await;
    for ep in [
        "open_campaign",
        "campaign_report",
        "launch_campaign",
        "pause_campaign",
        "delete_campaign",
        "test_send_campaign",
    ] {
        assert_eq!(outsider.call(ep, &[("id", &id.to_string())]).await.0, 404, "{ep}");
    }
    let _ = other;
    app.stop().await;
}

#[tokio::test]
async fn local_time_schedules_follow_each_recipients_zone() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for (email, zone) in [("east@patients.test", "Pacific/Kiritimati"), ("west@patients.test", "America/Los_Angeles")] {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("email".to_string(), Phi::new(email.to_string()));
        fields.insert("time_zone".to_string(), Phi::new(zone.to_string()));
        let id = service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
        service::contacts::consent::record(svc, &actor, id, ConsentPurpose::Marketing, true, None).await.unwrap();
        ids.push(id);
    }
    let list = list_with(svc, &actor, &ids).await;
    let t = template(svc, &actor).await;
    // 09:00 the day after tomorrow (UTC date), in each recipient's zone.
    let date = (app.now() + chrono::Duration::days(2)).date_naive();
    let nine = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap();
    let mut s = settings("Morning", list, t);
    s.schedule = Schedule::LocalTime { date, time: nine };
    let id = service::campaigns::create(svc, &actor, &s).await.unwrap();
    assert_eq!(service::campaigns::launch(svc, &actor, id).await.unwrap(), CampaignStatus::Scheduled);
    let east = date.and_time(nine).and_utc() - chrono::Duration::hours(14);
    let west = date.and_time(nine).and_utc() + chrono::Duration::hours(8);
    // Nothing before Kiritimati's 09:00.
    app.clock.set(east - chrono::Duration::minutes(5));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(smtp.messages().is_empty());
    assert_eq!(status(svc, &actor, id).await.status, CampaignStatus::Scheduled);
    app.clock.set(east + chrono::Duration::minutes(1));
    let first = smtp.wait_for(1, 30).await;
    assert_eq!(header(&mime(&first[0].0), "to"), "east@patients.test");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "Los Angeles is still asleep");
    app.clock.set(west + chrono::Duration::minutes(1));
    let both = smtp.wait_for(2, 30).await;
    assert_eq!(header(&mime(&both[1].0), "to"), "west@patients.test");
    wait_status(&app, &actor, id, CampaignStatus::Completed, 30).await;
    app.stop().await;
}

/// Daylight-saving transitions on controlled dates (America/New_York, 2027): a local time that
/// does not exist (02:30 on 14 March, clocks jump from 02:00 to 03:00) is sent once, at 03:30 EDT
/// (PostgreSQL reads the gap as standard time: 07:30 UTC); a local time that happens twice (01:30
/// on 7 November) is sent once, at the second one (01:30 EST, 06:30 UTC). Never skipped, never twice.
#[tokio::test]
async fn local_time_schedules_in_daylight_saving_gaps_and_overlaps_send_once() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), Phi::new("ny@patients.test".to_string()));
    fields.insert("time_zone".to_string(), Phi::new("America/New_York".to_string()));
    let id = service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
    service::contacts::consent::record(svc, &actor, id, ConsentPurpose::Marketing, true, None).await.unwrap();
    let list = list_with(svc, &actor, &[id]).await;
    let t = template(svc, &actor).await;
    let at =
        |y, m, d, h, min| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap().and_utc();
    let cases = [
        // (local date, local time, the one UTC instant it goes out)
        ((2027, 3, 14), (2, 30), at(2027, 3, 14, 7, 30)),
        ((2027, 11, 7), (1, 30), at(2027, 11, 7, 6, 30)),
    ];
    for (n, ((y, m, d), (h, min), due)) in cases.into_iter().enumerate() {
        app.clock.set(due - chrono::Duration::days(3));
        let mut s = settings(&format!("Transition {n}"), list, t);
        s.schedule = Schedule::LocalTime {
            date: chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap(),
            time: chrono::NaiveTime::from_hms_opt(h, min, 0).unwrap(),
        };
        let cid = service::campaigns::create(svc, &actor, &s).await.unwrap();
        assert_eq!(service::campaigns::launch(svc, &actor, cid).await.unwrap(), CampaignStatus::Scheduled);
        // An hour before (the first 01:30 of the overlap, for the second case): nothing.
        app.clock.set(due - chrono::Duration::minutes(61));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(smtp.messages().len(), n, "case {n}: nothing before {due}");
        app.clock.set(due - chrono::Duration::minutes(2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(smtp.messages().len(), n, "case {n}: still nothing just before {due}");
        app.clock.set(due + chrono::Duration::minutes(1));
        smtp.wait_for(n + 1, 30).await;
        wait_status(&app, &actor, cid, CampaignStatus::Completed, 30).await;
        app.clock.set(due + chrono::Duration::hours(3));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(smtp.messages().len(), n + 1, "case {n}: sent exactly once");
    }
    app.stop().await;
}

#[tokio::test]
async fn repeated_errors_pause_the_campaign_and_domain_caps_hold_messages_back() {
    // A relay without STARTTLS: every send is a temporary failure, so the campaign pauses itself.
    let plain = SmtpServer::start(Tls::None, &[]);
    let app = start(&plain, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(contact(svc, &actor, &format!("p{i}@patients.test"), "P", true).await);
    }
    let list = list_with(svc, &actor, &ids).await;
    let t = template(svc, &actor).await;
    let mut s = settings("Broken relay", list, t);
    s.auto_pause.after_consecutive_errors = 3;
    let id = service::campaigns::create(svc, &actor, &s).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    wait_status(&app, &actor, id, CampaignStatus::Paused, 60).await;
    let p = status(svc, &actor, id).await;
    assert_eq!(p.pause_reason, Some(PauseReason::ErrorStreak));
    assert!(plain.messages().is_empty());
    app.stop().await;

    // A per-domain cap of 2 a minute: two go now, the rest wait their turn.
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(contact(svc, &actor, &format!("p{i}@patients.test"), "P", true).await);
    }
    let list = list_with(svc, &actor, &ids).await;
    let t = template(svc, &actor).await;
    let mut s = settings("Capped", list, t);
    s.throttle.per_domain_per_minute = Some(2);
    let id = service::campaigns::create(svc, &actor, &s).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    smtp.wait_for(1, 30).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = smtp.messages().len();
    assert!((1..=2).contains(&sent), "{sent} messages to one domain in the first seconds");
    let p = status(svc, &actor, id).await;
    assert_eq!(p.status, CampaignStatus::Sending);
    assert_eq!(p.counts.unwrap().queued as usize, 5 - sent, "{p:?}");
    app.stop().await;
}

/// Sending starts while the audience is still being inserted (the prepare job inserts rows in
/// batches; dispatch jobs send each batch as it lands) and the campaign completes only once the
/// audience is whole: a job that has sent every row so far waits for more instead of finishing.
#[tokio::test]
async fn sending_starts_before_the_audience_is_complete_and_finishes_after() {
    use sea_orm::ConnectionTrait;
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let org = lakeside(&app).await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(contact(svc, &actor, &format!("early{i}@patients.test"), "E", true).await);
    }
    let list = list_with(svc, &actor, &ids).await;
    let t = template(svc, &actor).await;
    let id = service::campaigns::create(svc, &actor, &settings("Arriving", list, t)).await.unwrap();
    // What launch and the first batches of the prepare job leave behind, without the prepare job:
    // the campaign sending, its version pinned, two of three rows inserted, the audience not ready.
    let db = app.db.connect().await;
    let sql = |s: String| {
        let db = &db;
        async move { db.execute_unprepared(&s).await.unwrap() }
    };
    sql(format!(
        "UPDATE campaign SET status = 'sending', started_at = now(), audience_ready = false,
             template_version_id = (SELECT id FROM template_version WHERE template_id = '{t}' ORDER BY version DESC LIMIT 1)
         WHERE id = '{id}'"
    ))
    .await;
    // Due at the app's (manual) clock, as the prepare job would write them.
    let now = app.now().to_rfc3339();
    let insert = |contact: Uuid| {
        format!(
            "WITH d AS (INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at)
             VALUES (gen_random_uuid(), '{}', '{id}', '{contact}', 'queued', '{now}', '{now}') RETURNING id)
             INSERT INTO delivery_queue (delivery_id, campaign_id, not_before) SELECT id, '{id}', '{now}' FROM d",
            org.0
        )
    };
    sql(insert(ids[0])).await;
    sql(insert(ids[1])).await;
    let job = service::campaigns::DispatchJob { campaign_id: id, generation: 0, chain: "t".into(), seq: 0 };
    let dispatcher = {
        let svc = svc.clone();
        let worker = service::campaigns::send::SendWorker::default();
        tokio::spawn(async move { service::campaigns::send::dispatch(&svc, &worker, &job).await })
    };
    for _ in 0..200 {
        if smtp.messages().len() >= 2 || dispatcher.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!dispatcher.is_finished(), "the job stopped early: {:?}", dispatcher.await);
    smtp.wait_for(2, 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = status(svc, &actor, id).await;
    assert_eq!((p.status, p.counts.unwrap().sent, p.audience_ready), (CampaignStatus::Sending, 2, false), "{p:?}");
    assert!(!dispatcher.is_finished(), "the job waits for the rest of the audience");
    // The last batch lands and the audience is marked complete.
    sql(insert(ids[2])).await;
    sql(format!("UPDATE campaign SET audience_ready = true, audience_size = 3 WHERE id = '{id}'")).await;
    wait_status(&app, &actor, id, CampaignStatus::Completed, 20).await;
    tokio::time::timeout(Duration::from_secs(20), dispatcher).await.unwrap().unwrap().unwrap();
    assert_eq!(smtp.messages().len(), 3, "each recipient once");
    app.stop().await;
}

#[tokio::test]
async fn a_from_address_must_be_on_a_verified_domain_of_the_organisation_at_save_launch_and_send() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let dns = app.dns.as_ref().unwrap();
    let org = lakeside(&app).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    app.verified_domain(other, "other.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let a = contact(svc, &actor, "ann@patients.test", "Ann", true).await;
    let list = list_with(svc, &actor, &[a]).await;
    let t = template(svc, &actor).await;
    let (admin, secret) = app.sign_in("admin@lakeside.test", None).await;

    // Save: an unknown domain, another organisation's verified domain and a look-alike are refused
    // with the same plain answer; the organisation's own domain (any case) is accepted.
    let mut answers = BTreeSet::new();
    for from in ["news@unverified.test", "news@other.test", "news@clinic.test.evil.test", "news@sub.clinic.test"] {
        let mut s = settings("Elsewhere", list, t);
        s.from_email = from.into();
        let (code, body) = admin.call_json("create_campaign", json!({ "settings": s })).await;
        assert_eq!(code, 422, "{from}: {body}");
        answers.insert(body["message"].as_str().unwrap().to_string());
    }
    assert_eq!(answers.len(), 1, "one answer for every refused domain: {answers:?}");
    assert!(answers.first().unwrap().contains("Sending domains"), "{answers:?}");
    let mut s = settings("Ours", list, t);
    s.from_email = "News@CLINIC.test".into();
    let (code, body) = admin.call_json("create_campaign", json!({ "settings": s })).await;
    assert_eq!(code, 200, "{body}");
    let id: Uuid = body.as_str().unwrap().parse().unwrap();
    // The editor offers the verified domain, never another organisation's.
    let (_, options) = admin.call("campaign_options", &[]).await;
    assert_eq!(options["sending_domains"], json!(["clinic.test"]));
    assert!(options["default_from_email"].as_str().unwrap().ends_with("@clinic.test"), "{options}");

    // Launch: the domain's records disappear and a check notices; launch and test sends are refused.
    let published = dns.zone_text();
    dns.set("");
    let domain_id = service::sending_domains::list(svc, &actor).await.unwrap()[0].id;
    let (code, v) = admin.call("verify_sending_domain", &[("id", &domain_id.to_string())]).await;
    assert_eq!((code, v["status"].as_str()), (200, Some("failed")), "{v}");
    let (code, body) = admin.call("launch_campaign", &[("id", &id.to_string())]).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(admin.call("test_send_campaign", &[("id", &id.to_string())]).await.0, 422);
    let mut edit = settings("Ours", list, t);
    edit.from_email = "news@clinic.test".into();
    assert_eq!(admin.call_json("update_campaign", json!({ "id": id, "settings": edit })).await.0, 422);

    // Send: verified again, scheduled, then the records go before it starts: nothing is sent and
    // the campaign pauses with its own reason; resuming is refused until the domain checks out.
    dns.set(&published);
    assert_eq!(admin.call("verify_sending_domain", &[("id", &domain_id.to_string())]).await.0, 200);
    let mut later = settings("Later", list, t);
    later.schedule = Schedule::At { at: app.now() + chrono::Duration::hours(3) };
    let later_id = service::campaigns::create(svc, &actor, &later).await.unwrap();
    assert_eq!(service::campaigns::launch(svc, &actor, later_id).await.unwrap(), CampaignStatus::Scheduled);
    // The periodic re-check (maintenance, hourly) finds both organisations' records gone.
    dns.set("");
    app.advance(2 * 3600);
    let m = service::maintenance::run(svc).await.unwrap();
    assert_eq!((m.domains_checked, m.domains_lost), (2, 2), "{m:?}");
    app.advance(2 * 3600);
    wait_status(&app, &actor, later_id, CampaignStatus::Paused, 60).await;
    let p = status(svc, &actor, later_id).await;
    assert_eq!(p.pause_reason, Some(PauseReason::SendingDomain));
    assert_eq!(p.counts.as_ref().unwrap().sent, 0);
    assert_eq!(smtp.count(), 0, "nothing was sent from an unverified domain");
    // (Four hours passed on the app's clock: the session has timed out.)
    let (admin, _) = app.sign_in("admin@lakeside.test", Some(&secret)).await;
    let (code, body) = admin.call("resume_campaign", &[("id", &later_id.to_string())]).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        scalar_i64(&app, "SELECT count(*) FROM audit_event WHERE action = 'campaign.paused_sending_domain'").await,
        1
    );

    dns.set(&published);
    assert_eq!(admin.call("verify_sending_domain", &[("id", &domain_id.to_string())]).await.0, 200);
    assert_eq!(admin.call("resume_campaign", &[("id", &later_id.to_string())]).await.0, 200);
    wait_status(&app, &actor, later_id, CampaignStatus::Completed, 60).await;
    let msgs = smtp.wait_for(1, 10).await;
    let selector = service::sending_domains::list(svc, &actor).await.unwrap()[0].selector.clone();
    let (ok, out) = dkim_verify_dns(dns, &selector, "clinic.test", &["From", "Subject"], &[msgs[0].0.clone()]);
    assert!(ok, "{out}");

    // A sending campaign stops at its next batch when its domain is removed.
    let mut big = Vec::new();
    for i in 0..40 {
        big.push(contact(svc, &actor, &format!("p{i}@patients.test"), "P", true).await);
    }
    let big_list = list_with(svc, &actor, &big).await;
    let mut slow = settings("Slow", big_list, t);
    slow.throttle = Throttle { per_second: 2, per_domain_per_minute: None };
    let slow_id = service::campaigns::create(svc, &actor, &slow).await.unwrap();
    service::campaigns::launch(svc, &actor, slow_id).await.unwrap();
    smtp.wait_for(3, 30).await;
    assert_eq!(admin.call("remove_sending_domain", &[("id", &domain_id.to_string())]).await.0, 200);
    wait_status(&app, &actor, slow_id, CampaignStatus::Paused, 30).await;
    let p = status(svc, &actor, slow_id).await;
    assert_eq!(p.pause_reason, Some(PauseReason::SendingDomain));
    assert!(p.counts.as_ref().unwrap().sent < 40, "{p:?}");
    app.stop().await;
}

async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    crate::contacts::scalar(app, sql).await
}
