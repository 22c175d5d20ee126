//! `report_pending`: A fact captured by a trigger (engagement, delivery outcome, suppression), waiting for the report rollup.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_pending")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: Uuid,
    pub kind: i16,
    pub delivery_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub activity: String,
    pub machine: bool,
    pub link_position: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    pub at: DateTimeUtc,
    pub sign: i16,
    /// A delivery outcome's provider family and TLS version; an engagement event's client.
    pub family: Option<i16>,
    pub tls: Option<i16>,
    pub client: Option<i16>,
    /// Attributed at capture: the source (1 campaign, 2 sequence email, 3 API message; none for
    /// a suppression), and the delivery's acceptance time and audience part.
    pub source_kind: Option<i16>,
    pub source_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub step_id: Option<String>,
    pub sent_at: Option<DateTimeUtc>,
    pub audience_kind: Option<i16>,
    pub audience_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
