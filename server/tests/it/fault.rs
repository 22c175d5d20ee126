//! The fault test: a 20,000-recipient campaign sent by a separate `server worker` process that is
//! killed with SIGKILL ten times mid-send and restarted each time. At the SMTP server, every
//! recipient must have exactly one message (counted by the per-delivery header), except within
//! the window between the server's 250 and our record of it — which is measured and reported.

use crate::harness::*;
use crate::smtp::{SmtpServer, Tls};
use domain::Role;
use domain::campaigns::*;
use domain::contacts::ConsentPurpose;
use service::Actor;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RECIPIENTS: usize = 20_000;
const KILLS: usize = 10;
const CONNECTIONS: usize = 8;

fn spawn_worker(app: &TestApp, smtp: &SmtpServer, log: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERMETIC_DATABASE_URL", &app.db.url)
        .env("HERMETIC_ROOT_KEY", ROOT_KEY)
        .env("HERMETIC_PUBLIC_URL", &app.base)
        .env("HERMETIC_LOG_FORMAT", "json")
        .env("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1")
        .env("HERMETIC_JOBS__HEARTBEAT_SECS", "1")
        .env("HERMETIC_JOBS__MISSED_HEARTBEATS", "2")
        .env("HERMETIC_MAIL__SMTP_POOL_SIZE", CONNECTIONS.to_string());
    for (k, v) in smtp.env() {
        cmd.env(k, v);
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(out).spawn().unwrap()
}

#[tokio::test]
async fn killing_the_worker_ten_times_loses_nothing_and_duplicates_only_inside_the_window() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let list =
        service::contacts::lists::create(svc, &actor, "Everyone", "", false, ConsentPurpose::Marketing).await.unwrap();
    let mut csv = Vec::new();
    writeln!(csv, "email,first_name").unwrap();
    for i in 0..RECIPIENTS {
        writeln!(csv, "p{i}@fault.patients.test,P{i}").unwrap();
    }
    let body = futures::stream::iter(vec![Ok::<_, service::ServiceError>(csv)]);
    let up = service::contacts::import::upload(svc, &actor, body, 100_000_000).await.unwrap();
    let opts = domain::contacts::ImportOptions {
        mapping: vec![Some("email".into()), Some("first_name".into())],
        dedupe: domain::contacts::Dedupe::Update,
        list_ids: vec![list],
        consent_purpose: Some(ConsentPurpose::Marketing),
        consent_text: Some("Yes".into()),
    };
    service::contacts::import::start(svc, &actor, up.id, opts).await.unwrap();
    let log = std::env::temp_dir().join(format!("hermetic-fault-worker-{}.log", std::process::id()));
    let mut worker = spawn_worker(&app, &smtp, &log);
    let started = Instant::now();
    loop {
        let v = service::contacts::import::status(svc, &actor, up.id).await.unwrap();
        if v.finished() {
            assert_eq!(v.status, "completed", "{v:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "import too slow");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let template = service::templates::store::create(svc, &actor, "Newsletter", Some("newsletter")).await.unwrap();
    let settings = CampaignSettings {
        name: "Fault".into(),
        purpose: ConsentPurpose::Marketing,
        audience: Audience { segments: vec![], lists: vec![list] },
        template_id: Some(template),
        from_name: "Lakeside".into(),
        from_email: "news@clinic.test".into(),
        reply_to: None,
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle { per_second: Throttle::MAX_PER_SECOND, per_domain_per_minute: None },
        auto_pause: AutoPause { after_consecutive_errors: 1000 },
    };
    let campaign = service::campaigns::create(svc, &actor, &settings).await.unwrap();
    service::campaigns::launch(svc, &actor, campaign).await.unwrap();

    // Kill -9 ten times while messages are flowing, restarting at once each time.
    let mut kills = 0;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    while kills < KILLS {
        let progress = service::campaigns::progress(svc, &actor, campaign).await.unwrap();
        assert!(
            progress.status != CampaignStatus::Completed,
            "the campaign finished before {KILLS} kills ({kills} done)"
        );
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(700 + rng % 1300)).await;
        if smtp.count() == 0 {
            continue;
        }
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        kills += 1;
        worker = spawn_worker(&app, &smtp, &log);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let p = service::campaigns::progress(svc, &actor, campaign).await.unwrap();
        if p.status == CampaignStatus::Completed {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not complete: {p:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Count every message at the SMTP server by its delivery header.
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    let files = smtp.messages();
    for (_, raw) in &files {
        let id = raw
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("X-Hermetic-Delivery: "))
            .expect("every message carries its delivery id")
            .trim()
            .to_string();
        *per_delivery.entry(id).or_default() += 1;
    }
    let p = service::campaigns::progress(svc, &actor, campaign).await.unwrap();
    assert_eq!(p.counts.unwrap().sent as usize, RECIPIENTS, "{p:?}");
    let lost = RECIPIENTS - per_delivery.len();
    let dup: usize = per_delivery.values().map(|n| n - 1).sum();
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait;
    let w = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT max(extract(epoch FROM (recorded_at - accepted_at)) * 1000)::float8 AS max,
                    (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM (recorded_at - accepted_at)) * 1000))::float8 AS p99
             FROM delivery WHERE state = 'sent'",
        ))
        .await
        .unwrap()
        .unwrap();
    let (wmax, wp99): (f64, f64) = (w.try_get("", "max").unwrap(), w.try_get("", "p99").unwrap());
    println!(
        "fault recipients={RECIPIENTS} kills={kills} received={} lost={lost} dup={dup} window_ms_max={wmax:.1} window_ms_p99={wp99:.1}",
        files.len()
    );
    assert_eq!(lost, 0, "every recipient got the message");
    // A kill can only duplicate messages the server had accepted but we had not yet recorded:
    // at most the transactions in flight at that instant.
    assert!(dup <= kills * CONNECTIONS, "{dup} duplicates for {kills} kills");
    let _ = std::fs::remove_file(&log);
    app.stop().await;
}

