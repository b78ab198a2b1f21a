//! Lockbox's HTTP wire types: what the API accepts and returns, shared by
//! the server and the client, with their OpenAPI schemas.
//!
//! These are plain data in the shapes of `API.md`: ids and names are
//! strings here, and the server parses them into the domain's typed values
//! at the edge. Times are RFC 3339 in UTC. Request bodies reject unknown fields, so a misspelled field
//! is an error rather than silently ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error: `application/problem+json` (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable slug: `not_found`, `forbidden`, `request_not_pending`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the slug.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A customer organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    /// Whether the tenant has opted in (off by default).
    pub lockbox_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Lowercase letters, digits and `-`.
    pub id: String,
    pub display_name: String,
    /// The tenant's first TenantAdmin.
    pub admin: NewUser,
}

/// The answer to `POST /v1/tenants`. The provider never receives a
/// credential of the tenant's people: the first admin sets their own
/// through the enrolment link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    /// The first TenantAdmin.
    pub admin: Principal,
    /// Its one-time enrolment link, shown this once: send it to that person.
    pub enrollment: Enrollment,
}

/// A one-time enrolment link: whoever opens it sets the principal's
/// password and receives its first API token. Single use; it stops working
/// at `expires_at`, or when a newer link is issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enrollment {
    /// `https://…/enroll/lbe_…`: the portal's enrolment page (the part
    /// after `/enroll/` is what `POST /v1/enroll` takes as `token`).
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A principal just created, with its enrolment link (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrincipalCreated {
    #[serde(flatten)]
    pub principal: Principal,
    pub enrollment: Enrollment,
}

/// `POST /v1/enroll`: take up one's credentials with an enrolment link.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    /// The link's secret (`lbe_…`, the end of its URL).
    pub token: String,
    /// The new password (12 to 1024 characters), for the portal. Required
    /// for people; refused for gateways, which use only their API token.
    #[serde(default)]
    pub password: Option<String>,
}

/// Never the link's secret or the password.
impl std::fmt::Debug for Enroll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enroll").finish_non_exhaustive()
    }
}

/// The answer to `POST /v1/enroll`: who enrolled, and their first API
/// token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enrolled {
    pub principal: Principal,
    pub token: TokenCreated,
}

/// `POST /v1/me/password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// 12 to 1024 characters.
    pub new_password: String,
}

/// Never the passwords.
impl std::fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePassword").finish_non_exhaustive()
    }
}

/// An API token or portal session, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    /// `api` or `session`.
    pub kind: String,
    /// The owner's label for it, if any.
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a call (to within a few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The token that was presented to mint it: revoking that one revokes
    /// this one too.
    pub parent: Option<String>,
}

/// The answer to `POST /v1/principals/{id}/tokens/revoke-all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokensRevoked {
    /// How many tokens and sessions stopped working (the principal's own,
    /// and every token minted from them).
    pub revoked: u64,
}

/// `POST /v1/tenants/{tenant}/subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The subscription's own id, without `/subscriptions/`.
    pub id: String,
}

/// A subscription and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub tenant: String,
    /// The subscription as a scope, `/subscriptions/{id}`.
    pub scope: String,
}

/// A user, operator, gateway or admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    pub id: String,
    /// `user`, `operator`, `gateway` or `admin`.
    pub kind: String,
    /// The tenant of a user; `null` for the provider's principals.
    pub tenant: Option<String>,
    pub display_name: String,
    pub email: Option<String>,
    pub alternate_emails: Vec<String>,
    /// An operator allowed break-glass access.
    pub emergency: bool,
    pub created_at: DateTime<Utc>,
    /// When the principal took up its credentials with an enrolment link;
    /// `null` until then.
    #[serde(default)]
    pub enrolled_at: Option<DateTime<Utc>>,
    /// When it was disabled; `null` while it may act.
    #[serde(default)]
    pub disabled_at: Option<DateTime<Utc>>,
}

/// `POST /v1/tenants/{tenant}/users` (and a new tenant's first admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub id: String,
    pub display_name: String,
    pub email: String,
    #[serde(default)]
    pub alternate_emails: Vec<String>,
}

