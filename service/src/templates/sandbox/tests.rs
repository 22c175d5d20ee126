use super::*;
use serde_json::json;

fn fields() -> MergeFields {
    MergeFields::new(&[CustomField {
        id: uuid::Uuid::nil(),
        key: "diagnosis".into(),
        label: "Diagnosis".into(),
        field_type: FieldType::Text,
        options: vec![],
        is_phi: true,
    }])
}

fn parts<'a>(subject: &'a str, html: &'a str) -> TemplateParts<'a> {
    TemplateParts { subject, preheader: "", html, text: "Hello" }
}

fn check_html(html: &str) -> ServiceResult<Checked> {
    Sandbox::new().check(parts("Your news", html), &fields())
}

fn message(r: ServiceResult<Checked>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

fn data(first: &str) -> Phi<JsonValue> {
    Phi::new(json!({
        "contact": { "email": "a@b.test", "first_name": first, "last_name": null, "phone": null,
                     "date_of_birth": "1950-03-09", "time_zone": "America/New_York", "locale": null, "diagnosis": null },
        "organisation": { "name": "Clinic" },
        "links": { "unsubscribe": "https://h.test/u/TOKEN", "view_in_browser": "https://h.test/v/T", "preferences": "https://h.test/p/T" }
    }))
}

#[test]
fn hostile_templates_are_refused_with_clear_messages() {
    let cases: Vec<(String, &str)> = vec![
        ("{{> ../../etc/passwd}}".into(), "partial"),
        ("{{#> layout}}x{{/layout}}".into(), "partial"),
        ("{{#*inline \"x\"}}y{{/inline}}".into(), "decorator"),
        ("{{shell \"rm -rf /\"}}".into(), "helper 'shell', which does not exist"),
        ("{{lookup contact \"email\"}}".into(), "does not exist"),
        ("{{log contact.email}}".into(), "does not exist"),
        ("{{#each contact}}{{this}}{{/each}}".into(), "only {{#if}} and {{#unless}}"),
        ("{{#with contact}}{{email}}{{/with}}".into(), "only {{#if}}"),
        ("{{{contact.first_name}}}".into(), "triple braces"),
        ("{{contact.ssn}}".into(), "does not have"),
        ("{{env.HOME}}".into(), "not a merge field"),
        ("{{this}}".into(), "'this'"),
        ("{{../contact.email}}".into(), "'../'"),
        ("{{@root.contact.email}}".into(), "'@' paths"),
        ("{{#if contact.first_name}}unclosed".into(), "not a valid template"),
        ("{{contact.first_name".into(), "not a valid template"),
        ("{{#if}}x{{/if}}".into(), "exactly one condition"),
        ("{{upper}}".into(), "without arguments"),
        ("{{upper contact.email contact.email}}".into(), "takes 1 argument"),
        ("{{date contact.date_of_birth \"%Q\"}}".into(), "quoted format"),
        ("{{date contact.date_of_birth contact.email}}".into(), "quoted format"),
        ("{{#if a=1}}x{{/if}}".into(), "exactly one condition"),
        ("{{#if contact.email}}".repeat(40) + &"{{/if}}".repeat(40), "nests blocks"),
        (format!("{{{{upper {}contact.email{}}}}}", "(lower ".repeat(50), ")".repeat(50)), "nests helpers"),
        ("{{contact.email}}".repeat(MAX_EXPRESSIONS + 1), "merge tags"),
        ("x".repeat(10 * 1024 * 1024), "larger than"),
    ];
    for (src, needle) in cases {
        let msg = message(check_html(&src));
        assert!(msg.contains(needle), "{} → {msg}", short(&src));
    }
}

#[test]
fn parser_bombs_are_stopped_before_parsing() {
    // Deep nesting that the prescan must catch before the recursive parser sees it.
    let deep = "{{#if contact.email}}".repeat(10_000);
    assert!(message(check_html(&deep)).contains("nests blocks"));
    let parens = format!("{{{{eq {} 1}}}}", "(".repeat(100_000));
    assert!(message(check_html(&parens)).contains("nests helpers"));
}

#[test]
fn phi_is_refused_in_subject_and_preheader_and_flags_the_body() {
    let s = Sandbox::new();
    let msg = message(s.check(parts("Hi {{contact.first_name}}", "<p>x</p>"), &fields()));
    assert!(msg.contains("First name") && msg.contains("protected health information"), "{msg}");
    let msg = message(s.check(
        TemplateParts { subject: "News", preheader: "{{#if contact.diagnosis}}x{{/if}}", html: "<p>x</p>", text: "" },
        &fields(),
    ));
    assert!(msg.contains("Diagnosis"), "{msg}");
    let ok = s.check(parts("News for {{contact.time_zone}}", "<p>{{contact.locale}}</p>"), &fields()).unwrap();
    assert!(!ok.uses_phi);
    let phi = s.check(parts("News", "<p>Dear {{default contact.first_name \"patient\"}}</p>"), &fields()).unwrap();
    assert!(phi.uses_phi);
    assert_eq!(phi.fields_used.iter().collect::<Vec<_>>(), ["first_name"]);
    // A newline would let a subject inject headers.
    assert!(message(s.check(parts("News\r\nBcc: x@y", "<p>x</p>"), &fields())).contains("single line"));
}

#[test]
fn rendering_escapes_html_and_keeps_text_plain() {
    let s = Sandbox::new();
    let t = s
        .check(
            TemplateParts {
                subject: "News from {{organisation.name}}",
                preheader: "",
                html: "<p>Hi {{contact.first_name}}</p>{{#if contact.last_name}}L{{else}}no last{{/if}}<a href=\"{{links.unsubscribe}}\">u</a>",
                text: "Hi {{contact.first_name}} {{links.unsubscribe}}",
            },
            &fields(),
        )
        .unwrap();
    let r = s.render(&t, data("<script>alert(1)</script>")).unwrap();
    assert_eq!(r.subject.expose(), "News from Clinic");
    assert!(r.html.expose().contains("Hi &lt;script&gt;alert(1)&lt;/script&gt;"), "{}", r.html.expose());
    assert!(r.html.expose().contains("no last"));
    assert!(!r.html.expose().contains("<script>"));
    assert_eq!(r.text.expose(), "Hi <script>alert(1)</script> https://h.test/u/TOKEN");
}

#[test]
fn helpers_are_pure_and_dates_use_the_contacts_zone() {
    let s = Sandbox::new();
    let t = s
        .check(
            parts(
                "x",
                "{{upper contact.first_name}}|{{lower \"ABC\"}}|{{default contact.last_name \"friend\"}}|{{#if (eq contact.locale null)}}none{{/if}}|{{date contact.date_of_birth \"%B %-d\"}}|{{date \"2026-07-01T02:30:00Z\" \"%Y-%m-%d %H:%M\"}}",
            ),
            &fields(),
        )
        .unwrap();
    let r = s.render(&t, data("ann")).unwrap();
    // 02:30 UTC is 22:30 the day before in New York (EDT).
    assert!(r.html.expose().starts_with("ANN|abc|friend|none|March 9|2026-06-30 22:30"), "{}", r.html.expose());
}

#[test]
fn every_rendered_message_carries_a_working_unsubscribe_link() {
    let s = Sandbox::new();
    for html in ["<html><body><p>No link here</p></body></html>", "<p>fragment</p>"] {
        let t = s.check(parts("x", html), &fields()).unwrap();
        let r = s.render(&t, data("a")).unwrap();
        assert!(r.html.expose().contains("href=\"https://h.test/u/TOKEN\""), "{}", r.html.expose());
        assert!(r.text.expose().contains("Unsubscribe: https://h.test/u/TOKEN"));
        if html.contains("</body>") {
            assert!(r.html.expose().ends_with("</p></body></html>"));
        }
    }
    // Placed by the author: not added twice.
    let t = s.check(parts("x", "<a href=\"{{links.unsubscribe}}\">Leave</a>"), &fields()).unwrap();
    let r = s.render(&t, data("a")).unwrap();
    assert_eq!(r.html.expose().matches("h.test/u/TOKEN").count(), 1);
}

#[test]
fn output_is_capped_and_errors_name_no_values() {
    let s = Sandbox::new();
    let t = s.check(parts("x", &"{{contact.first_name}}".repeat(1500)), &fields()).unwrap();
    let secret = "Zelphinia".repeat(100);
    let msg = match s.render(&t, data(&secret)) {
        Ok(_) => panic!("not capped"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("larger than 1 MB"), "{msg}");
    assert!(!msg.contains("Zelphinia"));
    // A value the date helper cannot read fails without quoting it.
    let t = s.check(parts("x", "{{date contact.first_name \"%Y\"}}"), &fields()).unwrap();
    let msg = match s.render(&t, data("Zelphinia")) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(!msg.contains("Zelphinia"), "{msg}");
}

/// Merge data with a `message` and an `event` object beside the contact.
fn data_with(message: JsonValue, event: JsonValue) -> Phi<JsonValue> {
    let mut d = data("Ann").into_inner();
    d["message"] = message;
    d["event"] = event;
    Phi::new(d)
}

#[test]
fn message_and_event_keys_are_accepted_collected_and_mark_the_template_as_phi() {
    let s = Sandbox::new();
    let t = s
        .check(
            TemplateParts {
                subject: "Your appointment",
                preheader: "",
                html: "<p>{{message.clinic}} {{#if event.room_2}}{{upper event.room_2}}{{/if}} {{date message.appointment_at \"%H:%M\"}} {{default message.note \"-\"}}</p>",
                text: "{{event.Department}} {{[message].[clinic]}}",
            },
            &fields(),
        )
        .unwrap();
    assert!(t.uses_phi, "message and event values are PHI");
    assert!(t.fields_used.is_empty());
    assert_eq!(t.message_keys.iter().collect::<Vec<_>>(), ["appointment_at", "clinic", "note"]);
    assert_eq!(t.event_keys.iter().collect::<Vec<_>>(), ["Department", "room_2"]);
    assert!(t.dated.contains("message.appointment_at") && t.dated.len() == 1, "{:?}", t.dated);
    let longest = "k".repeat(64);
    assert!(check_html(&format!("<p>{{{{message.{longest}}}}}</p>")).is_ok());
}

#[test]
fn message_and_event_keys_with_a_bad_syntax_are_refused_naming_the_place() {
    for (src, needle) in [
        ("{{message.1st}}".to_string(), "not a valid name"),
        ("{{event.[a b]}}".to_string(), "not a valid name"),
        ("{{message.[é]}}".to_string(), "not a valid name"),
        ("{{event.[a-b]}}".to_string(), "not a valid name"),
        (format!("{{{{message.{}}}}}", "k".repeat(65)), "at most 64"),
        ("{{message.a.b}}".to_string(), "one name after message."),
        ("{{event.a/b}}".to_string(), "one name after event."),
        ("{{message}}".to_string(), "written message.<name>"),
        ("{{event}}".to_string(), "written event.<name>"),
        ("{{#if message}}x{{/if}}".to_string(), "written message.<name>"),
        ("{{Message.clinic}}".to_string(), "not a merge field"),
        ("{{messages.clinic}}".to_string(), "not a merge field"),
    ] {
        let e = check_html(&format!("<p>{src}</p>")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(needle), "{src} → {msg}");
        assert!(
            matches!(&e, ServiceError::Invalid(domain::DomainError::Invalid { field, .. }) if field == "html"),
            "{e:?}"
        );
    }
}

#[test]
fn message_and_event_keys_are_refused_in_subject_and_preheader() {
    let s = Sandbox::new();
    let msg = message(s.check(parts("Your visit at {{message.clinic}}", "<p>x</p>"), &fields()));
    assert!(msg.contains("message.clinic") && msg.contains("protected health information"), "{msg}");
    let msg = message(s.check(
        TemplateParts { subject: "Reminder", preheader: "{{date event.at \"%H:%M\"}}", html: "<p>x</p>", text: "" },
        &fields(),
    ));
    assert!(msg.contains("event.at") && msg.contains("preview text"), "{msg}");
}

#[test]
fn message_and_event_keys_are_refused_in_addresses_and_styles() {
    let s = Sandbox::new();
    for (html, label) in [
        ("<img src=\"https://x/{{message.clinic}}\">", "message.clinic"),
        ("<a href=\"https://x/?at={{event.appointment_at}}\">x</a>", "event.appointment_at"),
        ("<a href=\"https://x/{{[event]/[slot]}}\">x</a>", "event.slot"),
        ("<a href=\"https://x/{{upper (default message.code \"x\")}}\">x</a>", "message.code"),
        ("<td style=\"background:url(https://x/{{message.clinic}})\">", "message.clinic"),
        ("<style>.a{background:url('{{event.room}}')}</style>", "event.room"),
        ("<p>See https://x/{{message.clinic}} now</p>", "message.clinic"),
        ("<img {{#if event.vip}}src=\"https://x/a\"{{/if}}>", "event.vip"),
    ] {
        let msg = message(s.check(parts("Reminder", html), &fields()));
        assert!(msg.contains(label) && msg.contains("Protected health information"), "{html}: {msg}");
    }
    let msg = message(s.check(
        TemplateParts { subject: "x", preheader: "", html: "<p>x</p>", text: "Open https://x/{{message.clinic}}" },
        &fields(),
    ));
    assert!(msg.contains("message.clinic") && msg.contains("web address"), "{msg}");
    // In the text, and in a non-address attribute, they are fine.
    assert!(
        check_html("<p title=\"{{message.clinic}}\">{{event.clinic}}</p><a href=\"https://x/\">{{message.clinic}}</a>")
            .is_ok()
    );
}

#[test]
fn the_date_helper_formats_message_and_event_values_in_the_contacts_zone() {
    let s = Sandbox::new();
    let t = s
        .check(
            parts(
                "x",
                "{{date event.appointment_at \"%A %B %-d at %-I:%M %p\"}}|{{date message.day \"%B %-d\"}}|{{date message.short \"%H:%M\"}}|{{date message.local \"%H:%M\"}}|{{date event.missing \"%Y\"}}|{{date message.blank \"%Y\"}}",
            ),
            &fields(),
        )
        .unwrap();
    let r = s
        .render(
            &t,
            data_with(
                json!({"day": "2027-01-05", "short": "2027-07-01T02:30Z", "local": "2027-01-05T09:15", "blank": ""}),
                json!({"appointment_at": "2027-01-05T14:30:00Z"}),
            ),
        )
        .unwrap();
    // The contact lives in New York: 14:30 UTC is 9:30 in the morning (EST); 02:30 UTC in July
    // is 22:30 (EDT); a local time without an offset stays as written; missing and empty: empty.
    assert!(r.html.expose().starts_with("Tuesday January 5 at 9:30 AM|January 5|22:30|09:15||"), "{}", r.html.expose());
    // A value that is not a date fails without quoting it.
    let t = s.check(parts("x", "{{date message.at \"%Y\"}}"), &fields()).unwrap();
    let msg = match s.render(&t, data_with(json!({"at": "PHI-Zelphinia"}), json!({}))) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(!msg.contains("Zelphinia"), "{msg}");
}

#[test]
fn a_message_or_event_key_the_data_lacks_renders_empty() {
    let s = Sandbox::new();
    let t = s
        .check(
            TemplateParts {
                subject: "x",
                preheader: "",
                html: "<p>[{{message.clinic}}][{{message.room}}][{{event.slot}}][{{#if event.vip}}vip{{else}}no{{/if}}][{{default message.room \"tbd\"}}]</p>",
                text: "[{{message.room}}]",
            },
            &fields(),
        )
        .unwrap();
    // Some keys present, some absent; no `event` object at all.
    let mut d = data("Ann").into_inner();
    d["message"] = json!({"clinic": "North <Clinic>"});
    let r = s.render(&t, Phi::new(d)).unwrap();
    assert!(r.html.expose().contains("[North &lt;Clinic&gt;][][][no][tbd]"), "{}", r.html.expose());
    assert!(r.text.expose().starts_with("[]"));
    // A `message` that is not an object is treated as empty, not as a failure.
    let r = s.render(&t, data_with(JsonValue::Null, json!("x"))).unwrap();
    assert!(r.html.expose().contains("[][][][no][tbd]"), "{}", r.html.expose());
    // Contact fields stay strict: the sandbox does not invent a missing contact field.
    let t = s.check(parts("x", "<p>{{contact.diagnosis}}</p>"), &fields()).unwrap();
    let mut d = data("Ann").into_inner();
    d["contact"].as_object_mut().unwrap().remove("diagnosis");
    assert!(s.render(&t, Phi::new(d)).is_err());
}

#[test]
fn which_kinds_of_message_may_use_which_namespace() {
    let s = Sandbox::new();
    let plain = s.check(parts("x", "<p>{{contact.first_name}}</p>"), &fields()).unwrap();
    let msg = s.check(parts("x", "<p>{{message.clinic}}</p>"), &fields()).unwrap();
    let ev = s.check(parts("x", "<p>{{event.clinic}}</p>"), &fields()).unwrap();
    for a in [Allowed::CAMPAIGN, Allowed::API_MESSAGE, Allowed::SEQUENCE_EMAIL] {
        assert!(namespaces_allowed(&plain, a).is_ok());
    }
    let refused = |t: &Checked, a: Allowed| match namespaces_allowed(t, a) {
        Ok(()) => panic!("allowed"),
        Err(e) => e.to_string(),
    };
    let m = refused(&msg, Allowed::CAMPAIGN);
    assert!(m.contains("{{message.clinic}}") && m.contains("API"), "{m}");
    assert!(namespaces_allowed(&msg, Allowed::API_MESSAGE).is_ok());
    assert!(refused(&msg, Allowed::SEQUENCE_EMAIL).contains("message.clinic"));
    let m = refused(&ev, Allowed::API_MESSAGE);
    assert!(m.contains("{{event.clinic}}") && m.contains("sequence"), "{m}");
    assert!(refused(&ev, Allowed::CAMPAIGN).contains("event.clinic"));
    assert!(namespaces_allowed(&ev, Allowed::SEQUENCE_EMAIL).is_ok());
    // The same rule on stored keys.
    assert!(keys_allowed(["a"], Vec::<String>::new(), Allowed::CAMPAIGN).is_err());
    assert!(keys_allowed(Vec::<String>::new(), Vec::<String>::new(), Allowed::CAMPAIGN).is_ok());
}

#[test]
fn dated_message_keys_and_readable_dates() {
    let s = Sandbox::new();
    let t = s
        .check(parts("x", "{{date message.at \"%Y\"}} {{message.clinic}} {{date event.on \"%Y\"}}"), &fields())
        .unwrap();
    assert_eq!(t.dated_message_keys().collect::<Vec<_>>(), ["at"]);
    for ok in [json!(null), json!(""), json!("2027-01-05"), json!("2027-01-05T14:30:00Z"), json!("2027-01-05T14:30")] {
        assert!(date_readable(&ok), "{ok}");
    }
    for bad in [json!("next Tuesday"), json!(20270105), json!(true), json!("2027-13-01"), json!("x".repeat(2000))] {
        assert!(!date_readable(&bad), "{bad}");
    }
}
