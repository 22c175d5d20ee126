//! Templates and their versions: create (blank or from a starter), save (every accepted save is an
//! immutable version; content that does not pass the checks is kept as a draft so autosave never
//! loses work), preview, test send, and the compiled-template cache used at send time.

use super::sandbox::{Checked, MergeFields, TemplateParts};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::{self, fields, record};
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::links::{self, LinkKind, LinkSubject};
use crate::mail::{self, SendOutcome};
use crate::outbound;
use crate::services::Services;
use domain::audit::AuditAction;
use domain::contacts::{CustomField, FieldType, FieldValue};
use domain::ids::OrganisationId;
use domain::template_views::{
    DraftView, EditorMode, MergeFieldView, PreviewSample, PreviewView, SaveOutcome, StarterView, TemplateContent,
    TemplateEditor, TemplateSummary, VersionMeta,
};
use domain::templates::{Design, html_to_text, starters};
use domain::{Permission, Phi};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use uuid::Uuid;

/// Largest editor state kept as a draft (the checks cap each body at 256 KB).
const MAX_DRAFT_BYTES: usize = 1024 * 1024;
/// Test sends allowed per user in `TEST_SEND_WINDOW_MINUTES`.
pub const TEST_SENDS_PER_WINDOW: i64 = 10;
pub const TEST_SEND_WINDOW_MINUTES: i64 = 10;
pub use super::engine::{CompiledVersion, Engine};

fn clean_name(name: &str) -> ServiceResult<String> {
    let t = name.trim();
    if t.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    if t.chars().count() > 120 || t.chars().any(char::is_control) {
        return Err(ServiceError::invalid("name", "must be at most 120 printable characters"));
    }
    Ok(t.to_string())
}

pub async fn merge_fields<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
) -> ServiceResult<MergeFields> {
    Ok(MergeFields::new(&fields::catalogue(svc, conn, org).await?))
}

fn field_views(fields: &MergeFields) -> Vec<MergeFieldView> {
    let mut v: Vec<MergeFieldView> = fields
        .fields()
        .iter()
        .map(|f| MergeFieldView {
            tag: format!("{{{{contact.{}}}}}", f.key),
            label: f.label.clone(),
            is_phi: f.is_phi,
            is_date: f.is_date,
        })
        .collect();
    v.push(MergeFieldView {
        tag: "{{organisation.name}}".into(),
        label: "Organisation name".into(),
        is_phi: false,
        is_date: false,
    });
    for (l, label) in [
        ("unsubscribe", "Unsubscribe link"),
        ("view_in_browser", "View in browser link"),
        ("preferences", "Preferences link"),
    ] {
        v.push(MergeFieldView {
            tag: format!("{{{{links.{l}}}}}"),
            label: label.into(),
            is_phi: false,
            is_date: false,
        });
    }
    v
}

/// Content ready to store: the generated parts filled in and the whole checked.
struct Prepared {
    mode: EditorMode,
    subject: String,
    preheader: String,
    design: Option<Json>,
    html: String,
    text: String,
    text_edited: bool,
    checked: Checked,
}