/// `POST /v1/operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub id: String,
    pub display_name: String,
    pub email: String,
    /// May use break-glass emergency access.
    #[serde(default)]
    pub emergency: bool,
}

/// `POST /v1/gateways`: a gateway and what it is trusted with (fixed once
/// registered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGateway {
    pub id: String,
    pub display_name: String,
    /// The only tenant it may ask about; absent: any (a provider-wide
    /// gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The resource it fronts when a request names none (`Lockbox-Resource`);
    /// for a Kubernetes API server, the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// A cookie that may carry the operator's access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_cookie: Option<String>,
    /// A header the gateway sets to the id of a person it has already
    /// authenticated; trusted only when no access token is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_header: Option<String>,
}

/// `GET /v1/gateways/{id}`: a gateway and what it is trusted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gateway {
    pub id: String,
    pub display_name: String,
    pub tenant: Option<String>,
    pub resource: Option<String>,
    pub token_cookie: Option<String>,
    /// In lowercase.
    pub principal_header: Option<String>,
    pub created_at: DateTime<Utc>,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// `POST /v1/authz/kubernetes`: a Kubernetes `SubjectAccessReview`
/// (`authorization.k8s.io/v1` or `v1beta1`), as the API server's
/// authorization webhook sends it; the answer is the same review with its
/// `status`. Fields Lockbox does not use are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReview {
    /// `authorization.k8s.io/v1` or `authorization.k8s.io/v1beta1`.
    pub api_version: String,
    /// `SubjectAccessReview`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SubjectAccessReviewSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubjectAccessReviewStatus>,
}

/// What the API server asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReviewSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<ResourceAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_resource_attributes: Option<NonResourceAttributes>,
    /// The user the API server authenticated: a Lockbox operator's id, or
    /// anyone else (then Lockbox has no opinion).
    #[serde(default)]
    pub user: String,
    /// Their groups (`v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Their groups (`v1beta1` spells it `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// A request for an API object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAttributes {
    /// Empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub verb: String,
    /// Empty for the core group.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    #[serde(default)]
    pub name: String,
}

/// A request for a path outside the object API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NonResourceAttributes {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub verb: String,
}

/// Lockbox's answer: `allowed`, or for a Lockbox operator without a grant
/// that allows it an explicit `denied` (the cluster's RBAC is not asked);
/// for anyone else neither (no opinion: the cluster's own authorizers
/// decide).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReviewStatus {
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evaluation_error: String,
}

/// `PUT /v1/access-levels/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAccessLevel {
    /// Patterns such as `*/read` or `Microsoft.Compute/*`.
    pub actions: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// What an SSH login under the level is; absent: the level's grants get
    /// no SSH certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

/// A named set of action patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessLevel {
    pub name: String,
    pub actions: Vec<String>,
    pub description: String,
    /// What an SSH login under the level is (absent: no SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

fn yes() -> bool {
    true
}

/// An access level's `ssh` section: the Unix login its grants' SSH
/// certificates are for, and what the session may do there. Snapshotted
/// into each request made at the level, as its actions are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshAccess {
    /// The Unix account (`support`, `root`): lowercase letters, digits,
    /// `_` and `-`, at most 32.
    pub login: String,
    /// A command `sshd` runs instead of whatever the operator asks
    /// (the certificate's `force-command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_command: Option<String>,
    /// A terminal (`permit-pty`); default true.
    #[serde(default = "yes")]
    pub permit_pty: bool,
    /// `permit-port-forwarding`; default false.
    #[serde(default)]
    pub port_forwarding: bool,
    /// `permit-agent-forwarding`; default false.
    #[serde(default)]
    pub agent_forwarding: bool,
    /// `permit-X11-forwarding`; default false.
    #[serde(default)]
    pub x11_forwarding: bool,
}

/// `POST /v1/grants/{id}/ssh-certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSshCertificate {
    /// The operator's public key as in an `id_ed25519.pub` file (Ed25519,
    /// or RSA of 2048 bits or more).
    pub public_key: String,
}

