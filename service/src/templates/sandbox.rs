//! The template sandbox: the one place handlebars is configured.
//!
//! Invariants:
//! - A template is checked before it is stored: size and nesting are bounded before the parser
//!   sees it, then its syntax tree is walked and anything but plain merge fields, the helpers
//!   registered here and `if`/`unless` blocks is refused (partials, decorators, raw `{{{…}}}`
//!   output, `each`/`with`/`lookup`/`log`, parent and `@` paths). Unknown merge fields are
//!   refused at save time, not discovered at send time; strict mode backs this up at render time.
//! - Helpers are pure functions of their arguments (and the contact's own time zone): none reads
//!   the environment, files, the clock or the network.
//! - Rendering writes into a capped output that stops at `MAX_OUTPUT_BYTES` or after
//!   `RENDER_BUDGET`, whichever comes first.
//! - Subjects and preheaders may not use PHI fields (they show on lock screens and inbox lists);
//!   a body that uses them marks the template as containing PHI.
//! - Besides the contact, two namespaces belong to the message rather than the person:
//!   `message.<key>` (the data an integration sends with an API message) and `event.<key>` (the
//!   properties of the patient event that started a sequence). Their values come from hospital
//!   systems, so both are PHI; which kinds of message have them is `namespaces_allowed`'s rule.
//!   A key the data lacks renders empty (`render` fills it with null), not a failed message.
//! - PHI fields never go into a URL, CSS or a written web address (`urls`): a mail app would
//!   send them to whichever server the address names.
//! - Errors name fields and places in the template, never contact values.

use crate::{ServiceError, ServiceResult};
use domain::Phi;
use domain::contacts::{BuiltinField, CustomField, FieldType};
use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, JsonValue, Output, PathSeg, RenderContext, RenderError, RenderErrorReason,
    Renderable, ScopedJson, handlebars_helper,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Largest HTML or text body accepted (the 15 KB of a rich newsletter, many times over).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_PREHEADER_CHARS: usize = 300;
/// `if`/`unless` blocks nested deeper than this are refused.
pub const MAX_NESTING: usize = 8;
/// Subexpressions nested deeper than this are refused.
pub const MAX_SUBEXPRESSION_DEPTH: usize = 3;
/// Mustaches per part.
pub const MAX_EXPRESSIONS: usize = 2_000;
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
pub const RENDER_BUDGET: Duration = Duration::from_millis(250);

/// The system links every message carries; the values are signed tokens made by the sender.
pub const LINKS: [&str; 3] = ["unsubscribe", "view_in_browser", "preferences"];
const HELPERS: [&str; 5] = ["default", "date", "upper", "lower", "eq"];
const BLOCKS: [&str; 2] = ["if", "unless"];
/// `{{message.<key>}}`: the data sent with an API message (`POST /api/v1/messages`).
pub const MESSAGE: &str = "message";
/// `{{event.<key>}}`: the properties of the patient event that started a sequence.
pub const EVENT: &str = "event";

/// A merge field a template may use: `{{contact.<key>}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub key: String,
    pub label: String,
    pub is_phi: bool,
    pub is_date: bool,
}

/// The merge fields of an organisation: the built-in contact fields and its custom fields.
#[derive(Debug, Clone)]
pub struct MergeFields(Vec<FieldInfo>);

impl MergeFields {
    pub fn new(custom: &[CustomField]) -> Self {
        let builtin = BuiltinField::ALL.into_iter().map(|f| FieldInfo {
            key: f.key().to_string(),
            label: f.label().to_string(),
            is_phi: f.is_phi(),
            is_date: f.field_type() == FieldType::Date,
        });
        let custom = custom.iter().map(|f| FieldInfo {
            key: f.key.clone(),
            label: f.label.clone(),
            is_phi: f.is_phi,
            is_date: f.field_type == FieldType::Date,
        });
        MergeFields(builtin.chain(custom).collect())
    }
    pub fn fields(&self) -> &[FieldInfo] {
        &self.0
    }
    fn get(&self, key: &str) -> Option<&FieldInfo> {
        self.0.iter().find(|f| f.key == key)
    }
    /// Every variable a template may reference, e.g. `contact.first_name`, `links.unsubscribe`.
    pub fn variables(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().map(|f| format!("contact.{}", f.key)).collect();
        v.push("organisation.name".into());
        v.extend(LINKS.iter().map(|l| format!("links.{l}")));
        v
    }
}

