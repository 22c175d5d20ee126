//! Issue 18, sign-in and session hardening: bounded password hashing, attempts counted before
//! hashing, the `next` parameter after MFA, polls that do not keep a session alive, the client
//! address behind proxies, parallel MFA guesses and recovery codes, and invitations that do not
//! reveal accounts of other organisations.

use crate::harness::*;
use domain::Role;
use futures::future::join_all;
use sea_orm::ConnectionTrait;

const FORM: &str = "application/x-www-form-urlencoded";

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

async fn strings(app: &TestApp, sql: &str) -> Vec<String> {
    let db = app.db.connect().await;
    let rows =
        db.query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string())).await.unwrap();
    db.close().await.unwrap();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

fn sign_in_body(email: &str, password: &str) -> String {
    format!("email={}&password={}", urlencode(email), urlencode(password))
}

fn code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

/// A six-digit code that is not valid in the current step nor its neighbours.
fn wrong_code(app: &TestApp, secret: &[u8]) -> String {
    let step = service::auth::totp::step_at(app.now().timestamp());
    let valid: Vec<u32> =
        [step - 1, step, step + 1].iter().map(|s| service::auth::totp::code_for_step(secret, *s)).collect();
    (0..1_000_000u32)
        .map(|n| (n * 7919 + 13) % 1_000_000)
        .find(|n| !valid.contains(n))
        .map(|n| format!("{n:06}"))
        .unwrap()
}

// ---- Item 4: sign-in cannot exhaust memory ----

#[tokio::test]
async fn a_burst_of_sign_ins_never_runs_more_hashes_than_the_bound() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("HERMETIC_THROTTLE__HASH_CONCURRENCY", "1".into()),
            ("HERMETIC_THROTTLE__HASH_WAIT_MS", "0".into()),
            ("HERMETIC_THROTTLE__IP_MAX_FAILURES", "100000".into()),
        ],
        ..Default::default()
    })
    .await;
    let org = app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    for i in 0..4 {
        app.add_user(org, &format!("user{i}@clinic.test"), Role::Marketer).await;
    }
    let c = app.client();
    c.page("/login").await;
    let csrf = c.csrf();
    // Anonymous attempts at once: wrong passwords for real accounts and for unknown ones.
    let calls = (0..64).map(|i| {
        let email = if i % 16 < 4 { format!("user{}@clinic.test", i % 16) } else { format!("nobody{i}@clinic.test") };
        let body = sign_in_body(&email, "not the password at all");
        let (c, csrf) = (&c, csrf.clone());
        async move { c.post_raw("/api/sign_in", FORM, body, csrf, &[]).await }
    });
    let answers = join_all(calls).await;
    let mut busy = 0;
    for r in &answers {
        match r.status {
            503 => {
                busy += 1;
                assert_eq!(code(&r.body).as_deref(), Some("busy"), "{}", r.body);
                let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1);
            }
            401 => assert_eq!(code(&r.body).as_deref(), Some("invalid_credentials")),
            // Four failures per real account are allowed; a fifth wave could be throttled.
            429 => assert!(r.headers.contains_key("retry-after")),
            s => panic!("unexpected answer {s}: {}", r.body),
        }
    }
    let gate = app.services.hashing();
    assert!(gate.peak() <= 1, "{} hashes ran at once with a bound of 1", gate.peak());
    assert!(busy >= 1, "a burst of 64 over one hashing slot must see some 503s");
    // The server is fine afterwards.
    let (s, step) = c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!(s, 200, "{step}");
    app.stop().await;
}

