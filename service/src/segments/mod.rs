//! Segments: saved condition trees, live counts, audited member previews, static-list snapshots
//! and the member stream the sending pipeline reads.
//!
//! Invariants: every entry point authorises first; trees are validated against the
//! organisation's own fields and lists before anything runs; counts that use PHI conditions are
//! audited, and small ones are withheld from roles that may not see members (a count of 1 can
//! disclose one patient's data); member rows are an audited PHI read.

pub mod eval;
pub mod sql;

use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::{self, fields};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Permission;
use domain::audit::AuditAction;
use domain::contacts::{ConsentPurpose, CustomField};
use domain::segment_views::{BuilderOptions, Choice, SegmentCount, SegmentMember, SegmentSummary, SegmentView};
use domain::segments::{self as seg, SegmentDefinition, SegmentField};
use futures::Stream;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value as Json;
use uuid::Uuid;

/// Counts below this that depend on PHI conditions are withheld from roles without member access.
pub const SMALL_COUNT: u64 = 11;
pub const PREVIEW_ROWS: usize = 20;

struct Catalogue {
    custom: Vec<CustomField>,
    fields: Vec<SegmentField>,
    lists: Vec<Choice>,
}

async fn catalogue<C: ConnectionTrait>(svc: &Services, conn: &C, actor: &Actor) -> ServiceResult<Catalogue> {
    let org = actor.organisation_id;
    let custom = fields::catalogue(svc, conn, org).await?;
    let fields = seg::field_catalogue(&custom);
    let lists = db::all(
        conn,
        "SELECT id, name FROM contact_list WHERE organisation_id = $1 ORDER BY lower(name)",
        [org.0.into()],
    )
    .await?
    .iter()
    .map(|r| Ok(Choice { id: db::get(r, "id")?, name: db::get(r, "name")? }))
    .collect::<ServiceResult<Vec<_>>>()?;
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

/// What the builder offers.
pub async fn options(svc: &Services, actor: &Actor) -> ServiceResult<BuilderOptions> {
    actor.require(Permission::SegmentsCount)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    let event_types = db::all(
        svc.db(),
        "SELECT DISTINCT event_type FROM patient_event WHERE organisation_id = $1 ORDER BY event_type LIMIT 200",
        [actor.organisation_id.0.into()],
    )
    .await?
    .iter()
    .map(|r| db::get(r, "event_type"))
    .collect::<Result<Vec<String>, _>>()?;
    // Campaigns that have sent (or are sending): the ones engagement can refer to.
    let campaigns = db::all(
        svc.db(),
        "SELECT id, name FROM campaign WHERE organisation_id = $1 AND started_at IS NOT NULL ORDER BY started_at DESC LIMIT 200",
        [actor.organisation_id.0.into()],
    )
    .await?
    .iter()
    .map(|r| Ok(Choice { id: db::get(r, "id")?, name: db::get(r, "name")? }))
    .collect::<ServiceResult<Vec<_>>>()?;
    Ok(BuilderOptions { fields: cat.fields, lists: cat.lists, campaigns, event_types })
}

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<SegmentSummary>> {
    actor.require(Permission::SegmentsCount)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    db::all(
        svc.db(),
        "SELECT id, name, definition, updated_at FROM segment WHERE organisation_id = $1 ORDER BY lower(name)",
        [actor.organisation_id.0.into()],
    )
    .await?
    .into_iter()
    .map(|r| {
        let def = stored(db::get(&r, "definition")?)?;
        Ok(SegmentSummary {
            id: db::get(&r, "id")?,
            name: db::get(&r, "name")?,
            conditions: seg::count_conditions(&def.root),
            uses_phi: uses_phi(&def, &cat.fields),
            updated_at: db::get(&r, "updated_at")?,
        })
    })
    .collect()
}

async fn load<C: ConnectionTrait>(conn: &C, actor: &Actor, id: Uuid) -> ServiceResult<SegmentView> {
    let r = db::one(
        conn,
        "SELECT id, name, definition, updated_at FROM segment WHERE id = $1 AND organisation_id = $2",
        [id.into(), actor.organisation_id.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    Ok(SegmentView {
        id: db::get(&r, "id")?,
        name: db::get(&r, "name")?,
        definition: stored(db::get(&r, "definition")?)?,
        updated_at: db::get(&r, "updated_at")?,
    })
}

pub async fn get(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SegmentView> {
    actor.require(Permission::SegmentsCount)?;
    load(svc.db(), actor, id).await
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
    let res = db::exec(
        &txn,
        "INSERT INTO segment (id, organisation_id, name, definition, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        [
            id.into(),
            actor.organisation_id.0.into(),
            name.into(),
            definition_json(def)?.into(),
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
    let res = db::exec(
        &txn,
        "UPDATE segment SET name = $3, definition = $4, updated_at = $5 WHERE id = $1 AND organisation_id = $2",
        [
            id.into(),
            actor.organisation_id.0.into(),
            name.into(),
            definition_json(def)?.into(),
            svc.clock().now().into(),
        ],
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
    let original = load(svc.db(), actor, id).await?;
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

/// Live count of a (possibly unsaved) definition.
pub async fn count(svc: &Services, actor: &Actor, def: &SegmentDefinition) -> ServiceResult<SegmentCount> {
    actor.require(Permission::SegmentsCount)?;
    let cat = catalogue(svc, svc.db(), actor).await?;
    validate(def, &cat)?;
    let org = actor.organisation_id;
    let phi = uses_phi(def, &cat.fields);
    let started = std::time::Instant::now();
    let (matching, _) = eval::count(svc, org, &def.root, &cat.fields, cat.custom, svc.clock().now()).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let total: i64 = db::one(svc.db(), "SELECT count(*) AS n FROM contact WHERE organisation_id = $1", [org.0.into()])
        .await?
        .map(|r| db::get(&r, "n"))
        .transpose()?
        .unwrap_or(0);
    if phi {
        audit::record_now(
            svc,
            AuditRecord::by(actor, AuditAction::SegmentCountedWithPhi)
                .detail("conditions", seg::count_conditions(&def.root)),
        )
        .await?;
    }
    let withhold = phi && !actor.can(Permission::SegmentsWrite) && matching > 0 && matching < SMALL_COUNT;
    Ok(SegmentCount {
        matching: (!withhold).then_some(matching),
        withheld_below: SMALL_COUNT,
        total: total.max(0) as u64,
        uses_phi: phi,
        elapsed_ms,
    })
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
    let rows = db::all(
        svc.db(),
        &format!("SELECT id, {} FROM contact WHERE organisation_id = $1 AND id = ANY($2)", contacts::SEALED_COLS),
        [org.0.into(), ids.clone().into()],
    )
    .await?;
    let mut by_id = std::collections::HashMap::new();
    for r in &rows {
        by_id.insert(db::get::<Uuid>(r, "id")?, contacts::sealed_from_row(r)?);
    }
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
    let seg = load(svc.db(), actor, id).await?;
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
