//! Single sign-on: each tenant's identity provider, the IdP subject each
//! person is linked to, and the sign-ins under way.

use lockbox_core::sso::IdentityProvider;
use lockbox_core::{PrincipalId, TenantId, Timestamp, TokenId};

use crate::codec::{RowExt as _, flag, json, micros};
use crate::error::StoreError;
use crate::keys::SealedSecret;
use crate::tx::Tx;

use super::RevokedToken;

/// A tenant's identity provider as stored: its settings and its client
/// secret, sealed by the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentityProvider {
    /// The settings.
    pub provider: IdentityProvider,
    /// The client secret, sealed.
    pub secret: SealedSecret,
    /// When it was last set.
    pub updated_at: Timestamp,
}

/// A person's link to an identity provider's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityLink {
    /// The person.
    pub principal: PrincipalId,
    /// The IdP's issuer identifier.
    pub issuer: String,
    /// The subject (`sub`) the IdP knows them by.
    pub subject: String,
    /// What the provider's principal claim said when they were linked
    /// (shown, never matched on).
    pub claim: String,
    /// When.
    pub linked_at: Timestamp,
}

const IDP_COLUMNS: &str = "tenant_id, issuer, client_id, secret, kek_id, principal_claim, \
    allowed_email_domains, create_on_first_sign_in, sso_only, decision_max_age_minutes, \
    require_decision_evidence, updated_at_us";

fn provider_of(row: &sqlx::any::AnyRow) -> Result<StoredIdentityProvider, StoreError> {
    let minutes = row.int("decision_max_age_minutes")?;
    Ok(StoredIdentityProvider {
        provider: IdentityProvider {
            tenant: row.parsed("tenant_id")?,
            issuer: row.text("issuer")?,
            client_id: row.text("client_id")?,
            principal_claim: row.text("principal_claim")?,
            allowed_email_domains: row.json("allowed_email_domains")?,
            create_on_first_sign_in: row.int("create_on_first_sign_in")? != 0,
            sso_only: row.int("sso_only")? != 0,
            decision_max_age_minutes: u32::try_from(minutes)
                .map_err(|_| StoreError::corrupt("a negative decision_max_age_minutes"))?,
            require_decision_evidence: row.int("require_decision_evidence")? != 0,
        },
        secret: SealedSecret {
            kek_id: row.text("kek_id")?,
            sealed: row.bytes("secret")?,
        },
        updated_at: row.time("updated_at_us")?,
    })
}

fn link_of(row: &sqlx::any::AnyRow) -> Result<IdentityLink, StoreError> {
    Ok(IdentityLink {
        principal: row.parsed("principal_id")?,
        issuer: row.text("issuer")?,
        subject: row.text("subject")?,
        claim: row.text("claim")?,
        linked_at: row.time("linked_at_us")?,
    })
}

/// Identity providers, links and sign-ins under way.
impl Tx {
    /// Sets (creates or replaces) a tenant's identity provider.
    pub async fn put_identity_provider(
        &mut self,
        stored: &StoredIdentityProvider,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        let p = &stored.provider;
        let sql = format!(
            "INSERT INTO identity_providers ({IDP_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id) DO UPDATE SET issuer = excluded.issuer, \
             client_id = excluded.client_id, secret = excluded.secret, kek_id = excluded.kek_id, \
             principal_claim = excluded.principal_claim, \
             allowed_email_domains = excluded.allowed_email_domains, \
             create_on_first_sign_in = excluded.create_on_first_sign_in, \
             sso_only = excluded.sso_only, \
             decision_max_age_minutes = excluded.decision_max_age_minutes, \
             require_decision_evidence = excluded.require_decision_evidence, \
             updated_at_us = excluded.updated_at_us"
        );
        self.run(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(p.tenant.as_str().to_owned())
                .bind(p.issuer.clone())
                .bind(p.client_id.clone())
                .bind(stored.secret.sealed.clone())
                .bind(stored.secret.kek_id.clone())
                .bind(p.principal_claim.clone())
                .bind(json(&p.allowed_email_domains)?)
                .bind(flag(p.create_on_first_sign_in))
                .bind(flag(p.sso_only))
                .bind(i64::from(p.decision_max_age_minutes))
                .bind(flag(p.require_decision_evidence))
                .bind(micros(stored.updated_at)),
        )
        .await?;
        Ok(())
    }

