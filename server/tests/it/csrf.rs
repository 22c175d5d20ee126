//! State-changing requests need the CSRF token of their session (or, before sign-in, of the
//! `__Host-` CSRF cookie) and must come from our own origin.

use crate::harness::*;
use domain::Role;

#[tokio::test]
async fn state_changing_requests_without_the_token_are_refused() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let good = c.csrf();
    let body = || "email=x%40clinic.test&display_name=X&role=analyst".to_string();
    let form = "application/x-www-form-urlencoded";

    let r = c.post_raw("/api/invite_user", form, body(), None, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("\"code\":\"csrf\""), "{}", r.body);
    assert_eq!(c.post_raw("/api/invite_user", form, body(), Some("forged".into()), &[]).await.status, 403);

    // A token from another session does not work either.
    let other = app.client();
    other.page("/login").await;
    assert_eq!(c.post_raw("/api/invite_user", form, body(), other.csrf(), &[]).await.status, 403);

    // A cross-site request is refused even with the right token.
    let r = c.post_raw("/api/invite_user", form, body(), good.clone(), &[("origin", "https://evil.example")]).await;
    assert_eq!(r.status, 403);
    let r = c.post_raw("/api/invite_user", form, body(), good.clone(), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(r.status, 403);

    // Nothing was created by the refused requests; the proper request works.
    let (_, users) = c.call("list_users", &[]).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    let r = c.post_raw("/api/invite_user", form, body(), good, &[("origin", &app.base.clone())]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Before sign-in the token comes from the CSRF cookie.
    let anon = app.client();
    anon.page("/login").await;
    let r = anon.post_raw("/api/sign_in", form, "email=a%40b.test&password=x".into(), None, &[]).await;
    assert_eq!(r.status, 403);
    app.stop().await;
}
