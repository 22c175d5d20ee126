//! CSV import: hostile files, limits, and resuming after the worker is killed.

use crate::contacts::scalar;
use crate::harness::*;
use domain::Role;
use serde_json::json;
use std::time::Duration;

async fn wait_done(app: &TestApp, c: &Client, id: &str) -> serde_json::Value {
    for _ in 0..600 {
        let (_, v) = c.call("import_status", &[("id", id)]).await;
        if matches!(v["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = app;
    panic!("import did not finish");
}

fn hostile_csv() -> Vec<u8> {
    let mut f: Vec<u8> = b"\xEF\xBB\xBF\"Email\",\"First Name\",\"Last Name\",\"Notes\"\r\n".to_vec();
    f.extend_from_slice(b"ok1@x.test,Ann,\"O'Neil\",fine\r\n"); // row 1: created
    f.extend_from_slice(b"\"ok2@x.test\",\"Multi\nLine\",\"Quote \"\"Q\"\"\",\"=HYPERLINK(1)\"\r\n"); // row 2: created
    f.extend_from_slice(b"bad-email,Bob,B,x\r\n"); // row 3: invalid email
    f.extend_from_slice(b"ok3@x.test,\xff\xfe,C,x\r\n"); // row 4: not UTF-8
    f.extend_from_slice(b"ok4@x.test,Dee\r\n"); // row 5: missing columns
    f.extend_from_slice(b"ok5@x.test,Eve,E,x,extra\r\n"); // row 6: extra column
    f.extend_from_slice(b"OK1@X.TEST,Ann2,,\r\n"); // row 7: same address as row 1 (update; empty cells keep)
    f.extend_from_slice(b",NoEmail,N,x\r\n"); // row 8: email missing
    f
}

#[tokio::test]
async fn hostile_csv_gives_row_errors_and_loses_nothing() {
    let app = TestApp::start_with(Options {
        workers: true,
        env: vec![("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let (s, f) = admin
        .call_json(
            "create_field",
            json!({ "key": "notes", "label": "Notes", "field_type": "text", "options": [], "is_phi": true }),
        )
        .await;
    assert_eq!(s, 200, "{f}");
    let (s, list) =
        admin.call("create_list", &[("name", "Newsletter"), ("description", ""), ("purpose", "marketing")]).await;
    assert_eq!(s, 200);
    let (s, up) = admin.upload(hostile_csv()).await;
    assert_eq!(s, 200, "{up}");
    let id = up["id"].as_str().unwrap().to_string();
    let (s, p) = admin.call("preview_import", &[("id", &id)]).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["headers"], json!(["Email", "First Name", "Last Name", "Notes"]), "the BOM is stripped");
    assert_eq!(p["suggested"], json!(["email", "first_name", "last_name", "notes"]));
    assert_eq!(p["rows"][1][1], "Multi\nLine");
    // Bad mappings are refused with clear messages.
    let opts = |mapping: serde_json::Value| json!({ "id": id, "options": { "mapping": mapping, "dedupe": "update", "list_ids": [list], "consent_purpose": "marketing", "consent_text": "Yes, email me" } });
    let (s, e) = admin.call_json("start_import", opts(json!([null, "first_name", "last_name", "notes"]))).await;
    assert_eq!(s, 422);
    assert!(e["message"].as_str().unwrap().contains("email address"));
    let (s, _) = admin.call_json("start_import", opts(json!(["email", "email", null, null]))).await;
    assert_eq!(s, 422);
    let (s, _) = admin.call_json("start_import", opts(json!(["email", "first_name"]))).await;
    assert_eq!(s, 422, "one choice per column");
    let (s, v) = admin.call_json("start_import", opts(json!(["email", "first_name", "last_name", "notes"]))).await;
    assert_eq!(s, 200, "{v}");
    let v = wait_done(&app, &admin, &id).await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        (v["rows_done"].as_i64(), v["rows_created"].as_i64(), v["rows_updated"].as_i64(), v["rows_failed"].as_i64()),
        (Some(8), Some(2), Some(1), Some(5)),
        "{v}"
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, 2);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM import_chunk").await,
        0,
        "the sealed file is deleted after the import"
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM list_member WHERE status = 'subscribed'").await, 2);
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact_consent WHERE granted").await, 2);
    // The merged duplicate kept the last name from row 1 and took the first name from row 7.
    let (_, page) = admin.call("contacts_page", &[("email", "ok1@x.test")]).await;
    assert_eq!(page["rows"][0]["name"], "Ann2 O'Neil");
    let (_, page) = admin.call("contacts_page", &[("email", "ok2@x.test")]).await;
    let (_, d) = admin.call("get_contact", &[("id", page["rows"][0]["id"].as_str().unwrap())]).await;
    assert_eq!(d["fields"]["fields"]["first_name"], "Multi\nLine");
    assert_eq!(d["fields"]["fields"]["last_name"], "Quote \"Q\"");
    assert_eq!(d["fields"]["fields"]["notes"], "=HYPERLINK(1)");
    // The error report names rows, columns and problems, never values.
    let r = admin.get(&format!("/imports/{id}/errors.csv")).await;
    assert_eq!(r.status, 200);
    for row in ["3,email", "4,first_name", "5,(row)", "6,(row)", "8,email"] {
        assert!(r.body.contains(row), "{row} missing from:\n{}", r.body);
    }
    for value in ["bad-email", "NoEmail", "Dee", "extra", "Eve"] {
        assert!(!r.body.contains(value), "the report leaks {value}");
    }
    assert!(r.body.contains("not valid UTF-8"));
    assert!(r.body.contains("has 2 columns; the header has 4"));
    // Re-importing the same file with "skip" changes nothing.
    let (_, up2) = admin.upload(hostile_csv()).await;
    let id2 = up2["id"].as_str().unwrap().to_string();
    admin.call_json("start_import", json!({ "id": id2, "options": { "mapping": ["email", "first_name", "last_name", "notes"], "dedupe": "skip", "list_ids": [], "consent_purpose": null, "consent_text": null } })).await;
    let v = wait_done(&app, &admin, &id2).await;
    assert_eq!((v["rows_created"].as_i64(), v["rows_skipped"].as_i64()), (Some(0), Some(3)), "{v}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn unusable_files_are_refused_clearly_and_leave_nothing() {
    let app =
        TestApp::start_with(Options { env: vec![("HERMETIC_IMPORT__MAX_BYTES", "5000".into())], ..Default::default() })
            .await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let big = format!("email\n{}", "someone@example.test\n".repeat(400));
    for (body, needle) in [
        (big.into_bytes(), "larger than"),
        (Vec::new(), "empty"),
        (b"PK\x03\x04\x00\x00binary".to_vec(), "binary"),
        (b"\n\n".to_vec(), "header"),
    ] {
        let (s, e) = admin.upload(body).await;
        assert_eq!(s, 422, "{e}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
    }
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact_import").await, 0);
    assert_eq!(scalar(&app, "SELECT count(*) FROM import_chunk").await, 0);
    let (analyst, _) = app.sign_in("analyst@clinic.test", None).await;
    assert_eq!(analyst.upload(b"email\na@b.test\n".to_vec()).await.0, 403);
    let csrfless = app.client();
    assert_eq!(csrfless.upload(b"email\na@b.test\n".to_vec()).await.0, 403);
    app.stop().await;
}

/// Issue 19 item 7: a semicolon-separated file (what spreadsheets save in many locales) or a
/// tab-separated one was read as one column, and a file with only a header row was accepted.
#[tokio::test]
async fn semicolon_and_tab_files_are_split_and_a_header_only_file_is_refused() {
    let app = TestApp::start_with(Options {
        workers: true,
        env: vec![("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let files: [(&[u8], &str, serde_json::Value, i64); 4] = [
        // Semicolons, with a quoted value holding the delimiter, a BOM and CRLF.
        (
            b"\xEF\xBB\xBFEmail;First name;Last name\r\npat@x.test;Pat;\"Lee; Jr\"\r\nsam@x.test;Sam;Ng\r\n",
            "semicolons",
            json!(["Email", "First name", "Last name"]),
            2,
        ),
        (
            b"email\tfirst_name\tlast_name\nann@x.test\tAnn\tBo\n",
            "tabs",
            json!(["email", "first_name", "last_name"]),
            1,
        ),
        // Commas, although the values hold semicolons and tabs.
        (
            b"email,first_name,last_name\ncy@x.test,\"a;b;c\",\"d\te\"\ndi@x.test,x;y,z\n",
            "commas",
            json!(["email", "first_name", "last_name"]),
            2,
        ),
        // One column: nothing splits it, and it imports.
        (b"email\nsolo@x.test\n", "commas", json!(["email"]), 1),
    ];
    for (body, delimiter, headers, created) in files {
        let (s, up) = admin.upload(body.to_vec()).await;
        assert_eq!(s, 200, "{up}");
        let id = up["id"].as_str().unwrap().to_string();
        let (s, p) = admin.call("preview_import", &[("id", &id)]).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(p["headers"], headers, "{p}");
        assert_eq!(p["delimiter"], delimiter, "{p}");
        let columns = headers.as_array().unwrap().len();
        let mapping: Vec<&str> = ["email", "first_name", "last_name"].into_iter().take(columns).collect();
        let (s, v) = admin
            .call_json("start_import", json!({ "id": id, "options": { "mapping": mapping, "dedupe": "update", "list_ids": [], "consent_purpose": null, "consent_text": null } }))
            .await;
        assert_eq!(s, 200, "{v}");
        let v = wait_done(&app, &admin, &id).await;
        assert_eq!(
            (v["status"].as_str(), v["rows_created"].as_i64(), v["rows_failed"].as_i64()),
            (Some("completed"), Some(created), Some(0)),
            "{delimiter}: {v}"
        );
    }
    let (_, page) = admin.call("contacts_page", &[("email", "pat@x.test")]).await;
    assert_eq!(page["rows"][0]["name"], "Pat Lee; Jr", "the quoted semicolon stays in the value");
    let (_, page) = admin.call("contacts_page", &[("email", "cy@x.test")]).await;
    assert_eq!(page["rows"][0]["name"], "a;b;c d\te");
    // Issue 19 item 8: the count describes the rows shown (one match), not the organisation's 6.
    assert_eq!(page["total"], 1, "{page}");
    let (_, page) = admin.call("contacts_page", &[("email", "nobody@x.test")]).await;
    assert_eq!((page["total"].as_i64(), page["rows"].as_array().map(Vec::len)), (Some(0), Some(0)), "{page}");
    let (_, page) = admin.call("contacts_page", &[]).await;
    assert_eq!(page["total"], 6, "{page}");

    // A header with nothing under it (or only empty rows) is refused, and nothing is kept.
    let before = scalar(&app, "SELECT count(*) FROM contact_import").await;
    for body in [&b"email;first_name\r\n"[..], b"email,first_name", b"\xEF\xBB\xBFemail,first_name\n,\n , \n\n"] {
        let (s, e) = admin.upload(body.to_vec()).await;
        assert_eq!(s, 422, "{e}");
        assert!(e["message"].as_str().unwrap().contains("no contacts under it"), "{e}");
    }
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact_import").await, before);
    app.stop().await;
}

/// A `server worker` process on the test database (killed with kill -9 by the tests).
fn spawn_worker(app: &TestApp) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERMETIC_DATABASE_URL", &app.db.url)
        .env("HERMETIC_ROOT_KEY", ROOT_KEY)
        .env("HERMETIC_LOG", "warn")
        .env("HERMETIC_JOBS__POLL_INTERVAL_SECS", "1")
        .env("HERMETIC_JOBS__HEARTBEAT_SECS", "1")
        .env("HERMETIC_JOBS__MISSED_HEARTBEATS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Peak resident memory of a running process, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

fn mapping(keys: &[&str]) -> Vec<Option<String>> {
    keys.iter().map(|s| Some(s.to_string())).collect()
}

/// A million rows, some hostile: every 997th has an invalid address, every 10,007th a name that is
/// not UTF-8, every 1,009th a quoted name with an embedded newline and quotes (valid).
/// The worker process imports it in bounded memory and every row is accounted for.
#[tokio::test]
async fn a_million_row_file_imports_in_bounded_memory_and_accounts_for_every_row() {
    const N: usize = 1_000_000;
    let mut data: Vec<u8> = Vec::with_capacity(N * 60);
    data.extend_from_slice(b"email,first_name,last_name,date_of_birth\n");
    let mut failed = 0i64;
    for i in 0..N {
        let bad_email = i % 997 == 0;
        let bad_utf8 = i % 10_007 == 0;
        if bad_email || bad_utf8 {
            failed += 1;
        }
        if bad_email {
            data.extend_from_slice(format!("not-an-address-{i},F{i},").as_bytes());
        } else {
            data.extend_from_slice(format!("p{i}@million.example,").as_bytes());
            if i % 1009 == 0 {
                data.extend_from_slice(format!("\"Line\nbreak \"\"{i}\"\"\",").as_bytes());
            } else {
                data.extend_from_slice(format!("F{i},").as_bytes());
            }
        }
        if bad_utf8 {
            data.extend_from_slice(b"\xff\xfe,");
        } else {
            data.extend_from_slice(format!("L{i},").as_bytes());
        }
        data.extend_from_slice(format!("19{:02}-0{}-1{}\n", 30 + i % 70, 1 + i % 9, i % 10).as_bytes());
    }
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let actor = service::Actor::system(org, "test");
    let stream = futures::stream::iter(data.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect::<Vec<_>>());
    drop(data);
    let up = service::contacts::import::upload(&app.services, &actor, stream, 1 << 30).await.unwrap();
    let opts = domain::contacts::ImportOptions {
        mapping: mapping(&["email", "first_name", "last_name", "date_of_birth"]),
        dedupe: domain::contacts::Dedupe::Skip,
        list_ids: vec![],
        consent_purpose: None,
        consent_text: None,
    };
    service::contacts::import::start(&app.services, &actor, up.id, opts).await.unwrap();
    let mut child = spawn_worker(&app);
    let mut peak = 0;
    let mut v = service::contacts::import::status(&app.services, &actor, up.id).await.unwrap();
    for _ in 0..6000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(peak_rss_mb(child.id()));
        v = service::contacts::import::status(&app.services, &actor, up.id).await.unwrap();
        if v.finished() {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    assert_eq!(v.status, "completed", "{v:?}");
    assert_eq!((v.rows_done, v.rows_failed), (N as i64, failed), "{v:?}");
    assert_eq!(v.rows_created, N as i64 - failed, "{v:?}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, N as i64 - failed);
    assert_eq!(scalar(&app, "SELECT count(DISTINCT row_number) FROM import_error").await, failed);
    assert_eq!(scalar(&app, "SELECT count(*) FROM import_chunk").await, 0, "the stored file is deleted");
    // The file is ~60 MB; the worker streams it.
    assert!(peak < 300, "worker peak RSS {peak} MB");
    app.stop().await;
}

/// A generated file of `n` valid rows where every 7th row from row 5003 on repeats the address of the row 5003
/// rows earlier — just over one write batch back, so repeats land in neighbouring batches, which
/// are written concurrently. Returns the file and the number of distinct addresses.
fn csv_with_repeats(n: usize) -> (Vec<u8>, usize) {
    let mut out = String::with_capacity(n * 80);
    out.push_str("email,first_name,last_name,phone,date_of_birth\n");
    let mut distinct = 0;
    for i in 0..n {
        let who = if i >= 5003 && i % 7 == 0 { i - 5003 } else { i };
        if who == i {
            distinct += 1;
        }
        out.push_str(&format!("patient{who}@bulk.example,First{i},Last{i},+1555{:07},1950-01-0{}\n", i, 1 + i % 9));
    }
    (out.into_bytes(), distinct)
}

#[tokio::test]
async fn killing_the_worker_mid_import_loses_and_duplicates_nothing() {
    const N: usize = 30_000;
    let app = TestApp::start().await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let actor = service::Actor::system(org, "test");
    let list = service::contacts::lists::create(
        &app.services,
        &actor,
        "Bulk",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .unwrap();
    let (data, distinct) = csv_with_repeats(N);
    let stream = futures::stream::iter(data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect::<Vec<_>>());
    let up = service::contacts::import::upload(&app.services, &actor, stream, 1 << 30).await.unwrap();
    let opts = domain::contacts::ImportOptions {
        mapping: mapping(&["email", "first_name", "last_name", "phone", "date_of_birth"]),
        dedupe: domain::contacts::Dedupe::Update,
        list_ids: vec![list],
        consent_purpose: Some(domain::contacts::ConsentPurpose::Marketing),
        consent_text: Some("Yes, email me".into()),
    };
    service::contacts::import::start(&app.services, &actor, up.id, opts).await.unwrap();
    let spawn = || spawn_worker(&app);
    let done = |v: &domain::contacts::ImportView| v.status == "completed";
    let mut kills = 0;
    let mut last = 0;
    let mut child = spawn();
    for _ in 0..1200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = service::contacts::import::status(&app.services, &actor, up.id).await.unwrap();
        if done(&v) {
            break;
        }
        // Kill -9 each time progress was made, three times over.
        if kills < 3 && v.rows_done > last {
            last = v.rows_done;
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            child = spawn();
        }
    }
    let v = service::contacts::import::status(&app.services, &actor, up.id).await.unwrap();
    child.kill().ok();
    child.wait().ok();
    assert_eq!(kills, 3, "the worker was not killed mid-import: {v:?}");
    assert!(done(&v), "{v:?}");
    assert_eq!(v.rows_done, N as i64);
    assert_eq!(v.rows_failed, 0);
    assert_eq!((v.rows_created, v.rows_updated), (distinct as i64, (N - distinct) as i64), "{v:?}");
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact").await, distinct as i64, "exactly one contact per address");
    assert_eq!(scalar(&app, "SELECT count(*) FROM list_member").await, distinct as i64);
    assert_eq!(scalar(&app, "SELECT count(*) FROM contact_consent WHERE granted").await, distinct as i64);
    assert_eq!(
        scalar(&app, "SELECT count(DISTINCT contact_id) FROM consent_event WHERE source = 'import'").await,
        distinct as i64
    );
    app.stop().await;
}

/// Issue 18 item 16: an upload that nobody starts must not keep its sealed file forever. After a
/// day the maintenance job deletes its chunks and marks it expired (audited); imports that were
/// started keep theirs.
#[tokio::test]
async fn uploads_never_started_are_purged_after_a_day() {
    let app = TestApp::start().await;
    app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let (admin, secret) = app.sign_in("admin@clinic.test", None).await;
    let (s, idle) = admin.upload(b"email,first_name\nidle@x.test,Ida\n".to_vec()).await;
    assert_eq!(s, 200, "{idle}");
    let idle = idle["id"].as_str().unwrap().to_string();
    let (_, started) = admin.upload(b"email,first_name\nbusy@x.test,Bea\n".to_vec()).await;
    let started = started["id"].as_str().unwrap().to_string();
    let (s, v) = admin
        .call_json("start_import", json!({ "id": started, "options": { "mapping": ["email", "first_name"], "dedupe": "update", "list_ids": [], "consent_purpose": null, "consent_text": null } }))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("queued")), "{v}");
    // A third one a worker is in the middle of (the job runs later in this test-less worker pool).
    let (_, running) = admin.upload(b"email\nrun@x.test\n".to_vec()).await;
    let running = running["id"].as_str().unwrap().to_string();
    app.sql(&format!("UPDATE contact_import SET status = 'running', mapping = '[\"email\"]' WHERE id = '{running}'"))
        .await;
    let chunks = |id: &str| {
        let sql = format!("SELECT count(*) FROM import_chunk WHERE import_id = '{id}'");
        let app = &app;
        async move { scalar(app, &sql).await }
    };
    assert_eq!((chunks(&idle).await, chunks(&started).await, chunks(&running).await), (1, 1, 1));

    // 23 hours on: nothing is purged yet.
    app.advance(23 * 3600);
    service::maintenance::run(&app.services).await.unwrap();
    assert_eq!(chunks(&idle).await, 1, "kept for a day");
    // 25 hours after the upload: the idle upload's sealed file is gone and the import says why.
    app.advance(2 * 3600);
    service::maintenance::run(&app.services).await.unwrap();
    assert_eq!(chunks(&idle).await, 0, "the never-started upload's sealed chunks are deleted");
    assert_eq!((chunks(&started).await, chunks(&running).await), (1, 1), "started imports are not touched");
    // (The session idled out meanwhile: sign in again.)
    let (admin, _) = app.sign_in("admin@clinic.test", Some(&secret)).await;
    let (s, v) = admin.call("import_status", &[("id", &idle)]).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("expired")), "{v}");
    assert!(v["finished_at"].is_string(), "{v}");
    let (_, recent) = admin.call("recent_imports", &[]).await;
    assert!(
        recent.as_array().unwrap().iter().any(|r| r["id"] == idle.as_str() && r["status"] == "expired"),
        "{recent}"
    );
    // It can no longer be previewed or started; the answer says why.
    let (s, e) = admin.call("preview_import", &[("id", &idle)]).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    let (s, e) = admin
        .call_json("start_import", json!({ "id": idle, "options": { "mapping": ["email", "first_name"], "dedupe": "update", "list_ids": [], "consent_purpose": null, "consent_text": null } }))
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    assert_eq!(
        scalar(
            &app,
            &format!("SELECT count(*) FROM audit_event WHERE action = 'import.expired' AND target_id = '{idle}'")
        )
        .await,
        1,
        "the purge is audited"
    );
    // Running maintenance again changes nothing.
    service::maintenance::run(&app.services).await.unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'import.expired'").await, 1);
    app.stop().await;
}
