//! Report breakdowns: provider, client, TLS and audience codes kept with the facts, and the
//! `report_split` rollup.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261231_000003_report_breakdowns.sql")).await?;
        Ok(())
    }
}
