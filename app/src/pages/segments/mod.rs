//! Segments: the list and the condition builder (groups, conditions typed to each field, a
//! debounced live count, an audited preview of the first matches, save / duplicate / delete and
//! "save as static list"). People who may not read contacts (analysts) get a read-only page
//! instead: the saved definition in words (values of PHI conditions arrive masked from the
//! service) and the saved segment's count with its disclosure control — no builder inputs.
//!
//! Hydration: the page has one outer `Transition` (the load); everything loaded later (counts,
//! previews) goes through actions dispatched by effects, which run only in the browser.

use crate::api_segments::{
    count_saved_segment, count_segment, create_segment, delete_segment, duplicate_segment, list_segments, open_segment,
    preview_segment, segment_options, segment_to_list, update_segment,
};
use crate::components::{ErrorMessage, Guard, format_time, hard_navigate, use_hydrated, use_me};
use crate::components::{NotFoundPanel, NotFoundStatus};
use crate::error::AppError;
use domain::Permission;
use domain::contacts::{ConsentPurpose, FieldType, parse_date};
use domain::segment_views::{BuilderOptions, SegmentCount, SegmentView, describe_condition};
use domain::segments::{Activity, Cmp, Condition, FieldTest, MAX_DEPTH, Node, SegmentDefinition, SegmentField};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

const COUNT_DEBOUNCE_MS: u64 = 400;

#[component]
pub fn SegmentsPage() -> impl IntoView {
    view! {
        <Title text="Segments · Hermetic"/>
        <Guard permission=Permission::SegmentsCount>
            <SegmentList/>
        </Guard>
    }
}

