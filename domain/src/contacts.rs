//! Contacts (patients): field definitions, value parsing and validation, consent and suppression
//! vocabulary. Pure rules shared by the server and the UI.
//!
//! PHI values appear here only inside `Phi<…>`; error messages name fields, never values.

use crate::DomainError;
use crate::phi::Phi;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The type of a contact field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Number,
    Date,
    Boolean,
    /// One of a fixed list of options.
    OneOf,
}

impl FieldType {
    pub const ALL: [FieldType; 5] =
        [FieldType::Text, FieldType::Number, FieldType::Date, FieldType::Boolean, FieldType::OneOf];
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
            FieldType::OneOf => "one_of",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            FieldType::Text => "Text",
            FieldType::Number => "Number",
            FieldType::Date => "Date",
            FieldType::Boolean => "Yes / no",
            FieldType::OneOf => "One of a list",
        }
    }
}

/// Fields every contact has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinField {
    Email,
    FirstName,
    LastName,
    Phone,
    DateOfBirth,
    TimeZone,
    Locale,
}

impl BuiltinField {
    pub const ALL: [BuiltinField; 7] = [
        BuiltinField::Email,
        BuiltinField::FirstName,
        BuiltinField::LastName,
        BuiltinField::Phone,
        BuiltinField::DateOfBirth,
        BuiltinField::TimeZone,
        BuiltinField::Locale,
    ];
    pub fn key(self) -> &'static str {
        match self {
            BuiltinField::Email => "email",
            BuiltinField::FirstName => "first_name",
            BuiltinField::LastName => "last_name",
            BuiltinField::Phone => "phone",
            BuiltinField::DateOfBirth => "date_of_birth",
            BuiltinField::TimeZone => "time_zone",
            BuiltinField::Locale => "locale",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            BuiltinField::Email => "Email",
            BuiltinField::FirstName => "First name",
            BuiltinField::LastName => "Last name",
            BuiltinField::Phone => "Phone",
            BuiltinField::DateOfBirth => "Date of birth",
            BuiltinField::TimeZone => "Time zone",
            BuiltinField::Locale => "Language",
        }
    }
    /// PHI fields are sealed at rest and only decrypted for an audited read. Time zone and locale
    /// identify no one and stay plain so sending can schedule by local time.
    pub fn is_phi(self) -> bool {
        !matches!(self, BuiltinField::TimeZone | BuiltinField::Locale)
    }
    pub fn field_type(self) -> FieldType {
        match self {
            BuiltinField::DateOfBirth => FieldType::Date,
            _ => FieldType::Text,
        }
    }
    pub fn from_key(k: &str) -> Option<Self> {
        BuiltinField::ALL.into_iter().find(|f| f.key() == k)
    }
}

/// An organisation-defined field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: uuid::Uuid,
    /// Merge-field name: lower-case letters, digits and underscores.
    pub key: String,
    pub label: String,
    pub field_type: FieldType,
    /// Allowed values for `OneOf`.
    pub options: Vec<String>,
    pub is_phi: bool,
}

pub const MAX_CUSTOM_FIELDS: usize = 100;
pub const MAX_TEXT_LEN: usize = 2000;
pub const MAX_OPTIONS: usize = 100;

/// Check a custom field definition (key shape, not a built-in name, options for one-of).
pub fn validate_field_def(
    key: &str,
    label: &str,
    field_type: FieldType,
    options: &[String],
) -> Result<(), DomainError> {
    let ok_key = !key.is_empty()
        && key.len() <= 40
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_key {
        return Err(DomainError::invalid("key", "must start with a letter and use only a-z, 0-9 and _ (at most 40)"));
    }
    if BuiltinField::from_key(key).is_some()
        || matches!(key, "id" | "unsubscribe_url" | "view_in_browser_url" | "preferences_url")
    {
        return Err(DomainError::invalid("key", "is reserved for a built-in field"));
    }
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(DomainError::invalid("label", "must be 1 to 100 printable characters"));
    }
    if field_type == FieldType::OneOf {
        if options.is_empty() || options.len() > MAX_OPTIONS {
            return Err(DomainError::invalid("options", format!("a one-of field needs 1 to {MAX_OPTIONS} options")));
        }
        let mut seen = std::collections::HashSet::new();
        for o in options {
            let t = o.trim();
            if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
                return Err(DomainError::invalid("options", "each option must be 1 to 100 printable characters"));
            }
            if !seen.insert(t.to_lowercase()) {
                return Err(DomainError::invalid("options", "options must differ"));
            }
        }
    } else if !options.is_empty() {
        return Err(DomainError::invalid("options", "only one-of fields have options"));
    }
    Ok(())
}

