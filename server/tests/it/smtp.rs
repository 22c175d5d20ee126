//! A real SMTP server process for the tests (aiosmtpd via scripts/lib/smtp_capture.py): STARTTLS
//! with a test CA, scripted 4xx/5xx replies by recipient, every accepted message written to disk.
//! Tools come from `ensure_smtp_tools` (scripts/test exports their paths; run by hand, this module
//! asks common.sh for them once).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub struct Tools {
    pub python: String,
    pub capture: String,
    pub dkim_verify: String,
    pub mime_check: String,
    /// The authoritative DNS server for sending-domain checks (scripts/lib/dns_server.py).
    pub dns: String,
    /// The Prometheus text-format checker (scripts/lib/prom_parse.py, prometheus_client's parser).
    pub prom_parse: String,
    /// Directory with ca.pem, server.pem/key, rogue.pem/key.
    pub certs: PathBuf,
    /// Directory with dkim.pem and dkim.txt.
    pub dkim: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn tools() -> &'static Tools {
    static T: OnceLock<Tools> = OnceLock::new();
    T.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hermetic-it-smtp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "set -e; source '{}/scripts/lib/common.sh'; ensure_smtp_tools >&2; make_test_certs '{}/certs' >&2; make_dkim_key '{}/dkim' >&2; \
             echo \"$SMTP_TOOLS_PYTHON\"; echo \"$SMTP_TOOLS_CAPTURE\"; echo \"$SMTP_TOOLS_DKIM_VERIFY\"; echo \"$SMTP_TOOLS_MIME_CHECK\"; echo \"$SMTP_TOOLS_DNS\"; echo \"$SMTP_TOOLS_PROM_PARSE\"",
            root().display(),
            dir.display(),
            dir.display()
        );
        let out = Command::new("bash").arg("-c").arg(script).stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "ensure_smtp_tools failed");
        let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 6, "unexpected tool paths: {lines:?}");
        Tools {
            python: lines[0].clone(),
            capture: lines[1].clone(),
            dkim_verify: lines[2].clone(),
            mime_check: lines[3].clone(),
            dns: lines[4].clone(),
            prom_parse: lines[5].clone(),
            certs: dir.join("certs"),
            dkim: dir.join("dkim"),
        }
    })
}

pub enum Tls {
    /// STARTTLS offered with a certificate from the test CA, and required before MAIL.
    Required,
    /// STARTTLS offered with a self-signed certificate no CA vouches for.
    Rogue,
    /// No STARTTLS at all.
    None,
}

pub struct SmtpServer {
    pub port: u16,
    pub out: tempdir::Dir,
    child: Child,
}

pub mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl SmtpServer {
    pub fn start(tls: Tls, extra: &[&str]) -> SmtpServer {
        let t = tools();
        let out = std::env::temp_dir().join(format!("hermetic-smtp-out-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&out).unwrap();
        let mut cmd = Command::new(&t.python);
        cmd.arg(&t.capture).arg("--out").arg(&out).arg("--listen").arg("127.0.0.1:0");
        match tls {
            Tls::Required => {
                cmd.arg("--tls-cert")
                    .arg(t.certs.join("server.pem"))
                    .arg("--tls-key")
                    .arg(t.certs.join("server.key"))
                    .arg("--require-starttls");
            }
            Tls::Rogue => {
                cmd.arg("--tls-cert").arg(t.certs.join("rogue.pem")).arg("--tls-key").arg(t.certs.join("rogue.key"));
            }
            Tls::None => {}
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("READY ").expect("READY line").parse().unwrap();
        SmtpServer { port, out: tempdir::Dir(out), child }
    }

    /// The environment that points the app at this server (trusting the test CA).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERMETIC_MAIL__SMTP_HOST", "localhost".into()),
            ("HERMETIC_MAIL__SMTP_PORT", self.port.to_string()),
            ("HERMETIC_MAIL__SMTP_CA_FILE", tools().certs.join("ca.pem").display().to_string()),
        ]
    }

    /// How many messages arrived so far (without reading them).
    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.out.0)
            .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
            .unwrap_or(0)
    }

    /// Messages received so far (raw bytes), in arrival order.
    pub fn messages(&self) -> Vec<(PathBuf, String)> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.out.0)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).map(|n| (n, p.clone())))
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
    }

    /// Wait until at least `n` messages arrived (or panic after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<(PathBuf, String)> {
        for _ in 0..secs * 10 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("expected {n} messages, got {}", self.messages().len());
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parse a message with Python's email package (scripts/lib/mime_check.py).
pub fn mime(path: &Path) -> serde_json::Value {
    let t = tools();
    let out = Command::new(&t.python).arg(&t.mime_check).arg(path).output().unwrap();
    assert!(out.status.success(), "mime_check failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Verify DKIM signatures with dkimpy against the test key's TXT record; `expect_signed` are
/// header names the signature must cover.
pub fn dkim_verify(selector: &str, domain: &str, expect_signed: &[&str], paths: &[PathBuf]) -> (bool, String) {
    let t = tools();
    let out = Command::new(&t.python)
        .arg(&t.dkim_verify)
        .arg("--txt")
        .arg(t.dkim.join("dkim.txt"))
        .arg("--selector")
        .arg(selector)
        .arg("--domain")
        .arg(domain)
        .arg("--expect-signed")
        .arg(expect_signed.join(","))
        .args(paths)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A real authoritative DNS server process (scripts/lib/dns_server.py, dnslib) serving a zone file
/// that it reads again on every query: publishing a record is writing the file.
pub struct DnsServer {
    pub port: u16,
    pub zone: PathBuf,
    _dir: tempdir::Dir,
    child: Child,
}

impl DnsServer {
    pub fn start() -> DnsServer {
        let t = tools();
        let dir = std::env::temp_dir().join(format!("hermetic-dns-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let zone = dir.join("zone");
        std::fs::write(&zone, "").unwrap();
        let mut child = Command::new(&t.python)
            .arg(&t.dns)
            .arg("--zone")
            .arg(&zone)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("READY ").expect("READY line").parse().unwrap();
        DnsServer { port, zone, _dir: tempdir::Dir(dir), child }
    }

    /// The setting that points the app's sending-domain checks at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("HERMETIC_MAIL__DNS_RESOLVER", format!("127.0.0.1:{}", self.port))]
    }

    /// Add zone-file lines (as Hermetic shows them) to the zone.
    pub fn publish(&self, lines: &[String]) {
        let mut text = std::fs::read_to_string(&self.zone).unwrap();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&self.zone, text).unwrap();
    }

    /// Replace the whole zone.
    pub fn set(&self, text: &str) {
        std::fs::write(&self.zone, text).unwrap();
    }

    pub fn zone_text(&self) -> String {
        std::fs::read_to_string(&self.zone).unwrap()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Verify DKIM signatures with dkimpy, taking each public key from DNS (`dns`, the published zone):
/// the signature must be by `selector._domainkey.domain`.
pub fn dkim_verify_dns(
    dns: &DnsServer,
    selector: &str,
    domain: &str,
    expect_signed: &[&str],
    paths: &[PathBuf],
) -> (bool, String) {
    let t = tools();
    let out = Command::new(&t.python)
        .arg(&t.dkim_verify)
        .arg("--dns")
        .arg(format!("127.0.0.1:{}", dns.port))
        .arg("--selector")
        .arg(selector)
        .arg("--domain")
        .arg(domain)
        .arg("--expect-signed")
        .arg(expect_signed.join(","))
        .args(paths)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
