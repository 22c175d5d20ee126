//! The one route table: every axum route, page and server function with who may call it.
//!
//! The session middleware uses it (page redirects, which calls count as activity); a test walks it
//! for every role and for an anonymous caller, and fails if the router has a route the table lacks.
//! The permission listed for a server function is *checked inside the service*; the table only
//! states it so the test can prove the service agrees.

use app::pages_table::{PAGES, PageAccess};
use domain::Permission;
use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Page,
    ServerFn,
    Http,
    Static,
    /// The machine interface (`/api/v1`): an API key, never a session.
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Only a session that has passed its password and owes an MFA code.
    MfaStep,
    /// Only a session that must enrol an authenticator.
    EnrolStep,
    /// A signed-in user holding the permission.
    Signed(Permission),
    /// A signed-in user holding any of these permissions.
    SignedAny(&'static [Permission]),
    /// An API key whose scopes grant the permission (`/api/v1`); sessions never pass.
    Key(Permission),
    /// The metrics bearer token (`/metrics`, operations); sessions never pass, and without a
    /// configured token the route does not exist (404).
    MetricsToken,
}

impl Access {
    /// Whether a signed-in role passes this rule.
    pub fn allows(&self, role: domain::Role) -> bool {
        match self {
            Access::Public | Access::MfaStep | Access::EnrolStep => true,
            Access::Signed(p) => role.allows(*p),
            Access::SignedAny(ps) => ps.iter().any(|p| role.allows(*p)),
            Access::Key(_) | Access::MetricsToken => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub kind: Kind,
    pub access: Access,
    /// Whether the call counts as user activity (resets the idle timer).
    pub touches_session: bool,
}

use Access::*;
use Permission as P;

/// Server functions (`POST /api/<endpoint>`).
const API: &[(&str, Access)] = &[
    ("/api/sign_in", Public),
    ("/api/verify_mfa", MfaStep),
    ("/api/begin_enrolment", EnrolStep),
    ("/api/confirm_enrolment", EnrolStep),
    ("/api/sign_out", Public),
    ("/api/session_status", Public),
    ("/api/keep_alive", Signed(P::OwnAccount)),
    ("/api/current_user", Public),
    ("/api/change_password", Signed(P::OwnAccount)),
    ("/api/my_sessions", Signed(P::OwnAccount)),
    ("/api/lookup_invite", Public),
    ("/api/accept_invite", Public),
    ("/api/list_users", Signed(P::UsersManage)),
    ("/api/invite_user", Signed(P::UsersManage)),
    ("/api/resend_invite", Signed(P::UsersManage)),
    ("/api/revoke_invite", Signed(P::UsersManage)),
    ("/api/change_role", Signed(P::UsersManage)),
    ("/api/disable_user", Signed(P::UsersManage)),
    ("/api/enable_user", Signed(P::UsersManage)),
    ("/api/reset_user_mfa", Signed(P::UsersManage)),
    ("/api/audit_list", Signed(P::AuditRead)),
    ("/api/audit_verify", Signed(P::AuditRead)),
    ("/api/audit_last_report", Signed(P::AuditRead)),
    ("/api/contacts_page", Signed(P::ContactsRead)),
    ("/api/browse_contacts", Signed(P::ContactsRead)),
    ("/api/get_contact", Signed(P::ContactsRead)),
    ("/api/contact_events", Signed(P::ContactsRead)),
    ("/api/event_properties", Signed(P::ContactsRead)),
    ("/api/create_contact", Signed(P::ContactsWrite)),
    ("/api/update_contact", Signed(P::ContactsWrite)),
    ("/api/delete_contact", Signed(P::ContactsWrite)),
    ("/api/record_consent", Signed(P::ContactsWrite)),
    ("/api/list_fields", SignedAny(&[P::ContactsRead, P::SegmentsCount, P::TemplatesRead])),
    ("/api/create_field", Signed(P::SettingsManage)),
    ("/api/delete_field", Signed(P::SettingsManage)),
    ("/api/list_lists", SignedAny(&[P::ContactsRead, P::CampaignsRead, P::SegmentsCount])),
    ("/api/create_list", Signed(P::ContactsWrite)),
    ("/api/delete_list", Signed(P::ContactsWrite)),
    ("/api/add_to_list", Signed(P::ContactsWrite)),
    ("/api/unsubscribe_from_list", Signed(P::ContactsWrite)),
    ("/api/list_suppressions", Signed(P::ContactsRead)),
    ("/api/list_unsubscribes", Signed(P::ContactsRead)),
    ("/api/add_suppression", Signed(P::ContactsWrite)),
    ("/api/remove_suppression", Signed(P::ContactsWrite)),
    ("/api/preview_import", Signed(P::ContactsWrite)),
    ("/api/start_import", Signed(P::ContactsWrite)),
    ("/api/import_status", Signed(P::ContactsWrite)),
    ("/api/recent_imports", Signed(P::ContactsWrite)),
    ("/api/cancel_import", Signed(P::ContactsWrite)),
    ("/api/lookup_optin", Public),
    ("/api/confirm_optin", Public),
    ("/api/dev_mailbox", Signed(P::SettingsManage)),
    ("/api/dev_mail", Signed(P::SettingsManage)),
    ("/api/list_templates", Signed(P::TemplatesRead)),
    ("/api/template_starters", Signed(P::TemplatesRead)),
    ("/api/create_template", Signed(P::TemplatesWrite)),
    ("/api/open_template", Signed(P::TemplatesRead)),
    ("/api/save_template", Signed(P::TemplatesWrite)),
    ("/api/rename_template", Signed(P::TemplatesWrite)),
    ("/api/archive_template", Signed(P::TemplatesWrite)),
    ("/api/preview_template", Signed(P::TemplatesRead)),
    ("/api/test_send_template", Signed(P::TemplatesWrite)),
    ("/api/segment_options", Signed(P::SegmentsCount)),
    ("/api/list_segments", Signed(P::SegmentsCount)),
    ("/api/open_segment", Signed(P::SegmentsCount)),
    ("/api/create_segment", Signed(P::SegmentsWrite)),
    ("/api/update_segment", Signed(P::SegmentsWrite)),
    ("/api/duplicate_segment", Signed(P::SegmentsWrite)),
    ("/api/delete_segment", Signed(P::SegmentsWrite)),
    // Counting a tree of one's own needs SegmentsCount and ContactsRead (issue 18: analysts count
    // saved segments only); every role with ContactsRead has SegmentsCount.
    ("/api/count_segment", Signed(P::ContactsRead)),
    ("/api/count_saved_segment", Signed(P::SegmentsCount)),
    ("/api/preview_segment", Signed(P::SegmentsWrite)),
    ("/api/segment_to_list", Signed(P::SegmentsWrite)),
    ("/api/campaign_options", Signed(P::CampaignsWrite)),
    ("/api/getting_started", Signed(P::CampaignsWrite)),
    ("/api/list_campaigns", Signed(P::CampaignsRead)),
    ("/api/open_campaign", Signed(P::CampaignsRead)),
    ("/api/create_campaign", Signed(P::CampaignsWrite)),
    ("/api/update_campaign", Signed(P::CampaignsWrite)),
    ("/api/delete_campaign", Signed(P::CampaignsWrite)),
    ("/api/count_audience", Signed(P::CampaignsWrite)),
    ("/api/launch_campaign", Signed(P::CampaignsWrite)),
    ("/api/unschedule_campaign", Signed(P::CampaignsWrite)),
    ("/api/pause_campaign", Signed(P::CampaignsWrite)),
    ("/api/resume_campaign", Signed(P::CampaignsWrite)),
    ("/api/cancel_campaign", Signed(P::CampaignsWrite)),
    ("/api/test_send_campaign", Signed(P::CampaignsWrite)),
    ("/api/campaign_progress", Signed(P::CampaignsRead)),
    ("/api/campaign_report", Signed(P::ReportsRead)),
    ("/api/list_sending_domains", Signed(P::SettingsManage)),
    ("/api/add_sending_domain", Signed(P::SettingsManage)),
    ("/api/verify_sending_domain", Signed(P::SettingsManage)),
    ("/api/remove_sending_domain", Signed(P::SettingsManage)),
    ("/api/list_api_keys", Signed(P::SettingsManage)),
    ("/api/create_api_key", Signed(P::SettingsManage)),
    ("/api/revoke_api_key", Signed(P::SettingsManage)),
    ("/api/list_webhooks", Signed(P::SettingsManage)),
    ("/api/create_webhook", Signed(P::SettingsManage)),
    ("/api/update_webhook", Signed(P::SettingsManage)),
    ("/api/delete_webhook", Signed(P::SettingsManage)),
    ("/api/rotate_webhook_secret", Signed(P::SettingsManage)),
    ("/api/test_webhook", Signed(P::SettingsManage)),
    // Sequences. Editing the working copy, publishing and removing an enrolment also need
    // ContactsRead (the draft holds trigger literals; enrolments name contacts): every role with
    // SequencesWrite has it. Analysts read the list and the masked view only.
    ("/api/list_sequences", Signed(P::SequencesRead)),
    ("/api/open_sequence", Signed(P::SequencesRead)),
    ("/api/create_sequence", Signed(P::SequencesWrite)),
    ("/api/save_sequence", Signed(P::SequencesWrite)),
    ("/api/publish_sequence", Signed(P::SequencesWrite)),
    ("/api/set_sequence_status", Signed(P::SequencesWrite)),
    ("/api/enrol_contact", Signed(P::SequencesWrite)),
    ("/api/remove_enrolment", Signed(P::SequencesWrite)),
    ("/api/sequence_enrolments", Signed(P::ContactsRead)),
    ("/api/contact_enrolments", Signed(P::ContactsRead)),
    ("/api/enrolment_trail", Signed(P::ContactsRead)),
    ("/api/test_run_sequence", Signed(P::ContactsRead)),
    ("/api/sequence_report", Signed(P::ReportsRead)),
    // Analyst reports: figures only (small cells hidden for roles that may not read contacts).
    ("/api/report_context", Signed(P::ReportsRead)),
    ("/api/report_home", Signed(P::ReportsRead)),
    ("/api/report_overview", Signed(P::ReportsRead)),
    ("/api/report_comparison", Signed(P::ReportsRead)),
    ("/api/report_drill", Signed(P::ReportsRead)),
    ("/api/report_curves", Signed(P::ReportsRead)),
    ("/api/set_report_time_zone", Signed(P::SettingsManage)),
    ("/api/report_digest", Signed(P::ReportsRead)),
    ("/api/set_report_digest", Signed(P::ReportsRead)),
];

/// Server functions that never count as activity: exactly the app's background polls
/// (`app::background::POLLS`: the idle-warning check, campaign and import progress). Only a
/// person's actions keep a session alive; a page that merely polls is signed out when idle.
fn touches_session(path: &str) -> bool {
    !app::background::POLLS.contains(&path)
}

pub fn table() -> Vec<RouteSpec> {
    let mut t = Vec::new();
    for (path, access) in PAGES {
        let access = match access {
            PageAccess::Public => Public,
            PageAccess::MfaStep => MfaStep,
            PageAccess::EnrolStep => EnrolStep,
            PageAccess::Permission(p) => Signed(*p),
        };
        t.push(RouteSpec { method: Method::GET, path, kind: Kind::Page, access, touches_session: true });
    }
    for (path, access) in API {
        t.push(RouteSpec {
            method: Method::POST,
            path,
            kind: Kind::ServerFn,
            access: *access,
            touches_session: touches_session(path),
        });
    }
    t.push(RouteSpec {
        method: Method::GET,
        path: "/healthz",
        kind: Kind::Http,
        access: Public,
        touches_session: false,
    });
    t.push(RouteSpec {
        method: Method::GET,
        path: crate::metrics::PATH,
        kind: Kind::Http,
        access: MetricsToken,
        touches_session: false,
    });
    t.push(RouteSpec {
        method: Method::GET,
        path: "/pkg/{*path}",
        kind: Kind::Static,
        access: Public,
        touches_session: false,
    });
    t.push(RouteSpec {
        method: Method::GET,
        path: "/favicon.svg",
        kind: Kind::Static,
        access: Public,
        touches_session: false,
    });
    for (method, path, permission) in crate::api::ROUTES {
        t.push(RouteSpec {
            method: method.clone(),
            path,
            kind: Kind::Api,
            access: Key(*permission),
            touches_session: false,
        });
    }
    // The API's own description: public (no organisation's data), no key, no session.
    t.push(RouteSpec {
        method: Method::GET,
        path: crate::api::OPENAPI_PATH,
        kind: Kind::Api,
        access: Public,
        touches_session: false,
    });
    for (method, path, access) in HTTP {
        // A recipient's link never extends a staff session that happens to be open in the browser.
        let touches_session = !path.starts_with("/l/") && !path.starts_with("/t/");
        t.push(RouteSpec { method: method.clone(), path, kind: Kind::Http, access: *access, touches_session });
    }
    t
}

/// Plain HTTP routes that stream bodies (see `downloads.rs`).
const HTTP: &[(Method, &str, Access)] = &[
    (Method::POST, "/imports/upload", Signed(P::ContactsWrite)),
    (Method::GET, "/imports/{id}/errors.csv", Signed(P::ContactsWrite)),
    (Method::GET, "/contacts/export.csv", Signed(P::ContactsExport)),
    (Method::GET, "/templates/{id}/preview/{version}", Signed(P::TemplatesRead)),
    (Method::GET, "/settings/mailbox/{id}/html", Signed(P::SettingsManage)),
    // Report exports: overview.csv, overview.svg, comparison.csv (?from=&to=, local dates).
    (Method::GET, "/reports/export/{file}", Signed(P::ReportsRead)),
    (Method::GET, "/l/unsubscribe/{token}", Public),
    (Method::POST, "/l/unsubscribe/{token}", Public),
    (Method::GET, "/l/preferences/{token}", Public),
    (Method::POST, "/l/preferences/{token}", Public),
    (Method::GET, "/l/view/{token}", Public),
    (Method::GET, "/t/o/{token}", Public),
    (Method::GET, "/t/c/{token}", Public),
    // The API's documentation for integration engineers, made from the OpenAPI document.
    (Method::GET, "/api/docs", Public),
];

/// Routes whose credential is an opaque signed token in the path (system links in messages).
pub fn token_route(spec: &RouteSpec) -> bool {
    spec.kind == Kind::Http && (spec.path.starts_with("/l/") || spec.path.starts_with("/t/"))
}

/// The entry for a request, if any (trailing slashes ignored; `{id}` matches a segment, `{*path}`
/// the rest; exact paths win over parameterised ones).
pub fn lookup<'a>(table: &'a [RouteSpec], method: &Method, path: &str) -> Option<&'a RouteSpec> {
    let same = |r: &RouteSpec| r.method == *method || (*method == Method::HEAD && r.method == Method::GET);
    let candidates: Vec<&RouteSpec> = table.iter().filter(|r| same(r)).collect();
    app::pages_table::find(&candidates, path, |r| r.path).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_found() {
        let t = table();
        for r in &t {
            assert_eq!(t.iter().filter(|q| q.path == r.path && q.method == r.method).count(), 1, "{}", r.path);
        }
        assert_eq!(lookup(&t, &Method::GET, "/pkg/hermetic.css").map(|r| r.kind), Some(Kind::Static));
        assert_eq!(lookup(&t, &Method::GET, "/audit/").map(|r| r.path), Some("/audit"));
        assert!(lookup(&t, &Method::GET, "/api/sign_in").is_none());
    }

