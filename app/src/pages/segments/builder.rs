//! The condition builder's views: groups (all / any, not, add, remove) and one component per
//! kind of condition. The rules behind them (operators, typed values, tree edits) are in `rules`.
//!
//! Value edits change the definition and leave the form as it is (the input keeps its focus);
//! changes of shape (kind, field, operator, adding or removing) also bump `structure`, which
//! rebuilds the form from the definition.

use super::rules::{
    KINDS, PROPERTY_OPS, activity_of, blank_condition, condition_for_kind, field_label, field_type, field_value_input,
    inner, input_type, kind_of, make_test, node_at, op_of, ops_for, parse_days, push_item, remove_item, set_match_all,
    test_for_field, toggle_choice, toggle_not, uses_chips, value_of,
};
use domain::contacts::ConsentPurpose;
use domain::segment_views::BuilderOptions;
use domain::segments::{Activity, Condition, FieldTest, MAX_DEPTH, Node, PropertyTest, SegmentDefinition};
use leptos::prelude::*;
use uuid::Uuid;

/// The condition tree being edited. Also used by the sequence builder's "contact" branch, which
/// edits its condition tree with these same components.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) def: RwSignal<SegmentDefinition>,
    pub(crate) structure: RwSignal<u32>,
    pub(crate) enabled: Signal<bool>,
    pub(crate) options: StoredValue<BuilderOptions>,
}

impl Ctx {
    /// A value edit: the tree changes, the form stays as it is (keeps focus).
    fn edit(&self, path: &[usize], f: impl FnOnce(&mut Node)) {
        self.def.update(|d| {
            if let Some(n) = node_at(&mut d.root, path) {
                f(n)
            }
        });
    }
    /// A structural edit: the form is rebuilt.
    fn restructure(&self, path: &[usize], f: impl FnOnce(&mut Node)) {
        self.edit(path, f);
        self.structure.update(|s| *s += 1);
    }
    /// Removes the item a path points at from its group.
    fn remove(&self, path: &[usize]) {
        let Some((&i, parent)) = path.split_last() else { return };
        self.restructure(parent, |n| remove_item(n, i));
    }
}

/// Where a condition is in the tree, to replace it.
#[derive(Clone)]
struct At {
    ctx: Ctx,
    path: Vec<usize>,
}

impl At {
    /// A value edit (the form stays).
    fn set(&self, c: Condition) {
        self.ctx.edit(&self.path, move |n| *inner(n) = Node::Condition { condition: c })
    }
    /// A change of shape (the form is rebuilt).
    fn reset(&self, c: Condition) {
        self.ctx.restructure(&self.path, move |n| *inner(n) = Node::Condition { condition: c })
    }
}

