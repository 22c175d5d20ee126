//! Triggered follow-up sequences: the definition (a trigger, entry rules, goals and a graph of
//! steps, stored as versioned JSON), its validation, and the pure step machine the engine runs.
//!
//! Invariants:
//! - A definition is data. Published versions are immutable; steps keep stable ids across versions.
//! - The graph is acyclic, every step is reachable from `start`, and every reference names a step,
//!   so an enrolment always ends; [`validate`] refuses anything else with the step it is about.
//! - [`decide`] is a pure function of the step, the enrolment's facts and the time: the engine
//!   stores only where an enrolment is and when its current step began, and calling `decide` again
//!   after a crash gives the same answer (random splits draw from the enrolment id and the visit).
//! - Nothing here holds a contact's value: trigger conditions on event properties may carry
//!   literals, which are PHI and are masked by [`SequenceDefinition::masked`] for the plain copy.
//! - Time zones are applied through [`LocalZone`] (the service implements it with the tz
//!   database), so this crate stays free of zone data.

use crate::DomainError;
use crate::campaigns::DeliveryPolicy;
use crate::contacts::{ConsentPurpose, FieldValue};
use crate::segments::{FieldTest, Node, PropertyTest};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

pub const FORMAT_VERSION: u32 = 1;
pub const MAX_STEPS: usize = 100;
pub const MAX_PROPERTY_TESTS: usize = 20;
/// The longest wait (a year) and the longest wait-for timeout.
pub const MAX_WAIT_MINUTES: u32 = 366 * 24 * 60;
pub const MAX_BUSINESS_DAYS: u32 = 260;
pub const MAX_NAME: usize = 120;
/// Steps one wake-up may run before the engine stores the enrolment and moves on.
pub const MAX_STEPS_PER_WAKE: usize = 32;

/// A stable step id, unique within a sequence across its versions (`a`–`z`, `0`–`9`, `_`, `-`).
pub type StepId = String;

/// A sequence definition (what a version holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceDefinition {
    pub version: u32,
    pub trigger: Trigger,
    #[serde(default)]
    pub entry: EntryRule,
    /// A trigger-event property that identifies "the same thing" (an appointment id): later
    /// events match this enrolment only when they carry the same value.
    #[serde(default)]
    pub correlation_key: Option<String>,
    /// Conversion: this event ends the enrolment wherever it is and counts as converted.
    #[serde(default)]
    pub goal: Option<EventMatch>,
    /// Events that end the enrolment (e.g. the appointment was cancelled).
    #[serde(default)]
    pub exit_on: Vec<EventMatch>,
    /// Sends wait while it is night in the recipient's zone.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// At most `max` marketing messages (campaigns and sequences) per contact in `days` days.
    #[serde(default)]
    pub frequency_cap: Option<FrequencyCap>,
    pub start: StepId,
    pub steps: Vec<Step>,
}

/// What starts an enrolment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A patient event of a type, with conditions on its properties (all must hold).
    Event {
        event_type: String,
        #[serde(default)]
        properties: Vec<PropertyTest>,
    },
    /// Only explicit enrolment (the API or an operator).
    Manual,
    /// Added to a list (subscribed: a double opt-in list counts at confirmation), by any path —
    /// the app, an import, the API, another sequence.
    ListAdded { list: Uuid },
    /// Entered a saved segment: became a member after the sequence went live (the members at
    /// publication are the starting point, not entrants). Checked every minute.
    SegmentEntered { segment: Uuid },
    /// A person's first open or click (machine opens and link scanners do not count) of a
    /// campaign's email.
    CampaignEngaged { campaign: Uuid, action: Engagement },
}

/// A campaign engagement that starts a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engagement {
    Opened,
    Clicked,
}

/// How a published version's trigger is stored for matching without opening the definition
/// (`sequence_version.trigger_kind`, `trigger_ref`): the kind's code, and the list, segment or
/// campaign it names. Ids only: a trigger's literals stay in the sealed definition.
pub mod trigger_kind {
    pub const EVENT: &str = "event";
    pub const MANUAL: &str = "manual";
    pub const LIST_ADDED: &str = "list_added";
    pub const SEGMENT_ENTERED: &str = "segment_entered";
    pub const CAMPAIGN_OPENED: &str = "campaign_opened";
    pub const CAMPAIGN_CLICKED: &str = "campaign_clicked";
    pub const ALL: [&str; 6] = [EVENT, MANUAL, LIST_ADDED, SEGMENT_ENTERED, CAMPAIGN_OPENED, CAMPAIGN_CLICKED];
}

impl Trigger {
    pub fn event_type(&self) -> Option<&str> {
        match self {
            Trigger::Event { event_type, .. } => Some(event_type),
            _ => None,
        }
    }
    /// The stored kind and the id it names (see [`trigger_kind`]).
    pub fn stored(&self) -> (&'static str, Option<Uuid>) {
        match self {
            Trigger::Event { .. } => (trigger_kind::EVENT, None),
            Trigger::Manual => (trigger_kind::MANUAL, None),
            Trigger::ListAdded { list } => (trigger_kind::LIST_ADDED, Some(*list)),
            Trigger::SegmentEntered { segment } => (trigger_kind::SEGMENT_ENTERED, Some(*segment)),
            Trigger::CampaignEngaged { campaign, action: Engagement::Opened } => {
                (trigger_kind::CAMPAIGN_OPENED, Some(*campaign))
            }
            Trigger::CampaignEngaged { campaign, action: Engagement::Clicked } => {
                (trigger_kind::CAMPAIGN_CLICKED, Some(*campaign))
            }
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Trigger::Event { event_type, properties } if properties.is_empty() => format!("event {event_type}"),
            Trigger::Event { event_type, properties } => {
                format!("event {event_type} with {} property condition(s)", properties.len())
            }
            Trigger::Manual => "enrolled explicitly".into(),
            Trigger::ListAdded { .. } => "added to a list".into(),
            Trigger::SegmentEntered { .. } => "entered a segment".into(),
            Trigger::CampaignEngaged { action: Engagement::Opened, .. } => "opened a campaign".into(),
            Trigger::CampaignEngaged { action: Engagement::Clicked, .. } => "clicked in a campaign".into(),
        }
    }
}

/// Whether a contact may enter again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryRule {
    /// Never again once entered (whichever version).
    OnceEver,
    /// Again only after the previous enrolment ended.
    #[default]
    OneAtATime,
    /// Every trigger enrols (each with its own correlation value).
    EveryTime,
}

