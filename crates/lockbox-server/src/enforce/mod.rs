//! Enforcement on this node: the grant index `check` answers from, kept
//! exact, and the writer that records every decision.
//!
//! The index ([`GrantIndex`]) is loaded from the database at start-up and
//! kept exact by every grant write: this node's commits are applied as
//! soon as they commit (the store's [`CommitObserver`]), and on PostgreSQL
//! other nodes' commits arrive through `LISTEN/NOTIFY` and are read back
//! from the database. The guarantees:
//!
//! - **This node.** When a revoke (a request's revoke, a case's close, an
//!   emergency grant's revoke) returns, the grant is out of the index and
//!   every check that had already decided `allowed` under it has answered:
//!   the commit waits for them ([`Enforcer::settle`]).
//! - **Other nodes.** A node answers checks only while it is *fresh*: it
//!   has received a heartbeat it sent itself through the database less
//!   than `max_staleness` after *sending* it. PostgreSQL delivers
//!   notifications in commit order, so such a node has applied every
//!   change committed before that heartbeat was sent. Hence no node that
//!   has not applied a revoke allows a check under its grant more than
//!   `max_staleness` after the revoke committed. And the revoke does not
//!   return before every other live node (the `nodes` table, kept by the
//!   heartbeats) has acknowledged a barrier sent after it, or that bound
//!   has passed (`Enforcer::propagate`): so when it returns, no node
//!   allows a check under the grant. A node that loses its listening
//!   connection, or cannot read a change back, stops answering (`503
//!   enforcement_unavailable`) until it has reloaded the index from the
//!   database. The argument in full is in `docs/ENFORCEMENT.md`.
//! - **Time.** The clock is read at check time: a grant past its end never
//!   allows, whether or not the sweeper has recorded the end.

pub mod audit_writer;
pub mod gateway;
mod grace;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_core::{
    Action, CheckOutcome, Grant, GrantId, GrantIndex, IndexFull, PrincipalId, ResourceId, Timestamp,
};
use lockbox_store::{
    AckListener, Change, ChangeListener, ChangeRef, CommitObserver, Notice, Settle, Store,
    StoreError, WeakStore,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::service::{Refusal, ServiceError};
use gateway::GatewayTokens;

/// How long the index remembers a grant after its end, so that a check
/// says `expired` or `revoked` rather than `no_grant`.
pub const KEEP_ENDED: TimeDelta = TimeDelta::hours(1);

/// How often the index forgets grants long over: one part of it
/// ([`GrantIndex::PRUNE_PARTS`]) at each tick, so that the whole is walked
/// about once a minute and the write lock is never held for long (pruning
/// a million grants at once held it for 20–30 ms).
const PRUNE_EVERY: Duration = Duration::from_millis(60_000 / GrantIndex::PRUNE_PARTS as u64);

/// Acknowledgements waiting to be sent; beyond this many, barriers go
/// unacknowledged (their nodes wait out `max_staleness`).
const ACK_QUEUE: usize = 4096;

/// Acknowledgements sent in one notification at most.
const ACK_BATCH: usize = 128;

/// Tuning of enforcement (`[enforcement]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct EnforcementOptions {
    /// How often a PostgreSQL node sends itself a heartbeat through the
    /// database.
    pub heartbeat_interval: Duration,
    /// How long after sending a heartbeat (that it has received) a node
    /// answers checks; and how long at most, after a commit, a change that
    /// narrowed access waits for the other nodes to acknowledge it.
    pub max_staleness: Duration,
}

impl Default for EnforcementOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
            max_staleness: Duration::from_millis(1000),
        }
    }
}

/// A barrier this node sent, waiting for the other nodes' acknowledgements.
#[derive(Debug)]
struct Waiting {
    acked: HashSet<String>,
    arrived: Arc<Notify>,
}

#[derive(Debug, Default)]
struct SyncState {
    /// A reload is under way: changes applied meanwhile are also kept here,
    /// to be applied again to the reloaded index.
    resyncing: bool,
    pending: Vec<Change>,
}

