//! The audit log: chains of sealed events and their signed checkpoints.
//!
//! Events are appended only by [`crate::Tx::commit`]; this module reads
//! them, and stores checkpoints.

use lockbox_core::audit::{KeyId, Signature};
use lockbox_core::{Actor, AuditEvent, Chain, ChainHead, Checkpoint, Digest, TenantId, Timestamp};
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, json, micros, placeholders};
use crate::error::StoreError;
use crate::query::{Arg, Conditions, bind_all};
use crate::tx::Tx;

/// The `chain` column of the provider chain (tenant ids never contain
/// parentheses).
const PROVIDER_CHAIN: &str = "(provider)";

pub(crate) fn chain_key(chain: &Chain) -> String {
    match chain {
        Chain::Provider => PROVIDER_CHAIN.to_owned(),
        Chain::Tenant(t) => t.as_str().to_owned(),
    }
}

fn chain_of(key: &str) -> Result<Chain, StoreError> {
    if key == PROVIDER_CHAIN {
        Ok(Chain::Provider)
    } else {
        TenantId::parse(key)
            .map(Chain::Tenant)
            .map_err(StoreError::corrupt)
    }
}

pub(crate) fn digest(bytes: &[u8]) -> Result<Digest, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(Digest)
        .map_err(|_| StoreError::corrupt(format!("a hash of {} bytes", bytes.len())))
}

/// Which events to read.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Only events after this sequence number.
    pub after_seq: u64,
    /// Only events of this kind (`request.created`, …).
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub from: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// At most this many (1 to 10 000).
    pub limit: u32,
}

impl Default for EventQuery {
    /// Every event from the first, a page of [`crate::DEFAULT_PAGE`].
    fn default() -> Self {
        Self {
            after_seq: 0,
            kind: None,
            from: None,
            until: None,
            limit: crate::DEFAULT_PAGE,
        }
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "chain, seq, at_us, actor, kind, subject, data, prev_hash, hash";

fn event_of(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let data: Map<String, Value> = row.json("data")?;
    Ok(AuditEvent {
        seq: row.u64("seq")?,
        chain: chain_of(&row.text("chain")?)?,
        at: row.time("at_us")?,
        actor: Actor::parse(&row.text("actor")?).map_err(StoreError::corrupt)?,
        kind: row.text("kind")?,
        subject: row.text("subject")?,
        data,
        prev_hash: digest(&row.bytes("prev_hash")?)?,
        hash: digest(&row.bytes("hash")?)?,
    })
}

fn head_of(row: &AnyRow) -> Result<ChainHead, StoreError> {
    Ok(ChainHead {
        chain: chain_of(&row.text("chain")?)?,
        seq: row.u64("seq")?,
        hash: digest(&row.bytes("hash")?)?,
    })
}

fn checkpoint_of(row: &AnyRow) -> Result<Checkpoint, StoreError> {
    let signature: [u8; 64] = row
        .bytes("signature")?
        .try_into()
        .map_err(|_| StoreError::corrupt("a signature that is not 64 bytes"))?;
    Ok(Checkpoint {
        chain: chain_of(&row.text("chain")?)?,
        seq: row.u64("seq")?,
        head_hash: digest(&row.bytes("head_hash")?)?,
        at: row.time("at_us")?,
        key_id: KeyId::parse(&row.text("key_id")?).map_err(StoreError::corrupt)?,
        signature: Signature(signature),
    })
}

pub(crate) fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::corrupt("sequence number overflow"))
}

/// Rows per multi-row insert (9 values each). Small on purpose: SQLite
/// finds each numbered parameter by a linear search of the statement's
/// parameters, so binding costs grow with the square of a statement's
/// size; and few distinct sizes keep the prepared-statement cache warm.
const EVENTS_PER_INSERT: usize = 32;

/// Inserts sealed events (called by the commit, under the head's lock).
/// The SQL text and parameters reading a chain's events: only the
/// conditions of the filters present, so that SQLite can use an index.
pub(crate) fn events_list(
    chain: &Chain,
    query: &EventQuery,
) -> Result<(String, Vec<Arg>), StoreError> {
    let mut c = Conditions::new();
    c.and(
        "chain = $1 AND seq > $2",
        [chain_key(chain).into(), seq_param(query.after_seq)?.into()],
    );
    c.and_some(query.kind.as_deref(), "kind = $1", |k| [k.into()]);
    c.and_some(query.from, "at_us >= $1", |at| [micros(at).into()]);
    c.and_some(query.until, "at_us < $1", |at| [micros(at).into()]);
    c.then(
        "ORDER BY seq LIMIT $1",
        [i64::from(query.limit.clamp(1, 10_000)).into()],
    );
    Ok(c.build(
        "SELECT chain, seq, at_us, actor, kind, subject, data, prev_hash, hash FROM audit_events",
    ))
}

