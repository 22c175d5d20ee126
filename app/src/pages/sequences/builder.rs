//! The sequence builder (`/sequences/{id}`): the trigger card on top, the steps as cards joined by
//! lines from top to bottom, the paths of a branch, a wait-for and a random split side by side;
//! add a step on any path, remove, move up / down; a settings panel for the selected step; the
//! sender; save, validation before publishing (the browser runs the same `validate` as the
//! server and shows the problem next to the step it names), publish with the changes and the
//! option to move waiting contacts, pause / resume / archive; live figures on each step; a test
//! run. People who may not read contacts see the masked view, read-only.

use super::flow::{self, Item, Path};
use crate::api_sequences::{open_sequence, publish_sequence, save_sequence, set_sequence_status, test_run_sequence};
use crate::components::{ErrorMessage, FieldError, format_time, now_utc, unplaced, use_hydrated};
use crate::error::AppError;
use domain::DomainError;
use domain::campaigns::DeliveryPolicy;
use domain::contacts::{ConsentPurpose, FieldValue, ListView};
use domain::segments::{Cmp, FieldTest, PropertyTest};
use domain::sequences::trigger_kind as tk;
use domain::sequences::{
    Awaited, BranchTest, Engagement, EntryRule, EventMatch, FrequencyCap, QuietHours, SequenceDefinition,
    SequenceStatus, SequenceView, Simulation, SplitPath, StepKind, StepStats, TestRunStep, Trigger, WaitSpec,
};
use domain::template_views::TemplateSummary;
use leptos::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Everything the parts of the builder share (all handles are `Copy`).
#[derive(Clone, Copy)]
struct Ctx {
    def: RwSignal<SequenceDefinition>,
    selected: RwSignal<Option<String>>,
    adding: RwSignal<Option<(Option<String>, usize)>>,
    dirty: RwSignal<bool>,
    /// Hydrated and allowed to change this sequence.
    enabled: Signal<bool>,
    readonly: bool,
    live: bool,
    stats: StoredValue<BTreeMap<String, StepStats>>,
    templates: StoredValue<Vec<TemplateSummary>>,
    lists: StoredValue<Vec<ListView>>,
    /// Segments and campaigns a trigger may name (id, name).
    segments: StoredValue<Vec<(Uuid, String)>>,
    campaigns: StoredValue<Vec<(Uuid, String)>>,
    /// Who a notify-staff step may email (id, name).
    staff: StoredValue<Vec<(Uuid, String)>>,
    /// The first problem `validate` finds in the working copy: (field, reason).
    problem: Memo<Option<(String, String)>>,
    /// What the server found when the saved copy was loaded (its organisation checks too:
    /// templates, lists, the sender's domain); stale once the copy is edited.
    server_problem: RwSignal<Option<(String, String)>>,
    error: RwSignal<Option<AppError>>,
}

impl Ctx {
    fn edit(&self, f: impl FnOnce(&mut SequenceDefinition)) {
        self.def.update(f);
        self.dirty.set(true);
    }
    fn edit_step(&self, id: &str, f: impl FnOnce(&mut StepKind)) {
        self.edit(|d| {
            if let Some(s) = d.steps.iter_mut().find(|s| s.id == id) {
                f(&mut s.kind);
            }
        });
    }
    /// The problem to show next to `field` ("step <id>", "trigger" …): the server's answer to
    /// the last save or publish first, else what the browser's validation says.
    fn problem_at(&self, field: &str) -> Option<String> {
        let server = self
            .error
            .with(|e| e.as_ref().and_then(|e| e.field.as_ref()).filter(|p| p.field == field).map(|p| p.reason.clone()));
        server
            .or_else(|| self.problem.with(|p| p.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.clone())))
            .or_else(|| {
                (!self.dirty.get() && self.problem.with(Option::is_none))
                    .then(|| {
                        self.server_problem.with(|p| p.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.clone()))
                    })
                    .flatten()
            })
    }

    /// The problem the page shows before publishing, if any.
    fn first_problem(&self) -> Option<(String, String)> {
        self.problem.get().or_else(|| (!self.dirty.get()).then(|| self.server_problem.get()).flatten())
    }
}

pub fn client_problem(def: &SequenceDefinition) -> Option<(String, String)> {
    match domain::sequences::validate(def) {
        Ok(()) => None,
        Err(DomainError::Invalid { field, reason }) => Some((field, reason)),
        Err(e) => Some(("steps".into(), e.to_string())),
    }
}

fn sentence(label: &str, reason: &str) -> String {
    domain::error::field_sentence(label, reason)
}

pub fn status_badge(s: SequenceStatus) -> impl IntoView {
    let class = match s {
        SequenceStatus::Active => "badge ok",
        SequenceStatus::Paused => "badge warn",
        _ => "badge",
    };
    view! { <span class=class data-test="sequence-status">{s.label()}</span> }
}

fn minutes_words(m: u32) -> String {
    match m {
        m if m % 1440 == 0 => format!("{} day(s)", m / 1440),
        m if m % 60 == 0 => format!("{} hour(s)", m / 60),
        m => format!("{m} minute(s)"),
    }
}

fn test_words(t: &PropertyTest) -> String {
    let what = match &t.test {
        FieldTest::TextEquals { value } => format!("is “{value}”"),
        FieldTest::TextContains { value } => format!("contains “{value}”"),
        FieldTest::TextStartsWith { value } => format!("starts with “{value}”"),
        FieldTest::IsEmpty => "is empty".into(),
        FieldTest::IsNotEmpty => "is not empty".into(),
        FieldTest::Number { cmp, value } => format!("{} {value}", cmp_symbol(*cmp)),
        FieldTest::Hidden { test } => format!("{test} (hidden value)"),
        other => other.label().to_string(),
    };
    format!("{} {what}", if t.key.is_empty() { "(property)" } else { &t.key })
}

fn cmp_symbol(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "=",
        Cmp::Ne => "≠",
        Cmp::Lt => "<",
        Cmp::Le => "≤",
        Cmp::Gt => ">",
        Cmp::Ge => "≥",
    }
}

/// One line saying what a step does.
fn summary(ctx: Ctx, kind: &StepKind) -> String {
    match kind {
        StepKind::SendEmail { template, purpose, policy, .. } => {
            let t = template
                .and_then(|t| ctx.templates.with_value(|ts| ts.iter().find(|x| x.id == t).map(|x| x.name.clone())))
                .unwrap_or_else(|| if template.is_some() { "a template".into() } else { "no template chosen".into() });
            format!("{t} · {} · {}", purpose.label(), policy.label())
        }
        StepKind::Wait { wait, .. } => match wait {
            WaitSpec::Duration { minutes } => format!("Wait {}", minutes_words(*minutes)),
            WaitSpec::BusinessDays { days } => format!("Wait {days} business day(s)"),
            WaitSpec::TimeOfDay { hour, minute } => {
                format!("Wait until {hour:02}:{minute:02} in the contact's time zone")
            }
            WaitSpec::UntilEventTime { property, offset_minutes } => {
                let off = offset_minutes.unsigned_abs() as u32;
                let side = if *offset_minutes < 0 { "before" } else { "after" };
                if off == 0 {
                    format!("Wait until the event's {property}")
                } else {
                    format!("Wait until {} {side} the event's {property}", minutes_words(off))
                }
            }
        },
        StepKind::WaitFor { event, timeout_minutes, .. } => {
            let what = match event {
                Awaited::Opened { step } => format!("an open of {step}"),
                Awaited::Clicked { step } => format!("a click in {step}"),
                Awaited::Event { event } => format!(
                    "event {}{}",
                    if event.event_type.is_empty() { "(type?)" } else { &event.event_type },
                    if event.correlated { " (same correlation key)" } else { "" }
                ),
            };
            format!("Wait up to {} for {what}", minutes_words(*timeout_minutes))
        }
        StepKind::Branch { test, .. } => match test {
            BranchTest::EventProperty { test } => format!("If the event's {}", test_words(test)),
            BranchTest::Engaged { clicked, step } => {
                format!("If the contact {} {step}", if *clicked { "clicked in" } else { "opened" })
            }
            BranchTest::Contact { .. } => "If the contact matches a condition".into(),
        },
        StepKind::RandomSplit { paths } => {
            format!("Split {}", paths.iter().map(|p| format!("{} %", p.percent)).collect::<Vec<_>>().join(" / "))
        }
        StepKind::UpdateList { list, add, .. } => {
            let name = ctx
                .lists
                .with_value(|ls| ls.iter().find(|l| l.id == *list).map(|l| l.name.clone()))
                .unwrap_or_else(|| "no list chosen".into());
            format!("{} {name}", if *add { "Add to" } else { "Remove from" })
        }
        StepKind::NotifyStaff { user, .. } => {
            let who = ctx
                .staff
                .with_value(|st| st.iter().find(|(id, _)| id == user).map(|(_, n)| n.clone()))
                .unwrap_or_else(|| "no one chosen".into());
            format!("Email {who}")
        }
        StepKind::Exit => "The enrolment ends here".into(),
    }
}

