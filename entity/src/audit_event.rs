//! `audit_event`: The append-only, hash-chained audit trail (one chain per organisation; ids and codes, never PHI).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique_key = "audit_event_chain_id_chain_seq_key")]
    pub chain_id: Uuid,
    #[sea_orm(unique_key = "audit_event_chain_id_chain_seq_key")]
    pub chain_seq: i64,
    pub organisation_id: Option<Uuid>,
    pub occurred_at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub actor_kind: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_session_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub action: String,
    #[sea_orm(column_type = "Text")]
    pub outcome: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub target_kind: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub target_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub ip: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub details: String,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub prev_mac: Vec<u8>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub mac: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
