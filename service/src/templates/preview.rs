//! Previews: the editor's preview pane and frame (synthetic data, or a real contact as an audited
//! PHI read), and the public view-in-browser page (only for messages without PHI fields).

use super::merge::{contact_json, field_json, merge_data, organisation_name, synthetic_contact, with_samples};
use super::sandbox::MergeFields;
use super::store::{compiled, prepare, template_exists};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::{self, fields, record};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::links::{self, LinkKind, LinkSubject};
use crate::services::Services;
use domain::audit::AuditAction;
use domain::contacts::CustomField;
use domain::template_views::{PreviewSample, PreviewView, TemplateContent};
use domain::{Permission, Phi};
use serde_json::Value as Json;
use uuid::Uuid;

/// The merge data of a preview: synthetic, or a real contact (an audited PHI read).
async fn sample_data(
    svc: &Services,
    actor: &Actor,
    template: Uuid,
    catalogue: &[CustomField],
    fields: &MergeFields,
    sample: PreviewSample,
) -> ServiceResult<Phi<Json>> {
    let org = actor.organisation_id;
    match sample {
        PreviewSample::Synthetic => Ok(Phi::new(synthetic_contact(catalogue))),
        PreviewSample::Contact(contact) => {
            actor.require(Permission::ContactsRead)?;
            db::one(
                svc.db(),
                "SELECT 1 AS x FROM contact WHERE id = $1 AND organisation_id = $2",
                [contact.into(), org.0.into()],
            )
            .await?
            .ok_or(ServiceError::NotFound)?;
            audit::record_now(
                svc,
                AuditRecord::by(actor, AuditAction::TemplatePreviewedForContact)
                    .target("contact", contact)
                    .detail("template_id", template.to_string()),
            )
            .await?;
            let (rec, _, _) = contacts::load(svc, svc.db(), org, contact, catalogue).await?;
            Ok(contact_json(&rec, fields))
        }
    }
}

/// A preview document for the editor's frame.
pub struct FrameDocument {
    pub html: String,
    /// Made-up data: remote images may load. With a real contact's data nothing remote may load
    /// (the edge serves it under a policy that allows only inline styles and `data:` images), so
    /// opening a preview tells no outside server anything about the patient.
    pub remote_content: bool,
}

/// The HTML of a stored version rendered for the preview frame (served on its own URL with a
/// sandboxing CSP, so the admin app's policy stays strict).
pub async fn preview_frame(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
    version: i32,
    sample: PreviewSample,
) -> ServiceResult<FrameDocument> {
    actor.require(Permission::TemplatesRead)?;
    let org = actor.organisation_id;
    let version_id: Uuid = db::one_as::<db::Id, _>(
        svc.db(),
        "SELECT v.id FROM template_version v JOIN template t ON t.id = v.template_id
         WHERE v.template_id = $1 AND v.organisation_id = $2 AND v.version = $3 AND t.archived_at IS NULL",
        [id.into(), org.0.into(), version.into()],
    )
    .await?
    .map(|r| r.id)
    .ok_or(ServiceError::NotFound)?;
    let c = compiled(svc, org, version_id).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    let contact = sample_data(svc, actor, id, &catalogue, &fields, sample).await?;
    let user = actor.user_id().map(|u| u.0).unwrap_or_default();
    let links = links::links_json(svc, org, LinkSubject::Test { user, message: id }, svc.clock().now()).await?;
    let org_name = organisation_name(svc, org).await?;
    // `message.*` / `event.*` get made-up values: a preview has no message or event behind it.
    let data = with_samples(merge_data(contact.into_inner(), &org_name, links), &c.checked);
    let r = svc.templates().sandbox.render(&c.checked, data)?;
    Ok(FrameDocument { html: r.html.into_inner(), remote_content: matches!(sample, PreviewSample::Synthetic) })
}

