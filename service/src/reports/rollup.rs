//! The report rollup: facts captured by triggers into `report_pending` (engagement events,
//! delivery outcomes, suppressions; see migration m20261231_000001) become hourly aggregates in
//! `report_hour` (per source; by local day too, in `report_source_day`) and `report_org_hour` (per
//! organisation).
//!
//! Invariants:
//! - Exactly once: a batch deletes the pending rows it reads and adds their counts in the same
//!   transaction; a crash rolls both back.
//! - Lanes: facts are split by delivery into [`LANES`] lanes rolled up side by side (one
//!   connection each), so every fact of a delivery goes through one lane, in order, and the
//!   per-delivery state (`report_first`) is never shared. One batch per lane runs at a time (a
//!   transaction-level advisory lock per lane, held with a shared one that a rebuild takes
//!   exclusively). A batch stages its aggregates in temporary tables, then adds them to the shared
//!   aggregate tables under a merge lock held to its commit: lanes never hold some of those rows
//!   while waiting for others, so they cannot deadlock, and only that short merge is serial.
//! - Unique figures count each delivery once, at its *earliest* event of the kind, whatever the
//!   order facts arrive in: `report_first` keeps that time, and an earlier fact arriving later
//!   moves the count from the old hour to the new one.
//! - Hours are local hours in the organisation's time zone at rollup time. A new zone sets
//!   `organisation.report_rebuild_requested_at`; [`rebuild`] then clears the organisation's rollups
//!   and re-queues its raw facts in one statement (one snapshot), so nothing is lost or counted
//!   twice against facts arriving meanwhile.
//! - No contact data is read or written: deliveries, activities, times and ids of campaigns and
//!   sequences only.

use crate::db;
use crate::error::ServiceResult;
use crate::services::Services;
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

/// A batch's engagement facts with their first-event kind (1 human open, 2 machine open,
/// 3 human click, 4 unsubscribe), and each human click on a link again as 100 + its position.
const FK_OF_BATCH: &str = "SELECT b.*, CASE WHEN activity = 'opened' AND NOT machine THEN 1
                                WHEN activity = 'opened' THEN 2
                                WHEN activity = 'clicked' AND NOT machine THEN 3
                                WHEN activity = 'unsubscribed' THEN 4 END::smallint AS fk
        FROM report_batch b WHERE kind = 1
        UNION ALL
        SELECT b.*, (100 + link_position)::smallint AS fk FROM report_batch b
        WHERE kind = 1 AND activity = 'clicked' AND NOT machine AND link_position BETWEEN 0 AND 199";

/// Advisory-lock key of the rollup ("report rollup"): shared by every lane's batch, exclusive for
/// a rebuild.
const LOCK: i64 = 0x7265_706f_7274_0001;
/// Advisory-lock key of a batch's merge into the shared aggregate tables.
const MERGE: i64 = 0x7265_706f_7274_0002;
/// Advisory-lock key of lane `n` is `LANE + n`.
const LANE: i64 = 0x7265_706f_7274_0100;
/// Pending facts rolled up per transaction (per lane). A batch's fixed costs (planning, the
/// temporary tables' statistics, the merge's upserts, whose rows grow more slowly than the batch)
/// are spread over more facts: on the same rebuilt queue of a 2M-event bench, alternating sizes
/// in one run (`scripts/bench reports --compare-batches …`), 200,000 caught up ~6% faster than
/// 100,000 (median of 8 runs each); ~2% in a pair at 10M events.
pub const BATCH: i64 = 200_000;
/// Lanes rolled up side by side. Two keep both cores of a small database server busy: a batch's
/// work is one PostgreSQL backend's, and all but the merge of its aggregates runs in parallel.
pub const LANES: i64 = 2;
/// A pending fact's lane: by its delivery (a random id), so one delivery's facts share a lane;
/// facts without a delivery (suppressions) go to lane 0.
const LANE_OF: &str = "coalesce(get_byte(uuid_send(delivery_id), 15), 0) % $LANES = $LANE";

fn lane_of(lanes_param: usize, lane_param: usize) -> String {
    LANE_OF.replace("$LANES", &format!("${lanes_param}")).replace("$LANE", &format!("${lane_param}"))
}

/// Whole hours from a delivery's acceptance to `{at}`, within 0..=720 (720: thirty days or later).
pub const SINCE_HOURS: &str = "least(720, greatest(0, floor(extract(epoch FROM ({at} - sent_at)) / 3600)))::int";

/// What a [`catch_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupRun {
    pub facts: u64,
    pub batches: u64,
    pub rebuilt_organisations: u64,
}

