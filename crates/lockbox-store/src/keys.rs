//! Signing keys: Ed25519 keys that sign access tokens and audit
//! checkpoints. The newest unretired key of a purpose signs; retired keys
//! stay stored so their public halves can still be published while tokens
//! they signed live.
//!
//! The store keeps a key's secret only sealed by the server's key-encryption
//! key (KEK): it writes no other kind, and reads a secret in clear only from
//! a database made before migration 0006, until the server seals it. The
//! sealing itself is the server's (the store holds no KEK); the store keeps
//! the sealed bytes and the id of the KEK that sealed them.

use std::fmt;

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
    /// A tenant's SSH user certificates (its SSH authority, kept apart from
    /// the signing keys; the purpose binds a sealed secret to its table).
    SshAuthority,
    /// A tenant's client secret at its identity provider.
    IdpClientSecret,
}

impl KeyPurpose {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::Checkpoint => "checkpoint",
            Self::SshAuthority => "ssh_authority",
            Self::IdpClientSecret => "idp_client_secret",
        }
    }
}

/// A signing key's secret sealed with a key-encryption key: what the
/// `secret` column holds once `kek_id` names the KEK.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The id of the KEK that sealed it.
    pub kek_id: String,
    /// The AEAD's nonce, ciphertext and tag, as the server lays them out.
    pub sealed: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("kek_id", &self.kek_id)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// A signing key's secret as stored.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredSecret {
    /// Sealed with a KEK: the only kind the store writes.
    Sealed(SealedSecret),
    /// The 32-byte Ed25519 secret in clear: only in a database made before
    /// migration 0006, until the server seals it at start-up
    /// ([`Tx::seal_signing_key`]).
    Clear([u8; 32]),
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sealed(sealed) => f.debug_tuple("Sealed").field(sealed).finish(),
            Self::Clear(_) => f.write_str("Clear(<redacted>)"),
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
    /// The Ed25519 secret key, sealed (or, before the first start with a
    /// KEK, in clear).
    pub secret: StoredSecret,
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
            .field("secret", &self.secret)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

fn key32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("a signing key's {what} is not 32 bytes")))
}

/// Signing keys.
impl Tx {
    /// Stores a new key. Audited. A key whose secret is in clear is refused
    /// ([`StoreError::Unsealed`]): the store writes sealed secrets only.
    pub async fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), StoreError> {
        let StoredSecret::Sealed(sealed) = &key.secret else {
            return Err(StoreError::Unsealed);
        };
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO signing_keys (id, purpose, algorithm, secret, kek_id, public_key, created_at_us, retired_at_us) \
                 VALUES ($1, $2, 'EdDSA', $3, $4, $5, $6, $7)",
            )
            .bind(key.id.clone())
            .bind(key.purpose.as_str())
            .bind(sealed.sealed.clone())
            .bind(sealed.kek_id.clone())
            .bind(key.public_key.to_vec())
            .bind(micros(key.created_at))
            .bind(opt_micros(key.retired_at)),
        )
        .await?;
        Ok(())
    }

    /// When the newest unretired key of each purpose was made (the key
    /// that signs now), by purpose name.
    pub async fn signing_key_ages(&mut self) -> Result<Vec<(String, Timestamp)>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT purpose, MAX(created_at_us) AS created_at_us FROM signing_keys \
                 WHERE retired_at_us IS NULL AND purpose IN ('access_token', 'checkpoint') \
                 GROUP BY purpose ORDER BY purpose",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("purpose")?, r.time("created_at_us")?)))
            .collect()
    }

    /// Every key of `purpose`, newest first.
    pub async fn signing_keys(
        &mut self,
        purpose: KeyPurpose,
    ) -> Result<Vec<SigningKey>, StoreError> {
        let rows = self
            .all(
                sqlx::query(
                    "SELECT id, secret, kek_id, public_key, created_at_us, retired_at_us FROM signing_keys \
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
                    secret: match r.opt_text("kek_id")? {
                        Some(kek_id) => StoredSecret::Sealed(SealedSecret {
                            kek_id,
                            sealed: r.bytes("secret")?,
                        }),
                        None => StoredSecret::Clear(key32(r.bytes("secret")?, "secret")?),
                    },
                    public_key: key32(r.bytes("public_key")?, "public key")?,
                    created_at: r.time("created_at_us")?,
                    retired_at: r.opt_time("retired_at_us")?,
                })
            })
            .collect()
    }

    /// Marks every unretired key of `purpose` but `keep` retired at `now`.
    /// Audited. Returns how many it retired.
    pub async fn retire_signing_keys(
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

    /// Replaces the clear secret of key `id` by `sealed`. Audited. Returns
    /// whether it did: `false` when the key is already sealed (another node
    /// sealed it first) or does not exist.
    pub async fn seal_signing_key(
        &mut self,
        id: &str,
        sealed: &SealedSecret,
    ) -> Result<bool, StoreError> {
        self.audited_write()?;
        let changed = self
            .run(
                sqlx::query(
                    "UPDATE signing_keys SET secret = $2, kek_id = $3 \
                     WHERE id = $1 AND kek_id IS NULL",
                )
                .bind(id.to_owned())
                .bind(sealed.sealed.clone())
                .bind(sealed.kek_id.clone()),
            )
            .await?;
        Ok(changed > 0)
    }
}
