//! CSV import. The upload is sealed in 1 MiB chunks in the database (the file never touches disk in
//! plaintext); an apalis job streams it back through a CSV parser in bounded memory, validates and
//! seals each row, and upserts batches with COPY. Each batch commits together with the import's
//! checkpoint (rows done), so a retried or resumed job continues exactly where the last commit left
//! off: no contact is lost or duplicated (contacts are also unique per blind index).
//!
//! Row errors record the row number, the column and what is wrong — never the value.

use super::record::{self, ContactRecord, SealedContact};
use super::{bidx_key, consent, data_key, email_bidx, fields};
use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::crypto::keyring::DataKey;
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::outbox;
use crate::pgcopy::CopyBuf;
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::audit::{AuditAction, AuditOutcome};
use domain::contacts::{
    BuiltinField, ConsentSource, CustomField, Dedupe, FieldChoice, ImportOptions, ImportPreview, ImportView,
    guess_field,
};
use domain::ids::{OrganisationId, UserId};
use domain::{Permission, Phi};
use futures::{Stream, StreamExt};
use sea_orm::sqlx::{self, PgPool, Postgres, Row, Transaction};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const CHUNK_BYTES: usize = 1 << 20;
pub const BATCH_ROWS: usize = 5_000;
pub const MAX_ERRORS_KEPT: i64 = 100_000;
pub const PREVIEW_ROWS: usize = 5;
pub const MAX_COLUMNS: usize = 200;
/// An upload nobody starts is deleted (its sealed chunks and header row) after this long.
pub const UNSTARTED_TTL_HOURS: i64 = 24;
/// Expired uploads handled per maintenance run (the rest wait for the next run).
const EXPIRE_BATCH: i64 = 500;

/// The job payload: ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportJob {
    pub import_id: Uuid,
}

impl crate::outbox::Job for ImportJob {
    const QUEUE: &'static str = crate::outbox::queue::IMPORT;
    const MAX_ATTEMPTS: i32 = 25;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("import:{}", self.import_id))
    }
}

fn sqlx_err(e: sqlx::Error) -> ServiceError {
    ServiceError::from(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(Arc::new(e))))
}

fn chunk_aad(org: OrganisationId, import: Uuid, column: &str) -> Aad<'_> {
    Aad { organisation: org, table: "import_chunk", column, row: import }
}

fn pool(svc: &Services) -> PgPool {
    svc.db().get_postgres_connection_pool().clone()
}

const VIEW_COLS: &str = "id, status, file_bytes, bytes_done, rows_done, rows_created, rows_updated, rows_skipped, rows_failed, rows_kept_withdrawn, failure, created_at, finished_at";

fn view(r: &sea_orm::QueryResult) -> ServiceResult<ImportView> {
    Ok(ImportView {
        id: db::get(r, "id")?,
        status: db::get(r, "status")?,
        file_bytes: db::get(r, "file_bytes")?,
        bytes_done: db::get(r, "bytes_done")?,
        rows_done: db::get(r, "rows_done")?,
        rows_created: db::get(r, "rows_created")?,
        rows_updated: db::get(r, "rows_updated")?,
        rows_skipped: db::get(r, "rows_skipped")?,
        rows_failed: db::get(r, "rows_failed")?,
        rows_kept_withdrawn: db::get(r, "rows_kept_withdrawn")?,
        failure: db::get(r, "failure")?,
        created_at: db::get(r, "created_at")?,
        finished_at: db::get(r, "finished_at")?,
    })
}

