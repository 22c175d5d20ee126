//! `audit_verification`: Each verification of an audit chain: how far it was checked and the first broken link, if any.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_verification")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub chain_id: Uuid,
    pub checked_at: DateTimeUtc,
    pub rows_checked: i64,
    pub last_chain_seq: i64,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub last_mac: Option<Vec<u8>>,
    pub first_broken_seq: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
