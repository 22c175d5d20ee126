//! Segments: the list and the condition builder (groups, conditions typed to each field, a
//! debounced live count, an audited preview of the first matches, save / duplicate / delete and
//! "save as static list"). People who may not read contacts (analysts) get a read-only page
//! instead: the saved definition in words (values of PHI conditions arrive masked from the
//! service) and the saved segment's count with its disclosure control — no builder inputs.
//!
//! Hydration: the page has one outer `Transition` (the load); everything loaded later (counts,
//! previews) goes through actions dispatched by effects, which run only in the browser.

pub(crate) mod builder;
mod rules;

use crate::api_segments::{
    count_saved_segment, count_segment, create_segment, delete_segment, duplicate_segment, list_segments, open_segment,
    preview_segment, segment_options, segment_to_list, update_segment,
};
use crate::components::{ErrorMessage, Guard, format_time, hard_navigate, use_hydrated, use_me};
use crate::components::{NotFoundPanel, NotFoundStatus};
use crate::error::AppError;
use builder::{Ctx, group_view};
use domain::Permission;
use domain::segment_views::{BuilderOptions, SegmentCount, SegmentView, describe_condition};
use domain::segments::{Node, SegmentDefinition};
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
