//! The access-request state machine.
//!
//! ```text
//!            ┌──────────► approved ──┬──► revoked
//!   pending ─┤                       └──► completed (the grant ran out)
//!            ├──► denied
//!            ├──► expired   (the request's TTL ran out)
//!            └──► canceled  (by the requester, or because the case closed)
//! ```
//!
//! Every transition checks all of its preconditions before it changes
//! anything, so a refused transition leaves the request exactly as it was;
//! and every successful one returns the audit events it causes, naming the
//! real actor. Terminal states are final.
//!
//! An extension ([`AccessRequest::extend`]) is a request that names the
//! request whose running grant it would lengthen. It is decided as any
//! request is, but holds no grant of its own: approved, it moves the end
//! of the grant it extends (`grant.extended`) and its life is over there;
//! the grant it extended goes on to be revoked or completed with its
//! request.
//!
//! Time is read from the `now` argument only. A pending request whose TTL
//! has passed cannot be approved even if the sweeper has not yet marked it
//! expired; [`AccessRequest::status_at`] reports such a request as expired.

use std::fmt;
use std::ops::Deref;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{AccessLevel, AccessLevelName, ActionSet};
use crate::audit::{Actor, EventKind, PendingEvent};
use crate::case::{CaseStatus, SupportCase};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::grant::{Grant, GrantState};
use crate::groups::{GroupName, groups_met};
use crate::id::{CaseId, PrincipalId, RequestId, TenantId};
use crate::policy::{OpenCounts, TenantPolicy};
use crate::principal::{Principal, RoleAssignment, check_approver};
use crate::reason::ReasonType;
use crate::resource::ResourceId;
use crate::rules::{Outcome, Rule, RuleInput};
use crate::ssh::{SourceAddress, SshAccess};
use crate::tenant::Tenant;
use crate::text::{Justification, Reason, Reference, RuleName};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for approvers.
    Pending,
    /// Approved; its grant is (or was, until recorded otherwise) running.
    Approved,
    /// An approver denied it.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew it, or its case closed.
    Canceled,
    /// Its grant was ended early.
    Revoked,
    /// Its grant ran out.
    Completed,
}

impl RequestStatus {
    /// Every status.
    pub const ALL: [RequestStatus; 7] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Canceled,
        Self::Revoked,
        Self::Completed,
    ];

    /// Whether no transition leaves this status.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }

    /// The status's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
            Self::Revoked => "revoked",
            Self::Completed => "completed",
        }
    }

    /// Parses a status name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(format!(
                    "unknown status `{}`; statuses are pending, approved, denied, expired, canceled, revoked and completed",
                    crate::id::shorten(s)
                ))
            })
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub approver: PrincipalId,
    /// The reason given, as recorded in the log.
    pub reason: Reason,
    /// When it happened.
    pub at: Timestamp,
    /// A shorter duration this approver insisted on, if any.
    pub duration_hours: Option<u32>,
    /// The request's required groups this approval may count for: the one
    /// the approver chose, or every one they belonged to when they
    /// approved (it counts for one of them only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
}

/// What an approver says when approving.
#[derive(Debug, Clone)]
pub struct ApprovalDraft {
    /// Why, for the log.
    pub reason: Reason,
    /// A shorter duration than requested, if any.
    pub duration_hours: Option<u32>,
    /// The required group the approval is to count for (the approver must
    /// belong to it); `None`: whichever of the request's groups the
    /// approver belongs to, as best completes the request.
    pub group: Option<GroupName>,
}

/// Who denied a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// Who decided.
    pub by: PrincipalId,
    /// The reason given, as recorded in the log.
    pub reason: Reason,
    /// When it happened.
    pub at: Timestamp,
}

/// Who withdrew a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The requester, or whoever closed or reassigned the case.
    pub by: PrincipalId,
    /// Why, if said.
    pub reason: Option<Reason>,
    /// When it happened.
    pub at: Timestamp,
}

/// The stored form of a request. Read it through [`AccessRequest`]; only the
/// state machine changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request's id.
    pub id: RequestId,
    /// The customer's tenant.
    pub tenant: TenantId,
    /// The support case that justifies it.
    pub case: CaseId,
    /// The operator asking.
    pub requester: PrincipalId,
    /// The resource or scope asked for.
    pub resource: ResourceId,
    /// The access level asked for.
    pub access_level: AccessLevelName,
    /// The level's patterns as they were when the request was made.
    pub actions: ActionSet,
    /// The level's SSH login as it was when the request was made: what
    /// certificates minted for its grant say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
    /// Where the operator logs in from, if the request said: the
    /// `source-address` of the grant's SSH certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<SourceAddress>,
    /// The duration asked for.
    pub duration_hours: u32,
    /// The requester's justification, shown to approvers.
    pub justification: Justification,
    /// Why, in the categories approvers sort by.
    #[serde(default)]
    pub reason_type: ReasonType,
    /// The ticket or incident id it is made under, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// When the access should start, if later than the approval: its grant
    /// starts then (or at the approval, if that comes later) and lasts
    /// `duration_hours` from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// The rule of the tenant's policy that applied when it was made, if
    /// one did: it set `required_approvals`, or approved it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleName>,
    /// The request whose grant this one asks to extend, if it is an
    /// extension. An extension never holds a grant of its own: approved,
    /// it moves the end of the grant it extends, and its life is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<RequestId>,
    /// Where it is in its life.
    pub status: RequestStatus,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expires if undecided.
    pub expires_at: Timestamp,
    /// How many distinct approvals it needs (0 when the system approved it).
    pub required_approvals: u32,
    /// Approver groups each of which must give one of those approvals
    /// (set by the rule that applied; fixed when it was made).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_groups: Vec<GroupName>,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// The denial, if denied.
    pub denial: Option<Denial>,
    /// The cancellation, if canceled.
    pub cancellation: Option<Cancellation>,
    /// The grant, once approved.
    pub grant: Option<Grant>,
    /// Approved by the system because the tenant had not opted in.
    pub decided_by_system: bool,
}

