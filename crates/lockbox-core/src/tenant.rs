//! Tenants: onboarding by the provider, subscriptions, and the tenant's own
//! opt-in and policy.

use serde::Serialize;
use serde_json::json;

use crate::audit::{EventKind, PendingEvent};
use crate::authz::{ProviderAdmin, TenantAdmin};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::id::{RoleAssignmentId, TenantId};
use crate::policy::{LockboxSetting, TenantPolicy};
use crate::principal::{NewUser, Principal, PrincipalKind, Role, RoleAssignment};
use crate::resource::{Scope, SubscriptionId};
use crate::text::DisplayName;

/// A customer organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// Its name.
    pub display_name: DisplayName,
    /// When the provider onboarded it.
    pub created_at: Timestamp,
    /// Whether it has opted in (off by default).
    pub lockbox: LockboxSetting,
    /// Its policy.
    pub policy: TenantPolicy,
}

/// Everything onboarding creates.
#[derive(Debug, Clone)]
pub struct Onboarding {
    /// The tenant, with Lockbox off and the default policy.
    pub tenant: Tenant,
    /// Its first user.
    pub admin: Principal,
    /// That user's TenantAdmin role.
    pub assignment: RoleAssignment,
    /// The tenant chain's first events, in order.
    pub events: Vec<PendingEvent>,
}

impl Tenant {
    /// The provider onboards a tenant with its first TenantAdmin. After this
    /// the provider has no way to create the tenant's users, assign its roles
    /// or change its policy: those take a [`TenantAdmin`].
    #[must_use]
    pub fn onboard(
        by: &ProviderAdmin,
        id: TenantId,
        display_name: DisplayName,
        first_admin: NewUser,
        assignment_id: RoleAssignmentId,
        now: Timestamp,
    ) -> Onboarding {
        let tenant = Tenant {
            id: id.clone(),
            display_name,
            created_at: now,
            lockbox: LockboxSetting::default(),
            policy: TenantPolicy::default(),
        };
        let admin = Principal {
            id: first_admin.id,
            kind: PrincipalKind::User { tenant: id.clone() },
            display_name: first_admin.display_name,
            email: Some(first_admin.email),
            alternate_emails: first_admin.alternate_emails,
            created_at: now,
            enrolled_at: None,
            disabled_at: None,
        };
        let assignment = RoleAssignment {
            id: assignment_id,
            tenant: id.clone(),
            principal: admin.id.clone(),
            role: Role::TenantAdmin,
            scope: Scope::Tenant,
            created_at: now,
            created_by: by.principal().clone(),
        };
        let actor = by.principal().clone();
        let events = vec![
            PendingEvent::new(
                id.clone(),
                now,
                actor.clone(),
                EventKind::TenantCreated,
                &id,
                json!({
                    "display_name": tenant.display_name,
                    "lockbox_enabled": false,
                    "policy": tenant.policy,
                }),
            ),
            PendingEvent::new(
                id.clone(),
                now,
                actor.clone(),
                EventKind::UserCreated,
                &admin.id,
                json!({
                    "display_name": admin.display_name,
                    "email": admin.email,
                    "alternate_emails": admin.alternate_emails,
                }),
            ),
            PendingEvent::new(
                id,
                now,
                actor,
                EventKind::RoleAssigned,
                assignment.id,
                json!({
                    "principal": assignment.principal,
                    "role": assignment.role,
                    "scope": assignment.scope,
                }),
            ),
        ];
        Onboarding {
            tenant,
            admin,
            assignment,
            events,
        }
    }

    /// The provider attaches a subscription to this tenant. `current_owner`
    /// is the tenant that owns it now, if any: a subscription belongs to
    /// exactly one tenant. Attaching it again to the same tenant changes
    /// nothing and returns no event.
    pub fn add_subscription(
        &self,
        by: &ProviderAdmin,
        subscription: &SubscriptionId,
        current_owner: Option<&TenantId>,
        now: Timestamp,
    ) -> Result<Option<PendingEvent>, DomainError> {
        match current_owner {
            Some(owner) if owner == &self.id => Ok(None),
            Some(owner) => Err(DomainError::Conflict(format!(
                "subscription {subscription} already belongs to tenant {owner}"
            ))),
            None => Ok(Some(PendingEvent::new(
                self.id.clone(),
                now,
                by.principal().clone(),
                EventKind::SubscriptionAdded,
                subscription,
                json!({ "scope": subscription.to_resource_id() }),
            ))),
        }
    }

    fn check_admin(&self, by: &TenantAdmin) -> Result<(), DomainError> {
        if by.tenant() == &self.id {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!(
                "{} administers tenant {}, not {}",
                by.principal(),
                by.tenant(),
                self.id
            )))
        }
    }

    /// A tenant admin opts the tenant in or out. Setting the value it already
    /// has changes nothing and returns no event.
    pub fn set_lockbox(
        &mut self,
        by: &TenantAdmin,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Option<PendingEvent>, DomainError> {
        self.check_admin(by)?;
        if self.lockbox.enabled == enabled {
            return Ok(None);
        }
        self.lockbox = LockboxSetting {
            enabled,
            changed_at: Some(now),
            changed_by: Some(by.principal().clone()),
        };
        let kind = if enabled {
            EventKind::LockboxEnabled
        } else {
            EventKind::LockboxDisabled
        };
        Ok(Some(PendingEvent::new(
            self.id.clone(),
            now,
            by.principal().clone(),
            kind,
            &self.id,
            json!({ "enabled": enabled }),
        )))
    }

    /// A tenant admin replaces the policy. An identical policy changes
    /// nothing and returns no event.
    pub fn set_policy(
        &mut self,
        by: &TenantAdmin,
        policy: TenantPolicy,
        now: Timestamp,
    ) -> Result<Option<PendingEvent>, DomainError> {
        self.check_admin(by)?;
        if self.policy == policy {
            return Ok(None);
        }
        let data = json!({ "before": self.policy, "after": policy });
        self.policy = policy;
        Ok(Some(PendingEvent::new(
            self.id.clone(),
            now,
            by.principal().clone(),
            EventKind::PolicyChanged,
            &self.id,
            data,
        )))
    }
}
