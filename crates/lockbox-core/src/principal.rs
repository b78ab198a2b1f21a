//! Principals, roles at scopes, and who may decide on a request.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{Chain, EventKind, PendingEvent};
use crate::authz::{ProviderAdmin, TenantAdmin};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::gateway::GatewaySettings;
use crate::id::{PrincipalId, RoleAssignmentId, TenantId};
use crate::resource::{ResourceId, Scope};
use crate::text::{DisplayName, Email};

/// What kind of principal, and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person of a customer tenant.
    User {
        /// The tenant the user belongs to.
        tenant: TenantId,
    },
    /// A provider support engineer.
    Operator {
        /// May use break-glass emergency access.
        emergency: bool,
    },
    /// A resource gateway: calls `check`.
    Gateway,
    /// A provider administrator.
    Admin,
}

impl PrincipalKind {
    /// The kind's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::Operator { .. } => "operator",
            Self::Gateway => "gateway",
            Self::Admin => "admin",
        }
    }
}

/// Someone (or something) that acts in Lockbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Unique across the installation.
    pub id: PrincipalId,
    /// Kind and tenant.
    #[serde(flatten)]
    pub kind: PrincipalKind,
    /// Name shown to people.
    pub display_name: DisplayName,
    /// Where notifications go (users and operators).
    pub email: Option<Email>,
    /// More addresses that also receive a user's notifications.
    pub alternate_emails: Vec<Email>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the person (or program) behind it took up its credentials
    /// through an enrolment link; `None` until then.
    #[serde(default)]
    pub enrolled_at: Option<Timestamp>,
    /// When it was disabled; `None` while it may act.
    #[serde(default)]
    pub disabled_at: Option<Timestamp>,
}

/// What a tenant admin supplies to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The user's id.
    pub id: PrincipalId,
    /// Name shown to people.
    pub display_name: DisplayName,
    /// Where notifications go.
    pub email: Email,
    /// More addresses for notifications.
    pub alternate_emails: Vec<Email>,
}

/// At most this many alternate addresses per user.
pub const MAX_ALTERNATE_EMAILS: usize = 8;

impl Principal {
    /// The tenant of a user; `None` for provider principals.
    #[must_use]
    pub fn tenant(&self) -> Option<&TenantId> {
        match &self.kind {
            PrincipalKind::User { tenant } => Some(tenant),
            _ => None,
        }
    }

    /// Whether this is a user of `tenant`.
    #[must_use]
    pub fn is_user_of(&self, tenant: &TenantId) -> bool {
        self.tenant() == Some(tenant)
    }