pub(crate) async fn insert_events(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let values = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * 9 + 1, 9)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES {values}");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(chain_key(&e.chain))
                .bind(seq_param(e.seq)?)
                .bind(micros(e.at))
                .bind(e.actor.as_str().to_owned())
                .bind(e.kind.clone())
                .bind(e.subject.clone())
                .bind(json(&e.data)?)
                .bind(e.prev_hash.0.to_vec())
                .bind(e.hash.0.to_vec());
        }
        tx.run(q).await?;
    }
    Ok(())
}

/// Reading the audit log and storing checkpoints.
impl Tx {
    /// The chain's last sequence number and hash (of an empty chain: 0 and
    /// zeros). No lock is taken.
    pub async fn chain_head(&mut self, chain: &Chain) -> Result<ChainHead, StoreError> {
        let row = self
            .optional(
                sqlx::query("SELECT seq, hash FROM audit_heads WHERE chain = $1")
                    .bind(chain_key(chain)),
            )
            .await?;
        match row {
            Some(row) => Ok(ChainHead {
                chain: chain.clone(),
                seq: row.u64("seq")?,
                hash: digest(&row.bytes("hash")?)?,
            }),
            None => Ok(ChainHead::genesis(chain.clone())),
        }
    }

    /// Every chain's head.
    pub async fn chain_heads(&mut self) -> Result<Vec<ChainHead>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT chain, seq, hash FROM audit_heads ORDER BY chain",
            ))
            .await?;
        rows.iter().map(head_of).collect()
    }

    /// Events of a chain in sequence order.
    pub async fn events(
        &mut self,
        chain: &Chain,
        query: &EventQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let (sql, args) = events_list(chain, query)?;
        let rows = self
            .all(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// Stores a checkpoint (a second one for the same head and key is
    /// ignored).
    pub async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO audit_checkpoints (chain, seq, head_hash, at_us, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain, seq, key_id) DO NOTHING",
            )
            .bind(chain_key(&cp.chain))
            .bind(seq_param(cp.seq)?)
            .bind(cp.head_hash.0.to_vec())
            .bind(micros(cp.at))
            .bind(cp.key_id.to_string())
            .bind(cp.signature.0.to_vec()),
        )
        .await?;
        Ok(())
    }

    /// The checkpoint with the highest sequence number, the latest among
    /// equals.
    pub async fn latest_checkpoint(
        &mut self,
        chain: &Chain,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT chain, seq, head_hash, at_us, key_id, signature FROM audit_checkpoints \
                     WHERE chain = $1 ORDER BY seq DESC, at_us DESC LIMIT 1",
                )
                .bind(chain_key(chain)),
            )
            .await?;
        row.as_ref().map(checkpoint_of).transpose()
    }

    /// How many chains have events no checkpoint covers yet, and when the
    /// newest checkpoint of any chain was taken (`None`: never).
    pub async fn checkpoint_lag(&mut self) -> Result<(i64, Option<Timestamp>), StoreError> {
        let behind = self
            .one(sqlx::query(
                "SELECT COUNT(*) AS n FROM audit_heads h WHERE h.seq > COALESCE( \
                   (SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.chain = h.chain), 0)",
            ))
            .await?
            .int("n")?;
        let newest = self
            .one(sqlx::query(
                "SELECT MAX(at_us) AS at_us FROM audit_checkpoints",
            ))
            .await?;
        let newest = match newest.opt_int("at_us")? {
            Some(us) => Some(crate::codec::time(us)?),
            None => None,
        };
        Ok((behind, newest))
    }

    /// Heads of chains with events no checkpoint covers yet, at most
    /// `limit`, in chain order after `after` (a chain key from the previous
    /// call's last head, to go through them all).
    pub async fn chains_behind_checkpoint(
        &mut self,
        after: Option<&Chain>,
        limit: u32,
    ) -> Result<Vec<ChainHead>, StoreError> {
        let mut c = Conditions::new();
        c.and_some(after, "h.chain > $1", |chain| [chain_key(chain).into()]);
        c.and(
            "h.seq > COALESCE( \
               (SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.chain = h.chain), 0)",
            [],
        );
        c.then(
            "ORDER BY h.chain LIMIT $1",
            [i64::from(limit.max(1)).into()],
        );
        let rows = self
            .all(c.query("SELECT h.chain, h.seq, h.hash FROM audit_heads h"))
            .await?;
        rows.iter().map(head_of).collect()
    }

    /// Takes the job lock named `job` for this transaction if no other
    /// transaction holds it (PostgreSQL: an advisory transaction lock; on
    /// SQLite the write transaction already excludes every other writer).
    /// `false` when another node holds it.
    pub async fn try_job_lock(&mut self, job: &str) -> Result<bool, StoreError> {
        self.bookkeeping_write()?;
        match self.backend() {
            crate::Backend::Sqlite => Ok(true),
            crate::Backend::Postgres => {
                let row = self
                    .one(
                        sqlx::query(
                            "SELECT CASE WHEN pg_try_advisory_xact_lock(hashtext($1)) \
                             THEN 1 ELSE 0 END::bigint AS got",
                        )
                        .bind(job.to_owned()),
                    )
                    .await?;
                Ok(row.int("got")? == 1)
            }
        }
    }
}
