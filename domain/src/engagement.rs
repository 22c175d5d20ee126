//! Engagement: telling a person's open or click from a machine's (mail-privacy proxies that
//! prefetch every image, link scanners that follow every URL). Pure rules shared by the tracking
//! recorder and the reports; nothing here reads the clock.

use serde::{Deserialize, Serialize};

/// Opens or clicks this soon after delivery are a machine fetching ahead of any person.
pub const PREFETCH_SECS: i64 = 10;

/// Who (probably) opened or clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenKind {
    Human,
    Machine,
}

impl OpenKind {
    pub const ALL: [OpenKind; 2] = [OpenKind::Human, OpenKind::Machine];
    pub fn as_str(self) -> &'static str {
        match self {
            OpenKind::Human => "human",
            OpenKind::Machine => "machine",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        OpenKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            OpenKind::Human => "Person",
            OpenKind::Machine => "Machine",
        }
    }
    /// From the answer of [`classify_open`] or [`classify_click`].
    pub fn of(reason: Option<MachineReason>) -> OpenKind {
        if reason.is_some() { OpenKind::Machine } else { OpenKind::Human }
    }
}

/// Why an open or click is counted as a machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineReason {
    /// Fetched within seconds of delivery, before a person could have read it.
    Prefetch,
    /// Apple Mail Privacy Protection loads every image through its proxy, read or not.
    PrivacyProxy,
    /// A security gateway or script following links and loading images.
    Scanner,
}

impl MachineReason {
    pub const ALL: [MachineReason; 3] = [MachineReason::Prefetch, MachineReason::PrivacyProxy, MachineReason::Scanner];
    pub fn as_str(self) -> &'static str {
        match self {
            MachineReason::Prefetch => "prefetch",
            MachineReason::PrivacyProxy => "privacy_proxy",
            MachineReason::Scanner => "scanner",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        MachineReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            MachineReason::Prefetch => "Fetched right after delivery",
            MachineReason::PrivacyProxy => "Apple Mail Privacy Protection",
            MachineReason::Scanner => "Security scanner or bot",
        }
    }
}

/// Lower-case substrings of user agents of security gateways, scripts and crawlers.
const SCANNER_UA_PARTS: [&str; 16] = [
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "python-requests",
    "curl/",
    "wget",
    "go-http-client",
    "bot",
    "spider",
    "crawler",
    "headlesschrome",
    "microsoft office protocol discovery",
];

/// The WebKit build Apple's privacy proxy announces, without the browser parts a person's mail
/// app or Safari adds after it.
const APPLE_PROXY_WEBKIT: &str = "AppleWebKit/605.1.15 (KHTML, like Gecko)";

/// A missing or empty user agent, or one naming a scanner: no person's mail client sends those.
fn is_scanner_ua(ua: Option<&str>) -> bool {
    let Some(ua) = ua.map(str::trim).filter(|u| !u.is_empty()) else {
        return true;
    };
    let lower = ua.to_ascii_lowercase();
    SCANNER_UA_PARTS.iter().any(|p| lower.contains(p))
}

fn is_apple_privacy_proxy(ua: &str) -> bool {
    let ua = ua.trim();
    ua == "Mozilla/5.0"
        || (ua.contains(APPLE_PROXY_WEBKIT)
            && !ua.contains("Version/")
            && !ua.contains("Mobile/")
            && !ua.contains("Safari"))
}

/// Gmail fetches images through its proxy only when a person opens the message.
fn is_gmail_proxy(ua: &str) -> bool {
    ua.contains("GoogleImageProxy")
}

fn is_prefetch(secs_since_delivery: Option<i64>) -> bool {
    // A negative value (the open was logged before delivery was recorded) is a gateway fetching
    // while our SMTP session was still finishing: a machine too.
    secs_since_delivery.is_some_and(|s| s < PREFETCH_SECS)
}

/// Classify a tracking-pixel fetch: `None` means a person (probably) opened the message.
/// `seconds_since_delivery` is whole seconds since the SMTP server accepted the message.
pub fn classify_open(user_agent: Option<&str>, seconds_since_delivery: Option<i64>) -> Option<MachineReason> {
    if user_agent.is_some_and(is_gmail_proxy) {
        return None;
    }
    if is_scanner_ua(user_agent) {
        return Some(MachineReason::Scanner);
    }
    if user_agent.is_some_and(is_apple_privacy_proxy) {
        return Some(MachineReason::PrivacyProxy);
    }
    if is_prefetch(seconds_since_delivery) {
        return Some(MachineReason::Prefetch);
    }
    None
}

