//! `/metrics` over real HTTP: the token (off without one, 401 without it, never a session), the
//! separate listener, queue depths read from a real database, and a real `server serve` process
//! whose scrape — parsed by the Prometheus client's own text-format parser
//! (scripts/lib/prom_parse.py) — counts exactly the API calls, sends and jobs the test caused, with
//! no address, id or PHI marker in any label.
//!
//! The exact counts come from a process of their own: the recorder is process-wide, and the other
//! integration tests in this binary record into it concurrently.

use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, tools};
use domain::Role;
use domain::api::{NewKey, Scope};
use domain::campaigns::CampaignStatus;
use serde_json::{Value, json};
use service::Actor;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The token the tests configure (43 characters, like `openssl rand -base64 32`).
pub const TOKEN: &str = "mZ3qLr8V0cXp2kT9wYb4nH6sJd1fGa7eUo5iQ-tE_yR";
const MARKER: &str = "PHI-MARKER-m7Kq2";

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    help: String,
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parse a scrape with prometheus_client's parser (and the format checks prom_parse.py adds).
fn parse(body: &str) -> Vec<Sample> {
    let dir = std::env::temp_dir().join(format!("hermetic-metrics-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("scrape.txt");
    std::fs::write(&file, body).unwrap();
    let t = tools();
    let out = Command::new(&t.python).arg(&t.prom_parse).arg(&file).output().expect("python");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the scrape is not valid Prometheus text: {}\n--- scrape ---\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = Vec::new();
    for f in families {
        for s in f["samples"].as_array().unwrap() {
            let mut labels: Vec<(String, String)> = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            samples.push(Sample {
                family: f["name"].as_str().unwrap().to_string(),
                kind: f["type"].as_str().unwrap().to_string(),
                help: f["help"].as_str().unwrap_or("").to_string(),
                name: s["name"].as_str().unwrap().to_string(),
                labels,
                value: s["value"].as_f64().unwrap(),
            });
        }
    }
    samples
}

/// The sum of the samples named `name` whose labels include all of `labels` (0 when none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v)))
        .map(|s| s.value)
        .sum()
}

/// A 36-character UUID (or its 32-digit simple form) anywhere in `s`.
fn has_uuid(s: &str) -> bool {
    let hexish = |c: char| c.is_ascii_hexdigit() || c == '-';
    s.split(|c: char| !hexish(c)).any(|w| {
        let dashed = w.len() >= 36
            && w.as_bytes().windows(36).any(|x| {
                x.iter()
                    .enumerate()
                    .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { *b == b'-' } else { b.is_ascii_hexdigit() })
            });
        let simple = w.len() >= 32 && w.split('-').any(|p| p.len() >= 32);
        dashed || simple
    })
}

