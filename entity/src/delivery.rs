//! `delivery`: One message of a campaign to one contact, and its delivery state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    #[sea_orm(unique_key = "delivery_campaign_id_contact_id_key")]
    pub campaign_id: Option<Uuid>,
    #[sea_orm(unique_key = "delivery_campaign_id_contact_id_key")]
    pub contact_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub attempts: i32,
    pub not_before: DateTimeUtc,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub domain_key: Option<Vec<u8>>,
    #[sea_orm(column_type = "Text", nullable)]
    pub smtp_status: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    pub accepted_at: Option<DateTimeUtc>,
    pub recorded_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// What the delivery was created for (`domain::delivery::DeliverySource`).
    pub source: String,
    /// The recipient domain's provider family (`domain::breakdowns::MailboxFamily`).
    pub domain_family: Option<i16>,
    /// The TLS version the accepting server negotiated (13, 12).
    pub tls_version: Option<i16>,
    /// The audience part (4 segment, 5 list) through which a campaign's recipient was found.
    pub audience_kind: Option<i16>,
    pub audience_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::campaign::Entity",
        from = "(Column::OrganisationId, Column::CampaignId)",
        to = "(super::campaign::Column::OrganisationId, super::campaign::Column::Id)",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Campaign,
    #[sea_orm(
        belongs_to = "super::contact::Entity",
        from = "Column::ContactId",
        to = "super::contact::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    Contact,
    #[sea_orm(has_one = "super::delivery_queue::Entity")]
    DeliveryQueue,
}

impl Related<super::campaign::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Campaign.def()
    }
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Contact.def()
    }
}

impl Related<super::delivery_queue::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DeliveryQueue.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