/// An access request. Derefs to its [`RequestRecord`] for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RequestRecord", try_from = "RequestRecord")]
pub struct AccessRequest(RequestRecord);

impl TryFrom<RequestRecord> for AccessRequest {
    type Error = DomainError;
    fn try_from(record: RequestRecord) -> Result<Self, DomainError> {
        Self::restore(record)
    }
}

impl From<AccessRequest> for RequestRecord {
    fn from(value: AccessRequest) -> Self {
        value.0
    }
}

impl Deref for AccessRequest {
    type Target = RequestRecord;
    fn deref(&self) -> &RequestRecord {
        &self.0
    }
}

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct RequestDraft {
    /// The resource, or a scope above the case's resource.
    pub resource: ResourceId,
    /// The access level's name.
    pub access_level: AccessLevelName,
    /// Hours; the tenant's default when `None`.
    pub duration_hours: Option<u32>,
    /// The requester's justification, shown to approvers.
    pub justification: Justification,
    /// Why, in the categories approvers sort by.
    pub reason_type: ReasonType,
    /// The ticket or incident id it is made under, if any.
    pub reference: Option<Reference>,
    /// When the access should start; `None`: as soon as it is approved.
    /// At most [`MAX_SCHEDULE_AHEAD_DAYS`] ahead.
    pub starts_at: Option<Timestamp>,
    /// Where the operator will log in from, if said: SSH certificates
    /// minted for the grant work from these addresses only.
    pub source_addresses: Vec<SourceAddress>,
}

/// What the holder of a running grant asks for to make it last longer.
#[derive(Debug, Clone)]
pub struct ExtensionDraft {
    /// How many hours more.
    pub hours: u32,
    /// Why, shown to approvers.
    pub justification: Justification,
    /// Why, in the categories approvers sort by; `None`: the extended
    /// request's.
    pub reason_type: Option<ReasonType>,
}

/// What the caller looked up for [`AccessRequest::extend`].
#[derive(Debug, Clone, Copy)]
pub struct ExtensionFacts<'a> {
    /// The tenant (its opt-in and policy, now).
    pub tenant: &'a Tenant,
    /// The case of the extended request.
    pub case: &'a SupportCase,
    /// What the holder has open in the tenant, and the case, now.
    pub open: OpenCounts,
    /// An extension of the same grant still waiting for its decision, if
    /// there is one.
    pub pending_extension: Option<RequestId>,
}

/// How far ahead a request may schedule its access.
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 14;

/// How far in the past a `starts_at` may lie and still be taken as "now":
/// clocks of clients and servers differ.
pub const STARTS_AT_SKEW_SECONDS: i64 = 300;

/// What the caller looked up for [`AccessRequest::create`].
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The tenant of the case (its opt-in and policy).
    pub tenant: &'a Tenant,
    /// The case the draft names.
    pub case: &'a SupportCase,
    /// The access level the draft names, if it is defined.
    pub access_level: Option<&'a AccessLevel>,
    /// The tenant owning the draft resource's subscription, if any.
    pub resource_tenant: Option<&'a TenantId>,
    /// What the requester has open in the tenant, and the case, now
    /// (against the policy's fan-out limits).
    pub open: OpenCounts,
}

impl AccessRequest {
    /// Rebuilds a request from storage, checking its invariants.
    pub fn restore(record: RequestRecord) -> Result<Self, DomainError> {
        let r = &record;
        let bad = |why: &str| Err(DomainError::corrupt(format!("request {}: {why}", r.id)));
        if r.expires_at <= r.created_at {
            return bad("expires before it was created");
        }
        if r.approvals.iter().any(|a| a.approver == r.requester) {
            return bad("the requester appears among the approvers");
        }
        for (i, a) in r.approvals.iter().enumerate() {
            if r.approvals
                .iter()
                .skip(i + 1)
                .any(|b| b.approver == a.approver)
            {
                return bad("an approver appears twice");
            }
        }
        if r.extends == Some(r.id) {
            return bad("it extends itself");
        }
        if r.extends.is_some() && r.grant.is_some() {
            return bad("an extension holds a grant of its own");
        }
        if let Some(g) = &r.grant {
            let matches = g.request == Some(r.id)
                && g.tenant == r.tenant
                && g.principal == r.requester
                && g.scope == r.resource
                && !g.emergency;
            if !matches {
                return bad("its grant belongs to something else");
            }
        }
        if r.approvals
            .iter()
            .any(|a| a.groups.iter().any(|g| !r.required_groups.contains(g)))
        {
            return bad("an approval counts for a group the request does not need");
        }
        let enough = r.decided_by_system
            || (r.approvals.len() >= count(r.required_approvals)
                && missing_groups(&r.required_groups, r.approvals.iter()).is_empty());
        let grant_state = r.grant.as_ref().map(|g| &g.state);
        let consistent = match r.status {
            // A pending request may hold as many approvals as it needs:
            // some can be of approvers disabled since, which do not count.
            RequestStatus::Pending => {
                r.grant.is_none() && r.denial.is_none() && r.cancellation.is_none()
            }
            // An approved extension moved its grant's end and is done.
            RequestStatus::Approved if r.extends.is_some() => enough,
            RequestStatus::Approved => enough && matches!(grant_state, Some(GrantState::Active)),
            RequestStatus::Revoked => enough && matches!(grant_state, Some(GrantState::Revoked(_))),
            RequestStatus::Completed => {
                enough && matches!(grant_state, Some(GrantState::Ended { .. }))
            }
            RequestStatus::Denied => r.denial.is_some() && r.grant.is_none(),
            RequestStatus::Canceled => r.cancellation.is_some() && r.grant.is_none(),
            RequestStatus::Expired => {
                r.grant.is_none() && r.denial.is_none() && r.cancellation.is_none()
            }
        };
        if !consistent {
            return bad(&format!("its fields do not fit status {}", r.status));
        }
        Ok(Self(record))
    }

