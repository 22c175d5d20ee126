//! Benchmarks, run in release mode by `scripts/bench <name> …`. Each prints its figures on the last
//! line as `name key=value …`. Figures are measured here, never asserted in tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectOptions, Database};
use service::clock::SystemClock;
use service::crypto::keyring::{KeyRing, RootKey};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod events;
mod reports;
mod send;
mod sequences;
mod signin;

#[derive(Parser)]
struct Cli {
    /// Needed by the benchmarks that use the database.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an N-row CSV and import it end to end (upload, job, sealed rows in PostgreSQL).
    Import {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
    /// Generate N encrypted contacts (plus 100,000 in a second organisation) and evaluate a segment
    /// with three PHI conditions and two non-PHI ones.
    Segment {
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
    },
    /// Send a campaign to N generated contacts through a worker process over STARTTLS into
    /// `smtp-sink` (behind stunnel), then measure `smtp-source`'s raw rate into the same sink; a
    /// second run for the DKIM figures. Since sending domains, every campaign is signed with its
    /// domain's RSA-2048 key, so both runs sign (the second repeats the first). Driven by
    /// `scripts/bench send`.
    Send {
        #[arg(long, default_value_t = 100_000)]
        recipients: usize,
        #[arg(long)]
        tls_port: u16,
        #[arg(long)]
        sink_port: u16,
        #[arg(long)]
        sink_log: std::path::PathBuf,
        #[arg(long)]
        ca_file: std::path::PathBuf,
        #[arg(long)]
        smtp_source: String,
        #[arg(long)]
        dkim_key: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// Skip the DKIM run (a quicker figure while tuning; the reported benchmark has both).
        #[arg(long)]
        no_dkim: bool,
    },
    /// The sequence engine in a worker process: event → SMTP latency at a sustained event rate,
    /// the send rate of sequence emails against smtp-source's raw rate, and N parked enrolments
    /// coming due at once (step transitions/s, RSS). Driven by `scripts/bench sequences`.
    Sequences {
        /// Enrolments parked on a wait step that all come due at once.
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Patients (real imported contacts) whose sequence step sends.
        #[arg(long, default_value_t = 20_000)]
        senders: usize,
        #[arg(long, default_value_t = 200)]
        event_rate: usize,
        #[arg(long, default_value_t = 20)]
        event_seconds: usize,
        #[arg(long)]
        tls_port: u16,
        #[arg(long)]
        sink_port: u16,
        #[arg(long)]
        sink_log: std::path::PathBuf,
        #[arg(long)]
        ca_file: std::path::PathBuf,
        #[arg(long)]
        smtp_source: String,
        #[arg(long)]
        dkim_key: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 16)]
        connections: u32,
    },
    /// (internal) A send worker process for `send`: the real job runtime with an SMTP relay.
    Worker {
        #[arg(long)]
        smtp_port: u16,
        #[arg(long)]
        ca_file: std::path::PathBuf,
        #[arg(long)]
        dkim_key: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 16)]
        connections: u32,
    },
    /// Analyst reports: N engagement events over --campaigns campaigns and --sequences sequences, the rollup's catch-up
    /// rate, then the overview, comparison and drill-down through the release server's real
    /// endpoints (p95 of each). Driven by `scripts/bench reports`.
    Reports {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 200)]
        campaigns: usize,
        /// Three-email sequences (a tenth of the events go to their emails).
        #[arg(long, default_value_t = 20)]
        sequences: usize,
        /// Overview and drill-down requests (and a quarter as many comparisons).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Pending facts per rollup transaction (the job's own size by default).
        #[arg(long, default_value_t = service::reports::rollup::BATCH)]
        batch: i64,
        /// Then time the rollup of the same (rebuilt) queue in one lane and in all lanes.
        #[arg(long)]
        reference: bool,
        /// Then rebuild the queue and catch it up once per size listed (all lanes), alternating
        /// as given (e.g. 200000,100000,200000,100000): batch sizes compared in one run, each
        /// size's median rate printed.
        #[arg(long, value_delimiter = ',')]
        compare_batches: Vec<i64>,
        #[arg(long)]
        server_bin: std::path::PathBuf,
    },
    /// N simultaneous anonymous sign-ins (wrong passwords, real and unknown accounts) against the
    /// release server in its own process: its peak memory, the answers, latency. Driven by
    /// `scripts/bench signin`.
    Signin {
        #[arg(long, default_value_t = 300)]
        concurrency: usize,
        #[arg(long, default_value_t = 100)]
        accounts: usize,
        /// The `server` binary to start.
        #[arg(long)]
        server_bin: std::path::PathBuf,
    },
    /// The patient-event API over real HTTP against the release server in its own process:
    /// batches of 500, then single events from 64 clients. Driven by `scripts/bench events`.
    Events {
        /// Events sent in batches.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Single events (default: a tenth of --events).
        #[arg(long)]
        single: Option<usize>,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Connections sending batches at once.
        #[arg(long, default_value_t = 4)]
        batch_clients: usize,
        /// Clients sending single events at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Patients the events are about (imported first).
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        /// Use a key that requires signed requests (every request carries Hermetic-Signature).
        #[arg(long)]
        signed: bool,
        /// The `server` binary to start.
        #[arg(long)]
        server_bin: std::path::PathBuf,
    },
    /// Render a realistic ~15 KB newsletter personalised for generated contacts, on one core.
    Render {
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

/// Raw AES-256-GCM-SIV seal rate of one core for 200-byte records.
fn seal_rate() -> f64 {
    use service::crypto::seal::Aad;
    let key = service::crypto::keyring::DataKey::for_benchmark([7u8; 32]);
    let org = domain::ids::OrganisationId::new();
    let row = uuid::Uuid::now_v7();
    let record = [42u8; 200];
    let aad = Aad { organisation: org, table: "contact", column: "email", row };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            std::hint::black_box(key.seal(&aad, &record).unwrap());
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn services(url: &str) -> Result<service::Services> {
    services_with(url, service::mail::MailSettings::DevMailbox { from: "Bench <bench@localhost>".into() }, None, 30)
        .await
}

async fn services_with(
    url: &str,
    mail: service::mail::MailSettings,
    dkim: Option<Arc<service::mail::Dkim>>,
    max_connections: u32,
) -> Result<service::Services> {
    let mut opt = ConnectOptions::new(url.to_string());
    opt.max_connections(max_connections).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    migration::migrate(&db).await?;
    jobs::setup(db.get_postgres_connection_pool()).await?;
    let settings = service::Settings {
        auth: service::AuthSettings::default(),
        import_max_bytes: 10_000_000_000,
        mail,
        mail_dkim: dkim,
        // Sending domains are verified against the local DNS server scripts/bench runs.
        domains: service::sending_domains::DomainSettings {
            resolver: std::env::var("BENCH_DNS").ok().and_then(|s| s.parse().ok()),
            ..Default::default()
        },
        sending: service::campaigns::SendingSettings::default(),
        public_url: "http://127.0.0.1".into(),
        totp_issuer: "Hermetic".into(),
        webhooks: service::config::WebhookSettings::default(),
    };
    let svc = service::Services::new(db, Arc::new(SystemClock), KeyRing::new(root_key()?), settings)?;
    // As the server does at start: record (or check) the root key this database is sealed under;
    // the key ring refuses to wrap or open keys before that.
    svc.keys().establish(svc.db(), svc.clock()).await.context("establishing the root key")?;
    Ok(svc)
}

/// The run's root key: generated once per benchmark process and handed to its worker processes
/// (`BENCH_ROOT_KEY`), so they can open what the parent sealed.
fn root_key() -> Result<RootKey> {
    Ok(RootKey::from_encoded(&root_key_text()?)?)
}

pub(crate) fn root_key_text() -> Result<String> {
    static ROOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(k) = ROOT.get() {
        return Ok(k.clone());
    }
    let k = match std::env::var("BENCH_ROOT_KEY") {
        Ok(k) => k,
        Err(_) => RootKey::generate()?.to_base64().to_string(),
    };
    Ok(ROOT.get_or_init(|| k).clone())
}

async fn import(url: &str, rows: usize) -> Result<()> {
    let svc = services(url).await?;
    let org = service::organisations::create(&svc, &format!("Bench {}", uuid::Uuid::now_v7())).await?;
    let actor = service::Actor::system(org, "bench");
    let list = service::contacts::lists::create(
        &svc,
        &actor,
        "Newsletter",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await?;

    let path = std::env::temp_dir().join(format!("hermetic-bench-{}.csv", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "email,first_name,last_name,phone,date_of_birth,time_zone")?;
        for i in 0..rows {
            writeln!(
                f,
                "patient{i}@bench.example,First{i},Last{i},+1555{:07},19{:02}-{:02}-{:02},America/New_York",
                i % 10_000_000,
                30 + i % 70,
                1 + i % 12,
                1 + i % 28
            )?;
        }
    }
    let bytes = std::fs::metadata(&path)?.len();
    eprintln!("generated {rows} rows ({:.1} MB)", bytes as f64 / 1e6);
    let seal_per_s = seal_rate();

    let started = Instant::now();
    let file = tokio::fs::File::open(&path).await?;
    let stream = tokio_util_stream(file);
    let up = service::contacts::import::upload(&svc, &actor, stream, 10_000_000_000).await.context("upload")?;
    let uploaded = started.elapsed();
    let opts = domain::contacts::ImportOptions {
        mapping: ["email", "first_name", "last_name", "phone", "date_of_birth", "time_zone"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect(),
        dedupe: domain::contacts::Dedupe::Update,
        list_ids: vec![list],
        consent_purpose: Some(domain::contacts::ConsentPurpose::Marketing),
        consent_text: Some("I agree to receive news by email.".into()),
    };
    service::contacts::import::start(&svc, &actor, up.id, opts).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = jobs::JobsConfig { poll_interval: Duration::from_millis(200), ..jobs::JobsConfig::default() };
    let workers = tokio::spawn(jobs::run(svc.clone(), cfg, stop_rx));
    let view = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = service::contacts::import::status(&svc, &actor, up.id).await?;
        if v.finished() {
            break v;
        }
    };
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = workers.await;
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(view.status == "completed", "import ended {}: {:?}", view.status, view.failure);
    let stored = service::db::one_as::<service::db::Count, _>(
        svc.db(),
        "SELECT count(*) AS n FROM contact WHERE organisation_id = $1",
        [org.0.into()],
    )
    .await?
    .map(|r| r.n)
    .unwrap_or(0);
    anyhow::ensure!(stored == rows as i64, "expected {rows} contacts, found {stored}");
    eprintln!(
        "upload {:.1}s, total {:.1}s; created {} updated {} failed {}",
        uploaded.as_secs_f64(),
        elapsed.as_secs_f64(),
        view.rows_created,
        view.rows_updated,
        view.rows_failed
    );
    println!(
        "import rows={rows} rows_per_s={:.0} peak_rss_mb={:.0} seal_per_s={:.0}",
        rows as f64 / elapsed.as_secs_f64(),
        signin::vm_hwm_mb(std::process::id()),
        seal_per_s
    );
    Ok(())
}

/// Import `rows` generated contacts into the actor's organisation through the real import path.
async fn load_contacts(svc: &service::Services, actor: &service::Actor, rows: usize, tag: &str) -> Result<()> {
    load_contacts_into(svc, actor, rows, tag, None).await
}

/// Import `rows` generated contacts (with marketing consent), optionally into a list.
async fn load_contacts_into(
    svc: &service::Services,
    actor: &service::Actor,
    rows: usize,
    tag: &str,
    list: Option<uuid::Uuid>,
) -> Result<()> {
    let path = std::env::temp_dir().join(format!("hermetic-bench-{}-{tag}.csv", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "email,first_name,last_name,date_of_birth,time_zone,locale,plan")?;
        let plans = ["Gold", "Silver", "Bronze"];
        let locales = ["en", "es", "en"];
        for i in 0..rows {
            writeln!(
                f,
                "patient{i}.{tag}@bench.example,First{i},Last{i},19{:02}-{:02}-{:02},America/New_York,{},{}",
                30 + i % 70,
                1 + (i / 28) % 12,
                1 + i % 28,
                locales[i % 3],
                plans[i % 3]
            )?;
        }
    }
    let file = tokio::fs::File::open(&path).await?;
    let up = service::contacts::import::upload(svc, actor, tokio_util_stream(file), 10_000_000_000).await?;
    let opts = domain::contacts::ImportOptions {
        // The "plan" column maps to the segment benchmark's custom field; the send benchmark's
        // organisation has none, so the column is skipped there.
        mapping: ["email", "first_name", "last_name", "date_of_birth", "time_zone", "locale", "plan"]
            .iter()
            .map(|s| (list.is_none() || *s != "plan").then(|| s.to_string()))
            .collect(),
        dedupe: domain::contacts::Dedupe::Update,
        list_ids: list.into_iter().collect(),
        consent_purpose: Some(domain::contacts::ConsentPurpose::Marketing),
        consent_text: Some("I agree to receive news by email.".into()),
    };
    service::contacts::import::start(svc, actor, up.id, opts).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = jobs::JobsConfig { poll_interval: Duration::from_millis(200), ..jobs::JobsConfig::default() };
    let workers = tokio::spawn(jobs::run(svc.clone(), cfg, stop_rx));
    let view = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = service::contacts::import::status(svc, actor, up.id).await?;
        if v.finished() {
            break v;
        }
    };
    let _ = stop_tx.send(true);
    let _ = workers.await;
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(view.status == "completed", "import ended {}: {:?}", view.status, view.failure);
    Ok(())
}

async fn segment(url: &str, contacts: usize) -> Result<()> {
    use domain::segments::{Condition, FieldTest, Node};
    let svc = services(url).await?;
    let field =
        |key: &str, test: FieldTest| Node::Condition { condition: Condition::Field { field: key.into(), test } };
    // Two non-PHI conditions (SQL) and three PHI ones (decrypted): English-speaking Gold/Silver
    // patients whose first name starts with "First1" or last name contains "7", with a birthday
    // in the next 30 days.
    let root = Node::And {
        children: vec![
            field("locale", FieldTest::TextEquals { value: "en".into() }),
            field("plan", FieldTest::OneOf { values: vec!["Gold".into(), "Silver".into()] }),
            Node::Or {
                children: vec![
                    field("first_name", FieldTest::TextStartsWith { value: "First1".into() }),
                    field("last_name", FieldTest::TextContains { value: "7".into() }),
                ],
            },
            field("date_of_birth", FieldTest::AnniversaryWithinNextDays { days: 30 }),
        ],
    };
    let def = domain::segments::SegmentDefinition { version: domain::segments::FORMAT_VERSION, root };
    let mut orgs = vec![];
    for (rows, tag) in [(contacts, "n"), (100_000, "k")] {
        let org = service::organisations::create(&svc, &format!("Bench {tag} {}", uuid::Uuid::now_v7())).await?;
        let actor = service::Actor::system(org, "bench");
        service::contacts::fields::create(
            &svc,
            &actor,
            "plan",
            "Plan",
            domain::contacts::FieldType::OneOf,
            vec!["Gold".into(), "Silver".into(), "Bronze".into()],
            false,
        )
        .await?;
        let started = Instant::now();
        load_contacts(&svc, &actor, rows, tag).await?;
        eprintln!("generated {rows} encrypted contacts in {:.1}s", started.elapsed().as_secs_f64());
        orgs.push(actor);
    }
    service::db::exec(svc.db(), "VACUUM ANALYZE contact", []).await?;
    // Warm-up (keys unwrapped, plans cached), then the measured runs (best of three).
    let mut best = (f64::MAX, 0u64, service::segments::eval::ScanStats::default());
    for run in 0..4 {
        let catalogue = service::contacts::fields::catalogue(&svc, svc.db(), orgs[0].organisation_id).await?;
        let fields = domain::segments::field_catalogue(&catalogue);
        let started = Instant::now();
        let (n, stats) = service::segments::eval::count(
            &svc,
            orgs[0].organisation_id,
            &def.root,
            &fields,
            catalogue,
            svc.clock().now(),
        )
        .await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "run {run}: {n} of {contacts} match in {ms:.0} ms ({} rows after the SQL prefilter, {} decryptions)",
            stats.scanned, stats.decrypted
        );
        if run > 0 && ms < best.0 {
            best = (ms, n, stats);
        }
    }
    let mut count_ms = f64::MAX;
    for _ in 0..4 {
        let started = Instant::now();
        let c = service::segments::count(&svc, &orgs[1], &def).await?;
        count_ms = count_ms.min(started.elapsed().as_secs_f64() * 1000.0);
        eprintln!("live count over 100,000: {:?} in {:.0} ms", c.matching, started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "segment contacts={contacts} eval_ms={:.0} count100k_ms={count_ms:.0} decrypt_per_s={:.0}",
        best.0,
        best.2.decrypted as f64 / (best.0 / 1000.0)
    );
    Ok(())
}

/// One core renders the newsletter for contacts in turn, each from its own data (as the sender
/// builds it from a decrypted record), until the time is up.
fn render(contacts: usize, seconds: u64) -> Result<()> {
    use service::templates::{MergeFields, Sandbox, TemplateParts};
    let html = include_str!("newsletter.hbs");
    let sandbox = Sandbox::new();
    let fields = MergeFields::new(&[]);
    let text = "Hello {{default contact.first_name \"there\"}},\n\nHere is this month's news from {{organisation.name}}.\n\nPreferences: {{links.preferences}}\nUnsubscribe: {{links.unsubscribe}}\n";
    let checked = sandbox
        .check(
            TemplateParts {
                subject: "News from {{organisation.name}}",
                preheader: "Health news and events",
                html,
                text,
            },
            &fields,
        )
        .map_err(|e| anyhow::anyhow!("the benchmark template was refused: {e}"))?;
    let zones = ["America/New_York", "America/Chicago", "Europe/London", ""];
    let people: Vec<serde_json::Value> = (0..contacts)
        .map(|i| {
            serde_json::json!({
                "contact": {
                    "email": format!("patient{i}@bench.example"),
                    "first_name": if i % 10 == 0 { serde_json::Value::Null } else { format!("First{i}").into() },
                    "last_name": format!("Last{i}"),
                    "phone": format!("+1555{:07}", i),
                    "date_of_birth": format!("19{:02}-{:02}-{:02}", 30 + i % 70, 1 + i % 12, 1 + i % 28),
                    "time_zone": zones[i % zones.len()],
                    "locale": if i % 3 == 0 { serde_json::Value::Null } else { "en".into() },
                },
                "organisation": { "name": "Riverside Health" },
                "links": {
                    "unsubscribe": format!("https://hermetic.example/u/{}", uuid::Uuid::new_v4().simple()),
                    "view_in_browser": format!("https://hermetic.example/v/{}", uuid::Uuid::new_v4().simple()),
                    "preferences": format!("https://hermetic.example/p/{}", uuid::Uuid::new_v4().simple()),
                }
            })
        })
        .collect();
    let budget = Duration::from_secs(seconds);
    let started = Instant::now();
    let (mut n, mut bytes) = (0usize, 0usize);
    while started.elapsed() < budget {
        for _ in 0..1000 {
            let p = &people[n % people.len()];
            let r = sandbox
                .render(&checked, domain::Phi::new(p.clone()))
                .map_err(|e| anyhow::anyhow!("render failed: {e}"))?;
            bytes += r.html.expose().len() + r.text.expose().len();
            n += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("template {} bytes; {n} renders in {elapsed:.1}s", html.len());
    println!("render renders_per_s={:.0} bytes={}", n as f64 / elapsed, bytes / n.max(1));
    Ok(())
}

/// Read a file as a stream of 256 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Vec<u8>, service::ServiceError>> + Unpin + Send {
    use tokio::io::AsyncReadExt;
    Box::pin(futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(_) => Some((Err(service::ServiceError::internal("read failed")), f)),
        }
    }))
}

