//! The OpenAPI 3.1 document of `/api/v1` (`GET /api/v1/openapi.json`), generated from the code:
//! the request and answer schemas are derived (utoipa's `ToSchema`) from `domain::api::wire`, the
//! types the service builds its answers from; each handler in `api.rs` carries its operation
//! (`#[utoipa::path]`). What every route shares is added here from the same tables the edge runs
//! on: the scope each route needs (from `api::ROUTES`, the route table's source), the problems it
//! can answer (`api::route_problems`, with the codes of `domain::api::problem::ALL`), the
//! `Hermetic-Signature` and `Idempotency-Key` headers, `Retry-After`. Examples are typed values of
//! the wire types, so a renamed member renames its example too; tests send them to the real server.
//!
//! The docs page (`api_docs.rs`) is rendered from this document, so it cannot drift from it.

use crate::api::{self, ROUTES};
use chrono::{DateTime, Utc};
use domain::Phi;
use domain::api::wire::{self, ContactRef, Scalar};
use domain::api::{Scope, problem};
use domain::contacts::{ConsentPurpose, MemberStatus};
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};
use uuid::Uuid;

/// The name of the security scheme (an API key sent as a bearer token).
pub const SECURITY_SCHEME: &str = "apiKey";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hermetic API",
        version = "1",
        description = "The machine interface of Hermetic for hospital and clinic systems (an EHR's \
            integration engine, a scheduling system): record patient events that drive follow-up \
            sequences (or enrol a contact in one directly), send transactional messages, and keep \
            contacts, list memberships and consent in sync. Every request is \
            authenticated with an API key created by an administrator (Settings → API keys); a key \
            can do only what its scopes allow. Answers are JSON; every failure is an RFC 9457 \
            problem (`application/problem+json`) with a stable `code`. Human-readable guide: `/api/docs`."
    ),
    paths(
        api::event,
        api::event_batch,
        api::upsert_contact,
        api::get_contact,
        api::send_message,
        api::get_message,
        api::enrol
    ),
    components(schemas(wire::Problem)),
    tags(
        (name = "Events", description = "Patient events from your systems: they start and advance sequences."),
        (name = "Contacts", description = "Contacts, their list memberships and consent."),
        (name = "Messages", description = "Transactional messages to one contact, and their status."),
        (name = "Sequences", description = "Follow-up sequences: enrol a contact in a live one directly."),
    ),
    modifiers(&Edge),
)]
struct ApiDoc;

/// The document, built once per process.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as served.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default())
}

/// The scope that grants a permission (each scope grants exactly one).
pub fn scope_for(permission: domain::Permission) -> Option<Scope> {
    Scope::ALL.into_iter().find(|s| s.permission() == permission)
}

const IDEMPOTENCY_KEY: &str = "IdempotencyKey";
const SIGNATURE: &str = "HermeticSignature";
const RETRY_AFTER: &str = "RetryAfter";

pub const SIGNATURE_DESCRIPTION: &str = "Required when the key was created with *signed requests* \
    (otherwise ignored). `t=<unix seconds>,v1=<hex>`, where the hex is HMAC-SHA256, keyed with the \
    key's signing secret (`hm_sign_…`), of `t`, a `.` and the raw request body, exactly as sent (an \
    empty body for GET). The timestamp must be within five minutes of the server's clock. Several \
    `v1=` values may be sent while a secret is being replaced; one must match.";

pub const IDEMPOTENCY_DESCRIPTION: &str = "Optional, recommended on every POST and PUT: a value \
    unique to this request (a UUID), 1 to 255 printable ASCII characters. Retrying with the same key \
    and the same body within 24 hours returns the first answer (with `Idempotent-Replayed: true`) and \
    changes nothing; the same key with a different request is refused (`idempotency_key_reused`). A \
    request that was refused stores nothing, so a corrected retry may reuse its key.";

struct Edge;