/// A check's decision, and the hold it keeps on revokes: while it lives, a
/// revoke on this node does not return, so no answer leaves under a grant
/// whose revoke has returned.
#[derive(Debug)]
#[must_use = "the decision is to be answered, then dropped"]
pub struct Decided<'a> {
    /// What the index says.
    pub outcome: CheckOutcome,
    _settle: grace::Hold<'a>,
}

impl Decided<'_> {
    /// The decision, releasing the hold: call it once the answer is
    /// recorded, just before it leaves.
    pub fn settle(self) -> CheckOutcome {
        self.outcome
    }
}

/// This node's enforcement state.
#[derive(Debug)]
pub struct Enforcer {
    index: RwLock<GrantIndex>,
    sync: Mutex<SyncState>,
    /// The index has been loaded and nothing since has put it in doubt.
    ready: AtomicBool,
    /// PostgreSQL: the index is fresh until this many milliseconds after
    /// `epoch`. Unused on SQLite, where this node is the only writer.
    fresh_until_ms: AtomicU64,
    /// Other nodes may write the database (PostgreSQL): the index is
    /// trusted only while heartbeats keep it fresh, and narrowing commits
    /// wait for the other nodes. False on SQLite.
    needs_heartbeat: bool,
    epoch: Instant,
    options: EnforcementOptions,
    /// A check holds this from its decision to its answer; a commit that
    /// narrowed access waits for the holds taken before it.
    settle: grace::Grace,
    /// Wakes the sync task to reload the index.
    resync: Notify,
    /// A random name for this node's heartbeats, barriers and its row in
    /// the `nodes` table.
    node: String,
    /// This node has left the database's nodes for good (it is stopping):
    /// it answers no more checks.
    left: AtomicBool,
    /// [`start`] has begun: the store's commits are applied to the index
    /// from then on (before, the index is loaded whole when it starts).
    observing: AtomicBool,
    /// Barriers this node sent, by number.
    waiting: Mutex<HashMap<u64, Waiting>>,
    next_barrier: AtomicU64,
    /// Whether narrowing commits wait for the other nodes (off only to
    /// measure what the wait costs).
    awaits_nodes: AtomicBool,
    /// Barriers of other nodes this node has applied, to acknowledge.
    acks: mpsc::Sender<(String, u64)>,
    /// Their receiving end, until [`start`] runs the sender.
    acks_queue: Mutex<Option<mpsc::Receiver<(String, u64)>>>,
    /// Gateways' API tokens, cached for `check`.
    pub(crate) gateways: GatewayTokens,
}

