//! Support cases. A request for access always names an open case of the same
//! tenant, assigned to the requester, about a resource inside the requested
//! scope. Closing the case (or handing it to another operator) ends the
//! access it justified.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{EventKind, PendingEvent};
use crate::authz::ProviderAdmin;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::id::{CaseId, PrincipalId, TenantId};
use crate::principal::{Principal, PrincipalKind};
use crate::request::{AccessRequest, RequestStatus};
use crate::resource::ResourceId;
use crate::text::{CaseTitle, Reason};

/// How urgent a case is (as in Azure support: A is critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Critical impact.
    A,
    /// Moderate impact.
    B,
    /// Minimal impact.
    C,
}

impl Severity {
    /// Parses `A`, `B` or `C`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "A" => Ok(Self::A),
            "B" => Ok(Self::B),
            "C" => Ok(Self::C),
            _ => Err(DomainError::invalid(format!(
                "severity must be A, B or C, not `{}`",
                crate::id::shorten(s)
            ))),
        }
    }
}

/// Whether a case is being worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Being worked.
    Open,
    /// Done; its grants have been revoked.
    Closed,
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
        })
    }
}

/// The stored form of a case. Read it through [`SupportCase`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The case's id.
    pub id: CaseId,
    /// The customer's tenant.
    pub tenant: TenantId,
    /// What the case is about.
    pub resource: ResourceId,
    /// What the case is about, in words.
    pub title: CaseTitle,
    /// How urgent.
    pub severity: Severity,
    /// Open or closed.
    pub status: CaseStatus,
    /// The operator working it.
    pub assigned_to: Option<PrincipalId>,
    /// When it was opened.
    pub created_at: Timestamp,
    /// Who opened it.
    pub created_by: PrincipalId,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// Who closed it.
    pub closed_by: Option<PrincipalId>,
}

/// A support case. Derefs to its [`CaseRecord`] for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CaseRecord", try_from = "CaseRecord")]
pub struct SupportCase(CaseRecord);

impl TryFrom<CaseRecord> for SupportCase {
    type Error = DomainError;
    fn try_from(record: CaseRecord) -> Result<Self, DomainError> {
        Self::restore(record)
    }
}

impl From<SupportCase> for CaseRecord {
    fn from(value: SupportCase) -> Self {
        value.0
    }
}

impl Deref for SupportCase {
    type Target = CaseRecord;
    fn deref(&self) -> &CaseRecord {
        &self.0
    }
}

impl SupportCase {
    /// Rebuilds a case from storage, checking its invariants.
    pub fn restore(record: CaseRecord) -> Result<Self, DomainError> {
        let closed_fields = record.closed_at.is_some() && record.closed_by.is_some();
        let consistent = match record.status {
            CaseStatus::Open => record.closed_at.is_none() && record.closed_by.is_none(),
            CaseStatus::Closed => closed_fields,
        };
        if !consistent {
            return Err(DomainError::corrupt(format!(
                "case {} is {} but its closing fields disagree",
                record.id, record.status
            )));
        }
        Ok(Self(record))
    }

    /// The stored form.
    #[must_use]
    pub fn record(&self) -> &CaseRecord {
        &self.0
    }

