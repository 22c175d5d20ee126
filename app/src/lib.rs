//! The Leptos app: pages, components and server functions. Built twice: with `ssr` into the server
//! (rendering and server functions) and with `hydrate` into WebAssembly for the browser.

// Leptos views are deeply nested types; the campaign editor's form exceeds the default limit.
#![recursion_limit = "256"]

pub mod api;
pub mod api_campaigns;
pub mod api_contacts;
pub mod api_domains;
pub mod api_segments;
pub mod api_templates;
pub mod background;
pub mod components;
pub mod csrf;
pub mod error;
pub mod pages;
pub mod pages_table;
#[cfg(feature = "ssr")]
pub mod ssr;

use components::NotFoundPanel;
use domain::Permission;
use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};
use pages::audit::AuditPage;
use pages::auth::{EnrolPage, InvitePage, LoginPage, MfaPage};
use pages::home::{AreaPage, HomePage};
use pages::layout::AppLayout;
use pages::settings::SettingsPage;
use pages::users::UsersPage;

/// The HTML document around the app. Not hydrated, so request-specific values (the CSRF token) can
/// be written straight into `<head>`.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let csrf = ssr::request().map(|r| r.csrf_token).unwrap_or_default();
    #[cfg(not(feature = "ssr"))]
    let csrf = String::new();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="csrf-token" content=csrf/>
                <meta name="referrer" content="no-referrer"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                // The style sheet's name carries its hash in a release build (cargo-leptos
                // `hash-files`), read from the hash file the options name, like the scripts'.
                <HashedStylesheet id="leptos" options=options.clone()/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Unknown paths: the same not-found page as unknown ids (HTTP 404), outside the app's frame
/// because nobody may be signed in.
#[component]
fn NotFound() -> impl IntoView {
    view! {
        <Title text="Page not found · Hermetic"/>
        <main class="auth-page" id="main">
            <div class="auth-card">
                <p class="brand">"Hermetic"</p>
                <NotFoundPanel/>
            </div>
        </main>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Hermetic"/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/login/mfa") view=MfaPage ssr=SsrMode::Async/>
                <Route path=path!("/login/enrol") view=EnrolPage ssr=SsrMode::Async/>
                <Route path=path!("/invite") view=InvitePage ssr=SsrMode::Async/>
                <Route path=path!("/optin") view=pages::contacts::lists::OptInPage ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=AppLayout ssr=SsrMode::Async>
                    <Route path=path!("") view=HomePage/>
                    <Route path=path!("contacts") view=pages::contacts::table::ContactsPage/>
                    <Route path=path!("contacts/new") view=pages::contacts::detail::NewContactPage/>
                    <Route path=path!("contacts/import") view=pages::contacts::import::ImportPage/>
                    <Route path=path!("contacts/lists") view=pages::contacts::lists::ListsPage/>
                    <Route path=path!("contacts/suppression") view=pages::contacts::table::SuppressionPage/>
                    <Route path=path!("contacts/fields") view=pages::contacts::fields::FieldsPage/>
                    <Route path=path!("contacts/:id") view=pages::contacts::detail::ContactDetailPage/>
                    <Route path=path!("segments") view=pages::segments::SegmentsPage/>
                    <Route path=path!("segments/new") view=pages::segments::SegmentEditorPage/>
                    <Route path=path!("segments/:id") view=pages::segments::SegmentEditorPage/>
                    <Route path=path!("templates") view=pages::templates::TemplatesPage/>
                    <Route path=path!("templates/:id") view=pages::templates::TemplateEditorPage/>
                    <Route path=path!("campaigns") view=pages::campaigns::CampaignsPage/>
                    <Route path=path!("campaigns/new") view=pages::campaigns::CampaignPage/>
                    <Route path=path!("campaigns/:id") view=pages::campaigns::CampaignPage/>
                    <Route path=path!("campaigns/:id/report") view=pages::campaigns::CampaignReportPage/>
                    <Route path=path!("sequences") view=|| view! {
                        <AreaPage title="Sequences" permission=Permission::SequencesRead
                            about="Follow-up emails triggered by patient events from your systems."/>
                    }/>
                    <Route path=path!("reports") view=|| view! {
                        <AreaPage title="Reports" permission=Permission::ReportsRead
                            about="Deliveries, opens, clicks and unsubscribes, without patient details."/>
                    }/>
                    <Route path=path!("audit") view=AuditPage/>
                    <Route path=path!("settings") view=SettingsPage/>
                    <Route path=path!("settings/users") view=UsersPage/>
                    <Route path=path!("settings/mailbox") view=pages::mailbox::MailboxPage/>
                    <Route path=path!("settings/domains") view=pages::domains::SendingDomainsPage/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
