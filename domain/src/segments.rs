//! Segments: a typed condition tree over contacts, its versioned JSON form, its validation against
//! an organisation's fields, and the pure evaluator.
//!
//! Invariants: a tree is data, never SQL — the service may compile the non-PHI parts of a
//! validated tree into a parameterised prefilter, and a property test proves that path agrees with
//! [`Condition::matches`] here. Messages name conditions by number ("condition 3") and fields by
//! label, never a contact's value. Dates are calendar dates; "today" is the UTC date of `now`.

use crate::DomainError;
use crate::contacts::{BuiltinField, ConsentPurpose, CustomField, FieldType, FieldValue, parse_date};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// The current JSON format version; stored trees carry it so the format can evolve.
pub const FORMAT_VERSION: u32 = 1;
/// Groups may nest this deep (the root group is level 1).
pub const MAX_DEPTH: usize = 6;
pub const MAX_CONDITIONS: usize = 50;
pub const MAX_DAYS: u32 = 3650;
pub const MAX_TEXT: usize = 200;
pub const MAX_CHOICES: usize = 100;

/// A saved segment definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDefinition {
    pub version: u32,
    pub root: Node,
}

impl Default for SegmentDefinition {
    fn default() -> Self {
        SegmentDefinition { version: FORMAT_VERSION, root: Node::And { children: vec![] } }
    }
}

/// A node of the tree. An empty AND matches everyone; an empty OR matches no one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum Node {
    And { children: Vec<Node> },
    Or { children: Vec<Node> },
    Not { child: Box<Node> },
    Condition { condition: Condition },
}

/// One test on a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// A contact field (built-in or custom).
    Field { field: String, test: FieldTest },
    /// Subscribed member of a list.
    InList { list: Uuid },
    /// Currently consents to a purpose.
    Consent { purpose: ConsentPurpose },
    /// Received / opened / clicked a given campaign (or any), optionally within the last N days.
    /// Opens and clicks count only human ones (not privacy proxies or link scanners).
    Engagement { activity: Activity, campaign: Option<Uuid>, within_days: Option<u32> },
    /// Has never opened any campaign (human opens).
    NeverOpened,
    /// Had a patient event of a type, optionally within N days and with conditions on its
    /// properties (which are PHI: evaluated after decryption).
    Event { event_type: String, within_days: Option<u32>, properties: Vec<PropertyTest> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Received,
    Opened,
    Clicked,
}

impl Activity {
    pub const ALL: [Activity; 3] = [Activity::Received, Activity::Opened, Activity::Clicked];
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Received => "received",
            Activity::Opened => "opened",
            Activity::Clicked => "clicked",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Activity::Received => "received",
            Activity::Opened => "opened",
            Activity::Clicked => "clicked a link in",
        }
    }
}

/// A test on one property of a patient event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyTest {
    pub key: String,
    pub test: FieldTest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub const ALL: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "≠",
            Cmp::Lt => "<",
            Cmp::Le => "≤",
            Cmp::Gt => ">",
            Cmp::Ge => "≥",
        }
    }
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// What to test a value with. Text tests ignore case. A missing value fails every test except
/// `IsEmpty`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FieldTest {
    TextEquals {
        value: String,
    },
    TextContains {
        value: String,
    },
    TextStartsWith {
        value: String,
    },
    IsEmpty,
    IsNotEmpty,
    Number {
        cmp: Cmp,
        value: f64,
    },
    DateBefore {
        date: NaiveDate,
    },
    DateAfter {
        date: NaiveDate,
    },
    /// Between N days ago and today, inclusive.
    DateWithinLastDays {
        days: u32,
    },
    /// The date's next anniversary (birthday) is within the next N days (0 = today). A 29 February
    /// date has its anniversary on 28 February in other years.
    AnniversaryWithinNextDays {
        days: u32,
    },
    BooleanIs {
        value: bool,
    },
    OneOf {
        values: Vec<String>,
    },
    /// The literal value of a PHI condition, removed: what people who may not read contacts see,
    /// and what the plain copy of a stored definition holds (the whole definition is sealed
    /// separately). `test` names the original test ("is", "contains", "<", "is before" …). It never
    /// matches and is refused by [`validate`], so a masked tree is never evaluated or saved.
    Hidden {
        test: String,
    },
}

