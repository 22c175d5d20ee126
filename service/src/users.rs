//! User administration: invitations, roles, disabling, MFA resets. Admin-only (`UsersManage`), except
//! accepting an invitation, which is authorised by the invitation token itself.
//!
//! Guard rails: nobody changes their own role or disables themselves, and the last active admin of
//! an organisation cannot be demoted or disabled, so an organisation can never lock itself out.

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::auth::{self, session};
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::services::Services;
use domain::audit::{AuditAction, AuditOutcome};
use domain::dto::{InviteCreated, UserStatus, UserView};
use domain::email::EmailAddress;
use domain::ids::{OrganisationId, UserId};
use domain::{Permission, Role};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use uuid::Uuid;

fn clean_name(name: &str) -> ServiceResult<String> {
    let n: String = name.trim().chars().filter(|c| !c.is_control()).collect();
    if n.chars().count() > 100 {
        return Err(ServiceError::invalid("name", "must be at most 100 characters"));
    }
    Ok(n)
}

/// A user as `USER_COLS` reads it.
#[derive(FromQueryResult)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    status: String,
    totp_enrolled_at: Option<chrono::DateTime<chrono::Utc>>,
    last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
    created_at: chrono::DateTime<chrono::Utc>,
    invite_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn view(r: UserRow) -> ServiceResult<UserView> {
    Ok(UserView {
        id: r.id,
        email: r.email,
        display_name: r.display_name,
        role: r.role.parse().map_err(|_| ServiceError::internal("bad role"))?,
        status: UserStatus::parse(&r.status).ok_or_else(|| ServiceError::internal("bad status"))?,
        mfa_enrolled: r.totp_enrolled_at.is_some(),
        last_sign_in_at: r.last_sign_in_at,
        created_at: r.created_at,
        invite_expires_at: r.invite_expires_at,
    })
}

