//! Campaigns: drafts, the status machine (`domain::campaigns`), launching, pausing, cancelling,
//! progress and reports.
//!
//! Invariants: every status change goes through `CampaignStatus::transition` inside a transaction
//! that holds the campaign row (`FOR UPDATE`) and writes the audit row; the jobs that must follow a
//! change (audience resolution, dispatch) are enqueued in that same transaction (outbox). At launch
//! the template version is pinned; the deliveries table is the only record of who was sent what.

pub mod audience;
pub mod send;
pub mod tracking;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::outbox;
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::AuditAction;
use domain::campaign_views::{
    CampaignOptions, CampaignProgress, CampaignReport, CampaignSummary, CampaignView, DeliveryFigures, LinkCounts,
    ReportCounts, TemplateChoice,
};
use domain::campaigns::{
    CampaignEvent, CampaignSettings, CampaignStatus, DeliveryCounts, DeliveryState, PauseReason, Schedule,
};
use domain::disclosure::Reader;
use domain::ids::OrganisationId;
use domain::segment_views::Choice;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

pub use crate::config::SendingSettings;

/// Job payloads (ids only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareJob {
    pub campaign_id: Uuid,
    /// Set when a paused campaign resumes before its audience was complete: the generation it
    /// resumes as (one preparation per start and per resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_generation: Option<i32>,
}

impl outbox::Job for PrepareJob {
    const QUEUE: &'static str = outbox::queue::CAMPAIGN_PREPARE;
    const MAX_ATTEMPTS: i32 = 25;
    fn idempotency_key(&self) -> Option<String> {
        Some(match self.resume_generation {
            None => format!("prepare:{}", self.campaign_id),
            Some(g) => format!("prepare:{}:{g}", self.campaign_id),
        })
    }
}

