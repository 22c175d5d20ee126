//! The sequence engine: consumes patient events from the outbox (each exactly once) and moves due
//! enrolments through their steps.
//!
//! Invariants:
//! - A waiting patient is an `enrolment` row with a wake-up time; due rows are claimed with
//!   `FOR UPDATE SKIP LOCKED`, so any number of worker processes share the work and a million
//!   waiting enrolments cost rows, not memory or jobs.
//! - Each step execution is an `enrolment_step` row unique per (enrolment, visit), written in the
//!   transaction that moves the enrolment on, together with whatever the step did (a message
//!   queued through the one delivery pipeline, a list changed). A crash before the commit leaves
//!   nothing behind; after it, nothing is repeated.
//! - An event's outbox row is deleted in the transaction that acted on it (enrolled, ended or
//!   woke enrolments), so every event is matched exactly once.
//! - Ids and codes only in the trail and in logs; properties are opened in memory and never stored
//!   outside their sealed column (correlation values are kept as keyed hashes).

use super::{open, version_aad, version_sealed};
use crate::campaigns::send::message::{self, NewMessage, SequenceRef};
use crate::contacts;
use crate::crypto::keyring::DataKey;
use crate::crypto::seal::Sealed;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use domain::Phi;
use domain::contacts::{ConsentPurpose, FieldValue};
use domain::delivery::DeliverySource;
use domain::ids::OrganisationId;
use domain::sequences::{
    self as seq, Awaited, BranchTest, Decision, EndReason, EventMatch, Facts, Gate, LocalZone, SequenceDefinition,
    StepKind,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, TransactionTrait};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// A contact's zone from the tz database (UTC when unknown).
pub(crate) struct Zone(chrono_tz::Tz);

impl LocalZone for Zone {
    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.0).naive_local()
    }
    fn local_to_utc(&self, t: NaiveDateTime) -> DateTime<Utc> {
        match self.0.from_local_datetime(&t) {
            chrono::LocalResult::Single(x) => x.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            // In a daylight-saving gap: the first instant after it.
            chrono::LocalResult::None => (1..=3)
                .find_map(|h| self.0.from_local_datetime(&(t + Duration::hours(h))).earliest())
                .map(|x| x.with_timezone(&Utc))
                .unwrap_or_else(|| t.and_utc()),
        }
    }
}

pub(crate) fn zone(name: Option<&str>) -> Zone {
    Zone(name.and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC))
}

/// The keyed hash of a correlation value (an appointment id): never the value.
fn correlation(key: &DataKey, property: &str, value: &FieldValue) -> Vec<u8> {
    key.mac(&[b"hermetic.bidx.sequence-correlation.v1", property.as_bytes(), value.display().trim().as_bytes()])
        .to_vec()
}
/// Versions opened once per batch.
#[derive(Default)]
struct Definitions(HashMap<Uuid, Arc<SequenceDefinition>>);

impl Definitions {
    async fn get<C: ConnectionTrait>(
        &mut self,
        svc: &Services,
        conn: &C,
        org: OrganisationId,
        vid: Uuid,
    ) -> ServiceResult<Arc<SequenceDefinition>> {
        if let Some(d) = self.0.get(&vid) {
            return Ok(d.clone());
        }
        let d = Arc::new(open(svc, conn, &version_aad(org, vid), version_sealed(conn, vid).await?).await?);
        self.0.insert(vid, d.clone());
        Ok(d)
    }
}

/// Write one step execution (or the entry / the end) to the trail.
#[allow(clippy::too_many_arguments)]
async fn write_step<C: ConnectionTrait>(
    conn: &C,
    enrolment: Uuid,
    visit: i32,
    step: &str,
    kind: &str,
    outcome: &str,
    detail: Json,
    at: DateTime<Utc>,
) -> ServiceResult<()> {
    db::exec(
        conn,
        "INSERT INTO enrolment_step (enrolment_id, visit, step_id, kind, outcome, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [enrolment.into(), visit.into(), step.to_string().into(), kind.to_string().into(), outcome.to_string().into(), detail.into(), at.into()],
    )
    .await?;
    Ok(())
}

