//! Identity: sign-in with password then TOTP (mandatory for everyone), enrolment with recovery codes,
//! password change and sign-out. Every outcome — success or failure — writes an audit row.
//!
//! Answers never reveal whether an account exists: unknown, disabled and wrong-password sign-ins all
//! take the same argon2 time and return the same error, and are throttled alike.

pub mod hashing;
pub mod password;
pub mod session;
pub mod throttle;
pub mod totp;

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use data_encoding::BASE32_NOPAD;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::dto::{MfaEnrolment, RecoveryCodes, SignInStep};
use domain::ids::{OrganisationId, SessionId, UserId};
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, TransactionTrait};
use session::{ClientMeta, IssuedSession, SessionInfo, SessionStage};
use throttle::{Attempt, KeyKind};
use uuid::Uuid;
use zeroize::Zeroizing;

pub const RECOVERY_CODES: usize = 10;
/// Inputs longer than this are refused before any hashing (denial-of-service guard).
const MAX_INPUT: usize = 1024;

struct UserRow {
    id: UserId,
    organisation_id: OrganisationId,
    email: String,
    status: String,
    password_hash: Option<String>,
    totp_secret: Option<Vec<u8>>,
}

/// `app_user` as the sign-in reads it.
#[derive(FromQueryResult)]
struct StoredUser {
    id: Uuid,
    organisation_id: Uuid,
    email: String,
    status: String,
    password_hash: Option<String>,
    totp_secret: Option<Vec<u8>>,
}

impl From<StoredUser> for UserRow {
    fn from(r: StoredUser) -> Self {
        UserRow {
            id: UserId(r.id),
            organisation_id: OrganisationId(r.organisation_id),
            email: r.email,
            status: r.status,
            password_hash: r.password_hash,
            totp_secret: r.totp_secret,
        }
    }
}

async fn find_user<C: ConnectionTrait>(conn: &C, email: &str) -> ServiceResult<Option<UserRow>> {
    let row: Option<StoredUser> = db::one_as(
        conn,
        "SELECT u.id, u.organisation_id, u.email, u.status, u.password_hash, u.totp_secret
         FROM app_user u JOIN organisation o ON o.id = u.organisation_id
         WHERE u.email = $1 AND o.deleted_at IS NULL
         -- The account, if the address has one; else one of its pending invitations (m20261222).
         ORDER BY u.status = 'invited', u.created_at
         LIMIT 1",
        [email.to_string().into()],
    )
    .await?;
    Ok(row.map(UserRow::from))
}

async fn user_by_id<C: ConnectionTrait>(conn: &C, id: UserId) -> ServiceResult<UserRow> {
    let row: StoredUser = db::one_as(
        conn,
        "SELECT id, organisation_id, email, status, password_hash, totp_secret FROM app_user WHERE id = $1",
        [id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok(row.into())
}

/// Argon2 is deliberately slow (tens of milliseconds) and takes 46 MiB: it runs off the async
/// executor, through the process's hashing gate (`Busy` when no slot frees up in time).
async fn verify_password(svc: &Services, password: &str, hash: Option<String>) -> ServiceResult<bool> {
    let pw = Zeroizing::new(password.to_string());
    svc.hashing()
        .run(move || match hash {
            Some(h) => password::verify(&pw, &h),
            None => {
                password::verify_dummy(&pw);
                false
            }
        })
        .await
}

pub(crate) async fn hash_password(svc: &Services, password: &str) -> ServiceResult<String> {
    let pw = Zeroizing::new(password.to_string());
    svc.hashing().run(move || password::hash(&pw)).await?
}

fn email_context(email: &str) -> Vec<String> {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    let mut v = vec![local.to_string()];
    v.extend(domain.split('.').next().map(str::to_string));
    v.push("hermetic".into());
    v
}

pub(crate) fn check_new_password(password: &str, email: &str) -> ServiceResult<()> {
    let ctx = email_context(email);
    let refs: Vec<&str> = ctx.iter().map(String::as_str).collect();
    password::check_policy(password, &refs)
}

fn totp_aad(org: OrganisationId, user: UserId) -> Aad<'static> {
    Aad { organisation: org, table: "app_user", column: "totp_secret", row: user.0 }
}

fn pending_aad(org: OrganisationId, session: SessionId) -> Aad<'static> {
    Aad { organisation: org, table: "user_session", column: "pending_totp_secret", row: session.0 }
}

