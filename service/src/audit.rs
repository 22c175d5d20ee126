//! The audit trail: append-only (a trigger refuses UPDATE, DELETE and TRUNCATE) and hash-chained.
//!
//! Each organisation has its own chain (`chain_id` = organisation id); events without an organisation
//! (a failed sign-in for an unknown account) go to the system chain (nil uuid). A row's MAC is
//! HMAC-SHA256 under the system audit key over the previous row's MAC and a canonical encoding of the
//! row, so editing, inserting or deleting a row breaks the chain at that point. Appends take a
//! transaction-scoped advisory lock per chain, so they serialise without blocking other chains, and
//! they share the transaction of the change they describe.
//!
//! Rows hold ids, codes and addresses only — never PHI.

use crate::actor::{Actor, ActorKind};
use crate::crypto::keyring::KeyPurpose;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::audit::{AuditAction, AuditEntryView, AuditFilter, AuditOutcome, AuditPage, BrokenLink, ChainReport};
use domain::ids::{OrganisationId, SessionId, UserId};
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, TransactionTrait, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const SYSTEM_CHAIN: Uuid = Uuid::nil();
const GENESIS: [u8; 32] = [0u8; 32];
const VERIFY_BATCH: u64 = 5_000;

/// Who did it, for the audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditActor {
    User {
        user_id: UserId,
        session_id: Option<SessionId>,
    },
    System,
    Anonymous,
    /// An organisation's API key (its id is stored where a user's would be).
    ApiKey {
        key_id: Uuid,
    },
}

impl AuditActor {
    fn kind(&self) -> &'static str {
        match self {
            AuditActor::User { .. } => "user",
            AuditActor::System => "system",
            AuditActor::Anonymous => "anonymous",
            AuditActor::ApiKey { .. } => "api_key",
        }
    }
}

impl From<&Actor> for AuditActor {
    fn from(a: &Actor) -> Self {
        match a.kind {
            ActorKind::User { user_id, session_id } => AuditActor::User { user_id, session_id: Some(session_id) },
            ActorKind::System { .. } => AuditActor::System,
            ActorKind::ApiKey { key_id, .. } => AuditActor::ApiKey { key_id },
        }
    }
}

/// One event to record. `details` values must be ids, codes or counts — never PHI.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub organisation: Option<OrganisationId>,
    pub actor: AuditActor,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub target: Option<(&'static str, String)>,
    pub ip: Option<String>,
    pub details: BTreeMap<&'static str, Json>,
}

impl AuditRecord {
    pub fn new(
        organisation: Option<OrganisationId>,
        actor: AuditActor,
        action: AuditAction,
        outcome: AuditOutcome,
    ) -> Self {
        AuditRecord { organisation, actor, action, outcome, target: None, ip: None, details: BTreeMap::new() }
    }

    /// An event performed by `actor` inside its organisation.
    pub fn by(actor: &Actor, action: AuditAction) -> Self {
        let mut r = Self::new(Some(actor.organisation_id), actor.into(), action, AuditOutcome::Success);
        r.ip = actor.ip.clone();
        r
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target = Some((kind, id.to_string()));
        self
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn outcome(mut self, o: AuditOutcome) -> Self {
        self.outcome = o;
        self
    }

    pub fn detail(mut self, key: &'static str, value: impl Into<Json>) -> Self {
        self.details.insert(key, value.into());
        self
    }
}

/// The stored fields a MAC covers, in one canonical order.
struct MacInput<'a> {
    chain_id: Uuid,
    chain_seq: i64,
    organisation: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    actor_kind: &'a str,
    actor_user_id: Option<Uuid>,
    actor_session_id: Option<Uuid>,
    action: &'a str,
    outcome: &'a str,
    target_kind: Option<&'a str>,
    target_id: Option<&'a str>,
    ip: Option<&'a str>,
    details: &'a str,
    prev_mac: &'a [u8],
}

fn opt(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => vec![0],
        Some(b) => [&[1u8][..], b].concat(),
    }
}

