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
    // Two lists the campaigns are sent to (a patient is in one of them), for the audience
    // breakdown.
    let mut lists = Vec::new();
    for name in ["Newsletter subscribers", "Riverside clinic patients"] {
        let id: Option<Uuid> = db::scalar(
            svc.db(),
            "WITH ins AS (
                INSERT INTO contact_list (id, organisation_id, name, created_at, updated_at)
                VALUES ($1, $2, $3, now(), now()) ON CONFLICT (organisation_id, name) DO NOTHING RETURNING id)
             SELECT id FROM ins UNION ALL SELECT id FROM contact_list WHERE organisation_id = $2 AND name = $3 LIMIT 1",
            [Uuid::now_v7().into(), org.into(), name.into()],
        )
        .await?;
        lists.push(id.ok_or_else(|| ServiceError::internal("demo list"))?);
    }
    for k in 0..spec.campaigns {
        let id = Uuid::now_v7();
        let topic = TOPICS[k % TOPICS.len()];
        let name = format!("{topic} #{}", k + 1);
        // Oldest first; the newest a day ago, so recent ranges have figures too.
        let back = (span - Duration::days(1)) * (spec.campaigns - 1 - k) as i32 / spec.campaigns as i32;
        let sent_at = now - Duration::days(1) - back;
        let settings = serde_json::json!({
            "name": name, "purpose": "marketing", "audience": {"segments": [], "lists": lists},
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
        // The audience: a deterministic share of the contacts, each found through one of the
        // lists; outcomes drawn per delivery.
        let n = db::exec(
            svc.db(),
            &format!(
                "INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, attempts, not_before,
                    smtp_status, accepted_at, recorded_at, updated_at, domain_family, tls_version, audience_kind, audience_id)
                 SELECT gen_random_uuid(), $1, $2, x.id,
                    CASE WHEN x.r < 0.03 THEN 'bounced' WHEN x.r < 0.04 THEN 'failed' ELSE 'sent' END, 1, $3,
                    CASE WHEN x.r < 0.02 THEN '550 5.1.1' WHEN x.r < 0.03 THEN '421 4.7.0' WHEN x.r < 0.04 THEN NULL ELSE '250 2.0.0' END,
                    CASE WHEN x.r >= 0.04 THEN $3 + x.after END,
                    $3 + x.after + interval '50 milliseconds', $3 + x.after + interval '50 milliseconds',
                    {FAMILY}, CASE WHEN x.r >= 0.04 THEN {TLS} END,
                    5, CASE WHEN hashtext(x.id::text || 'list') & 1 = 0 THEN $5 ELSE $6 END
                 FROM (SELECT c.id, random() AS r, random() * interval '100 minutes' AS after
                       FROM contact c WHERE c.organisation_id = $1
                         AND (hashtext(c.id::text || $2::text) & 1023) < $4) x"
            ),
            [
                org.into(),
                id.into(),
                sent_at.into(),
                ((share * 1024.0).round() as i32).into(),
                lists[0].into(),
                lists[1].into(),
            ],
        )
        .await?;
        out.deliveries += n;
        out.events += engagement(svc, "d.campaign_id = $1", id, now, per_engaged).await?;
        out.campaigns.push(id);
    }
    Ok(out)
}

/// A contact's provider family, the same for every message to them (`x.id`: the contact).
const FAMILY: &str =
    "(SELECT CASE WHEN f < 0.40 THEN 1 WHEN f < 0.58 THEN 2 WHEN f < 0.66 THEN 3 WHEN f < 0.80 THEN 4 ELSE 5 END
                      FROM (SELECT (hashtext(x.id::text || 'family') & 1023) / 1024.0 AS f) ff)";
/// The TLS version of a delivered message: mostly 1.3.
const TLS: &str = "(CASE WHEN random() < 0.86 THEN 13 ELSE 12 END)";

