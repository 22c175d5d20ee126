//! `Services`: the handle every use case receives — database, key ring, clock and settings. Cheap to
//! clone (one `Arc`); built once at start by the server binary or by a test.

use crate::clock::Clock;
use crate::crypto::keyring::KeyRing;
use chrono::Duration;
use sea_orm::DatabaseConnection;
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
    pub mail: crate::mail::MailSettings,
    /// DKIM signing of system mail (invitations, opt-in, notices) from `mail.from`, when a key is
    /// configured. Campaign mail is signed with its sending domain's own key.
    pub mail_dkim: Option<Arc<crate::mail::Dkim>>,
    /// How sending domains are checked through DNS.
    pub domains: crate::sending_domains::DomainSettings,
    /// How the campaign pipeline sends (batch sizes, connections, leases).
    pub sending: crate::campaigns::SendingSettings,
    /// Public origin of the web app (`https://hermetic.example.org`), used in invitation links.
    pub public_url: String,
    /// Name shown in authenticator apps.
    pub totp_issuer: String,
}

pub struct Inner {
    pub db: DatabaseConnection,
    pub mailer: crate::mail::Mailer,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub settings: Settings,
    pub templates: crate::templates::Engine,
    /// This process's sending lease (taken by the first dispatch job).
    pub send_lease: tokio::sync::OnceCell<Arc<crate::campaigns::send::Lease>>,
    /// The tracking-event buffer, when the server runs one.
    pub tracker: std::sync::OnceLock<crate::campaigns::tracking::Recorder>,
    /// Bounds the argon2 computations running at once (memory: 46 MiB each).
    pub hashing: crate::auth::hashing::HashGate,
}

#[derive(Clone)]
pub struct Services(Arc<Inner>);

impl Services {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        keys: KeyRing,
        settings: Settings,
    ) -> crate::ServiceResult<Self> {
        let mailer = crate::mail::Mailer::build(&settings.mail)?;
        let hashing = crate::auth::hashing::HashGate::new(settings.auth.hash_concurrency, settings.auth.hash_wait);
        Ok(Services(Arc::new(Inner {
            db,
            mailer,
            clock,
            keys,
            settings,
            templates: crate::templates::Engine::default(),
            send_lease: tokio::sync::OnceCell::new(),
            tracker: std::sync::OnceLock::new(),
            hashing,
        })))
    }
    pub fn mailer(&self) -> &crate::mail::Mailer {
        &self.0.mailer
    }
    pub fn db(&self) -> &DatabaseConnection {
        &self.0.db
    }
    pub fn clock(&self) -> &dyn Clock {
        self.0.clock.as_ref()
    }
    pub fn keys(&self) -> &KeyRing {
        &self.0.keys
    }
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
    /// The template sandbox and compiled-version cache.
    pub fn templates(&self) -> &crate::templates::Engine {
        &self.0.templates
    }
    pub fn send_lease(&self) -> &tokio::sync::OnceCell<Arc<crate::campaigns::send::Lease>> {
        &self.0.send_lease
    }
    pub fn tracker(&self) -> Option<&crate::campaigns::tracking::Recorder> {
        self.0.tracker.get()
    }
    /// Start buffering tracking events (the web server does this once).
    pub fn start_tracker(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = self.0.tracker.set(crate::campaigns::tracking::Recorder::spawn(self.clone(), shutdown));
    }
    /// The password-hashing gate (its gauges are read by tests and benchmarks).
    pub fn hashing(&self) -> &crate::auth::hashing::HashGate {
        &self.0.hashing
    }
    pub fn auth(&self) -> &AuthSettings {
        &self.0.settings.auth
    }
}
