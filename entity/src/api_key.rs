//! `api_key`: An organisation's API key: a hash of its secret, its scopes, its sealed signing secret.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub shown_prefix: String,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", unique)]
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub require_signature: bool,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub signing_secret: Option<Vec<u8>>,
    pub expires_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
