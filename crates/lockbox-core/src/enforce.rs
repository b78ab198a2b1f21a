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
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

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

/// The last segment of a scope: inline when short, as most resource names
/// are, so that deciding reads no memory beyond the grant's own entry.
#[derive(Debug, Clone)]
enum Name {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl Name {
    fn new(text: &str) -> Self {
        let mut bytes = [0u8; 22];
        match (bytes.get_mut(..text.len()), u8::try_from(text.len())) {
            (Some(slot), Ok(len)) => {
                slot.copy_from_slice(text.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(text.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(text) => text.as_bytes(),
        }
    }
}

/// One grant as the index keeps it: what a decision needs, no more. The
/// scope is kept as what follows `/subscriptions/{id}` (the bucket knows
/// the subscription), split into its head (shared by many grants, kept
/// once in the index and named by its number there) and its last segment;
/// the action set is shared with every grant that has the same one.
#[derive(Debug, Clone)]
struct Entry {
    id: GrantId,
    head: u32,
    name: Name,
    not_before_us: i64,
    not_after_us: i64,
    actions: Arc<ActionSet>,
    state: EntryState,
}

impl Entry {
    /// Whether the scope (`head/name` after `/subscriptions/{id}`, or the
    /// whole subscription when both are empty) contains the resource whose
    /// id, after `/subscriptions/{id}`, is `rest`: a whole-segment prefix,
    /// ignoring case.
    fn covers(&self, head: &[u8], rest: &str) -> bool {
        let name = self.name.as_bytes();
        if head.is_empty() && name.is_empty() {
            return true;
        }
        let inner = rest.as_bytes();
        let end = head.len() + 1 + name.len();
        inner
            .get(..head.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(head))
            && inner.get(head.len()) == Some(&b'/')
            && inner
                .get(head.len() + 1..end)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && matches!(inner.get(end), None | Some(b'/'))
    }

    /// `None` when the entry allows; otherwise why not. The caller has
    /// checked that the scope covers the resource.
    fn deny_reason(&self, allows: impl Fn() -> bool, now_us: i64) -> Option<CheckReason> {
        match self.state {
            EntryState::Revoked => Some(CheckReason::Revoked),
            EntryState::Ended => Some(CheckReason::Expired),
            EntryState::Active if now_us >= self.not_after_us => Some(CheckReason::Expired),
            EntryState::Active if now_us < self.not_before_us => Some(CheckReason::NotYetValid),
            EntryState::Active if !allows() => Some(CheckReason::ActionNotInAccessLevel),
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

/// A bucket's key: the holder's number and the subscription's.
type BucketKey = (u32, u32);

/// The index has numbered as many principals, subscriptions or scope heads
/// as 32 bits tell apart, and cannot hold one more. Never clamped to a
/// number in use: that would make one grant decide with another's scope
/// or holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the grant index cannot hold more than 2^32 {0}")]
pub struct IndexFull(pub &'static str);

/// The number of the next entry of a table that holds `len`, or
/// [`IndexFull`] when 32 bits cannot tell it from the others.
fn next_number(len: usize, what: &'static str) -> Result<u32, IndexFull> {
    u32::try_from(len).map_err(|_| IndexFull(what))
}

/// The `n`th entry of a numbered table.
fn numbered<T>(table: &[T], n: u32) -> Option<&T> {
    usize::try_from(n).ok().and_then(|n| table.get(n))
}

/// What follows `/subscriptions/{id}` in a resource id.
fn rest_of(resource: &ResourceId) -> &str {
    let text = resource.as_str();
    let prefix = "/subscriptions/".len() + resource.subscription_str().len();
    text.get(prefix..).unwrap_or_default()
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
/// Principals and subscriptions are numbered (both tables are small next to
/// the grants: thousands to hundreds of thousands of entries, which stay in
/// the processor's cache), and the grants are found by one lookup of the
/// pair of numbers in a table that holds them inline. A decision therefore
/// reads little besides the grant itself, however many grants there are.
///
/// Numbers are 32 bits (they keep an entry and its key in 80 bytes), and
/// one that would need more is refused with [`IndexFull`], never clamped:
/// a clamped number would make a grant decide with another's holder or
/// scope. Action sets are not numbered at all.
#[derive(Debug, Default, Clone)]
pub struct GrantIndex {
    principals: HashMap<PrincipalId, u32>,
    principal_names: Vec<PrincipalId>,
    subscriptions: HashMap<SubscriptionId, (u32, Arc<TenantId>)>,
    subscription_names: Vec<SubscriptionId>,
    buckets: HashMap<BucketKey, Bucket>,
    /// Scope heads (a scope without its subscription and last segment),
    /// each kept once.
    heads: HashMap<Box<str>, u32>,
    head_names: Vec<Box<str>>,
    /// Action sets, each kept once and shared by the entries that use it
    /// (most grants use one of a few access levels); [`GrantIndex::prune`]
    /// drops those no entry uses any more.
    action_sets: HashSet<Arc<ActionSet>>,
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

    /// Whether `principal` has been recorded.
    #[must_use]
    pub fn knows(&self, principal: &PrincipalId) -> bool {
        self.principals.contains_key(principal)
    }

    /// Records that `principal` exists.
    pub fn add_principal(&mut self, principal: PrincipalId) -> Result<(), IndexFull> {
        self.principal_no(principal).map(drop)
    }

    /// Records that `subscription` belongs to `tenant`. A subscription never
    /// changes tenant, so a second call changes nothing.
    pub fn add_subscription(
        &mut self,
        subscription: SubscriptionId,
        tenant: TenantId,
    ) -> Result<(), IndexFull> {
        self.subscription_no(subscription, tenant).map(drop)
    }

    fn principal_no(&mut self, principal: PrincipalId) -> Result<u32, IndexFull> {
        if let Some(&n) = self.principals.get(&principal) {
            return Ok(n);
        }
        let n = next_number(self.principal_names.len(), "principals")?;
        self.principal_names.push(principal.clone());
        self.principals.insert(principal, n);
        Ok(n)
    }

    fn subscription_no(
        &mut self,
        subscription: SubscriptionId,
        tenant: TenantId,
    ) -> Result<u32, IndexFull> {
        if let Some((n, _)) = self.subscriptions.get(&subscription) {
            return Ok(*n);
        }
        let n = next_number(self.subscription_names.len(), "subscriptions")?;
        self.subscription_names.push(subscription.clone());
        self.subscriptions
            .insert(subscription, (n, Arc::new(tenant)));
        Ok(n)
    }

    fn head_no(&mut self, head: &str) -> Result<u32, IndexFull> {
        if let Some(&n) = self.heads.get(head) {
            return Ok(n);
        }
        let n = next_number(self.head_names.len(), "scope heads")?;
        self.head_names.push(head.into());
        self.heads.insert(head.into(), n);
        Ok(n)
    }

    fn head(&self, n: u32) -> &[u8] {
        numbered(&self.head_names, n).map_or(&[][..], |h| h.as_bytes())
    }

    /// The index's copy of `actions`, shared with every entry that has the
    /// same set (found by hashing, whatever the number of sets).
    fn action_set(&mut self, actions: &ActionSet) -> Arc<ActionSet> {
        if let Some(shared) = self.action_sets.get(actions) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(actions.clone());
        self.action_sets.insert(Arc::clone(&shared));
        shared
    }

    /// How many distinct action sets the index keeps.
    #[must_use]
    pub fn action_set_count(&self) -> usize {
        self.action_sets.len()
    }

    /// Adds a grant, or moves a known one forward (active → revoked or
    /// ended). Never moves a grant back to active: a stale copy of a grant
    /// changes nothing. Returns whether a grant the index held as active
    /// is no longer (access narrowed); or [`IndexFull`], leaving the grant
    /// out (the caller must then stop answering checks from this index).
    pub fn upsert(&mut self, grant: &Grant) -> Result<bool, IndexFull> {
        let state = EntryState::of(&grant.state);
        // Known holders and subscriptions (nearly always, when loading)
        // are looked up without copying their names.
        let principal = match self.principals.get(&grant.principal) {
            Some(&n) => n,
            None => self.principal_no(grant.principal.clone())?,
        };
        let subscription = match self.subscriptions.get(grant.scope.subscription_str()) {
            Some(&(n, _)) => n,
            None => self.subscription_no(grant.scope.subscription(), grant.tenant.clone())?,
        };
        let key = (principal, subscription);
        if let Some(bucket) = self.buckets.get_mut(&key)
            && let Some(entry) = bucket.entries_mut().iter_mut().find(|e| e.id == grant.id)
        {
            let was = entry.state;
            entry.state = entry.state.max(state);
            return Ok(was == EntryState::Active && entry.state != EntryState::Active);
        }
        let (head, name) = rest_of(&grant.scope).rsplit_once('/').unwrap_or(("", ""));
        let entry = Entry {
            id: grant.id,
            head: self.head_no(head)?,
            name: Name::new(name),
            not_before_us: micros(grant.not_before),
            not_after_us: micros(grant.not_after),
            actions: self.action_set(&grant.actions),
            state,
        };
        match self.buckets.get_mut(&key) {
            Some(bucket) => bucket.push(entry),
            None => {
                self.buckets.insert(key, Bucket::One(entry));
            }
        }
        self.grants += 1;
        Ok(false)
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
        self.decide(principal, resource, action, now, None)
    }

    /// As [`GrantIndex::check`], under one grant only: what a credential
    /// minted for that grant (an access token) may do. Another grant of
    /// the same holder allows nothing here.
    #[must_use]
    pub fn check_grant(
        &self,
        principal: &PrincipalId,
        grant: GrantId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> CheckOutcome {
        self.decide(principal, resource, action, now, Some(grant))
    }

    fn decide(
        &self,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
        only: Option<GrantId>,
    ) -> CheckOutcome {
        let deny = |reason, tenant| CheckOutcome {
            reason,
            grant: None,
            expires_at: None,
            tenant,
        };
        let Some((subscription, tenant)) = self.subscriptions.get(resource.subscription_str())
        else {
            return deny(CheckReason::UnknownResource, None);
        };
        let tenant = Some(Arc::clone(tenant));
        let Some(&holder) = self.principals.get(principal) else {
            return deny(CheckReason::UnknownPrincipal, tenant);
        };
        let Some(bucket) = self.buckets.get(&(holder, *subscription)) else {
            return deny(CheckReason::NoGrant, tenant);
        };
        let rest = rest_of(resource);
        let now_us = micros(now);
        let mut allowed: Option<&Entry> = None;
        let mut denied: Option<(CheckReason, &Entry)> = None;
        for entry in bucket.entries() {
            if only.is_some_and(|id| id != entry.id) || !entry.covers(self.head(entry.head), rest) {
                continue;
            }
            let allows = || entry.actions.allows(action);
            match entry.deny_reason(allows, now_us) {
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
                tenant,
            },
            (None, Some((reason, entry))) => CheckOutcome {
                reason,
                grant: Some(entry.id),
                expires_at: None,
                tenant,
            },
            (None, None) => deny(CheckReason::NoGrant, tenant),
        }
    }

    /// Forgets grants that ended more than `keep` before `now` (after that
    /// a check says `no_grant` instead of `expired` or `revoked`), and the
    /// action sets no grant it keeps uses. Returns how many grants it
    /// forgot.
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
        // A set only the table holds is no grant's. (A set a clone of the
        // index still uses is dropped at a later prune.)
        self.action_sets.retain(|set| Arc::strong_count(set) > 1);
        before - kept
    }

    /// Every grant held, sorted by id: to compare the index with the
    /// database.
    #[must_use]
    pub fn grants(&self) -> Vec<IndexedGrant> {
        let mut out: Vec<IndexedGrant> = Vec::with_capacity(self.grants);
        for (&(principal, subscription), bucket) in &self.buckets {
            let principal = numbered(&self.principal_names, principal)
                .map_or_else(String::new, ToString::to_string);
            let subscription = numbered(&self.subscription_names, subscription)
                .map_or_else(String::new, ToString::to_string);
            for e in bucket.entries() {
                out.push(IndexedGrant {
                    id: e.id,
                    principal: principal.clone(),
                    scope: {
                        let head = String::from_utf8_lossy(self.head(e.head));
                        let name = String::from_utf8_lossy(e.name.as_bytes());
                        if head.is_empty() && name.is_empty() {
                            format!("/subscriptions/{subscription}")
                        } else {
                            format!("/subscriptions/{subscription}{head}/{name}")
                        }
                    },
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
                });
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;
    use crate::access::AccessLevelName;
    use crate::grant::GrantRecord;

    fn t0() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
    }

    fn grant(n: u8, patterns: &[&str], hours: i64) -> Grant {
        Grant::restore(GrantRecord {
            id: GrantId::from_parts(t0(), [n; 10]),
            request: None,
            tenant: TenantId::parse("contoso").unwrap(),
            principal: PrincipalId::parse("sam").unwrap(),
            scope: ResourceId::parse("/subscriptions/sub-1/resourceGroups/rg-web").unwrap(),
            access_level: AccessLevelName::parse("Level").unwrap(),
            actions: ActionSet::parse(patterns).unwrap(),
            not_before: t0(),
            not_after: t0() + TimeDelta::hours(hours),
            state: GrantState::Active,
            emergency: true,
        })
        .unwrap()
    }

    #[test]
    fn equal_sets_are_kept_once_and_pruning_drops_the_ones_no_grant_uses() {
        let mut ix = GrantIndex::new();
        ix.upsert(&grant(1, &["*/read"], 1)).unwrap();
        ix.upsert(&grant(2, &["*/read"], 8)).unwrap();
        ix.upsert(&grant(3, &["*"], 1)).unwrap();
        ix.upsert(&grant(4, &["Microsoft.Compute/*"], 1)).unwrap();
        assert_eq!(ix.action_set_count(), 3, "`*/read` is kept once");
        // Grants 1, 3 and 4 end after an hour: `*` and `Microsoft.Compute/*`
        // go with them; `*/read` stays for grant 2.
        assert_eq!(ix.prune(t0() + TimeDelta::hours(3), TimeDelta::hours(1)), 3);
        assert_eq!(ix.action_set_count(), 1);
        let kept: Vec<Vec<String>> = ix.grants().into_iter().map(|g| g.actions).collect();
        assert_eq!(kept, [vec!["*/read".to_owned()]]);
        // A set seen again after it was dropped is kept anew.
        ix.upsert(&grant(5, &["*"], 8)).unwrap();
        assert_eq!(ix.action_set_count(), 2);
        assert_eq!(
            ix.prune(t0() + TimeDelta::hours(10), TimeDelta::hours(1)),
            2
        );
        assert_eq!(ix.action_set_count(), 0);
        assert!(ix.is_empty());
    }

    #[test]
    fn an_entry_and_its_key_fit_in_80_bytes() {
        // What one grant costs in the table, most of the index's memory.
        assert!(std::mem::size_of::<(BucketKey, Bucket)>() <= 80);
    }

    #[test]
    fn a_number_past_32_bits_is_refused_not_clamped() {
        assert_eq!(next_number(0, "principals"), Ok(0));
        assert_eq!(
            next_number(usize::try_from(u32::MAX).unwrap(), "principals"),
            Ok(u32::MAX)
        );
        let past = usize::try_from(u64::from(u32::MAX) + 1).unwrap();
        assert_eq!(
            next_number(past, "scope heads"),
            Err(IndexFull("scope heads"))
        );
        assert_eq!(
            IndexFull("scope heads").to_string(),
            "the grant index cannot hold more than 2^32 scope heads"
        );
    }
}
