//! Contacts, custom fields, lists, suppression, consent ledger, imports, key rotation.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20260201_000001_contacts.sql")).await?;
        Ok(())
    }
}
