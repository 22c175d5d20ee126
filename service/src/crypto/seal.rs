//! Field sealing: AES-256-GCM-SIV with a random 96-bit nonce, bound by associated data to the exact
//! (organisation, table, column, row) it belongs to, under a versioned byte format.
//!
//! Byte format v1: `[0x01][key id: 16 bytes][nonce: 12 bytes][ciphertext ‖ tag: n + 16 bytes]`.
//! The AAD is the frozen [`Aad`] encoding: changing it would make every stored value undecryptable.

use crate::error::ServiceError;
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use domain::ids::OrganisationId;
use uuid::Uuid;

pub const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 16 + 12;
const TAG_LEN: usize = 16;

/// Where a sealed value lives. Frozen: the encoding below is part of every stored ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    pub organisation: OrganisationId,
    pub table: &'a str,
    pub column: &'a str,
    pub row: Uuid,
}

impl Aad<'_> {
    fn encode(&self, version: u8, key_id: Uuid) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.table.len() + self.column.len());
        out.extend_from_slice(b"hermetic.aad");
        out.push(version);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(self.organisation.0.as_bytes());
        for part in [self.table.as_bytes(), self.column.as_bytes()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(self.row.as_bytes());
        out
    }
}

/// A sealed value as stored (bytea). Opaque: the only way in is [`seal`], the only way out [`open`].
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Sealed {
    pub fn from_bytes(b: Vec<u8>) -> Result<Self, ServiceError> {
        if b.len() < HEADER_LEN + TAG_LEN || b[0] != FORMAT_V1 {
            return Err(ServiceError::internal("sealed value has an unknown format"));
        }
        Ok(Sealed(b))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    /// The data key that sealed this value (looked up in the key ring to open it).
    pub fn key_id(&self) -> Uuid {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.0[1..17]);
        Uuid::from_bytes(id)
    }
}

/// Raw 256-bit key material usable for sealing. Not Clone, not Debug; zeroized on drop by its owner.
pub(crate) fn seal_with(key: &[u8; 32], key_id: Uuid, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
    let cipher = Aes256GcmSiv::new_from_slice(key).map_err(|_| ServiceError::internal("bad key length"))?;
    let nonce_bytes = super::random_bytes::<12>()?;
    let nonce = Nonce::from(nonce_bytes);
    let aad_bytes = aad.encode(FORMAT_V1, key_id);
    let ct = cipher
        .encrypt(&nonce, Payload { msg: plaintext, aad: &aad_bytes })
        .map_err(|_| ServiceError::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(Sealed(out))
}

/// Fails closed: a wrong key, a value moved to another row/column/organisation, or any flipped bit
/// gives an error, never garbage.
pub(crate) fn open_with(key: &[u8; 32], aad: &Aad<'_>, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
    let b = &sealed.0;
    let key_id = sealed.key_id();
    let cipher = Aes256GcmSiv::new_from_slice(key).map_err(|_| ServiceError::internal("bad key length"))?;
    let mut nonce_bytes = [0u8; 12];
    nonce_bytes.copy_from_slice(&b[17..29]);
    let nonce = Nonce::from(nonce_bytes);
    let aad_bytes = aad.encode(b[0], key_id);
    cipher
        .decrypt(&nonce, Payload { msg: &b[HEADER_LEN..], aad: &aad_bytes })
        .map_err(|_| ServiceError::internal("a sealed value failed authentication"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(row: Uuid, column: &str) -> Aad<'_> {
        Aad { organisation: OrganisationId(Uuid::nil()), table: "app_user", column, row }
    }

    #[test]
    fn round_trip_and_fail_closed() {
        let key = [7u8; 32];
        let kid = Uuid::now_v7();
        let row = Uuid::now_v7();
        let s = seal_with(&key, kid, &aad(row, "totp_secret"), b"secret").unwrap();
        assert_eq!(s.key_id(), kid);
        assert_eq!(open_with(&key, &aad(row, "totp_secret"), &s).unwrap(), b"secret");
        // moved to another row or column: fails
        assert!(open_with(&key, &aad(Uuid::now_v7(), "totp_secret"), &s).is_err());
        assert!(open_with(&key, &aad(row, "other"), &s).is_err());
        // another organisation: fails
        let other_org = Aad { organisation: OrganisationId(Uuid::now_v7()), ..aad(row, "totp_secret") };
        assert!(open_with(&key, &other_org, &s).is_err());
        // wrong key: fails
        assert!(open_with(&[8u8; 32], &aad(row, "totp_secret"), &s).is_err());
        // every single flipped bit anywhere: fails (or is rejected as unknown format)
        for i in 0..s.as_bytes().len() {
            let mut b = s.as_bytes().to_vec();
            b[i] ^= 0x01;
            match Sealed::from_bytes(b) {
                Ok(t) => assert!(open_with(&key, &aad(row, "totp_secret"), &t).is_err(), "bit {i}"),
                Err(_) => assert_eq!(i, 0),
            }
        }
        // nonces are random: the same plaintext seals differently
        let s2 = seal_with(&key, kid, &aad(row, "totp_secret"), b"secret").unwrap();
        assert_ne!(s, s2);
        assert!(Sealed::from_bytes(vec![1, 2, 3]).is_err());
    }
}
