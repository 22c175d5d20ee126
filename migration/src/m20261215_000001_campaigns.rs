//! Campaigns, deliveries (one per campaign × contact), click targets and richer engagement events.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261215_000001_campaigns.sql")).await?;
        Ok(())
    }
}
