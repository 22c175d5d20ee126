//! Templates: the list (with starters) and the editor — blocks or raw HTML, merge-field picker with
//! PHI marks, autosave with a visible state, a preview in a sandboxed frame (desktop, mobile, plain
//! text; synthetic data or a real contact, which the server audits) and a test send.
//!
//! Author HTML is never put into this page's DOM: the preview is an `<iframe sandbox>` whose
//! document the server serves with its own script-free CSP.

use crate::api_contacts::contacts_page;
use crate::api_templates::{
    CreateTemplate, archive_template, list_templates, open_template, preview_template, save_template,
    template_starters, test_send_template,
};
use crate::components::{ErrorMessage, Guard, format_time, use_hydrated, use_me};
use crate::error::AppError;
use domain::Permission;
use domain::template_views::{
    EditorMode, MergeFieldView, PreviewSample, SaveOutcome, TemplateContent, TemplateEditor, VersionMeta,
};
use domain::templates::{BLOCK_KINDS, Block, html_to_text};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

/// Quiet time after the last keystroke before autosave.
const AUTOSAVE_MS: u64 = 1200;

#[component]
pub fn TemplatesPage() -> impl IntoView {
    view! {
        <Title text="Templates · Hermetic"/>
        <Guard permission=Permission::TemplatesRead>
            <TemplateList/>
        </Guard>
    }
}

