//! What the campaign pages show: summaries, the editor's view, live progress and the report.
//! Aggregates and ids only — never a contact's data. Every figure goes through
//! `domain::disclosure` for its reader: people who may not read contacts get small cells hidden
//! (with complementary suppression) and no exact delivery counts.

use crate::campaigns::{CampaignSettings, CampaignStatus, DeliveryCounts, PauseReason};
use crate::disclosure::{Cell, Figure, Reader, Sum, suppress};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSummary {
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub updated_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Exact counts: only for readers who may read contacts.
    pub counts: Option<DeliveryCounts>,
    pub figures: DeliveryFigures,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: Uuid,
    pub settings: CampaignSettings,
    pub status: CampaignStatus,
    pub pause_reason: Option<PauseReason>,
    /// The pinned template version (once scheduled or launched).
    pub template_version: Option<i32>,
    pub uses_phi: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Exact counts: only for readers who may read contacts.
    pub counts: Option<DeliveryCounts>,
    pub figures: DeliveryFigures,
}

/// Delivery figures for any reader (the same cells as the report's, so no two views combine into
/// a small figure). No total is shown to restricted readers, so no state can be worked out as the
/// total minus the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFigures {
    pub sent: Figure,
    pub bounced: Figure,
    pub failed: Figure,
    /// Queued, being sent or waiting for a retry.
    pub remaining: Figure,
    pub skipped: Figure,
    pub cancelled: Figure,
}

impl DeliveryFigures {
    pub fn of(reader: Reader, c: &DeliveryCounts) -> DeliveryFigures {
        let remaining = c.remaining();
        let cells = [c.sent, c.bounced, c.failed, remaining, c.skipped, c.cancelled].map(Cell::people);
        let f = suppress(reader, &cells, &[]);
        let at = |i: usize| f.get(i).copied().unwrap_or(Figure::Withheld);
        DeliveryFigures {
            sent: at(0),
            bounced: at(1),
            failed: at(2),
            remaining: at(3),
            skipped: at(4),
            cancelled: at(5),
        }
    }
}

/// A template a campaign can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateChoice {
    pub id: Uuid,
    pub name: String,
    pub latest_version: i32,
    pub uses_phi: bool,
}

/// Everything the campaign editor offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignOptions {
    pub segments: Vec<crate::segment_views::Choice>,
    pub lists: Vec<crate::segment_views::Choice>,
    pub templates: Vec<TemplateChoice>,
    /// The default From: the system sender's local part on the organisation's first verified
    /// sending domain (empty when it has none).
    pub default_from_email: String,
    pub default_from_name: String,
    /// The organisation's verified sending domains: a From address must be on one of them.
    pub sending_domains: Vec<String>,
}

/// The audience as it would be resolved now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceCount {
    /// Contacts in the chosen segments and lists.
    pub matched: u64,
    /// Of those, on the suppression list.
    pub suppressed: u64,
    /// Of those (not suppressed), without consent for the campaign's purpose.
    pub without_consent: u64,
    /// Who would receive it.
    pub eligible: u64,
}

/// Live progress of a sending campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignProgress {
    pub status: CampaignStatus,
    pub pause_reason: Option<PauseReason>,
    /// Exact counts: only for readers who may read contacts.
    pub counts: Option<DeliveryCounts>,
    pub figures: DeliveryFigures,
    /// Messages accepted in the last minute, per second.
    pub rate_per_s: f64,
    pub audience_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStat {
    pub url: String,
    /// Human clicks: all, and unique recipients.
    pub clicks: Figure,
    pub unique: Figure,
    pub machine: Figure,
}

/// The report of one campaign, as its reader may see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub name: String,
    pub status: CampaignStatus,
    /// Flattened: the JSON shape of the campaign report is the email report's, plus name and status.
    #[serde(flatten)]
    pub email: EmailReport,
}

/// The figures of one email sent to many people (a campaign, or one email step of a sequence),
/// as its reader may see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailReport {
    /// Accepted by the receiving server.
    pub delivered: Figure,
    pub bounced: Figure,
    pub unique_human_opens: Figure,
    pub machine_opens: Figure,
    pub unique_human_clicks: Figure,
    pub human_clicks: Figure,
    pub machine_clicks: Figure,
    pub unsubscribes: Figure,
    pub links: Vec<LinkStat>,
}

/// A report's exact figures with the number of people behind each (from the database; never sent
/// to a client as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    pub delivered: u64,
    pub bounced: u64,
    /// People with a human open.
    pub human_openers: u64,
    pub machine_opens: u64,
    pub machine_openers: u64,
    pub human_clickers: u64,
    pub human_clicks: u64,
    pub machine_clicks: u64,
    pub machine_clickers: u64,
    pub unsubscribes: u64,
    pub links: Vec<LinkCounts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounts {
    pub url: String,
    pub clicks: u64,
    pub clickers: u64,
    pub machine: u64,
    pub machine_clickers: u64,
}

