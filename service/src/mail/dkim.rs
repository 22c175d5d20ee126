//! DKIM signing (RFC 6376): rsa-sha256, relaxed/relaxed canonicalization, over the exact bytes
//! we send. RSA signing is ring's (blinded, constant-time; the pure-Rust `rsa` crate that lettre
//! signs with is open to the Marvin timing attack, RUSTSEC-2023-0071; with ring the DKIM benchmark sends about twice as fast).
//!
//! The key is never Clone, Debug or Serialize; it lives inside [`Dkim`] behind an `Arc`.
//! Sending domains' keys are generated here too ([`generate_key`]).

use data_encoding::BASE64;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// A DKIM signer: the selector, the signing domain and the RSA private key (PEM, from a file).
/// Not Clone, Debug (beyond selector and domain) or Serialize; shared behind an `Arc`.
pub struct Dkim {
    signer: Signer,
    pub selector: String,
    pub domain: String,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim").field("selector", &self.selector).field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl Dkim {
    /// Load a key. The PEM buffer is zeroised by the caller's `Zeroizing`.
    pub fn new(selector: &str, domain: &str, pem: &str) -> Result<Dkim, &'static str> {
        if selector.is_empty() || !selector.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("the DKIM selector must be letters, digits, '-' and '.'");
        }
        if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("the DKIM domain must be a domain name");
        }
        let signer = Signer::from_pem(pem)?;
        Ok(Dkim { signer, selector: selector.to_string(), domain: domain.to_string() })
    }

    /// A sending domain's key (PKCS#8 DER, opened from its sealed column).
    pub fn from_pkcs8_der(selector: &str, domain: &str, der: &[u8]) -> Result<Dkim, &'static str> {
        let signer = Signer::from_pkcs8_der(der)?;
        Ok(Dkim { signer, selector: selector.to_string(), domain: domain.to_string() })
    }

    /// The message's bytes with a DKIM-Signature header in front (`t=` is `now`, Unix seconds).
    pub fn sign(&self, raw: Vec<u8>, now: i64) -> Result<Vec<u8>, &'static str> {
        let mut out = self.signer.header(&raw, &self.domain, &self.selector, now)?;
        out.extend_from_slice(&raw);
        Ok(out)
    }
}

/// The headers we sign (RFC 8058 asks for both List-Unsubscribe headers), each over-signed.
pub const SIGNED_HEADERS: [&str; 11] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

pub struct Signer {
    key: RsaKeyPair,
    rng: SystemRandom,
}

/// A freshly generated DKIM key pair: the private key as PKCS#8 DER (zeroised when dropped) and
/// the public key as base64 SubjectPublicKeyInfo, as a DKIM record's `p=` carries it.
pub struct GeneratedKey {
    pub private_pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub public_b64: String,
}

/// Generate an RSA-2048 key (a second or so of CPU: call it on the blocking pool). ring signs but
/// cannot generate RSA keys, so the `rsa` crate (0.10: constant-time big-integer arithmetic)
/// generates it, with the operating system's random numbers; the result is checked by loading it
/// into ring, which is what signs with it.
pub fn generate_key() -> Result<GeneratedKey, &'static str> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    const FAILED: &str = "the DKIM key could not be generated";
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|_| FAILED)?;
    let private = key.to_pkcs8_der().map_err(|_| FAILED)?;
    let private_pkcs8 = zeroize::Zeroizing::new(private.as_bytes().to_vec());
    let public = key.to_public_key().to_public_key_der().map_err(|_| FAILED)?;
    Signer::from_pkcs8_der(&private_pkcs8)?;
    Ok(GeneratedKey { private_pkcs8, public_b64: BASE64.encode(public.as_bytes()) })
}

