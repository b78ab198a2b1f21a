//! Principals (people, operators, gateways, admins) and their enrolment
//! links.

use lockbox_core::account::{Enrollment, EnrollmentState};
use lockbox_core::{
    GatewaySettings, Principal, PrincipalId, PrincipalKind, RoleAssignment, TenantId, Timestamp,
};

use crate::changes::Change;
use crate::codec::{RowExt as _, flag, json, micros, opt_micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::tenant_page;
use crate::tx::{Locked, Tx};

use super::*;

/// Principals and their enrolment links.
impl Tx {
    /// Stores a new principal.
    pub async fn insert_principal(&mut self, p: &Principal) -> Result<(), StoreError> {
        self.audited_write()?;
        let (kind, tenant, emergency) = match &p.kind {
            PrincipalKind::User { tenant } => ("user", Some(tenant.as_str().to_owned()), false),
            PrincipalKind::Operator { emergency } => ("operator", None, *emergency),
            PrincipalKind::Gateway => ("gateway", None, false),
            PrincipalKind::Admin => ("admin", None, false),
        };
        let sql = format!(
            "INSERT INTO principals ({PRINCIPAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        self.run(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(p.id.as_str().to_owned())
                .bind(kind)
                .bind(tenant)
                .bind(flag(emergency))
                .bind(p.display_name.as_str().to_owned())
                .bind(p.email.as_ref().map(|e| e.as_str().to_owned()))
                .bind(json(&p.alternate_emails)?)
                .bind(micros(p.created_at))
                .bind(opt_micros(p.enrolled_at))
                .bind(opt_micros(p.disabled_at)),
        )
        .await?;
        // Only operators hold grants: the grant index knows them alone.
        if matches!(p.kind, PrincipalKind::Operator { .. }) {
            self.feed(Change::Principal(p.id.clone()));
        }
        Ok(())
    }

    /// Every operator's id (the principals that can hold grants).
    pub async fn operator_ids(&mut self) -> Result<Vec<PrincipalId>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT id FROM principals WHERE kind = 'operator'",
            ))
            .await?;
        rows.iter().map(|r| r.parsed("id")).collect()
    }

    /// Stores what a new gateway is trusted with (in the transaction that
    /// registers it; settings never change).
    pub async fn insert_gateway_settings(
        &mut self,
        gateway: &PrincipalId,
        settings: &GatewaySettings,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO gateway_settings (gateway_id, tenant_id, resource, token_cookie, principal_header) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(gateway.as_str().to_owned())
            .bind(settings.tenant.as_ref().map(|t| t.as_str().to_owned()))
            .bind(settings.resource.as_ref().map(|r| r.as_str().to_owned()))
            .bind(settings.token_cookie.clone())
            .bind(settings.principal_header.clone()),
        )
        .await?;
        Ok(())
    }

    /// What a gateway is trusted with (the defaults, for a gateway
    /// registered before gateways had settings).
    pub async fn gateway_settings(
        &mut self,
        gateway: &PrincipalId,
    ) -> Result<GatewaySettings, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT tenant_id, resource, token_cookie, principal_header \
                     FROM gateway_settings WHERE gateway_id = $1",
                )
                .bind(gateway.as_str().to_owned()),
            )
            .await?;
        let Some(row) = row else {
            return Ok(GatewaySettings::default());
        };
        Ok(GatewaySettings {
            tenant: row.opt_parsed("tenant_id")?,
            resource: row.opt_parsed("resource")?,
            token_cookie: row.opt_text("token_cookie")?,
            principal_header: row.opt_text("principal_header")?,
        })
    }

    /// A principal.
    pub async fn principal(&mut self, id: &PrincipalId) -> Result<Option<Principal>, StoreError> {
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(principal_of).transpose()
    }

    /// A principal and every role it holds (in one query: what
    /// authentication and every authorization decision need).
    pub async fn principal_with_roles(
        &mut self,
        id: &PrincipalId,
    ) -> Result<Option<(Principal, Vec<RoleAssignment>)>, StoreError> {
        let principal = PRINCIPAL_COLUMNS
            .split(',')
            .map(|c| format!("p.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let roles = ASSIGNMENT_COLUMNS
            .split(',')
            .map(|c| format!("ra.{0} AS ra_{0}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {principal}, {roles} FROM principals p \
             LEFT JOIN role_assignments ra ON ra.principal_id = p.id WHERE p.id = $1 ORDER BY ra.id"
        );
        let rows = self
            .all(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str().to_owned()))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let principal = principal_of(first)?;
        let mut assignments = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.opt_text("ra_id")?.is_some() {
                assignments.push(assignment_of_prefixed(row, "ra_")?);
            }
        }
        Ok(Some((principal, assignments)))
    }

    /// A tenant's users, in id order.
    pub async fn users(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<Principal>, StoreError> {
        let rows = self
            .all(
                tenant_page(tenant, page)
                    .query(&format!("SELECT {PRINCIPAL_COLUMNS} FROM principals")),
            )
            .await?;
        let items = rows
            .iter()
            .map(principal_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |p| p.id.to_string()))
    }

    /// Whether any principal exists (an installation is initialised).
    pub async fn has_principals(&mut self) -> Result<bool, StoreError> {
        Ok(self
            .optional(sqlx::query("SELECT id FROM principals LIMIT 1"))
            .await?
            .is_some())
    }

    /// A principal, locked for a change of its account (enrolment,
    /// disabling).
    pub async fn lock_principal(
        &mut self,
        id: &PrincipalId,
    ) -> Result<Locked<Principal>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?
            .ok_or_else(|| StoreError::not_found("principal", id))?;
        self.locked(principal_of(&row)?)
    }

    /// Saves a locked principal's account state (enrolled, disabled).
    pub async fn save_principal(&mut self, principal: Locked<Principal>) -> Result<(), StoreError> {
        let (before, p) = self.unlock(principal)?;
        if before.id != p.id || before.kind != p.kind {
            return Err(StoreError::corrupt(format!(
                "principal {} was swapped for {}",
                before.id, p.id
            )));
        }
        if before == p {
            return Ok(());
        }
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE principals SET enrolled_at_us = $2, disabled_at_us = $3 WHERE id = $1",
            )
            .bind(p.id.as_str().to_owned())
            .bind(opt_micros(p.enrolled_at))
            .bind(opt_micros(p.disabled_at)),
        )
        .await?;
        Ok(())
    }

    /// A principal read under a share lock (`FOR SHARE` on PostgreSQL), for
    /// a change that gives it a credential: it waits for, and then holds
    /// off, a change that ends its credentials (which locks the row).
    pub async fn share_principal(
        &mut self,
        id: &PrincipalId,
    ) -> Result<Option<Principal>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(principal_of).transpose()
    }

    /// Whether any user of the tenant has ever enrolled (never false again
    /// once true: enrolment is not undone).
    pub async fn tenant_has_enrolled_user(
        &mut self,
        tenant: &TenantId,
    ) -> Result<bool, StoreError> {
        let row = self
            .optional(
                sqlx::query(
                    "SELECT id FROM principals WHERE tenant_id = $1 AND enrolled_at_us IS NOT NULL \
                     LIMIT 1",
                )
                .bind(tenant.as_str().to_owned()),
            )
            .await?;
        Ok(row.is_some())
    }

    /// Stores a new enrolment link.
    pub async fn insert_enrollment(&mut self, e: &StoredEnrollment) -> Result<(), StoreError> {
        self.audited_write()?;
        let (used, replaced) = match e.enrollment.state {
            EnrollmentState::Open => (None, None),
            EnrollmentState::Used { at } => (Some(at), None),
            EnrollmentState::Replaced { at } => (None, Some(at)),
        };
        self.run(
            sqlx::query(
                "INSERT INTO enrollments (id, principal_id, token_hash, issued_by, created_at_us, \
                 expires_at_us, used_at_us, replaced_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(e.enrollment.id.to_string())
            .bind(e.enrollment.principal.as_str().to_owned())
            .bind(e.hash.to_vec())
            .bind(e.enrollment.issued_by.as_str().to_owned())
            .bind(micros(e.enrollment.created_at))
            .bind(micros(e.enrollment.expires_at))
            .bind(opt_micros(used))
            .bind(opt_micros(replaced)),
        )
        .await?;
        Ok(())
    }

    /// The enrolment link with this hash, locked to redeem it.
    pub async fn lock_enrollment_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<Option<Locked<Enrollment>>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE token_hash = $1"
        ));
        let row = self.optional(sqlx::query(sql).bind(hash.to_vec())).await?;
        match row {
            Some(row) => Ok(Some(self.locked(enrollment_of(&row)?)?)),
            None => Ok(None),
        }
    }

    /// The enrolment link with this hash.
    pub async fn enrollment_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<Option<Enrollment>, StoreError> {
        let sql = format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE token_hash = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash.to_vec()))
            .await?;
        row.as_ref().map(enrollment_of).transpose()
    }

    /// Saves a locked enrolment link's state.
    pub async fn save_enrollment(
        &mut self,
        enrollment: Locked<Enrollment>,
    ) -> Result<(), StoreError> {
        let (before, e) = self.unlock(enrollment)?;
        if before.id != e.id || before.principal != e.principal {
            return Err(StoreError::corrupt(format!(
                "enrollment {} was swapped for {}",
                before.id, e.id
            )));
        }
        if before == e {
            return Ok(());
        }
        self.audited_write()?;
        let (used, replaced) = match e.state {
            EnrollmentState::Open => (None, None),
            EnrollmentState::Used { at } => (Some(at), None),
            EnrollmentState::Replaced { at } => (None, Some(at)),
        };
        self.run(
            sqlx::query(
                "UPDATE enrollments SET used_at_us = $2, replaced_at_us = $3 WHERE id = $1",
            )
            .bind(e.id.to_string())
            .bind(opt_micros(used))
            .bind(opt_micros(replaced)),
        )
        .await?;
        Ok(())
    }

    /// Marks a principal's open links replaced; how many there were.
    pub async fn replace_open_enrollments(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "UPDATE enrollments SET replaced_at_us = $2 WHERE principal_id = $1 \
                 AND used_at_us IS NULL AND replaced_at_us IS NULL",
            )
            .bind(principal.as_str().to_owned())
            .bind(micros(now)),
        )
        .await
    }
}
