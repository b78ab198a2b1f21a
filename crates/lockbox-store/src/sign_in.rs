//! What the sign-in form remembers between attempts, shared by every node
//! on the database: failed attempts counted per key (an account, for the
//! browsers it does not know; a device cookie, for the browser holding
//! it), a key locked for a while after too many; and the secrets the
//! server keeps for itself (the key that authenticates device cookies),
//! each made once by whichever node needs it first.
//!
//! None of this is an audited change (it changes no one's rights, and an
//! attempt is not an event of any tenant's): these are bookkeeping writes,
//! committed with [`crate::Tx::commit_unaudited`] or beside a commit's
//! events. Each count is one statement, so attempts counted at once on
//! several nodes are all counted.

use std::fmt;

use chrono::TimeDelta;
use lockbox_core::Timestamp;

use crate::codec::{RowExt as _, micros};
use crate::error::StoreError;
use crate::tx::Tx;

/// How many failures a key may have before it is locked, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures in one window that lock the key (the one that reaches it
    /// is still checked; the next is refused).
    pub max_failures: u32,
    /// A count starts with a key's first failure and lasts this long.
    pub window: TimeDelta,
    /// How long the key is locked once it reaches `max_failures`.
    pub lock_for: TimeDelta,
}

/// What counting a failed attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Counted: the key's failures in its window, this one included. The
    /// attempt may go on (it is the last allowed when this is
    /// `max_failures`).
    Counted(u32),
    /// The key is locked until then; nothing was counted.
    Locked(Timestamp),
}

/// 32 secret bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSecret(pub [u8; 32]);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

/// Failed sign-in attempts and the server's own secrets.
impl Tx {
    /// Counts a failed attempt of `key` at `now` under `rule` (before the
    /// attempt is checked: a success takes it back with
    /// [`Tx::forgive_failure`]), or says the key is locked.
    pub async fn count_failure(
        &mut self,
        key: &str,
        now: Timestamp,
        rule: &Lockout,
    ) -> Result<Count, StoreError> {
        self.bookkeeping_write()?;
        // One statement: a new key starts at one; a key whose window is
        // over starts again at one; a locked key is left as it is (no row
        // comes back); a count that reaches the limit locks the key.
        let row = self
            .optional(
                sqlx::query(
                    "INSERT INTO sign_in_failures (key, failures, window_start_us, locked_until_us) \
                     VALUES ($1, 1, $2, CASE WHEN 1 >= $5 THEN $4 ELSE NULL END) \
                     ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN sign_in_failures.window_start_us <= $3 THEN 1 \
                       ELSE sign_in_failures.failures + 1 END, \
                     window_start_us = CASE WHEN sign_in_failures.window_start_us <= $3 THEN $2 \
                       ELSE sign_in_failures.window_start_us END, \
                     locked_until_us = CASE WHEN (CASE WHEN sign_in_failures.window_start_us <= $3 \
                       THEN 1 ELSE sign_in_failures.failures + 1 END) >= $5 THEN $4 ELSE NULL END \
                     WHERE sign_in_failures.locked_until_us IS NULL \
                       OR sign_in_failures.locked_until_us <= $2 \
                     RETURNING failures",
                )
                .bind(key.to_owned())
                .bind(micros(now))
                .bind(micros(now - rule.window))
                .bind(micros(now + rule.lock_for))
                .bind(i64::from(rule.max_failures)),
            )
            .await?;
        if let Some(row) = row {
            return Ok(Count::Counted(row.u32("failures")?));
        }
        let row = self
            .one(
                sqlx::query("SELECT locked_until_us FROM sign_in_failures WHERE key = $1")
                    .bind(key.to_owned()),
            )
            .await?;
        let until = row
            .opt_time("locked_until_us")?
            .ok_or_else(|| StoreError::corrupt("a sign-in count neither counted nor locked"))?;
        Ok(Count::Locked(until))
    }

    /// Takes back one failure of `key` (an attempt counted beforehand that
    /// succeeded), lifting a lock it no longer reaches.
    pub async fn forgive_failure(&mut self, key: &str, rule: &Lockout) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query(
                "UPDATE sign_in_failures SET failures = failures - 1, \
                 locked_until_us = CASE WHEN failures - 1 < $2 THEN NULL ELSE locked_until_us END \
                 WHERE key = $1 AND failures > 0",
            )
            .bind(key.to_owned())
            .bind(i64::from(rule.max_failures)),
        )
        .await?;
        Ok(())
    }

    /// Forgets the counts that started before `started_before` and whose
    /// lock, if any, is over at `now`; returns how many.
    pub async fn purge_failures(
        &mut self,
        started_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query(
                "DELETE FROM sign_in_failures WHERE window_start_us < $1 \
                 AND (locked_until_us IS NULL OR locked_until_us <= $2)",
            )
            .bind(micros(started_before))
            .bind(micros(now)),
        )
        .await
    }

    /// The server's secret `name`: the one stored, or else `candidate`,
    /// stored now (two nodes asking at once get the same one).
    pub async fn server_secret(
        &mut self,
        name: &str,
        candidate: &ServerSecret,
        now: Timestamp,
    ) -> Result<ServerSecret, StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO server_secrets (name, secret, created_at_us) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name.to_owned())
            .bind(candidate.0.to_vec())
            .bind(micros(now)),
        )
        .await?;
        let row = self
            .one(
                sqlx::query("SELECT secret FROM server_secrets WHERE name = $1")
                    .bind(name.to_owned()),
            )
            .await?;
        let bytes: [u8; 32] = row.bytes("secret")?.try_into().map_err(|_| {
            StoreError::corrupt(format!("the server secret {name} is not 32 bytes"))
        })?;
        Ok(ServerSecret(bytes))
    }
}
