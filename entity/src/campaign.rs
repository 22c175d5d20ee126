//! `campaign`: An email campaign: its sender, template version, audience and sending state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign")]
pub struct Model {
    #[sea_orm(
        primary_key,
        auto_increment = false,
        unique_key = "campaign_organisation_id_id_key"
    )]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub organisation_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub pause_reason: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    pub template_version_id: Option<Uuid>,
    pub uses_phi: bool,
    pub scheduled_at: Option<DateTimeUtc>,
    pub audience_ready: bool,
    pub audience_size: Option<i32>,
    pub error_streak: i32,
    pub send_clock: Option<DateTimeUtc>,
    pub generation: i32,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::app_user::Entity",
        from = "Column::CreatedBy",
        to = "super::app_user::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    AppUser,
    #[sea_orm(has_many = "super::campaign_domain_clock::Entity")]
    CampaignDomainClock,
    #[sea_orm(has_many = "super::campaign_link::Entity")]
    CampaignLink,
    #[sea_orm(has_many = "super::delivery::Entity")]
    Delivery,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
    #[sea_orm(
        belongs_to = "super::template_version::Entity",
        from = "(Column::OrganisationId, Column::TemplateVersionId)",
        to = "(super::template_version::Column::OrganisationId, super::template_version::Column::Id)",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    TemplateVersion,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::campaign_domain_clock::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CampaignDomainClock.def()
    }
}

impl Related<super::campaign_link::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CampaignLink.def()
    }
}

impl Related<super::delivery::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Delivery.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl Related<super::template_version::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TemplateVersion.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
