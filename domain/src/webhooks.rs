//! Outgoing webhooks: the event types an organisation can subscribe an endpoint to, the rules for
//! an endpoint's URL (parsed here, without IO), the address classifier of the SSRF guard, the
//! retry schedule, and the views the settings page shows.
//!
//! Invariants: a payload carries ids and codes only (never an address, a name, merge data or a URL
//! holding a token); an endpoint's URL is `https://` with a host name or a public address; the
//! addresses a host resolves to are judged by [`is_public`] at registration and before each
//! delivery (the service connects to the address it judged).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// What an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "message.sent")]
    MessageSent,
    #[serde(rename = "message.bounced")]
    MessageBounced,
    #[serde(rename = "message.opened")]
    MessageOpened,
    #[serde(rename = "message.clicked")]
    MessageClicked,
    #[serde(rename = "contact.unsubscribed")]
    ContactUnsubscribed,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::MessageSent,
        EventType::MessageBounced,
        EventType::MessageOpened,
        EventType::MessageClicked,
        EventType::ContactUnsubscribed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageSent => "message.sent",
            EventType::MessageBounced => "message.bounced",
            EventType::MessageOpened => "message.opened",
            EventType::MessageClicked => "message.clicked",
            EventType::ContactUnsubscribed => "contact.unsubscribed",
        }
    }

    /// In the words of the settings page.
    pub fn describe(self) -> &'static str {
        match self {
            EventType::MessageSent => "A message was accepted by the receiving server",
            EventType::MessageBounced => "A message bounced (the address is suppressed)",
            EventType::MessageOpened => "A message was opened",
            EventType::MessageClicked => "A tracked link was clicked",
            EventType::ContactUnsubscribed => "A contact unsubscribed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| crate::DomainError::invalid("events", "holds a type that is not a known event type"))
    }
}

/// A signing secret starts with this (secret scanners and people recognise a leaked one).
pub const SECRET_PREFIX: &str = "hm_whsec_";
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Endpoints per organisation.
pub const MAX_ENDPOINTS: usize = 20;

/// What an administrator submits to register or change an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInput {
    pub url: String,
    /// Event type codes; unknown ones are refused.
    pub events: Vec<String>,
    pub enabled: bool,
}

/// A registered endpoint as the settings page lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub id: uuid::Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub enabled: bool,
    /// Why Hermetic disabled it (`gone`: the endpoint answered 410).
    pub disabled_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: Vec<AttemptView>,
}

/// One delivery attempt (newest first on the page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    pub at: chrono::DateTime<chrono::Utc>,
    pub event_type: String,
    pub attempt: i32,
    /// The HTTP status the endpoint answered.
    pub status: Option<i32>,
    /// Why there was no answer (`timeout`, `connect`, `refused_address`, …).
    pub error: Option<String>,
    /// When the next try is due; `None` when this one ended the delivery.
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `delivered`, `pending` or `failed` (the delivery this attempt belongs to, now).
    pub state: String,
}

/// A new endpoint's (or a rotated) signing secret, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedEndpointView {
    pub id: uuid::Uuid,
    pub secret: String,
}

impl fmt::Debug for CreatedEndpointView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedEndpointView").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The parts of an endpoint URL the guard needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// The URL as stored (scheme and host lower-cased).
    pub url: String,
    pub https: bool,
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

fn bad(reason: &'static str) -> crate::DomainError {
    crate::DomainError::invalid("url", reason)
}

/// Parse and check an endpoint URL: `https://host[:port][/path][?query]` (`http://` only when
/// `allow_http`), no user information, no fragment, printable ASCII, at most [`MAX_URL_LEN`].
/// Reasons never quote the value.
pub fn parse_url(raw: &str, allow_http: bool) -> Result<EndpointUrl, crate::DomainError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad("is required"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(bad("is too long (at most 2048 characters)"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must not contain spaces or non-ASCII characters (percent-encode them)"));
    }
    let lower = raw.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &raw[8..])
    } else if lower.starts_with("http://") {
        if !allow_http {
            return Err(bad("must start with https://"));
        }
        (false, &raw[7..])
    } else {
        return Err(bad("must start with https://"));
    };
    if rest.contains('#') {
        return Err(bad("must not have a fragment (#…)"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("must not hold a user name or password"));
    }
    let (host_part, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("has a malformed host"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("has a malformed host"))?),
        };
        let ip: Ipv6Addr = h.parse().map_err(|_| bad("has a malformed host"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = h.parse::<Ipv4Addr>() {
            (Host::Ip(IpAddr::V4(ip)), port)
        } else {
            let labels_ok = !h.is_empty()
                && h.len() <= 253
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            // A name whose last label is all digits would be read as an address by some resolvers.
            if !labels_ok || h.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
                return Err(bad("has a malformed host"));
            }
            (Host::Name(h), port)
        }
    };
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("has a malformed port"));
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("has a malformed port")),
            }
        }
    };
    let host_text = match &host_part {
        Host::Name(n) => n.clone(),
        Host::Ip(IpAddr::V4(a)) => a.to_string(),
        Host::Ip(IpAddr::V6(a)) => format!("[{a}]"),
    };
    let scheme = if https { "https" } else { "http" };
    let default = (https && port == 443) || (!https && port == 80);
    let url =
        if default { format!("{scheme}://{host_text}{tail}") } else { format!("{scheme}://{host_text}:{port}{tail}") };
    Ok(EndpointUrl { url, https, host: host_part, port })
}