impl EntryRule {
    pub const ALL: [EntryRule; 3] = [EntryRule::OnceEver, EntryRule::OneAtATime, EntryRule::EveryTime];
    pub fn as_str(self) -> &'static str {
        match self {
            EntryRule::OnceEver => "once_ever",
            EntryRule::OneAtATime => "one_at_a_time",
            EntryRule::EveryTime => "every_time",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            EntryRule::OnceEver => "Once ever",
            EntryRule::OneAtATime => "Once at a time",
            EntryRule::EveryTime => "Every time",
        }
    }
    /// May a contact enter, given how many enrolments they have in this sequence (`ever`) and
    /// how many are still active?
    pub fn admits(self, ever: u32, active: u32) -> bool {
        match self {
            EntryRule::OnceEver => ever == 0,
            EntryRule::OneAtATime => active == 0,
            EntryRule::EveryTime => true,
        }
    }
}

/// A later event that matters to an enrolment: of a type, and (when `correlated`) carrying the
/// same value of the sequence's correlation key as the trigger event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMatch {
    pub event_type: String,
    #[serde(default)]
    pub correlated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Local hour (0–23) quiet time begins, and the hour it ends (sends wait until then).
    pub from_hour: u32,
    pub to_hour: u32,
}

impl QuietHours {
    /// Whether `local` falls in the quiet time, and when it ends (local).
    pub fn ends_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let h = local.hour_of_day();
        let quiet = if self.from_hour <= self.to_hour {
            h >= self.from_hour && h < self.to_hour
        } else {
            h >= self.from_hour || h < self.to_hour
        };
        if !quiet {
            return None;
        }
        let end_today = local.date().and_time(NaiveTime::from_hms_opt(self.to_hour, 0, 0)?);
        Some(if end_today > local { end_today } else { end_today + Duration::days(1) })
    }
}

