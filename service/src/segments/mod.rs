//! Segments: saved condition trees, live counts, audited member previews, static-list snapshots
//! and the member stream the sending pipeline reads.
//!
//! Invariants: every entry point authorises first; trees are validated against the
//! organisation's own fields and lists before anything runs; member rows are an audited PHI read.
//!
//! Disclosure control (issue 18): people who may not read contacts (analysts) cannot count
//! conditions of their own — only saved segments, built by people who may — and every count they
//! see goes through `domain::disclosure::segment_count` (small counts and small complements hidden,
//! the rest rounded). Counts that decrypt are audited and drawn from a per-user budget kept in the
//! database (shared by every process). The literal values of PHI conditions are stored only sealed
//! (`segment.sealed_definition`, under the organisation's data key); the plain `definition` column
//! holds a copy with them masked, which is what listing and analysts read. Rows saved before
//! sealing existed are sealed by [`seal_legacy`] (at start and in the maintenance job).

pub mod eval;
pub mod sql;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::{self, fields};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::contacts::{ConsentPurpose, CustomField};
use domain::disclosure::{self, Reader};
use domain::ids::OrganisationId;
use domain::segment_views::{BuilderOptions, Choice, SegmentCount, SegmentMember, SegmentSummary, SegmentView};
use domain::segments::{self as seg, SegmentDefinition, SegmentField};
use futures::Stream;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, TransactionTrait};
use serde_json::Value as Json;
use uuid::Uuid;
use zeroize::Zeroizing;

pub const PREVIEW_ROWS: usize = 20;
/// Counts that decrypt allowed per user in [`COUNT_WINDOW_MINUTES`] (every role).
pub const COUNTS_PER_WINDOW: i32 = 120;
pub const COUNT_WINDOW_MINUTES: i64 = 10;

/// What a role that may not read contacts is told when it tries to count conditions of its own.
const SAVED_ONLY: &str =
    "Your role can count saved segments only: counting conditions of your own needs access to contacts.";

fn reader(actor: &Actor) -> Reader {
    Reader::may_read_contacts(actor.can(Permission::ContactsRead))
}

struct Catalogue {
    custom: Vec<CustomField>,
    fields: Vec<SegmentField>,
    lists: Vec<Choice>,
}

/// A list or campaign to choose in the builder.
#[derive(FromQueryResult)]
struct Named {
    id: Uuid,
    name: String,
}

fn choices(rows: Vec<Named>) -> Vec<Choice> {
    rows.into_iter().map(|r| Choice { id: r.id, name: r.name }).collect()
}

async fn catalogue<C: ConnectionTrait>(svc: &Services, conn: &C, actor: &Actor) -> ServiceResult<Catalogue> {
    let org = actor.organisation_id;
    let custom = fields::catalogue(svc, conn, org).await?;
    let fields = seg::field_catalogue(&custom);
    let lists = choices(
        db::all_as(
            conn,
            "SELECT id, name FROM contact_list WHERE organisation_id = $1 ORDER BY lower(name)",
            [org.0.into()],
        )
        .await?,
    );
    Ok(Catalogue { custom, fields, lists })
}

fn validate(def: &SegmentDefinition, cat: &Catalogue) -> ServiceResult<()> {
    let lists: Vec<Uuid> = cat.lists.iter().map(|l| l.id).collect();
    seg::validate(def, &cat.fields, &lists)?;
    Ok(())
}

fn uses_phi(def: &SegmentDefinition, fields: &[SegmentField]) -> bool {
    seg::conditions(&def.root).iter().any(|c| seg::needs_phi(c, fields))
}

fn clean_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("name", "must be 1 to 100 printable characters"));
    }
    Ok(name.to_string())
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    e.to_string().contains("duplicate key") || e.to_string().contains("23505")
}

/// Parse a stored definition (stored ones were validated when saved; a malformed one is an
/// internal error, never shown).
fn stored(j: Json) -> ServiceResult<SegmentDefinition> {
    serde_json::from_value(j).map_err(|_| ServiceError::internal("stored segment is malformed"))
}