impl FieldTest {
    pub fn label(&self) -> &'static str {
        match self {
            FieldTest::TextEquals { .. } => "is",
            FieldTest::TextContains { .. } => "contains",
            FieldTest::TextStartsWith { .. } => "starts with",
            FieldTest::IsEmpty => "is empty",
            FieldTest::IsNotEmpty => "is not empty",
            FieldTest::Number { .. } => "compares",
            FieldTest::DateBefore { .. } => "is before",
            FieldTest::DateAfter { .. } => "is after",
            FieldTest::DateWithinLastDays { .. } => "is within the last",
            FieldTest::AnniversaryWithinNextDays { .. } => "has an anniversary within the next",
            FieldTest::BooleanIs { .. } => "is",
            FieldTest::OneOf { .. } => "is one of",
            FieldTest::Hidden { .. } => "(hidden value)",
        }
    }

    /// Whether the test carries a literal value (text, choices, a number, a date or a yes/no) —
    /// what is masked on PHI conditions. Day counts of "within the last N days" are parameters of
    /// the window, not values of a person, and stay.
    pub fn has_literal(&self) -> bool {
        matches!(
            self,
            FieldTest::TextEquals { .. }
                | FieldTest::TextContains { .. }
                | FieldTest::TextStartsWith { .. }
                | FieldTest::OneOf { .. }
                | FieldTest::Number { .. }
                | FieldTest::DateBefore { .. }
                | FieldTest::DateAfter { .. }
                | FieldTest::BooleanIs { .. }
        )
    }

    /// The same test with its literal value removed (unchanged when it has none).
    pub fn masked(&self) -> FieldTest {
        if !self.has_literal() {
            return self.clone();
        }
        let test = match self {
            FieldTest::Number { cmp, .. } => cmp.symbol().to_string(),
            other => other.label().to_string(),
        };
        FieldTest::Hidden { test }
    }

    /// Whether this test makes sense for a field of `t`.
    pub fn fits(&self, t: FieldType) -> bool {
        match self {
            FieldTest::IsEmpty | FieldTest::IsNotEmpty => true,
            FieldTest::TextEquals { .. } | FieldTest::TextContains { .. } | FieldTest::TextStartsWith { .. } => {
                matches!(t, FieldType::Text | FieldType::OneOf)
            }
            FieldTest::OneOf { .. } => matches!(t, FieldType::Text | FieldType::OneOf),
            FieldTest::Number { .. } => t == FieldType::Number,
            FieldTest::DateBefore { .. }
            | FieldTest::DateAfter { .. }
            | FieldTest::DateWithinLastDays { .. }
            | FieldTest::AnniversaryWithinNextDays { .. } => t == FieldType::Date,
            FieldTest::BooleanIs { .. } => t == FieldType::Boolean,
            FieldTest::Hidden { .. } => true,
        }
    }

    /// Apply the test to a value (`None` = the contact has no value).
    pub fn matches(&self, value: Option<&FieldValue>, today: NaiveDate) -> bool {
        let text = || match value {
            Some(FieldValue::Text(s)) => Some(s.to_lowercase()),
            _ => None,
        };
        let date = || match value {
            Some(FieldValue::Date(d)) => Some(*d),
            Some(FieldValue::Text(s)) => parse_date(s),
            _ => None,
        };
        match self {
            FieldTest::IsEmpty => is_empty(value),
            FieldTest::IsNotEmpty => !is_empty(value),
            FieldTest::TextEquals { value: v } => text().is_some_and(|t| t == v.to_lowercase()),
            FieldTest::TextContains { value: v } => text().is_some_and(|t| t.contains(&v.to_lowercase())),
            FieldTest::TextStartsWith { value: v } => text().is_some_and(|t| t.starts_with(&v.to_lowercase())),
            FieldTest::OneOf { values } => text().is_some_and(|t| values.iter().any(|v| v.to_lowercase() == t)),
            FieldTest::Number { cmp, value: v } => match value {
                Some(FieldValue::Number(n)) => cmp.holds(*n, *v),
                _ => false,
            },
            FieldTest::DateBefore { date: d } => date().is_some_and(|x| x < *d),
            FieldTest::DateAfter { date: d } => date().is_some_and(|x| x > *d),
            FieldTest::DateWithinLastDays { days } => date().is_some_and(|x| {
                let from = today - chrono::Days::new(u64::from(*days));
                x >= from && x <= today
            }),
            FieldTest::AnniversaryWithinNextDays { days } => {
                date().is_some_and(|x| days_to_anniversary(x, today) <= i64::from(*days))
            }
            FieldTest::BooleanIs { value: b } => matches!(value, Some(FieldValue::Boolean(x)) if x == b),
            FieldTest::Hidden { .. } => false,
        }
    }
}

