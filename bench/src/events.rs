//! `events`: the patient-event API under load, over real HTTP on loopback against the release
//! server in its own process (durable PostgreSQL, as `scripts/bench` runs it).
//!
//! (a) `--events N` events in batches of `--batch` (500) through `POST /api/v1/events/batch` from
//!     `--batch-clients` keep-alive connections; (b) `--single M` single events through
//!     `POST /api/v1/events` from `--concurrency` (64) keep-alive clients, each request timed.
//! Events name their patient by address (as a scheduling system would: it knows the address, not
//! our id), spread over `--contacts` imported patients. Afterwards every event must be in
//! `patient_event` once, with its `event_outbox` row; the server's peak memory (VmHWM) is read
//! from /proc.

use crate::signin::{free_port, percentile, start_server, vm_hwm_mb, wait_healthy};
use anyhow::{Context, Result, bail};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct EventsArgs {
    pub url: String,
    pub server_bin: std::path::PathBuf,
    pub events: usize,
    pub single: usize,
    pub batch: usize,
    pub batch_clients: usize,
    pub concurrency: usize,
    pub contacts: usize,
    pub signed: bool,
}

/// One keep-alive HTTP/1.1 connection: requests one after another, answers read by their length.
pub(crate) struct Conn {
    io: BufReader<TcpStream>,
    port: u16,
}

