//! Enforcement: the in-memory index of grants that `check` answers from.
//!
//! [`GrantIndex`] holds every grant that can still matter to a decision —
//! active ones, and revoked or ended ones until a while after their end, so
//! that a denial can say why — keyed by holder and then by subscription, so
//! a decision touches only the holder's grants in the resource's
//! subscription however many grants the index holds; and where a holder has
//! more than a few there, by scope, so that a decision reads a bounded
//! number of them (the scopes above the resource, and in each the active
//! grants and the latest revoked and ended one) however many the holder
//! has, live or over, and loading them is linear. It also knows every
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

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet, HashTable};

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

/// Where a known grant's newer copy moves its entry: its state, and its end
/// (later when an extension was approved).
#[derive(Debug, Clone, Copy)]
struct Step {
    state: EntryState,
    not_after_us: i64,
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

    /// Moves the entry forward to `step` (never back: a later state, a
    /// later end while active): whether it was active and is no longer.
    fn advance(&mut self, step: Step) -> bool {
        let was = self.state;
        self.state = self.state.max(step.state);
        if self.state == EntryState::Active {
            self.not_after_us = self.not_after_us.max(step.not_after_us);
        }
        was == EntryState::Active && self.state != EntryState::Active
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

/// A bucket holding more than this many grants is indexed by scope; up to
/// it, a decision reads every entry, which costs less than hashing.
const SCAN_LIMIT: usize = 8;

/// What a bucket's scope index needs from the index around it: the scope
/// heads (entries keep only their number) and the key its hashes use.
#[derive(Clone, Copy)]
struct Scopes<'a> {
    heads: &'a [Box<str>],
    hasher: &'a ScopeHasher,
}

/// The keyed hasher of scopes (a new key for every index, so nobody can
/// choose scopes that collide).
type ScopeHasher = hashbrown::DefaultHashBuilder;

/// `word`'s eight bytes with their ASCII capitals in lower case (any
/// other byte, ASCII or not, unchanged), all at once.
fn fold_word(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let low = word & LOW;
    // A byte's high bit is set when its low seven bits are past 'Z', and
    // (second) when they are at least 'A'; neither sum carries into the
    // next byte.
    let past_z = low + 0x2525_2525_2525_2525;
    let from_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let capital = !word & from_a & !past_z & HIGH;
    word | (capital >> 2)
}

/// Eight bytes as a word (zero when `chunk` is not eight bytes long).
fn word(chunk: &[u8]) -> u64 {
    <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes)
}

/// The last bytes of a text (fewer than eight), padded with zeros.
fn tail_word(tail: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    if let Some(to) = word.get_mut(..tail.len()) {
        to.copy_from_slice(tail);
    }
    u64::from_le_bytes(word)
}

impl<'a> Scopes<'a> {
    fn head(&self, n: u32) -> &'a [u8] {
        numbered(self.heads, n).map_or(&[][..], |h| h.as_bytes())
    }

    /// The hash of a scope (what follows the subscription) ignoring ASCII
    /// case: folded and hashed eight bytes at a time, with no copy.
    fn hash(&self, scope: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        let words = scope.chunks_exact(8);
        let tail = tail_word(words.remainder());
        for chunk in words {
            hasher.write_u64(fold_word(word(chunk)));
        }
        hasher.write_u64(fold_word(tail));
        hasher.write_usize(scope.len());
        hasher.finish()
    }

    /// An entry's scope: its hash and its depth (segments).
    fn key(&self, entry: &Entry) -> (u64, u32) {
        let (head, name) = (self.head(entry.head), entry.name.as_bytes());
        if head.is_empty() && name.is_empty() {
            return (self.hash(&[]), 0);
        }
        let mut text = Vec::with_capacity(head.len() + 1 + name.len());
        text.extend_from_slice(head);
        text.push(b'/');
        text.extend_from_slice(name);
        let depth = head.iter().filter(|&&b| b == b'/').count() + 1;
        (self.hash(&text), u32::try_from(depth).unwrap_or(u32::MAX))
    }

    /// Whether `entry`'s scope is exactly `scope` (what follows the
    /// subscription), ignoring case.
    fn is(&self, entry: &Entry, scope: &str) -> bool {
        let (head, name) = (self.head(entry.head), entry.name.as_bytes());
        if head.is_empty() && name.is_empty() {
            scope.is_empty()
        } else {
            scope.len() == head.len() + 1 + name.len() && entry.covers(head, scope)
        }
    }

    /// Whether two entries have the same scope, ignoring case.
    fn same(&self, a: &Entry, b: &Entry) -> bool {
        self.head(a.head).eq_ignore_ascii_case(self.head(b.head))
            && a.name.as_bytes().eq_ignore_ascii_case(b.name.as_bytes())
    }
}

