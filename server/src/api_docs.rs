//! `GET /api/docs`: the API's documentation for integration engineers, rendered on the server from
//! the OpenAPI document (`openapi::document()`, the one `/api/v1/openapi.json` serves), so each
//! endpoint's method, path, scope, parameters, body fields, examples and errors are exactly what
//! the document says, and the document is what the code does. The guide around them (keys,
//! signatures with worked examples, idempotency, limits, problem codes) is written here; its
//! numbers come from the same constants the edge enforces.
//!
//! Plain HTML with the app's own style sheet: no script, no inline style (the CSP allows neither),
//! nothing from a CDN. Public: it holds no organisation's data. Rendered once per process.

use crate::openapi::{self, SignatureExample};
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use domain::api::{self, Scope, problem};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The rendered page.
#[derive(Clone)]
pub struct DocsPage(pub Arc<str>);

pub async fn page(State(page): State<DocsPage>) -> Response {
    Html(page.0.to_string()).into_response()
}

/// The app's style sheet as the Leptos shell names it: `/pkg/hermetic.<hash>.css` when the site
/// was built with hashed names (the `css:` line of cargo-leptos' hash file), else
/// `/pkg/hermetic.css`.
pub fn stylesheet_href(hash_file: Option<&Path>) -> String {
    let hash = hash_file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| text.lines().find_map(|l| l.trim().strip_prefix("css:").map(|h| h.trim().to_string())));
    match hash {
        Some(h) if !h.is_empty() => format!("/pkg/hermetic.{h}.css"),
        _ => "/pkg/hermetic.css".to_string(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The little Markdown the document's descriptions use: paragraphs, `code` and *emphasis*.
fn md(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let joined = para.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str("<p>");
        out.push_str(&inline(&joined));
        out.push_str("</p>");
    }
    out
}

fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            let mut em = false;
            for (j, piece) in part.split('*').enumerate() {
                if j > 0 {
                    out.push_str(if em { "</em>" } else { "<em>" });
                    em = !em;
                }
                out.push_str(&esc(piece));
            }
            if em {
                out.push_str("</em>");
            }
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn code_block(test: &str, label: &str, text: &str) -> String {
    format!("<pre class=\"code\" data-test=\"{test}\" aria-label=\"{}\"><code>{}</code></pre>", esc(label), esc(text))
}

/// A `$ref` resolved within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(&Value::Null),
        None => v,
    }
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next())
}

/// Whether a component schema gets its own field table (an object or a choice of objects).
fn is_structured(doc: &Value, v: &Value) -> bool {
    let s = resolve(doc, v);
    s.get("properties").is_some() || s.get("oneOf").is_some()
}

/// A short human label for a schema's type.
fn type_label(doc: &Value, v: &Value) -> String {
    if let Some(name) = ref_name(v) {
        let target = resolve(doc, v);
        if is_structured(doc, v) {
            return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
        }
        return type_label(doc, target);
    }
    if let Some(options) = v.get("oneOf").and_then(Value::as_array) {
        return options.iter().map(|o| type_label(doc, o)).collect::<Vec<_>>().join(" or ");
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        let listed: Vec<String> =
            values.iter().map(|e| format!("<code>{}</code>", esc(e.as_str().unwrap_or_default()))).collect();
        return format!("one of {}", listed.join(", "));
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let nullable = types.contains(&"null");
    let mut base: Vec<String> = Vec::new();
    for t in types.iter().filter(|t| **t != "null") {
        let label = match *t {
            "array" => format!("array of {}", v.get("items").map(|i| type_label(doc, i)).unwrap_or_default()),
            "object" => match v.get("additionalProperties") {
                Some(a) if a.is_object() => format!("object of {}", type_label(doc, a)),
                _ => "object".to_string(),
            },
            "integer" => "integer".to_string(),
            other => match v.get("format").and_then(Value::as_str) {
                Some(f) if other == "string" => format!("string ({f})"),
                _ => other.to_string(),
            },
        };
        base.push(label);
    }
    let mut label = match base.len() {
        0 => "any".to_string(),
        1 => base.remove(0),
        _ => base.join(", "),
    };
    if nullable {
        label.push_str(" or null");
    }
    label
}

/// Limits a schema states, in words.
fn limits(v: &Value) -> Vec<String> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let mut out = Vec::new();
    if let Some(x) = n("minLength").filter(|x| *x > 1) {
        out.push(format!("at least {x} characters"));
    }
    if let Some(x) = n("maxLength") {
        out.push(format!("at most {x} characters"));
    }
    if let Some(p) = v.get("pattern").and_then(Value::as_str) {
        out.push(format!("matches <code>{}</code>", esc(p)));
    }
    if let Some(x) = n("minItems").filter(|x| *x > 1) {
        out.push(format!("at least {x} items"));
    }
    if let Some(x) = n("maxItems") {
        out.push(format!("at most {x} items"));
    }
    if let Some(x) = n("maxProperties") {
        out.push(format!("at most {x} entries"));
    }
    if let Some(names) = v.get("propertyNames") {
        let mut name_limits = limits(names);
        if !name_limits.is_empty() {
            out.push(format!("names: {}", name_limits.join(", ")));
        }
        name_limits.clear();
    }
    if let Some(values) = v.get("additionalProperties").filter(|a| a.is_object()) {
        let value_limits = limits(values);
        if !value_limits.is_empty() {
            out.push(format!("values: {}", value_limits.join(", ")));
        }
    }
    if v.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push("no other members".to_string());
    }
    out
}

