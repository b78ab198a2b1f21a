//! The key-encryption key (KEK): 32 random bytes, kept in a file outside
//! the database (`[keys] kek_file`), that seal the signing keys the
//! database stores. Someone with the database alone then holds no key
//! that signs access tokens or audit checkpoints.
//!
//! The file holds the key as 64 hexadecimal digits (and, optionally, a
//! final newline), so that it can be copied into a password manager or a
//! secret store and back. `lockbox init` (or `lockbox keys create-kek`)
//! writes it with mode 0600 and never overwrites one.
//!
//! A secret is sealed with ChaCha20-Poly1305 (ring's, already compiled in
//! for TLS) under a fresh random nonce, with the key's id and purpose as
//! associated data, so a sealed secret moved to another row no longer
//! opens. Each sealed secret names the KEK that sealed it by the KEK's id,
//! a hash of it that tells KEKs apart without revealing them, so a wrong
//! KEK is refused by name rather than by a failure to decrypt.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lockbox_store::{KeyPurpose, SealedSecret};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};

/// The length of a KEK, in bytes.
const KEK_LEN: usize = 32;

/// What a sealed secret is bound to, beyond its KEK.
const AAD_CONTEXT: &[u8] = b"lockbox signing key v1";

/// Why a KEK could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The file could not be read.
    #[error("cannot read the key-encryption key {}: {source}", path.display())]
    Read {
        /// Which file.
        path: PathBuf,
        /// The error the system gave.
        source: std::io::Error,
    },
    /// The file does not hold a KEK.
    #[error(
        "{} is not a key-encryption key: it must hold 64 hexadecimal digits (32 bytes), as `lockbox keys create-kek` writes",
        path.display()
    )]
    Malformed {
        /// Which file.
        path: PathBuf,
    },
    /// A KEK file is already there; it is never overwritten.
    #[error(
        "{} already exists; a key-encryption key is never overwritten (the signing keys it seals would be lost). \
         Keep it, or move it away yourself first",
        path.display()
    )]
    Exists {
        /// Which file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot write the key-encryption key {}: {source}", path.display())]
    Write {
        /// Which file.
        path: PathBuf,
        /// The error the system gave.
        source: std::io::Error,
    },
    /// No randomness, or the AEAD refused.
    #[error("{0}")]
    Crypto(String),
}

/// A sealed secret that would not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed by another KEK.
    #[error("sealed with KEK {sealed_with}, not {this}")]
    OtherKek {
        /// The KEK it names.
        sealed_with: String,
        /// This KEK's id.
        this: String,
    },
    /// The right KEK, but the bytes or the row they sit in changed.
    #[error("it does not open: its ciphertext was changed, or moved from another key's row")]
    Tampered,
}

/// The key-encryption key. Cheap to clone; `Debug` shows its id only.
#[derive(Clone)]
pub struct Kek {
    inner: Arc<Inner>,
}

struct Inner {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.inner.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Kek {
    fn from_bytes(bytes: &[u8; KEK_LEN]) -> Result<Self, KekError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| KekError::Crypto("ChaCha20-Poly1305 refused a 32-byte key".into()))?;
        let digest = Sha256::new()
            .chain_update(b"lockbox kek id\0")
            .chain_update(bytes)
            .finalize();
        let id = hex::encode(digest.get(..8).unwrap_or_default());
        Ok(Self {
            inner: Arc::new(Inner {
                key: LessSafeKey::new(key),
                id,
            }),
        })
    }

    /// A new random KEK, in memory only (tests, and `lockbox demo`'s
    /// private server).
    pub fn generate() -> Result<Self, KekError> {
        Self::from_bytes(&random()?)
    }

    /// The KEK in `path`.
    pub fn load(path: &Path) -> Result<Self, KekError> {
        let text = std::fs::read_to_string(path).map_err(|source| KekError::Read {
            path: path.to_owned(),
            source,
        })?;
        let malformed = || KekError::Malformed {
            path: path.to_owned(),
        };
        let digits = text.strip_suffix('\n').unwrap_or(&text);
        let digits = digits.strip_suffix('\r').unwrap_or(digits);
        let bytes: [u8; KEK_LEN] = hex::decode(digits)
            .map_err(|_| malformed())?
            .try_into()
            .map_err(|_| malformed())?;
        warn_if_readable_by_others(path);
        Self::from_bytes(&bytes)
    }

    /// Makes a new random KEK and writes it to `path`, which must not
    /// exist, readable and writable by its owner only (mode 0600).
    pub fn create(path: &Path) -> Result<Self, KekError> {
        use std::io::Write as _;
        let bytes = random()?;
        let kek = Self::from_bytes(&bytes)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KekError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KekError::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let written = file
            .write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            let _ = std::fs::remove_file(path);
            return Err(KekError::Write {
                path: path.to_owned(),
                source,
            });
        }
        Ok(kek)
    }

    /// The KEK's id: the first 8 bytes of a SHA-256 of it, in hex. It
    /// names the KEK in the database and in messages without revealing it.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Seals the secret of signing key `id` of `purpose`.
    pub fn seal(
        &self,
        id: &str,
        purpose: KeyPurpose,
        secret: &[u8; 32],
    ) -> Result<SealedSecret, KekError> {
        self.seal_bytes(id, purpose, secret)
    }

    /// Seals a secret of any length (a client secret) for `id` and
    /// `purpose`.
    pub fn seal_bytes(
        &self,
        id: &str,
        purpose: KeyPurpose,
        secret: &[u8],
    ) -> Result<SealedSecret, KekError> {
        let nonce: [u8; NONCE_LEN] = lockbox_core::id::random_bytes()
            .map_err(|e| KekError::Crypto(format!("no randomness for a nonce: {e}")))?;
        let mut in_out = secret.to_vec();
        self.inner
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(id, purpose)),
                &mut in_out,
            )
            .map_err(|_| KekError::Crypto("ChaCha20-Poly1305 refused to seal".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(SealedSecret {
            kek_id: self.inner.id.clone(),
            sealed,
        })
    }

    /// Opens the sealed secret of signing key `id` of `purpose`.
    pub fn open(
        &self,
        id: &str,
        purpose: KeyPurpose,
        sealed: &SealedSecret,
    ) -> Result<[u8; 32], OpenError> {
        let plain = self.open_bytes(id, purpose, sealed)?;
        <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| OpenError::Tampered)
    }

    /// Opens a secret sealed by [`Kek::seal_bytes`].
    pub fn open_bytes(
        &self,
        id: &str,
        purpose: KeyPurpose,
        sealed: &SealedSecret,
    ) -> Result<Vec<u8>, OpenError> {
        if sealed.kek_id != self.inner.id {
            return Err(OpenError::OtherKek {
                sealed_with: sealed.kek_id.clone(),
                this: self.inner.id.clone(),
            });
        }
        let (nonce, ciphertext) = sealed
            .sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(OpenError::Tampered)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Tampered)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .inner
            .key
            .open_in_place(nonce, Aad::from(aad(id, purpose)), &mut in_out)
            .map_err(|_| OpenError::Tampered)?;
        Ok(plain.to_vec())
    }
}

