//! Analyst reports across campaigns and sequence emails (issue 23): the overview of a date range
//! against its previous period, the comparison of every campaign and sequence email, their CSV
//! and SVG exports, and the organisation's report time zone.
//!
//! Invariants:
//! - Reports read the hourly rollups (`rollup`), never raw events; [`raw`] is the reference the
//!   tests hold them to.
//! - Everyone who may read reports (analysts included) gets figures only; `domain::reports`
//!   applies the small-cell rule for readers who may not read contacts. Nothing here reads a
//!   contact, an address or a contact id, so nothing here is a PHI read to audit; exports are
//!   audited as exports.

pub mod charts;
pub mod demo;
pub mod digest;
pub mod partitions;
pub mod raw;
pub mod rollup;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{NaiveDate, NaiveDateTime};
use domain::Permission;
use domain::audit::AuditAction;
use domain::breakdowns::{Breakdown, Dimension, SplitCounts};
use domain::disclosure::Reader;
use domain::reports::{
    Bucket, Comparison, ComparisonInput, Curves, Drill, DrillCounts, Elsewhere, Overview, OverviewCounts, ReportRange,
    ReportSetup, SINCE_BUCKETS, Shown, SourceKind, SourceRef, Totals, since_bucket,
};
use domain::sequences::SequenceDefinition;
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use serde_json::Value as Json;
use std::collections::HashMap;
use uuid::Uuid;

fn reader(actor: &Actor) -> Reader {
    Reader::may_read_contacts(actor.can(Permission::ContactsRead))
}

fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A date range from user input (local dates, "YYYY-MM-DD"), refused with the reason next to
/// the range fields.
pub fn parse_range(from: &str, to: &str) -> ServiceResult<ReportRange> {
    if from.len() > 32 || to.len() > 32 {
        return Err(ServiceError::invalid("range", "must be two dates (YYYY-MM-DD)"));
    }
    ReportRange::parse(from, to).map_err(|reason| ServiceError::invalid("range", reason))
}

