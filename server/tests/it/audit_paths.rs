//! Audit rows written on the sqlx-only paths (`audit::record_on`) join the same hash chain as the
//! others, and share the transaction of the change they describe: rolled back with it, committed
//! with it.

use crate::harness::*;
use domain::Role;
use domain::audit::{AuditAction, AuditOutcome};
use sea_orm::TransactionTrait;
use service::audit::{self, AuditActor, AuditRecord};

fn event(org: domain::ids::OrganisationId, n: i64) -> AuditRecord {
    AuditRecord::new(Some(org), AuditActor::System, AuditAction::SuppressionAdded, AuditOutcome::Success)
        .target("suppression", format!("ref{n}"))
        .detail("reason", "hard_bounce")
}

async fn count(app: &TestApp, org: domain::ids::OrganisationId) -> i64 {
    service::db::scalar(
        app.services.db(),
        "SELECT count(*) FROM audit_event WHERE organisation_id = $1 AND action = $2",
        [org.0.into(), AuditAction::SuppressionAdded.code().into()],
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn rows_from_both_transaction_types_form_one_valid_chain() {
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let svc = &app.services;
    let pool = svc.db().get_postgres_connection_pool().clone();

    // Interleave the two paths on one chain.
    for n in 0..3 {
        let mut tx = pool.begin().await.unwrap();
        audit::record_on(svc, &mut tx, event(org, n)).await.unwrap();
        tx.commit().await.unwrap();
        let txn = svc.db().begin().await.unwrap();
        audit::record(svc, &txn, event(org, 10 + n)).await.unwrap();
        txn.commit().await.unwrap();
    }
    assert_eq!(count(&app, org).await, 6);

    // A change on the sqlx path that rolls back takes its audit row with it.
    let mut tx = pool.begin().await.unwrap();
    audit::record_on(svc, &mut tx, event(org, 99)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(&app, org).await, 6, "a rolled-back change leaves no audit row");

    let report = audit::verify_chain(svc, svc.db(), org.0).await.unwrap();
    assert!(report.first_broken.is_none(), "{:?}", report.first_broken);
    assert!(report.rows_checked >= 6, "{}", report.rows_checked);
    app.stop().await;
}
