//! Authentication: who is calling.
//!
//! API tokens are `lbx_` followed by 64 hex digits (256 random bits). Lockbox
//! stores only their SHA-256, looks a token up by that hash, and compares
//! hashes in constant time; tokens expire and can be revoked. Passwords
//! (for the portal) are stored as Argon2id hashes, made and checked in the
//! server's one bounded pool ([`crate::passwords`]). Failed attempts are
//! counted per client (an IPv4 address or an IPv6 /64; behind a trusted
//! proxy, the address it forwarded for: [`crate::client_addr`]), and a
//! client with too many has its further failures answered `rate_limited`
//! for a while. (The portal's sign-in form has more: [`crate::lockout`].)
//! A valid token always passes: many callers may share one address (a NAT,
//! a proxy), and one of them failing must not lock out the others.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use chrono::TimeDelta;
use lockbox_core::id::random_bytes;
use lockbox_core::{Principal, PrincipalId, RoleAssignment, Timestamp, TokenId};
use lockbox_store::{ApiToken, Directory as _, TokenKind};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;

/// The prefix that makes Lockbox tokens recognisable (in logs, in secret
/// scanners).
pub const TOKEN_PREFIX: &str = "lbx_";

/// The prefix of the portal's session tokens. A session is a token of its
/// own kind: the API takes only `lbx_` tokens and the portal's cookie only
/// `lbs_` ones, so a session's secret opens no API and an API token in a
/// cookie opens no page.
pub const SESSION_PREFIX: &str = "lbs_";

/// The prefix of enrolment links' secrets (the end of an enrolment URL).
pub const ENROLLMENT_PREFIX: &str = "lbe_";

/// A new enrolment link's secret (`lbe_` and 64 hex digits, shown once) and
/// the SHA-256 that is stored.
pub fn enrollment_secret() -> Result<(String, [u8; 32]), ApiError> {
    let secret = format!("{ENROLLMENT_PREFIX}{}", hex::encode(random_bytes::<32>()?));
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

/// Whether `text` has the shape of an enrolment secret.
#[must_use]
pub fn is_enrollment_secret(text: &str) -> bool {
    text.strip_prefix(ENROLLMENT_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// When tokens were last used, gathered in memory and written now and then
/// ([`TokenUse::flush`]), so that authenticating a call never writes to the
/// database.
#[derive(Debug, Default)]
pub struct TokenUse {
    seen: Mutex<HashMap<TokenId, Timestamp>>,
}

impl TokenUse {
    /// Notes that `token` authenticated a call at `at`.
    pub fn record(&self, token: TokenId, at: Timestamp) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: a flood of distinct tokens cannot grow this without end
        // between two flushes (the oldest notes are simply lost).
        if seen.len() >= 100_000 && !seen.contains_key(&token) {
            return;
        }
        let entry = seen.entry(token).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// Writes what was gathered (bookkeeping, unaudited); how many tokens.
    pub async fn flush(&self, store: &lockbox_store::Store) -> Result<usize, ApiError> {
        let uses: Vec<(TokenId, Timestamp)> = {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.drain().collect()
        };
        if uses.is_empty() {
            return Ok(0);
        }
        let mut tx = store.begin().await?;
        tx.record_token_use(&uses).await?;
        tx.commit_unaudited().await?;
        Ok(uses.len())
    }
}

/// What a secret is presented as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// An API token, in `Authorization: Bearer`.
    ApiToken,
    /// A portal session, in its cookie.
    Session,
}

impl Credential {
    fn prefix(self) -> &'static str {
        match self {
            Self::ApiToken => TOKEN_PREFIX,
            Self::Session => SESSION_PREFIX,
        }
    }
}

/// An authenticated caller: the principal, every role it holds, and the
/// token it used.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal, as of this request.
    pub principal: Principal,
    /// Its role assignments, as of this request.
    pub roles: Vec<RoleAssignment>,
    /// The token presented.
    pub token: TokenId,
    /// When the token presented expires, if ever.
    pub token_expires_at: Option<Timestamp>,
}

/// A freshly minted token: the secret (shown once) and what is stored.
pub struct IssuedToken {
    /// `lbx_…`, to hand to its owner once.
    pub secret: String,
    /// The stored form (only the hash).
    pub record: ApiToken,
}

