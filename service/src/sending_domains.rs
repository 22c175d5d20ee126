//! Sending domains: a campaign (and a test send, and later a sequence step or an API message) may
//! only send From an address on a domain its organisation has proved it controls, and the message
//! is DKIM-signed with that domain's own key (d= the From domain), so DMARC aligns. The platform's
//! configured key signs only system mail (invitations, opt-in, notices) from `mail.from`.
//!
//! An administrator adds a domain; Hermetic generates an RSA-2048 key (sealed in
//! `sending_domain.dkim_key` under the organisation's data key) and a random selector, and shows
//! three TXT records to publish: DKIM at `<selector>._domainkey.<domain>`, SPF at the domain
//! (including the configured relay), DMARC at `_dmarc.<domain>` (at least `p=none`). "Verify" looks
//! them up through DNS (a configurable resolver) and records each result in plain words.
//!
//! Invariants:
//! - a domain is `verified` only while all three records check out; the maintenance job re-checks
//!   verified domains (`recheck_due`), and a definite answer that a record is gone or wrong makes
//!   the domain `failed`: campaigns From it pause with their own reason. A lookup that merely
//!   failed (timeout, SERVFAIL) changes nothing: DNS trouble does not stop mail, missing records do;
//! - a domain is verified for at most one organisation (a unique partial index). Adding a domain
//!   another organisation uses reveals nothing; only after publishing the records — proof of
//!   control of the domain's DNS — does verifying it say that it is taken;
//! - every address check goes through [`verified_domain_of`]: at save, at launch and again at send.

use crate::actor::Actor;
use crate::audit::{self, AuditActor, AuditRecord};
use crate::crypto::seal::{Aad, Sealed};
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::mail::Dkim;
use crate::services::Services;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::ids::OrganisationId;
use domain::sending_domains::{DnsRecord, DomainStatus, RecordCheck, RecordKind, SendingDomainView};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use crate::config::DomainSettings;

/// Most domains one organisation may hold (each costs a key generation).
pub const MAX_PER_ORGANISATION: i64 = 20;
/// Time allowed for one DNS question (two attempts each).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);
/// TTL written into the zone-file lines we show.
const ZONE_TTL: u32 = 3600;

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    crate::error::describe_db_err(e).contains("sqlstate=23505")
}

fn key_aad(org: OrganisationId, id: Uuid) -> Aad<'static> {
    Aad { organisation: org, table: "sending_domain", column: "dkim_key", row: id }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// A domain as stored: ASCII (A-labels), lower case, no final dot; and how people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainName {
    pub ascii: String,
    pub unicode: Option<String>,
}

fn bad(reason: &str) -> ServiceError {
    ServiceError::invalid("domain", reason)
}

/// Check and normalise a domain typed by a person: IDNA (UTS #46, STD3 rules) to A-labels, lower
/// case, one final dot allowed and dropped; refused with a plain reason otherwise.
pub fn normalise(input: &str) -> ServiceResult<DomainName> {
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("enter a domain name, such as clinic.example"));
    }
    if s.len() > 300 {
        return Err(bad("is too long for a domain name (at most 253 characters)"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad("an IP address cannot be a sending domain: enter a domain name"));
    }
    if s.contains('@') || s.contains('/') || s.contains(':') {
        return Err(bad("enter only the domain (clinic.example), not an address or a link"));
    }
    if s.contains('*') {
        return Err(bad("wildcards are not allowed: enter the exact domain mail is sent from"));
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
        return Err(bad("has an empty label (two dots in a row, or a dot at the start)"));
    }
    if s.split('.').any(|l| l.len() > 63 && l.is_ascii()) {
        return Err(bad("has a label longer than 63 characters"));
    }
    let ascii = idna::domain_to_ascii_strict(s).map_err(|_| {
        bad("is not a valid domain name (letters, digits and hyphens between dots; no hyphen at either end of a label)")
    })?;
    let ascii = ascii.to_ascii_lowercase();
    if ascii.len() > 253 {
        return Err(bad("is too long for a domain name (at most 253 characters)"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("must have at least two labels, such as clinic.example"));
    }
    for l in &labels {
        let ldh = l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if l.is_empty() || l.len() > 63 || !ldh || l.starts_with('-') || l.ends_with('-') {
            return Err(bad(
                "is not a valid domain name (letters, digits and hyphens between dots; no hyphen at either end of a label)",
            ));
        }
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("an IP address cannot be a sending domain: enter a domain name"));
    }
    let (unicode, errors) = idna::domain_to_unicode(&ascii);
    if errors.is_err() {
        return Err(bad("is not a valid internationalised domain name"));
    }
    Ok(DomainName { unicode: (unicode != ascii).then_some(unicode), ascii })
}

