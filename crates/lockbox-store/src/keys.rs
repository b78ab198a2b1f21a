//! Signing keys: Ed25519 keys that sign access tokens (and, later, audit
//! checkpoints). The newest unretired key of a purpose signs; retired keys
//! stay stored so their public halves can still be published while tokens
//! they signed live.

use std::fmt;
use std::future::Future;

use lockbox_core::Timestamp;

use crate::codec::{RowExt as _, micros, opt_micros};
use crate::error::StoreError;
use crate::tx::Tx;

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Access tokens (JWTs) minted for grant holders.
    AccessToken,
    /// Audit checkpoints.
    Checkpoint,
}

impl KeyPurpose {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// A stored signing key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The key id (`kid`).
    pub id: String,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// The Ed25519 secret key (32 bytes).
    pub secret: [u8; 32],
    /// The Ed25519 public key (32 bytes).
    pub public_key: [u8; 32],
    /// When it was made.
    pub created_at: Timestamp,
    /// When a newer key replaced it.
    pub retired_at: Option<Timestamp>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// Signing keys.
pub trait Keys {
    /// Stores a new key. Audited.
    fn insert_signing_key(
        &mut self,
        key: &SigningKey,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every key of `purpose`, newest first.
    fn signing_keys(
        &mut self,
        purpose: KeyPurpose,
    ) -> impl Future<Output = Result<Vec<SigningKey>, StoreError>> + Send;
    /// Marks every unretired key of `purpose` but `keep` retired at `now`.
    /// Audited. Returns how many it retired.
    fn retire_signing_keys(
        &mut self,
        purpose: KeyPurpose,
        keep: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

fn key32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("a signing key's {what} is not 32 bytes")))
}

impl Keys for Tx {
    async fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO signing_keys (id, purpose, algorithm, secret, public_key, created_at_us, retired_at_us) \
                 VALUES ($1, $2, 'EdDSA', $3, $4, $5, $6)",
            )
            .bind(key.id.clone())
            .bind(key.purpose.as_str())
            .bind(key.secret.to_vec())
            .bind(key.public_key.to_vec())
            .bind(micros(key.created_at))
            .bind(opt_micros(key.retired_at)),
        )
        .await?;
        Ok(())
    }

    async fn signing_keys(&mut self, purpose: KeyPurpose) -> Result<Vec<SigningKey>, StoreError> {
        let rows = self
            .all(
                sqlx::query(
                    "SELECT id, secret, public_key, created_at_us, retired_at_us FROM signing_keys \
                     WHERE purpose = $1 ORDER BY created_at_us DESC, id DESC",
                )
                .bind(purpose.as_str()),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKey {
                    id: r.text("id")?,
                    purpose,
                    secret: key32(r.bytes("secret")?, "secret")?,
                    public_key: key32(r.bytes("public_key")?, "public key")?,
                    created_at: r.time("created_at_us")?,
                    retired_at: r.opt_time("retired_at_us")?,
                })
            })
            .collect()
    }

    async fn retire_signing_keys(
        &mut self,
        purpose: KeyPurpose,
        keep: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE signing_keys SET retired_at_us = $3 \
                 WHERE purpose = $1 AND id <> $2 AND retired_at_us IS NULL",
            )
            .bind(purpose.as_str())
            .bind(keep.to_owned())
            .bind(micros(now)),
        )
        .await
    }
}
