//! Analyst reports (issue 23): the hourly rollups equal the raw-event answer on random
//! engagement with campaigns, API messages and a published sequence's emails (out-of-order arrival, outcome changes, suppressions, several time zones, daylight-
//! saving changes inside the range, a time-zone change and its rebuild); the overview and
//! comparison read them; small cells are hidden with complementary suppression for analysts,
//! exports included; hostile ranges and zones are refused next to their field.

use crate::campaigns::contact as patient;
use crate::harness::*;
use crate::smtp::mime;
use chrono::Datelike;
use domain::Role;
use domain::contacts::ContactInput;
use domain::disclosure::Figure;
use domain::reports::{Metric, ReportRange, Value};
use service::Actor;
use service::reports::raw;
use uuid::Uuid;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Roll up until nothing waits (the app's own rollup job may hold the lock for a moment).
async fn settle(svc: &service::Services, batch: i64) {
    for _ in 0..600 {
        service::reports::rollup::catch_up(svc, batch).await.unwrap();
        if !service::reports::rollup::behind(svc).await.unwrap() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the rollup never caught up");
}

async fn contact(svc: &service::Services, actor: &Actor, email: &str) -> Uuid {
    let input =
        ContactInput { fields: [("email".to_string(), domain::Phi::new(email.to_string()))].into_iter().collect() };
    service::contacts::create(svc, actor, input).await.unwrap()
}

async fn campaign(app: &TestApp, org: Uuid, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO campaign (id, organisation_id, name, status, settings, created_at, updated_at)
         VALUES ('{id}', '{org}', '{name}', 'completed', '{{}}', now(), now())"
    ))
    .await;
    id
}

async fn assert_rollup_equals_raw(svc: &service::Services, org: Uuid, what: &str) {
    let (sources, orgs) = raw::rolled_up(svc.db(), org).await.unwrap();
    let want_sources = raw::source_hours(svc.db(), org).await.unwrap();
    let want_orgs = raw::org_hours(svc.db(), org).await.unwrap();
    assert!(!want_sources.is_empty(), "{what}: the test made data");
    if sources != want_sources {
        let diff: Vec<_> = want_sources.iter().filter(|r| !sources.contains(r)).take(5).collect();
        let extra: Vec<_> = sources.iter().filter(|r| !want_sources.contains(r)).take(5).collect();
        panic!("{what}: rollup per source differs from raw\nmissing/different: {diff:#?}\nrolled up: {extra:#?}");
    }
    assert_eq!(orgs, want_orgs, "{what}: rollup per organisation differs from raw");
    // A source's days (what the comparison reads) are its hours summed by local day.
    let cols = "sent, delivered, bounced, failed, human_openers, machine_opens, machine_openers, human_clicks, \
                human_clickers, machine_clicks, unsubscribes, bounced_hard, bounced_soft, bounced_policy, deferrals";
    let sums = cols.split(", ").map(|c| format!("sum({c})::int8 AS {c}")).collect::<Vec<_>>().join(", ");
    let nonzero = cols.split(", ").map(|c| format!("{c} <> 0")).collect::<Vec<_>>().join(" OR ");
    let differing: i64 = service::db::scalar(
        svc.db(),
        &format!(
            "WITH h AS (SELECT * FROM (SELECT hour::date AS day, source_kind, source_id, step_id, {sums} FROM report_hour
                        WHERE organisation_id = $1 GROUP BY 1, 2, 3, 4) x WHERE {nonzero}),
                  d AS (SELECT day, source_kind, source_id, step_id, {cols} FROM report_source_day
                        WHERE organisation_id = $1 AND ({nonzero}))
             SELECT count(*) FROM ((SELECT * FROM h EXCEPT ALL SELECT * FROM d) UNION ALL (SELECT * FROM d EXCEPT ALL SELECT * FROM h)) x"
        ),
        [org.into()],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(differing, 0, "{what}: a source's days are its hours");
    let (since, links) = raw::rolled_up_since_and_links(svc.db(), org).await.unwrap();
    assert_eq!(since, raw::since(svc.db(), org).await.unwrap(), "{what}: opens and clicks since the send");
    assert_eq!(links, raw::links(svc.db(), org).await.unwrap(), "{what}: clicks per link");
    let splits = raw::rolled_up_splits(svc.db(), org).await.unwrap();
    let want = raw::splits(svc.db(), org).await.unwrap();
    if splits != want {
        let diff: Vec<_> = want.iter().filter(|r| !splits.contains(r)).take(5).collect();
        let extra: Vec<_> = splits.iter().filter(|r| !want.contains(r)).take(5).collect();
        panic!("{what}: breakdowns differ from raw\nmissing/different: {diff:#?}\nrolled up: {extra:#?}");
    }
}

/// A published two-email sequence of the organisation (from a sending domain marked verified):
/// its id, its version and the version of the template its emails are composed from.
async fn sequence(svc: &service::Services, actor: &Actor, seed: u64) -> (Uuid, Uuid, Uuid) {
    let domain = format!("seq{seed}.reports.test");
    service::sending_domains::add(svc, actor, &domain).await.unwrap();
    service::db::exec(
        svc.db(),
        "UPDATE sending_domain SET status = 'verified', verified_at = now() WHERE organisation_id = $1",
        [actor.organisation_id.0.into()],
    )
    .await
    .unwrap();
    let template = crate::sequences::template(svc, actor, "A note from your clinic").await;
    let def = serde_json::json!({
        "version": 1, "trigger": {"kind": "event", "event_type": "visit.completed"}, "entry": "every_time",
        "start": "welcome",
        "steps": [
            {"id": "welcome", "name": "Welcome", "kind": "send_email", "template": template, "purpose": "marketing", "next": "wait"},
            {"id": "wait", "name": "Two days", "kind": "wait", "wait": {"kind": "duration", "minutes": 2880}, "next": "tips"},
            {"id": "tips", "name": "Tips", "kind": "send_email", "template": template, "purpose": "marketing", "next": null}
        ]
    });
    let id = service::sequences::create(svc, actor, "Aftercare").await.unwrap();
    let input = service::sequences::DraftInput {
        name: "Aftercare".into(),
        from_name: "Clinic".into(),
        from_email: format!("care@{domain}"),
        definition: serde_json::from_value(def).unwrap(),
    };
    service::sequences::save_draft(svc, actor, id, &input).await.unwrap();
    service::sequences::publish(svc, actor, id, &[]).await.unwrap();
    let version: Uuid =
        service::db::scalar(svc.db(), "SELECT current_version_id FROM sequence WHERE id = $1", [id.into()])
            .await
            .unwrap()
            .unwrap();
    let template_version: Uuid = service::db::scalar(
        svc.db(),
        "SELECT v.id FROM template_version v JOIN template t ON t.id = v.template_id AND v.version = t.latest_version
         WHERE t.id = $1",
        [template.into()],
    )
    .await
    .unwrap()
    .unwrap();
    (id, version, template_version)
}