/// An SSH user certificate for a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshCertificate {
    /// The certificate as one line of a `-cert.pub` file.
    pub certificate: String,
    /// Its serial, unique in the tenant (what a KRL revokes).
    pub serial: u64,
    /// Its key id: names the grant, the operator and the tenant.
    pub key_id: String,
    /// The grant's scope, for `sshd`'s authorized principals.
    pub principals: Vec<String>,
    /// The Unix login it is for.
    pub login: String,
    /// Valid from (a minute before it was made).
    pub valid_after: DateTime<Utc>,
    /// Valid until: `[ssh] certificate_minutes` from now or the grant's
    /// end, whichever is sooner.
    pub valid_before: DateTime<Utc>,
    /// The fingerprint of the tenant's authority that signed it.
    pub authority: String,
}

/// One of a tenant's SSH certificate authorities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshAuthority {
    /// The public key as a `TrustedUserCAKeys` line.
    pub public_key: String,
    /// Its SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    /// When a newer authority replaced it.
    pub retired_at: Option<DateTime<Utc>>,
}

/// `POST /v1/ssh/authorize`: may this certificate log in as `login` on
/// `resource` now? What `lockbox ssh authorize` asks for `sshd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshLogin {
    /// The certificate offered, in base64 (`sshd`'s `%k`).
    pub certificate: String,
    /// The VM (an ARM resource id).
    pub resource: String,
    /// The Unix account asked for (`sshd`'s `%u`).
    pub login: String,
    /// The account is an administrator's on this VM: the check's action is
    /// `Microsoft.Compute/virtualMachines/loginAsAdmin/action` rather than
    /// `…/login/action`.
    #[serde(default)]
    pub admin: bool,
}

/// The answer to an SSH login, recorded in the VM's tenant's audit log
/// (`ssh.login_allowed` / `ssh.login_denied`) before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshLoginResult {
    pub allowed: bool,
    /// `granted`, or why not: `unknown_certificate`, `other_tenant`,
    /// `certificate_expired`, `wrong_login`, `revoked`, `expired`,
    /// `not_yet_valid`, `out_of_scope`, `action_not_in_access_level`.
    pub reason: String,
    /// What `sshd` is to accept: the certificate's principals, when
    /// allowed; empty otherwise.
    pub principals: Vec<String>,
    /// The certificate's grant, when the certificate is Lockbox's.
    pub grant: Option<String>,
    /// The grant's holder, when the certificate is Lockbox's.
    pub operator: Option<String>,
    /// The certificate's serial, when it is Lockbox's.
    pub serial: Option<u64>,
}

/// `POST /v1/principals/{id}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Days until it stops working: 90 if absent, 1 to 365. A token a
    /// principal mints for itself expires no later than the token it was
    /// minted with.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// A label for it (at most 100 characters), shown in token lists.
    #[serde(default)]
    pub name: Option<String>,
}

/// A new API token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// The token's public id (to revoke it).
    pub id: String,
    /// The secret, `lbx_…`. Lockbox keeps only its hash.
    pub token: String,
    pub created_at: DateTime<Utc>,
    /// When it stops working (`null` only for tokens made outside the API,
    /// such as `lockbox init`'s).
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/tenants/{tenant}/role-assignments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoleAssignment {
    pub principal: String,
    /// `TenantAdmin`, `Owner`, `LockboxApprover` or `Reader`.
    pub role: String,
    /// `/` (the whole tenant) or a resource id.
    pub scope: String,
}

/// A user holding a role at a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleAssignment {
    pub id: String,
    pub tenant: String,
    pub principal: String,
    pub role: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// `POST /v1/tenants/{tenant}/channels`: a webhook (`url`, `secret`,
/// `format`) or an e-mail address (`address`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// `webhook` or `email`.
    pub kind: String,
    /// Webhook: an `http(s)` URL that does not resolve to a loopback,
    /// private, link-local or unspecified address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Webhook: the HMAC-SHA256 key of `Lockbox-Signature`, 16 to 256
    /// visible ASCII characters. Write-only: never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Webhook: `json` (default) or `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// E-mail: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A notification channel, as its tenant's admins see it: never the