#[component]
pub fn Builder(
    view: SequenceView,
    templates: Vec<TemplateSummary>,
    lists: Vec<ListView>,
    segments: Vec<(Uuid, String)>,
    campaigns: Vec<(Uuid, String)>,
    can_write: bool,
    reload: Callback<()>,
) -> impl IntoView {
    let hydrated = use_hydrated();
    let id = view.id;
    let readonly = view.masked || !can_write || view.status == SequenceStatus::Archived;
    let enabled = Signal::derive(move || hydrated.get() && !readonly);
    let def = RwSignal::new(view.draft.clone());
    let problem = Memo::new(move |_| def.with(client_problem));
    let ctx = Ctx {
        def,
        selected: RwSignal::new(None),
        adding: RwSignal::new(None),
        dirty: RwSignal::new(false),
        enabled,
        readonly,
        live: view.current.is_some(),
        stats: StoredValue::new(view.steps.iter().map(|s| (s.step_id.clone(), s.clone())).collect()),
        templates: StoredValue::new(templates),
        lists: StoredValue::new(lists),
        segments: StoredValue::new(segments),
        campaigns: StoredValue::new(campaigns),
        staff: StoredValue::new(view.staff.clone()),
        problem,
        server_problem: RwSignal::new(if view.masked { None } else { view.draft_problem.clone() }),
        error: RwSignal::new(None),
    };
    let name = RwSignal::new(view.name.clone());
    let from_name = RwSignal::new(view.from_name.clone());
    let from_email = RwSignal::new(view.from_email.clone());
    let notice = RwSignal::new(None::<String>);
    // The trigger's event type, when no such event has arrived to check the draft's event fields.
    let unchecked = RwSignal::new(view.event_fields_unchecked.clone());
    let properties = view.trigger_properties.clone();
    let status = view.status;
    let error = ctx.error;

    // Save, and the publish preparation (save, then the server's view of the saved copy: its
    // changes against the live version and why it cannot be published, if it cannot).
    let save = Action::new(move |publish_next: &bool| {
        let publish_next = *publish_next;
        let (n, fname, femail, d) =
            (name.get_untracked(), from_name.get_untracked(), from_email.get_untracked(), def.get_untracked());
        async move {
            save_sequence(id, n, fname, femail, d).await?;
            Ok::<_, AppError>((publish_next, open_sequence(id).await?))
        }
    });
    let confirm = RwSignal::new(None::<SequenceView>);
    Effect::new(move || match save.value().get() {
        Some(Ok((publish_next, v))) => {
            error.set(None);
            ctx.dirty.set(false);
            ctx.server_problem.set(v.draft_problem.clone());
            unchecked.set(v.event_fields_unchecked.clone());
            if publish_next {
                confirm.set(Some(v));
            } else {
                notice.set(Some("Draft saved.".into()));
            }
        }
        Some(Err(e)) => {
            notice.set(None);
            error.set(Some(e));
        }
        None => {}
    });
    let moving = RwSignal::new(Vec::<String>::new());
    let publish = Action::new(move |m: &Vec<String>| publish_sequence(id, m.clone()));
    Effect::new(move || match publish.value().get() {
        Some(Ok(n)) => {
            confirm.set(None);
            notice.set(Some(format!("Version {n} is live.")));
            reload.run(());
        }
        Some(Err(e)) => {
            confirm.set(None);
            error.set(Some(e));
        }
        None => {}
    });
    let set_status = Action::new(move |s: &SequenceStatus| set_sequence_status(id, *s));
    Effect::new(move || match set_status.value().get() {
        Some(Ok(())) => reload.run(()),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let archiving = RwSignal::new(false);
    let busy = Signal::derive(move || save.pending().get() || publish.pending().get() || set_status.pending().get());
    let sender_fields: &'static [&'static str] = &["name", "from_name", "from_email"];
    let version_line = match &view.current {
        Some(c) => format!("Version {} live since {}", c.number, format_time(c.published_at)),
        None => "Not published yet".to_string(),
    };
    let totals = view.totals.clone();

    view! {
        <section class="panel" data-test="sequence-head">
            <div class="panel-head">
                <h1 data-test="sequence-title">{move || name.get()}</h1>
                <div class="actions">
                    {status_badge(status)}
                    <span class="hint" data-test="sequence-version">{version_line}</span>
                </div>
            </div>
            {view.masked.then(|| view! {
                <p class="alert info" data-test="masked-note">"You are seeing this sequence without the values of its conditions (they may be patient information). It is read-only for your role."</p>
            })}
            {ctx.live.then(|| view! {
                <p class="hint" data-test="sequence-totals">
                    {format!("Entered {} · in the sequence now {} · completed {} · converted {} · exited {}",
                        totals.entered.label(), totals.active.label(), totals.completed.label(), totals.converted.label(), totals.exited.label())}
                </p>
            })}
            <div class="form-grid">
                <label for="sequence-name">"Name"</label>
                <div>
                    <input id="sequence-name" data-test="sequence-name" maxlength="120" prop:value=move || name.get()
                        disabled=move || !enabled.get() on:input=move |ev| { name.set(event_target_value(&ev)); ctx.dirty.set(true); }/>
                    <FieldError error=error field="name" label="Name"/>
                </div>
                <label for="sequence-from-name">"From name"</label>
                <div>
                    <input id="sequence-from-name" data-test="from-name" maxlength="120" prop:value=move || from_name.get()
                        disabled=move || !enabled.get() on:input=move |ev| { from_name.set(event_target_value(&ev)); ctx.dirty.set(true); }/>
                    <FieldError error=error field="from_name" label="From name"/>
                </div>
                <label for="sequence-from-email">"From address"</label>
                <div>
                    <input id="sequence-from-email" data-test="from-email" maxlength="254" autocomplete="off" prop:value=move || from_email.get()
                        disabled=move || !enabled.get() on:input=move |ev| { from_email.set(event_target_value(&ev)); ctx.dirty.set(true); }/>
                    <FieldError error=error field="from_email" label="From address"/>
                    <p class="hint">"On one of your organisation's verified sending domains."</p>
                </div>
            </div>
            {(!readonly).then(|| view! {
                <div class="actions sequence-actions">
                    <button type="button" data-test="save-sequence" disabled=move || !enabled.get() || busy.get()
                        on:click=move |_| { notice.set(None); save.dispatch(false); }>
                        {move || if save.pending().get() { "Saving…" } else { "Save draft" }}
                    </button>
                    <button type="button" class="primary" data-test="publish-sequence"
                        disabled=move || !enabled.get() || busy.get() || ctx.problem.with(|p| p.is_some())
                        on:click=move |_| { notice.set(None); moving.set(Vec::new()); save.dispatch(true); }>
                        {move || if publish.pending().get() { "Publishing…" } else { "Publish…" }}
                    </button>
                    {(status == SequenceStatus::Active).then(|| view! {
                        <button type="button" data-test="pause-sequence" disabled=move || !enabled.get() || busy.get()
                            on:click=move |_| { set_status.dispatch(SequenceStatus::Paused); }>"Pause"</button>
                    })}
                    {(status == SequenceStatus::Paused).then(|| view! {
                        <button type="button" data-test="resume-sequence" disabled=move || !enabled.get() || busy.get()
                            on:click=move |_| { set_status.dispatch(SequenceStatus::Active); }>"Resume"</button>
                    })}
                    {matches!(status, SequenceStatus::Active | SequenceStatus::Paused).then(|| view! {
                        <button type="button" class="danger" data-test="archive-sequence" disabled=move || !enabled.get() || busy.get()
                            on:click=move |_| archiving.set(true)>"Archive…"</button>
                    })}
                    <span class="hint" role="status" data-test="dirty">{move || if ctx.dirty.get() { "Unsaved changes" } else { "" }}</span>
                </div>
            })}
            {move || archiving.get().then(|| view! {
                <div class="alert warn" data-test="archive-confirm">
                    <p>"Archive this sequence? Nobody new enters it; contacts already inside finish their path. This cannot be undone."</p>
                    <div class="actions">
                        <button type="button" class="danger" data-test="confirm-archive" disabled=move || busy.get()
                            on:click=move |_| { archiving.set(false); set_status.dispatch(SequenceStatus::Archived); }>"Archive"</button>
                        <button type="button" on:click=move |_| archiving.set(false)>"Keep it"</button>
                    </div>
                </div>
            })}
            {move || notice.get().map(|n| view! { <p class="alert success" role="status" data-test="notice">{n}</p> })}
            <ErrorMessage error=unplaced(error.into(), sender_fields)/>
            {move || (!readonly).then(|| ctx.first_problem().map(|(f, r)| {
                let label = if f.starts_with("step ") { "A step".to_string() } else { domain::error::field_label(&f) };
                view! { <p class="alert warn" data-test="validation">{format!("Before publishing: {}", sentence(&label, &r))}</p> }
            }))}
            {move || (!readonly && !ctx.dirty.get()).then(|| unchecked.get()).flatten().map(|t| view! {
                <p class="alert info" data-test="event-fields-unchecked">
                    {format!("No {t} event with properties has arrived yet, so the event fields this sequence uses cannot be checked.")}
                </p>
            })}
            {move || confirm.get().map(|v| view! { <PublishConfirm view=v moving=moving publish=publish confirm=confirm/> })}
        </section>
        // The property names the trigger's events have carried: suggestions for every input that
        // names one (names only, never values).
        <datalist id=PROPERTY_NAMES data-test="trigger-properties">
            {properties.into_iter().map(|p| view! { <option value=p></option> }).collect_view()}
        </datalist>
        <div class="builder-layout">
            <section class="panel flow" data-test="flow" aria-label="Steps">
                <TriggerCard ctx=ctx/>
                {move || {
                    // Step problems come from the copy, the last answer and whether it is saved.
                    ctx.dirty.track();
                    ctx.server_problem.track();
                    ctx.error.track();
                    let (items, unreachable) = def.with(flow::layout);
                    view! {
                        <AddStep ctx=ctx after=None path_slot=0/>
                        <ol class="flow-column">{render_items(ctx, items)}</ol>
                        {(!unreachable.is_empty()).then(|| view! {
                            <div class="unreachable" data-test="unreachable">
                                <h3>"Not reachable from the first step"</h3>
                                <ol class="flow-column">
                                    {unreachable.into_iter().map(|id| view! { <li class="flow-node"><StepCard ctx=ctx id=id/></li> }).collect_view()}
                                </ol>
                            </div>
                        })}
                    }
                }}
            </section>
            <aside class="panel step-settings" data-test="step-settings" aria-label="Step settings">
                {move || match ctx.selected.get() {
                    Some(sid) if ctx.def.with(|d| d.step(&sid).is_some()) => view! { <StepSettings ctx=ctx id=sid/> }.into_any(),
                    _ => view! { <p class="empty">"Select a step to see its settings."</p> }.into_any(),
                }}
            </aside>
        </div>
        {(!view.masked).then(|| view! { <TestRun id=id dirty=ctx.dirty/> })}
    }
}

#[component]
fn PublishConfirm(
    view: SequenceView,
    moving: RwSignal<Vec<String>>,
    publish: Action<Vec<String>, Result<i32, AppError>>,
    confirm: RwSignal<Option<SequenceView>>,
) -> impl IntoView {
    if let Some((field, reason)) = view.draft_problem.clone() {
        return view! {
            <div class="alert error" role="alert" data-test="publish-problem">
                {sentence(&domain::error::field_label(&field), &reason)}
                " "<button type="button" on:click=move |_| confirm.set(None)>"Close"</button>
            </div>
        }
        .into_any();
    }
    let changes = view.changes.clone();
    let movable: Vec<String> = match (&view.current, &changes) {
        (Some(_), Some(c)) => view.draft.steps.iter().map(|s| s.id.clone()).filter(|s| !c.added.contains(s)).collect(),
        _ => Vec::new(),
    };
    let list = |label: &'static str, ids: &[String]| {
        (!ids.is_empty()).then(|| view! { <li>{format!("{label}: {}", ids.join(", "))}</li> })
    };
    view! {
        <div class="alert info publish-confirm" data-test="publish-confirm">
            <h2>{if view.current.is_some() { "Publish a new version?" } else { "Publish and go live?" }}</h2>
            {match &changes {
                Some(c) if c.added.is_empty() && c.removed.is_empty() && c.changed.is_empty() && !c.settings_changed => {
                    view! { <p data-test="changes">"Nothing changed since the live version."</p> }.into_any()
                }
                Some(c) => view! {
                    <ul data-test="changes">
                        {list("Added", &c.added)}
                        {list("Removed", &c.removed)}
                        {list("Changed", &c.changed)}
                        {c.settings_changed.then(|| view! { <li>"The trigger or entry settings changed"</li> })}
                    </ul>
                }.into_any(),
                None => view! { <p data-test="changes">"Contacts start entering as soon as its trigger happens."</p> }.into_any(),
            }}
            {(!movable.is_empty()).then(|| view! {
                <fieldset>
                    <legend>"Contacts already inside"</legend>
                    <p class="hint">"They finish the version they entered, unless you move those waiting at a step to the new version (they continue from that step; past steps do not run again)."</p>
                    {movable.into_iter().map(|s| {
                        let id = format!("move-{s}");
                        let for_id = id.clone();
                        let s2 = s.clone();
                        let s3 = s.clone();
                        view! {
                            <label class="inline" for=for_id>
                                <input type="checkbox" id=id data-test=format!("move-{s}")
                                    prop:checked=move || moving.with(|m| m.contains(&s2))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        let s = s3.clone();
                                        moving.update(|m| { m.retain(|x| *x != s); if on { m.push(s); } });
                                    }/>
                                {format!("Move contacts waiting at step {s} to the new version")}
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
            })}
            <div class="actions">
                <button type="button" class="primary" data-test="confirm-publish" disabled=move || publish.pending().get()
                    on:click=move |_| { publish.dispatch(moving.get_untracked()); }>"Publish"</button>
                <button type="button" data-test="cancel-publish" on:click=move |_| confirm.set(None)>"Not yet"</button>
            </div>
        </div>
    }
    .into_any()
}

fn render_items(ctx: Ctx, items: Vec<Item>) -> AnyView {
    items
        .into_iter()
        .map(|item| match item {
            Item::GoTo(id) => view! {
                <li class="flow-node flow-goto" data-test="goto">{format!("Continues at step {id}")}</li>
            }
            .into_any(),
            Item::Step { id, paths } if paths.is_empty() => {
                let ends = ctx.def.with_untracked(|d| d.step(&id).is_some_and(|s| matches!(s.kind, StepKind::Exit)));
                view! {
                    <li class="flow-node">
                        <StepCard ctx=ctx id=id.clone()/>
                        {(!ends).then(|| view! { <AddStep ctx=ctx after=Some(id.clone()) path_slot=0/> })}
                    </li>
                }
                .into_any()
            }
            Item::Step { id, paths } => view! {
                <li class="flow-node">
                    <StepCard ctx=ctx id=id/>
                    <div class="flow-paths" data-test="paths">{paths.into_iter().map(|p| render_path(ctx, p)).collect_view()}</div>
                </li>
            }
            .into_any(),
        })
        .collect_view()
        .into_any()
}

fn render_path(ctx: Ctx, p: Path) -> AnyView {
    let ends = !matches!(p.items.last(), Some(Item::GoTo(_)));
    view! {
        <div class="flow-path" data-test="path" data-from=p.from.clone() data-slot=p.slot.to_string()>
            <p class="path-label">{p.label}</p>
            <AddStep ctx=ctx after=Some(p.from.clone()) path_slot=p.slot/>
            <ol class="flow-column">{render_items(ctx, p.items)}</ol>
            {ends.then(|| view! { <p class="path-end">"End"</p> })}
        </div>
    }
    .into_any()
}

#[component]
fn AddStep(ctx: Ctx, after: Option<String>, path_slot: usize) -> impl IntoView {
    if ctx.readonly {
        return ().into_any();
    }
    let slot = path_slot;
    let key = (after.clone(), slot);
    let key2 = key.clone();
    let open = Memo::new(move |_| ctx.adding.with(|a| a.as_ref() == Some(&key2)));
    let after_attr = after.clone().unwrap_or_else(|| "start".into());
    view! {
        <div class="add-step">
            <button type="button" class="link" data-test="add-step" data-after=after_attr data-slot=slot.to_string()
                aria-expanded=move || open.get().to_string() disabled=move || !ctx.enabled.get()
                on:click=move |_| { let k = key.clone(); ctx.adding.update(|a| *a = if a.as_ref() == Some(&k) { None } else { Some(k) }); }>
                "+ Add step"
            </button>
            {move || open.get().then(|| {
                let after = after.clone();
                view! {
                    <div class="kind-picker" role="group" aria-label="Kind of step" data-test="kind-picker">
                        {flow::KINDS.iter().map(|(code, label)| {
                            let after = after.clone();
                            view! {
                                <button type="button" data-test=format!("add-{code}") on:click=move |_| {
                                    let mut new_id = None;
                                    ctx.edit(|d| new_id = flow::insert(d, after.as_deref(), slot, code));
                                    ctx.adding.set(None);
                                    ctx.selected.set(new_id);
                                }>{*label}</button>
                            }
                        }).collect_view()}
                    </div>
                }
            })}
        </div>
    }
    .into_any()
}

#[component]
fn StepCard(ctx: Ctx, id: String) -> impl IntoView {
    let Some(step) = ctx.def.with_untracked(|d| d.step(&id).cloned()) else {
        return ().into_any();
    };
    let code = step.kind.code();
    let title = if step.name.trim().is_empty() { step.kind.label().to_string() } else { step.name.clone() };
    let text = summary(ctx, &step.kind);
    let phi = match &step.kind {
        StepKind::SendEmail { template: Some(t), .. } => {
            ctx.templates.with_value(|ts| ts.iter().any(|x| x.id == *t && x.uses_phi))
        }
        _ => false,
    };
    let stats = ctx.stats.with_value(|s| s.get(&id).cloned()).filter(|_| ctx.live);
    let field = format!("step {id}");
    let problem = ctx.problem_at(&field);
    let has_problem = problem.is_some();
    let (up, down) = ctx.def.with_untracked(|d| (flow::can_move_up(d, &id), flow::can_move_down(d, &id)));
    let id_sel = id.clone();
    let id_sel2 = id.clone();
    let (id_up, id_down, id_rm) = (id.clone(), id.clone(), id.clone());
    let is_send = code == "send_email";
    view! {
        <article class="step-card" class:selected=move || ctx.selected.with(|s| s.as_deref() == Some(id_sel.as_str()))
            class:has-problem=has_problem
            data-test="step" data-step=id.clone() data-kind=code>
            <button type="button" class="step-select" data-test="select-step"
                on:click=move |_| ctx.selected.set(Some(id_sel2.clone()))>
                <span class="step-kind">{step.kind.label()}</span>
                <strong class="step-title">{title}</strong>
                {phi.then(|| view! { <span class="phi-tag" title="This template contains patient information">"PHI"</span> })}
                <code class="step-id">{id.clone()}</code>
            </button>
            <p class="step-summary" data-test="step-summary">{text}</p>
            {stats.map(|s| view! {
                <dl class="step-stats" data-test="step-stats">
                    <div><dt>"Waiting"</dt><dd data-test="stat-waiting">{s.waiting.label()}</dd></div>
                    <div><dt>"Entered"</dt><dd data-test="stat-entered">{s.entered.label()}</dd></div>
                    {is_send.then(|| view! {
                        <div><dt>"Sent"</dt><dd data-test="stat-sent">{s.sent.label()}</dd></div>
                        <div><dt>"Opened"</dt><dd data-test="stat-opened">{s.opened.label()}</dd></div>
                        <div><dt>"Clicked"</dt><dd data-test="stat-clicked">{s.clicked.label()}</dd></div>
                    })}
                </dl>
            })}
            {problem.map(|r| view! { <p class="field-error" role="alert" data-test="step-problem">{sentence("This step", &r)}</p> })}
            {(!ctx.readonly).then(|| view! {
                <div class="step-tools">
                    <button type="button" class="link" data-test="move-up" disabled=move || !ctx.enabled.get() || !up
                        on:click=move |_| ctx.edit(|d| { flow::move_up(d, &id_up); })>"Move up"</button>
                    <button type="button" class="link" data-test="move-down" disabled=move || !ctx.enabled.get() || !down
                        on:click=move |_| ctx.edit(|d| { flow::move_down(d, &id_down); })>"Move down"</button>
                    <button type="button" class="link danger" data-test="remove-step" disabled=move || !ctx.enabled.get()
                        on:click=move |_| {
                            let id = id_rm.clone();
                            ctx.edit(|d| { flow::remove(d, &id); });
                            if ctx.selected.with_untracked(|s| s.as_deref() == Some(id.as_str())) { ctx.selected.set(None); }
                        }>"Remove"</button>
                </div>
            })}
        </article>
    }
    .into_any()
}

// ---------------------------------------------------------------------------------------------
// The trigger card
// ---------------------------------------------------------------------------------------------

#[component]
fn TriggerCard(ctx: Ctx) -> impl IntoView {
    let def = ctx.def;
    let is_event = Memo::new(move |_| def.with(|d| matches!(d.trigger, Trigger::Event { .. })));
    let kind = Memo::new(move |_| def.with(|d| d.trigger.stored().0));
    let n_props = Memo::new(move |_| {
        def.with(|d| match &d.trigger {
            Trigger::Event { properties, .. } => properties.len(),
            _ => 0,
        })
    });
    let n_exits = Memo::new(move |_| def.with(|d| d.exit_on.len()));
    let dis = move || !ctx.enabled.get();
    let problem = move |f: &'static str| {
        move || {
            ctx.problem_at(f).map(|r| view! { <p class="field-error" role="alert" data-test=format!("problem-{f}")>{sentence(&domain::error::field_label(f), &r)}</p> })
        }
    };
    // The lists, segments or campaigns a trigger of this kind may name.
    let choices = move |k: &str| -> Vec<(Uuid, String)> {
        match k {
            tk::LIST_ADDED => ctx.lists.with_value(|ls| ls.iter().map(|l| (l.id, l.name.clone())).collect()),
            tk::SEGMENT_ENTERED => ctx.segments.get_value(),
            tk::CAMPAIGN_OPENED | tk::CAMPAIGN_CLICKED => ctx.campaigns.get_value(),
            _ => vec![],
        }
    };
    let trigger_of = move |k: &str| -> Trigger {
        let first = choices(k).first().map(|c| c.0).unwrap_or_else(Uuid::nil);
        match k {
            tk::MANUAL => Trigger::Manual,
            tk::LIST_ADDED => Trigger::ListAdded { list: first },
            tk::SEGMENT_ENTERED => Trigger::SegmentEntered { segment: first },
            tk::CAMPAIGN_OPENED => Trigger::CampaignEngaged { campaign: first, action: Engagement::Opened },
            tk::CAMPAIGN_CLICKED => Trigger::CampaignEngaged { campaign: first, action: Engagement::Clicked },
            _ => Trigger::Event { event_type: String::new(), properties: Vec::new() },
        }
    };
    let set_ref = move |id: Uuid| {
        ctx.edit(|d| match &mut d.trigger {
            Trigger::ListAdded { list: r }
            | Trigger::SegmentEntered { segment: r }
            | Trigger::CampaignEngaged { campaign: r, .. } => *r = id,
            _ => {}
        })
    };
    view! {
        <article class="trigger-card" data-test="trigger">
            <h2>"Trigger"</h2>
            <div class="form-grid">
                <label for="trigger-kind">"Starts when"</label>
                <select id="trigger-kind" data-test="trigger-kind" disabled=dis
                    on:change=move |ev| {
                        let v = event_target_value(&ev);
                        let t = trigger_of(&v);
                        ctx.edit(|d| d.trigger = t);
                    }>
                    {[
                        (tk::EVENT, "A patient event happens"),
                        (tk::LIST_ADDED, "A contact is added to a list"),
                        (tk::SEGMENT_ENTERED, "A contact enters a segment"),
                        (tk::CAMPAIGN_OPENED, "A contact opens a campaign"),
                        (tk::CAMPAIGN_CLICKED, "A contact clicks in a campaign"),
                        (tk::MANUAL, "A contact is enrolled explicitly (API or staff)"),
                    ].into_iter().map(|(k, label)| view! {
                        <option value=k selected=move || kind.get() == k>{label}</option>
                    }).collect_view()}
                </select>
                {move || {
                    let k = kind.get();
                    let (label, empty) = match k {
                        tk::LIST_ADDED => ("List", "No lists yet: create one under Contacts → Lists."),
                        tk::SEGMENT_ENTERED => ("Segment", "No saved segments yet: save one under Segments."),
                        tk::CAMPAIGN_OPENED | tk::CAMPAIGN_CLICKED => ("Campaign", "No campaigns yet."),
                        _ => return None,
                    };
                    let options = choices(k);
                    let current = def.with(|d| d.trigger.stored().1);
                    Some(view! {
                        <label for="trigger-ref">{label}</label>
                        <div>
                            {if options.is_empty() {
                                view! { <p class="hint" data-test="trigger-ref-empty">{empty}</p> }.into_any()
                            } else {
                                view! {
                                    <select id="trigger-ref" data-test="trigger-ref" disabled=dis
                                        on:change=move |ev| { if let Ok(id) = Uuid::parse_str(&event_target_value(&ev)) { set_ref(id); } }>
                                        {options.into_iter().map(|(id, name)| view! {
                                            <option value=id.to_string() selected=current == Some(id)>{name}</option>
                                        }).collect_view()}
                                    </select>
                                }.into_any()
                            }}
                            {(k == tk::SEGMENT_ENTERED).then(|| view! { <p class="hint">"Members when the sequence goes live do not enter; contacts who join later do (checked every minute)."</p> })}
                            {(k == tk::CAMPAIGN_OPENED || k == tk::CAMPAIGN_CLICKED).then(|| view! { <p class="hint">"A person's first open or click counts; machine opens and link scanners do not."</p> })}
                            {problem("trigger")}
                        </div>
                    })
                }}
                {move || is_event.get().then(|| view! {
                    <label for="trigger-event">"Event type"</label>
                    <div>
                        <input id="trigger-event" data-test="trigger-event" placeholder="appointment.booked" maxlength="64" disabled=dis
                            prop:value=move || def.with(|d| d.trigger.event_type().unwrap_or_default().to_string())
                            on:input=move |ev| { let v = event_target_value(&ev); ctx.edit(|d| if let Trigger::Event { event_type, .. } = &mut d.trigger { *event_type = v; }); }/>
                        {problem("trigger")}
                    </div>
                })}
            </div>
            {move || is_event.get().then(|| view! {
                <fieldset>
                    <legend>"Only when the event's properties match"</legend>
                    {move || (0..n_props.get()).map(|i| view! {
                        <div class="condition-row" data-test="trigger-condition">
                            <PropertyTestEditor ctx=ctx prefix=format!("trigger-{i}")
                                get=Callback::new(move |()| def.with(|d| match &d.trigger { Trigger::Event { properties, .. } => properties.get(i).cloned(), _ => None }))
                                set=Callback::new(move |t: PropertyTest| ctx.edit(|d| if let Trigger::Event { properties, .. } = &mut d.trigger && let Some(p) = properties.get_mut(i) { *p = t; }))/>
                            <button type="button" class="link danger" disabled=dis
                                on:click=move |_| ctx.edit(|d| if let Trigger::Event { properties, .. } = &mut d.trigger && i < properties.len() { properties.remove(i); })>"Remove"</button>
                        </div>
                    }).collect_view()}
                    {move || (n_props.get() == 0).then(|| view! { <p class="hint">"Every event of this type starts the sequence."</p> })}
                    <button type="button" data-test="add-trigger-condition" disabled=dis
                        on:click=move |_| ctx.edit(|d| if let Trigger::Event { properties, .. } = &mut d.trigger {
                            properties.push(PropertyTest { key: String::new(), test: FieldTest::TextEquals { value: String::new() } });
                        })>"Add a condition"</button>
                </fieldset>
            })}
            <div class="form-grid">
                <label for="entry-rule">"Entry"</label>
                <select id="entry-rule" data-test="entry-rule" disabled=dis
                    on:change=move |ev| { let v = event_target_value(&ev); if let Some(r) = EntryRule::ALL.into_iter().find(|r| r.as_str() == v) { ctx.edit(|d| d.entry = r); } }>
                    {EntryRule::ALL.into_iter().map(|r| view! {
                        <option value=r.as_str() selected=move || def.with(|d| d.entry == r)>{r.label()}</option>
                    }).collect_view()}
                </select>
                <label for="correlation-key">"Correlation key (optional)"</label>
                <div>
                    <input id="correlation-key" data-test="correlation-key" placeholder="appointment_id" maxlength="64" disabled=dis list=PROPERTY_NAMES
                        prop:value=move || def.with(|d| d.correlation_key.clone().unwrap_or_default())
                        on:input=move |ev| { let v = event_target_value(&ev); ctx.edit(|d| d.correlation_key = (!v.trim().is_empty()).then(|| v.trim().to_string())); }/>
                    {problem("correlation_key")}
                    <p class="hint">"A property of the trigger event naming the same thing (an appointment): later events count for this enrolment only when they carry the same value."</p>
                </div>
                <label for="goal-event">"Goal event (optional)"</label>
                <div>
                    <input id="goal-event" data-test="goal-event" placeholder="appointment.completed" maxlength="64" disabled=dis
                        prop:value=move || def.with(|d| d.goal.as_ref().map(|g| g.event_type.clone()).unwrap_or_default())
                        on:input=move |ev| {
                            let v = event_target_value(&ev);
                            ctx.edit(|d| d.goal = if v.trim().is_empty() { None } else {
                                Some(EventMatch { event_type: v.trim().to_string(), correlated: d.goal.as_ref().is_some_and(|g| g.correlated) })
                            });
                        }/>
                    <label class="inline"><input type="checkbox" data-test="goal-correlated" disabled=move || dis() || def.with(|d| d.goal.is_none())
                        prop:checked=move || def.with(|d| d.goal.as_ref().is_some_and(|g| g.correlated))
                        on:change=move |ev| { let on = event_target_checked(&ev); ctx.edit(|d| if let Some(g) = &mut d.goal { g.correlated = on; }); }/>
                        "with the same correlation key"</label>
                    {problem("goal")}
                    <p class="hint">"Reaching the goal ends the enrolment wherever it is, counted as converted."</p>
                </div>
            </div>
            <fieldset>
                <legend>"Cancelling events"</legend>
                {move || (0..n_exits.get()).map(|i| view! {
                    <div class="condition-row" data-test="exit-event">
                        <label class="visually-hidden" for=format!("exit-{i}")>"Event type"</label>
                        <input id=format!("exit-{i}") placeholder="appointment.cancelled" maxlength="64" disabled=dis
                            prop:value=move || def.with(|d| d.exit_on.get(i).map(|m| m.event_type.clone()).unwrap_or_default())
                            on:input=move |ev| { let v = event_target_value(&ev); ctx.edit(|d| if let Some(m) = d.exit_on.get_mut(i) { m.event_type = v.trim().to_string(); }); }/>
                        <label class="inline"><input type="checkbox" disabled=dis
                            prop:checked=move || def.with(|d| d.exit_on.get(i).is_some_and(|m| m.correlated))
                            on:change=move |ev| { let on = event_target_checked(&ev); ctx.edit(|d| if let Some(m) = d.exit_on.get_mut(i) { m.correlated = on; }); }/>
                            "same correlation key"</label>
                        <button type="button" class="link danger" disabled=dis
                            on:click=move |_| ctx.edit(|d| if i < d.exit_on.len() { d.exit_on.remove(i); })>"Remove"</button>
                        {problem_exit(ctx, i)}
                    </div>
                }).collect_view()}
                {move || (n_exits.get() == 0).then(|| view! { <p class="hint">"None: only the goal, an exit step or the end of a path ends an enrolment (and unsubscribing always does)."</p> })}
                <button type="button" data-test="add-exit-event" disabled=dis
                    on:click=move |_| ctx.edit(|d| d.exit_on.push(EventMatch { event_type: String::new(), correlated: false }))>"Add a cancelling event"</button>
            </fieldset>
            <SendingLimits ctx=ctx/>
        </article>
    }
}

/// Quiet hours and the frequency cap (marketing and care emails; transactional ones are exempt).
#[component]
fn SendingLimits(ctx: Ctx) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let quiet = Memo::new(move |_| def.with(|d| d.quiet_hours.is_some()));
    let cap = Memo::new(move |_| def.with(|d| d.frequency_cap.is_some()));
    let problem = move |f: &'static str, label: &'static str| {
        move || {
            ctx.problem_at(f).map(|r| view! { <p class="field-error" role="alert" data-test=format!("problem-{f}")>{sentence(label, &r)}</p> })
        }
    };
    let hour = |v: String| v.trim().parse::<u32>().ok();
    view! {
        <fieldset data-test="sending-limits">
            <legend>"Sending limits (not for transactional emails)"</legend>
            <label class="inline"><input type="checkbox" data-test="quiet-hours" disabled=dis prop:checked=move || quiet.get()
                on:change=move |ev| { let on = event_target_checked(&ev); ctx.edit(|d| d.quiet_hours = on.then_some(QuietHours { from_hour: 21, to_hour: 8 })); }/>
                "Quiet hours: hold emails at night in the contact's time zone"</label>
            {move || quiet.get().then(|| view! {
                <div class="condition-row">
                    <label for="quiet-from">"From"</label>
                    <input id="quiet-from" type="number" min="0" max="23" class="narrow" data-test="quiet-from" disabled=dis prop:value=move || def.with(|d| d.quiet_hours.map(|q| q.from_hour.to_string()).unwrap_or_default())
                        on:input=move |ev| { if let Some(h) = hour(event_target_value(&ev)) { ctx.edit(|d| if let Some(q) = &mut d.quiet_hours { q.from_hour = h; }); } }/>
                    <label for="quiet-to">"until"</label>
                    <input id="quiet-to" type="number" min="0" max="23" class="narrow" data-test="quiet-to" disabled=dis prop:value=move || def.with(|d| d.quiet_hours.map(|q| q.to_hour.to_string()).unwrap_or_default())
                        on:input=move |ev| { if let Some(h) = hour(event_target_value(&ev)) { ctx.edit(|d| if let Some(q) = &mut d.quiet_hours { q.to_hour = h; }); } }/>
                    <span class="hint">"o'clock"</span>
                </div>
            })}
            {problem("quiet_hours", "Quiet hours")}
            <label class="inline"><input type="checkbox" data-test="frequency-cap" disabled=dis prop:checked=move || cap.get()
                on:change=move |ev| { let on = event_target_checked(&ev); ctx.edit(|d| d.frequency_cap = on.then_some(FrequencyCap { max: 3, days: 7, wait: true })); }/>
                "Frequency cap across campaigns and sequences"</label>
            {move || cap.get().then(|| view! {
                <div class="condition-row">
                    <label for="cap-max">"At most"</label>
                    <input id="cap-max" type="number" min="1" max="100" class="narrow" data-test="cap-max" disabled=dis prop:value=move || def.with(|d| d.frequency_cap.map(|c| c.max.to_string()).unwrap_or_default())
                        on:input=move |ev| { if let Ok(n) = event_target_value(&ev).trim().parse() { ctx.edit(|d| if let Some(c) = &mut d.frequency_cap { c.max = n; }); } }/>
                    <label for="cap-days">"emails in"</label>
                    <input id="cap-days" type="number" min="1" max="90" class="narrow" data-test="cap-days" disabled=dis prop:value=move || def.with(|d| d.frequency_cap.map(|c| c.days.to_string()).unwrap_or_default())
                        on:input=move |ev| { if let Ok(n) = event_target_value(&ev).trim().parse() { ctx.edit(|d| if let Some(c) = &mut d.frequency_cap { c.days = n; }); } }/>
                    <span class="hint">"days"</span>
                    <label for="cap-wait" class="visually-hidden">"When capped"</label>
                    <select id="cap-wait" class="narrow" data-test="cap-wait" disabled=dis on:change=move |ev| {
                        let wait = event_target_value(&ev) == "wait";
                        ctx.edit(|d| if let Some(c) = &mut d.frequency_cap { c.wait = wait; });
                    }>
                        <option value="wait" selected=move || def.with(|d| d.frequency_cap.is_some_and(|c| c.wait))>"then wait"</option>
                        <option value="skip" selected=move || def.with(|d| d.frequency_cap.is_some_and(|c| !c.wait))>"then skip the email"</option>
                    </select>
                </div>
            })}
            {problem("frequency_cap", "Frequency cap")}
        </fieldset>
    }
}

fn problem_exit(ctx: Ctx, i: usize) -> impl IntoView {
    let f = format!("exit event {}", i + 1);
    move || ctx.problem_at(&f).map(|r| view! { <p class="field-error" role="alert">{sentence("This event", &r)}</p> })
}

/// The test kinds offered for an event property: (code, label).
const TESTS: &[(&str, &str)] = &[
    ("is", "is"),
    ("contains", "contains"),
    ("starts", "starts with"),
    ("empty", "is empty"),
    ("not_empty", "is not empty"),
    ("gt", "is a number above"),
    ("lt", "is a number below"),
    ("eq", "is the number"),
];

fn test_code(t: &FieldTest) -> &'static str {
    match t {
        FieldTest::TextEquals { .. } => "is",
        FieldTest::TextContains { .. } => "contains",
        FieldTest::TextStartsWith { .. } => "starts",
        FieldTest::IsEmpty => "empty",
        FieldTest::IsNotEmpty => "not_empty",
        FieldTest::Number { cmp: Cmp::Gt, .. } => "gt",
        FieldTest::Number { cmp: Cmp::Lt, .. } => "lt",
        FieldTest::Number { .. } => "eq",
        _ => "other",
    }
}

