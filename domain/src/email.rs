//! Staff email addresses (sign-in identifiers). Contact emails are PHI and live in `Phi<…>` instead.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised (trimmed, lower-cased) address with a plausible shape. Delivery proves the rest.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().to_lowercase();
        let bad = || DomainError::invalid("email", "is not a valid email address");
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || local.contains('@')
        {
            return Err(bad());
        }
        let ok_char = |c: char| !c.is_control() && !c.is_whitespace() && !"<>()[]\\,;:\"".contains(c);
        if !s.chars().all(ok_char) {
            return Err(bad());
        }
        if !domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.') {
            return Err(bad());
        }
        Ok(EmailAddress(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        EmailAddress::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> String {
        e.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(EmailAddress::parse("  Ada@Example.ORG ").unwrap().as_str(), "ada@example.org");
        for bad in [
            "",
            "no-at",
            "@example.org",
            "a@b",
            "a@.org",
            "a@example..org",
            "a b@example.org",
            "a@exa mple.org",
            "<a>@example.org",
            "a@example.org\n",
        ] {
            // trailing newline is trimmed, so that one is fine; the rest are not
            if bad == "a@example.org\n" {
                assert!(EmailAddress::parse(bad).is_ok());
            } else {
                assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
            }
        }
        assert!(EmailAddress::parse(&format!("{}@example.org", "a".repeat(65))).is_err());
    }
}