/// Never the secret: a token in a log line is a token anyone may use.
impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("secret", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// SHA-256 of a token's text.
#[must_use]
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Mints a token for `principal`, valid from `now` until `expires_at`.
/// `None` (never) is for the first provider admin's token, made by
/// `lockbox init`, and the demo's: every token minted through the API
/// expires (see [`api_token_expiry`]).
pub fn issue_token(
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<IssuedToken, ApiError> {
    issue(Credential::ApiToken, principal, now, expires_at)
}

/// Mints a portal session for `principal`, until `expires_at`.
pub(crate) fn issue_session(
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<IssuedToken, ApiError> {
    issue(Credential::Session, principal, now, Some(expires_at))
}

fn issue(
    kind: Credential,
    principal: &PrincipalId,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<IssuedToken, ApiError> {
    if expires_at.is_some_and(|end| end <= now) {
        return Err(ApiError::invalid("a token must expire after it is made"));
    }
    let secret = format!("{}{}", kind.prefix(), hex::encode(random_bytes::<32>()?));
    let record = ApiToken {
        id: TokenId::generate(now)?,
        principal: principal.clone(),
        hash: token_hash(&secret),
        created_at: now,
        expires_at,
        revoked_at: None,
        parent: None,
        kind: match kind {
            Credential::ApiToken => TokenKind::Api,
            Credential::Session => TokenKind::Session,
        },
        name: None,
        last_used_at: None,
    };
    Ok(IssuedToken { secret, record })
}

/// How long a token minted through the API lasts when the request does not
/// say, in days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// The longest lifetime of a token minted through the API, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

/// When a token that `caller` mints at `now` expires: after `days` (90 if
/// `None`, 1 to 365), and no later than the token it presented, whoever
/// the new token is for. A token can thus never buy a longer life: a
/// leaked token cannot be turned into one that outlives it, for its owner
/// or anyone else (and revoking it revokes what it minted).
pub fn api_token_expiry(
    caller: &Caller,
    now: Timestamp,
    days: Option<u32>,
) -> Result<Timestamp, ApiError> {
    let days = days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!(
            "expires_in_days must be between 1 and {MAX_TOKEN_DAYS} (default \
             {DEFAULT_TOKEN_DAYS})"
        )));
    }
    let asked = now + TimeDelta::days(i64::from(days));
    Ok(match caller.token_expires_at {
        Some(own_end) => asked.min(own_end),
        None => asked,
    })
}

/// Checks a token's shape: the prefix of its kind and 64 lowercase hex
/// digits.
fn well_formed(kind: Credential, token: &str) -> bool {
    token.strip_prefix(kind.prefix()).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Counts failed authentication attempts per client (or per any key: an
/// account name, say) and tells when one has failed too often recently.
///
/// A client is an IPv4 address, or an IPv6 /64 (what one host or site is
/// usually given, so that an attacker cannot step around the count through
/// the addresses of their own network). At most a fixed number of keys are
/// remembered: when full, the one whose count started earliest is
/// forgotten, so the memory used is bounded whatever the traffic.
#[derive(Debug)]
pub struct FailureLimiter<K = IpAddr> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    clients: Mutex<Clients<K>>,
}

/// The limiter's memory: the failures of each key, and the keys in the
/// order their counts started (to forget the oldest first).
#[derive(Debug)]
struct Clients<K> {
    failures: HashMap<K, Failures>,
    by_start: BTreeMap<(Instant, u64), K>,
    next: u64,
}

impl<K> Default for Clients<K> {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
            by_start: BTreeMap::new(),
            next: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    /// Tells apart counts that started at the same instant.
    seq: u64,
}

/// How many clients the limiter remembers.
const LIMITER_CAPACITY: usize = 10_000;

/// The client an address counts for: IPv4 addresses (also when written as
/// IPv4-mapped IPv6) one by one, IPv6 addresses by their /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

impl FailureLimiter<IpAddr> {
    /// Whether `ip`'s client has failed too often recently.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.blocked_key(&client_of(ip))
    }

    /// Records a failed attempt from `ip`. Returns whether its client is
    /// over the limit (the failure is to be answered `rate_limited`).
    pub fn fail(&self, ip: IpAddr) -> bool {
        self.fail_key(client_of(ip))
    }

    /// Takes back one failure of `ip`'s client (see
    /// [`FailureLimiter::forgive_key`]).
    pub fn forgive(&self, ip: IpAddr) {
        self.forgive_key(&client_of(ip));
    }
}

impl<K: Clone + Eq + std::hash::Hash> FailureLimiter<K> {
    /// At most `max_failures` per key in any `window`.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, LIMITER_CAPACITY)
    }

    /// As [`FailureLimiter::new`], remembering at most `capacity` keys.
    #[must_use]
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures,
            window,
            capacity: capacity.max(1),
            clients: Mutex::new(Clients::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Clients<K>) -> T) -> T {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut clients)
    }

    /// Whether `key` has failed too often recently.
    pub fn blocked_key(&self, key: &K) -> bool {
        self.with(|clients| {
            clients
                .failures
                .get(key)
                .is_some_and(|f| f.count >= self.max_failures && f.since.elapsed() < self.window)
        })
    }

    /// Records a failed attempt of `key`. Returns whether it is over the
    /// limit (the attempt is to be refused). To count an attempt before
    /// knowing how it ends (so that attempts made at the same time are all
    /// counted), call this first and [`FailureLimiter::forgive_key`] once
    /// it succeeds.
    pub fn fail_key(&self, key: K) -> bool {
        let now = Instant::now();
        self.with(|clients| {
            let current = clients
                .failures
                .get(&key)
                .copied()
                .filter(|f| now.duration_since(f.since) < self.window);
            let failures = match current {
                Some(f) if f.count >= self.max_failures => return true,
                Some(f) => Failures {
                    count: f.count.saturating_add(1),
                    ..f
                },
                None => {
                    // A new count (or a new window): re-file the key under
                    // its new start, making room if needed.
                    if let Some(old) = clients.failures.remove(&key) {
                        clients.by_start.remove(&(old.since, old.seq));
                    }
                    while clients.failures.len() >= self.capacity {
                        let Some((_, oldest)) = clients.by_start.pop_first() else {
                            break;
                        };
                        clients.failures.remove(&oldest);
                    }
                    let seq = clients.next;
                    clients.next = clients.next.wrapping_add(1);
                    clients.by_start.insert((now, seq), key.clone());
                    Failures {
                        count: 1,
                        since: now,
                        seq,
                    }
                }
            };
            clients.failures.insert(key, failures);
            false
        })
    }

    /// Takes back one failure of `key`: an attempt counted beforehand that
    /// succeeded.
    pub fn forgive_key(&self, key: &K) {
        self.with(|clients| {
            if let Some(f) = clients.failures.get_mut(key) {
                f.count = f.count.saturating_sub(1);
            }
        });
    }

    /// How many keys are remembered.
    #[must_use]
    pub fn remembered(&self) -> usize {
        self.with(|clients| clients.failures.len())
    }
}

