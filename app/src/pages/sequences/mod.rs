//! Sequences: the list (status, trigger, live figures) with "New sequence", the builder page with
//! its report tab (funnel, ways out, time to convert, email figures) and its enrolments tab
//! (state, step, next wake-up, entered at, the decision trail, removing a contact), and the
//! contact page's "Sequences" section.
//!
//! Hydration: data loads through actions dispatched by effects (browser only), so the server and
//! the browser first render the same "Loading…" (docs/architecture.md, hydration rules).

pub mod builder;
pub mod flow;
pub mod report;

use crate::api_contacts::list_lists;
use crate::api_sequences::{
    contact_enrolments, create_sequence, enrol_contact, enrolment_trail, list_sequences, open_sequence,
    remove_enrolment, sequence_enrolments,
};
use crate::api_templates::list_templates;
use crate::components::{
    ErrorMessage, FieldError, Guard, NotFoundPanel, NotFoundStatus, format_time, hard_navigate, unplaced, use_hydrated,
    use_me,
};
use crate::error::AppError;
use builder::{Builder, status_badge};
use domain::Permission;
use domain::sequences::{EnrolmentState, EnrolmentView, TrailEntry};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use uuid::Uuid;

#[component]
pub fn SequencesPage() -> impl IntoView {
    view! {
        <Title text="Sequences · Hermetic"/>
        <Guard permission=Permission::SequencesRead>
            <SequenceList/>
        </Guard>
    }
}

