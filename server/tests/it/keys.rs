//! Keys across processes: deleting an organisation shreds it in servers that are already running,
//! root-key rotation while other processes create keys, data-key rotation of every sealed column,
//! and the root key leaving the process environment.

use crate::campaigns::{contact, find_url, header, list_with, path_of, settings, start, template};
use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, mime};
use domain::Role;
use domain::campaigns::CampaignStatus;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use service::Actor;
use service::crypto::keyring::{KeyPurpose, KeyRing, RootKey};
use std::process::Command;
use std::time::{Duration, Instant};

async fn one_i64(db: &DatabaseConnection, sql: &str) -> i64 {
    let r = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string())).await.unwrap().unwrap();
    r.try_get_by_index(0).unwrap()
}

async fn one_text(db: &DatabaseConnection, sql: &str) -> String {
    let r = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string())).await.unwrap().unwrap();
    r.try_get_by_index(0).unwrap()
}

async fn uuids(db: &DatabaseConnection, sql: &str) -> Vec<uuid::Uuid> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_string()))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

/// The `server` binary with only what it needs in its environment.
fn server_bin(db: &TestDb) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERMETIC_DATABASE_URL", &db.url)
        .env("HERMETIC_ROOT_KEY", ROOT_KEY)
        .env("HERMETIC_LOG", "error");
    c
}

