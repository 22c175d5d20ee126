//! The JSON bodies of `/api/v1` as types. The service builds every answer from these types, so the
//! OpenAPI document (derived from them with the `openapi` feature, see `server::openapi`) describes
//! the bytes that are sent. Requests are read by the service's own parsers, not by serde: they
//! refuse without echoing a value and point at the bad member, which serde's errors do not do. The
//! members those parsers accept are the `*_MEMBERS` constants here, and a test holds the request
//! schemas to the same lists (and every documented example to the parsers).
//!
//! PHI in these types (addresses, fields, event properties) lives in `Phi<T>`; its schema is T's.

use crate::Phi;
use crate::contacts::{ConsentPurpose, MemberStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The members of an event object (`POST /api/v1/events`, each item of a batch).
pub const EVENT_MEMBERS: [&str; 4] = ["contact", "type", "occurred_at", "properties"];
/// The members of an event's `contact`: exactly one of them.
pub const CONTACT_REF_MEMBERS: [&str; 2] = ["id", "email"];
/// The only member of a batch body.
pub const BATCH_MEMBERS: [&str; 1] = ["events"];
/// The members of a contact upsert (`PUT /api/v1/contacts`).
pub const UPSERT_MEMBERS: [&str; 4] = ["email", "fields", "lists", "consent"];
/// The members of one consent decision in an upsert.
pub const CONSENT_MEMBERS: [&str; 3] = ["purpose", "granted", "text_sha256"];
/// The members of a transactional message (`POST /api/v1/messages`).
pub const MESSAGE_MEMBERS: [&str; 3] = ["contact", "template", "data"];
/// The members of an enrolment (`POST /api/v1/sequences/{id}/enrolments`).
pub const ENROLMENT_MEMBERS: [&str; 1] = ["contact"];
/// Fields, lists and consent decisions one upsert may carry.
pub const MAX_UPSERT_FIELDS: usize = 200;
pub const MAX_UPSERT_LISTS: usize = 100;
pub const MAX_UPSERT_CONSENT: usize = 10;

/// A flat value: an event property or a contact field. Strings are at most 2,048 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// One patient event: who, what (a type code), when, and flat properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    pub contact: ContactRef,
    /// A code such as `appointment.booked`: lower-case letters, digits, `_` and `.`, starting with
    /// a letter, at most 64 characters. Never free text: it is stored unencrypted.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_.]*$", min_length = 1, max_length = 64))]
    pub event_type: String,
    /// When it happened (RFC 3339); at most a day ahead of the server's clock and not before
    /// 1900. Default: when the request arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Flat properties (PHI); described in `schema::event_properties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::event_properties))]
    pub properties: Option<Phi<BTreeMap<String, Option<Scalar>>>>,
}

/// How an event names its contact: by id, or by email address. With `email`, an address no
/// contact has creates the contact when the key also holds `contacts:write`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum ContactRef {
    Id(ContactById),
    Email(ContactByEmail),
}

/// A contact named by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactById {
    /// The contact's id (as answered by `PUT /api/v1/contacts`).
    pub id: Uuid,
}

/// A contact named by its email address (matched case-insensitively).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactByEmail {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Email))]
    pub email: Phi<String>,
}

/// A batch of events, recorded in one transaction; each item is accepted or refused on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// 1 to 1,000 events.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub events: Vec<EventRequest>,
}

/// A contact to create or update, found by email address. Fields sent are merged into the stored
/// ones (`null` clears a field); lists are joined; consent decisions are recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactUpsert {
    /// The contact's email address: the key of the upsert.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Email))]
    pub email: Phi<String>,
    /// Field key → value (PHI); described in `schema::contact_fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::contact_fields))]
    pub fields: Option<Phi<BTreeMap<String, Option<Scalar>>>>,
    /// Ids of lists to add the contact to (at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub lists: Option<Vec<Uuid>>,
    /// Consent decisions to record (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 10))]
    pub consent: Option<Vec<ConsentDecision>>,
}

/// A consent decision the patient made in your system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsentDecision {
    pub purpose: ConsentPurpose,
    /// `true`: consent given; `false`: withdrawn.
    pub granted: bool,
    /// SHA-256 of the wording the patient agreed to, as 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-fA-F]{64}$"))]
    pub text_sha256: Option<String>,
}

