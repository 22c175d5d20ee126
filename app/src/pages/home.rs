//! The home page: welcome, the getting-started checklist, the last 7 days' figures, recent campaigns.

use crate::api_campaigns::{getting_started, list_campaigns};
use crate::components::{format_time, use_me};
use crate::pages::campaigns::{badge, bar};
use domain::Permission;
use domain::campaigns::CampaignStatus;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    let me = use_me();
    let name = me
        .as_ref()
        .map(|m| if m.display_name.is_empty() { m.email.clone() } else { m.display_name.clone() })
        .unwrap_or_default();
    let org = me.as_ref().map(|m| m.organisation_name.clone()).unwrap_or_default();
    let role = me.as_ref().map(|m| m.role.label()).unwrap_or_default();
    let can_send = me.as_ref().is_some_and(|m| m.can(Permission::CampaignsWrite));
    let can_read_campaigns = me.as_ref().is_some_and(|m| m.can(Permission::CampaignsRead));
    let can_read_reports = me.as_ref().is_some_and(|m| m.can(Permission::ReportsRead));
    view! {
        <Title text="Home · Hermetic"/>
        <section class="panel">
            <h1>"Welcome, " {name}</h1>
            <p>"You are signed in to " <strong>{org}</strong> " as " {role} "."</p>
            <p class="hint">"Every contact record in Hermetic is protected health information: it is encrypted at rest, every read is audited, and mail is only sent over enforced TLS."</p>
        </section>
        {can_send.then(|| view! { <Checklist/> })}
        {can_read_reports.then(|| view! { <crate::pages::reports::HomeFigures/> })}
        {can_read_campaigns.then(|| view! { <RecentCampaigns can_send=can_send/> })}
    }
}

/// A new organisation's first steps, each with the page that does it; gone once all are done.
#[component]
fn Checklist() -> impl IntoView {
    let load = Action::new(|_: &()| getting_started());
    Effect::new(move || {
        load.dispatch(());
    });
    let step = |done: bool, href: &'static str, label: &'static str, hint: &'static str, test: &'static str| {
        view! {
            <li class:done=done data-test=test data-done=if done { "yes" } else { "no" }>
                <span class="check" aria-hidden="true">{if done { "✓" } else { "○" }}</span>
                <span class="visually-hidden">{if done { "Done: " } else { "To do: " }}</span>
                <a href=href>{label}</a>
                <span class="hint">{hint}</span>
            </li>
        }
    };
    move || {
        match load.value().get() {
        Some(Ok(g)) if !g.complete() => view! {
            <section class="panel getting-started" data-test="getting-started">
                <div class="panel-head">
                    <h2>"Getting started"</h2>
                    <span class="muted">{format!("{} of 4 done", g.done())}</span>
                </div>
                <progress max="4" value=g.done().to_string() aria-label="Steps done"></progress>
                <ol class="checklist">
                    {step(g.contacts_added, "/contacts/import", "Import your contacts", "A CSV file from your practice system, with consent.", "step-contacts")}
                    {step(g.sending_domain_verified, "/settings/domains", "Verify a sending domain", "An administrator publishes three DNS records, so mail is signed and delivered.", "step-domain")}
                    {step(g.template_created, "/templates", "Create a template", "Start from a layout and add your clinic's words.", "step-template")}
                    {step(g.test_sent, "/campaigns/new", "Send yourself a test", "From a campaign or a template: see it in your inbox first.", "step-test")}
                </ol>
            </section>
        }
        .into_any(),
        Some(Err(e)) => view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any(),
        _ => ().into_any(),
    }
    }
}

/// Running sends with their progress, and the latest campaigns with their figures (hidden below
/// 11 people for roles that may not read contacts, as on the campaign pages).
#[component]
fn RecentCampaigns(can_send: bool) -> impl IntoView {
    let load = Action::new(|_: &()| list_campaigns());
    Effect::new(move || {
        load.dispatch(());
    });
    let running =
        |s: CampaignStatus| matches!(s, CampaignStatus::Sending | CampaignStatus::Paused | CampaignStatus::Scheduled);
    view! {
        <section class="panel" data-test="recent-campaigns">
            <div class="panel-head">
                <h2>"Campaigns"</h2>
                <a href="/campaigns">"All campaigns"</a>
            </div>
            {move || match load.value().get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <p class="empty">"No campaigns yet."
                        {can_send.then(|| view! { " " <a href="/campaigns/new">"Create your first campaign"</a> })}</p>
                }.into_any(),
                Some(Ok(list)) => {
                    let active: Vec<_> = list.iter().filter(|c| running(c.status)).cloned().collect();
                    let recent: Vec<_> = list.into_iter().take(5).collect();
                    view! {
                        {(!active.is_empty()).then(|| view! {
                            <h3>"Running now"</h3>
                            <ul class="running" data-test="running-sends">
                                {active.into_iter().map(|c| view! {
                                    <li>
                                        <a href=format!("/campaigns/{}", c.id)>{c.name.clone()}</a> " " {badge(c.status)}
                                        {c.counts.map(bar)}
                                    </li>
                                }).collect_view()}
                            </ul>
                        })}
                        <h3>"Latest"</h3>
                        <table data-test="home-campaigns">
                            <thead><tr><th scope="col">"Name"</th><th scope="col">"Status"</th><th scope="col">"Sent"</th><th scope="col">"Bounced"</th><th scope="col">"Updated"</th></tr></thead>
                            <tbody>
                                {recent.into_iter().map(|c| view! {
                                    <tr data-test="home-campaign-row">
                                        <td><a href=format!("/campaigns/{}", c.id)>{c.name.clone()}</a></td>
                                        <td>{badge(c.status)}</td>
                                        <td>{match c.counts { Some(k) => k.sent.to_string(), None => c.figures.sent.label() }}</td>
                                        <td>{match c.counts { Some(k) => k.bounced.to_string(), None => c.figures.bounced.label() }}</td>
                                        <td>{format_time(c.updated_at)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
            }}
        </section>
    }
}