/// webhook's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Channel {
    pub id: String,
    pub tenant: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// Webhook: where it posts.
    pub url: Option<String>,
    /// Webhook: `json` or `slack`.
    pub format: Option<String>,
    /// E-mail: the address.
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A notification to a channel: waiting (`pending`), delivered (`done`)
/// or given up on (`dead`, a dead letter that can be retried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Its id: the `Lockbox-Delivery` header, the same on every attempt.
    pub id: String,
    pub channel: String,
    /// The event kind it tells of.
    pub event: String,
    /// `pending`, `done` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When it is next tried (pending ones).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered or given up on.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Whether the tenant has opted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockboxState {
    pub enabled: bool,
    /// When it last changed (`null`: never, still the default).
    pub changed_at: Option<DateTime<Utc>>,
    pub changed_by: Option<String>,
}

/// `PUT /v1/tenants/{tenant}/lockbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLockbox {
    pub enabled: bool,
}

/// A tenant's policy (`GET`/`PUT /v1/tenants/{tenant}/policy`). A `PUT`
/// replaces it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// How long a request waits for a decision (default 96).
    pub request_ttl_hours: u32,
    /// A grant's duration when the request names none (default 8).
    pub default_access_hours: u32,
    /// The longest grant (default 8).
    pub max_access_hours: u32,
    /// Distinct approvals needed (default 1).
    pub required_approvals: u32,
    /// Whether break-glass is allowed (default false).
    pub emergency_access: bool,
    /// The longest emergency grant (default 60).
    pub emergency_max_minutes: u32,
    /// How many pending requests one operator may have in the tenant (1
    /// to 1000; default 10, also when absent). One more is refused with
    /// `limit_reached` (409).
    #[serde(default = "policy_defaults::max_pending_requests_per_operator")]
    pub max_pending_requests_per_operator: u32,
    /// How many pending requests one case may have (1 to 1000; default 5).
    #[serde(default = "policy_defaults::max_pending_requests_per_case")]
    pub max_pending_requests_per_case: u32,
    /// How many active grants one operator may hold in the tenant (1 to
    /// 1000; default 20): a request or emergency access past it is refused.
    #[serde(default = "policy_defaults::max_active_grants_per_holder")]
    pub max_active_grants_per_holder: u32,
    /// The fewest characters a request's justification may have (1 to
    /// 2000; default 1).
    #[serde(default = "policy_defaults::min_justification_length")]
    pub min_justification_length: u32,
    /// The reason types a request may give (default: all of
    /// `customer_initiated_support`, `provider_initiated_service`,
    /// `provider_review`, `legal_request`, `production_alert`; at least
    /// one; answered sorted, each once).
    #[serde(default = "policy_defaults::allowed_reason_types")]
    pub allowed_reason_types: Vec<String>,
    /// A regular expression every request's `reference` must match whole
    /// (for example `INC-[0-9]{6}`; at most 200 characters); absent or
    /// `null`: no reference is required. A request short of any of these
    /// three is refused with `policy_requirement` (422).
    #[serde(default)]
    pub reference_pattern: Option<String>,
    /// Approval rules, in order: the first that matches a request decides
    /// (at most 50; names unique). Absent: none, the defaults above apply
    /// to every request. Rules apply once the tenant has opted in.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// The longest a grant may last with its extensions, from its start to
    /// its end (at least `max_access_hours`, at most 2160). Absent or
    /// `null`: 24 hours, or `max_access_hours` if that is longer.
    #[serde(default)]
    pub max_total_hours: Option<u32>,
    /// Named groups of the tenant's approvers, which rules may require one
    /// approval from each of (at most 20; names unique). Absent: none.
    #[serde(default)]
    pub approver_groups: Vec<ApproverGroup>,
}

/// A rule of a tenant's policy (`docs/POLICY.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Unique within the policy (at most 100 characters).
    pub name: String,
    /// What a request must be for the rule to apply; absent: anything.
    #[serde(default)]
    pub when: RuleConditions,
    pub effect: RuleEffect,
}

