//! The key hierarchy: a root key-encryption key (from a file or the environment, never the database)
//! wraps per-organisation data keys and system keys, which are stored wrapped in `wrapped_key`.
//!
//! Keys are not `Clone`, `Debug` or `Serialize`; their bytes are zeroized on drop. Unwrapped keys are
//! cached in memory by id; the "active key" lookup is re-read after a short TTL so a rotation made by
//! another process is picked up.

use super::seal::{self, Aad, Sealed};
use crate::clock::Clock;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use chrono::{DateTime, Duration, Utc};
use data_encoding::{BASE64, BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};
use domain::ids::OrganisationId;
use sea_orm::ConnectionTrait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;
use zeroize::Zeroizing;

const ACTIVE_TTL_SECS: i64 = 60;

/// The root key-encryption key. Loaded once at start; never stored in the database.
pub struct RootKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl RootKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        let fp = super::sha256(&[b"hermetic.root-key-id.v1".as_slice(), key.as_slice()].concat());
        let id = HEXLOWER_PERMISSIVE.encode(&fp[..8]);
        RootKey { key, id }
    }

    /// Accepts 32 bytes encoded as standard base64, URL-safe base64 or hex (surrounding whitespace
    /// ignored). Error messages never echo the input.
    pub fn from_encoded(text: &str) -> ServiceResult<Self> {
        let t = text.trim();
        // Some strings decode under several encodings (64 hex digits are also valid base64):
        // take the first decoding that yields exactly 32 bytes.
        let candidates = [
            BASE64.decode(t.as_bytes()).ok(),
            BASE64URL_NOPAD.decode(t.trim_end_matches('=').as_bytes()).ok(),
            HEXLOWER_PERMISSIVE.decode(t.as_bytes()).ok(),
        ];
        for c in candidates.into_iter().flatten() {
            let c = Zeroizing::new(c);
            if let Ok(arr) = <[u8; 32]>::try_from(c.as_slice()) {
                return Ok(Self::from_bytes(arr));
            }
        }
        Err(ServiceError::invalid("root key", "must be 32 bytes in base64 or hex"))
    }

    pub fn generate() -> ServiceResult<Self> {
        Ok(Self::from_bytes(super::random_bytes::<32>()?))
    }

    /// A short public fingerprint recorded next to every key it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Base64 text of the key, for writing a freshly generated key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.key.as_slice()))
    }

    fn wrap_aad(key_id: Uuid, org: Option<OrganisationId>, purpose: KeyPurpose, version: i32) -> Vec<u8> {
        let mut aad = b"hermetic.wrap.v1".to_vec();
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(org.map(|o| o.0).unwrap_or_default().as_bytes());
        aad.extend_from_slice(purpose.as_str().as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }

    pub(crate) fn wrap_key(
        &self,
        dk: &[u8; 32],
        key_id: Uuid,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        version: i32,
    ) -> ServiceResult<Vec<u8>> {
        let cipher =
            Aes256GcmSiv::new_from_slice(self.key.as_slice()).map_err(|_| ServiceError::internal("bad root key"))?;
        let nonce_bytes = super::random_bytes::<12>()?;
        let aad = Self::wrap_aad(key_id, org, purpose, version);
        let ct = cipher
            .encrypt(&Nonce::from(nonce_bytes), Payload { msg: dk.as_slice(), aad: &aad })
            .map_err(|_| ServiceError::internal("key wrapping failed"))?;
        Ok([nonce_bytes.as_slice(), &ct].concat())
    }

    pub(crate) fn unwrap_key(
        &self,
        wrapped: &[u8],
        key_id: Uuid,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        version: i32,
    ) -> ServiceResult<Zeroizing<[u8; 32]>> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(ServiceError::internal("wrapped key has the wrong length"));
        }
        let cipher =
            Aes256GcmSiv::new_from_slice(self.key.as_slice()).map_err(|_| ServiceError::internal("bad root key"))?;
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes.copy_from_slice(&wrapped[..12]);
        let aad = Self::wrap_aad(key_id, org, purpose, version);
        let pt = Zeroizing::new(
            cipher
                .decrypt(&Nonce::from(nonce_bytes), Payload { msg: &wrapped[12..], aad: &aad })
                .map_err(|_| ServiceError::internal("a data key did not unwrap: wrong root key?"))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&pt);
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Seals an organisation's fields.
    Data,
    /// Keys the blind index (HMAC) of an organisation's searchable fields.
    BlindIndex,
    /// Keys the audit chain MAC (system-wide).
    AuditMac,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Data => "data",
            KeyPurpose::BlindIndex => "blind_index",
            KeyPurpose::AuditMac => "audit_mac",
        }
    }
}

/// An unwrapped key. Not Clone, not Debug; zeroized on drop.
pub struct DataKey {
    pub id: Uuid,
    pub version: i32,
    pub organisation: Option<OrganisationId>,
    pub purpose: KeyPurpose,
    key: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// A free-standing key for micro-benchmarks (never stored, never wrapped).
    pub fn for_benchmark(bytes: [u8; 32]) -> DataKey {
        DataKey {
            id: Uuid::now_v7(),
            version: 1,
            organisation: None,
            purpose: KeyPurpose::Data,
            key: Zeroizing::new(bytes),
        }
    }

    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> ServiceResult<Sealed> {
        seal::seal_with(&self.key, self.id, aad, plaintext)
    }

