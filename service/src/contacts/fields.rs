//! Organisation-defined contact fields. Whether a field holds PHI is fixed when it is created:
//! changing it would mean moving values between sealed and plain storage.

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::services::Services;
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{CustomField, FieldType, MAX_CUSTOM_FIELDS, validate_field_def};
use domain::ids::OrganisationId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use uuid::Uuid;

pub async fn catalogue<C: ConnectionTrait>(
    _svc: &Services,
    conn: &C,
    org: OrganisationId,
) -> ServiceResult<Vec<CustomField>> {
    use entity::contact_field::{Column, Entity};
    let rows = Entity::find()
        .filter(Column::OrganisationId.eq(org.0))
        .order_by_asc(Column::Label)
        .order_by_asc(Column::Key)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(CustomField {
                id: r.id,
                key: r.key,
                label: r.label,
                field_type: FieldType::parse(&r.field_type).ok_or_else(|| ServiceError::internal("bad field type"))?,
                options: r
                    .options
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                is_phi: r.is_phi,
            })
        })
        .collect()
}

/// Anyone who works with contacts, segments or templates can see the field list (no PHI in it).
pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<CustomField>> {
    if !(actor.can(Permission::ContactsRead)
        || actor.can(Permission::SegmentsCount)
        || actor.can(Permission::TemplatesRead))
    {
        return Err(ServiceError::Forbidden);
    }
    catalogue(svc, svc.db(), actor.organisation_id).await
}

pub async fn create(
    svc: &Services,
    actor: &Actor,
    key: &str,
    label: &str,
    field_type: FieldType,
    options: Vec<String>,
    is_phi: bool,
) -> ServiceResult<CustomField> {
    actor.require(Permission::SettingsManage)?;
    let key = key.trim().to_string();
    let options: Vec<String> = options.into_iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
    validate_field_def(&key, label, field_type, &options)?;
    let txn = svc.db().begin().await?;
    let count: i64 = db::scalar(
        &txn,
        "SELECT count(*) AS n FROM contact_field WHERE organisation_id = $1",
        [actor.organisation_id.0.into()],
    )
    .await?
    .unwrap_or(0);
    if count as usize >= MAX_CUSTOM_FIELDS {
        return Err(ServiceError::invalid(
            "field",
            format!("an organisation can have at most {MAX_CUSTOM_FIELDS} custom fields"),
        ));
    }
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let res = db::exec(
        &txn,
        "INSERT INTO contact_field (id, organisation_id, key, label, field_type, options, is_phi, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        [
            id.into(),
            actor.organisation_id.0.into(),
            key.clone().into(),
            label.trim().to_string().into(),
            field_type.as_str().into(),
            serde_json::json!(options).into(),
            is_phi.into(),
            now.into(),
        ],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A field with this key already exists."));
        }
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::FieldCreated)
            .target("field", id)
            .detail("key", key.clone())
            .detail("phi", is_phi),
    )
    .await?;
    txn.commit().await?;
    Ok(CustomField { id, key, label: label.trim().to_string(), field_type, options, is_phi })
}

/// Delete a field definition. Stored values under its key are no longer shown or exported.
pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::SettingsManage)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "DELETE FROM contact_field WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::FieldDeleted).target("field", id)).await?;
    txn.commit().await?;
    Ok(())
}
