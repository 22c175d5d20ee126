//! CSV import: upload, map columns (with a preview of the first rows), choose dedupe, lists and
//! consent, then follow the job's progress live. Errors are downloadable as a CSV report.

use super::ContactsNav;
use crate::api_contacts::{cancel_import, list_lists, recent_imports, start_import};
use crate::components::{ErrorMessage, FieldError, Guard, format_time, unplaced, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::contacts::{ConsentPurpose, Dedupe, ImportOptions, ImportPreview, ImportView};
use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

/// Upload the chosen file as the request body (the browser streams it).
#[cfg(feature = "hydrate")]
async fn upload(file: web_sys::File) -> Result<ImportView, AppError> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let net = || AppError::new("network", "The upload failed. Check your connection and try again.");
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&file);
    let headers = web_sys::Headers::new().map_err(|_| net())?;
    headers.set("Content-Type", "text/csv").map_err(|_| net())?;
    if let Some(t) = crate::csrf::token() {
        headers.set(crate::csrf::HEADER, &t).map_err(|_| net())?;
    }
    init.set_headers(&headers);
    let req = web_sys::Request::new_with_str_and_init("/imports/upload", &init).map_err(|_| net())?;
    let resp: web_sys::Response =
        JsFuture::from(window().fetch_with_request(&req)).await.map_err(|_| net())?.dyn_into().map_err(|_| net())?;
    let text =
        JsFuture::from(resp.text().map_err(|_| net())?).await.map_err(|_| net())?.as_string().unwrap_or_default();
    if resp.ok() {
        serde_json::from_str(&text).map_err(|_| net())
    } else {
        Err(serde_json::from_str::<AppError>(&text)
            .unwrap_or_else(|_| AppError::new("upload", format!("The upload was refused ({}).", resp.status()))))
    }
}

#[component]
pub fn ImportPage() -> impl IntoView {
    view! {
        <Title text="Import contacts · Hermetic"/>
        <Guard permission=Permission::ContactsWrite>
            <ContactsNav/>
            <Importer/>
        </Guard>
    }
}

#[derive(Clone)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum Step {
    Choose,
    Map(ImportPreview),
    Running(Uuid),
}