    pub fn open(&self, aad: &Aad<'_>, sealed: &Sealed) -> ServiceResult<Zeroizing<Vec<u8>>> {
        if sealed.key_id() != self.id {
            return Err(ServiceError::internal("sealed value belongs to another key"));
        }
        seal::open_with(&self.key, aad, sealed).map(Zeroizing::new)
    }

    /// HMAC-SHA256 under this key over length-prefixed parts.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        super::hmac_sha256(self.key.as_slice(), parts)
    }
}

struct ActiveEntry {
    id: Uuid,
    read_at: DateTime<Utc>,
}

/// The key ring: the root key and a cache of unwrapped keys.
pub struct KeyRing {
    root: RootKey,
    by_id: RwLock<HashMap<Uuid, Arc<DataKey>>>,
    active: RwLock<HashMap<(Uuid, KeyPurpose), ActiveEntry>>,
}

impl KeyRing {
    pub fn new(root: RootKey) -> Self {
        KeyRing { root, by_id: RwLock::new(HashMap::new()), active: RwLock::new(HashMap::new()) }
    }

    pub fn root_key_id(&self) -> &str {
        self.root.id()
    }

    pub(crate) fn root(&self) -> &RootKey {
        &self.root
    }

    /// Drop the cached "active key" so the next call re-reads it (after a rotation).
    pub fn forget_active(&self, org: Option<OrganisationId>, purpose: KeyPurpose) {
        if let Ok(mut m) = self.active.write() {
            m.remove(&(org.map(|o| o.0).unwrap_or_default(), purpose));
        }
    }

    /// Drop every cached key of an organisation (after its keys were destroyed).
    pub fn forget_organisation(&self, org: OrganisationId) {
        if let Ok(mut m) = self.by_id.write() {
            m.retain(|_, k| k.organisation != Some(org));
        }
        if let Ok(mut m) = self.active.write() {
            m.retain(|(o, _), _| *o != org.0);
        }
    }

    /// Retire the active key and create the next version (inside the caller's transaction).
    pub async fn create_next_version<C: ConnectionTrait>(
        &self,
        conn: &C,
        clock: &dyn Clock,
        org: OrganisationId,
        purpose: KeyPurpose,
        old_id: Uuid,
        old_version: i32,
    ) -> ServiceResult<Uuid> {
        let now = clock.now();
        db::exec(
            conn,
            "UPDATE wrapped_key SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL",
            [old_id.into(), now.into()],
        )
        .await?;
        let id = Uuid::now_v7();
        let version = old_version + 1;
        let material = Zeroizing::new(super::random_bytes::<32>()?);
        let wrapped = self.root.wrap_key(&material, id, Some(org), purpose, version)?;
        db::exec(
            conn,
            "INSERT INTO wrapped_key (id, organisation_id, purpose, version, wrapped, root_key_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [id.into(), org.0.into(), purpose.as_str().into(), version.into(), wrapped.into(), self.root.id().to_string().into(), now.into()],
        )
        .await?;
        Ok(id)
    }

    fn cached(&self, id: Uuid) -> Option<Arc<DataKey>> {
        self.by_id.read().ok().and_then(|m| m.get(&id).cloned())
    }

