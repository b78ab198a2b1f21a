//! The nodes enforcing checks on one PostgreSQL database, and the
//! acknowledgements by which a node learns that every other live node has
//! applied a change that narrowed access.
//!
//! Each node's heartbeat ([`Store::heartbeat`]) keeps its row in `nodes`
//! (stamped by the database's clock, in the same statement that sends the
//! heartbeat through the change feed), so a node that could count itself
//! fresh always has a recent row. After a commit that narrowed access, the
//! committing node sends a barrier through the feed ([`Store::barrier`]),
//! which also reads the live nodes; every other node, having applied
//! everything the feed delivered before the barrier, acknowledges it on
//! [`ACK_CHANNEL`] ([`Store::acknowledge`], heard through
//! [`Store::listen_acks`]). This is bookkeeping: nothing here is audited.
//! SQLite is one node: every call here does nothing.

use std::fmt;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::PgListener;

use crate::changes::{CHANNEL, ChangeRef, lines_within};
use crate::error::{StoreError, classify};
use crate::{Backend, Store};

/// The channel on which nodes acknowledge barriers.
pub const ACK_CHANNEL: &str = "lockbox_acks";

/// A node counts as live while its last heartbeat is at most this many
/// times its `max_staleness` old: by then it has stopped answering checks
/// unless a later heartbeat reached it (see `docs/ENFORCEMENT.md`); the
/// margin covers small adjustments of the database's clock.
pub const LIVE_FOR_STALENESS: i64 = 2;

/// Rows of nodes not heard from for this long are deleted when a node
/// starts heartbeating.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Another node that may be answering checks, as a barrier read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// Its id.
    pub id: String,
    /// How long it answers checks after sending a heartbeat it has
    /// received.
    pub max_staleness: Duration,
}

/// A node's acknowledgement: `node` has applied everything committed
/// before the barrier `seq` of node `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The node that applied.
    pub node: String,
    /// The node whose barrier it was.
    pub origin: String,
    /// The barrier's number on its node.
    pub seq: u64,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.node, self.origin, self.seq)
    }
}

impl Ack {
    /// Parses one line of an acknowledgement payload.
    #[must_use]
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split(' ');
        let (node, origin, seq) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            node: node.to_owned(),
            origin: origin.to_owned(),
            seq: seq.parse().ok()?,
        })
    }
}

/// A PostgreSQL connection listening on [`ACK_CHANNEL`].
pub struct AckListener {
    listener: PgListener,
}

impl fmt::Debug for AckListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckListener").finish_non_exhaustive()
    }
}

impl AckListener {
    /// The next acknowledgements, or why the connection was lost (it
    /// reconnects by itself on the next call; acknowledgements sent
    /// meanwhile are gone, and whoever waited for them waits out its
    /// bound).
    pub async fn next(&mut self) -> Result<Vec<Ack>, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(n)) => Ok(n.payload().lines().filter_map(Ack::parse).collect()),
            Ok(None) => Err(StoreError::Unavailable(
                "the listening connection closed".to_owned(),
            )),
            Err(e) => Err(classify(e)),
        }
    }
}

