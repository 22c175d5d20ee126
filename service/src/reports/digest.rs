//! The weekly report digest: every Monday from 08:00 in the organisation's report time zone,
//! each active user who opted in (Settings) gets last week's headline figures and the week's
//! most opened campaigns and sequence emails by email — figures only, as their role sees them
//! (small cells hidden for roles that may not read contacts), never a patient.
//!
//! Maintenance (`queue_due`, every few minutes from any process) pushes one `ReportDigest` job per
//! user and ISO week; the job's idempotency key names both, so however often it runs, one digest
//! exists per week. Sending is system mail (`outbound::send_system`, the platform's From), at
//! least once like every apalis job: a crash between the server's answer and the job's
//! completion may repeat a digest, which names nobody.

use super::{comparison, overview};
use crate::actor::{Actor, ActorKind};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::outbound::{self, Outgoing};
use crate::outbox;
use crate::services::Services;
use chrono::{Datelike, Duration, NaiveDate, Timelike, Weekday};
use domain::ids::OrganisationId;
use domain::reports::{Metric, Overview, ReportRange, change_label};
use domain::{Permission, Phi, Role};
use sea_orm::FromQueryResult;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Digests go out from this local hour on Mondays.
pub const SEND_FROM_HOUR: u32 = 8;

/// Email one user last week's report figures. Ids and the week only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDigest {
    pub organisation_id: Uuid,
    pub user_id: Uuid,
    /// The Monday the digest's week starts on (the week before the one it is sent in).
    pub week_of: NaiveDate,
}

impl outbox::Job for ReportDigest {
    const QUEUE: &'static str = outbox::queue::REPORT_DIGEST;
    const MAX_ATTEMPTS: i32 = 10;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("report-digest:{}:{}", self.user_id, self.week_of))
    }
}

fn user_of(actor: &Actor) -> ServiceResult<Uuid> {
    actor.user_id().map(|u| u.0).ok_or(ServiceError::Forbidden)
}

/// Whether the signed-in user gets the weekly digest.
pub async fn get(svc: &Services, actor: &Actor) -> ServiceResult<bool> {
    actor.require(Permission::ReportsRead)?;
    let user = user_of(actor)?;
    Ok(db::scalar::<bool, _>(
        svc.db(),
        "SELECT report_digest FROM app_user WHERE id = $1 AND organisation_id = $2",
        [user.into(), actor.organisation_id.0.into()],
    )
    .await?
    .unwrap_or(false))
}

/// Opt the signed-in user in or out of the weekly digest (their own setting).
pub async fn set(svc: &Services, actor: &Actor, on: bool) -> ServiceResult<()> {
    actor.require(Permission::ReportsRead)?;
    let user = user_of(actor)?;
    db::exec(
        svc.db(),
        "UPDATE app_user SET report_digest = $3, updated_at = $4 WHERE id = $1 AND organisation_id = $2",
        [user.into(), actor.organisation_id.0.into(), on.into(), svc.clock().now().into()],
    )
    .await?;
    Ok(())
}

/// Push the digests that are due: for each organisation where it is Monday from 08:00 local
/// time, one job per opted-in active user for last week. Returns the jobs this call added.
pub async fn queue_due(svc: &Services) -> ServiceResult<u64> {
    #[derive(FromQueryResult)]
    struct Org {
        id: Uuid,
        time_zone: String,
    }
    let orgs: Vec<Org> = db::all_as(
        svc.db(),
        "SELECT o.id, o.time_zone FROM organisation o
         WHERE o.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM app_user u WHERE u.organisation_id = o.id AND u.report_digest AND u.status = 'active')",
        [],
    )
    .await?;
    let now = svc.clock().now();
    let mut pushed = 0;
    for o in orgs {
        let tz: chrono_tz::Tz = o.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let local = now.with_timezone(&tz);
        if local.weekday() != Weekday::Mon || local.hour() < SEND_FROM_HOUR {
            continue;
        }
        let week_of = local.date_naive() - Duration::days(7);
        let users: Vec<Uuid> = db::scalars(
            svc.db(),
            "SELECT id FROM app_user WHERE organisation_id = $1 AND report_digest AND status = 'active'",
            [o.id.into()],
        )
        .await?;
        for u in users {
            if outbox::push(svc.db(), &ReportDigest { organisation_id: o.id, user_id: u, week_of }).await? {
                pushed += 1;
            }
        }
    }
    Ok(pushed)
}