trait HourOfDay {
    fn hour_of_day(&self) -> u32;
}
impl HourOfDay for NaiveDateTime {
    fn hour_of_day(&self) -> u32 {
        chrono::Timelike::hour(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub max: u32,
    pub days: u32,
    /// When capped: wait until a send leaves the window (`true`) or skip the email (`false`).
    #[serde(default)]
    pub wait: bool,
}

/// One step of the graph. `next: None` ends the enrolment (completed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// Send a template (the version pinned when the sequence is published).
    SendEmail {
        template: Option<Uuid>,
        #[serde(default)]
        template_version: Option<Uuid>,
        purpose: ConsentPurpose,
        #[serde(default)]
        policy: DeliveryPolicy,
        next: Option<StepId>,
    },
    Wait {
        wait: WaitSpec,
        next: Option<StepId>,
    },
    /// Wait for something to happen, at most `timeout_minutes`; an event that already happened
    /// since the enrolment began counts at once.
    WaitFor {
        event: Awaited,
        timeout_minutes: u32,
        on_event: Option<StepId>,
        on_timeout: Option<StepId>,
    },
    Branch {
        test: BranchTest,
        then: Option<StepId>,
        otherwise: Option<StepId>,
    },
    /// Percentages summing to 100.
    RandomSplit {
        paths: Vec<SplitPath>,
    },
    UpdateList {
        list: Uuid,
        add: bool,
        next: Option<StepId>,
    },
    /// Email a member of staff that a contact reached this step: the sequence, the step, the
    /// note and a link to the enrolment — never the contact's name, address or data.
    NotifyStaff {
        user: Uuid,
        /// A fixed note for the recipient ("call to reschedule"); the same for every contact.
        #[serde(default)]
        note: String,
        next: Option<StepId>,
    },
    Exit,
}

/// The longest note of a notify-staff step.
pub const MAX_NOTE: usize = 300;

impl StepKind {
    pub fn code(&self) -> &'static str {
        match self {
            StepKind::SendEmail { .. } => "send_email",
            StepKind::Wait { .. } => "wait",
            StepKind::WaitFor { .. } => "wait_for",
            StepKind::Branch { .. } => "branch",
            StepKind::RandomSplit { .. } => "random_split",
            StepKind::UpdateList { .. } => "update_list",
            StepKind::NotifyStaff { .. } => "notify_staff",
            StepKind::Exit => "exit",
        }
    }
    pub fn label(&self) -> &'static str {
        match self {
            StepKind::SendEmail { .. } => "Send email",
            StepKind::Wait { .. } => "Wait",
            StepKind::WaitFor { .. } => "Wait for",
            StepKind::Branch { .. } => "Branch",
            StepKind::RandomSplit { .. } => "Random split",
            StepKind::UpdateList { .. } => "Update contact",
            StepKind::NotifyStaff { .. } => "Notify staff",
            StepKind::Exit => "Exit",
        }
    }
    /// The steps this one can go to (in display order).
    pub fn successors(&self) -> Vec<&StepId> {
        match self {
            StepKind::SendEmail { next, .. }
            | StepKind::Wait { next, .. }
            | StepKind::UpdateList { next, .. }
            | StepKind::NotifyStaff { next, .. } => next.iter().collect(),
            StepKind::WaitFor { on_event, on_timeout, .. } => on_event.iter().chain(on_timeout.iter()).collect(),
            StepKind::Branch { then, otherwise, .. } => then.iter().chain(otherwise.iter()).collect(),
            StepKind::RandomSplit { paths } => paths.iter().filter_map(|p| p.next.as_ref()).collect(),
            StepKind::Exit => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPath {
    pub percent: u32,
    pub next: Option<StepId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitSpec {
    /// A fixed duration.
    Duration { minutes: u32 },
    /// Whole business days (Monday–Friday in the recipient's zone), same local time.
    BusinessDays { days: u32 },
    /// Until the next given local time in the recipient's zone.
    TimeOfDay { hour: u32, minute: u32 },
    /// Until a date-time property of the trigger event, plus `offset_minutes` (negative: before).
    /// Skipped when that moment has already passed (or the property is missing).
    UntilEventTime { property: String, offset_minutes: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Awaited {
    /// The recipient opened (a human open) the email of a previous send step.
    Opened { step: StepId },
    /// The recipient clicked a link in the email of a previous send step.
    Clicked { step: StepId },
    /// A patient event of a type (correlated: with the trigger's correlation value).
    Event {
        #[serde(flatten)]
        event: EventMatch,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BranchTest {
    /// The contact matches a segment-style condition tree.
    Contact { root: Node },
    /// A property of the trigger event passes a test.
    EventProperty { test: PropertyTest },
    /// The recipient opened / clicked the email of a previous send step.
    Engaged { clicked: bool, step: StepId },
}

// ---------------------------------------------------------------------------------------------
// Enrolment state
// ---------------------------------------------------------------------------------------------

/// An enrolment's state. `Active` is the only one the engine moves; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentState {
    Active,
    /// Reached the end of a path.
    Completed,
    /// The goal event happened.
    Converted,
    /// Ended early: an exit step, a cancelling event, an unsubscribe, a suppression, an operator.
    Exited,
}

impl EnrolmentState {
    pub const ALL: [EnrolmentState; 4] =
        [EnrolmentState::Active, EnrolmentState::Completed, EnrolmentState::Converted, EnrolmentState::Exited];
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentState::Active => "active",
            EnrolmentState::Completed => "completed",
            EnrolmentState::Converted => "converted",
            EnrolmentState::Exited => "exited",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            EnrolmentState::Active => "In progress",
            EnrolmentState::Completed => "Completed",
            EnrolmentState::Converted => "Converted",
            EnrolmentState::Exited => "Exited",
        }
    }
    /// The state machine: only an active enrolment changes, and only to a final state.
    pub fn end(self, to: EndReason) -> Result<EnrolmentState, DomainError> {
        if self != EnrolmentState::Active {
            return Err(DomainError::invalid("enrolment", "has already ended"));
        }
        Ok(to.state())
    }
}

/// Why an enrolment ended (a stable code kept on the row and in its trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Completed,
    Goal,
    ExitStep,
    CancelEvent,
    Unsubscribed,
    Suppressed,
    Removed,
    /// A step could not run (its template or list is gone).
    Broken,
}

impl EndReason {
    pub const ALL: [EndReason; 8] = [
        EndReason::Completed,
        EndReason::Goal,
        EndReason::ExitStep,
        EndReason::CancelEvent,
        EndReason::Unsubscribed,
        EndReason::Suppressed,
        EndReason::Removed,
        EndReason::Broken,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Goal => "goal",
            EndReason::ExitStep => "exit_step",
            EndReason::CancelEvent => "cancel_event",
            EndReason::Unsubscribed => "unsubscribed",
            EndReason::Suppressed => "suppressed",
            EndReason::Removed => "removed",
            EndReason::Broken => "broken",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn state(self) -> EnrolmentState {
        match self {
            EndReason::Completed => EnrolmentState::Completed,
            EndReason::Goal => EnrolmentState::Converted,
            _ => EnrolmentState::Exited,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Completed => "reached the end",
            EndReason::Goal => "reached the goal",
            EndReason::ExitStep => "an exit step",
            EndReason::CancelEvent => "a cancelling event",
            EndReason::Unsubscribed => "unsubscribed or withdrew consent",
            EndReason::Suppressed => "the address is suppressed",
            EndReason::Removed => "removed by an operator",
            EndReason::Broken => "a step could not run",
        }
    }
}

/// The sequence's own lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceStatus {
    /// Never published: nobody enters.
    Draft,
    /// Admits new contacts and moves enrolments.
    Active,
    /// Holds every enrolment where it is; admits nobody.
    Paused,
    /// Lets current enrolments finish; admits nobody.
    Archived,
}

impl SequenceStatus {
    pub const ALL: [SequenceStatus; 4] =
        [SequenceStatus::Draft, SequenceStatus::Active, SequenceStatus::Paused, SequenceStatus::Archived];
    pub fn as_str(self) -> &'static str {
        match self {
            SequenceStatus::Draft => "draft",
            SequenceStatus::Active => "active",
            SequenceStatus::Paused => "paused",
            SequenceStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            SequenceStatus::Draft => "Draft",
            SequenceStatus::Active => "Live",
            SequenceStatus::Paused => "Paused",
            SequenceStatus::Archived => "Archived",
        }
    }
    pub fn admits(self) -> bool {
        self == SequenceStatus::Active
    }
    pub fn moves(self) -> bool {
        matches!(self, SequenceStatus::Active | SequenceStatus::Archived)
    }
    /// Allowed lifecycle changes (publishing a new version keeps the status).
    pub fn transition(self, to: SequenceStatus) -> Result<SequenceStatus, DomainError> {
        use SequenceStatus::*;
        match (self, to) {
            (Draft, Active) | (Active, Paused) | (Paused, Active) | (Active | Paused, Archived) => Ok(to),
            _ => Err(DomainError::invalid(
                "status",
                format!("a {} sequence cannot become {}", self.label().to_lowercase(), to.label().to_lowercase()),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn valid_step_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The event-type rule of the API (`appointment.booked`).
pub fn valid_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// The property-name rule of the API.
pub fn valid_property(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn step_field(id: &str) -> String {
    format!("step {id}")
}

impl SequenceDefinition {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The copy shown to people who may not read contacts and kept in plaintext: literal values
    /// of property conditions removed (they may be PHI).
    pub fn masked(&self) -> SequenceDefinition {
        let mut d = self.clone();
        let mask = |tests: &mut Vec<PropertyTest>| {
            for t in tests {
                t.test = t.test.masked();
            }
        };
        if let Trigger::Event { properties, .. } = &mut d.trigger {
            mask(properties);
        }
        for s in &mut d.steps {
            if let StepKind::Branch { test, .. } = &mut s.kind {
                match test {
                    BranchTest::EventProperty { test } => test.test = test.test.masked(),
                    BranchTest::Contact { root } => {
                        // An empty catalogue treats every field as PHI: every literal goes.
                        let def = crate::segments::SegmentDefinition {
                            version: crate::segments::FORMAT_VERSION,
                            root: root.clone(),
                        };
                        *root = crate::segments::mask_phi(&def, &[]).root;
                    }
                    BranchTest::Engaged { .. } => {}
                }
            }
        }
        d
    }

    /// The templates the send steps use.
    pub fn templates(&self) -> BTreeSet<Uuid> {
        self.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::SendEmail { template, .. } => *template,
                _ => None,
            })
            .collect()
    }

    /// Event types that matter to enrolments already inside (goal, exits, waits-for).
    pub fn watched_event_types(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.exit_on.iter().map(|m| m.event_type.clone()).collect();
        if let Some(g) = &self.goal {
            out.insert(g.event_type.clone());
        }
        for s in &self.steps {
            if let StepKind::WaitFor { event: Awaited::Event { event }, .. } = &s.kind {
                out.insert(event.event_type.clone());
            }
        }
        out
    }
}

/// Check a definition's shape: formats, bounds, references, reachability and acyclicity. Checks
/// against the organisation's data (templates exist and are allowed, lists exist) are the
/// service's. Messages name the step by its id.
pub fn validate(def: &SequenceDefinition) -> Result<(), DomainError> {
    if def.version != FORMAT_VERSION {
        return Err(DomainError::invalid("version", format!("sequence format {} is not supported", def.version)));
    }
    if def.steps.is_empty() {
        return Err(DomainError::invalid("steps", "add at least one step"));
    }
    if def.steps.len() > MAX_STEPS {
        return Err(DomainError::invalid("steps", format!("at most {MAX_STEPS} steps")));
    }
    let mut ids = HashMap::new();
    for (i, s) in def.steps.iter().enumerate() {
        if !valid_step_id(&s.id) {
            return Err(DomainError::invalid(
                "steps",
                format!("step {} has an invalid id (use a–z, 0–9, _ and -, at most 32)", i + 1),
            ));
        }
        if ids.insert(s.id.as_str(), i).is_some() {
            return Err(DomainError::invalid(step_field(&s.id), "two steps share this id"));
        }
        if s.name.chars().count() > MAX_NAME {
            return Err(DomainError::invalid(step_field(&s.id), format!("names are at most {MAX_NAME} characters")));
        }
    }
    if !ids.contains_key(def.start.as_str()) {
        return Err(DomainError::invalid("start", "names no step of this sequence"));
    }
    // Trigger.
    match &def.trigger {
        Trigger::Event { event_type, properties } => {
            if !valid_event_type(event_type) {
                return Err(DomainError::invalid(
                    "trigger",
                    "the event type uses lower-case letters, digits, _ and . (at most 64)",
                ));
            }
            if properties.len() > MAX_PROPERTY_TESTS {
                return Err(DomainError::invalid("trigger", format!("at most {MAX_PROPERTY_TESTS} conditions")));
            }
            for (i, p) in properties.iter().enumerate() {
                check_property_test(p, &format!("trigger condition {}", i + 1))?;
            }
        }
        Trigger::Manual => {}
        Trigger::ListAdded { list }
        | Trigger::SegmentEntered { segment: list }
        | Trigger::CampaignEngaged { campaign: list, .. } => {
            if list.is_nil() {
                return Err(DomainError::invalid("trigger", "choose what starts the sequence"));
            }
        }
    }
    if let Some(k) = &def.correlation_key
        && !valid_property(k)
    {
        return Err(DomainError::invalid("correlation_key", "is a property name (letters, digits, _)"));
    }
    let needs_key = |m: &EventMatch| m.correlated;
    let mut matches: Vec<(&EventMatch, String)> = Vec::new();
    if let Some(g) = &def.goal {
        matches.push((g, "goal".into()));
    }
    for (i, m) in def.exit_on.iter().enumerate() {
        matches.push((m, format!("exit event {}", i + 1)));
    }
    for s in &def.steps {
        if let StepKind::WaitFor { event: Awaited::Event { event }, .. } = &s.kind {
            matches.push((event, step_field(&s.id)));
        }
    }
    for (m, field) in &matches {
        if !valid_event_type(&m.event_type) {
            return Err(DomainError::invalid(field.clone(), "the event type uses lower-case letters, digits, _ and ."));
        }
        if needs_key(m) && def.correlation_key.is_none() {
            return Err(DomainError::invalid(
                field.clone(),
                "matches on the correlation key, but the sequence has none (set one, e.g. appointment_id)",
            ));
        }
        if needs_key(m) && !matches!(def.trigger, Trigger::Event { .. }) {
            return Err(DomainError::invalid(field.clone(), "only an event trigger has a correlation value"));
        }
    }
    if let Some(q) = &def.quiet_hours
        && (q.from_hour > 23 || q.to_hour > 23 || q.from_hour == q.to_hour)
    {
        return Err(DomainError::invalid("quiet_hours", "give two different hours between 0 and 23"));
    }
    if let Some(c) = &def.frequency_cap
        && (c.max == 0 || c.max > 100 || c.days == 0 || c.days > 90)
    {
        return Err(DomainError::invalid("frequency_cap", "allow 1–100 messages over 1–90 days"));
    }
    // Steps.
    let send_steps: BTreeSet<&str> =
        def.steps.iter().filter(|s| matches!(s.kind, StepKind::SendEmail { .. })).map(|s| s.id.as_str()).collect();
    for s in &def.steps {
        let f = step_field(&s.id);
        for n in s.kind.successors() {
            if !ids.contains_key(n.as_str()) {
                return Err(DomainError::invalid(f, "goes to a step that does not exist"));
            }
            if n == &s.id {
                return Err(DomainError::invalid(f, "goes to itself"));
            }
        }
        match &s.kind {
            StepKind::SendEmail { template, .. } => {
                if template.is_none() {
                    return Err(DomainError::invalid(f, "choose a template to send"));
                }
            }
            StepKind::Wait { wait, .. } => match wait {
                WaitSpec::Duration { minutes } => {
                    if *minutes == 0 || *minutes > MAX_WAIT_MINUTES {
                        return Err(DomainError::invalid(f, "wait between 1 minute and 366 days"));
                    }
                }
                WaitSpec::BusinessDays { days } => {
                    if *days == 0 || *days > MAX_BUSINESS_DAYS {
                        return Err(DomainError::invalid(f, format!("wait 1–{MAX_BUSINESS_DAYS} business days")));
                    }
                }
                WaitSpec::TimeOfDay { hour, minute } => {
                    if *hour > 23 || *minute > 59 {
                        return Err(DomainError::invalid(f, "give a time of day between 00:00 and 23:59"));
                    }
                }
                WaitSpec::UntilEventTime { property, offset_minutes } => {
                    if !matches!(def.trigger, Trigger::Event { .. }) {
                        return Err(DomainError::invalid(f, "only an event trigger has a time to wait for"));
                    }
                    if !valid_property(property) {
                        return Err(DomainError::invalid(f, "name the event property that holds the time"));
                    }
                    if offset_minutes.unsigned_abs() > u64::from(MAX_WAIT_MINUTES) {
                        return Err(DomainError::invalid(f, "the offset is at most 366 days"));
                    }
                }
            },
            StepKind::WaitFor { event, timeout_minutes, .. } => {
                if *timeout_minutes == 0 || *timeout_minutes > MAX_WAIT_MINUTES {
                    return Err(DomainError::invalid(f, "a wait-for needs a timeout between 1 minute and 366 days"));
                }
                if let Awaited::Opened { step } | Awaited::Clicked { step } = event
                    && !send_steps.contains(step.as_str())
                {
                    return Err(DomainError::invalid(f, "waits on an email step that does not exist"));
                }
            }
            StepKind::Branch { test, .. } => match test {
                BranchTest::EventProperty { test } => {
                    if !matches!(def.trigger, Trigger::Event { .. }) {
                        return Err(DomainError::invalid(f, "only an event trigger has properties to test"));
                    }
                    check_property_test(test, &f)?;
                }
                BranchTest::Engaged { step, .. } => {
                    if !send_steps.contains(step.as_str()) {
                        return Err(DomainError::invalid(f, "tests an email step that does not exist"));
                    }
                }
                BranchTest::Contact { root } => {
                    if crate::segments::has_hidden_values(&crate::segments::SegmentDefinition {
                        version: crate::segments::FORMAT_VERSION,
                        root: root.clone(),
                    }) {
                        return Err(DomainError::invalid(f, "a condition's value is hidden; enter it again"));
                    }
                }
            },
            StepKind::RandomSplit { paths } => {
                if paths.len() < 2 || paths.len() > 10 {
                    return Err(DomainError::invalid(f, "split into 2–10 paths"));
                }
                if paths.iter().map(|p| p.percent).sum::<u32>() != 100 || paths.iter().any(|p| p.percent == 0) {
                    return Err(DomainError::invalid(f, "the percentages must each be above 0 and add up to 100"));
                }
            }
            StepKind::NotifyStaff { user, note, .. } => {
                if user.is_nil() {
                    return Err(DomainError::invalid(f, "choose who is notified"));
                }
                if note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(DomainError::invalid(
                        f,
                        format!("the note is plain text of at most {MAX_NOTE} characters"),
                    ));
                }
                if note.contains("{{") {
                    return Err(DomainError::invalid(f, "the note is the same for every contact: no merge fields"));
                }
            }
            StepKind::UpdateList { .. } | StepKind::Exit => {}
        }
    }
    // Reachability and cycles (depth-first from the start).
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on the path, 2 = done
    fn visit<'a>(
        def: &'a SequenceDefinition,
        id: &'a str,
        state: &mut HashMap<&'a str, u8>,
    ) -> Result<(), DomainError> {
        match state.get(id) {
            Some(1) => {
                return Err(DomainError::invalid(step_field(id), "is part of a loop; sequences go forward only"));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        state.insert(id, 1);
        if let Some(s) = def.step(id) {
            for n in s.kind.successors() {
                visit(def, n, state)?;
            }
        }
        state.insert(id, 2);
        Ok(())
    }
    visit(def, &def.start, &mut state)?;
    if let Some(s) = def.steps.iter().find(|s| !state.contains_key(s.id.as_str())) {
        return Err(DomainError::invalid(step_field(&s.id), "cannot be reached from the first step"));
    }
    Ok(())
}

fn check_property_test(p: &PropertyTest, field: &str) -> Result<(), DomainError> {
    if !valid_property(&p.key) {
        return Err(DomainError::invalid(field, "name an event property (letters, digits, _)"));
    }
    if matches!(p.test, FieldTest::Hidden { .. }) {
        return Err(DomainError::invalid(field, "its value is hidden (sealed PHI); enter it again"));
    }
    Ok(())
}

/// Do an event's properties pass a trigger's tests (all of them)?
pub fn properties_match(tests: &[PropertyTest], props: &BTreeMap<String, FieldValue>, today: NaiveDate) -> bool {
    tests.iter().all(|t| t.test.matches(props.get(&t.key), today))
}

/// How a definition reads a property of its trigger event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyUse {
    /// An `event.<name>` field of a send step's template (added by the service, which compiles
    /// the templates).
    Template,
    /// A trigger condition.
    Condition,
    /// The correlation key.
    CorrelationKey,
    /// A wait until a date-time property.
    EventTime,
    /// A branch on a property.
    Branch,
}

/// One place a definition reads a trigger-event property: the field a refusal names, the
/// property's name (a code, never a value) and how it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRef {
    pub field: String,
    pub key: String,
    pub how: PropertyUse,
}

/// How many carried names a refusal lists before "and N more".
const CARRIED_LISTED: usize = 30;

impl SequenceDefinition {
    /// The trigger-event properties the definition itself names: trigger conditions, the
    /// correlation key, waits until an event time, property branches (its templates'
    /// `event.` fields are the service's to add). Empty unless the trigger is an event.
    pub fn trigger_properties_named(&self) -> Vec<PropertyRef> {
        let Trigger::Event { properties, .. } = &self.trigger else { return Vec::new() };
        let mut out: Vec<PropertyRef> = properties
            .iter()
            .enumerate()
            .map(|(i, p)| PropertyRef {
                field: format!("trigger condition {}", i + 1),
                key: p.key.clone(),
                how: PropertyUse::Condition,
            })
            .collect();
        if let Some(k) = &self.correlation_key {
            out.push(PropertyRef { field: "correlation_key".into(), key: k.clone(), how: PropertyUse::CorrelationKey });
        }
        for s in &self.steps {
            let (key, how) = match &s.kind {
                StepKind::Wait { wait: WaitSpec::UntilEventTime { property, .. }, .. } => {
                    (property, PropertyUse::EventTime)
                }
                StepKind::Branch { test: BranchTest::EventProperty { test }, .. } => (&test.key, PropertyUse::Branch),
                _ => continue,
            };
            out.push(PropertyRef { field: step_field(&s.id), key: key.clone(), how });
        }
        out
    }
}

/// Check the trigger-event properties a definition reads against the names events of its
/// trigger's type have carried (`carried`: names only). With no name known — no event of that
/// type has arrived yet — nothing can be checked and everything passes (an integration is often
/// connected after the sequence is built; the builder says the fields are unchecked). The
/// refusal names the field and the property, and lists the names that were carried.
pub fn check_carried(event_type: &str, carried: &BTreeSet<String>, uses: &[PropertyRef]) -> Result<(), DomainError> {
    if carried.is_empty() {
        return Ok(());
    }
    let Some(u) = uses.iter().find(|u| !carried.contains(&u.key)) else { return Ok(()) };
    let mut list = carried.iter().take(CARRIED_LISTED).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = carried.len().saturating_sub(CARRIED_LISTED);
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    let what = match u.how {
        PropertyUse::Template => format!("its template uses event.{}", u.key),
        PropertyUse::Condition => format!("tests the property {}", u.key),
        PropertyUse::CorrelationKey => format!("is the property {}", u.key),
        PropertyUse::EventTime => format!("waits for the time in the property {}", u.key),
        PropertyUse::Branch => format!("branches on the property {}", u.key),
    };
    Err(DomainError::invalid(
        u.field.clone(),
        format!("{what}, which {event_type} events have not carried (they carried: {list})"),
    ))
}

/// What changed between two versions, step by step (for the builder's publish dialog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDiff {
    pub added: Vec<StepId>,
    pub removed: Vec<StepId>,
    pub changed: Vec<StepId>,
    pub settings_changed: bool,
}

pub fn diff(old: &SequenceDefinition, new: &SequenceDefinition) -> VersionDiff {
    let added = new.steps.iter().filter(|s| old.step(&s.id).is_none()).map(|s| s.id.clone()).collect();
    let removed = old.steps.iter().filter(|s| new.step(&s.id).is_none()).map(|s| s.id.clone()).collect();
    let changed = new
        .steps
        .iter()
        .filter(|s| old.step(&s.id).is_some_and(|o| strip_pins(o) != strip_pins(s)))
        .map(|s| s.id.clone())
        .collect();
    fn settings(d: &SequenceDefinition) -> impl PartialEq + '_ {
        (&d.trigger, d.entry, &d.correlation_key, &d.goal, &d.exit_on, d.quiet_hours, d.frequency_cap, &d.start)
    }
    VersionDiff { added, removed, changed, settings_changed: settings(old) != settings(new) }
}

fn strip_pins(s: &Step) -> Step {
    let mut s = s.clone();
    if let StepKind::SendEmail { template_version, .. } = &mut s.kind {
        *template_version = None;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The step machine
// ---------------------------------------------------------------------------------------------

/// Local time in the recipient's zone (the service implements it with the tz database).
pub trait LocalZone: Sync {
    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime;
    /// The instant of a local time (the earlier one when ambiguous; just after a gap).
    fn local_to_utc(&self, t: NaiveDateTime) -> DateTime<Utc>;
}

/// UTC as a zone (contacts without a zone, and tests).
pub struct Utc0;
impl LocalZone for Utc0 {
    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc()
    }
    fn local_to_utc(&self, t: NaiveDateTime) -> DateTime<Utc> {
        t.and_utc()
    }
}

/// What the engine knows when it runs a step for an enrolment.
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    /// When the enrolment arrived at this step (waits count from here).
    pub step_started_at: DateTime<Utc>,
    pub zone: &'a dyn LocalZone,
    /// The trigger event's properties (empty for other triggers).
    pub event: &'a BTreeMap<String, FieldValue>,
    /// For a wait-for step: when the awaited thing happened (at or after the enrolment began).
    pub awaited_at: Option<DateTime<Utc>>,
    /// For a branch on the contact or on engagement: the service's evaluation.
    pub branch_holds: Option<bool>,
    /// A draw in 0..100 for random splits (stable per enrolment and visit: [`draw`]).
    pub draw: u32,
}

/// The outcome of running one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The step is done; continue at `next` (`None`: the enrolment completed). `code` says why
    /// (kept in the trail: `waited`, `wait_skipped`, `event_arrived`, `timed_out`, `branch_then` …).
    Next {
        next: Option<StepId>,
        code: &'static str,
    },
    /// Not yet: wake at `until`.
    Sleep {
        until: DateTime<Utc>,
        code: &'static str,
    },
    /// Send this email (the engine checks consent, suppression, quiet hours and the frequency cap
    /// with [`send_gate`]), then continue at `next`.
    Send {
        template: Uuid,
        template_version: Option<Uuid>,
        purpose: ConsentPurpose,
        next: Option<StepId>,
    },
    /// Add to / remove from a list, then continue.
    UpdateList {
        list: Uuid,
        add: bool,
        next: Option<StepId>,
    },
    /// Notify a member of staff, then continue.
    Notify {
        user: Uuid,
        next: Option<StepId>,
    },
    End(EndReason),
}

/// A split's draw, stable for an enrolment and a step visit (so a retried step takes the same path).
pub fn draw(enrolment: Uuid, visit: i32) -> u32 {
    // FNV-1a over the id's bytes and the visit: stable across processes and versions.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in enrolment.as_bytes().iter().chain(visit.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % 100) as u32
}

/// Parse a date-time property (RFC 3339, or a date meaning its midnight UTC).
pub fn property_time(v: Option<&FieldValue>) -> Option<DateTime<Utc>> {
    match v? {
        FieldValue::Text(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| crate::contacts::parse_date(s).map(|d| d.and_time(NaiveTime::MIN).and_utc())),
        FieldValue::Date(d) => Some(d.and_time(NaiveTime::MIN).and_utc()),
        _ => None,
    }
}

fn add_business_days(start: NaiveDateTime, days: u32) -> NaiveDateTime {
    let mut d = start;
    let mut left = days;
    while left > 0 {
        d += Duration::days(1);
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    d
}

/// When a wait step ends (`None`: skipped, its moment is missing or already past at arrival).
pub fn wait_until(wait: &WaitSpec, facts: &Facts<'_>) -> Option<DateTime<Utc>> {
    let started = facts.step_started_at;
    match wait {
        WaitSpec::Duration { minutes } => Some(started + Duration::minutes(i64::from(*minutes))),
        WaitSpec::BusinessDays { days } => {
            Some(facts.zone.local_to_utc(add_business_days(facts.zone.to_local(started), *days)))
        }
        WaitSpec::TimeOfDay { hour, minute } => {
            let local = facts.zone.to_local(started);
            let at = NaiveTime::from_hms_opt(*hour, *minute, 0)?;
            let today = local.date().and_time(at);
            let target = if today > local { today } else { today + Duration::days(1) };
            Some(facts.zone.local_to_utc(target))
        }
        WaitSpec::UntilEventTime { property, offset_minutes } => {
            let t = property_time(facts.event.get(property))? + Duration::minutes(*offset_minutes);
            (t > started).then_some(t)
        }
    }
}

/// Run one step for an enrolment.
pub fn decide(step: &Step, facts: &Facts<'_>) -> Decision {
    match &step.kind {
        StepKind::SendEmail { template, template_version, purpose, next, .. } => match template {
            Some(t) => Decision::Send {
                template: *t,
                template_version: *template_version,
                purpose: *purpose,
                next: next.clone(),
            },
            None => Decision::End(EndReason::Broken),
        },
        StepKind::Wait { wait, next } => match wait_until(wait, facts) {
            None => Decision::Next { next: next.clone(), code: "wait_skipped" },
            Some(t) if t <= facts.now => Decision::Next { next: next.clone(), code: "waited" },
            Some(t) => Decision::Sleep { until: t, code: "waiting" },
        },
        StepKind::WaitFor { timeout_minutes, on_event, on_timeout, .. } => {
            if facts.awaited_at.is_some() {
                return Decision::Next { next: on_event.clone(), code: "event_arrived" };
            }
            let timeout = facts.step_started_at + Duration::minutes(i64::from(*timeout_minutes));
            if timeout <= facts.now {
                Decision::Next { next: on_timeout.clone(), code: "timed_out" }
            } else {
                Decision::Sleep { until: timeout, code: "waiting_for" }
            }
        }
        StepKind::Branch { test, then, otherwise } => {
            let holds = match test {
                BranchTest::EventProperty { test } => {
                    test.test.matches(facts.event.get(&test.key), facts.now.date_naive())
                }
                BranchTest::Contact { .. } | BranchTest::Engaged { .. } => facts.branch_holds.unwrap_or(false),
            };
            if holds {
                Decision::Next { next: then.clone(), code: "branch_then" }
            } else {
                Decision::Next { next: otherwise.clone(), code: "branch_otherwise" }
            }
        }
        StepKind::RandomSplit { paths } => {
            let mut acc = 0;
            for p in paths {
                acc += p.percent;
                if facts.draw < acc {
                    return Decision::Next { next: p.next.clone(), code: "split" };
                }
            }
            Decision::Next { next: paths.last().and_then(|p| p.next.clone()), code: "split" }
        }
        StepKind::UpdateList { list, add, next } => Decision::UpdateList { list: *list, add: *add, next: next.clone() },
        StepKind::NotifyStaff { user, next, .. } => Decision::Notify { user: *user, next: next.clone() },
        StepKind::Exit => Decision::End(EndReason::ExitStep),
    }
}

/// Why a send step does not send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send now.
    Open,
    /// The contact may not receive this purpose (no grant / withdrawn): the enrolment ends.
    NoConsent,
    /// The address is suppressed: the enrolment ends.
    Suppressed,
    /// Quiet hours: try again at this time.
    Quiet(DateTime<Utc>),
    /// The frequency cap is reached: wait until this time.
    CappedWait(DateTime<Utc>),
    /// The frequency cap is reached: skip this email and go on.
    CappedSkip,
}

impl Gate {
    pub fn code(self) -> &'static str {
        match self {
            Gate::Open => "sent",
            Gate::NoConsent => "skipped_no_consent",
            Gate::Suppressed => "skipped_suppressed",
            Gate::Quiet(_) => "quiet_hours",
            Gate::CappedWait(_) => "frequency_capped_wait",
            Gate::CappedSkip => "frequency_capped_skip",
        }
    }
}