fn is_empty(value: Option<&FieldValue>) -> bool {
    match value {
        None => true,
        Some(FieldValue::Text(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// The date of `d`'s anniversary in `year` (29 February → 28 February in other years).
pub fn anniversary_in(d: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, d.month(), d.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, d.month(), 28))
        .unwrap_or(d)
}

/// Days from `today` until the next anniversary of `d` (0 when it is today).
pub fn days_to_anniversary(d: NaiveDate, today: NaiveDate) -> i64 {
    let this = anniversary_in(d, today.year());
    let next = if this >= today { this } else { anniversary_in(d, today.year() + 1) };
    (next - today).num_days()
}

/// Everything the evaluator may ask about one contact (plaintext: build it only where PHI may be
/// handled). Used by tests and by the in-memory evaluation of whole records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactFacts {
    /// Field values by key, built-in (time_zone, locale, email …) and custom.
    pub fields: BTreeMap<String, FieldValue>,
    /// Lists the contact is a subscribed member of.
    pub lists: HashSet<Uuid>,
    pub consents: HashSet<ConsentPurpose>,
    pub engagement: Vec<EngagementFact>,
    pub events: Vec<EventFact>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngagementFact {
    pub campaign: Uuid,
    pub activity: Activity,
    pub at: DateTime<Utc>,
    /// A privacy proxy or link scanner, not a person.
    pub machine: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub properties: BTreeMap<String, FieldValue>,
}

fn since(now: DateTime<Utc>, days: Option<u32>) -> Option<DateTime<Utc>> {
    days.map(|d| now - chrono::Duration::days(i64::from(d)))
}

impl EngagementFact {
    pub fn counts_for(&self, activity: Activity, campaign: Option<Uuid>, from: Option<DateTime<Utc>>) -> bool {
        self.activity == activity
            && (activity == Activity::Received || !self.machine)
            && campaign.is_none_or(|c| c == self.campaign)
            && from.is_none_or(|f| self.at >= f)
    }
}

impl Condition {
    /// The in-memory meaning of the condition.
    pub fn matches(&self, f: &ContactFacts, now: DateTime<Utc>) -> bool {
        let today = now.date_naive();
        match self {
            Condition::Field { field, test } => test.matches(f.fields.get(field), today),
            Condition::InList { list } => f.lists.contains(list),
            Condition::Consent { purpose } => f.consents.contains(purpose),
            Condition::Engagement { activity, campaign, within_days } => {
                let from = since(now, *within_days);
                f.engagement.iter().any(|e| e.counts_for(*activity, *campaign, from))
            }
            Condition::NeverOpened => !f.engagement.iter().any(|e| e.counts_for(Activity::Opened, None, None)),
            Condition::Event { event_type, within_days, properties } => {
                event_matches(event_type, *within_days, properties, f.events.iter(), now)
            }
        }
    }
}

/// Whether any of `events` satisfies an event condition.
pub fn event_matches<'a>(
    event_type: &str,
    within_days: Option<u32>,
    properties: &[PropertyTest],
    events: impl Iterator<Item = &'a EventFact>,
    now: DateTime<Utc>,
) -> bool {
    let from = since(now, within_days);
    let today = now.date_naive();
    events.into_iter().any(|e| {
        e.event_type == event_type
            && from.is_none_or(|f| e.at >= f)
            && properties.iter().all(|p| p.test.matches(e.properties.get(&p.key), today))
    })
}

/// Evaluate the tree, asking `leaf(i, condition)` for the conditions it needs (numbered in
/// pre-order from 0), short-circuiting so expensive leaves (decryption) run only when they matter.
pub fn evaluate_with(node: &Node, leaf: &mut impl FnMut(usize, &Condition) -> bool) -> bool {
    fn go(node: &Node, next: &mut usize, leaf: &mut impl FnMut(usize, &Condition) -> bool) -> bool {
        match node {
            Node::Condition { condition } => {
                let i = *next;
                *next += 1;
                leaf(i, condition)
            }
            Node::Not { child } => !go(child, next, leaf),
            Node::And { children } => {
                let mut result = true;
                for c in children {
                    if result {
                        result = go(c, next, leaf);
                    } else {
                        *next += count_conditions(c);
                    }
                }
                result
            }
            Node::Or { children } => {
                let mut result = false;
                for c in children {
                    if result {
                        *next += count_conditions(c);
                    } else {
                        result = go(c, next, leaf);
                    }
                }
                result
            }
        }
    }
    let mut next = 0;
    go(node, &mut next, leaf)
}

/// The pure evaluator over a whole record.
pub fn evaluate(def: &SegmentDefinition, facts: &ContactFacts, now: DateTime<Utc>) -> bool {
    evaluate_with(&def.root, &mut |_, c| c.matches(facts, now))
}

pub fn count_conditions(node: &Node) -> usize {
    match node {
        Node::Condition { .. } => 1,
        Node::Not { child } => count_conditions(child),
        Node::And { children } | Node::Or { children } => children.iter().map(count_conditions).sum(),
    }
}

/// The conditions in pre-order (the numbering `evaluate_with` uses).
pub fn conditions(node: &Node) -> Vec<&Condition> {
    fn go<'a>(node: &'a Node, out: &mut Vec<&'a Condition>) {
        match node {
            Node::Condition { condition } => out.push(condition),
            Node::Not { child } => go(child, out),
            Node::And { children } | Node::Or { children } => children.iter().for_each(|c| go(c, out)),
        }
    }
    let mut out = Vec::new();
    go(node, &mut out);
    out
}

