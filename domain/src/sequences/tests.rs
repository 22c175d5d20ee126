use super::*;
use chrono::{FixedOffset, TimeZone};
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A fixed-offset zone (no daylight saving) for tests.
struct Fixed(FixedOffset);
impl LocalZone for Fixed {
    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.0).naive_local()
    }
    fn local_to_utc(&self, t: NaiveDateTime) -> DateTime<Utc> {
        self.0.from_local_datetime(&t).single().unwrap().with_timezone(&Utc)
    }
}

fn send(id: &str, next: Option<&str>) -> Step {
    Step {
        id: id.into(),
        name: String::new(),
        kind: StepKind::SendEmail {
            template: Some(Uuid::from_u128(7)),
            template_version: None,
            purpose: ConsentPurpose::Marketing,
            policy: DeliveryPolicy::TlsRequired,
            next: next.map(Into::into),
        },
    }
}

fn wait(id: &str, minutes: u32, next: Option<&str>) -> Step {
    Step {
        id: id.into(),
        name: String::new(),
        kind: StepKind::Wait { wait: WaitSpec::Duration { minutes }, next: next.map(Into::into) },
    }
}

/// The appointment-reminder sequence of the issue.
fn reminders() -> SequenceDefinition {
    SequenceDefinition {
        version: FORMAT_VERSION,
        trigger: Trigger::Event {
            event_type: "appointment.booked".into(),
            properties: vec![PropertyTest {
                key: "department".into(),
                test: FieldTest::TextEquals { value: "cardiology".into() },
            }],
        },
        entry: EntryRule::EveryTime,
        correlation_key: Some("appointment_id".into()),
        goal: Some(EventMatch { event_type: "appointment.completed".into(), correlated: true }),
        exit_on: vec![EventMatch { event_type: "appointment.cancelled".into(), correlated: true }],
        quiet_hours: None,
        frequency_cap: None,
        start: "confirm".into(),
        steps: vec![
            send("confirm", Some("two_days")),
            Step {
                id: "two_days".into(),
                name: "2 days before".into(),
                kind: StepKind::Wait {
                    wait: WaitSpec::UntilEventTime { property: "appointment_at".into(), offset_minutes: -2 * 24 * 60 },
                    next: Some("remind".into()),
                },
            },
            send("remind", Some("opened")),
            Step {
                id: "opened".into(),
                name: String::new(),
                kind: StepKind::WaitFor {
                    event: Awaited::Opened { step: "remind".into() },
                    timeout_minutes: 24 * 60,
                    on_event: None,
                    on_timeout: Some("nudge".into()),
                },
            },
            send("nudge", None),
        ],
    }
}

#[test]
fn the_reminder_sequence_is_valid_and_round_trips_as_json() {
    let d = reminders();
    validate(&d).unwrap();
    let json = serde_json::to_string(&d).unwrap();
    let back: SequenceDefinition = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    assert_eq!(
        d.watched_event_types().into_iter().collect::<Vec<_>>(),
        vec!["appointment.cancelled".to_string(), "appointment.completed".to_string()]
    );
}

