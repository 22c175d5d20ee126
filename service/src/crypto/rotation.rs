//! Key rotation and crypto-shredding.
//!
//! - Root key: every wrapped key is unwrapped with the current root key and re-wrapped with the new
//!   one in one transaction; data is untouched. The operator then switches the configuration.
//! - Data key: a new version becomes active at once (new writes use it); a background job re-seals
//!   the organisation's rows in batches while the app keeps working (reads open either version), then
//!   marks the rotation complete. The old key stays on record, retired.
//! - Deleting an organisation destroys its keys: its sealed data can never be opened again.

use super::keyring::{KeyPurpose, KeyRing, RootKey};
use super::seal::{Aad, Sealed};
use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::outbox;
use crate::services::Services;
use domain::audit::{AuditAction, AuditOutcome};
use domain::ids::OrganisationId;
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The job payload: ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationJob {
    pub rotation_id: Uuid,
}

/// Re-wrap every key under `new_root`. Returns how many keys were re-wrapped.
pub async fn rotate_root(svc: &Services, new_root: RootKey) -> ServiceResult<u64> {
    let txn = svc.db().begin().await?;
    let rows = db::all(
        &txn,
        "SELECT id, organisation_id, purpose, version, wrapped FROM wrapped_key WHERE destroyed_at IS NULL FOR UPDATE",
        [],
    )
    .await?;
    let mut n = 0;
    for r in rows {
        let id: Uuid = db::get(&r, "id")?;
        let org: Option<Uuid> = db::get(&r, "organisation_id")?;
        let purpose = match db::get::<String>(&r, "purpose")?.as_str() {
            "data" => KeyPurpose::Data,
            "blind_index" => KeyPurpose::BlindIndex,
            _ => KeyPurpose::AuditMac,
        };
        let version: i32 = db::get(&r, "version")?;
        let wrapped: Vec<u8> = db::get(&r, "wrapped")?;
        let rewrapped = svc.keys().rewrap(&new_root, &wrapped, id, org.map(OrganisationId), purpose, version)?;
        db::exec(
            &txn,
            "UPDATE wrapped_key SET wrapped = $2, root_key_id = $3 WHERE id = $1",
            [id.into(), rewrapped.into(), new_root.id().to_string().into()],
        )
        .await?;
        n += 1;
    }
    audit::record(
        svc,
        &txn,
        AuditRecord::new(None, AuditActor::System, AuditAction::RootKeyRotated, AuditOutcome::Success)
            .detail("keys", n)
            .detail("new_root_key_id", new_root.id().to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(n)
}

/// Start rotating an organisation's data key: the new key is active immediately; the job re-seals.
pub async fn start_data_rotation(svc: &Services, actor: &Actor) -> ServiceResult<Uuid> {
    actor.require(domain::Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let old = svc.keys().active_key(svc.db(), svc.clock(), Some(org), KeyPurpose::Data).await?;
    let txn = svc.db().begin().await?;
    db::exec(&txn, "SELECT pg_advisory_xact_lock(hashtext('key-rotation:' || $1::text))", [org.0.into()]).await?;
    let running =
        db::one(&txn, "SELECT id FROM key_rotation WHERE organisation_id = $1 AND status = 'running'", [org.0.into()])
            .await?;
    if running.is_some() {
        return Err(ServiceError::conflict("A data key rotation is already running for this organisation."));
    }
    let new_id = svc.keys().create_next_version(&txn, svc.clock(), org, KeyPurpose::Data, old.id, old.version).await?;
    let rotation = Uuid::now_v7();
    db::exec(
        &txn,
        "INSERT INTO key_rotation (id, organisation_id, old_key_id, new_key_id, status, started_at) VALUES ($1, $2, $3, $4, 'running', $5)",
        [rotation.into(), org.0.into(), old.id.into(), new_id.into(), svc.clock().now().into()],
    )
    .await?;
    outbox::enqueue(
        &txn,
        outbox::queue::KEY_ROTATION,
        &RotationJob { rotation_id: rotation },
        25,
        Some(format!("rotation:{rotation}")),
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::DataKeyRotationStarted)
            .target("key", new_id)
            .detail("old_key", old.id.to_string()),
    )
    .await?;
    txn.commit().await?;
    svc.keys().forget_active(Some(org), KeyPurpose::Data);
    Ok(rotation)
}

/// The sealed columns that live under an organisation's data key: (table, column). Rows are
/// identified by `id` and belong to `organisation_id`.
const SEALED: &[(&str, &str)] = &[
    ("contact", "email"),
    ("contact", "first_name"),
    ("contact", "last_name"),
    ("contact", "phone"),
    ("contact", "date_of_birth"),
    ("contact", "phi_attrs"),
    ("app_user", "totp_secret"),
    ("dev_mailbox", "recipient"),
    ("dev_mailbox", "subject"),
    ("dev_mailbox", "message"),
    ("sending_domain", "dkim_key"),
];

const BATCH: i64 = 500;

/// Re-seal every value under the old key with the new one (the rotation job). Resumable: each batch
/// commits on its own and only rows still under the old key are picked up.
pub async fn process_data_rotation(svc: &Services, rotation: Uuid) -> ServiceResult<u64> {
    let row = db::one(
        svc.db(),
        "SELECT organisation_id, old_key_id, new_key_id, status FROM key_rotation WHERE id = $1",
        [rotation.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    if db::get::<String>(&row, "status")? != "running" {
        return Ok(0);
    }
    let org = OrganisationId(db::get(&row, "organisation_id")?);
    let old_id: Uuid = db::get(&row, "old_key_id")?;
    let new_id: Uuid = db::get(&row, "new_key_id")?;
    let old = svc.keys().key_by_id(svc.db(), old_id).await?;
    let new = svc.keys().key_by_id(svc.db(), new_id).await?;
    let mut total = 0u64;
    for (table, column) in SEALED {
        loop {
            let txn = svc.db().begin().await?;
            let rows = db::all(
                &txn,
                &format!(
                    "SELECT id, {column} AS v FROM {table} WHERE organisation_id = $1 AND {column} IS NOT NULL
                       AND substring({column} FROM 2 FOR 16) = $2 LIMIT $3 FOR UPDATE SKIP LOCKED"
                ),
                [org.0.into(), old_id.as_bytes().to_vec().into(), BATCH.into()],
            )
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let id: Uuid = db::get(r, "id")?;
                let aad = Aad { organisation: org, table, column, row: id };
                let plain = old.open(&aad, &Sealed::from_bytes(db::get(r, "v")?)?)?;
                let resealed = new.seal(&aad, &plain)?;
                db::exec(
                    &txn,
                    &format!("UPDATE {table} SET {column} = $2 WHERE id = $1"),
                    [id.into(), resealed.into_bytes().into()],
                )
                .await?;
            }
            total += rows.len() as u64;
            db::exec(
                &txn,
                "UPDATE key_rotation SET rows_done = rows_done + $2 WHERE id = $1",
                [rotation.into(), (rows.len() as i64).into()],
            )
            .await?;
            txn.commit().await?;
        }
    }
    let txn = svc.db().begin().await?;
    db::exec(
        &txn,
        "UPDATE key_rotation SET status = 'completed', finished_at = $2 WHERE id = $1",
        [rotation.into(), svc.clock().now().into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(Some(org), AuditActor::System, AuditAction::DataKeyRotated, AuditOutcome::Success)
            .target("key", new_id)
            .detail("values_resealed", total),
    )
    .await?;
    txn.commit().await?;
    Ok(total)
}

/// Delete an organisation: sessions end, and every key it owns is destroyed, so its sealed data
/// (contacts, authenticator secrets, captured mail) can never be decrypted again.
pub async fn delete_organisation(svc: &Services, org: OrganisationId) -> ServiceResult<u64> {
    let txn = svc.db().begin().await?;
    let now = svc.clock().now();
    let n = db::exec(
        &txn,
        "UPDATE organisation SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        [org.0.into(), now.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    db::exec(&txn, "UPDATE user_session SET revoked_at = $2, revoked_reason = 'organisation_deleted' WHERE organisation_id = $1 AND revoked_at IS NULL", [org.0.into(), now.into()]).await?;
    db::exec(
        &txn,
        "UPDATE app_user SET status = 'disabled', updated_at = $2 WHERE organisation_id = $1",
        [org.0.into(), now.into()],
    )
    .await?;
    let keys = db::exec(
        &txn,
        "UPDATE wrapped_key SET wrapped = ''::bytea, destroyed_at = $2, retired_at = COALESCE(retired_at, $2) WHERE organisation_id = $1 AND destroyed_at IS NULL",
        [org.0.into(), now.into()],
    )
    .await?;
    db::exec(
        &txn,
        "DELETE FROM import_chunk WHERE import_id IN (SELECT id FROM contact_import WHERE organisation_id = $1)",
        [org.0.into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(Some(org), AuditActor::System, AuditAction::OrganisationDeleted, AuditOutcome::Success)
            .target("organisation", org)
            .detail("keys_destroyed", keys),
    )
    .await?;
    txn.commit().await?;
    svc.keys().forget_organisation(org);
    Ok(keys)
}

impl KeyRing {
    /// Unwrap with this ring's root key and wrap with another (root rotation).
    pub fn rewrap(
        &self,
        new_root: &RootKey,
        wrapped: &[u8],
        id: Uuid,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        version: i32,
    ) -> ServiceResult<Vec<u8>> {
        let plain = self.root().unwrap_key(wrapped, id, org, purpose, version)?;
        new_root.wrap_key(&plain, id, org, purpose, version)
    }
}