/// A rule's conditions: all must hold. An empty list or an absent value
/// matches anything; a list matches any of its values (at most 50).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConditions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_levels: Vec<String>,
    /// A scope the requested resource must lie within (or be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The case's severities: `A`, `B`, `C`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<String>,
    /// The request's reason types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_types: Vec<String>,
    /// The operators asking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// When the request is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RuleWindow>,
}

/// Days and hours in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleWindow {
    /// `mon` … `sun`; empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// `HH:MM`, included.
    pub from: String,
    /// `HH:MM`, excluded; before `from`: over midnight (`days` names the
    /// day it starts).
    pub until: String,
    /// An IANA time zone, such as `Europe/Berlin` or `UTC`.
    pub time_zone: String,
}

/// What a rule does: `approve` (at once, by the policy), `deny` (with
/// `reason`), or `require_approvals` (`approvals`, 1 to 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleEffect {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// For `require_approvals`: approver groups (of `approver_groups`) each
    /// of which must give one of the approvals; `approvals` must be at
    /// least as many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A named group of a tenant's approvers (`docs/POLICY.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproverGroup {
    /// A letter, then up to 63 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// 1 to 100.
    pub members: Vec<GroupMember>,
}

/// A group's member: a principal (`{"principal": "olivia"}`), or whoever
/// holds an approving role at a scope or above it (`{"role":
/// "LockboxApprover", "scope": "/subscriptions/sub-1"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `Owner` or `LockboxApprover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `PUT /v1/tenants/{tenant}/approver-groups/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMembers {
    pub members: Vec<GroupMember>,
}

/// `POST /v1/tenants/{tenant}/policy/simulate`: a draft request, to see
/// which rule it would meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySimulation {
    /// The resource or scope asked for.
    pub resource: String,
    pub access_level: String,
    /// The operator asking.
    pub operator: String,
    /// The case's severity: `A`, `B` or `C`.
    pub severity: String,
    /// Default `customer_initiated_support`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_type: Option<String>,
    /// When it would be made; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// A policy to try instead of the tenant's (checked as a `PUT` would
    /// check it; nothing is saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// What would happen to the draft request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimulationResult {
    /// `approve` (at once), `deny`, or `require_approvals`.
    pub decision: String,
    /// The rule that would apply; `null`: none (the defaults, or the tenant
    /// has not opted in).
    pub rule: Option<String>,
    /// Distinct approvals it would need (0 when approved at once or
    /// denied).
    pub required_approvals: u32,
    /// Approver groups each of which would have to give one of them.
    #[serde(default)]
    pub required_groups: Vec<String>,
    /// Whether the tenant has opted in (rules apply only then).
    pub lockbox_enabled: bool,
    /// In words.
    pub explanation: String,
}

/// The defaults of [`Policy`]'s fan-out limits, when a body leaves them out.
mod policy_defaults {
    pub(super) fn max_pending_requests_per_operator() -> u32 {
        10
    }
    pub(super) fn max_pending_requests_per_case() -> u32 {
        5
    }
    pub(super) fn max_active_grants_per_holder() -> u32 {
        20
    }
    pub(super) fn min_justification_length() -> u32 {
        1
    }
    pub(super) fn allowed_reason_types() -> Vec<String> {
        [
            "customer_initiated_support",
            "provider_initiated_service",
            "provider_review",
            "legal_request",
            "production_alert",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// `POST /v1/tenants/{tenant}/cases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    /// The resource the case is about.
    pub resource: String,
    pub title: String,
    /// `A` (critical), `B` or `C`.
    pub severity: String,
}

/// `POST /v1/cases/{case}/assign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignCase {
    pub operator: String,
}

/// A support case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub id: String,
    pub tenant: String,
    pub resource: String,
    pub title: String,
    pub severity: String,
    /// `open` or `closed`.
    pub status: String,
    pub assigned_to: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
}