/// Whether an address may receive webhooks: not loopback, private (RFC 1918), link-local, CGNAT
/// (100.64/10), unique-local (fc00::/7), multicast, unspecified, broadcast, documentation or
/// benchmarking ranges, reserved (240/4, 0/8), IETF protocol assignments (192.0.0/24), 6to4 relay,
/// NAT64 of any of these, or an IPv4-mapped / -compatible IPv6 form of them.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => is_public_v6(a),
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || o[0] == 0                                    // 0.0.0.0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64)         // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)      // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)    // 192.88.99.0/24 6to4 relay anycast
        || (o[0] == 198 && (o[1] & 0xfe) == 18)         // 198.18.0.0/15 benchmarking
        || o[0] >= 240) // 240.0.0.0/4 reserved
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = a.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96): judge the embedded address.
    if s[..6] == [0, 0, 0, 0, 0, 0] && !a.is_unspecified() && !a.is_loopback() {
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00      // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80      // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0      // fec0::/10 site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
        || s[0] == 0x2002                  // 6to4 (embeds arbitrary IPv4)
        || (s[0] == 0x2001 && s[1] == 0)   // Teredo
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // 100::/64 discard
}

/// Deliveries are retried for this long after the event, then given up.
pub const GIVE_UP_AFTER_SECS: i64 = 24 * 3600;
/// The first retry waits about this long; each next one twice as long (capped at
/// [`MAX_DELAY_SECS`]).
pub const FIRST_DELAY_SECS: i64 = 30;
pub const MAX_DELAY_SECS: i64 = 4 * 3600;

/// The wait before try `attempt + 1` after try `attempt` (1-based) failed: 30 s doubling, capped
/// at four hours, with up to +20 % jitter (`jitter` in 0..1, from the caller's randomness) so that
/// endpoints that failed together do not retry together.
pub fn retry_delay_secs(attempt: i32, jitter: f64) -> i64 {
    let exp = attempt.clamp(1, 20) - 1;
    let base = (FIRST_DELAY_SECS << exp).min(MAX_DELAY_SECS);
    base + (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64
}

/// A coarse class of what an attempt got, for the page and the metric (never a response body).
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
        assert!("message.deleted".parse::<EventType>().is_err());
        assert!("".parse::<EventType>().is_err());
    }

    #[test]
    fn the_classifier_refuses_every_non_public_range() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254", // cloud metadata
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:c0a8:101::1",
            "2001::1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn the_classifier_accepts_public_addresses() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn urls_are_https_with_a_plain_host() {
        let u = parse_url("HTTPS://Hooks.Example.COM/in?x=1", false).unwrap();
        assert_eq!(u.url, "https://hooks.example.com/in?x=1");
        assert_eq!((u.https, u.port), (true, 443));
        assert_eq!(u.host, Host::Name("hooks.example.com".into()));
        let u = parse_url("https://[2606:4700::1]:8443/x", false).unwrap();
        assert_eq!(u.url, "https://[2606:4700::1]:8443/x");
        assert_eq!(u.port, 8443);
        let u = parse_url("https://93.184.216.34", false).unwrap();
        assert_eq!(u.host, Host::Ip(ip("93.184.216.34")));
        assert_eq!(parse_url("http://127.0.0.1:9000/h", true).unwrap().url, "http://127.0.0.1:9000/h");
    }

    #[test]
    fn hostile_urls_are_refused_without_quoting_them() {
        let long = format!("https://example.com/{}", "a".repeat(5000));
        for s in [
            "",
            "   ",
            "http://example.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "gopher://example.com",
            "https://",
            "https://user:pw@example.com/",
            "https://example.com@evil.test/",
            "https://exa mple.com/",
            "https://exämple.com/",
            "https://example.com/#frag",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://example.com:8a/",
            "https://-bad.example/",
            "https://a..b/",
            "https://[::1/",
            "https://[zz::1]/",
            "https://1.2.3/",
            "https://0x7f.1/",
            "https://example.com\r\nX: y/",
            "https://example.com/\u{0}",
            long.as_str(),
        ] {
            let e = parse_url(s, false).unwrap_err();
            let crate::DomainError::Invalid { field, reason } = e else { panic!("{s}") };
            assert_eq!(field, "url");
            if s.len() > 12 {
                assert!(!reason.contains(&s[8..]), "the reason must not quote the value");
            }
        }
    }

    #[test]
    fn retries_double_from_thirty_seconds_and_stop_within_a_day() {
        assert_eq!(retry_delay_secs(1, 0.0), 30);
        assert_eq!(retry_delay_secs(2, 0.0), 60);
        assert_eq!(retry_delay_secs(3, 0.0), 120);
        assert_eq!(retry_delay_secs(1, 1.0), 36);
        assert_eq!(retry_delay_secs(30, 0.0), MAX_DELAY_SECS);
        // Within 24 h there are a bounded number of tries (about 15).
        let mut t = 0;
        let mut n = 1;
        while t + retry_delay_secs(n, 0.0) <= GIVE_UP_AFTER_SECS {
            t += retry_delay_secs(n, 0.0);
            n += 1;
        }
        assert!((10..=20).contains(&n), "{n}");
    }
}