pub async fn status(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<ImportView> {
    actor.require(Permission::ContactsWrite)?;
    let row = db::one(
        svc.db(),
        &format!("SELECT {VIEW_COLS} FROM contact_import WHERE id = $1 AND organisation_id = $2"),
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    view(&row)
}

pub async fn recent(svc: &Services, actor: &Actor) -> ServiceResult<Vec<ImportView>> {
    actor.require(Permission::ContactsWrite)?;
    let rows = db::all(
        svc.db(),
        &format!("SELECT {VIEW_COLS} FROM contact_import WHERE organisation_id = $1 AND status <> 'uploading' ORDER BY created_at DESC LIMIT 20"),
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.iter().map(view).collect()
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
        Some(c) => read_headers(c, seq == 1),
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

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn csv_reader<R: Read>(r: R, delimiter: u8) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(r)
}

/// The delimiters a file may use, in order of preference when several fit as well.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];
/// Rows (header included) looked at to tell the delimiter.
const SNIFF_ROWS: usize = 20;

/// Which delimiter the file uses (spreadsheets in many locales save CSV with semicolons; some
/// tools export tabs). The file is not told which, so the first rows decide, read by the `csv`
/// parser itself (quotes respected): a candidate must split the header into more than one column;
/// among those, the one under which most of the first rows have the header's width wins, then the
/// one with more columns, then the order above. When none splits the header, the file has one
/// column and the comma reads it. The same bytes always give the same answer, so the upload, the
/// preview and the job agree without storing it.
pub fn detect_delimiter(first_chunk: &[u8]) -> u8 {
    let mut best: Option<(usize, usize, u8)> = None;
    for d in DELIMITERS {
        let mut rdr = csv_reader(strip_bom(first_chunk), d);
        let mut rec = csv::ByteRecord::new();
        let mut width = 0;
        let mut fitting = 0;
        for i in 0..SNIFF_ROWS {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) if i == 0 => {
                    width = rec.len();
                    fitting = 1;
                }
                Ok(true) => fitting += usize::from(rec.len() == width),
                _ => break,
            }
        }
        if width > 1 && best.is_none_or(|(f, w, _)| (fitting, width) > (f, w)) {
            best = Some((fitting, width, d));
        }
    }
    best.map_or(b',', |(_, _, d)| d)
}

/// The delimiter in words, for the mapping screen.
pub fn delimiter_name(d: u8) -> &'static str {
    match d {
        b';' => "semicolons",
        b'\t' => "tabs",
        _ => "commas",
    }
}

/// The header row (column names) of the file. `whole` says the chunk is the whole file: a file
/// with a header row and nothing under it is refused (an import of nobody is a mistake).
fn read_headers(first_chunk: &[u8], whole: bool) -> ServiceResult<Vec<String>> {
    if first_chunk.contains(&0) {
        return Err(ServiceError::invalid("file", "is not a text CSV file (it contains binary data)"));
    }
    let mut rdr = csv_reader(strip_bom(first_chunk), detect_delimiter(first_chunk));
    let mut rec = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => {}
        Ok(false) => return Err(ServiceError::invalid("file", "has no header row")),
        Err(_) => return Err(ServiceError::invalid("file", "is not a CSV file Hermetic can read")),
    }
    if rec.len() > MAX_COLUMNS {
        return Err(ServiceError::invalid("file", format!("has more than {MAX_COLUMNS} columns")));
    }
    if rec.is_empty() || rec.iter().all(|f| f.trim_ascii().is_empty()) {
        return Err(ServiceError::invalid("file", "has an empty header row"));
    }
    let headers = rec.iter().map(|f| String::from_utf8_lossy(f).trim().chars().take(100).collect()).collect();
    if whole {
        let mut data = false;
        while let Ok(true) = rdr.read_byte_record(&mut rec) {
            if rec.iter().any(|f| !f.trim_ascii().is_empty()) {
                data = true;
                break;
            }
        }
        if !data {
            return Err(ServiceError::invalid(
                "file",
                "has a header row but no contacts under it: add one row per contact below the header and upload it again",
            ));
        }
    }
    Ok(headers)
}

struct ImportRow {
    org: OrganisationId,
    created_by: Option<Uuid>,
    status: String,
    chunks: i32,
    headers: Vec<String>,
    options: Option<ImportOptions>,
    rows_done: i64,
    consent_hash: Option<Vec<u8>>,
}