/// Roll up until nothing is pending (first rebuilding organisations that asked for it). Returns
/// at once, doing nothing, when another rollup holds the lock.
pub async fn catch_up(svc: &Services, batch: i64) -> ServiceResult<RollupRun> {
    let mut run = RollupRun::default();
    let requested: Vec<Uuid> = db::scalars(
        svc.db(),
        "SELECT id FROM organisation WHERE report_rebuild_requested_at IS NOT NULL ORDER BY id",
        [],
    )
    .await?;
    for org in requested {
        if rebuild(svc, org).await? {
            run.rebuilt_organisations += 1;
        }
    }
    let lanes = (0..LANES).map(|lane| catch_up_lane(svc, lane, LANES, batch));
    for r in futures::future::try_join_all(lanes).await? {
        run.facts += r.facts;
        run.batches += r.batches;
    }
    Ok(run)
}

/// [`catch_up`] in one lane, without the rebuilds: the reference the benchmark measures the lanes
/// against. Safe beside other rollups (its batches hold every lane's lock).
pub async fn catch_up_one_lane(svc: &Services, batch: i64) -> ServiceResult<RollupRun> {
    catch_up_lane(svc, 0, 1, batch).await
}

/// Roll up lane `lane` of `lanes` (a divisor of [`LANES`]) until nothing of it is pending; stops
/// at once when another rollup holds it.
async fn catch_up_lane(svc: &Services, lane: i64, lanes: i64, batch: i64) -> ServiceResult<RollupRun> {
    let mut run = RollupRun::default();
    // Batches walk the queue upwards from the last id taken, so no batch scans the index
    // entries of rows deleted by the ones before it (dead until vacuumed: taking "the first N"
    // each time would grow quadratically). A fact with a smaller id committed late is picked up
    // by a pass from the start; the run ends when such a pass finds nothing.
    let mut after = 0i64;
    let mut from_start = true;
    loop {
        match one_batch(svc, lane, lanes, batch, after).await? {
            None => return Ok(run),
            Some((0, _)) if from_start => return Ok(run),
            Some((0, _)) => {
                after = 0;
                from_start = true;
            }
            Some((n, last)) => {
                run.facts += n;
                run.batches += 1;
                after = last;
                from_start = false;
            }
        }
    }
}

/// Facts in a catch-up past which the emptied queue is vacuumed at once: until then its dead
/// rows make every "anything pending?" check scan them (the reports ask on every page).
pub const TIDY_AFTER: u64 = 200_000;

/// After a large catch-up, vacuum the queue (outside any transaction; autovacuum would get
/// there too, later). A no-op for small runs.
pub async fn tidy(svc: &Services, run: &RollupRun) -> ServiceResult<()> {
    if run.facts >= TIDY_AFTER {
        db::exec(svc.db(), "VACUUM (ANALYZE) report_pending", []).await?;
    }
    Ok(())
}

