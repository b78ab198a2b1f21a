//! Tenants and their policy, subscriptions, principals, credentials, role
//! assignments and access levels.

mod access_levels;
mod credentials;
mod identity;
mod principals;
mod tenants;

use lockbox_core::account::{Enrollment, EnrollmentState};
use lockbox_core::principal::Role;
use lockbox_core::text::{Description, DisplayName, Email};
use lockbox_core::{
    AccessLevel, LockboxSetting, Principal, PrincipalId, PrincipalKind, RoleAssignment, Scope,
    Tenant, TenantId, TenantPolicy, Timestamp, TokenId,
};
use sqlx::any::AnyRow;

pub use identity::{IdentityLink, StoredIdentityProvider};

use crate::changes::Change;
use crate::codec::{RowExt as _, micros};
use crate::error::StoreError;
use crate::tx::Tx;

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
    /// When the person's identity provider last authenticated them, for a
    /// session signed in through single sign-on and the API tokens minted
    /// from one (`None` for anything that comes from a password).
    pub sso_auth_time: Option<Timestamp>,
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

const TENANT_COLUMNS: &str = "id, display_name, created_at_us, lockbox_enabled, lockbox_changed_at_us, lockbox_changed_by, policy";
const PRINCIPAL_COLUMNS: &str = "id, kind, tenant_id, emergency, display_name, email, alternate_emails, created_at_us, enrolled_at_us, disabled_at_us";
const ASSIGNMENT_COLUMNS: &str =
    "id, tenant_id, principal_id, role, scope, created_at_us, created_by";
const TOKEN_COLUMNS: &str = "id, principal_id, token_hash, created_at_us, expires_at_us, revoked_at_us, parent_id, kind, name, last_used_at_us, sso_auth_time_us";
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
        sso_auth_time: row.opt_time("sso_auth_time_us")?,
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
        ssh: row.opt_json("ssh")?,
    })
}

/// The key a scope is compared by: ARM ids are case-insensitive.
fn scope_key(scope: &Scope) -> String {
    match scope {
        Scope::Tenant => "/".to_owned(),
        Scope::Resource(r) => r.canonical(),
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
        // (`Tx::share_token`) until it commits, and the statements
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
