//! `report_split`: A source's figures per local day split by mailbox provider, email client, TLS version or audience part.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_split")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub organisation_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_kind: i16,
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub step_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub dim: i16,
    #[sea_orm(primary_key, auto_increment = false)]
    pub code: i16,
    #[sea_orm(primary_key, auto_increment = false)]
    pub part_id: Uuid,
    pub sent: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub human_opens: i64,
    pub human_openers: i64,
    pub human_clickers: i64,
    pub unsubscribes: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
