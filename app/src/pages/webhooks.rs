//! Settings → Webhooks (administrators): register HTTPS endpoints for delivery events, see the
//! signing secret once, change, disable, rotate the secret, delete (after confirmation), send a
//! test event, and see each endpoint's last attempts (time, event, HTTP status or error, attempt
//! number, next retry).

use crate::components::{ErrorMessage, FieldError, Guard, format_time, use_hydrated};
use crate::error::AppError;
use crate::webhooks::{
    create_webhook, delete_webhook, list_webhooks, rotate_webhook_secret, test_webhook, update_webhook,
};
use domain::Permission;
use domain::webhooks::{AttemptView, CreatedEndpointView, EndpointInput, EndpointView, EventType};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn WebhooksPage() -> impl IntoView {
    view! {
        <Title text="Webhooks · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <WebhooksAdmin/>
        </Guard>
    }
}

/// Bump `version` now and again shortly (a test event is delivered by a background job).
fn refresh_soon(version: RwSignal<u32>) {
    version.update(|v| *v += 1);
    for ms in [1500u64, 4000, 8000] {
        set_timeout(move || version.update(|v| *v += 1), std::time::Duration::from_millis(ms));
    }
}

#[component]
fn WebhooksAdmin() -> impl IntoView {
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let endpoints = Resource::new(move || version.get(), |_| list_webhooks());
    let url = RwSignal::new(String::new());
    let events = RwSignal::new(vec![EventType::MessageSent, EventType::MessageBounced]);
    let created = RwSignal::new(None::<(CreatedEndpointView, &'static str)>);
    // Kept here, not in each endpoint: the list reloads after a test and re-creates its rows.
    let tested = RwSignal::new(None::<uuid::Uuid>);
    let error = RwSignal::new(None::<AppError>);
    let create = Action::new(|e: &EndpointInput| create_webhook(e.clone()));
    Effect::new(move || match create.value().get() {
        Some(Ok(c)) => {
            error.set(None);
            created.set(Some((c, "new")));
            url.set(String::new());
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch(EndpointInput {
            url: url.get_untracked(),
            events: events.get_untracked().iter().map(|e| e.as_str().to_string()).collect(),
            enabled: true,
        });
    };
    view! {
        <section class="panel">
            <h1>"Webhooks"</h1>
            <p class="hint">"Hermetic can tell your systems when a message is sent, bounces, is opened or clicked, or a contact unsubscribes. Each event is a signed HTTPS POST of ids and codes only — never an address, a name or message content — retried with growing delays for 24 hours until your endpoint answers 2xx. An endpoint that answers 410 Gone is turned off."</p>
            <form class="form-grid" data-test="new-webhook" on:submit=submit>
                <label for="webhook-url">"Endpoint URL"</label>
                <div>
                    <input id="webhook-url" data-test="webhook-url" type="url" maxlength="2048" autocomplete="off"
                        placeholder="https://integration.example.org/hermetic-events" bind:value=url/>
                    <FieldError error=error field="url" label="Endpoint URL"/>
                </div>
                <span id="events-label">"Events"</span>
                <div role="group" aria-labelledby="events-label" class="choices">
                    <EventChoices events=events prefix="new"/>
                    <FieldError error=error field="events" label="Events"/>
                </div>
                <div></div>
                <button type="submit" class="primary" data-test="create-webhook"
                    disabled=move || !hydrated.get() || create.pending().get()>
                    {move || if create.pending().get() { "Adding…" } else { "Add endpoint" }}
                </button>
            </form>
            <ErrorMessage error=Signal::derive(move || error.get().filter(|e| e.field.is_none()))/>
        </section>
        {move || created.get().map(|(c, why)| view! { <NewSecret created=c why=why shown=created/> })}
        <Transition fallback=|| view! { <section class="panel"><p>"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match endpoints.await {
                    Ok(list) if list.is_empty() => view! {
                        <section class="panel"><p class="empty" data-test="no-webhooks">"No webhook endpoints yet. Add one above to receive delivery events."</p></section>
                    }.into_any(),
                    Ok(list) => view! {
                        <section class="panel">
                            <div class="row-between">
                                <h2>"Endpoints"</h2>
                                <button type="button" data-test="refresh-webhooks" on:click=move |_| version.update(|v| *v += 1)>"Refresh"</button>
                            </div>
                            {list.into_iter().map(|e| view! { <Endpoint endpoint=e version=version created=created tested=tested/> }).collect_view()}
                        </section>
                    }.into_any(),
                    Err(e) => view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn EventChoices(events: RwSignal<Vec<EventType>>, prefix: &'static str) -> impl IntoView {
    EventType::ALL
        .into_iter()
        .map(|t| {
            let id = format!("{prefix}-event-{}", t.as_str().replace('.', "-"));
            let for_id = id.clone();
            view! {
                <label class="choice" for=for_id>
                    <input type="checkbox" id=id data-test=format!("event-{}", t.as_str())
                        prop:checked=move || events.with(|v| v.contains(&t))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            events.update(|v| { v.retain(|x| *x != t); if on { v.push(t); } });
                        }/>
                    <code>{t.as_str()}</code> " — " {t.describe()}
                </label>
            }
        })
        .collect_view()
}

#[component]
fn NewSecret(
    created: CreatedEndpointView,
    why: &'static str,
    shown: RwSignal<Option<(CreatedEndpointView, &'static str)>>,
) -> impl IntoView {
    view! {
        <section class="panel alert-panel" data-test="webhook-secret-panel" aria-live="polite">
            <h2>{if why == "new" { "Copy the signing secret now" } else { "Copy the new signing secret now" }}</h2>
            <p>"This is the only time Hermetic shows it. Your endpoint checks each request with it: Hermetic-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of t + \".\" + the raw body>. Refuse requests whose signature does not match or whose time is more than five minutes away."</p>
            <label for="webhook-secret">"Signing secret"</label>
            <input id="webhook-secret" class="code" readonly data-test="webhook-secret" value=created.secret.clone()/>
            <button type="button" data-test="webhook-secret-done" on:click=move |_| shown.set(None)>"I have stored it"</button>
        </section>
    }
}

fn answer(a: &AttemptView) -> String {
    match (a.status, &a.error) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => match e.as_str() {
            "timeout" => "No answer within 10 s".into(),
            "connect" => "Could not connect".into(),
            "refused_address" => "Refused: not a public address".into(),
            "unresolved" => "Host name did not resolve".into(),
            "endpoint_disabled" => "Endpoint disabled".into(),
            _ => "Request failed".into(),
        },
        (None, None) => "—".into(),
    }
}

#[component]
fn Endpoint(
    endpoint: EndpointView,
    version: RwSignal<u32>,
    created: RwSignal<Option<(CreatedEndpointView, &'static str)>>,
    tested: RwSignal<Option<uuid::Uuid>>,
) -> impl IntoView {
    let hydrated = use_hydrated();
    let id = endpoint.id;
    let error = RwSignal::new(None::<AppError>);
    let confirming = RwSignal::new(false);
    let editing = RwSignal::new(false);
    let url = RwSignal::new(endpoint.url.clone());
    let events = RwSignal::new(endpoint.events.clone());
    let enabled = endpoint.enabled;
    let input = move |on: bool| EndpointInput {
        url: url.get_untracked(),
        events: events.get_untracked().iter().map(|e| e.as_str().to_string()).collect(),
        enabled: on,
    };
    let update = Action::new(move |i: &EndpointInput| update_webhook(id, i.clone()));
    let delete = Action::new(move |_: &()| delete_webhook(id));
    let rotate = Action::new(move |_: &()| rotate_webhook_secret(id));
    let test = Action::new(move |_: &()| test_webhook(id));
    Effect::new(move || match update.value().get() {
        Some(Ok(())) => {
            error.set(None);
            editing.set(false);
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    Effect::new(move || match delete.value().get() {
        Some(Ok(())) => version.update(|v| *v += 1),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    Effect::new(move || match rotate.value().get() {
        Some(Ok(c)) => created.set(Some((c, "rotated"))),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    Effect::new(move || match test.value().get() {
        Some(Ok(())) => {
            tested.set(Some(id));
            refresh_soon(version);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let status = if enabled { "Enabled" } else { "Disabled" };
    let reason = endpoint.disabled_reason.clone().map(|r| match r.as_str() {
        "gone" => "turned off because it answered 410 Gone".to_string(),
        _ => "turned off by Hermetic".to_string(),
    });
    let attempts = endpoint.attempts.clone();
    view! {
        <article class="subpanel" data-test="webhook" data-webhook=id.to_string()>
            <h3><code data-test="webhook-url-shown">{endpoint.url.clone()}</code></h3>
            <p>
                <span class="badge" class:ok=enabled class:warn=!enabled data-test="webhook-status">{status}</span>
                {reason.map(|r| view! { <span class="hint">" " {r}</span> })}
                " · Events: "
                {endpoint.events.iter().map(|e| view! { <code class="chip">{e.as_str()}</code> " " }).collect_view()}
                " · Added " {format_time(endpoint.created_at)}
            </p>
            <div class="actions">
                <button type="button" data-test="test-webhook" disabled=move || !hydrated.get() || test.pending().get()
                    on:click=move |_| { test.dispatch(()); }>"Send test event"</button>
                <button type="button" data-test="edit-webhook" disabled=move || !hydrated.get()
                    on:click=move |_| editing.update(|e| *e = !*e)>"Edit…"</button>
                <button type="button" data-test="toggle-webhook" disabled=move || !hydrated.get() || update.pending().get()
                    on:click=move |_| { update.dispatch(input(!enabled)); }>{if enabled { "Disable" } else { "Enable" }}</button>
                <button type="button" data-test="rotate-webhook" disabled=move || !hydrated.get() || rotate.pending().get()
                    on:click=move |_| { rotate.dispatch(()); }>"Rotate secret"</button>
                {move || if confirming.get() {
                    view! {
                        <span>"Delete this endpoint and its delivery history?"</span>
                        <button type="button" class="danger" data-test="confirm-delete-webhook" disabled=move || delete.pending().get()
                            on:click=move |_| { delete.dispatch(()); }>"Delete"</button>
                        <button type="button" on:click=move |_| confirming.set(false)>"Keep"</button>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class="danger" data-test="delete-webhook" disabled=move || !hydrated.get()
                            on:click=move |_| confirming.set(true)>"Delete…"</button>
                    }.into_any()
                }}
            </div>
            {move || (tested.get() == Some(id)).then(|| view! { <p class="hint" role="status" data-test="test-queued">"Test event queued; its attempt appears below."</p> })}
            {move || editing.get().then(|| {
                let edit_url = format!("edit-url-{id}");
                view! {
                    <form class="form-grid" data-test="edit-webhook-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        update.dispatch(input(enabled));
                    }>
                        <label for=edit_url.clone()>"Endpoint URL"</label>
                        <div>
                            <input id=edit_url type="url" maxlength="2048" bind:value=url/>
                            <FieldError error=error field="url" label="Endpoint URL"/>
                        </div>
                        <span>"Events"</span>
                        <div class="choices">
                            <EventChoices events=events prefix="edit"/>
                            <FieldError error=error field="events" label="Events"/>
                        </div>
                        <div></div>
                        <button type="submit" class="primary" disabled=move || update.pending().get()>"Save"</button>
                    </form>
                }
            })}
            <ErrorMessage error=Signal::derive(move || error.get().filter(|e| e.field.is_none()))/>
            <h4>"Last attempts"</h4>
            {if attempts.is_empty() {
                view! { <p class="empty" data-test="no-attempts">"No deliveries yet. Send a test event to check the endpoint."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table data-test="webhook-attempts">
                            <caption class="visually-hidden">"Last delivery attempts to this endpoint"</caption>
                            <thead><tr>
                                <th scope="col">"Time"</th><th scope="col">"Event"</th><th scope="col">"Answer"</th>
                                <th scope="col">"Attempt"</th><th scope="col">"Next retry"</th><th scope="col">"Delivery"</th>
                            </tr></thead>
                            <tbody>
                                {attempts.into_iter().map(|a| {
                                    let ok = a.status.is_some_and(|s| (200..300).contains(&s));
                                    let next = a.next_attempt_at.map(format_time).unwrap_or_else(|| "—".into());
                                    let state = match a.state.as_str() {
                                        "delivered" => "Delivered",
                                        "failed" => "Failed (given up)",
                                        _ => "Retrying",
                                    };
                                    view! {
                                        <tr data-test="webhook-attempt" data-state=a.state.clone()>
                                            <td>{format_time(a.at)}</td>
                                            <td><code>{a.event_type.clone()}</code></td>
                                            <td><span class="badge" class:ok=ok class:warn=!ok data-test="attempt-answer">{answer(&a)}</span></td>
                                            <td>{a.attempt}</td>
                                            <td>{next}</td>
                                            <td>{state}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </article>
    }
}
