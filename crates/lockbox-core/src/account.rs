//! Accounts: how people and programs take up their credentials, and how
//! they are stopped.
//!
//! The provider runs Lockbox, so it must never hold a credential of a
//! customer's people: if it did, it could sign in as the customer's admin,
//! make itself an approver and approve its own operator. Nobody therefore
//! sets a password for someone else. Whoever creates a principal (the
//! provider onboarding a tenant's first admin, a TenantAdmin creating a
//! user, a provider admin registering an operator or a gateway) gets a
//! one-time [`Enrollment`] link for it; the person who opens the link sets
//! their own password and sees their first API token, once.
//!
//! Who manages an account ([`AccountManager`]):
//! - a tenant's users: that tenant's own TenantAdmins, and nobody else;
//! - the provider's principals (operators, gateways, admins): the
//!   provider's admins;
//! - one exception, so that a lost first link does not strand a new
//!   tenant: a provider admin may issue a link for a tenant's TenantAdmin
//!   while no TenantAdmin of that tenant has enrolled. Once one has,
//!   recovering a tenant account is the customer's business alone.
//!
//! Nobody manages their own account this way (a person changes their own
//! password with the current one). Every step is in the audit chain of the
//! principal's tenant (the provider's chain for the provider's
//! principals), so a customer sees an enrolment it did not make.

use serde::Serialize;
use serde_json::json;

use crate::audit::{Chain, EventKind, PendingEvent};
use crate::authz::{ProviderAdmin, TenantAdmin};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::grant::Grant;
use crate::id::{EnrollmentId, PrincipalId};
use crate::principal::{Principal, PrincipalKind, RoleAssignment};
use crate::request::{AccessRequest, RequestStatus};
use crate::text::Reason;

/// How long an enrolment link lasts unless configured otherwise.
pub const DEFAULT_ENROLLMENT_HOURS: u32 = 72;

/// The chain where a principal's account events belong: its tenant's, or
/// the provider's.
#[must_use]
pub fn chain_of(principal: &Principal) -> Chain {
    principal
        .tenant()
        .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()))
}

/// Proof that the caller manages a principal's account: may issue its
/// enrolment links, disable and enable it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountManager {
    /// A TenantAdmin of the principal's tenant.
    Tenant(TenantAdmin),
    /// A provider admin, for one of the provider's principals.
    Provider(ProviderAdmin),
    /// A provider admin, for a tenant's TenantAdmin while no TenantAdmin
    /// of that tenant has enrolled (onboarding, or a first link that was
    /// lost before it was used).
    Onboarding(ProviderAdmin),
}

/// The refusal for a principal the caller does not manage: the same
/// whether it exists or not, so that nobody learns other tenants'
/// principal ids by asking.
fn not_managed(target: &PrincipalId) -> DomainError {
    DomainError::NotFound(format!("no principal `{target}` whose account you manage"))
}

impl AccountManager {
    /// Who acts.
    #[must_use]
    pub fn principal(&self) -> &PrincipalId {
        match self {
            Self::Tenant(t) => t.principal(),
            Self::Provider(p) | Self::Onboarding(p) => p.principal(),
        }
    }

    /// The onboarding of a new tenant: the provider admin who onboards it
    /// issues its first admin's link.
    #[must_use]
    pub fn onboarding(by: ProviderAdmin) -> Self {
        Self::Onboarding(by)
    }

    /// Whether `caller` (holding `caller_roles`) manages `target`'s
    /// account, to issue it an enrolment link. `target_is_tenant_admin`
    /// says whether the target holds TenantAdmin in its tenant, and
    /// `tenant_has_enrolled` whether anyone of that tenant has ever
    /// enrolled (both ignored for the provider's principals).
    pub fn for_enrollment(
        caller: &Principal,
        caller_roles: &[RoleAssignment],
        target: &Principal,
        target_is_tenant_admin: bool,
        tenant_has_enrolled: bool,
    ) -> Result<Self, DomainError> {
        match Self::for_status(caller, caller_roles, target) {
            Ok(manager) => Ok(manager),
            Err(refusal) => match (&target.kind, &caller.kind) {
                (PrincipalKind::User { .. }, PrincipalKind::Admin)
                    if target_is_tenant_admin && !tenant_has_enrolled =>
                {
                    ProviderAdmin::authorize(caller).map(Self::Onboarding)
                }
                _ => Err(refusal),
            },
        }
    }

