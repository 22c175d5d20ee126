//! The send queue in a table of its own, so that a send writes its delivery row once, in place.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261219_000001_send_queue.sql")).await?;
        Ok(())
    }
}