    /// The stored form.
    #[must_use]
    pub fn record(&self) -> &RequestRecord {
        &self.0
    }

    /// The status as of `now`: a pending request past its TTL is `expired`,
    /// an approved one whose grant has run out is `completed`, even before
    /// the sweeper records it.
    #[must_use]
    pub fn status_at(&self, now: Timestamp) -> RequestStatus {
        match self.status {
            RequestStatus::Pending if now >= self.expires_at => RequestStatus::Expired,
            RequestStatus::Approved if self.grant.as_ref().is_some_and(|g| g.has_run_out(now)) => {
                RequestStatus::Completed
            }
            status => status,
        }
    }

    /// An operator asks for access.
    ///
    /// Preconditions, each refused with its own error: the requester is an
    /// operator; the case is open, of the same tenant, and assigned to the
    /// requester; the requested resource lies in the tenant and contains the
    /// case's resource; the access level is defined; the duration is at
    /// least one hour and at most the tenant's maximum; `starts_at`, if
    /// given, is at most [`MAX_SCHEDULE_AHEAD_DAYS`] ahead and not in the
    /// past; the reasons meet the policy's requirements
    /// ([`crate::reason::RequestRequirements`]); no rule of the policy
    /// denies it ([`crate::rules`]); and no fan-out limit of the tenant's
    /// policy is reached ([`TenantPolicy::admit_request`]).
    ///
    /// If the tenant has not opted in, the system approves the request at
    /// once, and so does a rule that approves; this is recorded as such. A
    /// rule that requires approvals sets how many. The grant starts at the
    /// approval, or at `starts_at` if that is later.
    pub fn create(
        id: RequestId,
        requester: &Principal,
        draft: RequestDraft,
        facts: RequestFacts<'_>,
        now: Timestamp,
    ) -> Result<(AccessRequest, Vec<PendingEvent>), DomainError> {
        let RequestFacts {
            tenant,
            case,
            access_level,
            resource_tenant,
            open,
        } = facts;
        check_case(requester, tenant, case)?;
        if resource_tenant != Some(&tenant.id) {
            return Err(DomainError::OutOfScope(format!(
                "{} is not in a subscription of tenant {}",
                draft.resource, tenant.id
            )));
        }
        if !draft.resource.contains(&case.resource) {
            return Err(DomainError::OutOfScope(format!(
                "case {} is about {}, which is not inside the requested {}; request that resource or a scope above it",
                case.id, case.resource, draft.resource
            )));
        }
        let level = match access_level {
            Some(level) if level.name == draft.access_level => level,
            _ => return Err(DomainError::UnknownAccessLevel(draft.access_level)),
        };
        if !draft.source_addresses.is_empty() && level.ssh.is_none() {
            return Err(DomainError::invalid(format!(
                "source_addresses limit where SSH certificates work from, but access level {} gives no SSH login",
                level.name
            )));
        }
        let policy = &tenant.policy;
        let hours = draft
            .duration_hours
            .unwrap_or(policy.default_access_hours());
        if hours == 0 {
            return Err(DomainError::invalid("duration_hours must be at least 1"));
        }
        if hours > policy.max_access_hours() {
            return Err(DomainError::DurationTooLong {
                requested: hours,
                max: policy.max_access_hours(),
                unit: "hours",
                limit: "the tenant's maximum",
            });
        }
        if let Some(start) = draft.starts_at {
            if start > now + TimeDelta::days(MAX_SCHEDULE_AHEAD_DAYS) {
                return Err(DomainError::invalid(format!(
                    "starts_at {start} is more than {MAX_SCHEDULE_AHEAD_DAYS} days ahead; request access nearer the time"
                )));
            }
            if start < now - TimeDelta::seconds(STARTS_AT_SKEW_SECONDS) {
                return Err(DomainError::invalid(format!(
                    "starts_at {start} is in the past; leave it out to start as soon as the request is approved"
                )));
            }
        }
        policy.requirements().check(
            draft.reason_type,
            &draft.justification,
            draft.reference.as_ref(),
        )?;
        // The tenant's rules, once it has opted in: the first that matches
        // decides; none, the defaults.
        let outcome = Outcome::of(
            policy,
            tenant.lockbox.enabled,
            &RuleInput {
                access_level: &level.name,
                resource: &draft.resource,
                severity: case.severity,
                reason_type: draft.reason_type,
                operator: &requester.id,
                at: now,
            },
        )?;
        if let Outcome::Denied(r, reason) = outcome {
            return Err(DomainError::DeniedByRule {
                rule: r.name.to_string(),
                reason: reason.to_string(),
            });
        }
        policy.admit_request(&tenant.id, &requester.id, case.id, open)?;
        let rule = outcome.rule();
        let (required_approvals, required_groups) = outcome.requirements();
        let mut request = AccessRequest(RequestRecord {
            id,
            tenant: tenant.id.clone(),
            case: case.id,
            requester: requester.id.clone(),
            resource: draft.resource,
            access_level: level.name.clone(),
            actions: level.actions.clone(),
            ssh: level.ssh.clone(),
            source_addresses: draft.source_addresses,
            duration_hours: hours,
            justification: draft.justification,
            reason_type: draft.reason_type,
            reference: draft.reference,
            starts_at: draft.starts_at,
            rule: rule.map(|r| r.name.clone()),
            extends: None,
            status: RequestStatus::Pending,
            created_at: now,
            expires_at: now + TimeDelta::hours(i64::from(policy.request_ttl_hours())),
            required_approvals,
            required_groups,
            approvals: Vec::new(),
            denial: None,
            cancellation: None,
            grant: None,
            decided_by_system: false,
        });
        // What the approver approves: the login, what it may do, and from
        // where; and when.
        let mut extra = Vec::new();
        if let Some(ssh) = &request.ssh {
            extra.push(("ssh", json!(ssh)));
        }
        if !request.source_addresses.is_empty() {
            extra.push(("source_addresses", json!(request.source_addresses)));
        }
        if let Some(reference) = &request.reference {
            extra.push(("reference", json!(reference)));
        }
        if let Some(start) = request.starts_at {
            extra.push(("starts_at", json!(start)));
        }
        let mut events = vec![request.created_event(rule, extra, now)];
        if let Some(approval) = approved_at_once(&outcome, &tenant.id, id, now) {
            events.push(approval);
            request.0.decided_by_system = true;
            events.extend(request.grant_now(hours, Actor::System, now));
        }
        Ok((request, events))
    }

