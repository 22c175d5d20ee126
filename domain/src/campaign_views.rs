//! What the campaign pages show: summaries, the editor's view, live progress and the report.
//! Aggregates and ids only — never a contact's data.

use crate::campaigns::{CampaignSettings, CampaignStatus, DeliveryCounts, PauseReason};
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
    pub counts: DeliveryCounts,
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
    pub counts: DeliveryCounts,
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
    pub counts: DeliveryCounts,
    /// Messages accepted in the last minute, per second.
    pub rate_per_s: f64,
    pub audience_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStat {
    pub url: String,
    /// Human clicks, all and unique recipients.
    pub clicks: u64,
    pub unique: u64,
    pub machine: u64,
}

/// The report of one campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub name: String,
    pub status: CampaignStatus,
    pub counts: DeliveryCounts,
    /// Accepted by the receiving server.
    pub delivered: u64,
    pub bounced: u64,
    pub unique_human_opens: u64,
    pub machine_opens: u64,
    pub unique_human_clicks: u64,
    pub human_clicks: u64,
    pub machine_clicks: u64,
    pub unsubscribes: u64,
    pub links: Vec<LinkStat>,
}
