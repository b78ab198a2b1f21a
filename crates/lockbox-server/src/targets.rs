//! Where Lockbox may send a request on a tenant's say-so.
//!
//! Tenant admins choose webhook URLs, and Lockbox runs inside the
//! provider's network: a URL that reaches `127.0.0.1`, the metadata service
//! at `169.254.169.254` or a private address would let a customer probe or
//! call the provider's internal services. So a target's host is resolved
//! and every address it resolves to must be public — when the channel is
//! configured, and again before each delivery (DNS can change) — unless the
//! operator allows private targets (`notifications.allow_private_targets`,
//! for tests and on-premises receivers).
//!
//! A refusal tells the tenant only that the URL must reach public
//! addresses: never what the host resolved to, nor whether it resolved at
//! all, or Lockbox's resolver would map the provider's network for anyone
//! who may add a channel. The details are for the server's log
//! ([`TargetError::detail`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a refused target is told, whatever the reason.
pub const REFUSED: &str = "the webhook URL must resolve to public addresses only (see notifications.allow_private_targets)";

/// Why a target is refused. `Display` is the same for every refusal
/// ([`REFUSED`]); [`TargetError::detail`] says why, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The host does not resolve.
    #[error("{REFUSED}")]
    Unresolved {
        /// The host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// The host resolves to an address Lockbox must not call.
    #[error("{REFUSED}")]
    NotPublic {
        /// The host.
        host: String,
        /// The address.
        addr: IpAddr,
        /// What kind of address it is.
        what: &'static str,
    },
}

impl TargetError {
    /// Why, with the host and what it resolved to: for the server's log
    /// only, never for the caller.
    #[must_use]
    pub fn detail(&self) -> String {
        match self {
            Self::Unresolved { host, reason } => {
                format!("the host {host} does not resolve: {reason}")
            }
            Self::NotPublic { host, addr, what } => {
                format!("the host {host} resolves to {addr}, a {what} address")
            }
        }
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
#[must_use]
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 198 && (18..20).contains(&b))
    {
        Some("special-purpose")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let seg = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = seg;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return non_public_v4(v4);
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if seg[0] & 0xffc0 == 0xfe80 || seg[0] & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if seg[0] & 0xe000 != 0x2000 {
        // Outside global unicast (2000::/3): the IPv4-compatible and SIIT
        // forms, the discard prefix, local-use NAT64, and the unassigned.
        Some("reserved")
    } else if seg[0] == 0x2002 {
        // 6to4 carries an IPv4 address in bits 16 to 47.
        let v4 = Ipv4Addr::from((u32::from(seg[1]) << 16) | u32::from(seg[2]));
        non_public_v4(v4).or(Some("6to4"))
    } else if seg[0] == 0x2001 && seg[1] < 0x0200 {
        // IETF protocol assignments, Teredo (2001::/32) among them.
        Some("special-purpose")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

/// Resolves `url`'s host and port and checks every address. Returns the
/// addresses (to connect to exactly those). With `allow_private`, only
/// resolution is required.
pub async fn resolve(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    // `[::1]` comes with brackets from the URL; the resolver wants none.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| TargetError::Unresolved {
            host: host.clone(),
            reason: e.kind().to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolved {
            host,
            reason: "no addresses".to_owned(),
        });
    }
    if !allow_private {
        for addr in &addrs {
            if let Some(what) = non_public(addr.ip()) {
                return Err(TargetError::NotPublic {
                    host,
                    addr: addr.ip(),
                    what,
                });
            }
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "64:ff9b:1::a00:1",
            "::ffff:0:a00:1",
            "100::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(non_public(addr).is_some(), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public(addr), None, "{ip} counted as internal");
        }
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://[::1]:8080/",
        ] {
            let url = url::Url::parse(url).unwrap();
            let err = resolve(&url, false).await.unwrap_err();
            assert!(matches!(err, TargetError::NotPublic { .. }), "{url}: {err}");
            assert!(err.detail().contains("loopback"), "{url}: {}", err.detail());
            // What the caller is told says nothing of the resolution.
            assert_eq!(err.to_string(), REFUSED);
            assert!(resolve(&url, true).await.is_ok(), "{url}");
        }
    }
}
