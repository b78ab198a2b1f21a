//! Transactions, locked rows, and the commit that seals audit events.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lockbox_core::{AuditEvent, Chain, ChainHead, Digest, PendingEvent};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Transaction};

use crate::Backend;
use crate::audit::{chain_key, insert_events};
use crate::changes::{CHANNEL, Change, ChangeRef, CommitObserver, payloads};
use crate::codec::RowExt as _;
use crate::error::{StoreError, classify};

/// A value read with a lock on its row, for a read-modify-write: it
/// remembers what was read, so saving an unchanged value writes nothing.
///
/// Only a write transaction's `lock_*` makes one, and only that same
/// transaction can save it (each is stamped with its transaction), so a
/// value can only be saved while its row's lock is held.
#[derive(Debug)]
pub struct Locked<T> {
    original: T,
    current: T,
    tx: u64,
}

impl<T> Locked<T> {
    /// The value as it was read.
    pub fn original(&self) -> &T {
        &self.original
    }

    /// The value as it is now.
    pub fn into_inner(self) -> T {
        self.current
    }
}

impl<T> Deref for Locked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.current
    }
}

impl<T> DerefMut for Locked<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.current
    }
}

/// Transaction numbers, to tie each [`Locked`] to its transaction.
static NEXT_TX: AtomicU64 = AtomicU64::new(1);

/// A database transaction. Dropping it without committing rolls it back.
pub struct Tx {
    tx: Transaction<'static, Any>,
    id: u64,
    backend: Backend,
    writable: bool,
    /// Whether a write that must be audited has happened.
    changed: bool,
    /// Whether a statement failed: the transaction can no longer commit
    /// (PostgreSQL has aborted it; on SQLite it may hold partial writes).
    failed: bool,
    /// What this transaction changed that nodes keep in memory.
    changes: Vec<Change>,
    /// Told about the changes once committed.
    observer: Option<Arc<dyn CommitObserver>>,
    /// Plans what the sealed events cause, before the commit.
    planner: Option<Arc<dyn crate::CommitPlanner>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("id", &self.id)
            .field("backend", &self.backend)
            .field("writable", &self.writable)
            .field("changed", &self.changed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

impl Tx {
    pub(crate) fn new(
        tx: Transaction<'static, Any>,
        backend: Backend,
        writable: bool,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Self {
        Self {
            tx,
            id: NEXT_TX.fetch_add(1, Ordering::Relaxed),
            backend,
            writable,
            changed: false,
            failed: false,
            changes: Vec::new(),
            observer,
            planner: None,
        }
    }

    pub(crate) fn planned_by(mut self, planner: Option<Arc<dyn crate::CommitPlanner>>) -> Self {
        self.planner = planner;
        self
    }

    /// Records a change for the feed (see [`crate::changes`]).
    pub(crate) fn feed(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Wraps a value just read with a lock. Refused in a read-only
    /// transaction, which takes no locks.
    pub(crate) fn locked<T: Clone>(&self, value: T) -> Result<Locked<T>, StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        Ok(Locked {
            original: value.clone(),
            current: value,
            tx: self.id,
        })
    }

    /// Unwraps a locked value for saving: the value as read, and as it is
    /// now. Refused unless this transaction locked it.
    pub(crate) fn unlock<T>(&self, locked: Locked<T>) -> Result<(T, T), StoreError> {
        if locked.tx != self.id {
            return Err(StoreError::NotLocked);
        }
        Ok((locked.original, locked.current))
    }

    /// Records the outcome of a statement: any failure poisons the
    /// transaction.
    fn note<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            self.failed = true;
            classify(e)
        })
    }

