//! The provider's side: operators, gateways, access levels, and API tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lockbox_api as api;
use lockbox_core::access::ActionSet;
use lockbox_core::text::{Description, DisplayName, Email};
use lockbox_core::{
    AccessLevel, AccessLevelName, AccountManager, Chain, Principal, PrincipalId, TokenId,
};
use lockbox_store::{Directory as _, Requests as _};
use serde::Serialize;

use super::tenants::token_event;
use crate::api::ApiError;
use crate::auth::{self, Caller};
use crate::extract::{Created, IdempotencyKey, Idempotent, JsonBody, Path, Withheld};
use crate::{AppState, authz, present};

/// The chain where a principal's events belong: its tenant's, or the
/// provider's.
fn chain_of(p: &Principal) -> Chain {
    p.tenant()
        .map_or(Chain::Provider, |t| Chain::Tenant(t.clone()))
}

/// Register a support engineer (provider admins). The answer carries the
/// operator's one-time enrolment link, with which the engineer sets their
/// own password and gets their first API token.
#[utoipa::path(post, path = "/v1/operators", tag = "provider",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewOperator,
    responses((status = 201, body = api::PrincipalCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_operator(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewOperator>,
) -> Result<Created, ApiError> {
    let cap = authz::provider_admin(&caller)?;
    let b = &body.value;
    let id: PrincipalId = b.id.parse()?;
    let display_name = DisplayName::parse(&b.display_name)?;
    let email = Email::parse(&b.email)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let (operator, event) =
        Principal::register_operator(&cap, id, display_name, email, b.emergency, app.now());
    let described = format!("operator {}", operator.id);
    let manager = AccountManager::Provider(cap);
    super::accounts::create_with_link(&app, idem, &manager, operator, event, described).await
}

/// Register a resource gateway (provider admins). The answer carries its
/// one-time enrolment link, which yields the gateway's first API token.
#[utoipa::path(post, path = "/v1/gateways", tag = "provider",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewGateway,
    responses((status = 201, body = api::PrincipalCreated), (status = 403, body = api::Problem), (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_gateway(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody<api::NewGateway>,
) -> Result<Created, ApiError> {
    let cap = authz::provider_admin(&caller)?;
    let id: PrincipalId = body.value.id.parse()?;
    let display_name = DisplayName::parse(&body.value.display_name)?;
    let idem = Idempotent::begin(&app, &caller, key, body.digest).await?;
    let (gateway, event) = Principal::register_gateway(&cap, id, display_name, app.now());
    let described = format!("gateway {}", gateway.id);
    let manager = AccountManager::Provider(cap);
    super::accounts::create_with_link(&app, idem, &manager, gateway, event, described).await
}

/// Define or redefine an access level (provider admins). Requests already
/// made, and their grants, keep the patterns they were made with; a
/// redefinition is recorded as `access_level.changed` in the provider's
/// chain and in the chain of every tenant with a request of the level
/// pending or a grant of it active (the actions before and after).
#[utoipa::path(put, path = "/v1/access-levels/{name}", tag = "provider",
    params(("name" = String, Path)),
    request_body = api::PutAccessLevel,
    responses((status = 200, body = api::AccessLevel), (status = 400, body = api::Problem), (status = 403, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn put_access_level(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<api::PutAccessLevel>,
) -> Result<Json<api::AccessLevel>, ApiError> {
    let cap = authz::provider_admin(&caller)?;
    let name = AccessLevelName::parse(&name)?;
    let actions = ActionSet::parse(&body.value.actions)?;
    let description = Description::parse(&body.value.description)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Locked: a request or emergency grant being made with the level's
    // actions (which reads it shared) commits first, and is counted below.
    let previous = tx.lock_access_level(&name).await?;
    let (level, event) =
        AccessLevel::define(&cap, name, actions, description, previous.as_ref(), now);
    match (event, previous) {
        (Some(event), previous) => {
            let mut events = vec![event];
            if let Some(previous) = previous {
                let tenants = tx.tenants_using_level(&level.name, now).await?;
                events.extend(level.changed_in_tenants(&cap, &previous, &tenants, now));
            }
            tx.put_access_level(&level, now).await?;
            tx.commit(events).await?;
        }
        (None, _) => tx.commit_unaudited().await?,
    }
    Ok(Json(present::access_level(&level)))
}

/// The access levels (anyone signed in).
#[utoipa::path(get, path = "/v1/access-levels", tag = "provider",
    responses((status = 200, body = Vec<api::AccessLevel>)),
    security(("bearer" = [])))]
pub(crate) async fn list_access_levels(
    State(app): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<api::AccessLevel>>, ApiError> {
    let levels = app.store().read().await?.access_levels().await?;
    Ok(Json(levels.iter().map(present::access_level).collect()))
}

/// Mint an API token for a principal: for oneself; provider admins for
/// operators, gateways and admins; a tenant's TenantAdmins for its users.
/// The token is shown once: a repeat with the same `Idempotency-Key` is
/// answered `409 replay_withheld`, naming the token created, never with the
/// token again.
///
/// It lasts `expires_in_days` (90 days if absent, at most 365). A token a
/// principal mints for itself never outlives the token used to mint it:
/// its `expires_at` is clamped to that token's.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens", tag = "tokens",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = api::NewToken,
    responses((status = 201, body = api::TokenCreated), (status = 403, body = api::Problem), (status = 404, body = api::Problem),
        (status = 409, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
    body: JsonBody<api::NewToken>,
) -> Result<Created, ApiError> {
    let hidden = || ApiError::hidden(format!("no principal `{id}` whose tokens you manage"));
    let id: PrincipalId = id.parse().map_err(|_| hidden())?;
    let name = match body.value.name.as_deref().map(str::trim) {
        Some(name) if name.is_empty() || name.chars().count() > 100 => {
            return Err(ApiError::invalid("name must be 1 to 100 characters"));
        }
        Some(name) => Some(lockbox_core::text::DisplayName::parse(name)?.to_string()),
        None => None,
    };
    let now = app.now();
    let mut tx = app.store().begin().await?;
    // Under a share lock: a disable or a new enrolment link of the target
    // (which lock its row) either lands first, and is seen here, or waits.
    let target = tx.share_principal(&id).await?.ok_or_else(hidden)?;
    authz::token_authority(&caller, &target)?;
    // The token presented, under a share lock too: a revocation of it
    // either lands first (and this is refused), or waits for this token to
    // commit and then revokes it with its parent.
    if !tx
        .share_token(&caller.token)
        .await?
        .is_some_and(|t| t.is_valid(now))
    {
        return Err(ApiError::unauthenticated(
            "the token presented was revoked while this one was being minted",
        ));
    }
    if !target.is_enabled() {
        return Err(lockbox_core::DomainError::PrincipalDisabled(format!(
            "{} is disabled; enable it first",
            target.id
        ))
        .into());
    }
    // On this transaction's connection: a second one, taken while this
    // one is held, could wait on a pool that this request has emptied.
    let idem = Idempotent::begin_in(&app, &mut tx, &caller, key, body.digest).await?;
    let expires_at = auth::api_token_expiry(&caller, now, body.value.expires_in_days)?;
    let mut token = auth::issue_token(&target.id, now, Some(expires_at))?;
    // Minted with the caller's token: revoking that one revokes this one.
    token.record.parent = Some(caller.token);
    token.record.name = name;
    tx.insert_token(&token.record).await?;
    let token_id = token.record.id;
    let withheld = Withheld {
        field: "token",
        created: format!(
            "API token {token_id} for {} ({})",
            target.id,
            present::token_expiry(token.record.expires_at)
        ),
        renew: format!(
            "If it was lost, revoke it (DELETE /v1/tokens/{token_id}) and mint a new one \
             (POST /v1/principals/{}/tokens).",
            target.id
        ),
    };
    let out = api::TokenCreated {
        id: token_id.to_string(),
        token: token.secret,
        created_at: token.record.created_at,
        expires_at: token.record.expires_at,
    };
    let created = idem
        .finish_withholding(&mut tx, StatusCode::CREATED, &out, withheld)
        .await?;
    tx.commit(vec![token_event(chain_of(&target), &caller, &token.record)])
        .await?;
    Ok(created)
}

/// Revoke an API token or portal session (the same callers as for minting
/// it), and with it every token minted from it, transitively.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = TokenId::parse(&id)?;
    let now = app.now();
    let mut tx = app.store().begin().await?;
    let token = tx
        .token(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("token {id}")))?;
    let owner = tx
        .principal(&token.principal)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("token {id}")))?;
    // A token the caller may not manage does not exist for them.
    authz::token_authority(&caller, &owner)
        .map_err(|_| ApiError::not_found(format!("token {id}")))?;
    let revoked = tx.revoke_token_tree(&id, now).await?;
    if revoked.is_empty() {
        tx.rollback().await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let events = super::accounts::revoked_events(&revoked, caller.id(), Some(&id), "revoked", now);
    tx.commit(events).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is, with its roles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    principal: api::Principal,
    roles: Vec<api::RoleAssignment>,
}

/// The caller's own principal and roles.
#[utoipa::path(get, path = "/v1/me", tag = "tokens",
    responses((status = 200, body = Me), (status = 401, body = api::Problem)),
    security(("bearer" = [])))]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        principal: present::principal(&caller.principal),
        roles: caller.roles.iter().map(present::role_assignment).collect(),
    })
}