fn test_value(t: &FieldTest) -> String {
    match t {
        FieldTest::TextEquals { value } | FieldTest::TextContains { value } | FieldTest::TextStartsWith { value } => {
            value.clone()
        }
        FieldTest::Number { value, .. } => value.to_string(),
        _ => String::new(),
    }
}

fn make_test(code: &str, value: &str) -> FieldTest {
    let n = value.trim().parse::<f64>().unwrap_or(0.0);
    match code {
        "contains" => FieldTest::TextContains { value: value.to_string() },
        "starts" => FieldTest::TextStartsWith { value: value.to_string() },
        "empty" => FieldTest::IsEmpty,
        "not_empty" => FieldTest::IsNotEmpty,
        "gt" => FieldTest::Number { cmp: Cmp::Gt, value: n },
        "lt" => FieldTest::Number { cmp: Cmp::Lt, value: n },
        "eq" => FieldTest::Number { cmp: Cmp::Eq, value: n },
        _ => FieldTest::TextEquals { value: value.to_string() },
    }
}

/// The id of the datalist of property names the trigger's events have carried.
const PROPERTY_NAMES: &str = "trigger-properties";

/// Property name, test and value of one condition on an event property.
#[component]
fn PropertyTestEditor(
    ctx: Ctx,
    prefix: String,
    get: Callback<(), Option<PropertyTest>>,
    set: Callback<PropertyTest>,
) -> impl IntoView {
    let dis = move || !ctx.enabled.get();
    let current = move || get.run(()).unwrap_or(PropertyTest { key: String::new(), test: FieldTest::IsNotEmpty });
    let code = Memo::new(move |_| test_code(&current().test));
    let (kid, tid, vid) = (format!("{prefix}-key"), format!("{prefix}-test"), format!("{prefix}-value"));
    let vid2 = vid.clone();
    view! {
        <label class="visually-hidden" for=kid.clone()>"Property"</label>
        <input id=kid data-test="property-key" placeholder="department" maxlength="64" disabled=dis list=PROPERTY_NAMES
            prop:value=move || current().key
            on:input=move |ev| { let mut t = current(); t.key = event_target_value(&ev).trim().to_string(); set.run(t); }/>
        <label class="visually-hidden" for=tid.clone()>"Test"</label>
        <select id=tid data-test="property-test" disabled=dis
            on:change=move |ev| { let mut t = current(); t.test = make_test(&event_target_value(&ev), &test_value(&t.test)); set.run(t); }>
            {TESTS.iter().map(|(c, l)| view! { <option value=*c selected=move || code.get() == *c>{*l}</option> }).collect_view()}
            {move || (code.get() == "other").then(|| view! { <option value="other" selected=true>{current().test.label()}</option> })}
        </select>
        {move || (!matches!(code.get(), "empty" | "not_empty" | "other")).then(|| view! {
            <label class="visually-hidden" for=vid2.clone()>"Value"</label>
            <input id=vid2.clone() data-test="property-value" maxlength="200" disabled=dis
                prop:value=move || test_value(&current().test)
                on:input=move |ev| { let mut t = current(); t.test = make_test(code.get_untracked(), &event_target_value(&ev)); set.run(t); }/>
        })}
        {let _ = vid;}
    }
}