/// Why a node does not answer checks right now.
fn unavailable(detail: &str) -> ServiceError {
    ServiceError::refused(Refusal::EnforcementUnavailable, detail)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Enforcer {
    /// A node's enforcer (`needs_heartbeat` when other nodes may write the
    /// database); empty and not ready until [`Enforcer::start`] has loaded
    /// it.
    pub(crate) fn new(
        needs_heartbeat: bool,
        options: EnforcementOptions,
    ) -> Result<Self, ServiceError> {
        let (acks, acks_queue) = mpsc::channel(ACK_QUEUE);
        Ok(Self {
            index: RwLock::new(GrantIndex::new()),
            sync: Mutex::new(SyncState::default()),
            ready: AtomicBool::new(false),
            fresh_until_ms: AtomicU64::new(0),
            needs_heartbeat,
            epoch: Instant::now(),
            options,
            settle: grace::Grace::default(),
            resync: Notify::new(),
            node: hex::encode(lockbox_core::id::random_bytes::<8>()?),
            left: AtomicBool::new(false),
            observing: AtomicBool::new(false),
            waiting: Mutex::new(HashMap::new()),
            next_barrier: AtomicU64::new(1),
            awaits_nodes: AtomicBool::new(true),
            acks,
            acks_queue: Mutex::new(Some(acks_queue)),
            gateways: GatewayTokens::default(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this node answers checks now: loaded, not stopping, and
    /// (on PostgreSQL) fresh.
    #[must_use]
    pub fn is_serving(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.left.load(Ordering::Acquire)
            && (!self.needs_heartbeat
                || self.elapsed_ms() < self.fresh_until_ms.load(Ordering::Acquire))
    }

    /// Decides one check from the index. The answer holds back revokes on
    /// this node until it is dropped: drop it once the caller has answered.
    pub async fn decide(
        &self,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> Result<Decided<'_>, ServiceError> {
        self.decide_under(principal, None, resource, action, now)
            .await
    }

    /// As [`Enforcer::decide`], under the one grant `only` when given (what
    /// an access token for that grant may do).
    pub async fn decide_under(
        &self,
        principal: &PrincipalId,
        only: Option<GrantId>,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> Result<Decided<'_>, ServiceError> {
        let guard = self.settle.hold();
        if !self.is_serving() {
            return Err(unavailable(
                "this node is reloading its grant index or has lost touch with the database; retry shortly",
            ));
        }
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let outcome = match only {
            None => index.check(principal, resource, action, now),
            Some(grant) => index.check_grant(principal, grant, resource, action, now),
        };
        drop(index);
        Ok(Decided {
            outcome,
            _settle: guard,
        })
    }

    /// Whether the index knows `principal` as an operator (one who can
    /// hold grants).
    #[must_use]
    pub fn knows(&self, principal: &PrincipalId) -> bool {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .knows(principal)
    }

    /// A copy of the index as it is, whether or not this node is serving
    /// (for tests comparing the index with the database).
    #[must_use]
    pub fn snapshot(&self) -> GrantIndex {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies changes to the index (and to the reload in progress, if
    /// any). Returns whether access may have narrowed (a grant revoked or
    /// ended, a token revoked), in which case the caller should
    /// [`Enforcer::settle`] before reporting the change done.
    pub(crate) fn apply(&self, changes: &[Change]) -> bool {
        let mut sync = lock(&self.sync);
        if sync.resyncing {
            sync.pending.extend(changes.iter().cloned());
        }
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut narrowed = false;
        for change in changes {
            let applied = match change {
                // Narrowed: a grant this index allowed by allows no more (a
                // change already applied, such as this node's own heard
                // back from the feed, narrows nothing).
                Change::Grant(grant) => index.upsert(grant).map(|n| narrowed |= n),
                Change::Principal(id) => index.add_principal(id.clone()),
                Change::Subscription(id, tenant) => {
                    index.add_subscription(id.clone(), tenant.clone())
                }
                Change::TokenRevoked(id) => {
                    self.gateways.forget(id);
                    narrowed = true;
                    Ok(())
                }
            };
            if let Err(full) = applied {
                // The index lacks a change: it must not answer any more.
                tracing::error!(error = %full, "the grant index is full; this node refuses checks");
                self.ready.store(false, Ordering::Release);
            }
        }
        narrowed
    }

    /// Waits until every check that decided before now has answered
    /// (checks deciding meanwhile are neither waited for nor held back).
    pub async fn settle(&self) {
        self.settle.wait().await;
    }

    /// Reloads the index from the database. Changes committed meanwhile
    /// (on this node) are applied to the reloaded index too.
    pub(crate) async fn resync(&self, store: &Store, now: Timestamp) -> Result<(), StoreError> {
        {
            let mut sync = lock(&self.sync);
            sync.resyncing = true;
            sync.pending.clear();
        }
        let loaded = load(store, now).await;
        let mut sync = lock(&self.sync);
        sync.resyncing = false;
        let pending = std::mem::take(&mut sync.pending);
        let mut index = match loaded {
            Ok(index) => index,
            Err(e) => {
                self.ready.store(false, Ordering::Release);
                return Err(e);
            }
        };
        for change in &pending {
            let applied = match change {
                Change::Grant(grant) => index.upsert(grant).map(drop),
                Change::Principal(id) => index.add_principal(id.clone()),
                Change::Subscription(id, tenant) => {
                    index.add_subscription(id.clone(), tenant.clone())
                }
                Change::TokenRevoked(_) => Ok(()),
            };
            if let Err(full) = applied {
                self.ready.store(false, Ordering::Release);
                return Err(index_full(full));
            }
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
        drop(sync);
        self.gateways.clear();
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Marks the index doubtful (checks fail closed) and asks the sync task
    /// to reload it.
    pub(crate) fn request_resync(&self) {
        self.ready.store(false, Ordering::Release);
        self.resync.notify_one();
    }

    /// Waits until every other live node has applied every change this
    /// node committed before the call, or until `max_staleness` after
    /// `committed` (the instant the commit returned), whichever comes
    /// first. Nothing to wait for on SQLite.
    ///
    /// Sends a barrier through the change feed, reading in the same
    /// statement the nodes live now, and waits for each of them to
    /// acknowledge it. A node that has not by the deadline has not applied
    /// the change or has not said so in time: if it has not applied it, it
    /// has heard no heartbeat of its own sent after the commit, so it is no
    /// longer fresh and refuses checks. If the barrier cannot be sent, the
    /// whole bound is waited out. Every commit that narrowed access on
    /// this node calls this before returning (the store's observer).
    pub(crate) async fn propagate(&self, store: &Store, committed: Instant) {
        if !self.needs_heartbeat || !self.awaits_nodes.load(Ordering::Acquire) {
            return;
        }
        let mut deadline = committed + self.options.max_staleness;
        let seq = self.next_barrier.fetch_add(1, Ordering::Relaxed);
        let arrived = Arc::new(Notify::new());
        lock(&self.waiting).insert(
            seq,
            Waiting {
                acked: HashSet::new(),
                arrived: Arc::clone(&arrived),
            },
        );
        let _forget = Forget(self, seq);
        let live =
            match tokio::time::timeout_at(deadline.into(), store.barrier(&self.node, seq)).await {
                Ok(Ok(live)) => live,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot send a barrier; waiting out max_staleness");
                    tokio::time::sleep_until(deadline.into()).await;
                    return;
                }
                Err(_) => return,
            };
        // A node configured with a longer bound stays fresh longer.
        for node in &live {
            deadline = deadline.max(committed + node.max_staleness);
        }
        loop {
            let next = arrived.notified();
            let missing: Vec<&str> = {
                let waiting = lock(&self.waiting);
                let acked = waiting.get(&seq).map(|w| &w.acked);
                live.iter()
                    .filter(|n| acked.is_none_or(|a| !a.contains(&n.id)))
                    .map(|n| n.id.as_str())
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), next)
                .await
                .is_err()
            {
                tracing::info!(
                    nodes = ?missing,
                    "nodes did not acknowledge a change within max_staleness; they no longer answer checks unless they have applied it"
                );
                return;
            }
        }
    }

    /// Whether commits that narrow access wait for the other nodes
    /// (`Enforcer::propagate`). On by default; turning it off breaks the
    /// guarantee across nodes, and is only for measuring what the wait
    /// costs (the `propagation` benchmark).
    pub fn set_awaits_nodes(&self, on: bool) {
        self.awaits_nodes.store(on, Ordering::Release);
    }

    /// Acknowledgements heard: those of this node's barriers count.
    fn heard_acks(&self, acks: &[lockbox_store::Ack]) {
        let mut waiting = lock(&self.waiting);
        for ack in acks {
            if ack.origin != self.node {
                continue;
            }
            if let Some(w) = waiting.get_mut(&ack.seq) {
                w.acked.insert(ack.node.clone());
                w.arrived.notify_one();
            }
        }
    }

    /// Another node's barrier, heard after everything before it was
    /// applied: acknowledge it.
    fn heard_barrier(&self, text: &str) {
        let Some((node, seq)) = text.split_once(' ') else {
            return;
        };
        if node == self.node {
            return;
        }
        let Ok(seq) = seq.parse::<u64>() else {
            return;
        };
        if self.acks.try_send((node.to_owned(), seq)).is_err() {
            tracing::warn!("too many acknowledgements queued; a barrier goes unacknowledged");
        }
    }

    /// Stops answering checks for good, waits for the checks deciding now,
    /// and removes this node from the database's nodes, so that other
    /// nodes' revokes stop waiting for it.
    async fn leave(&self, store: &Store) {
        self.left.store(true, Ordering::Release);
        self.settle().await;
        if let Err(e) = store.leave(&self.node).await {
            tracing::warn!(error = %e, "cannot remove this node from the nodes table; it ages out");
        }
    }

    fn heard_heartbeat(&self, text: &str) {
        let Some((node, sent)) = text.split_once(' ') else {
            return;
        };
        if node != self.node {
            return;
        }
        if let Ok(sent_ms) = sent.parse::<u64>() {
            let staleness = u64::try_from(self.options.max_staleness.as_millis()).unwrap_or(0);
            self.fresh_until_ms
                .fetch_max(sent_ms.saturating_add(staleness), Ordering::AcqRel);
        }
    }

    /// How many grants the index holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the index holds no grant.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (up to `timeout`) until this node answers checks.
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_serving() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// Forgets a barrier when its wait ends (or is abandoned).
struct Forget<'a>(&'a Enforcer, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.0.waiting).remove(&self.1);
    }
}

/// Grants read at a time while the index loads.
const LOAD_PAGE: u32 = 4096;

/// An index that cannot hold what the database has: the node does not
/// answer checks (and says why in its log).
fn index_full(full: IndexFull) -> StoreError {
    StoreError::Backend(full.to_string())
}

/// Builds an index from the database.
pub async fn load(store: &Store, now: Timestamp) -> Result<GrantIndex, StoreError> {
    let mut tx = store.read_for_sync().await?;
    let mut index = GrantIndex::new();
    for id in tx.operator_ids().await? {
        index.add_principal(id).map_err(index_full)?;
    }
    for (subscription, tenant) in tx.subscription_owners().await? {
        index
            .add_subscription(subscription, tenant)
            .map_err(index_full)?;
    }
    // Page by page, so the grants never all sit in memory beside the
    // index; and the next page is read and decoded (another task) while
    // this one goes into the index.
    let since = now - KEEP_ENDED;
    let (pages, mut arriving) = tokio::sync::mpsc::channel::<Vec<Grant>>(2);
    let reader = tokio::spawn(async move {
        let mut after: Option<String> = None;
        loop {
            let page = tx
                .grants_ending_after(since, after.as_deref(), LOAD_PAGE)
                .await?;
            if pages.send(page.items).await.is_err() {
                break;
            }
            match page.next_cursor {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tx.commit_unaudited().await
    });
    while let Some(page) = arriving.recv().await {
        for grant in &page {
            index.upsert(grant).map_err(index_full)?;
        }
    }
    reader
        .await
        .map_err(|e| StoreError::Backend(format!("the index loader stopped: {e}")))??;
    Ok(index)
}

/// The store's view of the enforcer, given to the store when the server
/// is made ([`observer`]): once enforcement has started, every commit is
/// applied, and a commit that narrowed access settles on this node and
/// then waits for the other nodes ([`Enforcer::propagate`]) before it
/// returns. Every caller that narrows access (a request's revoke, an
/// emergency grant's revoke, a case's close, a token's revocation, the
/// sweeper's recorded ends) gets this without asking.
struct Observer {
    enforcer: Arc<Enforcer>,
    /// Weak: the store holds this observer.
    store: WeakStore,
}

/// The commit observer of `enforcer` for the store `store` is a handle on.
pub(crate) fn observer(enforcer: &Arc<Enforcer>, store: WeakStore) -> Arc<dyn CommitObserver> {
    Arc::new(Observer {
        enforcer: Arc::clone(enforcer),
        store,
    })
}

impl CommitObserver for Observer {
    fn committed(&self, changes: Vec<Change>) -> Settle {
        if !self.enforcer.observing.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(()));
        }
        let committed = Instant::now();
        let enforcer = Arc::clone(&self.enforcer);
        let store = self.store.clone();
        // The index may have heard this commit back from the feed already
        // (so applying it again narrows nothing here): what matters is
        // whether the change narrows access at all.
        let narrowed = enforcer.apply(&changes) | changes.iter().any(Change::narrows);
        Box::pin(async move {
            if narrowed {
                enforcer.settle().await;
                if let Some(store) = store.upgrade() {
                    enforcer.propagate(&store, committed).await;
                }
            }
        })
    }

    fn unsure(&self) {
        if self.enforcer.observing.load(Ordering::Acquire) {
            self.enforcer.request_resync();
        }
    }
}

/// Starts enforcement: applies the store's commits from now on, listens (PostgreSQL)
/// before loading so that nothing falls between the two, loads the index,
/// and spawns the tasks that keep it exact until `stop`.
pub(crate) async fn start(
    enforcer: &Arc<Enforcer>,
    store: &Store,
    clock: Arc<dyn lockbox_core::Clock>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    enforcer.observing.store(true, Ordering::Release);
    let acks = store.listen_acks().await?;
    let listener = store.listen().await?;
    enforcer.resync(store, clock.now()).await?;
    let mut tasks = Vec::new();
    if let Some(acks) = acks {
        tasks.push(dedicated(hear_acks(
            Arc::clone(enforcer),
            acks,
            stop.clone(),
        )));
    }
    let queue = lock(&enforcer.acks_queue).take();
    if let (Some(queue), Some(_)) = (queue, &listener) {
        tasks.push(dedicated(send_acks(
            Arc::clone(enforcer),
            store.clone(),
            queue,
            stop.clone(),
        )));
    }
    if listener.is_some() {
        tasks.push(dedicated(heartbeat(
            Arc::clone(enforcer),
            store.clone(),
            stop.clone(),
        )));
    }
    tasks.push(dedicated(sync_task(
        Arc::clone(enforcer),
        store.clone(),
        clock,
        listener,
        stop,
    )));
    Ok(tasks)
}

/// Runs `work` on a thread of its own (from the runtime's blocking pool,
/// polled there by `block_on`) rather than as one task among the many
/// serving requests: under load its wake-ups would otherwise wait behind
/// them, and the heartbeat, the change feed and the audit writer are what
/// every check waits on.
pub(crate) fn dedicated<F>(work: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work))
}

/// Sends this node's heartbeats (which also keep its row in the `nodes`
/// table) until `stop`, then leaves the table. Each carries the moment it
/// was sent: freshness counts from then, not from its arrival.
async fn heartbeat(enforcer: Arc<Enforcer>, store: Store, mut stop: watch::Receiver<bool>) {
    if let Err(e) = store.forget_departed_nodes().await {
        tracing::debug!(error = %e, "cannot forget departed nodes");
    }
    let mut tick = tokio::time::interval(enforcer.options.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                enforcer.leave(&store).await;
                return;
            }
            _ = tick.tick() => {
                let text = format!("{} {}", enforcer.node, enforcer.elapsed_ms());
                if let Err(e) = store
                    .heartbeat(&enforcer.node, &text, enforcer.options.max_staleness)
                    .await
                {
                    tracing::warn!(error = %e, "cannot send the enforcement heartbeat");
                }
            }
        }
    }
}

/// Hears the other nodes' acknowledgements of this node's barriers until
/// `stop`. Acknowledgements missed while the connection is down only make
/// revokes wait out their bound.
async fn hear_acks(
    enforcer: Arc<Enforcer>,
    mut acks: AckListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            heard = acks.next() => match heard {
                Ok(acks) => enforcer.heard_acks(&acks),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the acknowledgement channel; reconnecting");
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            },
        }
    }
}

