//! A supervised apalis worker on one Postgres queue: restarted under a fresh name if the backend
//! fails, stopped gracefully (in-flight jobs finish) when shutdown is signalled.

use crate::JobsConfig;
use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use serde::{Serialize, de::DeserializeOwned};
use service::Services;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

pub async fn supervise<T, F, Fut>(
    svc: Services,
    pool: PgPool,
    queue: &'static str,
    config: JobsConfig,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
    handler: F,
) where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + Clone + 'static,
    F: Fn(T, Data<Services>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        let name = format!("{queue}-{}", uuid::Uuid::now_v7());
        let backend = PostgresStorage::<T>::new(&pool)
            .with_config(
                Config::default()
                    .queue(queue)
                    .heartbeat_interval(config.heartbeat_interval)
                    .missed_heartbeats(config.missed_heartbeats)
                    .batch_size(concurrency.max(1)),
            )
            .with_pubsub()
            .poll_with_interval(config.poll_interval);
        let stop = shutdown.clone();
        let result = WorkerBuilder::new(name)
            .backend(backend)
            .data(svc.clone())
            .concurrency(concurrency.max(1))
            .build(handler.clone())
            .run_until(async move {
                crate::stopped(stop).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(queue, error = %e, "worker stopped; restarting in 5 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = crate::stopped(shutdown.clone()) => return,
                }
            }
        }
    }
}

/// Map a service failure to apalis: permanent ones are aborted (never retried), others retried.
pub fn failure(e: service::ServiceError) -> BoxDynError {
    use service::ServiceError as E;
    match e {
        E::Invalid(_) | E::NotFound | E::Forbidden => Box::new(AbortError::new(e)),
        other => Box::new(other),
    }
}
