//! The segment builder's rules, without any view: which operators a field type offers, how a
//! typed value becomes a test and back, what a new condition of each kind starts as, and the
//! edits the builder makes to the tree (negate, remove, switch all/any, add). Unit-tested below.

use domain::contacts::{ConsentPurpose, FieldType, parse_date};
use domain::segment_views::BuilderOptions;
use domain::segments::{Activity, Cmp, Condition, FieldTest, Node, SegmentField};

/// The kinds of condition, as (code, label), in the order the kind menu lists them.
pub(super) const KINDS: &[(&str, &str)] = &[
    ("field", "Field"),
    ("in_list", "In list"),
    ("consent", "Consents to"),
    ("engagement", "Engagement"),
    ("never_opened", "Never opened"),
    ("event", "Patient event"),
];

/// The code of a condition's kind (one of `KINDS`).
pub(super) fn kind_of(c: &Condition) -> &'static str {
    match c {
        Condition::Field { .. } => "field",
        Condition::InList { .. } => "in_list",
        Condition::Consent { .. } => "consent",
        Condition::Engagement { .. } => "engagement",
        Condition::NeverOpened => "never_opened",
        Condition::Event { .. } => "event",
    }
}

/// The condition a kind starts as when chosen in the kind menu. "In list" without any list falls
/// back to a consent condition; an unknown code to a field condition.
pub(super) fn condition_for_kind(kind: &str, options: &BuilderOptions) -> Condition {
    match kind {
        "in_list" => match options.lists.first() {
            Some(l) => Condition::InList { list: l.id },
            None => Condition::Consent { purpose: ConsentPurpose::Marketing },
        },
        "consent" => Condition::Consent { purpose: ConsentPurpose::Marketing },
        "engagement" => Condition::Engagement { activity: Activity::Opened, campaign: None, within_days: Some(90) },
        "never_opened" => Condition::NeverOpened,
        "event" => Condition::Event {
            event_type: options.event_types.first().cloned().unwrap_or_else(|| "appointment.booked".into()),
            within_days: Some(30),
            properties: vec![],
        },
        _ => blank_field(options),
    }
}

/// A new field condition: the first field, "is not empty".
pub(super) fn blank_field(options: &BuilderOptions) -> Condition {
    let field = options.fields.first().map(|f| f.key.clone()).unwrap_or_else(|| "email".into());
    Condition::Field { field, test: FieldTest::IsNotEmpty }
}

/// What "Add condition" adds.
pub(super) fn blank_condition(options: &BuilderOptions) -> Node {
    Node::Condition { condition: blank_field(options) }
}

/// Operators offered for a field type, as (code, label).
pub(super) fn ops_for(t: FieldType) -> &'static [(&'static str, &'static str)] {
    match t {
        FieldType::Text => &[
            ("equals", "is"),
            ("contains", "contains"),
            ("starts", "starts with"),
            ("one_of", "is one of (comma-separated)"),
            ("empty", "is empty"),
            ("not_empty", "is not empty"),
        ],
        FieldType::OneOf => &[("one_of", "is one of"), ("empty", "is empty"), ("not_empty", "is not empty")],
        FieldType::Number => &[
            ("eq", "="),
            ("ne", "≠"),
            ("lt", "<"),
            ("le", "≤"),
            ("gt", ">"),
            ("ge", "≥"),
            ("empty", "is empty"),
            ("not_empty", "is not empty"),
        ],
        FieldType::Date => &[
            ("before", "is before"),
            ("after", "is after"),
            ("within", "is within the last … days"),
            ("anniversary", "has an anniversary within the next … days"),
            ("empty", "is empty"),
            ("not_empty", "is not empty"),
        ],
        FieldType::Boolean => &[("yes", "is yes"), ("no", "is no"), ("empty", "is empty")],
    }
}

