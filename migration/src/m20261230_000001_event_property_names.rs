//! The property names each event type has carried, so publishing can check a sequence's
//! `event.<name>` fields against them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261230_000001_event_property_names.sql")).await?;
        Ok(())
    }
}