fn depth(node: &Node) -> usize {
    match node {
        Node::Condition { .. } => 0,
        Node::Not { child } => depth(child),
        Node::And { children } | Node::Or { children } => 1 + children.iter().map(depth).max().unwrap_or(0),
    }
}

/// A field a condition can test, as the builder and the validator see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentField {
    pub key: String,
    pub label: String,
    pub field_type: FieldType,
    pub options: Vec<String>,
    pub is_phi: bool,
}

/// The organisation's fields: built-ins first, then custom ones.
pub fn field_catalogue(custom: &[CustomField]) -> Vec<SegmentField> {
    let mut out: Vec<SegmentField> = BuiltinField::ALL
        .iter()
        .map(|b| SegmentField {
            key: b.key().into(),
            label: b.label().into(),
            field_type: b.field_type(),
            options: vec![],
            is_phi: b.is_phi(),
        })
        .collect();
    out.extend(custom.iter().map(|c| SegmentField {
        key: c.key.clone(),
        label: c.label.clone(),
        field_type: c.field_type,
        options: c.options.clone(),
        is_phi: c.is_phi,
    }));
    out
}

/// Whether evaluating the condition needs decrypted PHI.
pub fn needs_phi(c: &Condition, fields: &[SegmentField]) -> bool {
    match c {
        Condition::Field { field, .. } => fields.iter().find(|f| &f.key == field).is_none_or(|f| f.is_phi),
        Condition::Event { properties, .. } => !properties.is_empty(),
        _ => false,
    }
}

