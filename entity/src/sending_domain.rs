//! `sending_domain`: A sending domain of an organisation, its sealed DKIM key and DNS verification state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sending_domain")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "sending_domain_organisation_id_domain_key")]
    pub organisation_id: Uuid,
    #[sea_orm(
        column_type = "Text",
        unique_key = "sending_domain_organisation_id_domain_key"
    )]
    pub domain: String,
    #[sea_orm(column_type = "Text")]
    pub selector: String,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub dkim_key: Vec<u8>,
    #[sea_orm(column_type = "Text")]
    pub dkim_public: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub checks: Json,
    pub last_checked_at: Option<DateTimeUtc>,
    pub verified_at: Option<DateTimeUtc>,
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
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
