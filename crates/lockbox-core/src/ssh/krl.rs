//! OpenSSH key revocation lists (`PROTOCOL.krl`): what a VM's `sshd` reads
//! from `RevokedKeys` to refuse certificates. Lockbox revokes certificates
//! only, by serial number and by key id, per issuing CA.
//!
//! A serial is never 0 (OpenSSH refuses to revoke serial 0), and a KRL
//! carries no signature section (OpenSSH 9.4 and later refuse those).

use super::{FormatError, Reader, Writer};

/// `"SSHKRL\n\0"`.
const MAGIC: u64 = 0x5353_484b_524c_0a00;
/// The only format version.
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_KEY_ID: u8 = 0x23;

/// A key revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Krl {
    /// Grows each time the list changes.
    pub version: u64,
    /// When it was made, in seconds since the epoch.
    pub generated_at: u64,
    /// Shown by `ssh-keygen -Q -l`.
    pub comment: String,
    /// Revoked certificates, per issuing CA.
    pub certificates: Vec<RevokedCertificates>,
}

/// The certificates one CA issued that are revoked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevokedCertificates {
    /// The CA's public key in SSH wire form (as in a `.pub` file, before
    /// base64); empty for any CA.
    pub ca_key: Vec<u8>,
    /// Revoked serial numbers (none of them 0).
    pub serials: Vec<u64>,
    /// Revoked key ids.
    pub key_ids: Vec<String>,
}

/// Why a KRL cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    /// Serial 0 cannot be revoked (OpenSSH refuses it).
    #[error("serial 0 cannot be revoked")]
    SerialZero,
    /// An empty key id.
    #[error("an empty key id cannot be revoked")]
    EmptyKeyId,
    /// The bytes are not a KRL Lockbox reads.
    #[error(transparent)]
    Format(#[from] FormatError),
}

fn malformed(why: impl Into<String>) -> KrlError {
    KrlError::Format(FormatError {
        what: "KRL",
        why: why.into(),
    })
}

