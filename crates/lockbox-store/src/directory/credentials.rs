//! Credentials: API tokens, portal sessions and password hashes.

use lockbox_core::{PrincipalId, Timestamp, TokenId};

use crate::changes::Change;
use crate::codec::{RowExt as _, micros, opt_micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::Conditions;
use crate::tx::Tx;

use super::*;

/// API tokens, portal sessions and password hashes.
impl Tx {
    /// Stores a new API token.
    pub async fn insert_token(&mut self, t: &ApiToken) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql = format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        self.run(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.id.to_string())
                .bind(t.principal.as_str().to_owned())
                .bind(t.hash.to_vec())
                .bind(micros(t.created_at))
                .bind(opt_micros(t.expires_at))
                .bind(opt_micros(t.revoked_at))
                .bind(t.parent.map(|p| p.to_string()))
                .bind(t.kind.as_str())
                .bind(t.name.clone())
                .bind(opt_micros(t.last_used_at))
                .bind(opt_micros(t.sso_auth_time)),
        )
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash.to_vec()))
            .await?;
        row.as_ref().map(token_of).transpose()
    }

    /// A token by id.
    pub async fn token(&mut self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(token_of).transpose()
    }

    /// Revokes a token; false if it was already revoked.
    pub async fn revoke_token(&mut self, id: &TokenId, now: Timestamp) -> Result<bool, StoreError> {
        self.audited_write()?;
        let n = self
            .run(
                sqlx::query("UPDATE api_tokens SET revoked_at_us = $2 WHERE id = $1 AND revoked_at_us IS NULL")
                    .bind(id.to_string())
                    .bind(micros(now)),
            )
            .await?;
        if n > 0 {
            self.feed(Change::TokenRevoked(*id));
        }
        Ok(n > 0)
    }

    /// Sets a principal's password hash (Argon2id PHC string).
    pub async fn set_password(
        &mut self,
        principal: &PrincipalId,
        hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO passwords (principal_id, hash, updated_at_us) VALUES ($1, $2, $3) \
                 ON CONFLICT (principal_id) DO UPDATE SET hash = excluded.hash, updated_at_us = excluded.updated_at_us",
            )
            .bind(principal.as_str().to_owned())
            .bind(hash.to_owned())
            .bind(micros(now)),
        )
        .await?;
        Ok(())
    }

    /// A principal's password hash.
    pub async fn password_hash(
        &mut self,
        principal: &PrincipalId,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .optional(
                sqlx::query("SELECT hash FROM passwords WHERE principal_id = $1")
                    .bind(principal.as_str().to_owned()),
            )
            .await?;
        row.map(|r| r.text("hash")).transpose()
    }

    /// Removes a principal's password; whether it had one.
    pub async fn clear_password(&mut self, principal: &PrincipalId) -> Result<bool, StoreError> {
        self.audited_write()?;
        let n = self
            .run(
                sqlx::query("DELETE FROM passwords WHERE principal_id = $1")
                    .bind(principal.as_str().to_owned()),
            )
            .await?;
        Ok(n > 0)
    }

    /// Revokes a token and, transitively, every token minted from it.
    /// Returns what this revoked (nothing if the token was already revoked
    /// and so were its descendants).
    pub async fn revoke_token_tree(
        &mut self,
        id: &TokenId,
        now: Timestamp,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.revoke_trees(
            "SELECT id FROM api_tokens WHERE id = $1",
            id.to_string(),
            now,
            None,
        )
        .await
    }

    /// Revokes every live token and session of a principal and,
    /// transitively, every token minted from them.
    pub async fn revoke_tokens_of(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.revoke_trees(
            // Every token of the principal, revoked ones too: a pass after
            // the first walks on from them to what was minted meanwhile.
            "SELECT id FROM api_tokens WHERE principal_id = $1",
            principal.as_str().to_owned(),
            now,
            None,
        )
        .await
    }

    /// Revokes a principal's live portal sessions but `except` (and,
    /// transitively, what was minted from them).
    pub async fn revoke_sessions_of(
        &mut self,
        principal: &PrincipalId,
        except: &TokenId,
        now: Timestamp,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.revoke_trees(
            "SELECT id FROM api_tokens WHERE principal_id = $1 AND kind = 'session' \
             AND id <> $3",
            principal.as_str().to_owned(),
            now,
            Some(except.to_string()),
        )
        .await
    }

    /// A principal's tokens and sessions that still work at `now`, newest
    /// first.
    pub async fn live_tokens_of(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>, StoreError> {
        let mut c = Conditions::new();
        c.and("principal_id = $1", [principal.as_str().to_owned().into()]);
        c.and("revoked_at_us IS NULL", []);
        c.and(
            "(expires_at_us IS NULL OR expires_at_us > $1)",
            [micros(now).into()],
        );
        c.and_some(page.cursor.as_deref(), "id < $1", |id| [id.into()]);
        c.then("ORDER BY id DESC LIMIT $1", [page.fetch_limit().into()]);
        let rows = self
            .all(c.query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens")))
            .await?;
        let items = rows.iter().map(token_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |t| t.id.to_string()))
    }

    /// Records when tokens were last used (bookkeeping: never moves a time
    /// back).
    pub async fn record_token_use(
        &mut self,
        uses: &[(TokenId, Timestamp)],
    ) -> Result<(), StoreError> {
        self.bookkeeping_write()?;
        for (id, at) in uses {
            self.run(
                sqlx::query(
                    "UPDATE api_tokens SET last_used_at_us = $2 WHERE id = $1 \
                     AND (last_used_at_us IS NULL OR last_used_at_us < $2)",
                )
                .bind(id.to_string())
                .bind(micros(*at)),
            )
            .await?;
        }
        Ok(())
    }

    /// A token read under a share lock, for minting a token with it: a
    /// revocation of it (which locks its row) waits for the minting to
    /// commit, and then revokes what it minted too.
    pub async fn share_token(&mut self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ));
        let row = self.optional(sqlx::query(sql).bind(id.to_string())).await?;
        row.as_ref().map(token_of).transpose()
    }
}
