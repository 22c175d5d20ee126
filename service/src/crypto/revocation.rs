//! Every process hears at once when an organisation is deleted: the deletion notifies
//! [`ORGANISATION_DELETED`] (PostgreSQL NOTIFY, delivered when its transaction commits) and each
//! server and worker listens on a connection of its own, evicting the organisation's keys from
//! its key ring the moment the notification arrives.
//!
//! The listener is an accelerator, not the safeguard: the key ring also re-checks every
//! organisation against the database once its last check is a second old. Whenever the listener's
//! connection drops (a notification may have been missed) it makes the ring forget every check,
//! so the next use of any organisation's key asks the database again.

use crate::services::Services;
use domain::ids::OrganisationId;
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use std::time::Duration;
use tokio::sync::watch;

/// The NOTIFY channel; the payload is the organisation id.
pub const ORGANISATION_DELETED: &str = "hermetic_organisation_deleted";

/// The listener's connection shows under this name in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "hermetic-key-listener";

const RETRY: Duration = Duration::from_secs(1);

/// Listen until `shutdown` turns true. Spawn once per process.
pub async fn listen(svc: Services, mut shutdown: watch::Receiver<bool>) {
    // A pool of one connection of its own: never taken from (or starving) the application's pool.
    let options =
        (*svc.db().get_postgres_connection_pool().connect_options()).clone().application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new().max_connections(1).min_connections(0).connect_lazy_with(options);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match run(&svc, &pool, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                // Without the listener the once-a-second check still holds; say so and retry.
                tracing::warn!(error = %e, "organisation-deletion listener lost its connection; reconnecting");
                svc.keys().forget_verifications();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One listening session; Ok when shutdown was signalled.
async fn run(svc: &Services, pool: &sqlx::PgPool, shutdown: &mut watch::Receiver<bool>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(ORGANISATION_DELETED).await?;
    // Deletions made before we listened were not heard: check every organisation again.
    svc.keys().forget_verifications();
    loop {
        tokio::select! {
            got = listener.try_recv() => match got? {
                Some(n) => match n.payload().parse::<uuid::Uuid>() {
                    Ok(id) => {
                        tracing::info!(organisation = %id, "organisation deleted: its keys are forgotten");
                        svc.keys().organisation_deleted(OrganisationId(id));
                    }
                    // Not ours to interpret: be safe and check every organisation again.
                    Err(_) => svc.keys().forget_verifications(),
                },
                // The connection dropped (sqlx reconnects and listens again): a notification may
                // have been lost in between.
                None => {
                    tracing::warn!("organisation-deletion listener reconnected");
                    svc.keys().forget_verifications();
                }
            },
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}