    /// The holder of a running grant asks for `draft.hours` more: a new
    /// request that names the one it extends (`extends`), for the same
    /// resource, access level and case, decided under the tenant's policy
    /// and rules as any request is. Approved, it moves the grant's end
    /// ([`AccessRequest::approve_extension`]); denied, expired or
    /// canceled, the grant ends as it would have.
    ///
    /// Refusals, each before anything changes: the caller is not the
    /// grant's holder (`forbidden`); `original` is itself an extension
    /// (`conflict`); its grant is not running (`request_not_active`); the
    /// case is not open or not the holder's; the hours are more than the
    /// tenant's `max_access_hours`, or would make the grant last longer
    /// than its `max_total_hours` (`duration_too_long`); another extension
    /// of the grant is waiting (`conflict`); the reasons fall short of the
    /// policy; a rule denies it; a pending-request limit is reached.
    ///
    /// If the tenant has not opted in, or a rule approves it, the system
    /// approves it at once and `original`'s grant is extended now.
    pub fn extend(
        id: RequestId,
        original: &mut AccessRequest,
        requester: &Principal,
        draft: ExtensionDraft,
        facts: ExtensionFacts<'_>,
        now: Timestamp,
    ) -> Result<(AccessRequest, Vec<PendingEvent>), DomainError> {
        let ExtensionFacts {
            tenant,
            case,
            open,
            pending_extension,
        } = facts;
        if original.requester != requester.id {
            return Err(DomainError::forbidden(format!(
                "only the holder of request {}'s grant ({}) can extend it",
                original.id, original.requester
            )));
        }
        if let Some(first) = original.extends {
            return Err(DomainError::Conflict(format!(
                "request {} is an extension of request {first}; extend {first}, which holds the grant",
                original.id
            )));
        }
        if case.id != original.case {
            return Err(DomainError::corrupt(format!(
                "case {} is not the case of request {}",
                case.id, original.id
            )));
        }
        check_case(requester, tenant, case)?;
        let grant = original.running_grant(now)?;
        let policy = &tenant.policy;
        if draft.hours == 0 {
            return Err(DomainError::invalid("hours must be at least 1"));
        }
        if draft.hours > policy.max_access_hours() {
            return Err(DomainError::DurationTooLong {
                requested: draft.hours,
                max: policy.max_access_hours(),
                unit: "hours",
                limit: "the tenant's maximum",
            });
        }
        let room = grant_room(grant, policy);
        if i64::from(draft.hours) > room {
            return Err(DomainError::DurationTooLong {
                requested: draft.hours,
                max: u32::try_from(room.max(0)).unwrap_or(0),
                unit: "hours",
                limit: "what the tenant's max_total_hours leaves of the grant with its extensions",
            });
        }
        if let Some(waiting) = pending_extension {
            return Err(DomainError::Conflict(format!(
                "request {waiting} already asks to extend this grant; wait for its decision, or cancel it"
            )));
        }
        let reason_type = draft.reason_type.unwrap_or(original.reason_type);
        policy.requirements().check(
            reason_type,
            &draft.justification,
            original.reference.as_ref(),
        )?;
        let outcome = Outcome::of(
            policy,
            tenant.lockbox.enabled,
            &RuleInput {
                access_level: &original.access_level,
                resource: &original.resource,
                severity: case.severity,
                reason_type,
                operator: &requester.id,
                at: now,
            },
        )?;
        if let Outcome::Denied(r, reason) = outcome {
            return Err(DomainError::DeniedByRule {
                rule: r.name.to_string(),
                reason: reason.to_string(),
            });
        }
        policy.admit_pending(&tenant.id, &requester.id, case.id, open)?;
        let rule = outcome.rule();
        let (required_approvals, required_groups) = outcome.requirements();
        let grant_end = grant.not_after;
        let used = (now - grant.not_before).max(TimeDelta::zero());
        let mut extension = AccessRequest(RequestRecord {
            id,
            extends: Some(original.id),
            duration_hours: draft.hours,
            justification: draft.justification,
            reason_type,
            starts_at: None,
            rule: rule.map(|r| r.name.clone()),
            status: RequestStatus::Pending,
            created_at: now,
            expires_at: now + TimeDelta::hours(i64::from(policy.request_ttl_hours())),
            required_approvals,
            required_groups,
            approvals: Vec::new(),
            denial: None,
            cancellation: None,
            grant: None,
            decided_by_system: false,
            ..original.0.clone()
        });
        let extra = vec![
            ("extends", json!(original.id)),
            ("grant_not_after", json!(grant_end)),
            ("used_minutes", json!(used.num_minutes())),
        ];
        let mut events = vec![extension.created_event(rule, extra, now)];
        if let Some(approval) = approved_at_once(&outcome, &tenant.id, id, now) {
            events.push(approval);
            extension.0.decided_by_system = true;
            events.push(extension.apply_to(original, draft.hours, Actor::System, now)?);
        }
        Ok((extension, events))
    }

