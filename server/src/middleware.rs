//! The request pipeline around every route: resolve the session, enforce CSRF on state-changing
//! requests, send signed-out visitors of protected pages to the sign-in page, and add the security
//! headers (CSP with a per-request nonce, HSTS, frame-ancestors 'none', no-store on anything that
//! can show data).

use crate::forwarded::TrustedProxies;
use crate::routes::{self, Access, Kind, RouteSpec};
use app::ssr::{CSRF_COOKIE, RequestContext, SESSION_COOKIE, expired_cookie};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use service::Services;
use service::auth::session::{self, SessionInfo, SessionStage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct WebState {
    pub services: Services,
    pub table: Arc<Vec<RouteSpec>>,
    pub public_origin: String,
    pub trusted_proxies: TrustedProxies,
    /// The site was built with hashed file names (cargo-leptos `hash-files`).
    pub hashed_assets: bool,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The client's address: the TCP peer, or behind configured proxies the rightmost
/// `X-Forwarded-For` hop they did not add (see `forwarded`).
pub(crate) fn client_ip(req: &Request, trusted: &TrustedProxies) -> Option<String> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    if trusted.is_empty() {
        return Some(peer.to_canonical().to_string());
    }
    // A header line that is not visible ASCII is malformed: treat the whole header as such.
    let lines: Option<Vec<&str>> = req.headers().get_all("x-forwarded-for").iter().map(|v| v.to_str().ok()).collect();
    let ip = match lines {
        Some(lines) => trusted.client_address(peer, lines),
        None => peer.to_canonical(),
    };
    Some(ip.to_string())
}

fn is_state_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A JSON body shaped like `AppError`, so server-function clients show the message.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn same_origin(req: &Request, public_origin: &str) -> bool {
    // Browsers send Origin on cross-origin requests and on same-origin POSTs; Sec-Fetch-Site on all.
    if req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return false;
    }
    match req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => {
            let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            o == public_origin || o == format!("http://{host}") || o == format!("https://{host}")
        }
    }
}

/// Where a session in this state should be sent when it asks for a page it cannot see yet.
fn page_redirect(spec: &RouteSpec, session: Option<&SessionInfo>, path_and_query: &str) -> Option<String> {
    let stage = session.map(|s| s.stage);
    match spec.access {
        Access::Signed(_) | Access::SignedAny(_) => match stage {
            Some(SessionStage::Active) => None,
            Some(SessionStage::Mfa) => Some("/login/mfa".into()),
            Some(SessionStage::Enrol) => Some("/login/enrol".into()),
            None => Some(if path_and_query == "/" {
                "/login".into()
            } else {
                format!("/login?next={}", encode(path_and_query))
            }),
        },
        Access::MfaStep => match stage {
            Some(SessionStage::Mfa) => None,
            Some(SessionStage::Active) => Some("/".into()),
            Some(SessionStage::Enrol) => Some("/login/enrol".into()),
            None => Some("/login".into()),
        },
        Access::EnrolStep => match stage {
            Some(SessionStage::Enrol) => None,
            Some(SessionStage::Active) => Some("/".into()),
            Some(SessionStage::Mfa) => Some("/login/mfa".into()),
            None => Some("/login".into()),
        },
        Access::Public if spec.path == "/login" && stage == Some(SessionStage::Active) => Some("/".into()),
        Access::Public | Access::Key(_) | Access::MetricsToken => None,
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every request: counted and timed by its route template (never its path), then handled.
/// Latency is the time to the response's head (a streamed body may take longer).
pub async fn pipeline(State(st): State<WebState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let spec = routes::lookup(&st.table, req.method(), req.uri().path()).cloned();
    let route = spec.as_ref().map_or("unmatched", |s| s.path);
    let method = service::metrics::method_label(req.method().as_str());
    let res = handle(st, req, next, spec, started).await;
    service::metrics::http_request(route, method, res.status().as_u16(), started.elapsed());
    res
}

async fn handle(st: WebState, mut req: Request, next: Next, spec: Option<RouteSpec>, started: Instant) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let kind = spec.as_ref().map(|s| s.kind);
    if kind == Some(Kind::Static) {
        let mut res = next.run(req).await;
        let immutable = st.hashed_assets && res.status().is_success() && is_hashed_asset(&path);
        static_headers(res.headers_mut(), immutable);
        return res;
    }

    // The machine interface authenticates by key in its own handlers, `/metrics` by its token:
    // no session is resolved (a cookie never counts there), no CSRF token is asked for, no page
    // is rendered.
    let by_token = spec.as_ref().is_some_and(|s| s.access == Access::MetricsToken);
    if kind == Some(Kind::Api) || by_token || (spec.is_none() && path.starts_with("/api/v1/")) {
        let mut res = next.run(req).await;
        finish(&mut res, None, kind);
        return res;
    }
    let ip = client_ip(&req, &st.trusted_proxies);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let token = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    let touch = spec.as_ref().is_none_or(|s| s.touches_session);
    let session = match &token {
        Some(t) => match session::resolve(&st.services, t, touch).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e.log_detail(), "session lookup failed");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Hermetic is temporarily unavailable.");
            }
        },
        None => None,
    };
    let anon_csrf = cookie(req.headers(), CSRF_COOKIE).map(str::to_string);

    // Recipient links (unsubscribe, preferences) are posted by mail providers (RFC 8058) and by
    // pages without a session; their unguessable token is the credential, so there is nothing to forge.
    if is_state_changing(&method) && !spec.as_ref().is_some_and(routes::token_route) {
        let sent = req.headers().get(app::csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = session.as_ref().map(|s| s.csrf_token.clone()).or(anon_csrf.clone());
        let ok = same_origin(&req, &st.public_origin)
            && expected.is_some_and(|e| !sent.is_empty() && service::crypto::ct_eq(e.as_bytes(), sent.as_bytes()));
        if !ok {
            tracing::warn!(path = %path, "request refused: missing or wrong CSRF token");
            let mut res =
                refuse(StatusCode::FORBIDDEN, "csrf", "This form has expired. Reload the page and try again.");
            finish(&mut res, None, kind);
            return res;
        }
    }

    if let Some(spec) = spec.as_ref().filter(|s| s.kind == Kind::Page) {
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if let Some(to) = page_redirect(spec, session.as_ref(), pq) {
            let mut res = redirect(&to);
            finish(&mut res, None, kind);
            if token.is_some() && session.is_none() {
                append_cookie(&mut res, &expired_cookie(SESSION_COOKIE));
            }
            return res;
        }
    }

    let (csrf_token, new_anon_cookie) = match (&session, &anon_csrf) {
        (Some(s), _) => (s.csrf_token.clone(), None),
        (None, Some(c)) => (c.clone(), None),
        (None, None) => match service::crypto::random_token() {
            Ok(t) => (t.clone(), Some(t)),
            Err(_) => {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Hermetic is temporarily unavailable.");
            }
        },
    };
    let nonce = leptos::nonce::Nonce::new();
    req.extensions_mut().insert(nonce.clone());
    req.extensions_mut().insert(RequestContext {
        session: session.clone(),
        token: token.clone(),
        csrf_token,
        ip,
        user_agent,
    });

    let mut res = next.run(req).await;
    if kind == Some(Kind::ServerFn) && res.status() == StatusCode::INTERNAL_SERVER_ERROR {
        res = client_error_status(res).await;
    }
    finish(&mut res, Some(&nonce.to_string()), kind);
    if let Some(c) = new_anon_cookie {
        append_cookie(&mut res, &format!("{CSRF_COOKIE}={c}; Path=/; Secure; HttpOnly; SameSite=Strict"));
    }
    if token.is_some() && session.is_none() && !res.headers().contains_key(header::SET_COOKIE) {
        append_cookie(&mut res, &expired_cookie(SESSION_COOKIE));
    }
    tracing::info!(
        method = %method,
        route = spec.as_ref().map(|s| s.path).unwrap_or("(unrouted)"),
        status = res.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        session = ?session.as_ref().map(|s| s.id),
        "request"
    );
    res
}

