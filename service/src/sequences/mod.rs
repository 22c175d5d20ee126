//! Triggered follow-up sequences: management (drafts, publishing immutable versions, pause,
//! resume, archive), enrolment lists and decision trails, and (in [`engine`]) the engine that
//! moves enrolments.
//!
//! Invariants:
//! - Definitions are stored sealed under the organisation's data key (they may hold PHI literals)
//!   with a masked plain copy; people who may not read contacts only ever see the masked copy
//!   and figures under the small-cell rule.
//! - A published version is never changed; an enrolment finishes the version it entered unless
//!   an operator explicitly moves the contacts waiting at a step to the new version.
//! - Every status change goes through `domain::sequences::SequenceStatus::transition`, every end
//!   of an enrolment through `EnrolmentState::end`.

pub mod demo;
pub mod engine;
pub mod notify;
pub mod report;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::AuditAction;
use domain::campaigns::DeliveryPolicy;
use domain::disclosure::{self, Cell, Reader};
use domain::ids::OrganisationId;
use domain::sequences::{
    self as seq, EndReason, EnrolmentState, EnrolmentView, SequenceDefinition, SequenceStatus, SequenceSummary,
    SequenceTotals, SequenceView, StepKind, StepStats, TrailEntry, Trigger, VersionSummary,
};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use uuid::Uuid;
use zeroize::Zeroizing;

fn draft_aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "sequence", column: "sealed_draft", row: id }
}

pub(crate) fn version_aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "sequence_version", column: "sealed_definition", row: id }
}

fn reader(actor: &Actor) -> Reader {
    Reader::may_read_contacts(actor.can(Permission::ContactsRead))
}

fn to_json<T: serde::Serialize>(v: &T) -> ServiceResult<Json> {
    serde_json::to_value(v).map_err(|_| ServiceError::internal("encode a sequence"))
}

async fn seal<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    aad: &Aad<'_>,
    def: &SequenceDefinition,
) -> ServiceResult<Vec<u8>> {
    let whole = Zeroizing::new(serde_json::to_vec(def).map_err(|_| ServiceError::internal("encode a sequence"))?);
    Ok(svc.keys().seal(conn, svc.clock(), aad, &whole).await?.into_bytes())
}

pub(crate) async fn open<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    aad: &Aad<'_>,
    bytes: Vec<u8>,
) -> ServiceResult<SequenceDefinition> {
    let plain = svc.keys().open(conn, aad, &Sealed::from_bytes(bytes)?).await?;
    serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("a stored sequence is malformed"))
}

fn clean_name(name: &str) -> ServiceResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    if n.chars().count() > 120 {
        return Err(ServiceError::invalid("name", "is at most 120 characters"));
    }
    if n.chars().any(char::is_control) {
        return Err(ServiceError::invalid("name", "must be a single line of text"));
    }
    Ok(n.to_string())
}

/// The starting point of a new sequence: a trigger and one email step, to be filled in.
fn starter() -> SequenceDefinition {
    SequenceDefinition {
        version: seq::FORMAT_VERSION,
        trigger: Trigger::Event { event_type: "appointment.booked".into(), properties: vec![] },
        entry: seq::EntryRule::OneAtATime,
        correlation_key: None,
        goal: None,
        exit_on: vec![],
        quiet_hours: None,
        frequency_cap: None,
        start: "send-1".into(),
        steps: vec![seq::Step {
            id: "send-1".into(),
            name: "Confirmation".into(),
            kind: StepKind::SendEmail {
                template: None,
                template_version: None,
                purpose: domain::contacts::ConsentPurpose::Transactional,
                policy: DeliveryPolicy::TlsRequired,
                next: None,
            },
        }],
    }
}

/// Create a draft sequence.
pub async fn create(svc: &Services, actor: &Actor, name: &str) -> ServiceResult<Uuid> {
    actor.require(Permission::SequencesWrite)?;
    let name = clean_name(name)?;
    let org = actor.organisation_id;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let def = starter();
    let txn = svc.db().begin().await?;
    let sealed = seal(svc, &txn, &draft_aad(org, id), &def).await?;
    let names = crate::sending_domains::verified_names(&txn, org).await?;
    let from_email =
        names.first().map(|d| format!("{}@{d}", crate::sending_domains::default_local_part(svc).1)).unwrap_or_default();
    let from_name = crate::templates::merge::organisation_name(svc, org).await?;
    db::exec(
        &txn,
        "INSERT INTO sequence (id, organisation_id, name, status, draft, sealed_draft, from_name, from_email, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7, $8, $9, $9)",
        [
            id.into(),
            org.0.into(),
            name.into(),
            to_json(&def.masked())?.into(),
            sealed.into(),
            from_name.into(),
            from_email.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await?;
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::SequenceCreated).target("sequence", id)).await?;
    txn.commit().await?;
    Ok(id)
}

