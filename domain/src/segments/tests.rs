use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).single().unwrap()
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn field(key: &str, test: FieldTest) -> Node {
    Node::Condition { condition: Condition::Field { field: key.into(), test } }
}

fn catalogue() -> Vec<SegmentField> {
    field_catalogue(&[
        CustomField {
            id: Uuid::nil(),
            key: "age".into(),
            label: "Age".into(),
            field_type: FieldType::Number,
            options: vec![],
            is_phi: false,
        },
        CustomField {
            id: Uuid::nil(),
            key: "plan".into(),
            label: "Plan".into(),
            field_type: FieldType::OneOf,
            options: vec!["Gold".into(), "Silver".into()],
            is_phi: false,
        },
        CustomField {
            id: Uuid::nil(),
            key: "diagnosis".into(),
            label: "Diagnosis".into(),
            field_type: FieldType::Text,
            options: vec![],
            is_phi: true,
        },
    ])
}

fn def(root: Node) -> SegmentDefinition {
    SegmentDefinition { version: FORMAT_VERSION, root }
}

#[test]
fn field_tests_follow_their_documented_meaning() {
    let today = d(2026, 3, 10);
    let t = |s: &str| Some(FieldValue::Text(s.into()));
    let m = |test: FieldTest, v: Option<FieldValue>| test.matches(v.as_ref(), today);
    assert!(m(FieldTest::TextEquals { value: "ANN".into() }, t("ann")));
    assert!(!m(FieldTest::TextEquals { value: "ann".into() }, t("anne")));
    assert!(m(FieldTest::TextContains { value: "NN".into() }, t("Anne")));
    assert!(m(FieldTest::TextStartsWith { value: "an".into() }, t("Anne")));
    assert!(!m(FieldTest::TextStartsWith { value: "ne".into() }, t("Anne")));
    assert!(m(FieldTest::IsEmpty, None));
    assert!(m(FieldTest::IsEmpty, t("")));
    assert!(!m(FieldTest::IsEmpty, Some(FieldValue::Number(0.0))));
    assert!(m(FieldTest::IsNotEmpty, Some(FieldValue::Boolean(false))));
    assert!(m(FieldTest::Number { cmp: Cmp::Ge, value: 18.0 }, Some(FieldValue::Number(18.0))));
    assert!(!m(FieldTest::Number { cmp: Cmp::Ne, value: 18.0 }, None), "a missing value fails ≠ too");
    assert!(m(FieldTest::DateBefore { date: d(2000, 1, 1) }, Some(FieldValue::Date(d(1999, 12, 31)))));
    assert!(!m(FieldTest::DateAfter { date: d(2000, 1, 1) }, Some(FieldValue::Date(d(2000, 1, 1)))));
    assert!(m(FieldTest::DateWithinLastDays { days: 7 }, Some(FieldValue::Date(d(2026, 3, 3)))));
    assert!(!m(FieldTest::DateWithinLastDays { days: 7 }, Some(FieldValue::Date(d(2026, 3, 2)))));
    assert!(!m(FieldTest::DateWithinLastDays { days: 7 }, Some(FieldValue::Date(d(2026, 3, 11)))), "future");
    assert!(m(FieldTest::BooleanIs { value: false }, Some(FieldValue::Boolean(false))));
    assert!(!m(FieldTest::BooleanIs { value: false }, None));
    assert!(m(FieldTest::OneOf { values: vec!["gold".into(), "x".into()] }, t("Gold")));
}

#[test]
fn birthdays_wrap_the_year_and_handle_29_february() {
    let today = d(2026, 12, 30);
    assert_eq!(days_to_anniversary(d(1980, 12, 30), today), 0);
    assert_eq!(days_to_anniversary(d(1980, 1, 2), today), 3);
    assert_eq!(days_to_anniversary(d(1980, 12, 29), today), 364);
    // 29 February: 28 February in common years, the 29th in leap years.
    assert_eq!(days_to_anniversary(d(2000, 2, 29), d(2027, 2, 27)), 1);
    assert_eq!(days_to_anniversary(d(2000, 2, 29), d(2028, 2, 27)), 2);
    let birthday = FieldTest::AnniversaryWithinNextDays { days: 3 };
    assert!(birthday.matches(Some(&FieldValue::Date(d(1990, 1, 2))), today));
    assert!(!birthday.matches(Some(&FieldValue::Date(d(1990, 1, 3))), today));
}