/// The digest's subject and text: the week's headline figures with their change against the
/// week before, the most opened campaigns and sequence emails, and the link to the reports.
/// Figures and names of campaigns only.
pub fn compose(org_name: &str, o: &Overview, top: &[(String, String, String)], link: &str) -> (String, String) {
    let subject =
        format!("Hermetic weekly report: {} – {}", o.range.from.format("%b %-d"), o.range.to.format("%b %-d, %Y"));
    let mut text = format!(
        "Last week at {org_name} ({} to {}, {}), compared with the week before:\n\n",
        o.range.from.format("%A %b %-d"),
        o.range.to.format("%A %b %-d"),
        o.time_zone
    );
    for m in [
        Metric::Sent,
        Metric::Delivered,
        Metric::BounceRate,
        Metric::HumanOpeners,
        Metric::OpenRate,
        Metric::HumanClicks,
        Metric::ClickRate,
        Metric::Unsubscribes,
        Metric::Complaints,
    ] {
        if let Some(f) = o.figure(m) {
            text.push_str(&format!(
                "  {:<20} {:>10}   {}\n",
                f.metric.label(),
                f.current.label(),
                change_label(m, f.change)
            ));
        }
    }
    if !top.is_empty() {
        text.push_str("\nMost opened by people:\n");
        for (i, (name, opened, rate)) in top.iter().enumerate() {
            text.push_str(&format!("  {}. {name}: {opened} opened ({rate})\n", i + 1));
        }
    }
    if o.restricted {
        text.push_str("\n\"<11\" stands for a figure from fewer than 11 messages, hidden for your role.\n");
    }
    text.push_str(&format!(
        "\nThe full reports: {link}\n\nThis email holds figures only: it names no patient. You get it because you asked for it \
         in Hermetic's Settings, where you can also stop it.\n"
    ));
    (subject, text)
}

/// Run one digest job: the user's figures for the week, as their role sees them.
pub async fn send(svc: &Services, job: &ReportDigest) -> ServiceResult<()> {
    #[derive(FromQueryResult)]
    struct User {
        email: String,
        role: String,
        org_name: String,
    }
    let user: Option<User> = db::one_as(
        svc.db(),
        "SELECT u.email, u.role, o.name AS org_name FROM app_user u JOIN organisation o ON o.id = u.organisation_id
         WHERE u.id = $1 AND u.organisation_id = $2 AND u.status = 'active' AND u.report_digest AND o.deleted_at IS NULL",
        [job.user_id.into(), job.organisation_id.into()],
    )
    .await?;
    let Some(user) = user else {
        // Opted out, disabled or gone since the job was queued: nothing to send.
        return Ok(());
    };
    let role: Role = user.role.parse().map_err(|_| ServiceError::internal("a stored role is unknown"))?;
    // The user's own view of the figures: their role decides what is hidden.
    let actor = Actor {
        organisation_id: OrganisationId(job.organisation_id),
        role,
        kind: ActorKind::System { via: "report-digest" },
        ip: None,
    };
    let range = ReportRange::new(job.week_of, job.week_of + Duration::days(6))
        .map_err(|_| ServiceError::internal("a digest's week is not a range"))?;
    let o = overview(svc, &actor, range).await?;
    let mut rows = comparison(svc, &actor, range).await?.rows;
    rows.sort_by_key(|r| std::cmp::Reverse(r.figures.human_openers.shown()));
    let top: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| r.figures.human_openers.shown().is_some_and(|n| n > 0))
        .take(3)
        .map(|r| (r.name.clone(), r.figures.human_openers.label(), r.figures.value(Metric::OpenRate).label()))
        .collect();
    let link = format!("{}/reports", svc.settings().public_url.trim_end_matches('/'));
    let (subject, text) = compose(&user.org_name, &o, &top, &link);
    outbound::send_system_job(
        svc,
        Outgoing {
            organisation: OrganisationId(job.organisation_id),
            to: Phi::new(user.email),
            subject,
            text: Phi::new(text),
            html: None,
        },
        "report digest",
        job.user_id,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::disclosure::Reader;
    use domain::reports::{OverviewCounts, Totals};

    #[test]
    fn the_digest_says_the_figures_and_the_changes_and_names_nobody() {
        let range = ReportRange::parse("2026-11-30", "2026-12-06").unwrap();
        let t = |d: u64| Totals { sent: d + 2, delivered: d, bounced: 2, human_openers: d / 2, ..Totals::default() };
        let buckets: Vec<Totals> = (0..7).map(|_| t(100)).collect();
        let mut current = Totals::default();
        for b in &buckets {
            current.add(b);
        }
        let o = Overview::build(
            Reader::Restricted,
            range,
            "America/Chicago".into(),
            &OverviewCounts { current, previous: t(600), buckets },
        );
        let (subject, text) = compose(
            "Lakeside Clinic",
            &o,
            &[("Flu shots".into(), "120".into(), "41.0%".into())],
            "https://hermetic.example/reports",
        );
        assert_eq!(subject, "Hermetic weekly report: Nov 30 – Dec 6, 2026");
        assert!(text.contains("Delivered") && text.contains("700") && text.contains("+17%"), "{text}");
        assert!(text.contains("1. Flu shots: 120 opened (41.0%)"), "{text}");
        assert!(text.contains("<11") && text.contains("https://hermetic.example/reports"), "{text}");
        assert!(!text.contains('@'), "no address in a digest: {text}");
    }
}