/// Refuse what email clients never run and what would be dangerous on the view-in-browser page:
/// scripts, event-handler attributes, `javascript:` URLs, frames, forms and embedded objects.
fn lint_raw_html(html: &str) -> ServiceResult<()> {
    let lower = html.to_ascii_lowercase();
    for (needle, what) in [
        ("<script", "a <script> element"),
        ("<iframe", "an <iframe>"),
        ("<frame", "a <frame>"),
        ("<object", "an <object>"),
        ("<embed", "an <embed>"),
        ("<form", "a <form>"),
        ("<meta http-equiv", "a <meta http-equiv> redirect"),
        ("<base", "a <base> element"),
    ] {
        if lower.contains(needle) {
            return Err(ServiceError::invalid(
                "html",
                format!(
                    "contains {what}. Email apps do not run scripts or active content, so it is not allowed in a template."
                ),
            ));
        }
    }
    // Schemes that run code, however they are spelled (`jav&#x61;script:`, `java\tscript:`).
    let squashed = domain::templates::squash_for_scheme_scan(html);
    for (needle, what) in [
        ("javascript:", "a javascript: link"),
        ("vbscript:", "a vbscript: link"),
        ("data:text/html", "a data:text/html link"),
    ] {
        if squashed.contains(needle) {
            return Err(ServiceError::invalid(
                "html",
                format!(
                    "contains {what} (possibly disguised with character references). Email apps do not run scripts, so it is not allowed in a template."
                ),
            ));
        }
    }
    // Event handlers: an attribute starting with "on" inside a tag (onload=, onerror= …).
    let b = lower.as_bytes();
    let mut in_tag = false;
    let mut quote: Option<u8> = None;
    for i in 0..b.len() {
        let c = b[i];
        match (in_tag, quote) {
            (false, _) => in_tag = c == b'<',
            (true, Some(q)) => {
                if c == q {
                    quote = None;
                }
            }
            (true, None) => match c {
                b'>' => in_tag = false,
                b'"' | b'\'' => quote = Some(c),
                b'o' if i > 0
                    && (b[i - 1].is_ascii_whitespace() || b[i - 1] == b'/')
                    && b.get(i + 1) == Some(&b'n')
                    && b[i + 2..].iter().take_while(|x| x.is_ascii_alphabetic()).count() > 0 =>
                {
                    let name_end = i + 2 + b[i + 2..].iter().take_while(|x| x.is_ascii_alphabetic()).count();
                    let rest = b[name_end..].iter().find(|x| !x.is_ascii_whitespace());
                    if rest == Some(&b'=') {
                        return Err(ServiceError::invalid(
                            "html",
                            "contains an event-handler attribute (such as onclick or onerror). Email apps do not run scripts, so it is not allowed in a template.",
                        ));
                    }
                }
                _ => {}
            },
        }
    }
    Ok(())
}

fn prepare(svc: &Services, content: &TemplateContent, fields: &MergeFields) -> ServiceResult<Prepared> {
    let (design, html, generated_text) = match content.mode {
        EditorMode::Blocks => {
            content.design.validate()?;
            super::sandbox::urls::check_design(&content.design, fields)?;
            let html = content.design.to_html();
            let design = serde_json::to_value(&content.design).map_err(|_| ServiceError::internal("design json"))?;
            (Some(design), html, content.design.to_text())
        }
        EditorMode::Html => {
            if content.html.len() > super::sandbox::MAX_BODY_BYTES {
                return Err(ServiceError::invalid(
                    "html",
                    format!("is larger than {} KB", super::sandbox::MAX_BODY_BYTES / 1024),
                ));
            }
            lint_raw_html(&content.html)?;
            (None, content.html.clone(), html_to_text(&content.html))
        }
    };
    let text = if content.text_edited { content.text.clone() } else { generated_text };
    if text.trim().is_empty() {
        return Err(ServiceError::invalid("text", "the plain-text version is empty"));
    }
    let checked = svc.templates().sandbox.check(
        TemplateParts { subject: &content.subject, preheader: &content.preheader, html: &html, text: &text },
        fields,
    )?;
    Ok(Prepared {
        mode: content.mode,
        subject: content.subject.clone(),
        preheader: content.preheader.clone(),
        design,
        html,
        text,
        text_edited: content.text_edited,
        checked,
    })
}

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<TemplateSummary>> {
    actor.require(Permission::TemplatesRead)?;
    let rows = db::all(
        svc.db(),
        "SELECT t.id, t.name, t.latest_version, t.updated_at, t.draft IS NOT NULL AS has_draft, v.subject, v.uses_phi
         FROM template t JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
         WHERE t.organisation_id = $1 AND t.archived_at IS NULL ORDER BY t.updated_at DESC LIMIT 500",
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TemplateSummary {
                id: db::get(r, "id")?,
                name: db::get(r, "name")?,
                latest_version: db::get(r, "latest_version")?,
                subject: db::get(r, "subject")?,
                uses_phi: db::get(r, "uses_phi")?,
                has_draft: db::get(r, "has_draft")?,
                updated_at: db::get(r, "updated_at")?,
            })
        })
        .collect()
}

pub fn starter_list(actor: &Actor) -> ServiceResult<Vec<StarterView>> {
    actor.require(Permission::TemplatesRead)?;
    Ok(starters()
        .into_iter()
        .map(|s| StarterView { key: s.key.into(), name: s.name.into(), subject: s.subject.into() })
        .collect())
}

