//! What a service answers when it does not do what was asked.
//!
//! Nothing here knows HTTP: the API (`api/error.rs`) gives each variant
//! its status (by an exhaustive match, so a new refusal must be given one
//! there) and the portal its page.

use lockbox_core::DomainError;
use lockbox_store::StoreError;

/// A refusal of the caller's request, or a failure of ours.
#[derive(Debug)]
pub enum ServiceError {
    /// A rule of the domain refused it.
    Domain(DomainError),
    /// Refused by the server (authentication, authorization, input, load),
    /// with a detail for the caller.
    Refused {
        /// Which refusal.
        refusal: Refusal,
        /// For the caller: what to fix.
        detail: String,
    },
    /// A failure of ours; the cause is logged, never shown.
    Internal(String),
    /// The database cannot be reached.
    Unavailable(String),
}

/// The server's own refusals (the domain's are [`DomainError`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed input.
    InvalidInput,
    /// No or bad credentials.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// Does not exist, or the caller may not see it (the same answer).
    NotFound,
    /// A state conflict.
    Conflict,
    /// Too many failed attempts from one client or for one account.
    RateLimited,
    /// Too much costly work is waiting; try again.
    Busy,
    /// This node cannot decide on access now.
    EnforcementUnavailable,
    /// The grant allows nothing now.
    GrantNotActive,
    /// The resource is in no tenant's subscription.
    OutOfScope,
    /// No access level has this name.
    UnknownAccessLevel,
    /// A device sign-in is not finished yet (RFC 8628).
    AuthorizationPending,
    /// A device sign-in was polled too soon (RFC 8628).
    SlowDown,
}

impl Refusal {
    /// Its stable type, as the API's problems and the logs name it.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::Busy => "busy",
            Self::EnforcementUnavailable => "enforcement_unavailable",
            Self::GrantNotActive => "grant_not_active",
            Self::OutOfScope => "out_of_scope",
            Self::UnknownAccessLevel => "unknown_access_level",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
        }
    }
}

impl ServiceError {
    /// Refused, with `detail` for the caller.
    pub fn refused(refusal: Refusal, detail: impl Into<String>) -> Self {
        Self::Refused {
            refusal,
            detail: detail.into(),
        }
    }

    /// `invalid_input`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::refused(Refusal::InvalidInput, detail)
    }

    /// `not_found` with `detail` as it is: for what the caller may not see,
    /// answered exactly as what does not exist.
    pub fn hidden(detail: impl Into<String>) -> Self {
        Self::refused(Refusal::NotFound, detail)
    }

    /// `not_found`: "`what` not found".
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::refused(Refusal::NotFound, format!("{what} not found"))
    }

    /// `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::refused(Refusal::Forbidden, detail)
    }

    /// `unauthenticated`.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::refused(Refusal::Unauthenticated, detail)
    }

    /// `conflict`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::refused(Refusal::Conflict, detail)
    }

    /// The stable type of this error.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Domain(e) => e.kind(),
            Self::Refused { refusal, .. } => refusal.kind(),
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// For logs: the type and the detail or cause.
impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Domain(e) => write!(f, "{}: {e}", e.kind()),
            Self::Refused { refusal, detail } => write!(f, "{}: {detail}", refusal.kind()),
            Self::Internal(cause) => write!(f, "internal: {cause}"),
            Self::Unavailable(cause) => write!(f, "unavailable: {cause}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::CorruptRecord(_) => Self::Internal(e.to_string()),
            e => Self::Domain(e),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => Self::not_found(format!("{entity} {id}")),
            StoreError::Conflict(c) => Self::conflict(c.detail()),
            StoreError::Unavailable(why) | StoreError::Contention(why) => Self::Unavailable(why),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<lockbox_core::id::RandomnessError> for ServiceError {
    fn from(e: lockbox_core::id::RandomnessError) -> Self {
        Self::Internal(e.to_string())
    }
}

macro_rules! invalid_input_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ServiceError {
            fn from(e: $t) -> Self {
                Self::invalid(e.to_string())
            }
        }
    )*};
}

invalid_input_from!(
    lockbox_core::id::IdError,
    lockbox_core::ResourceIdError,
    lockbox_core::text::TextError,
    lockbox_core::access::AccessError
);
