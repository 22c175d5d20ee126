//! Pure edits of a sequence's step graph for the builder: a new step of a kind, inserting one on
//! an outgoing path, removing one (its first path takes its place; steps only it led to go too),
//! moving a step of a straight run up or down, and the layout (which step is drawn where). Kept
//! free of the view so the rules are unit-tested.

use domain::campaigns::DeliveryPolicy;
use domain::contacts::ConsentPurpose;
use domain::segments::{FieldTest, PropertyTest};
use domain::sequences::{
    Awaited, BranchTest, SequenceDefinition, SplitPath, Step, StepId, StepKind, Trigger, WaitSpec,
};
use std::collections::BTreeSet;

/// The kinds the "add step" picker offers: (code, label).
pub const KINDS: &[(&str, &str)] = &[
    ("send_email", "Send email"),
    ("wait", "Wait"),
    ("wait_for", "Wait for"),
    ("branch", "Branch"),
    ("random_split", "Random split"),
    ("update_list", "Update contact"),
    ("notify_staff", "Notify staff"),
    ("exit", "Exit"),
];

/// An outgoing path of a step: which of its successors (0 = `next`/`then`/`on_event`/first path).
pub type Slot = usize;

/// The labels of a step's outgoing paths (one per slot), for the columns under it.
pub fn slot_labels(kind: &StepKind) -> Vec<String> {
    match kind {
        StepKind::WaitFor { .. } => vec!["Happened".into(), "Timed out".into()],
        StepKind::Branch { .. } => vec!["Yes".into(), "No".into()],
        StepKind::RandomSplit { paths } => paths.iter().map(|p| format!("{} %", p.percent)).collect(),
        StepKind::Exit => Vec::new(),
        _ => vec![String::new()],
    }
}

/// Where slot `slot` of a step goes (`None`: the enrolment ends there).
pub fn slot_target(kind: &StepKind, slot: Slot) -> Option<StepId> {
    slot_mut_ref(&mut kind.clone(), slot).and_then(|t| t.clone())
}

fn slot_mut_ref(kind: &mut StepKind, slot: Slot) -> Option<&mut Option<StepId>> {
    match kind {
        StepKind::SendEmail { next, .. }
        | StepKind::Wait { next, .. }
        | StepKind::UpdateList { next, .. }
        | StepKind::NotifyStaff { next, .. } => (slot == 0).then_some(next),
        StepKind::WaitFor { on_event, on_timeout, .. } => match slot {
            0 => Some(on_event),
            1 => Some(on_timeout),
            _ => None,
        },
        StepKind::Branch { then, otherwise, .. } => match slot {
            0 => Some(then),
            1 => Some(otherwise),
            _ => None,
        },
        StepKind::RandomSplit { paths } => paths.get_mut(slot).map(|p| &mut p.next),
        StepKind::Exit => None,
    }
}

fn all_slots_mut(kind: &mut StepKind) -> Vec<&mut Option<StepId>> {
    match kind {
        StepKind::SendEmail { next, .. }
        | StepKind::Wait { next, .. }
        | StepKind::UpdateList { next, .. }
        | StepKind::NotifyStaff { next, .. } => vec![next],
        StepKind::WaitFor { on_event, on_timeout, .. } => vec![on_event, on_timeout],
        StepKind::Branch { then, otherwise, .. } => vec![then, otherwise],
        StepKind::RandomSplit { paths } => paths.iter_mut().map(|p| &mut p.next).collect(),
        StepKind::Exit => Vec::new(),
    }
}

/// A step id not yet used: `<code>-<n>`.
pub fn fresh_id(def: &SequenceDefinition, code: &str) -> StepId {
    let base = code.replace('_', "-");
    (1..).map(|n| format!("{base}-{n}")).find(|id| def.step(id).is_none()).unwrap_or_default()
}

