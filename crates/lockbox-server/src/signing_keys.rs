//! The server's Ed25519 signing keys: one current key per purpose (access
//! tokens, audit checkpoints), kept in the database so every node signs
//! with the same key, each secret sealed by the key-encryption key
//! ([`Kek`], `[keys] kek_file`). `lockbox init` creates them (or the first
//! start of a database without them); `lockbox keys rotate` makes a new one
//! and retires the old, which stays stored so its public half can still be
//! published. Secrets never appear in logs or `Debug` output.
//!
//! [`prepare`] runs before a server (or `keys rotate`) uses the keys: it
//! refuses a KEK other than the one that sealed them, by name; seals the
//! secrets a database from before the KEK holds in clear; opens every key
//! once, so a changed or moved ciphertext stops the start rather than a
//! later signature; and creates the keys that are missing. Only keys that
//! open, to the secret of their own public key, are published
//! ([`published`]): a public key written into the database behind
//! Lockbox's back is never offered to verifiers.

use lockbox_core::audit::{Actor, Chain, EventKind, PendingEvent};
use lockbox_core::{PublicKey, Timestamp};
use lockbox_store::{KeyPurpose, SigningKey, Store, StoreError, StoredSecret};
use serde_json::json;

use crate::kek::{Kek, KekError, OpenError};
use crate::service::ServiceError;

/// The algorithm's name in events, as JOSE spells it.
const ALGORITHM: &str = "EdDSA";

/// Every purpose a key serves.
const PURPOSES: [KeyPurpose; 2] = [KeyPurpose::AccessToken, KeyPurpose::Checkpoint];

/// Why the stored signing keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keys were sealed by another KEK than the configured one.
    #[error(
        "the signing keys were encrypted with KEK {sealed_with}; [keys] kek_file holds {configured}. \
         Configure the file of KEK {sealed_with} (the one made with this database)"
    )]
    WrongKek {
        /// The KEK the stored keys name.
        sealed_with: String,
        /// The configured KEK's id.
        configured: String,
    },
    /// The right KEK, but a key does not open: its row was edited.
    #[error("signing key {id} ({purpose}) does not open with KEK {kek}: {why}")]
    Unopenable {
        /// The key.
        id: String,
        /// Its purpose.
        purpose: &'static str,
        /// The KEK.
        kek: String,
        /// What is wrong.
        why: OpenError,
    },
    /// A key's secret is not the one of its public key.
    #[error("signing key {id} ({purpose}): its secret does not match its public key")]
    Mismatch {
        /// The key.
        id: String,
        /// Its purpose.
        purpose: &'static str,
    },
    /// A key is still in clear where a sealed one was expected.
    #[error(
        "signing key {0} is stored in clear (written by a Lockbox without a key-encryption key); \
         start a server with [keys] kek_file to seal it"
    )]
    Clear(String),
    /// A key in clear beside sealed ones: no Lockbox writes that.
    #[error(
        "signing key {0} is stored in clear, but this database's other signing keys are sealed: \
         Lockbox did not write it (a row added behind its back?). Remove that row before starting"
    )]
    StrayClear(String),
    /// Sealing failed.
    #[error("{0}")]
    Kek(#[from] KekError),
    /// The database failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<KeyError> for ServiceError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ServiceError> for KeyError {
    fn from(e: ServiceError) -> Self {
        Self::Other(e.to_string())
    }
}

/// A signing key opened with the KEK: what signs. `Debug` never shows the
/// secret.
pub struct OpenedKey {
    /// The key id.
    pub id: String,
    secret: [u8; 32],
}

impl OpenedKey {
    /// The Ed25519 secret key.
    #[must_use]
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl std::fmt::Debug for OpenedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub(crate) fn public_key_of(secret: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret)
        .verifying_key()
        .to_bytes()
}