/// Item 2 of issue 18: the operator deletes an organisation with the command line while a server
/// (web and workers) is running and sending one of its campaigns. Within seconds the running
/// server refuses everything of that organisation — without a restart and without waiting for a
/// cache to expire.
#[tokio::test]
async fn deleting_an_organisation_shreds_it_in_the_running_server_within_seconds() {
    let smtp = SmtpServer::start(Tls::Required, &[]);
    let app = start(&smtp, &[]).await;
    let svc = &app.services;
    let org = app.org_with_user("Doomed Clinic", "admin@doomed.test", Role::Admin).await;
    let other = app.org_with_user("Other Clinic", "admin@other.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let other_actor = Actor::system(other, "test");
    let mut patients = vec![];
    for i in 0..30 {
        patients.push(contact(svc, &actor, &format!("p{i}@patients.test"), "Pat", true).await);
    }
    let survivor = contact(svc, &other_actor, "s@patients.test", "Sam", true).await;
    // A campaign that is still sending when the organisation is deleted (one message a second).
    let list = list_with(svc, &actor, &patients).await;
    let t = template(svc, &actor).await;
    let mut s = settings("Slow", list, t);
    s.throttle.per_second = 1;
    let campaign = service::campaigns::create(svc, &actor, &s).await.unwrap();
    service::campaigns::launch(svc, &actor, campaign).await.unwrap();
    let msgs = smtp.wait_for(1, 30).await;
    let m = mime(&msgs[0].0);
    let html = m["html"].as_str().unwrap().to_string();
    let click = path_of(&find_url(&html, "/t/c/"));
    let pixel_token = path_of(&find_url(&html, "/t/o/")).rsplit('/').next().unwrap().to_string();
    let unsubscribe = path_of(header(&m, "list-unsubscribe").trim_matches(['<', '>']));
    // An uploaded import waiting for its column mapping.
    let csv = b"email,first_name\nq@patients.test,Quinn\n".to_vec();
    let upload = futures::stream::iter(vec![Ok::<_, service::ServiceError>(csv)]);
    let import = service::contacts::import::upload(svc, &actor, upload, 1 << 20).await.unwrap().id;
    // Everything works before the deletion, and the server holds the organisation's keys in memory.
    let web = app.client();
    assert_eq!(web.get(&unsubscribe).await.status, 200);
    assert_eq!(web.get(&click).await.status, 302);
    assert!(service::contacts::detail(svc, &actor, patients[0]).await.is_ok());

    let db = app.db.connect().await;
    let org_keys = format!("SELECT count(*) FROM wrapped_key WHERE organisation_id = '{}'", org.0);
    let keys_before = one_i64(&db, &org_keys).await;
    assert!(keys_before >= 2);

    // The operator, in another process.
    let out = server_bin(&app.db)
        .args(["admin", "delete-org", "--org", "Doomed Clinic", "--confirm", "Doomed Clinic"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The running server follows within seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read_refused = service::contacts::detail(svc, &actor, patients[0]).await.is_err();
        let unsubscribe_gone = web.get(&unsubscribe).await.status == 404;
        let click_gone = web.get(&click).await.status == 404;
        let campaign_status =
            one_text(&db, &format!("SELECT status FROM campaign WHERE id = '{campaign}'")).await;
        let import_status = one_text(&db, &format!("SELECT status FROM contact_import WHERE id = '{import}'")).await;
        let done = read_refused
            && unsubscribe_gone
            && click_gone
            && campaign_status == CampaignStatus::Cancelled.as_str()
            && import_status == "cancelled";
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the deletion the running server still serves the organisation: contact read refused \
             {read_refused}, unsubscribe link gone {unsubscribe_gone}, click link gone {click_gone}, campaign \
             {campaign_status}, import {import_status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An open pixel of the organisation records nothing.
    let now = app.now();
    assert!(
        service::campaigns::tracking::open_token(svc, service::campaigns::tracking::Track::Open, &pixel_token, now)
            .await
            .is_err()
    );
    // Nothing is sealed for it any more, even once every cache would have expired, and no key is
    // created for it: the key lookup never re-creates a key for an organisation that had one.
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("email".to_string(), domain::Phi::new("late@patients.test".to_string()));
    let input = || domain::contacts::ContactInput { fields: fields.clone() };
    assert!(service::contacts::create(svc, &actor, input()).await.is_err());
    app.advance(3600);
    assert!(service::contacts::create(svc, &actor, input()).await.is_err());
    assert!(
        service::links::token(
            svc,
            org,
            service::links::LinkKind::Unsubscribe,
            service::links::LinkSubject::Contact { contact: patients[0], message: campaign },
            app.now()
        )
        .await
        .is_err()
    );
    assert_eq!(one_i64(&db, &org_keys).await, keys_before, "no key was created for the deleted organisation");
    assert_eq!(one_i64(&db, &format!("{org_keys} AND (destroyed_at IS NULL OR length(wrapped) > 0)")).await, 0);
    // Its queued messages were cancelled; nothing waits to be sent.
    assert_eq!(
        one_i64(&db, &format!("SELECT count(*) FROM delivery_queue WHERE campaign_id = '{campaign}' AND claimed_by IS NULL"))
            .await,
        0
    );
    assert_eq!(one_i64(&db, &format!("SELECT count(*) FROM import_chunk WHERE import_id = '{import}'")).await, 0);
    // The other organisation is untouched.
    assert!(service::contacts::detail(svc, &other_actor, survivor).await.is_ok());
    db.close().await.unwrap();
    app.stop().await;
}

/// Item 10a: a process that still holds only the old root key keeps running while the operator
/// rotates the root key. Whatever it does afterwards, every key on record must open with the new
/// root key alone (the old one is about to be thrown away).
#[tokio::test]
async fn root_key_rotation_loses_no_key_created_by_a_process_with_the_old_root_key() {
    let app = TestApp::start().await;
    let db = app.db.connect().await;
    let clock = app.clock.clone();
    let old_only = KeyRing::new(RootKey::from_encoded(ROOT_KEY).unwrap());
    let org = service::organisations::create(&app.services, "Late Clinic").await.unwrap();
    let new_root = RootKey::generate().unwrap();
    let new_text = new_root.to_base64();
    service::crypto::rotation::rotate_root(&app.services, new_root).await.unwrap();
    // The process that was not restarted yet needs a data key for the organisation.
    let late = old_only.active_key(&db, clock.as_ref(), Some(org), KeyPurpose::Data).await;
    if let Err(e) = &late {
        assert!(e.log_detail().contains("root key"), "a clear refusal: {}", e.log_detail());
    }
    // The old root key is removed everywhere: every key on record opens with the new one alone.
    let new_only = KeyRing::new(RootKey::from_encoded(&new_text).unwrap());
    for id in uuids(&db, "SELECT id FROM wrapped_key WHERE destroyed_at IS NULL").await {
        assert!(new_only.key_by_id(&db, id).await.is_ok(), "key {id} is unreadable with the new root key");
    }
    db.close().await.unwrap();
    app.stop().await;
}

/// Item 17: the root key given in `HERMETIC_ROOT_KEY` is read once and then gone from the
/// process: `/proc/<pid>/environ` (the memory the kernel shows to anyone allowed to inspect the
/// process, and what a child would inherit) no longer holds it while the server runs.
#[tokio::test]
async fn the_root_key_is_gone_from_the_environment_of_a_running_server() {
    let db = TestDb::new().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = server_bin(&db)
        .env("HERMETIC_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It serves, so it read the key (the audit key unwrapped at start proves it is the right one).
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&environ);
    assert!(text.contains("HERMETIC_DATABASE_URL="), "the environment was read: {text}");
    assert!(!text.contains(ROOT_KEY), "the root key is still in the process environment");
    assert!(!text.contains(&ROOT_KEY[..20]), "part of the root key is still in the process environment");
}