impl Modify for Edge {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // utoipa fills the licence from the crate's manifest (UNLICENSED, which is not one).
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("hm_live_…")
                    .description(Some(
                        "`Authorization: Bearer hm_live_…` — an API key (Settings → API keys). The scopes \
                         listed on an operation are the ones its key needs. A session cookie never counts.",
                    ))
                    .build(),
            ),
        );
        let header = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        components.parameters.insert(
            IDEMPOTENCY_KEY.into(),
            RefOr::T(header(
                "Idempotency-Key",
                IDEMPOTENCY_DESCRIPTION,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$"))
                    .examples([Value::from("7f1c3c1e-0a7b-4c53-9a4e-1f0b8f3f9d11")]),
            )),
        );
        components.parameters.insert(
            SIGNATURE.into(),
            RefOr::T(header(
                "Hermetic-Signature",
                SIGNATURE_DESCRIPTION,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(1024))
                    .examples([Value::from(signature_example().header)]),
            )),
        );
        components.headers.insert(
            RETRY_AFTER.into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                    .description(Some("Seconds to wait before the key's budget allows another request."))
                    .build(),
            ),
        );

        for (method, path, permission) in ROUTES {
            let Some(item) = openapi.paths.paths.get_mut(*path) else { continue };
            let op = match *method {
                Method::GET => item.get.as_mut(),
                Method::POST => item.post.as_mut(),
                Method::PUT => item.put.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            let scopes: Vec<&str> = scope_for(*permission).map(Scope::as_str).into_iter().collect();
            op.security = Some(vec![SecurityRequirement::new(SECURITY_SCHEME, scopes)]);
            let has_body = *method != Method::GET;
            let params = op.parameters.get_or_insert_with(Vec::new);
            params.push(RefOr::Ref(Ref::new(format!("#/components/parameters/{SIGNATURE}"))));
            if has_body {
                params.push(RefOr::Ref(Ref::new(format!("#/components/parameters/{IDEMPOTENCY_KEY}"))));
            }
            let (request, answers) = examples(path);
            if let (Some(RefOr::T(body)), Some(example)) = (op.request_body.as_mut(), request) {
                set_example(body, example);
            }
            for (status, example) in answers {
                if let Some(RefOr::T(res)) = op.responses.responses.get_mut(status.as_str()) {
                    for content in res.content.values_mut() {
                        if let RefOr::T(c) = content {
                            c.example = Some(example.clone());
                        }
                    }
                    if has_body {
                        res.headers.insert(
                            "Idempotent-Replayed".into(),
                            RefOr::T(
                                HeaderBuilder::new()
                                    .schema(Some(
                                        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"])),
                                    ))
                                    .description(Some(
                                        "Present when this is the stored answer to an earlier request with the \
                                         same Idempotency-Key.",
                                    ))
                                    .build(),
                            ),
                        );
                    }
                }
            }
            add_problems(op, method, path);
        }
    }
}

fn set_example(body: &mut RequestBody, example: Value) {
    for content in body.content.values_mut() {
        if let RefOr::T(c) = content {
            c.example = Some(example.clone());
        }
    }
}

/// The problem answers of one route: each status with the codes it can carry (the schema
/// restricts `code` to exactly those), an example, and `Retry-After` / `WWW-Authenticate`.
fn add_problems(op: &mut Operation, method: &Method, path: &str) {
    for (status, codes) in api::route_problems(method, path) {
        let reason = status.canonical_reason().unwrap_or("Error");
        let schema = AllOfBuilder::new().item(Ref::from_schema_name("Problem")).item(
            ObjectBuilder::new()
                .property("code", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.clone()))),
        );
        let first = codes.first().and_then(|c| problem::find(c));
        let example = first.map(|c| {
            let pointer = (c.code == problem::INVALID_FIELD).then(|| example_pointer(path));
            to_json(&wire::Problem::new(status.as_u16(), reason, c.code, c.meaning, pointer))
        });
        let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        let mut res = ResponseBuilder::new()
            .description(format!("{reason}: {}.", listed.join(", ")))
            .content("application/problem+json", ContentBuilder::new().schema(Some(schema)).example(example).build());
        if status == StatusCode::TOO_MANY_REQUESTS {
            res = res.header_ref("Retry-After", Ref::new(format!("#/components/headers/{RETRY_AFTER}")));
        }
        if status == StatusCode::UNAUTHORIZED {
            res = res.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`Bearer realm=\"hermetic\"` when the key is missing or not valid."))
                    .build(),
            );
        }
        op.responses.responses.insert(status.as_str().to_string(), RefOr::T(res.build()));
    }
}

