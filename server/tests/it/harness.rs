//! Test harness: a fresh PostgreSQL database per test (cloned from a migrated template), the real
//! server running in-process on port 0, and an HTTP client that keeps cookies and the CSRF token
//! like a browser does.
//!
//! Needs `TEST_DATABASE_URL` pointing at a maintenance database of a disposable cluster
//! (scripts/test starts one). Without it the tests fail loudly rather than skip.

use data_encoding::BASE32_NOPAD;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use server::config::FileConfig;
use service::Services;
use service::clock::{Clock, ManualClock};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ROOT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL must point at a disposable PostgreSQL (run scripts/test)")
}

fn url_for(db: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base.rsplit_once('/').expect("database url has a path");
    format!("{prefix}/{db}")
}

/// The template is named after the schema's fingerprint, so a changed migration never reuses a
/// stale template.
fn template() -> String {
    format!("hermetic_tpl_{}", migration::fingerprint())
}

/// A database of its own, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        // One connection: the session-level advisory lock must be taken and released on the same
        // connection (a pool could hand the unlock to another one and leak the lock).
        let mut opts = sea_orm::ConnectOptions::new(admin_url());
        opts.max_connections(1).min_connections(1).sqlx_logging(false);
        let admin = Database::connect(opts).await.expect("connect to test cluster");
        admin.execute_unprepared("SELECT pg_advisory_lock(727272)").await.unwrap();
        let exists = admin
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT 1 FROM pg_database WHERE datname = '{}'", template()),
            ))
            .await
            .unwrap()
            .is_some();
        if !exists {
            admin.execute_unprepared(&format!("CREATE DATABASE {}", template())).await.unwrap();
            let tpl = Database::connect(url_for(&template())).await.unwrap();
            migration::migrate(&tpl).await.unwrap();
            jobs::setup(tpl.get_postgres_connection_pool()).await.unwrap();
            tpl.close().await.unwrap();
        }
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        admin.execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {}", template())).await.unwrap();
        admin.execute_unprepared("SELECT pg_advisory_unlock(727272)").await.unwrap();
        admin.close().await.unwrap();
        TestDb { url: url_for(&name), name }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        // Statement logging off, as in the server: test queries may quote marker PHI values.
        let mut opts = sea_orm::ConnectOptions::new(self.url.clone());
        opts.sqlx_logging(false);
        Database::connect(opts).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Async drop is not possible; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(admin_url()).await {
                        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                        let _ = admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}

pub struct TestApp {
    pub base: String,
    pub services: Services,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _watchdog: Watchdog,
    /// The DNS server sending domains are checked against (with `Options { dns: true, .. }`).
    pub dns: Option<crate::smtp::DnsServer>,
}