    /// A tenant's identity provider.
    pub async fn identity_provider(
        &mut self,
        tenant: &TenantId,
    ) -> Result<Option<StoredIdentityProvider>, StoreError> {
        let sql = format!("SELECT {IDP_COLUMNS} FROM identity_providers WHERE tenant_id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str().to_owned()))
            .await?;
        row.as_ref().map(provider_of).transpose()
    }

    /// A tenant's identity provider, locked against a concurrent change
    /// until the transaction ends (on PostgreSQL).
    pub async fn lock_identity_provider(
        &mut self,
        tenant: &TenantId,
    ) -> Result<Option<StoredIdentityProvider>, StoreError> {
        let sql = format!("SELECT {IDP_COLUMNS} FROM identity_providers WHERE tenant_id = $1");
        let row = self
            .optional(sqlx::query(self.locking(&sql)).bind(tenant.as_str().to_owned()))
            .await?;
        row.as_ref().map(provider_of).transpose()
    }

    /// The tenant whose identity provider claims e-mail `domain`
    /// (lowercase), if any. Domains are few per tenant and tenants with an
    /// IdP are few: they are read and matched here.
    pub async fn tenant_claiming_domain(
        &mut self,
        domain: &str,
    ) -> Result<Option<TenantId>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT tenant_id, allowed_email_domains FROM identity_providers ORDER BY tenant_id",
            ))
            .await?;
        for row in &rows {
            let domains: Vec<String> = row.json("allowed_email_domains")?;
            if domains.iter().any(|d| d == domain) {
                return Ok(Some(row.parsed("tenant_id")?));
            }
        }
        Ok(None)
    }

    /// Removes a tenant's identity provider and every link of the tenant's
    /// people to it; the links removed.
    pub async fn delete_identity_provider(
        &mut self,
        tenant: &TenantId,
    ) -> Result<Option<Vec<IdentityLink>>, StoreError> {
        self.audited_write()?;
        let Some(stored) = self.lock_identity_provider(tenant).await? else {
            return Ok(None);
        };
        let links = self
            .all(
                sqlx::query(
                    "SELECT l.principal_id, l.issuer, l.subject, l.claim, l.linked_at_us \
                     FROM identity_links l JOIN principals p ON p.id = l.principal_id \
                     WHERE p.tenant_id = $1 AND l.issuer = $2 ORDER BY l.principal_id",
                )
                .bind(tenant.as_str().to_owned())
                .bind(stored.provider.issuer.clone()),
            )
            .await?
            .iter()
            .map(link_of)
            .collect::<Result<Vec<_>, _>>()?;
        self.run(
            sqlx::query(
                "DELETE FROM identity_links WHERE issuer = $2 AND principal_id IN \
                 (SELECT id FROM principals WHERE tenant_id = $1)",
            )
            .bind(tenant.as_str().to_owned())
            .bind(stored.provider.issuer.clone()),
        )
        .await?;
        self.run(
            sqlx::query("DELETE FROM identity_providers WHERE tenant_id = $1")
                .bind(tenant.as_str().to_owned()),
        )
        .await?;
        Ok(Some(links))
    }

    /// Links a person to an IdP subject. Refused with a unique violation
    /// when the subject is linked to someone else.
    pub async fn link_identity(&mut self, link: &IdentityLink) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO identity_links (principal_id, issuer, subject, claim, linked_at_us) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (principal_id) DO UPDATE SET issuer = excluded.issuer, \
                 subject = excluded.subject, claim = excluded.claim, \
                 linked_at_us = excluded.linked_at_us",
            )
            .bind(link.principal.as_str().to_owned())
            .bind(link.issuer.clone())
            .bind(link.subject.clone())
            .bind(link.claim.clone())
            .bind(micros(link.linked_at)),
        )
        .await?;
        Ok(())
    }

    /// A person's link, if any.
    pub async fn identity_link(
        &mut self,
        principal: &PrincipalId,
    ) -> Result<Option<IdentityLink>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT principal_id, issuer, subject, claim, linked_at_us \
                     FROM identity_links WHERE principal_id = $1",
                )
                .bind(principal.as_str().to_owned()),
            )
            .await?;
        row.as_ref().map(link_of).transpose()
    }

    /// Who is linked to this issuer's subject, if anyone.
    pub async fn linked_principal(
        &mut self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<PrincipalId>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT principal_id FROM identity_links WHERE issuer = $1 AND subject = $2",
                )
                .bind(issuer.to_owned())
                .bind(subject.to_owned()),
            )
            .await?;
        row.map(|r| r.parsed("principal_id")).transpose()
    }

    /// Removes a person's link; the link removed.
    pub async fn unlink_identity(
        &mut self,
        principal: &PrincipalId,
    ) -> Result<Option<IdentityLink>, StoreError> {
        self.audited_write()?;
        let link = self.identity_link(principal).await?;
        if link.is_some() {
            self.run(
                sqlx::query("DELETE FROM identity_links WHERE principal_id = $1")
                    .bind(principal.as_str().to_owned()),
            )
            .await?;
        }
        Ok(link)
    }

    /// Revokes a person's tokens and sessions that came from single
    /// sign-on (and what was minted from them).
    pub async fn revoke_sso_tokens_of(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.revoke_trees(
            "SELECT id FROM api_tokens WHERE principal_id = $1 AND sso_auth_time_us IS NOT NULL",
            principal.as_str().to_owned(),
            now,
            None,
        )
        .await
    }

    /// Revokes every token and session of a tenant's people that did not
    /// come from single sign-on (and what was minted from them).
    pub async fn revoke_password_tokens_of_tenant(
        &mut self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.revoke_trees(
            "SELECT t.id FROM api_tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE p.tenant_id = $1 AND t.sso_auth_time_us IS NULL",
            tenant.as_str().to_owned(),
            now,
            None,
        )
        .await
    }

    /// Removes the passwords of a tenant's people; how many.
    pub async fn clear_passwords_of_tenant(
        &mut self,
        tenant: &TenantId,
    ) -> Result<u64, StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "DELETE FROM passwords WHERE principal_id IN \
                 (SELECT id FROM principals WHERE tenant_id = $1)",
            )
            .bind(tenant.as_str().to_owned()),
        )
        .await
    }

    /// Records when the IdP last authenticated the person of a session
    /// (bookkeeping: the decision that re-authenticated records it).
    pub async fn set_sso_auth_time(
        &mut self,
        token: &TokenId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query("UPDATE api_tokens SET sso_auth_time_us = $2 WHERE id = $1")
                .bind(token.to_string())
                .bind(micros(at)),
        )
        .await?;
        Ok(())
    }

    /// Records a sign-in under way, by the SHA-256 of its `state` (hex),
    /// until `expires_at`; expired ones are removed on the way.
    pub async fn insert_sign_in_flow(
        &mut self,
        state_hash: &str,
        flow: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        self.run(
            sqlx::query("DELETE FROM sign_in_flows WHERE expires_at_us <= $1").bind(micros(now)),
        )
        .await?;
        self.run(
            sqlx::query(
                "INSERT INTO sign_in_flows (state_hash, flow, expires_at_us) VALUES ($1, $2, $3)",
            )
            .bind(state_hash.to_owned())
            .bind(flow.to_owned())
            .bind(micros(expires_at)),
        )
        .await?;
        Ok(())
    }

    /// A sign-in under way, without taking it (unknown or expired:
    /// `None`).
    pub async fn sign_in_flow(
        &mut self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT flow FROM sign_in_flows WHERE state_hash = $1 AND expires_at_us > $2",
                )
                .bind(state_hash.to_owned())
                .bind(micros(now)),
            )
            .await?;
        row.map(|r| r.text("flow")).transpose()
    }

    /// Replaces what a sign-in under way keeps; whether it was still there.
    pub async fn update_sign_in_flow(
        &mut self,
        state_hash: &str,
        flow: &str,
    ) -> Result<bool, StoreError> {
        self.bookkeeping_write()?;
        let n = self
            .run(
                sqlx::query("UPDATE sign_in_flows SET flow = $2 WHERE state_hash = $1")
                    .bind(state_hash.to_owned())
                    .bind(flow.to_owned()),
            )
            .await?;
        Ok(n > 0)
    }

    /// Takes a sign-in under way (at most once): its flow, unless it is
    /// unknown, already taken or expired at `now`.
    pub async fn take_sign_in_flow(
        &mut self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.bookkeeping_write()?;
        let row = self
            .optional(
                sqlx::query(
                    "DELETE FROM sign_in_flows WHERE state_hash = $1 RETURNING flow, expires_at_us",
                )
                .bind(state_hash.to_owned()),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if row.time("expires_at_us")? <= now {
            return Ok(None);
        }
        row.text("flow").map(Some)
    }
}