/// The organisation's report time zone.
pub async fn time_zone<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<String> {
    db::scalar::<String, _>(conn, "SELECT time_zone FROM organisation WHERE id = $1", [org.into()])
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Today's date in the organisation's report time zone.
pub async fn today(svc: &Services, org: Uuid) -> ServiceResult<NaiveDate> {
    let tz: chrono_tz::Tz = time_zone(svc.db(), org).await?.parse().unwrap_or(chrono_tz::UTC);
    Ok(svc.clock().now().with_timezone(&tz).date_naive())
}

/// What the reports page needs before it asks for figures: the zone and today's date in it.
pub async fn context(svc: &Services, actor: &Actor) -> ServiceResult<ReportSetup> {
    actor.require(Permission::ReportsRead)?;
    let org = actor.organisation_id.0;
    Ok(ReportSetup {
        time_zone: time_zone(svc.db(), org).await?,
        today: today(svc, org).await?,
        may_change_time_zone: actor.can(Permission::SettingsManage),
    })
}

/// Change the report time zone (admins). The rollups are rebuilt in the new zone by the next
/// rollup run; until then the figures say they are catching up.
pub async fn set_time_zone(svc: &Services, actor: &Actor, zone: &str) -> ServiceResult<()> {
    actor.require(Permission::SettingsManage)?;
    let zone = zone.trim();
    let bad = || ServiceError::invalid("time_zone", "must be a time zone name such as America/New_York");
    if !crate::contacts::record::valid_time_zone(zone) {
        return Err(bad());
    }
    let org = actor.organisation_id.0;
    let txn = svc.db().begin().await?;
    // PostgreSQL buckets the hours: it must know the zone too.
    if db::scalar::<i64, _>(&txn, "SELECT count(*) FROM pg_timezone_names WHERE name = $1", [zone.into()])
        .await?
        .unwrap_or(0)
        == 0
    {
        return Err(bad());
    }
    let old = time_zone(&txn, org).await?;
    if old == zone {
        return Ok(());
    }
    db::exec(&txn, "UPDATE organisation SET time_zone = $2 WHERE id = $1", [org.into(), zone.into()]).await?;
    rollup::request_rebuild(&txn, org).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ReportTimeZoneChanged)
            .target("organisation", org)
            .detail("from", old)
            .detail("to", zone),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct SumRow {
    bucket: Option<NaiveDateTime>,
    source_kind: Option<i16>,
    source_id: Option<Uuid>,
    step_id: Option<String>,
    sent: i64,
    delivered: i64,
    bounced: i64,
    failed: i64,
    human_openers: i64,
    machine_opens: i64,
    machine_openers: i64,
    human_clicks: i64,
    human_clickers: i64,
    machine_clicks: i64,
    unsubscribes: i64,
    complaints: i64,
    bounced_hard: i64,
    bounced_soft: i64,
    bounced_policy: i64,
    deferrals: i64,
    suppressed_unsubscribed: i64,
    suppressed_hard_bounce: i64,
    suppressed_manual: i64,
}

impl SumRow {
    fn totals(&self) -> Totals {
        Totals {
            sent: n(self.sent),
            delivered: n(self.delivered),
            bounced: n(self.bounced),
            failed: n(self.failed),
            human_openers: n(self.human_openers),
            machine_opens: n(self.machine_opens),
            machine_openers: n(self.machine_openers),
            human_clicks: n(self.human_clicks),
            human_clickers: n(self.human_clickers),
            machine_clicks: n(self.machine_clicks),
            unsubscribes: n(self.unsubscribes),
            complaints: n(self.complaints),
            bounced_hard: n(self.bounced_hard),
            bounced_soft: n(self.bounced_soft),
            bounced_policy: n(self.bounced_policy),
            deferrals: n(self.deferrals),
            suppressed_unsubscribed: n(self.suppressed_unsubscribed),
            suppressed_hard_bounce: n(self.suppressed_hard_bounce),
            suppressed_manual: n(self.suppressed_manual),
        }
    }
}

const SUMS: &str = "coalesce(sum(sent), 0)::int8 AS sent, coalesce(sum(delivered), 0)::int8 AS delivered,
    coalesce(sum(bounced), 0)::int8 AS bounced, coalesce(sum(failed), 0)::int8 AS failed,
    coalesce(sum(human_openers), 0)::int8 AS human_openers, coalesce(sum(machine_opens), 0)::int8 AS machine_opens,
    coalesce(sum(machine_openers), 0)::int8 AS machine_openers, coalesce(sum(human_clicks), 0)::int8 AS human_clicks,
    coalesce(sum(human_clickers), 0)::int8 AS human_clickers, coalesce(sum(machine_clicks), 0)::int8 AS machine_clicks,
    coalesce(sum(unsubscribes), 0)::int8 AS unsubscribes, coalesce(sum(bounced_hard), 0)::int8 AS bounced_hard,
    coalesce(sum(bounced_soft), 0)::int8 AS bounced_soft, coalesce(sum(bounced_policy), 0)::int8 AS bounced_policy,
    coalesce(sum(deferrals), 0)::int8 AS deferrals";

/// The organisation's totals per bucket of `range` (local hours or days), from the rollup; with
/// `source`, only that campaign's or sequence email's.
pub async fn org_buckets<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    range: ReportRange,
    source: Option<&SourceRef>,
) -> ServiceResult<HashMap<NaiveDateTime, Totals>> {
    let (start, end) = range.hours();
    let unit = match range.bucket() {
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    };
    let mut args: Vec<sea_orm::Value> = vec![org.into(), start.into(), end.into()];
    let sql = match source {
        None => format!(
            "SELECT date_trunc('{unit}', hour) AS bucket, NULL::int2 AS source_kind, NULL::uuid AS source_id,
                NULL::text AS step_id, {SUMS}, coalesce(sum(suppressed_complaint), 0)::int8 AS complaints,
                coalesce(sum(suppressed_unsubscribed), 0)::int8 AS suppressed_unsubscribed,
                coalesce(sum(suppressed_hard_bounce), 0)::int8 AS suppressed_hard_bounce,
                coalesce(sum(suppressed_manual), 0)::int8 AS suppressed_manual
             FROM report_org_hour WHERE organisation_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1"
        ),
        Some(s) => {
            args.extend([s.kind.code().into(), s.id.into(), s.step_id.clone().into()]);
            format!(
                "SELECT date_trunc('{unit}', hour) AS bucket, NULL::int2 AS source_kind, NULL::uuid AS source_id,
                    NULL::text AS step_id, {SUMS}, 0::int8 AS complaints, 0::int8 AS suppressed_unsubscribed,
                    0::int8 AS suppressed_hard_bounce, 0::int8 AS suppressed_manual
                 FROM report_hour WHERE organisation_id = $1 AND hour >= $2 AND hour < $3
                   AND source_kind = $4 AND source_id = $5 AND step_id = $6 GROUP BY 1"
            )
        }
    };
    let rows: Vec<SumRow> = db::all_as(conn, &sql, args).await?;
    Ok(rows.iter().filter_map(|r| Some((r.bucket?, r.totals()))).collect())
}

