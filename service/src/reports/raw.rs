//! The reference answer: the report figures of an organisation computed straight from the raw
//! tables (engagement events, deliveries, suppressions), with the same definitions as the rollup
//! (`rollup`): a delivery's outcome counts at coalesce(accepted, recorded, updated), a unique
//! figure at the delivery's earliest event of its kind, hours are local hours in the
//! organisation's time zone. Tests hold the rollup to it; reports never read it (its cost grows
//! with the events).

use crate::db;
use crate::error::ServiceResult;
use chrono::NaiveDateTime;
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

/// One hour of one source (or, with `source_kind` 0, of the organisation), as the hour tables
/// hold it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct HourRow {
    pub hour: NaiveDateTime,
    pub source_kind: i16,
    pub source_id: Uuid,
    pub step_id: String,
    pub sent: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub failed: i64,
    pub human_openers: i64,
    pub machine_opens: i64,
    pub machine_openers: i64,
    pub human_clicks: i64,
    pub human_clickers: i64,
    pub machine_clicks: i64,
    pub unsubscribes: i64,
    pub bounced_hard: i64,
    pub bounced_soft: i64,
    pub bounced_policy: i64,
    pub deferrals: i64,
    pub suppressed_unsubscribed: i64,
    pub suppressed_hard_bounce: i64,
    pub suppressed_complaint: i64,
    pub suppressed_manual: i64,
}

const COLS: &str = "sent, delivered, bounced, failed, human_openers, machine_opens, machine_openers, human_clicks, \
                    human_clickers, machine_clicks, unsubscribes, bounced_hard, bounced_soft, bounced_policy, deferrals";

fn nonzero(cols: &str) -> String {
    cols.split(", ").map(|c| format!("{c} <> 0")).collect::<Vec<_>>().join(" OR ")
}