/// Engagement for the delivered messages `filter` picks (`$1` is bound to `key`): 45% of them
/// get events; a person's opens come hours after the send (mostly the same day), a machine's
/// within two minutes; each open carries its client family. Returns the events inserted.
async fn engagement(
    svc: &Services,
    filter: &str,
    key: Uuid,
    now: DateTime<Utc>,
    per_engaged: f64,
) -> ServiceResult<u64> {
    db::exec(
        svc.db(),
        &format!(
            "INSERT INTO engagement_event (organisation_id, contact_id, campaign_id, activity, machine, occurred_at,
                delivery_id, link_position, client)
             SELECT d.organisation_id, d.contact_id, d.campaign_id, v.activity, v.machine,
                least(d.accepted_at + v.after, $2), d.id, v.link,
                CASE WHEN v.activity <> 'opened' THEN NULL WHEN v.machine OR v.c < 0.40 THEN 1 WHEN v.c < 0.70 THEN 2
                     WHEN v.c < 0.83 THEN 3 WHEN v.c < 0.88 THEN 4 WHEN v.c < 0.90 THEN 5 WHEN v.c < 0.97 THEN 6 ELSE 7 END
             FROM delivery d
             CROSS JOIN LATERAL (
                SELECT CASE WHEN p < 0.84 THEN 'opened' WHEN p < 0.99 THEN 'clicked' ELSE 'unsubscribed' END AS activity,
                       (p >= 0.62 AND p < 0.84) OR (p >= 0.95 AND p < 0.99) AS machine,
                       CASE WHEN p >= 0.62 AND p < 0.84 THEN random() * interval '2 minutes'
                            ELSE least(-ln(1 - random()) * interval '5 hours', interval '10 days') END AS after,
                       CASE WHEN p >= 0.84 AND p < 0.99 THEN floor(random() * random() * 4)::int END AS link,
                       random() AS c
                FROM (SELECT random() AS p, g FROM generate_series(1, greatest(1, round(-ln(1 - random()) * $3 + (d.id IS NULL)::int)::int)) g) z
             ) v
             WHERE {filter} AND d.state = 'sent' AND (hashtext(d.id::text) & 1023) < 461"
        ),
        [key.into(), now.into(), per_engaged.into()],
    )
    .await
    .map_err(Into::into)
}

/// A published sequence to give history: its id, live version and email step ids in order.
#[derive(Debug, Clone)]
pub struct DemoSequence {
    pub id: Uuid,
    pub version: Uuid,
    pub email_steps: Vec<String>,
}

