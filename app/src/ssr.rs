//! Server-side glue between the HTTP edge and server functions: the per-request context that the
//! session middleware puts into request extensions, cookie helpers and actor extraction.

use crate::error::AppError;
use leptos::prelude::*;
use service::Services;
use service::actor::Actor;
use service::auth::session::{ClientMeta, IssuedSession, SessionInfo, SessionStage};

pub const SESSION_COOKIE: &str = "__Host-hermetic_session";
pub const CSRF_COOKIE: &str = "__Host-hermetic_csrf";

/// What the session middleware learned about this request.
#[derive(Clone)]
pub struct RequestContext {
    pub session: Option<SessionInfo>,
    /// The raw session cookie value, needed to act on the session (sign-out, MFA). Never logged.
    pub token: Option<String>,
    /// The CSRF token to render into the page.
    pub csrf_token: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("session", &self.session.as_ref().map(|s| s.id))
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    pub fn meta(&self) -> ClientMeta {
        ClientMeta { ip: self.ip.clone(), user_agent: self.user_agent.clone() }
    }
    pub fn active(&self) -> Option<&SessionInfo> {
        self.session.as_ref().filter(|s| s.stage == SessionStage::Active)
    }
}

pub fn services() -> Result<Services, AppError> {
    use_context::<Services>().ok_or_else(|| AppError::new("internal", "Server is not configured."))
}

pub fn request() -> Result<RequestContext, AppError> {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<RequestContext>().cloned())
        .ok_or_else(|| AppError::new("internal", "Request context missing."))
}

/// The signed-in actor, or 401.
pub fn actor() -> Result<(Services, Actor), AppError> {
    let svc = services()?;
    let req = request()?;
    let actor = req
        .active()
        .and_then(|s| s.actor(req.ip.clone()))
        .ok_or_else(|| AppError::from(service::ServiceError::Unauthenticated))?;
    Ok((svc, actor))
}

/// The raw session token (for pre-MFA steps), or 401.
pub fn token() -> Result<(Services, RequestContext, String), AppError> {
    let svc = services()?;
    let req = request()?;
    let token = req.token.clone().ok_or_else(|| AppError::from(service::ServiceError::SessionExpired))?;
    Ok((svc, req, token))
}

fn set_cookie(value: String) {
    if let (Some(res), Ok(v)) = (use_context::<leptos_axum::ResponseOptions>(), http::HeaderValue::from_str(&value)) {
        res.append_header(http::header::SET_COOKIE, v);
    }
}

pub fn session_cookie(token: &str, max_age_secs: i64) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

pub fn expired_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub fn set_session_cookie(issued: &IssuedSession) {
    set_cookie(session_cookie(&issued.token, issued.max_age.num_seconds()));
}

pub fn clear_session_cookie() {
    set_cookie(expired_cookie(SESSION_COOKIE));
}

/// Mark an SSR response with a status (pages a role may not open answer 403).
pub fn set_status(code: u16) {
    if let (Some(res), Ok(s)) = (use_context::<leptos_axum::ResponseOptions>(), http::StatusCode::from_u16(code)) {
        res.set_status(s);
    }
}

/// Provide per-request context for SSR and server functions (called by the server's context closure).
pub fn provide_request_context(svc: Services) {
    provide_context(svc);
    if let Some(parts) = use_context::<http::request::Parts>()
        && let Some(n) = parts.extensions.get::<leptos::nonce::Nonce>().cloned()
    {
        provide_context(n);
    }
}
