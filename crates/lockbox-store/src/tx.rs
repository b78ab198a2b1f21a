//! Transactions, locked rows, and the commit that seals audit events.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use lockbox_core::{AuditEvent, Chain, ChainHead, Digest, PendingEvent};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Transaction};

use crate::Backend;
use crate::audit::{chain_key, insert_events};
use crate::codec::RowExt as _;
use crate::error::{StoreError, classify};

/// A value read with a lock on its row, for a read-modify-write: it remembers
/// what was read so that saving writes only what changed. Only the store
/// makes one, so only locked rows can be saved.
#[derive(Debug, Clone)]
pub struct Locked<T> {
    original: T,
    current: T,
}

impl<T: Clone> Locked<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            original: value.clone(),
            current: value,
        }
    }
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

    pub(crate) fn parts(self) -> (T, T) {
        (self.original, self.current)
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

/// A database transaction. Dropping it without committing rolls it back.
pub struct Tx {
    tx: Transaction<'static, Any>,
    backend: Backend,
    writable: bool,
    /// Whether a write that must be audited has happened.
    changed: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend)
            .field("writable", &self.writable)
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

impl Tx {
    pub(crate) fn new(tx: Transaction<'static, Any>, backend: Backend, writable: bool) -> Self {
        Self {
            tx,
            backend,
            writable,
            changed: false,
        }
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
    /// already excludes every other writer).
    pub(crate) fn locking(&self, sql: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, "FOR UPDATE")
    }

    /// `sql` locking only the rows of the table aliased `alias` (needed
    /// when the query outer-joins another table).
    pub(crate) fn locking_of(&self, sql: &str, alias: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, &format!("FOR UPDATE OF {alias}"))
    }

    /// Like [`Tx::locking_of`], but rows another transaction holds are
    /// skipped (for work queues shared by several nodes).
    pub(crate) fn locking_skip(&self, sql: &str, alias: &str) -> AssertSqlSafe<String> {
        self.with_lock(sql, &format!("FOR UPDATE OF {alias} SKIP LOCKED"))
    }

    fn with_lock(&self, sql: &str, clause: &str) -> AssertSqlSafe<String> {
        match self.backend {
            Backend::Postgres if self.writable => AssertSqlSafe(format!("{sql} {clause}")),
            _ => AssertSqlSafe(sql.to_owned()),
        }
    }

    pub(crate) async fn all(&mut self, q: AnyQuery<'_>) -> Result<Vec<AnyRow>, StoreError> {
        q.fetch_all(&mut *self.tx).await.map_err(classify)
    }

    pub(crate) async fn optional(&mut self, q: AnyQuery<'_>) -> Result<Option<AnyRow>, StoreError> {
        q.fetch_optional(&mut *self.tx).await.map_err(classify)
    }

    pub(crate) async fn one(&mut self, q: AnyQuery<'_>) -> Result<AnyRow, StoreError> {
        q.fetch_one(&mut *self.tx).await.map_err(classify)
    }

    /// Runs a statement; returns the number of rows it touched.
    pub(crate) async fn run(&mut self, q: AnyQuery<'_>) -> Result<u64, StoreError> {
        q.execute(&mut *self.tx)
            .await
            .map(|r| r.rows_affected())
            .map_err(classify)
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
        if self.changed && events.is_empty() {
            return Err(StoreError::Unaudited);
        }
        if !events.is_empty() && !self.writable {
            return Err(StoreError::ReadOnly);
        }
        let sealed = self.seal(events).await?;
        self.tx.commit().await.map_err(classify)?;
        Ok(sealed)
    }

    /// Commits a transaction that made no audited change (only reads, or
    /// bookkeeping). Refused with [`StoreError::Unaudited`] otherwise.
    pub async fn commit_unaudited(self) -> Result<(), StoreError> {
        if self.changed {
            return Err(StoreError::Unaudited);
        }
        self.tx.commit().await.map_err(classify)
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