/// Whether facts of the organisation are still waiting for the rollup.
async fn catching_up<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<bool> {
    Ok(db::scalar::<bool, _>(
        conn,
        "SELECT EXISTS (SELECT 1 FROM report_pending WHERE organisation_id = $1)
             OR EXISTS (SELECT 1 FROM organisation WHERE id = $1 AND report_rebuild_requested_at IS NOT NULL)",
        [org.into()],
    )
    .await?
    .unwrap_or(false))
}

fn sum_of<'a>(it: impl Iterator<Item = &'a Totals>) -> Totals {
    let mut t = Totals::default();
    for x in it {
        t.add(x);
    }
    t
}

/// The overview counts of `range` for an organisation, or one of its sources (before disclosure
/// control).
pub async fn overview_counts<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    range: ReportRange,
    source: Option<&SourceRef>,
) -> ServiceResult<OverviewCounts> {
    let cur = org_buckets(conn, org, range, source).await?;
    let prev = org_buckets(conn, org, range.previous(), source).await?;
    let buckets: Vec<Totals> = range.buckets().iter().map(|b| cur.get(b).copied().unwrap_or_default()).collect();
    Ok(OverviewCounts { current: sum_of(buckets.iter()), previous: sum_of(prev.values()), buckets })
}

/// A breakdown's rows over `range` (local days) for the organisation or one source, before
/// disclosure control; a segment's or list's row named (a deleted one with an empty name).
pub async fn split_counts<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    range: ReportRange,
    source: Option<&SourceRef>,
    dim: Dimension,
) -> ServiceResult<Vec<SplitCounts>> {
    #[derive(FromQueryResult)]
    struct Row {
        code: i16,
        part_id: Uuid,
        name: Option<String>,
        sent: i64,
        delivered: i64,
        bounced: i64,
        human_opens: i64,
        human_openers: i64,
        human_clickers: i64,
        unsubscribes: i64,
    }
    let mut args: Vec<sea_orm::Value> = vec![org.into(), dim.code().into(), range.from.into(), range.to.into()];
    let filter = match source {
        Some(s) => {
            args.extend([s.kind.code().into(), s.id.into(), s.step_id.clone().into()]);
            "AND r.source_kind = $5 AND r.source_id = $6 AND r.step_id = $7"
        }
        None => "",
    };
    let name = match dim {
        Dimension::Segment => "(SELECT g.name FROM segment g WHERE g.id = r.part_id AND g.organisation_id = $1)",
        Dimension::List => "(SELECT l.name FROM contact_list l WHERE l.id = r.part_id AND l.organisation_id = $1)",
        _ => "NULL::text",
    };
    let rows: Vec<Row> = db::all_as(
        conn,
        &format!(
            "SELECT r.code, r.part_id, {name} AS name, sum(r.sent)::int8 AS sent, sum(r.delivered)::int8 AS delivered,
                sum(r.bounced)::int8 AS bounced, sum(r.human_opens)::int8 AS human_opens,
                sum(r.human_openers)::int8 AS human_openers, sum(r.human_clickers)::int8 AS human_clickers,
                sum(r.unsubscribes)::int8 AS unsubscribes
             FROM report_split r
             WHERE r.organisation_id = $1 AND r.dim = $2 AND r.day BETWEEN $3 AND $4 {filter}
             GROUP BY 1, 2
             HAVING sum(r.sent) <> 0 OR sum(r.human_opens) <> 0 OR sum(r.human_openers) <> 0
                 OR sum(r.human_clickers) <> 0 OR sum(r.unsubscribes) <> 0
             ORDER BY 1, 2"
        ),
        args,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SplitCounts {
            code: r.code,
            part: (!r.part_id.is_nil()).then_some(r.part_id),
            name: r.name.unwrap_or_default(),
            sent: n(r.sent),
            delivered: n(r.delivered),
            bounced: n(r.bounced),
            human_opens: n(r.human_opens),
            human_openers: n(r.human_openers),
            human_clickers: n(r.human_clickers),
            unsubscribes: n(r.unsubscribes),
        })
        .collect())
}

