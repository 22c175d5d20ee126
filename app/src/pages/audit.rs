//! The audit trail: filterable list, newest first, and chain verification.

use crate::api::{audit_last_report, audit_list, audit_verify};
use crate::components::{ErrorMessage, Guard, format_time, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::audit::{AuditAction, AuditEntryView, AuditFilter, ChainReport};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit trail · Hermetic"/>
        <Guard permission=Permission::AuditRead>
            <AuditTrail/>
        </Guard>
    }
}

fn report_view(r: ChainReport) -> impl IntoView {
    match r.first_broken {
        None => view! {
            <p class="alert success" role="status" data-test="chain-ok">
                "Chain intact: " {r.rows_checked} " entries verified at " {format_time(r.checked_at)} "."
            </p>
        }
        .into_any(),
        Some(b) => view! {
            <p class="alert error" role="alert" data-test="chain-broken">
                "Chain broken at entry " {b.seq} ": " {b.reason} " (checked " {format_time(r.checked_at)} ")."
            </p>
        }
        .into_any(),
    }
}

#[component]
fn AuditTrail() -> impl IntoView {
    let hydrated = use_hydrated();
    let action_filter = RwSignal::new(String::new());
    let outcome_filter = RwSignal::new(String::new());
    let filter = RwSignal::new(AuditFilter::default());
    let entries = RwSignal::new(Vec::<AuditEntryView>::new());
    let next = RwSignal::new(None::<i64>);
    let error = RwSignal::new(None::<AppError>);
    let page = Resource::new(move || filter.get(), audit_list);
    Effect::new(move || match page.get() {
        Some(Ok(p)) => {
            if filter.with_untracked(|f| f.before_seq.is_some()) {
                entries.update(|e| e.extend(p.entries));
            } else {
                entries.set(p.entries);
            }
            next.set(p.next_before_seq);
            error.set(None);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        filter.set(AuditFilter {
            action: nonempty(action_filter.get_untracked()),
            outcome: nonempty(outcome_filter.get_untracked()),
            ..AuditFilter::default()
        });
    };
    let more = move |_| {
        if let Some(n) = next.get_untracked() {
            filter.update(|f| f.before_seq = Some(n));
        }
    };
    let last = Resource::new(|| (), |_| audit_last_report());
    let verify = Action::new(|_: &()| audit_verify());
    let verify_error = Signal::derive(move || verify.value().get().and_then(Result::err));
    let actions = AuditAction::ALL.iter().map(|a| view! { <option value=a.code()>{a.label()}</option> }).collect_view();
    view! {
        <section class="panel">
            <h1>"Audit trail"</h1>
            <p class="hint">"Every sign-in, administrative change and read of patient data is recorded here. Entries cannot be edited or deleted, and each is chained to the one before, so tampering is detectable."</p>
            <div class="verify">
                <button class="primary" on:click=move |_| { verify.dispatch(()); }
                    disabled=move || !hydrated.get() || verify.pending().get() data-test="verify-chain">
                    "Verify chain now"
                </button>
                {move || match verify.value().get() {
                    Some(Ok(r)) => Some(report_view(r).into_any()),
                    _ => None,
                }}
                <ErrorMessage error=verify_error/>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match last.await {
                            Ok(Some(r)) if verify.value().get().is_none() => Some(view! { <div class="muted">"Last check: " {report_view(r)}</div> }),
                            _ => None,
                        }
                    })}
                </Transition>
            </div>
        </section>
        <section class="panel">
            <form class="filters" on:submit=apply>
                <label for="f-action">"Action"</label>
                <select id="f-action" on:change=move |ev| action_filter.set(event_target_value(&ev))>
                    <option value="">"All actions"</option>
                    {actions}
                </select>
                <label for="f-outcome">"Outcome"</label>
                <select id="f-outcome" on:change=move |ev| outcome_filter.set(event_target_value(&ev))>
                    <option value="">"All"</option>
                    <option value="success">"Success"</option>
                    <option value="failure">"Failure"</option>
                    <option value="denied">"Denied"</option>
                </select>
                <button type="submit" disabled=move || !hydrated.get()>"Apply"</button>
            </form>
            <ErrorMessage error=error/>
            <div class="table-wrap">
                <table data-test="audit-table">
                    <caption class="visually-hidden">"Audit entries, newest first"</caption>
                    <thead><tr>
                        <th scope="col">"#"</th><th scope="col">"When"</th><th scope="col">"Action"</th>
                        <th scope="col">"Outcome"</th><th scope="col">"Who"</th><th scope="col">"Target"</th>
                        <th scope="col">"From"</th><th scope="col">"Details"</th>
                    </tr></thead>
                    <tbody>
                        <For each=move || entries.get() key=|e| e.seq let:e>
                            <tr data-test="audit-row" data-action=e.action.clone()>
                                <td>{e.seq}</td>
                                <td>{format_time(e.occurred_at)}</td>
                                <td>{e.action_label.clone()}</td>
                                <td>{e.outcome.clone()}</td>
                                <td>{e.actor_email.clone().unwrap_or_else(|| "—".into())}</td>
                                <td>{e.target_kind.clone().zip(e.target_id.clone()).map(|(k, i)| format!("{k} {i}")).unwrap_or_default()}</td>
                                <td>{e.ip.clone().unwrap_or_default()}</td>
                                <td><code class="details">{e.details.clone()}</code></td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
            {move || next.get().map(|_| view! { <button on:click=more>"Older entries"</button> })}
        </section>
    }
}
