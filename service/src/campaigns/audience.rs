//! Resolving a campaign's audience: the union of its segments (evaluated now) and lists
//! (subscribed members), minus the suppression list, minus contacts without consent for the
//! campaign's purpose — into one delivery row per contact.
//!
//! Invariants: resumable and idempotent (rows are inserted with `ON CONFLICT DO NOTHING` on
//! (campaign, contact), so a crashed resolution simply runs again); only ids travel; suppression
//! and consent are checked again right before each send (a person who unsubscribes after launch is
//! skipped).

use super::{Row, load_any};
use crate::actor::Actor;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::campaign_views::AudienceCount;
use domain::campaigns::{Audience, CampaignStatus, Schedule};
use domain::contacts::ConsentPurpose;
use domain::ids::OrganisationId;
use futures::StreamExt;
use sea_orm::sqlx;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Contacts handed to one INSERT.
const BATCH: usize = 1000;

/// The part of an audience a batch of candidates came from: (4 segment or 5 list, its id) — the
/// breakdown dimension codes of `report_split`.
type Part = (i16, Uuid);

/// Hand every candidate id (segments, then lists, each in the order chosen; before suppression
/// and consent) to `f` in batches as they are found, with the part it came from. An id in
/// several segments or lists comes more than once.
async fn each_candidate_batch<F, Fut>(
    svc: &Services,
    org: OrganisationId,
    audience: &Audience,
    mut f: F,
) -> ServiceResult<()>
where
    F: FnMut(Part, Vec<Uuid>) -> Fut,
    Fut: std::future::Future<Output = ServiceResult<()>>,
{
    let actor = Actor::system(org, "campaign audience");
    for seg in &audience.segments {
        let mut stream = Box::pin(crate::segments::members(svc, &actor, *seg).await?);
        while let Some(batch) = stream.next().await {
            f((4, *seg), batch?).await?;
        }
    }
    for list in &audience.lists {
        let mut after = Uuid::nil();
        loop {
            let page: Vec<Uuid> = sqlx::query_scalar(
                "SELECT m.contact_id FROM list_member m JOIN contact_list l ON l.id = m.list_id
                 WHERE l.organisation_id = $1 AND m.list_id = $2 AND m.status = 'subscribed' AND m.contact_id > $3
                 ORDER BY m.contact_id LIMIT 10000",
            )
            .bind(org.0)
            .bind(list)
            .bind(after)
            .fetch_all(&db::pool(svc.db()))
            .await
            .map_err(db::sqlx_err)?;
            let Some(last) = page.last().copied() else { break };
            after = last;
            f((5, *list), page).await?;
        }
    }
    Ok(())
}

/// Every candidate id, sorted and unique.
async fn candidates(svc: &Services, org: OrganisationId, audience: &Audience) -> ServiceResult<BTreeSet<Uuid>> {
    let mut ids = BTreeSet::new();
    each_candidate_batch(svc, org, audience, |_, batch| {
        ids.extend(batch);
        std::future::ready(Ok(()))
    })
    .await?;
    Ok(ids)
}

/// The live count shown while building a campaign.
pub async fn count(
    svc: &Services,
    actor: &Actor,
    audience: &Audience,
    purpose: ConsentPurpose,
) -> ServiceResult<AudienceCount> {
    actor.require(Permission::CampaignsWrite)?;
    audience.validate()?;
    let org = actor.organisation_id;
    let ids: Vec<Uuid> = candidates(svc, org, audience).await?.into_iter().collect();
    let mut total = AudienceCount { matched: 0, suppressed: 0, without_consent: 0, eligible: 0 };
    for chunk in ids.chunks(20_000) {
        let row = sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT count(*),
                    count(*) FILTER (WHERE s.email_bidx IS NOT NULL),
                    count(*) FILTER (WHERE s.email_bidx IS NULL AND coalesce(cc.granted, false) = false)
             FROM contact c
             LEFT JOIN suppression s ON s.organisation_id = c.organisation_id AND s.email_bidx = c.email_bidx
             LEFT JOIN contact_consent cc ON cc.contact_id = c.id AND cc.purpose = $3
             WHERE c.organisation_id = $1 AND c.id = ANY($2)",
        )
        .bind(org.0)
        .bind(chunk)
        .bind(purpose.as_str())
        .fetch_one(&db::pool(svc.db()))
        .await
        .map_err(db::sqlx_err)?;
        total.matched += row.0.max(0) as u64;
        total.suppressed += row.1.max(0) as u64;
        total.without_consent += row.2.max(0) as u64;
    }
    total.eligible = total.matched - total.suppressed - total.without_consent;
    Ok(total)
}