/// Longest a test may hold its server. The slowest tests (the million-row import, ten worker kills)
/// take a few minutes on a 2-core machine.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Ends the whole test run, naming the test, when a test outlives `TEST_LIMIT`. A hung test would
/// otherwise hold the run until CI's own limit, with no word of which test it was.
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    fn start() -> Watchdog {
        let name = std::thread::current().name().unwrap_or("an integration test").to_string();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(TEST_LIMIT) {
                eprintln!("{name} is still running after {} s: it hangs; ending the test run", TEST_LIMIT.as_secs());
                std::process::exit(101);
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Default)]
pub struct Options {
    pub env: Vec<(&'static str, String)>,
    pub workers: bool,
    /// Run a DNS server for sending-domain checks and point the app at it.
    pub dns: bool,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestApp {
        init_log_capture();
        let watchdog = Watchdog::start();
        let db = TestDb::new().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let mut env: Vec<(String, String)> = vec![
            ("HERMETIC_DATABASE_URL".into(), db.url.clone()),
            ("HERMETIC_ROOT_KEY".into(), ROOT_KEY.into()),
            ("HERMETIC_PUBLIC_URL".into(), base.clone()),
            ("HERMETIC_DB_MAX_CONNECTIONS".into(), "12".into()),
        ];
        let dns = opts.dns.then(crate::smtp::DnsServer::start);
        env.extend(dns.iter().flat_map(|d| d.env()).map(|(k, v)| (k.to_string(), v)));
        env.extend(opts.env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let config =
            FileConfig::load(None, &env).unwrap().validate(Path::new(env!("CARGO_MANIFEST_DIR")), &env).unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let (services, runtime) = server::build_services(config, clock.clone()).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let svc = services.clone();
        let workers = opts.workers;
        let handle = tokio::spawn(async move {
            server::serve(listener, svc, runtime, workers, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp { base, services, clock, db, stop: Some(tx), handle: Some(handle), _watchdog: watchdog, dns }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Move time on (sessions, throttles, TOTP steps all follow).
    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    /// A fresh TOTP code for `secret` at the app's current time.
    pub fn totp(&self, secret: &[u8]) -> String {
        let step = service::auth::totp::step_at(self.now().timestamp());
        format!("{:06}", service::auth::totp::code_for_step(secret, step))
    }

    /// Create the organisation and a user of the given role (password `PASSWORD`).
    pub async fn org_with_user(&self, org: &str, email: &str, role: domain::Role) -> domain::ids::OrganisationId {
        let id = service::organisations::create(&self.services, org).await.unwrap();
        self.add_user(id, email, role).await;
        id
    }

    /// Give the organisation a verified sending domain the real way: add it (key and selector
    /// generated), publish the records Hermetic shows in the test's DNS server, verify.
    pub async fn verified_domain(
        &self,
        org: domain::ids::OrganisationId,
        name: &str,
    ) -> domain::sending_domains::SendingDomainView {
        let dns = self.dns.as_ref().expect("start the app with Options { dns: true, .. }");
        let actor = service::Actor::system(org, "test");
        let d = service::sending_domains::add(&self.services, &actor, name).await.unwrap();
        dns.publish(&d.records.iter().map(|r| r.zone_line.clone()).collect::<Vec<_>>());
        let v = service::sending_domains::verify(&self.services, &actor, d.id).await.unwrap();
        assert_eq!(v.status, domain::sending_domains::DomainStatus::Verified, "{:?}", v.checks);
        v
    }

    pub async fn add_user(&self, org: domain::ids::OrganisationId, email: &str, role: domain::Role) {
        service::users::create_with_password(
            &self.services,
            &service::Actor::system(org, "test"),
            email,
            "Test User",
            role,
            PASSWORD,
        )
        .await
        .unwrap();
    }

    /// Sign in through the HTTP API, enrolling MFA on first use. Returns the client and the secret.
    pub async fn sign_in(&self, email: &str, secret: Option<&[u8]>) -> (Client, Vec<u8>) {
        let c = self.client();
        c.page("/login").await;
        let (status, body) = c.call("sign_in", &[("email", email), ("password", PASSWORD)]).await;
        assert_eq!(status, 200, "sign_in: {body}");
        let secret = match body.as_str() {
            Some("enrol_mfa") => {
                let (_, html) = c.page("/login/enrol").await;
                let secret =
                    extract(&html, "data-test=\"totp-secret\" class=\"secret\">", "<").expect("secret on enrol page");
                let secret = BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
                let code = self.totp(&secret);
                let (status, body) = c.call("confirm_enrolment", &[("code", &code)]).await;
                assert_eq!(status, 200, "confirm_enrolment: {body}");
                secret
            }
            Some("mfa") => {
                c.page("/login/mfa").await;
                let secret = secret.expect("this user has MFA: pass its secret").to_vec();
                let code = self.totp(&secret);
                let (status, body) = c.call("verify_mfa", &[("code", &code)]).await;
                assert_eq!(status, 200, "verify_mfa: {body}");
                secret
            }
            other => panic!("unexpected sign-in step {other:?}"),
        };
        c.page("/").await;
        (c, secret)
    }

    pub async fn sql(&self, sql: &str) {
        let db = self.db.connect().await;
        db.execute_unprepared(sql).await.unwrap();
        db.close().await.unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

/// Where every log line of the test run goes: `TEST_LOG_FILE` when set (scripts/test searches
/// it), else a file of this run in the temporary directory, so the PHI checks always have a log.
pub fn log_file() -> std::path::PathBuf {
    match std::env::var_os("TEST_LOG_FILE") {
        Some(p) => p.into(),
        None => std::env::temp_dir().join(format!("hermetic-it-{}.log", std::process::id())),
    }
}

/// Send every log line of the test run (debug level) to [`log_file`], so the PHI checks can prove
/// no log line carries patient data.
pub fn init_log_capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(log_file()) {
            {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::new("debug,hyper=info,h2=info"))
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .try_init();
            }
        }
    });
}

pub fn extract(haystack: &str, after: &str, until: &str) -> Option<String> {
    let start = haystack.find(after)? + after.len();
    let end = haystack[start..].find(until)? + start;
    Some(haystack[start..end].to_string())
}

/// A browser-like client: keeps cookies (including `__Host-` ones, which a real browser accepts on
/// loopback) and sends the page's CSRF token on server-function calls.
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    cookies: Mutex<BTreeMap<String, String>>,
    csrf: Mutex<Option<String>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Client { http, base: base.to_string(), cookies: Mutex::new(BTreeMap::new()), csrf: Mutex::new(None) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&self, headers: &reqwest::header::HeaderMap) {
        let mut jar = self.cookies.lock().unwrap();
        for v in headers.get_all(reqwest::header::SET_COOKIE) {
            let s = v.to_str().unwrap();
            let first = s.split(';').next().unwrap();
            let (k, val) = first.split_once('=').unwrap();
            if s.contains("Max-Age=0") || val.is_empty() {
                jar.remove(k);
            } else {
                jar.insert(k.to_string(), val.to_string());
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn csrf(&self) -> Option<String> {
        self.csrf.lock().unwrap().clone()
    }

    pub fn set_csrf(&self, v: Option<String>) {
        *self.csrf.lock().unwrap() = v;
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[]).await
    }

    /// GET with extra headers (a mail client's User-Agent, say).
    pub async fn get_with(&self, path: &str, extra: &[(&str, &str)]) -> Resp {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        self.absorb(&headers);
        Resp { status, headers, body: r.text().await.unwrap() }
    }

    /// GET a page and remember its CSRF token.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        if let Some(t) = extract(&r.body, "<meta name=\"csrf-token\" content=\"", "\"") {
            self.set_csrf(Some(t));
        }
        (r.status, r.body)
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        csrf: Option<String>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(body);
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        self.absorb(&headers);
        Resp { status, headers, body: r.text().await.unwrap() }
    }

    /// Any method, with the cookies this client holds (the API must ignore them) and extra headers.
    pub async fn send(&self, method: reqwest::Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header("cookie", self.cookie_header()).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        self.absorb(&headers);
        Resp { status, headers, body: r.text().await.unwrap() }
    }

    /// Upload a CSV (raw bytes) the way the import page does.
    pub async fn upload(&self, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/imports/upload", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "text/csv")
            .header("x-csrf-token", self.csrf().unwrap_or_default())
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
    }

    /// Call a server function with form fields, as the app's client does.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let body = form.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&");
        let r = self
            .post_raw(&format!("/api/{endpoint}"), "application/x-www-form-urlencoded", body, self.csrf(), &[])
            .await;
        (r.status, serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body)))
    }

    pub async fn call_json(&self, endpoint: &str, json: serde_json::Value) -> (u16, serde_json::Value) {
        let r =
            self.post_raw(&format!("/api/{endpoint}"), "application/json", json.to_string(), self.csrf(), &[]).await;
        (r.status, serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body)))
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
