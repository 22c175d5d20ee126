//! Demo report history: completed campaigns sent to an organisation's existing contacts over the
//! last days, with deliveries (mostly delivered, some bounced or failed) and engagement (human and
//! machine opens, clicks on a few links, unsubscribes) spread after each send. For the demo
//! organisation (`server admin demo-reports`), the browser test and the reports benchmark, which
//! all need figures to look at. Everything goes through the same tables and capture triggers as
//! real mail, so the rollup counts it like any other. No contact data is read or written: rows
//! name contact ids only.

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Engagement events to aim for (the result is close to it, not exact).
    pub events: u64,
    pub campaigns: usize,
    /// Campaigns are spread over the last `days` days.
    pub days: i64,
    /// Share of each campaign's audience in the organisation's contacts (0..=1).
    pub audience_share: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub campaigns: Vec<Uuid>,
    pub deliveries: u64,
    pub events: u64,
}

const TOPICS: &[&str] = &[
    "Flu shot reminder",
    "Annual check-up",
    "Diabetes education series",
    "Heart health month",
    "New clinic hours",
    "Patient portal launch",
    "Mammogram awareness",
    "Healthy eating newsletter",
    "Telehealth visits",
    "Sleep clinic open house",
];

/// Generate campaigns, deliveries and events for `org` (which must have contacts), sent between
/// `now − days` and `now`.
pub async fn generate(svc: &Services, org: Uuid, spec: &Spec, now: DateTime<Utc>) -> ServiceResult<Generated> {
    let contacts: i64 = db::scalar(svc.db(), "SELECT count(*) FROM contact WHERE organisation_id = $1", [org.into()])
        .await?
        .unwrap_or(0);
    if contacts == 0 || spec.campaigns == 0 {
        return Err(ServiceError::invalid("organisation", "needs contacts and at least one campaign"));
    }
    let share = spec.audience_share.clamp(0.01, 1.0);
    let per_campaign = (contacts as f64 * share).max(1.0);
    let deliveries = per_campaign * spec.campaigns as f64;
    // About 96% are delivered and 45% of those engage: the events per engaging delivery.
    let per_engaged = (spec.events as f64 / (deliveries * 0.96 * 0.45)).max(0.1);
    let mut out = Generated::default();
    let span = Duration::days(spec.days.max(1));
    // The months the history falls in get their partitions first (not the default partition).
    db::exec(
        svc.db(),
        "SELECT hermetic_ensure_month_partition('engagement_event', m::date)
         FROM generate_series(date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC'),
                              date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC'), interval '1 month') AS m",
        [(now - span).into(), now.into()],
    )
    .await?;
    for k in 0..spec.campaigns {
        let id = Uuid::now_v7();
        let topic = TOPICS[k % TOPICS.len()];
        let name = format!("{topic} #{}", k + 1);
        // Oldest first; the newest a day ago, so recent ranges have figures too.
        let back = (span - Duration::days(1)) * (spec.campaigns - 1 - k) as i32 / spec.campaigns as i32;
        let sent_at = now - Duration::days(1) - back;
        let settings = serde_json::json!({
            "name": name, "purpose": "marketing", "audience": {"segments": [], "lists": []},
            "template_id": null, "from_name": "Demo Health", "from_email": "news@demo.hermetic.test",
            "reply_to": null, "policy": "tls_required", "schedule": {"kind": "now"},
            "throttle": {"per_second": 50, "per_domain_per_minute": null},
            "auto_pause": {"after_consecutive_errors": 10}
        });
        db::exec(
            svc.db(),
            "INSERT INTO campaign (id, organisation_id, name, status, settings, created_at, updated_at, started_at, finished_at)
             VALUES ($1, $2, $3, 'completed', $4, $5, $5, $5, $5 + interval '2 hours')",
            [id.into(), org.into(), name.into(), settings.into(), sent_at.into()],
        )
        .await?;
        db::exec(
            svc.db(),
            "INSERT INTO campaign_link (campaign_id, position, url) VALUES
                ($1, 0, 'https://demo.hermetic.test/book'), ($1, 1, 'https://demo.hermetic.test/learn-more'),
                ($1, 2, 'https://demo.hermetic.test/portal'), ($1, 3, 'https://demo.hermetic.test/contact')",
            [id.into()],
        )
        .await?;
        // The audience: a deterministic share of the contacts; outcomes drawn per delivery.
        let n = db::exec(
            svc.db(),
            "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, attempts, not_before,
                smtp_status, accepted_at, recorded_at, updated_at)
             SELECT gen_random_uuid(), $1, $2, x.id,
                CASE WHEN x.r < 0.03 THEN 'bounced' WHEN x.r < 0.04 THEN 'failed' ELSE 'sent' END, 1, $3,
                CASE WHEN x.r < 0.02 THEN '550 5.1.1' WHEN x.r < 0.03 THEN '421 4.7.0' WHEN x.r < 0.04 THEN NULL ELSE '250 2.0.0' END,
                CASE WHEN x.r >= 0.04 THEN $3 + x.after END,
                $3 + x.after + interval '50 milliseconds', $3 + x.after + interval '50 milliseconds'
             FROM (SELECT c.id, random() AS r, random() * interval '100 minutes' AS after
                   FROM contact c WHERE c.organisation_id = $1
                     AND (hashtext(c.id::text || $2::text) & 1023) < $4) x",
            [org.into(), id.into(), sent_at.into(), ((share * 1024.0).round() as i32).into()],
        )
        .await?;
        out.deliveries += n;
        // Engagement: 45% of delivered messages get events; a person's opens come hours after
        // the send (mostly the same day), a machine's within two minutes.
        let e = db::exec(
            svc.db(),
            "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at,
                delivery_id, link_position)
             SELECT d.organisation_id, d.contact_id, d.campaign_id, v.activity, v.machine,
                least(d.accepted_at + v.after, $3), d.id, v.link
             FROM delivery d
             CROSS JOIN LATERAL (
                SELECT CASE WHEN p < 0.84 THEN 'opened' WHEN p < 0.99 THEN 'clicked' ELSE 'unsubscribed' END AS activity,
                       (p >= 0.62 AND p < 0.84) OR (p >= 0.95 AND p < 0.99) AS machine,
                       CASE WHEN p >= 0.62 AND p < 0.84 THEN random() * interval '2 minutes'
                            ELSE least(-ln(1 - random()) * interval '5 hours', interval '10 days') END AS after,
                       CASE WHEN p >= 0.84 AND p < 0.99 THEN floor(random() * random() * 4)::int END AS link
                FROM (SELECT random() AS p, g FROM generate_series(1, greatest(1, round(-ln(1 - random()) * $4 + (d.id IS NULL)::int)::int)) g) z
             ) v
             WHERE d.campaign_id = $1 AND d.state = 'sent' AND (hashtext(d.id::text) & 1023) < 461",
            [id.into(), org.into(), now.into(), per_engaged.into()],
        )
        .await?;
        out.events += e;
        out.campaigns.push(id);
    }
    Ok(out)
}
