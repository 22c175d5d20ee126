//! Keys across processes: deleting an organisation shreds it in servers that are already running,
//! root-key rotation while other processes create keys, data-key rotation of every sealed column,
//! and the root key leaving the process environment.

use crate::campaigns::{contact, find_url, header, list_with, path_of, settings, start, template};
use crate::harness::*;
use crate::smtp::{SmtpServer, Tls, mime};
use domain::campaigns::CampaignStatus;
use domain::{Phi, Role};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use service::crypto::columns::{self, NOT_SEALED, SEALED};
use service::crypto::keyring::{KeyPurpose, KeyRing, RootKey};
use service::crypto::rotation;
use service::{Actor, Services};
use std::collections::{BTreeMap, BTreeSet};
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
    app.verified_domain(org, "clinic.test").await;
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
        let campaign_status = one_text(&db, &format!("SELECT status FROM campaign WHERE id = '{campaign}'")).await;
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
        one_i64(
            &db,
            &format!("SELECT count(*) FROM delivery_queue WHERE campaign_id = '{campaign}' AND claimed_by IS NULL")
        )
        .await,
        0
    );
    assert_eq!(one_i64(&db, &format!("SELECT count(*) FROM import_chunk WHERE import_id = '{import}'")).await, 0);
    // The other organisation is untouched.
    assert!(service::contacts::detail(svc, &other_actor, survivor).await.is_ok());
    assert_eq!(
        one_i64(&db, &format!("SELECT count(*) FROM sending_domain WHERE organisation_id = '{}'", org.0)).await,
        0,
        "a deleted organisation keeps no claim on its sending domain"
    );
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

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

/// Poll `check` until it holds, or fail after `secs` seconds saying what was awaited.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Another process on the same database: its own key ring (no shared cache), same settings.
async fn process_with(app: &TestApp, ring: KeyRing) -> Services {
    Services::new(app.db.connect().await, app.clock.clone(), ring, app.services.settings().clone()).unwrap()
}

/// Item 2: the notification path on its own. A second process whose key ring trusts an
/// organisation check for an hour still lets go of a deleted organisation at once, because it
/// listens; and when its listener's connection is cut it re-checks everything it trusted, since a
/// notification may have been lost meanwhile.
#[tokio::test]
async fn every_process_hears_of_a_deletion_at_once_even_across_a_lost_listener_connection() {
    let app = TestApp::start().await;
    let db = app.db.connect().await;
    let ring = KeyRing::new(RootKey::from_encoded(ROOT_KEY).unwrap()).with_revalidate_after(Duration::from_secs(3600));
    let other = process_with(&app, ring).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(service::crypto::revocation::listen(other.clone(), stop_rx));
    let listeners = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' AND query LIKE 'LISTEN%' \
         AND datname = current_database()",
        service::crypto::revocation::APPLICATION_NAME
    );
    // The in-process server's listener and the second process's.
    eventually(10, "both processes listen", || async { one_i64(&db, &listeners).await == 2 }).await;

    let mut orgs = vec![];
    for name in ["First", "Second"] {
        let org = service::organisations::create(&app.services, name).await.unwrap();
        let actor = Actor::system(org, "test");
        let mut fields = BTreeMap::new();
        fields.insert("email".to_string(), Phi::new(format!("p@{}.test", name.to_lowercase())));
        let c =
            service::contacts::create(&app.services, &actor, domain::contacts::ContactInput { fields }).await.unwrap();
        assert!(service::contacts::detail(&other, &actor, c).await.is_ok());
        orgs.push((org, actor, c));
    }

    // A deletion notifies: the second process refuses within moments, not after its hour.
    rotation::delete_organisation(&app.services, orgs[0].0).await.unwrap();
    let (_, a0, c0) = &orgs[0];
    eventually(5, "the second process refuses the deleted organisation", || async {
        service::contacts::detail(&other, a0, *c0).await.is_err()
    })
    .await;

    // A deletion the listener cannot hear (written without a notification, as if the notification
    // were lost while its connection was down): the second process still trusts its check...
    let (org1, a1, c1) = &orgs[1];
    exec(&db, &format!("UPDATE organisation SET deleted_at = now() WHERE id = '{}'", org1.0)).await;
    assert!(service::contacts::detail(&other, a1, *c1).await.is_ok());
    // ...until its listener's connection is cut: on reconnecting it checks everything again.
    exec(
        &db,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}' \
             AND datname = current_database()",
            service::crypto::revocation::APPLICATION_NAME
        ),
    )
    .await;
    eventually(10, "the second process re-checks after its listener reconnects", || async {
        service::contacts::detail(&other, a1, *c1).await.is_err()
    })
    .await;
    eventually(10, "both listeners are back", || async { one_i64(&db, &listeners).await == 2 }).await;
    let _ = stop.send(true);
    db.close().await.unwrap();
    app.stop().await;
}

