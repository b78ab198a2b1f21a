//! Grants: the time-bound permission an approval creates, and emergency
//! access.
//!
//! A grant lets one operator perform its access level's actions on its scope
//! during `[not_before, not_after)`, until revoked. [`Grant::check`] decides
//! a single action against a single grant, reading the time it is given: an
//! expired grant never allows, whether or not the sweeper has recorded its
//! end yet.

use std::fmt;
use std::ops::Deref;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{AccessLevel, AccessLevelName, Action, ActionSet};
use crate::audit::{Actor, EventKind, PendingEvent};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::id::{GrantId, PrincipalId, RequestId, TenantId};
use crate::policy::OpenCounts;
use crate::principal::{Principal, RoleAssignment, check_approver};
use crate::request::RequestRecord;
use crate::resource::ResourceId;
use crate::tenant::Tenant;
use crate::text::{Justification, Reason};

/// Who ended a grant early, why, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Who revoked it.
    pub by: PrincipalId,
    /// The reason given, as recorded in the log.
    pub reason: Reason,
    /// When it happened.
    pub at: Timestamp,
}

/// Where a grant is in its life. Time decides the rest: an `Active` grant
/// allows only inside `[not_before, not_after)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantState {
    /// Not revoked, and its end not yet recorded.
    Active,
    /// Revoked before its end.
    Revoked(Revocation),
    /// Its end was recorded (by the sweeper, or when its case closed).
    Ended {
        /// When the end was recorded.
        at: Timestamp,
    },
}

/// Why a grant does not allow an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckDenial {
    /// The grant was revoked.
    Revoked,
    /// The grant's time is over.
    Expired,
    /// The grant has not started.
    NotYetValid,
    /// The resource is outside the grant's scope.
    OutOfScope,
    /// The action is not in the grant's access level.
    ActionNotInAccessLevel,
}

impl CheckDenial {
    /// The reason's name, as `check` reports it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::OutOfScope => "out_of_scope",
            Self::ActionNotInAccessLevel => "action_not_in_access_level",
        }
    }
}

impl fmt::Display for CheckDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored form of a grant. Read it through [`Grant`]; only the domain
/// changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant's id.
    pub id: GrantId,
    /// The request it came from (`None` for emergency access).
    pub request: Option<RequestId>,
    /// The tenant.
    pub tenant: TenantId,
    /// The operator who holds it.
    pub principal: PrincipalId,
    /// Where it applies.
    pub scope: ResourceId,
    /// The access level's name.
    pub access_level: AccessLevelName,
    /// The level's patterns when the request was made.
    pub actions: ActionSet,
    /// Start (inclusive).
    pub not_before: Timestamp,
    /// End (exclusive).
    pub not_after: Timestamp,
    /// Lifecycle.
    #[serde(flatten)]
    pub state: GrantState,
    /// Break-glass access.
    pub emergency: bool,
}

/// A grant. Derefs to its [`GrantRecord`] for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "GrantRecord", try_from = "GrantRecord")]
pub struct Grant(GrantRecord);

impl TryFrom<GrantRecord> for Grant {
    type Error = DomainError;
    fn try_from(record: GrantRecord) -> Result<Self, DomainError> {
        Self::restore(record)
    }
}

impl From<Grant> for GrantRecord {
    fn from(value: Grant) -> Self {
        value.0
    }
}

impl Deref for Grant {
    type Target = GrantRecord;
    fn deref(&self) -> &GrantRecord {
        &self.0
    }
}

impl Grant {
    /// Rebuilds a grant from storage, checking its invariants.
    pub fn restore(record: GrantRecord) -> Result<Self, DomainError> {
        if record.not_before >= record.not_after {
            return Err(DomainError::corrupt(format!(
                "grant {} ends before it starts",
                record.id
            )));
        }
        if record.emergency == record.request.is_some() {
            return Err(DomainError::corrupt(format!(
                "grant {}: a grant comes from a request exactly when it is not emergency access",
                record.id
            )));
        }
        if let Some(request) = &record.request
            && GrantId::for_request(request) != record.id
        {
            return Err(DomainError::corrupt(format!(
                "grant {} does not carry the id of its request {request}",
                record.id
            )));
        }
        Ok(Self(record))
    }

    /// The stored form.
    #[must_use]
    pub fn record(&self) -> &GrantRecord {
        &self.0
    }