/// A new random signing key, sealed with `kek`. Its id is what verifiers
/// look keys up by: the RFC 7638 thumbprint for access tokens (the JWKS
/// `kid`), the audit format's key id for checkpoints.
pub fn generate(
    kek: &Kek,
    purpose: KeyPurpose,
    now: Timestamp,
) -> Result<SigningKey, ServiceError> {
    let secret = lockbox_core::id::random_bytes::<32>()?;
    let public_key = public_key_of(&secret);
    let id = match purpose {
        KeyPurpose::AccessToken => crate::access_token::thumbprint(&public_key),
        KeyPurpose::Checkpoint => checkpoint_public_key(&public_key)?.key_id().to_string(),
        KeyPurpose::SshAuthority | KeyPurpose::IdpClientSecret => {
            return Err(ServiceError::Internal(format!(
                "a {} is not a signing key",
                purpose.as_str()
            )));
        }
    };
    let sealed = kek
        .seal(&id, purpose, &secret)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(SigningKey {
        id,
        purpose,
        secret: StoredSecret::Sealed(sealed),
        public_key,
        created_at: now,
        retired_at: None,
    })
}

/// A stored checkpoint key's public half, as the audit format knows it.
pub(crate) fn checkpoint_public_key(public_key: &[u8; 32]) -> Result<PublicKey, ServiceError> {
    PublicKey::parse(&hex::encode(public_key))
        .map_err(|e| ServiceError::Internal(format!("a stored checkpoint key is unusable: {e}")))
}

/// Creates a new signing key for `purpose`, sealed with `kek`, and retires
/// the others, audited as `signing_key.created` on the provider's chain.
/// Returns the new key's id.
pub async fn rotate(
    store: &Store,
    kek: &Kek,
    purpose: KeyPurpose,
    actor: Actor,
    now: Timestamp,
) -> Result<String, ServiceError> {
    let key = generate(kek, purpose, now)?;
    let mut tx = store.begin().await?;
    tx.insert_signing_key(&key).await?;
    let retired = tx.retire_signing_keys(purpose, &key.id, now).await?;
    let event = PendingEvent::new(
        Chain::Provider,
        now,
        actor,
        EventKind::SigningKeyCreated,
        &key.id,
        json!({
            "purpose": purpose.as_str(),
            "algorithm": ALGORITHM,
            "keys_retired": retired,
            "kek": kek.id(),
        }),
    );
    tx.commit(vec![event]).await?;
    Ok(key.id)
}

/// Opens `key` with `kek` and checks its secret against its public key.
fn open(kek: &Kek, key: &SigningKey) -> Result<OpenedKey, KeyError> {
    let StoredSecret::Sealed(sealed) = &key.secret else {
        return Err(KeyError::Clear(key.id.clone()));
    };
    let secret = kek
        .open(&key.id, key.purpose, sealed)
        .map_err(|why| match why {
            OpenError::OtherKek { sealed_with, this } => KeyError::WrongKek {
                sealed_with,
                configured: this,
            },
            why @ OpenError::Tampered => KeyError::Unopenable {
                id: key.id.clone(),
                purpose: key.purpose.as_str(),
                kek: kek.id().to_owned(),
                why,
            },
        })?;
    if public_key_of(&secret) != key.public_key {
        return Err(KeyError::Mismatch {
            id: key.id.clone(),
            purpose: key.purpose.as_str(),
        });
    }
    Ok(OpenedKey {
        id: key.id.clone(),
        secret,
    })
}

/// Makes the stored keys usable with `kek`, or says why they are not:
/// refuses a KEK other than the one that sealed them (before changing
/// anything), seals the keys still in clear (audited as
/// `signing_key.sealed`), opens every key, and creates the key of each
/// purpose that has no current one. Safe on many nodes at once: a key is
/// sealed by whichever node gets there first.
pub async fn prepare(store: &Store, kek: &Kek, now: Timestamp) -> Result<(), KeyError> {
    let mut keys = Vec::new();
    for purpose in PURPOSES {
        keys.extend(all(store, purpose).await?);
    }
    if let Some(sealed_with) = keys.iter().find_map(|k| match &k.secret {
        StoredSecret::Sealed(s) if s.kek_id != kek.id() => Some(s.kek_id.clone()),
        _ => None,
    }) {
        return Err(KeyError::WrongKek {
            sealed_with,
            configured: kek.id().to_owned(),
        });
    }
    let clear: Vec<(&SigningKey, &[u8; 32])> = keys
        .iter()
        .filter_map(|k| match &k.secret {
            StoredSecret::Clear(secret) => Some((k, secret)),
            StoredSecret::Sealed(_) => None,
        })
        .collect();
    let sealed: Vec<&SigningKey> = keys
        .iter()
        .filter(|k| matches!(k.secret, StoredSecret::Sealed(_)))
        .collect();
    // An older database has every key in clear, and they are sealed
    // together: a clear key beside sealed ones was planted (it would be
    // sealed, then published and trusted).
    if let (Some((stray, _)), false) = (clear.first(), sealed.is_empty()) {
        return Err(KeyError::StrayClear(stray.id.clone()));
    }
    for key in sealed {
        open(kek, key)?;
    }
    if !clear.is_empty() {
        seal_in_place(store, kek, &clear, now).await?;
    }
    for purpose in PURPOSES {
        if keys
            .iter()
            .filter(|k| k.purpose == purpose)
            .all(|k| k.retired_at.is_some())
        {
            rotate(store, kek, purpose, Actor::System, now).await?;
        }
    }
    Ok(())
}

