//! The COPY writer: stages each batch in a transaction of its own (binary COPY into a temporary
//! table, then one INSERT … ON CONFLICT and one UPDATE), and commits the staged batches strictly in
//! file order, each with the import's checkpoint. Runs on sqlx directly: sea-orm has no COPY.

use super::parse::Batch;
use super::{MAX_ERRORS_KEPT, queue};
use crate::contacts::consent;
use crate::contacts::record::{self, ContactRecord, SealedContact};
use crate::crypto::keyring::DataKey;
use crate::crypto::seal::Sealed;
use crate::db::sqlx_err;
use crate::error::{ServiceError, ServiceResult};
use crate::pgcopy::CopyBuf;
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Phi;
use domain::contacts::{ConsentSource, CustomField, Dedupe, ImportOptions};
use domain::ids::{OrganisationId, UserId};
use sea_orm::sqlx::{self, PgPool, Postgres, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    created: i64,
    updated: i64,
    skipped: i64,
    failed: i64,
    kept_withdrawn: i64,
}

const STAGE_COLS: &str = "id, organisation_id, email_bidx, email, first_name, last_name, phone, date_of_birth, time_zone, locale, attrs, phi_attrs, created_at, updated_at";

fn copy_row(
    buf: &mut CopyBuf,
    id: Uuid,
    org: OrganisationId,
    bidx: &[u8],
    s: &SealedContact,
    rec: &ContactRecord,
    now: DateTime<Utc>,
) {
    let attrs = record::attrs_json(&rec.attrs).to_string();
    buf.row(14)
        .uuid(id)
        .uuid(org.0)
        .bytea(Some(bidx))
        .bytea(Some(&s.email))
        .bytea(s.first_name.as_deref())
        .bytea(s.last_name.as_deref())
        .bytea(s.phone.as_deref())
        .bytea(s.date_of_birth.as_deref())
        .text(rec.time_zone.as_deref())
        .text(rec.locale.as_deref())
        .jsonb(&attrs)
        .bytea(s.phi_attrs.as_deref())
        .timestamptz(now)
        .timestamptz(now);
}

/// Writes batches. Two batches are written at once, on two connections, so both cores work (the
/// database's per-row index and foreign-key work is the bottleneck); they commit strictly in file
/// order, because each commit carries the resume checkpoint. The parser never lets two batches that
/// may be in flight together share an address (see `Batch::after_previous`), so the two
/// transactions never wait on each other's rows.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) svc: Services,
    pub(super) pool: PgPool,
    pub(super) import: Uuid,
    pub(super) org: OrganisationId,
    pub(super) opts: Arc<ImportOptions>,
    pub(super) catalogue: Arc<Vec<CustomField>>,
    pub(super) data_key: Arc<DataKey>,
    pub(super) created_by: Option<Uuid>,
    pub(super) consent_hash: Option<Vec<u8>>,
}

/// A batch written but not yet committed.
struct Staged {
    tx: Transaction<'static, Postgres>,
    counts: Counts,
}

enum Stage {
    Ready(Staged),
    /// Another writer created one of these contacts meanwhile: redo the batch.
    Conflict,
    /// The import was cancelled.
    Stopped,
}