/// Sends this node's acknowledgements of other nodes' barriers, as many
/// as are queued in one notification, until `stop`.
async fn send_acks(
    enforcer: Arc<Enforcer>,
    store: Store,
    mut queue: mpsc::Receiver<(String, u64)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return,
            first = queue.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < ACK_BATCH
            && let Ok(more) = queue.try_recv()
        {
            batch.push(more);
        }
        if let Err(e) = store.acknowledge(&enforcer.node, &batch).await {
            tracing::warn!(error = %e, "cannot send acknowledgements");
        }
        batch.clear();
    }
}

/// Reads back what other nodes changed and applies it; `false` when the
/// database could not be read (the caller reloads everything).
async fn apply_refs(enforcer: &Enforcer, store: &Store, refs: Vec<ChangeRef>) -> bool {
    // Read every grant named in one go (their state now, which is at
    // least as far along as each notice: states only move forward), then
    // apply the notices in order.
    let mut grant_ids: Vec<GrantId> = refs
        .iter()
        .filter_map(|r| match r {
            ChangeRef::Grant(id) => Some(*id),
            _ => None,
        })
        .collect();
    grant_ids.sort_unstable();
    grant_ids.dedup();
    let needs_db =
        !grant_ids.is_empty() || refs.iter().any(|r| matches!(r, ChangeRef::Subscription(_)));
    let mut tx = None;
    if needs_db {
        match store.read_for_sync().await {
            Ok(t) => tx = Some(t),
            Err(_) => return false,
        }
    }
    let mut grants: HashMap<GrantId, Grant> = HashMap::new();
    if let Some(tx) = tx.as_mut() {
        match tx.grants_by_id(&grant_ids).await {
            Ok(read) => grants.extend(read.into_iter().map(|g| (g.id, g))),
            Err(_) => return false,
        }
    }
    let mut changes = Vec::new();
    for r in refs {
        let result = match (r, tx.as_mut()) {
            (ChangeRef::Grant(id), _) => Ok(grants.remove(&id).map(Change::Grant)),
            (ChangeRef::Subscription(id), Some(tx)) => tx
                .subscription_tenant(&id)
                .await
                .map(|t| t.map(|t| Change::Subscription(id, t))),
            (ChangeRef::Principal(id), _) => Ok(Some(Change::Principal(id))),
            (ChangeRef::TokenRevoked(id), _) => Ok(Some(Change::TokenRevoked(id))),
            (ChangeRef::Heartbeat(text), _) => {
                // Everything before it is applied first: order matters.
                if !changes.is_empty() && enforcer.apply(&std::mem::take(&mut changes)) {
                    enforcer.settle().await;
                }
                enforcer.heard_heartbeat(&text);
                Ok(None)
            }
            (ChangeRef::Barrier(text), _) => {
                // Acknowledged only once everything before it is applied
                // and settled.
                if !changes.is_empty() && enforcer.apply(&std::mem::take(&mut changes)) {
                    enforcer.settle().await;
                }
                enforcer.heard_barrier(&text);
                Ok(None)
            }
            (ChangeRef::Subscription(_), None) => Ok(None),
        };
        match result {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            Err(_) => return false,
        }
    }
    if let Some(tx) = tx
        && tx.commit_unaudited().await.is_err()
    {
        return false;
    }
    if !changes.is_empty() && enforcer.apply(&changes) {
        enforcer.settle().await;
    }
    true
}

