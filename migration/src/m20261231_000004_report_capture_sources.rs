//! Report facts attributed to their source and delivery when captured, so the rollup need not
//! look every fact's delivery up again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(include_str!("m20261231_000004_report_capture_sources.sql"))
            .await?;
        Ok(())
    }
}
