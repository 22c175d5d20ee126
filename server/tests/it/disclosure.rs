//! Disclosure control (issue 18, items 1 and 9): what a role that may not read contacts (an
//! analyst) can learn from segment counts, segment definitions and campaign reports — tried the
//! way an attacker would: yes/no oracles, NOT, zero vs small, differencing two saved segments —
//! and the per-user budget of counts that decrypt, the sealing of PHI literals in segment
//! definitions (new rows and legacy plaintext rows), and hostile input.

use crate::harness::*;
use domain::campaigns::{Audience, AutoPause, CampaignSettings, DeliveryPolicy, Schedule, Throttle};
use domain::contacts::{ConsentPurpose, ContactInput};
use domain::{Phi, Role};
use serde_json::{Value, json};
use service::Actor;
use uuid::Uuid;

const JANE: &str = "jane@oracle.test";

fn cond(field: &str, test: Value) -> Value {
    json!({ "node": "condition", "condition": { "kind": "field", "field": field, "test": test } })
}
fn all(children: Vec<Value>) -> Value {
    json!({ "version": 1, "root": { "node": "and", "children": children } })
}
fn not(child: Value) -> Value {
    json!({ "node": "not", "child": child })
}
fn email_is(v: &str) -> Value {
    cond("email", json!({ "op": "text_equals", "value": v }))
}
fn born_before(d: &str) -> Value {
    cond("date_of_birth", json!({ "op": "date_before", "date": d }))
}
fn starts_with_j() -> Value {
    cond("first_name", json!({ "op": "text_starts_with", "value": "j" }))
}
fn fewer_than_11() -> Value {
    json!({ "shown": "fewer_than", "value": 11 })
}

async fn person(svc: &service::Services, actor: &Actor, email: &str, first: &str, dob: &str) -> Uuid {
    let mut fields = vec![("email", email.to_string()), ("first_name", first.to_string())];
    if !dob.is_empty() {
        fields.push(("date_of_birth", dob.to_string()));
    }
    let input = ContactInput { fields: fields.into_iter().map(|(k, v)| (k.to_string(), Phi::new(v))).collect() };
    service::contacts::create(svc, actor, input).await.unwrap()
}

/// Jane (born 1980-05-17), 51 other people whose first name starts with J and 20 who are called
/// Kim: 72 contacts.
async fn clinic(app: &TestApp) -> domain::ids::OrganisationId {
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    person(svc, &actor, JANE, "Jane", "1980-05-17").await;
    for i in 0..51 {
        person(svc, &actor, &format!("j{i}@oracle.test"), &format!("Jo{i}"), "1990-01-01").await;
    }
    for i in 0..20 {
        person(svc, &actor, &format!("k{i}@oracle.test"), "Kim", "").await;
    }
    org
}

async fn save(c: &Client, name: &str, def: &Value) -> String {
    let (s, id) = c.call_json("create_segment", json!({ "name": name, "definition": def })).await;
    assert_eq!(s, 200, "{id}");
    id.as_str().unwrap().to_string()
}

async fn count_saved(c: &Client, id: &str) -> (u16, Value) {
    c.call("count_saved_segment", &[("id", id)]).await
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    crate::contacts::scalar(app, sql).await
}

