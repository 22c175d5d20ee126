//! Segments against real PostgreSQL: a property test that the SQL prefilter + decrypt-and-evaluate
//! path agrees with the pure evaluator on random trees over random contacts; invalid trees refused
//! in plain words; analysts never build, count ad hoc or see members; other organisations' ids
//! answer 404. What analysts learn from counts is tested in `disclosure.rs`.

use crate::harness::*;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::contacts::{ConsentPurpose, ContactInput, FieldType, FieldValue};
use domain::segments::*;
use domain::{Phi, Role};
use serde_json::json;
use service::Actor;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// A small deterministic generator (SplitMix64): reproducible failures, no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const FIRST: &[&str] = &["Ann", "anne", "Émile", "Bob", "ANNA", "Zoë", ""];
const LAST: &[&str] = &["Lee", "Ng", "Lee-Smith", "O'Brien"];
const LOCALES: &[&str] = &["en", "es", "fr-CA"];
const ZONES: &[&str] = &["America/Chicago", "Europe/Paris"];
const PLANS: &[&str] = &["Gold", "Silver"];
const DIAG: &[&str] = &["asthma", "Asthma, mild", "diabetes type 2", "none"];
const TEXT_NEEDLES: &[&str] = &["ann", "AN", "é", "lee", "e", "asthma", "gold", "en", "america", "zz", ""];
const EVENT_TYPES: &[&str] = &["lab.ready", "visit"];

fn date(rng: &mut Rng, today: NaiveDate) -> NaiveDate {
    match rng.below(4) {
        0 => NaiveDate::from_ymd_opt(2000, 2, 29).unwrap(),
        1 => today - chrono::Days::new(rng.below(40) as u64),
        2 => today + chrono::Days::new(rng.below(40) as u64),
        _ => NaiveDate::from_ymd_opt(1940 + rng.below(80) as i32, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32)
            .unwrap(),
    }
}

fn field_test(rng: &mut Rng, t: FieldType, today: NaiveDate) -> FieldTest {
    let text = |rng: &mut Rng| rng.pick(TEXT_NEEDLES).to_string();
    match (t, rng.below(6)) {
        (_, 0) => FieldTest::IsEmpty,
        (_, 1) => FieldTest::IsNotEmpty,
        (FieldType::Text, 2) => {
            FieldTest::TextEquals { value: rng.pick(&["ann", "Anne", "émile", "", "asthma"]).to_string() }
        }
        (FieldType::Text, 3) => FieldTest::TextStartsWith { value: text(rng) }.nonempty(),
        (FieldType::Text, 4) => FieldTest::OneOf { values: vec![text(rng), "anne".into(), "LEE".into()] },
        (FieldType::Text, _) => FieldTest::TextContains { value: text(rng) }.nonempty(),
        (FieldType::OneOf, 2 | 3) => FieldTest::OneOf { values: vec![rng.pick(PLANS).to_string()] },
        (FieldType::OneOf, _) => FieldTest::TextEquals { value: "gold".into() },
        (FieldType::Number, _) => FieldTest::Number { cmp: *rng.pick(&Cmp::ALL), value: rng.below(6) as f64 * 10.0 },
        (FieldType::Boolean, _) => FieldTest::BooleanIs { value: rng.chance(50) },
        (FieldType::Date, 2) => FieldTest::DateBefore { date: date(rng, today) },
        (FieldType::Date, 3) => FieldTest::DateAfter { date: date(rng, today) },
        (FieldType::Date, 4) => FieldTest::DateWithinLastDays { days: rng.below(40) as u32 },
        (FieldType::Date, _) => FieldTest::AnniversaryWithinNextDays { days: rng.below(60) as u32 },
    }
}

trait NonEmpty {
    fn nonempty(self) -> Self;
}
impl NonEmpty for FieldTest {
    fn nonempty(self) -> Self {
        match self {
            FieldTest::TextContains { value } if value.is_empty() => FieldTest::TextContains { value: "a".into() },
            FieldTest::TextStartsWith { value } if value.is_empty() => FieldTest::TextStartsWith { value: "a".into() },
            other => other,
        }
    }
}

