//! Inviting users, roles, tenant isolation.

use crate::harness::*;
use domain::Role;

#[tokio::test]
async fn an_admin_invites_a_marketer_who_joins_with_mfa() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (s, created) =
        admin.call("invite_user", &[("email", "Mia@Clinic.test"), ("display_name", "Mia"), ("role", "marketer")]).await;
    assert_eq!((s, created["email"].as_str()), (200, Some("mia@clinic.test")), "{created}");
    assert!(created.get("invite_url").is_none(), "the link goes to the person, not to the admin");
    // The link arrives by email (captured by the dev mailbox here).
    let org = service::users::find_for_operator(&app.services, "admin@clinic.test").await.unwrap().0;
    let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 10).await.unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].recipient.expose(), "mia@clinic.test");
    let raw = mail[0].raw.expose().replace("=\r\n", "");
    let at = raw.find("/invite#").expect("token travels in the fragment") + "/invite#".len();
    let token: String = raw[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    assert!(token.len() >= 40);
    let token = token.as_str();

    let guest = app.client();
    guest.page("/invite").await;
    let (s, info) = guest.call("lookup_invite", &[("token", token)]).await;
    assert_eq!((s, info["email"].as_str()), (200, Some("mia@clinic.test")));
    let (s, b) = guest.call("accept_invite", &[("token", token), ("password", "short")]).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = guest.call("accept_invite", &[("token", token), ("password", "qwertyuiop123")]).await;
    assert_eq!(s, 422, "breached passwords are refused: {b}");
    let (s, b) = guest.call("accept_invite", &[("token", token), ("password", PASSWORD)]).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = guest.call("accept_invite", &[("token", token), ("password", PASSWORD)]).await;
    assert_eq!(s, 422, "an invitation works once");

    let (mia, _) = app.sign_in("mia@clinic.test", None).await;
    assert_eq!(mia.get("/campaigns").await.status, 200);
    assert_eq!(mia.get("/audit").await.status, 403);
    assert_eq!(mia.get("/settings/users").await.status, 403);
    assert_eq!(mia.call("list_users", &[]).await.0, 403);

    // The admin promotes her; the change applies at once.
    let (_, users) = admin.call("list_users", &[]).await;
    let id = users.as_array().unwrap().iter().find(|u| u["email"] == "mia@clinic.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, u) = admin.call("change_role", &[("user_id", &id), ("role", "admin")]).await;
    assert_eq!((s, u["role"].as_str()), (200, Some("admin")));
    assert_eq!(mia.get("/audit").await.status, 200);
    let (s, b) = admin.call("change_role", &[("user_id", &id), ("role", "superuser")]).await;
    assert_eq!(s, 400, "unknown roles are refused: {b}");
    app.stop().await;
}

#[tokio::test]
async fn another_organisations_users_look_nonexistent() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    app.add_user(other, "victim@other.test", Role::Marketer).await;
    let (_, victim) = service::users::find_for_operator(&app.services, "victim@other.test").await.unwrap();
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    for op in ["disable_user", "enable_user", "reset_user_mfa"] {
        let (s, b) = admin.call(op, &[("user_id", &victim.to_string())]).await;
        assert_eq!((s, b["code"].as_str()), (404, Some("not_found")), "{op}");
    }
    let (s, _) = admin.call("change_role", &[("user_id", &victim.to_string()), ("role", "admin")]).await;
    assert_eq!(s, 404);
    // Inviting their address answers as for anyone else (auth_hardening checks it in detail)
    // and does not touch their account.
    let (s, b) =
        admin.call("invite_user", &[("email", "victim@other.test"), ("display_name", ""), ("role", "admin")]).await;
    assert_eq!(s, 200, "{b}");
    let (org, id) = service::users::find_for_operator(&app.services, "victim@other.test").await.unwrap();
    assert_eq!((org, id), (other, victim));
    let (s, _) = admin.call("disable_user", &[("user_id", "not-a-uuid")]).await;
    assert_eq!(s, 400);
    app.stop().await;
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_removed() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (_, id) = service::users::find_for_operator(&app.services, "admin@clinic.test").await.unwrap();
    let system = service::Actor::system(org, "test");
    let e = service::users::disable(&app.services, &system, id).await.unwrap_err();
    assert!(e.to_string().contains("at least one active administrator"));
    let e = service::users::change_role(&app.services, &system, id, Role::Marketer).await.unwrap_err();
    assert!(e.to_string().contains("at least one active administrator"));
    app.stop().await;
}

