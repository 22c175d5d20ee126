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
    let mail = service::mail::captured(&app.services, org, 10).await.unwrap();
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
