//! `sequences`: the sequence engine in a separate worker process (the real `jobs` runtime, the
//! same one as `send`), over STARTTLS into Postfix `smtp-sink` (behind stunnel). Three figures:
//! (a) event → SMTP-accepted latency for a sequence whose first step sends at once, with patient
//!     events recorded at 200/s (the API's own statement: the event and its outbox row);
//! (b) N enrolments parked on a wait step that all come due at once, moving through steps that do
//!     not send (wait → branch → the next wait): step transitions per second, the worker's RSS;
//! (c) enrolments whose step sends: the send rate against `smtp-source`'s raw rate into the sink.
//! Lost and duplicated messages come from the sink's own counter.

use crate::send::{SendArgs, bench_domain, process_cpu_s, sink_count, spawn_worker};
use anyhow::{Context, Result};
use sea_orm::ConnectionTrait;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct SeqArgs {
    pub send: SendArgs,
    /// Enrolments parked on the wait step (figure b).
    pub contacts: usize,
    /// Enrolments whose step sends (figure c), and patients the events of (a) are about.
    pub senders: usize,
    /// Events per second and seconds for (a).
    pub event_rate: usize,
    pub event_seconds: usize,
}

async fn exec(svc: &service::Services, sql: &str) -> Result<u64> {
    Ok(svc.db().execute_unprepared(sql).await?.rows_affected())
}

async fn count(svc: &service::Services, sql: &str) -> Result<i64> {
    let row = svc
        .db()
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string()))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn publish(
    svc: &service::Services,
    actor: &service::Actor,
    name: &str,
    from: &str,
    def: serde_json::Value,
) -> Result<Uuid> {
    let id = service::sequences::create(svc, actor, name).await?;
    let input = service::sequences::DraftInput {
        name: name.into(),
        from_name: "Bench Clinic".into(),
        from_email: from.into(),
        definition: serde_json::from_value(def)?,
    };
    service::sequences::save_draft(svc, actor, id, &input).await?;
    service::sequences::publish(svc, actor, id, &[]).await?;
    Ok(id)
}