async fn load_import<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    id: Uuid,
    org: Option<OrganisationId>,
) -> ServiceResult<ImportRow> {
    let row = db::one(
        conn,
        "SELECT organisation_id, created_by, status, chunks, headers, mapping, dedupe, list_ids, consent_purpose, consent_text_hash, rows_done
         FROM contact_import WHERE id = $1 AND ($2::uuid IS NULL OR organisation_id = $2)",
        [id.into(), org.map(|o| o.0).into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let org = OrganisationId(db::get(&row, "organisation_id")?);
    let headers: Vec<String> = match db::get::<Option<Vec<u8>>>(&row, "headers")? {
        Some(b) => {
            let key = svc.keys().key_by_id(conn, Sealed::from_bytes(b.clone())?.key_id()).await?;
            let plain = key.open(&chunk_aad(org, id, "headers"), &Sealed::from_bytes(b)?)?;
            serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("headers"))?
        }
        None => vec![],
    };
    let mapping: Option<serde_json::Value> = db::get(&row, "mapping")?;
    let options = match mapping {
        Some(m) => Some(ImportOptions {
            mapping: serde_json::from_value(m).map_err(|_| ServiceError::internal("mapping"))?,
            dedupe: match db::get::<Option<String>>(&row, "dedupe")?.as_deref() {
                Some("skip") => Dedupe::Skip,
                _ => Dedupe::Update,
            },
            list_ids: db::get::<Vec<Uuid>>(&row, "list_ids")?,
            consent_purpose: db::get::<Option<String>>(&row, "consent_purpose")?
                .and_then(|p| domain::contacts::ConsentPurpose::parse(&p)),
            consent_text: None,
        }),
        None => None,
    };
    Ok(ImportRow {
        org,
        created_by: db::get(&row, "created_by")?,
        status: db::get(&row, "status")?,
        chunks: db::get(&row, "chunks")?,
        headers,
        options,
        rows_done: db::get(&row, "rows_done")?,
        consent_hash: db::get(&row, "consent_text_hash")?,
    })
}

async fn open_chunk(svc: &Services, org: OrganisationId, id: Uuid, seq: i32) -> ServiceResult<Vec<u8>> {
    let row =
        db::one(svc.db(), "SELECT data FROM import_chunk WHERE import_id = $1 AND seq = $2", [id.into(), seq.into()])
            .await?
            .ok_or_else(|| ServiceError::internal("import chunk missing"))?;
    let sealed = Sealed::from_bytes(db::get(&row, "data")?)?;
    let key = svc.keys().key_by_id(svc.db(), sealed.key_id()).await?;
    let column = format!("data:{seq}");
    Ok(key.open(&chunk_aad(org, id, &column), &sealed)?.to_vec())
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
    let delimiter = detect_delimiter(&data[..first_len]);
    let mut rdr = csv_reader(strip_bom(&data), delimiter);
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    while rows.len() < PREVIEW_ROWS {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) if first => first = false,
            Ok(true) => rows
                .push(rec.iter().map(|f| Phi::new(String::from_utf8_lossy(f).chars().take(200).collect())).collect()),
            _ => break,
        }
    }
    let catalogue = fields::catalogue(svc, svc.db(), imp.org).await?;
    Ok(ImportPreview {
        import_id: id,
        suggested: imp.headers.iter().map(|h| guess_field(h, &catalogue)).collect(),
        headers: imp.headers.into_iter().map(Phi::new).collect(),
        rows,
        fields: field_choices(&catalogue),
        delimiter: delimiter_name(delimiter).to_string(),
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
pub async fn expire_unstarted(svc: &Services) -> ServiceResult<u64> {
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let rows = db::all(
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
    let ids: Vec<Uuid> = rows.iter().map(|r| db::get::<Uuid>(r, "id")).collect::<Result<_, _>>()?;
    db::exec(&txn, "DELETE FROM import_chunk WHERE import_id = ANY($1)", [ids.clone().into()]).await?;
    for r in &rows {
        audit::record(
            svc,
            &txn,
            AuditRecord::new(
                Some(OrganisationId(db::get(r, "organisation_id")?)),
                AuditActor::System,
                AuditAction::ImportExpired,
                AuditOutcome::Success,
            )
            .target("import", db::get::<Uuid>(r, "id")?)
            .detail("uploaded_by", db::get::<Option<Uuid>>(r, "created_by")?.map(|u| u.to_string()))
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
    outbox::enqueue(&txn, outbox::queue::IMPORT, &ImportJob { import_id: id }, 25, Some(format!("import:{id}")))
        .await?;
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

/// The row-level error report as CSV: row, column, problem (no cell values).
pub async fn error_report(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<String> {
    actor.require(Permission::ContactsWrite)?;
    status(svc, actor, id).await?;
    let rows = db::all(svc.db(), "SELECT row_number, column_name, message FROM import_error WHERE import_id = $1 ORDER BY row_number, column_name", [id.into()]).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["row", "column", "problem"]);
    for r in rows {
        let row: i64 = db::get(&r, "row_number")?;
        let col: String = db::get(&r, "column_name")?;
        let msg: String = db::get(&r, "message")?;
        let _ = w.write_record([
            row.to_string(),
            domain::contacts::neutralise_csv_cell(&col).into_owned(),
            domain::contacts::neutralise_csv_cell(&msg).into_owned(),
        ]);
    }
    String::from_utf8(w.into_inner().map_err(|_| ServiceError::internal("csv"))?)
        .map_err(|_| ServiceError::internal("csv"))
}

// ---------------------------------------------------------------------------------------------
// Processing

/// A validated row ready to write, sealed for a new contact id (re-sealed if it updates one).
struct Prepared {
    bidx: Vec<u8>,
    rec: ContactRecord,
    new_id: Uuid,
    sealed: SealedContact,
}

struct RowError {
    row: i64,
    column: String,
    message: String,
}

struct Batch {
    rows: Vec<Prepared>,
    errors: Vec<RowError>,
    last_row: i64,
    bytes: u64,
    /// Rows that repeated an address already in this batch (merged, or skipped).
    dup_updated: i64,
    dup_skipped: i64,
    /// A row repeats an address of the previous batch: write this batch only after that one
    /// commits (two open transactions inserting one address would wait on each other).
    after_previous: bool,
}

impl Batch {
    fn new(last_row: i64) -> Self {
        Batch {
            rows: Vec::with_capacity(BATCH_ROWS),
            errors: Vec::new(),
            last_row,
            bytes: 0,
            dup_updated: 0,
            dup_skipped: 0,
            after_previous: false,
        }
    }
}

/// A later row for the same address fills in or overrides the earlier one's fields.
fn merge(into: &mut ContactRecord, from: ContactRecord) {
    into.first_name = from.first_name.or(into.first_name.take());
    into.last_name = from.last_name.or(into.last_name.take());
    into.phone = from.phone.or(into.phone.take());
    into.date_of_birth = from.date_of_birth.or(into.date_of_birth.take());
    into.time_zone = from.time_zone.or(into.time_zone.take());
    into.locale = from.locale.or(into.locale.take());
    into.attrs.extend(from.attrs);
    let mut phi = std::mem::take(&mut into.phi_attrs).into_inner();
    phi.extend(from.phi_attrs.into_inner());
    into.phi_attrs = Phi::new(phi);
}

/// A `Read` over decrypted chunks arriving on a channel (the parser runs on a blocking thread).
struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
    first: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = out.len().min(self.cur.len() - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                    if self.first {
                        self.first = false;
                        if self.cur.starts_with(b"\xEF\xBB\xBF") {
                            self.pos = 3;
                        }
                    }
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
    }
}

struct ParseCtx {
    org: OrganisationId,
    mapping: Vec<Option<String>>,
    columns: usize,
    catalogue: Vec<CustomField>,
    data_key: Arc<DataKey>,
    bidx_key: Arc<DataKey>,
    skip: i64,
    dedupe: Dedupe,
    delimiter: u8,
}

fn parse_row(ctx: &ParseCtx, row: i64, rec: &csv::ByteRecord) -> Result<Prepared, Vec<RowError>> {
    let err = |column: &str, message: &str| RowError { row, column: column.to_string(), message: message.to_string() };
    if rec.len() != ctx.columns {
        return Err(vec![err("(row)", &format!("has {} columns; the header has {}", rec.len(), ctx.columns))]);
    }
    let mut raw = BTreeMap::new();
    let mut errors = Vec::new();
    for (field, key) in rec.iter().zip(&ctx.mapping) {
        let Some(key) = key else { continue };
        match std::str::from_utf8(field) {
            Ok(v) => {
                raw.insert(key.clone(), Phi::new(v.to_string()));
            }
            Err(_) => errors.push(err(key, "is not valid UTF-8 text (save the file as UTF-8)")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let rec = record::validate(&raw, &ctx.catalogue)
        .map_err(|es| es.into_iter().map(|e| err(&e.field, &e.message)).collect::<Vec<_>>())?;
    let new_id = Uuid::now_v7();
    let sealed =
        record::seal(&ctx.data_key, ctx.org, new_id, &rec).map_err(|_| vec![err("(row)", "could not be encrypted")])?;
    Ok(Prepared { bidx: email_bidx(&ctx.bidx_key, rec.email.expose()), rec, new_id, sealed })
}

/// Parse the stream on a blocking thread, sending validated, sealed batches. Returns Err with a
/// value-free message when the file cannot be read as CSV.
fn parse_all(ctx: ParseCtx, reader: ChunkReader, out: mpsc::Sender<Batch>) -> Result<(), String> {
    let mut rdr = csv_reader(reader, ctx.delimiter);
    let mut rec = csv::ByteRecord::new();
    let mut row: i64 = -1; // the header row is row 0
    let mut batch = Batch::new(0);
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut previous: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map(|p| p.record() as i64).unwrap_or(row + 1);
                return Err(match e.kind() {
                    csv::ErrorKind::Io(_) => "the uploaded file could not be read back".to_string(),
                    _ => format!("the file is not valid CSV near row {at}"),
                });
            }
        }
        row += 1;
        if row == 0 || row <= ctx.skip {
            continue;
        }
        match parse_row(&ctx, row, &rec) {
            Ok(p) => match seen.get(&p.bidx) {
                Some(&i) if ctx.dedupe == Dedupe::Update => {
                    let earlier = &mut batch.rows[i];
                    merge(&mut earlier.rec, p.rec);
                    match record::seal(&ctx.data_key, ctx.org, earlier.new_id, &earlier.rec) {
                        Ok(s) => earlier.sealed = s,
                        Err(_) => batch.errors.push(RowError {
                            row,
                            column: "(row)".into(),
                            message: "could not be encrypted".into(),
                        }),
                    }
                    batch.dup_updated += 1;
                }
                Some(_) => batch.dup_skipped += 1,
                None => {
                    if previous.contains(&p.bidx) {
                        batch.after_previous = true;
                    }
                    seen.insert(p.bidx.clone(), batch.rows.len());
                    batch.rows.push(p);
                }
            },
            Err(es) => batch.errors.extend(es),
        }
        batch.last_row = row;
        if batch.rows.len() + batch.errors.len() >= BATCH_ROWS {
            batch.bytes = rdr.position().byte();
            previous = std::mem::take(&mut seen).into_keys().collect();
            let full = std::mem::replace(&mut batch, Batch::new(row));
            if out.blocking_send(full).is_err() {
                return Ok(()); // the writer stopped (cancelled or failed)
            }
        }
    }
    batch.bytes = rdr.position().byte();
    if batch.last_row > ctx.skip || !batch.rows.is_empty() || !batch.errors.is_empty() {
        let _ = out.blocking_send(batch);
    }
    Ok(())
}

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
struct Writer {
    svc: Services,
    pool: PgPool,
    import: Uuid,
    org: OrganisationId,
    opts: Arc<ImportOptions>,
    catalogue: Arc<Vec<CustomField>>,
    data_key: Arc<DataKey>,
    created_by: Option<Uuid>,
    consent_hash: Option<Vec<u8>>,
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
            sqlx::query("SELECT id, email_bidx, phi_attrs FROM contact WHERE organisation_id = $1 AND email_bidx = ANY($2) FOR UPDATE")
                .bind(self.org.0)
                .bind(&bidxs)
                .fetch_all(&mut *tx)
                .await
                .map_err(sqlx_err)?
                .into_iter()
                .map(|r| (r.get::<Vec<u8>, _>(1), (r.get::<Uuid, _>(0), r.get::<Option<Vec<u8>>, _>(2))))
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
            sqlx::query(
                "WITH ins AS (
                    INSERT INTO list_member (organisation_id, list_id, contact_id, status, source, created_at, updated_at)
                    SELECT $1, l.id, c.id, CASE WHEN l.double_opt_in THEN 'pending' ELSE 'subscribed' END, 'import', $4, $4
                    FROM unnest($2::uuid[]) AS c(id) CROSS JOIN contact_list l
                    WHERE l.id = ANY($3) AND l.organisation_id = $1
                    ON CONFLICT (list_id, contact_id) DO NOTHING
                    RETURNING list_id, contact_id, status)
                 INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
                 SELECT apalis.generate_ulid(), $5,
                        convert_to(json_build_object('organisation_id', $1, 'list_id', list_id, 'contact_id', contact_id)::text, 'UTF8'),
                        'Pending', 0, 5, now(), 0
                 FROM ins WHERE status = 'pending'",
            )
            .bind(self.org.0)
            .bind(&touched)
            .bind(&self.opts.list_ids)
            .bind(now)
            .bind(outbox::queue::OPTIN_EMAIL)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
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
    let counts = db::one(
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
        for k in ["rows_created", "rows_updated", "rows_skipped", "rows_failed", "rows_kept_withdrawn"] {
            rec = rec.detail(k, db::get::<i64>(&c, k)?);
        }
    }
    audit::record(svc, &txn, rec).await?;
    txn.commit().await?;
    Ok(())
}

/// Batches in flight at once (see `Writer`).
const WRITERS: usize = 2;

type InFlight = std::collections::VecDeque<(tokio::task::JoinHandle<ServiceResult<Stage>>, Arc<Batch>)>;

/// Write every batch the parser sends. Returns false when the import was cancelled.
async fn write_all(writer: &Writer, rx: &mut mpsc::Receiver<Batch>, mut errors_kept: i64) -> ServiceResult<bool> {
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
        delimiter: if imp.chunks > 0 { detect_delimiter(&open_chunk(svc, org, id, 0).await?) } else { b',' },
    };
    let errors_kept: i64 =
        db::one(svc.db(), "SELECT count(*) AS n FROM import_error WHERE import_id = $1", [id.into()])
            .await?
            .map(|r| db::get(&r, "n"))
            .transpose()?
            .unwrap_or(0);

    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Vec<u8>, String>>(2);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(2);
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
    let reader = ChunkReader { rx: chunk_rx, cur: Vec::new(), pos: 0, first: true };
    let parser = tokio::task::spawn_blocking(move || parse_all(ctx, reader, batch_tx));

    let writer = Writer {
        svc: svc.clone(),
        pool: pool(svc),
        import: id,
        org,
        opts: Arc::new(opts),
        catalogue: Arc::new(catalogue),
        data_key: dkey,
        created_by: imp.created_by,
        consent_hash: imp.consent_hash.clone(),
    };
    let written = write_all(&writer, &mut batch_rx, errors_kept).await;
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
