//! Tenants and their administration: onboarding (the provider), and the
//! tenant's own users, roles, opt-in and policy (its TenantAdmins);
//! `service::tenants` does them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::groups::{ApproverGroup, GroupName};
use lockbox_core::principal::NewUser;
use lockbox_core::rules::Rule;
use lockbox_core::text::{DisplayName, Email};
use lockbox_core::{
    AccessLevelName, DomainError, PolicySettings, PrincipalId, ReasonType, ReferencePattern,
    ResourceId, Role, RoleAssignmentId, Scope, Severity, SubscriptionId, TenantId, TenantPolicy,
};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{
    Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path, Reply, Withheld,
    Withholding,
};
use crate::service::ServiceError;
use crate::service::accounts::WithLink;
use crate::service::tenants::{self, NewRole, Onboarded};
use crate::{AppState, authz, present};

fn new_user(u: &api::NewUser) -> Result<NewUser, ApiError> {
    Ok(NewUser {
        id: u.id.parse()?,
        display_name: DisplayName::parse(&u.display_name)?,
        email: Email::parse(&u.email)?,
        alternate_emails: u
            .alternate_emails
            .iter()
            .map(|e| Email::parse(e))
            .collect::<Result<_, _>>()?,
    })
}

/// What a repeat of a creation that made `made` is told instead of its
/// link (`described` names what was made).
pub(crate) fn link_withheld(
    made: &WithLink,
    described: fn(&lockbox_core::Principal) -> String,
) -> Withheld {
    Withheld {
        field: "enrollment",
        created: format!(
            "{} with a one-time enrolment link (until {})",
            described(&made.principal),
            made.link.expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
        renew: format!(
            "If the link was lost, issue a new one: POST /v1/principals/{}/enrollment.",
            made.principal.id
        ),
    }
}

/// A user of a tenant, as a repeat of its creation names it.
pub(crate) fn described_user(p: &lockbox_core::Principal) -> String {
    let tenant = p.tenant().map(ToString::to_string).unwrap_or_default();
    format!("user {} of tenant {tenant}", p.id)
}

/// The API's receipt of a principal made with its first enrolment link:
/// the principal and the link, shown this once; a repeat with the same
/// `Idempotency-Key` is answered `409 replay_withheld`, naming what
/// `described` says and how to get a new link.
pub(crate) fn with_link(
    idem: Idempotent,
    described: fn(&lockbox_core::Principal) -> String,
) -> Withholding<impl FnOnce(&WithLink) -> (api::PrincipalCreated, Withheld) + Send + Sync> {
    Withholding {
        idem,
        present: move |made: &WithLink| {
            let withheld = link_withheld(made, described);
            let out = api::PrincipalCreated {
                principal: present::principal(&made.principal),
                enrollment: super::accounts::link(&made.link),
            };
            (out, withheld)
        },
    }
}

/// Onboard a tenant with its first TenantAdmin (provider admins). The
/// answer carries no credential: only the admin's one-time enrolment link,
/// which the provider sends to that person, who sets their own password
/// with it (`POST /v1/enroll`, or the portal's `/enroll/…` page). The link
/// is shown once: a repeat with the same `Idempotency-Key` is answered
/// `409 replay_withheld`. Until an admin of the tenant has enrolled, a
/// provider admin may issue a new link (`POST
/// /v1/principals/{id}/enrollment`); after that, only the tenant can.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    request_body = api::NewTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection for 24 hours")),
    responses((status = 201, body = api::TenantCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_tenant(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewTenant>,
) -> Result<Created, ApiError> {
    authz::provider_admin(&caller)?;
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let b = body.value;
    let id = TenantId::parse(&b.id)?;
    let display_name = DisplayName::parse(&b.display_name)?;
    let first = new_user(&b.admin)?;
    let receipt = Withholding {
        idem,
        present: |on: &Onboarded| {
            let (tenant, admin) = (&on.tenant.id, &on.admin.id);
            let withheld = Withheld {
                field: "enrollment",
                created: format!(
                    "tenant {tenant} with its first TenantAdmin {admin} and {admin}'s one-time \
                     enrolment link (until {})",
                    on.link.expires_at.format("%Y-%m-%d %H:%M UTC")
                ),
                renew: format!(
                    "If the link was lost before {admin} used it, issue a new one (POST \
                     /v1/principals/{admin}/enrollment); once an admin of {tenant} has \
                     enrolled, only the tenant's own TenantAdmins can."
                ),
            };
            let out = api::TenantCreated {
                tenant: present::tenant(&on.tenant),
                admin: present::principal(&on.admin),
                enrollment: super::accounts::link(&on.link),
            };
            (out, withheld)
        },
    };
    tenants::create(&app, &caller, id, display_name, first, receipt).await
}

/// Tenants the caller may see: all for provider admins, their own for a
/// tenant's users.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageParams),
    responses((status = 200, body = api::Page<api::Tenant>), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_tenants(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::Tenant>>, ApiError> {
    let page = params.page(TenantId::parse)?;
    let found = tenants::list(&app, &caller, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::tenant).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// One tenant (provider admins and the tenant's users).
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::Tenant), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_tenant(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::Tenant>, ApiError> {
    let t = tenants::get(&app, &caller, &TenantId::parse(&tenant)?).await?;
    Ok(Json(present::tenant(&t)))
}

/// A subscription as the API shows it.
fn subscription(sub: &SubscriptionId, tenant: &TenantId) -> api::Subscription {
    api::Subscription {
        id: sub.to_string(),
        tenant: tenant.to_string(),
        scope: sub.to_resource_id().to_string(),
    }
}

/// Attach a subscription to a tenant (provider admins).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/subscriptions", tag = "tenants",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewSubscription,
    responses((status = 201, body = api::Subscription), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn add_subscription(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewSubscription>,
) -> Result<Created, ApiError> {
    authz::provider_admin(&caller)?;
    let tenant = TenantId::parse(&tenant)?;
    let sub = SubscriptionId::parse(&body.value.id)?;
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: |s: &SubscriptionId| subscription(s, &tenant),
    };
    tenants::add_subscription(&app, &caller, &tenant, sub, reply).await
}

/// A tenant's subscriptions, in id order (provider admins and the tenant's
/// users).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/subscriptions", tag = "tenants",
    params(("tenant" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::Subscription>), (status = 400, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_subscriptions(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::Subscription>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::see_tenant(&caller, &tenant)?;
    let page = params.page(SubscriptionId::parse)?;
    let found = tenants::subscriptions(&app, &caller, &tenant, &page).await?;
    Ok(Json(api::Page {
        items: found
            .items
            .iter()
            .map(|s| subscription(s, &tenant))
            .collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Create a user in the tenant (its TenantAdmins). The answer carries the
/// user's one-time enrolment link (shown once; a repeat with the same
/// `Idempotency-Key` is answered `409 replay_withheld`): the person sets
/// their own password with it. An id taken anywhere in the installation is
/// refused without saying where.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users", tag = "tenant administration",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewUser,
    responses((status = 201, body = api::PrincipalCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewUser>,
) -> Result<Created, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let user = new_user(&body.value)?;
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let receipt = with_link(idem, described_user);
    tenants::create_user(&app, &caller, &tenant, user, receipt).await
}

/// The tenant's users, in id order (its TenantAdmins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "tenant administration",
    params(("tenant" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::Principal>), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::Principal>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let page = params.page(PrincipalId::parse)?;
    let found = tenants::users(&app, &caller, &tenant, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::principal).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Give a user of the tenant a role at a scope (its TenantAdmins).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/role-assignments", tag = "tenant administration",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewRoleAssignment,
    responses((status = 201, body = api::RoleAssignment), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn assign_role(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewRoleAssignment>,
) -> Result<Created, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let b = &body.value;
    let new = NewRole {
        principal: b.principal.parse()?,
        role: Role::parse(&b.role)?,
        scope: Scope::parse(&b.scope)?,
    };
    let idem = Idempotent::begin(&app, &caller, key.0, body.digest).await?;
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: present::role_assignment,
    };
    tenants::assign_role(&app, &caller, &tenant, new, reply).await
}

/// The tenant's role assignments, oldest first (its TenantAdmins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/role-assignments", tag = "tenant administration",
    params(("tenant" = String, Path), PageParams),
    responses((status = 200, body = api::Page<api::RoleAssignment>), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn list_roles(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<api::Page<api::RoleAssignment>>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let page = params.page(RoleAssignmentId::parse)?;
    let found = tenants::roles(&app, &caller, &tenant, &page).await?;
    Ok(Json(api::Page {
        items: found.items.iter().map(present::role_assignment).collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Remove a role assignment (its TenantAdmins). The last TenantAdmin
/// cannot be removed.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/role-assignments/{id}", tag = "tenant administration",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn remove_role(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let id = RoleAssignmentId::parse(&id)?;
    tenants::remove_role(&app, &caller, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the tenant has opted in (its TenantAdmins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/lockbox", tag = "tenant administration",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::LockboxState), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_lockbox(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::LockboxState>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let setting = tenants::lockbox(&app, &caller, &tenant).await?;
    Ok(Json(present::lockbox(&setting)))
}

/// Opt in or out (its TenantAdmins). Audited as `lockbox.enabled` /
/// `lockbox.disabled`.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/lockbox", tag = "tenant administration",
    params(("tenant" = String, Path)),
    request_body = api::SetLockbox,
    responses((status = 200, body = api::LockboxState), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn set_lockbox(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: JsonBody<api::SetLockbox>,
) -> Result<Json<api::LockboxState>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let setting = tenants::set_lockbox(&app, &caller, &tenant, body.value.enabled).await?;
    Ok(Json(present::lockbox(&setting)))
}

/// The tenant's policy (its TenantAdmins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy", tag = "tenant administration",
    params(("tenant" = String, Path)),
    responses((status = 200, body = api::Policy), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn get_policy(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<api::Policy>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    let policy = tenants::policy(&app, &caller, &tenant).await?;
    Ok(Json(present::policy(&policy)))
}

/// Replace the tenant's policy (its TenantAdmins). Audited as
/// `policy.changed` with the policy before and after.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/policy", tag = "tenant administration",
    params(("tenant" = String, Path)),
    request_body = api::Policy,
    responses((status = 200, body = api::Policy), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn set_policy(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: JsonBody<api::Policy>,
) -> Result<Json<api::Policy>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let policy = policy_of(body.value)?;
    let policy = tenants::set_policy(&app, &caller, &tenant, policy).await?;
    Ok(Json(present::policy(&policy)))
}

/// A policy as the API sends it, checked.
pub(crate) fn policy_of(p: api::Policy) -> Result<TenantPolicy, ApiError> {
    Ok(TenantPolicy::new(PolicySettings {
        request_ttl_hours: p.request_ttl_hours,
        default_access_hours: p.default_access_hours,
        max_access_hours: p.max_access_hours,
        required_approvals: p.required_approvals,
        emergency_access: p.emergency_access,
        emergency_max_minutes: p.emergency_max_minutes,
        max_pending_requests_per_operator: p.max_pending_requests_per_operator,
        max_pending_requests_per_case: p.max_pending_requests_per_case,
        max_active_grants_per_holder: p.max_active_grants_per_holder,
        min_justification_length: p.min_justification_length,
        allowed_reason_types: p
            .allowed_reason_types
            .iter()
            .map(|r| ReasonType::parse(r))
            .collect::<Result<_, _>>()?,
        reference_pattern: p
            .reference_pattern
            .as_deref()
            .map(ReferencePattern::parse)
            .transpose()?,
        rules: p
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_of(i, r))
            .collect::<Result<_, _>>()?,
        max_total_hours: p.max_total_hours,
        approver_groups: p
            .approver_groups
            .iter()
            .map(group_of)
            .collect::<Result<_, _>>()?,
    })?)
}

/// An approver group as the API sends it, read by the domain (the wire
/// form is the domain's, field for field).
pub(crate) fn group_of(g: &api::ApproverGroup) -> Result<ApproverGroup, ServiceError> {
    serde_json::to_value(g)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ServiceError::invalid(format!(
                "group `{}`: {e}",
                g.name.chars().take(64).collect::<String>()
            ))
        })
}

/// Add or replace one approver group of the tenant's policy (its
/// TenantAdmins), leaving the rest of the policy as it is; audited as
/// `policy.changed`.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/approver-groups/{name}", tag = "tenant administration",
    params(("tenant" = String, Path), ("name" = String, Path)),
    request_body = api::GroupMembers,
    responses((status = 200, body = api::Policy), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn set_group(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: JsonBody<api::GroupMembers>,
) -> Result<Json<api::Policy>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let group = group_of(&api::ApproverGroup {
        name,
        members: body.value.members,
    })?;
    let policy = tenants::set_policy_with(&app, &caller, &tenant, |current| {
        let mut s = current.settings().clone();
        match s.approver_groups.iter_mut().find(|g| g.name == group.name) {
            Some(g) => *g = group,
            None => s.approver_groups.push(group),
        }
        TenantPolicy::new(s)
    })
    .await?;
    Ok(Json(present::policy(&policy)))
}

/// Remove one approver group (its TenantAdmins): refused (400) while a
/// rule requires it, and 404 when there is none by that name.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/approver-groups/{name}", tag = "tenant administration",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = api::Policy), (status = 400, body = api::Problem), (status = 403, body = api::Problem), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn remove_group(
    State(app): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<api::Policy>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let name = GroupName::parse(&name)?;
    let policy = tenants::set_policy_with(&app, &caller, &tenant, |current| {
        let mut s = current.settings().clone();
        let before = s.approver_groups.len();
        s.approver_groups.retain(|g| g.name != name);
        if s.approver_groups.len() == before {
            return Err(DomainError::NotFound(format!("approver group `{name}`")));
        }
        TenantPolicy::new(s)
    })
    .await?;
    Ok(Json(present::policy(&policy)))
}

/// A rule as the API sends it, read by the domain's own rules (the wire
/// form is the domain's, field for field). `i` is its place in the list.
pub(crate) fn rule_of(i: usize, r: &api::PolicyRule) -> Result<Rule, ServiceError> {
    // Keys of another effect would be read past in silence (an `approve`
    // with `groups` is an approve): refused instead.
    let e = &r.effect;
    let misplaced = match e.kind.as_str() {
        "require_approvals" => e.reason.is_some().then_some("reason"),
        "deny" => (e.approvals.is_some() || !e.groups.is_empty()).then_some("approvals and groups"),
        _ => (e.reason.is_some() || e.approvals.is_some() || !e.groups.is_empty())
            .then_some("reason, approvals and groups"),
    };
    if let Some(keys) = misplaced {
        return Err(ServiceError::invalid(format!(
            "rules[{i}] (`{}`): an effect of type `{}` takes no {keys}",
            r.name.chars().take(100).collect::<String>(),
            e.kind.chars().take(40).collect::<String>()
        )));
    }
    serde_json::to_value(r)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ServiceError::invalid(format!(
                "rules[{i}] (`{}`): {e}",
                r.name.chars().take(100).collect::<String>()
            ))
        })
}

/// Which rule a draft request would meet, and what would happen (the
/// tenant's TenantAdmins). Nothing is created or changed; with `policy`,
/// a policy not yet saved is tried instead of the tenant's.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/policy/simulate", tag = "tenant administration",
    params(("tenant" = String, Path)),
    request_body = api::PolicySimulation,
    responses((status = 200, body = api::SimulationResult), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn simulate_policy(
    State(app): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: JsonBody<api::PolicySimulation>,
) -> Result<Json<api::SimulationResult>, ApiError> {
    let tenant = TenantId::parse(&tenant)?;
    authz::tenant_admin(&caller, &tenant)?;
    let b = body.value;
    let draft = tenants::Draft {
        resource: ResourceId::parse(&b.resource)?,
        access_level: AccessLevelName::parse(&b.access_level)?,
        operator: PrincipalId::parse(&b.operator)?,
        severity: Severity::parse(&b.severity)?,
        reason_type: ReasonType::parse_or_default(b.reason_type.as_deref())?,
        at: b.at,
    };
    let policy = b.policy.map(policy_of).transpose()?;
    let s = tenants::simulate(&app, &caller, &tenant, &draft, policy).await?;
    Ok(Json(api::SimulationResult {
        decision: s.decision.to_owned(),
        rule: s.rule,
        required_approvals: s.required_approvals,
        required_groups: s.required_groups,
        lockbox_enabled: s.lockbox_enabled,
        explanation: s.explanation,
    }))
}