/// What the builder saves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DraftInput {
    pub name: String,
    pub from_name: String,
    pub from_email: String,
    pub definition: SequenceDefinition,
}

/// Save the working copy (it may still be incomplete; publishing validates).
pub async fn save_draft(svc: &Services, actor: &Actor, id: Uuid, input: &DraftInput) -> ServiceResult<()> {
    actor.require(Permission::SequencesWrite)?;
    // The draft holds trigger literals that may be PHI: editing it means seeing them.
    actor.require(Permission::ContactsRead)?;
    let org = actor.organisation_id;
    let name = clean_name(&input.name)?;
    if input.from_name.chars().count() > 120 || input.from_name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("from_name", "is one line of at most 120 characters"));
    }
    if input.from_email.len() > 254 || input.from_email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ServiceError::invalid("from_email", "is an email address"));
    }
    let def = &input.definition;
    if def.version != seq::FORMAT_VERSION {
        return Err(ServiceError::invalid("version", "this sequence format is not supported"));
    }
    if def.steps.len() > seq::MAX_STEPS {
        return Err(ServiceError::invalid("steps", format!("at most {} steps", seq::MAX_STEPS)));
    }
    if serde_json::to_string(&def.masked()).ok() != serde_json::to_string(def).ok() && has_hidden(def) {
        return Err(ServiceError::invalid("trigger", "a condition's value is hidden; enter it again"));
    }
    let txn = svc.db().begin().await?;
    let sealed = seal(svc, &txn, &draft_aad(org, id), def).await?;
    let n = db::exec(
        &txn,
        "UPDATE sequence SET name = $3, from_name = $4, from_email = $5, draft = $6, sealed_draft = $7, updated_at = $8
         WHERE id = $1 AND organisation_id = $2",
        [
            id.into(),
            org.0.into(),
            name.into(),
            input.from_name.trim().to_string().into(),
            input.from_email.trim().to_lowercase().into(),
            to_json(&def.masked())?.into(),
            sealed.into(),
            svc.clock().now().into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::SequenceSaved).target("sequence", id)).await?;
    txn.commit().await?;
    Ok(())
}

fn has_hidden(def: &SequenceDefinition) -> bool {
    let hidden = |t: &domain::segments::FieldTest| matches!(t, domain::segments::FieldTest::Hidden { .. });
    let trig = match &def.trigger {
        Trigger::Event { properties, .. } => properties.iter().any(|p| hidden(&p.test)),
        _ => false,
    };
    trig || def.steps.iter().any(|s| match &s.kind {
        StepKind::Branch { test: seq::BranchTest::EventProperty { test }, .. } => hidden(&test.test),
        StepKind::Branch { test: seq::BranchTest::Contact { root }, .. } => {
            domain::segments::has_hidden_values(&domain::segments::SegmentDefinition {
                version: domain::segments::FORMAT_VERSION,
                root: root.clone(),
            })
        }
        _ => false,
    })
}

#[derive(FromQueryResult)]
struct SequenceRow {
    name: String,
    status: String,
    draft: Json,
    sealed_draft: Vec<u8>,
    from_name: String,
    from_email: String,
    current_version_id: Option<Uuid>,
    updated_at: DateTime<Utc>,
}

async fn sequence_row<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    id: Uuid,
    lock: bool,
) -> ServiceResult<SequenceRow> {
    db::one_as(
        conn,
        &format!(
            "SELECT name, status, draft, sealed_draft, from_name, from_email, current_version_id, updated_at
             FROM sequence WHERE id = $1 AND organisation_id = $2{}",
            if lock { " FOR UPDATE" } else { "" }
        ),
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)
}

fn status_of(s: &str) -> ServiceResult<SequenceStatus> {
    SequenceStatus::parse(s).ok_or_else(|| ServiceError::internal("a sequence has an unknown status"))
}

/// The property names events of a type have carried in an organisation (sorted; names only).
async fn carried_names<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    event_type: &str,
) -> ServiceResult<BTreeSet<String>> {
    let names = db::scalars::<String, _>(
        conn,
        "SELECT name FROM event_property_name WHERE organisation_id = $1 AND event_type = $2 ORDER BY name",
        [org.0.into(), event_type.to_string().into()],
    )
    .await?;
    Ok(names.into_iter().collect())
}

/// A definition that passed the checks before publishing.
struct Prepared {
    /// The definition with its template versions pinned.
    def: SequenceDefinition,
    /// The trigger's event type, when the definition reads its properties but no event of that
    /// type has arrived yet (so their names could not be checked).
    unchecked_event_type: Option<String>,
}

