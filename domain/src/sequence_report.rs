//! A sequence's report: the funnel (entered → each step → converted), how enrolments ended, the
//! time from entering to converting, and each email step's figures (the campaign report's).
//! Aggregates only; every figure goes through `domain::disclosure` for its reader, with the sums
//! the page shows (entered = still in + each way out; converted = its time buckets) protected by
//! complementary suppression.

use crate::campaign_views::{EmailReport, ReportCounts};
use crate::disclosure::{Cell, Figure, Reader, SMALL_CELL, Sum, suppress};
use crate::sequences::{EndReason, SequenceDefinition, Step, StepId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Time-to-convert buckets: upper bounds in seconds (the last is open) and their labels.
pub const CONVERT_BUCKETS: [(Option<i64>, &str); 7] = [
    (Some(3_600), "Under 1 hour"),
    (Some(86_400), "1 hour – 1 day"),
    (Some(3 * 86_400), "1 – 3 days"),
    (Some(7 * 86_400), "3 – 7 days"),
    (Some(14 * 86_400), "1 – 2 weeks"),
    (Some(30 * 86_400), "2 – 4 weeks"),
    (None, "4 weeks or more"),
];

/// The index of the time-to-convert bucket of a conversion `secs` seconds after entering.
pub fn convert_bucket(secs: i64) -> usize {
    CONVERT_BUCKETS.iter().position(|(upper, _)| upper.is_none_or(|u| secs < u)).unwrap_or(CONVERT_BUCKETS.len() - 1)
}

/// The steps in the order a person reads the flow: from the start, each step before the steps it
/// leads to (depth first, branches in display order), then any step the start does not reach.
pub fn flow_order(def: &SequenceDefinition) -> Vec<&Step> {
    let by_id: BTreeMap<&str, &Step> = def.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(def.steps.len());
    let mut stack = vec![def.start.as_str()];
    while let Some(id) = stack.pop() {
        let Some(step) = by_id.get(id) else { continue };
        if !seen.insert(id) {
            continue;
        }
        out.push(*step);
        for next in step.kind.successors().into_iter().rev() {
            stack.push(next.as_str());
        }
    }
    for s in &def.steps {
        if seen.insert(s.id.as_str()) {
            out.push(s);
        }
    }
    out
}

/// The exact figures behind a sequence report (from the database; never sent to a client as
/// they are). Enrolments count people: an enrolment is one person's passage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceReportCounts {
    pub entered: u64,
    /// Still inside.
    pub active: u64,
    /// Ended, by reason (`EndReason::Goal` is converted).
    pub ended: BTreeMap<EndReason, u64>,
    /// Enrolments that ran each step at least once.
    pub reached: BTreeMap<StepId, u64>,
    /// Conversions per [`CONVERT_BUCKETS`] entry.
    pub to_convert: [u64; CONVERT_BUCKETS.len()],
    /// Median seconds from entering to converting.
    pub median_secs_to_convert: Option<f64>,
    /// Each email step's figures, by step id.
    pub emails: BTreeMap<StepId, ReportCounts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStep {
    pub step_id: StepId,
    pub name: String,
    /// The step kind's label ("Send email", "Wait", …).
    pub kind: String,
    pub reached: Figure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndFigure {
    pub reason: EndReason,
    pub count: Figure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketFigure {
    pub label: String,
    pub count: Figure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailStepReport {
    pub step_id: StepId,
    pub name: String,
    pub report: EmailReport,
}

/// A sequence's report as its reader may see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceReport {
    pub name: String,
    /// The version whose steps the funnel lists (None: never published, the draft's steps).
    pub version: Option<i32>,
    pub entered: Figure,
    pub active: Figure,
    pub converted: Figure,
    /// Converted ÷ entered in percent, where both are shown exactly.
    pub conversion_rate: Option<f64>,
    pub funnel: Vec<FunnelStep>,
    /// How enrolments ended, every reason (zeros included, so the list's shape says nothing).
    pub ended: Vec<EndFigure>,
    pub to_convert: Vec<BucketFigure>,
    /// Hours from entering to converting, half converted sooner; shown to restricted readers only
    /// when at least 11 people converted.
    pub median_hours_to_convert: Option<f64>,
    pub emails: Vec<EmailStepReport>,
}

impl SequenceReport {
    /// The report for `reader`: small cells hidden from restricted readers with complementary
    /// suppression across "entered = still in + each way out" and "converted = its buckets".
    pub fn build(
        reader: Reader,
        name: String,
        version: Option<i32>,
        def: &SequenceDefinition,
        c: &SequenceReportCounts,
    ) -> SequenceReport {
        let reasons = EndReason::ALL;
        let goal_at = 2 + reasons.iter().position(|r| *r == EndReason::Goal).unwrap_or(0);
        let mut cells = vec![Cell::people(c.entered), Cell::people(c.active)];
        cells.extend(reasons.iter().map(|r| Cell::people(c.ended.get(r).copied().unwrap_or(0))));
        let first_bucket = cells.len();
        cells.extend(c.to_convert.iter().map(|n| Cell::people(*n)));
        let steps = flow_order(def);
        let first_step = cells.len();
        cells.extend(steps.iter().map(|s| Cell::people(c.reached.get(&s.id).copied().unwrap_or(0))));
        let sums = [
            Sum { total: 0, parts: (1..first_bucket).collect() },
            Sum { total: goal_at, parts: (first_bucket..first_step).collect() },
        ];
        let f = suppress(reader, &cells, &sums);
        let at = |i: usize| f.get(i).copied().unwrap_or(Figure::Withheld);
        let (entered, converted) = (at(0), at(goal_at));
        let conversion_rate = match (converted.exact(), entered.exact()) {
            (Some(n), Some(d)) if d > 0 => Some(n as f64 * 100.0 / d as f64),
            _ => None,
        };
        let goal = c.ended.get(&EndReason::Goal).copied().unwrap_or(0);
        let median_shown = reader == Reader::Full || goal >= SMALL_CELL;
        SequenceReport {
            name,
            version,
            entered,
            active: at(1),
            converted,
            conversion_rate,
            funnel: steps
                .iter()
                .enumerate()
                .map(|(i, s)| FunnelStep {
                    step_id: s.id.clone(),
                    name: s.name.clone(),
                    kind: s.kind.label().to_string(),
                    reached: at(first_step + i),
                })
                .collect(),
            ended: reasons.iter().enumerate().map(|(i, r)| EndFigure { reason: *r, count: at(2 + i) }).collect(),
            to_convert: CONVERT_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, (_, label))| BucketFigure { label: (*label).to_string(), count: at(first_bucket + i) })
                .collect(),
            median_hours_to_convert: c.median_secs_to_convert.filter(|_| median_shown).map(|s| s / 3_600.0),
            emails: steps
                .iter()
                .filter(|s| matches!(s.kind, crate::sequences::StepKind::SendEmail { .. }))
                .map(|s| EmailStepReport {
                    step_id: s.id.clone(),
                    name: s.name.clone(),
                    report: EmailReport::build(reader, &c.emails.get(&s.id).cloned().unwrap_or_default()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::DeliveryPolicy;
    use crate::contacts::ConsentPurpose;
    use crate::sequences::{EntryRule, StepKind, Trigger, WaitSpec};
    use Figure::*;

    fn step(id: &str, kind: StepKind) -> Step {
        Step { id: id.into(), name: format!("Step {id}"), kind }
    }

    fn send(next: Option<&str>) -> StepKind {
        StepKind::SendEmail {
            template: None,
            template_version: None,
            purpose: ConsentPurpose::Transactional,
            policy: DeliveryPolicy::TlsRequired,
            next: next.map(Into::into),
        }
    }

    fn def() -> SequenceDefinition {
        SequenceDefinition {
            version: crate::sequences::FORMAT_VERSION,
            trigger: Trigger::Event { event_type: "visit.completed".into(), properties: vec![] },
            entry: EntryRule::OneAtATime,
            correlation_key: None,
            goal: None,
            exit_on: vec![],
            quiet_hours: None,
            frequency_cap: None,
            start: "wait".into(),
            // Stored out of flow order, with one step nobody reaches.
            steps: vec![
                step("nudge", send(None)),
                step("orphan", StepKind::Exit),
                step("survey", send(Some("nudge"))),
                step("wait", StepKind::Wait { wait: WaitSpec::Duration { minutes: 60 }, next: Some("survey".into()) }),
            ],
        }
    }

    #[test]
    fn flow_order_follows_the_graph_from_the_start_then_lists_the_unreached() {
        let d = def();
        let ids: Vec<&str> = flow_order(&d).iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["wait", "survey", "nudge", "orphan"]);
    }

    #[test]
    fn buckets_cover_every_duration_once() {
        assert_eq!(convert_bucket(0), 0);
        assert_eq!(convert_bucket(3_599), 0);
        assert_eq!(convert_bucket(3_600), 1);
        assert_eq!(convert_bucket(86_399), 1);
        assert_eq!(convert_bucket(86_400), 2);
        assert_eq!(convert_bucket(30 * 86_400), 6);
        assert_eq!(convert_bucket(i64::MAX), 6);
    }

    fn counts() -> SequenceReportCounts {
        let mut c = SequenceReportCounts { entered: 60, active: 20, ..Default::default() };
        c.ended.insert(EndReason::Goal, 25);
        c.ended.insert(EndReason::Completed, 12);
        c.ended.insert(EndReason::Unsubscribed, 3);
        c.to_convert = [20, 3, 2, 0, 0, 0, 0];
        c.median_secs_to_convert = Some(1_800.0);
        c.reached.insert("wait".into(), 60);
        c.reached.insert("survey".into(), 40);
        c.reached.insert("nudge".into(), 4);
        c.emails.insert("survey".into(), ReportCounts { delivered: 40, human_openers: 30, ..Default::default() });
        c
    }

    #[test]
    fn restricted_readers_cannot_work_out_a_small_way_out_or_bucket() {
        let r = SequenceReport::build(Reader::Restricted, "S".into(), Some(1), &def(), &counts());
        assert_eq!((r.entered, r.active, r.converted), (Exact(60), Exact(20), Exact(25)));
        let ended = |reason| r.ended.iter().find(|e| e.reason == reason).unwrap().count;
        // 60 − 20 − 25 − 12 = 3 is shared by six hidden ways out: none can be worked out.
        assert_eq!(ended(EndReason::Unsubscribed), FewerThan(11));
        assert_eq!(ended(EndReason::Completed), Exact(12), "{r:?}");
        assert_eq!(r.to_convert[0].count, Exact(20), "{r:?}");
        assert!(r.to_convert[1..].iter().all(|b| b.count == FewerThan(11)), "{r:?}");
        assert_eq!(r.conversion_rate, Some(25.0 * 100.0 / 60.0));
        assert_eq!(r.median_hours_to_convert, Some(0.5), "25 people converted: the median is shown");
        let steps: Vec<(&str, Figure)> = r.funnel.iter().map(|s| (s.step_id.as_str(), s.reached)).collect();
        assert_eq!(
            steps,
            [("wait", Exact(60)), ("survey", Exact(40)), ("nudge", FewerThan(11)), ("orphan", FewerThan(11))]
        );
        let emails: Vec<&str> = r.emails.iter().map(|e| e.step_id.as_str()).collect();
        assert_eq!(emails, ["survey", "nudge"]);
        assert_eq!(r.emails[0].report.unique_human_opens, Exact(30));
        assert_eq!(r.emails[1].report.delivered, FewerThan(11));

        let full = SequenceReport::build(Reader::Full, "S".into(), Some(1), &def(), &counts());
        assert_eq!(full.to_convert[1].count, Exact(3));
        assert!(full.ended.iter().all(|e| e.count.exact().is_some()));
    }

    #[test]
    fn a_single_small_way_out_is_not_left_recoverable_from_the_total() {
        let mut c = counts();
        for reason in EndReason::ALL {
            c.ended.insert(reason, 11);
        }
        c.ended.insert(EndReason::Goal, 25);
        c.ended.insert(EndReason::Completed, 12);
        c.ended.insert(EndReason::Unsubscribed, 3);
        c.entered = c.active + c.ended.values().sum::<u64>();
        let r = SequenceReport::build(Reader::Restricted, "S".into(), Some(1), &def(), &c);
        let ended = |reason| r.ended.iter().find(|e| e.reason == reason).unwrap().count;
        assert_eq!(ended(EndReason::Unsubscribed), FewerThan(11));
        assert_eq!(r.entered, Exact(c.entered));
        let withheld = r.ended.iter().filter(|e| e.count == Withheld).count();
        assert!(withheld >= 1, "entered − the others would give the 3 away: {r:?}");
        // Whatever is shown, the hidden cells sum to more than one of them could be alone.
        let shown: u64 = r.ended.iter().filter_map(|e| e.count.exact()).sum::<u64>() + 20;
        assert!(c.entered - shown > 10, "{r:?}");
    }

    #[test]
    fn a_median_of_fewer_than_11_conversions_is_hidden_from_restricted_readers() {
        let mut c = counts();
        c.ended.insert(EndReason::Goal, 4);
        c.to_convert = [4, 0, 0, 0, 0, 0, 0];
        let r = SequenceReport::build(Reader::Restricted, "S".into(), Some(1), &def(), &c);
        assert_eq!(r.median_hours_to_convert, None);
        assert_eq!(r.conversion_rate, None, "converted is hidden, so is the rate");
        let full = SequenceReport::build(Reader::Full, "S".into(), Some(1), &def(), &c);
        assert_eq!(full.median_hours_to_convert, Some(0.5));
    }
}