impl MacInput<'_> {
    fn mac(&self, key: &crate::crypto::keyring::DataKey) -> [u8; 32] {
        let org = self.organisation.map(|u| *u.as_bytes());
        let user = self.actor_user_id.map(|u| *u.as_bytes());
        let sess = self.actor_session_id.map(|u| *u.as_bytes());
        let parts: Vec<Vec<u8>> = vec![
            b"hermetic.audit.v1".to_vec(),
            self.chain_id.as_bytes().to_vec(),
            self.chain_seq.to_be_bytes().to_vec(),
            opt(org.as_ref().map(|b| b.as_slice())),
            self.occurred_at.timestamp_micros().to_be_bytes().to_vec(),
            self.actor_kind.as_bytes().to_vec(),
            opt(user.as_ref().map(|b| b.as_slice())),
            opt(sess.as_ref().map(|b| b.as_slice())),
            self.action.as_bytes().to_vec(),
            self.outcome.as_bytes().to_vec(),
            opt(self.target_kind.map(str::as_bytes)),
            opt(self.target_id.map(str::as_bytes)),
            opt(self.ip.map(str::as_bytes)),
            self.details.as_bytes().to_vec(),
            self.prev_mac.to_vec(),
        ];
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        key.mac(&refs)
    }
}

fn lock_key(chain_id: Uuid) -> i64 {
    let b = chain_id.as_bytes();
    // Mix the two halves so org ids that share a prefix (v7 timestamps) land on different keys.
    let hi = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let lo = i64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    hi ^ lo ^ 0x4845_524d_4554_4943 // "HERMETIC"
}

/// The last row of a chain.
#[derive(FromQueryResult)]
struct ChainHead {
    chain_seq: i64,
    mac: Vec<u8>,
}

/// A stored row, as the verification reads it back.
#[derive(FromQueryResult)]
struct StoredEvent {
    seq: i64,
    chain_seq: i64,
    organisation_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    actor_kind: String,
    actor_user_id: Option<Uuid>,
    actor_session_id: Option<Uuid>,
    action: String,
    outcome: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    details: String,
    prev_mac: Vec<u8>,
    mac: Vec<u8>,
}

/// The head a verification saw.
#[derive(FromQueryResult)]
struct VerifiedHead {
    last_chain_seq: i64,
    last_mac: Option<Vec<u8>>,
}

/// An event as it will be stored, but for its place in the chain (position and link).
struct NewRow {
    chain_id: Uuid,
    organisation: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    actor_kind: &'static str,
    actor_user_id: Option<Uuid>,
    actor_session_id: Option<Uuid>,
    action: &'static str,
    outcome: &'static str,
    target_kind: Option<&'static str>,
    target_id: Option<String>,
    ip: Option<String>,
    details: String,
}

impl NewRow {
    fn new(svc: &Services, mut rec: AuditRecord) -> ServiceResult<NewRow> {
        if let AuditActor::ApiKey { key_id } = rec.actor {
            rec.details.insert("api_key", Json::from(key_id.to_string()));
        }
        let details = serde_json::to_string(&rec.details).map_err(|_| ServiceError::internal("audit details"))?;
        let (actor_user_id, actor_session_id) = match rec.actor {
            AuditActor::User { user_id, session_id } => (Some(user_id.0), session_id.map(|s| s.0)),
            _ => (None, None),
        };
        Ok(NewRow {
            chain_id: rec.organisation.map(|o| o.0).unwrap_or(SYSTEM_CHAIN),
            organisation: rec.organisation.map(|o| o.0),
            occurred_at: svc.clock().now(),
            actor_kind: rec.actor.kind(),
            actor_user_id,
            actor_session_id,
            action: rec.action.code(),
            outcome: rec.outcome.as_str(),
            target_kind: rec.target.as_ref().map(|t| t.0),
            target_id: rec.target.map(|t| t.1),
            ip: rec.ip,
            details,
        })
    }

    /// The MAC of this row at `chain_seq`, linked to the previous row's MAC.
    fn mac(&self, key: &crate::crypto::keyring::DataKey, chain_seq: i64, prev_mac: &[u8]) -> [u8; 32] {
        MacInput {
            chain_id: self.chain_id,
            chain_seq,
            organisation: self.organisation,
            occurred_at: self.occurred_at,
            actor_kind: self.actor_kind,
            actor_user_id: self.actor_user_id,
            actor_session_id: self.actor_session_id,
            action: self.action,
            outcome: self.outcome,
            target_kind: self.target_kind,
            target_id: self.target_id.as_deref(),
            ip: self.ip.as_deref(),
            details: &self.details,
            prev_mac,
        }
        .mac(key)
    }
}

const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";
const HEAD_SQL: &str = "SELECT chain_seq, mac FROM audit_event WHERE chain_id = $1 ORDER BY chain_seq DESC LIMIT 1";
const INSERT_SQL: &str =
    "INSERT INTO audit_event (chain_id, chain_seq, organisation_id, occurred_at, actor_kind, actor_user_id,
        actor_session_id, action, outcome, target_kind, target_id, ip, details, prev_mac, mac)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)";

