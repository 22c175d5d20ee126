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
