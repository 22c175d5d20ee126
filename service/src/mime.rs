//! A small reader for the messages this app itself builds (lettre output): headers, and the text
//! and HTML parts of a `multipart/alternative` (or a single part), decoding quoted-printable and
//! base64. Used only to show captured mail in the dev mailbox; never for mail from outside.

use data_encoding::BASE64_MIME;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    /// Top-level headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Split a message into unfolded headers and the body (at the first empty line).
fn split(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match raw.find("\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, ""),
        },
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A parameter of a structured header value (`boundary="…"`).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn decode_qp(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn decode(headers: &[(String, String)], body: &str) -> String {
    let bytes = match header(headers, "Content-Transfer-Encoding").map(|v| v.to_ascii_lowercase()) {
        Some(e) if e == "quoted-printable" => decode_qp(body),
        Some(e) if e == "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            BASE64_MIME.decode(compact.as_bytes()).unwrap_or_else(|_| body.as_bytes().to_vec())
        }
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Read a message.
pub fn parse(raw: &str) -> Parts {
    let (headers, body) = split(raw);
    let mut parts = Parts { headers: headers.clone(), ..Parts::default() };
    let ctype = header(&headers, "Content-Type").unwrap_or("text/plain").to_string();
    let mut leaves: Vec<(Vec<(String, String)>, String)> = Vec::new();
    if ctype.to_ascii_lowercase().starts_with("multipart/") {
        if let Some(b) = param(&ctype, "boundary") {
            let delim = format!("--{b}");
            for chunk in body.split(&delim).skip(1) {
                if chunk.starts_with("--") {
                    break;
                }
                let chunk = chunk.trim_start_matches(['\r', '\n']);
                let (h, b) = split(chunk);
                leaves.push((h, b.trim_end_matches(['\r', '\n']).to_string()));
            }
        }
    } else {
        leaves.push((headers, body.to_string()));
    }
    for (h, b) in leaves {
        let t = header(&h, "Content-Type").unwrap_or("text/plain").to_ascii_lowercase();
        if t.starts_with("text/html") && parts.html.is_none() {
            parts.html = Some(decode(&h, &b));
        } else if t.starts_with("text/plain") && parts.text.is_none() {
            parts.text = Some(decode(&h, &b));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lettre_multipart_with_quoted_printable() {
        let raw = "From: a@b.test\r\nSubject: Hi\r\nList-Unsubscribe: <https://x.test/l/u/\r\n abc>\r\nContent-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello =C3=A9 long=\r\nline\r\n--XYZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+SGk8L3A+\r\n--XYZ--\r\n";
        let p = parse(raw);
        assert_eq!(p.text.as_deref(), Some("Hello é longline"));
        assert_eq!(p.html.as_deref(), Some("<p>Hi</p>"));
        assert!(p.headers.iter().any(|(k, v)| k == "List-Unsubscribe" && v == "<https://x.test/l/u/ abc>"));
    }

    #[test]
    fn a_single_part_and_garbage_do_not_panic() {
        assert_eq!(parse("Subject: x\r\n\r\nbody").text.as_deref(), Some("body"));
        let _ = parse("no headers at all =ZZ =");
        let _ = parse("Content-Type: multipart/mixed\r\n\r\n--");
        let _ = parse("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!");
    }
}