// ---------------------------------------------------------------------------------------------
// The settings panel
// ---------------------------------------------------------------------------------------------

/// Minutes as an amount and a unit (minutes, hours, days).
#[component]
fn DurationInput(
    ctx: Ctx,
    #[prop(into)] id: String,
    #[prop(into)] test: String,
    get: Callback<(), u32>,
    set: Callback<u32>,
) -> impl IntoView {
    let initial = get.run(());
    let unit = RwSignal::new(if initial % 1440 == 0 && initial > 0 {
        1440u32
    } else if initial % 60 == 0 && initial > 0 {
        60
    } else {
        1
    });
    let dis = move || !ctx.enabled.get();
    let uid = format!("{id}-unit");
    view! {
        <span class="duration">
            <input id=id type="number" min="1" data-test=test class="narrow" disabled=dis
                prop:value=move || (get.run(()) / unit.get()).to_string()
                on:input=move |ev| { if let Ok(n) = event_target_value(&ev).trim().parse::<u32>() { set.run(n.saturating_mul(unit.get_untracked())); } }/>
            <label class="visually-hidden" for=uid.clone()>"Unit"</label>
            <select id=uid class="narrow" disabled=dis on:change=move |ev| {
                let u: u32 = event_target_value(&ev).parse().unwrap_or(1);
                let amount = get.run(()) / unit.get_untracked();
                unit.set(u);
                set.run(amount.saturating_mul(u));
            }>
                <option value="1" selected=move || unit.get() == 1>"minutes"</option>
                <option value="60" selected=move || unit.get() == 60>"hours"</option>
                <option value="1440" selected=move || unit.get() == 1440>"days"</option>
            </select>
        </span>
    }
}