/// The organisation-level checks of a definition before it is published: its templates (pinned
/// to their latest version, PHI templates only with TLS required, no `message.` data), the
/// trigger-event properties it reads (against the names that event type has carried), its lists
/// and its sender.
async fn prepare_for_publish<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    def: &SequenceDefinition,
    from_email: &str,
) -> ServiceResult<Prepared> {
    seq::validate(def).map_err(ServiceError::from)?;
    crate::sending_domains::verified_domain_of(conn, org, "from_email", from_email).await?;
    // The list, segment or campaign a trigger names is one of the organisation's own.
    if let (kind, Some(r)) = def.trigger.stored() {
        let (table, what) = match kind {
            seq::trigger_kind::LIST_ADDED => ("contact_list", "list"),
            seq::trigger_kind::SEGMENT_ENTERED => ("segment", "segment"),
            _ => ("campaign", "campaign"),
        };
        let ok = db::scalar::<bool, _>(
            conn,
            &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1 AND organisation_id = $2)"),
            [r.into(), org.0.into()],
        )
        .await?
        .unwrap_or(false);
        if !ok {
            return Err(ServiceError::invalid(
                "trigger",
                format!("the {what} that starts the sequence does not exist"),
            ));
        }
    }
    let mut out = def.clone();
    let mut uses = def.trigger_properties_named();
    for step in &mut out.steps {
        let field = format!("step {}", step.id);
        match &mut step.kind {
            StepKind::SendEmail { template, template_version, policy, .. } => {
                let Some(t) = template else { continue };
                #[derive(FromQueryResult)]
                struct Latest {
                    id: Uuid,
                }
                let v: Latest = db::one_as(
                    conn,
                    "SELECT v.id FROM template t
                     JOIN template_version v ON v.template_id = t.id AND v.version = t.latest_version AND v.organisation_id = t.organisation_id
                     WHERE t.id = $1 AND t.organisation_id = $2 AND t.archived_at IS NULL",
                    [(*t).into(), org.0.into()],
                )
                .await?
                .ok_or_else(|| ServiceError::invalid(&field, "its template does not exist, is archived or was never saved"))?;
                let compiled = crate::templates::store::compiled(svc, org, v.id).await?;
                // `event.*` merge fields read the trigger event: only an event trigger has one.
                let allowed = if def.trigger.event_type().is_some() {
                    crate::templates::Allowed::SEQUENCE_EMAIL
                } else {
                    crate::templates::Allowed::CAMPAIGN
                };
                crate::templates::namespaces_allowed(&compiled.checked, allowed).map_err(|e| match e {
                    ServiceError::Invalid(domain::DomainError::Invalid { reason, .. }) => {
                        ServiceError::invalid(&field, reason)
                    }
                    other => other,
                })?;
                domain::campaigns::check_policy(*policy, compiled.checked.uses_phi)
                    .map_err(|e| ServiceError::invalid(&field, e.to_string()))?;
                uses.extend(compiled.checked.event_keys.iter().map(|k| seq::PropertyRef {
                    field: field.clone(),
                    key: k.clone(),
                    how: seq::PropertyUse::Template,
                }));
                *template_version = Some(v.id);
            }
            StepKind::NotifyStaff { user, .. } => {
                let ok = db::scalar::<bool, _>(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM app_user WHERE id = $1 AND organisation_id = $2 AND status = 'active')",
                    [(*user).into(), org.0.into()],
                )
                .await?
                .unwrap_or(false);
                if !ok {
                    return Err(ServiceError::invalid(
                        &field,
                        "who it notifies is not an active user of your organisation",
                    ));
                }
            }
            StepKind::UpdateList { list, .. } => {
                let ok = db::scalar::<bool, _>(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM contact_list WHERE id = $1 AND organisation_id = $2)",
                    [(*list).into(), org.0.into()],
                )
                .await?
                .unwrap_or(false);
                if !ok {
                    return Err(ServiceError::invalid(&field, "its list does not exist"));
                }
            }
            _ => {}
        }
    }
    // The trigger event's properties the definition reads, against the names events of its type
    // have carried (none known: nothing to check yet, and the builder says so).
    let mut unchecked_event_type = None;
    if let Some(t) = def.trigger.event_type()
        && !uses.is_empty()
    {
        let carried = carried_names(conn, org, t).await?;
        seq::check_carried(t, &carried, &uses).map_err(ServiceError::from)?;
        if carried.is_empty() {
            unchecked_event_type = Some(t.to_string());
        }
    }
    Ok(Prepared { def: out, unchecked_event_type })
}