/// The domain of an address (`news@Clinic.Example` → `clinic.example`), normalised the same way.
pub fn address_domain(address: &str) -> Option<String> {
    let (_, d) = address.trim().rsplit_once('@')?;
    normalise(d).ok().map(|d| d.ascii)
}

fn random_selector() -> ServiceResult<String> {
    let b = crate::crypto::random_bytes::<5>()?;
    // "hm" + a date-free random tag: 40 bits, lower-case base32 (DNS labels are case-insensitive).
    Ok(format!("hm{}", data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase()))
}

// ---------------------------------------------------------------------------------------------
// The records to publish
// ---------------------------------------------------------------------------------------------

fn zone_line(name: &str, value: &str) -> String {
    // A TXT string holds at most 255 bytes: longer values are several strings, joined by readers.
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c).replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{name}. {ZONE_TTL} IN TXT {}", strings.join(" "))
}

fn spf_value(include: Option<&str>) -> String {
    match include {
        Some(i) => format!("v=spf1 include:{i} ~all"),
        None => "v=spf1 mx ~all".to_string(),
    }
}

/// The three TXT records for a domain.
pub fn records(domain: &str, selector: &str, public_b64: &str, spf_include: Option<&str>) -> Vec<DnsRecord> {
    let dkim_name = format!("{selector}._domainkey.{domain}");
    let dkim_value = format!("v=DKIM1; k=rsa; p={public_b64}");
    let spf = spf_value(spf_include);
    let dmarc_name = format!("_dmarc.{domain}");
    let dmarc = "v=DMARC1; p=none".to_string();
    vec![
        DnsRecord {
            kind: RecordKind::Dkim,
            zone_line: zone_line(&dkim_name, &dkim_value),
            name: dkim_name,
            value: dkim_value,
            note: "Hermetic signs this domain's mail with the matching private key, which never leaves Hermetic. \
                   The value is longer than 255 characters: DNS providers' forms usually split it for you; \
                   a zone file writes it as several quoted strings, as in the zone line."
                .into(),
        },
        DnsRecord {
            kind: RecordKind::Spf,
            zone_line: zone_line(domain, &spf),
            name: domain.to_string(),
            value: spf,
            note: match spf_include {
                Some(i) => format!(
                    "Allows the relay Hermetic sends through. A domain may have only one SPF record: \
                     if it already has one, add include:{i} to it instead of publishing a second."
                ),
                None => "A domain may have only one SPF record: if it already has one, keep it.".into(),
            },
        },
        DnsRecord {
            kind: RecordKind::Dmarc,
            zone_line: zone_line(&dmarc_name, &dmarc),
            name: dmarc_name,
            value: dmarc,
            note: "p=none only asks receivers to report; mail that fails is still delivered. Once reports show \
                   only your own mail, move to p=quarantine and then p=reject. Any policy passes the check; \
                   keep an existing DMARC record if the domain has one."
                .into(),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// DNS checks
// ---------------------------------------------------------------------------------------------

/// What one TXT question got.
enum Txt {
    /// The TXT records at the name (each record's strings joined).
    Found(Vec<String>),
    /// The name does not exist, or has no TXT record (a definite answer).
    Nothing,
    /// No answer (timeout, SERVFAIL, refused): nothing is known.
    Failed,
}

type Resolver = hickory_resolver::TokioResolver;

fn resolver(settings: &DomainSettings) -> ServiceResult<Resolver> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut builder = match settings.resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|_| ServiceError::internal("the system DNS configuration could not be read"))?,
    };
    let opts = builder.options_mut();
    // Each check asks afresh: a record published a minute ago must be seen, and one removed must be
    // missed (the resolver we ask may still cache; we add no cache of our own).
    opts.cache_size = 0;
    opts.timeout = LOOKUP_TIMEOUT;
    opts.attempts = 2;
    opts.try_tcp_on_error = true;
    builder.build().map_err(|_| ServiceError::internal("the DNS resolver could not be set up"))
}

async fn txt(r: &Resolver, name: &str) -> Txt {
    use hickory_resolver::proto::rr::RData;
    // A final dot: the exact name, never one completed with a search domain.
    match r.txt_lookup(format!("{name}.")).await {
        Ok(lookup) => {
            let found: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::TXT(t) => {
                        Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<String>())
                    }
                    _ => None,
                })
                .collect();
            if found.is_empty() { Txt::Nothing } else { Txt::Found(found) }
        }
        Err(e) if e.is_no_records_found() => Txt::Nothing,
        Err(_) => Txt::Failed,
    }
}

/// `tag=value` pairs of a DKIM or DMARC record (tags lower-cased, values trimmed).
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