    /// Whether it may act: not disabled.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.disabled_at.is_none()
    }

    /// Whether this is an operator.
    #[must_use]
    pub fn is_operator(&self) -> bool {
        matches!(self.kind, PrincipalKind::Operator { .. })
    }

    /// Whether this is an operator allowed break-glass access.
    #[must_use]
    pub fn is_emergency_operator(&self) -> bool {
        matches!(self.kind, PrincipalKind::Operator { emergency: true })
    }

    /// A tenant admin creates a user in their own tenant. The provider has no
    /// way to do this: only [`TenantAdmin`] opens it.
    pub fn create_user(
        by: &TenantAdmin,
        user: NewUser,
        now: Timestamp,
    ) -> Result<(Principal, PendingEvent), DomainError> {
        if user.alternate_emails.len() > MAX_ALTERNATE_EMAILS {
            return Err(DomainError::invalid(format!(
                "alternate_emails holds at most {MAX_ALTERNATE_EMAILS} addresses"
            )));
        }
        let principal = Principal {
            id: user.id,
            kind: PrincipalKind::User {
                tenant: by.tenant().clone(),
            },
            display_name: user.display_name,
            email: Some(user.email),
            alternate_emails: user.alternate_emails,
            created_at: now,
            enrolled_at: None,
            disabled_at: None,
        };
        let event = PendingEvent::new(
            by.tenant().clone(),
            now,
            by.principal().clone(),
            EventKind::UserCreated,
            &principal.id,
            json!({
                "display_name": principal.display_name,
                "email": principal.email,
                "alternate_emails": principal.alternate_emails,
            }),
        );
        Ok((principal, event))
    }

    /// A tenant's identity provider vouched for a person nobody created:
    /// when the tenant allows it (`create_on_first_sign_in`), their first
    /// sign-in creates them, enrolled and with no role, recorded as the
    /// system's doing on the IdP's word (`issuer`).
    #[must_use]
    pub fn create_on_first_sign_in(
        tenant: &TenantId,
        user: NewUser,
        issuer: &str,
        now: Timestamp,
    ) -> (Principal, PendingEvent) {
        let principal = Principal {
            id: user.id,
            kind: PrincipalKind::User {
                tenant: tenant.clone(),
            },
            display_name: user.display_name,
            email: Some(user.email),
            alternate_emails: Vec::new(),
            created_at: now,
            enrolled_at: Some(now),
            disabled_at: None,
        };
        let event = PendingEvent::new(
            tenant.clone(),
            now,
            crate::audit::Actor::System,
            EventKind::UserCreated,
            &principal.id,
            json!({
                "display_name": principal.display_name,
                "email": principal.email,
                "alternate_emails": principal.alternate_emails,
                "created_on_first_sign_in": true,
                "issuer": issuer,
            }),
        );
        (principal, event)
    }

    /// The provider registers a support engineer.
    #[must_use]
    pub fn register_operator(
        by: &ProviderAdmin,
        id: PrincipalId,
        display_name: DisplayName,
        email: Email,
        emergency: bool,
        now: Timestamp,
    ) -> (Principal, PendingEvent) {
        let principal = Principal {
            id,
            kind: PrincipalKind::Operator { emergency },
            display_name,
            email: Some(email),
            alternate_emails: Vec::new(),
            created_at: now,
            enrolled_at: None,
            disabled_at: None,
        };
        let event = PendingEvent::new(
            Chain::Provider,
            now,
            by.principal().clone(),
            EventKind::OperatorRegistered,
            &principal.id,
            json!({
                "display_name": principal.display_name,
                "email": principal.email,
                "emergency": emergency,
            }),
        );
        (principal, event)
    }

    /// The provider registers a resource gateway.
    #[must_use]
    pub fn register_gateway(
        by: &ProviderAdmin,
        id: PrincipalId,
        display_name: DisplayName,
        settings: &GatewaySettings,
        now: Timestamp,
    ) -> (Principal, PendingEvent) {
        let principal = Principal {
            id,
            kind: PrincipalKind::Gateway,
            display_name,
            email: None,
            alternate_emails: Vec::new(),
            created_at: now,
            enrolled_at: None,
            disabled_at: None,
        };
        let event = PendingEvent::new(
            Chain::Provider,
            now,
            by.principal().clone(),
            EventKind::GatewayRegistered,
            &principal.id,
            json!({
                "display_name": principal.display_name,
                "tenant": settings.tenant,
                "resource": settings.resource,
                "token_cookie": settings.token_cookie,
                "principal_header": settings.principal_header,
            }),
        );
        (principal, event)
    }
}

/// A role a tenant's user can hold at a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Administers the tenant: opt-in, policy, users, roles, channels. Held at
    /// the tenant scope only. Does not by itself approve requests.
    TenantAdmin,
    /// Owns resources at the scope; approves requests for them.
    Owner,
    /// Approves requests for resources at the scope.
    LockboxApprover,
    /// Reads the tenant's requests at the scope; decides nothing.
    Reader,
}

impl Role {
    /// Whether holders of this role are eligible approvers.
    #[must_use]
    pub fn approves(self) -> bool {
        matches!(self, Self::Owner | Self::LockboxApprover)
    }

