//! One contact: view (an audited read of PHI), edit, delete, lists and consent.

use super::ContactsNav;
use crate::api_contacts::{
    add_to_list, contact_events, create_contact, delete_contact, event_properties, get_contact, list_fields,
    list_lists, record_consent, unsubscribe_from_list, update_contact,
};
use crate::components::{ErrorMessage, FieldError, Guard, format_time, hard_navigate, use_hydrated, use_me};
use crate::error::AppError;
use domain::contacts::{
    BuiltinField, ConsentOutcome, ConsentPurpose, ContactInput, CustomField, FieldType, MemberStatus,
};
use domain::{Permission, Phi};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The editable fields: built-ins, then the organisation's custom fields.
fn form_fields(custom: &[CustomField]) -> Vec<(String, String, FieldType, Vec<String>, bool)> {
    BuiltinField::ALL
        .iter()
        .map(|f| (f.key().to_string(), f.label().to_string(), f.field_type(), vec![], f.is_phi()))
        .chain(custom.iter().map(|f| (f.key.clone(), f.label.clone(), f.field_type, f.options.clone(), f.is_phi)))
        .collect()
}

fn input_type(t: FieldType, key: &str) -> &'static str {
    match (t, key) {
        (_, "email") => "email",
        (_, "phone") => "tel",
        (FieldType::Date, _) => "date",
        (FieldType::Number, _) => "number",
        _ => "text",
    }
}

/// A form over all fields; `values` holds the current strings.
#[component]
fn ContactForm(
    custom: Vec<CustomField>,
    values: RwSignal<BTreeMap<String, String>>,
    /// The last save's error: a refused field's reason shows next to it.
    #[prop(into)]
    error: Signal<Option<AppError>>,
) -> impl IntoView {
    form_fields(&custom)
        .into_iter()
        .map(|(key, label, t, options, phi)| {
            let id = format!("field-{key}");
            let k = key.clone();
            let k2 = key.clone();
            let get = move || values.with(|v| v.get(&k).cloned().unwrap_or_default());
            let set = move |ev: leptos::ev::Event| {
                let v = event_target_value(&ev);
                values.update(|m| {
                    m.insert(k2.clone(), v);
                });
            };
            let control = match t {
                FieldType::OneOf => view! {
                    <select id=id.clone() on:change=set prop:value=get>
                        <option value="">"—"</option>
                        {options.into_iter().map(|o| view! { <option value=o.clone()>{o.clone()}</option> }).collect_view()}
                    </select>
                }
                .into_any(),
                FieldType::Boolean => view! {
                    <select id=id.clone() on:change=set prop:value=get>
                        <option value="">"—"</option>
                        <option value="yes">"Yes"</option>
                        <option value="no">"No"</option>
                    </select>
                }
                .into_any(),
                // Time zones: type to filter the IANA list (the server checks the value).
                _ if key == "time_zone" => view! {
                    <input id=id.clone() type="text" list="time-zones" autocomplete="off" spellcheck="false"
                        placeholder="Start typing, e.g. Europe/Berlin" on:input=set prop:value=get/>
                    <datalist id="time-zones" data-test="time-zones">
                        {domain::time_zones::TIME_ZONES.iter().map(|z| view! { <option value=*z></option> }).collect_view()}
                    </datalist>
                }
                .into_any(),
                _ => view! { <input id=id.clone() type=input_type(t, &key) on:input=set prop:value=get required=key == "email"/> }.into_any(),
            };
            view! {
                <label for=id>{label.clone()}{phi.then(|| view! { <span class="phi-tag" title="Protected health information: encrypted at rest">"PHI"</span> })}</label>
                {control}
                <FieldError error=error field=key label=label/>
            }
        })
        .collect_view()
}

/// The error unless the form shows it next to a field (a refused value the person typed).
fn off_form(error: Signal<Option<AppError>>, values: RwSignal<BTreeMap<String, String>>) -> Signal<Option<AppError>> {
    Signal::derive(move || {
        error.get().filter(|e| e.field.as_ref().is_none_or(|p| !values.with(|v| v.contains_key(&p.field))))
    })
}

fn to_input(values: &BTreeMap<String, String>) -> ContactInput {
    ContactInput {
        fields: values
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), Phi::new(v.clone())))
            .collect(),
    }
}

