//! The provider's access levels.

use lockbox_core::{AccessLevel, AccessLevelName, Timestamp};

use crate::codec::{json, micros};
use crate::error::StoreError;
use crate::tx::Tx;

use super::*;

/// The provider's access levels.
impl Tx {
    /// Defines or redefines an access level.
    pub async fn put_access_level(
        &mut self,
        level: &AccessLevel,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO access_levels (name, actions, description, updated_at_us, ssh) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET actions = excluded.actions, description = excluded.description, \
                 updated_at_us = excluded.updated_at_us, ssh = excluded.ssh",
            )
            .bind(level.name.as_str().to_owned())
            .bind(json(&level.actions)?)
            .bind(level.description.as_str().to_owned())
            .bind(micros(now))
            .bind(level.ssh.as_ref().map(json).transpose()?),
        )
        .await?;
        Ok(())
    }

    /// An access level.
    pub async fn access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT name, actions, description, ssh FROM access_levels WHERE name = $1",
                )
                .bind(name.as_str().to_owned()),
            )
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    /// An access level, read under a share lock (`FOR SHARE` on
    /// PostgreSQL) for a request or grant made with its actions: a
    /// redefinition ([`Tx::lock_access_level`]) either lands before
    /// it is read here, or waits until what is made with it commits (and
    /// then sees it among the level's requests and grants).
    pub async fn share_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let sql = self
            .sharing("SELECT name, actions, description, ssh FROM access_levels WHERE name = $1");
        let row = self
            .optional(sqlx::query(sql).bind(name.as_str().to_owned()))
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    /// An access level, locked for a redefinition (see
    /// [`Tx::share_access_level`]).
    pub async fn lock_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let sql = self
            .locking("SELECT name, actions, description, ssh FROM access_levels WHERE name = $1");
        let row = self
            .optional(sqlx::query(sql).bind(name.as_str().to_owned()))
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    /// Every access level, by name.
    pub async fn access_levels(&mut self) -> Result<Vec<AccessLevel>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT name, actions, description, ssh FROM access_levels ORDER BY name",
            ))
            .await?;
        rows.iter().map(level_of).collect()
    }
}