const USER_COLS: &str = "id, email, display_name, role, status, totp_enrolled_at, last_sign_in_at, created_at,
    (SELECT i.expires_at FROM invite i WHERE i.user_id = app_user.id AND i.accepted_at IS NULL AND i.revoked_at IS NULL
     ORDER BY i.created_at DESC LIMIT 1) AS invite_expires_at";

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<UserView>> {
    actor.require(Permission::UsersManage)?;
    let rows: Vec<UserRow> = db::all_as(
        svc.db(),
        &format!("SELECT {USER_COLS} FROM app_user WHERE organisation_id = $1 ORDER BY lower(display_name), email"),
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.into_iter().map(view).collect()
}

/// A user of the actor's organisation, or NotFound (ids from other organisations look nonexistent).
async fn load<C: ConnectionTrait>(conn: &C, org: OrganisationId, id: UserId) -> ServiceResult<UserView> {
    let row: UserRow = db::one_as(
        conn,
        &format!("SELECT {USER_COLS} FROM app_user WHERE id = $1 AND organisation_id = $2 FOR UPDATE"),
        [id.0.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    view(row)
}

async fn other_active_admins<C: ConnectionTrait>(conn: &C, org: OrganisationId, except: UserId) -> ServiceResult<i64> {
    Ok(db::scalar(
        conn,
        "SELECT count(*) AS n FROM app_user WHERE organisation_id = $1 AND role = 'admin' AND status = 'active' AND id <> $2",
        [org.0.into(), except.0.into()],
    )
    .await?
    .unwrap_or(0))
}

/// Create a user with a password directly (command line and seeding; the UI invites instead).
pub async fn create_with_password(
    svc: &Services,
    actor: &Actor,
    email: &str,
    display_name: &str,
    role: Role,
    password: &str,
) -> ServiceResult<UserId> {
    actor.require(Permission::UsersManage)?;
    let email = EmailAddress::parse(email)?;
    let name = clean_name(display_name)?;
    auth::check_new_password(password, email.as_str())?;
    let hash = auth::hash_password(svc, password).await?;
    let id = UserId::new();
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let res = db::exec(
        &txn,
        "INSERT INTO app_user (id, organisation_id, email, display_name, role, status, password_hash,
            password_changed_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7, $7)",
        [
            id.0.into(),
            actor.organisation_id.0.into(),
            email.as_str().to_string().into(),
            name.into(),
            role.as_str().into(),
            hash.into(),
            now.into(),
        ],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A user with this email address already exists."));
        }
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::UserCreated).target("user", id).detail("role", role.as_str()),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

/// Invite someone by email: a single-use link (valid `invite_ttl`) is mailed to the address; the
/// admin never sees it. The token sits in the URL fragment, which browsers never send to servers
/// or proxies.
///
/// Only the admin's own organisation is looked at. Whether the address has an account (or a
/// pending invitation) in another organisation changes nothing here: the same row, audit entry,
/// answer and email result either way, so an invitation cannot be used to learn who uses Hermetic
/// elsewhere. Such an invitation simply can never be accepted (`find_invite` tells the person
/// opening it why) and stays pending until it expires. Within the organisation, a current member
/// is reported as such: the admin can see their own users anyway.
pub async fn invite(
    svc: &Services,
    actor: &Actor,
    email: &str,
    display_name: &str,
    role: Role,
) -> ServiceResult<InviteCreated> {
    actor.require(Permission::UsersManage)?;
    let email = EmailAddress::parse(email)?;
    let name = clean_name(display_name)?;
    let now = svc.clock().now();
    let already = || ServiceError::conflict("This person is already a member of your organisation.");
    let txn = svc.db().begin().await?;
    #[derive(FromQueryResult)]
    struct Existing {
        id: Uuid,
        status: String,
    }
    let existing: Option<Existing> = db::one_as(
        &txn,
        "SELECT id, status FROM app_user WHERE email = $1 AND organisation_id = $2 FOR UPDATE",
        [email.as_str().to_string().into(), actor.organisation_id.0.into()],
    )
    .await?;
    let user_id = match existing {
        Some(Existing { id, status }) => {
            if status != "invited" {
                return Err(already());
            }
            // Re-inviting a pending user: the new invitation replaces the old one (`new_link`
            // revokes the old link).
            let id = UserId(id);
            db::exec(
                &txn,
                "UPDATE app_user SET role = $2, display_name = $3, updated_at = $4 WHERE id = $1",
                [id.0.into(), role.as_str().into(), name.clone().into(), now.into()],
            )
            .await?;
            id
        }
        None => {
            let id = UserId::new();
            // A pending row never conflicts with another organisation's (see the migration
            // m20261222): only a race within this organisation can.
            let res = db::exec(
                &txn,
                "INSERT INTO app_user (id, organisation_id, email, display_name, role, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'invited', $6, $6)",
                [
                    id.0.into(),
                    actor.organisation_id.0.into(),
                    email.as_str().to_string().into(),
                    name.clone().into(),
                    role.as_str().into(),
                    now.into(),
                ],
            )
            .await;
            match res {
                Err(e) if is_unique_violation(&e) => return Err(already()),
                r => r?,
            };
            id
        }
    };
    let (token, expires_at) = new_link(svc, &txn, actor, user_id).await?;
    let org_name = organisation_name(&txn, actor.organisation_id).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::UserInvited).target("user", user_id).detail("role", role.as_str()),
    )
    .await?;
    txn.commit().await?;
    mail_invitation(svc, actor.organisation_id, user_id, &email, &org_name, role, &token, expires_at).await?;
    Ok(InviteCreated { user_id: user_id.0, email: email.as_str().to_string(), expires_at })
}

/// A fresh single-use link for a pending user: every earlier link of theirs stops working. The
/// token is returned for the email only; only its hash is stored, and it is never logged.
async fn new_link<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    actor: &Actor,
    user_id: UserId,
) -> ServiceResult<(String, chrono::DateTime<chrono::Utc>)> {
    let now = svc.clock().now();
    db::exec(
        conn,
        "UPDATE invite SET revoked_at = $2 WHERE user_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
        [user_id.0.into(), now.into()],
    )
    .await?;
    let token = crate::crypto::random_token()?;
    let expires_at = now + svc.auth().invite_ttl;
    db::exec(
        conn,
        "INSERT INTO invite (id, organisation_id, user_id, token_hash, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            Uuid::now_v7().into(),
            actor.organisation_id.0.into(),
            user_id.0.into(),
            session::token_hash(&token).into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
            expires_at.into(),
        ],
    )
    .await?;
    Ok((token, expires_at))
}

async fn organisation_name<C: ConnectionTrait>(conn: &C, org: OrganisationId) -> ServiceResult<String> {
    db::scalar(conn, "SELECT name FROM organisation WHERE id = $1", [org.0.into()]).await?.ok_or(ServiceError::NotFound)
}

