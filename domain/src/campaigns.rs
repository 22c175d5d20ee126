//! Campaigns: the campaign state machine, throttling and auto-pause rules, the TLS delivery policy,
//! scheduling, the editable settings and their checks, and delivery counts. Pure rules shared by
//! the server and the UI. Per-recipient delivery (its state machine, retries, outcomes) is
//! `crate::delivery`; telling people's opens and clicks from machines' is `crate::engagement`.
//!
//! Invariants: every status change goes through a `transition` function, and an edge that is not
//! listed there is refused; nothing here reads the clock or draws random numbers (`now` and `jitter`
//! are parameters); error messages are plain words for a marketer and never repeat what was typed.

use crate::DomainError;
use crate::contacts::ConsentPurpose;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub use crate::delivery::{DeliveryEvent, DeliveryState, RetryPolicy};
pub use crate::engagement::{MachineReason, OpenKind, PREFETCH_SECS, classify_click, classify_open};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Campaign state machine
// ---------------------------------------------------------------------------------------------

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Sending,
    Paused,
    Completed,
    Cancelled,
    Failed,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 7] = [
        CampaignStatus::Draft,
        CampaignStatus::Scheduled,
        CampaignStatus::Sending,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
        CampaignStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Sending => "sending",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
            CampaignStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        CampaignStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "Draft",
            CampaignStatus::Scheduled => "Scheduled",
            CampaignStatus::Sending => "Sending",
            CampaignStatus::Paused => "Paused",
            CampaignStatus::Completed => "Completed",
            CampaignStatus::Cancelled => "Cancelled",
            CampaignStatus::Failed => "Failed",
        }
    }
    /// No event leaves these states.
    pub fn is_terminal(self) -> bool {
        matches!(self, CampaignStatus::Completed | CampaignStatus::Cancelled | CampaignStatus::Failed)
    }
    /// Settings may only change in a draft: a scheduled campaign is unscheduled first, so what was
    /// checked at launch is what gets sent.
    pub fn is_editable(self) -> bool {
        self == CampaignStatus::Draft
    }
    /// Workers send only for campaigns in this state.
    pub fn is_active(self) -> bool {
        self == CampaignStatus::Sending
    }

    /// The one place campaign status changes are decided. Unlisted edges are refused.
    pub fn transition(self, event: CampaignEvent) -> Result<CampaignStatus, DomainError> {
        use CampaignEvent as E;
        use CampaignStatus as S;
        match (self, event) {
            (S::Draft, E::Schedule) => Ok(S::Scheduled),
            // "Send now" launches straight from a draft.
            (S::Draft, E::Start) => Ok(S::Sending),
            (S::Scheduled, E::Unschedule) => Ok(S::Draft),
            (S::Scheduled, E::Start) => Ok(S::Sending),
            (S::Scheduled, E::Cancel) => Ok(S::Cancelled),
            (S::Sending, E::Pause) => Ok(S::Paused),
            (S::Sending, E::Finish) => Ok(S::Completed),
            (S::Sending, E::Fail) => Ok(S::Failed),
            (S::Sending, E::Cancel) => Ok(S::Cancelled),
            (S::Paused, E::Resume) => Ok(S::Sending),
            (S::Paused, E::Cancel) => Ok(S::Cancelled),
            // Every delivery reached a final state while paused (e.g. all remaining recipients were
            // skipped): there is nothing left to resume.
            (S::Paused, E::Finish) => Ok(S::Completed),
            (from, event) => Err(DomainError::Transition(format!("{} cannot {}", from.phrase(), event.verb()))),
        }
    }

    /// The subject of a refusal message: "a completed campaign cannot …".
    fn phrase(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "a draft campaign",
            CampaignStatus::Scheduled => "a scheduled campaign",
            CampaignStatus::Sending => "a campaign that is sending",
            CampaignStatus::Paused => "a paused campaign",
            CampaignStatus::Completed => "a completed campaign",
            CampaignStatus::Cancelled => "a cancelled campaign",
            CampaignStatus::Failed => "a failed campaign",
        }
    }
}

/// Something that happens to a campaign (a user action or the sender's verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignEvent {
    Schedule,
    Unschedule,
    Start,
    Pause,
    Resume,
    Cancel,
    Finish,
    Fail,
}

