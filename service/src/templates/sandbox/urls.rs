//! PHI never goes into a URL. A mail app fetches images (and link scanners fetch links) the
//! moment a message is opened or delivered, sending the whole address — query string included —
//! to a server that is no part of the covered entity. So a PHI merge field may not appear:
//! - in any attribute that holds a URL (`href`, `src`, `srcset`, `background`, `poster`, `data`,
//!   `xlink:href`, … or any attribute whose value looks like an address), however the attribute
//!   is spelled (any case, character references, namespace prefixes, any quoting);
//! - anywhere in CSS (a `style` attribute or a `<style>` element): `url(…)`, `@import` and
//!   `image-set` all fetch, and CSS escapes make them impossible to spot reliably;
//! - between a tag's attributes, where it could decide which attribute (and so which URL) a tag
//!   gets;
//! - in a web address written as text (`https://…`), which mail apps turn into links.
//!
//! The scan reads the template source as handlebars does: a `{{…}}` tag is one unit wherever it
//! appears (a quote or `>` inside it is not HTML), and a tag's fields are read from its paths
//! (`contact.x`, `contact/x`, `[contact].[x]`, inside helpers and subexpressions). It errs on the
//! side of refusing: markup inside HTML comments is scanned too (Outlook runs conditional comments).
//! System links (`links.unsubscribe` …) and non-PHI fields stay allowed. `message.<key>` and
//! `event.<key>` (values sent by hospital systems) are PHI whatever the key, and refused alike.

use super::{EVENT, MESSAGE, MergeFields, short};
use crate::{ServiceError, ServiceResult};

/// Attributes whose value is a URL (compared after lower-casing, decoding character references
/// and dropping a namespace prefix such as `xlink:` or `v:`).
const URL_ATTRIBUTES: [&str; 24] = [
    "href",
    "src",
    "srcset",
    "imagesrcset",
    "lowsrc",
    "dynsrc",
    "action",
    "formaction",
    "background",
    "poster",
    "cite",
    "data",
    "longdesc",
    "usemap",
    "codebase",
    "classid",
    "archive",
    "profile",
    "manifest",
    "icon",
    "ping",
    "itemid",
    "itemtype",
    "content",
];

fn at_mustache(b: &[u8], i: usize) -> bool {
    b.get(i..).is_some_and(|r| r.starts_with(b"{{"))
}

/// The end (exclusive) of the handlebars tag starting at `start` (which holds `{{`): string
/// literals may hold `}}`; comments end at `--}}` (or `}}` for the short form). An unclosed tag
/// runs to the end.
fn mustache_end(src: &str, start: usize) -> usize {
    let b = src.as_bytes();
    let rest = &src[start..];
    if let Some(body) = rest.strip_prefix("{{!--") {
        return body.find("--}}").map(|i| start + 5 + i + 4).unwrap_or(src.len());
    }
    if let Some(body) = rest.strip_prefix("{{!") {
        return body.find("}}").map(|i| start + 3 + i + 2).unwrap_or(src.len());
    }
    let mut i = start + 2;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'}' && b.get(i + 1) == Some(&b'}') => {
                let mut end = i + 2;
                if b.get(end) == Some(&b'}') {
                    end += 1;
                }
                return end;
            }
            None => {}
        }
        i += 1;
    }
    src.len()
}

/// The PHI fields a handlebars tag (`{{…}}`, comments excluded) refers to, by their labels
/// (`Diagnosis`, `message.clinic`).
fn phi_in_tag(tag: &str, fields: &MergeFields) -> Vec<String> {
    if tag.starts_with("{{!") {
        return vec![];
    }
    let inner = tag.trim_start_matches('{').trim_end_matches('}');
    // Drop string literals: their text is never a path.
    let mut code = String::with_capacity(inner.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in inner.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => {
                quote = None;
                code.push(' ');
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => code.push(c),
        }
    }
    let mut found: Vec<String> = Vec::new();
    for token in
        code.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '=' | '~' | '#' | '^' | '&' | '>' | '*'))
    {
        let path: String = token.chars().filter(|c| !matches!(c, '[' | ']')).collect();
        let segments: Vec<&str> = path.split(['.', '/']).filter(|s| !s.is_empty()).collect();
        for pair in segments.windows(2) {
            let label = if pair[0].eq_ignore_ascii_case("contact") {
                fields
                    .fields()
                    .iter()
                    .find(|f| f.is_phi && f.key.eq_ignore_ascii_case(pair[1]))
                    .map(|f| f.label.clone())
            } else if pair[0].eq_ignore_ascii_case(MESSAGE) || pair[0].eq_ignore_ascii_case(EVENT) {
                Some(format!("{}.{}", pair[0].to_ascii_lowercase(), short(pair[1])))
            } else {
                None
            };
            if let Some(label) = label
                && !found.contains(&label)
            {
                found.push(label);
            }
        }
    }
    found
}