/// `202 Accepted`: the event is recorded (and will reach the sequences waiting for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventAccepted {
    /// The event's id.
    pub id: Uuid,
}

/// A transactional message: one template to one contact, sent once, over TLS only, under the
/// consent purpose `transactional` (no grant needed; a withdrawal or a suppression refuses it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The recipient, by id or by email address (an existing contact; none is created).
    pub contact: ContactRef,
    /// The id of one of your organisation's templates; its latest saved version is sent.
    pub template: Uuid,
    /// Flat merge data for this message (PHI: stored encrypted, never echoed or logged), as
    /// `{{message.<name>}}` in the template (a name the data lacks renders empty); same rules as
    /// event properties. A template that uses `{{event.…}}` is refused (`template_not_allowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::message_data))]
    pub data: Option<Phi<BTreeMap<String, Option<Scalar>>>>,
}

/// Where a message is. `sending` while a sender holds it; `deferred` while it waits to retry
/// after a temporary refusal; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Deferred,
    Bounced,
    Failed,
    Skipped,
    Cancelled,
}

impl From<crate::delivery::DeliveryState> for MessageStatus {
    fn from(s: crate::delivery::DeliveryState) -> MessageStatus {
        use crate::delivery::DeliveryState as D;
        match s {
            D::Queued => MessageStatus::Queued,
            D::Sending => MessageStatus::Sending,
            D::Sent => MessageStatus::Sent,
            D::Deferred => MessageStatus::Deferred,
            D::Bounced => MessageStatus::Bounced,
            D::Failed => MessageStatus::Failed,
            D::Skipped => MessageStatus::Skipped,
            D::Cancelled => MessageStatus::Cancelled,
        }
    }
}

/// `202 Accepted`: the message is queued and will be sent once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MessageAccepted {
    /// The message's id (`GET /api/v1/messages/{id}`).
    pub id: Uuid,
    pub status: MessageStatus,
}

/// A message's status and engagement: ids, codes, counts and times only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MessageView {
    pub id: Uuid,
    pub template: Uuid,
    /// The contact's id (absent once the contact is erased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Uuid>,
    pub status: MessageStatus,
    /// Why a message was skipped, failed or deferred, in fixed words (never contact data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The mail server's last status code (e.g. `250 2.0.0`), never its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_status: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When the receiving server accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    pub opened: Engagement,
    pub clicked: Engagement,
}

/// Opens or clicks of a message, people's apart from machines' (privacy proxies such as Apple Mail
/// Privacy Protection, link scanners, prefetches within seconds of delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Engagement {
    /// Events judged a person's.
    pub human: u32,
    /// Events judged a machine's.
    pub machine: u32,
    /// The first event judged a person's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_human_at: Option<DateTime<Utc>>,
    /// The first event of any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<DateTime<Utc>>,
}

/// An explicit enrolment of one existing contact into a live sequence: the integration reports
/// that something happened to the patient that this sequence follows up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRequest {
    /// The contact, by id or by email address (an existing contact; none is created).
    pub contact: ContactRef,
}

/// Where a new enrolment is: always `active` (the sequence's first step runs next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentStatus {
    Active,
}

/// `201 Created`: the contact is enrolled; the sequence's first step runs next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnrolmentAccepted {
    /// The enrolment's id.
    pub enrolment_id: Uuid,
    /// The sequence's id (as in the path).
    pub sequence_id: Uuid,
    pub status: EnrolmentStatus,
}

/// The outcome of a batch: counts, and each item's result in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventBatchResult {
    pub accepted: u32,
    pub rejected: u32,
    /// Contacts created for addresses no contact had.
    pub contacts_created: u32,
    pub results: Vec<ItemResult>,
}

/// One batch item's outcome. A refused item carries the same stable `code`, `pointer` and
/// `detail` as a problem would (never the submitted value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ItemResult {
    Accepted {
        /// The item's position in `events` (from 0).
        index: u32,
        /// The recorded event's id.
        id: Uuid,
    },
    Rejected {
        /// The item's position in `events` (from 0).
        index: u32,
        /// A stable problem code, e.g. `invalid_field` or `unknown_contact`.
        code: String,
        /// JSON pointer of the bad member, e.g. `/events/3/type`.
        pointer: String,
        detail: String,
    },
}