/// Step 1: email and password. Returns the next step and a pre-MFA session.
///
/// The attempt is counted against the account name and the client address before the password is
/// checked (`throttle::attempt`), and the check runs through the hashing gate; so a burst of
/// attempts can neither check more passwords than the throttle allows nor hold more argon2
/// memory than the gate allows.
pub async fn sign_in(
    svc: &Services,
    email: &str,
    password: &str,
    meta: &ClientMeta,
) -> ServiceResult<(SignInStep, IssuedSession)> {
    let email_key = email.trim().to_lowercase();
    let ip_key = meta.ip.clone().unwrap_or_else(|| "unknown".into());
    let user = if email_key.len() <= 254 { find_user(svc.db(), &email_key).await? } else { None };

    // The account first: attempts on a locked account do not use up the address's allowance.
    let counted = match throttle::attempt(svc, svc.db(), KeyKind::Account, &email_key).await? {
        Attempt::Locked { retry_after_secs } => Err(retry_after_secs),
        Attempt::Allowed(account) => match throttle::attempt(svc, svc.db(), KeyKind::Ip, &ip_key).await? {
            Attempt::Allowed(ip) => Ok((account, ip)),
            Attempt::Locked { retry_after_secs } => {
                throttle::refund(svc, svc.db(), &account).await?;
                Err(retry_after_secs)
            }
        },
    };
    let (account_attempt, ip_attempt) = match counted {
        Ok(both) => both,
        Err(retry_after_secs) => return Err(throttled(svc, user.as_ref(), meta, retry_after_secs).await?),
    };

    let too_long = password.len() > MAX_INPUT || email.len() > MAX_INPUT;
    let hash = user.as_ref().filter(|_| !too_long).and_then(|u| u.password_hash.clone());
    let password_ok = match verify_password(svc, if too_long { "" } else { password }, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            // Not checked (the server is busy): the attempt does not count.
            throttle::refund(svc, svc.db(), &account_attempt).await?;
            throttle::refund(svc, svc.db(), &ip_attempt).await?;
            return Err(e);
        }
    };
    let active = user.as_ref().is_some_and(|u| u.status == "active");

    let txn = svc.db().begin().await?;
    if !(password_ok && active) {
        let reason = match &user {
            None => "unknown_account",
            Some(_) if !password_ok => "wrong_password",
            Some(u) if u.status == "invited" => "invitation_not_accepted",
            Some(_) => "account_disabled",
        };
        let mut rec = AuditRecord::new(
            user.as_ref().map(|u| u.organisation_id),
            AuditActor::Anonymous,
            AuditAction::LoginFailed,
            AuditOutcome::Failure,
        )
        .ip(meta.ip.clone())
        .detail("reason", reason);
        if let Some(u) = &user {
            rec = rec.target("user", u.id);
        }
        audit::record(svc, &txn, rec).await?;
        txn.commit().await?;
        return Err(ServiceError::InvalidCredentials);
    }
    let Some(user) = user else { return Err(ServiceError::InvalidCredentials) };
    // A right password is not a failure. The account's counter is cleared only once the second
    // factor passes, so re-entering the password does not wipe out wrong MFA codes.
    throttle::refund(svc, &txn, &account_attempt).await?;
    throttle::refund(svc, &txn, &ip_attempt).await?;
    let stage = if user.totp_secret.is_some() { SessionStage::Mfa } else { SessionStage::Enrol };
    let issued = session::create(svc, &txn, user.id, user.organisation_id, stage, meta).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(user.organisation_id),
            AuditActor::User { user_id: user.id, session_id: Some(issued.session_id) },
            AuditAction::LoginPasswordAccepted,
            AuditOutcome::Success,
        )
        .ip(meta.ip.clone())
        .target("user", user.id),
    )
    .await?;
    txn.commit().await?;
    let step = match stage {
        SessionStage::Mfa => SignInStep::Mfa,
        _ => SignInStep::EnrolMfa,
    };
    Ok((step, issued))
}