#[test]
fn groups_nest_and_short_circuit() {
    let tree = Node::And {
        children: vec![
            field("locale", FieldTest::TextEquals { value: "en".into() }),
            Node::Or {
                children: vec![
                    field("first_name", FieldTest::TextStartsWith { value: "a".into() }),
                    Node::Not { child: Box::new(field("age", FieldTest::Number { cmp: Cmp::Lt, value: 18.0 })) },
                ],
            },
        ],
    };
    let mut asked = vec![];
    // locale fails: nothing else is asked.
    assert!(!evaluate_with(&tree, &mut |i, _| {
        asked.push(i);
        false
    }));
    assert_eq!(asked, vec![0]);
    asked.clear();
    // locale and first_name pass: the age test (leaf 2) is skipped.
    assert!(evaluate_with(&tree, &mut |i, _| {
        asked.push(i);
        true
    }));
    assert_eq!(asked, vec![0, 1]);
    // Numbering skips over short-circuited subtrees consistently.
    asked.clear();
    let _ = evaluate_with(&tree, &mut |i, _| {
        asked.push(i);
        i == 0
    });
    assert_eq!(asked, vec![0, 1, 2]);

    let mut facts = ContactFacts::default();
    facts.fields.insert("locale".into(), FieldValue::Text("en".into()));
    facts.fields.insert("age".into(), FieldValue::Number(12.0));
    assert!(!evaluate(&def(tree.clone()), &facts, now()));
    facts.fields.insert("first_name".into(), FieldValue::Text("Alex".into()));
    assert!(evaluate(&def(tree), &facts, now()));
    assert!(evaluate(&def(Node::And { children: vec![] }), &facts, now()), "an empty AND matches everyone");
    assert!(!evaluate(&def(Node::Or { children: vec![] }), &facts, now()), "an empty OR matches no one");
}

#[test]
fn engagement_counts_human_opens_and_windows() {
    let campaign = Uuid::from_u128(7);
    let mut facts = ContactFacts::default();
    facts.engagement.push(EngagementFact {
        campaign,
        activity: Activity::Opened,
        at: now() - chrono::Duration::days(2),
        machine: true,
    });
    let opened = |days| Condition::Engagement { activity: Activity::Opened, campaign: None, within_days: days };
    assert!(!opened(None).matches(&facts, now()), "a privacy-proxy open is not an open");
    assert!(Condition::NeverOpened.matches(&facts, now()));
    facts.engagement.push(EngagementFact {
        campaign,
        activity: Activity::Opened,
        at: now() - chrono::Duration::days(10),
        machine: false,
    });
    assert!(opened(None).matches(&facts, now()));
    assert!(!opened(Some(9)).matches(&facts, now()));
    assert!(opened(Some(10)).matches(&facts, now()));
    assert!(!Condition::NeverOpened.matches(&facts, now()));
    let other =
        Condition::Engagement { activity: Activity::Opened, campaign: Some(Uuid::from_u128(8)), within_days: None };
    assert!(!other.matches(&facts, now()));
}

#[test]
fn events_match_type_window_and_properties() {
    let mut facts = ContactFacts::default();
    facts.events.push(EventFact {
        event_type: "lab_result.ready".into(),
        at: now() - chrono::Duration::days(3),
        properties: [
            ("panel".to_string(), FieldValue::Text("Lipid".into())),
            ("score".into(), FieldValue::Number(7.0)),
        ]
        .into_iter()
        .collect(),
    });
    let ev = |days, props: Vec<PropertyTest>| Condition::Event {
        event_type: "lab_result.ready".into(),
        within_days: days,
        properties: props,
    };
    assert!(ev(None, vec![]).matches(&facts, now()));
    assert!(!ev(Some(2), vec![]).matches(&facts, now()));
    let lipid = PropertyTest { key: "panel".into(), test: FieldTest::TextEquals { value: "lipid".into() } };
    let high = PropertyTest { key: "score".into(), test: FieldTest::Number { cmp: Cmp::Gt, value: 5.0 } };
    let low = PropertyTest { key: "score".into(), test: FieldTest::Number { cmp: Cmp::Lt, value: 5.0 } };
    assert!(ev(Some(3), vec![lipid.clone(), high]).matches(&facts, now()));
    assert!(!ev(None, vec![lipid, low]).matches(&facts, now()));
    assert!(needs_phi(&ev(None, vec![PropertyTest { key: "x".into(), test: FieldTest::IsEmpty }]), &catalogue()));
    assert!(!needs_phi(&ev(None, vec![]), &catalogue()));
}

#[test]
fn invalid_trees_are_refused_with_plain_messages() {
    let fields = catalogue();
    let list = Uuid::from_u128(1);
    let msg = |root: Node| validate(&def(root), &fields, &[list]).unwrap_err().to_string();
    assert!(msg(field("age", FieldTest::TextContains { value: "1".into() })).contains("“Age” is a number field"));
    assert!(msg(field("date_of_birth", FieldTest::Number { cmp: Cmp::Eq, value: 1.0 })).contains("date field"));
    assert!(msg(field("ssn", FieldTest::IsEmpty)).contains("does not have"));
    assert!(msg(field("plan", FieldTest::OneOf { values: vec!["Platinum".into()] })).contains("not one of"));
    assert!(msg(field("first_name", FieldTest::TextContains { value: " ".into() })).contains("needs a value"));
    assert!(msg(field("first_name", FieldTest::TextEquals { value: "x".repeat(201) })).contains("at most 200"));
    assert!(msg(field("age", FieldTest::Number { cmp: Cmp::Eq, value: f64::NAN })).contains("not valid"));
    assert!(msg(field("date_of_birth", FieldTest::AnniversaryWithinNextDays { days: 99_999 })).contains("days"));
    assert!(msg(Node::Condition { condition: Condition::InList { list: Uuid::from_u128(2) } }).contains("list"));
    let bad_event = Condition::Event { event_type: "Drop TABLE".into(), within_days: None, properties: vec![] };
    assert!(msg(Node::Condition { condition: bad_event }).contains("event types"));
    // The second condition is the one named.
    let two = Node::And {
        children: vec![field("age", FieldTest::IsEmpty), field("age", FieldTest::BooleanIs { value: true })],
    };
    assert!(msg(two).starts_with("condition 2:"));
    // Too deep.
    let mut deep = field("age", FieldTest::IsEmpty);
    for _ in 0..MAX_DEPTH + 1 {
        deep = Node::And { children: vec![deep] };
    }
    assert!(msg(deep).contains("nested"));
    let many = Node::Or { children: (0..MAX_CONDITIONS + 1).map(|_| field("age", FieldTest::IsEmpty)).collect() };
    assert!(msg(many).contains("at most 50"));
    let wrong_version = SegmentDefinition { version: 99, root: Node::And { children: vec![] } };
    assert!(validate(&wrong_version, &fields, &[]).unwrap_err().to_string().contains("version"));
    // Messages never echo values.
    let secret = field("age", FieldTest::TextEquals { value: "SECRET-VALUE".into() });
    assert!(!msg(secret).contains("SECRET"));
}

