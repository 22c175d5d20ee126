//! `/api/v1`: the machine interface's HTTP edge. For every request, in order: the API key
//! (`Authorization: Bearer hm_live_…`; a session cookie never counts), the key's rate budget
//! (429 with `Retry-After`), the body within its limit (1 MB, 10 MB for a batch), the signature
//! when the key requires one (`Hermetic-Signature` over the raw body), `Idempotency-Key`, then the
//! service call — which decides, through `actor.require(..)`, whether the key's scopes allow it.
//! Every answer that is not a success is `application/problem+json` (RFC 9457) with a stable
//! `code` and, for a bad member, its JSON `pointer`; no answer echoes a submitted value. Each
//! request by a known key is written to its usage log.

use crate::forwarded::TrustedProxies;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use domain::Permission;
use domain::api::problem;
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use service::Services;
use service::api::events::Rejection;
use service::api::idempotency::{Answer, Idempotency};
use service::api::keys::{self, Authenticated};
use service::api::usage::{UsageLog, Use};
use std::num::NonZeroU32;
use std::sync::Arc;
use uuid::Uuid;

/// Every `/api/v1` route, with the permission its service call requires (the route table and the
/// role-matrix test read this; the service checks it).
pub const ROUTES: &[(Method, &str, Permission)] = &[
    (Method::POST, "/api/v1/events", Permission::EventsWrite),
    (Method::POST, "/api/v1/events/batch", Permission::EventsWrite),
    (Method::PUT, "/api/v1/contacts", Permission::ContactsWrite),
    (Method::GET, "/api/v1/contacts/{id}", Permission::ContactsRead),
];

/// Body limits: one event or contact, and a batch of up to 1,000 events.
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const BATCH_BODY_LIMIT: usize = 10 * 1024 * 1024;

type Limiter = RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock>;

#[derive(Clone)]
pub struct ApiState {
    pub services: Services,
    pub limiter: Arc<Limiter>,
    pub usage: Arc<UsageLog>,
    pub trusted_proxies: TrustedProxies,
}