/// Publish the draft as a new immutable version. Enrolments stay on the version they entered,
/// except those waiting at a step listed in `move_waiting_at` (which must exist in the new
/// version): they continue in the new version from the same step. A draft sequence goes live.
pub async fn publish(svc: &Services, actor: &Actor, id: Uuid, move_waiting_at: &[String]) -> ServiceResult<i32> {
    actor.require(Permission::SequencesWrite)?;
    actor.require(Permission::ContactsRead)?;
    let org = actor.organisation_id;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let row = sequence_row(&txn, org, id, true).await?;
    let status = status_of(&row.status)?;
    if status == SequenceStatus::Archived {
        return Err(ServiceError::invalid("status", "an archived sequence cannot be published"));
    }
    let draft = open(svc, &txn, &draft_aad(org, id), row.sealed_draft).await?;
    let def = prepare_for_publish(svc, &txn, org, &draft, &row.from_email).await?.def;
    for s in move_waiting_at {
        if def.step(s).is_none() {
            return Err(ServiceError::invalid("move_waiting_at", "names a step the new version does not have"));
        }
    }
    let number: i32 = db::scalar(
        &txn,
        "SELECT COALESCE(max(number), 0) + 1 FROM sequence_version WHERE sequence_id = $1",
        [id.into()],
    )
    .await?
    .unwrap_or(1);
    let vid = Uuid::now_v7();
    let sealed = seal(svc, &txn, &version_aad(org, vid), &def).await?;
    let watched: Vec<String> = def.watched_event_types().into_iter().collect();
    db::exec(
        &txn,
        "INSERT INTO sequence_version (id, organisation_id, sequence_id, number, definition, sealed_definition,
                                       trigger_event_type, watched_event_types, published_by, published_at, trigger_kind, trigger_ref)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            vid.into(),
            org.0.into(),
            id.into(),
            number.into(),
            to_json(&def.masked())?.into(),
            sealed.into(),
            def.trigger.event_type().map(str::to_string).into(),
            watched.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
            def.trigger.stored().0.into(),
            def.trigger.stored().1.into(),
        ],
    )
    .await?;
    let to = if status == SequenceStatus::Draft { status.transition(SequenceStatus::Active)? } else { status };
    db::exec(
        &txn,
        "UPDATE sequence SET current_version_id = $2, status = $3, updated_at = $4 WHERE id = $1",
        [id.into(), vid.into(), to.as_str().into(), now.into()],
    )
    .await?;
    let moved = if move_waiting_at.is_empty() {
        0
    } else {
        db::exec(
            &txn,
            "UPDATE enrolment SET version_id = $2 WHERE sequence_id = $1 AND state = 'active' AND version_id <> $2 AND step_id = ANY($3)",
            [id.into(), vid.into(), move_waiting_at.to_vec().into()],
        )
        .await?
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SequencePublished)
            .target("sequence", id)
            .detail("version", number)
            .detail("moved", moved),
    )
    .await?;
    txn.commit().await?;
    Ok(number)
}

/// Pause, resume or archive.
pub async fn set_status(svc: &Services, actor: &Actor, id: Uuid, to: SequenceStatus) -> ServiceResult<()> {
    actor.require(Permission::SequencesWrite)?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let row = sequence_row(&txn, org, id, true).await?;
    let from = status_of(&row.status)?;
    let to = from.transition(to).map_err(ServiceError::from)?;
    db::exec(
        &txn,
        "UPDATE sequence SET status = $2, updated_at = $3 WHERE id = $1",
        [id.into(), to.as_str().into(), svc.clock().now().into()],
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SequenceStatusChanged)
            .target("sequence", id)
            .detail("from", from.as_str())
            .detail("to", to.as_str()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct Totals {
    entered: i64,
    active: i64,
    completed: i64,
    converted: i64,
    exited: i64,
}

const TOTALS_SQL: &str = "count(e.id) AS entered,
    count(e.id) FILTER (WHERE e.state = 'active') AS active,
    count(e.id) FILTER (WHERE e.state = 'completed') AS completed,
    count(e.id) FILTER (WHERE e.state = 'converted') AS converted,
    count(e.id) FILTER (WHERE e.state = 'exited') AS exited";

fn figures(reader: Reader, t: &Totals) -> SequenceTotals {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let cells = [t.entered, t.active, t.completed, t.converted, t.exited].map(|v| Cell::people(n(v))).to_vec();
    // entered = active + completed + converted + exited: a hidden part is not recoverable.
    let sums = [disclosure::Sum { total: 0, parts: vec![1, 2, 3, 4] }];
    let f = disclosure::suppress(reader, &cells, &sums);
    SequenceTotals { entered: f[0], active: f[1], completed: f[2], converted: f[3], exited: f[4] }
}

/// Every sequence of the organisation.
pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<SequenceSummary>> {
    actor.require(Permission::SequencesRead)?;
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
        name: String,
        status: String,
        number: Option<i32>,
        definition: Option<Json>,
        draft: Json,
        updated_at: DateTime<Utc>,
        entered: i64,
        active: i64,
        completed: i64,
        converted: i64,
        exited: i64,
    }
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        &format!(
            "SELECT s.id, s.name, s.status, v.number, v.definition, s.draft, s.updated_at, {TOTALS_SQL}
             FROM sequence s
             LEFT JOIN sequence_version v ON v.id = s.current_version_id
             LEFT JOIN enrolment e ON e.sequence_id = s.id
             WHERE s.organisation_id = $1
             GROUP BY s.id, v.id
             ORDER BY s.updated_at DESC, s.id"
        ),
        [actor.organisation_id.0.into()],
    )
    .await?;
    let reader = reader(actor);
    rows.into_iter()
        .map(|r| {
            let def: SequenceDefinition = serde_json::from_value(r.definition.unwrap_or(r.draft))
                .map_err(|_| ServiceError::internal("a stored sequence is malformed"))?;
            let t = figures(
                reader,
                &Totals {
                    entered: r.entered,
                    active: r.active,
                    completed: r.completed,
                    converted: r.converted,
                    exited: r.exited,
                },
            );
            Ok(SequenceSummary {
                id: r.id,
                name: r.name,
                status: status_of(&r.status)?,
                version: r.number,
                trigger: def.trigger.describe(),
                active: t.active,
                entered: t.entered,
                converted: t.converted,
                updated_at: r.updated_at,
            })
        })
        .collect()
}