/// The raw answer, per source and hour (rows with a figure only), sorted.
pub async fn source_hours<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<HourRow>> {
    let sql = format!(
        "WITH tz AS (SELECT time_zone AS z FROM organisation WHERE id = $1),
         {SOURCES},
         outcomes AS (
            SELECT date_trunc('hour', coalesce(d.accepted_at, d.recorded_at, d.updated_at) AT TIME ZONE (SELECT z FROM tz)) AS hour,
                s.source_kind, s.source_id, s.step_id,
                count(*) AS sent, count(*) FILTER (WHERE d.state = 'sent') AS delivered,
                count(*) FILTER (WHERE d.state = 'bounced') AS bounced, count(*) FILTER (WHERE d.state = 'failed') AS failed,
                0 AS human_openers, 0 AS machine_opens, 0 AS machine_openers, 0 AS human_clicks, 0 AS human_clickers,
                0 AS machine_clicks, 0 AS unsubscribes,
                count(*) FILTER (WHERE d.state = 'bounced' AND hermetic_bounce_class(d.smtp_status) = 'hard') AS bounced_hard,
                count(*) FILTER (WHERE d.state = 'bounced' AND hermetic_bounce_class(d.smtp_status) = 'soft') AS bounced_soft,
                count(*) FILTER (WHERE d.state = 'bounced' AND hermetic_bounce_class(d.smtp_status) = 'policy') AS bounced_policy,
                0 AS deferrals
            FROM delivery d JOIN src s ON s.id = d.id
            WHERE d.organisation_id = $1 AND d.state IN ('sent', 'bounced', 'failed') GROUP BY 1, 2, 3, 4),
         deferred AS (
            SELECT date_trunc('hour', f.at AT TIME ZONE (SELECT z FROM tz)) AS hour, s.source_kind, s.source_id, s.step_id,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, count(*)
            FROM delivery_deferral f JOIN src s ON s.id = f.delivery_id
            WHERE f.organisation_id = $1 GROUP BY 1, 2, 3, 4),
         ev AS (
            SELECT g.*, date_trunc('hour', g.occurred_at AT TIME ZONE (SELECT z FROM tz)) AS hour,
                coalesce(s.source_kind, 1::int2) AS source_kind,
                coalesce(CASE WHEN s.id IS NULL THEN g.campaign_id ELSE s.source_id END,
                         '00000000-0000-0000-0000-000000000000') AS source_id,
                coalesce(s.step_id, '') AS step_id,
                CASE WHEN g.activity = 'opened' AND NOT g.machine THEN 1 WHEN g.activity = 'opened' THEN 2
                     WHEN g.activity = 'clicked' AND NOT g.machine THEN 3 WHEN g.activity = 'unsubscribed' THEN 4 END AS fk
            FROM engagement_event g LEFT JOIN src s ON s.id = g.delivery_id
            WHERE g.organisation_id = $1 AND g.delivery_id IS NOT NULL AND g.activity IN ('opened', 'clicked', 'unsubscribed')),
         events AS (
            SELECT hour, source_kind, source_id, step_id, 0, 0, 0, 0, 0,
                count(*) FILTER (WHERE activity = 'opened' AND machine), 0,
                count(*) FILTER (WHERE activity = 'clicked' AND NOT machine), 0,
                count(*) FILTER (WHERE activity = 'clicked' AND machine), 0, 0, 0, 0, 0
            FROM ev GROUP BY 1, 2, 3, 4),
         firsts AS (
            SELECT hour, source_kind, source_id, step_id, 0, 0, 0, 0,
                count(*) FILTER (WHERE fk = 1), 0, count(*) FILTER (WHERE fk = 2), 0, count(*) FILTER (WHERE fk = 3),
                0, count(*) FILTER (WHERE fk = 4), 0, 0, 0, 0
            FROM (SELECT DISTINCT ON (delivery_id, fk) * FROM ev WHERE fk IS NOT NULL ORDER BY delivery_id, fk, occurred_at) f
            GROUP BY 1, 2, 3, 4),
         parts AS (SELECT * FROM outcomes UNION ALL SELECT * FROM events UNION ALL SELECT * FROM firsts
                   UNION ALL SELECT * FROM deferred)
         SELECT hour, source_kind, coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id, step_id,
            {sums}, 0::int8 AS suppressed_unsubscribed, 0::int8 AS suppressed_hard_bounce,
            0::int8 AS suppressed_complaint, 0::int8 AS suppressed_manual
         FROM parts GROUP BY 1, 2, 3, 4 HAVING {having}
         ORDER BY 1, 2, 3, 4",
        sums = COLS.split(", ").map(|c| format!("sum({c})::int8 AS {c}")).collect::<Vec<_>>().join(", "),
        having = COLS.split(", ").map(|c| format!("sum({c}) <> 0")).collect::<Vec<_>>().join(" OR "),
    );
    Ok(db::all_as(conn, &sql, [org.into()]).await?)
}

/// The raw answer per organisation hour (source_kind 0), suppressions included, sorted.
pub async fn org_hours<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<HourRow>> {
    let sources = source_hours(conn, org).await?;
    let mut by_hour: std::collections::BTreeMap<NaiveDateTime, HourRow> = std::collections::BTreeMap::new();
    for r in sources {
        let e = by_hour.entry(r.hour).or_insert_with(|| HourRow {
            source_kind: 0,
            source_id: Uuid::nil(),
            step_id: String::new(),
            ..zero(r.hour)
        });
        e.sent += r.sent;
        e.delivered += r.delivered;
        e.bounced += r.bounced;
        e.failed += r.failed;
        e.human_openers += r.human_openers;
        e.machine_opens += r.machine_opens;
        e.machine_openers += r.machine_openers;
        e.human_clicks += r.human_clicks;
        e.human_clickers += r.human_clickers;
        e.machine_clicks += r.machine_clicks;
        e.unsubscribes += r.unsubscribes;
        e.bounced_hard += r.bounced_hard;
        e.bounced_soft += r.bounced_soft;
        e.bounced_policy += r.bounced_policy;
        e.deferrals += r.deferrals;
    }
    #[derive(FromQueryResult)]
    struct Supp {
        hour: NaiveDateTime,
        reason: String,
        n: i64,
    }
    let supp: Vec<Supp> = db::all_as(
        conn,
        "SELECT date_trunc('hour', s.created_at AT TIME ZONE o.time_zone) AS hour, s.reason, count(*) AS n
         FROM suppression s JOIN organisation o ON o.id = s.organisation_id
         WHERE s.organisation_id = $1 GROUP BY 1, 2",
        [org.into()],
    )
    .await?;
    for s in supp {
        let e = by_hour.entry(s.hour).or_insert_with(|| zero(s.hour));
        match s.reason.as_str() {
            "unsubscribed" => e.suppressed_unsubscribed += s.n,
            "hard_bounce" => e.suppressed_hard_bounce += s.n,
            "complaint" => e.suppressed_complaint += s.n,
            _ => e.suppressed_manual += s.n,
        }
    }
    Ok(by_hour.into_values().collect())
}

