//! `AppError`: what a server function returns on failure. It carries a stable code and a message
//! that is safe to show (it comes from `ServiceError`'s `Display`, which never includes values).

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: String,
    /// A sentence to show (for a refused value, it names the field in plain words).
    pub message: String,
    /// For a refused value: which field, and why — so a form can say it next to that field in
    /// the field's own label (`components::FieldError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<domain::error::FieldProblem>,
}

impl AppError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        AppError { code: code.to_string(), message: message.into(), field: None }
    }

    /// The reason `field` was refused, said with `label` ("Time zone is not a known time zone.").
    pub fn about_field(&self, field: &str, label: &str) -> Option<String> {
        self.field.as_ref().filter(|p| p.field == field).map(|p| domain::error::field_sentence(label, &p.reason))
    }

    /// Whether the error is about one of `fields` (a form showing it there need not repeat it).
    pub fn is_about_any(&self, fields: &[&str]) -> bool {
        self.field.as_ref().is_some_and(|p| fields.contains(&p.field.as_str()))
    }
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
    /// The session is gone (expired, revoked, never existed): the UI should go to the sign-in page.
    pub fn is_signed_out(&self) -> bool {
        matches!(self.code.as_str(), "unauthenticated" | "session_expired")
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => {
                AppError::new("network", "Could not reach Hermetic. Check your connection and try again.")
            }
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) | ServerFnErrorErr::Deserialization(_) => {
                AppError::new("bad_request", "The request was not understood. Reload the page and try again.")
            }
            _ => AppError::new("internal", "Something went wrong. Reload the page and try again."),
        }
    }
}

#[cfg(feature = "ssr")]
mod ssr_impl {
    use super::AppError;
    use service::ServiceError;

    impl From<ServiceError> for AppError {
        /// Also sets the HTTP status of the server-function response, and logs internal failures
        /// (their log detail is value-free by construction).
        fn from(e: ServiceError) -> Self {
            if let ServiceError::Internal(_) = &e {
                tracing::error!(error = %e.log_detail(), "request failed");
            }
            if let Some(res) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
                && let Ok(status) = http::StatusCode::from_u16(e.http_status())
            {
                res.set_status(status);
                // Throttled (429) and busy (503) answers say when to come back (RFC 9110 §10.2.3).
                if let Some(secs) = e.retry_after_secs() {
                    res.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
                }
            }
            match e {
                ServiceError::Invalid(domain::DomainError::Invalid { field, reason }) => AppError {
                    code: "invalid".into(),
                    message: domain::error::field_sentence(&domain::error::field_label(&field), &reason),
                    field: Some(domain::error::FieldProblem { field, reason }),
                },
                e => AppError::new(e.code(), e.to_string()),
            }
        }
    }
}