impl Conn {
    pub(crate) async fn open(port: u16) -> Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        Ok(Conn { io: BufReader::new(s), port })
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        let s = self.io.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("the connection closed inside an answer's headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.io.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .context("a bad chunk size")?;
                let mut chunk = vec![0; n + 2];
                self.io.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(length.context("an answer without a length")?, 0);
            self.io.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

const TYPES: [&str; 4] = ["appointment.booked", "lab.ready", "visit.completed", "appointment.cancelled"];

/// The JSON of event `i`: a patient by address, a type, a time and a few properties the way a
/// scheduling system sends them.
fn event_json(i: usize, tag: &str, contacts: usize) -> String {
    format!(
        r#"{{"contact":{{"email":"patient{}.{tag}@bench.example"}},"type":"{}","occurred_at":"2026-11-{:02}T{:02}:{:02}:00Z","properties":{{"appointment_id":"A{i}","clinic":"North","department":"cardiology","slot_minutes":30,"telehealth":{}}}}}"#,
        i % contacts,
        TYPES[i % TYPES.len()],
        1 + i % 28,
        i % 24,
        i % 60,
        i.is_multiple_of(2)
    )
}

// The server checks the signature's time against the wall clock: the client must use it too.
#[allow(clippy::disallowed_methods)]
fn sign(secret: Option<&str>, body: &[u8]) -> String {
    let Some(secret) = secret else { return String::new() };
    let t = chrono::Utc::now().timestamp();
    let prefix = format!("{t}.");
    let mac = service::crypto::hmac_sha256(secret.as_bytes(), &[prefix.as_bytes(), body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("Hermetic-Signature: t={t},v1={hex}\r\n")
}

pub async fn run(a: EventsArgs) -> Result<()> {
    let port = free_port()?;
    // The benchmark measures the server, not the per-key budget (which answers 429 beyond it).
    let budget = [("HERMETIC_API__RATE_PER_SECOND", "1000000"), ("HERMETIC_API__BURST", "1000000")];
    let mut server = start_server(&a.server_bin, &a.url, port, &budget)?;
    let pid = server.id();
    wait_healthy(&mut server, port).await?;
    let result = load(&a, port, pid).await;
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = server.wait();
    result
}

async fn load(a: &EventsArgs, port: u16, pid: u32) -> Result<()> {
    let svc = crate::services(&a.url).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let org = service::organisations::create(&svc, &format!("Events bench {tag}")).await?;
    let actor = service::Actor::system(org, "bench");
    let list = service::contacts::lists::create(
        &svc,
        &actor,
        "Scheduled patients",
        "",
        false,
        domain::contacts::ConsentPurpose::Marketing,
    )
    .await
    .context("creating the list")?;
    eprintln!("importing {} patients", a.contacts);
    crate::load_contacts_into(&svc, &actor, a.contacts, &tag, Some(list)).await?;
    let key = service::api::keys::create(
        &svc,
        &actor,
        domain::api::NewKey {
            name: "Scheduling bridge".into(),
            scopes: vec![domain::api::Scope::EventsWrite],
            expires_at: None,
            require_signature: a.signed,
        },
    )
    .await?;
    let auth = format!("Authorization: Bearer {}\r\nContent-Type: application/json\r\n", key.secret.as_str());
    let signing: Option<String> = key.signing_secret.as_ref().map(|s| s.as_str().to_string());
    let auth = Arc::new(auth);
    let signing = Arc::new(signing);
    let tag = Arc::new(tag);

    // Warm-up (connection pool, lazily built state): one event, counted.
    let mut warm = Conn::open(port).await?;
    let body = event_json(0, &tag, a.contacts);
    let (s, b) = warm
        .request(
            "POST",
            "/api/v1/events",
            &format!("{auth}{}", sign(signing.as_deref(), body.as_bytes())),
            body.as_bytes(),
        )
        .await?;
    if s != 202 {
        bail!("the warm-up event answered {s}: {}", String::from_utf8_lossy(&b));
    }

    // (a) Batches.
    let batches = a.events.div_ceil(a.batch);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.batch_clients)
        .map(|_| {
            let (next, auth, signing, tag) = (next.clone(), auth.clone(), signing.clone(), tag.clone());
            let (n, size, contacts) = (a.events, a.batch, a.contacts);
            tokio::spawn(async move {
                let mut c = Conn::open(port).await?;
                let mut accepted = 0usize;
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let from = 1 + b * size;
                    let to = (from + size).min(1 + n);
                    let mut body = String::with_capacity(size * 260);
                    body.push_str(r#"{"events":["#);
                    for i in from..to {
                        if i > from {
                            body.push(',');
                        }
                        body.push_str(&event_json(i, &tag, contacts));
                    }
                    body.push_str("]}");
                    let headers = format!("{auth}{}", sign(signing.as_deref(), body.as_bytes()));
                    let (s, answer) = c.request("POST", "/api/v1/events/batch", &headers, body.as_bytes()).await?;
                    if s != 200 {
                        bail!("a batch answered {s}: {}", String::from_utf8_lossy(&answer));
                    }
                    let v: serde_json::Value = serde_json::from_slice(&answer)?;
                    let results = v["results"].as_array().context("a batch answer without results")?;
                    let ok = results.iter().filter(|r| r["status"] == "accepted").count();
                    if ok != to - from {
                        bail!("a batch accepted {ok} of {}: {}", to - from, String::from_utf8_lossy(&answer));
                    }
                    accepted += ok;
                }
                anyhow::Ok(accepted)
            })
        })
        .collect();
    let mut batched = 0usize;
    for t in tasks {
        batched += t.await??;
    }
    let batch_s = t0.elapsed().as_secs_f64();
    eprintln!("{batched} events in {batches} batches in {batch_s:.1} s");

    // (b) Single events, each request timed.
    let next = Arc::new(AtomicUsize::new(0));
    let t1 = Instant::now();
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (next, auth, signing, tag) = (next.clone(), auth.clone(), signing.clone(), tag.clone());
            let (n, base, contacts) = (a.single, 1 + a.events, a.contacts);
            tokio::spawn(async move {
                let mut c = Conn::open(port).await?;
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let body = event_json(base + i, &tag, contacts);
                    let headers = format!("{auth}{}", sign(signing.as_deref(), body.as_bytes()));
                    let t = Instant::now();
                    let (s, answer) = c.request("POST", "/api/v1/events", &headers, body.as_bytes()).await?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                    if s != 202 {
                        bail!("an event answered {s}: {}", String::from_utf8_lossy(&answer));
                    }
                }
                anyhow::Ok(times)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(a.single);
    for t in tasks {
        times.extend(t.await??);
    }
    let single_s = t1.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let rss = vm_hwm_mb(pid);
    eprintln!(
        "{} single events in {single_s:.1} s from {} clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        a.concurrency,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0)
    );

    // Every event exactly once, each with its outbox row.
    let expected = 1 + a.events + a.single;
    let counts = crate::query_f64s(
        &svc,
        "SELECT count(*)::float8 AS v FROM patient_event WHERE organisation_id = $1
         UNION ALL SELECT count(*)::float8 FROM event_outbox o JOIN patient_event e ON e.id = o.event_id WHERE e.organisation_id = $1",
        org.0,
    )
    .await?;
    let (events, outbox) = (counts[0] as usize, counts[1] as usize);
    let lost = expected.saturating_sub(events);
    let dup = events.saturating_sub(expected);
    if outbox != events {
        eprintln!("warning: {events} events but {outbox} outbox rows");
    }
    println!(
        "events n={} batch_per_s={:.0} single_n={} single_per_s={:.0} single_p99_ms={:.1} rss_mb={rss:.0} lost={lost} dup={dup} outbox_missing={}",
        a.events,
        batched as f64 / batch_s,
        a.single,
        a.single as f64 / single_s,
        percentile(&times, 0.99),
        events.saturating_sub(outbox)
    );
    Ok(())
}
