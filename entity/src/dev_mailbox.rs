//! `dev_mailbox`: Mail captured instead of sent in development (sealed).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dev_mailbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub created_at: DateTimeUtc,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub recipient: Vec<u8>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub subject: Vec<u8>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub message: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
