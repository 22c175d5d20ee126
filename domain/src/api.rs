//! The machine interface (`/api/v1`): API-key scopes and the permissions they grant, the shape of
//! a key's secret, the `Hermetic-Signature` header, event type codes and the stable problem codes
//! an integration engine can branch on. Pure: hashing and HMAC live in `service::api`.

use crate::access::Permission;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub mod wire;

/// What a key may do. Each scope grants exactly one permission; the service layer's
/// `actor.require(..)` decides for keys as it does for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    #[serde(rename = "contacts:read")]
    ContactsRead,
    #[serde(rename = "messages:send")]
    MessagesSend,
    #[serde(rename = "reports:read")]
    ReportsRead,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::EventsWrite, Scope::ContactsWrite, Scope::ContactsRead, Scope::MessagesSend, Scope::ReportsRead];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::ContactsWrite => "contacts:write",
            Scope::ContactsRead => "contacts:read",
            Scope::MessagesSend => "messages:send",
            Scope::ReportsRead => "reports:read",
        }
    }

    /// What the scope lets an integration do, in the words of the settings page.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::EventsWrite => "Record patient events and enrol contacts in live sequences",
            Scope::ContactsWrite => "Create and update contacts, lists and consent",
            Scope::ContactsRead => "Read contacts (each read is audited)",
            Scope::MessagesSend => "Send transactional messages",
            Scope::ReportsRead => "Read reports (figures only)",
        }
    }

    pub fn permission(self) -> Permission {
        match self {
            Scope::EventsWrite => Permission::EventsWrite,
            Scope::ContactsWrite => Permission::ContactsWrite,
            Scope::ContactsRead => Permission::ContactsRead,
            Scope::MessagesSend => Permission::MessagesSend,
            Scope::ReportsRead => Permission::ReportsRead,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| crate::DomainError::invalid("scopes", "is not a known scope"))
    }
}

/// What an administrator asks for on the API-keys page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub require_signature: bool,
}

/// A key as the settings page lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: uuid::Uuid,
    pub name: String,
    /// `hm_live_` and the secret's next four characters, to tell keys apart.
    pub shown_prefix: String,
    pub scopes: Vec<Scope>,
    pub require_signature: bool,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The administrator who created it.
    pub created_by: Option<String>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Past its expiry on the server's clock.
    pub expired: bool,
}

/// A new key's secrets, shown once to the administrator who created it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKeyView {
    pub id: uuid::Uuid,
    pub secret: String,
    pub signing_secret: Option<String>,
}

impl fmt::Debug for CreatedKeyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKeyView").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The permissions a set of scopes grants (an API key's actor holds exactly these).
pub fn permissions(scopes: &[Scope]) -> Vec<Permission> {
    let mut p: Vec<Permission> = scopes.iter().map(|s| s.permission()).collect();
    p.dedup();
    p
}

/// Every key's secret starts with this, so secret scanners (and people) recognise a leaked one.
pub const KEY_PREFIX: &str = "hm_live_";
/// Signing secrets (for `Hermetic-Signature`) start with this.
pub const SIGNING_PREFIX: &str = "hm_sign_";
/// Characters of the secret shown in lists to tell keys apart (`hm_live_` and four more).
pub const SHOWN_PREFIX_LEN: usize = KEY_PREFIX.len() + 4;

/// Whether a bearer token has the shape of a key: the prefix and 43 URL-safe base64 characters
/// (256 random bits). Anything else is refused before a database lookup.
pub fn is_key_shaped(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// How far a signed request's timestamp may be from the server's clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// A parsed `Hermetic-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` header (several `v1`
/// while a signing secret is being rolled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub signatures: Vec<[u8; 32]>,
}

/// Why a signature header was refused (never more detail than this goes to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Stale,
    Mismatch,
}