#[component]
fn StepSettings(ctx: Ctx, id: String) -> impl IntoView {
    let def = ctx.def;
    let sid = StoredValue::new(id.clone());
    let kind = Memo::new(move |_| def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.code()).unwrap_or("exit")));
    let dis = move || !ctx.enabled.get();
    let read = move || def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone()));
    let field = format!("step {id}");
    view! {
        <h2>{move || def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.label()).unwrap_or_default())} " "<code>{id.clone()}</code></h2>
        <label for="step-name">"Name (optional)"</label>
        <input id="step-name" data-test="step-name" maxlength="120" disabled=dis
            prop:value=move || def.with(|d| d.step(&sid.get_value()).map(|s| s.name.clone()).unwrap_or_default())
            on:input=move |ev| { let v = event_target_value(&ev); let i = sid.get_value(); ctx.edit(|d| if let Some(s) = d.steps.iter_mut().find(|s| s.id == i) { s.name = v; }); }/>
        {move || match kind.get() {
            "send_email" => view! { <SendSettings ctx=ctx sid=sid/> }.into_any(),
            "wait" => view! { <WaitSettings ctx=ctx sid=sid/> }.into_any(),
            "wait_for" => view! { <WaitForSettings ctx=ctx sid=sid/> }.into_any(),
            "branch" => view! { <BranchSettings ctx=ctx sid=sid/> }.into_any(),
            "random_split" => view! { <SplitSettings ctx=ctx sid=sid/> }.into_any(),
            "update_list" => {
                let lists = ctx.lists.get_value();
                view! {
                    <label for="step-list">"List"</label>
                    <select id="step-list" data-test="step-list" disabled=dis on:change=move |ev| {
                        let v = Uuid::parse_str(&event_target_value(&ev)).unwrap_or_default();
                        ctx.edit_step(&sid.get_value(), |k| if let StepKind::UpdateList { list, .. } = k { *list = v; });
                    }>
                        <option value="" selected=move || matches!(read(), Some(StepKind::UpdateList { list, .. }) if list.is_nil())>"Choose a list…"</option>
                        {lists.into_iter().map(|l| view! {
                            <option value=l.id.to_string() selected=move || matches!(read(), Some(StepKind::UpdateList { list, .. }) if list == l.id)>{l.name.clone()}</option>
                        }).collect_view()}
                    </select>
                    {[(true, "Add the contact to it"), (false, "Remove the contact from it")].into_iter().map(|(on, label)| view! {
                        <label class="inline"><input type="radio" name="list-add" disabled=dis
                            prop:checked=move || matches!(read(), Some(StepKind::UpdateList { add, .. }) if add == on)
                            on:change=move |_| ctx.edit_step(&sid.get_value(), |k| if let StepKind::UpdateList { add, .. } = k { *add = on; })/>{label}</label>
                    }).collect_view()}
                }.into_any()
            }
            "notify_staff" => {
                let staff = ctx.staff.get_value();
                view! {
                    <label for="step-staff">"Notify"</label>
                    <select id="step-staff" data-test="step-staff" disabled=dis on:change=move |ev| {
                        let v = Uuid::parse_str(&event_target_value(&ev)).unwrap_or_default();
                        ctx.edit_step(&sid.get_value(), |k| if let StepKind::NotifyStaff { user, .. } = k { *user = v; });
                    }>
                        <option value="" selected=move || matches!(read(), Some(StepKind::NotifyStaff { user, .. }) if user.is_nil())>"Choose a colleague…"</option>
                        {staff.into_iter().map(|(id, name)| view! {
                            <option value=id.to_string() selected=move || matches!(read(), Some(StepKind::NotifyStaff { user, .. }) if user == id)>{name}</option>
                        }).collect_view()}
                    </select>
                    <label for="step-note">"Note (the same for every contact)"</label>
                    <textarea id="step-note" data-test="step-note" rows="3" maxlength="300" disabled=dis
                        placeholder="Please call to reschedule."
                        prop:value=move || match read() { Some(StepKind::NotifyStaff { note, .. }) => note, _ => String::new() }
                        on:input=move |ev| { let v = event_target_value(&ev); ctx.edit_step(&sid.get_value(), |k| if let StepKind::NotifyStaff { note, .. } = k { *note = v; }); }></textarea>
                    <p class="hint">"The email names the sequence and the step and links to the enrolment; it never contains the contact's name, address or data."</p>
                }.into_any()
            }
            _ => view! { <p class="hint">"The enrolment ends here (counted as exited)."</p> }.into_any(),
        }}
        {move || ctx.problem_at(&field).map(|r| view! { <p class="field-error" role="alert" data-test="settings-problem">{sentence("This step", &r)}</p> })}
    }
}

