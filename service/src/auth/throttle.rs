//! Sign-in throttling per account name and per client address.
//!
//! Counters are keyed by a hash of the (normalised) name or address, so failures for accounts that
//! do not exist are counted exactly like those that do: the answers never reveal which accounts exist.
//!
//! An attempt is counted *before* its credential is checked, in one statement (`attempt`): the
//! counter goes up and, when it reaches `max`, the key is locked in the same statement; a locked key
//! is not counted and the attempt is refused without checking anything. The statement holds the
//! row while it runs, so however many attempts arrive at once, at most `max` of them are checked
//! per window. A success clears the account's counter (`clear`) and gives the address its attempt
//! back (`refund`); an attempt refused for another reason before its check (the server was busy)
//! is refunded too. Each further failure after a lock doubles the next lock, up to `lockout_max`.

use crate::db;
use crate::error::ServiceResult;
use crate::services::{AuthSettings, Services};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Account,
    Ip,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::Account => "account",
            KeyKind::Ip => "ip",
        }
    }
    fn max(self, s: &AuthSettings) -> i32 {
        match self {
            KeyKind::Account => s.account_max_failures,
            KeyKind::Ip => s.ip_max_failures,
        }
    }
}

/// Whether an attempt may go on to its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Counted; check the credential.
    Allowed(Counted),
    /// The key is locked: refuse without checking.
    Locked { retry_after_secs: u64 },
}

/// A counted attempt, which `refund` can give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    kind: KeyKind,
    key_hash: Vec<u8>,
    /// The lock this attempt set (it was the one that reached the limit), if any.
    locked_until: Option<DateTime<Utc>>,
}

pub fn key_hash(kind: KeyKind, raw: &str) -> Vec<u8> {
    crate::crypto::sha256(format!("hermetic.throttle.v1:{}:{}", kind.as_str(), raw.trim().to_lowercase()).as_bytes())
        .to_vec()
}

/// Seconds until the key is unlocked, if it is locked now.
pub(crate) async fn locked_for<C: ConnectionTrait>(
    conn: &C,
    kind: KeyKind,
    raw: &str,
    now: DateTime<Utc>,
) -> ServiceResult<Option<u64>> {
    let until: Option<DateTime<Utc>> = db::scalar(
        conn,
        "SELECT locked_until FROM login_throttle WHERE key_kind = $1 AND key_hash = $2",
        [kind.as_str().into(), key_hash(kind, raw).into()],
    )
    .await?
    .flatten();
    Ok(until.filter(|u| *u > now).map(|u| (u - now).num_seconds().max(1) as u64))
}

/// Count an attempt before checking it (see the module comment). One statement: the increment,
/// the window reset and the lock are decided together under the row's lock.
pub async fn attempt<C: ConnectionTrait>(svc: &Services, conn: &C, kind: KeyKind, raw: &str) -> ServiceResult<Attempt> {
    let s = svc.auth();
    let now = svc.clock().now();
    let window_start = now - s.throttle_window;
    let hash = key_hash(kind, raw);
    // The counter after this attempt, as an expression over the old row.
    const NEXT: &str = "(CASE WHEN t.window_started_at < $4 THEN 1 ELSE t.failures + 1 END)";
    let sql = format!(
        "INSERT INTO login_throttle AS t (key_kind, key_hash, failures, window_started_at, locked_until, updated_at)
         VALUES ($1, $2, 1, $3, CASE WHEN 1 >= $5::int THEN $3 + make_interval(secs => LEAST($6::float8, $7::float8)) END, $3)
         ON CONFLICT (key_kind, key_hash) DO UPDATE SET
            failures = {NEXT},
            window_started_at = CASE WHEN t.window_started_at < $4 THEN $3 ELSE t.window_started_at END,
            locked_until = CASE WHEN {NEXT} >= $5::int
                THEN $3 + make_interval(secs => LEAST($6::float8 * power(2.0::float8, LEAST({NEXT} - $5::int, 20)), $7::float8))
                ELSE NULL END,
            updated_at = $3
         WHERE t.locked_until IS NULL OR t.locked_until <= $3
         RETURNING locked_until"
    );
    for _ in 0..2 {
        // `RETURNING locked_until`: no row when a lock was in force; a row (its lock, if any) when counted.
        let counted: Option<Option<DateTime<Utc>>> = db::scalar(
            conn,
            &sql,
            [
                kind.as_str().into(),
                hash.clone().into(),
                now.into(),
                window_start.into(),
                kind.max(s).into(),
                (s.lockout_base.num_seconds() as f64).into(),
                (s.lockout_max.num_seconds() as f64).into(),
            ],
        )
        .await?;
        if let Some(locked_until) = counted {
            return Ok(Attempt::Allowed(Counted { kind, key_hash: hash, locked_until }));
        }
        if let Some(retry_after_secs) = locked_for(conn, kind, raw, now).await? {
            return Ok(Attempt::Locked { retry_after_secs });
        }
        // Cleared by a success between the two statements: count again.
    }
    Ok(Attempt::Allowed(Counted { kind, key_hash: hash, locked_until: None }))
}

/// Give back an attempt that was counted but did not fail: it succeeded, or it was never checked
/// (the server was busy). The lock it set, if it was the one that reached the limit, goes with it;
/// a lock set since by another attempt stays.
pub(crate) async fn refund<C: ConnectionTrait>(svc: &Services, conn: &C, counted: &Counted) -> ServiceResult<()> {
    db::exec(
        conn,
        "UPDATE login_throttle SET failures = GREATEST(failures - 1, 0),
            locked_until = CASE WHEN locked_until = $3 THEN NULL ELSE locked_until END,
            updated_at = $4
         WHERE key_kind = $1 AND key_hash = $2",
        [
            counted.kind.as_str().into(),
            counted.key_hash.clone().into(),
            counted.locked_until.into(),
            svc.clock().now().into(),
        ],
    )
    .await?;
    Ok(())
}

/// A successful sign-in clears the account's counter (not the address's: one good account must not
/// launder failures against others; the address gets only its own attempt back, `refund`).
pub async fn clear<C: ConnectionTrait>(conn: &C, kind: KeyKind, raw: &str) -> ServiceResult<()> {
    db::exec(
        conn,
        "DELETE FROM login_throttle WHERE key_kind = $1 AND key_hash = $2",
        [kind.as_str().into(), key_hash(kind, raw).into()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised_hashes() {
        assert_eq!(key_hash(KeyKind::Account, " Ada@Example.org"), key_hash(KeyKind::Account, "ada@example.org"));
        assert_ne!(key_hash(KeyKind::Account, "x"), key_hash(KeyKind::Ip, "x"));
    }
}
