//! Campaigns: the list, the editor (audience with a live count, template, sender, delivery policy,
//! schedule, throttle), test send, launch with confirmation, live progress with pause / resume /
//! cancel, and the report (deliveries, human and machine opens, clicks per link, unsubscribes).
//!
//! Hydration: data loads through actions dispatched by effects (browser only), so the server and
//! the browser first render the same "Loading…" (see docs/architecture.md, hydration rules).

use crate::api_campaigns::{
    campaign_options, campaign_progress, campaign_report, cancel_campaign, count_audience, create_campaign,
    delete_campaign, launch_campaign, list_campaigns, open_campaign, pause_campaign, resume_campaign,
    test_send_campaign, unschedule_campaign, update_campaign,
};
use crate::components::{ErrorMessage, Guard, format_time, hard_navigate, tomorrow_morning, use_hydrated, use_me};
use crate::components::{FieldError, NotFoundPanel, NotFoundStatus, unplaced};
use crate::error::AppError;
use domain::Permission;
use domain::campaign_views::{CampaignOptions, CampaignProgress, CampaignReport, CampaignView, EmailReport};
use domain::campaigns::{
    Audience, AutoPause, CampaignSettings, CampaignStatus, DeliveryCounts, DeliveryPolicy, Schedule, Throttle,
};
use domain::contacts::ConsentPurpose;
use domain::disclosure::Figure;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

const COUNT_DEBOUNCE_MS: u64 = 400;
const PROGRESS_POLL_MS: u64 = 2000;

pub(crate) fn badge(s: CampaignStatus) -> impl IntoView {
    let class = match s {
        CampaignStatus::Sending => "badge ok",
        CampaignStatus::Paused | CampaignStatus::Scheduled => "badge warn",
        CampaignStatus::Failed | CampaignStatus::Cancelled => "badge phi",
        _ => "badge",
    };
    view! { <span class=class data-test="campaign-status">{s.label()}</span> }
}

#[component]
pub fn CampaignsPage() -> impl IntoView {
    view! {
        <Title text="Campaigns · Hermetic"/>
        <Guard permission=Permission::CampaignsRead>
            <CampaignList/>
        </Guard>
    }
}