/// Random engagement for one organisation over Oct 1 – Nov 6 2026 (UTC instants), inserted in
/// random order in chunks with rollups in between, then outcome changes and suppressions.
async fn random_engagement(app: &TestApp, org: Uuid, seed: u64) {
    let svc = &app.services;
    let actor = Actor::system(domain::ids::OrganisationId(org), "test");
    let mut rng = Rng(seed);
    let mut contacts = Vec::new();
    for i in 0..14 {
        contacts.push(contact(svc, &actor, &format!("p{i}-{seed}@reports.test")).await);
    }
    let start = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let at = |rng: &mut Rng| start + chrono::Duration::minutes(rng.below(37 * 24 * 60) as i64);
    let mut statements: Vec<String> = Vec::new();
    let mut deliveries: Vec<(Uuid, Option<Uuid>, Uuid)> = Vec::new();
    // Audience parts (two segments, a list) a campaign's recipient was found through.
    let parts = [(4, Uuid::now_v7()), (4, Uuid::now_v7()), (5, Uuid::now_v7())];
    for c in 0..3 {
        let cid = campaign(app, org, &format!("Campaign {c}")).await;
        for p in &contacts {
            let d = Uuid::now_v7();
            let state = ["sent", "sent", "sent", "bounced", "failed", "queued"][rng.below(6) as usize];
            let t = at(&mut rng);
            // Some outcomes have no acceptance time: they count at their record time.
            let accepted = if rng.below(3) == 0 { "NULL".to_string() } else { format!("'{t}'") };
            let status = match state {
                "bounced" => ["'550 5.1.1'", "'421 4.4.2'", "'550 5.7.1'", "NULL"][rng.below(4) as usize],
                "sent" => "'250 2.0.0'",
                _ => "NULL",
            };
            // Provider family, TLS version (of a delivered message) and audience part, each
            // sometimes unrecorded.
            let family = ["NULL", "1", "2", "3", "4", "5", "5"][rng.below(7) as usize];
            let tls = if state == "sent" { ["NULL", "12", "13", "13"][rng.below(4) as usize] } else { "NULL" };
            let (kind, part) = match rng.below(4) {
                3 => ("NULL".to_string(), "NULL".to_string()),
                i => (parts[i as usize].0.to_string(), format!("'{}'", parts[i as usize].1)),
            };
            statements.push(format!(
                "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at,
                    updated_at, smtp_status, domain_family, tls_version, audience_kind, audience_id)
                 VALUES ('{d}', '{org}', '{cid}', '{p}', '{state}', '{t}', {accepted}, '{}', '{}', {status}, {family}, {tls}, {kind}, {part})",
                t + chrono::Duration::minutes(1),
                t + chrono::Duration::minutes(2)
            ));
            deliveries.push((d, Some(cid), *p));
        }
    }
    // API messages: deliveries of source api_message without a campaign.
    for p in contacts.iter().take(6) {
        let d = Uuid::now_v7();
        let t = at(&mut rng);
        statements.push(format!(
            "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at, updated_at, source)
             VALUES ('{d}', '{org}', NULL, '{p}', 'sent', '{t}', '{t}', '{t}', '{t}', 'api_message')"
        ));
        deliveries.push((d, None, *p));
    }
    // Sequence emails: the two email steps of a published sequence, sent to the patients it
    // enrolled. A delivery names its sequence and step through the API message the engine
    // composed it from, so the rollup attributes its outcome and events to that step.
    let (sequence, version, template_version) = sequence(svc, &actor, seed).await;
    for p in contacts.iter().skip(3) {
        let enrolment = Uuid::now_v7();
        let entered = at(&mut rng);
        let (state, reason) =
            [("completed", "completed"), ("converted", "goal"), ("exited", "unsubscribed")][rng.below(3) as usize];
        statements.push(format!(
            "INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, state, end_reason,
                step_started_at, entered_at, ended_at)
             VALUES ('{enrolment}', '{org}', '{sequence}', '{version}', '{p}', '{state}', '{reason}', '{entered}', '{entered}',
                '{}')",
            entered + chrono::Duration::days(3)
        ));
        for step in ["welcome", "tips"].iter().take(1 + rng.below(2) as usize) {
            let d = Uuid::now_v7();
            let t = at(&mut rng);
            let state = ["sent", "sent", "sent", "bounced", "failed"][rng.below(5) as usize];
            let accepted = if state == "failed" { "NULL".to_string() } else { format!("'{t}'") };
            let status = ["'250 2.0.0'", "'550 5.1.1'", "'421 4.7.0'", "NULL"]
                [if state == "sent" { 0 } else { 1 + rng.below(3) as usize }];
            let family = ["NULL", "1", "2", "5"][rng.below(4) as usize];
            let tls = if state == "sent" { ["NULL", "12", "13"][rng.below(3) as usize] } else { "NULL" };
            statements.push(format!(
                "INSERT INTO api_message (id, organisation_id, template_id, template_version_id, from_email, created_at,
                    purpose, enrolment_id, step_id)
                 SELECT '{d}', '{org}', v.template_id, v.id, 'care@clinic.test', '{t}', 'marketing', '{enrolment}', '{step}'
                 FROM template_version v WHERE v.id = '{template_version}';
                 INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at,
                    updated_at, smtp_status, source, domain_family, tls_version)
                 VALUES ('{d}', '{org}', NULL, '{p}', '{state}', '{t}', {accepted}, '{t}', '{t}', {status}, 'sequence_step',
                    {family}, {tls})"
            ));
            deliveries.push((d, None, *p));
        }
    }
    let mut events: Vec<String> = Vec::new();
    for (d, cid, p) in &deliveries {
        let campaign = cid.map(|c| format!("'{c}'")).unwrap_or("NULL".into());
        for _ in 0..rng.below(6) {
            let (activity, machine) = [
                ("opened", false),
                ("opened", false),
                ("opened", true),
                ("clicked", false),
                ("clicked", true),
                ("unsubscribed", false),
            ][rng.below(6) as usize];
            let link = if activity == "clicked" { rng.below(3).to_string() } else { "NULL".into() };
            let client =
                if activity == "opened" { ["NULL", "1", "2", "3", "6", "7"][rng.below(6) as usize] } else { "NULL" };
            events.push(format!(
                "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id, link_position, client)
                 VALUES ('{org}', '{p}', {campaign}, '{activity}', {machine}, '{}', '{d}', {link}, {client})",
                at(&mut rng)
            ));
        }
    }
    // Deliveries first (events may arrive in any order among themselves), shuffled events in
    // chunks with small rollups in between: an earlier open often arrives after a later one.
    for chunk in statements.chunks(10) {
        app.sql(&chunk.join(";\n")).await;
    }
    for i in (1..events.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        events.swap(i, j);
    }
    // Rollups at once now and then (the job and the backfill command can overlap; the bench's
    // one-lane reference holds every lane): each lane's batch runs in one of them, the others find
    // it held, and nothing is counted twice.
    for (i, chunk) in events.chunks(17).enumerate() {
        app.sql(&chunk.join(";\n")).await;
        if i % 3 == 0 {
            let (a, b, c) = tokio::join!(
                service::reports::rollup::catch_up(svc, 7),
                service::reports::rollup::catch_up(svc, 5),
                service::reports::rollup::catch_up_one_lane(svc, 3)
            );
            a.unwrap();
            b.unwrap();
            c.unwrap();
        } else {
            service::reports::rollup::catch_up(svc, 7).await.unwrap();
        }
    }
    // Events reclassified after they were rolled up (tracking marks a scanner's clicks as machine
    // ones after the fact): human to machine and back, first events among them.
    settle(svc, 50).await;
    app.sql(&format!(
        "UPDATE engagement_event SET machine = NOT machine
         WHERE organisation_id = '{org}' AND activity IN ('opened', 'clicked') AND id % 3 = 0"
    ))
    .await;
    service::reports::rollup::catch_up(svc, 7).await.unwrap();
    app.sql(&format!(
        "UPDATE engagement_event SET machine = true WHERE organisation_id = '{org}' AND activity = 'clicked' AND id % 4 = 1"
    ))
    .await;
    // Outcome changes after they were rolled up: a late bounce, a retried failure delivered later.
    settle(svc, 50).await;
    let (late, _, _) = deliveries[0];
    // A failed delivery (no events) retried and delivered later.
    let retried = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, recorded_at, updated_at)
         SELECT '{retried}', organisation_id, campaign_id, NULL, 'failed', not_before, recorded_at, updated_at
         FROM delivery WHERE id = '{}'",
        deliveries[0].0
    ))
    .await;
    settle(svc, 50).await;
    // A message deferred twice (4xx, then connection trouble), then delivered.
    let flaky = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at)
         SELECT '{flaky}', organisation_id, campaign_id, NULL, 'queued', not_before, '2026-10-31T12:00:00Z'
         FROM delivery WHERE id = '{late}';
         UPDATE delivery SET state = 'deferred', attempts = 1, smtp_status = '451 4.7.1', updated_at = '2026-10-31T12:05:00Z' WHERE id = '{flaky}';
         UPDATE delivery SET attempts = 2, updated_at = '2026-11-01T05:10:00Z' WHERE id = '{flaky}';
         UPDATE delivery SET state = 'sent', attempts = 3, smtp_status = '250 2.0.0', accepted_at = '2026-11-01T07:00:00Z',
            recorded_at = '2026-11-01T07:00:01Z', updated_at = '2026-11-01T07:00:01Z', domain_family = 2, tls_version = 13
            WHERE id = '{flaky}'"
    ))
    .await;
    // An image fetched in the instant between the server's acceptance and our record of it: the
    // open is captured before its delivery has an acceptance time or a provider, which the
    // rollup then looks up (the capture copies them otherwise).
    let racing = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at)
         SELECT '{racing}', organisation_id, campaign_id, NULL, 'queued', not_before, '2026-11-02T09:00:00Z'
         FROM delivery WHERE id = '{late}';
         INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id, client)
         SELECT organisation_id, contact_id, campaign_id, 'opened', false, '2026-11-02T10:30:00Z', '{racing}', 4
         FROM delivery WHERE id = '{late}';
         UPDATE delivery SET state = 'sent', smtp_status = '250 2.0.0', accepted_at = '2026-11-02T09:00:01Z',
            recorded_at = '2026-11-02T09:00:03Z', updated_at = '2026-11-02T09:00:03Z', domain_family = 4, tls_version = 13
            WHERE id = '{racing}'"
    ))
    .await;
    let deferrals: i64 =
        service::db::scalar(svc.db(), "SELECT count(*) FROM delivery_deferral WHERE delivery_id = $1", [flaky.into()])
            .await
            .unwrap()
            .unwrap();
    assert_eq!(deferrals, 2, "each deferral is kept");
    app.sql(&format!(
        "UPDATE delivery SET state = 'bounced', smtp_status = '550 5.7.26', updated_at = updated_at + interval '3 hours' WHERE id = '{late}';
         UPDATE delivery SET state = 'sent', accepted_at = '2026-11-01T06:30:00Z', recorded_at = '2026-11-01T06:30:01Z',
            domain_family = 1, tls_version = 12 WHERE id = '{retried}';
         UPDATE delivery SET updated_at = updated_at + interval '1 day' WHERE id = '{}'",
        deliveries[2].0
    ))
    .await;
    // Suppressions: added, upgraded to a complaint, lifted.
    app.sql(&format!(
        "INSERT INTO suppression (organisation_id, email_bidx, reason, created_at) VALUES
            ('{org}', '\\x01', 'unsubscribed', '2026-10-03T10:00:00Z'),
            ('{org}', '\\x02', 'hard_bounce', '2026-11-01T05:30:00Z'),
            ('{org}', '\\x03', 'manual', '2026-10-20T12:00:00Z'),
            ('{org}', '\\x04', 'complaint', '2026-10-21T12:00:00Z');
         UPDATE suppression SET reason = 'complaint' WHERE organisation_id = '{org}' AND email_bidx = '\\x01';
         DELETE FROM suppression WHERE organisation_id = '{org}' AND email_bidx = '\\x03'"
    ))
    .await;
}