    /// Whether `caller` (holding `caller_roles`) manages `target`'s
    /// account, to disable or enable it: the target's TenantAdmins for a
    /// user, the provider's admins for the provider's principals. Nobody
    /// manages their own.
    pub fn for_status(
        caller: &Principal,
        caller_roles: &[RoleAssignment],
        target: &Principal,
    ) -> Result<Self, DomainError> {
        if caller.id == target.id {
            return Err(DomainError::Conflict(
                "you cannot do this to your own account: change your own password with \
                 POST /v1/me/password, or ask another administrator"
                    .to_owned(),
            ));
        }
        match &target.kind {
            PrincipalKind::User { tenant } => {
                if !caller.is_user_of(tenant) {
                    return Err(not_managed(&target.id));
                }
                TenantAdmin::authorize(caller, caller_roles, tenant)
                    .map(Self::Tenant)
                    .map_err(|_| {
                        DomainError::forbidden(format!(
                            "only a TenantAdmin of tenant {tenant} may manage {}'s account",
                            target.id
                        ))
                    })
            }
            _ => match caller.kind {
                PrincipalKind::Admin => ProviderAdmin::authorize(caller).map(Self::Provider),
                _ => Err(not_managed(&target.id)),
            },
        }
    }

    /// The capability's principal must manage `target`: a capability for
    /// another tenant's user (or a tenant's for the provider's principal)
    /// is refused.
    fn check_manages(&self, target: &Principal) -> Result<(), DomainError> {
        let ok = match (self, &target.kind) {
            (Self::Tenant(t), PrincipalKind::User { tenant }) => t.tenant() == tenant,
            (Self::Onboarding(_), PrincipalKind::User { .. }) => true,
            (Self::Provider(_), kind) => !matches!(kind, PrincipalKind::User { .. }),
            _ => false,
        };
        if ok && self.principal() != &target.id {
            Ok(())
        } else {
            Err(not_managed(&target.id))
        }
    }
}

/// Where an enrolment link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EnrollmentState {
    /// It can be used until it expires.
    Open,
    /// Its principal enrolled with it.
    Used {
        /// When it happened.
        at: Timestamp,
    },
    /// A newer link replaced it (or its principal was disabled) before it
    /// was used.
    Replaced {
        /// When it happened.
        at: Timestamp,
    },
}

/// A one-time enrolment link for one principal. The link's secret is
/// random, shown once to whoever issued it, and stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The link's public id.
    pub id: EnrollmentId,
    /// Whose credentials it sets up.
    pub principal: PrincipalId,
    /// Who issued it.
    pub issued_by: PrincipalId,
    /// When it happened.
    pub created_at: Timestamp,
    /// When it stops working if unused.
    pub expires_at: Timestamp,
    /// Open, used or replaced.
    pub state: EnrollmentState,
}

/// Where an enrolment came from: recorded in the log so that a customer
/// can tell an enrolment it did not make.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// The client's address.
    pub address: String,
    /// Its `User-Agent`, if it sent one (shortened).
    pub user_agent: Option<String>,
}

/// The longest user agent kept in the log.
const MAX_USER_AGENT: usize = 256;

impl Enrollment {
    /// Issues a link for `target`, lasting `hours`. Refused for a disabled
    /// principal. The caller stores it after ending what the principal
    /// held: its earlier open links, its password, its sessions and tokens
    /// (`cleared` says whether there was anything to clear, for the log).
    pub fn issue(
        by: &AccountManager,
        target: &Principal,
        id: EnrollmentId,
        hours: u32,
        cleared: Cleared,
        now: Timestamp,
    ) -> Result<(Enrollment, PendingEvent), DomainError> {
        by.check_manages(target)?;
        if !target.is_enabled() {
            return Err(DomainError::PrincipalDisabled(format!(
                "{} is disabled; enable it before issuing an enrolment link",
                target.id
            )));
        }
        if hours == 0 {
            return Err(DomainError::invalid(
                "an enrolment link must last at least an hour",
            ));
        }
        let enrollment = Enrollment {
            id,
            principal: target.id.clone(),
            issued_by: by.principal().clone(),
            created_at: now,
            expires_at: now + chrono::TimeDelta::hours(i64::from(hours)),
            state: EnrollmentState::Open,
        };
        let event = PendingEvent::new(
            chain_of(target),
            now,
            by.principal().clone(),
            EventKind::EnrollmentIssued,
            &target.id,
            json!({
                "enrollment": enrollment.id,
                "expires_at": enrollment.expires_at,
                "password_cleared": cleared.password,
                "tokens_revoked": cleared.tokens,
                "first_admin": matches!(by, AccountManager::Onboarding(_)),
            }),
        );
        Ok((enrollment, event))
    }