/// The checks before a send, in order: suppression, consent, quiet hours, the frequency cap.
/// `consent`: the contact's current state for the purpose (`None`: never recorded);
/// `recent`: times of the contact's marketing sends within the cap's window (any order).
pub fn send_gate(
    def: &SequenceDefinition,
    purpose: ConsentPurpose,
    suppressed: bool,
    consent: Option<bool>,
    recent: &[DateTime<Utc>],
    now: DateTime<Utc>,
    zone: &dyn LocalZone,
) -> Gate {
    if suppressed {
        return Gate::Suppressed;
    }
    let allowed = match purpose {
        ConsentPurpose::Transactional => consent != Some(false),
        _ => consent == Some(true),
    };
    if !allowed {
        return Gate::NoConsent;
    }
    if purpose != ConsentPurpose::Transactional {
        if let Some(q) = &def.quiet_hours
            && let Some(end) = q.ends_after(zone.to_local(now))
        {
            return Gate::Quiet(zone.local_to_utc(end));
        }
        if let Some(cap) = &def.frequency_cap {
            let from = now - Duration::days(i64::from(cap.days));
            let mut inside: Vec<DateTime<Utc>> = recent.iter().copied().filter(|t| *t > from).collect();
            if inside.len() >= cap.max as usize {
                if !cap.wait {
                    return Gate::CappedSkip;
                }
                inside.sort();
                // The send that makes room leaves the window: the (len - max + 1)-th oldest.
                let frees = inside[inside.len() - cap.max as usize] + Duration::days(i64::from(cap.days));
                return Gate::CappedWait(frees + Duration::seconds(1));
            }
        }
    }
    Gate::Open
}

