//! Segment definitions gain a sealed copy (PHI literals out of plaintext) and counts a per-user budget.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261220_000001_segment_disclosure.sql")).await?;
        Ok(())
    }
}