impl SignatureError {
    pub fn detail(self) -> &'static str {
        match self {
            SignatureError::Missing => "This key requires signed requests: send a Hermetic-Signature header.",
            SignatureError::Malformed => "The Hermetic-Signature header is not of the form t=<unix seconds>,v1=<hex>.",
            SignatureError::Stale => "The signature's timestamp is more than five minutes from the server's clock.",
            SignatureError::Mismatch => "The signature does not match the request body.",
        }
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl SignatureHeader {
    pub fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
        if header.len() > 1024 {
            return Err(SignatureError::Malformed);
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (k, v) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
            match k {
                "t" => {
                    if timestamp.is_some() || v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SignatureError::Malformed);
                    }
                    timestamp = v.parse::<i64>().ok();
                }
                "v1" => signatures.push(hex32(v).ok_or(SignatureError::Malformed)?),
                // Other schemes (a future v2) are ignored, as Stripe's clients do.
                _ => {}
            }
        }
        match (timestamp, signatures.is_empty()) {
            (Some(timestamp), false) => Ok(SignatureHeader { timestamp, signatures }),
            _ => Err(SignatureError::Malformed),
        }
    }

    /// Whether the timestamp is within the tolerance of `now` (either side: clocks drift).
    pub fn fresh(&self, now_unix: i64) -> bool {
        (now_unix - self.timestamp).abs() <= SIGNATURE_TOLERANCE_SECS
    }
}

/// The bytes a signature covers: `t + "." + raw body`.
pub fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{timestamp}.").into_bytes();
    v.extend_from_slice(body);
    v
}

/// A patient event type: a code like `appointment.booked` (lower-case letters, digits, `_` and
/// `.`, starting with a letter, at most 64), never free text — it is stored in plain.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.starts_with(|c: char| c.is_ascii_lowercase())
        && t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// Limits on one event's properties: count, key length, the size of one value and of the whole
