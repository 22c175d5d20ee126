//! Sign-in, throttling, MFA, sessions and timeouts.

use crate::harness::*;
use domain::Role;
use sea_orm::ConnectionTrait;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db.connect().await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string()))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    n
}

#[tokio::test]
async fn wrong_password_and_unknown_account_get_the_same_answer() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    let (s1, b1) = c.call("sign_in", &[("email", "ada@clinic.test"), ("password", "not the password!")]).await;
    let (s2, b2) = c.call("sign_in", &[("email", "nobody@clinic.test"), ("password", "not the password!")]).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2, "the answer must not reveal whether the account exists");
    assert_eq!(b1["message"], "The email or password is incorrect.");
    assert!(c.cookie("__Host-hermetic_session").is_none());
    // both failures are audited: the known account in its organisation's chain, the unknown in the system chain
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_event WHERE action = 'auth.login.failed' AND organisation_id IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.login.failed' AND organisation_id IS NULL")
            .await,
        1
    );
    // the attempted (unknown) email is stored nowhere
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_event WHERE details LIKE '%nobody%' OR target_id LIKE '%nobody%'")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn account_is_throttled_after_five_failures_whether_or_not_it_exists() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    for email in ["ada@clinic.test", "ghost@clinic.test"] {
        for _ in 0..5 {
            let (s, _) = c.call("sign_in", &[("email", email), ("password", "wrong password!!")]).await;
            assert_eq!(s, 401);
        }
        let (s, b) = c.call("sign_in", &[("email", email), ("password", PASSWORD)]).await;
        assert_eq!(s, 429, "{email}: {b}");
        assert_eq!(b["code"], "throttled");
        assert!(b["message"].as_str().unwrap().starts_with("Too many attempts"));
    }
    // The lock expires: a minute later the right password works.
    app.advance(61);
    let (s, b) = c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!(s, 200, "{b}");
    assert!(count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.login.throttled'").await >= 2);
    app.stop().await;
}

#[tokio::test]
async fn one_address_is_throttled_across_accounts() {
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_THROTTLE__IP_MAX_FAILURES", "6".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    for i in 0..6 {
        let (s, _) =
            c.call("sign_in", &[("email", &format!("guess{i}@clinic.test")), ("password", "wrong password!!")]).await;
        assert_eq!(s, 401);
    }
    let (s, _) = c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!(s, 429, "a spray across many accounts from one address is stopped");
    app.stop().await;
}

