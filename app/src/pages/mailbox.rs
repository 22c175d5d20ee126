//! The dev mailbox: mail captured instead of sent while no SMTP relay is configured.

use crate::api_contacts::dev_mailbox;
use crate::components::{Guard, format_time};
use domain::Permission;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn MailboxPage() -> impl IntoView {
    let mail = Resource::new(|| (), |_| dev_mailbox());
    view! {
        <Title text="Dev mailbox · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <section class="panel">
                <h1>"Dev mailbox"</h1>
                <p class="hint">"No SMTP relay is configured: mail goes over STARTTLS to the development SMTP listener and is kept here, encrypted, instead of being delivered. Opening this page is an audited read."</p>
                <Transition fallback=|| view! { <p>"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match mail.await {
                            Ok(list) if list.is_empty() => view! { <p class="empty">"No mail captured yet."</p> }.into_any(),
                            Ok(list) => view! {
                                <ul class="mailbox" data-test="mailbox">
                                    {list.into_iter().map(|m| view! {
                                        <li data-test="mail">
                                            <details>
                                                <summary><strong>{m.subject.expose().clone()}</strong> " → " {m.recipient.expose().clone()} " · " {format_time(m.created_at)}</summary>
                                                <table class="mail-headers" data-test="mail-headers">
                                                    <tbody>
                                                        {m.headers.expose().iter().map(|(k, v)| view! {
                                                            <tr><th scope="row">{k.clone()}</th><td>{v.clone()}</td></tr>
                                                        }).collect_view()}
                                                    </tbody>
                                                </table>
                                                {m.has_html.then(|| view! {
                                                    <h3>"HTML"</h3>
                                                    // The message's HTML, served with a sandboxing, script-free CSP.
                                                    <iframe title="Message HTML" data-test="mail-html" sandbox="" referrerpolicy="no-referrer"
                                                        width="680" height="480" src=format!("/settings/mailbox/{}/html", m.id)></iframe>
                                                })}
                                                <h3>"Text"</h3>
                                                <pre class="raw" data-test="mail-text">{m.text.expose().clone()}</pre>
                                                <h3>"Source"</h3>
                                                <pre class="raw" data-test="mail-raw">{m.raw.expose().clone()}</pre>
                                            </details>
                                        </li>
                                    }).collect_view()}
                                </ul>
                            }.into_any(),
                            Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </Guard>
    }
}
