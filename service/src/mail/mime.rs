//! Reading captured mail for the dev mailbox with `mail-parser` (a maintained MIME parser): the
//! headers, unfolded with RFC 2047 encoded words decoded (`=?utf-8?b?…?=` shows as text), and the
//! first text and HTML body parts, transfer encodings and charsets decoded. Used only to show mail
//! in the dev mailbox; it never panics on malformed input.

use mail_parser::{MessageParser, PartType};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    /// Top-level headers, unfolded and decoded, in order.
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// A header value as a person reads it: folding removed, RFC 2047 encoded words decoded. Values
/// that do not parse are shown unfolded as they are.
pub fn decode_header(value: &str) -> String {
    let unfolded = unfold(value);
    // Unstructured-text parsing (as for Subject) decodes encoded words anywhere in the value,
    // including display names in address headers.
    let probe = format!("Subject: {unfolded}\r\n\r\n");
    MessageParser::new()
        .parse_headers(probe.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or(unfolded)
}

fn unfold(value: &str) -> String {
    value.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Read a message.
pub fn parse(raw: &str) -> Parts {
    let Some(m) = MessageParser::default().parse(raw.as_bytes()) else {
        return Parts::default();
    };
    let headers = m.headers_raw().map(|(k, v)| (k.to_string(), decode_header(v))).collect();
    let text = m.text_bodies().find_map(|p| match &p.body {
        PartType::Text(t) => Some(t.to_string()),
        _ => None,
    });
    let html = m.html_bodies().find_map(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    Parts { headers, text, html }
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

    #[test]
    fn encoded_words_in_headers_are_decoded() {
        assert_eq!(decode_header("=?utf-8?b?4oCU?="), "\u{2014}");
        assert_eq!(decode_header("Spring =?utf-8?q?news_=E2=80=94?=\r\n for you"), "Spring news \u{2014} for you");
        assert_eq!(decode_header("plain text"), "plain text");
        let raw = "Subject: =?utf-8?b?SGVsbG8g4oCU?=\r\nFrom: =?utf-8?q?Cl=C3=ADnica?= <a@b.test>\r\n\r\nbody";
        let p = parse(raw);
        assert!(p.headers.contains(&("Subject".to_string(), "Hello \u{2014}".to_string())), "{:?}", p.headers);
        assert!(p.headers.contains(&("From".to_string(), "Cl\u{ed}nica <a@b.test>".to_string())), "{:?}", p.headers);
        assert_eq!(p.html, None, "a text-only message has no HTML part");
    }
}
