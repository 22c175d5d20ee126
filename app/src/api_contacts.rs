//! Server functions for contacts, fields, lists, suppression, imports, double opt-in and the dev
//! mailbox. Thin edges: authorisation and auditing happen in `service`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::Phi;
use domain::contacts::{
    ConsentOutcome, ConsentPurpose, ContactDetail, ContactInput, ContactPage, CustomField, FieldType, ImportOptions,
    ImportPreview, ImportView, ListView, SuppressionReason, SuppressionView, UnsubscribeView,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "contacts_page")]
pub async fn contacts_page(after: Option<String>, email: Option<String>) -> Result<ContactPage, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::page(&svc, &actor, after, 50, email).await?)
}

/// A page of the contacts table: the exact email search, filters on list and consent, and the
/// order (non-PHI columns only; see `service::contacts::browse`).
#[server(client = CsrfClient, prefix = "/api", endpoint = "browse_contacts", input = Json)]
pub async fn browse_contacts(
    after: Option<String>,
    query: domain::contacts::ContactQuery,
) -> Result<ContactPage, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::browse::page(&svc, &actor, after, 50, &query).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "get_contact")]
pub async fn get_contact(id: Uuid) -> Result<ContactDetail, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::detail(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "contact_events")]
pub async fn contact_events(id: Uuid) -> Result<Vec<domain::contacts::PatientEventView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::events::timeline(&svc, &actor, id, 100).await?)
}

/// An event's properties (PHI; each opening is audited), as (name, value) pairs.
#[server(client = CsrfClient, prefix = "/api", endpoint = "event_properties")]
pub async fn event_properties(id: Uuid) -> Result<Vec<(String, String)>, AppError> {
    let (svc, actor) = ssr::actor()?;
    let props = service::events::properties(&svc, &actor, id).await?;
    Ok(props.into_iter().map(|(k, v)| (k, v.into_inner())).collect())
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_contact", input = Json)]
pub async fn create_contact(input: ContactInput) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::create(&svc, &actor, input).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "update_contact", input = Json)]
pub async fn update_contact(id: Uuid, input: ContactInput) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::update(&svc, &actor, id, input).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_contact")]
pub async fn delete_contact(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "record_consent")]
pub async fn record_consent(
    contact_id: Uuid,
    purpose: ConsentPurpose,
    granted: bool,
    consent_text: String,
) -> Result<ConsentOutcome, AppError> {
    let (svc, actor) = ssr::actor()?;
    let text = Some(consent_text.as_str()).filter(|t| !t.trim().is_empty());
    Ok(service::contacts::consent::record(&svc, &actor, contact_id, purpose, granted, text).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_fields")]
pub async fn list_fields() -> Result<Vec<CustomField>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::fields::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_field", input = Json)]
pub async fn create_field(
    key: String,
    label: String,
    field_type: FieldType,
    options: Vec<String>,
    is_phi: bool,
) -> Result<CustomField, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::fields::create(&svc, &actor, &key, &label, field_type, options, is_phi).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_field")]
pub async fn delete_field(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::fields::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_lists")]
pub async fn list_lists() -> Result<Vec<ListView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::lists::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_list")]
pub async fn create_list(
    name: String,
    description: String,
    #[server(default)] double_opt_in: bool,
    purpose: ConsentPurpose,
) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::lists::create(&svc, &actor, &name, &description, double_opt_in, purpose).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_list")]
pub async fn delete_list(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::lists::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "add_to_list", input = Json)]
pub async fn add_to_list(list_id: Uuid, contact_ids: Vec<Uuid>) -> Result<u64, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::lists::add(&svc, &actor, list_id, &contact_ids).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "unsubscribe_from_list")]
pub async fn unsubscribe_from_list(list_id: Uuid, contact_id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::lists::unsubscribe(&svc, &actor, list_id, contact_id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_suppressions")]
pub async fn list_suppressions() -> Result<Vec<SuppressionView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::suppression::list(&svc, &actor, 200).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_unsubscribes")]
pub async fn list_unsubscribes() -> Result<Vec<UnsubscribeView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::suppression::unsubscribes(&svc, &actor, 200).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "add_suppression")]
pub async fn add_suppression(email: Phi<String>, reason: SuppressionReason) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::suppression::add(&svc, &actor, email.expose(), reason).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "remove_suppression")]
pub async fn remove_suppression(reference: String) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::suppression::remove(&svc, &actor, &reference).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "preview_import")]
pub async fn preview_import(id: Uuid) -> Result<ImportPreview, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::import::preview(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "start_import", input = Json)]
pub async fn start_import(id: Uuid, options: ImportOptions) -> Result<ImportView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::import::start(&svc, &actor, id, options).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "import_status")]
pub async fn import_status(id: Uuid) -> Result<ImportView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::import::status(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "recent_imports")]
pub async fn recent_imports() -> Result<Vec<ImportView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::import::recent(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "cancel_import")]
pub async fn cancel_import(id: Uuid) -> Result<ImportView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::contacts::import::cancel(&svc, &actor, id).await?)
}

