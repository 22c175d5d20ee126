//! `list_member`: A contact on a list, with its subscription status.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "list_member")]
pub struct Model {
    pub organisation_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub list_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub contact_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub source: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
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
        belongs_to = "super::contact_list::Entity",
        from = "(Column::OrganisationId, Column::ListId)",
        to = "(super::contact_list::Column::OrganisationId, super::contact_list::Column::Id)",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    ContactList,
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Contact.def()
    }
}

impl Related<super::contact_list::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactList.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