/// The first PHI field any handlebars tag within `src[from..to]` refers to (its label).
fn first_phi(src: &str, from: usize, to: usize, fields: &MergeFields) -> Option<String> {
    let mut i = from;
    while let Some(off) = src[i..to].find("{{") {
        let start = i + off;
        let end = mustache_end(src, start).min(to);
        if let Some(f) = phi_in_tag(&src[start..end], fields).into_iter().next() {
            return Some(f);
        }
        i = end.max(start + 2);
        if i >= to {
            break;
        }
    }
    None
}

fn refuse(field: &str, label: &str, place: String, why: &str) -> ServiceError {
    ServiceError::invalid(
        field,
        format!(
            "puts {label} into {place}. {why} Protected health information may not go there: use the field in the text of the message instead."
        ),
    )
}

const URL_WHY: &str = "Mail apps and link scanners send the whole address, with everything in it, to that server when the message is opened or the link is followed.";
const CSS_WHY: &str = "Styles can load images from other servers (url(…), @import), which would send the value there when the message is opened.";

/// The attribute name as a browser (or a careless one) might read it: character references
/// decoded, lower-cased, whitespace and control characters dropped.
fn attribute_name(raw: &str) -> String {
    domain::templates::squash_for_scheme_scan(raw)
}

fn is_url_attribute(name: &str, value: &str) -> bool {
    let local = name.rsplit(':').next().unwrap_or(name);
    if URL_ATTRIBUTES.contains(&local) {
        return true;
    }
    let local = local.strip_prefix("data-").unwrap_or(local);
    if local.ends_with("src") || local.ends_with("href") || local.ends_with("url") {
        return true;
    }
    // Any value that reads as an address (`https://…`, `//host/…`).
    let squashed = domain::templates::squash_for_scheme_scan(value);
    squashed.contains("://") || squashed.starts_with("//")
}

/// Check an HTML body (as authored, before rendering).
pub(super) fn check_html(src: &str, fields: &MergeFields) -> ServiceResult<()> {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if at_mustache(b, i) {
            i = mustache_end(src, i).max(i + 2);
            continue;
        }
        if b[i] == b'<' && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            let (end, tag) = scan_tag(src, i + 1, fields)?;
            i = end;
            if tag == "style" {
                let close = src[i..].to_ascii_lowercase().find("</style").map(|j| i + j).unwrap_or(src.len());
                if let Some(f) = first_phi(src, i, close, fields) {
                    return Err(refuse("html", &f, "a <style> block".into(), CSS_WHY));
                }
                i = close;
            }
            continue;
        }
        i += 1;
    }
    check_text_addresses("html", src, fields)
}

/// Read one tag from just after its `<`: returns where it ends and its lower-cased name, and
/// refuses PHI in its URL attributes, its styles and between its attributes.
fn scan_tag(src: &str, start: usize, fields: &MergeFields) -> ServiceResult<(usize, String)> {
    let b = src.as_bytes();
    let mut i = start;
    while i < b.len() && !(b[i].is_ascii_whitespace() || b[i] == b'/' || b[i] == b'>') {
        i += 1;
    }
    let tag = src[start..i].to_ascii_lowercase();
    let place_in_tag = || format!("the <{}> tag", tag.chars().take(30).collect::<String>());
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return Ok((i, tag));
        }
        if b[i] == b'>' {
            return Ok((i + 1, tag));
        }
        // The attribute's name (a handlebars tag inside it is one unit).
        let name_start = i;
        while i < b.len() && !(b[i].is_ascii_whitespace() || b[i] == b'/' || b[i] == b'>' || b[i] == b'=') {
            if at_mustache(b, i) {
                i = mustache_end(src, i).max(i + 2);
            } else {
                i += 1;
            }
        }
        if i == name_start {
            // A stray `=`: step over it.
            i += 1;
            continue;
        }
        let raw_name = &src[name_start..i];
        if let Some(f) = first_phi(src, name_start, i, fields) {
            return Err(refuse(
                "html",
                &f,
                place_in_tag(),
                "Between a tag's attributes it could decide which address the tag loads.",
            ));
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let (value_start, value_end, next) = match b.get(j) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let mut k = j + 1;
                while k < b.len() && b[k] != q {
                    k = if at_mustache(b, k) { mustache_end(src, k).max(k + 2) } else { k + 1 };
                }
                let end = k.min(b.len());
                (j + 1, end, (end + 1).min(b.len()))
            }
            _ => {
                let mut k = j;
                while k < b.len() && !(b[k].is_ascii_whitespace() || b[k] == b'>') {
                    k = if at_mustache(b, k) { mustache_end(src, k).max(k + 2) } else { k + 1 };
                }
                let end = k.min(b.len());
                (j, end, end)
            }
        };
        i = next;
        let name = attribute_name(raw_name);
        let value = &src[value_start..value_end];
        if name == "style" {
            if let Some(f) = first_phi(src, value_start, value_end, fields) {
                return Err(refuse("html", &f, format!("the style attribute of {}", place_in_tag()), CSS_WHY));
            }
        } else if is_url_attribute(&name, value)
            && let Some(f) = first_phi(src, value_start, value_end, fields)
        {
            let shown: String = name.chars().take(30).collect();
            return Err(refuse("html", &f, format!("the {shown} address of {}", place_in_tag()), URL_WHY));
        }
    }
}

