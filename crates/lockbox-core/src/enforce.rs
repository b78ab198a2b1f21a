//! Enforcement: the in-memory index of grants that `check` answers from.
//!
//! [`GrantIndex`] holds every grant that can still matter to a decision —
//! active ones, and revoked or ended ones until a while after their end, so
//! that a denial can say why — keyed by holder and then by subscription, so
//! a decision touches only the holder's grants in the resource's
//! subscription however many grants the index holds. It also knows every
//! principal (to tell `unknown_principal`) and which tenant owns each
//! subscription (to tell `unknown_resource`, and to know whose audit chain
//! a decision belongs to).
//!
//! The index is a pure value: the server keeps one per node, applies every
//! grant write to it, and reads the clock at check time. A grant's state only
//! ever moves forward (active → revoked or ended), and [`GrantIndex::upsert`]
//! never moves it back, so changes may arrive in any order (a local commit
//! and a notification about the same grant, a reload racing a revoke) and
//! the index still ends where the database is.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap, HashSet};

use chrono::TimeDelta;
use serde::Serialize;
use serde_json::json;

use crate::access::{Action, ActionSet};
use crate::audit::{Chain, EventKind, PendingEvent};
use crate::clock::Timestamp;
use crate::grant::{Grant, GrantState};
use crate::id::{GrantId, PrincipalId, TenantId};
use crate::resource::{ResourceId, SubscriptionId};

/// Why `check` answered as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    /// An active grant covers the resource and the action.
    Granted,
    /// No grant of the principal covers the resource.
    NoGrant,
    /// The only covering grants have run out.
    Expired,
    /// The only covering grants were revoked.
    Revoked,
    /// A covering grant has not started yet.
    NotYetValid,
    /// A grant covers the resource now, but not this action.
    ActionNotInAccessLevel,
    /// Lockbox knows no principal by that id.
    UnknownPrincipal,
    /// The resource's subscription belongs to no tenant.
    UnknownResource,
}

impl CheckReason {
    /// The reason's name, as `check` reports it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::NoGrant => "no_grant",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::NotYetValid => "not_yet_valid",
            Self::ActionNotInAccessLevel => "action_not_in_access_level",
            Self::UnknownPrincipal => "unknown_principal",
            Self::UnknownResource => "unknown_resource",
        }
    }

    /// How telling a denial is: of several covering grants, the answer
    /// names the reason closest to an allow.
    fn rank(self) -> u8 {
        match self {
            Self::ActionNotInAccessLevel => 4,
            Self::NotYetValid => 3,
            Self::Revoked => 2,
            Self::Expired => 1,
            _ => 0,
        }
    }
}

impl fmt::Display for CheckReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Why; [`CheckReason::Granted`] exactly when allowed.
    pub reason: CheckReason,
    /// The grant that allowed it (the one lasting longest), or the grant a
    /// denial is about.
    pub grant: Option<GrantId>,
    /// When the allowing grant ends.
    pub expires_at: Option<Timestamp>,
    /// The tenant that owns the resource, when Lockbox knows it.
    pub tenant: Option<Arc<TenantId>>,
}

impl CheckOutcome {
    /// Whether the action is allowed.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.reason == CheckReason::Granted
    }

    /// The `access.allowed` / `access.denied` event recording this decision
    /// in the resource's tenant's chain (the provider's chain when the
    /// resource belongs to no tenant). `gateway` is who asked.
    #[must_use]
    pub fn event(
        &self,
        gateway: &PrincipalId,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        at: Timestamp,
    ) -> PendingEvent {
        let chain = self
            .tenant
            .as_deref()
            .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()));
        let kind = if self.allowed() {
            EventKind::AccessAllowed
        } else {
            EventKind::AccessDenied
        };
        PendingEvent::new(
            chain,
            at,
            gateway.clone(),
            kind,
            resource,
            json!({
                "principal": principal,
                "action": action.as_str(),
                "grant": self.grant,
                "reason": self.reason,
            }),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EntryState {
    Active,
    Revoked,
    Ended,
}

impl EntryState {
    fn of(state: &GrantState) -> Self {
        match state {
            GrantState::Active => Self::Active,
            GrantState::Revoked(_) => Self::Revoked,
            GrantState::Ended { .. } => Self::Ended,
        }
    }
}

/// One grant as the index keeps it: what a decision needs, no more.
#[derive(Debug, Clone)]
struct Entry {
    id: GrantId,
    scope: ResourceId,
    actions: Arc<ActionSet>,
    tenant: Arc<TenantId>,
    not_before_us: i64,
    not_after_us: i64,
    state: EntryState,
}

impl Entry {
    /// `None` when the entry allows; otherwise why not. The caller has
    /// checked that the scope covers the resource.
    fn deny_reason(&self, action: &Action, now_us: i64) -> Option<CheckReason> {
        match self.state {
            EntryState::Revoked => Some(CheckReason::Revoked),
            EntryState::Ended => Some(CheckReason::Expired),
            EntryState::Active if now_us >= self.not_after_us => Some(CheckReason::Expired),
            EntryState::Active if now_us < self.not_before_us => Some(CheckReason::NotYetValid),
            EntryState::Active if !self.actions.allows(action) => {
                Some(CheckReason::ActionNotInAccessLevel)
            }
            EntryState::Active => None,
        }
    }
}

/// A holder's grants in one subscription: almost always one, kept inline
/// so that a decision reads it from the table itself.
#[derive(Debug, Clone)]
enum Bucket {
    One(Entry),
    Many(Vec<Entry>),
}

impl Bucket {
    fn entries(&self) -> &[Entry] {
        match self {
            Self::One(e) => std::slice::from_ref(e),
            Self::Many(v) => v,
        }
    }

    fn entries_mut(&mut self) -> &mut [Entry] {
        match self {
            Self::One(e) => std::slice::from_mut(e),
            Self::Many(v) => v,
        }
    }

    fn push(&mut self, entry: Entry) {
        match self {
            Self::One(first) => {
                let first = first.clone();
                *self = Self::Many(vec![first, entry]);
            }
            Self::Many(v) => v.push(entry),
        }
    }

    /// Keeps the entries `keep` accepts; `false` when none is left.
    fn retain(&mut self, keep: impl Fn(&Entry) -> bool) -> bool {
        match self {
            Self::One(e) => keep(e),
            Self::Many(v) => {
                v.retain(|e| keep(e));
                if let [only] = v.as_slice() {
                    *self = Self::One(only.clone());
                }
                !self.entries().is_empty()
            }
        }
    }
}

/// A bucket's key: the holder and the subscription, as one string
/// `holder NUL subscription` (neither can contain NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BucketKey {
    text: Box<str>,
    split: usize,
}