#[component]
fn SegmentList() -> impl IntoView {
    let can_write = use_me().is_some_and(|m| m.can(Permission::SegmentsWrite));
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let segments = Resource::new(move || version.get(), |_| list_segments());
    let error = RwSignal::new(None::<AppError>);
    let confirm = RwSignal::new(None::<Uuid>);
    let duplicate = Action::new(|id: &Uuid| duplicate_segment(*id));
    let delete = Action::new(|id: &Uuid| delete_segment(*id));
    Effect::new(move || {
        if let Some(r) = duplicate.value().get() {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move || {
        if let Some(r) = delete.value().get() {
            error.set(r.err());
            confirm.set(None);
            version.update(|v| *v += 1);
        }
    });
    view! {
        <section class="panel">
            <div class="panel-head">
                <h1>"Segments"</h1>
                {can_write.then(|| view! { <a class="button primary" href="/segments/new" data-test="new-segment">"New segment"</a> })}
            </div>
            <p class="hint">"Segments are evaluated when they are used, so they always reflect today's contacts."</p>
            <ErrorMessage error=error/>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match segments.await {
                        Ok(list) if list.is_empty() => view! { <p class="muted">"No segments yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table>
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Conditions"</th><th scope="col">"PHI"</th><th scope="col">"Updated"</th><th scope="col"></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|s| {
                                        let id = s.id;
                                        view! {
                                            <tr data-test="segment-row">
                                                <td><a href=format!("/segments/{id}")>{s.name.clone()}</a></td>
                                                <td>{s.conditions}</td>
                                                <td>{if s.uses_phi { view! { <span class="badge phi">"PHI conditions"</span> }.into_any() } else { "—".into_any() }}</td>
                                                <td>{format_time(s.updated_at)}</td>
                                                <td>{can_write.then(|| view! {
                                                    <button type="button" data-test="duplicate-segment" disabled=move || !hydrated.get()
                                                        on:click=move |_| { duplicate.dispatch(id); }>"Duplicate"</button>
                                                    {move || if confirm.get() == Some(id) {
                                                        view! { <button type="button" class="danger" data-test="confirm-delete" on:click=move |_| { delete.dispatch(id); }>"Really delete"</button> }.into_any()
                                                    } else {
                                                        view! { <button type="button" class="danger" data-test="delete-segment" disabled=move || !hydrated.get()
                                                            on:click=move |_| confirm.set(Some(id))>"Delete"</button> }.into_any()
                                                    }}
                                                })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
pub fn SegmentEditorPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    // Loaded in the browser after hydration (the definition is not round-tripped through the
    // server-rendered page), so the server and the client render the same "Loading…" first.
    let load = Action::new(move |id: &Option<Uuid>| {
        let id = *id;
        async move {
            let options = segment_options().await?;
            let seg = match id {
                Some(id) => Some(open_segment(id).await?),
                None => None,
            };
            Ok::<_, AppError>((options, seg))
        }
    });
    Effect::new(move || {
        load.dispatch(id());
    });
    // Creating needs the right to write segments; opening one only to count.
    let raw_id = params.with_untracked(|p| p.get("id"));
    let creating = raw_id.is_none();
    let bad_id = raw_id.as_deref().is_some_and(|s| Uuid::parse_str(s).is_err());
    let permission = if creating { Permission::SegmentsWrite } else { Permission::SegmentsCount };
    // Without access to contacts: the saved segment read only (the service refuses ad-hoc counts).
    let restricted = !use_me().is_some_and(|m| m.can(Permission::ContactsRead));
    view! {
        <Title text="Segment · Hermetic"/>
        <Guard permission=permission>
            // Unknown ids answer 404 from the server render too (the segment loads in the browser).
            <NotFoundStatus id=raw_id.clone() exists=|id| async move { open_segment(id).await.map(|_| ()) }/>
            {move || match load.value().get() {
                _ if bad_id => view! { <NotFoundPanel back_href="/segments" back_label="All segments"/> }.into_any(),
                None => view! { <section class="panel"><p>"Loading…"</p></section> }.into_any(),
                Some(Ok((options, Some(seg)))) if restricted => view! { <ReadOnly options=options seg=seg/> }.into_any(),
                Some(Ok((options, seg))) => view! { <Editor options=options seg=seg/> }.into_any(),
                Some(Err(e)) => crate::components::load_error(e, "/segments", "All segments"),
            }}
        </Guard>
    }
}

/// Operators offered for a field type, as (code, label).
fn ops_for(t: FieldType) -> &'static [(&'static str, &'static str)] {
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

fn op_of(t: &FieldTest) -> &'static str {
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
fn value_of(t: &FieldTest) -> String {
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
fn make_test(op: &str, raw: &str) -> FieldTest {
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

/// Operators for patient-event properties (values can be text, numbers, dates or booleans).
const PROPERTY_OPS: &[(&str, &str)] = &[
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

fn input_type(op: &str) -> Option<&'static str> {
    match op {
        "empty" | "not_empty" | "yes" | "no" => None,
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "within" | "anniversary" => Some("number"),
        "before" | "after" => Some("date"),
        _ => Some("text"),
    }
}

/// The node a path points at: indexes into group children (a `Not` wrapper counts as the item).
fn node_at<'a>(root: &'a mut Node, path: &[usize]) -> Option<&'a mut Node> {
    let mut n = root;
    for &i in path {
        let group = match n {
            Node::Not { child } => child.as_mut(),
            other => other,
        };
        n = match group {
            Node::And { children } | Node::Or { children } => children.get_mut(i)?,
            _ => return None,
        };
    }
    Some(n)
}

/// The node behind an optional `Not`.
fn inner(n: &mut Node) -> &mut Node {
    match n {
        Node::Not { child } => child.as_mut(),
        other => other,
    }
}

fn blank_condition(options: &BuilderOptions) -> Node {
    let field = options.fields.first().map(|f| f.key.clone()).unwrap_or_else(|| "email".into());
    Node::Condition { condition: Condition::Field { field, test: FieldTest::IsNotEmpty } }
}

#[derive(Clone, Copy)]
struct Ctx {
    def: RwSignal<SegmentDefinition>,
    structure: RwSignal<u32>,
    enabled: Signal<bool>,
    options: StoredValue<BuilderOptions>,
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
}

fn group_view(ctx: Ctx, path: Vec<usize>, depth: usize) -> AnyView {
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
    let remove_group = move |_| {
        let mut parent = p_remove.clone();
        let Some(i) = parent.pop() else { return };
        ctx.restructure(&parent, |n| {
            if let Node::And { children } | Node::Or { children } = inner(n)
                && i < children.len()
            {
                children.remove(i);
            }
        });
    };
    view! {
        <fieldset class="segment-group" class:nested=!is_root data-test="group">
            <legend>
                {if is_root { "Contacts matching " } else { "A group matching " }}
                <select data-test="group-match" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let and = event_target_value(&ev) == "all";
                        ctx.restructure(&p_match, move |n| {
                            let g = inner(n);
                            let children = match g { Node::And { children } | Node::Or { children } => std::mem::take(children), _ => vec![] };
                            *g = if and { Node::And { children } } else { Node::Or { children } };
                        });
                    }>
                    <option value="all" selected=is_and>"all of"</option>
                    <option value="any" selected=!is_and>"any of"</option>
                </select>
                " these conditions"
                {(!is_root).then(|| view! {
                    <label class="inline"><input type="checkbox" data-test="group-negate" checked=negated disabled=move || !ctx.enabled.get()
                        on:change=move |_| ctx.restructure(&p_neg, |n| {
                            let taken = std::mem::replace(n, Node::And { children: vec![] });
                            *n = match taken { Node::Not { child } => *child, other => Node::Not { child: Box::new(other) } };
                        })/>" not"</label>
                    <button type="button" class="link" data-test="remove-group" disabled=move || !ctx.enabled.get() on:click=remove_group>"Remove group"</button>
                })}
            </legend>
            {if children.is_empty() { view! { <p class="muted">{if is_and { "No conditions: every contact matches." } else { "No conditions: no contact matches." }}</p> }.into_any() } else { items.into_any() }}
            <div class="actions">
                <button type="button" data-test="add-condition" disabled=move || !ctx.enabled.get()
                    on:click=move |_| {
                        let blank = ctx.options.with_value(blank_condition);
                        ctx.restructure(&p_add, move |n| if let Node::And { children } | Node::Or { children } = inner(n) { children.push(blank) });
                    }>"Add condition"</button>
                {(depth + 1 < MAX_DEPTH).then(|| view! {
                    <button type="button" data-test="add-group" disabled=move || !ctx.enabled.get()
                        on:click=move |_| {
                            let blank = ctx.options.with_value(blank_condition);
                            ctx.restructure(&p_group, move |n| if let Node::And { children } | Node::Or { children } = inner(n) {
                                children.push(Node::Or { children: vec![blank] })
                            });
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
    let options = ctx.options.get_value();
    let kind = match &condition {
        Condition::Field { .. } => "field",
        Condition::InList { .. } => "in_list",
        Condition::Consent { .. } => "consent",
        Condition::Engagement { .. } => "engagement",
        Condition::NeverOpened => "never_opened",
        Condition::Event { .. } => "event",
    };
    let set = {
        let path = path.clone();
        move |c: Condition| ctx.edit(&path, move |n| *inner(n) = Node::Condition { condition: c })
    };
    let reset = {
        let path = path.clone();
        move |c: Condition| ctx.restructure(&path, move |n| *inner(n) = Node::Condition { condition: c })
    };
    let opts_for_kind = options.clone();
    let on_kind = {
        let reset = reset.clone();
        move |ev: leptos::ev::Event| {
            let c = match event_target_value(&ev).as_str() {
                "in_list" => match opts_for_kind.lists.first() {
                    Some(l) => Condition::InList { list: l.id },
                    None => Condition::Consent { purpose: ConsentPurpose::Marketing },
                },
                "consent" => Condition::Consent { purpose: ConsentPurpose::Marketing },
                "engagement" => {
                    Condition::Engagement { activity: Activity::Opened, campaign: None, within_days: Some(90) }
                }
                "never_opened" => Condition::NeverOpened,
                "event" => Condition::Event {
                    event_type: opts_for_kind
                        .event_types
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "appointment.booked".into()),
                    within_days: Some(30),
                    properties: vec![],
                },
                _ => match blank_condition(&opts_for_kind) {
                    Node::Condition { condition } => condition,
                    _ => Condition::NeverOpened,
                },
            };
            reset(c);
        }
    };
    let details = match condition.clone() {
        Condition::Field { field, test } => {
            let f: Option<SegmentField> = options.fields.iter().find(|x| x.key == field).cloned();
            let ft = f.as_ref().map(|f| f.field_type).unwrap_or(FieldType::Text);
            let op = op_of(&test);
            let (reset_f, reset_o, set_v) = (reset.clone(), reset.clone(), set.clone());
            let field_for_op = field.clone();
            let field_for_value = field.clone();
            let op_code = RwSignal::new(op.to_string());
            let value = RwSignal::new(value_of(&test));
            let choices = f.as_ref().filter(|f| f.field_type == FieldType::OneOf).map(|f| f.options.join(", "));
            let fields_list = options.fields.clone();
            view! {
                <select data-test="condition-field" aria-label="Field" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let key = event_target_value(&ev);
                        let t = fields_list.iter().find(|x| x.key == key).map(|x| x.field_type).unwrap_or(FieldType::Text);
                        let first = ops_for(t).first().map(|(c, _)| *c).unwrap_or("empty");
                        reset_f(Condition::Field { field: key, test: make_test(first, "") });
                    }>
                    {options.fields.iter().map(|x| view! {
                        <option value=x.key.clone() selected=x.key == field>{if x.is_phi { format!("{} (PHI)", x.label) } else { x.label.clone() }}</option>
                    }).collect_view()}
                </select>
                <select data-test="condition-op" aria-label="Test" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let o = event_target_value(&ev);
                        reset_o(Condition::Field { field: field_for_op.clone(), test: make_test(&o, &value.get_untracked()) });
                    }>
                    {ops_for(ft).iter().map(|(code, label)| view! { <option value=*code selected=*code == op>{*label}</option> }).collect_view()}
                </select>
                {(ft == FieldType::OneOf && op == "one_of").then(|| {
                    // A choice field's "is one of": the field's own options as chips to tick.
                    let picked = RwSignal::new(match &test { FieldTest::OneOf { values } => values.clone(), _ => vec![] });
                    let field_for_chips = field.clone();
                    let set_c = set.clone();
                    view! {
                        <div class="chips" role="group" aria-label="Values" data-test="condition-values">
                            {f.as_ref().map(|f| f.options.clone()).unwrap_or_default().into_iter().map(|o| {
                                let (field, set_c, o2, text) = (field_for_chips.clone(), set_c.clone(), o.clone(), o.clone());
                                view! {
                                    <label class="chip" class:picked=move || picked.with(|p| p.contains(&o2))>
                                        <input type="checkbox" data-test="condition-chip" prop:checked=picked.with_untracked(|p| p.contains(&o))
                                            disabled=move || !ctx.enabled.get()
                                            on:change=move |ev| {
                                                let on = event_target_checked(&ev);
                                                picked.update(|p| { p.retain(|x| x != &o); if on { p.push(o.clone()); } });
                                                set_c(Condition::Field { field: field.clone(), test: FieldTest::OneOf { values: picked.get_untracked() } });
                                            }/>
                                        {text}
                                    </label>
                                }
                            }).collect_view()}
                        </div>
                    }
                })}
                {input_type(op).filter(|_| !(ft == FieldType::OneOf && op == "one_of")).map(|ty| view! {
                    <input type=ty data-test="condition-value" aria-label="Value" maxlength="200"
                        placeholder=choices.clone().unwrap_or_default()
                        prop:value=move || value.get()
                        disabled=move || !ctx.enabled.get()
                        on:input=move |ev| {
                            let v = event_target_value(&ev);
                            value.set(v.clone());
                            set_v(Condition::Field { field: field_for_value.clone(), test: make_test(&op_code.get_untracked(), &v) });
                        }/>
                })}
            }
            .into_any()
        }
        Condition::InList { list } => {
            let set = set.clone();
            view! {
                <select data-test="condition-list" aria-label="List" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| if let Ok(id) = Uuid::parse_str(&event_target_value(&ev)) { set(Condition::InList { list: id }) }>
                    {options.lists.iter().map(|l| view! { <option value=l.id.to_string() selected=l.id == list>{l.name.clone()}</option> }).collect_view()}
                </select>
            }
            .into_any()
        }
        Condition::Consent { purpose } => {
            let set = set.clone();
            view! {
                <select data-test="condition-purpose" aria-label="Purpose" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| if let Some(p) = ConsentPurpose::parse(&event_target_value(&ev)) { set(Condition::Consent { purpose: p }) }>
                    {ConsentPurpose::ALL.iter().map(|p| view! { <option value=p.as_str() selected=*p == purpose>{p.label()}</option> }).collect_view()}
                </select>
            }
            .into_any()
        }
        Condition::Engagement { activity, campaign, within_days } => {
            let state = RwSignal::new((activity, campaign, within_days));
            let emit = {
                let set = set.clone();
                move || {
                    let (activity, campaign, within_days) = state.get_untracked();
                    set(Condition::Engagement { activity, campaign, within_days });
                }
            };
            let (e1, e2, e3) = (emit.clone(), emit.clone(), emit);
            view! {
                <select data-test="condition-activity" aria-label="Activity" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let a = Activity::ALL.into_iter().find(|a| a.as_str() == event_target_value(&ev)).unwrap_or(Activity::Opened);
                        state.update(|s| s.0 = a);
                        e1();
                    }>
                    {Activity::ALL.iter().map(|a| view! { <option value=a.as_str() selected=*a == activity>{a.label()}</option> }).collect_view()}
                </select>
                <select data-test="condition-campaign" aria-label="Campaign" disabled=move || !ctx.enabled.get()
                    on:change=move |ev| {
                        let c = Uuid::parse_str(&event_target_value(&ev)).ok();
                        state.update(|s| s.1 = c);
                        e2();
                    }>
                    <option value="" selected=campaign.is_none()>"any campaign"</option>
                    {options.campaigns.iter().map(|c| view! { <option value=c.id.to_string() selected=Some(c.id) == campaign>{c.name.clone()}</option> }).collect_view()}
                </select>
                " within the last "
                <input type="number" min="0" data-test="condition-value" aria-label="Days" prop:value=within_days.map(|d| d.to_string()).unwrap_or_default()
                    disabled=move || !ctx.enabled.get()
                    on:input=move |ev| {
                        let d = event_target_value(&ev).trim().parse::<u32>().ok();
                        state.update(|s| s.2 = d);
                        e3();
                    }/>
                " days (empty: ever)"
            }
            .into_any()
        }
        Condition::NeverOpened => view! { <span class="muted">"has never opened any campaign"</span> }.into_any(),
        Condition::Event { event_type, within_days, properties } => {
            // (type, days, property tests): value edits keep the form, adding or removing a
            // property test or changing its operator rebuilds it.
            let state = RwSignal::new((event_type.clone(), within_days, properties.clone()));
            let emit = {
                let set = set.clone();
                move || {
                    let (event_type, within_days, properties) = state.get_untracked();
                    set(Condition::Event { event_type, within_days, properties });
                }
            };
            let rebuild = {
                let reset = reset.clone();
                move || {
                    let (event_type, within_days, properties) = state.get_untracked();
                    reset(Condition::Event { event_type, within_days, properties });
                }
            };
            let (e1, e2) = (emit.clone(), emit.clone());
            let add = rebuild.clone();
            let rows = properties
                .iter()
                .enumerate()
                .map(|(i, pt)| {
                    let op = op_of(&pt.test).to_string();
                    let op_code = RwSignal::new(op.clone());
                    let value = RwSignal::new(value_of(&pt.test));
                    let (ek, ev_) = (emit.clone(), emit.clone());
                    let (ro, rr) = (rebuild.clone(), rebuild.clone());
                    let kind = input_type(&op);
                    view! {
                        <div class="property-test" data-test="property-test">
                            " where property "
                            <input data-test="property-key" aria-label="Property" maxlength="64" prop:value=pt.key.clone()
                                disabled=move || !ctx.enabled.get()
                                on:input=move |ev| {
                                    let k = event_target_value(&ev).trim().to_string();
                                    state.update(|s| if let Some(p) = s.2.get_mut(i) { p.key = k });
                                    ek();
                                }/>
                            <select data-test="property-op" aria-label="Operator" disabled=move || !ctx.enabled.get()
                                on:change=move |ev| {
                                    let o = event_target_value(&ev);
                                    let t = make_test(&o, &value.get_untracked());
                                    state.update(|s| if let Some(p) = s.2.get_mut(i) { p.test = t });
                                    ro();
                                }>
                                {PROPERTY_OPS.iter().map(|(c, l)| view! { <option value=*c selected=*c == op>{*l}</option> }).collect_view()}
                            </select>
                            {kind.map(|k| view! {
                                <input type=k data-test="property-value" aria-label="Value" prop:value=value.get_untracked()
                                    disabled=move || !ctx.enabled.get()
                                    on:input=move |ev| {
                                        let v = event_target_value(&ev);
                                        value.set(v.clone());
                                        let t = make_test(&op_code.get_untracked(), &v);
                                        state.update(|s| if let Some(p) = s.2.get_mut(i) { p.test = t });
                                        ev_();
                                    }/>
                            })}
                            <button type="button" class="link" data-test="remove-property" disabled=move || !ctx.enabled.get()
                                on:click=move |_| { state.update(|s| if i < s.2.len() { s.2.remove(i); }); rr(); }>"Remove"</button>
                        </div>
                    }
                })
                .collect_view();
            view! {
                <input data-test="condition-event" aria-label="Event type" list="event-types" maxlength="64" prop:value=event_type.clone()
                    disabled=move || !ctx.enabled.get()
                    on:input=move |ev| {
                        let t = event_target_value(&ev).trim().to_string();
                        state.update(|s| s.0 = t);
                        e1();
                    }/>
                <datalist id="event-types">{options.event_types.iter().map(|t| view! { <option value=t.clone()></option> }).collect_view()}</datalist>
                " within the last "
                <input type="number" min="0" data-test="condition-value" aria-label="Days" prop:value=within_days.map(|d| d.to_string()).unwrap_or_default()
                    disabled=move || !ctx.enabled.get()
                    on:input=move |ev| {
                        let d = event_target_value(&ev).trim().parse::<u32>().ok();
                        state.update(|s| s.1 = d);
                        e2();
                    }/>
                " days"
                {rows}
                <button type="button" class="link" data-test="add-property" disabled=move || !ctx.enabled.get()
                    on:click=move |_| {
                        state.update(|s| s.2.push(domain::segments::PropertyTest { key: String::new(), test: FieldTest::IsNotEmpty }));
                        add();
                    }>"Add a property condition"</button>
                <span class="hint">" (event properties are encrypted: these conditions are evaluated after decryption)"</span>
            }
            .into_any()
        }
    };
    let p_neg = path.clone();
    let p_remove = path.clone();
    view! {
        <div class="condition" data-test="condition">
            <label class="inline"><input type="checkbox" data-test="condition-negate" checked=negated disabled=move || !ctx.enabled.get()
                on:change=move |_| ctx.restructure(&p_neg, |n| {
                    let taken = std::mem::replace(n, Node::And { children: vec![] });
                    *n = match taken { Node::Not { child } => *child, other => Node::Not { child: Box::new(other) } };
                })/>" not"</label>
            <select data-test="condition-kind" aria-label="Kind of condition" disabled=move || !ctx.enabled.get() on:change=on_kind>
                {[("field", "Field"), ("in_list", "In list"), ("consent", "Consents to"), ("engagement", "Engagement"), ("never_opened", "Never opened"), ("event", "Patient event")]
                    .into_iter().map(|(v, l)| view! { <option value=v selected=v == kind>{l}</option> }).collect_view()}
            </select>
            {details}
            <button type="button" class="link" data-test="remove-condition" disabled=move || !ctx.enabled.get()
                on:click=move |_| {
                    let mut parent = p_remove.clone();
                    let Some(i) = parent.pop() else { return };
                    ctx.restructure(&parent, |n| if let Node::And { children } | Node::Or { children } = inner(n) && i < children.len() { children.remove(i); });
                }>"Remove"</button>
        </div>
    }
    .into_any()
}

fn count_view(c: &SegmentCount) -> impl IntoView + use<> {
    let sentence = c.sentence();
    view! { <span>{sentence} {c.uses_phi.then_some(" · evaluated on encrypted fields")}</span> }
}

/// A node of a saved definition in words (read-only page).
fn node_text(node: &Node, options: &BuilderOptions) -> AnyView {
    match node {
        Node::Condition { condition } => {
            view! { <span data-test="condition-text">{describe_condition(condition, options)}</span> }.into_any()
        }
        Node::Not { child } => view! { <span>"not ( " {node_text(child, options)} " )"</span> }.into_any(),
        Node::And { children } | Node::Or { children } => {
            let all = matches!(node, Node::And { .. });
            if children.is_empty() {
                return view! { <span class="muted">{if all { "every contact" } else { "no contact" }}</span> }
                    .into_any();
            }
            view! {
                <div class="segment-group">
                    <span>{if all { "all of:" } else { "any of:" }}</span>
                    <ul>{children.iter().map(|c| view! { <li>{node_text(c, options)}</li> }).collect_view()}</ul>
                </div>
            }
            .into_any()
        }
    }
}

/// A saved segment for someone who may not read contacts: the definition in words and the saved
/// segment's count, as the service's disclosure control lets them see it.
#[component]
fn ReadOnly(options: BuilderOptions, seg: SegmentView) -> impl IntoView {
    let id = seg.id;
    let count = Action::new(move |_: &()| count_saved_segment(id));
    Effect::new(move || {
        count.dispatch(());
    });
    let count_text = move || -> AnyView {
        match count.value().get() {
            None => view! { <span>"Counting…"</span> }.into_any(),
            Some(Ok(c)) => count_view(&c).into_any(),
            Some(Err(e)) => {
                view! { <span class="alert error" role="alert" data-test="count-error">{e.message}</span> }.into_any()
            }
        }
    };
    view! {
        <section class="panel">
            <p class="muted"><a href="/segments">"← Segments"</a></p>
            <h1 data-test="segment-title">{seg.name.clone()}</h1>
            <p class="hint" data-test="read-only">
                "Read only. Values of conditions on personal health information are hidden, counts below 11 are shown as “fewer than 11” and other counts are rounded to the nearest 5."
            </p>
            <div class="segment-tree" data-test="segment-description">
                <span>"Contacts matching "</span>
                {node_text(&seg.definition.root, &options)}
            </div>
            <p class="count" data-test="live-count" aria-live="polite">{count_text}</p>
        </section>
    }
}

#[component]
fn Editor(options: BuilderOptions, seg: Option<SegmentView>) -> impl IntoView {
    let hydrated = use_hydrated();
    let me = use_me();
    let can_write = me.as_ref().is_some_and(|m| m.can(Permission::SegmentsWrite));
    let can_list = me.as_ref().is_some_and(|m| m.can(Permission::ContactsWrite)) && can_write;
    let id = seg.as_ref().map(|s| s.id);
    let name = RwSignal::new(seg.as_ref().map(|s| s.name.clone()).unwrap_or_default());
    let def = RwSignal::new(seg.map(|s| s.definition).unwrap_or_default());
    let structure = RwSignal::new(0u32);
    let ctx = Ctx {
        def,
        structure,
        enabled: Signal::derive(move || hydrated.get() && can_write),
        options: StoredValue::new(options),
    };
    let error = RwSignal::new(None::<AppError>);
    let status = RwSignal::new(None::<String>);

    // Live count, debounced; effects run only in the browser.
    let count = Action::new(|d: &SegmentDefinition| count_segment(d.clone()));
    let ticks = RwSignal::new(0u64);
    Effect::new(move || {
        let d = def.get();
        ticks.update(|t| *t += 1);
        let at = ticks.get_untracked();
        set_timeout(
            move || {
                if ticks.get_untracked() == at {
                    count.dispatch(d);
                }
            },
            std::time::Duration::from_millis(COUNT_DEBOUNCE_MS),
        );
    });
    let count_text = move || -> AnyView {
        if count.pending().get() {
            return view! { <span>"Counting…"</span> }.into_any();
        }
        match count.value().get() {
            None => view! { <span>"Counting…"</span> }.into_any(),
            Some(Ok(c)) => count_view(&c).into_any(),
            Some(Err(e)) => {
                view! { <span class="alert error" role="alert" data-test="count-error">{e.message}</span> }.into_any()
            }
        }
    };

    let save = Action::new(move |(n, d): &(String, SegmentDefinition)| {
        let (n, d) = (n.clone(), d.clone());
        async move {
            match id {
                Some(id) => update_segment(id, n, d).await.map(|_| id),
                None => create_segment(n, d).await,
            }
        }
    });
    Effect::new(move || {
        if let Some(r) = save.value().get() {
            match r {
                Ok(saved) if id.is_none() => hard_navigate(&format!("/segments/{saved}")),
                Ok(_) => {
                    error.set(None);
                    status.set(Some("Segment saved.".into()));
                }
                Err(e) => error.set(Some(e)),
            }
        }
    });
    let duplicate = Action::new(move |_: &()| async move {
        match id {
            Some(id) => duplicate_segment(id).await,
            None => Err(AppError::new("not_found", "Save the segment first.")),
        }
    });
    let delete = Action::new(move |_: &()| async move {
        match id {
            Some(id) => delete_segment(id).await,
            None => Ok(()),
        }
    });
    Effect::new(move || match duplicate.value().get() {
        Some(Ok(new_id)) => hard_navigate(&format!("/segments/{new_id}")),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    Effect::new(move || match delete.value().get() {
        Some(Ok(())) => hard_navigate("/segments"),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let preview = Action::new(|d: &SegmentDefinition| preview_segment(d.clone()));
    let list_name = RwSignal::new(String::new());
    let to_list = Action::new(|(n, d): &(String, SegmentDefinition)| segment_to_list(n.clone(), d.clone()));

    view! {
        <section class="panel">
            <p class="muted"><a href="/segments">"← Segments"</a></p>
            <div class="form-grid">
                <label for="segment-name">"Name"</label>
                <input id="segment-name" data-test="segment-name" maxlength="100" prop:value=move || name.get()
                    disabled=move || !hydrated.get() || !can_write
                    on:input=move |ev| name.set(event_target_value(&ev))/>
            </div>
            {(!can_write).then(|| view! { <p class="muted">"Read only: your role can see counts but not change segments or see members."</p> })}
            <ErrorMessage error=error/>
            <div class="segment-tree">
                {move || { structure.get(); group_view(ctx, vec![], 1) }}
            </div>
            <p class="count" data-test="live-count" aria-live="polite">{count_text}</p>
            {can_write.then(|| view! {
                <div class="actions">
                    <button type="button" class="primary" data-test="save-segment" disabled=move || !hydrated.get() || save.pending().get()
                        on:click=move |_| { status.set(None); save.dispatch((name.get_untracked(), def.get_untracked())); }>"Save segment"</button>
                    {id.is_some().then(|| view! {
                        <button type="button" data-test="duplicate-segment" disabled=move || !hydrated.get() on:click=move |_| { duplicate.dispatch(()); }>"Duplicate"</button>
                        <button type="button" class="danger" data-test="delete-segment" disabled=move || !hydrated.get() on:click=move |_| { delete.dispatch(()); }>"Delete"</button>
                    })}
                    <span role="status" data-test="save-status">{move || status.get().map(|t| view! { <span class="alert ok">{t}</span> })}</span>
                </div>
            })}
        </section>
        {can_write.then(|| view! {
            <section class="panel">
                <h2>"Who matches"</h2>
                <p class="hint">"Shows names and email addresses of the first 20 matches. Viewing them is recorded in the audit trail."</p>
                <button type="button" data-test="preview-members" disabled=move || !hydrated.get() || preview.pending().get()
                    on:click=move |_| { preview.dispatch(def.get_untracked()); }>"Show the first 20 matches"</button>
                {move || match preview.value().get() {
                    None => ().into_any(),
                    Some(Ok(rows)) if rows.is_empty() => view! { <p class="muted">"No contact matches."</p> }.into_any(),
                    Some(Ok(rows)) => view! {
                        <table>
                            <thead><tr><th scope="col">"Name"</th><th scope="col">"Email"</th></tr></thead>
                            <tbody>{rows.into_iter().map(|r| view! {
                                <tr data-test="preview-row"><td><a href=format!("/contacts/{}", r.id)>{r.name.expose().clone()}</a></td><td>{r.email.expose().clone()}</td></tr>
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                }}
            </section>
        })}
        {can_list.then(|| view! {
            <section class="panel">
                <h2>"Save as a static list"</h2>
                <p class="hint">"Copies today's matches into a new list; the list does not change when contacts do."</p>
                <form class="inline" on:submit=move |ev| { ev.prevent_default(); to_list.dispatch((list_name.get_untracked(), def.get_untracked())); }>
                    <label for="list-name">"List name"</label>
                    <input id="list-name" data-test="list-name" maxlength="100" prop:value=move || list_name.get()
                        on:input=move |ev| list_name.set(event_target_value(&ev))/>
                    <button type="submit" data-test="save-as-list" disabled=move || !hydrated.get() || to_list.pending().get()>"Save as list"</button>
                </form>
                {move || match to_list.value().get() {
                    None => ().into_any(),
                    Some(Ok(_)) => view! { <p class="alert success" data-test="list-saved">"Saved. " <a href="/contacts/lists">"See your lists"</a></p> }.into_any(),
                    Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                }}
            </section>
        })}
    }
}