pub(crate) fn group_view(ctx: Ctx, path: Vec<usize>, depth: usize) -> AnyView {
    let snapshot = ctx.def.with_untracked(|d| {
        let mut root = d.root.clone();
        node_at(&mut root, &path).cloned()
    });
    let Some(node) = snapshot else { return ().into_any() };
    let negated = matches!(node, Node::Not { .. });
    let mut node = node;
    let (is_and, children) = match inner(&mut node) {
        Node::And { children } => (true, children.clone()),
        Node::Or { children } => (false, children.clone()),
        _ => return ().into_any(),
    };
    let is_root = path.is_empty();
    let p_match = path.clone();
    let p_add = path.clone();
    let p_group = path.clone();
    let p_neg = path.clone();
    let p_remove = path.clone();
    let items = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let mut p = path.clone();
            p.push(i);
            let mut c = child.clone();
            let item = match inner(&mut c) {
                Node::Condition { .. } => condition_view(ctx, p),
                _ => group_view(ctx, p, depth + 1),
            };
            // The group's AND / OR, visible between its items.
            let connector = (i > 0).then(|| {
                view! {
                    <div class="connector" data-test="connector">{if is_and { "and" } else { "or" }}</div>
                }
            });
            view! { {connector} {item} }
        })
        .collect_view();
    view! {
        <fieldset class="segment-group" class:nested=!is_root data-test="group">
            <legend>
                {if is_root { "Contacts matching " } else { "A group matching " }}
                <select data-test="group-match" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let all = event_target_value(&ev) == "all";
                        ctx.restructure(&p_match, move |n| set_match_all(n, all));
                    }>
                    <option value="all" selected=is_and>"all of"</option>
                    <option value="any" selected=!is_and>"any of"</option>
                </select>
                " these conditions"
                {(!is_root).then(|| view! {
                    <label class="inline"><input type="checkbox" data-test="group-negate" checked=negated disabled=move || !ctx.enabled.get()
                        on:change=move |_| ctx.restructure(&p_neg, toggle_not)/>" not"</label>
                    <button type="button" class="link" data-test="remove-group" disabled=move || !ctx.enabled.get()
                        on:click=move |_| ctx.remove(&p_remove)>"Remove group"</button>
                })}
            </legend>
            {if children.is_empty() { view! { <p class="muted">{if is_and { "No conditions: every contact matches." } else { "No conditions: no contact matches." }}</p> }.into_any() } else { items.into_any() }}
            <div class="actions">
                <button type="button" data-test="add-condition" disabled=move || !ctx.enabled.get()
                    on:click=move |_| {
                        let blank = ctx.options.with_value(blank_condition);
                        ctx.restructure(&p_add, move |n| push_item(n, blank));
                    }>"Add condition"</button>
                {(depth + 1 < MAX_DEPTH).then(|| view! {
                    <button type="button" data-test="add-group" disabled=move || !ctx.enabled.get()
                        on:click=move |_| {
                            let blank = ctx.options.with_value(blank_condition);
                            ctx.restructure(&p_group, move |n| push_item(n, Node::Or { children: vec![blank] }));
                        }>"Add group"</button>
                })}
            </div>
        </fieldset>
    }
    .into_any()
}

fn condition_view(ctx: Ctx, path: Vec<usize>) -> AnyView {
    let snapshot = ctx.def.with_untracked(|d| {
        let mut root = d.root.clone();
        node_at(&mut root, &path).cloned()
    });
    let Some(mut node) = snapshot else { return ().into_any() };
    let negated = matches!(node, Node::Not { .. });
    let Node::Condition { condition } = inner(&mut node).clone() else { return ().into_any() };
    view! { <ConditionRow at=At { ctx, path } negated=negated condition=condition/> }.into_any()
}

/// One condition: not, its kind, the kind's own inputs, remove.
#[component]
fn ConditionRow(at: At, negated: bool, condition: Condition) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let kind = kind_of(&condition);
    let details = match condition {
        Condition::Field { field, test } => view! { <FieldCondition at=at.clone() field=field test=test/> }.into_any(),
        Condition::InList { list } => view! { <ListCondition at=at.clone() list=list/> }.into_any(),
        Condition::Consent { purpose } => view! { <ConsentCondition at=at.clone() purpose=purpose/> }.into_any(),
        Condition::Engagement { activity, campaign, within_days } => view! {
            <EngagementCondition at=at.clone() activity=activity campaign=campaign within_days=within_days/>
        }
        .into_any(),
        Condition::NeverOpened => view! { <span class="muted">"has never opened any campaign"</span> }.into_any(),
        Condition::Event { event_type, within_days, properties } => view! {
            <EventCondition at=at.clone() event_type=event_type within_days=within_days properties=properties/>
        }
        .into_any(),
    };
    let (at_neg, at_kind) = (at.clone(), at.clone());
    view! {
        <div class="condition" data-test="condition">
            <label class="inline"><input type="checkbox" data-test="condition-negate" checked=negated disabled=move || !enabled.get()
                on:change=move |_| at_neg.ctx.restructure(&at_neg.path, toggle_not)/>" not"</label>
            <select data-test="condition-kind" aria-label="Kind of condition" disabled=move || !enabled.get()
                on:change=move |ev| {
                    let c = at_kind.ctx.options.with_value(|o| condition_for_kind(&event_target_value(&ev), o));
                    at_kind.reset(c);
                }>
                {KINDS.iter().map(|(v, l)| view! { <option value=*v selected=*v == kind>{*l}</option> }).collect_view()}
            </select>
            {details}
            <button type="button" class="link" data-test="remove-condition" disabled=move || !enabled.get()
                on:click=move |_| at.ctx.remove(&at.path)>"Remove"</button>
        </div>
    }
}