    /// Whether the grant allows anything at `now`.
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.state == GrantState::Active && self.not_before <= now && now < self.not_after
    }

    /// Whether the grant's time is over at `now` (revoked or not).
    #[must_use]
    pub fn has_run_out(&self, now: Timestamp) -> bool {
        now >= self.not_after
    }

    /// Whether the grant allows anything at `now`, and if not, why not.
    pub fn check_active(&self, now: Timestamp) -> Result<(), CheckDenial> {
        match self.state {
            GrantState::Revoked(_) => Err(CheckDenial::Revoked),
            GrantState::Ended { .. } => Err(CheckDenial::Expired),
            GrantState::Active if now >= self.not_after => Err(CheckDenial::Expired),
            GrantState::Active if now < self.not_before => Err(CheckDenial::NotYetValid),
            GrantState::Active => Ok(()),
        }
    }

    /// Decides one action on one resource at `now`.
    pub fn check(
        &self,
        resource: &ResourceId,
        action: &Action,
        now: Timestamp,
    ) -> Result<(), CheckDenial> {
        self.check_active(now)?;
        if !self.scope.contains(resource) {
            return Err(CheckDenial::OutOfScope);
        }
        if !self.actions.allows(action) {
            return Err(CheckDenial::ActionNotInAccessLevel);
        }
        Ok(())
    }

    /// True when the grant allows `action` on `resource` at `now`: false at
    /// and after `not_after`, before `not_before`, and after revocation.
    #[must_use]
    pub fn covers(&self, resource: &ResourceId, action: &Action, now: Timestamp) -> bool {
        self.check(resource, action, now).is_ok()
    }

    /// The grant an approved request creates, from `start` for `hours`.
    pub(crate) fn for_request(request: &RequestRecord, start: Timestamp, hours: u32) -> Self {
        Self(GrantRecord {
            id: GrantId::for_request(&request.id),
            request: Some(request.id),
            tenant: request.tenant.clone(),
            principal: request.requester.clone(),
            scope: request.resource.clone(),
            access_level: request.access_level.clone(),
            actions: request.actions.clone(),
            not_before: start,
            not_after: start + TimeDelta::hours(i64::from(hours)),
            state: GrantState::Active,
            emergency: false,
        })
    }

    /// The `grant.created` event, recorded at `now` (a scheduled grant
    /// starts later).
    pub(crate) fn created_event(&self, actor: Actor, now: Timestamp) -> PendingEvent {
        PendingEvent::new(
            self.tenant.clone(),
            now,
            actor,
            EventKind::GrantCreated,
            self.id,
            json!({
                "request": self.request,
                "principal": self.principal,
                "scope": self.scope,
                "access_level": self.access_level,
                "actions": self.actions,
                "not_before": self.not_before,
                "not_after": self.not_after,
                "emergency": self.emergency,
            }),
        )
    }

    /// Moves the grant's end `hours` later because `extension` was
    /// approved, and returns `grant.extended` (recorded at `now`, naming
    /// the old and the new end). The caller has checked that the grant is
    /// running and that the new length is within the policy.
    pub(crate) fn extend_unchecked(
        &mut self,
        hours: u32,
        actor: Actor,
        extension: RequestId,
        now: Timestamp,
    ) -> PendingEvent {
        let from = self.not_after;
        let to = from + TimeDelta::hours(i64::from(hours));
        self.0.not_after = to;
        PendingEvent::new(
            self.tenant.clone(),
            now,
            actor,
            EventKind::GrantExtended,
            self.id,
            json!({
                "request": self.request,
                "extension": extension,
                "principal": self.principal,
                "hours": hours,
                "from": from,
                "to": to,
            }),
        )
    }

    /// How long the grant lasts, from its start to its end, in whole hours
    /// (rounded up).
    #[must_use]
    pub fn length_hours(&self) -> i64 {
        let minutes = (self.not_after - self.not_before).num_minutes();
        (minutes + 59).div_euclid(60)
    }

    /// Marks the grant revoked and returns `grant.revoked`. The caller has
    /// checked that it may.
    pub(crate) fn revoke_unchecked(
        &mut self,
        by: &PrincipalId,
        reason: Reason,
        now: Timestamp,
    ) -> PendingEvent {
        let event = PendingEvent::new(
            self.tenant.clone(),
            now,
            by.clone(),
            EventKind::GrantRevoked,
            self.id,
            json!({
                "request": self.request,
                "principal": self.principal,
                "reason": reason,
            }),
        );
        self.0.state = GrantState::Revoked(Revocation {
            by: by.clone(),
            reason,
            at: now,
        });
        event
    }

    /// Records the grant's end and returns `grant.ended`.
    pub(crate) fn end_unchecked(&mut self, now: Timestamp) -> PendingEvent {
        self.0.state = GrantState::Ended { at: now };
        PendingEvent::new(
            self.tenant.clone(),
            now,
            Actor::System,
            EventKind::GrantEnded,
            self.id,
            json!({
                "request": self.request,
                "principal": self.principal,
                "not_after": self.not_after,
            }),
        )
    }

    /// Checks that `by` may revoke this grant now: the holder, or an
    /// eligible approver of its scope.
    pub(crate) fn check_revoker(
        &self,
        by: &Principal,
        assignments: &[RoleAssignment],
    ) -> Result<(), DomainError> {
        if by.id == self.principal {
            return Ok(());
        }
        check_approver(by, assignments, &self.tenant, &self.scope, &self.principal)
    }

    /// Break-glass: an emergency operator takes immediate access where the
    /// tenant's policy allows it, for at most the policy's
    /// `emergency_max_minutes`, and while it holds fewer active grants in
    /// the tenant than the policy allows (`open`, counted in the
    /// transaction that makes the grant). Returns the grant,
    /// `emergency.access` and `grant.created`; the notifications of
    /// `emergency.access` go to every owner at once.
    #[allow(clippy::too_many_arguments)]
    pub fn emergency(
        id: GrantId,
        operator: &Principal,
        tenant: &Tenant,
        resource: ResourceId,
        resource_tenant: Option<&TenantId>,
        access_level: &AccessLevel,
        justification: Justification,
        duration_minutes: u32,
        open: OpenCounts,
        now: Timestamp,
    ) -> Result<(Grant, Vec<PendingEvent>), DomainError> {
        if !operator.is_emergency_operator() {
            return Err(DomainError::forbidden(format!(
                "{} is not an emergency operator",
                operator.id
            )));
        }
        if resource_tenant != Some(&tenant.id) {
            return Err(DomainError::OutOfScope(format!(
                "{resource} is not in tenant {}",
                tenant.id
            )));
        }
        let policy = &tenant.policy;
        if !policy.emergency_access() {
            return Err(DomainError::EmergencyAccessDisabled(tenant.id.clone()));
        }
        if duration_minutes == 0 {
            return Err(DomainError::invalid("duration_minutes must be at least 1"));
        }
        if duration_minutes > policy.emergency_max_minutes() {
            return Err(DomainError::DurationTooLong {
                requested: duration_minutes,
                max: policy.emergency_max_minutes(),
                unit: "minutes",
                limit: "the tenant's emergency maximum",
            });
        }
        policy.admit_grant(&tenant.id, &operator.id, open)?;
        let grant = Grant(GrantRecord {
            id,
            request: None,
            tenant: tenant.id.clone(),
            principal: operator.id.clone(),
            scope: resource,
            access_level: access_level.name.clone(),
            actions: access_level.actions.clone(),
            not_before: now,
            not_after: now + TimeDelta::minutes(i64::from(duration_minutes)),
            state: GrantState::Active,
            emergency: true,
        });
        let actor = Actor::Principal(operator.id.clone());
        let events = vec![
            PendingEvent::new(
                tenant.id.clone(),
                now,
                actor.clone(),
                EventKind::EmergencyAccess,
                grant.id,
                json!({
                    "resource": grant.scope,
                    "access_level": grant.access_level,
                    "actions": grant.actions,
                    "justification": justification,
                    "duration_minutes": duration_minutes,
                    "not_after": grant.not_after,
                }),
            ),
            grant.created_event(actor, now),
        ];
        Ok((grant, events))
    }

    /// Revokes an emergency grant: the holder, or an eligible approver of
    /// its scope. A grant that came from a request is revoked through the
    /// request ([`crate::AccessRequest::revoke`]) so the two stay in step.
    pub fn revoke(
        &mut self,
        by: &Principal,
        assignments: &[RoleAssignment],
        reason: Reason,
        now: Timestamp,
    ) -> Result<PendingEvent, DomainError> {
        if let Some(request) = self.request {
            return Err(DomainError::Conflict(format!(
                "grant {} belongs to request {request}; revoke the request",
                self.id
            )));
        }
        self.check_can_end(now)?;
        self.check_revoker(by, assignments)?;
        Ok(self.revoke_unchecked(&by.id, reason, now))
    }

    /// Records the end of an emergency grant whose time is over.
    pub fn end(&mut self, now: Timestamp) -> Result<PendingEvent, DomainError> {
        if let Some(request) = self.request {
            return Err(DomainError::Conflict(format!(
                "grant {} belongs to request {request}; complete the request",
                self.id
            )));
        }
        if self.state != GrantState::Active {
            return Err(DomainError::Conflict(format!(
                "grant {} has already been revoked or ended",
                self.id
            )));
        }
        if now < self.not_after {
            return Err(DomainError::NotDue {
                what: "ending the grant",
                due: self.not_after,
            });
        }
        Ok(self.end_unchecked(now))
    }

    fn check_can_end(&self, now: Timestamp) -> Result<(), DomainError> {
        if self.state != GrantState::Active || self.has_run_out(now) {
            return Err(DomainError::Conflict(format!(
                "grant {} is no longer active",
                self.id
            )));
        }
        Ok(())
    }
}