/// Record a refused (locked) attempt and build its answer.
async fn throttled(
    svc: &Services,
    user: Option<&UserRow>,
    meta: &ClientMeta,
    retry_after_secs: u64,
) -> ServiceResult<ServiceError> {
    let mut rec = AuditRecord::new(
        user.map(|u| u.organisation_id),
        AuditActor::Anonymous,
        AuditAction::LoginThrottled,
        AuditOutcome::Denied,
    )
    .ip(meta.ip.clone());
    if let Some(u) = user {
        rec = rec.target("user", u.id);
    }
    audit::record_now(svc, rec).await?;
    Ok(ServiceError::Throttled { retry_after_secs })
}

async fn pending_session(svc: &Services, token: &str, want: SessionStage) -> ServiceResult<SessionInfo> {
    let s = session::resolve(svc, token, true).await?.ok_or(ServiceError::SessionExpired)?;
    if s.stage != want {
        return Err(ServiceError::Forbidden);
    }
    Ok(s)
}

fn normalise_recovery(input: &str) -> Option<String> {
    let s: String = input.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    (s.len() == 16 && BASE32_NOPAD.decode(s.as_bytes()).is_ok()).then_some(s)
}

fn recovery_hash(user: UserId, normalised: &str) -> Vec<u8> {
    crate::crypto::sha256(format!("hermetic.recovery.v1:{}:{normalised}", user.0).as_bytes()).to_vec()
}

/// Reserve one of the session's tries at a code *before* the code is checked: one conditional
/// increment that also checks the limit, so parallel guesses on one session cannot get more than
/// `mfa_max_failures` checks between them. Returns the try's number, or `None` when none is left.
/// A success resets the count (`session::rotate`).
async fn reserve_mfa_try(svc: &Services, s: &SessionInfo) -> ServiceResult<Option<i32>> {
    Ok(db::scalar::<i32, _>(
        svc.db(),
        "UPDATE user_session SET mfa_failures = mfa_failures + 1
         WHERE id = $1 AND revoked_at IS NULL AND mfa_failures < $2
         RETURNING mfa_failures",
        [s.id.0.into(), svc.auth().mfa_max_failures.into()],
    )
    .await?)
}

/// No try left: the session ends.
async fn mfa_exhausted(svc: &Services, s: &SessionInfo) -> ServiceResult<ServiceError> {
    session::revoke(svc, svc.db(), s.id, "mfa_failures").await?;
    Ok(ServiceError::SessionExpired)
}

/// A wrong code (its try and the account's attempt are already counted): audit it, and end the
/// session if that was its last try.
async fn mfa_failure(
    svc: &Services,
    s: &SessionInfo,
    meta: &ClientMeta,
    tries: i32,
    action: AuditAction,
    err: ServiceError,
) -> ServiceResult<ServiceError> {
    let txn = svc.db().begin().await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(s.organisation_id),
            AuditActor::User { user_id: s.user_id, session_id: Some(s.id) },
            action,
            AuditOutcome::Failure,
        )
        .ip(meta.ip.clone())
        .target("user", s.user_id)
        .detail("failures", tries),
    )
    .await?;
    let ended = tries >= svc.auth().mfa_max_failures;
    if ended {
        session::revoke(svc, &txn, s.id, "mfa_failures").await?;
    }
    txn.commit().await?;
    Ok(if ended { ServiceError::SessionExpired } else { err })
}