/// A new step of kind `code` going to `next`, with sensible starting settings.
pub fn new_step(def: &SequenceDefinition, code: &str, next: Option<StepId>) -> Step {
    let id = fresh_id(def, code);
    let last_send = def.steps.iter().rev().find(|s| matches!(s.kind, StepKind::SendEmail { .. })).map(|s| s.id.clone());
    let kind = match code {
        "send_email" => StepKind::SendEmail {
            template: None,
            template_version: None,
            purpose: ConsentPurpose::CareCommunications,
            policy: DeliveryPolicy::TlsRequired,
            next,
        },
        "wait" => StepKind::Wait { wait: WaitSpec::Duration { minutes: 24 * 60 }, next },
        "wait_for" => StepKind::WaitFor {
            event: match &last_send {
                Some(s) => Awaited::Opened { step: s.clone() },
                None => Awaited::Event {
                    event: domain::sequences::EventMatch { event_type: String::new(), correlated: false },
                },
            },
            timeout_minutes: 3 * 24 * 60,
            on_event: next,
            on_timeout: None,
        },
        "branch" => StepKind::Branch {
            test: match (&def.trigger, &last_send) {
                (Trigger::Event { .. }, _) | (_, None) => BranchTest::EventProperty {
                    test: PropertyTest { key: String::new(), test: FieldTest::TextEquals { value: String::new() } },
                },
                (_, Some(s)) => BranchTest::Engaged { clicked: false, step: s.clone() },
            },
            then: next,
            otherwise: None,
        },
        "random_split" => StepKind::RandomSplit {
            paths: vec![SplitPath { percent: 50, next }, SplitPath { percent: 50, next: None }],
        },
        "update_list" => StepKind::UpdateList { list: uuid::Uuid::nil(), add: true, next },
        "notify_staff" => StepKind::NotifyStaff { user: uuid::Uuid::nil(), note: String::new(), next },
        _ => StepKind::Exit,
    };
    Step { id, name: String::new(), kind }
}

/// Insert a new step of kind `code` on slot `slot` of step `after` (or before the first step when
/// `after` is `None`). Returns the new step's id.
pub fn insert(def: &mut SequenceDefinition, after: Option<&str>, slot: Slot, code: &str) -> Option<StepId> {
    let old = match after {
        None => Some(def.start.clone()),
        Some(a) => slot_target(&def.step(a)?.kind, slot),
    };
    // An exit ends the path: what followed is no longer reachable from here.
    let step = new_step(def, code, if code == "exit" { None } else { old.clone() });
    let id = step.id.clone();
    let before = reachable(def);
    def.steps.push(step);
    match after {
        None => def.start = id.clone(),
        Some(a) => {
            let s = def.steps.iter_mut().find(|s| s.id == a)?;
            *slot_mut_ref(&mut s.kind, slot)? = Some(id.clone());
        }
    }
    prune(def, &before);
    Some(id)
}

/// Remove step `id`: what pointed to it now goes to its first path. Steps that only it led to are
/// removed with it. Refused (false) for the only step.
pub fn remove(def: &mut SequenceDefinition, id: &str) -> bool {
    if def.steps.len() <= 1 || def.step(id).is_none() {
        return false;
    }
    let first = def.step(id).and_then(|s| s.kind.successors().first().map(|n| (*n).clone()));
    if def.start == id {
        match &first {
            Some(f) => def.start = f.clone(),
            None => return false,
        }
    }
    let before = reachable(def);
    for s in &mut def.steps {
        for t in all_slots_mut(&mut s.kind) {
            if t.as_deref() == Some(id) {
                *t = first.clone();
            }
        }
    }
    def.steps.retain(|s| s.id != id);
    prune(def, &before);
    true
}

/// Drop steps that were reachable in `before` and no longer are (the rest stays, so the
/// validation can point at steps that were already unreachable).
fn prune(def: &mut SequenceDefinition, before: &BTreeSet<StepId>) {
    let now = reachable(def);
    def.steps.retain(|s| now.contains(&s.id) || !before.contains(&s.id));
}

