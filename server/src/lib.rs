//! The Hermetic server: configuration, start-up (migrations, key ring, job queue), the HTTP router
//! and the worker processes. `run(listener, config, shutdown)` is what `main` calls and what tests
//! call in-process on port 0.

pub mod admin;
pub mod api;
pub mod api_docs;
pub mod config;
pub mod devsmtp;
pub mod downloads;
pub mod forwarded;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod recipient;
pub mod routes;
pub mod telemetry;
pub mod web;

use config::{Config, Runtime};
use sea_orm::{ConnectOptions, Database};
use service::Services;
use service::clock::{Clock, SystemClock};
use service::crypto::keyring::KeyRing;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Database(String),
    #[error("{0}")]
    Jobs(#[from] jobs::JobsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Service(String),
}

impl From<service::ServiceError> for ServerError {
    fn from(e: service::ServiceError) -> Self {
        ServerError::Service(e.log_detail().into_owned())
    }
}

/// Connect to PostgreSQL and bring the schema up to date (ours, then apalis').
pub async fn connect_and_migrate(rt: &Runtime) -> Result<sea_orm::DatabaseConnection, ServerError> {
    let mut opt = ConnectOptions::new(rt.database_url.clone());
    opt.max_connections(rt.db_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .set_application_name("hermetic");
    let db = Database::connect(opt).await.map_err(|e| ServerError::Database(service::error::describe_db_err(&e)))?;
    migration::migrate(&db)
        .await
        .map_err(|e| ServerError::Database(format!("migration failed: {}", service::error::describe_db_err(&e))))?;
    jobs::setup(db.get_postgres_connection_pool()).await?;
    Ok(db)
}

/// Everything the app needs, built from configuration. Tests pass their own clock.
pub async fn build_services(config: Config, clock: Arc<dyn Clock>) -> Result<(Services, Runtime), ServerError> {
    // Before anything records: the process's metrics recorder (once per process).
    metrics::install();
    let Config { root_key, previous_root_keys, runtime } = config;
    let db = connect_and_migrate(&runtime).await?;
    let keys = KeyRing::with_previous(root_key, previous_root_keys)?;
    let settings = service::Settings {
        auth: runtime.auth.clone(),
        import_max_bytes: runtime.import_max_bytes,
        mail: runtime.mail.clone(),
        mail_dkim: runtime.mail_dkim.clone(),
        domains: runtime.domains.clone(),
        sending: runtime.sending.clone(),
        public_url: runtime.public_url.clone(),
        totp_issuer: runtime.totp_issuer.clone(),
        webhooks: runtime.webhooks,
    };
    let services = Services::new(db, clock, keys, settings)?;
    // Fail fast when this process does not hold the root key the database names as current.
    let current = services.keys().establish(services.db(), services.clock()).await.map_err(|e| {
        ServerError::Service(format!(
            "{} — is HERMETIC_ROOT_KEY the key this database was created with?",
            e.log_detail()
        ))
    })?;
    if current != services.keys().root_key_id() {
        tracing::warn!(
            current_root_key_id = %current,
            configured_root_key_id = %services.keys().root_key_id(),
            "root key rotation pending: new keys are wrapped under the database's current root key, which this process holds as a previous key, until `server admin rotate-root-key` runs"
        );
    }
    // Fail fast on a wrong root key: unwrapping the audit key proves the key matches this database.
    services
        .keys()
        .active_key(services.db(), services.clock(), None, service::crypto::keyring::KeyPurpose::AuditMac)
        .await
        .map_err(|e| {
            ServerError::Service(format!(
                "{} — is HERMETIC_ROOT_KEY the key this database was created with?",
                e.log_detail()
            ))
        })?;
    // Segment definitions saved before their PHI literals were sealed: seal them now rather than
    // wait for the first maintenance run (which also does it). A failure is not fatal.
    match service::segments::seal_legacy(&services).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(segments = n, "sealed legacy segment definitions"),
        Err(e) => tracing::warn!(error = %e.log_detail(), "could not seal legacy segment definitions"),
    }
    Ok((services, runtime))
}