/// The overview of `range` for its reader, with its chart.
/// The home page's headline: the overview of the last `days` days (today included) in the
/// report time zone, in one call so the page asks the server once.
pub async fn recent(svc: &Services, actor: &Actor, days: i64) -> ServiceResult<Overview> {
    actor.require(Permission::ReportsRead)?;
    let range = ReportRange::last_days(today(svc, actor.organisation_id.0).await?, days);
    overview(svc, actor, range).await
}

pub async fn overview(svc: &Services, actor: &Actor, range: ReportRange) -> ServiceResult<Overview> {
    actor.require(Permission::ReportsRead)?;
    let org = actor.organisation_id.0;
    let conn = svc.db();
    let counts = overview_counts(conn, org, range, None).await?;
    let mut o = Overview::build(reader(actor), range, time_zone(conn, org).await?, &counts);
    let hidden = Breakdown::hidden_totals(&o);
    for dim in [Dimension::Provider, Dimension::Tls] {
        let rows = split_counts(conn, org, range, None, dim).await?;
        let b = (!rows.is_empty()).then(|| Breakdown::build(reader(actor), dim, &counts.current, hidden, &rows));
        match dim {
            Dimension::Provider => o.deliverability.by_provider = b,
            _ => o.deliverability.by_tls = b,
        }
    }
    o.catching_up = catching_up(conn, org).await?;
    o.chart_svg = charts::overview_svg(&o);
    Ok(o)
}

/// Every source's totals in `range` (before disclosure control), by source.
pub async fn source_totals<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    range: ReportRange,
) -> ServiceResult<Vec<(SourceKind, Uuid, String, Totals)>> {
    // The range's local days (a source's hours summed by day: 24 times fewer rows to read).
    let rows: Vec<SumRow> = db::all_as(
        conn,
        &format!(
            "SELECT source_kind, source_id, step_id, NULL::timestamp AS bucket, {SUMS}, 0::int8 AS complaints,
                0::int8 AS suppressed_unsubscribed, 0::int8 AS suppressed_hard_bounce, 0::int8 AS suppressed_manual
             FROM report_source_day WHERE organisation_id = $1 AND day >= $2 AND day <= $3
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
        [org.into(), range.from.into(), range.to.into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let t = r.totals();
            Some((SourceKind::from_code(r.source_kind?)?, r.source_id?, r.step_id?, t))
        })
        .collect())
}

/// The comparison of every campaign and sequence email with figures in `range`.
pub async fn comparison(svc: &Services, actor: &Actor, range: ReportRange) -> ServiceResult<Comparison> {
    actor.require(Permission::ReportsRead)?;
    let org = actor.organisation_id.0;
    let conn = svc.db();
    let sources = source_totals(conn, org, range).await?;
    let total = sum_of(sources.iter().map(|s| &s.3));
    let names = source_names(conn, org, &sources).await?;
    let rows = sources
        .into_iter()
        .map(|(kind, id, step, totals)| {
            let (name, _) = names.of(kind, id, &step);
            let href = Some(SourceRef { kind, id, step_id: step.clone() }.href(&range));
            ComparisonInput {
                kind,
                id,
                step_id: (kind == SourceKind::SequenceEmail).then_some(step),
                name,
                href,
                totals,
            }
        })
        .collect();
    Ok(Comparison::build(reader(actor), range, time_zone(conn, org).await?, &total, rows))
}

#[derive(Default)]
struct Names {
    campaigns: HashMap<Uuid, String>,
    /// Sequence name and its live version's step names by step id.
    sequences: HashMap<Uuid, (String, HashMap<String, String>)>,
}

impl Names {
    /// A source's name and its own page (the campaign's, the sequence's).
    fn of(&self, kind: SourceKind, id: Uuid, step: &str) -> (String, Option<String>) {
        match kind {
            SourceKind::Campaign => (
                self.campaigns.get(&id).cloned().unwrap_or_else(|| "Deleted campaign".into()),
                Some(format!("/campaigns/{id}")),
            ),
            SourceKind::SequenceEmail => {
                let (seq, steps) =
                    self.sequences.get(&id).cloned().unwrap_or_else(|| ("Deleted sequence".into(), HashMap::new()));
                let step_name = steps.get(step).filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| step.to_string());
                (format!("{seq} · {step_name}"), Some(format!("/sequences/{id}")))
            }
            SourceKind::ApiMessage => ("Messages sent through the API".into(), None),
        }
    }
}

