//! Server-side sessions. The cookie carries a random 256-bit token; the database keeps only its
//! SHA-256, so a database reader cannot hijack sessions. Sessions move through stages
//! (`mfa`/`enrol` → `active`); every stage change issues a new token (no session fixation).

use crate::actor::Actor;
use crate::crypto;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use domain::Role;
use domain::ids::{OrganisationId, SessionId, UserId};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Password accepted; a TOTP or recovery code is due.
    Mfa,
    /// Password accepted; the account must enrol an authenticator now.
    Enrol,
    /// Fully signed in.
    Active,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStage::Mfa => "mfa",
            SessionStage::Enrol => "enrol",
            SessionStage::Active => "active",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "mfa" => Some(SessionStage::Mfa),
            "enrol" => Some(SessionStage::Enrol),
            "active" => Some(SessionStage::Active),
            _ => None,
        }
    }
}

/// A session as resolved from a cookie. Holds no token.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: SessionId,
    pub user_id: UserId,
    pub organisation_id: OrganisationId,
    pub organisation_name: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub stage: SessionStage,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SessionInfo {
    /// The actor for service calls, only once the session is fully signed in.
    pub fn actor(&self, ip: Option<String>) -> Option<Actor> {
        (self.stage == SessionStage::Active)
            .then(|| Actor::user(self.organisation_id, self.role, self.user_id, self.id, ip))
    }
}

/// A freshly issued cookie token; given to the edge once so it can set the cookie.
pub struct IssuedSession {
    pub session_id: SessionId,
    pub token: Zeroizing<String>,
    pub csrf_token: String,
    /// Cookie lifetime (the absolute timeout; idle expiry is enforced server-side).
    pub max_age: Duration,
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession").field("session_id", &self.session_id).finish_non_exhaustive()
    }
}

pub fn token_hash(token: &str) -> Vec<u8> {
    crypto::sha256(token.as_bytes()).to_vec()
}

/// Where the client is, recorded on sessions and audit rows.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

fn clip(s: Option<&str>, n: usize) -> Option<String> {
    s.map(|v| v.chars().filter(|c| !c.is_control()).take(n).collect())
}

pub(crate) async fn create<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    user_id: UserId,
    org: OrganisationId,
    stage: SessionStage,
    meta: &ClientMeta,
) -> ServiceResult<IssuedSession> {
    let now = svc.clock().now();
    let id = SessionId::new();
    let token = Zeroizing::new(crypto::random_token()?);
    let csrf = crypto::random_token()?;
    let life = match stage {
        SessionStage::Active => svc.auth().absolute_timeout,
        _ => svc.auth().pre_mfa_timeout,
    };
    db::exec(
        conn,
        "INSERT INTO user_session (id, organisation_id, user_id, token_hash, csrf_token, stage, created_at,
            last_seen_at, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
        [
            id.0.into(),
            org.0.into(),
            user_id.0.into(),
            token_hash(&token).into(),
            csrf.clone().into(),
            stage.as_str().into(),
            now.into(),
            (now + life).into(),
            clip(meta.ip.as_deref(), 64).into(),
            clip(meta.user_agent.as_deref(), 300).into(),
        ],
    )
    .await?;
    Ok(IssuedSession { session_id: id, token, csrf_token: csrf, max_age: svc.auth().absolute_timeout })
}

/// Give a session a new token and CSRF token and move it to `stage` (after MFA, enrolment, password
/// change). The old cookie stops working at once.
pub(crate) async fn rotate<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    id: SessionId,
    stage: SessionStage,
) -> ServiceResult<IssuedSession> {
    let now = svc.clock().now();
    let token = Zeroizing::new(crypto::random_token()?);
    let csrf = crypto::random_token()?;
    let expires = match stage {
        SessionStage::Active => now + svc.auth().absolute_timeout,
        _ => now + svc.auth().pre_mfa_timeout,
    };
    // An active session keeps its original absolute deadline when rotated again (password change).
    let n = db::exec(
        conn,
        "UPDATE user_session SET token_hash = $2, csrf_token = $3, stage = $4, last_seen_at = $5,
            expires_at = CASE WHEN stage = 'active' THEN expires_at ELSE $6 END,
            pending_totp_secret = NULL, mfa_failures = 0
         WHERE id = $1 AND revoked_at IS NULL",
        [
            id.0.into(),
            token_hash(&token).into(),
            csrf.clone().into(),
            stage.as_str().into(),
            now.into(),
            expires.into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::SessionExpired);
    }
    Ok(IssuedSession { session_id: id, token, csrf_token: csrf, max_age: svc.auth().absolute_timeout })
}

pub(crate) async fn revoke<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    id: SessionId,
    reason: &str,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "UPDATE user_session SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        [id.0.into(), svc.clock().now().into(), reason.to_string().into()],
    )
    .await?;
    Ok(())
}

/// End every session of a user, optionally keeping one (the session that made the change).
pub(crate) async fn revoke_all_for_user<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    user_id: UserId,
    except: Option<SessionId>,
    reason: &str,
) -> ServiceResult<u64> {
    Ok(db::exec(
        conn,
        "UPDATE user_session SET revoked_at = $2, revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR id <> $4)",
        [user_id.0.into(), svc.clock().now().into(), reason.to_string().into(), except.map(|s| s.0).into()],
    )
    .await?)
}

/// Why a cookie did not resolve to a session (for the audit trail; the user just signs in again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