/// Serve the web app (and, when `with_workers`, the job workers) until `shutdown` completes; then
/// stop accepting, finish in-flight requests and jobs, and return.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    runtime: Runtime,
    with_workers: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // `/metrics` on its own address (bound first: a taken address fails the start), or on this
    // listener; without a token, on neither.
    let (metrics_listener, metrics_here) = metrics_endpoints(&services, &runtime, &stop_rx).await?;
    let workers =
        with_workers.then(|| tokio::spawn(jobs::run(services.clone(), runtime.jobs.clone(), stop_rx.clone())));
    // The tracking-event buffer: owned here, handed to the pixel and click handlers.
    let recorder = Arc::new(service::campaigns::tracking::Recorder::spawn(services.clone(), stop_rx.clone()));
    tokio::spawn(service::crypto::revocation::listen(services.clone(), stop_rx.clone()));
    if let Some(dev) = &runtime.dev_smtp {
        let tls = devsmtp::acceptor(&dev.cert, &dev.key).map_err(ServerError::Service)?;
        let l = TcpListener::bind(dev.listen).await?;
        tracing::info!(addr = %dev.listen, "dev SMTP listener (captures mail into the dev mailbox)");
        tokio::spawn(devsmtp::run(l, tls, services.clone(), stop_rx.clone()));
    }
    // The API keys' usage log: owned here, flushed in batches until shutdown.
    let usage = Arc::new(service::api::usage::UsageLog::spawn(services.clone(), stop_rx.clone()));
    let api = api::ApiState::new(services.clone(), runtime.api, usage, runtime.trusted_proxies.clone());
    let router = web::router(
        services,
        &runtime.site_root,
        runtime.site_hash_file.as_deref(),
        &runtime.public_url,
        runtime.trusted_proxies.clone(),
        api,
        metrics_here,
    )
    .layer(axum::Extension(recorder));
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let result = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests and jobs");
        })
        .await;
    let _ = stop_tx.send(true);
    if let Some(w) = workers {
        let _ = w.await;
    }
    if let Some(m) = metrics_listener {
        let _ = m.await;
    }
    result.map_err(ServerError::from)
}

/// Start `metrics.listen` if set; return its task and the state of the main listener's
/// `/metrics` (which answers 404 when there is no token or the endpoint has its own address).
async fn metrics_endpoints(
    services: &Services,
    runtime: &Runtime,
    stop: &watch::Receiver<bool>,
) -> Result<(Option<tokio::task::JoinHandle<()>>, metrics::MetricsState), ServerError> {
    let token = runtime.metrics.token.clone();
    let separate = match runtime.metrics.listen {
        Some(addr) => {
            let state = metrics::MetricsState { services: services.clone(), token: token.clone() };
            Some(metrics::serve_separately(addr, state, stop.clone()).await?)
        }
        None => None,
    };
    let here =
        metrics::MetricsState { services: services.clone(), token: if separate.is_some() { None } else { token } };
    Ok((separate, here))
}

/// Run only the job workers (the `worker` subcommand) until `shutdown` completes. With
/// `metrics.listen`, `/metrics` is served there (a worker has no other listener).
pub async fn work(
    services: Services,
    runtime: Runtime,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (metrics_listener, _) = metrics_endpoints(&services, &runtime, &stop_rx).await?;
    tokio::spawn(service::crypto::revocation::listen(services.clone(), stop_rx.clone()));
    let handle = tokio::spawn(jobs::run(services, runtime.jobs, stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = handle.await;
    if let Some(m) = metrics_listener {
        let _ = m.await;
    }
    Ok(())
}

/// The whole server: web and workers in one process.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (services, runtime) = build_services(config, Arc::new(SystemClock)).await?;
    serve(listener, services, runtime, true, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
