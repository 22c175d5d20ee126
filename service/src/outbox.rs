//! Typed jobs, and the one adapter to apalis' Postgres queue.
//!
//! A job is a payload type that implements [`Job`]: its queue, how many attempts it gets, and the
//! idempotency key that makes a second push of the same job a no-op. Payloads carry ids only,
//! never PHI. There is one way to push a job now ([`push`]), at a time ([`push_at`]) and many at
//! once ([`push_all`]); each takes any connection, so a job pushed inside the caller's transaction
//! exists if and only if the change that needs it committed (the outbox pattern).
//!
//! apalis' public API enqueues through its own connection, outside our transaction, so pushing
//! writes apalis' `jobs` table directly. This module is the only code that names an apalis table
//! or column ([`APALIS_COLUMNS`] lists each one, and `jobs::setup` refuses to start when an apalis
//! upgrade changed them: integration test `jobs::the_apalis_tables_are_what_the_adapter_writes`).
//! The workers that run jobs are the `jobs` crate's, which registers each job type by its `Job`
//! impl, so queue names and payload types are paired in one place.

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of background job.
pub trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static {
    /// The apalis queue (its `job_type`) the job's workers listen on.
    const QUEUE: &'static str;
    /// Attempts in total, the first one included.
    const MAX_ATTEMPTS: i32;
    /// The key that makes a second push of the same job a no-op while the first is kept;
    /// `None`: every push adds a job.
    fn idempotency_key(&self) -> Option<String>;
}

/// The apalis columns this adapter reads or writes, per table. Checked at start against the
/// database (`check_apalis_schema`).
pub const APALIS_COLUMNS: &[(&str, &[&str])] = &[
    (
        "jobs",
        &[
            "id",
            "job_type",
            "job",
            "status",
            "attempts",
            "max_attempts",
            "run_at",
            "priority",
            "idempotency_key",
            "lock_by",
            "done_at",
        ],
    ),
    ("workers", &["id", "last_seen"]),
];

fn encode<J: Job>(job: &J) -> ServiceResult<Vec<u8>> {
    serde_json::to_vec(job).map_err(|_| ServiceError::internal("job encoding"))
}

/// Push a job to run now. Returns false when a job with the same idempotency key exists.
pub async fn push<C: ConnectionTrait, J: Job>(conn: &C, job: &J) -> ServiceResult<bool> {
    insert(conn, job, None).await
}

/// Push a job to run no earlier than `at`.
pub async fn push_at<C: ConnectionTrait, J: Job>(conn: &C, job: &J, at: DateTime<Utc>) -> ServiceResult<bool> {
    insert(conn, job, Some(at)).await
}

/// Push a job to run no earlier than `at` under an idempotency key of the caller's (a job that
/// schedules its own next run names each run, e.g. a webhook's retry by its attempt number).
pub async fn push_keyed_at<C: ConnectionTrait, J: Job>(
    conn: &C,
    job: &J,
    key: String,
    at: DateTime<Utc>,
) -> ServiceResult<bool> {
    insert_keyed(conn, job, Some(key), Some(at)).await
}

async fn insert<C: ConnectionTrait, J: Job>(conn: &C, job: &J, at: Option<DateTime<Utc>>) -> ServiceResult<bool> {
    insert_keyed(conn, job, job.idempotency_key(), at).await
}

async fn insert_keyed<C: ConnectionTrait, J: Job>(
    conn: &C,
    job: &J,
    key: Option<String>,
    at: Option<DateTime<Utc>>,
) -> ServiceResult<bool> {
    let n = db::exec(
        conn,
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
         VALUES (apalis.generate_ulid(), $1, $2, 'Pending', 0, $3, coalesce($5, now()), 0, $4)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        [J::QUEUE.into(), encode(job)?.into(), J::MAX_ATTEMPTS.into(), key.into(), at.into()],
    )
    .await?;
    Ok(n > 0)
}