/// A typed field value. Dates are calendar dates (no time zone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FieldValue {
    Text(String),
    Number(f64),
    Date(NaiveDate),
    Boolean(bool),
}

impl FieldValue {
    /// The value as a person would type it back (for forms and export).
    pub fn display(&self) -> String {
        match self {
            FieldValue::Text(s) => s.clone(),
            FieldValue::Number(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    format!("{}", *n as i64)
                } else {
                    n.to_string()
                }
            }
            FieldValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            FieldValue::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
        }
    }
}

/// Accepted date forms: ISO `YYYY-MM-DD`, US `M/D/YYYY`, and `YYYY/MM/DD`.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let t = raw.trim();
    for fmt in ["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, fmt)
            && (1850..=2200).contains(&chrono::Datelike::year(&d))
        {
            return Some(d);
        }
    }
    None
}

fn clean_text(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim();
    if t.chars().count() > MAX_TEXT_LEN {
        return Err("is too long");
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("contains control characters");
    }
    Ok(t.to_string())
}

/// Parse what someone typed (or a CSV cell) into a value of `field_type`. Empty means "no value".
/// The error says what is wrong without repeating the value.
pub fn parse_value(field_type: FieldType, options: &[String], raw: &str) -> Result<Option<FieldValue>, &'static str> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    Ok(Some(match field_type {
        FieldType::Text => FieldValue::Text(clean_text(t)?),
        FieldType::Number => {
            let n: f64 = t.replace(',', "").parse().map_err(|_| "is not a number")?;
            if !n.is_finite() {
                return Err("is not a number");
            }
            FieldValue::Number(n)
        }
        FieldType::Date => FieldValue::Date(parse_date(t).ok_or("is not a date (use YYYY-MM-DD or MM/DD/YYYY)")?),
        FieldType::Boolean => FieldValue::Boolean(match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => true,
            "false" | "no" | "n" | "0" => false,
            _ => return Err("is not yes or no"),
        }),
        FieldType::OneOf => {
            let o =
                options.iter().find(|o| o.trim().eq_ignore_ascii_case(t)).ok_or("is not one of the allowed options")?;
            FieldValue::Text(o.trim().to_string())
        }
    }))
}

/// Normalise an email address for storage and for its blind index: trimmed, lower-cased, checked.
pub fn normalise_email(raw: &str) -> Result<String, &'static str> {
    crate::email::EmailAddress::parse(raw).map(|e| e.as_str().to_string()).map_err(|_| "is not a valid email address")
}

/// Phone numbers keep digits and a leading `+`; 7 to 15 digits (E.164 allows 15).
pub fn normalise_phone(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim();
    if !t.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) {
        return Err("is not a phone number");
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    if !(7..=15).contains(&digits.len()) {
        return Err("is not a phone number");
    }
    Ok(if t.starts_with('+') { format!("+{digits}") } else { digits })
}

/// IANA time zone names have a recognisable shape (`America/New_York`, `UTC`); the server checks the
/// name against the tz database.
pub fn looks_like_time_zone(raw: &str) -> bool {
    let t = raw.trim();
    !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
}

/// BCP 47 language tags such as `en`, `en-US`, `es-419`.
pub fn normalise_locale(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim().replace('_', "-");
    let parts: Vec<&str> = t.split('-').collect();
    let ok = !t.is_empty()
        && t.len() <= 35
        && parts[0].len() >= 2
        && parts[0].len() <= 3
        && parts[0].chars().all(|c| c.is_ascii_alphabetic())
        && parts[1..].iter().all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !ok {
        return Err("is not a language tag such as en or en-US");
    }
    let mut out = parts[0].to_ascii_lowercase();
    for p in &parts[1..] {
        out.push('-');
        out.push_str(&if p.len() == 2 { p.to_ascii_uppercase() } else { p.to_string() });
    }
    Ok(out)
}

/// Why someone consented (or withdrew).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    Marketing,
    CareCommunications,
    /// Messages a patient's own care or request calls for (an appointment confirmation), sent by
    /// an integration through `POST /api/v1/messages`. Unlike the others it needs no grant: only
    /// a withdrawal for it (or an unsubscribe from everything) or a suppression stops it
    /// ([`transactional_refusal`]).
    Transactional,
}

