//! TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the `otpauth://` URI and its QR code.
//!
//! Verification accepts the current step and one on either side (clock drift) and returns the step
//! that matched, so the caller can refuse any step not newer than the last one accepted (single use).

use crate::error::{ServiceError, ServiceResult};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use zeroize::Zeroizing;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
pub const SECRET_LEN: usize = 20;

pub fn generate_secret() -> ServiceResult<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(crate::crypto::random_bytes::<SECRET_LEN>()?.to_vec()))
}

pub fn secret_base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code for one time step (RFC 4226 dynamic truncation).
pub fn code_for_step(secret: &[u8], step: i64) -> u32 {
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(secret) else { return 0 };
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let bin = ((u32::from(h[offset]) & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(DIGITS)
}

/// Normalise what a person typed ("123 456", "123-456") to six digits, or None.
pub fn parse_code(input: &str) -> Option<u32> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    if digits.len() != DIGITS as usize || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The matching step within ±1 of now, if any. Compares every candidate (no early exit on match).
pub fn verify(secret: &[u8], code: u32, unix_secs: i64) -> Option<i64> {
    let now = step_at(unix_secs);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        let ok = crate::crypto::ct_eq(&code_for_step(secret, step).to_be_bytes(), &code.to_be_bytes());
        if ok && found.is_none() {
            found = Some(step);
        }
    }
    found
}

fn uri_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        uri_escape(issuer),
        uri_escape(account),
        secret_base32(secret),
        uri_escape(issuer),
        DIGITS,
        STEP_SECS
    )
}

/// An SVG QR code of the URI (rendered server-side: no third-party QR service ever sees the secret).
pub fn qr_svg(uri: &str) -> ServiceResult<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| ServiceError::internal("QR code generation failed"))?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA1 secret "12345678901234567890"; 8-digit values reduced to 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected8) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_for_step(secret, step_at(t)), expected8 % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn verify_window_and_parse() {
        let secret = b"12345678901234567890";
        let t = 1_700_000_000;
        let now_code = code_for_step(secret, step_at(t));
        assert_eq!(verify(secret, now_code, t), Some(step_at(t)));
        let prev = code_for_step(secret, step_at(t) - 1);
        assert_eq!(verify(secret, prev, t), Some(step_at(t) - 1));
        let old = code_for_step(secret, step_at(t) - 3);
        if old != now_code && old != prev && old != code_for_step(secret, step_at(t) + 1) {
            assert_eq!(verify(secret, old, t), None);
        }
        assert_eq!(parse_code(" 123 456 "), Some(123456));
        assert_eq!(parse_code("123-456"), Some(123456));
        assert_eq!(parse_code("12345"), None);
        assert_eq!(parse_code("12345a"), None);
        assert_eq!(parse_code("1234567"), None);
    }

    #[test]
    fn uri_and_qr() {
        let uri = otpauth_uri("Hermetic", "ada@example.org", b"12345678901234567890");
        assert!(uri.starts_with("otpauth://totp/Hermetic:ada%40example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg"));
    }
}
