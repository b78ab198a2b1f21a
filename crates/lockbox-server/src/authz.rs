//! Authorization, in one place.
//!
//! Handlers never look at roles. They ask this module for a capability (a
//! `ProviderAdmin`, a `TenantAdmin`) or for permission to see a thing, and
//! get it only if the caller qualifies. Decisions on requests (approve,
//! deny, revoke) are the domain's: it checks eligibility against the roles
//! the store holds at that moment; [`approver`] asks the same rule of the
//! roles the caller authenticated with, for what a page offers.
//!
//! When the caller may not see something whose existence would leak across
//! tenants, the answer is `404 not_found`, exactly as for something that
//! does not exist. Otherwise a refusal is `403 forbidden`.
//!
//! Who sees what:
//! - tenants: the provider's admins, and the tenant's own users;
//! - cases: admins, the tenant's users, the operator assigned;
//! - requests: admins, the requester, and users of the tenant holding a role
//!   at a scope overlapping the request's resource (a TenantAdmin's `/`
//!   overlaps all);
//! - grants: admins, the holder, and users of the tenant holding an approver
//!   role (or TenantAdmin) at an overlapping scope.

use lockbox_core::{
    AccessRequest, Approver, Grant, Principal, PrincipalId, PrincipalKind, ProviderAdmin,
    ResourceId, Role, Scope, SupportCase, TenantAdmin, TenantId,
};

use crate::auth::Caller;
use crate::service::ServiceError;

impl Caller {
    /// The caller's id.
    #[must_use]
    pub fn id(&self) -> &PrincipalId {
        &self.principal.id
    }

    /// The tenant of a user caller.
    #[must_use]
    pub fn tenant(&self) -> Option<&TenantId> {
        self.principal.tenant()
    }

    fn is_admin(&self) -> bool {
        matches!(self.principal.kind, PrincipalKind::Admin)
    }

    fn is_user_of(&self, tenant: &TenantId) -> bool {
        self.principal.is_user_of(tenant)
    }

    /// Whether one of the caller's roles in `tenant` (any role, or only
    /// those passing `which`) is held at a scope overlapping `resource`.
    fn has_role_over(
        &self,
        tenant: &TenantId,
        resource: &ResourceId,
        which: impl Fn(Role) -> bool,
    ) -> bool {
        self.is_user_of(tenant)
            && self
                .roles
                .iter()
                .any(|a| &a.tenant == tenant && which(a.role) && overlaps(&a.scope, resource))
    }
}

/// Whether a role at `scope` concerns `resource`: one contains the other.
fn overlaps(scope: &Scope, resource: &ResourceId) -> bool {
    match scope {
        Scope::Tenant => true,
        Scope::Resource(s) => s.contains(resource) || resource.contains(s),
    }
}

/// The provider administration capability.
pub fn provider_admin(c: &Caller) -> Result<ProviderAdmin, ServiceError> {
    ProviderAdmin::authorize(&c.principal)
        .map_err(|_| ServiceError::forbidden("only the provider's admins may do this"))
}

/// The tenant administration capability. The provider's admins are refused
/// too: after onboarding, only the tenant's own TenantAdmins decide.
pub fn tenant_admin(c: &Caller, tenant: &TenantId) -> Result<TenantAdmin, ServiceError> {
    match &c.principal.kind {
        PrincipalKind::User { tenant: own } if own == tenant => {
            TenantAdmin::authorize(&c.principal, &c.roles, tenant).map_err(|_| {
                ServiceError::forbidden(format!(
                    "{} is not a TenantAdmin of tenant {tenant}",
                    c.id()
                ))
            })
        }
        PrincipalKind::User { .. } => Err(ServiceError::not_found(format!("tenant {tenant}"))),
        PrincipalKind::Admin => Err(ServiceError::forbidden(
            "the provider cannot administer a tenant: only the tenant's own TenantAdmins can",
        )),
        _ => Err(ServiceError::forbidden(
            "only the tenant's TenantAdmins may do this",
        )),
    }
}

/// Permission to read a tenant's record: admins and the tenant's users.
pub fn see_tenant(c: &Caller, tenant: &TenantId) -> Result<(), ServiceError> {
    if c.is_admin() || c.is_user_of(tenant) {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!("tenant {tenant}")))
    }
}

