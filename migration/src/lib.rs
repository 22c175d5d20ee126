//! Schema history. Frozen: a released migration is never edited; changes are new migrations.
//! Each migration is plain SQL in a `.sql` file beside its module, so reviewers read real DDL.

pub use sea_orm_migration::prelude::*;

mod m20260101_000001_foundation;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20260101_000001_foundation::Migration)]
    }
}

/// Apply every pending migration. Several processes may start at once (`serve` and `worker`), so the
/// whole run holds an advisory lock inside one transaction.
pub async fn migrate(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    txn.execute_unprepared("SELECT pg_advisory_xact_lock(4848484848)").await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}