/// Append an event inside the caller's transaction (the change and its audit row commit together).
pub async fn record(svc: &Services, txn: &DatabaseTransaction, rec: AuditRecord) -> ServiceResult<()> {
    let mut row = NewRow::new(svc, rec)?;
    db::exec(txn, LOCK_SQL, [lock_key(row.chain_id).into()]).await?;
    let key = svc.keys().active_key(txn, svc.clock(), None, KeyPurpose::AuditMac).await?;
    // Stamped under the chain's lock, so stamps follow the chain's order.
    row.occurred_at = svc.clock().now();
    let last: Option<ChainHead> = db::one_as(txn, HEAD_SQL, [row.chain_id.into()]).await?;
    let (prev_seq, prev_mac) = match last {
        Some(r) => (r.chain_seq, r.mac),
        None => (0, GENESIS.to_vec()),
    };
    let chain_seq = prev_seq + 1;
    let mac = row.mac(&key, chain_seq, &prev_mac);
    let values: Vec<Value> = vec![
        row.chain_id.into(),
        chain_seq.into(),
        row.organisation.into(),
        row.occurred_at.into(),
        row.actor_kind.into(),
        row.actor_user_id.into(),
        row.actor_session_id.into(),
        row.action.into(),
        row.outcome.into(),
        row.target_kind.map(str::to_string).into(),
        row.target_id.into(),
        row.ip.into(),
        row.details.into(),
        prev_mac.into(),
        mac.to_vec().into(),
    ];
    db::exec(txn, INSERT_SQL, values).await?;
    Ok(())
}

/// `record` for the sqlx-only paths (a COPY batch, a statement on the raw pool): the same row, the
/// same chain and lock, inside the caller's sqlx transaction. The audit MAC key is read (or
/// created, once) through the service's own connection.
pub async fn record_on(svc: &Services, conn: &mut sea_orm::sqlx::PgConnection, rec: AuditRecord) -> ServiceResult<()> {
    use sea_orm::sqlx;
    let mut row = NewRow::new(svc, rec)?;
    sqlx::query(LOCK_SQL).bind(lock_key(row.chain_id)).execute(&mut *conn).await.map_err(db::sqlx_err)?;
    let key = svc.keys().active_key(svc.db(), svc.clock(), None, KeyPurpose::AuditMac).await?;
    row.occurred_at = svc.clock().now();
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as(HEAD_SQL).bind(row.chain_id).fetch_optional(&mut *conn).await.map_err(db::sqlx_err)?;
    let (prev_seq, prev_mac) = last.unwrap_or((0, GENESIS.to_vec()));
    let chain_seq = prev_seq + 1;
    let mac = row.mac(&key, chain_seq, &prev_mac);
    sqlx::query(INSERT_SQL)
        .bind(row.chain_id)
        .bind(chain_seq)
        .bind(row.organisation)
        .bind(row.occurred_at)
        .bind(row.actor_kind)
        .bind(row.actor_user_id)
        .bind(row.actor_session_id)
        .bind(row.action)
        .bind(row.outcome)
        .bind(row.target_kind)
        .bind(row.target_id)
        .bind(row.ip)
        .bind(row.details)
        .bind(prev_mac)
        .bind(mac.to_vec())
        .execute(&mut *conn)
        .await
        .map_err(db::sqlx_err)?;
    Ok(())
}

/// Append an event in a transaction of its own (for events that accompany no other change).
pub(crate) async fn record_now(svc: &Services, rec: AuditRecord) -> ServiceResult<()> {
    let txn = svc.db().begin().await?;
    record(svc, &txn, rec).await?;
    txn.commit().await?;
    Ok(())
}

