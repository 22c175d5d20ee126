//! The Leptos app: pages, components and server functions. Built twice: with `ssr` into the server
//! (rendering and server functions) and with `hydrate` into WebAssembly for the browser.

// Leptos views are deeply nested types; the campaign editor's form exceeds the default limit.
#![recursion_limit = "256"]

pub mod api;
pub mod api_campaigns;
pub mod api_contacts;
pub mod api_domains;
pub mod api_keys;
pub mod api_reports;
pub mod api_segments;
pub mod api_sequences;
pub mod api_templates;
pub mod background;
pub mod components;
pub mod csrf;
pub mod error;
pub mod pages;
pub mod pages_table;
#[cfg(feature = "hydrate")]
pub mod png;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod webhooks;

use components::NotFoundPanel;
use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
#[cfg(any(feature = "ssr", feature = "split"))]
use leptos_router::LazyRoute;
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};
use pages::audit::AuditPage;
use pages::auth::{EnrolPage, InvitePage, LoginPage, MfaPage};
use pages::home::HomePage;
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

/// Every page but the sign-in page (and the not-found page) is a Leptos lazy route, so a release
/// build with `cargo leptos build --split` and the `split` feature (scripts/lib/common.sh
/// `build_release`) leaves their code out of the main WebAssembly module: the sign-in page loads
/// only that (docs/architecture.md, "The production bundle"). `page!(Route, Page)` is the route's
/// view: `Lazy::<Route>` where the lazy routes exist, the plain component elsewhere. The browser
/// build has lazy routes only with `split`, because without the splitting step (debug builds) the
/// module would import the chunk loader from a placeholder module the browser cannot resolve. The
/// server always renders through them: the HTML is the same as the plain component's, and with a
/// split site the server adds preload links for the chunks the page needs, fetched in parallel
/// with the main module.
#[cfg(any(feature = "ssr", feature = "split"))]
macro_rules! page {
    ($route:ident, $page:path) => {
        leptos_router::Lazy::<$route>::new()
    };
}
#[cfg(not(any(feature = "ssr", feature = "split")))]
macro_rules! page {
    ($route:ident, $page:path) => {
        $page
    };
}

/// Lazy routes in groups: each group is one split point (`#[lazy]` function), whose code the
/// splitter puts in its own chunk. Not one split point per page: the splitter makes a chunk for
/// every set of split points that share code, and with a split point per page that was about 700
/// files, 300 requests for an editor page and 1.8 MB of brotli in all (each chunk compressed on its
/// own, and importing what it uses from the main module by name), against 1 MB for the unsplit
/// module. The routes have no data of their own (pages load theirs in resources); their view is
/// the group's function for that page.
#[cfg(any(feature = "ssr", feature = "split"))]
macro_rules! lazy_group {
    ($group:ident, $preload:ident, $pages:ident { $($route:ident => $page:path,)* }) => {
        // The variants are named after their routes.
        #[allow(clippy::enum_variant_names)]
        #[derive(Debug, Clone, Copy)]
        enum $pages {
            $($route,)*
        }

        #[leptos::lazy]
        fn $group(page: $pages) -> AnyView {
            match page {
                $($pages::$route => $page().into_any(),)*
            }
        }

        $(
            #[derive(Debug)]
            struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                async fn view(_this: Self) -> AnyView {
                    $group($pages::$route).await
                }

                async fn preload() {
                    #[cfg(feature = "split")]
                    $preload().await;
                }
            }
        )*
    };
}

// The signed-out pages besides sign-in: second factor, enrolment, invitations, a patient's opt-in.
#[cfg(any(feature = "ssr", feature = "split"))]
lazy_group!(account_pages, __preload_account_pages, AccountPage {
    MfaRoute => MfaPage,
    EnrolRoute => EnrolPage,
    InviteRoute => InvitePage,
    OptInRoute => pages::contacts::lists::OptInPage,
});

// The signed-in frame and the lighter pages (lists, settings, reports).
#[cfg(any(feature = "ssr", feature = "split"))]
lazy_group!(app_pages, __preload_app_pages, AppPage {
    LayoutRoute => AppLayout,
    HomeRoute => HomePage,
    ContactsRoute => pages::contacts::table::ContactsPage,
    ListsRoute => pages::contacts::lists::ListsPage,
    SuppressionRoute => pages::contacts::table::SuppressionPage,
    FieldsRoute => pages::contacts::fields::FieldsPage,
    SegmentsRoute => pages::segments::SegmentsPage,
    TemplatesRoute => pages::templates::TemplatesPage,
    CampaignsRoute => pages::campaigns::CampaignsPage,
    CampaignReportRoute => pages::campaigns::CampaignReportPage,
    AuditRoute => AuditPage,
    SettingsRoute => SettingsPage,
    UsersRoute => UsersPage,
    MailboxRoute => pages::mailbox::MailboxPage,
    DomainsRoute => pages::domains::SendingDomainsPage,
    ApiKeysRoute => pages::api_keys::ApiKeysPage,
    WebhooksRoute => pages::webhooks::WebhooksPage,
    SequencesRoute => pages::sequences::SequencesPage,
    ReportsRoute => pages::reports::ReportsPage,
    ReportSourceRoute => pages::reports::ReportSourcePage,
});