    /// Whether it can be used at `now`, and if not, why (for the person
    /// holding the link).
    pub fn check_usable(&self, now: Timestamp) -> Result<(), DomainError> {
        match self.state {
            EnrollmentState::Used { at } => Err(DomainError::EnrollmentUnusable(format!(
                "this enrolment link was already used, at {}; if that was not you, tell your \
                 administrator at once",
                at.format("%Y-%m-%d %H:%M UTC")
            ))),
            EnrollmentState::Replaced { .. } => Err(DomainError::EnrollmentUnusable(
                "this enrolment link was replaced by a newer one; use the newest link you were \
                 given, or ask your administrator for one"
                    .to_owned(),
            )),
            EnrollmentState::Open if now >= self.expires_at => {
                Err(DomainError::EnrollmentUnusable(
                    "this enrolment link has expired; ask your administrator for a new one"
                        .to_owned(),
                ))
            }
            EnrollmentState::Open => Ok(()),
        }
    }

    /// The principal takes up its credentials: the link is used up and
    /// the principal is enrolled. `principal` is the link's principal.
    pub fn redeem(
        &mut self,
        principal: &mut Principal,
        client: &ClientInfo,
        now: Timestamp,
    ) -> Result<PendingEvent, DomainError> {
        if principal.id != self.principal {
            return Err(DomainError::corrupt(format!(
                "enrolment {} is not {}'s",
                self.id, principal.id
            )));
        }
        self.check_usable(now)?;
        if !principal.is_enabled() {
            return Err(DomainError::PrincipalDisabled(format!(
                "{} is disabled; ask your administrator",
                principal.id
            )));
        }
        self.state = EnrollmentState::Used { at: now };
        principal.enrolled_at = Some(now);
        let user_agent = client
            .user_agent
            .as_deref()
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect::<String>());
        Ok(PendingEvent::new(
            chain_of(principal),
            now,
            principal.id.clone(),
            EventKind::Enrolled,
            &principal.id,
            json!({
                "enrollment": self.id,
                "issued_by": self.issued_by,
                "client_address": client.address,
                "user_agent": user_agent,
            }),
        ))
    }
}

/// What issuing a link cleared of the principal's old credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleared {
    /// It had a password.
    pub password: bool,
    /// How many live tokens and sessions were revoked.
    pub tokens: usize,
}

impl Principal {
    /// Disables the principal: it can no longer authenticate (the caller
    /// revokes its tokens, sessions and open links in the same
    /// transaction), decide, or be given credentials. `requests` are the
    /// principal's own requests still pending or approved (an operator's):
    /// pending ones are canceled and running grants revoked; `grants` are
    /// its emergency grants still active, revoked too. A principal cannot
    /// disable itself.
    pub fn disable(
        &mut self,
        by: &AccountManager,
        requests: &mut [AccessRequest],
        grants: &mut [Grant],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        by.check_manages(self)?;
        if let AccountManager::Onboarding(_) = by {
            return Err(not_managed(&self.id));
        }
        if !self.is_enabled() {
            return Err(DomainError::Conflict(format!(
                "{} is already disabled",
                self.id
            )));
        }
        if let Some(r) = requests.iter().find(|r| r.requester != self.id) {
            return Err(DomainError::corrupt(format!(
                "request {} is not {}'s",
                r.id, self.id
            )));
        }
        if let Some(g) = grants
            .iter()
            .find(|g| g.principal != self.id || g.request.is_some())
        {
            return Err(DomainError::corrupt(format!(
                "grant {} is not an emergency grant of {}",
                g.id, self.id
            )));
        }
        let mut events = vec![PendingEvent::new(
            chain_of(self),
            now,
            by.principal().clone(),
            EventKind::PrincipalDisabled,
            &self.id,
            json!({}),
        )];
        let reason = Reason::fixed("principal disabled");
        let actor = by.principal();
        for request in requests.iter_mut() {
            match request.status_at(now) {
                RequestStatus::Pending => {
                    events.push(request.cancel_unchecked(actor, Some(reason.clone()), now));
                }
                RequestStatus::Approved if request.extends.is_none() => {
                    events.extend(request.revoke_unchecked(actor, reason.clone(), now));
                }
                _ => {}
            }
        }
        for grant in grants.iter_mut() {
            if grant.is_active(now) {
                events.push(grant.revoke_unchecked(actor, reason.clone(), now));
            }
        }
        self.disabled_at = Some(now);
        Ok(events)
    }

    /// Enables a disabled principal. Its old tokens and sessions stay
    /// revoked: it signs in again, or is given a new enrolment link.
    pub fn enable(
        &mut self,
        by: &AccountManager,
        now: Timestamp,
    ) -> Result<PendingEvent, DomainError> {
        by.check_manages(self)?;
        if let AccountManager::Onboarding(_) = by {
            return Err(not_managed(&self.id));
        }
        if self.is_enabled() {
            return Err(DomainError::Conflict(format!(
                "{} is not disabled",
                self.id
            )));
        }
        self.disabled_at = None;
        Ok(PendingEvent::new(
            chain_of(self),
            now,
            by.principal().clone(),
            EventKind::PrincipalEnabled,
            &self.id,
            json!({}),
        ))
    }
}
