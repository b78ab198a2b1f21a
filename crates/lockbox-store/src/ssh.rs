//! SSH access: each tenant's certificate authorities (Ed25519 keys whose
//! secrets are sealed by the server's KEK, as signing keys are) and the
//! certificates minted for grants, by serial.
//!
//! A tenant's newest unretired authority signs; a retired one stays stored
//! so its public half is published while certificates it signed live.

use std::fmt;

use lockbox_core::{GrantId, PrincipalId, TenantId, Timestamp};
use sqlx::AssertSqlSafe;

use crate::codec::{RowExt as _, json, micros, opt_micros};
use crate::error::StoreError;
use crate::keys::SealedSecret;
use crate::tx::Tx;

/// A tenant's SSH user certificate authority. `Debug` never shows the
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SshAuthority {
    /// Its id: the key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub id: String,
    /// Whose it is.
    pub tenant: TenantId,
    /// The Ed25519 secret, sealed with the KEK.
    pub secret: SealedSecret,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// When it was made.
    pub created_at: Timestamp,
    /// When a newer authority replaced it.
    pub retired_at: Option<Timestamp>,
    /// When the last certificate it signed expires (read only; none when
    /// it signed none).
    pub last_expiry: Option<Timestamp>,
}

impl fmt::Debug for SshAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshAuthority")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("secret", &self.secret)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("last_expiry", &self.last_expiry)
            .finish()
    }
}

/// A certificate minted for a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCertificate {
    /// The grant's tenant.
    pub tenant: TenantId,
    /// Unique per tenant, from 1.
    pub serial: u64,
    /// The id of the authority that signed it.
    pub authority: String,
    /// The grant it is for.
    pub grant: GrantId,
    /// The grant's holder.
    pub principal: PrincipalId,
    /// The certificate's key id.
    pub key_id: String,
    /// The certified key's SHA-256 fingerprint.
    pub key_fingerprint: String,
    /// The SHA-256 of the certificate's wire form (hex): how `sshd`'s
    /// question names it.
    pub digest: String,
    /// Its principals.
    pub principals: Vec<String>,
    /// The Unix login it is for.
    pub login: String,
    /// Valid from.
    pub valid_after: Timestamp,
    /// Valid until (exclusive).
    pub valid_before: Timestamp,
    /// When it was minted.
    pub issued_at: Timestamp,
}

/// A certificate a KRL must revoke: its authority's public key and serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSshCertificate {
    /// The public key of the authority that signed it.
    pub authority_key: [u8; 32],
    /// Its serial.
    pub serial: u64,
    /// Its key id.
    pub key_id: String,
}

fn key32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("an SSH authority's public key is not 32 bytes"))
}

const CERTIFICATE_COLUMNS: &str = "tenant_id, serial, authority, grant_id, principal_id, key_id, key_fingerprint, digest, \
     principals, login, valid_after_us, valid_before_us, issued_at_us";