#[tokio::test]
async fn rollups_equal_the_raw_answer_in_every_zone_across_daylight_saving_and_a_zone_change() {
    let app = TestApp::start().await;
    let svc = &app.services;
    let zones = ["America/New_York", "Australia/Adelaide", "Asia/Kolkata"];
    let mut orgs = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let org = app.org_with_user(&format!("Zone {i}"), &format!("admin{i}@reports.test"), Role::Admin).await;
        let admin = Actor::system(org, "test");
        service::reports::set_time_zone(svc, &admin, zone).await.unwrap();
        orgs.push((org, admin));
    }
    // Hostile zones are refused next to the field, and change nothing.
    for bad in ["Mars/Olympus_Mons", "", "UTC'; DROP TABLE organisation; --", &"A/".repeat(100), "../../etc/passwd"] {
        let e = service::reports::set_time_zone(svc, &orgs[0].1, bad).await.unwrap_err();
        assert_eq!(e.code(), "invalid", "{bad}");
    }
    assert_eq!(service::reports::time_zone(svc.db(), orgs[0].0.0).await.unwrap(), "America/New_York");
    for (i, (org, _)) in orgs.iter().enumerate() {
        random_engagement(&app, org.0, 0x2026_1207 + i as u64 * 7919).await;
    }
    settle(svc, 50).await;
    for ((org, admin), zone) in orgs.iter().zip(zones) {
        assert_rollup_equals_raw(svc, org.0, zone).await;
        let splits = raw::splits(svc.db(), org.0).await.unwrap();
        for dim in 1..=5 {
            assert!(splits.iter().any(|r| r.dim == dim), "{zone}: the data has breakdown {dim}");
        }
        assert!(!raw::links(svc.db(), org.0).await.unwrap().is_empty(), "{zone}: the test clicked links");
        let hours = raw::source_hours(svc.db(), org.0).await.unwrap();
        for step in ["welcome", "tips"] {
            let of_step = |r: &&raw::HourRow| r.source_kind == 2 && r.step_id == step;
            assert!(hours.iter().filter(of_step).any(|r| r.human_openers > 0), "{zone}: {step} emails were opened");
        }
        assert!(hours.iter().any(|r| r.source_kind == 2 && r.bounced > 0), "{zone}: sequence emails bounced");
        // The overview's totals are the raw hours of the range's local days, summed; New York's
        // range holds the fall-back day (25 hours), Adelaide's its spring-forward day (23).
        let range = ReportRange::parse("2026-10-02", "2026-11-05").unwrap();
        let (start, end) = range.hours();
        let want: i64 = raw::org_hours(svc.db(), org.0)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.hour >= start && r.hour < end)
            .map(|r| r.delivered)
            .sum();
        let o = service::reports::overview(svc, admin, range).await.unwrap();
        assert_eq!(o.figure(Metric::Delivered).unwrap().current, Value::Count(Figure::Exact(want as u64)), "{zone}");
        let dl = &o.deliverability;
        let classes: u64 = [dl.bounced_hard, dl.bounced_soft, dl.bounced_policy].iter().filter_map(|f| f.exact()).sum();
        assert_eq!(
            Value::Count(Figure::Exact(classes)),
            o.figure(Metric::Bounced).unwrap().current,
            "{zone}: classes add up"
        );
        let series: u64 = o.series.iter().filter_map(|p| p.delivered.exact()).sum();
        assert_eq!(series, want as u64, "{zone}: the buckets add up to the total");
        // The provider and TLS breakdowns add up to the delivered total too.
        for b in [dl.by_provider.as_ref().unwrap(), dl.by_tls.as_ref().unwrap()] {
            let sum: u64 = b.rows.iter().filter_map(|r| r.delivered.exact()).sum();
            assert_eq!(sum, want as u64, "{zone}: {:?} adds up", b.dimension);
        }
        assert!(o.chart_svg.contains("<svg") && o.chart_svg.contains("hover-target"), "{zone}: a chart");
        let hourly = ReportRange::parse("2026-10-31", "2026-11-01").unwrap();
        let h = service::reports::overview(svc, admin, hourly).await.unwrap();
        assert_eq!(h.series.len(), 48, "local hours of two days (the repeated hour holds both)");
        let c = service::reports::comparison(svc, admin, range).await.unwrap();
        assert_eq!(
            c.rows.len(),
            6,
            "{zone}: three campaigns, the API's messages and two sequence emails: {:?}",
            c.rows
        );
        assert_eq!(c.total.delivered, Figure::Exact(want as u64));
    }
    // A new zone: the rollups are rebuilt in it, and still equal the raw answer.
    let (org, admin) = &orgs[0];
    service::reports::set_time_zone(svc, admin, "Europe/London").await.unwrap();
    assert!(service::reports::rollup::behind(svc).await.unwrap(), "a rebuild is requested");
    // Facts keep arriving while the rebuild waits: none is lost or counted twice.
    let d: Uuid =
        service::db::scalar(svc.db(), "SELECT id FROM delivery WHERE organisation_id = $1 LIMIT 1", [org.0.into()])
            .await
            .unwrap()
            .unwrap();
    let p: Uuid = service::db::scalar(svc.db(), "SELECT contact_id FROM delivery WHERE id = $1", [d.into()])
        .await
        .unwrap()
        .unwrap();
    app.sql(&format!(
        "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id)
         SELECT organisation_id, '{p}', campaign_id, 'opened', false, '2026-10-01T00:00:30Z', id FROM delivery WHERE id = '{d}'"
    ))
    .await;
    settle(svc, 1000).await;
    assert_rollup_equals_raw(svc, org.0, "after the change to Europe/London").await;
    // The backfill from the command line's path: everything rebuilt, same answer.
    for (o, _) in &orgs {
        service::reports::rollup::request_rebuild(svc.db(), o.0).await.unwrap();
    }
    settle(svc, 100_000).await;
    for ((o, _), zone) in orgs.iter().zip(zones) {
        assert_rollup_equals_raw(svc, o.0, &format!("{zone} after a rebuild")).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn an_analyst_sees_small_cells_hidden_with_complementary_suppression_in_pages_and_exports() {
    let app = TestApp::start().await;
    let svc = &app.services;
    let org = app.org_with_user("Small cells", "admin@cells.test", Role::Admin).await;
    app.add_user(org, "analyst@cells.test", Role::Analyst).await;
    let actor = Actor::system(org, "test");
    // Three campaigns delivered to 3, 40 and 52 people on Nov 10 (UTC): the 3 must not be
    // recoverable from the total (95) and the other two.
    let mut people = Vec::new();
    for i in 0..52 {
        people.push(contact(svc, &actor, &format!("c{i}@cells.test")).await);
    }
    let mut sql = String::new();
    let mut ids = Vec::new();
    // Breakdowns: "Flu shots" went to 3 Microsoft, 20 Gmail and 17 other addresses; "Checkups"
    // through a list of 48 and a list of 4 (which is not listed).
    let (big_list, small_list) = (Uuid::now_v7(), Uuid::now_v7());
    sql.push_str(&format!(
        "INSERT INTO contact_list (id, organisation_id, name, created_at, updated_at) VALUES
            ('{big_list}', '{0}', 'Checkup patients', now(), now()), ('{small_list}', '{0}', 'Rare condition registry', now(), now());",
        org.0
    ));
    for (name, n) in [("Tiny", 3usize), ("Flu shots", 40), ("Checkups", 52)] {
        let cid = campaign(&app, org.0, name).await;
        ids.push(cid);
        for (i, p) in people.iter().take(n).enumerate() {
            let family = match (name, i) {
                ("Flu shots", 0..3) => 2,
                ("Flu shots", 3..23) => 1,
                _ => 5,
            };
            let list = if i < 4 { small_list } else { big_list };
            sql.push_str(&format!(
                "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at,
                    updated_at, domain_family, tls_version, audience_kind, audience_id)
                 VALUES ('{}', '{}', '{cid}', '{p}', 'sent', now(), '2026-11-10T15:00:00Z', now(), now(), {family}, 13, 5, '{list}');",
                Uuid::now_v7(),
                org.0
            ));
        }
    }
    app.sql(&sql).await;
    settle(svc, 1000).await;
    let (analyst, _) = app.sign_in("analyst@cells.test", None).await;
    let (status, c) = analyst.call("report_comparison", &[("from", "2026-11-01"), ("to", "2026-11-30")]).await;
    assert_eq!(status, 200, "{c}");
    let row = |name: &str| c["rows"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["figures"].clone();
    let lt = serde_json::json!({"shown": "fewer_than", "value": 11});
    assert_eq!(row("Tiny")["delivered"], lt, "{c}");
    assert_eq!(c["total"]["delivered"], serde_json::json!({"shown": "exact", "value": 95}), "{c}");
    let hidden = |f: &serde_json::Value| f["shown"] == "withheld" || f["shown"] == "fewer_than";
    assert!(
        hidden(&row("Flu shots")["delivered"]) || hidden(&row("Checkups")["delivered"]),
        "95 − 40 − 52 would give the 3: one more is withheld: {c}"
    );
    assert!(!c.to_string().contains("cells.test"), "no address in a report");
    // The withheld sibling's own drill-down, page and CSV, withholds it too (with what adds up to
    // it): otherwise 95 − its delivered − the other's would give the 3 away across pages.
    let (sibling, other) = if hidden(&row("Flu shots")["delivered"]) { (1, 2) } else { (2, 1) };
    let of = |i: usize| {
        let id = ids[i].to_string();
        [
            ("kind", "campaign".to_string()),
            ("id", id),
            ("step", String::new()),
            ("from", "2026-11-01".into()),
            ("to", "2026-11-30".into()),
        ]
    };
    let args = of(sibling);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, d) = analyst.call("report_drill", &args).await;
    assert_eq!(status, 200, "{d}");
    let headline = |d: &serde_json::Value, m: &str| {
        d["overview"]["figures"].as_array().unwrap().iter().find(|f| f["metric"] == m).unwrap()["current"]["value"]
            .clone()
    };
    assert!(
        hidden(&headline(&d, "delivered")),
        "the sibling withheld in the comparison is withheld in its drill-down: {}",
        headline(&d, "delivered")
    );
    let series: Vec<&serde_json::Value> =
        d["overview"]["series"].as_array().unwrap().iter().map(|p| &p["delivered"]).collect();
    assert!(series.iter().any(|f| hidden(f)), "its days do not add up to it: {series:?}");
    // Its curve's shares (opened ÷ delivered) would give the delivered figure back too.
    let shares: Vec<&serde_json::Value> = d["since"].as_array().unwrap().iter().map(|p| &p["opened_share"]).collect();
    assert!(shares.len() == 9 && shares.iter().all(|s| s.is_null()), "{shares:?}");
    let r = analyst
        .get(&format!(
            "/reports/export/source.csv?kind=campaign&step=&from=2026-11-01&to=2026-11-30&id={}",
            ids[sibling]
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let total = if sibling == 1 { "40" } else { "52" };
    assert!(r.body.contains("headline,Delivered,hidden,"), "{}", r.body);
    assert!(
        !r.body.lines().any(|l| l.starts_with("headline,Delivered,") && l.contains(&format!(",{total},"))),
        "{}",
        r.body
    );
    // The other one is shown, and an administrator (who may read contacts) sees every figure.
    let args = of(other);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, d) = analyst.call("report_drill", &args).await;
    assert_eq!(headline(&d, "delivered")["shown"], "exact", "{}", headline(&d, "delivered"));
    let full = service::reports::drill(
        svc,
        &Actor::system(org, "test"),
        domain::reports::SourceRef {
            kind: domain::reports::SourceKind::Campaign,
            id: ids[sibling],
            step_id: String::new(),
        },
        ReportRange::parse("2026-11-01", "2026-11-30").unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(full.overview.figure(Metric::Delivered).unwrap().current, Value::Count(Figure::Exact(40 | 52))));
    // The provider breakdown of "Flu shots": the 3 Microsoft recipients are "<11", and another
    // row is withheld so that 40 − 20 − 17 gives nothing away; in the page and the CSV.
    let drill_of = |id: Uuid| {
        [
            ("kind", "campaign".to_string()),
            ("id", id.to_string()),
            ("step", String::new()),
            ("from", "2026-11-01".into()),
            ("to", "2026-11-30".into()),
        ]
    };
    let args = drill_of(ids[1]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, d) = analyst.call("report_drill", &args).await;
    assert_eq!(status, 200, "{d}");
    let breakdown = |d: &serde_json::Value, dim: &str| {
        d["breakdowns"].as_array().unwrap().iter().find(|b| b["dimension"] == dim).cloned().unwrap_or_default()
    };
    let providers = breakdown(&d, "provider");
    let rows = providers["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{providers}");
    let ms = rows.iter().find(|r| r["label"].as_str().unwrap().starts_with("Microsoft")).unwrap();
    assert_eq!(ms["delivered"], lt, "{providers}");
    assert_eq!(rows.iter().filter(|r| hidden(&r["delivered"])).count(), 2, "a sibling is withheld too: {providers}");
    assert_eq!(ms["open_rate"], serde_json::Value::Null, "no rate from a hidden figure");
    let q = "kind=campaign&step=&from=2026-11-01&to=2026-11-30";
    let r = analyst.get(&format!("/reports/export/source.csv?{q}&id={}", ids[1])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let line = r.body.lines().find(|l| l.starts_with("\"Microsoft")).unwrap().to_string();
    assert!(line.contains(",<11,") && !line.contains(",3,"), "{}", r.body);
    let withheld = r.body.lines().filter(|l| l.starts_with("Gmail,") || l.starts_with("Other providers,"));
    assert!(withheld.filter(|l| l.contains(",hidden,")).count() == 1, "{}", r.body);
    // The list breakdown of "Checkups": the list sent to 4 people is not listed, anywhere.
    let args = drill_of(ids[2]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, d) = analyst.call("report_drill", &args).await;
    assert_eq!(status, 200, "{d}");
    let lists = breakdown(&d, "list");
    assert_eq!(lists["rows"].as_array().unwrap().len(), 1, "{lists}");
    assert_eq!(lists["rows"][0]["label"], "Checkup patients");
    assert!(!d.to_string().contains("Rare condition"), "{d}");
    let r = analyst.get(&format!("/reports/export/source.csv?{q}&id={}", ids[2])).await;
    assert!(r.body.contains("Checkup patients,") && !r.body.contains("Rare condition"), "{}", r.body);
    // The export says the same.
    let r = analyst.get("/reports/export/comparison.csv?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tiny = r.body.lines().find(|l| l.contains(",Tiny,")).unwrap().to_string();
    assert!(tiny.starts_with("Campaign,Tiny,<11,<11"), "{}", r.body);
    let shown: Vec<&str> = r.body.lines().filter(|l| l.contains("Flu shots") || l.contains("Checkups")).collect();
    assert!(shown.iter().any(|l| l.contains(",hidden,") || l.contains(",<11,")), "{}", r.body);
    // The overview (one bucket: Nov 10) shows 95 delivered, and its CSV and chart never say 3.
    let o = service::reports::overview(
        svc,
        &Actor::system(org, "test"),
        ReportRange::parse("2026-11-01", "2026-11-30").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(o.figure(Metric::Delivered).unwrap().current, Value::Count(Figure::Exact(95)));
    let csv = analyst.get("/reports/export/overview.csv?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.contains("headline,Delivered,95,"), "{}", csv.body);
    let svg = analyst.get("/reports/export/overview.svg?from=2026-11-01&to=2026-11-30").await;
    assert!(svg.body.starts_with("<svg") && svg.headers["content-type"] == "image/svg+xml", "{}", svg.body);
    // Hostile ranges: refused next to the range fields, nothing else said.
    for (from, to) in [
        ("2026-11-30", "2026-11-01"),
        ("2020-01-01", "2026-11-30"),
        ("not a date", "2026-11-30"),
        ("2026-11-01", "2026-11-01' OR 1=1 --"),
        ("", ""),
    ] {
        let (status, e) = analyst.call("report_overview", &[("from", from), ("to", to)]).await;
        assert_eq!((status, e["code"].as_str()), (422, Some("invalid")), "{from}..{to}: {e}");
        assert_eq!(e["field"]["field"], "range", "{e}");
        let r =
            analyst.get(&format!("/reports/export/overview.csv?from={}&to={}", urlencode(from), urlencode(to))).await;
        assert_eq!(r.status, 422, "{}", r.body);
    }
    assert_eq!(analyst.get("/reports/export/contacts.csv?from=2026-11-01&to=2026-11-30").await.status, 404);
    // An analyst may not change the report time zone.
    let (status, _) = analyst.call("set_report_time_zone", &[("time_zone", "UTC")]).await;
    assert_eq!(status, 403);
    // The drill-down of the tiny campaign: every figure from its 3 people hidden, heatmap and
    // curve included; another organisation's campaign and hostile parameters are refused.
    let tiny = ids[0].to_string();
    let (status, d) = analyst
        .call(
            "report_drill",
            &[("kind", "campaign"), ("id", &tiny), ("step", ""), ("from", "2026-11-01"), ("to", "2026-11-30")],
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["name"], "Tiny");
    let fig = d["overview"]["figures"].as_array().unwrap().iter().find(|f| f["metric"] == "delivered").unwrap().clone();
    assert!(fig["current"]["value"]["shown"] != "exact", "{fig}");
    assert!(d["heatmap"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).all(|f| f["shown"] != "exact"));
    assert!(!d.to_string().contains("cells.test"));
    let other = app.org_with_user("Elsewhere", "admin@elsewhere.test", Role::Admin).await;
    let theirs = campaign(&app, other.0, "Theirs").await.to_string();
    for (kind, id, step) in [
        ("campaign", theirs.as_str(), ""),
        ("campaign", tiny.as_str(), &"x".repeat(100)[..]),
        ("sequence_email", tiny.as_str(), "a"),
    ] {
        let (status, e) = analyst
            .call(
                "report_drill",
                &[("kind", kind), ("id", id), ("step", step), ("from", "2026-11-01"), ("to", "2026-11-30")],
            )
            .await;
        assert_eq!(status, 404, "{kind} {id}: {e}");
    }
    let (status, _) = analyst
        .call(
            "report_drill",
            &[("kind", "bogus"), ("id", &tiny), ("step", ""), ("from", "2026-11-01"), ("to", "2026-11-30")],
        )
        .await;
    assert_eq!(status, 422);
    let (status, e) = analyst.call_json("report_curves", serde_json::json!({"sources": []})).await;
    assert_eq!(status, 422, "{e}");
    // Exports are audited (what and which range, no figures).
    let n: i64 = service::db::scalar(
        svc.db(),
        "SELECT count(*) FROM audit_event WHERE organisation_id = $1 AND action = 'reports.exported'",
        [org.0.into()],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 6, "comparison, three drill-down and two overview exports");
    app.stop().await;
}

#[tokio::test]
async fn event_tables_are_partitioned_by_month_and_retention_drops_a_month_but_not_its_figures() {
    let app = TestApp::start().await;
    let svc = &app.services;
    let org = app.org_with_user("Partitions", "admin@partitions.test", Role::Admin).await;
    let actor = Actor::system(org, "test");
    let kinds: Vec<String> = service::db::scalars(
        svc.db(),
        "SELECT c.relname::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1",
        [],
    )
    .await
    .unwrap();
    assert_eq!(kinds, ["engagement_event", "patient_event"]);
    // Maintenance prepares this month and the next three of both tables (idempotently).
    service::reports::partitions::prepare(svc).await.unwrap();
    assert_eq!(service::reports::partitions::prepare(svc).await.unwrap(), 0, "already there");
    let month = |d: chrono::DateTime<chrono::Utc>| format!("y{}m{:02}", d.format("%Y"), d.format("%m"));
    let now = svc.clock().now();
    for t in service::reports::partitions::TABLES {
        let names: Vec<String> =
            service::reports::partitions::months(svc, t).await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&format!("{t}_{}", month(now))), "{t}: {names:?}");
    }
    // A patient event lands in its receipt month's partition (its UUIDv7 id), and the outbox
    // row naming it still references it.
    let p = contact(svc, &actor, "p@partitions.test").await;
    service::events::record(svc, &actor, p, "visit.completed", &domain::Phi::new(Default::default()), now)
        .await
        .unwrap();
    let (part, outbox): (String, i64) = {
        let part: String = service::db::scalar(
            svc.db(),
            "SELECT tableoid::regclass::text FROM patient_event WHERE contact_id = $1",
            [p.into()],
        )
        .await
        .unwrap()
        .unwrap();
        let n: i64 = service::db::scalar(
            svc.db(),
            "SELECT count(*) FROM event_outbox o JOIN patient_event e ON e.id = o.event_id WHERE e.contact_id = $1",
            [p.into()],
        )
        .await
        .unwrap()
        .unwrap();
        (part, n)
    };
    // The id is minted on the real clock (UUIDv7); the test clock started at the real time.
    assert_eq!(part, format!("patient_event_{}", month(svc.clock().now())));
    assert_eq!(outbox, 1);
    // Engagement from March 2025 (backdated history) lands in the default partition until its
    // month's partition is made, which takes its rows.
    let cid = campaign(&app, org.0, "Old news").await;
    let d = Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, accepted_at, recorded_at, updated_at)
         VALUES ('{d}', '{}', '{cid}', '{p}', 'sent', '2025-03-10T09:00:00Z', '2025-03-10T09:00:00Z', '2025-03-10T09:00:00Z', '2025-03-10T09:00:00Z');
         INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id)
         VALUES ('{0}', '{p}', '{cid}', 'opened', false, '2025-03-10T10:00:00Z', '{d}'),
                ('{0}', '{p}', '{cid}', 'clicked', false, '2025-03-10T10:01:00Z', '{d}')",
        org.0
    ))
    .await;
    let where_: Vec<String> = service::db::scalars(
        svc.db(),
        "SELECT DISTINCT tableoid::regclass::text FROM engagement_event WHERE delivery_id = $1",
        [d.into()],
    )
    .await
    .unwrap();
    assert_eq!(where_, ["engagement_event_default"]);
    let made: bool =
        service::db::scalar(svc.db(), "SELECT hermetic_ensure_month_partition('engagement_event', '2025-03-15')", [])
            .await
            .unwrap()
            .unwrap();
    assert!(made);
    let where_: Vec<String> = service::db::scalars(
        svc.db(),
        "SELECT DISTINCT tableoid::regclass::text FROM engagement_event WHERE delivery_id = $1",
        [d.into()],
    )
    .await
    .unwrap();
    assert_eq!(where_, ["engagement_event_y2025m03"]);
    settle(svc, 1000).await;
    assert_rollup_equals_raw(svc, org.0, "before retention").await;
    // Retention: months before April 2025 go, as whole partitions; the report keeps March.
    let bad =
        service::reports::partitions::drop_before(svc, chrono::NaiveDate::from_ymd_opt(2025, 4, 2).unwrap()).await;
    assert!(bad.is_err(), "only the first day of a month");
    let dropped = service::reports::partitions::drop_before(svc, chrono::NaiveDate::from_ymd_opt(2025, 4, 1).unwrap())
        .await
        .unwrap();
    assert!(dropped.contains(&"engagement_event_y2025m03".to_string()), "{dropped:?}");
    let left: i64 =
        service::db::scalar(svc.db(), "SELECT count(*) FROM engagement_event WHERE delivery_id = $1", [d.into()])
            .await
            .unwrap()
            .unwrap();
    assert_eq!(left, 0);
    let march = ReportRange::parse("2025-03-01", "2025-03-31").unwrap();
    let o = service::reports::overview(svc, &actor, march).await.unwrap();
    assert_eq!(
        o.figure(Metric::HumanOpeners).unwrap().current,
        Value::Count(Figure::Exact(1)),
        "figures outlive raw rows"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_user_who_opts_in_gets_last_weeks_figures_on_monday_morning_once_and_names_nobody() {
    let (smtp, app, org, actor) = crate::sequences::clinic().await;
    let svc = &app.services;
    app.add_user(org, "analyst@lakeside.test", Role::Analyst).await;
    let (analyst, secret) = app.sign_in("analyst@lakeside.test", None).await;
    let (status, v) = analyst.call("report_digest", &[]).await;
    assert_eq!((status, v), (200, serde_json::json!(false)), "off until asked for");
    let (status, _) = analyst.call("set_report_digest", &[("on", "true")]).await;
    assert_eq!(status, 200);
    let (_, v) = analyst.call("report_digest", &[]).await;
    assert_eq!(v, serde_json::json!(true));
    // Monday 09:00 (the organisation's zone is UTC): last week had two campaigns.
    let now = app.now();
    let days_to_monday = (7 - now.weekday().num_days_from_monday() as i64) % 7;
    let monday = (now.date_naive() + chrono::Duration::days(if days_to_monday == 0 { 7 } else { days_to_monday }))
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    app.advance((monday - now).num_seconds());
    for i in 0..30 {
        patient(svc, &actor, &format!("patient{i}@digest-patients.test"), "Pat", true).await;
    }
    let spec = service::reports::demo::Spec { events: 400, campaigns: 2, days: 6, audience_share: 1.0 };
    service::reports::demo::generate(svc, org.0, &spec, monday).await.unwrap();
    settle(svc, 10_000).await;
    // Monday 09:00: one digest (the admin did not ask for one), once.
    assert_eq!(service::reports::digest::queue_due(svc).await.unwrap(), 1);
    assert_eq!(service::reports::digest::queue_due(svc).await.unwrap(), 0, "one per week");
    let msgs = smtp.wait_for(1, 30).await;
    let m = mime(&msgs[0].0);
    assert_eq!(m["headers"]["to"], "analyst@lakeside.test");
    let week_of = monday.date_naive() - chrono::Duration::days(7);
    let subject = m["headers"]["subject"].as_str().unwrap().to_string();
    assert!(
        subject.starts_with("Hermetic weekly report: ") && subject.contains(&week_of.format("%b %-d").to_string()),
        "{subject}"
    );
    let text = m["text"].as_str().unwrap().to_string();
    assert!(text.contains("Delivered") && text.contains("Opened (people)") && text.contains("/reports"), "{text}");
    assert!(!text.contains("digest-patients.test") && !text.contains("@"), "figures only: {text}");
    // Opting out stops it: a job already queued sends nothing. (A week passed: a new session.)
    app.advance(31);
    let (analyst, _) = app.sign_in("analyst@lakeside.test", Some(&secret)).await;
    let (status, _) = analyst.call("set_report_digest", &[("on", "false")]).await;
    assert_eq!(status, 200);
    let job = service::reports::digest::ReportDigest {
        organisation_id: org.0,
        user_id: service::db::scalar(svc.db(), "SELECT id FROM app_user WHERE email = 'analyst@lakeside.test'", [])
            .await
            .unwrap()
            .unwrap(),
        week_of,
    };
    service::reports::digest::send(svc, &job).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 1);
    app.stop().await;
}
