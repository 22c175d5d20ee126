//! Consent withdrawals and suppressions end the contact's enrolments in sequences that send for
//! that purpose at once (signals for the engine).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261230_000002_sequence_withdrawals.sql")).await?;
        Ok(())
    }
}