#[tokio::test]
async fn analysts_cannot_use_segment_counts_as_an_oracle() {
    let app = TestApp::start().await;
    let org = clinic(&app).await;
    app.org_with_user("Other", "other@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (marketer, _) = app.sign_in("marketer@clinic.test", None).await;
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    let (other, _) = app.sign_in("other@other.test", None).await;

    // Ad-hoc conditions are refused for a role that may not read contacts, in plain words: the
    // yes/no oracle and NOT(email = X) = total − 1 of the review.
    let yes = all(vec![email_is(JANE), born_before("1981-01-01")]);
    let no = all(vec![email_is(JANE), born_before("1979-01-01")]);
    let everyone_but_jane = all(vec![not(email_is(JANE))]);
    for def in [&yes, &no, &everyone_but_jane, &all(vec![])] {
        let (s, r) = analyst.call_json("count_segment", json!({ "definition": def })).await;
        assert_eq!(s, 403, "ad-hoc count for an analyst: {r}");
        assert_eq!(r["code"], "forbidden");
        assert!(r["message"].as_str().unwrap().contains("saved segments"), "{r}");
    }
    // People who may read contacts still get exact live counts while building.
    let (s, r) = marketer.call_json("count_segment", json!({ "definition": yes })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 1 }));
    assert_eq!(r["total"], json!({ "shown": "exact", "value": 72 }));

    // Saved segments (built by someone who may read contacts) can be counted by the analyst, with
    // disclosure control.
    let s_yes = save(&admin, "Yes", &yes).await;
    let s_no = save(&admin, "No", &no).await;
    let s_not = save(&admin, "Everyone but one", &everyone_but_jane).await;
    let s_j = save(&admin, "J names", &all(vec![starts_with_j()])).await;
    let s_j_minus = save(&admin, "J names but one", &all(vec![starts_with_j(), not(email_is(JANE))])).await;
    let s_all = save(&admin, "Everyone", &all(vec![])).await;

    // 1 and 0 are indistinguishable.
    let (s, one) = count_saved(&analyst, &s_yes).await;
    assert_eq!(s, 200, "{one}");
    let (_, zero) = count_saved(&analyst, &s_no).await;
    assert_eq!(one["matching"], fewer_than_11(), "{one}");
    assert_eq!(zero["matching"], one["matching"], "0 and 1 look the same");
    assert_eq!(one["total"], json!({ "shown": "rounded", "value": 70 }));
    // NOT(email = X): total − 1 is not shown (its complement is small).
    let (_, r) = count_saved(&analyst, &s_not).await;
    assert_eq!(r["matching"], json!({ "shown": "withheld" }), "{r}");
    let (_, r) = count_saved(&analyst, &s_all).await;
    assert_eq!(r["matching"], json!({ "shown": "withheld" }), "everyone = total − 0: {r}");
    // Differencing two saved segments that differ by one person (52 vs 51, the review's
    // reproduction): both round to 50.
    let (_, a) = count_saved(&analyst, &s_j).await;
    let (_, b) = count_saved(&analyst, &s_j_minus).await;
    assert_eq!(a["matching"], json!({ "shown": "rounded", "value": 50 }), "{a}");
    assert_eq!(b["matching"], a["matching"], "{b}");
    // The marketer sees the exact numbers.
    let (_, r) = count_saved(&marketer, &s_j_minus).await;
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 51 }));
    let (_, r) = count_saved(&marketer, &s_yes).await;
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 1 }));

    // The definition an analyst sees does not carry the literal values of PHI conditions.
    let (s, v) = analyst.call("open_segment", &[("id", &s_yes)]).await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(!text.contains(JANE) && !text.contains("1981-01-01"), "{text}");
    let (_, v) = admin.call("open_segment", &[("id", &s_yes)]).await;
    assert_eq!(v["definition"], yes, "people who may read contacts see the whole definition");

    // Hostile ids: another organisation's segment, an unknown id, a malformed one.
    for c in [&other, &analyst] {
        let (s, r) = count_saved(c, &Uuid::now_v7().to_string()).await;
        assert_eq!(s, 404, "{r}");
    }
    let (s, r) = count_saved(&other, &s_yes).await;
    assert_eq!(s, 404, "another organisation's segment: {r}");
    let (s, _) = count_saved(&analyst, "not-a-uuid").await;
    assert!(s == 400 || s == 422, "{s}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE details LIKE '%oracle.test%'").await, 0);
    let _ = org;
    app.stop().await;
}

/// A second, independent instance of the services on the same database (its own connection pool
/// and key ring; only the test clock is shared), as another server process would have.
async fn second_instance(app: &TestApp) -> service::Services {
    let env: Vec<(String, String)> = vec![
        ("HERMETIC_DATABASE_URL".into(), app.db.url.clone()),
        ("HERMETIC_ROOT_KEY".into(), ROOT_KEY.into()),
        ("HERMETIC_PUBLIC_URL".into(), app.base.clone()),
        ("HERMETIC_DB_MAX_CONNECTIONS".into(), "4".into()),
    ];
    let config = server::config::FileConfig::load(None, &env)
        .unwrap()
        .validate(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &env)
        .unwrap();
    server::build_services(config, app.clock.clone()).await.unwrap().0
}