/// Classify a tracked link click: `None` means a person (probably) clicked.
/// `distinct_links_clicked_in_last_10s` counts the distinct links of this message the same
/// recipient clicked in the last 10 seconds, this click included; a link scanner follows every link
/// at once, a person does not.
pub fn classify_click(
    user_agent: Option<&str>,
    seconds_since_delivery: Option<i64>,
    distinct_links_clicked_in_last_10s: u32,
    links_in_message: u32,
) -> Option<MachineReason> {
    if is_scanner_ua(user_agent) {
        return Some(MachineReason::Scanner);
    }
    if is_prefetch(seconds_since_delivery) {
        return Some(MachineReason::Prefetch);
    }
    if links_in_message >= 2 && distinct_links_clicked_in_last_10s >= links_in_message {
        return Some(MachineReason::Scanner);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE_MAIL: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    const DESKTOP_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";
    const APPLE_MPP: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    const GMAIL_PROXY: &str =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    const OUTLOOK_DESKTOP: &str = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

    #[test]
    fn opens_by_people_count_as_human() {
        for ua in [IPHONE_MAIL, DESKTOP_SAFARI, GMAIL_PROXY, OUTLOOK_DESKTOP, CHROME] {
            assert_eq!(classify_open(Some(ua), Some(3600)), None, "{ua}");
            assert_eq!(classify_open(Some(ua), None), None, "{ua}");
        }
        // Gmail's proxy fetches only when a person opens, however quickly.
        assert_eq!(classify_open(Some(GMAIL_PROXY), Some(2)), None);
        assert_eq!(OpenKind::of(None), OpenKind::Human);
        assert_eq!(OpenKind::of(Some(MachineReason::Scanner)), OpenKind::Machine);
    }

    #[test]
    fn machine_opens() {
        use MachineReason as M;
        assert_eq!(classify_open(Some(APPLE_MPP), Some(3600)), Some(M::PrivacyProxy));
        assert_eq!(classify_open(Some("Mozilla/5.0"), Some(3600)), Some(M::PrivacyProxy));
        assert_eq!(classify_open(Some(" Mozilla/5.0 "), None), Some(M::PrivacyProxy));
        assert_eq!(classify_open(Some(IPHONE_MAIL), Some(0)), Some(M::Prefetch));
        assert_eq!(classify_open(Some(IPHONE_MAIL), Some(9)), Some(M::Prefetch));
        assert_eq!(classify_open(Some(IPHONE_MAIL), Some(10)), None, "10 s is a person");
        assert_eq!(classify_open(Some(IPHONE_MAIL), Some(-5)), Some(M::Prefetch), "logged before delivery");
        assert_eq!(classify_open(None, Some(3600)), Some(M::Scanner));
        assert_eq!(classify_open(Some(""), Some(3600)), Some(M::Scanner));
        assert_eq!(classify_open(Some("   "), Some(3600)), Some(M::Scanner));
        for ua in [
            "Barracuda Sentinel (EE)",
            "Mozilla/5.0 (compatible; Mimecast URL Protect)",
            "Proofpoint URL Defense",
            "python-requests/2.31.0",
            "curl/8.4.0",
            "Wget/1.21.4",
            "Go-http-client/1.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "Microsoft Office Protocol Discovery",
            "Symantec MessageLabs",
            "TrendMicro Email Scanner",
            "Forcepoint",
            "Baiduspider",
            "SomeCrawler/1.0",
        ] {
            assert_eq!(classify_open(Some(ua), Some(3600)), Some(M::Scanner), "{ua}");
        }
    }

    #[test]
    fn clicks() {
        use MachineReason as M;
        assert_eq!(classify_click(Some(CHROME), Some(600), 1, 3), None);
        assert_eq!(classify_click(Some(IPHONE_MAIL), Some(600), 2, 3), None);
        assert_eq!(classify_click(Some(CHROME), Some(600), 3, 3), Some(M::Scanner), "every link at once");
        assert_eq!(classify_click(Some(CHROME), Some(600), 4, 3), Some(M::Scanner));
        assert_eq!(classify_click(Some(CHROME), Some(600), 1, 1), None, "one link: clicking it is normal");
        assert_eq!(classify_click(Some(CHROME), Some(600), 0, 0), None);
        assert_eq!(classify_click(Some(CHROME), Some(5), 1, 3), Some(M::Prefetch));
        assert_eq!(classify_click(Some(CHROME), Some(10), 1, 3), None);
        assert_eq!(classify_click(Some("Mimecast"), Some(600), 1, 3), Some(M::Scanner));
        assert_eq!(classify_click(None, None, 1, 3), Some(M::Scanner));
        assert_eq!(classify_click(Some(CHROME), None, 1, 3), None);
    }
}