/// Render the editor's current (possibly unsaved) content for the preview pane. With a real sample
/// contact this is an audited PHI read; the links in a preview are test links that change nothing.
pub async fn preview(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
    content: TemplateContent,
    sample: PreviewSample,
) -> ServiceResult<PreviewView> {
    actor.require(Permission::TemplatesRead)?;
    let org = actor.organisation_id;
    template_exists(svc, org, id).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    let p = prepare(svc, &content, &fields)?;
    let contact = sample_data(svc, actor, id, &catalogue, &fields, sample).await?;
    let user = actor.user_id().map(|u| u.0).unwrap_or_default();
    let links = links::links_json(svc, org, LinkSubject::Test { user, message: id }, svc.clock().now()).await?;
    let org_name = organisation_name(svc, org).await?;
    let data = with_samples(merge_data(contact.into_inner(), &org_name, links), &p.checked);
    let r = svc.templates().sandbox.render(&p.checked, data)?;
    Ok(PreviewView {
        subject: r.subject,
        preheader: r.preheader,
        html: r.html,
        text: r.text,
        uses_phi: p.checked.uses_phi,
    })
}

/// The page behind a "view in browser" link.
pub enum BrowserView {
    /// The message, rendered again (nothing rendered is stored).
    Message { subject: String, html: String },
    /// The message uses PHI fields: it is only shown in the recipient's email app.
    Protected,
}

/// Render the message behind a view-in-browser token. Only messages without PHI fields are shown:
/// a link can be forwarded, and a browser page must not disclose health information.
pub async fn view_in_browser(svc: &Services, token: &str) -> ServiceResult<BrowserView> {
    let now = svc.clock().now();
    let claims = links::open(svc, LinkKind::ViewInBrowser, token, now).await?;
    let org = claims.organisation;
    let (message, contact) = match claims.subject {
        LinkSubject::Contact { contact, message } => (message, Some(contact)),
        LinkSubject::Test { message, .. } => (message, None),
    };
    // `message` is a template id (test sends, previews), a template version id, or a campaign
    // delivery (campaign sends: the campaign's pinned version).
    let version_id = match db::one_as::<db::Id, _>(
        svc.db(),
        "SELECT v.id FROM template_version v JOIN template t ON t.id = v.template_id
         WHERE v.organisation_id = $2 AND (v.id = $1 OR (t.id = $1 AND v.version = t.latest_version))
         UNION ALL
         SELECT c.template_version_id FROM delivery d JOIN campaign c ON c.id = d.campaign_id
         WHERE d.id = $1 AND d.organisation_id = $2 AND c.template_version_id IS NOT NULL
         LIMIT 1",
        [message.into(), org.0.into()],
    )
    .await?
    {
        Some(r) => r.id,
        None => return Err(ServiceError::NotFound),
    };
    let c = compiled(svc, org, version_id).await?;
    if c.checked.uses_phi {
        return Ok(BrowserView::Protected);
    }
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    // Only non-PHI fields can appear (the template uses none): no contact is decrypted.
    let contact_data = match contact {
        None => synthetic_contact(&catalogue),
        Some(contact) => {
            #[derive(sea_orm::FromQueryResult)]
            struct Plain {
                time_zone: Option<String>,
                locale: Option<String>,
                attrs: Json,
            }
            let r = db::one_as::<Plain, _>(
                svc.db(),
                "SELECT time_zone, locale, attrs FROM contact WHERE id = $1 AND organisation_id = $2",
                [contact.into(), org.0.into()],
            )
            .await?
            .ok_or(ServiceError::NotFound)?;
            let mut m = serde_json::Map::new();
            for f in fields.fields() {
                m.insert(f.key.clone(), Json::Null);
            }
            m.insert("time_zone".into(), r.time_zone.map(Json::from).unwrap_or(Json::Null));
            m.insert("locale".into(), r.locale.map(Json::from).unwrap_or(Json::Null));
            for (k, v) in record::attrs_from_json(&r.attrs, &catalogue) {
                m.insert(k, field_json(&v));
            }
            Json::Object(m)
        }
    };
    let links = links::links_json(svc, org, claims.subject, now).await?;
    let org_name = organisation_name(svc, org).await?;
    let r = svc.templates().sandbox.render(&c.checked, merge_data(contact_data, &org_name, links))?;
    Ok(BrowserView::Message { subject: r.subject.into_inner(), html: r.html.into_inner() })
}