impl BucketKey {
    fn new(principal: &str, subscription: &str) -> Self {
        Self {
            text: format!("{principal}\0{subscription}").into(),
            split: principal.len(),
        }
    }

    fn principal(&self) -> &str {
        self.text.get(..self.split).unwrap_or_default()
    }

    fn subscription(&self) -> &str {
        self.text.get(self.split + 1..).unwrap_or_default()
    }
}

/// A bucket's key as a lookup holds it, without allocating.
#[derive(Debug, Clone, Copy)]
struct KeyRef<'a> {
    principal: &'a str,
    subscription: &'a str,
}

fn hash_key<H: Hasher>(principal: &str, subscription: &str, state: &mut H) {
    state.write(principal.as_bytes());
    state.write_u8(0);
    state.write(subscription.as_bytes());
}

impl Hash for BucketKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.principal(), self.subscription(), state);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.principal, self.subscription, state);
    }
}

impl Equivalent<BucketKey> for KeyRef<'_> {
    fn equivalent(&self, key: &BucketKey) -> bool {
        key.principal() == self.principal && key.subscription() == self.subscription
    }
}

/// A grant as the index holds it, for comparing an index with the
/// database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexedGrant {
    /// The grant.
    pub id: GrantId,
    /// Its holder.
    pub principal: String,
    /// Its scope, as text.
    pub scope: String,
    /// Its action patterns, as text.
    pub actions: Vec<String>,
    /// Start, microseconds since the epoch.
    pub not_before_us: i64,
    /// End, microseconds since the epoch.
    pub not_after_us: i64,
    /// `active`, `revoked` or `ended`.
    pub state: &'static str,
}

/// Every grant that can matter to a decision, by holder and subscription;
/// every principal; every subscription's tenant.
///
/// A decision makes one table lookup (holder and subscription together,
/// hashed without allocating) and finds the grants inline in the table; the
/// sets of principals and subscriptions are read only to explain a denial.
#[derive(Debug, Default, Clone)]
pub struct GrantIndex {
    buckets: HashMap<BucketKey, Bucket>,
    principals: HashSet<PrincipalId>,
    subscriptions: HashMap<SubscriptionId, Arc<TenantId>>,
    /// Action sets are shared: most grants use one of a few access levels.
    action_sets: HashMap<ActionSet, Arc<ActionSet>>,
    grants: usize,
}

fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