/// The bit of a depth in [`Scoped::depths`] (depths past 63 share one).
fn depth_bit(depth: u32) -> u64 {
    1 << depth.min(63)
}

/// What a decision has found so far among the entries covering the
/// resource, and how many entries it has read.
#[derive(Default)]
struct Finding<'a> {
    /// The allowing entry that lasts longest.
    allowed: Option<&'a Entry>,
    /// The denial closest to an allow.
    denied: Option<(CheckReason, &'a Entry)>,
    inspected: usize,
}

impl<'a> Finding<'a> {
    /// Judges `entry`, whose scope covers the resource; returns why it
    /// does not allow, or `None` when it does.
    fn judge(&mut self, entry: &'a Entry, action: &Action, now_us: i64) -> Option<CheckReason> {
        let reason = entry.deny_reason(|| entry.actions.allows(action), now_us);
        match reason {
            None => {
                if self
                    .allowed
                    .is_none_or(|best| entry.not_after_us > best.not_after_us)
                {
                    self.allowed = Some(entry);
                }
            }
            Some(reason) => {
                if self
                    .denied
                    .is_none_or(|(best, _)| reason.rank() > best.rank())
                {
                    self.denied = Some((reason, entry));
                }
            }
        }
        reason
    }
}

/// The grants of one bucket with one scope (ignoring case).
#[derive(Debug, Clone)]
enum Group {
    One(Entry),
    Crowd(Box<Crowd>),
}

/// Several grants with the same scope: the active ones (few: a policy
/// bounds how many a holder has) by end, latest first; the revoked and
/// the ended ones (any number) by id, so that a decision reads one of each
/// and a change finds its grant without a scan.
#[derive(Debug, Clone, Default)]
struct Crowd {
    live: Vec<Entry>,
    revoked: BTreeMap<GrantId, Entry>,
    ended: BTreeMap<GrantId, Entry>,
}

impl Crowd {
    fn place(&mut self, entry: Entry) {
        match entry.state {
            EntryState::Active => {
                let at = self
                    .live
                    .partition_point(|e| e.not_after_us > entry.not_after_us);
                self.live.insert(at, entry);
            }
            EntryState::Revoked => {
                self.revoked.insert(entry.id, entry);
            }
            EntryState::Ended => {
                self.ended.insert(entry.id, entry);
            }
        }
    }

    fn len(&self) -> usize {
        self.live.len() + self.revoked.len() + self.ended.len()
    }

    fn first(&self) -> Option<&Entry> {
        self.live
            .first()
            .or_else(|| self.revoked.values().next())
            .or_else(|| self.ended.values().next())
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.live
            .iter()
            .chain(self.revoked.values())
            .chain(self.ended.values())
    }

    fn get(&self, id: GrantId) -> Option<&Entry> {
        self.live
            .iter()
            .find(|e| e.id == id)
            .or_else(|| self.revoked.get(&id))
            .or_else(|| self.ended.get(&id))
    }

    /// Moves grant `id` forward to `step`; `None` when it is not here.
    fn advance(&mut self, id: GrantId, step: Step) -> Option<bool> {
        let state = step.state;
        if let Some(at) = self.live.iter().position(|e| e.id == id) {
            if state == EntryState::Active
                && self
                    .live
                    .get(at)
                    .is_some_and(|e| e.not_after_us >= step.not_after_us)
            {
                // Nothing moves: a copy of what the index holds.
                return Some(false);
            }
            let mut entry = self.live.remove(at);
            let narrowed = entry.advance(step);
            // Placed again: the live entries are kept by end.
            self.place(entry);
            return Some(narrowed);
        }
        if state == EntryState::Ended
            && let Some(mut entry) = self.revoked.remove(&id)
        {
            entry.state = state;
            self.place(entry);
            return Some(false);
        }
        (self.revoked.contains_key(&id) || self.ended.contains_key(&id)).then_some(false)
    }