// The editors, the heaviest pages: contact, import, segment builder, template and campaign.
#[cfg(any(feature = "ssr", feature = "split"))]
lazy_group!(editor_pages, __preload_editor_pages, EditorPage {
    NewContactRoute => pages::contacts::detail::NewContactPage,
    ContactDetailRoute => pages::contacts::detail::ContactDetailPage,
    ImportRoute => pages::contacts::import::ImportPage,
    SegmentEditorRoute => pages::segments::SegmentEditorPage,
    TemplateEditorRoute => pages::templates::TemplateEditorPage,
    CampaignRoute => pages::campaigns::CampaignPage,
    SequenceRoute => pages::sequences::SequencePage,
});

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Hermetic"/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/login/mfa") view=page!(MfaRoute, MfaPage) ssr=SsrMode::Async/>
                <Route path=path!("/login/enrol") view=page!(EnrolRoute, EnrolPage) ssr=SsrMode::Async/>
                <Route path=path!("/invite") view=page!(InviteRoute, InvitePage) ssr=SsrMode::Async/>
                <Route path=path!("/optin") view=page!(OptInRoute, pages::contacts::lists::OptInPage) ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=page!(LayoutRoute, AppLayout) ssr=SsrMode::Async>
                    <Route path=path!("") view=page!(HomeRoute, HomePage)/>
                    <Route path=path!("contacts") view=page!(ContactsRoute, pages::contacts::table::ContactsPage)/>
                    <Route path=path!("contacts/new") view=page!(NewContactRoute, pages::contacts::detail::NewContactPage)/>
                    <Route path=path!("contacts/import") view=page!(ImportRoute, pages::contacts::import::ImportPage)/>
                    <Route path=path!("contacts/lists") view=page!(ListsRoute, pages::contacts::lists::ListsPage)/>
                    <Route path=path!("contacts/suppression") view=page!(SuppressionRoute, pages::contacts::table::SuppressionPage)/>
                    <Route path=path!("contacts/fields") view=page!(FieldsRoute, pages::contacts::fields::FieldsPage)/>
                    <Route path=path!("contacts/:id") view=page!(ContactDetailRoute, pages::contacts::detail::ContactDetailPage)/>
                    <Route path=path!("segments") view=page!(SegmentsRoute, pages::segments::SegmentsPage)/>
                    <Route path=path!("segments/new") view=page!(SegmentEditorRoute, pages::segments::SegmentEditorPage)/>
                    <Route path=path!("segments/:id") view=page!(SegmentEditorRoute, pages::segments::SegmentEditorPage)/>
                    <Route path=path!("templates") view=page!(TemplatesRoute, pages::templates::TemplatesPage)/>
                    <Route path=path!("templates/:id") view=page!(TemplateEditorRoute, pages::templates::TemplateEditorPage)/>
                    <Route path=path!("campaigns") view=page!(CampaignsRoute, pages::campaigns::CampaignsPage)/>
                    <Route path=path!("campaigns/new") view=page!(CampaignRoute, pages::campaigns::CampaignPage)/>
                    <Route path=path!("campaigns/:id") view=page!(CampaignRoute, pages::campaigns::CampaignPage)/>
                    <Route path=path!("campaigns/:id/report") view=page!(CampaignReportRoute, pages::campaigns::CampaignReportPage)/>
                    <Route path=path!("sequences") view=page!(SequencesRoute, pages::sequences::SequencesPage)/>
                    <Route path=path!("sequences/:id") view=page!(SequenceRoute, pages::sequences::SequencePage)/>
                    <Route path=path!("reports") view=page!(ReportsRoute, pages::reports::ReportsPage)/>
                    <Route path=path!("reports/source") view=page!(ReportSourceRoute, pages::reports::ReportSourcePage)/>
                    <Route path=path!("audit") view=page!(AuditRoute, AuditPage)/>
                    <Route path=path!("settings") view=page!(SettingsRoute, SettingsPage)/>
                    <Route path=path!("settings/users") view=page!(UsersRoute, UsersPage)/>
                    <Route path=path!("settings/mailbox") view=page!(MailboxRoute, pages::mailbox::MailboxPage)/>
                    <Route path=path!("settings/domains") view=page!(DomainsRoute, pages::domains::SendingDomainsPage)/>
                    <Route path=path!("settings/api-keys") view=page!(ApiKeysRoute, pages::api_keys::ApiKeysPage)/>
                    <Route path=path!("settings/webhooks") view=page!(WebhooksRoute, pages::webhooks::WebhooksPage)/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazy routes hydrate once their chunks are loaded: `hydrate_lazy` awaits them.
    #[cfg(feature = "split")]
    leptos::mount::hydrate_lazy(App);
    #[cfg(not(feature = "split"))]
    leptos::mount::hydrate_body(App);
}
