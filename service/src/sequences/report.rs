//! A sequence's report: funnel, ways out, time to convert and each email step's campaign figures.
//! Reads aggregates only (no contact data, nothing to audit) and hands them to
//! `domain::sequence_report::SequenceReport::build`, which applies the small-cell rule for
//! readers who may not read contacts.
//!
//! Invariant: the funnel lists the steps of the live version (the draft's before the first
//! publication), read from the masked plain copy: step names and kinds, never a PHI literal.

use super::{reader, sequence_row};
use crate::actor::Actor;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Permission;
use domain::campaign_views::{LinkCounts, ReportCounts};
use domain::sequence_report::{CONVERT_BUCKETS, SequenceReport, SequenceReportCounts};
use domain::sequences::{EndReason, SequenceDefinition};
use sea_orm::FromQueryResult;
use serde_json::Value as Json;
use uuid::Uuid;

fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The report of sequence `id` (analysts included: figures only, small cells hidden).
pub async fn report(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SequenceReport> {
    actor.require(Permission::ReportsRead)?;
    let org = actor.organisation_id;
    let conn = svc.db();
    let row = sequence_row(conn, org, id, false).await?;
    #[derive(FromQueryResult)]
    struct Live {
        number: i32,
        definition: Json,
    }
    let live: Option<Live> = db::one_as(
        conn,
        "SELECT number, definition FROM sequence_version WHERE id = $1",
        [row.current_version_id.into()],
    )
    .await?;
    let (version, masked) = match live {
        Some(v) => (Some(v.number), v.definition),
        None => (None, row.draft),
    };
    let def: SequenceDefinition =
        serde_json::from_value(masked).map_err(|_| ServiceError::internal("a stored sequence is malformed"))?;
    let args = || [id.into(), org.0.into()];
    let mut c = SequenceReportCounts::default();

    #[derive(FromQueryResult)]
    struct End {
        end_reason: Option<String>,
        n: i64,
    }
    let ends: Vec<End> = db::all_as(
        conn,
        "SELECT end_reason, count(*) AS n FROM enrolment WHERE sequence_id = $1 AND organisation_id = $2
         GROUP BY end_reason",
        args(),
    )
    .await?;
    for e in ends {
        c.entered += n(e.n);
        match e.end_reason.as_deref() {
            None => c.active += n(e.n),
            Some(r) => {
                let reason = EndReason::parse(r).ok_or_else(|| ServiceError::internal("unknown end reason"))?;
                *c.ended.entry(reason).or_default() += n(e.n);
            }
        }
    }

    #[derive(FromQueryResult)]
    struct Reached {
        step_id: String,
        n: i64,
    }
    let reached: Vec<Reached> = db::all_as(
        conn,
        "SELECT x.step_id, count(DISTINCT x.enrolment_id) AS n
         FROM enrolment e JOIN enrolment_step x ON x.enrolment_id = e.id
         WHERE e.sequence_id = $1 AND e.organisation_id = $2 GROUP BY x.step_id",
        args(),
    )
    .await?;
    c.reached = reached.into_iter().map(|r| (r.step_id, n(r.n))).collect();

    // Buckets by their lower bounds: width_bucket gives 0 below the first bound, i past bound i,
    // as `domain::sequence_report::convert_bucket` does.
    let bounds: Vec<f64> = CONVERT_BUCKETS.iter().filter_map(|(upper, _)| upper.map(|u| u as f64)).collect();
    #[derive(FromQueryResult)]
    struct Bucket {
        bucket: i32,
        n: i64,
    }
    let buckets: Vec<Bucket> = db::all_as(
        conn,
        "SELECT width_bucket(extract(epoch FROM ended_at - entered_at)::float8, $3::float8[]) AS bucket, count(*) AS n
         FROM enrolment WHERE sequence_id = $1 AND organisation_id = $2 AND state = 'converted' GROUP BY 1",
        [id.into(), org.0.into(), bounds.into()],
    )
    .await?;
    for b in buckets {
        let i = usize::try_from(b.bucket).unwrap_or(0).min(CONVERT_BUCKETS.len() - 1);
        c.to_convert[i] += n(b.n);
    }
    c.median_secs_to_convert = db::scalar::<Option<f64>, _>(
        conn,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - entered_at)::float8)
         FROM enrolment WHERE sequence_id = $1 AND organisation_id = $2 AND state = 'converted'",
        args(),
    )
    .await?
    .flatten();

    // Each email step's figures, as the campaign report counts them; people are distinct contacts
    // (a contact who entered twice got the step's email twice).
    #[derive(FromQueryResult)]
    struct Sent {
        step_id: String,
        delivered: i64,
        bounced: i64,
    }
    let sent: Vec<Sent> = db::all_as(
        conn,
        "SELECT m.step_id,
            count(DISTINCT coalesce(d.contact_id, d.id)) FILTER (WHERE d.state = 'sent') AS delivered,
            count(DISTINCT coalesce(d.contact_id, d.id)) FILTER (WHERE d.state = 'bounced') AS bounced
         FROM enrolment e JOIN api_message m ON m.enrolment_id = e.id JOIN delivery d ON d.id = m.id
         WHERE e.sequence_id = $1 AND e.organisation_id = $2 AND m.step_id IS NOT NULL GROUP BY m.step_id",
        args(),
    )
    .await?;
    for s in sent {
        let r = c.emails.entry(s.step_id).or_default();
        r.delivered = n(s.delivered);
        r.bounced = n(s.bounced);
    }
    #[derive(FromQueryResult)]
    struct Engagement {
        step_id: String,
        human_openers: i64,
        machine_opens: i64,
        machine_openers: i64,
        human_clickers: i64,
        human_clicks: i64,
        machine_clicks: i64,
        machine_clickers: i64,
        unsubscribes: i64,
    }
    let engagement: Vec<Engagement> = db::all_as(
        conn,
        "SELECT m.step_id,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.activity = 'opened' AND NOT g.machine) AS human_openers,
            count(*) FILTER (WHERE g.activity = 'opened' AND g.machine) AS machine_opens,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.activity = 'opened' AND g.machine) AS machine_openers,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.activity = 'clicked' AND NOT g.machine) AS human_clickers,
            count(*) FILTER (WHERE g.activity = 'clicked' AND NOT g.machine) AS human_clicks,
            count(*) FILTER (WHERE g.activity = 'clicked' AND g.machine) AS machine_clicks,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.activity = 'clicked' AND g.machine) AS machine_clickers,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.activity = 'unsubscribed') AS unsubscribes
         FROM enrolment e JOIN api_message m ON m.enrolment_id = e.id JOIN engagement_event g ON g.delivery_id = m.id
         WHERE e.sequence_id = $1 AND e.organisation_id = $2 AND m.step_id IS NOT NULL GROUP BY m.step_id",
        args(),
    )
    .await?;
    for g in engagement {
        let r: &mut ReportCounts = c.emails.entry(g.step_id).or_default();
        r.human_openers = n(g.human_openers);
        r.machine_opens = n(g.machine_opens);
        r.machine_openers = n(g.machine_openers);
        r.human_clickers = n(g.human_clickers);
        r.human_clicks = n(g.human_clicks);
        r.machine_clicks = n(g.machine_clicks);
        r.machine_clickers = n(g.machine_clickers);
        r.unsubscribes = n(g.unsubscribes);
    }
    #[derive(FromQueryResult)]
    struct Link {
        step_id: String,
        url: String,
        clicks: i64,
        clickers: i64,
        machine: i64,
        machine_clickers: i64,
    }
    // A step's links across its template versions, by URL, in the order they appear.
    let links: Vec<Link> = db::all_as(
        conn,
        "SELECT m.step_id, l.url,
            count(g.id) FILTER (WHERE NOT g.machine) AS clicks,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE NOT g.machine) AS clickers,
            count(g.id) FILTER (WHERE g.machine) AS machine,
            count(DISTINCT coalesce(g.contact_id, g.delivery_id)) FILTER (WHERE g.machine) AS machine_clickers
         FROM enrolment e JOIN api_message m ON m.enrolment_id = e.id
         JOIN api_message_link l ON l.message_id = m.id
         LEFT JOIN engagement_event g ON g.delivery_id = m.id AND g.activity = 'clicked' AND g.link_position = l.position
         WHERE e.sequence_id = $1 AND e.organisation_id = $2 AND m.step_id IS NOT NULL
         GROUP BY m.step_id, l.url ORDER BY m.step_id, min(l.position), l.url",
        args(),
    )
    .await?;
    for l in links {
        c.emails.entry(l.step_id).or_default().links.push(LinkCounts {
            url: l.url,
            clicks: n(l.clicks),
            clickers: n(l.clickers),
            machine: n(l.machine),
            machine_clickers: n(l.machine_clickers),
        });
    }
    Ok(SequenceReport::build(reader(actor), row.name, version, &def, &c))
}
