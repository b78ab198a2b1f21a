//! Tenants and their administration: onboarding (the provider), and the
//! tenant's own users, roles, opt-in and policy (its TenantAdmins).

use lockbox_core::principal::NewUser;
use lockbox_core::rules::{Outcome, RuleInput};
use lockbox_core::text::DisplayName;
use lockbox_core::{
    AccessLevelName, AccountManager, DomainError, LockboxSetting, PendingEvent, Principal,
    PrincipalId, ReasonType, ResourceId, Role, RoleAssignment, RoleAssignmentId, Scope, Severity,
    SubscriptionId, Tenant, TenantAdmin, TenantId, TenantPolicy, Timestamp,
};
use lockbox_store::{Page, PageRequest};

use super::accounts::{self, Link, WithLink};
use super::{Receipt, ServiceError};
use crate::auth::Caller;
use crate::{AppState, authz};

/// A tenant just onboarded: the tenant, its first TenantAdmin, and the
/// admin's one-time enrolment link.
#[derive(Debug, Clone)]
pub struct Onboarded {
    /// The tenant.
    pub tenant: Tenant,
    /// Its first TenantAdmin.
    pub admin: Principal,
    /// The admin's link, shown this once.
    pub link: Link,
}

/// A tenant read outside a transaction; `not_found` when there is none.
async fn read_tenant(app: &AppState, id: &TenantId) -> Result<Tenant, ServiceError> {
    app.store()
        .read()
        .await?
        .tenant(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("tenant {id}")))
}

/// Onboards a tenant with its first TenantAdmin (provider admins). Nothing
/// is a credential: the admin gets a one-time enrolment link, which the
/// provider sends to that person. `receipt` records the answer.
pub async fn create<R: Receipt<Onboarded>>(
    app: &AppState,
    caller: &Caller,
    id: TenantId,
    display_name: DisplayName,
    first: NewUser,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::provider_admin(caller)?;
    let now = app.now();
    let on = Tenant::onboard(
        &cap,
        id,
        display_name,
        first,
        RoleAssignmentId::generate(now).map_err(ServiceError::from)?,
        now,
    );
    let mut events = on.events.clone();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let link = async {
        tx.insert_tenant(&on.tenant).await?;
        tx.insert_principal(&on.admin).await?;
        tx.insert_role_assignment(&on.assignment).await?;
        let manager = AccountManager::onboarding(cap);
        let (link, link_events) =
            accounts::issue_link(app, &mut tx, &manager, &on.admin, now).await?;
        events.extend(link_events);
        Ok::<_, ServiceError>(link)
    }
    .await?;
    let made = Onboarded {
        tenant: on.tenant,
        admin: on.admin,
        link,
    };
    let out = receipt.record(&mut tx, &made).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// Tenants the caller may see: all for provider admins, their own for a
/// tenant's users.
pub async fn list(
    app: &AppState,
    caller: &Caller,
    page: &PageRequest,
) -> Result<Page<Tenant>, ServiceError> {
    let mut tx = app.store().read().await?;
    match (authz::provider_admin(caller), caller.tenant()) {
        (Ok(_), _) => Ok(tx.tenants(page).await?),
        (Err(_), Some(own)) => {
            let visible = tx
                .tenant(own)
                .await?
                .filter(|t| page.cursor.as_deref().is_none_or(|c| t.id.as_str() > c));
            Ok(Page {
                items: visible.into_iter().collect(),
                next_cursor: None,
            })
        }
        (Err(e), None) => Err(e),
    }
}

/// One tenant (provider admins and the tenant's users).
pub async fn get(app: &AppState, caller: &Caller, id: &TenantId) -> Result<Tenant, ServiceError> {
    authz::see_tenant(caller, id)?;
    read_tenant(app, id).await
}

/// Attaches a subscription to a tenant (provider admins). `receipt`
/// records the answer.
pub async fn add_subscription<R: Receipt<SubscriptionId>>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    sub: SubscriptionId,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::provider_admin(caller)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let events = async {
        let t = tx
            .tenant(tenant)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("tenant {tenant}")))?;
        let owner = tx.subscription_tenant(&sub).await?;
        let event = t.add_subscription(&cap, &sub, owner.as_ref(), now)?;
        let events: Vec<_> = event.into_iter().collect();
        if !events.is_empty() {
            tx.insert_subscription(&sub, tenant, now).await?;
        }
        Ok::<_, ServiceError>(events)
    }
    .await?;
    let out = receipt.record(&mut tx, &sub).await?;
    tx.commit(events).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// A tenant's subscriptions, in id order (provider admins and the
