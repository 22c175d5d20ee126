//! Server functions: the app's HTTP API. Each is a thin edge: take the actor or session from the
//! request, call one service function, map the error. Authorisation happens inside `service`.
//! Paths are fixed (`/api/<endpoint>`) so the server's route table can list them.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::Role;
use domain::audit::{AuditFilter, AuditPage, ChainReport};
use domain::dto::{InviteCreated, Me, MfaEnrolment, RecoveryCodes, SessionStatus, SessionView, SignInStep, UserView};
use domain::secret::Secret;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// Email and password. On success the new session replaces any this browser had.
#[server(client = CsrfClient, prefix = "/api", endpoint = "sign_in")]
pub async fn sign_in(email: String, password: Secret) -> Result<SignInStep, AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    let (step, issued) = service::auth::sign_in(&svc, &email, password.expose(), &req.meta()).await?;
    if let Some(old) = req.token.as_deref() {
        service::auth::sign_out(&svc, old, &req.meta()).await?;
    }
    ssr::set_session_cookie(&issued);
    Ok(step)
}

/// The second step. Returns where to go next: `next` if it is a path on this site, else `/`
/// (decided here, on the server, so a crafted link cannot send a person elsewhere after sign-in).
#[server(client = CsrfClient, prefix = "/api", endpoint = "verify_mfa")]
pub async fn verify_mfa(code: Secret, next: Option<String>) -> Result<String, AppError> {
    let (svc, req, token) = ssr::token()?;
    let issued = service::auth::verify_mfa(&svc, &token, code.expose(), &req.meta()).await?;
    ssr::set_session_cookie(&issued);
    Ok(crate::pages_table::safe_next(next))
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "begin_enrolment")]
pub async fn begin_enrolment() -> Result<MfaEnrolment, AppError> {
    let (svc, _, token) = ssr::token()?;
    Ok(service::auth::begin_enrolment(&svc, &token).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "confirm_enrolment")]
pub async fn confirm_enrolment(code: Secret) -> Result<RecoveryCodes, AppError> {
    let (svc, req, token) = ssr::token()?;
    let (issued, codes) = service::auth::confirm_enrolment(&svc, &token, code.expose(), &req.meta()).await?;
    ssr::set_session_cookie(&issued);
    Ok(codes)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    if let Some(token) = req.token.as_deref() {
        service::auth::sign_out(&svc, token, &req.meta()).await?;
    }
    ssr::clear_session_cookie();
    Ok(())
}

/// Remaining idle time; does not count as activity (the route table marks it "no touch").
#[server(client = CsrfClient, prefix = "/api", endpoint = "session_status")]
pub async fn get_session_status() -> Result<SessionStatus, AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    match req.token.as_deref() {
        Some(t) => Ok(service::auth::session::status(&svc, t).await?),
        None => Ok(SessionStatus { authenticated: false, idle_remaining_secs: 0, absolute_remaining_secs: 0 }),
    }
}

/// "Stay signed in": any authenticated request resets the idle timer; this one does nothing else.
#[server(client = CsrfClient, prefix = "/api", endpoint = "keep_alive")]
pub async fn keep_alive() -> Result<SessionStatus, AppError> {
    let (svc, actor) = ssr::actor()?;
    actor.require(domain::Permission::OwnAccount)?;
    let req = ssr::request()?;
    Ok(service::auth::session::status(&svc, req.token.as_deref().unwrap_or_default()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<Me>, AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    Ok(req.active().map(|s| service::auth::me(&svc, s)))
}

/// Returns the new CSRF token (the session was re-keyed).
#[server(client = CsrfClient, prefix = "/api", endpoint = "change_password")]
pub async fn change_password(current: Secret, new: Secret) -> Result<String, AppError> {
    let (svc, actor) = ssr::actor()?;
    let issued = service::auth::change_password(&svc, &actor, current.expose(), new.expose()).await?;
    ssr::set_session_cookie(&issued);
    Ok(issued.csrf_token.clone())
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "my_sessions")]
pub async fn my_sessions() -> Result<Vec<SessionView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::auth::session::list_own(&svc, &actor).await?)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub email: String,
    pub organisation_name: String,
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "lookup_invite")]
pub async fn lookup_invite(token: Secret) -> Result<InviteInfo, AppError> {
    let svc = ssr::services()?;
    let i = service::users::invite_info(&svc, token.expose()).await?;
    Ok(InviteInfo { email: i.email, organisation_name: i.organisation_name })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "accept_invite")]
pub async fn accept_invite(token: Secret, password: Secret) -> Result<(), AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    Ok(service::users::accept_invite(&svc, token.expose(), password.expose(), req.ip.clone()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "invite_user")]
pub async fn invite_user(email: String, display_name: String, role: Role) -> Result<InviteCreated, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::invite(&svc, &actor, &email, &display_name, role).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "resend_invite")]
pub async fn resend_invite(user_id: Uuid) -> Result<InviteCreated, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::resend_invite(&svc, &actor, user_id.into()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "revoke_invite")]
pub async fn revoke_invite(user_id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::revoke_invite(&svc, &actor, user_id.into()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "change_role")]
pub async fn change_role(user_id: Uuid, role: Role) -> Result<UserView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::change_role(&svc, &actor, user_id.into(), role).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "disable_user")]
pub async fn disable_user(user_id: Uuid) -> Result<UserView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::disable(&svc, &actor, user_id.into()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "enable_user")]
pub async fn enable_user(user_id: Uuid) -> Result<UserView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::enable(&svc, &actor, user_id.into()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "reset_user_mfa")]
pub async fn reset_user_mfa(user_id: Uuid) -> Result<UserView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::users::reset_mfa(&svc, &actor, user_id.into()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "audit_list", input = leptos::server_fn::codec::Json)]
pub async fn audit_list(filter: AuditFilter) -> Result<AuditPage, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::audit::list(&svc, &actor, filter).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "audit_verify")]
pub async fn audit_verify() -> Result<ChainReport, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::audit::verify_for(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "audit_last_report")]
pub async fn audit_last_report() -> Result<Option<ChainReport>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::audit::last_report(&svc, &actor).await?)
}