fn zero(hour: NaiveDateTime) -> HourRow {
    HourRow {
        hour,
        source_kind: 0,
        source_id: Uuid::nil(),
        step_id: String::new(),
        sent: 0,
        delivered: 0,
        bounced: 0,
        failed: 0,
        human_openers: 0,
        machine_opens: 0,
        machine_openers: 0,
        human_clicks: 0,
        human_clickers: 0,
        machine_clicks: 0,
        unsubscribes: 0,
        bounced_hard: 0,
        bounced_soft: 0,
        bounced_policy: 0,
        deferrals: 0,
        suppressed_unsubscribed: 0,
        suppressed_hard_bounce: 0,
        suppressed_complaint: 0,
        suppressed_manual: 0,
    }
}

/// What the rollup holds for the organisation, in the same shape (rows with a figure only).
pub async fn rolled_up<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<(Vec<HourRow>, Vec<HourRow>)> {
    let supp0 = "0::int8 AS suppressed_unsubscribed, 0::int8 AS suppressed_hard_bounce, \
                 0::int8 AS suppressed_complaint, 0::int8 AS suppressed_manual";
    let sources: Vec<HourRow> = db::all_as(
        conn,
        &format!(
            "SELECT hour, source_kind, source_id, step_id, {COLS}, {supp0} FROM report_hour
             WHERE organisation_id = $1 AND ({}) ORDER BY 1, 2, 3, 4",
            nonzero(COLS)
        ),
        [org.into()],
    )
    .await?;
    let all =
        format!("{COLS}, suppressed_unsubscribed, suppressed_hard_bounce, suppressed_complaint, suppressed_manual");
    let orgs: Vec<HourRow> = db::all_as(
        conn,
        &format!(
            "SELECT hour, 0::int2 AS source_kind, '00000000-0000-0000-0000-000000000000'::uuid AS source_id,
                '' AS step_id, {all} FROM report_org_hour WHERE organisation_id = $1 AND ({}) ORDER BY 1",
            nonzero(&all)
        ),
        [org.into()],
    )
    .await?;
    Ok((sources, orgs))
}

/// Opens and clicks since the send, or clicks per link, per source: (source kind, source id,
/// step, hours or position, figures…).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct KeyedRow {
    pub source_kind: i16,
    pub source_id: Uuid,
    pub step_id: String,
    pub key: i32,
    pub a: i64,
    pub b: i64,
    pub c: i64,
}

const SOURCES: &str = "src AS (
    SELECT d.id, d.accepted_at,
        CASE WHEN d.source = 'campaign' THEN 1 WHEN d.source = 'sequence_step' THEN 2 ELSE 3 END::int2 AS source_kind,
        CASE WHEN d.source = 'campaign' THEN d.campaign_id WHEN d.source = 'sequence_step' THEN e.sequence_id END AS source_id,
        CASE WHEN d.source = 'sequence_step' THEN coalesce(m.step_id, '') ELSE '' END AS step_id
    FROM delivery d
    LEFT JOIN api_message m ON m.id = d.id AND d.source = 'sequence_step'
    LEFT JOIN enrolment e ON e.id = m.enrolment_id
    WHERE d.organisation_id = $1)";

