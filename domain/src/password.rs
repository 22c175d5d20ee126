//! The password rules the UI can check before a round trip. The breached-password list is checked in
//! the service (it is too large to ship to the browser).

use crate::DomainError;

pub const MIN_LEN: usize = 12;
/// Long enough for any passphrase, short enough that hashing cannot be used to exhaust the server.
pub const MAX_LEN: usize = 256;

/// Length and shape rules (NIST SP 800-63B: length over composition rules).
pub fn check_shape(password: &str) -> Result<(), DomainError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(DomainError::invalid("password", format!("must be at least {MIN_LEN} characters")));
    }
    if n > MAX_LEN {
        return Err(DomainError::invalid("password", format!("must be at most {MAX_LEN} characters")));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(DomainError::invalid("password", "must not contain control characters"));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err(DomainError::invalid("password", "uses too few different characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_rules() {
        assert!(check_shape("short").is_err());
        assert!(check_shape("aaaaaaaaaaaaaaaa").is_err());
        assert!(check_shape("ababababababab").is_err());
        assert!(check_shape("correct horse battery").is_ok());
        assert!(check_shape(&"x1y2".repeat(100)).is_err());
        assert!(check_shape("tab\tinside-password").is_err());
        // 12 multi-byte characters count as 12
        assert!(check_shape("ééééàààüüüöö").is_ok());
    }
}