impl ConsentPurpose {
    pub const ALL: [ConsentPurpose; 3] =
        [ConsentPurpose::Marketing, ConsentPurpose::CareCommunications, ConsentPurpose::Transactional];
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentPurpose::Marketing => "marketing",
            ConsentPurpose::CareCommunications => "care_communications",
            ConsentPurpose::Transactional => "transactional",
        }
    }
    /// The purposes a campaign may send for (transactional mail is one patient's own, sent by
    /// an integration through the API).
    pub const FOR_CAMPAIGNS: [ConsentPurpose; 2] = [ConsentPurpose::Marketing, ConsentPurpose::CareCommunications];
    pub fn parse(s: &str) -> Option<Self> {
        ConsentPurpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            ConsentPurpose::Marketing => "Marketing",
            ConsentPurpose::CareCommunications => "Care communications",
            ConsentPurpose::Transactional => "Transactional",
        }
    }
}

/// Why a transactional message may not go to a contact now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionalRefusal {
    /// The address is on the suppression list (a hard bounce, a complaint, an unsubscribe, staff).
    Suppressed,
    /// The contact withdrew consent for transactional messages (directly, or by unsubscribing
    /// from everything).
    Withdrawn,
}

/// May a transactional message go to a contact? `suppressed`: the address is on the suppression
/// list; `consent`: the contact's current state for [`ConsentPurpose::Transactional`] (`None`
/// when nothing was ever recorded). Transactional mail answers the patient's own care or request,
/// so it needs no grant (a patient who never opted into marketing still gets an appointment
/// confirmation), but a suppression or a withdrawal always stops it. Checked when the API accepts
/// a message and again when it is sent.
pub fn transactional_refusal(suppressed: bool, consent: Option<bool>) -> Option<TransactionalRefusal> {
    match (suppressed, consent) {
        (true, _) => Some(TransactionalRefusal::Suppressed),
        (false, Some(false)) => Some(TransactionalRefusal::Withdrawn),
        (false, Some(true) | None) => None,
    }
}

/// Where a consent event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    Import,
    Form,
    Api,
    Admin,
    DoubleOptIn,
    Unsubscribe,
}