#[test]
fn json_form_is_stable() {
    let tree = def(Node::And {
        children: vec![
            field("plan", FieldTest::OneOf { values: vec!["Gold".into()] }),
            Node::Not { child: Box::new(Node::Condition { condition: Condition::NeverOpened }) },
            Node::Condition {
                condition: Condition::Engagement { activity: Activity::Clicked, campaign: None, within_days: Some(30) },
            },
        ],
    });
    let json = serde_json::to_string(&tree).unwrap();
    assert_eq!(
        json,
        r#"{"version":1,"root":{"node":"and","children":[{"node":"condition","condition":{"kind":"field","field":"plan","test":{"op":"one_of","values":["Gold"]}}},{"node":"not","child":{"node":"condition","condition":{"kind":"never_opened"}}},{"node":"condition","condition":{"kind":"engagement","activity":"clicked","campaign":null,"within_days":30}}]}}"#
    );
    assert_eq!(serde_json::from_str::<SegmentDefinition>(&json).unwrap(), tree);
    assert!(validate(&tree, &catalogue(), &[]).is_ok());
}

#[test]
fn phi_literals_are_masked_and_a_masked_tree_is_refused() {
    let fields = catalogue();
    let event = Condition::Event {
        event_type: "lab.ready".into(),
        within_days: Some(30),
        properties: vec![
            PropertyTest { key: "panel".into(), test: FieldTest::TextEquals { value: "A1C".into() } },
            PropertyTest { key: "score".into(), test: FieldTest::IsNotEmpty },
        ],
    };
    let tree = def(Node::And {
        children: vec![
            field("email", FieldTest::TextEquals { value: "jane@x.org".into() }),
            Node::Not { child: Box::new(field("date_of_birth", FieldTest::DateBefore { date: d(1980, 1, 1) })) },
            field("date_of_birth", FieldTest::AnniversaryWithinNextDays { days: 7 }),
            field("diagnosis", FieldTest::OneOf { values: vec!["asthma".into()] }),
            field("age", FieldTest::Number { cmp: Cmp::Gt, value: 40.0 }),
            field("unknown_field", FieldTest::TextContains { value: "x".into() }),
            field("first_name", FieldTest::IsEmpty),
            Node::Condition { condition: event },
        ],
    });
    let masked = mask_phi(&tree, &fields);
    let json = serde_json::to_string(&masked).unwrap();
    for literal in ["jane@x.org", "1980-01-01", "asthma", "A1C", "\"x\""] {
        assert!(!json.contains(literal), "{literal} in {json}");
    }
    assert!(json.contains(r#""test":{"op":"hidden","test":"is"}"#), "{json}");
    assert!(json.contains(r#"{"op":"hidden","test":"is before"}"#), "{json}");
    assert!(json.contains(r#""days":7"#), "windows stay");
    assert!(json.contains(r#""field":"age","test":{"op":"number","cmp":"gt","value":40.0}"#), "non-PHI stays: {json}");
    assert_eq!(count_conditions(&masked.root), count_conditions(&tree.root), "the shape stays");
    assert_eq!(mask_phi(&masked, &fields), masked, "idempotent");
    assert!(has_hidden_values(&masked) && !has_hidden_values(&tree));
    let err = validate(&masked, &fields, &[]).unwrap_err().to_string();
    assert!(err.starts_with("condition 1:") && err.contains("hidden"), "{err}");
    let mut facts = ContactFacts::default();
    facts.fields.insert("email".into(), FieldValue::Text("jane@x.org".into()));
    assert!(!FieldTest::Hidden { test: "is".into() }.matches(facts.fields.get("email"), now().date_naive()));
    assert_eq!(
        FieldTest::Number { cmp: Cmp::Le, value: 3.0 }.masked(),
        FieldTest::Hidden { test: "≤".into() },
        "numbers keep their comparison"
    );
}