fn random() -> Result<[u8; KEK_LEN], KekError> {
    lockbox_core::id::random_bytes()
        .map_err(|e| KekError::Crypto(format!("no randomness for a key-encryption key: {e}")))
}

/// The associated data: the key's purpose and id, each ended by a NUL
/// (neither contains one), after a context string.
fn aad(id: &str, purpose: KeyPurpose) -> Vec<u8> {
    let mut aad = AAD_CONTEXT.to_vec();
    aad.push(0);
    aad.extend_from_slice(purpose.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad.push(0);
    aad
}

/// The KEK is as secret as every signing key together: say so when the
/// file is readable by anyone but its owner.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the key-encryption key file is readable by others than its owner; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Where `lockbox init` and `serve --demo` put a KEK when none is
/// configured: beside a SQLite database, named after it with the extension
/// `.kek` (`lockbox.db` → `lockbox.kek`, not `lockbox.db.kek`, so that a
/// copy of `lockbox.db*` does not take it along); `lockbox.kek` in the
/// working directory for any other database.
#[must_use]
pub fn default_path(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|f| !f.is_empty());
    match file {
        Some(file) => {
            let db = Path::new(file);
            let kek = db.with_extension("kek");
            if kek == db {
                let mut name = db.as_os_str().to_owned();
                name.push(".kek");
                PathBuf::from(name)
            } else {
                kek
            }
        }
        None => PathBuf::from("lockbox.kek"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_kek_id_and_purpose() {
        let kek = Kek::generate().unwrap();
        let secret = [42u8; 32];
        let sealed = kek.seal("k1", KeyPurpose::Checkpoint, &secret).unwrap();
        assert!(!sealed.sealed.windows(32).any(|w| w == secret));
        assert_eq!(sealed.sealed.len(), NONCE_LEN + 32 + 16);
        assert_eq!(
            kek.open("k1", KeyPurpose::Checkpoint, &sealed).unwrap(),
            secret
        );
        assert_eq!(
            kek.open("k2", KeyPurpose::Checkpoint, &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            kek.open("k1", KeyPurpose::AccessToken, &sealed),
            Err(OpenError::Tampered)
        );
        let mut flipped = sealed.clone();
        flipped.sealed[NONCE_LEN] ^= 1;
        assert_eq!(
            kek.open("k1", KeyPurpose::Checkpoint, &flipped),
            Err(OpenError::Tampered)
        );
        let other = Kek::generate().unwrap();
        assert_ne!(other.id(), kek.id());
        assert!(matches!(
            other.open("k1", KeyPurpose::Checkpoint, &sealed),
            Err(OpenError::OtherKek { .. })
        ));
        // Same key, another id claimed: still no.
        let renamed = SealedSecret {
            kek_id: other.id().to_owned(),
            ..sealed
        };
        assert_eq!(
            other.open("k1", KeyPurpose::Checkpoint, &renamed),
            Err(OpenError::Tampered)
        );
        assert!(!format!("{kek:?}").contains("key: ["));
    }

    #[test]
    fn default_paths_sit_beside_the_database() {
        assert_eq!(
            default_path("sqlite://lockbox.db"),
            PathBuf::from("lockbox.kek")
        );
        assert_eq!(
            default_path("sqlite:///var/lib/lockbox/prod.db?mode=rwc"),
            PathBuf::from("/var/lib/lockbox/prod.kek")
        );
        assert_eq!(
            default_path("sqlite://data/x.kek"),
            PathBuf::from("data/x.kek.kek")
        );
        assert_eq!(
            default_path("postgres://lockbox@db/lockbox"),
            PathBuf::from("lockbox.kek")
        );
    }

    #[test]
    fn the_file_is_created_once_owner_only_and_read_back() {
        let dir = std::env::temp_dir().join(format!("lockbox-kek-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lockbox.kek");
        let _ = std::fs::remove_file(&path);
        let made = Kek::create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline: {text:?}");
        assert_eq!(Kek::load(&path).unwrap().id(), made.id());
        let e = Kek::create(&path).unwrap_err();
        assert!(matches!(e, KekError::Exists { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "not overwritten"
        );
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            Kek::load(&path).unwrap_err(),
            KekError::Malformed { .. }
        ));
        std::fs::write(&path, &text[..32]).unwrap();
        assert!(matches!(
            Kek::load(&path).unwrap_err(),
            KekError::Malformed { .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
