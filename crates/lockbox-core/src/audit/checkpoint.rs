//! Signed checkpoints: an Ed25519 signature over a chain's head.
//!
//! A checkpoint says "in this chain, event `seq` has hash `head_hash`, as of
//! `at`", signed with the installation's checkpoint key. Because every hash
//! covers all the events before it, one signature vouches for the whole
//! prefix: a verifier that holds the public key detects any rewrite of it,
//! and truncation below the signed sequence number.
//!
//! The signed message is the canonical (RFC 8785) encoding of
//! `{"at", "head_hash", "seq", "tenant", "type": "lockbox.checkpoint.v1"}`.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::canonical::{NotCanonical, write_str, write_uint};
use super::{Chain, ChainHead, Digest, FormatError, lower_hex, micros};
use crate::clock::{Timestamp, to_stored_precision};
use crate::id::{RandomnessError, random_bytes};

/// The `type` member of the signed message; a new format gets a new value.
pub const CHECKPOINT_TYPE: &str = "lockbox.checkpoint.v1";

/// Identifies a signing key: the first 8 bytes of SHA-256 of the raw 32-byte
/// public key, as 16 hex digits. Lets a verifier pick the right key after a
/// rotation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        Self(id)
    }

    /// Parses 16 hex digits.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let mut id = [0u8; 8];
        lower_hex(s, &mut id, "a key id (16 hex digits)")?;
        Ok(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a checkpoint's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No key to check it with.
    #[error("no public key was given to check the signature with")]
    NoKeys,
    /// Signed by a key that was not given.
    #[error("signed by key {0}, which is not among the given public keys")]
    UnknownKey(KeyId),
    /// The checkpoint has no canonical encoding to check against.
    #[error(transparent)]
    NotCanonical(#[from] NotCanonical),
    /// The signature is not the key's over the checkpoint.
    #[error("the signature does not match the checkpoint's contents")]
    Mismatch,
}

/// An Ed25519 signature, written as 128 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Parses 128 hex digits.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let mut sig = [0u8; 64];
        lower_hex(s, &mut sig, "an Ed25519 signature (128 hex digits)")?;
        Ok(Self(sig))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

macro_rules! hex_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_serde!(KeyId);
hex_serde!(Signature);
hex_serde!(PublicKey);

/// A checkpoint-verifying key, published for anyone to check exports with.
/// Written as the 64 hex digits of the raw 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 64 lowercase hex digits (surrounding whitespace, such as the
    /// newline at the end of a key file, is ignored).
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let mut raw = [0u8; 32];
        lower_hex(s.trim(), &mut raw, "an Ed25519 public key (64 hex digits)")?;
        VerifyingKey::from_bytes(&raw)
            .map(Self)
            .map_err(|e| FormatError::PublicKey(e.to_string()))
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// The raw 32 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// The checkpoint-signing key. Its `Debug` never shows the secret, and
/// nothing in Lockbox logs it.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl CheckpointSigner {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, RandomnessError> {
        Ok(Self::from_secret_bytes(&random_bytes()?))
    }

    /// The key with this 32-byte secret seed.
    #[must_use]
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret seed, for the key store. Handle with care.
    #[must_use]
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs `head` as of `at`.
    pub fn sign(&self, head: &ChainHead, at: Timestamp) -> Result<Checkpoint, NotCanonical> {
        let mut checkpoint = Checkpoint {
            chain: head.chain.clone(),
            seq: head.seq,
            head_hash: head.hash,
            at: to_stored_precision(at),
            key_id: self.public_key().key_id(),
            signature: Signature([0; 64]),
        };
        let message = checkpoint.signed_bytes()?;
        checkpoint.signature = Signature(self.key.sign(&message).to_bytes());
        Ok(checkpoint)
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.public_key().key_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A signed statement of a chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The chain (`tenant` id, or `null` for the provider chain).
    #[serde(rename = "tenant")]
    pub chain: Chain,
    /// The sequence number of the head event (0 for an empty chain).
    pub seq: u64,
    /// The head event's hash.
    pub head_hash: Digest,
    /// When the checkpoint was made.
    #[serde(with = "micros")]
    pub at: Timestamp,
    /// Which key signed it.
    pub key_id: KeyId,
    /// Ed25519 over [`Checkpoint::signed_bytes`].
    pub signature: Signature,
}

impl Checkpoint {
    /// The message the signature covers.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, NotCanonical> {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"{\"at\":");
        write_str(&mut out, &micros::format(&self.at));
        out.extend_from_slice(b",\"head_hash\":");
        write_str(&mut out, &self.head_hash.to_string());
        out.extend_from_slice(b",\"seq\":");
        write_uint(&mut out, self.seq)?;
        out.extend_from_slice(b",\"tenant\":");
        match self.chain.tenant() {
            Some(t) => write_str(&mut out, t.as_str()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"type\":");
        write_str(&mut out, CHECKPOINT_TYPE);
        out.push(b'}');
        Ok(out)
    }

    /// Checks the signature with the key named by `key_id` among `keys`.
    pub fn verify_signature(&self, keys: &[PublicKey]) -> Result<(), SignatureError> {
        let Some(key) = keys.iter().find(|k| k.key_id() == self.key_id) else {
            return Err(if keys.is_empty() {
                SignatureError::NoKeys
            } else {
                SignatureError::UnknownKey(self.key_id)
            });
        };
        let message = self.signed_bytes()?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.0
            .verify_strict(&message, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}
