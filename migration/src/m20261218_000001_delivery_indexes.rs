//! Fewer indexes on the delivery table: each send updates a row twice, and every index is paid
//! for on every update.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261218_000001_delivery_indexes.sql")).await?;
        Ok(())
    }
}
