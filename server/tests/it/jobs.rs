//! The maintenance job runs through the apalis queue in our database.

use crate::harness::*;
use domain::Role;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use std::time::Duration;

#[tokio::test]
async fn scheduled_maintenance_expires_sessions_and_verifies_the_audit_chains() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("HERMETIC_JOBS__MAINTENANCE_INTERVAL_SECS", "2".into()),
            ("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into()),
        ],
        workers: true,
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (_c, _) = app.sign_in("ada@clinic.test", None).await;
    // The session goes idle without any further request; only the job can close it.
    app.advance(1000);
    let db = app.db.connect().await;
    let mut done = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let q = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_string());
        let idle = db
            .query_one_raw(q("SELECT count(*) FROM user_session WHERE revoked_reason = 'idle'"))
            .await
            .unwrap()
            .unwrap();
        let verified = db
            .query_one_raw(q("SELECT count(*) FROM audit_verification WHERE first_broken_seq IS NULL"))
            .await
            .unwrap()
            .unwrap();
        let jobs = db
            .query_one_raw(q("SELECT count(*) FROM apalis.jobs WHERE job_type = 'maintenance' AND status = 'Done'"))
            .await
            .unwrap()
            .unwrap();
        if idle.try_get_by_index::<i64>(0).unwrap() == 1
            && verified.try_get_by_index::<i64>(0).unwrap() >= 2
            && jobs.try_get_by_index::<i64>(0).unwrap() >= 1
        {
            done = true;
            break;
        }
    }
    db.close().await.unwrap();
    assert!(done, "maintenance did not run through the job queue within 30 s");
    app.stop().await;
}

#[tokio::test]
async fn one_job_per_slot_however_many_schedulers() {
    let app = TestApp::start().await;
    let slot = 1_800_000_000;
    let mut added = 0;
    for _ in 0..5 {
        if jobs::maintenance::enqueue(&app.services, slot).await.unwrap() {
            added += 1;
        }
    }
    assert_eq!(added, 1);
    app.stop().await;
}

/// The job adapter (`service::outbox`) is the one place that writes apalis' tables. If an apalis
/// upgrade renamed a column it writes, the processes refuse to start instead of losing jobs.
#[tokio::test]
async fn the_apalis_tables_are_what_the_adapter_writes() {
    use service::outbox::{self, Job};
    let app = TestApp::start().await;
    let db = app.db.connect().await;
    outbox::check_apalis_schema(&db).await.expect("today's apalis tables have every column the adapter uses");
    // A typed push lands on its queue with its attempts and idempotency key; a second is a no-op.
    let job = service::campaigns::PrepareJob { campaign_id: uuid::Uuid::new_v4(), resume_generation: Some(3) };
    assert!(outbox::push(&db, &job).await.unwrap());
    assert!(!outbox::push(&db, &job).await.unwrap(), "the same idempotency key adds no second job");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT job_type, max_attempts, convert_from(job, 'UTF8') AS job FROM apalis.jobs WHERE idempotency_key = $1",
            [job.idempotency_key().unwrap().into()],
        ))
        .await
        .unwrap()
        .expect("the pushed job");
    assert_eq!(row.try_get::<String>("", "job_type").unwrap(), service::campaigns::PrepareJob::QUEUE);
    assert_eq!(row.try_get::<i32>("", "max_attempts").unwrap(), service::campaigns::PrepareJob::MAX_ATTEMPTS);
    let payload: service::campaigns::PrepareJob =
        serde_json::from_str(&row.try_get::<String>("", "job").unwrap()).unwrap();
    assert_eq!(payload, job);
    // What an apalis upgrade could do: rename a column the adapter writes.
    db.execute_unprepared("ALTER TABLE apalis.jobs RENAME COLUMN idempotency_key TO dedupe_key").await.unwrap();
    assert!(outbox::check_apalis_schema(&db).await.is_err());
    let pool = db.get_postgres_connection_pool().clone();
    let refused = jobs::setup(&pool).await.expect_err("setup must refuse a changed apalis schema");
    assert!(refused.to_string().contains("apalis"), "{refused}");
    db.execute_unprepared("ALTER TABLE apalis.jobs RENAME COLUMN dedupe_key TO idempotency_key").await.unwrap();
    jobs::setup(&pool).await.unwrap();
    app.stop().await;
}

/// The tracking buffer never makes a pixel or a redirect wait: when it is full, hits are dropped,
/// and every drop is counted.
#[tokio::test]
async fn tracking_hits_dropped_by_a_full_buffer_are_counted() {
    use service::campaigns::tracking::{self, Claims, Hit, Recorder, Track};
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A buffer of two. This test runs on one thread and nothing below yields, so the flusher
    // cannot take a hit out before the five are offered: two fit, three are dropped.
    let recorder = Recorder::with_capacity(app.services.clone(), stop_rx, 2);
    let hit = || Hit {
        kind: Track::Open,
        claims: Claims { organisation: org, delivery: uuid::Uuid::new_v4(), position: 0 },
        user_agent: None,
        head: false,
        at: app.now(),
    };
    for _ in 0..5 {
        tracking::record(&app.services, Some(&recorder), hit()).await.unwrap();
    }
    assert_eq!(recorder.dropped(), 3);
    app.stop().await;
}
