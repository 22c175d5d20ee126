//! `sequence_version`: An immutable published version of a sequence (definition sealed, masked plain copy).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sequence_version")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub sequence_id: Uuid,
    pub number: i32,
    #[sea_orm(column_type = "JsonBinary")]
    pub definition: Json,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub sealed_definition: Vec<u8>,
    #[sea_orm(column_type = "Text", nullable)]
    pub trigger_event_type: Option<String>,
    pub watched_event_types: Vec<String>,
    pub published_by: Option<Uuid>,
    pub published_at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub trigger_kind: String,
    pub trigger_ref: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
