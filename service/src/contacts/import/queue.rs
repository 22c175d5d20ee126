//! The import's jobs: the only code in the import that knows apalis' tables. Both writes happen
//! inside the caller's transaction, so a job exists if and only if the change that asks for it
//! commits. (To be replaced by the typed job adapter.)

use super::ImportJob;
use crate::db::sqlx_err;
use crate::error::ServiceResult;
use crate::outbox;
use chrono::{DateTime, Utc};
use domain::ids::OrganisationId;
use sea_orm::DatabaseTransaction;
use sea_orm::sqlx::{self, Postgres, Transaction};
use uuid::Uuid;

/// Queue the job that runs the import (`usecases::process`), inside the transaction that marks
/// the import queued. At most one such job per import (idempotency key `import:<id>`).
pub(super) async fn enqueue_import_job(txn: &DatabaseTransaction, import_id: Uuid) -> ServiceResult<()> {
    outbox::enqueue(txn, outbox::queue::IMPORT, &ImportJob { import_id }, 25, Some(format!("import:{import_id}")))
        .await?;
    Ok(())
}

/// Add the imported contacts to the chosen lists and, for each membership that starts `pending`
/// (a double opt-in list), queue its opt-in email — one statement, in the batch's transaction.
/// The payload holds ids only.
pub(super) async fn add_members_queueing_optins(
    tx: &mut Transaction<'static, Postgres>,
    org: OrganisationId,
    contacts: &[Uuid],
    list_ids: &[Uuid],
    now: DateTime<Utc>,
) -> ServiceResult<()> {
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
    .bind(org.0)
    .bind(contacts)
    .bind(list_ids)
    .bind(now)
    .bind(outbox::queue::OPTIN_EMAIL)
    .execute(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    Ok(())
}
