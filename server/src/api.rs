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
use domain::api::wire;
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
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
    (Method::POST, "/api/v1/messages", Permission::MessagesSend),
    // The status of a message is read with the scope that sent it: an integration that may send
    // may follow what it sent, and `reports:read` (aggregate figures for people) opens no
    // per-contact message record.
    (Method::GET, "/api/v1/messages/{id}", Permission::MessagesSend),
    // An explicit enrolment is the integration reporting that something happened to the patient
    // that a sequence follows up: the events scope, not a scope of its own.
    (Method::POST, "/api/v1/sequences/{id}/enrolments", Permission::EventsWrite),
];

/// The OpenAPI document of the routes above (public: it describes the API, no organisation's data).
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

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
    /// Each key's budget: requests per second, and the burst allowed (the docs page states them).
    pub budget: (u32, u32),
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
        ApiState { services, limiter, usage, trusted_proxies, budget: (rate.get(), burst.get()) }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(ROUTES[0].1, post(event))
        .route(ROUTES[1].1, post(event_batch))
        .route(ROUTES[2].1, put(upsert_contact))
        .route(ROUTES[3].1, get(get_contact))
        .route(ROUTES[4].1, post(send_message))
        .route(ROUTES[5].1, get(get_message))
        .route(ROUTES[6].1, post(enrol))
        .route(OPENAPI_PATH, get(openapi_json))
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
                let code = problem::find(code).map(|c| c.code).unwrap_or("other");
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
    let body = wire::Problem::new(status.as_u16(), status.canonical_reason().unwrap_or("Error"), code, detail, pointer);
    let mut res = (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res.extensions_mut().insert(ProblemCode(code));
    res
}

/// The problems a route can answer, by status, as the OpenAPI document lists them (and
/// `tests/it/openapi.rs` provokes them over HTTP and checks each answer against the document).
pub fn route_problems(method: &Method, path: &str) -> Vec<(StatusCode, Vec<&'static str>)> {
    use problem::*;
    let mut p = vec![
        (StatusCode::UNAUTHORIZED, vec![UNAUTHENTICATED, BAD_SIGNATURE]),
        (StatusCode::FORBIDDEN, vec![FORBIDDEN]),
    ];
    if *method == Method::GET {
        p.push((StatusCode::NOT_FOUND, vec![NOT_FOUND]));
    } else {
        p.push((StatusCode::BAD_REQUEST, vec![INVALID_JSON, TOO_DEEP, IDEMPOTENCY_KEY_INVALID]));
        p.push((StatusCode::CONFLICT, vec![CONFLICT]));
        p.push((StatusCode::PAYLOAD_TOO_LARGE, vec![BODY_TOO_LARGE]));
        p.push((StatusCode::UNSUPPORTED_MEDIA_TYPE, vec![UNSUPPORTED_MEDIA_TYPE]));
        // A single event names one contact: an unknown one refuses the request. In a batch it
        // refuses only its item (in the 200 answer's results).
        let unprocessable = if path == ROUTES[0].1 {
            vec![INVALID_FIELD, UNKNOWN_FIELD, UNKNOWN_CONTACT, IDEMPOTENCY_MISMATCH]
        } else if path == ROUTES[4].1 {
            vec![
                INVALID_FIELD,
                UNKNOWN_FIELD,
                UNKNOWN_CONTACT,
                UNKNOWN_TEMPLATE,
                TEMPLATE_NOT_ALLOWED,
                RECIPIENT_SUPPRESSED,
                CONSENT_WITHDRAWN,
                NO_SENDING_DOMAIN,
                IDEMPOTENCY_MISMATCH,
            ]
        } else if path == ROUTES[6].1 {
            vec![INVALID_FIELD, UNKNOWN_FIELD, UNKNOWN_CONTACT, IDEMPOTENCY_MISMATCH]
        } else {
            vec![INVALID_FIELD, UNKNOWN_FIELD, IDEMPOTENCY_MISMATCH]
        };
        p.push((StatusCode::UNPROCESSABLE_ENTITY, unprocessable));
        // An enrolment names its sequence in the path, and the sequence must admit the contact.
        if path == ROUTES[6].1 {
            p.push((StatusCode::NOT_FOUND, vec![NOT_FOUND]));
            if let Some((_, conflicts)) = p.iter_mut().find(|(s, _)| *s == StatusCode::CONFLICT) {
                conflicts.extend([SEQUENCE_NOT_LIVE, ALREADY_ENROLLED]);
            }
        }
    }
    p.push((StatusCode::TOO_MANY_REQUESTS, vec![RATE_LIMITED]));
    p.push((StatusCode::INTERNAL_SERVER_ERROR, vec![INTERNAL]));
    p.sort_by_key(|(s, _)| *s);
    p
}