/// object, and nesting (properties are flat: values are strings, numbers, booleans or null).
pub const MAX_PROPERTIES: usize = 50;
pub const MAX_PROPERTY_KEY: usize = 64;
pub const MAX_PROPERTY_VALUE_BYTES: usize = 2048;
pub const MAX_EVENTS_PER_BATCH: usize = 1000;
/// Nesting allowed anywhere in a request body (objects and arrays), checked before parsing. The
/// deepest legitimate body is a batch of events with their properties (4); deeper items inside the
/// bound are refused one by one (properties are flat), deeper bodies as a whole.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether a property name is acceptable (like a custom-field key: a code, not text).
pub fn valid_property_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_PROPERTY_KEY
        && k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The deepest nesting of objects and arrays in a JSON text, counted without parsing it (so a
/// hostile body cannot exhaust the parser's stack), or `None` when brackets do not balance.
pub fn json_depth(body: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    (depth == 0 && !in_string).then_some(max)
}

/// Stable problem codes (`code` in an `application/problem+json` body). Clients branch on these;
/// the human `detail` may change. [`problem::ALL`] lists each with its status and meaning: the
/// OpenAPI document and the API docs page (`/api/docs#problem-<code>`) are made from it.
pub mod problem {
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const BAD_SIGNATURE: &str = "bad_signature";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const INVALID_JSON: &str = "invalid_json";
    pub const TOO_DEEP: &str = "json_too_deep";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const INVALID_FIELD: &str = "invalid_field";
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    pub const UNKNOWN_CONTACT: &str = "unknown_contact";
    pub const UNKNOWN_TEMPLATE: &str = "unknown_template";
    pub const TEMPLATE_NOT_ALLOWED: &str = "template_not_allowed";
    pub const RECIPIENT_SUPPRESSED: &str = "recipient_suppressed";
    pub const CONSENT_WITHDRAWN: &str = "consent_withdrawn";
    pub const NO_SENDING_DOMAIN: &str = "no_sending_domain";
    pub const CONFLICT: &str = "conflict";
    pub const SEQUENCE_NOT_LIVE: &str = "sequence_not_live";
    pub const ALREADY_ENROLLED: &str = "already_enrolled";
    pub const IDEMPOTENCY_MISMATCH: &str = "idempotency_key_reused";
    pub const IDEMPOTENCY_KEY_INVALID: &str = "idempotency_key_invalid";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";

    /// A problem code, the HTTP status it comes with, and what it means for an integration.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Code {
        pub code: &'static str,
        pub status: u16,
        pub meaning: &'static str,
    }

    const fn c(code: &'static str, status: u16, meaning: &'static str) -> Code {
        Code { code, status, meaning }
    }

    pub const ALL: [Code; 24] = [
        c(
            UNAUTHENTICATED,
            401,
            "No API key, or one that is unknown, revoked or expired. Do not retry with the same key.",
        ),
        c(
            BAD_SIGNATURE,
            401,
            "The key requires signed requests and the Hermetic-Signature header is missing, malformed, more than five minutes from the server's clock, or does not match the body.",
        ),
        c(
            FORBIDDEN,
            403,
            "The key's scopes do not allow this request. Create a key with the scope the endpoint names.",
        ),
        c(NOT_FOUND, 404, "No such contact, message or sequence in your organisation (or no such API route)."),
        c(INVALID_JSON, 400, "The body is not UTF-8 JSON (in a batch: that item held bytes that are not UTF-8)."),
        c(TOO_DEEP, 400, "The body nests objects and arrays more than 32 deep."),
        c(BODY_TOO_LARGE, 413, "The body is over 1 MB (10 MB for a batch)."),
        c(UNSUPPORTED_MEDIA_TYPE, 415, "Send the body with Content-Type: application/json."),
        c(
            INVALID_FIELD,
            422,
            "A member has a value the API does not accept; pointer names it. Fix the request before retrying.",
        ),
        c(UNKNOWN_FIELD, 422, "A member that is not part of the API; pointer names the object that holds it."),
        c(
            UNKNOWN_CONTACT,
            422,
            "No contact of your organisation has this id, or no contact has this address and the key may not create contacts (contacts:write).",
        ),
        c(UNKNOWN_TEMPLATE, 422, "No template of your organisation has this id, or it has no saved version yet."),
        c(
            TEMPLATE_NOT_ALLOWED,
            422,
            "The template uses merge fields this kind of message has no data for: {{event.…}} (the properties of the event that started a sequence) exists only in sequence emails. Choose a template without them.",
        ),
        c(
            RECIPIENT_SUPPRESSED,
            422,
            "The contact's address is on your suppression list (a hard bounce, a complaint, an unsubscribe): nothing is sent.",
        ),
        c(
            CONSENT_WITHDRAWN,
            422,
            "The contact withdrew consent for transactional messages (or unsubscribed from everything): nothing is sent.",
        ),
        c(
            NO_SENDING_DOMAIN,
            422,
            "Your organisation has no verified sending domain to send from: an administrator adds and verifies one under Settings → Sending domains.",
        ),
        c(CONFLICT, 409, "The request conflicts with a change made at the same moment. Retry it."),
        c(
            SEQUENCE_NOT_LIVE,
            409,
            "The sequence admits nobody now: it is a draft that was never published, paused or archived. Nothing was changed; retry once someone in your organisation makes it live.",
        ),
        c(
            ALREADY_ENROLLED,
            409,
            "The sequence's entry rule does not admit this contact again (once ever, or one enrolment at a time and one is still active). Nothing was changed.",
        ),
        c(
            IDEMPOTENCY_MISMATCH,
            422,
            "This Idempotency-Key was already used with a different request in the last 24 hours.",
        ),
        c(
            IDEMPOTENCY_KEY_INVALID,
            400,
            "The Idempotency-Key header is not 1 to 255 printable ASCII characters, or is sent twice.",
        ),
        c(
            RATE_LIMITED,
            429,
            "The key has used its request budget. Wait the number of seconds in Retry-After, then retry.",
        ),
        c(UNAVAILABLE, 503, "Hermetic is briefly unavailable. Retry with backoff."),
        c(INTERNAL, 500, "Something went wrong on our side; it has been logged. Retry with backoff."),
    ];

    /// The entry for a code.
    pub fn find(code: &str) -> Option<&'static Code> {
        ALL.iter().find(|c| c.code == code)
    }
}

