//! Sequence triggers: list additions, segment entries, campaign engagement (signals).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261229_000002_sequence_triggers.sql")).await?;
        Ok(())
    }
}
