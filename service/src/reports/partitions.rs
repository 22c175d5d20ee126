//! Monthly partitions of the event tables (`engagement_event` by `occurred_at`, `patient_event`
//! by its UUIDv7 id; migration m20261231_000002). Maintenance prepares this month and the next
//! three; retention drops whole months (a partition) instead of deleting rows. The reports keep
//! their figures for dropped months: the hourly rollups are aggregates and stay.

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{Datelike, NaiveDate};

/// The partitioned event tables.
pub const TABLES: [&str; 2] = ["engagement_event", "patient_event"];

/// Create the partitions of this month and the next three where missing. Returns how many were made.
pub async fn prepare(svc: &Services) -> ServiceResult<u64> {
    let made: i64 = db::scalar(
        svc.db(),
        "SELECT count(*) FILTER (WHERE made) FROM (
            SELECT hermetic_ensure_month_partition(t, (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC')
                   + make_interval(months => k))::date) AS made
            FROM unnest($2::text[]) AS t, generate_series(0, 3) AS k) x",
        [svc.clock().now().into(), TABLES.map(str::to_string).to_vec().into()],
    )
    .await?
    .unwrap_or(0);
    Ok(u64::try_from(made).unwrap_or(0))
}

/// The monthly partitions of `table`, oldest first: (name, first day of its month).
pub async fn months(svc: &Services, table: &str) -> ServiceResult<Vec<(String, NaiveDate)>> {
    if !TABLES.contains(&table) {
        return Err(ServiceError::invalid("table", "must be engagement_event or patient_event"));
    }
    let names: Vec<String> = db::scalars(
        svc.db(),
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 ORDER BY 1",
        [table.into()],
    )
    .await?;
    let prefix = format!("{table}_y");
    Ok(names
        .into_iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(&prefix)?;
            let (y, m) = rest.split_once('m')?;
            let d = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
            Some((n, d))
        })
        .collect())
}

/// Drop every monthly partition of both event tables whose month ends before `before` (the
/// first day of a month): retention without deleting rows. Returns the partitions dropped.
pub async fn drop_before(svc: &Services, before: NaiveDate) -> ServiceResult<Vec<String>> {
    if before.day() != 1 {
        return Err(ServiceError::invalid("before", "must be the first day of a month"));
    }
    let mut dropped = Vec::new();
    for table in TABLES {
        for (name, month) in months(svc, table).await? {
            if month < before {
                // The name comes from the catalogue and matched the partition pattern above.
                db::exec(svc.db(), &format!("DROP TABLE \"{name}\""), []).await?;
                dropped.push(name);
            }
        }
    }
    Ok(dropped)
}
