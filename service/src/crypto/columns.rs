//! Every sealed column of the schema, in one list: data-key rotation re-seals exactly these, and a
//! test compares the list with every `bytea` column of the migrated schema (each must be here or
//! in [`NOT_SEALED`], with the reason). Adding a sealed column means adding one entry here.
//!
//! An entry says where the values are (table, column) and how to rebuild the associated data each
//! value was sealed under: the AAD table and column names, the row id and the owning organisation,
//! as SQL expressions over the table aliased `t` (plus an optional join for tables that have no
//! `organisation_id` of their own). The expressions are fixed text from this file, never input.

use super::keyring::{DataKey, KeyRing};
use super::seal::{Aad, Sealed};
use crate::db;
use crate::error::{Internal, ServiceError, ServiceResult};
use domain::ids::OrganisationId;
use sea_orm::{ConnectionTrait, FromQueryResult};
use std::borrow::Cow;
use std::sync::Arc;
use uuid::Uuid;

/// The `Aad.column` of a sealed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AadColumn {
    /// A fixed name (usually the SQL column's own).
    Named(&'static str),
    /// `prefix` followed by the decimal value of an integer SQL expression (import chunks are
    /// sealed as `data:<seq>`).
    Numbered { prefix: &'static str, number: &'static str },
}

/// One sealed column (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// The `Aad.table` its values are sealed under.
    pub aad_table: &'static str,
    pub aad_column: AadColumn,
    /// SQL expression (uuid) of the `Aad.row`.
    pub aad_row: &'static str,
    /// Extra join clause after `FROM <table> t`, when the organisation lives in another table.
    pub join: &'static str,
    /// SQL expression (uuid) of the owning organisation.
    pub organisation: &'static str,
}

impl SealedColumn {
    /// The common case: the row has `id` and `organisation_id`, and values are sealed under the
    /// table's and column's own names with the row's id.
    pub const fn plain(table: &'static str, column: &'static str) -> SealedColumn {
        SealedColumn {
            table,
            column,
            aad_table: table,
            aad_column: AadColumn::Named(column),
            aad_row: "t.id",
            join: "",
            organisation: "t.organisation_id",
        }
    }

    fn aad_column_sql(&self) -> String {
        match self.aad_column {
            AadColumn::Named(n) => format!("'{n}'::text"),
            AadColumn::Numbered { prefix, number } => format!("('{prefix}' || ({number})::text)"),
        }
    }

    /// Rows of the organisation whose value was sealed by key `$2` (all keys when `$2` is NULL),
    /// with what is needed to open them. `$3` limits the count. `lock` takes their row locks.
    fn select_sql(&self, lock: bool) -> String {
        format!(
            "SELECT t.ctid::text AS tid, ({row})::uuid AS aad_row, {col} AS aad_column, t.{c} AS v
             FROM {table} t {join}
             WHERE ({org}) = $1 AND t.{c} IS NOT NULL
               AND ($2::bytea IS NULL OR substring(t.{c} FROM 2 FOR 16) = $2)
             LIMIT $3{lock}",
            row = self.aad_row,
            col = self.aad_column_sql(),
            c = self.column,
            table = self.table,
            join = self.join,
            org = self.organisation,
            lock = if lock { " FOR UPDATE OF t SKIP LOCKED" } else { "" },
        )
    }