struct World {
    fields: Vec<SegmentField>,
    lists: Vec<Uuid>,
    campaigns: Vec<Uuid>,
    today: NaiveDate,
}

fn condition(rng: &mut Rng, w: &World) -> Condition {
    match rng.below(10) {
        0..=4 => {
            let f = rng.pick(&w.fields).clone();
            Condition::Field { test: field_test(rng, f.field_type, w.today), field: f.key }
        }
        5 => Condition::InList { list: *rng.pick(&w.lists) },
        6 => Condition::Consent { purpose: *rng.pick(&ConsentPurpose::ALL) },
        7 => Condition::Engagement {
            activity: *rng.pick(&Activity::ALL),
            campaign: rng.chance(50).then(|| *rng.pick(&w.campaigns)),
            within_days: rng.chance(50).then(|| rng.below(40) as u32),
        },
        8 => Condition::NeverOpened,
        _ => Condition::Event {
            event_type: rng.pick(EVENT_TYPES).to_string(),
            within_days: rng.chance(50).then(|| rng.below(40) as u32),
            properties: (0..rng.below(3))
                .map(|_| {
                    if rng.chance(50) {
                        PropertyTest { key: "panel".into(), test: field_test(rng, FieldType::Text, w.today) }
                    } else {
                        PropertyTest { key: "score".into(), test: field_test(rng, FieldType::Number, w.today) }
                    }
                })
                .collect(),
        },
    }
}

fn tree(rng: &mut Rng, w: &World, depth: usize) -> Node {
    if depth == 0 || rng.chance(35) {
        let leaf = Node::Condition { condition: condition(rng, w) };
        return if rng.chance(20) { Node::Not { child: Box::new(leaf) } } else { leaf };
    }
    let children = (0..rng.below(4)).map(|_| tree(rng, w, depth - 1)).collect();
    let group = if rng.chance(50) { Node::And { children } } else { Node::Or { children } };
    if rng.chance(15) { Node::Not { child: Box::new(group) } } else { group }
}