// ---------------------------------------------------------------------------------------------
// Views (what the pages show)
// ---------------------------------------------------------------------------------------------

use crate::disclosure::Figure;

/// A sequence in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceSummary {
    pub id: Uuid,
    pub name: String,
    pub status: SequenceStatus,
    pub version: Option<i32>,
    pub trigger: String,
    pub active: Figure,
    pub entered: Figure,
    pub converted: Figure,
    pub updated_at: DateTime<Utc>,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSummary {
    pub id: Uuid,
    pub number: i32,
    pub published_at: DateTime<Utc>,
    pub active: Figure,
}

/// Live figures of one step of the current version (people counts; disclosure-controlled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    pub step_id: StepId,
    /// Enrolments at this step now.
    pub waiting: Figure,
    /// Enrolments that ran this step.
    pub entered: Figure,
    pub sent: Figure,
    pub opened: Figure,
    pub clicked: Figure,
}

/// A sequence for the builder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceView {
    pub id: Uuid,
    pub name: String,
    pub status: SequenceStatus,
    pub from_name: String,
    pub from_email: String,
    /// The working copy (literals masked when `masked`).
    pub draft: SequenceDefinition,
    /// Why the draft cannot be published yet (field, message), if it cannot.
    pub draft_problem: Option<(String, String)>,
    pub current: Option<VersionSummary>,
    pub versions: Vec<VersionSummary>,
    /// The draft against the current version.
    pub changes: Option<VersionDiff>,
    pub steps: Vec<StepStats>,
    pub totals: SequenceTotals,
    /// The reader may not read contacts: property literals are hidden and editing is refused.
    pub masked: bool,
    pub updated_at: DateTime<Utc>,
    /// Who a notify-staff step may email (active users of the organisation: id and name), for
    /// people who may edit the sequence; empty for others.
    #[serde(default)]
    pub staff: Vec<(Uuid, String)>,
    /// The property names events of the draft trigger's type have carried (sorted; names only,
    /// never values). Empty when the trigger is not an event or no such event has arrived.
    #[serde(default)]
    pub trigger_properties: Vec<String>,
    /// The draft trigger's event type, when the draft reads that event's properties (email
    /// fields, conditions, correlation key) but no such event carrying properties has arrived
    /// yet: publishing cannot check the names against anything.
    #[serde(default)]
    pub event_fields_unchecked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceTotals {
    pub entered: Figure,
    pub active: Figure,
    pub completed: Figure,
    pub converted: Figure,
    pub exited: Figure,
}

