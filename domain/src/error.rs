//! The domain's one error type: rule violations described in plain words, never carrying PHI.

use serde::{Deserialize, Serialize};

/// A broken domain rule. Messages are safe to show to users and to log: they never contain values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("this change is not allowed: {0}")]
    Transition(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::Invalid { field: field.into(), reason: reason.into() }
    }
}