/// Operators for patient-event properties (values can be text, numbers, dates or booleans).
pub(super) const PROPERTY_OPS: &[(&str, &str)] = &[
    ("equals", "is"),
    ("contains", "contains"),
    ("starts", "starts with"),
    ("one_of", "is one of (comma-separated)"),
    ("eq", "="),
    ("ne", "≠"),
    ("lt", "<"),
    ("le", "≤"),
    ("gt", ">"),
    ("ge", "≥"),
    ("before", "is a date before"),
    ("after", "is a date after"),
    ("within", "is a date within the last … days"),
    ("yes", "is true"),
    ("no", "is false"),
    ("empty", "is missing"),
    ("not_empty", "is present"),
];

/// The operator code of a test (the inverse of `make_test`).
pub(super) fn op_of(t: &FieldTest) -> &'static str {
    match t {
        FieldTest::TextEquals { .. } => "equals",
        FieldTest::TextContains { .. } => "contains",
        FieldTest::TextStartsWith { .. } => "starts",
        FieldTest::OneOf { .. } => "one_of",
        FieldTest::IsEmpty => "empty",
        FieldTest::IsNotEmpty => "not_empty",
        FieldTest::Number { cmp, .. } => match cmp {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
        },
        FieldTest::DateBefore { .. } => "before",
        FieldTest::DateAfter { .. } => "after",
        FieldTest::DateWithinLastDays { .. } => "within",
        FieldTest::AnniversaryWithinNextDays { .. } => "anniversary",
        FieldTest::BooleanIs { value: true } => "yes",
        FieldTest::BooleanIs { value: false } => "no",
        // Only people who may not read contacts get masked values, and they get no builder.
        FieldTest::Hidden { .. } => "equals",
    }
}

/// The value as typed in the input.
pub(super) fn value_of(t: &FieldTest) -> String {
    match t {
        FieldTest::TextEquals { value } | FieldTest::TextContains { value } | FieldTest::TextStartsWith { value } => {
            value.clone()
        }
        FieldTest::OneOf { values } => values.join(", "),
        FieldTest::Number { value, .. } => value.to_string(),
        FieldTest::DateBefore { date } | FieldTest::DateAfter { date } => date.format("%Y-%m-%d").to_string(),
        FieldTest::DateWithinLastDays { days } | FieldTest::AnniversaryWithinNextDays { days } => days.to_string(),
        _ => String::new(),
    }
}

/// Build a test from an operator code and the typed value (an unparsable number or date keeps a
/// neutral default; the server validates everything again).
pub(super) fn make_test(op: &str, raw: &str) -> FieldTest {
    let raw = raw.trim();
    let num = raw.parse::<f64>().ok().filter(|n| n.is_finite()).unwrap_or(0.0);
    let days = raw.parse::<u32>().unwrap_or(30);
    let date = parse_date(raw).unwrap_or_else(|| chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default());
    let cmp = |c| FieldTest::Number { cmp: c, value: num };
    match op {
        "equals" => FieldTest::TextEquals { value: raw.into() },
        "contains" => FieldTest::TextContains { value: raw.into() },
        "starts" => FieldTest::TextStartsWith { value: raw.into() },
        "one_of" => FieldTest::OneOf {
            values: raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        },
        "not_empty" => FieldTest::IsNotEmpty,
        "eq" => cmp(Cmp::Eq),
        "ne" => cmp(Cmp::Ne),
        "lt" => cmp(Cmp::Lt),
        "le" => cmp(Cmp::Le),
        "gt" => cmp(Cmp::Gt),
        "ge" => cmp(Cmp::Ge),
        "before" => FieldTest::DateBefore { date },
        "after" => FieldTest::DateAfter { date },
        "within" => FieldTest::DateWithinLastDays { days },
        "anniversary" => FieldTest::AnniversaryWithinNextDays { days },
        "yes" => FieldTest::BooleanIs { value: true },
        "no" => FieldTest::BooleanIs { value: false },
        _ => FieldTest::IsEmpty,
    }
}

/// The `type` of the value input an operator needs; `None`: the operator takes no value.
pub(super) fn input_type(op: &str) -> Option<&'static str> {
    match op {
        "empty" | "not_empty" | "yes" | "no" => None,
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "within" | "anniversary" => Some("number"),
        "before" | "after" => Some("date"),
        _ => Some("text"),
    }
}

