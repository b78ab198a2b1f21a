//! Idempotency keys: a creating call repeated with the same key (and the
//! same body) within 24 hours gets the first response and creates nothing.
//!
//! The response is saved in the same transaction as the creation. Two
//! concurrent calls with one key both miss the lookup; the second to commit
//! then fails on the key's constraint (a conflict the server answers by
//! looking the key up again), so only one creation commits.

use lockbox_core::{PrincipalId, Timestamp};
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, micros};
use crate::error::{Constraint, StoreError};
use crate::tx::Tx;

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// SHA-256 of the request (method, path, body): the same key with
    /// another request is refused, not replayed.
    pub request_hash: [u8; 32],
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
    /// When the first call was answered.
    pub created_at: Timestamp,
}

fn response_of(row: &AnyRow) -> Result<StoredResponse, StoreError> {
    Ok(StoredResponse {
        request_hash: row
            .bytes("request_hash")?
            .try_into()
            .map_err(|_| StoreError::corrupt("a request hash that is not 32 bytes"))?,
        status: u16::try_from(row.int("status")?)
            .map_err(|_| StoreError::corrupt("an HTTP status out of range"))?,
        body: row.text("response")?,
        created_at: row.time("created_at_us")?,
    })
}

/// Idempotency keys, per principal.
impl Tx {
    /// The response saved under `key` by `principal` at or after
    /// `not_before` (older ones have expired).
    pub async fn idempotent_response(
        &mut self,
        principal: &PrincipalId,
        key: &str,
        not_before: Timestamp,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT request_hash, status, response, created_at_us FROM idempotency_keys \
                     WHERE principal_id = $1 AND key = $2 AND created_at_us >= $3",
                )
                .bind(principal.as_str().to_owned())
                .bind(key.to_owned())
                .bind(micros(not_before)),
            )
            .await?;
        row.as_ref().map(response_of).transpose()
    }

    /// Saves a response under `key`, replacing an expired one (older than
    /// `not_before`). A live one under the same key is a conflict.
    pub async fn save_idempotent_response(
        &mut self,
        principal: &PrincipalId,
        key: &str,
        r: &StoredResponse,
        not_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        let n = self
            .run(
                sqlx::query(
                    "INSERT INTO idempotency_keys (principal_id, key, request_hash, status, response, created_at_us) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (principal_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
                     status = excluded.status, response = excluded.response, created_at_us = excluded.created_at_us \
                     WHERE idempotency_keys.created_at_us < $7",
                )
                .bind(principal.as_str().to_owned())
                .bind(key.to_owned())
                .bind(r.request_hash.to_vec())
                .bind(i64::from(r.status))
                .bind(r.body.clone())
                .bind(micros(r.created_at))
                .bind(micros(not_before)),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict(Constraint::IdempotencyKey));
        }
        Ok(())
    }

    /// Forgets responses saved before `before`; returns how many.
    pub async fn purge_idempotency_keys(&mut self, before: Timestamp) -> Result<u64, StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at_us < $1")
                .bind(micros(before)),
        )
        .await
    }
}