/// The order the members of a component schema are declared in (the JSON value of the document
/// sorts them; utoipa's own maps keep declaration order).
fn declared_order(name: &str) -> Vec<String> {
    use utoipa::openapi::{RefOr, schema::Schema};
    let schema = openapi::document().components.as_ref().and_then(|c| c.schemas.get(name));
    match schema {
        Some(RefOr::T(Schema::Object(o))) => o.properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A label for one choice of a `oneOf`: its name, or for an inline object the member that tells
/// the choices apart (`status`: `accepted`).
fn choice_label(doc: &Value, option: &Value) -> String {
    if ref_name(option).is_some() {
        return type_label(doc, option);
    }
    let tag = option["properties"].as_object().into_iter().flatten().find_map(|(k, p)| {
        match p["enum"].as_array().map(Vec::as_slice) {
            Some([Value::String(v)]) => Some((k.clone(), v.clone())),
            _ => None,
        }
    });
    match tag {
        Some((k, v)) => format!("<code>{}</code> is <code>{}</code>", esc(&k), esc(&v)),
        None => type_label(doc, option),
    }
}

fn sentence(parts: &[String]) -> String {
    let text = parts.join("; ");
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => format!("{}{}.", c.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The field tables of a schema and of every structured schema it refers to, each once.
fn schema_tables(doc: &Value, v: &Value, seen: &mut Vec<String>, out: &mut String) {
    let mut queue: Vec<Value> = vec![v.clone()];
    while let Some(next) = queue.pop() {
        let name = ref_name(&next).map(str::to_string);
        if let Some(n) = &name {
            if seen.contains(n) {
                continue;
            }
            seen.push(n.clone());
        }
        let s = resolve(doc, &next).clone();
        let title = name.clone().unwrap_or_default();
        let mut nested: Vec<Value> = Vec::new();
        if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
            let _ = write!(out, "<h4 id=\"schema-{0}\"><code>{0}</code></h4>", esc(&title));
            if let Some(d) = s.get("description").and_then(Value::as_str) {
                out.push_str(&md(d));
            }
            let choices: Vec<String> = options.iter().map(|o| choice_label(doc, o)).collect();
            let _ = write!(out, "<p>Exactly one of: {}.</p>", choices.join("; "));
            for option in options {
                if ref_name(option).is_some() {
                    if is_structured(doc, option) {
                        nested.push(option.clone());
                    }
                } else if option.get("properties").is_some() {
                    let _ = write!(out, "<p class=\"choice-title\">When {}:</p>", choice_label(doc, option));
                    let mut inner = Vec::new();
                    schema_tables(doc, option, &mut inner, out);
                    for n in inner {
                        if !seen.contains(&n) {
                            seen.push(n);
                        }
                    }
                }
            }
        } else if let Some(props) = s.get("properties").and_then(Value::as_object) {
            if !title.is_empty() {
                let _ = write!(out, "<h4 id=\"schema-{0}\"><code>{0}</code></h4>", esc(&title));
                if let Some(d) = s.get("description").and_then(Value::as_str) {
                    out.push_str(&md(d));
                }
            }
            let required: Vec<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push_str(
                "<div class=\"table-wrap\"><table class=\"fields\"><thead><tr><th scope=\"col\">Member</th>\
                 <th scope=\"col\">Type</th><th scope=\"col\">Required</th><th scope=\"col\">Description</th></tr></thead><tbody>",
            );
            let order = declared_order(&title);
            let mut props: Vec<(&String, &Value)> = props.iter().collect();
            props.sort_by_key(|(k, _)| order.iter().position(|o| o == *k).unwrap_or(usize::MAX));
            for (key, p) in props {
                let target = resolve(doc, p);
                let description = p
                    .get("description")
                    .or_else(|| target.get("description").filter(|_| !is_structured(doc, p)))
                    .and_then(Value::as_str)
                    .map(md)
                    .unwrap_or_default();
                let mut lim = limits(p);
                if ref_name(p).is_some() && !is_structured(doc, p) {
                    lim.extend(limits(target));
                }
                let lim =
                    if lim.is_empty() { String::new() } else { format!("<p class=\"hint\">{}.</p>", lim.join("; ")) };
                let _ = write!(
                    out,
                    "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{description}{lim}</td></tr>",
                    esc(key),
                    type_label(doc, p),
                    if required.contains(&key.as_str()) { "required" } else { "optional" },
                );
                for candidate in [Some(p), p.get("items"), p.get("additionalProperties")].into_iter().flatten() {
                    if is_structured(doc, candidate) && ref_name(candidate).is_some() {
                        nested.push(candidate.clone());
                    }
                }
            }
            out.push_str("</tbody></table></div>");
            let extra = limits(&s);
            if !extra.is_empty() {
                let _ = write!(out, "<p class=\"hint\">{}</p>", sentence(&extra));
            }
        }
        nested.reverse();
        queue.extend(nested);
    }
}

fn scope_of(op: &Value) -> Vec<String> {
    op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|req| req[openapi::SECURITY_SCHEME].as_array())
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Each operation of the document, in the order of `api::ROUTES` (the JSON value of the document
/// sorts its paths): (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if op.get("responses").is_some() {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    let rank = |m: &str, p: &str| {
        crate::api::ROUTES.iter().position(|(rm, rp, _)| rm.as_str() == m && *rp == p).unwrap_or(usize::MAX)
    };
    ops.sort_by_key(|(m, p, _)| rank(m, p));
    ops
}

fn op_id(op: &Value) -> String {
    format!("op-{}", op["operationId"].as_str().unwrap_or_default())
}

fn curl(base: &str, method: &str, path: &str, has_body: bool) -> String {
    // The path parameter as a shell variable named after what it identifies.
    let var = if path.starts_with("/api/v1/sequences/") {
        "$SEQUENCE_ID"
    } else if path.starts_with("/api/v1/messages/") {
        "$MESSAGE_ID"
    } else {
        "$CONTACT_ID"
    };
    let path = path.replace("{id}", var);
    let mut s = format!("curl -sS -X {method} \"{base}{path}\" \\\n  -H \"Authorization: Bearer $HERMETIC_API_KEY\"");
    if has_body {
        s.push_str(
            " \\\n  -H \"Content-Type: application/json\" \\\n  -H \"Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)\" \\\n  --data-binary @request.json",
        );
    }
    s
}

fn endpoint(doc: &Value, base: &str, method: &str, path: &str, op: &Value, seen: &mut Vec<String>) -> String {
    let mut out = String::new();
    let scopes = scope_of(op);
    let _ = write!(
        out,
        "<section class=\"panel endpoint\" id=\"{}\" data-test=\"endpoint\" data-method=\"{method}\" data-path=\"{}\" data-scope=\"{}\">",
        esc(&op_id(op)),
        esc(path),
        esc(&scopes.join(" ")),
    );
    let _ = write!(
        out,
        "<h2><span class=\"method {}\">{method}</span> <code class=\"path\">{}</code></h2>",
        method.to_lowercase(),
        esc(path)
    );
    let _ = write!(out, "<p class=\"op-summary\">{}</p>", esc(op["summary"].as_str().unwrap_or_default()));
    let scope_list: Vec<String> = scopes.iter().map(|s| format!("<code class=\"scope\">{}</code>", esc(s))).collect();
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Scope</dt><dd data-test=\"scope\">{}</dd><dt>Operation id</dt><dd><code>{}</code></dd></dl>",
        scope_list.join(" "),
        esc(op["operationId"].as_str().unwrap_or_default())
    );
    out.push_str(&md(op["description"].as_str().unwrap_or_default()));

    let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().map(|p| resolve(doc, p)).collect();
    if !params.is_empty() {
        out.push_str(
            "<h3>Parameters</h3><div class=\"table-wrap\"><table class=\"fields\"><thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">In</th><th scope=\"col\">Required</th><th scope=\"col\">Description</th></tr></thead><tbody>",
        );
        for p in params {
            let lim = limits(&p["schema"]);
            let lim = if lim.is_empty() { String::new() } else { format!("<p class=\"hint\">{}</p>", sentence(&lim)) };
            let _ = write!(
                out,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}{lim}</td></tr>",
                esc(p["name"].as_str().unwrap_or_default()),
                esc(p["in"].as_str().unwrap_or_default()),
                if p["required"] == Value::Bool(true) { "required" } else { "optional" },
                md(p["description"].as_str().unwrap_or_default()),
            );
        }
        out.push_str("</tbody></table></div>");
    }

    let body = &op["requestBody"];
    let has_body = body.is_object();
    if let Some(content) = body["content"]["application/json"].as_object() {
        out.push_str("<h3>Request body</h3>");
        if let Some(d) = body["description"].as_str() {
            let _ = write!(out, "<p><code>application/json</code>. {}</p>", inline(d));
        }
        if let Some(schema) = content.get("schema") {
            schema_tables(doc, schema, seen, &mut out);
        }
        if let Some(example) = content.get("example") {
            out.push_str("<h4>Example request</h4>");
            out.push_str(&code_block("request-example", "Example request body", &pretty(example)));
        }
    }
    out.push_str("<h4>With curl</h4>");
    out.push_str(&code_block("curl", "Example curl command", &curl(base, method, path, has_body)));

    let responses = op["responses"].as_object().cloned().unwrap_or_default();
    for (status, res) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
        let _ = write!(
            out,
            "<h3>Response <span class=\"status ok\">{}</span></h3>{}",
            esc(status),
            md(res["description"].as_str().unwrap_or_default())
        );
        if let Some(headers) = res["headers"].as_object() {
            for (name, h) in headers {
                let h = resolve(doc, h);
                let _ = write!(
                    out,
                    "<p class=\"hint\">Header <code>{}</code>: {}</p>",
                    esc(name),
                    inline(h["description"].as_str().unwrap_or_default())
                );
            }
        }
        if let Some(content) = res["content"]["application/json"].as_object() {
            if let Some(schema) = content.get("schema") {
                schema_tables(doc, schema, seen, &mut out);
            }
            if let Some(example) = content.get("example") {
                out.push_str(&code_block("response-example", &format!("Example {status} answer"), &pretty(example)));
            }
        }
    }

    out.push_str(
        "<h3>Errors</h3><p>Answered as <a href=\"#errors\"><code>application/problem+json</code></a>; branch on <code>code</code>.</p>\
         <div class=\"table-wrap\"><table class=\"errors\" data-test=\"errors\"><thead><tr><th scope=\"col\">Status</th>\
         <th scope=\"col\">Codes</th><th scope=\"col\">Headers</th></tr></thead><tbody>",
    );
    for (status, res) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
        let schema = &res["content"]["application/problem+json"]["schema"];
        let codes: Vec<String> = schema["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|part| part["properties"]["code"]["enum"].as_array())
            .flatten()
            .filter_map(Value::as_str)
            .map(|c| format!("<a href=\"#problem-{0}\" data-test=\"problem-link\"><code>{0}</code></a>", esc(c)))
            .collect();
        let headers: Vec<String> = res["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| format!("<code>{}</code>", esc(name)))
            .collect();
        let _ = write!(
            out,
            "<tr data-status=\"{0}\"><td><span class=\"status\">{0}</span></td><td>{1}</td><td>{2}</td></tr>",
            esc(status),
            codes.join(" "),
            headers.join(" ")
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn scopes_table(doc: &Value) -> String {
    let ops = operations(doc);
    let mut out = String::from(
        "<div class=\"table-wrap\"><table data-test=\"scopes\"><thead><tr><th scope=\"col\">Scope</th>\
         <th scope=\"col\">Allows</th><th scope=\"col\">Endpoints</th></tr></thead><tbody>",
    );
    for s in Scope::ALL {
        let used: Vec<String> = ops
            .iter()
            .filter(|(_, _, op)| scope_of(op).iter().any(|x| x == s.as_str()))
            .map(|(m, p, op)| format!("<a href=\"#{}\"><code>{m} {}</code></a>", esc(&op_id(op)), esc(p)))
            .collect();
        let used =
            if used.is_empty() { "<span class=\"muted\">(none yet)</span>".to_string() } else { used.join("<br>") };
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><code class=\"scope\">{}</code></th><td>{}</td><td>{used}</td></tr>",
            esc(s.as_str()),
            esc(s.describe())
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn signing_section(sig: &SignatureExample, base: &str) -> String {
    let payload = format!("{}.{}", sig.timestamp, sig.body);
    let hex = sig.header.split("v1=").nth(1).unwrap_or_default();
    let shell = format!(
        "# The key's signing secret (shown once, with the key), and the exact bytes you send:\n\
         secret='{secret}'\n\
         body='{body}'\n\
         # In production: t=$(date +%s)\n\
         t={t}\n\
         v1=$(printf '%s.%s' \"$t\" \"$body\" | openssl dgst -sha256 -hmac \"$secret\" | awk '{{print $NF}}')\n\
         echo \"t=$t,v1=$v1\"",
        secret = sig.secret,
        body = sig.body,
        t = sig.timestamp,
    );
    let python = format!(
        "import hashlib, hmac, time\n\n\
         def hermetic_signature(secret: str, body: bytes, t: int | None = None) -> str:\n    \
             \"\"\"The Hermetic-Signature header value for a request body (the exact bytes sent).\"\"\"\n    \
             t = int(time.time()) if t is None else t\n    \
             mac = hmac.new(secret.encode(), str(t).encode() + b\".\" + body, hashlib.sha256)\n    \
             return f\"t={{t}},v1={{mac.hexdigest()}}\"\n\n\
         body = b'{body}'\n\
         print(hermetic_signature(\"{secret}\", body, t={t}))",
        secret = sig.secret,
        body = sig.body,
        t = sig.timestamp,
    );
    let send = format!(
        "curl -sS -X POST \"{base}/api/v1/events\" \\\n  \
         -H \"Authorization: Bearer $HERMETIC_API_KEY\" \\\n  \
         -H \"Content-Type: application/json\" \\\n  \
         -H \"Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)\" \\\n  \
         -H \"Hermetic-Signature: t=$t,v1=$v1\" \\\n  \
         --data-binary \"$body\""
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"panel\" id=\"signatures\"><h2>Signed requests</h2>\
         <p>A key created with <em>signed requests</em> also has a <strong>signing secret</strong> (<code>hm_sign_…</code>). \
         Every request with that key must carry <code>Hermetic-Signature</code>, so a leaked API key alone cannot send data. \
         Keys without signed requests ignore the header.</p>\
         <ol class=\"steps\">\
         <li>Take the current time as Unix seconds: <code>t</code>.</li>\
         <li>Take the request body <strong>exactly as you send it</strong> (the same bytes; an empty body for GET). \
         Serialising the JSON again after signing changes the bytes and the signature.</li>\
         <li>Compute HMAC-SHA256 with the signing secret as the key over <code>t</code>, a full stop <code>.</code>, and the body.</li>\
         <li>Send <code>Hermetic-Signature: t=&lt;t&gt;,v1=&lt;the HMAC as lower-case hex&gt;</code>.</li>\
         </ol>\
         <p>The server accepts a timestamp up to {tolerance} minutes either side of its clock (keep your clock synchronised with NTP) \
         and compares in constant time. While you replace a signing secret you may send two values: <code>t=…,v1=…,v1=…</code>; one must match. \
         A missing, malformed, stale or wrong signature is answered <code>401</code> with code \
         <a href=\"#problem-bad_signature\"><code>bad_signature</code></a>.</p>\
         <h3>Worked example</h3>\
         <p>With this made-up signing secret, timestamp and body (the example event below):</p>\
         <dl class=\"facts worked\">\
         <dt>Signing secret</dt><dd><code data-test=\"sign-secret\">{secret}</code></dd>\
         <dt><code>t</code></dt><dd><code data-test=\"sign-t\">{t}</code></dd>\
         <dt>Body</dt><dd><code class=\"wrap\" data-test=\"sign-body\">{body}</code></dd>\
         <dt>Signed bytes</dt><dd><code class=\"wrap\">{payload}</code></dd>\
         <dt>HMAC-SHA256 (hex)</dt><dd><code class=\"wrap\">{hex}</code></dd>\
         <dt>Header</dt><dd><code class=\"wrap\" data-test=\"sign-expected\">Hermetic-Signature: {header}</code></dd>\
         </dl>\
         <h4>Shell (OpenSSL)</h4>{shell}\
         <p>Both print <code>{header_only}</code>. Then send the same bytes:</p>{send}\
         <h4>Python</h4>{python}\
         <p class=\"hint\">In other languages: any HMAC-SHA256 implementation (Java <code>javax.crypto.Mac</code> \
         <code>HmacSHA256</code>, .NET <code>HMACSHA256</code>, Node <code>crypto.createHmac('sha256', secret)</code>) over the \
         same bytes gives the same hex.</p></section>",
        tolerance = api::SIGNATURE_TOLERANCE_SECS / 60,
        secret = esc(sig.secret),
        t = sig.timestamp,
        body = esc(&sig.body),
        payload = esc(&payload),
        hex = esc(hex),
        header = esc(&sig.header),
        header_only = esc(&sig.header),
        shell = code_block("sign-shell", "Computing the signature in a shell", &shell),
        send = code_block("sign-send", "Sending the signed request", &send),
        python = code_block("sign-python", "Computing the signature in Python", &python),
    );
    out
}

/// The whole page.
pub fn render(stylesheet: &str, public_url: &str, budget: (u32, u32)) -> String {
    let Ok(doc) = serde_json::to_value(openapi::document()) else { return String::new() };
    let base = public_url.trim_end_matches('/');
    let ops = operations(&doc);
    let sig = openapi::signature_example();

    let mut nav = String::from(
        "<nav class=\"docs-nav\" aria-label=\"API documentation\"><ul>\
         <li><a href=\"#overview\">Overview</a></li><li><a href=\"#authentication\">Authentication and scopes</a></li>\
         <li><a href=\"#signatures\">Signed requests</a></li><li><a href=\"#idempotency\">Retries and idempotency</a></li>\
         <li><a href=\"#limits\">Rate limits and sizes</a></li><li><a href=\"#errors\">Errors</a></li></ul>\
         <p class=\"group\">Endpoints</p><ul>",
    );
    for (method, path, op) in &ops {
        let _ = write!(
            nav,
            "<li><a href=\"#{}\"><span class=\"method {}\">{method}</span> {}</a></li>",
            esc(&op_id(op)),
            method.to_lowercase(),
            esc(op["summary"].as_str().unwrap_or(path))
        );
    }
    nav.push_str("</ul><p class=\"group\">Reference</p><ul><li><a href=\"#problem-codes\">Problem codes</a></li>");
    let _ = write!(nav, "<li><a href=\"{}\">OpenAPI document (JSON)</a></li></ul></nav>", crate::api::OPENAPI_PATH);

    let mut main = String::new();
    let _ = write!(
        main,
        "<section class=\"panel\" id=\"overview\"><h1>Hermetic API <span class=\"badge\">v{version}</span></h1>{description}\
         <dl class=\"facts\"><dt>Base URL</dt><dd><code data-test=\"base-url\">{base}/api/v1</code></dd>\
         <dt>Format</dt><dd>JSON (UTF-8) in and out; failures as <code>application/problem+json</code></dd>\
         <dt>Specification</dt><dd><a href=\"{spec}\" data-test=\"openapi-link\">OpenAPI 3.1 document</a> \
         (for code generators and API tools; this page is made from it)</dd></dl>\
         <p>Typical integration: your integration engine upserts a contact when a patient registers or changes consent \
         (<a href=\"#op-upsertContact\"><code>PUT /api/v1/contacts</code></a>), and sends an event when something happens \
         that a follow-up sequence waits for — an appointment booked or cancelled, a lab result ready, a discharge \
         (<a href=\"#op-recordEvent\"><code>POST /api/v1/events</code></a>, or batches of up to {batch}). When your system \
         itself decides that a patient should start a particular sequence, it enrols the contact directly \
         (<a href=\"#op-enrolContact\"><code>POST /api/v1/sequences/{{id}}/enrolments</code></a>).</p>\
         <div class=\"alert info\"><strong>Test with made-up data.</strong> Everything you send is treated as protected health \
         information: stored encrypted, never echoed in an answer, a log line or an error. Use addresses at \
         <code>example.org</code> and obviously fictional names until you go live.</div></section>",
        version = esc(doc["info"]["version"].as_str().unwrap_or_default()),
        description = md(doc["info"]["description"].as_str().unwrap_or_default()),
        base = esc(base),
        spec = crate::api::OPENAPI_PATH,
        batch = api::MAX_EVENTS_PER_BATCH,
    );
    let _ = write!(
        main,
        "<section class=\"panel\" id=\"authentication\"><h2>Authentication and scopes</h2>\
         <p>An administrator creates a key for each integration in <a href=\"/settings/api-keys\">Settings → API keys</a>, \
         with only the scopes it needs; the key is shown once. Send it on every request:</p>{auth}\
         <p>Keys start with <code>{prefix}</code> so secret scanners recognise a leaked one. A key can expire or be revoked at \
         any time; then every request is answered <code>401</code> \
         (<a href=\"#problem-unauthenticated\"><code>unauthenticated</code></a>). A key without the scope an endpoint needs \
         is answered <code>403</code> (<a href=\"#problem-forbidden\"><code>forbidden</code></a>) before the body is looked at. \
         Browser sessions never count: the API reads only the key.</p>{scopes}</section>",
        auth = code_block("auth-header", "Authorization header", "Authorization: Bearer hm_live_…"),
        prefix = api::KEY_PREFIX,
        scopes = scopes_table(&doc),
    );
    main.push_str(&signing_section(&sig, base));
    let _ = write!(
        main,
        "<section class=\"panel\" id=\"idempotency\"><h2>Retries and idempotency</h2>\
         <p>Networks fail after the server has acted. Send an <code>Idempotency-Key</code> header with every POST and PUT — \
         a new UUID per logical request, kept when you retry it:</p>\
         <ul><li>A retry with the same key and the same body within {hours} hours gets the first answer again, with \
         <code>Idempotent-Replayed: true</code>, and records nothing twice.</li>\
         <li>The same key with a different body or endpoint is refused: <code>422</code> \
         <a href=\"#problem-idempotency_key_reused\"><code>idempotency_key_reused</code></a>.</li>\
         <li>A request that was refused (4xx) stores nothing, so a corrected retry may reuse its key.</li>\
         <li>Two requests with the same key at the same moment: the second waits for the first and gets its answer.</li></ul>\
         <p>Retry <code>429</code>, <code>500</code>, <code>503</code> and connection failures with exponential backoff and \
         the same key; do not retry other 4xx answers unchanged.</p></section>",
        hours = service::api::idempotency::RETENTION.num_hours(),
    );
    let _ = write!(
        main,
        "<section class=\"panel\" id=\"limits\"><h2>Rate limits and sizes</h2>\
         <p>Each key has its own request budget: <strong data-test=\"rate\">{rate} requests per second</strong> on average, \
         with bursts of up to <strong>{burst}</strong>. Over budget the answer is <code>429</code> \
         (<a href=\"#problem-rate_limited\"><code>rate_limited</code></a>) with <code>Retry-After</code>: the seconds to wait. \
         Send many events as batches rather than faster.</p>\
         <dl class=\"facts\"><dt>Body</dt><dd>at most 1 MB; a batch at most 10 MB and {batch} events</dd>\
         <dt>Nesting</dt><dd>at most {depth} levels of objects and arrays</dd>\
         <dt>Event properties</dt><dd>at most {props}, flat; names up to {key} characters; string values up to {value} bytes</dd></dl>\
         </section>",
        rate = budget.0,
        burst = budget.1,
        batch = api::MAX_EVENTS_PER_BATCH,
        depth = api::MAX_JSON_DEPTH,
        props = api::MAX_PROPERTIES,
        key = api::MAX_PROPERTY_KEY,
        value = api::MAX_PROPERTY_VALUE_BYTES,
    );
    let problem_example = serde_json::to_value(domain::api::wire::Problem::new(
        422,
        "Unprocessable Entity",
        problem::INVALID_FIELD,
        "The type is a code like appointment.booked: lower-case letters, digits, _ and . (at most 64).",
        Some("/type"),
    ))
    .unwrap_or_default();
    // Each schema's table appears once on the page (its first use); later mentions link to it.
    let mut seen = Vec::new();
    let mut problem_schema = String::new();
    let problem_ref = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    schema_tables(&doc, &problem_ref, &mut seen, &mut problem_schema);
    let _ = write!(
        main,
        "<section class=\"panel\" id=\"errors\"><h2>Errors</h2>\
         <p>Every answer that is not a success is an RFC 9457 problem, <code>application/problem+json</code>. Branch on \
         <code>code</code> (stable; listed under <a href=\"#problem-codes\">problem codes</a> and for each endpoint); \
         <code>detail</code> is for people and may change; <code>pointer</code> names the member that was refused. \
         No answer ever repeats a value you sent.</p>{example}{schema}</section>",
        example = code_block("problem-example", "Example problem", &pretty(&problem_example)),
        schema = problem_schema,
    );
    for (method, path, op) in &ops {
        main.push_str(&endpoint(&doc, base, method, path, op, &mut seen));
    }
    main.push_str(
        "<section class=\"panel\" id=\"problem-codes\"><h2>Problem codes</h2><div class=\"table-wrap\">\
         <table data-test=\"problem-codes\"><thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Meaning</th></tr></thead><tbody>",
    );
    for c in problem::ALL {
        let _ = write!(
            main,
            "<tr id=\"problem-{0}\"><th scope=\"row\"><code>{0}</code></th><td><span class=\"status\">{1}</span></td><td>{2}</td></tr>",
            esc(c.code),
            c.status,
            esc(c.meaning)
        );
    }
    main.push_str("</tbody></table></div></section>");

    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>API documentation · Hermetic</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"{css}\"></head><body class=\"docs-page\">\
         <a class=\"skip-link\" href=\"#main\">Skip to content</a>\
         <header class=\"topbar\"><a class=\"logo\" href=\"/\">Hermetic</a><span class=\"org\">API documentation</span>\
         <span class=\"user\"><a href=\"/settings/api-keys\">API keys</a></span></header>\
         <div class=\"docs\">{nav}<main id=\"main\" class=\"docs-main\" tabindex=\"-1\">{main}</main></div></body></html>",
        css = esc(stylesheet),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_lite() {
        assert_eq!(md("a `b<c>` *d*\nand e\n\nf"), "<p>a <code>b&lt;c&gt;</code> <em>d</em> and e</p><p>f</p>");
    }

    #[test]
    fn the_page_lists_every_route_and_problem_code() {
        let html = render("/pkg/hermetic.css", "https://hermetic.example.org", (50, 100));
        if let Ok(to) = std::env::var("DOCS_PREVIEW") {
            std::fs::write(to, html.replace("/pkg/hermetic.css", "main.css")).unwrap();
        }
        for (method, path, permission) in crate::api::ROUTES {
            let scope = crate::openapi::scope_for(*permission).unwrap();
            assert!(
                html.contains(&format!(
                    "data-method=\"{method}\" data-path=\"{path}\" data-scope=\"{}\"",
                    scope.as_str()
                )),
                "{method} {path}"
            );
        }
        for c in problem::ALL {
            assert!(html.contains(&format!("id=\"problem-{}\"", c.code)), "{}", c.code);
        }
        assert!(!html.contains("style=") && !html.contains("<script"), "no inline style or script");
        let ids: Vec<&str> = html.split(" id=\"").skip(1).filter_map(|s| s.split('"').next()).collect();
        let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "duplicate ids");
        for link in html.split("href=\"#").skip(1).filter_map(|s| s.split('"').next()) {
            assert!(unique.contains(link), "link to a missing anchor #{link}");
        }
        assert!(html.contains("https://hermetic.example.org/api/v1"));
    }

    #[test]
    fn stylesheet_from_the_hash_file() {
        let dir = std::env::temp_dir().join(format!("hermetic-docs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("hash.txt");
        std::fs::write(&f, "js: abc\ncss: 5dXEq1w2e3r4t5y6u7i8oQ\nwasm: def\n").unwrap();
        assert_eq!(stylesheet_href(Some(&f)), "/pkg/hermetic.5dXEq1w2e3r4t5y6u7i8oQ.css");
        assert_eq!(stylesheet_href(None), "/pkg/hermetic.css");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
