//! Plain server-rendered pages outside the Leptos app:
//! - the recipient pages behind a message's system links (`/l/…`): unsubscribe (confirmation page,
//!   and RFC 8058 one-click POST), preferences, view in browser. The opaque token in the path is
//!   the only credential; GET never changes anything.
//! - the template preview frame (`/templates/{id}/preview/{version}`), which shows author HTML.
//!
//! Author HTML is only ever served with a sandboxing CSP (`sandbox`, no scripts, no forms), so it
//! cannot run code or act with the viewer's origin even if an email-unsafe construct slipped in.

use app::ssr::RequestContext;
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use domain::contacts::ConsentPurpose;
use domain::template_views::PreviewSample;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use service::links::LinkKind;
use service::recipient::{Preference, RecipientPage, UnsubscribeScope};
use service::templates::preview::BrowserView;
use service::{ServiceError, Services};
use uuid::Uuid;

/// The CSP of any response that carries author HTML.
pub const AUTHOR_HTML_CSP: &str = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox";

/// Author HTML rendered with a real contact's data (a preview as a contact, the dev mailbox):
/// nothing remote loads — no images, fonts or style sheets from anywhere — so viewing it tells
/// no outside server that this patient's message was opened, or anything in it.
pub const REAL_CONTACT_CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A small self-contained page (inline CSS is allowed by this response's own CSP).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>body{{font-family:system-ui,Arial,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#111827;line-height:1.5}}\
         button{{font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer}}\
         button.secondary{{background:#fff;color:#1d4ed8}}.muted{{color:#6b7280}}li{{margin:.5rem 0}}form{{display:inline}}</style></head><body>{}</body></html>",
        esc(title),
        body
    );
    let mut res = (status, Html(html)).into_response();
    set_csp(
        &mut res,
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    res
}

fn set_csp(res: &mut Response, csp: &'static str) {
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    res.headers_mut().insert("x-hermetic-own-csp", HeaderValue::from_static("1"));
}

fn failure(e: ServiceError) -> Response {
    match e {
        ServiceError::NotFound => page(
            StatusCode::NOT_FOUND,
            "Link not valid",
            "<h1>This link is not valid</h1><p>It may have expired or been copied incompletely. To stop receiving \
             email, use the unsubscribe link in a recent message or reply to it.</p>",
        ),
        ServiceError::Internal(_) => {
            tracing::error!(error = %e.log_detail(), "recipient page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "<h1>Something went wrong</h1><p>Please try again later.</p>",
            )
        }
        other => page(
            StatusCode::BAD_REQUEST,
            "Error",
            &format!("<h1>That did not work</h1><p>{}</p>", esc(&other.to_string())),
        ),
    }
}

const TEST_NOTE: &str = "<p class=\"muted\">This link came from a <strong>test message</strong> sent to a staff member, so nothing was changed.</p>";

/// How a purpose is named to a patient.
fn purpose_words(p: ConsentPurpose) -> &'static str {
    match p {
        ConsentPurpose::Marketing => "marketing email (news and offers)",
        ConsentPurpose::CareCommunications => "care communications (such as appointment and screening reminders)",
        ConsentPurpose::Transactional => "transactional email (such as confirmations of appointments you booked)",
    }
}

const EVERYTHING_FORM: &str = "<form method=\"post\"><input type=\"hidden\" name=\"scope\" value=\"everything\">";

