//! `report_source_day`: Report figures per organisation, local day and source (campaign, sequence email, API message).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_source_day")]
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
    pub sent: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub failed: i64,
    pub human_openers: i64,
    pub machine_opens: i64,
    pub machine_openers: i64,
    pub human_clicks: i64,
    pub human_clickers: i64,
    pub machine_clicks: i64,
    pub unsubscribes: i64,
    pub bounced_hard: i64,
    pub bounced_soft: i64,
    pub bounced_policy: i64,
    pub deferrals: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
