//! `send`: a campaign to N generated contacts through a separate worker process (the real `jobs`
//! runtime) over STARTTLS (stunnel in front of Postfix `smtp-sink`), compared with `smtp-source`'s
//! raw rate into the same sink with the same message size. Reports the worker's peak RSS, lost and
//! duplicated messages (from the sink's own counter) and the duplicate window.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SendArgs {
    pub url: String,
    pub recipients: usize,
    pub tls_port: u16,
    pub sink_port: u16,
    pub sink_log: PathBuf,
    pub ca_file: PathBuf,
    pub smtp_source: String,
    pub dkim_key: Option<PathBuf>,
    pub connections: u32,
}

/// The sink's message counter (`smtp-sink -c` prints `sess=… quit=… mesg=N` with carriage returns).
pub(crate) fn sink_count(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.rsplit("mesg=")
        .next()
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far (`/proc/<pid>/stat` fields 14 and 15,
/// in USER_HZ = 100 ticks).
pub(crate) fn process_cpu_s(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After ")": state (not a number, skipped by the parse), then fields 4.. — utime is field 14.
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

/// CPU seconds used so far by every PostgreSQL process of the machine (the benchmark's private
/// cluster: its backends live as long as the pools' connections, so a run's work is counted).
pub(crate) fn postgres_cpu_s() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() == "postgres").unwrap_or(false)
        })
        .map(process_cpu_s)
        .sum()
}

pub(crate) fn spawn_worker(a: &SendArgs, dkim: bool) -> Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--database-url")
        .arg(&a.url)
        .arg("worker")
        .arg("--smtp-port")
        .arg(a.tls_port.to_string())
        .arg("--ca-file")
        .arg(&a.ca_file)
        .arg("--connections")
        .arg(a.connections.to_string());
    if dkim && let Some(k) = &a.dkim_key {
        cmd.arg("--dkim-key").arg(k);
    }
    cmd.env("BENCH_ROOT_KEY", crate::root_key_text()?);
    Ok(cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?)
}

/// The machine's busy and stolen CPU time so far, in seconds (the first line of /proc/stat: user,
/// nice, system, idle, iowait, irq, softirq, steal; USER_HZ = 100).
fn cpu_times() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> =
        text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0) / 100.0;
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

pub struct RunResult {
    pub rate: f64,
    /// Busy CPU seconds of the whole machine (worker, database, TLS proxy, sink) per 1,000 messages.
    pub cpu_s_per_k: f64,
    /// The worker process's own CPU seconds per 1,000 messages (the rest of `cpu_s_per_k` is the
    /// database, the TLS proxy and the sink).
    pub worker_cpu_s_per_k: f64,
    /// PostgreSQL's CPU seconds per 1,000 messages (its processes alive at the end of the run).
    pub db_cpu_s_per_k: f64,
    /// CPU time the hypervisor took from this machine during the run, as a share of its cores.
    pub steal_pct: f64,
    /// Seconds from launch to the first message accepted (audience resolution included).
    pub first_s: f64,
    pub rss_mb: f64,
    pub lost: u64,
    pub dup: i64,
    pub window_ms_max: f64,
    pub window_ms_p99: f64,
    pub message_bytes: usize,
}

/// One campaign run (with or without DKIM) on freshly loaded contacts.
/// Diagnostic (HERMETIC_BENCH_PG_STATEMENTS=1 with
/// PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements"): which statements
/// the database spent its time on during the send.
async fn statements_reset(svc: &service::Services) -> Result<()> {
    use sea_orm::ConnectionTrait;
    svc.db().execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public").await?;
    svc.db().execute_unprepared("SELECT public.pg_stat_statements_reset()").await?;
    Ok(())
}