/// Permission to act as one of a tenant's users (to open a case).
pub fn tenant_member(c: &Caller, tenant: &TenantId) -> Result<(), ServiceError> {
    match &c.principal.kind {
        PrincipalKind::User { tenant: own } if own == tenant => Ok(()),
        PrincipalKind::User { .. } => Err(ServiceError::not_found(format!("tenant {tenant}"))),
        _ => Err(ServiceError::forbidden(
            "only the tenant's own users may do this",
        )),
    }
}

/// Permission to see a case.
pub fn see_case(c: &Caller, case: &SupportCase) -> Result<(), ServiceError> {
    let assigned = case.assigned_to.as_ref() == Some(c.id());
    if c.is_admin() || c.is_user_of(&case.tenant) || assigned {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!("case {}", case.id)))
    }
}

/// Permission to act on a case as its operator: only the operator it is
/// assigned to; for anyone else it does not exist (as `GET
/// /v1/cases/{id}` says), so no later refusal may tell them whom it is
/// assigned to or whether it is open.
pub fn case_assignee(c: &Caller, case: &SupportCase) -> Result<(), ServiceError> {
    if case.assigned_to.as_ref() == Some(c.id()) {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!("case {}", case.id)))
    }
}

/// Permission to see a request.
pub fn see_request(c: &Caller, r: &AccessRequest) -> Result<(), ServiceError> {
    if c.is_admin() || &r.requester == c.id() || c.has_role_over(&r.tenant, &r.resource, |_| true) {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!("request {}", r.id)))
    }
}

/// Whether a request shown to `c` shows its grant: only to those who may
/// see the grant itself (as `GET /v1/grants/{id}`), so a Reader sees that a
/// request was approved but not the grant.
#[must_use]
pub fn shows_grant_of(c: &Caller, r: &AccessRequest) -> bool {
    r.grant.as_ref().is_none_or(|g| see_grant(c, g).is_ok())
}

/// The capability to decide for `resource` in `tenant` on access
/// `requester` asked for (the domain's rule, on the roles the caller
/// authenticated with; the decision itself checks again on the roles held
/// when it is made).
pub fn approver(
    c: &Caller,
    tenant: &TenantId,
    resource: &ResourceId,
    requester: &PrincipalId,
) -> Result<Approver, ServiceError> {
    Ok(Approver::authorize(
        &c.principal,
        &c.roles,
        tenant,
        resource,
        requester,
    )?)
}

/// Permission to ask for access: operators only.
pub fn requester(c: &Caller) -> Result<(), ServiceError> {
    if c.principal.is_operator() {
        Ok(())
    } else {
        Err(ServiceError::forbidden("only operators request access"))
    }
}

/// Permission to see a grant.
pub fn see_grant(c: &Caller, g: &Grant) -> Result<(), ServiceError> {
    let approver = |role: Role| role.approves() || role == Role::TenantAdmin;
    if c.is_admin() || &g.principal == c.id() || c.has_role_over(&g.tenant, &g.scope, approver) {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!("grant {}", g.id)))
    }
}

/// Which requests (or grants) a list may show the caller, before the
/// per-item check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// The provider's admins: everything.
    All,
    /// An operator: what they asked for (or hold).
    Own(PrincipalId),
    /// A user: their tenant's, narrowed by their roles item by item.
    Tenant(TenantId),
}

/// What lists of requests and grants may show the caller.
pub fn list_scope(c: &Caller) -> Result<ListScope, ServiceError> {
    match &c.principal.kind {
        PrincipalKind::Admin => Ok(ListScope::All),
        PrincipalKind::Operator { .. } => Ok(ListScope::Own(c.id().clone())),
        PrincipalKind::User { tenant } => Ok(ListScope::Tenant(tenant.clone())),
        PrincipalKind::Gateway => Err(ServiceError::forbidden(
            "gateways call `check`; they list nothing",
        )),
    }
}

