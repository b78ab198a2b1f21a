//! The error policy, in one place.
//!
//! Every error leaves as `application/problem+json` with a stable `type`.
//!
//! - **The caller's errors** (4xx): malformed input (`invalid_input`, 400),
//!   no or bad credentials (`unauthenticated`, 401), refusals of the domain
//!   (`forbidden`, `self_approval`, `not_an_approver`, … 403; state
//!   conflicts such as `request_not_pending`, `limit_reached` for a
//!   request or emergency grant past one of the tenant's fan-out limits
//!   (the detail names the policy key), and `replay_withheld` for a
//!   repeated creation whose first response carried a secret, 409; rules
//!   about the input such as `out_of_scope`, `duration_too_long`, and
//!   `policy_requirement` for a request whose reasons fall short of the
//!   tenant's policy, 422),
//!   things the caller may not see or that do not exist (`not_found`, 404:
//!   the same answer for both, so existence never leaks across tenants),
//!   oversized bodies (`payload_too_large`, 413) and too many failed
//!   sign-ins (`rate_limited`, 429). Their `detail` says what to fix.
//! - **Ours** (5xx): storage faults and broken invariants (`internal`, 500)
//!   and an unreachable database (`unavailable`, 503). They are logged with
//!   their cause; the response carries none of it. A server with too much
//!   costly work waiting (password hashing) refuses more at once (`busy`,
//!   503) rather than queueing without bound.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockbox_api::Problem;
use lockbox_core::DomainError;
use lockbox_store::StoreError;

use crate::service::{Refusal, ServiceError};

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub enum ApiError {
    /// A refusal with a stable type and a detail for the caller.
    Problem {
        /// HTTP status.
        status: StatusCode,
        /// Stable slug.
        kind: &'static str,
        /// For the caller.
        detail: String,
    },
    /// A failure of ours; the cause is logged, never sent.
    Internal(String),
    /// The database cannot be reached.
    Unavailable(String),
    /// Not an error: the stored first response to an idempotent request,
    /// sent again.
    Replay {
        /// Its status.
        status: StatusCode,
        /// Its JSON body.
        body: String,
    },
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self::Problem {
            status,
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", detail)
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub(crate) fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// The stable type of this error.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Problem { kind, .. } => kind,
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
            Self::Replay { .. } => "replay",
        }
    }
}

/// For logs: the type and the detail or cause (a 5xx's cause is logged,
/// never sent).
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Problem { kind, detail, .. } => write!(f, "{kind}: {detail}"),
            Self::Internal(cause) => write!(f, "internal: {cause}"),
            Self::Unavailable(cause) => write!(f, "unavailable: {cause}"),
            Self::Replay { status, .. } => write!(f, "replay of a {status} response"),
        }
    }
}

/// A short title for each type.
fn title(kind: &str) -> &'static str {
    match kind {
        "invalid_input" => "Invalid input",
        "unauthenticated" => "Authentication required",
        "forbidden" => "Forbidden",
        "access_denied" => "Access denied",
        "not_found" => "Not found",
        "conflict" => "Conflict",
        "request_not_pending" => "Request is not pending",
        "request_not_active" => "Request is not active",
        "self_approval" => "Requesters cannot decide on their own requests",
        "not_an_approver" => "Not an approver",
        "already_approved" => "Already approved",
        "case_not_open" => "Case is not open",
        "not_assigned" => "Case is assigned to someone else",
        "out_of_scope" => "Out of scope",
        "duration_too_long" => "Duration too long",
        "unknown_access_level" => "Unknown access level",
        "emergency_access_disabled" => "Emergency access is disabled",
        "not_due" => "Not due yet",
        "limit_reached" => "A limit of the tenant's policy is reached",
        "policy_requirement" => "The request falls short of the tenant's policy",
        "denied_by_rule" => "A rule of the tenant's policy refuses the request",
        "idempotency_key_reused" => "Idempotency key reused",
        "replay_withheld" => "Already done; its secret is not shown again",
        "payload_too_large" => "Payload too large",
        "unsupported_media_type" => "Unsupported media type",
        "method_not_allowed" => "Method not allowed",
        "rate_limited" => "Too many attempts",
        "busy" => "Server busy",
        "unavailable" => "Service unavailable",
        "enforcement_unavailable" => "Enforcement unavailable on this node",
        "grant_not_active" => "Grant is not active",
        "enrollment_unusable" => "Enrolment link no longer works",
        "principal_disabled" => "Principal is disabled",
        "authorization_pending" => "Sign-in not finished yet",
        "slow_down" => "Polled too soon",
        _ => "Internal error",
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Internal(cause) => Self::Internal(cause),
            ServiceError::Unavailable(cause) => Self::Unavailable(cause),
            ServiceError::Refused { refusal, detail } => {
                Self::new(refusal_status(refusal), refusal.kind(), detail)
            }
            ServiceError::Domain(d) => match domain_status(&d) {
                Some(status) => Self::new(status, d.kind(), d.to_string()),
                None => Self::Internal(d.to_string()),
            },
        }
    }
}