    fn count_sql(&self) -> String {
        format!(
            "SELECT count(*) AS n FROM {table} t {join}
             WHERE ({org}) = $1 AND t.{c} IS NOT NULL AND substring(t.{c} FROM 2 FOR 16) = $2",
            table = self.table,
            join = self.join,
            org = self.organisation,
            c = self.column,
        )
    }

    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// Every column holding values sealed under an organisation's data key.
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::plain("contact", "email"),
    SealedColumn::plain("contact", "first_name"),
    SealedColumn::plain("contact", "last_name"),
    SealedColumn::plain("contact", "phone"),
    SealedColumn::plain("contact", "date_of_birth"),
    SealedColumn::plain("contact", "phi_attrs"),
    SealedColumn::plain("app_user", "totp_secret"),
    // An authenticator secret shown during enrolment, before it is confirmed.
    SealedColumn::plain("user_session", "pending_totp_secret"),
    SealedColumn::plain("dev_mailbox", "recipient"),
    SealedColumn::plain("dev_mailbox", "subject"),
    SealedColumn::plain("dev_mailbox", "message"),
    SealedColumn::plain("patient_event", "properties"),
    // An API message's merge data (`POST /api/v1/messages`).
    SealedColumn::plain("api_message", "data"),
    SealedColumn::plain("segment", "sealed_definition"),
    SealedColumn::plain("sending_domain", "dkim_key"),
    // An API key's signing secret (the server computes HMACs with it).
    SealedColumn::plain("api_key", "signing_secret"),
    // A webhook endpoint's signing secret (the server signs every delivery with it).
    SealedColumn::plain("webhook_endpoint", "secret"),
    SealedColumn::plain("sequence", "sealed_draft"),
    SealedColumn::plain("sequence_version", "sealed_definition"),
    // The uploaded file's header row, sealed under the import's chunk AAD table.
    SealedColumn { aad_table: "import_chunk", ..SealedColumn::plain("contact_import", "headers") },
    // The uploaded file itself: chunk `seq` of import `import_id` is sealed as column `data:<seq>`
    // of row `import_id`; the organisation is the import's.
    SealedColumn {
        aad_column: AadColumn::Numbered { prefix: "data:", number: "t.seq" },
        aad_row: "t.import_id",
        join: "JOIN contact_import imp ON imp.id = t.import_id",
        organisation: "imp.organisation_id",
        ..SealedColumn::plain("import_chunk", "data")
    },
];

/// `bytea` columns that do not hold sealed values: (table, column, why).
pub const NOT_SEALED: &[(&str, &str, &str)] = &[
    ("wrapped_key", "wrapped", "keys wrapped by the root key; root-key rotation re-wraps them"),
    ("recovery_code", "code_hash", "hash of a recovery code"),
    ("user_session", "token_hash", "hash of the session cookie"),
    ("invite", "token_hash", "hash of the invitation token"),
    ("optin_token", "token_hash", "hash of the opt-in confirmation token"),
    ("api_key", "secret_hash", "SHA-256 of an API key's secret"),
    ("api_idempotency", "key_hash", "HMAC of a client's Idempotency-Key"),
    ("api_idempotency", "request_hash", "HMAC of the request an Idempotency-Key answered"),
    ("login_throttle", "key_hash", "hash of an account name or address"),
    ("audit_event", "prev_mac", "audit chain MAC (audit key)"),
    ("audit_event", "mac", "audit chain MAC (audit key)"),
    ("audit_verification", "last_mac", "audit chain MAC (audit key)"),
    ("contact", "email_bidx", "blind index (HMAC under the blind-index key)"),
    ("suppression", "email_bidx", "blind index (HMAC under the blind-index key)"),
    ("consent_withdrawal_kept", "email_bidx", "blind index (HMAC under the blind-index key)"),
    ("enrolment", "correlation_bidx", "keyed hash of a sequence's correlation value (blind-index key)"),
    ("consent_event", "text_hash", "hash of the consent wording"),
    ("contact_import", "file_sha256", "hash of the uploaded file"),
    ("contact_import", "consent_text_hash", "hash of the consent wording"),
    ("delivery", "domain_key", "keyed hash of the recipient's domain"),
    ("campaign_domain_clock", "domain_key", "keyed hash of the recipient's domain"),
];

fn aad<'a>(org: OrganisationId, c: &'a SealedColumn, column: &'a str, row: Uuid) -> Aad<'a> {
    Aad { organisation: org, table: c.aad_table, column, row }
}