    /// Keeps the entries `keep` accepts.
    fn retain(&mut self, keep: &impl Fn(&Entry) -> bool) {
        self.live.retain(keep);
        self.revoked.retain(|_, e| keep(e));
        self.ended.retain(|_, e| keep(e));
    }

    /// Judges the entries that can change the answer: active ones until one
    /// allows (then nothing else matters) or has run out (those after it
    /// end earlier still), then the latest revoked and the latest ended.
    fn decide<'a>(
        &'a self,
        finding: &mut Finding<'a>,
        only: Option<GrantId>,
        action: &Action,
        now_us: i64,
    ) {
        if let Some(id) = only {
            if let Some(entry) = self.get(id) {
                finding.inspected += 1;
                finding.judge(entry, action, now_us);
            }
            return;
        }
        for entry in &self.live {
            finding.inspected += 1;
            match finding.judge(entry, action, now_us) {
                // An allow stands whatever was revoked or ended.
                None => return,
                Some(CheckReason::Expired) => break,
                Some(_) => {}
            }
        }
        for entry in [&self.revoked, &self.ended]
            .into_iter()
            .filter_map(|over| over.values().next_back())
        {
            finding.inspected += 1;
            finding.judge(entry, action, now_us);
        }
    }
}

impl Group {
    fn first(&self) -> Option<&Entry> {
        match self {
            Self::One(e) => Some(e),
            Self::Crowd(c) => c.first(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Crowd(c) => c.len(),
        }
    }

    fn for_each<'a>(&'a self, f: &mut impl FnMut(&'a Entry)) {
        match self {
            Self::One(e) => f(e),
            Self::Crowd(c) => c.entries().for_each(f),
        }
    }

    fn push(&mut self, entry: Entry) {
        match self {
            Self::One(first) => {
                let mut crowd = Crowd::default();
                crowd.place(first.clone());
                crowd.place(entry);
                *self = Self::Crowd(Box::new(crowd));
            }
            Self::Crowd(c) => c.place(entry),
        }
    }

    fn advance(&mut self, id: GrantId, step: Step) -> Option<bool> {
        match self {
            Self::One(e) => (e.id == id).then(|| e.advance(step)),
            Self::Crowd(c) => c.advance(id, step),
        }
    }

    /// Keeps the entries `keep` accepts; `false` when none is left.
    fn retain(&mut self, keep: &impl Fn(&Entry) -> bool) -> bool {
        match self {
            Self::One(e) => keep(e),
            Self::Crowd(c) => {
                c.retain(keep);
                if c.len() == 1
                    && let Some(only) = c.first()
                {
                    *self = Self::One(only.clone());
                }
                self.len() > 0
            }
        }
    }

    fn decide<'a>(
        &'a self,
        finding: &mut Finding<'a>,
        only: Option<GrantId>,
        action: &Action,
        now_us: i64,
    ) {
        match self {
            Self::One(e) => {
                if only.is_none_or(|id| id == e.id) {
                    finding.inspected += 1;
                    finding.judge(e, action, now_us);
                }
            }
            Self::Crowd(c) => c.decide(finding, only, action, now_us),
        }
    }
}

/// A bucket with more than [`SCAN_LIMIT`] grants: its grants by scope, so
/// that a decision looks up each scope above the resource (only at the
/// depths some grant's scope has) and judges a bounded number of entries
/// there, however many grants the holder has in the subscription.
#[derive(Debug, Clone, Default)]
struct Scoped {
    groups: HashTable<Group>,
    /// Bit `d` is set when some scope has `d` segments.
    depths: u64,
    len: usize,
}

