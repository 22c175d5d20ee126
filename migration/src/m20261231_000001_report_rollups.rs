//! Hourly report rollups: capture triggers, pending facts, hour tables, organisation time zone.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261231_000001_report_rollups.sql")).await?;
        Ok(())
    }
}