impl CampaignEvent {
    pub const ALL: [CampaignEvent; 8] = [
        CampaignEvent::Schedule,
        CampaignEvent::Unschedule,
        CampaignEvent::Start,
        CampaignEvent::Pause,
        CampaignEvent::Resume,
        CampaignEvent::Cancel,
        CampaignEvent::Finish,
        CampaignEvent::Fail,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignEvent::Schedule => "schedule",
            CampaignEvent::Unschedule => "unschedule",
            CampaignEvent::Start => "start",
            CampaignEvent::Pause => "pause",
            CampaignEvent::Resume => "resume",
            CampaignEvent::Cancel => "cancel",
            CampaignEvent::Finish => "finish",
            CampaignEvent::Fail => "fail",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        CampaignEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
    /// The predicate of a refusal message: "… cannot be paused".
    fn verb(self) -> &'static str {
        match self {
            CampaignEvent::Schedule => "be scheduled",
            CampaignEvent::Unschedule => "be unscheduled",
            CampaignEvent::Start => "be started",
            CampaignEvent::Pause => "be paused",
            CampaignEvent::Resume => "be resumed",
            CampaignEvent::Cancel => "be cancelled",
            CampaignEvent::Finish => "be marked as completed",
            CampaignEvent::Fail => "be marked as failed",
        }
    }
}

/// Why a campaign is paused (shown next to the Resume button).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Manual,
    ErrorStreak,
    /// The From address's domain is no longer a verified sending domain of the organisation.
    SendingDomain,
}

impl PauseReason {
    pub const ALL: [PauseReason; 3] = [PauseReason::Manual, PauseReason::ErrorStreak, PauseReason::SendingDomain];
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Manual => "manual",
            PauseReason::ErrorStreak => "error_streak",
            PauseReason::SendingDomain => "sending_domain",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        PauseReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            PauseReason::Manual => "Paused by a user",
            PauseReason::ErrorStreak => "Paused automatically after repeated sending errors",
            PauseReason::SendingDomain => {
                "Paused: the From address's domain is not a verified sending domain (its DNS records are missing or wrong). Fix them, verify the domain again under Settings → Sending domains, then resume"
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retry, throttle, auto-pause
// ---------------------------------------------------------------------------------------------

/// Sending speed limits; the per-domain limit keeps large receivers (Gmail, Outlook) from
/// rate-limiting or junking a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    pub per_second: u32,
    pub per_domain_per_minute: Option<u32>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle { per_second: 50, per_domain_per_minute: None }
    }
}

impl Throttle {
    pub const MAX_PER_SECOND: u32 = 5000;
    pub const MAX_PER_DOMAIN_PER_MINUTE: u32 = 100_000;

    pub fn validate(&self) -> Result<(), DomainError> {
        if !(1..=Self::MAX_PER_SECOND).contains(&self.per_second) {
            return Err(DomainError::invalid("throttle", "messages per second must be between 1 and 5000"));
        }
        if let Some(n) = self.per_domain_per_minute
            && !(1..=Self::MAX_PER_DOMAIN_PER_MINUTE).contains(&n)
        {
            return Err(DomainError::invalid(
                "throttle",
                "messages per domain per minute must be between 1 and 100000",
            ));
        }
        Ok(())
    }
}

/// Pause a campaign by itself when sending keeps failing (a broken SMTP relay, a revoked
/// credential), instead of burning through the whole audience's retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoPause {
    pub after_consecutive_errors: u32,
}

impl Default for AutoPause {
    fn default() -> Self {
        AutoPause { after_consecutive_errors: 10 }
    }
}

impl AutoPause {
    pub const MAX_ERRORS: u32 = 1000;

