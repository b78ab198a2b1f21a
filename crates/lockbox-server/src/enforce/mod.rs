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
//!   has received, within `max_staleness`, a heartbeat it sent itself
//!   through the database. PostgreSQL delivers notifications in commit
//!   order, so such a node has applied every change committed before that
//!   heartbeat was sent. Hence no node allows a check under a grant more
//!   than `max_staleness` after the revoke committed; in practice the delay
//!   is the notification's round trip (see `BENCHMARKS.md`). A node that
//!   loses its listening connection, or cannot read a change back, stops
//!   answering (`503 enforcement_unavailable`) until it has reloaded the
//!   index from the database.
//! - **Time.** The clock is read at check time: a grant past its end never
//!   allows, whether or not the sweeper has recorded the end.

pub mod audit_writer;
pub mod gateway;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lockbox_core::{
    Action, CheckOutcome, Grant, GrantId, GrantIndex, IndexFull, PrincipalId, ResourceId, Timestamp,
};
use lockbox_store::{
    Change, ChangeListener, ChangeRef, CommitObserver, Directory as _, Notice, Requests as _,
    Settle, Store, StoreError,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use gateway::GatewayTokens;

/// How long the index remembers a grant after its end, so that a check
/// says `expired` or `revoked` rather than `no_grant`.
pub const KEEP_ENDED: TimeDelta = TimeDelta::hours(1);

/// How often the index forgets grants long over.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Tuning of enforcement (`[enforcement]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct EnforcementOptions {
    /// How often a PostgreSQL node sends itself a heartbeat through the
    /// database.
    pub heartbeat_interval: Duration,
    /// How old the last heartbeat received may be before the node stops
    /// answering checks.
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

#[derive(Debug, Default)]
struct SyncState {
    /// A reload is under way: changes applied meanwhile are also kept here,
    /// to be applied again to the reloaded index.
    resyncing: bool,
    pending: Vec<Change>,
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
    needs_heartbeat: bool,
    epoch: Instant,
    options: EnforcementOptions,
    /// A check holds this shared from its decision to its answer; a commit
    /// that narrowed access takes it exclusively before returning.
    settle: tokio::sync::RwLock<()>,
    /// Wakes the sync task to reload the index.
    resync: Notify,
    /// A random name for this node's heartbeats.
    node: String,
    /// Gateways' API tokens, cached for `check`.
    pub(crate) gateways: GatewayTokens,
}

/// Why a node does not answer checks right now.
fn unavailable(detail: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "enforcement_unavailable",
        detail.to_owned(),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Enforcer {
    /// A node's enforcer over a database of `backend`; empty and not ready
    /// until [`Enforcer::start`] has loaded it.
    pub(crate) fn new(
        needs_heartbeat: bool,
        options: EnforcementOptions,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            index: RwLock::new(GrantIndex::new()),
            sync: Mutex::new(SyncState::default()),
            ready: AtomicBool::new(false),
            fresh_until_ms: AtomicU64::new(0),
            needs_heartbeat,
            epoch: Instant::now(),
            options,
            settle: tokio::sync::RwLock::new(()),
            resync: Notify::new(),
            node: hex::encode(lockbox_core::id::random_bytes::<8>()?),
            gateways: GatewayTokens::default(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this node answers checks now: loaded, and (on PostgreSQL)
    /// fresh.
    #[must_use]
    pub fn is_serving(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && (!self.needs_heartbeat
                || self.elapsed_ms() < self.fresh_until_ms.load(Ordering::Acquire))
    }

    /// Decides one check from the index. The returned guard keeps revokes
    /// on this node from returning until the caller has answered.
    pub async fn decide(
        &self,
        principal: &PrincipalId,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> Result<(CheckOutcome, tokio::sync::RwLockReadGuard<'_, ()>), ApiError> {
        let guard = self.settle.read().await;
        if !self.is_serving() {
            return Err(unavailable(
                "this node is reloading its grant index or has lost touch with the database; retry shortly",
            ));
        }
        let outcome = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .check(principal, resource, action, now);
        Ok((outcome, guard))
    }

    /// Decides from the index alone, without the guard or the freshness
    /// check (for tests comparing the index with the database).
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

    /// Waits until every check that decided before now has answered.
    pub async fn settle(&self) {
        drop(self.settle.write().await);
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
    for id in tx.principal_ids().await? {
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

/// The store's view of the enforcer: every commit is applied, and a commit
/// that narrowed access settles before it returns.
struct Observer(Arc<Enforcer>);

impl CommitObserver for Observer {
    fn committed(&self, changes: Vec<Change>) -> Settle {
        let enforcer = Arc::clone(&self.0);
        let narrowed = enforcer.apply(&changes);
        Box::pin(async move {
            if narrowed {
                enforcer.settle().await;
            }
        })
    }

    fn unsure(&self) {
        self.0.request_resync();
    }
}

/// Starts enforcement: observes the store's commits, listens (PostgreSQL)
/// before loading so that nothing falls between the two, loads the index,
/// and spawns the tasks that keep it exact until `stop`.
pub(crate) async fn start(
    enforcer: &Arc<Enforcer>,
    store: &Store,
    clock: Arc<dyn lockbox_core::Clock>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ApiError> {
    store.observe(Arc::new(Observer(Arc::clone(enforcer))));
    let listener = store.listen().await?;
    enforcer.resync(store, clock.now()).await?;
    let mut tasks = Vec::new();
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

async fn heartbeat(enforcer: Arc<Enforcer>, store: Store, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(enforcer.options.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let text = format!("{} {}", enforcer.node, enforcer.elapsed_ms());
                if let Err(e) = store.heartbeat(&text).await {
                    tracing::warn!(error = %e, "cannot send the enforcement heartbeat");
                }
            }
        }
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
                    .prune(clock.now(), KEEP_ENDED);
                tracing::debug!(removed, "pruned the grant index");
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