/// The answer to an upsert: `201` when the contact was created, `200` when it existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ContactUpserted {
    pub id: Uuid,
    pub created: bool,
    /// One entry per consent decision sent, in order.
    pub consent: Vec<ConsentApplied>,
}

/// Whether a consent decision changed the contact's current state. A grant is recorded but not
/// applied while the patient's own withdrawal is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ConsentApplied {
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub applied: bool,
}

/// A contact as the API shows it (each read is recorded in the audit trail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ContactView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Email))]
    pub email: Option<Phi<String>>,
    /// Field key → value, for the fields that have one.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub fields: BTreeMap<String, Phi<String>>,
    pub lists: Vec<ListMembershipView>,
    /// Whether the contact may be emailed now, per purpose (consent and withdrawals).
    pub mailable: Vec<MailableView>,
    /// On the organisation's suppression list (never emailed).
    pub suppressed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ListMembershipView {
    pub id: Uuid,
    pub name: String,
    pub status: MemberStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MailableView {
    pub purpose: ConsentPurpose,
    pub allowed: bool,
}

/// An RFC 9457 problem (`application/problem+json`): every answer that is not a success. Branch
/// on `code`; `detail` is for people and may change. No value the client sent is ever echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Problem {
    /// `/api/docs#problem-<code>`: the code's entry in the API documentation.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// The stable problem code.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::problem_code))]
    pub code: String,
    /// What went wrong, in fixed words.
    pub detail: String,
    /// JSON pointer (RFC 6901) of the member that was refused, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl Problem {
    pub fn new(status: u16, title: &str, code: &str, detail: &str, pointer: Option<&str>) -> Problem {
        Problem {
            kind: format!("/api/docs#problem-{code}"),
            title: title.to_string(),
            status,
            code: code.to_string(),
            detail: detail.to_string(),
            pointer: pointer.map(str::to_string),
        }
    }
}

/// Schemas the derive cannot state with the limits above as constants.
#[cfg(feature = "openapi")]
pub mod schema {
    use crate::api::{MAX_PROPERTIES, MAX_PROPERTY_KEY, MAX_PROPERTY_VALUE_BYTES, problem};
    use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

    fn scalar(max_length: Option<usize>) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Number, Type::Boolean, Type::Null]))
            .max_length(max_length)
    }

    fn code_names() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z][A-Za-z0-9_]*$"))
            .max_length(Some(MAX_PROPERTY_KEY))
            .build()
    }

    pub fn event_properties() -> Object {
        ObjectBuilder::new()
            .description(Some(
                "Flat properties of the event (patient data: stored encrypted, never echoed). Names are codes: \
                 letters, digits and `_`, starting with a letter. Values are strings, numbers, booleans or null.",
            ))
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .max_properties(Some(MAX_PROPERTIES))
            .property_names(Some(code_names()))
            .additional_properties(Some(scalar(Some(MAX_PROPERTY_VALUE_BYTES))))
            .build()
    }

    pub fn message_data() -> Object {
        ObjectBuilder::new()
            .description(Some(
                "Flat merge data for this message (patient data: stored encrypted, never echoed), used in the \
                 template as `{{message.<name>}}` (a name the data lacks renders empty; `{{date message.<name> \"%B %-d, %Y\"}}` \
                 formats an ISO 8601 date or time in the contact's zone). Names are codes: letters, digits and `_`, starting \
                 with a letter. Values are strings, numbers, booleans or null.",
            ))
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .max_properties(Some(MAX_PROPERTIES))
            .property_names(Some(code_names()))
            .additional_properties(Some(scalar(Some(MAX_PROPERTY_VALUE_BYTES))))
            .build()
    }

    pub fn contact_fields() -> Object {
        ObjectBuilder::new()
            .description(Some(
                "Field key → value: the standard fields `first_name`, `last_name`, `phone`, `date_of_birth` \
                 (YYYY-MM-DD), `time_zone` (e.g. `America/Chicago`), `locale` (e.g. `en-US`) and your \
                 organisation's custom fields (Settings → Fields). A value is a string, number or boolean; \
                 `null` clears the field; fields not sent are kept.",
            ))
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .max_properties(Some(super::MAX_UPSERT_FIELDS))
            .property_names(Some(code_names()))
            .additional_properties(Some(scalar(None)))
            .build()
    }

    /// Every stable problem code.
    pub fn problem_code() -> Object {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(problem::ALL.iter().map(|p| p.code))).build()
    }
}