/// The unsubscribe page names the purpose its message was sent under, withdraws that (the main
/// button, and one-click), and offers everything as a separate choice while anything is left.
fn unsubscribe_page(p: &RecipientPage) -> Response {
    let org = esc(&p.organisation_name);
    if p.test {
        return page(StatusCode::OK, "Unsubscribe", &format!("<h1>Unsubscribe from {org}</h1>{TEST_NOTE}"));
    }
    let any = p.purposes.iter().any(|(_, g)| *g);
    let mut body = match p.message_purpose {
        Some(mp) if p.granted(mp) => format!(
            "<h1>Unsubscribe from {what}?</h1><p>This email was sent to you as <strong>{label}</strong>. You will stop receiving \
             {words} from {org}; other email from {org} is not affected.</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe from {what}</button></form>",
            what = esc(&mp.label().to_lowercase()),
            label = esc(mp.label()),
            words = esc(purpose_words(mp)),
        ),
        Some(mp) => format!(
            "<h1>You are unsubscribed from {what}</h1><p>You will no longer receive {words} from {org}.</p>",
            what = esc(&mp.label().to_lowercase()),
            words = esc(purpose_words(mp)),
        ),
        // A message we cannot attribute to one purpose: its link covers everything.
        None if any => format!(
            "<h1>Unsubscribe from all email from {org}?</h1><p>You will stop receiving every kind of email from {org}, \
             including care communications such as appointment reminders.</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe from all email</button></form>"
        ),
        None => String::new(),
    };
    if !any {
        body.push_str(&format!("<h2>You receive no email from {org}</h2><p>You are unsubscribed from all of it.</p>"));
    } else if p.message_purpose.is_some() {
        let still: Vec<String> =
            p.purposes.iter().filter(|(_, g)| *g).map(|(purpose, _)| esc(purpose.label())).collect();
        body.push_str(&format!(
            "<h2>Or stop everything</h2><p>You currently receive: {}.</p>{EVERYTHING_FORM}\
             <button class=\"secondary\" type=\"submit\">Unsubscribe from all email from {org}</button></form>\
             <p class=\"muted\">This includes care communications such as appointment reminders. You can choose again from the preferences link in any message.</p>",
            still.join(", ")
        ));
    }
    page(StatusCode::OK, "Unsubscribe", &body)
}

pub async fn unsubscribe_get(State(svc): State<Services>, Path(token): Path<String>) -> Response {
    match service::recipient::page(&svc, LinkKind::Unsubscribe, &token).await {
        Ok(p) => unsubscribe_page(&p),
        Err(e) => failure(e),
    }
}

/// `scope=everything` in a form body asks for everything; any other body (RFC 8058's
/// `List-Unsubscribe=One-Click`, multipart, nothing) withdraws the message's own purpose.
fn scope_of(body: &[u8]) -> UnsubscribeScope {
    let everything = body.len() <= 1024
        && std::str::from_utf8(body).is_ok_and(|b| b.split('&').any(|pair| pair.trim() == "scope=everything"));
    if everything { UnsubscribeScope::Everything } else { UnsubscribeScope::Message }
}

/// The confirmation page's buttons and RFC 8058 one-click (the token alone is the credential).
pub async fn unsubscribe_post(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match service::recipient::unsubscribe(&svc, &token, scope_of(&body), ctx.ip.clone()).await {
        Ok(p) => unsubscribe_page(&p),
        Err(e) => failure(e),
    }
}

fn preferences_page(p: &RecipientPage, saved: bool) -> Response {
    let org = esc(&p.organisation_name);
    let mut body = format!("<h1>Email preferences for {org}</h1>");
    if p.test {
        body.push_str(TEST_NOTE);
        return page(StatusCode::OK, "Preferences", &body);
    }
    if saved {
        body.push_str("<p><strong>Saved.</strong></p>");
    }
    body.push_str("<ul>");
    for (purpose, granted) in &p.purposes {
        let (state, action, label, class) = if *granted {
            ("you receive these", "false", "Stop these emails", "secondary")
        } else {
            ("you do not receive these", "true", "Receive these emails", "")
        };
        body.push_str(&format!(
            "<li><strong>{}</strong> — {state}. <form method=\"post\"><input type=\"hidden\" name=\"purpose\" value=\"{}\">\
             <input type=\"hidden\" name=\"granted\" value=\"{action}\"><button class=\"{class}\" type=\"submit\">{label}</button></form></li>",
            esc(purpose_words(*purpose)),
            purpose.as_str()
        ));
    }
    body.push_str("</ul>");
    if p.purposes.iter().any(|(_, g)| *g) {
        body.push_str(
            "<form method=\"post\"><input type=\"hidden\" name=\"purpose\" value=\"everything\">\
             <input type=\"hidden\" name=\"granted\" value=\"false\"><button class=\"secondary\" type=\"submit\">Unsubscribe from all email</button></form>",
        );
    }
    page(StatusCode::OK, "Preferences", &body)
}