/// The raw answer for `report_since` (a = openers, b = clickers), sorted; zero rows left out.
pub async fn since<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<KeyedRow>> {
    let sql = format!(
        "WITH {SOURCES},
         firsts AS (
            SELECT DISTINCT ON (g.delivery_id, g.activity) g.delivery_id, g.activity, g.occurred_at
            FROM engagement_event g
            WHERE g.organisation_id = $1 AND g.delivery_id IS NOT NULL AND NOT g.machine AND g.activity IN ('opened', 'clicked')
            ORDER BY g.delivery_id, g.activity, g.occurred_at)
         SELECT s.source_kind, coalesce(s.source_id, '00000000-0000-0000-0000-000000000000') AS source_id, s.step_id,
            least(720, greatest(0, floor(extract(epoch FROM (f.occurred_at - s.accepted_at)) / 3600)))::int AS key,
            count(*) FILTER (WHERE f.activity = 'opened') AS a, count(*) FILTER (WHERE f.activity = 'clicked') AS b,
            0::int8 AS c
         FROM firsts f JOIN src s ON s.id = f.delivery_id
         WHERE s.accepted_at IS NOT NULL
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    );
    Ok(db::all_as(conn, &sql, [org.into()]).await?)
}

/// The raw answer for `report_link` (a = human clicks, b = human clickers, c = machine clicks).
pub async fn links<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<KeyedRow>> {
    let sql = format!(
        "WITH {SOURCES}
         SELECT coalesce(s.source_kind, 1::int2) AS source_kind,
            coalesce(CASE WHEN s.id IS NULL THEN g.campaign_id ELSE s.source_id END, '00000000-0000-0000-0000-000000000000') AS source_id,
            coalesce(s.step_id, '') AS step_id, g.link_position AS key,
            count(*) FILTER (WHERE NOT g.machine) AS a,
            count(DISTINCT g.delivery_id) FILTER (WHERE NOT g.machine) AS b,
            count(*) FILTER (WHERE g.machine) AS c
         FROM engagement_event g LEFT JOIN src s ON s.id = g.delivery_id
         WHERE g.organisation_id = $1 AND g.delivery_id IS NOT NULL AND g.activity = 'clicked'
           AND g.link_position BETWEEN 0 AND 199
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    );
    Ok(db::all_as(conn, &sql, [org.into()]).await?)
}

/// What the rollup holds in `report_since` and `report_link`, in [`KeyedRow`]s, zero rows left out.
pub async fn rolled_up_since_and_links<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
) -> ServiceResult<(Vec<KeyedRow>, Vec<KeyedRow>)> {
    let since = db::all_as(
        conn,
        "SELECT source_kind, source_id, step_id, hours AS key, human_openers AS a, human_clickers AS b, 0::int8 AS c
         FROM report_since WHERE organisation_id = $1 AND (human_openers <> 0 OR human_clickers <> 0)
         ORDER BY 1, 2, 3, 4",
        [org.into()],
    )
    .await?;
    let links = db::all_as(
        conn,
        "SELECT source_kind, source_id, step_id, position AS key, human_clicks AS a, human_clickers AS b, machine_clicks AS c
         FROM report_link WHERE organisation_id = $1 AND (human_clicks <> 0 OR human_clickers <> 0 OR machine_clicks <> 0)
         ORDER BY 1, 2, 3, 4",
        [org.into()],
    )
    .await?;
    Ok((since, links))
}

/// One breakdown row of a source and local day, as `report_split` holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct SplitRow {
    pub day: chrono::NaiveDate,
    pub source_kind: i16,
    pub source_id: Uuid,
    pub step_id: String,
    pub dim: i16,
    pub code: i16,
    pub part_id: Uuid,
    pub sent: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub human_opens: i64,
    pub human_openers: i64,
    pub human_clickers: i64,
    pub unsubscribes: i64,
}

const SPLIT_COLS: &str = "sent, delivered, bounced, human_opens, human_openers, human_clickers, unsubscribes";

