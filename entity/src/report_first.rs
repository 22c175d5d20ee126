//! `report_first`: The first human open, machine open, human click and unsubscribe of a delivery (unique report figures).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_first")]
pub struct Model {
    pub organisation_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub delivery_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: i16,
    pub at: DateTimeUtc,
    /// The opening client's family of a first human open (`domain::breakdowns::ClientFamily`).
    pub client: Option<i16>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