/// One sequence for the builder: the working copy (masked for people who may not read contacts),
/// its versions, and the live figures of each step.
pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SequenceView> {
    actor.require(Permission::SequencesRead)?;
    let org = actor.organisation_id;
    let reader = reader(actor);
    let row = sequence_row(svc.db(), org, id, false).await?;
    let masked = reader == Reader::Restricted;
    let draft: SequenceDefinition = if masked {
        serde_json::from_value(row.draft).map_err(|_| ServiceError::internal("a stored sequence is malformed"))?
    } else {
        open(svc, svc.db(), &draft_aad(org, id), row.sealed_draft).await?
    };
    let (draft_problem, event_fields_unchecked) = if masked {
        (None, None)
    } else {
        match prepare_for_publish(svc, svc.db(), org, &draft, &row.from_email).await {
            Ok(p) => (None, p.unchecked_event_type),
            Err(ServiceError::Invalid(domain::DomainError::Invalid { field, reason })) => (Some((field, reason)), None),
            Err(e) => return Err(e),
        }
    };
    // Names only (never values): also shown to people who may not read contacts.
    let trigger_properties = match draft.trigger.event_type() {
        Some(t) => carried_names(svc.db(), org, t).await?.into_iter().collect(),
        None => Vec::new(),
    };
    #[derive(FromQueryResult)]
    struct Version {
        id: Uuid,
        number: i32,
        published_at: DateTime<Utc>,
        definition: Json,
        active: i64,
    }
    let versions: Vec<Version> = db::all_as(
        svc.db(),
        "SELECT v.id, v.number, v.published_at, v.definition,
                (SELECT count(*) FROM enrolment e WHERE e.version_id = v.id AND e.state = 'active') AS active
         FROM sequence_version v WHERE v.sequence_id = $1 AND v.organisation_id = $2 ORDER BY v.number DESC",
        [id.into(), org.0.into()],
    )
    .await?;
    let summary = |v: &Version| VersionSummary {
        id: v.id,
        number: v.number,
        published_at: v.published_at,
        active: disclosure::suppress(reader, &[Cell::people(u64::try_from(v.active).unwrap_or(0))], &[])[0],
    };
    let current = versions.iter().find(|v| Some(v.id) == row.current_version_id);
    let changes = match current {
        Some(v) => {
            let published: SequenceDefinition = serde_json::from_value(v.definition.clone())
                .map_err(|_| ServiceError::internal("a stored sequence is malformed"))?;
            Some(seq::diff(&published, &draft.masked()).clone()).map(|mut d| {
                // Literal-only differences are invisible in masked copies; compare whole copies.
                if !masked && d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty() {
                    d.settings_changed |= published.trigger != draft.masked().trigger;
                }
                d
            })
        }
        None => None,
    };
    let totals: Totals = db::one_as(
        svc.db(),
        &format!("SELECT {TOTALS_SQL} FROM enrolment e WHERE e.sequence_id = $1 AND e.organisation_id = $2"),
        [id.into(), org.0.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("sequence totals"))?;
    let steps = step_stats(svc, reader, id, &draft).await?;
    Ok(SequenceView {
        id,
        name: row.name,
        status: status_of(&row.status)?,
        from_name: row.from_name,
        from_email: row.from_email,
        draft,
        draft_problem,
        current: current.map(summary),
        versions: versions.iter().map(summary).collect(),
        changes,
        steps,
        totals: figures(reader, &totals),
        masked,
        updated_at: row.updated_at,
        staff: if actor.can(Permission::SequencesWrite) { staff(svc.db(), org).await? } else { Vec::new() },
        trigger_properties,
        event_fields_unchecked,
    })
}

/// Active users of the organisation a notify-staff step may email (id, "name <address>").
async fn staff<C: ConnectionTrait>(conn: &C, org: OrganisationId) -> ServiceResult<Vec<(Uuid, String)>> {
    #[derive(FromQueryResult)]
    struct U {
        id: Uuid,
        display_name: String,
        email: String,
    }
    let rows: Vec<U> = db::all_as(
        conn,
        "SELECT id, display_name, email FROM app_user WHERE organisation_id = $1 AND status = 'active'
         ORDER BY lower(display_name), email",
        [org.0.into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|u| {
            let label =
                if u.display_name.trim().is_empty() { u.email } else { format!("{} <{}>", u.display_name, u.email) };
            (u.id, label)
        })
        .collect())
}

async fn step_stats(
    svc: &Services,
    reader: Reader,
    id: Uuid,
    def: &SequenceDefinition,
) -> ServiceResult<Vec<StepStats>> {
    #[derive(FromQueryResult)]
    struct Row {
        step_id: String,
        waiting: i64,
        entered: i64,
        sent: i64,
        opened: i64,
        clicked: i64,
    }
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        "WITH steps AS (SELECT unnest($2::text[]) AS step_id)
         SELECT s.step_id,
                (SELECT count(*) FROM enrolment e WHERE e.sequence_id = $1 AND e.state = 'active' AND e.step_id = s.step_id) AS waiting,
                (SELECT count(DISTINCT x.enrolment_id) FROM enrolment_step x JOIN enrolment e ON e.id = x.enrolment_id
                  WHERE e.sequence_id = $1 AND x.step_id = s.step_id) AS entered,
                (SELECT count(DISTINCT m.enrolment_id) FROM api_message m JOIN enrolment e ON e.id = m.enrolment_id
                  JOIN delivery d ON d.id = m.id
                  WHERE e.sequence_id = $1 AND m.step_id = s.step_id AND d.state = 'sent') AS sent,
                (SELECT count(DISTINCT m.enrolment_id) FROM api_message m JOIN enrolment e ON e.id = m.enrolment_id
                  JOIN engagement_event g ON g.delivery_id = m.id
                  WHERE e.sequence_id = $1 AND m.step_id = s.step_id AND g.activity = 'opened' AND NOT g.machine) AS opened,
                (SELECT count(DISTINCT m.enrolment_id) FROM api_message m JOIN enrolment e ON e.id = m.enrolment_id
                  JOIN engagement_event g ON g.delivery_id = m.id
                  WHERE e.sequence_id = $1 AND m.step_id = s.step_id AND g.activity = 'clicked' AND NOT g.machine) AS clicked
         FROM steps s",
        [id.into(), def.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>().into()],
    )
    .await?;
    let n = |v: i64| Cell::people(u64::try_from(v).unwrap_or(0));
    Ok(rows
        .into_iter()
        .map(|r| {
            let f =
                disclosure::suppress(reader, &[n(r.waiting), n(r.entered), n(r.sent), n(r.opened), n(r.clicked)], &[]);
            StepStats { step_id: r.step_id, waiting: f[0], entered: f[1], sent: f[2], opened: f[3], clicked: f[4] }
        })
        .collect())
}