/// The definition with the literal values of its PHI conditions removed: conditions on PHI fields
/// (or on fields the catalogue does not know, which are treated as PHI) and tests on patient-event
/// properties. This is the plain copy that is stored and shown to people who may not read
/// contacts; the whole definition is kept only sealed.
pub fn mask_phi(def: &SegmentDefinition, fields: &[SegmentField]) -> SegmentDefinition {
    fn go(node: &Node, fields: &[SegmentField]) -> Node {
        match node {
            Node::And { children } => Node::And { children: children.iter().map(|c| go(c, fields)).collect() },
            Node::Or { children } => Node::Or { children: children.iter().map(|c| go(c, fields)).collect() },
            Node::Not { child } => Node::Not { child: Box::new(go(child, fields)) },
            Node::Condition { condition } => Node::Condition {
                condition: match condition {
                    Condition::Field { field, test } if needs_phi(condition, fields) => {
                        Condition::Field { field: field.clone(), test: test.masked() }
                    }
                    Condition::Event { event_type, within_days, properties } => Condition::Event {
                        event_type: event_type.clone(),
                        within_days: *within_days,
                        properties: properties
                            .iter()
                            .map(|p| PropertyTest { key: p.key.clone(), test: p.test.masked() })
                            .collect(),
                    },
                    other => other.clone(),
                },
            },
        }
    }
    SegmentDefinition { version: def.version, root: go(&def.root, fields) }
}

/// Whether any condition's value has been masked ([`mask_phi`]).
pub fn has_hidden_values(def: &SegmentDefinition) -> bool {
    conditions(&def.root).iter().any(|c| match c {
        Condition::Field { test, .. } => matches!(test, FieldTest::Hidden { .. }),
        Condition::Event { properties, .. } => properties.iter().any(|p| matches!(p.test, FieldTest::Hidden { .. })),
        _ => false,
    })
}

fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.starts_with(|c: char| c.is_ascii_lowercase())
        && t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

fn check_text(n: usize, what: &str, v: &str, allow_empty: bool) -> Result<(), DomainError> {
    if !allow_empty && v.trim().is_empty() {
        return Err(DomainError::invalid(format!("condition {n}"), format!("{what} needs a value")));
    }
    if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            format!("condition {n}"),
            format!("{what}: values are at most {MAX_TEXT} printable characters"),
        ));
    }
    Ok(())
}

fn check_days(n: usize, days: u32) -> Result<(), DomainError> {
    if days > MAX_DAYS {
        return Err(DomainError::invalid(format!("condition {n}"), format!("days must be 0 to {MAX_DAYS}")));
    }
    Ok(())
}

fn check_test(n: usize, test: &FieldTest, label: &str) -> Result<(), DomainError> {
    match test {
        FieldTest::TextEquals { value } => check_text(n, label, value, true),
        FieldTest::TextContains { value } | FieldTest::TextStartsWith { value } => check_text(n, label, value, false),
        FieldTest::OneOf { values } => {
            if values.is_empty() || values.len() > MAX_CHOICES {
                return Err(DomainError::invalid(
                    format!("condition {n}"),
                    format!("{label}: choose 1 to {MAX_CHOICES} values"),
                ));
            }
            values.iter().try_for_each(|v| check_text(n, label, v, true))
        }
        FieldTest::Number { value, .. } if !value.is_finite() => {
            Err(DomainError::invalid(format!("condition {n}"), format!("{label}: the number is not valid")))
        }
        FieldTest::DateWithinLastDays { days } | FieldTest::AnniversaryWithinNextDays { days } => check_days(n, *days),
        _ => Ok(()),
    }
}

