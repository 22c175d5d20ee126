//! Organisations (tenants) and the demo seed used by `scripts/dev`.

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Role;
use domain::audit::AuditAction;
use domain::ids::OrganisationId;
use sea_orm::{ActiveValue::NotSet, EntityTrait, Set, TransactionTrait};

/// Create an organisation. Only operators (the command line) do this; there is no public sign-up.
pub async fn create(svc: &Services, name: &str) -> ServiceResult<OrganisationId> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("organisation name", "must be 1 to 200 printable characters"));
    }
    let id = OrganisationId::new();
    let txn = svc.db().begin().await?;
    entity::organisation::Entity::insert(entity::organisation::ActiveModel {
        id: Set(id.0),
        name: Set(name.to_string()),
        created_at: Set(svc.clock().now()),
        deleted_at: NotSet,
        time_zone: NotSet,
        report_rebuild_requested_at: NotSet,
    })
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(&Actor::system(id, "cli"), AuditAction::OrganisationCreated).target("organisation", id),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

pub async fn find_by_name(svc: &Services, name: &str) -> ServiceResult<Option<OrganisationId>> {
    let id: Option<uuid::Uuid> = db::scalar(
        svc.db(),
        "SELECT id FROM organisation WHERE name = $1 AND deleted_at IS NULL ORDER BY created_at LIMIT 1",
        [name.trim().to_string().into()],
    )
    .await?;
    Ok(id.map(OrganisationId))
}

#[derive(Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    Created { organisation: OrganisationId },
    AlreadySeeded { organisation: OrganisationId },
}

/// Idempotent demo seed: the organisation and its first administrator.
pub async fn seed_demo(
    svc: &Services,
    org_name: &str,
    admin_email: &str,
    admin_name: &str,
    admin_password: &str,
) -> ServiceResult<SeedOutcome> {
    if let Some(org) = find_by_name(svc, org_name).await? {
        return Ok(SeedOutcome::AlreadySeeded { organisation: org });
    }
    // Validate first, so a bad password does not leave an organisation without an admin.
    crate::auth::check_new_password(admin_password, admin_email)?;
    let org = create(svc, org_name).await?;
    crate::users::create_with_password(
        svc,
        &Actor::system(org, "seed"),
        admin_email,
        admin_name,
        Role::Admin,
        admin_password,
    )
    .await?;
    Ok(SeedOutcome::Created { organisation: org })
}
