//! `contact_list`: A contact list (optionally double opt-in).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_list")]
pub struct Model {
    #[sea_orm(
        primary_key,
        auto_increment = false,
        unique_key = "contact_list_organisation_id_id_key"
    )]
    pub id: Uuid,
    #[sea_orm(unique_key = "contact_list_organisation_id_id_key")]
    pub organisation_id: Uuid,
    #[sea_orm(
        column_type = "Text",
        unique_key = "contact_list_organisation_id_name_key"
    )]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub double_opt_in: bool,
    #[sea_orm(column_type = "Text")]
    pub purpose: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::list_member::Entity")]
    ListMember,
    #[sea_orm(has_many = "super::optin_token::Entity")]
    OptinToken,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
}

impl Related<super::list_member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ListMember.def()
    }
}

impl Related<super::optin_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OptinToken.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
    }
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        super::list_member::Relation::Contact.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::list_member::Relation::ContactList.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