#[tokio::test]
async fn sql_prefilter_and_decrypted_evaluation_agree_with_the_pure_evaluator_on_random_trees() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    let now: DateTime<Utc> = app.now();
    let today = now.date_naive();
    let custom = [
        ("age", FieldType::Number, vec![], false),
        ("plan", FieldType::OneOf, PLANS.iter().map(|s| s.to_string()).collect(), false),
        ("vip", FieldType::Boolean, vec![], false),
        ("joined", FieldType::Date, vec![], false),
        ("nickname", FieldType::Text, vec![], false),
        ("diagnosis", FieldType::Text, vec![], true),
        ("risk", FieldType::Number, vec![], true),
        ("last_visit", FieldType::Date, vec![], true),
    ];
    for (key, t, options, phi) in &custom {
        service::contacts::fields::create(svc, &actor, key, key, *t, options.clone(), *phi).await.unwrap();
    }
    let catalogue = service::contacts::fields::catalogue(svc, svc.db(), org).await.unwrap();
    let fields = field_catalogue(&catalogue);
    let mut lists = vec![];
    for name in ["Newsletter", "Diabetes programme"] {
        lists.push(
            service::contacts::lists::create(svc, &actor, name, "", false, ConsentPurpose::Marketing).await.unwrap(),
        );
    }
    let campaigns = vec![Uuid::now_v7(), Uuid::now_v7()];
    // Received messages are delivery rows, which belong to a campaign.
    for (n, c) in campaigns.iter().enumerate() {
        app.sql(&format!(
            "INSERT INTO campaign (id, organisation_id, name, status, settings, created_at, updated_at)
             VALUES ('{c}', '{}', 'Campaign {n}', 'completed', '{{}}', now(), now())",
            org.0
        ))
        .await;
    }
    let mut rng = Rng(0x5EED_2026);
    let mut people: Vec<(Uuid, ContactFacts)> = vec![];
    for i in 0..80 {
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        raw.insert("email".into(), format!("p{i}@example.org"));
        if rng.chance(85) {
            raw.insert("first_name".into(), rng.pick(FIRST).to_string());
        }
        if rng.chance(70) {
            raw.insert("last_name".into(), rng.pick(LAST).to_string());
        }
        if rng.chance(80) {
            raw.insert("date_of_birth".into(), date(&mut rng, today).format("%Y-%m-%d").to_string());
        }
        if rng.chance(70) {
            raw.insert("locale".into(), rng.pick(LOCALES).to_string());
        }
        if rng.chance(60) {
            raw.insert("time_zone".into(), rng.pick(ZONES).to_string());
        }
        if rng.chance(70) {
            raw.insert("age".into(), (rng.below(7) * 10).to_string());
        }
        if rng.chance(70) {
            raw.insert("plan".into(), rng.pick(PLANS).to_string());
        }
        if rng.chance(70) {
            raw.insert("vip".into(), if rng.chance(50) { "yes" } else { "no" }.into());
        }
        if rng.chance(70) {
            raw.insert("joined".into(), date(&mut rng, today).format("%Y-%m-%d").to_string());
        }
        if rng.chance(50) {
            raw.insert("nickname".into(), rng.pick(FIRST).to_string());
        }
        if rng.chance(70) {
            raw.insert("diagnosis".into(), rng.pick(DIAG).to_string());
        }
        if rng.chance(60) {
            raw.insert("risk".into(), rng.below(6).to_string());
        }
        if rng.chance(60) {
            raw.insert("last_visit".into(), date(&mut rng, today).format("%Y-%m-%d").to_string());
        }
        let input = ContactInput { fields: raw.iter().map(|(k, v)| (k.clone(), Phi::new(v.clone()))).collect() };
        let id = service::contacts::create(svc, &actor, input).await.unwrap();
        // The truth, built the way the pure evaluator sees a contact (read back, so normalisation
        // — e.g. of locale case — is what is stored).
        let detail = service::contacts::detail(svc, &actor, id).await.unwrap();
        let mut facts = ContactFacts::default();
        for (k, v) in detail.fields.fields.iter() {
            let v = v.expose();
            if v.is_empty() {
                continue;
            }
            let t = fields.iter().find(|f| &f.key == k).unwrap().field_type;
            let value = match t {
                FieldType::Number => FieldValue::Number(v.parse().unwrap()),
                FieldType::Date => FieldValue::Date(NaiveDate::parse_from_str(v, "%Y-%m-%d").unwrap()),
                FieldType::Boolean => FieldValue::Boolean(v == "yes"),
                _ => FieldValue::Text(v.clone()),
            };
            facts.fields.insert(k.clone(), value);
        }
        for l in &lists {
            if rng.chance(40) {
                service::contacts::lists::add(svc, &actor, *l, &[id]).await.unwrap();
                facts.lists.insert(*l);
            }
        }
        for p in ConsentPurpose::ALL {
            if rng.chance(50) {
                let granted = rng.chance(70);
                service::contacts::consent::record(svc, &actor, id, p, granted, None).await.unwrap();
                if granted {
                    facts.consents.insert(p);
                } else if p == ConsentPurpose::Marketing {
                    // Issue 19: a member whose consent for the list's purpose (every list here is
                    // for marketing) is withdrawn is unsubscribed, so not "in the list".
                    facts.lists.clear();
                }
            }
        }
        // Campaigns this contact has a delivery row for (one per campaign and contact).
        let mut delivered: Vec<Uuid> = vec![];
        for _ in 0..rng.below(4) {
            let e = EngagementFact {
                campaign: *rng.pick(&campaigns),
                activity: *rng.pick(&Activity::ALL),
                at: now - Duration::hours(rng.below(40 * 24) as i64),
                machine: rng.chance(30),
            };
            if e.activity == Activity::Received {
                // A received message is a 'sent' delivery accepted at `at`; deliveries in any other
                // state were not received and must not count.
                if delivered.contains(&e.campaign) {
                    continue;
                }
                delivered.push(e.campaign);
                let state =
                    if rng.chance(25) { *rng.pick(&["failed", "bounced", "queued", "deferred"]) } else { "sent" };
                app.sql(&format!(
                    "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at, updated_at)
                     VALUES ('{}', '{}', '{}', '{id}', '{state}', '{at}', {acc}, {acc}, '{at}')",
                    Uuid::now_v7(),
                    org.0,
                    e.campaign,
                    at = e.at.to_rfc3339(),
                    acc = if state == "sent" { format!("'{}'", e.at.to_rfc3339()) } else { "NULL".into() },
                ))
                .await;
                if state == "sent" {
                    facts.engagement.push(e);
                }
                continue;
            }
            app.sql(&format!(
                "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at)
                 VALUES ('{}', '{id}', '{}', '{}', {}, '{}')",
                org.0,
                e.campaign,
                e.activity.as_str(),
                e.machine,
                e.at.to_rfc3339()
            ))
            .await;
            facts.engagement.push(e);
        }
        for _ in 0..rng.below(3) {
            let mut props = BTreeMap::new();
            if rng.chance(70) {
                props.insert(
                    "panel".to_string(),
                    FieldValue::Text(rng.pick(&["Lipid", "A1C", "lipid panel"]).to_string()),
                );
            }
            if rng.chance(70) {
                props.insert("score".to_string(), FieldValue::Number(rng.below(6) as f64 * 10.0));
            }
            let at = now - Duration::hours(rng.below(40 * 24) as i64);
            let event_type = rng.pick(EVENT_TYPES).to_string();
            service::events::record(svc, &actor, id, &event_type, &Phi::new(props.clone()), at).await.unwrap();
            facts.events.push(EventFact { event_type, at, properties: props });
        }
        people.push((id, facts));
    }

    let world = World { fields: fields.clone(), lists: lists.clone(), campaigns, today };
    let (mut exact_trees, mut phi_trees, mut nonempty) = (0, 0, 0);
    for case in 0..250 {
        let root = tree(&mut rng, &world, 4);
        let def = SegmentDefinition { version: FORMAT_VERSION, root: root.clone() };
        if validate(&def, &fields, &lists).is_err() {
            continue; // e.g. nested too deep after NOT wrapping: not what this test is about
        }
        let expected: BTreeSet<Uuid> =
            people.iter().filter(|(_, f)| evaluate(&def, f, now)).map(|(id, _)| *id).collect();
        let mut got = BTreeSet::new();
        let stats = service::segments::eval::scan(svc, org, &root, &fields, catalogue.clone(), now, |page| {
            got.extend(page);
            true
        })
        .await
        .unwrap();
        let (count, _) =
            service::segments::eval::count(svc, org, &root, &fields, catalogue.clone(), now).await.unwrap();
        let plan = service::segments::sql::compile(&root, &fields, org.0, now);
        assert_eq!(got, expected, "case {case}: scan disagrees for {}", serde_json::to_string(&def).unwrap());
        assert_eq!(count as usize, expected.len(), "case {case}: count disagrees");
        assert_eq!(stats.matched as usize, expected.len());
        if plan.exact {
            exact_trees += 1;
            assert_eq!(stats.decrypted, 0, "a tree without PHI decrypts nothing");
        } else {
            phi_trees += 1;
        }
        if !expected.is_empty() && expected.len() < people.len() {
            nonempty += 1;
        }
    }
    assert!(exact_trees > 30 && phi_trees > 30 && nonempty > 60, "{exact_trees} {phi_trees} {nonempty}");

    // Every single condition on its own, plain and negated (each leaf's SQL against its meaning).
    for f in &fields {
        for _ in 0..12 {
            let test = field_test(&mut rng, f.field_type, today);
            for root in [
                Node::Condition { condition: Condition::Field { field: f.key.clone(), test: test.clone() } },
                Node::Not {
                    child: Box::new(Node::Condition {
                        condition: Condition::Field { field: f.key.clone(), test: test.clone() },
                    }),
                },
            ] {
                let def = SegmentDefinition { version: FORMAT_VERSION, root: root.clone() };
                let expected = people.iter().filter(|(_, p)| evaluate(&def, p, now)).count() as u64;
                let (n, _) =
                    service::segments::eval::count(svc, org, &root, &fields, catalogue.clone(), now).await.unwrap();
                assert_eq!(n, expected, "{}", serde_json::to_string(&def).unwrap());
            }
        }
    }
    app.stop().await;
}