#[tokio::test]
async fn admin_reset_of_mfa_forces_enrolment_and_ends_sessions() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "mark@clinic.test", Role::Marketer).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (mark, _) = app.sign_in("mark@clinic.test", None).await;
    let (_, id) = service::users::find_for_operator(&app.services, "mark@clinic.test").await.unwrap();
    let (s, u) = admin.call("reset_user_mfa", &[("user_id", &id.to_string())]).await;
    assert_eq!((s, u["mfa_enrolled"].as_bool()), (200, Some(false)));
    assert_eq!(mark.get("/").await.status, 303);
    let c = app.client();
    c.page("/login").await;
    let (_, step) = c.call("sign_in", &[("email", "mark@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!(step, "enrol_mfa");
    app.stop().await;
}

/// The invitation link in a message that arrived at the SMTP server (quoted-printable unwrapped).
fn invite_token(raw: &str) -> String {
    let raw = raw.replace("=\r\n", "").replace("=\n", "");
    let at = raw.find("/invite#").expect("an invitation link") + "/invite#".len();
    raw[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Issue 19 item 3: invitations travel through the outbound mail pipeline (here a real SMTP server
/// over STARTTLS); a pending invitation can be sent again (new link, old one dead) or revoked; a
/// second invitation to the same address replaces the first; the token is never logged.
#[tokio::test]
async fn invitations_arrive_by_smtp_and_can_be_sent_again_replaced_or_revoked() {
    use crate::smtp::{SmtpServer, Tls};
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = crate::campaigns::start(&smtp, &[]).await;
    let clinic = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    app.add_user(other, "member@other.test", Role::Marketer).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let guest = app.client();
    guest.page("/invite").await;
    let works = |token: String| {
        let guest = &guest;
        async move { guest.call("lookup_invite", &[("token", &token)]).await.0 == 200 }
    };

    let (s, b) =
        admin.call("invite_user", &[("email", "pat@clinic.test"), ("display_name", "Pat"), ("role", "analyst")]).await;
    assert_eq!(s, 200, "{b}");
    let mails = smtp.wait_for(1, 10).await;
    assert!(
        mails[0].1.contains("pat@clinic.test") && mails[0].1.contains("Subject: Your invitation to Clinic"),
        "{}",
        mails[0].1
    );
    let first = invite_token(&mails[0].1);
    assert!(first.len() >= 40);
    assert!(works(first.clone()).await);
    let (_, users) = admin.call("list_users", &[]).await;
    let pat = users.as_array().unwrap().iter().find(|u| u["email"] == "pat@clinic.test").unwrap().clone();
    assert_eq!(pat["status"], "invited");
    assert!(pat["invite_expires_at"].is_string(), "the page shows until when the link works: {pat}");
    let pat_id = pat["id"].as_str().unwrap().to_string();

    // Send again: a new message with a new link; the first link stops working.
    let (s, b) = admin.call("resend_invite", &[("user_id", &pat_id)]).await;
    assert_eq!((s, b["email"].as_str()), (200, Some("pat@clinic.test")), "{b}");
    let mails = smtp.wait_for(2, 10).await;
    let second = invite_token(&mails[1].1);
    assert_ne!(second, first);
    assert!(!works(first.clone()).await, "the earlier link is dead");
    assert!(works(second.clone()).await);

    // Inviting the same address again replaces the invitation (one pending user, newest link only).
    let (s, b) =
        admin.call("invite_user", &[("email", "pat@clinic.test"), ("display_name", "Pat"), ("role", "marketer")]).await;
    assert_eq!(s, 200, "{b}");
    let mails = smtp.wait_for(3, 10).await;
    let third = invite_token(&mails[2].1);
    assert!(!works(second.clone()).await, "the replaced invitation's link is dead");
    assert!(works(third.clone()).await);
    let (_, users) = admin.call("list_users", &[]).await;
    let pats: Vec<_> = users.as_array().unwrap().iter().filter(|u| u["email"] == "pat@clinic.test").collect();
    assert_eq!((pats.len(), pats[0]["role"].as_str()), (1, Some("marketer")));

    // Revoke: the link dies and the pending user is gone.
    let (s, b) = admin.call("revoke_invite", &[("user_id", &pat_id)]).await;
    assert_eq!(s, 200, "{b}");
    assert!(!works(third.clone()).await, "a revoked invitation's link is dead");
    let (_, users) = admin.call("list_users", &[]).await;
    assert!(users.as_array().unwrap().iter().all(|u| u["email"] != "pat@clinic.test"));
    assert_eq!(admin.call("resend_invite", &[("user_id", &pat_id)]).await.0, 404);
    assert_eq!(smtp.messages().len(), 3, "nothing is mailed for a revoked invitation");

    // Only pending invitations: an active member cannot be "re-invited" or revoked, and another
    // organisation's users look nonexistent.
    let (_, admin_id) = service::users::find_for_operator(&app.services, "admin@clinic.test").await.unwrap();
    let (_, member) = service::users::find_for_operator(&app.services, "member@other.test").await.unwrap();
    app.add_user(clinic, "active@clinic.test", Role::Analyst).await;
    let (_, active) = service::users::find_for_operator(&app.services, "active@clinic.test").await.unwrap();
    for op in ["resend_invite", "revoke_invite"] {
        assert_eq!(admin.call(op, &[("user_id", &active.to_string())]).await.0, 409, "{op}");
        assert_eq!(admin.call(op, &[("user_id", &admin_id.to_string())]).await.0, 409, "{op}");
        let (s, b) = admin.call(op, &[("user_id", &member.to_string())]).await;
        assert_eq!((s, b["code"].as_str()), (404, Some("not_found")), "{op}");
    }
    assert_eq!(smtp.messages().len(), 3);

    // Audited, with ids only.
    let db = app.db.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let rows = db
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT action, details::text AS d FROM audit_event WHERE action LIKE 'user.invite%' ORDER BY seq",
        ))
        .await
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "action").unwrap()).collect();
    assert_eq!(actions, ["user.invited", "user.invite_resent", "user.invited", "user.invite_revoked"]);
    for r in &rows {
        let d: String = r.try_get("", "d").unwrap();
        assert!(!d.contains("pat@"), "{d}");
    }
    db.close().await.unwrap();

    // The tokens were mailed, never logged.
    if let Ok(path) = std::env::var("TEST_LOG_FILE") {
        let logs = std::fs::read_to_string(path).unwrap_or_default();
        for t in [&first, &second, &third] {
            assert!(!logs.contains(t.as_str()), "an invitation token is in the logs");
        }
    }
    app.stop().await;
}