#[test]
fn validation_refuses_broken_graphs_naming_the_step() {
    type Edit = Box<dyn Fn(&mut SequenceDefinition)>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (Box::new(|d| d.steps.clear()), "steps", "at least one"),
        (Box::new(|d| d.start = "nowhere".into()), "start", "names no step"),
        (Box::new(|d| d.steps[1].id = "confirm".into()), "step confirm", "share"),
        (Box::new(|d| d.steps[0].id = "Bad Id".into()), "steps", "invalid id"),
        (
            Box::new(|d| {
                if let StepKind::SendEmail { next, .. } = &mut d.steps[0].kind {
                    *next = Some("ghost".into());
                }
            }),
            "step confirm",
            "does not exist",
        ),
        (
            Box::new(|d| {
                if let StepKind::SendEmail { next, .. } = &mut d.steps[4].kind {
                    *next = Some("two_days".into());
                }
            }),
            "step two_days",
            "loop",
        ),
        (
            Box::new(|d| {
                if let StepKind::SendEmail { next, .. } = &mut d.steps[0].kind {
                    *next = None;
                }
            }),
            "step two_days",
            "cannot be reached",
        ),
        (
            Box::new(|d| {
                if let StepKind::SendEmail { template, .. } = &mut d.steps[2].kind {
                    *template = None;
                }
            }),
            "step remind",
            "template",
        ),
        (
            Box::new(|d| {
                if let StepKind::WaitFor { timeout_minutes, .. } = &mut d.steps[3].kind {
                    *timeout_minutes = 0;
                }
            }),
            "step opened",
            "timeout",
        ),
        (
            Box::new(|d| {
                if let StepKind::WaitFor { event, .. } = &mut d.steps[3].kind {
                    *event = Awaited::Clicked { step: "two_days".into() };
                }
            }),
            "step opened",
            "email step",
        ),
        (Box::new(|d| d.correlation_key = None), "goal", "correlation key"),
        (Box::new(|d| d.correlation_key = Some("a b".into())), "correlation_key", "property name"),
        (
            Box::new(|d| d.trigger = Trigger::Event { event_type: "Appointment Booked".into(), properties: vec![] }),
            "trigger",
            "lower-case",
        ),
        (
            Box::new(|d| {
                d.trigger = Trigger::Manual;
            }),
            "goal",
            "only an event trigger",
        ),
        (Box::new(|d| d.quiet_hours = Some(QuietHours { from_hour: 21, to_hour: 21 })), "quiet_hours", "different"),
        (Box::new(|d| d.frequency_cap = Some(FrequencyCap { max: 0, days: 7, wait: false })), "frequency_cap", "1–100"),
        (Box::new(|d| d.steps[1].name = "x".repeat(MAX_NAME + 1)), "step two_days", "names"),
        (
            Box::new(|d| {
                if let Trigger::Event { properties, .. } = &mut d.trigger {
                    properties[0].test = properties[0].test.masked();
                }
            }),
            "trigger condition 1",
            "hidden",
        ),
    ];
    for (i, (edit, field, words)) in cases.into_iter().enumerate() {
        let mut d = reminders();
        edit(&mut d);
        let e = validate(&d).expect_err(&format!("case {i} was accepted"));
        let DomainError::Invalid { field: f, reason: message } = e else { panic!("case {i}: {e:?}") };
        assert_eq!(f, field, "case {i}: {message}");
        assert!(message.contains(words), "case {i}: {message}");
    }
}

#[test]
fn splits_must_add_up_and_waits_are_bounded() {
    let mut d = reminders();
    d.steps[1].kind = StepKind::RandomSplit {
        paths: vec![SplitPath { percent: 50, next: Some("remind".into()) }, SplitPath { percent: 40, next: None }],
    };
    assert!(validate(&d).is_err());
    d.steps[1].kind = StepKind::RandomSplit {
        paths: vec![SplitPath { percent: 60, next: Some("remind".into()) }, SplitPath { percent: 40, next: None }],
    };
    validate(&d).unwrap();
    for w in [
        WaitSpec::Duration { minutes: 0 },
        WaitSpec::Duration { minutes: MAX_WAIT_MINUTES + 1 },
        WaitSpec::BusinessDays { days: 0 },
        WaitSpec::TimeOfDay { hour: 24, minute: 0 },
        WaitSpec::TimeOfDay { hour: 9, minute: 60 },
        WaitSpec::UntilEventTime { property: "".into(), offset_minutes: 0 },
    ] {
        let mut d = reminders();
        d.steps[1].kind = StepKind::Wait { wait: w.clone(), next: Some("remind".into()) };
        assert!(validate(&d).is_err(), "{w:?}");
    }
}

#[test]
fn unknown_json_is_refused_when_parsing() {
    assert!(serde_json::from_str::<SequenceDefinition>(r#"{"version":1}"#).is_err());
    let bad = r#"{"version":1,"trigger":{"kind":"telepathy"},"start":"a","steps":[]}"#;
    assert!(serde_json::from_str::<SequenceDefinition>(bad).is_err());
}

#[test]
fn masking_removes_property_literals_only() {
    let d = reminders();
    let m = d.masked();
    let Trigger::Event { properties, .. } = &m.trigger else { panic!() };
    assert!(matches!(properties[0].test, FieldTest::Hidden { .. }));
    assert!(!serde_json::to_string(&m).unwrap().contains("cardiology"));
    assert_eq!(m.steps, d.steps);
}

fn facts<'a>(
    now: DateTime<Utc>,
    started: DateTime<Utc>,
    zone: &'a dyn LocalZone,
    event: &'a BTreeMap<String, FieldValue>,
) -> Facts<'a> {
    Facts { now, step_started_at: started, zone, event, awaited_at: None, branch_holds: None, draw: 0 }
}