fn example_pointer(path: &str) -> &'static str {
    match path {
        "/api/v1/events" => "/type",
        "/api/v1/events/batch" => "/events",
        "/api/v1/messages" => "/template",
        "/api/v1/sequences/{id}/enrolments" => "/contact/id",
        _ => "/email",
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Example ids: UUIDv7-shaped placeholders.
pub const EXAMPLE_CONTACT: Uuid = Uuid::from_u128(0x0190_f3a2_6b1c_7d4e_9f00_3c5a_1b2d_4e6f);
pub const EXAMPLE_LIST: Uuid = Uuid::from_u128(0x0190_f3a2_7c2d_7e5f_a011_4d6b_2c3e_5f70);
pub const EXAMPLE_EVENT: Uuid = Uuid::from_u128(0x0190_f3a3_0d3e_7f60_b122_5e7c_3d4f_6081);
pub const EXAMPLE_TEMPLATE: Uuid = Uuid::from_u128(0x0190_f3a1_5a0b_7c3d_8e00_2b49_0a1c_3d5e);
pub const EXAMPLE_MESSAGE: Uuid = Uuid::from_u128(0x0190_f3a3_1e4f_7071_c233_6f8d_4e50_7192);
pub const EXAMPLE_SEQUENCE: Uuid = Uuid::from_u128(0x0190_f3a0_4f9a_7b2c_8d00_1a38_f90b_2c4d);
pub const EXAMPLE_ENROLMENT: Uuid = Uuid::from_u128(0x0190_f3a3_2f50_7182_d344_709e_5f61_82a3);

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

/// 2026-03-02T09:30:00Z, when the example events happened (in the past: the server refuses events
/// more than a day ahead of its clock, and the tests send the examples to it).
const EXAMPLE_TIME: i64 = 1_772_443_800;

fn props(items: &[(&str, Scalar)]) -> Option<Phi<BTreeMap<String, Option<Scalar>>>> {
    Some(Phi::new(items.iter().map(|(k, v)| (k.to_string(), Some(v.clone()))).collect()))
}

fn text(s: &str) -> Scalar {
    Scalar::Text(s.to_string())
}

/// The example event (also the body of the signature example).
pub fn example_event() -> wire::EventRequest {
    wire::EventRequest {
        contact: ContactRef::Email(wire::ContactByEmail { email: Phi::new("patient@example.org".into()) }),
        event_type: "appointment.booked".into(),
        occurred_at: Some(at(EXAMPLE_TIME)),
        properties: props(&[
            ("appointment_at", text("2026-03-09T14:00:00Z")),
            ("clinic", text("North Clinic")),
            ("first_visit", Scalar::Flag(true)),
        ]),
    }
}

pub fn example_batch() -> wire::EventBatch {
    wire::EventBatch {
        events: vec![
            wire::EventRequest {
                contact: ContactRef::Id(wire::ContactById { id: EXAMPLE_CONTACT }),
                event_type: "lab_result.ready".into(),
                occurred_at: Some(at(EXAMPLE_TIME)),
                properties: props(&[("portal_link", Scalar::Flag(true))]),
            },
            wire::EventRequest {
                contact: ContactRef::Email(wire::ContactByEmail { email: Phi::new("new.patient@example.org".into()) }),
                event_type: "appointment.cancelled".into(),
                occurred_at: None,
                properties: None,
            },
        ],
    }
}

/// SHA-256 of the example consent wording, "I agree to receive appointment reminders and news from
/// the clinic by email."
const EXAMPLE_CONSENT_SHA256: &str = "66861353e393b6d08b2234248f86c10bd35f078d13802cca4b281632f2ff7f10";

pub fn example_upsert() -> wire::ContactUpsert {
    wire::ContactUpsert {
        email: Phi::new("patient@example.org".into()),
        fields: props(&[
            ("first_name", text("Alex")),
            ("last_name", text("Example")),
            ("date_of_birth", text("1970-01-01")),
            ("locale", text("en-US")),
        ]),
        lists: Some(vec![EXAMPLE_LIST]),
        consent: Some(vec![wire::ConsentDecision {
            purpose: ConsentPurpose::Marketing,
            granted: true,
            text_sha256: Some(EXAMPLE_CONSENT_SHA256.into()),
        }]),
    }
}

pub fn example_message() -> wire::MessageRequest {
    wire::MessageRequest {
        contact: ContactRef::Email(wire::ContactByEmail { email: Phi::new("patient@example.org".into()) }),
        template: EXAMPLE_TEMPLATE,
        data: props(&[("appointment_at", text("2026-03-09 14:00")), ("clinic", text("North Clinic"))]),
    }
}

pub fn example_enrolment() -> wire::EnrolmentRequest {
    wire::EnrolmentRequest {
        contact: ContactRef::Email(wire::ContactByEmail { email: Phi::new("patient@example.org".into()) }),
    }
}

/// The request example of a route and its success answers' examples.
pub fn examples(path: &str) -> (Option<Value>, Vec<(StatusCode, Value)>) {
    match path {
        "/api/v1/events" => (
            Some(to_json(&example_event())),
            vec![(StatusCode::ACCEPTED, to_json(&wire::EventAccepted { id: EXAMPLE_EVENT }))],
        ),
        "/api/v1/events/batch" => (
            Some(to_json(&example_batch())),
            vec![(
                StatusCode::OK,
                to_json(&wire::EventBatchResult {
                    accepted: 1,
                    rejected: 1,
                    contacts_created: 0,
                    results: vec![
                        wire::ItemResult::Accepted { index: 0, id: EXAMPLE_EVENT },
                        wire::ItemResult::Rejected {
                            index: 1,
                            code: problem::UNKNOWN_CONTACT.into(),
                            pointer: "/events/1/contact/email".into(),
                            detail:
                                "No contact has this address, and this key may not create contacts (contacts:write)."
                                    .into(),
                        },
                    ],
                }),
            )],
        ),
        "/api/v1/contacts" => {
            let answer = |created| {
                to_json(&wire::ContactUpserted {
                    id: EXAMPLE_CONTACT,
                    created,
                    consent: vec![wire::ConsentApplied {
                        purpose: ConsentPurpose::Marketing,
                        granted: true,
                        applied: true,
                    }],
                })
            };
            (
                Some(to_json(&example_upsert())),
                vec![(StatusCode::OK, answer(false)), (StatusCode::CREATED, answer(true))],
            )
        }
        "/api/v1/contacts/{id}" => (
            None,
            vec![(
                StatusCode::OK,
                to_json(&wire::ContactView {
                    id: EXAMPLE_CONTACT,
                    email: Some(Phi::new("patient@example.org".into())),
                    fields: [("first_name", "Alex"), ("last_name", "Example"), ("date_of_birth", "1970-01-01")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Phi::new(v.to_string())))
                        .collect(),
                    lists: vec![wire::ListMembershipView {
                        id: EXAMPLE_LIST,
                        name: "Appointment reminders".into(),
                        status: MemberStatus::Subscribed,
                    }],
                    mailable: vec![
                        wire::MailableView { purpose: ConsentPurpose::Marketing, allowed: true },
                        wire::MailableView { purpose: ConsentPurpose::CareCommunications, allowed: true },
                    ],
                    suppressed: false,
                    created_at: at(EXAMPLE_TIME - 86_400 * 30),
                    updated_at: at(EXAMPLE_TIME),
                }),
            )],
        ),
        "/api/v1/messages" => (
            Some(to_json(&example_message())),
            vec![(
                StatusCode::ACCEPTED,
                to_json(&wire::MessageAccepted { id: EXAMPLE_MESSAGE, status: wire::MessageStatus::Queued }),
            )],
        ),
        "/api/v1/sequences/{id}/enrolments" => (
            Some(to_json(&example_enrolment())),
            vec![(
                StatusCode::CREATED,
                to_json(&wire::EnrolmentAccepted {
                    enrolment_id: EXAMPLE_ENROLMENT,
                    sequence_id: EXAMPLE_SEQUENCE,
                    status: wire::EnrolmentStatus::Active,
                }),
            )],
        ),
        "/api/v1/messages/{id}" => (
            None,
            vec![(
                StatusCode::OK,
                to_json(&wire::MessageView {
                    id: EXAMPLE_MESSAGE,
                    template: EXAMPLE_TEMPLATE,
                    contact: Some(EXAMPLE_CONTACT),
                    status: wire::MessageStatus::Sent,
                    reason: None,
                    smtp_status: Some("250 2.0.0".into()),
                    attempts: 1,
                    created_at: at(EXAMPLE_TIME),
                    sent_at: Some(at(EXAMPLE_TIME + 2)),
                    opened: wire::Engagement {
                        human: 1,
                        machine: 1,
                        first_human_at: Some(at(EXAMPLE_TIME + 600)),
                        first_at: Some(at(EXAMPLE_TIME + 3)),
                    },
                    clicked: wire::Engagement::default(),
                }),
            )],
        ),
        _ => (None, Vec::new()),
    }
}

