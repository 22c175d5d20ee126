//! Configuration: the settings a process is started with (read by `server::config` from the
//! environment and files, shortened by tests and benchmarks). Plain data, no behaviour: every
//! feature module reads its part through `Services::settings`, and this module depends on none
//! of them.

use crate::mail::dkim::Dkim;
use crate::mail::transport::MailSettings;
use chrono::Duration;
use domain::campaigns::RetryPolicy;
use std::net::SocketAddr;
use std::sync::Arc;

/// Authentication and session policy. Defaults are the production values; tests shorten them.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Inactivity after which a signed-in session ends (15 minutes).
    pub idle_timeout: Duration,
    /// How long before idle logout the UI warns (2 minutes).
    pub idle_warning: Duration,
    /// Hard limit on a session's life whatever the activity (12 hours).
    pub absolute_timeout: Duration,
    /// Time allowed between a correct password and the MFA step (10 minutes).
    pub pre_mfa_timeout: Duration,
    /// Failed sign-ins for one account name within `window` before it is locked.
    pub account_max_failures: i32,
    /// Failed sign-ins from one address within `window` before it is locked.
    pub ip_max_failures: i32,
    pub throttle_window: Duration,
    /// First lockout length; doubles with each further failure up to `lockout_max`.
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    /// Wrong MFA codes allowed on one pre-MFA session before it is ended.
    pub mfa_max_failures: i32,
    /// How long an invitation link stays valid (72 hours).
    pub invite_ttl: Duration,
    /// Password hashes (argon2, 46 MiB each) this process runs at once (default: one per CPU).
    pub hash_concurrency: usize,
    /// How long a sign-in waits for a hashing slot before it is answered 503 with `Retry-After`.
    pub hash_wait: std::time::Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            idle_timeout: Duration::minutes(15),
            idle_warning: Duration::minutes(2),
            absolute_timeout: Duration::hours(12),
            pre_mfa_timeout: Duration::minutes(10),
            account_max_failures: 5,
            ip_max_failures: 50,
            throttle_window: Duration::minutes(15),
            lockout_base: Duration::minutes(1),
            lockout_max: Duration::minutes(15),
            mfa_max_failures: 5,
            invite_ttl: Duration::hours(72),
            hash_concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            hash_wait: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub auth: AuthSettings,
    /// Largest CSV upload accepted, in bytes (default 200 MB).
    pub import_max_bytes: u64,
    pub mail: MailSettings,
    /// DKIM signing of system mail (invitations, opt-in, notices) from `mail.from`, when a key is
    /// configured. Campaign mail is signed with its sending domain's own key.
    pub mail_dkim: Option<Arc<Dkim>>,
    /// How sending domains are checked through DNS.
    pub domains: DomainSettings,
    /// How the campaign pipeline sends (batch sizes, connections, leases).
    pub sending: SendingSettings,
    /// Public origin of the web app (`https://hermetic.example.org`), used in invitation links.
    pub public_url: String,
    /// Name shown in authenticator apps.
    pub totp_issuer: String,
    /// Outgoing webhooks.
    pub webhooks: WebhookSettings,
}

/// Outgoing webhooks (`webhooks.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Development only: allow `http://` endpoints and private, loopback and link-local addresses
    /// (off by default; the SSRF guard refuses them).
    pub allow_private: bool,
}

/// How sending domains are checked.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    /// The DNS resolver to ask (`mail.dns_resolver`); `None` is the system's (/etc/resolv.conf).
    pub resolver: Option<SocketAddr>,
    /// What the SPF record must include (`include:<this>`): `mail.spf_include`, else the relay's
    /// host name. `None`: any SPF record passes.
    pub spf_include: Option<String>,
    /// How often the maintenance job re-checks a verified domain.
    pub recheck: chrono::Duration,
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings { resolver: None, spf_include: None, recheck: chrono::Duration::hours(1) }
    }
}

/// How the sending pipeline works in this process. Defaults suit a small relay; benchmarks and
/// tests change them.
#[derive(Debug, Clone)]
pub struct SendingSettings {
    /// Dispatch jobs per campaign: each runs its own send loop, and any worker process may run any
    /// of them, so several workers share a campaign.
    pub slots: u32,
    /// Sending lanes per dispatch job: each sends its share of a batch over one pooled SMTP
    /// connection, pipelined across messages.
    pub concurrency: u32,
    /// Most deliveries one claim takes (each claim is at most ~¼ s of the campaign's rate too).
    pub max_batch: u32,
    /// A dispatch job hands over to a fresh job after this long (a checkpoint: a crash loses
    /// nothing either way, but jobs stay short).
    pub job_secs: u64,
    pub retry: RetryPolicy,
}

impl Default for SendingSettings {
    fn default() -> Self {
        SendingSettings { slots: 4, concurrency: 8, max_batch: 200, job_secs: 30, retry: RetryPolicy::default() }
    }
}