/// Step 2: a TOTP code (or a recovery code). The session's try and the account's attempt are
/// counted before the code is looked at; a TOTP time step is accepted at most once per user and
/// a recovery code is consumed by one conditional update, so each works once even when the same
/// code arrives twice at the same moment.
pub async fn verify_mfa(svc: &Services, token: &str, code: &str, meta: &ClientMeta) -> ServiceResult<IssuedSession> {
    let s = pending_session(svc, token, SessionStage::Mfa).await?;
    let now = svc.clock().now();
    let account = match throttle::attempt(svc, svc.db(), KeyKind::Account, &s.email).await? {
        Attempt::Locked { retry_after_secs } => return Err(ServiceError::Throttled { retry_after_secs }),
        Attempt::Allowed(counted) => counted,
    };
    let Some(tries) = reserve_mfa_try(svc, &s).await? else {
        throttle::refund(svc, svc.db(), &account).await?;
        return Err(mfa_exhausted(svc, &s).await?);
    };
    let wrong = |action, err| mfa_failure(svc, &s, meta, tries, action, err);
    let user = user_by_id(svc.db(), s.user_id).await?;
    let txn = svc.db().begin().await?;
    let used_recovery = if code.len() > MAX_INPUT {
        drop(txn);
        return Err(wrong(AuditAction::MfaFailed, ServiceError::InvalidCode).await?);
    } else if let Some(rc) = normalise_recovery(code) {
        // Consumed here or not at all: the condition `used_at IS NULL` is re-checked on the row
        // itself, so of two simultaneous uses the second finds it used.
        let consumed = db::one(
            &txn,
            "UPDATE recovery_code SET used_at = $3
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
             RETURNING id",
            [s.user_id.0.into(), recovery_hash(s.user_id, &rc).into(), now.into()],
        )
        .await?;
        if consumed.is_none() {
            drop(txn);
            return Err(wrong(AuditAction::MfaFailed, ServiceError::InvalidCode).await?);
        }
        true
    } else {
        let Some(code) = totp::parse_code(code) else {
            drop(txn);
            return Err(wrong(AuditAction::MfaFailed, ServiceError::InvalidCode).await?);
        };
        let sealed = Sealed::from_bytes(user.totp_secret.clone().ok_or(ServiceError::Forbidden)?)?;
        let secret = svc.keys().open(&txn, &totp_aad(user.organisation_id, user.id), &sealed).await?;
        let Some(step) = totp::verify(&secret, code, now.timestamp()) else {
            drop(txn);
            return Err(wrong(AuditAction::MfaFailed, ServiceError::InvalidCode).await?);
        };
        // Single use: only a step newer than the last accepted one passes, atomically.
        let n = db::exec(
            &txn,
            "UPDATE app_user SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            [user.id.0.into(), step.into()],
        )
        .await?;
        if n == 0 {
            drop(txn);
            return Err(wrong(AuditAction::MfaReplayed, ServiceError::CodeReused).await?);
        }
        false
    };
    let issued = session::rotate(svc, &txn, s.id, SessionStage::Active).await?;
    db::exec(&txn, "UPDATE app_user SET last_sign_in_at = $2 WHERE id = $1", [user.id.0.into(), now.into()]).await?;
    throttle::clear(&txn, KeyKind::Account, &s.email).await?;
    let action = if used_recovery { AuditAction::MfaRecoveryCodeUsed } else { AuditAction::MfaSucceeded };
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(s.organisation_id),
            AuditActor::User { user_id: s.user_id, session_id: Some(s.id) },
            action,
            AuditOutcome::Success,
        )
        .ip(meta.ip.clone())
        .target("user", s.user_id),
    )
    .await?;
    txn.commit().await?;
    Ok(issued)
}

/// Enrolment, part 1: a new secret for this session (the same one again if the page is reloaded).
pub async fn begin_enrolment(svc: &Services, token: &str) -> ServiceResult<MfaEnrolment> {
    let s = pending_session(svc, token, SessionStage::Enrol).await?;
    let aad = pending_aad(s.organisation_id, s.id);
    let existing: Option<Vec<u8>> =
        db::scalar(svc.db(), "SELECT pending_totp_secret FROM user_session WHERE id = $1", [s.id.0.into()])
            .await?
            .flatten();
    let secret = match existing {
        Some(bytes) => svc.keys().open(svc.db(), &aad, &Sealed::from_bytes(bytes)?).await?,
        None => {
            let secret = totp::generate_secret()?;
            let sealed = svc.keys().seal(svc.db(), svc.clock(), &aad, &secret).await?;
            db::exec(
                svc.db(),
                "UPDATE user_session SET pending_totp_secret = $2 WHERE id = $1",
                [s.id.0.into(), sealed.into_bytes().into()],
            )
            .await?;
            secret
        }
    };
    let uri = totp::otpauth_uri(&svc.settings().totp_issuer, &s.email, &secret);
    Ok(MfaEnrolment { secret_base32: totp::secret_base32(&secret), qr_svg: totp::qr_svg(&uri)?, otpauth_uri: uri })
}