/// The status of a refusal of the server's. Exhaustive: a new refusal must
/// be given its status here.
fn refusal_status(refusal: Refusal) -> StatusCode {
    match refusal {
        Refusal::InvalidInput | Refusal::AuthorizationPending | Refusal::SlowDown => {
            StatusCode::BAD_REQUEST
        }
        Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
        Refusal::Forbidden => StatusCode::FORBIDDEN,
        Refusal::NotFound => StatusCode::NOT_FOUND,
        Refusal::Conflict | Refusal::GrantNotActive => StatusCode::CONFLICT,
        Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Busy | Refusal::EnforcementUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::OutOfScope | Refusal::UnknownAccessLevel => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The status of a refusal of the domain's; `None` for a failure of ours.
/// Exhaustive: a new variant must be given its status here.
fn domain_status(e: &DomainError) -> Option<StatusCode> {
    Some(match e {
        DomainError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        DomainError::Forbidden(_)
        | DomainError::SelfApproval { .. }
        | DomainError::NotAnApprover { .. }
        | DomainError::NotAssigned { .. }
        | DomainError::EmergencyAccessDisabled(_)
        | DomainError::DeniedByRule { .. }
        | DomainError::PrincipalDisabled(_) => StatusCode::FORBIDDEN,
        DomainError::RequestNotPending { .. }
        | DomainError::RequestNotActive { .. }
        | DomainError::AlreadyApproved { .. }
        | DomainError::CaseNotOpen { .. }
        | DomainError::Conflict(_)
        | DomainError::LimitReached { .. }
        | DomainError::NotDue { .. } => StatusCode::CONFLICT,
        DomainError::OutOfScope(_)
        | DomainError::PolicyRequirement { .. }
        | DomainError::DurationTooLong { .. }
        | DomainError::UnknownAccessLevel(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::NotFound(_) => StatusCode::NOT_FOUND,
        DomainError::EnrollmentUnusable(_) => StatusCode::GONE,
        DomainError::CorruptRecord(_) => return None,
    })
}

impl ApiError {
    /// What may be shown of this error: status, stable type, title and
    /// detail. A failure of ours is logged here and described without its
    /// cause. A replay (no error) shows as its status.
    pub(crate) fn shown(self) -> (StatusCode, &'static str, &'static str, String) {
        let (status, kind, detail) = match self {
            Self::Replay { status, .. } => (status, "replay", String::new()),
            Self::Problem {
                status,
                kind,
                detail,
            } => (status, kind, detail),
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it has been logged".to_owned(),
                )
            }
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; try again shortly".to_owned(),
                )
            }
        };
        (status, kind, title(kind), detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Replay { status, body } = self {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        let (status, kind, title, detail) = self.shown();
        let problem = Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
        };
        let body = serde_json::to_string(&problem).unwrap_or_else(|_| "{}".to_owned());
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

macro_rules! through_service_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ServiceError::from(e).into()
            }
        }
    )*};
}

through_service_error!(
    DomainError,
    StoreError,
    lockbox_core::id::RandomnessError,
    lockbox_core::id::IdError,
    lockbox_core::ResourceIdError,
    lockbox_core::text::TextError,
    lockbox_core::access::AccessError
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `passwords.rs`, which no longer knows HTTP: a password
    /// pool that is full answers `503 busy`.
    #[test]
    fn busy_is_a_503() {
        let (status, kind, _, _) =
            ApiError::from(ServiceError::refused(Refusal::Busy, "full")).shown();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kind, "busy");
    }

    #[test]
    fn every_refusal_has_its_status() {
        for (refusal, status) in [
            (Refusal::InvalidInput, StatusCode::BAD_REQUEST),
            (Refusal::Unauthenticated, StatusCode::UNAUTHORIZED),
            (Refusal::Forbidden, StatusCode::FORBIDDEN),
            (Refusal::NotFound, StatusCode::NOT_FOUND),
            (Refusal::Conflict, StatusCode::CONFLICT),
            (Refusal::GrantNotActive, StatusCode::CONFLICT),
            (Refusal::RateLimited, StatusCode::TOO_MANY_REQUESTS),
            (
                Refusal::EnforcementUnavailable,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (Refusal::OutOfScope, StatusCode::UNPROCESSABLE_ENTITY),
            (
                Refusal::UnknownAccessLevel,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (shown, kind, _, detail) =
                ApiError::from(ServiceError::refused(refusal, "why")).shown();
            assert_eq!(shown, status, "{refusal:?}");
            assert_eq!(kind, refusal.kind());
            assert_eq!(detail, "why");
        }
    }
}