#[tokio::test]
async fn parallel_wrong_passwords_for_one_account_are_counted_before_hashing() {
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_THROTTLE__IP_MAX_FAILURES", "100000".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    let csrf = c.csrf();
    let hashes_before = app.services.hashing().total();
    let answers =
        join_all((0..50).map(|_| {
            let (c, csrf) = (&c, csrf.clone());
            async move {
                c.post_raw("/api/sign_in", FORM, sign_in_body("ada@clinic.test", "wrong password!!"), csrf, &[]).await
            }
        }))
        .await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let locked = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + locked, 50, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(checked <= 5, "{checked} passwords were checked; the limit is 5");
    assert!(app.services.hashing().total() - hashes_before <= 5, "refused attempts must not hash");
    assert!(count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.login.failed'").await <= 5);
    // Locked now for a minute, even for the right password.
    let retry_after = |r: &Resp| r.headers["retry-after"].to_str().unwrap().parse::<i64>().unwrap();
    let r = c.post_raw("/api/sign_in", FORM, sign_in_body("ada@clinic.test", PASSWORD), c.csrf(), &[]).await;
    assert_eq!(r.status, 429);
    assert!((1..=60).contains(&retry_after(&r)), "{:?}", r.headers);
    // One more try after the lock; failing it locks for twice as long.
    app.advance(61);
    let r = c.post_raw("/api/sign_in", FORM, sign_in_body("ada@clinic.test", "wrong password!!"), c.csrf(), &[]).await;
    assert_eq!(r.status, 401);
    let r = c.post_raw("/api/sign_in", FORM, sign_in_body("ada@clinic.test", PASSWORD), c.csrf(), &[]).await;
    assert_eq!(r.status, 429);
    assert!((61..=120).contains(&retry_after(&r)), "{:?}", r.headers);
    // After the lock, the right password works and clears the counter.
    app.advance(121);
    app.sign_in("ada@clinic.test", None).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM login_throttle WHERE key_kind = 'account'").await,
        0,
        "a successful sign-in clears the account's counter"
    );
    app.stop().await;
}

// ---- Item 5: open redirect after MFA ----

#[tokio::test]
async fn the_next_parameter_after_mfa_stays_on_our_origin() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (_, secret) = app.sign_in("ada@clinic.test", None).await;
    let base = reqwest::Url::parse(&app.base).unwrap();
    // (query string as a link carries it, the value the page hands to verify_mfa, where we must end)
    let cases = [
        ("/%09/evil.example", "/\t/evil.example", "/"),
        ("%2F%2Fevil.example", "//evil.example", "/"),
        ("/%5Cevil.example", "/\\evil.example", "/"),
        ("https%3A%2F%2Fevil.example", "https://evil.example", "/"),
        ("/%252F%252Fevil.example", "/%2F%2Fevil.example", "/"),
        ("/%0A/evil.example", "/\n/evil.example", "/"),
        ("/audit", "/audit", "/audit"),
        ("/campaigns%3Fpage%3D2", "/campaigns?page=2", "/campaigns?page=2"),
    ];
    for (raw, value, want) in cases {
        app.advance(31);
        let c = app.client();
        let (s, _) = c.page(&format!("/login?next={raw}")).await;
        assert_eq!(s, 200);
        let (s, step) = c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
        assert_eq!((s, step.as_str()), (200, Some("mfa")));
        let (s, _) = c.page(&format!("/login/mfa?next={raw}")).await;
        assert_eq!(s, 200);
        let (s, target) = c.call("verify_mfa", &[("code", &app.totp(&secret)), ("next", value)]).await;
        assert_eq!(s, 200, "{target}");
        let target = target.as_str().unwrap();
        let landed = base.join(target).unwrap();
        assert_eq!(landed.origin(), base.origin(), "{raw}: after MFA the browser would go to {landed}");
        assert_eq!(target, want, "{raw}");
    }
    app.stop().await;
}

// ---- Item 6: polls do not count as activity ----

