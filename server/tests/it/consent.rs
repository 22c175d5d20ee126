//! Consent as the patient gave it: a withdrawal the patient made survives re-imports, staff edits
//! and deleting and re-importing the contact, until the patient themself consents again; the
//! unsubscribe link of a message withdraws exactly the purpose the message was sent under, or
//! everything when the patient asks for that. Campaign messages go through the real sending path
//! into the dev mailbox, and the links are taken from the messages themselves.

use crate::contacts::scalar;
use crate::harness::*;
use domain::campaigns::*;
use domain::contacts::{ConsentPurpose, ContactInput};
use domain::ids::OrganisationId;
use domain::{Phi, Role};
use serde_json::json;
use service::{Actor, Services};
use std::time::Duration;
use uuid::Uuid;

async fn start() -> TestApp {
    TestApp::start_with(Options {
        workers: true,
        env: vec![("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into()), ("HERMETIC_DB_MAX_CONNECTIONS", "20".into())],
        dns: true,
    })
    .await
}

async fn may(app: &TestApp, org: OrganisationId, contact: Uuid, p: ConsentPurpose) -> bool {
    service::contacts::consent::may_mail(&app.services, app.services.db(), org, contact, p, app.now())
        .await
        .unwrap()
        .allowed
}

/// Upload a CSV and import it (optionally recording consent for a purpose); wait for the end.
async fn import(c: &Client, csv: &str, purpose: Option<&str>) -> serde_json::Value {
    let (s, up) = c.upload(csv.as_bytes().to_vec()).await;
    assert_eq!(s, 200, "{up}");
    let id = up["id"].as_str().unwrap().to_string();
    let columns = csv.lines().next().unwrap().split(',').count();
    let mapping: Vec<&str> = ["email", "first_name"].into_iter().take(columns).collect();
    let (s, v) = c
        .call_json(
            "start_import",
            json!({ "id": id, "options": { "mapping": mapping, "dedupe": "update", "list_ids": [],
                    "consent_purpose": purpose, "consent_text": purpose.map(|_| "Yes, you may email me") } }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for _ in 0..300 {
        let (_, v) = c.call("import_status", &[("id", &id)]).await;
        if matches!(v["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            assert_eq!(v["status"], "completed", "{v}");
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("import did not finish");
}

async fn contact_id(c: &Client, email: &str) -> Uuid {
    let (_, page) = c.call("contacts_page", &[("email", email)]).await;
    page["rows"][0]["id"].as_str().unwrap_or_else(|| panic!("no contact {email}: {page}")).parse().unwrap()
}

async fn template(svc: &Services, actor: &Actor) -> Uuid {
    let id =
        service::templates::store::create(svc, actor, &format!("T {}", Uuid::new_v4().simple()), None).await.unwrap();
    let content: domain::template_views::TemplateContent = serde_json::from_value(json!({
        "mode": "html", "subject": "News from {{organisation.name}}", "preheader": "", "design": {"blocks": []},
        "html": "<html><body><p>Hello from {{organisation.name}}.</p><p><a href=\"{{links.unsubscribe}}\">Unsubscribe</a></p></body></html>",
        "text": "", "text_edited": false
    }))
    .unwrap();
    let latest = service::templates::store::editor(svc, actor, id, None).await.unwrap().version;
    service::templates::store::save(svc, actor, id, latest, content).await.unwrap();
    id
}

/// Send a campaign for `purpose` to the given contacts (a plain list of that purpose) and wait
/// until every message has been handed to the dev mailbox.
async fn campaign(app: &TestApp, actor: &Actor, purpose: ConsentPurpose, members: &[Uuid]) -> Uuid {
    let svc = &app.services;
    let list =
        service::contacts::lists::create(svc, actor, &format!("L {}", Uuid::new_v4().simple()), "", false, purpose)
            .await
            .unwrap();
    service::contacts::lists::add(svc, actor, list, members).await.unwrap();
    let t = template(svc, actor).await;
    let settings = CampaignSettings {
        name: format!("C {}", Uuid::new_v4().simple()),
        purpose,
        audience: Audience { segments: vec![], lists: vec![list] },
        template_id: Some(t),
        from_name: "Lakeside Clinic".into(),
        from_email: "news@clinic.test".into(),
        reply_to: None,
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle { per_second: 200, per_domain_per_minute: None },
        auto_pause: AutoPause { after_consecutive_errors: 10 },
    };
    let id = service::campaigns::create(svc, actor, &settings).await.unwrap();
    service::campaigns::launch(svc, actor, id).await.unwrap();
    for _ in 0..600 {
        if service::campaigns::progress(svc, actor, id).await.unwrap().status == CampaignStatus::Completed {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("campaign did not complete");
}

/// The `List-Unsubscribe` URL (as a path) of the newest captured message to `to`.
async fn unsubscribe_path(app: &TestApp, org: OrganisationId, to: &str) -> String {
    let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 50).await.unwrap();
    let m = mail.iter().find(|m| m.recipient.expose() == to).unwrap_or_else(|| panic!("no message to {to}"));
    let parts = service::mail::mime::parse(m.raw.expose());
    let url = parts
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("list-unsubscribe"))
        .map(|(_, v)| v.trim().trim_matches(['<', '>']).to_string())
        .expect("a List-Unsubscribe header");
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

async fn one_click(guest: &Client, path: &str) -> Resp {
    guest.post_raw(path, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click".into(), None, &[]).await
}

/// Issue 18 item 3: re-importing a file that "grants" consent re-subscribed people who had
/// unsubscribed. A withdrawal the patient made must hold until the patient consents again.
#[tokio::test]
async fn a_patients_withdrawal_survives_reimports_staff_edits_and_deletion() {
    let app = start().await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let (admin, _) = app.sign_in("admin@lakeside.test", None).await;
    let file = "email,first_name\npat@patients.test,Pat\nsam@patients.test,Sam\n";
    let v = import(&admin, file, Some("marketing")).await;
    assert_eq!(v["rows_created"], 2, "{v}");
    let pat = contact_id(&admin, "pat@patients.test").await;
    let sam = contact_id(&admin, "sam@patients.test").await;
    assert!(may(&app, org, pat, ConsentPurpose::Marketing).await);

    // Pat unsubscribes with the one-click link of the message she received.
    campaign(&app, &actor, ConsentPurpose::Marketing, &[pat, sam]).await;
    let guest = app.client();
    let r = one_click(&guest, &unsubscribe_path(&app, org, "pat@patients.test").await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!may(&app, org, pat, ConsentPurpose::Marketing).await, "the one-click link withdrew consent");

    // A minute later the same file is imported again, "granting" consent to everyone in it.
    app.advance(60);
    let v = import(&admin, file, Some("marketing")).await;
    assert!(!may(&app, org, pat, ConsentPurpose::Marketing).await, "a re-import must not re-subscribe Pat");
    assert!(may(&app, org, sam, ConsentPurpose::Marketing).await, "Sam never withdrew");
    assert_eq!(v["rows_kept_withdrawn"], 1, "the import report counts the rows that kept their withdrawal: {v}");
    // The ledger is honest: the import's grant is recorded, marked as not changing the state.
    assert_eq!(
        scalar(
            &app,
            &format!("SELECT count(*) FROM consent_event WHERE contact_id = '{pat}' AND source = 'import' AND granted AND NOT effective")
        )
        .await,
        1
    );

    // A staff edit granting consent is recorded as what it is, but does not apply; the answer says so.
    let (s, r) = admin
        .call(
            "record_consent",
            &[
                ("contact_id", &pat.to_string()),
                ("purpose", "marketing"),
                ("granted", "true"),
                ("consent_text", "Signed at the front desk"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["applied"], false, "{r}");
    assert!(r["message"].as_str().unwrap().contains("only the patient"), "{r}");
    assert!(
        !may(&app, org, pat, ConsentPurpose::Marketing).await,
        "a staff grant does not undo the patient's withdrawal"
    );
    let (_, d) = admin.call("get_contact", &[("id", &pat.to_string())]).await;
    assert_eq!(d["withdrawals"][0]["purpose"], "marketing", "{d}");
    assert_eq!(d["withdrawals"][0]["source"], "unsubscribe", "{d}");
    assert_eq!(d["consent"][0]["source"], "admin", "{d}");
    assert_eq!(d["consent"][0]["effective"], false, "{d}");

    // Deleting Pat and importing her again does not bring her back either.
    assert_eq!(admin.call("delete_contact", &[("id", &pat.to_string())]).await.0, 200);
    app.advance(60);
    let v = import(&admin, file, Some("marketing")).await;
    assert_eq!((v["rows_created"].as_i64(), v["rows_kept_withdrawn"].as_i64()), (Some(1), Some(1)), "{v}");
    let pat = contact_id(&admin, "pat@patients.test").await;
    assert!(!may(&app, org, pat, ConsentPurpose::Marketing).await, "deleting and re-importing keeps the withdrawal");

    // Pat herself confirms a double opt-in email, later than her withdrawal: consent is back.
    app.advance(60);
    let (s, list) = admin
        .call(
            "create_list",
            &[
                ("name", "Newsletter (confirmed)"),
                ("description", ""),
                ("double_opt_in", "true"),
                ("purpose", "marketing"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let (s, _) = admin.call_json("add_to_list", json!({ "list_id": list, "contact_ids": [pat] })).await;
    assert_eq!(s, 200);
    let mut token = String::new();
    for _ in 0..60 {
        let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 50).await.unwrap();
        if let Some(m) = mail.iter().find(|m| m.raw.expose().contains("/optin#")) {
            let unfolded = m.raw.expose().replace("=\r\n", "");
            let at = unfolded.find("/optin#").unwrap() + "/optin#".len();
            token =
                unfolded[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(token.len(), 43, "the confirmation email arrived");
    guest.page("/optin").await;
    assert_eq!(guest.call("confirm_optin", &[("token", &token)]).await.0, 200);
    assert!(may(&app, org, pat, ConsentPurpose::Marketing).await, "the patient's own confirmation restores consent");
    let (_, d) = admin.call("get_contact", &[("id", &pat.to_string())]).await;
    assert_eq!(d["withdrawals"], json!([]), "{d}");
    app.stop().await;
}

/// Issue 18 item 11: the unsubscribe page checked marketing consent while its button withdrew the
/// campaign's own purpose. It must show and withdraw the purpose the message was sent under, and
/// offer unsubscribing from everything.
#[tokio::test]
async fn the_unsubscribe_page_names_and_withdraws_the_messages_own_purpose() {
    let app = start().await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), Phi::new("cara@patients.test".to_string()));
    let cara = service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
    for p in ConsentPurpose::ALL {
        service::contacts::consent::record(svc, &actor, cara, p, true, Some("Yes")).await.unwrap();
    }
    campaign(&app, &actor, ConsentPurpose::CareCommunications, &[cara]).await;
    let path = unsubscribe_path(&app, org, "cara@patients.test").await;
    let guest = app.client();

    // The page names the message's purpose, and offers everything as a separate choice.
    let page = guest.get(&path).await;
    assert_eq!(page.status, 200);
    let body = page.body.to_lowercase();
    assert!(body.contains("care communications"), "the page names the purpose of the message: {}", page.body);
    assert!(!body.contains("marketing email"), "it is not about marketing: {}", page.body);
    assert!(page.body.contains("name=\"scope\" value=\"everything\""), "{}", page.body);
    assert!(may(&app, org, cara, ConsentPurpose::CareCommunications).await, "GET changes nothing");

    // RFC 8058 one-click withdraws the message's own purpose, and nothing else.
    let r = one_click(&guest, &path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.to_lowercase().contains("care communications"), "{}", r.body);
    assert!(!may(&app, org, cara, ConsentPurpose::CareCommunications).await);
    assert!(may(&app, org, cara, ConsentPurpose::Marketing).await, "marketing consent is untouched");
    // The page now says so and still offers the rest.
    let page = guest.get(&path).await;
    assert!(page.body.contains("name=\"scope\" value=\"everything\""), "{}", page.body);

    // "Unsubscribe from everything" withdraws every purpose.
    let r = guest.post_raw(&path, "application/x-www-form-urlencoded", "scope=everything".into(), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for p in ConsentPurpose::ALL {
        assert!(!may(&app, org, cara, p).await, "{p:?} withdrawn");
    }
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM consent_event WHERE contact_id = '{cara}' AND source = 'unsubscribe' AND NOT granted")).await,
        ConsentPurpose::ALL.len() as i64,
        "one ledger event per purpose withdrawn"
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'recipient.unsubscribed'").await,
        ConsentPurpose::ALL.len() as i64
    );
    // Nothing left to withdraw: the page says so and offers no button.
    let page = guest.get(&path).await;
    assert!(!page.body.contains("<form"), "{}", page.body);
    app.stop().await;
}

/// Issue 19 item 4: after a one-click unsubscribe the list still counted the patient as subscribed,
/// the contact page said "subscribed" and the suppression page (which said unsubscribes are added
/// automatically) stayed empty. Every view now says what the consent ledger holds.
#[tokio::test]
async fn an_unsubscribe_shows_in_the_list_the_contact_page_and_the_suppression_page() {
    let app = start().await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for email in ["pat@patients.test", "sam@patients.test"] {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("email".to_string(), Phi::new(email.to_string()));
        let id = service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
        service::contacts::consent::record(svc, &actor, id, ConsentPurpose::Marketing, true, Some("Yes"))
            .await
            .unwrap();
        ids.push(id);
    }
    let (pat, sam) = (ids[0], ids[1]);
    let care =
        service::contacts::lists::create(svc, &actor, "Reminders", "", false, ConsentPurpose::CareCommunications)
            .await
            .unwrap();
    service::contacts::lists::add(svc, &actor, care, &[pat]).await.unwrap();
    campaign(&app, &actor, ConsentPurpose::Marketing, &[pat, sam]).await;
    let (admin, _) = app.sign_in("admin@lakeside.test", None).await;
    let (_, unsubscribes) = admin.call("list_unsubscribes", &[]).await;
    assert_eq!(unsubscribes, json!([]), "nobody has unsubscribed yet");

    let guest = app.client();
    let r = one_click(&guest, &unsubscribe_path(&app, org, "pat@patients.test").await).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The marketing list counts Pat as unsubscribed; the care list (another purpose) is untouched.
    let (_, lists) = admin.call("list_lists", &[]).await;
    let by_name = |prefix: &str| {
        lists.as_array().unwrap().iter().find(|l| l["name"].as_str().unwrap().starts_with(prefix)).cloned().unwrap()
    };
    let news = by_name("L ");
    assert_eq!((news["subscribed"].as_i64(), news["unsubscribed"].as_i64()), (Some(1), Some(1)), "{lists}");
    assert_eq!(
        (by_name("Reminders")["subscribed"].as_i64(), by_name("Reminders")["unsubscribed"].as_i64()),
        (Some(1), Some(0))
    );

    // The contact page says so, and why.
    let (_, d) = admin.call("get_contact", &[("id", &pat.to_string())]).await;
    let m = d["lists"].as_array().unwrap().iter().find(|m| m["list_id"] == news["id"]).cloned().unwrap();
    assert_eq!((m["status"].as_str(), m["consent_withdrawn"].as_bool()), (Some("unsubscribed"), Some(true)), "{d}");
    let m = d["lists"].as_array().unwrap().iter().find(|m| m["list_name"] == "Reminders").cloned().unwrap();
    assert_eq!(m["status"], "subscribed", "{d}");

    // The suppression page lists the withdrawal: who, which kind of email, from where.
    let (s, unsubscribes) = admin.call("list_unsubscribes", &[]).await;
    assert_eq!(s, 200, "{unsubscribes}");
    assert_eq!(unsubscribes.as_array().unwrap().len(), 1, "{unsubscribes}");
    assert_eq!(unsubscribes[0]["contact_id"], pat.to_string());
    assert_eq!(
        (unsubscribes[0]["purpose"].as_str(), unsubscribes[0]["source"].as_str()),
        (Some("marketing"), Some("unsubscribe"))
    );

    // A staff grant does not make Pat subscribed again (the withdrawal holds), and a segment "in
    // the list" leaves her out too.
    app.advance(60);
    let (_, r) = admin
        .call(
            "record_consent",
            &[("contact_id", &pat.to_string()), ("purpose", "marketing"), ("granted", "true"), ("consent_text", "")],
        )
        .await;
    assert_eq!(r["applied"], false, "{r}");
    let (_, lists) = admin.call("list_lists", &[]).await;
    let news = lists.as_array().unwrap().iter().find(|l| l["id"] == news["id"]).cloned().unwrap();
    assert_eq!((news["subscribed"].as_i64(), news["unsubscribed"].as_i64()), (Some(1), Some(1)), "{lists}");
    let in_list = json!({ "version": 1, "root": { "node": "and", "children": [
        { "node": "condition", "condition": { "kind": "in_list", "list": news["id"] } } ] } });
    let (s, r) = admin.call_json("count_segment", json!({ "definition": in_list })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["matching"],
        serde_json::to_value(domain::disclosure::Figure::Exact(1)).unwrap(),
        "the segment agrees with the list: {r}"
    );
    let _ = sam;

    // Deleting Pat keeps her withdrawal on the suppression page, under her address's reference.
    assert_eq!(admin.call("delete_contact", &[("id", &pat.to_string())]).await.0, 200);
    let (_, unsubscribes) = admin.call("list_unsubscribes", &[]).await;
    assert_eq!(unsubscribes[0]["contact_id"], serde_json::Value::Null, "{unsubscribes}");
    assert_eq!(unsubscribes[0]["reference"].as_str().map(str::len), Some(16), "{unsubscribes}");
    app.stop().await;
}