impl outbox::Job for DispatchJob {
    const QUEUE: &'static str = outbox::queue::CAMPAIGN_DISPATCH;
    const MAX_ATTEMPTS: i32 = 1000;
    fn idempotency_key(&self) -> Option<String> {
        Some(dispatch_key(self))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchJob {
    pub campaign_id: Uuid,
    pub generation: i32,
    /// Which chain of jobs this is ("s0".."sN" from launch, "r…" when restarted after a crash);
    /// each job hands over to its successor (`seq + 1`) in the same chain.
    pub chain: String,
    pub seq: u64,
}

/// A campaign row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: Uuid,
    pub organisation: OrganisationId,
    pub status: CampaignStatus,
    pub pause_reason: Option<PauseReason>,
    pub settings: CampaignSettings,
    pub template_version_id: Option<Uuid>,
    pub uses_phi: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub audience_ready: bool,
    pub generation: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, organisation_id, status, pause_reason, settings, template_version_id, uses_phi, scheduled_at, \
                    audience_ready, generation, started_at, finished_at, updated_at";

/// The `campaign` columns of `COLS`, as stored.
#[derive(sea_orm::FromQueryResult)]
struct Stored {
    id: Uuid,
    organisation_id: Uuid,
    status: String,
    pause_reason: Option<String>,
    settings: Json,
    template_version_id: Option<Uuid>,
    uses_phi: bool,
    scheduled_at: Option<DateTime<Utc>>,
    audience_ready: bool,
    generation: i32,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Stored> for Row {
    type Error = ServiceError;
    fn try_from(r: Stored) -> ServiceResult<Row> {
        Ok(Row {
            id: r.id,
            organisation: OrganisationId(r.organisation_id),
            status: CampaignStatus::parse(&r.status).ok_or_else(|| ServiceError::internal("stored campaign status"))?,
            pause_reason: r.pause_reason.as_deref().and_then(PauseReason::parse),
            settings: serde_json::from_value(r.settings)
                .map_err(|_| ServiceError::internal("stored campaign settings are malformed"))?,
            template_version_id: r.template_version_id,
            uses_phi: r.uses_phi,
            scheduled_at: r.scheduled_at,
            audience_ready: r.audience_ready,
            generation: r.generation,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
        })
    }
}

async fn rows<C: ConnectionTrait>(conn: &C, sql: &str, values: Vec<sea_orm::Value>) -> ServiceResult<Vec<Row>> {
    db::all_as::<Stored, _>(conn, sql, values).await?.into_iter().map(Row::try_from).collect()
}

/// Load a campaign of the organisation (NotFound for another organisation's id).
pub(crate) async fn load<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    id: Uuid,
    lock: bool,
) -> ServiceResult<Row> {
    let sql = format!(
        "SELECT {COLS} FROM campaign WHERE id = $1 AND organisation_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    rows(conn, &sql, vec![id.into(), org.0.into()]).await?.pop().ok_or(ServiceError::NotFound)
}

/// Load by id alone (jobs: the payload names the campaign; the row names the organisation).
pub(crate) async fn load_any<C: ConnectionTrait>(conn: &C, id: Uuid, lock: bool) -> ServiceResult<Row> {
    let sql = format!("SELECT {COLS} FROM campaign WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    rows(conn, &sql, vec![id.into()]).await?.pop().ok_or(ServiceError::NotFound)
}

/// Whether the actor sees exact figures (may read contacts) or disclosure-controlled ones.
fn reader(actor: &Actor) -> Reader {
    Reader::may_read_contacts(actor.can(Permission::ContactsRead))
}

/// A campaign's delivery counts as the actor may see them: exact counts only for readers who may
/// read contacts; figures (small cells hidden for the others) for everyone.
async fn counts_for<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<(Option<DeliveryCounts>, DeliveryFigures)> {
    let c = counts(conn, id).await?;
    let r = reader(actor);
    Ok(((r == Reader::Full).then_some(c), DeliveryFigures::of(r, &c)))
}

pub(crate) async fn counts<C: ConnectionTrait>(conn: &C, id: Uuid) -> ServiceResult<DeliveryCounts> {
    #[derive(sea_orm::FromQueryResult)]
    struct StateCount {
        state: String,
        n: i64,
    }
    let rows = db::all_as::<StateCount, _>(
        conn,
        // A row is in flight while a sender holds its queue row.
        "SELECT CASE WHEN q.claimed_by IS NOT NULL THEN 'sending' ELSE d.state END AS state, count(*) AS n
             FROM delivery d LEFT JOIN delivery_queue q ON q.delivery_id = d.id
             WHERE d.campaign_id = $1 GROUP BY 1",
        [id.into()],
    )
    .await?;
    let mut c = DeliveryCounts::default();
    for r in rows {
        let n = r.n.max(0) as u64;
        match DeliveryState::parse(&r.state) {
            Some(DeliveryState::Queued) => c.queued = n,
            Some(DeliveryState::Sending) => c.sending = n,
            Some(DeliveryState::Sent) => c.sent = n,
            Some(DeliveryState::Deferred) => c.deferred = n,
            Some(DeliveryState::Bounced) => c.bounced = n,
            Some(DeliveryState::Failed) => c.failed = n,
            Some(DeliveryState::Skipped) => c.skipped = n,
            Some(DeliveryState::Cancelled) => c.cancelled = n,
            None => return Err(ServiceError::internal("stored delivery state")),
        }
    }
    Ok(c)
}

fn clean(settings: &CampaignSettings) -> CampaignSettings {
    let mut s = settings.clone();
    s.name = s.name.trim().to_string();
    s.from_name = s.from_name.trim().to_string();
    s.from_email = normal_email(&s.from_email);
    s.reply_to = s.reply_to.map(|r| normal_email(&r)).filter(|r| !r.is_empty());
    s
}

/// An address as stored: normalised when valid, untouched otherwise (validation then says why).
fn normal_email(raw: &str) -> String {
    match domain::email::EmailAddress::parse(raw) {
        Ok(e) if !raw.chars().any(char::is_control) => e.as_str().to_string(),
        _ => raw.to_string(),
    }
}

fn settings_json(s: &CampaignSettings) -> ServiceResult<Json> {
    serde_json::to_value(s).map_err(|_| ServiceError::internal("encode campaign settings"))
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    e.to_string().contains("duplicate key") || e.to_string().contains("23505")
}

/// Every segment, list and template the settings name belongs to the organisation.
async fn check_references<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    s: &CampaignSettings,
) -> ServiceResult<()> {
    for id in &s.audience.segments {
        db::one_as::<db::Id, _>(
            conn,
            "SELECT id FROM segment WHERE id = $1 AND organisation_id = $2",
            [(*id).into(), org.0.into()],
        )
        .await?
        .ok_or_else(|| ServiceError::invalid("audience", "a chosen segment no longer exists"))?;
    }
    for id in &s.audience.lists {
        db::one_as::<db::Id, _>(
            conn,
            "SELECT id FROM contact_list WHERE id = $1 AND organisation_id = $2",
            [(*id).into(), org.0.into()],
        )
        .await?
        .ok_or_else(|| ServiceError::invalid("audience", "a chosen list no longer exists"))?;
    }
    if let Some(t) = s.template_id {
        // The latest version (if any) must not use data a campaign does not have.
        #[derive(sea_orm::FromQueryResult)]
        struct Chosen {
            message_keys: Option<Vec<String>>,
            event_keys: Option<Vec<String>>,
        }
        let chosen = db::one_as::<Chosen, _>(
            conn,
            "SELECT v.message_keys, v.event_keys FROM template t
             LEFT JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
             WHERE t.id = $1 AND t.organisation_id = $2 AND t.archived_at IS NULL",
            [t.into(), org.0.into()],
        )
        .await?
        .ok_or_else(|| ServiceError::invalid("template", "the chosen template no longer exists"))?;
        crate::templates::keys_allowed(
            chosen.message_keys.unwrap_or_default(),
            chosen.event_keys.unwrap_or_default(),
            crate::templates::Allowed::CAMPAIGN,
        )?;
    }
    Ok(())
}

/// What the editor offers.
pub async fn options(svc: &Services, actor: &Actor) -> ServiceResult<CampaignOptions> {
    actor.require(Permission::CampaignsWrite)?;
    let org = actor.organisation_id;
    #[derive(sea_orm::FromQueryResult)]
    struct Named {
        id: Uuid,
        name: String,
    }
    let choices = |sql: &'static str| async move {
        Ok::<_, ServiceError>(
            db::all_as::<Named, _>(svc.db(), sql, [org.0.into()])
                .await?
                .into_iter()
                .map(|r| Choice { id: r.id, name: r.name })
                .collect::<Vec<_>>(),
        )
    };
    let segments = choices("SELECT id, name FROM segment WHERE organisation_id = $1 ORDER BY lower(name)").await?;
    let lists = choices("SELECT id, name FROM contact_list WHERE organisation_id = $1 ORDER BY lower(name)").await?;
    #[derive(sea_orm::FromQueryResult)]
    struct Tpl {
        id: Uuid,
        name: String,
        latest_version: i32,
        uses_phi: bool,
    }
    let templates = db::all_as::<Tpl, _>(
        svc.db(),
        "SELECT t.id, t.name, t.latest_version, coalesce(v.uses_phi, false) AS uses_phi
         FROM template t LEFT JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
         WHERE t.organisation_id = $1 AND t.archived_at IS NULL AND t.latest_version > 0 ORDER BY lower(t.name)",
        [org.0.into()],
    )
    .await?
    .into_iter()
    .map(|r| TemplateChoice { id: r.id, name: r.name, latest_version: r.latest_version, uses_phi: r.uses_phi })
    .collect();
    // A From address must be on a verified sending domain: offer the system sender's local part
    // on the organisation's first one.
    let sending_domains = crate::sending_domains::verified_names(svc.db(), org).await?;
    let (default_from_name, local) = crate::sending_domains::default_local_part(svc);
    let default_from_email = sending_domains.first().map(|d| format!("{local}@{d}")).unwrap_or_default();
    Ok(CampaignOptions { segments, lists, templates, default_from_email, default_from_name, sending_domains })
}

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<CampaignSummary>> {
    actor.require(Permission::CampaignsRead)?;
    let found = rows(
        svc.db(),
        &format!("SELECT {COLS} FROM campaign WHERE organisation_id = $1 ORDER BY created_at DESC LIMIT 500"),
        vec![actor.organisation_id.0.into()],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for row in found {
        let (counts, figures) = counts_for(svc.db(), actor, row.id).await?;
        out.push(CampaignSummary {
            id: row.id,
            name: row.settings.name.clone(),
            status: row.status,
            updated_at: row.updated_at,
            scheduled_at: row.scheduled_at,
            counts,
            figures,
        });
    }
    Ok(out)
}

/// The HTML of a stored template version (tracked links are read from it).
pub(crate) async fn version_html<C: ConnectionTrait>(conn: &C, id: Uuid) -> ServiceResult<Option<String>> {
    #[derive(sea_orm::FromQueryResult)]
    struct Html {
        html: String,
    }
    Ok(db::one_as::<Html, _>(conn, "SELECT html FROM template_version WHERE id = $1", [id.into()])
        .await?
        .map(|r| r.html))
}

async fn version_number<C: ConnectionTrait>(conn: &C, id: Option<Uuid>) -> ServiceResult<Option<i32>> {
    let Some(id) = id else { return Ok(None) };
    #[derive(sea_orm::FromQueryResult)]
    struct Version {
        version: i32,
    }
    Ok(db::one_as::<Version, _>(conn, "SELECT version FROM template_version WHERE id = $1", [id.into()])
        .await?
        .map(|r| r.version))
}

pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<CampaignView> {
    actor.require(Permission::CampaignsRead)?;
    let row = load(svc.db(), actor.organisation_id, id, false).await?;
    let (counts, figures) = counts_for(svc.db(), actor, row.id).await?;
    Ok(CampaignView {
        id: row.id,
        template_version: version_number(svc.db(), row.template_version_id).await?,
        counts,
        figures,
        settings: row.settings,
        status: row.status,
        pause_reason: row.pause_reason,
        uses_phi: row.uses_phi,
        scheduled_at: row.scheduled_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        updated_at: row.updated_at,
    })
}

pub async fn create(svc: &Services, actor: &Actor, settings: &CampaignSettings) -> ServiceResult<Uuid> {
    actor.require(Permission::CampaignsWrite)?;
    let s = clean(settings);
    s.validate_draft()?;
    // A schedule that has already passed is refused when the draft is saved, not only at launch.
    s.schedule.validate(svc.clock().now())?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    check_references(&txn, org, &s).await?;
    crate::sending_domains::verified_domain_of(&txn, org, "from_email", &s.from_email).await?;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let res = db::exec(
        &txn,
        "INSERT INTO campaign (id, organisation_id, name, status, settings, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, 'draft', $4, $5, $6, $6)",
        [
            id.into(),
            org.0.into(),
            s.name.clone().into(),
            settings_json(&s)?.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A campaign with this name already exists."));
        }
        r => r?,
    };
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignCreated).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(id)
}

/// Change a draft. Scheduled, sending and finished campaigns are not edited (withdraw the
/// schedule first).
pub async fn update(svc: &Services, actor: &Actor, id: Uuid, settings: &CampaignSettings) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let s = clean(settings);
    s.validate_draft()?;
    // A schedule that has already passed is refused when the draft is saved, not only at launch.
    s.schedule.validate(svc.clock().now())?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let row = load(&txn, org, id, true).await?;
    if !row.status.is_editable() {
        return Err(ServiceError::conflict("Only a draft can be changed. Withdraw the schedule first."));
    }
    check_references(&txn, org, &s).await?;
    crate::sending_domains::verified_domain_of(&txn, org, "from_email", &s.from_email).await?;
    let res = db::exec(
        &txn,
        "UPDATE campaign SET name = $3, settings = $4, updated_at = $5 WHERE id = $1 AND organisation_id = $2",
        [id.into(), org.0.into(), s.name.clone().into(), settings_json(&s)?.into(), svc.clock().now().into()],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A campaign with this name already exists."));
        }
        r => r?,
    };
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignUpdated).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let row = load(&txn, org, id, true).await?;
    if row.status != CampaignStatus::Draft {
        return Err(ServiceError::conflict("Only a draft can be deleted; a sent campaign stays for its report."));
    }
    db::exec(&txn, "DELETE FROM campaign WHERE id = $1 AND organisation_id = $2", [id.into(), org.0.into()]).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignDeleted).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Pin the template's latest version and check the launch rules. Returns (version id, uses PHI).
