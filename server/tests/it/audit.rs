//! The audit trail is append-only and tamper-evident.

use crate::harness::*;
use domain::Role;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

async fn rows(app: &TestApp) -> Vec<(i64, String)> {
    let db = app.db.connect().await;
    let r = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT seq, action FROM audit_event WHERE organisation_id IS NOT NULL ORDER BY seq",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get_by_index::<i64>(0).unwrap(), r.try_get_by_index::<String>(1).unwrap()))
        .collect();
    db.close().await.unwrap();
    r
}

#[tokio::test]
async fn the_database_refuses_updates_and_deletes() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let db = app.db.connect().await;
    for sql in ["UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event", "TRUNCATE audit_event"] {
        let err = db.execute_unprepared(sql).await.expect_err(sql).to_string();
        assert!(err.contains("append-only") || err.contains("insufficient"), "{sql}: {err}");
    }
    db.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_edited_row_is_reported_as_the_first_broken_link() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let (s, report) = c.call("audit_verify", &[]).await;
    assert_eq!(s, 200);
    assert!(report["first_broken"].is_null(), "{report}");
    let before = rows(&app).await;
    assert!(before.len() >= 5, "{before:?}");
    let (victim, _) = before[2];
    // Someone with database superuser rights bypasses the trigger and edits a row.
    app.sql(&format!(
        "SET session_replication_role = replica; UPDATE audit_event SET action = 'auth.logout' WHERE seq = {victim}; SET session_replication_role = DEFAULT;"
    ))
    .await;
    let (s, report) = c.call("audit_verify", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(report["first_broken"]["seq"], victim, "{report}");
    assert!(report["first_broken"]["reason"].as_str().unwrap().contains("edited"));
    // The page shows it too.
    let (_, last) = c.call("audit_last_report", &[]).await;
    assert_eq!(last["first_broken"]["seq"], victim);
    app.stop().await;
}

#[tokio::test]
async fn deleted_and_truncated_rows_are_detected() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    assert!(c.call("audit_verify", &[]).await.1["first_broken"].is_null());
    let all = rows(&app).await;
    // Cut the newest rows off the end: still an internally valid chain, but shorter than the head
    // recorded at the last verification.
    let cut = all[all.len() - 2].0;
    app.sql(&format!("SET session_replication_role = replica; DELETE FROM audit_event WHERE seq >= {cut}; SET session_replication_role = DEFAULT;"))
        .await;
    let report = service::audit::verify_chain(&app.services, app.services.db(), rows_org(&app).await).await.unwrap();
    assert!(report.first_broken.as_ref().unwrap().reason.contains("removed"), "{report:?}");
    // A row removed from the middle breaks the sequence.
    let mid = all[1].0;
    app.sql(&format!("SET session_replication_role = replica; DELETE FROM audit_event WHERE seq = {mid}; SET session_replication_role = DEFAULT;"))
        .await;
    let report = service::audit::verify_chain(&app.services, app.services.db(), rows_org(&app).await).await.unwrap();
    assert!(report.first_broken.unwrap().reason.contains("missing"));
    app.stop().await;
}

async fn rows_org(app: &TestApp) -> uuid::Uuid {
    let db = app.db.connect().await;
    let r = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT id FROM organisation LIMIT 1"))
        .await
        .unwrap()
        .unwrap();
    let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    id
}

#[tokio::test]
async fn the_audit_page_lists_and_filters_events_of_ones_own_organisation() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "ada@clinic.test", Role::Admin).await;
    app.org_with_user("Other", "bob@other.test", Role::Admin).await;
    let (c, _) = app.sign_in("ada@clinic.test", None).await;
    let (s, page) = c.call_json("audit_list", serde_json::json!({ "filter": {} })).await;
    assert_eq!(s, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "auth.mfa.enrolled" && e["actor_email"] == "ada@clinic.test"));
    assert!(entries.iter().all(|e| e["actor_email"] != "bob@other.test"), "another organisation's events never show");
    let (_, page) = c.call_json("audit_list", serde_json::json!({ "filter": { "action": "auth.mfa.enrolled" } })).await;
    assert!(page["entries"].as_array().unwrap().iter().all(|e| e["action"] == "auth.mfa.enrolled"));
    let (s, b) =
        c.call_json("audit_list", serde_json::json!({ "filter": { "action": "'; DROP TABLE audit_event; --" } })).await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid")));
    let (s, _) = c.call_json("audit_list", serde_json::json!({ "filter": { "limit": "lots" } })).await;
    assert_eq!(s, 400, "malformed bodies are a clear client error");
    // Paging backwards.
    let (_, p1) = c.call_json("audit_list", serde_json::json!({ "filter": { "limit": 2 } })).await;
    let next = p1["next_before_seq"].as_i64().unwrap();
    let (_, p2) = c.call_json("audit_list", serde_json::json!({ "filter": { "limit": 2, "before_seq": next } })).await;
    assert!(p2["entries"][0]["seq"].as_i64().unwrap() < next);
    app.stop().await;
}
