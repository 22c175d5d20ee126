//! Configuration in two stages: a `deny_unknown_fields` file/environment shape (`FileConfig`), then
//! validation into `Config`. A bad setting stops the process with a message naming the setting.
//!
//! Sources, later wins: the TOML file named by `--config` or `HERMETIC_CONFIG`, then environment
//! variables `HERMETIC_<KEY>` with `__` between nested keys (`HERMETIC_SESSION__IDLE_TIMEOUT_SECS`).
//! `DATABASE_URL` is accepted for `database_url`. Secrets (the root key) come from a file or
//! `HERMETIC_ROOT_KEY`, never from the file itself. `main` takes `HERMETIC_ROOT_KEY` out of the
//! process environment before anything else runs and hands it to [`from_process`]; every buffer
//! that held root-key text or bytes is zeroized.
//!
//! During a root-key rotation, `previous_root_key_files` names the old key file(s): keys still
//! wrapped under them keep opening until `server admin rotate-root-key` has re-wrapped them.

use serde::Deserialize;
use service::crypto::keyring::RootKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables with the `HERMETIC_` prefix that are not settings.
const NOT_SETTINGS: &[&str] = &[
    "HERMETIC_CONFIG",
    "HERMETIC_LOG",
    "HERMETIC_ROOT_KEY",
    "HERMETIC_SMTP_PASSWORD",
    "HERMETIC_METRICS_TOKEN",
    "HERMETIC_NEW_USER_PASSWORD",
    "HERMETIC_DEMO_ADMIN_PASSWORD",
    "HERMETIC_DEMO_ADMIN_EMAIL",
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub root_key_file: Option<PathBuf>,
    /// Previous root keys (during a root-key rotation): a list of files, or one string with the
    /// paths separated by commas (HERMETIC_PREVIOUS_ROOT_KEY_FILES).
    pub previous_root_key_files: Option<PathList>,
    pub site_root: Option<PathBuf>,
    /// The hash file cargo-leptos writes with `hash-files` (`hash.txt`, the hashed names of the
    /// site's JavaScript, WebAssembly and style sheet). Default: `hash.txt` next to the server
    /// binary, where cargo-leptos puts it, if it is there; without one the names are unhashed.
    pub site_hash_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    /// Addresses or CIDR ranges of the reverse proxies in front of Hermetic (a list, or one
    /// comma-separated string in `HERMETIC_TRUSTED_PROXIES`). `X-Forwarded-For` is read only on
    /// connections from them, and only its hops they added.
    pub trusted_proxies: Option<ProxyList>,
    /// Removed (it trusted the client-written end of `X-Forwarded-For`). Still read, so that a
    /// configuration that sets it stops with a message naming its replacement, `trusted_proxies`.
    pub trust_proxy_headers: Option<toml::Value>,
    pub db_max_connections: Option<u32>,
    pub totp_issuer: Option<String>,
    #[serde(default)]
    pub session: SessionFile,
    #[serde(default)]
    pub throttle: ThrottleFile,
    #[serde(default)]
    pub jobs: JobsFile,
    #[serde(default)]
    pub mail: MailFile,
    #[serde(default)]
    pub import: ImportFile,
    #[serde(default)]
    pub sending: SendingFile,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default)]
    pub webhooks: WebhooksFile,
}

/// Outgoing webhooks. `allow_private` (`HERMETIC_WEBHOOKS__ALLOW_PRIVATE`) is for development and
/// tests only: it lets endpoints be `http://` and on loopback or private addresses.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    pub allow_private: Option<bool>,
}

/// Prometheus metrics (`/metrics`). Off unless a bearer token is configured: from a file
/// (`token_file`, private like a key file) or `HERMETIC_METRICS_TOKEN`, never from this file.
/// With `listen`, `/metrics` is served on that address only (a worker process serves it there).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    pub token_file: Option<PathBuf>,
    pub listen: Option<String>,
}

/// The metrics bearer token, kept only as its SHA-256: a presented token is hashed and the
/// digests compared in constant time (no length or prefix leaks, no plaintext held).
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// Whether `presented` is the token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        service::crypto::ct_eq(&service::crypto::sha256(presented), &self.0)
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([redacted])")
    }
}

/// Validated metrics settings: without a token, `/metrics` does not exist (404).
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    pub token: Option<MetricsToken>,
    /// A separate address serving only `/metrics`; then the main listener does not serve it.
    pub listen: Option<SocketAddr>,
}

/// The shortest token accepted (a random token of 32 bytes in base64 is 43 characters).
const METRICS_TOKEN_MIN: usize = 32;

