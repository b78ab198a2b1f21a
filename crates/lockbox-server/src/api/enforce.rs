//! Enforcement: `check`, signed access tokens and their keys, emergency
//! access, and revoking an emergency grant.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lockbox_api as api;
use lockbox_core::text::{Justification, Reason};
use lockbox_core::{AccessLevelName, Action, Grant, GrantId, PrincipalId, ResourceId};

use crate::access_token;
use crate::api::ApiError;
use crate::auth::Caller;
use crate::enforce::gateway::Gateway;
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, Path, Reply};
use crate::service::enforce;
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
    let outcome = enforce::check(&app, &gateway, &principal, &resource, &action).await?;
    Ok(Json(api::CheckResult {
        allowed: outcome.allowed(),
        grant: outcome.grant.as_ref().map(ToString::to_string),
        expires_at: outcome.expires_at,
        reason: outcome.reason.as_str().to_owned(),
    }))
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
    let (token, expires_at) = enforce::mint_token(&app, &caller, &GrantId::parse(&id)?).await?;
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
    let asked = enforce::Emergency {
        resource: ResourceId::parse(&b.resource)?,
        justification: Justification::parse(&b.justification)?,
        access_level: AccessLevelName::parse(
            b.access_level.as_deref().unwrap_or(EMERGENCY_DEFAULT_LEVEL),
        )?,
        duration_minutes: b.duration_minutes,
    };
    // Looked up in the creating transaction, on its connection, before
    // the operator's row is locked.
    let idem = Idempotent::later(&app, &caller, key.0, body.digest);
    let now = app.now();
    let reply = Reply {
        idem,
        status: StatusCode::CREATED,
        present: |g: &Grant| present::grant(g, now),
    };
    enforce::emergency(&app, &caller, asked, reply).await
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
    let grant = crate::service::requests::revoke_grant(&app, &caller, &id, reason, None).await?;
    Ok(Json(present::grant(&grant, app.now())))
}