#[test]
fn a_duration_wait_sleeps_then_moves_on() {
    let e = BTreeMap::new();
    let s = wait("w", 90, Some("next"));
    let start = t("2027-01-04T10:00:00Z");
    let f = facts(start, start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Sleep { until: t("2027-01-04T11:30:00Z"), code: "waiting" });
    let f = facts(t("2027-01-04T11:30:00Z"), start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Next { next: Some("next".into()), code: "waited" });
}

#[test]
fn business_days_skip_weekends_in_the_recipients_zone() {
    let e = BTreeMap::new();
    let zone = Fixed(FixedOffset::west_opt(5 * 3600).unwrap());
    // Friday 20:00 local (Saturday 01:00 UTC) + 1 business day = Monday 20:00 local.
    let start = t("2027-01-09T01:00:00Z");
    let f = facts(start, start, &zone, &e);
    assert_eq!(wait_until(&WaitSpec::BusinessDays { days: 1 }, &f), Some(t("2027-01-12T01:00:00Z")));
    assert_eq!(wait_until(&WaitSpec::BusinessDays { days: 5 }, &f), Some(t("2027-01-16T01:00:00Z")));
}

#[test]
fn time_of_day_is_the_next_such_local_time() {
    let e = BTreeMap::new();
    let zone = Fixed(FixedOffset::east_opt(3600).unwrap());
    let at9 = WaitSpec::TimeOfDay { hour: 9, minute: 0 };
    // 07:00 local → 09:00 the same day; 10:00 local → 09:00 the next day.
    let f = facts(t("2027-01-04T06:00:00Z"), t("2027-01-04T06:00:00Z"), &zone, &e);
    assert_eq!(wait_until(&at9, &f), Some(t("2027-01-04T08:00:00Z")));
    let f = facts(t("2027-01-04T09:00:00Z"), t("2027-01-04T09:00:00Z"), &zone, &e);
    assert_eq!(wait_until(&at9, &f), Some(t("2027-01-05T08:00:00Z")));
}

#[test]
fn waiting_relative_to_the_event_is_skipped_when_already_past() {
    let mut e = BTreeMap::new();
    e.insert("appointment_at".to_string(), FieldValue::Text("2027-01-10T14:30:00Z".into()));
    let s = reminders().steps[1].clone();
    // Booked a week ahead: wait until two days before.
    let start = t("2027-01-03T09:00:00Z");
    let f = facts(start, start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Sleep { until: t("2027-01-08T14:30:00Z"), code: "waiting" });
    let f = facts(t("2027-01-08T14:30:00Z"), start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Next { next: Some("remind".into()), code: "waited" });
    // Booked one day ahead: the reminder moment has passed, so the wait is skipped.
    let start = t("2027-01-09T14:30:00Z");
    let f = facts(start, start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Next { next: Some("remind".into()), code: "wait_skipped" });
    // A missing or malformed property skips too.
    let none = BTreeMap::from([("appointment_at".to_string(), FieldValue::Text("soon".into()))]);
    let f = facts(start, start, &Utc0, &none);
    assert_eq!(decide(&s, &f), Decision::Next { next: Some("remind".into()), code: "wait_skipped" });
}

#[test]
fn wait_for_takes_the_event_branch_or_times_out() {
    let e = BTreeMap::new();
    let s = reminders().steps[3].clone();
    let start = t("2027-01-04T10:00:00Z");
    let mut f = facts(start, start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Sleep { until: t("2027-01-05T10:00:00Z"), code: "waiting_for" });
    // Arrived (even before the wait began): the event branch, here the end.
    f.awaited_at = Some(start - Duration::minutes(1));
    assert_eq!(decide(&s, &f), Decision::Next { next: None, code: "event_arrived" });
    let f = facts(t("2027-01-05T10:00:00Z"), start, &Utc0, &e);
    assert_eq!(decide(&s, &f), Decision::Next { next: Some("nudge".into()), code: "timed_out" });
}

