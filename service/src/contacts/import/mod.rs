//! CSV import. The upload is sealed in 1 MiB chunks in the database (the file never touches disk in
//! plaintext); an apalis job streams it back through a CSV parser in bounded memory, validates and
//! seals each row, and upserts batches with COPY. Each batch commits together with the import's
//! checkpoint (rows done), so a retried or resumed job continues exactly where the last commit left
//! off: no contact is lost or duplicated (contacts are also unique per blind index).
//!
//! Row errors record the row number, the column and what is wrong — never the value.
//!
//! - [`usecases`]: what users and the job do (upload, preview, start, cancel, status, the error
//!   report, expiry, and `process`, the job's body), re-exported here;
//! - [`parse`]: the CSV side, pure: delimiter sniffing, the header row, and rows → validated,
//!   sealed batches (unit-tested on hostile files);
//! - [`writer`]: the COPY writer that stages and commits batches in file order;
//! - [`queue`]: the only code here that knows apalis' tables (the import job and the opt-in emails).

pub mod parse;
mod queue;
pub mod usecases;
mod writer;

pub use parse::{delimiter_name, detect_delimiter};
pub(crate) use usecases::expire_unstarted;
pub use usecases::{cancel, error_report, preview, process, recent, start, status, upload};

use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::contacts::{Dedupe, ImportOptions};
use domain::ids::OrganisationId;
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const CHUNK_BYTES: usize = 1 << 20;
pub const BATCH_ROWS: usize = 5_000;
pub const MAX_ERRORS_KEPT: i64 = 100_000;
pub const PREVIEW_ROWS: usize = 5;
pub const MAX_COLUMNS: usize = 200;
/// An upload nobody starts is deleted (its sealed chunks and header row) after this long.
pub const UNSTARTED_TTL_HOURS: i64 = 24;

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

fn chunk_aad(org: OrganisationId, import: Uuid, column: &str) -> Aad<'_> {
    Aad { organisation: org, table: "import_chunk", column, row: import }
}

/// An import as the use cases and the job need it (headers opened, mapping parsed).
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

/// `contact_import` as stored.
#[derive(FromQueryResult)]
struct StoredImport {
    organisation_id: Uuid,
    created_by: Option<Uuid>,
    status: String,
    chunks: i32,
    headers: Option<Vec<u8>>,
    mapping: Option<serde_json::Value>,
    dedupe: Option<String>,
    list_ids: Vec<Uuid>,
    consent_purpose: Option<String>,
    consent_text_hash: Option<Vec<u8>>,
    rows_done: i64,
}

async fn load_import<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    id: Uuid,
    org: Option<OrganisationId>,
) -> ServiceResult<ImportRow> {
    let row: StoredImport = db::one_as(
        conn,
        "SELECT organisation_id, created_by, status, chunks, headers, mapping, dedupe, list_ids, consent_purpose, consent_text_hash, rows_done
         FROM contact_import WHERE id = $1 AND ($2::uuid IS NULL OR organisation_id = $2)",
        [id.into(), org.map(|o| o.0).into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let org = OrganisationId(row.organisation_id);
    let headers: Vec<String> = match row.headers {
        Some(b) => {
            let key = svc.keys().key_by_id(conn, Sealed::from_bytes(b.clone())?.key_id()).await?;
            let plain = key.open(&chunk_aad(org, id, "headers"), &Sealed::from_bytes(b)?)?;
            serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("headers"))?
        }
        None => vec![],
    };
    let options = match row.mapping {
        Some(m) => Some(ImportOptions {
            mapping: serde_json::from_value(m).map_err(|_| ServiceError::internal("mapping"))?,
            dedupe: match row.dedupe.as_deref() {
                Some("skip") => Dedupe::Skip,
                _ => Dedupe::Update,
            },
            list_ids: row.list_ids,
            consent_purpose: row.consent_purpose.and_then(|p| domain::contacts::ConsentPurpose::parse(&p)),
            consent_text: None,
        }),
        None => None,
    };
    Ok(ImportRow {
        org,
        created_by: row.created_by,
        status: row.status,
        chunks: row.chunks,
        headers,
        options,
        rows_done: row.rows_done,
        consent_hash: row.consent_text_hash,
    })
}

async fn open_chunk(svc: &Services, org: OrganisationId, id: Uuid, seq: i32) -> ServiceResult<Vec<u8>> {
    let data: Vec<u8> = db::scalar(
        svc.db(),
        "SELECT data FROM import_chunk WHERE import_id = $1 AND seq = $2",
        [id.into(), seq.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("import chunk missing"))?;
    let sealed = Sealed::from_bytes(data)?;
    let key = svc.keys().key_by_id(svc.db(), sealed.key_id()).await?;
    let column = format!("data:{seq}");
    Ok(key.open(&chunk_aad(org, id, &column), &sealed)?.to_vec())
}