/// The four parts of a template as authored.
#[derive(Debug, Clone, Copy)]
pub struct TemplateParts<'a> {
    pub subject: &'a str,
    pub preheader: &'a str,
    pub html: &'a str,
    pub text: &'a str,
}

/// A template that passed every check, compiled and ready to render.
pub struct Checked {
    subject: Template,
    preheader: Template,
    html: Template,
    text: Template,
    /// The body references PHI fields: campaigns using it must be delivered securely.
    pub uses_phi: bool,
    /// Every `contact.*` field the template references.
    pub fields_used: BTreeSet<String>,
    /// Every `message.*` key the template references (PHI: filled from an API message's data).
    pub message_keys: BTreeSet<String>,
    /// Every `event.*` key the template references (PHI: a sequence's trigger event properties).
    pub event_keys: BTreeSet<String>,
    /// The `message.x` / `event.x` paths given to the `date` helper (previews fill them with a
    /// made-up instant rather than a label, which the helper would refuse).
    pub(crate) dated: BTreeSet<String>,
    html_has_unsubscribe: bool,
    text_has_unsubscribe: bool,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("uses_phi", &self.uses_phi)
            .field("fields_used", &self.fields_used)
            .field("message_keys", &self.message_keys)
            .field("event_keys", &self.event_keys)
            .finish()
    }
}

/// A message personalised for one contact: PHI until it is sealed or sent.
pub struct Rendered {
    pub subject: Phi<String>,
    pub preheader: Phi<String>,
    pub html: Phi<String>,
    pub text: Phi<String>,
}

