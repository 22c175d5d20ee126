//! The client's address, as recorded in throttles, sessions and audit rows.
//!
//! `X-Forwarded-For` is a list that every proxy appends to: the leftmost entries were written by
//! whoever sent the request, so they prove nothing. Only hops appended by proxies we run can be
//! believed. So: the address is the TCP peer, unless the peer is a configured trusted proxy; then
//! the header is read from the right, skipping trusted proxies, and the first address that is not
//! one of them is the client. Everything to its left is ignored. If the part written by our
//! proxies is malformed (or there is no header), the peer address is used. At most `MAX_HOPS`
//! entries are read.

use std::net::IpAddr;

/// Entries of `X-Forwarded-For` looked at, from the right.
const MAX_HOPS: usize = 32;

/// An address range (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("'{s}' is not an IP address or CIDR range"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("'{s}': the prefix length must be 0 to {max}")),
            },
        };
        if Cidr::masked(net, prefix) != net {
            return Err(format!("'{s}' has bits set past its /{prefix} prefix: write the network address"));
        }
        Ok(Cidr { net, prefix })
    }

    fn bits(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let keep = u32::from(prefix).min(width);
        let mask: u128 = if keep == 0 { 0 } else { (!0u128) << (width - keep) };
        let mask = if width == 32 { mask & u128::from(u32::MAX) } else { mask };
        let v = Cidr::bits(ip) & mask;
        match ip {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && Cidr::masked(ip, self.prefix) == self.net
    }
}

/// The configured reverse proxies. Empty: `X-Forwarded-For` is never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| Cidr::parse(e))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` values (one
    /// per header line, in order).
    pub fn client_address<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.into_iter().flat_map(|line| line.split(',')).collect();
        let mut last_trusted = None;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = parse_hop(hop) else {
                // Written (or passed on unchecked) by one of our proxies: do not guess.
                return peer;
            };
            if !self.trusts(ip) {
                return ip;
            }
            last_trusted = Some(ip);
        }
        // Every hop read was one of our proxies (a request from inside): the earliest of them,
        // unless the list was longer than we read.
        match last_trusted {
            Some(ip) if hops.len() <= MAX_HOPS => ip,
            _ => peer,
        }
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`). Anything else (`unknown`, obfuscated identifiers, garbage) is `None`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim();
    if h.is_empty() || h.len() > 64 {
        return None;
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = h.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 peers match IPv4 ranges");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        for bad in ["", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/-1", "10.0.0.0/+8", "example.org", "10.0.0/8", "::/129"]
        {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_a_trusted_peer_the_header_is_ignored() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(t.client_address(ip("203.0.113.5"), ["1.2.3.4"]), ip("203.0.113.5"));
        assert_eq!(TrustedProxies::default().client_address(ip("10.0.0.1"), ["1.2.3.4"]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = proxies(&["10.0.0.0/8", "192.0.2.10"]);
        let peer = ip("10.0.0.2");
        // The proxy appended the real client; everything left of it was written by the client.
        assert_eq!(t.client_address(peer, ["198.51.100.1, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(t.client_address(peer, ["127.0.0.1,203.0.113.7"]), ip("203.0.113.7"));
        // Two of our proxies in a row.
        assert_eq!(t.client_address(peer, ["198.51.100.1, 203.0.113.7, 192.0.2.10"]), ip("203.0.113.7"));
        // Several header lines are one list.
        assert_eq!(t.client_address(peer, ["198.51.100.1", "203.0.113.7", "10.9.9.9"]), ip("203.0.113.7"));
        // Ports and IPv6.
        assert_eq!(t.client_address(peer, ["203.0.113.7:51234"]), ip("203.0.113.7"));
        assert_eq!(t.client_address(peer, ["[2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(t.client_address(peer, ["2001:db8::7"]), ip("2001:db8::7"));
    }

    #[test]
    fn hostile_headers() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        let client = ip("203.0.113.7");
        // Whatever the client writes on the left does not matter.
        for forged in [
            "1.1.1.1, 203.0.113.7",
            "garbage, 203.0.113.7",
            "unknown, 203.0.113.7",
            ", 203.0.113.7",
            "10.0.0.9, 203.0.113.7",
            "\"><script>, 203.0.113.7",
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4, 203.0.113.7",
            "999.1.1.1, 203.0.113.7",
            "127.0.0.1, 203.0.113.7",
        ] {
            assert_eq!(t.client_address(peer, [forged]), client, "{forged}");
        }
        let long = format!("{}203.0.113.7", "1.1.1.1, ".repeat(1000));
        assert_eq!(t.client_address(peer, [long.as_str()]), client);
        // Our proxies' part itself malformed, or no usable header: the peer.
        for bad in
            ["", "garbage", "203.0.113.7, garbage", "203.0.113.7,", "203.0.113.7 10.0.0.3", "[::1", "1.2.3.4:99999"]
        {
            assert_eq!(t.client_address(peer, [bad]), peer, "{bad:?}");
        }
        assert_eq!(t.client_address(peer, std::iter::empty()), peer);
        // Only trusted hops: the earliest one, unless there were more than we read.
        assert_eq!(t.client_address(peer, ["10.1.1.1, 10.2.2.2"]), ip("10.1.1.1"));
        let all_trusted = vec!["10.1.1.1"; MAX_HOPS + 1].join(",");
        assert_eq!(t.client_address(peer, [all_trusted.as_str()]), peer);
    }
}