    /// The active key for (organisation, purpose), creating it on first use.
    pub async fn active_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        clock: &dyn Clock,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
    ) -> ServiceResult<Arc<DataKey>> {
        let now = clock.now();
        let slot = (org.map(|o| o.0).unwrap_or_default(), purpose);
        let fresh =
            self.active.read().ok().and_then(|m| {
                m.get(&slot).filter(|e| now - e.read_at < Duration::seconds(ACTIVE_TTL_SECS)).map(|e| e.id)
            });
        if let Some(id) = fresh.and_then(|id| self.cached(id)) {
            return Ok(id);
        }
        for _ in 0..3 {
            let row = db::one(
                conn,
                "SELECT id, version, wrapped FROM wrapped_key
                 WHERE organisation_id IS NOT DISTINCT FROM $1 AND purpose = $2
                   AND retired_at IS NULL AND destroyed_at IS NULL",
                [org.map(|o| o.0).into(), purpose.as_str().into()],
            )
            .await?;
            if let Some(row) = row {
                let id: Uuid = db::get(&row, "id")?;
                let version: i32 = db::get(&row, "version")?;
                let wrapped: Vec<u8> = db::get(&row, "wrapped")?;
                let key = self.remember(id, version, org, purpose, &wrapped)?;
                if let Ok(mut m) = self.active.write() {
                    m.insert(slot, ActiveEntry { id, read_at: now });
                }
                return Ok(key);
            }
            // None yet: create one. A concurrent creator wins the partial unique index; we re-read.
            let id = Uuid::now_v7();
            let material = Zeroizing::new(super::random_bytes::<32>()?);
            let wrapped = self.root.wrap_key(&material, id, org, purpose, 1)?;
            db::exec(
                conn,
                "INSERT INTO wrapped_key (id, organisation_id, purpose, version, wrapped, root_key_id, created_at)
                 VALUES ($1, $2, $3, 1, $4, $5, $6) ON CONFLICT DO NOTHING",
                [
                    id.into(),
                    org.map(|o| o.0).into(),
                    purpose.as_str().into(),
                    wrapped.into(),
                    self.root.id().to_string().into(),
                    now.into(),
                ],
            )
            .await?;
        }
        Err(ServiceError::internal("could not create or read the active key"))
    }

    /// Any key (active or retired) by id, to open values sealed before a rotation.
    pub async fn key_by_id<C: ConnectionTrait>(&self, conn: &C, id: Uuid) -> ServiceResult<Arc<DataKey>> {
        if let Some(k) = self.cached(id) {
            return Ok(k);
        }
        let row = db::one(
            conn,
            "SELECT organisation_id, purpose, version, wrapped FROM wrapped_key WHERE id = $1 AND destroyed_at IS NULL",
            [id.into()],
        )
        .await?
        .ok_or_else(|| ServiceError::internal("sealed value refers to an unknown or destroyed key"))?;
        let org: Option<Uuid> = db::get(&row, "organisation_id")?;
        let purpose = match db::get::<String>(&row, "purpose")?.as_str() {
            "data" => KeyPurpose::Data,
            "blind_index" => KeyPurpose::BlindIndex,
            "audit_mac" => KeyPurpose::AuditMac,
            _ => return Err(ServiceError::internal("unknown key purpose")),
        };
        let version: i32 = db::get(&row, "version")?;
        let wrapped: Vec<u8> = db::get(&row, "wrapped")?;
        self.remember(id, version, org.map(OrganisationId), purpose, &wrapped)
    }

    fn remember(
        &self,
        id: Uuid,
        version: i32,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        wrapped: &[u8],
    ) -> ServiceResult<Arc<DataKey>> {
        if let Some(k) = self.cached(id) {
            return Ok(k);
        }
        let key = self.root.unwrap_key(wrapped, id, org, purpose, version)?;
        let dk = Arc::new(DataKey { id, version, organisation: org, purpose, key });
        if let Ok(mut m) = self.by_id.write() {
            m.insert(id, dk.clone());
        }
        Ok(dk)
    }

    /// Several keys by id at once (to open a batch of rows synchronously afterwards).
    pub async fn load_keys<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> ServiceResult<HashMap<Uuid, Arc<DataKey>>> {
        let mut out = HashMap::new();
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(e) = out.entry(id) {
                e.insert(self.key_by_id(conn, id).await?);
            }
        }
        Ok(out)
    }

    /// Seal a field of an organisation's row under its active data key.
    pub async fn seal<C: ConnectionTrait>(
        &self,
        conn: &C,
        clock: &dyn Clock,
        aad: &Aad<'_>,
        plaintext: &[u8],
    ) -> ServiceResult<Sealed> {
        let key = self.active_key(conn, clock, Some(aad.organisation), KeyPurpose::Data).await?;
        key.seal(aad, plaintext)
    }

    /// Open a sealed field (any key version still on record).
    pub async fn open<C: ConnectionTrait>(
        &self,
        conn: &C,
        aad: &Aad<'_>,
        sealed: &Sealed,
    ) -> ServiceResult<Zeroizing<Vec<u8>>> {
        let key = self.key_by_id(conn, sealed.key_id()).await?;
        if key.organisation != Some(aad.organisation) || key.purpose != KeyPurpose::Data {
            return Err(ServiceError::internal("sealed value belongs to another organisation's key"));
        }
        key.open(aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_parsing_and_wrapping() {
        let k = RootKey::generate().unwrap();
        let text = k.to_base64();
        let k2 = RootKey::from_encoded(&text).unwrap();
        assert_eq!(k.id(), k2.id());
        assert!(RootKey::from_encoded("short").is_err());
        assert!(RootKey::from_encoded(&"ab".repeat(31)).is_err());
        assert!(RootKey::from_encoded(&"ab".repeat(32)).is_ok());

        let id = Uuid::now_v7();
        let dk = [9u8; 32];
        let w = k.wrap_key(&dk, id, None, KeyPurpose::AuditMac, 1).unwrap();
        assert_eq!(*k2.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 1).unwrap(), dk);
        // bound to its id, purpose, version and organisation
        assert!(k.unwrap_key(&w, Uuid::now_v7(), None, KeyPurpose::AuditMac, 1).is_err());
        assert!(k.unwrap_key(&w, id, None, KeyPurpose::Data, 1).is_err());
        assert!(k.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 2).is_err());
        assert!(k.unwrap_key(&w, id, Some(OrganisationId::new()), KeyPurpose::AuditMac, 1).is_err());
        let other = RootKey::generate().unwrap();
        assert!(other.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 1).is_err());
    }
}