#[component]
fn TemplateList() -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::TemplatesWrite));
    let version = RwSignal::new(0u32);
    let templates = Resource::new(move || version.get(), |_| list_templates());
    let starters = Resource::new(|| (), |_| template_starters());
    let create = ServerAction::<CreateTemplate>::new();
    let archive = Action::new(|id: &Uuid| archive_template(*id));
    let error = RwSignal::new(None::<AppError>);
    Effect::new(move || {
        if let Some(r) = create.value().get() {
            match r {
                Ok(id) => crate::components::hard_navigate(&format!("/templates/{id}")),
                Err(e) => error.set(Some(e)),
            }
        }
    });
    Effect::new(move || {
        if let Some(r) = archive.value().get() {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    view! {
        <section class="panel">
            <h1>"Templates"</h1>
            <ErrorMessage error=error/>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Ok(ts) if ts.is_empty() => view! { <p class="muted">"No templates yet. Start from a starter below."</p> }.into_any(),
                        Ok(ts) => view! {
                            <table data-test="templates-table">
                                <thead><tr>
                                    <th scope="col">"Name"</th><th scope="col">"Subject"</th><th scope="col">"Version"</th>
                                    <th scope="col">"PHI"</th><th scope="col">"Updated"</th><th scope="col"></th>
                                </tr></thead>
                                <tbody>
                                    {ts.into_iter().map(|t| {
                                        let id = t.id;
                                        view! {
                                            <tr data-test="template-row">
                                                <td><a href=format!("/templates/{id}")>{t.name.clone()}</a>
                                                    {t.has_draft.then(|| view! { <span class="badge">"unsaved draft"</span> })}</td>
                                                <td>{t.subject.clone()}</td>
                                                <td>{t.latest_version}</td>
                                                <td>{if t.uses_phi { view! { <span class="badge phi">"Contains PHI"</span> }.into_any() } else { "—".into_any() }}</td>
                                                <td>{format_time(t.updated_at)}</td>
                                                <td>{can_write.then(|| view! { <button class="danger" on:click=move |_| { archive.dispatch(id); }>"Archive"</button> })}</td>
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
        {can_write.then(|| view! {
            <section class="panel">
                <h2>"New template"</h2>
                <ActionForm action=create attr:class="form-grid">
                    <label for="template-name">"Name"</label>
                    <input id="template-name" name="name" required maxlength="120"/>
                    <label for="template-starter">"Start from"</label>
                    <select id="template-starter" name="starter">
                        <option value="">"A blank template"</option>
                        <Transition fallback=|| ()>
                            {move || Suspend::new(async move {
                                starters.await.unwrap_or_default().into_iter().map(|s| view! {
                                    <option value=s.key.clone()>{s.name.clone()}</option>
                                }).collect_view()
                            })}
                        </Transition>
                    </select>
                    <div></div>
                    <button type="submit" class="primary" data-test="create-template"
                        disabled=move || !hydrated.get() || create.pending().get()>"Create template"</button>
                </ActionForm>
            </section>
        })}
    }
}

#[component]
pub fn TemplateEditorPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    let loaded = Resource::new(id, |id| async move {
        match id {
            Some(id) => open_template(id, None).await,
            None => Err(AppError::new("not_found", "Not found.")),
        }
    });
    view! {
        <Title text="Template · Hermetic"/>
        <Guard permission=Permission::TemplatesRead>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match loaded.await {
                        Ok(t) => view! { <Editor t=t/> }.into_any(),
                        Err(e) => crate::components::load_error(e, "/templates", "All templates"),
                    }
                })}
            </Transition>
        </Guard>
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SaveState {
    Saved(i32),
    Dirty,
    Saving,
    Draft,
    Failed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PreviewTab {
    Desktop,
    Mobile,
    Text,
}

/// Where a block lives: top level, or inside the left/right column of a two-column block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Top(usize),
    Left(usize, usize),
    Right(usize, usize),
}

fn block_at(blocks: &mut [Block], slot: Slot) -> Option<&mut Block> {
    match slot {
        Slot::Top(i) => blocks.get_mut(i),
        Slot::Left(i, j) => match blocks.get_mut(i) {
            Some(Block::Columns { left, .. }) => left.get_mut(j),
            _ => None,
        },
        Slot::Right(i, j) => match blocks.get_mut(i) {
            Some(Block::Columns { right, .. }) => right.get_mut(j),
            _ => None,
        },
    }
}

/// Insert a merge tag at the caret of the focused field (the picker's buttons keep focus where it
/// was), then fire `input` so the field's handler sees the change.
fn insert_at_caret(_tag: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(el) = document().active_element() else { return };
        if let Some(input) = el.dyn_ref::<web_sys::HtmlInputElement>() {
            let _ = input.set_range_text_with_start_and_end_and_selection_mode(
                _tag,
                input.selection_start().ok().flatten().unwrap_or(0),
                input.selection_end().ok().flatten().unwrap_or(0),
                web_sys::SelectionMode::End,
            );
        } else if let Some(area) = el.dyn_ref::<web_sys::HtmlTextAreaElement>() {
            let _ = area.set_range_text_with_start_and_end_and_mode(
                _tag,
                area.selection_start().ok().flatten().unwrap_or(0),
                area.selection_end().ok().flatten().unwrap_or(0),
                "end",
            );
        } else {
            return;
        }
        if let Ok(ev) = web_sys::Event::new_with_event_init_dict("input", &{
            let init = web_sys::EventInit::new();
            init.set_bubbles(true);
            init
        }) {
            let _ = el.dispatch_event(&ev);
        }
    }
}

#[component]
fn Editor(t: TemplateEditor) -> impl IntoView {
    let hydrated = use_hydrated();
    let me = use_me();
    let can_write = me.as_ref().is_some_and(|m| m.can(Permission::TemplatesWrite));
    let can_read_contacts = me.as_ref().is_some_and(|m| m.can(Permission::ContactsRead));
    let id = t.id;
    let restored = t.draft.clone();
    let content = RwSignal::new(restored.as_ref().map(|d| d.content.clone()).unwrap_or_else(|| t.content.clone()));
    let base = RwSignal::new(t.latest_version);
    let shown_version = RwSignal::new(t.latest_version);
    let uses_phi = RwSignal::new(t.uses_phi);
    let state = RwSignal::new(if restored.is_some() { SaveState::Draft } else { SaveState::Saved(t.latest_version) });
    let problem = RwSignal::new(restored.as_ref().map(|d| d.error.clone()));
    let generated_text = RwSignal::new(t.content.text.clone());
    let edits = RwSignal::new(0u64);
    let error = RwSignal::new(None::<AppError>);
    let fields: Vec<MergeFieldView> = t.fields.clone();
    let versions = RwSignal::new(t.versions.clone());
    let use_me_name = me.as_ref().map(|m| m.display_name.clone());

    let save = Action::new(move |(base, c): &(i32, TemplateContent)| save_template(id, *base, c.clone()));
    Effect::new(move || {
        if let Some(r) = save.value().get() {
            match r {
                Ok(SaveOutcome::Saved { version, version_id, created_at, uses_phi: phi, text, .. }) => {
                    let by = use_me_name.clone();
                    versions.update(|vs| {
                        if !vs.iter().any(|v| v.version == version) {
                            vs.insert(
                                0,
                                VersionMeta { version, id: version_id, created_at, created_by: by, uses_phi: phi },
                            );
                        }
                    });
                    base.set(version);
                    shown_version.set(version);
                    uses_phi.set(phi);
                    generated_text.set(text);
                    problem.set(None);
                    state.set(SaveState::Saved(version));
                }
                Ok(SaveOutcome::Unchanged { version }) => {
                    problem.set(None);
                    state.set(SaveState::Saved(version));
                }
                Ok(SaveOutcome::DraftKept { error: why }) => {
                    problem.set(Some(why));
                    state.set(SaveState::Draft);
                }
                Err(e) => {
                    error.set(Some(e));
                    state.set(SaveState::Failed);
                }
            }
        }
    });
    // Autosave: every edit bumps `edits`; a save runs once the edits stop for AUTOSAVE_MS.
    let schedule = move || {
        if !can_write {
            return;
        }
        state.set(SaveState::Dirty);
        edits.update(|e| *e += 1);
        let at = edits.get_untracked();
        set_timeout(
            move || {
                if edits.get_untracked() == at && !save.pending().get_untracked() {
                    state.set(SaveState::Saving);
                    save.dispatch((base.get_untracked(), content.get_untracked()));
                } else if edits.get_untracked() == at {
                    // A save is in flight: try again shortly.
                    edits.update(|e| *e += 1);
                    let again = edits.get_untracked();
                    set_timeout(
                        move || {
                            if edits.get_untracked() == again {
                                state.set(SaveState::Saving);
                                save.dispatch((base.get_untracked(), content.get_untracked()));
                            }
                        },
                        std::time::Duration::from_millis(AUTOSAVE_MS),
                    );
                }
            },
            std::time::Duration::from_millis(AUTOSAVE_MS),
        );
    };
    let edit = move |f: Box<dyn FnOnce(&mut TemplateContent)>| {
        content.update(|c| f(c));
        schedule();
    };

    // Structural edits (add, move, remove a block; switch mode) re-render the block list; typing
    // does not, so the field being typed in keeps its focus.
    let mode = Memo::new(move |_| content.with(|c| c.mode));
    let structure = RwSignal::new(0u32);

    let save_label = move || match state.get() {
        SaveState::Saved(v) => format!("Saved · version {v}"),
        SaveState::Dirty => "Unsaved changes".to_string(),
        SaveState::Saving => "Saving…".to_string(),
        SaveState::Draft => "Not saved as a version yet — kept as a draft".to_string(),
        SaveState::Failed => "Not saved".to_string(),
    };

    // Preview: the frame shows the latest saved version; the subject and plain text come from a
    // render of the current content.
    let tab = RwSignal::new(PreviewTab::Desktop);
    let sample = RwSignal::new(PreviewSample::Synthetic);
    let sample_email = RwSignal::new(String::new());
    let sample_error = RwSignal::new(None::<AppError>);
    // Rendered on the client only (an effect), after hydration: a resource here would be a
    // suspense nested in the page's own, which does not hydrate reliably.
    let preview = Action::new(move |s: &PreviewSample| preview_template(id, content.get_untracked(), *s));
    Effect::new(move || {
        let _ = shown_version.get();
        preview.dispatch(sample.get());
    });
    let find_sample = Action::new(move |email: &String| {
        let email = email.clone();
        async move { contacts_page(None, Some(email)).await }
    });
    Effect::new(move || {
        if let Some(r) = find_sample.value().get() {
            match r {
                Ok(page) => match page.rows.first() {
                    Some(row) => {
                        sample_error.set(None);
                        sample.set(PreviewSample::Contact(row.id));
                    }
                    None => sample_error.set(Some(AppError::new("not_found", "No contact has that email address."))),
                },
                Err(e) => sample_error.set(Some(e)),
            }
        }
    });
    let frame_src = move || {
        let s = match sample.get() {
            PreviewSample::Synthetic => "synthetic".to_string(),
            PreviewSample::Contact(c) => c.to_string(),
        };
        format!("/templates/{id}/preview/{}?sample={s}", shown_version.get())
    };

    let test_send = Action::new(move |c: &TemplateContent| test_send_template(id, c.clone()));
    let test_result = move || {
        test_send.value().get().map(|r| match r {
            Ok(msg) => {
                view! { <p class="alert success" role="status" data-test="test-send-result">{msg}</p> }.into_any()
            }
            Err(e) => {
                view! { <p class="alert error" role="alert" data-test="test-send-result">{e.message}</p> }.into_any()
            }
        })
    };

    // Restoring an older version loads its content and saves it as a new version, so the
    // history only ever grows and campaigns pinned to any version are unaffected.
    let restore = Action::new(move |v: &i32| open_template(id, Some(*v)));
    Effect::new(move || {
        if let Some(r) = restore.value().get() {
            match r {
                Ok(old) => {
                    content.set(old.content);
                    structure.update(|n| *n += 1);
                    state.set(SaveState::Saving);
                    save.dispatch((base.get_untracked(), content.get_untracked()));
                }
                Err(e) => error.set(Some(e)),
            }
        }
    });

    let picker = fields
        .iter()
        .map(|f| {
            let tag = f.tag.clone();
            let title = if f.is_phi {
                "Protected health information: allowed in the body only; the template will require secure delivery."
            } else {
                "Not PHI"
            };
            view! {
                <li>
                    <button type="button" class="chip" class:phi=f.is_phi title=title data-test="merge-field"
                        on:mousedown=move |ev| { ev.prevent_default(); insert_at_caret(&tag); }>
                        {f.label.clone()}
                        {f.is_phi.then(|| view! { <span class="badge phi">"PHI"</span> })}
                    </button>
                </li>
            }
        })
        .collect_view();

    view! {
        <section class="panel template-head">
            <p class="muted"><a href="/templates">"← Templates"</a></p>
            <h1>{t.name.clone()}</h1>
            <p>
                <span class="badge" data-test="save-state" class:warn=move || matches!(state.get(), SaveState::Draft | SaveState::Failed)>{save_label}</span>
                " "
                {move || uses_phi.get().then(|| view! {
                    <span class="badge phi" data-test="phi-badge" title="The body uses PHI fields: campaigns with it are always delivered over enforced TLS.">"Contains PHI"</span>
                })}
            </p>
            {move || problem.get().map(|p| view! { <p class="alert warn" role="status" data-test="save-problem">{p}</p> })}
            <ErrorMessage error=error/>
            {(!can_write).then(|| view! { <p class="muted">"Read only: your role cannot edit templates."</p> })}
        </section>
        <div class="template-layout">
            <section class="panel">
                <div class="form-grid">
                    <label for="t-subject">"Subject"</label>
                    <input id="t-subject" data-test="subject" maxlength="200" prop:value=move || content.with(|c| c.subject.clone())
                        disabled=move || !hydrated.get() || !can_write
                        on:input=move |ev| { let v = event_target_value(&ev); edit(Box::new(move |c| c.subject = v)); }/>
                    <label for="t-preheader">"Preview text"</label>
                    <input id="t-preheader" data-test="preheader" maxlength="300" prop:value=move || content.with(|c| c.preheader.clone())
                        disabled=move || !hydrated.get() || !can_write
                        on:input=move |ev| { let v = event_target_value(&ev); edit(Box::new(move |c| c.preheader = v)); }/>
                </div>
                <p class="hint">"Subject and preview text show on lock screens: they may not use PHI fields."</p>
                <div class="tabs" role="tablist">
                    <button type="button" role="tab" data-test="mode-blocks" class:active=move || content.with(|c| c.mode == EditorMode::Blocks)
                        disabled=move || !hydrated.get() || !can_write
                        on:click=move |_| edit(Box::new(|c| c.mode = EditorMode::Blocks))>"Blocks"</button>
                    <button type="button" role="tab" data-test="mode-html" class:active=move || content.with(|c| c.mode == EditorMode::Html)
                        disabled=move || !hydrated.get() || !can_write
                        on:click=move |_| edit(Box::new(|c| {
                            if c.mode == EditorMode::Blocks && c.html.trim().is_empty() {
                                c.html = c.design.to_html();
                            }
                            c.mode = EditorMode::Html;
                        }))>"HTML"</button>
                </div>
                {move || match mode.get() {
                    EditorMode::Blocks => view! { <BlockEditor content=content edit=edit structure=structure enabled=Signal::derive(move || hydrated.get() && can_write)/> }.into_any(),
                    EditorMode::Html => view! {
                        <label for="t-html">"HTML"</label>
                        <textarea id="t-html" data-test="html" class="code" rows="20" spellcheck="false"
                            prop:value=move || content.with(|c| c.html.clone())
                            disabled=move || !hydrated.get() || !can_write
                            on:input=move |ev| { let v = event_target_value(&ev); edit(Box::new(move |c| c.html = v)); }></textarea>
                    }.into_any(),
                }}
                <h2>"Plain text"</h2>
                <label class="inline">
                    <input type="checkbox" data-test="text-edited" prop:checked=move || content.with(|c| c.text_edited)
                        disabled=move || !hydrated.get() || !can_write
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            let generated = generated_text.get_untracked();
                            edit(Box::new(move |c| {
                                if on && c.text.trim().is_empty() { c.text = generated; }
                                c.text_edited = on;
                            }));
                        }/>
                    " Write the plain text myself (otherwise it is generated from the HTML on every save)"
                </label>
                <textarea data-test="text" rows="10" class="code"
                    prop:value=move || if content.with(|c| c.text_edited) { content.with(|c| c.text.clone()) } else {
                        content.with(|c| match c.mode {
                            EditorMode::Blocks => c.design.to_text(),
                            EditorMode::Html => html_to_text(&c.html),
                        })
                    }
                    disabled=move || !hydrated.get() || !can_write || !content.with(|c| c.text_edited)
                    on:input=move |ev| { let v = event_target_value(&ev); edit(Box::new(move |c| c.text = v)); }></textarea>
            </section>
            <aside class="panel picker">
                <h2>"Merge fields"</h2>
                <p class="hint">"Click to insert at the cursor. Fields marked PHI may only be used in the body."</p>
                <ul class="chips">{picker}</ul>
            </aside>
        </div>
        <section class="panel">
            <h2>"Preview"</h2>
            <div class="toolbar">
                <div class="tabs" role="tablist">
                    <button type="button" role="tab" data-test="preview-desktop" class:active=move || tab.get() == PreviewTab::Desktop on:click=move |_| tab.set(PreviewTab::Desktop)>"Desktop"</button>
                    <button type="button" role="tab" data-test="preview-mobile" class:active=move || tab.get() == PreviewTab::Mobile on:click=move |_| tab.set(PreviewTab::Mobile)>"Mobile"</button>
                    <button type="button" role="tab" data-test="preview-text" class:active=move || tab.get() == PreviewTab::Text on:click=move |_| tab.set(PreviewTab::Text)>"Plain text"</button>
                </div>
                <span>
                    {move || match sample.get() {
                        PreviewSample::Synthetic => view! { <span class="muted">"Sample data: made up"</span> }.into_any(),
                        PreviewSample::Contact(_) => view! {
                            <span>"Sample: a real contact (this view is recorded in the audit trail; remote images are not loaded) "
                                <button type="button" on:click=move |_| sample.set(PreviewSample::Synthetic)>"Use made-up data"</button></span>
                        }.into_any(),
                    }}
                </span>
                {can_read_contacts.then(|| view! {
                    <form class="inline" on:submit=move |ev| { ev.prevent_default(); find_sample.dispatch(sample_email.get_untracked()); }>
                        <label for="sample-email">"Preview as contact (email)"</label>
                        <input id="sample-email" type="email" data-test="sample-email" prop:value=move || sample_email.get()
                            on:input=move |ev| sample_email.set(event_target_value(&ev))/>
                        <button type="submit" disabled=move || !hydrated.get()>"Use"</button>
                    </form>
                })}
            </div>
            <ErrorMessage error=sample_error/>
            {move || match preview.value().get() {
                None => view! { <p class="muted">"Rendering…"</p> }.into_any(),
                Some(Ok(p)) => view! {
                    <p data-test="preview-subject"><strong>"Subject: "</strong>{p.subject.expose().clone()}</p>
                    <p class="muted"><strong>"Preview text: "</strong>{p.preheader.expose().clone()}</p>
                    {move || (tab.get() == PreviewTab::Text).then(|| view! { <pre class="plain" data-test="preview-plain">{p.text.expose().clone()}</pre> })}
                }.into_any(),
                Some(Err(e)) => view! { <p class="alert warn" role="status">"Preview not available: " {e.message}</p> }.into_any(),
            }}
            // The frame is re-created for each saved version (and sample, and width), so it always
            // loads the document that matches what was just saved.
            {move || (tab.get() != PreviewTab::Text).then(|| {
                let mobile = tab.get() == PreviewTab::Mobile;
                let src = frame_src();
                view! {
                    <div class="preview-frame" class:mobile=mobile>
                        <iframe title="Email preview" data-test="preview-frame" sandbox="" referrerpolicy="no-referrer"
                            width=if mobile { "375" } else { "680" } height="700" src=src></iframe>
                    </div>
                }
            })}
        </section>
        {can_write.then(|| view! {
            <section class="panel">
                <h2>"Test send"</h2>
                <p>"Sends the current content, personalised with made-up data, to your own address through the configured mail server."</p>
                <button type="button" class="primary" data-test="test-send" disabled=move || !hydrated.get() || test_send.pending().get()
                    on:click=move |_| { test_send.dispatch(content.get_untracked()); }>"Send a test to me"</button>
                {test_result}
            </section>
        })}
        <section class="panel">
            <h2>"Versions"</h2>
            <p class="hint">"Every save is kept. Campaigns send the exact version they were launched with."</p>
            <ul data-test="versions" class="versions">
                <For each=move || versions.get() key=|v| v.version let:v>
                    <li>
                        "Version " {v.version} " · " {format_time(v.created_at)} " · " {v.created_by.clone().unwrap_or_else(|| "system".into())}
                        {v.uses_phi.then(|| view! { " " <span class="badge phi">"PHI"</span> })}
                        {move || (base.get() == v.version).then(|| view! { " " <span class="badge">"current"</span> })}
                        {can_write.then(|| view! {
                            " "
                            <button type="button" data-test="restore-version" class="link"
                                disabled=move || !hydrated.get() || base.get() == v.version || restore.pending().get() || save.pending().get()
                                title="Make this the latest version again (saved as a new version)"
                                on:click=move |_| { restore.dispatch(v.version); }>"Restore"</button>
                        })}
                    </li>
                </For>
            </ul>
        </section>
    }
}

#[component]
fn BlockEditor<E>(
    content: RwSignal<TemplateContent>,
    edit: E,
    structure: RwSignal<u32>,
    enabled: Signal<bool>,
) -> impl IntoView
where
    E: Fn(Box<dyn FnOnce(&mut TemplateContent)>) + Copy + Send + Sync + 'static,
{
    let new_kind = RwSignal::new("text".to_string());
    view! {
        <ol class="blocks" data-test="blocks">
            {move || {
                structure.get();
                let n = content.with_untracked(|c| c.design.blocks.len());
                (0..n).map(|i| view! { <BlockCard content=content edit=edit structure=structure enabled=enabled index=i/> }).collect_view()
            }}
        </ol>
        <div class="toolbar">
            <label for="new-block">"Add a block"</label>
            <select id="new-block" data-test="new-block-kind" on:change=move |ev| new_kind.set(event_target_value(&ev))>
                {BLOCK_KINDS.iter().map(|(k, label)| view! { <option value=*k selected=*k == "text">{*label}</option> }).collect_view()}
            </select>
            <button type="button" data-test="add-block" disabled=move || !enabled.get()
                on:click=move |_| {
                    if let Some(b) = Block::new_of_kind(&new_kind.get_untracked()) {
                        edit(Box::new(move |c| c.design.blocks.push(b)));
                        structure.update(|v| *v += 1);
                    }
                }>"Add"</button>
        </div>
    }
}

#[component]
fn BlockCard<E>(
    content: RwSignal<TemplateContent>,
    edit: E,
    structure: RwSignal<u32>,
    enabled: Signal<bool>,
    index: usize,
) -> impl IntoView
where
    E: Fn(Box<dyn FnOnce(&mut TemplateContent)>) + Copy + Send + Sync + 'static,
{
    let kind = content.with_untracked(|c| c.design.blocks.get(index).map(|b| b.kind_label()).unwrap_or(""));
    let is_columns = content.with_untracked(|c| matches!(c.design.blocks.get(index), Some(Block::Columns { .. })));
    let mv = move |delta: isize| {
        edit(Box::new(move |c| {
            let j = index as isize + delta;
            if j >= 0 && (j as usize) < c.design.blocks.len() {
                c.design.blocks.swap(index, j as usize);
            }
        }));
        structure.update(|v| *v += 1);
    };
    view! {
        <li class="block-card" data-test="block">
            <div class="block-head">
                <strong>{kind}</strong>
                <span>
                    <button type="button" title="Move up" disabled=move || !enabled.get() on:click=move |_| mv(-1)>"↑"</button>
                    <button type="button" title="Move down" disabled=move || !enabled.get() on:click=move |_| mv(1)>"↓"</button>
                    <button type="button" class="danger" data-test="remove-block" disabled=move || !enabled.get()
                        on:click=move |_| {
                            edit(Box::new(move |c| { if index < c.design.blocks.len() { c.design.blocks.remove(index); } }));
                            structure.update(|v| *v += 1);
                        }>"Remove"</button>
                </span>
            </div>
            {if is_columns {
                let side = move |left: bool| {
                    let n = move || content.with_untracked(|c| match c.design.blocks.get(index) {
                        Some(Block::Columns { left: l, right: r }) => if left { l.len() } else { r.len() },
                        _ => 0,
                    });
                    view! {
                        <div class="column">
                            <p class="muted">{if left { "Left column" } else { "Right column" }}</p>
                            {move || { structure.get(); (0..n()).map(|j| {
                                let slot = if left { Slot::Left(index, j) } else { Slot::Right(index, j) };
                                view! { <BlockFields content=content edit=edit enabled=enabled at=slot/> }
                            }).collect_view() }}
                            <button type="button" disabled=move || !enabled.get() on:click=move |_| {
                                edit(Box::new(move |c| {
                                    if let Some(Block::Columns { left: l, right: r }) = c.design.blocks.get_mut(index) {
                                        let b = Block::Text { text: String::new() };
                                        if left { l.push(b) } else { r.push(b) }
                                    }
                                }));
                                structure.update(|v| *v += 1);
                            }>"Add text"</button>
                        </div>
                    }
                };
                view! { <div class="columns">{side(true)}{side(false)}</div> }.into_any()
            } else {
                view! { <BlockFields content=content edit=edit enabled=enabled at=Slot::Top(index)/> }.into_any()
            }}
        </li>
    }
}

/// The inputs of one (non-column) block.
#[component]
fn BlockFields<E>(content: RwSignal<TemplateContent>, edit: E, enabled: Signal<bool>, at: Slot) -> impl IntoView
where
    E: Fn(Box<dyn FnOnce(&mut TemplateContent)>) + Copy + Send + Sync + 'static,
{
    let get = move || {
        content.with(|c| {
            let mut blocks = c.design.blocks.clone();
            block_at(&mut blocks, at).cloned()
        })
    };
    let set = move |f: Box<dyn FnOnce(&mut Block) + Send + Sync>| {
        edit(Box::new(move |c| {
            if let Some(b) = block_at(&mut c.design.blocks, at) {
                f(b)
            }
        }))
    };
    let text_input = move |label: &'static str, value: String, multiline: bool, f: fn(&mut Block, String)| {
        let on_input = move |ev: leptos::ev::Event| {
            let v = event_target_value(&ev);
            set(Box::new(move |b| f(b, v)));
        };
        if multiline {
            view! {
                <label class="stack">{label}
                    <textarea rows="4" data-test="block-text" prop:value=value disabled=move || !enabled.get() on:input=on_input></textarea>
                </label>
            }
            .into_any()
        } else {
            view! {
                <label class="stack">{label}
                    <input data-test="block-input" prop:value=value disabled=move || !enabled.get() on:input=on_input/>
                </label>
            }
            .into_any()
        }
    };
    // Rendered once per structural change (the parent re-creates it); typing never re-renders it,
    // so the field keeps its focus.
    {
        match untrack(get) {
            Some(Block::Heading { text, level }) => view! {
                {text_input("Heading", text, false, |b, v| if let Block::Heading { text, .. } = b { *text = v })}
                <label class="stack">"Size"
                    <select disabled=move || !enabled.get() on:change=move |ev| {
                        let l: u8 = event_target_value(&ev).parse().unwrap_or(1);
                        set(Box::new(move |b| if let Block::Heading { level, .. } = b { *level = l }));
                    }>
                        <option value="1" selected=level == 1>"Large"</option>
                        <option value="2" selected=level == 2>"Medium"</option>
                        <option value="3" selected=level == 3>"Small"</option>
                    </select>
                </label>
            }.into_any(),
            Some(Block::Text { text }) => view! {
                {text_input("Text (**bold**, _italic_, [link](https://…))", text, true, |b, v| if let Block::Text { text } = b { *text = v })}
            }.into_any(),
            Some(Block::Button { label, url }) => view! {
                {text_input("Button label", label, false, |b, v| if let Block::Button { label, .. } = b { *label = v })}
                {text_input("Link (https://…)", url, false, |b, v| if let Block::Button { url, .. } = b { *url = v })}
            }.into_any(),
            Some(Block::Image { src, alt, link, .. }) => view! {
                {text_input("Image address (https://…)", src, false, |b, v| if let Block::Image { src, .. } = b { *src = v })}
                {text_input("Description for screen readers", alt, false, |b, v| if let Block::Image { alt, .. } = b { *alt = v })}
                {text_input("Link (optional)", link.unwrap_or_default(), false, |b, v| if let Block::Image { link, .. } = b {
                    *link = if v.trim().is_empty() { None } else { Some(v) }
                })}
            }.into_any(),
            Some(Block::Divider) => view! { <p class="muted">"A horizontal line."</p> }.into_any(),
            Some(Block::Spacer { height }) => view! {
                <label class="stack">"Height (px)"
                    <input type="number" min="4" max="200" prop:value=height.to_string() disabled=move || !enabled.get()
                        on:input=move |ev| {
                            let h: u32 = event_target_value(&ev).parse().unwrap_or(24);
                            set(Box::new(move |b| if let Block::Spacer { height } = b { *height = h }));
                        }/>
                </label>
            }.into_any(),
            Some(Block::Footer { text }) => view! {
                {text_input("Footer", text, true, |b, v| if let Block::Footer { text } = b { *text = v })}
            }.into_any(),
            Some(Block::Columns { .. }) | None => ().into_any(),
        }
    }
}
