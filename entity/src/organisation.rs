//! `organisation`: A tenant.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "organisation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    pub created_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// The IANA time zone reports bucket hours and days in.
    #[sea_orm(column_type = "Text")]
    pub time_zone: String,
    /// Set when the report rollups must be rebuilt (a new time zone); the rollup job clears it.
    pub report_rebuild_requested_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::app_user::Entity")]
    AppUser,
    #[sea_orm(has_one = "super::campaign::Entity")]
    Campaign,
    #[sea_orm(has_many = "super::consent_withdrawal_kept::Entity")]
    ConsentWithdrawalKept,
    #[sea_orm(has_many = "super::contact::Entity")]
    Contact,
    #[sea_orm(has_many = "super::contact_field::Entity")]
    ContactField,
    #[sea_orm(has_many = "super::contact_import::Entity")]
    ContactImport,
    #[sea_orm(has_many = "super::contact_list::Entity")]
    ContactList,
    #[sea_orm(has_many = "super::dev_mailbox::Entity")]
    DevMailbox,
    #[sea_orm(has_many = "super::engagement_event::Entity")]
    EngagementEvent,
    #[sea_orm(has_many = "super::invite::Entity")]
    Invite,
    #[sea_orm(has_many = "super::key_rotation::Entity")]
    KeyRotation,
    #[sea_orm(has_many = "super::optin_token::Entity")]
    OptinToken,
    #[sea_orm(has_many = "super::patient_event::Entity")]
    PatientEvent,
    #[sea_orm(has_many = "super::recovery_code::Entity")]
    RecoveryCode,
    #[sea_orm(has_one = "super::segment::Entity")]
    Segment,
    #[sea_orm(has_many = "super::sending_domain::Entity")]
    SendingDomain,
    #[sea_orm(has_many = "super::suppression::Entity")]
    Suppression,
    #[sea_orm(has_many = "super::template::Entity")]
    Template,
    #[sea_orm(has_many = "super::user_session::Entity")]
    UserSession,
    #[sea_orm(has_many = "super::wrapped_key::Entity")]
    WrappedKey,
}

impl Related<super::app_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppUser.def()
    }
}

impl Related<super::campaign::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Campaign.def()
    }
}

impl Related<super::consent_withdrawal_kept::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ConsentWithdrawalKept.def()
    }
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Contact.def()
    }
}

impl Related<super::contact_field::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactField.def()
    }
}

impl Related<super::contact_import::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactImport.def()
    }
}

impl Related<super::contact_list::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactList.def()
    }
}

impl Related<super::dev_mailbox::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DevMailbox.def()
    }
}

impl Related<super::engagement_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EngagementEvent.def()
    }
}

impl Related<super::invite::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Invite.def()
    }
}

impl Related<super::key_rotation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::KeyRotation.def()
    }
}

impl Related<super::optin_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OptinToken.def()
    }
}

impl Related<super::patient_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::PatientEvent.def()
    }
}

impl Related<super::recovery_code::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RecoveryCode.def()
    }
}

impl Related<super::segment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Segment.def()
    }
}

impl Related<super::sending_domain::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SendingDomain.def()
    }
}

impl Related<super::suppression::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Suppression.def()
    }
}

impl Related<super::template::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl Related<super::user_session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserSession.def()
    }
}

impl Related<super::wrapped_key::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::WrappedKey.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