async fn source_names<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    sources: &[(SourceKind, Uuid, String, Totals)],
) -> ServiceResult<Names> {
    let ids = |k: SourceKind| -> Vec<Uuid> { sources.iter().filter(|s| s.0 == k).map(|s| s.1).collect() };
    let mut names = Names::default();
    #[derive(FromQueryResult)]
    struct Named {
        id: Uuid,
        name: String,
    }
    let campaigns: Vec<Named> = db::all_as(
        conn,
        "SELECT id, name FROM campaign WHERE organisation_id = $1 AND id = ANY($2)",
        [org.into(), ids(SourceKind::Campaign).into()],
    )
    .await?;
    names.campaigns = campaigns.into_iter().map(|c| (c.id, c.name)).collect();
    #[derive(FromQueryResult)]
    struct Seq {
        id: Uuid,
        name: String,
        definition: Option<Json>,
        draft: Json,
    }
    let seqs: Vec<Seq> = db::all_as(
        conn,
        "SELECT s.id, s.name, v.definition, s.draft FROM sequence s
         LEFT JOIN sequence_version v ON v.id = s.current_version_id
         WHERE s.organisation_id = $1 AND s.id = ANY($2)",
        [org.into(), ids(SourceKind::SequenceEmail).into()],
    )
    .await?;
    for s in seqs {
        let def: Option<SequenceDefinition> = serde_json::from_value(s.definition.unwrap_or(s.draft)).ok();
        let steps =
            def.map(|d| d.steps.into_iter().map(|st| (st.id.clone(), st.name.clone())).collect()).unwrap_or_default();
        names.sequences.insert(s.id, (s.name, steps));
    }
    Ok(names)
}

/// Record an export of report figures (what and which range; figures only).
pub async fn record_export(svc: &Services, actor: &Actor, what: &str, range: ReportRange) -> ServiceResult<()> {
    actor.require(Permission::ReportsRead)?;
    let txn = svc.db().begin().await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ReportsExported)
            .detail("report", what.to_string())
            .detail("from", range.from.to_string())
            .detail("to", range.to.to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The query of an export: the range (local dates) and, for a source's files, which source.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub step: String,
}

/// A report file to download.
pub struct Export {
    pub content_type: &'static str,
    pub filename: String,
    pub body: String,
}

/// A report export for its reader: `overview.csv`, `overview.svg` or `comparison.csv` of a range
/// (local dates). The same figures the page shows the same reader, small cells hidden alike;
/// audited as an export.
pub async fn export(svc: &Services, actor: &Actor, file: &str, q: &ExportQuery) -> ServiceResult<Export> {
    actor.require(Permission::ReportsRead)?;
    let range = parse_range(&q.from, &q.to)?;
    let name = |what: &str, ext: &str| format!("hermetic-{what}-{}-to-{}.{ext}", range.from, range.to);
    let x = match file {
        "overview.csv" => Export {
            content_type: "text/csv; charset=utf-8",
            filename: name("overview", "csv"),
            body: overview(svc, actor, range).await?.csv(),
        },
        "overview.svg" => Export {
            content_type: "image/svg+xml",
            filename: name("overview", "svg"),
            body: overview(svc, actor, range).await?.chart_svg,
        },
        "source.csv" | "source.svg" => {
            let kind = SourceRef::parse_kind(&q.kind).ok_or(ServiceError::NotFound)?;
            let id = Uuid::parse_str(&q.id).map_err(|_| ServiceError::NotFound)?;
            let d = drill(svc, actor, SourceRef { kind, id, step_id: q.step.clone() }, range).await?;
            if file == "source.csv" {
                Export { content_type: "text/csv; charset=utf-8", filename: name("source", "csv"), body: d.csv() }
            } else {
                Export { content_type: "image/svg+xml", filename: name("source", "svg"), body: d.overview.chart_svg }
            }
        }
        "comparison.csv" => Export {
            content_type: "text/csv; charset=utf-8",
            filename: name("comparison", "csv"),
            body: comparison(svc, actor, range).await?.csv(),
        },
        _ => return Err(ServiceError::NotFound),
    };
    record_export(svc, actor, file, range).await?;
    Ok(x)
}

