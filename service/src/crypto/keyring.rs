//! The key hierarchy: a root key-encryption key (from a file or the environment, never the database)
//! wraps per-organisation data keys and system keys, which are stored wrapped in `wrapped_key`.
//!
//! Invariants:
//! - Keys are not `Clone`, `Debug` or `Serialize`; their bytes live on the heap and are zeroized on
//!   drop, and decoding a root key leaves no unzeroized copy in freed memory.
//! - A process holds its current root key and, during a root-key rotation, previous ones. Each
//!   wrapped key names the root key that wrapped it (`root_key_id`) and is unwrapped with that one.
//!   New keys are wrapped only under the root key the database names as current
//!   (`root_key_state`), checked in the very statement that inserts them and under a share lock
//!   that `rotate-root-key` must wait for: no key is ever wrapped under a root key that is being
//!   retired. A process that does not hold the current root key refuses to create keys.
//! - A key of an organisation is used only while the organisation exists: the ring re-checks the
//!   organisation against the database when its last check is older than `revalidate` (1 s), and
//!   forgets it at once when `organisation_deleted` is called (the deleting process, and every
//!   other process through the LISTEN/NOTIFY listener in `revocation`). A key is created
//!   automatically only for an organisation that never had one of that purpose.
//! - The cached "active key" is re-read after `revalidate`, so a data-key rotation made by another
//!   process is picked up within a second.

use super::seal::{self, Aad, Sealed};
use crate::clock::Clock;
use crate::db;
use crate::error::{Internal, ServiceError, ServiceResult};
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use data_encoding::{BASE64, BASE64URL_NOPAD, Encoding, HEXLOWER_PERMISSIVE};
use domain::ids::OrganisationId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;
use zeroize::Zeroizing;

/// How long a check that an organisation exists, or a read of the active key, is trusted.
pub const REVALIDATE: Duration = Duration::from_secs(1);

/// The root key-encryption key. Loaded once at start; never stored in the database.
pub struct RootKey {
    // Boxed so that moving a `RootKey` moves a pointer, never the key bytes.
    key: Box<Zeroizing<[u8; 32]>>,
    id: String,
}

impl RootKey {
    fn from_box(key: Box<Zeroizing<[u8; 32]>>) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"hermetic.root-key-id.v1");
        h.update(key.as_slice());
        let fp = h.finalize();
        let id = HEXLOWER_PERMISSIVE.encode(&fp[..8]);
        RootKey { key, id }
    }

    /// Accepts 32 bytes encoded as standard base64, URL-safe base64 or hex (surrounding whitespace
    /// ignored). Error messages never echo the input. Every decoding buffer is zeroized.
    pub fn from_encoded(text: &str) -> ServiceResult<Self> {
        let t = text.trim();
        // Some strings decode under several encodings (64 hex digits are also valid base64):
        // take the first decoding that yields exactly 32 bytes.
        let candidates: [(&Encoding, &str); 3] =
            [(&BASE64, t), (&BASE64URL_NOPAD, t.trim_end_matches('=')), (&HEXLOWER_PERMISSIVE, t)];
        for (encoding, input) in candidates {
            let Ok(len) = encoding.decode_len(input.len()) else { continue };
            if len > 64 {
                continue;
            }
            let mut buf = Zeroizing::new(vec![0u8; len]);
            if let Ok(n) = encoding.decode_mut(input.as_bytes(), &mut buf)
                && n == 32
            {
                let mut key = Box::new(Zeroizing::new([0u8; 32]));
                key.copy_from_slice(&buf[..32]);
                return Ok(Self::from_box(key));
            }
        }
        Err(ServiceError::invalid("root key", "must be 32 bytes in base64 or hex"))
    }

    pub fn generate() -> ServiceResult<Self> {
        Ok(Self::from_box(random_key()?))
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
    ) -> ServiceResult<Box<Zeroizing<[u8; 32]>>> {
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
        if pt.len() != 32 {
            return Err(ServiceError::internal("unwrapped key has the wrong length"));
        }
        let mut out = Box::new(Zeroizing::new([0u8; 32]));
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

    pub fn parse(s: &str) -> ServiceResult<KeyPurpose> {
        match s {
            "data" => Ok(KeyPurpose::Data),
            "blind_index" => Ok(KeyPurpose::BlindIndex),
            "audit_mac" => Ok(KeyPurpose::AuditMac),
            _ => Err(ServiceError::internal("unknown key purpose")),
        }
    }
}