/// A refusal as a problem, with the status its code comes with (`problem::ALL`): 400 for a body
/// that is not JSON, 409 for a state that does not allow the request, 422 for the rest.
fn rejected(r: &Rejection) -> Response {
    let status = problem::find(r.code)
        .and_then(|c| StatusCode::from_u16(c.status).ok())
        .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
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

/// Record a patient event
///
/// Records one event (an appointment booked, a lab result ready, a discharge) for a contact named
/// by id or by email address. Sequences waiting for this type of event see it exactly once. With
/// `email`, an address no contact has creates the contact when the key also holds
/// `contacts:write`; otherwise the event is refused with `unknown_contact`. Properties are
/// encrypted at rest and never appear in an answer or a log.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    operation_id = "recordEvent",
    tag = "Events",
    request_body(content = wire::EventRequest, description = "One event."),
    responses((status = 202, description = "The event is recorded.", body = wire::EventAccepted)),
)]
pub async fn event(State(st): State<ApiState>, req: Request) -> Response {
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

/// Record a batch of events
///
/// Up to 1,000 events in one request and one transaction. Each item is accepted or refused on its
/// own: the answer is `200` with a result per item, in order, even when some (or all) items were
/// refused — check `rejected` and each result's `status`. A refused item carries the same `code`,
/// `pointer` and `detail` as a problem would. A body that is not a batch at all is a problem.
#[utoipa::path(
    post,
    path = "/api/v1/events/batch",
    operation_id = "recordEventBatch",
    tag = "Events",
    request_body(content = wire::EventBatch, description = "1 to 1,000 events."),
    responses((status = 200, description = "Each item's result, in order.", body = wire::EventBatchResult)),
)]
pub async fn event_batch(State(st): State<ApiState>, req: Request) -> Response {
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

/// Create or update a contact
///
/// Finds the contact by email address and creates it when there is none. Fields sent are merged
/// into the stored ones (`null` clears a field; fields not sent are kept), the contact is added to
/// the lists named, and consent decisions are recorded in the consent ledger with source `api`. A
/// grant does not lift a withdrawal the patient made: it is recorded, and answered with
/// `applied: false`.
#[utoipa::path(
    put,
    path = "/api/v1/contacts",
    operation_id = "upsertContact",
    tag = "Contacts",
    request_body(content = wire::ContactUpsert, description = "The contact, by email address."),
    responses(
        (status = 200, description = "The contact existed and is updated.", body = wire::ContactUpserted),
        (status = 201, description = "The contact is created.", body = wire::ContactUpserted),
    ),
)]
pub async fn upsert_contact(State(st): State<ApiState>, req: Request) -> Response {
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

/// Read a contact
///
/// One contact of your organisation with its fields, lists and whether it may be emailed now.
/// Each read is a disclosure of patient data and is recorded in the audit trail with the key.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    operation_id = "getContact",
    tag = "Contacts",
    params(("id" = uuid::Uuid, Path, description = "The contact's id.")),
    responses((status = 200, description = "The contact.", body = wire::ContactView)),
)]
pub async fn get_contact(State(st): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    run(st, req, "GET", ROUTES[3].1, BODY_LIMIT, |st, call| async move {
        let Ok(id) = Uuid::parse_str(&id) else {
            if !call.auth.actor.can(Permission::ContactsRead) {
                return service_problem(&service::ServiceError::Forbidden);
            }
            return problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "Not found.", None);
        };
        match service::api::contacts::get(&st.services, &call.auth.actor, id).await {
            Ok(v) => {
                let Ok(body) = serde_json::to_string(&v) else {
                    return service_problem(&service::ServiceError::internal("encode a contact"));
                };
                let mut res = (StatusCode::OK, body).into_response();
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                res
            }
            Err(e) => service_problem(&e),
        }
    })
    .await
}