fn tag<'a>(t: &'a [(String, String)], name: &str) -> Option<&'a str> {
    t.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// One record's verdict: `Some(true|false)` is definite, `None` means the lookup failed.
type Verdict = (RecordKind, Option<bool>, String);

fn lookup_failed(kind: RecordKind, name: &str) -> Verdict {
    (kind, None, format!("The DNS lookup of {name} got no answer (timeout or server failure). Try again in a moment."))
}

fn judge_dkim(found: Txt, name: &str, public_b64: &str) -> Verdict {
    let k = RecordKind::Dkim;
    let records = match found {
        Txt::Failed => return lookup_failed(k, name),
        Txt::Nothing => return (k, Some(false), format!("No TXT record at {name}. Publish the DKIM record shown.")),
        Txt::Found(r) => r,
    };
    let keys: Vec<Vec<(String, String)>> = records.iter().map(|r| tags(r)).filter(|t| tag(t, "p").is_some()).collect();
    if keys.is_empty() {
        return (k, Some(false), format!("The TXT record at {name} is not a DKIM key record (it has no p= tag)."));
    }
    let want: String = public_b64.chars().filter(|c| !c.is_whitespace()).collect();
    for t in &keys {
        let p: String = tag(t, "p").unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
        let version_ok = tag(t, "v").is_none_or(|v| v == "DKIM1");
        let type_ok = tag(t, "k").is_none_or(|v| v.eq_ignore_ascii_case("rsa"));
        if p == want && version_ok && type_ok {
            return (k, Some(true), "Found, and its public key is this domain's key.".into());
        }
        if p.is_empty() {
            return (k, Some(false), format!("The DKIM record at {name} revokes the key (empty p=)."));
        }
    }
    (
        k,
        Some(false),
        format!(
            "A DKIM record is published at {name}, but it is not this domain's key (or not v=DKIM1; k=rsa). Copy the value again."
        ),
    )
}

fn is_spf(r: &str) -> bool {
    let l = r.trim_start().to_ascii_lowercase();
    l == "v=spf1" || l.starts_with("v=spf1 ")
}

fn judge_spf(found: Txt, domain: &str, include: Option<&str>) -> Verdict {
    let k = RecordKind::Spf;
    let records = match found {
        Txt::Failed => return lookup_failed(k, domain),
        Txt::Nothing => Vec::new(),
        Txt::Found(r) => r,
    };
    let spf: Vec<&String> = records.iter().filter(|r| is_spf(r)).collect();
    match spf.as_slice() {
        [] => (k, Some(false), format!("No SPF record (a TXT record starting with v=spf1) at {domain}.")),
        [one] => match include {
            None => (k, Some(true), "Found.".into()),
            Some(inc) => {
                let inc = inc.to_ascii_lowercase();
                let has = one.split_whitespace().any(|term| {
                    let t = term.to_ascii_lowercase();
                    let t = t.trim_start_matches(['+', '?', '~']);
                    t == format!("include:{inc}") || t == format!("redirect={inc}")
                });
                if has {
                    (k, Some(true), format!("Found, and it includes {inc}."))
                } else {
                    (
                        k,
                        Some(false),
                        format!(
                            "The SPF record at {domain} does not include include:{inc}, so receivers may refuse mail relayed by it. Add include:{inc}."
                        ),
                    )
                }
            }
        },
        many => (
            k,
            Some(false),
            format!(
                "There are {} SPF records at {domain}; a domain may have only one (receivers treat several as an error). Merge them.",
                many.len()
            ),
        ),
    }
}