fn field_cond(field: &str, test: serde_json::Value) -> serde_json::Value {
    json!({ "version": 1, "root": { "node": "and", "children": [
        { "node": "condition", "condition": { "kind": "field", "field": field, "test": test } } ] } })
}

#[tokio::test]
async fn segments_are_validated_role_checked_audited_and_isolated() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    app.org_with_user("Other", "other@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    let (other, _) = app.sign_in("other@other.test", None).await;
    let svc = &app.services;
    let actor = Actor::system(org, "test");
    service::contacts::fields::create(svc, &actor, "age", "Age", FieldType::Number, vec![], false).await.unwrap();
    for (i, name) in ["Ann", "Anna", "Bob"].iter().enumerate() {
        let fields = [("email", format!("{}{i}@example.org", name.to_lowercase())), ("first_name", name.to_string())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Phi::new(v)))
            .collect();
        service::contacts::create(svc, &actor, ContactInput { fields }).await.unwrap();
    }

    // Invalid trees: clear messages, nothing saved.
    let bad = [
        (field_cond("age", json!({ "op": "text_contains", "value": "4" })), "“Age” is a number field"),
        (field_cond("ssn", json!({ "op": "is_empty" })), "does not have"),
        (
            json!({ "version": 1, "root": { "node": "and", "children": [
            { "node": "condition", "condition": { "kind": "in_list", "list": Uuid::now_v7() } } ] } }),
            "list that does not exist",
        ),
        (json!({ "version": 7, "root": { "node": "and", "children": [] } }), "version"),
    ];
    for (def, expect) in &bad {
        let (s, r) = admin.call_json("count_segment", json!({ "definition": def })).await;
        assert_eq!(s, 422, "{r}");
        assert!(r["message"].as_str().unwrap_or_default().contains(expect), "{expect}: {r}");
        let (s, _) = admin.call_json("create_segment", json!({ "name": "Bad", "definition": def })).await;
        assert_eq!(s, 422);
    }
    let mut deep = json!({ "node": "condition", "condition": { "kind": "never_opened" } });
    for _ in 0..10 {
        deep = json!({ "node": "or", "children": [deep] });
    }
    let (s, r) = admin.call_json("count_segment", json!({ "definition": { "version": 1, "root": deep } })).await;
    assert_eq!(s, 422);
    assert!(r["message"].as_str().unwrap().contains("nested"), "{r}");
    // Malformed JSON bodies are refused without echoing them.
    let (s, r) =
        admin.call_json("count_segment", json!({ "definition": { "version": 1, "root": { "node": "xor" } } })).await;
    assert!(s == 400 || s == 422, "{s} {r}");
    assert_eq!(scalar_i64(&app, "SELECT count(*) FROM segment").await, 0);

    // A PHI condition: the admin counts it exactly; an analyst may count saved segments only (see
    // disclosure.rs for what they are shown); members only for the admin.
    let ann = field_cond("first_name", json!({ "op": "text_starts_with", "value": "ann" }));
    let (s, c) = admin.call_json("count_segment", json!({ "definition": ann })).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["matching"], json!({ "shown": "exact", "value": 2 }));
    assert_eq!(c["total"], json!({ "shown": "exact", "value": 3 }));
    assert_eq!(c["uses_phi"], true);
    let (s, c) = analyst.call_json("count_segment", json!({ "definition": ann })).await;
    assert_eq!(s, 403, "{c}");
    let everyone = json!({ "version": 1, "root": { "node": "and", "children": [] } });
    let (s, _) = analyst.call_json("count_segment", json!({ "definition": everyone })).await;
    assert_eq!(s, 403, "no ad-hoc counts for analysts, with or without PHI conditions");
    let (s, _) = analyst.call_json("preview_segment", json!({ "definition": ann })).await;
    assert_eq!(s, 403, "analysts never see member rows");
    let (s, rows) = admin.call_json("preview_segment", json!({ "definition": ann })).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Ann", "Anna"]);
    assert_eq!(scalar_i64(&app, "SELECT count(*) FROM audit_event WHERE action = 'segment.previewed'").await, 1);
    assert_eq!(scalar_i64(&app, "SELECT count(*) FROM audit_event WHERE action = 'segment.counted_phi'").await, 1);

    // Save, list, open, duplicate, delete; the analyst cannot change anything.
    let (s, id) = admin.call_json("create_segment", json!({ "name": "Anns", "definition": ann })).await;
    assert_eq!(s, 200, "{id}");
    let id = id.as_str().unwrap().to_string();
    let (s, _) = admin.call_json("create_segment", json!({ "name": "anns", "definition": ann })).await;
    assert_eq!(s, 409, "names are unique ignoring case");
    let (s, list) = analyst.call("list_segments", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "Anns");
    assert_eq!(list[0]["uses_phi"], true);
    let (s, _) = analyst.call_json("create_segment", json!({ "name": "Mine", "definition": ann })).await;
    assert_eq!(s, 403);
    let (s, _) = analyst.call("delete_segment", &[("id", &id)]).await;
    assert_eq!(s, 403);
    let (s, copy) = admin.call("duplicate_segment", &[("id", &id)]).await;
    assert_eq!(s, 200);
    let (_, v) = admin.call("open_segment", &[("id", copy.as_str().unwrap())]).await;
    assert_eq!(v["name"], "Copy of Anns");
    assert_eq!(v["definition"], ann);

    // Another organisation: every id answers 404.
    for (endpoint, args) in [
        ("open_segment", vec![("id", id.as_str())]),
        ("duplicate_segment", vec![("id", id.as_str())]),
        ("delete_segment", vec![("id", id.as_str())]),
    ] {
        let (s, _) = other.call(endpoint, &args).await;
        assert_eq!(s, 404, "{endpoint}");
    }
    let (s, _) =
        other.call_json("update_segment", json!({ "id": id, "name": "Mine now", "definition": everyone })).await;
    assert_eq!(s, 404);
    let (_, c) = other.call_json("count_segment", json!({ "definition": everyone })).await;
    assert_eq!(c["matching"], json!({ "shown": "exact", "value": 0 }), "counts never cross organisations");

    // Save as a static list: a snapshot of today's members.
    let (s, list_id) =
        admin.call_json("segment_to_list", json!({ "list_name": "Anns today", "definition": ann })).await;
    assert_eq!(s, 200, "{list_id}");
    let members = scalar_i64(
        &app,
        &format!(
            "SELECT count(*) FROM list_member WHERE list_id = '{}' AND status = 'subscribed'",
            list_id.as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(members, 2);

    let (s, _) = admin.call("delete_segment", &[("id", &id)]).await;
    assert_eq!(s, 200);
    let (s, _) = admin.call("open_segment", &[("id", &id)]).await;
    assert_eq!(s, 404);

    // The member stream for the sending pipeline.
    let (_, copy_view) = admin.call("open_segment", &[("id", copy.as_str().unwrap())]).await;
    let copy_id: Uuid = copy_view["id"].as_str().unwrap().parse().unwrap();
    use futures::StreamExt;
    let stream = service::segments::members(svc, &actor, copy_id).await.unwrap();
    let batches: Vec<_> = stream.collect().await;
    let ids: usize = batches.into_iter().map(|b| b.unwrap().len()).sum();
    assert_eq!(ids, 2);
    app.stop().await;
}

async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    crate::contacts::scalar(app, sql).await
}
