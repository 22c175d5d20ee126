//! The dev mailbox (issue 19 item 6): mail that took the production path (pool, STARTTLS, DKIM)
//! into the in-process dev SMTP listener is listed with decoded subjects, a page at a time; one
//! message is opened at a time, with one audit row per list page and one per opened message (its
//! HTML frame included).

use crate::harness::*;
use crate::smtp::tools;
use domain::Role;

/// The app with mail going over STARTTLS to its own dev SMTP listener, as `scripts/dev` runs it.
async fn start_with_dev_listener() -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let certs = tools().certs.clone();
    let env = vec![
        ("HERMETIC_MAIL__SMTP_HOST", "localhost".to_string()),
        ("HERMETIC_MAIL__SMTP_PORT", port.to_string()),
        ("HERMETIC_MAIL__SMTP_CA_FILE", certs.join("ca.pem").display().to_string()),
        ("HERMETIC_MAIL__SMTP_TAG_ORGANISATION", "true".to_string()),
        ("HERMETIC_MAIL__DEV_SMTP_LISTEN", format!("127.0.0.1:{port}")),
        ("HERMETIC_MAIL__DEV_SMTP_CERT_FILE", certs.join("server.pem").display().to_string()),
        ("HERMETIC_MAIL__DEV_SMTP_KEY_FILE", certs.join("server.key").display().to_string()),
    ];
    TestApp::start_with(Options { env, ..Options::default() }).await
}

async fn views(app: &TestApp) -> i64 {
    let db = app.db.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let n = db
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM audit_event WHERE action = 'mail.dev_mailbox_viewed'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    db.close().await.unwrap();
    n
}

#[tokio::test]
async fn the_dev_mailbox_decodes_subjects_pages_and_opens_one_message_at_a_time() {
    let app = start_with_dev_listener().await;
    let org = app.org_with_user("Clínica — Norte", "admin@clinic.test", Role::Admin).await;
    app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;

    // An invitation (non-ASCII subject: lettre encodes it per RFC 2047) goes over SMTP to the listener.
    let (s, b) =
        admin.call("invite_user", &[("email", "pat@clinic.test"), ("display_name", ""), ("role", "analyst")]).await;
    assert_eq!(s, 200, "{b}");
    let before = views(&app).await;
    let (s, list) = admin.call("dev_mailbox", &[]).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(views(&app).await, before + 1, "one audit row per list page viewed");
    assert_eq!(list["total"], 1);
    let invite = &list["items"][0];
    assert_eq!(invite["subject"], "Your invitation to Clínica — Norte on Hermetic", "{list}");
    assert!(invite.get("raw").is_none(), "the list decrypts no message bodies: {invite}");
    let invite_id = invite["id"].as_str().unwrap().to_string();

    // More mail than a page holds (as the listener stores them: subjects still encoded).
    for i in 0..34 {
        let subject = format!("=?utf-8?b?{}?=", data_encoding::BASE64.encode(format!("Note {i:02} — hi").as_bytes()));
        let raw = format!(
            "Subject: {subject}\r\nTo: p{i}@clinic.test\r\nContent-Type: text/html\r\n\r\n<p>Hello {i}</p><footer>Footer {i}</footer>"
        );
        service::mail::capture(&app.services, org, raw.as_bytes(), &format!("p{i}@clinic.test"), &subject)
            .await
            .unwrap();
        app.advance(1);
    }
    let (_, p1) = admin.call("dev_mailbox", &[("page", "1")]).await;
    let (_, p2) = admin.call("dev_mailbox", &[("page", "2")]).await;
    assert_eq!((p1["total"].as_i64(), p1["pages"].as_i64()), (Some(35), Some(2)), "{p1}");
    assert_eq!(p1["items"].as_array().unwrap().len(), 30);
    assert_eq!(p2["items"].as_array().unwrap().len(), 5);
    assert_eq!(p1["items"][0]["subject"], "Note 33 — hi", "newest first, decoded");
    assert_eq!(p2["items"][4]["id"].as_str(), Some(invite_id.as_str()), "the oldest is last");
    let ids: std::collections::BTreeSet<String> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["items"].as_array().unwrap())
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 35, "no message on two pages");

    // The page renders the list without a single frame; opening one message renders one frame.
    let (s, html) = admin.page("/settings/mailbox").await;
    assert_eq!(s, 200);
    assert!(html.contains("Note 33 — hi") && !html.contains("=?utf-8?"), "subjects are decoded on the page");
    assert_eq!(html.matches("<iframe").count(), 0, "no message is opened by listing");
    let (_, html) = admin.page(&format!("/settings/mailbox?page=2&open={invite_id}")).await;
    assert_eq!(html.matches("<iframe").count(), 1, "exactly the opened message's frame");
    assert!(html.contains("Your invitation to Clínica — Norte on Hermetic"));

    // Opening: one audit row, which covers the frame; headers decoded.
    let before = views(&app).await;
    let (s, m) = admin.call("dev_mail", &[("id", &invite_id)]).await;
    assert_eq!(s, 200, "{m}");
    let headers = m["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "Subject" && h[1] == "Your invitation to Clínica — Norte on Hermetic"),
        "{headers:?}"
    );
    assert!(m["raw"].as_str().unwrap().contains("DKIM-Signature") || m["raw"].as_str().unwrap().contains("Subject:"));
    assert_eq!(views(&app).await, before + 1);
    let frame = admin.get(&format!("/settings/mailbox/{invite_id}/html")).await;
    assert_eq!(frame.status, 200);
    assert!(frame.body.contains("Accept the invitation"));
    assert_eq!(views(&app).await, before + 1, "the opened message's frame adds no second row");
    // A frame requested on its own is audited once (and again once the opening is old).
    let other = p1["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(admin.get(&format!("/settings/mailbox/{other}/html")).await.status, 200);
    assert_eq!(views(&app).await, before + 2);
    assert_eq!(admin.get(&format!("/settings/mailbox/{other}/html")).await.status, 200);
    assert_eq!(views(&app).await, before + 2);
    app.advance(11 * 60);
    let (_, _) = admin.call("dev_mailbox", &[]).await; // keep the session active
    let before = views(&app).await;
    assert_eq!(admin.get(&format!("/settings/mailbox/{other}/html")).await.status, 200);
    assert_eq!(views(&app).await, before + 1);

    // Another organisation's administrator sees none of it.
    let (stranger, _) = app.sign_in("admin@other.test", None).await;
    let (s, b) = stranger.call("dev_mail", &[("id", &invite_id)]).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    assert_eq!(stranger.get(&format!("/settings/mailbox/{invite_id}/html")).await.status, 404);
    let (_, l) = stranger.call("dev_mailbox", &[]).await;
    assert_eq!(l["total"], 0);
    app.stop().await;
}
