//! Security headers on every kind of response.

use crate::harness::*;
use domain::Role;

#[tokio::test]
async fn pages_carry_a_nonce_csp_and_are_never_cached() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    for path in ["/login", "/", "/audit", "/no-such-page"] {
        let r = c.get(path).await;
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let csp = h("content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("object-src 'none'")
                && csp.contains("base-uri 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{path}: {csp}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
        assert!(h("strict-transport-security").starts_with("max-age="), "{path}");
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "no-referrer");
        if r.status == 200 {
            // Every inline script carries this response's nonce.
            let nonce = extract(&csp, "'nonce-", "'").unwrap();
            assert!(r.body.matches("<script").count() >= 1);
            for (i, _) in r.body.match_indices("<script") {
                let tag = &r.body[i..i + r.body[i..].find('>').unwrap()];
                assert!(tag.contains(&format!("nonce=\"{nonce}\"")), "{path}: script without nonce: {tag}");
            }
            assert!(!r.body.contains(" style=\""), "{path}: inline style attribute would be blocked by the CSP");
        }
    }
    assert_eq!(c.get("/no-such-page").await.status, 404);
    let r = c.call("current_user", &[]).await;
    assert_eq!(r.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn api_responses_are_not_cached_and_static_files_are_public() {
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_SITE_ROOT", format!("{}/../public", env!("CARGO_MANIFEST_DIR")))],
        ..Default::default()
    })
    .await;
    let c = app.client();
    c.page("/login").await;
    let r = c.post_raw("/api/current_user", "application/x-www-form-urlencoded", String::new(), c.csrf(), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "no-store");
    let r = c.get("/favicon.svg").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["cache-control"].to_str().unwrap().starts_with("public"));
    assert_eq!(c.get("/healthz").await.body, "ok");
    app.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    let app = TestApp::start().await;
    let c = app.client();
    c.page("/login").await;
    let big = format!("email=a%40b.test&password={}", "x".repeat(2 * 1024 * 1024));
    let r = c.post_raw("/api/sign_in", "application/x-www-form-urlencoded", big, c.csrf(), &[]).await;
    assert_eq!(r.status, 413);
    let r = c.post_raw("/api/sign_in", "application/x-www-form-urlencoded", "%%%".into(), c.csrf(), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("bad_request"));
    // A password longer than any policy allows is refused without hashing it.
    let long = format!("email=a%40b.test&password={}", "y".repeat(100_000));
    let r = c.post_raw("/api/sign_in", "application/x-www-form-urlencoded", long, c.csrf(), &[]).await;
    assert_eq!(r.status, 401);
    app.stop().await;
}
