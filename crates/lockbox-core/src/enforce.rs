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

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::sync::Arc;

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
    pub tenant: Option<TenantId>,
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
        let chain = self.tenant.clone().map_or(Chain::Provider, Chain::Tenant);
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

/// A grant as the index holds it, for comparing an index with the
/// database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexedGrant {
    /// The grant.
    pub id: GrantId,
    /// Its holder.
    pub principal: PrincipalId,
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
#[derive(Debug, Default, Clone)]
pub struct GrantIndex {
    holders: HashMap<PrincipalId, HashMap<SubscriptionId, Vec<Entry>>>,
    subscriptions: HashMap<SubscriptionId, TenantId>,
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
        self.holders.entry(principal).or_default();
    }

    /// Records that `subscription` belongs to `tenant`. A subscription never
    /// changes tenant, so a second call changes nothing.
    pub fn add_subscription(&mut self, subscription: SubscriptionId, tenant: TenantId) {
        self.subscriptions.entry(subscription).or_insert(tenant);
    }

    /// Adds a grant, or moves a known one forward (active → revoked or
    /// ended). Never moves a grant back to active: a stale copy of a grant
    /// changes nothing.
    pub fn upsert(&mut self, grant: &Grant) {
        let state = EntryState::of(&grant.state);
        let subscription = grant.scope.subscription();
        self.subscriptions
            .entry(subscription.clone())
            .or_insert_with(|| grant.tenant.clone());
        let bucket = self
            .holders
            .entry(grant.principal.clone())
            .or_default()
            .entry(subscription)
            .or_default();
        if let Some(entry) = bucket.iter_mut().find(|e| e.id == grant.id) {
            entry.state = entry.state.max(state);
            return;
        }
        let actions = match self.action_sets.entry(grant.actions.clone()) {
            MapEntry::Occupied(shared) => Arc::clone(shared.get()),
            MapEntry::Vacant(slot) => Arc::clone(slot.insert(Arc::new(grant.actions.clone()))),
        };
        bucket.push(Entry {
            id: grant.id,
            scope: grant.scope.clone(),
            actions,
            not_before_us: micros(grant.not_before),
            not_after_us: micros(grant.not_after),
            state,
        });
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
        let Some(tenant) = self.subscriptions.get(subscription) else {
            return CheckOutcome {
                reason: CheckReason::UnknownResource,
                grant: None,
                expires_at: None,
                tenant: None,
            };
        };
        let tenant = Some(tenant.clone());
        let Some(holder) = self.holders.get(principal) else {
            return CheckOutcome {
                reason: CheckReason::UnknownPrincipal,
                grant: None,
                expires_at: None,
                tenant,
            };
        };
        let now_us = micros(now);
        let mut allowed: Option<&Entry> = None;
        let mut denied: Option<(CheckReason, GrantId)> = None;
        for entry in holder.get(subscription).into_iter().flatten() {
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
                        denied = Some((reason, entry.id));
                    }
                }
            }
        }
        match (allowed, denied) {
            (Some(entry), _) => CheckOutcome {
                reason: CheckReason::Granted,
                grant: Some(entry.id),
                expires_at: Timestamp::from_timestamp_micros(entry.not_after_us),
                tenant,
            },
            (None, Some((reason, grant))) => CheckOutcome {
                reason,
                grant: Some(grant),
                expires_at: None,
                tenant,
            },
            (None, None) => CheckOutcome {
                reason: CheckReason::NoGrant,
                grant: None,
                expires_at: None,
                tenant,
            },
        }
    }

    /// Forgets grants that ended more than `keep` before `now` (after that
    /// a check says `no_grant` instead of `expired` or `revoked`). Returns
    /// how many it forgot.
    pub fn prune(&mut self, now: Timestamp, keep: TimeDelta) -> usize {
        let horizon = micros(now - keep);
        let before = self.grants;
        let mut kept = 0;
        for holder in self.holders.values_mut() {
            holder.retain(|_, bucket| {
                bucket.retain(|e| e.not_after_us > horizon);
                kept += bucket.len();
                !bucket.is_empty()
            });
        }
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
            .holders
            .iter()
            .flat_map(|(principal, subs)| {
                subs.values().flatten().map(move |e| IndexedGrant {
                    id: e.id,
                    principal: principal.clone(),
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
