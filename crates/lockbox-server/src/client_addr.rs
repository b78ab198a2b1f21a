//! Who is on the other end: the client's address, for the failed-attempt
//! limits and the audit log.
//!
//! Behind a reverse proxy every request comes from the proxy, and the
//! client's address is in `X-Forwarded-For`, which the proxy appends to:
//! `client, proxy1, proxy2` (each hop adds the address it was reached
//! from). But anyone can send that header, so it is believed only from the
//! proxies named in `[server] trusted_proxies`: when the TCP peer is one of
//! them, the client is the right-most address of the header that is not
//! itself a trusted proxy (what the first trusted hop saw); addresses
//! further left were written by the client and prove nothing. Otherwise
//! the client is the TCP peer, whatever the header says.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

/// A block of addresses, `10.0.0.0/8` or `2001:db8::/32`; an address
/// alone is a block of one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as
    /// the IPv4 address).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/PREFIX` or `ADDRESS`. The address must be the block's first
    /// (`10.0.0.1/8` is refused: it names a host, and whoever wrote it may
    /// have meant `10.0.0.1/32` as well as `10.0.0.0/8`).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| format!("`{text}` is not an address block (CIDR): {why}");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| bad("expected an IPv4 or IPv6 address, then `/` and a prefix length"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0 to {max}")))?,
        };
        let block = Self { network, prefix };
        if block.masked() != network {
            return Err(bad(&format!(
                "the address has bits set beyond its /{prefix} (the block starts at {})",
                block.masked()
            )));
        }
        Ok(block)
    }
}

impl Cidr {
    /// The block's first address.
    fn masked(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(net) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from(std::net::Ipv4Addr::from(u32::from(net) & mask))
            }
            IpAddr::V6(net) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(net) & mask))
            }
        }
    }
}

/// `[server] trusted_proxies`: a list (`["10.0.0.0/8", "::1"]`), or the
/// same as one comma-separated string (how an environment variable sets
/// it: `LOCKBOX_SERVER__TRUSTED_PROXIES="10.0.0.0/8,::1"`).
pub(crate) fn deserialize_blocks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Cidr>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Blocks {
        List(Vec<String>),
        Text(String),
    }
    let texts: Vec<String> = match <Blocks as serde::Deserialize>::deserialize(deserializer)? {
        Blocks::List(list) => list,
        Blocks::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    texts
        .iter()
        .map(|t| {
            t.parse::<Cidr>()
                .map_err(|e| serde::de::Error::custom(format!("trusted_proxies: {e}")))
        })
        .collect()
}

/// The address blocks of the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Trusts the proxies in `blocks`.
    #[must_use]
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// The client's address: the right-most address of `X-Forwarded-For`
    /// (all its lines, in order) that is not a trusted proxy, when `peer` is
    /// a trusted proxy; else `peer`. If every forwarded address is a
    /// trusted proxy, the left-most; if the header holds something that is
    /// not an address where the client should be, the last trusted hop
    /// before it (never what the client wrote).
    #[must_use]
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, and with a
/// port, `192.0.2.1:4711` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address, by the server's trusted proxies (see the module's
/// documentation). Never refuses: without a peer address (a request not
/// from a socket, as in tests of handlers alone) it is `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        headers
    }

    fn trusting(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| b.parse().unwrap()).collect())
    }

    #[test]
    fn blocks_parse_and_contain() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = " 2001:db8::/32 ".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        for bad in [
            "banana",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "2001:db8::/129",
            "10.0.0.1/8",
            "10.0.0.0/8/8",
            "",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains("not an address block"), "{bad}: {e}");
        }
        assert!(
            "10.0.0.1/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("starts at 10.0.0.0")
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        let xff = forwarded(&["198.51.100.7"]);
        assert_eq!(none.client(ip("203.0.113.1"), &xff), ip("203.0.113.1"));
        let proxies = trusting(&["10.0.0.0/8"]);
        assert_eq!(
            proxies.client(ip("203.0.113.1"), &xff),
            ip("203.0.113.1"),
            "a peer that is no trusted proxy: its header is ignored"
        );
        assert_eq!(proxies.client(ip("10.0.0.5"), &xff), ip("198.51.100.7"));
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn the_client_is_the_right_most_address_not_a_trusted_proxy() {
        let proxies = trusting(&["10.0.0.0/8", "2001:db8:1::/48"]);
        let peer = ip("10.0.0.1");
        // The client wrote the left part; the proxies appended the rest.
        let chain = forwarded(&["1.2.3.4, 198.51.100.7, 10.1.1.1, 10.2.2.2"]);
        assert_eq!(proxies.client(peer, &chain), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let lines = forwarded(&["1.2.3.4", "198.51.100.7, 10.1.1.1"]);
        assert_eq!(proxies.client(peer, &lines), ip("198.51.100.7"));
        // Ports and IPv6 as proxies write them.
        let ported = forwarded(&["[2001:db8:2::9]:4711, 10.1.1.1:80"]);
        assert_eq!(proxies.client(peer, &ported), ip("2001:db8:2::9"));
        let mapped = forwarded(&["::ffff:198.51.100.8"]);
        assert_eq!(proxies.client(peer, &mapped), ip("198.51.100.8"));
        // Only trusted proxies: the left-most.
        let inside = forwarded(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(proxies.client(peer, &inside), ip("10.3.3.3"));
        // Garbage where the client should be: the last trusted hop, never
        // what the client wrote.
        let garbage = forwarded(&["198.51.100.7, unknown, 10.2.2.2"]);
        assert_eq!(proxies.client(peer, &garbage), ip("10.2.2.2"));
        let empty = forwarded(&[""]);
        assert_eq!(proxies.client(peer, &empty), peer);
        // An IPv4-mapped peer is the IPv4 address.
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), &chain),
            ip("198.51.100.7")
        );
    }
}