impl ApiState {
    pub fn new(
        services: Services,
        settings: crate::config::ApiSettings,
        usage: Arc<UsageLog>,
        trusted_proxies: TrustedProxies,
    ) -> ApiState {
        let rate = NonZeroU32::new(settings.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
        ApiState { services, limiter, usage, trusted_proxies }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(ROUTES[0].1, post(event))
        .route(ROUTES[1].1, post(event_batch))
        .route(ROUTES[2].1, put(upsert_contact))
        .route(ROUTES[3].1, get(get_contact))
        // The handlers read bodies themselves, within each route's limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// The stable code of a problem answer, kept on the response for the metrics (`run`).
#[derive(Clone, Copy)]
struct ProblemCode(&'static str);

/// What an event route recorded (set on its success answer; a replay records nothing new).
#[derive(Clone, Default)]
struct EventTally {
    accepted: u64,
    rejected: Vec<(&'static str, u64)>,
}

impl EventTally {
    /// From a batch answer's per-item results: codes as the closed set of problem codes
    /// (anything else, which the service does not produce, is `other`).
    fn of_batch(body: &serde_json::Value) -> EventTally {
        let mut t = EventTally::default();
        for item in body["results"].as_array().into_iter().flatten() {
            if item["status"] == "accepted" {
                t.accepted += 1;
            } else {
                let code = item["code"].as_str().unwrap_or("");
                let code = problem::ALL.iter().find(|c| **c == code).copied().unwrap_or("other");
                match t.rejected.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => t.rejected.push((code, 1)),
                }
            }
        }
        t
    }

    fn record(&self) {
        service::metrics::events_accepted(self.accepted);
        for (code, n) in &self.rejected {
            service::metrics::events_rejected(code, *n);
        }
    }
}

/// An RFC 9457 problem: `type` points at the code's entry in the API docs.
pub fn problem(status: StatusCode, code: &'static str, detail: &str, pointer: Option<&str>) -> Response {
    let mut body = json!({
        "type": format!("/api/docs#problem-{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    if let Some(p) = pointer {
        body["pointer"] = json!(p);
    }
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res.extensions_mut().insert(ProblemCode(code));
    res
}

fn rejected(r: &Rejection) -> Response {
    let status = if r.code == problem::INVALID_JSON || r.code == problem::TOO_DEEP {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    problem(status, r.code, r.detail, Some(&r.pointer))
}

/// A service error as a problem. Validation errors carry the field as a JSON pointer; their
/// messages are fixed words (the services never put values in them).
fn service_problem(e: &service::ServiceError) -> Response {
    use service::ServiceError as E;
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        E::Invalid(domain::DomainError::Invalid { field, reason }) => {
            let pointer = if field.starts_with('/') || field.is_empty() { field.clone() } else { format!("/{field}") };
            problem(status, problem::INVALID_FIELD, reason, Some(&pointer))
        }
        E::Forbidden | E::ForbiddenBecause(_) => {
            problem(status, problem::FORBIDDEN, "This API key's scopes do not allow this request.", None)
        }
        E::NotFound => problem(status, problem::NOT_FOUND, "Not found.", None),
        E::IdempotencyKeyReused => problem(
            status,
            problem::IDEMPOTENCY_MISMATCH,
            "This Idempotency-Key was already used with a different request.",
            None,
        ),
        E::Conflict(_) => problem(status, problem::CONFLICT, "The request conflicts with the current state.", None),
        E::Internal(_) => {
            tracing::error!(error = %e.log_detail(), "API request failed");
            problem(status, problem::INTERNAL, "Something went wrong on our side. The problem has been logged.", None)
        }
        other => problem(status, other.code(), &other.to_string(), None),
    }
}

fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut res = (status, a.body.to_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if a.replayed {
        res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// What every route does before its own work: the key, its budget, the body, the signature, the
/// idempotency key. `Err` is the answer to send.
struct Call {
    auth: Authenticated,
    body: axum::body::Bytes,
    idem: Option<Idempotency>,
}

async fn prepare(
    st: &ApiState,
    req: Request,
    method: &'static str,
    route: &'static str,
    limit: usize,
) -> Result<Call, (Option<Authenticated>, Response)> {
    let ip = crate::middleware::client_ip(&req, &st.trusted_proxies);
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let authz = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let auth = match keys::authenticate(&st.services, authz, route, ip).await {
        Ok(a) => a,
        Err(r) => {
            let mut res = problem(StatusCode::UNAUTHORIZED, r.code(), r.detail(), None);
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hermetic\""));
            return Err((None, res));
        }
    };
    if let Err(not_until) = st.limiter.check_key(&auth.key_id()) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut res = problem(
            StatusCode::TOO_MANY_REQUESTS,
            problem::RATE_LIMITED,
            "This API key has used its request budget; retry after the time in Retry-After.",
            None,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err((Some(auth), res));
    }
    let has_body = method != "GET";
    if has_body {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            let res = problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                problem::UNSUPPORTED_MEDIA_TYPE,
                "Send the body as application/json.",
                None,
            );
            return Err((Some(auth), res));
        }
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let res = problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                problem::BODY_TOO_LARGE,
                if limit == BATCH_BODY_LIMIT {
                    "A batch body is at most 10 MB."
                } else {
                    "A request body is at most 1 MB."
                },
                None,
            );
            return Err((Some(auth), res));
        }
    };
    let sig = h.get("hermetic-signature").and_then(|v| v.to_str().ok());
    if let Err(r) = auth.verify(&st.services, sig, &body, route).await {
        let res = problem(StatusCode::UNAUTHORIZED, r.code(), r.detail(), None);
        return Err((Some(auth), res));
    }
    let idem = match (has_body, idempotency_key(h)) {
        (true, Some(Ok(k))) => match Idempotency::new(k, method, parts.uri.path(), &body) {
            Ok(i) => Some(i),
            Err(_) => {
                let res = problem(
                    StatusCode::BAD_REQUEST,
                    problem::IDEMPOTENCY_KEY_INVALID,
                    "An Idempotency-Key is 1 to 255 printable ASCII characters.",
                    None,
                );
                return Err((Some(auth), res));
            }
        },
        (true, Some(Err(()))) => {
            let res = problem(
                StatusCode::BAD_REQUEST,
                problem::IDEMPOTENCY_KEY_INVALID,
                "An Idempotency-Key is 1 to 255 printable ASCII characters.",
                None,
            );
            return Err((Some(auth), res));
        }
        _ => None,
    };
    Ok(Call { auth, body, idem })
}

fn idempotency_key(h: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut all = h.get_all("idempotency-key").iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Err(()));
    }
    Some(first.to_str().map_err(|_| ()))
}

