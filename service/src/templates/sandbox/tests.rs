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