fn blank_content() -> TemplateContent {
    use domain::templates::Block;
    TemplateContent {
        mode: EditorMode::Blocks,
        subject: "A message from {{organisation.name}}".into(),
        preheader: String::new(),
        design: Design {
            blocks: vec![
                Block::Heading { text: "Hello {{default contact.first_name \"there\"}}".into(), level: 1 },
                Block::Text { text: "Write your message here.".into() },
                Block::Footer {
                    text: "{{organisation.name}} · [Unsubscribe]({{links.unsubscribe}}) · [Manage preferences]({{links.preferences}})".into(),
                },
            ],
        },
        ..TemplateContent::default()
    }
}

/// Create a template (blank or from a starter) with its first version.
pub async fn create(svc: &Services, actor: &Actor, name: &str, starter: Option<&str>) -> ServiceResult<Uuid> {
    actor.require(Permission::TemplatesWrite)?;
    let name = clean_name(name)?;
    let content = match starter.filter(|s| !s.is_empty()) {
        None => blank_content(),
        Some(key) => {
            let s = starters()
                .into_iter()
                .find(|s| s.key == key)
                .ok_or_else(|| ServiceError::invalid("starter", "is not one of the starter templates"))?;
            TemplateContent {
                mode: EditorMode::Blocks,
                subject: s.subject.into(),
                preheader: s.preheader.into(),
                design: s.design,
                ..TemplateContent::default()
            }
        }
    };
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let fields = merge_fields(svc, &txn, org).await?;
    let p = prepare(svc, &content, &fields)?;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let res = db::exec(
        &txn,
        "INSERT INTO template (id, organisation_id, name, latest_version, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, 0, $4, $5, $5)",
        [id.into(), org.0.into(), name.into(), actor.user_id().map(|u| u.0).into(), now.into()],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A template with this name already exists."));
        }
        r => r?,
    };
    let version_id = insert_version(&txn, actor, id, 1, &p, svc.clock().now()).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::TemplateCreated)
            .target("template", id)
            .detail("version_id", version_id.to_string())
            .detail("starter", starter.unwrap_or("").chars().take(40).collect::<String>()),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