/// One enrolment in a list (contact ids only; for people who may read contacts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentView {
    pub id: Uuid,
    pub sequence_id: Uuid,
    pub sequence_name: String,
    pub version: i32,
    pub contact_id: Uuid,
    pub state: EnrolmentState,
    pub end_reason: Option<EndReason>,
    pub step_id: Option<StepId>,
    pub wake_at: Option<DateTime<Utc>>,
    pub entered_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One line of an enrolment's decision trail (ids and codes only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailEntry {
    pub visit: i32,
    pub step_id: String,
    pub kind: String,
    pub outcome: String,
    /// Ids and times (`delivery`, `event`, `until`, `held` …) as `key=value` pairs.
    pub detail: Vec<(String, String)>,
    pub at: DateTime<Utc>,
}

impl TrailEntry {
    /// The outcome in plain words.
    pub fn describe(&self) -> &'static str {
        match self.outcome.as_str() {
            "entered" => "entered the sequence",
            "sent" => "email queued for sending",
            "skipped_no_consent" => "email not sent: no consent for its purpose (enrolment ended)",
            "skipped_suppressed" => "email not sent: the address is suppressed (enrolment ended)",
            "frequency_capped_skip" => "email skipped: the frequency cap was reached",
            "waited" => "waited",
            "wait_skipped" => "wait skipped: its moment had already passed",
            "event_arrived" => "the awaited event arrived",
            "timed_out" => "timed out waiting",
            "branch_then" => "condition held: took the first branch",
            "branch_otherwise" => "condition did not hold: took the other branch",
            "split" => "random split",
            "list_added" => "added to a list",
            "list_removed" => "removed from a list",
            "staff_notified" => "a member of staff was notified",
            "goal" => "reached the goal",
            "cancel_event" => "a cancelling event ended it",
            "exit_step" => "exit step",
            "removed" => "removed by an operator",
            "completed" => "reached the end",
            "broken" => "a step could not run (template or list gone)",
            _ => "step ran",
        }
    }
}