#[component]
fn Importer() -> impl IntoView {
    let hydrated = use_hydrated();
    let step = RwSignal::new(Step::Choose);
    let error = RwSignal::new(None::<AppError>);
    let busy = RwSignal::new(false);
    let file_ref = NodeRef::<leptos::html::Input>::new();
    let on_upload = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            use crate::api_contacts::preview_import;
            let Some(input) = file_ref.get_untracked() else { return };
            let Some(file) = input.files().and_then(|f| f.get(0)) else {
                error.set(Some(AppError::new("file", "Choose a CSV file first.")));
                return;
            };
            busy.set(true);
            error.set(None);
            leptos::task::spawn_local(async move {
                match upload(file).await {
                    Ok(v) => match preview_import(v.id).await {
                        Ok(p) => step.set(Step::Map(p)),
                        Err(e) => error.set(Some(e)),
                    },
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };
    // Fetched again when the page returns to choosing a file and when an import finishes.
    let finished = RwSignal::new(0u32);
    let recent = Resource::new(move || (matches!(step.get(), Step::Choose), finished.get()), |_| recent_imports());
    view! {
        <section class="panel">
            <h1>"Import contacts"</h1>
            <ErrorMessage error=unplaced(error.into(), &["mapping", "lists", "consent"])/>
            {move || match step.get() {
                Step::Choose => view! {
                    <p>"Upload a CSV file with a header row. Every value is encrypted on arrival; the file itself is never stored readable and is deleted after the import."</p>
                    <form class="filters" on:submit=on_upload>
                        <label for="import-file">"CSV file"</label>
                        <input id="import-file" type="file" accept=".csv,text/csv" node_ref=file_ref required/>
                        <button type="submit" class="primary" disabled=move || !hydrated.get() || busy.get()>
                            {move || if busy.get() { "Uploading…" } else { "Upload" }}
                        </button>
                    </form>
                }.into_any(),
                Step::Map(p) => view! { <Mapping preview=p step=step error=error/> }.into_any(),
                Step::Running(id) => view! { <Progress id=id finished=finished step=step/> }.into_any(),
            }}
        </section>
        <section class="panel">
            <h2>"Recent imports"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = recent.await.unwrap_or_default();
                    if list.is_empty() {
                        return view! { <p class="muted" data-test="no-imports">"No imports yet."</p> }.into_any();
                    }
                    view! {
                        <table data-test="recent-imports">
                            <thead><tr><th scope="col">"Uploaded"</th><th scope="col">"Status"</th><th scope="col">"Created"</th><th scope="col">"Updated"</th><th scope="col">"Skipped"</th><th scope="col">"Kept withdrawn"</th><th scope="col">"Errors"</th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|i| view! {
                                    <tr data-test="recent-import" data-id=i.id.to_string()>
                                        <td>{format_time(i.created_at)}</td><td data-test="recent-status">{status_label(&i.status)}</td>
                                        <td>{i.rows_created}</td><td>{i.rows_updated}</td><td>{i.rows_skipped}</td>
                                        <td data-test="kept-withdrawn">{i.rows_kept_withdrawn}</td>
                                        <td>{i.rows_failed}{(i.rows_failed > 0).then(|| view! { " " <a href=format!("/imports/{}/errors.csv", i.id) download="">"report"</a> })}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Mapping(preview: ImportPreview, step: RwSignal<Step>, error: RwSignal<Option<AppError>>) -> impl IntoView {
    let hydrated = use_hydrated();
    let mapping = RwSignal::new(preview.suggested.clone());
    let dedupe = RwSignal::new("update".to_string());
    let chosen_lists = RwSignal::new(Vec::<Uuid>::new());
    let consent = RwSignal::new(String::new());
    let consent_text = RwSignal::new(String::new());
    let lists = Resource::new(|| (), |_| list_lists());
    let id = preview.import_id;
    let start = Action::new(move |o: &ImportOptions| start_import(id, o.clone()));
    Effect::new(move || match start.value().get() {
        Some(Ok(v)) => step.set(Step::Running(v.id)),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let fields = preview.fields.clone();
    let columns = preview.headers.iter().enumerate().map(|(i, h)| {
        let fields = fields.clone();
        let label_id = format!("map-{i}");
        view! {
            <th scope="col">
                <div>{h.expose().clone()}</div>
                <label for=label_id.clone() class="visually-hidden">"Field for column " {h.expose().clone()}</label>
                <select id=label_id data-test="map-select" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    mapping.update(|m| m[i] = (!v.is_empty()).then_some(v));
                } prop:value=move || mapping.with(|m| m[i].clone().unwrap_or_default())>
                    <option value="">"(ignore)"</option>
                    {fields.iter().map(|f| view! { <option value=f.key.clone()>{f.label.clone()}{f.is_phi.then_some(" · PHI")}</option> }).collect_view()}
                </select>
            </th>
        }
    }).collect_view();
    let rows = preview
        .rows
        .iter()
        .map(|r| {
            view! {
                <tr>{r.iter().map(|c| view! { <td>{c.expose().clone()}</td> }).collect_view()}</tr>
            }
        })
        .collect_view();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        start.dispatch(ImportOptions {
            mapping: mapping.get_untracked(),
            dedupe: if dedupe.get_untracked() == "skip" { Dedupe::Skip } else { Dedupe::Update },
            list_ids: chosen_lists.get_untracked(),
            consent_purpose: ConsentPurpose::parse(&consent.get_untracked()),
            consent_text: Some(consent_text.get_untracked()).filter(|t| !t.trim().is_empty()),
        });
    };
    view! {
        <form class="stack" on:submit=submit>
            <h2>"Match columns to fields"</h2>
            <p class="hint" data-test="import-delimiter">{format!("The first rows of your file are shown so you can check the matching. Columns are separated by {}{}.",
                preview.delimiter, if preview.headers.len() == 1 { " (one column found: if your file has more, save it as CSV with commas, semicolons or tabs between the columns)" } else { "" })}</p>
            <div class="table-wrap">
                <table class="preview" data-test="import-preview"><thead><tr>{columns}</tr></thead><tbody>{rows}</tbody></table>
            </div>
            <FieldError error=error field="mapping" label="Column matching"/>
            <fieldset>
                <legend>"When an email address is already a contact"</legend>
                <label class="inline"><input type="radio" name="dedupe" value="update" checked on:change=move |_| dedupe.set("update".into())/>" Update it with the file's values (empty cells keep what is stored)"</label>
                <label class="inline"><input type="radio" name="dedupe" value="skip" on:change=move |_| dedupe.set("skip".into())/>" Skip the row"</label>
            </fieldset>
            <fieldset>
                <legend>"Add everyone to lists"</legend>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        lists.await.unwrap_or_default().into_iter().map(|l| {
                            let lid = l.id;
                            view! {
                                <label class="inline"><input type="checkbox" on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    chosen_lists.update(|v| { v.retain(|x| *x != lid); if on { v.push(lid); } });
                                }/>" " {l.name.clone()}{l.double_opt_in.then_some(" (sends a confirmation email)")}</label>
                            }
                        }).collect_view()
                    })}
                </Suspense>
                <FieldError error=error field="lists" label="Lists"/>
            </fieldset>
            <fieldset>
                <legend>"Consent"</legend>
                <label for="import-consent">"These contacts consented to"</label>
                <select id="import-consent" on:change=move |ev| consent.set(event_target_value(&ev))>
                    <option value="">"(record no consent)"</option>
                    <option value="marketing">"Marketing email"</option>
                    <option value="care_communications">"Care communications"</option>
                </select>
                <label for="import-consent-text">"Consent wording they agreed to"</label>
                <textarea id="import-consent-text" rows="2" bind:value=consent_text></textarea>
                <FieldError error=error field="consent" label="Consent wording"/>
            </fieldset>
            <button type="submit" class="primary" disabled=move || !hydrated.get() || start.pending().get()>"Start import"</button>
        </form>
    }
}

/// An import's status in words.
fn status_label(status: &str) -> String {
    match status {
        "uploaded" => "uploaded, not started".into(),
        "expired" => "expired: not started within a day, file deleted".into(),
        other => other.to_string(),
    }
}

#[component]
fn Progress(id: Uuid, finished: RwSignal<u32>, step: RwSignal<Step>) -> impl IntoView {
    let view_state = RwSignal::new(None::<ImportView>);
    let error = RwSignal::new(None::<AppError>);
    let cancel = Action::new(move |_: &()| cancel_import(id));
    // A background call: it never counts as activity.
    Effect::new(move || {
        crate::background::every(
            std::time::Duration::from_millis(1000),
            move || {
                (!view_state.with_untracked(|v| v.as_ref().is_some_and(ImportView::finished)))
                    .then_some(crate::api_contacts::ImportStatus { id })
            },
            move |r| match r {
                Ok(v) => {
                    if v.finished() {
                        // "Recent imports" below shows the outcome too.
                        finished.update(|n| *n += 1);
                    }
                    view_state.set(Some(v));
                }
                Err(e) => error.set(Some(e)),
            },
        );
    });
    view! {
        <div class="stack" data-test="import-progress">
            <ErrorMessage error=error/>
            {move || view_state.get().map(|v| {
                let pct = v.percent();
                view! {
                    <label for="import-bar">{format!("{} — {pct}%", status_label(&v.status))}</label>
                    <progress id="import-bar" max="100" value=pct.to_string()></progress>
                    <p data-test="import-counts">
                        {format!("{} rows read · {} created · {} updated · {} skipped · {} with errors", v.rows_done, v.rows_created, v.rows_updated, v.rows_skipped, v.rows_failed)}
                    </p>
                    {(v.rows_kept_withdrawn > 0).then(|| view! {
                        <p class="alert warn" role="status" data-test="import-kept-withdrawn">
                            {format!("{} {} had withdrawn consent for this purpose. The import's consent was recorded in their history but not applied: only the patient can consent again (for example by confirming a double opt-in email).",
                                v.rows_kept_withdrawn, if v.rows_kept_withdrawn == 1 { "contact" } else { "contacts" })}
                        </p>
                    })}
                    {v.failure.clone().map(|f| view! { <p class="alert error" role="alert">{f}</p> })}
                    {(v.rows_failed > 0).then(|| view! { <p><a class="button" href=format!("/imports/{}/errors.csv", v.id) download="">"Download the error report"</a></p> })}
                    {(!v.finished()).then(|| view! { <button class="danger" on:click=move |_| { cancel.dispatch(()); }>"Cancel import"</button> })}
                    {(v.status == "completed").then(|| view! { <p class="alert success" role="status" data-test="import-done">"Import complete."</p> })}
                    {v.finished().then(|| view! { <p><button on:click=move |_| step.set(Step::Choose)>"Import another file"</button></p> })}
                }
            })}
        </div>
    }
}