fn aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "segment", column: "sealed_definition", row: id }
}

/// The two stored forms of a definition: the plain copy with PHI literals masked, and the whole
/// definition sealed under the organisation's data key, bound to the row.
async fn stored_forms<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    id: Uuid,
    def: &SegmentDefinition,
    fields: &[SegmentField],
) -> ServiceResult<(Json, Vec<u8>)> {
    let plain = definition_json(&seg::mask_phi(def, fields))?;
    let whole = Zeroizing::new(serde_json::to_vec(def).map_err(|_| ServiceError::internal("encode segment"))?);
    let sealed = svc.keys().seal(conn, svc.clock(), &aad(org, id), &whole).await?;
    Ok((plain, sealed.into_bytes()))
}

/// A stored segment row.
struct Row {
    id: Uuid,
    name: String,
    /// The plain copy (PHI literals masked; whole only for a legacy row not sealed yet).
    plain: SegmentDefinition,
    sealed: Option<Vec<u8>>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

async fn row<C: ConnectionTrait>(conn: &C, actor: &Actor, id: Uuid) -> ServiceResult<Row> {
    use entity::segment;
    let r = segment::Entity::find_by_id(id)
        .filter(segment::Column::OrganisationId.eq(actor.organisation_id.0))
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok(Row {
        id: r.id,
        name: r.name,
        plain: stored(r.definition)?,
        sealed: r.sealed_definition,
        updated_at: r.updated_at,
    })
}

/// The whole definition: opened from the sealed copy (fails closed on tampering or a copy moved
/// from another row), or the plain column of a legacy row that is not sealed yet.
async fn whole(svc: &Services, org: OrganisationId, r: &Row) -> ServiceResult<SegmentDefinition> {
    let Some(bytes) = &r.sealed else { return Ok(r.plain.clone()) };
    let plain = svc.keys().open(svc.db(), &aad(org, r.id), &Sealed::from_bytes(bytes.clone())?).await?;
    serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("sealed segment is malformed"))
}

/// What the builder offers.
pub async fn options(svc: &Services, actor: &Actor) -> ServiceResult<BuilderOptions> {
    actor.require(Permission::SegmentsCount)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    // Which patient-event types exist says that someone had such an event: only for people who
    // may read contacts (the others get no builder).
    let event_types = if reader(actor) != Reader::Full {
        vec![]
    } else {
        db::scalars(
            svc.db(),
            "SELECT DISTINCT event_type FROM patient_event WHERE organisation_id = $1 ORDER BY event_type LIMIT 200",
            [actor.organisation_id.0.into()],
        )
        .await?
    };
    // Campaigns that have sent (or are sending): the ones engagement can refer to.
    let campaigns = choices(
        db::all_as(
            svc.db(),
            "SELECT id, name FROM campaign WHERE organisation_id = $1 AND started_at IS NOT NULL ORDER BY started_at DESC LIMIT 200",
            [actor.organisation_id.0.into()],
        )
        .await?,
    );
    Ok(BuilderOptions { fields: cat.fields, lists: cat.lists, campaigns, event_types })
}

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<SegmentSummary>> {
    actor.require(Permission::SegmentsCount)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    #[derive(FromQueryResult)]
    struct Listed {
        id: Uuid,
        name: String,
        definition: Json,
        updated_at: chrono::DateTime<chrono::Utc>,
    }
    let rows: Vec<Listed> = db::all_as(
        svc.db(),
        "SELECT id, name, definition, updated_at FROM segment WHERE organisation_id = $1 ORDER BY lower(name)",
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            let def = stored(r.definition)?;
            Ok(SegmentSummary {
                id: r.id,
                name: r.name,
                conditions: seg::count_conditions(&def.root),
                uses_phi: uses_phi(&def, &cat.fields),
                updated_at: r.updated_at,
            })
        })
        .collect()
}

