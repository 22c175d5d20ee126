//! Sign-in throttling per account name and per client address.
//!
//! Counters are keyed by a hash of the (normalised) name or address, so failures for accounts that
//! do not exist are counted exactly like those that do: the answers never reveal which accounts exist.
//! After `max` failures within the window a key is locked; each further failure doubles the lock up
//! to `lockout_max`.

use crate::db;
use crate::error::ServiceResult;
use crate::services::{AuthSettings, Services};
use chrono::{DateTime, Duration, Utc};
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

pub fn key_hash(kind: KeyKind, raw: &str) -> Vec<u8> {
    crate::crypto::sha256(format!("hermetic.throttle.v1:{}:{}", kind.as_str(), raw.trim().to_lowercase()).as_bytes())
        .to_vec()
}

/// Seconds until the key is unlocked, if it is locked now.
pub async fn locked_for<C: ConnectionTrait>(
    conn: &C,
    kind: KeyKind,
    raw: &str,
    now: DateTime<Utc>,
) -> ServiceResult<Option<u64>> {
    let row = db::one(
        conn,
        "SELECT locked_until FROM login_throttle WHERE key_kind = $1 AND key_hash = $2",
        [kind.as_str().into(), key_hash(kind, raw).into()],
    )
    .await?;
    let until: Option<DateTime<Utc>> = match row {
        Some(r) => db::get(&r, "locked_until")?,
        None => None,
    };
    Ok(until.filter(|u| *u > now).map(|u| (u - now).num_seconds().max(1) as u64))
}

/// Count one failure; returns the lock length in seconds if this failure locked the key.
pub async fn record_failure<C: ConnectionTrait>(
    svc: &Services,
    conn: &C,
    kind: KeyKind,
    raw: &str,
) -> ServiceResult<Option<u64>> {
    let s = svc.auth();
    let now = svc.clock().now();
    let window_start = now - s.throttle_window;
    let row = db::one(
        conn,
        "INSERT INTO login_throttle (key_kind, key_hash, failures, window_started_at, updated_at)
         VALUES ($1, $2, 1, $3, $3)
         ON CONFLICT (key_kind, key_hash) DO UPDATE SET
            failures = CASE WHEN login_throttle.window_started_at < $4
                             AND (login_throttle.locked_until IS NULL OR login_throttle.locked_until < $3)
                            THEN 1 ELSE login_throttle.failures + 1 END,
            window_started_at = CASE WHEN login_throttle.window_started_at < $4
                             AND (login_throttle.locked_until IS NULL OR login_throttle.locked_until < $3)
                            THEN $3 ELSE login_throttle.window_started_at END,
            updated_at = $3
         RETURNING failures",
        [kind.as_str().into(), key_hash(kind, raw).into(), now.into(), window_start.into()],
    )
    .await?;
    let failures: i32 = match row {
        Some(r) => db::get(&r, "failures")?,
        None => 1,
    };
    let max = kind.max(s);
    if failures < max {
        return Ok(None);
    }
    let lock = lock_length(s, failures - max);
    db::exec(
        conn,
        "UPDATE login_throttle SET locked_until = $3 WHERE key_kind = $1 AND key_hash = $2",
        [kind.as_str().into(), key_hash(kind, raw).into(), (now + lock).into()],
    )
    .await?;
    Ok(Some(lock.num_seconds().max(1) as u64))
}

fn lock_length(s: &AuthSettings, over: i32) -> Duration {
    let factor = 1i32.checked_shl(over.clamp(0, 20) as u32).unwrap_or(i32::MAX);
    let secs = s.lockout_base.num_seconds().saturating_mul(i64::from(factor));
    Duration::seconds(secs.min(s.lockout_max.num_seconds()))
}

/// A successful sign-in clears the account's counter (not the address's: one good account must not
/// launder failures against others).
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
    fn lock_doubles_up_to_the_cap() {
        let s = AuthSettings::default();
        assert_eq!(lock_length(&s, 0), Duration::minutes(1));
        assert_eq!(lock_length(&s, 1), Duration::minutes(2));
        assert_eq!(lock_length(&s, 3), Duration::minutes(8));
        assert_eq!(lock_length(&s, 10), Duration::minutes(15));
        assert_eq!(lock_length(&s, 1000), Duration::minutes(15));
    }

    #[test]
    fn keys_are_normalised_hashes() {
        assert_eq!(key_hash(KeyKind::Account, " Ada@Example.org"), key_hash(KeyKind::Account, "ada@example.org"));
        assert_ne!(key_hash(KeyKind::Account, "x"), key_hash(KeyKind::Ip, "x"));
    }
}