async fn insert_version<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    template: Uuid,
    version: i32,
    p: &Prepared,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<Uuid> {
    let id = Uuid::now_v7();
    let fields_used: Vec<String> = p.checked.fields_used.iter().cloned().collect();
    db::exec(
        conn,
        "INSERT INTO template_version (id, organisation_id, template_id, version, mode, subject, preheader, design, html,
                                       text_body, text_edited, uses_phi, fields_used, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        [
            id.into(),
            actor.organisation_id.0.into(),
            template.into(),
            version.into(),
            p.mode.as_str().into(),
            p.subject.clone().into(),
            p.preheader.clone().into(),
            p.design.clone().into(),
            p.html.clone().into(),
            p.text.clone().into(),
            p.text_edited.into(),
            p.checked.uses_phi.into(),
            fields_used.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await?;
    db::exec(
        conn,
        "UPDATE template SET latest_version = $2, updated_at = $3, draft = NULL, draft_error = NULL, draft_saved_at = NULL
         WHERE id = $1",
        [template.into(), version.into(), now.into()],
    )
    .await?;
    Ok(id)
}

fn content_from_row(r: &sea_orm::QueryResult) -> ServiceResult<TemplateContent> {
    let mode = EditorMode::parse(&db::get::<String>(r, "mode")?).ok_or_else(|| ServiceError::internal("bad mode"))?;
    let design: Option<Json> = db::get(r, "design")?;
    let design = match design {
        Some(d) => serde_json::from_value(d).map_err(|_| ServiceError::internal("stored design is malformed"))?,
        None => Design::default(),
    };
    Ok(TemplateContent {
        mode,
        subject: db::get(r, "subject")?,
        preheader: db::get(r, "preheader")?,
        design,
        html: db::get(r, "html")?,
        text: db::get(r, "text_body")?,
        text_edited: db::get(r, "text_edited")?,
    })
}

const VERSION_COLS: &str =
    "v.id, v.version, v.mode, v.subject, v.preheader, v.design, v.html, v.text_body, v.text_edited, v.uses_phi";

/// Open a template in the editor: a version (the latest by default), the draft if one is newer,
/// the version history and the merge-field picker.
pub async fn editor(svc: &Services, actor: &Actor, id: Uuid, version: Option<i32>) -> ServiceResult<TemplateEditor> {
    actor.require(Permission::TemplatesRead)?;
    let org = actor.organisation_id;
    let t = db::one(
        svc.db(),
        "SELECT name, latest_version, draft, draft_error, draft_saved_at FROM template
         WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let latest: i32 = db::get(&t, "latest_version")?;
    let want = version.unwrap_or(latest);
    let v = db::one(
        svc.db(),
        &format!("SELECT {VERSION_COLS} FROM template_version v WHERE v.template_id = $1 AND v.organisation_id = $2 AND v.version = $3"),
        [id.into(), org.0.into(), want.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let draft = match (db::get::<Option<Json>>(&t, "draft")?, version) {
        (Some(d), None) => match serde_json::from_value::<TemplateContent>(d) {
            Ok(content) => Some(DraftView {
                content,
                error: db::get::<Option<String>>(&t, "draft_error")?.unwrap_or_default(),
                saved_at: db::get::<Option<chrono::DateTime<chrono::Utc>>>(&t, "draft_saved_at")?
                    .ok_or_else(|| ServiceError::internal("draft without time"))?,
            }),
            Err(_) => None,
        },
        _ => None,
    };
    let versions = db::all(
        svc.db(),
        "SELECT v.id, v.version, v.created_at, v.uses_phi, u.display_name FROM template_version v
         LEFT JOIN app_user u ON u.id = v.created_by
         WHERE v.template_id = $1 AND v.organisation_id = $2 ORDER BY v.version DESC LIMIT 200",
        [id.into(), org.0.into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(VersionMeta {
            version: db::get(r, "version")?,
            id: db::get(r, "id")?,
            created_at: db::get(r, "created_at")?,
            created_by: db::get(r, "display_name")?,
            uses_phi: db::get(r, "uses_phi")?,
        })
    })
    .collect::<ServiceResult<Vec<_>>>()?;
    let fields = merge_fields(svc, svc.db(), org).await?;
    Ok(TemplateEditor {
        id,
        name: db::get(&t, "name")?,
        version: want,
        version_id: db::get(&v, "id")?,
        latest_version: latest,
        content: content_from_row(&v)?,
        uses_phi: db::get(&v, "uses_phi")?,
        draft,
        versions,
        fields: field_views(&fields),
    })
}

/// Save the editor's content. `base_version` is the version the editor started from: if someone
/// saved in between, the save is refused rather than silently overwriting their work.
pub async fn save(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
    base_version: i32,
    content: TemplateContent,
) -> ServiceResult<SaveOutcome> {
    actor.require(Permission::TemplatesWrite)?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let t = db::one(
        &txn,
        "SELECT latest_version FROM template WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL FOR UPDATE",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let latest: i32 = db::get(&t, "latest_version")?;
    if latest != base_version {
        return Err(ServiceError::Conflict(
            format!("Version {latest} of this template was saved in another window. Reload to continue from it.")
                .into(),
        ));
    }
    let fields = merge_fields(svc, &txn, org).await?;
    let p = match prepare(svc, &content, &fields) {
        Ok(p) => p,
        Err(ServiceError::Invalid(e)) => {
            let draft = serde_json::to_value(&content).map_err(|_| ServiceError::internal("draft json"))?;
            if draft.to_string().len() > MAX_DRAFT_BYTES {
                return Err(ServiceError::Invalid(e));
            }
            let error = e.to_string();
            db::exec(
                &txn,
                "UPDATE template SET draft = $2, draft_error = $3, draft_saved_at = $4 WHERE id = $1",
                [id.into(), draft.into(), error.clone().into(), svc.clock().now().into()],
            )
            .await?;
            txn.commit().await?;
            return Ok(SaveOutcome::DraftKept { error });
        }
        Err(e) => return Err(e),
    };
    let current = db::one(
        &txn,
        &format!("SELECT {VERSION_COLS} FROM template_version v WHERE v.template_id = $1 AND v.version = $2"),
        [id.into(), latest.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("latest version missing"))?;
    let same = db::get::<String>(&current, "mode")? == p.mode.as_str()
        && db::get::<String>(&current, "subject")? == p.subject
        && db::get::<String>(&current, "preheader")? == p.preheader
        && db::get::<Option<Json>>(&current, "design")? == p.design
        && db::get::<String>(&current, "html")? == p.html
        && db::get::<String>(&current, "text_body")? == p.text
        && db::get::<bool>(&current, "text_edited")? == p.text_edited;
    if same {
        db::exec(
            &txn,
            "UPDATE template SET draft = NULL, draft_error = NULL, draft_saved_at = NULL WHERE id = $1",
            [id.into()],
        )
        .await?;
        txn.commit().await?;
        return Ok(SaveOutcome::Unchanged { version: latest });
    }
    let version = latest + 1;
    let created_at = svc.clock().now();
    let version_id = insert_version(&txn, actor, id, version, &p, created_at).await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::TemplateSaved)
            .target("template", id)
            .detail("version", version)
            .detail("version_id", version_id.to_string())
            .detail("uses_phi", p.checked.uses_phi),
    )
    .await?;
    txn.commit().await?;
    Ok(SaveOutcome::Saved { version, version_id, created_at, uses_phi: p.checked.uses_phi, html: p.html, text: p.text })
}

pub async fn rename(svc: &Services, actor: &Actor, id: Uuid, name: &str) -> ServiceResult<()> {
    actor.require(Permission::TemplatesWrite)?;
    let name = clean_name(name)?;
    let txn = svc.db().begin().await?;
    let res = db::exec(
        &txn,
        "UPDATE template SET name = $3, updated_at = $4 WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), actor.organisation_id.0.into(), name.into(), svc.clock().now().into()],
    )
    .await;
    let n = match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A template with this name already exists."));
        }
        r => r?,
    };
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::TemplateRenamed).target("template", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Archive a template: it leaves the list, its versions stay for the campaigns that pinned them.
pub async fn archive(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::TemplatesWrite)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "UPDATE template SET archived_at = $3 WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), actor.organisation_id.0.into(), svc.clock().now().into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::TemplateArchived).target("template", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Made-up values for every merge field, so previews and test sends involve no real person.
pub fn synthetic_contact(catalogue: &[CustomField]) -> Json {
    let mut c = serde_json::Map::new();
    for (k, v) in [
        ("email", json!("alex.sample@example.org")),
        ("first_name", json!("Alex")),
        ("last_name", json!("Sample")),
        ("phone", json!("+1 555 010 0199")),
        ("date_of_birth", json!("1984-06-15")),
        ("time_zone", json!("America/New_York")),
        ("locale", json!("en")),
    ] {
        c.insert(k.into(), v);
    }
    for f in catalogue {
        let v = match f.field_type {
            FieldType::Text => json!(format!("Sample {}", f.label.to_lowercase())),
            FieldType::Number => json!(42),
            FieldType::Date => json!("2026-12-01"),
            FieldType::Boolean => json!(true),
            FieldType::OneOf => json!(f.options.first().cloned().unwrap_or_default()),
        };
        c.insert(f.key.clone(), v);
    }
    Json::Object(c)
}

fn field_json(v: &FieldValue) -> Json {
    match v {
        FieldValue::Text(s) => json!(s),
        FieldValue::Number(n) => json!(n),
        FieldValue::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
        FieldValue::Boolean(b) => json!(b),
    }
}

/// A contact as merge data: every field present (null when empty), typed values.
pub fn contact_json(rec: &record::ContactRecord, fields: &MergeFields) -> Phi<Json> {
    let mut c = serde_json::Map::new();
    for f in fields.fields() {
        c.insert(f.key.clone(), Json::Null);
    }
    let text = |v: &Option<Phi<String>>| v.as_ref().map(|p| json!(p.expose())).unwrap_or(Json::Null);
    c.insert("email".into(), json!(rec.email.expose()));
    c.insert("first_name".into(), text(&rec.first_name));
    c.insert("last_name".into(), text(&rec.last_name));
    c.insert("phone".into(), text(&rec.phone));
    c.insert(
        "date_of_birth".into(),
        rec.date_of_birth.as_ref().map(|d| json!(d.expose().format("%Y-%m-%d").to_string())).unwrap_or(Json::Null),
    );
    c.insert("time_zone".into(), rec.time_zone.as_ref().map(|v| json!(v)).unwrap_or(Json::Null));
    c.insert("locale".into(), rec.locale.as_ref().map(|v| json!(v)).unwrap_or(Json::Null));
    for (k, v) in rec.attrs.iter().chain(rec.phi_attrs.expose().iter()) {
        c.insert(k.clone(), field_json(v));
    }
    Phi::new(Json::Object(c))
}

pub(crate) async fn organisation_name(svc: &Services, org: OrganisationId) -> ServiceResult<String> {
    let r = db::one(svc.db(), "SELECT name FROM organisation WHERE id = $1", [org.0.into()])
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok(db::get(&r, "name")?)
}

pub(crate) fn merge_data(contact: Json, org_name: &str, links: Json) -> Phi<Json> {
    Phi::new(json!({ "contact": contact, "organisation": { "name": org_name }, "links": links }))
}

async fn template_exists(svc: &Services, org: OrganisationId, id: Uuid) -> ServiceResult<()> {
    db::one(
        svc.db(),
        "SELECT 1 AS x FROM template WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok(())
}

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
    let version_id: Uuid = db::one(
        svc.db(),
        "SELECT v.id FROM template_version v JOIN template t ON t.id = v.template_id
         WHERE v.template_id = $1 AND v.organisation_id = $2 AND v.version = $3 AND t.archived_at IS NULL",
        [id.into(), org.0.into(), version.into()],
    )
    .await?
    .map(|r| db::get(&r, "id"))
    .transpose()?
    .ok_or(ServiceError::NotFound)?;
    let c = compiled(svc, org, version_id).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    let contact = sample_data(svc, actor, id, &catalogue, &fields, sample).await?;
    let user = actor.user_id().map(|u| u.0).unwrap_or_default();
    let links = links::links_json(svc, org, LinkSubject::Test { user, message: id }, svc.clock().now()).await?;
    let org_name = organisation_name(svc, org).await?;
    let r = svc.templates().sandbox.render(&c.checked, merge_data(contact.into_inner(), &org_name, links))?;
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
    let data = merge_data(contact.into_inner(), &org_name, links);
    let r = svc.templates().sandbox.render(&p.checked, data)?;
    Ok(PreviewView {
        subject: r.subject,
        preheader: r.preheader,
        html: r.html,
        text: r.text,
        uses_phi: p.checked.uses_phi,
    })
}

/// Send the editor's current content, personalised with synthetic data, to the signed-in user's
/// own address through the configured transport (the path campaigns use). Returns a short status.
pub async fn test_send(svc: &Services, actor: &Actor, id: Uuid, content: TemplateContent) -> ServiceResult<String> {
    actor.require(Permission::TemplatesWrite)?;
    let org = actor.organisation_id;
    let user = actor.user_id().ok_or(ServiceError::Forbidden)?;
    template_exists(svc, org, id).await?;
    let now = svc.clock().now();
    test_send_allowed(svc, user, now).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    let p = prepare(svc, &content, &fields)?;
    let to: String = db::one(
        svc.db(),
        "SELECT email FROM app_user WHERE id = $1 AND organisation_id = $2",
        [user.0.into(), org.0.into()],
    )
    .await?
    .map(|r| db::get(&r, "email"))
    .transpose()?
    .ok_or(ServiceError::NotFound)?;
    let subject = LinkSubject::Test { user: user.0, message: id };
    let links = links::links_json(svc, org, subject, now).await?;
    let unsubscribe =
        links::url(svc, LinkKind::Unsubscribe, &links::token(svc, org, LinkKind::Unsubscribe, subject, now).await?);
    let org_name = organisation_name(svc, org).await?;
    // Like every message of the organisation, a test goes From its own verified sending domain
    // (the first verified), signed with that domain's key.
    let from = {
        let names = crate::sending_domains::verified_names(svc.db(), org).await?;
        let domain = names.first().ok_or_else(|| {
            ServiceError::invalid(
                "from",
                "test sends go From your organisation's verified sending domain, and it has none yet: an \
                 administrator adds and verifies one under Settings → Sending domains",
            )
        })?;
        let (_, local) = crate::sending_domains::default_local_part(svc);
        let address = format!("{local}@{domain}")
            .parse::<lettre::Address>()
            .map_err(|_| ServiceError::internal("the test sender's address is invalid"))?;
        lettre::message::Mailbox::new(Some(org_name.clone()), address)
    };
    let sender = outbound::Sender::verified(svc, org, "from", from, None).await?;
    let content = outbound::render(svc, &p.checked, merge_data(synthetic_contact(&catalogue), &org_name, links))?;
    let m = outbound::compose(&sender, &Phi::new(to), content, &outbound::Kind::Test { unsubscribe }, None)?;
    let outcome = outbound::send_now(svc, org, &sender, m).await?;
    test_send_result(svc, actor, AuditAction::TemplateTestSent, "template", id, outcome).await
}

/// Test sends (of templates and campaigns) are limited per user: `TEST_SENDS_PER_WINDOW` in
/// `TEST_SEND_WINDOW_MINUTES`, counted from the audit trail.
pub(crate) async fn test_send_allowed(
    svc: &Services,
    user: domain::ids::UserId,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<()> {
    let recent = db::one(
        svc.db(),
        "SELECT count(*) AS n FROM audit_event WHERE actor_user_id = $1 AND action IN ($2, $3) AND occurred_at > $4",
        [
            user.0.into(),
            AuditAction::TemplateTestSent.code().into(),
            AuditAction::CampaignTestSent.code().into(),
            (now - chrono::Duration::minutes(TEST_SEND_WINDOW_MINUTES)).into(),
        ],
    )
    .await?
    .map(|r| db::get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0);
    if recent >= TEST_SENDS_PER_WINDOW {
        return Err(ServiceError::Throttled { retry_after_secs: (TEST_SEND_WINDOW_MINUTES * 60) as u64 });
    }
    Ok(())
}

/// Audit a test send and turn its outcome into the message the user sees.
pub(crate) async fn test_send_result(
    svc: &Services,
    actor: &Actor,
    action: AuditAction,
    target: &'static str,
    id: Uuid,
    outcome: SendOutcome,
) -> ServiceResult<String> {
    let (ok, status) = match &outcome {
        SendOutcome::Accepted(_) => (true, "sent".to_string()),
        SendOutcome::Deferred(code) => (false, format!("the mail server asked us to try later ({code})")),
        SendOutcome::Rejected(code) => (false, format!("the mail server refused it ({code})")),
    };
    audit::record_now(
        svc,
        AuditRecord::by(actor, action).target(target, id).outcome(if ok {
            domain::audit::AuditOutcome::Success
        } else {
            domain::audit::AuditOutcome::Failure
        }),
    )
    .await?;
    if ok {
        Ok(match svc.mailer() {
            mail::Mailer::DevMailbox => "Test sent to your address — captured in the dev mailbox.".into(),
            mail::Mailer::Smtp(_) => "Test sent to your address.".into(),
        })
    } else {
        Err(ServiceError::Conflict(format!("The test was not sent: {status}.").into()))
    }
}

/// A stored version, compiled (from the cache when it is there).
pub async fn compiled(svc: &Services, org: OrganisationId, version_id: Uuid) -> ServiceResult<Arc<CompiledVersion>> {
    if let Some(c) = svc.templates().cached(version_id).filter(|c| c.organisation == org) {
        return Ok(c);
    }
    let r = db::one(
        svc.db(),
        "SELECT template_id, version, subject, preheader, html, text_body FROM template_version WHERE id = $1 AND organisation_id = $2",
        [version_id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let fields = merge_fields(svc, svc.db(), org).await?;
    let (subject, preheader, html, text): (String, String, String, String) =
        (db::get(&r, "subject")?, db::get(&r, "preheader")?, db::get(&r, "html")?, db::get(&r, "text_body")?);
    let checked = svc
        .templates()
        .sandbox
        .check(TemplateParts { subject: &subject, preheader: &preheader, html: &html, text: &text }, &fields)?;
    Ok(svc.templates().remember(CompiledVersion {
        id: version_id,
        organisation: org,
        template_id: db::get(&r, "template_id")?,
        version: db::get(&r, "version")?,
        checked,
    }))
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
    let version_id = match db::one(
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
        Some(r) => db::get::<Uuid>(&r, "id")?,
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
            let r = db::one(
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
            m.insert(
                "time_zone".into(),
                db::get::<Option<String>>(&r, "time_zone")?.map(Json::from).unwrap_or(Json::Null),
            );
            m.insert("locale".into(), db::get::<Option<String>>(&r, "locale")?.map(Json::from).unwrap_or(Json::Null));
            for (k, v) in record::attrs_from_json(&db::get::<Json>(&r, "attrs")?, &catalogue) {
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
