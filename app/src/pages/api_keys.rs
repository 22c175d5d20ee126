//! Settings → API keys (administrators): create a key for an integration (name, scopes, optional
//! expiry, signed requests), see its secret once, see when each key was last used, revoke.

use crate::api_keys::{create_api_key, list_api_keys, revoke_api_key};
use crate::components::{ErrorMessage, FieldError, Guard, format_time, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::api::{CreatedKeyView, KeyView, NewKey, Scope};
use leptos::prelude::*;
use leptos_meta::Title;

/// Copy `text` to the clipboard and say whether it worked.
fn copy_text(text: String, said: RwSignal<Option<&'static str>>) {
    #[cfg(feature = "hydrate")]
    {
        let promise = window().navigator().clipboard().write_text(&text);
        leptos::task::spawn_local(async move {
            let ok = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
            said.set(Some(if ok { "Copied." } else { "Could not copy: select the text and copy it." }));
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (text, said);
}

/// A date from the form (`YYYY-MM-DD`) as the end of that day, UTC.
fn expiry(date: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, AppError> {
    if date.trim().is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| AppError {
            code: "invalid".into(),
            message: "Expires: enter a date.".into(),
            field: Some(domain::error::FieldProblem { field: "expires_at".into(), reason: "enter a date".into() }),
        })
}

#[component]
pub fn ApiKeysPage() -> impl IntoView {
    view! {
        <Title text="API keys · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <ApiKeysAdmin/>
        </Guard>
    }
}

#[component]
fn ApiKeysAdmin() -> impl IntoView {
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let keys = Resource::new(move || version.get(), |_| list_api_keys());
    let name = RwSignal::new(String::new());
    let scopes = RwSignal::new(vec![Scope::EventsWrite]);
    let expires = RwSignal::new(String::new());
    let signed = RwSignal::new(true);
    let created = RwSignal::new(None::<CreatedKeyView>);
    let error = RwSignal::new(None::<AppError>);
    let create = Action::new(|k: &NewKey| create_api_key(k.clone()));
    Effect::new(move || match create.value().get() {
        Some(Ok(k)) => {
            error.set(None);
            created.set(Some(k));
            name.set(String::new());
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match expiry(&expires.get_untracked()) {
            Ok(expires_at) => {
                create.dispatch(NewKey {
                    name: name.get_untracked(),
                    scopes: scopes.get_untracked(),
                    expires_at,
                    require_signature: signed.get_untracked(),
                });
            }
            Err(e) => error.set(Some(e)),
        }
    };
    view! {
        <section class="panel">
            <h1>"API keys"</h1>
            <p class="hint">"Integrations (an EHR's integration engine, a scheduling system) send patient events and keep contacts in sync through the API at "<code>"/api/v1"</code>" with a key. A key can do only what its scopes allow; every use is logged. See the "<a href="/api/docs" rel="external">"API documentation"</a>"."</p>
            <form class="form-grid" data-test="new-key" on:submit=submit>
                <label for="key-name">"Name"</label>
                <div>
                    <input id="key-name" data-test="key-name" type="text" maxlength="80" autocomplete="off"
                        placeholder="Epic Bridges — scheduling" bind:value=name/>
                    <FieldError error=error field="name" label="Name"/>
                </div>
                <span id="scopes-label">"Scopes"</span>
                <div role="group" aria-labelledby="scopes-label" class="choices">
                    {Scope::ALL.into_iter().map(|s| {
                        let id = format!("scope-{}", s.as_str().replace(':', "-"));
                        let for_id = id.clone();
                        view! {
                            <label class="choice" for=for_id>
                                <input type="checkbox" id=id data-test=format!("scope-{}", s.as_str())
                                    prop:checked=move || scopes.with(|v| v.contains(&s))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        scopes.update(|v| { v.retain(|x| *x != s); if on { v.push(s); } });
                                    }/>
                                <code>{s.as_str()}</code> " — " {s.describe()}
                            </label>
                        }
                    }).collect_view()}
                    <FieldError error=error field="scopes" label="Scopes"/>
                </div>
                <label for="key-expires">"Expires (optional)"</label>
                <div>
                    <input id="key-expires" data-test="key-expires" type="date" bind:value=expires/>
                    <FieldError error=error field="expires_at" label="Expires"/>
                </div>
                <span id="signed-label">"Signed requests"</span>
                <label class="choice" for="key-signed">
                    <input id="key-signed" data-test="key-signed" type="checkbox" bind:checked=signed/>
                    "Require an HMAC signature on every request (Hermetic-Signature), so a leaked key alone cannot send data"
                </label>
                <div></div>
                <button type="submit" class="primary" data-test="create-key"
                    disabled=move || !hydrated.get() || create.pending().get()>
                    {move || if create.pending().get() { "Creating…" } else { "Create key" }}
                </button>
            </form>
            <ErrorMessage error=Signal::derive(move || error.get().filter(|e| e.field.is_none()))/>
        </section>
        {move || created.get().map(|k| view! { <NewSecret key=k created=created/> })}
        <Transition fallback=|| view! { <section class="panel"><p>"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match keys.await {
                    Ok(list) if list.is_empty() => view! {
                        <section class="panel"><p class="empty" data-test="no-keys">"No API keys yet. Create one for each integration, with only the scopes it needs."</p></section>
                    }.into_any(),
                    Ok(list) => view! { <KeyTable keys=list version=version/> }.into_any(),
                    Err(e) => view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn NewSecret(key: CreatedKeyView, created: RwSignal<Option<CreatedKeyView>>) -> impl IntoView {
    let hydrated = use_hydrated();
    let copied = RwSignal::new(None::<&'static str>);
    let secret = key.secret.clone();
    view! {
        <section class="panel alert-panel" data-test="new-secret" aria-live="polite">
            <h2>"Copy the key now"</h2>
            <p>"This is the only time Hermetic shows it. Store it in your integration engine's secret store; if it is lost, revoke the key and create another."</p>
            <label for="new-key-secret">"API key"</label>
            <div class="copy-row">
                <input id="new-key-secret" class="code" readonly data-test="secret" value=secret.clone()/>
                <button type="button" data-test="copy-secret" disabled=move || !hydrated.get()
                    on:click=move |_| copy_text(secret.clone(), copied)>"Copy"</button>
            </div>
            {key.signing_secret.clone().map(|s| {
                let s2 = s.clone();
                view! {
                    <label for="new-key-signing">"Signing secret"</label>
                    <div class="copy-row">
                        <input id="new-key-signing" class="code" readonly data-test="signing-secret" value=s/>
                        <button type="button" data-test="copy-signing" disabled=move || !hydrated.get()
                            on:click=move |_| copy_text(s2.clone(), copied)>"Copy"</button>
                    </div>
                    <p class="hint">"Sign each request: Hermetic-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of t + \".\" + the raw body, keyed with this secret>. "
                        <a href="/api/docs#signatures" rel="external">"How to compute it, with examples"</a>"."</p>
                }
            })}
            <p class="hint" role="status" data-test="copied">{move || copied.get()}</p>
            <button type="button" data-test="secret-done" on:click=move |_| created.set(None)>"I have stored it"</button>
        </section>
    }
}

fn status(k: &KeyView) -> (&'static str, bool) {
    if k.revoked_at.is_some() {
        ("Revoked", false)
    } else if k.expired {
        ("Expired", false)
    } else {
        ("Active", true)
    }
}

#[component]
fn KeyTable(keys: Vec<KeyView>, version: RwSignal<u32>) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>"Keys"</h2>
            <div class="table-wrap">
                <table data-test="keys">
                    <caption class="visually-hidden">"API keys of this organisation"</caption>
                    <thead><tr>
                        <th scope="col">"Name"</th><th scope="col">"Key"</th><th scope="col">"Scopes"</th>
                        <th scope="col">"Signed"</th><th scope="col">"Created"</th><th scope="col">"Last used"</th>
                        <th scope="col">"Status"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr></thead>
                    <tbody>
                        {keys.into_iter().map(|k| {
                            let (label, active) = status(&k);
                            view! { <KeyRow key=k label=label active=active version=version/> }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}

#[component]
fn KeyRow(key: KeyView, label: &'static str, active: bool, version: RwSignal<u32>) -> impl IntoView {
    let hydrated = use_hydrated();
    let id = key.id;
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let revoke = Action::new(move |_: &()| revoke_api_key(id));
    Effect::new(move || match revoke.value().get() {
        Some(Ok(())) => version.update(|v| *v += 1),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let created = match &key.created_by {
        Some(by) => format!("{} by {by}", format_time(key.created_at)),
        None => format_time(key.created_at),
    };
    let expires = key.expires_at.map(|e| format!("until {}", format_time(e)));
    view! {
        <tr data-test="key" data-key=key.id.to_string() data-status=label.to_lowercase()>
            <th scope="row">{key.name.clone()}</th>
            <td><code>{format!("{}…", key.shown_prefix)}</code></td>
            <td>{key.scopes.iter().map(|s| view! { <code class="chip">{s.as_str()}</code> " " }).collect_view()}</td>
            <td>{if key.require_signature { "Yes" } else { "No" }}</td>
            <td>{created}</td>
            <td data-test="last-used">{key.last_used_at.map(format_time).unwrap_or_else(|| "Never".into())}</td>
            <td>
                <span class="badge" class:ok=active class:warn=!active data-test="key-status">{label}</span>
                {expires.map(|e| view! { <span class="hint">" " {e}</span> })}
            </td>
            <td>
                {move || match (active, confirming.get()) {
                    (false, _) => ().into_any(),
                    (true, false) => view! {
                        <button type="button" class="danger" data-test="revoke-key" disabled=move || !hydrated.get()
                            on:click=move |_| confirming.set(true)>"Revoke…"</button>
                    }.into_any(),
                    (true, true) => view! {
                        <span>"Revoke? Requests with it fail at once."</span>
                        <button type="button" class="danger" data-test="confirm-revoke" disabled=move || revoke.pending().get()
                            on:click=move |_| { revoke.dispatch(()); }>"Revoke"</button>
                        <button type="button" on:click=move |_| confirming.set(false)>"Keep"</button>
                    }.into_any(),
                }}
                <ErrorMessage error=error/>
            </td>
        </tr>
    }
}
