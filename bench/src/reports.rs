//! `reports`: analyst reports at scale (issue 23). N engagement events over `--campaigns`
//! campaigns (placeholder patients: the reports never open a contact) are generated in a durable
//! PostgreSQL through the real tables, so the capture triggers queue every fact; the real rollup
//! (`service::reports::rollup::catch_up`, the job's own function) then catches up, timed
//! (facts/s: engagement events and delivery outcomes). Then the release server runs in its own
//! process and an analyst's session asks for the overview (7, 30, 90 and 180 days), the
//! comparison (90 days) and drill-downs (30 days, rotating over the campaigns) through the real
//! server functions over keep-alive HTTP; each request is timed. Last line:
//! `reports events=N overview_p95_ms=… comparison_p95_ms=… drill_p95_ms=… rollup_events_per_s=… rss_mb=…`.

use crate::events::Conn;
use crate::signin::{free_port, percentile, start_server, vm_hwm_mb, wait_healthy};
use anyhow::{Context, Result, bail};
use std::time::Instant;
use uuid::Uuid;

pub struct ReportsArgs {
    pub url: String,
    pub server_bin: std::path::PathBuf,
    pub events: u64,
    pub campaigns: usize,
    /// Sequences, three emails each (a tenth of the events).
    pub sequences: usize,
    pub requests: usize,
    /// Pending facts per rollup transaction.
    pub batch: i64,
    /// Then rebuild the rollups twice, catching up in one lane and in all of them, the same
    /// queue timed both ways.
    pub reference: bool,
    /// Then rebuild and catch up once per size listed, in that order (all lanes).
    pub compare_batches: Vec<i64>,
}

/// Publish `n` three-email sequences the way the app does (a sending domain marked verified, a
/// saved template), returning what the history generator needs.
async fn sequences(
    svc: &service::Services,
    org: domain::ids::OrganisationId,
    n: usize,
) -> Result<(Vec<service::reports::demo::DemoSequence>, Uuid)> {
    let actor = service::Actor::system(org, "bench");
    let domain = format!("reports-{}.bench.example", Uuid::now_v7().simple());
    service::sending_domains::add(svc, &actor, &domain).await.context("adding the sending domain")?;
    exec(
        svc,
        &format!(
            "UPDATE sending_domain SET status = 'verified', verified_at = now() WHERE organisation_id = '{}'",
            org.0
        ),
    )
    .await?;
    let template = service::sequences::demo::template(
        svc,
        &actor,
        "Care series",
        "A note from your clinic",
        "<p>Here is what to expect.</p><p><a href=\"https://clinic.example/learn\">Learn more</a></p>",
    )
    .await?;
    let mut out = Vec::new();
    for k in 0..n {
        let name = format!("Care series {}", k + 1);
        let def = serde_json::json!({
            "version": 1, "trigger": {"kind": "event", "event_type": "visit.completed"}, "entry": "every_time",
            "start": "welcome",
            "steps": [
                {"id": "welcome", "name": "Welcome", "kind": "send_email", "template": template, "purpose": "marketing", "next": "wait-1"},
                {"id": "wait-1", "name": "Two days", "kind": "wait", "wait": {"kind": "duration", "minutes": 2880}, "next": "tips"},
                {"id": "tips", "name": "Tips", "kind": "send_email", "template": template, "purpose": "marketing", "next": "wait-2"},
                {"id": "wait-2", "name": "Two more days", "kind": "wait", "wait": {"kind": "duration", "minutes": 2880}, "next": "check-in"},
                {"id": "check-in", "name": "Check-in", "kind": "send_email", "template": template, "purpose": "marketing", "next": null}
            ]
        });
        let id = service::sequences::create(svc, &actor, &name).await?;
        let input = service::sequences::DraftInput {
            name: name.clone(),
            from_name: "Bench Clinic".into(),
            from_email: format!("care@{domain}"),
            definition: serde_json::from_value(def)?,
        };
        service::sequences::save_draft(svc, &actor, id, &input).await?;
        service::sequences::publish(svc, &actor, id, &[]).await?;
        let version: Uuid =
            service::db::scalar(svc.db(), "SELECT current_version_id FROM sequence WHERE id = $1", [id.into()])
                .await?
                .context("the sequence has a version")?;
        out.push(service::reports::demo::DemoSequence {
            id,
            version,
            email_steps: vec!["welcome".into(), "tips".into(), "check-in".into()],
        });
    }
    let tv: Uuid = service::db::scalar(
        svc.db(),
        "SELECT v.id FROM template_version v JOIN template t ON t.id = v.template_id AND v.version = t.latest_version
         WHERE t.id = $1",
        [template.into()],
    )
    .await?
    .context("the template has a version")?;
    Ok((out, tv))
}

