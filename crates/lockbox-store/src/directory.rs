//! Tenants and their policy, subscriptions, principals, credentials, role
//! assignments and access levels.

use std::future::Future;

use lockbox_core::account::{Enrollment, EnrollmentState};
use lockbox_core::principal::Role;
use lockbox_core::text::{Description, DisplayName, Email};
use lockbox_core::{
    AccessLevel, AccessLevelName, LockboxSetting, Principal, PrincipalId, PrincipalKind,
    RoleAssignment, RoleAssignmentId, Scope, SubscriptionId, Tenant, TenantId, TenantPolicy,
    Timestamp, TokenId,
};
use sqlx::any::AnyRow;

use crate::changes::Change;
use crate::codec::{RowExt as _, flag, json, micros, opt_micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::{Conditions, tenant_page};
use crate::tx::{Locked, Tx};

/// An API token as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The token's public id.
    pub id: TokenId,
    /// Whose it is.
    pub principal: PrincipalId,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// The token presented to mint this one, if any: revoking a token
    /// revokes everything minted from it.
    pub parent: Option<TokenId>,
    /// An API token or a portal session.
    pub kind: TokenKind,
    /// Its owner's label for it.
    pub name: Option<String>,
    /// When it last authenticated a call (kept to within a few seconds).
    pub last_used_at: Option<Timestamp>,
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An API token (`lbx_…`).
    Api,
    /// A portal session (`lbs_…`).
    Session,
}

impl TokenKind {
    /// The kind's name as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Session => "session",
        }
    }
}

/// A token that a revocation ended, and whose it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    /// The token.
    pub id: TokenId,
    /// Its owner.
    pub principal: PrincipalId,
    /// The owner's tenant (`None` for the provider's principals): where the
    /// revocation is recorded.
    pub tenant: Option<TenantId>,
}

/// An enrolment link as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnrollment {
    /// The link.
    pub enrollment: Enrollment,
    /// SHA-256 of its secret.
    pub hash: [u8; 32],
}

