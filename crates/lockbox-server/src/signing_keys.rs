//! The server's Ed25519 signing keys: one current key per purpose (access
//! tokens, audit checkpoints), kept in the database so every node signs
//! with the same key. `lockbox init` creates them (or the first start of a
//! database without them); `lockbox keys rotate` makes a new one and retires
//! the old, which stays stored so its public half can still be published.
//! Secrets never appear in logs or `Debug` output.

use lockbox_core::audit::{Actor, Chain, EventKind, PendingEvent};
use lockbox_core::{PublicKey, Timestamp};
use lockbox_store::{KeyPurpose, Keys as _, SigningKey, Store};
use serde_json::json;

use crate::error::ApiError;

/// The algorithm's name in events, as JOSE spells it.
const ALGORITHM: &str = "EdDSA";

/// A new random signing key. Its id is what verifiers look keys up by: the
/// RFC 7638 thumbprint for access tokens (the JWKS `kid`), the audit
/// format's key id for checkpoints.
pub fn generate(purpose: KeyPurpose, now: Timestamp) -> Result<SigningKey, ApiError> {
    let secret = lockbox_core::id::random_bytes::<32>()?;
    let public_key = ed25519_dalek::SigningKey::from_bytes(&secret)
        .verifying_key()
        .to_bytes();
    let id = match purpose {
        KeyPurpose::AccessToken => crate::access_token::thumbprint(&public_key),
        KeyPurpose::Checkpoint => checkpoint_public_key(&public_key)?.key_id().to_string(),
    };
    Ok(SigningKey {
        id,
        purpose,
        secret,
        public_key,
        created_at: now,
        retired_at: None,
    })
}

/// A stored checkpoint key's public half, as the audit format knows it.
pub(crate) fn checkpoint_public_key(public_key: &[u8; 32]) -> Result<PublicKey, ApiError> {
    PublicKey::parse(&hex::encode(public_key))
        .map_err(|e| ApiError::Internal(format!("a stored checkpoint key is unusable: {e}")))
}

/// Creates a new signing key for `purpose` and retires the others, audited
/// as `signing_key.created` on the provider's chain. Returns the new key's
/// id.
pub async fn rotate(
    store: &Store,
    purpose: KeyPurpose,
    actor: Actor,
    now: Timestamp,
) -> Result<String, ApiError> {
    let key = generate(purpose, now)?;
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
        }),
    );
    tx.commit(vec![event]).await?;
    Ok(key.id)
}

/// Creates the signing key of each purpose that has none.
pub async fn ensure(store: &Store, now: Timestamp) -> Result<(), ApiError> {
    for purpose in [KeyPurpose::AccessToken, KeyPurpose::Checkpoint] {
        if all(store, purpose)
            .await?
            .iter()
            .all(|k| k.retired_at.is_some())
        {
            rotate(store, purpose, Actor::System, now).await?;
        }
    }
    Ok(())
}

/// Every key of `purpose`, newest first.
pub async fn all(store: &Store, purpose: KeyPurpose) -> Result<Vec<SigningKey>, ApiError> {
    let mut tx = store.read().await?;
    let keys = tx.signing_keys(purpose).await?;
    tx.commit_unaudited().await?;
    Ok(keys)
}

/// The key that signs now: the newest unretired one.
pub async fn current(store: &Store, purpose: KeyPurpose) -> Result<SigningKey, ApiError> {
    all(store, purpose)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none())
        .ok_or_else(|| ApiError::Internal(format!("no {} signing key", purpose.as_str())))
}