/// A contact field: the field, an operator of its type, and the value (typed, or chips to tick
/// for a choice field's "is one of").
#[component]
fn FieldCondition(at: At, field: String, test: FieldTest) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let fields = at.ctx.options.with_value(|o| o.fields.clone());
    let f = fields.iter().find(|x| x.key == field).cloned();
    let ft = field_type(&fields, &field);
    let op = op_of(&test);
    let op_code = RwSignal::new(op.to_string());
    let value = RwSignal::new(value_of(&test));
    let choices =
        f.as_ref().filter(|f| f.field_type == domain::contacts::FieldType::OneOf).map(|f| f.options.join(", "));
    let field_options = fields
        .iter()
        .map(|x| view! { <option value=x.key.clone() selected=x.key == field>{field_label(x)}</option> })
        .collect_view();
    let chips = uses_chips(ft, op).then(|| {
        let picked = match &test {
            FieldTest::OneOf { values } => values.clone(),
            _ => vec![],
        };
        let choices = f.as_ref().map(|f| f.options.clone()).unwrap_or_default();
        view! { <ChoiceChips at=at.clone() field=field.clone() choices=choices picked=picked/> }
    });
    let (at_f, at_o, at_v) = (at.clone(), at.clone(), at);
    let (field_o, field_v) = (field.clone(), field);
    view! {
        <select data-test="condition-field" aria-label="Field" disabled=move || !enabled.get()
            on:change=move |ev| {
                let key = event_target_value(&ev);
                let test = test_for_field(&fields, &key);
                at_f.reset(Condition::Field { field: key, test });
            }>
            {field_options}
        </select>
        <select data-test="condition-op" aria-label="Test" disabled=move || !enabled.get()
            on:change=move |ev| {
                let o = event_target_value(&ev);
                at_o.reset(Condition::Field { field: field_o.clone(), test: make_test(&o, &value.get_untracked()) });
            }>
            {ops_for(ft).iter().map(|(code, label)| view! { <option value=*code selected=*code == op>{*label}</option> }).collect_view()}
        </select>
        {chips}
        {field_value_input(ft, op).map(|ty| view! {
            <input type=ty data-test="condition-value" aria-label="Value" maxlength="200"
                placeholder=choices.unwrap_or_default()
                prop:value=move || value.get()
                disabled=move || !enabled.get()
                on:input=move |ev| {
                    let v = event_target_value(&ev);
                    value.set(v.clone());
                    at_v.set(Condition::Field { field: field_v.clone(), test: make_test(&op_code.get_untracked(), &v) });
                }/>
        })}
    }
}

/// A choice field's "is one of": the field's own options as chips to tick.
#[component]
fn ChoiceChips(at: At, field: String, choices: Vec<String>, picked: Vec<String>) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let picked = RwSignal::new(picked);
    view! {
        <div class="chips" role="group" aria-label="Values" data-test="condition-values">
            {choices.into_iter().map(|o| {
                let (at, field, o2, text) = (at.clone(), field.clone(), o.clone(), o.clone());
                view! {
                    <label class="chip" class:picked=move || picked.with(|p| p.contains(&o2))>
                        <input type="checkbox" data-test="condition-chip" prop:checked=picked.with_untracked(|p| p.contains(&o))
                            disabled=move || !enabled.get()
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                picked.update(|p| toggle_choice(p, &o, on));
                                at.set(Condition::Field { field: field.clone(), test: FieldTest::OneOf { values: picked.get_untracked() } });
                            }/>
                        {text}
                    </label>
                }
            }).collect_view()}
        </div>
    }
}