/// Clear an organisation's rollups and queue every raw fact of it again (in its current time
/// zone). Returns false when another rollup holds the lock (the request stays for the next run).
pub async fn rebuild(svc: &Services, org: Uuid) -> ServiceResult<bool> {
    let txn = svc.db().begin().await?;
    if !db::scalar::<bool, _>(&txn, "SELECT pg_try_advisory_xact_lock($1)", [LOCK.into()]).await?.unwrap_or(false) {
        return Ok(false);
    }
    for table in [
        "report_hour",
        "report_source_day",
        "report_org_hour",
        "report_first",
        "report_since",
        "report_link",
        "report_split",
    ] {
        db::exec(&txn, &format!("DELETE FROM {table} WHERE organisation_id = $1"), [org.into()]).await?;
    }
    // One statement, one snapshot: a fact committed after it has its pending row kept (not
    // deleted, not re-queued); one committed before is re-queued from the raw table and its
    // pending row deleted.
    db::exec(
        &txn,
        "WITH gone AS (DELETE FROM report_pending WHERE organisation_id = $1),
         engagement AS (
            INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at, client,
                family, source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
            SELECT e.organisation_id, 1, e.delivery_id, e.campaign_id, e.activity, e.machine, e.link_position, e.occurred_at, e.client,
                d.domain_family, s.source_kind, s.source_id, s.step_id, d.accepted_at, d.audience_kind, d.audience_id
            FROM engagement_event e
            LEFT JOIN delivery d ON d.id = e.delivery_id
            CROSS JOIN LATERAL report_source(d.source, coalesce(d.campaign_id, e.campaign_id), e.delivery_id) s
            WHERE e.organisation_id = $1 AND e.delivery_id IS NOT NULL AND e.activity IN ('opened', 'clicked', 'unsubscribed')),
         outcomes AS (
            INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, family, tls,
                source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
            SELECT d.organisation_id, 2, d.id, d.campaign_id, d.state,
                CASE WHEN d.state = 'bounced' THEN hermetic_bounce_class(d.smtp_status) END,
                coalesce(d.accepted_at, d.recorded_at, d.updated_at), d.domain_family, d.tls_version,
                s.source_kind, s.source_id, s.step_id, d.accepted_at, d.audience_kind, d.audience_id
            FROM delivery d CROSS JOIN LATERAL report_source(d.source, d.campaign_id, d.id) s
            WHERE d.organisation_id = $1 AND d.state IN ('sent', 'bounced', 'failed')),
         deferrals AS (
            INSERT INTO report_pending (organisation_id, kind, delivery_id, activity, at,
                source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
            SELECT f.organisation_id, 4, f.delivery_id, 'deferred', f.at,
                s.source_kind, s.source_id, s.step_id, d.accepted_at, d.audience_kind, d.audience_id
            FROM delivery_deferral f
            LEFT JOIN delivery d ON d.id = f.delivery_id
            CROSS JOIN LATERAL report_source(d.source, d.campaign_id, f.delivery_id) s
            WHERE f.organisation_id = $1),
         suppressions AS (
            INSERT INTO report_pending (organisation_id, kind, activity, at)
            SELECT organisation_id, 3, reason, created_at FROM suppression WHERE organisation_id = $1)
         UPDATE organisation SET report_rebuild_requested_at = NULL WHERE id = $1",
        [org.into()],
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Roll up one batch of lane `lane` of `lanes`: the lane's pending facts with ids in
/// [first, first + batch × lanes), first being the lane's smallest pending id above `after`.
/// None when another rollup holds the lane (or rebuilds); otherwise how many facts, and the top of
/// the range taken.
async fn one_batch(svc: &Services, lane: i64, lanes: i64, batch: i64, after: i64) -> ServiceResult<Option<(u64, i64)>> {
    if lanes < 1 || LANES % lanes != 0 || !(0..lanes).contains(&lane) {
        return Err(crate::error::ServiceError::internal("a rollup lane count must divide LANES"));
    }
    let txn = svc.db().begin().await?;
    // The locks of every one of the LANES lanes this lane covers (all of them for one lane).
    let locks = (lane..LANES)
        .step_by(lanes as usize)
        .map(|l| format!("pg_try_advisory_xact_lock({})", LANE + l))
        .collect::<Vec<_>>()
        .join(" AND ");
    if !db::scalar::<bool, _>(&txn, &format!("SELECT pg_try_advisory_xact_lock_shared($1) AND {locks}"), [LOCK.into()])
        .await?
        .unwrap_or(false)
    {
        return Ok(None);
    }
    // A batch is all or nothing (its pending rows come back with it), so it need not wait for
    // its commit record to reach the disk: a crash just before loses the batch and its deletes
    // alike, and the next run rolls it up again. Aggregates of a batch fit in memory.
    db::exec(&txn, "SET LOCAL synchronous_commit = off", []).await?;
    db::exec(&txn, "SET LOCAL work_mem = '256MB'", []).await?;
    // Each statement runs once per batch: compiling it to machine code costs more than it saves.
    db::exec(&txn, "SET LOCAL jit = off", []).await?;
    // The batch's temporary tables are analysed for the planner's row counts and rough shares:
    // a sample of 3,000 rows gives those, where the default 30,000 took ~95 ms a batch.
    db::exec(&txn, "SET LOCAL default_statistics_target = 10", []).await?;
    // Ids come from one sequence, so a range of values is about `batch` facts (fewer across the
    // gaps of rolled-back inserts): it is read straight off the key, where "the next N rows"
    // was planned as a scan and sort of the whole queue when its statistics were stale.
    let first = db::scalar::<i64, _>(
        &txn,
        &format!("SELECT coalesce(min(id), 0)::int8 FROM report_pending WHERE id > $1 AND {}", lane_of(2, 3)),
        [after.into(), lanes.into(), lane.into()],
    )
    .await?
    .unwrap_or(0);
    if first == 0 {
        txn.commit().await?;
        return Ok(Some((0, after)));
    }
    let last = first.saturating_add(batch.max(1).saturating_mul(lanes) - 1);
    let n = roll(&txn, lane, lanes, first, last).await?;
    txn.commit().await?;
    Ok(Some((n, last)))
}

/// Roll up a lane's pending facts with ids in [first, last]; returns how many there were.
async fn roll<C: ConnectionTrait>(conn: &C, lane: i64, lanes: i64, first: i64, last: i64) -> ServiceResult<u64> {
    // A batch's facts belong to a few organisations: their time zones are hashed once, where a
    // nested loop (the plan for a queue of unknown size) looked the organisation up per fact.
    db::exec(conn, "SET LOCAL enable_nestloop = off", []).await?;
    // The batch with its local hour. Facts come attributed to their source (a sequence email's
    // is its sequence and step) and carry their delivery's acceptance time, provider family and
    // audience part, copied at capture (m20261231_000004): only an event captured before its
    // delivery's acceptance was recorded has to look them up.
    let taken = db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_batch ON COMMIT DROP AS
         WITH taken AS (
            -- A range of ids, so the delete walks the index (an IN list plans as a scan of the
            -- whole queue).
            DELETE FROM report_pending WHERE id >= $1 AND id <= $2 AND {}
            RETURNING id, organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, detail, at, sign,
                family, tls, client, source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
         SELECT t.id AS pending_id, t.organisation_id, t.kind, t.delivery_id, t.activity, t.machine, t.link_position, t.detail, t.at, t.sign,
            o.time_zone,
            -- (Each look-up runs only for the few events that need it.)
            coalesce(t.sent_at, CASE WHEN t.kind = 1 THEN (SELECT d.accepted_at FROM delivery d WHERE d.id = t.delivery_id) END)
                AS sent_at,
            -- An outcome's provider family as it was then; an event's is its delivery's.
            CASE WHEN t.kind = 2 THEN t.family
                 ELSE coalesce(t.family, (SELECT d.domain_family FROM delivery d WHERE d.id = t.delivery_id)) END AS family,
            t.tls, t.client,
            t.audience_kind, t.audience_id,
            date_trunc('hour', t.at AT TIME ZONE o.time_zone) AS hour,
            CASE WHEN t.kind = 3 THEN 0 ELSE t.source_kind END::smallint AS source_kind,
            CASE WHEN t.kind = 3 THEN NULL ELSE t.source_id END AS source_id,
            CASE WHEN t.kind = 3 THEN '' ELSE coalesce(t.step_id, '') END AS step_id
         FROM taken t
         JOIN organisation o ON o.id = t.organisation_id",
            lane_of(3, 4)
        ),
        [first.into(), last.into(), lanes.into(), lane.into()],
    )
    .await?;
    db::exec(conn, "SET LOCAL enable_nestloop TO DEFAULT", []).await?;
    if taken == 0 {
        db::exec(conn, "DROP TABLE report_batch", []).await?;
        return Ok(0);
    }
    // The planner knows nothing of a new temporary table: without statistics it plans the
    // joins below for a handful of rows.
    db::exec(conn, "ANALYZE report_batch", []).await?;
    // The two statements below look up `report_first` (and raw events) by key, one probe per
    // candidate, whatever the statistics say: planned while the table is empty (a new
    // installation, a rebuild), a sequential scan looks free, and it then scans every row the
    // other lane inserts meanwhile, once per candidate (a 2-lane catch-up of 0.5M facts took
    // 38 s instead of 4).
    db::exec(conn, "SET LOCAL enable_seqscan = off", []).await?;
    // A reclassified event (a click found to be a link scanner's after it was counted) comes as
    // −1 of its old kind: where that kind's counted first was such an event, the first is looked
    // up again in the raw events of the delivery (which may hold facts still pending: when their
    // turn comes they are not earlier, so nothing counts twice). The count moves to the new first
    // or, with none left, goes.
    db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_moved ON COMMIT DROP AS
             WITH gone AS (
                SELECT DISTINCT ON (delivery_id, fk) organisation_id, delivery_id, fk, sent_at, time_zone, source_kind,
                    coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id, step_id, family,
                    audience_kind, audience_id
                FROM ({FK_OF_BATCH}) x
                WHERE sign = -1 AND fk IS NOT NULL ORDER BY delivery_id, fk),
             again AS (
                SELECT g.*, r.at, r.client, f.at AS old_at, f.client AS old_client
                FROM gone g
                JOIN report_first f ON f.delivery_id = g.delivery_id AND f.kind = g.fk
                LEFT JOIN LATERAL (
                    SELECT e.occurred_at AS at, CASE WHEN g.fk = 1 THEN e.client END AS client
                    FROM engagement_event e
                    WHERE e.delivery_id = g.delivery_id
                      AND e.activity = CASE WHEN g.fk IN (1, 2) THEN 'opened' WHEN g.fk = 4 THEN 'unsubscribed' ELSE 'clicked' END
                      AND CASE WHEN g.fk = 2 THEN e.machine WHEN g.fk = 4 THEN true ELSE NOT e.machine END
                      AND (g.fk < 100 OR e.link_position = g.fk - 100)
                    ORDER BY e.occurred_at, coalesce(CASE WHEN g.fk = 1 THEN e.client END, 0) LIMIT 1) r ON true
                WHERE (f.at, coalesce(f.client, 0)) IS DISTINCT FROM (r.at, coalesce(r.client, 0))),
             moved AS (
                UPDATE report_first f SET at = a.at, client = a.client FROM again a
                WHERE f.delivery_id = a.delivery_id AND f.kind = a.fk AND a.at IS NOT NULL),
             dropped AS (
                DELETE FROM report_first f USING again a
                WHERE f.delivery_id = a.delivery_id AND f.kind = a.fk AND a.at IS NULL)
             SELECT organisation_id, delivery_id, fk, at, sent_at, time_zone, source_kind, source_id, step_id, family,
                client, audience_kind, audience_id, old_at, old_client
             FROM again"
        ),
        [],
    )
    .await?;
    // Unique figures: a delivery's earliest event of each kind in the batch (per link for human
    // clicks too), against the one already counted. Where the batch's is earlier (or there was
    // none), the count moves to it.
    db::exec(
        conn,
        "WITH firsts AS (
            SELECT organisation_id, delivery_id, activity, machine, link_position, at, sent_at, time_zone, source_kind, source_id,
                step_id, family, client, audience_kind, audience_id,
                CASE WHEN activity = 'opened' AND NOT machine THEN 1
                             WHEN activity = 'opened' THEN 2
                             WHEN activity = 'clicked' AND NOT machine THEN 3
                             WHEN activity = 'unsubscribed' THEN 4 END::smallint AS fk
            FROM report_batch b WHERE kind = 1 AND sign = 1
            UNION ALL
            SELECT organisation_id, delivery_id, activity, machine, link_position, at, sent_at, time_zone, source_kind, source_id,
                step_id, family, client, audience_kind, audience_id,
                (100 + link_position)::smallint AS fk
            FROM report_batch b
            WHERE kind = 1 AND sign = 1 AND activity = 'clicked' AND NOT machine AND link_position BETWEEN 0 AND 199),
         cand AS (
            SELECT DISTINCT ON (delivery_id, fk) organisation_id, delivery_id, fk, at, sent_at, time_zone, source_kind,
                coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id, step_id,
                family, CASE WHEN fk = 1 THEN client END AS client, audience_kind, audience_id
            FROM firsts WHERE fk IS NOT NULL
            ORDER BY delivery_id, fk, at, coalesce(client, 0)),
         -- (Of two first opens at the same instant, the smaller client code wins, as in `raw`.)
         -- One probe of the key per candidate (LIMIT keeps it a probe): a hash join would scan
         -- all of report_first, which grows with every delivery ever opened.
         moved AS (
            SELECT c.*, f.at AS old_at, f.client AS old_client FROM cand c
            LEFT JOIN LATERAL (
                SELECT f.at, f.client FROM report_first f WHERE f.delivery_id = c.delivery_id AND f.kind = c.fk LIMIT 1
            ) f ON true
            WHERE f.at IS NULL OR (f.at, coalesce(f.client, 0)) > (c.at, coalesce(c.client, 0))),
         -- A new first is a plain insert: the probe found none, and no other rollup writes this
         -- delivery's firsts meanwhile (its lane's lock), so there is no conflict to arbitrate.
         added AS (
            INSERT INTO report_first (organisation_id, delivery_id, kind, at, client)
            SELECT organisation_id, delivery_id, fk, at, client FROM moved WHERE old_at IS NULL),
         up AS (
            UPDATE report_first f SET at = m.at, client = m.client FROM moved m
            WHERE m.old_at IS NOT NULL AND f.delivery_id = m.delivery_id AND f.kind = m.fk)
         INSERT INTO report_moved
         SELECT organisation_id, delivery_id, fk, at, sent_at, time_zone, source_kind, source_id, step_id, family,
            client, audience_kind, audience_id, old_at, old_client FROM moved",
        [],
    )
    .await?;
    db::exec(conn, "SET LOCAL enable_seqscan TO DEFAULT", []).await?;
    db::exec(conn, "ANALYZE report_moved", []).await?;
    // The batch's aggregates are staged (the grouping is the work, done in parallel with other
    // lanes), then merged into the shared tables under the merge lock.
    // Since the send: the first human open and click of each accepted delivery, by hours after.
    db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_since_delta ON COMMIT DROP AS
             SELECT organisation_id, source_kind, source_id, step_id, hours, sum(o) AS human_openers,
                sum(c) AS human_clickers
             FROM (SELECT organisation_id, source_kind, source_id, step_id, {h} AS hours,
                          (fk = 1)::int AS o, (fk = 3)::int AS c
                   FROM report_moved WHERE fk IN (1, 3) AND sent_at IS NOT NULL AND at IS NOT NULL
                   UNION ALL
                   SELECT organisation_id, source_kind, source_id, step_id, {h_old}, -(fk = 1)::int, -(fk = 3)::int
                   FROM report_moved WHERE fk IN (1, 3) AND sent_at IS NOT NULL AND old_at IS NOT NULL) x
             GROUP BY 1, 2, 3, 4, 5",
            h = SINCE_HOURS.replace("{at}", "at"),
            h_old = SINCE_HOURS.replace("{at}", "old_at"),
        ),
        [],
    )
    .await?;
    // Links: every click by link, and each delivery's first human click on each link.
    db::exec(
        conn,
        "CREATE TEMP TABLE report_link_delta ON COMMIT DROP AS
         SELECT organisation_id, source_kind, source_id, step_id, position, sum(hc) AS human_clicks,
            sum(hu) AS human_clickers, sum(mc) AS machine_clicks
         FROM (SELECT organisation_id, source_kind, coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id,
                      step_id, link_position AS position, (NOT machine)::int * sign AS hc, 0 AS hu, machine::int * sign AS mc
               FROM report_batch WHERE kind = 1 AND activity = 'clicked' AND link_position BETWEEN 0 AND 199
               UNION ALL
               SELECT organisation_id, source_kind, source_id, step_id, fk - 100, 0,
                      (at IS NOT NULL)::int - (old_at IS NOT NULL)::int, 0
               FROM report_moved WHERE fk >= 100) x
         GROUP BY 1, 2, 3, 4, 5",
        [],
    )
    .await?;
    const COLS: &str = "sent, delivered, bounced, failed, human_openers, machine_opens, machine_openers, \
                        human_clicks, human_clickers, machine_clicks, unsubscribes, bounced_hard, bounced_soft, \
                        bounced_policy, deferrals";
    let org_cols =
        format!("{COLS}, suppressed_unsubscribed, suppressed_hard_bounce, suppressed_complaint, suppressed_manual");
    let sums =
        |cols: &str| cols.split(", ").map(|c| format!("coalesce(sum({c}), 0) AS {c}")).collect::<Vec<_>>().join(", ");
    // Hours: what every fact adds as it is, grouped first, and the moved firsts, by hour and
    // source in one statement. Facts without a source (suppressions, source 0) only count for
    // the organisation.
    let plain = [
        ("sent", "sum(sign) FILTER (WHERE kind = 2)"),
        ("delivered", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'sent')"),
        ("bounced", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'bounced')"),
        ("failed", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'failed')"),
        ("machine_opens", "sum(sign) FILTER (WHERE kind = 1 AND activity = 'opened' AND machine)"),
        ("human_clicks", "sum(sign) FILTER (WHERE kind = 1 AND activity = 'clicked' AND NOT machine)"),
        ("machine_clicks", "sum(sign) FILTER (WHERE kind = 1 AND activity = 'clicked' AND machine)"),
        ("suppressed_unsubscribed", "sum(sign) FILTER (WHERE kind = 3 AND activity = 'unsubscribed')"),
        ("suppressed_hard_bounce", "sum(sign) FILTER (WHERE kind = 3 AND activity = 'hard_bounce')"),
        ("suppressed_complaint", "sum(sign) FILTER (WHERE kind = 3 AND activity = 'complaint')"),
        ("suppressed_manual", "sum(sign) FILTER (WHERE kind = 3 AND activity = 'manual')"),
        ("bounced_hard", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'bounced' AND detail = 'hard')"),
        ("bounced_soft", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'bounced' AND detail = 'soft')"),
        ("bounced_policy", "sum(sign) FILTER (WHERE kind = 2 AND activity = 'bounced' AND detail = 'policy')"),
        ("deferrals", "count(*) FILTER (WHERE kind = 4)"),
    ];
    let firsts = [
        ("human_openers", "(fk = 1)::int"),
        ("machine_openers", "(fk = 2)::int"),
        ("human_clickers", "(fk = 3)::int"),
        ("unsubscribes", "(fk = 4)::int"),
    ];
    // Every column of `org_cols` in order: its expression in this branch, or 0.
    let pick = |exprs: &[(&str, &str)], sign: &str| {
        org_cols
            .split(", ")
            .map(|c| match exprs.iter().find(|(name, _)| *name == c) {
                Some((_, e)) => format!("{sign}({e})::int8 AS {c}"),
                None => format!("0::int8 AS {c}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_hour_delta ON COMMIT DROP AS
             SELECT organisation_id, hour, source_kind, source_id, step_id, {sums}
             FROM (SELECT organisation_id, hour, source_kind,
                          coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id, step_id, {plain}
                   FROM report_batch GROUP BY 1, 2, 3, 4, 5
                   UNION ALL
                   SELECT organisation_id, date_trunc('hour', at AT TIME ZONE time_zone), source_kind, source_id, step_id,
                          {new}
                   FROM report_moved WHERE fk < 100 AND at IS NOT NULL
                   UNION ALL
                   SELECT organisation_id, date_trunc('hour', old_at AT TIME ZONE time_zone), source_kind, source_id,
                          step_id, {old}
                   FROM report_moved WHERE fk < 100 AND old_at IS NOT NULL) d
             GROUP BY 1, 2, 3, 4, 5",
            sums = sums(&org_cols),
            plain = pick(&plain, ""),
            new = pick(&firsts, ""),
            old = pick(&firsts, "-"),
        ),
        [],
    )
    .await?;
    db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_org_hour_delta ON COMMIT DROP AS
             SELECT organisation_id, hour, {} FROM report_hour_delta GROUP BY 1, 2",
            sums(&org_cols)
        ),
        [],
    )
    .await?;
    // Each source's days: its hours summed by local day (a few rows per source in a batch).
    db::exec(
        conn,
        &format!(
            "CREATE TEMP TABLE report_source_day_delta ON COMMIT DROP AS
             SELECT organisation_id, hour::date AS day, source_kind, source_id, step_id, {}
             FROM report_hour_delta WHERE source_kind > 0 GROUP BY 1, 2, 3, 4, 5",
            sums(COLS)
        ),
        [],
    )
    .await?;
    split(conn).await?;
    merge(conn, COLS, &org_cols).await?;
    db::exec(
        conn,
        "DROP TABLE report_batch, report_moved, report_since_delta, report_link_delta,
            report_hour_delta, report_source_day_delta, report_org_hour_delta, report_split_delta",
        [],
    )
    .await?;
    Ok(taken)
}

