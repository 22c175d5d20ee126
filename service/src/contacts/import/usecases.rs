//! What users and the job do with an import: upload (sealed chunks), preview (audited: it shows
//! PHI), start (queues the job), cancel, status, the error report, expiry of uploads nobody
//! started, and `process`, the job's body, which feeds the parser and the writer.

use super::parse::{self, ChunkReader, ParseCtx};
use super::writer::{self, Writer};
use super::{CHUNK_BYTES, PREVIEW_ROWS, UNSTARTED_TTL_HOURS, chunk_aad, load_import, open_chunk, queue};
use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::contacts::{bidx_key, data_key, fields};
use crate::crypto::seal::Sealed;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::audit::{AuditAction, AuditOutcome};
use domain::contacts::{BuiltinField, CustomField, FieldChoice, ImportOptions, ImportPreview, ImportView, guess_field};
use domain::ids::{OrganisationId, UserId};
use domain::{Permission, Phi};
use futures::{Stream, StreamExt};
use sea_orm::{FromQueryResult, TransactionTrait};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Expired uploads handled per maintenance run (the rest wait for the next run).
const EXPIRE_BATCH: i64 = 500;

const VIEW_COLS: &str = "id, status, file_bytes, bytes_done, rows_done, rows_created, rows_updated, rows_skipped, rows_failed, rows_kept_withdrawn, failure, created_at, finished_at";

