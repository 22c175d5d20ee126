//! Pending invitations per organisation: the email is unique among accounts, and per organisation.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(include_str!("m20261222_000001_invites_per_organisation.sql"))
            .await?;
        Ok(())
    }
}