/// Subscribed member of a list.
#[component]
fn ListCondition(at: At, list: Uuid) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let lists = at.ctx.options.with_value(|o| o.lists.clone());
    view! {
        <select data-test="condition-list" aria-label="List" disabled=move || !enabled.get()
            on:change=move |ev| if let Ok(id) = Uuid::parse_str(&event_target_value(&ev)) { at.set(Condition::InList { list: id }) }>
            {lists.iter().map(|l| view! { <option value=l.id.to_string() selected=l.id == list>{l.name.clone()}</option> }).collect_view()}
        </select>
    }
}

/// Consents to a purpose.
#[component]
fn ConsentCondition(at: At, purpose: ConsentPurpose) -> impl IntoView {
    let enabled = at.ctx.enabled;
    view! {
        <select data-test="condition-purpose" aria-label="Purpose" disabled=move || !enabled.get()
            on:change=move |ev| if let Some(p) = ConsentPurpose::parse(&event_target_value(&ev)) { at.set(Condition::Consent { purpose: p }) }>
            {ConsentPurpose::ALL.iter().map(|p| view! { <option value=p.as_str() selected=*p == purpose>{p.label()}</option> }).collect_view()}
        </select>
    }
}

/// Received / opened / clicked a campaign (or any), within the last N days (or ever).
#[component]
fn EngagementCondition(at: At, activity: Activity, campaign: Option<Uuid>, within_days: Option<u32>) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let campaigns = at.ctx.options.with_value(|o| o.campaigns.clone());
    let state = RwSignal::new((activity, campaign, within_days));
    let emit = move || {
        let (activity, campaign, within_days) = state.get_untracked();
        at.set(Condition::Engagement { activity, campaign, within_days });
    };
    let (e1, e2, e3) = (emit.clone(), emit.clone(), emit);
    view! {
        <select data-test="condition-activity" aria-label="Activity" disabled=move || !enabled.get()
            on:change=move |ev| {
                let a = activity_of(&event_target_value(&ev));
                state.update(|s| s.0 = a);
                e1();
            }>
            {Activity::ALL.iter().map(|a| view! { <option value=a.as_str() selected=*a == activity>{a.label()}</option> }).collect_view()}
        </select>
        <select data-test="condition-campaign" aria-label="Campaign" disabled=move || !enabled.get()
            on:change=move |ev| {
                let c = Uuid::parse_str(&event_target_value(&ev)).ok();
                state.update(|s| s.1 = c);
                e2();
            }>
            <option value="" selected=campaign.is_none()>"any campaign"</option>
            {campaigns.iter().map(|c| view! { <option value=c.id.to_string() selected=Some(c.id) == campaign>{c.name.clone()}</option> }).collect_view()}
        </select>
        " within the last "
        <input type="number" min="0" data-test="condition-value" aria-label="Days" prop:value=within_days.map(|d| d.to_string()).unwrap_or_default()
            disabled=move || !enabled.get()
            on:input=move |ev| {
                let d = parse_days(&event_target_value(&ev));
                state.update(|s| s.2 = d);
                e3();
            }/>
        " days (empty: ever)"
    }
}

/// A patient-event condition being edited: (type, days, property tests).
type EventDraft = RwSignal<(String, Option<u32>, Vec<PropertyTest>)>;

impl At {
    /// The edited event condition, as a value edit.
    fn set_event(&self, draft: EventDraft) {
        let (event_type, within_days, properties) = draft.get_untracked();
        self.set(Condition::Event { event_type, within_days, properties });
    }
    /// The edited event condition, as a change of shape (a property test added, removed, or
    /// given another operator).
    fn reset_event(&self, draft: EventDraft) {
        let (event_type, within_days, properties) = draft.get_untracked();
        self.reset(Condition::Event { event_type, within_days, properties });
    }
}