fn new_recovery_codes() -> ServiceResult<Vec<String>> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = BASE32_NOPAD.encode(&crate::crypto::random_bytes::<10>()?);
            Ok(format!("{}-{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12], &raw[12..16]).to_lowercase())
        })
        .collect()
}

async fn store_recovery_codes(
    svc: &Services,
    txn: &DatabaseTransaction,
    org: OrganisationId,
    user: UserId,
) -> ServiceResult<Vec<String>> {
    use entity::recovery_code::{ActiveModel, Column, Entity};
    use sea_orm::{ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, Set};
    Entity::delete_many().filter(Column::UserId.eq(user.0)).exec(txn).await?;
    let codes = new_recovery_codes()?;
    let now = svc.clock().now();
    let mut rows = Vec::with_capacity(codes.len());
    for c in &codes {
        let norm = normalise_recovery(c).ok_or_else(|| ServiceError::internal("recovery code format"))?;
        rows.push(ActiveModel {
            id: Set(Uuid::now_v7()),
            organisation_id: Set(org.0),
            user_id: Set(user.0),
            code_hash: Set(recovery_hash(user, &norm)),
            used_at: NotSet,
            created_at: Set(now),
        });
    }
    Entity::insert_many(rows).exec_without_returning(txn).await?;
    Ok(codes)
}

/// Enrolment, part 2: confirm with a code from the app. Stores the secret, issues recovery codes,
/// ends the user's other sessions (an MFA change) and signs this session in.
pub async fn confirm_enrolment(
    svc: &Services,
    token: &str,
    code: &str,
    meta: &ClientMeta,
) -> ServiceResult<(IssuedSession, RecoveryCodes)> {
    let s = pending_session(svc, token, SessionStage::Enrol).await?;
    let now = svc.clock().now();
    let pending: Option<Vec<u8>> =
        db::scalar(svc.db(), "SELECT pending_totp_secret FROM user_session WHERE id = $1", [s.id.0.into()])
            .await?
            .flatten();
    let pending = pending.ok_or_else(|| ServiceError::invalid("code", "start enrolment first: reload the page"))?;
    let secret =
        svc.keys().open(svc.db(), &pending_aad(s.organisation_id, s.id), &Sealed::from_bytes(pending)?).await?;
    let Some(tries) = reserve_mfa_try(svc, &s).await? else { return Err(mfa_exhausted(svc, &s).await?) };
    let step = totp::parse_code(code).and_then(|c| totp::verify(&secret, c, now.timestamp()));
    let Some(step) = step else {
        // The enrolling user sees the secret, so a wrong code here is a typo, not a guess; it
        // still counts against the account like any failure.
        throttle::attempt(svc, svc.db(), KeyKind::Account, &s.email).await?;
        return Err(mfa_failure(svc, &s, meta, tries, AuditAction::MfaFailed, ServiceError::InvalidCode).await?);
    };
    let txn = svc.db().begin().await?;
    let sealed = svc.keys().seal(&txn, svc.clock(), &totp_aad(s.organisation_id, s.user_id), &secret).await?;
    db::exec(
        &txn,
        "UPDATE app_user SET totp_secret = $2, totp_enrolled_at = $3, totp_last_step = $4, updated_at = $3 WHERE id = $1",
        [s.user_id.0.into(), sealed.into_bytes().into(), now.into(), step.into()],
    )
    .await?;
    let codes = store_recovery_codes(svc, &txn, s.organisation_id, s.user_id).await?;
    session::revoke_all_for_user(svc, &txn, s.user_id, Some(s.id), "mfa_changed").await?;
    let issued = session::rotate(svc, &txn, s.id, SessionStage::Active).await?;
    db::exec(&txn, "UPDATE app_user SET last_sign_in_at = $2 WHERE id = $1", [s.user_id.0.into(), now.into()]).await?;
    throttle::clear(&txn, KeyKind::Account, &s.email).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(s.organisation_id),
            AuditActor::User { user_id: s.user_id, session_id: Some(s.id) },
            AuditAction::MfaEnrolled,
            AuditOutcome::Success,
        )
        .ip(meta.ip.clone())
        .target("user", s.user_id),
    )
    .await?;
    txn.commit().await?;
    Ok((issued, RecoveryCodes { codes }))
}