#[component]
fn SequenceList() -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::SequencesWrite));
    let load = Action::new(|_: &()| list_sequences());
    Effect::new(move || {
        load.dispatch(());
    });
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<AppError>);
    let create = Action::new(|n: &String| create_sequence(n.clone()));
    Effect::new(move || match create.value().get() {
        Some(Ok(id)) => hard_navigate(&format!("/sequences/{id}")),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    view! {
        <section class="panel">
            <div class="panel-head"><h1>"Sequences"</h1></div>
            <p class="hint">"Follow-up emails triggered by patient events from your systems: a confirmation when an appointment is booked, a reminder the day before, a survey after the visit."</p>
            {can_write.then(|| view! {
                <form class="inline new-sequence" data-test="new-sequence" on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    error.set(None);
                    create.dispatch(name.get_untracked());
                }>
                    <label for="new-sequence-name">"New sequence"</label>
                    <div>
                        <input id="new-sequence-name" data-test="new-sequence-name" maxlength="120" placeholder="Appointment reminders"
                            bind:value=name/>
                        <FieldError error=error field="name" label="Name"/>
                    </div>
                    <button type="submit" class="primary" data-test="create-sequence"
                        disabled=move || !hydrated.get() || create.pending().get()>
                        {move || if create.pending().get() { "Creating…" } else { "Create" }}
                    </button>
                </form>
                <ErrorMessage error=unplaced(error.into(), &["name"])/>
            })}
        </section>
        <section class="panel">
            {move || match load.value().get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <p class="empty" data-test="no-sequences">{if can_write {
                        "No sequences yet. Name one above to start building it."
                    } else {
                        "No sequences yet."
                    }}</p>
                }.into_any(),
                Some(Ok(list)) => view! {
                    <div class="table-wrap">
                        <table data-test="sequences">
                            <caption class="visually-hidden">"Sequences"</caption>
                            <thead><tr>
                                <th scope="col">"Name"</th><th scope="col">"Status"</th><th scope="col">"Trigger"</th>
                                <th scope="col">"In it now"</th><th scope="col">"Entered"</th><th scope="col">"Converted"</th><th scope="col">"Updated"</th>
                            </tr></thead>
                            <tbody>
                                {list.into_iter().map(|s| view! {
                                    <tr data-test="sequence-row">
                                        <td><a href=format!("/sequences/{}", s.id)>{s.name.clone()}</a></td>
                                        <td>{status_badge(s.status)}{s.version.map(|v| view! { <span class="hint">{format!(" v{v}")}</span> })}</td>
                                        <td>{s.trigger.clone()}</td>
                                        <td data-test="active">{s.active.label()}</td>
                                        <td data-test="entered">{s.entered.label()}</td>
                                        <td data-test="converted">{s.converted.label()}</td>
                                        <td>{format_time(s.updated_at)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

/// `/sequences/{id}`: the builder, and the enrolments for people who may read contacts.
#[component]
pub fn SequencePage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    let me = use_me();
    let can_write = me.as_ref().is_some_and(|m| m.can(Permission::SequencesWrite));
    let reads_contacts = me.as_ref().is_some_and(|m| m.can(Permission::ContactsRead));
    let reads_reports = me.as_ref().is_some_and(|m| m.can(Permission::ReportsRead));
    let load = Action::new(move |id: &Option<Uuid>| {
        let id = *id;
        async move {
            let Some(id) = id else { return Err(AppError::new("not_found", "Not found.")) };
            let view = open_sequence(id).await?;
            // The pickers; a role without them still sees the flow (names fall back to ids).
            let templates = list_templates().await.unwrap_or_default();
            let lists = list_lists().await.unwrap_or_default();
            let segments = crate::api_segments::list_segments().await.unwrap_or_default();
            let campaigns = crate::api_campaigns::list_campaigns().await.unwrap_or_default();
            let sources = (
                segments.into_iter().map(|s| (s.id, s.name)).collect::<Vec<_>>(),
                campaigns.into_iter().map(|c| (c.id, c.name)).collect::<Vec<_>>(),
            );
            Ok::<_, AppError>((view, templates, lists, sources))
        }
    });
    Effect::new(move || {
        load.dispatch(id());
    });
    let reload = Callback::new(move |()| {
        load.dispatch(id());
    });
    let raw_id = params.with_untracked(|p| p.get("id"));
    let bad_id = raw_id.as_deref().is_some_and(|s| Uuid::parse_str(s).is_err());
    // A staff notice links to one enrolment: open the enrolments with its trail.
    let focus = use_query_map().with_untracked(|q| q.get("enrolment").and_then(|v| Uuid::parse_str(&v).ok()));
    let tab = RwSignal::new(if focus.is_some() && reads_contacts { "enrolments" } else { "flow" });
    view! {
        <Title text="Sequence · Hermetic"/>
        <Guard permission=Permission::SequencesRead>
            <NotFoundStatus id=raw_id.clone() exists=|id| async move { open_sequence(id).await.map(|_| ()) }/>
            <p><a href="/sequences">"← All sequences"</a></p>
            {(reads_contacts || reads_reports).then(|| view! {
                <div class="tabs" role="tablist">
                    <button type="button" role="tab" data-test="tab-flow" class:active=move || tab.get() == "flow"
                        aria-selected=move || (tab.get() == "flow").to_string() on:click=move |_| tab.set("flow")>"Flow"</button>
                    {reads_reports.then(|| view! {
                        <button type="button" role="tab" data-test="tab-report" class:active=move || tab.get() == "report"
                            aria-selected=move || (tab.get() == "report").to_string() on:click=move |_| tab.set("report")>"Report"</button>
                    })}
                    {reads_contacts.then(|| view! {
                        <button type="button" role="tab" data-test="tab-enrolments" class:active=move || tab.get() == "enrolments"
                            aria-selected=move || (tab.get() == "enrolments").to_string() on:click=move |_| tab.set("enrolments")>"Enrolments"</button>
                    })}
                </div>
            })}
            {move || match load.value().get() {
                _ if bad_id => view! { <NotFoundPanel back_href="/sequences" back_label="All sequences"/> }.into_any(),
                None => view! { <section class="panel"><p>"Loading…"</p></section> }.into_any(),
                Some(Err(e)) => crate::components::load_error(e, "/sequences", "All sequences"),
                Some(Ok((view, templates, lists, (segments, campaigns)))) => {
                    let sid = view.id;
                    view! {
                        <div class:hidden=move || tab.get() != "flow">
                            <Builder view=view templates=templates lists=lists segments=segments campaigns=campaigns can_write=can_write reload=reload/>
                        </div>
                        {move || (tab.get() == "report").then(|| view! { <report::SequenceReportPanel id=sid/> })}
                        {move || (tab.get() == "enrolments").then(|| view! { <Enrolments id=sid focus=focus/> })}
                    }.into_any()
                }
            }}
        </Guard>
    }
}

fn state_badge(e: &EnrolmentView) -> impl IntoView + use<> {
    let class = match e.state {
        EnrolmentState::Active => "badge ok",
        EnrolmentState::Converted => "badge ok",
        _ => "badge",
    };
    let text = match e.end_reason {
        Some(r) => format!("{} · {}", e.state.label(), r.label()),
        None => e.state.label().to_string(),
    };
    view! { <span class=class data-test="enrolment-state">{text}</span> }
}

/// A sequence's enrolments, newest first, with the state filter.
#[component]
fn Enrolments(id: Uuid, focus: Option<Uuid>) -> impl IntoView {
    let state = RwSignal::new(String::new());
    let version = RwSignal::new(0u32);
    let load = Action::new(move |s: &String| sequence_enrolments(id, EnrolmentState::parse(s)));
    Effect::new(move || {
        version.track();
        load.dispatch(state.get());
    });
    view! {
        <section class="panel" data-test="enrolments">
            <div class="panel-head">
                <h2>"Enrolments"</h2>
                <div class="actions">
                    <label for="enrolment-state">"Show"</label>
                    <select id="enrolment-state" class="narrow" data-test="enrolment-filter" on:change=move |ev| state.set(event_target_value(&ev))>
                        <option value="">"All"</option>
                        {EnrolmentState::ALL.into_iter().map(|s| view! { <option value=s.as_str()>{s.label()}</option> }).collect_view()}
                    </select>
                    <button type="button" data-test="refresh-enrolments" on:click=move |_| version.update(|v| *v += 1)>"Refresh"</button>
                </div>
            </div>
            <p class="hint">"Opening this list is recorded in the audit log: being in a sequence says something about a patient."</p>
            {move || match load.value().get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! { <p class="empty" data-test="no-enrolments">"Nobody has entered this sequence yet."</p> }.into_any(),
                Some(Ok(list)) => view! { <EnrolmentTable list=list show_sequence=false version=version focus=focus/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn EnrolmentTable(
    list: Vec<EnrolmentView>,
    show_sequence: bool,
    version: RwSignal<u32>,
    focus: Option<Uuid>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-test="enrolment-table">
                <caption class="visually-hidden">"Enrolments"</caption>
                <thead><tr>
                    <th scope="col">{if show_sequence { "Sequence" } else { "Contact" }}</th>
                    <th scope="col">"State"</th><th scope="col">"Step"</th><th scope="col">"Next wake-up"</th>
                    <th scope="col">"Entered"</th><th scope="col">"Version"</th><th scope="col">"Actions"</th>
                </tr></thead>
                <tbody>
                    {list.into_iter().map(|e| {
                        let focused = focus == Some(e.id);
                        view! { <EnrolmentRow e=e show_sequence=show_sequence version=version focused=focused/> }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn EnrolmentRow(
    e: EnrolmentView,
    show_sequence: bool,
    version: RwSignal<u32>,
    #[prop(optional)] focused: bool,
) -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::SequencesWrite));
    let id = e.id;
    let trail = Action::new(move |_: &()| enrolment_trail(id));
    let open = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let remove = Action::new(move |_: &()| remove_enrolment(id));
    Effect::new(move || match remove.value().get() {
        Some(Ok(())) => {
            confirming.set(false);
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    // The enrolment a staff notice linked to: its trail open once the page runs.
    Effect::new(move || {
        if focused && hydrated.get() && !open.get_untracked() {
            open.set(true);
            trail.dispatch(());
        }
    });
    let active = e.state == EnrolmentState::Active;
    let badge = state_badge(&e);
    let first = if show_sequence {
        view! { <a href=format!("/sequences/{}", e.sequence_id)>{e.sequence_name.clone()}</a> }.into_any()
    } else {
        view! { <a href=format!("/contacts/{}", e.contact_id) data-test="enrolment-contact">"Open contact"</a> }
            .into_any()
    };
    view! {
        <tr data-test="enrolment" data-contact=e.contact_id.to_string() data-state=e.state.as_str() class:focused=focused>
            <td>{first}</td>
            <td>{badge}</td>
            <td data-test="enrolment-step">{e.step_id.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{e.wake_at.map(format_time).unwrap_or_else(|| "—".into())}</td>
            <td>{format_time(e.entered_at)}</td>
            <td>{e.version}</td>
            <td class="actions">
                <button type="button" data-test="show-trail" disabled=move || !hydrated.get()
                    aria-expanded=move || open.get().to_string()
                    on:click=move |_| { let o = !open.get_untracked(); open.set(o); if o { trail.dispatch(()); } }>"Why?"</button>
                {(active && can_write).then(|| view! {
                    {move || if confirming.get() {
                        view! {
                            <span>"Remove this contact from the sequence?"</span>
                            <button type="button" class="danger" data-test="confirm-remove-enrolment" disabled=move || remove.pending().get()
                                on:click=move |_| { remove.dispatch(()); }>"Remove"</button>
                            <button type="button" on:click=move |_| confirming.set(false)>"Keep"</button>
                        }.into_any()
                    } else {
                        view! {
                            <button type="button" class="danger" data-test="remove-enrolment" disabled=move || !hydrated.get()
                                on:click=move |_| confirming.set(true)>"Remove from sequence…"</button>
                        }.into_any()
                    }}
                })}
                <ErrorMessage error=error/>
            </td>
        </tr>
        {move || open.get().then(|| view! {
            <tr class="trail-row"><td colspan="7">
                {move || match trail.value().get() {
                    None => view! { <p>"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    Some(Ok(t)) => view! { <Trail entries=t/> }.into_any(),
                }}
            </td></tr>
        })}
    }
}

#[component]
fn Trail(entries: Vec<TrailEntry>) -> impl IntoView {
    if entries.is_empty() {
        return view! { <p class="empty">"No decisions recorded yet."</p> }.into_any();
    }
    view! {
        <ol class="trail" data-test="trail">
            {entries.into_iter().map(|t| {
                let detail = t.detail.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" · ");
                view! {
                    <li data-test="trail-entry" data-outcome=t.outcome.clone()>
                        <span class="muted">{format_time(t.at)}</span> " "
                        {(!t.step_id.is_empty()).then(|| view! { <code>{t.step_id.clone()}</code> " " })}
                        {t.describe()}
                        {(!detail.is_empty()).then(|| view! { " " <code class="details">{detail}</code> })}
                    </li>
                }
            }).collect_view()}
        </ol>
    }
    .into_any()
}

/// The contact page's "Sequences" section: the contact's enrolments, each with its trail, and
/// (for people who change sequences) enrolling the contact in a live sequence by hand.
#[component]
pub fn ContactSequences(contact: Uuid) -> impl IntoView {
    let me = use_me();
    let allowed = me.as_ref().is_some_and(|m| m.can(Permission::SequencesRead) && m.can(Permission::ContactsRead));
    let can_enrol = allowed && me.as_ref().is_some_and(|m| m.can(Permission::SequencesWrite));
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let load = Action::new(move |_: &()| contact_enrolments(contact));
    let live = Action::new(|_: &()| list_sequences());
    Effect::new(move || {
        version.track();
        if allowed {
            load.dispatch(());
        }
        if can_enrol {
            live.dispatch(());
        }
    });
    let chosen = RwSignal::new(String::new());
    let error = RwSignal::new(None::<AppError>);
    let enrol = Action::new(move |s: &Uuid| enrol_contact(*s, contact));
    Effect::new(move || match enrol.value().get() {
        Some(Ok(_)) => {
            error.set(None);
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    allowed.then(|| {
        view! {
            <section class="panel" data-test="contact-sequences">
                <h2>"Sequences"</h2>
                {move || match load.value().get() {
                    None => view! { <p>"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    Some(Ok(list)) if list.is_empty() => view! { <p class="empty" data-test="no-contact-sequences">"Not in any sequence."</p> }.into_any(),
                    Some(Ok(list)) => view! { <EnrolmentTable list=list show_sequence=true version=version focus=None/> }.into_any(),
                }}
                {can_enrol.then(|| view! {
                    <form class="inline" data-test="enrol-contact" on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        if let Ok(s) = Uuid::parse_str(&chosen.get_untracked()) {
                            enrol.dispatch(s);
                        }
                    }>
                        <label for="enrol-sequence">"Enrol in"</label>
                        <select id="enrol-sequence" data-test="enrol-sequence" on:change=move |ev| chosen.set(event_target_value(&ev))>
                            <option value="">"Choose a live sequence…"</option>
                            {move || live.value().get().and_then(Result::ok).unwrap_or_default().into_iter()
                                .filter(|s| s.status == domain::sequences::SequenceStatus::Active)
                                .map(|s| view! { <option value=s.id.to_string()>{s.name.clone()}</option> })
                                .collect_view()}
                        </select>
                        <button type="submit" data-test="enrol" disabled=move || !hydrated.get() || enrol.pending().get() || chosen.with(String::is_empty)>
                            {move || if enrol.pending().get() { "Enrolling…" } else { "Enrol" }}
                        </button>
                    </form>
                    <ErrorMessage error=error/>
                })}
            </section>
        }
    })
}
