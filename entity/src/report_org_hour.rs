//! `report_org_hour`: An organisation's report totals per local hour, with suppression-list growth.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_org_hour")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub organisation_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour: DateTime,
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
    pub suppressed_unsubscribed: i64,
    pub suppressed_hard_bounce: i64,
    pub suppressed_complaint: i64,
    pub suppressed_manual: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
