//! Tenants and their administration: onboarding (the provider), and the
//! tenant's own users, roles, opt-in and policy (its TenantAdmins).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::principal::NewUser;
use lockbox_core::text::{DisplayName, Email};
use lockbox_core::{
    AccountManager, Chain, EventKind, PendingEvent, PolicySettings, Principal, PrincipalId, Role,
    RoleAssignment, RoleAssignmentId, Scope, SubscriptionId, Tenant, TenantId, TenantPolicy,
};
use lockbox_store::{Directory as _, Page};
use serde_json::json;

use crate::api::ApiError;
use crate::auth::Caller;
use crate::extract::{
    Created, IdempotencyKey, Idempotent, JsonBody, PageParams, Params, Path, Withheld,
};
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

/// A tenant read outside a transaction; 404 when there is none.
async fn read_tenant(
    app: &AppState,
    id: &TenantId,
) -> Result<lockbox_core::tenant::Tenant, ApiError> {
    app.store()
        .read()
        .await?
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {id}")))
}

/// The `token.created` event (never the secret).
pub(crate) fn token_event(
    chain: Chain,
    actor: &Caller,
    token: &lockbox_store::ApiToken,
) -> PendingEvent {
    PendingEvent::new(
        chain,
        token.created_at,
        actor.id().clone(),
        EventKind::TokenCreated,
        token.id,
        json!({ "principal": token.principal, "expires_at": token.expires_at }),
    )
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
    let cap = authz::provider_admin(&caller)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let b = body.value;
    let id = TenantId::parse(&b.id)?;
    let display_name = DisplayName::parse(&b.display_name)?;
    let first = new_user(&b.admin)?;
    let now = app.now();
    let on = Tenant::onboard(
        &cap,
        id,
        display_name,
        first,
        RoleAssignmentId::generate(now)?,
        now,
    );
    let mut events = on.events.clone();
    let mut tx = app.store().begin().await?;
    tx.insert_tenant(&on.tenant).await?;
    tx.insert_principal(&on.admin).await?;
    tx.insert_role_assignment(&on.assignment).await?;
    let manager = AccountManager::onboarding(cap);
    let (link, link_events) =
        super::accounts::issue_link(&app, &mut tx, &manager, &on.admin, now).await?;
    events.extend(link_events);
    let (tenant, admin) = (&on.tenant.id, &on.admin.id);
    let withheld = Withheld {
        field: "enrollment",
        created: format!(
            "tenant {tenant} with its first TenantAdmin {admin} and {admin}'s one-time enrolment \
             link (until {})",
            link.expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
        renew: format!(
            "If the link was lost before {admin} used it, issue a new one (POST \
             /v1/principals/{admin}/enrollment); once an admin of {tenant} has enrolled, only \
             the tenant's own TenantAdmins can."
        ),
    };
    let out = api::TenantCreated {
        tenant: present::tenant(&on.tenant),
        admin: present::principal(&on.admin),
        enrollment: link,
    };
    let created = idem
        .finish_withholding(&mut tx, StatusCode::CREATED, &out, withheld)
        .await?;
    tx.commit(events).await?;
    Ok(created)
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
    let mut tx = app.store().read().await?;
    let Page { items, next_cursor } = match (authz::provider_admin(&caller), caller.tenant()) {
        (Ok(_), _) => tx.tenants(&page).await?,
        (Err(_), Some(own)) => {
            let visible = tx
                .tenant(own)
                .await?
                .filter(|t| page.cursor.as_deref().is_none_or(|c| t.id.as_str() > c));
            Page {
                items: visible.into_iter().collect(),
                next_cursor: None,
            }
        }
        (Err(e), None) => return Err(e.into()),
    };
    Ok(Json(api::Page {
        items: items.iter().map(present::tenant).collect(),
        next_cursor,
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
    let id = TenantId::parse(&tenant)?;
    authz::see_tenant(&caller, &id)?;
    let t = read_tenant(&app, &id).await?;
    Ok(Json(present::tenant(&t)))
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
    let cap = authz::provider_admin(&caller)?;
    let tenant = TenantId::parse(&tenant)?;
    let sub = SubscriptionId::parse(&body.value.id)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let t = tx
        .tenant(&tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    let owner = tx.subscription_tenant(&sub).await?;
    let event = t.add_subscription(&cap, &sub, owner.as_ref(), now)?;
    let out = api::Subscription {
        id: sub.to_string(),
        tenant: tenant.to_string(),
        scope: sub.to_resource_id().to_string(),
    };
    let events: Vec<_> = event.into_iter().collect();
    if !events.is_empty() {
        tx.insert_subscription(&sub, &tenant, now).await?;
    }
    let created = idem.finish(&mut tx, StatusCode::CREATED, &out).await?;
    tx.commit(events).await?;
    Ok(created)
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
    let mut tx = app.store().read().await?;
    if tx.tenant(&tenant).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant {tenant}")));
    }
    let Page { items, next_cursor } = tx.subscriptions(&tenant, &page).await?;
    Ok(Json(api::Page {
        items: items
            .iter()
            .map(|s| api::Subscription {
                id: s.to_string(),
                tenant: tenant.to_string(),
                scope: s.to_resource_id().to_string(),
            })
            .collect(),
        next_cursor,
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let user = new_user(&body.value)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let (principal, event) = Principal::create_user(&cap, user, now)?;
    let described = format!("user {} of tenant {tenant}", principal.id);
    let manager = AccountManager::Tenant(cap);
    super::accounts::create_with_link(&app, idem, &manager, principal, event, described).await
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
    let Page { items, next_cursor } = app.store().read().await?.users(&tenant, &page).await?;
    Ok(Json(api::Page {
        items: items.iter().map(present::principal).collect(),
        next_cursor,
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let b = &body.value;
    let principal_id = b.principal.parse()?;
    let role = Role::parse(&b.role)?;
    let scope = Scope::parse(&b.scope)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Serializes changes of the tenant's roles (the last-admin rule).
    let _tenant = tx.lock_tenant(&tenant).await?;
    let principal = tx
        .principal(&principal_id)
        .await?
        .filter(|p| p.is_user_of(&tenant))
        .ok_or_else(|| {
            ApiError::invalid(format!("{principal_id} is not a user of tenant {tenant}"))
        })?;
    let scope_tenant = match scope.subscription() {
        Some(sub) => tx.subscription_tenant(&sub).await?,
        None => None,
    };
    let (assignment, event) = RoleAssignment::assign(
        &cap,
        RoleAssignmentId::generate(now)?,
        &principal,
        role,
        scope,
        scope_tenant.as_ref(),
        now,
    )?;
    tx.insert_role_assignment(&assignment).await?;
    let created = idem
        .finish(
            &mut tx,
            StatusCode::CREATED,
            &present::role_assignment(&assignment),
        )
        .await?;
    tx.commit(vec![event]).await?;
    Ok(created)
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
    let Page { items, next_cursor } = app
        .store()
        .read()
        .await?
        .role_assignments(&tenant, &page)
        .await?;
    Ok(Json(api::Page {
        items: items.iter().map(present::role_assignment).collect(),
        next_cursor,
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let id = RoleAssignmentId::parse(&id)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let _tenant = tx.lock_tenant(&tenant).await?;
    let assignment = tx
        .role_assignment(&id)
        .await?
        .filter(|a| a.tenant == tenant)
        .ok_or_else(|| ApiError::not_found(format!("role assignment {id}")))?;
    let admins = tx.count_tenant_admins(&tenant).await?;
    let event = assignment.remove(&cap, admins, now)?;
    tx.delete_role_assignment(&id).await?;
    tx.commit(vec![event]).await?;
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
    authz::tenant_admin(&caller, &tenant)?;
    let t = read_tenant(&app, &tenant).await?;
    Ok(Json(present::lockbox(&t.lockbox)))
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let mut t = tx.lock_tenant(&tenant).await?;
    let events: Vec<_> = t
        .set_lockbox(&cap, body.value.enabled, now)?
        .into_iter()
        .collect();
    let out = present::lockbox(&t.lockbox);
    tx.save_tenant(t).await?;
    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(Json(out))
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
    authz::tenant_admin(&caller, &tenant)?;
    let t = read_tenant(&app, &tenant).await?;
    Ok(Json(present::policy(&t.policy)))
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
    let cap = authz::tenant_admin(&caller, &tenant)?;
    let p = body.value;
    let policy = TenantPolicy::new(PolicySettings {
        request_ttl_hours: p.request_ttl_hours,
        default_access_hours: p.default_access_hours,
        max_access_hours: p.max_access_hours,
        required_approvals: p.required_approvals,
        emergency_access: p.emergency_access,
        emergency_max_minutes: p.emergency_max_minutes,
        max_pending_requests_per_operator: p.max_pending_requests_per_operator,
        max_pending_requests_per_case: p.max_pending_requests_per_case,
        max_active_grants_per_holder: p.max_active_grants_per_holder,
    })?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let mut t = tx.lock_tenant(&tenant).await?;
    let events: Vec<_> = t.set_policy(&cap, policy, now)?.into_iter().collect();
    let out = present::policy(&t.policy);
    tx.save_tenant(t).await?;
    if events.is_empty() {
        tx.commit_unaudited().await?;
    } else {
        tx.commit(events).await?;
    }
    Ok(Json(out))
}