/// Seals, in one transaction, the keys a database from before the KEK
/// holds in clear.
async fn seal_in_place(
    store: &Store,
    kek: &Kek,
    clear: &[(&SigningKey, &[u8; 32])],
    now: Timestamp,
) -> Result<(), KeyError> {
    let mut tx = store.begin().await?;
    let mut events = Vec::new();
    for &(key, secret) in clear {
        if public_key_of(secret) != key.public_key {
            return Err(KeyError::Mismatch {
                id: key.id.clone(),
                purpose: key.purpose.as_str(),
            });
        }
        let sealed = kek.seal(&key.id, key.purpose, secret)?;
        if tx.seal_signing_key(&key.id, &sealed).await? {
            events.push(PendingEvent::new(
                Chain::Provider,
                now,
                Actor::System,
                EventKind::SigningKeySealed,
                &key.id,
                json!({ "purpose": key.purpose.as_str(), "kek": kek.id() }),
            ));
        }
    }
    if events.is_empty() {
        // Another node sealed them first; dropping the transaction rolls
        // back (nothing was changed).
        return Ok(());
    }
    let sealed = events.len();
    tx.commit(events).await?;
    tracing::info!(
        keys = sealed,
        kek = kek.id(),
        "sealed the signing keys stored in clear with the key-encryption key"
    );
    Ok(())
}

/// The ids of the KEKs the stored keys are sealed with (for a message
/// when none is configured).
pub async fn sealed_with(store: &Store) -> Result<Vec<String>, ServiceError> {
    let mut ids = Vec::new();
    for purpose in PURPOSES {
        for key in all(store, purpose).await? {
            if let StoredSecret::Sealed(s) = key.secret
                && !ids.contains(&s.kek_id)
            {
                ids.push(s.kek_id);
            }
        }
    }
    Ok(ids)
}

/// Every key of `purpose`, newest first (sealed: for their public halves).
pub async fn all(store: &Store, purpose: KeyPurpose) -> Result<Vec<SigningKey>, ServiceError> {
    let mut tx = store.read().await?;
    let keys = tx.signing_keys(purpose).await?;
    tx.commit_unaudited().await?;
    Ok(keys)
}

/// Every key of `purpose` whose sealed secret opens with `kek` to the
/// secret of its own public key, newest first: the keys to publish. A key
/// that does not (its row edited behind Lockbox's back) is left out and
/// logged.
pub async fn published(
    store: &Store,
    kek: &Kek,
    purpose: KeyPurpose,
) -> Result<Vec<SigningKey>, ServiceError> {
    Ok(all(store, purpose)
        .await?
        .into_iter()
        .filter(|key| match open(kek, key) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(key = %key.id, error = %e, "not publishing a signing key that does not open");
                false
            }
        })
        .collect())
}

/// The key that signs now, the newest unretired one, opened with `kek`.
pub async fn current(
    store: &Store,
    kek: &Kek,
    purpose: KeyPurpose,
) -> Result<OpenedKey, ServiceError> {
    let key = all(store, purpose)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none())
        .ok_or_else(|| ServiceError::Internal(format!("no {} signing key", purpose.as_str())))?;
    Ok(open(kek, &key)?)
}