/// What this node keeps for the sign-in form (see [`crate::lockout`]):
/// failures per client address, counted in memory for attempts without a
/// device cookie, and the device cookies' key once read. Failures per
/// account and per device cookie are counted in the database, shared by
/// every node.
#[derive(Debug)]
pub struct SignInLimits {
    /// Failed sign-ins per client address (of browsers without a device
    /// cookie for the account).
    pub clients: FailureLimiter<IpAddr>,
    /// The key of device cookies, read from the database once.
    pub(crate) device_key: tokio::sync::OnceCell<crate::lockout::DeviceKey>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            clients: FailureLimiter::new(20, Duration::from_secs(60)),
            device_key: tokio::sync::OnceCell::new(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "send `Authorization: Bearer lbx_…`",
            ));
        };
        match authenticate(header, app).await? {
            Ok(caller) => Ok(caller),
            // Only failures count, and only failures are refused: a valid
            // token passes whatever its address's record.
            Err(detail) => {
                let ClientAddr(client) = ClientAddr::of(parts, app);
                if app.auth_failures().fail(client) {
                    Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "too many failed authentication attempts from this address; wait a \
                         minute (valid tokens are still accepted)",
                    ))
                } else {
                    Err(ApiError::unauthenticated(detail))
                }
            }
        }
    }
}

/// The caller a bearer token stands for, or why it stands for no one (the
/// outer error is a failure of the store, which is no failed attempt).
async fn authenticate(
    header: &HeaderValue,
    app: &AppState,
) -> Result<Result<Caller, &'static str>, ApiError> {
    let Some(token) = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")) else {
        return Ok(Err("the Authorization header must be `Bearer lbx_…`"));
    };
    caller_for_token(Credential::ApiToken, token.trim(), app).await
}

