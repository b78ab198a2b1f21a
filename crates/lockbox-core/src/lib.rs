//! The Lockbox domain: every rule of customer-approved, just-in-time operator
//! access, decided without I/O.
//!
//! The domain decides; the store persists; the server translates HTTP to calls
//! into this crate and back. Nothing here reads the clock (time is a parameter,
//! see [`Clock`]), opens a file or a socket, or logs. Every state transition
//! returns the audit events it causes as [`PendingEvent`]s; a store seals them
//! into the tenant's hash chain ([`ChainHead::seal`]) in the same transaction
//! as the new state.
//!
//! Map of the crate:
//! - [`id`], [`text`], [`resource`], [`access`]: parsed values (ids, bounded
//!   text, ARM resource ids and scopes, access levels and actions).
//! - [`principal`], [`authz`]: who is who, roles at scopes, the capabilities
//!   that gate tenant and provider administration, approver eligibility.
//! - [`account`]: enrolment links (how people take up their credentials,
//!   so the provider never holds a customer's), disabling and enabling.
//! - [`tenant`], [`policy`], [`case`]: tenants, their opt-in and policy,
//!   support cases.
//! - [`request`], [`grant`]: the access-request state machine, grants and
//!   emergency access; [`reason`]: a request's reason type and reference,
//!   and what a policy requires of them; [`rules`]: a policy's approval
//!   rules.
//! - [`enforce`]: the in-memory grant index that `check` decides from;
//!   [`gateway`]: what gateways are trusted with, and how a proxied HTTP
//!   request or a Kubernetes question becomes a resource and an action.
//! - [`audit`]: events, the canonical encoding, the per-tenant hash chain,
//!   signed checkpoints and the offline verifier.

pub mod access;
pub mod account;
pub mod audit;
pub mod authz;
pub mod case;
pub mod channel;
pub mod clock;
pub mod enforce;
pub mod error;
pub mod gateway;
pub mod grant;
pub mod groups;
pub mod id;
pub mod policy;
pub mod principal;
pub mod reason;
pub mod request;
pub mod resource;
pub mod rules;
pub mod ssh;
pub mod sso;
pub mod tenant;
pub mod text;

pub use access::{AccessLevel, AccessLevelName, Action, ActionPattern};
pub use account::{AccountManager, Enrollment, EnrollmentState};
pub use audit::{
    Actor, AuditEvent, Chain, ChainFault, ChainHead, ChainVerifier, Checkpoint, CheckpointSigner,
    Digest, EventKind, FaultKind, PendingEvent, PublicKey, SealedEvent, VerifiedChain,
};
pub use authz::{Approver, ProviderAdmin, TenantAdmin};
pub use case::{CaseStatus, Severity, SupportCase};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use enforce::{CheckOutcome, CheckReason, GrantIndex, IndexFull};
pub use error::DomainError;
pub use gateway::GatewaySettings;
pub use grant::{CheckDenial, Grant, GrantState, Revocation};
pub use id::{
    CaseId, ChannelId, EnrollmentId, GrantId, JobId, PrincipalId, RequestId, RoleAssignmentId,
    TenantId, TokenId,
};
pub use policy::{LockboxSetting, OpenCounts, PolicySettings, TenantPolicy};
pub use principal::{Principal, PrincipalKind, Role, RoleAssignment};
pub use reason::{ReasonType, ReferencePattern};
pub use request::{
    AccessRequest, Approval, ApprovalDraft, Denial, ExtensionDraft, ExtensionFacts, RequestDraft,
    RequestFacts, RequestStatus,
};
pub use resource::{ResourceId, ResourceIdError, Scope, SubscriptionId};
pub use tenant::Tenant;