/// What a test run shows: the path one contact would take, with simulated times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRunStep {
    pub step_id: StepId,
    pub kind: String,
    pub outcome: String,
    pub at: DateTime<Utc>,
}

/// A made-up contact for a test run: the trigger event's properties and how they behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    pub start: DateTime<Utc>,
    pub event: BTreeMap<String, FieldValue>,
    /// Awaited things (opens, clicks, events) happen an hour after the wait begins.
    pub responds: bool,
    /// How branches on the contact or on engagement come out.
    pub branches_hold: bool,
    /// The random draw for splits (0–99).
    pub draw: u32,
}

/// Trace a definition for a made-up contact with a simulated clock, without sending anything:
/// the steps it would run, what each decided, and when. Consent and the frequency cap are taken
/// as open; quiet hours apply.
pub fn simulate(def: &SequenceDefinition, sim: &Simulation, zone: &dyn LocalZone) -> Vec<TestRunStep> {
    let mut out = Vec::new();
    let mut now = sim.start;
    let mut started = now;
    let mut step_id = Some(def.start.clone());
    for _ in 0..MAX_STEPS {
        let Some(id) = step_id.clone() else {
            out.push(TestRunStep { step_id: String::new(), kind: "end".into(), outcome: "completed".into(), at: now });
            break;
        };
        let Some(step) = def.step(&id) else {
            out.push(TestRunStep { step_id: id, kind: "end".into(), outcome: "broken".into(), at: now });
            break;
        };
        let awaited_at =
            (sim.responds && matches!(step.kind, StepKind::WaitFor { .. })).then(|| started + Duration::hours(1));
        if let Some(t) = awaited_at
            && t > now
        {
            now = t;
        }
        let facts = Facts {
            now,
            step_started_at: started,
            zone,
            event: &sim.event,
            awaited_at,
            branch_holds: Some(sim.branches_hold),
            draw: sim.draw % 100,
        };
        let kind = step.kind.code().to_string();
        match decide(step, &facts) {
            Decision::Sleep { until, .. } => {
                now = until;
                continue;
            }
            Decision::Next { next, code } => {
                out.push(TestRunStep { step_id: id, kind, outcome: code.into(), at: now });
                step_id = next;
            }
            Decision::Send { purpose, next, .. } => {
                if let Gate::Quiet(until) = send_gate(def, purpose, false, Some(true), &[], now, zone) {
                    now = until;
                    continue;
                }
                out.push(TestRunStep { step_id: id, kind, outcome: "sent".into(), at: now });
                step_id = next;
            }
            Decision::UpdateList { add, next, .. } => {
                let code = if add { "list_added" } else { "list_removed" };
                out.push(TestRunStep { step_id: id, kind, outcome: code.into(), at: now });
                step_id = next;
            }
            Decision::Notify { next, .. } => {
                out.push(TestRunStep { step_id: id, kind, outcome: "staff_notified".into(), at: now });
                step_id = next;
            }
            Decision::End(reason) => {
                out.push(TestRunStep { step_id: id, kind, outcome: reason.as_str().into(), at: now });
                break;
            }
        }
        started = now;
    }
    out
}

#[cfg(test)]
mod tests;
