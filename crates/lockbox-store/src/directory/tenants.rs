//! Tenants: their opt-in and policy, their subscriptions, and the roles
//! their users hold.

use lockbox_core::{
    PrincipalId, RoleAssignment, RoleAssignmentId, SubscriptionId, Tenant, TenantId, Timestamp,
};

use crate::changes::Change;
use crate::codec::{RowExt as _, flag, json, micros, opt_micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::{Conditions, tenant_page};
use crate::tx::{Locked, Tx};

use super::*;

/// Tenants, subscriptions and role assignments.
impl Tx {
    /// Stores a new tenant (its opt-in and policy included).
    pub async fn insert_tenant(&mut self, t: &Tenant) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql =
            format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        self.run(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.id.as_str().to_owned())
                .bind(t.display_name.as_str().to_owned())
                .bind(micros(t.created_at))
                .bind(flag(t.lockbox.enabled))
                .bind(opt_micros(t.lockbox.changed_at))
                .bind(t.lockbox.changed_by.as_ref().map(|p| p.as_str().to_owned()))
                .bind(json(&t.policy)?),
        )
        .await?;
        Ok(())
    }

    /// A tenant.
    pub async fn tenant(&mut self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(tenant_of).transpose()
    }

    /// A tenant, locked for a change of its opt-in or policy (and to
    /// serialize changes of its administrators).
    pub async fn lock_tenant(&mut self, id: &TenantId) -> Result<Locked<Tenant>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?
            .ok_or_else(|| StoreError::not_found("tenant", id))?;
        self.locked(tenant_of(&row)?)
    }

    /// A tenant, read under a share lock (`FOR SHARE` on PostgreSQL; a
    /// plain read on SQLite, which has one writer) for a decision that
    /// depends on its opt-in, policy or roles: the decision waits for a
    /// transaction holding [`Tx::lock_tenant`] to finish and then
    /// sees its result, and such a change waits for the decision to commit.
    /// In a read-only transaction, a plain read.
    pub async fn share_tenant(&mut self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(tenant_of).transpose()
    }

    /// Saves a locked tenant.
    pub async fn save_tenant(&mut self, tenant: Locked<Tenant>) -> Result<(), StoreError> {
        let (before, t) = self.unlock(tenant)?;
        if before.id != t.id {
            return Err(StoreError::corrupt(format!(
                "tenant {} was swapped for {}",
                before.id, t.id
            )));
        }
        if before == t {
            return Ok(());
        }
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE tenants SET display_name = $2, lockbox_enabled = $3, lockbox_changed_at_us = $4, \
                 lockbox_changed_by = $5, policy = $6 WHERE id = $1",
            )
            .bind(t.id.as_str().to_owned())
            .bind(t.display_name.as_str().to_owned())
            .bind(flag(t.lockbox.enabled))
            .bind(opt_micros(t.lockbox.changed_at))
            .bind(t.lockbox.changed_by.as_ref().map(|p| p.as_str().to_owned()))
            .bind(json(&t.policy)?),
        )
        .await?;
        Ok(())
    }

    /// Tenants in id order.
    pub async fn tenants(&mut self, page: &PageRequest) -> Result<Page<Tenant>, StoreError> {
        let mut c = Conditions::new();
        c.and_some(page.cursor.as_deref(), "id > $1", |id| [id.into()]);
        c.then("ORDER BY id LIMIT $1", [page.fetch_limit().into()]);
        let rows = self
            .all(c.query(&format!("SELECT {TENANT_COLUMNS} FROM tenants")))
            .await?;
        let items = rows.iter().map(tenant_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |t| t.id.to_string()))
    }

    /// Attaches a subscription to a tenant.
    pub async fn insert_subscription(
        &mut self,
        id: &SubscriptionId,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO subscriptions (id, tenant_id, created_at_us) VALUES ($1, $2, $3)",
            )
            .bind(id.as_str().to_owned())
            .bind(tenant.as_str().to_owned())
            .bind(micros(now)),
        )
        .await?;
        self.feed(Change::Subscription(id.clone(), tenant.clone()));
        Ok(())
    }

    /// The tenant a subscription belongs to.
    pub async fn subscription_tenant(
        &mut self,
        id: &SubscriptionId,
    ) -> Result<Option<TenantId>, StoreError> {
        let row = self
            .optional(
                sqlx::query("SELECT tenant_id FROM subscriptions WHERE id = $1")
                    .bind(id.as_str().to_owned()),
            )
            .await?;
        row.map(|r| r.parsed("tenant_id")).transpose()
    }

    /// A tenant's subscriptions, in id order.
    pub async fn subscriptions(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<SubscriptionId>, StoreError> {
        let rows = self
            .all(tenant_page(tenant, page).query("SELECT id FROM subscriptions"))
            .await?;
        let items = rows
            .iter()
            .map(|r| SubscriptionId::parse(&r.text("id")?).map_err(StoreError::corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |s| s.as_str().to_owned()))
    }

    /// Every subscription with its tenant.
    pub async fn subscription_owners(
        &mut self,
    ) -> Result<Vec<(SubscriptionId, TenantId)>, StoreError> {
        let rows = self
            .all(sqlx::query("SELECT id, tenant_id FROM subscriptions"))
            .await?;
        rows.iter()
            .map(|r| {
                let id = SubscriptionId::parse(&r.text("id")?).map_err(StoreError::corrupt)?;
                Ok((id, r.parsed("tenant_id")?))
            })
            .collect()
    }

    /// Stores a role assignment.
    pub async fn insert_role_assignment(&mut self, a: &RoleAssignment) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO role_assignments (id, tenant_id, principal_id, role, scope, scope_key, created_at_us, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(a.id.to_string())
            .bind(a.tenant.as_str().to_owned())
            .bind(a.principal.as_str().to_owned())
            .bind(a.role.as_str())
            .bind(a.scope.to_string())
            .bind(scope_key(&a.scope))
            .bind(micros(a.created_at))
            .bind(a.created_by.as_str().to_owned()),
        )
        .await?;
        Ok(())
    }

    /// A role assignment.
    pub async fn role_assignment(
        &mut self,
        id: &RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(assignment_of).transpose()
    }

    /// Removes a role assignment.
    pub async fn delete_role_assignment(
        &mut self,
        id: &RoleAssignmentId,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        let n = self
            .run(sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id.to_string()))
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("role assignment", id));
        }
        Ok(())
    }

    /// A tenant's role assignments, in id order (the order they were made).
    pub async fn role_assignments(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<RoleAssignment>, StoreError> {
        let rows = self
            .all(tenant_page(tenant, page).query(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments"
            )))
            .await?;
        let items = rows
            .iter()
            .map(assignment_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |a| a.id.to_string()))
    }

    /// A principal's role assignments (in every tenant).
    pub async fn assignments_of(
        &mut self,
        principal: &PrincipalId,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        let sql = format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE principal_id = $1 ORDER BY id"
        );
        let rows = self
            .all(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(principal.as_str().to_owned()))
            .await?;
        rows.iter().map(assignment_of).collect()
    }

    /// How many TenantAdmin assignments a tenant has.
    pub async fn count_tenant_admins(&mut self, tenant: &TenantId) -> Result<usize, StoreError> {
        let row = self
            .one(
                sqlx::query("SELECT COUNT(*) AS n FROM role_assignments WHERE tenant_id = $1 AND role = 'TenantAdmin'")
                    .bind(tenant.as_str().to_owned()),
            )
            .await?;
        usize::try_from(row.int("n")?).map_err(|_| StoreError::corrupt("a negative count"))
    }
}