    /// A user of the tenant opens a case about `resource`, which must lie in
    /// a subscription of the tenant (`resource_tenant` is its owner).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        by: &Principal,
        id: CaseId,
        tenant: &TenantId,
        resource: ResourceId,
        resource_tenant: Option<&TenantId>,
        title: CaseTitle,
        severity: Severity,
        now: Timestamp,
    ) -> Result<(SupportCase, PendingEvent), DomainError> {
        if !by.is_user_of(tenant) {
            return Err(DomainError::forbidden(format!(
                "{} is not a user of tenant {tenant}; cases are opened by the customer",
                by.id
            )));
        }
        if resource_tenant != Some(tenant) {
            return Err(DomainError::OutOfScope(format!(
                "{resource} is not in a subscription of tenant {tenant}"
            )));
        }
        let case = SupportCase(CaseRecord {
            id,
            tenant: tenant.clone(),
            resource,
            title,
            severity,
            status: CaseStatus::Open,
            assigned_to: None,
            created_at: now,
            created_by: by.id.clone(),
            closed_at: None,
            closed_by: None,
        });
        let event = PendingEvent::new(
            tenant.clone(),
            now,
            by.id.clone(),
            EventKind::CaseOpened,
            case.id,
            json!({
                "resource": case.resource,
                "title": case.title,
                "severity": case.severity,
            }),
        );
        Ok((case, event))
    }

    fn check_open(&self) -> Result<(), DomainError> {
        match self.status {
            CaseStatus::Open => Ok(()),
            status => Err(DomainError::CaseNotOpen {
                case: self.id,
                status,
            }),
        }
    }

    /// The provider assigns the case to an operator. `requests` are the
    /// case's requests that are still pending or approved: those of a
    /// previous assignee are canceled or revoked, since they no longer work
    /// the case. Assigning to the current assignee changes nothing.
    pub fn assign(
        &mut self,
        by: &ProviderAdmin,
        operator: &Principal,
        requests: &mut [AccessRequest],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        self.check_open()?;
        if !matches!(operator.kind, PrincipalKind::Operator { .. }) {
            return Err(DomainError::invalid(format!(
                "{} is a {}, not an operator",
                operator.id,
                operator.kind.name()
            )));
        }
        if self.assigned_to.as_ref() == Some(&operator.id) {
            return Ok(Vec::new());
        }
        self.check_requests(requests)?;
        let previous = self.assigned_to.clone();
        let mut events = vec![PendingEvent::new(
            self.tenant.clone(),
            now,
            by.principal().clone(),
            EventKind::CaseAssigned,
            self.id,
            json!({ "operator": operator.id, "previous": previous }),
        )];
        if let Some(previous) = previous {
            let reason = Reason::fixed("case reassigned to another operator");
            for request in requests.iter_mut().filter(|r| r.requester == previous) {
                events.extend(request.end_for_case(by.principal(), &reason, now));
            }
        }
        self.0.assigned_to = Some(operator.id.clone());
        Ok(events)
    }

    /// A user of the tenant, or the provider, closes the case. Every request
    /// of the case that is still pending is canceled (or expired, if its time
    /// is over), and every grant still running is revoked. `requests` are the
    /// case's requests that are still pending or approved.
    pub fn close(
        &mut self,
        by: &Principal,
        requests: &mut [AccessRequest],
        now: Timestamp,
    ) -> Result<Vec<PendingEvent>, DomainError> {
        let allowed = by.is_user_of(&self.tenant) || matches!(by.kind, PrincipalKind::Admin);
        if !allowed {
            return Err(DomainError::forbidden(format!(
                "{} may not close case {}: only the tenant's users and the provider's admins can",
                by.id, self.id
            )));
        }
        self.check_open()?;
        self.check_requests(requests)?;
        let mut events = vec![PendingEvent::new(
            self.tenant.clone(),
            now,
            by.id.clone(),
            EventKind::CaseClosed,
            self.id,
            json!({}),
        )];
        let reason = Reason::fixed("case closed");
        for request in requests.iter_mut() {
            events.extend(request.end_for_case(&by.id, &reason, now));
        }
        self.0.status = CaseStatus::Closed;
        self.0.closed_at = Some(now);
        self.0.closed_by = Some(by.id.clone());
        Ok(events)
    }

    fn check_requests(&self, requests: &[AccessRequest]) -> Result<(), DomainError> {
        match requests.iter().find(|r| r.case != self.id) {
            Some(r) => Err(DomainError::corrupt(format!(
                "request {} is not part of case {}",
                r.id, self.id
            ))),
            None => Ok(()),
        }
    }
}

impl AccessRequest {
    /// Ends what this request still holds open because its case closed or
    /// changed hands: a pending request is canceled (or expired, if its time
    /// is over); a running grant is revoked; a grant whose time is over is
    /// completed. Terminal requests are left alone.
    fn end_for_case(
        &mut self,
        by: &PrincipalId,
        reason: &Reason,
        now: Timestamp,
    ) -> Vec<PendingEvent> {
        match self.status_at(now) {
            RequestStatus::Pending => vec![self.cancel_unchecked(by, Some(reason.clone()), now)],
            // An approved extension holds nothing: the request it extends
            // holds the grant.
            RequestStatus::Approved if self.extends.is_some() => Vec::new(),
            RequestStatus::Approved => self.revoke_unchecked(by, reason.clone(), now),
            RequestStatus::Expired if self.status == RequestStatus::Pending => {
                vec![self.expire_unchecked(now)]
            }
            RequestStatus::Completed if self.status == RequestStatus::Approved => {
                self.complete_unchecked(now)
            }
            _ => Vec::new(),
        }
    }
}