    pub fn validate(&self) -> Result<(), DomainError> {
        if !(1..=Self::MAX_ERRORS).contains(&self.after_consecutive_errors) {
            return Err(DomainError::invalid(
                "auto_pause",
                "the number of errors in a row before pausing must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}

/// Consecutive sending errors of one campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorStreak {
    pub count: u32,
}

impl ErrorStreak {
    /// Record one send result. Returns true when the campaign should pause now: the streak has
    /// reached the threshold (and stays true while errors continue, so a pause that did not land is
    /// retried). A success resets the streak.
    pub fn record(&mut self, ok: bool, rule: &AutoPause) -> bool {
        if ok {
            self.count = 0;
            return false;
        }
        self.count = self.count.saturating_add(1);
        self.count >= rule.after_consecutive_errors
    }

    /// Called on resume, so a resumed campaign gets a fresh error budget.
    pub fn reset(&mut self) {
        self.count = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// TLS policy
// ---------------------------------------------------------------------------------------------

/// Whether a message may travel to the recipient's server without TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryPolicy {
    #[default]
    TlsRequired,
    TlsPreferred,
}

impl DeliveryPolicy {
    pub const ALL: [DeliveryPolicy; 2] = [DeliveryPolicy::TlsRequired, DeliveryPolicy::TlsPreferred];
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryPolicy::TlsRequired => "tls_required",
            DeliveryPolicy::TlsPreferred => "tls_preferred",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        DeliveryPolicy::ALL.into_iter().find(|p| p.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            DeliveryPolicy::TlsRequired => "TLS required (recommended)",
            DeliveryPolicy::TlsPreferred => "TLS when available",
        }
    }
}

/// PHI must be encrypted in transit (HIPAA §164.312(e)): a template that merges patient information
/// may only go out with TLS required.
pub fn check_policy(policy: DeliveryPolicy, template_has_phi: bool) -> Result<(), DomainError> {
    if template_has_phi && policy == DeliveryPolicy::TlsPreferred {
        return Err(DomainError::invalid(
            "delivery",
            "this template contains patient information, so it can only be sent with TLS required",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scheduling
// ---------------------------------------------------------------------------------------------

/// How far ahead a campaign may be scheduled.
pub const MAX_SCHEDULE_DAYS: i64 = 366;

/// When a campaign goes out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// As soon as it is launched.
    #[default]
    Now,
    /// At one instant for everyone.
    At { at: DateTime<Utc> },
    /// At this wall-clock time in each recipient's own time zone (the service resolves the zones).
    LocalTime { date: NaiveDate, time: NaiveTime },
}

impl Schedule {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        match *self {
            Schedule::Now => Ok(()),
            Schedule::At { at } => {
                // Differences of instants cannot overflow (sums near the end of time could).
                let ahead = at.signed_duration_since(now);
                if ahead < Duration::minutes(1) {
                    return Err(DomainError::invalid("schedule", "choose a time at least one minute from now"));
                }
                if ahead > Duration::days(MAX_SCHEDULE_DAYS) {
                    return Err(DomainError::invalid("schedule", "choose a time within the next year"));
                }
                Ok(())
            }
            Schedule::LocalTime { date, time } => {
                // Time zones run from UTC−12 to UTC+14, so a local date may lag the UTC date by one.
                let days_ahead = date.signed_duration_since(now.date_naive()).num_days();
                if days_ahead < -1 {
                    return Err(DomainError::invalid("schedule", "choose a date that is not in the past"));
                }
                if days_ahead > MAX_SCHEDULE_DAYS {
                    return Err(DomainError::invalid("schedule", "choose a date within the next year"));
                }
                // The last place on Earth to reach this wall-clock time is UTC−12 (12 hours after it
                // happens at UTC); if even there it has passed, no recipient would get it on time.
                let last = date.and_time(time).checked_add_signed(Duration::hours(LATEST_OFFSET_HOURS));
                if last.is_some_and(|last| last <= now.naive_utc()) {
                    return Err(DomainError::invalid(
                        "schedule",
                        "this local time has already passed in every time zone",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Hours the westernmost offset in use (UTC−12:00) lags UTC.
const LATEST_OFFSET_HOURS: i64 = 12;

/// The instant at which `date time` happens on a clock at `offset`.
///
/// The service looks up each recipient's offset for that date from the tz database. DST gaps and
/// overlaps (a local time that does not exist, or exists twice) are the service's concern: it picks
/// the offset (e.g. the one in force just before the gap), and this function just applies it.
pub fn local_send_at(date: NaiveDate, time: NaiveTime, offset: FixedOffset) -> DateTime<Utc> {
    let local = date.and_time(time);
    // Overflow is only possible hundreds of thousands of years out; keep the local time then.
    let utc = local.checked_sub_signed(Duration::seconds(i64::from(offset.local_minus_utc()))).unwrap_or(local);
    DateTime::from_naive_utc_and_offset(utc, Utc)
}

// ---------------------------------------------------------------------------------------------
// Audience and settings
// ---------------------------------------------------------------------------------------------

/// Most segments, and most lists, one campaign may target.
pub const MAX_AUDIENCE_ITEMS: usize = 20;

/// Who receives a campaign: contacts in any of the segments or lists (the union), minus anyone
/// unsubscribed, suppressed or without consent for the campaign's purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    pub segments: Vec<Uuid>,
    pub lists: Vec<Uuid>,
}

impl Audience {
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.segments.is_empty() && self.lists.is_empty() {
            return Err(DomainError::invalid("audience", "choose at least one segment or list"));
        }
        if self.segments.len() > MAX_AUDIENCE_ITEMS {
            return Err(DomainError::invalid("audience", "choose at most 20 segments"));
        }
        if self.lists.len() > MAX_AUDIENCE_ITEMS {
            return Err(DomainError::invalid("audience", "choose at most 20 lists"));
        }
        if has_duplicates(&self.segments) {
            return Err(DomainError::invalid("audience", "a segment is chosen more than once"));
        }
        if has_duplicates(&self.lists) {
            return Err(DomainError::invalid("audience", "a list is chosen more than once"));
        }
        Ok(())
    }
}

fn has_duplicates(ids: &[Uuid]) -> bool {
    let mut seen = HashSet::with_capacity(ids.len());
    !ids.iter().all(|id| seen.insert(id))
}

pub const MAX_NAME_CHARS: usize = 100;

/// The editable part of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSettings {
    pub name: String,
    /// Only contacts who consented to this purpose receive the campaign.
    pub purpose: ConsentPurpose,
    pub audience: Audience,
    pub template_id: Option<Uuid>,
    pub from_name: String,
    pub from_email: String,
    pub reply_to: Option<String>,
    pub policy: DeliveryPolicy,
    pub schedule: Schedule,
    pub throttle: Throttle,
    pub auto_pause: AutoPause,
}

impl CampaignSettings {
    /// What a draft must satisfy to be saved. The sender fields end up in mail headers, so line
    /// breaks there would let someone inject headers (`Bcc:`); they are refused outright rather than
    /// stripped, so what is saved is what was typed.
    pub fn validate_draft(&self) -> Result<(), DomainError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(is_unsafe_char) {
            return Err(DomainError::invalid("name", "must be 1 to 100 characters without line breaks"));
        }
        if self.from_name.chars().count() > MAX_NAME_CHARS || self.from_name.chars().any(is_unsafe_char) {
            return Err(DomainError::invalid("from_name", "must be at most 100 characters without line breaks"));
        }
        // Transactional mail answers one patient's own care or request: an integration sends it
        // through the API (`POST /api/v1/messages`), never a campaign to an audience.
        if self.purpose == ConsentPurpose::Transactional {
            return Err(DomainError::invalid(
                "purpose",
                "transactional messages are sent one at a time through the API, not as a campaign",
            ));
        }
        check_address("from_email", &self.from_email)?;
        if let Some(reply_to) = &self.reply_to {
            check_address("reply_to", reply_to)?;
        }
        self.throttle.validate()?;
        self.auto_pause.validate()?;
        Ok(())
    }

    /// Everything a campaign must satisfy to be scheduled or sent.
    pub fn validate_for_launch(&self, template_has_phi: bool, now: DateTime<Utc>) -> Result<(), DomainError> {
        self.validate_draft()?;
        self.audience.validate()?;
        if self.template_id.is_none() {
            return Err(DomainError::invalid("template", "choose a template"));
        }
        check_policy(self.policy, template_has_phi)?;
        self.schedule.validate(now)
    }
}

/// Control characters (CR, LF, NUL, NEL …) and the Unicode line/paragraph separators, which some
/// mail software also treats as line breaks.
fn is_unsafe_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `EmailAddress::parse` trims surrounding whitespace, which would quietly accept a trailing
/// "\r\n"; check for line breaks and control characters on the raw text first.
fn check_address(field: &str, raw: &str) -> Result<(), DomainError> {
    let bad = || DomainError::invalid(field, "is not a valid email address");
    if raw.chars().any(is_unsafe_char) {
        return Err(bad());
    }
    crate::email::EmailAddress::parse(raw).map(|_| ()).map_err(|_| bad())
}

/// The lower-cased domain of an address (after the last `@`), for per-domain throttling.
pub fn recipient_domain(email: &str) -> Option<String> {
    let (_, domain) = email.rsplit_once('@')?;
    let domain = domain.trim();
    if domain.is_empty() { None } else { Some(domain.to_lowercase()) }
}

// ---------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------

/// Delivery rows of one campaign by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    pub queued: u64,
    pub sending: u64,
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
}

impl DeliveryCounts {
    /// Add `n` rows in `state` (e.g. from a `GROUP BY state` query).
    pub fn add(&mut self, state: DeliveryState, n: u64) {
        let slot = match state {
            DeliveryState::Queued => &mut self.queued,
            DeliveryState::Sending => &mut self.sending,
            DeliveryState::Sent => &mut self.sent,
            DeliveryState::Deferred => &mut self.deferred,
            DeliveryState::Bounced => &mut self.bounced,
            DeliveryState::Failed => &mut self.failed,
            DeliveryState::Skipped => &mut self.skipped,
            DeliveryState::Cancelled => &mut self.cancelled,
        };
        *slot = slot.saturating_add(n);
    }
    pub fn total(&self) -> u64 {
        self.remaining().saturating_add(self.done())
    }
    /// Rows still to be sent (or being sent).
    pub fn remaining(&self) -> u64 {
        self.queued.saturating_add(self.sending).saturating_add(self.deferred)
    }
    /// Rows in a final state.
    pub fn done(&self) -> u64 {
        [self.sent, self.bounced, self.failed, self.skipped, self.cancelled].into_iter().fold(0u64, u64::saturating_add)
    }
    /// Share of rows in a final state, 0.0 to 1.0 (0 for an empty campaign).
    pub fn fraction_done(&self) -> f64 {
        let total = self.total();
        if total == 0 { 0.0 } else { self.done() as f64 / total as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn enums_round_trip_through_their_names() {
        for s in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            assert!(!s.label().is_empty());
        }
        for e in CampaignEvent::ALL {
            assert_eq!(CampaignEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{}\"", e.as_str()));
        }
        for d in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.as_str()));
            assert!(!d.label().is_empty());
            assert!(!(d.is_final() && d.is_pending()));
        }
        for r in PauseReason::ALL {
            assert_eq!(PauseReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        for p in DeliveryPolicy::ALL {
            assert_eq!(DeliveryPolicy::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        for r in MachineReason::ALL {
            assert_eq!(MachineReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        for k in OpenKind::ALL {
            assert_eq!(OpenKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(CampaignStatus::parse("Draft"), None);
        assert_eq!(DeliveryPolicy::default(), DeliveryPolicy::TlsRequired);
        assert_eq!(PauseReason::ErrorStreak.label(), "Paused automatically after repeated sending errors");
    }

    #[test]
    fn campaign_status_predicates() {
        use CampaignStatus as S;
        let terminal: Vec<_> = S::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [S::Completed, S::Cancelled, S::Failed]);
        let editable: Vec<_> = S::ALL.into_iter().filter(|s| s.is_editable()).collect();
        assert_eq!(editable, [S::Draft]);
        let active: Vec<_> = S::ALL.into_iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [S::Sending]);
    }

    #[test]
    fn campaign_transitions_exhaustive() {
        use CampaignEvent as E;
        use CampaignStatus as S;
        let allowed = [
            (S::Draft, E::Schedule, S::Scheduled),
            (S::Draft, E::Start, S::Sending),
            (S::Scheduled, E::Unschedule, S::Draft),
            (S::Scheduled, E::Start, S::Sending),
            (S::Scheduled, E::Cancel, S::Cancelled),
            (S::Sending, E::Pause, S::Paused),
            (S::Sending, E::Finish, S::Completed),
            (S::Sending, E::Fail, S::Failed),
            (S::Sending, E::Cancel, S::Cancelled),
            (S::Paused, E::Resume, S::Sending),
            (S::Paused, E::Cancel, S::Cancelled),
            (S::Paused, E::Finish, S::Completed),
        ];
        let mut ok = 0;
        for from in S::ALL {
            for event in E::ALL {
                let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                match (from.transition(event), expected) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from:?} + {event:?}");
                        ok += 1;
                    }
                    (Err(DomainError::Transition(msg)), None) => {
                        assert!(msg.contains("cannot"), "{msg}");
                    }
                    (got, want) => panic!("{from:?} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(ok, allowed.len());
        for s in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(E::ALL.into_iter().all(|e| s.transition(e).is_err()), "{s:?} must be terminal");
        }
        assert_eq!(
            S::Completed.transition(E::Pause),
            Err(DomainError::Transition("a completed campaign cannot be paused".into()))
        );
        assert_eq!(
            S::Completed.transition(E::Pause).unwrap_err().to_string(),
            "this change is not allowed: a completed campaign cannot be paused"
        );
    }

    #[test]
    fn throttle_and_auto_pause_bounds() {
        assert!(Throttle::default().validate().is_ok());
        assert_eq!(Throttle::default(), Throttle { per_second: 50, per_domain_per_minute: None });
        for (per_second, ok) in [(0, false), (1, true), (5000, true), (5001, false), (u32::MAX, false)] {
            assert_eq!(Throttle { per_second, per_domain_per_minute: None }.validate().is_ok(), ok, "{per_second}");
        }
        let e = Throttle { per_second: 0, per_domain_per_minute: None }.validate().unwrap_err();
        assert_eq!(e, DomainError::invalid("throttle", "messages per second must be between 1 and 5000"));
        for (d, ok) in [(0, false), (1, true), (100_000, true), (100_001, false)] {
            assert_eq!(Throttle { per_second: 10, per_domain_per_minute: Some(d) }.validate().is_ok(), ok, "{d}");
        }
        assert_eq!(AutoPause::default().after_consecutive_errors, 10);
        for (n, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            assert_eq!(AutoPause { after_consecutive_errors: n }.validate().is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn error_streak_pauses_at_threshold_and_resets_on_success() {
        let rule = AutoPause { after_consecutive_errors: 3 };
        let mut s = ErrorStreak::default();
        assert!(!s.record(false, &rule));
        assert!(!s.record(false, &rule));
        assert!(!s.record(true, &rule), "a success resets");
        assert_eq!(s.count, 0);
        assert!(!s.record(false, &rule));
        assert!(!s.record(false, &rule));
        assert!(s.record(false, &rule), "third error in a row pauses");
        assert!(s.record(false, &rule), "still pausing while errors continue");
        s.reset();
        assert!(!s.record(false, &rule), "a resumed campaign gets a fresh budget");
        let one = AutoPause { after_consecutive_errors: 1 };
        assert!(ErrorStreak::default().record(false, &one));
        let mut full = ErrorStreak { count: u32::MAX };
        assert!(full.record(false, &rule), "no overflow");
        assert_eq!(full.count, u32::MAX);
    }

    #[test]
    fn phi_templates_require_tls() {
        assert!(check_policy(DeliveryPolicy::TlsRequired, true).is_ok());
        assert!(check_policy(DeliveryPolicy::TlsRequired, false).is_ok());
        assert!(check_policy(DeliveryPolicy::TlsPreferred, false).is_ok());
        assert_eq!(
            check_policy(DeliveryPolicy::TlsPreferred, true),
            Err(DomainError::invalid(
                "delivery",
                "this template contains patient information, so it can only be sent with TLS required"
            ))
        );
    }

    #[test]
    fn schedule_at_bounds() {
        let n = now();
        assert!(Schedule::Now.validate(n).is_ok());
        let at = |d: Duration| Schedule::At { at: n + d };
        assert!(at(Duration::minutes(1)).validate(n).is_ok());
        assert!(at(Duration::seconds(59)).validate(n).is_err());
        assert!(at(Duration::zero()).validate(n).is_err());
        assert!(at(-Duration::days(1)).validate(n).is_err(), "past");
        assert!(at(Duration::days(366)).validate(n).is_ok());
        assert!(at(Duration::days(366) + Duration::seconds(1)).validate(n).is_err());
        // Hostile instants at the ends of time are refused without panicking.
        let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        assert!(Schedule::At { at: max }.validate(min).is_err());
        assert!(Schedule::At { at: min }.validate(max).is_err());
        assert!(Schedule::LocalTime { date: NaiveDate::MAX, time: NaiveTime::MIN }.validate(min).is_err());
        assert!(Schedule::LocalTime { date: NaiveDate::MIN, time: NaiveTime::MIN }.validate(max).is_err());
    }

    #[test]
    fn schedule_local_time_bounds() {
        let n = now(); // 2025-03-10 12:00 UTC
        let local = |date, time| Schedule::LocalTime { date, time };
        assert!(local(day(2025, 3, 10), hm(9, 0)).validate(n).is_ok(), "still ahead west of UTC−3");
        assert!(local(day(2025, 3, 11), hm(0, 0)).validate(n).is_ok());
        // Yesterday's date is still today somewhere, as long as the time has not passed at UTC−12.
        let early = Utc.with_ymd_and_hms(2025, 3, 10, 2, 0, 0).unwrap();
        assert!(local(day(2025, 3, 9), hm(23, 30)).validate(early).is_ok(), "11:30 UTC at UTC−12");
        assert!(local(day(2025, 3, 9), hm(10, 0)).validate(early).is_err(), "passed everywhere");
        assert!(local(day(2025, 3, 9), hm(23, 30)).validate(n).is_err(), "passed everywhere by noon UTC");
        assert!(local(day(2025, 3, 10), hm(0, 1)).validate(n).is_ok(), "00:01 at UTC−12 is 12:01 UTC");
        assert!(local(day(2025, 3, 10), hm(0, 0)).validate(n).is_err(), "exactly now at UTC−12");
        assert!(local(day(2025, 3, 8), hm(23, 59)).validate(n).is_err(), "two days back");
        assert!(local(day(2026, 3, 11), hm(8, 0)).validate(n).is_ok(), "366 days ahead");
        assert!(local(day(2026, 3, 12), hm(8, 0)).validate(n).is_err());
    }

    #[test]
    fn schedule_json_shape() {
        let s = Schedule::LocalTime { date: day(2025, 4, 1), time: hm(9, 30) };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"local_time","date":"2025-04-01","time":"09:30:00"}"#);
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
        assert_eq!(serde_json::to_string(&Schedule::Now).unwrap(), r#"{"kind":"now"}"#);
        let at: Schedule = serde_json::from_str(r#"{"kind":"at","at":"2025-04-01T09:30:00Z"}"#).unwrap();
        assert_eq!(at, Schedule::At { at: Utc.with_ymd_and_hms(2025, 4, 1, 9, 30, 0).unwrap() });
    }

    #[test]
    fn local_send_at_applies_the_offset() {
        let ny = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(local_send_at(day(2025, 3, 10), hm(9, 0), ny), Utc.with_ymd_and_hms(2025, 3, 10, 14, 0, 0).unwrap());
        let kiritimati = FixedOffset::east_opt(14 * 3600).unwrap();
        assert_eq!(
            local_send_at(day(2025, 3, 10), hm(9, 0), kiritimati),
            Utc.with_ymd_and_hms(2025, 3, 9, 19, 0, 0).unwrap()
        );
        assert_eq!(
            local_send_at(day(2025, 3, 10), hm(9, 0), FixedOffset::east_opt(0).unwrap()),
            Utc.with_ymd_and_hms(2025, 3, 10, 9, 0, 0).unwrap()
        );
        // The far edges of the calendar do not panic.
        let _ = local_send_at(NaiveDate::MAX, NaiveTime::MIN, ny);
        let _ = local_send_at(NaiveDate::MIN, NaiveTime::MIN, kiritimati);
    }

    #[test]
    fn audience_rules() {
        let ids = |n: usize| (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect::<Vec<_>>();
        let e = Audience::default().validate().unwrap_err();
        assert_eq!(e, DomainError::invalid("audience", "choose at least one segment or list"));
        assert!(Audience { segments: ids(1), lists: vec![] }.validate().is_ok());
        assert!(Audience { segments: vec![], lists: ids(1) }.validate().is_ok());
        assert!(Audience { segments: ids(20), lists: ids(20) }.validate().is_ok());
        assert!(Audience { segments: ids(21), lists: vec![] }.validate().is_err());
        assert!(Audience { segments: vec![], lists: ids(21) }.validate().is_err());
        let dup = vec![Uuid::from_u128(7), Uuid::from_u128(8), Uuid::from_u128(7)];
        assert!(Audience { segments: dup.clone(), lists: vec![] }.validate().is_err());
        assert!(Audience { segments: vec![], lists: dup }.validate().is_err());
        // The same id as a segment and as a list is not a duplicate: they are different things.
        assert!(Audience { segments: ids(1), lists: ids(1) }.validate().is_ok());
    }

    fn settings() -> CampaignSettings {
        CampaignSettings {
            name: "Spring flu shots".into(),
            purpose: ConsentPurpose::CareCommunications,
            audience: Audience { segments: vec![Uuid::from_u128(1)], lists: vec![] },
            template_id: Some(Uuid::from_u128(2)),
            from_name: "Riverside Clinic".into(),
            from_email: "news@riverside.example.org".into(),
            reply_to: Some("front-desk@riverside.example.org".into()),
            policy: DeliveryPolicy::TlsRequired,
            schedule: Schedule::At { at: now() + Duration::days(1) },
            throttle: Throttle::default(),
            auto_pause: AutoPause::default(),
        }
    }

    fn field_of(e: DomainError) -> String {
        match e {
            DomainError::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn good_settings_pass() {
        let s = settings();
        assert!(s.validate_draft().is_ok());
        assert!(s.validate_for_launch(true, now()).is_ok());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CampaignSettings>(&json).unwrap(), s);
        // A draft need not have an audience, template or future schedule yet.
        let draft = CampaignSettings {
            audience: Audience::default(),
            template_id: None,
            schedule: Schedule::At { at: now() - Duration::days(3) },
            reply_to: None,
            from_name: String::new(),
            ..settings()
        };
        assert!(draft.validate_draft().is_ok());
    }

    #[test]
    fn the_editor_offers_exactly_the_purposes_a_campaign_may_use() {
        for p in ConsentPurpose::ALL {
            let ok = CampaignSettings { purpose: p, ..settings() }.validate_draft().is_ok();
            assert_eq!(ok, ConsentPurpose::FOR_CAMPAIGNS.contains(&p), "{p:?}");
        }
    }

    #[test]
    fn hostile_settings_are_refused() {
        let check = |s: CampaignSettings, field: &str| {
            let e = s.validate_draft().unwrap_err();
            let msg = e.to_string();
            assert_eq!(field_of(e), field);
            // Nothing typed is echoed back.
            for secret in ["Bcc", "x@y", "evil", "AAAA"] {
                assert!(!msg.contains(secret), "{msg}");
            }
        };
        check(CampaignSettings { from_name: "Clinic\r\nBcc: x@y".into(), ..settings() }, "from_name");
        check(CampaignSettings { from_name: "Clinic\nBcc: x@y".into(), ..settings() }, "from_name");
        check(CampaignSettings { from_name: "Clinic\u{2028}Bcc: x@y".into(), ..settings() }, "from_name");
        check(CampaignSettings { from_name: "Clinic\u{0}".into(), ..settings() }, "from_name");
        check(CampaignSettings { from_name: "A".repeat(101), ..settings() }, "from_name");
        check(CampaignSettings { name: "A".repeat(10 * 1024), ..settings() }, "name");
        check(CampaignSettings { name: "   ".into(), ..settings() }, "name");
        check(CampaignSettings { name: "Spring\r\nflu".into(), ..settings() }, "name");
        check(
            CampaignSettings { from_email: "news@riverside.example.org\r\nBcc: x@y".into(), ..settings() },
            "from_email",
        );
        // Trailing CRLF would be trimmed away by the address parser: it must be refused first.
        check(CampaignSettings { from_email: "news@riverside.example.org\r\n".into(), ..settings() }, "from_email");
        check(CampaignSettings { from_email: "evil".into(), ..settings() }, "from_email");
        check(CampaignSettings { reply_to: Some("evil\n@x.org".into()), ..settings() }, "reply_to");
        check(CampaignSettings { reply_to: Some(String::new()), ..settings() }, "reply_to");
        check(
            CampaignSettings { throttle: Throttle { per_second: 0, per_domain_per_minute: None }, ..settings() },
            "throttle",
        );
        check(CampaignSettings { auto_pause: AutoPause { after_consecutive_errors: 0 }, ..settings() }, "auto_pause");
        // Exactly 100 characters (multi-byte ones count once) is fine.
        assert!(
            CampaignSettings { name: "é".repeat(100), from_name: "ü".repeat(100), ..settings() }
                .validate_draft()
                .is_ok()
        );
    }

    #[test]
    fn launch_checks() {
        let n = now();
        let launch = |s: CampaignSettings, phi: bool| field_of(s.validate_for_launch(phi, n).unwrap_err());
        assert_eq!(launch(CampaignSettings { audience: Audience::default(), ..settings() }, false), "audience");
        let e = CampaignSettings { template_id: None, ..settings() }.validate_for_launch(false, n).unwrap_err();
        assert_eq!(e, DomainError::invalid("template", "choose a template"));
        assert_eq!(launch(CampaignSettings { policy: DeliveryPolicy::TlsPreferred, ..settings() }, true), "delivery");
        assert!(
            CampaignSettings { policy: DeliveryPolicy::TlsPreferred, ..settings() }
                .validate_for_launch(false, n)
                .is_ok()
        );
        assert_eq!(
            launch(CampaignSettings { schedule: Schedule::At { at: n - Duration::hours(1) }, ..settings() }, false),
            "schedule"
        );
        assert_eq!(
            launch(CampaignSettings { from_name: "Clinic\r\nBcc: x@y".into(), ..settings() }, false),
            "from_name"
        );
        assert!(CampaignSettings { schedule: Schedule::Now, ..settings() }.validate_for_launch(false, n).is_ok());
    }

    #[test]
    fn recipient_domains() {
        assert_eq!(recipient_domain("Jane@Example.ORG").as_deref(), Some("example.org"));
        assert_eq!(recipient_domain("\"a@b\"@gmail.com").as_deref(), Some("gmail.com"), "after the last @");
        assert_eq!(recipient_domain("no-at-sign"), None);
        assert_eq!(recipient_domain("jane@"), None);
        assert_eq!(recipient_domain("jane@  "), None);
        assert_eq!(recipient_domain(""), None);
    }

    #[test]
    fn delivery_counts() {
        let empty = DeliveryCounts::default();
        assert_eq!((empty.total(), empty.remaining(), empty.done()), (0, 0, 0));
        assert_eq!(empty.fraction_done(), 0.0);
        let mut c = DeliveryCounts::default();
        for (i, s) in DeliveryState::ALL.into_iter().enumerate() {
            c.add(s, i as u64 + 1);
        }
        // queued 1, sending 2, sent 3, deferred 4, bounced 5, failed 6, skipped 7, cancelled 8
        assert_eq!(c.total(), 36);
        assert_eq!(c.remaining(), 1 + 2 + 4);
        assert_eq!(c.done(), 3 + 5 + 6 + 7 + 8);
        assert!((c.fraction_done() - 29.0 / 36.0).abs() < 1e-12);
        let all_sent = DeliveryCounts { sent: 10, ..Default::default() };
        assert_eq!(all_sent.fraction_done(), 1.0);
        let huge = DeliveryCounts { sent: u64::MAX, queued: u64::MAX, ..Default::default() };
        assert_eq!(huge.total(), u64::MAX, "saturates instead of overflowing");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<DeliveryCounts>(&json).unwrap(), c);
    }
}
