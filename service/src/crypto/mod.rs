//! Cryptographic building blocks: randomness, hashing, the key ring and field sealing.
//!
//! Invariants: key material is never `Clone`, `Debug` or `Serialize` and is zeroized on drop; every
//! sealed value is bound by its associated data to the exact place it belongs.

pub mod columns;
pub mod keyring;
pub mod revocation;
pub mod rotation;
pub mod seal;

use crate::error::ServiceError;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Cryptographically secure random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| ServiceError::internal("operating system randomness unavailable"))?;
    Ok(b)
}

/// A 256-bit random token, URL-safe (cookies, invitation links, CSRF tokens).
pub fn random_token() -> Result<String, ServiceError> {
    Ok(BASE64URL_NOPAD.encode(&random_bytes::<32>()?))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn hmac_parts_are_length_prefixed() {
        // ("ab","c") and ("a","bc") must not collide
        assert_ne!(hmac_sha256(b"k", &[b"ab", b"c"]), hmac_sha256(b"k", &[b"a", b"bc"]));
    }
}