/// Sequence history: for each sequence, a share of the contacts entered over the last
/// `spec.days` days and were sent its emails (two days apart), with outcomes and engagement like
/// a campaign's. `template_version` is the pinned version the messages name. Returns the
/// deliveries and events made.
pub async fn generate_sequences(
    svc: &Services,
    org: Uuid,
    sequences: &[DemoSequence],
    template_version: Uuid,
    spec: &Spec,
    now: DateTime<Utc>,
) -> ServiceResult<Generated> {
    let mut out = Generated::default();
    let share = ((spec.audience_share.clamp(0.01, 1.0) * 1024.0).round() as i32).max(1);
    let contacts: i64 = db::scalar(svc.db(), "SELECT count(*) FROM contact WHERE organisation_id = $1", [org.into()])
        .await?
        .unwrap_or(0);
    let messages = (contacts as f64 * spec.audience_share.clamp(0.01, 1.0)).max(1.0)
        * sequences.iter().map(|s| s.email_steps.len()).sum::<usize>().max(1) as f64;
    let per_engaged = (spec.events as f64 / (messages * 0.96 * 0.45)).max(0.1);
    for s in sequences {
        if s.email_steps.is_empty() {
            continue;
        }
        let steps: Vec<String> = s.email_steps.clone();
        let n = db::exec(
            svc.db(),
            &format!(
                "WITH pop AS (
                    SELECT c.id, gen_random_uuid() AS enrolment_id, random() AS r,
                        $5::timestamptz - random() * make_interval(days => $6) AS entered_at
                    FROM contact c
                    WHERE c.organisation_id = $1 AND (hashtext(c.id::text || $2::text) & 1023) < $4),
                 enr AS (
                    INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, state, end_reason,
                        step_started_at, entered_at, ended_at)
                    SELECT enrolment_id, $1, $2, $3, id, CASE WHEN r < 0.25 THEN 'converted' ELSE 'completed' END,
                        CASE WHEN r < 0.25 THEN 'goal' ELSE 'completed' END, entered_at, entered_at,
                        least(entered_at + interval '5 days', $5)
                    FROM pop RETURNING id),
                 msgs AS (
                    SELECT gen_random_uuid() AS id, p.enrolment_id, p.id AS contact_id, st.step_id,
                        p.entered_at + (st.n - 1) * interval '2 days' AS at, random() AS r
                    FROM pop p CROSS JOIN unnest($7::text[]) WITH ORDINALITY AS st (step_id, n)
                    WHERE p.entered_at + (st.n - 1) * interval '2 days' < $5),
                 api AS (
                    INSERT INTO api_message (id, organisation_id, template_id, template_version_id, from_email, created_at,
                        purpose, enrolment_id, step_id)
                    SELECT m.id, $1, v.template_id, v.id, 'care@demo.hermetic.test', m.at, 'marketing', m.enrolment_id, m.step_id
                    FROM msgs m CROSS JOIN (SELECT id, template_id FROM template_version WHERE id = $8) v)
                 INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, attempts, not_before,
                    smtp_status, accepted_at, recorded_at, updated_at, source, domain_family, tls_version)
                 SELECT m.id, $1, NULL, x.id,
                    CASE WHEN m.r < 0.03 THEN 'bounced' WHEN m.r < 0.04 THEN 'failed' ELSE 'sent' END, 1, m.at,
                    CASE WHEN m.r < 0.02 THEN '550 5.1.1' WHEN m.r < 0.03 THEN '421 4.7.0' WHEN m.r < 0.04 THEN NULL ELSE '250 2.0.0' END,
                    CASE WHEN m.r >= 0.04 THEN m.at + interval '2 seconds' END,
                    m.at + interval '3 seconds', m.at + interval '3 seconds', 'sequence_step',
                    {FAMILY}, CASE WHEN m.r >= 0.04 THEN {TLS} END
                 FROM msgs m CROSS JOIN LATERAL (SELECT m.contact_id AS id) x"
            ),
            [
                org.into(),
                s.id.into(),
                s.version.into(),
                share.into(),
                now.into(),
                (spec.days.max(1) as i32).into(),
                steps.into(),
                template_version.into(),
            ],
        )
        .await?;
        out.deliveries += n;
        out.events += engagement(
            svc,
            "d.id IN (SELECT m.id FROM api_message m JOIN enrolment e ON e.id = m.enrolment_id WHERE e.sequence_id = $1)",
            s.id,
            now,
            per_engaged,
        )
        .await?;
    }
    Ok(out)
}

/// The organisation's live sequences that send email, with the template version of their first
/// email (what demo sequence messages name), for [`generate_sequences`].
pub async fn live_sequences(svc: &Services, org: Uuid) -> ServiceResult<(Vec<DemoSequence>, Option<Uuid>)> {
    #[derive(sea_orm::FromQueryResult)]
    struct Live {
        id: Uuid,
        version: Uuid,
        definition: serde_json::Value,
    }
    let rows: Vec<Live> = db::all_as(
        svc.db(),
        "SELECT s.id, v.id AS version, v.definition FROM sequence s JOIN sequence_version v ON v.id = s.current_version_id
         WHERE s.organisation_id = $1 AND s.status = 'active' ORDER BY s.created_at",
        [org.into()],
    )
    .await?;
    let mut out = Vec::new();
    let mut template_version = None;
    for r in rows {
        let Ok(def) = serde_json::from_value::<domain::sequences::SequenceDefinition>(r.definition) else { continue };
        let mut email_steps = Vec::new();
        for st in &def.steps {
            if let domain::sequences::StepKind::SendEmail { template_version: v, .. } = &st.kind {
                email_steps.push(st.id.clone());
                template_version = template_version.or(*v);
            }
        }
        out.push(DemoSequence { id: r.id, version: r.version, email_steps });
    }
    Ok((out, template_version))
}