#[test]
fn branches_and_splits() {
    let mut e = BTreeMap::new();
    e.insert("department".to_string(), FieldValue::Text("Cardiology".into()));
    let b = Step {
        id: "b".into(),
        name: String::new(),
        kind: StepKind::Branch {
            test: BranchTest::EventProperty {
                test: PropertyTest {
                    key: "department".into(),
                    test: FieldTest::TextEquals { value: "cardiology".into() },
                },
            },
            then: Some("y".into()),
            otherwise: Some("n".into()),
        },
    };
    let now = t("2027-01-04T10:00:00Z");
    assert_eq!(decide(&b, &facts(now, now, &Utc0, &e)), Decision::Next { next: Some("y".into()), code: "branch_then" });
    let other = BTreeMap::new();
    assert_eq!(
        decide(&b, &facts(now, now, &Utc0, &other)),
        Decision::Next { next: Some("n".into()), code: "branch_otherwise" }
    );
    let split = Step {
        id: "s".into(),
        name: String::new(),
        kind: StepKind::RandomSplit {
            paths: vec![SplitPath { percent: 30, next: Some("a".into()) }, SplitPath { percent: 70, next: None }],
        },
    };
    let mut f = facts(now, now, &Utc0, &e);
    f.draw = 29;
    assert_eq!(decide(&split, &f), Decision::Next { next: Some("a".into()), code: "split" });
    f.draw = 30;
    assert_eq!(decide(&split, &f), Decision::Next { next: None, code: "split" });
    // The draw is stable and spread: about 30% of 10,000 enrolments take the first path.
    let first = (0..10_000u128).filter(|i| draw(Uuid::from_u128(*i * 7919), 3) < 30).count();
    assert!((2_700..3_300).contains(&first), "{first}");
    assert_eq!(draw(Uuid::from_u128(5), 1), draw(Uuid::from_u128(5), 1));
}

#[test]
fn entry_rules() {
    assert!(EntryRule::OnceEver.admits(0, 0));
    assert!(!EntryRule::OnceEver.admits(1, 0));
    assert!(EntryRule::OneAtATime.admits(3, 0));
    assert!(!EntryRule::OneAtATime.admits(3, 1));
    assert!(EntryRule::EveryTime.admits(3, 2));
}

#[test]
fn the_enrolment_and_sequence_state_machines() {
    assert_eq!(EnrolmentState::Active.end(EndReason::Goal).unwrap(), EnrolmentState::Converted);
    assert_eq!(EnrolmentState::Active.end(EndReason::Completed).unwrap(), EnrolmentState::Completed);
    assert_eq!(EnrolmentState::Active.end(EndReason::CancelEvent).unwrap(), EnrolmentState::Exited);
    for s in [EnrolmentState::Completed, EnrolmentState::Converted, EnrolmentState::Exited] {
        for r in EndReason::ALL {
            assert!(s.end(r).is_err());
        }
    }
    for r in EndReason::ALL {
        assert_eq!(EndReason::parse(r.as_str()), Some(r));
    }
    use SequenceStatus::*;
    let allowed = [(Draft, Active), (Active, Paused), (Paused, Active), (Active, Archived), (Paused, Archived)];
    for from in SequenceStatus::ALL {
        for to in SequenceStatus::ALL {
            assert_eq!(from.transition(to).is_ok(), allowed.contains(&(from, to)), "{from:?} → {to:?}");
        }
    }
    assert!(Active.admits() && !Paused.admits() && !Archived.admits());
    assert!(Active.moves() && Archived.moves() && !Paused.moves() && !Draft.moves());
}