/// The registries. Build one per process and share it.
pub struct Sandbox {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

handlebars_helper!(DefaultHelper: |v: Json, fallback: Json| if v.is_null() || v.as_str() == Some("") { fallback.clone() } else { v.clone() });
handlebars_helper!(UpperHelper: |v: Json| JsonValue::String(plain(v).to_uppercase()));
handlebars_helper!(LowerHelper: |v: Json| JsonValue::String(plain(v).to_lowercase()));
handlebars_helper!(EqHelper: |a: Json, b: Json| a == b);

fn plain(v: &JsonValue) -> String {
    match v {
        JsonValue::Null => String::new(),
        JsonValue::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{{date value "%B %-d, %Y"}}`: a date (`YYYY-MM-DD`) as written, an instant (ISO 8601 with an
/// offset or `Z`, seconds optional) in the contact's own time zone (UTC when unknown), or a local
/// date and time without an offset (`2027-01-05T14:30`, as a scheduling system may send it) as
/// written — there is no zone to convert from. Empty for an empty value.
struct DateHelper;

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(JsonValue::Null);
        let format = h.param(1).and_then(|p| p.value().as_str()).unwrap_or("%Y-%m-%d");
        let tz = ctx.data().pointer("/contact/time_zone").and_then(|v| v.as_str());
        format_date(&value, format, tz).map(|s| ScopedJson::Derived(JsonValue::String(s))).ok_or_else(|| {
            RenderErrorReason::Other("the date helper was given a value that is not a date".into()).into()
        })
    }
}

/// Whether the `date` helper can read a value (null and empty count: they render empty).
pub fn date_readable(value: &JsonValue) -> bool {
    format_date(value, "%Y", None).is_some()
}

impl Checked {
    /// The `message.*` keys the template formats with `date` (an API message's data is checked
    /// against them at acceptance, so a value that is not a date is refused there, not at send).
    pub fn dated_message_keys(&self) -> impl Iterator<Item = &str> {
        self.dated.iter().filter_map(|p| p.strip_prefix("message."))
    }
}

fn valid_date_format(format: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    format.len() <= 64 && !format.is_empty() && StrftimeItems::new(format).all(|i| !matches!(i, Item::Error))
}

fn format_date(value: &JsonValue, format: &str, tz: Option<&str>) -> Option<String> {
    use std::fmt::Write;
    if !valid_date_format(format) {
        return None;
    }
    let s = match value {
        JsonValue::Null => return Some(String::new()),
        JsonValue::String(s) if s.is_empty() => return Some(String::new()),
        JsonValue::String(s) => s.as_str(),
        _ => return None,
    };
    // Dates are short; anything longer is not one (and is not worth parsing).
    if s.len() > 40 {
        return None;
    }
    let mut out = String::new();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        write!(out, "{}", d.format(format)).ok()?;
    } else if let Some(t) = instant(s) {
        let zone: chrono_tz::Tz = tz.and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
        write!(out, "{}", t.with_timezone(&zone).format(format)).ok()?;
    } else {
        let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())?;
        write!(out, "{}", local.format(format)).ok()?;
    }
    Some(out)
}

/// An ISO 8601 instant: RFC 3339, or without seconds (`2027-01-05T14:30Z`, `…14:30+01:00`).
fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let with_offset = match s.strip_suffix(['Z', 'z']) {
        Some(rest) => format!("{rest}+00:00"),
        None => s.to_string(),
    };
    ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%d %H:%M%:z"]
        .iter()
        .find_map(|f| chrono::DateTime::parse_from_str(&with_offset, f).ok())
}

/// Output that refuses to grow past a size or to run past a time budget.
struct Capped {
    buf: String,
    deadline: Instant,
    overflow: Option<&'static str>,
}

impl Output for Capped {
    fn write(&mut self, seg: &str) -> std::io::Result<()> {
        if self.buf.len() + seg.len() > MAX_OUTPUT_BYTES {
            self.overflow = Some("the rendered message would be larger than 1 MB");
            return Err(std::io::Error::other("output limit"));
        }
        if Instant::now() > self.deadline {
            self.overflow = Some("rendering took too long");
            return Err(std::io::Error::other("time limit"));
        }
        self.buf.push_str(seg);
        Ok(())
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let build = |escape: bool| {
            let mut r = Handlebars::new();
            r.set_strict_mode(true);
            r.set_prevent_indent(true);
            if escape {
                r.register_escape_fn(handlebars::html_escape);
            } else {
                r.register_escape_fn(handlebars::no_escape);
            }
            r.register_helper("default", Box::new(DefaultHelper));
            r.register_helper("upper", Box::new(UpperHelper));
            r.register_helper("lower", Box::new(LowerHelper));
            r.register_helper("eq", Box::new(EqHelper));
            r.register_helper("date", Box::new(DateHelper));
            r
        };
        Sandbox { html: build(true), text: build(false) }
    }

    /// Check and compile a template for an organisation's fields.
    pub fn check(&self, parts: TemplateParts<'_>, fields: &MergeFields) -> ServiceResult<Checked> {
        if parts.subject.trim().is_empty() {
            return Err(ServiceError::invalid("subject", "is required"));
        }
        if parts.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ServiceError::invalid("subject", format!("is longer than {MAX_SUBJECT_CHARS} characters")));
        }
        if parts.subject.contains(['\r', '\n']) {
            return Err(ServiceError::invalid("subject", "must be a single line"));
        }
        if parts.preheader.chars().count() > MAX_PREHEADER_CHARS {
            return Err(ServiceError::invalid("preheader", format!("is longer than {MAX_PREHEADER_CHARS} characters")));
        }
        if parts.html.trim().is_empty() {
            return Err(ServiceError::invalid("html", "is required"));
        }
        let mut used = Used::default();
        let subject = compile("subject", parts.subject, fields, &mut used)?;
        phi_free("subject", "The subject", &used, fields)?;
        let mut used_pre = Used::default();
        let preheader = compile("preheader", parts.preheader, fields, &mut used_pre)?;
        phi_free("preheader", "The preview text", &used_pre, fields)?;
        let mut used_html = Used::default();
        let html = compile("html", parts.html, fields, &mut used_html)?;
        let mut used_text = Used::default();
        let text = compile("text", parts.text, fields, &mut used_text)?;
        // PHI never goes into an address a mail app or link scanner would fetch.
        urls::check_html(parts.html, fields)?;
        urls::check_text_addresses("text", parts.text, fields)?;
        let (mut fields_used, mut message_keys, mut event_keys, mut dated) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for u in [&used, &used_pre, &used_html, &used_text] {
            fields_used.extend(u.contact.iter().cloned());
            message_keys.extend(u.message.iter().cloned());
            event_keys.extend(u.event.iter().cloned());
            dated.extend(u.dated.iter().cloned());
        }
        // Message and event values come from hospital systems: PHI, whatever the key.
        let uses_phi = fields_used.iter().any(|k| fields.get(k).is_some_and(|f| f.is_phi))
            || !message_keys.is_empty()
            || !event_keys.is_empty();
        Ok(Checked {
            subject,
            preheader,
            html,
            text,
            uses_phi,
            fields_used,
            message_keys,
            event_keys,
            dated,
            html_has_unsubscribe: used_html.links.contains("unsubscribe"),
            text_has_unsubscribe: used_text.links.contains("unsubscribe"),
        })
    }

    /// Render a checked template. `data` holds `contact` (every field, null when empty),
    /// `organisation.name` and `links` (signed URLs), and where the kind of message has them
    /// `message` (an API message's data) or `event` (a sequence's trigger event properties).
    /// A `message`/`event` key the template uses but the data lacks renders empty: those values
    /// come from another system, and a missing one must not make the message unbuildable.
    pub fn render(&self, t: &Checked, data: Phi<JsonValue>) -> ServiceResult<Rendered> {
        let unsubscribe = data.expose().pointer("/links/unsubscribe").and_then(|v| v.as_str()).map(str::to_string);
        let mut data = data.into_inner();
        fill_missing(&mut data, MESSAGE, &t.message_keys);
        fill_missing(&mut data, EVENT, &t.event_keys);
        let ctx = Context::from(data);
        let deadline = Instant::now() + RENDER_BUDGET;
        let subject = self.run(&self.text, &t.subject, &ctx, deadline)?.replace(['\r', '\n'], " ");
        let preheader = self.run(&self.text, &t.preheader, &ctx, deadline)?.replace(['\r', '\n'], " ");
        let mut html = self.run(&self.html, &t.html, &ctx, deadline)?;
        let mut text = self.run(&self.text, &t.text, &ctx, deadline)?;
        // The preheader is the inbox preview line: a hidden first element of the body.
        if !preheader.trim().is_empty() {
            let hidden = format!(
                r#"<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{}</div>"#,
                handlebars::html_escape(&preheader)
            );
            let at = html.find("<body").and_then(|b| html[b..].find('>').map(|e| b + e + 1)).unwrap_or(0);
            html.insert_str(at, &hidden);
        }
        // Every message carries a working unsubscribe link, whether or not the author placed one.
        if let Some(url) = unsubscribe {
            if !t.html_has_unsubscribe {
                let footer = format!(
                    r#"<p style="font-size:12px;color:#6b7280;text-align:center;margin:24px 0"><a href="{}" style="color:#6b7280">Unsubscribe</a></p>"#,
                    handlebars::html_escape(&url)
                );
                match html.rfind("</body>") {
                    Some(i) => html.insert_str(i, &footer),
                    None => html.push_str(&footer),
                }
            }
            if !t.text_has_unsubscribe {
                text.push_str(&format!("\n\nUnsubscribe: {url}\n"));
            }
        }
        Ok(Rendered {
            subject: Phi::new(subject),
            preheader: Phi::new(preheader),
            html: Phi::new(html),
            text: Phi::new(text),
        })
    }

    fn run(&self, reg: &Handlebars<'static>, t: &Template, ctx: &Context, deadline: Instant) -> ServiceResult<String> {
        let mut out = Capped { buf: String::with_capacity(16 * 1024), deadline, overflow: None };
        let mut rc = RenderContext::new(None);
        match t.render(reg, ctx, &mut rc, &mut out) {
            Ok(()) => Ok(out.buf),
            Err(_) if out.overflow.is_some() => {
                Err(ServiceError::invalid("template", out.overflow.unwrap_or("rendering stopped")))
            }
            // Strict mode: the data lacked a field the template uses (the check makes this rare).
            // The message names no value.
            Err(e) => Err(ServiceError::invalid("template", render_error_message(&e))),
        }
    }
}

/// Put null under `data[namespace][key]` for every used key the data lacks (strict mode would
/// otherwise refuse to render). Only for the message-bound namespaces.
fn fill_missing(data: &mut JsonValue, namespace: &str, keys: &BTreeSet<String>) {
    if keys.is_empty() {
        return;
    }
    let Some(root) = data.as_object_mut() else { return };
    let slot = root.entry(namespace).or_insert_with(|| JsonValue::Object(Default::default()));
    if !slot.is_object() {
        *slot = JsonValue::Object(Default::default());
    }
    if let Some(values) = slot.as_object_mut() {
        for k in keys {
            values.entry(k.as_str()).or_insert(JsonValue::Null);
        }
    }
}

/// Which message-bound namespaces a kind of message has data for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// `message.*`: the data sent with an API message.
    pub message: bool,
    /// `event.*`: the properties of the event that started a sequence.
    pub event: bool,
}

impl Allowed {
    /// A campaign goes to many people at once: there is no message data and no event.
    pub const CAMPAIGN: Allowed = Allowed { message: false, event: false };
    /// `POST /api/v1/messages`: its `data`, but no event.
    pub const API_MESSAGE: Allowed = Allowed { message: true, event: false };
    /// A sequence's email: the trigger event's properties, but no message data.
    pub const SEQUENCE_EMAIL: Allowed = Allowed { message: false, event: true };
}

/// Refuse a template that uses a namespace this kind of message has no data for (field
/// `template`; the message names the first such key — template text, never a value).
pub fn namespaces_allowed(t: &Checked, allowed: Allowed) -> ServiceResult<()> {
    keys_allowed(&t.message_keys, &t.event_keys, allowed)
}

/// `namespaces_allowed` on keys read back from a stored version (`template_version.message_keys`,
/// `event_keys`), so a check needs no compile.
pub fn keys_allowed<M: AsRef<str>, E: AsRef<str>>(
    message_keys: impl IntoIterator<Item = M>,
    event_keys: impl IntoIterator<Item = E>,
    allowed: Allowed,
) -> ServiceResult<()> {
    if !allowed.message
        && let Some(k) = message_keys.into_iter().next()
    {
        return Err(ServiceError::invalid(
            "template",
            format!(
                "uses {{{{message.{}}}}}, which is filled only in messages sent through the API (POST /api/v1/messages) from the data sent with them; this kind of message has no such data. Choose a template without message.… fields.",
                short(k.as_ref())
            ),
        ));
    }
    if !allowed.event
        && let Some(k) = event_keys.into_iter().next()
    {
        return Err(ServiceError::invalid(
            "template",
            format!(
                "uses {{{{event.{}}}}}, which is filled only in sequence emails from the event that started the sequence; this kind of message has no event. Choose a template without event.… fields.",
                short(k.as_ref())
            ),
        ));
    }
    Ok(())
}

fn render_error_message(e: &RenderError) -> String {
    match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) if path.len() <= 100 => {
            format!("uses {path}, which this message has no value for")
        }
        _ => "could not be rendered".to_string(),
    }
}

#[derive(Default)]
struct Used {
    contact: BTreeSet<String>,
    links: BTreeSet<String>,
    message: BTreeSet<String>,
    event: BTreeSet<String>,
    /// `message.x` / `event.x` given to `date`.
    dated: BTreeSet<String>,
}

fn phi_free(field: &str, what: &str, used: &Used, fields: &MergeFields) -> ServiceResult<()> {
    let mut phi: Vec<String> =
        used.contact.iter().filter_map(|k| fields.get(k)).filter(|f| f.is_phi).map(|f| f.label.clone()).collect();
    phi.extend(used.message.iter().map(|k| format!("{MESSAGE}.{}", short(k))));
    phi.extend(used.event.iter().map(|k| format!("{EVENT}.{}", short(k))));
    if phi.is_empty() {
        return Ok(());
    }
    Err(ServiceError::invalid(
        field,
        format!(
            "{what} may not include {} — it is protected health information, and the subject and preview text show on lock screens and in inbox lists, where anyone nearby can read them. Put it in the body instead.",
            phi.join(", ")
        ),
    ))
}

/// Cheap checks before the parser runs, so hostile input cannot make it work hard: size, the
/// number of mustaches, and how deeply blocks and subexpressions nest.
fn prescan(field: &str, src: &str) -> ServiceResult<()> {
    if src.len() > MAX_BODY_BYTES {
        return Err(ServiceError::invalid(field, format!("is larger than {} KB", MAX_BODY_BYTES / 1024)));
    }
    let mut depth: usize = 0;
    let mut count = 0;
    let mut rest = src;
    while let Some(i) = rest.find("{{") {
        count += 1;
        if count > MAX_EXPRESSIONS {
            return Err(ServiceError::invalid(field, format!("has more than {MAX_EXPRESSIONS} merge tags")));
        }
        rest = &rest[i + 2..];
        let end = rest.find("}}").unwrap_or(rest.len());
        let tag = rest[..end].trim_start_matches(['{', '~']).trim_start();
        if tag.starts_with('#') || tag.starts_with('^') && tag.len() > 1 {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(ServiceError::invalid(field, format!("nests blocks more than {MAX_NESTING} deep")));
            }
        } else if tag.starts_with('/') {
            depth = depth.saturating_sub(1);
        }
        let mut paren: usize = 0;
        for c in rest[..end].chars() {
            match c {
                '(' => {
                    paren += 1;
                    if paren > MAX_SUBEXPRESSION_DEPTH {
                        return Err(ServiceError::invalid(
                            field,
                            format!("nests helpers more than {MAX_SUBEXPRESSION_DEPTH} deep"),
                        ));
                    }
                }
                ')' => paren = paren.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

fn compile(field: &str, src: &str, fields: &MergeFields, used: &mut Used) -> ServiceResult<Template> {
    prescan(field, src)?;
    let t = Template::compile(src).map_err(|e| {
        let place = match e.pos() {
            Some((l, c)) => format!(" at line {l}, column {c}"),
            None => String::new(),
        };
        ServiceError::invalid(
            field,
            format!("is not a valid template{place}: check that every {{{{#if}}}} has its {{{{/if}}}} and every tag is closed"),
        )
    })?;
    let mut w = Walker { field, fields, used };
    w.template(&t, 0)?;
    Ok(t)
}

struct Walker<'a> {
    field: &'a str,
    fields: &'a MergeFields,
    used: &'a mut Used,
}

impl Walker<'_> {
    fn err(&self, msg: impl Into<String>) -> ServiceError {
        ServiceError::invalid(self.field, msg)
    }

    fn template(&mut self, t: &Template, depth: usize) -> ServiceResult<()> {
        if depth > MAX_NESTING {
            return Err(self.err(format!("nests blocks more than {MAX_NESTING} deep")));
        }
        for e in &t.elements {
            match e {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::HtmlExpression(_) => {
                    return Err(self.err(
                        "uses triple braces {{{…}}}, which insert raw HTML; use double braces {{…}} so values are escaped",
                    ));
                }
                TemplateElement::Expression(h) => self.expression(h, 0)?,
                TemplateElement::HelperBlock(h) => {
                    let name = helper_name(h).unwrap_or_default();
                    if !BLOCKS.contains(&name) {
                        return Err(self.err(format!(
                            "uses the block {{{{#{}}}}}; only {{{{#if}}}} and {{{{#unless}}}} blocks are available",
                            short(name)
                        )));
                    }
                    if h.params.len() != 1 || !h.hash.is_empty() || h.block_param.is_some() {
                        return Err(self.err(format!("{{{{#{name}}}}} takes exactly one condition")));
                    }
                    self.param(&h.params[0], 0)?;
                    if let Some(inner) = &h.template {
                        self.template(inner, depth + 1)?;
                    }
                    if let Some(inverse) = &h.inverse {
                        self.template(inverse, depth + 1)?;
                    }
                }
                TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                    return Err(self.err("uses a partial ({{> …}}); partials are not available in email templates"));
                }
                TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                    return Err(self.err("uses a decorator ({{* …}}); decorators are not available"));
                }
                _ => return Err(self.err("uses template syntax that is not available")),
            }
        }
        Ok(())
    }

    /// `{{name}}`, `{{contact.x}}` or `{{helper args…}}`.
    fn expression(&mut self, h: &HelperTemplate, depth: usize) -> ServiceResult<()> {
        if depth > MAX_SUBEXPRESSION_DEPTH {
            return Err(self.err(format!("nests helpers more than {MAX_SUBEXPRESSION_DEPTH} deep")));
        }
        if !h.hash.is_empty() || h.block_param.is_some() {
            return Err(self.err("uses named arguments, which no helper here takes"));
        }
        match &h.name {
            Parameter::Name(n) if h.params.is_empty() && !HELPERS.contains(&n.as_str()) => self.variable(n),
            Parameter::Path(_) if h.params.is_empty() => self.param(&h.name, depth),
            Parameter::Name(n) => {
                let arity = match n.as_str() {
                    "upper" | "lower" => 1,
                    "default" | "eq" | "date" => 2,
                    other => {
                        return Err(self.err(format!(
                            "uses the helper '{}', which does not exist; available: {}",
                            short(other),
                            HELPERS.join(", ")
                        )));
                    }
                };
                if h.params.len() != arity {
                    return Err(self.err(format!(
                        "'{n}' takes {arity} argument{}, not {}",
                        if arity == 1 { "" } else { "s" },
                        h.params.len()
                    )));
                }
                if n == "date" {
                    if let Some(path) = path_text(&h.params[0]) {
                        self.used.dated.insert(path);
                    }
                    match &h.params[1] {
                        Parameter::Literal(JsonValue::String(f)) if valid_date_format(f) => {}
                        _ => {
                            return Err(
                                self.err("'date' needs a quoted format such as \"%B %-d, %Y\" as its second argument")
                            );
                        }
                    }
                }
                for p in &h.params {
                    self.param(p, depth)?;
                }
                Ok(())
            }
            _ => Err(self.err("has a merge tag that is not a field or a helper")),
        }
    }

    fn param(&mut self, p: &Parameter, depth: usize) -> ServiceResult<()> {
        match p {
            Parameter::Name(n) => self.variable(n),
            Parameter::Path(path) => match path {
                handlebars::Path::Relative((segs, _)) => {
                    let mut names = Vec::with_capacity(segs.len());
                    for s in segs {
                        match s {
                            PathSeg::Named(n) => names.push(n.as_str()),
                            _ => {
                                return Err(self.err("uses 'this', '../' or '@' paths; name fields as contact.<field>"));
                            }
                        }
                    }
                    self.variable(&names.join("."))
                }
                handlebars::Path::Local(_) => {
                    Err(self.err("uses 'this', '../' or '@' paths; name fields as contact.<field>"))
                }
            },
            Parameter::Literal(JsonValue::String(s)) if s.len() > 500 => {
                Err(self.err("has a quoted text longer than 500 characters"))
            }
            Parameter::Literal(JsonValue::Array(_) | JsonValue::Object(_)) => {
                Err(self.err("has a literal that is not text, a number or true/false"))
            }
            Parameter::Literal(_) => Ok(()),
            Parameter::Subexpression(s) => match s.element.as_ref() {
                TemplateElement::Expression(h) => {
                    if matches!(&h.name, Parameter::Name(n) if HELPERS.contains(&n.as_str())) {
                        self.expression(h, depth + 1)
                    } else {
                        Err(self.err("has a (…) group that does not call a helper"))
                    }
                }
                _ => Err(self.err("has a (…) group that does not call a helper")),
            },
            _ => Err(self.err("has a merge tag that is not a field or a helper")),
        }
    }

    fn variable(&mut self, path: &str) -> ServiceResult<()> {
        if path.is_empty() || path == "this" {
            return Err(self.err("uses 'this'; name fields as contact.<field>"));
        }
        if HELPERS.contains(&path) {
            return Err(
                self.err(format!("uses the helper '{path}' without arguments, e.g. {{{{upper contact.first_name}}}}"))
            );
        }
        let parts: Vec<&str> = path.split('.').collect();
        match parts.as_slice() {
            ["contact", key] if self.fields.get(key).is_some() => {
                self.used.contact.insert((*key).to_string());
                Ok(())
            }
            ["organisation", "name"] => Ok(()),
            ["links", l] if LINKS.contains(l) => {
                self.used.links.insert((*l).to_string());
                Ok(())
            }
            [ns @ (MESSAGE | EVENT), key] => {
                if !domain::api::valid_property_key(key) {
                    return Err(self.err(format!(
                        "uses {ns}.{}, which is not a valid name: after {ns}. come letters, digits and _, starting with a letter, at most {} characters",
                        short(key),
                        domain::api::MAX_PROPERTY_KEY
                    )));
                }
                let set = if *ns == MESSAGE { &mut self.used.message } else { &mut self.used.event };
                set.insert((*key).to_string());
                Ok(())
            }
            [ns @ (MESSAGE | EVENT), ..] => Err(self.err(format!(
                "uses '{}'; values sent with the message are written {ns}.<name>, one name after {ns}.",
                short(path)
            ))),
            ["contact", key] => Err(self.err(format!(
                "uses the field contact.{}, which this organisation does not have; add it under Contacts → Fields or pick one from the merge-field list",
                short(key)
            ))),
            _ => Err(self.err(format!(
                "uses '{}', which is not a merge field; fields are written contact.<field>, organisation.name, links.unsubscribe / links.view_in_browser / links.preferences, message.<name> (API messages) or event.<name> (sequence emails)",
                short(path)
            ))),
        }
    }
}

/// A parameter's path as the walker names it (`message.x`), when it is a plain path.
fn path_text(p: &Parameter) -> Option<String> {
    match p {
        Parameter::Name(n) => Some(n.clone()),
        Parameter::Path(handlebars::Path::Relative((segs, _))) => {
            let mut names = Vec::with_capacity(segs.len());
            for s in segs {
                match s {
                    PathSeg::Named(n) => names.push(n.as_str()),
                    _ => return None,
                }
            }
            Some(names.join("."))
        }
        _ => None,
    }
}

fn helper_name(h: &HelperTemplate) -> Option<&str> {
    match &h.name {
        Parameter::Name(n) => Some(n.as_str()),
        _ => None,
    }
}

/// Template text quoted in an error, cut short.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() { format!("{cut}…") } else { cut }
}

pub(crate) mod urls;

#[cfg(test)]
mod tests;
