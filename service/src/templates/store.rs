//! Templates and their versions: create (blank or from a starter), save (every accepted save is an
//! immutable version; content that does not pass the checks is kept as a draft so autosave never
//! loses work), rename, archive, and a stored version compiled for sending (cached in `engine`).
//! Merge data is `merge`, previews `preview`, test sends `test_send`; the HTML lint is the
//! domain's (`domain::templates::lint_raw_html`).

use super::sandbox::{Checked, MergeFields, TemplateParts};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::fields;
use crate::db;
use crate::error::{ServiceError, ServiceResult, is_unique_violation};
use crate::services::Services;
use domain::Permission;
use domain::audit::AuditAction;
use domain::ids::OrganisationId;
use domain::template_views::{
    DraftView, EditorMode, MergeFieldView, SaveOutcome, StarterView, TemplateContent, TemplateEditor, TemplateSummary,
    VersionMeta,
};
use domain::templates::{Design, html_to_text, starters};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value as Json;
use std::sync::Arc;
use uuid::Uuid;

/// Largest editor state kept as a draft (the checks cap each body at 256 KB).
const MAX_DRAFT_BYTES: usize = 1024 * 1024;
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

pub(crate) async fn merge_fields<C: ConnectionTrait>(
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
pub(super) struct Prepared {
    pub(super) mode: EditorMode,
    pub(super) subject: String,
    pub(super) preheader: String,
    pub(super) design: Option<Json>,
    pub(super) html: String,
    pub(super) text: String,
    pub(super) text_edited: bool,
    pub(super) checked: Checked,
}

pub(super) fn prepare(svc: &Services, content: &TemplateContent, fields: &MergeFields) -> ServiceResult<Prepared> {
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
            domain::templates::lint_raw_html(&content.html)?;
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
    #[derive(sea_orm::FromQueryResult)]
    struct Summary {
        id: Uuid,
        name: String,
        latest_version: i32,
        subject: String,
        uses_phi: bool,
        has_draft: bool,
        updated_at: chrono::DateTime<chrono::Utc>,
    }
    let rows = db::all_as::<Summary, _>(
        svc.db(),
        "SELECT t.id, t.name, t.latest_version, t.updated_at, t.draft IS NOT NULL AS has_draft, v.subject, v.uses_phi
         FROM template t JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
         WHERE t.organisation_id = $1 AND t.archived_at IS NULL ORDER BY t.updated_at DESC LIMIT 500",
        [actor.organisation_id.0.into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TemplateSummary {
            id: r.id,
            name: r.name,
            latest_version: r.latest_version,
            subject: r.subject,
            uses_phi: r.uses_phi,
            has_draft: r.has_draft,
            updated_at: r.updated_at,
        })
        .collect())
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
    let message_keys: Vec<String> = p.checked.message_keys.iter().cloned().collect();
    let event_keys: Vec<String> = p.checked.event_keys.iter().cloned().collect();
    db::exec(
        conn,
        "INSERT INTO template_version (id, organisation_id, template_id, version, mode, subject, preheader, design, html,
                                       text_body, text_edited, uses_phi, fields_used, created_by, created_at,
                                       message_keys, event_keys)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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
            message_keys.into(),
            event_keys.into(),
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

/// A stored version (`VERSION_COLS`).
#[derive(sea_orm::FromQueryResult)]
struct VersionRow {
    id: Uuid,
    mode: String,
    subject: String,
    preheader: String,
    design: Option<Json>,
    html: String,
    text_body: String,
    text_edited: bool,
    uses_phi: bool,
}

fn content_from_row(r: VersionRow) -> ServiceResult<TemplateContent> {
    let mode = EditorMode::parse(&r.mode).ok_or_else(|| ServiceError::internal("bad mode"))?;
    let design = match r.design {
        Some(d) => serde_json::from_value(d).map_err(|_| ServiceError::internal("stored design is malformed"))?,
        None => Design::default(),
    };
    Ok(TemplateContent {
        mode,
        subject: r.subject,
        preheader: r.preheader,
        design,
        html: r.html,
        text: r.text_body,
        text_edited: r.text_edited,
    })
}

const VERSION_COLS: &str =
    "v.id, v.version, v.mode, v.subject, v.preheader, v.design, v.html, v.text_body, v.text_edited, v.uses_phi";

/// Open a template in the editor: a version (the latest by default), the draft if one is newer,
/// the version history and the merge-field picker.
pub async fn editor(svc: &Services, actor: &Actor, id: Uuid, version: Option<i32>) -> ServiceResult<TemplateEditor> {
    actor.require(Permission::TemplatesRead)?;
    let org = actor.organisation_id;
    #[derive(sea_orm::FromQueryResult)]
    struct TemplateRow {
        name: String,
        latest_version: i32,
        draft: Option<Json>,
        draft_error: Option<String>,
        draft_saved_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    #[derive(sea_orm::FromQueryResult)]
    struct VersionListed {
        id: Uuid,
        version: i32,
        created_at: chrono::DateTime<chrono::Utc>,
        uses_phi: bool,
        display_name: Option<String>,
    }
    let t = db::one_as::<TemplateRow, _>(
        svc.db(),
        "SELECT name, latest_version, draft, draft_error, draft_saved_at FROM template
         WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let latest = t.latest_version;
    let want = version.unwrap_or(latest);
    let v = db::one_as::<VersionRow, _>(
        svc.db(),
        &format!("SELECT {VERSION_COLS} FROM template_version v WHERE v.template_id = $1 AND v.organisation_id = $2 AND v.version = $3"),
        [id.into(), org.0.into(), want.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let draft = match (t.draft, version) {
        (Some(d), None) => match serde_json::from_value::<TemplateContent>(d) {
            Ok(content) => Some(DraftView {
                content,
                error: t.draft_error.unwrap_or_default(),
                saved_at: t.draft_saved_at.ok_or_else(|| ServiceError::internal("draft without time"))?,
            }),
            Err(_) => None,
        },
        _ => None,
    };
    let versions = db::all_as::<VersionListed, _>(
        svc.db(),
        "SELECT v.id, v.version, v.created_at, v.uses_phi, u.display_name FROM template_version v
         LEFT JOIN app_user u ON u.id = v.created_by
         WHERE v.template_id = $1 AND v.organisation_id = $2 ORDER BY v.version DESC LIMIT 200",
        [id.into(), org.0.into()],
    )
    .await?
    .into_iter()
    .map(|r| VersionMeta {
        version: r.version,
        id: r.id,
        created_at: r.created_at,
        created_by: r.display_name,
        uses_phi: r.uses_phi,
    })
    .collect();
    let fields = merge_fields(svc, svc.db(), org).await?;
    Ok(TemplateEditor {
        id,
        name: t.name,
        version: want,
        version_id: v.id,
        latest_version: latest,
        uses_phi: v.uses_phi,
        content: content_from_row(v)?,
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
    #[derive(sea_orm::FromQueryResult)]
    struct Latest {
        latest_version: i32,
    }
    let latest = db::one_as::<Latest, _>(
        &txn,
        "SELECT latest_version FROM template WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL FOR UPDATE",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?
    .latest_version;
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
    let current = db::one_as::<VersionRow, _>(
        &txn,
        &format!("SELECT {VERSION_COLS} FROM template_version v WHERE v.template_id = $1 AND v.version = $2"),
        [id.into(), latest.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("latest version missing"))?;
    let same = current.mode == p.mode.as_str()
        && current.subject == p.subject
        && current.preheader == p.preheader
        && current.design == p.design
        && current.html == p.html
        && current.text_body == p.text
        && current.text_edited == p.text_edited;
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

pub(super) async fn template_exists(svc: &Services, org: OrganisationId, id: Uuid) -> ServiceResult<()> {
    db::one_as::<db::Id, _>(
        svc.db(),
        "SELECT id FROM template WHERE id = $1 AND organisation_id = $2 AND archived_at IS NULL",
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok(())
}

/// A stored version, compiled (from the cache when it is there).
pub async fn compiled(svc: &Services, org: OrganisationId, version_id: Uuid) -> ServiceResult<Arc<CompiledVersion>> {
    if let Some(c) = svc.templates().cached(version_id).filter(|c| c.organisation == org) {
        return Ok(c);
    }
    #[derive(sea_orm::FromQueryResult)]
    struct Stored {
        template_id: Uuid,
        version: i32,
        subject: String,
        preheader: String,
        html: String,
        text_body: String,
    }
    let r = db::one_as::<Stored, _>(
        svc.db(),
        "SELECT template_id, version, subject, preheader, html, text_body FROM template_version WHERE id = $1 AND organisation_id = $2",
        [version_id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let fields = merge_fields(svc, svc.db(), org).await?;
    let checked = svc.templates().sandbox.check(
        TemplateParts { subject: &r.subject, preheader: &r.preheader, html: &r.html, text: &r.text_body },
        &fields,
    )?;
    Ok(svc.templates().remember(CompiledVersion {
        id: version_id,
        organisation: org,
        template_id: r.template_id,
        version: r.version,
        checked,
    }))
}