impl ConsentSource {
    pub const ALL: [ConsentSource; 6] = [
        ConsentSource::Import,
        ConsentSource::Form,
        ConsentSource::Api,
        ConsentSource::Admin,
        ConsentSource::DoubleOptIn,
        ConsentSource::Unsubscribe,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::Import => "import",
            ConsentSource::Form => "form",
            ConsentSource::Api => "api",
            ConsentSource::Admin => "admin",
            ConsentSource::DoubleOptIn => "double_opt_in",
            ConsentSource::Unsubscribe => "unsubscribe",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        ConsentSource::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The patient acted themself: a link in a message they received (unsubscribe, preferences
    /// page) or a double opt-in confirmation they clicked. Imports, staff and integrations act
    /// for the patient; only the patient's own grant can lift a withdrawal.
    pub fn is_patients_own(self) -> bool {
        matches!(self, ConsentSource::Form | ConsentSource::DoubleOptIn | ConsentSource::Unsubscribe)
    }
    pub fn label(self) -> &'static str {
        match self {
            ConsentSource::Import => "import",
            ConsentSource::Form => "the patient's preferences page",
            ConsentSource::Api => "an integration",
            ConsentSource::Admin => "staff",
            ConsentSource::DoubleOptIn => "the patient's double opt-in confirmation",
            ConsentSource::Unsubscribe => "the patient's unsubscribe link",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    Unsubscribed,
    HardBounce,
    Complaint,
    Manual,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::Unsubscribed,
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Manual,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        SuppressionReason::ALL.into_iter().find(|p| p.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "Unsubscribed",
            SuppressionReason::HardBounce => "Hard bounce",
            SuppressionReason::Complaint => "Spam complaint",
            SuppressionReason::Manual => "Blocked by staff",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Waiting for the double opt-in confirmation.
    Pending,
    Subscribed,
    Unsubscribed,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Subscribed => "subscribed",
            MemberStatus::Unsubscribed => "unsubscribed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [MemberStatus::Pending, MemberStatus::Subscribed, MemberStatus::Unsubscribed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Neutralise spreadsheet formula injection: a cell that a spreadsheet would evaluate (starting with
/// `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with a single quote.
pub fn neutralise_csv_cell(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { Cow::Owned(format!("'{s}")) } else { Cow::Borrowed(s) }
}

/// One row of the contacts table: decrypted for display (an audited read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactRow {
    pub id: uuid::Uuid,
    pub email: Phi<String>,
    pub name: Phi<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Current consent per purpose on record (a purpose without a row has none on record).
    #[serde(default)]
    pub consent: Vec<RowConsent>,
    /// The contact's lists with their status as every view shows it.
    #[serde(default)]
    pub lists: Vec<RowList>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowConsent {
    pub purpose: ConsentPurpose,
    pub granted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowList {
    pub name: String,
    pub status: MemberStatus,
}

/// How the contacts table is ordered: by non-PHI columns only (PHI is sealed, so the database
/// cannot order by it, and sorting by decrypting everyone would read every patient's PHI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactSort {
    #[default]
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    UpdatedAsc,
}

impl ContactSort {
    pub const ALL: [ContactSort; 4] =
        [ContactSort::CreatedDesc, ContactSort::CreatedAsc, ContactSort::UpdatedDesc, ContactSort::UpdatedAsc];
    pub fn as_str(self) -> &'static str {
        match self {
            ContactSort::CreatedDesc => "created_desc",
            ContactSort::CreatedAsc => "created_asc",
            ContactSort::UpdatedDesc => "updated_desc",
            ContactSort::UpdatedAsc => "updated_asc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        ContactSort::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            ContactSort::CreatedDesc => "Newest first",
            ContactSort::CreatedAsc => "Oldest first",
            ContactSort::UpdatedDesc => "Recently updated first",
            ContactSort::UpdatedAsc => "Least recently updated first",
        }
    }
}

/// A filter on the consent state for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentFilter {
    Granted,
    Withdrawn,
    /// No consent decision on record for the purpose.
    #[serde(rename = "none")]
    NoneRecorded,
}

impl ConsentFilter {
    pub const ALL: [ConsentFilter; 3] = [ConsentFilter::Granted, ConsentFilter::Withdrawn, ConsentFilter::NoneRecorded];
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentFilter::Granted => "granted",
            ConsentFilter::Withdrawn => "withdrawn",
            ConsentFilter::NoneRecorded => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        ConsentFilter::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            ConsentFilter::Granted => "granted",
            ConsentFilter::Withdrawn => "withdrawn",
            ConsentFilter::NoneRecorded => "none on record",
        }
    }
}

/// What the contacts table shows: filters (non-PHI, plus the exact email search) and the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactQuery {
    pub email: Option<String>,
    pub list: Option<uuid::Uuid>,
    pub consent: Option<(ConsentPurpose, ConsentFilter)>,
    pub sort: ContactSort,
}

/// A page of contacts, newest first (keyset pagination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPage {
    pub rows: Vec<ContactRow>,
    pub total: i64,
    /// Pass back as `after` for the next page.
    pub next: Option<String>,
}

/// A contact's fields as key → display string (built-in and custom), in and out of forms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactInput {
    pub fields: std::collections::BTreeMap<String, Phi<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListMembership {
    pub list_id: uuid::Uuid,
    pub list_name: String,
    /// As every view shows it: unsubscribed when taken off the list or when consent for the
    /// list's purpose is withdrawn.
    pub status: MemberStatus,
    /// Unsubscribed because consent for the list's purpose is withdrawn (not taken off the list).
    #[serde(default)]
    pub consent_withdrawn: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentEntry {
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub source: ConsentSource,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub actor_email: Option<String>,
    pub text_hash: Option<String>,
    /// Whether the event changed the current state. A grant recorded by an import, staff or an
    /// integration after the patient withdrew stays in the history but is not applied.
    pub effective: bool,
}

/// A withdrawal of consent in force for a purpose: it holds until the patient consents again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub purpose: ConsentPurpose,
    pub withdrawn_at: chrono::DateTime<chrono::Utc>,
    /// Where the withdrawal came from (unknown for rows older than this record).
    pub source: Option<ConsentSource>,
}

/// The answer to recording a consent decision: whether it changed the current state, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentOutcome {
    pub applied: bool,
    pub message: String,
}

