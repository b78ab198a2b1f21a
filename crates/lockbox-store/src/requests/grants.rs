//! Grants: made by approvals and break-glass, ended by time, revocation
//! and the sweeper.

use lockbox_core::{Grant, GrantId, PrincipalId, Timestamp};
use sqlx::AssertSqlSafe;

use crate::Backend;
use crate::codec::{RowExt as _, micros, parse_text};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::{bind_all, rows_by_id};
use crate::tx::{Locked, Tx};

use super::*;

/// The grants without a request (break-glass) past their end but still
/// recorded active, oldest end first: what the sweeper ends. SQLite is told
/// which index to read: left to itself it reads every grant without a
/// request through the unique index of `request_id` (`IS NULL` looks
/// selective there) and sorts them, which at 50 000 emergency grants held
/// the only writer for 200 ms every sweep.
pub(crate) fn due_grants_sql(backend: Backend) -> String {
    let from = match backend {
        Backend::Sqlite => "grants g INDEXED BY grants_active_by_end",
        Backend::Postgres => "grants g",
    };
    format!(
        "SELECT {GRANT_COLUMNS} FROM {from} WHERE state = 'active' AND request_id IS NULL \
         AND not_after_us <= $1 ORDER BY not_after_us LIMIT $2"
    )
}

impl Tx {
    /// A principal's emergency grants still recorded active, locked (to
    /// disable it).
    pub async fn lock_active_emergency_grants_of(
        &mut self,
        principal: &PrincipalId,
    ) -> Result<Vec<Locked<Grant>>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE principal_id = $1 AND state = 'active' \
             AND request_id IS NULL ORDER BY id"
        ));
        let rows = self
            .all(sqlx::query(sql).bind(principal.as_str().to_owned()))
            .await?;
        rows.iter()
            .map(|r| grant_of(r, "").and_then(|g| self.locked(g)))
            .collect()
    }

    /// Stores an emergency grant.
    pub async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        self.audited_write()?;
        self.write_new_grant(g).await
    }

    /// A grant.
    pub async fn grant(&mut self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1");
        let row = self
            .optional(sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(|r| grant_of(r, "")).transpose()
    }

    /// The grants of `ids` that exist, in any order: a few statements for
    /// many grants.
    pub async fn grants_by_id(&mut self, ids: &[GrantId]) -> Result<Vec<Grant>, StoreError> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let select = format!("SELECT {GRANT_COLUMNS} FROM grants");
        rows_by_id(self, &select, &ids)
            .await?
            .iter()
            .map(|r| grant_of(r, ""))
            .collect()
    }

    /// A grant, locked for a change (emergency grants; a request's grant
    /// changes with its request).
    pub async fn lock_grant(&mut self, id: &GrantId) -> Result<Locked<Grant>, StoreError> {
        let sql = self.locking(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"));
        let row = self
            .optional(sqlx::query(sql).bind(id.to_string()))
            .await?
            .ok_or_else(|| StoreError::not_found("grant", id))?;
        self.locked(grant_of(&row, "")?)
    }

    /// Saves a locked grant.
    pub async fn save_grant(&mut self, grant: Locked<Grant>) -> Result<(), StoreError> {
        let (before, g) = self.unlock(grant)?;
        if before.id != g.id {
            return Err(StoreError::corrupt(format!(
                "grant {} was swapped for {}",
                before.id, g.id
            )));
        }
        if let Some(request) = g.request {
            // Its state lives with its request's: saving it alone would
            // leave the request contradicting it.
            return Err(StoreError::corrupt(format!(
                "grant {} belongs to request {request}; save the request",
                g.id
            )));
        }
        if before == g {
            return Ok(());
        }
        self.audited_write()?;
        self.write_grant_state(&g).await
    }

    /// Grants, newest first.
    pub async fn grants(
        &mut self,
        filter: &GrantFilter,
        page: &PageRequest,
    ) -> Result<Page<Grant>, StoreError> {
        let (sql, args) = grants_list(filter, page);
        let rows = self
            .all(bind_all(sqlx::query(AssertSqlSafe(sql)), args))
            .await?;
        let items = rows
            .iter()
            .map(|r| grant_of(r, ""))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |g| g.id.to_string()))
    }

    /// Every grant that allows something at `now` or later: not revoked or
    /// ended, and not run out.
    pub async fn active_grants(&mut self, now: Timestamp) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE state = 'active' AND not_after_us > $1"
        );
        let rows = self
            .all(sqlx::query(AssertSqlSafe(sql)).bind(micros(now)))
            .await?;
        rows.iter().map(|r| grant_of(r, "")).collect()
    }

    /// Grants in any state whose end is after `since` (what the
    /// enforcement index holds), a page at a time from the cursor `after`
    /// (`None` for the first), in the order the table stores them: the
    /// index loads them page by page. A page holds up to `limit` grants on
    /// SQLite, and the grants of a range of blocks meant to hold about that
    /// many on PostgreSQL (possibly none, while `next_cursor` says more
    /// follow).
    pub async fn grants_ending_after(
        &mut self,
        since: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Grant>, StoreError> {
        // The cursor is opaque. Both backends walk the table in the order
        // its pages are stored, with no index lookups: SQLite by rowid,
        // PostgreSQL by ranges of blocks (a TID range scan).
        let limit = i64::from(limit.max(1));
        let start: i64 = match after {
            Some(a) => parse_text("cursor", a)?,
            None => 0,
        };
        let mut actions = ActionSets::default();
        match self.backend() {
            Backend::Sqlite => {
                // The page as one JSON document: reading rows one by one
                // through the driver costs several times more.
                let sql = format!(
                    "SELECT json_group_array(json_array({GRANT_COLUMNS})) AS page, \
                     count(*) AS n, max(rowid) AS last \
                     FROM (SELECT rowid, {GRANT_COLUMNS} FROM grants \
                           WHERE +not_after_us > $1 AND rowid > $2 ORDER BY rowid LIMIT $3)"
                );
                let q = sqlx::query(AssertSqlSafe(sql))
                    .bind(micros(since))
                    .bind(start)
                    .bind(limit);
                let row = self.one(q).await?;
                let full = row.int("n")? >= limit;
                let last = row.opt_int("last")?;
                let text = row.text("page")?;
                let columns: Vec<GrantColumns> = serde_json::from_str(&text)
                    .map_err(|e| StoreError::corrupt(format!("a page of grants: {e}")))?;
                let items = columns
                    .into_iter()
                    .map(|c| c.into_grant(Some(&mut actions)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page {
                    items,
                    next_cursor: last.filter(|_| full).map(|l| l.to_string()),
                })
            }
            Backend::Postgres => {
                // About sixteen grants fit in a block of 8 KiB.
                let end = start.saturating_add((limit / 16).max(1));
                let blocks = self
                    .one(sqlx::query(
                        "SELECT pg_relation_size('grants') / \
                         current_setting('block_size')::bigint AS blocks",
                    ))
                    .await?
                    .int("blocks")?;
                let sql = format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE not_after_us > $1 \
                     AND ctid >= format('(%s,0)', $2::bigint)::tid \
                     AND ctid < format('(%s,0)', $3::bigint)::tid"
                );
                let q = sqlx::query(AssertSqlSafe(sql))
                    .bind(micros(since))
                    .bind(start)
                    .bind(end);
                let items = self
                    .all(q)
                    .await?
                    .iter()
                    .map(|r| GrantColumns::of_row(r, "")?.into_grant(Some(&mut actions)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page {
                    items,
                    next_cursor: (end < blocks).then(|| end.to_string()),
                })
            }
        }
    }

    /// Up to `limit` emergency grants whose time is over but whose end is
    /// not yet recorded. Locked, skipping rows another node holds.
    pub async fn lock_due_grants(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Locked<Grant>>, StoreError> {
        let sql = self.locking_skip(&due_grants_sql(self.backend()), "g");
        let rows = self
            .all(
                sqlx::query(sql)
                    .bind(micros(now))
                    .bind(i64::from(limit.max(1))),
            )
            .await?;
        rows.iter()
            .map(|r| grant_of(r, "").and_then(|g| self.locked(g)))
            .collect()
    }
}
