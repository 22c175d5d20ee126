//! Which root key new keys are wrapped under, recorded in the database so that every process
//! agrees on it during a root-key rotation.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("m20261221_000001_root_key_state.sql")).await?;
        Ok(())
    }
}