fn judge_dmarc(found: Txt, name: &str) -> Verdict {
    let k = RecordKind::Dmarc;
    let records = match found {
        Txt::Failed => return lookup_failed(k, name),
        Txt::Nothing => Vec::new(),
        Txt::Found(r) => r,
    };
    let dmarc: Vec<Vec<(String, String)>> = records
        .iter()
        .filter(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        .map(|r| tags(r))
        .collect();
    match dmarc.as_slice() {
        [] => (k, Some(false), format!("No DMARC record (a TXT record starting with v=DMARC1) at {name}.")),
        [one] => match tag(one, "p").map(|p| p.to_ascii_lowercase()).as_deref() {
            Some("none") => (
                k,
                Some(true),
                "Found, policy p=none: receivers only report. Move to quarantine or reject once reports show only your mail."
                    .into(),
            ),
            Some(p @ ("quarantine" | "reject")) => (k, Some(true), format!("Found, policy p={p}.")),
            _ => (k, Some(false), format!("The DMARC record at {name} has no valid policy (p=none, quarantine or reject).")),
        },
        _ => (k, Some(false), format!("There are several DMARC records at {name}; receivers then ignore them all. Keep one.")),
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// All three records check out.
    Verified,
    /// At least one record is definitely missing or wrong.
    Failed,
    /// Some lookups got no answer and nothing definite is wrong: nothing is known.
    Unknown,
}

/// Look the three records up and judge each.
async fn check_dns(
    settings: &DomainSettings,
    domain: &str,
    selector: &str,
    public_b64: &str,
) -> ServiceResult<(Finding, Vec<RecordCheck>)> {
    let r = resolver(settings)?;
    let dkim_name = format!("{selector}._domainkey.{domain}");
    let dmarc_name = format!("_dmarc.{domain}");
    let (dkim, spf, dmarc) = futures::join!(txt(&r, &dkim_name), txt(&r, domain), txt(&r, &dmarc_name));
    let verdicts = [
        judge_dkim(dkim, &dkim_name, public_b64),
        judge_spf(spf, domain, settings.spf_include.as_deref()),
        judge_dmarc(dmarc, &dmarc_name),
    ];
    let finding = if verdicts.iter().any(|v| v.1 == Some(false)) {
        Finding::Failed
    } else if verdicts.iter().all(|v| v.1 == Some(true)) {
        Finding::Verified
    } else {
        Finding::Unknown
    };
    let checks =
        verdicts.into_iter().map(|(kind, ok, reason)| RecordCheck { kind, ok: ok == Some(true), reason }).collect();
    Ok((finding, checks))
}

// ---------------------------------------------------------------------------------------------
// Rows and views
// ---------------------------------------------------------------------------------------------

const COLS: &str =
    "id, organisation_id, domain, selector, dkim_public, status, checks, last_checked_at, verified_at, created_at";

struct Row {
    id: Uuid,
    organisation: OrganisationId,
    domain: String,
    selector: String,
    public_b64: String,
    status: DomainStatus,
    checks: Vec<RecordCheck>,
    last_checked_at: Option<chrono::DateTime<chrono::Utc>>,
    verified_at: Option<chrono::DateTime<chrono::Utc>>,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn checks_from(v: &serde_json::Value) -> Vec<RecordCheck> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some(RecordCheck {
                        kind: RecordKind::parse(c.get("kind")?.as_str()?)?,
                        ok: c.get("ok")?.as_bool()?,
                        reason: c.get("reason")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn checks_json(checks: &[RecordCheck]) -> serde_json::Value {
    serde_json::Value::Array(
        checks.iter().map(|c| serde_json::json!({"kind": c.kind.as_str(), "ok": c.ok, "reason": c.reason})).collect(),
    )
}

/// `sending_domain` as `COLS` reads it.
#[derive(FromQueryResult)]
struct Stored {
    id: Uuid,
    organisation_id: Uuid,
    domain: String,
    selector: String,
    dkim_public: String,
    status: String,
    checks: serde_json::Value,
    last_checked_at: Option<chrono::DateTime<chrono::Utc>>,
    verified_at: Option<chrono::DateTime<chrono::Utc>>,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn row_from(r: Stored) -> ServiceResult<Row> {
    Ok(Row {
        id: r.id,
        organisation: OrganisationId(r.organisation_id),
        domain: r.domain,
        selector: r.selector,
        public_b64: r.dkim_public,
        status: DomainStatus::parse(&r.status).ok_or_else(|| ServiceError::internal("stored sending domain status"))?,
        checks: checks_from(&r.checks),
        last_checked_at: r.last_checked_at,
        verified_at: r.verified_at,
        created_at: r.created_at,
    })
}

fn view(svc: &Services, r: Row) -> SendingDomainView {
    let unicode = idna::domain_to_unicode(&r.domain).0;
    SendingDomainView {
        id: r.id,
        records: records(&r.domain, &r.selector, &r.public_b64, svc.settings().domains.spf_include.as_deref()),
        unicode: (unicode != r.domain).then_some(unicode),
        domain: r.domain,
        selector: r.selector,
        status: r.status,
        checks: r.checks,
        last_checked_at: r.last_checked_at,
        verified_at: r.verified_at,
        created_at: r.created_at,
    }
}

async fn load<C: ConnectionTrait>(conn: &C, org: OrganisationId, id: Uuid, lock: bool) -> ServiceResult<Row> {
    let sql = format!(
        "SELECT {COLS} FROM sending_domain WHERE id = $1 AND organisation_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    row_from(db::one_as(conn, &sql, [id.into(), org.0.into()]).await?.ok_or(ServiceError::NotFound)?)
}

// ---------------------------------------------------------------------------------------------
// Use cases (administrators)
// ---------------------------------------------------------------------------------------------

pub async fn list(svc: &Services, actor: &Actor) -> ServiceResult<Vec<SendingDomainView>> {
    actor.require(Permission::SettingsManage)?;
    let rows: Vec<Stored> = db::all_as(
        svc.db(),
        &format!("SELECT {COLS} FROM sending_domain WHERE organisation_id = $1 ORDER BY domain"),
        [actor.organisation_id.0.into()],
    )
    .await?;
    rows.into_iter().map(|r| row_from(r).map(|row| view(svc, row))).collect()
}

/// The organisation's domain of that name, if it has one.
pub async fn find(svc: &Services, actor: &Actor, domain: &str) -> ServiceResult<Option<SendingDomainView>> {
    actor.require(Permission::SettingsManage)?;
    let name = normalise(domain)?;
    let r: Option<Stored> = db::one_as(
        svc.db(),
        &format!("SELECT {COLS} FROM sending_domain WHERE organisation_id = $1 AND domain = $2"),
        [actor.organisation_id.0.into(), name.ascii.into()],
    )
    .await?;
    r.map(|r| row_from(r).map(|row| view(svc, row))).transpose()
}

/// Add a domain: validate it, generate its DKIM key and selector. Returns the new domain's view
/// with the records to publish.
pub async fn add(svc: &Services, actor: &Actor, domain: &str) -> ServiceResult<SendingDomainView> {
    actor.require(Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let name = normalise(domain)?;
    let count: i64 =
        db::scalar(svc.db(), "SELECT count(*) AS n FROM sending_domain WHERE organisation_id = $1", [org.0.into()])
            .await?
            .unwrap_or(0);
    if count >= MAX_PER_ORGANISATION {
        return Err(ServiceError::conflict("An organisation may have at most 20 sending domains. Remove one first."));
    }
    // A second or so of CPU: on the blocking pool, not on the threads serving requests.
    let key = tokio::task::spawn_blocking(crate::mail::dkim::generate_key)
        .await
        .map_err(|_| ServiceError::internal("the DKIM key generation task stopped"))?
        .map_err(ServiceError::internal)?;
    let id = Uuid::now_v7();
    let selector = random_selector()?;
    let now = svc.clock().now();
    let sealed = svc.keys().seal(svc.db(), svc.clock(), &key_aad(org, id), &key.private_pkcs8).await?;
    let txn = svc.db().begin().await?;
    let res = db::exec(
        &txn,
        "INSERT INTO sending_domain (id, organisation_id, domain, selector, dkim_key, dkim_public, status, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8)",
        [
            id.into(),
            org.0.into(),
            name.ascii.clone().into(),
            selector.into(),
            sealed.into_bytes().into(),
            key.public_b64.clone().into(),
            actor.user_id().map(|u| u.0).into(),
            now.into(),
        ],
    )
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(ServiceError::conflict("This domain is already in your organisation's list."));
        }
        r => r?,
    };
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SendingDomainAdded)
            .target("sending_domain", id)
            .detail("domain", name.ascii.clone()),
    )
    .await?;
    txn.commit().await?;
    let row = load(svc.db(), org, id, false).await?;
    Ok(view(svc, row))
}

/// Remove a domain. Its sealed key goes with the row; campaigns From it stop at their next batch.
pub async fn remove(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<()> {
    actor.require(Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let txn = svc.db().begin().await?;
    let row = load(&txn, org, id, true).await?;
    db::exec(&txn, "DELETE FROM sending_domain WHERE id = $1 AND organisation_id = $2", [id.into(), org.0.into()])
        .await?;
    audit::record(
        svc,
        &txn,
        AuditRecord::by(actor, AuditAction::SendingDomainRemoved)
            .target("sending_domain", id)
            .detail("domain", row.domain),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Check a domain's records now (the Verify button). Returns the domain as it stands afterwards.
pub async fn verify(svc: &Services, actor: &Actor, id: Uuid) -> ServiceResult<SendingDomainView> {
    actor.require(Permission::SettingsManage)?;
    let org = actor.organisation_id;
    let row = load(svc.db(), org, id, false).await?;
    let (finding, checks) = check_dns(&svc.settings().domains, &row.domain, &row.selector, &row.public_b64).await?;
    let outcome = apply(svc, AuditActor::from(actor), actor.ip.clone(), &row, finding, &checks).await?;
    if outcome == Applied::TakenElsewhere {
        return Err(ServiceError::conflict(
            "The records check out, but this domain is verified by another organisation in Hermetic, and a domain \
             can send for only one. Remove it there first.",
        ));
    }
    Ok(view(svc, load(svc.db(), org, id, false).await?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Done,
    TakenElsewhere,
}

/// Record a check's result on the row (status, per-record results, times) with its audit row.
async fn apply(
    svc: &Services,
    who: AuditActor,
    ip: Option<String>,
    row: &Row,
    finding: Finding,
    checks: &[RecordCheck],
) -> ServiceResult<Applied> {
    let now = svc.clock().now();
    let txn = svc.db().begin().await?;
    let current = load(&txn, row.organisation, row.id, true).await?;
    let mut applied = Applied::Done;
    let status = match finding {
        Finding::Verified => {
            // A deleted organisation's claim does not block anyone.
            db::exec(
                &txn,
                "UPDATE sending_domain SET status = 'failed', updated_at = $2
                 WHERE domain = $1 AND status = 'verified'
                   AND organisation_id IN (SELECT id FROM organisation WHERE deleted_at IS NOT NULL)",
                [current.domain.clone().into(), now.into()],
            )
            .await?;
            let elsewhere = db::one(
                &txn,
                "SELECT 1 AS x FROM sending_domain WHERE domain = $1 AND status = 'verified' AND organisation_id <> $2",
                [current.domain.clone().into(), current.organisation.0.into()],
            )
            .await?
            .is_some();
            if elsewhere {
                applied = Applied::TakenElsewhere;
                if current.status == DomainStatus::Verified { DomainStatus::Failed } else { current.status }
            } else {
                DomainStatus::Verified
            }
        }
        Finding::Failed => DomainStatus::Failed,
        // No definite answer: the status stays as it was.
        Finding::Unknown => current.status,
    };
    let res = db::exec(
        &txn,
        "UPDATE sending_domain SET status = $2, checks = $3, updated_at = $4,
             last_checked_at = CASE WHEN $5 THEN $4 ELSE last_checked_at END,
             verified_at = CASE WHEN $2 = 'verified' THEN coalesce(CASE WHEN status = 'verified' THEN verified_at END, $4) END
         WHERE id = $1",
        [
            current.id.into(),
            status.as_str().into(),
            checks_json(checks).into(),
            now.into(),
            (finding != Finding::Unknown).into(),
        ],
    )
    .await;
    match res {
        // Two organisations verifying the same domain at the same moment: the index lets one win.
        Err(e) if is_unique_violation(&e) => return Ok(Applied::TakenElsewhere),
        r => r?,
    };
    let mut rec = AuditRecord::new(
        Some(current.organisation),
        who,
        AuditAction::SendingDomainChecked,
        if status == DomainStatus::Verified { AuditOutcome::Success } else { AuditOutcome::Failure },
    )
    .target("sending_domain", current.id)
    .detail("domain", current.domain.clone())
    .detail("status", status.as_str())
    .detail("was", current.status.as_str());
    for c in checks {
        rec = rec.detail(
            match c.kind {
                RecordKind::Dkim => "dkim_ok",
                RecordKind::Spf => "spf_ok",
                RecordKind::Dmarc => "dmarc_ok",
            },
            c.ok,
        );
    }
    if applied == Applied::TakenElsewhere {
        rec = rec.detail("refused", "verified_by_another_organisation");
    }
    audit::record(svc, &txn, rec.ip(ip)).await?;
    txn.commit().await?;
    if current.status == DomainStatus::Verified && status != DomainStatus::Verified {
        tracing::warn!(sending_domain = %current.id, "a sending domain is no longer verified: its campaigns pause");
    }
    Ok(applied)
}

/// What the periodic re-check did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecheckReport {
    pub checked: u64,
    pub lost: u64,
    pub unknown: u64,
}

/// Re-check verified domains whose last check is older than `domains.recheck` (the maintenance
/// job). A domain whose records are definitely gone or wrong becomes `failed`.
pub async fn recheck_due(svc: &Services) -> ServiceResult<RecheckReport> {
    let now = svc.clock().now();
    let rows: Vec<Stored> = db::all_as(
        svc.db(),
        &format!(
            "SELECT {COLS} FROM sending_domain WHERE status = 'verified' AND (last_checked_at IS NULL OR last_checked_at < $1)
             ORDER BY last_checked_at NULLS FIRST LIMIT 100"
        ),
        [(now - svc.settings().domains.recheck).into()],
    )
    .await?;
    let mut report = RecheckReport::default();
    for r in rows {
        let row = row_from(r)?;
        let (finding, checks) = check_dns(&svc.settings().domains, &row.domain, &row.selector, &row.public_b64).await?;
        apply(svc, AuditActor::System, None, &row, finding.clone(), &checks).await?;
        report.checked += 1;
        match finding {
            Finding::Failed => report.lost += 1,
            Finding::Unknown => report.unknown += 1,
            Finding::Verified => {}
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// For senders: campaigns, test sends (and later sequences and API messages)
// ---------------------------------------------------------------------------------------------

/// A verified sending domain, as a sender needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDomain {
    pub id: Uuid,
    pub organisation: OrganisationId,
    pub domain: String,
    pub selector: String,
}

fn not_verified(field: &str) -> ServiceError {
    ServiceError::invalid(
        field,
        "is not on a verified sending domain of your organisation: an administrator adds and verifies the domain \
         under Settings → Sending domains",
    )
}

/// The organisation's verified domain that `address` is on; a plain error on `field` otherwise
/// (another organisation's domain, an unverified one and an unknown one get the same answer).
pub(crate) async fn verified_domain_of<C: ConnectionTrait>(
    conn: &C,
    org: OrganisationId,
    field: &str,
    address: &str,
) -> ServiceResult<VerifiedDomain> {
    let domain = address_domain(address).ok_or_else(|| not_verified(field))?;
    #[derive(FromQueryResult)]
    struct Verified {
        id: Uuid,
        domain: String,
        selector: String,
    }
    let r: Verified = db::one_as(
        conn,
        "SELECT id, domain, selector FROM sending_domain WHERE organisation_id = $1 AND domain = $2 AND status = 'verified'",
        [org.0.into(), domain.into()],
    )
    .await?
    .ok_or_else(|| not_verified(field))?;
    Ok(VerifiedDomain { id: r.id, organisation: org, domain: r.domain, selector: r.selector })
}

/// Whether a domain is still verified (checked before each batch of a campaign).
pub(crate) async fn still_verified<C: ConnectionTrait>(conn: &C, d: &VerifiedDomain) -> ServiceResult<bool> {
    Ok(db::one(
        conn,
        "SELECT 1 AS x FROM sending_domain WHERE id = $1 AND organisation_id = $2 AND status = 'verified'",
        [d.id.into(), d.organisation.0.into()],
    )
    .await?
    .is_some())
}

/// The domain's DKIM signer: its key opened from the sealed column (d= the domain).
pub(crate) async fn signer(svc: &Services, d: &VerifiedDomain) -> ServiceResult<Arc<Dkim>> {
    let sealed: Vec<u8> = db::scalar(
        svc.db(),
        "SELECT dkim_key FROM sending_domain WHERE id = $1 AND organisation_id = $2",
        [d.id.into(), d.organisation.0.into()],
    )
    .await?
    .ok_or(ServiceError::NotFound)?;
    let der = svc.keys().open(svc.db(), &key_aad(d.organisation, d.id), &Sealed::from_bytes(sealed)?).await?;
    Ok(Arc::new(
        Dkim::from_pkcs8_der(&d.selector, &d.domain, &der).map_err(|_| ServiceError::internal("stored DKIM key"))?,
    ))
}

/// The organisation's verified domains, oldest verification first (the campaign editor offers
/// them; the first is the default for test sends of templates).
pub(crate) async fn verified_names<C: ConnectionTrait>(conn: &C, org: OrganisationId) -> ServiceResult<Vec<String>> {
    Ok(db::scalars(
        conn,
        "SELECT domain FROM sending_domain WHERE organisation_id = $1 AND status = 'verified' ORDER BY verified_at, domain",
        [org.0.into()],
    )
    .await?)
}

/// The local part of the system sender (`no-reply` of `Hermetic <no-reply@…>`), used to offer
/// addresses on the organisation's own domains.
pub(crate) fn default_local_part(svc: &Services) -> (String, String) {
    match svc.settings().mail.from_address().parse::<lettre::message::Mailbox>() {
        Ok(m) => (m.name.unwrap_or_default(), m.email.user().to_string()),
        Err(_) => (String::new(), "no-reply".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_domain_names_are_refused_with_reasons_and_good_ones_normalised() {
        let ok = |s: &str| normalise(s).unwrap().ascii;
        assert_eq!(ok("Clinic.Example"), "clinic.example");
        assert_eq!(ok("  clinic.example.  "), "clinic.example");
        assert_eq!(ok("mail.clinic.example"), "mail.clinic.example");
        let idn = normalise("bücher.example").unwrap();
        assert_eq!(idn.ascii, "xn--bcher-kva.example");
        assert_eq!(idn.unicode.as_deref(), Some("bücher.example"));
        assert_eq!(normalise("XN--BCHER-KVA.example").unwrap().ascii, "xn--bcher-kva.example");
        for (bad, why) in [
            ("", "enter a domain"),
            ("   ", "enter a domain"),
            ("clinic..example", "empty label"),
            ("clinic.example..", "empty label"),
            (".clinic.example", "empty label"),
            ("*.clinic.example", "wildcards"),
            ("192.0.2.1", "IP address"),
            ("[2001:db8::1]", "IP address"),
            ("2001:db8::1", "IP address"),
            ("1.2.3.999", "IP address"),
            ("localhost", "two labels"),
            ("news@clinic.example", "not an address"),
            ("https://clinic.example/", "not an address"),
            ("clinic example", "spaces"),
            ("clinic.example\r\nBcc: x", "spaces"),
            ("-clinic.example", "valid domain"),
            ("clinic-.example", "valid domain"),
            ("clin_ic.example", "valid domain"),
            ("clinic.example\u{0}", "control"),
        ] {
            let e = normalise(bad).unwrap_err().to_string();
            assert!(e.starts_with("domain: ") && e.contains(why), "{bad:?}: {e}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(normalise(&long_label).unwrap_err().to_string().contains("63"));
        let long_name = vec!["abcdefghij"; 30].join(".");
        assert!(normalise(&long_name).unwrap_err().to_string().contains("253"));
        assert!(normalise(&"x".repeat(100_000)).is_err());
        // An internationalised name that is not valid IDNA (a bare combining mark).
        assert!(normalise("\u{0301}.example").is_err());
        assert_eq!(address_domain("News@Clinic.EXAMPLE"), Some("clinic.example".into()));
        assert_eq!(address_domain("news@bücher.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(address_domain("no-at-sign"), None);
    }

    #[test]
    fn the_records_and_their_zone_lines() {
        let public = "A".repeat(392);
        let r = records("clinic.example", "hmabc", &public, Some("relay.example"));
        assert_eq!(r[0].name, "hmabc._domainkey.clinic.example");
        assert_eq!(r[0].value, format!("v=DKIM1; k=rsa; p={public}"));
        // 411 characters: two strings of at most 255.
        assert!(r[0].zone_line.starts_with("hmabc._domainkey.clinic.example. 3600 IN TXT \"v=DKIM1; k=rsa; p=AAA"));
        assert_eq!(r[0].zone_line.matches('"').count(), 4);
        assert_eq!(r[1].value, "v=spf1 include:relay.example ~all");
        assert_eq!(r[2].name, "_dmarc.clinic.example");
        assert_eq!(r[2].value, "v=DMARC1; p=none");
    }

    #[test]
    fn each_record_is_judged_with_a_plain_reason() {
        let f = |v: &[&str]| Txt::Found(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(judge_dkim(f(&["v=DKIM1; k=rsa; p=KEY"]), "n", "KEY").1, Some(true));
        assert_eq!(judge_dkim(f(&["v=DKIM1; k=rsa; p=K E Y"]), "n", "KEY").1, Some(true));
        assert_eq!(judge_dkim(f(&["v=DKIM1; k=rsa; p=OTHER"]), "n", "KEY").1, Some(false));
        assert_eq!(judge_dkim(f(&["v=DKIM1; k=ed25519; p=KEY"]), "n", "KEY").1, Some(false));
        assert!(judge_dkim(f(&["v=DKIM1; p="]), "n", "KEY").2.contains("revokes"));
        assert_eq!(judge_dkim(Txt::Nothing, "n", "KEY").1, Some(false));
        assert_eq!(judge_dkim(Txt::Failed, "n", "KEY").1, None);
        assert_eq!(judge_spf(f(&["v=spf1 include:relay.example ~all"]), "d", Some("relay.example")).1, Some(true));
        assert_eq!(judge_spf(f(&["v=spf1 +INCLUDE:Relay.Example -all"]), "d", Some("relay.example")).1, Some(true));
        assert_eq!(judge_spf(f(&["v=spf1 mx ~all"]), "d", Some("relay.example")).1, Some(false));
        assert_eq!(judge_spf(f(&["v=spf1 mx ~all"]), "d", None).1, Some(true));
        assert!(judge_spf(f(&["v=spf1 mx", "v=spf1 a"]), "d", None).2.contains("only one"));
        assert_eq!(judge_spf(f(&["google-site-verification=x"]), "d", None).1, Some(false));
        assert_eq!(judge_dmarc(f(&["v=DMARC1; p=none; rua=mailto:x@y"]), "n").1, Some(true));
        assert_eq!(judge_dmarc(f(&["v=DMARC1; p=reject"]), "n").1, Some(true));
        assert_eq!(judge_dmarc(f(&["v=DMARC1; p=maybe"]), "n").1, Some(false));
        assert_eq!(judge_dmarc(f(&["v=DMARC1; p=none", "v=DMARC1; p=reject"]), "n").1, Some(false));
        assert_eq!(judge_dmarc(Txt::Nothing, "n").1, Some(false));
    }
}