#[derive(FromQueryResult)]
struct EnrolmentRow {
    id: Uuid,
    sequence_id: Uuid,
    sequence_name: String,
    number: i32,
    contact_id: Uuid,
    state: String,
    end_reason: Option<String>,
    step_id: Option<String>,
    wake_at: Option<DateTime<Utc>>,
    entered_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

const ENROLMENT_SQL: &str =
    "SELECT e.id, e.sequence_id, s.name AS sequence_name, v.number, e.contact_id, e.state, e.end_reason,
        e.step_id, e.wake_at, e.entered_at, e.ended_at
    FROM enrolment e JOIN sequence s ON s.id = e.sequence_id JOIN sequence_version v ON v.id = e.version_id";

fn enrolment_view(r: EnrolmentRow) -> ServiceResult<EnrolmentView> {
    Ok(EnrolmentView {
        id: r.id,
        sequence_id: r.sequence_id,
        sequence_name: r.sequence_name,
        version: r.number,
        contact_id: r.contact_id,
        state: EnrolmentState::parse(&r.state).ok_or_else(|| ServiceError::internal("unknown enrolment state"))?,
        end_reason: r.end_reason.as_deref().and_then(EndReason::parse),
        step_id: r.step_id,
        wake_at: r.wake_at,
        entered_at: r.entered_at,
        ended_at: r.ended_at,
    })
}

/// A sequence's enrolments, newest first (contact ids: people who may read contacts; audited,
/// since being in a sequence says something about a patient).
pub async fn enrolments(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
    state: Option<EnrolmentState>,
    limit: u32,
) -> ServiceResult<Vec<EnrolmentView>> {
    actor.require(Permission::SequencesRead)?;
    actor.require(Permission::ContactsRead)?;
    let rows: Vec<EnrolmentRow> = db::all_as(
        svc.db(),
        &format!(
            "{ENROLMENT_SQL} WHERE e.sequence_id = $1 AND e.organisation_id = $2 AND ($3::text IS NULL OR e.state = $3)
             ORDER BY e.entered_at DESC, e.id DESC LIMIT $4"
        ),
        [
            id.into(),
            actor.organisation_id.0.into(),
            state.map(|s| s.as_str().to_string()).into(),
            i64::from(limit.clamp(1, 500)).into(),
        ],
    )
    .await?;
    audit::record_now(
        svc,
        AuditRecord::by(actor, AuditAction::SequenceEnrolmentsViewed).target("sequence", id).detail("rows", rows.len()),
    )
    .await?;
    rows.into_iter().map(enrolment_view).collect()
}

/// A contact's enrolments (the contact page).
pub async fn contact_enrolments(svc: &Services, actor: &Actor, contact: Uuid) -> ServiceResult<Vec<EnrolmentView>> {
    actor.require(Permission::ContactsRead)?;
    actor.require(Permission::SequencesRead)?;
    let rows: Vec<EnrolmentRow> = db::all_as(
        svc.db(),
        &format!(
            "{ENROLMENT_SQL} WHERE e.contact_id = $1 AND e.organisation_id = $2 ORDER BY e.entered_at DESC, e.id DESC LIMIT 100"
        ),
        [contact.into(), actor.organisation_id.0.into()],
    )
    .await?;
    rows.into_iter().map(enrolment_view).collect()
}

/// An enrolment's decision trail, oldest first.
pub async fn trail(svc: &Services, actor: &Actor, enrolment: Uuid) -> ServiceResult<Vec<TrailEntry>> {
    actor.require(Permission::ContactsRead)?;
    actor.require(Permission::SequencesRead)?;
    #[derive(FromQueryResult)]
    struct Row {
        visit: i32,
        step_id: String,
        kind: String,
        outcome: String,
        detail: Json,
        at: DateTime<Utc>,
    }
    let rows: Vec<Row> = db::all_as(
        svc.db(),
        "SELECT x.visit, x.step_id, x.kind, x.outcome, x.detail, x.at FROM enrolment_step x
         JOIN enrolment e ON e.id = x.enrolment_id
         WHERE x.enrolment_id = $1 AND e.organisation_id = $2 ORDER BY x.visit",
        [enrolment.into(), actor.organisation_id.0.into()],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TrailEntry {
            visit: r.visit,
            step_id: r.step_id,
            kind: r.kind,
            outcome: r.outcome,
            detail: r
                .detail
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            at: r.at,
        })
        .collect())
}