/// `POST /v1/requests`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub case: String,
    /// The case's resource or a scope above it.
    pub resource: String,
    pub access_level: String,
    /// The tenant's default if absent.
    #[serde(default)]
    pub duration_hours: Option<u32>,
    pub justification: String,
    /// Why: `customer_initiated_support` (the default),
    /// `provider_initiated_service`, `provider_review`, `legal_request` or
    /// `production_alert`. The tenant's policy may allow only some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_type: Option<String>,
    /// The ticket or incident id the request is made under (at most 100
    /// characters); required when the tenant's policy has a
    /// `reference_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the access should start, at most 14 days ahead: an approval
    /// before then makes a grant that is `not_yet_valid` until then, and
    /// lasts `duration_hours` from its start. Absent: as soon as approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Where the operator will log in from over SSH (IP addresses or
    /// networks such as `10.0.0.0/8`, at most 16): the grant's SSH
    /// certificates then work from these only (`source-address`). Only
    /// for access levels with an `ssh` section.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
}

/// `POST /v1/requests/{id}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    pub reason: String,
    /// A shorter duration than requested.
    #[serde(default)]
    pub duration_hours: Option<u32>,
    /// For a request that needs approvals from groups: the one of its
    /// `required_groups` this approval counts for (the approver must be
    /// in it). Absent: whichever of them the approver is in, as best
    /// completes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `POST /v1/requests/{id}/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// How many hours more (at least 1, at most the tenant's
    /// `max_access_hours`, and no more than its `max_total_hours` leaves).
    pub hours: u32,
    /// Why, shown to approvers.
    pub justification: String,
    /// Absent: the extended request's.
    #[serde(default)]
    pub reason_type: Option<String>,
}

/// `POST /v1/requests/{id}/deny` and `/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithReason {
    pub reason: String,
}

/// `POST /v1/requests/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    #[serde(default)]
    pub reason: Option<String>,
}

/// One approver's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// A shorter duration this approver insisted on.
    pub duration_hours: Option<u32>,
    /// The request's required groups this approval may count for (it
    /// counts for one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A denial, revocation or cancellation: who, why, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub by: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// An access request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: String,
    pub tenant: String,
    /// The support case's id.
    pub case: String,
    /// The case's title, so approvers can match the request to it.
    pub case_title: String,
    /// The case's severity.
    pub case_severity: String,
    pub requester: String,
    pub resource: String,
    pub access_level: String,
    /// The level's patterns when the request was made: what an approval
    /// grants.
    pub actions: Vec<String>,
    pub duration_hours: u32,
    pub justification: String,
    /// Why, in one of the reason types.
    pub reason_type: String,
    /// The ticket or incident id, if given.
    pub reference: Option<String>,
    /// When the access was asked to start (`null`: when approved).
    pub starts_at: Option<DateTime<Utc>>,
    /// The rule of the tenant's policy that applied when the request was
    /// made (`null`: none, the defaults).
    pub rule: Option<String>,
    /// The request whose grant this one asks to extend (`null`: it is not
    /// an extension). An extension holds no grant: approved, it moves the
    /// end of the grant it extends, and stays `approved`.
    #[serde(default)]
    pub extends: Option<String>,
    /// `pending`, `approved`, `denied`, `expired`, `canceled`, `revoked` or
    /// `completed` (as of now, even before the sweeper records it).
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub required_approvals: u32,
    /// Approver groups each of which must give one of the approvals (set
    /// by the rule that applied).
    #[serde(default)]
    pub required_groups: Vec<String>,
    /// Those of `required_groups` no approval counts for yet.
    #[serde(default)]
    pub groups_missing: Vec<String>,
    pub approvals: Vec<Approval>,
    pub denial: Option<Decision>,
    pub cancellation: Option<Decision>,
    /// The grant an approval started; `null` before, and for callers who
    /// may not see grants (the holder, the tenant's approvers and
    /// TenantAdmins, and the provider's admins may).
    pub grant: Option<Grant>,
    /// Approved by the system because the tenant had not opted in.
    pub decided_by_system: bool,
    /// Where the operator said they will log in from over SSH (the
    /// grant's certificates work from these only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    /// The access level's SSH login when the request was made: what
    /// certificates minted for its grant say (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