/// Insert the deliveries for a batch of candidate ids found through `part` of the audience.
/// Each new delivery records that part (for the reports' audience breakdown): a patient in
/// several parts counts under the first one that reached them, segments first, in the order
/// chosen.
async fn insert_batch(svc: &Services, row: &Row, part: Part, ids: &[Uuid], now: DateTime<Utc>) -> ServiceResult<u64> {
    // When each recipient may receive it: now, or the chosen wall-clock time in the contact's own
    // time zone (PostgreSQL's zone rules handle daylight-saving gaps); never in the past.
    let (date, time) = match &row.settings.schedule {
        Schedule::LocalTime { date, time } => (Some(*date), Some(*time)),
        _ => (None, None),
    };
    // Only a local-time schedule needs the zone names (reading them scans the zone database).
    macro_rules! eligible {
        () => {
            "WHERE c.organisation_id = $1 AND c.id = ANY($4)
               AND EXISTS (SELECT 1 FROM contact_consent cc WHERE cc.contact_id = c.id AND cc.purpose = $5 AND cc.granted)
               AND NOT EXISTS (SELECT 1 FROM suppression s WHERE s.organisation_id = $1 AND s.email_bidx = c.email_bidx)
             ON CONFLICT (campaign_id, contact_id) DO NOTHING
             RETURNING id, campaign_id, not_before, source)
             INSERT INTO delivery_queue (delivery_id, campaign_id, not_before, source)
             SELECT id, campaign_id, not_before, source FROM d"
        };
    }
    let sql: &'static str = if date.is_some() {
        concat!(
            "WITH z AS MATERIALIZED (SELECT name FROM pg_timezone_names),
             d AS (INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at, source,
                                   audience_kind, audience_id)
             SELECT gen_random_uuid(), $1, $2, c.id, 'queued',
                    GREATEST($3, ($9::date + $10::time) AT TIME ZONE coalesce(z.name, 'UTC')), $3, $6, $7, $8
             FROM contact c LEFT JOIN z ON z.name = c.time_zone ",
            eligible!()
        )
    } else {
        concat!(
            "WITH d AS (INSERT INTO delivery (id, organisation_id, campaign_id, contact_id, state, not_before, updated_at, source,
                                   audience_kind, audience_id)
             SELECT gen_random_uuid(), $1, $2, c.id, 'queued', $3, $3, $6, $7, $8
             FROM contact c ",
            eligible!()
        )
    };
    let q = sqlx::query(sql)
        .bind(row.organisation.0)
        .bind(row.id)
        .bind(now)
        .bind(ids)
        .bind(row.settings.purpose.as_str())
        .bind(domain::delivery::DeliverySource::Campaign.as_str())
        .bind(part.0)
        .bind(part.1);
    let q = if date.is_some() { q.bind(date).bind(time) } else { q };
    let res = q.execute(&db::pool(svc.db())).await.map_err(db::sqlx_err)?;
    Ok(res.rows_affected())
}

/// Record the pinned version's static links by position (click tokens point at positions).
async fn store_links(svc: &Services, row: &Row) -> ServiceResult<()> {
    let vid = row.template_version_id.ok_or_else(|| ServiceError::internal("launched campaign without a version"))?;
    let html: String =
        super::version_html(svc.db(), vid).await?.ok_or_else(|| ServiceError::internal("pinned version missing"))?;
    let public = svc.settings().public_url.trim_end_matches('/').to_string();
    for (pos, url) in super::tracking::trackable_links(&html, &public).into_iter().enumerate() {
        db::exec(
            svc.db(),
            "INSERT INTO campaign_link (campaign_id, position, url) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [row.id.into(), (pos as i32).into(), url.into()],
        )
        .await?;
    }
    Ok(())
}

/// The prepare job: resolve the audience (resumable), then start the dispatch jobs.
pub async fn prepare(svc: &Services, campaign: Uuid) -> ServiceResult<()> {
    let row = load_any(svc.db(), campaign, false).await?;
    if row.status != CampaignStatus::Sending {
        return Ok(());
    }
    if !row.audience_ready {
        store_links(svc, &row).await?;
        // Sending starts with the first batch of rows, not after the last: the dispatch jobs
        // claim rows as they are inserted and finish only once the audience is complete.
        super::enqueue_dispatch(svc, svc.db(), campaign, row.generation).await?;
        let now = svc.clock().now();
        // Inserted as they are found: the first rows can be on their way while the rest of the
        // audience is still being read. Repeats (a contact in two lists) are ignored by the insert.
        let mut candidates = 0usize;
        each_candidate_batch(svc, row.organisation, &row.settings.audience, |part, ids| {
            candidates += ids.len();
            let row = &row;
            async move {
                for chunk in ids.chunks(BATCH) {
                    insert_batch(svc, row, part, chunk, now).await?;
                }
                Ok(())
            }
        })
        .await?;
        db::exec(
            svc.db(),
            "UPDATE campaign SET audience_ready = true,
                 audience_size = (SELECT count(*) FROM delivery WHERE campaign_id = $1), updated_at = $2
             WHERE id = $1",
            [campaign.into(), now.into()],
        )
        .await?;
        tracing::info!(campaign = %campaign, candidates, "campaign audience resolved");
    }
    let row = load_any(svc.db(), campaign, false).await?;
    if row.status == CampaignStatus::Sending {
        // (Already enqueued when this run resolved the audience; needed after a resume.)
        super::enqueue_dispatch(svc, svc.db(), campaign, row.generation).await?;
        // An empty audience completes at once.
        super::send::finish_if_done(svc, campaign).await?;
    }
    Ok(())
}