fn metrics_settings(m: &MetricsFile, cwd: &Path, env: &[(String, String)]) -> Result<MetricsSettings, ConfigError> {
    let text = match (env.iter().find(|(k, _)| k == "HERMETIC_METRICS_TOKEN"), &m.token_file) {
        (Some((_, v)), _) => Some(zeroize::Zeroizing::new(v.trim().to_string())),
        (None, Some(p)) => {
            let path = if p.is_absolute() { p.clone() } else { cwd.join(p) };
            let named = |e: &dyn std::fmt::Display| err(format!("metrics.token_file {}: {e}", p.display()));
            let meta = std::fs::metadata(&path).map_err(|e| named(&e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(named(&"must not be readable by group or others (chmod 600)"));
                }
            }
            if meta.len() > 4096 {
                return Err(named(&"is too large to be a token"));
            }
            let raw = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| named(&e))?);
            Some(zeroize::Zeroizing::new(raw.trim().to_string()))
        }
        (None, None) => None,
    };
    let token = match text {
        Some(t) => {
            if t.len() < METRICS_TOKEN_MIN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(format!(
                    "the metrics token (HERMETIC_METRICS_TOKEN or metrics.token_file) must be at least \
                     {METRICS_TOKEN_MIN} printable characters without spaces (e.g. `openssl rand -base64 32`)"
                )));
            }
            Some(MetricsToken(service::crypto::sha256(t.as_bytes())))
        }
        None => None,
    };
    let listen = match m.listen.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let a: SocketAddr =
                s.parse().map_err(|_| err(format!("metrics.listen: '{s}' is not an address like 127.0.0.1:9090")))?;
            if token.is_none() {
                return Err(err("metrics.listen is set but there is no metrics token: set HERMETIC_METRICS_TOKEN or \
                     metrics.token_file (the metrics endpoint always requires a bearer token)"));
            }
            Some(a)
        }
        None => None,
    };
    Ok(MetricsSettings { token, listen })
}

/// The machine interface (`/api/v1`): each API key's request budget, a token bucket
/// (`HERMETIC_API__RATE_PER_SECOND`, `HERMETIC_API__BURST`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub rate_per_second: Option<u64>,
    pub burst: Option<u64>,
}

/// Validated API settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSettings {
    pub rate_per_second: u32,
    pub burst: u32,
}

/// Paths as a TOML array, or as one comma-separated string (the form an environment variable has).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum PathList {
    One(String),
    Many(Vec<PathBuf>),
}

impl PathList {
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            PathList::One(s) => s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect(),
            PathList::Many(v) => v.clone(),
        }
    }
}

/// `trusted_proxies`: a TOML list, or a comma-separated string (the environment's form).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProxyList {
    List(Vec<String>),
    Csv(String),
}

