//! Evaluates a segment over an organisation's contacts: the SQL prefilter narrows the rows, then
//! PHI conditions are decided after decryption, page by page (keyset pagination on the contact
//! id), on all cores, decrypting lazily (a column is opened only when a condition needs it).
//!
//! Invariants: plaintext never leaves the worker that opened it (only matching ids come back);
//! a tampered or misplaced value fails the whole evaluation (fail closed); the leaf numbering is
//! the pre-order numbering of `domain::segments::evaluate_with`.

use super::sql::{Param, Plan, compile};
use crate::contacts::record::{self, KeySet};
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::contacts::{CustomField, FieldValue, parse_date};
use domain::ids::OrganisationId;
use domain::segments::{Condition, EventFact, Node, SegmentField, evaluate_with, event_matches};
use futures::stream::{FuturesOrdered, StreamExt};
use sea_orm::sqlx::{self, Postgres, Row, postgres::PgArguments, query::Query};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;

pub const PAGE: i64 = 4096;

use crate::db::pool;
use crate::db::sqlx_err;

pub(crate) fn bind<'q>(mut q: Query<'q, Postgres, PgArguments>, params: &[Param]) -> Query<'q, Postgres, PgArguments> {
    for p in params {
        q = match p.clone() {
            Param::Text(v) => q.bind(v),
            Param::Float(v) => q.bind(v),
            Param::Int(v) => q.bind(v),
            Param::Bool(v) => q.bind(v),
            Param::Date(v) => q.bind(v),
            Param::Time(v) => q.bind(v),
            Param::Uuid(v) => q.bind(v),
            Param::TextArray(v) => q.bind(v),
        };
    }
    q
}

/// What a scan did (for the benchmark and the logs; no values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows that passed the SQL prefilter and were evaluated in memory.
    pub scanned: u64,
    pub matched: u64,
    /// Sealed values opened.
    pub decrypted: u64,
}

struct Ctx {
    org: OrganisationId,
    root: Node,
    plan: Plan,
    catalogue: Vec<CustomField>,
    now: DateTime<Utc>,
    decrypted: AtomicU64,
}

struct PageRow {
    id: Uuid,
    sealed: Vec<Option<Vec<u8>>>,
    leaves: Vec<Option<bool>>,
}

enum Opened {
    Value(Option<FieldValue>),
    Attrs(BTreeMap<String, FieldValue>),
}

fn open_column(
    ctx: &Ctx,
    keys: &KeySet,
    column: &'static str,
    id: Uuid,
    bytes: Option<&[u8]>,
) -> ServiceResult<Opened> {
    let Some(bytes) = bytes else {
        return Ok(if column == "phi_attrs" { Opened::Attrs(BTreeMap::new()) } else { Opened::Value(None) });
    };
    ctx.decrypted.fetch_add(1, Ordering::Relaxed);
    let plain = record::open_one(keys, ctx.org, column, id, bytes)?;
    match column {
        "phi_attrs" => {
            let json: serde_json::Value =
                serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("sealed fields are malformed"))?;
            Ok(Opened::Attrs(record::attrs_from_json(&json, &ctx.catalogue)))
        }
        _ => {
            let text = std::str::from_utf8(&plain).map_err(|_| ServiceError::internal("sealed text is not UTF-8"))?;
            Ok(Opened::Value(Some(if column == "date_of_birth" {
                FieldValue::Date(parse_date(text).ok_or_else(|| ServiceError::internal("sealed date is malformed"))?)
            } else {
                FieldValue::Text(text.to_string())
            })))
        }
    }
}

