//! The block editor's document model and its pure generators: email-client-safe HTML (table
//! layout, every style inline, a single media query that stacks columns on phones) and the plain
//! text alternative; `html_to_text` for the raw-HTML mode; the starter templates.
//!
//! Invariants: the output is deterministic (snapshot-tested); author text is HTML-escaped
//! everywhere except inside `{{…}}` merge tags, which are copied verbatim for the server's sandbox
//! to check; links are only http(s), mailto or a system-link merge tag.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

pub const MAX_BLOCKS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 20_000;
const ACCENT: &str = "#1d4ed8";
const FONT: &str = "Arial,Helvetica,sans-serif";
const SYSTEM_LINKS: [&str; 3] = ["links.unsubscribe", "links.view_in_browser", "links.preferences"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Design {
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Heading { text: String, level: u8 },
    Text { text: String },
    Button { label: String, url: String },
    Image { src: String, alt: String, width: Option<u32>, link: Option<String> },
    Divider,
    Spacer { height: u32 },
    Columns { left: Vec<Block>, right: Vec<Block> },
    Footer { text: String },
}

/// The "add block" menu: (kind, label).
pub const BLOCK_KINDS: [(&str, &str); 8] = [
    ("heading", "Heading"),
    ("text", "Text"),
    ("button", "Button"),
    ("image", "Image"),
    ("divider", "Divider"),
    ("spacer", "Spacer"),
    ("columns", "Two columns"),
    ("footer", "Footer"),
];

impl Block {
    pub fn kind_label(&self) -> &'static str {
        match self {
            Block::Heading { .. } => "Heading",
            Block::Text { .. } => "Text",
            Block::Button { .. } => "Button",
            Block::Image { .. } => "Image",
            Block::Divider => "Divider",
            Block::Spacer { .. } => "Spacer",
            Block::Columns { .. } => "Two columns",
            Block::Footer { .. } => "Footer",
        }
    }

    pub fn new_of_kind(kind: &str) -> Option<Block> {
        Some(match kind {
            "heading" => Block::Heading { text: "A heading".into(), level: 2 },
            "text" => Block::Text { text: "Write something here.".into() },
            "button" => Block::Button { label: "Learn more".into(), url: "https://example.org".into() },
            "image" => Block::Image {
                src: "https://example.org/image.jpg".into(),
                alt: "Describe the image".into(),
                width: None,
                link: None,
            },
            "divider" => Block::Divider,
            "spacer" => Block::Spacer { height: 24 },
            "columns" => Block::Columns {
                left: vec![Block::Text { text: "Left column".into() }],
                right: vec![Block::Text { text: "Right column".into() }],
            },
            "footer" => Block::Footer {
                text: "{{organisation.name}} · [Unsubscribe]({{links.unsubscribe}}) · [Manage preferences]({{links.preferences}})"
                    .into(),
            },
            _ => return None,
        })
    }
}

/// A link target: http(s), mailto, or exactly one system-link merge tag.
pub fn valid_url(url: &str) -> bool {
    let u = url.trim();
    if let Some(inner) = u.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        return SYSTEM_LINKS.contains(&inner.trim());
    }
    let lower = u.to_ascii_lowercase();
    let scheme_ok = ["https://", "http://", "mailto:"].iter().any(|s| lower.starts_with(s) && lower.len() > s.len());
    scheme_ok && !u.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '<' | '>' | '\'' | '`'))
}

fn valid_image_src(src: &str) -> bool {
    let u = src.trim();
    u.to_ascii_lowercase().starts_with("https://")
        && u.len() > 8
        && !u.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '<' | '>' | '\'' | '`'))
}