/// Add a batch's staged aggregates to the shared tables, under the merge lock (held to the
/// commit). Each upsert goes in key order.
async fn merge<C: ConnectionTrait>(conn: &C, cols: &str, org_cols: &str) -> ServiceResult<()> {
    db::exec(conn, "SELECT pg_advisory_xact_lock($1)", [MERGE.into()]).await?;
    let adds = |table: &str, cols: &str| {
        cols.split(", ").map(|c| format!("{c} = {table}.{c} + excluded.{c}")).collect::<Vec<_>>().join(", ")
    };
    let upsert = |table: &str, key: &str, cols: &str| {
        // (Only the organisation's hours count facts without a source.)
        let only = if table == "report_hour" { "WHERE source_kind > 0" } else { "" };
        format!(
            "INSERT INTO {table} ({key}, {cols}) SELECT {key}, {cols} FROM {table}_delta {only} ORDER BY {key}
             ON CONFLICT ({key}) DO UPDATE SET {}",
            adds(table, cols)
        )
    };
    for statement in [
        upsert(
            "report_since",
            "organisation_id, source_kind, source_id, step_id, hours",
            "human_openers, human_clickers",
        ),
        upsert(
            "report_link",
            "organisation_id, source_kind, source_id, step_id, position",
            "human_clicks, human_clickers, machine_clicks",
        ),
        upsert("report_hour", "organisation_id, hour, source_kind, source_id, step_id", cols),
        upsert("report_source_day", "organisation_id, day, source_kind, source_id, step_id", cols),
        upsert("report_org_hour", "organisation_id, hour", org_cols),
        upsert(
            "report_split",
            "organisation_id, day, source_kind, source_id, step_id, dim, code, part_id",
            "sent, delivered, bounced, human_opens, human_openers, human_clickers, unsubscribes",
        ),
    ] {
        db::exec(conn, &statement, []).await?;
    }
    Ok(())
}

