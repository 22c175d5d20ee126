//! The contacts table: filters, sorting and keyset paging done by PostgreSQL, decrypting only the
//! page shown (an audited read).
//!
//! PHI is sealed (names, emails, dates of birth, PHI custom fields are ciphertext with random
//! nonces), so the database cannot order or filter by it, and decrypting every contact to sort one
//! page would turn each page view into a read of the whole organisation's PHI. The table therefore
//! sorts only by non-PHI columns (created, updated) and filters only by what is stored readable:
//! list membership and consent state (plus the exact email search through the blind index).

use super::lists::{CONSENT_JOIN, EFFECTIVE_STATUS};
use super::record::{self, Open, SealedContact};
use super::{PAGE_MAX, SEALED_COLS, bidx_key, email_bidx, keys_for};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{
    ConsentFilter, ConsentPurpose, ContactPage, ContactQuery, ContactRow, ContactSort, MemberStatus, RowConsent,
    RowList,
};
use sea_orm::{FromQueryResult, Value};
use std::collections::HashMap;
use uuid::Uuid;

fn parse_cursor(c: &str) -> ServiceResult<(DateTime<Utc>, Uuid)> {
    let bad = || ServiceError::invalid("page", "is not valid");
    let (t, id) = c.split_once('_').ok_or_else(bad)?;
    let micros: i64 = t.parse().map_err(|_| bad())?;
    Ok((DateTime::from_timestamp_micros(micros).ok_or_else(bad)?, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// Filters as SQL over `contact c` with bound parameters (`$1` is the organisation).
struct Filter {
    sql: String,
    values: Vec<Value>,
}

impl Filter {
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        format!("${}", self.values.len())
    }
}

/// One page of the contacts table for `query`. `total` counts every contact the filters match.
pub async fn page(
    svc: &Services,
    actor: &Actor,
    after: Option<String>,
    limit: u32,
    query: &ContactQuery,
) -> ServiceResult<ContactPage> {
    actor.require(Permission::ContactsRead)?;
    let org = actor.organisation_id;
    let limit = i64::from(limit.clamp(1, PAGE_MAX));
    let mut f = Filter { sql: "c.organisation_id = $1".into(), values: vec![org.0.into()] };
    if let Some(q) = query.email.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let Ok(norm) = domain::contacts::normalise_email(q) else {
            return Ok(ContactPage { rows: vec![], total: 0, next: None });
        };
        let bkey = bidx_key(svc, svc.db(), org).await?;
        let p = f.bind(email_bidx(&bkey, &norm));
        f.sql.push_str(&format!(" AND c.email_bidx = {p}"));
    }
    if let Some(list) = query.list {
        let p = f.bind(list);
        f.sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM list_member m WHERE m.contact_id = c.id AND m.organisation_id = $1 AND m.list_id = {p})"
        ));
    }
    if let Some((purpose, state)) = query.consent {
        let p = f.bind(purpose.as_str());
        let k = format!("SELECT 1 FROM contact_consent k WHERE k.contact_id = c.id AND k.purpose = {p}");
        f.sql.push_str(&match state {
            ConsentFilter::Granted => format!(" AND EXISTS ({k} AND k.granted)"),
            ConsentFilter::Withdrawn => format!(" AND EXISTS ({k} AND NOT k.granted)"),
            ConsentFilter::NoneRecorded => format!(" AND NOT EXISTS ({k})"),
        });
    }
    let total: i64 =
        db::scalar(svc.db(), &format!("SELECT count(*) AS n FROM contact c WHERE {}", f.sql), f.values.clone())
            .await?
            .unwrap_or(0);

    let (col, desc) = match query.sort {
        ContactSort::CreatedDesc => ("created_at", true),
        ContactSort::CreatedAsc => ("created_at", false),
        ContactSort::UpdatedDesc => ("updated_at", true),
        ContactSort::UpdatedAsc => ("updated_at", false),
    };
    let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
    if let Some(c) = after.as_deref() {
        let (t, id) = parse_cursor(c)?;
        let (pt, pid) = (f.bind(t), f.bind(id));
        f.sql.push_str(&format!(" AND (c.{col}, c.id) {cmp} ({pt}, {pid})"));
    }
    let pl = f.bind(limit + 1);
    #[derive(FromQueryResult)]
    struct Listed {
        id: Uuid,
        #[sea_orm(nested)]
        sealed: SealedContact,
        created_at: chrono::DateTime<chrono::Utc>,
        updated_at: chrono::DateTime<chrono::Utc>,
    }
    let rows: Vec<Listed> = db::all_as(
        svc.db(),
        &format!(
            "SELECT c.id, {cols}, c.created_at, c.updated_at FROM contact c WHERE {w}
             ORDER BY c.{col} {dir}, c.id {dir} LIMIT {pl}",
            cols = SEALED_COLS.split(", ").map(|s| format!("c.{s}")).collect::<Vec<_>>().join(", "),
            w = f.sql,
        ),
        f.values,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    if ids.is_empty() {
        return Ok(ContactPage { rows: vec![], total, next: None });
    }
    audit::record_now(
        svc,
        AuditRecord::by(actor, AuditAction::ContactsListed)
            .detail("count", ids.len())
            .detail("contact_ids", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
    )
    .await?;

    // Consent and lists of the page's contacts (not PHI; two queries for the whole page).
    let mut consent: HashMap<Uuid, Vec<RowConsent>> = HashMap::new();
    #[derive(FromQueryResult)]
    struct Consent {
        contact_id: Uuid,
        purpose: String,
        granted: bool,
    }
    for r in db::all_as::<Consent, _>(
        svc.db(),
        "SELECT contact_id, purpose, granted FROM contact_consent WHERE organisation_id = $1 AND contact_id = ANY($2)",
        [org.0.into(), ids.clone().into()],
    )
    .await?
    {
        if let Some(purpose) = ConsentPurpose::parse(&r.purpose) {
            consent.entry(r.contact_id).or_default().push(RowConsent { purpose, granted: r.granted });
        }
    }
    let mut lists: HashMap<Uuid, Vec<RowList>> = HashMap::new();
    #[derive(FromQueryResult)]
    struct Member {
        contact_id: Uuid,
        name: String,
        status: String,
    }
    for r in db::all_as::<Member, _>(
        svc.db(),
        &format!(
            "SELECT m.contact_id, l.name, {EFFECTIVE_STATUS} AS status FROM list_member m JOIN contact_list l ON l.id = m.list_id {CONSENT_JOIN}
             WHERE m.organisation_id = $1 AND m.contact_id = ANY($2) ORDER BY l.name"
        ),
        [org.0.into(), ids.clone().into()],
    )
    .await?
    {
        if let Some(status) = MemberStatus::parse(&r.status) {
            lists.entry(r.contact_id).or_default().push(RowList { name: r.name, status });
        }
    }

    let keys = keys_for(svc, svc.db(), &rows.iter().map(|r| &r.sealed).collect::<Vec<_>>()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (r, id) in rows.iter().zip(&ids) {
        let rec = record::open(&keys, org, *id, &r.sealed, Open::Summary, &[])?;
        let mut c = consent.remove(id).unwrap_or_default();
        c.sort_by_key(|x| ConsentPurpose::ALL.iter().position(|p| *p == x.purpose));
        out.push(ContactRow {
            id: *id,
            name: record::display_name(&rec),
            email: rec.email,
            created_at: r.created_at,
            updated_at: r.updated_at,
            consent: c,
            lists: lists.remove(id).unwrap_or_default(),
        });
    }
    let next = if has_more {
        out.last().map(|r| {
            let t = if col == "created_at" { r.created_at } else { r.updated_at };
            format!("{}_{}", t.timestamp_micros(), r.id)
        })
    } else {
        None
    };
    Ok(ContactPage { rows: out, total, next })
}
