//! Lists (with double opt-in) and the double opt-in confirmation page people reach from email.

use super::ContactsNav;
use crate::api_contacts::{CreateList, confirm_optin, delete_list, list_lists, lookup_optin};
use crate::components::{AuthCard, ErrorMessage, Guard, format_time, use_hydrated, use_me};
use crate::error::AppError;
use domain::Permission;
use domain::secret::Secret;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ListsPage() -> impl IntoView {
    view! {
        <Title text="Lists · Hermetic"/>
        <Guard permission=Permission::ContactsRead>
            <ContactsNav/>
            <Lists/>
        </Guard>
    }
}

#[component]
fn Lists() -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::ContactsWrite));
    let version = RwSignal::new(0u32);
    let lists = Resource::new(move || version.get(), |_| list_lists());
    let create = ServerAction::<CreateList>::new();
    let remove = Action::new(|id: &uuid::Uuid| delete_list(*id));
    let error = RwSignal::new(None::<AppError>);
    // The list waiting for "Delete list" in the confirmation (segments and contacts ask too).
    let confirm = RwSignal::new(None::<(uuid::Uuid, String, i64)>);
    Effect::new(move || {
        if let Some(r) = create.value().get() {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move || {
        if let Some(r) = remove.value().get() {
            error.set(r.err());
            confirm.set(None);
            version.update(|v| *v += 1);
        }
    });
    view! {
        <section class="panel">
            <h1>"Lists"</h1>
            <p class="hint">"A member counts as unsubscribed when taken off the list, or when their consent for the list's purpose is withdrawn — then only their own consent (for example confirming a double opt-in email) brings them back."</p>
            <ErrorMessage error=error/>
            {move || confirm.get().map(|(id, name, members)| view! {
                <div class="alert error" role="alertdialog" aria-label="Confirm deletion" data-test="confirm-delete-list">
                    <p>{format!("Delete the list “{name}”? ")}
                        {if members == 0 { "It has no members.".to_string() } else if members == 1 { "Its 1 member stays a contact; only the membership is removed.".to_string() } else { format!("Its {members} members stay contacts; only their memberships are removed.") }}
                        " Consent and unsubscribes are kept."</p>
                    <button class="danger" data-test="confirm-delete" disabled=move || remove.pending().get()
                        on:click=move |_| { remove.dispatch(id); }>"Delete list"</button>
                    <button on:click=move |_| confirm.set(None)>"Keep"</button>
                </div>
            })}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match lists.await {
                        Ok(ls) => view! {
                            <table data-test="lists-table">
                                <thead><tr>
                                    <th scope="col">"Name"</th><th scope="col">"Purpose"</th><th scope="col">"Double opt-in"</th>
                                    <th scope="col">"Subscribed"</th><th scope="col">"Pending"</th><th scope="col">"Unsubscribed"</th>
                                    <th scope="col">"Created"</th><th scope="col"></th>
                                </tr></thead>
                                <tbody>
                                    {ls.into_iter().map(|l| {
                                        let id = l.id;
                                        view! {
                                            <tr data-test="list-row">
                                                <td>{l.name.clone()}<br/><span class="muted small">{l.description.clone()}</span></td>
                                                <td>{l.purpose.label()}</td>
                                                <td>{if l.double_opt_in { "Yes" } else { "No" }}</td>
                                                <td>{l.subscribed}</td><td>{l.pending}</td><td>{l.unsubscribed}</td>
                                                <td>{format_time(l.created_at)}</td>
                                                <td>{can_write.then(|| {
                                                    let (name, members) = (l.name.clone(), l.subscribed + l.pending + l.unsubscribed);
                                                    view! { <button class="danger" data-test="delete-list" disabled=move || !hydrated.get()
                                                        on:click=move |_| confirm.set(Some((id, name.clone(), members)))>"Delete"</button> }
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
        {can_write.then(|| view! {
            <section class="panel">
                <h2>"New list"</h2>
                <ActionForm action=create attr:class="form-grid">
                    <label for="list-name">"Name"</label>
                    <input id="list-name" name="name" required maxlength="100"/>
                    <label for="list-description">"Description"</label>
                    <input id="list-description" name="description" maxlength="500"/>
                    <label for="list-purpose">"Purpose"</label>
                    <select id="list-purpose" name="purpose">
                        <option value="marketing">"Marketing"</option>
                        <option value="care_communications">"Care communications"</option>
                    </select>
                    <label for="list-doi">"Double opt-in"</label>
                    <span><input id="list-doi" type="checkbox" name="double_opt_in" value="true" class="checkbox"/>
                        " New members confirm by email before they receive anything."</span>
                    <div></div>
                    <button type="submit" class="primary" disabled=move || !hydrated.get() || create.pending().get()>"Create list"</button>
                </ActionForm>
            </section>
        })}
    }
}

/// Reached from the confirmation email. The token is in the URL fragment (never sent to servers);
/// confirming needs a button press, so link scanners that fetch the page confirm nothing.
#[component]
pub fn OptInPage() -> impl IntoView {
    let hydrated = use_hydrated();
    let token = RwSignal::new(None::<String>);
    Effect::new(move || {
        #[cfg(feature = "hydrate")]
        if let Ok(hash) = window().location().hash() {
            let t = hash.trim_start_matches('#').to_string();
            if !t.is_empty() {
                token.set(Some(t));
                if let Ok(h) = window().history() {
                    let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some("/optin"));
                }
            }
        }
    });
    let info = Resource::new(
        move || token.get(),
        |t| async move {
            match t {
                Some(t) => Some(lookup_optin(Secret::new(t)).await),
                None => None,
            }
        },
    );
    let confirm = Action::new(|t: &String| confirm_optin(Secret::new(t.clone())));
    let error = Signal::derive(move || confirm.value().get().and_then(Result::err));
    view! {
        <Title text="Confirm your subscription"/>
        <AuthCard title="Confirm your subscription">
            {move || match confirm.value().get() {
                Some(Ok(i)) => view! {
                    <p class="alert success" role="status" data-test="optin-done">
                        "Thank you. You will receive email from " {i.organisation_name} " (" {i.list_name} ")."
                    </p>
                }.into_any(),
                _ => view! {
                    <Transition fallback=|| view! { <p>"Checking the link…"</p> }>
                        {move || Suspend::new(async move {
                            match info.await {
                                None => view! { <p>"Open the full link from your email."</p> }.into_any(),
                                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                                Some(Ok(i)) => view! {
                                    <p>"Do you want to receive " {i.purpose.label().to_lowercase()} " email from " <strong>{i.organisation_name}</strong> " (" {i.list_name} ")?"</p>
                                    <button class="primary" data-test="optin-confirm" disabled=move || !hydrated.get() || confirm.pending().get()
                                        on:click=move |_| { if let Some(t) = token.get_untracked() { confirm.dispatch(t); } }>
                                        "Yes, subscribe me"
                                    </button>
                                    <p class="hint">"If you did not ask for this, close this page: you will not be subscribed."</p>
                                }.into_any(),
                            }
                        })}
                    </Transition>
                    <ErrorMessage error=error/>
                }.into_any(),
            }}
        </AuthCard>
    }
}
