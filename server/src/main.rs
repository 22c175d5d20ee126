//! `server`: the Hermetic binary. `serve` (default) runs web and workers; `worker` runs job workers
//! only; `migrate` brings the schema up to date; `admin` holds operator commands.

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::Role;
use server::config::{self, LogFormat};
use server::{ServerError, admin};
use service::clock::SystemClock;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "server", about = "Hermetic: HIPAA-grade email marketing", version)]
struct Cli {
    /// TOML configuration file (also HERMETIC_CONFIG). Environment variables HERMETIC_* override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and run the job workers (the default).
    Serve,
    /// Run only the job workers; several may share one database.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an organisation.
    CreateOrg {
        #[arg(long)]
        name: String,
    },
    /// Create a user with a password (taken from HERMETIC_NEW_USER_PASSWORD, else one line of stdin,
    /// or generated and printed once with --generate-password).
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Organisation name or id (optional when only one exists).
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        generate_password: bool,
    },
    /// Remove a user's authenticator and recovery codes; they enrol again at next sign-in.
    ResetMfa {
        #[arg(long)]
        email: String,
    },
    /// Disable a user and end all their sessions.
    DisableUser {
        #[arg(long)]
        email: String,
    },
    /// Create the demo organisation and its administrator unless they exist (idempotent).
    SeedDemo {
        #[arg(long, default_value = "Demo Health")]
        org_name: String,
        /// Administrator email (also HERMETIC_DEMO_ADMIN_EMAIL).
        #[arg(long, env = "HERMETIC_DEMO_ADMIN_EMAIL", default_value = "admin@demo.hermetic.test")]
        email: String,
    },
    /// Create the demo sequences ("Appointment reminders", "Post-visit survey") and their
    /// templates unless they exist; publish them when the organisation has a verified sending
    /// domain (idempotent).
    SeedSequences {
        /// Organisation name or id (optional when only one exists).
        #[arg(long)]
        org: Option<String>,
    },
    /// Record sample patient events (appointments booked, one cancelled, visits completed) for a
    /// few demo patients, so the demo sequences have enrolments to show.
    DemoEvents {
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 5)]
        patients: usize,
    },
    /// Add a sending domain to an organisation (or take the one it has) and print the DNS records
    /// to publish.
    AddSendingDomain {
        /// Organisation name or id (optional when only one exists).
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        domain: String,
        /// Print only the records, as zone-file lines.
        #[arg(long)]
        zone: bool,
    },
    /// Check a sending domain's DNS records now; exits non-zero unless it is verified.
    VerifySendingDomain {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        domain: String,
    },
    /// Verify every audit chain; exits non-zero if one is broken.
    VerifyAudit,
    /// Give an organisation report history to look at: completed campaigns over the last days,
    /// with deliveries, opens, clicks and unsubscribes (synthetic contacts are added first when it
    /// has fewer than --contacts), then roll them up.
    DemoReports {
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 8)]
        campaigns: usize,
        #[arg(long, default_value_t = 60)]
        days: i64,
        #[arg(long, default_value_t = 120)]
        contacts: usize,
        /// Do nothing when the organisation has campaigns already (for scripts/dev, run each start).
        #[arg(long)]
        if_empty: bool,
    },
    /// Retention of raw events: drop the monthly partitions of engagement and patient events
    /// for months before --before (YYYY-MM). Report figures stay (the rollups are aggregates);
    /// the rows are gone at once, without a delete.
    DropEventMonths {
        #[arg(long)]
        before: String,
        /// Repeat --before to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Bring the hourly report rollups up to date now. With --rebuild, first clear them and roll
    /// up every raw event, delivery and suppression again (the backfill: after a restore, or for
    /// data older than the rollups); --org limits the rebuild to one organisation.
    ReportsRollup {
        #[arg(long)]
        rebuild: bool,
        #[arg(long)]
        org: Option<String>,
    },
    /// Re-wrap every key under the configured root key and make it the current one. Rolling
    /// procedure: give every server and worker the new key as root_key_file and the old one in
    /// previous_root_key_files, run this once, then remove the old key (see docs/operations.md).
    RotateRootKey {
        /// Re-wrap under this key file instead (32 random bytes, base64; mode 0600); every other
        /// process must then be restarted with it.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
    /// Start re-encrypting an organisation's data under a new data key (runs as a background job).
    RotateDataKey {
        #[arg(long)]
        org: Option<String>,
    },
    /// Delete an organisation by destroying its keys (crypto-shredding): its data becomes unreadable.
    DeleteOrg {
        #[arg(long)]
        org: String,
        /// Repeat the organisation's name to confirm.
        #[arg(long)]
        confirm: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

fn read_password(generate: bool) -> anyhow::Result<(String, bool)> {
    if let Ok(p) = std::env::var("HERMETIC_NEW_USER_PASSWORD") {
        return Ok((p, false));
    }
    if generate {
        return Ok((admin::generate_password()?, true));
    }
    eprintln!("Password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
    Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
}

/// Takes the root key out of the process environment. The one place Hermetic uses `unsafe`: the
/// environment is process-global C state that Rust cannot check (a test keeps `unsafe` out of
/// every other file).
#[allow(unsafe_code)]
mod root_key_env {
    use zeroize::Zeroizing;

    #[cfg(unix)]
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }

    /// Read `HERMETIC_ROOT_KEY`, overwrite its value in place in the environment block, and remove
    /// it from the environment. The value in the initial environment block is what
    /// `/proc/<pid>/environ` shows and what children would inherit; removing the variable alone
    /// (`unsetenv`) only unlinks it and leaves the bytes there, so they are zeroed first.
    ///
    /// # Safety
    /// No other thread may be running: the environment is not synchronised.
    pub unsafe fn take() -> Option<Zeroizing<String>> {
        let name = server::config::ROOT_KEY_VAR;
        let value = Zeroizing::new(std::env::var_os(name)?.into_encoded_bytes());
        #[cfg(unix)]
        {
            let cname = c"HERMETIC_ROOT_KEY";
            debug_assert_eq!(cname.to_bytes(), name.as_bytes());
            // SAFETY: single-threaded (the caller's contract). `getenv` returns a pointer to the
            // NUL-terminated value inside the environment block, which the process owns and which
            // is writable (the initial block lies in the process's stack; later ones are heap
            // copies made by setenv). We overwrite exactly the value's bytes up to, not including,
            // its terminator, so the block stays well-formed (the entry becomes `NAME=`).
            unsafe {
                let p = getenv(cname.as_ptr());
                if !p.is_null() {
                    let len = std::ffi::CStr::from_ptr(p).to_bytes().len();
                    for i in 0..len {
                        std::ptr::write_volatile(p.add(i), 0);
                    }
                }
            }
        }
        // SAFETY: single-threaded (the caller's contract); nothing holds a reference into the
        // environment.
        unsafe { std::env::remove_var(name) };
        match std::str::from_utf8(&value) {
            Ok(s) => Some(Zeroizing::new(s.to_string())),
            // Not text: an empty value, which configuration rejects without echoing it.
            Err(_) => Some(Zeroizing::new(String::new())),
        }
    }
}

#[allow(unsafe_code)]
fn main() -> anyhow::Result<()> {
    // SAFETY: first thing in `main`, before the async runtime (or anything else) starts a thread.
    let root_key_text = unsafe { root_key_env::take() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(run(root_key_text))
}

async fn run(root_key_text: Option<zeroize::Zeroizing<String>>) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match config::from_process(cli.config.clone(), root_key_text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hermetic: {e}");
            std::process::exit(2);
        }
    };
    let format = config.runtime.log_format;
    server::telemetry::init(format, &config.runtime.log_level);
    if let Err(e) = dispatch(cli.command.unwrap_or(Command::Serve), config).await {
        if format == LogFormat::Json {
            tracing::error!(error = %e, "hermetic stopped");
        }
        eprintln!("hermetic: {e}");
        std::process::exit(1);
    }
    Ok(())
}

async fn dispatch(command: Command, config: config::Config) -> Result<(), ServerError> {
    match command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.runtime.listen).await?;
            server::run(listener, config, server::shutdown_signal()).await
        }
        Command::Worker => {
            let (svc, rt) = server::build_services(config, Arc::new(SystemClock)).await?;
            tracing::info!("workers running");
            server::work(svc, rt, server::shutdown_signal()).await
        }
        Command::Migrate => {
            server::connect_and_migrate(&config.runtime).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(cmd) => {
            let (svc, _) = server::build_services(config, Arc::new(SystemClock)).await?;
            run_admin(&svc, cmd).await
        }
    }
}

