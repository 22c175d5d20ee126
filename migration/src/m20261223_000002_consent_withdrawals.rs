//! Withdrawals of consent hold until the patient consents again; the ledger marks events that did
//! not change the state; withdrawals outlive a deleted contact.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261223_000002_consent_withdrawals.sql")).await?;
        Ok(())
    }
}