#[test]
fn the_send_gate() {
    let mut d = reminders();
    let now = t("2027-01-04T22:30:00Z");
    let m = ConsentPurpose::Marketing;
    assert_eq!(send_gate(&d, m, false, Some(true), &[], now, &Utc0), Gate::Open);
    assert_eq!(send_gate(&d, m, true, Some(true), &[], now, &Utc0), Gate::Suppressed);
    assert_eq!(send_gate(&d, m, false, None, &[], now, &Utc0), Gate::NoConsent);
    assert_eq!(send_gate(&d, m, false, Some(false), &[], now, &Utc0), Gate::NoConsent);
    let tr = ConsentPurpose::Transactional;
    assert_eq!(send_gate(&d, tr, false, None, &[], now, &Utc0), Gate::Open);
    assert_eq!(send_gate(&d, tr, false, Some(false), &[], now, &Utc0), Gate::NoConsent);
    // Quiet hours 21:00–08:00: 22:30 waits until 08:00 the next day; transactional is exempt.
    d.quiet_hours = Some(QuietHours { from_hour: 21, to_hour: 8 });
    assert_eq!(send_gate(&d, m, false, Some(true), &[], now, &Utc0), Gate::Quiet(t("2027-01-05T08:00:00Z")));
    assert_eq!(send_gate(&d, tr, false, None, &[], now, &Utc0), Gate::Open);
    let early = t("2027-01-05T07:59:00Z");
    assert_eq!(send_gate(&d, m, false, Some(true), &[], early, &Utc0), Gate::Quiet(t("2027-01-05T08:00:00Z")));
    d.quiet_hours = None;
    // At most 2 in 7 days.
    let recent = [t("2027-01-01T10:00:00Z"), t("2027-01-03T10:00:00Z"), t("2026-12-20T10:00:00Z")];
    d.frequency_cap = Some(FrequencyCap { max: 2, days: 7, wait: false });
    assert_eq!(send_gate(&d, m, false, Some(true), &recent, now, &Utc0), Gate::CappedSkip);
    d.frequency_cap = Some(FrequencyCap { max: 2, days: 7, wait: true });
    assert_eq!(send_gate(&d, m, false, Some(true), &recent, now, &Utc0), Gate::CappedWait(t("2027-01-08T10:00:01Z")));
    d.frequency_cap = Some(FrequencyCap { max: 3, days: 7, wait: true });
    assert_eq!(send_gate(&d, m, false, Some(true), &recent, now, &Utc0), Gate::Open);
    assert_eq!(send_gate(&d, tr, false, None, &recent, now, &Utc0), Gate::Open);
}

#[test]
fn the_diff_names_steps_by_id() {
    let old = reminders();
    let mut new = reminders();
    new.steps.pop();
    if let StepKind::WaitFor { on_timeout, .. } = &mut new.steps[3].kind {
        *on_timeout = Some("survey".into());
    }
    new.steps.push(send("survey", None));
    let d = diff(&old, &new);
    assert_eq!(d.added, vec!["survey".to_string()]);
    assert_eq!(d.removed, vec!["nudge".to_string()]);
    assert_eq!(d.changed, vec!["opened".to_string()]);
    assert!(!d.settings_changed);
    // Pinning a template version is not a change.
    let mut pinned = reminders();
    if let StepKind::SendEmail { template_version, .. } = &mut pinned.steps[0].kind {
        *template_version = Some(Uuid::from_u128(9));
    }
    assert_eq!(diff(&old, &pinned).changed, Vec::<String>::new());
}

#[test]
fn trigger_properties_must_all_hold() {
    let tests = match reminders().trigger {
        Trigger::Event { properties, .. } => properties,
        _ => unreachable!(),
    };
    let today = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
    let yes = BTreeMap::from([("department".to_string(), FieldValue::Text("CARDIOLOGY".into()))]);
    let no = BTreeMap::from([("department".to_string(), FieldValue::Text("oncology".into()))]);
    assert!(properties_match(&tests, &yes, today));
    assert!(!properties_match(&tests, &no, today));
    assert!(!properties_match(&tests, &BTreeMap::new(), today));
    assert!(properties_match(&[], &BTreeMap::new(), today));
}

#[test]
fn a_test_run_traces_the_path_with_a_simulated_clock() {
    let d = reminders();
    let start = t("2027-01-03T09:00:00Z");
    let event = BTreeMap::from([("appointment_at".to_string(), FieldValue::Text("2027-01-10T14:30:00Z".into()))]);
    let sim = Simulation { start, event: event.clone(), responds: false, branches_hold: false, draw: 0 };
    let path: Vec<(String, String, DateTime<Utc>)> =
        simulate(&d, &sim, &Utc0).into_iter().map(|s| (s.step_id, s.outcome, s.at)).collect();
    assert_eq!(
        path,
        vec![
            ("confirm".into(), "sent".into(), start),
            ("two_days".into(), "waited".into(), t("2027-01-08T14:30:00Z")),
            ("remind".into(), "sent".into(), t("2027-01-08T14:30:00Z")),
            ("opened".into(), "timed_out".into(), t("2027-01-09T14:30:00Z")),
            ("nudge".into(), "sent".into(), t("2027-01-09T14:30:00Z")),
            ("".into(), "completed".into(), t("2027-01-09T14:30:00Z")),
        ]
    );
    // A patient who opens: the wait-for ends an hour later on its event branch (the end).
    let sim = Simulation { responds: true, ..sim };
    let path = simulate(&d, &sim, &Utc0);
    assert_eq!(path[3].outcome, "event_arrived");
    assert_eq!(path[3].at, t("2027-01-08T15:30:00Z"));
    assert_eq!(path.len(), 5);
}