/// Whether the source is the organisation's: a campaign or sequence of it, or its API messages.
async fn source_exists<C: ConnectionTrait>(conn: &C, org: Uuid, s: &SourceRef) -> ServiceResult<bool> {
    let sql = match s.kind {
        SourceKind::Campaign => "SELECT EXISTS (SELECT 1 FROM campaign WHERE organisation_id = $1 AND id = $2)",
        SourceKind::SequenceEmail => "SELECT EXISTS (SELECT 1 FROM sequence WHERE organisation_id = $1 AND id = $2)",
        SourceKind::ApiMessage => "SELECT $2::uuid = '00000000-0000-0000-0000-000000000000' AND $1::uuid IS NOT NULL",
    };
    Ok(db::scalar::<bool, _>(conn, sql, [org.into(), s.id.into()]).await?.unwrap_or(false))
}

/// How the comparison of `range` shows `source` to `reader` (None for readers who see every
/// figure, or when the source has no row there).
async fn as_compared<C: ConnectionTrait>(
    conn: &C,
    org: Uuid,
    reader: Reader,
    range: ReportRange,
    source: &SourceRef,
) -> ServiceResult<Option<Shown>> {
    if reader == Reader::Full {
        return Ok(None);
    }
    let sources = source_totals(conn, org, range).await?;
    let Some(at) = sources.iter().position(|(kind, id, step, _)| {
        *kind == source.kind && *id == source.id && step.as_str() == source.step_id.as_str()
    }) else {
        return Ok(None);
    };
    let total = sum_of(sources.iter().map(|s| &s.3));
    let rows: Vec<Totals> = sources.into_iter().map(|s| s.3).collect();
    let (_, shown) = domain::reports::compared(reader, &total, &rows);
    Ok(shown.into_iter().nth(at))
}