#[component]
fn CampaignList() -> impl IntoView {
    let can_write = use_me().is_some_and(|m| m.can(Permission::CampaignsWrite));
    let load = Action::new(|_: &()| list_campaigns());
    Effect::new(move || {
        load.dispatch(());
    });
    view! {
        <section class="panel">
            <div class="panel-head">
                <h1>"Campaigns"</h1>
                {can_write.then(|| view! { <a class="button primary" href="/campaigns/new" data-test="new-campaign">"New campaign"</a> })}
            </div>
            <p class="hint">"Every campaign is sent over verified TLS; each patient receives it once."</p>
            {move || match load.value().get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! { <p class="muted">"No campaigns yet."</p> }.into_any(),
                Some(Ok(list)) => view! {
                    <table>
                        <thead><tr><th scope="col">"Name"</th><th scope="col">"Status"</th><th scope="col">"Sent"</th><th scope="col">"Updated"</th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|c| view! {
                                <tr data-test="campaign-row">
                                    <td><a href=format!("/campaigns/{}", c.id)>{c.name.clone()}</a></td>
                                    <td>{badge(c.status)}</td>
                                    <td>{match c.counts {
                                        Some(k) => format!("{} of {}", k.sent, k.total()),
                                        None => c.figures.sent.label(),
                                    }}</td>
                                    <td>{format_time(c.updated_at)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

/// `/campaigns/new` and `/campaigns/{id}`: the editor for drafts, progress for the rest.
#[component]
pub fn CampaignPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    let can_write = use_me().is_some_and(|m| m.can(Permission::CampaignsWrite));
    let load = Action::new(move |id: &Option<Uuid>| {
        let id = *id;
        async move {
            let campaign = match id {
                Some(id) => Some(open_campaign(id).await?),
                None => None,
            };
            // Drafts open in the editor for those who may change them; everything else (and
            // everyone else) sees the progress view.
            let editable = can_write && campaign.as_ref().is_none_or(|c| c.status == CampaignStatus::Draft);
            let options = if editable { Some(campaign_options().await?) } else { None };
            Ok::<_, AppError>((options, campaign))
        }
    });
    Effect::new(move || {
        load.dispatch(id());
    });
    let raw_id = params.with_untracked(|p| p.get("id"));
    let creating = raw_id.is_none();
    let bad_id = raw_id.as_deref().is_some_and(|s| Uuid::parse_str(s).is_err());
    let permission = if creating { Permission::CampaignsWrite } else { Permission::CampaignsRead };
    view! {
        <Title text="Campaign · Hermetic"/>
        <Guard permission=permission>
            // Unknown ids answer 404 from the server render too (the campaign loads in the browser).
            <NotFoundStatus id=raw_id.clone() exists=|id| async move { open_campaign(id).await.map(|_| ()) }/>
            {move || match load.value().get() {
                _ if bad_id => view! { <NotFoundPanel back_href="/campaigns" back_label="All campaigns"/> }.into_any(),
                None => view! { <section class="panel"><p>"Loading…"</p></section> }.into_any(),
                Some(Ok((Some(options), campaign))) => view! { <Editor options=options campaign=campaign/> }.into_any(),
                Some(Ok((None, Some(campaign)))) => view! { <Progress campaign=campaign/> }.into_any(),
                Some(Ok((None, None))) => ().into_any(),
                Some(Err(e)) => crate::components::load_error(e, "/campaigns", "All campaigns"),
            }}
        </Guard>
    }
}

fn default_settings(o: &CampaignOptions) -> CampaignSettings {
    CampaignSettings {
        name: String::new(),
        purpose: ConsentPurpose::Marketing,
        audience: Audience::default(),
        template_id: None,
        from_name: o.default_from_name.clone(),
        from_email: o.default_from_email.clone(),
        reply_to: None,
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle::default(),
        auto_pause: AutoPause::default(),
    }
}

fn toggle(v: &mut Vec<Uuid>, id: Uuid, on: bool) {
    v.retain(|x| *x != id);
    if on {
        v.push(id);
    }
}

#[component]
fn Editor(options: CampaignOptions, campaign: Option<CampaignView>) -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::CampaignsWrite));
    let enabled = Signal::derive(move || hydrated.get() && can_write);
    let id = RwSignal::new(campaign.as_ref().map(|c| c.id));
    let s = RwSignal::new(campaign.map(|c| c.settings).unwrap_or_else(|| default_settings(&options)));
    let options = StoredValue::new(options);
    let error = RwSignal::new(None::<AppError>);
    let notice = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(false);
    let mobile_preview = RwSignal::new(false);

    // Live audience count (debounced).
    let count = Action::new(|(a, p): &(Audience, ConsentPurpose)| count_audience(a.clone(), *p));
    let ticks = RwSignal::new(0u32);
    Effect::new(move || {
        let (a, p) = s.with(|s| (s.audience.clone(), s.purpose));
        if a.segments.is_empty() && a.lists.is_empty() {
            return;
        }
        ticks.update(|t| *t += 1);
        let at = ticks.get_untracked();
        set_timeout(
            move || {
                if ticks.get_untracked() == at {
                    count.dispatch((a, p));
                }
            },
            std::time::Duration::from_millis(COUNT_DEBOUNCE_MS),
        );
    });
    let template_phi = move || {
        let t = s.with(|s| s.template_id);
        options.with_value(|o| o.templates.iter().any(|c| Some(c.id) == t && c.uses_phi))
    };

    let save = Action::new(move |(id, settings): &(Option<Uuid>, CampaignSettings)| {
        let (id, settings) = (*id, settings.clone());
        async move {
            match id {
                Some(id) => update_campaign(id, settings).await.map(|_| id),
                None => create_campaign(settings).await,
            }
        }
    });
    Effect::new(move || {
        if let Some(r) = save.value().get() {
            match r {
                Ok(new_id) => {
                    error.set(None);
                    if id.get_untracked().is_none() {
                        // The new draft gets its own address (a full load: simple and reliable).
                        hard_navigate(&format!("/campaigns/{new_id}"));
                        return;
                    }
                    notice.set(Some("Draft saved.".into()));
                }
                Err(e) => {
                    notice.set(None);
                    error.set(Some(e));
                }
            }
        }
    });
    let test = Action::new(|id: &Uuid| test_send_campaign(*id));
    Effect::new(move || {
        if let Some(r) = test.value().get() {
            match r {
                Ok(m) => {
                    error.set(None);
                    notice.set(Some(m));
                }
                Err(e) => error.set(Some(e)),
            }
        }
    });
    let launch = Action::new(move |(id, settings): &(Uuid, CampaignSettings)| {
        let (id, settings) = (*id, settings.clone());
        async move {
            update_campaign(id, settings).await?;
            launch_campaign(id).await.map(|_| id)
        }
    });
    Effect::new(move || {
        if let Some(r) = launch.value().get() {
            confirming.set(false);
            match r {
                Ok(id) => hard_navigate(&format!("/campaigns/{id}")),
                Err(e) => error.set(Some(e)),
            }
        }
    });
    let delete = Action::new(|id: &Uuid| delete_campaign(*id));
    Effect::new(move || {
        if let Some(r) = delete.value().get() {
            match r {
                Ok(()) => hard_navigate("/campaigns"),
                Err(e) => error.set(Some(e)),
            }
        }
    });

    let text_input = move |label: &'static str,
                           test: &'static str,
                           get: fn(&CampaignSettings) -> String,
                           set: fn(&mut CampaignSettings, String)| {
        view! {
            <label>{label}
                <input type="text" data-test=test prop:value=move || s.with(get) disabled=move || !enabled.get()
                    on:input=move |ev| { let v = event_target_value(&ev); s.update(|x| set(x, v)); }/>
            </label>
        }
    };

    view! {
        <section class="panel campaign-editor">
            <div class="panel-head">
                <h1>{move || if id.get().is_some() { "Edit campaign" } else { "New campaign" }}</h1>
                <a href="/campaigns">"All campaigns"</a>
            </div>
            // Problems with one field are shown next to it, in its own words; the rest up here.
            <ErrorMessage error=unplaced(error.into(), &["name", "from_name", "from_email", "reply_to", "schedule"])/>
            {move || notice.get().map(|n| view! { <p class="alert ok" role="status" data-test="notice">{n}</p> })}
            <form on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); save.dispatch((id.get_untracked(), s.get_untracked())); }>
                <fieldset>
                    <legend>"1. Basics"</legend>
                    {text_input("Name", "campaign-name", |s| s.name.clone(), |s, v| s.name = v)}
                    <FieldError error=error field="name" label="Name"/>
                    <label>"Purpose (recipients need consent for it)"
                        <select data-test="campaign-purpose" disabled=move || !enabled.get()
                            on:change=move |ev| { let v = event_target_value(&ev); if let Some(p) = ConsentPurpose::parse(&v) { s.update(|x| x.purpose = p); } }>
                            {ConsentPurpose::FOR_CAMPAIGNS.into_iter().map(|p| view! {
                                <option value=p.as_str() selected=move || s.with(|x| x.purpose == p)>{p.label()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                </fieldset>
                <fieldset data-test="audience">
                    <legend>"2. Audience"</legend>
                    <p class="hint">"Contacts in any chosen segment or list, minus the suppression list and anyone without consent for the purpose."</p>
                    <div class="choices">
                        <strong>"Segments"</strong>
                        {options.with_value(|o| o.segments.clone()).into_iter().map(|c| view! {
                            <label class="inline"><input type="checkbox" data-test="audience-segment" disabled=move || !enabled.get()
                                prop:checked=move || s.with(|x| x.audience.segments.contains(&c.id))
                                on:change=move |ev| { let on = event_target_checked(&ev); s.update(|x| toggle(&mut x.audience.segments, c.id, on)); }/>
                                {c.name.clone()}</label>
                        }).collect_view()}
                    </div>
                    <div class="choices">
                        <strong>"Lists"</strong>
                        {options.with_value(|o| o.lists.clone()).into_iter().map(|c| view! {
                            <label class="inline"><input type="checkbox" data-test="audience-list" disabled=move || !enabled.get()
                                prop:checked=move || s.with(|x| x.audience.lists.contains(&c.id))
                                on:change=move |ev| { let on = event_target_checked(&ev); s.update(|x| toggle(&mut x.audience.lists, c.id, on)); }/>
                                {c.name.clone()}</label>
                        }).collect_view()}
                    </div>
                    <p class="count" data-test="audience-count" aria-live="polite">{move || {
                        if s.with(|x| x.audience.segments.is_empty() && x.audience.lists.is_empty()) {
                            return "Choose at least one segment or list.".to_string();
                        }
                        if count.pending().get() { return "Counting…".to_string(); }
                        match count.value().get() {
                            Some(Ok(c)) => format!("{} recipients ({} matched, {} suppressed, {} without consent)", c.eligible, c.matched, c.suppressed, c.without_consent),
                            Some(Err(e)) => e.message,
                            None => "Counting…".to_string(),
                        }
                    }}</p>
                </fieldset>
                <fieldset>
                    <legend>"3. Template"</legend>
                    <select data-test="campaign-template" disabled=move || !enabled.get()
                        on:change=move |ev| { let v = Uuid::parse_str(&event_target_value(&ev)).ok(); s.update(|x| x.template_id = v); }>
                        <option value="" selected=move || s.with(|x| x.template_id.is_none())>"Choose a template…"</option>
                        {options.with_value(|o| o.templates.clone()).into_iter().map(|t| view! {
                            <option value=t.id.to_string() selected=move || s.with(|x| x.template_id == Some(t.id))>
                                {format!("{} (version {}){}", t.name, t.latest_version, if t.uses_phi { " — contains PHI" } else { "" })}
                            </option>
                        }).collect_view()}
                    </select>
                    {move || s.with(|x| x.template_id).and_then(|t| {
                        let version = options.with_value(|o| o.templates.iter().find(|c| c.id == t).map(|c| c.latest_version))?;
                        let mobile = mobile_preview.get();
                        Some(view! {
                            <div class="actions">
                                <label class="inline"><input type="checkbox" data-test="preview-mobile" prop:checked=mobile
                                    on:change=move |ev| mobile_preview.set(event_target_checked(&ev))/>"Mobile width"</label>
                                <a href=format!("/templates/{t}") target="_blank" rel="noopener">"Open the template"</a>
                            </div>
                            // Author HTML only ever in a sandboxed frame served with a script-free CSP.
                            <div class="preview-frame" class:mobile=mobile>
                                <iframe title="Email preview" data-test="campaign-preview" sandbox="" referrerpolicy="no-referrer"
                                    width=if mobile { "375" } else { "680" } height="520"
                                    src=format!("/templates/{t}/preview/{version}?sample=synthetic")></iframe>
                            </div>
                        })
                    })}
                </fieldset>
                <fieldset>
                    <legend>"4. Sender"</legend>
                    {text_input("From name", "from-name", |s| s.from_name.clone(), |s, v| s.from_name = v)}
                    <FieldError error=error field="from_name" label="From name"/>
                    <label>"From address"
                        <input type="text" data-test="from-email" list="sending-addresses" autocomplete="off"
                            prop:value=move || s.with(|x| x.from_email.clone()) disabled=move || !enabled.get()
                            on:input=move |ev| { let v = event_target_value(&ev); s.update(|x| x.from_email = v); }/>
                    </label>
                    <FieldError error=error field="from_email" label="From address"/>
                    // The verified sending domains, offered as addresses (issue 19 builds on this).
                    <datalist id="sending-addresses">
                        {options.with_value(|o| {
                            let local = o.default_from_email.split_once('@').map(|(l, _)| l.to_string()).unwrap_or_else(|| "no-reply".into());
                            o.sending_domains.iter().map(|d| view! { <option value=format!("{local}@{d}")></option> }).collect_view()
                        })}
                    </datalist>
                    <p class="hint" data-test="sending-domains">{options.with_value(|o| if o.sending_domains.is_empty() {
                        "Your organisation has no verified sending domain yet: an administrator adds one under Settings → Sending domains. Until then campaigns cannot be saved or sent.".to_string()
                    } else {
                        format!("The From address must be on a verified sending domain: {}.", o.sending_domains.join(", "))
                    })}</p>
                    {text_input("Reply-to (optional)", "reply-to", |s| s.reply_to.clone().unwrap_or_default(), |s, v| s.reply_to = (!v.trim().is_empty()).then_some(v))}
                    <FieldError error=error field="reply_to" label="Reply-to"/>
                </fieldset>
                <fieldset>
                    <legend>"5. Delivery"</legend>
                    {DeliveryPolicy::ALL.into_iter().map(|p| view! {
                        <label class="inline"><input type="radio" name="policy" data-test=format!("policy-{}", p.as_str())
                            disabled=move || !enabled.get() || (p == DeliveryPolicy::TlsPreferred && template_phi())
                            prop:checked=move || s.with(|x| x.policy == p)
                            on:change=move |_| s.update(|x| x.policy = p)/>{p.label()}</label>
                    }).collect_view()}
                    {move || template_phi().then(|| view! { <p class="hint">"This template contains patient information: TLS is required."</p> })}
                    <label>"Messages per second"
                        <input type="number" min="1" max="5000" data-test="per-second" disabled=move || !enabled.get()
                            prop:value=move || s.with(|x| x.throttle.per_second.to_string())
                            on:input=move |ev| { if let Ok(n) = event_target_value(&ev).parse() { s.update(|x| x.throttle.per_second = n); } }/>
                    </label>
                    <label>"Per recipient domain, per minute (optional)"
                        <input type="number" min="1" data-test="per-domain" disabled=move || !enabled.get()
                            prop:value=move || s.with(|x| x.throttle.per_domain_per_minute.map(|n| n.to_string()).unwrap_or_default())
                            on:input=move |ev| { let v = event_target_value(&ev); s.update(|x| x.throttle.per_domain_per_minute = v.parse().ok()); }/>
                    </label>
                    <label>"Pause automatically after this many consecutive errors"
                        <input type="number" min="1" max="1000" data-test="auto-pause" disabled=move || !enabled.get()
                            prop:value=move || s.with(|x| x.auto_pause.after_consecutive_errors.to_string())
                            on:input=move |ev| { if let Ok(n) = event_target_value(&ev).parse() { s.update(|x| x.auto_pause.after_consecutive_errors = n); } }/>
                    </label>
                </fieldset>
                <fieldset>
                    <legend>"6. Schedule"</legend>
                    <FieldError error=error field="schedule" label="Schedule"/>
                    <label class="inline"><input type="radio" name="schedule" data-test="schedule-now" disabled=move || !enabled.get()
                        prop:checked=move || s.with(|x| matches!(x.schedule, Schedule::Now))
                        on:change=move |_| s.update(|x| x.schedule = Schedule::Now)/>"Send when launched"</label>
                    <label class="inline"><input type="radio" name="schedule" data-test="schedule-at" disabled=move || !enabled.get()
                        prop:checked=move || s.with(|x| matches!(x.schedule, Schedule::At { .. }))
                        on:change=move |_| s.update(|x| x.schedule = Schedule::At { at: tomorrow_morning().and_utc() })/>"At a time (UTC)"</label>
                    <label class="inline"><input type="radio" name="schedule" data-test="schedule-local" disabled=move || !enabled.get()
                        prop:checked=move || s.with(|x| matches!(x.schedule, Schedule::LocalTime { .. }))
                        on:change=move |_| s.update(|x| x.schedule = Schedule::LocalTime {
                            date: tomorrow_morning().date(),
                            time: tomorrow_morning().time(),
                        })/>"At a local time in each recipient's time zone"</label>
                    {move || match s.get().schedule {
                        Schedule::Now => ().into_any(),
                        Schedule::At { at } => view! {
                            <label>"Send at (UTC)"
                                <input type="datetime-local" data-test="schedule-at-value" disabled=move || !enabled.get()
                                    prop:value=at.format("%Y-%m-%dT%H:%M").to_string()
                                    on:change=move |ev| {
                                        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&event_target_value(&ev), "%Y-%m-%dT%H:%M") {
                                            s.update(|x| x.schedule = Schedule::At { at: t.and_utc() });
                                        }
                                    }/>
                            </label>
                        }.into_any(),
                        Schedule::LocalTime { date, time } => view! {
                            <label>"Date" <input type="date" data-test="schedule-date" disabled=move || !enabled.get() prop:value=date.format("%Y-%m-%d").to_string()
                                on:change=move |ev| { if let Ok(d) = chrono::NaiveDate::parse_from_str(&event_target_value(&ev), "%Y-%m-%d") {
                                    s.update(|x| if let Schedule::LocalTime { date, .. } = &mut x.schedule { *date = d }); } }/></label>
                            <label>"Local time" <input type="time" data-test="schedule-time" disabled=move || !enabled.get() prop:value=time.format("%H:%M").to_string()
                                on:change=move |ev| { if let Ok(t) = chrono::NaiveTime::parse_from_str(&event_target_value(&ev), "%H:%M") {
                                    s.update(|x| if let Schedule::LocalTime { time, .. } = &mut x.schedule { *time = t }); } }/></label>
                            <p class="hint">"Contacts without a time zone receive it at this time in UTC."</p>
                        }.into_any(),
                    }}
                </fieldset>
                // Read-only roles see the draft, not controls they cannot use.
                {can_write.then(|| view! {
                <div class="actions">
                    <button type="submit" data-test="save-campaign" disabled=move || !enabled.get() || save.pending().get()>"Save draft"</button>
                    <button type="button" data-test="test-campaign" disabled=move || !enabled.get() || id.get().is_none() || test.pending().get()
                        on:click=move |_| { if let Some(i) = id.get_untracked() { notice.set(None); test.dispatch(i); } }>"Send me a test"</button>
                    <button type="button" class="primary" data-test="launch-campaign" disabled=move || !enabled.get() || id.get().is_none()
                        on:click=move |_| confirming.set(true)>"Launch…"</button>
                    <button type="button" class="danger" data-test="delete-campaign" disabled=move || !enabled.get() || id.get().is_none()
                        on:click=move |_| { if let Some(i) = id.get_untracked() { delete.dispatch(i); } }>"Delete draft"</button>
                </div>
                })}
            </form>
            {move || confirming.get().then(|| {
                let n = match count.value().get() { Some(Ok(c)) => c.eligible.to_string(), _ => "the eligible".to_string() };
                let when = match s.with(|x| x.schedule) {
                    Schedule::Now => "now".to_string(),
                    Schedule::At { at } => format!("at {} UTC", at.format("%Y-%m-%d %H:%M")),
                    Schedule::LocalTime { date, time } => format!("on {date} at {} in each recipient's time zone", time.format("%H:%M")),
                };
                view! {
                    <div class="confirm" role="alertdialog" aria-labelledby="confirm-title" data-test="launch-confirm">
                        <h2 id="confirm-title">"Launch this campaign?"</h2>
                        <p>{format!("It will be sent to {n} recipients {when}. This cannot be undone, but it can be paused or cancelled.")}</p>
                        <button type="button" class="primary" data-test="confirm-launch" disabled=move || launch.pending().get()
                            on:click=move |_| { if let Some(i) = id.get_untracked() { launch.dispatch((i, s.get_untracked())); } }>"Launch"</button>
                        <button type="button" on:click=move |_| confirming.set(false)>"Not yet"</button>
                    </div>
                }
            })}
        </section>
    }
}

pub(crate) fn bar(counts: DeliveryCounts) -> impl IntoView {
    // SVG attributes, not inline styles: the Content Security Policy (`style-src 'self'`) blocks
    // every `style=` the page would render.
    let total = counts.total().max(1) as f64;
    let share = |n: u64| n as f64 * 100.0 / total;
    let sent = share(counts.sent);
    let failed = share(counts.failed + counts.bounced);
    view! {
        <svg class="progress" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" data-test="progress-bar"
            aria-label=format!("{} sent, {} failed, {} remaining of {}", counts.sent, counts.failed + counts.bounced, counts.remaining(), counts.total())>
            <rect class="sent" data-test="progress-sent" x="0" y="0" height="10" width=format!("{sent:.2}")></rect>
            <rect class="failed" x=format!("{sent:.2}") y="0" height="10" width=format!("{failed:.2}")></rect>
        </svg>
    }
}

#[component]
fn Progress(campaign: CampaignView) -> impl IntoView {
    let hydrated = use_hydrated();
    let can_write = use_me().is_some_and(|m| m.can(Permission::CampaignsWrite));
    let id = campaign.id;
    let name = campaign.settings.name.clone();
    let initial = CampaignProgress {
        status: campaign.status,
        pause_reason: campaign.pause_reason,
        counts: campaign.counts,
        figures: campaign.figures,
        rate_per_s: 0.0,
        audience_ready: true,
    };
    let progress = RwSignal::new(initial);
    let error = RwSignal::new(None::<AppError>);
    let poll = Action::new(move |_: &()| campaign_progress(id));
    Effect::new(move || {
        if let Some(r) = poll.value().get() {
            match r {
                Ok(p) => progress.set(p),
                Err(e) => error.set(Some(e)),
            }
        }
    });
    // Poll while something can still change (a background call: it never counts as activity).
    Effect::new(move || {
        crate::background::every(
            std::time::Duration::from_millis(PROGRESS_POLL_MS),
            move || {
                (!progress.with_untracked(|p| p.status.is_terminal()))
                    .then_some(crate::api_campaigns::CampaignProgress { id })
            },
            move |r| match r {
                Ok(p) => progress.set(p),
                Err(e) => error.set(Some(e)),
            },
        );
    });
    let act = Action::new(move |what: &&'static str| {
        let what = *what;
        async move {
            match what {
                "pause" => pause_campaign(id).await,
                "resume" => resume_campaign(id).await,
                "cancel" => cancel_campaign(id).await,
                _ => unschedule_campaign(id).await,
            }
        }
    });
    Effect::new(move || {
        if let Some(r) = act.value().get() {
            match r {
                Ok(()) => {
                    if act.input().get_untracked() == Some("unschedule") {
                        hard_navigate(&format!("/campaigns/{id}"));
                    }
                    poll.dispatch(());
                }
                Err(e) => error.set(Some(e)),
            }
        }
    });
    // A control is rendered only for a role and a state that can use it.
    let button = move |what: &'static str, label: &'static str, when: fn(CampaignStatus) -> bool| {
        move || {
            (can_write && when(progress.with(|p| p.status))).then(|| {
                view! {
                    <button type="button" data-test=format!("{what}-campaign")
                        class=if what == "cancel" { "danger" } else { "" }
                        disabled=move || !hydrated.get() || act.pending().get()
                        on:click=move |_| { act.dispatch(what); }>{label}</button>
                }
            })
        }
    };
    view! {
        <section class="panel">
            <div class="panel-head">
                <h1>{name}</h1>
                <a href="/campaigns">"All campaigns"</a>
            </div>
            <ErrorMessage error=error/>
            <p>{move || badge(progress.with(|p| p.status))}
               {move || progress.with(|p| p.pause_reason.map(|r| view! { " " <span class="muted">{r.label()}</span> }))}</p>
            {move || progress.with(|p| p.counts.map(bar))}
            <dl class="stats" data-test="progress">
                {move || progress.with(|p| match p.counts {
                    Some(c) => view! {
                        <div><dt>"Sent"</dt><dd data-test="sent">{c.sent}</dd></div>
                        <div><dt>"Failed or bounced"</dt><dd data-test="failed">{c.failed + c.bounced}</dd></div>
                        <div><dt>"Remaining"</dt><dd data-test="remaining">{c.remaining()}</dd></div>
                        <div><dt>"Skipped"</dt><dd>{c.skipped}</dd></div>
                        <div><dt>"Rate"</dt><dd>{format!("{:.1}/s", p.rate_per_s)}</dd></div>
                    }.into_any(),
                    // Without access to contacts: figures from fewer than 11 people are hidden.
                    None => {
                        let f = p.figures;
                        view! {
                            <div><dt>"Sent"</dt><dd data-test="sent">{f.sent.label()}</dd></div>
                            <div><dt>"Failed"</dt><dd data-test="failed">{f.failed.label()}</dd></div>
                            <div><dt>"Bounced"</dt><dd data-test="bounced">{f.bounced.label()}</dd></div>
                            <div><dt>"Remaining"</dt><dd data-test="remaining">{f.remaining.label()}</dd></div>
                            <div><dt>"Skipped"</dt><dd>{f.skipped.label()}</dd></div>
                        }.into_any()
                    }
                })}
            </dl>
            <div class="actions">
                {button("pause", "Pause", |s| s == CampaignStatus::Sending)}
                {button("resume", "Resume", |s| s == CampaignStatus::Paused)}
                {button("unschedule", "Withdraw schedule", |s| s == CampaignStatus::Scheduled)}
                {button("cancel", "Cancel campaign", |s| matches!(s, CampaignStatus::Sending | CampaignStatus::Paused | CampaignStatus::Scheduled))}
                <a class="button" href=format!("/campaigns/{id}/report") data-test="report-link">"Report"</a>
            </div>
        </section>
    }
}

#[component]
pub fn CampaignReportPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| Uuid::parse_str(&s).ok());
    let load = Action::new(|id: &Uuid| campaign_report(*id));
    Effect::new(move || {
        if let Some(i) = id() {
            load.dispatch(i);
        }
    });
    let raw_id = params.with_untracked(|p| p.get("id"));
    let bad_id = raw_id.as_deref().is_none_or(|s| Uuid::parse_str(s).is_err());
    view! {
        <Title text="Campaign report · Hermetic"/>
        <Guard permission=Permission::ReportsRead>
            <NotFoundStatus id=raw_id.clone() exists=|id| async move { campaign_report(id).await.map(|_| ()) }/>
            {move || match load.value().get() {
                _ if bad_id => view! { <NotFoundPanel back_href="/campaigns" back_label="All campaigns"/> }.into_any(),
                None => view! { <section class="panel"><p>"Loading…"</p></section> }.into_any(),
                Some(Ok(r)) => report_view(r).into_any(),
                Some(Err(e)) => crate::components::load_error(e, "/campaigns", "All campaigns"),
            }}
        </Guard>
    }
}