/// tenant's users).
pub async fn subscriptions(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<SubscriptionId>, ServiceError> {
    authz::see_tenant(caller, tenant)?;
    let mut tx = app.store().read().await?;
    if tx.tenant(tenant).await?.is_none() {
        return Err(ServiceError::not_found(format!("tenant {tenant}")));
    }
    Ok(tx.subscriptions(tenant, page).await?)
}

/// Creates a user in the tenant (its TenantAdmins), with a one-time
/// enrolment link the person sets their own password with. An id taken
/// anywhere in the installation is refused without saying where.
/// `receipt` records the answer.
pub async fn create_user<R: Receipt<WithLink>>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    user: NewUser,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let (principal, event) =
        Principal::create_user(&cap, user, app.now()).map_err(ServiceError::from)?;
    let manager = AccountManager::Tenant(cap);
    accounts::create_with_link(app, &manager, principal, None, event, receipt).await
}

/// The tenant's users, in id order (its TenantAdmins).
pub async fn users(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<Principal>, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    Ok(app.store().read().await?.users(tenant, page).await?)
}

/// A role to give.
#[derive(Debug, Clone)]
pub struct NewRole {
    /// To whom: a user of the tenant.
    pub principal: PrincipalId,
    /// Which role.
    pub role: Role,
    /// Where.
    pub scope: Scope,
}

/// Gives a user of the tenant a role at a scope (its TenantAdmins).
/// `receipt` records the answer.
pub async fn assign_role<R: Receipt<RoleAssignment>>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    new: NewRole,
    receipt: R,
) -> Result<R::Out, R::Error> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await.map_err(ServiceError::from)?;
    let (assignment, event) = async {
        // Serializes changes of the tenant's roles (the last-admin rule).
        let _tenant = tx.lock_tenant(tenant).await?;
        let principal = tx
            .principal(&new.principal)
            .await?
            .filter(|p| p.is_user_of(tenant))
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "{} is not a user of tenant {tenant}",
                    new.principal
                ))
            })?;
        let scope_tenant = match new.scope.subscription() {
            Some(sub) => tx.subscription_tenant(&sub).await?,
            None => None,
        };
        let (assignment, event) = RoleAssignment::assign(
            &cap,
            RoleAssignmentId::generate(now)?,
            &principal,
            new.role,
            new.scope,
            scope_tenant.as_ref(),
            now,
        )?;
        tx.insert_role_assignment(&assignment).await?;
        Ok::<_, ServiceError>((assignment, event))
    }
    .await?;
    let out = receipt.record(&mut tx, &assignment).await?;
    tx.commit(vec![event]).await.map_err(ServiceError::from)?;
    Ok(out)
}

/// The tenant's role assignments, oldest first (its TenantAdmins).
pub async fn roles(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<RoleAssignment>, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    Ok(app
        .store()
        .read()
        .await?
        .role_assignments(tenant, page)
        .await?)
}

/// Removes a role assignment (its TenantAdmins). The last TenantAdmin
/// cannot be removed.
pub async fn remove_role(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    id: &RoleAssignmentId,
) -> Result<(), ServiceError> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let _tenant = tx.lock_tenant(tenant).await?;
    let assignment = tx
        .role_assignment(id)
        .await?
        .filter(|a| &a.tenant == tenant)
        .ok_or_else(|| ServiceError::not_found(format!("role assignment {id}")))?;
    let admins = tx.count_tenant_admins(tenant).await?;
    let event = assignment.remove(&cap, admins, now)?;
    tx.delete_role_assignment(id).await?;
    tx.commit(vec![event]).await?;
    Ok(())
}

/// Whether the tenant has opted in (its TenantAdmins).
pub async fn lockbox(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<LockboxSetting, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    Ok(read_tenant(app, tenant).await?.lockbox)
}

/// Changes the tenant's settings under its lock (its TenantAdmins):
/// `change` is the domain's, audited when it changed something; the
/// tenant as saved.
async fn change_tenant(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    change: impl FnOnce(
        &mut Tenant,
        &TenantAdmin,
        Timestamp,
    ) -> Result<Option<PendingEvent>, DomainError>,
) -> Result<Tenant, ServiceError> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let mut t = tx.lock_tenant(tenant).await?;
    let event = change(&mut t, &cap, now)?;
    let out = (*t).clone();
    tx.save_tenant(t).await?;
    match event {
        Some(event) => {
            tx.commit(vec![event]).await?;
        }
        None => tx.commit_unaudited().await?,
    }
    Ok(out)
}

