//! Key rotation and crypto-shredding.
//!
//! - Root key: `rotate_root` takes `root_key_state` exclusively (so no process can be inserting a
//!   key under the old root meanwhile: inserts hold it shared), re-wraps every live key under the
//!   target root key (unwrapping each with the root it names), and records the target as current,
//!   all in one transaction; data is untouched. Processes hold the new key as current and the old
//!   one as previous while this happens, so nothing stops; the old key is removed afterwards.
//! - Data key: a new version becomes active at once (new writes use it); a background job re-seals
//!   the organisation's values in every sealed column (`columns::SEALED`) in batches while the app
//!   keeps working (reads open either version). It reports completion only when a full pass finds
//!   no value left under the old key, at least `SETTLE_SECS` after the start (every process has
//!   switched to the new key by then) and when no import that began before the rotation is still
//!   writing. The old key stays on record, retired.
//! - Deleting an organisation destroys its keys, so its sealed data can never be opened again,
//!   stops its work (campaigns cancelled through their state machine, imports and rotations
//!   stopped) and tells every running process at once (NOTIFY, see `revocation`).

use super::columns::{self, SEALED};
use super::keyring::{KeyPurpose, KeyRing, RootKey, current_root_id};
use super::revocation::ORGANISATION_DELETED;
use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::db;
use crate::error::{Internal, ServiceError, ServiceResult};
use crate::outbox;
use crate::services::Services;
use domain::audit::{AuditAction, AuditOutcome};
use domain::ids::OrganisationId;
use sea_orm::{EntityTrait, FromQueryResult, TransactionTrait};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use uuid::Uuid;

/// The job payload: ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationJob {
    pub rotation_id: Uuid,
    /// A later pass of the same rotation (Unix seconds it was scheduled for): one job per pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_at: Option<i64>,
}

impl crate::outbox::Job for RotationJob {
    const QUEUE: &'static str = crate::outbox::queue::KEY_ROTATION;
    const MAX_ATTEMPTS: i32 = 25;
    fn idempotency_key(&self) -> Option<String> {
        Some(match self.pass_at {
            None => format!("rotation:{}", self.rotation_id),
            Some(t) => format!("rotation:{}:{t}", self.rotation_id),
        })
    }
}

/// What a root-key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRotation {
    /// Keys re-wrapped under the target root key.
    pub rewrapped: u64,
    /// The root key that was current before.
    pub previous_root_key_id: String,
    pub root_key_id: String,
}

/// Re-wrap every key under `new_root` (a key file given on the command line) and make it current.
pub async fn rotate_root(svc: &Services, new_root: RootKey) -> ServiceResult<u64> {
    Ok(rotate_root_to(svc, &new_root).await?.rewrapped)
}

/// Re-wrap every key under this process's configured current root key and make it current: the
/// rolling procedure, run once every process holds the new key (current) and the old (previous).
pub async fn rotate_root_to_configured(svc: &Services) -> ServiceResult<RootRotation> {
    rotate_root_to(svc, svc.keys().root()).await
}