/// An unwrapped key. Not Clone, not Debug; zeroized on drop.
pub struct DataKey {
    pub id: Uuid,
    pub version: i32,
    pub organisation: Option<OrganisationId>,
    pub purpose: KeyPurpose,
    key: Box<Zeroizing<[u8; 32]>>,
}

impl DataKey {
    /// A free-standing key for micro-benchmarks (never stored, never wrapped).
    pub fn for_benchmark(bytes: [u8; 32]) -> DataKey {
        DataKey {
            id: Uuid::now_v7(),
            version: 1,
            organisation: None,
            purpose: KeyPurpose::Data,
            key: Box::new(Zeroizing::new(bytes)),
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
    read_at: Instant,
}

fn internal_owned(msg: String) -> ServiceError {
    ServiceError::Internal(Internal(Cow::Owned(msg)))
}

/// Why a guarded key insert wrote nothing.
enum NotCreated {
    /// The database's current root key changed between reading it and inserting: try again.
    RootChanged,
    /// Another process created the key first, or the organisation had a key of this purpose
    /// before, or the organisation is deleted: the caller re-reads and decides.
    Refused,
}

/// The key ring: the root keys and caches of unwrapped keys and of organisation checks.
pub struct KeyRing {
    /// `[0]` is the configured current root key; the rest are previous root keys, kept to open
    /// keys wrapped before a rotation finished.
    roots: Vec<RootKey>,
    by_id: RwLock<HashMap<Uuid, Arc<DataKey>>>,
    active: RwLock<HashMap<(Uuid, KeyPurpose), ActiveEntry>>,
    /// When each organisation was last seen to exist (not deleted).
    verified: RwLock<HashMap<Uuid, Instant>>,
    /// Organisations known to be deleted: their keys are never used again by this process.
    deleted: RwLock<HashSet<Uuid>>,
    revalidate: Duration,
}

impl KeyRing {
    pub fn new(root: RootKey) -> Self {
        KeyRing {
            roots: vec![root],
            by_id: RwLock::new(HashMap::new()),
            active: RwLock::new(HashMap::new()),
            verified: RwLock::new(HashMap::new()),
            deleted: RwLock::new(HashSet::new()),
            revalidate: REVALIDATE,
        }
    }

    /// A ring with the current root key and previous ones (during a root-key rotation).
    pub fn with_previous(root: RootKey, previous: Vec<RootKey>) -> ServiceResult<Self> {
        let mut ring = KeyRing::new(root);
        for p in previous {
            if ring.roots.iter().any(|r| r.id() == p.id()) {
                return Err(ServiceError::invalid("previous root keys", "repeat a root key"));
            }
            ring.roots.push(p);
        }
        Ok(ring)
    }

    /// How long an organisation check or active-key read is trusted (tests lengthen it to prove
    /// that the LISTEN/NOTIFY path alone evicts a deleted organisation).
    pub fn with_revalidate_after(mut self, d: Duration) -> Self {
        self.revalidate = d;
        self
    }

    /// The configured current root key's id.
    pub fn root_key_id(&self) -> &str {
        self.roots[0].id()
    }

    /// Every root key this process holds (current first).
    pub fn root_key_ids(&self) -> Vec<&str> {
        self.roots.iter().map(RootKey::id).collect()
    }

    pub(crate) fn root(&self) -> &RootKey {
        &self.roots[0]
    }

    pub(crate) fn root_by_id(&self, id: &str) -> Option<&RootKey> {
        self.roots.iter().find(|r| r.id() == id)
    }

    fn not_held(&self, id: &str) -> ServiceError {
        internal_owned(format!(
            "the database's current root key is {id}, which this process does not hold (it holds {}): \
             configure it as root_key_file or in previous_root_key_files and restart",
            self.root_key_ids().join(", ")
        ))
    }

    /// Drop the cached "active key" so the next call re-reads it (after a rotation).
    pub fn forget_active(&self, org: Option<OrganisationId>, purpose: KeyPurpose) {
        if let Ok(mut m) = self.active.write() {
            m.remove(&(org.map(|o| o.0).unwrap_or_default(), purpose));
        }
    }

    /// Drop every cached key of an organisation.
    pub fn forget_organisation(&self, org: OrganisationId) {
        if let Ok(mut m) = self.by_id.write() {
            m.retain(|_, k| k.organisation != Some(org));
        }
        if let Ok(mut m) = self.active.write() {
            m.retain(|(o, _), _| *o != org.0);
        }
        if let Ok(mut m) = self.verified.write() {
            m.remove(&org.0);
        }
    }

    /// The organisation was deleted: forget its keys and refuse them from now on.
    pub fn organisation_deleted(&self, org: OrganisationId) {
        if let Ok(mut d) = self.deleted.write() {
            d.insert(org.0);
        }
        self.forget_organisation(org);
    }

    /// Forget every "organisation exists" check, so each is made again on next use (after the
    /// deletion listener lost its connection and may have missed a notification).
    pub fn forget_verifications(&self) {
        if let Ok(mut m) = self.verified.write() {
            m.clear();
        }
    }

    fn is_deleted(&self, org: OrganisationId) -> bool {
        // A poisoned lock fails closed.
        self.deleted.read().map(|d| d.contains(&org.0)).unwrap_or(true)
    }

    /// Err(NotFound) unless the organisation exists and is not deleted; checked against the
    /// database when the last check is older than `revalidate`.
    pub async fn check_organisation<C: ConnectionTrait>(&self, conn: &C, org: OrganisationId) -> ServiceResult<()> {
        if self.is_deleted(org) {
            return Err(ServiceError::NotFound);
        }
        let fresh = self
            .verified
            .read()
            .ok()
            .and_then(|m| m.get(&org.0).copied())
            .is_some_and(|at| at.elapsed() < self.revalidate);
        if fresh {
            return Ok(());
        }
        let checked_at = Instant::now();
        let live: bool =
            db::scalar(conn, "SELECT deleted_at IS NULL AS live FROM organisation WHERE id = $1", [org.0.into()])
                .await?
                .unwrap_or(false);
        if !live {
            tracing::warn!(organisation = %org, "a key of a deleted organisation was asked for; refused");
            self.organisation_deleted(org);
            return Err(ServiceError::NotFound);
        }
        // A notification that arrived while we were asking wins.
        if self.is_deleted(org) {
            return Err(ServiceError::NotFound);
        }
        if let Ok(mut m) = self.verified.write() {
            m.insert(org.0, checked_at);
        }
        Ok(())
    }

    /// Make sure the database names a current root key and that this process holds it. On a
    /// database from before root keys were recorded, the audit key's root is the current one; on
    /// an empty database, this process's root key is. Returns the current root key's id.
    pub async fn establish<C: ConnectionTrait>(&self, conn: &C, clock: &dyn Clock) -> ServiceResult<String> {
        db::exec(
            conn,
            "INSERT INTO root_key_state (id, root_key_id, updated_at)
             SELECT 1, coalesce((SELECT root_key_id FROM wrapped_key
                                 WHERE organisation_id IS NULL AND purpose = 'audit_mac' AND destroyed_at IS NULL
                                 ORDER BY version DESC LIMIT 1), $1), $2
             ON CONFLICT (id) DO NOTHING",
            [self.root_key_id().to_string().into(), clock.now().into()],
        )
        .await?;
        let current = current_root_id(conn).await?;
        if self.root_by_id(&current).is_none() {
            return Err(self.not_held(&current));
        }
        Ok(current)
    }

    /// Wrap fresh key material under the database's current root key and insert it, in one
    /// statement that holds a share lock on `root_key_state` (so `rotate-root-key`, which takes
    /// it exclusively, waits for this key and re-wraps it) and checks that the organisation is
    /// not deleted (a share lock on its row orders this against the deletion). With `first`, the
    /// insert also requires that the organisation never had a key of this purpose.
    #[allow(clippy::too_many_arguments)]
    async fn insert_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        version: i32,
        first: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ServiceResult<Result<(), NotCreated>> {
        let current = current_root_id(conn).await?;
        let root = self.root_by_id(&current).ok_or_else(|| self.not_held(&current))?;
        let material = random_key()?;
        let wrapped = root.wrap_key(&material, id, org, purpose, version)?;
        let n = db::exec(
            conn,
            "INSERT INTO wrapped_key (id, organisation_id, purpose, version, wrapped, root_key_id, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7 FROM root_key_state s
             WHERE s.id = 1 AND s.root_key_id = $6
               AND ($2::uuid IS NULL OR EXISTS
                     (SELECT 1 FROM organisation o WHERE o.id = $2 AND o.deleted_at IS NULL FOR SHARE))
               AND (NOT $8 OR NOT EXISTS
                     (SELECT 1 FROM wrapped_key k WHERE k.organisation_id IS NOT DISTINCT FROM $2 AND k.purpose = $3))
             FOR SHARE OF s
             ON CONFLICT DO NOTHING",
            [
                id.into(),
                org.map(|o| o.0).into(),
                purpose.as_str().into(),
                version.into(),
                wrapped.into(),
                current.clone().into(),
                now.into(),
                first.into(),
            ],
        )
        .await?;
        if n == 1 {
            return Ok(Ok(()));
        }
        if current_root_id(conn).await? != current {
            return Ok(Err(NotCreated::RootChanged));
        }
        Ok(Err(NotCreated::Refused))
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
        self.check_organisation(conn, org).await?;
        let now = clock.now();
        let retired = db::exec(
            conn,
            "UPDATE wrapped_key SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL AND destroyed_at IS NULL",
            [old_id.into(), now.into()],
        )
        .await?;
        if retired == 0 {
            return Err(ServiceError::conflict("The key changed meanwhile. Try again."));
        }
        let id = Uuid::now_v7();
        for _ in 0..3 {
            match self.insert_key(conn, id, Some(org), purpose, old_version + 1, false, now).await? {
                Ok(()) => return Ok(id),
                Err(NotCreated::RootChanged) => continue,
                Err(NotCreated::Refused) => return Err(ServiceError::NotFound),
            }
        }
        Err(ServiceError::internal("the current root key kept changing"))
    }

    fn cached(&self, id: Uuid) -> Option<Arc<DataKey>> {
        self.by_id.read().ok().and_then(|m| m.get(&id).cloned())
    }

    /// The active key for (organisation, purpose), creating it on first use — only for an
    /// organisation that exists and never had a key of this purpose.
    pub async fn active_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        clock: &dyn Clock,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
    ) -> ServiceResult<Arc<DataKey>> {
        if let Some(o) = org {
            self.check_organisation(conn, o).await?;
        }
        let slot = (org.map(|o| o.0).unwrap_or_default(), purpose);
        let fresh = self
            .active
            .read()
            .ok()
            .and_then(|m| m.get(&slot).filter(|e| e.read_at.elapsed() < self.revalidate).map(|e| e.id));
        if let Some(key) = fresh.and_then(|id| self.cached(id)) {
            return Ok(key);
        }
        for _ in 0..3 {
            let read_at = Instant::now();
            #[derive(FromQueryResult)]
            struct Active {
                id: Uuid,
                version: i32,
                wrapped: Vec<u8>,
                root_key_id: String,
            }
            let row: Option<Active> = db::one_as(
                conn,
                "SELECT id, version, wrapped, root_key_id FROM wrapped_key
                 WHERE organisation_id IS NOT DISTINCT FROM $1 AND purpose = $2
                   AND retired_at IS NULL AND destroyed_at IS NULL",
                [org.map(|o| o.0).into(), purpose.as_str().into()],
            )
            .await?;
            if let Some(row) = row {
                let id = row.id;
                let key = self.remember(id, row.version, org, purpose, &row.wrapped, &row.root_key_id)?;
                if let Ok(mut m) = self.active.write() {
                    m.insert(slot, ActiveEntry { id, read_at });
                }
                return Ok(key);
            }
            // None yet: create one. A concurrent creator wins the partial unique index; we re-read.
            match self.insert_key(conn, Uuid::now_v7(), org, purpose, 1, true, clock.now()).await? {
                Ok(()) | Err(NotCreated::RootChanged) => continue,
                Err(NotCreated::Refused) => {
                    if let Some(o) = org {
                        // Deleted meanwhile?
                        self.forget_verifications_of(o);
                        self.check_organisation(conn, o).await?;
                    }
                    let had = db::one(
                        conn,
                        "SELECT 1 AS x FROM wrapped_key WHERE organisation_id IS NOT DISTINCT FROM $1 AND purpose = $2
                           AND (retired_at IS NOT NULL OR destroyed_at IS NOT NULL)
                           AND NOT EXISTS (SELECT 1 FROM wrapped_key a WHERE a.organisation_id IS NOT DISTINCT FROM $1
                                           AND a.purpose = $2 AND a.retired_at IS NULL AND a.destroyed_at IS NULL)
                         LIMIT 1",
                        [org.map(|o| o.0).into(), purpose.as_str().into()],
                    )
                    .await?;
                    if had.is_some() {
                        tracing::error!(
                            organisation = ?org.map(|o| o.0),
                            purpose = purpose.as_str(),
                            "no active key, and keys of this purpose existed: a new one is never created automatically"
                        );
                        return Err(ServiceError::internal(
                            "the active key was retired or destroyed; a new key is never created automatically",
                        ));
                    }
                    // Another process created it: read it on the next round.
                }
            }
        }
        Err(ServiceError::internal("could not create or read the active key"))
    }

    fn forget_verifications_of(&self, org: OrganisationId) {
        if let Ok(mut m) = self.verified.write() {
            m.remove(&org.0);
        }
    }

    /// Any key (active or retired) by id, to open values sealed before a rotation.
    pub async fn key_by_id<C: ConnectionTrait>(&self, conn: &C, id: Uuid) -> ServiceResult<Arc<DataKey>> {
        if let Some(k) = self.cached(id) {
            if let Some(org) = k.organisation {
                self.check_organisation(conn, org).await?;
            }
            return Ok(k);
        }
        use entity::wrapped_key::{Column, Entity};
        let row = Entity::find_by_id(id)
            .filter(Column::DestroyedAt.is_null())
            .one(conn)
            .await?
            .ok_or_else(|| ServiceError::internal("sealed value refers to an unknown or destroyed key"))?;
        let org: Option<OrganisationId> = row.organisation_id.map(OrganisationId);
        if let Some(o) = org {
            self.check_organisation(conn, o).await?;
        }
        let purpose = KeyPurpose::parse(&row.purpose)?;
        self.remember(id, row.version, org, purpose, &row.wrapped, &row.root_key_id)
    }

    fn remember(
        &self,
        id: Uuid,
        version: i32,
        org: Option<OrganisationId>,
        purpose: KeyPurpose,
        wrapped: &[u8],
        root_id: &str,
    ) -> ServiceResult<Arc<DataKey>> {
        if let Some(k) = self.cached(id) {
            return Ok(k);
        }
        let root = self.root_by_id(root_id).ok_or_else(|| {
            internal_owned(format!(
                "a key is wrapped under root key {root_id}, which this process does not hold (it holds {})",
                self.root_key_ids().join(", ")
            ))
        })?;
        let key = root.unwrap_key(wrapped, id, org, purpose, version)?;
        let dk = Arc::new(DataKey { id, version, organisation: org, purpose, key });
        if let Some(o) = org
            && self.is_deleted(o)
        {
            return Err(ServiceError::NotFound);
        }
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

/// 32 random bytes made in place on the heap (no copy left behind on the stack).
fn random_key() -> ServiceResult<Box<Zeroizing<[u8; 32]>>> {
    let mut key = Box::new(Zeroizing::new([0u8; 32]));
    getrandom::fill(key.as_mut_slice())
        .map_err(|_| ServiceError::internal("operating system randomness unavailable"))?;
    Ok(key)
}

/// The root key new keys must be wrapped under, as the database records it.
pub(crate) async fn current_root_id<C: ConnectionTrait>(conn: &C) -> ServiceResult<String> {
    db::scalar::<String, _>(conn, "SELECT root_key_id FROM root_key_state WHERE id = 1", [])
        .await?
        .ok_or_else(|| ServiceError::internal("no current root key is recorded (root_key_state is empty)"))
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
        assert!(RootKey::from_encoded(&"a".repeat(100_000)).is_err());
        assert!(RootKey::from_encoded("").is_err());
        // URL-safe, with or without padding, and surrounding whitespace.
        let url = BASE64URL_NOPAD.encode(&[0xfbu8; 32]);
        assert_eq!(
            RootKey::from_encoded(&format!(" {url}\n")).unwrap().id(),
            RootKey::from_encoded(&BASE64.encode(&[0xfbu8; 32])).unwrap().id()
        );

        let id = Uuid::now_v7();
        let dk = [9u8; 32];
        let w = k.wrap_key(&dk, id, None, KeyPurpose::AuditMac, 1).unwrap();
        assert_eq!(**k2.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 1).unwrap(), dk);
        // bound to its id, purpose, version and organisation
        assert!(k.unwrap_key(&w, Uuid::now_v7(), None, KeyPurpose::AuditMac, 1).is_err());
        assert!(k.unwrap_key(&w, id, None, KeyPurpose::Data, 1).is_err());
        assert!(k.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 2).is_err());
        assert!(k.unwrap_key(&w, id, Some(OrganisationId::new()), KeyPurpose::AuditMac, 1).is_err());
        let other = RootKey::generate().unwrap();
        assert!(other.unwrap_key(&w, id, None, KeyPurpose::AuditMac, 1).is_err());
    }