/// The raw answer for `report_split` (rows with a figure only), sorted: outcomes by the
/// delivery's provider family, TLS version (delivered only) and audience part; every human open
/// by provider, client and part; each delivery's first human open, click and unsubscribe by
/// provider and part, the first open by its client too (of two at the same instant, the smaller
/// client code).
pub async fn splits<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<SplitRow>> {
    let nil = "'00000000-0000-0000-0000-000000000000'::uuid";
    let sql = format!(
        "WITH tz AS (SELECT time_zone AS z FROM organisation WHERE id = $1),
         {SOURCES},
         outcomes AS (
            SELECT (coalesce(d.accepted_at, d.recorded_at, d.updated_at) AT TIME ZONE (SELECT z FROM tz))::date AS day,
                s.source_kind, s.source_id, s.step_id, d.domain_family AS family, d.tls_version AS tls, NULL::int2 AS client,
                d.audience_kind, d.audience_id, d.state = 'sent' AS by_tls, false AS by_client,
                1 AS sent, (d.state = 'sent')::int AS delivered, (d.state = 'bounced')::int AS bounced,
                0 AS human_opens, 0 AS human_openers, 0 AS human_clickers, 0 AS unsubscribes
            FROM delivery d JOIN src s ON s.id = d.id
            WHERE d.organisation_id = $1 AND d.state IN ('sent', 'bounced', 'failed')),
         ev AS (
            SELECT g.*, (g.occurred_at AT TIME ZONE (SELECT z FROM tz))::date AS day,
                coalesce(s.source_kind, 1::int2) AS source_kind,
                CASE WHEN s.id IS NULL THEN g.campaign_id ELSE s.source_id END AS source_id,
                coalesce(s.step_id, '') AS step_id, d.domain_family AS family, d.audience_kind, d.audience_id,
                CASE WHEN g.activity = 'opened' AND NOT g.machine THEN 1
                     WHEN g.activity = 'clicked' AND NOT g.machine THEN 3 WHEN g.activity = 'unsubscribed' THEN 4 END AS fk
            FROM engagement_event g LEFT JOIN src s ON s.id = g.delivery_id LEFT JOIN delivery d ON d.id = g.delivery_id
            WHERE g.organisation_id = $1 AND g.delivery_id IS NOT NULL AND g.activity IN ('opened', 'clicked', 'unsubscribed')),
         opens AS (
            SELECT day, source_kind, source_id, step_id, family, NULL::int2, client, audience_kind, audience_id, false, true,
                0, 0, 0, 1, 0, 0, 0
            FROM ev WHERE fk = 1),
         firsts AS (
            SELECT day, source_kind, source_id, step_id, family, NULL::int2, CASE WHEN fk = 1 THEN client END,
                audience_kind, audience_id, false, fk = 1, 0, 0, 0, 0, (fk = 1)::int, (fk = 3)::int, (fk = 4)::int
            FROM (SELECT DISTINCT ON (delivery_id, fk) * FROM ev WHERE fk IS NOT NULL
                  ORDER BY delivery_id, fk, occurred_at, coalesce(client, 0)) f),
         facts AS (SELECT * FROM outcomes UNION ALL SELECT * FROM opens UNION ALL SELECT * FROM firsts)
         SELECT f.day, f.source_kind, coalesce(f.source_id, {nil}) AS source_id, f.step_id, x.dim, x.code, x.part_id,
            {sums}
         FROM facts f
         CROSS JOIN LATERAL (VALUES
            (1::int2, coalesce(f.family, 0)::int2, {nil}, true),
            (3::int2, coalesce(f.tls, 0)::int2, {nil}, f.by_tls),
            (2::int2, coalesce(f.client, 0)::int2, {nil}, f.by_client),
            (coalesce(f.audience_kind, 4)::int2, 0::int2, f.audience_id, f.audience_id IS NOT NULL)
         ) AS x (dim, code, part_id, keep)
         WHERE x.keep
         GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING {having}
         ORDER BY 1, 2, 3, 4, 5, 6, 7",
        sums = SPLIT_COLS.split(", ").map(|c| format!("sum(f.{c})::int8 AS {c}")).collect::<Vec<_>>().join(", "),
        having = SPLIT_COLS.split(", ").map(|c| format!("sum(f.{c}) <> 0")).collect::<Vec<_>>().join(" OR "),
    );
    Ok(db::all_as(conn, &sql, [org.into()]).await?)
}

/// What the rollup holds in `report_split`, in [`SplitRow`]s, zero rows left out.
pub async fn rolled_up_splits<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<Vec<SplitRow>> {
    Ok(db::all_as(
        conn,
        &format!(
            "SELECT day, source_kind, source_id, step_id, dim, code, part_id, {SPLIT_COLS} FROM report_split
             WHERE organisation_id = $1 AND ({}) ORDER BY 1, 2, 3, 4, 5, 6, 7",
            nonzero(SPLIT_COLS)
        ),
        [org.into()],
    )
    .await?)
}