/// End an active enrolment (after `visit` step executions), with its reason in the trail.
pub(crate) async fn end_enrolment<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    enrolment: Uuid,
    visit: i32,
    step: &str,
    reason: EndReason,
    detail: Json,
) -> ServiceResult<()> {
    let now = svc.clock().now();
    write_step(conn, enrolment, visit + 1, step, "end", reason.as_str(), detail, now).await?;
    db::exec(
        conn,
        "UPDATE enrolment SET state = $2, end_reason = $3, ended_at = $4, wake_at = NULL, visit = $5, step_id = NULLIF($6, '')
         WHERE id = $1 AND state = 'active'",
        [
            enrolment.into(),
            reason.state().as_str().into(),
            reason.as_str().into(),
            now.into(),
            (visit + 1).into(),
            step.to_string().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Enrol a contact if the entry rule admits it (serialised per sequence and contact). Returns the
/// enrolment's id, due at once.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn admit<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    sequence: Uuid,
    version: Uuid,
    def: &SequenceDefinition,
    contact: Uuid,
    trigger_event: Option<Uuid>,
    correlation_bidx: Option<Vec<u8>>,
) -> ServiceResult<Option<Uuid>> {
    let why = match trigger_event {
        Some(e) => json!({ "event": e.to_string() }),
        None => json!({ "by": "hand" }),
    };
    admit_because(svc, conn, org, sequence, version, def, contact, trigger_event, correlation_bidx, why).await
}

/// `admit`, with what the trail's `entered` row says of why (ids and codes only).
#[allow(clippy::too_many_arguments)]
async fn admit_because<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    org: OrganisationId,
    sequence: Uuid,
    version: Uuid,
    def: &SequenceDefinition,
    contact: Uuid,
    trigger_event: Option<Uuid>,
    correlation_bidx: Option<Vec<u8>>,
    why: Json,
) -> ServiceResult<Option<Uuid>> {
    db::exec(
        conn,
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 22))",
        [sequence.into(), contact.into()],
    )
    .await?;
    #[derive(FromQueryResult)]
    struct Count {
        ever: i64,
        active: i64,
    }
    let c: Count = db::one_as(
        conn,
        "SELECT count(*) AS ever, count(*) FILTER (WHERE state = 'active') AS active FROM enrolment WHERE sequence_id = $1 AND contact_id = $2",
        [sequence.into(), contact.into()],
    )
    .await?
    .ok_or_else(|| ServiceError::internal("enrolment count"))?;
    let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    if !def.entry.admits(n(c.ever), n(c.active)) {
        return Ok(None);
    }
    let id = Uuid::now_v7();
    let now = svc.clock().now();
    db::exec(
        conn,
        "INSERT INTO enrolment (id, organisation_id, sequence_id, version_id, contact_id, trigger_event_id, correlation_bidx,
                                state, step_id, visit, step_started_at, wake_at, entered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, 0, $9, $9, $9)",
        [
            id.into(),
            org.0.into(),
            sequence.into(),
            version.into(),
            contact.into(),
            trigger_event.into(),
            correlation_bidx.into(),
            def.start.clone().into(),
            now.into(),
        ],
    )
    .await?;
    write_step(conn, id, 0, "", "enter", "entered", why, now).await?;
    Ok(Some(id))
}

/// Match a batch of outbox events against triggers and against the enrolments waiting on them,
/// deleting their outbox rows in the same transaction. Returns how many events were consumed.
pub async fn consume_events(svc: &Services, limit: u32) -> ServiceResult<usize> {
    #[derive(FromQueryResult)]
    struct Ev {
        event_id: Uuid,
        organisation_id: Uuid,
        contact_id: Uuid,
        event_type: String,
        properties: Option<Vec<u8>>,
    }
    let txn = svc.db().begin().await?;
    let events: Vec<Ev> = db::all_as(
        &txn,
        "SELECT o.event_id, e.organisation_id, e.contact_id, e.event_type, e.properties
         FROM event_outbox o JOIN patient_event e ON e.id = o.event_id
         ORDER BY o.created_at, o.event_id LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
        [i64::from(limit).into()],
    )
    .await?;
    if events.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut defs = Definitions::default();
    let mut bkeys: HashMap<Uuid, Arc<DataKey>> = HashMap::new();
    let mut carried: BTreeSet<(Uuid, String, String)> = BTreeSet::new();
    let now = svc.clock().now();
    for ev in &events {
        let org = OrganisationId(ev.organisation_id);
        let props = match &ev.properties {
            Some(b) => {
                let plain = svc
                    .keys()
                    .open(&txn, &crate::events::aad(org, ev.event_id), &Sealed::from_bytes(b.clone())?)
                    .await?;
                let j: Json = serde_json::from_slice(&plain)
                    .map_err(|_| ServiceError::internal("event properties are malformed"))?;
                // Every name the event carried (a null value too), for the catalogue publishing
                // checks against; only codes the API would accept (a name is never free text).
                if let Some(obj) = j.as_object() {
                    for name in obj.keys().filter(|k| domain::api::valid_property_key(k)) {
                        carried.insert((ev.organisation_id, ev.event_type.clone(), name.clone()));
                    }
                }
                crate::events::properties_from_json(&j)
            }
            None => BTreeMap::new(),
        };
        let bkey = match bkeys.get(&ev.organisation_id) {
            Some(k) => k.clone(),
            None => {
                let k = contacts::bidx_key(svc, &txn, org).await?;
                bkeys.insert(ev.organisation_id, k.clone());
                k
            }
        };
        // Enrolments already inside that this event may end or wake.
        #[derive(FromQueryResult)]
        struct Watcher {
            id: Uuid,
            version_id: Uuid,
            correlation_bidx: Option<Vec<u8>>,
            step_id: Option<String>,
            visit: i32,
        }
        let watchers: Vec<Watcher> = db::all_as(
            &txn,
            "SELECT e.id, e.version_id, e.correlation_bidx, e.step_id, e.visit
             FROM enrolment e JOIN sequence_version v ON v.id = e.version_id
             WHERE e.contact_id = $1 AND e.state = 'active' AND $2 = ANY (v.watched_event_types)
             ORDER BY e.id FOR UPDATE OF e",
            [ev.contact_id.into(), ev.event_type.clone().into()],
        )
        .await?;
        for w in watchers {
            let def = defs.get(svc, &txn, org, w.version_id).await?;
            let bidx = def.correlation_key.as_ref().and_then(|k| props.get(k).map(|v| correlation(&bkey, k, v)));
            let hit = |m: &EventMatch| {
                m.event_type == ev.event_type && (!m.correlated || (bidx.is_some() && bidx == w.correlation_bidx))
            };
            let step = w.step_id.as_deref().unwrap_or("");
            let detail = json!({ "event": ev.event_id.to_string() });
            if def.goal.as_ref().is_some_and(hit) {
                end_enrolment(svc, &txn, w.id, w.visit, step, EndReason::Goal, detail).await?;
            } else if def.exit_on.iter().any(hit) {
                end_enrolment(svc, &txn, w.id, w.visit, step, EndReason::CancelEvent, detail).await?;
            } else if let Some(s) = def.step(step)
                && let StepKind::WaitFor { event: Awaited::Event { event }, .. } = &s.kind
                && hit(event)
            {
                db::exec(
                    &txn,
                    "UPDATE enrolment SET awaited_at = COALESCE(awaited_at, $2), wake_at = $2 WHERE id = $1",
                    [w.id.into(), now.into()],
                )
                .await?;
            }
        }
        // Live sequences this event starts.
        let starts =
            live_starts(&txn, ev.organisation_id, seq::trigger_kind::EVENT, Some(&ev.event_type), None, None).await?;
        for s in starts {
            let def = defs.get(svc, &txn, org, s.version_id).await?;
            let seq::Trigger::Event { properties: tests, .. } = &def.trigger else { continue };
            if !seq::properties_match(tests, &props, now.date_naive()) {
                continue;
            }
            let bidx = def.correlation_key.as_ref().and_then(|k| props.get(k).map(|v| correlation(&bkey, k, v)));
            admit(svc, &txn, org, s.id, s.version_id, &def, ev.contact_id, Some(ev.event_id), bidx).await?;
        }
    }
    record_carried(&txn, &carried, now).await?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    db::exec(&txn, "DELETE FROM event_outbox WHERE event_id = ANY ($1)", [ids.into()]).await?;
    txn.commit().await?;
    Ok(events.len())
}