async fn user_id(app: &TestApp, email: &str) -> domain::ids::UserId {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let r = app
        .services
        .db()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM app_user WHERE email = $1",
            [email.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    domain::ids::UserId(r.try_get_by_index(0).unwrap())
}

#[tokio::test]
async fn counts_that_decrypt_are_rate_limited_per_user_in_every_server_instance() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    for i in 0..3 {
        person(svc, &actor, &format!("p{i}@budget.test"), "Pat", "1970-01-01").await;
    }
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (marketer, _) = app.sign_in("marketer@clinic.test", None).await;
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    let phi = all(vec![cond("first_name", json!({ "op": "text_starts_with", "value": "p" }))]);
    let plain = all(vec![cond("locale", json!({ "op": "is_empty" }))]);
    let saved = save(&admin, "Pats", &phi).await;

    // 110 counts one after the other, then 30 at once: exactly 10 more fit the budget of 120 (the
    // budget is taken atomically in the database, so parallel requests cannot overrun it).
    for i in 0..110 {
        let (s, r) = marketer.call_json("count_segment", json!({ "definition": phi })).await;
        assert_eq!(s, 200, "count {i}: {r}");
    }
    let burst = (0..30).map(|_| marketer.call_json("count_segment", json!({ "definition": phi })));
    let answers = futures::future::join_all(burst).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 429).map(|(_, r)| r).collect();
    assert_eq!((ok, limited.len()), (10, 20), "{answers:?}");
    let msg = limited[0]["message"].as_str().unwrap();
    assert!(msg.contains("Too many counts") && msg.contains("10 minute"), "{msg}");
    // Another server instance on the same database refuses the same user too: the budget lives in
    // the database, not in a process.
    let other_instance = second_instance(&app).await;
    let marketer_id = user_id(&app, "marketer@clinic.test").await;
    let as_marketer = Actor::user(org, Role::Marketer, marketer_id, domain::ids::SessionId::new(), None);
    let phi_def: domain::segments::SegmentDefinition = serde_json::from_value(phi.clone()).unwrap();
    let refused = service::segments::count(&other_instance, &as_marketer, &phi_def).await;
    assert!(matches!(refused, Err(service::ServiceError::TooMany { .. })), "{refused:?}");
    // Counts that decrypt nothing are not limited; another user has a budget of their own; the
    // saved-segment count of an analyst draws on the same kind of budget.
    let (s, _) = marketer.call_json("count_segment", json!({ "definition": plain })).await;
    assert_eq!(s, 200);
    let (s, _) = admin.call_json("count_segment", json!({ "definition": phi })).await;
    assert_eq!(s, 200);
    for _ in 0..120 {
        assert_eq!(count_saved(&analyst, &saved).await.0, 200);
    }
    let (s, r) = count_saved(&analyst, &saved).await;
    assert_eq!(s, 429, "{r}");
    // Refusals are audited; the budget comes back after the window.
    assert!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'segment.count_throttled'").await >= 21);
    app.advance(10 * 60 + 1);
    let (s, r) = marketer.call_json("count_segment", json!({ "definition": phi })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(count_saved(&analyst, &saved).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn phi_literals_in_segment_definitions_are_sealed_and_legacy_rows_are_sealed_by_maintenance() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    service::contacts::fields::create(svc, &actor, "plan", "Plan", domain::contacts::FieldType::Text, vec![], false)
        .await
        .unwrap();
    let marked = person(svc, &actor, "marker-7f3a@sealed.test", "Mara", "1961-02-03").await;
    person(svc, &actor, "someone@sealed.test", "Sam", "1970-01-01").await;
    let props = [("panel".to_string(), domain::contacts::FieldValue::Text("markerprop".into()))].into_iter().collect();
    service::events::record(svc, &actor, marked, "lab.ready", &Phi::new(props), app.now()).await.unwrap();
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;

    let event = json!({ "node": "condition", "condition": { "kind": "event", "event_type": "lab.ready", "within_days": null,
        "properties": [ { "key": "panel", "test": { "op": "text_equals", "value": "markerprop" } } ] } });
    let def = all(vec![
        email_is("marker-7f3a@sealed.test"),
        born_before("1962-01-01"),
        event,
        cond("plan", json!({ "op": "is_empty" })),
    ]);
    let id = save(&admin, "Marked", &def).await;
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM segment WHERE definition::text LIKE '%marker%' OR definition::text LIKE '%1962-01-01%'").await,
        0,
        "PHI literals are not stored in plaintext"
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM segment WHERE sealed_definition IS NOT NULL").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE details LIKE '%marker%'").await, 0);
    // Those who may read contacts get it back whole; evaluation opens the sealed copy.
    let (_, v) = admin.call("open_segment", &[("id", &id)]).await;
    assert_eq!(v["definition"], def);
    let (_, r) = admin.call("count_saved_segment", &[("id", &id)]).await;
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 1 }), "{r}");
    use futures::StreamExt;
    let uid: Uuid = id.parse().unwrap();
    let members: Vec<_> = service::segments::members(svc, &actor, uid).await.unwrap().collect().await;
    assert_eq!(members.into_iter().map(|b| b.unwrap().len()).sum::<usize>(), 1);
    let (_, v) = analyst.call("open_segment", &[("id", &id)]).await;
    assert!(!v.to_string().contains("marker") && !v.to_string().contains("1962"), "{v}");
    let (_, l) = analyst.call("list_segments", &[]).await;
    assert_eq!(l[0]["conditions"], 4);
    // Which event types exist is not shown to analysts either (it says someone had one).
    let (_, o) = analyst.call("segment_options", &[]).await;
    assert_eq!(o["event_types"], json!([]), "{o}");
    let (_, o) = admin.call("segment_options", &[]).await;
    assert_eq!(o["event_types"], json!(["lab.ready"]), "{o}");
    // A masked definition sent back (e.g. by someone who saw only the masked copy) is refused: it
    // can neither overwrite the real values nor be counted.
    let (s, r) =
        admin.call_json("update_segment", json!({ "id": id, "name": "Marked", "definition": v["definition"] })).await;
    assert_eq!(s, 422, "{r}");
    assert!(r["message"].as_str().unwrap().contains("hidden"), "{r}");
    let (s, _) = admin.call_json("count_segment", json!({ "definition": v["definition"] })).await;
    assert_eq!(s, 422);
    // An update re-seals; the old literal is gone everywhere.
    let def2 = all(vec![email_is("marker-9b1c@sealed.test")]);
    let (s, _) = admin.call_json("update_segment", json!({ "id": id, "name": "Marked", "definition": def2 })).await;
    assert_eq!(s, 200);
    assert_eq!(scalar(&app, "SELECT count(*) FROM segment WHERE definition::text LIKE '%marker%'").await, 0);
    let (_, v) = admin.call("open_segment", &[("id", &id)]).await;
    assert_eq!(v["definition"], def2);

    // Legacy rows (saved before sealing existed) hold the plaintext; analysts never see it, and the
    // maintenance job seals it and strips the literals, once.
    let legacy = Uuid::now_v7();
    let legacy_def = all(vec![email_is("marker-7f3a@sealed.test")]);
    app.sql(&format!(
        "INSERT INTO segment (id, organisation_id, name, definition, created_at, updated_at)
         VALUES ('{legacy}', '{}', 'Legacy', '{}', now(), now())",
        org.0, legacy_def
    ))
    .await;
    assert_eq!(scalar(&app, "SELECT count(*) FROM segment WHERE definition::text LIKE '%marker%'").await, 1);
    let (_, v) = analyst.call("open_segment", &[("id", &legacy.to_string())]).await;
    assert!(!v.to_string().contains("marker"), "{v}");
    let (_, r) = admin.call("count_saved_segment", &[("id", &legacy.to_string())]).await;
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 1 }), "legacy rows still work: {r}");
    // A legacy row of an organisation that has been deleted (its keys destroyed) cannot be sealed:
    // it only loses its literals.
    let gone = service::organisations::create(svc, "Gone").await.unwrap();
    let gone_segment = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO segment (id, organisation_id, name, definition, created_at, updated_at)
         VALUES ('{gone_segment}', '{}', 'Legacy', '{}', now(), now())",
        gone.0, legacy_def
    ))
    .await;
    service::crypto::rotation::delete_organisation(svc, gone).await.unwrap();
    let report = service::maintenance::run(svc).await.unwrap();
    assert_eq!(report.segments_sealed, 2);
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM segment WHERE id = '{gone_segment}' AND sealed_definition IS NULL AND definition::text LIKE '%hidden%'")).await,
        1
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM segment WHERE definition::text LIKE '%marker%'").await, 0);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM segment WHERE sealed_definition IS NULL").await,
        1,
        "only the deleted organisation's"
    );
    let before = scalar(
        &app,
        &format!("SELECT hashtext(encode(sealed_definition, 'hex'))::bigint FROM segment WHERE id = '{legacy}'"),
    )
    .await;
    assert_eq!(service::maintenance::run(svc).await.unwrap().segments_sealed, 0, "idempotent");
    let after = scalar(
        &app,
        &format!("SELECT hashtext(encode(sealed_definition, 'hex'))::bigint FROM segment WHERE id = '{legacy}'"),
    )
    .await;
    assert_eq!(before, after);
    let (_, v) = admin.call("open_segment", &[("id", &legacy.to_string())]).await;
    assert_eq!(v["definition"], legacy_def);
    let (_, r) = admin.call("count_saved_segment", &[("id", &legacy.to_string())]).await;
    assert_eq!(r["matching"], json!({ "shown": "exact", "value": 1 }), "{r}");

    // Data-key rotation re-seals the sealed definitions (none is left under the old key), and they
    // still open afterwards.
    app.sql(&format!(
        "CREATE TABLE old_key AS SELECT substring(sealed_definition FROM 2 FOR 16) AS k FROM segment WHERE id = '{uid}'"
    ))
    .await;
    let under_old_key = format!(
        "SELECT count(*) FROM segment s, old_key o WHERE s.organisation_id = '{}' AND substring(s.sealed_definition FROM 2 FOR 16) = o.k",
        org.0
    );
    assert_eq!(scalar(&app, &under_old_key).await, 2);
    let rotation = service::crypto::rotation::start_data_rotation(svc, &actor).await.unwrap();
    service::crypto::rotation::process_data_rotation(svc, rotation).await.unwrap();
    assert_eq!(scalar(&app, &under_old_key).await, 0, "segment definitions are re-sealed by rotation");
    let (_, v) = admin.call("open_segment", &[("id", &id)]).await;
    assert_eq!(v["definition"], def2, "re-sealed definitions open");
    let (_, v) = admin.call("open_segment", &[("id", &legacy.to_string())]).await;
    assert_eq!(v["definition"], legacy_def);

    // A sealed copy moved to another row does not open there (bound to its row): refused, not
    // evaluated and not crashed on.
    app.sql(&format!(
        "UPDATE segment SET sealed_definition = (SELECT sealed_definition FROM segment WHERE id = '{id}') WHERE id = '{legacy}'"
    ))
    .await;
    let (s, _) = admin.call("open_segment", &[("id", &legacy.to_string())]).await;
    assert_eq!(s, 500);

    // Hostile definitions: oversized, malformed, too many conditions; nothing is stored.
    let n = scalar(&app, "SELECT count(*) FROM segment").await;
    let many = all((0..5000).map(|i| email_is(&format!("x{i}@x.test"))).collect());
    let (s, _) = admin.call_json("create_segment", json!({ "name": "Huge", "definition": many })).await;
    assert!(s == 413 || s == 422 || s == 400, "{s}");
    let long = all(vec![email_is(&"a".repeat(100_000))]);
    let (s, _) = admin.call_json("create_segment", json!({ "name": "Long", "definition": long })).await;
    assert!(s == 413 || s == 422 || s == 400, "{s}");
    let (s, _) = admin
        .call_json("create_segment", json!({ "name": "Bad", "definition": { "version": 1, "root": { "node": "condition", "condition": { "kind": "field", "field": "email", "test": { "op": "hidden" } } } } }))
        .await;
    assert!(s == 400 || s == 422, "{s}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM segment").await, n);
    app.stop().await;
}

