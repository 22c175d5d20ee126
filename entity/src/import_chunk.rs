//! `import_chunk`: A sealed 1 MiB chunk of an uploaded CSV file.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_chunk")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub import_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i32,
    #[sea_orm(column_type = "VarBinary(StringLen::None)")]
    pub data: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::contact_import::Entity",
        from = "Column::ImportId",
        to = "super::contact_import::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    ContactImport,
}

impl Related<super::contact_import::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ContactImport.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
