//! Every use of an API key, recorded: key, route template, method, status, time — never a body or
//! an id from the request. Requests hand their row to a buffer that a background task writes in
//! batches (one statement per batch, with the keys' `last_used_at`), so recording costs the request
//! nothing and thousands of events a second do not queue on the audit chain's lock. A full buffer
//! drops rows and counts them; rows still buffered when the process is killed are lost (at most
//! the last flush interval's), which is why refusals of known keys go to the audit chain itself.

use crate::db;
use crate::error::ServiceResult;
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::ids::OrganisationId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

const FLUSH_ROWS: usize = 2000;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One request by a key.
#[derive(Debug, Clone)]
pub struct Use {
    pub organisation: OrganisationId,
    pub key: Uuid,
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
    pub at: DateTime<Utc>,
}

/// The buffer, owned by the server.
pub struct UsageLog {
    tx: tokio::sync::mpsc::Sender<Use>,
    dropped: AtomicU64,
}

impl UsageLog {
    pub fn spawn(svc: Services, mut shutdown: tokio::sync::watch::Receiver<bool>) -> UsageLog {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Use>(FLUSH_ROWS * 20);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(FLUSH_ROWS);
            loop {
                let stop = tokio::select! {
                    got = rx.recv() => match got { Some(u) => { buf.push(u); false } None => true },
                    _ = shutdown.wait_for(|s| *s) => true,
                };
                if !stop {
                    // Gather what arrives within the interval, up to a batch.
                    let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
                    while buf.len() < FLUSH_ROWS {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(u)) => buf.push(u),
                            _ => break,
                        }
                    }
                }
                while let Ok(u) = rx.try_recv() {
                    buf.push(u);
                }
                if !buf.is_empty()
                    && let Err(e) = flush(&svc, std::mem::take(&mut buf)).await
                {
                    tracing::error!(error = %e.log_detail(), "API key usage could not be recorded");
                }
                if stop {
                    break;
                }
            }
        });
        UsageLog { tx, dropped: AtomicU64::new(0) }
    }

    /// Record a use (never waits).
    pub fn record(&self, u: Use) {
        if self.tx.try_send(u).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(dropped = n, "API usage buffer full: usage rows dropped");
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn flush(svc: &Services, rows: Vec<Use>) -> ServiceResult<()> {
    let mut orgs = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut methods = Vec::with_capacity(rows.len());
    let mut routes = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    let mut ats = Vec::with_capacity(rows.len());
    for u in rows {
        orgs.push(u.organisation.0);
        keys.push(u.key);
        methods.push(u.method.to_string());
        routes.push(u.route.to_string());
        statuses.push(i32::from(u.status));
        ats.push(u.at);
    }
    db::exec(
        svc.db(),
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::timestamptz[])
                     AS u(org, key, method, route, status, at)),
              ins AS (INSERT INTO api_request (organisation_id, api_key_id, method, route, status, occurred_at)
                      SELECT u.org, u.key, u.method, u.route, u.status, u.at FROM u JOIN api_key k ON k.id = u.key)
         UPDATE api_key k SET last_used_at = greatest(k.last_used_at, l.at)
         FROM (SELECT key, max(at) AS at FROM u GROUP BY key) l WHERE k.id = l.key",
        [orgs.into(), keys.into(), methods.into(), routes.into(), statuses.into(), ats.into()],
    )
    .await?;
    Ok(())
}

/// The last uses of a key (the settings page).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sea_orm::FromQueryResult)]
pub struct RecentUse {
    pub method: String,
    pub route: String,
    pub status: i16,
    pub occurred_at: DateTime<Utc>,
}