/// Sorted, deduplicated serials as runs: `(first, last)`.
fn runs(serials: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = serials.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(s) => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

impl Krl {
    /// The KRL's bytes, as `sshd`'s `RevokedKeys` and `ssh-keygen -Q`
    /// read them. Serials are written sorted: single ones in one list,
    /// runs of three or more as ranges; key ids sorted, once each.
    pub fn encode(&self) -> Result<Vec<u8>, KrlError> {
        let mut w = Writer::new();
        w.u64(MAGIC)
            .u32(FORMAT_VERSION)
            .u64(self.version)
            .u64(self.generated_at)
            .u64(0)
            .string(b"")
            .string(self.comment.as_bytes());
        for section in &self.certificates {
            if section.serials.contains(&0) {
                return Err(KrlError::SerialZero);
            }
            if section.key_ids.iter().any(String::is_empty) {
                return Err(KrlError::EmptyKeyId);
            }
            let mut body = Writer::new();
            body.string(&section.ca_key).string(b"");
            let mut singles = Writer::new();
            let mut any_single = false;
            for (first, last) in runs(&section.serials) {
                if last - first >= 2 {
                    let mut range = Writer::new();
                    range.u64(first).u64(last);
                    body.byte(CERT_SERIAL_RANGE).string(&range.into_bytes());
                } else {
                    for s in first..=last {
                        singles.u64(s);
                        any_single = true;
                    }
                }
            }
            if any_single {
                body.byte(CERT_SERIAL_LIST).string(&singles.into_bytes());
            }
            let mut ids: Vec<&str> = section.key_ids.iter().map(String::as_str).collect();
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                let mut list = Writer::new();
                for id in ids {
                    list.string(id.as_bytes());
                }
                body.byte(CERT_KEY_ID).string(&list.into_bytes());
            }
            w.byte(SECTION_CERTIFICATES).string(&body.into_bytes());
        }
        Ok(w.into_bytes())
    }

    /// Reads a KRL of the kind [`Krl::encode`] writes: certificate sections
    /// with serial lists, ranges and key ids. Serials come back sorted,
    /// ranges expanded (at most a million serials in all).
    pub fn decode(bytes: &[u8]) -> Result<Self, KrlError> {
        const MAX_SERIALS: u64 = 1_000_000;
        let mut r = Reader::new(bytes, "KRL");
        if r.u64()? != MAGIC {
            return Err(malformed("not a KRL (bad magic)"));
        }
        let format = r.u32()?;
        if format != FORMAT_VERSION {
            return Err(malformed(format!("format version {format}")));
        }
        let version = r.u64()?;
        let generated_at = r.u64()?;
        let _flags = r.u64()?;
        let _reserved = r.string()?;
        let comment = String::from_utf8(r.string()?.to_vec())
            .map_err(|_| malformed("the comment is not UTF-8"))?;
        let mut certificates = Vec::new();
        let mut total = 0u64;
        while !r.is_empty() {
            let kind = r.byte()?;
            let data = r.string()?;
            if kind != SECTION_CERTIFICATES {
                return Err(malformed(format!("section type {kind}")));
            }
            let mut s = Reader::new(data, "KRL certificate section");
            let mut section = RevokedCertificates {
                ca_key: s.string()?.to_vec(),
                ..RevokedCertificates::default()
            };
            let _reserved = s.string()?;
            while !s.is_empty() {
                let sub = s.byte()?;
                let mut d = Reader::new(s.string()?, "KRL certificate subsection");
                match sub {
                    CERT_SERIAL_LIST => {
                        while !d.is_empty() {
                            section.serials.push(d.u64()?);
                            total += 1;
                        }
                    }
                    CERT_SERIAL_RANGE => {
                        let (first, last) = (d.u64()?, d.u64()?);
                        if first == 0 || first > last || last - first >= MAX_SERIALS - total {
                            return Err(malformed(format!("serial range {first}..{last}")));
                        }
                        section.serials.extend(first..=last);
                        total += last - first + 1;
                    }
                    CERT_KEY_ID => {
                        while !d.is_empty() {
                            let id = String::from_utf8(d.string()?.to_vec())
                                .map_err(|_| malformed("a key id is not UTF-8"))?;
                            section.key_ids.push(id);
                        }
                    }
                    other => return Err(malformed(format!("certificate subsection {other}"))),
                }
                if !d.is_empty() {
                    return Err(malformed("bytes after a subsection's items"));
                }
                if total > MAX_SERIALS {
                    return Err(malformed("too many serials"));
                }
            }
            if section.serials.contains(&0) {
                return Err(KrlError::SerialZero);
            }
            section.serials.sort_unstable();
            section.serials.dedup();
            section.key_ids.sort_unstable();
            section.key_ids.dedup();
            certificates.push(section);
        }
        Ok(Self {
            version,
            generated_at,
            comment,
            certificates,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn serials_become_lists_and_ranges() {
        assert_eq!(runs(&[5, 1, 2, 3, 9, 2]), vec![(1, 3), (5, 5), (9, 9)]);
        assert_eq!(
            runs(&[u64::MAX, u64::MAX - 1]),
            vec![(u64::MAX - 1, u64::MAX)]
        );
    }

    #[test]
    fn serial_zero_and_empty_key_ids_are_refused() {
        let krl = |serials: Vec<u64>, key_ids: Vec<String>| Krl {
            certificates: vec![RevokedCertificates {
                ca_key: vec![],
                serials,
                key_ids,
            }],
            ..Krl::default()
        };
        assert_eq!(krl(vec![0], vec![]).encode(), Err(KrlError::SerialZero));
        assert_eq!(
            krl(vec![], vec![String::new()]).encode(),
            Err(KrlError::EmptyKeyId)
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Krl::decode(b"").is_err());
        assert!(Krl::decode(b"SSHKRL\n\0\0\0\0\x02").is_err());
        let mut bytes = Krl::default().encode().unwrap();
        bytes.extend_from_slice(&[2, 0, 0, 0, 0]);
        assert!(Krl::decode(&bytes).is_err(), "an explicit-key section");
    }

    proptest! {
        #[test]
        fn serials_and_key_ids_round_trip(
            version in any::<u64>(),
            at in any::<u64>(),
            sections in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..48),
                    proptest::collection::vec(1u64..200, 0..40),
                    proptest::collection::vec("[a-z0-9:_-]{1,24}", 0..6),
                ),
                0..4,
            ),
        ) {
            let krl = Krl {
                version,
                generated_at: at,
                comment: "lockbox".into(),
                certificates: sections
                    .into_iter()
                    .map(|(ca_key, serials, key_ids)| RevokedCertificates { ca_key, serials, key_ids })
                    .collect(),
            };
            let back = Krl::decode(&krl.encode().unwrap()).unwrap();
            prop_assert_eq!(back.version, krl.version);
            prop_assert_eq!(back.generated_at, krl.generated_at);
            prop_assert_eq!(back.certificates.len(), krl.certificates.len());
            for (b, k) in back.certificates.iter().zip(&krl.certificates) {
                let mut serials = k.serials.clone();
                serials.sort_unstable();
                serials.dedup();
                let mut ids = k.key_ids.clone();
                ids.sort_unstable();
                ids.dedup();
                prop_assert_eq!(&b.ca_key, &k.ca_key);
                prop_assert_eq!(&b.serials, &serials);
                prop_assert_eq!(&b.key_ids, &ids);
            }
        }
    }
}