/// Keeps the index exact until `stop`: applies notifications, reloads
/// after a loss or on request, forgets grants long over.
async fn sync_task(
    enforcer: Arc<Enforcer>,
    store: Store,
    clock: Arc<dyn lockbox_core::Clock>,
    mut listener: Option<ChangeListener>,
    mut stop: watch::Receiver<bool>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut part = 0;
    let mut retry = Duration::from_millis(50);
    loop {
        let notice = async {
            match listener.as_mut() {
                Some(l) => l.next().await,
                None => std::future::pending().await,
            }
        };
        let needs_reload = tokio::select! {
            _ = stop.changed() => return,
            _ = prune.tick() => {
                let removed = enforcer
                    .index
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .prune_part(part, clock.now(), KEEP_ENDED);
                if removed > 0 {
                    tracing::debug!(removed, part, "pruned the grant index");
                }
                part = (part + 1) % GrantIndex::PRUNE_PARTS;
                false
            }
            () = enforcer.resync.notified() => true,
            notice = notice => match notice {
                Notice::Changes(refs) => !apply_refs(&enforcer, &store, refs).await,
                Notice::Lost(why) => {
                    tracing::warn!(%why, "lost the change feed; reloading the grant index");
                    true
                }
            },
        };
        if needs_reload {
            enforcer.ready.store(false, Ordering::Release);
            loop {
                match enforcer.resync(&store, clock.now()).await {
                    Ok(()) => {
                        retry = Duration::from_millis(50);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reload the grant index; retrying");
                        tokio::select! {
                            _ = stop.changed() => return,
                            () = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::info!(grants = enforcer.len(), "grant index reloaded");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A revoke waits for the checks that decided before it, and a check
    /// that begins while it waits is neither held back nor waited for. (A
    /// reader-writer lock once stopped every new check behind a waiting
    /// revoke until the checks before it had recorded their decisions:
    /// about one audit commit per revoke, for every check.)
    #[tokio::test]
    async fn a_check_is_not_held_back_by_a_revoke_waiting_for_earlier_checks() {
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};
        fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
            matches!(
                f.poll(&mut Context::from_waker(Waker::noop())),
                Poll::Ready(_)
            )
        }
        let enforcer = Enforcer::new(false, EnforcementOptions::default()).unwrap();
        enforcer.ready.store(true, Ordering::Release);
        let who = PrincipalId::parse("sam").unwrap();
        let vm = ResourceId::parse(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/\
             providers/Microsoft.Compute/virtualMachines/vm1",
        )
        .unwrap();
        let read = Action::parse("Microsoft.Compute/virtualMachines/read").unwrap();
        let now = Timestamp::from_timestamp(1_800_000_000, 0).unwrap();

        let earlier = enforcer.decide(&who, &vm, &read, now).await.unwrap();
        let mut revoke = pin!(enforcer.settle());
        assert!(
            !ready(revoke.as_mut()),
            "a check decided before is still answering"
        );

        let mut later = pin!(enforcer.decide(&who, &vm, &read, now));
        let later = match later.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(decided) => decided.unwrap(),
            Poll::Pending => panic!("a check waited for a revoke"),
        };
        assert!(!ready(revoke.as_mut()));
        let _ = earlier.settle();
        assert!(
            ready(revoke.as_mut()),
            "the revoke waited for a later check"
        );
        let _ = later.settle();
    }

    /// Freshness counts from when a heartbeat was sent, not from when it
    /// arrived: a node whose heartbeat took longer than `max_staleness` to
    /// come back is stale. That a revoke is seen everywhere when it
    /// returns rests on this (`docs/ENFORCEMENT.md`).
    #[test]
    fn freshness_counts_from_when_the_heartbeat_was_sent() {
        let options = EnforcementOptions {
            heartbeat_interval: Duration::from_millis(10),
            max_staleness: Duration::from_millis(50),
        };
        let enforcer = Enforcer::new(true, options).unwrap();
        enforcer.ready.store(true, Ordering::Release);
        assert!(!enforcer.is_serving(), "no heartbeat heard yet");

        let sent = enforcer.elapsed_ms();
        std::thread::sleep(Duration::from_millis(60));
        enforcer.heard_heartbeat(&format!("{} {sent}", enforcer.node));
        assert!(
            !enforcer.is_serving(),
            "sent 60 ms ago: stale, however recently it arrived"
        );
        enforcer.heard_heartbeat(&format!("0123456789abcdef {}", enforcer.elapsed_ms()));
        assert!(
            !enforcer.is_serving(),
            "another node's heartbeat says nothing about this one"
        );

        enforcer.heard_heartbeat(&format!("{} {}", enforcer.node, enforcer.elapsed_ms()));
        assert!(enforcer.is_serving());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!enforcer.is_serving(), "stale max_staleness after sending");

        enforcer.heard_heartbeat(&format!("{} {}", enforcer.node, enforcer.elapsed_ms()));
        assert!(enforcer.is_serving());
        enforcer.left.store(true, Ordering::Release);
        assert!(!enforcer.is_serving(), "a node that left answers no more");
    }
}