/// Item 10a, the rolling procedure: every process gets the new root key as current and the old
/// one as previous, one at a time, while others still run with the old key alone; the operator
/// rotates; the old key is removed. No process stops, no key is ever wrapped under a root key that
/// is being retired, and a key insert in flight when the rotation starts is re-wrapped too.
#[tokio::test]
async fn the_rolling_root_key_rotation_waits_for_key_inserts_in_flight_and_needs_no_restart() {
    let app = TestApp::start().await;
    let db = app.db.connect().await;
    let clock = app.clock.clone();
    let new_text = RootKey::generate().unwrap().to_base64();
    let old = || RootKey::from_encoded(ROOT_KEY).unwrap();
    let new = || RootKey::from_encoded(&new_text).unwrap();
    let (old_id, new_id) = (old().id().to_string(), new().id().to_string());
    let org = |name: &'static str| {
        let svc = app.services.clone();
        async move { service::organisations::create(&svc, name).await.unwrap() }
    };
    let root_of = |id: uuid::Uuid| {
        let db = &db;
        async move { one_text(db, &format!("SELECT root_key_id FROM wrapped_key WHERE id = '{id}'")).await }
    };
    // A: not yet given the new key. B: new key current, old key previous.
    let a = KeyRing::new(old());
    let b = KeyRing::with_previous(new(), vec![old()]).unwrap();
    assert_eq!(b.establish(&db, clock.as_ref()).await.unwrap(), old_id, "the database still names the old key");
    // Before the rotation B wraps new keys under the database's current (old) root: A opens them.
    let k1 = b.active_key(&db, clock.as_ref(), Some(org("One").await), KeyPurpose::Data).await.unwrap();
    assert_eq!(root_of(k1.id).await, old_id);
    assert!(a.key_by_id(&db, k1.id).await.is_ok());

    // A key insert of process A is in flight (its transaction not yet committed) when the
    // operator starts the rotation from a process configured like B.
    let org2 = org("Two").await;
    let txn = db.begin().await.unwrap();
    let k2 = a.active_key(&txn, clock.as_ref(), Some(org2), KeyPurpose::Data).await.unwrap();
    let rotator = process_with(&app, KeyRing::with_previous(new(), vec![old()]).unwrap()).await;
    let task = tokio::spawn(async move { rotation::rotate_root_to_configured(&rotator).await });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                   AND datname = current_database() AND query LIKE 'SELECT root_key_id FROM root_key_state WHERE id = 1 FOR UPDATE%'";
    eventually(10, "the rotation waits for the insert in flight", || async { one_i64(&db, waiting).await == 1 }).await;
    assert!(!task.is_finished());
    txn.commit().await.unwrap();
    let done = task.await.unwrap().unwrap();
    assert_eq!((done.previous_root_key_id.as_str(), done.root_key_id.as_str()), (old_id.as_str(), new_id.as_str()));
    assert_eq!(done.rewrapped, 3, "the audit key and the two data keys: {done:?}");
    assert_eq!(root_of(k2.id).await, new_id, "the key committed during the rotation was re-wrapped");
    assert_eq!(
        one_i64(
            &db,
            &format!("SELECT count(*) FROM wrapped_key WHERE destroyed_at IS NULL AND root_key_id <> '{new_id}'")
        )
        .await,
        0
    );

    // A, still without the new key, refuses to create a key (rather than one nobody could open
    // once the old key is gone) and says why; B creates under the new root, without a restart.
    let org3 = org("Three").await;
    let refused = a.active_key(&db, clock.as_ref(), Some(org3), KeyPurpose::Data).await.err().unwrap();
    assert!(refused.log_detail().contains("does not hold"), "{}", refused.log_detail());
    assert_eq!(
        one_i64(&db, &format!("SELECT count(*) FROM wrapped_key WHERE organisation_id = '{}'", org3.0)).await,
        0
    );
    let k3 = b.active_key(&db, clock.as_ref(), Some(org3), KeyPurpose::Data).await.unwrap();
    assert_eq!(root_of(k3.id).await, new_id);
    // A process started with only the old key is stopped at start with a clear message.
    let stale = KeyRing::new(old()).establish(&db, clock.as_ref()).await.err().unwrap();
    assert!(stale.log_detail().contains(&new_id), "{}", stale.log_detail());

    // The old key is removed everywhere: every key on record opens with the new key alone.
    let c = KeyRing::new(new());
    assert_eq!(c.establish(&db, clock.as_ref()).await.unwrap(), new_id);
    for id in uuids(&db, "SELECT id FROM wrapped_key WHERE destroyed_at IS NULL").await {
        assert!(c.key_by_id(&db, id).await.is_ok(), "key {id} is unreadable with the new root key");
    }
    db.close().await.unwrap();
    app.stop().await;
}

