//! The tamper-evident audit log.
//!
//! Each tenant has its own hash chain, and the provider has one more for
//! provider-level events. An event is born as a [`PendingEvent`] (what a
//! transition returns), and becomes an [`AuditEvent`] only when a
//! [`ChainHead`] seals it: it gets the next sequence number, the previous
//! event's hash, and its own hash,
//!
//! ```text
//! hash = SHA-256(prev_hash ‖ canonical(event))
//! ```
//!
//! where `canonical` is the RFC 8785 encoding of the event without its two
//! hashes ([`canonical`]). Only a [`SealedEvent`] can be handed to a store, so
//! an unchained event can never be persisted. Periodically, and on demand, a
//! [`Checkpoint`] signs the head with Ed25519, and the [`ChainVerifier`]
//! checks an exported log offline, naming the first bad event.
//!
//! `docs/AUDIT_FORMAT.md` specifies all of it for independent verifiers.

pub mod canonical;
mod checkpoint;
mod exact;
pub mod export;
mod verify;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::clock::{Timestamp, to_stored_precision};
use crate::id::{IdError, PrincipalId, TenantId};

pub use checkpoint::{
    CHECKPOINT_TYPE, Checkpoint, CheckpointSigner, KeyId, PublicKey, Signature, SignatureError,
};
pub use export::{ExportError, ExportLine, ExportVerifier};

pub use verify::{ChainFault, ChainVerifier, FaultKind, VerifiedChain, verify_chain};

use canonical::{NotCanonical, write_object, write_str, write_uint};

/// Which hash chain an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    /// Provider-level events (operators, gateways, access levels).
    Provider,
    /// One tenant's events.
    Tenant(TenantId),
}

impl Chain {
    /// The tenant, or `None` for the provider chain.
    #[must_use]
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Self::Provider => None,
            Self::Tenant(t) => Some(t),
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ChainName(self.tenant().map(TenantId::as_str)).fmt(f)
    }
}

/// A chain named by its tenant id as text (`None` for the provider chain),
/// shown as [`Chain`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainName<'a>(pub(crate) Option<&'a str>);

impl fmt::Display for ChainName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("the provider chain"),
            Some(t) => write!(f, "tenant {t}"),
        }
    }
}

impl From<TenantId> for Chain {
    fn from(t: TenantId) -> Self {
        Self::Tenant(t)
    }
}

/// The chain is written as the event's `tenant` field: the tenant id, or
/// `null` for the provider chain.
impl Serialize for Chain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tenant().serialize(s)
    }
}

/// Reads `null` or a tenant id. Goes through `deserialize_any` rather than
/// `Option`, so that a *missing* `tenant` member is an error instead of
/// silently meaning the provider chain.
impl<'de> Deserialize<'de> for Chain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ChainVisitor;
        impl serde::de::Visitor<'_> for ChainVisitor {
            type Value = Chain;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tenant id or null")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Chain, E> {
                Ok(Chain::Provider)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Chain, E> {
                Ok(Chain::Provider)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Chain, E> {
                TenantId::parse(s).map(Chain::Tenant).map_err(E::custom)
            }
        }
        d.deserialize_any(ChainVisitor)
    }
}

/// Who caused an event: a principal, never a service account standing in
/// for a person; `system` only for what no person did (expiry, a grant
/// running out, approval when the tenant has not opted in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A person or a registered service.
    Principal(PrincipalId),
    /// Lockbox itself.
    System,
}

