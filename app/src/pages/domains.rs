//! Settings → Sending domains (administrators): add a domain, publish the DNS records Hermetic
//! shows (copyable), verify them, see each record's result, remove a domain. Campaigns may only
//! send From addresses on a verified domain.

use crate::api_domains::{add_sending_domain, list_sending_domains, remove_sending_domain, verify_sending_domain};
use crate::components::{ErrorMessage, Guard, format_time, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::sending_domains::{DomainStatus, SendingDomainView};
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

#[component]
pub fn SendingDomainsPage() -> impl IntoView {
    view! {
        <Title text="Sending domains · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <DomainsAdmin/>
        </Guard>
    }
}

#[component]
fn DomainsAdmin() -> impl IntoView {
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let domains = Resource::new(move || version.get(), |_| list_sending_domains());
    let name = RwSignal::new(String::new());
    let add = Action::new(|d: &String| add_sending_domain(d.clone()));
    let add_error = RwSignal::new(None::<AppError>);
    Effect::new(move || match add.value().get() {
        Some(Ok(_)) => {
            add_error.set(None);
            name.set(String::new());
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => add_error.set(Some(e)),
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        add.dispatch(name.get_untracked());
    };
    view! {
        <section class="panel">
            <h1>"Sending domains"</h1>
            <p class="hint">"Campaigns and test sends go From an address on one of your verified domains, signed with that domain's own DKIM key so receivers can check the mail is yours (DMARC). Add a domain, publish the three DNS records shown, then verify. Hermetic re-checks verified domains every hour; if a record disappears, sending From that domain stops until it is fixed."</p>
            <form class="form-grid" on:submit=submit>
                <label for="domain-name">"Domain"</label>
                <div>
                    <input id="domain-name" data-test="domain-input" type="text" autocomplete="off" spellcheck="false"
                        placeholder="clinic.example" maxlength="300" bind:value=name
                        aria-invalid=move || if add_error.get().is_some() { "true" } else { "false" }
                        aria-describedby="domain-error"/>
                    <p id="domain-error" class="field-error" role="alert" data-test="domain-error">
                        {move || add_error.get().map(|e| e.message)}
                    </p>
                </div>
                <div></div>
                <button type="submit" class="primary" data-test="add-domain"
                    disabled=move || !hydrated.get() || add.pending().get()>
                    {move || if add.pending().get() { "Creating its key…" } else { "Add domain" }}
                </button>
            </form>
        </section>
        <Transition fallback=|| view! { <section class="panel"><p>"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match domains.await {
                    Ok(list) if list.is_empty() => view! {
                        <section class="panel"><p class="empty" data-test="no-domains">"No sending domains yet."</p></section>
                    }.into_any(),
                    Ok(list) => list.into_iter().map(|d| view! { <DomainCard domain=d version=version/> }).collect_view().into_any(),
                    Err(e) => view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn DomainCard(domain: SendingDomainView, version: RwSignal<u32>) -> impl IntoView {
    let hydrated = use_hydrated();
    let id = domain.id;
    let current = RwSignal::new(domain);
    let error = RwSignal::new(None::<AppError>);
    let copied = RwSignal::new(None::<&'static str>);
    let confirming = RwSignal::new(false);
    let verify = Action::new(move |_: &()| verify_sending_domain(id));
    Effect::new(move || match verify.value().get() {
        Some(Ok(d)) => {
            error.set(None);
            current.set(d);
        }
        Some(Err(e)) => {
            error.set(Some(e));
            // The records may have been checked even though the domain cannot be verified.
            version.update(|v| *v += 1);
        }
        None => {}
    });
    let remove = Action::new(move |_: &()| remove_sending_domain(id));
    Effect::new(move || match remove.value().get() {
        Some(Ok(())) => version.update(|v| *v += 1),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let d = current.get_untracked();
    let title = match &d.unicode {
        Some(u) => format!("{u} ({})", d.domain),
        None => d.domain.clone(),
    };
    view! {
        <section class="panel domain" data-test="domain" data-domain=d.domain.clone()>
            <div class="panel-head">
                <h2>{title}</h2>
                <span class="badge" data-test="domain-status"
                    class:ok=move || current.with(|d| d.status == DomainStatus::Verified)
                    class:warn=move || current.with(|d| d.status != DomainStatus::Verified)>
                    {move || current.with(|d| d.status.label())}
                </span>
            </div>
            <p class="hint">{move || current.with(|d| match (d.verified_at, d.last_checked_at) {
                (Some(v), Some(c)) => format!("Verified since {}; last checked {}.", format_time(v), format_time(c)),
                (_, Some(c)) => format!("Last checked {}.", format_time(c)),
                _ => "Not checked yet. Publish these records at your DNS provider, then verify.".to_string(),
            })}</p>
            <div class="table-wrap">
                <table class="records">
                    <caption class="visually-hidden">"DNS records to publish (all TXT)"</caption>
                    <thead><tr><th scope="col">"Record"</th><th scope="col">"Name (TXT)"</th><th scope="col">"Value"</th></tr></thead>
                    <tbody>
                        {d.records.iter().map(|r| {
                            let (n, v) = (r.name.clone(), r.value.clone());
                            let kind = r.kind.as_str();
                            view! {
                                <tr data-test=format!("record-{kind}")>
                                    <th scope="row">{r.kind.label()}</th>
                                    <td>
                                        <label class="visually-hidden" for=format!("{id}-{kind}-name")>{format!("{} record name", r.kind.label())}</label>
                                        <input id=format!("{id}-{kind}-name") class="code" readonly data-test="record-name" value=n.clone()/>
                                        <button type="button" data-test="copy-name" disabled=move || !hydrated.get()
                                            on:click=move |_| copy_text(n.clone(), copied)>"Copy"</button>
                                    </td>
                                    <td>
                                        <label class="visually-hidden" for=format!("{id}-{kind}-value")>{format!("{} record value", r.kind.label())}</label>
                                        <textarea id=format!("{id}-{kind}-value") class="code" readonly rows="3" data-test="record-value">{v.clone()}</textarea>
                                        <button type="button" data-test="copy-value" disabled=move || !hydrated.get()
                                            on:click=move |_| copy_text(v.clone(), copied)>"Copy"</button>
                                        <p class="hint">{r.note.clone()}</p>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <p class="hint" role="status" aria-live="polite" data-test="copied">{move || copied.get()}</p>
            <details>
                <summary>"As zone-file lines"</summary>
                <pre class="raw" data-test="zone-lines">{d.records.iter().map(|r| r.zone_line.clone()).collect::<Vec<_>>().join("\n")}</pre>
            </details>
            <div class="actions">
                <button type="button" class="primary" data-test="verify-domain"
                    disabled=move || !hydrated.get() || verify.pending().get()
                    on:click=move |_| { error.set(None); verify.dispatch(()); }>
                    {move || if verify.pending().get() { "Checking DNS…" } else { "Verify" }}
                </button>
                {move || if confirming.get() {
                    view! {
                        <span>"Remove this domain and destroy its DKIM key? Campaigns From it stop sending."</span>
                        <button type="button" class="danger" data-test="confirm-remove" disabled=move || remove.pending().get()
                            on:click=move |_| { remove.dispatch(()); }>"Remove"</button>
                        <button type="button" on:click=move |_| confirming.set(false)>"Keep"</button>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class="danger" data-test="remove-domain" disabled=move || !hydrated.get()
                            on:click=move |_| confirming.set(true)>"Remove…"</button>
                    }.into_any()
                }}
            </div>
            <p class="hint" aria-live="polite" data-test="verify-progress">
                {move || verify.pending().get().then_some("Looking the records up in DNS…")}
            </p>
            <ErrorMessage error=error/>
            <ul class="checks" data-test="checks">
                {move || current.with(|d| d.checks.iter().map(|c| {
                    let mark = if c.ok { "✓" } else { "✗" };
                    view! {
                        <li data-test=format!("check-{}", c.kind.as_str()) data-ok=if c.ok { "true" } else { "false" }
                            class:ok=c.ok class:fail=!c.ok>
                            <span aria-hidden="true">{mark}</span> " " <strong>{c.kind.label()}</strong>
                            {if c.ok { " — passes: " } else { " — fails: " }} {c.reason.clone()}
                        </li>
                    }
                }).collect_view())}
            </ul>
        </section>
    }
}