/// Mail the link (after the commit: a mail server's answer never holds a transaction open). A
/// refusal is reported to the admin, who can send the invitation again from the users page.
#[allow(clippy::too_many_arguments)]
async fn mail_invitation(
    svc: &Services,
    org: OrganisationId,
    user_id: UserId,
    email: &EmailAddress,
    org_name: &str,
    role: Role,
    token: &str,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<()> {
    let outcome = send_invitation(svc, org, email, org_name, role, token, expires_at).await?;
    if !matches!(outcome, crate::mail::SendOutcome::Accepted(_)) {
        tracing::warn!(user_id = %user_id.0, "the invitation email was not accepted by the mail server");
        return Err(ServiceError::conflict(
            "The invitation was saved, but its email could not be sent. Use \"Send again\" on the users page later to send a new link.",
        ));
    }
    Ok(())
}

/// Send a pending invitation again with a new link; the earlier link stops working.
pub async fn resend_invite(svc: &Services, actor: &Actor, user_id: UserId) -> ServiceResult<InviteCreated> {
    actor.require(Permission::UsersManage)?;
    let txn = svc.db().begin().await?;
    let user = load(&txn, actor.organisation_id, user_id).await?;
    if user.status != UserStatus::Invited {
        return Err(ServiceError::conflict("Only a pending invitation can be sent again."));
    }
    let email = EmailAddress::parse(&user.email)?;
    let (token, expires_at) = new_link(svc, &txn, actor, user_id).await?;
    let org_name = organisation_name(&txn, actor.organisation_id).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::InviteResent).target("user", user_id).detail("role", user.role.as_str()),
    )
    .await?;
    txn.commit().await?;
    mail_invitation(svc, actor.organisation_id, user_id, &email, &org_name, user.role, &token, expires_at).await?;
    Ok(InviteCreated { user_id: user_id.0, email: user.email, expires_at })
}

/// Withdraw a pending invitation: its link stops working and the pending user is removed (it
/// never signed in, so nothing else refers to it). Inviting the address again starts afresh.
pub async fn revoke_invite(svc: &Services, actor: &Actor, user_id: UserId) -> ServiceResult<()> {
    actor.require(Permission::UsersManage)?;
    let txn = svc.db().begin().await?;
    let user = load(&txn, actor.organisation_id, user_id).await?;
    if user.status != UserStatus::Invited {
        return Err(ServiceError::conflict("Only a pending invitation can be revoked; disable an account instead."));
    }
    // Invitations go with the user (ON DELETE CASCADE).
    db::exec(&txn, "DELETE FROM app_user WHERE id = $1 AND status = 'invited'", [user_id.0.into()]).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::InviteRevoked).target("user", user_id)).await?;
    txn.commit().await?;
    Ok(())
}