/// Item 10b: every `bytea` column of the migrated schema is either rotated with the data key
/// (`service::crypto::columns::SEALED`) or listed, with its reason, as not holding sealed values
/// (`NOT_SEALED`). A new sealed column that rotation would skip fails here.
#[tokio::test]
async fn every_bytea_column_is_rotated_or_listed_as_not_sealed() {
    let db = TestDb::new().await;
    let conn = db.connect().await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            // A monthly partition's columns are its parent's (rotated through the parent).
            "SELECT table_name::text, column_name::text FROM information_schema.columns c
             WHERE table_schema = 'public' AND data_type = 'bytea'
               AND NOT EXISTS (SELECT 1 FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
                               WHERE n.nspname = 'public' AND k.relname = c.table_name AND k.relispartition)"
                .to_string(),
        ))
        .await
        .unwrap();
    let schema: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            let t: String = r.try_get_by_index(0).unwrap();
            let c: String = r.try_get_by_index(1).unwrap();
            format!("{t}.{c}")
        })
        .collect();
    assert!(schema.len() > 20, "{schema:?}");
    let listed: BTreeSet<String> =
        SEALED.iter().map(|c| c.name()).chain(NOT_SEALED.iter().map(|(t, c, _)| format!("{t}.{c}"))).collect();
    let missing: Vec<_> = schema.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "bytea columns that data-key rotation does not cover and that are not listed as unsealed \
         (add each to SEALED or NOT_SEALED in service/src/crypto/columns.rs): {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&schema).collect();
    assert!(stale.is_empty(), "listed in service/src/crypto/columns.rs but not in the schema: {stale:?}");
    conn.close().await.unwrap();
}