/// Had a patient event of a type, within N days, with tests on its properties.
#[component]
fn EventCondition(
    at: At,
    event_type: String,
    within_days: Option<u32>,
    properties: Vec<PropertyTest>,
) -> impl IntoView {
    let enabled = at.ctx.enabled;
    let event_types = at.ctx.options.with_value(|o| o.event_types.clone());
    let draft: EventDraft = RwSignal::new((event_type.clone(), within_days, properties.clone()));
    let rows = properties
        .into_iter()
        .enumerate()
        .map(|(i, p)| view! { <PropertyRow at=at.clone() draft=draft index=i property=p/> })
        .collect_view();
    let (at_t, at_d, at_add) = (at.clone(), at.clone(), at);
    view! {
        <input data-test="condition-event" aria-label="Event type" list="event-types" maxlength="64" prop:value=event_type
            disabled=move || !enabled.get()
            on:input=move |ev| {
                let t = event_target_value(&ev).trim().to_string();
                draft.update(|s| s.0 = t);
                at_t.set_event(draft);
            }/>
        <datalist id="event-types">{event_types.iter().map(|t| view! { <option value=t.clone()></option> }).collect_view()}</datalist>
        " within the last "
        <input type="number" min="0" data-test="condition-value" aria-label="Days" prop:value=within_days.map(|d| d.to_string()).unwrap_or_default()
            disabled=move || !enabled.get()
            on:input=move |ev| {
                let d = parse_days(&event_target_value(&ev));
                draft.update(|s| s.1 = d);
                at_d.set_event(draft);
            }/>
        " days"
        {rows}
        <button type="button" class="link" data-test="add-property" disabled=move || !enabled.get()
            on:click=move |_| {
                draft.update(|s| s.2.push(PropertyTest { key: String::new(), test: FieldTest::IsNotEmpty }));
                at_add.reset_event(draft);
            }>"Add a property condition"</button>
        <span class="hint">" (event properties are encrypted: these conditions are evaluated after decryption)"</span>
    }
}

/// One test on an event property: key, operator, value, remove.
#[component]
fn PropertyRow(at: At, draft: EventDraft, index: usize, property: PropertyTest) -> impl IntoView {
    let i = index;
    let enabled = at.ctx.enabled;
    let op = op_of(&property.test);
    let op_code = RwSignal::new(op.to_string());
    let value = RwSignal::new(value_of(&property.test));
    let (at_k, at_o, at_v, at_r) = (at.clone(), at.clone(), at.clone(), at);
    view! {
        <div class="property-test" data-test="property-test">
            " where property "
            <input data-test="property-key" aria-label="Property" maxlength="64" prop:value=property.key
                disabled=move || !enabled.get()
                on:input=move |ev| {
                    let k = event_target_value(&ev).trim().to_string();
                    draft.update(|s| if let Some(p) = s.2.get_mut(i) { p.key = k });
                    at_k.set_event(draft);
                }/>
            <select data-test="property-op" aria-label="Operator" disabled=move || !enabled.get()
                on:change=move |ev| {
                    let o = event_target_value(&ev);
                    let t = make_test(&o, &value.get_untracked());
                    draft.update(|s| if let Some(p) = s.2.get_mut(i) { p.test = t });
                    at_o.reset_event(draft);
                }>
                {PROPERTY_OPS.iter().map(|(c, l)| view! { <option value=*c selected=*c == op>{*l}</option> }).collect_view()}
            </select>
            {input_type(op).map(|k| view! {
                <input type=k data-test="property-value" aria-label="Value" prop:value=value.get_untracked()
                    disabled=move || !enabled.get()
                    on:input=move |ev| {
                        let v = event_target_value(&ev);
                        value.set(v.clone());
                        let t = make_test(&op_code.get_untracked(), &v);
                        draft.update(|s| if let Some(p) = s.2.get_mut(i) { p.test = t });
                        at_v.set_event(draft);
                    }/>
            })}
            <button type="button" class="link" data-test="remove-property" disabled=move || !enabled.get()
                on:click=move |_| {
                    draft.update(|s| if i < s.2.len() { s.2.remove(i); });
                    at_r.reset_event(draft);
                }>"Remove"</button>
        </div>
    }
}