fn check_text(place: &str, what: &str, s: &str) -> Result<(), DomainError> {
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(place, format!("the {what} is longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(())
}

const URL_RULE: &str = "must start with https://, http:// or mailto:, or be a system link";

fn validate_block(place: &str, b: &Block, nested: bool) -> Result<(), DomainError> {
    match b {
        Block::Heading { text, level } => {
            check_text(place, "heading", text)?;
            if !(1..=3).contains(level) {
                return Err(DomainError::invalid(place, "the heading size must be 1, 2 or 3"));
            }
        }
        Block::Text { text } => check_text(place, "text", text)?,
        Block::Footer { text } => check_text(place, "footer", text)?,
        Block::Button { label, url } => {
            check_text(place, "button label", label)?;
            if label.trim().is_empty() {
                return Err(DomainError::invalid(place, "the button needs a label"));
            }
            if !valid_url(url) {
                return Err(DomainError::invalid(place, format!("the button link {URL_RULE}")));
            }
        }
        Block::Image { src, alt, width, link } => {
            check_text(place, "image description", alt)?;
            if !valid_image_src(src) {
                return Err(DomainError::invalid(place, "the image address must start with https://"));
            }
            if width.is_some_and(|w| !(16..=600).contains(&w)) {
                return Err(DomainError::invalid(place, "the image width must be between 16 and 600 pixels"));
            }
            if link.as_deref().is_some_and(|l| !valid_url(l)) {
                return Err(DomainError::invalid(place, format!("the image link {URL_RULE}")));
            }
        }
        Block::Divider => {}
        Block::Spacer { height } => {
            if !(4..=200).contains(height) {
                return Err(DomainError::invalid(place, "the spacer height must be between 4 and 200 pixels"));
            }
        }
        Block::Columns { left, right } => {
            if nested {
                return Err(DomainError::invalid(place, "two-column blocks cannot be placed inside columns"));
            }
            for (side, blocks) in [("left", left), ("right", right)] {
                for (j, inner) in blocks.iter().enumerate() {
                    validate_block(&format!("{place}, {side} column {}", j + 1), inner, true)?;
                }
            }
        }
    }
    Ok(())
}

impl Design {
    fn count(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| match b {
                Block::Columns { left, right } => 1 + left.len() + right.len(),
                _ => 1,
            })
            .sum()
    }

    pub fn validate(&self) -> Result<(), DomainError> {
        if self.count() > MAX_BLOCKS {
            return Err(DomainError::invalid("design", format!("has more than {MAX_BLOCKS} blocks")));
        }
        if self.blocks.is_empty() {
            return Err(DomainError::invalid("design", "has no blocks"));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            validate_block(&format!("block {}", i + 1), b, false)?;
        }
        Ok(())
    }

    /// Every address the blocks put into the message, with the block's place and what it is
    /// (buttons, images, image links and `[label](url)` links in text), so a check can name the
    /// block.
    pub fn addresses(&self) -> Vec<(String, &'static str, String)> {
        fn walk(place: &str, b: &Block, out: &mut Vec<(String, &'static str, String)>) {
            match b {
                Block::Button { url, .. } => out.push((place.to_string(), "button link", url.clone())),
                Block::Image { src, link, .. } => {
                    out.push((place.to_string(), "image address", src.clone()));
                    if let Some(l) = link {
                        out.push((place.to_string(), "image link", l.clone()));
                    }
                }
                Block::Text { text } | Block::Footer { text } | Block::Heading { text, .. } => {
                    for url in markdown_urls(text) {
                        out.push((place.to_string(), "link", url));
                    }
                }
                Block::Columns { left, right } => {
                    for (side, blocks) in [("left", left), ("right", right)] {
                        for (j, inner) in blocks.iter().enumerate() {
                            walk(&format!("{place}, {side} column {}", j + 1), inner, out);
                        }
                    }
                }
                Block::Divider | Block::Spacer { .. } => {}
            }
        }
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            walk(&format!("block {}", i + 1), b, &mut out);
        }
        out
    }

    /// The email's HTML document.
    pub fn to_html(&self) -> String {
        let mut o = String::with_capacity(8 * 1024);
        o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n");
        o.push_str("<meta name=\"x-apple-disable-message-reformatting\">\n<title></title>\n");
        o.push_str("<style>@media (max-width:620px){.container{width:100%!important}.col{display:block!important;width:100%!important}}</style>\n");
        o.push_str("</head>\n<body style=\"margin:0;padding:0;background:#f3f4f6\">\n");
        o.push_str("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"background:#f3f4f6\">\n<tr><td align=\"center\" style=\"padding:24px 8px\">\n");
        o.push_str("<table role=\"presentation\" class=\"container\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"width:600px;max-width:600px;background:#ffffff\">\n");
        for b in &self.blocks {
            o.push_str("<tr><td style=\"padding:0 32px\">");
            block_html(&mut o, b);
            o.push_str("</td></tr>\n");
        }
        o.push_str("</table>\n</td></tr>\n</table>\n</body>\n</html>\n");
        o
    }

    /// The plain-text alternative.
    pub fn to_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for b in &self.blocks {
            block_text(&mut parts, b);
        }
        let mut out = parts.into_iter().filter(|p| !p.trim().is_empty()).collect::<Vec<_>>().join("\n\n");
        out.push('\n');
        out
    }
}

fn block_html(o: &mut String, b: &Block) {
    match b {
        Block::Heading { text, level } => {
            let (size, tag) = match level {
                1 => (28, "h1"),
                2 => (22, "h2"),
                _ => (18, "h3"),
            };
            let _ = write!(
                o,
                "<{tag} style=\"margin:24px 0 12px;font-family:{FONT};font-size:{size}px;line-height:1.25;color:#111827\">{}</{tag}>",
                inline(text, false)
            );
        }
        Block::Text { text } => {
            let _ = write!(o, "<div style=\"font-family:{FONT};font-size:16px;line-height:1.5;color:#111827\">");
            paragraphs(o, text, "margin:0 0 16px");
            o.push_str("</div>");
        }
        Block::Footer { text } => {
            let _ = write!(
                o,
                "<div style=\"padding:16px 0 24px;font-family:{FONT};font-size:12px;line-height:1.5;color:#6b7280;text-align:center\">"
            );
            paragraphs(o, text, "margin:0 0 8px");
            o.push_str("</div>");
        }
        Block::Button { label, url } => {
            let _ = write!(
                o,
                "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"margin:16px 0\"><tr>\
                 <td bgcolor=\"{ACCENT}\" style=\"border-radius:6px;background:{ACCENT}\">\
                 <a href=\"{}\" style=\"display:inline-block;padding:12px 24px;font-family:{FONT};font-size:16px;font-weight:bold;color:#ffffff;text-decoration:none;border-radius:6px\">{}</a>\
                 </td></tr></table>",
                attr_url(url),
                inline(label, false)
            );
        }
        Block::Image { src, alt, width, link } => {
            let w = width.unwrap_or(536);
            let img = format!(
                "<img src=\"{}\" alt=\"{}\" width=\"{w}\" style=\"display:block;border:0;max-width:100%;height:auto;margin:16px 0\">",
                attr_url(src),
                escape_keep_tags(alt)
            );
            match link {
                Some(l) => {
                    let _ = write!(o, "<a href=\"{}\">{img}</a>", attr_url(l));
                }
                None => o.push_str(&img),
            }
        }
        Block::Divider => {
            o.push_str("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td style=\"padding:16px 0\"><div style=\"border-top:1px solid #e5e7eb;font-size:0;line-height:0\">&nbsp;</div></td></tr></table>");
        }
        Block::Spacer { height } => {
            let _ = write!(o, "<div style=\"height:{height}px;font-size:0;line-height:0\">&nbsp;</div>");
        }
        Block::Columns { left, right } => {
            o.push_str(
                "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>",
            );
            for (i, side) in [left, right].into_iter().enumerate() {
                let pad = if i == 0 { "padding:0 12px 0 0" } else { "padding:0 0 0 12px" };
                let _ = write!(o, "<td class=\"col\" width=\"50%\" valign=\"top\" style=\"width:50%;{pad}\">");
                for b in side {
                    block_html(o, b);
                }
                o.push_str("</td>");
            }
            o.push_str("</tr></table>");
        }
    }
}

fn paragraphs(o: &mut String, text: &str, style: &str) {
    let normalised = text.replace("\r\n", "\n");
    for para in normalised.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let _ = write!(o, "<p style=\"{style}\">{}</p>", inline(para, true).replace('\n', "<br>\n"));
    }
}

/// Split text into (is_mustache, piece) runs. An unclosed `{{` is ordinary text.
fn runs(s: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        match rest[i..].find("}}") {
            Some(j) => {
                // Triple braces close with "}}}".
                let mut end = i + j + 2;
                if rest[end..].starts_with('}') {
                    end += 1;
                }
                if i > 0 {
                    out.push((false, &rest[..i]));
                }
                out.push((true, &rest[i..end]));
                rest = &rest[end..];
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    out
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escape everything but merge tags.
fn escape_keep_tags(s: &str) -> String {
    runs(s).into_iter().map(|(tag, p)| if tag { p.to_string() } else { escape(p) }).collect()
}

/// A URL for an attribute: a system-link tag verbatim, anything else escaped.
fn attr_url(u: &str) -> String {
    let t = u.trim();
    if t.starts_with("{{") && valid_url(t) { t.to_string() } else { escape(t) }
}

/// Inline formatting outside merge tags: `**bold**`, `_italic_`, `[label](url)` (valid URLs only).
fn inline(s: &str, formatting: bool) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for (tag, piece) in runs(s) {
        if tag {
            out.push_str(piece);
        } else if formatting {
            out.push_str(&format_piece(piece));
        } else {
            out.push_str(&escape(piece));
        }
    }
    // Links may span a merge tag (`[Unsubscribe]({{links.unsubscribe}})`): handle them on the whole.
    if formatting { links_html(&out) } else { out }
}

fn format_piece(p: &str) -> String {
    let e = escape(p);
    let e = toggle(&e, "**", "strong");
    toggle(&e, "_", "em")
}

/// Replace paired markers with a tag; an unpaired marker stays literal.
fn toggle(s: &str, marker: &str, tag: &str) -> String {
    let parts: Vec<&str> = s.split(marker).collect();
    if parts.len() < 3 {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let pairs = (parts.len() - 1) / 2;
    for (i, part) in parts.iter().enumerate() {
        out.push_str(part);
        if i + 1 < parts.len() {
            if i < pairs * 2 {
                let _ = write!(out, "{}", if i % 2 == 0 { format!("<{tag}>") } else { format!("</{tag}>") });
            } else {
                out.push_str(marker);
            }
        }
    }
    out
}

/// `[label](url)` in already-escaped text → an anchor when the URL is valid.
fn links_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let label = &after[..close];
        let tail = &after[close + 2..];
        let Some(end) = tail.find(')') else { break };
        let url_escaped = &tail[..end];
        // The URL was escaped with the text; a valid URL has nothing that escaping changes except `&`.
        let url = url_escaped.replace("&amp;", "&");
        if !label.contains('[') && valid_url(&url) {
            out.push_str(&rest[..open]);
            let _ = write!(out, "<a href=\"{}\" style=\"color:{ACCENT}\">{label}</a>", attr_url(&url));
            rest = &tail[end + 1..];
        } else {
            out.push_str(&rest[..open + 1]);
            rest = &rest[open + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The targets of `[label](url)` links in block text (whatever they hold: the caller checks).
fn markdown_urls(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("](") {
        let tail = &rest[open + 2..];
        let Some(end) = tail.find(')') else { break };
        out.push(tail[..end].to_string());
        rest = &tail[end + 1..];
    }
    out
}

fn strip_formatting(s: &str) -> String {
    let mut out = String::new();
    for (tag, piece) in runs(s) {
        if tag {
            out.push_str(piece);
        } else {
            out.push_str(&piece.replace("**", ""));
        }
    }
    text_links(&out)
}

fn text_links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let label = &after[..close];
        let tail = &after[close + 2..];
        let Some(end) = tail.find(')') else { break };
        let url = &tail[..end];
        if !label.contains('[') && valid_url(url) {
            out.push_str(&rest[..open]);
            let _ = write!(out, "{label} ({})", url.trim());
            rest = &tail[end + 1..];
        } else {
            out.push_str(&rest[..open + 1]);
            rest = &rest[open + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn block_text(parts: &mut Vec<String>, b: &Block) {
    match b {
        Block::Heading { text, level } => {
            let t = text.trim().to_string();
            let rule = if *level == 1 { "=" } else { "-" }.repeat(t.chars().count().max(3));
            parts.push(format!("{t}\n{rule}"));
        }
        Block::Text { text } | Block::Footer { text } => parts.push(strip_formatting(text.trim())),
        Block::Button { label, url } => parts.push(format!("{}: {}", label.trim(), url.trim())),
        Block::Image { alt, .. } => {
            if !alt.trim().is_empty() {
                parts.push(format!("[{}]", alt.trim()));
            }
        }
        Block::Divider => parts.push("----------".into()),
        Block::Spacer { .. } => {}
        Block::Columns { left, right } => {
            for b in left.iter().chain(right) {
                block_text(parts, b);
            }
        }
    }
}

fn decode_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" | "#39" => Some('\''),
        "nbsp" => Some(' '),
        n if n.starts_with("#x") || n.starts_with("#X") => {
            u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
        }
        n if n.starts_with('#') => n[1..].parse::<u32>().ok().and_then(char::from_u32),
        _ => None,
    }
}

/// The text a browser would see when it reads a URL in `html`: character references decoded
/// (numeric ones with or without the closing semicolon, and the named ones used to hide a
/// scheme — `&colon;`, `&Tab;`, `&NewLine;`), then ASCII whitespace and control characters
/// dropped (browsers strip them inside a scheme), lowercased. Used to find `javascript:` and
/// friends however they are spelled.
pub fn squash_for_scheme_scan(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    while let Some(c) = html[i..].chars().next() {
        let (decoded, used) = if c == '&' { reference_at(&html[i + 1..]) } else { (None, 0) };
        let ch = decoded.unwrap_or(c);
        i += if decoded.is_some() { 1 + used } else { c.len_utf8() };
        if !(ch.is_ascii_whitespace() || ch.is_control()) {
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// The character a reference (the text after `&`) stands for, and how many bytes it used
/// (its closing semicolon included when present).
fn reference_at(rest: &str) -> (Option<char>, usize) {
    let b = rest.as_bytes();
    let (ch, len) = if b.first() == Some(&b'#') {
        let hex = matches!(b.get(1), Some(b'x' | b'X'));
        let start = if hex { 2 } else { 1 };
        let digits =
            b[start..].iter().take_while(|d| if hex { d.is_ascii_hexdigit() } else { d.is_ascii_digit() }).count();
        if digits == 0 {
            return (None, 0);
        }
        let text = &rest[start..start + digits];
        let value = if hex { u32::from_str_radix(text, 16).ok() } else { text.parse::<u32>().ok() };
        (Some(value.and_then(char::from_u32).unwrap_or('\u{FFFD}')), start + digits)
    } else {
        let len = b.iter().take(10).take_while(|x| x.is_ascii_alphabetic()).count();
        let ch = match rest[..len].to_ascii_lowercase().as_str() {
            "colon" => Some(':'),
            "tab" | "newline" => Some(' '),
            "sol" => Some('/'),
            n => decode_entity(n),
        };
        (ch, len)
    };
    match ch {
        Some(ch) => (Some(ch), if rest[len..].starts_with(';') { len + 1 } else { len }),
        None => (None, 0),
    }
}

fn attr_value(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let offset = tag.len() - rest.len() + 1;
        let v = tag[offset..].trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
            _ => v.split(|c: char| c.is_whitespace() || c == '>').next().unwrap_or("").to_string(),
        });
    }
    None
}

/// Plain text from HTML (the raw-HTML mode). A small linear scanner; never panics.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut link: Option<(String, usize)> = None;
    let mut skip_until: Option<&'static str> = None;
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(end_tag) = skip_until {
            match rest.to_ascii_lowercase().find(end_tag) {
                Some(i) => {
                    rest = &rest[i..];
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if rest.starts_with("{{") {
            let end = rest.find("}}").map(|j| j + 2).unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map(|j| &rest[j + 3..]).unwrap_or("");
            continue;
        }
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else {
                // An unterminated tag: treat the rest as text.
                out.push_str(&rest[1..]);
                break;
            };
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            match (name.as_str(), closing) {
                ("head" | "script" | "style" | "title", false) => {
                    skip_until = Some(match name.as_str() {
                        "head" => "</head",
                        "script" => "</script",
                        "style" => "</style",
                        _ => "</title",
                    });
                }
                ("br", _) => out.push('\n'),
                ("hr", _) => out.push_str("\n----------\n"),
                ("li", false) => out.push_str("\n- "),
                ("li", true) => {}
                ("p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "blockquote", _) => out.push_str("\n\n"),
                ("div" | "tr" | "ul" | "ol" | "section" | "header" | "footer", _) => out.push('\n'),
                ("a", false) => link = attr_value(tag, "href").map(|h| (h, out.len())),
                ("a", true) => {
                    if let Some((href, start)) = link.take() {
                        let label = out.get(start..).unwrap_or("").trim().to_string();
                        let href = href.trim();
                        if !href.is_empty() && !href.starts_with('#') {
                            if label.is_empty() {
                                out.push_str(href);
                            } else if label != href {
                                let _ = write!(out, " ({href})");
                            }
                        }
                    }
                }
                ("img", _) => {
                    if let Some(alt) = attr_value(tag, "alt").filter(|a| !a.trim().is_empty()) {
                        let _ = write!(out, "[{}]", alt.trim());
                    }
                }
                _ => {}
            }
            continue;
        }
        if rest.starts_with('&') {
            let semi = rest[1..].find(';').filter(|j| *j <= 10);
            if let Some(c) = semi.and_then(|j| decode_entity(&rest[1..1 + j])) {
                out.push(c);
                rest = &rest[semi.map(|j| j + 2).unwrap_or(1)..];
                continue;
            }
            out.push('&');
            rest = &rest[1..];
            continue;
        }
        let next = rest.find(['<', '&', '{']).map(|i| if i == 0 { 1 } else { i }).unwrap_or(rest.len());
        let next = (next..=rest.len()).find(|i| rest.is_char_boundary(*i)).unwrap_or(rest.len());
        out.push_str(&rest[..next]);
        rest = &rest[next..];
    }
    // Whitespace: collapse runs inside lines, trim lines, at most one blank line.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let collapsed = line.split([' ', '\t', '\r']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        if collapsed.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        text.push_str(&collapsed);
    }
    text.push('\n');
    text
}

/// A starter template offered when creating one.
pub struct Starter {
    pub key: &'static str,
    pub name: &'static str,
    pub subject: &'static str,
    pub preheader: &'static str,
    pub design: Design,
}

fn footer() -> Block {
    Block::Footer {
        text: "You receive this email because you are a patient of {{organisation.name}}.\n[Unsubscribe]({{links.unsubscribe}}) · [Manage preferences]({{links.preferences}}) · [View in browser]({{links.view_in_browser}})".into(),
    }
}

fn greeting() -> Block {
    Block::Text { text: "Hello {{default contact.first_name \"there\"}},".into() }
}

pub fn starters() -> Vec<Starter> {
    vec![
        Starter {
            key: "appointment_reminder",
            name: "Appointment reminder",
            subject: "A reminder from {{organisation.name}}",
            preheader: "Details about your upcoming visit",
            design: Design {
                blocks: vec![
                    Block::Heading { text: "Your upcoming appointment".into(), level: 1 },
                    greeting(),
                    Block::Text {
                        text: "This is a friendly reminder that you have an appointment with us soon. Please arrive **15 minutes early** and bring your insurance card and a list of the medicines you take.\n\nIf you need to reschedule, let us know at least 24 hours ahead so we can offer the time to another patient.".into(),
                    },
                    Block::Button { label: "Manage my appointment".into(), url: "https://example.org/appointments".into() },
                    Block::Divider,
                    footer(),
                ],
            },
        },
        Starter {
            key: "newsletter",
            name: "Newsletter",
            subject: "News from {{organisation.name}}",
            preheader: "Health tips, services and events this month",
            design: Design {
                blocks: vec![
                    Block::Image {
                        src: "https://example.org/images/newsletter.jpg".into(),
                        alt: "Our care team".into(),
                        width: None,
                        link: None,
                    },
                    Block::Heading { text: "This month at {{organisation.name}}".into(), level: 1 },
                    greeting(),
                    Block::Text {
                        text: "Here is what is new: extended clinic hours, a refreshed patient portal and practical tips for staying well this season.".into(),
                    },
                    Block::Columns {
                        left: vec![
                            Block::Heading { text: "Extended hours".into(), level: 3 },
                            Block::Text { text: "Our clinics now open **evenings on weekdays**.".into() },
                        ],
                        right: vec![
                            Block::Heading { text: "Stay well".into(), level: 3 },
                            Block::Text { text: "Five simple habits for better sleep — [read more](https://example.org/sleep).".into() },
                        ],
                    },
                    Block::Button { label: "Read the full newsletter".into(), url: "https://example.org/news".into() },
                    Block::Spacer { height: 16 },
                    footer(),
                ],
            },
        },
        Starter {
            key: "screening_reminder",
            name: "Screening reminder",
            subject: "Time for your annual screening — {{organisation.name}}",
            preheader: "Preventive care catches problems early",
            design: Design {
                blocks: vec![
                    Block::Heading { text: "It may be time for your annual screening".into(), level: 1 },
                    greeting(),
                    Block::Text {
                        text: "Regular preventive screenings are one of the best ways to stay healthy. Our records suggest you may be due for your **yearly check**.\n\nMost plans cover preventive screenings at no cost to you.".into(),
                    },
                    Block::Button { label: "Book a screening".into(), url: "https://example.org/book".into() },
                    Block::Text { text: "_If you have already scheduled, thank you — no action is needed._".into() },
                    Block::Divider,
                    footer(),
                ],
            },
        },
        Starter {
            key: "event_invitation",
            name: "Event invitation",
            subject: "You're invited: community health fair at {{organisation.name}}",
            preheader: "Free screenings, healthy cooking and family activities",
            design: Design {
                blocks: vec![
                    Block::Heading { text: "Join us at our community health fair".into(), level: 1 },
                    greeting(),
                    Block::Text {
                        text: "Bring the whole family for **free blood pressure checks**, healthy cooking demonstrations, flu shots and activities for kids.\n\nSaturday, 10 am to 2 pm, main campus.".into(),
                    },
                    Block::Button { label: "Reserve a spot".into(), url: "https://example.org/events/health-fair".into() },
                    Block::Spacer { height: 16 },
                    footer(),
                ],
            },
        },
    ]
}

/// Refuse what email clients never run and what would be dangerous on the view-in-browser page:
/// scripts, event-handler attributes, `javascript:` URLs, frames, forms and embedded objects.
pub fn lint_raw_html(html: &str) -> Result<(), DomainError> {
    let lower = html.to_ascii_lowercase();
    for (needle, what) in [
        ("<script", "a <script> element"),
        ("<iframe", "an <iframe>"),
        ("<frame", "a <frame>"),
        ("<object", "an <object>"),
        ("<embed", "an <embed>"),
        ("<form", "a <form>"),
        ("<meta http-equiv", "a <meta http-equiv> redirect"),
        ("<base", "a <base> element"),
    ] {
        if lower.contains(needle) {
            return Err(DomainError::invalid(
                "html",
                format!(
                    "contains {what}. Email apps do not run scripts or active content, so it is not allowed in a template."
                ),
            ));
        }
    }
    // Schemes that run code, however they are spelled (`jav&#x61;script:`, `java\tscript:`).
    let squashed = squash_for_scheme_scan(html);
    for (needle, what) in [
        ("javascript:", "a javascript: link"),
        ("vbscript:", "a vbscript: link"),
        ("data:text/html", "a data:text/html link"),
    ] {
        if squashed.contains(needle) {
            return Err(DomainError::invalid(
                "html",
                format!(
                    "contains {what} (possibly disguised with character references). Email apps do not run scripts, so it is not allowed in a template."
                ),
            ));
        }
    }
    // Event handlers: an attribute starting with "on" inside a tag (onload=, onerror= …).
    let b = lower.as_bytes();
    let mut in_tag = false;
    let mut quote: Option<u8> = None;
    for i in 0..b.len() {
        let c = b[i];
        match (in_tag, quote) {
            (false, _) => in_tag = c == b'<',
            (true, Some(q)) => {
                if c == q {
                    quote = None;
                }
            }
            (true, None) => match c {
                b'>' => in_tag = false,
                b'"' | b'\'' => quote = Some(c),
                b'o' if i > 0
                    && (b[i - 1].is_ascii_whitespace() || b[i - 1] == b'/')
                    && b.get(i + 1) == Some(&b'n')
                    && b[i + 2..].iter().take_while(|x| x.is_ascii_alphabetic()).count() > 0 =>
                {
                    let name_end = i + 2 + b[i + 2..].iter().take_while(|x| x.is_ascii_alphabetic()).count();
                    let rest = b[name_end..].iter().find(|x| !x.is_ascii_whitespace());
                    if rest == Some(&b'=') {
                        return Err(DomainError::invalid(
                            "html",
                            "contains an event-handler attribute (such as onclick or onerror). Email apps do not run scripts, so it is not allowed in a template.",
                        ));
                    }
                }
                _ => {}
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod lint_tests {
    use super::lint_raw_html;

    #[test]
    fn active_content_is_refused_however_it_is_spelled() {
        for bad in [
            "<p>Hi</p><script>alert(1)</script>",
            "<SCRIPT src=x></SCRIPT>",
            "<iframe src=https://x.test></iframe>",
            "<frame src=x>",
            "<object data=x></object>",
            "<embed src=x>",
            "<form action=https://x.test><input></form>",
            "<meta http-equiv=\"refresh\" content=\"0;url=https://x.test\">",
            "<base href=https://x.test/>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"jav&#x61;script:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"vbscript:msgbox\">x</a>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">x</a>",
            "<img src=x onerror=alert(1)>",
            "<img src=x ONERROR = \"alert(1)\">",
            "<body onload='x()'>",
            "<svg/onload=alert(1)>",
        ] {
            let e = lint_raw_html(bad).expect_err(bad);
            let msg = e.to_string();
            assert!(msg.starts_with("html: contains"), "{bad}: {msg}");
            assert!(!msg.contains("alert"), "the message never repeats the input: {msg}");
        }
    }

    #[test]
    fn ordinary_email_html_passes() {
        for good in [
            "<p>Hello {{contact.first_name}}</p>",
            "<table><tr><td style=\"color:red\">Clinic news</td></tr></table>",
            "<a href=\"https://clinic.example/online\">Book online</a>",
            "<p>Call us on weekdays; the javascript course is online.</p>",
            "<p title=\"onion=good\">Words with on: onboarding, online, one</p>",
            "<img src=\"https://clinic.example/logo.png\" alt=\"Logo\">",
            "",
        ] {
            assert!(lint_raw_html(good).is_ok(), "{good}");
        }
    }
}

#[cfg(test)]
mod tests;
