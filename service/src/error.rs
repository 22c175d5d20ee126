//! `ServiceError`: the one error type of the service layer.
//!
//! Its `Display` is the message a user may see: plain words, never a value from the request or the
//! database (so never PHI). Internal details go to the log through [`ServiceError::log_detail`], which
//! is also free of values: database errors are reduced to their SQLSTATE and constraint name.

use domain::DomainError;
use sea_orm::{DbErr, RuntimeErr};
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("Please sign in to continue.")]
    Unauthenticated,
    #[error("Your session has ended. Please sign in again.")]
    SessionExpired,
    #[error("You do not have permission to do that.")]
    Forbidden,
    /// Forbidden, with the reason in plain words (a fixed text, never a value).
    #[error("{0}")]
    ForbiddenBecause(&'static str),
    #[error("Not found.")]
    NotFound,
    #[error("{0}")]
    Invalid(#[from] DomainError),
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    #[error("Too many attempts. Try again in {} minute(s).", retry_after_secs.div_ceil(60).max(1))]
    Throttled { retry_after_secs: u64 },
    /// A per-user budget of something costly (e.g. counts that decrypt) is used up.
    #[error("Too many {what}; try again in {} minute(s).", retry_after_secs.div_ceil(60).max(1))]
    TooMany { what: &'static str, retry_after_secs: u64 },
    #[error("The email or password is incorrect.")]
    InvalidCredentials,
    #[error("That code is not valid. Check your authenticator app and try again.")]
    InvalidCode,
    #[error("That code has already been used. Wait for the next code.")]
    CodeReused,
    /// Too much work of one kind at once (password hashing past its bound): try again shortly.
    #[error("Hermetic is busy right now. Try again in a few seconds.")]
    Busy { retry_after_secs: u64 },
    /// An `Idempotency-Key` already answered a different request (the API's 422).
    #[error("This Idempotency-Key was already used with a different request.")]
    IdempotencyKeyReused,
    #[error("Something went wrong on our side. The problem has been logged.")]
    Internal(Internal),
}

/// Detail of an internal failure, for the log only. Constructed from static descriptions or from
/// sanitised database errors; never from user input.
#[derive(Debug)]
pub struct Internal(pub Cow<'static, str>);

impl ServiceError {
    pub fn internal(what: &'static str) -> Self {
        ServiceError::Internal(Internal(Cow::Borrowed(what)))
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ServiceError::Invalid(DomainError::invalid(field, reason))
    }

    pub fn conflict(msg: &'static str) -> Self {
        ServiceError::Conflict(Cow::Borrowed(msg))
    }

    /// What to write to the log for this error (safe: no values).
    pub fn log_detail(&self) -> Cow<'_, str> {
        match self {
            ServiceError::Internal(Internal(s)) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// A short stable code for clients and tests.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated => "unauthenticated",
            ServiceError::SessionExpired => "session_expired",
            ServiceError::Forbidden | ServiceError::ForbiddenBecause(_) => "forbidden",
            ServiceError::NotFound => "not_found",
            ServiceError::Invalid(_) => "invalid",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::Throttled { .. } | ServiceError::TooMany { .. } => "throttled",
            ServiceError::InvalidCredentials => "invalid_credentials",
            ServiceError::InvalidCode => "invalid_code",
            ServiceError::CodeReused => "code_reused",
            ServiceError::Busy { .. } => "busy",
            ServiceError::IdempotencyKeyReused => "idempotency_key_reused",
            ServiceError::Internal(_) => "internal",
        }
    }

    /// The HTTP status an edge should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            ServiceError::Unauthenticated | ServiceError::SessionExpired => 401,
            ServiceError::InvalidCredentials | ServiceError::InvalidCode | ServiceError::CodeReused => 401,
            ServiceError::Forbidden | ServiceError::ForbiddenBecause(_) => 403,
            ServiceError::NotFound => 404,
            ServiceError::Invalid(_) | ServiceError::IdempotencyKeyReused => 422,
            ServiceError::Conflict(_) => 409,
            ServiceError::Throttled { .. } | ServiceError::TooMany { .. } => 429,
            ServiceError::Busy { .. } => 503,
            ServiceError::Internal(_) => 500,
        }
    }

    /// Seconds a client should wait before trying again (the edge sends it as `Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ServiceError::Throttled { retry_after_secs }
            | ServiceError::Busy { retry_after_secs }
            | ServiceError::TooMany { retry_after_secs, .. } => Some((*retry_after_secs).max(1)),
            _ => None,
        }
    }
}

/// Reduce a database error to something safe to log: PostgreSQL error messages and details can quote
/// row values (`Key (email)=(…) already exists`), so only the SQLSTATE and constraint name survive.
pub fn describe_db_err(e: &DbErr) -> String {
    let runtime = match e {
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => Some(r),
        _ => None,
    };
    if let Some(RuntimeErr::SqlxError(sqlx_err)) = runtime {
        if let sea_orm::sqlx::Error::Database(db) = sqlx_err.as_ref() {
            return format!(
                "database error sqlstate={} constraint={}",
                db.code().unwrap_or_default(),
                db.constraint().unwrap_or("-")
            );
        }
        return format!("database driver error: {}", sqlx_kind(sqlx_err));
    }
    match e {
        DbErr::ConnectionAcquire(_) => "database connection pool exhausted or closed".into(),
        DbErr::RecordNotFound(_) => "record not found".into(),
        DbErr::Type(_) | DbErr::TryIntoErr { .. } => "database value had an unexpected type".into(),
        DbErr::Json(_) => "database json error".into(),
        DbErr::Migration(_) => "migration error".into(),
        _ => "database error".into(),
    }
}

fn sqlx_kind(e: &sea_orm::sqlx::Error) -> &'static str {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) => "io",
        E::Tls(_) => "tls",
        E::Protocol(_) => "protocol",
        E::RowNotFound => "row not found",
        E::ColumnNotFound(_) => "column not found",
        E::ColumnDecode { .. } => "column decode",
        E::Decode(_) => "decode",
        E::PoolTimedOut => "pool timed out",
        E::PoolClosed => "pool closed",
        E::WorkerCrashed => "worker crashed",
        _ => "other",
    }
}

impl From<DbErr> for ServiceError {
    fn from(e: DbErr) -> Self {
        ServiceError::Internal(Internal(Cow::Owned(describe_db_err(&e))))
    }
}

/// True when the error is a unique-constraint violation (used to turn races into clean answers).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_plain_and_carry_no_values() {
        assert_eq!(
            ServiceError::Throttled { retry_after_secs: 61 }.to_string(),
            "Too many attempts. Try again in 2 minute(s)."
        );
        assert_eq!(ServiceError::Forbidden.http_status(), 403);
        assert_eq!(
            ServiceError::TooMany { what: "counts", retry_after_secs: 600 }.to_string(),
            "Too many counts; try again in 10 minute(s)."
        );
        assert_eq!(ServiceError::TooMany { what: "counts", retry_after_secs: 1 }.http_status(), 429);
        assert_eq!(ServiceError::ForbiddenBecause("No.").code(), "forbidden");
        let e: ServiceError = DbErr::Custom("Key (email)=(secret@x.org) exists".into()).into();
        assert!(!e.log_detail().contains("secret"));
        assert!(!e.to_string().contains("secret"));
    }
}