fn campaign_settings(name: &str) -> CampaignSettings {
    CampaignSettings {
        name: name.into(),
        purpose: ConsentPurpose::Marketing,
        audience: Audience { segments: vec![], lists: vec![] },
        template_id: None,
        from_name: "Clinic".into(),
        from_email: "news@clinic.test".into(),
        reply_to: None,
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle { per_second: 50, per_domain_per_minute: None },
        auto_pause: AutoPause { after_consecutive_errors: 10 },
    }
}

#[tokio::test]
async fn campaign_reports_hide_small_cells_from_analysts_with_complementary_suppression() {
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    let id = service::campaigns::create(svc, &actor, &campaign_settings("Spring")).await.unwrap();
    app.sql(&format!(
        "UPDATE campaign SET status = 'completed', started_at = now(), finished_at = now() WHERE id = '{id}';
         INSERT INTO campaign_link (campaign_id, position, url) VALUES
           ('{id}', 0, 'https://clinic.example/book'), ('{id}', 1, 'https://clinic.example/faq')"
    ))
    .await;
    // 31 recipients: 30 delivered, 1 bounced. 12 people opened, 3 machine opens; link 0 clicked by
    // 12 people, link 1 by 2 (so 14 clicks by 14 people); 1 unsubscribed.
    for i in 0..31 {
        let contact = person(svc, &actor, &format!("r{i}@report.test"), "Rae", "").await;
        let delivery = Uuid::now_v7();
        let state = if i == 30 { "bounced" } else { "sent" };
        let mut sql = format!(
            "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at, updated_at)
             VALUES ('{delivery}', '{}', '{id}', '{contact}', '{state}', now(), now(), now(), now());",
            org.0
        );
        let mut event = |activity: &str, machine: bool, link: Option<i32>| {
            sql.push_str(&format!(
                "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id, link_position)
                 VALUES ('{}', '{contact}', '{id}', '{activity}', {machine}, now(), '{delivery}', {});",
                org.0,
                link.map(|l| l.to_string()).unwrap_or("NULL".into())
            ))
        };
        if i < 12 {
            event("opened", false, None);
            event("clicked", false, Some(0));
        }
        if (12..14).contains(&i) {
            event("clicked", false, Some(1));
        }
        if i < 3 {
            event("opened", true, None);
        }
        if i == 5 {
            event("unsubscribed", false, None);
        }
        app.sql(&sql).await;
    }
    let (marketer, _) = app.sign_in("marketer@clinic.test", None).await;
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    let exact = |n: u64| json!({ "shown": "exact", "value": n });

    let (s, m) = marketer.call("campaign_report", &[("id", &id.to_string())]).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["delivered"], exact(30));
    assert_eq!(m["bounced"], exact(1));
    assert_eq!(m["unsubscribes"], exact(1));
    assert_eq!(m["machine_opens"], exact(3));
    assert_eq!(m["links"][1]["clicks"], exact(2));
    assert_eq!(m["links"][0]["clicks"], exact(12));

    let (s, a) = analyst.call("campaign_report", &[("id", &id.to_string())]).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["delivered"], exact(30));
    assert_eq!(a["unique_human_opens"], exact(12));
    assert_eq!(a["human_clicks"], exact(14));
    for small in
        [&a["bounced"], &a["unsubscribes"], &a["machine_opens"], &a["links"][1]["clicks"], &a["links"][1]["unique"]]
    {
        assert_eq!(*small, fewer_than_11(), "{a}");
    }
    // Link 1's 2 clicks would be 14 − 12: link 0 is hidden too (complementary suppression).
    assert_eq!(a["links"][0]["clicks"], json!({ "shown": "withheld" }), "{a}");
    assert!(a.get("counts").is_none_or(Value::is_null), "no exact delivery counts for analysts: {a}");

    // The campaign list, page and progress carry no exact small figures for analysts either.
    let (_, p) = analyst.call("campaign_progress", &[("id", &id.to_string())]).await;
    assert!(p["counts"].is_null(), "{p}");
    assert_eq!(p["figures"]["bounced"], fewer_than_11(), "{p}");
    assert_eq!(p["figures"]["sent"], exact(30), "{p}");
    let (_, v) = analyst.call("open_campaign", &[("id", &id.to_string())]).await;
    assert!(v["counts"].is_null(), "{v}");
    let (_, l) = analyst.call("list_campaigns", &[]).await;
    assert!(l[0]["counts"].is_null(), "{l}");
    assert_eq!(l[0]["figures"]["bounced"], fewer_than_11());
    let (_, p) = marketer.call("campaign_progress", &[("id", &id.to_string())]).await;
    assert_eq!(p["counts"]["bounced"], 1, "{p}");
    app.stop().await;
}