/// The sequence fault test: 20,000 enrolments move through wait → send → wait-for → branch →
/// send in a separate `server worker` process that is killed with SIGKILL ten times while they
/// move, restarted each time. At the SMTP server every enrolment has exactly the two messages of
/// its path, once each, except within the window between the server's 250 and our record of it
/// (measured and reported, as for campaigns); every step ran exactly once (one execution row per
/// visit).
#[tokio::test]
async fn killing_the_worker_ten_times_while_sequences_move_repeats_no_step() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = TestApp::start_with(Options { dns: true, ..Default::default() }).await;
    let org = app.org_with_user("Lakeside", "admin@lakeside.test", Role::Admin).await;
    app.verified_domain(org, "clinic.test").await;
    let actor = Actor::system(org, "test");
    let svc = &app.services;
    let mut csv = Vec::new();
    writeln!(csv, "email,first_name").unwrap();
    for i in 0..RECIPIENTS {
        writeln!(csv, "s{i}@fault.patients.test,S{i}").unwrap();
    }
    let body = futures::stream::iter(vec![Ok::<_, service::ServiceError>(csv)]);
    let up = service::contacts::import::upload(svc, &actor, body, 100_000_000).await.unwrap();
    let opts = domain::contacts::ImportOptions {
        mapping: vec![Some("email".into()), Some("first_name".into())],
        dedupe: domain::contacts::Dedupe::Update,
        list_ids: vec![],
        consent_purpose: Some(ConsentPurpose::Marketing),
        consent_text: Some("Yes".into()),
    };
    service::contacts::import::start(svc, &actor, up.id, opts).await.unwrap();
    let log = std::env::temp_dir().join(format!("hermetic-seq-fault-worker-{}.log", std::process::id()));
    let mut worker = spawn_worker(&app, &smtp, &log);
    let started = Instant::now();
    loop {
        let v = service::contacts::import::status(svc, &actor, up.id).await.unwrap();
        if v.finished() {
            assert_eq!(v.status, "completed", "{v:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "import too slow");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let template = service::templates::store::create(svc, &actor, "Newsletter", Some("newsletter")).await.unwrap();
    let seq = service::sequences::create(svc, &actor, "Fault").await.unwrap();
    let def: domain::sequences::SequenceDefinition = serde_json::from_value(serde_json::json!({
        "version": 1, "trigger": {"kind": "manual"}, "entry": "every_time", "start": "w",
        "steps": [
            {"id": "w", "kind": "wait", "wait": {"kind": "duration", "minutes": 1}, "next": "s1"},
            {"id": "s1", "kind": "send_email", "template": template, "purpose": "marketing", "next": "wf"},
            {"id": "wf", "kind": "wait_for", "event": {"kind": "opened", "step": "s1"}, "timeout_minutes": 1,
             "on_event": null, "on_timeout": "b"},
            {"id": "b", "kind": "branch", "test": {"kind": "engaged", "clicked": false, "step": "s1"},
             "then": null, "otherwise": "s2"},
            {"id": "s2", "kind": "send_email", "template": template, "purpose": "marketing", "next": null}
        ]
    }))
    .unwrap();
    let input = service::sequences::DraftInput {
        name: "Fault".into(),
        from_name: "Lakeside".into(),
        from_email: "care@clinic.test".into(),
        definition: def,
    };
    service::sequences::save_draft(svc, &actor, seq, &input).await.unwrap();
    service::sequences::publish(svc, &actor, seq, &[]).await.unwrap();
    // Every patient enters at once (rows, as the engine's entry writes them), the wait ending
    // over the next 20 seconds.
    app.sql(&format!(
        "INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, state, step_id, visit, step_started_at, wake_at, entered_at)
         SELECT gen_random_uuid(), c.organisation_id, s.id, s.current_version_id, c.id, 'active', 'w', 0,
                now() - interval '60 seconds' + (row_number() OVER (ORDER BY c.id)) * interval '1 millisecond',
                now() + (row_number() OVER (ORDER BY c.id)) * interval '1 millisecond', now()
         FROM contact c, sequence s WHERE c.organisation_id = '{}' AND s.id = '{seq}'",
        org.0
    ))
    .await;

    // Kill -9 ten times while enrolments move and messages flow, restarting at once each time.
    let mut kills = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    while kills < KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(700 + rng % 1300)).await;
        if smtp.count() == 0 {
            continue;
        }
        assert!(smtp.count() < 2 * RECIPIENTS, "the sequence finished before {KILLS} kills ({kills} done)");
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        kills += 1;
        worker = spawn_worker(&app, &smtp, &log);
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let db = app.db.connect().await;
    use sea_orm::ConnectionTrait;
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    loop {
        let active = count("SELECT count(*) FROM enrolment WHERE state = 'active'").await;
        let queued = count("SELECT count(*) FROM delivery_queue").await;
        if active == 0 && queued == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the enrolments did not finish: {active} active, {queued} queued");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every message at the SMTP server, by its delivery header and its recipient.
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    let files = smtp.messages();
    for (_, raw) in &files {
        let head: Vec<&str> = raw.lines().take_while(|l| !l.is_empty()).collect();
        let id = head.iter().find_map(|l| l.strip_prefix("X-Hermetic-Delivery: ")).expect("a delivery id");
        let to = head.iter().find_map(|l| l.strip_prefix("To: ")).expect("a recipient");
        *per_delivery.entry(id.trim().to_string()).or_default() += 1;
        *per_recipient.entry(to.trim().to_string()).or_default() += 1;
    }
    let expected = 2 * RECIPIENTS;
    assert_eq!(
        count("SELECT count(*) FROM delivery WHERE source = 'sequence_step' AND state = 'sent'").await as usize,
        expected
    );
    assert_eq!(count("SELECT count(*) FROM enrolment WHERE state = 'completed'").await as usize, RECIPIENTS);
    // Each enrolment ran each step once: w, s1, wf, b, s2 and its end, one row per visit.
    assert_eq!(count("SELECT count(*) FROM enrolment_step").await as usize, 6 * RECIPIENTS);
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT enrolment_id FROM api_message GROUP BY enrolment_id HAVING count(*) <> 2) x"
        )
        .await,
        0,
        "each enrolment queued exactly the two messages of its path"
    );
    let lost = expected - per_delivery.len();
    let dup: usize = per_delivery.values().map(|n| n - 1).sum();
    let w = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT max(extract(epoch FROM (recorded_at - accepted_at)) * 1000)::float8 AS max,
                    (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM (recorded_at - accepted_at)) * 1000))::float8 AS p99
             FROM delivery WHERE state = 'sent' AND source = 'sequence_step'",
        ))
        .await
        .unwrap()
        .unwrap();
    let (wmax, wp99): (f64, f64) = (w.try_get("", "max").unwrap(), w.try_get("", "p99").unwrap());
    println!(
        "sequence_fault enrolments={RECIPIENTS} kills={kills} received={} lost={lost} dup={dup} window_ms_max={wmax:.1} window_ms_p99={wp99:.1}",
        files.len()
    );
    assert_eq!(lost, 0, "every enrolment got both messages of its path");
    assert_eq!(per_recipient.len(), RECIPIENTS);
    assert!(per_recipient.values().all(|n| *n >= 2), "every patient got both messages");
    // The message sender lets at most two messages per lane (lanes = the pool's connections) be
    // handed to the server and not yet written (`send_due`'s `unrecorded` permits): one awaiting
    // its reply while the next is sent, one whose reply waits for the write. A kill can send
    // twice only those.
    assert!(dup <= kills * 2 * CONNECTIONS, "{dup} duplicates for {kills} kills");
    db.close().await.unwrap();
    let _ = std::fs::remove_file(&log);
    app.stop().await;
}