#[tokio::test]
async fn mfa_enrolment_sign_in_and_replayed_code() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, secret) = app.sign_in("ada@clinic.test", None).await;
    let (s, _) = c.page("/").await;
    assert_eq!(s, 200);
    c.call("sign_out", &[]).await;
    assert_eq!(c.get("/").await.status, 303);

    // Next sign-in asks for the code; the code of the current step works once.
    app.advance(30);
    let c2 = app.client();
    c2.page("/login").await;
    let (s, step) = c2.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!((s, step.as_str()), (200, Some("mfa")));
    let pre_mfa = c2.cookie("__Host-hermetic_session").unwrap();
    assert_eq!(c2.get("/").await.headers["location"], "/login/mfa", "no app access before MFA");
    c2.page("/login/mfa").await;
    let code = app.totp(&secret);
    let (s, b) = c2.call("verify_mfa", &[("code", &code)]).await;
    assert_eq!(s, 200, "{b}");
    assert_ne!(c2.cookie("__Host-hermetic_session").unwrap(), pre_mfa, "session token is replaced after MFA");

    // The same code again (same 30-second step) on a new sign-in is refused.
    let c3 = app.client();
    c3.page("/login").await;
    c3.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    c3.page("/login/mfa").await;
    let (s, b) = c3.call("verify_mfa", &[("code", &code)]).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("code_reused")), "{b}");
    app.advance(30);
    let (s, b) = c3.call("verify_mfa", &[("code", &app.totp(&secret))]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.mfa.replayed'").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn recovery_codes_work_once_and_guessing_ends_the_session() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    // Enrol by hand to see the recovery codes.
    let c = app.client();
    c.page("/login").await;
    c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    let (_, html) = c.page("/login/enrol").await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(extract(&html, "data-test=\"totp-secret\" class=\"secret\">", "<").unwrap().as_bytes())
        .unwrap();
    let (s, codes) = c.call("confirm_enrolment", &[("code", &app.totp(&secret))]).await;
    assert_eq!(s, 200);
    let codes: Vec<String> =
        codes["codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(codes.len(), 10);

    let use_code = |code: String| {
        let app = &app;
        async move {
            let c = app.client();
            c.page("/login").await;
            c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
            c.page("/login/mfa").await;
            c.call("verify_mfa", &[("code", &code)]).await
        }
    };
    assert_eq!(use_code(codes[0].to_uppercase()).await.0, 200, "recovery codes are case-insensitive");
    assert_eq!(use_code(codes[0].clone()).await.1["code"], "invalid_code", "and single-use");

    // Five wrong codes end the pre-MFA session (a user with no earlier failures).
    let org = service::users::find_for_operator(&app.services, "ada@clinic.test").await.unwrap().0;
    app.add_user(org, "bea@clinic.test", Role::Marketer).await;
    let (_, secret) = app.sign_in("bea@clinic.test", None).await;
    app.advance(31);
    let c = app.client();
    c.page("/login").await;
    c.call("sign_in", &[("email", "bea@clinic.test"), ("password", PASSWORD)]).await;
    c.page("/login/mfa").await;
    for _ in 0..4 {
        assert_eq!(c.call("verify_mfa", &[("code", "000000")]).await.1["code"], "invalid_code");
    }
    assert_eq!(c.call("verify_mfa", &[("code", "000000")]).await.1["code"], "session_expired");
    // Even the right code is now refused (the page's token belonged to the ended session), and a
    // reload of the MFA page goes back to the sign-in page.
    let (s, _) = c.call("verify_mfa", &[("code", &app.totp(&secret))]).await;
    assert!(s == 401 || s == 403, "{s}");
    assert_eq!(c.get("/login/mfa").await.headers["location"], "/login");
    app.stop().await;
}

#[tokio::test]
async fn idle_and_absolute_timeouts() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, secret) = app.sign_in("ada@clinic.test", None).await;
    // Polling the status does not count as activity.
    app.advance(800);
    let (s, st) = c.call("session_status", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(st["idle_remaining_secs"], 100);
    app.advance(101);
    let r = c.get("/").await;
    assert_eq!((r.status, r.headers["location"].to_str().unwrap()), (303, "/login"));
    assert!(c.cookie("__Host-hermetic_session").is_none(), "the dead cookie is cleared");
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.session.expired' AND details LIKE '%idle%'")
            .await,
        1
    );

    // Activity keeps a session alive, but never past 12 hours.
    app.advance(30);
    let (c, _) = app.sign_in("ada@clinic.test", Some(&secret)).await;
    for _ in 0..(12 * 60 / 14) {
        app.advance(14 * 60);
        assert_eq!(c.get("/").await.status, 200);
    }
    app.advance(14 * 60);
    assert_eq!(c.get("/").await.status, 303);
    app.stop().await;
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Marketer).await;
    let (a, secret) = app.sign_in("ada@clinic.test", None).await;
    app.advance(30);
    let (b, _) = app.sign_in("ada@clinic.test", Some(&secret)).await;
    let (s, body) =
        a.call("change_password", &[("current", "wrong current pw"), ("new", "a brand new passphrase")]).await;
    assert_eq!((s, body["code"].as_str()), (422, Some("invalid")));
    let (s, body) = a.call("change_password", &[("current", PASSWORD), ("new", "password123456")]).await;
    assert_eq!(s, 422, "common passwords are refused: {body}");
    let (s, csrf) = a.call("change_password", &[("current", PASSWORD), ("new", "a brand new passphrase")]).await;
    assert_eq!(s, 200);
    a.set_csrf(csrf.as_str().map(str::to_string));
    assert_eq!(a.get("/").await.status, 200, "this session continues");
    assert_eq!(a.call("my_sessions", &[]).await.0, 200, "with its new CSRF token");
    assert_eq!(b.get("/").await.status, 303, "the other session has ended");
    let c = app.client();
    c.page("/login").await;
    assert_eq!(c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await.0, 401);
    assert_eq!(c.call("sign_in", &[("email", "ada@clinic.test"), ("password", "a brand new passphrase")]).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn session_cookie_is_host_only_secure_httponly_strict() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    let r = c
        .post_raw(
            "/api/sign_in",
            "application/x-www-form-urlencoded",
            format!("email=ada%40clinic.test&password={}", urlencode(PASSWORD)),
            c.csrf(),
            &[],
        )
        .await;
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-hermetic_session="))
        .unwrap();
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Domain="));
    app.stop().await;
}

#[tokio::test]
async fn disabled_users_lose_their_sessions_and_cannot_sign_in() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "mark@clinic.test", Role::Marketer).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (mark, _) = app.sign_in("mark@clinic.test", None).await;
    let (_, users) = admin.call("list_users", &[]).await;
    let id = users.as_array().unwrap().iter().find(|u| u["email"] == "mark@clinic.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, u) = admin.call("disable_user", &[("user_id", &id)]).await;
    assert_eq!((s, u["status"].as_str()), (200, Some("disabled")));
    assert_eq!(mark.get("/").await.status, 303);
    let c = app.client();
    c.page("/login").await;
    let (s, b) = c.call("sign_in", &[("email", "mark@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("invalid_credentials")));
    // Admins cannot lock themselves out.
    let me = users.as_array().unwrap().iter().find(|u| u["email"] == "admin@clinic.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(admin.call("disable_user", &[("user_id", &me)]).await.0, 422);
    assert_eq!(admin.call("change_role", &[("user_id", &me), ("role", "analyst")]).await.0, 422);
    app.stop().await;
}