    /// Decoding a root key leaves no copy of the key (or of its text) in freed heap memory: the
    /// test binary's allocator looks into every block as it is freed.
    #[test]
    fn decoding_a_root_key_leaves_no_copy_in_freed_memory() {
        let raw = super::super::random_bytes::<32>().unwrap();
        for text in [
            Zeroizing::new(BASE64.encode(&raw)),
            Zeroizing::new(format!("  {}\n", BASE64URL_NOPAD.encode(&raw))),
            Zeroizing::new(HEXLOWER_PERMISSIVE.encode(&raw)),
        ] {
            let found = probe::watch(&[raw.as_slice(), text.trim().as_bytes()], || {
                let k = RootKey::from_encoded(&text).unwrap();
                let again = RootKey::from_encoded(&k.to_base64()).unwrap();
                assert_eq!(k.id(), again.id());
                let ring = KeyRing::with_previous(k, vec![RootKey::generate().unwrap()]).unwrap();
                drop(ring);
                drop(again);
            });
            assert!(!found, "a copy of the root key was freed without being zeroized");
        }
    }

    #[test]
    fn the_probe_sees_an_unzeroized_copy() {
        let raw = super::super::random_bytes::<32>().unwrap();
        let found = probe::watch(&[raw.as_slice()], || {
            let copy = std::hint::black_box(raw.to_vec());
            drop(copy);
        });
        assert!(found, "the probe must notice a plain Vec holding the key");
    }