impl ProxyList {
    fn entries(&self) -> Vec<String> {
        match self {
            ProxyList::List(v) => v.iter().map(|s| s.trim().to_string()).collect(),
            ProxyList::Csv(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MailFile {
    /// The From address of system mail (double opt-in, test sends).
    pub from: Option<String>,
    /// Without a host, mail is captured in the dev mailbox instead of sent.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `starttls` (required, the default) or `implicit` (TLS from the first byte, port 465).
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    /// File holding the SMTP password (or set HERMETIC_SMTP_PASSWORD).
    pub smtp_password_file: Option<PathBuf>,
    /// PEM file of an extra CA to trust (private relays).
    pub smtp_ca_file: Option<PathBuf>,
    pub smtp_pool_size: Option<u32>,
    /// Development only: tag messages with their organisation for the dev SMTP listener.
    pub smtp_tag_organisation: Option<bool>,
    /// Development only: run the dev SMTP listener (loopback address) with this certificate and key.
    pub dev_smtp_listen: Option<String>,
    pub dev_smtp_cert_file: Option<PathBuf>,
    pub dev_smtp_key_file: Option<PathBuf>,
    /// DKIM: selector, signing domain and an RSA key file, PEM (PKCS#1 or PKCS#8), 2048 bits or more (all three, or none).
    pub dkim_selector: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_key_file: Option<PathBuf>,
    /// The DNS resolver sending domains are checked with (`127.0.0.1:5353`, or an address for port
    /// 53); without it, the system's resolver (/etc/resolv.conf).
    pub dns_resolver: Option<String>,
    /// What a sending domain's SPF record must include (`include:<this>`); default: the relay's host.
    pub spf_include: Option<String>,
    /// How often verified sending domains are re-checked through DNS (seconds, default 3600).
    pub domain_recheck_secs: Option<u64>,
}

/// The campaign sending pipeline of this process.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SendingFile {
    /// Dispatch jobs per campaign (worker processes share them).
    pub slots: Option<u64>,
    /// SMTP transactions in flight per dispatch job.
    pub concurrency: Option<u64>,
    pub max_batch: Option<u64>,
    pub job_secs: Option<u64>,
    pub retry_base_secs: Option<u64>,
    pub max_attempts: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    pub idle_timeout_secs: Option<u64>,
    pub idle_warning_secs: Option<u64>,
    pub absolute_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ThrottleFile {
    pub account_max_failures: Option<u32>,
    pub ip_max_failures: Option<u32>,
    pub window_secs: Option<u64>,
    pub lockout_base_secs: Option<u64>,
    pub lockout_max_secs: Option<u64>,
    /// Password hashes run at once by this process (46 MiB each); default: the number of CPUs.
    pub hash_concurrency: Option<u64>,
    /// How long a sign-in waits for a hashing slot before it is answered 503 (milliseconds).
    pub hash_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    pub maintenance_interval_secs: Option<u64>,
    /// How often the report rollup runs (default 30 s).
    pub rollup_interval_secs: Option<u64>,
    pub poll_interval_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    pub missed_heartbeats: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Validated configuration: the root keys (not Clone, never printed) and everything else.
pub struct Config {
    pub root_key: RootKey,
    /// Previous root keys, kept during a root-key rotation to open keys not yet re-wrapped.
    pub previous_root_keys: Vec<RootKey>,
    pub runtime: Runtime,
}

/// Validated non-secret settings.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub database_url: String,
    pub listen: SocketAddr,
    pub public_url: String,
    pub site_root: PathBuf,
    /// Absolute path of the hash file naming the hashed assets, if the site was built with them.
    pub site_hash_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    pub db_max_connections: u32,
    pub auth: service::AuthSettings,
    pub totp_issuer: String,
    pub jobs: jobs::JobsConfig,
    pub mail: service::mail::MailSettings,
    pub mail_dkim: Option<std::sync::Arc<service::mail::Dkim>>,
    pub domains: service::sending_domains::DomainSettings,
    /// The dev SMTP listener to run inside `serve` (development only).
    pub dev_smtp: Option<DevSmtp>,
    pub sending: service::campaigns::SendingSettings,
    pub import_max_bytes: u64,
    pub api: ApiSettings,
    pub metrics: MetricsSettings,
    pub webhooks: service::config::WebhookSettings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("root_key_id", &self.root_key.id())
            .field("previous_root_key_ids", &self.previous_root_keys.iter().map(RootKey::id).collect::<Vec<_>>())
            .field("runtime", &self.runtime)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Turn an environment value into a TOML value: integers and booleans as such, the rest as strings.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

impl FileConfig {
    /// Read the file (if any) and overlay the environment.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<FileConfig, ConfigError> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
                text.parse::<toml::Table>().map_err(|e| err(format!("{} is not valid TOML: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (k, v) in env {
            let key = if k == "DATABASE_URL" {
                if env.iter().any(|(k2, _)| k2 == "HERMETIC_DATABASE_URL") {
                    continue;
                }
                "database_url".to_string()
            } else if let Some(rest) = k.strip_prefix("HERMETIC_") {
                if NOT_SETTINGS.contains(&k.as_str()) {
                    continue;
                }
                rest.to_lowercase()
            } else {
                continue;
            };
            let parts: Vec<&str> = key.split("__").collect();
            let mut t = &mut table;
            for p in &parts[..parts.len() - 1] {
                let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                t = entry.as_table_mut().ok_or_else(|| err(format!("{k}: {p} is not a section")))?;
            }
            if let Some(last) = parts.last() {
                t.insert(last.to_string(), env_value(v));
            }
        }
        toml::Value::Table(table).try_into::<FileConfig>().map_err(|e| {
            err(format!("{} (settings come from the config file and HERMETIC_* variables)", e.to_string().trim()))
        })
    }

    /// Validate, taking the root key from `HERMETIC_ROOT_KEY` in `env` when it is there (tests
    /// pass it this way; the binary takes it out of its environment first, see `from_process`).
    pub fn validate(self, cwd: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let root_text = env.iter().find(|(k, _)| k == ROOT_KEY_VAR).map(|(_, v)| v.as_str());
        self.validate_with(cwd, env, root_text)
    }

    fn validate_with(
        self,
        cwd: &Path,
        env: &[(String, String)],
        root_text: Option<&str>,
    ) -> Result<Config, ConfigError> {
        if self.trust_proxy_headers.is_some() {
            return Err(err(
                "trust_proxy_headers (HERMETIC_TRUST_PROXY_HEADERS) was removed: it trusted the address a client can \
                 write into X-Forwarded-For. List your reverse proxies instead, as addresses or CIDR ranges: \
                 trusted_proxies = [\"10.0.0.0/8\"] in the file, or HERMETIC_TRUSTED_PROXIES=10.0.0.5,10.0.1.0/24. \
                 The client address is then the rightmost X-Forwarded-For hop that is not one of them.",
            ));
        }
        let trusted_proxies = crate::forwarded::TrustedProxies::parse(
            &self.trusted_proxies.as_ref().map(ProxyList::entries).unwrap_or_default(),
        )
        .map_err(|e| err(format!("trusted_proxies: {e}")))?;
        let database_url =
            self.database_url.ok_or_else(|| err("database_url is not set (HERMETIC_DATABASE_URL or DATABASE_URL)"))?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(err("database_url must be a postgres:// URL"));
        }
        let listen_s = self.listen.unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr =
            listen_s.parse().map_err(|_| err(format!("listen: '{listen_s}' is not an address like 127.0.0.1:3000")))?;
        let public_url = self.public_url.unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("https://") || public_url.starts_with("http://"))
            || public_url.contains(char::is_whitespace)
        {
            return Err(err("public_url must be an http:// or https:// URL"));
        }
        let root_key = match root_text {
            Some(v) => RootKey::from_encoded(v).map_err(|e| err(format!("{ROOT_KEY_VAR}: {e}")))?,
            None => {
                let path = self.root_key_file.ok_or_else(|| {
                    err("no root key: set root_key_file (HERMETIC_ROOT_KEY_FILE) or HERMETIC_ROOT_KEY")
                })?;
                let path = if path.is_absolute() { path } else { cwd.join(path) };
                load_key_file(&path)?
            }
        };
        let mut previous_root_keys: Vec<RootKey> = Vec::new();
        for path in self.previous_root_key_files.as_ref().map(PathList::paths).unwrap_or_default() {
            let path = if path.is_absolute() { path } else { cwd.join(path) };
            let key = load_key_file(&path)?;
            if key.id() == root_key.id() || previous_root_keys.iter().any(|k| k.id() == key.id()) {
                return Err(err(format!(
                    "previous_root_key_files: {} repeats a root key already configured",
                    path.display()
                )));
            }
            previous_root_keys.push(key);
        }
        let log_format = match self.log_format.as_deref().unwrap_or("pretty") {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => return Err(err(format!("log_format: '{other}' must be pretty or json"))),
        };
        let secs = |v: Option<u64>, default: u64, name: &str, min: u64, max: u64| -> Result<u64, ConfigError> {
            let v = v.unwrap_or(default);
            if v < min || v > max {
                return Err(err(format!("{name}: {v} is outside {min}..={max}")));
            }
            Ok(v)
        };
        let idle = secs(self.session.idle_timeout_secs, 900, "session.idle_timeout_secs", 5, 86_400)?;
        let warning = secs(self.session.idle_warning_secs, 120, "session.idle_warning_secs", 1, 3_600)?;
        if warning >= idle {
            return Err(err("session.idle_warning_secs must be less than session.idle_timeout_secs"));
        }
        let absolute =
            secs(self.session.absolute_timeout_secs, 43_200, "session.absolute_timeout_secs", idle, 7 * 86_400)?;
        let t = &self.throttle;
        let acct = secs(t.account_max_failures.map(u64::from), 5, "throttle.account_max_failures", 1, 1000)?;
        let ipmax = secs(t.ip_max_failures.map(u64::from), 50, "throttle.ip_max_failures", 1, 100_000)?;
        let window = secs(t.window_secs, 900, "throttle.window_secs", 1, 86_400)?;
        let base = secs(t.lockout_base_secs, 60, "throttle.lockout_base_secs", 1, 86_400)?;
        let max = secs(t.lockout_max_secs, 900, "throttle.lockout_max_secs", base, 86_400)?;
        let default_hashes = service::AuthSettings::default().hash_concurrency as u64;
        let hash_concurrency = secs(t.hash_concurrency, default_hashes, "throttle.hash_concurrency", 1, 256)?;
        let hash_wait_ms = secs(t.hash_wait_ms, 2_000, "throttle.hash_wait_ms", 0, 60_000)?;
        let maint = secs(self.jobs.maintenance_interval_secs, 300, "jobs.maintenance_interval_secs", 1, 86_400)?;
        let rollup = secs(self.jobs.rollup_interval_secs, 30, "jobs.rollup_interval_secs", 1, 3_600)?;
        let poll = secs(self.jobs.poll_interval_secs, 5, "jobs.poll_interval_secs", 1, 3_600)?;
        let heartbeat = secs(self.jobs.heartbeat_secs, 15, "jobs.heartbeat_secs", 1, 600)?;
        let missed = secs(self.jobs.missed_heartbeats, 4, "jobs.missed_heartbeats", 1, 100)?;
        let import_max_bytes = secs(self.import.max_bytes, 200_000_000, "import.max_bytes", 1_000, 10_000_000_000)?;
        let api = ApiSettings {
            rate_per_second: secs(self.api.rate_per_second, 100, "api.rate_per_second", 1, 1_000_000)? as u32,
            burst: secs(self.api.burst, 200, "api.burst", 1, 1_000_000)? as u32,
        };
        let metrics = metrics_settings(&self.metrics, cwd, env)?;
        if metrics.listen.is_some_and(|m| m == listen) {
            return Err(err("metrics.listen must differ from listen"));
        }
        let mail_dkim = dkim_settings(&self.mail, cwd)?;
        let dev_smtp = dev_smtp_settings(&self.mail, cwd)?;
        let recheck = secs(self.mail.domain_recheck_secs, 3600, "mail.domain_recheck_secs", 60, 7 * 86_400)?;
        let domains = domain_settings(&self.mail, chrono::Duration::seconds(recheck as i64))?;
        let mail = mail_settings(self.mail, &listen, cwd, env)?;
        let sf = &self.sending;
        let sending = service::campaigns::SendingSettings {
            slots: secs(sf.slots, 4, "sending.slots", 1, 64)? as u32,
            concurrency: secs(sf.concurrency, 8, "sending.concurrency", 1, 256)? as u32,
            max_batch: secs(sf.max_batch, 200, "sending.max_batch", 1, 5000)? as u32,
            job_secs: secs(sf.job_secs, 30, "sending.job_secs", 1, 3600)?,
            retry: domain::campaigns::RetryPolicy {
                base_secs: secs(sf.retry_base_secs, 60, "sending.retry_base_secs", 1, 86_400)? as u32,
                max_attempts: secs(sf.max_attempts, 6, "sending.max_attempts", 1, 50)? as u32,
                ..domain::campaigns::RetryPolicy::default()
            },
        };
        let d = |s: u64| chrono::Duration::seconds(s as i64);
        let auth = service::AuthSettings {
            idle_timeout: d(idle),
            idle_warning: d(warning),
            absolute_timeout: d(absolute),
            account_max_failures: acct as i32,
            ip_max_failures: ipmax as i32,
            throttle_window: d(window),
            lockout_base: d(base),
            lockout_max: d(max),
            hash_concurrency: hash_concurrency as usize,
            hash_wait: Duration::from_millis(hash_wait_ms),
            ..service::AuthSettings::default()
        };
        let site_root = self.site_root.unwrap_or_else(|| PathBuf::from("target/site"));
        let site_hash_file = match self.site_hash_file.map(|f| if f.is_absolute() { f } else { cwd.join(f) }) {
            Some(f) if f.is_file() => Some(f),
            Some(f) => return Err(err(format!("site_hash_file {} is not a file", f.display()))),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("hash.txt")))
                .filter(|f| f.is_file()),
        };
        Ok(Config {
            root_key,
            previous_root_keys,
            runtime: Runtime {
                database_url,
                listen,
                public_url,
                site_root: if site_root.is_absolute() { site_root } else { cwd.join(site_root) },
                site_hash_file,
                log_format,
                log_level: self.log_level.unwrap_or_else(|| "info".into()),
                trusted_proxies,
                // Each job queue holds one connection for LISTEN/NOTIFY, sending holds a lease
                // connection, and dispatch jobs and web requests share the rest.
                db_max_connections: u32::try_from(secs(
                    self.db_max_connections.map(u64::from),
                    30,
                    "db_max_connections",
                    2,
                    500,
                )?)
                .unwrap_or(30),
                auth,
                totp_issuer: self.totp_issuer.unwrap_or_else(|| "Hermetic".into()),
                jobs: jobs::JobsConfig {
                    maintenance_interval: Duration::from_secs(maint),
                    rollup_interval: Duration::from_secs(rollup),
                    poll_interval: Duration::from_secs(poll),
                    heartbeat_interval: Duration::from_secs(heartbeat),
                    missed_heartbeats: missed as usize,
                },
                mail,
                mail_dkim,
                domains,
                dev_smtp,
                sending,
                import_max_bytes,
                api,
                metrics,
                webhooks: service::config::WebhookSettings {
                    allow_private: self.webhooks.allow_private.unwrap_or(false),
                },
            },
        })
    }
}

fn mail_settings(
    m: MailFile,
    listen: &SocketAddr,
    cwd: &Path,
    env: &[(String, String)],
) -> Result<service::mail::MailSettings, ConfigError> {
    use service::mail::{MailSettings, SmtpSettings, TlsMode};
    let from = m.from.unwrap_or_else(|| {
        format!(
            "Hermetic <no-reply@{}>",
            if listen.ip().is_loopback() { "localhost".to_string() } else { listen.ip().to_string() }
        )
    });
    if !service::mail::valid_mailbox(&from) {
        return Err(err("mail.from: is not an address like Hermetic <no-reply@example.org>"));
    }
    let Some(host) = m.smtp_host.filter(|h| !h.trim().is_empty()) else {
        return Ok(MailSettings::DevMailbox { from });
    };
    let tls = match m.smtp_tls.as_deref().unwrap_or("starttls") {
        "starttls" => TlsMode::StartTls,
        "implicit" => TlsMode::Implicit,
        other => {
            return Err(err(format!(
                "mail.smtp_tls: '{other}' must be starttls or implicit (plaintext SMTP is never used)"
            )));
        }
    };
    let abs = |p: PathBuf| if p.is_absolute() { p } else { cwd.join(p) };
    // The password goes straight into a zeroised buffer and a type that cannot be copied or printed.
    let password = match env.iter().find(|(k, _)| k == "HERMETIC_SMTP_PASSWORD") {
        Some((_, v)) => Some(zeroize::Zeroizing::new(v.clone())),
        None => match m.smtp_password_file {
            Some(p) => {
                let raw = zeroize::Zeroizing::new(
                    std::fs::read_to_string(abs(p.clone()))
                        .map_err(|e| err(format!("mail.smtp_password_file {}: {e}", p.display())))?,
                );
                Some(zeroize::Zeroizing::new(raw.trim().to_string()))
            }
            None => None,
        },
    }
    .map(|p| std::sync::Arc::new(service::mail::SmtpPassword::new(p)));
    if password.is_some() && m.smtp_username.is_none() {
        return Err(err("mail.smtp_username: a password is set but no user name"));
    }
    let ca_pem = match m.smtp_ca_file {
        Some(p) => {
            Some(std::fs::read(abs(p.clone())).map_err(|e| err(format!("mail.smtp_ca_file {}: {e}", p.display())))?)
        }
        None => None,
    };
    Ok(MailSettings::Smtp {
        smtp: SmtpSettings {
            host,
            port: m.smtp_port.unwrap_or(if tls == TlsMode::Implicit { 465 } else { 587 }),
            tls,
            username: m.smtp_username,
            password,
            ca_pem,
            pool_size: m.smtp_pool_size.unwrap_or(8).clamp(1, 64),
            tag_organisation: m.smtp_tag_organisation.unwrap_or(false),
            timeouts: service::mail::smtp::SmtpTimeouts::default(),
        },
        from,
    })
}

fn domain_settings(
    m: &MailFile,
    recheck: chrono::Duration,
) -> Result<service::sending_domains::DomainSettings, ConfigError> {
    let resolver = match m.dns_resolver.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(
                s.parse::<std::net::IpAddr>().map_err(|_| {
                    err("mail.dns_resolver: is not an address like 127.0.0.1:5353 or 192.0.2.53 (port 53)")
                })?,
                53,
            ),
        }),
    };
    let include = match m.spf_include.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        // SPF include targets often start with an underscore label (_spf.relay.example).
        Some(s) => {
            let s = s.trim_end_matches('.').to_ascii_lowercase();
            let labels: Vec<&str> = s.split('.').collect();
            let ok = s.len() <= 253
                && labels.len() >= 2
                && labels.iter().all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err(err("mail.spf_include: is not a domain name (like _spf.relay.example)"));
            }
            Some(s)
        }
        // The relay's own name, when it is a domain name (not an address).
        None => m
            .smtp_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty() && h.parse::<std::net::IpAddr>().is_err())
            .map(|h| h.to_ascii_lowercase()),
    };
    Ok(service::sending_domains::DomainSettings { resolver, spf_include: include, recheck })
}