    /// `request.created`, by the requester: what is asked, what it needs,
    /// the rule that applied and what it said (a later change of the rules
    /// changes nothing for this request), and `extra` fields.
    fn created_event(
        &self,
        rule: Option<&Rule>,
        extra: Vec<(&str, serde_json::Value)>,
        now: Timestamp,
    ) -> PendingEvent {
        let mut data = json!({
            "case": self.case,
            "resource": self.resource,
            "access_level": self.access_level,
            "actions": self.actions,
            "duration_hours": self.duration_hours,
            "justification": self.justification,
            "reason_type": self.reason_type,
            "expires_at": self.expires_at,
            "required_approvals": self.required_approvals,
        });
        if let Some(fields) = data.as_object_mut() {
            if !self.required_groups.is_empty() {
                fields.insert("required_groups".to_owned(), json!(self.required_groups));
            }
            if let Some(r) = rule {
                fields.insert(
                    "rule".to_owned(),
                    json!({ "name": r.name, "effect": r.effect }),
                );
            }
            fields.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
        PendingEvent::new(
            self.tenant.clone(),
            now,
            self.requester.clone(),
            EventKind::RequestCreated,
            self.id,
            data,
        )
    }

    /// The grant, if it is running at `now` (or scheduled and not yet
    /// started): approved, not revoked, not run out.
    fn running_grant(&self, now: Timestamp) -> Result<&Grant, DomainError> {
        match (&self.grant, self.status_at(now)) {
            (Some(grant), RequestStatus::Approved) => Ok(grant),
            (_, status) => Err(DomainError::RequestNotActive {
                status,
                detail: format!(
                    "request {}'s grant is not running; only a running grant can be extended",
                    self.id
                ),
            }),
        }
    }

    /// Marks this extension approved and moves `original`'s grant's end
    /// `hours` later; returns `grant.extended`.
    fn apply_to(
        &mut self,
        original: &mut AccessRequest,
        hours: u32,
        actor: Actor,
        now: Timestamp,
    ) -> Result<PendingEvent, DomainError> {
        let grant = original.0.grant.as_mut().ok_or_else(|| {
            DomainError::corrupt(format!("request {} has no grant to extend", original.0.id))
        })?;
        self.0.status = RequestStatus::Approved;
        Ok(grant.extend_unchecked(hours, actor, self.0.id, now))
    }

    /// Refuses unless the request is pending and its TTL has not passed.
    fn check_pending(&self, now: Timestamp) -> Result<(), DomainError> {
        match self.status_at(now) {
            RequestStatus::Pending => Ok(()),
            status => Err(DomainError::RequestNotPending { status }),
        }
    }

    /// Refuses unless the request can still be decided and `approver` may
    /// decide it now.
    fn check_decider(
        &self,
        approver: &Principal,
        assignments: &[RoleAssignment],
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.check_pending(now)?;
        check_approver(
            approver,
            assignments,
            &self.tenant,
            &self.resource,
            &self.requester,
        )
    }

    /// When a grant approved at `now` starts: then, or at the request's
    /// `starts_at` if that is later.
    #[must_use]
    pub fn grant_start(&self, now: Timestamp) -> Timestamp {
        self.starts_at.map_or(now, |start| start.max(now))
    }

    /// Moves to approved and makes the grant, from [`Self::grant_start`]
    /// for `hours`; returns `grant.created`.
    fn grant_now(&mut self, hours: u32, actor: Actor, now: Timestamp) -> Vec<PendingEvent> {
        let grant = Grant::for_request(&self.0, self.grant_start(now), hours);
        let event = grant.created_event(actor, now);
        self.0.grant = Some(grant);
        self.0.status = RequestStatus::Approved;
        vec![event]
    }

    /// An eligible approver approves, with a reason, optionally shortening
    /// the duration. The approval that reaches the required count creates the
    /// grant, lasting the shortest duration any approver allowed, and never
    /// more than the tenant's maximum at that moment (`policy` is the
    /// tenant's policy now).
    ///
    /// Refusals: not pending or past its TTL (`request_not_pending`), the
    /// requester (`self_approval`), no Owner or LockboxApprover role covering
    /// the resource now (`not_an_approver`), a second approval by the same
    /// person (`already_approved`), a longer duration than requested
    /// (`duration_too_long`).
    pub fn approve(
        &mut self,
        approver: &Principal,
        assignments: &[RoleAssignment],
        reason: Reason,
        duration_hours: Option<u32>,
        policy: &TenantPolicy,
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        let draft = ApprovalDraft {
            reason,
            duration_hours,
            group: None,
        };
        self.approve_discounting(approver, assignments, draft, policy, &[], now)
    }

    /// As [`AccessRequest::approve`], not counting the earlier approvals of
    /// `disabled` (approvers disabled since they approved: a compromised
    /// approver's approval stops counting once the customer disables
    /// them).
    pub fn approve_discounting(
        &mut self,
        approver: &Principal,
        assignments: &[RoleAssignment],
        draft: ApprovalDraft,
        policy: &TenantPolicy,
        disabled: &[PrincipalId],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        if let Some(original) = self.extends {
            return Err(DomainError::Conflict(format!(
                "request {} extends request {original}; it is approved together with it",
                self.id
            )));
        }
        self.approve_inner(None, approver, assignments, draft, policy, disabled, now)
    }

    /// As [`AccessRequest::approve_discounting`], for an extension:
    /// `original` is the request it extends, locked before this one. The
    /// approval that reaches the required count moves the end of
    /// `original`'s grant by the shortest duration any approver allowed,
    /// never past the tenant's `max_total_hours` at that moment.
    ///
    /// Refused, besides the refusals of any approval, when `original`'s
    /// grant is no longer running (`request_not_active`: revoked, or run
    /// out) or the grant has already reached `max_total_hours`
    /// (`duration_too_long`).
    #[allow(clippy::too_many_arguments)]
    pub fn approve_extension(
        &mut self,
        original: &mut AccessRequest,
        approver: &Principal,
        assignments: &[RoleAssignment],
        draft: ApprovalDraft,
        policy: &TenantPolicy,
        disabled: &[PrincipalId],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        if self.extends != Some(original.id) {
            return Err(DomainError::corrupt(format!(
                "request {} does not extend request {}",
                self.id, original.id
            )));
        }
        self.approve_inner(
            Some(original),
            approver,
            assignments,
            draft,
            policy,
            disabled,
            now,
        )
    }

    /// An approval: of a request, or (with `original`) of an extension of
    /// `original`'s running grant.
    #[allow(clippy::too_many_arguments)]
    fn approve_inner(
        &mut self,
        original: Option<&mut AccessRequest>,
        approver: &Principal,
        assignments: &[RoleAssignment],
        draft: ApprovalDraft,
        policy: &TenantPolicy,
        disabled: &[PrincipalId],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        let ApprovalDraft {
            reason,
            duration_hours,
            group,
        } = draft;
        self.check_decider(approver, assignments, now)?;
        // An extension: the hours `max_total_hours` still leaves the
        // grant it extends, which must be running.
        let room = match original.as_deref() {
            Some(original) => {
                let room = grant_room(original.running_grant(now)?, policy);
                if room < 1 {
                    return Err(DomainError::DurationTooLong {
                        requested: self.duration_hours,
                        max: 0,
                        unit: "hours",
                        limit: "what the tenant's max_total_hours leaves of the grant with its extensions",
                    });
                }
                room
            }
            None => 0,
        };
        if self.approvals.iter().any(|a| a.approver == approver.id) {
            return Err(DomainError::AlreadyApproved {
                principal: approver.id.clone(),
            });
        }
        match duration_hours {
            Some(0) => return Err(DomainError::invalid("duration_hours must be at least 1")),
            Some(h) if h > self.duration_hours => {
                return Err(DomainError::DurationTooLong {
                    requested: h,
                    max: self.duration_hours,
                    unit: "hours",
                    limit: "the requested duration (an approval may only shorten it)",
                });
            }
            _ => {}
        }
        let groups = self.groups_for(approver, assignments, group, policy)?;
        self.0.approvals.push(Approval {
            approver: approver.id.clone(),
            reason: reason.clone(),
            at: now,
            duration_hours,
            groups: groups.clone(),
        });
        let missing = missing_groups(
            &self.required_groups,
            self.approvals
                .iter()
                .filter(|a| !disabled.contains(&a.approver)),
        );
        let mut data = json!({
            "reason": reason,
            "duration_hours": duration_hours,
            "approvals": self.approvals.len(),
            "required_approvals": self.required_approvals,
        });
        if let (false, Some(fields)) = (self.required_groups.is_empty(), data.as_object_mut()) {
            // Which groups this approval may count for, and which still
            // want one.
            fields.insert("groups".to_owned(), json!(groups));
            fields.insert("groups_missing".to_owned(), json!(missing));
        }
        let discounted: Vec<&PrincipalId> = self
            .approvals
            .iter()
            .map(|a| &a.approver)
            .filter(|a| disabled.contains(a))
            .collect();
        if let (false, Some(fields)) = (discounted.is_empty(), data.as_object_mut()) {
            // Approvals of approvers disabled since: recorded, not counted.
            fields.insert("discounted".to_owned(), json!(discounted));
        }
        let mut events = vec![PendingEvent::new(
            self.tenant.clone(),
            now,
            approver.id.clone(),
            EventKind::RequestApproved,
            self.id,
            data,
        )];
        let counted = || {
            self.approvals
                .iter()
                .filter(|a| !disabled.contains(&a.approver))
        };
        if counted().count() >= count(self.required_approvals) && missing.is_empty() {
            let hours = counted()
                .filter_map(|a| a.duration_hours)
                .chain([self.duration_hours, policy.max_access_hours()])
                .min()
                .unwrap_or(self.duration_hours);
            let actor = Actor::Principal(approver.id.clone());
            match original {
                None => events.extend(self.grant_now(hours, actor, now)),
                Some(original) => {
                    // Never past max_total_hours (at least an hour is
                    // left: checked above).
                    let hours = u32::try_from(room.clamp(1, i64::from(hours))).unwrap_or(1);
                    events.push(self.apply_to(original, hours, actor, now)?);
                }
            }
        }
        Ok(events)
    }

    /// The request's required groups an approval by `approver` counts
    /// for: `choice` (which must be one of them, and theirs), or all of
    /// them the approver belongs to under `policy` now.
    fn groups_for(
        &self,
        approver: &Principal,
        assignments: &[RoleAssignment],
        choice: Option<GroupName>,
        policy: &TenantPolicy,
    ) -> Result<Vec<GroupName>, DomainError> {
        let member_of = policy.groups_of(&approver.id, assignments);
        match choice {
            None => Ok(self
                .required_groups
                .iter()
                .filter(|g| member_of.contains(g))
                .cloned()
                .collect()),
            Some(g) if !self.required_groups.contains(&g) => {
                Err(DomainError::invalid(if self.required_groups.is_empty() {
                    format!(
                        "request {} needs no approval from a group; leave group out",
                        self.id
                    )
                } else {
                    format!(
                        "request {} needs no approval from group `{g}`; it needs one from each of {}",
                        self.id,
                        names(&self.required_groups)
                    )
                }))
            }
            Some(g) if !member_of.contains(&g) => Err(DomainError::forbidden(format!(
                "{} is not in approver group `{g}`",
                approver.id
            ))),
            Some(g) => Ok(vec![g]),
        }
    }

    /// The required groups no approval counts for yet (as best the
    /// approvals so far can be spread over them).
    #[must_use]
    pub fn groups_missing(&self) -> Vec<GroupName> {
        missing_groups(&self.required_groups, self.approvals.iter())
    }

    /// An eligible approver denies, with a reason. One denial ends the
    /// request, whatever approvals it already has.
    pub fn deny(
        &mut self,
        approver: &Principal,
        assignments: &[RoleAssignment],
        reason: Reason,
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        self.check_decider(approver, assignments, now)?;
        let event = PendingEvent::new(
            self.tenant.clone(),
            now,
            approver.id.clone(),
            EventKind::RequestDenied,
            self.id,
            json!({ "reason": reason }),
        );
        self.0.denial = Some(Denial {
            by: approver.id.clone(),
            reason,
            at: now,
        });
        self.0.status = RequestStatus::Denied;
        Ok(vec![event])
    }

    /// The requester withdraws a pending request.
    pub fn cancel(
        &mut self,
        by: &Principal,
        reason: Option<Reason>,
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        if by.id != self.requester {
            return Err(DomainError::forbidden(format!(
                "only the requester ({}) can cancel this request",
                self.requester
            )));
        }
        self.check_pending(now)?;
        Ok(vec![self.cancel_unchecked(&by.id, reason, now)])
    }

    /// Ends this extension, still waiting, because the grant it would
    /// extend was revoked (by `by`): canceled, naming why (or expired, if
    /// its time was already over). A decided extension is left as it is.
    pub fn end_with_revoked_grant(
        &mut self,
        by: &PrincipalId,
        now: Timestamp,
    ) -> Vec<PendingEvent> {
        if self.extends.is_none() {
            return Vec::new();
        }
        match self.status_at(now) {
            RequestStatus::Pending => vec![self.cancel_unchecked(
                by,
                Some(Reason::fixed("the grant it would extend was revoked")),
                now,
            )],
            RequestStatus::Expired if self.status == RequestStatus::Pending => {
                vec![self.expire_unchecked(now)]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn cancel_unchecked(
        &mut self,
        by: &PrincipalId,
        reason: Option<Reason>,
        now: Timestamp,
    ) -> PendingEvent {
        let event = PendingEvent::new(
            self.tenant.clone(),
            now,
            by.clone(),
            EventKind::RequestCanceled,
            self.id,
            json!({ "reason": reason }),
        );
        self.0.cancellation = Some(Cancellation {
            by: by.clone(),
            reason,
            at: now,
        });
        self.0.status = RequestStatus::Canceled;
        event
    }

    /// Records that nobody decided in time. Due once `now` reaches
    /// `expires_at`.
    pub fn expire(&mut self, now: Timestamp) -> Result<Vec<PendingEvent>, DomainError> {
        if self.status != RequestStatus::Pending {
            return Err(DomainError::RequestNotPending {
                status: self.status,
            });
        }
        if now < self.expires_at {
            return Err(DomainError::NotDue {
                what: "expiring the request",
                due: self.expires_at,
            });
        }
        Ok(vec![self.expire_unchecked(now)])
    }

    pub(crate) fn expire_unchecked(&mut self, now: Timestamp) -> PendingEvent {
        self.0.status = RequestStatus::Expired;
        PendingEvent::new(
            self.tenant.clone(),
            now,
            Actor::System,
            EventKind::RequestExpired,
            self.id,
            json!({ "expires_at": self.expires_at }),
        )
    }

    /// Ends a running grant early: an eligible approver of the resource, or
    /// the requester giving access back. Refused unless the request is
    /// approved and its grant still running (`request_not_active`).
    pub fn revoke(
        &mut self,
        by: &Principal,
        assignments: &[RoleAssignment],
        reason: Reason,
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        if let Some(original) = self.extends {
            return Err(DomainError::RequestNotActive {
                status: self.status_at(now),
                detail: format!(
                    "request {} is an extension: revoke request {original}, which holds the grant",
                    self.id
                ),
            });
        }
        let status = self.status_at(now);
        let grant = match (&self.grant, status) {
            (Some(grant), RequestStatus::Approved) => grant,
            _ => {
                return Err(DomainError::RequestNotActive {
                    status,
                    detail: "only an approved request whose grant is still running can be revoked"
                        .to_owned(),
                });
            }
        };
        grant.check_revoker(by, assignments)?;
        Ok(self.revoke_unchecked(&by.id, reason, now))
    }

    pub(crate) fn revoke_unchecked(
        &mut self,
        by: &PrincipalId,
        reason: Reason,
        now: Timestamp,
    ) -> Vec<PendingEvent> {
        let events = self
            .0
            .grant
            .as_mut()
            .map(|g| g.revoke_unchecked(by, reason, now))
            .into_iter()
            .collect();
        self.0.status = RequestStatus::Revoked;
        events
    }

    /// Records that the grant ran out. Due once `now` reaches its
    /// `not_after`.
    pub fn complete(&mut self, now: Timestamp) -> Result<Vec<PendingEvent>, DomainError> {
        let grant = match (&self.grant, self.status) {
            (Some(grant), RequestStatus::Approved) => grant,
            (_, status) => {
                return Err(DomainError::RequestNotActive {
                    status,
                    detail: "only an approved request can complete".to_owned(),
                });
            }
        };
        if !grant.has_run_out(now) {
            return Err(DomainError::NotDue {
                what: "completing the request",
                due: grant.not_after,
            });
        }
        Ok(self.complete_unchecked(now))
    }

    pub(crate) fn complete_unchecked(&mut self, now: Timestamp) -> Vec<PendingEvent> {
        let events = self
            .0
            .grant
            .as_mut()
            .map(|g| g.end_unchecked(now))
            .into_iter()
            .collect();
        self.0.status = RequestStatus::Completed;
        events
    }
}

/// Refuses unless `requester` is an operator and `case` is an open case of
/// `tenant` assigned to them.
fn check_case(
    requester: &Principal,
    tenant: &Tenant,
    case: &SupportCase,
) -> Result<(), DomainError> {
    if !requester.is_operator() {
        return Err(DomainError::forbidden(format!(
            "{} is a {}; only operators request access",
            requester.id,
            requester.kind.name()
        )));
    }
    if case.tenant != tenant.id {
        return Err(DomainError::corrupt(format!(
            "case {} is in tenant {}, not {}",
            case.id, case.tenant, tenant.id
        )));
    }
    if case.status != CaseStatus::Open {
        return Err(DomainError::CaseNotOpen {
            case: case.id,
            status: case.status,
        });
    }
    if case.assigned_to.as_ref() != Some(&requester.id) {
        return Err(DomainError::NotAssigned {
            case: case.id,
            principal: requester.id.clone(),
            assignment: case.assigned_to.as_ref().map_or_else(
                || "not assigned to anyone".to_owned(),
                |a| format!("assigned to {a}"),
            ),
        });
    }
    Ok(())
}

/// The `request.approved` event of a request the system approves as it is
/// made (the tenant has not opted in, or a rule approves it), if it does.
fn approved_at_once(
    outcome: &Outcome<'_>,
    tenant: &TenantId,
    id: RequestId,
    now: Timestamp,
) -> Option<PendingEvent> {
    let data = match outcome {
        Outcome::NotEnabled => json!({
            "decided_by_system": true,
            "reason": format!("Lockbox is not enabled for tenant {tenant}: approved at once"),
        }),
        Outcome::Approved(r) => json!({
            "decided_by_system": true,
            "rule": r.name,
            "reason": format!("rule `{}` of the tenant's policy approves it", r.name),
        }),
        Outcome::Denied(..) | Outcome::Waits { .. } => return None,
    };
    Some(PendingEvent::new(
        tenant.clone(),
        now,
        Actor::System,
        EventKind::RequestApproved,
        id,
        data,
    ))
}

/// The groups of `required` that `approvals` leave without one, each
/// approval counting for one group at most.
fn missing_groups<'a>(
    required: &[GroupName],
    approvals: impl Iterator<Item = &'a Approval>,
) -> Vec<GroupName> {
    if required.is_empty() {
        return Vec::new();
    }
    let eligible: Vec<&[GroupName]> = approvals.map(|a| a.groups.as_slice()).collect();
    groups_met(required, &eligible)
        .iter()
        .zip(required)
        .filter(|(holder, _)| holder.is_none())
        .map(|(_, g)| g.clone())
        .collect()
}

/// `a, b and c`.
fn names(groups: &[GroupName]) -> String {
    groups
        .iter()
        .map(|g| format!("`{g}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many whole hours the policy's `max_total_hours` still leaves
/// `grant` (negative when a lowered maximum is already passed).
fn grant_room(grant: &Grant, policy: &TenantPolicy) -> i64 {
    i64::from(policy.max_total_hours()) - grant.length_hours()
}

fn count(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