/// Narrows a list's filter to what the caller may see: `tenant` is the
/// filter's tenant, `owner` the operator whose items it lists (a case's
/// assignee, a request's requester, a grant's holder). Returns `false`
/// when the filter asks for what the caller may not see: the list is then
/// empty, as when nothing matches, not refused. A user's list is narrowed
/// further item by item ([`see_request`], [`see_grant`]).
pub fn narrow_list(
    c: &Caller,
    tenant: &mut Option<TenantId>,
    owner: &mut Option<PrincipalId>,
) -> Result<bool, ServiceError> {
    match list_scope(c)? {
        ListScope::All => {}
        ListScope::Own(op) => {
            if owner.as_ref().is_some_and(|o| o != &op) {
                return Ok(false);
            }
            *owner = Some(op);
        }
        ListScope::Tenant(own) => {
            if tenant.as_ref().is_some_and(|t| t != &own) {
                return Ok(false);
            }
            *tenant = Some(own);
        }
    }
    Ok(true)
}

/// Permission to mint or revoke tokens for `target`: itself; the provider's
/// admins for operators, gateways and admins; a tenant's TenantAdmins for
/// its users.
///
/// A principal the caller may not manage is answered `404`, exactly as
/// one that does not exist, so that nobody learns another tenant's
/// principal ids (or that an id is a tenant's user) by asking; a user of
/// the same tenant who is not its TenantAdmin is refused `403`.
pub fn token_authority(c: &Caller, target: &Principal) -> Result<(), ServiceError> {
    if &target.id == c.id() {
        return Ok(());
    }
    let hidden = || {
        ServiceError::hidden(format!(
            "no principal `{}` whose tokens you manage",
            target.id
        ))
    };
    match &target.kind {
        PrincipalKind::User { tenant } if c.is_user_of(tenant) => {
            tenant_admin(c, tenant).map(|_| ())
        }
        PrincipalKind::User { .. } => Err(hidden()),
        _ if c.is_admin() => Ok(()),
        _ => Err(hidden()),
    }
}

/// Permission to call `check`: gateways only.
pub fn gateway(c: &Caller) -> Result<(), ServiceError> {
    if matches!(c.principal.kind, PrincipalKind::Gateway) {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "only gateways may call `check`; register one with POST /v1/gateways",
        ))
    }
}

/// Permission to mint an access token for a grant: its holder only. Others
/// who may see the grant are refused; those who may not get `404`.
pub fn grant_holder(c: &Caller, g: &Grant) -> Result<(), ServiceError> {
    if &g.principal == c.id() {
        return Ok(());
    }
    see_grant(c, g)?;
    Err(ServiceError::forbidden(format!(
        "only the grant's holder ({}) may mint access tokens or SSH certificates for it",
        g.principal
    )))
}

/// Permission to use break-glass access: emergency operators only (the
/// tenant's policy decides the rest).
pub fn emergency_operator(c: &Caller) -> Result<(), ServiceError> {
    if c.principal.is_emergency_operator() {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "only emergency operators may use emergency access",
        ))
    }
}

/// The capability to read a tenant's audit log: its chain, export and
/// checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReader {
    tenant: TenantId,
}

impl AuditReader {
    /// The tenant whose log may be read.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// Permission to read a tenant's audit log: the tenant's users holding
/// `TenantAdmin`, `Owner` or `LockboxApprover` (at any scope: the log is
/// the tenant's, one chain). Users of other tenants get `404`; everyone
/// else, the provider's admins included, `403`: the log is the customer's.
pub fn audit_reader(c: &Caller, tenant: &TenantId) -> Result<AuditReader, ServiceError> {
    match &c.principal.kind {
        PrincipalKind::User { tenant: own } if own == tenant => {
            let may = c.roles.iter().any(|a| {
                &a.tenant == tenant
                    && matches!(
                        a.role,
                        Role::TenantAdmin | Role::Owner | Role::LockboxApprover
                    )
            });
            if may {
                Ok(AuditReader {
                    tenant: tenant.clone(),
                })
            } else {
                Err(ServiceError::forbidden(format!(
                    "{} may not read tenant {tenant}'s audit log: that takes TenantAdmin, Owner or LockboxApprover",
                    c.id()
                )))
            }
        }
        PrincipalKind::User { .. } => Err(ServiceError::not_found(format!("tenant {tenant}"))),
        _ => Err(ServiceError::forbidden(
            "only the tenant's TenantAdmins, Owners and LockboxApprovers may read its audit log",
        )),
    }
}
