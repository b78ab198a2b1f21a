//! OpenSSH user certificates (`PROTOCOL.certkeys`), signed by a Lockbox
//! CA's Ed25519 key: what an operator's `ssh` presents to a VM whose
//! `sshd` trusts the tenant's CA (`TrustedUserCAKeys`).
//!
//! The subject key may be of any type OpenSSH certifies; Lockbox accepts
//! Ed25519 and RSA keys ([`SUBJECT_KEY_TYPES`]). The certificate's type is
//! the key's with `-cert-v01@openssh.com`, and its body carries the key's
//! own fields as they are in the key's wire form.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::{FormatError, Reader, Writer};

/// The key types Lockbox certifies.
pub const SUBJECT_KEY_TYPES: [&str; 2] = ["ssh-ed25519", "ssh-rsa"];

/// A user certificate (OpenSSH's `SSH2_CERT_TYPE_USER`).
const USER_CERT: u32 = 1;

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// Unique per CA; never 0 (a KRL cannot revoke serial 0).
    pub serial: u64,
    /// Shown in `sshd`'s log and usable in a KRL.
    pub key_id: String,
    /// The names `sshd` matches against the login's authorized principals.
    pub principals: Vec<String>,
    /// Valid from (seconds since the epoch).
    pub valid_after: u64,
    /// Valid until (seconds since the epoch), exclusive.
    pub valid_before: u64,
    /// Critical options (`force-command`, `source-address`): name and value.
    pub critical_options: Vec<(String, String)>,
    /// Extensions (`permit-pty`, `permit-port-forwarding`, …): their names.
    pub extensions: Vec<String>,
    /// Random bytes that make every certificate's signed data unique.
    pub nonce: [u8; 32],
}

/// Why a certificate cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The subject key is not an SSH public key of a type Lockbox
    /// certifies.
    #[error("not an Ed25519 or RSA public key in SSH wire form: {0}")]
    SubjectKey(String),
    /// A certificate must name a principal, a serial, and a window.
    #[error("{0}")]
    Spec(&'static str),
}

impl From<FormatError> for CertError {
    fn from(e: FormatError) -> Self {
        Self::SubjectKey(e.to_string())
    }
}

/// The key type named at the head of a public key's wire form, if Lockbox
/// certifies it, and the key's fields after it.
pub fn subject_key(blob: &[u8]) -> Result<(&'static str, &[u8]), CertError> {
    let mut r = Reader::new(blob, "public key");
    let kind = r.string()?;
    let known = SUBJECT_KEY_TYPES
        .iter()
        .find(|t| t.as_bytes() == kind)
        .ok_or_else(|| {
            CertError::SubjectKey(format!(
                "key type `{}`",
                String::from_utf8_lossy(kind)
                    .chars()
                    .take(40)
                    .collect::<String>()
            ))
        })?;
    let fields = blob.get(4 + kind.len()..).unwrap_or_default();
    // The fields must be well formed: an Ed25519 key is one 32-byte
    // string; an RSA key two strings (e, n), its modulus of 2048 bits or
    // more.
    let mut f = Reader::new(fields, "public key");
    match *known {
        "ssh-ed25519" => {
            if f.string()?.len() != 32 {
                return Err(CertError::SubjectKey("an Ed25519 key is 32 bytes".into()));
            }
        }
        _ => {
            let _e = f.string()?;
            let n = f.string()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(CertError::SubjectKey(
                    "an RSA key of fewer than 2048 bits".into(),
                ));
            }
        }
    }
    if !f.is_empty() {
        return Err(CertError::SubjectKey("bytes after the key".into()));
    }
    Ok((known, fields))
}

/// An Ed25519 public key in SSH wire form (a CA's, for `TrustedUserCAKeys`
/// and KRLs).
#[must_use]
pub fn ed25519_public_key(key: &VerifyingKey) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(b"ssh-ed25519").string(key.as_bytes());
    w.into_bytes()
}

/// A packed list of options: name, then the value as a string (empty for
/// a flag), sorted by name as OpenSSH requires.
fn options<'a>(items: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Vec<u8> {
    let mut items: Vec<_> = items.collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    let mut w = Writer::new();
    for (name, value) in items {
        w.string(name.as_bytes());
        match value {
            Some(v) => {
                let mut inner = Writer::new();
                inner.string(v.as_bytes());
                w.string(&inner.into_bytes());
            }
            None => {
                w.string(b"");
            }
        }
    }
    w.into_bytes()
}