#[test]
fn list_segment_and_campaign_triggers_are_stored_by_kind_and_id_and_need_a_target() {
    let list = Uuid::from_u128(7);
    let cases = [
        (json!({"kind": "list_added", "list": list}), trigger_kind::LIST_ADDED, "added to a list"),
        (json!({"kind": "segment_entered", "segment": list}), trigger_kind::SEGMENT_ENTERED, "entered a segment"),
        (
            json!({"kind": "campaign_engaged", "campaign": list, "action": "opened"}),
            trigger_kind::CAMPAIGN_OPENED,
            "opened a campaign",
        ),
        (
            json!({"kind": "campaign_engaged", "campaign": list, "action": "clicked"}),
            trigger_kind::CAMPAIGN_CLICKED,
            "clicked in a campaign",
        ),
    ];
    for (j, kind, words) in cases {
        let trigger: Trigger = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(trigger.stored(), (kind, Some(list)));
        assert_eq!(trigger.describe(), words);
        assert!(trigger_kind::ALL.contains(&kind));
        let mut d = reminders();
        d.trigger = trigger.clone();
        // A correlation key, correlated goals and waits on the event read the trigger event,
        // which these triggers do not have: one send step.
        d.correlation_key = None;
        d.goal = None;
        d.exit_on.clear();
        d.start = "send".into();
        d.steps = vec![send("send", None)];
        validate(&d).unwrap();
        let before = d.clone();
        // A trigger naming nothing is refused at the trigger.
        let mut nil = before.clone();
        nil.trigger = serde_json::from_value({
            let mut j = j.clone();
            for k in ["list", "segment", "campaign"] {
                if j.get(k).is_some() {
                    j[k] = json!(Uuid::nil());
                }
            }
            j
        })
        .unwrap();
        let e = validate(&nil).unwrap_err();
        assert!(e.to_string().contains("trigger"), "{e}");
        // Ids are not PHI: masking keeps them.
        assert_eq!(before.masked().trigger, trigger);
    }
    assert_eq!(Trigger::Manual.stored(), (trigger_kind::MANUAL, None));
    assert_eq!(reminders().trigger.stored(), (trigger_kind::EVENT, None));
    // An unknown action or a missing id does not parse.
    for bad in [
        json!({"kind": "campaign_engaged", "campaign": list, "action": "forwarded"}),
        json!({"kind": "list_added"}),
        json!({"kind": "segment_entered", "segment": "not-a-uuid"}),
    ] {
        assert!(serde_json::from_value::<Trigger>(bad).is_err());
    }
}

#[test]
fn trigger_property_uses_are_checked_against_the_names_carried_once_any_arrived() {
    let d = reminders();
    let named = d.trigger_properties_named();
    assert_eq!(
        named.iter().map(|u| (u.field.as_str(), u.key.as_str(), u.how)).collect::<Vec<_>>(),
        vec![
            ("trigger condition 1", "department", PropertyUse::Condition),
            ("correlation_key", "appointment_id", PropertyUse::CorrelationKey),
            ("step two_days", "appointment_at", PropertyUse::EventTime),
        ]
    );
    let mut uses = named;
    uses.push(PropertyRef { field: "step remind".into(), key: "room".into(), how: PropertyUse::Template });
    // Nothing arrived yet: nothing to check against.
    check_carried("appointment.booked", &BTreeSet::new(), &uses).unwrap();
    let carried: BTreeSet<String> =
        ["appointment_at", "appointment_id", "clinic", "department"].map(String::from).into_iter().collect();
    let DomainError::Invalid { field, reason } = check_carried("appointment.booked", &carried, &uses).unwrap_err()
    else {
        panic!("not an invalid-field error")
    };
    assert_eq!(field, "step remind");
    assert_eq!(
        reason,
        "its template uses event.room, which appointment.booked events have not carried (they carried: appointment_at, appointment_id, clinic, department)"
    );
    uses.pop();
    check_carried("appointment.booked", &carried, &uses).unwrap();
    // A long catalogue is cut short; other triggers name no event property.
    let many: BTreeSet<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    let e = check_carried("x", &many, &uses).unwrap_err().to_string();
    assert!(e.contains("p29 and 10 more)") && !e.contains("p30"), "{e}");
    let manual = SequenceDefinition { trigger: Trigger::Manual, ..reminders() };
    assert!(manual.trigger_properties_named().is_empty());
}