fn report_view(r: CampaignReport) -> impl IntoView {
    view! {
        <section class="panel report" data-test="report">
            <h1>{r.name.clone()} " · report"</h1>
            <p>{badge(r.status)}</p>
            {email_report(r.email)}
        </section>
    }
}

/// The figures of one email sent to many people — a campaign, or a sequence's email step: totals,
/// rates where both figures are exact, and clicks per link with a bar each.
pub(crate) fn email_report(r: EmailReport) -> impl IntoView {
    // Rates only where both figures are shown exactly.
    let delivered = r.delivered.exact();
    let rate = move |f: Figure| match (f.exact(), delivered) {
        (Some(n), Some(d)) if d > 0 => format!(" · {:.1}%", n as f64 * 100.0 / d as f64),
        _ => String::new(),
    };
    let hidden = [r.delivered, r.bounced, r.unique_human_opens, r.machine_opens, r.human_clicks, r.unsubscribes]
        .into_iter()
        .chain(r.links.iter().flat_map(|l| [l.clicks, l.unique, l.machine]))
        .any(Figure::is_hidden);
    let max_clicks = r.links.iter().filter_map(|l| l.clicks.shown()).max().unwrap_or(0).max(1) as f64;
    let no_links = r.links.is_empty();
    view! {
        <dl class="stats">
            <div><dt>"Delivered"</dt><dd data-test="delivered">{r.delivered.label()}</dd></div>
            <div><dt>"Bounced"</dt><dd data-test="bounced">{r.bounced.label()}</dd></div>
            <div><dt>"Unique opens (people)"</dt><dd data-test="human-opens">{r.unique_human_opens.label()} {rate(r.unique_human_opens)}</dd></div>
            <div><dt>"Machine opens"</dt><dd data-test="machine-opens">{r.machine_opens.label()}</dd></div>
            <div><dt>"Clicks (people)"</dt><dd data-test="human-clicks">{r.human_clicks.label()} " by " {r.unique_human_clicks.label()}</dd></div>
            <div><dt>"Machine clicks"</dt><dd>{r.machine_clicks.label()}</dd></div>
            <div><dt>"Unsubscribes"</dt><dd data-test="unsubscribes">{r.unsubscribes.label()}</dd></div>
        </dl>
        <p class="hint">"Machine opens and clicks — privacy proxies that fetch images for every message, and link scanners — are counted apart from people's."</p>
        {hidden.then(|| view! {
            <p class="hint" data-test="small-cells">"“<11”: fewer than 11 people, hidden for your role. “hidden”: withheld so that a small figure cannot be worked out from the total and the others."</p>
        })}
        {if no_links {
            view! { <p class="empty" data-test="no-links">"This email has no tracked links."</p> }.into_any()
        } else {
            view! {
                <table data-test="link-table">
                    <caption>"Clicks per link"</caption>
                    <thead><tr><th scope="col">"Link"</th><th scope="col">"People"</th><th scope="col">"Unique"</th><th scope="col">"Machines"</th><th scope="col"><span class="visually-hidden">"Chart"</span></th></tr></thead>
                    <tbody>
                        {r.links.into_iter().map(|l| view! {
                            <tr>
                                <td class="url">{l.url.clone()}</td>
                                <td>{l.clicks.label()}</td>
                                <td>{l.unique.label()}</td>
                                <td>{l.machine.label()}</td>
                                <td>{l.clicks.shown().map(|c| view! {
                                    <svg class="hbar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
                                        <rect x="0" y="0" height="10" width=format!("{:.1}", c as f64 * 100.0 / max_clicks)></rect>
                                    </svg>
                                })}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}