    /// Every call the app makes on a timer is in the table and does not touch the session; every
    /// other server function does (a person called it).
    #[test]
    fn background_polls_never_count_as_activity() {
        let t = table();
        for poll in app::background::POLLS {
            let r = t.iter().find(|r| r.path == *poll && r.kind == Kind::ServerFn);
            assert_eq!(r.map(|r| r.touches_session), Some(false), "{poll} must be listed and marked no-touch");
        }
        for r in t.iter().filter(|r| r.kind == Kind::ServerFn && !r.touches_session) {
            assert!(app::background::POLLS.contains(&r.path), "{} is no-touch but is not a background poll", r.path);
        }
        for p in ["/api/campaign_progress", "/api/import_status", "/api/session_status"] {
            assert!(!lookup(&t, &Method::POST, p).unwrap().touches_session, "{p}");
        }
        assert!(lookup(&t, &Method::POST, "/api/keep_alive").unwrap().touches_session);
        assert!(lookup(&t, &Method::POST, "/api/pause_campaign").unwrap().touches_session);
    }

    /// Every server function compiled into the app is in the table with the right method.
    #[test]
    fn every_server_function_is_listed() {
        let t = table();
        let fns: Vec<(&'static str, http::Method)> = leptos::server_fn::axum::server_fn_paths().collect();
        assert!(fns.len() >= API.len(), "server functions not linked: {fns:?}");
        for (path, method) in &fns {
            assert!(
                t.iter().any(|r| r.kind == Kind::ServerFn && r.path == *path && r.method == *method),
                "server function {method} {path} is missing from the route table"
            );
        }
        for r in t.iter().filter(|r| r.kind == Kind::ServerFn) {
            assert!(fns.iter().any(|(p, _)| *p == r.path), "table lists {} but no such server function exists", r.path);
        }
    }
}