async fn rotate_root_to(svc: &Services, target: &RootKey) -> ServiceResult<RootRotation> {
    let txn = svc.db().begin().await?;
    // Exclusive: waits for every key insert in flight (they hold this row shared) and holds off
    // new ones until the commit, after which they see the new current root key.
    let previous: String = db::scalar(&txn, "SELECT root_key_id FROM root_key_state WHERE id = 1 FOR UPDATE", [])
        .await?
        .ok_or_else(|| ServiceError::internal("no current root key is recorded (root_key_state is empty)"))?;
    #[derive(FromQueryResult)]
    struct Wrapped {
        id: Uuid,
        organisation_id: Option<Uuid>,
        purpose: String,
        version: i32,
        wrapped: Vec<u8>,
        root_key_id: String,
    }
    let rows: Vec<Wrapped> = db::all_as(
        &txn,
        "SELECT id, organisation_id, purpose, version, wrapped, root_key_id FROM wrapped_key
         WHERE destroyed_at IS NULL ORDER BY id FOR UPDATE",
        [],
    )
    .await?;
    let mut n = 0;
    for r in rows {
        let from = r.root_key_id;
        if from == target.id() {
            continue;
        }
        let id = r.id;
        let purpose = KeyPurpose::parse(&r.purpose)?;
        let rewrapped = svc.keys().rewrap(
            target,
            &from,
            &r.wrapped,
            id,
            r.organisation_id.map(OrganisationId),
            purpose,
            r.version,
        )?;
        db::exec(
            &txn,
            "UPDATE wrapped_key SET wrapped = $2, root_key_id = $3 WHERE id = $1",
            [id.into(), rewrapped.into(), target.id().to_string().into()],
        )
        .await?;
        n += 1;
    }
    db::exec(
        &txn,
        "UPDATE root_key_state SET root_key_id = $1, updated_at = $2 WHERE id = 1",
        [target.id().to_string().into(), svc.clock().now().into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(None, AuditActor::System, AuditAction::RootKeyRotated, AuditOutcome::Success)
            .detail("keys", n)
            .detail("previous_root_key_id", previous.clone())
            .detail("new_root_key_id", target.id().to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(RootRotation { rewrapped: n, previous_root_key_id: previous, root_key_id: target.id().to_string() })
}

/// Live keys per root key id (what `rotate-root-key` leaves behind: all under the current one).
pub async fn keys_per_root(svc: &Services) -> ServiceResult<(String, Vec<(String, i64)>)> {
    let current = current_root_id(svc.db()).await?;
    #[derive(FromQueryResult)]
    struct PerRoot {
        root_key_id: String,
        n: i64,
    }
    let rows: Vec<PerRoot> = db::all_as(
        svc.db(),
        "SELECT root_key_id, count(*) AS n FROM wrapped_key WHERE destroyed_at IS NULL GROUP BY root_key_id ORDER BY root_key_id",
        [],
    )
    .await?;
    Ok((current, rows.into_iter().map(|r| (r.root_key_id, r.n)).collect()))
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
    outbox::push(&txn, &RotationJob { rotation_id: rotation, pass_at: None }).await?;
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

const BATCH: i64 = 500;

/// How long after a data-key rotation starts before it may complete: far longer than any process
/// keeps using a cached active key (`keyring::REVALIDATE`) or than a request that sealed with it
/// takes to commit.
pub const SETTLE_SECS: i64 = 30;

/// What one run of the rotation job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRotationRun {
    pub resealed: u64,
    /// False when the job must run again later (it has re-enqueued itself).
    pub completed: bool,
}

/// Re-seal every value under the old key with the new one (the rotation job). Resumable: each batch
/// commits on its own and only values still under the old key are picked up.
pub async fn process_data_rotation(svc: &Services, rotation: Uuid) -> ServiceResult<DataRotationRun> {
    let row = entity::key_rotation::Entity::find_by_id(rotation).one(svc.db()).await?.ok_or(ServiceError::NotFound)?;
    if row.status != "running" {
        return Ok(DataRotationRun { resealed: 0, completed: false });
    }
    let org = OrganisationId(row.organisation_id);
    let (old_id, new_id, started_at) = (row.old_key_id, row.new_key_id, row.started_at);
    let old = svc.keys().key_by_id(svc.db(), old_id).await?;
    let new = svc.keys().key_by_id(svc.db(), new_id).await?;
    let mut total = 0u64;
    loop {
        // One pass over every sealed column.
        let mut pass = 0u64;
        for column in SEALED {
            loop {
                let txn = svc.db().begin().await?;
                let n = columns::reseal_batch(&txn, org, column, &old, &new, BATCH).await?;
                if n == 0 {
                    break;
                }
                db::exec(
                    &txn,
                    "UPDATE key_rotation SET rows_done = rows_done + $2 WHERE id = $1 AND status = 'running'",
                    [rotation.into(), (n as i64).into()],
                )
                .await?;
                txn.commit().await?;
                pass += n;
            }
        }
        total += pass;
        if pass > 0 {
            continue;
        }
        // Nothing left that this pass could lock. Complete only once no process can still be
        // sealing under the old key.
        let now = svc.clock().now();
        let settled = now >= started_at + chrono::Duration::seconds(SETTLE_SECS);
        let import_writing = db::one(
            svc.db(),
            "SELECT 1 AS x FROM contact_import WHERE organisation_id = $1 AND created_at < $2
               AND (status IN ('queued', 'running') OR (status = 'uploading' AND created_at > $2 - interval '1 day'))
             LIMIT 1",
            [org.0.into(), started_at.into()],
        )
        .await?
        .is_some();
        // Values locked by others during the pass were skipped: they must be gone too.
        let txn = svc.db().begin().await?;
        let left = columns::count_under_key(&txn, org, old_id).await?;
        if !settled || import_writing || left > 0 {
            let at = (started_at + chrono::Duration::seconds(SETTLE_SECS)).max(now + chrono::Duration::seconds(5));
            outbox::push_at(&txn, &RotationJob { rotation_id: rotation, pass_at: Some(at.timestamp()) }, at).await?;
            txn.commit().await?;
            return Ok(DataRotationRun { resealed: total, completed: false });
        }
        let n = db::exec(
            &txn,
            "UPDATE key_rotation SET status = 'completed', finished_at = $2 WHERE id = $1 AND status = 'running'",
            [rotation.into(), now.into()],
        )
        .await?;
        if n == 0 {
            return Ok(DataRotationRun { resealed: total, completed: false });
        }
        audit::record(
            svc,
            &txn,
            AuditRecord::new(Some(org), AuditActor::System, AuditAction::DataKeyRotated, AuditOutcome::Success)
                .target("key", new_id)
                .detail("values_resealed", total)
                .detail("columns", SEALED.len()),
        )
        .await?;
        txn.commit().await?;
        return Ok(DataRotationRun { resealed: total, completed: true });
    }
}

/// Delete an organisation: sessions end, users are disabled, its running work stops (campaigns
/// cancelled, imports cancelled and their files deleted, key rotations failed), every key it owns
/// is destroyed — so its sealed data (contacts, authenticator secrets, captured mail, events,
/// uploads) can never be decrypted again — and every running process is told at once.
pub async fn delete_organisation(svc: &Services, org: OrganisationId) -> ServiceResult<u64> {
    let txn = svc.db().begin().await?;
    let now = svc.clock().now();
    // First: the row lock orders this against every key insert (which holds it shared).
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
    let campaigns = crate::campaigns::cancel_for_deleted_organisation(svc, &txn, org, now).await?;
    // The status first (row locks order this against an import's batch commit and chunk inserts),
    // then the files.
    let imports = db::exec(
        &txn,
        "UPDATE contact_import SET status = 'cancelled', failure = 'the organisation was deleted', finished_at = $2, updated_at = $2
         WHERE organisation_id = $1 AND status IN ('uploading', 'uploaded', 'queued', 'running')",
        [org.0.into(), now.into()],
    )
    .await?;
    db::exec(
        &txn,
        "DELETE FROM import_chunk WHERE import_id IN (SELECT id FROM contact_import WHERE organisation_id = $1)",
        [org.0.into()],
    )
    .await?;
    // Its sending domains go: their DKIM keys are sealed under keys destroyed below, and a
    // verified claim on a domain must not outlive the organisation (the domain's owner may verify
    // it again elsewhere).
    db::exec(&txn, "DELETE FROM sending_domain WHERE organisation_id = $1", [org.0.into()]).await?;
    db::exec(
        &txn,
        "UPDATE key_rotation SET status = 'failed', finished_at = $2 WHERE organisation_id = $1 AND status = 'running'",
        [org.0.into(), now.into()],
    )
    .await?;
    let keys = db::exec(
        &txn,
        "UPDATE wrapped_key SET wrapped = ''::bytea, destroyed_at = $2, retired_at = COALESCE(retired_at, $2) WHERE organisation_id = $1 AND destroyed_at IS NULL",
        [org.0.into(), now.into()],
    )
    .await?;
    // Delivered to every listening process when (and only if) this transaction commits.
    db::exec(&txn, "SELECT pg_notify($1, $2)", [ORGANISATION_DELETED.into(), org.0.to_string().into()]).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(Some(org), AuditActor::System, AuditAction::OrganisationDeleted, AuditOutcome::Success)
            .target("organisation", org)
            .detail("keys_destroyed", keys)
            .detail("campaigns_cancelled", campaigns)
            .detail("imports_cancelled", imports),
    )
    .await?;
    txn.commit().await?;
    svc.keys().organisation_deleted(org);
    Ok(keys)
}

impl KeyRing {
    /// Unwrap with the root key that wrapped it (`from`, one this ring holds) and wrap with
    /// `target` (root rotation).
    #[allow(clippy::too_many_arguments)]
    pub fn rewrap(
        &self,
        target: &RootKey,
        from: &str,
        wrapped: &[u8],
        id: Uuid,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        version: i32,
    ) -> ServiceResult<Vec<u8>> {
        let root = self.root_by_id(from).ok_or_else(|| {
            ServiceError::Internal(Internal(Cow::Owned(format!(
                "key {id} is wrapped under root key {from}, which this process does not hold: \
                 add that key to previous_root_key_files and run the command again"
            ))))
        })?;
        let plain = root.unwrap_key(wrapped, id, org, purpose, version)?;
        target.wrap_key(&plain, id, org, purpose, version)
    }
}