pub async fn preferences_get(State(svc): State<Services>, Path(token): Path<String>) -> Response {
    match service::recipient::page(&svc, LinkKind::Preferences, &token).await {
        Ok(p) => preferences_page(&p, false),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
pub struct PreferenceForm {
    purpose: String,
    granted: String,
}

pub async fn preferences_post(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path(token): Path<String>,
    Form(form): Form<PreferenceForm>,
) -> Response {
    let choice = match form.purpose.as_str() {
        "everything" => Preference::Everything,
        other => match ConsentPurpose::parse(other) {
            Some(p) => Preference::Purpose(p),
            None => return failure(ServiceError::invalid("purpose", "is not a known purpose")),
        },
    };
    let granted = form.granted == "true";
    match service::recipient::set_preference(&svc, &token, choice, granted, ctx.ip.clone()).await {
        Ok(p) => preferences_page(&p, true),
        Err(e) => failure(e),
    }
}

fn author_html(html: String) -> Response {
    let mut res = (StatusCode::OK, Html(html)).into_response();
    set_csp(&mut res, AUTHOR_HTML_CSP);
    res
}

/// Author HTML with a real contact's data: nothing remote, not even a DNS prefetch.
fn real_contact_html(html: String) -> Response {
    let mut res = (StatusCode::OK, Html(without_remote_images(&html))).into_response();
    set_csp(&mut res, REAL_CONTACT_CSP);
    res.headers_mut().insert("x-dns-prefetch-control", HeaderValue::from_static("off"));
    res
}

pub async fn view_in_browser(State(svc): State<Services>, Path(token): Path<String>) -> Response {
    match service::templates::preview::view_in_browser(&svc, &token).await {
        Ok(BrowserView::Message { html, .. }) => {
            let mut res = author_html(html);
            // Author HTML framed by nobody.
            res.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation",
                ),
            );
            res
        }
        Ok(BrowserView::Protected) => page(
            StatusCode::OK,
            "Message",
            "<h1>Open this message in your email app</h1><p>It contains personal health information, so it is not shown on a web page.</p>",
        ),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
pub struct FrameQuery {
    sample: Option<String>,
}

/// The preview frame of the template editor (signed-in staff; authorised in the service).
pub async fn preview_frame(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, version)): Path<(Uuid, i32)>,
    Query(q): Query<FrameQuery>,
) -> Response {
    let Some(actor) = ctx.active().and_then(|s| s.actor(ctx.ip.clone())) else {
        return json_error(ServiceError::Unauthenticated);
    };
    let sample = match q.sample.as_deref() {
        None | Some("") | Some("synthetic") => PreviewSample::Synthetic,
        Some(s) => match Uuid::parse_str(s) {
            Ok(c) => PreviewSample::Contact(c),
            Err(_) => return (StatusCode::BAD_REQUEST, "Bad sample.").into_response(),
        },
    };
    match service::templates::preview::preview_frame(&svc, &actor, id, version, sample).await {
        Ok(doc) if doc.remote_content => author_html(doc.html),
        Ok(doc) => real_contact_html(doc.html),
        Err(e) => json_error(e),
    }
}

