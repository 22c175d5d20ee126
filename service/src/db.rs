//! Small helpers for hand-written SQL (used where PostgreSQL features matter: upserts, advisory
//! locks, `FOR UPDATE`). Every value travels as a bind parameter, never spliced into SQL text.
//! Results are read into typed rows: a `#[derive(FromQueryResult)]` struct (`one_as`, `all_as`;
//! columns matched by name in one place, the derive) or, for a query of one value, `scalar` /
//! `scalars`. Plain reads and writes of one table go through the `entity` crate instead.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, QueryResult, Statement, TryGetable, Value};

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

/// Read the one row (if any) of a hand-written query into a typed row
/// (`#[derive(FromQueryResult)]`): columns are matched by name at one place, the derive.
pub async fn one_as<T: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<T>, DbErr> {
    T::find_by_statement(stmt(sql, values)).one(conn).await
}

/// Read every row of a hand-written query into typed rows (`#[derive(FromQueryResult)]`).
pub async fn all_as<T: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(stmt(sql, values)).all(conn).await
}

/// The first column of the one row (if any) of a query that selects a single value
/// (`SELECT count(*) …`, `… RETURNING id`).
pub async fn scalar<T: TryGetable, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<T>, DbErr> {
    match conn.query_one_raw(stmt(sql, values)).await? {
        Some(row) => Ok(Some(row.try_get_by_index(0)?)),
        None => Ok(None),
    }
}

/// The first column of every row of a query that selects a single value.
pub async fn scalars<T: TryGetable, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<T>, DbErr> {
    conn.query_all_raw(stmt(sql, values)).await?.iter().map(|row| row.try_get_by_index(0)).collect()
}

// ---------------------------------------------------------------------------------------------
// The sqlx-only paths (array binds, binary COPY, transactions held across tasks, the lease
// connection) reach sqlx through sea-orm's re-export; their errors become `ServiceError`s here.

/// sea-orm's sqlx pool, for the paths sea-orm cannot take.
pub(crate) fn pool(conn: &sea_orm::DatabaseConnection) -> sea_orm::sqlx::PgPool {
    conn.get_postgres_connection_pool().clone()
}

/// A sqlx error as the service's error (the same path sea-orm's own errors take).
pub(crate) fn sqlx_err(e: sea_orm::sqlx::Error) -> crate::error::ServiceError {
    crate::error::ServiceError::from(DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e))))
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