impl Actor {
    /// Parses `system` or a principal id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s == PrincipalId::SYSTEM {
            Ok(Self::System)
        } else {
            PrincipalId::parse(s).map(Self::Principal)
        }
    }

    /// The actor as written in the log.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Principal(p) => p.as_str(),
            Self::System => PrincipalId::SYSTEM,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Actor {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl From<PrincipalId> for Actor {
    fn from(p: PrincipalId) -> Self {
        Self::Principal(p)
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// The kinds of event Lockbox writes. The log stores the dotted
        /// name; a verifier treats it as opaque text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(Self::$variant,)*];

            /// The dotted name written in the log.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The kind with this dotted name.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// The provider onboarded the tenant.
    TenantCreated = "tenant.created",
    /// The provider attached a subscription to the tenant.
    SubscriptionAdded = "subscription.added",
    /// A tenant admin created a user.
    UserCreated = "user.created",
    /// The provider registered an operator.
    OperatorRegistered = "operator.registered",
    /// The provider registered a gateway.
    GatewayRegistered = "gateway.registered",
    /// A provider admin was created (by `lockbox init`, or by another admin).
    AdminRegistered = "admin.registered",
    /// An API token was issued (its id and owner; never the secret).
    TokenCreated = "token.created",
    /// An API token was revoked.
    TokenRevoked = "token.revoked",
    /// A principal's password was set.
    PasswordSet = "password.set",
    /// A principal changed its own password.
    PasswordChanged = "password.changed",
    /// A one-time enrolment link was issued for a principal (by whom; never
    /// the link). Any earlier link of the principal stops working, and its
    /// password, sessions and tokens are cleared.
    EnrollmentIssued = "principal.enrollment_issued",
    /// A principal took up its credentials through its enrolment link (from
    /// which client address and user agent).
    Enrolled = "principal.enrolled",
    /// A principal was disabled: its tokens and sessions stop working.
    PrincipalDisabled = "principal.disabled",
    /// A disabled principal was enabled again.
    PrincipalEnabled = "principal.enabled",
    /// The provider defined or redefined an access level.
    AccessLevelChanged = "access_level.changed",
    /// A role was assigned.
    RoleAssigned = "role.assigned",
    /// A role assignment was removed.
    RoleRemoved = "role.removed",
    /// The tenant opted in.
    LockboxEnabled = "lockbox.enabled",
    /// The tenant opted out.
    LockboxDisabled = "lockbox.disabled",
    /// The tenant's policy changed.
    PolicyChanged = "policy.changed",
    /// A support case was opened.
    CaseOpened = "case.opened",
    /// A support case was (re)assigned to an operator.
    CaseAssigned = "case.assigned",
    /// A support case was closed.
    CaseClosed = "case.closed",
    /// An operator asked for access.
    RequestCreated = "request.created",
    /// One approval (one event per approver; `system` when the tenant has not
    /// opted in).
    RequestApproved = "request.approved",
    /// An approver denied the request.
    RequestDenied = "request.denied",
    /// The requester (or the closing of the case) canceled the request.
    RequestCanceled = "request.canceled",
    /// Nobody decided before the request's TTL ran out.
    RequestExpired = "request.expired",
    /// A grant began.
    GrantCreated = "grant.created",
    /// An approved extension moved a grant's end (from and to, and the
    /// extension that did).
    GrantExtended = "grant.extended",
    /// A grant was revoked before its end.
    GrantRevoked = "grant.revoked",
    /// A grant ran out.
    GrantEnded = "grant.ended",
    /// The grant's holder was given a signed access token (its id and
    /// expiry; never the token).
    GrantTokenIssued = "grant.token_issued",
    /// A signing key was created (and the keys it replaces retired).
    SigningKeyCreated = "signing_key.created",
    /// A signing key stored in clear (by a version before the key-encryption
    /// key) was sealed with the KEK.
    SigningKeySealed = "signing_key.sealed",
    /// A gateway's check was allowed.
    AccessAllowed = "access.allowed",
    /// A gateway's check was denied.
    AccessDenied = "access.denied",
    /// An emergency operator used break-glass access.
    EmergencyAccess = "emergency.access",
    /// A tenant admin added a notification channel.
    ChannelCreated = "channel.created",
    /// A tenant admin removed a notification channel.
    ChannelRemoved = "channel.removed",
    /// A notification could not be delivered.
    NotificationFailed = "notification.failed",
    /// A tenant admin sent a failed notification again.
    NotificationRetried = "notification.retried",
    /// A tenant's SSH certificate authority was made (Lockbox enabled).
    SshAuthorityCreated = "ssh.ca_created",
    /// A tenant admin replaced the tenant's SSH certificate authority.
    SshAuthorityRotated = "ssh.ca_rotated",
    /// A grant's holder was given an SSH certificate (its serial, key
    /// fingerprint, principals and window; never a key).
    SshCertificateIssued = "ssh.certificate_issued",
    /// A VM let a certificate's holder log in (`lockbox ssh authorize`).
    SshLoginAllowed = "ssh.login_allowed",
    /// A VM refused a certificate's login (`lockbox ssh authorize`).
    SshLoginDenied = "ssh.login_denied",
    /// A tenant admin set the tenant's identity provider (never its client
    /// secret).
    IdentityProviderSet = "identity_provider.set",
    /// A tenant admin removed the tenant's identity provider.
    IdentityProviderRemoved = "identity_provider.removed",
    /// A principal was linked to a subject of an identity provider
    /// (issuer and subject): later sign-ins through that IdP are theirs.
    IdentityLinked = "principal.identity_linked",
    /// A principal's link to an identity provider was removed (its
    /// single sign-on sessions end).
    IdentityUnlinked = "principal.identity_unlinked",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that a transition caused, not yet part of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// The chain it goes to.
    pub chain: Chain,
    /// When it happened.
    pub at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub kind: EventKind,
    /// The id of the thing it happened to (a request, a grant, a tenant…).
    pub subject: String,
    /// The details, an object holding only canonically encodable values.
    pub data: Map<String, Value>,
}

impl PendingEvent {
    /// An event. `data` should be a JSON object; anything else is stored
    /// under the key `value`.
    #[must_use]
    pub fn new(
        chain: impl Into<Chain>,
        at: Timestamp,
        actor: impl Into<Actor>,
        kind: EventKind,
        subject: impl fmt::Display,
        data: Value,
    ) -> Self {
        let data = match data {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        Self {
            chain: chain.into(),
            at,
            actor: actor.into(),
            kind,
            subject: subject.to_string(),
            data,
        }
    }
}

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev_hash` of a chain's first event.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Parses 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let mut bytes = [0u8; 32];
        lower_hex(s, &mut bytes, "a SHA-256 digest in hex")?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a value or a line of the audit format was refused. The messages
/// are what the offline verifier shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not the lowercase hex of the right length.
    #[error("`{value}` is not {what}: {why}")]
    Hex {
        /// The value, shortened.
        value: String,
        /// What it should have been.
        what: &'static str,
        /// What is wrong with it.
        why: HexError,
    },
    /// Not a time in the log's one spelling (the value, shortened).
    #[error(
        "`{0}` is not a time in the form 2026-03-02T09:15:04.123456Z (UTC, six fractional digits)"
    )]
    Time(String),
    /// Hex of 32 bytes that are not an Ed25519 public key.
    #[error("not a valid Ed25519 public key: {0}")]
    PublicKey(String),
    /// A line that is not UTF-8.
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// A line that is not an event (what the JSON reader said).
    #[error("{0}")]
    Event(String),
    /// A checkpoint line that does not read as one.
    #[error("the checkpoint line: {0}")]
    CheckpointLine(String),
    /// A kept checkpoint that does not read as one.
    #[error("not a checkpoint: {0}")]
    NotACheckpoint(String),
}

/// What is wrong with a hex value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Uppercase digits: every value in the log has exactly one spelling.
    #[error("hex digits must be lowercase")]
    Uppercase,
    /// Not hex, or not as many digits as the value takes.
    #[error("{0}")]
    Malformed(String),
}

/// Decodes lowercase hex into `out`, refusing uppercase so that every value
/// in the log has exactly one spelling; `what` names the value in the
/// refusal.
pub(crate) fn lower_hex(s: &str, out: &mut [u8], what: &'static str) -> Result<(), FormatError> {
    let refuse = |why| FormatError::Hex {
        value: crate::id::shorten(s).to_string(),
        what,
        why,
    };
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(refuse(HexError::Uppercase));
    }
    hex::decode_to_slice(s, out).map_err(|e| refuse(HexError::Malformed(e.to_string())))
}

/// Times in the log are RFC 3339 UTC with exactly six fractional digits, and
/// only that spelling is read back: what a line shows is what was hashed.
pub(crate) mod micros {
    use chrono::SecondsFormat;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clock::Timestamp;

    pub(crate) fn format(t: &Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub(crate) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub(crate) fn parse(s: &str) -> Result<Timestamp, super::FormatError> {
        let wrong = || super::FormatError::Time(crate::id::shorten(s).to_string());
        let t = chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| wrong())?
            .to_utc();
        if format(&t) == s { Ok(t) } else { Err(wrong()) }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// JSON read without serde_json's "last duplicate wins".
mod strict_json {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    pub(super) fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        match d.deserialize_map(StrictValue)? {
            Value::Object(map) => Ok(map),
            _ => Err(D::Error::custom("expected an object")),
        }
    }

    #[derive(Clone, Copy)]
    struct StrictValue;

    impl<'de> DeserializeSeed<'de> for StrictValue {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for StrictValue {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_bool<E: Error>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E: Error>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_u64<E: Error>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_f64<E: Error>(self, n: f64) -> Result<Value, E> {
            // Kept, so that verification reports it as not canonical.
            Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| E::custom("a number that is not finite"))
        }
        fn visit_str<E: Error>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E: Error>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(StrictValue)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut map = Map::new();
            while let Some(key) = access.next_key::<String>()? {
                let value = access.next_value_seed(StrictValue)?;
                if map.contains_key(&key) {
                    return Err(A::Error::custom(format!("member `{key}` appears twice")));
                }
                map.insert(key, value);
            }
            Ok(Value::Object(map))
        }
    }
}

/// An event in a chain: what the store keeps and what an export contains.
///
/// Values parsed from an export are untrusted until a [`ChainVerifier`] has
/// checked them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// The chain (`tenant` id, or `null` for the provider chain).
    #[serde(rename = "tenant")]
    pub chain: Chain,
    /// When it happened.
    #[serde(with = "micros")]
    pub at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened (dotted name; see [`EventKind`]).
    pub kind: String,
    /// The id of the thing it happened to.
    pub subject: String,
    /// Details. Read strictly: a member name repeated at any depth is an
    /// error, since a reader that kept the other copy would show a value
    /// that was not hashed.
    #[serde(
        deserialize_with = "strict_json::object",
        serialize_with = "canonical::serialize_sorted"
    )]
    pub data: Map<String, Value>,
    /// The previous event's hash (zeros for the first event).
    pub prev_hash: Digest,
    /// `SHA-256(prev_hash ‖ canonical(event))`.
    pub hash: Digest,
}

impl AuditEvent {
    /// Appends the canonical encoding (everything but the two hashes) to
    /// `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), NotCanonical> {
        // Members in UTF-16 order of their names: actor, at, data, kind,
        // seq, subject, tenant.
        out.extend_from_slice(b"{\"actor\":");
        write_str(out, self.actor.as_str());
        out.extend_from_slice(b",\"at\":");
        write_str(out, &micros::format(&self.at));
        out.extend_from_slice(b",\"data\":");
        write_object(out, &self.data)?;
        out.extend_from_slice(b",\"kind\":");
        write_str(out, &self.kind);
        out.extend_from_slice(b",\"seq\":");
        write_uint(out, self.seq)?;
        out.extend_from_slice(b",\"subject\":");
        write_str(out, &self.subject);
        out.extend_from_slice(b",\"tenant\":");
        match self.chain.tenant() {
            Some(t) => write_str(out, t.as_str()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Ok(())
    }

    /// The canonical encoding as a new buffer.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, NotCanonical> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// `SHA-256(prev_hash ‖ canonical)`, computed with `buf` as scratch
    /// space (cleared first).
    pub fn compute_hash_with(&self, buf: &mut Vec<u8>) -> Result<Digest, NotCanonical> {
        buf.clear();
        self.write_canonical(buf)?;
        Ok(chain_hash(&self.prev_hash, buf))
    }

    /// `SHA-256(prev_hash ‖ canonical)`.
    pub fn compute_hash(&self) -> Result<Digest, NotCanonical> {
        self.compute_hash_with(&mut Vec::with_capacity(256))
    }
}

/// `SHA-256(prev ‖ canonical)`.
pub(crate) fn chain_hash(prev: &Digest, canonical: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(prev.0);
    hasher.update(canonical);
    Digest(hasher.finalize().into())
}

/// An event that has been given its place in a chain. Only [`ChainHead::seal`]
/// makes one, so a store can only be handed chained events.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent(AuditEvent);

impl SealedEvent {
    /// The event.
    #[must_use]
    pub fn event(&self) -> &AuditEvent {
        &self.0
    }

    /// The event, by value.
    #[must_use]
    pub fn into_event(self) -> AuditEvent {
        self.0
    }
}

/// Why an event could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The event belongs to another chain.
    #[error("event for {event} cannot be sealed into {head}")]
    WrongChain {
        /// The event's chain.
        event: Chain,
        /// The head's chain.
        head: Chain,
    },
    /// The event's data cannot be encoded canonically.
    #[error(transparent)]
    NotCanonical(#[from] NotCanonical),
}

/// The last event of a chain: its sequence number (0 for an empty chain) and
/// hash ([`Digest::ZERO`] for an empty chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: Chain,
    /// The last sequence number.
    pub seq: u64,
    /// The last event's hash.
    pub hash: Digest,
}

impl ChainHead {
    /// The head of an empty chain.
    #[must_use]
    pub fn genesis(chain: Chain) -> Self {
        Self {
            chain,
            seq: 0,
            hash: Digest::ZERO,
        }
    }

    /// Appends `event`: gives it the next sequence number and the hashes,
    /// and moves the head. On error the head is unchanged.
    pub fn seal(&mut self, event: PendingEvent) -> Result<SealedEvent, SealError> {
        if event.chain != self.chain {
            return Err(SealError::WrongChain {
                event: event.chain,
                head: self.chain.clone(),
            });
        }
        let mut sealed = AuditEvent {
            seq: self.seq + 1,
            chain: event.chain,
            at: to_stored_precision(event.at),
            actor: event.actor,
            kind: event.kind.as_str().to_owned(),
            subject: event.subject,
            data: event.data,
            prev_hash: self.hash,
            hash: Digest::ZERO,
        };
        sealed.hash = sealed.compute_hash()?;
        self.seq = sealed.seq;
        self.hash = sealed.hash;
        Ok(SealedEvent(sealed))
    }

    /// Seals several events in order; all or nothing.
    pub fn seal_all(
        &mut self,
        events: impl IntoIterator<Item = PendingEvent>,
    ) -> Result<Vec<SealedEvent>, SealError> {
        let mut scratch = self.clone();
        let sealed = events
            .into_iter()
            .map(|e| scratch.seal(e))
            .collect::<Result<Vec<_>, _>>()?;
        *self = scratch;
        Ok(sealed)
    }
}
