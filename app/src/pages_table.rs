//! The page catalogue: every page path with who may open it. The server's route table includes it,
//! the session middleware uses it to redirect signed-out visitors, and a test checks it against the
//! router so no page is missing.

use domain::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    /// Anyone (sign-in, invitation).
    Public,
    /// Only a session waiting for its MFA code.
    MfaStep,
    /// Only a session that must enrol an authenticator.
    EnrolStep,
    /// Any fully signed-in user holding this permission.
    Permission(Permission),
}

pub const PAGES: &[(&str, PageAccess)] = &[
    ("/login", PageAccess::Public),
    ("/login/mfa", PageAccess::MfaStep),
    ("/login/enrol", PageAccess::EnrolStep),
    ("/invite", PageAccess::Public),
    ("/", PageAccess::Permission(Permission::OwnAccount)),
    ("/contacts", PageAccess::Permission(Permission::ContactsRead)),
    ("/contacts/new", PageAccess::Permission(Permission::ContactsWrite)),
    ("/contacts/import", PageAccess::Permission(Permission::ContactsWrite)),
    ("/contacts/lists", PageAccess::Permission(Permission::ContactsRead)),
    ("/contacts/suppression", PageAccess::Permission(Permission::ContactsRead)),
    ("/contacts/fields", PageAccess::Permission(Permission::SettingsManage)),
    ("/contacts/{id}", PageAccess::Permission(Permission::ContactsRead)),
    ("/optin", PageAccess::Public),
    ("/segments", PageAccess::Permission(Permission::SegmentsCount)),
    ("/segments/new", PageAccess::Permission(Permission::SegmentsWrite)),
    ("/segments/{id}", PageAccess::Permission(Permission::SegmentsCount)),
    ("/templates", PageAccess::Permission(Permission::TemplatesRead)),
    ("/templates/{id}", PageAccess::Permission(Permission::TemplatesRead)),
    ("/campaigns", PageAccess::Permission(Permission::CampaignsRead)),
    ("/campaigns/new", PageAccess::Permission(Permission::CampaignsWrite)),
    ("/campaigns/{id}", PageAccess::Permission(Permission::CampaignsRead)),
    ("/campaigns/{id}/report", PageAccess::Permission(Permission::ReportsRead)),
    ("/sequences", PageAccess::Permission(Permission::SequencesRead)),
    ("/reports", PageAccess::Permission(Permission::ReportsRead)),
    ("/audit", PageAccess::Permission(Permission::AuditRead)),
    ("/settings", PageAccess::Permission(Permission::OwnAccount)),
    ("/settings/users", PageAccess::Permission(Permission::UsersManage)),
    ("/settings/mailbox", PageAccess::Permission(Permission::SettingsManage)),
    ("/settings/domains", PageAccess::Permission(Permission::SettingsManage)),
];

/// Whether a concrete path matches a pattern (`{name}` matches one segment, `{*name}` the rest).
/// Exact patterns are preferred by callers, so `/contacts/new` wins over `/contacts/{id}`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let p = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    if let Some(prefix) = pattern.strip_suffix("{*path}") {
        return p.starts_with(prefix);
    }
    let (mut a, mut b) = (pattern.split('/'), p.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.starts_with('{') && x.ends_with('}') && !y.is_empty() => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Find the entry for a path: an exact pattern first, then a parameterised one.
pub fn find<'a, T>(table: &'a [T], path: &str, pattern_of: impl Fn(&T) -> &str) -> Option<&'a T> {
    table
        .iter()
        .find(|t| !pattern_of(t).contains('{') && path_matches(pattern_of(t), path))
        .or_else(|| table.iter().find(|t| pattern_of(t).contains('{') && path_matches(pattern_of(t), path)))
}

pub fn page_access(path: &str) -> Option<PageAccess> {
    find(PAGES, path, |(p, _)| p).map(|(_, a)| *a)
}

/// The navigation, in order: (path, label, permission needed to see it).
pub const NAV: &[(&str, &str, Permission)] = &[
    ("/", "Home", Permission::OwnAccount),
    ("/contacts", "Contacts", Permission::ContactsRead),
    ("/segments", "Segments", Permission::SegmentsCount),
    ("/templates", "Templates", Permission::TemplatesRead),
    ("/campaigns", "Campaigns", Permission::CampaignsRead),
    ("/sequences", "Sequences", Permission::SequencesRead),
    ("/reports", "Reports", Permission::ReportsRead),
    ("/audit", "Audit", Permission::AuditRead),
    ("/settings", "Settings", Permission::OwnAccount),
];

/// A same-site path to continue to after sign-in; anything else (absolute URLs, `//host`,
/// backslashes) falls back to `/` so the parameter cannot be used as an open redirect.
pub fn safe_next(next: Option<String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://")
                && n.len() < 512 =>
        {
            n
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_parameter_cannot_leave_the_site() {
        assert_eq!(safe_next(Some("/audit?x=1".into())), "/audit?x=1");
        for bad in ["https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)", "/x://y"] {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn lookup_ignores_trailing_slash() {
        assert_eq!(page_access("/audit/"), Some(PageAccess::Permission(Permission::AuditRead)));
        assert_eq!(page_access("/"), Some(PageAccess::Permission(Permission::OwnAccount)));
        assert_eq!(page_access("/nope"), None);
        assert_eq!(page_access("/contacts/new"), Some(PageAccess::Permission(Permission::ContactsWrite)));
        assert_eq!(
            page_access("/contacts/0190aa00-0000-7000-8000-000000000000"),
            Some(PageAccess::Permission(Permission::ContactsRead))
        );
        assert_eq!(page_access("/contacts/a/b"), None);
    }
}