/// A choice field's "is one of" is picked from the field's options (chips), not typed.
pub(super) fn uses_chips(t: FieldType, op: &str) -> bool {
    t == FieldType::OneOf && op == "one_of"
}

/// The `type` of a field condition's value input; `None` when it has none (no value, or chips).
pub(super) fn field_value_input(t: FieldType, op: &str) -> Option<&'static str> {
    input_type(op).filter(|_| !uses_chips(t, op))
}

/// The field condition after choosing another field: that field's first operator, no value.
pub(super) fn test_for_field(fields: &[SegmentField], key: &str) -> FieldTest {
    let t = field_type(fields, key);
    let first = ops_for(t).first().map(|(c, _)| *c).unwrap_or("empty");
    make_test(first, "")
}

/// A field's type; an unknown field is treated as text.
pub(super) fn field_type(fields: &[SegmentField], key: &str) -> FieldType {
    fields.iter().find(|f| f.key == key).map(|f| f.field_type).unwrap_or(FieldType::Text)
}

/// A field's name in the field menu (PHI fields say so).
pub(super) fn field_label(f: &SegmentField) -> String {
    if f.is_phi { format!("{} (PHI)", f.label) } else { f.label.clone() }
}

/// Ticks (`on`) or unticks a choice chip; a ticked choice moves to the end, never twice.
pub(super) fn toggle_choice(values: &mut Vec<String>, choice: &str, on: bool) {
    values.retain(|x| x != choice);
    if on {
        values.push(choice.to_string());
    }
}

/// Days typed in a "within the last … days" box: empty or not a whole number means "ever".
pub(super) fn parse_days(raw: &str) -> Option<u32> {
    raw.trim().parse::<u32>().ok()
}

/// The activity a menu code names (opened when unknown).
pub(super) fn activity_of(code: &str) -> Activity {
    Activity::ALL.into_iter().find(|a| a.as_str() == code).unwrap_or(Activity::Opened)
}

/// The node a path points at: indexes into group children (a `Not` wrapper counts as the item).
pub(super) fn node_at<'a>(root: &'a mut Node, path: &[usize]) -> Option<&'a mut Node> {
    let mut n = root;
    for &i in path {
        n = match inner(n) {
            Node::And { children } | Node::Or { children } => children.get_mut(i)?,
            _ => return None,
        };
    }
    Some(n)
}

/// The node behind an optional `Not`.
pub(super) fn inner(n: &mut Node) -> &mut Node {
    match n {
        Node::Not { child } => child.as_mut(),
        other => other,
    }
}

/// The "not" box: wraps the node in a `Not`, or unwraps it.
pub(super) fn toggle_not(n: &mut Node) {
    let taken = std::mem::replace(n, Node::And { children: vec![] });
    *n = match taken {
        Node::Not { child } => *child,
        other => Node::Not { child: Box::new(other) },
    };
}

/// Removes item `i` of a group (nothing when `n` is no group or has no such item).
pub(super) fn remove_item(n: &mut Node, i: usize) {
    if let Node::And { children } | Node::Or { children } = inner(n)
        && i < children.len()
    {
        children.remove(i);
    }
}

/// Appends an item to a group (nothing when `n` is no group).
pub(super) fn push_item(n: &mut Node, item: Node) {
    if let Node::And { children } | Node::Or { children } = inner(n) {
        children.push(item)
    }
}