/// Web addresses written as text (`https://…` up to the next space outside a handlebars tag):
/// mail apps turn them into links.
pub(super) fn check_text_addresses(field: &str, src: &str, fields: &MergeFields) -> ServiceResult<()> {
    let lower = src.to_ascii_lowercase();
    let mut from = 0;
    while let Some(off) = lower[from..].find("://") {
        let at = from + off;
        let start = lower[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map(|(p, c)| p + c.len_utf8())
            .unwrap_or(0);
        let b = src.as_bytes();
        let mut end = at + 3;
        while end < b.len() && !(b[end].is_ascii_whitespace() || matches!(b[end], b'<' | b'"' | b'\'' | b'>')) {
            end = if at_mustache(b, end) { mustache_end(src, end).max(end + 2) } else { end + 1 };
        }
        let end = end.min(src.len());
        if let Some(f) = first_phi(src, start, end, fields) {
            return Err(refuse(field, &f, "a web address".into(), URL_WHY));
        }
        from = end.max(at + 3);
    }
    Ok(())
}

/// The block editor's addresses (buttons, images, image links, `[label](url)` links), checked
/// before the HTML is generated so the message can name the block.
pub(crate) fn check_design(design: &domain::templates::Design, fields: &MergeFields) -> ServiceResult<()> {
    for (place, what, url) in design.addresses() {
        if let Some(f) = first_phi(&url, 0, url.len(), fields) {
            return Err(ServiceError::invalid(
                &place,
                format!(
                    "the {what} may not include {f} — {URL_WHY} Protected health information may not go there: use the field in the text of the message instead."
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::contacts::{CustomField, FieldType};

    fn fields() -> MergeFields {
        let f = |key: &str, label: &str, is_phi: bool| CustomField {
            id: uuid::Uuid::nil(),
            key: key.into(),
            label: label.into(),
            field_type: FieldType::Text,
            options: vec![],
            is_phi,
        };
        MergeFields::new(&[f("diagnosis", "Diagnosis", true), f("site", "Clinic site", false)])
    }

    fn refused(html: &str) -> String {
        match check_html(html, &fields()) {
            Ok(()) => panic!("accepted: {html}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn phi_in_url_attributes_is_refused_however_written() {
        for (html, field, place) in [
            ("<img src=\"https://x/?dob={{contact.date_of_birth}}\">", "Date of birth", "src"),
            ("<IMG SRC='https://x/{{contact.diagnosis}}'>", "Diagnosis", "src"),
            ("<img\n\tsrc\n=\n\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "src"),
            ("<img src=https://x/{{contact.diagnosis}}>", "Diagnosis", "src"),
            ("<img src=https://x/?a=1&b={{contact.diagnosis}} alt=x>", "Diagnosis", "src"),
            ("<img/src=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "src"),
            ("<img s&#114;c=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "src"),
            ("<img &#x73;&#x72;&#x63;=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "src"),
            ("<img srcset=\"a.png 1x, https://x/{{contact.diagnosis}}.png 2x\">", "Diagnosis", "srcset"),
            ("<a href=\"https://x/{{ contact.diagnosis }}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{\n  contact.diagnosis\n}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{~contact.diagnosis~}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{contact.[diagnosis]}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{[contact]/diagnosis}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{upper (lower contact.diagnosis)}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{default contact.diagnosis \"a>b\\\"c\"}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{#if contact.diagnosis}}y{{/if}}\">x</a>", "Diagnosis", "href"),
            ("<a href=\"https://x/{{default contact.site \"}}\"}}{{contact.diagnosis}}\">x</a>", "Diagnosis", "href"),
            ("<table background=\"https://x/{{contact.email}}\">", "Email", "background"),
            ("<video poster=\"https://x/{{contact.phone}}\"></video>", "Phone", "poster"),
            ("<v:image xlink:href=\"https://x/{{contact.last_name}}\"/>", "Last name", "xlink:href"),
            ("<v:fill src=\"https://x/{{contact.last_name}}\"/>", "Last name", "src"),
            ("<blockquote cite=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "cite"),
            ("<td data-bg=\"https://x/{{contact.diagnosis}}\">", "Diagnosis", "data-bg"),
            ("<td data-original-src=\"x/{{contact.diagnosis}}\">", "Diagnosis", "data-original-src"),
            ("<meta content=\"0;url=https://x/{{contact.diagnosis}}\">", "Diagnosis", "content"),
            ("<!--[if mso]><v:image src=\"https://x/{{contact.diagnosis}}\"/><![endif]-->", "Diagnosis", "src"),
        ] {
            let m = refused(html);
            assert!(m.contains(field) && m.contains(place), "{html}: {m}");
            assert!(!m.contains("https://x"), "the message does not echo the template: {m}");
        }
    }

    #[test]
    fn phi_in_css_is_refused() {
        for (html, place) in [
            ("<td style=\"background:url('https://x/{{contact.diagnosis}}')\">", "style attribute"),
            ("<td STYLE=background:url(https://x/{{contact.diagnosis}})>", "style attribute"),
            ("<td style=\"background:u\\72l(https://x/{{contact.diagnosis}})\">", "style attribute"),
            ("<td style=\"color:red;{{contact.diagnosis}}\">", "style attribute"),
            ("<style>.a{background:url(\"https://x/{{contact.diagnosis}}\")}</style>", "<style>"),
            ("<STYLE type=text/css>@import 'https://x/{{contact.diagnosis}}';</STYLE>", "<style>"),
        ] {
            let m = refused(html);
            assert!(m.contains("Diagnosis") && m.contains(place), "{html}: {m}");
        }
    }

    #[test]
    fn phi_between_attributes_or_in_written_addresses_is_refused() {
        let m = refused("<img {{#if contact.diagnosis}}src=\"https://x/a\"{{else}}src=\"https://x/b\"{{/if}}>");
        assert!(m.contains("Diagnosis") && m.contains("<img>"), "{m}");
        let m = refused("<p>Visit https://x/?d={{contact.diagnosis}} today</p>");
        assert!(m.contains("Diagnosis") && m.contains("web address"), "{m}");
        let text = check_text_addresses("text", "See HTTPS://x/{{ contact.diagnosis }}/page", &fields());
        assert!(text.is_err());
    }

    #[test]
    fn phi_in_text_non_url_attributes_and_system_links_pass() {
        for html in [
            "<p>Hello {{contact.first_name}}, about {{contact.diagnosis}}.</p>",
            "<img src=\"https://clinic.example/logo.png\" alt=\"{{contact.diagnosis}}\" title=\"{{contact.first_name}}\">",
            "<a href=\"{{links.unsubscribe}}\">Unsubscribe</a> <a href='{{links.preferences}}'>Prefs</a>",
            "<a href=\"https://clinic.example/{{contact.site}}?tz={{contact.time_zone}}\">Your clinic</a>",
            "<td style=\"color:#111\">{{contact.diagnosis}}</td>",
            "<a href=\"https://x/{{!-- contact.diagnosis is not used here --}}\">x</a>",
            "<p>Visit https://clinic.example/ {{contact.diagnosis}}</p>",
            "<p>1 < 2 and {{contact.diagnosis}} > 0</p><style>p{color:red}</style><p>{{contact.diagnosis}}</p>",
            "<p>unterminated <img src=\"x",
            "<a href=\"https://x/\">{{contact.diagnosis}}</a>",
        ] {
            assert!(check_html(html, &fields()).is_ok(), "{html}: {:?}", check_html(html, &fields()).err());
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        for html in [
            "<",
            "<a",
            "<a href",
            "<a href=",
            "<a href=\"",
            "{{",
            "<a href=\"{{",
            "<img src={{contact.diagnosis",
            "<a {{",
            "<style>",
            "<style>{{contact.diagnosis",
            "é<ü href=\"ß{{contact.diagnosis}}\">",
            "://{{",
            "<a =x>",
            "<a hréf=\"ü{{contact.diagnosis}}\">",
            "ü://ö{{contact.diagnosis}}",
            "<a href=ü{{",
            "{{!--",
            "{{!",
            "<x{{ü",
        ] {
            let _ = check_html(html, &fields());
            let _ = check_text_addresses("text", html, &fields());
        }
        // Unclosed tags that would still render PHI into a URL are refused.
        assert!(check_html("<img src={{contact.diagnosis", &fields()).is_err());
        assert!(check_html("<a href=\"ü{{contact.diagnosis}}\">x</a>", &fields()).is_err());
    }
}