async fn pin(txn: &DatabaseTransaction, row: &Row, now: DateTime<Utc>) -> ServiceResult<(Uuid, bool)> {
    check_references(txn, row.organisation, &row.settings).await?;
    crate::sending_domains::verified_domain_of(txn, row.organisation, "from_email", &row.settings.from_email).await?;
    let template = row.settings.template_id.ok_or_else(|| ServiceError::invalid("template", "choose a template"))?;
    #[derive(sea_orm::FromQueryResult)]
    struct Pinned {
        id: Uuid,
        uses_phi: bool,
        message_keys: Vec<String>,
        event_keys: Vec<String>,
    }
    let v = db::one_as::<Pinned, _>(
        txn,
        "SELECT v.id, v.uses_phi, v.message_keys, v.event_keys
         FROM template t JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
         WHERE t.id = $1 AND t.organisation_id = $2",
        [template.into(), row.organisation.0.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::invalid("template", "the chosen template has no saved version yet"))?;
    // The version pinned is the one checked (the template may have been saved since the draft).
    crate::templates::keys_allowed(&v.message_keys, &v.event_keys, crate::templates::Allowed::CAMPAIGN)?;
    let (vid, uses_phi) = (v.id, v.uses_phi);
    row.settings.validate_for_launch(uses_phi, now)?;
    Ok((vid, uses_phi))
}

/// When a schedule starts (UTC). Local-time schedules start at the earliest zone (UTC+14).
fn start_instant(s: &Schedule, now: DateTime<Utc>) -> DateTime<Utc> {
    match s {
        Schedule::Now => now,
        Schedule::At { at } => *at,
        Schedule::LocalTime { date, time } => chrono::FixedOffset::east_opt(14 * 3600)
            .map(|earliest| domain::campaigns::local_send_at(*date, *time, earliest))
            .unwrap_or(now)
            .max(now),
    }
}

async fn set_status(
    txn: &DatabaseTransaction,
    row: &Row,
    to: CampaignStatus,
    pause: Option<PauseReason>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    db::exec(
        txn,
        "UPDATE campaign SET status = $2, pause_reason = $3, updated_at = $4,
             finished_at = CASE WHEN $2 IN ('completed', 'cancelled', 'failed') THEN $4 ELSE finished_at END
         WHERE id = $1",
        [row.id.into(), to.as_str().into(), pause.map(|p| p.as_str().to_string()).into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Launch (schedule "now") or schedule a draft: pins the template version and checks every launch
/// rule; a "now" campaign starts sending at once.
pub async fn launch(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<CampaignStatus> {
    actor.require(Permission::CampaignsWrite)?;
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = load(&txn, org, id, true).await?;
    if row.status != CampaignStatus::Draft {
        return Err(ServiceError::conflict("This campaign has already been launched or scheduled."));
    }
    let (vid, uses_phi) = pin(&txn, &row, now).await?;
    let starts = start_instant(&row.settings.schedule, now);
    db::exec(
        &txn,
        "UPDATE campaign SET template_version_id = $2, uses_phi = $3, scheduled_at = $4 WHERE id = $1",
        [id.into(), vid.into(), uses_phi.into(), starts.into()],
    )
    .await?;
    let status = if matches!(row.settings.schedule, Schedule::Now) {
        let to = row.status.transition(CampaignEvent::Start)?;
        start(svc, &txn, &row, now).await?;
        audit::record(
            svc,
            &txn,
            AuditRecord::by(actor, AuditAction::CampaignLaunched)
                .target("campaign", id)
                .detail("version", vid.to_string()),
        )
        .await?;
        to
    } else {
        let to = row.status.transition(CampaignEvent::Schedule)?;
        set_status(&txn, &row, to, None, now).await?;
        audit::record(
            svc,
            &txn,
            AuditRecord::by(actor, AuditAction::CampaignScheduled)
                .target("campaign", id)
                .detail("starts_at", starts.to_rfc3339()),
        )
        .await?;
        to
    };
    txn.commit().await?;
    Ok(status)
}

/// Move a campaign to sending and enqueue audience resolution (same transaction).
async fn start(svc: &Services, txn: &DatabaseTransaction, row: &Row, now: DateTime<Utc>) -> ServiceResult<()> {
    let to = row.status.transition(CampaignEvent::Start)?;
    db::exec(
        txn,
        "UPDATE campaign SET status = $2, started_at = coalesce(started_at, $3), updated_at = $3, send_clock = NULL WHERE id = $1",
        [row.id.into(), to.as_str().into(), now.into()],
    )
    .await?;
    let _ = svc;
    outbox::push(txn, &PrepareJob { campaign_id: row.id, resume_generation: None }).await?;
    Ok(())
}

/// Withdraw a schedule: back to draft.
pub async fn unschedule(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = load(&txn, actor.organisation_id, id, true).await?;
    let to = row.status.transition(CampaignEvent::Unschedule)?;
    set_status(&txn, &row, to, None, now).await?;
    db::exec(&txn, "UPDATE campaign SET template_version_id = NULL, scheduled_at = NULL WHERE id = $1", [id.into()])
        .await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignUnscheduled).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Pause: dispatch jobs stop at their next batch (within about a second); nothing queued is lost.
pub async fn pause(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = load(&txn, actor.organisation_id, id, true).await?;
    let to = row.status.transition(CampaignEvent::Pause)?;
    set_status(&txn, &row, to, Some(PauseReason::Manual), now).await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignPaused).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Resume: a new generation of dispatch jobs picks up where the last one stopped.
pub async fn resume(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = load(&txn, actor.organisation_id, id, true).await?;
    let to = row.status.transition(CampaignEvent::Resume)?;
    // Resuming a campaign whose From domain is not verified would only pause it again.
    crate::sending_domains::verified_domain_of(&txn, row.organisation, "from_email", &row.settings.from_email).await?;
    db::exec(
        &txn,
        "UPDATE campaign SET status = $2, pause_reason = NULL, error_streak = 0, generation = generation + 1,
             send_clock = NULL, updated_at = $3 WHERE id = $1",
        [id.into(), to.as_str().into(), now.into()],
    )
    .await?;
    if row.audience_ready {
        enqueue_dispatch(svc, &txn, id, row.generation + 1).await?;
    } else {
        outbox::push(&txn, &PrepareJob { campaign_id: id, resume_generation: Some(row.generation + 1) }).await?;
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignResumed).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Cancel: nothing more is sent; deliveries not yet sent are marked cancelled.
pub async fn cancel(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::CampaignsWrite)?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = load(&txn, actor.organisation_id, id, true).await?;
    let to = row.status.transition(CampaignEvent::Cancel)?;
    set_status(&txn, &row, to, None, now).await?;
    db::exec(
        &txn,
        // Rows a sender holds finish as they are (their queue row stays until their outcome).
        "WITH q AS (DELETE FROM delivery_queue WHERE campaign_id = $1 AND claimed_by IS NULL RETURNING delivery_id)
         UPDATE delivery d SET state = 'cancelled', updated_at = $2 FROM q WHERE d.id = q.delivery_id",
        [id.into(), now.into()],
    )
    .await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::CampaignCancelled).target("campaign", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// The organisation is being deleted (inside its deletion's transaction): every campaign that is
/// scheduled, sending or paused is cancelled through the status machine, like a user's cancel, and
/// its waiting deliveries with it. Returns how many were cancelled.
pub(crate) async fn cancel_for_deleted_organisation(
    svc: &Services,
    txn: &DatabaseTransaction,
    org: OrganisationId,
    now: DateTime<Utc>,
) -> ServiceResult<u64> {
    let live = rows(
        txn,
        &format!("SELECT {COLS} FROM campaign WHERE organisation_id = $1 AND status IN ('scheduled', 'sending', 'paused') FOR UPDATE"),
        vec![org.0.into()],
    )
    .await?;
    let mut n = 0;
    for row in live {
        let to = row.status.transition(CampaignEvent::Cancel)?;
        set_status(txn, &row, to, None, now).await?;
        db::exec(
            txn,
            "WITH q AS (DELETE FROM delivery_queue WHERE campaign_id = $1 AND claimed_by IS NULL RETURNING delivery_id)
             UPDATE delivery d SET state = 'cancelled', updated_at = $2 FROM q WHERE d.id = q.delivery_id",
            [row.id.into(), now.into()],
        )
        .await?;
        audit::record(
            svc,
            txn,
            AuditRecord::new(
                Some(org),
                audit::AuditActor::System,
                AuditAction::CampaignCancelled,
                domain::audit::AuditOutcome::Success,
            )
            .target("campaign", row.id)
            .detail("reason", "organisation_deleted"),
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// Enqueue one dispatch job per slot for a generation (idempotent per generation and slot).
pub(crate) async fn enqueue_dispatch<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    id: Uuid,
    generation: i32,
) -> ServiceResult<()> {
    for slot in 0..svc.settings().sending.slots.max(1) {
        let job = DispatchJob { campaign_id: id, generation, chain: format!("s{slot}"), seq: 0 };
        outbox::push(conn, &job).await?;
    }
    Ok(())
}

pub(crate) fn dispatch_key(j: &DispatchJob) -> String {
    format!("dispatch:{}:{}:{}:{}", j.campaign_id, j.generation, j.chain, j.seq)
}

pub async fn progress(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<CampaignProgress> {
    actor.require(Permission::CampaignsRead)?;
    let row = load(svc.db(), actor.organisation_id, id, false).await?;
    let now = svc.clock().now();
    let recent: i64 = db::one_as::<db::Count, _>(
        svc.db(),
        "SELECT count(*) AS n FROM delivery WHERE campaign_id = $1 AND state = 'sent' AND accepted_at > $2",
        [id.into(), (now - chrono::Duration::seconds(60)).into()],
    )
    .await?
    .map(|r| r.n)
    .unwrap_or(0);
    let (counts, figures) = counts_for(svc.db(), actor, id).await?;
    Ok(CampaignProgress {
        status: row.status,
        pause_reason: row.pause_reason,
        counts,
        figures,
        rate_per_s: recent as f64 / 60.0,
        audience_ready: row.audience_ready,
    })
}

/// The campaign report: delivery totals, human and machine opens and clicks, unsubscribes, clicks
/// per link. Aggregates only; analysts may read it, with every figure from fewer than 11 people
/// hidden and complementary suppression (`CampaignReport::build`).
pub async fn report(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<CampaignReport> {
    actor.require(Permission::ReportsRead)?;
    let row = load(svc.db(), actor.organisation_id, id, false).await?;
    let counts = counts(svc.db(), id).await?;
    #[derive(sea_orm::FromQueryResult)]
    struct Engagement {
        human_opens: i64,
        machine_opens: i64,
        machine_openers: i64,
        unique_clicks: i64,
        clicks: i64,
        machine_clicks: i64,
        machine_clickers: i64,
        unsubscribes: i64,
    }
    #[derive(sea_orm::FromQueryResult)]
    struct LinkRow {
        url: String,
        clicks: i64,
        uniq: i64,
        machine: i64,
        machine_uniq: i64,
    }
    let n = |v: i64| v.max(0) as u64;
    let e = db::one_as::<Engagement, _>(
        svc.db(),
        "SELECT
            count(DISTINCT delivery_id) FILTER (WHERE activity = 'opened' AND NOT machine) AS human_opens,
            count(*) FILTER (WHERE activity = 'opened' AND machine) AS machine_opens,
            count(DISTINCT delivery_id) FILTER (WHERE activity = 'opened' AND machine) AS machine_openers,
            count(DISTINCT delivery_id) FILTER (WHERE activity = 'clicked' AND NOT machine) AS unique_clicks,
            count(*) FILTER (WHERE activity = 'clicked' AND NOT machine) AS clicks,
            count(*) FILTER (WHERE activity = 'clicked' AND machine) AS machine_clicks,
            count(DISTINCT delivery_id) FILTER (WHERE activity = 'clicked' AND machine) AS machine_clickers,
            count(DISTINCT delivery_id) FILTER (WHERE activity = 'unsubscribed') AS unsubscribes
         FROM engagement_event WHERE campaign_id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("report query"))?;
    let links = db::all_as::<LinkRow, _>(
        svc.db(),
        "SELECT l.url,
            count(e.id) FILTER (WHERE NOT e.machine) AS clicks,
            count(DISTINCT e.delivery_id) FILTER (WHERE NOT e.machine) AS uniq,
            count(e.id) FILTER (WHERE e.machine) AS machine,
            count(DISTINCT e.delivery_id) FILTER (WHERE e.machine) AS machine_uniq
         FROM campaign_link l
         LEFT JOIN engagement_event e ON e.campaign_id = l.campaign_id AND e.activity = 'clicked' AND e.link_position = l.position
         WHERE l.campaign_id = $1 GROUP BY l.position, l.url ORDER BY l.position",
        [id.into()],
    )
    .await?
    .into_iter()
    .map(|r| LinkCounts {
        url: r.url,
        clicks: n(r.clicks),
        clickers: n(r.uniq),
        machine: n(r.machine),
        machine_clickers: n(r.machine_uniq),
    })
    .collect();
    let raw = ReportCounts {
        delivered: counts.sent,
        bounced: counts.bounced,
        human_openers: n(e.human_opens),
        machine_opens: n(e.machine_opens),
        machine_openers: n(e.machine_openers),
        human_clickers: n(e.unique_clicks),
        human_clicks: n(e.clicks),
        machine_clicks: n(e.machine_clicks),
        machine_clickers: n(e.machine_clickers),
        unsubscribes: n(e.unsubscribes),
        links,
    };
    Ok(CampaignReport::build(reader(actor), row.settings.name, row.status, &raw))
}

/// Scheduler tick (every few seconds, from any worker process): start scheduled campaigns whose
/// time has come, hand back deliveries of dead workers, make sure every sending campaign with
/// work left has a live dispatch job, and complete campaigns with nothing left.
pub async fn tick(svc: &Services, stale: std::time::Duration) -> ServiceResult<()> {
    let now = svc.clock().now();
    let due = db::all_as::<db::Id, _>(
        svc.db(),
        "SELECT id FROM campaign WHERE status = 'scheduled' AND scheduled_at <= $1",
        [now.into()],
    )
    .await?;
    for db::Id { id } in due {
        let txn = svc.db().begin().await?;
        let row = load_any(&txn, id, true).await?;
        if row.status == CampaignStatus::Scheduled {
            start(svc, &txn, &row, now).await?;
            audit::record(
                svc,
                &txn,
                AuditRecord::new(
                    Some(row.organisation),
                    audit::AuditActor::System,
                    AuditAction::CampaignLaunched,
                    domain::audit::AuditOutcome::Success,
                )
                .target("campaign", id)
                .detail("via", "schedule"),
            )
            .await?;
        }
        txn.commit().await?;
    }
    send::reclaim_orphans(svc).await?;
    let sending =
        db::all_as::<db::Id, _>(svc.db(), "SELECT id FROM campaign WHERE status = 'sending' AND audience_ready", [])
            .await?;
    for db::Id { id } in sending {
        send::ensure_dispatch(svc, id, stale).await?;
    }
    Ok(())
}

/// Send the campaign's message, personalised with synthetic data, to the signed-in user's own
/// address through the same transport and headers as the real send (From, Reply-To,
/// List-Unsubscribe). Rate-limited like template test sends.
pub async fn test_send(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<String> {
    use crate::links::{self, LinkKind, LinkSubject};
    use crate::templates::merge::{merge_data, organisation_name, synthetic_contact, with_samples};
    use crate::templates::store::compiled;
    use crate::templates::test_send::{test_send_allowed, test_send_result};
    actor.require(Permission::CampaignsWrite)?;
    let org = actor.organisation_id;
    let user = actor.user_id().ok_or(ServiceError::Forbidden)?;
    let row = load(svc.db(), org, id, false).await?;
    let now = svc.clock().now();
    test_send_allowed(svc, user, now).await?;
    let version = match row.template_version_id {
        Some(v) => v,
        None => {
            let t = row.settings.template_id.ok_or_else(|| ServiceError::invalid("template", "choose a template"))?;
            db::one_as::<db::Id, _>(
                svc.db(),
                "SELECT v.id FROM template t JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version
                 WHERE t.id = $1 AND t.organisation_id = $2",
                [t.into(), org.0.into()],
            )
            .await?
            .map(|r| r.id)
            .ok_or_else(|| ServiceError::invalid("template", "the chosen template has no saved version yet"))?
        }
    };
    let c = compiled(svc, org, version).await?;
    let to = crate::templates::test_send::own_address(svc, user, org).await?;
    let catalogue = crate::contacts::fields::catalogue(svc, svc.db(), org).await?;
    let subject = LinkSubject::Test { user: user.0, message: id };
    let links_json = links::links_json(svc, org, subject, now).await?;
    let unsubscribe =
        links::url(svc, LinkKind::Unsubscribe, &links::token(svc, org, LinkKind::Unsubscribe, subject, now).await?);
    let data = merge_data(synthetic_contact(&catalogue), &organisation_name(svc, org).await?, links_json);
    let content = crate::outbound::render(svc, &c.checked, with_samples(data, &c.checked))?;
    let s = &row.settings;
    let (from, reply_to) = crate::outbound::Sender::mailboxes(&s.from_name, &s.from_email, s.reply_to.as_deref())?;
    let sender = crate::outbound::Sender::verified(svc, org, "from_email", from, reply_to).await?;
    let kind = crate::outbound::Kind::Test { unsubscribe };
    let m = crate::outbound::compose(&sender, &domain::Phi::new(to), content, &kind, None)?;
    let outcome = crate::outbound::send_now(svc, org, &sender, m).await?;
    test_send_result(svc, actor, AuditAction::CampaignTestSent, "campaign", id, outcome).await
}
