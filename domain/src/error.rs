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

/// A refused value, for a form to show next to its field: the field's key (as the services name
/// it, to find the field) and the reason (`is not a known time zone`). Use [`field_sentence`] to
/// say it in the field's own label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub reason: String,
}

/// The words a person sees for a field key when the form does not name the field itself: the
/// labels the forms use, else the key in plain words (`insurance_plan` → "Insurance plan").
pub fn field_label(key: &str) -> String {
    let known = match key {
        "email" => "Email",
        "first_name" => "First name",
        "last_name" => "Last name",
        "date_of_birth" => "Date of birth",
        "time_zone" => "Time zone",
        "from_email" => "From address",
        "from_name" => "From name",
        "reply_to" => "Reply-to address",
        "key" => "Merge field name",
        "options" => "Options",
        "mapping" => "Column mapping",
        "lists" => "Lists",
        "consent" => "Consent wording",
        "display_name" | "name" => "Name",
        "invitation" => "This invitation",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let words = key.replace('_', " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One sentence naming the field by `label`: "Time zone is not a known time zone." for reasons
/// that read as a predicate, "Column mapping: one column must be the email address." otherwise.
pub fn field_sentence(label: &str, reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    let predicate =
        ["is ", "must ", "has ", "cannot ", "needs ", "link ", "are ", "was "].iter().any(|p| reason.starts_with(p));
    if predicate { format!("{label} {reason}.") } else { format!("{label}: {reason}.") }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn field_problems_read_in_the_field_s_own_words() {
        assert_eq!(
            field_sentence(&field_label("time_zone"), "is not a known time zone"),
            "Time zone is not a known time zone."
        );
        assert_eq!(
            field_sentence(&field_label("mapping"), "one column must be the email address"),
            "Column mapping: one column must be the email address."
        );
        assert_eq!(field_label("insurance_plan"), "Insurance plan");
        assert_eq!(
            field_sentence("Merge field name", "is reserved for a built-in field"),
            "Merge field name is reserved for a built-in field."
        );
    }
}