/// Resolve a cookie token. `touch` records activity: every request a person makes, never the
/// app's background polls (the route table marks them; see `app::background`).
/// Expired sessions are revoked here, with an audit row, so expiry is enforced whether or not the
/// cleanup job has run.
pub async fn resolve(svc: &Services, token: &str, touch: bool) -> ServiceResult<Option<SessionInfo>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    #[derive(FromQueryResult)]
    struct Resolved {
        id: Uuid,
        user_id: Uuid,
        organisation_id: Uuid,
        stage: String,
        csrf_token: String,
        created_at: DateTime<Utc>,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        email: String,
        display_name: String,
        role: String,
        status: String,
        org_name: String,
    }
    let row: Option<Resolved> = db::one_as(
        svc.db(),
        "SELECT s.id, s.user_id, s.organisation_id, s.stage, s.csrf_token, s.created_at, s.last_seen_at,
                s.expires_at, u.email, u.display_name, u.role, u.status, o.name AS org_name
         FROM user_session s
         JOIN app_user u ON u.id = s.user_id
         JOIN organisation o ON o.id = s.organisation_id
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND o.deleted_at IS NULL",
        [token_hash(token).into()],
    )
    .await?;
    let Some(r) = row else { return Ok(None) };
    let info = SessionInfo {
        id: SessionId(r.id),
        user_id: UserId(r.user_id),
        organisation_id: OrganisationId(r.organisation_id),
        organisation_name: r.org_name,
        email: r.email,
        display_name: r.display_name,
        role: r.role.parse().map_err(|_| ServiceError::internal("bad role in database"))?,
        stage: SessionStage::parse(&r.stage).ok_or_else(|| ServiceError::internal("bad session stage"))?,
        csrf_token: r.csrf_token,
        created_at: r.created_at,
        last_seen_at: r.last_seen_at,
        expires_at: r.expires_at,
    };
    let status = r.status;
    let now = svc.clock().now();
    if status != "active" {
        revoke(svc, svc.db(), info.id, "user_disabled").await?;
        return Ok(None);
    }
    let idle_limit = match info.stage {
        SessionStage::Active => svc.auth().idle_timeout,
        _ => svc.auth().pre_mfa_timeout,
    };
    let expiry = if now >= info.expires_at {
        Some(Expiry::Absolute)
    } else if now - info.last_seen_at >= idle_limit {
        Some(Expiry::Idle)
    } else {
        None
    };
    if let Some(e) = expiry {
        expire(svc, &info, e).await?;
        return Ok(None);
    }
    if touch && now - info.last_seen_at >= Duration::seconds(1) {
        db::exec(
            svc.db(),
            "UPDATE user_session SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
            [info.id.0.into(), now.into()],
        )
        .await?;
        return Ok(Some(SessionInfo { last_seen_at: now, ..info }));
    }
    Ok(Some(info))
}

async fn expire(svc: &Services, info: &SessionInfo, e: Expiry) -> ServiceResult<()> {
    use crate::audit::{self, AuditActor, AuditRecord};
    use domain::audit::{AuditAction, AuditOutcome};
    use sea_orm::TransactionTrait;
    let reason = match e {
        Expiry::Idle => "idle",
        Expiry::Absolute => "absolute",
    };
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE user_session SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        [info.id.0.into(), svc.clock().now().into(), reason.into()],
    )
    .await?;
    if n > 0 {
        audit::record(
            svc,
            &txn,
            AuditRecord::new(
                Some(info.organisation_id),
                AuditActor::User { user_id: info.user_id, session_id: Some(info.id) },
                AuditAction::SessionExpired,
                AuditOutcome::Success,
            )
            .target("session", info.id)
            .detail("reason", reason),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Remaining idle and absolute time, without counting as activity (for the idle-logout warning).
pub async fn status(svc: &Services, token: &str) -> ServiceResult<domain::dto::SessionStatus> {
    let info = resolve(svc, token, false).await?;
    let now = svc.clock().now();
    Ok(match info {
        Some(s) if s.stage == SessionStage::Active => domain::dto::SessionStatus {
            authenticated: true,
            idle_remaining_secs: (s.last_seen_at + svc.auth().idle_timeout - now).num_seconds().max(0) as u64,
            absolute_remaining_secs: (s.expires_at - now).num_seconds().max(0) as u64,
        },
        _ => domain::dto::SessionStatus { authenticated: false, idle_remaining_secs: 0, absolute_remaining_secs: 0 },
    })
}

/// The signed-in user's own sessions (settings page).
pub async fn list_own(svc: &Services, actor: &Actor) -> ServiceResult<Vec<domain::dto::SessionView>> {
    actor.require(domain::Permission::OwnAccount)?;
    let Some(user_id) = actor.user_id() else { return Ok(vec![]) };
    #[derive(FromQueryResult)]
    struct Own {
        id: Uuid,
        created_at: DateTime<Utc>,
        last_seen_at: DateTime<Utc>,
        ip: Option<String>,
        user_agent: Option<String>,
    }
    let rows: Vec<Own> = db::all_as(
        svc.db(),
        "SELECT id, created_at, last_seen_at, ip, user_agent FROM user_session
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND stage = 'active'
         ORDER BY last_seen_at DESC LIMIT 50",
        [user_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| domain::dto::SessionView {
            id: r.id,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            ip: r.ip,
            user_agent: r.user_agent,
            current: Some(SessionId(r.id)) == actor.session_id(),
        })
        .collect())
}