/// Server functions answer 500 for every failure they detect before our code runs (arguments that
/// do not decode, a body cut off by the size limit). Those are the client's fault: answer 400.
async fn client_error_status(res: Response) -> Response {
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let code =
        serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v["code"].as_str().map(str::to_string));
    if code.as_deref() == Some("bad_request") {
        parts.status = StatusCode::BAD_REQUEST;
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn append_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn common_headers(h: &mut HeaderMap) {
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("strict-transport-security", HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"),
    );
}

/// A file whose name carries its content hash never changes: browsers keep it for a year without
/// asking again. Any other static file (the favicon, wasm-bindgen snippets, an unhashed build) is
/// checked with the server on every use (`no-cache` revalidates with `If-Modified-Since`), so a new
/// release is never mixed with an old cached script.
fn static_headers(h: &mut HeaderMap, immutable: bool) {
    common_headers(h);
    let cache = if immutable { "public, max-age=31536000, immutable" } else { "public, no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // The body depends on Accept-Encoding (precompressed variants): shared caches must key on it.
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
}

/// `/pkg/<stem>.<hash>.<ext>`: cargo-leptos' `hash-files` names (the MD5 of the file, 22 URL-safe
/// base64 characters, `hermetic.5dXE…Q.wasm`; split chunks carry theirs in place of
/// `______________________`). Files under `pkg/snippets` keep their names and are not hashed.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/pkg/") else { return false };
    if name.contains('/') {
        return false;
    }
    let name = name.strip_suffix(".br").or_else(|| name.strip_suffix(".gz")).unwrap_or(name);
    name.split('.').rev().skip(1).any(|part| {
        part.len() == 22
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !part.bytes().all(|b| b == b'_')
    })
}

fn finish(res: &mut Response<Body>, nonce: Option<&str>, _kind: Option<Kind>) {
    let h = res.headers_mut();
    // Responses carrying author HTML or recipient pages set their own, stricter policy.
    let own_csp = h.remove("x-hermetic-own-csp").is_some();
    let own = own_csp.then(|| h.get(header::CONTENT_SECURITY_POLICY).cloned()).flatten();
    common_headers(h);
    if let Some(csp) = own {
        if csp.to_str().is_ok_and(|c| c.contains("frame-ancestors 'self'")) {
            h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
        return;
    }
    // Anything dynamic may show patient data: never cache it anywhere.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    let script = match nonce {
        Some(n) => format!("script-src 'self' 'nonce-{n}' 'wasm-unsafe-eval'"),
        None => "script-src 'none'".to_string(),
    };
    let csp = format!(
        "default-src 'self'; {script}; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}
