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
