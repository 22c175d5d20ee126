//! `signin`: a burst of simultaneous anonymous sign-ins against the release server running as its
//! own process, over real HTTP. Reports the server's peak memory (VmHWM), how the attempts were
//! answered, and their latency.
//!
//! Wrong passwords for many real accounts (at most two attempts each, under the account limit) and
//! for unknown accounts; the per-address limit is raised so that every attempt reaches the
//! password check — the benchmark measures what a burst costs the hashing path, which is what a
//! botnet spread over many addresses would reach.

use anyhow::{Context, Result, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct SigninArgs {
    pub url: String,
    pub server_bin: std::path::PathBuf,
    pub concurrency: usize,
    pub accounts: usize,
}

const PASSWORD: &str = "bench horse battery staple";

/// A process's peak resident memory (VmHWM), in MB.
pub(crate) fn vm_hwm_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), the answer read to the end.
async fn request(port: u16, head: &str, body: &str) -> Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("{head}Host: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    Ok(Answer { status, headers: headers.to_string(), body: body.to_string() })
}

/// The release server's `serve` process on `port` against the bench database, logging warnings
/// only, with `settings` (environment variables) for what the benchmark measures.
pub(crate) fn start_server(bin: &std::path::Path, url: &str, port: u16, settings: &[(&str, &str)]) -> Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("HERMETIC_DATABASE_URL", url)
        .env("HERMETIC_ROOT_KEY", crate::root_key_text()?)
        .env("HERMETIC_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERMETIC_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("HERMETIC_LOG_LEVEL", "warn")
        .envs(settings.iter().copied())
        .env_remove("DATABASE_URL");
    Ok(cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?)
}

/// The anonymous CSRF cookie and token a browser gets with the sign-in page.
async fn csrf(port: u16) -> Result<(String, String)> {
    let page = request(port, "GET /login HTTP/1.1\r\n", "").await?;
    let cookie = page
        .headers
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .find(|c| c.starts_with("__Host-hermetic_csrf="))
        .and_then(|c| c.split(';').next())
        .context("no CSRF cookie on /login")?
        .to_string();
    let marker = "<meta name=\"csrf-token\" content=\"";
    let at = page.body.find(marker).context("no CSRF token on /login")? + marker.len();
    let token = page.body[at..].split('"').next().unwrap_or_default().to_string();
    Ok((cookie, token))
}

fn sign_in_head(cookie: &str, token: &str) -> String {
    format!(
        "POST /api/sign_in HTTP/1.1\r\nCookie: {cookie}\r\nX-CSRF-Token: {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
    )
}

fn form(email: &str, password: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("email={}&password={}", enc(email), enc(password))
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Wait until a server process started on `port` answers `/healthz` (two minutes at most).
pub(crate) async fn wait_healthy(server: &mut Child, port: u16) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = server.try_wait()? {
            bail!("the server exited during start-up: {status}");
        }
        if request(port, "GET /healthz HTTP/1.1\r\n", "").await.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = server.kill();
            bail!("the server did not answer /healthz within two minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(a: SigninArgs) -> Result<()> {
    let port = free_port()?;
    // The server first (it migrates the database), then the accounts.
    let mut server = start_server(&a.server_bin, &a.url, port, &[("HERMETIC_THROTTLE__IP_MAX_FAILURES", "100000")])?;
    let pid = server.id();
    wait_healthy(&mut server, port).await?;
    let result = burst(&a, port, pid).await;
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = server.wait();
    result
}

async fn burst(a: &SigninArgs, port: u16, pid: u32) -> Result<()> {
    let svc = crate::services(&a.url).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let org = service::organisations::create(&svc, &format!("Bench sign-in {tag}")).await?;
    let actor = service::Actor::system(org, "bench");
    // As many at once as this process's hashing gate admits.
    use futures::StreamExt;
    let created: Vec<_> = futures::stream::iter((0..a.accounts).map(|i| {
        let (svc, actor, tag) = (&svc, &actor, &tag);
        async move {
            service::users::create_with_password(
                svc,
                actor,
                &format!("user{i}.{tag}@bench.example"),
                "Bench",
                domain::Role::Marketer,
                PASSWORD,
            )
            .await
        }
    }))
    .buffer_unordered(svc.hashing().limit())
    .collect()
    .await;
    for c in created {
        c?;
    }
    eprintln!("{} accounts created", a.accounts);

    let (cookie, token) = csrf(port).await?;
    let head = sign_in_head(&cookie, &token);
    // Warm-up: one right password (connection pool, lazily built state), then the idle figure.
    let warm = request(port, &head, &form(&format!("user0.{tag}@bench.example"), PASSWORD)).await?;
    if warm.status != 200 {
        bail!("warm-up sign-in answered {}: {}", warm.status, warm.body);
    }
    let idle_mb = vm_hwm_mb(pid);

    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(a.concurrency));
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|i| {
            // Two in three for real accounts (wrong password, at most two tries per account), the
            // rest for addresses that have no account.
            let email = if i % 3 < 2 {
                format!("user{}.{tag}@bench.example", (i / 3 * 2 + i % 3) % a.accounts)
            } else {
                format!("nobody{i}.{tag}@bench.example")
            };
            let (head, body, gate) = (head.clone(), form(&email, "not the right password"), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                let t = Instant::now();
                let r = request(port, &head, &body).await;
                (r, t.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(tasks.len());
    let (mut busy, mut throttled, mut wrong, mut other, mut retry_after_missing) = (0, 0, 0, 0, 0);
    for t in tasks {
        let (r, ms) = t.await?;
        latencies.push(ms);
        match r {
            Ok(r) => {
                let has_retry = r.headers.lines().any(|l| l.to_ascii_lowercase().starts_with("retry-after:"));
                match r.status {
                    503 => busy += 1,
                    429 => throttled += 1,
                    401 => wrong += 1,
                    _ => other += 1,
                }
                if matches!(r.status, 503 | 429) && !has_retry {
                    retry_after_missing += 1;
                }
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                other += 1;
            }
        }
    }
    let peak_mb = vm_hwm_mb(pid);
    latencies.sort_by(f64::total_cmp);
    let alive = request(port, "GET /healthz HTTP/1.1\r\n", "").await.is_ok_and(|r| r.status == 200);
    eprintln!(
        "{} attempts: {wrong} checked (401), {busy} busy (503), {throttled} throttled (429), {other} other; \
         {retry_after_missing} refusals without Retry-After; server alive afterwards: {alive}",
        a.concurrency
    );
    eprintln!("server peak RSS {peak_mb:.0} MB (after start-up and one sign-in: {idle_mb:.0} MB)");
    println!(
        "signin concurrency={} rss_mb={peak_mb:.0} idle_rss_mb={idle_mb:.0} rejected={} busy={busy} throttled={throttled} \
         checked={wrong} other={other} p50_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        a.concurrency,
        busy + throttled,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