#[component]
pub fn NewContactPage() -> impl IntoView {
    let hydrated = use_hydrated();
    let custom = Resource::new(|| (), |_| list_fields());
    let values = RwSignal::new(BTreeMap::new());
    let save = Action::new(|input: &ContactInput| create_contact(input.clone()));
    let error = Signal::derive(move || save.value().get().and_then(Result::err));
    Effect::new(move || {
        if let Some(Ok(id)) = save.value().get() {
            hard_navigate(&format!("/contacts/{id}"));
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch(to_input(&values.get_untracked()));
    };
    view! {
        <Title text="New contact · Hermetic"/>
        <Guard permission=Permission::ContactsWrite>
            <ContactsNav/>
            <section class="panel">
                <h1>"New contact"</h1>
                <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        let custom = custom.await.unwrap_or_default();
                        view! {
                            <form class="form-grid" on:submit=submit>
                                <ContactForm custom=custom values=values error=error/>
                                <div></div>
                                <button type="submit" class="primary" disabled=move || !hydrated.get() || save.pending().get()>"Create contact"</button>
                            </form>
                        }
                    })}
                </Suspense>
                <ErrorMessage error=off_form(error, values)/>
            </section>
        </Guard>
    }
}

#[component]
pub fn ContactDetailPage() -> impl IntoView {
    view! {
        <Title text="Contact · Hermetic"/>
        <Guard permission=Permission::ContactsRead>
            <ContactsNav/>
            <ContactDetailBody/>
        </Guard>
    }
}