fn failed(c: &SealedColumn, what: &str) -> ServiceError {
    ServiceError::Internal(Internal(Cow::Owned(format!("{what} in {}", c.name()))))
}

/// Re-seal up to `limit` values of `c` sealed under `old` with `new`, in the caller's
/// transaction (rows locked; rows other transactions hold are skipped). Returns how many.
/// A sealed value as `select_sql` reads it: where it is (`tid`), what its AAD names, the value.
#[derive(FromQueryResult)]
struct SealedValue {
    tid: String,
    aad_row: Uuid,
    aad_column: String,
    v: Vec<u8>,
}

/// The same without the row's place (`select_sql(false)`).
#[derive(FromQueryResult)]
struct SealedValueAt {
    aad_row: Uuid,
    aad_column: String,
    v: Vec<u8>,
}

pub(crate) async fn reseal_batch<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    c: &SealedColumn,
    old: &DataKey,
    new: &DataKey,
    limit: i64,
) -> ServiceResult<u64> {
    let rows: Vec<SealedValue> =
        db::all_as(conn, &c.select_sql(true), [org.0.into(), old.id.as_bytes().to_vec().into(), limit.into()]).await?;
    let n = rows.len() as u64;
    for r in rows {
        let a = aad(org, c, &r.aad_column, r.aad_row);
        let plain = old.open(&a, &Sealed::from_bytes(r.v)?).map_err(|_| failed(c, "a value did not open"))?;
        let resealed = new.seal(&a, &plain)?;
        db::exec(
            conn,
            &format!("UPDATE {} SET {} = $2 WHERE ctid = $1::tid", c.table, c.column),
            [r.tid.into(), resealed.into_bytes().into()],
        )
        .await?;
    }
    Ok(n)
}

/// How many values of the organisation, over every sealed column, are still sealed under `key`.
pub async fn count_under_key<C: ConnectionTrait>(conn: &C, org: OrganisationId, key: Uuid) -> ServiceResult<u64> {
    let mut n = 0u64;
    for c in SEALED {
        let count: Option<i64> =
            db::scalar(conn, &c.count_sql(), [org.0.into(), key.as_bytes().to_vec().into()]).await?;
        n += count.unwrap_or(0).max(0) as u64;
    }
    Ok(n)
}

/// Open every sealed value of the organisation with `ring` (as a fresh process would): the count
/// per column, or an error naming the first column whose value does not open.
pub async fn open_all<C: ConnectionTrait>(
    conn: &C,
    ring: &KeyRing,
    org: OrganisationId,
) -> ServiceResult<Vec<(&'static SealedColumn, u64)>> {
    let mut out = Vec::new();
    for c in SEALED {
        let rows: Vec<SealedValueAt> =
            db::all_as(conn, &c.select_sql(false), [org.0.into(), None::<Vec<u8>>.into(), i64::MAX.into()]).await?;
        let n = rows.len() as u64;
        for r in rows {
            let (row, column) = (r.aad_row, r.aad_column);
            let sealed = Sealed::from_bytes(r.v)?;
            let key: Arc<DataKey> =
                ring.key_by_id(conn, sealed.key_id()).await.map_err(|_| failed(c, "a value's key is missing"))?;
            if key.organisation != Some(org) || key.purpose != super::keyring::KeyPurpose::Data {
                return Err(failed(c, "a value is sealed under another organisation's key"));
            }
            key.open(&aad(org, c, &column, row), &sealed).map_err(|_| failed(c, "a value did not open"))?;
        }
        out.push((c, n));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for c in SEALED {
            assert!(seen.insert((c.table, c.column)), "{} twice", c.name());
        }
        for (t, c, why) in NOT_SEALED {
            assert!(seen.insert((t, c)), "{t}.{c} is listed as sealed and as not sealed");
            assert!(!why.is_empty());
        }
    }
}