    /// The role's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantAdmin => "TenantAdmin",
            Self::Owner => "Owner",
            Self::LockboxApprover => "LockboxApprover",
            Self::Reader => "Reader",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        [
            Self::TenantAdmin,
            Self::Owner,
            Self::LockboxApprover,
            Self::Reader,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| {
            DomainError::invalid(format!(
                "unknown role `{}`; roles are TenantAdmin, Owner, LockboxApprover and Reader",
                crate::id::shorten(s)
            ))
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user holding a role at a scope of their tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// The assignment's id.
    pub id: RoleAssignmentId,
    /// The tenant.
    pub tenant: TenantId,
    /// Who holds the role.
    pub principal: PrincipalId,
    /// The role.
    pub role: Role,
    /// Where it applies.
    pub scope: Scope,
    /// When it was made.
    pub created_at: Timestamp,
    /// Who made it.
    pub created_by: PrincipalId,
}

impl RoleAssignment {
    /// A tenant admin gives `principal` a `role` at `scope`.
    ///
    /// `scope_tenant` is the tenant that owns the scope's subscription (the
    /// caller looks it up; `None` when no tenant owns it). The principal must
    /// be a user of the admin's tenant, `TenantAdmin` is held at the tenant
    /// scope (`/`) only, and other roles at a scope inside the tenant.
    pub fn assign(
        by: &TenantAdmin,
        id: RoleAssignmentId,
        principal: &Principal,
        role: Role,
        scope: Scope,
        scope_tenant: Option<&TenantId>,
        now: Timestamp,
    ) -> Result<(RoleAssignment, PendingEvent), DomainError> {
        let tenant = by.tenant();
        if !principal.is_user_of(tenant) {
            return Err(DomainError::invalid(format!(
                "{} is not a user of tenant {tenant}; roles are held by the tenant's own users",
                principal.id
            )));
        }
        match (&scope, role) {
            (Scope::Tenant, _) => {}
            (Scope::Resource(_), Role::TenantAdmin) => {
                return Err(DomainError::invalid(
                    "TenantAdmin is assigned at the tenant scope `/` only",
                ));
            }
            (Scope::Resource(r), _) => {
                if scope_tenant != Some(tenant) {
                    return Err(DomainError::OutOfScope(format!(
                        "subscription {} does not belong to tenant {tenant}",
                        r.subscription()
                    )));
                }
            }
        }
        let assignment = RoleAssignment {
            id,
            tenant: tenant.clone(),
            principal: principal.id.clone(),
            role,
            scope,
            created_at: now,
            created_by: by.principal().clone(),
        };
        let event = PendingEvent::new(
            tenant.clone(),
            now,
            by.principal().clone(),
            EventKind::RoleAssigned,
            assignment.id,
            json!({
                "principal": assignment.principal,
                "role": assignment.role,
                "scope": assignment.scope,
            }),
        );
        Ok((assignment, event))
    }

    /// A tenant admin removes this assignment. `tenant_admins` is how many
    /// TenantAdmin assignments the tenant has now: the last one cannot be
    /// removed, or nobody could administer the tenant again (and the provider
    /// must not be the one to restore it).
    pub fn remove(
        &self,
        by: &TenantAdmin,
        tenant_admins: usize,
        now: Timestamp,
    ) -> Result<PendingEvent, DomainError> {
        if &self.tenant != by.tenant() {
            return Err(DomainError::forbidden(format!(
                "role assignment {} is not in tenant {}",
                self.id,
                by.tenant()
            )));
        }
        if self.role == Role::TenantAdmin && tenant_admins <= 1 {
            return Err(DomainError::Conflict(format!(
                "{} is tenant {}'s last TenantAdmin; assign another before removing this one",
                self.principal, self.tenant
            )));
        }
        Ok(PendingEvent::new(
            self.tenant.clone(),
            now,
            by.principal().clone(),
            EventKind::RoleRemoved,
            self.id,
            json!({
                "principal": self.principal,
                "role": self.role,
                "scope": self.scope,
            }),
        ))
    }
}

/// Decides whether `principal` may approve, deny or revoke for `resource` in
/// `tenant`, given the role assignments in force now.
///
/// The rule: Owner or LockboxApprover at the resource's scope or above, held
/// by an enabled user of the same tenant, and never the requester. `assignments` may
/// hold anyone's assignments; only the principal's own in this tenant count.
pub fn check_approver(
    principal: &Principal,
    assignments: &[RoleAssignment],
    tenant: &TenantId,
    resource: &ResourceId,
    requester: &PrincipalId,
) -> Result<(), DomainError> {
    crate::authz::Approver::authorize(principal, assignments, tenant, resource, requester)
        .map(|_| ())
}

/// Everyone who may decide on a request for `resource` in `tenant`: the
/// people to notify. `users` are the tenant's users and `assignments` its
/// role assignments; the requester is never included.
#[must_use]
pub fn eligible_approvers<'a>(
    users: &'a [Principal],
    assignments: &[RoleAssignment],
    tenant: &TenantId,
    resource: &ResourceId,
    requester: &PrincipalId,
) -> Vec<&'a Principal> {
    users
        .iter()
        .filter(|u| check_approver(u, assignments, tenant, resource, requester).is_ok())
        .collect()
}
