//! The signed-in user's own account: password and active sessions.

use crate::api::{change_password, my_sessions};
use crate::components::{ErrorMessage, format_time, use_hydrated, use_me};
use crate::error::AppError;
use domain::Permission;
use domain::secret::Secret;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let me = use_me();
    let hydrated = use_hydrated();
    let is_admin = me.as_ref().is_some_and(|m| m.can(Permission::UsersManage));
    let reads_reports = me.as_ref().is_some_and(|m| m.can(Permission::ReportsRead));
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let message = RwSignal::new(None::<&'static str>);
    let error = RwSignal::new(None::<AppError>);
    let version = RwSignal::new(0u32);
    let sessions = Resource::new(move || version.get(), |_| my_sessions());
    let change =
        Action::new(|(c, n): &(String, String)| change_password(Secret::new(c.clone()), Secret::new(n.clone())));
    Effect::new(move || match change.value().get() {
        Some(Ok(csrf)) => {
            crate::csrf::set_token(&csrf);
            current.set(String::new());
            new.set(String::new());
            confirm.set(String::new());
            error.set(None);
            message.set(Some("Password changed. Your other sessions have been signed out."));
            version.update(|v| *v += 1);
        }
        Some(Err(e)) => {
            message.set(None);
            error.set(Some(e));
        }
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if new.get_untracked() != confirm.get_untracked() {
            error.set(Some(AppError::new("invalid", "The two new passwords differ.")));
            return;
        }
        change.dispatch((current.get_untracked(), new.get_untracked()));
    };
    view! {
        <Title text="Settings · Hermetic"/>
        <section class="panel">
            <h1>"Settings"</h1>
            {me.map(|m| view! {
                <dl class="facts">
                    <dt>"Email"</dt><dd>{m.email}</dd>
                    <dt>"Role"</dt><dd>{m.role.label()}</dd>
                    <dt>"Organisation"</dt><dd>{m.organisation_name}</dd>
                </dl>
            })}
            {is_admin.then(|| view! {
                <p><A href="/settings/users">"Manage users"</A> " · " <A href="/contacts/fields">"Contact fields"</A> " · " <A href="/settings/domains">"Sending domains"</A> " · " <A href="/settings/api-keys">"API keys"</A> " · " <A href="/settings/webhooks">"Webhooks"</A> " · " <A href="/settings/mailbox">"Dev mailbox"</A></p>
            })}
        </section>
        {reads_reports.then(|| view! { <DigestSetting/> })}
        <section class="panel">
            <h2>"Change password"</h2>
            <form class="form-grid" on:submit=submit>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" autocomplete="current-password" required bind:value=current/>
                <label for="new-password">"New password"</label>
                <input id="new-password" type="password" autocomplete="new-password" minlength="12" required bind:value=new/>
                <label for="confirm-password">"Repeat new password"</label>
                <input id="confirm-password" type="password" autocomplete="new-password" required bind:value=confirm/>
                <div></div>
                <button type="submit" class="primary" disabled=move || !hydrated.get() || change.pending().get()>"Change password"</button>
            </form>
            {move || message.get().map(|m| view! { <p class="alert success" role="status" data-test="password-changed">{m}</p> })}
            <ErrorMessage error=error/>
        </section>
        <section class="panel">
            <h2>"Where you are signed in"</h2>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Ok(list) => view! {
                            <ul class="sessions" data-test="sessions">
                                {list.into_iter().map(|s| view! {
                                    <li>
                                        <strong>{if s.current { "This browser" } else { "Another session" }}</strong>
                                        " · since " {format_time(s.created_at)}
                                        " · last active " {format_time(s.last_seen_at)}
                                        {s.ip.map(|ip| format!(" · from {ip}"))}
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The user's own choice of the weekly report digest (Mondays, figures only).
#[component]
fn DigestSetting() -> impl IntoView {
    let on = RwSignal::new(false);
    let saved = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let load = Action::new(|_: &()| crate::api_reports::report_digest());
    Effect::new(move || {
        load.dispatch(());
    });
    Effect::new(move || match load.value().get() {
        Some(Ok(v)) => on.set(v),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let save = Action::new(|v: &bool| crate::api_reports::set_report_digest(*v));
    Effect::new(move || match save.value().get() {
        Some(Ok(())) => {
            error.set(None);
            saved.set(true);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    view! {
        <section class="panel" data-test="digest-setting">
            <h2>"Weekly report"</h2>
            <label class="check">
                <input type="checkbox" data-test="digest-toggle" prop:checked=move || on.get()
                    disabled=move || load.value().get().is_none() || save.pending().get()
                    on:change=move |ev| {
                        let v = event_target_checked(&ev);
                        on.set(v);
                        saved.set(false);
                        save.dispatch(v);
                    }/>
                " Email me last week's report figures every Monday morning"
            </label>
            <p class="hint">"Figures only, as your role sees them in Reports: the email never names a patient."</p>
            {move || saved.get().then(|| view! {
                <p class="alert success" role="status" data-test="digest-saved">
                    {if on.get() { "You will get the weekly report." } else { "You will no longer get the weekly report." }}
                </p>
            })}
            <ErrorMessage error=error/>
        </section>
    }
}