/// Every label value is from a closed set: no address, id, key or marker.
fn assert_clean_labels(samples: &[Sample], forbidden: &[&str]) {
    for s in samples {
        for (k, v) in &s.labels {
            assert!(!v.contains('@'), "{}{{{k}={v:?}}} looks like an address", s.name);
            assert!(!has_uuid(v), "{}{{{k}={v:?}}} holds an id", s.name);
            for f in forbidden {
                assert!(!v.contains(f), "{}{{{k}={v:?}}} holds {f:?}", s.name);
            }
        }
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn metrics_are_off_without_a_token_and_open_only_with_it() {
    // Off by default: 404, whatever is presented.
    let app = TestApp::start().await;
    for token in [None, Some(TOKEN)] {
        let (status, _, _) = get(&format!("{}/metrics", app.base), token).await;
        assert_eq!(status, 404, "no token configured: no endpoint");
    }
    app.stop().await;

    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_METRICS_TOKEN", TOKEN.into()), ("HERMETIC_SENDING__SLOTS", "2".into())],
        dns: true,
        ..Default::default()
    })
    .await;
    let url = format!("{}/metrics", app.base);
    // Without the token, with a wrong one, another scheme, or a session: 401 and a challenge.
    let mut wrong = TOKEN.to_string();
    wrong.pop();
    for (what, auth) in [
        ("none", None),
        ("wrong", Some(format!("Bearer {wrong}"))),
        ("longer", Some(format!("Bearer {TOKEN}x"))),
        ("basic", Some(format!("Basic {TOKEN}"))),
    ] {
        let mut req = reqwest::Client::new().get(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{what}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"hermetic-metrics\"", "{what}");
        assert!(!r.text().await.unwrap().contains("hermetic_"), "{what}: no metrics without the token");
    }
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let r = admin.get("/metrics").await;
    assert_eq!(r.status, 401, "a signed-in administrator's session does not open /metrics");
    // The token opens it: Prometheus' text format, never cached.
    let (status, headers, body) = get(&url, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("set-cookie").is_none(), "no session, no CSRF cookie");
    let s = parse(&body);
    assert_eq!(value(&s, "hermetic_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // Queue depths come from the database at scrape time: a launched campaign (no workers run
    // here) has its prepare job waiting; once its audience is resolved, its rows and dispatch
    // jobs wait too.
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut members = Vec::new();
    for (i, name) in ["Ann", "Bob", "Cy"].iter().enumerate() {
        members.push(crate::campaigns::contact(svc, &actor, &format!("p{i}@patients.test"), name, true).await);
    }
    let list = crate::campaigns::list_with(svc, &actor, &members).await;
    let template = crate::campaigns::template(svc, &actor).await;
    let id =
        service::campaigns::create(svc, &actor, &crate::campaigns::settings("Depth", list, template)).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    let s = parse(&get(&url, Some(TOKEN)).await.2);
    let jobs = |s: &[Sample], queue: &str, state: &str| {
        value(s, "hermetic_job_queue_jobs", &[("queue", queue), ("state", state)])
    };
    assert_eq!(jobs(&s, "campaign-prepare", "due"), 1.0);
    for q in service::outbox::queue::ALL {
        assert!(
            s.iter()
                .any(|x| x.name == "hermetic_job_queue_jobs" && x.labels.contains(&("queue".into(), q.to_string()))),
            "every queue is listed, empty ones as 0: {q}"
        );
    }
    service::campaigns::audience::prepare(svc, id).await.unwrap();
    let s = parse(&get(&url, Some(TOKEN)).await.2);
    assert_eq!(value(&s, "hermetic_delivery_queue_rows", &[("state", "due")]), 3.0);
    assert_eq!(value(&s, "hermetic_delivery_queue_rows", &[("state", "claimed")]), 0.0);
    assert_eq!(jobs(&s, "campaign-dispatch", "due"), 2.0, "one dispatch job per slot");
    app.sql("UPDATE delivery_queue SET not_before = now() + interval '1 hour'").await;
    let s = parse(&get(&url, Some(TOKEN)).await.2);
    assert_eq!(value(&s, "hermetic_delivery_queue_rows", &[("state", "due")]), 0.0);
    assert_eq!(value(&s, "hermetic_delivery_queue_rows", &[("state", "waiting")]), 3.0);
    assert_clean_labels(&s, &["patients.test", "clinic.test"]);
    app.stop().await;

    // On its own address: only there, still behind the token, and nothing else is served there.
    let port = free_port();
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_METRICS_TOKEN", TOKEN.into()), ("HERMETIC_METRICS__LISTEN", format!("127.0.0.1:{port}"))],
        ..Default::default()
    })
    .await;
    let (status, _, _) = get(&format!("{}/metrics", app.base), Some(TOKEN)).await;
    assert_eq!(status, 404, "not on the web listener when metrics.listen is set");
    let separate = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&format!("{separate}/metrics"), None).await.0, 401);
    let (status, headers, body) = get(&format!("{separate}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert!(!parse(&body).is_empty());
    assert_eq!(get(&format!("{separate}/healthz"), Some(TOKEN)).await.0, 404);
    assert_eq!(get(&format!("{separate}/login"), None).await.0, 404);
    app.stop().await;
}

/// A `server` process of its own (its own recorder), sharing the test's database.
struct Served {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `server serve`, or with `worker` a `server worker` serving `/metrics` on `metrics.listen`.
async fn server_process(app: &TestApp, smtp: &SmtpServer, worker: bool) -> Served {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("hermetic-metrics-{}-{port}.log", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERMETIC_DATABASE_URL", &app.db.url)
        .env("HERMETIC_ROOT_KEY", ROOT_KEY)
        .env("HERMETIC_PUBLIC_URL", &app.base)
        .env("HERMETIC_METRICS_TOKEN", TOKEN)
        .env("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1")
        .env("HERMETIC_SENDING__RETRY_BASE_SECS", "1")
        // Webhook receivers of the test are on loopback.
        .env("HERMETIC_WEBHOOKS__ALLOW_PRIVATE", "true")
        .env("HERMETIC_LOG_FORMAT", "json");
    if worker {
        cmd.arg("worker").env("HERMETIC_METRICS__LISTEN", format!("127.0.0.1:{port}"));
    } else {
        cmd.arg("serve").env("HERMETIC_LISTEN", format!("127.0.0.1:{port}"));
    }
    for (k, v) in smtp.env().into_iter().chain(app.dns.as_ref().unwrap().env()) {
        cmd.env(k, v);
    }
    let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    // Logs go to standard output; both streams are kept.
    let child = cmd.stdout(err.try_clone().unwrap()).stderr(err).spawn().unwrap();
    let mut served = Served { child, base, log };
    let log = served.log.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = if worker { format!("{}/metrics", served.base) } else { format!("{}/healthz", served.base) };
        let r = reqwest::Client::new().get(ready).bearer_auth(TOKEN).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return served;
        }
        assert!(served.child.try_wait().unwrap().is_none(), "the server exited: see {}", log.display());
        assert!(Instant::now() < deadline, "the server did not start: see {}", log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api(base: &str, path: &str, key: Option<&str>, body: &Value, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_scrape_counts_the_api_calls_sends_and_jobs_that_happened_and_names_no_one() {
    let smtp = SmtpServer::start(Tls::Required, &["--tempfail-times", "1"]);
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let key = service::api::keys::create(
        svc,
        &actor,
        NewKey {
            name: "EHR".into(),
            scopes: vec![Scope::EventsWrite, Scope::ContactsWrite],
            expires_at: None,
            require_signature: false,
        },
    )
    .await
    .unwrap();
    let secret = key.secret.to_string();
    // Webhooks: one receiver answers 2xx to the two sends, another 500 to the bounce (retried
    // later). Registered on a public address (this test process refuses loopback), then pointed at
    // the receivers behind the guard's back; the `serve` process allows loopback.
    let ok_hook = crate::webhooks::Endpoint::start(200).await;
    let failing_hook = crate::webhooks::Endpoint::start(500).await;
    for (hook, event) in [(&ok_hook, "message.sent"), (&failing_hook, "message.bounced")] {
        let ep = service::webhooks::create(
            svc,
            &actor,
            domain::webhooks::EndpointInput {
                url: "https://93.184.216.34/h".into(),
                events: vec![event.into()],
                enabled: true,
            },
        )
        .await
        .unwrap();
        app.sql(&format!("UPDATE webhook_endpoint SET url = '{}' WHERE id = '{}'", hook.url, ep.id)).await;
    }
    let served = server_process(&app, &smtp, false).await;
    let base = served.base.as_str();
    let scrape = || async { parse(&get(&format!("{base}/metrics"), Some(TOKEN)).await.2) };
    let before = scrape().await;

    // API: two single events accepted, one refused by validation, one refused for its key; a
    // batch of three with one unknown contact, then its idempotent replay (recorded once); a
    // contact read by id the key may not make (its route template, never its id, is a label).
    let ev =
        |email: &str| json!({"contact": {"email": email}, "type": "visit.completed", "properties": {"note": MARKER}});
    for who in ["ann", "bob"] {
        let (status, body) =
            api(base, "/api/v1/events", Some(&secret), &ev(&format!("{who}-{MARKER}@example.org")), &[]).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, _) = api(
        base,
        "/api/v1/events",
        Some(&secret),
        &json!({"contact": {"email": "x@example.org"}, "type": MARKER}),
        &[],
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = api(base, "/api/v1/events", None, &ev("cy@example.org"), &[]).await;
    assert_eq!(status, 401);
    let batch = json!({"events": [
        ev("dee@example.org"),
        ev("eve@example.org"),
        {"contact": {"id": uuid::Uuid::now_v7().to_string()}, "type": "visit.completed"},
    ]});
    for _ in 0..2 {
        let (status, body) =
            api(base, "/api/v1/events/batch", Some(&secret), &batch, &[("idempotency-key", "b-1")]).await;
        assert_eq!((status, body["accepted"].as_i64(), body["rejected"].as_i64()), (200, Some(2), Some(1)), "{body}");
    }
    let contact_url = format!("{base}/api/v1/contacts/{}", uuid::Uuid::now_v7());
    let r = reqwest::Client::new().get(&contact_url).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Sending: three patients; one deferred once then accepted, one bounced, one accepted. The
    // campaign is made here; the `serve` process's workers prepare and send it.
    let fine = crate::campaigns::contact(svc, &actor, "cy@patients.test", "Cy", true).await;
    let later = crate::campaigns::contact(svc, &actor, "tempfail+ann@patients.test", "Ann", true).await;
    let gone = crate::campaigns::contact(svc, &actor, "reject+bob@patients.test", "Bob", true).await;
    let list = crate::campaigns::list_with(svc, &actor, &[fine, later, gone]).await;
    let template = crate::campaigns::template(svc, &actor).await;
    let id =
        service::campaigns::create(svc, &actor, &crate::campaigns::settings("Metrics", list, template)).await.unwrap();
    service::campaigns::launch(svc, &actor, id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let p = service::campaigns::progress(svc, &actor, id).await.unwrap();
        if p.status == CampaignStatus::Completed {
            let c = p.counts.unwrap();
            assert_eq!((c.sent, c.bounced), (2, 1), "{p:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not complete: {p:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The webhook jobs run on the serve process's workers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok_hook.bodies().len() < 2 || failing_hook.bodies().is_empty() {
        assert!(Instant::now() < deadline, "the webhooks were not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = get(&format!("{base}/metrics"), Some(TOKEN)).await.2;
    let after = parse(&body);
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);

    // Events.
    assert_eq!(
        delta("hermetic_api_events_accepted_total", &[]),
        4.0,
        "2 single + 2 in the batch; the replay adds none"
    );
    for (code, n) in [("invalid_field", 1.0), ("unauthenticated", 1.0), ("unknown_contact", 1.0)] {
        assert_eq!(delta("hermetic_api_events_rejected_total", &[("code", code)]), n, "{code}");
    }
    assert_eq!(delta("hermetic_api_events_rejected_total", &[]), 3.0);
    assert_eq!(delta("hermetic_api_event_batch_size_count", &[]), 1.0);
    assert_eq!(delta("hermetic_api_event_batch_size_sum", &[]), 3.0);
    // Requests by route template, method and status class; latency per route.
    let req = |route: &str, method: &str, status: &str| {
        delta("hermetic_http_requests_total", &[("route", route), ("method", method), ("status", status)])
    };
    assert_eq!(req("/api/v1/events", "POST", "2xx"), 2.0);
    assert_eq!(req("/api/v1/events", "POST", "4xx"), 2.0);
    assert_eq!(req("/api/v1/events/batch", "POST", "2xx"), 2.0);
    assert_eq!(req("/api/v1/contacts/{id}", "GET", "4xx"), 1.0);
    let latency = &[("route", "/api/v1/events"), ("method", "POST")];
    assert_eq!(delta("hermetic_http_request_duration_seconds_count", latency), 4.0);
    assert!(delta("hermetic_http_request_duration_seconds_sum", latency) > 0.0);
    let buckets: Vec<&Sample> = after
        .iter()
        .filter(|s| s.name == "hermetic_http_request_duration_seconds_bucket")
        .filter(|s| s.labels.contains(&("route".into(), "/api/v1/events".into())))
        .collect();
    let les: Vec<&str> =
        buckets.iter().filter_map(|s| s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.as_str())).collect();
    assert_eq!(les.first(), Some(&"0.001"), "buckets from 1 ms: {les:?}");
    assert!(les.contains(&"10") && les.contains(&"+Inf"), "to 10 s: {les:?}");
    // Sending.
    for (state, n) in [("sent", 2.0), ("deferred", 1.0), ("bounced", 1.0), ("failed", 0.0), ("skipped", 0.0)] {
        assert_eq!(delta("hermetic_delivery_outcomes_total", &[("state", state)]), n, "{state}");
    }
    assert_eq!(delta("hermetic_smtp_messages_total", &[]), 4.0, "three first attempts and one retry");
    // Webhooks: two delivered, one failed attempt to be retried.
    let hooks = |outcome: &str| delta("hermetic_webhook_deliveries_total", &[("outcome", outcome)]);
    assert_eq!((hooks("delivered"), hooks("retry"), hooks("failed")), (2.0, 1.0, 0.0));
    assert_eq!(delta("hermetic_webhook_retries_total", &[]), 1.0);
    // Jobs: the prepare job and at least one dispatch job ran, and none failed.
    for queue in ["campaign-prepare", "campaign-dispatch"] {
        assert!(delta("hermetic_job_runs_total", &[("queue", queue)]) >= 1.0, "{queue}");
        assert_eq!(delta("hermetic_job_failures_total", &[("queue", queue)]), 0.0, "{queue}");
    }
    // Queue depths after the campaign: nothing left to send.
    for state in ["due", "waiting", "claimed"] {
        assert_eq!(value(&after, "hermetic_delivery_queue_rows", &[("state", state)]), 0.0, "{state}");
    }
    assert_eq!(value(&after, "hermetic_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // Every family is ours, described, and of the type it says; no label names anyone.
    for s in &after {
        assert!(s.family.starts_with("hermetic_"), "{}", s.family);
        assert!(!s.help.is_empty(), "{} has no HELP", s.family);
    }
    let kind = |family: &str| after.iter().find(|s| s.family == family).map(|s| s.kind.as_str());
    assert_eq!(kind("hermetic_http_request_duration_seconds"), Some("histogram"));
    assert_eq!(kind("hermetic_api_event_batch_size"), Some("histogram"));
    assert_eq!(kind("hermetic_http_requests"), Some("counter"));
    assert_eq!(kind("hermetic_delivery_queue_rows"), Some("gauge"));
    let org_id = org.0.to_string();
    assert_clean_labels(&after, &[MARKER, "hm_live_", &secret, &org_id, "example.org", "patients.test"]);
    for needle in [MARKER, "example.org", "patients.test", &secret[..12], &org_id] {
        assert!(!body.contains(needle), "the scrape holds {needle:?}");
    }
    // The serve process logged nothing of the patients or their events.
    let log = std::fs::read_to_string(&served.log).unwrap();
    assert!(log.contains("api request"), "the server's log was captured");
    for needle in [MARKER, "example.org", "patients.test"] {
        assert!(!log.contains(needle), "the server's log holds {needle:?}");
    }
    drop(served);

    // A worker process has no web listener: it is scraped on metrics.listen, behind the token.
    let worker = server_process(&app, &smtp, true).await;
    let url = format!("{}/metrics", worker.base);
    assert_eq!(get(&url, None).await.0, 401);
    let (status, headers, body) = get(&url, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let s = parse(&body);
    assert_eq!(value(&s, "hermetic_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(value(&s, "hermetic_delivery_queue_rows", &[("state", "due")]), 0.0);
    assert!(s.iter().any(|x| x.name == "hermetic_job_queue_jobs"), "the worker reads queue depths too");
    assert!(!s.iter().any(|x| x.family == "hermetic_http_requests"), "a worker serves no web requests");
    assert_eq!(get(&format!("{}/healthz", worker.base), Some(TOKEN)).await.0, 404);
    drop(worker);
    app.stop().await;
}
