//! API keys: created by administrators (Settings → API keys), shown once, stored as a hash. A key
//! authenticates a request as an [`Actor`] of its organisation holding exactly its scopes.
//!
//! The secret is `hm_live_` and 43 URL-safe base64 characters (256 random bits); the table keeps
//! its SHA-256 (a slow hash adds nothing to 256 bits of entropy, and every request looks it up) and
//! its first characters to tell keys apart. A key that requires signed requests also has a signing
//! secret (`hm_sign_…`), which the server must be able to use: it is sealed under the
//! organisation's data key.

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use data_encoding::BASE64URL_NOPAD;
use domain::Permission;
use domain::api::{self, KeyView, NewKey, Scope, SignatureError, SignatureHeader};
use domain::audit::{AuditAction, AuditOutcome};
use domain::ids::OrganisationId;
use sea_orm::{FromQueryResult, TransactionTrait};
use uuid::Uuid;
use zeroize::Zeroizing;

/// A new key's secrets, shown to the administrator once and never again.
pub struct CreatedKey {
    pub id: Uuid,
    pub secret: Zeroizing<String>,
    pub signing_secret: Option<Zeroizing<String>>,
}

fn aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "api_key", column: "signing_secret", row: id }
}

fn new_secret(prefix: &str) -> ServiceResult<Zeroizing<String>> {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<32>()?);
    Ok(Zeroizing::new(format!("{prefix}{}", BASE64URL_NOPAD.encode(bytes.as_slice()))))
}

fn secret_hash(secret: &str) -> [u8; 32] {
    crate::crypto::sha256(secret.as_bytes())
}

fn parse_scopes(raw: &[String]) -> Vec<Scope> {
    let mut s: Vec<Scope> = raw.iter().filter_map(|r| r.parse().ok()).collect();
    s.sort();
    s.dedup();
    s
}

/// Create a key (administrators: `SettingsManage`).
pub async fn create(svc: &Services, actor: &Actor, new: NewKey) -> ServiceResult<CreatedKey> {
    actor.require(Permission::SettingsManage)?;
    if actor.api_key_id().is_some() {
        return Err(ServiceError::Forbidden);
    }
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("name", "is required (at most 80 characters)"));
    }
    let mut scopes = new.scopes.clone();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ServiceError::invalid("scopes", "choose at least one"));
    }
    let now = svc.clock().now();
    if new.expires_at.is_some_and(|e| e <= now) {
        return Err(ServiceError::invalid("expires_at", "must be in the future"));
    }
    let org = actor.organisation_id;
    let id = Uuid::now_v7();
    let secret = new_secret(api::KEY_PREFIX)?;
    let signing_secret = if new.require_signature { Some(new_secret(api::SIGNING_PREFIX)?) } else { None };
    let txn = svc.db().begin().await?;
    let sealed = match &signing_secret {
        Some(s) => Some(svc.keys().seal(&txn, svc.clock(), &aad(org, id), s.as_bytes()).await?.into_bytes()),
        None => None,
    };
    let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    db::exec(
        &txn,
        "INSERT INTO api_key (id, organisation_id, name, shown_prefix, secret_hash, scopes, require_signature,
             signing_secret, expires_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        [
            id.into(),
            org.0.into(),
            name.to_string().into(),
            secret[..api::SHOWN_PREFIX_LEN].to_string().into(),
            secret_hash(&secret).to_vec().into(),
            scope_names.clone().into(),
            new.require_signature.into(),
            sealed.into(),
            new.expires_at.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::ApiKeyCreated)
            .target("api_key", id)
            .detail("scopes", scope_names)
            .detail("signed", new.require_signature),
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedKey { id, secret, signing_secret })
}

/// The organisation's keys, newest first (revoked ones too: their history matters).
pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<KeyView>> {
    actor.require(Permission::SettingsManage)?;
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
        name: String,
        shown_prefix: String,
        scopes: Vec<String>,
        require_signature: bool,
        expires_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
        created_by: Option<String>,
        last_used_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        "SELECT k.id, k.name, k.shown_prefix, k.scopes, k.require_signature, k.expires_at, k.created_at,
                u.email AS created_by, k.last_used_at, k.revoked_at
         FROM api_key k LEFT JOIN app_user u ON u.id = k.created_by
         WHERE k.organisation_id = $1 ORDER BY k.created_at DESC LIMIT 500",
        [actor.organisation_id.0.into()],
    )
    .await?;
    let now = svc.clock().now();
    Ok(rows
        .into_iter()
        .map(|r| KeyView {
            expired: r.expires_at.is_some_and(|e| e <= now),
            id: r.id,
            name: r.name,
            shown_prefix: r.shown_prefix,
            scopes: parse_scopes(&r.scopes),
            require_signature: r.require_signature,
            expires_at: r.expires_at,
            created_at: r.created_at,
            created_by: r.created_by,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
        .collect())
}

/// Revoke a key: every later request with it is refused. Revoking twice is a no-op.
pub async fn revoke(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::SettingsManage)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE api_key SET revoked_at = coalesce(revoked_at, $3) WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::ApiKeyRevoked).target("api_key", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Why a bearer token was refused. Each is a 401 with the same words to the client (it must not
/// learn which keys exist); the audit trail records which for a key that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
    Revoked,
    Expired,
    Signature(SignatureError),
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Signature(_) => api::problem::BAD_SIGNATURE,
            _ => api::problem::UNAUTHENTICATED,
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "Send an API key: Authorization: Bearer hm_live_….",
            Refusal::Unknown | Refusal::Revoked | Refusal::Expired => {
                "The API key is not valid (unknown, revoked or expired)."
            }
            Refusal::Signature(e) => e.detail(),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::Signature(SignatureError::Missing) => "signature_missing",
            Refusal::Signature(SignatureError::Malformed) => "signature_malformed",
            Refusal::Signature(SignatureError::Stale) => "signature_stale",
            Refusal::Signature(SignatureError::Mismatch) => "signature_mismatch",
        }
    }
}