/// Signs a user certificate for `subject` (a public key in SSH wire form)
/// with the CA key `ca`: the certificate in SSH wire form (base64 it for a
/// `-cert.pub` file).
pub fn sign_user_certificate(
    ca: &SigningKey,
    subject: &[u8],
    spec: &CertificateSpec,
) -> Result<Vec<u8>, CertError> {
    let (kind, fields) = subject_key(subject)?;
    if spec.serial == 0 {
        return Err(CertError::Spec("a certificate's serial is never 0"));
    }
    if spec.principals.is_empty() || spec.principals.iter().any(String::is_empty) {
        return Err(CertError::Spec(
            "a certificate names at least one principal",
        ));
    }
    if spec.valid_after >= spec.valid_before {
        return Err(CertError::Spec("a certificate's window is empty"));
    }
    let mut principals = Writer::new();
    for p in &spec.principals {
        principals.string(p.as_bytes());
    }
    let mut w = Writer::new();
    w.string(format!("{kind}-cert-v01@openssh.com").as_bytes())
        .string(&spec.nonce)
        .raw(fields)
        .u64(spec.serial)
        .u32(USER_CERT)
        .string(spec.key_id.as_bytes())
        .string(&principals.into_bytes())
        .u64(spec.valid_after)
        .u64(spec.valid_before)
        .string(&options(
            spec.critical_options
                .iter()
                .map(|(n, v)| (n.as_str(), Some(v.as_str()))),
        ))
        .string(&options(spec.extensions.iter().map(|n| (n.as_str(), None))))
        .string(b"")
        .string(&ed25519_public_key(&ca.verifying_key()));
    let signed = w.clone().into_bytes();
    let signature = ca.sign(&signed);
    let mut sig = Writer::new();
    sig.string(b"ssh-ed25519").string(&signature.to_bytes());
    w.string(&sig.into_bytes());
    Ok(w.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519(bytes: [u8; 32]) -> Vec<u8> {
        let mut w = Writer::new();
        w.string(b"ssh-ed25519").string(&bytes);
        w.into_bytes()
    }

    fn spec() -> CertificateSpec {
        CertificateSpec {
            serial: 1,
            key_id: "k".into(),
            principals: vec!["p".into()],
            valid_after: 1,
            valid_before: 2,
            critical_options: vec![],
            extensions: vec![],
            nonce: [0; 32],
        }
    }

    #[test]
    fn only_ed25519_and_rsa_keys_are_certified() {
        assert!(subject_key(&ed25519([1; 32])).is_ok());
        let mut w = Writer::new();
        w.string(b"ssh-dss").string(b"x");
        assert!(matches!(
            subject_key(&w.into_bytes()),
            Err(CertError::SubjectKey(_))
        ));
        let mut short = Writer::new();
        short.string(b"ssh-ed25519").string(&[1; 31]);
        assert!(subject_key(&short.into_bytes()).is_err());
        let mut rsa = Writer::new();
        rsa.string(b"ssh-rsa")
            .string(&[1, 0, 1])
            .string(&[0xff; 128]);
        assert!(subject_key(&rsa.into_bytes()).is_err(), "1024 bits");
        assert!(subject_key(b"").is_err());
    }

    #[test]
    fn a_certificate_needs_a_serial_a_principal_and_a_window() {
        let ca = SigningKey::from_bytes(&[7; 32]);
        let key = ed25519([1; 32]);
        assert!(sign_user_certificate(&ca, &key, &spec()).is_ok());
        for bad in [
            CertificateSpec {
                serial: 0,
                ..spec()
            },
            CertificateSpec {
                principals: vec![],
                ..spec()
            },
            CertificateSpec {
                valid_before: 1,
                ..spec()
            },
        ] {
            assert!(matches!(
                sign_user_certificate(&ca, &key, &bad),
                Err(CertError::Spec(_))
            ));
        }
    }

    #[test]
    fn the_signature_covers_everything_before_it() {
        let ca = SigningKey::from_bytes(&[7; 32]);
        let cert = sign_user_certificate(&ca, &ed25519([1; 32]), &spec()).unwrap();
        // The last field is the signature: string("ssh-ed25519"),
        // string(64 bytes), 4 + 11 + 4 + 64 bytes, in a string.
        let (signed, sig) = cert.split_at(cert.len() - (4 + 4 + 11 + 4 + 64));
        let raw: [u8; 64] = sig[sig.len() - 64..].try_into().unwrap();
        let signature = ed25519_dalek::Signature::from_bytes(&raw);
        assert!(ca.verifying_key().verify_strict(signed, &signature).is_ok());
    }
}