#[tokio::test]
async fn a_page_that_only_polls_is_signed_out_after_the_idle_timeout() {
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let settings: serde_json::Value = serde_json::from_str(&crate::role_matrix::sample_campaign("Polled")).unwrap();
    let (s, campaign) = c.call_json("create_campaign", serde_json::json!({ "settings": settings })).await;
    assert_eq!(s, 200, "{campaign}");
    let campaign = campaign.as_str().unwrap().to_string();
    let (s, up) = c.upload(b"email,first_name\npat@example.test,Pat\n".to_vec()).await;
    assert_eq!(s, 200, "{up}");
    let import = up["id"].as_str().unwrap().to_string();
    // The progress pages poll every second or two; nobody touches the keyboard.
    let idle = 15 * 60;
    let mut elapsed = 0;
    let ended_at = loop {
        app.advance(60);
        elapsed += 60;
        let (s1, b1) = c.call("campaign_progress", &[("id", &campaign)]).await;
        if s1 != 200 {
            // The session is gone (its CSRF token with it).
            assert!(matches!(s1, 401 | 403), "{s1} {b1}");
            break elapsed;
        }
        let (s2, b2) = c.call("import_status", &[("id", &import)]).await;
        assert_eq!(s2, 200, "{b2}");
        let (s3, b3) = c.call("session_status", &[]).await;
        assert_eq!(s3, 200, "{b3}");
        assert!(elapsed <= 60 * 60, "an unattended progress page is still signed in after {elapsed} s");
    };
    assert_eq!(ended_at, idle, "the session ends at the idle timeout, not later");
    let r = c.get("/").await;
    assert_eq!((r.status, r.headers["location"].to_str().unwrap()), (303, "/login"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.session.expired' AND details LIKE '%idle%'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_person_s_actions_still_keep_the_session_alive() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    for _ in 0..4 {
        app.advance(10 * 60);
        assert_eq!(c.call("list_campaigns", &[]).await.0, 200);
    }
    assert_eq!(c.get("/").await.status, 200);
    app.stop().await;
}

// ---- Item 7: X-Forwarded-For from the right end ----

#[tokio::test]
async fn a_forged_forwarded_for_neither_escapes_the_throttle_nor_reaches_the_audit_trail() {
    let app = TestApp::start_with(Options {
        env: vec![
            // The test client stands in for the proxy: it connects from loopback.
            ("HERMETIC_TRUSTED_PROXIES", "127.0.0.1, ::1".into()),
            ("HERMETIC_THROTTLE__IP_MAX_FAILURES", "3".into()),
        ],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    let attempt = |email: String, password: &'static str, xff: String| {
        let c = &c;
        async move {
            c.post_raw("/api/sign_in", FORM, sign_in_body(&email, password), c.csrf(), &[("x-forwarded-for", &xff)])
                .await
        }
    };
    // The proxy appends the real client (203.0.113.7); the client writes a new address on the left each time.
    for i in 0..3 {
        let r =
            attempt(format!("guess{i}@clinic.test"), "wrong password!!", format!("198.51.100.{i}, 203.0.113.7")).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = attempt("ada@clinic.test".into(), PASSWORD, "198.51.100.99, 203.0.113.7".into()).await;
    assert_eq!(r.status, 429, "a new leftmost address must not escape the address throttle: {}", r.body);
    // Someone else behind the same proxy is not affected.
    let r = attempt("ada@clinic.test".into(), PASSWORD, "203.0.113.8".into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ips = strings(&app, "SELECT DISTINCT ip FROM audit_event WHERE ip IS NOT NULL ORDER BY ip").await;
    assert_eq!(ips, vec!["203.0.113.7".to_string(), "203.0.113.8".to_string()], "forged addresses in the audit trail");
    let sessions = strings(&app, "SELECT DISTINCT ip FROM user_session WHERE ip IS NOT NULL").await;
    assert_eq!(sessions, vec!["203.0.113.8".to_string()]);
    app.stop().await;
}

// ---- Item 14: parallel MFA guesses and recovery codes ----

#[tokio::test]
async fn parallel_wrong_mfa_codes_cannot_exceed_the_limit() {
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_THROTTLE__ACCOUNT_MAX_FAILURES", "1000".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (_, secret) = app.sign_in("ada@clinic.test", None).await;
    app.advance(31);
    let c = app.client();
    c.page("/login").await;
    assert_eq!(c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await.1, "mfa");
    c.page("/login/mfa").await;
    let wrong = wrong_code(&app, &secret);
    let answers = join_all((0..20).map(|_| {
        let (c, wrong) = (&c, wrong.clone());
        async move { c.call("verify_mfa", &[("code", &wrong)]).await }
    }))
    .await;
    let codes: Vec<String> = answers.iter().map(|(_, b)| b["code"].as_str().unwrap_or("").to_string()).collect();
    // Refused either way: a wrong code or an ended session (401), or, for a request that reaches
    // the server after the session ended, its CSRF token gone with it (403).
    assert!(
        answers.iter().all(|(s, b)| matches!(
            (s, b["code"].as_str()),
            (401, Some("invalid_code" | "session_expired")) | (403, Some("csrf"))
        )),
        "{codes:?}"
    );
    assert!(codes.iter().any(|c| c == "invalid_code"), "{codes:?}");
    let checked = count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.mfa.failed'").await;
    assert!(checked <= 5, "{checked} codes were checked on one session; the limit is 5 ({codes:?})");
    assert!(count(&app, "SELECT max(mfa_failures)::bigint FROM user_session").await <= 5);
    assert!(codes.iter().filter(|c| *c == "invalid_code").count() <= 4, "{codes:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_overlong_mfa_code_is_a_wrong_code() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    app.sign_in("ada@clinic.test", None).await;
    app.advance(31);
    let c = app.client();
    c.page("/login").await;
    assert_eq!(c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await.1, "mfa");
    c.page("/login/mfa").await;
    for long in ["1".repeat(1025), "1".repeat(100_000), format!("{}{}", "a".repeat(2000), "-")] {
        let (s, b) = c.call("verify_mfa", &[("code", &long)]).await;
        assert_eq!((s, b["code"].as_str()), (401, Some("invalid_code")), "a {}-byte code: {b}", long.len());
    }
    assert_eq!(c.get("/").await.headers["location"], "/login/mfa", "still not signed in");
    assert_eq!(count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.mfa.ok'").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn one_recovery_code_used_in_parallel_works_once() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let c = app.client();
    c.page("/login").await;
    c.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await;
    let (_, html) = c.page("/login/enrol").await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(extract(&html, "data-test=\"totp-secret\" class=\"secret\">", "<").unwrap().as_bytes())
        .unwrap();
    let (s, codes) = c.call("confirm_enrolment", &[("code", &app.totp(&secret))]).await;
    assert_eq!(s, 200);
    let recovery = codes["codes"][0].as_str().unwrap().to_string();
    // Several browsers past the password step, then the same code in all of them at once.
    let mut pending = Vec::new();
    for _ in 0..8 {
        let p = app.client();
        p.page("/login").await;
        assert_eq!(p.call("sign_in", &[("email", "ada@clinic.test"), ("password", PASSWORD)]).await.1, "mfa");
        p.page("/login/mfa").await;
        pending.push(p);
    }
    let answers = join_all(pending.iter().map(|p| {
        let recovery = recovery.clone();
        async move { p.call("verify_mfa", &[("code", &recovery)]).await }
    }))
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "one recovery code signed in {ok} sessions: {answers:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM audit_event WHERE action = 'auth.mfa.recovery_code_used'").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM recovery_code WHERE used_at IS NOT NULL").await, 1);
    app.stop().await;
}

// ---- Item 15: invitations do not reveal accounts in other organisations ----

/// The invitation mails captured for `org`: (recipient, subject, text with the token blanked, token).
async fn invitation_mails(app: &TestApp, org: domain::ids::OrganisationId) -> Vec<(String, String, String, String)> {
    let mail = service::mail::captured(&app.services, &service::Actor::system(org, "test"), 50).await.unwrap();
    mail.iter()
        .map(|m| {
            let raw = m.raw.expose().replace("=\r\n", "");
            let at = raw.find("/invite#").expect("an invitation link") + "/invite#".len();
            let token: String =
                raw[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
            let parts = service::mail::mime::parse(m.raw.expose());
            let text = parts.text.unwrap_or_default().replace(&token, "TOKEN");
            (m.recipient.expose().clone(), m.subject.expose().clone(), text, token)
        })
        .collect()
}

#[tokio::test]
async fn inviting_another_organisation_s_user_looks_like_any_invitation() {
    let app = TestApp::start().await;
    let clinic = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    app.add_user(other, "victim@other.test", Role::Marketer).await;
    app.add_user(clinic, "member@clinic.test", Role::Marketer).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;

    let invite = |email: &'static str| {
        let admin = &admin;
        async move { admin.call("invite_user", &[("email", email), ("display_name", "Pat"), ("role", "marketer")]).await }
    };
    let (s1, fresh) = invite("fresh@elsewhere.test").await;
    let (s2, existing) = invite("victim@other.test").await;
    assert_eq!((s1, s2), (200, 200), "{fresh} {existing}");
    let shape = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(shape(&fresh), shape(&existing));
    assert!(fresh.get("invite_url").is_none(), "the admin never sees the link: it goes to the invited address");
    assert_eq!(existing["email"], "victim@other.test");

    // The users page shows both the same way.
    let (_, users) = admin.call("list_users", &[]).await;
    let row = |email: &str| users.as_array().unwrap().iter().find(|u| u["email"] == email).cloned().unwrap();
    for (a, b) in [(row("fresh@elsewhere.test"), row("victim@other.test"))] {
        for key in ["status", "role", "mfa_enrolled", "last_sign_in_at", "display_name"] {
            assert_eq!(a[key], b[key], "{key}");
        }
        assert_eq!(a["status"], "invited");
    }
    // The same audit row.
    let details = strings(&app, "SELECT details FROM audit_event WHERE action = 'user.invited' ORDER BY seq").await;
    assert_eq!(details.len(), 2);
    assert_eq!(details[0], details[1]);

    // Each address receives the same invitation (only the address and token differ).
    let mails = invitation_mails(&app, clinic).await;
    assert_eq!(mails.len(), 2);
    let by = |to: &str| mails.iter().find(|m| m.0 == to).cloned().unwrap();
    let (f, v) = (by("fresh@elsewhere.test"), by("victim@other.test"));
    assert_eq!(f.1, v.1, "subjects");
    assert_eq!(f.2, v.2, "bodies");

    // The person with an account elsewhere cannot use it (and is told why); their account is untouched.
    let guest = app.client();
    guest.page("/invite").await;
    let (s, b) = guest.call("lookup_invite", &[("token", &v.3)]).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["message"].as_str().unwrap().contains("already has a Hermetic account"), "{b}");
    let (s, _) = guest.call("accept_invite", &[("token", &v.3), ("password", "an entirely new passphrase")]).await;
    assert_eq!(s, 422);
    let (victim, _) = app.sign_in("victim@other.test", None).await;
    let (_, me) = victim.call("current_user", &[]).await;
    assert_eq!(me["organisation_name"], "Other");
    // The fresh address joins.
    let (s, info) = guest.call("lookup_invite", &[("token", &f.3)]).await;
    assert_eq!((s, info["email"].as_str()), (200, Some("fresh@elsewhere.test")));
    assert_eq!(
        guest.call("accept_invite", &[("token", &f.3), ("password", "an entirely new passphrase")]).await.0,
        200
    );

    // Within one's own organisation, "already a member" is fine to say.
    let (s, b) = invite("member@clinic.test").await;
    assert_eq!((s, b["code"].as_str()), (409, Some("conflict")), "{b}");
    app.stop().await;
}
