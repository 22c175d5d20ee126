//! Contacts: encrypted storage, audited reads, tenant isolation, consent, suppression, lists and
//! double opt-in, export, key rotation and crypto-shredding.

use crate::harness::*;
use domain::Role;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

pub const MARKER_FIRST: &str = "Zelphinia";
pub const MARKER_LAST: &str = "Quarrendon";
pub const MARKER_EMAIL: &str = "zelphinia.quarrendon@marker.example";
pub const MARKER_DOB: &str = "1931-07-14";

pub async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let r = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string())).await.unwrap().unwrap();
    let n: i64 = r.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    n
}

async fn create(c: &Client, fields: serde_json::Value) -> (u16, serde_json::Value) {
    c.call_json("create_contact", json!({ "input": { "fields": fields } })).await
}

#[tokio::test]
async fn contacts_are_sealed_audited_and_isolated() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    app.org_with_user("Other", "other@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (s, id) = create(&admin, json!({ "email": MARKER_EMAIL, "first_name": MARKER_FIRST, "last_name": MARKER_LAST, "date_of_birth": MARKER_DOB, "time_zone": "America/Chicago" })).await;
    assert_eq!(s, 200, "{id}");
    let id = id.as_str().unwrap().to_string();
    let (s, dup) = create(&admin, json!({ "email": MARKER_EMAIL.to_uppercase() })).await;
    assert_eq!(
        (s, dup["code"].as_str()),
        (409, Some("conflict")),
        "emails are unique per organisation, case-insensitively"
    );
    let (s, bad) =
        create(&admin, json!({ "email": "not-an-email", "date_of_birth": "1990-02-30", "phone": "call me" })).await;
    assert_eq!(s, 422);
    let msg = bad["message"].as_str().unwrap();
    // Each refused field in its own words, never its internal key (issue 19 item 11).
    assert!(msg.contains("Email") && msg.contains("Date of birth") && msg.contains("Phone"), "{msg}");
    assert!(!msg.contains("date_of_birth"), "{msg}");
    assert!(!msg.contains("call me"), "errors never repeat values");

    // Stored sealed: the columns are ciphertext, and the blind index is not the email's plain hash.
    let plain_hits = scalar(&app, &format!(
        "SELECT count(*) FROM contact WHERE position(convert_to('{MARKER_FIRST}', 'UTF8') in first_name) > 0 OR position(convert_to('{MARKER_EMAIL}', 'UTF8') in email) > 0"
    )).await;
    assert_eq!(plain_hits, 0);

    // Reading decrypts and is audited.
    let before = scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'contact.viewed'").await;
    let (s, d) = admin.call("get_contact", &[("id", &id)]).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["fields"]["fields"]["first_name"], MARKER_FIRST);
    assert_eq!(d["fields"]["fields"]["date_of_birth"], MARKER_DOB);
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'contact.viewed'").await, before + 1);
    let (s, p) = admin.call("contacts_page", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(p["rows"][0]["email"], MARKER_EMAIL);
    assert_eq!(p["rows"][0]["name"], format!("{MARKER_FIRST} {MARKER_LAST}"));
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'contacts.listed'").await, 1);
    let (_, found) = admin.call("contacts_page", &[("email", &format!("  {}  ", MARKER_EMAIL.to_uppercase()))]).await;
    assert_eq!(found["rows"].as_array().unwrap().len(), 1, "exact search through the blind index");
    let (_, none) = admin.call("contacts_page", &[("email", "zelphinia")]).await;
    assert_eq!(none["rows"].as_array().unwrap().len(), 0, "no partial matching on sealed data");

    // The analyst role never reads contacts.
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    assert_eq!(analyst.call("contacts_page", &[]).await.0, 403);
    assert_eq!(analyst.call("get_contact", &[("id", &id)]).await.0, 403);
    assert_eq!(analyst.get("/contacts").await.status, 403);
    assert_eq!(analyst.get("/contacts/export.csv").await.status, 403);

    // Another organisation's ids answer 404, and nothing is audited as read.
    let (other, _) = app.sign_in("other@other.test", None).await;
    for op in ["get_contact", "delete_contact"] {
        assert_eq!(other.call(op, &[("id", &id)]).await.0, 404, "{op}");
    }
    let (s, _) =
        other.call_json("update_contact", json!({ "id": id, "input": { "fields": { "email": "x@y.test" } } })).await;
    assert_eq!(s, 404);

    // Update and delete.
    let (s, _) = admin
        .call_json(
            "update_contact",
            json!({ "id": id, "input": { "fields": { "email": MARKER_EMAIL, "first_name": "Zel" } } }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, d) = admin.call("get_contact", &[("id", &id)]).await;
    assert_eq!(d["fields"]["fields"]["first_name"], "Zel");
    assert_eq!(admin.call("delete_contact", &[("id", &id)]).await.0, 200);
    assert_eq!(admin.call("get_contact", &[("id", &id)]).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_sealed_value_moved_elsewhere_or_corrupted_fails_closed() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (_, a) = create(&admin, json!({ "email": "a@clinic.test", "first_name": "Alice", "last_name": "Ames" })).await;
    let (_, b) = create(&admin, json!({ "email": "b@clinic.test", "first_name": "Bob", "last_name": "Brown" })).await;
    let (a, b) = (a.as_str().unwrap().to_string(), b.as_str().unwrap().to_string());
    // Alice's sealed first name copied onto Bob's row: it must not open as Bob's.
    app.sql(&format!(
        "UPDATE contact SET first_name = (SELECT first_name FROM contact WHERE id = '{a}') WHERE id = '{b}'"
    ))
    .await;
    let (s, body) = admin.call("get_contact", &[("id", &b)]).await;
    assert_eq!(s, 500, "{body}");
    assert!(!body.to_string().contains("Alice"));
    // Alice's first name moved into her own last-name column: wrong column, also refused.
    app.sql(&format!("UPDATE contact SET last_name = first_name WHERE id = '{a}'")).await;
    assert_eq!(admin.call("get_contact", &[("id", &a)]).await.0, 500);
    // A flipped bit in the tag.
    let (_, c) = create(&admin, json!({ "email": "c@clinic.test", "first_name": "Carol" })).await;
    let c = c.as_str().unwrap().to_string();
    app.sql(&format!("UPDATE contact SET first_name = overlay(first_name placing decode(lpad(to_hex(get_byte(first_name, length(first_name) - 1) # 1), 2, '0'), 'hex') from length(first_name)) WHERE id = '{c}'")).await;
    assert_eq!(admin.call("get_contact", &[("id", &c)]).await.0, 500);
    app.stop().await;
}

#[tokio::test]
async fn consent_and_suppression_decide_who_may_be_mailed() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (_, id) = create(&admin, json!({ "email": "pat@clinic.test" })).await;
    let id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
    let may = |p| {
        let app = &app;
        async move {
            service::contacts::consent::may_mail(&app.services, app.services.db(), org, id, p, app.now())
                .await
                .unwrap()
                .allowed
        }
    };
    use domain::contacts::ConsentPurpose::*;
    assert!(!may(Marketing).await, "no consent on record");
    assert_eq!(
        admin
            .call(
                "record_consent",
                &[
                    ("contact_id", &id.to_string()),
                    ("purpose", "marketing"),
                    ("granted", "true"),
                    ("consent_text", "I agree to news")
                ]
            )
            .await
            .0,
        200
    );
    assert!(may(Marketing).await);
    assert!(!may(CareCommunications).await, "consent is per purpose");
    let (s, _) = admin.call("add_suppression", &[("email", "PAT@clinic.test"), ("reason", "manual")]).await;
    assert_eq!(s, 200);
    assert!(!may(Marketing).await, "suppression overrides consent");
    let (_, list) = admin.call("list_suppressions", &[]).await;
    let reference = list[0]["reference"].as_str().unwrap().to_string();
    assert!(!list.to_string().contains("pat@"), "the list shows references, not addresses");
    assert_eq!(admin.call("remove_suppression", &[("reference", &reference)]).await.0, 200);
    assert!(may(Marketing).await);
    // Unsubscribes cannot be lifted by staff.
    admin.call("add_suppression", &[("email", "pat@clinic.test"), ("reason", "unsubscribed")]).await;
    assert_eq!(admin.call("remove_suppression", &[("reference", &reference)]).await.0, 422);
    // The ledger is append-only.
    let db = app.db.connect().await;
    assert!(db.execute_unprepared("UPDATE consent_event SET granted = false").await.is_err());
    assert!(db.execute_unprepared("DELETE FROM consent_event").await.is_err());
    db.close().await.unwrap();
    let (_, d) = admin.call("get_contact", &[("id", &id.to_string())]).await;
    assert_eq!(d["consent"][0]["purpose"], "marketing");
    assert!(d["consent"][0]["text_hash"].as_str().unwrap().len() == 64);
    app.stop().await;
}

#[tokio::test]
async fn double_opt_in_sends_a_link_that_confirms_once() {
    let app = TestApp::start_with(Options {
        workers: true,
        env: vec![("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (_, id) = create(&admin, json!({ "email": "new.patient@clinic.test" })).await;
    let id = id.as_str().unwrap().to_string();
    let (s, list) = admin
        .call(
            "create_list",
            &[("name", "Diabetes education"), ("description", ""), ("double_opt_in", "true"), ("purpose", "marketing")],
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_str().unwrap().to_string();
    assert_eq!(admin.call_json("add_to_list", json!({ "list_id": list, "contact_ids": [id] })).await.0, 200);
    let (_, d) = admin.call("get_contact", &[("id", &id)]).await;
    assert_eq!(d["lists"][0]["status"], "pending");
    // The job sends the confirmation (captured by the dev mailbox here).
    let mut raw = String::new();
    for _ in 0..40 {
        let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 10).await.unwrap();
        if let Some(m) = mail.first() {
            raw = m.raw.expose().clone();
            assert!(!m.subject.expose().contains("Diabetes"), "the subject never names the list");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(raw.contains("new.patient@clinic.test"), "no confirmation email was captured");
    let unfolded = raw.replace("=\r\n", "");
    let at = unfolded.find("/optin#").expect("confirmation link in the email") + "/optin#".len();
    let token: String =
        unfolded[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    assert_eq!(token.len(), 43, "{unfolded}");
    let guest = app.client();
    guest.page("/optin").await;
    let (s, info) = guest.call("lookup_optin", &[("token", &token)]).await;
    assert_eq!((s, info["list_name"].as_str()), (200, Some("Diabetes education")), "{info}");
    assert_eq!(guest.call("confirm_optin", &[("token", &token)]).await.0, 200);
    assert_eq!(guest.call("confirm_optin", &[("token", &token)]).await.0, 422, "a link confirms once");
    let (_, d) = admin.call("get_contact", &[("id", &id)]).await;
    assert_eq!(d["lists"][0]["status"], "subscribed");
    assert_eq!(d["consent"][0]["source"], "double_opt_in");
    app.stop().await;
}

#[tokio::test]
async fn export_is_admin_only_audited_and_formula_safe() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    create(&admin, json!({ "email": "eve@clinic.test", "first_name": "=HYPERLINK(\"http://evil.example\",\"x\")", "last_name": "+1-2" })).await;
    let r = admin.get("/contacts/export.csv").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-disposition"].to_str().unwrap().contains("attachment"));
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.body.starts_with("email,first_name,last_name"), "{}", r.body);
    assert!(r.body.contains("'=HYPERLINK"), "{}", r.body);
    assert!(r.body.contains("'+1-2"));
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'contacts.exported'").await, 1);
    let (marketer, _) = app.sign_in("marketer@clinic.test", None).await;
    assert_eq!(marketer.get("/contacts/export.csv").await.status, 403);
    app.stop().await;
}

#[tokio::test]
async fn rotation_reseals_and_deleting_the_organisation_shreds_it() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let mut ids = vec![];
    for i in 0..25 {
        let (_, id) =
            create(&admin, json!({ "email": format!("p{i}@clinic.test"), "first_name": format!("P{i}") })).await;
        ids.push(id.as_str().unwrap().to_string());
    }
    let old_key = scalar(&app, "SELECT count(*) FROM wrapped_key WHERE purpose = 'data' AND retired_at IS NULL").await;
    assert_eq!(old_key, 1);
    let system = service::Actor::system(org, "test");
    let rotation = service::crypto::rotation::start_data_rotation(&app.services, &system).await.unwrap();
    // New writes already use the new key while the old rows are still old.
    let (_, fresh) = create(&admin, json!({ "email": "fresh@clinic.test" })).await;
    let (_, d) = admin.call("get_contact", &[("id", &ids[3])]).await;
    assert_eq!(d["fields"]["fields"]["first_name"], "P3", "old rows open during the rotation");
    // Completion waits until every process must have switched to the new key.
    app.advance(service::crypto::rotation::SETTLE_SECS);
    let run = service::crypto::rotation::process_data_rotation(&app.services, rotation).await.unwrap();
    assert!(run.completed);
    let n = run.resealed;
    assert!(n > 25, "contacts and the admin's authenticator secret were re-sealed: {n}");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM contact c WHERE substring(c.email FROM 2 FOR 16) IN (SELECT uuid_send(id) FROM wrapped_key WHERE retired_at IS NOT NULL)").await,
        0
    );
    let (_, d) = admin.call("get_contact", &[("id", fresh.as_str().unwrap())]).await;
    assert_eq!(d["fields"]["fields"]["email"], "fresh@clinic.test");

    // Root key rotation: every wrapped key re-wrapped; the old root key no longer opens anything.
    let new_root = service::crypto::keyring::RootKey::generate().unwrap();
    let new_root_text = new_root.to_base64();
    let rewrapped = service::crypto::rotation::rotate_root(&app.services, new_root).await.unwrap();
    assert!(rewrapped >= 4);
    let ring = service::crypto::keyring::KeyRing::new(
        service::crypto::keyring::RootKey::from_encoded(&new_root_text).unwrap(),
    );
    assert!(
        ring.key_by_id(
            app.services.db(),
            scalar_uuid(&app, "SELECT id FROM wrapped_key WHERE purpose = 'data' AND retired_at IS NULL").await
        )
        .await
        .is_ok()
    );
    let old_ring =
        service::crypto::keyring::KeyRing::new(service::crypto::keyring::RootKey::from_encoded(ROOT_KEY).unwrap());
    assert!(
        old_ring
            .key_by_id(
                app.services.db(),
                scalar_uuid(&app, "SELECT id FROM wrapped_key WHERE purpose = 'audit_mac'").await
            )
            .await
            .is_err()
    );

    // Deleting the organisation destroys its keys: the rows stay, unreadable forever.
    let keys = service::crypto::rotation::delete_organisation(&app.services, org).await.unwrap();
    assert!(keys >= 3);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM wrapped_key WHERE organisation_id IS NOT NULL AND destroyed_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM wrapped_key WHERE organisation_id IS NOT NULL AND length(wrapped) > 0")
            .await,
        0
    );
    assert_eq!(admin.get("/contacts").await.status, 303, "its sessions ended");
    app.stop().await;
}

async fn scalar_uuid(app: &TestApp, sql: &str) -> uuid::Uuid {
    let db = app.db.connect().await;
    let r = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string())).await.unwrap().unwrap();
    let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    id
}

/// Issue 19 item 14: the contacts table filters by list and consent and sorts by non-PHI columns,
/// on the server, with keyset paging; the count describes the filtered set.
#[tokio::test]
async fn the_contacts_table_filters_by_list_and_consent_and_sorts_without_reading_phi() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let actor = service::Actor::system(org, "test");
    let svc = &app.services;
    let mut ids = vec![];
    for email in ["a@x.test", "b@x.test", "c@x.test"] {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("email".to_string(), domain::Phi::new(email.to_string()));
        ids.push(service::contacts::create(svc, &actor, domain::contacts::ContactInput { fields }).await.unwrap());
        app.advance(60);
    }
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    use domain::contacts::ConsentPurpose::Marketing;
    service::contacts::consent::record(svc, &actor, a, Marketing, true, None).await.unwrap();
    service::contacts::consent::record(svc, &actor, b, Marketing, true, None).await.unwrap();
    service::contacts::consent::record(svc, &actor, b, Marketing, false, None).await.unwrap();
    let list = service::contacts::lists::create(svc, &actor, "News", "", false, Marketing).await.unwrap();
    service::contacts::lists::add(svc, &actor, list, &[a, b]).await.unwrap();
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let browse = |q: serde_json::Value| {
        let admin = &admin;
        async move {
            let mut query = json!({ "email": null, "list": null, "consent": null, "sort": "created_desc" });
            for (k, v) in q.as_object().unwrap() {
                query[k] = v.clone();
            }
            admin.call_json("browse_contacts", json!({ "after": null, "query": query })).await
        }
    };
    let emails = |page: &serde_json::Value| -> Vec<String> {
        page["rows"].as_array().unwrap().iter().map(|r| r["email"].as_str().unwrap().to_string()).collect()
    };

    for (state, want) in [("granted", "a@x.test"), ("withdrawn", "b@x.test"), ("none", "c@x.test")] {
        let (s, p) = browse(json!({ "consent": ["marketing", state] })).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!((p["total"].as_i64(), emails(&p)), (Some(1), vec![want.to_string()]), "{state}: {p}");
    }
    let (_, p) = browse(json!({ "consent": ["marketing", "withdrawn"] })).await;
    assert_eq!(p["rows"][0]["consent"], json!([{ "purpose": "marketing", "granted": false }]), "{p}");
    assert_eq!(
        p["rows"][0]["lists"],
        json!([{ "name": "News", "status": "unsubscribed" }]),
        "the withdrawal shows: {p}"
    );
    let (_, p) = browse(json!({ "list": list })).await;
    assert_eq!((p["total"].as_i64(), emails(&p)), (Some(2), vec!["b@x.test".to_string(), "a@x.test".to_string()]));
    let (_, p) = browse(json!({ "list": list, "consent": ["marketing", "granted"] })).await;
    assert_eq!(emails(&p), vec!["a@x.test"], "filters combine");

    // Orders: newest (default), oldest, recently updated.
    let (_, p) = browse(json!({})).await;
    assert_eq!(emails(&p), vec!["c@x.test", "b@x.test", "a@x.test"]);
    let (_, p) = browse(json!({ "sort": "created_asc" })).await;
    assert_eq!(emails(&p), vec!["a@x.test", "b@x.test", "c@x.test"]);
    app.advance(60);
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), domain::Phi::new("a@x.test".to_string()));
    fields.insert("first_name".to_string(), domain::Phi::new("Ann".to_string()));
    service::contacts::update(svc, &actor, a, domain::contacts::ContactInput { fields }).await.unwrap();
    let (_, p) = browse(json!({ "sort": "updated_desc" })).await;
    assert_eq!(emails(&p)[0], "a@x.test", "{p}");

    // Keyset paging follows the order chosen.
    let q = domain::contacts::ContactQuery { sort: domain::contacts::ContactSort::UpdatedAsc, ..Default::default() };
    let p1 = service::contacts::browse::page(svc, &actor, None, 2, &q).await.unwrap();
    let p2 = service::contacts::browse::page(svc, &actor, p1.next.clone(), 2, &q).await.unwrap();
    let order: Vec<uuid::Uuid> = p1.rows.iter().chain(&p2.rows).map(|r| r.id).collect();
    assert_eq!(order, vec![b, c, a], "a was updated last");
    assert_eq!((p1.total, p2.total, p2.next.clone()), (3, 3, None));

    // Hostile input: a forged cursor or an unknown order is refused, with nothing shown.
    let (s, _) = admin.call_json("browse_contacts", json!({ "after": "x_y", "query": { "email": null, "list": null, "consent": null, "sort": "created_desc" } })).await;
    assert_eq!(s, 422);
    let (s, _) = browse(json!({ "sort": "email_asc" })).await;
    assert!((400..500).contains(&s), "{s}");
    app.stop().await;
}
