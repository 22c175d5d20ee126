//! `consent_event`: The consent ledger: every grant and withdrawal as it happened, applied or not.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: Uuid,
    pub contact_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub purpose: String,
    pub granted: bool,
    #[sea_orm(column_type = "Text")]
    pub source: String,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub text_hash: Option<Vec<u8>>,
    pub occurred_at: DateTimeUtc,
    pub actor_user_id: Option<Uuid>,
    pub import_id: Option<Uuid>,
    pub effective: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
