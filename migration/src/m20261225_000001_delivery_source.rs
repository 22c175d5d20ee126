//! Deliveries and the send queue name their source (campaign now; sequence steps and API messages next).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261225_000001_delivery_source.sql")).await?;
        Ok(())
    }
}