/// An `Idempotency-Key` header value: printable ASCII, 1 to 255 characters (a UUID is typical).
pub fn valid_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_grant_one_permission_each() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert!("events:read".parse::<Scope>().is_err());
        assert!("EVENTS:WRITE".parse::<Scope>().is_err());
        assert_eq!(permissions(&[Scope::EventsWrite]), vec![Permission::EventsWrite]);
        let all: std::collections::BTreeSet<_> = Scope::ALL.iter().map(|s| s.permission() as u8).collect();
        assert_eq!(all.len(), Scope::ALL.len());
    }

    #[test]
    fn key_shape() {
        let good = format!("{KEY_PREFIX}{}", "a".repeat(43));
        assert!(is_key_shaped(&good));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}", "a".repeat(42))));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}", "a".repeat(44))));
        assert!(!is_key_shaped(&format!("hm_test_{}", "a".repeat(43))));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}é", "a".repeat(41))));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}+/", "a".repeat(41))));
        assert!(!is_key_shaped(""));
    }

    #[test]
    fn signature_header_parsing() {
        let sig = "ab".repeat(32);
        let h = SignatureHeader::parse(&format!("t=1700000000,v1={sig}")).unwrap();
        assert_eq!(h.timestamp, 1_700_000_000);
        assert_eq!(h.signatures, vec![[0xab; 32]]);
        let two = SignatureHeader::parse(&format!("t=1, v1={sig},v1={},v0=zz", "00".repeat(32))).unwrap();
        assert_eq!(two.signatures.len(), 2);
        for bad in [
            "".to_string(),
            "t=1".to_string(),
            format!("v1={sig}"),
            format!("t=abc,v1={sig}"),
            format!("t=-5,v1={sig}"),
            format!("t=1,t=2,v1={sig}"),
            "t=1,v1=abc".to_string(),
            format!("t=1,v1={}", "zz".repeat(32)),
            format!("t=1;v1={sig}"),
            format!("t=1,v1={sig}{}", ",x=y".repeat(300)),
            format!("t=99999999999999,v1={sig}"),
        ] {
            assert_eq!(SignatureHeader::parse(&bad), Err(SignatureError::Malformed), "{bad}");
        }
    }

    #[test]
    fn freshness_is_five_minutes_either_side() {
        let h = SignatureHeader { timestamp: 1000, signatures: vec![] };
        assert!(h.fresh(1000));
        assert!(h.fresh(1300));
        assert!(h.fresh(700));
        assert!(!h.fresh(1301));
        assert!(!h.fresh(699));
        assert_eq!(signed_payload(12, b"{}"), b"12.{}".to_vec());
    }

    #[test]
    fn event_types_are_codes() {
        for ok in ["appointment.booked", "lab_result.ready", "a", "visit2.completed"] {
            assert!(valid_event_type(ok), "{ok}");
        }
        for bad in ["", "Appointment", "1a", ".a", "a b", "a-b", "ä", &"a".repeat(65), "a\n"] {
            assert!(!valid_event_type(bad), "{bad}");
        }
        assert!(valid_property_key("appointment_at"));
        for bad in ["", "_x", "a.b", "a-b", &"k".repeat(65), "名前"] {
            assert!(!valid_property_key(bad), "{bad}");
        }
    }

    #[test]
    fn depth_is_counted_without_parsing() {
        assert_eq!(json_depth(b"{}"), Some(1));
        assert_eq!(json_depth(br#"{"a":[{"b":"]]]}}}"}]}"#), Some(3));
        assert_eq!(json_depth(br#"{"a":"\"{{{"}"#), Some(1));
        assert_eq!(json_depth(b"1"), Some(0));
        assert_eq!(json_depth(&[b'['; 100_000]), None);
        let deep = format!("{}{}", "[".repeat(50), "]".repeat(50));
        assert_eq!(json_depth(deep.as_bytes()), Some(50));
        assert_eq!(json_depth(b"]["), None);
        assert_eq!(json_depth(b"{\"a\":\"open"), None);
    }

    #[test]
    fn every_problem_code_is_listed_once() {
        let codes: std::collections::BTreeSet<_> = problem::ALL.iter().map(|c| c.code).collect();
        assert_eq!(codes.len(), problem::ALL.len());
        for c in problem::ALL {
            assert!(c.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", c.code);
            assert!((400..600).contains(&c.status));
        }
        assert_eq!(problem::find("rate_limited").map(|c| c.status), Some(429));
    }

    #[test]
    fn idempotency_keys() {
        assert!(valid_idempotency_key("7f1c3c1e-0a7b-4c53-9a4e-1f0b8f3f9d11"));
        for bad in ["", " ", "a b", "é", &"k".repeat(256), "a\tb"] {
            assert!(!valid_idempotency_key(bad), "{bad:?}");
        }
    }
}