/// SSH authorities and certificates.
impl Tx {
    /// Stores a tenant's new authority. Audited.
    pub async fn insert_ssh_authority(&mut self, a: &SshAuthority) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO ssh_authorities (id, tenant_id, secret, kek_id, public_key, created_at_us, retired_at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(a.id.clone())
            .bind(a.tenant.as_str().to_owned())
            .bind(a.secret.sealed.clone())
            .bind(a.secret.kek_id.clone())
            .bind(a.public_key.to_vec())
            .bind(micros(a.created_at))
            .bind(opt_micros(a.retired_at)),
        )
        .await?;
        Ok(())
    }

    /// Every authority of `tenant`, the current one first, then the
    /// retired newest first, each with when the last certificate it signed
    /// expires.
    pub async fn ssh_authorities(
        &mut self,
        tenant: &TenantId,
    ) -> Result<Vec<SshAuthority>, StoreError> {
        let rows = self
            .all(
                sqlx::query(
                    "SELECT a.id, a.tenant_id, a.secret, a.kek_id, a.public_key, a.created_at_us, a.retired_at_us, \
                     (SELECT MAX(c.valid_before_us) FROM ssh_certificates c WHERE c.authority = a.id) AS last_expiry_us \
                     FROM ssh_authorities a WHERE a.tenant_id = $1 \
                     ORDER BY CASE WHEN a.retired_at_us IS NULL THEN 0 ELSE 1 END, a.created_at_us DESC, a.id DESC",
                )
                .bind(tenant.as_str().to_owned()),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SshAuthority {
                    id: r.text("id")?,
                    tenant: r.parsed("tenant_id")?,
                    secret: SealedSecret {
                        kek_id: r.text("kek_id")?,
                        sealed: r.bytes("secret")?,
                    },
                    public_key: key32(r.bytes("public_key")?)?,
                    created_at: r.time("created_at_us")?,
                    retired_at: r.opt_time("retired_at_us")?,
                    last_expiry: r.opt_time("last_expiry_us")?,
                })
            })
            .collect()
    }

    /// Marks every unretired authority of `tenant` but `keep` retired at
    /// `now`. Audited. Returns how many it retired.
    pub async fn retire_ssh_authorities(
        &mut self,
        tenant: &TenantId,
        keep: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE ssh_authorities SET retired_at_us = $3 \
                 WHERE tenant_id = $1 AND id <> $2 AND retired_at_us IS NULL",
            )
            .bind(tenant.as_str().to_owned())
            .bind(keep.to_owned())
            .bind(micros(now)),
        )
        .await
    }

    /// The next certificate serial of `tenant` (from 1), taken for good:
    /// concurrent transactions wait on the tenant's counter, so no two get
    /// the same. Audited.
    pub async fn next_ssh_serial(&mut self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.audited_write()?;
        let row = self
            .one(
                sqlx::query(
                    "INSERT INTO ssh_serials (tenant_id, last) VALUES ($1, 1) \
                     ON CONFLICT (tenant_id) DO UPDATE SET last = ssh_serials.last + 1 RETURNING last",
                )
                .bind(tenant.as_str().to_owned()),
            )
            .await?;
        row.u64("last")
    }

    /// Stores a minted certificate. Audited.
    pub async fn insert_ssh_certificate(&mut self, c: &SshCertificate) -> Result<(), StoreError> {
        self.audited_write()?;
        let serial = i64::try_from(c.serial)
            .map_err(|_| StoreError::corrupt("an SSH serial beyond 2^63"))?;
        self.run(
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO ssh_certificates ({CERTIFICATE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )))
            .bind(c.tenant.as_str().to_owned())
            .bind(serial)
            .bind(c.authority.clone())
            .bind(c.grant.to_string())
            .bind(c.principal.as_str().to_owned())
            .bind(c.key_id.clone())
            .bind(c.key_fingerprint.clone())
            .bind(c.digest.clone())
            .bind(json(&c.principals)?)
            .bind(c.login.clone())
            .bind(micros(c.valid_after))
            .bind(micros(c.valid_before))
            .bind(micros(c.issued_at)),
        )
        .await?;
        Ok(())
    }

    /// The certificate whose wire form hashes to `digest` (hex SHA-256).
    pub async fn ssh_certificate_by_digest(
        &mut self,
        digest: &str,
    ) -> Result<Option<SshCertificate>, StoreError> {
        let row = self
            .optional(
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM ssh_certificates WHERE digest = $1"
                )))
                .bind(digest.to_owned()),
            )
            .await?;
        row.map(|r| {
            Ok(SshCertificate {
                tenant: r.parsed("tenant_id")?,
                serial: r.u64("serial")?,
                authority: r.text("authority")?,
                grant: r.parsed("grant_id")?,
                principal: r.parsed("principal_id")?,
                key_id: r.text("key_id")?,
                key_fingerprint: r.text("key_fingerprint")?,
                digest: r.text("digest")?,
                principals: r.json("principals")?,
                login: r.text("login")?,
                valid_after: r.time("valid_after_us")?,
                valid_before: r.time("valid_before_us")?,
                issued_at: r.time("issued_at_us")?,
            })
        })
        .transpose()
    }

    /// The certificates of `tenant` a KRL must revoke at `now`: those of a
    /// grant revoked or ended (recorded as such, or past its end) that
    /// have not expired themselves, by authority and serial.
    pub async fn revoked_ssh_certificates(
        &mut self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Vec<RevokedSshCertificate>, StoreError> {
        let rows = self
            .all(
                sqlx::query(
                    "SELECT a.public_key, c.serial, c.key_id FROM ssh_certificates c \
                     JOIN grants g ON g.id = c.grant_id \
                     JOIN ssh_authorities a ON a.id = c.authority \
                     WHERE c.tenant_id = $1 AND c.valid_before_us > $2 \
                     AND (g.state <> 'active' OR g.not_after_us <= $2) \
                     ORDER BY a.id, c.serial",
                )
                .bind(tenant.as_str().to_owned())
                .bind(micros(now)),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedSshCertificate {
                    authority_key: key32(r.bytes("public_key")?)?,
                    serial: r.u64("serial")?,
                    key_id: r.text("key_id")?,
                })
            })
            .collect()
    }
}