#[derive(Debug, Clone)]
pub struct DevSmtp {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn dev_smtp_settings(m: &MailFile, cwd: &Path) -> Result<Option<DevSmtp>, ConfigError> {
    let abs = |p: &PathBuf| if p.is_absolute() { p.clone() } else { cwd.join(p) };
    match (&m.dev_smtp_listen, &m.dev_smtp_cert_file, &m.dev_smtp_key_file) {
        (None, None, None) => Ok(None),
        (Some(listen), Some(cert), Some(key)) => {
            let listen: SocketAddr =
                listen.parse().map_err(|_| err("mail.dev_smtp_listen: is not an address like 127.0.0.1:2525"))?;
            if !listen.ip().is_loopback() {
                return Err(err("mail.dev_smtp_listen: the dev SMTP listener only binds a loopback address"));
            }
            Ok(Some(DevSmtp { listen, cert: abs(cert), key: abs(key) }))
        }
        _ => Err(err("mail.dev_smtp_listen, mail.dev_smtp_cert_file and mail.dev_smtp_key_file go together")),
    }
}

fn dkim_settings(m: &MailFile, cwd: &Path) -> Result<Option<std::sync::Arc<service::mail::Dkim>>, ConfigError> {
    match (&m.dkim_selector, &m.dkim_domain, &m.dkim_key_file) {
        (None, None, None) => Ok(None),
        (Some(sel), Some(dom), Some(file)) => {
            let path = if file.is_absolute() { file.clone() } else { cwd.join(file) };
            let pem = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .map_err(|e| err(format!("mail.dkim_key_file {}: {e}", file.display())))?,
            );
            service::mail::Dkim::new(sel.trim(), dom.trim(), &pem)
                .map(|d| Some(std::sync::Arc::new(d)))
                .map_err(|m| err(format!("mail.dkim: {m}")))
        }
        _ => Err(err("mail.dkim_selector, mail.dkim_domain and mail.dkim_key_file go together: set all three or none")),
    }
}