/// A key that authenticated: the actor it acts as and, when it signs, the secret to check with.
pub struct Authenticated {
    pub actor: Actor,
    signing: Option<Zeroizing<Vec<u8>>>,
}

impl Authenticated {
    pub fn key_id(&self) -> Uuid {
        self.actor.api_key_id().unwrap_or_default()
    }

    pub fn requires_signature(&self) -> bool {
        self.signing.is_some()
    }

    /// Check `Hermetic-Signature` over the raw body (when the key requires it), constant-time,
    /// five minutes either side of `now`. A refusal is audited against the key.
    pub async fn verify(&self, svc: &Services, header: Option<&str>, body: &[u8], route: &str) -> Result<(), Refusal> {
        let Some(secret) = &self.signing else { return Ok(()) };
        let now = svc.clock().now().timestamp();
        let r = match header {
            None => Err(SignatureError::Missing),
            Some(h) => SignatureHeader::parse(h).and_then(|h| {
                if !h.fresh(now) {
                    return Err(SignatureError::Stale);
                }
                let expected = hmac_plain(secret, &api::signed_payload(h.timestamp, body));
                if h.signatures.iter().any(|s| crate::crypto::ct_eq(s, &expected)) {
                    Ok(())
                } else {
                    Err(SignatureError::Mismatch)
                }
            }),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                let refusal = Refusal::Signature(e);
                refuse_audited(svc, self.actor.organisation_id, self.key_id(), refusal, route, self.actor.ip.clone())
                    .await;
                Err(refusal)
            }
        }
    }
}

/// HMAC-SHA256 of one message (the Stripe scheme: no length prefixes, unlike `crypto::hmac_sha256`).
pub fn hmac_plain(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else { return [0u8; 32] };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The header value a client sends: `t=<unix seconds>,v1=<hex>` (for tests, examples and webhooks).
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_plain(secret, &api::signed_payload(timestamp, body));
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

async fn refuse_audited(
    svc: &Services,
    org: OrganisationId,
    key: Uuid,
    refusal: Refusal,
    route: &str,
    ip: Option<String>,
) {
    let rec = AuditRecord::new(
        Some(org),
        AuditActor::ApiKey { key_id: key },
        AuditAction::ApiKeyRefused,
        AuditOutcome::Failure,
    )
    .target("api_key", key)
    .detail("reason", refusal.reason())
    .detail("route", route.to_string())
    .ip(ip);
    if let Err(e) = audit::record_now(svc, rec).await {
        tracing::error!(error = %e.log_detail(), "could not audit a refused API key");
    }
}

/// Authenticate `Authorization: Bearer <key>`. `route` is the route template (for the audit row of
/// a refused known key). Signature checking needs the body: [`Authenticated::verify`].
pub async fn authenticate(
    svc: &Services,
    authorization: Option<&str>,
    route: &str,
    ip: Option<String>,
) -> Result<Authenticated, Refusal> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(Refusal::Missing)?;
    if !api::is_key_shaped(token) {
        return Err(Refusal::Unknown);
    }
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
        organisation_id: Uuid,
        scopes: Vec<String>,
        signing_secret: Option<Vec<u8>>,
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    let row: Option<Row> = db::one_as(
        svc.db(),
        "SELECT id, organisation_id, scopes, CASE WHEN require_signature THEN signing_secret END AS signing_secret,
                expires_at, revoked_at
         FROM api_key WHERE secret_hash = $1",
        [secret_hash(token).to_vec().into()],
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %crate::error::describe_db_err(&e), "API key lookup failed");
        Refusal::Unknown
    })?;
    let row = row.ok_or(Refusal::Unknown)?;
    let org = OrganisationId(row.organisation_id);
    let now = svc.clock().now();
    let refusal = if row.revoked_at.is_some() {
        Some(Refusal::Revoked)
    } else if row.expires_at.is_some_and(|e| e <= now) {
        Some(Refusal::Expired)
    } else {
        None
    };
    if let Some(r) = refusal {
        refuse_audited(svc, org, row.id, r, route, ip).await;
        return Err(r);
    }
    let signing = match row.signing_secret {
        Some(bytes) => {
            let sealed = Sealed::from_bytes(bytes).map_err(|_| Refusal::Unknown)?;
            let plain = svc.keys().open(svc.db(), &aad(org, row.id), &sealed).await.map_err(|e| {
                tracing::error!(error = %e.log_detail(), "could not open an API key's signing secret");
                Refusal::Unknown
            })?;
            Some(plain)
        }
        None => None,
    };
    let permissions = api::permissions(&parse_scopes(&row.scopes));
    Ok(Authenticated { actor: Actor::api_key(org, row.id, permissions, ip), signing })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stripe's documented construction: HMAC-SHA256(secret, "t.body"), hex; checked against a
    /// value computed independently (Python: hmac.new(b"whsec_test", b"1700000000.{}", sha256)).
    #[test]
    fn signature_matches_an_independent_computation() {
        let h = signature_header(b"whsec_test", 1_700_000_000, b"{}");
        assert_eq!(h, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
    }

    #[test]
    fn refusals_do_not_say_which_keys_exist() {
        assert_eq!(Refusal::Unknown.detail(), Refusal::Revoked.detail());
        assert_eq!(Refusal::Unknown.detail(), Refusal::Expired.detail());
        assert_eq!(Refusal::Signature(SignatureError::Mismatch).code(), "bad_signature");
    }
}