/// Item 10b: a value in every sealed column, a data-key rotation, then the old key destroyed:
/// everything still opens, with a key ring that never saw the old key, and through the product.
#[tokio::test]
async fn data_key_rotation_reseals_every_sealed_column_so_the_old_key_can_be_destroyed() {
    let app = TestApp::start().await;
    let svc = &app.services;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "new@clinic.test", Role::Marketer).await;
    let actor = Actor::system(org, "test");
    let mut produced = BTreeSet::new();

    // contact.*: every built-in PHI field and a PHI custom field.
    service::contacts::fields::create(
        svc,
        &actor,
        "allergy",
        "Allergy",
        domain::contacts::FieldType::Text,
        vec![],
        true,
    )
    .await
    .unwrap();
    let mut fields = BTreeMap::new();
    for (k, v) in [
        ("email", "pat@patients.test"),
        ("first_name", "Pat"),
        ("last_name", "Lee"),
        ("phone", "+15555550100"),
        ("date_of_birth", "1980-02-03"),
        ("allergy", "penicillin"),
    ] {
        fields.insert(k.to_string(), Phi::new(v.to_string()));
    }
    let patient = service::contacts::create(svc, &actor, domain::contacts::ContactInput { fields: fields.clone() })
        .await
        .unwrap();
    produced.extend(
        ["email", "first_name", "last_name", "phone", "date_of_birth", "phi_attrs"].map(|c| format!("contact.{c}")),
    );
    // app_user.totp_secret: the administrator enrols an authenticator.
    app.sign_in("admin@clinic.test", None).await;
    produced.insert("app_user.totp_secret".to_string());
    // user_session.pending_totp_secret: another user is shown a secret, not yet confirmed.
    let c = app.client();
    c.page("/login").await;
    let (status, body) = c.call("sign_in", &[("email", "new@clinic.test"), ("password", PASSWORD)]).await;
    assert_eq!((status, body.as_str()), (200, Some("enrol_mfa")));
    assert_eq!(c.page("/login/enrol").await.0, 200);
    produced.insert("user_session.pending_totp_secret".to_string());
    // dev_mailbox.*: mail captured because no relay is configured.
    let out = service::outbound::send_system(
        svc,
        service::outbound::Outgoing {
            organisation: org,
            to: Phi::new("pat@patients.test".to_string()),
            subject: "Your appointment".into(),
            text: Phi::new("See you on Monday".to_string()),
            html: None,
        },
    )
    .await
    .unwrap();
    assert!(matches!(out, service::mail::SendOutcome::Accepted(_)), "{out:?}");
    produced.extend(["recipient", "subject", "message"].map(|c| format!("dev_mailbox.{c}")));
    // patient_event.properties.
    let mut props = BTreeMap::new();
    props.insert("clinic".to_string(), domain::contacts::FieldValue::Text("Cardiology".into()));
    service::events::record(svc, &actor, patient, "appointment.booked", &Phi::new(props), app.now()).await.unwrap();
    produced.insert("patient_event.properties".to_string());
    // segment.sealed_definition: a saved segment with a PHI condition.
    let def: domain::segments::SegmentDefinition = serde_json::from_value(serde_json::json!({
        "version": 1,
        "root": {"node": "and", "children": [{"node": "condition", "condition":
            {"kind": "field", "field": "last_name", "test": {"op": "text_equals", "value": "Lee"}}}]}
    }))
    .unwrap();
    service::segments::create(svc, &Actor::system(org, "test"), "Lees", &def).await.unwrap();
    produced.insert("segment.sealed_definition".to_string());
    // sending_domain.dkim_key: a domain added (its DKIM key generated and sealed), not yet verified.
    service::sending_domains::add(svc, &actor, "clinic.test").await.unwrap();
    produced.insert("sending_domain.dkim_key".to_string());
    // contact_import.headers and import_chunk.data: an upload waiting for its mapping.
    let csv = b"email,first_name\nquinn@patients.test,Quinn\n".to_vec();
    let upload = futures::stream::iter(vec![Ok::<_, service::ServiceError>(csv)]);
    let import = service::contacts::import::upload(svc, &actor, upload, 1 << 20).await.unwrap().id;
    produced.extend(["contact_import.headers".to_string(), "import_chunk.data".to_string()]);
    // api_key.signing_secret: an API key that requires signed requests.
    service::api::keys::create(
        svc,
        &actor,
        domain::api::NewKey {
            name: "EHR".into(),
            scopes: vec![domain::api::Scope::EventsWrite],
            expires_at: None,
            require_signature: true,
        },
    )
    .await
    .unwrap();
    produced.insert("api_key.signing_secret".to_string());
    // api_message.data: a transactional message accepted with merge data (no worker runs here, so
    // it stays queued). The domain added above counts as verified for it.
    app.sql(&format!(
        "UPDATE sending_domain SET status = 'verified', verified_at = now() WHERE organisation_id = '{}'",
        org.0
    ))
    .await;
    let template = crate::campaigns::template(svc, &actor).await;
    let body = serde_json::json!({"contact": {"id": patient}, "template": template, "data": {"slot": "9:30"}});
    let m = service::api::messages::parse(body.to_string().as_bytes()).unwrap();
    service::api::messages::send(svc, &actor, m, None).await.unwrap().unwrap();
    produced.insert("api_message.data".to_string());
    // webhook_endpoint.secret: an endpoint (a public literal address: no DNS needed).
    service::webhooks::create(
        svc,
        &actor,
        domain::webhooks::EndpointInput {
            url: "https://93.184.216.34/hooks".into(),
            events: vec!["message.sent".into()],
            enabled: true,
        },
    )
    .await
    .unwrap();
    produced.insert("webhook_endpoint.secret".to_string());
    // sequence.sealed_draft and sequence_version.sealed_definition: a sequence whose trigger holds
    // a literal (possibly PHI), published once (the draft stays beside the published version).
    let sequence = service::sequences::create(svc, &actor, "Reminders").await.unwrap();
    let definition: domain::sequences::SequenceDefinition = serde_json::from_value(serde_json::json!({
        "version": 1,
        "trigger": {"kind": "event", "event_type": "appointment.booked",
                    "properties": [{"key": "clinic", "test": {"op": "text_equals", "value": "Cardiology"}}]},
        "entry": "every_time",
        "start": "confirm",
        "steps": [{"id": "confirm", "kind": "send_email", "template": template, "purpose": "transactional", "next": null}]
    }))
    .unwrap();
    let draft = service::sequences::DraftInput {
        name: "Reminders".into(),
        from_name: "Clinic".into(),
        from_email: "care@clinic.test".into(),
        definition,
    };
    service::sequences::save_draft(svc, &actor, sequence, &draft).await.unwrap();
    assert_eq!(service::sequences::publish(svc, &actor, sequence, &[]).await.unwrap(), 1);
    produced.extend(["sequence.sealed_draft".to_string(), "sequence_version.sealed_definition".to_string()]);

    let registry: BTreeSet<String> = SEALED.iter().map(|c| c.name()).collect();
    assert_eq!(
        registry, produced,
        "every sealed column needs a value in this test (add a producer above) and every value produced here \
         must be in service::crypto::columns::SEALED"
    );

    let db = app.db.connect().await;
    let old_key = svc.keys().active_key(&db, svc.clock(), Some(org), KeyPurpose::Data).await.unwrap().id;
    let before = columns::open_all(&db, &KeyRing::new(RootKey::from_encoded(ROOT_KEY).unwrap()), org).await.unwrap();
    let mut total = 0;
    for (c, n) in &before {
        assert!(*n >= 1, "no value in {}", c.name());
        total += n;
    }
    assert_eq!(columns::count_under_key(&db, org, old_key).await.unwrap(), total);

    let rotation_id = rotation::start_data_rotation(svc, &actor).await.unwrap();
    // Not complete before every process must have switched to the new key.
    let early = rotation::process_data_rotation(svc, rotation_id).await.unwrap();
    assert_eq!((early.resealed, early.completed), (total, false));
    assert_eq!(columns::count_under_key(&db, org, old_key).await.unwrap(), 0);
    // A process that had not yet noticed the new key seals one more value under the old key.
    let old = svc.keys().key_by_id(&db, old_key).await.unwrap();
    let late = old
        .seal(
            &service::crypto::seal::Aad { organisation: org, table: "contact", column: "first_name", row: patient },
            b"Patricia",
        )
        .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE contact SET first_name = $1 WHERE id = $2",
        [late.into_bytes().into(), patient.into()],
    ))
    .await
    .unwrap();
    app.advance(rotation::SETTLE_SECS);
    let run = rotation::process_data_rotation(svc, rotation_id).await.unwrap();
    assert_eq!((run.resealed, run.completed), (1, true));
    assert_eq!(
        one_text(&db, &format!("SELECT status FROM key_rotation WHERE id = '{rotation_id}'")).await,
        "completed"
    );

    // The old key is destroyed. A process that never saw it opens every value.
    exec(&db, &format!("UPDATE wrapped_key SET wrapped = ''::bytea, destroyed_at = now() WHERE id = '{old_key}'"))
        .await;
    let fresh = process_with(&app, KeyRing::new(RootKey::from_encoded(ROOT_KEY).unwrap())).await;
    let after = columns::open_all(&db, fresh.keys(), org).await.unwrap();
    assert_eq!(
        after.iter().map(|(c, n)| (c.name(), *n)).collect::<Vec<_>>(),
        before.iter().map(|(c, n)| (c.name(), *n)).collect::<Vec<_>>()
    );
    assert_eq!(columns::count_under_key(&db, org, old_key).await.unwrap(), 0);
    // Through the product: the contact, and the uploaded file's header row and first rows.
    let d = service::contacts::detail(&fresh, &actor, patient).await.unwrap();
    assert_eq!(d.fields.fields["first_name"].expose(), "Patricia");
    assert_eq!(d.fields.fields["allergy"].expose(), "penicillin");
    let p = service::contacts::import::preview(&fresh, &actor, import).await.unwrap();
    assert_eq!(p.headers.iter().map(|h| h.expose().as_str()).collect::<Vec<_>>(), ["email", "first_name"]);
    assert_eq!(p.rows[0][1].expose(), "Quinn");
    // The sequence's draft and published version open with the new key.
    let seq = service::sequences::get(&fresh, &actor, sequence).await.unwrap();
    assert_eq!(seq.name, "Reminders");
    assert!(serde_json::to_string(&seq.draft).unwrap().contains("Cardiology"));
    assert!(seq.current.is_some() && seq.changes.is_some());
    db.close().await.unwrap();
    app.stop().await;
}