impl CampaignReport {
    pub fn build(reader: Reader, name: String, status: CampaignStatus, r: &ReportCounts) -> CampaignReport {
        CampaignReport { name, status, email: EmailReport::build(reader, r) }
    }
}

impl EmailReport {
    /// The figures for `reader`: every figure from fewer than 11 people hidden from restricted
    /// readers, and the clicks per link (which add up to the clicks shown) suppressed so that no
    /// hidden link can be worked out from the total and the others.
    pub fn build(reader: Reader, r: &ReportCounts) -> EmailReport {
        let mut cells = vec![
            Cell::people(r.delivered),
            Cell::people(r.bounced),
            Cell::people(r.human_openers),
            Cell::events(r.machine_opens, r.machine_openers),
            Cell::people(r.human_clickers),
            Cell::events(r.human_clicks, r.human_clickers),
            Cell::events(r.machine_clicks, r.machine_clickers),
            Cell::people(r.unsubscribes),
        ];
        let first_link = cells.len();
        for l in &r.links {
            cells.push(Cell::events(l.clicks, l.clickers));
            cells.push(Cell::people(l.clickers));
            cells.push(Cell::events(l.machine, l.machine_clickers));
        }
        let link = |i: usize, k: usize| first_link + 3 * i + k;
        let sums = [
            Sum { total: 5, parts: (0..r.links.len()).map(|i| link(i, 0)).collect() },
            Sum { total: 6, parts: (0..r.links.len()).map(|i| link(i, 2)).collect() },
        ];
        let f = suppress(reader, &cells, &sums);
        let at = |i: usize| f.get(i).copied().unwrap_or(Figure::Withheld);
        EmailReport {
            delivered: at(0),
            bounced: at(1),
            unique_human_opens: at(2),
            machine_opens: at(3),
            unique_human_clicks: at(4),
            human_clicks: at(5),
            machine_clicks: at(6),
            unsubscribes: at(7),
            links: r
                .links
                .iter()
                .enumerate()
                .map(|(i, l)| LinkStat {
                    url: l.url.clone(),
                    clicks: at(link(i, 0)),
                    unique: at(link(i, 1)),
                    machine: at(link(i, 2)),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Figure::*;

    fn sample() -> ReportCounts {
        ReportCounts {
            delivered: 30,
            bounced: 1,
            human_openers: 12,
            machine_opens: 40,
            machine_openers: 3,
            human_clickers: 14,
            human_clicks: 14,
            machine_clicks: 0,
            machine_clickers: 0,
            unsubscribes: 1,
            links: vec![
                LinkCounts { url: "a".into(), clicks: 12, clickers: 12, ..Default::default() },
                LinkCounts { url: "b".into(), clicks: 2, clickers: 2, ..Default::default() },
            ],
        }
    }

    #[test]
    fn restricted_readers_get_small_cells_hidden_with_complementary_suppression() {
        let r = CampaignReport::build(Reader::Restricted, "S".into(), CampaignStatus::Completed, &sample()).email;
        let lt = FewerThan(11);
        assert_eq!((r.delivered, r.bounced, r.unsubscribes), (Exact(30), lt, lt));
        assert_eq!(r.machine_opens, lt, "40 machine opens by 3 people: from fewer than 11 people");
        assert_eq!(r.human_clicks, Exact(14));
        assert_eq!((r.links[0].clicks, r.links[1].clicks), (Withheld, lt), "14 − 12 would give the 2 away");
        assert_eq!(r.links[1].unique, lt);
        let full = CampaignReport::build(Reader::Full, "S".into(), CampaignStatus::Completed, &sample()).email;
        assert_eq!((full.bounced, full.links[1].clicks, full.machine_opens), (Exact(1), Exact(2), Exact(40)));
    }

    #[test]
    fn delivery_figures_hide_small_states_from_restricted_readers() {
        let c = DeliveryCounts { sent: 500, bounced: 3, queued: 20, ..Default::default() };
        let f = DeliveryFigures::of(Reader::Restricted, &c);
        assert_eq!((f.sent, f.bounced, f.remaining, f.failed), (Exact(500), FewerThan(11), Exact(20), FewerThan(11)));
        assert_eq!(DeliveryFigures::of(Reader::Full, &c).bounced, Exact(3));
    }
}

/// The home page's getting-started checklist for a new organisation: which first steps are done.
/// Yes/no about the organisation as a whole, never about a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GettingStarted {
    pub contacts_added: bool,
    pub sending_domain_verified: bool,
    pub template_created: bool,
    pub test_sent: bool,
}

impl GettingStarted {
    pub fn done(&self) -> usize {
        [self.contacts_added, self.sending_domain_verified, self.template_created, self.test_sent]
            .into_iter()
            .filter(|d| *d)
            .count()
    }

    pub fn complete(&self) -> bool {
        self.done() == 4
    }
}