async fn statements_print(svc: &service::Services) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let rows = svc
        .db()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT calls, total_exec_time::float8 AS ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS q
             FROM public.pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15",
        ))
        .await?;
    for r in rows {
        let calls: i64 = r.try_get("", "calls")?;
        let ms: f64 = r.try_get("", "ms")?;
        let n: i64 = r.try_get("", "rows")?;
        let q: String = r.try_get("", "q")?;
        eprintln!("pg {ms:>9.0} ms {calls:>7} calls {n:>8} rows  {q}");
    }
    Ok(())
}

/// A sending domain of the organisation, added the real way and verified against the DNS server
/// scripts/bench runs (BENCH_DNS, zone file BENCH_DNS_ZONE): messages go only From a verified one.
pub(crate) async fn bench_domain(svc: &service::Services, actor: &service::Actor) -> Result<String> {
    let domain = format!("run-{}.bench.example", uuid::Uuid::now_v7().simple());
    let d = service::sending_domains::add(svc, actor, &domain).await.context("adding the sending domain")?;
    let zone = std::env::var("BENCH_DNS_ZONE").context("BENCH_DNS_ZONE: run it through scripts/bench send")?;
    let mut text = std::fs::read_to_string(&zone).unwrap_or_default();
    for r in &d.records {
        text.push_str(&r.zone_line);
        text.push('\n');
    }
    std::fs::write(&zone, text)?;
    let v = service::sending_domains::verify(svc, actor, d.id).await.context("verifying the sending domain")?;
    anyhow::ensure!(
        v.status == domain::sending_domains::DomainStatus::Verified,
        "the bench sending domain did not verify: {:?}",
        v.checks
    );
    Ok(domain)
}

