//! `contact_import`: A CSV import: its status, sealed header row, mapping and counters (the resume checkpoint).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_import")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub created_by: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub file_bytes: i64,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub file_sha256: Option<Vec<u8>>,
    pub chunks: i32,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub headers: Option<Vec<u8>>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub mapping: Option<Json>,
    #[sea_orm(column_type = "Text", nullable)]
    pub dedupe: Option<String>,
    pub list_ids: Vec<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub consent_purpose: Option<String>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub consent_text_hash: Option<Vec<u8>>,
    pub bytes_done: i64,
    pub rows_done: i64,
    pub rows_created: i64,
    pub rows_updated: i64,
    pub rows_skipped: i64,
    pub rows_failed: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    pub rows_kept_withdrawn: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::app_user::Entity",
        from = "Column::CreatedBy",
        to = "super::app_user::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    AppUser,
    #[sea_orm(has_many = "super::import_chunk::Entity")]
    ImportChunk,
    #[sea_orm(has_many = "super::import_error::Entity")]
    ImportError,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::import_chunk::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ImportChunk.def()
    }
}

impl Related<super::import_error::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ImportError.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