/// Opts in or out (its TenantAdmins); audited when it changes. The first
/// time Lockbox is enabled, the tenant's SSH certificate authority is made
/// in the same transaction (`ssh.ca_created`).
pub async fn set_lockbox(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    enabled: bool,
) -> Result<LockboxSetting, ServiceError> {
    let cap = authz::tenant_admin(caller, tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let mut t = tx.lock_tenant(tenant).await?;
    let mut events: Vec<PendingEvent> = t.set_lockbox(&cap, enabled, now)?.into_iter().collect();
    let setting = t.lockbox.clone();
    tx.save_tenant(t).await?;
    if enabled {
        events.extend(
            super::ssh::ensure_authority(
                &mut tx,
                app.kek(),
                tenant,
                caller.id().clone().into(),
                now,
            )
            .await?,
        );
    }
    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(setting)
}

/// The tenant's policy (its TenantAdmins).
pub async fn policy(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<TenantPolicy, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    Ok(read_tenant(app, tenant).await?.policy)
}

/// A draft request, for [`simulate`].
#[derive(Debug, Clone)]
pub struct Draft {
    /// The resource or scope.
    pub resource: ResourceId,
    /// The access level.
    pub access_level: AccessLevelName,
    /// Who would ask.
    pub operator: PrincipalId,
    /// The case's severity.
    pub severity: Severity,
    /// The reason type.
    pub reason_type: ReasonType,
    /// When; `None`: now.
    pub at: Option<Timestamp>,
}

/// What [`simulate`] found.
#[derive(Debug, Clone)]
pub struct Simulated {
    /// `approve`, `deny` or `require_approvals`.
    pub decision: &'static str,
    /// The rule that would apply.
    pub rule: Option<String>,
    /// Approvals it would need.
    pub required_approvals: u32,
    /// Groups each of which would have to give one of them.
    pub required_groups: Vec<String>,
    /// Whether the tenant has opted in.
    pub lockbox_enabled: bool,
    /// In words.
    pub explanation: String,
}

/// Which rule of the tenant's policy (or of `policy`, not saved) a draft
/// request would meet, and what would happen (its TenantAdmins). Reads
/// only.
pub async fn simulate(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    draft: &Draft,
    policy: Option<TenantPolicy>,
) -> Result<Simulated, ServiceError> {
    authz::tenant_admin(caller, tenant)?;
    let t = read_tenant(app, tenant).await?;
    let policy = policy.unwrap_or(t.policy);
    let enabled = t.lockbox.enabled;
    let input = RuleInput {
        access_level: &draft.access_level,
        resource: &draft.resource,
        severity: draft.severity,
        reason_type: draft.reason_type,
        operator: &draft.operator,
        at: draft.at.unwrap_or_else(|| app.now()),
    };
    let outcome = Outcome::of(&policy, enabled, &input)?;
    let rule = outcome.rule().map(|r| r.name.to_string());
    let required_groups = outcome
        .requirements()
        .1
        .iter()
        .map(ToString::to_string)
        .collect();
    let (decision, required_approvals, explanation) = match outcome {
        Outcome::NotEnabled => (
            "approve",
            0,
            format!(
                "Lockbox is not enabled for tenant {tenant}: the system approves every request at once, whatever the rules"
            ),
        ),
        Outcome::Approved(r) => (
            "approve",
            0,
            format!("rule `{}` approves it at once", r.name),
        ),
        Outcome::Denied(r, reason) => {
            ("deny", 0, format!("rule `{}` refuses it: {reason}", r.name))
        }
        Outcome::Waits {
            approvals,
            groups,
            rule: Some(r),
        } => (
            "require_approvals",
            approvals,
            if groups.is_empty() {
                format!("rule `{}` requires {approvals} distinct approvals", r.name)
            } else {
                format!(
                    "rule `{}` requires {approvals} distinct approvals, one from each of the groups {}",
                    r.name,
                    groups
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ),
        Outcome::Waits {
            approvals,
            rule: None,
            ..
        } => (
            "require_approvals",
            approvals,
            format!("no rule matches: the policy's default of {approvals} distinct approvals"),
        ),
    };
    Ok(Simulated {
        decision,
        rule,
        required_approvals,
        required_groups,
        lockbox_enabled: enabled,
        explanation,
    })
}

/// Replaces the tenant's policy (its TenantAdmins); audited with the
/// policy before and after when it changes.
pub async fn set_policy(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    policy: TenantPolicy,
) -> Result<TenantPolicy, ServiceError> {
    set_policy_with(app, caller, tenant, |_| Ok(policy)).await
}

/// Replaces the tenant's policy with what `edit` makes of the current one,
/// read and written in one transaction (so that a form that changes only
/// some keys never undoes a change made meanwhile to the others).
pub async fn set_policy_with(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    edit: impl FnOnce(&TenantPolicy) -> Result<TenantPolicy, DomainError>,
) -> Result<TenantPolicy, ServiceError> {
    let t = change_tenant(app, caller, tenant, |t, cap, now| {
        let policy = edit(&t.policy)?;
        t.set_policy(cap, policy, now)
    })
    .await?;
    Ok(t.policy)
}
