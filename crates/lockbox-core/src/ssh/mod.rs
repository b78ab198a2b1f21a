//! Lockbox's SSH access: what a login under a grant may do ([`SshAccess`],
//! an access level's `ssh` section), and OpenSSH's formats that Lockbox
//! writes for it: the wire
//! encoding every OpenSSH structure is made of ([`Writer`], [`Reader`]),
//! and key revocation lists ([`krl`], `PROTOCOL.krl`), which `sshd`'s
//! `RevokedKeys` reads to refuse certificates of revoked grants.
//!
//! No I/O: bytes in, bytes out.

pub mod access;
pub mod cert;
pub mod krl;

pub use access::{ForceCommand, MAX_SOURCE_ADDRESSES, SourceAddress, SshAccess, UnixLogin};

/// Why bytes are not what a format says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {why}")]
pub struct FormatError {
    /// What was being read.
    pub what: &'static str,
    /// What is wrong.
    pub why: String,
}

impl FormatError {
    fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

/// The longest public key or certificate line Lockbox reads (an RSA key
/// of 16 384 bits is about 2 800 characters).
pub const MAX_KEY_LINE: usize = 8 * 1024;

/// A key's or certificate's SHA-256 fingerprint as `ssh-keygen -l` prints
/// it: `SHA256:` and the digest in base64 without padding.
#[must_use]
pub fn fingerprint(blob: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob))
    )
}

/// A key or certificate as one line of an OpenSSH file (`id_ed25519.pub`,
/// `-cert.pub`, `TrustedUserCAKeys`): its type, its wire form in base64,
/// and a comment. `blob` must start with its type (as every wire form
/// Lockbox makes does).
#[must_use]
pub fn to_line(blob: &[u8], comment: &str) -> String {
    use base64::Engine as _;
    let kind = Reader::new(blob, "key")
        .string()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    if comment.is_empty() {
        format!("{kind} {encoded}")
    } else {
        format!("{kind} {encoded} {comment}")
    }
}

/// Reads one line of an OpenSSH public key file: `type base64 [comment]`.
/// The wire form, which must name the same type as the line.
pub fn from_line(line: &str) -> Result<Vec<u8>, FormatError> {
    use base64::Engine as _;
    let what = "public key line";
    if line.len() > MAX_KEY_LINE {
        return Err(FormatError::new(
            what,
            format!("longer than {MAX_KEY_LINE} characters"),
        ));
    }
    let mut parts = line.split_ascii_whitespace();
    let (Some(kind), Some(encoded)) = (parts.next(), parts.next()) else {
        return Err(FormatError::new(
            what,
            "expected `<type> <base64> [comment]`, as in an id_ed25519.pub file",
        ));
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| FormatError::new(what, format!("the key is not base64: {e}")))?;
    let named = Reader::new(&blob, what).string()?;
    if named != kind.as_bytes() {
        return Err(FormatError::new(
            what,
            "the line's type is not the type inside the key",
        ));
    }
    Ok(blob)
}

/// Writes SSH wire types (RFC 4251 §5): big-endian integers and
/// length-prefixed strings.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// An empty buffer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A `byte`.
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.out.push(b);
        self
    }

    /// A `uint32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A `uint64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A `string`: a `uint32` length, then the bytes. Nothing Lockbox
    /// writes comes near 4 GiB; a longer one is cut to what the length can
    /// say, which no reader accepts.
    pub fn string(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.out.extend_from_slice(bytes);
        self
    }

    /// Raw bytes, as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// The bytes written.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Reads SSH wire types from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `bytes`, which hold a `what` (named in errors).
    #[must_use]
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { rest: bytes, what }
    }

    /// Whether everything was read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.rest.len() < n {
            return Err(FormatError::new(
                self.what,
                format!("{n} bytes wanted, {} left", self.rest.len()),
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A `byte`.
    pub fn byte(&mut self) -> Result<u8, FormatError> {
        let b = self.take(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    /// A `uint32`.
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    /// A `uint64`.
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `string`'s bytes.
    pub fn string(&mut self) -> Result<&'a [u8], FormatError> {
        let len = self.u32()?;
        let len = usize::try_from(len)
            .map_err(|_| FormatError::new(self.what, "a string too long for this machine"))?;
        self.take(len)
    }
}