/// Run a route: prepare, call, answer, and log the use against the key.
async fn run<F, Fut>(
    st: ApiState,
    req: Request,
    method: &'static str,
    route: &'static str,
    limit: usize,
    f: F,
) -> Response
where
    F: FnOnce(ApiState, Call) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let started = std::time::Instant::now();
    let (org_key, res) = match prepare(&st, req, method, route, limit).await {
        Ok(call) => {
            let who = (call.auth.actor.organisation_id, call.auth.key_id());
            (Some(who), f(st.clone(), call).await)
        }
        Err((auth, res)) => (auth.map(|a| (a.actor.organisation_id, a.key_id())), res),
    };
    let status = res.status().as_u16();
    // The event routes' counts: what the handler recorded, or the one refusal it answered with.
    if route == ROUTES[0].1 || route == ROUTES[1].1 {
        if let Some(t) = res.extensions().get::<EventTally>() {
            t.record();
        } else if !res.status().is_success()
            && let Some(ProblemCode(code)) = res.extensions().get::<ProblemCode>()
        {
            service::metrics::events_rejected(code, 1);
        }
    }
    if let Some((organisation, key)) = org_key {
        st.usage.record(Use { organisation, key, method, route, status, at: st.services.clock().now() });
    }
    tracing::info!(
        method,
        route,
        status,
        ms = started.elapsed().as_millis() as u64,
        key = ?org_key.map(|k| k.1),
        "api request"
    );
    res
}

async fn event(State(st): State<ApiState>, req: Request) -> Response {
    run(st, req, "POST", ROUTES[0].1, BODY_LIMIT, |st, call| async move {
        let now = st.services.clock().now();
        let item = service::api::events::parse_single(&call.body, now);
        if let Err(r) = &item {
            // Scope first: a key without events:write learns nothing from validation.
            if !call.auth.actor.can(Permission::EventsWrite) {
                return service_problem(&service::ServiceError::Forbidden);
            }
            return rejected(r);
        }
        match service::api::events::record(&st.services, &call.auth.actor, vec![item], call.idem.as_ref(), true).await {
            Ok(Ok(a)) => {
                let fresh = !a.replayed;
                let mut res = answer(a);
                if fresh {
                    res.extensions_mut().insert(EventTally { accepted: 1, rejected: Vec::new() });
                }
                res
            }
            Ok(Err(r)) => rejected(&r),
            Err(e) => service_problem(&e),
        }
    })
    .await
}

async fn event_batch(State(st): State<ApiState>, req: Request) -> Response {
    run(st, req, "POST", ROUTES[1].1, BATCH_BODY_LIMIT, |st, call| async move {
        if !call.auth.actor.can(Permission::EventsWrite) {
            return service_problem(&service::ServiceError::Forbidden);
        }
        let now = st.services.clock().now();
        let items = match service::api::events::parse_batch(&call.body, now) {
            Ok(items) => items,
            Err(r) => return rejected(&r),
        };
        let size = items.len();
        match service::api::events::record(&st.services, &call.auth.actor, items, call.idem.as_ref(), false).await {
            Ok(Ok(a)) => {
                let tally = (!a.replayed).then(|| EventTally::of_batch(&a.body));
                let mut res = answer(a);
                if let Some(t) = tally {
                    service::metrics::event_batch(size);
                    res.extensions_mut().insert(t);
                }
                res
            }
            Ok(Err(r)) => rejected(&r),
            Err(e) => service_problem(&e),
        }
    })
    .await
}

async fn upsert_contact(State(st): State<ApiState>, req: Request) -> Response {
    run(st, req, "PUT", ROUTES[2].1, BODY_LIMIT, |st, call| async move {
        if !call.auth.actor.can(Permission::ContactsWrite) {
            return service_problem(&service::ServiceError::Forbidden);
        }
        let up = match service::api::contacts::parse_upsert(&call.body) {
            Ok(u) => u,
            Err(r) => return rejected(&r),
        };
        match service::api::contacts::upsert(&st.services, &call.auth.actor, up, call.idem.as_ref()).await {
            Ok(a) => answer(a),
            Err(e) => service_problem(&e),
        }
    })
    .await
}

async fn get_contact(State(st): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    run(st, req, "GET", ROUTES[3].1, BODY_LIMIT, |st, call| async move {
        let Ok(id) = Uuid::parse_str(&id) else {
            if !call.auth.actor.can(Permission::ContactsRead) {
                return service_problem(&service::ServiceError::Forbidden);
            }
            return problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "Not found.", None);
        };
        match service::api::contacts::get(&st.services, &call.auth.actor, id).await {
            Ok(v) => {
                let mut res = (StatusCode::OK, v.to_string()).into_response();
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                res
            }
            Err(e) => service_problem(&e),
        }
    })
    .await
}

/// Anything else under `/api/v1`: a problem, not the app's HTML not-found page.
pub async fn not_found(_: Body) -> Response {
    problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "No such API route.", None)
}