/// The group's "all of" (AND) / "any of" (OR), keeping its items and its `not`.
pub(super) fn set_match_all(n: &mut Node, all: bool) {
    let g = inner(n);
    let children = match g {
        Node::And { children } | Node::Or { children } => std::mem::take(children),
        _ => vec![],
    };
    *g = if all { Node::And { children } } else { Node::Or { children } };
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::segment_views::Choice;
    use uuid::Uuid;

    fn field(key: &str, field_type: FieldType, is_phi: bool) -> SegmentField {
        SegmentField {
            key: key.into(),
            label: key.to_uppercase(),
            field_type,
            options: vec!["a".into(), "b".into()],
            is_phi,
        }
    }

    fn options() -> BuilderOptions {
        BuilderOptions {
            fields: vec![field("email", FieldType::Text, true), field("visits", FieldType::Number, false)],
            lists: vec![Choice { id: Uuid::from_u128(7), name: "Newsletter".into() }],
            campaigns: vec![],
            event_types: vec!["visit.completed".into()],
        }
    }

    fn empty_options() -> BuilderOptions {
        BuilderOptions { fields: vec![], lists: vec![], campaigns: vec![], event_types: vec![] }
    }

    fn cond(c: Condition) -> Node {
        Node::Condition { condition: c }
    }

    #[test]
    fn every_kind_starts_as_a_condition_of_that_kind() {
        for (code, _) in KINDS {
            assert_eq!(kind_of(&condition_for_kind(code, &options())), *code, "{code}");
        }
        assert_eq!(
            condition_for_kind("event", &options()),
            Condition::Event { event_type: "visit.completed".into(), within_days: Some(30), properties: vec![] }
        );
        assert_eq!(condition_for_kind("in_list", &options()), Condition::InList { list: Uuid::from_u128(7) });
    }

    #[test]
    fn kinds_without_choices_fall_back() {
        let none = empty_options();
        assert_eq!(condition_for_kind("in_list", &none), Condition::Consent { purpose: ConsentPurpose::Marketing });
        assert_eq!(
            condition_for_kind("event", &none),
            Condition::Event { event_type: "appointment.booked".into(), within_days: Some(30), properties: vec![] }
        );
        assert_eq!(
            condition_for_kind("nonsense", &none),
            Condition::Field { field: "email".into(), test: FieldTest::IsNotEmpty }
        );
        assert_eq!(
            blank_condition(&options()),
            cond(Condition::Field { field: "email".into(), test: FieldTest::IsNotEmpty })
        );
    }

    #[test]
    fn every_offered_operator_round_trips() {
        for t in [FieldType::Text, FieldType::OneOf, FieldType::Number, FieldType::Date, FieldType::Boolean] {
            for (code, _) in ops_for(t) {
                assert_eq!(op_of(&make_test(code, "")), *code, "{t:?} {code}");
            }
        }
        for (code, _) in PROPERTY_OPS {
            assert_eq!(op_of(&make_test(code, "")), *code, "{code}");
        }
    }

    #[test]
    fn typed_values_round_trip() {
        for (op, raw) in [
            ("equals", "Smith"),
            ("contains", "mi"),
            ("one_of", "a, b"),
            ("gt", "3.5"),
            ("before", "2024-02-29"),
            ("within", "14"),
            ("anniversary", "7"),
        ] {
            assert_eq!(value_of(&make_test(op, raw)), raw, "{op}");
        }
    }

    #[test]
    fn hostile_values_become_neutral_tests() {
        assert_eq!(make_test("eq", "NaN"), FieldTest::Number { cmp: Cmp::Eq, value: 0.0 });
        assert_eq!(make_test("lt", "inf"), FieldTest::Number { cmp: Cmp::Lt, value: 0.0 });
        assert_eq!(make_test("within", "-3"), FieldTest::DateWithinLastDays { days: 30 });
        assert_eq!(
            make_test("after", "31/02/2024"),
            FieldTest::DateAfter { date: chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() }
        );
        assert_eq!(make_test("one_of", " , ,x,, "), FieldTest::OneOf { values: vec!["x".into()] });
        assert_eq!(make_test("equals", "  padded  "), FieldTest::TextEquals { value: "padded".into() });
        assert_eq!(make_test("<script>", "x"), FieldTest::IsEmpty);
    }

    #[test]
    fn value_inputs_follow_the_operator() {
        assert_eq!(input_type("empty"), None);
        assert_eq!(input_type("yes"), None);
        assert_eq!(input_type("ge"), Some("number"));
        assert_eq!(input_type("anniversary"), Some("number"));
        assert_eq!(input_type("after"), Some("date"));
        assert_eq!(input_type("starts"), Some("text"));
        // A choice field's "is one of" has chips instead of a text box; a text field's does not.
        assert!(uses_chips(FieldType::OneOf, "one_of"));
        assert_eq!(field_value_input(FieldType::OneOf, "one_of"), None);
        assert_eq!(field_value_input(FieldType::Text, "one_of"), Some("text"));
        assert_eq!(field_value_input(FieldType::OneOf, "not_empty"), None);
    }

    #[test]
    fn choosing_a_field_starts_with_its_first_operator() {
        let o = options();
        assert_eq!(test_for_field(&o.fields, "visits"), FieldTest::Number { cmp: Cmp::Eq, value: 0.0 });
        assert_eq!(test_for_field(&o.fields, "email"), FieldTest::TextEquals { value: String::new() });
        assert_eq!(field_type(&o.fields, "gone"), FieldType::Text);
        assert_eq!(field_label(&o.fields[0]), "EMAIL (PHI)");
        assert_eq!(field_label(&o.fields[1]), "VISITS");
    }

    #[test]
    fn chips_tick_and_untick_without_duplicates() {
        let mut v = vec!["a".to_string()];
        toggle_choice(&mut v, "b", true);
        toggle_choice(&mut v, "a", true);
        assert_eq!(v, ["b", "a"]);
        toggle_choice(&mut v, "b", false);
        toggle_choice(&mut v, "zzz", false);
        assert_eq!(v, ["a"]);
    }

    #[test]
    fn days_and_activities_parse_leniently() {
        assert_eq!(parse_days(" 45 "), Some(45));
        assert_eq!(parse_days(""), None);
        assert_eq!(parse_days("-1"), None);
        assert_eq!(parse_days("1e3"), None);
        assert_eq!(activity_of("clicked"), Activity::Clicked);
        assert_eq!(activity_of("bogus"), Activity::Opened);
    }

    fn tree() -> Node {
        // all of: [never opened, not (any of: [consent])]
        Node::And {
            children: vec![
                cond(Condition::NeverOpened),
                Node::Not {
                    child: Box::new(Node::Or {
                        children: vec![cond(Condition::Consent { purpose: ConsentPurpose::Marketing })],
                    }),
                },
            ],
        }
    }

    #[test]
    fn paths_reach_through_not() {
        let mut t = tree();
        assert_eq!(node_at(&mut t, &[]).cloned(), Some(tree()));
        assert_eq!(node_at(&mut t, &[0]).cloned(), Some(cond(Condition::NeverOpened)));
        assert_eq!(
            node_at(&mut t, &[1, 0]).cloned(),
            Some(cond(Condition::Consent { purpose: ConsentPurpose::Marketing }))
        );
        assert!(node_at(&mut t, &[2]).is_none());
        assert!(node_at(&mut t, &[0, 0]).is_none());
    }

    #[test]
    fn tree_edits() {
        let mut t = tree();
        // Negating twice restores the node.
        let n = node_at(&mut t, &[0]).unwrap();
        toggle_not(n);
        assert_eq!(*n, Node::Not { child: Box::new(cond(Condition::NeverOpened)) });
        toggle_not(n);
        assert_eq!(t, tree());
        // Switching a negated group to "all of" keeps its items and its `not`.
        let g = node_at(&mut t, &[1]).unwrap();
        set_match_all(g, true);
        assert_eq!(
            *g,
            Node::Not {
                child: Box::new(Node::And {
                    children: vec![cond(Condition::Consent { purpose: ConsentPurpose::Marketing })]
                })
            }
        );
        // Adding to and removing from a negated group; out-of-range removals do nothing.
        push_item(g, cond(Condition::NeverOpened));
        remove_item(g, 0);
        remove_item(g, 5);
        assert_eq!(*g, Node::Not { child: Box::new(Node::And { children: vec![cond(Condition::NeverOpened)] }) });
        // A condition is no group: nothing to add or remove.
        let mut c = cond(Condition::NeverOpened);
        push_item(&mut c, cond(Condition::NeverOpened));
        remove_item(&mut c, 0);
        assert_eq!(c, cond(Condition::NeverOpened));
        remove_item(&mut t, 1);
        assert_eq!(t, Node::And { children: vec![cond(Condition::NeverOpened)] });
    }
}