const PASSWORD: &str = "bench reports password 2026";

/// Clear the organisation's rollups and queue its raw facts again (a rebuild), then vacuum away
/// the rebuild's deletions and checkpoint, so that each timed catch-up of the same queue starts
/// alike.
async fn requeue(svc: &service::Services, oid: Uuid) -> Result<()> {
    anyhow::ensure!(service::reports::rollup::rebuild(svc, oid).await?, "the rollup was busy");
    for table in
        ["report_pending", "report_first", "report_hour", "report_source_day", "report_org_hour", "report_split"]
    {
        exec(svc, &format!("VACUUM ANALYZE {table}")).await?;
    }
    exec(svc, "CHECKPOINT").await?;
    Ok(())
}

async fn exec(svc: &service::Services, sql: &str) -> Result<u64> {
    Ok(service::db::exec(svc.db(), sql, []).await?)
}

/// An analyst's signed-in session, the way the browser gets one (password, MFA enrolment).
async fn analyst_session(svc: &service::Services, org: domain::ids::OrganisationId) -> Result<(String, String)> {
    let email = format!("analyst-{}@bench.hermetic.test", Uuid::now_v7().simple());
    let admin = service::Actor::system(org, "bench");
    service::users::create_with_password(svc, &admin, &email, "Bench Analyst", domain::Role::Analyst, PASSWORD).await?;
    let meta = service::auth::session::ClientMeta { ip: Some("127.0.0.1".into()), user_agent: None };
    let (step, pending) = service::auth::sign_in(svc, &email, PASSWORD, &meta).await?;
    if step != domain::dto::SignInStep::EnrolMfa {
        bail!("unexpected sign-in step {step:?}");
    }
    let enrolment = service::auth::begin_enrolment(svc, &pending.token).await?;
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolment.secret_base32.trim_end_matches('=').as_bytes())
        .context("the enrolment secret is base32")?;
    let step = service::auth::totp::step_at(svc.clock().now().timestamp());
    let code = format!("{:06}", service::auth::totp::code_for_step(&secret, step));
    let (issued, _) = service::auth::confirm_enrolment(svc, &pending.token, &code, &meta).await?;
    Ok((issued.token.to_string(), issued.csrf_token.clone()))
}

