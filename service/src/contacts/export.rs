//! CSV export of every contact (admin only). It decrypts PHI for a person, so it is audited before
//! the first byte leaves, and cells are neutralised against spreadsheet formula injection.

use super::record::{self, Open};
use super::{SEALED_COLS, fields, keys_for, sealed_from_row};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{BuiltinField, neutralise_csv_cell};
use futures::Stream;
use uuid::Uuid;

const BATCH: i64 = 1_000;

fn csv_line(cells: &[String]) -> ServiceResult<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(cells.iter().map(|c| neutralise_csv_cell(c).into_owned()))
        .map_err(|_| ServiceError::internal("csv"))?;
    w.into_inner().map_err(|_| ServiceError::internal("csv"))
}

/// Stream the organisation's contacts as CSV, in batches (bounded memory).
pub async fn export(
    svc: &Services,
    actor: &Actor,
) -> ServiceResult<impl Stream<Item = ServiceResult<Vec<u8>>> + Send + 'static> {
    actor.require(Permission::ContactsExport)?;
    let org = actor.organisation_id;
    let count: i64 = db::one(svc.db(), "SELECT count(*) AS n FROM contact WHERE organisation_id = $1", [org.0.into()])
        .await?
        .map(|r| db::get(&r, "n"))
        .transpose()?
        .unwrap_or(0);
    audit::record_now(svc, AuditRecord::by(actor, AuditAction::ContactsExported).detail("count", count)).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let mut header: Vec<String> = BuiltinField::ALL.iter().map(|f| f.key().to_string()).collect();
    header.extend(catalogue.iter().map(|f| f.key.clone()));
    let first = csv_line(&header)?;
    let svc = svc.clone();
    struct State {
        after: Uuid,
        header: Option<Vec<u8>>,
        done: bool,
    }
    let state = State { after: Uuid::nil(), header: Some(first), done: false };
    Ok(futures::stream::unfold(state, move |mut st| {
        let svc = svc.clone();
        let catalogue = catalogue.clone();
        let header = header.clone();
        async move {
            if let Some(h) = st.header.take() {
                return Some((Ok(h), st));
            }
            if st.done {
                return None;
            }
            let out: ServiceResult<Vec<u8>> = async {
                let rows = db::all(
                    svc.db(),
                    &format!("SELECT id, {SEALED_COLS}, time_zone, locale, attrs FROM contact WHERE organisation_id = $1 AND id > $2 ORDER BY id LIMIT $3"),
                    [org.0.into(), st.after.into(), BATCH.into()],
                )
                .await?;
                if (rows.len() as i64) < BATCH {
                    st.done = true;
                }
                let sealed: Vec<_> = rows.iter().map(sealed_from_row).collect::<Result<_, _>>()?;
                let keys = keys_for(&svc, svc.db(), &sealed.iter().collect::<Vec<_>>()).await?;
                let mut buf = Vec::new();
                for (r, s) in rows.iter().zip(&sealed) {
                    let id: Uuid = db::get(r, "id")?;
                    let mut rec = record::open(&keys, org, id, s, Open::All, &catalogue)?;
                    rec.time_zone = db::get(r, "time_zone")?;
                    rec.locale = db::get(r, "locale")?;
                    rec.attrs = record::attrs_from_json(&db::get::<serde_json::Value>(r, "attrs")?, &catalogue);
                    let fields = record::to_fields(&rec);
                    let cells: Vec<String> = header.iter().map(|k| fields.get(k).map(|v| v.expose().clone()).unwrap_or_default()).collect();
                    buf.extend(csv_line(&cells)?);
                    st.after = id;
                }
                Ok(buf)
            }
            .await;
            if out.is_err() {
                st.done = true;
            }
            Some((out, st))
        }
    }))
}
