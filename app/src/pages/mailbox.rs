//! The dev mailbox: mail captured instead of sent while no SMTP relay is configured.
//!
//! The list is paged and decrypts only recipients and subjects (one audit row per page viewed);
//! one message at a time is opened (`?open=<id>`, one audit row per opening, which also covers its
//! HTML frame). Links, not buttons, so paging and opening work before the page is interactive.

use crate::api_contacts::{CapturedMail, MailSummary, dev_mail, dev_mailbox};
use crate::components::{Guard, format_time};
use domain::Permission;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use uuid::Uuid;

fn href(page: u32, open: Option<Uuid>) -> String {
    match open {
        Some(id) => format!("/settings/mailbox?page={page}&open={id}"),
        None => format!("/settings/mailbox?page={page}"),
    }
}

#[component]
pub fn MailboxPage() -> impl IntoView {
    view! {
        <Title text="Dev mailbox · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <Mailbox/>
        </Guard>
    }
}

#[component]
fn Mailbox() -> impl IntoView {
    let query = use_query_map();
    let page =
        Memo::new(move |_| query.with(|q| q.get("page").and_then(|p| p.parse::<u32>().ok())).unwrap_or(1).max(1));
    let open = Memo::new(move |_| query.with(|q| q.get("open").and_then(|id| Uuid::parse_str(&id).ok())));
    let list = Resource::new(move || page.get(), |p| dev_mailbox(Some(p)));
    let opened = Resource::new(
        move || open.get(),
        |id| async move {
            match id {
                Some(id) => dev_mail(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <section class="panel">
            <h1>"Dev mailbox"</h1>
            <p class="hint">"No SMTP relay is configured: mail goes over STARTTLS to the development SMTP listener and is kept here, encrypted, instead of being delivered. Listing and opening messages are audited reads."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(p) if p.items.is_empty() => view! { <p class="empty">"No mail captured yet."</p> }.into_any(),
                        Ok(p) => {
                            let (current, pages, total) = (p.page, p.pages, p.total);
                            view! {
                                <p class="muted" data-test="mailbox-count">
                                    {format!("{total} message{} · page {current} of {pages}", if total == 1 { "" } else { "s" })}
                                </p>
                                <ul class="mailbox" data-test="mailbox">
                                    {p.items.into_iter().map(|m| view! { <MailItem m=m page=current open=open opened=opened/> }).collect_view()}
                                </ul>
                                <nav class="pager" aria-label="Mailbox pages">
                                    {(current > 1).then(|| view! { <a href=href(current - 1, None) rel="prev" data-test="mailbox-newer">"← Newer"</a> })}
                                    {(current < pages).then(|| view! { <a href=href(current + 1, None) rel="next" data-test="mailbox-older">"Older →"</a> })}
                                </nav>
                            }.into_any()
                        }
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// A line of the list; the opened message shows its content under its line.
#[component]
fn MailItem(
    m: MailSummary,
    page: u32,
    open: Memo<Option<Uuid>>,
    opened: Resource<Result<Option<CapturedMail>, crate::error::AppError>>,
) -> impl IntoView {
    let id = m.id;
    let is_open = move || open.get() == Some(id);
    let subject = m.subject.expose().clone();
    let subject = if subject.trim().is_empty() { "(no subject)".to_string() } else { subject };
    view! {
        <li data-test="mail" data-open=move || is_open().to_string()>
            <details open=is_open>
                <summary>
                    // Opening a message is a link: one message (and one frame) at a time.
                    <a href=move || if is_open() { href(page, None) } else { href(page, Some(id)) }
                        aria-current=move || is_open().then_some("true")>
                        <strong>{subject}</strong> " → " {m.recipient.expose().clone()} " · " {format_time(m.created_at)}
                    </a>
                </summary>
                {move || is_open().then(|| view! {
                    <Transition fallback=|| view! { <p>"Opening…"</p> }>
                        {move || Suspend::new(async move {
                            match opened.await {
                                Ok(Some(mail)) if mail.id == id => view! { <MailContent mail=mail/> }.into_any(),
                                Ok(_) => view! { <p>"Opening…"</p> }.into_any(),
                                Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                            }
                        })}
                    </Transition>
                })}
            </details>
        </li>
    }
}

#[component]
fn MailContent(mail: CapturedMail) -> impl IntoView {
    let frame = format!("/settings/mailbox/{}/html", mail.id);
    view! {
        <div class="mail-open" data-test="mail-open">
            <table class="mail-headers" data-test="mail-headers">
                <tbody>
                    {mail.headers.expose().iter().map(|(k, v)| view! {
                        <tr><th scope="row">{k.clone()}</th><td>{v.clone()}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
            {mail.has_html.then(|| view! {
                <h3>"HTML"</h3>
                <p class="hint"><a href=frame.clone() target="_blank" rel="noopener noreferrer">"Open the HTML on its own"</a></p>
                // The message's HTML, served with a sandboxing, script-free CSP. Tall enough for a
                // whole message; longer ones scroll inside the frame.
                <iframe class="mail-frame" title="Message HTML" data-test="mail-html" sandbox="" referrerpolicy="no-referrer"
                    src=frame></iframe>
            })}
            <h3>"Text"</h3>
            <pre class="raw" data-test="mail-text">{mail.text.expose().clone()}</pre>
            <h3>"Source"</h3>
            <pre class="raw" data-test="mail-raw">{mail.raw.expose().clone()}</pre>
        </div>
    }
}