impl Scoped {
    fn insert(&mut self, scopes: Scopes<'_>, entry: Entry) {
        let (hash, depth) = scopes.key(&entry);
        self.depths |= depth_bit(depth);
        self.len += 1;
        let same = |g: &Group| g.first().is_some_and(|f| scopes.same(f, &entry));
        match self.groups.find_mut(hash, same) {
            Some(group) => group.push(entry),
            None => {
                self.groups.insert_unique(hash, Group::One(entry), |g| {
                    g.first().map_or(0, |f| scopes.key(f).0)
                });
            }
        }
    }

    /// Calls `visit` with every group whose scope contains the resource
    /// whose id after the subscription is `rest`, shallowest first: one
    /// lookup for each scope above the resource at a depth some group has.
    fn covering<'a>(&'a self, scopes: Scopes<'_>, rest: &str, mut visit: impl FnMut(&'a Group)) {
        let bytes = rest.as_bytes();
        let mut probe = |end: usize| {
            let (Some(prefix), Some(scope)) = (bytes.get(..end), rest.get(..end)) else {
                return;
            };
            if let Some(group) = self.groups.find(scopes.hash(prefix), |g| {
                g.first().is_some_and(|f| scopes.is(f, scope))
            }) {
                visit(group);
            }
        };
        if self.depths & 1 != 0 {
            probe(0);
        }
        // Where each scope below the subscription ends: before each `/`
        // but the first, and at the end; found no further than the
        // deepest scope the bucket has.
        let ends = memchr::memchr_iter(b'/', bytes.get(1..).unwrap_or_default())
            .map(|i| i + 1)
            .chain((!bytes.is_empty()).then_some(bytes.len()));
        for (depth, end) in (1u32..).zip(ends) {
            if self.depths.checked_shr(depth).unwrap_or(0) == 0 {
                break;
            }
            if self.depths & depth_bit(depth) != 0 {
                probe(end);
            }
        }
    }

    fn advance(&mut self, scopes: Scopes<'_>, rest: &str, id: GrantId, step: Step) -> Option<bool> {
        let hash = scopes.hash(rest.as_bytes());
        self.groups
            .find_mut(hash, |g| g.first().is_some_and(|f| scopes.is(f, rest)))
            .and_then(|group| group.advance(id, step))
    }
}

/// A holder's grants in one subscription: almost always one, kept inline
/// so that a decision reads it from the table itself; a few, read in
/// turn; or many, indexed by scope.
#[derive(Debug, Clone)]
enum Bucket {
    One(Entry),
    Few(Vec<Entry>),
    Scoped(Box<Scoped>),
}

impl Bucket {
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Few(v) => v.len(),
            Self::Scoped(s) => s.len,
        }
    }

    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a Entry)) {
        match self {
            Self::One(e) => f(e),
            Self::Few(v) => v.iter().for_each(f),
            Self::Scoped(s) => s.groups.iter().for_each(|g| g.for_each(&mut f)),
        }
    }

    fn push(&mut self, scopes: Scopes<'_>, entry: Entry) {
        match self {
            Self::One(first) => {
                let first = first.clone();
                *self = Self::Few(vec![first, entry]);
            }
            Self::Few(v) if v.len() < SCAN_LIMIT => v.push(entry),
            Self::Few(v) => {
                let mut scoped = Scoped::default();
                for e in v.drain(..).chain([entry]) {
                    scoped.insert(scopes, e);
                }
                *self = Self::Scoped(Box::new(scoped));
            }
            Self::Scoped(s) => s.insert(scopes, entry),
        }
    }

    /// Moves the grant `id` (with scope `rest`) forward to `state`:
    /// whether it was active and is no longer, or `None` when the bucket
    /// does not hold it.
    fn advance(&mut self, scopes: Scopes<'_>, rest: &str, id: GrantId, step: Step) -> Option<bool> {
        match self {
            Self::One(e) => (e.id == id).then(|| e.advance(step)),
            Self::Few(v) => v.iter_mut().find(|e| e.id == id).map(|e| e.advance(step)),
            Self::Scoped(s) => s.advance(scopes, rest, id, step),
        }
    }

    /// Keeps the entries `keep` accepts; `false` when none is left.
    fn retain(&mut self, scopes: Scopes<'_>, keep: impl Fn(&Entry) -> bool) -> bool {
        match self {
            Self::One(e) => return keep(e),
            Self::Few(v) => v.retain(&keep),
            Self::Scoped(s) => {
                s.groups.retain(|g| g.retain(&keep));
                s.len = 0;
                s.depths = 0;
                for g in &s.groups {
                    s.len += g.len();
                    if let Some(first) = g.first() {
                        s.depths |= depth_bit(scopes.key(first).1);
                    }
                }
                if s.len <= SCAN_LIMIT {
                    let mut few = Vec::with_capacity(s.len);
                    for g in &s.groups {
                        g.for_each(&mut |e| few.push(e.clone()));
                    }
                    *self = Self::Few(few);
                }
            }
        }
        if let Self::Few(v) = self
            && v.len() <= 1
        {
            let Some(only) = v.pop() else { return false };
            *self = Self::One(only);
        }
        true
    }

    /// Judges the entries covering the resource (whose id after the
    /// subscription is `rest`) that can change the answer.
    fn decide<'a>(
        &'a self,
        scopes: Scopes<'_>,
        finding: &mut Finding<'a>,
        rest: &str,
        only: Option<GrantId>,
        action: &Action,
        now_us: i64,
    ) {
        let entries = match self {
            Self::One(e) => std::slice::from_ref(e),
            Self::Few(v) => v.as_slice(),
            Self::Scoped(s) => {
                s.covering(scopes, rest, |g| g.decide(finding, only, action, now_us));
                return;
            }
        };
        // Few enough to read every one.
        for e in entries {
            finding.inspected += 1;
            if only.is_none_or(|id| id == e.id) && e.covers(scopes.head(e.head), rest) {
                finding.judge(e, action, now_us);
            }
        }
    }
}