/// The steps reachable from the start.
pub fn reachable(def: &SequenceDefinition) -> BTreeSet<StepId> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![def.start.clone()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(s) = def.step(&id) {
            todo.extend(s.kind.successors().into_iter().cloned());
        }
    }
    seen.retain(|id| def.step(id).is_some());
    seen
}

fn single(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::SendEmail { .. } | StepKind::Wait { .. } | StepKind::UpdateList { .. } | StepKind::NotifyStaff { .. }
    )
}

/// The one step that leads to `id` (if exactly one does, through a plain `next`), and whether
/// `id` is the start.
fn only_parent(def: &SequenceDefinition, id: &str) -> Option<StepId> {
    let parents: Vec<&Step> =
        def.steps.iter().filter(|s| s.kind.successors().iter().any(|n| n.as_str() == id)).collect();
    match parents.as_slice() {
        [p] if single(&p.kind) && def.start != id => Some(p.id.clone()),
        _ => None,
    }
}

/// Whether step `id` can swap places with the step before it (both plain one-path steps in a
/// straight run).
pub fn can_move_up(def: &SequenceDefinition, id: &str) -> bool {
    def.step(id).is_some_and(|s| single(&s.kind)) && only_parent(def, id).is_some()
}

pub fn can_move_down(def: &SequenceDefinition, id: &str) -> bool {
    def.step(id)
        .and_then(|s| slot_target(&s.kind, 0).filter(|_| single(&s.kind)))
        .is_some_and(|n| can_move_up(def, &n) && only_parent(def, &n).as_deref() == Some(id))
}

/// Swap step `id` with the step before it. P → S → X becomes S → P → X.
pub fn move_up(def: &mut SequenceDefinition, id: &str) -> bool {
    if !can_move_up(def, id) {
        return false;
    }
    let Some(p) = only_parent(def, id) else { return false };
    let after = def.step(id).and_then(|s| slot_target(&s.kind, 0));
    let p_owned = p.clone();
    for s in &mut def.steps {
        for t in all_slots_mut(&mut s.kind) {
            if t.as_deref() == Some(p_owned.as_str()) {
                *t = Some(id.to_string());
            }
        }
    }
    if def.start == p {
        def.start = id.to_string();
    }
    for s in &mut def.steps {
        if s.id == id {
            if let Some(t) = slot_mut_ref(&mut s.kind, 0) {
                *t = Some(p.clone());
            }
        } else if s.id == p
            && let Some(t) = slot_mut_ref(&mut s.kind, 0)
        {
            *t = after.clone();
        }
    }
    true
}

pub fn move_down(def: &mut SequenceDefinition, id: &str) -> bool {
    if !can_move_down(def, id) {
        return false;
    }
    match def.step(id).and_then(|s| slot_target(&s.kind, 0)) {
        Some(n) => move_up(def, &n),
        None => false,
    }
}

/// How the builder draws the graph: a column of items from the start; a step with several paths
/// gets its paths side by side. A step reached a second time (paths that join) is drawn once,
/// where it is first met, and elsewhere as a "continues at" link.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Step { id: StepId, paths: Vec<Path> },
    GoTo(StepId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub label: String,
    /// The step and slot the path leaves from (where "add a step" inserts).
    pub from: StepId,
    pub slot: Slot,
    pub items: Vec<Item>,
}

/// The layout from the start; steps that cannot be reached are listed after it.
pub fn layout(def: &SequenceDefinition) -> (Vec<Item>, Vec<StepId>) {
    let mut drawn = BTreeSet::new();
    let items = column(def, Some(def.start.clone()), &mut drawn, 0);
    let unreachable = def.steps.iter().filter(|s| !drawn.contains(&s.id)).map(|s| s.id.clone()).collect();
    (items, unreachable)
}

