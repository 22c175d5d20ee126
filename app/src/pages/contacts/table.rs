//! The contacts table: pages through any number of contacts, decrypting only the visible page.

use super::ContactsNav;
use crate::api_contacts::{
    add_suppression, browse_contacts, list_lists, list_suppressions, list_unsubscribes, remove_suppression,
};
use crate::components::{ErrorMessage, Guard, format_time, use_hydrated, use_me};
use crate::error::AppError;
use domain::contacts::{ConsentFilter, ConsentPurpose, ContactQuery, ContactSort, MemberStatus, SuppressionReason};
use domain::{Permission, Phi};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn ContactsPage() -> impl IntoView {
    view! {
        <Title text="Contacts · Hermetic"/>
        <Guard permission=Permission::ContactsRead>
            <ContactsNav/>
            <ContactTable/>
        </Guard>
    }
}

#[component]
fn ContactTable() -> impl IntoView {
    let hydrated = use_hydrated();
    let me = use_me();
    let can_write = me.as_ref().is_some_and(|m| m.can(Permission::ContactsWrite));
    let can_export = me.as_ref().is_some_and(|m| m.can(Permission::ContactsExport));
    // (cursor, what to show): `None` cursor is the first page. Filtering and sorting happen on the
    // server over every contact (PHI columns are sealed: sorting is by created / updated only).
    let query = RwSignal::new((None::<String>, ContactQuery::default()));
    let history = RwSignal::new(Vec::<Option<String>>::new());
    let search = RwSignal::new(String::new());
    // Loaded in the browser after hydration (an action, not a resource under a transition: the
    // hydration rule in docs/architecture.md), again on every search, filter or page change.
    let page = Action::new(|(after, q): &(Option<String>, ContactQuery)| browse_contacts(after.clone(), q.clone()));
    Effect::new(move || {
        page.dispatch(query.get());
    });
    let lists = Action::new(|_: &()| list_lists());
    Effect::new(move || {
        lists.dispatch(());
    });
    // A new search, filter or order starts again at the first page.
    let set = move |f: &dyn Fn(&mut ContactQuery)| {
        history.set(vec![]);
        query.update(|(after, q)| {
            *after = None;
            f(q);
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = search.get_untracked();
        set(&|q| q.email = (!s.trim().is_empty()).then(|| s.clone()));
    };
    let filtered = move || query.with(|(_, q)| q.email.is_some() || q.list.is_some() || q.consent.is_some());
    view! {
        <section class="panel">
            <div class="panel-head">
                <h1>"Contacts"</h1>
                <div class="actions">
                    {can_write.then(|| view! { <A href="/contacts/new" attr:class="button primary">"New contact"</A> })}
                    {can_export.then(|| view! {
                        <a class="button" href="/contacts/export.csv" download="contacts.csv" data-test="export">"Export CSV"</a>
                    })}
                </div>
            </div>
            <form class="filters" role="search" on:submit=submit>
                <label for="contact-search">"Find by email"</label>
                <input id="contact-search" type="email" placeholder="name@example.org" autocomplete="off" bind:value=search/>
                <button type="submit" disabled=move || !hydrated.get()>"Search"</button>
                <button type="button" on:click=move |_| { search.set(String::new()); set(&|q| *q = ContactQuery::default()); }
                    disabled=move || !hydrated.get()>"Clear"</button>
            </form>
            <div class="filters" data-test="contact-filters">
                <label for="contact-list">"List"</label>
                <select id="contact-list" disabled=move || !hydrated.get()
                    prop:value=move || query.with(|(_, q)| q.list.map(|l| l.to_string()).unwrap_or_default())
                    on:change=move |ev| { let v = uuid::Uuid::parse_str(&event_target_value(&ev)).ok(); set(&|q| q.list = v); }>
                    <option value="">"Any list"</option>
                    {move || lists.value().get().and_then(Result::ok).unwrap_or_default().into_iter().map(|l| view! {
                        <option value=l.id.to_string()>{l.name}</option>
                    }).collect_view()}
                </select>
                <label for="contact-consent">"Consent"</label>
                <select id="contact-consent" disabled=move || !hydrated.get()
                    prop:value=move || query.with(|(_, q)| q.consent.map(|(p, s)| format!("{}:{}", p.as_str(), s.as_str())).unwrap_or_default())
                    on:change=move |ev| {
                        let v = event_target_value(&ev);
                        let c = v.split_once(':').and_then(|(p, s)| Some((ConsentPurpose::parse(p)?, ConsentFilter::parse(s)?)));
                        set(&|q| q.consent = c);
                    }>
                    <option value="">"Any consent"</option>
                    {ConsentPurpose::ALL.into_iter().flat_map(|p| ConsentFilter::ALL.into_iter().map(move |s| view! {
                        <option value=format!("{}:{}", p.as_str(), s.as_str())>{format!("{}: {}", p.label(), s.label())}</option>
                    })).collect_view()}
                </select>
                <label for="contact-sort">"Order"</label>
                <select id="contact-sort" disabled=move || !hydrated.get()
                    prop:value=move || query.with(|(_, q)| q.sort.as_str().to_string())
                    on:change=move |ev| { let v = ContactSort::parse(&event_target_value(&ev)).unwrap_or_default(); set(&|q| q.sort = v); }>
                    {ContactSort::ALL.into_iter().map(|s| view! { <option value=s.as_str()>{s.label()}</option> }).collect_view()}
                </select>
            </div>
            <p class="hint">"Search is exact (the address is never stored readable, so it cannot be searched by parts). For the same reason contacts are ordered by when they were added or updated, not by name or address."</p>
            {move || {
                    match page.value().get() {
                        None => view! { <p>"Loading…"</p> }.into_any(),
                        Some(Ok(p)) => {
                            let next = p.next.clone();
                            let total = match (filtered(), p.total) {
                                (true, 0) => "No contact matches.".to_string(),
                                (true, 1) => "1 contact matches.".to_string(),
                                (true, n) => format!("{n} contacts match."),
                                (false, 1) => "1 contact".to_string(),
                                (false, n) => format!("{n} contacts"),
                            };
                            let caption = format!("Contacts, {}", query.with_untracked(|(_, q)| q.sort.label().to_lowercase()));
                            view! {
                                <p class="muted" data-test="contact-total">{total}</p>
                                <div class="table-wrap">
                                    <table data-test="contacts-table">
                                        <caption class="visually-hidden">{caption}</caption>
                                        <thead><tr>
                                            <th scope="col">"Name"</th><th scope="col">"Email"</th><th scope="col">"Consent"</th>
                                            <th scope="col">"Lists"</th><th scope="col">"Updated"</th>
                                        </tr></thead>
                                        <tbody>
                                            {p.rows.into_iter().map(|r| {
                                                let href = format!("/contacts/{}", r.id);
                                                let name = if r.name.expose().is_empty() { "—".to_string() } else { r.name.expose().clone() };
                                                let consent = ConsentPurpose::ALL.into_iter().map(|p| {
                                                    let state = match r.consent.iter().find(|c| c.purpose == p) {
                                                        Some(c) if c.granted => "yes",
                                                        Some(_) => "withdrawn",
                                                        None => "—",
                                                    };
                                                    view! { <div data-test="row-consent">{format!("{}: {state}", p.label())}</div> }
                                                }).collect_view();
                                                let lists = if r.lists.is_empty() {
                                                    "—".to_string()
                                                } else {
                                                    r.lists.iter().map(|l| match l.status {
                                                        MemberStatus::Subscribed => l.name.clone(),
                                                        MemberStatus::Pending => format!("{} (awaiting confirmation)", l.name),
                                                        MemberStatus::Unsubscribed => format!("{} (unsubscribed)", l.name),
                                                    }).collect::<Vec<_>>().join(", ")
                                                };
                                                view! {
                                                    <tr data-test="contact-row">
                                                        <td><A href=href>{name}</A></td>
                                                        <td>{r.email.expose().clone()}</td>
                                                        <td class="small">{consent}</td>
                                                        <td data-test="row-lists">{lists}</td>
                                                        <td>{format_time(r.updated_at)}</td>
                                                    </tr>
                                                }
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                                <div class="pager">
                                    <button disabled=move || history.with(Vec::is_empty) on:click=move |_| {
                                        let prev = history.try_update(|h| h.pop()).flatten().flatten();
                                        query.update(|q| q.0 = prev);
                                    }>"Previous"</button>
                                    <button disabled=next.is_none() data-test="next-page" on:click=move |_| {
                                        let cur = query.get_untracked().0;
                                        history.update(|h| h.push(cur));
                                        query.update(|q| q.0 = next.clone());
                                    }>"Next"</button>
                                </div>
                            }.into_any()
                        }
                        Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                }}
        </section>
    }
}

#[component]
pub fn SuppressionPage() -> impl IntoView {
    view! {
        <Title text="Suppression list · Hermetic"/>
        <Guard permission=Permission::ContactsRead>
            <ContactsNav/>
            <Suppressions/>
            <Unsubscribes/>
        </Guard>
    }
}

#[component]
fn Suppressions() -> impl IntoView {
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let list = Resource::new(move || version.get(), |_| list_suppressions());
    let email = RwSignal::new(String::new());
    let reason = RwSignal::new("manual".to_string());
    let error = RwSignal::new(None::<AppError>);
    let add = Action::new(|(e, r): &(String, SuppressionReason)| add_suppression(Phi::new(e.clone()), *r));
    let remove = Action::new(|r: &String| remove_suppression(r.clone()));
    Effect::new(move || {
        if let Some(r) = add.value().get() {
            error.set(r.err());
            email.set(String::new());
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move || {
        if let Some(r) = remove.value().get() {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(r) = SuppressionReason::parse(&reason.get_untracked()) {
            add.dispatch((email.get_untracked(), r));
        }
    };
    view! {
        <section class="panel">
            <h1>"Suppression list"</h1>
            <p class="hint">"Addresses here never receive mail from this organisation, whatever list or campaign they are in. Hard bounces and complaints are added automatically; unsubscribes are listed below."</p>
            <form class="filters" on:submit=submit>
                <label for="sup-email">"Block an address"</label>
                <input id="sup-email" type="email" required bind:value=email autocomplete="off"/>
                <label for="sup-reason" class="visually-hidden">"Reason"</label>
                <select id="sup-reason" on:change=move |ev| reason.set(event_target_value(&ev))>
                    <option value="manual" selected>"Blocked by staff"</option>
                    <option value="complaint">"Spam complaint"</option>
                    <option value="hard_bounce">"Hard bounce"</option>
                    <option value="unsubscribed">"Unsubscribed"</option>
                </select>
                <button type="submit" class="primary" disabled=move || !hydrated.get()>"Add"</button>
            </form>
            <ErrorMessage error=error/>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(items) if items.is_empty() => view! {
                            <p class="muted" data-test="suppression-empty">"No address is blocked."</p>
                        }.into_any(),
                        Ok(items) => view! {
                            <table data-test="suppression-table">
                                <thead><tr><th scope="col">"Reference"</th><th scope="col">"Reason"</th><th scope="col">"Since"</th><th scope="col">"Contact"</th><th scope="col"></th></tr></thead>
                                <tbody>
                                    {items.into_iter().map(|s| {
                                        let r = s.reference.clone();
                                        view! {
                                            <tr>
                                                <td><code>{s.reference.clone()}</code></td>
                                                <td>{s.reason.label()}</td>
                                                <td>{format_time(s.created_at)}</td>
                                                <td>{s.contact_id.map(|id| view! { <A href=format!("/contacts/{id}")>"Open"</A> })}</td>
                                                <td>{(s.reason == SuppressionReason::Manual).then(|| view! {
                                                    <button on:click=move |_| { remove.dispatch(r.clone()); }>"Remove"</button>
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

/// Withdrawals of consent in force (unsubscribe links, the preferences page, staff-recorded
/// withdrawals): the people who receive no email of that kind until they consent again themselves.
#[component]
fn Unsubscribes() -> impl IntoView {
    let list = Resource::new(|| (), |_| list_unsubscribes());
    view! {
        <section class="panel">
            <h2>"Unsubscribed"</h2>
            <p class="hint">"People who withdrew consent for a kind of email — with an unsubscribe link, on their preferences page, or as recorded by staff. They receive no email of that kind, from any list or campaign, until they consent again themselves; imports and staff cannot undo it."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(items) if items.is_empty() => view! {
                            <p class="muted" data-test="unsubscribes-empty">"Nobody has unsubscribed."</p>
                        }.into_any(),
                        Ok(items) => view! {
                            <table data-test="unsubscribes-table">
                                <thead><tr><th scope="col">"Contact"</th><th scope="col">"Email they stopped"</th><th scope="col">"Since"</th><th scope="col">"How"</th></tr></thead>
                                <tbody>
                                    {items.into_iter().map(|u| view! {
                                        <tr data-test="unsubscribe-row">
                                            <td>{match (u.contact_id, u.reference) {
                                                (Some(id), _) => view! { <A href=format!("/contacts/{id}")>"Open contact"</A> }.into_any(),
                                                (None, Some(r)) => view! { <span>"Deleted contact " <code>{r}</code></span> }.into_any(),
                                                (None, None) => "—".into_any(),
                                            }}</td>
                                            <td>{u.purpose.label()}</td>
                                            <td>{format_time(u.withdrawn_at)}</td>
                                            <td>{u.source.map(|s| s.label()).unwrap_or("—")}</td>
                                        </tr>
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
