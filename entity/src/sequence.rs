//! `sequence`: A triggered follow-up sequence: its status, sender and working copy (sealed, with a masked plain copy).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sequence")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub draft: Json,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub sealed_draft: Vec<u8>,
    #[sea_orm(column_type = "Text")]
    pub from_name: String,
    #[sea_orm(column_type = "Text")]
    pub from_email: String,
    pub current_version_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