/// The environment variable that may hold the root key (instead of `root_key_file`).
pub const ROOT_KEY_VAR: &str = "HERMETIC_ROOT_KEY";

/// The largest root key file read (a key is 44 characters of base64; whitespace allowed).
const KEY_FILE_MAX: usize = 1024;

/// Load a root key file; refuse one that other users can read. The text is read into one
/// fixed buffer that is zeroized (no reallocation leaves a copy behind).
pub fn load_key_file(path: &Path) -> Result<RootKey, ConfigError> {
    use std::io::Read;
    let named = |e: &dyn std::fmt::Display| err(format!("root key file {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| named(&e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "root key file {} must not be readable by group or others (chmod 600)",
                path.display()
            )));
        }
    }
    let mut file = std::fs::File::open(path).map_err(|e| named(&e))?;
    let mut buf = zeroize::Zeroizing::new([0u8; KEY_FILE_MAX + 1]);
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(named(&e)),
        }
        if len > KEY_FILE_MAX {
            return Err(named(&"is too large to be a root key"));
        }
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| named(&"is not text"))?;
    RootKey::from_encoded(text).map_err(|e| named(&e))
}

/// All settings from the process: `--config` path (or `HERMETIC_CONFIG`), the environment, and the
/// root key text `main` took out of the environment (`HERMETIC_ROOT_KEY`), if any.
pub fn from_process(
    config_path: Option<PathBuf>,
    root_key_text: Option<zeroize::Zeroizing<String>>,
) -> Result<Config, ConfigError> {
    // `main` removed the root key from the environment; a copy here would never be zeroized.
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k != ROOT_KEY_VAR).collect();
    let path = config_path.or_else(|| env.iter().find(|(k, _)| k == "HERMETIC_CONFIG").map(|(_, v)| PathBuf::from(v)));
    let cwd = std::env::current_dir().map_err(|e| err(format!("no working directory: {e}")))?;
    FileConfig::load(path.as_deref(), &env)?.validate_with(&cwd, &env, root_key_text.as_deref().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn environment_overrides_and_validates() {
        let e = env(&[
            ("HERMETIC_DATABASE_URL", "postgres://x@127.0.0.1/db"),
            ("HERMETIC_ROOT_KEY", KEY),
            ("HERMETIC_SESSION__IDLE_TIMEOUT_SECS", "60"),
            ("HERMETIC_SESSION__IDLE_WARNING_SECS", "10"),
            ("HERMETIC_LISTEN", "127.0.0.1:0"),
            ("PATH", "/bin"),
        ]);
        let c = FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).unwrap();
        assert_eq!(c.runtime.auth.idle_timeout, chrono::Duration::seconds(60));
        assert_eq!(c.runtime.listen.port(), 0);
    }

    #[test]
    fn unknown_and_bad_settings_are_named() {
        let e = env(&[("HERMETIC_DATABSE_URL", "postgres://typo")]);
        let msg = FileConfig::load(None, &e).unwrap_err().to_string();
        assert!(msg.contains("databse_url"), "{msg}");

        let e = env(&[("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", KEY), ("HERMETIC_LISTEN", "nope")]);
        let msg = FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).unwrap_err().to_string();
        assert!(msg.contains("listen"), "{msg}");

        let e = env(&[("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", "short")]);
        let msg = FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).unwrap_err().to_string();
        assert!(msg.contains("HERMETIC_ROOT_KEY") && !msg.contains("short"), "{msg}");

        let e = env(&[
            ("DATABASE_URL", "postgres://x/db"),
            ("HERMETIC_ROOT_KEY", KEY),
            ("HERMETIC_SESSION__IDLE_WARNING_SECS", "2000"),
        ]);
        assert!(FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).is_err());
    }

    #[test]
    fn previous_root_keys_come_from_private_files_and_never_repeat() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hermetic-prev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p.display().to_string()
        };
        let other = RootKey::generate().unwrap();
        let a = write("a.key", &other.to_base64(), 0o600);
        let b = write("b.key", &RootKey::generate().unwrap().to_base64(), 0o600);
        let same = write("same.key", KEY, 0o600);
        let open = write("open.key", &RootKey::generate().unwrap().to_base64(), 0o644);
        let big = write("big.key", &"A".repeat(5000), 0o600);
        let base = [("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", KEY)];
        let with = |prev: &str| {
            let mut e = env(&base);
            e.push(("HERMETIC_PREVIOUS_ROOT_KEY_FILES".into(), prev.into()));
            FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e)
        };
        let c = with(&format!("{a}, {b}")).unwrap();
        assert_eq!(c.previous_root_keys.len(), 2);
        assert_eq!(c.previous_root_keys[0].id(), other.id());
        assert!(with(&format!("{a},{a}")).unwrap_err().to_string().contains("repeats"));
        assert!(with(&same).unwrap_err().to_string().contains("repeats"));
        assert!(with(&open).unwrap_err().to_string().contains("chmod 600"));
        let msg = with(&big).unwrap_err().to_string();
        assert!(msg.contains("too large") && !msg.contains("AAAA"), "{msg}");
        assert!(with("/nonexistent/prev.key").is_err());
        // A TOML array in the file.
        let file = dir.join("c.toml");
        std::fs::write(&file, format!("previous_root_key_files = [\"{a}\"]\n")).unwrap();
        let e = env(&base);
        let c = FileConfig::load(Some(&file), &e).unwrap().validate(Path::new("/"), &e).unwrap();
        assert_eq!(c.previous_root_keys.len(), 1);
        assert!(!format!("{c:?}").contains(KEY));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trusted_proxies_replace_trust_proxy_headers() {
        let base = [("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", KEY)];
        let load = |extra: &[(&str, &str)]| {
            let e = env(&[&base[..], extra].concat());
            FileConfig::load(None, &e).and_then(|f| f.validate(Path::new("/"), &e))
        };
        // The old switch stops the process and names its replacement, whatever its value.
        for v in ["true", "false"] {
            let msg = load(&[("HERMETIC_TRUST_PROXY_HEADERS", v)]).unwrap_err().to_string();
            assert!(msg.contains("trust_proxy_headers") && msg.contains("trusted_proxies"), "{msg}");
            assert!(msg.contains("HERMETIC_TRUSTED_PROXIES"), "{msg}");
        }
        let c = load(&[("HERMETIC_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,2001:db8::/32")]).unwrap();
        assert!(c.runtime.trusted_proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(c.runtime.trusted_proxies.trusts("192.0.2.7".parse().unwrap()));
        assert!(!c.runtime.trusted_proxies.trusts("192.0.2.8".parse().unwrap()));
        assert!(load(&[]).unwrap().runtime.trusted_proxies.is_empty(), "nothing is trusted by default");
        for bad in ["10.0.0.0/40", "proxy.internal", "10.0.0.1/8", "*"] {
            let msg = load(&[("HERMETIC_TRUSTED_PROXIES", bad)]).unwrap_err().to_string();
            assert!(msg.contains("trusted_proxies"), "{bad}: {msg}");
        }
        // The file form is a list.
        let dir = std::env::temp_dir().join(format!("hermetic-proxies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        let e = env(&base);
        let c = FileConfig::load(Some(&p), &e).unwrap().validate(Path::new("/"), &e).unwrap();
        assert!(c.runtime.trusted_proxies.trusts("::1".parse().unwrap()));
        std::fs::write(&p, "trust_proxy_headers = true\n").unwrap();
        let msg = FileConfig::load(Some(&p), &e).unwrap().validate(Path::new("/"), &e).unwrap_err().to_string();
        assert!(msg.contains("trusted_proxies"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hashing_bounds_are_validated() {
        let base = [("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", KEY)];
        let e = env(&[
            &base[..],
            &[("HERMETIC_THROTTLE__HASH_CONCURRENCY", "3"), ("HERMETIC_THROTTLE__HASH_WAIT_MS", "250")],
        ]
        .concat());
        let c = FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).unwrap();
        assert_eq!(c.runtime.auth.hash_concurrency, 3);
        assert_eq!(c.runtime.auth.hash_wait, Duration::from_millis(250));
        let e = env(&[&base[..], &[("HERMETIC_THROTTLE__HASH_CONCURRENCY", "0")]].concat());
        assert!(FileConfig::load(None, &e).unwrap().validate(Path::new("/"), &e).is_err());
    }

    #[test]
    fn the_metrics_token_is_a_secret_and_required_for_a_metrics_listener() {
        use std::os::unix::fs::PermissionsExt;
        let base = [("DATABASE_URL", "postgres://x/db"), ("HERMETIC_ROOT_KEY", KEY)];
        let load = |extra: &[(&str, &str)]| {
            let e = env(&[&base[..], extra].concat());
            FileConfig::load(None, &e).and_then(|f| f.validate(Path::new("/"), &e))
        };
        let token = "t0k3n-0123456789-abcdefghijklmnopqrstuvwxyz";
        // Off by default.
        let c = load(&[]).unwrap();
        assert!(c.runtime.metrics.token.is_none() && c.runtime.metrics.listen.is_none());
        // From the environment; kept as a digest, never printed.
        let c = load(&[("HERMETIC_METRICS_TOKEN", token)]).unwrap();
        let t = c.runtime.metrics.token.clone().unwrap();
        assert!(t.matches(token.as_bytes()));
        assert!(!t.matches(&token.as_bytes()[1..]));
        assert!(!t.matches(b""));
        assert!(!format!("{c:?}").contains(token));
        // Short or spaced tokens are refused without echoing them.
        for bad in ["short", "has spaces in it but is long enough to pass the length"] {
            let msg = load(&[("HERMETIC_METRICS_TOKEN", bad)]).unwrap_err().to_string();
            assert!(msg.contains("metrics token") && !msg.contains(bad), "{msg}");
        }
        // Never a plain setting: `metrics.token` is unknown.
        let msg = load(&[("HERMETIC_METRICS__TOKEN", token)]).unwrap_err().to_string();
        assert!(msg.contains("token"), "{msg}");
        // A separate address needs a token, and must not be the web listener.
        let msg = load(&[("HERMETIC_METRICS__LISTEN", "127.0.0.1:9464")]).unwrap_err().to_string();
        assert!(msg.contains("metrics.listen") && msg.contains("token"), "{msg}");
        let c = load(&[("HERMETIC_METRICS__LISTEN", "127.0.0.1:9464"), ("HERMETIC_METRICS_TOKEN", token)]).unwrap();
        assert_eq!(c.runtime.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let msg = load(&[
            ("HERMETIC_METRICS__LISTEN", "127.0.0.1:3000"),
            ("HERMETIC_LISTEN", "127.0.0.1:3000"),
            ("HERMETIC_METRICS_TOKEN", token),
        ])
        .unwrap_err()
        .to_string();
        assert!(msg.contains("metrics.listen"), "{msg}");
        assert!(load(&[("HERMETIC_METRICS__LISTEN", "nowhere"), ("HERMETIC_METRICS_TOKEN", token)]).is_err());
        // From a private file (trailing newline trimmed); a readable one is refused.
        let dir = std::env::temp_dir().join(format!("hermetic-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.token");
        std::fs::write(&p, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = p.display().to_string();
        let c = load(&[("HERMETIC_METRICS__TOKEN_FILE", &file)]).unwrap();
        assert!(c.runtime.metrics.token.unwrap().matches(token.as_bytes()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let msg = load(&[("HERMETIC_METRICS__TOKEN_FILE", &file)]).unwrap_err().to_string();
        assert!(msg.contains("chmod 600") && !msg.contains(token), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_file_must_be_private() {
        let dir = std::env::temp_dir().join(format!("hermetic-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("root.key");
        std::fs::write(&p, KEY).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_key_file(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_key_file(&p).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
