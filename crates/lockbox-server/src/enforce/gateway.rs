//! Gateways' authentication on the check path.
//!
//! A gateway calls `check` for every operator action, so reading its token
//! and principal from the database on every call would make the database
//! the bottleneck. A gateway's token, once authenticated the ordinary way
//! ([`crate::auth::Caller`]), is remembered by its hash for at most [`CACHE_FOR`]; a
//! revoked token is forgotten at once on this node (the commit observer)
//! and on every other node with the grant changes (the change feed, under
//! the same freshness rule as grants), and an expired one is refused by
//! the clock at each use. Gateways have no roles, so nothing else about
//! them can change.
//!
//! A token read from the database before a revocation, and put in the
//! cache after that revocation was forgotten, would be trusted for up to
//! [`CACHE_FOR`] after the revoke returned. So every forgetting bumps a
//! generation, and a token is put only if no forgetting happened since it
//! was read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use std::sync::Arc;

use lockbox_core::{GatewaySettings, PrincipalId, TenantId, Timestamp, TokenId};

use crate::service::ServiceError;

/// How long an authenticated gateway token is trusted without reading the
/// database again.
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// At most this many gateway tokens are remembered.
const CAPACITY: usize = 4096;

/// A gateway token as the cache remembers it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) token: TokenId,
    pub(crate) principal: PrincipalId,
    pub(crate) settings: Arc<GatewaySettings>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) cached_at: Instant,
}

/// Authenticated gateway tokens, by the SHA-256 of the token.
#[derive(Debug, Default)]
pub struct GatewayTokens {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
    /// How many times anything was forgotten; changed only under the
    /// write lock of `entries`.
    generation: AtomicU64,
}

impl GatewayTokens {
    pub(crate) fn get(&self, hash: &[u8; 32], now: Timestamp) -> Option<Gateway> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(hash)?;
        let fresh = entry.cached_at.elapsed() < CACHE_FOR;
        let unexpired = entry.expires_at.is_none_or(|end| now < end);
        (fresh && unexpired).then(|| Gateway {
            principal: entry.principal.clone(),
            token: entry.token,
            settings: Arc::clone(&entry.settings),
        })
    }

    /// The generation to give [`GatewayTokens::put`] for a token about to
    /// be read from the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a token read at generation `read_at`, unless something
    /// was forgotten since (it may have been this token).
    pub(crate) fn put(&self, hash: [u8; 32], entry: Entry, read_at: u64) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != read_at {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.cached_at.elapsed() < CACHE_FOR);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, entry);
    }

    /// Forgets a revoked token.
    pub(crate) fn forget(&self, token: &TokenId) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| e.token != *token);
    }

    /// Forgets every token (after the index was reloaded, when revocations
    /// may have been missed).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// A caller authenticated as a gateway: the only principals that may call
/// `check`.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The gateway.
    pub principal: PrincipalId,
    /// The token it used.
    pub token: TokenId,
    /// What it is trusted with.
    pub settings: Arc<GatewaySettings>,
}

impl Gateway {
    /// Refuses a question about a resource of `tenant` (`None`: a
    /// resource of no tenant) from a gateway bound to another tenant.
    pub fn may_ask_about(&self, tenant: Option<&TenantId>) -> Result<(), ServiceError> {
        match &self.settings.tenant {
            Some(own) if Some(own) != tenant => Err(ServiceError::forbidden(format!(
                "gateway {} serves tenant {own} only; it may not ask about another tenant's resources",
                self.principal
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: TokenId) -> Entry {
        Entry {
            token,
            principal: "gate".parse().unwrap(),
            settings: Arc::default(),
            expires_at: None,
            cached_at: Instant::now(),
        }
    }

    #[test]
    fn a_token_read_before_a_forgetting_is_not_remembered() {
        let cache = GatewayTokens::default();
        let now = chrono::DateTime::UNIX_EPOCH;
        let token = TokenId::generate(now).unwrap();
        // Read from the database, then revoked and forgotten (it was not
        // cached yet), then put: it must not be trusted.
        let read_at = cache.generation();
        cache.forget(&token);
        cache.put([1; 32], entry(token), read_at);
        assert!(cache.get(&[1; 32], now).is_none());
        // Read after the forgetting: remembered.
        let read_at = cache.generation();
        cache.put([1; 32], entry(token), read_at);
        assert!(cache.get(&[1; 32], now).is_some());
        cache.clear();
        assert!(cache.get(&[1; 32], now).is_none());
    }
}