/// A time-bound permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: String,
    /// The request it came from (`null` for emergency access).
    pub request: Option<String>,
    pub tenant: String,
    /// The operator who holds it.
    pub principal: String,
    pub scope: String,
    pub access_level: String,
    pub actions: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// `active`, `revoked` or `ended` (`ended` once its time is over, even
    /// before the sweeper records it).
    pub state: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub emergency: bool,
}

/// `POST /v1/check`: may `principal` perform `action` on `resource`?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The operator acting.
    pub principal: String,
    /// The resource acted on (an ARM resource id).
    pub resource: String,
    /// One action, e.g. `Microsoft.Compute/virtualMachines/read`.
    pub action: String,
}

/// The answer to a check, recorded in the resource's tenant's audit log
/// (`access.allowed` / `access.denied`) before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub allowed: bool,
    /// The grant that allows it (or that a denial is about).
    pub grant: Option<String>,
    /// When the allowing grant ends.
    pub expires_at: Option<DateTime<Utc>>,
    /// `granted`, `no_grant`, `expired`, `revoked`, `not_yet_valid`,
    /// `action_not_in_access_level`, `unknown_principal` or
    /// `unknown_resource`.
    pub reason: String,
}

/// `POST /v1/grants/{id}/token`: a signed access token (a JWT, EdDSA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    /// The JWT. Claims: `iss`, `sub` (the operator), `tid`, `scope`,
    /// `lvl`, `act` (the level's action patterns), `gid`, `iat`, `exp`,
    /// `jti`.
    pub token: String,
    /// Its `exp`: at most 15 minutes from now, and never after the grant's
    /// end.
    pub expires_at: DateTime<Utc>,
}

/// One public signing key (RFC 8037 OKP, Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: its RFC 7638 thumbprint.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
}

/// `GET /.well-known/jwks.json`: the keys access tokens are signed with,
/// the current one first; a retired key stays listed for a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// `POST /v1/emergency-access`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyAccess {
    /// The resource (an ARM resource id).
    pub resource: String,
    /// Why break-glass access is needed, for the owners.
    pub justification: String,
    /// At most the tenant's `emergency_max_minutes`.
    pub duration_minutes: u32,
    /// The access level (default `Contributor`).
    #[serde(default)]
    pub access_level: Option<String>,
}

/// An event of a tenant's audit chain, exactly as the export file spells
/// it (`docs/AUDIT_FORMAT.md` §3): anyone can recompute its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// The position in the chain, from 1 without gaps.
    pub seq: u64,
    /// The chain: the tenant id (`null` for the provider chain).
    pub tenant: Option<String>,
    /// When it happened (UTC, six fractional digits).
    pub at: String,
    /// Who caused it: a principal id, or `system`.
    pub actor: String,
    /// What happened (`request.created`, `access.allowed`, …).
    pub kind: String,
    /// The id of the thing it happened to.
    pub subject: String,
    /// Details, by kind.
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// The previous event's hash (64 hex digits).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and the event's canonical encoding.
    pub hash: String,
}

/// A signed statement of a chain's head (`docs/AUDIT_FORMAT.md` §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The chain: the tenant id (`null` for the provider chain).
    pub tenant: Option<String>,
    /// The head event's sequence number (0 for an empty chain).
    pub seq: u64,
    /// The head event's hash.
    pub head_hash: String,
    /// When it was signed.
    pub at: String,
    /// Which key signed it: the first 8 bytes of SHA-256 of the public key, hex.
    pub key_id: String,
    /// Ed25519 signature, 128 hex digits.
    pub signature: String,
}

/// `GET /v1/tenants/{tenant}/audit/head`: the chain's last event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainHead {
    /// The tenant.
    pub tenant: String,
    /// The last event's sequence number (0 while the chain is empty).
    pub seq: u64,
    /// Its hash (64 zeros while the chain is empty).
    pub hash: String,
}

/// `GET /v1/audit/public-key`: the key that signs checkpoints now, and
/// every key that signed earlier checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPublicKey {
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The current key's id.
    pub key_id: String,
    /// The current key: the raw 32-byte Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// Every checkpoint key, the current one first.
    pub keys: Vec<AuditKey>,
}