/// The HTML part of a captured dev-mailbox message, for the mailbox page's sandboxed frame.
pub async fn mailbox_html(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<Uuid>,
) -> Response {
    let Some(actor) = ctx.active().and_then(|s| s.actor(ctx.ip.clone())) else {
        return json_error(ServiceError::Unauthenticated);
    };
    match service::mail::captured_html(&svc, &actor, id).await {
        Ok(html) => real_contact_html(html),
        Err(e) => json_error(e),
    }
}

/// Errors of the preview frame as the JSON every other endpoint answers with (a safe message).
fn json_error(e: ServiceError) -> Response {
    if let ServiceError::Internal(_) = &e {
        tracing::error!(error = %e.log_detail(), "preview frame failed");
    }
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(serde_json::json!({ "code": e.code(), "message": e.to_string() }))).into_response()
}

fn user_agent(headers: &http::HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(300).collect())
}

/// The open pixel. Always the same transparent GIF, whatever the token (a probe learns nothing);
/// valid tokens record an open (buffered, classified human or machine).
pub async fn open_pixel(
    State(svc): State<Services>,
    recorder: Option<axum::Extension<std::sync::Arc<service::campaigns::tracking::Recorder>>>,
    method: http::Method,
    headers: http::HeaderMap,
    Path(token): Path<String>,
) -> Response {
    use service::campaigns::tracking::{self, Hit, Track};
    let now = svc.clock().now();
    let token = token.trim_end_matches(".gif");
    if let Ok(claims) = tracking::open_token(&svc, Track::Open, token, now).await {
        let hit = Hit {
            kind: Track::Open,
            claims,
            user_agent: user_agent(&headers),
            head: method == http::Method::HEAD,
            at: now,
        };
        if let Err(e) = tracking::record(&svc, recorder.as_deref().map(|r| r.as_ref()), hit).await {
            tracing::warn!(error = %e.log_detail(), "open not recorded");
        }
    }
    let mut res = ([(header::CONTENT_TYPE, "image/gif")], tracking::PIXEL_GIF).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    set_csp(&mut res, "default-src 'none'");
    res
}

/// A tracked link: a valid token redirects to the campaign's own link at that position; anything
/// else is a plain "not valid" page with no redirect at all (never an open redirect).
pub async fn click(
    State(svc): State<Services>,
    recorder: Option<axum::Extension<std::sync::Arc<service::campaigns::tracking::Recorder>>>,
    method: http::Method,
    headers: http::HeaderMap,
    Path(token): Path<String>,
) -> Response {
    use service::campaigns::tracking::{self, Hit, Track};
    let now = svc.clock().now();
    let target = async {
        let claims = tracking::open_token(&svc, Track::Click, &token, now).await?;
        let url = tracking::click_target(&svc, &claims).await?;
        Ok::<_, ServiceError>((claims, url))
    }
    .await;
    match target {
        Ok((claims, url)) => {
            let hit = Hit {
                kind: Track::Click,
                claims,
                user_agent: user_agent(&headers),
                head: method == http::Method::HEAD,
                at: now,
            };
            if let Err(e) = tracking::record(&svc, recorder.as_deref().map(|r| r.as_ref()), hit).await {
                tracing::warn!(error = %e.log_detail(), "click not recorded");
            }
            let Ok(location) = HeaderValue::from_str(&url) else {
                return failure(ServiceError::NotFound);
            };
            let mut res = StatusCode::FOUND.into_response();
            res.headers_mut().insert(header::LOCATION, location);
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
            res.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            res
        }
        Err(e) => failure(e),
    }
}

/// What a remote image becomes in a real contact's message: a light grey box (its alt text stays).
const IMAGE_PLACEHOLDER: &str = "data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27 viewBox=%270 0 4 3%27%3E%3Crect width=%274%27 height=%273%27 fill=%27%23e5e7eb%27/%3E%3C/svg%3E";

