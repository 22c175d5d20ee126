//! Triggered follow-up sequences: sequences, versions, enrolments, step executions; sequence
//! emails as a delivery source.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261228_000001_sequences.sql")).await?;
        Ok(())
    }
}