/// The caller a token stands for (from a bearer header, or the portal's
/// session cookie), or why it stands for no one; the outer error is a
/// failure of the store.
pub(crate) async fn caller_for_token(
    kind: Credential,
    token: &str,
    app: &AppState,
) -> Result<Result<Caller, &'static str>, ApiError> {
    if !well_formed(kind, token) {
        return Ok(Err(match kind {
            Credential::ApiToken => {
                "the bearer token is not a Lockbox token (`lbx_` and 64 hex digits)"
            }
            Credential::Session => "not a portal session",
        }));
    }
    let hash = token_hash(token);
    let mut tx = app.store().read().await?;
    let Some(stored) = tx.token_by_hash(&hash).await? else {
        return Ok(Err("the token is not recognised"));
    };
    if !bool::from(stored.hash.ct_eq(&hash)) {
        return Ok(Err("the token is not recognised"));
    }
    let now = app.now();
    if stored.revoked_at.is_some() {
        return Ok(Err("the token has been revoked"));
    }
    if stored.expires_at.is_some_and(|end| now >= end) {
        return Ok(Err("the token has expired"));
    }
    let Some((principal, roles)) = tx.principal_with_roles(&stored.principal).await? else {
        return Ok(Err("the token's principal no longer exists"));
    };
    if !principal.is_enabled() {
        return Ok(Err("the token's principal is disabled"));
    }
    app.token_use().record(stored.id, now);
    Ok(Ok(Caller {
        principal,
        roles,
        token: stored.id,
        token_expires_at: stored.expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_with_a_prefix_and_only_their_hash_is_kept() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let month = now + TimeDelta::days(30);
        let a = issue_token(&PrincipalId::parse("sam").unwrap(), now, Some(month)).unwrap();
        let b = issue_token(&PrincipalId::parse("sam").unwrap(), now, None).unwrap();
        assert!(well_formed(Credential::ApiToken, &a.secret) && a.secret.len() == 4 + 64);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.hash, token_hash(&a.secret));
        assert_eq!(a.record.expires_at, Some(month));
        assert_eq!(b.record.expires_at, None);
        assert!(issue_token(&PrincipalId::parse("sam").unwrap(), now, Some(now)).is_err());
        assert!(!well_formed(Credential::ApiToken, "lbx_ABC"));
        let debug = format!("{a:?}");
        assert!(!debug.contains(&a.secret), "no secret in Debug: {debug}");
        assert!(debug.contains(&a.record.id.to_string()), "{debug}");
        assert!(!well_formed(Credential::ApiToken, &a.secret.to_uppercase()));
        // A session is not an API token, nor the other way round.
        let session = issue_session(&PrincipalId::parse("sam").unwrap(), now, month).unwrap();
        assert!(session.secret.starts_with(SESSION_PREFIX));
        assert!(well_formed(Credential::Session, &session.secret));
        assert!(!well_formed(Credential::ApiToken, &session.secret));
        assert!(!well_formed(Credential::Session, &a.secret));
    }

    #[test]
    fn the_limiter_blocks_after_too_many_failures() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(!limiter.blocked(ip));
            assert!(!limiter.fail(ip), "within the limit");
        }
        assert!(limiter.blocked(ip));
        assert!(limiter.fail(ip), "over the limit");
        assert!(!limiter.blocked(IpAddr::from([10, 0, 0, 2])), "per address");
        let quick = FailureLimiter::new(1, Duration::from_millis(1));
        quick.fail(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!quick.blocked(ip), "the window passes");
        assert!(!quick.fail(ip), "and counting starts again");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.fail(a);
        limiter.fail(b);
        assert!(
            limiter.blocked(a) && limiter.blocked(b),
            "one /64, one count"
        );
        assert!(!limiter.blocked(elsewhere), "another /64");
        let v4 = IpAddr::from([192, 0, 2, 7]);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.fail(v4);
        limiter.fail(mapped);
        assert!(limiter.blocked(v4), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(!limiter.blocked(IpAddr::from([192, 0, 2, 8])));
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_clients() {
        let limiter = FailureLimiter::with_capacity(1, Duration::from_secs(60), 3);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        limiter.fail(ip(1));
        assert!(limiter.fail(ip(1)), "blocked");
        for n in 2..=200 {
            limiter.fail(ip(n));
            assert!(limiter.remembered() <= 3);
        }
        assert_eq!(limiter.remembered(), 3);
        assert!(!limiter.blocked(ip(1)), "the oldest was forgotten");
        assert!(limiter.blocked(ip(200)), "the newest is remembered");
        assert!(limiter.blocked(ip(198)));
        assert!(!limiter.blocked(ip(197)));
        // Re-counting a client whose window passed files it anew.
        let quick = FailureLimiter::with_capacity(1, Duration::from_millis(1), 2);
        quick.fail(ip(1));
        quick.fail(ip(2));
        std::thread::sleep(Duration::from_millis(5));
        quick.fail(ip(1));
        quick.fail(ip(3));
        assert_eq!(quick.remembered(), 2);
        assert!(quick.blocked(ip(3)));
        let clients = quick.clients.lock().unwrap();
        assert_eq!(
            clients.by_start.len(),
            clients.failures.len(),
            "no stale index entries"
        );
        assert!(!clients.failures.contains_key(&ip(2)), "{clients:?}");
    }
}