pub async fn run_once(a: &SendArgs, dkim: bool) -> Result<RunResult> {
    use domain::campaigns::*;
    let svc = crate::services(&a.url).await?;
    let org = service::organisations::create(&svc, &format!("Send bench {}", uuid::Uuid::now_v7()))
        .await
        .context("creating the organisation")?;
    let actor = service::Actor::system(org, "bench");
    let domain = bench_domain(&svc, &actor).await?;
    let list = service::contacts::lists::create(
        &svc,
        &actor,
        "All patients",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .context("creating the list")?;
    eprintln!("loading {} contacts", a.recipients);
    crate::load_contacts_into(&svc, &actor, a.recipients, "send", Some(list)).await?;
    let template = service::templates::store::create(&svc, &actor, "Newsletter", Some("newsletter")).await?;
    let settings = CampaignSettings {
        name: format!("Bench {}", if dkim { "DKIM" } else { "plain" }),
        purpose: domain::contacts::ConsentPurpose::Marketing,
        audience: Audience { segments: vec![], lists: vec![list] },
        template_id: Some(template),
        from_name: "Bench Clinic".into(),
        from_email: format!("news@{domain}"),
        reply_to: None,
        policy: DeliveryPolicy::TlsRequired,
        schedule: Schedule::Now,
        throttle: Throttle { per_second: Throttle::MAX_PER_SECOND, per_domain_per_minute: None },
        auto_pause: AutoPause { after_consecutive_errors: 1000 },
    };
    let campaign = service::campaigns::create(&svc, &actor, &settings).await?;
    let before = sink_count(&a.sink_log);
    let mut worker = spawn_worker(a, dkim)?;
    let pid = worker.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (busy0, steal0) = cpu_times();
    let worker0 = process_cpu_s(pid);
    let db0 = postgres_cpu_s();
    let profile = std::env::var_os("HERMETIC_BENCH_PG_STATEMENTS").is_some();
    if profile {
        statements_reset(&svc).await?;
    }
    service::campaigns::launch(&svc, &actor, campaign).await?;
    let mut peak = 0.0f64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(crate::signin::vm_hwm_mb(pid));
        // Only the status while it runs: the full progress report (counts by state, current rate)
        // costs the database ~50 ms at 100,000 rows, and four a second would slow the send it
        // measures. The report is read once at the end.
        let status = crate::query_f64s(
            &svc,
            "SELECT (status IN ('completed', 'cancelled', 'failed'))::int::float8 AS v FROM campaign WHERE id = $1",
            campaign,
        )
        .await?;
        if status.first().copied() == Some(1.0) {
            break;
        }
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited: {status}");
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "the campaign did not finish in an hour");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (busy1, steal1) = cpu_times();
    let worker1 = process_cpu_s(pid);
    let db1 = postgres_cpu_s();
    if profile {
        statements_print(&svc).await?;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    peak = peak.max(crate::signin::vm_hwm_mb(pid));
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = worker.wait();
    let p = service::campaigns::progress(&svc, &actor, campaign).await?;
    // The bench acts as the system (it may read contacts), so the exact counts are there.
    let counts = p.counts.context("exact delivery counts")?;
    // Let the sink print its final counter.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = sink_count(&a.sink_log) - before;
    let lost = a.recipients as u64 - counts.sent;
    let dup = received as i64 - counts.sent as i64;
    let windows = crate::query_f64s(
        &svc,
        "SELECT (extract(epoch FROM (recorded_at - accepted_at)) * 1000)::float8 AS v FROM delivery d JOIN campaign c ON c.id = d.campaign_id
         WHERE c.organisation_id = $1 AND d.state = 'sent' ORDER BY 1",
        org.0,
    )
    .await?;
    let first_s = crate::query_f64s(
        &svc,
        "SELECT extract(epoch FROM (min(d.accepted_at) - min(c.started_at)))::float8 AS v
         FROM delivery d JOIN campaign c ON c.id = d.campaign_id WHERE c.organisation_id = $1",
        org.0,
    )
    .await?
    .first()
    .copied()
    .unwrap_or(0.0);
    let pick = |q: f64| windows.get(((windows.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let message_bytes = crate::sample_message_bytes(&svc, &actor, template).await?;
    eprintln!(
        "{} messages in {elapsed:.1} s (first accepted after {first_s:.1} s), worker peak RSS {peak:.0} MB, counts {:?}, \
         sink received {received}; machine CPU busy {:.1} s, stolen {:.1} s",
        counts.sent,
        counts,
        busy1 - busy0,
        steal1 - steal0
    );
    Ok(RunResult {
        rate: a.recipients as f64 / elapsed,
        cpu_s_per_k: (busy1 - busy0) / (a.recipients as f64 / 1000.0),
        worker_cpu_s_per_k: (worker1 - worker0) / (a.recipients as f64 / 1000.0),
        db_cpu_s_per_k: (db1 - db0) / (a.recipients as f64 / 1000.0),
        steal_pct: 100.0 * (steal1 - steal0) / (elapsed * cores),
        first_s,
        rss_mb: peak,
        lost,
        dup,
        window_ms_max: windows.last().copied().unwrap_or(0.0),
        window_ms_p99: pick(0.99),
        message_bytes,
    })
}

/// Wait until the database is idle (no autovacuum worker, a checkpoint done), up to a minute,
/// so that the raw measurement is not slowed by the campaign's aftermath (which would flatter
/// the ratio).
pub async fn quiesce(a: &SendArgs) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let svc = crate::services(&a.url).await?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let busy = svc
            .db()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
            ))
            .await?
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    svc.db().execute_unprepared("CHECKPOINT").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// smtp-source's raw rate into the sink (plaintext, as fast as it goes) with the same size.
pub fn raw_rate(a: &SendArgs, bytes: usize) -> Result<f64> {
    let n = a.recipients.clamp(1000, 100_000);
    let started = Instant::now();
    let status = Command::new(&a.smtp_source)
        .arg("-s")
        .arg(a.connections.to_string())
        .arg("-l")
        .arg(bytes.to_string())
        .arg("-m")
        .arg(n.to_string())
        .arg("-f")
        .arg("bench@bench.example")
        .arg("-t")
        .arg("sink@bench.example")
        .arg(format!("127.0.0.1:{}", a.sink_port))
        .stdout(Stdio::null())
        .status()
        .context("smtp-source")?;
    anyhow::ensure!(status.success(), "smtp-source failed");
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