/// A saved segment with its whole definition (for evaluation, copying and people who may read
/// contacts).
async fn load(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SegmentView> {
    let r = row(svc.db(), actor, id).await?;
    let definition = whole(svc, actor.organisation_id, &r).await?;
    Ok(SegmentView { id: r.id, name: r.name, definition, updated_at: r.updated_at })
}

/// Every current member of a saved segment (ids, ascending), for a sequence that starts when a
/// contact enters it. `None` when the segment is gone. Ids only, held in memory (16 bytes each).
pub(crate) async fn member_ids(svc: &Services, org: OrganisationId, id: Uuid) -> ServiceResult<Option<Vec<Uuid>>> {
    let actor = Actor::system(org, "sequences");
    let seg = match load(svc, &actor, id).await {
        Ok(s) => s,
        Err(ServiceError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let cat = catalogue(svc, svc.db(), &actor).await?;
    validate(&seg.definition, &cat)?;
    let mut ids = Vec::new();
    eval::scan(svc, org, &seg.definition.root, &cat.fields, cat.custom, svc.clock().now(), |page| {
        ids.extend(page);
        true
    })
    .await?;
    Ok(Some(ids))
}

/// Open a saved segment. People who may not read contacts get the definition with the literal
/// values of PHI conditions masked (read from the plain copy, masked again with today's fields so
/// a legacy row not sealed yet shows nothing either).
pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SegmentView> {
    actor.require(Permission::SegmentsCount)?;
    if reader(actor) == Reader::Full {
        return load(svc, actor, id).await;
    }
    let r = row(svc.db(), actor, id).await?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    Ok(SegmentView {
        id: r.id,
        name: r.name,
        definition: seg::mask_phi(&r.plain, &cat.fields),
        updated_at: r.updated_at,
    })
}

fn definition_json(def: &SegmentDefinition) -> ServiceResult<Json> {
    serde_json::to_value(def).map_err(|_| ServiceError::internal("encode segment"))
}

pub async fn create(svc: &Services, actor: &Actor, name: &str, def: &SegmentDefinition) -> ServiceResult<Uuid> {
    actor.require(Permission::SegmentsWrite)?;
    let name = clean_name(name)?;
    let txn = svc.db().begin().await?;
    let cat = catalogue(svc, &txn, actor).await?;
    validate(def, &cat)?;
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    let (plain, sealed) = stored_forms(svc, &txn, actor.organisation_id, id, def, &cat.fields).await?;
    let res = db::exec(
        &txn,
        "INSERT INTO segment (id, organisation_id, name, definition, sealed_definition, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        [
            id.into(),
            actor.organisation_id.0.into(),
            name.into(),
            plain.into(),
            sealed.into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A segment with this name already exists."));
        }
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SegmentCreated)
            .target("segment", id)
            .detail("conditions", seg::count_conditions(&def.root)),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

pub async fn update(svc: &Services, actor: &Actor, id: Uuid, name: &str, def: &SegmentDefinition) -> ServiceResult<()> {
    actor.require(Permission::SegmentsWrite)?;
    let name = clean_name(name)?;
    let txn = svc.db().begin().await?;
    let cat = catalogue(svc, &txn, actor).await?;
    validate(def, &cat)?;
    let (plain, sealed) = stored_forms(svc, &txn, actor.organisation_id, id, def, &cat.fields).await?;
    let res = db::exec(
        &txn,
        "UPDATE segment SET name = $3, definition = $4, sealed_definition = $5, updated_at = $6
         WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into(), name.into(), plain.into(), sealed.into(), svc.clock().now().into()],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("A segment with this name already exists."));
        }
        Ok(0) => return Err(ServiceError::NotFound),
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SegmentUpdated)
            .target("segment", id)
            .detail("conditions", seg::count_conditions(&def.root)),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Copy a segment under a free name ("Copy of …", "Copy of … (2)" …).
pub async fn duplicate(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<Uuid> {
    actor.require(Permission::SegmentsWrite)?;
    let original = load(svc, actor, id).await?;
    let base: String = format!("Copy of {}", original.name).chars().take(90).collect();
    for n in 1..50 {
        let name = if n == 1 { base.clone() } else { format!("{base} ({n})") };
        match create(svc, actor, &name, &original.definition).await {
            Err(ServiceError::Conflict(_)) => continue,
            other => return other,
        }
    }
    Err(ServiceError::conflict("Too many copies with this name already exist."))
}

pub async fn delete(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::SegmentsWrite)?;
    let txn = svc.db().begin().await?;
    let n = db::exec(
        &txn,
        "DELETE FROM segment WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?;
    if n == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(svc, &txn, AuditRecord::by(actor, AuditAction::SegmentDeleted).target("segment", id)).await?;
    txn.commit().await?;
    Ok(())
}

/// Live count of a (possibly unsaved) definition, for people who may read contacts (the builder).
/// Others may count only saved segments ([`count_saved`]): conditions of their own would let them
/// ask yes/no questions about one person.
pub async fn count(svc: &Services, actor: &Actor, def: &SegmentDefinition) -> ServiceResult<SegmentCount> {
    actor.require(Permission::SegmentsCount)?;
    if reader(actor) != Reader::Full {
        return Err(ServiceError::ForbiddenBecause(SAVED_ONLY));
    }
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(def, &cat)?;
    run_count(svc, actor, def, cat, None).await
}

/// Count a saved segment (any role that may see segments), with disclosure control.
pub async fn count_saved(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SegmentCount> {
    actor.require(Permission::SegmentsCount)?;
    let seg = load(svc, actor, id).await?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(&seg.definition, &cat)?;
    run_count(svc, actor, &seg.definition, cat, Some(id)).await
}

async fn run_count(
    svc: &Services,
    actor: &Actor,
    def: &SegmentDefinition,
    cat: Catalogue,
    saved: Option<Uuid>,
) -> ServiceResult<SegmentCount> {
    let org = actor.organisation_id;
    let phi = uses_phi(def, &cat.fields);
    if phi {
        take_count_budget(svc, actor).await?;
        let mut rec = AuditRecord::by(actor, AuditAction::SegmentCountedWithPhi)
            .detail("conditions", seg::count_conditions(&def.root));
        if let Some(id) = saved {
            rec = rec.target("segment", id);
        }
        audit::record_now(svc, rec).await?;
    }
    let started = std::time::Instant::now();
    let (matching, _) = eval::count(svc, org, &def.root, &cat.fields, cat.custom, svc.clock().now()).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let total: i64 =
        db::scalar(svc.db(), "SELECT count(*) AS n FROM contact WHERE organisation_id = $1", [org.0.into()])
            .await?
            .unwrap_or(0);
    let (matching, total) = disclosure::segment_count(reader(actor), matching, total.max(0) as u64);
    Ok(SegmentCount { matching, total, uses_phi: phi, elapsed_ms })
}

/// Take one count from the user's budget of counts that decrypt: one atomic upsert on the user's
/// row, so parallel requests and several processes cannot overrun it. A refusal is audited.
/// System actors (jobs, the command line) have no budget.
async fn take_count_budget(svc: &Services, actor: &Actor) -> ServiceResult<()> {
    let Some(user) = actor.user_id() else { return Ok(()) };
    let now = svc.clock().now();
    let window = chrono::Duration::minutes(COUNT_WINDOW_MINUTES);
    let taken = db::one(
        svc.db(),
        "INSERT INTO segment_count_budget AS b (user_id, window_started_at, used) VALUES ($1, $2, 1)
         ON CONFLICT (user_id) DO UPDATE SET
            window_started_at = CASE WHEN b.window_started_at <= $3 THEN EXCLUDED.window_started_at ELSE b.window_started_at END,
            used = CASE WHEN b.window_started_at <= $3 THEN 1 ELSE b.used + 1 END
         WHERE b.window_started_at <= $3 OR b.used < $4
         RETURNING used",
        [user.0.into(), now.into(), (now - window).into(), COUNTS_PER_WINDOW.into()],
    )
    .await?;
    if taken.is_some() {
        return Ok(());
    }
    let started =
        entity::segment_count_budget::Entity::find_by_id(user.0).one(svc.db()).await?.map(|b| b.window_started_at);
    let retry_after_secs = started
        .map(|s| (s + window - now).num_seconds())
        .unwrap_or(window.num_seconds())
        .clamp(1, window.num_seconds()) as u64;
    audit::record_now(
        svc,
        AuditRecord::by(actor, AuditAction::SegmentCountThrottled)
            .outcome(AuditOutcome::Failure)
            .detail("retry_after_secs", retry_after_secs),
    )
    .await?;
    Err(ServiceError::TooMany { what: "counts", retry_after_secs })
}

/// The first matches with names and emails (an audited PHI read).
pub async fn preview(svc: &Services, actor: &Actor, def: &SegmentDefinition) -> ServiceResult<Vec<SegmentMember>> {
    actor.require(Permission::SegmentsWrite)?;
    actor.require(Permission::ContactsRead)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(def, &cat)?;
    let org = actor.organisation_id;
    let mut ids: Vec<Uuid> = Vec::new();
    eval::scan(svc, org, &def.root, &cat.fields, cat.custom.clone(), svc.clock().now(), |page| {
        ids.extend(page);
        ids.len() < PREVIEW_ROWS
    })
    .await?;
    ids.truncate(PREVIEW_ROWS);
    audit::record_now(
        svc,
        AuditRecord::by(actor, AuditAction::SegmentPreviewed)
            .detail("rows", ids.len())
            .detail("contacts", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
    )
    .await?;
    let rows: Vec<contacts::SealedRow> = db::all_as(
        svc.db(),
        &format!("SELECT id, {} FROM contact WHERE organisation_id = $1 AND id = ANY($2)", contacts::SEALED_COLS),
        [org.0.into(), ids.clone().into()],
    )
    .await?;
    let by_id: std::collections::HashMap<Uuid, crate::contacts::record::SealedContact> =
        rows.into_iter().map(|r| (r.id, r.sealed)).collect();
    let keys = contacts::keys_for(svc, svc.db(), &by_id.values().collect::<Vec<_>>()).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(s) = by_id.get(&id) else { continue };
        let rec = contacts::record::open(&keys, org, id, s, contacts::record::Open::Summary, &cat.custom)?;
        out.push(SegmentMember { id, name: contacts::record::display_name(&rec), email: rec.email });
    }
    Ok(out)
}

/// Snapshot the current members into a new static list.
pub async fn save_as_list(
    svc: &Services,
    actor: &Actor,
    list_name: &str,
    def: &SegmentDefinition,
) -> ServiceResult<Uuid> {
    actor.require(Permission::SegmentsWrite)?;
    actor.require(Permission::ContactsWrite)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(def, &cat)?;
    let org = actor.organisation_id;
    let mut ids: Vec<Uuid> = Vec::new();
    eval::scan(svc, org, &def.root, &cat.fields, cat.custom.clone(), svc.clock().now(), |page| {
        ids.extend(page);
        true
    })
    .await?;
    let list = contacts::lists::create(svc, actor, list_name, "Saved from a segment", false, ConsentPurpose::Marketing)
        .await?;
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    for chunk in ids.chunks(10_000) {
        db::exec(
            &txn,
            "INSERT INTO list_member (organisation_id, list_id, contact_id, status, source, created_at, updated_at)
             SELECT $1, $2, c.id, 'subscribed', 'segment', $4, $4 FROM contact c
             WHERE c.organisation_id = $1 AND c.id = ANY($3)
             ON CONFLICT (list_id, contact_id) DO NOTHING",
            [org.0.into(), list.into(), chunk.to_vec().into(), now.into()],
        )
        .await?;
    }
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SegmentSavedAsList).target("list", list).detail("members", ids.len()),
    )
    .await?;
    txn.commit().await?;
    Ok(list)
}

/// Stream a saved segment's member ids in batches (ascending id), evaluated now, for the sending
/// pipeline. Ids waiting for a slow consumer are buffered in memory (16 bytes each, never PHI).
pub async fn members(
    svc: &Services,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<impl Stream<Item = ServiceResult<Vec<Uuid>>> + Send + 'static> {
    actor.require(Permission::CampaignsWrite)?;
    let seg = load(svc, actor, id).await?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(&seg.definition, &cat)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ServiceResult<Vec<Uuid>>>(4);
    let svc = svc.clone();
    let org = actor.organisation_id;
    let now = svc.clock().now();
    tokio::spawn(async move {
        let sink_tx = tx.clone();
        let (btx, mut brx) = tokio::sync::mpsc::unbounded_channel::<Vec<Uuid>>();
        let forward = tokio::spawn(async move {
            while let Some(b) = brx.recv().await {
                if sink_tx.send(Ok(b)).await.is_err() {
                    break;
                }
            }
        });
        let res =
            eval::scan(&svc, org, &seg.definition.root, &cat.fields, cat.custom, now, |b| btx.send(b).is_ok()).await;
        drop(btx);
        let _ = forward.await;
        if let Err(e) = res {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Seal segments saved before definitions were sealed: the whole definition goes into
/// `sealed_definition` and the plain copy loses the literal values of its PHI conditions. Safe to
/// run at any time and from several processes at once (a row is changed only while it is still
/// unsealed); returns how many rows it changed. Segments of a deleted organisation (whose keys are
/// gone) only lose the literals.
pub async fn seal_legacy(svc: &Services) -> ServiceResult<u64> {
    let mut changed = 0u64;
    let mut after = Uuid::nil();
    let mut catalogues: std::collections::HashMap<Uuid, Vec<SegmentField>> = std::collections::HashMap::new();
    loop {
        #[derive(FromQueryResult)]
        struct Legacy {
            id: Uuid,
            organisation_id: Uuid,
            definition: Json,
            deleted: bool,
        }
        let rows: Vec<Legacy> = db::all_as(
            svc.db(),
            "SELECT s.id, s.organisation_id, s.definition, o.deleted_at IS NOT NULL AS deleted
             FROM segment s JOIN organisation o ON o.id = s.organisation_id
             WHERE s.sealed_definition IS NULL AND s.id > $1 ORDER BY s.id LIMIT 200",
            [after.into()],
        )
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in rows {
            let (id, org, deleted) = (r.id, OrganisationId(r.organisation_id), r.deleted);
            let Ok(def) = serde_json::from_value::<SegmentDefinition>(r.definition) else {
                tracing::warn!(segment = %id, "stored segment is malformed; left unsealed");
                continue;
            };
            let fields = match catalogues.get(&org.0) {
                Some(f) => f.clone(),
                None => {
                    let f = seg::field_catalogue(&fields::catalogue(svc, svc.db(), org).await?);
                    catalogues.insert(org.0, f.clone());
                    f
                }
            };
            let txn = svc.db().begin().await?;
            let n = if deleted {
                let masked = seg::mask_phi(&def, &fields);
                if masked == def {
                    continue;
                }
                db::exec(
                    &txn,
                    "UPDATE segment SET definition = $2 WHERE id = $1 AND sealed_definition IS NULL",
                    [id.into(), definition_json(&masked)?.into()],
                )
                .await?
            } else {
                let (plain, sealed) = stored_forms(svc, &txn, org, id, &def, &fields).await?;
                db::exec(
                    &txn,
                    "UPDATE segment SET definition = $2, sealed_definition = $3 WHERE id = $1 AND sealed_definition IS NULL",
                    [id.into(), plain.into(), sealed.into()],
                )
                .await?
            };
            if n > 0 {
                audit::record(
                    svc,
                    &txn,
                    audit::AuditRecord::new(
                        Some(org),
                        audit::AuditActor::System,
                        AuditAction::SegmentsSealed,
                        AuditOutcome::Success,
                    )
                    .target("segment", id)
                    .detail("sealed", !deleted),
                )
                .await?;
            }
            txn.commit().await?;
            changed += n;
        }
    }
    Ok(changed)
}