/// Send a transactional message
///
/// Sends one of your templates to one existing contact, once, over TLS only, under the consent
/// purpose `transactional` (an appointment confirmation, a message the patient's own care calls
/// for). No consent grant is needed, but a contact whose address is suppressed or who withdrew
/// consent for transactional messages (or unsubscribed from everything) is refused with
/// `recipient_suppressed` or `consent_withdrawn`, and nothing is sent. The message goes From your
/// organisation's first verified sending domain; it carries no list-unsubscribe header. `data` is
/// merge data for this message only (encrypted at rest, never echoed). With `Idempotency-Key`, a
/// retried request sends nothing more and gets the first answer.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    operation_id = "sendMessage",
    tag = "Messages",
    request_body(content = wire::MessageRequest, description = "One message."),
    responses((status = 202, description = "The message is queued and will be sent once.", body = wire::MessageAccepted)),
)]
pub async fn send_message(State(st): State<ApiState>, req: Request) -> Response {
    run(st, req, "POST", ROUTES[4].1, BODY_LIMIT, |st, call| async move {
        // Scope first: a key without messages:send learns nothing from validation.
        if !call.auth.actor.can(Permission::MessagesSend) {
            return service_problem(&service::ServiceError::Forbidden);
        }
        let m = match service::api::messages::parse(&call.body) {
            Ok(m) => m,
            Err(r) => return rejected(&r),
        };
        match service::api::messages::send(&st.services, &call.auth.actor, m, call.idem.as_ref()).await {
            Ok(Ok(a)) => answer(a),
            Ok(Err(r)) => rejected(&r),
            Err(e) => service_problem(&e),
        }
    })
    .await
}

/// Read a message's status
///
/// Where a message sent through `POST /api/v1/messages` is (`queued`, `sending`, `sent`,
/// `deferred` while it waits to retry, `bounced`, `failed`, `skipped`, with the reason in fixed
/// words) and its engagement: opens and clicks, people's apart from machines' (privacy proxies,
/// link scanners). Ids, codes, counts and times only — never contact data.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    operation_id = "getMessage",
    tag = "Messages",
    params(("id" = uuid::Uuid, Path, description = "The message's id.")),
    responses((status = 200, description = "The message.", body = wire::MessageView)),
)]
pub async fn get_message(State(st): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    run(st, req, "GET", ROUTES[5].1, BODY_LIMIT, |st, call| async move {
        let Ok(id) = Uuid::parse_str(&id) else {
            if !call.auth.actor.can(Permission::MessagesSend) {
                return service_problem(&service::ServiceError::Forbidden);
            }
            return problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "Not found.", None);
        };
        match service::api::messages::get(&st.services, &call.auth.actor, id).await {
            Ok(v) => {
                let Ok(body) = serde_json::to_string(&v) else {
                    return service_problem(&service::ServiceError::internal("encode a message"));
                };
                let mut res = (StatusCode::OK, body).into_response();
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                res
            }
            Err(e) => service_problem(&e),
        }
    })
    .await
}

/// Enrol a contact in a sequence
///
/// Enrols one existing contact (by id or by email address; none is created) in one of your
/// organisation's live sequences, as if its trigger had fired: the sequence's first step runs
/// next. Use it when your system knows that something happened to the patient that this sequence
/// follows up. The sequence's entry rule applies: a contact it does not admit again (once ever,
/// or one enrolment at a time while one is active) is refused with `already_enrolled`; a draft,
/// paused or archived sequence with `sequence_not_live`. An enrolment has no trigger event, so
/// the sequence's emails have no `{{event.…}}` data. Each enrolment is recorded in the audit trail
/// with the key. With `Idempotency-Key`, a retried request enrols nobody again and gets the first
/// answer.
#[utoipa::path(
    post,
    path = "/api/v1/sequences/{id}/enrolments",
    operation_id = "enrolContact",
    tag = "Sequences",
    params(("id" = uuid::Uuid, Path, description = "The sequence's id (shown on its page in Hermetic).")),
    request_body(content = wire::EnrolmentRequest, description = "The contact to enrol."),
    responses((status = 201, description = "The contact is enrolled.", body = wire::EnrolmentAccepted)),
)]
pub async fn enrol(State(st): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    run(st, req, "POST", ROUTES[6].1, BODY_LIMIT, |st, call| async move {
        // Scope first: a key without events:write learns nothing from validation.
        if !call.auth.actor.can(Permission::EventsWrite) {
            return service_problem(&service::ServiceError::Forbidden);
        }
        let Ok(id) = Uuid::parse_str(&id) else {
            return problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "Not found.", None);
        };
        let e = match service::api::enrolments::parse(id, &call.body) {
            Ok(e) => e,
            Err(r) => return rejected(&r),
        };
        match service::api::enrolments::enrol(&st.services, &call.auth.actor, e, call.idem.as_ref()).await {
            Ok(Ok(a)) => answer(a),
            Ok(Err(r)) => rejected(&r),
            Err(e) => service_problem(&e),
        }
    })
    .await
}

/// `GET /api/v1/openapi.json`: the document, generated once per process.
pub async fn openapi_json() -> Response {
    let mut res = (StatusCode::OK, crate::openapi::json()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Anything else under `/api/v1`: a problem, not the app's HTML not-found page.
pub async fn not_found(_: Body) -> Response {
    problem(StatusCode::NOT_FOUND, problem::NOT_FOUND, "No such API route.", None)
}