/// The workspace denies `unsafe` except in audited places: taking the root key out of the
/// environment in `server/src/main.rs`, and the test-only allocator that proves root-key buffers
/// are zeroized. The lint is "deny" (not "forbid") so those places can allow it; this test keeps
/// them the only ones.
#[test]
fn unsafe_code_appears_only_where_the_root_key_leaves_the_environment() {
    const ALLOWED: &[&str] = &[
        // HERMETIC_ROOT_KEY is scrubbed and removed before any thread starts.
        "server/src/main.rs",
        // #[cfg(test)] global allocator that inspects freed blocks.
        "service/src/crypto/keyring.rs",
        // This test names the words it looks for.
        "server/tests/it/keys.rs",
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = vec![];
    let mut stack: Vec<std::path::PathBuf> =
        ["domain", "entity", "migration", "service", "jobs", "app", "server", "bench"]
            .iter()
            .map(|d| root.join(d))
            .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("target") && !p.ends_with("node_modules") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") || ALLOWED.iter().any(|a| p.ends_with(a)) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for word in ["unsafe {", "unsafe fn", "unsafe extern", "unsafe impl", "allow(unsafe_code)"] {
                if text.contains(word) {
                    offenders.push(format!("{}: {word}", p.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "unsafe outside the audited places: {offenders:?}");
}

/// Item 10a from the operator's side: the `server` binary, configured with the new root key as
/// current and the old one as previous, rotates and reports where every live key is; a process
/// with only the old key is then refused at start; hostile key files are refused without echo.
#[tokio::test]
async fn the_rotate_root_key_command_follows_the_rolling_procedure() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new().await;
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(server_bin(&db).args(["admin", "create-org", "--name", "Clinic"]));
    let dir = std::env::temp_dir().join(format!("hermetic-rotate-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let old_file = write("old.key", ROOT_KEY, 0o600);
    let new_key = RootKey::generate().unwrap();
    let new_text = new_key.to_base64();
    // Step 2 of the procedure: new key current, old key previous. Nothing re-wrapped yet.
    let both = || {
        let mut c = server_bin(&db);
        c.env("HERMETIC_ROOT_KEY", new_text.as_str()).env("HERMETIC_PREVIOUS_ROOT_KEY_FILES", &old_file);
        c
    };
    ok(both().args(["admin", "verify-audit"]));
    // Step 3.
    let out = ok(both().args(["admin", "rotate-root-key"]));
    assert!(out.contains(&format!("under root key {}", new_key.id())), "{out}");
    assert!(out.contains(&format!("root key {} (current)", new_key.id())), "{out}");
    let old_id = RootKey::from_encoded(ROOT_KEY).unwrap().id().to_string();
    assert!(out.contains(&format!("previously current: {old_id}")), "{out}");
    assert!(!out.contains(&format!("root key {old_id}:")), "no live key is left under the old root: {out}");
    // A process with only the old key stops at start, naming the key it lacks.
    let out = server_bin(&db).args(["admin", "verify-audit"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(new_key.id()) && !err.contains(ROOT_KEY), "{err}");
    // Step 4: the new key alone.
    ok(server_bin(&db).env("HERMETIC_ROOT_KEY", new_text.as_str()).args(["admin", "verify-audit"]));
    // Hostile key files: readable by others, too large, not a key. Refused, never echoed.
    let secret_like = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    for (name, text, mode, want) in [
        ("open.key", secret_like, 0o644, "chmod 600"),
        ("big.key", &"QUFB".repeat(2000)[..], 0o600, "too large"),
        ("junk.key", "not a key at all, just words", 0o600, "32 bytes"),
    ] {
        let p = write(name, text, mode);
        let out = server_bin(&db)
            .env("HERMETIC_ROOT_KEY", new_text.as_str())
            .env("HERMETIC_PREVIOUS_ROOT_KEY_FILES", &p)
            .args(["admin", "verify-audit"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want) && !err.contains(text), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