/// Add a batch's (organisation, event type, property name) triples to the catalogue publishing
/// checks against: one statement for the whole batch. Rows are inserted in key order, so two
/// workers writing overlapping batches take the same locks in the same order (no deadlock).
async fn record_carried<C: ConnectionTrait>(
    conn: &C,
    carried: &BTreeSet<(Uuid, String, String)>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    if carried.is_empty() {
        return Ok(());
    }
    let (mut orgs, mut types, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for (o, t, n) in carried {
        orgs.push(*o);
        types.push(t.clone());
        names.push(n.clone());
    }
    db::exec(
        conn,
        "INSERT INTO event_property_name (organisation_id, event_type, name, first_seen_at)
         SELECT u.org, u.type, u.name, $4 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(org, type, name)
         ORDER BY u.org, u.type, u.name
         ON CONFLICT DO NOTHING",
        [orgs.into(), types.into(), names.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// A live sequence a trigger starts, at its current version.
#[derive(FromQueryResult)]
struct Triggered {
    id: Uuid,
    version_id: Uuid,
}

/// The live sequences of an organisation whose current version starts on this trigger: its kind,
/// with the event type (events) or the list, segment or campaign (signals), optionally one
/// sequence only.
async fn live_starts(
    txn: &DatabaseTransaction,
    org: Uuid,
    kind: &str,
    event_type: Option<&str>,
    reference: Option<Uuid>,
    only: Option<Uuid>,
) -> ServiceResult<Vec<Triggered>> {
    db::all_as(
        txn,
        "SELECT s.id, v.id AS version_id FROM sequence s JOIN sequence_version v ON v.id = s.current_version_id
         WHERE s.organisation_id = $1 AND s.status = 'active' AND v.trigger_kind = $2
           AND ($3::text IS NULL OR v.trigger_event_type = $3) AND ($4::uuid IS NULL OR v.trigger_ref = $4)
           AND ($5::uuid IS NULL OR s.id = $5)
         ORDER BY s.id",
        [org.into(), kind.to_string().into(), event_type.map(str::to_string).into(), reference.into(), only.into()],
    )
    .await
    .map_err(Into::into)
}

/// A consent withdrawal (`purpose`) or a suppression (`None`) ends the contact's active
/// enrolments in versions that send email for that purpose (a suppression: any marketing or care
/// email), at once and wherever they are, as `unsubscribed` / `suppressed` in the trail. Read from
/// the version's plain copy (purposes are not PHI).
async fn end_withdrawn(
    svc: &Services,
    txn: &DatabaseTransaction,
    org: Uuid,
    contact: Uuid,
    purpose: Option<&str>,
) -> ServiceResult<()> {
    #[derive(FromQueryResult)]
    struct Inside {
        id: Uuid,
        visit: i32,
        step_id: String,
    }
    let inside: Vec<Inside> = db::all_as(
        txn,
        "SELECT e.id, e.visit, COALESCE(e.step_id, '') AS step_id
         FROM enrolment e JOIN sequence_version v ON v.id = e.version_id
         WHERE e.contact_id = $1 AND e.organisation_id = $2 AND e.state = 'active'
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(v.definition -> 'steps') st
                       WHERE st ->> 'kind' = 'send_email'
                         AND CASE WHEN $3::text IS NULL THEN st ->> 'purpose' <> 'transactional'
                                  ELSE st ->> 'purpose' = $3 END)
         ORDER BY e.id FOR UPDATE OF e",
        [contact.into(), org.into(), purpose.map(str::to_string).into()],
    )
    .await?;
    let (reason, detail) = match purpose {
        Some(p) => (EndReason::Unsubscribed, json!({ "signal": "consent_withdrawn", "purpose": p })),
        None => (EndReason::Suppressed, json!({ "signal": "suppressed" })),
    };
    for e in inside {
        end_enrolment(svc, txn, e.id, e.visit, &e.step_id, reason, detail.clone()).await?;
    }
    Ok(())
}

/// Act on a batch of signals, deleting their rows in the same transaction (each signal acts
/// exactly once): list additions, segment entries and campaign engagement admit their contacts
/// into the live sequences they start; consent withdrawals and suppressions end the contact's
/// enrolments (`end_withdrawn`). Returns how many signals were consumed.
pub async fn consume_signals(svc: &Services, limit: u32) -> ServiceResult<usize> {
    #[derive(FromQueryResult)]
    struct Signal {
        id: i64,
        organisation_id: Uuid,
        contact_id: Uuid,
        kind: String,
        ref_id: Option<Uuid>,
        sequence_id: Option<Uuid>,
        purpose: Option<String>,
    }
    let txn = svc.db().begin().await?;
    let signals: Vec<Signal> = db::all_as(
        &txn,
        "SELECT id, organisation_id, contact_id, kind, ref_id, sequence_id, purpose FROM sequence_signal
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        [i64::from(limit).into()],
    )
    .await?;
    if signals.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut defs = Definitions::default();
    for sg in &signals {
        let org = OrganisationId(sg.organisation_id);
        if sg.kind == "consent_withdrawn" || sg.kind == "suppressed" {
            end_withdrawn(svc, &txn, sg.organisation_id, sg.contact_id, sg.purpose.as_deref()).await?;
            continue;
        }
        // The live sequences this starts (a segment entry names its sequence: each keeps its own
        // view of the segment's members).
        let starts = live_starts(&txn, sg.organisation_id, &sg.kind, None, sg.ref_id, sg.sequence_id).await?;
        for s in starts {
            let def = defs.get(svc, &txn, org, s.version_id).await?;
            let why = json!({ "signal": sg.kind, "ref": sg.ref_id.map(|r| r.to_string()) });
            admit_because(svc, &txn, org, s.id, s.version_id, &def, sg.contact_id, None, None, why).await?;
        }
    }
    let ids: Vec<i64> = signals.iter().map(|s| s.id).collect();
    db::exec(&txn, "DELETE FROM sequence_signal WHERE id = ANY ($1)", [ids.into()]).await?;
    txn.commit().await?;
    Ok(signals.len())
}

/// How often a live sequence started by a segment compares the segment's members with those it
/// has seen (on the service's clock).
pub const SEGMENT_CHECK_SECS: i64 = 60;

/// Compare the members of one due segment trigger with those its sequence has seen: new members
/// become signals (entrants), members who left are forgotten (coming back is entering again).
/// The first look after publication only records the members. Returns whether a check was due.
pub async fn check_segments(svc: &Services) -> ServiceResult<bool> {
    #[derive(FromQueryResult)]
    struct Due {
        sequence_id: Uuid,
        organisation_id: Uuid,
        segment_id: Uuid,
        seen: bool,
    }
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    // One due check, claimed for this transaction (the sequence row is locked, so two processes
    // never compare the same members at once).
    let due: Option<Due> = db::one_as(
        &txn,
        "SELECT s.id AS sequence_id, s.organisation_id, v.trigger_ref AS segment_id, (c.checked_at IS NOT NULL) AS seen
         FROM sequence s JOIN sequence_version v ON v.id = s.current_version_id
         LEFT JOIN sequence_segment_check c ON c.sequence_id = s.id AND c.segment_id = v.trigger_ref
         WHERE s.status = 'active' AND v.trigger_kind = 'segment_entered' AND v.trigger_ref IS NOT NULL
           AND (c.checked_at IS NULL OR c.checked_at <= $1)
         ORDER BY c.checked_at NULLS FIRST LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
        [(now - Duration::seconds(SEGMENT_CHECK_SECS)).into()],
    )
    .await?;
    let Some(d) = due else {
        txn.commit().await?;
        return Ok(false);
    };
    let org = OrganisationId(d.organisation_id);
    let members = crate::segments::member_ids(svc, org, d.segment_id).await?.unwrap_or_default();
    db::exec(
        &txn,
        "WITH m AS (SELECT DISTINCT unnest($3::uuid[]) AS contact_id),
              gone AS (DELETE FROM sequence_segment_member s WHERE s.sequence_id = $1 AND s.segment_id = $2
                       AND NOT EXISTS (SELECT 1 FROM m WHERE m.contact_id = s.contact_id)),
              new AS (INSERT INTO sequence_segment_member (sequence_id, segment_id, contact_id)
                      SELECT $1, $2, m.contact_id FROM m JOIN contact c ON c.id = m.contact_id AND c.organisation_id = $4
                      ON CONFLICT DO NOTHING RETURNING contact_id)
         INSERT INTO sequence_signal (organisation_id, contact_id, kind, ref_id, sequence_id, created_at)
         SELECT $4, contact_id, 'segment_entered', $2, $1, $5 FROM new WHERE $6",
        [
            d.sequence_id.into(),
            d.segment_id.into(),
            members.into(),
            d.organisation_id.into(),
            now.into(),
            d.seen.into(),
        ],
    )
    .await?;
    db::exec(
        &txn,
        "INSERT INTO sequence_segment_check (sequence_id, segment_id, checked_at) VALUES ($1, $2, $3)
         ON CONFLICT (sequence_id, segment_id) DO UPDATE SET checked_at = EXCLUDED.checked_at",
        [d.sequence_id.into(), d.segment_id.into(), now.into()],
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

#[derive(FromQueryResult)]
struct Due {
    id: Uuid,
    organisation_id: Uuid,
    version_id: Uuid,
    contact_id: Uuid,
    trigger_event_id: Option<Uuid>,
    step_id: Option<String>,
    visit: i32,
    step_started_at: DateTime<Utc>,
    awaited_at: Option<DateTime<Utc>>,
    entered_at: DateTime<Utc>,
    time_zone: Option<String>,
    from_email: String,
    from_name: String,
    /// The trigger event's sealed properties, read with the claim.
    event_properties: Option<Vec<u8>>,
    /// Suppression and consent per purpose now, read with the claim (the send gate's inputs; the
    /// sender checks both again when it sends).
    suppressed: bool,
    consent_marketing: Option<bool>,
    consent_care: Option<bool>,
    consent_transactional: Option<bool>,
}

impl Due {
    fn granted(&self, purpose: ConsentPurpose) -> Option<bool> {
        match purpose {
            ConsentPurpose::Marketing => self.consent_marketing,
            ConsentPurpose::CareCommunications => self.consent_care,
            ConsentPurpose::Transactional => self.consent_transactional,
        }
    }
}

/// Claim up to `limit` due enrolments and run each until it waits or ends. Returns how many
/// enrolments moved.
///
/// The batch's step executions, queued emails and enrolment updates are written with a few
/// set-based statements at its end (`Writes::flush`), in the claiming transaction, together with
/// what the steps did (list changes, staff notices). What a step decides on (the trigger event,
/// suppression, consent) is read with the claim, so a send step costs no round trip of its own
/// unless a frequency cap applies. If anything in the batch fails, the transaction is
/// rolled back and the batch is run again one enrolment at a time, each in its own savepoint: one
/// that cannot run now is retried five minutes later and does not hold back the others.
pub async fn advance_due(svc: &Services, limit: u32) -> ServiceResult<usize> {
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let due = claim_due(&txn, now, limit).await?;
    if due.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut defs = Definitions::default();
    let mut w = Writes::default();
    let mut failed = None;
    for d in &due {
        if let Err(e) = run(svc, &txn, &mut defs, d, now, &mut w).await {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none() {
        match w.flush(svc, &txn, now).await {
            Ok(()) => {
                txn.commit().await?;
                return Ok(due.len());
            }
            Err(e) => failed = Some(e),
        }
    }
    txn.rollback().await?;
    if let Some(e) = failed {
        tracing::info!(error = %e.log_detail(), "a sequence batch failed; running it one enrolment at a time");
    }
    let txn = svc.db().begin().await?;
    let due = claim_due(&txn, now, limit).await?;
    for d in &due {
        let sp = txn.begin().await?;
        let mut w = Writes::default();
        let result = match run(svc, &sp, &mut defs, d, now, &mut w).await {
            Ok(()) => w.flush(svc, &sp, now).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => sp.commit().await?,
            Err(e) => {
                sp.rollback().await?;
                tracing::warn!(enrolment = %d.id, error = %e.log_detail(), "a sequence step failed; retrying in 5 minutes");
                db::exec(
                    &txn,
                    "UPDATE enrolment SET wake_at = $2 WHERE id = $1",
                    [d.id.into(), (now + Duration::minutes(5)).into()],
                )
                .await?;
            }
        }
    }
    txn.commit().await?;
    Ok(due.len())
}

async fn claim_due(txn: &DatabaseTransaction, now: DateTime<Utc>, limit: u32) -> ServiceResult<Vec<Due>> {
    Ok(db::all_as(
        txn,
        "SELECT e.id, e.organisation_id, e.version_id, e.contact_id, e.trigger_event_id, e.step_id, e.visit,
                e.step_started_at, e.awaited_at, e.entered_at, c.time_zone, s.from_email, s.from_name,
                pe.properties AS event_properties,
                EXISTS (SELECT 1 FROM suppression x WHERE x.organisation_id = c.organisation_id AND x.email_bidx = c.email_bidx) AS suppressed,
                (SELECT cc.granted FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = 'marketing') AS consent_marketing,
                (SELECT cc.granted FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = 'care_communications') AS consent_care,
                (SELECT cc.granted FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = 'transactional') AS consent_transactional
         FROM enrolment e
         JOIN sequence s ON s.id = e.sequence_id
         JOIN contact c ON c.id = e.contact_id
         LEFT JOIN patient_event pe ON pe.id = e.trigger_event_id AND pe.organisation_id = e.organisation_id
         WHERE e.state = 'active' AND e.wake_at <= $1 AND s.status IN ('active', 'archived')
         ORDER BY e.wake_at LIMIT $2
         FOR UPDATE OF e SKIP LOCKED",
        [now.into(), i64::from(limit).into()],
    )
    .await?)
}

/// The trail rows, queued emails and enrolment updates of a batch, written together at its end.
#[derive(Default)]
struct Writes {
    steps: Vec<Json>,
    parks: Vec<Json>,
    ends: Vec<Json>,
    sends: Vec<QueuedEmail>,
    /// Template versions' HTML (for their tracked links), read once per batch.
    html: HashMap<Uuid, Arc<String>>,
}

/// An email a send step queues, written with the batch (`message::enqueue_many`).
struct QueuedEmail {
    id: Uuid,
    organisation: OrganisationId,
    contact: Uuid,
    template: Uuid,
    version: Uuid,
    from_email: String,
    from_name: String,
    purpose: ConsentPurpose,
    enrolment: Uuid,
    step: String,
    event: Option<Uuid>,
    not_before: DateTime<Utc>,
}

impl Writes {
    #[allow(clippy::too_many_arguments)]
    fn step(&mut self, id: Uuid, visit: i32, step: &str, kind: &str, outcome: &str, detail: Json, at: DateTime<Utc>) {
        self.steps.push(json!({
            "enrolment_id": id, "visit": visit, "step_id": step, "kind": kind, "outcome": outcome,
            "detail": detail, "at": at,
        }));
    }
    fn park(
        &mut self,
        id: Uuid,
        step: &str,
        visit: i32,
        started: DateTime<Utc>,
        awaited: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) {
        self.parks.push(json!({
            "id": id, "step_id": step, "visit": visit, "started": started, "awaited": awaited, "until": until,
        }));
    }
    fn end(&mut self, id: Uuid, visit: i32, step: &str, reason: EndReason, detail: Json, now: DateTime<Utc>) {
        self.step(id, visit + 1, step, "end", reason.as_str(), detail, now);
        self.ends.push(json!({
            "id": id, "state": reason.state().as_str(), "reason": reason.as_str(), "visit": visit + 1, "step_id": step,
        }));
    }
    async fn flush<C: ConnectionTrait>(self, svc: &Services, conn: &C, now: DateTime<Utc>) -> ServiceResult<()> {
        if !self.sends.is_empty() {
            let empty = Arc::new(String::new());
            let msgs: Vec<(Uuid, NewMessage<'_>)> = self
                .sends
                .iter()
                .map(|m| {
                    let html = self.html.get(&m.version).unwrap_or(&empty);
                    (
                        m.id,
                        NewMessage {
                            organisation: m.organisation,
                            contact: m.contact,
                            api_key: None,
                            template: m.template,
                            version: m.version,
                            version_html: html.as_str(),
                            from_email: m.from_email.clone(),
                            from_name: m.from_name.clone(),
                            data: None::<&Phi<serde_json::Map<String, Json>>>,
                            purpose: m.purpose,
                            source: DeliverySource::SequenceStep,
                            sequence: Some(SequenceRef { enrolment: m.enrolment, step: &m.step, event: m.event }),
                            not_before: m.not_before,
                        },
                    )
                })
                .collect();
            message::enqueue_many(svc, conn, &msgs).await?;
        }
        // `LIMIT jsonb_array_length(..)` tells the planner the row count (see campaigns' record()).
        if !self.steps.is_empty() {
            db::exec(
                conn,
                "INSERT INTO enrolment_step (enrolment_id, visit, step_id, kind, outcome, detail, at)
                 SELECT enrolment_id, visit, step_id, kind, outcome, detail, at
                 FROM jsonb_to_recordset($1) AS x(enrolment_id uuid, visit int, step_id text, kind text, outcome text, detail jsonb, at timestamptz)
                 LIMIT jsonb_array_length($1)",
                [Json::Array(self.steps).into()],
            )
            .await?;
        }
        if !self.parks.is_empty() {
            db::exec(
                conn,
                "UPDATE enrolment e SET step_id = NULLIF(p.step_id, ''), visit = p.visit, step_started_at = p.started,
                        awaited_at = p.awaited, wake_at = p.until
                 FROM (SELECT * FROM jsonb_to_recordset($1)
                         AS x(id uuid, step_id text, visit int, started timestamptz, awaited timestamptz, until timestamptz)
                       LIMIT jsonb_array_length($1)) p
                 WHERE e.id = p.id",
                [Json::Array(self.parks).into()],
            )
            .await?;
        }
        if !self.ends.is_empty() {
            db::exec(
                conn,
                "UPDATE enrolment e SET state = p.state, end_reason = p.reason, ended_at = $2, wake_at = NULL,
                        visit = p.visit, step_id = NULLIF(p.step_id, '')
                 FROM (SELECT * FROM jsonb_to_recordset($1) AS x(id uuid, state text, reason text, visit int, step_id text)
                       LIMIT jsonb_array_length($1)) p
                 WHERE e.id = p.id AND e.state = 'active'",
                [Json::Array(self.ends).into(), now.into()],
            )
            .await?;
        }
        Ok(())
    }
}

/// When the awaited thing of a wait-for step happened (since the enrolment began).
async fn awaited_since(
    svc: &Services,
    conn: &DatabaseTransaction,
    d: &Due,
    def: &SequenceDefinition,
    awaited: &Awaited,
) -> ServiceResult<Option<DateTime<Utc>>> {
    match awaited {
        Awaited::Opened { step } | Awaited::Clicked { step } => {
            let activity = if matches!(awaited, Awaited::Opened { .. }) { "opened" } else { "clicked" };
            engaged_at(conn, d.id, step, activity).await
        }
        Awaited::Event { event } => {
            #[derive(FromQueryResult)]
            struct Ev {
                id: Uuid,
                received_at: DateTime<Utc>,
            }
            let candidates: Vec<Ev> = db::all_as(
                conn,
                "SELECT id, received_at FROM patient_event
                 WHERE contact_id = $1 AND organisation_id = $2 AND event_type = $3 AND received_at >= $4
                   AND id IS DISTINCT FROM $5
                 ORDER BY received_at, id LIMIT 50",
                [
                    d.contact_id.into(),
                    d.organisation_id.into(),
                    event.event_type.clone().into(),
                    d.entered_at.into(),
                    d.trigger_event_id.into(),
                ],
            )
            .await?;
            if !event.correlated {
                return Ok(candidates.first().map(|c| c.received_at));
            }
            let (Some(key), Some(trigger)) = (&def.correlation_key, d.trigger_event_id) else { return Ok(None) };
            let org = OrganisationId(d.organisation_id);
            let bkey = contacts::bidx_key(svc, conn, org).await?;
            let mine = crate::events::stored_properties(svc, conn, org, trigger)
                .await?
                .get(key)
                .map(|v| correlation(&bkey, key, v));
            if mine.is_none() {
                return Ok(None);
            }
            for c in candidates {
                let theirs = crate::events::stored_properties(svc, conn, org, c.id)
                    .await?
                    .get(key)
                    .map(|v| correlation(&bkey, key, v));
                if theirs == mine {
                    return Ok(Some(c.received_at));
                }
            }
            Ok(None)
        }
    }
}

async fn engaged_at<C: ConnectionTrait>(
    conn: &C,
    enrolment: Uuid,
    step: &str,
    activity: &str,
) -> ServiceResult<Option<DateTime<Utc>>> {
    Ok(db::scalar::<Option<DateTime<Utc>>, _>(
        conn,
        "SELECT min(g.occurred_at) FROM api_message m JOIN engagement_event g ON g.delivery_id = m.id
         WHERE m.enrolment_id = $1 AND m.step_id = $2 AND g.activity = $3 AND NOT g.machine",
        [enrolment.into(), step.to_string().into(), activity.to_string().into()],
    )
    .await?
    .flatten())
}

/// Run one enrolment from its current step until it waits or ends (at most
/// `MAX_STEPS_PER_WAKE` steps; then it is due again at once).
async fn run(
    svc: &Services,
    txn: &DatabaseTransaction,
    defs: &mut Definitions,
    d: &Due,
    now: DateTime<Utc>,
    w: &mut Writes,
) -> ServiceResult<()> {
    let org = OrganisationId(d.organisation_id);
    let def = defs.get(svc, txn, org, d.version_id).await?;
    let props = match (d.trigger_event_id, &d.event_properties) {
        (Some(e), Some(sealed)) => {
            let plain = svc.keys().open(txn, &crate::events::aad(org, e), &Sealed::from_bytes(sealed.clone())?).await?;
            let j: Json =
                serde_json::from_slice(&plain).map_err(|_| ServiceError::internal("event properties are malformed"))?;
            crate::events::properties_from_json(&j)
        }
        _ => BTreeMap::new(),
    };
    let zone = zone(d.time_zone.as_deref());
    let mut step_id = d.step_id.clone();
    let mut visit = d.visit;
    let mut started = d.step_started_at;
    let mut awaited = d.awaited_at;
    for _ in 0..seq::MAX_STEPS_PER_WAKE {
        let Some(sid) = step_id.clone() else {
            w.end(d.id, visit, "", EndReason::Completed, json!({}), now);
            return Ok(());
        };
        let Some(step) = def.step(&sid) else {
            w.end(d.id, visit, &sid, EndReason::Broken, json!({}), now);
            return Ok(());
        };
        let kind = step.kind.code();
        let awaited_at = match &step.kind {
            StepKind::WaitFor { event, .. } => match awaited {
                Some(t) => Some(t),
                None => awaited_since(svc, txn, d, &def, event).await?,
            },
            _ => None,
        };
        let branch_holds = match &step.kind {
            StepKind::Branch { test: BranchTest::Engaged { clicked, step }, .. } => {
                Some(engaged_at(txn, d.id, step, if *clicked { "clicked" } else { "opened" }).await?.is_some())
            }
            StepKind::Branch { test: BranchTest::Contact { root }, .. } => {
                let catalogue = contacts::fields::catalogue(svc, txn, org).await?;
                let fields = domain::segments::field_catalogue(&catalogue);
                Some(
                    crate::segments::eval::matches_contact(svc, org, root, &fields, catalogue, now, d.contact_id)
                        .await?,
                )
            }
            _ => None,
        };
        let facts = Facts {
            now,
            step_started_at: started,
            zone: &zone,
            event: &props,
            awaited_at,
            branch_holds,
            draw: seq::draw(d.id, visit + 1),
        };
        // Where the enrolment goes after this step, and what the trail says about it.
        let (next, outcome, detail): (Option<String>, &str, Json) = match seq::decide(step, &facts) {
            Decision::Next { next, code } => {
                let detail = match code {
                    "waited" | "timed_out" => json!({ "since": started.to_rfc3339() }),
                    "split" => json!({ "draw": facts.draw }),
                    _ => json!({}),
                };
                (next, code, detail)
            }
            Decision::Sleep { until, .. } => {
                w.park(d.id, &sid, visit, started, awaited_at, until);
                return Ok(());
            }
            Decision::End(reason) => {
                w.end(d.id, visit, &sid, reason, json!({}), now);
                return Ok(());
            }
            Decision::UpdateList { list, add, next } => {
                if add {
                    contacts::lists::add_members(svc, txn, org, list, &[d.contact_id], "sequence").await?;
                } else {
                    db::exec(
                        txn,
                        "UPDATE list_member SET status = 'unsubscribed', updated_at = $4
                         WHERE list_id = $1 AND contact_id = $2 AND organisation_id = $3",
                        [list.into(), d.contact_id.into(), org.0.into(), now.into()],
                    )
                    .await?;
                }
                (next, if add { "list_added" } else { "list_removed" }, json!({ "list": list.to_string() }))
            }
            Decision::Notify { user, next } => {
                // The notice is a job written with this step (ids only; one per step visit).
                let notice = super::notify::StaffNotice {
                    organisation_id: org.0,
                    enrolment_id: d.id,
                    visit: visit + 1,
                    user_id: user,
                };
                crate::outbox::push(txn, &notice).await?;
                (next, "staff_notified", json!({ "user": user.to_string() }))
            }
            Decision::Send { template, template_version, purpose, next } => {
                let gate = gate(txn, &def, d, purpose, now, &zone, &w.sends).await?;
                match gate {
                    Gate::Open => {
                        let version =
                            template_version.ok_or_else(|| ServiceError::internal("an unpinned send step"))?;
                        if let std::collections::hash_map::Entry::Vacant(slot) = w.html.entry(version) {
                            let html =
                                crate::campaigns::version_html(txn, version).await?.ok_or(ServiceError::NotFound)?;
                            slot.insert(Arc::new(html));
                        }
                        let id = Uuid::now_v7();
                        w.sends.push(QueuedEmail {
                            id,
                            organisation: org,
                            contact: d.contact_id,
                            template,
                            version,
                            from_email: d.from_email.clone(),
                            from_name: d.from_name.clone(),
                            purpose,
                            enrolment: d.id,
                            step: sid.clone(),
                            event: d.trigger_event_id,
                            not_before: now,
                        });
                        (next, "sent", json!({ "delivery": id.to_string() }))
                    }
                    Gate::CappedSkip => (next, "frequency_capped_skip", json!({})),
                    Gate::Quiet(until) | Gate::CappedWait(until) => {
                        w.park(d.id, &sid, visit, started, awaited_at, until);
                        return Ok(());
                    }
                    Gate::NoConsent | Gate::Suppressed => {
                        w.step(d.id, visit + 1, &sid, kind, gate.code(), json!({}), now);
                        let reason =
                            if gate == Gate::Suppressed { EndReason::Suppressed } else { EndReason::Unsubscribed };
                        w.end(d.id, visit + 1, &sid, reason, json!({}), now);
                        return Ok(());
                    }
                }
            }
        };
        w.step(d.id, visit + 1, &sid, kind, outcome, detail, now);
        visit += 1;
        step_id = next;
        started = now;
        awaited = None;
    }
    // The step budget of one wake is used up: store the position, due again at once.
    w.park(d.id, step_id.as_deref().unwrap_or(""), visit, started, None, now);
    Ok(())
}

/// Consent, suppression (both read with the claim), quiet hours and the frequency cap (read now,
/// only when one applies). The sender checks consent and suppression again when it sends.
async fn gate(
    txn: &DatabaseTransaction,
    def: &SequenceDefinition,
    d: &Due,
    purpose: ConsentPurpose,
    now: DateTime<Utc>,
    zone: &Zone,
    pending: &[QueuedEmail],
) -> ServiceResult<Gate> {
    let mut recent: Vec<DateTime<Utc>> =
        match &def.frequency_cap {
            Some(cap) if purpose != ConsentPurpose::Transactional => db::scalars(
                txn,
                "SELECT COALESCE(d.accepted_at, d.updated_at) FROM delivery d LEFT JOIN api_message m ON m.id = d.id
                 WHERE d.contact_id = $1 AND d.state IN ('sent', 'queued', 'deferred')
                   AND (d.source = 'campaign' OR (d.source = 'sequence_step' AND m.purpose <> 'transactional'))
                   AND COALESCE(d.accepted_at, d.updated_at) > $2",
                [d.contact_id.into(), (now - Duration::days(i64::from(cap.days))).into()],
            )
            .await?,
            _ => Vec::new(),
        };
    // Emails this batch queued for the contact count too (they are written at its end).
    if def.frequency_cap.is_some() && purpose != ConsentPurpose::Transactional {
        recent.extend(
            pending
                .iter()
                .filter(|m| m.contact == d.contact_id && m.purpose != ConsentPurpose::Transactional)
                .map(|m| m.not_before),
        );
    }
    Ok(seq::send_gate(def, purpose, d.suppressed, d.granted(purpose), &recent, now, zone))
}

/// One pass of the engine: events first (they may wake or end enrolments), then due enrolments.
/// Returns (events consumed, enrolments moved).
pub async fn tick(svc: &Services, batch: u32) -> ServiceResult<(usize, usize)> {
    let events = consume_events(svc, batch).await?
        + consume_signals(svc, batch).await?
        + usize::from(check_segments(svc).await?);
    let moved = advance_due(svc, batch).await?;
    Ok((events, moved))
}
