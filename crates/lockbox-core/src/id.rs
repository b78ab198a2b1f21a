//! Typed, parsed identifiers.
//!
//! Two families:
//! - *Names* chosen by people: [`TenantId`] (`contoso`) and [`PrincipalId`]
//!   (`alice`, `vm-gateway`). Lowercase, so `Alice` and `alice` can never be
//!   two principals.
//! - *Generated* ids of things Lockbox creates: a type prefix and 128 bits, of
//!   which the first 48 are the creation time in milliseconds (so ids sort by
//!   creation, which keyset pagination relies on) and the other 80 are random:
//!   `req_0193a0c1d2e3f4a5b6c7d8e9f0a1b2c3`.
//!
//! Every id parses from its text form with an error that says what is wrong,
//! and everything past the edge takes the typed value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Timestamp;

/// Why a piece of text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {reason}")]
pub struct IdError {
    /// What was being parsed (`tenant id`, `request id`, …).
    pub what: &'static str,
    /// The offending input, shortened for display.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl IdError {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: shorten(value),
            reason: reason.into(),
        }
    }
}

/// Keeps error messages readable when the input is huge.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

/// Checks the shared grammar of human-chosen names: `min..=max` characters,
/// lowercase ASCII letters and digits plus the `extra` punctuation, starting
/// and ending with a letter or digit.
fn check_name(what: &'static str, s: &str, max: usize, extra: &[char]) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::new(what, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(IdError::new(
            what,
            s,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(IdError::new(
            what,
            s,
            format!("must be lowercase (found `{c}`)"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c)))
    {
        let allowed: String = extra.iter().map(|c| format!(" `{c}`")).collect();
        return Err(IdError::new(
            what,
            s,
            format!("`{c}` is not allowed; use letters, digits and{allowed}"),
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err(IdError::new(
            what,
            s,
            "must start and end with a letter or a digit",
        ));
    }
    Ok(())
}

macro_rules! string_id_common {
    ($name:ident, $what:literal) => {
        impl $name {
            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A tenant: one customer organisation. A DNS-label-like name such as
/// `contoso` (1–63 characters of `a-z`, `0-9` and `-`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Box<str>);

impl TenantId {
    /// Parses a tenant id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_name("tenant id", s, 63, &['-'])?;
        Ok(Self(s.into()))
    }
}
string_id_common!(TenantId, "tenant id");

/// A principal: a user, operator, gateway or admin. Unique across the whole
/// installation whatever its kind or tenant: 1–64 characters of `a-z`, `0-9`
/// and `. _ - @` (so an e-mail address can serve as an id). `system` is
/// reserved for the actor of events that no person caused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(Box<str>);

impl PrincipalId {
    /// The name the audit log uses for Lockbox itself as an actor.
    pub const SYSTEM: &'static str = "system";

    /// Parses a principal id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_name("principal id", s, 64, &['.', '_', '-', '@'])?;
        if s == Self::SYSTEM {
            return Err(IdError::new(
                "principal id",
                s,
                "`system` is reserved for Lockbox itself",
            ));
        }
        Ok(Self(s.into()))
    }
}
string_id_common!(PrincipalId, "principal id");

/// Random bytes for generated ids could not be read from the operating system.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(#[from] getrandom::Error);

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

macro_rules! generated_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// The text prefix, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// An id for something created at `now` with the given random part.
            #[must_use]
            pub fn from_parts(now: Timestamp, random: [u8; 10]) -> Self {
                Self(generated_bytes(now, random))
            }

            /// A fresh id for something created at `now`.
            pub fn generate(now: Timestamp) -> Result<Self, RandomnessError> {
                Ok(Self::from_parts(now, random_bytes()?))
            }

            /// Parses `prefix_` followed by 32 lowercase hex digits.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_generated($what, $prefix, s).map(Self)
            }

            /// The raw 16 bytes.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn generated_bytes(now: Timestamp, random: [u8; 10]) -> [u8; 16] {
    // Times before 1970 cannot occur in practice; clamp rather than wrap.
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    let (time, rest) = bytes.split_at_mut(6);
    time.copy_from_slice(millis.to_be_bytes().get(2..).unwrap_or(&[0; 6]));
    rest.copy_from_slice(&random);
    bytes
}

fn parse_generated(what: &'static str, prefix: &str, s: &str) -> Result<[u8; 16], IdError> {
    let Some(hex_part) = s
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return Err(IdError::new(
            what,
            s,
            format!("must start with `{prefix}_`"),
        ));
    };
    if hex_part.len() != 32 {
        return Err(IdError::new(
            what,
            s,
            format!(
                "expected 32 hex digits after `{prefix}_`, found {}",
                hex_part.len()
            ),
        ));
    }
    if hex_part
        .chars()
        .any(|c| !(c.is_ascii_digit() || ('a'..='f').contains(&c)))
    {
        return Err(IdError::new(
            what,
            s,
            "only lowercase hex digits (0-9, a-f) may follow the prefix",
        ));
    }
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut bytes).map_err(|e| IdError::new(what, s, e.to_string()))?;
    Ok(bytes)
}

