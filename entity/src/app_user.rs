//! `app_user`: A person who signs in (staff of one organisation), or a pending invitation of one.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_user")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "app_user_email_org")]
    pub organisation_id: Uuid,
    #[sea_orm(column_type = "Text", unique_key = "app_user_email_org")]
    pub email: String,
    #[sea_orm(column_type = "Text")]
    pub display_name: String,
    #[sea_orm(column_type = "Text")]
    pub role: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub password_hash: Option<String>,
    pub password_changed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub totp_secret: Option<Vec<u8>>,
    pub totp_enrolled_at: Option<DateTimeUtc>,
    pub totp_last_step: Option<i64>,
    pub last_sign_in_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Gets the weekly report digest by email.
    pub report_digest: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::campaign::Entity")]
    Campaign,
    #[sea_orm(has_many = "super::contact_import::Entity")]
    ContactImport,
    #[sea_orm(
        belongs_to = "super::organisation::Entity",
        from = "Column::OrganisationId",
        to = "super::organisation::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    Organisation,
    #[sea_orm(has_many = "super::recovery_code::Entity")]
    RecoveryCode,
    #[sea_orm(has_many = "super::segment::Entity")]
    Segment,
    #[sea_orm(has_one = "super::segment_count_budget::Entity")]
    SegmentCountBudget,
    #[sea_orm(has_many = "super::sending_domain::Entity")]
    SendingDomain,
    #[sea_orm(has_many = "super::template::Entity")]
    Template,
    #[sea_orm(has_many = "super::template_version::Entity")]
    TemplateVersion,
    #[sea_orm(has_many = "super::user_session::Entity")]
    UserSession,
}

impl Related<super::campaign::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Campaign.def()
    }
}

impl Related<super::contact_import::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactImport.def()
    }
}

impl Related<super::organisation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organisation.def()
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

impl Related<super::segment_count_budget::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SegmentCountBudget.def()
    }
}

impl Related<super::sending_domain::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SendingDomain.def()
    }
}

impl Related<super::template::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl Related<super::template_version::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TemplateVersion.def()
    }
}

impl Related<super::user_session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserSession.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