/// A real contact's message loads nothing remote (`img-src data:`). Rather than leave every remote
/// image — and the tracking pixel — for the browser to block and report as a policy violation, the
/// `<img>` tags point at a placeholder and lose their `srcset`. The CSP still holds whatever this
/// misses (an image in CSS, say): this is presentation, not the protection.
pub(crate) fn without_remote_images(html: &str) -> String {
    // ASCII lower-casing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut at = 0;
    while let Some(rel) = lower[at..].find("<img") {
        let start = at + rel;
        let end = lower[start..].find('>').map_or(html.len(), |e| start + e + 1);
        out.push_str(&html[at..start]);
        out.push_str(&rewrite_img(&html[start..end]));
        at = end;
    }
    out.push_str(&html[at..]);
    out
}

/// One `<img …>` tag with remote `src` replaced and any `srcset` removed.
fn rewrite_img(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    let bytes = tag.as_bytes();
    let lower = tag.to_ascii_lowercase();
    let mut i = 0;
    while i < tag.len() {
        // An attribute name starts after whitespace.
        let boundary = i > 0 && bytes[i - 1].is_ascii_whitespace();
        let name = if boundary && lower[i..].starts_with("srcset") {
            Some("srcset")
        } else if boundary && lower[i..].starts_with("src") {
            Some("src")
        } else {
            None
        };
        if let Some(name) = name {
            let mut j = i + name.len();
            while j < tag.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < tag.len() && bytes[j] == b'=' {
                j += 1;
                while j < tag.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                let (value_start, value_end, after) = match bytes.get(j) {
                    Some(&q) if q == b'"' || q == b'\'' => {
                        let close = tag[j + 1..].find(q as char).map_or(tag.len(), |c| j + 1 + c);
                        (j + 1, close, (close + 1).min(tag.len()))
                    }
                    _ => {
                        let stop =
                            tag[j..].find(|c: char| c.is_ascii_whitespace() || c == '>').map_or(tag.len(), |c| j + c);
                        (j, stop, stop)
                    }
                };
                let value = tag[value_start..value_end].trim_start();
                if name == "srcset" {
                    // Dropped: candidates would be remote.
                } else if value.to_ascii_lowercase().starts_with("data:") {
                    out.push_str(&tag[i..after]);
                } else {
                    out.push_str("src=\"");
                    out.push_str(IMAGE_PLACEHOLDER);
                    out.push('"');
                }
                i = after;
                continue;
            }
        }
        let ch = tag[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{IMAGE_PLACEHOLDER, without_remote_images};

    #[test]
    fn remote_images_become_placeholders_and_nothing_else_changes() {
        let p = IMAGE_PLACEHOLDER;
        for (input, want) in [
            (
                r#"<p>Hi</p><img src="https://example.org/a.jpg" alt="Team">"#.to_string(),
                format!(r#"<p>Hi</p><img src="{p}" alt="Team">"#),
            ),
            (r#"<IMG SRC='http://x.test/t/o/abc' width=1>"#.into(), format!(r#"<IMG src="{p}" width=1>"#)),
            (r#"<img alt=x src=//cdn.test/a.png>"#.into(), format!(r#"<img alt=x src="{p}">"#)),
            (
                r#"<img src = "https://a.test/1.png" srcset="https://a.test/2.png 2x">"#.into(),
                format!(r#"<img src="{p}" >"#),
            ),
            (
                r#"<img src="data:image/png;base64,AAAA" data-src="https://a.test/x">"#.into(),
                r#"<img src="data:image/png;base64,AAAA" data-src="https://a.test/x">"#.into(),
            ),
            ("<p>no images, ünïcode ✓</p>".into(), "<p>no images, ünïcode ✓</p>".into()),
            // Truncated or hostile markup never panics and never keeps a remote source.
            (r#"<img src="https://a.test/unterminated"#.into(), format!(r#"<img src="{p}""#)),
            ("<img".into(), "<img".into()),
            ("<img src=".into(), format!(r#"<img src="{p}""#)),
        ] {
            let got = without_remote_images(&input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("https://a.test/1") && !got.contains("x.test/t/o"), "{got}");
        }
    }
}