/// `max_staleness` in whole milliseconds, as stored.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Sends this node's heartbeat `text` through the change feed and, in
    /// the same statement, registers the node (or marks it seen now, by the
    /// database's clock), on a connection of enforcement's own. Every
    /// listener receives the heartbeat after every change committed before
    /// it. Nothing on SQLite.
    pub async fn heartbeat(
        &self,
        node: &str,
        text: &str,
        max_staleness: Duration,
    ) -> Result<(), StoreError> {
        let Some(sync) = &self.inner.sync else {
            return Ok(());
        };
        sqlx::query(
            "WITH beat AS ( \
                 INSERT INTO nodes (id, started_at_us, seen_at_us, max_staleness_ms) \
                 VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, \
                         (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, $2) \
                 ON CONFLICT (id) DO UPDATE \
                 SET seen_at_us = EXCLUDED.seen_at_us, \
                     max_staleness_ms = EXCLUDED.max_staleness_ms \
                 RETURNING 1) \
             SELECT pg_notify($3, $4) FROM beat",
        )
        .bind(node.to_owned())
        .bind(millis(max_staleness))
        .bind(CHANNEL)
        .bind(ChangeRef::Heartbeat(text.to_owned()).to_string())
        .execute(sync)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Deletes the rows of nodes not heard from for a day (nodes that
    /// stopped without leaving). Nothing on SQLite.
    pub async fn forget_departed_nodes(&self) -> Result<u64, StoreError> {
        let Some(sync) = &self.inner.sync else {
            return Ok(0);
        };
        let done = sqlx::query(
            "DELETE FROM nodes \
             WHERE seen_at_us < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT - $1",
        )
        .bind(i64::try_from(FORGET_AFTER.as_micros()).unwrap_or(i64::MAX))
        .execute(sync)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected())
    }

    /// Deletes this node's row: it has stopped answering checks for good.
    /// Nothing on SQLite.
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let Some(sync) = &self.inner.sync else {
            return Ok(());
        };
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node.to_owned())
            .execute(sync)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Sends barrier `seq` of node `node` through the change feed and, in
    /// the same statement (so after everything this node has committed so
    /// far), reads the other nodes that are live: seen within
    /// [`LIVE_FOR_STALENESS`] times their `max_staleness`. Each of them
    /// that hears the barrier has applied everything committed before it.
    /// On SQLite (one node) nothing is sent and no node is live.
    pub async fn barrier(&self, node: &str, seq: u64) -> Result<Vec<LiveNode>, StoreError> {
        if self.inner.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        // One row whatever the table holds: the notification is sent once,
        // and the live nodes come back as `id ms,id ms,…` (ids are hex).
        let row = sqlx::query(
            "SELECT pg_notify($1, $2)::TEXT AS sent, \
                    (SELECT string_agg(id || ' ' || max_staleness_ms, ',') FROM nodes \
                     WHERE id <> $3 \
                       AND seen_at_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT \
                           - $4 * 1000 * max_staleness_ms) AS live",
        )
        .bind(CHANNEL)
        .bind(ChangeRef::Barrier(format!("{node} {seq}")).to_string())
        .bind(node.to_owned())
        .bind(LIVE_FOR_STALENESS)
        .fetch_one(&self.inner.writer)
        .await
        .map_err(classify)?;
        let live: Option<String> = row.try_get("live").map_err(classify)?;
        live.unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (id, ms) = entry
                    .split_once(' ')
                    .ok_or_else(|| StoreError::Corrupt(format!("a node's row reads `{entry}`")))?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("node {id} has staleness `{ms}`")))?;
                Ok(LiveNode {
                    id: id.to_owned(),
                    max_staleness: Duration::from_millis(ms),
                })
            })
            .collect()
    }

    /// The nodes that are live now (seen within [`LIVE_FOR_STALENESS`]
    /// times their `max_staleness`, by the database's clock): the servers
    /// running on this database. Always none on SQLite.
    pub async fn live_nodes(&self) -> Result<Vec<String>, StoreError> {
        if self.inner.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT id FROM nodes \
             WHERE seen_at_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT \
                   - $1 * 1000 * max_staleness_ms \
             ORDER BY id",
        )
        .bind(LIVE_FOR_STALENESS)
        .fetch_all(&self.inner.writer)
        .await
        .map_err(classify)
    }

    /// Acknowledges barriers: node `node` has applied everything committed
    /// before each `(origin, seq)`. On a connection of enforcement's own.
    /// Nothing on SQLite.
    pub async fn acknowledge(
        &self,
        node: &str,
        barriers: &[(String, u64)],
    ) -> Result<(), StoreError> {
        let Some(sync) = &self.inner.sync else {
            return Ok(());
        };
        let lines: Vec<String> = barriers
            .iter()
            .map(|(origin, seq)| {
                Ack {
                    node: node.to_owned(),
                    origin: origin.clone(),
                    seq: *seq,
                }
                .to_string()
            })
            .collect();
        for payload in lines_within(&lines) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(ACK_CHANNEL)
                .bind(payload)
                .execute(sync)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Starts listening for acknowledgements. `None` on SQLite.
    pub async fn listen_acks(&self) -> Result<Option<AckListener>, StoreError> {
        let Some(url) = self.inner.url.as_deref() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url).await.map_err(classify)?;
        listener.listen(ACK_CHANNEL).await.map_err(classify)?;
        Ok(Some(AckListener { listener }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_round_trip() {
        let ack = Ack {
            node: "0a1b".into(),
            origin: "ffee".into(),
            seq: 42,
        };
        assert_eq!(Ack::parse(&ack.to_string()), Some(ack));
        assert_eq!(Ack::parse("a b"), None);
        assert_eq!(Ack::parse("a b c d"), None);
        assert_eq!(Ack::parse("a b -1"), None);
    }
}