    #[test]
    fn a_ring_refuses_a_repeated_previous_key() {
        let k = RootKey::generate().unwrap();
        let again = RootKey::from_encoded(&k.to_base64()).unwrap();
        assert!(KeyRing::with_previous(k, vec![again]).is_err());
        let ring = KeyRing::with_previous(RootKey::generate().unwrap(), vec![RootKey::generate().unwrap()]).unwrap();
        assert_eq!(ring.root_key_ids().len(), 2);
    }

    /// A global allocator for this test binary that, while a watch is on, reports whether any
    /// freed heap block still contains one of the watched byte strings. (Test-only `unsafe`: an
    /// allocator cannot be written without it.)
    #[allow(unsafe_code)]
    mod probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};

        struct Probe;

        static ARMED: AtomicBool = AtomicBool::new(false);
        static FOUND: AtomicBool = AtomicBool::new(false);
        // The watched strings, copied into fixed storage (no allocation inside the allocator).
        static NEEDLES: Mutex<([[u8; 128]; 4], [usize; 4], usize)> = Mutex::new(([[0; 128]; 4], [0; 4], 0));
        // One watch at a time across the test threads.
        static ONE: Mutex<()> = Mutex::new(());

        #[global_allocator]
        static GLOBAL: Probe = Probe;

        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                if ARMED.load(Ordering::SeqCst) {
                    // Locking a std Mutex never allocates.
                    let n = NEEDLES.lock().unwrap_or_else(|e| e.into_inner());
                    let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                    for i in 0..n.2 {
                        let needle = &n.0[i][..n.1[i]];
                        if !needle.is_empty() && block.windows(needle.len()).any(|w| w == needle) {
                            FOUND.store(true, Ordering::SeqCst);
                        }
                    }
                }
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        /// Run `f` and say whether a freed block held one of `needles` (at most 4, 128 bytes each).
        pub fn watch(needles: &[&[u8]], f: impl FnOnce()) -> bool {
            let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
            {
                let mut n = NEEDLES.lock().unwrap();
                n.2 = needles.len();
                for (i, x) in needles.iter().enumerate() {
                    n.0[i][..x.len()].copy_from_slice(x);
                    n.1[i] = x.len();
                }
            }
            FOUND.store(false, Ordering::SeqCst);
            ARMED.store(true, Ordering::SeqCst);
            f();
            ARMED.store(false, Ordering::SeqCst);
            *NEEDLES.lock().unwrap() = ([[0; 128]; 4], [0; 4], 0);
            FOUND.load(Ordering::SeqCst)
        }
    }
}
