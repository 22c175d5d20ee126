//! The role matrix: every entry of the route table, requested by an anonymous visitor, a session
//! waiting for MFA, a session that must enrol, and each role — and the answer must match the
//! permission the table declares. Also fails when the router has a page or server function that the
//! table does not list.

use crate::harness::*;
use domain::Role;
use server::routes::{self, Access, Kind, RouteSpec};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    MfaPending,
    EnrolPending,
    Active(Role),
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Redirect(&'static str),
    Forbidden,
    Unauthenticated,
}

fn expect(spec: &RouteSpec, who: Who) -> Expect {
    use Expect::*;
    let page = spec.kind == Kind::Page;
    let signed_out = |to: &'static str| if page { Redirect(to) } else { Unauthenticated };
    match (spec.access, who) {
        (_, _) if spec.kind == Kind::Static => Allowed,
        // The machine interface: no session of any kind counts (api::every_api_route_… tests keys).
        (Access::Key(_), _) => Unauthenticated,
        // Operations (`/metrics`): only its bearer token opens it (metrics::… tests the token).
        (Access::MetricsToken, _) => Unauthenticated,
        (Access::Public, Who::Active(_)) if spec.path == "/login" => Redirect("/"),
        (Access::Public, _) => Allowed,
        (Access::MfaStep, Who::MfaPending) | (Access::EnrolStep, Who::EnrolPending) => Allowed,
        (Access::MfaStep | Access::EnrolStep, Who::Anonymous) => signed_out("/login"),
        (Access::MfaStep, Who::Active(_)) | (Access::EnrolStep, Who::Active(_)) => {
            if page {
                Redirect("/")
            } else {
                Forbidden
            }
        }
        (Access::MfaStep, Who::EnrolPending) => {
            if page {
                Redirect("/login/enrol")
            } else {
                Forbidden
            }
        }
        (Access::EnrolStep, Who::MfaPending) => {
            if page {
                Redirect("/login/mfa")
            } else {
                Forbidden
            }
        }
        (a @ (Access::Signed(_) | Access::SignedAny(_)), Who::Active(r)) => {
            if a.allows(r) {
                Allowed
            } else {
                Forbidden
            }
        }
        (Access::Signed(_) | Access::SignedAny(_), Who::Anonymous) => signed_out("/login"),
        (Access::Signed(_) | Access::SignedAny(_), Who::MfaPending) => signed_out("/login/mfa"),
        (Access::Signed(_) | Access::SignedAny(_), Who::EnrolPending) => signed_out("/login/enrol"),
    }
}

