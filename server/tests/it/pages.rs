//! Pages render while other servers in the same process are being built.

use crate::harness::*;
use domain::Role;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Building a router lists the app's pages, which in leptos_server switches resource loading off
/// for the whole process while it runs (leptos-rs/leptos#4773): a page whose resource first polled
/// in that window waited forever. The integration tests build a router per test, two tests at a
/// time, and one such hang held CI until its time limit. The list is now made once per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_while_other_servers_in_the_process_are_built() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let builder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut built = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // What every server start does (server::web::router).
                assert!(!server::web::page_routes().is_empty());
                built += 1;
                // A plain thread (not the runtime): a short pause between listings.
                std::thread::park_timeout(Duration::from_millis(1));
            }
            built
        })
    };
    for i in 0..60 {
        // The templates page loads two resources during the server render.
        let r = tokio::time::timeout(Duration::from_secs(10), c.page("/templates")).await;
        let Ok((status, html)) = r else {
            stop.store(true, Ordering::Relaxed);
            panic!("render {i} of /templates never finished while routers were being built");
        };
        assert_eq!(status, 200, "{html}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(builder.join().unwrap() > 0);
    app.stop().await;
}

/// Issue 19 item 10: one not-found page, always HTTP 404 — for unknown paths, for malformed ids and
/// for ids that do not exist (or belong to another organisation) in every area — with a way back;
/// pages that exist still answer 200.
#[tokio::test]
async fn unknown_paths_and_ids_answer_404_with_a_way_back_in_every_area() {
    let app = TestApp::start_with(Options { dns: true, ..Options::default() }).await;
    let org = app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    app.verified_domain(other, "other.test").await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let actor = service::Actor::system(org, "test");
    let svc = &app.services;
    let contact = crate::campaigns::contact(svc, &actor, "pat@patients.test", "Pat", true).await;
    let list = crate::campaigns::list_with(svc, &actor, &[contact]).await;
    let template = crate::campaigns::template(svc, &actor).await;
    let campaign =
        service::campaigns::create(svc, &actor, &crate::campaigns::settings("Spring", list, template)).await.unwrap();
    let segment: domain::segments::SegmentDefinition =
        serde_json::from_str(crate::role_matrix::SAMPLE_SEGMENT).unwrap();
    let segment = service::segments::create(svc, &actor, "Everyone", &segment).await.unwrap();
    // Another organisation's campaign looks like no campaign at all.
    let theirs = {
        let a = service::Actor::system(other, "test");
        let p = crate::campaigns::contact(svc, &a, "x@patients.test", "X", true).await;
        let l = crate::campaigns::list_with(svc, &a, &[p]).await;
        let t = crate::campaigns::template(svc, &a).await;
        let mut theirs = crate::campaigns::settings("Theirs", l, t);
        theirs.from_email = "news@other.test".into();
        theirs.reply_to = None;
        service::campaigns::create(svc, &a, &theirs).await.unwrap()
    };

    for path in [
        "/contacts".to_string(),
        format!("/contacts/{contact}"),
        format!("/campaigns/{campaign}"),
        format!("/campaigns/{campaign}/report"),
        format!("/segments/{segment}"),
        format!("/templates/{template}"),
    ] {
        let (s, html) = c.page(&path).await;
        assert_eq!(s, 200, "{path}");
        assert!(!html.contains("data-test=\"not-found\""), "{path}");
    }
    let none = uuid::Uuid::now_v7();
    // (path, whether the server render already holds the page: campaigns and segments load their
    // record in the browser, so the panel appears after hydration — the browser test sees it —
    // while the status is 404 from the server render either way).
    for (path, rendered) in [
        ("/no-such-page".to_string(), true),
        ("/contacts/lists/nope/deeper".to_string(), true),
        (format!("/contacts/{none}"), true),
        ("/contacts/not-an-id".to_string(), true),
        (format!("/campaigns/{none}"), false),
        (format!("/campaigns/{theirs}"), false),
        ("/campaigns/not-an-id".to_string(), true),
        (format!("/campaigns/{none}/report"), false),
        ("/campaigns/not-an-id/report".to_string(), true),
        (format!("/segments/{none}"), false),
        ("/segments/not-an-id".to_string(), true),
        (format!("/templates/{none}"), true),
        ("/templates/not-an-id".to_string(), true),
    ] {
        let (s, html) = c.page(&path).await;
        assert_eq!(s, 404, "{path}");
        if rendered {
            assert!(html.contains("data-test=\"not-found\""), "{path}: the one not-found page");
            assert!(html.contains("Go to the home page"), "{path}: a way back");
        }
    }
    // Signed out, an unknown path is still a 404 page (not a redirect or a bare error).
    let guest = app.client();
    let (s, html) = guest.page("/no-such-page").await;
    assert_eq!(s, 404);
    assert!(html.contains("data-test=\"not-found\""));
    app.stop().await;
}
