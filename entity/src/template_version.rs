//! `template_version`: A published, immutable version of a template (compiled HTML and text).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "template_version")]
pub struct Model {
    #[sea_orm(
        primary_key,
        auto_increment = false,
        unique_key = "template_version_organisation_id_id_key"
    )]
    pub id: Uuid,
    #[sea_orm(unique_key = "template_version_organisation_id_id_key")]
    pub organisation_id: Uuid,
    #[sea_orm(unique_key = "template_version_template_id_version_key")]
    pub template_id: Uuid,
    #[sea_orm(unique_key = "template_version_template_id_version_key")]
    pub version: i32,
    #[sea_orm(column_type = "Text")]
    pub mode: String,
    #[sea_orm(column_type = "Text")]
    pub subject: String,
    #[sea_orm(column_type = "Text")]
    pub preheader: String,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub design: Option<Json>,
    #[sea_orm(column_type = "Text")]
    pub html: String,
    #[sea_orm(column_type = "Text")]
    pub text_body: String,
    pub text_edited: bool,
    pub uses_phi: bool,
    pub fields_used: Vec<String>,
    pub message_keys: Vec<String>,
    pub event_keys: Vec<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
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
    #[sea_orm(has_many = "super::campaign::Entity")]
    Campaign,
    #[sea_orm(
        belongs_to = "super::template::Entity",
        from = "(Column::OrganisationId, Column::TemplateId)",
        to = "(super::template::Column::OrganisationId, super::template::Column::Id)",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Template,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::campaign::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Campaign.def()
    }
}

impl Related<super::template::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