/// `contact_import` as the import page shows it.
#[derive(FromQueryResult)]
struct ViewRow {
    id: Uuid,
    status: String,
    file_bytes: i64,
    bytes_done: i64,
    rows_done: i64,
    rows_created: i64,
    rows_updated: i64,
    rows_skipped: i64,
    rows_failed: i64,
    rows_kept_withdrawn: i64,
    failure: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<ViewRow> for ImportView {
    fn from(r: ViewRow) -> Self {
        ImportView {
            id: r.id,
            status: r.status,
            file_bytes: r.file_bytes,
            bytes_done: r.bytes_done,
            rows_done: r.rows_done,
            rows_created: r.rows_created,
            rows_updated: r.rows_updated,
            rows_skipped: r.rows_skipped,
            rows_failed: r.rows_failed,
            rows_kept_withdrawn: r.rows_kept_withdrawn,
            failure: r.failure,
            created_at: r.created_at,
            finished_at: r.finished_at,
        }
    }
}

pub async fn status(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<ImportView> {
    actor.require(Permission::ContactsWrite)?;
    let row: ViewRow = db::one_as(
        svc.db(),
        &format!("SELECT {VIEW_COLS} FROM contact_import WHERE id = $1 AND organisation_id = $2"),
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok(row.into())
}

pub async fn recent(svc: &Services, actor: &Actor) -> ServiceResult<Vec<ImportView>> {
    actor.require(Permission::ContactsWrite)?;
    let rows: Vec<ViewRow> = db::all_as(
        svc.db(),
        &format!("SELECT {VIEW_COLS} FROM contact_import WHERE organisation_id = $1 AND status <> 'uploading' ORDER BY created_at DESC LIMIT 20"),
        [actor.organisation_id.0.into()],
    )
    .await?;
    Ok(rows.into_iter().map(ImportView::from).collect())
}

async fn discard(svc: &Services, id: Uuid) {
    let _ = db::exec(svc.db(), "DELETE FROM contact_import WHERE id = $1", [id.into()]).await;
}

/// Receive an upload as a stream of byte chunks and seal it into the database. Fails cleanly (and
/// keeps nothing) when the file is empty, over `max_bytes`, or has no readable header row.
pub async fn upload<S>(svc: &Services, actor: &Actor, mut body: S, max_bytes: u64) -> ServiceResult<ImportView>
where
    S: Stream<Item = Result<Vec<u8>, ServiceError>> + Unpin + Send,
{
    actor.require(Permission::ContactsWrite)?;
    let org = actor.organisation_id;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    db::exec(
        svc.db(),
        "INSERT INTO contact_import (id, organisation_id, created_by, status, created_at, updated_at) VALUES ($1, $2, $3, 'uploading', $4, $4)",
        [id.into(), org.0.into(), actor.user_id().map(|u| u.0).into(), now.into()],
    )
    .await?;
    let key = data_key(svc, svc.db(), org).await?;
    let mut hasher = Sha256::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    let mut total: u64 = 0;
    let mut seq: i32 = 0;
    let mut first_chunk: Option<Vec<u8>> = None;
    let store = |seq: i32, data: &[u8]| {
        let key = key.clone();
        let column = format!("data:{seq}");
        let sealed = key.seal(&chunk_aad(org, id, &column), data).map(Sealed::into_bytes);
        async move {
            // Only while the upload is still wanted: a cancellation (the organisation's deletion)
            // takes the import's row lock, so no chunk is stored after it.
            let n = db::exec(
                svc.db(),
                "INSERT INTO import_chunk (import_id, seq, data)
                 SELECT $1, $2, $3 FROM contact_import WHERE id = $1 AND status = 'uploading' FOR SHARE",
                [id.into(), seq.into(), sealed?.into()],
            )
            .await?;
            if n == 0 {
                return Err(ServiceError::NotFound);
            }
            Ok::<(), ServiceError>(())
        }
    };
    loop {
        let part = match body.next().await {
            None => break,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                discard(svc, id).await;
                return Err(e);
            }
        };
        total += part.len() as u64;
        if total > max_bytes {
            discard(svc, id).await;
            return Err(ServiceError::invalid(
                "file",
                format!("is larger than the {} MB limit", max_bytes / 1_000_000),
            ));
        }
        hasher.update(&part);
        buf.extend_from_slice(&part);
        while buf.len() >= CHUNK_BYTES {
            let rest = buf.split_off(CHUNK_BYTES);
            if let Err(e) = store(seq, &buf).await {
                discard(svc, id).await;
                return Err(e);
            }
            if seq == 0 {
                first_chunk = Some(std::mem::take(&mut buf));
            }
            seq += 1;
            buf = rest;
        }
    }
    if !buf.is_empty() {
        if let Err(e) = store(seq, &buf).await {
            discard(svc, id).await;
            return Err(e);
        }
        if seq == 0 {
            first_chunk = Some(std::mem::take(&mut buf));
        }
        seq += 1;
    }
    if total == 0 {
        discard(svc, id).await;
        return Err(ServiceError::invalid("file", "is empty"));
    }
    let headers = match first_chunk.as_deref() {
        Some(c) => parse::read_headers(c, seq == 1),
        None => Err(ServiceError::invalid("file", "has no header row")),
    };
    let headers = match headers {
        Ok(h) => h,
        Err(e) => {
            discard(svc, id).await;
            return Err(e);
        }
    };
    let sealed_headers = key.seal(
        &chunk_aad(org, id, "headers"),
        &serde_json::to_vec(&headers).map_err(|_| ServiceError::internal("headers"))?,
    )?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE contact_import SET status = 'uploaded', file_bytes = $2, file_sha256 = $3, chunks = $4, headers = $5, updated_at = $6 WHERE id = $1 AND status = 'uploading'",
        [id.into(), (total as i64).into(), hasher.finalize().to_vec().into(), seq.into(), sealed_headers.into_bytes().into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ImportUploaded).target("import", id).detail("bytes", total),
    )
    .await?;
    txn.commit().await?;
    status(svc, actor, id).await
}

fn field_choices(catalogue: &[CustomField]) -> Vec<FieldChoice> {
    BuiltinField::ALL
        .iter()
        .map(|f| FieldChoice { key: f.key().into(), label: f.label().into(), is_phi: f.is_phi() })
        .chain(catalogue.iter().map(|f| FieldChoice { key: f.key.clone(), label: f.label.clone(), is_phi: f.is_phi }))
        .collect()
}

/// The header and first rows for the mapping screen. Shows PHI: audited.
pub async fn preview(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<ImportPreview> {
    actor.require(Permission::ContactsWrite)?;
    actor.require(Permission::ContactsRead)?;
    let imp = load_import(svc, svc.db(), id, Some(actor.organisation_id)).await?;
    not_startable(&imp.status)?;
    audit::record_now(svc, AuditRecord::by(actor, AuditAction::ImportPreviewed).target("import", id)).await?;
    let mut data = Vec::new();
    let mut first_len = 0;
    for seq in 0..imp.chunks.min(4) {
        data.extend(open_chunk(svc, imp.org, id, seq).await?);
        if seq == 0 {
            first_len = data.len();
        }
        if data.iter().filter(|b| **b == b'\n').count() > PREVIEW_ROWS + 1 {
            break;
        }
    }
    // Told from the first chunk alone, as the upload and the job tell it.
    let delimiter = parse::detect_delimiter(&data[..first_len]);
    let rows = parse::preview_rows(&data, delimiter, PREVIEW_ROWS);
    let catalogue = fields::catalogue(svc, svc.db(), imp.org).await?;
    Ok(ImportPreview {
        import_id: id,
        suggested: imp.headers.iter().map(|h| guess_field(h, &catalogue)).collect(),
        headers: imp.headers.into_iter().map(Phi::new).collect(),
        rows,
        fields: field_choices(&catalogue),
        delimiter: parse::delimiter_name(delimiter).to_string(),
    })
}

/// An import can be previewed and started only while it is an upload waiting for its mapping.
fn not_startable(status: &str) -> ServiceResult<()> {
    match status {
        "uploaded" => Ok(()),
        "expired" => Err(ServiceError::invalid(
            "import",
            format!(
                "has expired: an upload that is not started within {UNSTARTED_TTL_HOURS} hours is deleted. Upload the file again."
            ),
        )),
        _ => Err(ServiceError::invalid("import", "has already been started")),
    }
}

/// Expire uploads nobody started within a day (the maintenance job): their sealed chunks and
/// sealed header row are deleted, the import is marked `expired` (so the page says what became
/// of the file) and each expiry is audited, all in one transaction. Imports that were started
/// are never touched: their job deletes the chunks when it finishes.
#[derive(FromQueryResult)]
struct Expired {
    id: Uuid,
    organisation_id: Uuid,
    created_by: Option<Uuid>,
}

pub(crate) async fn expire_unstarted(svc: &Services) -> ServiceResult<u64> {
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let rows: Vec<Expired> = db::all_as(
        &txn,
        "UPDATE contact_import SET status = 'expired', headers = NULL, finished_at = $1, updated_at = $1
         WHERE id IN (SELECT id FROM contact_import WHERE status IN ('uploading', 'uploaded') AND created_at <= $2
                      ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id, organisation_id, created_by",
        [now.into(), (now - chrono::Duration::hours(UNSTARTED_TTL_HOURS)).into(), EXPIRE_BATCH.into()],
    )
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    db::exec(&txn, "DELETE FROM import_chunk WHERE import_id = ANY($1)", [ids.clone().into()]).await?;
    for r in &rows {
        audit::record(
            svc,
            &txn,
            AuditRecord::new(
                Some(OrganisationId(r.organisation_id)),
                AuditActor::System,
                AuditAction::ImportExpired,
                AuditOutcome::Success,
            )
            .target("import", r.id)
            .detail("uploaded_by", r.created_by.map(|u| u.to_string()))
            .detail("after_hours", UNSTARTED_TTL_HOURS),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(ids.len() as u64)
}

/// Confirm the mapping and queue the import job (in the same transaction: the job exists if and
/// only if the import is queued).
pub async fn start(svc: &Services, actor: &Actor, id: Uuid, opts: ImportOptions) -> ServiceResult<ImportView> {
    actor.require(Permission::ContactsWrite)?;
    let org = actor.organisation_id;
    let imp = load_import(svc, svc.db(), id, Some(org)).await?;
    not_startable(&imp.status)?;
    if opts.mapping.len() != imp.headers.len() {
        return Err(ServiceError::invalid("mapping", "must give one choice per column"));
    }
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let choices = field_choices(&catalogue);
    let mut used = std::collections::HashSet::new();
    for key in opts.mapping.iter().flatten() {
        let Some(choice) = choices.iter().find(|c| &c.key == key) else {
            return Err(ServiceError::invalid("mapping", "a chosen field is not a field of this organisation"));
        };
        if !used.insert(key.clone()) {
            // Named by its label, as the column menus show it.
            return Err(ServiceError::invalid(
                "mapping",
                format!("\"{}\" is chosen for more than one column", choice.label),
            ));
        }
    }
    if !used.contains("email") {
        return Err(ServiceError::invalid("mapping", "one column must be the email address"));
    }
    if opts.list_ids.len() > 20 {
        return Err(ServiceError::invalid("lists", "choose at most 20 lists"));
    }
    let consent_text = opts.consent_text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if opts.consent_purpose.is_some() && consent_text.is_none() {
        return Err(ServiceError::invalid("consent", "give the consent wording the contacts agreed to"));
    }
    let txn = svc.db().begin().await?;
    for l in &opts.list_ids {
        db::one(
            &txn,
            "SELECT 1 AS x FROM contact_list WHERE id = $1 AND organisation_id = $2",
            [(*l).into(), org.0.into()],
        )
        .await?
        .ok_or_else(|| ServiceError::invalid("lists", "a chosen list does not exist"))?;
    }
    let n = db::exec(
        &txn,
        "UPDATE contact_import SET status = 'queued', mapping = $3, dedupe = $4, list_ids = $5, consent_purpose = $6, consent_text_hash = $7, updated_at = $8
         WHERE id = $1 AND organisation_id = $2 AND status = 'uploaded'",
        [
            id.into(),
            org.0.into(),
            serde_json::json!(opts.mapping).into(),
            opts.dedupe.as_str().into(),
            opts.list_ids.clone().into(),
            opts.consent_purpose.map(|p| p.as_str().to_string()).into(),
            consent_text.map(|t| crate::crypto::sha256(t.as_bytes()).to_vec()).into(),
            svc.clock().now().into(),
        ],
    )
    .await?;
    if n == 0 {
        // Started in another window, or expired meanwhile: say which.
        let now = load_import(svc, &txn, id, Some(org)).await?;
        not_startable(&now.status)?;
        return Err(ServiceError::invalid("import", "has already been started"));
    }
    queue::enqueue_import_job(&txn, id).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ImportStarted).target("import", id)).await?;
    txn.commit().await?;
    status(svc, actor, id).await
}

pub async fn cancel(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<ImportView> {
    actor.require(Permission::ContactsWrite)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE contact_import SET status = 'cancelled', finished_at = $3, updated_at = $3
         WHERE id = $1 AND organisation_id = $2 AND status IN ('uploaded', 'queued', 'running')",
        [id.into(), actor.organisation_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::invalid("import", "is not running"));
    }
    db::exec(&txn, "DELETE FROM import_chunk WHERE import_id = $1", [id.into()]).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ImportCancelled).target("import", id)).await?;
    txn.commit().await?;
    status(svc, actor, id).await
}

#[derive(FromQueryResult)]
struct ErrorRow {
    row_number: i64,
    column_name: String,
    message: String,
}

/// The row-level error report as CSV: row, column, problem (no cell values).
pub async fn error_report(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<String> {
    actor.require(Permission::ContactsWrite)?;
    status(svc, actor, id).await?;
    let rows: Vec<ErrorRow> = db::all_as(svc.db(), "SELECT row_number, column_name, message FROM import_error WHERE import_id = $1 ORDER BY row_number, column_name", [id.into()]).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["row", "column", "problem"]);
    for r in rows {
        let _ = w.write_record([
            r.row_number.to_string(),
            domain::contacts::neutralise_csv_cell(&r.column_name).into_owned(),
            domain::contacts::neutralise_csv_cell(&r.message).into_owned(),
        ]);
    }
    String::from_utf8(w.into_inner().map_err(|_| ServiceError::internal("csv"))?)
        .map_err(|_| ServiceError::internal("csv"))
}

#[derive(FromQueryResult)]
struct FinalCounts {
    rows_created: i64,
    rows_updated: i64,
    rows_skipped: i64,
    rows_failed: i64,
    rows_kept_withdrawn: i64,
}

async fn finish(
    svc: &Services,
    id: Uuid,
    org: OrganisationId,
    status: &str,
    failure: Option<String>,
    by: Option<Uuid>,
) -> ServiceResult<()> {
    let txn = svc.db().begin().await?;
    db::exec(
        &txn,
        "UPDATE contact_import SET status = $2, failure = $3, finished_at = $4, updated_at = $4 WHERE id = $1 AND status = 'running'",
        [id.into(), status.into(), failure.clone().into(), svc.clock().now().into()],
    )
    .await?;
    db::exec(&txn, "DELETE FROM import_chunk WHERE import_id = $1", [id.into()]).await?;
    let counts: Option<FinalCounts> = db::one_as(
        &txn,
        "SELECT rows_created, rows_updated, rows_skipped, rows_failed, rows_kept_withdrawn FROM contact_import WHERE id = $1",
        [id.into()],
    )
    .await?;
    let mut rec = AuditRecord::new(
        Some(org),
        by.map(|u| AuditActor::User { user_id: UserId(u), session_id: None }).unwrap_or(AuditActor::System),
        AuditAction::ImportFinished,
        if status == "completed" { AuditOutcome::Success } else { AuditOutcome::Failure },
    )
    .target("import", id);
    if let Some(c) = counts {
        rec = rec
            .detail("rows_created", c.rows_created)
            .detail("rows_updated", c.rows_updated)
            .detail("rows_skipped", c.rows_skipped)
            .detail("rows_failed", c.rows_failed)
            .detail("rows_kept_withdrawn", c.rows_kept_withdrawn);
    }
    audit::record(svc, &txn, rec).await?;
    txn.commit().await?;
    Ok(())
}

/// Run (or resume) an import. Called by the job worker; safe to call again after a crash.
pub async fn process(svc: &Services, id: Uuid) -> ServiceResult<()> {
    let imp = load_import(svc, svc.db(), id, None).await?;
    match imp.status.as_str() {
        "queued" | "running" => {}
        _ => return Ok(()),
    }
    let Some(opts) = imp.options.clone() else { return Err(ServiceError::internal("import has no mapping")) };
    db::exec(
        svc.db(),
        "UPDATE contact_import SET status = 'running', started_at = COALESCE(started_at, $2), updated_at = $2 WHERE id = $1 AND status IN ('queued', 'running')",
        [id.into(), svc.clock().now().into()],
    )
    .await?;
    let org = imp.org;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let dkey = data_key(svc, svc.db(), org).await?;
    let ctx = ParseCtx {
        org,
        mapping: opts.mapping.clone(),
        columns: imp.headers.len(),
        catalogue: catalogue.clone(),
        data_key: dkey.clone(),
        bidx_key: bidx_key(svc, svc.db(), org).await?,
        skip: imp.rows_done,
        dedupe: opts.dedupe,
        delimiter: if imp.chunks > 0 { parse::detect_delimiter(&open_chunk(svc, org, id, 0).await?) } else { b',' },
    };
    let errors_kept: i64 =
        db::scalar(svc.db(), "SELECT count(*) AS n FROM import_error WHERE import_id = $1", [id.into()])
            .await?
            .unwrap_or(0);

    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Vec<u8>, String>>(2);
    let (batch_tx, mut batch_rx) = mpsc::channel::<parse::Batch>(2);
    let feeder_svc = svc.clone();
    let chunks = imp.chunks;
    let feeder = tokio::spawn(async move {
        for seq in 0..chunks {
            let item = open_chunk(&feeder_svc, org, id, seq)
                .await
                .map_err(|_| "the uploaded file could not be read back".to_string());
            let failed = item.is_err();
            if chunk_tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let reader = ChunkReader::new(chunk_rx);
    let parser = tokio::task::spawn_blocking(move || parse::parse_all(ctx, reader, batch_tx));

    let writer = Writer {
        svc: svc.clone(),
        pool: db::pool(svc.db()),
        import: id,
        org,
        opts: Arc::new(opts),
        catalogue: Arc::new(catalogue),
        data_key: dkey,
        created_by: imp.created_by,
        consent_hash: imp.consent_hash.clone(),
    };
    let written = writer::write_all(&writer, &mut batch_rx, errors_kept).await;
    drop(batch_rx);
    let parsed = parser.await.map_err(|_| ServiceError::internal("import parser task failed"))?;
    let _ = feeder.await;
    if !written? {
        return Ok(());
    }
    match parsed {
        Ok(()) => finish(svc, id, org, "completed", None, imp.created_by).await,
        Err(message) => finish(svc, id, org, "failed", Some(message), imp.created_by).await,
    }
}