fn pick(v: &[f64], q: f64) -> f64 {
    v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

pub async fn run(a: SeqArgs) -> Result<()> {
    let svc = crate::services(&a.send.url).await?;
    let org = service::organisations::create(&svc, &format!("Sequences bench {}", Uuid::now_v7())).await?;
    let actor = service::Actor::system(org, "bench");
    let domain = bench_domain(&svc, &actor).await?;
    let from = format!("care@{domain}");
    let list = service::contacts::lists::create(
        &svc,
        &actor,
        "Patients",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await?;
    eprintln!("loading {} patients (marketing consent)", a.senders);
    crate::load_contacts_into(&svc, &actor, a.senders, "seq", Some(list)).await?;
    let template = service::templates::store::create(&svc, &actor, "Newsletter", Some("newsletter")).await?;
    let oid = org.0;

    // (a) latency: an event-triggered sequence whose first step sends (transactional).
    publish(
        &svc,
        &actor,
        "Booking confirmation",
        &from,
        json!({"version": 1, "trigger": {"kind": "event", "event_type": "bench.booked"}, "entry": "every_time",
               "start": "confirm", "steps": [{"id": "confirm", "kind": "send_email", "template": template,
               "purpose": "transactional", "next": null}]}),
    )
    .await?;
    let sink0 = sink_count(&a.send.sink_log);
    let mut worker = spawn_worker(&a.send, false)?;
    let pid = worker.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let patients: Vec<Uuid> = {
        let rows = svc
            .db()
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT id FROM contact WHERE organisation_id = '{oid}' ORDER BY id"),
            ))
            .await?;
        rows.iter().map(|r| r.try_get_by_index::<Uuid>(0)).collect::<Result<_, _>>()?
    };
    let total_events = a.event_rate * a.event_seconds;
    eprintln!("(a) {total_events} events at {}/s", a.event_rate);
    let started = Instant::now();
    let props = domain::Phi::new(std::collections::BTreeMap::new());
    for i in 0..total_events {
        let due = started + Duration::from_secs_f64(i as f64 / a.event_rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let contact = patients[i % patients.len()];
        service::events::record(&svc, &actor, contact, "bench.booked", &props, svc.clock().now()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&svc, &format!("SELECT count(*) FROM delivery WHERE organisation_id = '{oid}' AND source = 'sequence_step' AND state = 'sent'")).await?
        < total_events as i64
    {
        anyhow::ensure!(Instant::now() < deadline, "(a) the confirmations were not all sent within two minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let latencies = crate::query_f64s(
        &svc,
        "SELECT (extract(epoch FROM (d.accepted_at - e.received_at)) * 1000)::float8 AS v
         FROM delivery d JOIN api_message m ON m.id = d.id JOIN patient_event e ON e.id = m.event_id
         WHERE d.organisation_id = $1 AND d.state = 'sent' ORDER BY 1",
        oid,
    )
    .await?;
    let (p50, p99) = (pick(&latencies, 0.5), pick(&latencies, 0.99));
    eprintln!("(a) latency p50 {p50:.0} ms, p99 {p99:.0} ms over {} messages", latencies.len());

    // (c) sends: every patient enrolled in a one-step marketing sequence, due at once.
    let send_seq = publish(
        &svc,
        &actor,
        "Newsletter follow-up",
        &from,
        json!({"version": 1, "trigger": {"kind": "manual"}, "entry": "every_time", "start": "send",
               "steps": [{"id": "send", "kind": "send_email", "template": template, "purpose": "marketing", "next": null}]}),
    )
    .await?;
    let enrol = |seq: Uuid, step: &str, wake: &str| {
        format!(
            "INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, state, step_id, visit, step_started_at, wake_at, entered_at)
             SELECT gen_random_uuid(), c.organisation_id, s.id, s.current_version_id, c.id, 'active', '{step}', 0, now() - interval '2 minutes', {wake}, now()
             FROM contact c, sequence s WHERE c.organisation_id = '{oid}' AND s.id = '{seq}'"
        )
    };
    exec(&svc, &enrol(send_seq, "send", "'infinity'")).await?;
    let sent_before =
        count(&svc, &format!("SELECT count(*) FROM delivery WHERE organisation_id = '{oid}' AND state = 'sent'"))
            .await?;
    let started = Instant::now();
    exec(&svc, &format!("UPDATE enrolment SET wake_at = now() WHERE sequence_id = '{send_seq}'")).await?;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let sent =
            count(&svc, &format!("SELECT count(*) FROM delivery WHERE organisation_id = '{oid}' AND state = 'sent'"))
                .await?;
        if sent - sent_before >= a.senders as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "(c) the sends did not finish in an hour");
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let send_rate = a.senders as f64 / started.elapsed().as_secs_f64();
    eprintln!("(c) {} sequence emails at {send_rate:.0}/s", a.senders);

    // (b) transitions: N enrolments parked on a wait (after an email, which they are past), all
    // due at once, through a branch on that email's engagement to the next wait. The patients are placeholder rows (sealed columns are never opened by waits and
    // event-property branches); they exist so the enrolments' foreign keys and joins are real.
    eprintln!("(b) parking {} enrolments", a.contacts);
    exec(
        &svc,
        &format!(
            "INSERT INTO contact (id, organisation_id, email_bidx, email, time_zone, created_at, updated_at)
             SELECT gen_random_uuid(), '{oid}', decode(md5('parked' || i), 'hex'), '\\x00'::bytea, 'America/New_York', now(), now()
             FROM generate_series(1, {}) AS i",
            a.contacts
        ),
    )
    .await?;
    let park_seq = publish(
        &svc,
        &actor,
        "Parked",
        &from,
        json!({"version": 1, "trigger": {"kind": "manual"}, "entry": "every_time", "start": "s",
        "steps": [
          {"id": "s", "kind": "send_email", "template": template, "purpose": "marketing", "next": "w1"},
          {"id": "w1", "kind": "wait", "wait": {"kind": "duration", "minutes": 1}, "next": "b"},
          {"id": "b", "kind": "branch", "test": {"kind": "engaged", "clicked": true, "step": "s"},
           "then": "w2", "otherwise": "w2"},
          {"id": "w2", "kind": "wait", "wait": {"kind": "duration", "minutes": 1440}, "next": null}
        ]}),
    )
    .await?;
    exec(
        &svc,
        &format!(
            "INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, state, step_id, visit, step_started_at, wake_at, entered_at)
             SELECT gen_random_uuid(), c.organisation_id, s.id, s.current_version_id, c.id, 'active', 'w1', 0, now() - interval '2 minutes', 'infinity', now()
             FROM contact c, sequence s WHERE c.organisation_id = '{oid}' AND s.id = '{park_seq}' AND c.email = '\\x00'::bytea"
        ),
    )
    .await?;
    exec(&svc, "VACUUM ANALYZE enrolment").await?;
    crate::send::quiesce(&a.send).await?;
    let rss_before = crate::signin::vm_hwm_mb(pid);
    let cpu0 = process_cpu_s(pid);
    let started = Instant::now();
    exec(&svc, &format!("UPDATE enrolment SET wake_at = now() WHERE sequence_id = '{park_seq}'")).await?;
    let mut peak = rss_before;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(crate::signin::vm_hwm_mb(pid));
        let moved =
            count(&svc, &format!("SELECT count(*) FROM enrolment WHERE sequence_id = '{park_seq}' AND step_id = 'w2'"))
                .await?;
        if moved >= a.contacts as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "(b) the enrolments did not move in an hour");
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited: {status}");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let worker_cpu = process_cpu_s(pid) - cpu0;
    let transitions = 2 * a.contacts;
    let per_s = transitions as f64 / elapsed;
    eprintln!(
        "(b) {transitions} transitions in {elapsed:.1} s ({per_s:.0}/s), worker CPU {worker_cpu:.1} s, peak RSS {peak:.0} MB"
    );
    let executions = count(
        &svc,
        &format!("SELECT count(*) FROM enrolment_step x JOIN enrolment e ON e.id = x.enrolment_id WHERE e.sequence_id = '{park_seq}'"),
    )
    .await?;
    anyhow::ensure!(executions == transitions as i64, "(b) {executions} step executions for {transitions} transitions");

    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = worker.wait();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expected = (total_events + a.senders) as i64;
    let sent =
        count(&svc, &format!("SELECT count(*) FROM delivery WHERE organisation_id = '{oid}' AND state = 'sent'"))
            .await?;
    let received = (sink_count(&a.send.sink_log) - sink0) as i64;
    let lost = expected - sent;
    let dup = received - sent;
    crate::send::quiesce(&a.send).await?;
    let bytes = crate::sample_message_bytes(&svc, &actor, template).await?;
    let raw = crate::send::raw_rate(&a.send, bytes)?;
    println!(
        "sequences n={} latency_p50_ms={p50:.0} latency_p99_ms={p99:.0} transitions_per_s={per_s:.0} rss_mb={peak:.0} send_rate={send_rate:.0} raw={raw:.0} send_ratio={:.2} lost={lost} dup={dup}",
        a.contacts,
        send_rate / raw
    );
    Ok(())
}