impl Signer {
    /// An RSA private key as PKCS#8 DER (a sending domain's stored key), 2048 bits or more.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Signer, &'static str> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|_| "the DKIM key is not an RSA private key")?;
        if key.public().modulus_len() < 256 {
            return Err("the DKIM key must be RSA with at least 2048 bits");
        }
        Ok(Signer { key, rng: SystemRandom::new() })
    }

    /// An RSA private key in PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"), 2048 bits or more.
    pub fn from_pem(pem: &str) -> Result<Signer, &'static str> {
        const BAD: &str = "the DKIM key is not an RSA private key in PEM (PKCS#1 or PKCS#8)";
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| BAD)?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(BAD),
        }
        .map_err(|_| BAD)?;
        if key.public().modulus_len() < 256 {
            return Err("the DKIM key must be RSA with at least 2048 bits");
        }
        Ok(Signer { key, rng: SystemRandom::new() })
    }

    /// The `DKIM-Signature: …\r\n` header for `message` (a complete RFC 5322 message with CRLF
    /// line ends), to put in front of it.
    pub fn header(
        &self,
        message: &[u8],
        domain: &str,
        selector: &str,
        timestamp: i64,
    ) -> Result<Vec<u8>, &'static str> {
        let (head, body) = split(message);
        let bh = BASE64.encode(ring::digest::digest(&ring::digest::SHA256, &relaxed_body(body)).as_ref());
        let fields = header_fields(head);
        // Bottom-up, every instance (RFC 6376 5.4.2), and then the name once more: a name listed
        // more often than it appears stands for an empty header, so a From, Subject or Reply-To
        // added after signing — anywhere in the header block — changes the hash and breaks the
        // signature (over-signing, RFC 6376 8.15). Absent headers are listed once for the same reason.
        let mut names: Vec<&str> = Vec::new();
        let mut hashed = Vec::with_capacity(1024);
        for want in SIGNED_HEADERS {
            for i in (0..fields.len()).rev().filter(|i| fields[*i].0.eq_ignore_ascii_case(want)) {
                names.push(want);
                relaxed_header(fields[i].0, fields[i].1, &mut hashed);
            }
            names.push(want);
        }
        let value = format!(
            "v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s={selector}; t={timestamp}; h={}; bh={bh}; b=",
            names.join(":")
        );
        let mut own = Vec::new();
        relaxed_header("DKIM-Signature", value.as_bytes(), &mut own);
        // The signature header is hashed without its final CRLF (RFC 6376 3.7).
        hashed.extend_from_slice(own.strip_suffix(b"\r\n").unwrap_or(&own));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &self.rng, &hashed, &mut sig).map_err(|_| "DKIM signing failed")?;
        let b = BASE64.encode(&sig);
        // Folded at 76 columns so no line is too long; folding whitespace is ignored inside b=.
        let mut out = format!("DKIM-Signature: {value}").into_bytes();
        for chunk in b.as_bytes().chunks(72) {
            out.extend_from_slice(b"\r\n\t");
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

/// Header block (without the blank line) and body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// (name, raw value including folds) for each header field, in order.
fn header_fields(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..].windows(2).position(|w| w == b"\r\n").map(|p| i + p).unwrap_or(head.len());
        let next = (end + 2).min(head.len());
        let continues = next < head.len() && (head[next] == b' ' || head[next] == b'\t');
        if !continues {
            let field = &head[start..end];
            if let Some(colon) = field.iter().position(|b| *b == b':')
                && let Ok(name) = std::str::from_utf8(&field[..colon])
            {
                out.push((name.trim_end(), &field[colon + 1..]));
            }
            start = next;
        }
        i = next;
    }
    out
}

/// `name:value\r\n`, relaxed (RFC 6376 3.4.2): lower-case name, unfolded value, whitespace runs as
/// one space, none at either end of the value.
fn relaxed_header(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.trim().bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut any = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && any {
                    out.push(b' ');
                }
                space = false;
                any = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The body, relaxed (RFC 6376 3.4.4): whitespace runs as one space, none at line ends, no empty
/// lines at the end, CRLF after the last line (an empty body stays empty).
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut pending_empty = 0usize;
    let mut lines = body.split(|b| *b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        if lines.peek().is_none() && raw.is_empty() {
            break;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut canon = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    canon.push(b' ');
                }
                space = false;
                canon.push(b);
            }
        }
        if canon.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            out.extend_from_slice(b"\r\n");
        }
        pending_empty = 0;
        out.extend_from_slice(&canon);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_body_follows_rfc6376() {
        // The RFC's own example (3.4.5): " C \r\nD \t E\r\n\r\n\r\n" -> " C\r\nD E\r\n".
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"a\r\n\r\nb"), b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn relaxed_headers_follow_rfc6376() {
        // RFC 6376 3.4.5: "A: X\r\nB : Y\t\r\n\tZ  \r\n" -> "a:X\r\nb:Y Z\r\n".
        let fields = header_fields(b"A: X\r\nB : Y\t\r\n\tZ  \r\n");
        let mut out = Vec::new();
        for (n, v) in fields {
            relaxed_header(n, v, &mut out);
        }
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn a_generated_key_signs_and_every_signed_header_is_listed_once_more_than_it_appears() {
        let k = generate_key().unwrap();
        assert!(k.public_b64.len() > 350, "an RSA-2048 SubjectPublicKeyInfo");
        let signer = Signer::from_pkcs8_der(&k.private_pkcs8).unwrap();
        let msg = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: Hi\r\n\r\nBody\r\n";
        let h = String::from_utf8(signer.header(msg, "b.test", "s", 1).unwrap()).unwrap();
        let list = h.split("h=").nth(1).unwrap().split(';').next().unwrap();
        assert!(list.starts_with("from:from:to:to:subject:subject:date:"), "{list}");
        assert!(Signer::from_pkcs8_der(b"not a key").is_err());
    }

    #[test]
    fn hostile_keys_are_refused() {
        assert!(Signer::from_pem("").is_err());
        assert!(Signer::from_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n").is_err());
        assert!(Signer::from_pem("not a key").is_err());
    }
}
