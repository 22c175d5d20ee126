//! The axum router: pages and server functions (from the Leptos app), plain HTTP routes, static
//! files, and the middleware pipeline around all of them.

use crate::middleware::{WebState, pipeline};
use crate::routes;
use app::{App, shell};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::StatusCode;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use service::Services;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Plain axum routes (not pages, not server functions); each is also in the route table.
pub const HTTP_ROUTES: &[&str] = &[
    "/healthz",
    "/imports/upload",
    "/imports/{id}/errors.csv",
    "/contacts/export.csv",
    "/templates/{id}/preview/{version}",
    "/l/unsubscribe/{token}",
    "/l/preferences/{token}",
    "/l/view/{token}",
    "/t/o/{token}",
    "/t/c/{token}",
    "/settings/mailbox/{id}/html",
    "/api/docs",
    crate::metrics::PATH,
    "/reports/export/{file}",
];

/// Largest request body accepted (forms and API calls; file uploads get their own limit).
const BODY_LIMIT: usize = 1024 * 1024;

/// With a hash file (see `config::Runtime::site_hash_file`), pages name the hashed JavaScript,
/// WebAssembly and style sheet. Leptos joins the file name to the binary's directory, so an
/// absolute path is used as it is.
pub fn leptos_options(site_root: &Path, hash_file: Option<&Path>) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("hermetic")
        .site_root(site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .env(Env::PROD)
        .hash_files(hash_file.is_some())
        .hash_file(hash_file.map_or_else(|| "hash.txt".into(), |f| f.to_string_lossy().into()))
        .build()
}

/// The site's build output (`/pkg/…`): brotli or gzip files made at build time (`cargo leptos build
/// --release --precompress` writes `x.br` and `x.gz` next to `x`) are sent to browsers that accept
/// them, the plain file to the rest. Caching is set by the pipeline (hashed names are immutable).
fn site_files(site_root: &Path) -> Router {
    let pkg = tower_http::services::ServeDir::new(site_root.join("pkg")).precompressed_br().precompressed_gzip();
    Router::new().nest_service("/pkg", pkg)
}

async fn healthz(State(svc): State<Services>) -> impl IntoResponse {
    match service::db::one(svc.db(), "SELECT 1 AS ok", []).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

/// The app's pages, listed once per process.
///
/// Listing runs the whole app with resource loading switched off by a process-wide flag in
/// leptos_server (leptos-rs/leptos#4773): a resource whose first poll falls inside that window, on
/// any thread, waits forever, and so does the page rendering it. One server per process lists once
/// before it serves, but a process that builds several routers (the integration tests start one
/// server per test, two at a time) would hang a page being rendered by another server.
pub fn page_routes() -> Vec<AxumRouteListing> {
    static PAGES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    PAGES.get_or_init(|| generate_route_list(App)).clone()
}

pub fn router(
    services: Services,
    site_root: &Path,
    hash_file: Option<&Path>,
    public_url: &str,
    trusted_proxies: crate::forwarded::TrustedProxies,
    api: crate::api::ApiState,
    metrics: crate::metrics::MetricsState,
) -> Router {
    let options = leptos_options(site_root, hash_file);
    let svc = services.clone();
    let context = move || app::ssr::provide_request_context(svc.clone());
    let pages = page_routes();
    let state = WebState {
        services: services.clone(),
        table: Arc::new(routes::table()),
        public_origin: origin_of(public_url),
        trusted_proxies,
        hashed_assets: hash_file.is_some(),
    };
    let shell_options = options.clone();
    let upload_limit =
        usize::try_from(services.settings().import_max_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let small = |r: Router| {
        r.layer(DefaultBodyLimit::max(BODY_LIMIT)).layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
    };
    let plain = small(
        Router::new()
            .route(HTTP_ROUTES[0], get(healthz))
            .route(HTTP_ROUTES[2], get(crate::downloads::import_errors))
            .route(HTTP_ROUTES[3], get(crate::downloads::export))
            .route(HTTP_ROUTES[4], get(crate::recipient::preview_frame))
            .route(HTTP_ROUTES[5], get(crate::recipient::unsubscribe_get).post(crate::recipient::unsubscribe_post))
            .route(HTTP_ROUTES[6], get(crate::recipient::preferences_get).post(crate::recipient::preferences_post))
            .route(HTTP_ROUTES[7], get(crate::recipient::view_in_browser))
            .route(HTTP_ROUTES[8], get(crate::recipient::open_pixel))
            .route(HTTP_ROUTES[9], get(crate::recipient::click))
            .route(HTTP_ROUTES[10], get(crate::recipient::mailbox_html))
            .route(HTTP_ROUTES[13], get(crate::downloads::report_export))
            .with_state(services.clone()),
    );
    // The API documentation: rendered once from the OpenAPI document, with the app's style sheet.
    let docs = crate::api_docs::DocsPage(
        crate::api_docs::render(&crate::api_docs::stylesheet_href(hash_file), public_url, api.budget).into(),
    );
    let docs = small(Router::new().route(HTTP_ROUTES[11], get(crate::api_docs::page)).with_state(docs));
    // Uploads stream to the database in sealed chunks; the service enforces the configured size.
    let uploads = Router::new()
        .route(HTTP_ROUTES[1], post(crate::downloads::upload))
        .with_state(services)
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(upload_limit));
    small(
        Router::new()
            .leptos_routes_with_context(&options, pages, context.clone(), move || shell(shell_options.clone()))
            .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
            .with_state(options),
    )
    .merge(plain)
    .merge(docs)
    .merge(uploads)
    // The machine interface: its own body limits, no session, no CSRF (a key in a header is not
    // sent by browsers on their own), problem+json for unknown routes under it.
    .merge(crate::api::router(api))
    .route("/api/v1/{*rest}", axum::routing::any(crate::api::not_found))
    // Operations: a bearer token, never a session (404 unless configured for this listener).
    .route(crate::metrics::PATH, get(crate::metrics::scrape).with_state(metrics))
    .merge(site_files(site_root))
    .layer(axum::middleware::from_fn_with_state(state, pipeline))
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}
