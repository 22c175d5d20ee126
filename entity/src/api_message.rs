//! `api_message`: A transactional message an integration asked for (`POST /api/v1/messages`); its delivery has the same id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "api_message_organisation_id_id_key")]
    pub organisation_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub template_id: Uuid,
    pub template_version_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub from_email: String,
    #[sea_orm(column_type = "Text")]
    pub from_name: String,
    /// Sealed merge data (PHI).
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub data: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
    /// The consent purpose (`transactional` for API messages; a sequence step's own).
    #[sea_orm(column_type = "Text")]
    pub purpose: String,
    /// A sequence email's enrolment, step and trigger event (NULL for API messages).
    pub enrolment_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub step_id: Option<String>,
    pub event_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::api_message_link::Entity")]
    ApiMessageLink,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Organisation,
}

impl Related<super::api_message_link::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ApiMessageLink.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
