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
    ("/sequences/{id}", PageAccess::Permission(Permission::SequencesRead)),
    ("/reports", PageAccess::Permission(Permission::ReportsRead)),
    ("/reports/source", PageAccess::Permission(Permission::ReportsRead)),
    ("/audit", PageAccess::Permission(Permission::AuditRead)),
    ("/settings", PageAccess::Permission(Permission::OwnAccount)),
    ("/settings/users", PageAccess::Permission(Permission::UsersManage)),
    ("/settings/mailbox", PageAccess::Permission(Permission::SettingsManage)),
    ("/settings/domains", PageAccess::Permission(Permission::SettingsManage)),
    ("/settings/api-keys", PageAccess::Permission(Permission::SettingsManage)),
    ("/settings/webhooks", PageAccess::Permission(Permission::SettingsManage)),
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

/// Where to continue after sign-in: an absolute path on this site, or `/`.
///
/// Browsers are forgiving with URLs, and that is what an open redirect exploits: they drop tabs
/// and newlines anywhere, read `\` as `/`, and take `//host` or `/\host` as another site — so
/// `/%09/evil.example`, decoded to `/<tab>/evil.example`, leaves. The target is therefore accepted
/// only when it is plainly one of our paths, before and after percent-decoding (repeated, so
/// double encoding does not help): it starts with a single `/`; every character is printable
/// ASCII (no whitespace, control or non-ASCII characters) and not a backslash; every `%` starts
/// a valid escape; the path part has no `:` (no scheme), no empty segment (`//`) and no `.` or
/// `..` segments. Anything else, or anything longer than 512 bytes, gives `/`.
pub fn safe_next(next: Option<String>) -> String {
    next.filter(|n| is_local_path(n)).unwrap_or_else(|| "/".to_string())
}

fn is_local_path(target: &str) -> bool {
    if target.len() > 512 {
        return false;
    }
    let mut current = target.as_bytes().to_vec();
    // Each round checks one level of encoding; a value still changing after four is refused.
    for _ in 0..4 {
        if !plain_local_path(&current) {
            return false;
        }
        match percent_decode(&current) {
            Some(decoded) if decoded == current => return true,
            Some(decoded) => current = decoded,
            None => return false,
        }
    }
    false
}

fn plain_local_path(b: &[u8]) -> bool {
    if b.first() != Some(&b'/') || !b.iter().all(|c| c.is_ascii_graphic() && *c != b'\\') {
        return false;
    }
    let path_end = b.iter().position(|c| *c == b'?' || *c == b'#').unwrap_or(b.len());
    let path = &b[..path_end];
    if path.contains(&b':') {
        return false;
    }
    // Segments after the leading `/`: none may be empty (`//`) or a dot segment; `/` alone is fine.
    path.len() == 1 || path[1..].split(|c| *c == b'/').all(|seg| !seg.is_empty() && seg != b"." && seg != b"..")
}

/// One round of percent-decoding; `None` when a `%` does not start a two-hex-digit escape.
fn percent_decode(b: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_parameter_cannot_leave_the_site() {
        for good in [
            "/",
            "/audit",
            "/audit?x=1",
            "/campaigns/0190aa00-0000-7000-8000-000000000000",
            "/campaigns?page=2&sort=name",
            "/contacts#top",
            "/settings/users",
            "/segments/new?from=%2Fsegments",
        ] {
            assert_eq!(safe_next(Some(good.into())), good, "{good}");
        }
        // Values as they reach the page (the query string already decoded once by the router).
        let evil = [
            "https://evil.example",
            "http://evil.example/",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "/x://y",
            "evil.example",
            "",
            " /audit",
            "/audit ",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\t\t//evil.example",
            "\t//evil.example",
            "/ /evil.example",
            "/\u{0b}/evil.example",
            "/\u{0c}/evil.example",
            "/\u{00a0}/evil.example",
            "/\u{2028}/evil.example",
            "/\u{3000}/evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%20/evil.example",
            "/%2f/evil.example",
            "/%2F%2Fevil.example",
            "%2f%2fevil.example",
            "%2F%2F%2Fevil.example",
            "/%5cevil.example",
            "/%5C%5Cevil.example",
            "/%252f%252fevil.example",
            "/%25252f%25252fevil.example",
            "/%2509/evil.example",
            "/%C2%A0/evil.example",
            "/%E2%80%A8/evil.example",
            "/%00/evil.example",
            "/%zz",
            "/%",
            "/%2",
            "/./evil.example",
            "/.//evil.example",
            "/..//evil.example",
            "/a/../..//evil.example",
            "/%2e%2e//evil.example",
            "/audit\u{202e}",
            "/\u{ff0f}\u{ff0f}evil.example",
            "/https:/evil.example",
        ];
        assert!(evil.len() >= 30);
        for bad in evil {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(600));
        assert_eq!(safe_next(Some(long)), "/");
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
