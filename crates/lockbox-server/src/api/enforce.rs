//! Enforcement: `check`, signed access tokens and their keys, emergency
//! access, and revoking an emergency grant.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lockbox_api as api;
use lockbox_core::text::{Justification, Reason};
use lockbox_core::{AccessLevelName, Action, Grant, GrantId, PrincipalId, ResourceId};
use lockbox_store::{Directory as _, Requests as _};

use crate::access_token;
use crate::api::ApiError;
use crate::auth::Caller;
use crate::enforce::gateway::Gateway;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, Path};
use crate::{AppState, authz, present};

/// The access level emergency access uses when the body names none.
pub(crate) const EMERGENCY_DEFAULT_LEVEL: &str = "Contributor";

/// May `principal` perform `action` on `resource` now (gateways only)?
/// Answered from this node's grant index, reading the clock now; the
/// decision, allowed or denied, is in the resource's tenant's audit log
/// (`access.allowed` / `access.denied`) before the answer is sent. `503
/// enforcement_unavailable` when this node cannot vouch for its index
/// (deny, and retry).
#[utoipa::path(post, path = "/v1/check", tag = "enforcement",
    request_body = api::CheckRequest,
    responses((status = 200, body = api::CheckResult), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 503, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn check(
    State(app): State<AppState>,
    gateway: Gateway,
    body: JsonBody<api::CheckRequest>,
) -> Result<Json<api::CheckResult>, ApiError> {
    let b = &body.value;
    let principal = PrincipalId::parse(&b.principal)?;
    let resource = ResourceId::parse(&b.resource)?;
    let action = Action::parse(&b.action)?;
    let now = app.now();
    let answered = app
        .enforcer()
        .decide(&principal, &resource, &action, now)
        .await?;
    let outcome = &answered.outcome;
    let event = outcome.event(&gateway.principal, &principal, &resource, &action, now);
    app.audit_writer().append(event).await?;
    app.metrics().check(outcome.reason.as_str());
    let out = api::CheckResult {
        allowed: outcome.allowed(),
        grant: outcome.grant.as_ref().map(ToString::to_string),
        expires_at: outcome.expires_at,
        reason: outcome.reason.as_str().to_owned(),
    };
    drop(answered);
    Ok(Json(out))
}

/// A signed access token for a grant (its holder only), for gateways that
/// verify offline: a JWT (EdDSA) valid for at most 15 minutes and never
/// past the grant's end. Audited as `grant.token_issued`.
#[utoipa::path(post, path = "/v1/grants/{id}/token", tag = "enforcement",
    params(("id" = String, Path)),
    responses((status = 200, body = api::AccessToken), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn mint_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<api::AccessToken>, ApiError> {
    let now = app.now();
    let grant = super::requests::read_grant(&app, &id).await?;
    authz::grant_holder(&caller, &grant)?;
    if let Err(why) = grant.check_active(now) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "grant_not_active",
            format!("grant {id} allows nothing now ({why}); no token can be minted for it"),
        ));
    }
    let (token, claims, event) = access_token::mint(&app, &grant, now).await?;
    let tx = app.store().begin().await?;
    tx.commit(vec![event]).await?;
    let expires_at = lockbox_core::Timestamp::from_timestamp(claims.exp, 0)
        .ok_or_else(|| ApiError::Internal("token expiry out of range".to_owned()))?;
    Ok(Json(api::AccessToken { token, expires_at }))
}

/// The public keys access tokens are signed with (anyone). Gateways cache
/// it; a retired key stays listed for a day after rotation.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "enforcement",
    responses((status = 200, body = api::Jwks)))]
pub(crate) async fn jwks(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = access_token::jwks(app.store(), app.kek(), app.now()).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)))
}

/// Break-glass access (emergency operators, where the tenant's policy
/// allows it): an immediate grant on `resource` for at most the policy's
/// `emergency_max_minutes`, flagged `emergency`, audited as
/// `emergency.access` and `grant.created` for the tenant's owners to see.
/// Refused with `limit_reached` (409) when the operator already holds the
/// policy's `max_active_grants_per_holder` active grants in the tenant.
#[utoipa::path(post, path = "/v1/emergency-access", tag = "enforcement",
    request_body = api::EmergencyAccess,
    responses((status = 201, body = api::Grant), (status = 400, body = api::Problem),
        (status = 403, body = api::Problem), (status = 422, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn emergency_access(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::EmergencyAccess>,
) -> Result<Created, ApiError> {
    authz::emergency_operator(&caller)?;
    let b = &body.value;
    let resource = ResourceId::parse(&b.resource)?;
    let justification = Justification::parse(&b.justification)?;
    let level_name =
        AccessLevelName::parse(b.access_level.as_deref().unwrap_or(EMERGENCY_DEFAULT_LEVEL))?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let idem = Idempotent::begin_in(&app, &mut tx, &caller, key, body.digest).await?;
    // The operator's grants are made one at a time, each counting what the
    // one before made (the policy's `max_active_grants_per_holder`).
    tx.lock_requester(caller.id()).await?;
    super::accounts::still_enabled(&mut tx, caller.id()).await?;
    let owner = tx.subscription_tenant(&resource.subscription()).await?;
    let Some(tenant_id) = owner.clone() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_scope",
            format!("{resource} is in no tenant's subscription"),
        ));
    };
    // Shared until the grant commits: a policy change (which holds the
    // tenant's row) either lands before the policy is read here, or waits.
    let tenant = tx
        .share_tenant(&tenant_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("subscription of missing tenant {tenant_id}")))?;
    // Shared, as for a request (see `create_request`).
    let level = tx.share_access_level(&level_name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_access_level",
            format!("there is no access level named {level_name}"),
        )
    })?;
    let open = tx.open_counts(&tenant.id, caller.id(), None, now).await?;
    let (grant, events) = Grant::emergency(
        GrantId::generate(now)?,
        &caller.principal,
        &tenant,
        resource,
        owner.as_ref(),
        &level,
        justification,
        b.duration_minutes,
        open,
        now,
    )?;
    tx.insert_grant(&grant).await?;
    let out = present::grant(&grant, now);
    let created = idem.finish(&mut tx, StatusCode::CREATED, &out).await?;
    tx.commit(events).await?;
    Ok(created)
}

/// End an emergency grant early, with a reason (its holder, or an eligible
/// approver of its scope). A grant that came from a request is revoked
/// through the request (`POST /v1/requests/{id}/revoke`).
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "enforcement",
    params(("id" = String, Path)),
    request_body = api::WithReason,
    responses((status = 200, body = api::Grant), (status = 403, body = api::Problem),
        (status = 404, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_grant(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<api::WithReason>,
) -> Result<Json<api::Grant>, ApiError> {
    let id = GrantId::parse(&id)?;
    let reason = Reason::parse(&body.value.reason)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let revoked = async {
        let mut grant = tx.lock_grant(&id).await?;
        authz::see_grant(&caller, &grant)?;
        let (principal, roles) = tx
            .principal_with_roles(caller.id())
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the caller no longer exists"))?;
        let event = grant.revoke(&principal, &roles, reason, now)?;
        Ok::<_, ApiError>((grant, event))
    }
    .await;
    match revoked {
        Ok((grant, event)) => {
            let out = present::grant(&grant, now);
            tx.save_grant(grant).await?;
            tx.commit(vec![event]).await?;
            Ok(Json(out))
        }
        Err(refused) => {
            // Release the grant's lock before answering.
            let _ = tx.rollback().await;
            Err(refused)
        }
    }
}