/// What the double opt-in page shows (no PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptInPageInfo {
    pub organisation_name: String,
    pub list_name: String,
    pub purpose: ConsentPurpose,
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "lookup_optin")]
pub async fn lookup_optin(token: domain::secret::Secret) -> Result<OptInPageInfo, AppError> {
    let svc = ssr::services()?;
    let i = service::contacts::lists::optin_info(&svc, token.expose()).await?;
    Ok(OptInPageInfo { organisation_name: i.organisation_name, list_name: i.list_name, purpose: i.purpose })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "confirm_optin")]
pub async fn confirm_optin(token: domain::secret::Secret) -> Result<OptInPageInfo, AppError> {
    let (svc, req) = (ssr::services()?, ssr::request()?);
    let i = service::contacts::lists::confirm_optin(&svc, token.expose(), req.ip.clone()).await?;
    Ok(OptInPageInfo { organisation_name: i.organisation_name, list_name: i.list_name, purpose: i.purpose })
}

/// A line of the dev mailbox's list (only recipient and subject are decrypted for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailSummary {
    pub id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub recipient: Phi<String>,
    pub subject: Phi<String>,
}

/// A page of the dev mailbox, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxPage {
    pub items: Vec<MailSummary>,
    pub page: u32,
    pub pages: u32,
    pub total: i64,
}

/// Messages per page of the dev mailbox.
pub const MAILBOX_PAGE_SIZE: u32 = 30;

/// One message captured by the dev mailbox, opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturedMail {
    pub id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub recipient: Phi<String>,
    pub subject: Phi<String>,
    pub raw: Phi<String>,
    /// The message's headers (To and others can hold PHI), decoded; its text part; whether it has HTML.
    pub headers: Phi<Vec<(String, String)>>,
    pub text: Phi<String>,
    pub has_html: bool,
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "dev_mailbox")]
pub async fn dev_mailbox(page: Option<u32>) -> Result<MailboxPage, AppError> {
    let (svc, actor) = ssr::actor()?;
    let page = page.unwrap_or(1).max(1);
    let (list, total) = service::mail::captured_page(&svc, &actor, page, MAILBOX_PAGE_SIZE).await?;
    let per = i64::from(MAILBOX_PAGE_SIZE);
    let pages = u32::try_from((total.max(1) + per - 1) / per).unwrap_or(u32::MAX);
    Ok(MailboxPage {
        items: list
            .into_iter()
            .map(|m| MailSummary { id: m.id, created_at: m.created_at, recipient: m.recipient, subject: m.subject })
            .collect(),
        page,
        pages,
        total,
    })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "dev_mail")]
pub async fn dev_mail(id: Uuid) -> Result<CapturedMail, AppError> {
    let (svc, actor) = ssr::actor()?;
    let m = service::mail::captured_one(&svc, &actor, id).await?;
    let parts = service::mail::mime::parse(m.raw.expose());
    Ok(CapturedMail {
        id: m.id,
        created_at: m.created_at,
        recipient: m.recipient,
        subject: m.subject,
        headers: Phi::new(parts.headers),
        text: Phi::new(parts.text.unwrap_or_default()),
        has_html: parts.html.is_some(),
        raw: m.raw,
    })
}