/// The invitation email. It is the same whoever the address belongs to.
async fn send_invitation(
    svc: &Services,
    org: OrganisationId,
    email: &EmailAddress,
    org_name: &str,
    role: Role,
    token: &str,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<crate::mail::SendOutcome> {
    let url = format!("{}/invite#{token}", svc.settings().public_url.trim_end_matches('/'));
    let until = expires_at.format("%-d %B %Y, %H:%M UTC");
    let role = role.label();
    let text = format!(
        "Hello,\n\nAn administrator of {org_name} has invited you to Hermetic as {role}.\n\n\
         To accept, open this link and choose a password. It works once, until {until}:\n{url}\n\n\
         If you did not expect this invitation, ignore this message: nothing happens unless the link is opened.\n"
    );
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let html = format!(
        "<p>Hello,</p><p>An administrator of {} has invited you to Hermetic as {role}.</p>\
         <p><a href=\"{}\">Accept the invitation</a> (the link works once, until {until}).</p>\
         <p>If you did not expect this invitation, ignore this message: nothing happens unless the link is opened.</p>",
        esc(org_name),
        esc(&url)
    );
    crate::outbound::send_system(
        svc,
        crate::outbound::Outgoing {
            organisation: org,
            to: domain::Phi::new(email.as_str().to_string()),
            subject: format!("Your invitation to {org_name} on Hermetic"),
            text: domain::Phi::new(text),
            html: Some(domain::Phi::new(html)),
        },
    )
    .await
}

fn address_has_account() -> ServiceError {
    ServiceError::invalid(
        "invitation",
        "cannot be used: this address already has a Hermetic account, and an address belongs to one \
         organisation only. Sign in with that account, or ask whoever invited you to use another address.",
    )
}

/// What the invitation page shows before the password is set.
#[derive(Debug, Clone)]
pub struct InviteInfo {
    pub email: String,
    pub organisation_name: String,
}

async fn find_invite<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    token: &str,
    lock: bool,
) -> ServiceResult<(Uuid, UserId, OrganisationId, InviteInfo)> {
    if token.is_empty() || token.len() > 128 {
        return Err(ServiceError::invalid("invitation", "link is not valid"));
    }
    #[derive(FromQueryResult)]
    struct Invitation {
        id: Uuid,
        user_id: Uuid,
        organisation_id: Uuid,
        email: String,
        org_name: String,
        has_account: bool,
    }
    let row: Invitation = db::one_as(
        conn,
        &format!(
            "SELECT i.id, i.user_id, i.organisation_id, u.email, o.name AS org_name,
                    EXISTS (SELECT 1 FROM app_user a WHERE a.email = u.email AND a.status <> 'invited') AS has_account
             FROM invite i JOIN app_user u ON u.id = i.user_id JOIN organisation o ON o.id = i.organisation_id
             WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2
               AND u.status = 'invited' AND o.deleted_at IS NULL{}",
            if lock { " FOR UPDATE OF i" } else { "" }
        ),
        [session::token_hash(token).into(), svc.clock().now().into()],
    )
    .await?
    .ok_or_else(|| {
        ServiceError::invalid("invitation", "link is not valid or has expired; ask your administrator for a new one")
    })?;
    // Only the person holding the emailed link gets here; telling them is telling the address's owner.
    if row.has_account {
        return Err(address_has_account());
    }
    Ok((
        row.id,
        UserId(row.user_id),
        OrganisationId(row.organisation_id),
        InviteInfo { email: row.email, organisation_name: row.org_name },
    ))
}

pub async fn invite_info(svc: &Services, token: &str) -> ServiceResult<InviteInfo> {
    Ok(find_invite(svc, svc.db(), token, false).await?.3)
}