/// SQL (a data-modifying statement for a `WITH` clause) that pushes one job of type `J` per row of
/// `rows`, a name visible in the enclosing statement with a `uuid` column `id`: the job's payload is
/// `{"<field>": id}` and its idempotency key `<key_prefix><id>`. For statements that create the rows
/// a job must follow and must push the jobs in the same statement (the send path's outcome write):
/// the job exists if and only if the rows committed. `field` and `key_prefix` are fixed text of the
/// caller, never input.
pub fn push_each_sql<J: Job>(rows: &str, field: &'static str, key_prefix: &'static str) -> String {
    format!(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
         SELECT apalis.generate_ulid(), '{queue}', convert_to(jsonb_build_object('{field}', r.id)::text, 'UTF8'),
                'Pending', 0, {max}, now(), 0, '{key_prefix}' || r.id::text
         FROM {rows} r
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        queue = J::QUEUE,
        max = J::MAX_ATTEMPTS,
    )
}

/// Push many jobs of one type to run now, in one statement on a raw connection (the COPY-based
/// import writes through one). Returns how many were added.
pub async fn push_all<J: Job>(conn: &mut sea_orm::sqlx::PgConnection, jobs: &[J]) -> ServiceResult<u64> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let payloads = jobs.iter().map(encode).collect::<ServiceResult<Vec<_>>>()?;
    let keys: Vec<Option<String>> = jobs.iter().map(Job::idempotency_key).collect();
    let res = sea_orm::sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
         SELECT apalis.generate_ulid(), $1, p.job, 'Pending', 0, $2, now(), 0, p.key
         FROM unnest($3::bytea[], $4::text[]) AS p(job, key)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
    )
    .bind(J::QUEUE)
    .bind(J::MAX_ATTEMPTS)
    .bind(&payloads)
    .bind(&keys)
    .execute(conn)
    .await
    .map_err(db::sqlx_err)?;
    Ok(res.rows_affected())
}

/// How many jobs of a type, with idempotency keys starting with `key_prefix`, are alive: waiting
/// and due within five seconds, or running on a worker seen within `stale`.
pub async fn live<C: ConnectionTrait, J: Job>(
    conn: &C,
    key_prefix: &str,
    stale: std::time::Duration,
) -> ServiceResult<i64> {
    #[derive(sea_orm::FromQueryResult)]
    struct Count {
        n: i64,
    }
    let escaped = key_prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let row = Count::find_by_statement(db::stmt(
        "SELECT count(*) AS n FROM apalis.jobs j
         WHERE j.job_type = $1 AND j.idempotency_key LIKE $2
           AND ((j.status IN ('Pending', 'Queued') AND j.run_at <= now() + interval '5 seconds')
                OR (j.status = 'Running' AND j.lock_by IN
                    (SELECT w.id FROM apalis.workers w WHERE w.last_seen > now() - make_interval(secs => $3))))",
        [J::QUEUE.into(), format!("{escaped}%").into(), stale.as_secs_f64().into()],
    ))
    .one(conn)
    .await?;
    Ok(row.map(|r| r.n).unwrap_or(0))
}

use sea_orm::FromQueryResult;