impl ApiToken {
    /// Whether the token authenticates at `now`.
    #[must_use]
    pub fn is_valid(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

/// The directory: who exists, what they may do, and how they sign in.
pub trait Directory {
    /// Stores a new tenant (its opt-in and policy included).
    fn insert_tenant(
        &mut self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A tenant.
    fn tenant(
        &mut self,
        id: &TenantId,
    ) -> impl Future<Output = Result<Option<Tenant>, StoreError>> + Send;
    /// A tenant, locked for a change of its opt-in or policy (and to
    /// serialize changes of its administrators).
    fn lock_tenant(
        &mut self,
        id: &TenantId,
    ) -> impl Future<Output = Result<Locked<Tenant>, StoreError>> + Send;
    /// A tenant, read under a share lock (`FOR SHARE` on PostgreSQL; a
    /// plain read on SQLite, which has one writer) for a decision that
    /// depends on its opt-in, policy or roles: the decision waits for a
    /// transaction holding [`Directory::lock_tenant`] to finish and then
    /// sees its result, and such a change waits for the decision to commit.
    /// In a read-only transaction, a plain read.
    fn share_tenant(
        &mut self,
        id: &TenantId,
    ) -> impl Future<Output = Result<Option<Tenant>, StoreError>> + Send;
    /// Saves a locked tenant.
    fn save_tenant(
        &mut self,
        tenant: Locked<Tenant>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Tenants in id order.
    fn tenants(
        &mut self,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<Tenant>, StoreError>> + Send;

    /// Attaches a subscription to a tenant.
    fn insert_subscription(
        &mut self,
        id: &SubscriptionId,
        tenant: &TenantId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant a subscription belongs to.
    fn subscription_tenant(
        &mut self,
        id: &SubscriptionId,
    ) -> impl Future<Output = Result<Option<TenantId>, StoreError>> + Send;
    /// A tenant's subscriptions, in id order.
    fn subscriptions(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<SubscriptionId>, StoreError>> + Send;

    /// Every subscription with its tenant.
    fn subscription_owners(
        &mut self,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, TenantId)>, StoreError>> + Send;

    /// Stores a new principal.
    fn insert_principal(
        &mut self,
        principal: &Principal,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every principal's id.
    fn principal_ids(
        &mut self,
    ) -> impl Future<Output = Result<Vec<PrincipalId>, StoreError>> + Send;
    /// A principal.
    fn principal(
        &mut self,
        id: &PrincipalId,
    ) -> impl Future<Output = Result<Option<Principal>, StoreError>> + Send;
    /// A principal and every role it holds (in one query: what
    /// authentication and every authorization decision need).
    fn principal_with_roles(
        &mut self,
        id: &PrincipalId,
    ) -> impl Future<Output = Result<Option<(Principal, Vec<RoleAssignment>)>, StoreError>> + Send;
    /// A tenant's users, in id order.
    fn users(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<Principal>, StoreError>> + Send;
    /// Whether any principal exists (an installation is initialised).
    fn has_principals(&mut self) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a new API token.
    fn insert_token(
        &mut self,
        token: &ApiToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The token with this hash.
    fn token_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<ApiToken>, StoreError>> + Send;
    /// A token by id.
    fn token(
        &mut self,
        id: &TokenId,
    ) -> impl Future<Output = Result<Option<ApiToken>, StoreError>> + Send;
    /// Revokes a token; false if it was already revoked.
    fn revoke_token(
        &mut self,
        id: &TokenId,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Sets a principal's password hash (Argon2id PHC string).
    fn set_password(
        &mut self,
        principal: &PrincipalId,
        hash: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A principal's password hash.
    fn password_hash(
        &mut self,
        principal: &PrincipalId,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Removes a principal's password; whether it had one.
    fn clear_password(
        &mut self,
        principal: &PrincipalId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Revokes a token and, transitively, every token minted from it.
    /// Returns what this revoked (nothing if the token was already revoked
    /// and so were its descendants).
    fn revoke_token_tree(
        &mut self,
        id: &TokenId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<RevokedToken>, StoreError>> + Send;
    /// Revokes every live token and session of a principal and,
    /// transitively, every token minted from them.
    fn revoke_tokens_of(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<RevokedToken>, StoreError>> + Send;
    /// Revokes a principal's live portal sessions but `except` (and,
    /// transitively, what was minted from them).
    fn revoke_sessions_of(
        &mut self,
        principal: &PrincipalId,
        except: &TokenId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<RevokedToken>, StoreError>> + Send;
    /// A principal's tokens and sessions that still work at `now`, newest
    /// first.
    fn live_tokens_of(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<ApiToken>, StoreError>> + Send;
    /// Records when tokens were last used (bookkeeping: never moves a time
    /// back).
    fn record_token_use(
        &mut self,
        uses: &[(TokenId, Timestamp)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A principal, locked for a change of its account (enrolment,
    /// disabling).
    fn lock_principal(
        &mut self,
        id: &PrincipalId,
    ) -> impl Future<Output = Result<Locked<Principal>, StoreError>> + Send;
    /// Saves a locked principal's account state (enrolled, disabled).
    fn save_principal(
        &mut self,
        principal: Locked<Principal>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A principal read under a share lock (`FOR SHARE` on PostgreSQL), for
    /// a change that gives it a credential: it waits for, and then holds
    /// off, a change that ends its credentials (which locks the row).
    fn share_principal(
        &mut self,
        id: &PrincipalId,
    ) -> impl Future<Output = Result<Option<Principal>, StoreError>> + Send;
    /// A token read under a share lock, for minting a token with it: a
    /// revocation of it (which locks its row) waits for the minting to
    /// commit, and then revokes what it minted too.
    fn share_token(
        &mut self,
        id: &TokenId,
    ) -> impl Future<Output = Result<Option<ApiToken>, StoreError>> + Send;
    /// Whether any user of the tenant has ever enrolled (never false again
    /// once true: enrolment is not undone).
    fn tenant_has_enrolled_user(
        &mut self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a new enrolment link.
    fn insert_enrollment(
        &mut self,
        enrollment: &StoredEnrollment,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The enrolment link with this hash, locked to redeem it.
    fn lock_enrollment_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<Locked<Enrollment>>, StoreError>> + Send;
    /// The enrolment link with this hash.
    fn enrollment_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<Enrollment>, StoreError>> + Send;
    /// Saves a locked enrolment link's state.
    fn save_enrollment(
        &mut self,
        enrollment: Locked<Enrollment>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a principal's open links replaced; how many there were.
    fn replace_open_enrollments(
        &mut self,
        principal: &PrincipalId,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores a role assignment.
    fn insert_role_assignment(
        &mut self,
        assignment: &RoleAssignment,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A role assignment.
    fn role_assignment(
        &mut self,
        id: &RoleAssignmentId,
    ) -> impl Future<Output = Result<Option<RoleAssignment>, StoreError>> + Send;
    /// Removes a role assignment.
    fn delete_role_assignment(
        &mut self,
        id: &RoleAssignmentId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A tenant's role assignments, in id order (the order they were made).
    fn role_assignments(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<RoleAssignment>, StoreError>> + Send;
    /// A principal's role assignments (in every tenant).
    fn assignments_of(
        &mut self,
        principal: &PrincipalId,
    ) -> impl Future<Output = Result<Vec<RoleAssignment>, StoreError>> + Send;
    /// How many TenantAdmin assignments a tenant has.
    fn count_tenant_admins(
        &mut self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Defines or redefines an access level.
    fn put_access_level(
        &mut self,
        level: &AccessLevel,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// An access level.
    fn access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> impl Future<Output = Result<Option<AccessLevel>, StoreError>> + Send;
    /// An access level, read under a share lock (`FOR SHARE` on
    /// PostgreSQL) for a request or grant made with its actions: a
    /// redefinition ([`Directory::lock_access_level`]) either lands before
    /// it is read here, or waits until what is made with it commits (and
    /// then sees it among the level's requests and grants).
    fn share_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> impl Future<Output = Result<Option<AccessLevel>, StoreError>> + Send;
    /// An access level, locked for a redefinition (see
    /// [`Directory::share_access_level`]).
    fn lock_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> impl Future<Output = Result<Option<AccessLevel>, StoreError>> + Send;
    /// Every access level, by name.
    fn access_levels(
        &mut self,
    ) -> impl Future<Output = Result<Vec<AccessLevel>, StoreError>> + Send;
}

const TENANT_COLUMNS: &str = "id, display_name, created_at_us, lockbox_enabled, lockbox_changed_at_us, lockbox_changed_by, policy";
const PRINCIPAL_COLUMNS: &str = "id, kind, tenant_id, emergency, display_name, email, alternate_emails, created_at_us, enrolled_at_us, disabled_at_us";
const ASSIGNMENT_COLUMNS: &str =
    "id, tenant_id, principal_id, role, scope, created_at_us, created_by";
const TOKEN_COLUMNS: &str = "id, principal_id, token_hash, created_at_us, expires_at_us, revoked_at_us, parent_id, kind, name, last_used_at_us";
const ENROLLMENT_COLUMNS: &str =
    "id, principal_id, issued_by, created_at_us, expires_at_us, used_at_us, replaced_at_us";

fn tenant_of(row: &AnyRow) -> Result<Tenant, StoreError> {
    let policy: TenantPolicy = row.json("policy")?;
    Ok(Tenant {
        id: row.parsed("id")?,
        display_name: DisplayName::parse(&row.text("display_name")?)
            .map_err(StoreError::corrupt)?,
        created_at: row.time("created_at_us")?,
        lockbox: LockboxSetting {
            enabled: row.flag("lockbox_enabled")?,
            changed_at: row.opt_time("lockbox_changed_at_us")?,
            changed_by: row.opt_parsed("lockbox_changed_by")?,
        },
        policy,
    })
}

fn principal_of(row: &AnyRow) -> Result<Principal, StoreError> {
    let kind = match row.text("kind")?.as_str() {
        "user" => PrincipalKind::User {
            tenant: row.parsed("tenant_id")?,
        },
        "operator" => PrincipalKind::Operator {
            emergency: row.flag("emergency")?,
        },
        "gateway" => PrincipalKind::Gateway,
        "admin" => PrincipalKind::Admin,
        other => return Err(StoreError::corrupt(format!("principal kind `{other}`"))),
    };
    let email = row
        .opt_text("email")?
        .map(|e| Email::parse(&e).map_err(StoreError::corrupt))
        .transpose()?;
    Ok(Principal {
        id: row.parsed("id")?,
        kind,
        display_name: DisplayName::parse(&row.text("display_name")?)
            .map_err(StoreError::corrupt)?,
        email,
        alternate_emails: row.json("alternate_emails")?,
        created_at: row.time("created_at_us")?,
        enrolled_at: row.opt_time("enrolled_at_us")?,
        disabled_at: row.opt_time("disabled_at_us")?,
    })
}

fn assignment_of(row: &AnyRow) -> Result<RoleAssignment, StoreError> {
    assignment_of_prefixed(row, "")
}

/// Decodes an assignment from columns named with `prefix`.
fn assignment_of_prefixed(row: &AnyRow, prefix: &str) -> Result<RoleAssignment, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(RoleAssignment {
        id: row.parsed(&col("id"))?,
        tenant: row.parsed(&col("tenant_id"))?,
        principal: row.parsed(&col("principal_id"))?,
        role: Role::parse(&row.text(&col("role"))?).map_err(StoreError::corrupt)?,
        scope: row.parsed::<Scope>(&col("scope"))?,
        created_at: row.time(&col("created_at_us"))?,
        created_by: row.parsed(&col("created_by"))?,
    })
}

fn token_of(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.parsed("id")?,
        principal: row.parsed("principal_id")?,
        hash: row
            .bytes("token_hash")?
            .try_into()
            .map_err(|_| StoreError::corrupt("a token hash that is not 32 bytes"))?,
        created_at: row.time("created_at_us")?,
        expires_at: row.opt_time("expires_at_us")?,
        revoked_at: row.opt_time("revoked_at_us")?,
        parent: row.opt_parsed("parent_id")?,
        kind: match row.text("kind")?.as_str() {
            "api" => TokenKind::Api,
            "session" => TokenKind::Session,
            other => return Err(StoreError::corrupt(format!("token kind `{other}`"))),
        },
        name: row.opt_text("name")?,
        last_used_at: row.opt_time("last_used_at_us")?,
    })
}

fn enrollment_of(row: &AnyRow) -> Result<Enrollment, StoreError> {
    let state = match (row.opt_time("used_at_us")?, row.opt_time("replaced_at_us")?) {
        (Some(at), _) => EnrollmentState::Used { at },
        (None, Some(at)) => EnrollmentState::Replaced { at },
        (None, None) => EnrollmentState::Open,
    };
    Ok(Enrollment {
        id: row.parsed("id")?,
        principal: row.parsed("principal_id")?,
        issued_by: row.parsed("issued_by")?,
        created_at: row.time("created_at_us")?,
        expires_at: row.time("expires_at_us")?,
        state,
    })
}

fn level_of(row: &AnyRow) -> Result<AccessLevel, StoreError> {
    Ok(AccessLevel {
        name: row.parsed("name")?,
        actions: row.json("actions")?,
        description: Description::parse(&row.text("description")?).map_err(StoreError::corrupt)?,
    })
}

/// The key a scope is compared by: ARM ids are case-insensitive.
fn scope_key(scope: &Scope) -> String {
    match scope {
        Scope::Tenant => "/".to_owned(),
        Scope::Resource(r) => r.canonical(),
    }
}

impl Directory for Tx {
    async fn insert_tenant(&mut self, t: &Tenant) -> Result<(), StoreError> {
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

    async fn tenant(&mut self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(tenant_of).transpose()
    }

    async fn lock_tenant(&mut self, id: &TenantId) -> Result<Locked<Tenant>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?
            .ok_or_else(|| StoreError::not_found("tenant", id))?;
        self.locked(tenant_of(&row)?)
    }

    async fn share_tenant(&mut self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(tenant_of).transpose()
    }

    async fn save_tenant(&mut self, tenant: Locked<Tenant>) -> Result<(), StoreError> {
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

    async fn tenants(&mut self, page: &PageRequest) -> Result<Page<Tenant>, StoreError> {
        let mut c = Conditions::new();
        c.and_some(page.cursor.as_deref(), "id > $1", |id| [id.into()]);
        c.then("ORDER BY id LIMIT $1", [page.fetch_limit().into()]);
        let rows = self
            .all(c.query(&format!("SELECT {TENANT_COLUMNS} FROM tenants")))
            .await?;
        let items = rows.iter().map(tenant_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |t| t.id.to_string()))
    }

    async fn insert_subscription(
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

    async fn subscription_tenant(
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

    async fn subscriptions(
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

    async fn subscription_owners(&mut self) -> Result<Vec<(SubscriptionId, TenantId)>, StoreError> {
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

    async fn principal_ids(&mut self) -> Result<Vec<PrincipalId>, StoreError> {
        let rows = self.all(sqlx::query("SELECT id FROM principals")).await?;
        rows.iter().map(|r| r.parsed("id")).collect()
    }

    async fn insert_principal(&mut self, p: &Principal) -> Result<(), StoreError> {
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
        self.feed(Change::Principal(p.id.clone()));
        Ok(())
    }

    async fn principal(&mut self, id: &PrincipalId) -> Result<Option<Principal>, StoreError> {
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(principal_of).transpose()
    }

    async fn principal_with_roles(
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

    async fn users(
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

    async fn has_principals(&mut self) -> Result<bool, StoreError> {
        Ok(self
            .optional(sqlx::query("SELECT id FROM principals LIMIT 1"))
            .await?
            .is_some())
    }

    async fn insert_token(&mut self, t: &ApiToken) -> Result<(), StoreError> {
        self.audited_write()?;
        let sql = format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
                .bind(opt_micros(t.last_used_at)),
        )
        .await?;
        Ok(())
    }

    async fn token_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash.to_vec()))
            .await?;
        row.as_ref().map(token_of).transpose()
    }

    async fn token(&mut self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(token_of).transpose()
    }

    async fn revoke_token(&mut self, id: &TokenId, now: Timestamp) -> Result<bool, StoreError> {
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

    async fn set_password(
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

    async fn password_hash(
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

    async fn clear_password(&mut self, principal: &PrincipalId) -> Result<bool, StoreError> {
        self.audited_write()?;
        let n = self
            .run(
                sqlx::query("DELETE FROM passwords WHERE principal_id = $1")
                    .bind(principal.as_str().to_owned()),
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_token_tree(
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

    async fn revoke_tokens_of(
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

    async fn revoke_sessions_of(
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

    async fn live_tokens_of(
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

    async fn record_token_use(&mut self, uses: &[(TokenId, Timestamp)]) -> Result<(), StoreError> {
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

    async fn lock_principal(&mut self, id: &PrincipalId) -> Result<Locked<Principal>, StoreError> {
        let sql = self.locking(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?
            .ok_or_else(|| StoreError::not_found("principal", id))?;
        self.locked(principal_of(&row)?)
    }

    async fn save_principal(&mut self, principal: Locked<Principal>) -> Result<(), StoreError> {
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

    async fn share_principal(&mut self, id: &PrincipalId) -> Result<Option<Principal>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
        ));
        let row = self
            .optional(sqlx::query(sql).bind(id.as_str().to_owned()))
            .await?;
        row.as_ref().map(principal_of).transpose()
    }

    async fn share_token(&mut self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = self.sharing(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ));
        let row = self.optional(sqlx::query(sql).bind(id.to_string())).await?;
        row.as_ref().map(token_of).transpose()
    }

    async fn tenant_has_enrolled_user(&mut self, tenant: &TenantId) -> Result<bool, StoreError> {
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

    async fn insert_enrollment(&mut self, e: &StoredEnrollment) -> Result<(), StoreError> {
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

    async fn lock_enrollment_by_hash(
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

    async fn enrollment_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<Option<Enrollment>, StoreError> {
        let sql = format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE token_hash = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash.to_vec()))
            .await?;
        row.as_ref().map(enrollment_of).transpose()
    }

    async fn save_enrollment(&mut self, enrollment: Locked<Enrollment>) -> Result<(), StoreError> {
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

    async fn replace_open_enrollments(
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

    async fn insert_role_assignment(&mut self, a: &RoleAssignment) -> Result<(), StoreError> {
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

    async fn role_assignment(
        &mut self,
        id: &RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(assignment_of).transpose()
    }

    async fn delete_role_assignment(&mut self, id: &RoleAssignmentId) -> Result<(), StoreError> {
        self.audited_write()?;
        let n = self
            .run(sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id.to_string()))
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("role assignment", id));
        }
        Ok(())
    }

    async fn role_assignments(
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

    async fn assignments_of(
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

    async fn count_tenant_admins(&mut self, tenant: &TenantId) -> Result<usize, StoreError> {
        let row = self
            .one(
                sqlx::query("SELECT COUNT(*) AS n FROM role_assignments WHERE tenant_id = $1 AND role = 'TenantAdmin'")
                    .bind(tenant.as_str().to_owned()),
            )
            .await?;
        usize::try_from(row.int("n")?).map_err(|_| StoreError::corrupt("a negative count"))
    }

    async fn put_access_level(
        &mut self,
        level: &AccessLevel,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.audited_write()?;
        self.run(
            sqlx::query(
                "INSERT INTO access_levels (name, actions, description, updated_at_us) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET actions = excluded.actions, description = excluded.description, \
                 updated_at_us = excluded.updated_at_us",
            )
            .bind(level.name.as_str().to_owned())
            .bind(json(&level.actions)?)
            .bind(level.description.as_str().to_owned())
            .bind(micros(now)),
        )
        .await?;
        Ok(())
    }

    async fn access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let row = self
            .optional(
                sqlx::query("SELECT name, actions, description FROM access_levels WHERE name = $1")
                    .bind(name.as_str().to_owned()),
            )
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    async fn share_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let sql =
            self.sharing("SELECT name, actions, description FROM access_levels WHERE name = $1");
        let row = self
            .optional(sqlx::query(sql).bind(name.as_str().to_owned()))
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    async fn lock_access_level(
        &mut self,
        name: &AccessLevelName,
    ) -> Result<Option<AccessLevel>, StoreError> {
        let sql =
            self.locking("SELECT name, actions, description FROM access_levels WHERE name = $1");
        let row = self
            .optional(sqlx::query(sql).bind(name.as_str().to_owned()))
            .await?;
        row.as_ref().map(level_of).transpose()
    }

    async fn access_levels(&mut self) -> Result<Vec<AccessLevel>, StoreError> {
        let rows = self
            .all(sqlx::query(
                "SELECT name, actions, description FROM access_levels ORDER BY name",
            ))
            .await?;
        rows.iter().map(level_of).collect()
    }
}

impl Tx {
    /// Revokes the tokens `roots` selects (its text parameters `$1` and,
    /// if given, `$3`) and, transitively, every token minted from them;
    /// returns those this revoked, with their owners.
    async fn revoke_trees(
        &mut self,
        roots: &str,
        arg: String,
        now: Timestamp,
        third: Option<String>,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.audited_write()?;
        // The roots first, locked, in a statement of their own: a token
        // being minted with one of them holds it under a share lock
        // (`Directory::share_token`) until it commits, and the statements
        // below, started after that, then see what it minted.
        let lock = format!("SELECT id FROM api_tokens WHERE id IN ({roots})");
        let mut query = sqlx::query(self.locking(&lock)).bind(arg.clone());
        if let Some(third) = &third {
            query = query.bind(micros(now)).bind(third.clone());
        }
        self.all(query).await?;
        // Then the trees, as often as a pass revokes something: each pass
        // is a new statement, which on PostgreSQL sees the tokens minted
        // from a revoked one by a transaction that committed meanwhile
        // (once its row is revoked and locked here, no more can be).
        let sql = format!(
            "WITH RECURSIVE tree(id) AS ({roots} \
             UNION SELECT t.id FROM api_tokens t JOIN tree ON t.parent_id = tree.id) \
             UPDATE api_tokens SET revoked_at_us = $2 \
             WHERE id IN (SELECT id FROM tree) AND revoked_at_us IS NULL \
             RETURNING id, principal_id"
        );
        let mut rows = Vec::new();
        loop {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(arg.clone())
                .bind(micros(now));
            if let Some(third) = &third {
                query = query.bind(third.clone());
            }
            let pass = self.all(query).await?;
            if pass.is_empty() {
                break;
            }
            rows.extend(pass);
        }
        let mut revoked = Vec::with_capacity(rows.len());
        let mut tenants: std::collections::HashMap<PrincipalId, Option<TenantId>> =
            std::collections::HashMap::new();
        for row in &rows {
            let id: TokenId = row.parsed("id")?;
            let principal: PrincipalId = row.parsed("principal_id")?;
            let tenant = match tenants.get(&principal) {
                Some(t) => t.clone(),
                None => {
                    let t = self
                        .optional(
                            sqlx::query("SELECT tenant_id FROM principals WHERE id = $1")
                                .bind(principal.as_str().to_owned()),
                        )
                        .await?
                        .map(|r| r.opt_parsed::<TenantId>("tenant_id"))
                        .transpose()?
                        .flatten();
                    tenants.insert(principal.clone(), t.clone());
                    t
                }
            };
            self.feed(Change::TokenRevoked(id));
            revoked.push(RevokedToken {
                id,
                principal,
                tenant,
            });
        }
        revoked.sort_by_key(|t| t.id.to_string());
        Ok(revoked)
    }
}