/// Walk one chain from its first row and report the first broken link, if any. Also compares with the
/// head recorded by the previous verification, so rows cut off the end are noticed too.
pub async fn verify_chain<C: ConnectionTrait>(svc: &Services, conn: &C, chain_id: Uuid) -> ServiceResult<ChainReport> {
    let key = svc.keys().active_key(conn, svc.clock(), None, KeyPurpose::AuditMac).await?;
    let mut prev_mac = GENESIS.to_vec();
    let mut expected_seq = 1i64;
    let mut rows_checked = 0i64;
    let mut first_broken: Option<BrokenLink> = None;
    let mut after = 0i64;
    'outer: loop {
        let rows: Vec<StoredEvent> = db::all_as(
            conn,
            "SELECT seq, chain_seq, organisation_id, occurred_at, actor_kind, actor_user_id, actor_session_id,
                    action, outcome, target_kind, target_id, ip, details, prev_mac, mac
             FROM audit_event WHERE chain_id = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT $3",
            [chain_id.into(), after.into(), (VERIFY_BATCH as i64).into()],
        )
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let (seq, chain_seq) = (r.seq, r.chain_seq);
            after = chain_seq;
            rows_checked += 1;
            let input = MacInput {
                chain_id,
                chain_seq,
                organisation: r.organisation_id,
                occurred_at: r.occurred_at,
                actor_kind: &r.actor_kind,
                actor_user_id: r.actor_user_id,
                actor_session_id: r.actor_session_id,
                action: &r.action,
                outcome: &r.outcome,
                target_kind: r.target_kind.as_deref(),
                target_id: r.target_id.as_deref(),
                ip: r.ip.as_deref(),
                details: &r.details,
                prev_mac: &r.prev_mac,
            };
            let reason = if chain_seq != expected_seq {
                Some(format!("row(s) missing before chain position {chain_seq} (expected {expected_seq})"))
            } else if r.prev_mac != prev_mac {
                Some("link to the previous row does not match (a row before it was changed or removed)".into())
            } else if !crate::crypto::ct_eq(&input.mac(&key), &r.mac) {
                Some("row contents do not match their MAC (the row was edited)".into())
            } else {
                None
            };
            if let Some(reason) = reason {
                first_broken = Some(BrokenLink { seq, reason });
                break 'outer;
            }
            prev_mac = r.mac.clone();
            expected_seq = chain_seq + 1;
        }
    }
    if first_broken.is_none() {
        // Rows cut off the end leave a shorter but internally valid chain: compare with the head we
        // saw last time.
        let last: Option<VerifiedHead> = db::one_as(
            conn,
            "SELECT last_chain_seq, last_mac FROM audit_verification
             WHERE chain_id = $1 AND first_broken_seq IS NULL ORDER BY checked_at DESC, id DESC LIMIT 1",
            [chain_id.into()],
        )
        .await?;
        if let Some(r) = last {
            let (last_seq, last_mac) = (r.last_chain_seq, r.last_mac);
            if last_seq > expected_seq - 1 {
                first_broken = Some(BrokenLink {
                    seq: -1,
                    reason: format!(
                        "rows after chain position {} were removed (last verified head was {last_seq})",
                        expected_seq - 1
                    ),
                });
            } else if last_seq > 0 {
                let mac_then: Option<Vec<u8>> = db::scalar(
                    conn,
                    "SELECT mac FROM audit_event WHERE chain_id = $1 AND chain_seq = $2",
                    [chain_id.into(), last_seq.into()],
                )
                .await?;
                if mac_then != last_mac {
                    first_broken = Some(BrokenLink {
                        seq: -1,
                        reason: format!(
                            "the chain was rewritten up to position {last_seq} since the last verification"
                        ),
                    });
                }
            }
        }
    }
    let report = ChainReport { checked_at: svc.clock().now(), rows_checked, first_broken };
    db::exec(
        conn,
        "INSERT INTO audit_verification (id, chain_id, checked_at, rows_checked, last_chain_seq, last_mac, first_broken_seq, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            Uuid::now_v7().into(),
            chain_id.into(),
            report.checked_at.into(),
            rows_checked.into(),
            (expected_seq - 1).into(),
            (if expected_seq > 1 { Some(prev_mac) } else { None }).into(),
            report.first_broken.as_ref().map(|b| b.seq).into(),
            report.first_broken.as_ref().map(|b| b.reason.clone()).into(),
        ],
    )
    .await?;
    if let Some(b) = &report.first_broken {
        tracing::error!(chain_id = %chain_id, seq = b.seq, reason = %b.reason, "audit chain verification failed");
    }
    Ok(report)
}

/// Verify every chain (the scheduled maintenance job).
pub async fn verify_all(svc: &Services) -> ServiceResult<Vec<(Uuid, ChainReport)>> {
    let chains: Vec<Uuid> =
        db::scalars(svc.db(), "SELECT DISTINCT chain_id FROM audit_event ORDER BY chain_id", []).await?;
    let mut out = Vec::with_capacity(chains.len());
    for chain_id in chains {
        out.push((chain_id, verify_chain(svc, svc.db(), chain_id).await?));
    }
    Ok(out)
}

/// Verify the actor's organisation chain on demand (audit page button). Audited.
pub async fn verify_for(svc: &Services, actor: &Actor) -> ServiceResult<ChainReport> {
    actor.require(Permission::AuditRead)?;
    // The verification's record and its audit row commit together.
    let txn = svc.db().begin().await?;
    let report = verify_chain(svc, &txn, actor.organisation_id.0).await?;
    let outcome = if report.first_broken.is_none() { AuditOutcome::Success } else { AuditOutcome::Failure };
    record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::AuditVerified).outcome(outcome).detail("rows_checked", report.rows_checked),
    )
    .await?;
    txn.commit().await?;
    Ok(report)
}