#[component]
fn ContactDetailBody() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::ContactsWrite));
    let version = RwSignal::new(0u32);
    let detail = Resource::new(
        move || (id(), version.get()),
        |(id, _)| async move {
            match id {
                Some(id) => get_contact(id).await,
                None => Err(AppError::new("not_found", "Not found.")),
            }
        },
    );
    let events = Resource::new(id, |id| async move {
        match id {
            Some(id) => contact_events(id).await,
            None => Ok(Vec::new()),
        }
    });
    let custom = Resource::new(|| (), |_| list_fields());
    let lists = Resource::new(|| (), |_| list_lists());
    let editing = RwSignal::new(false);
    let values = RwSignal::new(BTreeMap::<String, String>::new());
    let error = RwSignal::new(None::<AppError>);
    let save = Action::new(|(id, input): &(Uuid, ContactInput)| update_contact(*id, input.clone()));
    let remove = Action::new(|id: &Uuid| delete_contact(*id));
    let add_list = Action::new(|(list, contact): &(Uuid, Uuid)| add_to_list(*list, vec![*contact]));
    let unsub = Action::new(|(list, contact): &(Uuid, Uuid)| unsubscribe_from_list(*list, *contact));
    let consent =
        Action::new(|(c, p, g, t): &(Uuid, ConsentPurpose, bool, String)| record_consent(*c, *p, *g, t.clone()));
    let bump = move |r: Option<Result<(), AppError>>| {
        if let Some(r) = r {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    };
    Effect::new(move || {
        if let Some(r) = save.value().get() {
            if r.is_ok() {
                editing.set(false);
            }
            bump(Some(r));
        }
    });
    Effect::new(move || bump(add_list.value().get().map(|r| r.map(|_| ()))));
    Effect::new(move || bump(unsub.value().get()));
    let consent_note = RwSignal::new(None::<ConsentOutcome>);
    Effect::new(move || {
        if let Some(r) = consent.value().get() {
            consent_note.set(r.as_ref().ok().cloned());
            bump(Some(r.map(|_| ())));
        }
    });
    Effect::new(move || {
        if let Some(r) = remove.value().get() {
            match r {
                Ok(()) => hard_navigate("/contacts"),
                Err(e) => error.set(Some(e)),
            }
        }
    });
    let confirm_delete = RwSignal::new(false);
    let consent_purpose = RwSignal::new("marketing".to_string());
    let consent_granted = RwSignal::new("granted".to_string());
    let consent_text = RwSignal::new(String::new());
    let chosen_list = RwSignal::new(String::new());

    view! {
        <Transition fallback=|| view! { <section class="panel"><p>"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                let d = match detail.await {
                    Ok(d) => d,
                    Err(e) => {
                        return crate::components::load_error(e, "/contacts", "All contacts");
                    }
                };
                let custom = custom.await.unwrap_or_default();
                let events = events.await;
                let all_lists = lists.await.unwrap_or_default();
                let cid = d.id;
                let labels: BTreeMap<String, String> = form_fields(&custom).into_iter().map(|(k, l, ..)| (k, l)).collect();
                let current: BTreeMap<String, String> = d.fields.fields.iter().map(|(k, v)| (k.clone(), v.expose().clone())).collect();
                let title = d.fields.fields.get("email").map(|e| e.expose().clone()).unwrap_or_default();
                let start_edit = { let current = current.clone(); move |_| { values.set(current.clone()); editing.set(true); } };
                view! {
                    <section class="panel" data-test="contact-detail">
                        <div class="panel-head">
                            <h1>{title}</h1>
                            {can_write.then(|| view! {
                                <div class="actions">
                                    <button on:click=start_edit disabled=move || !hydrated.get()>"Edit"</button>
                                    <button class="danger" on:click=move |_| confirm_delete.set(true) disabled=move || !hydrated.get()>"Delete"</button>
                                </div>
                            })}
                        </div>
                        {move || confirm_delete.get().then(|| view! {
                            <div class="alert error" role="alertdialog" aria-label="Confirm deletion">
                                <p>"Delete this contact? Their consent history and any suppression stay on record."</p>
                                <button class="danger" on:click=move |_| { remove.dispatch(cid); }>"Delete contact"</button>
                                <button on:click=move |_| confirm_delete.set(false)>"Keep"</button>
                            </div>
                        })}
                        <ErrorMessage error=off_form(error.into(), values)/>
                        {
                            let custom = custom.clone();
                            let current = current.clone();
                            let labels = labels.clone();
                            move || if editing.get() {
                                view! {
                                    <form class="form-grid" on:submit=move |ev: leptos::ev::SubmitEvent| {
                                        ev.prevent_default();
                                        save.dispatch((cid, to_input(&values.get_untracked())));
                                    }>
                                        <ContactForm custom=custom.clone() values=values error=error/>
                                        <div></div>
                                        <div class="actions">
                                            <button type="submit" class="primary" disabled=move || save.pending().get()>"Save"</button>
                                            <button type="button" on:click=move |_| editing.set(false)>"Cancel"</button>
                                        </div>
                                    </form>
                                }.into_any()
                            } else {
                                view! {
                                    <dl class="facts" data-test="contact-fields">
                                        {current.iter().map(|(k, v)| view! {
                                            <dt>{labels.get(k).cloned().unwrap_or_else(|| k.clone())}</dt><dd>{v.clone()}</dd>
                                        }).collect_view()}
                                    </dl>
                                }.into_any()
                            }
                        }
                        <p class="muted small">"Created " {format_time(d.created_at)} " · updated " {format_time(d.updated_at)}</p>
                    </section>
                    <section class="panel">
                        <h2>"May we email them?"</h2>
                        <ul class="mailable" data-test="mailable">
                            {d.mailable.iter().map(|(p, ok, why)| view! {
                                <li><strong>{p.label()}</strong>": " {if *ok { "yes" } else { "no" }} " — " {why.clone()}</li>
                            }).collect_view()}
                        </ul>
                        {d.suppressed.map(|r| view! { <p class="alert error">"This address is suppressed: " {r.label()} "."</p> })}
                        {d.withdrawals.iter().map(|w| {
                            let who = match w.source {
                                Some(s) if s.is_patients_own() => format!("The patient withdrew consent for {} on {} ({}).", w.purpose.label().to_lowercase(), format_time(w.withdrawn_at), s.label()),
                                Some(s) => format!("Consent for {} was withdrawn on {} (recorded by {}).", w.purpose.label().to_lowercase(), format_time(w.withdrawn_at), s.label()),
                                None => format!("Consent for {} was withdrawn on {}.", w.purpose.label().to_lowercase(), format_time(w.withdrawn_at)),
                            };
                            view! {
                                <p class="alert warn" data-test="withdrawal">{who}
                                    " Only the patient can consent again: imports, staff and integrations cannot. To ask them, add them to a double opt-in list for this purpose; consent returns only if they confirm the link in that email."</p>
                            }
                        }).collect_view()}
                        <h3>"Consent history"</h3>
                        <table data-test="consent-history">
                            <thead><tr><th scope="col">"When"</th><th scope="col">"Purpose"</th><th scope="col">"Decision"</th><th scope="col">"Source"</th><th scope="col">"Recorded by"</th></tr></thead>
                            <tbody>
                                {d.consent.iter().map(|c| view! {
                                    <tr>
                                        <td>{format_time(c.occurred_at)}</td>
                                        <td>{c.purpose.label()}</td>
                                        <td>{if c.granted { "Granted" } else { "Withdrawn" }}
                                            {(!c.effective).then(|| view! { " " <span class="muted">"(recorded, not applied: a withdrawal was in force)"</span> })}</td>
                                        <td>{c.source.as_str().replace('_', " ")}</td>
                                        <td>{c.actor_email.clone().unwrap_or_else(|| "—".into())}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        {can_write.then(|| view! {
                            <form class="filters" on:submit=move |ev: leptos::ev::SubmitEvent| {
                                ev.prevent_default();
                                if let Some(p) = ConsentPurpose::parse(&consent_purpose.get_untracked()) {
                                    consent.dispatch((cid, p, consent_granted.get_untracked() == "granted", consent_text.get_untracked()));
                                }
                            }>
                                <label for="consent-purpose">"Record consent"</label>
                                <select id="consent-purpose" on:change=move |ev| consent_purpose.set(event_target_value(&ev))>
                                    <option value="marketing">"Marketing"</option>
                                    <option value="care_communications">"Care communications"</option>
                                </select>
                                <label for="consent-decision" class="visually-hidden">"Decision"</label>
                                <select id="consent-decision" on:change=move |ev| consent_granted.set(event_target_value(&ev))>
                                    <option value="granted">"Granted"</option>
                                    <option value="withdrawn">"Withdrawn"</option>
                                </select>
                                <label for="consent-text" class="visually-hidden">"Consent wording"</label>
                                <input id="consent-text" placeholder="Consent wording (optional)" bind:value=consent_text/>
                                <button type="submit" disabled=move || !hydrated.get()>"Record"</button>
                            </form>
                            {move || consent_note.get().map(|o| view! {
                                <p class=if o.applied { "alert success" } else { "alert warn" } role="status" data-test="consent-outcome">{o.message}</p>
                            })}
                        })}
                    </section>
                    <section class="panel">
                        <h2>"Lists"</h2>
                        <ul data-test="memberships">
                            {d.lists.iter().map(|m| {
                                let list = m.list_id;
                                let status = match m.status {
                                    MemberStatus::Pending => "awaiting confirmation".to_string(),
                                    MemberStatus::Subscribed => "subscribed".to_string(),
                                    MemberStatus::Unsubscribed if m.consent_withdrawn => {
                                        let purpose = all_lists.iter().find(|l| l.id == m.list_id).map(|l| l.purpose.label().to_lowercase());
                                        format!("unsubscribed (consent for {} withdrawn)", purpose.unwrap_or_else(|| "its purpose".into()))
                                    }
                                    MemberStatus::Unsubscribed => "unsubscribed".to_string(),
                                };
                                view! {
                                    <li>{m.list_name.clone()} " — " {status}
                                        {(can_write && m.status != MemberStatus::Unsubscribed).then(|| view! {
                                            " " <button class="link" on:click=move |_| { unsub.dispatch((list, cid)); }>"Unsubscribe"</button>
                                        })}
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                        {can_write.then(|| view! {
                            <form class="filters" on:submit=move |ev: leptos::ev::SubmitEvent| {
                                ev.prevent_default();
                                if let Ok(l) = Uuid::parse_str(&chosen_list.get_untracked()) { add_list.dispatch((l, cid)); }
                            }>
                                <label for="add-list">"Add to list"</label>
                                <select id="add-list" on:change=move |ev| chosen_list.set(event_target_value(&ev))>
                                    <option value="">"Choose a list"</option>
                                    {all_lists.iter().map(|l| view! { <option value=l.id.to_string()>{l.name.clone()}{l.double_opt_in.then_some(" (double opt-in)")}</option> }).collect_view()}
                                </select>
                                <button type="submit" disabled=move || !hydrated.get()>"Add"</button>
                            </form>
                        })}
                    </section>
                    <PatientEvents events=events/>
                    <crate::pages::sequences::ContactSequences contact=cid/>
                }.into_any()
            })}
        </Transition>
    }
}

/// The contact's patient events (from integrations and staff): type and time; each event's
/// properties only on request (an audited PHI read).
#[component]
fn PatientEvents(events: Result<Vec<domain::contacts::PatientEventView>, AppError>) -> impl IntoView {
    view! {
        <section class="panel" data-test="patient-events">
            <h2>"Patient events"</h2>
            {match events {
                Ok(list) if list.is_empty() => view! {
                    <p class="empty" data-test="no-events">"No patient events yet. Integrations send them through the API (appointment booked, lab result ready…)."</p>
                }.into_any(),
                Ok(list) => view! {
                    <ol class="timeline" data-test="events">
                        {list.into_iter().map(|e| view! { <EventItem event=e/> }).collect_view()}
                    </ol>
                }.into_any(),
                Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn EventItem(event: domain::contacts::PatientEventView) -> impl IntoView {
    let hydrated = use_hydrated();
    let id = event.id;
    let open = Action::new(move |_: &()| event_properties(id));
    view! {
        <li data-test="event" data-type=event.event_type.clone()>
            <code>{event.event_type.clone()}</code>
            " · " <time datetime=event.occurred_at.to_rfc3339()>{crate::components::format_time(event.occurred_at)}</time>
            {event.has_properties.then(|| view! {
                " " <button type="button" class="link" data-test="show-properties"
                    disabled=move || !hydrated.get() || open.pending().get()
                    on:click=move |_| { open.dispatch(()); }>"Show details"</button>
            })}
            {move || open.value().get().map(|r| match r {
                Ok(props) => view! {
                    <dl class="properties" data-test="properties">
                        {props.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
                    </dl>
                }.into_any(),
                Err(e) => view! { <p class="field-error" role="alert">{e.message}</p> }.into_any(),
            })}
        </li>
    }
}
