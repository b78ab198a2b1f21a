//! What an SSH login under a grant may do: the `ssh` section of an access
//! level, snapshotted into each request made at that level (as its action
//! patterns are) and written into every certificate minted for the grant.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::access::AccessError;

/// The longest `force-command` Lockbox writes into a certificate.
pub const MAX_FORCE_COMMAND: usize = 1024;

/// A Unix account name, as Debian's `adduser` accepts it by default: a
/// lowercase letter or `_`, then up to 31 lowercase letters, digits, `_`
/// or `-`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnixLogin(Box<str>);

impl UnixLogin {
    /// Parses a login.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        let what = "SSH login";
        if s.is_empty() || s.len() > 32 {
            return Err(AccessError::new(what, s, "must be 1 to 32 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            return Err(AccessError::new(
                what,
                s,
                "must start with a lowercase letter or `_`",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
        {
            return Err(AccessError::new(
                what,
                s,
                format!("contains `{c}`; use lowercase letters, digits, `_` and `-`"),
            ));
        }
        Ok(Self(s.into()))
    }

    /// The login as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnixLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UnixLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for UnixLogin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UnixLogin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The command `sshd` runs instead of whatever the client asks
/// (`force-command`): printable text of at most [`MAX_FORCE_COMMAND`]
/// bytes, one line.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ForceCommand(Box<str>);

impl ForceCommand {
    /// Parses a command.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        let what = "force-command";
        if s.trim().is_empty() {
            return Err(AccessError::new(what, s, "must not be empty"));
        }
        if s.len() > MAX_FORCE_COMMAND {
            return Err(AccessError::new(
                what,
                s,
                format!("is longer than {MAX_FORCE_COMMAND} bytes"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(AccessError::new(
                what,
                s,
                "contains a control character (one line of text)",
            ));
        }
        Ok(Self(s.into()))
    }

    /// The command as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ForceCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ForceCommand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ForceCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The most source addresses one request may name.
pub const MAX_SOURCE_ADDRESSES: usize = 16;

/// An address or network an SSH certificate may be used from (its
/// `source-address` critical option): an IP address, or one with a prefix
/// length (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceAddress {
    addr: IpAddr,
    prefix: u8,
}

impl SourceAddress {
    /// Parses an address or network.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        let what = "source address";
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            AccessError::new(
                what,
                s,
                "is not an IP address or a network such as 10.0.0.0/8",
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                AccessError::new(what, s, format!("the prefix length must be 0 to {max}"))
            })?,
        };
        Ok(Self { addr, prefix })
    }

    /// Parses a list, refusing more than [`MAX_SOURCE_ADDRESSES`] and
    /// dropping repeats.
    pub fn parse_all<S: AsRef<str>>(list: &[S]) -> Result<Vec<Self>, AccessError> {
        if list.len() > MAX_SOURCE_ADDRESSES {
            return Err(AccessError::new(
                "source addresses",
                &format!("{} addresses", list.len()),
                format!("at most {MAX_SOURCE_ADDRESSES}"),
            ));
        }
        let mut out: Vec<Self> = Vec::with_capacity(list.len());
        for s in list {
            let a = Self::parse(s.as_ref().trim())?;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The certificate's `source-address` option for `list`, if any.
    #[must_use]
    pub fn option(list: &[Self]) -> Option<(String, String)> {
        (!list.is_empty()).then(|| {
            (
                "source-address".to_owned(),
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl fmt::Debug for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for SourceAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SourceAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn yes() -> bool {
    true
}

/// The `ssh` section of an access level: the Unix login a grant's
/// certificate is for, and what the session may do there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshAccess {
    /// The account the operator logs in as.
    pub login: UnixLogin,
    /// Run this and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_command: Option<ForceCommand>,
    /// A terminal (`permit-pty`); on unless said otherwise.
    #[serde(default = "yes")]
    pub permit_pty: bool,
    /// `permit-port-forwarding`.
    #[serde(default)]
    pub port_forwarding: bool,
    /// `permit-agent-forwarding`.
    #[serde(default)]
    pub agent_forwarding: bool,
    /// `permit-X11-forwarding`.
    #[serde(default)]
    pub x11_forwarding: bool,
}

impl SshAccess {
    /// The certificate extensions this allows, as OpenSSH names them.
    #[must_use]
    pub fn extensions(&self) -> Vec<String> {
        [
            (self.agent_forwarding, "permit-agent-forwarding"),
            (self.port_forwarding, "permit-port-forwarding"),
            (self.permit_pty, "permit-pty"),
            (self.x11_forwarding, "permit-X11-forwarding"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect()
    }

    /// The certificate's critical options: `force-command` when set.
    #[must_use]
    pub fn critical_options(&self) -> Vec<(String, String)> {
        self.force_command
            .iter()
            .map(|c| ("force-command".to_owned(), c.as_str().to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_follow_the_unix_rules() {
        for ok in ["support", "_lockbox", "ops-1", "a"] {
            assert!(UnixLogin::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Root", "1abc", "a b", "a:b", "a/b", &"a".repeat(33)] {
            assert!(UnixLogin::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn force_commands_are_one_line() {
        assert!(ForceCommand::parse("/usr/bin/journalctl -u web").is_ok());
        assert!(ForceCommand::parse("a\nb").is_err());
        assert!(ForceCommand::parse(" ").is_err());
        assert!(ForceCommand::parse(&"x".repeat(MAX_FORCE_COMMAND + 1)).is_err());
    }

    #[test]
    fn source_addresses_are_addresses_or_networks() {
        let list = SourceAddress::parse_all(&[
            "10.0.0.0/8",
            "192.168.1.7",
            "2001:db8::/32",
            "192.168.1.7/32",
        ])
        .unwrap();
        assert_eq!(
            SourceAddress::option(&list),
            Some((
                "source-address".to_owned(),
                "10.0.0.0/8,192.168.1.7,2001:db8::/32".to_owned()
            )),
            "a repeat dropped, a full prefix written as the address"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "host.example",
            "10.0.0.1/-1",
            "10.0.0.1/8/8",
        ] {
            assert!(SourceAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SourceAddress::parse_all(&vec!["10.0.0.1"; MAX_SOURCE_ADDRESSES + 1]).is_err());
        assert_eq!(SourceAddress::option(&[]), None);
    }

    #[test]
    fn the_section_becomes_extensions_and_options() {
        let access: SshAccess =
            serde_json::from_str(r#"{"login":"support","force_command":"uptime"}"#).unwrap();
        assert_eq!(access.extensions(), ["permit-pty"]);
        assert_eq!(
            access.critical_options(),
            [("force-command".to_owned(), "uptime".to_owned())]
        );
        let all: SshAccess = serde_json::from_str(
            r#"{"login":"ops","permit_pty":false,"port_forwarding":true,"agent_forwarding":true,"x11_forwarding":true}"#,
        )
        .unwrap();
        assert_eq!(
            all.extensions(),
            [
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-X11-forwarding"
            ]
        );
        assert!(all.critical_options().is_empty());
        assert!(serde_json::from_str::<SshAccess>(r#"{"login":"x","shell":true}"#).is_err());
    }
}