/// Remove a contact from a sequence (the enrolment ends as removed; audited).
pub async fn remove(svc: &Services, actor: &Actor, enrolment: Uuid) -> ServiceResult<()> {
    actor.require(Permission::SequencesWrite)?;
    actor.require(Permission::ContactsRead)?;
    let txn = svc.db().begin().await?;
    #[derive(FromQueryResult)]
    struct Row {
        state: String,
        visit: i32,
        step_id: Option<String>,
        sequence_id: Uuid,
    }
    let r: Row = db::one_as(
        &txn,
        "SELECT state, visit, step_id, sequence_id FROM enrolment WHERE id = $1 AND organisation_id = $2 FOR UPDATE",
        [enrolment.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let state = EnrolmentState::parse(&r.state).ok_or_else(|| ServiceError::internal("unknown enrolment state"))?;
    state.end(EndReason::Removed).map_err(ServiceError::from)?;
    engine::end_enrolment(
        svc,
        &txn,
        enrolment,
        r.visit,
        r.step_id.as_deref().unwrap_or(""),
        EndReason::Removed,
        serde_json::json!({ "by": actor.user_id().map(|u| u.0.to_string()) }),
    )
    .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SequenceEnrolmentRemoved)
            .target("enrolment", enrolment)
            .detail("sequence", r.sequence_id.to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Why a sequence did not admit a contact (the caller answers in its own words: an operator's
/// form error, an API problem code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// Draft, paused or archived: the sequence admits nobody now.
    NotLive,
    /// Live, but never published (no version to enter).
    NotPublished,
    /// The entry rule (once ever, one at a time) does not admit this contact again.
    EntryRule,
}

/// Enrol a contact of the actor's organisation (checked by the caller) in a live sequence, inside
/// the caller's transaction, with its audit record: the one path for operators ([`enrol`]) and
/// integrations (`api::enrolments`). Another organisation's or an unknown sequence is `NotFound`.
pub(crate) async fn enrol_in(
    svc: &Services,
    txn: &sea_orm::DatabaseTransaction,
    actor: &Actor,
    id: Uuid,
    contact: Uuid,
) -> ServiceResult<Result<Uuid, EnrolRefusal>> {
    let org = actor.organisation_id;
    let row = sequence_row(txn, org, id, false).await?;
    if !status_of(&row.status)?.admits() {
        return Ok(Err(EnrolRefusal::NotLive));
    }
    let Some(vid) = row.current_version_id else {
        return Ok(Err(EnrolRefusal::NotPublished));
    };
    let def = open(svc, txn, &version_aad(org, vid), version_sealed(txn, vid).await?).await?;
    let Some(eid) = engine::admit(svc, txn, org, id, vid, &def, contact, None, None).await? else {
        return Ok(Err(EnrolRefusal::EntryRule));
    };
    audit::record(
        svc,
        txn,
        AuditRecord::by(actor, AuditAction::SequenceContactEnrolled)
            .target("enrolment", eid)
            .detail("sequence", id.to_string()),
    )
    .await?;
    Ok(Ok(eid))
}

/// Enrol a contact by hand (an operator on the contact page), subject to the sequence's entry
/// rule. Only a live sequence admits.
pub async fn enrol(svc: &Services, actor: &Actor, id: Uuid, contact: Uuid) -> ServiceResult<Uuid> {
    actor.require(Permission::SequencesWrite)?;
    let txn = svc.db().begin().await?;
    let exists = db::scalar::<bool, _>(
        &txn,
        "SELECT EXISTS (SELECT 1 FROM contact WHERE id = $1 AND organisation_id = $2)",
        [contact.into(), actor.organisation_id.0.into()],
    )
    .await?
    .unwrap_or(false);
    if !exists {
        return Err(ServiceError::NotFound);
    }
    let eid = match enrol_in(svc, &txn, actor, id, contact).await? {
        Ok(eid) => eid,
        Err(EnrolRefusal::NotLive) => {
            return Err(ServiceError::invalid("sequence", "only a live sequence admits contacts"));
        }
        Err(EnrolRefusal::NotPublished) => return Err(ServiceError::invalid("sequence", "publish the sequence first")),
        Err(EnrolRefusal::EntryRule) => {
            return Err(ServiceError::invalid(
                "contact",
                "the sequence's entry rule does not admit this contact again",
            ));
        }
    };
    txn.commit().await?;
    Ok(eid)
}

pub(crate) async fn version_sealed<C: ConnectionTrait>(conn: &C, vid: Uuid) -> ServiceResult<Vec<u8>> {
    db::scalar::<Vec<u8>, _>(conn, "SELECT sealed_definition FROM sequence_version WHERE id = $1", [vid.into()])
        .await?
        .ok_or(ServiceError::NotFound)
}

/// A test run of the working copy for a made-up contact (in `time_zone`, UTC when absent): the
/// path and simulated times, without sending anything or touching an enrolment.
pub async fn test_run(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
    sim: &seq::Simulation,
    time_zone: Option<&str>,
) -> ServiceResult<Vec<seq::TestRunStep>> {
    actor.require(Permission::SequencesRead)?;
    actor.require(Permission::ContactsRead)?;
    if time_zone.is_some_and(|z| z.parse::<chrono_tz::Tz>().is_err()) {
        return Err(ServiceError::invalid("time_zone", "is not a known time zone"));
    }
    if sim.event.len() > crate::events::MAX_PROPERTIES {
        return Err(ServiceError::invalid("properties", "too many properties"));
    }
    let org = actor.organisation_id;
    let row = sequence_row(svc.db(), org, id, false).await?;
    let draft = open(svc, svc.db(), &draft_aad(org, id), row.sealed_draft).await?;
    seq::validate(&draft).map_err(ServiceError::from)?;
    Ok(seq::simulate(&draft, sim, &engine::zone(time_zone)))
}
