//! Transactional messages through the API: the message row, its links, deliveries without a campaign, the `transactional` consent purpose.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261227_000001_api_messages.sql")).await?;
        Ok(())
    }
}
