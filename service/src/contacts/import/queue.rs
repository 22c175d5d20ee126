//! The import's jobs, pushed through the typed job adapter (`crate::outbox`) inside the caller's
//! transaction, so a job exists if and only if the change that asks for it commits.

use super::ImportJob;
use crate::contacts::lists::OptInEmail;
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
    outbox::push(txn, &ImportJob { import_id }).await?;
    Ok(())
}

/// Add the imported contacts to the chosen lists and, for each membership that starts `pending`
/// (a double opt-in list), queue its opt-in email, in the batch's transaction. The payload holds
/// ids only.
pub(super) async fn add_members_queueing_optins(
    tx: &mut Transaction<'static, Postgres>,
    org: OrganisationId,
    contacts: &[Uuid],
    list_ids: &[Uuid],
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let pending: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "WITH ins AS (
            INSERT INTO list_member (organisation_id, list_id, contact_id, status, source, created_at, updated_at)
            SELECT $1, l.id, c.id, CASE WHEN l.double_opt_in THEN 'pending' ELSE 'subscribed' END, 'import', $4, $4
            FROM unnest($2::uuid[]) AS c(id) CROSS JOIN contact_list l
            WHERE l.id = ANY($3) AND l.organisation_id = $1
            ON CONFLICT (list_id, contact_id) DO NOTHING
            RETURNING list_id, contact_id, status)
         SELECT list_id, contact_id FROM ins WHERE status = 'pending'",
    )
    .bind(org.0)
    .bind(contacts)
    .bind(list_ids)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    let jobs: Vec<OptInEmail> = pending
        .into_iter()
        .map(|(list_id, contact_id)| OptInEmail { organisation_id: org.0, list_id, contact_id })
        .collect();
    outbox::push_all(tx, &jobs).await?;
    Ok(())
}
