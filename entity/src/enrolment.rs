//! `enrolment`: One contact in one version of a sequence: where it is and when it next needs the engine.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "enrolment")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub sequence_id: Uuid,
    pub version_id: Uuid,
    pub contact_id: Uuid,
    pub trigger_event_id: Option<Uuid>,
    /// Keyed hash of the trigger's correlation value (never the value).
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub correlation_bidx: Option<Vec<u8>>,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub end_reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub step_id: Option<String>,
    pub visit: i32,
    pub step_started_at: DateTimeUtc,
    pub wake_at: Option<DateTimeUtc>,
    pub awaited_at: Option<DateTimeUtc>,
    pub entered_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