/// A bucket's key: the holder's number and the subscription's.
type BucketKey = (u32, u32);

/// The buckets, in [`GrantIndex::PRUNE_PARTS`] tables by key, so that
/// forgetting grants long over can walk one table at a time (a short hold
/// of the index) instead of every bucket at once.
#[derive(Debug, Clone)]
struct Buckets(Box<[HashMap<BucketKey, Bucket>]>);

impl Default for Buckets {
    fn default() -> Self {
        Self(
            (0..GrantIndex::PRUNE_PARTS)
                .map(|_| HashMap::new())
                .collect(),
        )
    }
}

impl Buckets {
    /// The table of `key`: the top bits of a multiplicative hash of the
    /// two numbers (which the index assigns in turn, so nobody chooses).
    fn part(key: BucketKey) -> usize {
        let both = (u64::from(key.0) << 32) | u64::from(key.1);
        let top = both.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58;
        usize::try_from(top).unwrap_or_default()
    }

    fn table(&self, key: BucketKey) -> Option<&HashMap<BucketKey, Bucket>> {
        self.0.get(Self::part(key))
    }

    fn get(&self, key: &BucketKey) -> Option<&Bucket> {
        self.table(*key).and_then(|t| t.get(key))
    }

    fn get_mut(&mut self, key: &BucketKey) -> Option<&mut Bucket> {
        self.0
            .get_mut(Self::part(*key))
            .and_then(|t| t.get_mut(key))
    }

