//! Monthly partitions of engagement_event (by occurred_at) and patient_event (by UUIDv7 id).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261231_000002_monthly_partitions.sql")).await?;
        Ok(())
    }
}