/// How many jobs each queue holds now: waiting and runnable (`due`, including failed runs waiting
/// for their retry), waiting for a later time (`scheduled`), and taken by a worker (`running`).
/// Every queue of [`queue::ALL`] is listed (zeros included); a `job_type` this version does not
/// know is counted under `other`. For `/metrics`: the waiting rows are read through apalis' own
/// partial fetch index; the running ones are few (a worker takes at most its concurrency).
pub async fn depths<C: ConnectionTrait>(conn: &C) -> ServiceResult<Vec<crate::metrics::JobQueueDepth>> {
    #[derive(FromQueryResult)]
    struct Row {
        job_type: String,
        due: i64,
        scheduled: i64,
        running: i64,
    }
    let rows: Vec<Row> = Row::find_by_statement(db::stmt(
        "SELECT job_type, sum(due)::int8 AS due, sum(scheduled)::int8 AS scheduled, sum(running)::int8 AS running FROM (
             SELECT job_type, count(*) FILTER (WHERE run_at <= now()) AS due,
                    count(*) FILTER (WHERE run_at > now()) AS scheduled, 0 AS running
             FROM apalis.jobs
             WHERE status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)
             GROUP BY job_type
             UNION ALL
             SELECT job_type, 0, 0, count(*) FROM apalis.jobs WHERE status IN ('Queued', 'Running') GROUP BY job_type
         ) d GROUP BY job_type",
        [],
    ))
    .all(conn)
    .await?;
    let mut out: Vec<crate::metrics::JobQueueDepth> =
        queue::ALL.iter().map(|q| crate::metrics::JobQueueDepth { queue: q, ..Default::default() }).collect();
    for r in rows {
        let name = queue::ALL.iter().find(|q| **q == r.job_type).copied().unwrap_or("other");
        let i = match out.iter().position(|d| d.queue == name) {
            Some(i) => i,
            None => {
                out.push(crate::metrics::JobQueueDepth { queue: name, ..Default::default() });
                out.len() - 1
            }
        };
        let d = &mut out[i];
        d.due += r.due;
        d.scheduled += r.scheduled;
        d.running += r.running;
    }
    Ok(out)
}

/// Delete finished jobs (done or given up) older than `before`. Returns how many.
pub async fn purge_finished<C: ConnectionTrait>(conn: &C, before: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(db::exec(conn, "DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') AND done_at < $1", [before.into()])
        .await?)
}

/// Refuse to run against an apalis schema that lacks a column this adapter uses (an apalis
/// upgrade that renamed or dropped one would otherwise break pushing jobs silently, or at the
/// first push). Logs every missing column.
pub async fn check_apalis_schema<C: ConnectionTrait>(conn: &C) -> ServiceResult<()> {
    #[derive(FromQueryResult)]
    struct Col {
        table_name: String,
        column_name: String,
    }
    let have: std::collections::HashSet<(String, String)> = Col::find_by_statement(db::stmt(
        "SELECT table_name::text AS table_name, column_name::text AS column_name
         FROM information_schema.columns WHERE table_schema = 'apalis'",
        [],
    ))
    .all(conn)
    .await?
    .into_iter()
    .map(|c| (c.table_name, c.column_name))
    .collect();
    let missing: Vec<String> = APALIS_COLUMNS
        .iter()
        .flat_map(|(t, cols)| cols.iter().map(move |c| (*t, *c)))
        .filter(|(t, c)| !have.contains(&(t.to_string(), c.to_string())))
        .map(|(t, c)| format!("apalis.{t}.{c}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        tracing::error!(missing = %missing.join(", "), "apalis' tables lack columns the job adapter writes");
        Err(ServiceError::internal("the job queue's tables are not what this version writes: was apalis upgraded?"))
    }
}

/// Queue names, for the jobs whose payload types live in this crate. Each is named by exactly one
/// `Job` impl.
pub mod queue {
    pub const OPTIN_EMAIL: &str = "optin-email";
    pub const IMPORT: &str = "contact-import";
    pub const KEY_ROTATION: &str = "key-rotation";
    pub const CAMPAIGN_PREPARE: &str = "campaign-prepare";
    pub const CAMPAIGN_DISPATCH: &str = "campaign-dispatch";
    pub const MAINTENANCE: &str = "maintenance";
    pub const WEBHOOK: &str = "webhook-delivery";
    pub const STAFF_NOTICE: &str = "sequence-staff-notice";
    pub const REPORT_ROLLUP: &str = "report-rollup";
    pub const REPORT_DIGEST: &str = "report-digest";
    /// Every queue (metrics label values; `jobs`' tests check each worker's queue is here).
    pub const ALL: &[&str] = &[
        OPTIN_EMAIL,
        IMPORT,
        KEY_ROTATION,
        CAMPAIGN_PREPARE,
        CAMPAIGN_DISPATCH,
        MAINTENANCE,
        WEBHOOK,
        STAFF_NOTICE,
        REPORT_ROLLUP,
        REPORT_DIGEST,
    ];
}
