//! No PHI in plaintext at rest or in logs: seed contacts with marker values through every path
//! (form, import, export, views, a segment naming a patient), then search a `pg_dump` of the database and the test run's logs
//! for those markers, as text and as the hex PostgreSQL uses for bytea. The test fails (never
//! skips) when it cannot read the log, and proves its import ran before searching.

use crate::contacts::{MARKER_DOB, MARKER_EMAIL, MARKER_FIRST, MARKER_LAST};
use crate::harness::*;
use domain::Role;
use serde_json::json;
use std::time::Duration;

/// A surname that only a segment condition carries (no contact has it): it is PHI all the same.
const MARKER_SEGMENT_ONLY: &str = "Vantrequist";

fn needles() -> Vec<String> {
    let mut v = Vec::new();
    for m in [
        MARKER_FIRST,
        MARKER_LAST,
        MARKER_EMAIL,
        MARKER_DOB,
        "Quillonbrae",
        "quillonbrae@marker.example",
        "1929-11-03",
        MARKER_SEGMENT_ONLY,
    ] {
        v.push(m.to_string());
        v.push(m.to_lowercase());
        v.push(data_encoding::HEXLOWER.encode(m.as_bytes()));
    }
    v
}

fn pg_dump(url: &str) -> String {
    let candidates = ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"];
    for bin in candidates {
        if let Ok(out) = std::process::Command::new(bin).arg("--no-owner").arg(url).output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    panic!("pg_dump is not available");
}

#[tokio::test]
async fn marker_phi_never_appears_in_a_database_dump_or_the_logs() {
    let app = TestApp::start_with(Options {
        workers: true,
        env: vec![("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    // Through the form…
    let (s, id) = admin
        .call_json("create_contact", json!({ "input": { "fields": { "email": MARKER_EMAIL, "first_name": MARKER_FIRST, "last_name": MARKER_LAST, "date_of_birth": MARKER_DOB } } }))
        .await;
    assert_eq!(s, 200);
    let id = id.as_str().unwrap().to_string();
    // …and an import (with a bad row carrying a marker too)…
    let csv = "email,first_name,last_name,date_of_birth\nquillonbrae@marker.example,Quillonbrae,Marker,1929-11-03\nnot-an-email,Quillonbrae,Bad,1929-11-03\n";
    let (s, up) = admin.upload(csv.as_bytes().to_vec()).await;
    assert_eq!(s, 200, "{up}");
    let imp = up["id"].as_str().unwrap().to_string();
    let (s, preview) = admin.call("preview_import", &[("id", &imp)]).await;
    assert_eq!(s, 200, "{preview}");
    let (s, started) = admin
        .call_json("start_import", json!({ "id": imp, "options": { "mapping": ["email", "first_name", "last_name", "date_of_birth"], "dedupe": "update", "list_ids": [], "consent_purpose": null, "consent_text": null } }))
        .await;
    assert_eq!(s, 200, "{started}");
    let mut status = serde_json::Value::Null;
    for _ in 0..150 {
        (_, status) = admin.call("import_status", &[("id", &imp)]).await;
        if status["status"] == "completed" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The import must have run to the end: a search of a database it never wrote proves nothing.
    assert_eq!(status["status"], "completed", "the import did not finish: {status}");
    assert_eq!((status["rows_created"].as_i64(), status["rows_failed"].as_i64()), (Some(1), Some(1)), "{status}");
    // …then every way of reading it back.
    admin.call("get_contact", &[("id", &id)]).await;
    admin.call("contacts_page", &[]).await;
    admin.call("contacts_page", &[("email", MARKER_EMAIL)]).await;
    let export = admin.get("/contacts/export.csv").await;
    assert!(export.body.contains(MARKER_FIRST), "the export must contain the data (sanity)");
    admin.get(&format!("/imports/{imp}/errors.csv")).await;
    // A segment that names the patient: the literal values of its PHI conditions are PHI too.
    // One of its values is in no contact at all, so only the segment can put it anywhere.
    let seg = json!({ "version": 1, "root": { "node": "and", "children": [
        { "node": "condition", "condition": { "kind": "field", "field": "email", "test": { "op": "text_equals", "value": MARKER_EMAIL } } },
        { "node": "condition", "condition": { "kind": "field", "field": "date_of_birth", "test": { "op": "date_before", "date": MARKER_DOB } } },
        { "node": "condition", "condition": { "kind": "field", "field": "last_name", "test": { "op": "text_equals", "value": MARKER_SEGMENT_ONLY } } } ] } });
    let (s, seg_id) = admin.call_json("create_segment", json!({ "name": "Named", "definition": seg })).await;
    assert_eq!(s, 200, "{seg_id}");
    let (s, n) = admin.call_json("count_segment", json!({ "definition": seg })).await;
    assert_eq!(s, 200, "{n}");
    let (s, n) = admin.call("count_saved_segment", &[("id", seg_id.as_str().unwrap())]).await;
    assert_eq!(s, 200, "{n}");
    let (s, saved) = admin.call("open_segment", &[("id", seg_id.as_str().unwrap())]).await;
    assert!(saved.to_string().contains(MARKER_SEGMENT_ONLY), "the segment keeps its condition (sanity): {s} {saved}");
    // A failing request whose input carries PHI.
    admin
        .call_json(
            "create_contact",
            json!({ "input": { "fields": { "email": MARKER_EMAIL, "first_name": MARKER_FIRST } } }),
        )
        .await;

    let dump = pg_dump(&app.db.url);
    assert!(dump.contains("CREATE TABLE public.contact"), "the dump is real");
    for n in needles() {
        assert!(!dump.contains(&n), "the database dump contains {n:?} in plaintext");
    }
    let path = log_file();
    let logs = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the test run's log {} cannot be read ({e}): nothing was searched", path.display()));
    assert!(logs.contains("request"), "log capture is working");
    assert!(logs.contains(&imp), "the log holds this test's lines (the import's id)");
    for n in needles() {
        assert!(!logs.contains(&n), "the logs contain {n:?}");
    }
    app.stop().await;
}
