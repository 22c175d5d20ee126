//! `delivery_queue`: Deliveries waiting to be sent, leased by send workers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_queue")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub delivery_id: Uuid,
    pub campaign_id: Option<Uuid>,
    pub not_before: DateTimeUtc,
    pub claimed_by: Option<i64>,
    /// What the delivery was created for (`domain::delivery::DeliverySource`).
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::delivery::Entity",
        from = "Column::DeliveryId",
        to = "super::delivery::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Delivery,
}

impl Related<super::delivery::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Delivery.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