/// One checkpoint-signing public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditKey {
    /// The key id.
    pub key_id: String,
    /// 64 hex digits.
    pub public_key: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When a newer key replaced it.
    pub retired_at: Option<DateTime<Utc>>,
}

/// `GET /healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: String,
    /// Why not ready, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `PUT /v1/tenants/{tenant}/identity-provider`: the tenant's own OpenID
/// Provider. Register `redirect_uri` (from the answer; the portal's
/// `/sign-in/callback`) at the IdP.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderInput {
    /// The issuer identifier (`https://…`), exactly as its ID tokens carry
    /// it; its `/.well-known/openid-configuration` must be reachable.
    pub issuer: String,
    /// Lockbox's client id at the IdP.
    pub client_id: String,
    /// Lockbox's client secret at the IdP. Write-only: never answered,
    /// never logged or audited. May be left out to keep the current one
    /// when the issuer and client id stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The claim that names the person (default `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_claim: Option<String>,
    /// E-mail domains the tenant claims: people signing in with an address
    /// in one are sent to this IdP.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Only single sign-on for the tenant's people (default false): their
    /// passwords are removed, their password sessions and tokens end, and
    /// API tokens can then be minted only from an SSO session (12 hours at
    /// most). Only an admin signed in through this IdP may turn it on.
    #[serde(default)]
    pub sso_only: bool,
    /// Whether the first sign-in of an unknown person with a verified
    /// address in an allowed domain creates them, named by
    /// `principal_claim`, with no role (default false; needs
    /// `allowed_email_domains`).
    #[serde(default)]
    pub create_on_first_sign_in: bool,
    /// How recent an IdP authentication must be to approve, deny or revoke
    /// in the portal, in minutes (1 to 1440, default 10). Every such
    /// decision of a person linked to the IdP goes through it again, with
    /// the decision's digest as the `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_max_age_minutes: Option<u32>,
    /// Whether every decision must carry the IdP's evidence (default
    /// false): deciding with API tokens (and so the CLI) is then refused
    /// for the tenant's people, and so is deciding in the portal for
    /// people not linked to the IdP.
    #[serde(default)]
    pub require_decision_evidence: bool,
}

/// Never the client secret.
impl std::fmt::Debug for IdentityProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProviderInput")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("principal_claim", &self.principal_claim)
            .field("allowed_email_domains", &self.allowed_email_domains)
            .field("sso_only", &self.sso_only)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/tenants/{tenant}/identity-provider`: the tenant's IdP (never
/// its client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityProvider {
    pub tenant: String,
    pub issuer: String,
    pub client_id: String,
    pub principal_claim: String,
    pub allowed_email_domains: Vec<String>,
    pub sso_only: bool,
    pub create_on_first_sign_in: bool,
    pub decision_max_age_minutes: u32,
    pub require_decision_evidence: bool,
    /// The redirect URI to register at the IdP.
    pub redirect_uri: String,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/sso/device`: start signing in the command line through the
/// account's identity provider (RFC 8628 device authorization, through
/// Lockbox's client at the IdP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSignIn {
    /// A principal id, or an e-mail address in a domain a tenant claims:
    /// its IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Or a tenant: its IdP. With neither, the provider's own IdP
    /// (`[oidc]`), for the provider's people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What the person does to finish a device sign-in, and the handle to
/// poll `POST /v1/sso/device/token` with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceAuthorization {
    /// The handle (`lbd_…`): keep it secret; poll with it.
    pub device_code: String,
    /// The code to enter at the identity provider.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// Where, with the code filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the sign-in expires.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

/// `POST /v1/sso/device/token`: poll a device sign-in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRequest {
    /// The handle `POST /v1/sso/device` answered.
    pub device_code: String,
}

/// Never the handle.
impl std::fmt::Debug for DeviceTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceTokenRequest")
    }
}

/// A finished device sign-in: an API token from single sign-on (12 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceToken {
    /// Whose it is.
    pub principal: String,
    /// The token.
    pub token: TokenCreated,
}