/// A change to a send step's template, purpose and policy.
type SendEdit = Box<dyn FnOnce(&mut Option<Uuid>, &mut ConsentPurpose, &mut DeliveryPolicy)>;
/// A change to a random split's paths.
type SplitEdit = Box<dyn FnOnce(&mut Vec<SplitPath>)>;

#[component]
fn SendSettings(ctx: Ctx, sid: StoredValue<String>) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let read = move || def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone()));
    let template = move || match read() {
        Some(StepKind::SendEmail { template, .. }) => template,
        _ => None,
    };
    let phi =
        move || template().is_some_and(|t| ctx.templates.with_value(|ts| ts.iter().any(|x| x.id == t && x.uses_phi)));
    let edit = move |f: SendEdit| {
        ctx.edit_step(&sid.get_value(), |k| {
            if let StepKind::SendEmail { template, purpose, policy, .. } = k {
                f(template, purpose, policy);
            }
        })
    };
    let templates = ctx.templates.get_value();
    view! {
        <label for="step-template">"Template"</label>
        <select id="step-template" data-test="step-template" disabled=dis on:change=move |ev| {
            let v = Uuid::parse_str(&event_target_value(&ev)).ok();
            let is_phi = v.is_some_and(|t| ctx.templates.with_value(|ts| ts.iter().any(|x| x.id == t && x.uses_phi)));
            edit(Box::new(move |t, _, p| { *t = v; if is_phi { *p = DeliveryPolicy::TlsRequired; } }));
        }>
            <option value="" selected=move || template().is_none()>"Choose a template…"</option>
            {templates.into_iter().map(|t| view! {
                <option value=t.id.to_string() selected=move || template() == Some(t.id)>
                    {format!("{} (version {}){}", t.name, t.latest_version, if t.uses_phi { " — contains PHI" } else { "" })}
                </option>
            }).collect_view()}
        </select>
        {move || template().map(|t| {
            let version = ctx.templates.with_value(|ts| ts.iter().find(|x| x.id == t).map(|x| x.latest_version));
            view! {
                <p class="actions">
                    {phi().then(|| view! { <span class="phi-tag">"Contains PHI"</span> })}
                    <a href=format!("/templates/{t}") target="_blank" rel="noopener">"Open the template"</a>
                </p>
                {version.map(|v| view! {
                    <div class="preview-frame">
                        <iframe title="Email preview" data-test="step-preview" sandbox="" referrerpolicy="no-referrer" width="360" height="320"
                            src=format!("/templates/{t}/preview/{v}?sample=synthetic")></iframe>
                    </div>
                })}
            }
        })}
        <label for="step-purpose">"Purpose (consent checked at send time)"</label>
        <select id="step-purpose" data-test="step-purpose" disabled=dis on:change=move |ev| {
            let v = event_target_value(&ev);
            if let Some(p) = ConsentPurpose::ALL.into_iter().find(|p| p.as_str() == v) { edit(Box::new(move |_, x, _| *x = p)); }
        }>
            {ConsentPurpose::ALL.into_iter().map(|p| view! {
                <option value=p.as_str() selected=move || matches!(read(), Some(StepKind::SendEmail { purpose, .. }) if purpose == p)>{p.label()}</option>
            }).collect_view()}
        </select>
        <fieldset>
            <legend>"Delivery"</legend>
            {DeliveryPolicy::ALL.into_iter().map(|p| view! {
                <label class="inline"><input type="radio" name="step-policy" data-test=format!("step-policy-{}", p.as_str())
                    disabled=move || dis() || (p == DeliveryPolicy::TlsPreferred && phi())
                    prop:checked=move || matches!(read(), Some(StepKind::SendEmail { policy, .. }) if policy == p)
                    on:change=move |_| edit(Box::new(move |_, _, x| *x = p))/>{p.label()}</label>
            }).collect_view()}
            {move || phi().then(|| view! { <p class="hint">"This template contains patient information: TLS is required."</p> })}
        </fieldset>
    }
}