/// Decide one page in memory; returns the matching ids in page order.
fn eval_page(
    ctx: &Ctx,
    keys: &KeySet,
    rows: &[PageRow],
    events: &HashMap<Uuid, Vec<EventFact>>,
) -> ServiceResult<Vec<Uuid>> {
    let today = ctx.now.date_naive();
    let mut out = Vec::new();
    let no_events = Vec::new();
    for row in rows {
        let mut opened: Vec<Option<Opened>> = (0..ctx.plan.sealed_columns.len()).map(|_| None).collect();
        let mut failure: Option<ServiceError> = None;
        let matched = evaluate_with(&ctx.root, &mut |i, cond| {
            if let Some(Some(b)) = row.leaves.get(i) {
                return *b;
            }
            if failure.is_some() {
                return false;
            }
            match cond {
                Condition::Field { field, test } => {
                    let column = super::sql::sealed_column(field);
                    let Some(ci) = ctx.plan.sealed_columns.iter().position(|c| *c == column) else {
                        return false;
                    };
                    if opened[ci].is_none() {
                        match open_column(ctx, keys, column, row.id, row.sealed[ci].as_deref()) {
                            Ok(o) => opened[ci] = Some(o),
                            Err(e) => {
                                failure = Some(e);
                                return false;
                            }
                        }
                    }
                    let value = match &opened[ci] {
                        Some(Opened::Value(v)) => v.as_ref(),
                        Some(Opened::Attrs(m)) => m.get(field),
                        None => None,
                    };
                    test.matches(value, today)
                }
                Condition::Event { event_type, within_days, properties } => event_matches(
                    event_type,
                    *within_days,
                    properties,
                    events.get(&row.id).unwrap_or(&no_events).iter(),
                    ctx.now,
                ),
                _ => false,
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if matched {
            out.push(row.id);
        }
    }
    Ok(out)
}

fn key_id(b: &[u8]) -> Option<Uuid> {
    (b.len() > 17).then(|| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[1..17]);
        Uuid::from_bytes(id)
    })
}

async fn load_events(
    svc: &Services,
    ctx: &Ctx,
    ids: &[Uuid],
) -> ServiceResult<(Vec<(Uuid, Uuid, String, Option<Vec<u8>>, DateTime<Utc>)>, Vec<Uuid>)> {
    let rows = sqlx::query(
        "SELECT id, contact_id, event_type, properties, occurred_at FROM patient_event
         WHERE organisation_id = $1 AND contact_id = ANY($2) AND event_type = ANY($3)",
    )
    .bind(ctx.org.0)
    .bind(ids)
    .bind(&ctx.plan.event_types)
    .fetch_all(&pool(svc.db()))
    .await
    .map_err(sqlx_err)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut key_ids = Vec::new();
    for r in rows {
        let props: Option<Vec<u8>> = r.try_get(3).map_err(sqlx_err)?;
        if let Some(k) = props.as_deref().and_then(key_id) {
            key_ids.push(k);
        }
        out.push((
            r.try_get(0).map_err(sqlx_err)?,
            r.try_get(1).map_err(sqlx_err)?,
            r.try_get(2).map_err(sqlx_err)?,
            props,
            r.try_get(4).map_err(sqlx_err)?,
        ));
    }
    Ok((out, key_ids))
}

/// Scan the organisation's contacts for a validated tree, calling `sink` with each page's
/// matching ids (ascending contact id) until it returns false.
pub async fn scan(
    svc: &Services,
    org: OrganisationId,
    root: &Node,
    fields: &[SegmentField],
    catalogue: Vec<CustomField>,
    now: DateTime<Utc>,
    sink: impl FnMut(Vec<Uuid>) -> bool,
) -> ServiceResult<ScanStats> {
    scan_where(svc, org, root, fields, catalogue, now, None, sink).await
}

/// Does one contact match a validated tree (a sequence's branch on the contact)? The same
/// evaluation as a segment's, over that contact's row only.
pub async fn matches_contact(
    svc: &Services,
    org: OrganisationId,
    root: &Node,
    fields: &[SegmentField],
    catalogue: Vec<CustomField>,
    now: DateTime<Utc>,
    contact: Uuid,
) -> ServiceResult<bool> {
    let mut found = false;
    scan_where(svc, org, root, fields, catalogue, now, Some(contact), |ids| {
        found |= ids.contains(&contact);
        false
    })
    .await?;
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
async fn scan_where(
    svc: &Services,
    org: OrganisationId,
    root: &Node,
    fields: &[SegmentField],
    catalogue: Vec<CustomField>,
    now: DateTime<Utc>,
    only: Option<Uuid>,
    mut sink: impl FnMut(Vec<Uuid>) -> bool,
) -> ServiceResult<ScanStats> {
    let plan = compile(root, fields, org.0, now);
    let cols: Vec<String> = plan.sealed_columns.iter().map(|c| format!("c.{c}")).collect();
    let leaves: Vec<String> = plan
        .leaf_sql
        .iter()
        .map(|l| match l {
            Some(sql) if !plan.exact => sql.clone(),
            _ => "NULL::boolean".into(),
        })
        .collect();
    let select: Vec<String> = std::iter::once("c.id".to_string()).chain(cols).chain(leaves).collect();
    let n = plan.params.len();
    let only_sql = if only.is_some() { format!(" AND c.id = ${}", n + 3) } else { String::new() };
    let sql = format!(
        "SELECT {} FROM contact c WHERE c.organisation_id = $1 AND c.id > ${}{only_sql} AND {} ORDER BY c.id LIMIT ${}",
        select.join(", "),
        n + 1,
        plan.prefilter,
        n + 2
    );
    let nsealed = plan.sealed_columns.len();
    let nleaves = plan.leaf_sql.len();
    let exact = plan.exact;
    let ctx = Arc::new(Ctx { org, root: root.clone(), plan, catalogue, now, decrypted: AtomicU64::new(0) });
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = pool(svc.db());
    let mut stats = ScanStats::default();
    let mut after = Uuid::nil();
    let mut inflight = FuturesOrdered::new();
    let mut done = false;
    let mut stop = false;
    while !done || !inflight.is_empty() {
        if !done && !stop && inflight.len() < parallel {
            let mut params = ctx.plan.params.clone();
            params.push(Param::Uuid(after));
            params.push(Param::Int(PAGE as i32));
            if let Some(c) = only {
                params.push(Param::Uuid(c));
            }
            let rows = bind(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), &params)
                .fetch_all(&pool)
                .await
                .map_err(sqlx_err)?;
            if (rows.len() as i64) < PAGE {
                done = true;
            }
            let mut page = Vec::with_capacity(rows.len());
            let mut key_ids = Vec::new();
            for r in &rows {
                let id: Uuid = r.try_get(0).map_err(sqlx_err)?;
                let mut sealed = Vec::with_capacity(nsealed);
                for i in 0..nsealed {
                    let b: Option<Vec<u8>> = r.try_get(1 + i).map_err(sqlx_err)?;
                    if let Some(k) = b.as_deref().and_then(key_id)
                        && !key_ids.contains(&k)
                    {
                        key_ids.push(k);
                    }
                    sealed.push(b);
                }
                let mut lv = Vec::with_capacity(nleaves);
                for i in 0..nleaves {
                    lv.push(r.try_get::<Option<bool>, _>(1 + nsealed + i).map_err(sqlx_err)?);
                }
                page.push(PageRow { id, sealed, leaves: lv });
            }
            drop(rows);
            if let Some(last) = page.last() {
                after = last.id;
            }
            stats.scanned += page.len() as u64;
            if exact {
                let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
                stats.matched += ids.len() as u64;
                if !ids.is_empty() && !sink(ids) {
                    stop = true;
                    done = true;
                }
                continue;
            }
            let (raw_events, event_keys) = if ctx.plan.event_types.is_empty() || page.is_empty() {
                (vec![], vec![])
            } else {
                load_events(svc, &ctx, &page.iter().map(|r| r.id).collect::<Vec<_>>()).await?
            };
            key_ids.extend(event_keys);
            let keys = svc.keys().load_keys(svc.db(), key_ids).await?;
            let ctx2 = ctx.clone();
            inflight.push_back(tokio::task::spawn_blocking(move || -> ServiceResult<Vec<Uuid>> {
                let mut events: HashMap<Uuid, Vec<EventFact>> = HashMap::new();
                for (id, contact, event_type, props, at) in raw_events {
                    let properties = match props {
                        Some(b) => {
                            ctx2.decrypted.fetch_add(1, Ordering::Relaxed);
                            crate::events::open_properties(&keys, ctx2.org, id, &b)?
                        }
                        None => BTreeMap::new(),
                    };
                    events.entry(contact).or_default().push(EventFact { event_type, at, properties });
                }
                eval_page(&ctx2, &keys, &page, &events)
            }));
            continue;
        }
        if let Some(result) = inflight.next().await {
            let ids = result.map_err(|_| ServiceError::internal("segment evaluation task failed"))??;
            if stop {
                continue;
            }
            stats.matched += ids.len() as u64;
            if !ids.is_empty() && !sink(ids) {
                stop = true;
                done = true;
            }
        }
    }
    stats.decrypted = ctx.decrypted.load(Ordering::Relaxed);
    Ok(stats)
}

/// Count matches. A tree without PHI is counted by PostgreSQL alone.
pub async fn count(
    svc: &Services,
    org: OrganisationId,
    root: &Node,
    fields: &[SegmentField],
    catalogue: Vec<CustomField>,
    now: DateTime<Utc>,
) -> ServiceResult<(u64, ScanStats)> {
    let plan = compile(root, fields, org.0, now);
    if plan.exact {
        let sql = format!("SELECT count(*) FROM contact c WHERE c.organisation_id = $1 AND {}", plan.prefilter);
        let n: i64 = bind(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), &plan.params)
            .fetch_one(&pool(svc.db()))
            .await
            .map_err(sqlx_err)?
            .try_get(0)
            .map_err(sqlx_err)?;
        let n = n.max(0) as u64;
        return Ok((n, ScanStats { scanned: 0, matched: n, decrypted: 0 }));
    }
    let stats = scan(svc, org, root, fields, catalogue, now, |_| true).await?;
    Ok((stats.matched, stats))
}
