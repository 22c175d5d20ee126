//! `/metrics`: Prometheus' text format, rendered from the process-wide recorder.
//!
//! The recorder is installed once per process ([`install`]; the integration tests start many
//! servers in one process), with histogram buckets for the latency and batch-size series; every
//! series is named and described in `service::metrics`. Queue depths are read when scraped,
//! through `service::outbox::depths` (the one adapter that knows apalis' tables) and
//! `service::campaigns::send::queue_depth`, within a time limit.
//!
//! Access: a bearer token (`HERMETIC_METRICS_TOKEN` or `metrics.token_file`), compared as SHA-256
//! digests in constant time. Without a token the route answers 404: metrics are off by default.
//! With `metrics.listen` the endpoint is served on that address only (still behind the token), so
//! it can stay off the public listener and a `worker` process, which has no web listener, can be
//! scraped too. No session, no CSRF token, nothing from a person in any label.

use crate::config::MetricsToken;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use service::Services;
use service::metrics as m;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path, on the main listener (route table) and on `metrics.listen`.
pub const PATH: &str = "/metrics";

/// Prometheus' text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for the queue depths before answering without fresh ones.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Install the process's recorder (first call) and return its handle. Idempotent.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(m::HTTP_DURATION.into()), m::LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(m::EVENT_BATCH_SIZE.into()), m::BATCH_BUCKETS));
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // Only for empty bucket lists, which the constants are not.
            Err(e) => {
                tracing::warn!(error = %e, "metrics buckets refused; histograms are summaries");
                PrometheusBuilder::new().build_recorder()
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first: /metrics shows none of Hermetic's series");
        }
        m::describe(env!("CARGO_PKG_VERSION"));
        // Upkeep drains histogram samples into their buckets (a scrape does too); without scrapes
        // the samples would pile up. A thread of its own: it outlives any one async runtime.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::park_timeout(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics upkeep thread not started; histograms are drained at scrape only");
        }
        handle
    })
}

#[derive(Clone)]
pub struct MetricsState {
    pub services: Services,
    /// `None`: not served here (no token configured, or served on `metrics.listen`) — 404.
    pub token: Option<MetricsToken>,
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, one header).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let v = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
}

pub async fn scrape(State(st): State<MetricsState>, headers: HeaderMap) -> Response {
    let Some(token) = &st.token else {
        let mut res = (StatusCode::NOT_FOUND, "Not found\n").into_response();
        no_store(&mut res);
        return res;
    };
    if !bearer(&headers).is_some_and(|t| token.matches(t.as_bytes())) {
        let body = serde_json::json!({"code": "unauthenticated", "message": "A metrics bearer token is required."});
        let mut res = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hermetic-metrics\""));
        no_store(&mut res);
        return res;
    }
    refresh_depths(&st.services).await;
    let mut res = (StatusCode::OK, install().render()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    no_store(&mut res);
    res
}

/// Read the queue depths into their gauges. A failure or a slow database leaves the last values
/// (and counts the failure): the rest of the scrape is still answered.
async fn refresh_depths(svc: &Services) {
    let read = async {
        let delivery = service::campaigns::send::queue_depth(svc, svc.clock().now()).await?;
        let jobs = service::outbox::depths(svc.db()).await?;
        Ok::<_, service::ServiceError>((delivery, jobs))
    };
    match tokio::time::timeout(DEPTH_TIMEOUT, read).await {
        Ok(Ok((delivery, jobs))) => {
            m::delivery_queue(delivery);
            m::job_queues(&jobs);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e.log_detail(), "queue depths not read for /metrics");
            m::queue_read_failed();
        }
        Err(_) => {
            tracing::warn!(secs = DEPTH_TIMEOUT.as_secs(), "queue depths not read in time for /metrics");
            m::queue_read_failed();
        }
    }
}

/// The router of `metrics.listen`: `/metrics` and nothing else.
pub fn router(state: MetricsState) -> Router {
    Router::new().route(PATH, get(scrape)).with_state(state)
}

/// Bind `metrics.listen` and serve it until `stop` turns true. Binding fails the start.
pub async fn serve_separately(
    addr: SocketAddr,
    state: MetricsState,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer def"));
        assert_eq!(bearer(&h), None, "two Authorization headers are refused");
    }

    #[test]
    fn the_recorder_installs_once_and_renders_the_build_info() {
        let a = install() as *const PrometheusHandle;
        let b = install() as *const PrometheusHandle;
        assert_eq!(a, b);
        let text = install().render();
        assert!(
            text.contains(&format!("hermetic_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
    }
}