    fn insert(&mut self, key: BucketKey, bucket: Bucket) {
        if let Some(table) = self.0.get_mut(Self::part(key)) {
            table.insert(key, bucket);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&BucketKey, &Bucket)> {
        self.0.iter().flatten()
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &Bucket> {
        self.iter().map(|(_, b)| b)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.iter().all(HashMap::is_empty)
    }
}

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
/// pair of numbers in a table that holds them inline (or, for a holder with
/// many grants in the subscription, one more lookup for each depth of
/// scope above the resource that some of them have). A decision therefore
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
    buckets: Buckets,
    /// Scope heads (a scope without its subscription and last segment),
    /// each kept once.
    heads: HashMap<Box<str>, u32>,
    head_names: Vec<Box<str>>,
    /// Action sets, each kept once and shared by the entries that use it
    /// (most grants use one of a few access levels); [`GrantIndex::prune`]
    /// drops those no entry uses any more.
    action_sets: HashSet<Arc<ActionSet>>,
    /// The key of the scope hashes of buckets indexed by scope.
    scope_hasher: ScopeHasher,
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

    fn scopes(&self) -> Scopes<'_> {
        Scopes {
            heads: &self.head_names,
            hasher: &self.scope_hasher,
        }
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
    /// ended; an active grant's end later, when it was extended). Never
    /// moves a grant back to active or its end earlier: a stale copy of a
    /// grant changes nothing. Returns whether a grant the index held as active
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
        let rest = rest_of(&grant.scope);
        let scopes = Scopes {
            heads: &self.head_names,
            hasher: &self.scope_hasher,
        };
        if let Some(bucket) = self.buckets.get_mut(&key)
            && let Some(narrowed) = bucket.advance(
                scopes,
                rest,
                grant.id,
                Step {
                    state,
                    not_after_us: micros(grant.not_after),
                },
            )
        {
            return Ok(narrowed);
        }
        let (head, name) = rest.rsplit_once('/').unwrap_or(("", ""));
        let entry = Entry {
            id: grant.id,
            head: self.head_no(head)?,
            name: Name::new(name),
            not_before_us: micros(grant.not_before),
            not_after_us: micros(grant.not_after),
            actions: self.action_set(&grant.actions),
            state,
        };
        let scopes = Scopes {
            heads: &self.head_names,
            hasher: &self.scope_hasher,
        };
        match self.buckets.get_mut(&key) {
            Some(bucket) => bucket.push(scopes, entry),
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
        self.decide(principal, resource, action, now, None, &mut 0)
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
        self.decide(principal, resource, action, now, Some(grant), &mut 0)
    }

    /// Decides, and counts in `inspected` the entries it judged: however
    /// many grants the holder has in the subscription, only those whose
    /// scope is one of the resource's (and of those, the ones that can
    /// change the answer) once a bucket is indexed by scope.
    fn decide(
        &self,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
        only: Option<GrantId>,
        inspected: &mut usize,
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
        let mut finding = Finding::default();
        bucket.decide(
            self.scopes(),
            &mut finding,
            rest_of(resource),
            only,
            action,
            micros(now),
        );
        *inspected = finding.inspected;
        match (finding.allowed, finding.denied) {
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

    /// Into how many parts [`GrantIndex::prune_part`] divides the index.
    pub const PRUNE_PARTS: usize = 64;

    /// Forgets grants that ended more than `keep` before `now` (after that
    /// a check says `no_grant` instead of `expired` or `revoked`), and the
    /// action sets no grant it keeps uses. Returns how many grants it
    /// forgot.
    pub fn prune(&mut self, now: Timestamp, keep: TimeDelta) -> usize {
        (0..Self::PRUNE_PARTS)
            .map(|part| self.prune_part(part, now, keep))
            .sum()
    }

    /// As [`GrantIndex::prune`], in part `part` (modulo
    /// [`GrantIndex::PRUNE_PARTS`]) of the index only: about one
    /// sixty-fourth of its buckets, so that a caller holding the index
    /// while it prunes holds it that much less long. Calling it for every
    /// part in turn prunes the whole index.
    pub fn prune_part(&mut self, part: usize, now: Timestamp, keep: TimeDelta) -> usize {
        let horizon = micros(now - keep);
        let scopes = Scopes {
            heads: &self.head_names,
            hasher: &self.scope_hasher,
        };
        let Some(table) = self.buckets.0.get_mut(part % Self::PRUNE_PARTS) else {
            return 0;
        };
        let mut forgot = 0;
        table.retain(|_, bucket| {
            let before = bucket.len();
            let alive = bucket.retain(scopes, |e| e.not_after_us > horizon);
            forgot += if alive { before - bucket.len() } else { before };
            alive
        });
        self.grants -= forgot;
        // A set only the table holds is no grant's. (A set a clone of the
        // index still uses is dropped at a later prune.)
        self.action_sets.retain(|set| Arc::strong_count(set) > 1);
        forgot
    }

    /// Every grant held, sorted by id: to compare the index with the
    /// database.
    #[must_use]
    pub fn grants(&self) -> Vec<IndexedGrant> {
        let mut out: Vec<IndexedGrant> = Vec::with_capacity(self.grants);
        for (&(principal, subscription), bucket) in self.buckets.iter() {
            let principal = numbered(&self.principal_names, principal)
                .map_or_else(String::new, ToString::to_string);
            let subscription = numbered(&self.subscription_names, subscription)
                .map_or_else(String::new, ToString::to_string);
            bucket.for_each(|e| {
                out.push(IndexedGrant {
                    id: e.id,
                    principal: principal.clone(),
                    scope: {
                        let head = String::from_utf8_lossy(self.scopes().head(e.head));
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
            });
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

    /// A grant of sam's on `scope` (after `/subscriptions/sub-1`), number
    /// `n`, from `from` to `to` hours after t0.
    fn grant_on(n: u64, scope: &str, patterns: &[&str], state: GrantState) -> Grant {
        let mut id = [0u8; 10];
        id[..8].copy_from_slice(&n.to_be_bytes());
        Grant::restore(GrantRecord {
            id: GrantId::from_parts(t0(), id),
            scope: ResourceId::parse(&format!("/subscriptions/sub-1{scope}")).unwrap(),
            actions: ActionSet::parse(patterns).unwrap(),
            not_before: t0(),
            not_after: t0() + TimeDelta::hours(8),
            state,
            ..grant(0, patterns, 8).record().clone()
        })
        .unwrap()
    }

    fn vm(i: u64) -> String {
        format!(
            "/resourceGroups/rg-{}/providers/Microsoft.Compute/virtualMachines/vm-{i}",
            i % 16
        )
    }

    fn revoked() -> GrantState {
        GrantState::Revoked(crate::grant::Revocation {
            by: PrincipalId::parse("alex").unwrap(),
            at: t0(),
            reason: crate::text::Reason::parse("done").unwrap(),
        })
    }

    /// Decides as `check` (or `check_grant` under `only`) does, with the
    /// number of entries read.
    fn decide(
        ix: &GrantIndex,
        resource: &str,
        action: &str,
        hours: i64,
        only: Option<GrantId>,
    ) -> (CheckReason, Option<GrantId>, usize) {
        let mut inspected = 0;
        let out = ix.decide(
            &PrincipalId::parse("sam").unwrap(),
            &ResourceId::parse(&format!("/subscriptions/sub-1{resource}")).unwrap(),
            &Action::parse(action).unwrap(),
            t0() + TimeDelta::hours(hours),
            only,
            &mut inspected,
        );
        (out.reason, out.grant, inspected)
    }

    #[test]
    fn a_decision_reads_a_bounded_number_of_grants_however_many_the_holder_has() {
        // One holder, one subscription (one bucket): an active grant on
        // each of the first 1 000 VMs, then grants revoked or ended on
        // the same VMs (the soak's shape: cycle after cycle of the same
        // operator), 1, 1 000 and 100 000 in all.
        const READ: &str = "Microsoft.Compute/virtualMachines/read";
        const WRITE: &str = "Microsoft.Compute/virtualMachines/write";
        let mut most = 0;
        for total in [1u64, 1_000, 100_000] {
            let mut ix = GrantIndex::new();
            for n in 0..total {
                let state = match n {
                    0..1_000 => GrantState::Active,
                    _ if n % 2 == 0 => revoked(),
                    _ => GrantState::Ended { at: t0() },
                };
                ix.upsert(&grant_on(n, &vm(n % 1_000), &["*/read"], state))
                    .unwrap();
            }
            assert_eq!(ix.len(), usize::try_from(total).unwrap());
            let first = grant_on(0, &vm(0), &["*/read"], GrantState::Active).id;
            let over = if total > 2_000 {
                CheckReason::Revoked
            } else {
                CheckReason::Expired
            };
            let cases = [
                (vm(0), READ, 1, None, CheckReason::Granted),
                (vm(0).to_uppercase(), READ, 1, None, CheckReason::Granted),
                (vm(0), WRITE, 1, None, CheckReason::ActionNotInAccessLevel),
                (
                    format!("{}/extensions/agent", vm(0)),
                    READ,
                    1,
                    None,
                    CheckReason::Granted,
                ),
                // Over: revoked grants on the VM say more than ended ones.
                (vm(0), READ, 9, None, over),
                (vm(0), READ, 1, Some(first), CheckReason::Granted),
                (vm(5_000), READ, 1, None, CheckReason::NoGrant),
                (
                    "/resourceGroups/rg-0".to_owned(),
                    READ,
                    1,
                    None,
                    CheckReason::NoGrant,
                ),
            ];
            for (resource, action, hours, only, expected) in cases {
                let (reason, grant, inspected) = decide(&ix, &resource, action, hours, only);
                assert_eq!(
                    reason, expected,
                    "{total} grants: {resource} {action} at +{hours} h"
                );
                if expected == CheckReason::Granted {
                    assert_eq!(grant, Some(first));
                }
                most = most.max(inspected);
                assert!(
                    inspected <= 3,
                    "{total} grants: {resource} read {inspected} entries"
                );
            }
            // Revoked among the many grants of its VM, a grant says so.
            if total > 1 {
                ix.upsert(&grant_on(2, &vm(2), &["*/read"], revoked()))
                    .unwrap();
                let (reason, _, inspected) = decide(&ix, &vm(2), READ, 1, None);
                assert_eq!(reason, CheckReason::Revoked);
                assert!(inspected <= 3, "{total} grants: read {inspected} entries");
            }
        }
        assert!(most >= 1, "the decisions read the grants they judged");
    }

    #[test]
    fn folding_eight_bytes_at_once_agrees_with_folding_each() {
        // Every byte value in every lane, beside every other in the next.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let text = [a, b, a, b, b, a, 0xff, b'Z'];
                let mut one_by_one = text;
                one_by_one.make_ascii_lowercase();
                assert_eq!(
                    fold_word(u64::from_le_bytes(text)).to_le_bytes(),
                    one_by_one,
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn a_scope_hashes_the_same_from_an_entry_as_from_a_resource_id() {
        let mut ix = GrantIndex::new();
        let scopes = [
            "",
            "/resourceGroups/rg-1",
            &vm(3),
            &format!("{}/extensions/x", vm(3)),
        ];
        for (n, scope) in (0u64..).zip(scopes) {
            ix.upsert(&grant_on(n, scope, &["*"], GrantState::Active))
                .unwrap();
        }
        let heads = ix.scopes();
        ix.buckets.values().for_each(|b| {
            b.for_each(|e| {
                let (hash, depth) = heads.key(e);
                let text = format!(
                    "{}/{}",
                    String::from_utf8_lossy(heads.head(e.head)),
                    String::from_utf8_lossy(e.name.as_bytes())
                );
                // As a resource's id spells it, in any case.
                let text = if depth == 0 {
                    String::new()
                } else {
                    text.to_uppercase()
                };
                let from_text = heads.hash(text.as_bytes());
                assert_eq!(hash, from_text, "{text}");
                assert_eq!(
                    usize::try_from(depth).unwrap(),
                    text.split('/').skip(1).count()
                );
            });
        });
    }

    #[test]
    fn a_bucket_indexed_by_scope_shrinks_back_when_pruned() {
        let mut ix = GrantIndex::new();
        for n in 0..20u64 {
            let mut g = grant_on(n, &vm(n), &["*"], GrantState::Active)
                .record()
                .clone();
            if n >= 2 {
                g.not_after = t0() + TimeDelta::hours(1);
            }
            ix.upsert(&Grant::restore(g).unwrap()).unwrap();
        }
        assert!(matches!(
            ix.buckets.values().next(),
            Some(Bucket::Scoped(_))
        ));
        assert_eq!(
            ix.prune(t0() + TimeDelta::hours(3), TimeDelta::hours(1)),
            18
        );
        assert!(matches!(ix.buckets.values().next(), Some(Bucket::Few(v)) if v.len() == 2));
        assert_eq!(
            decide(&ix, &vm(1), "a/read", 2, None).0,
            CheckReason::Granted
        );
        assert_eq!(
            ix.prune(t0() + TimeDelta::hours(10), TimeDelta::hours(1)),
            2
        );
        assert!(ix.buckets.is_empty());
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
