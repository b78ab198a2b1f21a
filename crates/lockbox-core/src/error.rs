//! The domain's refusals.
//!
//! Every refusal is the caller's to fix, so each carries a stable `kind` slug
//! (the `type` of the HTTP problem document) and a message that says what is
//! wrong in the caller's terms. A refused transition changes nothing: the
//! state machine checks everything before it mutates.
//!
//! [`DomainError::CorruptRecord`] is the exception: a stored record that
//! breaks an invariant. It is Lockbox's fault, never the caller's, and the
//! server reports it as a 5xx without the details.

use crate::access::{AccessError, AccessLevelName};
use crate::case::CaseStatus;
use crate::clock::Timestamp;
use crate::id::{CaseId, IdError, PrincipalId, TenantId};
use crate::request::RequestStatus;
use crate::resource::{ResourceId, ResourceIdError};
use crate::text::TextError;

/// Why the domain refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    InvalidInput(String),
    /// The caller may not do this (the message says which role is missing).
    #[error("{0}")]
    Forbidden(String),
    /// The request has already left `pending` (or its TTL has run out).
    #[error("the request is {status}, no longer pending")]
    RequestNotPending {
        /// The state it is in (`expired` when its TTL has passed even if the
        /// sweeper has not yet recorded it).
        status: RequestStatus,
    },
    /// Only an approved request whose grant is still running can be revoked
    /// or completed.
    #[error("the request is {status}; {detail}")]
    RequestNotActive {
        /// The state it is in.
        status: RequestStatus,
        /// What would have been needed.
        detail: String,
    },
    /// The requester tried to decide on their own request.
    #[error("{principal} made this request and cannot approve or deny it")]
    SelfApproval {
        /// The requester.
        principal: PrincipalId,
    },
    /// The caller holds no Owner or LockboxApprover role covering the
    /// request's resource in its tenant (now, at decision time).
    #[error(
        "{principal} is not an Owner or Lockbox Approver of {resource} (or a scope above it) in tenant {tenant}"
    )]
    NotAnApprover {
        /// Who tried.
        principal: PrincipalId,
        /// The requested resource or scope.
        resource: ResourceId,
        /// The request's tenant.
        tenant: TenantId,
    },
    /// Each approver counts once.
    #[error(
        "{principal} has already approved this request; a second approval must come from someone else"
    )]
    AlreadyApproved {
        /// Who tried again.
        principal: PrincipalId,
    },
    /// The case is closed.
    #[error("case {case} is {status}; access can only be requested for an open case")]
    CaseNotOpen {
        /// The case.
        case: CaseId,
        /// Its status.
        status: CaseStatus,
    },
    /// The requester is not the operator assigned to the case.
    #[error("case {case} is {assignment}, not to {principal}")]
    NotAssigned {
        /// The case.
        case: CaseId,
        /// Who asked.
        principal: PrincipalId,
        /// `assigned to sam` or `not assigned to anyone`.
        assignment: String,
    },
    /// A resource or scope outside what the operation may touch.
    #[error("{0}")]
    OutOfScope(String),
    /// A duration over the allowed maximum.
    #[error("{requested} {unit} is longer than {limit}: at most {max} {unit}")]
    DurationTooLong {
        /// What was asked for.
        requested: u32,
        /// The maximum.
        max: u32,
        /// `hours` or `minutes`.
        unit: &'static str,
        /// Whose limit (`the tenant's maximum`, `the requested duration`).
        limit: &'static str,
    },
    /// The access level is not defined.
    #[error("access level `{0}` is not defined")]
    UnknownAccessLevel(AccessLevelName),
    /// The tenant's policy does not allow emergency access.
    #[error("tenant {0}'s policy does not allow emergency access")]
    EmergencyAccessDisabled(TenantId),
    /// The operation is not due yet (expiring a request before its TTL,
    /// completing a grant before its end).
    #[error("{what} is not due until {due}")]
    NotDue {
        /// What was attempted.
        what: &'static str,
        /// When it becomes due.
        due: Timestamp,
    },
    /// A fan-out limit of the tenant's policy is reached: the operator has
    /// as many requests waiting, or grants running, as the policy allows.
    #[error("{detail}, the most the tenant's policy allows ({limit} = {max}); {advice}")]
    LimitReached {
        /// The policy key (`max_pending_requests_per_operator`, …).
        limit: &'static str,
        /// Its value.
        max: u32,
        /// What is open: `sam has 10 pending requests in tenant contoso`.
        detail: String,
        /// What the caller can do.
        advice: &'static str,
    },
    /// The operation clashes with existing state.
    /// The request falls short of what the tenant's policy requires of
    /// its reasons: a reason type it does not allow, a justification too
    /// short, a reference missing or of the wrong form.
    #[error("{detail} (the tenant's policy: {requirement})")]
    PolicyRequirement {
        /// The policy key (`allowed_reason_types`, …).
        requirement: &'static str,
        /// What is wrong, in the caller's terms.
        detail: String,
    },
    /// A rule of the tenant's policy refuses the request.
    #[error("rule `{rule}` of the tenant's policy refuses this request: {reason}")]
    DeniedByRule {
        /// The rule's name.
        rule: String,
        /// The rule's reason.
        reason: String,
    },
    #[error("{0}")]
    Conflict(String),
    /// Nothing by that id that the caller may see: the same answer whether
    /// it does not exist or belongs where the caller may not look.
    #[error("{0}")]
    NotFound(String),
    /// An enrolment link that can no longer be used (used, expired, or
    /// replaced by a newer one).
    #[error("{0}")]
    EnrollmentUnusable(String),
    /// The principal is disabled.
    #[error("{0}")]
    PrincipalDisabled(String),
    /// A stored record breaks an invariant: a bug or tampering, never the
    /// caller's fault.
    #[error("stored record is inconsistent: {0}")]
    CorruptRecord(String),
}

impl DomainError {
    /// The stable slug for this kind of refusal (the problem `type`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Forbidden(_) => "forbidden",
            Self::RequestNotPending { .. } => "request_not_pending",
            Self::RequestNotActive { .. } => "request_not_active",
            Self::SelfApproval { .. } => "self_approval",
            Self::NotAnApprover { .. } => "not_an_approver",
            Self::AlreadyApproved { .. } => "already_approved",
            Self::CaseNotOpen { .. } => "case_not_open",
            Self::NotAssigned { .. } => "not_assigned",
            Self::OutOfScope(_) => "out_of_scope",
            Self::DurationTooLong { .. } => "duration_too_long",
            Self::UnknownAccessLevel(_) => "unknown_access_level",
            Self::EmergencyAccessDisabled(_) => "emergency_access_disabled",
            Self::NotDue { .. } => "not_due",
            Self::LimitReached { .. } => "limit_reached",
            Self::PolicyRequirement { .. } => "policy_requirement",
            Self::DeniedByRule { .. } => "denied_by_rule",
            Self::Conflict(_) => "conflict",
            Self::NotFound(_) => "not_found",
            Self::EnrollmentUnusable(_) => "enrollment_unusable",
            Self::PrincipalDisabled(_) => "principal_disabled",
            Self::CorruptRecord(_) => "internal",
        }
    }

    pub(crate) fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        Self::CorruptRecord(msg.into())
    }
}

impl From<IdError> for DomainError {
    fn from(e: IdError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

impl From<ResourceIdError> for DomainError {
    fn from(e: ResourceIdError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

impl From<TextError> for DomainError {
    fn from(e: TextError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

impl From<AccessError> for DomainError {
    fn from(e: AccessError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}
