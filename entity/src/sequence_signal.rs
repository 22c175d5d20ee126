//! `sequence_signal`: Things that may start a sequence besides patient events (list additions,
//! segment entries, campaign engagement) or end a contact's enrolments (consent withdrawn,
//! suppressed), not yet consumed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sequence_signal")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organisation_id: Uuid,
    pub contact_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    pub ref_id: Option<Uuid>,
    pub sequence_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub purpose: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