#[component]
fn WaitSettings(ctx: Ctx, sid: StoredValue<String>) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let wait = move || match def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone())) {
        Some(StepKind::Wait { wait, .. }) => Some(wait),
        _ => None,
    };
    let code = Memo::new(move |_| match wait() {
        Some(WaitSpec::Duration { .. }) | None => "duration",
        Some(WaitSpec::BusinessDays { .. }) => "business_days",
        Some(WaitSpec::TimeOfDay { .. }) => "time_of_day",
        Some(WaitSpec::UntilEventTime { .. }) => "until_event_time",
    });
    let set = move |w: WaitSpec| {
        ctx.edit_step(&sid.get_value(), |k| {
            if let StepKind::Wait { wait, .. } = k {
                *wait = w;
            }
        })
    };
    view! {
        <label for="wait-kind">"Wait"</label>
        <select id="wait-kind" data-test="wait-kind" disabled=dis on:change=move |ev| {
            set(match event_target_value(&ev).as_str() {
                "business_days" => WaitSpec::BusinessDays { days: 1 },
                "time_of_day" => WaitSpec::TimeOfDay { hour: 9, minute: 0 },
                "until_event_time" => WaitSpec::UntilEventTime { property: "appointment_at".into(), offset_minutes: -2 * 1440 },
                _ => WaitSpec::Duration { minutes: 1440 },
            });
        }>
            <option value="duration" selected=move || code.get() == "duration">"For a duration"</option>
            <option value="business_days" selected=move || code.get() == "business_days">"For business days"</option>
            <option value="time_of_day" selected=move || code.get() == "time_of_day">"Until a time of day (contact's zone)"</option>
            <option value="until_event_time" selected=move || code.get() == "until_event_time">"Until a time in the trigger event"</option>
        </select>
        {move || match code.get() {
            "duration" => view! {
                <label for="wait-duration">"Duration"</label>
                <DurationInput ctx=ctx id="wait-duration" test="wait-duration"
                    get=Callback::new(move |()| match wait() { Some(WaitSpec::Duration { minutes }) => minutes, _ => 0 })
                    set=Callback::new(move |m| set(WaitSpec::Duration { minutes: m }))/>
            }.into_any(),
            "business_days" => view! {
                <label for="wait-days">"Business days (Monday–Friday)"</label>
                <input id="wait-days" type="number" min="1" max="260" data-test="wait-days" disabled=dis
                    prop:value=move || match wait() { Some(WaitSpec::BusinessDays { days }) => days.to_string(), _ => String::new() }
                    on:input=move |ev| { if let Ok(days) = event_target_value(&ev).trim().parse() { set(WaitSpec::BusinessDays { days }); } }/>
            }.into_any(),
            "time_of_day" => view! {
                <label for="wait-time">"Time of day"</label>
                <input id="wait-time" type="time" data-test="wait-time" disabled=dis
                    prop:value=move || match wait() { Some(WaitSpec::TimeOfDay { hour, minute }) => format!("{hour:02}:{minute:02}"), _ => String::new() }
                    on:input=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some((h, m)) = v.split_once(':') && let (Ok(hour), Ok(minute)) = (h.parse(), m.parse()) {
                            set(WaitSpec::TimeOfDay { hour, minute });
                        }
                    }/>
            }.into_any(),
            _ => {
                let current = move || match wait() { Some(WaitSpec::UntilEventTime { property, offset_minutes }) => (property, offset_minutes), _ => (String::new(), 0) };
                view! {
                    <label for="wait-property">"Event property holding the time"</label>
                    <input id="wait-property" data-test="wait-property" placeholder="appointment_at" maxlength="64" disabled=dis list=PROPERTY_NAMES
                        prop:value=move || current().0
                        on:input=move |ev| { let (_, o) = current(); set(WaitSpec::UntilEventTime { property: event_target_value(&ev).trim().to_string(), offset_minutes: o }); }/>
                    <label for="wait-offset">"Offset"</label>
                    <span class="duration">
                        <DurationInput ctx=ctx id="wait-offset" test="wait-offset"
                            get=Callback::new(move |()| current().1.unsigned_abs() as u32)
                            set=Callback::new(move |m: u32| { let (p, o) = current(); let m = i64::from(m); set(WaitSpec::UntilEventTime { property: p, offset_minutes: if o < 0 { -m } else { m } }); })/>
                        <label class="visually-hidden" for="wait-side">"Before or after"</label>
                        <select id="wait-side" class="narrow" data-test="wait-side" disabled=dis on:change=move |ev| {
                            let before = event_target_value(&ev) == "before";
                            let (p, o) = current();
                            set(WaitSpec::UntilEventTime { property: p, offset_minutes: if before { -o.abs() } else { o.abs() } });
                        }>
                            <option value="before" selected=move || current().1 < 0>"before"</option>
                            <option value="after" selected=move || current().1 >= 0>"after"</option>
                        </select>
                    </span>
                    <p class="hint">"Skipped when that moment has already passed."</p>
                }.into_any()
            }
        }}
    }
}

/// The send steps of the working copy (what opens and clicks can refer to).
fn send_steps(def: &SequenceDefinition) -> Vec<(String, String)> {
    def.steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::SendEmail { .. }))
        .map(|s| (s.id.clone(), if s.name.is_empty() { s.id.clone() } else { format!("{} ({})", s.name, s.id) }))
        .collect()
}

#[component]
fn WaitForSettings(ctx: Ctx, sid: StoredValue<String>) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let read = move || match def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone())) {
        Some(StepKind::WaitFor { event, timeout_minutes, .. }) => Some((event, timeout_minutes)),
        _ => None,
    };
    let code = Memo::new(move |_| match read().map(|r| r.0) {
        Some(Awaited::Clicked { .. }) => "clicked",
        Some(Awaited::Event { .. }) => "event",
        _ => "opened",
    });
    let set_event = move |e: Awaited| {
        ctx.edit_step(&sid.get_value(), |k| {
            if let StepKind::WaitFor { event, .. } = k {
                *event = e;
            }
        })
    };
    let sends = move || def.with(send_steps);
    let awaited_step = move || match read().map(|r| r.0) {
        Some(Awaited::Opened { step } | Awaited::Clicked { step }) => step,
        _ => String::new(),
    };
    view! {
        <label for="waitfor-kind">"Wait for"</label>
        <select id="waitfor-kind" data-test="waitfor-kind" disabled=dis on:change=move |ev| {
            let first = sends().first().map(|s| s.0.clone()).unwrap_or_default();
            set_event(match event_target_value(&ev).as_str() {
                "clicked" => Awaited::Clicked { step: first },
                "event" => Awaited::Event { event: EventMatch { event_type: String::new(), correlated: false } },
                _ => Awaited::Opened { step: first },
            });
        }>
            <option value="opened" selected=move || code.get() == "opened">"The contact opens an email"</option>
            <option value="clicked" selected=move || code.get() == "clicked">"The contact clicks in an email"</option>
            <option value="event" selected=move || code.get() == "event">"A patient event"</option>
        </select>
        {move || if code.get() == "event" {
            let ev_of = move || match read().map(|r| r.0) { Some(Awaited::Event { event }) => event, _ => EventMatch { event_type: String::new(), correlated: false } };
            view! {
                <label for="waitfor-event">"Event type"</label>
                <input id="waitfor-event" data-test="waitfor-event" placeholder="appointment.confirmed" maxlength="64" disabled=dis
                    prop:value=move || ev_of().event_type
                    on:input=move |ev| { let mut e = ev_of(); e.event_type = event_target_value(&ev).trim().to_string(); set_event(Awaited::Event { event: e }); }/>
                <label class="inline"><input type="checkbox" data-test="waitfor-correlated" disabled=dis prop:checked=move || ev_of().correlated
                    on:change=move |ev| { let mut e = ev_of(); e.correlated = event_target_checked(&ev); set_event(Awaited::Event { event: e }); }/>
                    "with the same correlation key"</label>
            }.into_any()
        } else {
            view! {
                <label for="waitfor-step">"Email"</label>
                <select id="waitfor-step" data-test="waitfor-step" disabled=dis on:change=move |ev| {
                    let step = event_target_value(&ev);
                    set_event(if code.get_untracked() == "clicked" { Awaited::Clicked { step } } else { Awaited::Opened { step } });
                }>
                    <option value="" selected=move || awaited_step().is_empty()>"Choose an email step…"</option>
                    {sends().into_iter().map(|(id, label)| {
                        let id2 = id.clone();
                        view! { <option value=id selected=move || awaited_step() == id2>{label}</option> }
                    }).collect_view()}
                </select>
            }.into_any()
        }}
        <label for="waitfor-timeout">"Give up after"</label>
        <DurationInput ctx=ctx id="waitfor-timeout" test="waitfor-timeout"
            get=Callback::new(move |()| read().map(|r| r.1).unwrap_or(0))
            set=Callback::new(move |m| ctx.edit_step(&sid.get_value(), |k| if let StepKind::WaitFor { timeout_minutes, .. } = k { *timeout_minutes = m; }))/>
        <p class="hint">"An event that happened since the enrolment began counts at once. The left path is taken when it happens, the right one on timeout."</p>
    }
}

#[component]
fn BranchSettings(ctx: Ctx, sid: StoredValue<String>) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let read = move || match def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone())) {
        Some(StepKind::Branch { test, .. }) => Some(test),
        _ => None,
    };
    let code = Memo::new(move |_| match read() {
        Some(BranchTest::Engaged { .. }) => "engaged",
        Some(BranchTest::Contact { .. }) => "contact",
        _ => "event_property",
    });
    let set = move |t: BranchTest| {
        ctx.edit_step(&sid.get_value(), |k| {
            if let StepKind::Branch { test, .. } = k {
                *test = t;
            }
        })
    };
    let sends = move || def.with(send_steps);
    view! {
        <label for="branch-kind">"Condition on"</label>
        <select id="branch-kind" data-test="branch-kind" disabled=dis on:change=move |ev| {
            let first = sends().first().map(|s| s.0.clone()).unwrap_or_default();
            set(match event_target_value(&ev).as_str() {
                "engaged" => BranchTest::Engaged { clicked: false, step: first },
                "contact" => BranchTest::Contact { root: domain::segments::Node::And { children: vec![] } },
                _ => BranchTest::EventProperty { test: PropertyTest { key: String::new(), test: FieldTest::TextEquals { value: String::new() } } },
            });
        }>
            <option value="event_property" selected=move || code.get() == "event_property">"A property of the trigger event"</option>
            <option value="engaged" selected=move || code.get() == "engaged">"Engagement with an email"</option>
            <option value="contact" selected=move || code.get() == "contact">"The contact (fields, lists, consent, history)"</option>
        </select>
        {move || match code.get() {
            "event_property" => view! {
                <div class="condition-row" data-test="branch-condition">
                    <PropertyTestEditor ctx=ctx prefix="branch".to_string()
                        get=Callback::new(move |()| match read() { Some(BranchTest::EventProperty { test }) => Some(test), _ => None })
                        set=Callback::new(move |t| set(BranchTest::EventProperty { test: t }))/>
                </div>
            }.into_any(),
            "engaged" => {
                let cur = move || match read() { Some(BranchTest::Engaged { clicked, step }) => (clicked, step), _ => (false, String::new()) };
                view! {
                    <label for="branch-engaged">"The contact"</label>
                    <select id="branch-engaged" data-test="branch-engaged" disabled=dis on:change=move |ev| {
                        let (_, step) = cur();
                        set(BranchTest::Engaged { clicked: event_target_value(&ev) == "clicked", step });
                    }>
                        <option value="opened" selected=move || !cur().0>"opened"</option>
                        <option value="clicked" selected=move || cur().0>"clicked in"</option>
                    </select>
                    <label for="branch-step">"Email"</label>
                    <select id="branch-step" data-test="branch-step" disabled=dis on:change=move |ev| {
                        let (clicked, _) = cur();
                        set(BranchTest::Engaged { clicked, step: event_target_value(&ev) });
                    }>
                        <option value="" selected=move || cur().1.is_empty()>"Choose an email step…"</option>
                        {sends().into_iter().map(|(id, label)| {
                            let id2 = id.clone();
                            view! { <option value=id selected=move || cur().1 == id2>{label}</option> }
                        }).collect_view()}
                    </select>
                }.into_any()
            }
            _ => view! {
                <ContactCondition ctx=ctx
                    get=Callback::new(move |()| match read() { Some(BranchTest::Contact { root }) => Some(root), _ => None })
                    set=Callback::new(move |root| set(BranchTest::Contact { root }))/>
            }.into_any(),
        }}
        <p class="hint">"Contacts for whom it holds take the left path (Yes), the others the right one (No)."</p>
    }
}