/// One float column of a query with one uuid parameter.
async fn query_f64s(svc: &service::Services, sql: &str, param: uuid::Uuid) -> Result<Vec<f64>> {
    use sea_orm::ConnectionTrait;
    let rows = svc
        .db()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, [param.into()]))
        .await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<Option<f64>>("", "v").ok().flatten()).collect())
}

/// About the size of one campaign message (body parts plus headers, tracking and MIME).
async fn sample_message_bytes(svc: &service::Services, actor: &service::Actor, template: uuid::Uuid) -> Result<usize> {
    let e = service::templates::store::editor(svc, actor, template, None).await?;
    Ok(e.content.html.len() + e.content.text.len() + 2500)
}

/// The worker process of `send`: jobs with a real SMTP relay until SIGTERM.
async fn worker(
    url: &str,
    smtp_port: u16,
    ca_file: &std::path::Path,
    dkim_key: Option<&std::path::Path>,
    connections: u32,
) -> Result<()> {
    let smtp = service::mail::SmtpSettings {
        host: "localhost".into(),
        port: smtp_port,
        tls: service::mail::TlsMode::StartTls,
        username: None,
        password: None,
        ca_pem: Some(std::fs::read(ca_file)?),
        pool_size: connections,
        tag_organisation: false,
        timeouts: service::mail::smtp::SmtpTimeouts::default(),
    };
    let dkim = match dkim_key {
        Some(k) => Some(Arc::new(
            service::mail::Dkim::new("bench", "bench.example", &std::fs::read_to_string(k)?)
                .map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let mail = service::mail::MailSettings::Smtp { smtp, from: "Bench <bench@bench.example>".into() };
    let svc = services_with(url, mail, dkim, 30).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = jobs::JobsConfig { poll_interval: Duration::from_millis(200), ..jobs::JobsConfig::default() };
    let run = tokio::spawn(jobs::run(svc, cfg, stop_rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    let _ = stop_tx.send(true);
    let _ = run.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Import { rows } => {
            import(cli.database_url.as_deref().context("--database-url is required")?, rows).await
        }
        Command::Render { contacts, seconds } => render(contacts, seconds),
        Command::Worker { smtp_port, ca_file, dkim_key, connections } => {
            worker(
                cli.database_url.as_deref().context("--database-url is required")?,
                smtp_port,
                &ca_file,
                dkim_key.as_deref(),
                connections,
            )
            .await
        }
        Command::Send {
            recipients,
            tls_port,
            sink_port,
            sink_log,
            ca_file,
            smtp_source,
            dkim_key,
            connections,
            no_dkim,
        } => {
            let a = send::SendArgs {
                url: cli.database_url.clone().context("--database-url is required")?,
                recipients,
                tls_port,
                sink_port,
                sink_log,
                ca_file,
                smtp_source,
                dkim_key: dkim_key.filter(|_| !no_dkim),
                connections,
            };
            let plain = send::run_once(&a, false).await?;
            // The raw rate is measured twice on an idle database, after each run, and the higher
            // figure is the one compared with (the conservative choice: smtp-source's rate on
            // this shared machine varies from run to run).
            send::quiesce(&a).await?;
            let raw_first = send::raw_rate(&a, plain.message_bytes)?;
            eprintln!("raw smtp-source rate with {} byte messages: {raw_first:.0}/s", plain.message_bytes);
            let signed = if a.dkim_key.is_some() { Some(send::run_once(&a, true).await?) } else { None };
            send::quiesce(&a).await?;
            let raw_second = send::raw_rate(&a, plain.message_bytes)?;
            eprintln!("raw smtp-source rate, second measurement: {raw_second:.0}/s");
            let raw = raw_first.max(raw_second);
            let mut line = format!(
                "send recipients={recipients} rate={:.0} raw={raw:.0} ratio={:.2} rss_mb={:.0} lost={} dup={} window_ms_max={:.1} window_ms_p99={:.1}",
                plain.rate,
                plain.rate / raw,
                plain.rss_mb,
                plain.lost,
                plain.dup,
                plain.window_ms_max,
                plain.window_ms_p99
            );
            line.push_str(&format!(
                " cpu_s_per_k={:.2} worker_cpu_s_per_k={:.2} db_cpu_s_per_k={:.2} steal_pct={:.0} first_s={:.1}",
                plain.cpu_s_per_k, plain.worker_cpu_s_per_k, plain.db_cpu_s_per_k, plain.steal_pct, plain.first_s
            ));
            if let Some(d) = signed {
                line.push_str(&format!(
                    " dkim_rate={:.0} dkim_ratio={:.2} dkim_rss_mb={:.0} dkim_lost={} dkim_dup={}",
                    d.rate,
                    d.rate / raw,
                    d.rss_mb,
                    d.lost,
                    d.dup
                ));
            }
            println!("{line}");
            Ok(())
        }
        Command::Sequences {
            contacts,
            senders,
            event_rate,
            event_seconds,
            tls_port,
            sink_port,
            sink_log,
            ca_file,
            smtp_source,
            dkim_key,
            connections,
        } => {
            anyhow::ensure!(contacts > 0 && senders > 0 && event_rate > 0, "counts must be positive");
            sequences::run(sequences::SeqArgs {
                send: send::SendArgs {
                    url: cli.database_url.clone().context("--database-url is required")?,
                    recipients: senders,
                    tls_port,
                    sink_port,
                    sink_log,
                    ca_file,
                    smtp_source,
                    dkim_key,
                    connections,
                },
                contacts,
                senders,
                event_rate,
                event_seconds,
            })
            .await
        }
        Command::Signin { concurrency, accounts, server_bin } => {
            signin::run(signin::SigninArgs {
                url: cli.database_url.clone().context("--database-url is required")?,
                server_bin,
                concurrency,
                accounts,
            })
            .await
        }
        Command::Events { events, single, batch, batch_clients, concurrency, contacts, signed, server_bin } => {
            anyhow::ensure!((1..=1000).contains(&batch), "--batch must be 1 to 1,000 (the API's limit)");
            anyhow::ensure!(contacts > 0 && batch_clients > 0 && concurrency > 0, "counts must be positive");
            events::run(events::EventsArgs {
                url: cli.database_url.clone().context("--database-url is required")?,
                server_bin,
                events,
                single: single.unwrap_or(events / 10),
                batch,
                batch_clients,
                concurrency,
                contacts,
                signed,
            })
            .await
        }
        Command::Reports { events, campaigns, sequences, requests, batch, reference, compare_batches, server_bin } => {
            anyhow::ensure!(
                events > 0
                    && (1..=1000).contains(&campaigns)
                    && sequences <= 100
                    && std::iter::once(&batch).chain(&compare_batches).all(|b| (1..=10_000_000).contains(b)),
                "--events > 0, --campaigns 1..1000, --sequences 0..100, --batch and --compare-batches 1..10000000"
            );
            reports::run(reports::ReportsArgs {
                url: cli.database_url.clone().context("--database-url is required")?,
                server_bin,
                events,
                campaigns,
                sequences,
                requests,
                batch,
                reference,
                compare_batches,
            })
            .await
        }
        Command::Segment { contacts } => {
            segment(cli.database_url.as_deref().context("--database-url is required")?, contacts).await
        }
    }
}
