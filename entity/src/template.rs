//! `template`: An email template of an organisation.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "template")]
pub struct Model {
    #[sea_orm(
        primary_key,
        auto_increment = false,
        unique_key = "template_organisation_id_id_key"
    )]
    pub id: Uuid,
    #[sea_orm(unique_key = "template_organisation_id_id_key")]
    pub organisation_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    pub latest_version: i32,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub draft: Option<Json>,
    #[sea_orm(column_type = "Text", nullable)]
    pub draft_error: Option<String>,
    pub draft_saved_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub archived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::app_user::Entity",
        from = "Column::CreatedBy",
        to = "super::app_user::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    AppUser,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Organisation,
    #[sea_orm(has_many = "super::template_version::Entity")]
    TemplateVersion,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl Related<super::template_version::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TemplateVersion.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