/// Everything the contact page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactDetail {
    pub id: uuid::Uuid,
    pub fields: ContactInput,
    pub lists: Vec<ListMembership>,
    pub consent: Vec<ConsentEntry>,
    /// Current answer of "may we mail this contact for …" per purpose.
    pub mailable: Vec<(ConsentPurpose, bool, String)>,
    /// Withdrawals in force: only the patient can lift them.
    pub withdrawals: Vec<Withdrawal>,
    pub suppressed: Option<SuppressionReason>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListView {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: String,
    pub double_opt_in: bool,
    pub purpose: ConsentPurpose,
    pub subscribed: i64,
    pub pending: i64,
    pub unsubscribed: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuppressionView {
    /// Opaque reference (hex of the blind index prefix) — the address itself is not shown here.
    pub reference: String,
    pub reason: SuppressionReason,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub contact_id: Option<uuid::Uuid>,
}

/// A withdrawal of consent in force, for the suppression page: who (a contact, or the opaque
/// reference of a deleted contact's address), which purpose, since when, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeView {
    pub contact_id: Option<uuid::Uuid>,
    /// For a deleted contact: the reference of the address (prefix of its blind index).
    pub reference: Option<String>,
    pub purpose: ConsentPurpose,
    pub withdrawn_at: chrono::DateTime<chrono::Utc>,
    pub source: Option<ConsentSource>,
}

impl fmt::Display for ConsentPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn transactional_mail_needs_no_grant_but_stops_at_a_withdrawal_or_suppression() {
        use TransactionalRefusal::*;
        // Never asked: a patient who did not opt into marketing still gets the confirmation.
        assert_eq!(transactional_refusal(false, None), None);
        assert_eq!(transactional_refusal(false, Some(true)), None);
        assert_eq!(transactional_refusal(false, Some(false)), Some(Withdrawn));
        // Suppression wins over everything, a grant included.
        for consent in [None, Some(true), Some(false)] {
            assert_eq!(transactional_refusal(true, consent), Some(Suppressed));
        }
        assert_eq!(ConsentPurpose::parse("transactional"), Some(ConsentPurpose::Transactional));
        assert_eq!(ConsentPurpose::Transactional.label(), "Transactional");
        for p in ConsentPurpose::ALL {
            assert_eq!(ConsentPurpose::parse(p.as_str()), Some(p));
        }
    }

    use super::*;

    #[test]
    fn table_query_names_are_the_wire_names() {
        for f in ConsentFilter::ALL {
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
            assert_eq!(ConsentFilter::parse(f.as_str()), Some(f));
        }
        for s in ContactSort::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(ContactSort::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn values_parse_by_type_without_echoing_input() {
        assert_eq!(parse_value(FieldType::Number, &[], " 1,234.5 ").unwrap(), Some(FieldValue::Number(1234.5)));
        assert!(parse_value(FieldType::Number, &[], "NaN").is_err());
        assert!(parse_value(FieldType::Number, &[], "inf").is_err());
        assert_eq!(
            parse_value(FieldType::Date, &[], "03/04/1980").unwrap(),
            Some(FieldValue::Date(NaiveDate::from_ymd_opt(1980, 3, 4).unwrap()))
        );
        assert!(parse_value(FieldType::Date, &[], "1980-02-30").is_err());
        assert!(parse_value(FieldType::Date, &[], "0001-01-01").is_err());
        assert_eq!(parse_value(FieldType::Boolean, &[], "Yes").unwrap(), Some(FieldValue::Boolean(true)));
        let opts = vec!["Gold".to_string(), "Silver".to_string()];
        assert_eq!(parse_value(FieldType::OneOf, &opts, "gold").unwrap(), Some(FieldValue::Text("Gold".into())));
        let e = parse_value(FieldType::OneOf, &opts, "Secret Value").unwrap_err();
        assert!(!e.contains("Secret"));
        assert_eq!(parse_value(FieldType::Text, &[], "   ").unwrap(), None);
        assert!(parse_value(FieldType::Text, &[], "a\u{0}b").is_err());
    }

    #[test]
    fn normalisers() {
        assert_eq!(normalise_email(" Jane.Doe@Example.ORG").unwrap(), "jane.doe@example.org");
        assert_eq!(normalise_phone("+1 (555) 010-2030").unwrap(), "+15550102030");
        assert!(normalise_phone("call me").is_err());
        assert!(normalise_phone("123").is_err());
        assert_eq!(normalise_locale("en_us").unwrap(), "en-US");
        assert!(normalise_locale("english please").is_err());
        assert!(looks_like_time_zone("America/New_York"));
        assert!(!looks_like_time_zone("Europe/Lon don"));
    }

    #[test]
    fn field_definitions() {
        assert!(
            validate_field_def("insurance_tier", "Insurance tier", FieldType::OneOf, &["A".into(), "B".into()]).is_ok()
        );
        assert!(validate_field_def("email", "Email", FieldType::Text, &[]).is_err());
        assert!(validate_field_def("Bad Key", "x", FieldType::Text, &[]).is_err());
        assert!(validate_field_def("tier", "Tier", FieldType::OneOf, &[]).is_err());
        assert!(validate_field_def("tier", "Tier", FieldType::OneOf, &["a".into(), "A".into()]).is_err());
        assert!(validate_field_def("note", "Note", FieldType::Text, &["x".into()]).is_err());
    }

    #[test]
    fn formula_injection_is_neutralised() {
        for bad in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralise_csv_cell(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(neutralise_csv_cell("Jane"), "Jane");
    }
}

/// What to do with a row whose email already belongs to a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedupe {
    /// Overwrite the fields present in the file (empty cells keep the stored value).
    Update,
    /// Leave the existing contact untouched.
    Skip,
}

impl Dedupe {
    pub fn as_str(self) -> &'static str {
        match self {
            Dedupe::Update => "update",
            Dedupe::Skip => "skip",
        }
    }
}

