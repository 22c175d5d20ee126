//! `engagement_event`: An open or a click on a delivered message.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "engagement_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: Uuid,
    pub contact_id: Uuid,
    pub campaign_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub activity: String,
    pub machine: bool,
    pub occurred_at: DateTimeUtc,
    pub delivery_id: Option<Uuid>,
    pub link_position: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub machine_reason: Option<String>,
    /// The opening client's family (`domain::breakdowns::ClientFamily`), from the user agent.
    pub client: Option<i16>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::contact::Entity",
        from = "Column::ContactId",
        to = "super::contact::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Contact,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Contact.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