impl GrantIndex {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many grants it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.grants
    }

    /// Whether it holds no grant.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.grants == 0
    }

    /// Records that `principal` exists.
    pub fn add_principal(&mut self, principal: PrincipalId) {
        self.principals.insert(principal);
    }

    /// Records that `subscription` belongs to `tenant`. A subscription never
    /// changes tenant, so a second call changes nothing.
    pub fn add_subscription(&mut self, subscription: SubscriptionId, tenant: TenantId) {
        self.subscriptions
            .entry(subscription)
            .or_insert_with(|| Arc::new(tenant));
    }

    /// Adds a grant, or moves a known one forward (active → revoked or
    /// ended). Never moves a grant back to active: a stale copy of a grant
    /// changes nothing.
    pub fn upsert(&mut self, grant: &Grant) {
        let state = EntryState::of(&grant.state);
        let subscription = grant.scope.subscription_str();
        let key = KeyRef {
            principal: grant.principal.as_str(),
            subscription,
        };
        if let Some(bucket) = self.buckets.get_mut(&key)
            && let Some(entry) = bucket.entries_mut().iter_mut().find(|e| e.id == grant.id)
        {
            entry.state = entry.state.max(state);
            return;
        }
        self.principals.insert(grant.principal.clone());
        let tenant = Arc::clone(
            self.subscriptions
                .entry(grant.scope.subscription())
                .or_insert_with(|| Arc::new(grant.tenant.clone())),
        );
        let actions = match self.action_sets.get(&grant.actions) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = Arc::new(grant.actions.clone());
                self.action_sets
                    .insert(grant.actions.clone(), Arc::clone(&shared));
                shared
            }
        };
        let entry = Entry {
            id: grant.id,
            scope: grant.scope.clone(),
            actions,
            tenant,
            not_before_us: micros(grant.not_before),
            not_after_us: micros(grant.not_after),
            state,
        };
        match self.buckets.get_mut(&key) {
            Some(bucket) => bucket.push(entry),
            None => {
                self.buckets.insert(
                    BucketKey::new(grant.principal.as_str(), subscription),
                    Bucket::One(entry),
                );
            }
        }
        self.grants += 1;
    }

    /// Decides whether `principal` may perform `action` on `resource` at
    /// `now`, reading nothing but the index: an expired grant never allows,
    /// whether or not its end has been recorded.
    #[must_use]
    pub fn check(
        &self,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> CheckOutcome {
        let subscription = resource.subscription_str();
        let key = KeyRef {
            principal: principal.as_str(),
            subscription,
        };
        let now_us = micros(now);
        let mut allowed: Option<&Entry> = None;
        let mut denied: Option<(CheckReason, &Entry)> = None;
        let entries = self.buckets.get(&key).map_or(&[][..], Bucket::entries);
        for entry in entries {
            if !entry.scope.contains(resource) {
                continue;
            }
            match entry.deny_reason(action, now_us) {
                None => {
                    if allowed.is_none_or(|best| entry.not_after_us > best.not_after_us) {
                        allowed = Some(entry);
                    }
                }
                Some(reason) => {
                    if denied.is_none_or(|(best, _)| reason.rank() > best.rank()) {
                        denied = Some((reason, entry));
                    }
                }
            }
        }
        match (allowed, denied) {
            (Some(entry), _) => CheckOutcome {
                reason: CheckReason::Granted,
                grant: Some(entry.id),
                expires_at: Timestamp::from_timestamp_micros(entry.not_after_us),
                tenant: Some(Arc::clone(&entry.tenant)),
            },
            (None, Some((reason, entry))) => CheckOutcome {
                reason,
                grant: Some(entry.id),
                expires_at: None,
                tenant: Some(Arc::clone(&entry.tenant)),
            },
            (None, None) => {
                let tenant = self.subscriptions.get(subscription).cloned();
                let reason = if tenant.is_none() {
                    CheckReason::UnknownResource
                } else if !self.principals.contains(principal) {
                    CheckReason::UnknownPrincipal
                } else {
                    CheckReason::NoGrant
                };
                CheckOutcome {
                    reason,
                    grant: None,
                    expires_at: None,
                    tenant,
                }
            }
        }
    }

    /// Forgets grants that ended more than `keep` before `now` (after that
    /// a check says `no_grant` instead of `expired` or `revoked`). Returns
    /// how many it forgot.
    pub fn prune(&mut self, now: Timestamp, keep: TimeDelta) -> usize {
        let horizon = micros(now - keep);
        let before = self.grants;
        let mut kept = 0;
        self.buckets.retain(|_, bucket| {
            let alive = bucket.retain(|e| e.not_after_us > horizon);
            if alive {
                kept += bucket.entries().len();
            }
            alive
        });
        self.grants = kept;
        self.action_sets
            .retain(|_, shared| Arc::strong_count(shared) > 1);
        before - kept
    }

    /// Every grant held, sorted by id: to compare the index with the
    /// database.
    #[must_use]
    pub fn grants(&self) -> Vec<IndexedGrant> {
        let mut out: Vec<IndexedGrant> = self
            .buckets
            .iter()
            .flat_map(|(key, bucket)| {
                bucket.entries().iter().map(move |e| IndexedGrant {
                    id: e.id,
                    principal: key.principal().to_owned(),
                    scope: e.scope.to_string(),
                    actions: e
                        .actions
                        .patterns()
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                    not_before_us: e.not_before_us,
                    not_after_us: e.not_after_us,
                    state: match e.state {
                        EntryState::Active => "active",
                        EntryState::Revoked => "revoked",
                        EntryState::Ended => "ended",
                    },
                })
            })
            .collect();
        out.sort();
        out
    }
}