/// The choices made on the mapping screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOptions {
    /// For each column of the file, the field it fills (None: ignore the column).
    pub mapping: Vec<Option<String>>,
    pub dedupe: Dedupe,
    pub list_ids: Vec<uuid::Uuid>,
    /// When set, every imported contact gets a consent grant for this purpose (source: import).
    pub consent_purpose: Option<ConsentPurpose>,
    /// The consent wording the contacts agreed to (only its hash is kept).
    pub consent_text: Option<String>,
}

/// A field the mapping screen offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChoice {
    pub key: String,
    pub label: String,
    pub is_phi: bool,
}

/// The first rows of an uploaded file, for the mapping screen (an audited PHI read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPreview {
    pub import_id: uuid::Uuid,
    pub headers: Vec<Phi<String>>,
    pub rows: Vec<Vec<Phi<String>>>,
    /// A guess of the field for each column, from its header.
    pub suggested: Vec<Option<String>>,
    pub fields: Vec<FieldChoice>,
    /// What separates the columns, in words ("commas", "semicolons", "tabs"), as detected.
    #[serde(default)]
    pub delimiter: String,
}

/// An import's state and counts for the progress bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportView {
    pub id: uuid::Uuid,
    pub status: String,
    pub file_bytes: i64,
    pub bytes_done: i64,
    pub rows_done: i64,
    pub rows_created: i64,
    pub rows_updated: i64,
    pub rows_skipped: i64,
    pub rows_failed: i64,
    /// Rows whose contact had withdrawn consent for the import's purpose: the import's grant was
    /// recorded but did not apply (only the patient can consent again).
    #[serde(default)]
    pub rows_kept_withdrawn: i64,
    pub failure: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl ImportView {
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled" | "expired")
    }
    /// Progress 0..=100 by bytes read.
    pub fn percent(&self) -> u8 {
        if self.status == "completed" {
            return 100;
        }
        if self.file_bytes <= 0 {
            return 0;
        }
        ((self.bytes_done.max(0) * 100) / self.file_bytes).clamp(0, 100) as u8
    }
}

/// Guess which field a column header names.
pub fn guess_field(header: &str, custom: &[CustomField]) -> Option<String> {
    let h: String = header.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let builtin = match h.as_str() {
        "email" | "emailaddress" | "mail" | "eml" => Some("email"),
        "firstname" | "first" | "givenname" | "forename" => Some("first_name"),
        "lastname" | "last" | "surname" | "familyname" => Some("last_name"),
        "phone" | "phonenumber" | "mobile" | "cell" | "cellphone" | "telephone" | "tel" => Some("phone"),
        "dob" | "dateofbirth" | "birthdate" | "birthday" => Some("date_of_birth"),
        "timezone" | "tz" => Some("time_zone"),
        "locale" | "language" | "lang" => Some("locale"),
        _ => None,
    };
    if let Some(b) = builtin {
        return Some(b.to_string());
    }
    custom
        .iter()
        .find(|f| {
            let k: String = f.key.chars().filter(|c| c.is_alphanumeric()).collect();
            let l: String = f.label.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
            k == h || l == h
        })
        .map(|f| f.key.clone())
}

/// A patient event on a contact's page: what and when (its properties are opened on request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientEventView {
    pub id: uuid::Uuid,
    pub event_type: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub has_properties: bool,
}