/// The drill-down of one campaign or sequence email over `range`.
pub async fn drill(svc: &Services, actor: &Actor, source: SourceRef, range: ReportRange) -> ServiceResult<Drill> {
    actor.require(Permission::ReportsRead)?;
    let org = actor.organisation_id.0;
    let conn = svc.db();
    if source.step_id.len() > 64 || !source_exists(conn, org, &source).await? {
        return Err(ServiceError::NotFound);
    }
    let key = || -> Vec<sea_orm::Value> {
        vec![org.into(), source.kind.code().into(), source.id.into(), source.step_id.clone().into()]
    };
    let mut c = DrillCounts { overview: overview_counts(conn, org, range, Some(&source)).await?, ..Default::default() };
    c.delivered_ever = db::scalar::<i64, _>(
        conn,
        "SELECT coalesce(sum(delivered), 0)::int8 FROM report_hour
         WHERE organisation_id = $1 AND source_kind = $2 AND source_id = $3 AND step_id = $4",
        key(),
    )
    .await?
    .map(n)
    .unwrap_or(0);
    #[derive(FromQueryResult)]
    struct Since {
        hours: i32,
        human_openers: i64,
        human_clickers: i64,
    }
    let since: Vec<Since> = db::all_as(
        conn,
        "SELECT hours, human_openers, human_clickers FROM report_since
         WHERE organisation_id = $1 AND source_kind = $2 AND source_id = $3 AND step_id = $4",
        key(),
    )
    .await?;
    for r in since {
        let b = since_bucket(r.hours);
        c.since_openers[b] += n(r.human_openers);
        c.since_clickers[b] += n(r.human_clickers);
    }
    #[derive(FromQueryResult)]
    struct Link {
        position: i32,
        url: Option<String>,
        human_clicks: i64,
        human_clickers: i64,
        machine_clicks: i64,
    }
    let url_of = match source.kind {
        SourceKind::Campaign => {
            "(SELECT url FROM campaign_link u WHERE u.campaign_id = $3 AND u.position = l.position)"
        }
        SourceKind::SequenceEmail => {
            "(SELECT u.url FROM api_message_link u JOIN api_message m ON m.id = u.message_id
              JOIN enrolment e ON e.id = m.enrolment_id
              WHERE e.sequence_id = $3 AND m.step_id = $4 AND u.position = l.position
              ORDER BY m.created_at DESC LIMIT 1)"
        }
        SourceKind::ApiMessage => "NULL::text",
    };
    let links: Vec<Link> = db::all_as(
        conn,
        &format!(
            "SELECT l.position, {url_of} AS url, l.human_clicks, l.human_clickers, l.machine_clicks FROM report_link l
             WHERE l.organisation_id = $1 AND l.source_kind = $2 AND l.source_id = $3 AND l.step_id = $4
             ORDER BY l.position LIMIT 200"
        ),
        key(),
    )
    .await?;
    c.links = links
        .into_iter()
        .map(|l| {
            let url = l.url.unwrap_or_else(|| format!("Link {}", l.position + 1));
            (l.position, url, n(l.human_clicks), n(l.human_clickers), n(l.machine_clicks))
        })
        .collect();
    #[derive(FromQueryResult)]
    struct Heat {
        day: i32,
        hour_of_day: i32,
        openers: i64,
    }
    let (start, end) = range.hours();
    let mut args = key();
    args.extend([start.into(), end.into()]);
    let heat: Vec<Heat> = db::all_as(
        conn,
        "SELECT (extract(isodow FROM hour)::int - 1) AS day, extract(hour FROM hour)::int AS hour_of_day,
            coalesce(sum(human_openers), 0)::int8 AS openers
         FROM report_hour WHERE organisation_id = $1 AND source_kind = $2 AND source_id = $3 AND step_id = $4
           AND hour >= $5 AND hour < $6 GROUP BY 1, 2",
        args,
    )
    .await?;
    for h in heat {
        if let (Ok(d), Ok(hr)) = (usize::try_from(h.day), usize::try_from(h.hour_of_day))
            && d < 7
            && hr < 24
        {
            c.heatmap[d][hr] = n(h.openers);
        }
    }
    let names = source_names(conn, org, &[(source.kind, source.id, source.step_id.clone(), Totals::default())]).await?;
    let (name, href) = names.of(source.kind, source.id, &source.step_id);
    let source_key = source.clone();
    // The comparison tables of the range and of the period before show this source's figures
    // too, some withheld there to protect another source's small ones: hidden here as well.
    let (current, previous) = futures::future::try_join(
        as_compared(conn, org, reader(actor), range, &source_key),
        as_compared(conn, org, reader(actor), range.previous(), &source_key),
    )
    .await?;
    c.elsewhere = Elsewhere { current, previous };
    let mut d = Drill::build(reader(actor), source, name, href, range, time_zone(conn, org).await?, &c);
    let hidden = Breakdown::hidden_totals(&d.overview);
    for dim in [Dimension::Provider, Dimension::Client, Dimension::Segment, Dimension::List] {
        let rows = split_counts(conn, org, range, Some(&source_key), dim).await?;
        if !rows.is_empty() {
            d.breakdowns.push(Breakdown::build(reader(actor), dim, &c.overview.current, hidden, &rows));
        }
    }
    d.overview.catching_up = catching_up(conn, org).await?;
    d.overview.chart_svg = charts::overview_svg(&d.overview);
    let labels: Vec<String> = SINCE_BUCKETS.iter().map(|(_, l)| (*l).to_string()).collect();
    d.since_svg = charts::curves_svg(&labels, &[(d.name.clone(), d.since.iter().map(|p| p.opened_share).collect())]);
    Ok(d)
}

/// Opens-since-send curves of up to eight sources, to overlay (cumulative share of delivered
/// messages opened by people, by time since the send).
pub async fn curves(svc: &Services, actor: &Actor, sources: Vec<SourceRef>) -> ServiceResult<Curves> {
    actor.require(Permission::ReportsRead)?;
    if sources.is_empty() || sources.len() > 8 {
        return Err(ServiceError::invalid("sources", "must be one to eight campaigns or sequence emails"));
    }
    let org = actor.organisation_id.0;
    let today = today(svc, org).await?;
    let range = ReportRange::last_days(today, 1);
    let mut lines = Vec::new();
    for s in sources {
        // The same figures and the same hiding as the source's drill-down.
        let d = drill(svc, actor, s, range).await?;
        lines.push((d.name, d.since.iter().map(|p| p.opened_share).collect()));
    }
    let labels: Vec<String> = SINCE_BUCKETS.iter().map(|(_, l)| (*l).to_string()).collect();
    let chart_svg = charts::curves_svg(&labels, &lines);
    Ok(Curves { labels, lines, chart_svg })
}
