//! `import_error`: A row error of an import: row, column and problem, never the value.
//!
//! The table has no primary key; the entity names (import, row, column) as its key: the import
//! writes at most one error per row and column.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_error")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub import_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_number: i64,
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub column_name: String,
    #[sea_orm(column_type = "Text")]
    pub message: String,
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
