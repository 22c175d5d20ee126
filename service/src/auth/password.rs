//! Password hashing (argon2id, m = 46 MiB, t = 1, p = 1 — OWASP's recommended setting) and the password
//! policy: domain shape rules plus a bundled list of the 30,000 most common passwords.

use crate::error::{ServiceError, ServiceResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::LazyLock;

const M_COST_KIB: u32 = 46 * 1024;
const T_COST: u32 = 1;
const P_COST: u32 = 1;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../data/common-passwords.txt").lines().filter(|l| !l.is_empty()).collect());

fn hasher() -> ServiceResult<Argon2<'static>> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|_| ServiceError::internal("argon2 params"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A hash of a password nobody can know, verified against when an account does not exist so that
/// unknown and known accounts take the same time to answer.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let pw = crate::crypto::random_token().ok()?;
    hash(&pw).ok()
});

pub fn hash(password: &str) -> ServiceResult<String> {
    let salt_bytes = crate::crypto::random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| ServiceError::internal("salt encoding"))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ServiceError::internal("password hashing failed"))
}

pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let Ok(h) = hasher() else { return false };
    h.verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Spend the same effort as a real verification, then fail.
pub fn verify_dummy(password: &str) {
    if let Some(h) = DUMMY_HASH.as_deref() {
        let _ = verify(password, h);
    }
}

/// The full policy for a new password. `context` holds words that must not be the password's core
/// (the account's email parts, the product name).
pub fn check_policy(password: &str, context: &[&str]) -> ServiceResult<()> {
    domain::password::check_shape(password)?;
    let lower = password.to_lowercase();
    let core: String = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation()).to_string();
    let core = core.trim_start_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let common = |s: &str| COMMON.contains(s);
    if common(&lower) || common(core) || (core.len() < 8 && common(&lower.replace(' ', ""))) {
        return Err(ServiceError::invalid(
            "password",
            "is on the list of commonly used or breached passwords; choose another",
        ));
    }
    // A common password repeated or padded ("passwordpassword", "qwerty123456qwerty") is still weak.
    if !core.is_empty() && core.len() < lower.len() / 2 + 1 && common(core) {
        return Err(ServiceError::invalid("password", "is too close to a commonly used password"));
    }
    for word in context.iter().map(|w| w.to_lowercase()).filter(|w| w.len() >= 4) {
        if core == word || lower.contains(&word) && lower.len() < word.len() + 6 {
            return Err(ServiceError::invalid("password", "must not be based on your email address"));
        }
    }
    for half in [2usize, 3, 4] {
        if lower.len().is_multiple_of(half) {
            let part = &lower[..lower.len() / half];
            if part.repeat(half) == lower && common(part) {
                return Err(ServiceError::invalid("password", "is too close to a commonly used password"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"));
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapler", &h));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn policy_rejects_common_and_weak_passwords() {
        for bad in [
            "short",
            "qwerty123456",
            "123qweasdzxc",
            "Password123456!",
            "passwordpassword",
            "iloveyou2024!!",
            "sunshine1234567",
            "aaaaaaaaaaaaaaaa",
        ] {
            assert!(check_policy(bad, &[]).is_err(), "{bad}");
        }
        assert!(check_policy("adaprimeclinic12", &["adaprimeclinic"]).is_err());
        for good in ["correct horse battery staple", "Blue-Otter-Lantern-42", "mzq8 Ravel wobble"] {
            assert!(check_policy(good, &["ada", "example"]).is_ok(), "{good}");
        }
    }
}