generated_id!(
    /// A support case.
    CaseId, "case", "case id"
);
generated_id!(
    /// An access request.
    RequestId, "req", "request id"
);
generated_id!(
    /// A grant: the time-bound permission an approval (or emergency access)
    /// creates.
    GrantId, "grant", "grant id"
);
generated_id!(
    /// A role assignment (a principal holding a role at a scope).
    RoleAssignmentId, "ra", "role assignment id"
);
generated_id!(
    /// An API token (the id is public; the secret is shown once and stored
    /// only as a hash).
    TokenId, "tok", "token id"
);
generated_id!(
    /// A one-time enrolment link (the id is public; the link's secret is
    /// shown once and stored only as a hash).
    EnrollmentId, "enr", "enrollment id"
);
generated_id!(
    /// A tenant's notification channel.
    ChannelId, "chn", "channel id"
);
generated_id!(
    /// A job in the outbox (a notification to deliver, say).
    JobId, "job", "job id"
);

impl GrantId {
    /// The id of the one grant a request can ever produce: the request's own
    /// bytes under the grant prefix, so the pair is recognisable and no second
    /// grant for the same request can have a different id.
    #[must_use]
    pub fn for_request(request: &RequestId) -> Self {
        Self(*request.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn tenant_ids_are_lowercase_dns_labels() {
        assert_eq!(TenantId::parse("contoso").unwrap().as_str(), "contoso");
        assert!(TenantId::parse("contoso-eu-2").is_ok());
        let err = TenantId::parse("Contoso").unwrap_err();
        assert!(err.reason.contains("lowercase"), "{err}");
        let err = TenantId::parse("con_toso").unwrap_err();
        assert!(err.reason.contains("`_` is not allowed"), "{err}");
        assert!(TenantId::parse("").unwrap_err().reason.contains("empty"));
        assert!(TenantId::parse("-contoso").is_err());
        assert!(TenantId::parse("contoso-").is_err());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn principal_ids_allow_email_shapes_but_reserve_system() {
        assert!(PrincipalId::parse("alice").is_ok());
        assert!(PrincipalId::parse("vm-gateway").is_ok());
        assert!(PrincipalId::parse("alice@contoso.com").is_ok());
        assert!(PrincipalId::parse("sam_o.k").is_ok());
        let err = PrincipalId::parse("system").unwrap_err();
        assert!(err.reason.contains("reserved"), "{err}");
        assert!(PrincipalId::parse("alice smith").is_err());
        assert!(PrincipalId::parse(".alice").is_err());
    }

    #[test]
    fn generated_ids_round_trip_and_sort_by_time() {
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t2 = t1 + chrono::TimeDelta::milliseconds(1);
        let a = RequestId::from_parts(t1, [0xff; 10]);
        let b = RequestId::from_parts(t2, [0x00; 10]);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        let text = a.to_string();
        assert!(text.starts_with("req_"));
        assert_eq!(text.len(), 4 + 32);
        assert_eq!(RequestId::parse(&text).unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), a);
    }

    #[test]
    fn generated_id_errors_name_the_problem() {
        let err = RequestId::parse("case_00000000000000000000000000000000").unwrap_err();
        assert!(err.reason.contains("`req_`"), "{err}");
        let err = RequestId::parse("req_123").unwrap_err();
        assert!(err.reason.contains("32 hex digits"), "{err}");
        let err = RequestId::parse("req_0000000000000000000000000000000G").unwrap_err();
        assert!(err.reason.contains("hex"), "{err}");
        let err = RequestId::parse("req_0000000000000000000000000000000A").unwrap_err();
        assert!(err.reason.contains("lowercase"), "{err}");
    }

    #[test]
    fn grant_id_of_a_request_shares_its_bytes() {
        let r = RequestId::generate(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()).unwrap();
        let g = GrantId::for_request(&r);
        assert_eq!(g.as_bytes(), r.as_bytes());
        assert_eq!(&g.to_string()[6..], &r.to_string()[4..]);
    }

    #[test]
    fn generated_ids_are_random() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_ne!(CaseId::generate(t).unwrap(), CaseId::generate(t).unwrap());
    }

    #[test]
    fn error_messages_shorten_huge_input() {
        let err = TenantId::parse(&"A".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 300);
    }
}