/// Change one's own password: needs the current one; ends every other session of the user and
/// gives this one a new token.
pub async fn change_password(svc: &Services, actor: &Actor, current: &str, new: &str) -> ServiceResult<IssuedSession> {
    actor.require(Permission::OwnAccount)?;
    let (Some(user_id), Some(session_id)) = (actor.user_id(), actor.session_id()) else {
        return Err(ServiceError::Forbidden);
    };
    let user = user_by_id(svc.db(), user_id).await?;
    let now = svc.clock().now();
    // Counted before the check, like a sign-in: parallel guesses cannot exceed the limit.
    let attempt = match throttle::attempt(svc, svc.db(), KeyKind::Account, &user.email).await? {
        Attempt::Locked { retry_after_secs } => return Err(ServiceError::Throttled { retry_after_secs }),
        Attempt::Allowed(counted) => counted,
    };
    let current_ok = current.len() <= MAX_INPUT
        && match verify_password(svc, current, user.password_hash.clone()).await {
            Ok(ok) => ok,
            Err(e) => {
                throttle::refund(svc, svc.db(), &attempt).await?;
                return Err(e);
            }
        };
    if !current_ok {
        return Err(ServiceError::invalid("current password", "is not correct"));
    }
    throttle::refund(svc, svc.db(), &attempt).await?;
    if new == current {
        return Err(ServiceError::invalid("new password", "must differ from the current one"));
    }
    check_new_password(new, &user.email)?;
    let hash = hash_password(svc, new).await?;
    let txn = svc.db().begin().await?;
    db::exec(
        &txn,
        "UPDATE app_user SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1",
        [user_id.0.into(), hash.into(), now.into()],
    )
    .await?;
    let ended = session::revoke_all_for_user(svc, &txn, user_id, Some(session_id), "password_changed").await?;
    let issued = session::rotate(svc, &txn, session_id, SessionStage::Active).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::PasswordChanged)
            .target("user", user_id)
            .detail("other_sessions_ended", ended),
    )
    .await?;
    txn.commit().await?;
    Ok(issued)
}

/// Sign out: the session ends server-side, whatever happens to the cookie.
pub async fn sign_out(svc: &Services, token: &str, meta: &ClientMeta) -> ServiceResult<()> {
    let Some(s) = session::resolve(svc, token, false).await? else { return Ok(()) };
    let txn = svc.db().begin().await?;
    session::revoke(svc, &txn, s.id, "logout").await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(s.organisation_id),
            AuditActor::User { user_id: s.user_id, session_id: Some(s.id) },
            AuditAction::Logout,
            AuditOutcome::Success,
        )
        .ip(meta.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The signed-in user's profile for the UI.
pub fn me(svc: &Services, s: &SessionInfo) -> domain::dto::Me {
    domain::dto::Me {
        user_id: s.user_id.0,
        organisation_id: s.organisation_id.0,
        organisation_name: s.organisation_name.clone(),
        email: s.email.clone(),
        display_name: s.display_name.clone(),
        role: s.role,
        permissions: s.role.permissions(),
        idle_timeout_secs: svc.auth().idle_timeout.num_seconds().max(0) as u64,
        idle_warning_secs: svc.auth().idle_warning.num_seconds().max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_80_bit_and_normalise() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 19);
            let n = normalise_recovery(c).unwrap();
            assert_eq!(normalise_recovery(&c.to_uppercase().replace('-', " ")), Some(n));
        }
        assert_eq!(normalise_recovery("123456"), None);
        assert_eq!(normalise_recovery("abcd-efgh-ijkl-mnop-q"), None);
    }
}