async fn run_admin(svc: &service::Services, cmd: AdminCommand) -> Result<(), ServerError> {
    match cmd {
        AdminCommand::CreateOrg { name } => {
            let id = admin::create_org(svc, &name).await?;
            println!("organisation created: {id}");
        }
        AdminCommand::CreateUser { email, name, role, org, generate_password } => {
            let (password, generated) =
                read_password(generate_password).map_err(|e| ServerError::Service(e.to_string()))?;
            admin::create_user(svc, org.as_deref(), &email, &name, role, &password).await?;
            println!("user created: {email} ({role})");
            if generated {
                println!("password (shown once): {password}");
            }
        }
        AdminCommand::ResetMfa { email } => {
            admin::reset_mfa(svc, &email).await?;
            println!("MFA reset for {email}; their sessions have ended");
        }
        AdminCommand::DisableUser { email } => {
            admin::disable_user(svc, &email).await?;
            println!("{email} disabled; their sessions have ended");
        }
        AdminCommand::SeedDemo { org_name, email } => {
            let (password, generated) = match std::env::var("HERMETIC_DEMO_ADMIN_PASSWORD") {
                Ok(p) => (p, false),
                Err(_) => (admin::generate_password()?, true),
            };
            match service::organisations::seed_demo(svc, &org_name, &email, "Demo Administrator", &password).await? {
                service::organisations::SeedOutcome::Created { .. } => {
                    println!("Demo organisation '{org_name}' created.");
                    println!("  administrator: {email}");
                    if generated {
                        println!("  password (shown once, keep it): {password}");
                    } else {
                        println!("  password: as given in HERMETIC_DEMO_ADMIN_PASSWORD");
                    }
                }
                service::organisations::SeedOutcome::AlreadySeeded { .. } => {
                    println!("Demo organisation '{org_name}' already exists; sign in with its administrator.");
                }
            }
        }
        AdminCommand::RotateRootKey { new_key_file } => {
            let legacy = new_key_file.is_some();
            let (done, lines) = admin::rotate_root_key(svc, new_key_file.as_deref()).await?;
            println!(
                "re-wrapped {} keys under root key {} (previously current: {}).",
                done.rewrapped, done.root_key_id, done.previous_root_key_id
            );
            for line in lines {
                println!("  {line}");
            }
            if legacy {
                println!(
                    "Now set root_key_file (or HERMETIC_ROOT_KEY) to the new key and restart every server and worker."
                );
            } else {
                println!(
                    "Every live key is under the current root key: remove the old key from previous_root_key_files."
                );
            }
        }
        AdminCommand::RotateDataKey { org } => {
            let id = admin::rotate_data_key(svc, org.as_deref()).await?;
            println!(
                "data key rotation {id} started: new data is sealed with the new key now; a background job re-encrypts existing data"
            );
        }
        AdminCommand::DeleteOrg { org, confirm } => {
            let n = admin::delete_org(svc, &org, &confirm).await?;
            println!("organisation deleted: {n} keys destroyed; its encrypted data can no longer be read");
        }
        AdminCommand::SeedSequences { org } => {
            let org = admin::organisation(svc, org.as_deref()).await?;
            for (name, live) in service::sequences::demo::seed(svc, org).await? {
                println!(
                    "sequence '{name}': {}",
                    if live { "live" } else { "draft (verify a sending domain, then run again)" }
                );
            }
        }
        AdminCommand::DemoReports { org, events, campaigns, days, contacts, if_empty } => {
            let org = admin::organisation(svc, org.as_deref()).await?;
            let any: Option<bool> = service::db::scalar(
                svc.db(),
                "SELECT EXISTS (SELECT 1 FROM campaign WHERE organisation_id = $1)",
                [org.0.into()],
            )
            .await
            .map_err(service::ServiceError::from)?;
            if if_empty && any.unwrap_or(false) {
                println!("the organisation has campaigns already: no report history added");
                return Ok(());
            }
            let g = admin::demo_reports(svc, org, events, campaigns, days, contacts).await?;
            println!(
                "{} campaigns, {} deliveries and {} engagement events added; reports show them now",
                g.campaigns.len(),
                g.deliveries,
                g.events
            );
        }
        AdminCommand::DropEventMonths { before, confirm } => {
            if before != confirm {
                return Err(ServerError::Service("--confirm must repeat --before".into()));
            }
            let month = chrono::NaiveDate::parse_from_str(&format!("{before}-01"), "%Y-%m-%d")
                .map_err(|_| ServerError::Service("--before must be a month, YYYY-MM".into()))?;
            let dropped = service::reports::partitions::drop_before(svc, month).await?;
            println!("{} monthly partitions dropped: {}", dropped.len(), dropped.join(", "));
        }
        AdminCommand::ReportsRollup { rebuild, org } => {
            let started = std::time::Instant::now();
            if rebuild {
                let orgs: Vec<uuid::Uuid> = match org.as_deref() {
                    Some(o) => vec![admin::organisation(svc, Some(o)).await?.0],
                    None => service::db::scalars(svc.db(), "SELECT id FROM organisation", [])
                        .await
                        .map_err(service::ServiceError::from)?,
                };
                for o in &orgs {
                    service::reports::rollup::request_rebuild(svc.db(), *o).await?;
                }
            }
            let mut total = service::reports::rollup::RollupRun::default();
            // Another process's rollup may hold the lock: wait for it, then finish the rest.
            loop {
                let r = service::reports::rollup::catch_up(svc, service::reports::rollup::BATCH).await?;
                total.facts += r.facts;
                total.batches += r.batches;
                total.rebuilt_organisations += r.rebuilt_organisations;
                if !service::reports::rollup::behind(svc).await? {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "report rollup: {} facts in {} batches, {} organisations rebuilt, {:.1} s ({:.0} facts/s)",
                total.facts,
                total.batches,
                total.rebuilt_organisations,
                secs,
                total.facts as f64 / secs.max(1e-3)
            );
        }
        AdminCommand::DemoEvents { org, patients } => {
            let org = admin::organisation(svc, org.as_deref()).await?;
            let n = service::sequences::demo::post_events(svc, org, patients).await?;
            println!("{n} patient events recorded; the sequences pick them up within a second");
        }
        AdminCommand::AddSendingDomain { org, domain, zone } => {
            let d = admin::add_sending_domain(svc, org.as_deref(), &domain).await?;
            if zone {
                for r in &d.records {
                    println!("{}", r.zone_line);
                }
            } else {
                println!("sending domain {} ({}): publish these TXT records, then verify:", d.domain, d.status.label());
                for r in &d.records {
                    println!("  {}  {}\n        {}", r.kind.label(), r.name, r.value);
                }
            }
        }
        AdminCommand::VerifySendingDomain { org, domain } => {
            let d = admin::verify_sending_domain(svc, org.as_deref(), &domain).await?;
            for c in &d.checks {
                println!("  {}: {} — {}", c.kind.label(), if c.ok { "ok" } else { "FAILED" }, c.reason);
            }
            if d.status != domain::sending_domains::DomainStatus::Verified {
                return Err(ServerError::Service(format!("{} is not verified: {}", d.domain, d.status.label())));
            }
            println!("{} is verified", d.domain);
        }
        AdminCommand::VerifyAudit => {
            for line in admin::verify_audit(svc).await? {
                println!("{line}");
            }
        }
    }
    Ok(())
}