/// Check a definition against the organisation's fields and lists. Messages say which condition
/// (numbered from 1 in reading order) and what is wrong, in plain words.
pub fn validate(def: &SegmentDefinition, fields: &[SegmentField], lists: &[Uuid]) -> Result<(), DomainError> {
    if def.version != FORMAT_VERSION {
        return Err(DomainError::invalid(
            "version",
            format!("segment format version {} is not supported (expected {FORMAT_VERSION})", def.version),
        ));
    }
    let levels = depth(&def.root);
    if levels > MAX_DEPTH {
        return Err(DomainError::invalid(
            "conditions",
            format!("groups are nested {levels} levels deep; at most {MAX_DEPTH} are allowed"),
        ));
    }
    let all = conditions(&def.root);
    if all.len() > MAX_CONDITIONS {
        return Err(DomainError::invalid(
            "conditions",
            format!("{} conditions; at most {MAX_CONDITIONS} are allowed", all.len()),
        ));
    }
    for (i, c) in all.iter().enumerate() {
        let n = i + 1;
        let hidden = match c {
            Condition::Field { test, .. } => matches!(test, FieldTest::Hidden { .. }),
            Condition::Event { properties, .. } => {
                properties.iter().any(|p| matches!(p.test, FieldTest::Hidden { .. }))
            }
            _ => false,
        };
        if hidden {
            return Err(DomainError::invalid(
                format!("condition {n}"),
                "its value is hidden (sealed PHI); enter the value again to use or save this condition",
            ));
        }
        match c {
            Condition::Field { field, test } => {
                let Some(f) = fields.iter().find(|f| &f.key == field) else {
                    return Err(DomainError::invalid(
                        format!("condition {n}"),
                        "refers to a field this organisation does not have",
                    ));
                };
                if !test.fits(f.field_type) {
                    return Err(DomainError::invalid(
                        format!("condition {n}"),
                        format!(
                            "“{}” is a {} field; “{}” does not apply to it",
                            f.label,
                            f.field_type.label().to_lowercase(),
                            test.label()
                        ),
                    ));
                }
                if let FieldTest::OneOf { values } = test
                    && f.field_type == FieldType::OneOf
                    && let Some(bad) = values.iter().position(|v| !f.options.iter().any(|o| o.eq_ignore_ascii_case(v)))
                {
                    return Err(DomainError::invalid(
                        format!("condition {n}"),
                        format!("choice {} is not one of the options of “{}”", bad + 1, f.label),
                    ));
                }
                check_test(n, test, &f.label)?;
            }
            Condition::InList { list } => {
                if !lists.contains(list) {
                    return Err(DomainError::invalid(format!("condition {n}"), "refers to a list that does not exist"));
                }
            }
            Condition::Consent { .. } | Condition::NeverOpened => {}
            Condition::Engagement { within_days, .. } => {
                if let Some(d) = within_days {
                    check_days(n, *d)?;
                }
            }
            Condition::Event { event_type, within_days, properties } => {
                if !valid_event_type(event_type) {
                    return Err(DomainError::invalid(
                        format!("condition {n}"),
                        "event types use lower-case letters, digits, _ and . (at most 64)",
                    ));
                }
                if let Some(d) = within_days {
                    check_days(n, *d)?;
                }
                if properties.len() > 10 {
                    return Err(DomainError::invalid(format!("condition {n}"), "at most 10 property tests"));
                }
                for p in properties {
                    if !valid_event_type(&p.key) || p.key.contains('.') {
                        return Err(DomainError::invalid(
                            format!("condition {n}"),
                            "property names use lower-case letters, digits and _",
                        ));
                    }
                    check_test(n, &p.test, "the property")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
