//! Capabilities for administration.
//!
//! A function that changes a tenant's users, roles, opt-in or policy takes a
//! [`TenantAdmin`]; one that onboards tenants or registers provider
//! principals takes a [`ProviderAdmin`]. Each can only be obtained from
//! `authorize`, which checks the caller, so no code path can forget the
//! check. There is deliberately no way to turn a `ProviderAdmin` into a
//! `TenantAdmin`: the provider cannot approve for the customer, nor make
//! itself an approver.

use crate::error::DomainError;
use crate::id::{PrincipalId, TenantId};
use crate::principal::{Principal, PrincipalKind, Role, RoleAssignment};
use crate::resource::{ResourceId, Scope};

/// Proof that the caller is a provider administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAdmin {
    principal: PrincipalId,
}

impl ProviderAdmin {
    /// Admits `principal` if it is a provider admin.
    pub fn authorize(principal: &Principal) -> Result<Self, DomainError> {
        match principal.kind {
            PrincipalKind::Admin => Ok(Self {
                principal: principal.id.clone(),
            }),
            _ => Err(DomainError::forbidden(format!(
                "{} is not a provider admin",
                principal.id
            ))),
        }
    }

    /// Who is acting.
    #[must_use]
    pub fn principal(&self) -> &PrincipalId {
        &self.principal
    }
}

/// Proof that the caller administers a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAdmin {
    principal: PrincipalId,
    tenant: TenantId,
}

impl TenantAdmin {
    /// Admits `principal` if it is a user of `tenant` holding TenantAdmin at
    /// the tenant scope among `assignments`.
    pub fn authorize(
        principal: &Principal,
        assignments: &[RoleAssignment],
        tenant: &TenantId,
    ) -> Result<Self, DomainError> {
        let holds = principal.is_user_of(tenant)
            && assignments.iter().any(|a| {
                a.principal == principal.id
                    && &a.tenant == tenant
                    && a.role == Role::TenantAdmin
                    && a.scope == Scope::Tenant
            });
        if holds {
            Ok(Self {
                principal: principal.id.clone(),
                tenant: tenant.clone(),
            })
        } else {
            Err(DomainError::forbidden(format!(
                "{} is not a TenantAdmin of tenant {tenant}",
                principal.id
            )))
        }
    }

    /// Who is acting.
    #[must_use]
    pub fn principal(&self) -> &PrincipalId {
        &self.principal
    }

    /// The tenant administered.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// Proof that the caller may approve, deny or revoke for a resource of a
/// tenant, on access someone else asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    principal: PrincipalId,
    tenant: TenantId,
    resource: ResourceId,
}

impl Approver {
    /// Admits `principal` if it may decide for `resource` in `tenant` when
    /// `requester` asked, given the role assignments in force now.
    ///
    /// The rule: Owner or LockboxApprover at the resource's scope or above,
    /// held by an enabled user of the same tenant, and never the requester.
    /// `assignments` may hold anyone's assignments; only the principal's
    /// own in this tenant count.
    pub fn authorize(
        principal: &Principal,
        assignments: &[RoleAssignment],
        tenant: &TenantId,
        resource: &ResourceId,
        requester: &PrincipalId,
    ) -> Result<Self, DomainError> {
        if &principal.id == requester {
            return Err(DomainError::SelfApproval {
                principal: principal.id.clone(),
            });
        }
        let eligible = principal.is_user_of(tenant)
            && principal.is_enabled()
            && assignments.iter().any(|a| {
                a.principal == principal.id
                    && &a.tenant == tenant
                    && a.role.approves()
                    && a.scope.contains(resource)
            });
        if eligible {
            Ok(Self {
                principal: principal.id.clone(),
                tenant: tenant.clone(),
                resource: resource.clone(),
            })
        } else {
            Err(DomainError::NotAnApprover {
                principal: principal.id.clone(),
                resource: resource.clone(),
                tenant: tenant.clone(),
            })
        }
    }

    /// Who decides.
    #[must_use]
    pub fn principal(&self) -> &PrincipalId {
        &self.principal
    }

    /// In which tenant.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// For which resource.
    #[must_use]
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }
}