/// A branch on the contact: the segment builder's condition tree (fields, lists, consent,
/// engagement, patient events), loaded with the segment builder's options when opened.
#[component]
fn ContactCondition(
    ctx: Ctx,
    get: Callback<(), Option<domain::segments::Node>>,
    set: Callback<domain::segments::Node>,
) -> impl IntoView {
    use crate::pages::segments::builder::{Ctx as TreeCtx, group_view};
    use domain::segments::SegmentDefinition;
    let options = Action::new(|_: &()| crate::api_segments::segment_options());
    Effect::new(move || {
        options.dispatch(());
    });
    view! {
        <div class="contact-condition" data-test="branch-contact">
            {move || match options.value().get() {
                None => view! { <p>"Loading the conditions…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(opts)) => {
                    let start = get.run(()).unwrap_or(domain::segments::Node::And { children: vec![] });
                    let tree = RwSignal::new(SegmentDefinition { root: start, ..SegmentDefinition::default() });
                    let structure = RwSignal::new(0u32);
                    let enabled = ctx.enabled;
                    let tctx = TreeCtx { def: tree, structure, enabled, options: StoredValue::new(opts) };
                    // Every edit of the tree is an edit of the step.
                    Effect::new(move || {
                        let root = tree.with(|d| d.root.clone());
                        if get.run(()).as_ref() != Some(&root) {
                            set.run(root);
                        }
                    });
                    view! { {move || { structure.get(); group_view(tctx, vec![], 1) }} }.into_any()
                }
            }}
        </div>
    }
}

#[component]
fn SplitSettings(ctx: Ctx, sid: StoredValue<String>) -> impl IntoView {
    let def = ctx.def;
    let dis = move || !ctx.enabled.get();
    let paths = move || match def.with(|d| d.step(&sid.get_value()).map(|s| s.kind.clone())) {
        Some(StepKind::RandomSplit { paths }) => paths,
        _ => Vec::new(),
    };
    let n = Memo::new(move |_| paths().len());
    let edit = move |f: SplitEdit| {
        ctx.edit_step(&sid.get_value(), |k| {
            if let StepKind::RandomSplit { paths } = k {
                f(paths);
            }
        })
    };
    view! {
        <fieldset>
            <legend>"Paths (percentages add up to 100)"</legend>
            {move || (0..n.get()).map(|i| {
                let pid = format!("split-{i}");
                view! {
                    <div class="condition-row">
                        <label for=pid.clone()>{format!("Path {}", i + 1)}</label>
                        <input id=pid type="number" min="1" max="99" class="narrow" data-test="split-percent" disabled=dis
                            prop:value=move || paths().get(i).map(|p| p.percent.to_string()).unwrap_or_default()
                            on:input=move |ev| {
                                if let Ok(v) = event_target_value(&ev).trim().parse::<u32>() {
                                    edit(Box::new(move |ps| if let Some(p) = ps.get_mut(i) { p.percent = v; }));
                                }
                            }/>
                        " %"
                        <button type="button" class="link danger" disabled=move || dis() || (n.get() <= 2)
                            on:click=move |_| edit(Box::new(move |ps| if i < ps.len() { ps.remove(i); }))>"Remove"</button>
                    </div>
                }
            }).collect_view()}
            {move || { let sum: u32 = paths().iter().map(|p| p.percent).sum(); (sum != 100).then(|| view! { <p class="hint">{format!("Now {sum} %.")}</p> }) }}
            <button type="button" data-test="add-split-path" disabled=move || dis() || (n.get() >= 10)
                on:click=move |_| edit(Box::new(|ps| ps.push(SplitPath { percent: 0, next: None })))>"Add a path"</button>
        </fieldset>
    }
}

// ---------------------------------------------------------------------------------------------
// Test run
// ---------------------------------------------------------------------------------------------

#[component]
fn TestRun(id: Uuid, dirty: RwSignal<bool>) -> impl IntoView {
    let hydrated = use_hydrated();
    let rows = RwSignal::new(vec![(String::new(), String::new())]);
    let responds = RwSignal::new(false);
    let holds = RwSignal::new(true);
    let start = RwSignal::new(now_utc().format("%Y-%m-%dT%H:%M").to_string());
    let error = RwSignal::new(None::<AppError>);
    let zone = RwSignal::new(String::new());
    let run = Action::new(move |(sim, zone): &(Simulation, String)| {
        let zone = Some(zone.trim().to_string()).filter(|z| !z.is_empty());
        test_run_sequence(id, sim.clone(), zone)
    });
    let result = RwSignal::new(None::<Vec<TestRunStep>>);
    Effect::new(move || match run.value().get() {
        Some(Ok(r)) => {
            error.set(None);
            result.set(Some(r));
        }
        Some(Err(e)) => {
            result.set(None);
            error.set(Some(e));
        }
        None => {}
    });
    let go = move |_| {
        let at = chrono::NaiveDateTime::parse_from_str(&start.get_untracked(), "%Y-%m-%dT%H:%M")
            .map(|t| t.and_utc())
            .unwrap_or_else(|_| now_utc());
        let event: BTreeMap<String, FieldValue> = rows
            .get_untracked()
            .into_iter()
            .filter(|(k, _)| !k.trim().is_empty())
            .map(|(k, v)| {
                let v = v.trim().to_string();
                let value = if let Ok(n) = v.parse::<f64>() {
                    FieldValue::Number(n)
                } else if let Ok(d) = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
                    FieldValue::Date(d)
                } else if v == "true" || v == "false" {
                    FieldValue::Boolean(v == "true")
                } else {
                    FieldValue::Text(v)
                };
                (k.trim().to_string(), value)
            })
            .collect();
        run.dispatch((
            Simulation {
                start: at,
                event,
                responds: responds.get_untracked(),
                branches_hold: holds.get_untracked(),
                draw: 0,
            },
            zone.get_untracked(),
        ));
    };
    let n = Memo::new(move |_| rows.with(Vec::len));
    view! {
        <section class="panel" data-test="test-run">
            <h2>"Test run"</h2>
            <p class="hint">"Traces a made-up contact through the saved draft with a simulated clock. Times are shown in UTC; the contact's time zone decides quiet hours, times of day and business days. Nothing is sent and no enrolment is made."</p>
            {move || dirty.get().then(|| view! { <p class="alert warn">"Save the draft first: the test run uses the saved copy."</p> })}
            <fieldset>
                <legend>"The trigger event's properties"</legend>
                {move || (0..n.get()).map(|i| view! {
                    <div class="condition-row" data-test="sim-property">
                        <label class="visually-hidden" for=format!("sim-key-{i}")>"Property"</label>
                        <input id=format!("sim-key-{i}") data-test="sim-key" placeholder="appointment_at" maxlength="64"
                            prop:value=move || rows.with(|r| r.get(i).map(|x| x.0.clone()).unwrap_or_default())
                            on:input=move |ev| { let v = event_target_value(&ev); rows.update(|r| if let Some(x) = r.get_mut(i) { x.0 = v; }); }/>
                        <label class="visually-hidden" for=format!("sim-value-{i}")>"Value"</label>
                        <input id=format!("sim-value-{i}") data-test="sim-value" placeholder="2026-12-20T15:00:00Z" maxlength="200"
                            prop:value=move || rows.with(|r| r.get(i).map(|x| x.1.clone()).unwrap_or_default())
                            on:input=move |ev| { let v = event_target_value(&ev); rows.update(|r| if let Some(x) = r.get_mut(i) { x.1 = v; }); }/>
                        <button type="button" class="link danger" on:click=move |_| rows.update(|r| if i < r.len() { r.remove(i); })>"Remove"</button>
                    </div>
                }).collect_view()}
                <button type="button" data-test="sim-add" disabled=move || !hydrated.get()
                    on:click=move |_| rows.update(|r| r.push((String::new(), String::new())))>"Add a property"</button>
            </fieldset>
            <div class="actions">
                <label class="inline"><input type="checkbox" data-test="sim-responds" prop:checked=move || responds.get()
                    on:change=move |ev| responds.set(event_target_checked(&ev))/>"The patient responds (opens, clicks, the awaited event happens an hour later)"</label>
                <label class="inline"><input type="checkbox" data-test="sim-holds" prop:checked=move || holds.get()
                    on:change=move |ev| holds.set(event_target_checked(&ev))/>"Branch conditions hold"</label>
                <label class="inline" for="sim-start">"Starts at (UTC)"</label>
                <input id="sim-start" type="datetime-local" data-test="sim-start" class="narrow" prop:value=move || start.get()
                    on:input=move |ev| start.set(event_target_value(&ev))/>
                <label class="inline" for="sim-zone">"Contact's time zone"</label>
                <div>
                    <input id="sim-zone" type="text" list="sim-zones" data-test="sim-zone" class="narrow" autocomplete="off" spellcheck="false"
                        placeholder="UTC" maxlength="64" prop:value=move || zone.get() on:input=move |ev| zone.set(event_target_value(&ev))/>
                    <datalist id="sim-zones">
                        {domain::time_zones::TIME_ZONES.iter().map(|z| view! { <option value=*z></option> }).collect_view()}
                    </datalist>
                    <FieldError error=error field="time_zone" label="Time zone"/>
                </div>
                <button type="button" class="primary" data-test="run-test" disabled=move || !hydrated.get() || run.pending().get() on:click=go>
                    {move || if run.pending().get() { "Running…" } else { "Run" }}
                </button>
            </div>
            <ErrorMessage error=unplaced(error.into(), &["time_zone"])/>
            {move || result.get().map(|steps| view! {
                <ol class="test-path" data-test="test-path">
                    {steps.into_iter().map(|s| view! {
                        <li data-test="test-step" data-step=s.step_id.clone() data-outcome=s.outcome.clone()>
                            <span class="muted">{format_time(s.at)}</span> " "
                            {if s.step_id.is_empty() { "End".to_string() } else { format!("{} ({})", s.step_id, s.kind.replace('_', " ")) }}
                            " — " {outcome_words(&s.outcome)}
                        </li>
                    }).collect_view()}
                </ol>
            })}
        </section>
    }
}

fn outcome_words(code: &str) -> String {
    domain::sequences::TrailEntry {
        visit: 0,
        step_id: String::new(),
        kind: String::new(),
        outcome: code.to_string(),
        detail: Vec::new(),
        at: chrono::DateTime::<chrono::Utc>::default(),
    }
    .describe()
    .to_string()
}