/// The breakdowns of a batch (`report_split`, local days), staged in `report_split_delta`:
/// outcomes by provider family, TLS version (delivered only) and audience part; every human open
/// by provider, client and part; first human opens, clicks and unsubscribes moved (from
/// `report_moved`) likewise, a first open by its client too.
async fn split<C: ConnectionTrait>(conn: &C) -> ServiceResult<()> {
    db::exec(
        conn,
        "CREATE TEMP TABLE report_split_delta ON COMMIT DROP AS
         WITH facts AS (
            SELECT organisation_id, hour::date AS day, source_kind,
                coalesce(source_id, '00000000-0000-0000-0000-000000000000') AS source_id, step_id,
                family, tls, NULL::int2 AS client, audience_kind, audience_id, activity = 'sent' AS by_tls, false AS by_client,
                sign::int8 AS sent, CASE WHEN activity = 'sent' THEN sign ELSE 0 END::int8 AS delivered,
                CASE WHEN activity = 'bounced' THEN sign ELSE 0 END::int8 AS bounced,
                0::int8 AS human_opens, 0::int8 AS human_openers, 0::int8 AS human_clickers, 0::int8 AS unsubscribes
            FROM report_batch WHERE kind = 2 AND source_kind > 0
            UNION ALL
            SELECT organisation_id, hour::date, source_kind, coalesce(source_id, '00000000-0000-0000-0000-000000000000'),
                step_id, family, NULL, client, audience_kind, audience_id, false, true, 0, 0, 0, sign, 0, 0, 0
            FROM report_batch WHERE kind = 1 AND activity = 'opened' AND NOT machine AND source_kind > 0
            UNION ALL
            SELECT organisation_id, (at AT TIME ZONE time_zone)::date, source_kind, source_id, step_id,
                family, NULL, client, audience_kind, audience_id, false, fk = 1, 0, 0, 0, 0,
                (fk = 1)::int::int8, (fk = 3)::int::int8, (fk = 4)::int::int8
            FROM report_moved WHERE fk IN (1, 3, 4) AND source_kind > 0 AND at IS NOT NULL
            UNION ALL
            SELECT organisation_id, (old_at AT TIME ZONE time_zone)::date, source_kind, source_id, step_id,
                family, NULL, old_client, audience_kind, audience_id, false, fk = 1, 0, 0, 0, 0,
                -(fk = 1)::int::int8, -(fk = 3)::int::int8, -(fk = 4)::int::int8
            FROM report_moved WHERE fk IN (1, 3, 4) AND source_kind > 0 AND old_at IS NOT NULL),
         -- Summed before they fan out to the dimensions: a batch's facts share few codes.
         pre AS (
            SELECT organisation_id, day, source_kind, source_id, step_id, family, tls, client, audience_kind,
                audience_id, by_tls, by_client, sum(sent) AS sent, sum(delivered) AS delivered, sum(bounced) AS bounced,
                sum(human_opens) AS human_opens, sum(human_openers) AS human_openers,
                sum(human_clickers) AS human_clickers, sum(unsubscribes) AS unsubscribes
            FROM facts GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
         SELECT f.organisation_id, f.day, f.source_kind, f.source_id, f.step_id, x.dim, x.code, x.part_id,
            sum(f.sent) AS sent, sum(f.delivered) AS delivered, sum(f.bounced) AS bounced,
            sum(f.human_opens) AS human_opens, sum(f.human_openers) AS human_openers,
            sum(f.human_clickers) AS human_clickers, sum(f.unsubscribes) AS unsubscribes
         FROM pre f
         CROSS JOIN LATERAL (VALUES
            (1::int2, coalesce(f.family, 0)::int2, '00000000-0000-0000-0000-000000000000'::uuid, true),
            (3::int2, coalesce(f.tls, 0)::int2, '00000000-0000-0000-0000-000000000000'::uuid, f.by_tls),
            (2::int2, coalesce(f.client, 0)::int2, '00000000-0000-0000-0000-000000000000'::uuid, f.by_client),
            (coalesce(f.audience_kind, 4)::int2, 0::int2, f.audience_id, f.audience_id IS NOT NULL)
         ) AS x (dim, code, part_id, keep)
         WHERE x.keep
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
        [],
    )
    .await?;
    Ok(())
}

/// Ask for an organisation's rollups to be rebuilt (its time zone changed).
pub async fn request_rebuild<C: ConnectionTrait>(conn: &C, org: Uuid) -> ServiceResult<()> {
    db::exec(conn, "UPDATE organisation SET report_rebuild_requested_at = now() WHERE id = $1", [org.into()]).await?;
    Ok(())
}

/// Whether anything waits for the rollup (pending facts or a requested rebuild).
pub async fn behind(svc: &Services) -> ServiceResult<bool> {
    Ok(db::scalar::<bool, _>(
        svc.db(),
        "SELECT EXISTS (SELECT 1 FROM report_pending)
             OR EXISTS (SELECT 1 FROM organisation WHERE report_rebuild_requested_at IS NOT NULL)",
        [],
    )
    .await?
    .unwrap_or(false))
}
