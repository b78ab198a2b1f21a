//! Authentication: who is calling.
//!
//! API tokens are `lbx_` followed by 64 hex digits (256 random bits). Lockbox
//! stores only their SHA-256, looks a token up by that hash, and compares
//! hashes in constant time; tokens expire and can be revoked. Passwords
//! (for the portal) are stored as Argon2id hashes. Failed attempts are
//! counted per client address, and an address with too many is refused for
//! a while (`rate_limited`) before its token is even looked up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{
    Argon2, PasswordHasher as _, PasswordVerifier as _, password_hash::phc::PasswordHash,
};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::TimeDelta;
use lockbox_core::id::random_bytes;
use lockbox_core::{Principal, PrincipalId, RoleAssignment, Timestamp, TokenId};
use lockbox_store::{ApiToken, Directory as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::error::ApiError;

/// The prefix that makes Lockbox tokens recognisable (in logs, in secret
/// scanners).
pub const TOKEN_PREFIX: &str = "lbx_";

/// An authenticated caller: the principal, every role it holds, and the
/// token it used.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
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
    if expires_at.is_some_and(|end| end <= now) {
        return Err(ApiError::invalid("a token must expire after it is made"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(random_bytes::<32>()?));
    let record = ApiToken {
        id: TokenId::generate(now)?,
        principal: principal.clone(),
        hash: token_hash(&secret),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok(IssuedToken { secret, record })
}

/// How long a token minted through the API lasts when the request does not
/// say, in days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// The longest lifetime of a token minted through the API, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

/// When a token that `caller` mints at `now` for `target` expires: after
/// `days` (90 if `None`, 1 to 365), and, when the caller mints for itself,
/// no later than the token it presented. A token can thus never buy itself
/// a longer life: a leaked token cannot be turned into one that outlives
/// it. (A provider admin's or TenantAdmin's token for someone else is not
/// bound by the minter's own.)
pub fn api_token_expiry(
    caller: &Caller,
    target: &PrincipalId,
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
        Some(own_end) if &caller.principal.id == target => asked.min(own_end),
        _ => asked,
    })
}

/// Checks a token's shape: the prefix and 64 lowercase hex digits.
fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Hashes a password with Argon2id (on a blocking thread: it is meant to be
/// slow).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS || password.len() > 1024 {
        return Err(ApiError::invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to 1024 characters long"
        )));
    }
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Whether `password` matches the stored Argon2id `hash`.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Counts failed authentication attempts per client address and refuses an
/// address that has failed too often recently.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// How many addresses the limiter remembers before it forgets stale ones.
const LIMITER_CAPACITY: usize = 10_000;

impl FailureLimiter {
    /// At most `max_failures` per address in any `window`.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<IpAddr, (u32, Instant)>) -> T) -> T {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut seen)
    }

    /// Whether `ip` is refused right now.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let window = self.window;
        self.with(|seen| {
            seen.get(&ip).is_some_and(|(count, since)| {
                *count >= self.max_failures && since.elapsed() < window
            })
        })
    }

    /// Records a failed attempt from `ip`.
    pub fn fail(&self, ip: IpAddr) {
        let window = self.window;
        self.with(|seen| {
            if seen.len() >= LIMITER_CAPACITY {
                seen.retain(|_, (_, since)| since.elapsed() < window);
            }
            let entry = seen.entry(ip).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= window {
                *entry = (0, Instant::now());
            }
            entry.0 = entry.0.saturating_add(1);
        });
    }
}

fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        let limiter = app.auth_failures();
        if limiter.blocked(ip) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed authentication attempts from this address; wait a minute",
            ));
        }
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "send `Authorization: Bearer lbx_…`",
            ));
        };
        let fail = |detail: &str| {
            limiter.fail(ip);
            ApiError::unauthenticated(detail)
        };
        let Some(token) = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(fail("the Authorization header must be `Bearer lbx_…`"));
        };
        let token = token.trim();
        if !well_formed(token) {
            return Err(fail(
                "the bearer token is not a Lockbox token (`lbx_` and 64 hex digits)",
            ));
        }
        let hash = token_hash(token);
        let mut tx = app.store().read().await?;
        let Some(stored) = tx.token_by_hash(&hash).await? else {
            return Err(fail("the token is not recognised"));
        };
        if !bool::from(stored.hash.ct_eq(&hash)) {
            return Err(fail("the token is not recognised"));
        }
        let now = app.now();
        if stored.revoked_at.is_some() {
            return Err(fail("the token has been revoked"));
        }
        if stored.expires_at.is_some_and(|end| now >= end) {
            return Err(fail("the token has expired"));
        }
        let Some((principal, roles)) = tx.principal_with_roles(&stored.principal).await? else {
            return Err(fail("the token's principal no longer exists"));
        };
        Ok(Caller {
            principal,
            roles,
            token: stored.id,
            token_expires_at: stored.expires_at,
        })
    }
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
        assert!(well_formed(&a.secret) && a.secret.len() == 4 + 64);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.hash, token_hash(&a.secret));
        assert_eq!(a.record.expires_at, Some(month));
        assert_eq!(b.record.expires_at, None);
        assert!(issue_token(&PrincipalId::parse("sam").unwrap(), now, Some(now)).is_err());
        assert!(!well_formed("lbx_ABC"));
        let debug = format!("{a:?}");
        assert!(!debug.contains(&a.secret), "no secret in Debug: {debug}");
        assert!(debug.contains(&a.record.id.to_string()), "{debug}");
        assert!(!well_formed(&a.secret.to_uppercase()));
    }

    #[test]
    fn the_limiter_blocks_after_too_many_failures() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(!limiter.blocked(ip));
            limiter.fail(ip);
        }
        assert!(limiter.blocked(ip));
        assert!(!limiter.blocked(IpAddr::from([10, 0, 0, 2])), "per address");
        let quick = FailureLimiter::new(1, Duration::from_millis(1));
        quick.fail(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!quick.blocked(ip), "the window passes");
    }

    #[tokio::test]
    async fn passwords_are_argon2id() {
        let hash = hash_password("correct horse battery".to_owned())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery".to_owned(), hash.clone()).await);
        assert!(!verify_password("wrong horse battery".to_owned(), hash).await);
        assert!(hash_password("short".to_owned()).await.is_err());
    }
}