/// The most recent verification of the actor's organisation chain, if any.
pub async fn last_report(svc: &Services, actor: &Actor) -> ServiceResult<Option<ChainReport>> {
    actor.require(Permission::AuditRead)?;
    #[derive(FromQueryResult)]
    struct Verification {
        checked_at: DateTime<Utc>,
        rows_checked: i64,
        first_broken_seq: Option<i64>,
        reason: Option<String>,
    }
    let row: Option<Verification> = db::one_as(
        svc.db(),
        "SELECT checked_at, rows_checked, first_broken_seq, reason FROM audit_verification
         WHERE chain_id = $1 ORDER BY checked_at DESC, id DESC LIMIT 1",
        [actor.organisation_id.0.into()],
    )
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(ChainReport {
        checked_at: r.checked_at,
        rows_checked: r.rows_checked,
        first_broken: r.first_broken_seq.map(|seq| BrokenLink { seq, reason: r.reason.unwrap_or_default() }),
    }))
}

/// Browse the actor's organisation trail, newest first, with filters. Viewing is itself audited.
pub async fn list(svc: &Services, actor: &Actor, filter: AuditFilter) -> ServiceResult<AuditPage> {
    actor.require(Permission::AuditRead)?;
    let limit = i64::from(filter.limit.unwrap_or(50).clamp(1, 200));
    let mut sql = String::from(
        "SELECT e.seq, e.occurred_at, e.action, e.outcome, e.actor_user_id, u.email AS actor_email,
                e.target_kind, e.target_id, e.ip, e.details
         FROM audit_event e LEFT JOIN app_user u ON u.id = e.actor_user_id
         WHERE e.organisation_id = $1",
    );
    let mut values: Vec<Value> = vec![actor.organisation_id.0.into()];
    let push = |cond: &str, v: Value, sql: &mut String, values: &mut Vec<Value>| {
        values.push(v);
        sql.push_str(&format!(" AND {cond} ${}", values.len()));
    };
    if let Some(a) = filter.action.as_deref().filter(|a| !a.is_empty()) {
        if AuditAction::from_code(a).is_none() {
            return Err(ServiceError::invalid("action", "is not a known audit action"));
        }
        push("e.action =", a.to_string().into(), &mut sql, &mut values);
    }
    if let Some(o) = filter.outcome.as_deref().filter(|o| !o.is_empty()) {
        if AuditOutcome::parse(o).is_none() {
            return Err(ServiceError::invalid("outcome", "must be success, failure or denied"));
        }
        push("e.outcome =", o.to_string().into(), &mut sql, &mut values);
    }
    if let Some(u) = filter.actor_user_id {
        push("e.actor_user_id =", u.into(), &mut sql, &mut values);
    }
    if let Some(t) = filter.since {
        push("e.occurred_at >=", t.into(), &mut sql, &mut values);
    }
    if let Some(t) = filter.until {
        push("e.occurred_at <", t.into(), &mut sql, &mut values);
    }
    if let Some(s) = filter.before_seq {
        push("e.seq <", s.into(), &mut sql, &mut values);
    }
    values.push((limit + 1).into());
    sql.push_str(&format!(" ORDER BY e.seq DESC LIMIT ${}", values.len()));
    #[derive(FromQueryResult)]
    struct Entry {
        seq: i64,
        occurred_at: DateTime<Utc>,
        action: String,
        outcome: String,
        actor_user_id: Option<Uuid>,
        actor_email: Option<String>,
        target_kind: Option<String>,
        target_id: Option<String>,
        ip: Option<String>,
        details: String,
    }
    let rows: Vec<Entry> = db::all_as(svc.db(), &sql, values).await?;
    let more = rows.len() as i64 > limit;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows.into_iter().take(limit as usize) {
        entries.push(AuditEntryView {
            seq: r.seq,
            occurred_at: r.occurred_at,
            action_label: AuditAction::from_code(&r.action)
                .map(|a| a.label().to_string())
                .unwrap_or_else(|| r.action.clone()),
            action: r.action,
            outcome: r.outcome,
            actor_user_id: r.actor_user_id,
            actor_email: r.actor_email,
            target_kind: r.target_kind,
            target_id: r.target_id,
            ip: r.ip,
            details: r.details,
        });
    }
    let next_before_seq = if more { entries.last().map(|e| e.seq) } else { None };
    if filter.before_seq.is_none() {
        record_now(svc, AuditRecord::by(actor, AuditAction::AuditViewed)).await?;
    }
    Ok(AuditPage { entries, next_before_seq })
}