/// One server-function call on the keep-alive connection, timed (ms); anything but 200 fails.
async fn timed(conn: &mut Conn, headers: &str, path: &str, body: String) -> Result<f64> {
    let t = Instant::now();
    let (status, answer) = conn.request("POST", path, headers, body.as_bytes()).await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status != 200 {
        bail!("{path} answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(ms)
}

pub async fn run(a: ReportsArgs) -> Result<()> {
    let svc = crate::services(&a.url).await?;
    let org = service::organisations::create(&svc, &format!("Reports bench {}", Uuid::now_v7())).await?;
    let oid = org.0;
    // Two events per delivery on average (with 45% of deliveries engaging): patients enough for that.
    let patients = (a.events / (a.campaigns.max(1) as u64 * 2)).clamp(1_000, 250_000);
    eprintln!("placing {patients} placeholder patients");
    exec(
        &svc,
        &format!(
            "INSERT INTO contact (id, organisation_id, email_bidx, email, time_zone, created_at, updated_at)
             SELECT gen_random_uuid(), '{oid}', decode(md5('reports' || i), 'hex'), '\\x00'::bytea, 'America/New_York', now(), now()
             FROM generate_series(1, {patients}) AS i"
        ),
    )
    .await?;
    let started = Instant::now();
    // Nine tenths of the events go to the campaigns, a tenth to the sequences' emails.
    let seq_events = if a.sequences > 0 { a.events / 10 } else { 0 };
    let spec = service::reports::demo::Spec {
        events: a.events - seq_events,
        campaigns: a.campaigns,
        days: 180,
        audience_share: 1.0,
    };
    let mut g = service::reports::demo::generate(&svc, oid, &spec, svc.clock().now()).await?;
    let (seqs, template_version) = sequences(&svc, org, a.sequences).await?;
    let seq_spec =
        service::reports::demo::Spec { events: seq_events.max(1), campaigns: 0, days: 180, audience_share: 0.25 };
    let s =
        service::reports::demo::generate_sequences(&svc, oid, &seqs, template_version, &seq_spec, svc.clock().now())
            .await?;
    g.deliveries += s.deliveries;
    g.events += s.events;
    eprintln!(
        "generated {} campaigns and {} sequences: {} deliveries, {} engagement events in {:.0} s",
        g.campaigns.len(),
        seqs.len(),
        g.deliveries,
        g.events,
        started.elapsed().as_secs_f64()
    );
    // The generated data settles before the rollup is timed, as between the reference runs
    // below: vacuumed and analysed (autovacuum would otherwise work through the millions of rows
    // just inserted during the timed catch-up, on the same two cores), then checkpointed.
    for table in ["delivery", "delivery_deferral", "engagement_event", "api_message", "enrolment", "report_pending"] {
        exec(&svc, &format!("VACUUM ANALYZE {table}")).await?;
    }
    exec(&svc, "CHECKPOINT").await?;
    let pending: i64 = service::db::scalar(svc.db(), "SELECT count(*) FROM report_pending", []).await?.unwrap_or(0);
    eprintln!("rolling up {pending} pending facts, {} a batch", a.batch);
    let started = Instant::now();
    let mut facts = 0u64;
    loop {
        let r = service::reports::rollup::catch_up(&svc, a.batch).await?;
        facts += r.facts;
        if !service::reports::rollup::behind(&svc).await? {
            break;
        }
    }
    let rollup_secs = started.elapsed().as_secs_f64();
    let rollup_rate = facts as f64 / rollup_secs.max(1e-3);
    eprintln!("rollup: {facts} facts in {rollup_secs:.1} s ({rollup_rate:.0}/s)");
    // The sequences' emails are attributed to their sequence and step: the rolled-up outcomes
    // equal the deliveries.
    let (rolled, raw): (Option<i64>, Option<i64>) = (
        service::db::scalar(
            svc.db(),
            "SELECT coalesce(sum(sent), 0)::int8 FROM report_hour WHERE organisation_id = $1 AND source_kind = 2 AND step_id <> ''",
            [oid.into()],
        )
        .await?,
        service::db::scalar(
            svc.db(),
            "SELECT count(*) FROM delivery WHERE organisation_id = $1 AND source = 'sequence_step' AND state IN ('sent', 'bounced', 'failed')",
            [oid.into()],
        )
        .await?,
    );
    anyhow::ensure!(rolled == raw, "sequence emails rolled up {rolled:?}, sent {raw:?}");
    let mut reference = String::new();
    // Batch sizes compared on the same rebuilt queue, alternating as listed so that a slow spell
    // of a shared machine falls on both: each size's median rate.
    let mut by_size: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for &b in &a.compare_batches {
        requeue(&svc, oid).await?;
        let started = Instant::now();
        let r = service::reports::rollup::catch_up(&svc, b).await?;
        let secs = started.elapsed().as_secs_f64();
        let rate = r.facts as f64 / secs.max(1e-3);
        eprintln!("rebuilt queue, batches of {b}: {} facts in {secs:.1} s ({rate:.0}/s)", r.facts);
        by_size.entry(b).or_default().push(rate);
    }
    for (b, mut rates) in by_size {
        rates.sort_by(f64::total_cmp);
        let median = if rates.len() % 2 == 1 {
            rates[rates.len() / 2]
        } else {
            (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0
        };
        reference.push_str(&format!(" batch{b}_median_per_s={median:.0}"));
    }
    // The reference: the organisation's facts re-queued, rolled up in one lane, then again in all
    // lanes.
    if a.reference {
        for lanes in [1, service::reports::rollup::LANES] {
            requeue(&svc, oid).await?;
            let started = Instant::now();
            let r = if lanes == 1 {
                service::reports::rollup::catch_up_one_lane(&svc, a.batch).await?
            } else {
                service::reports::rollup::catch_up(&svc, a.batch).await?
            };
            let secs = started.elapsed().as_secs_f64();
            let rate = r.facts as f64 / secs.max(1e-3);
            eprintln!("rebuilt queue, {lanes} lane(s): {} facts in {secs:.1} s ({rate:.0}/s)", r.facts);
            reference.push_str(&format!(" rebuilt_lanes{lanes}_per_s={rate:.0}"));
        }
        anyhow::ensure!(!service::reports::rollup::behind(&svc).await?, "facts left after the reference runs");
    }
    // What the job does after a large catch-up: vacuum the emptied queue (timed apart).
    let started = Instant::now();
    service::reports::rollup::tidy(&svc, &service::reports::rollup::RollupRun { facts, ..Default::default() }).await?;
    eprintln!("queue vacuumed in {:.1} s", started.elapsed().as_secs_f64());
    exec(&svc, "VACUUM ANALYZE report_hour").await?;
    exec(&svc, "VACUUM ANALYZE report_source_day").await?;
    exec(&svc, "VACUUM ANALYZE report_org_hour").await?;
    exec(&svc, "VACUUM ANALYZE report_since").await?;
    exec(&svc, "VACUUM ANALYZE report_link").await?;

    let (token, csrf) = analyst_session(&svc, org).await?;
    let port = free_port()?;
    let mut server = start_server(&a.server_bin, &a.url, port, &[])?;
    let pid = server.id();
    let result = async {
        wait_healthy(&mut server, port).await?;
        let headers = format!(
            "Cookie: __Host-hermetic_session={token}\r\nX-CSRF-Token: {csrf}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
        );
        let today = svc.clock().now().date_naive();
        let range = |days: i64| domain::reports::ReportRange::last_days(today, days);
        let mut conn = Conn::open(port).await?;
        // Warm up each endpoint once (connection pool, plans), untimed.
        let r30 = range(30);
        timed(&mut conn, &headers, "/api/report_overview", format!("from={}&to={}", r30.from, r30.to)).await?;
        let (mut overview, mut comparison, mut drill) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..a.requests.max(1) {
            let r = range([7, 30, 90, 180][i % 4]);
            overview.push(timed(&mut conn, &headers, "/api/report_overview", format!("from={}&to={}", r.from, r.to)).await?);
            if i % 4 == 0 {
                let r = range(90);
                comparison.push(timed(&mut conn, &headers, "/api/report_comparison", format!("from={}&to={}", r.from, r.to)).await?);
            }
            // Campaigns, and every tenth a sequence email.
            let source = match seqs.get(i / 10 % seqs.len().max(1)) {
                Some(s) if i % 10 == 9 => format!("kind=sequence_email&id={}&step=tips", s.id),
                _ => format!("kind=campaign&id={}&step=", g.campaigns[i % g.campaigns.len()]),
            };
            let r = range(30);
            drill.push(
                timed(&mut conn, &headers, "/api/report_drill", format!("{source}&from={}&to={}", r.from, r.to)).await?,
            );
        }
        for v in [&mut overview, &mut comparison, &mut drill] {
            v.sort_by(|x, y| x.total_cmp(y));
        }
        eprintln!(
            "overview p50 {:.1} ms p95 {:.1} ms; comparison p50 {:.1} ms p95 {:.1} ms; drill-down p50 {:.1} ms p95 {:.1} ms",
            percentile(&overview, 0.5),
            percentile(&overview, 0.95),
            percentile(&comparison, 0.5),
            percentile(&comparison, 0.95),
            percentile(&drill, 0.5),
            percentile(&drill, 0.95)
        );
        Ok::<_, anyhow::Error>((percentile(&overview, 0.95), percentile(&comparison, 0.95), percentile(&drill, 0.95)))
    }
    .await;
    let rss = vm_hwm_mb(pid);
    let _ = server.kill();
    let _ = server.wait();
    let (o95, c95, d95) = result?;
    println!(
        "reports events={} overview_p95_ms={o95:.1} comparison_p95_ms={c95:.1} drill_p95_ms={d95:.1} rollup_events_per_s={rollup_rate:.0} rss_mb={rss:.0}{reference}",
        g.events
    );
    Ok(())
}
