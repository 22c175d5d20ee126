//! `contact`: A patient/contact: PHI columns sealed, the email also as a blind index, plain non-PHI attributes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "contact_organisation_id_email_bidx_key")]
    pub organisation_id: Uuid,
    #[sea_orm(
        column_type = "VarBinary(StringLen::None)",
        unique_key = "contact_organisation_id_email_bidx_key"
    )]
    pub email_bidx: Vec<u8>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub email: Vec<u8>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub first_name: Option<Vec<u8>>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub last_name: Option<Vec<u8>>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub phone: Option<Vec<u8>>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub date_of_birth: Option<Vec<u8>>,
    #[sea_orm(column_type = "Text", nullable)]
    pub time_zone: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub locale: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub attrs: Json,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub phi_attrs: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::contact_consent::Entity")]
    ContactConsent,
    #[sea_orm(has_many = "super::delivery::Entity")]
    Delivery,
    #[sea_orm(has_many = "super::engagement_event::Entity")]
    EngagementEvent,
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
    #[sea_orm(has_many = "super::patient_event::Entity")]
    PatientEvent,
}

impl Related<super::contact_consent::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactConsent.def()
    }
}

impl Related<super::delivery::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Delivery.def()
    }
}

impl Related<super::engagement_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EngagementEvent.def()
    }
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

impl Related<super::patient_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::PatientEvent.def()
    }
}

impl Related<super::contact_list::Entity> for Entity {
    fn to() -> RelationDef {
        super::list_member::Relation::ContactList.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::list_member::Relation::Contact.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