/// A worked signature: a made-up signing secret, a timestamp, the example event as the body, and
/// the header our own code computes for them (the docs page shows it; a test recomputes it with
/// `openssl` and Python).
pub struct SignatureExample {
    pub secret: &'static str,
    pub timestamp: i64,
    pub body: String,
    pub header: String,
}

pub const EXAMPLE_SIGNING_SECRET: &str = "hm_sign_EXAMPLEonlyEXAMPLEonlyEXAMPLEonlyEXAMPLEo";

pub fn signature_example() -> SignatureExample {
    let timestamp = EXAMPLE_TIME + 300;
    let body = serde_json::to_string(&example_event()).unwrap_or_default();
    let header = service::api::keys::signature_header(EXAMPLE_SIGNING_SECRET.as_bytes(), timestamp, body.as_bytes());
    SignatureExample { secret: EXAMPLE_SIGNING_SECRET, timestamp, body, header }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::api::wire::{
        BATCH_MEMBERS, CONSENT_MEMBERS, CONTACT_REF_MEMBERS, ENROLMENT_MEMBERS, EVENT_MEMBERS, MESSAGE_MEMBERS,
        UPSERT_MEMBERS,
    };
    use domain::api::wire::{MAX_UPSERT_CONSENT, MAX_UPSERT_LISTS};
    use serde_json::json;

    fn doc() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    fn members(s: &Value) -> Vec<String> {
        let mut m: Vec<String> = s["properties"].as_object().unwrap().keys().cloned().collect();
        m.sort();
        m
    }

    fn sorted(a: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn every_route_is_documented_with_its_method_and_scope_and_nothing_else() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        for (method, path, permission) in ROUTES {
            let op = &d["paths"][*path][method.as_str().to_lowercase()];
            assert!(op.is_object(), "{method} {path} is not in the document");
            let scope = scope_for(*permission).unwrap();
            assert_eq!(op["security"], json!([{ SECURITY_SCHEME: [scope.as_str()] }]), "{method} {path}");
            assert!(op["operationId"].is_string() && op["summary"].is_string() && op["description"].is_string());
        }
        let documented: usize = d["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum();
        assert_eq!(documented, ROUTES.len());
    }

    /// The parsers refuse any member outside the `*_MEMBERS` lists; the schemas say the same.
    #[test]
    fn request_schemas_allow_exactly_the_members_the_parsers_allow() {
        let d = doc();
        let s = |name: &str| d["components"]["schemas"][name].clone();
        for (name, allowed) in [
            ("EventRequest", &EVENT_MEMBERS[..]),
            ("EventBatch", &BATCH_MEMBERS[..]),
            ("ContactUpsert", &UPSERT_MEMBERS[..]),
            ("ConsentDecision", &CONSENT_MEMBERS[..]),
            ("MessageRequest", &MESSAGE_MEMBERS[..]),
            ("EnrolmentRequest", &ENROLMENT_MEMBERS[..]),
        ] {
            assert_eq!(members(&s(name)), sorted(allowed), "{name}");
            assert_eq!(s(name)["additionalProperties"], false, "{name}");
        }
        let mut refs = [members(&s("ContactById")), members(&s("ContactByEmail"))].concat();
        refs.sort();
        assert_eq!(refs, sorted(&CONTACT_REF_MEMBERS));
        assert_eq!(s("EventBatch")["properties"]["events"]["maxItems"], domain::api::MAX_EVENTS_PER_BATCH);
        assert_eq!(s("ContactUpsert")["properties"]["lists"]["maxItems"], MAX_UPSERT_LISTS);
        assert_eq!(s("ContactUpsert")["properties"]["consent"]["maxItems"], MAX_UPSERT_CONSENT);
        assert_eq!(s("EventRequest")["properties"]["properties"]["maxProperties"], domain::api::MAX_PROPERTIES);
        assert_eq!(s("EventRequest")["properties"]["type"]["maxLength"], 64);
        assert!(domain::api::valid_event_type(&"a".repeat(64)) && !domain::api::valid_event_type(&"a".repeat(65)));
    }

    /// Every request example is one the service's own parsers accept (and the wire types read).
    #[test]
    fn request_examples_are_accepted_by_the_real_parsers() {
        let d = doc();
        let now = at(EXAMPLE_TIME);
        for (method, path, _) in ROUTES {
            let (request, answers) = examples(path);
            assert!(!answers.is_empty(), "{path} has no answer example");
            let Some(request) = request else {
                assert_eq!(*method, Method::GET);
                continue;
            };
            let served = &d["paths"][*path][method.as_str().to_lowercase()]["requestBody"]["content"]["application/json"]
                ["example"];
            assert_eq!(*served, request, "{path}");
            let body = serde_json::to_vec(&request).unwrap();
            match *path {
                "/api/v1/events" => {
                    service::api::events::parse_single(&body, now).unwrap();
                    serde_json::from_value::<wire::EventRequest>(request).unwrap();
                }
                "/api/v1/events/batch" => {
                    for item in service::api::events::parse_batch(&body, now).unwrap() {
                        item.unwrap();
                    }
                    serde_json::from_value::<wire::EventBatch>(request).unwrap();
                }
                "/api/v1/contacts" => {
                    service::api::contacts::parse_upsert(&body).unwrap();
                    serde_json::from_value::<wire::ContactUpsert>(request).unwrap();
                }
                "/api/v1/messages" => {
                    service::api::messages::parse(&body).unwrap();
                    serde_json::from_value::<wire::MessageRequest>(request).unwrap();
                }
                "/api/v1/sequences/{id}/enrolments" => {
                    service::api::enrolments::parse(EXAMPLE_SEQUENCE, &body).unwrap();
                    serde_json::from_value::<wire::EnrolmentRequest>(request).unwrap();
                }
                other => panic!("no parser for {other}"),
            }
        }
    }

    #[test]
    fn documented_problems_come_with_their_own_status() {
        for (method, path, _) in ROUTES {
            for (status, codes) in crate::api::route_problems(method, path) {
                for code in codes {
                    let c = problem::find(code).unwrap_or_else(|| panic!("{code} is not in problem::ALL"));
                    assert_eq!(c.status, status.as_u16(), "{method} {path} lists {code} under {status}");
                }
            }
        }
    }

    #[test]
    fn the_signature_example_is_well_formed() {
        let s = signature_example();
        let h = domain::api::SignatureHeader::parse(&s.header).unwrap();
        assert_eq!(h.timestamp, s.timestamp);
        assert!(s.body.starts_with(r#"{"contact":{"email":"patient@example.org"},"type":"appointment.booked""#));
        assert_eq!(s.header, service::api::keys::signature_header(s.secret.as_bytes(), s.timestamp, s.body.as_bytes()));
    }
}