impl Writer {
    /// Write a batch's contacts, list memberships and consent in a transaction left open.
    async fn stage(&self, batch: &Batch) -> ServiceResult<Stage> {
        let now = self.svc.clock().now();
        let mut tx: Transaction<'static, Postgres> = self.pool.begin().await.map_err(sqlx_err)?;
        // A batch commits together with its checkpoint, so if a crash loses the last commits the
        // job simply redoes those batches from the stored file: durability of each batch commit is
        // not needed, and waiting for it would halve the import rate. The final commit is durable.
        sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await.map_err(sqlx_err)?;
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM contact_import WHERE id = $1")
            .bind(self.import)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        if st.as_deref() != Some("running") {
            return Ok(Stage::Stopped);
        }
        let mut counts = Counts {
            failed: batch.errors.iter().map(|e| e.row).collect::<std::collections::BTreeSet<_>>().len() as i64,
            ..Counts::default()
        };

        counts.updated += batch.dup_updated;
        counts.skipped += batch.dup_skipped;
        let chosen: Vec<usize> = (0..batch.rows.len()).collect();
        let bidxs: Vec<Vec<u8>> = batch.rows.iter().map(|p| p.bidx.clone()).collect();
        let existing: HashMap<Vec<u8>, (Uuid, Option<Vec<u8>>)> =
            sqlx::query_as::<_, (Uuid, Vec<u8>, Option<Vec<u8>>)>("SELECT id, email_bidx, phi_attrs FROM contact WHERE organisation_id = $1 AND email_bidx = ANY($2) FOR UPDATE")
                .bind(self.org.0)
                .bind(&bidxs)
                .fetch_all(&mut *tx)
                .await
                .map_err(sqlx_err)?
                .into_iter()
                .map(|(id, bidx, phi)| (bidx, (id, phi)))
                .collect();

        let mut new_buf = CopyBuf::with_capacity(chosen.len() * 700);
        let mut upd_buf = CopyBuf::with_capacity(64);
        let mut new_count = 0u64;
        let mut upd_count = 0u64;
        let mut touched: Vec<Uuid> = Vec::with_capacity(chosen.len());
        let mut created: Vec<Uuid> = Vec::with_capacity(chosen.len());
        for i in &chosen {
            let p = &batch.rows[*i];
            match existing.get(&p.bidx) {
                Some(_) if self.opts.dedupe == Dedupe::Skip => counts.skipped += 1,
                Some((id, old_phi)) => {
                    // Merge PHI custom fields with what is stored, then seal for the existing id.
                    let mut rec = p.rec.clone();
                    if let Some(b) = old_phi {
                        let keys =
                            self.svc.keys().load_keys(self.svc.db(), [Sealed::from_bytes(b.clone())?.key_id()]).await?;
                        let old = record::open(
                            &keys,
                            self.org,
                            *id,
                            &SealedContact {
                                email: vec![],
                                first_name: None,
                                last_name: None,
                                phone: None,
                                date_of_birth: None,
                                phi_attrs: Some(b.clone()),
                            },
                            record::Open::All,
                            &self.catalogue,
                        );
                        if let Ok(old) = old {
                            let mut merged = old.phi_attrs.into_inner();
                            merged.extend(rec.phi_attrs.into_inner());
                            rec.phi_attrs = Phi::new(merged);
                        }
                    }
                    let sealed = record::seal(&self.data_key, self.org, *id, &rec)?;
                    copy_row(&mut upd_buf, *id, self.org, &p.bidx, &sealed, &rec, now);
                    upd_count += 1;
                    counts.updated += 1;
                    touched.push(*id);
                }
                None => {
                    copy_row(&mut new_buf, p.new_id, self.org, &p.bidx, &p.sealed, &p.rec, now);
                    new_count += 1;
                    touched.push(p.new_id);
                    created.push(p.new_id);
                }
            }
        }
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS import_stage (LIKE contact) ON COMMIT DELETE ROWS")
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        if new_count > 0 {
            let mut copy = tx
                .copy_in_raw(&format!("COPY import_stage ({STAGE_COLS}) FROM STDIN (FORMAT binary)"))
                .await
                .map_err(sqlx_err)?;
            copy.send(new_buf.finish()).await.map_err(sqlx_err)?;
            copy.finish().await.map_err(sqlx_err)?;
            let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO contact ({STAGE_COLS}) SELECT {STAGE_COLS} FROM import_stage ON CONFLICT (organisation_id, email_bidx) DO NOTHING"
            )))
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?
            .rows_affected();
            if inserted != new_count {
                return Ok(Stage::Conflict);
            }
            counts.created += new_count as i64;
            // Addresses whose earlier contact withdrew consent start withdrawn.
            consent::carry_withdrawals_on(&mut tx, self.org, &created, now).await?;
            if upd_count > 0 {
                sqlx::query("DELETE FROM import_stage").execute(&mut *tx).await.map_err(sqlx_err)?;
            }
        }
        if upd_count > 0 {
            let mut copy = tx
                .copy_in_raw(&format!("COPY import_stage ({STAGE_COLS}) FROM STDIN (FORMAT binary)"))
                .await
                .map_err(sqlx_err)?;
            copy.send(upd_buf.finish()).await.map_err(sqlx_err)?;
            copy.finish().await.map_err(sqlx_err)?;
            // Empty cells keep the stored value.
            sqlx::query(
                "UPDATE contact c SET email = s.email,
                    first_name = COALESCE(s.first_name, c.first_name), last_name = COALESCE(s.last_name, c.last_name),
                    phone = COALESCE(s.phone, c.phone), date_of_birth = COALESCE(s.date_of_birth, c.date_of_birth),
                    time_zone = COALESCE(s.time_zone, c.time_zone), locale = COALESCE(s.locale, c.locale),
                    attrs = c.attrs || s.attrs, phi_attrs = COALESCE(s.phi_attrs, c.phi_attrs), updated_at = s.updated_at
                 FROM import_stage s WHERE c.id = s.id",
            )
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        }
        if !touched.is_empty() && !self.opts.list_ids.is_empty() {
            queue::add_members_queueing_optins(&mut tx, self.org, &touched, &self.opts.list_ids, now).await?;
        }
        if let (Some(purpose), false) = (self.opts.consent_purpose, touched.is_empty()) {
            // The import's grant goes through the consent rule: a withdrawal in force holds, and the
            // grant is recorded in the ledger as not applied.
            let ev = consent::Event {
                organisation: self.org,
                purpose,
                granted: true,
                source: ConsentSource::Import,
                text_hash: self.consent_hash.clone(),
                actor_user: self.created_by.map(UserId),
                import_id: Some(self.import),
                occurred_at: now,
            };
            counts.kept_withdrawn += consent::apply_on(&mut tx, &ev, &touched).await?.kept_withdrawn as i64;
        }
        Ok(Stage::Ready(Staged { tx, counts }))
    }

    /// Commit a staged batch with its checkpoint and row errors. Called in file order.
    async fn commit(&self, staged: Staged, batch: &Batch, errors_kept: &mut i64) -> ServiceResult<bool> {
        let Staged { mut tx, counts } = staged;
        let now = self.svc.clock().now();
        // The row lock orders this commit against a cancellation.
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM contact_import WHERE id = $1 FOR UPDATE")
            .bind(self.import)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        if st.as_deref() != Some("running") {
            return Ok(false);
        }
        let keep = (MAX_ERRORS_KEPT - *errors_kept).clamp(0, batch.errors.len() as i64) as usize;
        if keep > 0 {
            let errs = &batch.errors[..keep];
            sqlx::query("INSERT INTO import_error (import_id, row_number, column_name, message) SELECT $1, r, c, m FROM unnest($2::bigint[], $3::text[], $4::text[]) AS e(r, c, m)")
                .bind(self.import)
                .bind(errs.iter().map(|e| e.row).collect::<Vec<_>>())
                .bind(errs.iter().map(|e| e.column.clone()).collect::<Vec<_>>())
                .bind(errs.iter().map(|e| e.message.clone()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(sqlx_err)?;
        }
        sqlx::query(
            "UPDATE contact_import SET rows_done = $2, bytes_done = $3, rows_created = rows_created + $4, rows_updated = rows_updated + $5,
                rows_skipped = rows_skipped + $6, rows_failed = rows_failed + $7, updated_at = $8,
                rows_kept_withdrawn = rows_kept_withdrawn + $9 WHERE id = $1",
        )
        .bind(self.import)
        .bind(batch.last_row)
        .bind(batch.bytes as i64)
        .bind(counts.created)
        .bind(counts.updated)
        .bind(counts.skipped)
        .bind(counts.failed)
        .bind(now)
        .bind(counts.kept_withdrawn)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
        tx.commit().await.map_err(sqlx_err)?;
        *errors_kept += keep as i64;
        Ok(true)
    }
}

/// Batches in flight at once (see `Writer`).
const WRITERS: usize = 2;

type InFlight = std::collections::VecDeque<(tokio::task::JoinHandle<ServiceResult<Stage>>, Arc<Batch>)>;

/// Write every batch the parser sends. Returns false when the import was cancelled.
pub(super) async fn write_all(
    writer: &Writer,
    rx: &mut mpsc::Receiver<Batch>,
    mut errors_kept: i64,
) -> ServiceResult<bool> {
    let mut inflight: InFlight = InFlight::new();
    let result = async {
        while let Some(batch) = rx.recv().await {
            let batch = Arc::new(batch);
            // A batch sharing an address with the one before it waits for that one's commit.
            let limit = if batch.after_previous { 1 } else { WRITERS };
            while inflight.len() >= limit {
                if !commit_oldest(writer, &mut inflight, &mut errors_kept).await? {
                    return Ok(false);
                }
            }
            let (w, b) = (writer.clone(), batch.clone());
            inflight.push_back((tokio::spawn(async move { w.stage(&b).await }), batch));
        }
        while !inflight.is_empty() {
            if !commit_oldest(writer, &mut inflight, &mut errors_kept).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
    .await;
    // On cancellation or error, abandon what is still in flight: dropping a task's open
    // transaction rolls it back.
    for (handle, _) in inflight {
        handle.abort();
    }
    result
}

async fn commit_oldest(writer: &Writer, inflight: &mut InFlight, errors_kept: &mut i64) -> ServiceResult<bool> {
    let Some((handle, batch)) = inflight.pop_front() else { return Ok(true) };
    let mut stage = handle.await.map_err(|_| ServiceError::internal("import writer task failed"))??;
    let mut attempts = 0;
    loop {
        match stage {
            Stage::Ready(staged) => return writer.commit(staged, &batch, errors_kept).await,
            Stage::Stopped => return Ok(false),
            Stage::Conflict if attempts < 3 => {
                attempts += 1;
                stage = writer.stage(&batch).await?;
            }
            Stage::Conflict => {
                return Err(ServiceError::internal("import batch kept conflicting with concurrent changes"));
            }
        }
    }
}
