//! Sending domains: per-organisation domains verified through DNS, each with its own sealed DKIM key.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261224_000001_sending_domains.sql")).await?;
        Ok(())
    }
}