/// Accept an invitation by choosing a password. The new user then signs in and enrols MFA.
pub async fn accept_invite(svc: &Services, token: &str, password: &str, ip: Option<String>) -> ServiceResult<()> {
    let (_, _, _, info) = find_invite(svc, svc.db(), token, false).await?;
    auth::check_new_password(password, &info.email)?;
    let hash = auth::hash_password(svc, password).await?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let (invite_id, user_id, org, _) = find_invite(svc, &txn, token, true).await?;
    db::exec(&txn, "UPDATE invite SET accepted_at = $2 WHERE id = $1", [invite_id.into(), now.into()]).await?;
    let activated = db::exec(
        &txn,
        "UPDATE app_user SET status = 'active', password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1",
        [user_id.0.into(), hash.into(), now.into()],
    )
    .await;
    match activated {
        // Another organisation's invitation to this address was accepted a moment ago.
        Err(e) if is_unique_violation(&e) => return Err(address_has_account()),
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::new(
            Some(org),
            AuditActor::User { user_id, session_id: None },
            AuditAction::InviteAccepted,
            AuditOutcome::Success,
        )
        .target("user", user_id)
        .ip(ip),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn change_role(svc: &Services, actor: &Actor, user_id: UserId, role: Role) -> ServiceResult<UserView> {
    actor.require(Permission::UsersManage)?;
    if actor.user_id() == Some(user_id) {
        return Err(ServiceError::invalid("role", "you cannot change your own role"));
    }
    let txn = svc.db().begin().await?;
    let before = load(&txn, actor.organisation_id, user_id).await?;
    if before.role == role {
        return Ok(before);
    }
    if before.role == Role::Admin
        && before.status == UserStatus::Active
        && other_active_admins(&txn, actor.organisation_id, user_id).await? == 0
    {
        return Err(ServiceError::invalid("role", "the organisation needs at least one active administrator"));
    }
    db::exec(
        &txn,
        "UPDATE app_user SET role = $2, updated_at = $3 WHERE id = $1",
        [user_id.0.into(), role.as_str().into(), svc.clock().now().into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::RoleChanged)
            .target("user", user_id)
            .detail("from", before.role.as_str())
            .detail("to", role.as_str()),
    )
    .await?;
    let after = load(&txn, actor.organisation_id, user_id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Disable an account: it cannot sign in and every session ends now.
pub async fn disable(svc: &Services, actor: &Actor, user_id: UserId) -> ServiceResult<UserView> {
    actor.require(Permission::UsersManage)?;
    if actor.user_id() == Some(user_id) {
        return Err(ServiceError::invalid("user", "you cannot disable your own account"));
    }
    let txn = svc.db().begin().await?;
    let before = load(&txn, actor.organisation_id, user_id).await?;
    if before.status == UserStatus::Disabled {
        return Ok(before);
    }
    if before.role == Role::Admin
        && before.status == UserStatus::Active
        && other_active_admins(&txn, actor.organisation_id, user_id).await? == 0
    {
        return Err(ServiceError::invalid("user", "the organisation needs at least one active administrator"));
    }
    let now = svc.clock().now();
    db::exec(
        &txn,
        "UPDATE app_user SET status = 'disabled', updated_at = $2 WHERE id = $1",
        [user_id.0.into(), now.into()],
    )
    .await?;
    db::exec(
        &txn,
        "UPDATE invite SET revoked_at = $2 WHERE user_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
        [user_id.0.into(), now.into()],
    )
    .await?;
    let ended = session::revoke_all_for_user(svc, &txn, user_id, None, "user_disabled").await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::UserDisabled).target("user", user_id).detail("sessions_ended", ended),
    )
    .await?;
    let after = load(&txn, actor.organisation_id, user_id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Re-enable a disabled account (it signs in with its existing password and MFA).
pub async fn enable(svc: &Services, actor: &Actor, user_id: UserId) -> ServiceResult<UserView> {
    actor.require(Permission::UsersManage)?;
    let txn = svc.db().begin().await?;
    let before = load(&txn, actor.organisation_id, user_id).await?;
    if before.status != UserStatus::Disabled {
        return Ok(before);
    }
    let has_password =
        db::scalar(&txn, "SELECT password_hash IS NOT NULL AS p FROM app_user WHERE id = $1", [user_id.0.into()])
            .await?
            .unwrap_or(false);
    let status = if has_password { "active" } else { "invited" };
    db::exec(
        &txn,
        "UPDATE app_user SET status = $2, updated_at = $3 WHERE id = $1",
        [user_id.0.into(), status.into(), svc.clock().now().into()],
    )
    .await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::UserEnabled).target("user", user_id)).await?;
    let after = load(&txn, actor.organisation_id, user_id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Clear a user's authenticator and recovery codes (lost phone). They enrol again at next sign-in;
/// every session of theirs ends now.
pub async fn reset_mfa(svc: &Services, actor: &Actor, user_id: UserId) -> ServiceResult<UserView> {
    actor.require(Permission::UsersManage)?;
    let txn = svc.db().begin().await?;
    load(&txn, actor.organisation_id, user_id).await?;
    db::exec(
        &txn,
        "UPDATE app_user SET totp_secret = NULL, totp_enrolled_at = NULL, totp_last_step = NULL, updated_at = $2 WHERE id = $1",
        [user_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    db::exec(&txn, "DELETE FROM recovery_code WHERE user_id = $1", [user_id.0.into()]).await?;
    let ended = session::revoke_all_for_user(svc, &txn, user_id, None, "mfa_reset").await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::MfaReset).target("user", user_id).detail("sessions_ended", ended),
    )
    .await?;
    let after = load(&txn, actor.organisation_id, user_id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Find a user id by email within any organisation (command line only: operators name users by email).
pub async fn find_for_operator(svc: &Services, email: &str) -> ServiceResult<(OrganisationId, UserId)> {
    let email = EmailAddress::parse(email)?;
    // The account, if the address has one; otherwise a pending invitation.
    #[derive(FromQueryResult)]
    struct Found {
        id: Uuid,
        organisation_id: Uuid,
    }
    let found: Found = db::one_as(
        svc.db(),
        "SELECT id, organisation_id FROM app_user WHERE email = $1 ORDER BY status = 'invited', created_at LIMIT 1",
        [email.as_str().to_string().into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok((OrganisationId(found.organisation_id), UserId(found.id)))
}
