//! CSV export of every contact (admin only). It decrypts PHI for a person, so it is audited before
//! the first byte leaves, and cells are neutralised against spreadsheet formula injection.

use super::record::{self, Open};
use super::{SEALED_COLS, fields, keys_for};
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

/// A contact as the export reads it.
#[derive(sea_orm::FromQueryResult)]
struct Exported {
    id: Uuid,
    #[sea_orm(nested)]
    sealed: record::SealedContact,
    time_zone: Option<String>,
    locale: Option<String>,
    attrs: serde_json::Value,
}

/// Stream the organisation's contacts as CSV, in batches (bounded memory).
pub async fn export(
    svc: &Services,
    actor: &Actor,
) -> ServiceResult<impl Stream<Item = ServiceResult<Vec<u8>>> + Send + 'static> {
    actor.require(Permission::ContactsExport)?;
    let org = actor.organisation_id;
    let count: i64 =
        db::scalar(svc.db(), "SELECT count(*) AS n FROM contact WHERE organisation_id = $1", [org.0.into()])
            .await?
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
                let rows: Vec<Exported> = db::all_as(
                    svc.db(),
                    &format!("SELECT id, {SEALED_COLS}, time_zone, locale, attrs FROM contact WHERE organisation_id = $1 AND id > $2 ORDER BY id LIMIT $3"),
                    [org.0.into(), st.after.into(), BATCH.into()],
                )
                .await?;
                if (rows.len() as i64) < BATCH {
                    st.done = true;
                }
                let keys = keys_for(&svc, svc.db(), &rows.iter().map(|r| &r.sealed).collect::<Vec<_>>()).await?;
                let mut buf = Vec::new();
                for r in rows {
                    let id = r.id;
                    let mut rec = record::open(&keys, org, id, &r.sealed, Open::All, &catalogue)?;
                    rec.time_zone = r.time_zone;
                    rec.locale = r.locale;
                    rec.attrs = record::attrs_from_json(&r.attrs, &catalogue);
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
