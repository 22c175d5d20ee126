//! Small helpers for hand-written SQL (used where PostgreSQL features matter: upserts, advisory
//! locks, `FOR UPDATE`). Every value travels as a bind parameter, never spliced into SQL text.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

pub fn stmt(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

pub async fn exec<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<u64, DbErr> {
    Ok(conn.execute_raw(stmt(sql, values)).await?.rows_affected())
}

pub async fn one<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<QueryResult>, DbErr> {
    conn.query_one_raw(stmt(sql, values)).await
}

pub async fn all<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    conn.query_all_raw(stmt(sql, values)).await
}

/// Read a column by name from a raw row.
pub fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T, DbErr> {
    row.try_get("", col)
}

/// The sqlx pool under sea-orm, for the paths that need PostgreSQL features sea-orm does not
/// carry: array binds (`unnest`), `COPY`, a connection of its own (the sending lease). The one
/// place those paths reach raw sqlx.
pub(crate) fn pool(conn: &sea_orm::DatabaseConnection) -> sea_orm::sqlx::PgPool {
    conn.get_postgres_connection_pool().clone()
}

/// A raw sqlx error as the service's database error.
pub(crate) fn sqlx_err(e: sea_orm::sqlx::Error) -> crate::error::ServiceError {
    crate::error::ServiceError::from(DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}

/// Read the first row of a query into a typed row (`#[derive(FromQueryResult)]`).
pub async fn one_as<T: sea_orm::FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<T>, DbErr> {
    T::find_by_statement(stmt(sql, values)).one(conn).await
}

/// Read every row of a query into typed rows.
pub async fn all_as<T: sea_orm::FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(stmt(sql, values)).all(conn).await
}

/// A one-column row of a count (`SELECT count(*) AS n …`).
#[derive(Debug, sea_orm::FromQueryResult)]
pub struct Count {
    pub n: i64,
}

/// A one-column row of an id (`SELECT id …`).
#[derive(Debug, sea_orm::FromQueryResult)]
pub struct Id {
    pub id: uuid::Uuid,
}