    /// The backend this transaction runs on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Notes a state change, which the commit must record in the audit log.
    pub(crate) fn audited_write(&mut self) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.changed = true;
        Ok(())
    }

    /// Notes bookkeeping (delivery state, idempotency records, checkpoints)
    /// that is not itself an audited change.
    pub(crate) fn bookkeeping_write(&mut self) -> Result<(), StoreError> {
        if self.writable {
            Ok(())
        } else {
            Err(StoreError::ReadOnly)
        }
    }

    /// `sql` with a row lock on PostgreSQL (SQLite's write transaction
    /// already excludes every other writer). The lock is `FOR NO KEY
    /// UPDATE`: no key is ever changed, and the stronger `FOR UPDATE` would
    /// also block (and could deadlock with) the key-share locks that
    /// inserting a referencing row takes.
    pub(crate) fn locking(&self, sql: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, "FOR NO KEY UPDATE")
    }

    /// `sql` with a share lock on PostgreSQL (`FOR SHARE`), for a row that
    /// a decision reads but does not change: it waits for, and then blocks,
    /// the `FOR NO KEY UPDATE` of a transaction changing that row, so the
    /// decision and the change cannot interleave; share locks do not block
    /// each other. (SQLite's write transaction already excludes every
    /// other writer.)
    pub(crate) fn sharing(&self, sql: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, "FOR SHARE")
    }

    /// `sql` locking only the rows of the table aliased `alias` (needed
    /// when the query outer-joins another table).
    pub(crate) fn locking_of(&self, sql: &str, alias: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, &format!("FOR NO KEY UPDATE OF {alias}"))
    }

    /// Like [`Tx::locking_of`], but rows another transaction holds are
    /// skipped (for work queues shared by several nodes).
    pub(crate) fn locking_skip(&self, sql: &str, alias: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, &format!("FOR NO KEY UPDATE OF {alias} SKIP LOCKED"))
    }

    fn with_lock(&self, sql: &str, clause: &str) -> AssertSqlSafe<String> {
        match self.backend {
            Backend::Postgres if self.writable => AssertSqlSafe(format!("{sql} {clause}")),
            _ => AssertSqlSafe(sql.to_owned()),
        }
    }

    pub(crate) async fn all(&mut self, q: AnyQuery<'_>) -> Result<Vec<AnyRow>, StoreError> {
        let result = q.fetch_all(&mut *self.tx).await;
        self.note(result)
    }

    pub(crate) async fn optional(&mut self, q: AnyQuery<'_>) -> Result<Option<AnyRow>, StoreError> {
        let result = q.fetch_optional(&mut *self.tx).await;
        self.note(result)
    }

    pub(crate) async fn one(&mut self, q: AnyQuery<'_>) -> Result<AnyRow, StoreError> {
        let result = q.fetch_one(&mut *self.tx).await;
        self.note(result)
    }

    /// Runs a statement; returns the number of rows it touched.
    pub(crate) async fn run(&mut self, q: AnyQuery<'_>) -> Result<u64, StoreError> {
        let result = q.execute(&mut *self.tx).await.map(|r| r.rows_affected());
        self.note(result)
    }

    /// Commits, telling a failed commit whose outcome is known (the database
    /// refused it) from one whose outcome is not (the connection broke while
    /// committing, and the commit may or may not have happened).
    ///
    /// Changes for the feed are announced to other nodes (PostgreSQL
    /// `NOTIFY`, delivered only if this commits) and, once committed, told
    /// to this node's observer, whose settling is awaited.
    async fn finish(mut self) -> Result<(), StoreError> {
        let changes = std::mem::take(&mut self.changes);
        if self.backend == Backend::Postgres && !changes.is_empty() {
            let refs: Vec<ChangeRef> = changes.iter().map(Change::reference).collect();
            for payload in payloads(&refs) {
                self.run(
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(CHANNEL)
                        .bind(payload),
                )
                .await?;
            }
        }
        let observer = self.observer.take();
        let committed = self.tx.commit().await.map_err(|e| match classify(e) {
            StoreError::Unavailable(why) => StoreError::CommitOutcomeUnknown(why),
            other => other,
        });
        match (&committed, observer) {
            (Ok(()), Some(observer)) if !changes.is_empty() => {
                observer.committed(changes).await;
            }
            (Err(StoreError::CommitOutcomeUnknown(_)), Some(observer)) if !changes.is_empty() => {
                observer.unsure();
            }
            _ => {}
        }
        committed
    }

    /// Seals `events` into their chains and commits everything. Returns the
    /// sealed events, in order.
    ///
    /// Each chain's head is locked, the events get their sequence numbers
    /// and hashes, and the new head is stored, all in this transaction: two
    /// transactions extending the same chain serialize on its head, so the
    /// chain never forks or gaps. Heads are locked in a fixed order (by
    /// chain) and last, after every entity row, so commits cannot deadlock.
    ///
    /// Refused with [`StoreError::Unaudited`] (and rolled back) if the
    /// transaction changed state but `events` is empty.
    pub async fn commit(
        mut self,
        events: Vec<PendingEvent>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        if self.changed && events.is_empty() {
            return Err(StoreError::Unaudited);
        }
        if !events.is_empty() && !self.writable {
            return Err(StoreError::ReadOnly);
        }
        let sealed = self.seal(events).await?;
        if let Some(planner) = self.planner.take()
            && !sealed.is_empty()
        {
            planner.plan(&mut self, &sealed).await?;
        }
        self.finish().await?;
        Ok(sealed)
    }

    /// Commits a transaction that made no audited change (only reads, or
    /// bookkeeping). Refused with [`StoreError::Unaudited`] otherwise.
    pub async fn commit_unaudited(self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        if self.changed {
            return Err(StoreError::Unaudited);
        }
        self.finish().await
    }

    /// Abandons the transaction.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(classify)
    }

    async fn seal(&mut self, events: Vec<PendingEvent>) -> Result<Vec<AuditEvent>, StoreError> {
        // Group by chain, keeping each chain's order; remember the overall
        // order to return the sealed events as they were given.
        let mut by_chain: BTreeMap<Chain, Vec<(usize, PendingEvent)>> = BTreeMap::new();
        let total = events.len();
        for (i, event) in events.into_iter().enumerate() {
            by_chain
                .entry(event.chain.clone())
                .or_default()
                .push((i, event));
        }
        let mut sealed: Vec<Option<AuditEvent>> = vec![None; total];
        for (chain, events) in by_chain {
            let mut head = self.lock_head(&chain).await?;
            let mut batch = Vec::with_capacity(events.len());
            for (i, event) in events {
                let event = head
                    .seal(event)
                    .map_err(|e| StoreError::Backend(format!("cannot seal an audit event: {e}")))?
                    .into_event();
                batch.push(event.clone());
                if let Some(slot) = sealed.get_mut(i) {
                    *slot = Some(event);
                }
            }
            // The database's trigger checks that each event continues the
            // chain and advances the head.
            insert_events(self, &batch).await?;
        }
        Ok(sealed.into_iter().flatten().collect())
    }

    /// Reads a chain's head with a lock on it (creating the row for a new
    /// chain): one statement, since an upsert locks the row on both backends.
    async fn lock_head(&mut self, chain: &Chain) -> Result<ChainHead, StoreError> {
        let row = self
            .one(
                sqlx::query(
                    "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2) \
                     ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq \
                     RETURNING seq, hash",
                )
                .bind(chain_key(chain))
                .bind(Digest::ZERO.0.to_vec()),
            )
            .await?;
        Ok(ChainHead {
            chain: chain.clone(),
            seq: row.u64("seq")?,
            hash: crate::audit::digest(&row.bytes("hash")?)?,
        })
    }
}
