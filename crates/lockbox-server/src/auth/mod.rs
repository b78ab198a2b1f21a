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

mod limiter;
mod tokens;

pub use limiter::{FailureLimiter, SignInLimits};
use tokens::well_formed;
pub use tokens::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use lockbox_core::{Principal, PrincipalKind, RoleAssignment, Timestamp, TokenId};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::api::ApiError;
use crate::enforce::gateway::{Entry, Gateway};
use crate::extract::ClientAddr;

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
    pub async fn flush(
        &self,
        store: &lockbox_store::Store,
    ) -> Result<usize, crate::service::ServiceError> {
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
    /// When the person's identity provider last authenticated them, if
    /// the token comes from single sign-on.
    pub sso_auth_time: Option<Timestamp>,
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
            Err(detail) => Err(refuse(parts, app, detail)),
        }
    }
}

/// The refusal of a failed authentication, counted against the client's
/// address: `unauthenticated`, or `rate_limited` once it has failed too
/// often.
fn refuse(parts: &Parts, app: &AppState, detail: &'static str) -> ApiError {
    let ClientAddr(client) = ClientAddr::of(parts, app);
    if app.auth_failures().fail(client) {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed authentication attempts from this address; wait a \
             minute (valid tokens are still accepted)",
        )
    } else {
        ApiError::unauthenticated(detail)
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
    let caller = caller_of(&mut tx, stored, now).await?;
    if let Ok(caller) = &caller {
        app.token_use().record(caller.token, now);
    }
    Ok(caller)
}

/// The caller a stored token stands for at `now`, or why it stands for no
/// one (revoked, expired, its principal gone or disabled).
pub(crate) async fn caller_of(
    tx: &mut lockbox_store::Tx,
    stored: lockbox_store::ApiToken,
    now: Timestamp,
) -> Result<Result<Caller, &'static str>, lockbox_store::StoreError> {
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
    Ok(Ok(Caller {
        principal,
        roles,
        token: stored.id,
        token_expires_at: stored.expires_at,
        sso_auth_time: stored.sso_auth_time,
    }))
}
/// The header a gateway presents its own token in, so that the operator's
/// `Authorization` header stays the operator's (forward auth, Envoy).
pub const GATEWAY_TOKEN_HEADER: &str = "lockbox-gateway-token";

/// The token a gateway presents: `Lockbox-Gateway-Token`, else a bearer
/// token (where the `Authorization` header is the gateway's own, as the
/// Kubernetes webhook's and `check`'s are).
fn gateway_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(GATEWAY_TOKEN_HEADER) {
        return Some(value.to_str().unwrap_or_default().trim());
    }
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    header.strip_prefix("Bearer ").map(str::trim)
}

/// A gateway's credentials: answered from the gateways' token cache
/// when it can be, so `check` costs no database read.
impl FromRequestParts<AppState> for Gateway {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(token) = gateway_token(parts) else {
            return Err(ApiError::unauthenticated(
                "send the gateway's token: `Lockbox-Gateway-Token: lbx_…` (or `Authorization: Bearer lbx_…`)",
            ));
        };
        let now = app.now();
        let hash = token
            .starts_with(crate::auth::TOKEN_PREFIX)
            .then(|| token_hash(token));
        let cache = &app.enforcer().gateways;
        if let Some(hit) = hash.as_ref().and_then(|h| cache.get(h, now)) {
            return Ok(hit);
        }
        let read_at = cache.generation();
        let caller = match caller_for_token(Credential::ApiToken, token, app).await? {
            Ok(caller) => caller,
            Err(detail) => return Err(refuse(parts, app, detail)),
        };
        crate::authz::gateway(&caller)?;
        let settings = {
            let mut tx = app.store().read().await?;
            Arc::new(tx.gateway_settings(&caller.principal.id).await?)
        };
        if let Some(hash) = hash {
            cache.put(
                hash,
                Entry {
                    token: caller.token,
                    principal: caller.principal.id.clone(),
                    settings: Arc::clone(&settings),
                    expires_at: caller.token_expires_at,
                    cached_at: Instant::now(),
                },
                read_at,
            );
        }
        debug_assert!(matches!(caller.principal.kind, PrincipalKind::Gateway));
        Ok(Gateway {
            principal: caller.principal.id,
            token: caller.token,
            settings,
        })
    }
}