fn column(def: &SequenceDefinition, mut at: Option<StepId>, drawn: &mut BTreeSet<StepId>, depth: usize) -> Vec<Item> {
    let mut out = Vec::new();
    while let Some(id) = at.take() {
        if depth > domain::sequences::MAX_STEPS || out.len() > domain::sequences::MAX_STEPS {
            break;
        }
        let Some(step) = def.step(&id) else { break };
        if !drawn.insert(id.clone()) {
            out.push(Item::GoTo(id));
            break;
        }
        let labels = slot_labels(&step.kind);
        if labels.len() == 1 {
            // A straight run: the next step follows in the same column.
            out.push(Item::Step { id: id.clone(), paths: Vec::new() });
            at = slot_target(&step.kind, 0);
        } else {
            let paths = labels
                .into_iter()
                .enumerate()
                .map(|(slot, label)| Path {
                    label,
                    from: id.clone(),
                    slot,
                    items: column(def, slot_target(&step.kind, slot), drawn, depth + 1),
                })
                .collect();
            out.push(Item::Step { id: id.clone(), paths });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> SequenceDefinition {
        serde_json::from_value(serde_json::json!({
            "version": 1,
            "trigger": {"kind": "event", "event_type": "appointment.booked"},
            "start": "a",
            "steps": [
                {"id": "a", "kind": "wait", "wait": {"kind": "duration", "minutes": 60}, "next": "b"},
                {"id": "b", "kind": "wait", "wait": {"kind": "duration", "minutes": 30}, "next": "c"},
                {"id": "c", "kind": "exit"}
            ]
        }))
        .unwrap()
    }

    fn order(d: &SequenceDefinition) -> Vec<String> {
        let mut out = vec![d.start.clone()];
        while let Some(n) = d.step(out.last().unwrap()).and_then(|s| slot_target(&s.kind, 0)) {
            out.push(n);
        }
        out
    }

    #[test]
    fn insert_remove_and_move_keep_the_graph_valid() {
        let mut d = def();
        let w = insert(&mut d, Some("a"), 0, "send_email").unwrap();
        assert_eq!(order(&d), ["a", &w, "b", "c"]);
        assert!(move_up(&mut d, &w));
        assert_eq!(order(&d), [&w, "a", "b", "c"]);
        assert_eq!(d.start, w);
        assert!(move_down(&mut d, "a"));
        assert_eq!(order(&d), [w.as_str(), "b", "a", "c"]);
        assert!(!can_move_up(&d, &w), "the first step has nothing before it");
        assert!(remove(&mut d, "b"));
        assert_eq!(order(&d), [w.as_str(), "a", "c"]);
        let first = insert(&mut d, None, 0, "wait").unwrap();
        assert_eq!(d.start, first);
    }

    #[test]
    fn a_branch_lays_out_side_by_side_and_removing_it_drops_its_other_path() {
        let mut d = def();
        let b = insert(&mut d, Some("a"), 0, "branch").unwrap();
        let no = insert(&mut d, Some(&b), 1, "send_email").unwrap();
        let (items, unreachable) = layout(&d);
        assert!(unreachable.is_empty());
        let Item::Step { paths, .. } = &items[1] else { panic!() };
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[1].items, vec![Item::Step { id: no.clone(), paths: vec![] }]);
        assert!(remove(&mut d, &b));
        assert!(d.step(&no).is_none());
        assert_eq!(order(&d), ["a", "b", "c"]);
        assert!(!remove(&mut d, "zz"));
    }

    #[test]
    fn joined_paths_draw_the_step_once() {
        let mut d = def();
        let b = insert(&mut d, Some("a"), 0, "branch").unwrap();
        if let Some(s) = d.steps.iter_mut().find(|s| s.id == b)
            && let StepKind::Branch { otherwise, .. } = &mut s.kind
        {
            *otherwise = Some("c".into());
        }
        let (items, _) = layout(&d);
        let Item::Step { paths, .. } = &items[1] else { panic!() };
        assert!(matches!(paths[1].items.last(), Some(Item::GoTo(id)) if id == "c"));
        assert!(domain::sequences::validate(&d).is_err(), "the branch test has no property yet");
    }
}