/// A well-formed body for each server function, so the call reaches the service's authorisation.
fn sample(path: &str) -> Option<(&'static str, String)> {
    let form = "application/x-www-form-urlencoded";
    let none = "00000000-0000-7000-8000-000000000000";
    Some(match path {
        "/api/sign_in" => (form, "email=nobody%40example.test&password=not-the-password".into()),
        "/api/verify_mfa" | "/api/confirm_enrolment" => (form, "code=000000".into()),
        "/api/change_password" => (form, "current=not-the-password&new=another%20good%20passphrase".into()),
        "/api/lookup_invite" => (form, "token=bogus".into()),
        "/api/accept_invite" => (form, format!("token=bogus&password={}", urlencode(PASSWORD))),
        "/api/invite_user" => {
            (form, format!("email=new-{}%40example.test&display_name=New&role=analyst", uuid::Uuid::new_v4().simple()))
        }
        "/api/change_role" => (form, format!("user_id={none}&role=analyst")),
        "/api/disable_user"
        | "/api/enable_user"
        | "/api/reset_user_mfa"
        | "/api/resend_invite"
        | "/api/revoke_invite" => (form, format!("user_id={none}")),
        "/api/audit_list" => ("application/json", r#"{"filter":{}}"#.into()),
        "/imports/upload" => ("text/csv", "email,first_name\nperson@example.test,Pat\n".into()),
        "/api/contacts_page" => (form, String::new()),
        "/api/browse_contacts" => ("application/json", r#"{"after":null,"query":{"sort":"updated_desc"}}"#.into()),
        "/api/get_contact"
        | "/api/delete_contact"
        | "/api/preview_import"
        | "/api/import_status"
        | "/api/cancel_import"
        | "/api/delete_field"
        | "/api/delete_list"
        | "/api/dev_mail" => (form, format!("id={none}")),
        "/api/create_contact" => ("application/json", r#"{"input":{"fields":{"email":"matrix@example.test"}}}"#.into()),
        "/api/update_contact" => {
            ("application/json", format!(r#"{{"id":"{none}","input":{{"fields":{{"email":"matrix@example.test"}}}}}}"#))
        }
        "/api/record_consent" => (form, format!("contact_id={none}&purpose=marketing&granted=true&consent_text=")),
        "/api/create_field" => (
            "application/json",
            format!(
                r#"{{"key":"f{}","label":"F","field_type":"text","options":[],"is_phi":true}}"#,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        ),
        "/api/create_list" => {
            (form, format!("name=List%20{}&description=&purpose=marketing", uuid::Uuid::new_v4().simple()))
        }
        "/api/add_to_list" => ("application/json", format!(r#"{{"list_id":"{none}","contact_ids":[]}}"#)),
        "/api/unsubscribe_from_list" => (form, format!("list_id={none}&contact_id={none}")),
        "/api/add_suppression" => (form, "email=blocked%40example.test&reason=manual".into()),
        "/api/remove_suppression" => (form, "reference=0000000000000000".into()),
        "/api/start_import" => (
            "application/json",
            format!(
                r#"{{"id":"{none}","options":{{"mapping":[],"dedupe":"skip","list_ids":[],"consent_purpose":null,"consent_text":null}}}}"#
            ),
        ),
        "/api/lookup_optin" | "/api/confirm_optin" => (form, "token=bogus".into()),
        "/api/create_template" => (form, format!("name=T%20{}&starter=", uuid::Uuid::new_v4().simple())),
        "/api/open_template" | "/api/archive_template" => (form, format!("id={none}")),
        "/api/rename_template" => (form, format!("id={none}&name=Renamed")),
        "/api/save_template" => {
            ("application/json", format!(r#"{{"id":"{none}","base_version":1,"content":{SAMPLE_CONTENT}}}"#))
        }
        "/api/preview_template" => {
            ("application/json", format!(r#"{{"id":"{none}","content":{SAMPLE_CONTENT},"sample":"Synthetic"}}"#))
        }
        "/api/test_send_template" => ("application/json", format!(r#"{{"id":"{none}","content":{SAMPLE_CONTENT}}}"#)),
        "/api/open_segment" | "/api/duplicate_segment" | "/api/delete_segment" | "/api/count_saved_segment" => {
            (form, format!("id={none}"))
        }
        "/api/create_segment" => (
            "application/json",
            format!(r#"{{"name":"S {}","definition":{SAMPLE_SEGMENT}}}"#, uuid::Uuid::new_v4().simple()),
        ),
        "/api/update_segment" => {
            ("application/json", format!(r#"{{"id":"{none}","name":"S","definition":{SAMPLE_SEGMENT}}}"#))
        }
        "/api/count_segment" | "/api/preview_segment" => {
            ("application/json", format!(r#"{{"definition":{SAMPLE_SEGMENT}}}"#))
        }
        "/api/segment_to_list" => (
            "application/json",
            format!(r#"{{"list_name":"L {}","definition":{SAMPLE_SEGMENT}}}"#, uuid::Uuid::new_v4().simple()),
        ),
        "/api/open_campaign"
        | "/api/delete_campaign"
        | "/api/launch_campaign"
        | "/api/unschedule_campaign"
        | "/api/pause_campaign"
        | "/api/resume_campaign"
        | "/api/cancel_campaign"
        | "/api/test_send_campaign"
        | "/api/campaign_progress"
        | "/api/campaign_report"
        | "/api/sequence_report" => (form, format!("id={none}")),
        "/api/create_campaign" => (
            "application/json",
            format!(r#"{{"settings":{}}}"#, sample_campaign(&format!("C {}", uuid::Uuid::new_v4().simple()))),
        ),
        "/api/update_campaign" => {
            ("application/json", format!(r#"{{"id":"{none}","settings":{}}}"#, sample_campaign("C")))
        }
        "/api/count_audience" => {
            ("application/json", r#"{"audience":{"segments":[],"lists":[]},"purpose":"marketing"}"#.into())
        }
        "/api/add_sending_domain" => (form, format!("domain=matrix-{}.example", uuid::Uuid::new_v4().simple())),
        "/api/verify_sending_domain" | "/api/remove_sending_domain" => (form, format!("id={none}")),
        "/l/unsubscribe/{token}" => (form, "List-Unsubscribe=One-Click".into()),
        "/l/preferences/{token}" => (form, "purpose=marketing&granted=false".into()),
        "/api/sign_out"
        | "/api/begin_enrolment"
        | "/api/session_status"
        | "/api/keep_alive"
        | "/api/current_user"
        | "/api/my_sessions"
        | "/api/list_users"
        | "/api/audit_verify"
        | "/api/audit_last_report"
        | "/api/list_fields"
        | "/api/list_lists"
        | "/api/list_suppressions"
        | "/api/list_unsubscribes"
        | "/api/recent_imports"
        | "/api/dev_mailbox"
        | "/api/list_templates"
        | "/api/template_starters"
        | "/api/segment_options"
        | "/api/list_segments"
        | "/api/campaign_options"
        | "/api/getting_started"
        | "/api/list_campaigns"
        | "/api/list_sending_domains"
        | "/api/list_api_keys"
        | "/api/list_webhooks"
        | "/api/report_context"
        | "/api/report_home"
        | "/api/report_digest" => (form, String::new()),
        "/api/set_report_digest" => (form, "on=false".into()),
        "/api/report_overview" | "/api/report_comparison" => (form, "from=2026-11-01&to=2026-11-30".into()),
        "/api/set_report_time_zone" => (form, "time_zone=UTC".into()),
        "/api/report_drill" => (form, format!("kind=campaign&id={none}&step=&from=2026-11-01&to=2026-11-30")),
        "/api/report_curves" => {
            ("application/json", format!(r#"{{"sources":[{{"kind":"campaign","id":"{none}","step_id":""}}]}}"#))
        }
        "/api/revoke_api_key"
        | "/api/contact_events"
        | "/api/event_properties"
        | "/api/delete_webhook"
        | "/api/rotate_webhook_secret"
        | "/api/test_webhook" => (form, format!("id={none}")),
        // A public literal address, so the admin's call passes the guard without DNS (and creates
        // an endpoint, which is harmless here).
        "/api/create_webhook" => (
            "application/json",
            r#"{"endpoint":{"url":"https://93.184.216.34/hook","events":["message.sent"],"enabled":true}}"#.into(),
        ),
        "/api/update_webhook" => (
            "application/json",
            format!(
                r#"{{"id":"{none}","endpoint":{{"url":"https://93.184.216.34/hook","events":["message.sent"],"enabled":true}}}}"#
            ),
        ),
        "/api/list_sequences" => (form, String::new()),
        "/api/open_sequence" | "/api/contact_enrolments" | "/api/enrolment_trail" | "/api/remove_enrolment" => {
            (form, format!("id={none}"))
        }
        "/api/create_sequence" => (form, format!("name=Seq%20{}", uuid::Uuid::new_v4().simple())),
        "/api/save_sequence" => (
            "application/json",
            format!(
                r#"{{"id":"{none}","name":"S","from_name":"Clinic","from_email":"care@clinic.test","definition":{SAMPLE_SEQUENCE}}}"#
            ),
        ),
        "/api/publish_sequence" => ("application/json", format!(r#"{{"id":"{none}","move_waiting_at":[]}}"#)),
        "/api/set_sequence_status" => ("application/json", format!(r#"{{"id":"{none}","status":"paused"}}"#)),
        "/api/sequence_enrolments" => ("application/json", format!(r#"{{"id":"{none}","state":null}}"#)),
        "/api/enrol_contact" => (form, format!("id={none}&contact={none}")),
        "/api/test_run_sequence" => (
            "application/json",
            format!(
                r#"{{"id":"{none}","simulation":{{"start":"2026-12-01T09:00:00Z","event":{{}},"responds":false,"branches_hold":false,"draw":0}},"time_zone":null}}"#
            ),
        ),
        "/api/create_api_key" => (
            "application/json",
            r#"{"key":{"name":"Matrix","scopes":["events:write"],"expires_at":null,"require_signature":false}}"#.into(),
        ),
        _ => return None,
    })
}

/// A draft campaign's settings as the editor sends them.
pub fn sample_campaign(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","purpose":"marketing","audience":{{"segments":[],"lists":[]}},"template_id":null,"from_name":"Clinic","from_email":"news@clinic.test","reply_to":null,"policy":"tls_required","schedule":{{"kind":"now"}},"throttle":{{"per_second":50,"per_domain_per_minute":null}},"auto_pause":{{"after_consecutive_errors":10}}}}"#
    )
}

const SAMPLE_SEQUENCE: &str =
    r#"{"version":1,"trigger":{"kind":"manual"},"start":"a","steps":[{"id":"a","kind":"exit"}]}"#;
pub(crate) const SAMPLE_SEGMENT: &str = r#"{"version":1,"root":{"node":"and","children":[]}}"#;
const SAMPLE_CONTENT: &str = r#"{"mode":"html","subject":"Hi","preheader":"","design":{"blocks":[]},"html":"<p>Hello</p>","text":"","text_edited":false}"#;

fn concrete(path: &str) -> String {
    path.replace("{*path}", "hermetic.css")
        .replace("{id}", "00000000-0000-7000-8000-000000000000")
        .replace("{version}", "1")
        .replace("{token}", "bogus-token")
        .replace("{file}", "overview.csv")
}

async fn check(c: &Client, spec: &RouteSpec, who: Who) -> Result<(), String> {
    let want = expect(spec, who);
    let (status, location, code) = if spec.kind == Kind::Api {
        let method = reqwest::Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
        let csrf = c.csrf().unwrap_or_default();
        let r = c
            .send(
                method,
                &concrete(spec.path),
                &[("content-type", "application/json"), ("x-csrf-token", &csrf)],
                b"{}".to_vec(),
            )
            .await;
        let code = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string));
        (r.status, None, code)
    } else if spec.method == http::Method::GET {
        let r = c.get(&concrete(spec.path)).await;
        let loc = r.headers.get("location").map(|v| v.to_str().unwrap().to_string());
        let code = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string));
        (r.status, loc, code)
    } else {
        let (ct, body) = sample(spec.path)
            .ok_or_else(|| format!("no sample body for {}: add one to role_matrix::sample", spec.path))?;
        let r = c.post_raw(&concrete(spec.path), ct, body, c.csrf(), &[]).await;
        let code = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string));
        (r.status, None, code)
    };
    let ok = match &want {
        // Allowed to ask: the answer may still be "wrong password" or "not found", never a denial.
        Expect::Allowed => {
            !matches!(status, 403 | 303 | 302)
                && !matches!(code.as_deref(), Some("unauthenticated" | "session_expired" | "forbidden" | "csrf"))
                && (spec.kind != Kind::Page || status == 200 || (spec.path.contains('{') && status == 404))
        }
        Expect::Redirect(to) => {
            status == 303 && location.as_deref().is_some_and(|l| l == *to || l.starts_with(&format!("{to}?")))
        }
        Expect::Forbidden => status == 403 && (spec.kind == Kind::Page || code.as_deref() == Some("forbidden")),
        Expect::Unauthenticated => {
            status == 401 && matches!(code.as_deref(), Some("unauthenticated" | "session_expired"))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{who:?} {} {}: expected {want:?}, got {status} {location:?} {code:?}", spec.method, spec.path))
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("HERMETIC_SITE_ROOT", format!("{}/../public", env!("CARGO_MANIFEST_DIR"))),
            // On, so that the matrix proves no session opens it (off, it is 404 for everyone).
            ("HERMETIC_METRICS_TOKEN", crate::metrics::TOKEN.into()),
        ],
        ..Default::default()
    })
    .await;
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    app.add_user(org, "analyst@clinic.test", Role::Analyst).await;
    app.add_user(org, "mfa@clinic.test", Role::Marketer).await;
    app.add_user(org, "enrol@clinic.test", Role::Marketer).await;

    let mut callers: Vec<(Who, Client)> = Vec::new();
    let anon = app.client();
    anon.page("/login").await;
    callers.push((Who::Anonymous, anon));
    for (role, email) in [
        (Role::Admin, "admin@clinic.test"),
        (Role::Marketer, "marketer@clinic.test"),
        (Role::Analyst, "analyst@clinic.test"),
    ] {
        let (c, _) = app.sign_in(email, None).await;
        callers.push((Who::Active(role), c));
        app.advance(1);
    }
    // A user with MFA who has only given the password; a user who still has to enrol.
    app.sign_in("mfa@clinic.test", None).await;
    app.advance(31);
    let mfa = app.client();
    mfa.page("/login").await;
    assert_eq!(mfa.call("sign_in", &[("email", "mfa@clinic.test"), ("password", PASSWORD)]).await.1, "mfa");
    mfa.page("/login/mfa").await;
    callers.push((Who::MfaPending, mfa));
    let enrol = app.client();
    enrol.page("/login").await;
    assert_eq!(enrol.call("sign_in", &[("email", "enrol@clinic.test"), ("password", PASSWORD)]).await.1, "enrol_mfa");
    enrol.page("/login/enrol").await;
    callers.push((Who::EnrolPending, enrol));

    let table = routes::table();
    let mut failures = Vec::new();
    for (who, client) in &callers {
        // Sign-out ends the caller's session, so it goes last.
        let (last, rest): (Vec<&RouteSpec>, Vec<&RouteSpec>) = table.iter().partition(|s| s.path == "/api/sign_out");
        for spec in rest.into_iter().chain(last) {
            if let Err(e) = check(client, spec, *who).await {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "role matrix mismatches:\n{}", failures.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn the_table_lists_every_page_and_server_function() {
    let table = routes::table();
    let listed: BTreeSet<String> = table.iter().filter(|r| r.kind == Kind::Page).map(|r| r.path.to_string()).collect();
    let routed: BTreeSet<String> = server::web::page_routes().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(routed, listed, "pages in the router vs the route table");
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        assert!(
            table.iter().any(|r| r.kind == Kind::ServerFn && r.path == path && r.method == method),
            "server function {method} {path} is missing from the route table"
        );
        assert!(sample(path).is_some(), "server function {path} has no sample body in the role matrix");
    }
    for path in server::web::HTTP_ROUTES {
        assert!(table.iter().any(|r| r.kind == Kind::Http && r.path == *path), "{path} is routed but not in the table");
    }
}
